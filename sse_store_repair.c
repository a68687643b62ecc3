/* sse_store_repair.c - mends the store after a process died inside a
 * locked section (Debian's robust mutex hands the lock on silently).
 *
 * Every locked section sets header->dirty first and clears it last, and a
 * message becomes visible only when it is linked into its channel after
 * being fully written. So the next lock holder that finds dirty set walks
 * every channel list, cuts it at the first message that is not intact
 * (reporting a gap to resuming clients), rebuilds the free list from what
 * is still reachable, drops rows of dead children and re-inserts the client
 * table.
 */
#include <stdio.h>
#include <stdlib.h>

#include "sse_store_layout.h"

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

/* Non-zero when the message at b is intact and its chain unclaimed. */
static int message_ok(sse_store *st, apr_uint32_t b, apr_uint32_t slot,
                      apr_uint64_t after, unsigned char *seen)
{
    apr_uint32_t n = st->hdr->nblocks, k, c;
    msg_head *m;
    if (b == 0 || b >= n || seen[b]) return 0;
    m = store_msg_at(st, b);
    if (m->magic != MSG_MAGIC || m->slot != slot || m->id <= after
        || m->id > st->hdr->last_id || m->nblocks != store_blocks_for(m->len)
        || m->nblocks > n) {
        return 0;
    }
    for (k = 0, c = b; k < m->nblocks; k++, c = st->blocks[c].next) {
        if (c == 0 || c >= n || seen[c]) return 0;
    }
    if (c != 0) return 0;
    for (k = 0, c = b; k < m->nblocks; k++, c = st->blocks[c].next) {
        seen[c] = 1;
    }
    return 1;
}

static int repair_channel(sse_store *st, apr_uint32_t slot,
                          unsigned char *seen)
{
    store_channel *ch = &st->channels[slot];
    apr_uint32_t b = ch->head, prev = 0, count = 0, blocks = 0;
    apr_uint64_t last = 0;
    int fixed = 0;
    while (b && message_ok(st, b, slot, last, seen)) {
        msg_head *m = store_msg_at(st, b);
        m->older = prev;
        last = m->id;
        count++;
        blocks += m->nblocks;
        prev = b;
        b = m->newer;
    }
    if (b) {
        /* cut here; whatever followed may be lost, so report a gap */
        fixed = 1;
        if (prev) store_msg_at(st, prev)->newer = 0;
        else ch->head = 0;
        ch->evicted_upto = st->hdr->last_id;
    }
    if (ch->tail != prev || ch->messages != count || ch->blocks != blocks) {
        fixed = 1;
    }
    ch->tail = prev;
    ch->messages = count;
    ch->blocks = blocks;
    return fixed;
}

int sse_store_repair_nolock(sse_store *st)
{
    store_header *h = st->hdr;
    unsigned char *seen = calloc(h->nblocks, 1);
    apr_uint32_t i, used = 0, free_blocks = 0, head = 0;
    int fixed = 0;
    if (!seen) return 0;
    seen[0] = 1;
    for (i = 0; i < h->max_channels; i++) {
        store_channel *ch = &st->channels[i];
        if (ch->state > SLOT_TOMB) {
            ch->state = SLOT_TOMB;
            fixed++;
        }
        if (ch->state != SLOT_USED) continue;
        ch->name[SSE_CHANNEL_MAX] = '\0';
        if (ch->hash != store_name_hash(ch->name)) {
            ch->hash = store_name_hash(ch->name);
            fixed++;
        }
        fixed += repair_channel(st, i, seen);
        used++;
    }
    /* every block no message reaches is free */
    for (i = h->nblocks; i-- > 1;) {
        if (!seen[i]) {
            st->blocks[i].next = head;
            head = i;
            free_blocks++;
        }
    }
    if (h->free_blocks != free_blocks || h->channels_used != used) fixed++;
    h->free_head = head;
    h->free_blocks = free_blocks;
    h->channels_used = used;
    for (i = 0; i < h->max_children; i++) {
        if (st->children[i].pid && !store_process_exists(st->children[i].pid)) {
            store_clear_row(st, (int)i);
            fixed++;
        }
    }
    fixed += store_clients_rebuild(st);
    free(seen);
    h->repairs++;
    h->dirty = 0;
#ifdef SSE_STORE_CHECK
    check_own_work(st);
#endif
    return fixed;
}

void sse_store_mark_dirty_nolock(sse_store *st)
{
    st->hdr->dirty = 1;
}
