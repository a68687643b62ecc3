/* sse_read_cache.h - a child's copy of the latest read of each channel, so
 * the stream threads woken by one publish take the store lock once.
 */
#ifndef SSE_READ_CACHE_H
#define SSE_READ_CACHE_H

#include "apr_pools.h"
#include "sse_store.h"

/* Turns the cache on for this process (its kept reads stay until the
 * process exits); without it (prefork) every read goes to the store. */
void sse_read_cache_enable(void);

/* sse_store_read(), answered from the cache when a thread of this child
 * has just made the same read and the channel has nothing newer since. */
void sse_read_cache_read(sse_store *st, sse_subscription *sub,
                         apr_pool_t *p, apr_size_t budget,
                         sse_read_result *res);

/* Reads answered from the cache, and reads that went to the store, in
 * this process (for the tests). */
void sse_read_cache_counts(apr_uint64_t *hits, apr_uint64_t *misses);

#endif
