/* sse_store.c - channel table, subscriptions and message history in one
 * shared-memory segment, guarded by one global mutex (the layout is in
 * sse_store_layout.h, the crash repair in sse_store_repair.c).
 *
 * Created once by the parent from a pool that outlives restart generations,
 * so history and id numbering survive graceful restarts. Children inherit
 * the mapping through fork.
 *
 * Messages are stored framed ("id: N\n" + fields + blank line): formatted
 * once at publish, copied as bytes by every subscriber.
 *
 * Every locked section sets header->dirty first and clears it last; a
 * message becomes visible only when it is linked into its channel and the
 * channel's newest_id is set, after it is fully written. A holder that dies
 * inside leaves dirty set for the next one to repair.
 */
#include <string.h>
#include <stdlib.h>
#include <signal.h>
#include <errno.h>
#include <unistd.h>

#include "apr_strings.h"
#include "apr_time.h"

#include "sse_store_layout.h"

static apr_uint32_t channel_subscribers(sse_store *st, apr_uint32_t slot)
{
    apr_uint32_t r, sum = 0;
    for (r = 0; r < st->hdr->max_children; r++) {
        if (st->children[r].pid) sum += *store_count_at(st, (int)r, slot);
    }
    return sum;
}

static apr_uint32_t total_subscribers(sse_store *st)
{
    apr_uint32_t r, sum = 0;
    for (r = 0; r < st->hdr->max_children; r++) {
        if (st->children[r].pid) sum += st->children[r].subscribers;
    }
    return sum;
}

static void lock(sse_store *st)
{
    apr_global_mutex_lock(st->mutex);
    if (st->hdr->dirty) {
        sse_store_repair_nolock(st);
    }
    st->hdr->dirty = 1;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

static void unlock(sse_store *st)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    st->hdr->dirty = 0;
    apr_global_mutex_unlock(st->mutex);
}

/* ------------------------------------------------------------- creation */

/* Offsets of each part of a segment of this geometry; returns the offset
 * of the blocks. */
typedef struct {
    apr_uint64_t channels, children, counts, clients, blocks;
} store_offsets;

static apr_uint64_t layout_offsets(const sse_store_geometry *geo,
                                   store_offsets *o)
{
    apr_uint32_t slots = store_clients_for_size(geo->max_streams);
    o->channels = ALIGN64(sizeof(store_header));
    o->children = ALIGN64(o->channels + (apr_uint64_t)geo->max_channels
                                        * sizeof(store_channel));
    o->counts = ALIGN64(o->children + (apr_uint64_t)geo->max_children
                                      * sizeof(store_child));
    o->clients = ALIGN64(o->counts + (apr_uint64_t)geo->max_children
                                     * geo->max_channels
                                     * sizeof(apr_uint32_t));
    o->blocks = ALIGN64(o->clients + (apr_uint64_t)slots
                                     * sizeof(store_client));
    return o->blocks;
}

apr_status_t sse_store_create(sse_store **pst, apr_pool_t *p,
                              const sse_store_geometry *geo,
                              const char *fallback_file,
                              apr_global_mutex_t *mutex, const char **why)
{
    sse_store *st = apr_pcalloc(p, sizeof(*st));
    store_offsets off;
    apr_status_t rv;
    store_header *h;
    apr_uint32_t i;

    layout_offsets(geo, &off);
    if (sse_store_min_size(geo) > geo->size) {
        *why = apr_psprintf(p, "SSESharedMemorySize %" APR_SIZE_T_FMT
                            " is too small for SSEMaxChannels %u: at least %"
                            APR_UINT64_T_FMT " bytes are needed", geo->size,
                            geo->max_channels, sse_store_min_size(geo));
        return APR_EINVAL;
    }

    rv = apr_shm_create(&st->shm, geo->size, NULL, p);
    if (rv == APR_ENOTIMPL && fallback_file) {
        apr_shm_remove(fallback_file, p);
        rv = apr_shm_create(&st->shm, geo->size, fallback_file, p);
    }
    if (rv != APR_SUCCESS) {
        *why = "cannot create the shared memory segment";
        return rv;
    }
    st->base = apr_shm_baseaddr_get(st->shm);
    memset(st->base, 0, off.blocks);
    h = (store_header *)st->base;
    h->size = geo->size;
    h->max_channels = geo->max_channels;
    h->max_children = geo->max_children;
    h->client_slots = store_clients_for_size(geo->max_streams);
    h->channels_off = off.channels;
    h->children_off = off.children;
    h->counts_off = off.counts;
    h->clients_off = off.clients;
    h->blocks_off = off.blocks;
    h->nblocks = (apr_uint32_t)((geo->size - off.blocks) / BLOCK_SIZE);
    /* Ids continue above any id of an earlier store: start at the current
     * time in microseconds (a store never assigns one id per microsecond
     * for long). */
    h->first_id = (apr_uint64_t)apr_time_now();
    h->last_id = h->first_id - 1;
    st->hdr = h;
    st->channels = (store_channel *)(st->base + off.channels);
    st->children = (store_child *)(st->base + off.children);
    st->counts = (apr_uint32_t *)(st->base + off.counts);
    st->clients = (store_client *)(st->base + off.clients);
    st->blocks = (store_block *)(st->base + off.blocks);
    /* free list: every block but block 0 */
    for (i = 1; i < h->nblocks; i++) {
        st->blocks[i].next = (i + 1 < h->nblocks) ? i + 1 : 0;
    }
    h->free_head = h->nblocks > 1 ? 1 : 0;
    h->free_blocks = h->nblocks - 1;
    h->layout = STORE_LAYOUT;
    h->magic = STORE_MAGIC;
#define TAKE_SHAPE(f) st->shape.f = h->f;
    STORE_SHAPE_FIELDS(TAKE_SHAPE)
#undef TAKE_SHAPE
    st->mutex = mutex;
    st->limits.history_size = 100;
    *pst = st;
    return APR_SUCCESS;
}

apr_uint64_t sse_store_min_size(const sse_store_geometry *geo)
{
    store_offsets off;
    return layout_offsets(geo, &off) + (apr_uint64_t)MIN_BLOCKS * BLOCK_SIZE;
}

int sse_store_is_current(const sse_store *st)
{
    return st->hdr->magic == STORE_MAGIC && st->hdr->layout == STORE_LAYOUT;
}

int sse_store_has_geometry(const sse_store *st,
                           const sse_store_geometry *geo)
{
    return sse_store_is_current(st) && st->hdr->size == geo->size
           && st->hdr->max_channels == geo->max_channels
           && st->hdr->max_children == geo->max_children
           && st->hdr->client_slots
              >= store_clients_for_size(geo->max_streams);
}

void sse_store_set_limits(sse_store *st, const sse_store_limits *limits)
{
    st->limits = *limits;
    if (st->limits.history_size < 1) st->limits.history_size = 1;
}

const sse_store_limits *sse_store_get_limits(const sse_store *st)
{
    return &st->limits;
}

apr_global_mutex_t **sse_store_mutex(sse_store *st)
{
    return &st->mutex;
}

apr_uint32_t *sse_store_wake_word(sse_store *st)
{
    return &st->hdr->wake_seq;
}

/* ------------------------------------------------------- block handling */

static void free_chain(sse_store *st, apr_uint32_t b)
{
    while (b) {
        apr_uint32_t next = st->blocks[b].next;
        st->blocks[b].next = st->hdr->free_head;
        st->hdr->free_head = b;
        st->hdr->free_blocks++;
        b = next;
    }
}

/* Takes n blocks off the free list, chained; caller checked free_blocks. */
static apr_uint32_t alloc_chain(sse_store *st, apr_uint32_t n)
{
    apr_uint32_t first = st->hdr->free_head, b = first, i;
    for (i = 1; i < n; i++) {
        b = st->blocks[b].next;
    }
    st->hdr->free_head = st->blocks[b].next;
    st->blocks[b].next = 0;
    st->hdr->free_blocks -= n;
    return first;
}

static void copy_in(sse_store *st, apr_uint32_t b, apr_size_t off,
                    const char *src, apr_size_t len)
{
    /* off counts from the start of the first block's payload */
    while (len) {
        apr_size_t room, n;
        while (off >= BLOCK_PAYLOAD) {
            off -= BLOCK_PAYLOAD;
            b = st->blocks[b].next;
        }
        room = BLOCK_PAYLOAD - off;
        n = len < room ? len : room;
        memcpy(st->blocks[b].bytes + off, src, n);
        src += n;
        len -= n;
        off += n;
    }
}

static void copy_out(sse_store *st, apr_uint32_t b, char *dst)
{
    msg_head *m = store_msg_at(st, b);
    apr_size_t len = m->len, off = sizeof(msg_head);
    while (len) {
        apr_size_t n = BLOCK_PAYLOAD - off;
        if (n > len) n = len;
        memcpy(dst, st->blocks[b].bytes + off, n);
        dst += n;
        len -= n;
        off = 0;
        b = st->blocks[b].next;
    }
}

/* ----------------------------------------------------- channel history */

static void evict_oldest(sse_store *st, store_channel *ch)
{
    apr_uint32_t b = ch->head;
    msg_head *m = store_msg_at(st, b);
    /* recorded first: a holder dying once the message is unlinked must
     * leave a gap that repair can report */
    if (m->id > ch->evicted_upto) ch->evicted_upto = m->id;
    ch->head = m->newer;
    if (ch->head) store_msg_at(st, ch->head)->older = 0;
    else ch->tail = 0;
    STORE_CRASH_POINT(st, SSE_CRASH_TRIM);
    ch->messages--;
    ch->blocks -= m->nblocks;
    m->magic = 0;
    free_chain(st, b);
}

static void expire_channel(sse_store *st, store_channel *ch, apr_time_t now)
{
    apr_interval_time_t max_age = st->limits.history_max_age;
    while (ch->head && (ch->messages > st->limits.history_size
                        || (max_age && now - store_msg_at(st, ch->head)->time
                                       > max_age))) {
        evict_oldest(st, ch);
    }
}

static void expire_all(sse_store *st, apr_time_t now)
{
    apr_uint32_t i;
    for (i = 0; i < st->hdr->max_channels; i++) {
        if (st->channels[i].state == SLOT_USED) {
            expire_channel(st, &st->channels[i], now);
        }
    }
}

/* --------------------------------------------------------- channel table */

static store_channel *find_nolock(sse_store *st, const char *name,
                                  apr_uint64_t hash)
{
    apr_uint32_t n = st->hdr->max_channels, i, k;
    for (k = 0, i = (apr_uint32_t)(hash % n); k < n; k++, i = (i + 1) % n) {
        store_channel *ch = &st->channels[i];
        if (ch->state == SLOT_FREE) return NULL;
        if (ch->state == SLOT_USED && ch->hash == hash
            && !strcmp(ch->name, name)) {
            return ch;
        }
    }
    return NULL;
}

/* How far a freed channel of this name had gone: the newest of its
 * entries (a channel deleted twice is in the ring twice). */
static apr_uint64_t freed_lookup(sse_store *st, apr_uint64_t hash)
{
    apr_uint64_t upto = st->hdr->freed_overflow;
    int i;
    for (i = 0; i < FREED_RING; i++) {
        if (st->hdr->freed[i].hash == hash
            && st->hdr->freed[i].evicted_upto > upto) {
            upto = st->hdr->freed[i].evicted_upto;
        }
    }
    return upto;
}

/* Frees a slot, remembering how far its history went, so a channel of the
 * same name created later still reports the gap to old clients. */
static void free_slot(sse_store *st, store_channel *ch)
{
    apr_uint32_t slot = (apr_uint32_t)(ch - st->channels), r, n;
    freed_channel *f = &st->hdr->freed[st->hdr->freed_next];
    apr_uint64_t upto = ch->newest_id > ch->evicted_upto ? ch->newest_id
                                                         : ch->evicted_upto;
    while (ch->head) {
        evict_oldest(st, ch);
    }
    STORE_CRASH_POINT(st, SSE_CRASH_DELETE);
    if (f->evicted_upto > st->hdr->freed_overflow) {
        st->hdr->freed_overflow = f->evicted_upto;
    }
    f->hash = ch->hash;
    f->evicted_upto = upto;
    st->hdr->freed_next = (st->hdr->freed_next + 1) % FREED_RING;
    for (r = 0; r < st->hdr->max_children; r++) {
        *store_count_at(st, (int)r, slot) = 0;
    }
    __atomic_add_fetch(&ch->incarnation, 1, __ATOMIC_RELEASE);
    ch->state = SLOT_TOMB;
    st->hdr->channels_used--;
    /* A tombstone followed by a free slot ends no probe chain: clear it,
     * and the tombstones before it. */
    n = st->hdr->max_channels;
    if (st->channels[(slot + 1) % n].state == SLOT_FREE) {
        while (st->channels[slot].state == SLOT_TOMB) {
            st->channels[slot].state = SLOT_FREE;
            slot = (slot + n - 1) % n;
        }
    }
}

/* Frees one channel without history or subscribers, preferring one that
 * only subscribers ever asked for; 0 if there is none. */
static int recycle_one(sse_store *st, apr_time_t now)
{
    apr_uint32_t i;
    store_channel *published_one = NULL;
    for (i = 0; i < st->hdr->max_channels; i++) {
        store_channel *ch = &st->channels[i];
        if (ch->state != SLOT_USED) continue;
        expire_channel(st, ch, now);
        if (ch->messages || channel_subscribers(st, i)) continue;
        if (!ch->published) {
            free_slot(st, ch);
            return 1;
        }
        if (!published_one) published_one = ch;
    }
    if (published_one) {
        free_slot(st, published_one);
        return 1;
    }
    return 0;
}

typedef enum {
    CREATE_NEVER = 0,
    CREATE_FOR_PUBLISHER,
    CREATE_FOR_SUBSCRIBER
} create_mode;

/* Slots that channels created by subscribers may fill: the last quarter
 * of the table stays for publishers, so that anonymous subscribers naming
 * made-up channels can never lock publishers out. */
static apr_uint32_t subscriber_room(sse_store *st)
{
    return st->hdr->max_channels - st->hdr->max_channels / 4;
}

static store_channel *create_nolock(sse_store *st, const char *name,
                                    apr_uint64_t hash, apr_time_t now,
                                    create_mode mode)
{
    apr_uint32_t n = st->hdr->max_channels, i, k;
    apr_uint32_t room = mode == CREATE_FOR_SUBSCRIBER ? subscriber_room(st)
                                                      : n;
    store_channel *ch = NULL;
    while (st->hdr->channels_used >= room) {
        if (!recycle_one(st, now)) return NULL;
    }
    for (k = 0, i = (apr_uint32_t)(hash % n); k < n; k++, i = (i + 1) % n) {
        if (st->channels[i].state != SLOT_USED) {
            ch = &st->channels[i];
            break;
        }
    }
    if (!ch) return NULL;
    ch->head = ch->tail = 0;
    ch->messages = ch->blocks = 0;
    ch->published = 0;
    ch->evicted_upto = freed_lookup(st, hash);
    ch->newest_id = ch->evicted_upto;
    apr_cpystrn(ch->name, name, sizeof(ch->name));
    ch->hash = hash;
    __atomic_add_fetch(&ch->incarnation, 1, __ATOMIC_RELEASE);
    ch->state = SLOT_USED;
    st->hdr->channels_used++;
    return ch;
}

static store_channel *find_or_create(sse_store *st, const char *name,
                                     create_mode mode, apr_time_t now,
                                     sse_result *res)
{
    apr_uint64_t hash = store_name_hash(name);
    store_channel *ch = find_nolock(st, name, hash);
    if (!ch && mode == CREATE_NEVER) {
        *res = SSE_NOT_FOUND;
    }
    else if (!ch && !(ch = create_nolock(st, name, hash, now, mode))) {
        *res = SSE_TABLE_FULL;
    }
    return ch;
}

/* ---------------------------------------------------------- child rows */

int store_process_exists(apr_int32_t pid)
{
    return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

void store_clear_row(sse_store *st, int row)
{
    apr_uint32_t s;
    for (s = 0; s < st->hdr->max_channels; s++) {
        *store_count_at(st, row, s) = 0;
    }
    store_clients_drop_row(st, row);
    st->children[row].subscribers = 0;
    st->children[row].on_threads = 0;
    st->children[row].wakeups = 0;
    st->children[row].parked = 0;
    st->children[row].pid = 0;
}

int sse_store_child_attach(sse_store *st, apr_int32_t pid)
{
    int row = -1, r;
    lock(st);
    for (r = 0; r < (int)st->hdr->max_children; r++) {
        apr_int32_t owner = st->children[r].pid;
        if (owner == pid || !owner || !store_process_exists(owner)) {
            /* a row of ours is a stale one of an earlier process */
            if (row < 0 || owner == pid) row = r;
            if (owner == pid) break;
        }
    }
    if (row >= 0) {
        store_clear_row(st, row);
        st->children[row].pid = pid;
    }
    unlock(st);
    return row;
}

void sse_store_child_detach(sse_store *st, int row, apr_int32_t pid)
{
    if (row < 0) return;
    lock(st);
    if (st->children[row].pid == pid) store_clear_row(st, row);
    unlock(st);
}

int sse_store_reap_children(sse_store *st)
{
    int reaped = 0;
    apr_uint32_t r;
    /* cheap unlocked look first: the parent calls this every second */
    for (r = 0; r < st->hdr->max_children; r++) {
        apr_int32_t pid = st->children[r].pid;
        if (pid && !store_process_exists(pid)) break;
    }
    if (r == st->hdr->max_children) return 0;
    lock(st);
    for (r = 0; r < st->hdr->max_children; r++) {
        apr_int32_t pid = st->children[r].pid;
        if (pid && !store_process_exists(pid)) {
            store_clear_row(st, (int)r);
            reaped++;
        }
    }
    unlock(st);
    return reaped;
}

/* ---------------------------------------------------------- subscribers */

static sse_resume resume_point(sse_store *st, const char *text,
                               apr_uint64_t *cursor)
{
    apr_uint64_t id;
    if (!text) {
        *cursor = st->hdr->last_id;
        return SSE_RESUME_NONE;
    }
    /* first_id - 1 is what a stream of an empty store starts from */
    if (sse_id_parse(text, &id) || id > st->hdr->last_id
        || (id != 0 && id + 1 < st->hdr->first_id)) {
        *cursor = 0;
        return SSE_RESUME_UNKNOWN;
    }
    *cursor = id;
    return SSE_RESUME_EXACT;
}

static sse_result refuse_busy(sse_store *st, sse_result res,
                              sse_busy_reason why)
{
    st->hdr->busy[why]++;
    return res;
}

sse_result sse_store_subscribe(sse_store *st, int row,
                               const char *const *names, int n,
                               int autocreate, const unsigned char *client,
                               const char *last_id_text,
                               sse_subscription *sub, sse_resume *resume,
                               const char **which)
{
    sse_result res = SSE_OK;
    apr_time_t now = apr_time_now();
    const sse_store_limits *lim = &st->limits;
    store_channel *found[SSE_MAX_STREAM_CHANNELS];
    int i, counted = 0;

    *which = NULL;
    if (row < 0) return SSE_NO_ROW;
    lock(st);
    if ((lim->max_subscribers && total_subscribers(st) >= lim->max_subscribers)
        || (lim->max_per_child && sub->on_thread
            && st->children[row].on_threads >= lim->max_per_child)) {
        res = refuse_busy(st, SSE_BUSY, SSE_BUSY_SERVER);
        goto done;
    }
    if (client && lim->max_per_client
        && store_client_streams(st, client) >= lim->max_per_client) {
        res = refuse_busy(st, SSE_CLIENT_LIMIT, SSE_BUSY_CLIENT);
        goto done;
    }
    for (i = 0; i < n; i++) {
        apr_uint32_t slot;
        found[i] = find_or_create(st, names[i], autocreate
                                  ? CREATE_FOR_SUBSCRIBER : CREATE_NEVER,
                                  now, &res);
        if (!found[i]) {
            *which = names[i];
            if (res == SSE_TABLE_FULL) refuse_busy(st, res, SSE_BUSY_TABLE);
            goto undo;
        }
        slot = (apr_uint32_t)(found[i] - st->channels);
        if (lim->max_per_channel
            && channel_subscribers(st, slot) >= lim->max_per_channel) {
            res = refuse_busy(st, SSE_BUSY, SSE_BUSY_CHANNEL);
            *which = names[i];
            goto undo;
        }
        /* counted at once: a full table may recycle a channel without
         * subscribers to make room for the next name, and must not take
         * one this stream has just found or created */
        (*store_count_at(st, row, slot))++;
        counted = i + 1;
    }
    STORE_CRASH_POINT(st, SSE_CRASH_SUBSCRIBE);
    sub->row = row;
    sub->n = n;
    memset(sub->hint, 0, sizeof(sub->hint));
    sub->client_counted = client && !store_client_add(st, client, row);
    if (sub->client_counted) memcpy(sub->client, client, 16);
    *resume = resume_point(st, last_id_text, &sub->cursor);
    for (i = 0; i < n; i++) {
        sub->ch[i].slot = (apr_uint32_t)(found[i] - st->channels);
        sub->ch[i].incarnation = found[i]->incarnation;
        expire_channel(st, found[i], now);
        if (*resume == SSE_RESUME_EXACT
            && found[i]->evicted_upto > sub->cursor) {
            *resume = SSE_RESUME_EXPIRED;
        }
    }
    st->children[row].subscribers++;
    if (sub->on_thread) st->children[row].on_threads++;
    goto done;
undo:
    for (i = 0; i < counted; i++) {
        (*store_count_at(st, row,
                         (apr_uint32_t)(found[i] - st->channels)))--;
    }
done:
    unlock(st);
    return res;
}

void sse_store_unsubscribe(sse_store *st, sse_subscription *sub)
{
    int i;
    lock(st);
    for (i = 0; i < sub->n; i++) {
        store_channel *ch = &st->channels[sub->ch[i].slot];
        apr_uint32_t *count = store_count_at(st, sub->row, sub->ch[i].slot);
        /* a deleted channel's counts were zeroed with it */
        if (ch->incarnation == sub->ch[i].incarnation && *count) (*count)--;
    }
    if (sub->client_counted) {
        store_client_remove(st, sub->client, sub->row);
        sub->client_counted = 0;
    }
    if (st->children[sub->row].subscribers) {
        st->children[sub->row].subscribers--;
    }
    if (sub->on_thread && st->children[sub->row].on_threads) {
        st->children[sub->row].on_threads--;
    }
    unlock(st);
    sub->n = 0;
}

/* A stream's channel is gone when its slot moved on to another
 * incarnation, or is not in use at all: normally both go together, but a
 * stray write that repair undid may have left the slot's incarnation
 * where the stream had it. Either way the stream must not read the slot's
 * list. */
static int channel_gone(store_channel *ch, const sse_sub_channel *sc)
{
    return __atomic_load_n(&ch->incarnation, __ATOMIC_ACQUIRE)
               != sc->incarnation
           || __atomic_load_n(&ch->state, __ATOMIC_ACQUIRE) != SLOT_USED;
}

int sse_store_has_news(sse_store *st, const sse_subscription *sub)
{
    int i;
    for (i = 0; i < sub->n; i++) {
        store_channel *ch = &st->channels[sub->ch[i].slot];
        if (channel_gone(ch, &sub->ch[i])
            || __atomic_load_n(&ch->newest_id, __ATOMIC_ACQUIRE)
                > sub->cursor) {
            return 1;
        }
    }
    return 0;
}

int sse_store_channel_ids(sse_store *st, const sse_sub_channel *sc,
                          apr_uint64_t *newest, apr_uint64_t *evicted_upto)
{
    store_channel *ch = &st->channels[sc->slot];
    if (channel_gone(ch, sc)) return 0;
    *newest = __atomic_load_n(&ch->newest_id, __ATOMIC_ACQUIRE);
    *evicted_upto = __atomic_load_n(&ch->evicted_upto, __ATOMIC_ACQUIRE);
    /* gone in between: the ids may be the next incarnation's */
    return !channel_gone(ch, sc);
}

apr_interval_time_t sse_store_history_max_age(const sse_store *st)
{
    return st->limits.history_max_age;
}

/* First message of ch with an id above cursor, 0 if none. A reader that
 * has read from the channel before continues after the message it read
 * last; otherwise the list is walked from the nearer end (by id). */
static apr_uint32_t first_after(sse_store *st, store_channel *ch,
                                apr_uint64_t cursor, const sse_read_hint *h)
{
    apr_uint32_t slot = (apr_uint32_t)(ch - st->channels), b;
    apr_uint64_t head_id, tail_id;
    if (!ch->tail || (tail_id = store_msg_at(st, ch->tail)->id) <= cursor) {
        return 0;
    }
    if ((head_id = store_msg_at(st, ch->head)->id) > cursor) {
        return ch->head;
    }
    if (h->block && h->block < st->hdr->nblocks && h->id <= cursor) {
        msg_head *m = store_msg_at(st, h->block);
        if (m->magic == MSG_MAGIC && m->slot == slot && m->id == h->id) {
            for (b = m->newer; b && store_msg_at(st, b)->id <= cursor;
                 b = store_msg_at(st, b)->newer) {
                st->walk_steps++;
            }
            return b;
        }
    }
    if (cursor - head_id < tail_id - cursor) {
        for (b = ch->head; store_msg_at(st, b)->id <= cursor;
             b = store_msg_at(st, b)->newer) {
            st->walk_steps++;
        }
        return b;
    }
    for (b = ch->tail; store_msg_at(st, store_msg_at(st, b)->older)->id
                       > cursor; b = store_msg_at(st, b)->older) {
        st->walk_steps++;
    }
    return b;
}

#ifdef SSE_TEST_HOOKS
void store_crash_point(sse_store *st, sse_crash_point point)
{
    apr_uint32_t armed = point;
    if (__atomic_compare_exchange_n(&st->hdr->test_crash_point, &armed,
                                    SSE_CRASH_NONE, 0, __ATOMIC_SEQ_CST,
                                    __ATOMIC_SEQ_CST)) {
        raise(SIGSTOP);
    }
}

apr_status_t sse_store_test_arm(sse_store *st, sse_crash_point point)
{
    if (point <= SSE_CRASH_NONE || point >= SSE_CRASH_POINTS) {
        return APR_EINVAL;
    }
    __atomic_store_n(&st->hdr->test_crash_point, point, __ATOMIC_SEQ_CST);
    return APR_SUCCESS;
}
#else
apr_status_t sse_store_test_arm(sse_store *st, sse_crash_point point)
{
    (void)st;
    (void)point;
    return APR_ENOTIMPL;
}
#endif

apr_uint64_t sse_store_walk_steps(const sse_store *st)
{
    return st->walk_steps;
}

apr_status_t sse_store_read(sse_store *st, sse_subscription *sub,
                            apr_pool_t *p, apr_size_t budget,
                            sse_read_result *res)
{
    apr_uint32_t next[SSE_MAX_STREAM_CHANNELS];
    apr_time_t now = apr_time_now();
    apr_size_t total = 0;
    int i;

    memset(res, 0, sizeof(*res));
    lock(st);
    for (i = 0; i < sub->n; i++) {
        store_channel *ch = &st->channels[sub->ch[i].slot];
        next[i] = 0;
        if (channel_gone(ch, &sub->ch[i])) {
            res->deleted = 1;
            continue;
        }
        expire_channel(st, ch, now);
        if (ch->evicted_upto > sub->cursor) res->gap = 1;
        next[i] = first_after(st, ch, sub->cursor, &sub->hint[i]);
    }
    if (res->deleted) {
        unlock(st);
        return APR_SUCCESS;
    }
    /* merge the channels by id: a first pass sizes, a second copies */
    {
        apr_uint32_t start[SSE_MAX_STREAM_CHANNELS], want = 0;
        int pass;
        memcpy(start, next, sizeof(apr_uint32_t) * (apr_size_t)sub->n);
        for (pass = 0; pass < 2; pass++) {
            apr_uint32_t taken = 0;
            if (pass == 1) {
                if (!want) break;
                res->buf = apr_palloc(p, total);
                res->marks = apr_palloc(p, sizeof(sse_read_mark) * want);
                memcpy(next, start, sizeof(apr_uint32_t) * (apr_size_t)sub->n);
                total = 0;
            }
            for (;;) {
                int best = -1;
                msg_head *m;
                for (i = 0; i < sub->n; i++) {
                    if (next[i] && (best < 0 || store_msg_at(st, next[i])->id
                                                < store_msg_at(st, next[best])->id)) {
                        best = i;
                    }
                }
                if (best < 0) break;
                m = store_msg_at(st, next[best]);
                if (pass == 0 && want && total + m->len > budget) {
                    res->more = 1;
                    break;
                }
                if (pass == 1) {
                    if (taken == want) break;
                    res->marks[taken].id = m->id;
                    res->marks[taken].offset = total;
                    copy_out(st, next[best], res->buf + total);
                    if (!taken) {
                        res->first_id = m->id;
                        res->first_time = m->time;
                    }
                    res->last_id = m->id;
                    sub->hint[best].block = next[best];
                    sub->hint[best].id = m->id;
                }
                total += m->len;
                taken++;
                if (pass == 0) want = taken;
                next[best] = m->newer;
            }
        }
        res->events = want;
    }
    res->len = total;
    sub->cursor = res->more ? res->last_id : st->hdr->last_id;
    unlock(st);
    return APR_SUCCESS;
}

/* ----------------------------------------------------------- publishing */

sse_redis_figures *sse_store_redis_figures(sse_store *st)
{
    return &st->hdr->redis;
}

apr_uint64_t sse_store_last_id(sse_store *st)
{
    apr_uint64_t id;
    lock(st);
    id = st->hdr->last_id >= st->hdr->first_id ? st->hdr->last_id : 0;
    unlock(st);
    return id;
}

/* given_id: 0 to assign ids here, else the first of ids assigned
 * elsewhere. */
static sse_result store_publish(sse_store *st, const char *channel,
                                const char *const *frames,
                                const apr_size_t *lens, int n,
                                apr_uint64_t given_id,
                                apr_uint64_t *first_id,
                                apr_uint32_t *subscribers)
{
    apr_time_t now = apr_time_now();
    sse_result res = SSE_OK;
    store_channel *ch;
    apr_uint32_t need = 0, reclaimable = 0, b;
    char idline[SSE_ID_TEXT_MAX + 8];
    int i;

    if ((apr_uint32_t)n > st->limits.history_size) {
        return SSE_TOO_MANY;
    }
    lock(st);
    if (given_id) {
        if (st->hdr->last_id < st->hdr->first_id && given_id < st->hdr->first_id) {
            /* nothing stored yet: ids from elsewhere may predate the store */
            st->hdr->first_id = given_id;
            st->hdr->last_id = given_id - 1;
        }
        if (given_id <= st->hdr->last_id) {
            res = SSE_STALE;
            goto done;
        }
    }
    if (!(ch = find_or_create(st, channel, CREATE_FOR_PUBLISHER, now, &res))) {
        goto done;
    }
    expire_channel(st, ch, now);
    for (i = 0; i < n; i++) {
        /* "id: " + up to 20 digits + "\n" */
        need += store_blocks_for(lens[i] + SSE_ID_TEXT_MAX + 5);
    }
    /* the messages this publish pushes out of the history free blocks */
    if (ch->messages + (apr_uint32_t)n > st->limits.history_size) {
        apr_uint32_t drop = ch->messages + (apr_uint32_t)n
                            - st->limits.history_size;
        for (b = ch->head; b && drop; b = store_msg_at(st, b)->newer, drop--) {
            reclaimable += store_msg_at(st, b)->nblocks;
        }
    }
    if (st->hdr->free_blocks + reclaimable < need) {
        expire_all(st, now);
    }
    if (st->hdr->free_blocks + reclaimable < need) {
        res = SSE_MEMORY_FULL;
        goto done;
    }
    while (ch->messages + (apr_uint32_t)n > st->limits.history_size) {
        evict_oldest(st, ch);
    }
    for (i = 0; i < n; i++) {
        apr_uint64_t id = given_id ? given_id + (apr_uint64_t)i
                                   : st->hdr->last_id + 1;
        apr_size_t idlen, len;
        msg_head *m;
        memcpy(idline, "id: ", 4);
        idlen = 4 + sse_id_format(idline + 4, id);
        idline[idlen++] = '\n';
        len = idlen + lens[i];
        b = alloc_chain(st, store_blocks_for(len));
        m = store_msg_at(st, b);
        m->len = (apr_uint32_t)len;
        m->id = id;
        m->time = now;
        m->slot = (apr_uint32_t)(ch - st->channels);
        m->nblocks = store_blocks_for(len);
        m->newer = 0;
        m->older = ch->tail;
        copy_in(st, b, sizeof(msg_head), idline, idlen);
        copy_in(st, b, sizeof(msg_head) + idlen, frames[i], lens[i]);
        m->magic = MSG_MAGIC;
        STORE_CRASH_POINT(st, SSE_CRASH_PUBLISH_WRITTEN);
        /* fully written: now link it in and make it visible */
        if (ch->tail) store_msg_at(st, ch->tail)->newer = b;
        else ch->head = b;
        ch->tail = b;
        STORE_CRASH_POINT(st, SSE_CRASH_PUBLISH_LINKED);
        ch->messages++;
        ch->blocks += m->nblocks;
        ch->published++;
        st->hdr->published++;
        st->hdr->last_id = id;
        __atomic_store_n(&ch->newest_id, id, __ATOMIC_RELEASE);
        if (i == 0) *first_id = id;
    }
    *subscribers = channel_subscribers(st, (apr_uint32_t)(ch - st->channels));
done:
    unlock(st);
    return res;
}

sse_result sse_store_publish(sse_store *st, const char *channel,
                             const char *const *frames,
                             const apr_size_t *lens, int n,
                             apr_uint64_t *first_id,
                             apr_uint32_t *subscribers)
{
    return store_publish(st, channel, frames, lens, n, 0, first_id,
                         subscribers);
}

sse_result sse_store_publish_at(sse_store *st, const char *channel,
                                const char *const *frames,
                                const apr_size_t *lens, int n,
                                apr_uint64_t first_id,
                                apr_uint32_t *subscribers)
{
    apr_uint64_t ignored;
    if (!first_id) return SSE_STALE;
    return store_publish(st, channel, frames, lens, n, first_id, &ignored,
                         subscribers);
}

/* --------------------------------------------------------------- admin */

static void fill_info(sse_store *st, store_channel *ch, sse_channel_info *info)
{
    apr_cpystrn(info->name, ch->name, sizeof(info->name));
    info->subscribers = channel_subscribers(st, (apr_uint32_t)(ch - st->channels));
    info->messages = ch->messages;
    info->first_id = ch->head ? store_msg_at(st, ch->head)->id : 0;
    info->last_id = ch->tail ? store_msg_at(st, ch->tail)->id : 0;
    info->published = ch->published;
    info->bytes = (apr_uint64_t)ch->blocks * BLOCK_SIZE;
}

sse_result sse_store_channel_info(sse_store *st, const char *name,
                                  sse_channel_info *info)
{
    sse_result res = SSE_OK;
    store_channel *ch;
    lock(st);
    if ((ch = find_or_create(st, name, CREATE_NEVER, 0, &res))) {
        expire_channel(st, ch, apr_time_now());
        fill_info(st, ch, info);
    }
    unlock(st);
    return res;
}

apr_array_header_t *sse_store_list(sse_store *st, apr_pool_t *p)
{
    apr_array_header_t *arr = apr_array_make(p, 16, sizeof(sse_channel_info));
    apr_time_t now = apr_time_now();
    apr_uint32_t i;
    lock(st);
    for (i = 0; i < st->hdr->max_channels; i++) {
        store_channel *ch = &st->channels[i];
        if (ch->state == SLOT_USED) {
            expire_channel(st, ch, now);
            fill_info(st, ch, apr_array_push(arr));
        }
    }
    unlock(st);
    return arr;
}

sse_result sse_store_delete(sse_store *st, const char *name,
                            sse_channel_info *dropped)
{
    sse_result res = SSE_OK;
    store_channel *ch;
    lock(st);
    if ((ch = find_or_create(st, name, CREATE_NEVER, 0, &res))) {
        fill_info(st, ch, dropped);
        free_slot(st, ch);
    }
    unlock(st);
    return res;
}

void sse_store_status_get(sse_store *st, apr_pool_t *p,
                          sse_store_status *status)
{
    apr_time_t now = apr_time_now();
    apr_uint32_t i;
    memset(status, 0, sizeof(*status));
    status->children = apr_array_make(p, 4, sizeof(sse_child_info));
    lock(st);
    expire_all(st, now);
    for (i = 0; i < st->hdr->max_channels; i++) {
        if (st->channels[i].state == SLOT_USED) {
            status->messages += st->channels[i].messages;
        }
    }
    for (i = 0; i < st->hdr->max_children; i++) {
        if (st->children[i].pid) {
            sse_child_info *ci = apr_array_push(status->children);
            ci->pid = st->children[i].pid;
            ci->subscribers = st->children[i].subscribers;
            ci->parked = __atomic_load_n(&st->children[i].parked,
                                         __ATOMIC_RELAXED);
            ci->on_threads = st->children[i].on_threads;
            ci->wakeups = __atomic_load_n(&st->children[i].wakeups,
                                          __ATOMIC_RELAXED);
            status->subscribers += ci->subscribers;
            status->parked += ci->parked;
        }
    }
    status->channels = st->hdr->channels_used;
    status->max_channels = st->hdr->max_channels;
    status->shm_size = st->hdr->size;
    status->shm_free = (apr_uint64_t)st->hdr->free_blocks * BLOCK_SIZE;
    status->shm_used = status->shm_size - status->shm_free;
    status->published = st->hdr->published;
    status->delivered = __atomic_load_n(&st->hdr->delivered, __ATOMIC_RELAXED);
    status->rejected = __atomic_load_n(&st->hdr->rejected, __ATOMIC_RELAXED);
    status->first_id = st->hdr->first_id;
    status->last_id = st->hdr->last_id;
    status->repairs = st->hdr->repairs;
    memcpy(status->busy, st->hdr->busy, sizeof(status->busy));
    status->redis = st->hdr->redis;
    unlock(st);
}

void sse_store_count_delivered(sse_store *st, apr_uint64_t n)
{
    __atomic_add_fetch(&st->hdr->delivered, n, __ATOMIC_RELAXED);
}

void sse_store_count_busy(sse_store *st, sse_busy_reason why)
{
    __atomic_add_fetch(&st->hdr->busy[why], 1, __ATOMIC_RELAXED);
}

void sse_store_count_wakeup(sse_store *st, int row)
{
    if (row < 0 || (apr_uint32_t)row >= st->hdr->max_children) return;
    __atomic_add_fetch(&st->children[row].wakeups, 1, __ATOMIC_RELAXED);
}

void sse_store_count_parked(sse_store *st, int row, int delta)
{
    if (row < 0 || (apr_uint32_t)row >= st->hdr->max_children) return;
    __atomic_add_fetch(&st->children[row].parked, (apr_uint32_t)delta,
                       __ATOMIC_RELAXED);
}

void sse_store_count_rejected(sse_store *st)
{
    __atomic_add_fetch(&st->hdr->rejected, 1, __ATOMIC_RELAXED);
}
