/* store_random_tests.c - randomized damage to the store, with a fixed seed
 * so that a failure repeats (the operations and the damage repeat; ids and
 * message ages come from the clock). Each round builds a store with random
 * publishes, subscriptions, reads and deletions, overwrites random bytes
 * of its header, channel table, child rows and counts, client table or
 * blocks, and repairs. Every invariant must hold afterwards, reads must
 * stay whole, and the store must keep working; repair must never crash
 * or loop (a loop hangs "make unit").
 */
#include <stdio.h>
#include <unistd.h>

#include "apr_global_mutex.h"
#include "apr_strings.h"

#include "unit.h"
#include "sse_store_layout.h"

#define ROUNDS    2000
#define NAMES     6
#define MAX_SUBS  12
#define DEAD_PID  ((apr_int32_t)0x7ffffff0)   /* above any pid_max */

typedef struct {
    sse_store *st;
    apr_pool_t *p;
    int row, dead_row;
    /* live ones may be unsubscribed; those made before the damage, or on
     * the dead child's row, are only read (their counts are not theirs
     * any more once repair has been at them) */
    sse_subscription live[MAX_SUBS], kept[MAX_SUBS];
    int nlive, nkept;
} round_ctx;

static apr_uint64_t seed = 0x9e3779b97f4a7c15ULL;
static apr_global_mutex_t *mutex;
static int reported;

static apr_uint32_t rnd(apr_uint32_t n)
{
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    return (apr_uint32_t)((seed >> 11) % n);
}

/* Counts a failure; prints the first few only. */
static void fail(int round, const char *what, const char *why)
{
    unit_checks++;
    unit_failures++;
    if (reported++ < 5) {
        fprintf(stderr, "store_random_tests.c: round %d, %s: %s\n", round,
                what, why);
    }
}

static void pass(void)
{
    unit_checks++;
}

static void expect_intact(round_ctx *rc, int round, const char *after)
{
    const char *why = unit_store_violation(rc->st);
    if (why) fail(round, after, why);
    else pass();
}

static void op_publish(round_ctx *rc)
{
    const char *frames[2];
    apr_size_t lens[2];
    apr_uint64_t id;
    apr_uint32_t subs;
    int n = 1 + (int)rnd(2), i;
    for (i = 0; i < n; i++) {
        apr_size_t len = rnd(500), k;
        char *f = apr_palloc(rc->p, len + 9);
        memcpy(f, "data: ", 6);
        for (k = 0; k < len; k++) f[6 + k] = (char)('a' + rnd(26));
        memcpy(f + 6 + len, "\n\n", 3);
        frames[i] = f;
        lens[i] = len + 8;
    }
    sse_store_publish(rc->st, apr_psprintf(rc->p, "c%u", rnd(NAMES)),
                      frames, lens, n, &id, &subs);
}

static void op_subscribe(round_ctx *rc, int on_dead_row)
{
    const char *names[3], *which, *last = NULL;
    unsigned char addr[16] = { 0 };
    sse_subscription sub;
    sse_resume resume;
    int n = 1 + (int)rnd(3), i, first = (int)rnd(NAMES);
    int row = on_dead_row ? rc->dead_row : rc->row;
    for (i = 0; i < n; i++) {
        names[i] = apr_psprintf(rc->p, "c%d", (first + i) % NAMES);
    }
    switch (rnd(3)) {
    case 0: last = "0"; break;
    case 1:
        last = apr_psprintf(rc->p, "%" APR_UINT64_T_FMT,
                            rc->st->hdr->last_id - rnd(4));
        break;
    }
    addr[15] = (unsigned char)rnd(3);
    /* a row is only used while the process still holds it (reaping
     * takes the dead child's away) */
    if (row < 0 || rc->st->children[row].pid
                   != (on_dead_row ? DEAD_PID : (apr_int32_t)getpid())
        || sse_store_subscribe(rc->st, row, names, n, (int)rnd(2),
                                       rnd(2) ? addr : NULL, last, &sub,
                                       &resume, &which) != SSE_OK) {
        return;
    }
    if (on_dead_row) {
        if (rc->nkept < MAX_SUBS) rc->kept[rc->nkept++] = sub;
    }
    else if (rc->nlive < MAX_SUBS) {
        rc->live[rc->nlive++] = sub;
    }
    else {
        sse_store_unsubscribe(rc->st, &sub);
    }
}

static void op_read(round_ctx *rc, int round)
{
    int n = rc->nlive + rc->nkept, i;
    sse_subscription *sub;
    sse_read_result res;
    apr_uint64_t before;
    const char *why;
    if (!n) return;
    i = (int)rnd((apr_uint32_t)n);
    sub = i < rc->nlive ? &rc->live[i] : &rc->kept[i - rc->nlive];
    before = sub->cursor;
    sse_store_read(rc->st, sub, rc->p, 1 + rnd(1500), &res);
    if ((why = unit_read_problem(&res, before))) {
        fail(round, "read", why);
    }
    else {
        pass();
    }
    if (res.deleted && i < rc->nlive) {
        sse_store_unsubscribe(rc->st, sub);
        rc->live[i] = rc->live[--rc->nlive];
    }
}

static void random_op(round_ctx *rc, int round)
{
    sse_store_limits lim;
    switch (rnd(12)) {
    case 0: case 1: case 2: case 3:
        op_publish(rc);
        break;
    case 4: case 5:
        op_subscribe(rc, rnd(4) == 0);
        break;
    case 6:
        if (rc->nlive) {
            int i = (int)rnd((apr_uint32_t)rc->nlive);
            sse_store_unsubscribe(rc->st, &rc->live[i]);
            rc->live[i] = rc->live[--rc->nlive];
        }
        break;
    case 7: case 8:
        op_read(rc, round);
        break;
    case 9:
        sse_store_delete(rc->st, apr_psprintf(rc->p, "c%u", rnd(NAMES)),
                         &(sse_channel_info){ 0 });
        break;
    case 10:
        /* everything older than a microsecond expires */
        lim = *sse_store_get_limits(rc->st);
        lim.history_max_age = 1;
        sse_store_set_limits(rc->st, &lim);
        sse_store_list(rc->st, rc->p);
        lim.history_max_age = 0;
        sse_store_set_limits(rc->st, &lim);
        break;
    default:
        sse_store_reap_children(rc->st);
        break;
    }
}

/* Overwrites a few bytes of one part of the segment: a flipped bit, a
 * random byte, or a random or nudged 32-bit word. */
static void damage(round_ctx *rc)
{
    const store_shape *s = &rc->st->shape;
    apr_uint64_t from, to, at;
    int n = 1 + (int)rnd(6);
    while (n--) {
        switch (rnd(5)) {
        case 0: from = 0; to = sizeof(store_header); break;
        case 1:
            from = s->channels_off;
            to = from + (apr_uint64_t)s->max_channels * sizeof(store_channel);
            break;
        case 2: from = s->children_off; to = s->clients_off; break;
        case 3:
            from = s->clients_off;
            to = from + (apr_uint64_t)s->client_slots * sizeof(store_client);
            break;
        default: from = s->blocks_off; to = s->size; break;
        }
        at = from + rnd((apr_uint32_t)(to - from));
        switch (rnd(4)) {
        case 0:
            rc->st->base[at] ^= (char)(1 << rnd(8));
            break;
        case 1:
            rc->st->base[at] = (char)rnd(256);
            break;
        default:
            at &= ~(apr_uint64_t)3;
            if (at + 4 <= to) {
                apr_uint32_t *w = (apr_uint32_t *)(rc->st->base + at);
                *w = rnd(2) ? (apr_uint32_t)rnd(0x7fffffff) : *w + rnd(3) - 1;
            }
        }
    }
}

static int one_round(int round)
{
    round_ctx rc;
    sse_store_geometry geo = { 40 * 1024, 8, 4, 16 };
    sse_store_limits lim = { 2 + rnd(5), 0, 0, 0, 0, 2 };
    const char *why = NULL;
    int i, fixed;

    memset(&rc, 0, sizeof(rc));
    apr_pool_create(&rc.p, NULL);
    if (sse_store_create(&rc.st, rc.p, &geo, NULL, mutex, &why)) {
        fail(round, "create", why);
        apr_pool_destroy(rc.p);
        return 0;
    }
    sse_store_set_limits(rc.st, &lim);
    rc.row = sse_store_child_attach(rc.st, (apr_int32_t)getpid());
    rc.dead_row = sse_store_child_attach(rc.st, DEAD_PID);
    for (i = 10 + (int)rnd(40); i > 0; i--) {
        random_op(&rc, round);
    }
    expect_intact(&rc, round, "random operations");
    damage(&rc);
    for (i = 0; i < rc.nlive && rc.nkept < MAX_SUBS; i++) {
        rc.kept[rc.nkept++] = rc.live[i];
    }
    rc.nlive = 0;
    sse_store_mark_dirty_nolock(rc.st);
    apr_global_mutex_lock(mutex);
    fixed = sse_store_repair_nolock(rc.st);
    apr_global_mutex_unlock(mutex);
    expect_intact(&rc, round, "repair");
    /* the damage may have freed this process's row */
    rc.row = sse_store_child_attach(rc.st, (apr_int32_t)getpid());
    for (i = 0; i < 20; i++) {
        random_op(&rc, round);
        expect_intact(&rc, round, "an operation after repair");
    }
    for (i = 0; i < rc.nlive; i++) {
        sse_store_unsubscribe(rc.st, &rc.live[i]);
    }
    expect_intact(&rc, round, "unsubscribing");
    apr_pool_destroy(rc.p);
    return fixed > 0;
}

void store_random_tests(apr_pool_t *p)
{
    int round, repaired = 0;
    CHECK(apr_global_mutex_create(&mutex, NULL, APR_LOCK_DEFAULT, p)
          == APR_SUCCESS);
    for (round = 0; round < ROUNDS; round++) {
        repaired += one_round(round);
    }
    /* most damage lands somewhere that matters */
    CHECK(repaired > ROUNDS / 2);
}
