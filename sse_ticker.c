/* sse_ticker.c - keepalive comments for SSE-filtered responses whose
 * generator holds the worker thread while it waits.
 *
 * mod_proxy waits for its backend inside its handler: while the backend is
 * silent, nothing passes through the SSE output filter, so the filter
 * cannot write a keepalive. One thread per child writes those comments
 * straight to the client's socket instead, like the writer does for
 * handed-off streams: only on plain HTTP/1.x with nothing but framing
 * below the filter, with chunk framing done here, and only when httpd has
 * nothing of the response buffered. Filter and ticker take turns through a
 * mutex per response, so their bytes never interleave. When the child
 * stops, the ticker ends those responses itself (the last chunk, then the
 * connection's write side), so their clients reconnect to the new
 * generation instead of waiting for the backend's next write.
 */
#include <errno.h>
#include <sys/socket.h>

#include "apr_strings.h"
#include "apr_thread_proc.h"
#include "apr_thread_mutex.h"
#include "apr_thread_cond.h"
#include "apr_portable.h"
#include "http_core.h"
#include "http_connection.h"

#include "sse_private.h"
#include "sse_notify.h"
#include "sse_ticker.h"

/* How often the ticker looks at its responses when it has any. */
#define TICK apr_time_from_msec(250)

struct sse_tick {
    sse_tick *prev, *next;
    conn_rec *c;
    apr_thread_mutex_t *turn;  /* held while the filter or ticker writes */
    apr_os_sock_t fd;
    int chunked;
    apr_interval_time_t every;
    apr_time_t last_write;     /* under turn, as are the flags */
    int clean;                 /* httpd has nothing of it buffered */
    int done;
    int broken;
};

static apr_thread_mutex_t *list_lock;
static apr_thread_cond_t *list_changed;
static sse_tick *ticks;
static int stopping;
static apr_thread_t *thread;

/* Writes all of buf without waiting (the ticker holds its list lock): 0
 * when done, 1 when the socket had no room at all (nothing written: try
 * again later), -1 when it failed or took only part of buf (the stream
 * cannot go on: a client that slow is given up). */
static int write_all(apr_os_sock_t fd, const char *buf, size_t len)
{
    int started = 0;
    while (len) {
        ssize_t n = send(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
            started = 1;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && !started) {
            return 1;
        }
        return -1;
    }
    return 0;
}

static void give_up(sse_tick *t)
{
    t->broken = 1;
    shutdown(t->fd, SHUT_RDWR);
}

static void keep_alive(sse_tick *t, apr_time_t now)
{
    static const char chunk[] = "d\r\n: keepalive\n\n\r\n";
    int rv;
    if (t->done || t->broken || !t->clean || t->c->aborted
        || now - t->last_write < t->every) {
        return;
    }
    rv = write_all(t->fd, t->chunked ? chunk : chunk + 3,
                   t->chunked ? sizeof(chunk) - 1 : 13);
    if (rv < 0) give_up(t);    /* half a keepalive may be out */
    if (rv == 0) t->last_write = now;
}

/* The child stops: end the response now, cleanly, and close the write side
 * so the client reconnects (to the new generation) and sends nothing more
 * on this connection. The filter then writes nothing more. */
static void end_for_stop(sse_tick *t)
{
    static const char last[] = "15\r\n: server restarting\n\n\r\n0\r\n\r\n";
    if (t->done || t->broken || !t->clean || t->c->aborted) return;
    if (write_all(t->fd, t->chunked ? last : last + 4,
                  t->chunked ? sizeof(last) - 1 : 21) != 0) {
        give_up(t);
        return;
    }
    shutdown(t->fd, SHUT_WR);
    t->done = t->broken = 1;
}

static void *APR_THREAD_FUNC ticker_main(apr_thread_t *th, void *data)
{
    (void)data;
    apr_thread_mutex_lock(list_lock);
    while (!stopping) {
        sse_tick *t;
        apr_time_t now = apr_time_now();
        for (t = ticks; t; t = t->next) {
            /* a response that is writing right now needs no keepalive */
            if (apr_thread_mutex_trylock(t->turn) == APR_SUCCESS) {
                if (sse_notify_stopping()) end_for_stop(t);
                else keep_alive(t, now);
                apr_thread_mutex_unlock(t->turn);
            }
        }
        if (ticks) {
            apr_thread_cond_timedwait(list_changed, list_lock, TICK);
        }
        else {
            apr_thread_cond_wait(list_changed, list_lock);
        }
    }
    apr_thread_mutex_unlock(list_lock);
    apr_thread_exit(th, APR_SUCCESS);
    return NULL;
}

static apr_status_t ticker_stop(void *data)
{
    apr_status_t rv;
    (void)data;
    apr_thread_mutex_lock(list_lock);
    stopping = 1;
    apr_thread_cond_signal(list_changed);
    apr_thread_mutex_unlock(list_lock);
    apr_thread_join(&rv, thread);
    thread = NULL;
    return APR_SUCCESS;
}

apr_status_t sse_ticker_child_init(apr_pool_t *pchild)
{
    apr_status_t rv;
    if ((rv = apr_thread_mutex_create(&list_lock, APR_THREAD_MUTEX_DEFAULT,
                                      pchild)) != APR_SUCCESS
        || (rv = apr_thread_cond_create(&list_changed, pchild))
           != APR_SUCCESS
        || (rv = apr_thread_create(&thread, NULL, ticker_main, NULL,
                                   pchild)) != APR_SUCCESS) {
        thread = NULL;
        return rv;
    }
    apr_pool_pre_cleanup_register(pchild, NULL, ticker_stop);
    return APR_SUCCESS;
}

static apr_status_t tick_remove(void *data)
{
    sse_tick *t = data;
    apr_thread_mutex_lock(list_lock);
    if (t->prev) t->prev->next = t->next;
    else ticks = t->next;
    if (t->next) t->next->prev = t->prev;
    apr_thread_mutex_unlock(list_lock);
    return APR_SUCCESS;
}

sse_tick *sse_ticker_add(request_rec *r, int every_sec)
{
    sse_tick *t;
    apr_os_sock_t fd;
    if (!thread || every_sec <= 0
        || apr_os_sock_get(&fd, ap_get_conn_socket(r->connection))
           != APR_SUCCESS) {
        return NULL;
    }
    t = apr_pcalloc(r->pool, sizeof(*t));
    if (apr_thread_mutex_create(&t->turn, APR_THREAD_MUTEX_DEFAULT, r->pool)
        != APR_SUCCESS) {
        return NULL;
    }
    t->c = r->connection;
    t->fd = fd;
    t->chunked = r->chunked;
    t->every = apr_time_from_sec(every_sec);
    t->last_write = apr_time_now();
    t->clean = !r->connection->data_in_output_filters;
    /* registered after the mutex, so removed before it is destroyed */
    apr_thread_mutex_lock(list_lock);
    t->next = ticks;
    if (ticks) ticks->prev = t;
    ticks = t;
    apr_thread_cond_signal(list_changed);
    apr_thread_mutex_unlock(list_lock);
    apr_pool_cleanup_register(r->pool, t, tick_remove,
                              apr_pool_cleanup_null);
    return t;
}

void sse_ticker_enter(sse_tick *t)
{
    if (t) apr_thread_mutex_lock(t->turn);
}

void sse_ticker_leave(sse_tick *t, int done)
{
    if (!t) return;
    t->last_write = apr_time_now();
    t->clean = !t->c->data_in_output_filters;
    if (done) t->done = 1;
    apr_thread_mutex_unlock(t->turn);
}

int sse_ticker_ended(sse_tick *t)
{
    int ended;
    if (!t) return 0;
    apr_thread_mutex_lock(t->turn);
    ended = t->done && t->broken;
    apr_thread_mutex_unlock(t->turn);
    return ended;
}

int sse_ticker_broken(sse_tick *t)
{
    int broken;
    if (!t) return 0;
    apr_thread_mutex_lock(t->turn);
    broken = t->broken;
    apr_thread_mutex_unlock(t->turn);
    return broken;
}
