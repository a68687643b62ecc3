/* sse_store.h - the channel table and message history in shared memory,
 * shared by all children of all generations. APR only: no httpd headers.
 *
 * Every function takes and releases the store mutex itself unless its name
 * ends in _nolock. None does network I/O.
 */
#ifndef SSE_STORE_H
#define SSE_STORE_H

#include "apr_pools.h"
#include "apr_tables.h"
#include "apr_global_mutex.h"
#include "apr_shm.h"

#include "sse_event.h"

typedef struct sse_store sse_store;

/* Retention and admission limits; process-local, set from configuration. */
typedef struct {
    apr_uint32_t history_size;          /* messages kept per channel, >= 1 */
    apr_interval_time_t history_max_age; /* 0 = no age limit */
    apr_uint32_t max_subscribers;       /* whole store, 0 = no limit */
    apr_uint32_t max_per_channel;       /* 0 = no limit */
    apr_uint32_t max_per_child;         /* streams on worker threads one
                                           process may hold, 0 = no limit */
    apr_uint32_t max_per_client;        /* streams one client address may
                                           hold, 0 = no limit */
} sse_store_limits;

/* Why subscribers were told to come back later; counted in the status. */
typedef enum {
    SSE_BUSY_SERVER = 0,   /* SSEMaxSubscribers, or the child's share */
    SSE_BUSY_CHANNEL,      /* SSEMaxSubscribersPerChannel */
    SSE_BUSY_CLIENT,       /* SSEMaxStreamsPerClient */
    SSE_BUSY_TABLE,        /* no channel slot a subscriber may take */
    SSE_BUSY_REASONS
} sse_busy_reason;

typedef enum {
    SSE_OK = 0,
    SSE_NOT_FOUND,     /* channel does not exist */
    SSE_BUSY,          /* a subscriber limit is reached */
    SSE_CLIENT_LIMIT,  /* the client address has its maximum of streams */
    SSE_TABLE_FULL,    /* no free channel slot */
    SSE_MEMORY_FULL,   /* not enough free blocks */
    SSE_TOO_MANY,      /* a batch longer than the history */
    SSE_NO_ROW,        /* this process has no row in the child table */
    SSE_STALE          /* publish_at: the ids are not new here */
} sse_result;

/* How a resume with a last event id went. */
typedef enum {
    SSE_RESUME_NONE = 0, /* no last event id given: live only */
    SSE_RESUME_EXACT,    /* nothing missed */
    SSE_RESUME_EXPIRED,  /* messages after the id were dropped */
    SSE_RESUME_UNKNOWN,  /* the id was not issued by this store */
    SSE_RESUME_OVERFLOW  /* a live stream fell behind the history */
} sse_resume;

typedef struct {
    apr_uint32_t slot;         /* index in the channel table */
    apr_uint32_t incarnation;  /* of that slot when subscribed */
} sse_sub_channel;

/* Where a reader left off in one channel: the block and id of the newest
 * message it read there. Checked before use (the block may have been
 * evicted and reused since), so a stale one only costs a walk. */
typedef struct {
    apr_uint32_t block;
    apr_uint64_t id;
} sse_read_hint;

/* One stream's view of the store; process-local. */
typedef struct {
    int row;                   /* child row the counts were charged to */
    int client_counted;        /* client holds a count in the store */
    int on_thread;             /* set by the caller before subscribing: the
                                  stream holds a worker thread, and counts
                                  against the child's share of them */
    unsigned char client[16];  /* its address (IPv4 mapped into IPv6) */
    int n;
    sse_sub_channel ch[SSE_MAX_STREAM_CHANNELS];
    sse_read_hint hint[SSE_MAX_STREAM_CHANNELS];
    apr_uint64_t cursor;       /* every message <= cursor was considered */
} sse_subscription;

/* Where one event starts in a read's buffer. */
typedef struct {
    apr_uint64_t id;
    apr_size_t offset;
} sse_read_mark;

/* What one read produced: whole framed events in id order. */
typedef struct {
    char *buf;
    sse_read_mark *marks;      /* one per event, so a reader that has seen
                                  some of them can skip ahead */
    apr_size_t len;
    apr_uint32_t events;
    apr_uint64_t first_id;     /* of the first event in buf, 0 if none */
    apr_uint64_t last_id;      /* of the last event in buf, 0 if none */
    apr_time_t first_time;     /* when the first event was published */
    int more;                  /* the budget ran out: read again */
    int gap;                   /* history rolled over past the cursor */
    int deleted;               /* a subscribed channel was deleted */
} sse_read_result;

typedef struct {
    char name[SSE_CHANNEL_MAX + 1];
    apr_uint32_t subscribers;
    apr_uint32_t messages;
    apr_uint64_t first_id, last_id;  /* retained range, 0 = none */
    apr_uint64_t published;
    apr_uint64_t bytes;              /* shared memory used by its history */
} sse_channel_info;

typedef struct {
    apr_int32_t pid;
    apr_uint32_t subscribers;
    apr_uint32_t parked;             /* streams its writer owns */
    apr_uint32_t on_threads;         /* streams holding a worker thread */
    apr_uint32_t wakeups;            /* their threads woken for news */
} sse_child_info;

/* What the Redis mirror (SSERedis) reports: written by it alone, read
 * without the lock. */
typedef struct {
    apr_uint32_t state;          /* SSE_REDIS_OFF, _CONNECTING, _SUBSCRIBED */
    apr_uint32_t reconnects;     /* subscriptions lost and made again */
    apr_uint64_t mirrored;       /* events copied in from Redis */
    apr_uint64_t caught_up;      /* of those, read back after a (re)connect */
    apr_int64_t lag_usec;        /* now - id of the newest copied event */
    apr_uint64_t since;          /* when the state last changed (usec) */
} sse_redis_figures;

enum { SSE_REDIS_OFF = 0, SSE_REDIS_CONNECTING, SSE_REDIS_SUBSCRIBED };

typedef struct {
    apr_uint32_t channels, max_channels;
    apr_uint32_t subscribers;
    apr_uint32_t parked;
    apr_uint64_t messages;
    apr_uint64_t shm_size, shm_used, shm_free;
    apr_uint64_t published, delivered, rejected;
    apr_uint64_t first_id, last_id;
    apr_uint32_t repairs;
    apr_uint64_t busy[SSE_BUSY_REASONS]; /* subscribers told to come back */
    apr_array_header_t *children;    /* sse_child_info */
    sse_redis_figures redis;
} sse_store_status;

/* The shape of a store, fixed when it is created. */
typedef struct {
    apr_size_t size;             /* bytes of the segment */
    apr_uint32_t max_channels;   /* channel table slots */
    apr_uint32_t max_children;   /* processes that may use it at once */
    apr_uint32_t max_streams;    /* streams the client table must count */
} sse_store_geometry;

/* Creates a store in a new shared-memory segment allocated from p (keep p
 * alive for as long as any process uses the store). fallback_file names a
 * file for systems without anonymous shared memory. The mutex guards it. */
apr_status_t sse_store_create(sse_store **pst, apr_pool_t *p,
                              const sse_store_geometry *geo,
                              const char *fallback_file,
                              apr_global_mutex_t *mutex, const char **why);

/* Smallest segment that holds this geometry (its size is ignored). */
apr_uint64_t sse_store_min_size(const sse_store_geometry *geo);

/* Non-zero when the store's layout is this code's (a segment kept across
 * a graceful restart may come from another mod_sse version). */
int sse_store_is_current(const sse_store *st);

/* Non-zero when the store was made by this code with this geometry (a
 * larger client table than needed is fine). */
int sse_store_has_geometry(const sse_store *st,
                           const sse_store_geometry *geo);

void sse_store_set_limits(sse_store *st, const sse_store_limits *limits);
const sse_store_limits *sse_store_get_limits(const sse_store *st);
apr_global_mutex_t **sse_store_mutex(sse_store *st);

/* The 32-bit word bumped after every change subscribers must see; waiters
 * use it as a futex. */
apr_uint32_t *sse_store_wake_word(sse_store *st);

/* Child rows: per-process subscriber counts, so a dead child's share can be
 * dropped. attach returns the row or -1. */
int sse_store_child_attach(sse_store *st, apr_int32_t pid);
void sse_store_child_detach(sse_store *st, int row, apr_int32_t pid);
/* Drops rows of processes that no longer exist; returns how many. */
int sse_store_reap_children(sse_store *st);

/* Subscribes to names[0..n). client is the 16-byte address the
 * per-client limit counts (NULL: not counted). last_id_text is the
 * client's Last-Event-ID (NULL if none); *resume says how the resume went
 * and sub->cursor is set so that the next read replays exactly what the
 * client missed. A channel a subscriber creates may not take the last
 * quarter of the channel table, which stays for publishers. On a result
 * other than SSE_OK no count changed; *which names the channel, if one was
 * the reason. */
sse_result sse_store_subscribe(sse_store *st, int row,
                               const char *const *names, int n,
                               int autocreate, const unsigned char *client,
                               const char *last_id_text,
                               sse_subscription *sub, sse_resume *resume,
                               const char **which);
void sse_store_unsubscribe(sse_store *st, sse_subscription *sub);

/* Without the lock: non-zero when a read may find something new (a newer
 * message or a deleted channel). */
int sse_store_has_news(sse_store *st, const sse_subscription *sub);

/* Without the lock: the ids of the newest and of the last dropped message
 * of a subscribed channel (sse_read_cache.c uses them to tell whether a
 * read is still current); zero when the channel is gone. */
int sse_store_channel_ids(sse_store *st, const sse_sub_channel *sc,
                          apr_uint64_t *newest, apr_uint64_t *evicted_upto);

/* SSEHistoryMaxAge as this process applies it; 0 = no age limit. */
apr_interval_time_t sse_store_history_max_age(const sse_store *st);

/* Copies the next messages after sub->cursor, in id order, at most budget
 * bytes (but at least one message), into memory from p; advances the
 * cursor. Finding where to start costs O(1) per channel once the
 * subscription has read from it (sub->hint), so a long replay in small
 * budgets holds the lock for short, bounded times. */
apr_status_t sse_store_read(sse_store *st, sse_subscription *sub,
                            apr_pool_t *p, apr_size_t budget,
                            sse_read_result *res);

/* Appends n framed events (everything but their id: line) to a channel,
 * creating it if needed, all or nothing, with consecutive ids. */
sse_result sse_store_publish(sse_store *st, const char *channel,
                             const char *const *frames,
                             const apr_size_t *lens, int n,
                             apr_uint64_t *first_id,
                             apr_uint32_t *subscribers);

/* The same with ids assigned elsewhere (several servers sharing channels):
 * first_id, first_id + 1, ... SSE_STALE when first_id is not above every
 * id the store has seen (a copy already stored). An empty store takes the
 * first id it is given as its first. */
sse_result sse_store_publish_at(sse_store *st, const char *channel,
                                const char *const *frames,
                                const apr_size_t *lens, int n,
                                apr_uint64_t first_id,
                                apr_uint32_t *subscribers);

/* The Redis mirror's figures, shared with every process. */
sse_redis_figures *sse_store_redis_figures(sse_store *st);

/* The newest id the store has seen (0 when none). */
apr_uint64_t sse_store_last_id(sse_store *st);

sse_result sse_store_channel_info(sse_store *st, const char *name,
                                  sse_channel_info *info);
/* All channels, as sse_channel_info, allocated from p. */
apr_array_header_t *sse_store_list(sse_store *st, apr_pool_t *p);
/* Drops the channel and its history; subscribers see ->deleted. */
sse_result sse_store_delete(sse_store *st, const char *name,
                            sse_channel_info *dropped);
void sse_store_status_get(sse_store *st, apr_pool_t *p,
                          sse_store_status *status);

void sse_store_count_delivered(sse_store *st, apr_uint64_t n);
void sse_store_count_rejected(sse_store *st);
/* A subscriber was told to come back later for a reason outside the
 * store (a child out of open files). */
void sse_store_count_busy(sse_store *st, sse_busy_reason why);
/* A stream thread of a child's row was woken because it had news. */
void sse_store_count_wakeup(sse_store *st, int row);
/* Streams of a child's row that its writer serves (delta +1 or -1). */
void sse_store_count_parked(sse_store *st, int row, int delta);

/* Points inside locked sections where a test build can stop a process
 * holding the lock (see sse_store_test_arm). */
typedef enum {
    SSE_CRASH_NONE = 0,
    SSE_CRASH_PUBLISH_WRITTEN,   /* a message written, not yet linked */
    SSE_CRASH_PUBLISH_LINKED,    /* linked, its id not yet committed */
    SSE_CRASH_SUBSCRIBE,         /* channel counts taken, stream not yet */
    SSE_CRASH_DELETE,            /* history freed, slot not yet */
    SSE_CRASH_TRIM,              /* oldest message unlinked, not freed */
    SSE_CRASH_POINTS
} sse_crash_point;

/* Test builds only (SSE_TEST_HOOKS; returns APR_ENOTIMPL otherwise): the
 * next process to reach point stops itself with SIGSTOP, holding the
 * store lock, so that a test can kill it there. */
apr_status_t sse_store_test_arm(sse_store *st, sse_crash_point point);

/* Message-list steps taken by this process's reads so far (tests: a read
 * must not walk the history to find where it left off). */
apr_uint64_t sse_store_walk_steps(const sse_store *st);

/* Restores every invariant sse_store_check_nolock states, keeping each
 * intact message that can be kept without hiding a loss from readers;
 * normally run by the lock when the previous holder died mid-update.
 * Returns the number of problems fixed (0 for an intact store). Caller
 * holds the mutex. Exposed for tests. */
int sse_store_repair_nolock(sse_store *st);
/* Marks the store as torn, as a holder dying mid-update would. Tests. */
void sse_store_mark_dirty_nolock(sse_store *st);

/* Verifies every invariant of the segment (header, free list, channel
 * table and probe chains, message lists and framing, child rows, client
 * table). Returns 0 when all hold; else -1, with the first violation
 * described in why (at most whylen bytes, NUL-terminated). Caller holds
 * the mutex. For tests and fuzzers; repair runs it on its own result when
 * built with SSE_STORE_CHECK. */
int sse_store_check_nolock(sse_store *st, char *why, apr_size_t whylen);

#endif /* SSE_STORE_H */
