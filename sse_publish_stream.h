/* sse_publish_stream.h - the streaming publish (application/x-ndjson): one
 * envelope per line, each published as soon as its line has arrived.
 */
#ifndef SSE_PUBLISH_STREAM_H
#define SSE_PUBLISH_STREAM_H

#include "httpd.h"

/* Reads r's body line by line and publishes each line's envelope to
 * channel as it arrives. Sets *reply to the JSON summary (lines, published,
 * failed, first_id, last_id, ids, errors by line number, body_error) and
 * *status to 200, or 408 when the body stalled (Timeout) and 400 when it
 * ended early; what was published before stays published. Returns OK. */
int sse_publish_stream(request_rec *r, const char *channel,
                       const char **reply, int *status);

#endif /* SSE_PUBLISH_STREAM_H */
