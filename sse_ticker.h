/* sse_ticker.h - keepalive comments for SSE-filtered responses whose
 * generator holds the worker thread while it waits (mod_proxy). */
#ifndef SSE_TICKER_H
#define SSE_TICKER_H

#include "httpd.h"

typedef struct sse_tick sse_tick;

/* Starts this child's ticker thread (threaded MPMs); stopped with pchild. */
apr_status_t sse_ticker_child_init(apr_pool_t *pchild);

/* Keeps r's connection (plain HTTP/1.x, nothing but framing below the
 * caller) alive with a keepalive comment whenever nothing was written for
 * every_sec; the caller's writes must happen between sse_ticker_enter and
 * sse_ticker_leave. NULL when there is no ticker. Ends with r's pool. */
sse_tick *sse_ticker_add(request_rec *r, int every_sec);

void sse_ticker_enter(sse_tick *t);
/* done: the response is complete, write nothing more. */
void sse_ticker_leave(sse_tick *t, int done);

/* Non-zero when a keepalive could not be written: the client is gone. */
int sse_ticker_broken(sse_tick *t);

/* Non-zero when the ticker ended the response itself (the child stops);
 * nothing more may be written then. */
int sse_ticker_ended(sse_tick *t);

#endif /* SSE_TICKER_H */
