/* sse_store_check.c - verifies every invariant of the store's segment and
 * names the first one that is broken.
 *
 * The unit tests and fuzzers run it after each operation, and repair runs
 * it on its own result in test builds (SSE_STORE_CHECK); production code
 * never calls sse_store_check_nolock(). Repair shares store_msg_problem()
 * with it, so "intact message" means the same thing to both. The checker
 * must survive any content of the segment: every index is bounds-checked
 * before use and every walk claims what it visits, so it ends.
 * The caller holds the lock.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "apr_strings.h"

#include "sse_store_layout.h"

enum { OWN_NONE = 0, OWN_FREE, OWN_MSG };

typedef struct {
    sse_store *st;
    unsigned char *owner;       /* per block: OWN_* */
    char *why;
    apr_size_t whylen;
} checker;

static int bad(checker *c, const char *fmt, ...)
{
    va_list ap;
    if (c->whylen) {
        va_start(ap, fmt);
        apr_vsnprintf(c->why, c->whylen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* The message's bytes must be one event as sse_store_publish stores it:
 * "id: <its id>\n", lines without CR of which none is another id field,
 * and a blank line that ends it. Anything else would make a reader see a
 * torn event, two events, or the wrong id. */
static const char *frame_problem(sse_store *st, apr_uint32_t b,
                                 const msg_head *m)
{
    char idline[SSE_ID_TEXT_MAX + 8], name[2] = { 0, 0 };
    apr_size_t idlen, pos = 0, off = sizeof(msg_head), col = 0;
    int blank_end = 0;

    memcpy(idline, "id: ", 4);
    idlen = 4 + sse_id_format(idline + 4, m->id);
    idline[idlen++] = '\n';
    if (m->len < idlen + 1) {
        return "is too short for its id: line and the blank line";
    }
    while (pos < m->len) {
        const unsigned char *bytes = st->blocks[b].bytes;
        for (; off < BLOCK_PAYLOAD && pos < m->len; off++, pos++) {
            char ch = (char)bytes[off];
            if (pos < idlen) {
                if (ch != idline[pos]) return "does not start with its id";
                continue;
            }
            if (ch == '\r') return "holds a CR";
            if (ch == '\n') {
                if (col == 2 && name[0] == 'i' && name[1] == 'd') {
                    return "has a second id field";
                }
                if (col == 0) {
                    if (pos + 1 != m->len) return "has a blank line inside";
                    blank_end = 1;
                }
                col = 0;
                continue;
            }
            if (col < 2) {
                name[col] = ch;
            }
            else if (col == 2 && ch == ':' && name[0] == 'i'
                     && name[1] == 'd') {
                return "has a second id field";
            }
            col++;
        }
        off = 0;
        b = st->blocks[b].next;
    }
    return blank_end ? NULL : "does not end with a blank line";
}

const char *store_msg_problem(sse_store *st, apr_uint32_t b,
                              apr_uint32_t slot, const unsigned char *owner)
{
    apr_uint32_t n = st->shape.nblocks, k, c;
    msg_head *m = store_msg_at(st, b);
    if (m->magic != MSG_MAGIC) return "has no message magic";
    if (m->slot != slot) return "names another slot";
    if (m->nblocks != store_blocks_for(m->len) || m->nblocks >= n) {
        return "has a block count that does not fit its length";
    }
    for (k = 0, c = b; k < m->nblocks; k++, c = st->blocks[c].next) {
        if (c == 0 || c >= n) return "has a chain that leaves the blocks";
        if (owner && owner[c]) {
            return "has a chain through a block taken elsewhere";
        }
    }
    /* a chain that visits a block twice never reaches 0 */
    if (c != 0) return "has a chain longer than its block count";
    return frame_problem(st, b, m);
}

static int check_header(checker *c)
{
    sse_store *st = c->st;
    store_header *h = st->hdr;
    const store_shape *s = &st->shape;
    int i;
#define SAME_AS_CREATED(f) \
    if (h->f != s->f) return bad(c, "header field " #f " changed");
    STORE_SHAPE_FIELDS(SAME_AS_CREATED)
#undef SAME_AS_CREATED
    if (h->last_id < s->first_id - 1) {
        return bad(c, "last_id %" APR_UINT64_T_FMT " is below first_id - 1",
                   h->last_id);
    }
    if (h->freed_next >= FREED_RING) {
        return bad(c, "freed_next %u is outside the ring", h->freed_next);
    }
    for (i = 0; i < FREED_RING; i++) {
        if (h->freed[i].evicted_upto > h->last_id) {
            return bad(c, "freed[%d] is above last_id", i);
        }
    }
    if (h->freed_overflow > h->last_id) {
        return bad(c, "freed_overflow is above last_id");
    }
    return 0;
}

static int check_free_list(checker *c)
{
    store_header *h = c->st->hdr;
    apr_uint32_t b = h->free_head, count = 0;
    while (b) {
        if (b >= c->st->shape.nblocks) {
            return bad(c, "free list leaves the blocks at %u", b);
        }
        if (c->owner[b]) {
            return bad(c, "free list visits block %u twice", b);
        }
        c->owner[b] = OWN_FREE;
        count++;
        b = c->st->blocks[b].next;
    }
    if (count != h->free_blocks) {
        return bad(c, "free_blocks is %u but the free list has %u",
                   h->free_blocks, count);
    }
    return 0;
}

/* A used slot must be found by a lookup from its home, which stops at the
 * first free slot and returns the first slot of that name. */
static int check_probe(checker *c, apr_uint32_t i)
{
    sse_store *st = c->st;
    apr_uint32_t n = st->shape.max_channels;
    apr_uint32_t j = (apr_uint32_t)(st->channels[i].hash % n);
    for (; j != i; j = (j + 1) % n) {
        store_channel *o = &st->channels[j];
        if (o->state == SLOT_FREE) {
            return bad(c, "slot %u is unreachable: slot %u on its probe "
                       "chain is free", i, j);
        }
        if (o->state == SLOT_USED
            && !strncmp(o->name, st->channels[i].name, sizeof(o->name))) {
            return bad(c, "channel '%s' is in slots %u and %u",
                       st->channels[i].name, j, i);
        }
    }
    return 0;
}

static void claim(checker *c, apr_uint32_t b, apr_uint32_t nblocks)
{
    apr_uint32_t k;
    for (k = 0; k < nblocks; k++, b = c->st->blocks[b].next) {
        c->owner[b] = OWN_MSG;
    }
}

static int check_list(checker *c, apr_uint32_t slot)
{
    sse_store *st = c->st;
    store_channel *ch = &st->channels[slot];
    apr_uint32_t b = ch->head, prev = 0, count = 0, blocks = 0;
    apr_uint64_t last = 0, last_id = st->hdr->last_id;
    const char *why;

    if (!ch->head != !ch->tail) {
        return bad(c, "slot %u: head %u and tail %u disagree", slot,
                   ch->head, ch->tail);
    }
    while (b) {
        msg_head *m;
        if (b >= st->shape.nblocks) {
            return bad(c, "slot %u: list leaves the blocks at %u", slot, b);
        }
        if (c->owner[b]) {
            return bad(c, "slot %u: message at block %u is taken elsewhere",
                       slot, b);
        }
        if ((why = store_msg_problem(st, b, slot, c->owner))) {
            return bad(c, "slot %u: message at block %u %s", slot, b, why);
        }
        m = store_msg_at(st, b);
        if (m->older != prev) {
            return bad(c, "slot %u: block %u's older is %u, not %u", slot, b,
                       m->older, prev);
        }
        if (count ? m->id <= last : m->id <= ch->evicted_upto) {
            return bad(c, "slot %u: id %" APR_UINT64_T_FMT " does not follow %"
                       APR_UINT64_T_FMT, slot, m->id,
                       count ? last : ch->evicted_upto);
        }
        if (m->id > last_id || m->id < st->shape.first_id) {
            return bad(c, "slot %u: id %" APR_UINT64_T_FMT " is outside "
                       "first_id..last_id", slot, m->id);
        }
        claim(c, b, m->nblocks);
        count++;
        blocks += m->nblocks;
        last = m->id;
        prev = b;
        b = m->newer;
    }
    if (ch->tail != prev) {
        return bad(c, "slot %u: tail is %u, the list ends at %u", slot,
                   ch->tail, prev);
    }
    if (ch->messages != count || ch->blocks != blocks) {
        return bad(c, "slot %u: counts %u messages in %u blocks, the list "
                   "has %u in %u", slot, ch->messages, ch->blocks, count,
                   blocks);
    }
    if (ch->evicted_upto > last_id) {
        return bad(c, "slot %u: evicted_upto is above last_id", slot);
    }
    if (ch->newest_id > last_id || ch->newest_id < last
        || ch->newest_id < ch->evicted_upto) {
        return bad(c, "slot %u: newest_id %" APR_UINT64_T_FMT " is outside "
                   "its history", slot, ch->newest_id);
    }
    return 0;
}

static int check_channels(checker *c)
{
    sse_store *st = c->st;
    apr_uint32_t i, used = 0;
    int rv;
    for (i = 0; i < st->shape.max_channels; i++) {
        store_channel *ch = &st->channels[i];
        if (ch->state > SLOT_TOMB) {
            return bad(c, "slot %u has state %u", i, ch->state);
        }
        if (ch->state != SLOT_USED) continue;
        used++;
        if (!memchr(ch->name, '\0', sizeof(ch->name))) {
            return bad(c, "slot %u: name is not NUL-terminated", i);
        }
        if (ch->hash != store_name_hash(ch->name)) {
            return bad(c, "slot %u: hash does not match '%s'", i, ch->name);
        }
        if ((rv = check_probe(c, i)) || (rv = check_list(c, i))) return rv;
    }
    if (used != st->hdr->channels_used) {
        return bad(c, "channels_used is %u but %u slots are used",
                   st->hdr->channels_used, used);
    }
    return 0;
}

static int check_blocks_accounted(checker *c)
{
    apr_uint32_t b;
    for (b = 1; b < c->st->shape.nblocks; b++) {
        if (!c->owner[b]) {
            return bad(c, "block %u is neither free nor in a message", b);
        }
    }
    return 0;
}

/* Counts only on live rows and used slots, and no more than the row's
 * streams: each stream counts once per channel. */
static int check_rows(checker *c)
{
    sse_store *st = c->st;
    apr_uint32_t r, s;
    for (r = 0; r < st->shape.max_children; r++) {
        store_child *row = &st->children[r];
        if (!row->pid && row->subscribers) {
            return bad(c, "free row %u has %u subscribers", r,
                       row->subscribers);
        }
        for (s = 0; s < st->shape.max_channels; s++) {
            apr_uint32_t v = *store_count_at(st, (int)r, s);
            if (!v) continue;
            if (!row->pid) {
                return bad(c, "free row %u counts slot %u", r, s);
            }
            if (st->channels[s].state != SLOT_USED) {
                return bad(c, "row %u counts unused slot %u", r, s);
            }
            if (v > row->subscribers) {
                return bad(c, "row %u counts %u on slot %u but has %u "
                           "streams", r, v, s, row->subscribers);
            }
        }
    }
    return 0;
}

static int check_client_entry(checker *c, apr_uint32_t i,
                              apr_uint64_t *sums)
{
    sse_store *st = c->st;
    store_client *e = &st->clients[i];
    apr_uint32_t mask = st->shape.client_slots - 1, j;
    if (e->row < 0 || (apr_uint32_t)e->row >= st->shape.max_children
        || !st->children[e->row].pid) {
        return bad(c, "client entry %u is for row %d, which is not live", i,
                   e->row);
    }
    sums[e->row] += e->streams;
    for (j = store_client_home(st, e->addr); j != i; j = (j + 1) & mask) {
        store_client *o = &st->clients[j];
        if (!o->streams) {
            return bad(c, "client entry %u is unreachable: entry %u before "
                       "it is free", i, j);
        }
        if (o->row == e->row && !memcmp(o->addr, e->addr, 16)) {
            return bad(c, "client entries %u and %u are the same", j, i);
        }
    }
    return 0;
}

static int check_clients(checker *c)
{
    sse_store *st = c->st;
    apr_uint64_t *sums = calloc(st->shape.max_children, sizeof(*sums));
    apr_uint32_t i, used = 0;
    int rv = 0;
    if (!sums) return bad(c, "out of memory");
    for (i = 0; i < st->shape.client_slots && !rv; i++) {
        if (!st->clients[i].streams) continue;
        used++;
        rv = check_client_entry(c, i, sums);
    }
    for (i = 0; i < st->shape.max_children && !rv; i++) {
        if (sums[i] > st->children[i].subscribers) {
            rv = bad(c, "client entries of row %u hold %" APR_UINT64_T_FMT
                     " streams, the row has %u", i, sums[i],
                     st->children[i].subscribers);
        }
    }
    free(sums);
    if (!rv && used != st->hdr->clients_used) {
        rv = bad(c, "clients_used is %u but %u entries are used",
                 st->hdr->clients_used, used);
    }
    return rv;
}

int sse_store_check_nolock(sse_store *st, char *why, apr_size_t whylen)
{
    checker c;
    int rv;
    c.st = st;
    c.owner = NULL;
    c.why = why;
    c.whylen = whylen;
    if (whylen) why[0] = '\0';
    if ((rv = check_header(&c))) return rv;
    if (!(c.owner = calloc(st->shape.nblocks, 1))) {
        return bad(&c, "out of memory");
    }
    if (!(rv = check_free_list(&c)) && !(rv = check_channels(&c))
        && !(rv = check_blocks_accounted(&c)) && !(rv = check_rows(&c))) {
        rv = check_clients(&c);
    }
    free(c.owner);
    return rv;
}
