/* sse_writer.h - the per-child writer: owns the sockets of handed-off
 * streams and writes every event to them, so that an open stream holds no
 * worker thread and no request memory.
 */
#ifndef SSE_WRITER_H
#define SSE_WRITER_H

#include "httpd.h"
#include "apr_time.h"
#include "sse_store.h"

/* What a stream's handler gives the writer once its headers and replay
 * went out through httpd's filters. */
typedef struct {
    int fd;                       /* a dup() of the client socket */
    int chunked;                  /* HTTP/1.1 chunked body: frame chunks */
    int keepalive_sec;            /* 0 = none */
    apr_time_t opened;            /* request time, for the end-of-stream log */
    apr_time_t last_write;
    apr_uint64_t events, bytes;   /* what the handler already sent */
    const sse_subscription *sub;  /* copied; the writer unsubscribes */
    const char *client;           /* address, for the log */
    const char *first_channel;    /* for the log */
    const char *last_id_text;     /* the client's Last-Event-ID, for an
                                     sse-reset the writer may have to send */
} sse_handoff;

/* Limits of the writer of one child. */
typedef struct {
    apr_size_t max_pending;       /* bytes a slow socket may owe before the
                                     stream ends (SSEMaxPendingBytes) */
    apr_interval_time_t stall_timeout; /* no progress this long ends it */
    apr_uint32_t max_streams;     /* handed-off streams one child may own:
                                     its open-files limit minus a reserve */
} sse_writer_limits;

/* Starts the writer's thread for this child (threaded MPMs only); the
 * notify dispatcher then calls sse_writer_round on every wake. row is the
 * child's row in the store, where its streams are counted. */
apr_status_t sse_writer_child_init(sse_store *store, int row,
                                   const sse_writer_limits *limits);

/* Non-zero when this child's writer takes streams (it runs and has not
 * started to stop). */
int sse_writer_available(void);

/* Non-zero when the writer can take one more stream (open files). */
int sse_writer_has_room(void);

/* Hands a stream over. On APR_SUCCESS the writer owns h->fd and the
 * subscription (the caller must close neither, nor unsubscribe); on any
 * other result nothing changed hands. Any thread may call it. */
apr_status_t sse_writer_take(const sse_handoff *h);

/* Called by the dispatcher thread after every wait: wakes the writer
 * thread when the store changed; at a stop makes it end every stream and
 * waits until it has. */
void sse_writer_round(int changed, int stopping);

#endif /* SSE_WRITER_H */
