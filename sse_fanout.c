/* sse_fanout.c - the per-child writer.
 *
 * Waking one thread per subscriber per event costs a context switch each;
 * at a thousand subscribers that is most of the server's CPU. So a stream
 * on a plain HTTP/1.x socket, once it has caught up, parks: it hands its
 * socket and its subscription to this writer and sleeps on a futex of its
 * own, which no publish touches. The child's dispatcher thread (see
 * sse_notify.c) then runs the writer after every wake: it reads each
 * changed feed (a set of channels) from the store once and writes the
 * already-framed bytes to every parked socket of that feed, with one
 * non-blocking sendmsg each.
 *
 * The writer never blocks and never keeps bytes of its own: anything it
 * cannot hand over completely (a socket that would block, a reset notice,
 * a deleted channel, a hangup, a stop) goes back to the stream's thread,
 * which writes it through the filter chain as before. The thread's
 * subscription cursor stays the single truth, so nothing is sent twice.
 *
 * Everything here but the join queue belongs to the dispatcher thread.
 */
#include "apr_hash.h"
#include "apr_strings.h"
#include "apr_thread_mutex.h"

#include "sse_fanout.h"
#include "sse_notify.h"

#if defined(__linux__)
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/futex.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#define SSE_HAVE_FANOUT 1
#endif

#if SSE_HAVE_FANOUT

#define PARKED   1u
#define RETURNED 2u

/* Bytes read from the store per feed read; a bigger backlog takes more. */
#define FEED_BUDGET (64 * 1024)
#define SWEEP_INTERVAL apr_time_from_sec(1)

/* Parked streams that read the same channels in the same order. */
typedef struct feed feed;
struct feed {
    sse_subscription sub;        /* the feed's own cursor */
    sse_parked *members;
    apr_uint32_t count;
    feed *prev, *next;           /* in all_feeds */
};

static sse_store *store;
static int child_row;            /* where parked streams are counted */
static apr_pool_t *forever;      /* unmanaged: outlives pchild's threads */
static apr_pool_t *scratch;      /* cleared after every store read */
static apr_hash_t *feeds_by_channels;
static feed *all_feeds, *spare_feeds;
static int epoll_fd = -1;
static apr_time_t last_sweep;
static int some_feed_emptied;

static apr_thread_mutex_t *join_mutex;
static sse_parked *joining;      /* guarded by join_mutex */
static int accepting;            /* guarded by join_mutex */

static void futex_wait_private(apr_uint32_t *word, apr_uint32_t expected,
                               apr_interval_time_t timeout)
{
    struct timespec ts;
    ts.tv_sec = (time_t)apr_time_sec(timeout);
    ts.tv_nsec = (long)apr_time_usec(timeout) * 1000L;
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, expected, &ts, NULL, 0);
}

static void futex_wake_private(apr_uint32_t *word)
{
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

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

static void feed_link(feed *f, sse_parked *p)
{
    p->feed = f;
    p->prev = NULL;
    p->next = f->members;
    if (f->members) f->members->prev = p;
    f->members = p;
    f->count++;
}

static void feed_unlink(sse_parked *p)
{
    feed *f = p->feed;
    if (!f) return;
    if (p->prev) p->prev->next = p->next;
    else f->members = p->next;
    if (p->next) p->next->prev = p->prev;
    p->prev = p->next = NULL;
    p->feed = NULL;
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

/* --------------------------------------------------------- handing back */

static void hand_back(sse_parked *p, sse_park_end why)
{
    if (p->feed) {
        /* before the thread can close the socket and its number be reused */
        epoll_ctl(epoll_fd, EPOLL_CTL_DEL, p->fd, NULL);
        feed_unlink(p);
        sse_store_count_parked(store, child_row, -1);
    }
    p->why = why;
    __atomic_store_n(&p->state, RETURNED, __ATOMIC_RELEASE);
    /* the thread's stack stays mapped while it lives, so this is safe even
     * if the thread already saw RETURNED and moved on */
    futex_wake_private(&p->state);
}

static void hand_back_feed(feed *f, sse_park_end why)
{
    while (f->members) hand_back(f->members, why);
}

/* Writes len bytes as one chunk (or raw, without chunked encoding). What
 * does not fit now goes back to the thread. Returns 0 while still parked. */
static int write_framed(sse_parked *p, const char *data, apr_size_t len,
                        apr_time_t now)
{
    /* only the dispatcher thread writes, so one cache is enough */
    static char head[24];
    static apr_size_t head_for = (apr_size_t)-1;
    static size_t head_len;
    struct iovec iov[3];
    struct msghdr msg;
    apr_size_t total = 0, sent, skip;
    ssize_t n;
    int i, niov = 0;

    if (p->chunked) {
        /* every subscriber of a feed usually gets the same length: format
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
    if (p->chunked) {
        iov[niov].iov_base = (void *)"\r\n";
        iov[niov++].iov_len = 2;
    }
    for (i = 0; i < niov; i++) total += iov[i].iov_len;

    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = iov;
    msg.msg_iovlen = (size_t)niov;
    do {
        n = sendmsg(p->fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n >= 0 && (apr_size_t)n == total) {
        p->last_write = now;
        return 0;
    }
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        hand_back(p, SSE_PARK_GONE);
        return 1;
    }
    /* the rest of this chunk is the thread's to write, blocking */
    sent = n > 0 ? (apr_size_t)n : 0;
    p->pending_len = total - sent;
    p->pending = malloc(p->pending_len);
    if (!p->pending) {
        hand_back(p, SSE_PARK_GONE);
        return 1;
    }
    skip = sent;
    p->pending_len = 0;
    for (i = 0; i < niov; i++) {
        apr_size_t l = iov[i].iov_len;
        if (skip >= l) {
            skip -= l;
            continue;
        }
        memcpy(p->pending + p->pending_len, (char *)iov[i].iov_base + skip,
               l - skip);
        p->pending_len += l - skip;
        skip = 0;
    }
    p->last_write = now;
    hand_back(p, SSE_PARK_SLOW);
    return 1;
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

/* Sends what p has not seen of res and moves its cursor to upto.
 * Returns the number of events delivered. */
static apr_uint32_t send_unseen(sse_parked *p, const sse_read_result *res,
                                apr_uint64_t upto, apr_time_t now)
{
    apr_uint32_t from = res->events ? first_unseen(res, p->sub->cursor) : 0;
    apr_uint32_t count = res->events - from;
    if (p->sub->cursor < upto) p->sub->cursor = upto;
    if (!count) return 0;
    p->delivered += count;
    write_framed(p, res->buf + res->marks[from].offset,
                 res->len - res->marks[from].offset, now);
    return count;
}

/* ------------------------------------------------------------- rounds */

/* A new stream may have missed what its feed already sent, or what came
 * after its thread's last read: it reads that once on its own. */
static apr_uint64_t catch_up(sse_parked *p, apr_time_t now)
{
    apr_uint64_t delivered = 0;
    sse_read_result res;
    do {
        apr_uint64_t before = p->sub->cursor;
        sse_store_read(store, p->sub, scratch, FEED_BUDGET, &res);
        if (res.deleted || res.gap) {
            p->sub->cursor = before;   /* the thread must see it too */
            hand_back(p, SSE_PARK_NEWS);
            break;
        }
        if (res.events) {
            delivered += res.events;
            p->delivered += res.events;
            if (write_framed(p, res.buf, res.len, now)) break;
        }
        apr_pool_clear(scratch);
    } while (res.more);
    apr_pool_clear(scratch);
    return delivered;
}

static apr_uint64_t take_joins(apr_time_t now)
{
    sse_parked *list, *p, *next;
    apr_uint64_t delivered = 0;

    apr_thread_mutex_lock(join_mutex);
    list = joining;
    joining = NULL;
    apr_thread_mutex_unlock(join_mutex);

    for (p = list; p; p = next) {
        struct epoll_event ev;
        next = p->next;
        p->prev = p->next = NULL;
        memset(&ev, 0, sizeof(ev));
        ev.events = EPOLLIN | EPOLLRDHUP;
        ev.data.ptr = p;
        if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, p->fd, &ev) != 0) {
            hand_back(p, SSE_PARK_INPUT);   /* cannot watch it: never park */
            continue;
        }
        feed_link(feed_for(p->sub), p);
        sse_store_count_parked(store, child_row, 1);
        if (sse_store_has_news(store, p->sub)) {
            delivered += catch_up(p, now);
        }
    }
    return delivered;
}

static apr_uint64_t deliver(apr_time_t now)
{
    apr_uint64_t delivered = 0;
    feed *f;
    for (f = all_feeds; f; f = f->next) {
        sse_read_result res;
        if (!f->count || !sse_store_has_news(store, &f->sub)) continue;
        do {
            sse_parked *p, *next;
            sse_store_read(store, &f->sub, scratch, FEED_BUDGET, &res);
            if (res.deleted || res.gap) {
                /* each thread reads its own cursor and tells its client */
                hand_back_feed(f, SSE_PARK_NEWS);
                break;
            }
            for (p = f->members; p; p = next) {
                next = p->next;
                delivered += send_unseen(p, &res, f->sub.cursor, now);
            }
            apr_pool_clear(scratch);
        } while (res.more && f->count);
        apr_pool_clear(scratch);
    }
    return delivered;
}

/* Hangups and unexpected input on parked sockets. */
static void watch_sockets(void)
{
    struct epoll_event ev[256];
    int n, i, rounds = 0;
    do {
        n = epoll_wait(epoll_fd, ev, 256, 0);
        for (i = 0; i < n; i++) {
            sse_parked *p = ev[i].data.ptr;
            char c;
            ssize_t got;
            if (ev[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                hand_back(p, SSE_PARK_GONE);
                continue;
            }
            got = recv(p->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
            if (got == 0) hand_back(p, SSE_PARK_GONE);
            else if (got > 0) hand_back(p, SSE_PARK_INPUT);
        }
    } while (n == 256 && ++rounds < 64);
}

static void send_keepalives(apr_time_t now)
{
    feed *f;
    for (f = all_feeds; f; f = f->next) {
        sse_parked *p, *next;
        for (p = f->members; p; p = next) {
            next = p->next;
            if (p->keepalive_sec && now - p->last_write
                                    >= apr_time_from_sec(p->keepalive_sec)) {
                write_framed(p, ": keepalive\n\n", 13, now);
            }
        }
    }
}

static void shut_down(void)
{
    sse_parked *list, *next;
    feed *f;
    apr_thread_mutex_lock(join_mutex);
    accepting = 0;
    list = joining;
    joining = NULL;
    apr_thread_mutex_unlock(join_mutex);
    for (; list; list = next) {
        next = list->next;
        hand_back(list, SSE_PARK_STOPPING);
    }
    for (f = all_feeds; f; f = f->next) {
        hand_back_feed(f, SSE_PARK_STOPPING);
    }
    drop_empty_feeds();
}

void sse_fanout_round(int changed, int stopping)
{
    apr_time_t now;
    apr_uint64_t delivered;
    if (!__atomic_load_n(&store, __ATOMIC_ACQUIRE)) return;
    if (stopping) {
        shut_down();
        return;
    }
    now = apr_time_now();
    delivered = take_joins(now);
    if (changed) delivered += deliver(now);
    watch_sockets();
    if (now - last_sweep >= SWEEP_INTERVAL) {
        last_sweep = now;
        send_keepalives(now);
    }
    drop_empty_feeds();
    if (delivered) sse_store_count_delivered(store, delivered);
}

apr_status_t sse_fanout_child_init(sse_store *st, int row)
{
    apr_status_t rv;
    if ((rv = apr_pool_create_unmanaged_ex(&forever, NULL, NULL))
        || (rv = apr_pool_create(&scratch, forever))
        || (rv = apr_thread_mutex_create(&join_mutex,
                                         APR_THREAD_MUTEX_DEFAULT, forever))) {
        return rv;
    }
    apr_pool_tag(scratch, "sse-fanout-scratch");
    if ((epoll_fd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        return APR_FROM_OS_ERROR(errno);
    }
    feeds_by_channels = apr_hash_make(forever);
    last_sweep = apr_time_now();
    accepting = 1;
    child_row = row;
    __atomic_store_n(&store, st, __ATOMIC_RELEASE);
    return APR_SUCCESS;
}

int sse_fanout_available(void)
{
    return store != NULL;
}

sse_park_end sse_fanout_park(sse_parked *p, apr_uint32_t seen)
{
    p->why = 0;
    p->pending = NULL;
    p->pending_len = 0;
    p->delivered = 0;
    p->feed = NULL;
    p->prev = NULL;
    __atomic_store_n(&p->state, PARKED, __ATOMIC_RELAXED);
    apr_thread_mutex_lock(join_mutex);
    if (!accepting) {
        apr_thread_mutex_unlock(join_mutex);
        return SSE_PARK_STOPPING;
    }
    p->next = joining;
    joining = p;
    apr_thread_mutex_unlock(join_mutex);
    if (sse_notify_generation() != seen) {
        /* a round may have run between our last read and joining: get
         * another one, or this stream would wait for the next publish */
        sse_notify_poke();
    }
    while (__atomic_load_n(&p->state, __ATOMIC_ACQUIRE) == PARKED) {
        futex_wait_private(&p->state, PARKED, apr_time_from_sec(60));
    }
    return p->why;
}

#else /* no epoll or futex: every stream writes from its own thread */

apr_status_t sse_fanout_child_init(sse_store *st, int row)
{
    (void)st;
    (void)row;
    return APR_ENOTIMPL;
}

int sse_fanout_available(void)
{
    return 0;
}

sse_park_end sse_fanout_park(sse_parked *p, apr_uint32_t seen)
{
    (void)p;
    (void)seen;
    return SSE_PARK_STOPPING;
}

void sse_fanout_round(int changed, int stopping)
{
    (void)changed;
    (void)stopping;
}

#endif
