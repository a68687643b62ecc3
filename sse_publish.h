/* sse_publish.h - validating, framing and storing events, then waking the
 * subscribers: the one publish path behind the admin API and the C API.
 */
#ifndef SSE_PUBLISH_H
#define SSE_PUBLISH_H

#include "apr_tables.h"

#include "sse_event.h"

typedef struct {
    int status;                /* HTTP status: 201 on success */
    const char *error;         /* why, when status is not 201 */
    apr_uint64_t first_id;     /* ids are first_id .. first_id + n - 1 */
    apr_uint32_t subscribers;  /* of the channel at publish time */
} sse_publish_result;

/* Publishes events (sse_event) to channel, all or nothing. Counts a
 * rejection in the store's statistics when it fails. */
void sse_publish_events(apr_pool_t *p, const char *channel,
                        const apr_array_header_t *events,
                        sse_publish_result *result);

/* NULL when ev may be published (event type, size, UTF-8), else why not
 * and *status (400 or 413). */
const char *sse_publish_event_problem(apr_pool_t *p, const sse_event *ev,
                                      int *status);

/* Registers the optional function declared in mod_sse.h. */
void sse_publish_register(void);

#endif /* SSE_PUBLISH_H */
