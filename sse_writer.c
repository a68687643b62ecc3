/* sse_writer.c - the per-child writer: owns the sockets of handed-off
 * streams and writes every event to them.
 *
 * A stream on a plain HTTP/1.x connection is a handler only until its
 * headers and replay are out. Then the handler dup()s the socket, gives the
 * copy and its subscription to this writer and marks the connection
 * aborted, so that httpd writes nothing more (no last chunk) and closes
 * only its own descriptor (see sse_stream.c). The worker thread and the
 * request's memory go back to httpd; what a stream costs from then on is
 * the socket and one small member struct here.
 *
 * The writer is a thread of its own, asleep in epoll_wait on its sockets
 * and on an eventfd that the child's dispatcher thread (sse_notify.c)
 * writes to when the store changed. Streams that read the same channels
 * form a feed: the store is read
 * once per feed and the already-framed bytes are written to every member
 * with one non-blocking sendmsg each. A member that joined late or fell
 * behind reads on its own cursor first. A socket that cannot take a write
 * keeps what it owes in a buffer of its own, bounded by SSEMaxPendingBytes;
 * a stream that owes more than that, or makes no progress for Timeout, is
 * ended, and its client resumes from the history with Last-Event-ID.
 *
 * Everything the writer sends a stream, the handler's thread could have
 * sent the same way: event frames from the store, ": keepalive", the
 * sse-reset notice, ": channel deleted" and ": server restarting" before
 * the last chunk. Everything here but the join queue and the spares
 * belongs to the writer thread.
 */
#include "apr_hash.h"
#include "apr_strings.h"
#include "apr_thread_mutex.h"
#include "apr_thread_proc.h"
#include "http_main.h"

#include "sse_private.h"
#include "sse_event.h"
#include "sse_writer.h"

#if defined(__linux__)
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#define SSE_HAVE_WRITER 1
#endif

#if SSE_HAVE_WRITER

/* Bytes read from the store per feed read; a bigger backlog takes more. */
#define FEED_BUDGET (64 * 1024)
#define SWEEP_INTERVAL apr_time_from_sec(1)

typedef struct feed feed;
typedef struct member member;

/* Streams that read the same channels in the same order. */
struct feed {
    sse_subscription sub;        /* the feed's own cursor and channels */
    member *members;
    apr_uint32_t count;
    feed *prev, *next;           /* in all_feeds */
};

/* One handed-off stream. */
struct member {
    int fd;
    int chunked;
    int keepalive_sec;
    int row;                     /* child row its counts are charged to */
    int client_counted;
    unsigned char client[16];
    apr_uint64_t cursor;         /* every message <= cursor was sent */
    apr_time_t opened, last_write, owed_since;
    apr_uint64_t events, bytes;
    char *owed;                  /* framed bytes the socket has not taken */
    apr_size_t owed_len, owed_off;
    int want_out;                /* registered for EPOLLOUT */
    char *last_id_text;          /* the client's Last-Event-ID, or NULL */
    char where[64];              /* "client on channel", for the log */
    sse_subscription *joined;    /* while in the join queue: its channels */
    feed *feed;
    member *prev, *next;         /* in its feed, or in the join queue */
};

static sse_store *store;
static int child_row;
static sse_writer_limits limits;
static apr_pool_t *forever;      /* unmanaged: outlives pchild's threads */
static apr_pool_t *scratch;      /* cleared after every store read */
static apr_hash_t *feeds_by_channels;
static feed *all_feeds, *spare_feeds;
static int epoll_fd = -1;
static apr_time_t last_sweep;
static int some_feed_emptied;
static apr_uint32_t owing;       /* members with bytes owed */
static apr_uint32_t owned;       /* members, and joining ones */

/* The writer runs in a thread of its own, asleep in epoll_wait on its
 * sockets and on wake_fd, an eventfd the dispatcher (the store changed,
 * the child stops) and joining streams write to. */
static apr_thread_t *writer_thread;
static int wake_fd = -1;
static apr_uint32_t store_changed, stop_asked;  /* set before a wake */

static apr_thread_mutex_t *join_mutex;
static member *joining;          /* guarded by join_mutex */
static int accepting;            /* guarded by join_mutex */
/* Members and join-time subscriptions are kept for reuse: workers take
 * them and the dispatcher gives them back, so a server that streams
 * for weeks does not churn the allocator's per-thread arenas. */
static member *spare_members;    /* guarded by join_mutex */
static sse_subscription *spare_subs; /* guarded by join_mutex; linked
                                        through their first bytes */
static apr_uint32_t spares;      /* guarded by join_mutex */
#define MAX_SPARES 4096

/* ------------------------------------------------------------ feeds */

static apr_size_t feed_key_len(const sse_subscription *sub)
{
    return sizeof(sse_sub_channel) * (apr_size_t)sub->n;
}

static feed *feed_for(const sse_subscription *sub)
{
    feed *f = apr_hash_get(feeds_by_channels, sub->ch, feed_key_len(sub));
    if (f) return f;
    if (spare_feeds) {
        f = spare_feeds;
        spare_feeds = f->next;
    }
    else {
        f = apr_palloc(forever, sizeof(*f));
    }
    memset(f, 0, sizeof(*f));
    f->sub.row = -1;
    f->sub.n = sub->n;
    memcpy(f->sub.ch, sub->ch, feed_key_len(sub));
    f->sub.cursor = sub->cursor;
    f->next = all_feeds;
    if (all_feeds) all_feeds->prev = f;
    all_feeds = f;
    apr_hash_set(feeds_by_channels, f->sub.ch, feed_key_len(&f->sub), f);
    return f;
}

static void feed_link(feed *f, member *m)
{
    m->feed = f;
    m->prev = NULL;
    m->next = f->members;
    if (f->members) f->members->prev = m;
    f->members = m;
    f->count++;
}

static void feed_unlink(member *m)
{
    feed *f = m->feed;
    if (!f) return;
    if (m->prev) m->prev->next = m->next;
    else f->members = m->next;
    if (m->next) m->next->prev = m->prev;
    m->prev = m->next = NULL;
    m->feed = NULL;
    if (--f->count == 0) some_feed_emptied = 1;
}

/* Empty feeds go only here, so no loop ever holds a freed feed. */
static void drop_empty_feeds(void)
{
    feed *f, *next;
    if (!some_feed_emptied) return;
    some_feed_emptied = 0;
    for (f = all_feeds; f; f = next) {
        next = f->next;
        if (f->count) continue;
        apr_hash_set(feeds_by_channels, f->sub.ch, feed_key_len(&f->sub),
                     NULL);
        if (f->prev) f->prev->next = f->next;
        else all_feeds = f->next;
        if (f->next) f->next->prev = f->prev;
        f->next = spare_feeds;
        spare_feeds = f;
    }
}

/* A member's own view of the store, for reads on its cursor and for
 * unsubscribing: its feed holds the channels. */
static void member_sub(const member *m, sse_subscription *sub)
{
    const sse_subscription *fs = &m->feed->sub;
    sub->row = m->row;
    sub->on_thread = 0;
    sub->client_counted = m->client_counted;
    memcpy(sub->client, m->client, sizeof(sub->client));
    sub->n = fs->n;
    memcpy(sub->ch, fs->ch, feed_key_len(fs));
    memset(sub->hint, 0, sizeof(sub->hint[0]) * (apr_size_t)fs->n);
    sub->cursor = m->cursor;
}

/* ------------------------------------------------------------ spares */

static void give_back(member *m, sse_subscription *sub)
{
    apr_thread_mutex_lock(join_mutex);
    if (m) {
        if (spares < MAX_SPARES) {
            m->next = spare_members;
            spare_members = m;
            spares++;
            m = NULL;
        }
    }
    if (sub) {
        if (spares < MAX_SPARES) {
            *(sse_subscription **)sub = spare_subs;
            spare_subs = sub;
            spares++;
            sub = NULL;
        }
    }
    apr_thread_mutex_unlock(join_mutex);
    free(m);
    free(sub);
}

/* A cleared member and a subscription to fill; caller holds join_mutex. */
static member *take_spare(sse_subscription **sub)
{
    member *m = spare_members;
    if (m) {
        spare_members = m->next;
        spares--;
        memset(m, 0, sizeof(*m));
    }
    else {
        m = calloc(1, sizeof(*m));
    }
    *sub = spare_subs;
    if (*sub) {
        spare_subs = *(sse_subscription **)*sub;
        spares--;
    }
    else {
        *sub = malloc(sizeof(**sub));
    }
    return m;
}

/* ------------------------------------------------------------ ending */

static void set_interest(member *m, int out)
{
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN | EPOLLRDHUP | (out ? EPOLLOUT : 0);
    ev.data.ptr = m;
    epoll_ctl(epoll_fd, EPOLL_CTL_MOD, m->fd, &ev);
    m->want_out = out;
}

static void forget_owed(member *m)
{
    if (m->owed) {
        free(m->owed);
        m->owed = NULL;
        owing--;
    }
    m->owed_len = m->owed_off = 0;
}

/* Ends a stream: a last comment and the last chunk when the socket takes
 * them at once (a client that is gone or stuck gets no more), then closes,
 * unsubscribes and logs. The member must be in a feed. */
static void end_stream(member *m, const char *why, const char *comment)
{
    sse_subscription sub;
    apr_time_t now = apr_time_now();
    if (comment && !m->owed) {
        char buf[128];
        apr_size_t len = strlen(comment);
        int n = m->chunked
                ? apr_snprintf(buf, sizeof(buf), "%" APR_UINT64_T_HEX_FMT
                               "\r\n%s\r\n0\r\n\r\n", (apr_uint64_t)len,
                               comment)
                : apr_snprintf(buf, sizeof(buf), "%s", comment);
        if (send(m->fd, buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) > 0) {
            m->bytes += (apr_uint64_t)n;
        }
    }
    epoll_ctl(epoll_fd, EPOLL_CTL_DEL, m->fd, NULL);
    close(m->fd);
    forget_owed(m);
    member_sub(m, &sub);
    sse_store_unsubscribe(store, &sub);
    sse_store_count_parked(store, child_row, -1);
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, ap_server_conf, SSE_LOGNO(00401)
                 "stream of %s ends (%s) after %" APR_TIME_T_FMT " ms, %"
                 APR_UINT64_T_FMT " events, %" APR_UINT64_T_FMT " bytes",
                 m->where, why, apr_time_as_msec(now - m->opened), m->events,
                 m->bytes);
    feed_unlink(m);
    free(m->last_id_text);
    give_back(m, NULL);
    __atomic_sub_fetch(&owned, 1, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------ writing */

/* Owes the rest of iov (after sent bytes) to the socket. */
static int owe(member *m, const struct iovec *iov, int niov, apr_size_t sent,
               apr_time_t now)
{
    apr_size_t total = 0, skip = sent, at;
    int i;
    char *grown;
    for (i = 0; i < niov; i++) total += iov[i].iov_len;
    if (m->owed_len - m->owed_off + total - sent > limits.max_pending) {
        end_stream(m, "too slow: more than SSEMaxPendingBytes owed", NULL);
        return 1;
    }
    /* keep the unsent part at the front: the buffer only ever grows to
     * the bound */
    if (m->owed && m->owed_off) {
        memmove(m->owed, m->owed + m->owed_off, m->owed_len - m->owed_off);
        m->owed_len -= m->owed_off;
        m->owed_off = 0;
    }
    grown = realloc(m->owed, m->owed_len + total - sent);
    if (!grown) {
        end_stream(m, "out of memory", NULL);
        return 1;
    }
    if (!m->owed) {
        owing++;
        m->owed_since = now;
    }
    m->owed = grown;
    at = m->owed_len;
    for (i = 0; i < niov; i++) {
        apr_size_t l = iov[i].iov_len;
        if (skip >= l) {
            skip -= l;
            continue;
        }
        memcpy(m->owed + at, (char *)iov[i].iov_base + skip, l - skip);
        at += l - skip;
        skip = 0;
    }
    m->owed_len = at;
    if (!m->want_out) set_interest(m, 1);
    return 0;
}

/* Sends what the socket owes. Returns non-zero when the stream ended. */
static int pay(member *m, apr_time_t now)
{
    ssize_t n;
    if (!m->owed) return 0;
    do {
        n = send(m->fd, m->owed + m->owed_off, m->owed_len - m->owed_off,
                 MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        end_stream(m, "client gone", NULL);
        return 1;
    }
    if (n > 0) {
        m->owed_off += (apr_size_t)n;
        m->bytes += (apr_uint64_t)n;
        m->last_write = m->owed_since = now;
    }
    if (m->owed_off == m->owed_len) {
        forget_owed(m);
        set_interest(m, 0);
    }
    return 0;
}

/* Writes len bytes as one chunk (or raw, without chunked encoding), after
 * anything still owed. Returns non-zero when the stream ended. */
static int write_framed(member *m, const char *data, apr_size_t len,
                        apr_time_t now)
{
    /* only the dispatcher thread writes, so one cache is enough */
    static char head[24];
    static apr_size_t head_for = (apr_size_t)-1;
    static size_t head_len;
    struct iovec iov[3];
    struct msghdr msg;
    apr_size_t total = 0;
    ssize_t n = 0;
    int i, niov = 0;

    if (m->chunked) {
        /* every member of a feed usually gets the same length: format
         * its chunk header once, not once per socket */
        if (len != head_for) {
            head_len = (size_t)apr_snprintf(head, sizeof(head), "%"
                                            APR_UINT64_T_HEX_FMT "\r\n",
                                            (apr_uint64_t)len);
            head_for = len;
        }
        iov[niov].iov_base = head;
        iov[niov++].iov_len = head_len;
    }
    iov[niov].iov_base = (void *)data;
    iov[niov++].iov_len = len;
    if (m->chunked) {
        iov[niov].iov_base = (void *)"\r\n";
        iov[niov++].iov_len = 2;
    }
    for (i = 0; i < niov; i++) total += iov[i].iov_len;
    if (m->owed) {
        /* keep the order: what is owed goes first */
        if (pay(m, now)) return 1;
        if (m->owed) return owe(m, iov, niov, 0, now);
    }
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = iov;
    msg.msg_iovlen = (size_t)niov;
    do {
        n = sendmsg(m->fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        end_stream(m, "client gone", NULL);
        return 1;
    }
    if (n > 0) {
        m->bytes += (apr_uint64_t)n;
        m->last_write = now;
    }
    if (n >= 0 && (apr_size_t)n == total) return 0;
    return owe(m, iov, niov, n > 0 ? (apr_size_t)n : 0, now);
}

/* ------------------------------------------------------------ reading */

/* Reads on the member's own cursor until caught up: after joining, or when
 * its feed saw history roll over. Returns non-zero when the stream ended. */
static int catch_up(member *m, apr_time_t now)
{
    sse_subscription sub;
    sse_read_result res;
    apr_uint64_t delivered = 0;
    int ended = 0;
    member_sub(m, &sub);
    do {
        sse_store_read(store, &sub, scratch, FEED_BUDGET, &res);
        if (res.deleted) {
            end_stream(m, "channel deleted", ": channel deleted\n\n");
            return 1;
        }
        if (res.gap) {
            apr_size_t len;
            char *reset = sse_reset_frame(scratch, "overflow",
                                          res.events ? res.first_id - 1
                                                     : sub.cursor,
                                          m->last_id_text, &len);
            if ((ended = write_framed(m, reset, len, now))) break;
        }
        if (res.events) {
            delivered += res.events;
            m->events += res.events;
            if ((ended = write_framed(m, res.buf, res.len, now))) break;
        }
        m->cursor = sub.cursor;
        apr_pool_clear(scratch);
    } while (res.more);
    apr_pool_clear(scratch);
    if (delivered) sse_store_count_delivered(store, delivered);
    return ended;
}

/* Index of the first event in res newer than cursor; res->events if none. */
static apr_uint32_t first_unseen(const sse_read_result *res,
                                 apr_uint64_t cursor)
{
    apr_uint32_t lo = 0, hi = res->events;
    while (lo < hi) {
        apr_uint32_t mid = lo + (hi - lo) / 2;
        if (res->marks[mid].id > cursor) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

/* Sends a member what it has not seen of res and moves its cursor to
 * upto. Returns the number of events delivered. */
static apr_uint32_t send_unseen(member *m, const sse_read_result *res,
                                apr_uint64_t upto, apr_time_t now)
{
    apr_uint32_t from = res->events ? first_unseen(res, m->cursor) : 0;
    apr_uint32_t count = res->events - from;
    if (m->cursor < upto) m->cursor = upto;
    if (!count) return 0;
    m->events += count;
    write_framed(m, res->buf + res->marks[from].offset,
                 res->len - res->marks[from].offset, now);
    return count;
}

static apr_uint64_t deliver(apr_time_t now)
{
    apr_uint64_t delivered = 0;
    feed *f;
    for (f = all_feeds; f; f = f->next) {
        sse_read_result res;
        member *m, *next;
        if (!f->count || !sse_store_has_news(store, &f->sub)) continue;
        do {
            apr_uint64_t before = f->sub.cursor;
            sse_store_read(store, &f->sub, scratch, FEED_BUDGET, &res);
            if (res.deleted || res.gap) {
                /* each member reads its own cursor and is told */
                f->sub.cursor = before;
                for (m = f->members; m; m = next) {
                    next = m->next;
                    catch_up(m, now);
                }
                break;
            }
            for (m = f->members; m; m = next) {
                next = m->next;
                delivered += send_unseen(m, &res, f->sub.cursor, now);
            }
            apr_pool_clear(scratch);
        } while (res.more && f->count);
        apr_pool_clear(scratch);
    }
    return delivered;
}

/* ------------------------------------------------------------ rounds */

/* Moves a member from the join queue into the feed of its channels. */
static void join_feed(member *m)
{
    sse_subscription *sub = m->joined;
    m->joined = NULL;
    m->prev = m->next = NULL;
    feed_link(feed_for(sub), m);
    give_back(NULL, sub);
}

static void take_joins(apr_time_t now)
{
    member *list, *m, *next;

    apr_thread_mutex_lock(join_mutex);
    list = joining;
    joining = NULL;
    apr_thread_mutex_unlock(join_mutex);

    for (m = list; m; m = next) {
        struct epoll_event ev;
        feed *f;
        next = m->next;
        join_feed(m);
        f = m->feed;
        memset(&ev, 0, sizeof(ev));
        ev.events = EPOLLIN | EPOLLRDHUP;
        ev.data.ptr = m;
        if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, m->fd, &ev) != 0) {
            end_stream(m, "cannot watch its socket", NULL);
            continue;
        }
        /* what came after the handler's last read, before this round */
        if (catch_up(m, now)) continue;
        /* a feed of its own starts where it is */
        if (f->count == 1 && f->sub.cursor < m->cursor) {
            f->sub.cursor = m->cursor;
        }
    }
}

/* Hangups, unexpected input and writable sockets. */
static void socket_event(member *m, apr_uint32_t events, apr_time_t now)
{
    char c;
    ssize_t got;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        end_stream(m, "client gone", NULL);
        return;
    }
    if (events & EPOLLIN) {
        got = recv(m->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        if (got == 0) {
            end_stream(m, "client gone", NULL);
            return;
        }
        if (got > 0) {
            /* an event stream takes no requests after it */
            end_stream(m, "client sent data", NULL);
            return;
        }
    }
    if (events & EPOLLOUT) {
        pay(m, now);
    }
}

/* Once a second: keepalives, and streams whose socket takes nothing. */
static void sweep(apr_time_t now)
{
    feed *f;
    for (f = all_feeds; f; f = f->next) {
        member *m, *next;
        for (m = f->members; m; m = next) {
            next = m->next;
            if (m->owed && now - m->owed_since > limits.stall_timeout) {
                end_stream(m, "stalled: no progress within Timeout", NULL);
            }
            else if (m->keepalive_sec && !m->owed
                     && now - m->last_write
                        >= apr_time_from_sec(m->keepalive_sec)) {
                write_framed(m, ": keepalive\n\n", 13, now);
            }
        }
    }
}

static void stop_all(void)
{
    member *list, *next;
    feed *f;
    apr_thread_mutex_lock(join_mutex);
    accepting = 0;
    list = joining;
    joining = NULL;
    apr_thread_mutex_unlock(join_mutex);
    /* joiners are not in a feed yet: give them one, then end them all */
    for (; list; list = next) {
        next = list->next;
        join_feed(list);
    }
    for (f = all_feeds; f; f = f->next) {
        while (f->members) {
            end_stream(f->members, "child stopping",
                       ": server restarting\n\n");
        }
    }
    drop_empty_feeds();
}

/* One pass after a wake: new streams, members behind their feed, news,
 * and once a second keepalives and stalls. */
static void round_after_wake(int changed, apr_time_t now)
{
    apr_uint64_t delivered = 0;
    feed *f;
    take_joins(now);
    /* a member behind its feed (it joined after the feed read on) reads
     * its own way first */
    for (f = all_feeds; f; f = f->next) {
        member *m, *next;
        for (m = f->members; m; m = next) {
            next = m->next;
            if (m->cursor < f->sub.cursor) catch_up(m, now);
        }
    }
    if (changed) delivered += deliver(now);
    if (now - last_sweep >= SWEEP_INTERVAL) {
        last_sweep = now;
        sweep(now);
    }
    drop_empty_feeds();
    if (delivered) sse_store_count_delivered(store, delivered);
}

static void *APR_THREAD_FUNC write_all(apr_thread_t *thread, void *arg)
{
    struct epoll_event ev[256];
    (void)thread;
    (void)arg;
    for (;;) {
        apr_interval_time_t until = last_sweep + SWEEP_INTERVAL
                                    - apr_time_now();
        int n, i, timeout = until > 0 ? (int)apr_time_as_msec(until) + 1 : 0;
        apr_time_t now;
        n = epoll_wait(epoll_fd, ev, 256, timeout);
        now = apr_time_now();
        for (i = 0; i < n; i++) {
            if (ev[i].data.ptr == &wake_fd) {
                apr_uint64_t count;
                if (read(wake_fd, &count, sizeof(count)) < 0) {
                    /* EAGAIN: another read took it */
                }
                continue;
            }
            socket_event(ev[i].data.ptr, ev[i].events, now);
        }
        if (__atomic_exchange_n(&stop_asked, 0, __ATOMIC_ACQ_REL)) {
            stop_all();
            break;
        }
        round_after_wake(__atomic_exchange_n(&store_changed, 0,
                                             __ATOMIC_ACQ_REL), now);
    }
    /* returning (not apr_thread_exit) lets the thread's stack unwind */
    return NULL;
}

static void wake_writer(void)
{
    apr_uint64_t one = 1;
    if (write(wake_fd, &one, sizeof(one)) < 0) {
        /* EAGAIN: the counter is full, the writer will wake anyway */
    }
}

void sse_writer_round(int changed, int stopping)
{
    apr_status_t rv;
    if (!__atomic_load_n(&store, __ATOMIC_ACQUIRE)) return;
    if (changed) __atomic_store_n(&store_changed, 1, __ATOMIC_RELEASE);
    if (stopping) __atomic_store_n(&stop_asked, 1, __ATOMIC_RELEASE);
    if (changed || stopping) wake_writer();
    if (stopping && writer_thread) {
        /* every stream has ended when the child goes on stopping */
        apr_thread_join(&rv, writer_thread);
        writer_thread = NULL;
    }
}

apr_status_t sse_writer_child_init(sse_store *st, int row,
                                   const sse_writer_limits *lim)
{
    apr_status_t rv;
    if ((rv = apr_pool_create_unmanaged_ex(&forever, NULL, NULL))
        || (rv = apr_pool_create(&scratch, forever))
        || (rv = apr_thread_mutex_create(&join_mutex,
                                         APR_THREAD_MUTEX_DEFAULT, forever))) {
        return rv;
    }
    apr_pool_tag(scratch, "sse-writer-scratch");
    if ((epoll_fd = epoll_create1(EPOLL_CLOEXEC)) < 0
        || (wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        return APR_FROM_OS_ERROR(errno);
    }
    {
        struct epoll_event ev;
        memset(&ev, 0, sizeof(ev));
        ev.events = EPOLLIN;
        ev.data.ptr = &wake_fd;
        if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, wake_fd, &ev) != 0) {
            return APR_FROM_OS_ERROR(errno);
        }
    }
    feeds_by_channels = apr_hash_make(forever);
    last_sweep = apr_time_now();
    limits = *lim;
    child_row = row;
    __atomic_store_n(&store, st, __ATOMIC_RELEASE);
    /* the thread lives until the child stops: it is joined then */
    if ((rv = apr_thread_create(&writer_thread, NULL, write_all, NULL,
                                forever)) != APR_SUCCESS) {
        __atomic_store_n(&store, NULL, __ATOMIC_RELEASE);
        return rv;
    }
    apr_thread_mutex_lock(join_mutex);
    accepting = 1;
    apr_thread_mutex_unlock(join_mutex);
    return APR_SUCCESS;
}

int sse_writer_available(void)
{
    int yes;
    if (!__atomic_load_n(&store, __ATOMIC_ACQUIRE)) return 0;
    apr_thread_mutex_lock(join_mutex);
    yes = accepting;
    apr_thread_mutex_unlock(join_mutex);
    return yes;
}

int sse_writer_has_room(void)
{
    return __atomic_load_n(&owned, __ATOMIC_RELAXED) < limits.max_streams;
}

apr_status_t sse_writer_take(const sse_handoff *h)
{
    member *m;
    sse_subscription *sub = NULL;
    char *last_id_text = NULL;
    if (h->last_id_text && !(last_id_text = strdup(h->last_id_text))) {
        return APR_ENOMEM;
    }
    apr_thread_mutex_lock(join_mutex);
    m = accepting ? take_spare(&sub) : NULL;
    if (!m || !sub) {
        apr_thread_mutex_unlock(join_mutex);
        give_back(m, sub);
        free(last_id_text);
        return accepting ? APR_ENOMEM : APR_EGENERAL;
    }
    m->fd = h->fd;
    m->chunked = h->chunked;
    m->keepalive_sec = h->keepalive_sec;
    m->row = h->sub->row;
    m->client_counted = h->sub->client_counted;
    memcpy(m->client, h->sub->client, sizeof(m->client));
    m->cursor = h->sub->cursor;
    m->opened = h->opened;
    m->last_write = h->last_write;
    m->events = h->events;
    m->bytes = h->bytes;
    m->last_id_text = last_id_text;
    apr_snprintf(m->where, sizeof(m->where), "%s on %s",
                 h->client ? h->client : "-",
                 h->first_channel ? h->first_channel : "-");
    memcpy(sub, h->sub, sizeof(*sub));
    m->joined = sub;
    m->next = joining;
    joining = m;
    __atomic_add_fetch(&owned, 1, __ATOMIC_RELAXED);
    sse_store_count_parked(store, child_row, 1);
    apr_thread_mutex_unlock(join_mutex);
    /* a round now, not at the next publish or timeout */
    wake_writer();
    return APR_SUCCESS;
}

#else /* no epoll: every stream writes from its own thread */

apr_status_t sse_writer_child_init(sse_store *st, int row,
                                   const sse_writer_limits *lim)
{
    (void)st;
    (void)row;
    (void)lim;
    return APR_ENOTIMPL;
}

int sse_writer_available(void)
{
    return 0;
}

int sse_writer_has_room(void)
{
    return 0;
}

apr_status_t sse_writer_take(const sse_handoff *h)
{
    (void)h;
    return APR_ENOTIMPL;
}

void sse_writer_round(int changed, int stopping)
{
    (void)changed;
    (void)stopping;
}


#endif
