/* sse_store_layout.h - the store's shared-memory layout, private to the
 * sse_store*.c files. Bump STORE_LAYOUT on any change to these structs.
 *
 * Segment layout (each part aligned to 64 bytes):
 *
 *   [ header | channels[max_channels] | children[max_children]
 *     | counts[max_children][max_channels] | clients[client_slots]
 *     | blocks[nblocks] ]
 *
 * - channels: an open-addressing hash table keyed by the name's FNV-1a
 *   hash, linear probing; a deleted slot becomes a tombstone.
 * - children: one row per child process (pid), with per-channel subscriber
 *   counts in counts[row][slot]. A channel's subscriber count is the sum
 *   over live rows, so a crashed child's share disappears with its row.
 * - clients: open streams per (client address, child row), for the
 *   per-client limit; linear probing with backward-shift deletion, so it
 *   never fills with tombstones.
 * - blocks: 256-byte blocks. A message is a chain of blocks whose first
 *   block starts with a msg_head; a channel's messages form a doubly
 *   linked list, oldest (head) to newest (tail). Free blocks form a list.
 *   Block 0 is never used, so 0 means "none".
 *
 * Nothing in the segment is a pointer: only indexes and offsets from its
 * base, so every process may map it anywhere.
 */
#ifndef SSE_STORE_LAYOUT_H
#define SSE_STORE_LAYOUT_H

#include "sse_store.h"

#define STORE_MAGIC        0x53534532u   /* "SSE2" */
/* 5: each process keeps a copy of the header's fixed fields at the end of
 * struct sse_store, which code of layout 4 did not allocate; 6: the Redis
 * mirror's figures in the header */
#ifdef SSE_TEST_STORE_LAYOUT
/* test builds only: pretend to be another mod_sse version's layout */
#define STORE_LAYOUT       SSE_TEST_STORE_LAYOUT
#else
#define STORE_LAYOUT       6u
#endif
#define MSG_MAGIC          0x4d534731u   /* "MSG1" */
#define BLOCK_SIZE         256
#define BLOCK_PAYLOAD      (BLOCK_SIZE - 8)
#define FREED_RING         256
#define MIN_BLOCKS         64

enum { SLOT_FREE = 0, SLOT_USED = 1, SLOT_TOMB = 2 };

typedef struct {
    apr_uint64_t hash;
    apr_uint64_t evicted_upto;
} freed_channel;

typedef struct {
    apr_uint32_t magic;          /* STORE_MAGIC: this is a store */
    apr_uint32_t layout;         /* STORE_LAYOUT of the code that made it */
    apr_uint64_t size;           /* bytes of the whole segment */
    apr_uint32_t max_channels;   /* slots in the channel table */
    apr_uint32_t max_children;   /* rows in the child table */
    apr_uint32_t nblocks;        /* blocks, including unused block 0 */
    apr_uint32_t wake_seq;       /* futex word, bumped after changes */
    apr_uint64_t channels_off, children_off, counts_off, clients_off;
    apr_uint64_t blocks_off;
    apr_uint32_t client_slots;   /* entries in clients[], a power of two */
    apr_uint32_t clients_used;
    apr_uint32_t dirty;          /* a locked section is in progress */
    apr_uint32_t repairs;        /* how often a torn update was repaired */
    apr_uint64_t first_id;       /* first id this store assigns */
    apr_uint64_t last_id;        /* newest id assigned */
    apr_uint32_t free_head;      /* free block list */
    apr_uint32_t free_blocks;
    apr_uint32_t channels_used;
    apr_uint32_t freed_next;     /* next entry of freed[] to overwrite */
    apr_uint64_t freed_overflow; /* highest evicted id pushed out of freed[] */
    freed_channel freed[FREED_RING]; /* recently deleted/recycled channels */
    apr_uint64_t published, delivered, rejected;
    apr_uint64_t busy[SSE_BUSY_REASONS]; /* subscribers told to come back */
    apr_uint32_t test_crash_point; /* test builds: stop at this point */
    apr_uint32_t unused;
    sse_redis_figures redis;     /* written by the Redis mirror only */
} store_header;

typedef struct {
    apr_uint32_t state;          /* SLOT_FREE, SLOT_USED, SLOT_TOMB */
    apr_uint32_t incarnation;    /* bumped when the slot is taken or freed */
    apr_uint64_t hash;
    apr_uint32_t head, tail;     /* oldest and newest message, 0 = none */
    apr_uint32_t messages;       /* retained */
    apr_uint32_t blocks;         /* used by retained messages */
    apr_uint64_t newest_id;      /* newest id ever published here */
    apr_uint64_t evicted_upto;   /* highest id dropped from the history */
    apr_uint64_t published;      /* 0: only subscribers ever asked for it */
    char name[SSE_CHANNEL_MAX + 1];
} store_channel;

typedef struct {
    apr_int32_t pid;             /* 0 = free row */
    apr_uint32_t subscribers;    /* open streams in that process */
    apr_uint32_t parked;         /* of those, owned by its writer */
    apr_uint32_t on_threads;     /* of those, holding a worker thread */
    apr_uint32_t wakeups;        /* stream threads woken for news */
    apr_uint32_t unused;
} store_child;

typedef struct {
    unsigned char addr[16];      /* IPv6, or IPv4 mapped into IPv6 */
    apr_int32_t row;             /* child row holding the streams */
    apr_uint32_t streams;        /* 0 = free entry */
} store_client;

typedef struct {
    apr_uint32_t next;           /* next block of this message, 0 = last */
    apr_uint32_t unused;
    unsigned char bytes[BLOCK_PAYLOAD];
} store_block;

/* At the start of a message's first block. */
typedef struct {
    apr_uint32_t magic;          /* MSG_MAGIC */
    apr_uint32_t len;            /* framed bytes that follow */
    apr_uint64_t id;
    apr_time_t time;             /* publish time, for SSEHistoryMaxAge */
    apr_uint32_t newer, older;   /* neighbours in the channel list */
    apr_uint32_t slot;           /* channel it belongs to */
    apr_uint32_t nblocks;        /* blocks in its chain */
} msg_head;

#define FIRST_PAYLOAD (BLOCK_PAYLOAD - sizeof(msg_head))

/* The header fields fixed at creation. Each process keeps a copy, so that
 * repair can put back a header that something overwrote (no locked
 * section writes these, so a holder that dies cannot tear them). */
#define STORE_SHAPE_FIELDS(X) X(magic) X(layout) X(size) X(max_channels) \
    X(max_children) X(nblocks) X(client_slots) X(channels_off) \
    X(children_off) X(counts_off) X(clients_off) X(blocks_off) X(first_id)

typedef struct {
    apr_uint32_t magic, layout;
    apr_uint64_t size;
    apr_uint32_t max_channels, max_children, nblocks, client_slots;
    apr_uint64_t channels_off, children_off, counts_off, clients_off;
    apr_uint64_t blocks_off;
    apr_uint64_t first_id;
} store_shape;

/* A process's view of the segment. */
struct sse_store {
    apr_shm_t *shm;
    char *base;
    store_header *hdr;
    store_channel *channels;
    store_child *children;
    apr_uint32_t *counts;
    store_client *clients;
    store_block *blocks;
    apr_global_mutex_t *mutex;
    sse_store_limits limits;
    apr_uint64_t walk_steps;     /* see sse_store_walk_steps() */
    store_shape shape;           /* the header's fixed fields, at creation */
};

#define ALIGN64(x) (((x) + 63) & ~(apr_uint64_t)63)

static APR_INLINE apr_uint64_t store_name_hash(const char *s)
{
    apr_uint64_t h = 14695981039346656037ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

static APR_INLINE msg_head *store_msg_at(sse_store *st, apr_uint32_t b)
{
    return (msg_head *)st->blocks[b].bytes;
}

static APR_INLINE apr_uint32_t store_blocks_for(apr_size_t len)
{
    if (len <= FIRST_PAYLOAD) return 1;
    return 1 + (apr_uint32_t)((len - FIRST_PAYLOAD + BLOCK_PAYLOAD - 1)
                              / BLOCK_PAYLOAD);
}

static APR_INLINE apr_uint32_t *store_count_at(sse_store *st, int row,
                                               apr_uint32_t slot)
{
    return &st->counts[(apr_size_t)row * st->hdr->max_channels + slot];
}

/* Test builds (SSE_TEST_HOOKS) stop the process, lock held, at the armed
 * point of a locked section, for a test to kill it there; other builds
 * compile the points away. */
#ifdef SSE_TEST_HOOKS
void store_crash_point(sse_store *st, sse_crash_point point);
#define STORE_CRASH_POINT(st, point) store_crash_point((st), (point))
#else
#define STORE_CRASH_POINT(st, point) ((void)0)
#endif

/* sse_store.c */
int store_process_exists(apr_int32_t pid);
void store_clear_row(sse_store *st, int row);

/* sse_store_check.c: NULL when the message at block b (a valid index)
 * is intact: its head, a chain of exactly nblocks blocks that owner[]
 * (when not NULL) marks as unclaimed (0), and one framed event starting
 * with its id: line; else what is wrong. */
const char *store_msg_problem(sse_store *st, apr_uint32_t b,
                              apr_uint32_t slot, const unsigned char *owner);

/* sse_store_clients.c; the caller holds the lock */
apr_uint32_t store_clients_for_size(apr_uint32_t max_streams);
/* The entry where the probe chain for addr starts. */
apr_uint32_t store_client_home(const sse_store *st, const unsigned char *addr);
apr_uint32_t store_client_streams(sse_store *st, const unsigned char *addr);
/* 0 on success, -1 when the table is full (the stream is not counted) */
int store_client_add(sse_store *st, const unsigned char *addr, int row);
void store_client_remove(sse_store *st, const unsigned char *addr, int row);
void store_clients_drop_row(sse_store *st, int row);
/* Re-inserts every valid entry; returns the number of problems fixed. */
int store_clients_rebuild(sse_store *st);

#endif /* SSE_STORE_LAYOUT_H */
