/* sse_store_repair.c - mends the store after a process died inside a
 * locked section (Debian's robust mutex hands the lock on silently), and
 * after anything else that broke its invariants.
 *
 * Every locked section sets header->dirty first and clears it last, and a
 * message becomes visible only when it is linked into its channel after
 * being fully written. So the next lock holder that finds dirty set puts
 * back the header's fixed fields, makes every channel slot valid and
 * findable, rebuilds each channel's list from the intact messages it can
 * reach, rebuilds the free list from what no list holds, drops rows of
 * dead children and counts that are not theirs, and re-inserts the client
 * table. It trusts nothing it reads: indexes are checked before use and
 * every walk claims what it visits, so it ends on any content.
 *
 * History is only ever dropped from its old end, where evicted_upto tells
 * readers behind it that they missed something. So when a channel's list
 * has a hole (a link between two intact messages that neither side
 * confirms, or a lost newest message), everything older than the hole is
 * dropped with it and counted as evicted: keeping it would let a reader
 * behind the hole skip what was lost without being told.
 *
 * sse_store_check.c states what "mended" means; test builds
 * (SSE_STORE_CHECK) verify every repair with it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sse_store_layout.h"

/* owner[] marks per block while repairing */
enum {
    OWN_NONE = 0,   /* not (yet) in any list: ends up free */
    OWN_TAKEN,      /* in a list, or a later block of a message */
    OWN_HEAD,       /* first block of a message of the channel in hand */
    OWN_FREE_LIST   /* on the old free list, and in no list */
};

typedef struct {
    sse_store *st;
    unsigned char *owner;
    apr_uint32_t *fwd, *back;   /* message heads found by the two walks */
    apr_uint32_t *merged;
    apr_uint64_t max_id;        /* highest id of an intact message */
} repair_ctx;

#ifdef SSE_STORE_CHECK
/* Test builds: a repair that leaves any invariant broken stops the test
 * at once, at the repair, rather than wherever the damage shows later. */
static void check_own_work(sse_store *st)
{
    char why[256];
    if (sse_store_check_nolock(st, why, sizeof(why))) {
        fprintf(stderr, "sse_store_repair_nolock left the store broken: "
                "%s\n", why);
        abort();
    }
}
#endif

/* No locked section writes these, but a stray write may have. */
static int restore_shape(sse_store *st)
{
    store_header *h = st->hdr;
    const store_shape *s = &st->shape;
    int fixed = 0;
#define PUT_BACK(f) if (h->f != s->f) { h->f = s->f; fixed++; }
    STORE_SHAPE_FIELDS(PUT_BACK)
#undef PUT_BACK
    return fixed;
}

static int clamp_id(apr_uint64_t *v, apr_uint64_t max)
{
    if (*v <= max) return 0;
    *v = max;
    return 1;
}

/* Ids are never given twice: last_id covers every intact message (their
 * ids are also in their id: lines, so one stray write cannot fake one). */
static int repair_ids(sse_store *st, apr_uint64_t max_id)
{
    store_header *h = st->hdr;
    int fixed = 0, i;
    if (h->last_id < h->first_id - 1 || h->last_id < max_id) {
        h->last_id = max_id > h->first_id - 1 ? max_id : h->first_id - 1;
        fixed++;
    }
    if (h->freed_next >= FREED_RING) {
        h->freed_next = 0;
        fixed++;
    }
    for (i = 0; i < FREED_RING; i++) {
        fixed += clamp_id(&h->freed[i].evicted_upto, h->last_id);
    }
    return fixed + clamp_id(&h->freed_overflow, h->last_id);
}

static int repair_rows(sse_store *st)
{
    apr_uint32_t r;
    int fixed = 0;
    for (r = 0; r < st->hdr->max_children; r++) {
        store_child *row = &st->children[r];
        if ((row->pid && !store_process_exists(row->pid))
            || (!row->pid && (row->subscribers || row->parked))) {
            store_clear_row(st, (int)r);
            fixed++;
        }
    }
    return fixed;
}

/* Makes slot i findable: a lookup from its home stops at the first free
 * slot, so free slots before it become tombstones. A slot shadowed by an
 * earlier one of the same name could never be found: it goes. */
static int make_findable(sse_store *st, apr_uint32_t i)
{
    apr_uint32_t n = st->hdr->max_channels, j;
    store_channel *ch = &st->channels[i];
    int fixed = 0;
    for (j = (apr_uint32_t)(ch->hash % n); j != i; j = (j + 1) % n) {
        store_channel *o = &st->channels[j];
        if (o->state == SLOT_USED
            && !strncmp(o->name, ch->name, sizeof(ch->name))) {
            ch->state = SLOT_TOMB;
            return 1;
        }
    }
    for (j = (apr_uint32_t)(ch->hash % n); j != i; j = (j + 1) % n) {
        if (st->channels[j].state == SLOT_FREE) {
            st->channels[j].state = SLOT_TOMB;
            fixed++;
        }
    }
    return fixed;
}

static int repair_slots(sse_store *st)
{
    apr_uint32_t i;
    int fixed = 0;
    for (i = 0; i < st->hdr->max_channels; i++) {
        store_channel *ch = &st->channels[i];
        if (ch->state > SLOT_TOMB) {
            ch->state = SLOT_TOMB;
            fixed++;
        }
        if (ch->state != SLOT_USED) continue;
        if (ch->name[SSE_CHANNEL_MAX]) {
            ch->name[SSE_CHANNEL_MAX] = '\0';
            fixed++;
        }
        if (ch->hash != store_name_hash(ch->name)) {
            ch->hash = store_name_hash(ch->name);
            fixed++;
        }
    }
    for (i = 0; i < st->hdr->max_channels; i++) {
        if (st->channels[i].state == SLOT_USED) {
            fixed += make_findable(st, i);
        }
    }
    return fixed;
}

/* ------------------------------------------------------ message lists */

static void mark_chain(repair_ctx *rc, apr_uint32_t b, unsigned char head,
                       unsigned char rest)
{
    apr_uint32_t k, n = store_msg_at(rc->st, b)->nblocks;
    for (k = 0; k < n; k++, b = rc->st->blocks[b].next) {
        rc->owner[b] = k ? rest : head;
    }
}

/* Non-zero when b is an intact message of slot, not yet claimed, with an
 * id this store may have given. */
static int intact(repair_ctx *rc, apr_uint32_t b, apr_uint32_t slot)
{
    sse_store *st = rc->st;
    return b && b < st->hdr->nblocks && rc->owner[b] == OWN_NONE
           && !store_msg_problem(st, b, slot, rc->owner)
           && store_msg_at(st, b)->id >= st->hdr->first_id;
}

/* Follows newer links from the head while messages are intact with rising
 * ids; returns how many it found, in fwd[], claimed. */
static apr_uint32_t walk_forward(repair_ctx *rc, apr_uint32_t slot)
{
    sse_store *st = rc->st;
    apr_uint32_t b = st->channels[slot].head, n = 0;
    while (intact(rc, b, slot)
           && (!n || store_msg_at(st, b)->id
                     > store_msg_at(st, rc->fwd[n - 1])->id)) {
        mark_chain(rc, b, OWN_HEAD, OWN_TAKEN);
        rc->fwd[n++] = b;
        b = store_msg_at(st, b)->newer;
    }
    return n;
}

/* Follows older links from the tail while messages are intact (or found
 * by the forward walk) with falling ids; returns how many it found that
 * the forward walk did not, in back[], newest first, claimed. */
static apr_uint32_t walk_back(repair_ctx *rc, apr_uint32_t slot)
{
    sse_store *st = rc->st;
    apr_uint32_t b = st->channels[slot].tail, n = 0;
    apr_uint64_t below = APR_UINT64_MAX;
    for (;;) {
        int known = b && b < st->hdr->nblocks && rc->owner[b] == OWN_HEAD;
        if (!known && !intact(rc, b, slot)) break;
        if (store_msg_at(st, b)->id >= below) break;
        below = store_msg_at(st, b)->id;
        if (!known) {
            mark_chain(rc, b, OWN_HEAD, OWN_TAKEN);
            rc->back[n++] = b;
        }
        b = store_msg_at(st, b)->older;
    }
    return n;
}

/* Merges fwd[] (rising ids) and back[] (falling ids) into merged[] by
 * id; of two messages with the same id the second is released. */
static apr_uint32_t merge(repair_ctx *rc, apr_uint32_t nf, apr_uint32_t nb)
{
    sse_store *st = rc->st;
    apr_uint32_t i = 0, j = nb, n = 0;
    while (i < nf || j > 0) {
        apr_uint32_t b;
        if (j == 0 || (i < nf && store_msg_at(st, rc->fwd[i])->id
                                 <= store_msg_at(st, rc->back[j - 1])->id)) {
            b = rc->fwd[i++];
        }
        else {
            b = rc->back[--j];
        }
        if (n && store_msg_at(st, b)->id
                 == store_msg_at(st, rc->merged[n - 1])->id) {
            mark_chain(rc, b, OWN_NONE, OWN_NONE);
            continue;
        }
        rc->merged[n++] = b;
    }
    return n;
}

/* Links u[0..n) oldest to newest as the channel's list; returns the
 * number of links or counters that changed. */
static int relink(sse_store *st, store_channel *ch, const apr_uint32_t *u,
                  apr_uint32_t n)
{
    apr_uint32_t k, blocks = 0;
    int fixed = 0;
    for (k = 0; k < n; k++) {
        msg_head *m = store_msg_at(st, u[k]);
        apr_uint32_t older = k ? u[k - 1] : 0;
        apr_uint32_t newer = k + 1 < n ? u[k + 1] : 0;
        fixed += (m->older != older) + (m->newer != newer);
        m->older = older;
        m->newer = newer;
        blocks += m->nblocks;
    }
    if (ch->head != (n ? u[0] : 0) || ch->tail != (n ? u[n - 1] : 0)
        || ch->messages != n || ch->blocks != blocks) {
        fixed++;
    }
    ch->head = n ? u[0] : 0;
    ch->tail = n ? u[n - 1] : 0;
    ch->messages = n;
    ch->blocks = blocks;
    return fixed;
}

/* evicted_upto below the oldest message, newest_id between the newest
 * message (and evicted_upto) and last_id. */
static int repair_range(sse_store *st, store_channel *ch)
{
    apr_uint64_t last_id = st->hdr->last_id, low;
    int fixed = clamp_id(&ch->evicted_upto, last_id);
    if (ch->head && ch->evicted_upto >= store_msg_at(st, ch->head)->id) {
        ch->evicted_upto = store_msg_at(st, ch->head)->id - 1;
        fixed++;
    }
    low = ch->evicted_upto;
    if (ch->tail && store_msg_at(st, ch->tail)->id > low) {
        low = store_msg_at(st, ch->tail)->id;
    }
    if (ch->newest_id < low || ch->newest_id > last_id) {
        __atomic_store_n(&ch->newest_id, ch->newest_id < low ? low : last_id,
                         __ATOMIC_RELEASE);
        fixed++;
    }
    return fixed;
}

/* Rebuilds a channel's list from what the walks from both ends found. */
static int repair_list(repair_ctx *rc, apr_uint32_t slot)
{
    sse_store *st = rc->st;
    store_channel *ch = &st->channels[slot];
    apr_uint32_t nf = walk_forward(rc, slot), nb = walk_back(rc, slot);
    apr_uint32_t n = merge(rc, nf, nb), keep = 0, k;
    apr_uint64_t lost_upto = 0;
    int fixed = nb > 0;

    /* the last link neither of its ends confirms is a hole */
    for (k = 1; k < n; k++) {
        msg_head *a = store_msg_at(st, rc->merged[k - 1]);
        msg_head *b = store_msg_at(st, rc->merged[k]);
        if (a->newer != rc->merged[k] && b->older != rc->merged[k - 1]) {
            keep = k;
        }
    }
    /* nothing is lost after the newest found if it ends the list or the
     * tail names it */
    if (n && store_msg_at(st, rc->merged[n - 1])->newer
        && ch->tail != rc->merged[n - 1]) {
        keep = n;
    }
    if (n && store_msg_at(st, rc->merged[n - 1])->id > rc->max_id) {
        rc->max_id = store_msg_at(st, rc->merged[n - 1])->id;
    }
    if (keep) {
        /* all of it lost: repair_range lowers this to last_id */
        lost_upto = keep < n ? store_msg_at(st, rc->merged[keep])->id - 1
                             : APR_UINT64_MAX;
        for (k = 0; k < keep; k++) {
            mark_chain(rc, rc->merged[k], OWN_NONE, OWN_NONE);
        }
        fixed++;
    }
    /* the oldest one found is not the head: older ones were lost */
    else if (n && rc->merged[0] != ch->head
             && store_msg_at(st, rc->merged[0])->older) {
        lost_upto = store_msg_at(st, rc->merged[0])->id - 1;
        fixed++;
    }
    /* a list with nothing intact in it */
    else if (!n && (ch->head || ch->tail)) {
        lost_upto = APR_UINT64_MAX;
        fixed++;
    }
    for (k = keep; k < n; k++) {
        rc->owner[rc->merged[k]] = OWN_TAKEN;
    }
    if (ch->evicted_upto < lost_upto) ch->evicted_upto = lost_upto;
    return fixed + relink(st, ch, rc->merged + keep, n - keep);
}

/* ---------------------------------------------------- what is left over */

/* Counts as a fix unless the old free list held exactly the blocks that
 * no list holds. */
static int rebuild_free_list(sse_store *st, unsigned char *owner)
{
    store_header *h = st->hdr;
    apr_uint32_t i, head = 0, count = 0, listed = 0, b = h->free_head;
    int fixed;
    while (b && b < h->nblocks && owner[b] == OWN_NONE) {
        owner[b] = OWN_FREE_LIST;
        listed++;
        b = st->blocks[b].next;
    }
    for (i = h->nblocks; i-- > 1;) {
        if (owner[i] == OWN_NONE || owner[i] == OWN_FREE_LIST) {
            st->blocks[i].next = head;
            head = i;
            count++;
        }
    }
    fixed = b != 0 || listed != count || h->free_blocks != count;
    h->free_head = head;
    h->free_blocks = count;
    return fixed;
}

/* A slot that is not in use has no subscribers, and a stream still
 * holding it must see it as deleted: its incarnation moves on, so such a
 * stream never reads a list that is no longer there. */
static int repair_unused_slots(sse_store *st)
{
    apr_uint32_t i, r, used = 0;
    int fixed = 0;
    for (i = 0; i < st->hdr->max_channels; i++) {
        store_channel *ch = &st->channels[i];
        if (ch->state == SLOT_USED) {
            used++;
            continue;
        }
        __atomic_add_fetch(&ch->incarnation, 1, __ATOMIC_RELEASE);
        for (r = 0; r < st->hdr->max_children; r++) {
            apr_uint32_t *count = store_count_at(st, (int)r, i);
            if (*count) {
                *count = 0;
                fixed++;
            }
        }
    }
    if (st->hdr->channels_used != used) {
        st->hdr->channels_used = used;
        fixed++;
    }
    return fixed;
}

/* Each stream counts once per channel: no count above the row's streams,
 * none on a free row. */
static int repair_counts(sse_store *st)
{
    apr_uint32_t r, s;
    int fixed = 0;
    for (r = 0; r < st->hdr->max_children; r++) {
        store_child *row = &st->children[r];
        for (s = 0; s < st->hdr->max_channels; s++) {
            apr_uint32_t *count = store_count_at(st, (int)r, s);
            apr_uint32_t most = row->pid ? row->subscribers : 0;
            if (*count > most) {
                *count = most;
                fixed++;
            }
        }
    }
    return fixed;
}

/* A publisher that died between linking a message and committing its id
 * leaves exactly one tail with the id after last_id, and no message above
 * it anywhere. Its publisher got no answer and no reader can have seen it
 * (readers take the lock), so it is unlinked before anything else, without
 * a gap, and its id may be given again. (A last_id damaged some other way
 * shows as more or higher ids, and the lists keep them.) Returns 1 when it
 * unlinked one. */
static int drop_uncommitted_publish(sse_store *st)
{
    apr_uint32_t i, found = 0, count = 0;
    store_channel *ch;
    msg_head *m, *older;
    for (i = 0; i < st->hdr->max_channels; i++) {
        apr_uint32_t t = st->channels[i].tail;
        if (st->channels[i].state != SLOT_USED || !t
            || t >= st->hdr->nblocks) {
            continue;
        }
        m = store_msg_at(st, t);
        if (m->magic == MSG_MAGIC && m->id > st->hdr->last_id) {
            count++;
            found = i;
        }
    }
    if (count != 1) return 0;
    ch = &st->channels[found];
    m = store_msg_at(st, ch->tail);
    if (m->id != st->hdr->last_id + 1 || m->newer || m->slot != found
        || store_msg_problem(st, ch->tail, found, NULL)) {
        return 0;
    }
    if (m->older && m->older < st->hdr->nblocks
        && (older = store_msg_at(st, m->older))->newer == ch->tail) {
        older->newer = 0;
        ch->tail = m->older;
    }
    else if (ch->head == ch->tail) {
        ch->head = ch->tail = 0;
    }
    else {
        return 0;
    }
    m->magic = 0;
    return 1;
}

int sse_store_repair_nolock(sse_store *st)
{
    repair_ctx rc;
    apr_uint32_t i, n = st->shape.nblocks;
    int fixed = restore_shape(st);

    rc.st = st;
    rc.owner = calloc(n, 1);
    rc.fwd = malloc(sizeof(apr_uint32_t) * 3 * (apr_size_t)n);
    if (!rc.owner || !rc.fwd) {
        /* dirty stays set: the next holder tries again */
        free(rc.owner);
        free(rc.fwd);
        return fixed;
    }
    rc.back = rc.fwd + n;
    rc.merged = rc.back + n;
    rc.max_id = 0;
    fixed += drop_uncommitted_publish(st);
    fixed += repair_rows(st);
    fixed += repair_slots(st);
    for (i = 0; i < st->hdr->max_channels; i++) {
        if (st->channels[i].state == SLOT_USED) {
            fixed += repair_list(&rc, i);
        }
    }
    fixed += repair_ids(st, rc.max_id);
    for (i = 0; i < st->hdr->max_channels; i++) {
        if (st->channels[i].state == SLOT_USED) {
            fixed += repair_range(st, &st->channels[i]);
        }
    }
    fixed += rebuild_free_list(st, rc.owner);
    fixed += repair_unused_slots(st);
    fixed += repair_counts(st);
    fixed += store_clients_rebuild(st);
    free(rc.owner);
    free(rc.fwd);
    st->hdr->repairs++;
    st->hdr->dirty = 0;
#ifdef SSE_STORE_CHECK
    check_own_work(st);
#endif
    return fixed;
}

void sse_store_mark_dirty_nolock(sse_store *st)
{
    st->hdr->dirty = 1;
}
