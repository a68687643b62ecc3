/* sse_fanout.h - the per-child writer: streams on plain HTTP/1.x sockets
 * hand their socket to it and sleep; it copies each new event out of the
 * store once and writes it to every such socket.
 */
#ifndef SSE_FANOUT_H
#define SSE_FANOUT_H

#include "apr_pools.h"
#include "apr_time.h"
#include "sse_store.h"

/* Why the writer gave a stream back to its thread. */
typedef enum {
    SSE_PARK_STOPPING = 1,  /* the child stops */
    SSE_PARK_GONE,          /* the client closed or the socket failed */
    SSE_PARK_SLOW,          /* the socket would block: pending must be
                               written first, by the thread */
    SSE_PARK_NEWS,          /* the store has something only the thread's
                               own read handles (reset, deletion) */
    SSE_PARK_INPUT          /* the client sent bytes (pipelining) */
} sse_park_end;

/* A stream while its thread sleeps. The thread fills the first block and
 * must not touch anything else until sse_fanout_park returns. */
typedef struct sse_parked sse_parked;
struct sse_parked {
    int fd;
    int chunked;                 /* HTTP/1.1 chunked body: frame chunks */
    int keepalive_sec;           /* 0 = none */
    sse_subscription *sub;       /* its cursor moves while parked */
    apr_time_t last_write;

    /* the writer's, while parked */
    apr_uint64_t delivered;
    sse_park_end why;
    char *pending;               /* malloc'd; the thread writes and frees */
    apr_size_t pending_len;
    sse_parked *prev, *next;     /* in its feed, or in the join queue */
    void *feed;
    apr_uint32_t state;          /* futex word: parked or returned */
};

/* Starts the writer's state for this child (threaded MPMs only); the
 * notify dispatcher then calls sse_fanout_round on every wake. row is the
 * child's row in the store, where its parked streams are counted. */
apr_status_t sse_fanout_child_init(sse_store *store, int row);

/* Non-zero when a stream may park in this child. */
int sse_fanout_available(void);

/* Hands the stream to the writer and sleeps until the writer gives it
 * back; says why. seen is the notify generation read before the thread
 * last looked at the store, so a change in between is not missed. */
sse_park_end sse_fanout_park(sse_parked *p, apr_uint32_t seen);

/* Called by the dispatcher thread after every wait: delivers news when the
 * store changed, takes in new streams, sends keepalives, notices hangups,
 * and at a stop gives every stream back. */
void sse_fanout_round(int changed, int stopping);

#endif /* SSE_FANOUT_H */
