/* sse_read_cache.c - a child's copy of the latest read of each channel, so
 * the stream threads woken by one publish take the store lock once.
 *
 * A publish to a channel with a thousand streams on worker threads (TLS,
 * HTTP/2, the C API) wakes a thousand threads that all make the same read:
 * same channel, same cursor. Each took the store's global lock, shared
 * with every publisher and every other child; now the first one's result
 * is kept here and the others copy it.
 *
 * A kept read stays right while its channel has nothing newer than the
 * cursor the read ended at: ids only grow, and every id up to that cursor
 * had been assigned when the read was made, so a message the copy lacks
 * would have a higher id and show as a newer newest_id. It must also hold
 * nothing the store has dropped since: no message dropped above the
 * cursor it started from (crash repair, another generation's smaller
 * SSEHistorySize), and no first message older than SSEHistoryMaxAge,
 * which the store drops lazily, at its next locked read. The checks read
 * the channel's ids and incarnation without the lock. Only reads of one
 * channel that were whole (no budget cut, no gap, no deletion) are kept;
 * anything else goes to the store as before.
 *
 * The lock is static and the kept reads live until the process exits:
 * no cleanup can pull them from under a reader.
 */
#include <stdlib.h>
#include <string.h>

#include <pthread.h>

#include "apr_general.h"
#include "apr_strings.h"

#include "sse_read_cache.h"

/* Channels are spread over the entries by slot; two busy channels on one
 * entry only cost each other hits. */
#define CACHE_ENTRIES 64
/* Larger reads (a replay, a burst) are not shared by many threads at once */
#define CACHE_MAX_BYTES (16 * 1024)

typedef struct {
    int used;
    sse_sub_channel channel;
    apr_uint64_t cursor_before;     /* the read was for ids above this */
    apr_uint64_t cursor_after;      /* and considered every id up to this */
    sse_read_hint hint;
    sse_read_result read;           /* buf: the bytes, then (aligned) the
                                       marks, in one allocation */
} cache_entry;

static pthread_rwlock_t cache_lock = PTHREAD_RWLOCK_INITIALIZER;
static int cache_on;
static cache_entry entries[CACHE_ENTRIES];
static apr_uint64_t hits, misses;

void sse_read_cache_enable(void)
{
    cache_on = 1;
}

static cache_entry *entry_for(const sse_subscription *sub)
{
    return &entries[sub->ch[0].slot % CACHE_ENTRIES];
}

/* Under the read lock: a copy of a kept read that is still right for sub
 * and fits its budget, or zero. */
static int answer_from(cache_entry *e, sse_store *st, sse_subscription *sub,
                       apr_pool_t *p, apr_size_t budget, sse_read_result *res)
{
    apr_uint64_t newest, evicted_upto;
    apr_interval_time_t max_age = sse_store_history_max_age(st);
    apr_size_t marks_at;
    if (!e->used || e->cursor_before != sub->cursor
        || e->read.len > budget
        || e->channel.slot != sub->ch[0].slot
        || e->channel.incarnation != sub->ch[0].incarnation
        || !sse_store_channel_ids(st, &sub->ch[0], &newest, &evicted_upto)
        || newest > e->cursor_after || evicted_upto > e->cursor_before
        || (max_age && apr_time_now() - e->read.first_time > max_age)) {
        return 0;
    }
    marks_at = (char *)e->read.marks - e->read.buf;
    *res = e->read;
    res->buf = apr_pmemdup(p, e->read.buf,
                           marks_at + sizeof(sse_read_mark) * e->read.events);
    res->marks = (sse_read_mark *)(res->buf + marks_at);
    sub->cursor = e->cursor_after;
    sub->hint[0] = e->hint;
    return 1;
}

static void keep(cache_entry *e, const sse_subscription *sub,
                 apr_uint64_t cursor_before, const sse_read_result *res)
{
    apr_size_t marks_at = APR_ALIGN_DEFAULT(res->len);
    apr_size_t marks_len = sizeof(sse_read_mark) * res->events;
    char *copy = malloc(marks_at + marks_len);
    if (!copy) return;
    memcpy(copy, res->buf, res->len);
    memcpy(copy + marks_at, res->marks, marks_len);
    free(e->read.buf);
    e->used = 1;
    e->channel = sub->ch[0];
    e->cursor_before = cursor_before;
    e->cursor_after = sub->cursor;
    e->hint = sub->hint[0];
    e->read = *res;
    e->read.buf = copy;
    e->read.marks = (sse_read_mark *)(copy + marks_at);
}

void sse_read_cache_read(sse_store *st, sse_subscription *sub,
                         apr_pool_t *p, apr_size_t budget,
                         sse_read_result *res)
{
    apr_uint64_t cursor_before = sub->cursor;
    int answered;
    if (!cache_on || sub->n != 1) {
        sse_store_read(st, sub, p, budget, res);
        return;
    }
    pthread_rwlock_rdlock(&cache_lock);
    answered = answer_from(entry_for(sub), st, sub, p, budget, res);
    pthread_rwlock_unlock(&cache_lock);
    if (answered) {
        __atomic_add_fetch(&hits, 1, __ATOMIC_RELAXED);
        return;
    }
    __atomic_add_fetch(&misses, 1, __ATOMIC_RELAXED);
    sse_store_read(st, sub, p, budget, res);
    if (res->events && !res->more && !res->gap && !res->deleted
        && res->len <= CACHE_MAX_BYTES) {
        pthread_rwlock_wrlock(&cache_lock);
        keep(entry_for(sub), sub, cursor_before, res);
        pthread_rwlock_unlock(&cache_lock);
    }
}

void sse_read_cache_counts(apr_uint64_t *hit_count, apr_uint64_t *miss_count)
{
    *hit_count = __atomic_load_n(&hits, __ATOMIC_RELAXED);
    *miss_count = __atomic_load_n(&misses, __ATOMIC_RELAXED);
}
