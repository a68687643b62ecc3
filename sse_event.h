/* sse_event.h - the text/event-stream wire format: validation of channel
 * names, event types and retry values, and framing of one event. APR only.
 */
#ifndef SSE_EVENT_H
#define SSE_EVENT_H

#include "apr_pools.h"

#define SSE_CHANNEL_MAX          128  /* bytes in a channel name */
#define SSE_MAX_STREAM_CHANNELS  64   /* channels on one stream */
#define SSE_EVENT_TYPE_MAX       256  /* bytes in an event type */
#define SSE_ID_TEXT_MAX          21   /* decimal uint64 plus NUL */
/* Event types mod_sse sends itself (sse-reset); publishers may not. */
#define SSE_RESERVED_PREFIX      "sse-"

/* One event as a publisher gave it; data is raw, not yet split. */
typedef struct {
    const char *event;      /* NULL or "" for the default "message" */
    apr_size_t event_len;
    const char *data;
    apr_size_t data_len;
    long retry;             /* -1 = none */
} sse_event;

/* NULL when name[0..len) is a valid channel name, else why not. */
const char *sse_channel_name_problem(const char *name, apr_size_t len);

/* NULL when a publisher may use the event type (it can go on an event:
 * line and is not reserved), else why not. */
const char *sse_event_type_problem(const char *type, apr_size_t len);

/* Non-zero when s[0..len) is well-formed UTF-8 (no overlongs, no
 * surrogates, nothing above U+10FFFF). */
int sse_utf8_valid(const char *s, apr_size_t len);

/* Parses a retry value: ASCII digits only, at most 2^31-1.
 * Returns 0 on success, -1 otherwise. */
int sse_retry_parse(const char *s, apr_size_t len, long *out);

/* A copy of s[0..len) safe to show in an error message: at most 64
 * bytes, anything but printable ASCII replaced by '?'. */
char *sse_printable(apr_pool_t *p, const char *s, apr_size_t len);

/* Writes id as decimal into buf (SSE_ID_TEXT_MAX bytes); returns length. */
apr_size_t sse_id_format(char *buf, apr_uint64_t id);

/* Parses a decimal id; returns 0 on success, -1 if not all digits or too
 * large. */
int sse_id_parse(const char *s, apr_uint64_t *out);

/* Frames everything of an event except its id: line, in this order:
 *   event: <type>\n  retry: <ms>\n  data: <line>\n ...  \n
 * Data is split at CRLF, LF and lone CR; an empty data gives one empty
 * data: line. The caller validated the event beforehand.
 * Returns the bytes, allocated from p, and their length in *len. */
char *sse_event_frame(apr_pool_t *p, const sse_event *ev, apr_size_t *len);

/* Frames the sse-reset event mod_sse sends when a client missed messages:
 * reason ("expired", "unknown", "overflow"), the id it carries, and the
 * last event id the client claimed (NULL, or not UTF-8: null). */
char *sse_reset_frame(apr_pool_t *p, const char *reason, apr_uint64_t id,
                      const char *last_id_text, apr_size_t *len);

#endif /* SSE_EVENT_H */
