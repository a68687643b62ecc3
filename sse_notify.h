/* sse_notify.h - waking stream threads in every child when the store
 * changes, and telling them when their child stops.
 */
#ifndef SSE_NOTIFY_H
#define SSE_NOTIFY_H

#include "apr_pools.h"
#include "apr_time.h"

/* Run by the dispatcher after every wait: changed says the store moved,
 * stopping that this is the last call. */
typedef void sse_notify_round_fn(int changed, int stopping);

/* Non-zero when a waiter with this interest (a stream's subscription) has
 * something to read. Called by the dispatcher, without the store lock. */
typedef int sse_notify_news_fn(const void *interest);


/* Starts this child's dispatcher thread, which waits on the store's wake
 * word, wakes local stream threads and runs round (may be NULL). row is
 * the child's row in the store (its own wakeups). threaded_mpm is zero for
 * prefork, which stops children from a signal handler. */
apr_status_t sse_notify_child_init(apr_pool_t *pchild, apr_uint32_t *word,
                                   int row, int threaded_mpm,
                                   sse_notify_round_fn *round,
                                   sse_notify_news_fn *news);

/* Non-zero once sse_notify_child_init ran in this child: waits then wake
 * for stops and news; before (or without a store) they cannot. */
int sse_notify_available(void);

/* Makes this child's dispatcher run a round now, without a change. */
void sse_notify_poke(void);

/* Tells every local stream to end (child_stopping). */
void sse_notify_stop(void);
/* Non-zero once this child stops: told so, or the MPM says so (prefork
 * shows its stop only there). */
int sse_notify_stopping(void);

/* Local change counter: read it before checking the store, then pass it
 * to sse_notify_wait so no change between the two is missed. */
apr_uint32_t sse_notify_generation(void);

/* Waits until the generation moves past *seen and news(interest) says
 * there is something for this waiter (interest NULL: any change), the
 * child stops, or timeout passes; updates *seen. Returns non-zero when the
 * dispatcher woke this waiter (news, or a stop). */
int sse_notify_wait(apr_uint32_t *seen, const void *interest,
                    apr_interval_time_t timeout);

/* Publisher side: bumps the wake word and wakes every child's dispatcher. */
void sse_notify_all(apr_uint32_t *word);

#endif /* SSE_NOTIFY_H */
