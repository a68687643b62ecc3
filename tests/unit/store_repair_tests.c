/* store_repair_tests.c - unit tests of crash repair (sse_store_repair.c):
 * each test breaks a known-good store on purpose in one way, shows that
 * the invariant checker (sse_store_check.c) sees the damage, repairs, and
 * proves that every invariant holds again and that the data that was
 * intact still reads back byte for byte.
 */
#include <stdio.h>
#include <unistd.h>

#include "apr_global_mutex.h"
#include "apr_strings.h"

#include "unit.h"
#include "sse_store_layout.h"

#define NCHAN 3
#define MSGS  6
#define DEAD_PID ((apr_int32_t)0x7ffffff0)   /* above any pid_max */

static apr_pool_t *pool;
static const char *const names[NCHAN] = { "alpha", "beta", "gamma" };

/* A store with MSGS messages in each channel, published in turn, every
 * other one long enough to need two blocks. */
typedef struct {
    sse_store *st;
    int row;
    apr_uint64_t id[NCHAN][MSGS];
    const char *text[NCHAN][MSGS];   /* as a reader gets it, id: line too */
} fixture;

/* What one reader saw from the start of a channel's history. */
typedef struct {
    int n, gap, deleted;
    apr_uint64_t id[MSGS * 4];
    const char *text[MSGS * 4];
} reading;

const char *unit_store_violation(sse_store *st)
{
    static char why[256];
    int rv;
    apr_global_mutex_lock(*sse_store_mutex(st));
    rv = sse_store_check_nolock(st, why, sizeof(why));
    apr_global_mutex_unlock(*sse_store_mutex(st));
    return rv ? why : NULL;
}

#define CHECK_INTACT(st) do { const char *v_ = unit_store_violation(st); \
    unit_checks++; if (v_) { unit_failures++; fprintf(stderr, \
    "%s:%d: store invariant broken: %s\n", __FILE__, __LINE__, v_); } \
} while (0)

static void setup(fixture *fx)
{
    int k, c;
    fx->st = unit_store_new(64 * 1024, 8, 10);
    fx->row = sse_store_child_attach(fx->st, (apr_int32_t)getpid());
    for (k = 0; k < MSGS; k++) {
        for (c = 0; c < NCHAN; c++) {
            char pad[401];
            const char *frame;
            memset(pad, 'a' + k, 400);
            pad[(k % 2) ? 400 : 8] = '\0';
            frame = apr_psprintf(pool, "data: %s %d %s\n\n", names[c], k,
                                 pad);
            fx->id[c][k] = unit_publish(fx->st, names[c], frame);
            fx->text[c][k] = apr_psprintf(pool, "id: %" APR_UINT64_T_FMT
                                          "\n%s", fx->id[c][k], frame);
        }
    }
    CHECK_INTACT(fx->st);
}

static store_channel *slot_of(sse_store *st, const char *name)
{
    apr_uint32_t i;
    for (i = 0; i < st->hdr->max_channels; i++) {
        if (st->channels[i].state == SLOT_USED
            && !strcmp(st->channels[i].name, name)) {
            return &st->channels[i];
        }
    }
    return NULL;
}

/* The block of the k-th oldest message of a channel. */
static apr_uint32_t msg_block(sse_store *st, const char *name, int k)
{
    apr_uint32_t b = slot_of(st, name)->head;
    while (k--) b = store_msg_at(st, b)->newer;
    return b;
}

/* Publishes to "delta" until memory is full: every free block is used. */
static void fill_memory(sse_store *st)
{
    int i;
    for (i = 0; i < 1000 && unit_publish(st, "delta", "data: fill\n\n"); i++) {
    }
}

static int repair_now(sse_store *st)
{
    int fixed;
    apr_global_mutex_lock(*sse_store_mutex(st));
    fixed = sse_store_repair_nolock(st);
    apr_global_mutex_unlock(*sse_store_mutex(st));
    return fixed;
}

/* As after a holder died: the next locked call repairs. */
static void repair_on_next_lock(sse_store *st)
{
    sse_store_status status;
    apr_uint32_t before = st->hdr->repairs;
    sse_store_mark_dirty_nolock(st);
    sse_store_status_get(st, pool, &status);
    CHECK(status.repairs == before + 1);
}

static sse_result read_all(sse_store *st, int row, const char *name,
                           reading *out)
{
    sse_subscription sub;
    sse_resume resume;
    sse_read_result res;
    const char *which;
    sse_result r = sse_store_subscribe(st, row, &name, 1, 0, NULL, "0",
                                       &sub, &resume, &which);
    memset(out, 0, sizeof(*out));
    if (r != SSE_OK) return r;
    out->gap = resume == SSE_RESUME_EXPIRED;
    do {
        apr_uint32_t i;
        sse_store_read(st, &sub, pool, 1 << 16, &res);
        out->gap |= res.gap;
        out->deleted |= res.deleted;
        for (i = 0; i < res.events && out->n < MSGS * 4; i++) {
            apr_size_t end = i + 1 < res.events ? res.marks[i + 1].offset
                                                : res.len;
            out->id[out->n] = res.marks[i].id;
            out->text[out->n++] = apr_pstrmemdup(pool,
                                                 res.buf + res.marks[i].offset,
                                                 end - res.marks[i].offset);
        }
    } while (res.more && !res.deleted);
    sse_store_unsubscribe(st, &sub);
    return SSE_OK;
}

/* Channel c reads back as exactly its messages from..MSGS-1, and reports
 * a gap exactly when from > 0. */
static void expect_history(fixture *fx, int c, int from)
{
    reading rd;
    int k;
    CHECK(read_all(fx->st, fx->row, names[c], &rd) == SSE_OK);
    CHECK(rd.n == MSGS - from);
    CHECK(rd.gap == (from > 0));
    for (k = from; k < MSGS && k - from < rd.n; k++) {
        CHECK(rd.id[k - from] == fx->id[c][k]);
        CHECK_STR(fx->text[c][k], rd.text[k - from]);
    }
}

static void expect_all_intact(fixture *fx)
{
    int c;
    CHECK_INTACT(fx->st);
    for (c = 0; c < NCHAN; c++) expect_history(fx, c, 0);
}

/* ------------------------------------------------------------- lists */

/* Repairing a store that is intact finds nothing to fix and changes
 * nothing a reader sees. */
static void test_intact_store(void)
{
    fixture fx;
    sse_subscription sub;
    sse_resume resume;
    const char *which;
    unsigned char addr[16] = { 1 };
    setup(&fx);
    CHECK(sse_store_subscribe(fx.st, fx.row, names, 2, 0, addr, "0", &sub,
                              &resume, &which) == SSE_OK);
    CHECK(repair_now(fx.st) == 0);
    expect_all_intact(&fx);
    sse_store_unsubscribe(fx.st, &sub);
    CHECK(fx.st->hdr->clients_used == 0);
    CHECK_INTACT(fx.st);
}

/* A publisher died after writing a message and setting its magic, before
 * linking it: its blocks are off the free list and in no channel, and its
 * chain is cut. Repair returns them; nothing visible changes. */
static void test_half_written_unlinked(void)
{
    fixture fx;
    store_header *h;
    apr_uint32_t b1, b2, free_before;
    msg_head *m;
    setup(&fx);
    h = fx.st->hdr;
    free_before = h->free_blocks;
    b1 = h->free_head;
    b2 = fx.st->blocks[b1].next;
    h->free_head = fx.st->blocks[b2].next;
    h->free_blocks -= 2;
    m = store_msg_at(fx.st, b1);
    m->len = 300;
    m->nblocks = 2;
    m->id = h->last_id + 1;
    m->slot = (apr_uint32_t)(slot_of(fx.st, "alpha") - fx.st->channels);
    m->magic = MSG_MAGIC;
    fx.st->blocks[b1].next = 0;
    CHECK(unit_store_violation(fx.st) != NULL);
    repair_on_next_lock(fx.st);
    expect_all_intact(&fx);
    CHECK(h->free_blocks == free_before);
    CHECK(unit_publish(fx.st, "alpha", "data: next\n\n") == h->first_id
          + NCHAN * MSGS);
}

/* The same message linked as the tail and published (last_id counts it),
 * but with its chain cut: it is lost for readers, and since history may
 * only be lost from its old end, all of alpha goes with a gap; the other
 * channels are untouched. */
static void test_half_written_linked(void)
{
    fixture fx;
    store_channel *ch;
    reading rd;
    setup(&fx);
    ch = slot_of(fx.st, "alpha");
    fx.st->blocks[ch->tail].next = 0;   /* a two-block message, cut */
    CHECK(unit_store_violation(fx.st) != NULL);
    CHECK(repair_now(fx.st) > 0);
    CHECK_INTACT(fx.st);
    CHECK(ch->messages == 0 && ch->evicted_upto == fx.st->hdr->last_id);
    CHECK(read_all(fx.st, fx.row, "alpha", &rd) == SSE_OK);
    CHECK(rd.n == 0 && rd.gap);
    expect_history(&fx, 1, 0);
    expect_history(&fx, 2, 0);
}

/* Linked as the tail and fully written, but the publisher died before
 * counting its id in last_id and newest_id: it got no answer and no reader
 * saw the message, so the message goes, without a gap for anybody, and
 * its id is given to the next publish. */
static void test_linked_not_counted(void)
{
    fixture fx;
    store_channel *ch;
    store_header *h;
    apr_uint64_t id;
    reading rd;
    setup(&fx);
    h = fx.st->hdr;
    ch = slot_of(fx.st, "alpha");
    id = unit_publish(fx.st, "alpha", "data: torn\n\n");
    h->last_id = id - 1;               /* as if it died just before */
    ch->newest_id = id - 1;
    ch->messages--;
    CHECK(unit_store_violation(fx.st) != NULL);
    repair_on_next_lock(fx.st);
    CHECK_INTACT(fx.st);
    CHECK(h->last_id == id - 1 && ch->newest_id == id - 1);
    CHECK(read_all(fx.st, fx.row, "alpha", &rd) == SSE_OK);
    CHECK(rd.n == MSGS && !rd.gap);
    expect_history(&fx, 0, 0);
    expect_history(&fx, 1, 0);
    CHECK(unit_publish(fx.st, "beta", "data: again\n\n") == id);
}

/* The same, the channel's only message: the channel is empty and whole. */
static void test_first_message_not_counted(void)
{
    fixture fx;
    store_channel *ch;
    store_header *h;
    apr_uint64_t id;
    reading rd;
    setup(&fx);
    h = fx.st->hdr;
    id = unit_publish(fx.st, "fresh", "data: torn\n\n");
    ch = slot_of(fx.st, "fresh");
    h->last_id = id - 1;
    ch->newest_id = ch->evicted_upto;
    ch->messages--;
    CHECK(unit_store_violation(fx.st) != NULL);
    repair_on_next_lock(fx.st);
    CHECK_INTACT(fx.st);
    CHECK(ch->messages == 0 && ch->evicted_upto < id);
    CHECK(read_all(fx.st, fx.row, "fresh", &rd) == SSE_OK);
    CHECK(rd.n == 0 && !rd.gap);
}

/* A message in the middle of alpha lost its magic: the messages after it
 * stay, the ones before it go with the broken one, as a gap. */
static void test_bad_magic_in_the_middle(void)
{
    fixture fx;
    setup(&fx);
    store_msg_at(fx.st, msg_block(fx.st, "alpha", 2))->magic = 0;
    CHECK(unit_store_violation(fx.st) != NULL);
    repair_on_next_lock(fx.st);
    CHECK_INTACT(fx.st);
    CHECK(slot_of(fx.st, "alpha")->evicted_upto == fx.id[0][3] - 1);
    expect_history(&fx, 0, 3);
    expect_history(&fx, 1, 0);
    expect_history(&fx, 2, 0);
}

/* A two-block message whose chain loops back to its first block: it is
 * broken like a bad magic. */
static void test_chain_loops_back(void)
{
    fixture fx;
    apr_uint32_t b;
    setup(&fx);
    b = msg_block(fx.st, "beta", 1);
    fx.st->blocks[fx.st->blocks[b].next].next = b;
    CHECK(unit_store_violation(fx.st) != NULL);
    CHECK(repair_now(fx.st) > 0);
    CHECK_INTACT(fx.st);
    expect_history(&fx, 0, 0);
    expect_history(&fx, 1, 2);
    expect_history(&fx, 2, 0);
}

/* The newest message's newer link points back at the oldest: a loop in
 * the list, which the tail still ends. Nothing is lost. */
static void test_list_loops_back(void)
{
    fixture fx;
    setup(&fx);
    store_msg_at(fx.st, slot_of(fx.st, "gamma")->tail)->newer
        = slot_of(fx.st, "gamma")->head;
    CHECK(unit_store_violation(fx.st) != NULL);
    CHECK(repair_now(fx.st) > 0);
    expect_all_intact(&fx);
}

/* beta's second message continues into a block of alpha's second: one of
 * the two keeps the block, the other is broken; whatever either channel
 * returns is exactly what was published, and gamma is untouched. */
static void test_block_in_two_chains(void)
{
    fixture fx;
    apr_uint32_t a, b;
    reading rd;
    int c, k;
    setup(&fx);
    a = msg_block(fx.st, "alpha", 1);
    b = msg_block(fx.st, "beta", 1);
    fx.st->blocks[b].next = fx.st->blocks[a].next;
    CHECK(unit_store_violation(fx.st) != NULL);
    repair_on_next_lock(fx.st);
    CHECK_INTACT(fx.st);
    for (c = 0; c < 2; c++) {
        CHECK(read_all(fx.st, fx.row, names[c], &rd) == SSE_OK);
        CHECK(rd.n == MSGS || (rd.n == MSGS - 2 && rd.gap));
        for (k = 0; k < rd.n; k++) {
            CHECK_STR(fx.text[c][MSGS - rd.n + k], rd.text[k]);
        }
    }
    expect_history(&fx, 2, 0);
}

/* The free list runs into a message: the next publish would overwrite
 * it. After repair, publishing until memory is full leaves every
 * message that was intact as it was. */
static void test_free_list_into_message(void)
{
    fixture fx;
    apr_uint32_t b;
    setup(&fx);
    b = fx.st->hdr->free_head;
    while (fx.st->blocks[b].next) b = fx.st->blocks[b].next;
    fx.st->blocks[b].next = msg_block(fx.st, "alpha", 0);
    CHECK(unit_store_violation(fx.st) != NULL);
    CHECK(repair_now(fx.st) > 0);
    expect_all_intact(&fx);
    fill_memory(fx.st);
    CHECK_INTACT(fx.st);
    expect_history(&fx, 0, 0);
}

/* One link of a pair broken each way: the other direction still tells
 * the order, so nothing is lost and no gap is reported. */
static void test_broken_newer_older(void)
{
    fixture fx;
    setup(&fx);
    /* alpha's second skips its third; beta's fourth forgets its third */
    store_msg_at(fx.st, msg_block(fx.st, "alpha", 1))->newer
        = msg_block(fx.st, "alpha", 3);
    store_msg_at(fx.st, msg_block(fx.st, "beta", 3))->older = 0;
    CHECK(unit_store_violation(fx.st) != NULL);
    repair_on_next_lock(fx.st);
    expect_all_intact(&fx);
    /* a head pointer gone wrong: the older links find the oldest */
    slot_of(fx.st, "gamma")->head = msg_block(fx.st, "gamma", 2) + 1;
    CHECK(unit_store_violation(fx.st) != NULL);
    CHECK(repair_now(fx.st) > 0);
    expect_all_intact(&fx);
}

/* ---------------------------------------------------------- counters */

enum {
    BAD_MESSAGES, BAD_BLOCKS, BAD_FREE_BLOCKS, BAD_CHANNELS_USED,
    BAD_CLIENTS_USED, BAD_EVICTED_UPTO, BAD_NEWEST_ID, BAD_LAST_ID,
    BAD_FREED_NEXT, BAD_GEOMETRY, BAD_COUNT, BAD_COUNTERS
};

/* One wrong counter at a time; each is seen, and repair sets it right
 * without touching any message. */
static void test_wrong_counters(void)
{
    int which;
    for (which = 0; which < BAD_COUNTERS; which++) {
        fixture fx;
        store_channel *ch;
        store_header *h;
        sse_subscription sub;
        sse_resume resume;
        const char *which_name;
        unsigned char addr[16] = { 0 };
        setup(&fx);
        h = fx.st->hdr;
        ch = slot_of(fx.st, "beta");
        addr[15] = 7;
        CHECK(sse_store_subscribe(fx.st, fx.row, &names[1], 1, 0, addr, NULL,
                                  &sub, &resume, &which_name) == SSE_OK);
        switch (which) {
        case BAD_MESSAGES:      ch->messages++; break;
        case BAD_BLOCKS:        ch->blocks -= 1; break;
        case BAD_FREE_BLOCKS:   h->free_blocks += 5; break;
        case BAD_CHANNELS_USED: h->channels_used++; break;
        case BAD_CLIENTS_USED:  h->clients_used--; break;
        case BAD_EVICTED_UPTO:  ch->evicted_upto = fx.id[1][2]; break;
        case BAD_NEWEST_ID:     ch->newest_id = fx.id[1][2]; break;
        case BAD_LAST_ID:       h->last_id = h->first_id - 5; break;
        case BAD_FREED_NEXT:    h->freed_next = 70000; break;
        case BAD_GEOMETRY:      h->max_channels = 0; h->nblocks = ~0u; break;
        case BAD_COUNT:
            *store_count_at(fx.st, fx.row,
                            (apr_uint32_t)(ch - fx.st->channels)) = 9;
            break;
        }
        CHECK(unit_store_violation(fx.st) != NULL);
        CHECK(repair_now(fx.st) > 0);
        CHECK_INTACT(fx.st);
        if (which == BAD_EVICTED_UPTO) {
            /* what lies below the oldest is gone, as far as anyone knows */
            CHECK(ch->evicted_upto == fx.id[1][0] - 1);
        }
        else {
            expect_all_intact(&fx);
        }
        CHECK(slot_of(fx.st, "beta")->newest_id == fx.id[1][MSGS - 1]);
        sse_store_unsubscribe(fx.st, &sub);
        CHECK_INTACT(fx.st);
        CHECK(sse_store_delete(fx.st, "gamma", &(sse_channel_info){ 0 })
              == SSE_OK);
        CHECK(unit_publish(fx.st, "gamma", "data: back\n\n") != 0);
        CHECK_INTACT(fx.st);
    }
}

/* ------------------------------------------------------ channel table */

/* A subscribed channel's state becomes a value that is not a state. The
 * slot is dropped, and the stream learns that its channel is gone rather
 * than reading a list whose blocks went back to the free list. */
static void test_bad_state(void)
{
    fixture fx;
    sse_subscription sub;
    sse_resume resume;
    sse_read_result res;
    const char *which;
    setup(&fx);
    CHECK(sse_store_subscribe(fx.st, fx.row, &names[0], 1, 0, NULL, "0",
                              &sub, &resume, &which) == SSE_OK);
    slot_of(fx.st, "alpha")->state = 7;
    CHECK(unit_store_violation(fx.st) != NULL);
    repair_on_next_lock(fx.st);
    CHECK_INTACT(fx.st);
    CHECK(sse_store_has_news(fx.st, &sub));
    sse_store_read(fx.st, &sub, pool, 1 << 16, &res);
    CHECK(res.deleted && res.events == 0);
    CHECK_INTACT(fx.st);
    sse_store_unsubscribe(fx.st, &sub);
    /* the blocks it held are free again and may be reused */
    fill_memory(fx.st);
    CHECK_INTACT(fx.st);
    expect_history(&fx, 1, 0);
    expect_history(&fx, 2, 0);
}

/* The same, but the write that broke the state also took one off the
 * incarnation, so repair's bump gives the stream's number back: the
 * stream must still learn that its channel is gone (found by
 * fuzz/fuzz_store.c: one 32-bit write across state and incarnation). */
static void test_bad_state_and_incarnation(void)
{
    fixture fx;
    sse_subscription sub;
    sse_resume resume;
    sse_read_result res;
    const char *which;
    store_channel *ch;
    setup(&fx);
    CHECK(sse_store_subscribe(fx.st, fx.row, &names[1], 1, 0, NULL, "0",
                              &sub, &resume, &which) == SSE_OK);
    ch = slot_of(fx.st, "beta");
    ch->state = 0x100 | SLOT_USED;
    ch->incarnation--;
    repair_on_next_lock(fx.st);
    CHECK_INTACT(fx.st);
    CHECK(ch->state != SLOT_USED && ch->incarnation == sub.ch[0].incarnation);
    CHECK(sse_store_has_news(fx.st, &sub));
    sse_store_read(fx.st, &sub, pool, 1 << 16, &res);
    CHECK(res.deleted && res.events == 0);
    sse_store_unsubscribe(fx.st, &sub);
    fill_memory(fx.st);
    CHECK_INTACT(fx.st);
    expect_history(&fx, 0, 0);
}

/* A hash that does not match the name: lookups by name would miss it. */
static void test_hash_mismatch(void)
{
    fixture fx;
    setup(&fx);
    slot_of(fx.st, "beta")->hash ^= 0x10000;
    CHECK(unit_store_violation(fx.st) != NULL);
    repair_on_next_lock(fx.st);
    expect_all_intact(&fx);
}

/* A name that fills its whole field without a NUL. */
static void test_name_unterminated(void)
{
    fixture fx;
    store_channel *ch;
    setup(&fx);
    ch = slot_of(fx.st, "gamma");
    memset(ch->name, 'g', sizeof(ch->name));
    CHECK(unit_store_violation(fx.st) != NULL);
    CHECK(repair_now(fx.st) > 0);
    CHECK_INTACT(fx.st);
    CHECK(strlen(ch->name) == SSE_CHANNEL_MAX);
    expect_history(&fx, 0, 0);
    expect_history(&fx, 1, 0);
}

/* Two channels with the same home: the second sits behind the first.
 * When the first slot reads as free, the second must still be found. */
static void test_probe_chain_cut(void)
{
    fixture fx;
    char first[16], second[16];
    apr_uint32_t n, home;
    int i;
    setup(&fx);
    n = fx.st->hdr->max_channels;
    /* two names whose home is a free slot, followed by a free slot */
    for (i = 0;; i++) {
        apr_snprintf(first, sizeof(first), "p%d", i);
        home = (apr_uint32_t)(store_name_hash(first) % n);
        if (fx.st->channels[home].state == SLOT_FREE
            && fx.st->channels[(home + 1) % n].state == SLOT_FREE) break;
    }
    for (i = 0;; i++) {
        apr_snprintf(second, sizeof(second), "q%d", i);
        if (store_name_hash(second) % n == home) break;
    }
    CHECK(unit_publish(fx.st, first, "data: 1\n\n") != 0);
    CHECK(unit_publish(fx.st, second, "data: 2\n\n") != 0);
    CHECK(slot_of(fx.st, second) == &fx.st->channels[(home + 1) % n]);
    fx.st->channels[home].state = SLOT_FREE;
    CHECK(unit_store_violation(fx.st) != NULL);
    repair_on_next_lock(fx.st);
    CHECK_INTACT(fx.st);
    CHECK(sse_store_channel_info(fx.st, second, &(sse_channel_info){ 0 })
          == SSE_OK);
    CHECK(sse_store_channel_info(fx.st, first, &(sse_channel_info){ 0 })
          == SSE_NOT_FOUND);
    expect_all_intact(&fx);
}

/* A second slot with the same name, behind the first on its probe chain:
 * it could never be found, so it goes. */
static void test_duplicate_name(void)
{
    fixture fx;
    store_channel *ch, *copy = NULL;
    apr_uint32_t i, n;
    setup(&fx);
    ch = slot_of(fx.st, "alpha");
    n = fx.st->hdr->max_channels;
    for (i = 1; i < n && !copy; i++) {
        store_channel *o = &fx.st->channels[(ch - fx.st->channels + i) % n];
        if (o->state != SLOT_USED) copy = o;
    }
    memcpy(copy, ch, sizeof(*ch));
    copy->head = copy->tail = 0;
    copy->messages = copy->blocks = 0;
    fx.st->hdr->channels_used++;
    CHECK(unit_store_violation(fx.st) != NULL);
    CHECK(repair_now(fx.st) > 0);
    expect_all_intact(&fx);
    CHECK(fx.st->hdr->channels_used == NCHAN);
}

/* ------------------------------------------------ rows and client table */

static void addr_of(unsigned char *a, int n)
{
    memset(a, 0, 16);
    a[10] = a[11] = 0xff;
    a[12] = 10;
    a[14] = (unsigned char)(n >> 8);
    a[15] = (unsigned char)n;
}

/* A client entry moved away from its probe chain: the per-client limit
 * would no longer see that address's streams. */
static void test_client_moved(void)
{
    fixture fx;
    sse_store_limits lim = { 10, 0, 0, 0, 0, 1 };
    sse_subscription sub[4], extra;
    sse_resume resume;
    const char *which;
    unsigned char a[16];
    apr_uint32_t home, mask, to;
    int i;
    setup(&fx);
    sse_store_set_limits(fx.st, &lim);
    for (i = 0; i < 4; i++) {
        addr_of(a, i);
        CHECK(sse_store_subscribe(fx.st, fx.row, &names[0], 1, 0, a, NULL,
                                  &sub[i], &resume, &which) == SSE_OK);
    }
    addr_of(a, 2);
    mask = fx.st->hdr->client_slots - 1;
    home = store_client_home(fx.st, a);
    CHECK(fx.st->clients[home].streams == 1);
    /* past a free entry: a lookup from home stops before it */
    for (to = (home + 1) & mask; fx.st->clients[to].streams;
         to = (to + 1) & mask) {
    }
    to = (to + 1) & mask;
    while (fx.st->clients[to].streams) to = (to + 1) & mask;
    fx.st->clients[to] = fx.st->clients[home];
    fx.st->clients[home].streams = 0;
    CHECK(unit_store_violation(fx.st) != NULL);
    CHECK(sse_store_subscribe(fx.st, fx.row, &names[0], 1, 0, a, NULL,
                              &extra, &resume, &which) == SSE_OK);
    sse_store_unsubscribe(fx.st, &extra);
    CHECK(unit_store_violation(fx.st) != NULL);
    repair_on_next_lock(fx.st);
    CHECK_INTACT(fx.st);
    CHECK(sse_store_subscribe(fx.st, fx.row, &names[0], 1, 0, a, NULL,
                              &extra, &resume, &which) == SSE_CLIENT_LIMIT);
    for (i = 0; i < 4; i++) sse_store_unsubscribe(fx.st, &sub[i]);
    CHECK_INTACT(fx.st);
    CHECK(fx.st->hdr->clients_used == 0);
    expect_all_intact(&fx);
}

/* Streams of a child that died without its row being reaped: its counts
 * and client entries go with the row. And an entry for a row that is
 * free, which nothing would ever remove. */
static void test_dead_rows(void)
{
    fixture fx;
    sse_subscription sub;
    sse_resume resume;
    sse_channel_info info;
    const char *which;
    unsigned char a[16];
    int dead;
    apr_uint32_t i, free_row = 0;
    setup(&fx);
    dead = sse_store_child_attach(fx.st, DEAD_PID);
    CHECK(dead >= 0 && dead != fx.row);
    addr_of(a, 1);
    CHECK(sse_store_subscribe(fx.st, dead, &names[2], 1, 0, a, NULL, &sub,
                              &resume, &which) == SSE_OK);
    CHECK(sse_store_channel_info(fx.st, "gamma", &info) == SSE_OK
          && info.subscribers == 1);
    CHECK_INTACT(fx.st);                 /* a dead pid is not a violation */
    CHECK(repair_now(fx.st) > 0);
    CHECK_INTACT(fx.st);
    CHECK(fx.st->children[dead].pid == 0 && fx.st->hdr->clients_used == 0);
    CHECK(sse_store_channel_info(fx.st, "gamma", &info) == SSE_OK
          && info.subscribers == 0);
    /* an entry and a count for a free row */
    while (free_row == (apr_uint32_t)fx.row || fx.st->children[free_row].pid) {
        free_row++;
    }
    i = store_client_home(fx.st, a);
    memcpy(fx.st->clients[i].addr, a, 16);
    fx.st->clients[i].row = (apr_int32_t)free_row;
    fx.st->clients[i].streams = 1;
    fx.st->hdr->clients_used++;
    *store_count_at(fx.st, (int)free_row, 0) = 1;
    CHECK(unit_store_violation(fx.st) != NULL);
    repair_on_next_lock(fx.st);
    CHECK(fx.st->hdr->clients_used == 0);
    expect_all_intact(&fx);
}

void store_repair_tests(apr_pool_t *p)
{
    pool = p;
    test_intact_store();
    test_half_written_unlinked();
    test_half_written_linked();
    test_linked_not_counted();
    test_first_message_not_counted();
    test_bad_magic_in_the_middle();
    test_chain_loops_back();
    test_list_loops_back();
    test_block_in_two_chains();
    test_free_list_into_message();
    test_broken_newer_older();
    test_wrong_counters();
    test_bad_state();
    test_bad_state_and_incarnation();
    test_hash_mismatch();
    test_name_unterminated();
    test_probe_chain_cut();
    test_duplicate_name();
    test_client_moved();
    test_dead_rows();
}
