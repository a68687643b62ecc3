/* read_cache_tests.c - the child's read cache (sse_read_cache.c) must
 * answer exactly what the store would have: the same bytes, marks and
 * cursor, never a read that misses a newer message, a deleted channel or
 * a smaller budget; and it must actually answer repeated reads.
 */
#include <stdio.h>
#include <unistd.h>

#include "unit.h"
#include "sse_read_cache.h"

static sse_subscription subscribe(sse_store *st, int row, const char *name)
{
    sse_subscription sub;
    sse_resume resume;
    const char *which;
    const char *names[1];
    names[0] = name;
    memset(&sub, 0, sizeof(sub));
    CHECK(sse_store_subscribe(st, row, names, 1, 1, NULL, NULL, &sub,
                              &resume, &which) == SSE_OK);
    return sub;
}

static int same_read(const sse_read_result *a, const sse_read_result *b)
{
    return a->len == b->len && a->events == b->events
           && a->first_id == b->first_id && a->last_id == b->last_id
           && a->more == b->more && a->gap == b->gap
           && a->deleted == b->deleted
           && (!a->len || !memcmp(a->buf, b->buf, a->len))
           && (!a->events || !memcmp(a->marks, b->marks,
                                     sizeof(sse_read_mark) * a->events));
}

/* the second of two streams at the same place is answered by the cache */
static void test_shared_read(sse_store *st, int row, apr_pool_t *p)
{
    sse_subscription first = subscribe(st, row, "news");
    sse_subscription second = subscribe(st, row, "news");
    sse_subscription direct = subscribe(st, row, "news");
    sse_read_result r1, r2, rd;
    apr_uint64_t h0, m0, h1, m1;

    unit_publish(st, "news", "data: one\n\n");
    unit_publish(st, "news", "data: two\n\n");
    sse_read_cache_counts(&h0, &m0);
    sse_read_cache_read(st, &first, p, 1 << 16, &r1);
    sse_read_cache_read(st, &second, p, 1 << 16, &r2);
    sse_store_read(st, &direct, p, 1 << 16, &rd);
    sse_read_cache_counts(&h1, &m1);
    CHECK(m1 - m0 == 1 && h1 - h0 == 1);
    CHECK(r1.events == 2 && unit_read_problem(&r2, 0) == NULL);
    CHECK(same_read(&r2, &rd) && same_read(&r1, &rd));
    CHECK(second.cursor == direct.cursor && first.cursor == direct.cursor);
    /* the copy is the caller's own: the cache's buffer is not handed out */
    CHECK(r1.buf != r2.buf);

    /* nothing new: the next reads come back empty, from the store */
    sse_read_cache_read(st, &second, p, 1 << 16, &r2);
    CHECK(r2.events == 0 && r2.len == 0);
    sse_store_unsubscribe(st, &first);
    sse_store_unsubscribe(st, &second);
    sse_store_unsubscribe(st, &direct);
}

/* a stream still at the old place after a newer publish must get the newer
 * message too, so the kept read no longer answers */
static void test_newer_message(sse_store *st, int row, apr_pool_t *p)
{
    sse_subscription first = subscribe(st, row, "late");
    sse_subscription second = subscribe(st, row, "late");
    sse_subscription direct = subscribe(st, row, "late");
    sse_read_result r1, r2, rd;
    apr_uint64_t h0, m0, h1, m1, id;

    unit_publish(st, "late", "data: a\n\n");
    sse_read_cache_read(st, &first, p, 1 << 16, &r1);
    id = unit_publish(st, "late", "data: b\n\n");
    sse_read_cache_counts(&h0, &m0);
    sse_read_cache_read(st, &second, p, 1 << 16, &r2);
    sse_read_cache_counts(&h1, &m1);
    sse_store_read(st, &direct, p, 1 << 16, &rd);
    CHECK(h1 == h0 && m1 - m0 == 1);
    CHECK(r2.events == 2 && r2.last_id == id && same_read(&r2, &rd));
    /* and a publish to another channel leaves the kept read good */
    unit_publish(st, "other", "data: x\n\n");
    sse_store_unsubscribe(st, &first);
    sse_store_unsubscribe(st, &second);
    first = subscribe(st, row, "late");
    second = first;
    unit_publish(st, "late", "data: c\n\n");
    unit_publish(st, "other", "data: y\n\n");
    sse_read_cache_read(st, &first, p, 1 << 16, &r1);
    unit_publish(st, "other", "data: z\n\n");
    sse_read_cache_counts(&h0, &m0);
    sse_read_cache_read(st, &second, p, 1 << 16, &r2);
    sse_read_cache_counts(&h1, &m1);
    CHECK(h1 - h0 == 1 && same_read(&r1, &r2) && r2.events == 1);
    sse_store_unsubscribe(st, &first);
    sse_store_unsubscribe(st, &direct);
}

/* a deleted channel is never answered from a kept read */
static void test_deleted(sse_store *st, int row, apr_pool_t *p)
{
    sse_subscription first = subscribe(st, row, "gone");
    sse_subscription second = subscribe(st, row, "gone");
    sse_read_result r1, r2;
    sse_channel_info info;

    unit_publish(st, "gone", "data: a\n\n");
    sse_read_cache_read(st, &first, p, 1 << 16, &r1);
    CHECK(r1.events == 1);
    CHECK(sse_store_delete(st, "gone", &info) == SSE_OK);
    sse_read_cache_read(st, &second, p, 1 << 16, &r2);
    CHECK(r2.deleted && r2.events == 0);
    /* a new channel of the same name takes the slot: still no answer from
     * the old incarnation's read */
    unit_publish(st, "gone", "data: new\n\n");
    sse_read_cache_read(st, &second, p, 1 << 16, &r2);
    CHECK(r2.deleted);
    sse_store_unsubscribe(st, &first);
    sse_store_unsubscribe(st, &second);
}

/* a caller with a smaller budget gets what the store would give it */
static void test_budget(sse_store *st, int row, apr_pool_t *p)
{
    sse_subscription first = subscribe(st, row, "budget");
    sse_subscription second = subscribe(st, row, "budget");
    sse_subscription direct = subscribe(st, row, "budget");
    sse_read_result r1, r2, rd;

    unit_publish(st, "budget", "data: 1\n\n");
    unit_publish(st, "budget", "data: 2\n\n");
    sse_read_cache_read(st, &first, p, 1 << 16, &r1);
    CHECK(r1.events == 2);
    sse_read_cache_read(st, &second, p, 1, &r2);
    sse_store_read(st, &direct, p, 1, &rd);
    CHECK(r2.events == 1 && r2.more && same_read(&r2, &rd));
    CHECK(second.cursor == direct.cursor);
    sse_store_unsubscribe(st, &first);
    sse_store_unsubscribe(st, &second);
    sse_store_unsubscribe(st, &direct);
}

/* messages the store has dropped since a read was kept are not handed out
 * again: by age (SSEHistoryMaxAge, dropped lazily at the next locked
 * read), and by a drop that came without a publish (here a smaller
 * history size, as another generation may have) */
static void test_dropped(sse_store *st, int row, apr_pool_t *p)
{
    sse_store_limits lim = { 20, 0, 0, 0, 0, 0 };
    sse_subscription first, second, direct, other;
    sse_read_result r1, r2, rd;

    lim.history_max_age = apr_time_from_msec(50);
    sse_store_set_limits(st, &lim);
    first = subscribe(st, row, "aged");
    second = subscribe(st, row, "aged");
    direct = second;
    unit_publish(st, "aged", "data: old\n\n");
    sse_read_cache_read(st, &first, p, 1 << 16, &r1);
    CHECK(r1.events == 1);
    apr_sleep(apr_time_from_msec(80));
    sse_read_cache_read(st, &second, p, 1 << 16, &r2);
    sse_store_read(st, &direct, p, 1 << 16, &rd);
    CHECK(rd.gap && rd.events == 0);
    CHECK(same_read(&r2, &rd));
    sse_store_unsubscribe(st, &first);
    sse_store_unsubscribe(st, &second);

    lim.history_max_age = 0;
    sse_store_set_limits(st, &lim);
    first = subscribe(st, row, "trimmed");
    second = subscribe(st, row, "trimmed");
    direct = second;
    other = subscribe(st, row, "trimmed");
    unit_publish(st, "trimmed", "data: 1\n\n");
    unit_publish(st, "trimmed", "data: 2\n\n");
    unit_publish(st, "trimmed", "data: 3\n\n");
    sse_read_cache_read(st, &first, p, 1 << 16, &r1);
    CHECK(r1.events == 3);
    lim.history_size = 1;
    sse_store_set_limits(st, &lim);
    sse_store_read(st, &other, p, 1 << 16, &rd);   /* drops 1 and 2 */
    sse_read_cache_read(st, &second, p, 1 << 16, &r2);
    sse_store_read(st, &direct, p, 1 << 16, &rd);
    CHECK(rd.gap && rd.events == 1);
    CHECK(same_read(&r2, &rd));
    lim.history_size = 20;
    sse_store_set_limits(st, &lim);
    sse_store_unsubscribe(st, &first);
    sse_store_unsubscribe(st, &second);
    sse_store_unsubscribe(st, &other);
}

/* streams of several channels read from the store */
static void test_several_channels(sse_store *st, int row, apr_pool_t *p)
{
    const char *names[] = { "m1", "m2" };
    sse_subscription a, b;
    sse_resume resume;
    const char *which;
    sse_read_result ra, rb;
    apr_uint64_t h0, m0, h1, m1;
    CHECK(sse_store_subscribe(st, row, names, 2, 1, NULL, NULL, &a, &resume,
                              &which) == SSE_OK);
    b = a;
    unit_publish(st, "m1", "data: 1\n\n");
    unit_publish(st, "m2", "data: 2\n\n");
    sse_read_cache_counts(&h0, &m0);
    sse_read_cache_read(st, &a, p, 1 << 16, &ra);
    sse_read_cache_read(st, &b, p, 1 << 16, &rb);
    sse_read_cache_counts(&h1, &m1);
    CHECK(h1 == h0 && m1 == m0);
    CHECK(ra.events == 2 && same_read(&ra, &rb));
    sse_store_unsubscribe(st, &a);
}

/* random publishes and reads: every cached read equals its twin's read
 * from the store, step by step, with some reads on a tight budget */
static void test_random_twins(sse_store *st, int row, apr_pool_t *p)
{
    enum { TWINS = 6, STEPS = 3000 };
    static const char *const names[] = { "r0", "r1", "r2" };
    sse_subscription cached[TWINS], direct[TWINS];
    apr_uint64_t seed = 0x2545f4914f6cdd1dULL, h0, m0, h1, m1;
    int i, step, bad = 0;
    for (i = 0; i < TWINS; i++) {
        cached[i] = subscribe(st, row, names[i % 3]);
        direct[i] = cached[i];
    }
    sse_read_cache_counts(&h0, &m0);
    for (step = 0; step < STEPS && !bad; step++) {
        apr_uint32_t r;
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        r = (apr_uint32_t)(seed >> 11);
        if (r % 3 == 0) {
            unit_publish(st, names[(r >> 2) % 3],
                         (r >> 4) % 2 ? "data: short\n\n"
                                      : "data: a somewhat longer event\n\n");
        }
        else {
            /* one stream reads, or every stream of one channel in turn, as
             * the threads woken by a publish do */
            int one = r % 3 == 1, k;
            apr_size_t budget = (r >> 5) % 4 ? 1 << 16 : 40;
            for (k = 0; k < TWINS && !bad; k++) {
                sse_read_result rc, rd;
                i = one ? (int)((r >> 2) % TWINS) : k;
                if (!one && i % 3 != (int)((r >> 2) % 3)) continue;
                sse_read_cache_read(st, &cached[i], p, budget, &rc);
                sse_store_read(st, &direct[i], p, budget, &rd);
                /* a kept read ends at the cursor of the read that made
                 * it, which may lie below the store's newest id of other
                 * channels: never below what it returned, never above
                 * the store's own answer, and the twins' next reads
                 * agree */
                if (!same_read(&rc, &rd) || cached[i].cursor > direct[i].cursor
                    || (rc.events && cached[i].cursor < rc.last_id)) {
                    fprintf(stderr, "read_cache_tests.c: step %d twin %d "
                            "differs\n", step, i);
                    bad = 1;
                }
                if (one) break;
            }
        }
        if (step % 500 == 0) apr_pool_clear(p);
    }
    sse_read_cache_counts(&h1, &m1);
    CHECK(!bad);
    /* twins on the same channel share reads often enough to show */
    CHECK(h1 - h0 > 100);
    for (i = 0; i < TWINS; i++) sse_store_unsubscribe(st, &cached[i]);
}

void read_cache_tests(apr_pool_t *parent)
{
    sse_store *st = unit_store_new(1 << 20, 16, 20);
    int row = sse_store_child_attach(st, (apr_int32_t)getpid());
    apr_pool_t *p;
    sse_subscription sub;
    sse_read_result r1;
    apr_uint64_t h0, m0, h1, m1;

    CHECK(row >= 0);
    apr_pool_create(&p, parent);
    /* until it is enabled (prefork: never) every read goes to the store */
    sub = subscribe(st, row, "plain");
    unit_publish(st, "plain", "data: p\n\n");
    sse_read_cache_counts(&h0, &m0);
    sse_read_cache_read(st, &sub, p, 1 << 16, &r1);
    sse_read_cache_counts(&h1, &m1);
    CHECK(r1.events == 1 && h1 == h0 && m1 == m0);
    sse_store_unsubscribe(st, &sub);

    sse_read_cache_enable();
    test_shared_read(st, row, p);
    test_newer_message(st, row, p);
    test_deleted(st, row, p);
    test_budget(st, row, p);
    test_dropped(st, row, p);
    test_several_channels(st, row, p);
    test_random_twins(st, row, p);
    CHECK(unit_store_violation(st) == NULL);
    apr_pool_destroy(p);
}
