/* fuzz_store.c - libFuzzer target for the shared-memory store
 * (sse_store*.c): the input is a program of store operations run on a
 * small store by several pretend child processes.
 *
 * Operations: publish (events framed by sse_event_frame), subscribe,
 * unsubscribe, read, has_news, delete, expiry, child attach, detach and
 * reap, status, and damage: overwritten bytes anywhere in the segment,
 * followed by repair (directly, or by the next locked call after the
 * dirty flag is set). After every operation every invariant must hold
 * (sse_store_check_nolock); built with SSE_STORE_CHECK, repair checks
 * its own result too. Every read must return whole framed events in
 * rising id order above the cursor; until the first damage, each must be
 * byte for byte what was published, and a read without gap, deletion or
 * "more" must return every message published to the stream's channels
 * after its cursor. A stream that has_news says has nothing new must
 * read nothing.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apr_general.h"
#include "apr_global_mutex.h"
#include "apr_strings.h"

#include "sse_store_layout.h"
#include "unit.h"
#include "fuzz.h"

#define NAMES      8
#define MAX_SUBS   16
#define MAX_OPS    400
#define MAX_PUBS   (MAX_OPS * 6)    /* two publishes of three per op */

static apr_global_mutex_t *mutex;
/* processes that exist (this one, its parent, init) and that cannot */
static apr_int32_t pids[5];

typedef struct {
    sse_subscription sub;
    apr_int32_t pid;         /* of the row it was charged to */
    int kept;                /* its counts may no longer be its own (made
                                before damage, or its row was cleared):
                                read, never unsubscribed */
} stream;

typedef struct {
    apr_uint64_t id;
    apr_uint32_t slot, incarnation;
    const char *text;        /* "id: N\n" + frame */
    apr_size_t len;
} published;

typedef struct {
    const uint8_t *p;
    size_t n;
    apr_pool_t *pool;
    sse_store *st;
    int rows[5];             /* row of each pid, -1 if none */
    stream streams[MAX_SUBS];
    int nstreams;
    published *pubs;
    int npubs;
    int damaged;
    apr_uint64_t last_id;    /* highest id published before any damage */
} run;

static unsigned take(run *r)
{
    if (!r->n) return 0;
    r->n--;
    return *r->p++;
}

static const char *name_of(run *r, unsigned k)
{
    return apr_psprintf(r->pool, "c%u", k % NAMES);
}

static void check(run *r, const char *after)
{
    char why[256];
    apr_global_mutex_lock(mutex);
    if (sse_store_check_nolock(r->st, why, sizeof(why))) {
        FAIL("after %s: %s\n", after, why);
    }
    apr_global_mutex_unlock(mutex);
}

/* A row is used only while its process holds it. */
static int row_of(run *r, int k)
{
    int row = r->rows[k];
    if (row >= 0 && r->st->children[row].pid != pids[k]) {
        r->rows[k] = row = -1;
    }
    return row;
}

static void op_publish(run *r)
{
    const char *frames[3];
    apr_size_t lens[3];
    apr_uint64_t first = 0;
    apr_uint32_t subs;
    const char *channel = name_of(r, take(r)), *idline;
    char *text;
    int n = 1 + (int)(take(r) % 3), i;
    store_channel *ch;
    for (i = 0; i < n; i++) {
        sse_event ev = { NULL, 0, NULL, 0, -1 };
        apr_size_t len = take(r) % 64, k;
        char *data = apr_palloc(r->pool, len * 8 + 1);
        unsigned flags = take(r);
        /* data bytes from the input, stretched so messages span blocks */
        for (k = 0; k < len; k++) {
            memset(data + k * 8, (int)take(r), 8);
        }
        ev.data = data;
        ev.data_len = len * 8;
        if (flags & 1) {
            ev.event = (flags & 2) ? "tick" : "sse-x";
            ev.event_len = strlen(ev.event);
            if (sse_event_type_problem(ev.event, ev.event_len)) {
                ev.event = NULL;
                ev.event_len = 0;
            }
        }
        if (flags & 4) ev.retry = (long)(flags >> 3);
        frames[i] = sse_event_frame(r->pool, &ev, &lens[i]);
    }
    if (sse_store_publish(r->st, channel, frames, lens, n, &first, &subs)
        != SSE_OK) {
        return;
    }
    ch = NULL;
    for (i = 0; i < (int)r->st->hdr->max_channels; i++) {
        if (r->st->channels[i].state == SLOT_USED
            && !strcmp(r->st->channels[i].name, channel)) {
            ch = &r->st->channels[i];
        }
    }
    if (!ch) FAIL("a channel published to is not in the table\n");
    if (!r->damaged && first != r->last_id + 1 && r->last_id) {
        FAIL("ids jump from %" APR_UINT64_T_FMT " to %" APR_UINT64_T_FMT "\n",
             r->last_id, first);
    }
    for (i = 0; i < n; i++) {
        published *pb = &r->pubs[r->npubs++];
        pb->id = first + (apr_uint64_t)i;
        pb->slot = (apr_uint32_t)(ch - r->st->channels);
        pb->incarnation = ch->incarnation;
        /* frames may hold NULs: data is any bytes */
        idline = apr_psprintf(r->pool, "id: %" APR_UINT64_T_FMT "\n", pb->id);
        pb->len = strlen(idline) + lens[i];
        text = apr_palloc(r->pool, pb->len);
        memcpy(text, idline, strlen(idline));
        memcpy(text + strlen(idline), frames[i], lens[i]);
        pb->text = text;
        if (!r->damaged) r->last_id = pb->id;
    }
}

static void op_subscribe(run *r)
{
    const char *names[4], *which, *last = NULL;
    unsigned char addr[16] = { 0 };
    unsigned k = take(r) % 5, first = take(r), how = take(r);
    int n = 1 + (int)(how % 4), i, row = row_of(r, (int)k);
    sse_resume resume;
    stream *s;
    if (row < 0 || r->nstreams == MAX_SUBS) return;
    for (i = 0; i < n; i++) {
        names[i] = name_of(r, first + (unsigned)i);   /* all different */
    }
    switch ((how >> 2) % 4) {
    case 1: last = "0"; break;
    case 2:
        last = apr_psprintf(r->pool, "%" APR_UINT64_T_FMT,
                            r->st->hdr->last_id - take(r) % 8);
        break;
    case 3: last = "junk"; break;
    }
    addr[15] = (unsigned char)((how >> 4) % 3);
    s = &r->streams[r->nstreams];
    if (sse_store_subscribe(r->st, row, names, n, (int)((how >> 6) & 1),
                            (how & 0x80) ? addr : NULL, last, &s->sub,
                            &resume, &which) == SSE_OK) {
        s->pid = pids[k];
        s->kept = 0;
        r->nstreams++;
    }
}

static void drop_stream(run *r, int i)
{
    r->streams[i] = r->streams[--r->nstreams];
}

static void op_unsubscribe(run *r)
{
    int i;
    stream *s;
    if (!r->nstreams) return;
    i = (int)(take(r) % (unsigned)r->nstreams);
    s = &r->streams[i];
    if (!s->kept) sse_store_unsubscribe(r->st, &s->sub);
    drop_stream(r, i);
}

/* Until the first damage: the events are exactly those published to the
 * stream's channels (as they were when it subscribed) after the cursor,
 * in order, and all of them unless the read was cut short or reports a
 * gap. */
static void compare_with_published(run *r, const stream *s,
                                   const sse_read_result *res,
                                   apr_uint64_t after)
{
    apr_uint32_t e = 0;
    int i, k;
    for (i = 0; i < r->npubs; i++) {
        const published *pb = &r->pubs[i];
        int mine = 0;
        apr_size_t end;
        if (pb->id <= after) continue;
        for (k = 0; k < s->sub.n; k++) {
            mine |= s->sub.ch[k].slot == pb->slot
                    && s->sub.ch[k].incarnation == pb->incarnation;
        }
        if (!mine) continue;
        if (e == res->events) {
            if (!res->more && !res->gap) {
                FAIL("message %" APR_UINT64_T_FMT " was not read\n", pb->id);
            }
            return;
        }
        if (res->marks[e].id != pb->id) {
            if (res->gap) continue;      /* it was dropped: told so */
            FAIL("read %" APR_UINT64_T_FMT ", expected %" APR_UINT64_T_FMT
                 "\n", res->marks[e].id, pb->id);
        }
        end = e + 1 < res->events ? res->marks[e + 1].offset : res->len;
        if (end - res->marks[e].offset != pb->len
            || memcmp(res->buf + res->marks[e].offset, pb->text, pb->len)) {
            FAIL("message %" APR_UINT64_T_FMT " reads back differently\n",
                 pb->id);
        }
        e++;
    }
    if (e != res->events) FAIL("read a message never published\n");
}

static void op_read(run *r)
{
    sse_read_result res;
    apr_uint64_t before;
    const char *why;
    stream *s;
    int i, k, news;
    if (!r->nstreams) return;
    i = (int)(take(r) % (unsigned)r->nstreams);
    s = &r->streams[i];
    before = s->sub.cursor;
    /* unlocked, so only meaningful on a store that is not torn */
    news = r->st->hdr->dirty || sse_store_has_news(r->st, &s->sub);
    sse_store_read(r->st, &s->sub, r->pool, 1 + take(r) * 16, &res);
    if ((why = unit_read_problem(&res, before))) FAIL("read: %s\n", why);
    if (!news && (res.events || res.gap || res.deleted)) {
        FAIL("has_news said nothing was new, the read found some\n");
    }
    for (k = 0; !res.deleted && k < s->sub.n; k++) {
        if (r->st->channels[s->sub.ch[k].slot].state != SLOT_USED) {
            FAIL("a read of a channel that is gone does not say so\n");
        }
    }
    if (res.deleted) {
        if (res.events) FAIL("a deleted read with events\n");
        if (!s->kept) sse_store_unsubscribe(r->st, &s->sub);
        drop_stream(r, i);
        return;
    }
    if (!r->damaged) compare_with_published(r, s, &res, before);
}

static void op_children(run *r)
{
    unsigned how = take(r), k = take(r) % 5;
    int row;
    switch (how % 3) {
    case 0:
        /* attaching clears a row the pid already had: its streams went
         * with the process that held it */
        for (row = 0; row < r->nstreams; row++) {
            if (r->streams[row].pid == pids[k]) r->streams[row].kept = 1;
        }
        row = sse_store_child_attach(r->st, pids[k]);
        if (row >= 0) r->rows[k] = row;
        break;
    case 1:
        if ((row = row_of(r, (int)k)) >= 0) {
            sse_store_child_detach(r->st, row, pids[k]);
            r->rows[k] = -1;
        }
        break;
    default:
        sse_store_reap_children(r->st);
    }
}

static void op_admin(run *r)
{
    sse_store_limits lim;
    sse_store_status status;
    sse_channel_info info;
    unsigned how = take(r);
    switch (how % 4) {
    case 0:
        sse_store_delete(r->st, name_of(r, take(r)), &info);
        break;
    case 1:
        /* everything older than a microsecond expires */
        lim = *sse_store_get_limits(r->st);
        lim.history_max_age = 1;
        sse_store_set_limits(r->st, &lim);
        sse_store_list(r->st, r->pool);
        lim.history_max_age = 0;
        sse_store_set_limits(r->st, &lim);
        break;
    case 2:
        sse_store_status_get(r->st, r->pool, &status);
        break;
    default:
        sse_store_channel_info(r->st, name_of(r, take(r)), &info);
    }
}

/* The k-th used slot, or NULL. */
static store_channel *used_slot(run *r, unsigned k)
{
    apr_uint32_t i, n = r->st->shape.max_channels, used = 0;
    for (i = 0; i < n; i++) used += r->st->channels[i].state == SLOT_USED;
    for (i = 0; used && i < n; i++) {
        if (r->st->channels[i].state == SLOT_USED && k-- % used == 0) {
            return &r->st->channels[i];
        }
    }
    return NULL;
}

/* A value to write: a byte, a nudged word, or a block index. */
static void scribble(run *r, void *where, apr_size_t room)
{
    unsigned how = take(r);
    apr_uint32_t w;
    if (room < 4 || how % 4 == 0) {
        *(unsigned char *)where = (unsigned char)take(r);
        return;
    }
    memcpy(&w, where, 4);
    switch (how % 4) {
    case 1: w += (apr_uint32_t)(take(r) % 5) - 2; break;
    case 2: w = take(r) % (r->st->shape.nblocks + 2); break;
    default: w = (apr_uint32_t)take(r) << 24 | take(r) << 8 | take(r);
    }
    memcpy(where, &w, 4);
}

/* Breaks one thing: mostly a field of a structure in use, sometimes any
 * byte of the segment. */
static void damage_one(run *r)
{
    sse_store *st = r->st;
    const store_shape *s = &st->shape;
    store_channel *ch;
    apr_size_t off;
    apr_uint32_t b, k;
    switch (take(r) % 7) {
    case 0:
        off = take(r) % sizeof(store_header);
        scribble(r, (char *)st->hdr + off, sizeof(store_header) - off);
        break;
    case 1:
        if (!(ch = used_slot(r, take(r)))) break;
        off = take(r) % sizeof(store_channel);
        scribble(r, (char *)ch + off, sizeof(store_channel) - off);
        break;
    case 2:
        off = (take(r) << 8 | take(r)) % (s->clients_off - s->children_off);
        scribble(r, st->base + s->children_off + off,
                 s->clients_off - s->children_off - off);
        break;
    case 3:
        /* near a used entry of the client table */
        k = (take(r) << 8 | take(r)) % s->client_slots;
        for (b = 0; b < s->client_slots && !st->clients[k].streams; b++) {
            k = (k + 1) % s->client_slots;
        }
        off = take(r) % (2 * sizeof(store_client));
        k = (apr_uint32_t)((k * sizeof(store_client) + off)
                           % (s->client_slots * sizeof(store_client)));
        scribble(r, (char *)st->clients + k, 1);
        break;
    case 4:
        /* a message's head or a link in its chain */
        /* an earlier write of this op may have broken the links */
        if (!(ch = used_slot(r, take(r))) || !ch->head
            || ch->head >= s->nblocks) {
            break;
        }
        for (b = ch->head, k = take(r) % 8; k && store_msg_at(st, b)->newer
                                             && store_msg_at(st, b)->newer
                                                < s->nblocks; k--) {
            b = store_msg_at(st, b)->newer;
        }
        if (take(r) & 1) {
            scribble(r, &st->blocks[b].next, 4);
        }
        else {
            off = take(r) % sizeof(msg_head);
            scribble(r, (char *)store_msg_at(st, b) + off,
                     sizeof(msg_head) - off);
        }
        break;
    case 5:
        b = (take(r) << 8 | take(r)) % s->nblocks;
        scribble(r, &st->blocks[b].next, 4);
        break;
    default:
        off = ((apr_size_t)take(r) << 16 | take(r) << 8 | take(r)) % s->size;
        st->base[off] = (char)take(r);
    }
}

/* Damages the segment, then repairs. */
static void op_damage(run *r)
{
    unsigned n = 1 + take(r) % 4, how;
    int i;
    while (n--) damage_one(r);
    for (i = 0; i < r->nstreams; i++) r->streams[i].kept = 1;
    r->damaged = 1;
    sse_store_mark_dirty_nolock(r->st);
    /* repaired directly, or by the next call that locks */
    how = take(r) % 3;
    if (how == 1) op_publish(r);
    else if (how == 2) op_read(r);
    if (r->st->hdr->dirty) {
        apr_global_mutex_lock(mutex);
        sse_store_repair_nolock(r->st);
        apr_global_mutex_unlock(mutex);
    }
}

/* A stream whose row its process no longer holds (detached, reaped,
 * cleared by repair) ended with that process. */
static void sweep(run *r)
{
    int i;
    for (i = 0; i < r->nstreams; i++) {
        stream *s = &r->streams[i];
        if (r->st->children[s->sub.row].pid != s->pid) s->kept = 1;
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_start();
    apr_global_mutex_create(&mutex, NULL, APR_LOCK_DEFAULT, pool);
    pids[0] = (apr_int32_t)getpid();
    pids[1] = (apr_int32_t)getppid();
    pids[2] = 1;
    pids[3] = 0x7ffffff0;    /* above any pid_max: never a process */
    pids[4] = 0x7ffffff1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sse_store_geometry geo = { 0, 8, 4, 8 };
    sse_store_limits lim = { 0, 0, 0, 0, 0, 0 };
    const char *why = NULL;
    run r;
    int ops, k;

    memset(&r, 0, sizeof(r));
    r.p = data;
    r.n = size;
    apr_pool_create(&r.pool, pool);
    lim.history_size = 1 + take(&r) % 8;
    lim.max_per_channel = take(&r) % 4;
    lim.max_per_client = take(&r) % 4;
    geo.size = (apr_size_t)sse_store_min_size(&geo)
               + (apr_size_t)(take(&r) % 64) * BLOCK_SIZE;
    if (sse_store_create(&r.st, r.pool, &geo, NULL, mutex, &why)) {
        FAIL("store: %s\n", why);
    }
    sse_store_set_limits(r.st, &lim);
    r.pubs = apr_palloc(r.pool, sizeof(published) * MAX_PUBS);
    for (k = 0; k < 5; k++) r.rows[k] = -1;
    r.rows[0] = sse_store_child_attach(r.st, pids[0]);
    r.rows[3] = sse_store_child_attach(r.st, pids[3]);
    for (ops = 0; r.n && ops < MAX_OPS; ops++) {
        unsigned op = take(&r);
        switch (op % 16) {
        case 0: case 1: case 2: case 3: op_publish(&r); break;
        case 4: case 5: op_subscribe(&r); break;
        case 6: op_unsubscribe(&r); break;
        case 7: case 8: case 9: op_read(&r); break;
        case 10: op_children(&r); break;
        case 11: case 12: op_admin(&r); break;
        case 13:
            if (op & 0x10) op_damage(&r);
            else op_read(&r);
            break;
        default: op_publish(&r); op_read(&r); break;
        }
        check(&r, "an operation");
        sweep(&r);
    }
    for (k = 0; k < r.nstreams; k++) {
        if (!r.streams[k].kept) sse_store_unsubscribe(r.st, &r.streams[k].sub);
    }
    check(&r, "the last unsubscribe");
    apr_pool_destroy(r.pool);
    return 0;
}
