/* sse_stream_io.c - an event-stream response written from a worker thread.
 *
 * What the sse-stream handler does on its thread path, the C stream API
 * and the SSE output filter share: the headers, the opening, event and
 * comment framing, one FLUSH per write, the client's news from the store
 * (with reset notices), keepalives, and noticing that the client left.
 * Every wait is bounded, so a dead client costs at most one interval of a
 * thread.
 *
 * Memory: the brigade lives as long as the request; everything made for
 * one write comes from a scratch pool cleared after it, so a stream open
 * for days stays the same size.
 */
#include "apr_strings.h"
#include "apr_poll.h"
#include "http_core.h"
#include "http_protocol.h"
#include "http_ssl.h"
#include "ap_mpm.h"

#include "sse_private.h"
#include "sse_config.h"
#include "sse_event.h"
#include "sse_store.h"
#include "sse_read_cache.h"
#include "sse_notify.h"
#include "sse_stream_io.h"

/* Bytes copied from the store per write; a longer replay takes several,
 * each holding the store lock for one bounded copy. */
#define READ_BUDGET (64 * 1024)

static const char *reset_reasons[] = {
    NULL, NULL, "expired", "unknown", "overflow"
};

void sse_stream_set_headers(request_rec *r)
{
    ap_set_content_type(r, "text/event-stream; charset=utf-8");
    apr_table_setn(r->headers_out, "Cache-Control",
                   "no-cache, no-store, no-transform");
    apr_table_setn(r->headers_out, "X-Accel-Buffering", "no");
    apr_table_unset(r->headers_out, "Content-Length");
    /* must be set before the first pass: compression would buffer */
    apr_table_setn(r->subprocess_env, "no-gzip", "1");
    apr_table_setn(r->subprocess_env, "no-brotli", "1");
    r->no_cache = 1;
}

/* Output filters that only frame or count what passes: bytes the writer
 * puts on the socket itself look the same as if they had gone through.
 * Any other filter (TLS, compression, rate limits, ...) must see every
 * byte, so such a stream keeps writing from its own thread. */
int sse_stream_filter_is_transparent(const char *name)
{
    static const char *const names[] = {
        "byterange", "content_length", "http_header", "http_outerror",
        "chunk", "log_input_output", "core", NULL
    };
    int i;
    for (i = 0; names[i]; i++) {
        if (!strcasecmp(name, names[i])) return 1;
    }
    return 0;
}

void sse_stream_io_init(sse_stream_io *io, request_rec *r, ap_filter_t *self)
{
    int threaded = 0;
    memset(io, 0, sizeof(*io));
    io->r = r;
    io->c = r->connection;
    io->self = self;
    io->check_input = r->proto_num < 2000 && !io->c->master;
    io->keepalive_sec = sse_config_keepalive(sse_config_dir(r));
    io->last_write = apr_time_now();
    ap_mpm_query(AP_MPMQ_IS_THREADED, &threaded);
    /* prefork: the child's stop shows only in the MPM state */
    io->max_wait = threaded == AP_MPMQ_NOT_SUPPORTED
                   ? apr_time_from_sec(1)
                   : apr_time_from_sec(SSE_MAX_IDLE_WAIT_SEC);
}

void sse_stream_io_begin(sse_stream_io *io)
{
    io->bb = apr_brigade_create(io->r->pool, io->c->bucket_alloc);
    apr_pool_create(&io->scratch, io->r->pool);
    apr_pool_tag(io->scratch, "sse-stream-scratch");
}

apr_status_t sse_stream_pass(sse_stream_io *io, apr_bucket_brigade *bb)
{
    return ap_pass_brigade(io->self ? io->self->next : io->r->output_filters,
                           bb);
}

void sse_stream_add(sse_stream_io *io, const char *buf, apr_size_t len)
{
    APR_BRIGADE_INSERT_TAIL(io->bb, apr_bucket_transient_create(
                                buf, len, io->c->bucket_alloc));
    io->queued += len;
}

void sse_stream_add_event(sse_stream_io *io, const char *id,
                          const char *event, const char *data,
                          apr_size_t len)
{
    sse_event ev;
    apr_size_t framed;
    char *text;
    if (id) {
        char *line = apr_pstrcat(io->scratch, "id: ", id, "\n", NULL);
        sse_stream_add(io, line, strlen(line));
    }
    memset(&ev, 0, sizeof(ev));
    ev.event = event;
    ev.event_len = event ? strlen(event) : 0;
    ev.data = data;
    ev.data_len = len;
    ev.retry = -1;
    text = sse_event_frame(io->scratch, &ev, &framed);
    sse_stream_add(io, text, framed);
    io->delivered++;
}

void sse_stream_add_comment(sse_stream_io *io, const char *text)
{
    const char *s = text;
    do {
        apr_size_t n = strcspn(s, "\r\n");
        char *line = apr_pstrcat(io->scratch, ": ",
                                 apr_pstrmemdup(io->scratch, s, n), "\n",
                                 NULL);
        sse_stream_add(io, line, strlen(line));
        s += n;
        if (*s == '\r' && s[1] == '\n') s++;
        if (*s) s++;
    } while (*s);
    sse_stream_add(io, "\n", 1);
}

/* Writes what is in the brigade with a FLUSH; the scratch pool is cleared
 * afterwards, so transient buckets may point into it. */
apr_status_t sse_stream_flush(sse_stream_io *io)
{
    apr_status_t rv;
    apr_off_t len = 0;
    apr_brigade_length(io->bb, 0, &len);
    APR_BRIGADE_INSERT_TAIL(io->bb,
                            apr_bucket_flush_create(io->c->bucket_alloc));
    rv = sse_stream_pass(io, io->bb);
    apr_brigade_cleanup(io->bb);
    apr_pool_clear(io->scratch);
    io->queued = 0;
    io->last_write = apr_time_now();
    if (len > 0) io->bytes += (apr_uint64_t)len;
    if (rv == APR_SUCCESS && io->c->aborted) rv = APR_ECONNABORTED;
    return rv;
}

void sse_stream_add_opening(sse_stream_io *io, int retry_ms)
{
    if (retry_ms >= 0) {
        char *line = apr_psprintf(io->scratch, "retry: %d\n\n", retry_ms);
        sse_stream_add(io, line, strlen(line));
    }
    if (io->subscribed && !io->last_id_text) {
        /* An id with no data sets the client's last event id (WHATWG,
         * "dispatch the event", step 1) without firing an event: a client
         * that loses the connection before its first event then resumes
         * from the moment it connected instead of missing what came
         * while it was away. */
        char idbuf[SSE_ID_TEXT_MAX];
        const char *open;
        sse_id_format(idbuf, io->sub.cursor);
        open = apr_pstrcat(io->scratch, ": ok\nid: ", idbuf, "\n\n", NULL);
        sse_stream_add(io, open, strlen(open));
    }
    else {
        sse_stream_add(io, ": ok\n\n", 6);
    }
}
/* Non-zero when the client has closed its end. Only HTTP/1.x has a socket
 * of its own to look at; HTTP/2 relies on write errors and keepalives. */
int sse_stream_client_gone(sse_stream_io *sc)
{
    apr_pollfd_t pfd;
    apr_int32_t n = 0;
    apr_socket_t *sock;

    if (sc->c->aborted) return 1;
    if (!sc->check_input) return 0;
    sock = ap_get_conn_socket(sc->c);
    memset(&pfd, 0, sizeof(pfd));
    pfd.p = sc->scratch;
    pfd.desc_type = APR_POLL_SOCKET;
    pfd.reqevents = APR_POLLIN;
    pfd.desc.s = sock;
    if (apr_poll(&pfd, 1, &n, 0) != APR_SUCCESS || n == 0) return 0;
    if (ap_ssl_conn_is_ssl(sc->c)) {
        /* let mod_ssl consume close_notify and friends */
        apr_bucket_brigade *tmp = apr_brigade_create(sc->scratch,
                                                     sc->c->bucket_alloc);
        apr_status_t rv = ap_get_brigade(sc->c->input_filters, tmp,
                                         AP_MODE_SPECULATIVE,
                                         APR_NONBLOCK_READ, 1);
        int empty = APR_BRIGADE_EMPTY(tmp);
        apr_brigade_destroy(tmp);
        if (rv == APR_SUCCESS && empty) return 1;
        if (APR_STATUS_IS_EAGAIN(rv)) {
            /* mod_ssl answers EAGAIN, not EOF, at a TCP end that came
             * without close_notify (a killed client, a closed socket):
             * the socket itself tells whether more can come */
            int eof = 0;
            return apr_socket_atreadeof(sock, &eof) != APR_SUCCESS || eof;
        }
        if (rv != APR_SUCCESS && !APR_STATUS_IS_TIMEUP(rv)) return 1;
        sc->check_input = 0;   /* pipelined data or reqtimeout: stop looking */
        return 0;
    }
    else {
        int eof = 0;
        if (apr_socket_atreadeof(sock, &eof) == APR_SUCCESS && eof) return 1;
        if (pfd.rtnevents & (APR_POLLHUP | APR_POLLERR)) return 1;
        sc->check_input = 0;       /* pipelined data: stop looking */
        return 0;
    }
}

/* Adds an sse-reset event telling the client what it missed. */
static void add_reset(sse_stream_io *sc, sse_resume why, apr_uint64_t id)
{
    apr_size_t len;
    char *text = sse_reset_frame(sc->scratch, reset_reasons[why], id,
                                 sc->last_id_text, &len);
    sse_stream_add(sc, text, len);
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, sc->r, SSE_LOGNO(00103)
                  "stream told to reset (%s), last event id %s",
                  reset_reasons[why],
                  sc->last_id_text ? sc->last_id_text : "-");
}

apr_status_t sse_stream_send_news(sse_stream_io *sc)
{
    sse_resume *reset = &sc->reset;
    sse_read_result res;
    apr_status_t rv;
    do {
        sse_read_cache_read(sc->store, &sc->sub, sc->scratch, READ_BUDGET,
                            &res);
        if (res.deleted) {
            sse_stream_add(sc, ": channel deleted\n\n", 19);
            sse_stream_flush(sc);
            return APR_EOF;
        }
        if (res.gap && *reset == SSE_RESUME_NONE) {
            *reset = SSE_RESUME_OVERFLOW;
        }
        if (*reset >= SSE_RESUME_EXPIRED) {
            add_reset(sc, *reset, res.events ? res.first_id - 1
                                             : sc->sub.cursor);
            *reset = SSE_RESUME_NONE;
        }
        if (res.len) {
            sse_stream_add(sc, res.buf, res.len);
            sc->delivered += res.events;
            sse_store_count_delivered(sc->store, res.events);
        }
        if (APR_BRIGADE_EMPTY(sc->bb)) {
            return APR_SUCCESS;
        }
        if ((rv = sse_stream_flush(sc)) != APR_SUCCESS) return rv;
    } while (res.more);
    return APR_SUCCESS;
}

static apr_interval_time_t wait_time(sse_stream_io *sc, int keepalive_sec)
{
    apr_interval_time_t limit = sc->max_wait;
    if (keepalive_sec) {
        apr_interval_time_t left = sc->last_write
                                   + apr_time_from_sec(keepalive_sec)
                                   - apr_time_now();
        if (left < limit) limit = left > 0 ? left : 0;
    }
    return limit;
}


apr_status_t sse_stream_live(sse_stream_io *io, apr_time_t deadline)
{
    apr_status_t rv = APR_SUCCESS;
    for (;;) {
        apr_interval_time_t wait;
        if (sse_notify_stopping()) {
            sse_stream_add(io, ": server restarting\n\n", 21);
            sse_stream_flush(io);
            return APR_EINTR;
        }
        if (io->subscribed && sse_store_has_news(io->store, &io->sub)) {
            if ((rv = sse_stream_send_news(io)) != APR_SUCCESS) return rv;
            continue;
        }
        if (io->keepalive_sec && apr_time_now() - io->last_write
                                 >= apr_time_from_sec(io->keepalive_sec)) {
            sse_stream_add(io, ": keepalive\n\n", 13);
            if ((rv = sse_stream_flush(io)) != APR_SUCCESS) return rv;
        }
        if (sse_stream_client_gone(io)) {
            return APR_ECONNABORTED;
        }
        wait = wait_time(io, io->keepalive_sec);
        if (deadline) {
            apr_time_t now = apr_time_now();
            if (now >= deadline) return APR_TIMEUP;
            if (deadline - now < wait) wait = deadline - now;
        }
        if (!sse_notify_available()) {
            /* a child without a store (see the error log) has no
             * dispatcher: nothing wakes a wait early */
            apr_sleep(wait);
        }
        /* with no channel joined nothing is news: only a stop wakes it */
        else if (sse_notify_wait(&io->seen, &io->sub, wait) && io->store) {
            sse_store_count_wakeup(io->store, io->sub.row);
        }
    }
}
