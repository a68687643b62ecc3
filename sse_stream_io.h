/* sse_stream_io.h - an event-stream response written from a worker thread:
 * headers, opening, framing, one FLUSH per write, keepalives, store news,
 * and noticing that the client left. Shared by the sse-stream handler
 * (its thread path), the C stream API and the SSE output filter. */
#ifndef SSE_STREAM_IO_H
#define SSE_STREAM_IO_H

#include "httpd.h"
#include "util_filter.h"

#include "sse_store.h"

typedef struct {
    request_rec *r;
    conn_rec *c;
    ap_filter_t *self;         /* the SSE output filter writing, whose
                                  next filter takes its writes; NULL: writes
                                  go to r->output_filters. Looked up at
                                  every write: filters leave the chain. */
    apr_bucket_brigade *bb;
    apr_pool_t *scratch;       /* cleared after every write */
    sse_store *store;          /* NULL until channels are joined */
    sse_subscription sub;
    int subscribed;
    sse_resume reset;          /* a reset notice owed to the client */
    apr_uint32_t seen;         /* wakeup generation last looked at */
    const char *last_id_text;  /* the client's Last-Event-ID */
    int check_input;           /* HTTP/1.x: poll the socket for EOF */
    int keepalive_sec;         /* 0 = none */
    apr_time_t last_write;
    apr_interval_time_t max_wait; /* longest wait between looks at the
                                     client and the MPM state */
    apr_uint64_t delivered;    /* events written */
    apr_uint64_t bytes;        /* bytes written, before chunk framing */
    apr_size_t queued;         /* bytes added since the last write */
} sse_stream_io;

/* Content type, no caching, no compression, no proxy buffering; must come
 * before the first byte is passed on. */
void sse_stream_set_headers(request_rec *r);

/* Non-zero for an output filter that only frames or counts what passes,
 * so that bytes written to the socket directly look the same as if they
 * had gone through it. */
int sse_stream_filter_is_transparent(const char *name);

/* Sets up io for r, written by the output filter self (or NULL: by a
 * handler); allocates nothing, so a refusal costs nothing. */
void sse_stream_io_init(sse_stream_io *io, request_rec *r, ap_filter_t *self);

/* The response starts: its brigade and scratch pool, for as long as the
 * request lives. Before any add. */
void sse_stream_io_begin(sse_stream_io *io);

/* Passes bb (an EOS at its end, or not) to where io writes. */
apr_status_t sse_stream_pass(sse_stream_io *io, apr_bucket_brigade *bb);

/* Queues bytes that stay valid until the next sse_stream_flush. */
void sse_stream_add(sse_stream_io *io, const char *buf, apr_size_t len);

/* Queues one event: an id line (when id is not NULL), then the event as
 * sse_event_frame writes it. Counts it as delivered. */
void sse_stream_add_event(sse_stream_io *io, const char *id,
                          const char *event, const char *data,
                          apr_size_t len);

/* Queues a comment; every line of text becomes a ": " line. */
void sse_stream_add_comment(sse_stream_io *io, const char *text);

/* Passes what is queued with a FLUSH; APR_ECONNABORTED once the client is
 * gone. */
apr_status_t sse_stream_flush(sse_stream_io *io);

/* Queues the opening: retry: (retry_ms >= 0), ": ok", and for a client
 * that is not resuming the id it would resume from. */
void sse_stream_add_opening(sse_stream_io *io, int retry_ms);

/* Non-zero when the client has closed its end. */
int sse_stream_client_gone(sse_stream_io *io);

/* Writes everything new in the joined channels (and any reset notice owed
 * first). APR_EOF when a channel was deleted. */
apr_status_t sse_stream_send_news(sse_stream_io *io);

/* Keeps the stream alive until deadline (0 = none): news, keepalives,
 * stop. APR_TIMEUP at the deadline, APR_EOF when a joined channel was
 * deleted, APR_EINTR when the child stops (": server restarting" sent),
 * APR_ECONNABORTED or a write error when the client is gone. */
apr_status_t sse_stream_live(sse_stream_io *io, apr_time_t deadline);

#endif /* SSE_STREAM_IO_H */
