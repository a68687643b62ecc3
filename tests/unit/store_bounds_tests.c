/* store_bounds_tests.c - unit tests of the store's bounds: the part of the
 * channel table subscribers may fill, which channels are recycled first, a
 * refused subscription leaving no counts behind, the per-client stream
 * table (sse_store_clients.c), and reads that find their place in O(1).
 */
#include <unistd.h>

#include "apr_global_mutex.h"
#include "apr_strings.h"

#include "unit.h"
#include "sse_store.h"

static apr_pool_t *pool;

/* counts one check however many times it runs */
#define CHECK_QUIET(cond) do { if (!(cond)) { CHECK(cond); } } while (0)

static sse_store *store_of(apr_uint32_t channels, apr_uint32_t max_streams,
                           const sse_store_limits *lim)
{
    apr_global_mutex_t *mutex;
    sse_store *st = NULL;
    sse_store_geometry geo = { 1 << 20, channels, 4, max_streams };
    const char *why = NULL;
    CHECK(apr_global_mutex_create(&mutex, NULL, APR_LOCK_DEFAULT, pool)
          == APR_SUCCESS);
    CHECK(sse_store_create(&st, pool, &geo, NULL, mutex, &why)
          == APR_SUCCESS);
    sse_store_set_limits(st, lim);
    return st;
}

static sse_result subscribe(sse_store *st, int row, const char *names,
                            const unsigned char *client,
                            sse_subscription *sub)
{
    char *list = apr_pstrdup(pool, names), *last, *tok;
    const char *arr[SSE_MAX_STREAM_CHANNELS];
    const char *which;
    sse_resume resume;
    int n = 0;
    for (tok = apr_strtok(list, ",", &last); tok;
         tok = apr_strtok(NULL, ",", &last)) {
        arr[n++] = tok;
    }
    return sse_store_subscribe(st, row, arr, n, 1, client, NULL, sub,
                               &resume, &which);
}

static int publish(sse_store *st, const char *channel)
{
    const char *frame = "data: x\n\n";
    apr_size_t len = strlen(frame);
    apr_uint64_t id;
    apr_uint32_t subs;
    return sse_store_publish(st, channel, &frame, &len, 1, &id, &subs)
           == SSE_OK;
}

static apr_uint32_t subscribers_of(sse_store *st, const char *channel)
{
    sse_channel_info info;
    if (sse_store_channel_info(st, channel, &info) != SSE_OK) return 999;
    return info.subscribers;
}

/* A table of 8 leaves 2 slots to publishers. A second stream whose first
 * channel takes the last slot subscribers may fill must not recycle that
 * very channel for its second name (it used to: both names then shared a
 * slot, the stream got every event twice and the other name's publishes
 * went nowhere). */
static void test_subscriber_room_and_refusal(void)
{
    sse_store_limits lim = { 10, 0, 0, 0, 0, 0 };
    sse_store *st = store_of(8, 64, &lim);
    int row = sse_store_child_attach(st, (apr_int32_t)getpid());
    sse_subscription a, b;
    sse_store_status status;

    CHECK(subscribe(st, row, "a1,a2,a3,a4,a5", NULL, &a) == SSE_OK);
    CHECK(subscribe(st, row, "p,q", NULL, &b) == SSE_TABLE_FULL);
    CHECK(subscribers_of(st, "p") == 0);
    CHECK(subscribers_of(st, "q") == 999);
    CHECK(subscribers_of(st, "a1") == 1);
    /* publishers may still create the last two, then take p, which no
     * one subscribes to and no one ever published to */
    CHECK(publish(st, "x1") && publish(st, "x2"));
    CHECK(publish(st, "x3"));
    CHECK(subscribers_of(st, "p") == 999);
    CHECK(!publish(st, "x4"));
    sse_store_status_get(st, pool, &status);
    CHECK(status.busy[SSE_BUSY_TABLE] == 1);
    sse_store_unsubscribe(st, &a);
    CHECK(unit_store_violation(st) == NULL);
}

/* When the table is full, a channel only subscribers ever asked for goes
 * before one that was published to. */
static void test_recycling_prefers_unpublished(void)
{
    /* history expires at once, so published channels become empty */
    sse_store_limits lim = { 10, 1, 0, 0, 0, 0 };
    sse_store *st = store_of(8, 64, &lim);
    int row = sse_store_child_attach(st, (apr_int32_t)getpid());
    sse_subscription sub;
    char name[16];
    int i;

    CHECK(publish(st, "pub0"));
    CHECK(subscribe(st, row, "lonely", NULL, &sub) == SSE_OK);
    sse_store_unsubscribe(st, &sub);
    for (i = 1; i <= 6; i++) {
        apr_snprintf(name, sizeof(name), "pub%d", i);
        CHECK(publish(st, name));
    }
    apr_sleep(10);
    CHECK(publish(st, "newcomer"));
    CHECK(subscribers_of(st, "lonely") == 999);
    CHECK(subscribers_of(st, "pub0") == 0);
    CHECK(publish(st, "second"));   /* now a published, empty one goes */
    CHECK(unit_store_violation(st) == NULL);
}

static void addr_of(unsigned char *a, int n)
{
    memset(a, 0, 16);
    a[10] = a[11] = 0xff;
    a[12] = 10;
    a[13] = (unsigned char)(n >> 16);
    a[14] = (unsigned char)(n >> 8);
    a[15] = (unsigned char)n;
}

static void test_per_client_limit(void)
{
    sse_store_limits lim = { 10, 0, 0, 0, 0, 2 };
    sse_store *st = store_of(64, 64, &lim);
    int row = sse_store_child_attach(st, (apr_int32_t)getpid());
    unsigned char one[16], two[16];
    sse_subscription s[4];
    sse_store_status status;

    addr_of(one, 1);
    addr_of(two, 2);
    CHECK(subscribe(st, row, "c", one, &s[0]) == SSE_OK);
    CHECK(subscribe(st, row, "c", one, &s[1]) == SSE_OK);
    CHECK(subscribe(st, row, "c", one, &s[2]) == SSE_CLIENT_LIMIT);
    CHECK(subscribe(st, row, "c", two, &s[2]) == SSE_OK);
    /* not counted at all: the C API and tests pass no address */
    CHECK(subscribe(st, row, "c", NULL, &s[3]) == SSE_OK);
    sse_store_unsubscribe(st, &s[3]);
    sse_store_unsubscribe(st, &s[0]);
    CHECK(subscribe(st, row, "c", one, &s[0]) == SSE_OK);
    sse_store_status_get(st, pool, &status);
    CHECK(status.busy[SSE_BUSY_CLIENT] == 1);
    /* a child's share leaves with its row */
    sse_store_child_detach(st, row, (apr_int32_t)getpid());
    row = sse_store_child_attach(st, (apr_int32_t)getpid());
    CHECK(subscribe(st, row, "c", one, &s[0]) == SSE_OK);
    CHECK(subscribe(st, row, "c", one, &s[1]) == SSE_OK);
    CHECK(unit_store_violation(st) == NULL);
}

/* Many addresses in and out in a scrambled order: every remaining entry is
 * still found after the deletions moved entries back along their chains. */
static void test_client_table_churn(void)
{
    enum { N = 900 };
    sse_store_limits lim = { 10, 0, 0, 0, 0, 1 };
    sse_store *st = store_of(16, N, &lim);
    int row = sse_store_child_attach(st, (apr_int32_t)getpid());
    static sse_subscription subs[N];
    unsigned char a[16];
    sse_subscription extra;
    int i, found = 0, freed = 0;

    for (i = 0; i < N; i++) {
        addr_of(a, i);
        CHECK(subscribe(st, row, "churn", a, &subs[i]) == SSE_OK);
    }
    for (i = 0; i < N; i++) {
        int k = (i * 7919) % N;
        if (k % 3) sse_store_unsubscribe(st, &subs[k]);
    }
    for (i = 0; i < N; i++) {
        sse_result r;
        addr_of(a, i);
        r = subscribe(st, row, "churn", a, &extra);
        if (i % 3) {
            freed += r == SSE_OK;
            if (r == SSE_OK) sse_store_unsubscribe(st, &extra);
        }
        else {
            found += r == SSE_CLIENT_LIMIT;
        }
    }
    CHECK(found == (N + 2) / 3);
    CHECK(freed == N - (N + 2) / 3);
    CHECK(unit_store_violation(st) == NULL);
}

/* A replay of a long history in the smallest budget (one message per
 * read) must find where it left off without walking the list each time:
 * that walk ran under the store lock and made long replays quadratic. */
static void test_replay_walks_linearly(void)
{
    enum { N = 3000 };
    sse_store_limits lim = { N, 0, 0, 0, 0, 0 };
    sse_store *st = store_of(16, 64, &lim);
    int row = sse_store_child_attach(st, (apr_int32_t)getpid());
    const char *names[] = { "long", "other" };
    sse_subscription sub;
    sse_read_result res;
    sse_resume resume;
    const char *which;
    apr_uint64_t steps, ids = 0, last = 0;
    int i, ok = 1;

    for (i = 0; i < N; i++) {
        CHECK_QUIET(publish(st, i % 10 ? "long" : "other"));
    }
    CHECK(sse_store_subscribe(st, row, names, 2, 1, NULL, "0", &sub, &resume,
                              &which) == SSE_OK);
    steps = sse_store_walk_steps(st);
    do {
        sse_store_read(st, &sub, pool, 1, &res);
        ids += res.events;
        ok &= res.events == 1 && res.first_id > last;
        last = res.last_id;
    } while (res.more);
    CHECK(ok && ids == N);
    /* one step per read at most, not one per message behind the cursor */
    CHECK(sse_store_walk_steps(st) - steps <= N);
    sse_store_unsubscribe(st, &sub);
}

void store_bounds_tests(apr_pool_t *p)
{
    pool = p;
    test_subscriber_room_and_refusal();
    test_recycling_prefers_unpublished();
    test_per_client_limit();
    test_client_table_churn();
    test_replay_walks_linearly();
}
