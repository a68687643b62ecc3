/* sse_stream.c - the "sse-stream" handler: one request = one subscriber.
 *
 * Registers the subscription (sse_request.c says which channels), sends the
 * headers, the opening and any replay through httpd's filters, then either
 * hands the stream to the child's writer or keeps writing from this thread:
 *
 * - Hand-off (plain HTTP/1.x whose output filters only frame or count
 *   bytes, on a threaded MPM): once caught up, the socket is dup()ed, the
 *   copy and the subscription go to sse_writer.c, and the connection is
 *   marked aborted. httpd then writes nothing more (no last chunk: the
 *   core output filter drops everything on an aborted connection), logs
 *   the request, closes only its own descriptor without a FIN
 *   (ap_start_lingering_close skips the shutdown when aborted), and the
 *   worker thread and the request's memory go back to httpd.
 * - Thread path (TLS, HTTP/2, filters that must see every byte, prefork,
 *   SSEHandOff Off): copy whatever is new from the store, write it with
 *   one FLUSH, wait for the next wakeup, keepalive or stop. Every wait is
 *   bounded, so a dead client costs at most one interval of a thread.
 *
 * Memory: the brigade lives as long as the request; everything made for one
 * write comes from a scratch pool cleared after it, so a stream open for
 * days stays the same size.
 */
#include <unistd.h>
#include <fcntl.h>

#include "apr_atomic.h"
#include "apr_strings.h"
#include "apr_poll.h"
#include "apr_support.h"
#include "http_core.h"
#include "http_protocol.h"
#include "http_request.h"
#include "http_ssl.h"
#include "ap_mpm.h"
#include "scoreboard.h"
#include "util_filter.h"

#include "sse_private.h"
#include "sse_config.h"
#include "sse_event.h"
#include "sse_store.h"
#include "sse_notify.h"
#include "sse_writer.h"
#include "sse_location.h"
#include "sse_access.h"
#include "sse_request.h"
#include "sse_stream.h"

/* Bytes copied from the store per write; a longer replay takes several,
 * each holding the store lock for one bounded copy. */
#define READ_BUDGET (64 * 1024)

typedef struct {
    request_rec *r;
    conn_rec *c;
    apr_bucket_brigade *bb;
    apr_pool_t *scratch;
    sse_store *store;
    sse_subscription sub;
    const char *last_id_text;  /* the client's Last-Event-ID */
    int check_input;           /* HTTP/1.x: poll the socket for EOF */
    apr_time_t last_write;
    apr_interval_time_t max_wait; /* longest wait between looks at the
                                     client and the MPM state */
    apr_uint64_t delivered;
    apr_uint64_t bytes;
} stream_ctx;

static const char *reset_reasons[] = {
    NULL, NULL, "expired", "unknown", "overflow"
};

static void set_stream_headers(request_rec *r)
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

static void add_bytes(stream_ctx *sc, const char *buf, apr_size_t len)
{
    APR_BRIGADE_INSERT_TAIL(sc->bb, apr_bucket_transient_create(
                                buf, len, sc->c->bucket_alloc));
}

/* Writes what is in the brigade with a FLUSH; the scratch pool is cleared
 * afterwards, so transient buckets may point into it. */
static apr_status_t flush_out(stream_ctx *sc)
{
    apr_status_t rv;
    apr_off_t len = 0;
    apr_brigade_length(sc->bb, 0, &len);
    APR_BRIGADE_INSERT_TAIL(sc->bb,
                            apr_bucket_flush_create(sc->c->bucket_alloc));
    rv = ap_pass_brigade(sc->r->output_filters, sc->bb);
    apr_brigade_cleanup(sc->bb);
    apr_pool_clear(sc->scratch);
    sc->last_write = apr_time_now();
    if (len > 0) sc->bytes += (apr_uint64_t)len;
    if (rv == APR_SUCCESS && sc->c->aborted) rv = APR_ECONNABORTED;
    return rv;
}

/* Too many subscribers: make an EventSource come back later (any non-200
 * would stop it for good); tell other clients 503 + Retry-After. */
static int answer_busy(request_rec *r, const char *why)
{
    const char *accept = apr_table_get(r->headers_in, "Accept");
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, SSE_LOGNO(00102)
                  "stream refused for now: %s", why);
    if (accept && ap_strcasestr(accept, "text/event-stream")) {
        /* 5 to 10 s, spread so refused clients do not return together */
        long ms = 5000 + (long)(apr_time_now() % 5000);
        set_stream_headers(r);
        if (!r->header_only) {
            ap_rprintf(r, "retry: %ld\n: busy, retry later\n\n", ms);
        }
        return OK;
    }
    apr_table_setn(r->err_headers_out, "Retry-After", "5");
    return sse_request_refuse(r, HTTP_SERVICE_UNAVAILABLE, why);
}

/* Children running now, not stopping. */
static int running_children(void)
{
    int used = 0, i, n = 0;
    if (!ap_scoreboard_image
        || ap_mpm_query(AP_MPMQ_MAX_DAEMON_USED, &used) != APR_SUCCESS) {
        return 0;
    }
    for (i = 0; i < used; i++) {
        const process_score *ps = ap_get_scoreboard_process(i);
        if (ps && ps->pid && !ps->quiescing) n++;
    }
    return n;
}

/* The first time this child runs out of open files, say whether the
 * server could have more children: handed-off streams leave threads idle,
 * so the MPM never starts children beyond StartServers for them. */
static void note_child_full(request_rec *r)
{
    static apr_uint32_t noted;
    int running, limit = 0;
    if (apr_atomic_cas32(&noted, 1, 0) != 0) return;
    running = running_children();
    if (ap_mpm_query(AP_MPMQ_MAX_DAEMONS, &limit) != APR_SUCCESS) limit = 0;
    ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, SSE_LOGNO(00111)
                  "this child owns as many streams as its open files allow "
                  "(ulimit -n); %d of %d children are running%s", running,
                  limit, running < limit ? ": set StartServers to "
                  "MaxRequestWorkers / ThreadsPerChild so all of them take "
                  "streams, or raise ulimit -n" : "; raise ulimit -n or "
                  "ServerLimit and MaxRequestWorkers");
}

/* Non-zero when the client has closed its end. Only HTTP/1.x has a socket
 * of its own to look at; HTTP/2 relies on write errors and keepalives. */
static int client_gone(stream_ctx *sc)
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
static void add_reset(stream_ctx *sc, sse_resume why, apr_uint64_t id)
{
    apr_size_t len;
    char *text = sse_reset_frame(sc->scratch, reset_reasons[why], id,
                                 sc->last_id_text, &len);
    add_bytes(sc, text, len);
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, sc->r, SSE_LOGNO(00103)
                  "stream told to reset (%s), last event id %s",
                  reset_reasons[why],
                  sc->last_id_text ? sc->last_id_text : "-");
}

/* Sends everything new; *reset says a reset notice must go first.
 * Returns APR_EOF when a channel was deleted. */
static apr_status_t send_news(stream_ctx *sc, sse_resume *reset)
{
    sse_read_result res;
    apr_status_t rv;
    do {
        sse_store_read(sc->store, &sc->sub, sc->scratch, READ_BUDGET, &res);
        if (res.deleted) {
            add_bytes(sc, ": channel deleted\n\n", 19);
            flush_out(sc);
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
            add_bytes(sc, res.buf, res.len);
            sc->delivered += res.events;
            sse_store_count_delivered(sc->store, res.events);
        }
        if (APR_BRIGADE_EMPTY(sc->bb)) {
            return APR_SUCCESS;
        }
        if ((rv = flush_out(sc)) != APR_SUCCESS) return rv;
    } while (res.more);
    return APR_SUCCESS;
}

static apr_interval_time_t wait_time(stream_ctx *sc, int keepalive_sec)
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

/* Output filters that only frame or count what passes: bytes the writer
 * puts on the socket itself look the same as if they had gone through.
 * Any other filter (TLS, compression, rate limits, ...) must see every
 * byte, so such a stream keeps writing from its own thread. */
static int filter_is_transparent(const char *name)
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

/* Decided before subscribing (hand-off streams do not count against the
 * child's threads): plain HTTP/1.x on a threaded MPM whose writer runs,
 * with no output filter that must see every byte. */
static int may_hand_off(request_rec *r)
{
    conn_rec *c = r->connection;
    ap_filter_t *f;
    if (!sse_config_hand_off(sse_config_dir(r)) || !sse_writer_available()
        || r->proto_num >= 2000 || c->master || ap_ssl_conn_is_ssl(c)) {
        return 0;
    }
    for (f = r->output_filters; f; f = f->next) {
        if (!filter_is_transparent(f->frec->name)) {
            ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, SSE_LOGNO(00106)
                          "output filter '%s' sees every byte: this stream "
                          "writes from its own thread", f->frec->name);
            return 0;
        }
    }
    return 1;
}

/* Gives the caught-up stream to the writer; on success httpd is done
 * with the connection and the handler returns at once. */
static apr_status_t hand_off(stream_ctx *sc, int keepalive_sec,
                             const char *first_channel)
{
    sse_handoff h;
    apr_os_sock_t fd;
    int copy;
    apr_status_t rv;

    if (sc->c->data_in_output_filters
        || apr_os_sock_get(&fd, ap_get_conn_socket(sc->c)) != APR_SUCCESS
        || (copy = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) {
        return APR_EGENERAL;
    }
#ifdef SSE_TEST_HOOKS
    /* test builds: widen the window between the last read and the writer
     * taking over, where an event may be published */
    if (apr_table_get(sc->r->headers_in, "SSE-Test-Delay-Hand-Off")) {
        apr_sleep(apr_time_from_msec(300));
    }
#endif
    memset(&h, 0, sizeof(h));
    h.fd = copy;
    h.chunked = sc->r->chunked;
    h.keepalive_sec = keepalive_sec;
    h.opened = sc->r->request_time;
    h.last_write = sc->last_write;
    h.events = sc->delivered;
    h.bytes = sc->bytes;
    h.sub = &sc->sub;
    h.client = apr_psprintf(sc->r->pool, "%s:%u", sc->r->useragent_ip,
                            (unsigned)sc->c->client_addr->port);
    h.first_channel = first_channel;
    h.last_id_text = sc->last_id_text;
    if ((rv = sse_writer_take(&h)) != APR_SUCCESS) {
        close(copy);
        return rv;
    }
    /* httpd may write nothing more and must not shut the socket down */
    sc->c->aborted = 1;
    sc->c->keepalive = AP_CONN_CLOSE;
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, sc->r, SSE_LOGNO(00110)
                  "stream handed to the writer after %" APR_UINT64_T_FMT
                  " events", sc->delivered);
    return APR_SUCCESS;
}

static const char *stream_end_reason(apr_status_t rv)
{
    return rv == APR_EOF ? "channel deleted"
         : sse_notify_stopping() ? "child stopping"
         : "client gone";
}

/* The opening, any replay, then (on the thread path) live events. */
static int run_stream(stream_ctx *sc, sse_resume resume, int retry_ms,
                      int keepalive_sec, int handing_off,
                      const char *first_channel)
{
    apr_status_t rv = APR_SUCCESS;
    apr_uint32_t seen;

    if (retry_ms >= 0) {
        char *line = apr_psprintf(sc->scratch, "retry: %d\n\n", retry_ms);
        add_bytes(sc, line, strlen(line));
    }
    if (!sc->last_id_text) {
        /* An id with no data sets the client's last event id (WHATWG,
         * "dispatch the event", step 1) without firing an event: a client
         * that loses the connection before its first event then resumes
         * from the moment it connected instead of missing what came
         * while it was away. */
        char idbuf[SSE_ID_TEXT_MAX];
        const char *open;
        sse_id_format(idbuf, sc->sub.cursor);
        open = apr_pstrcat(sc->scratch, ": ok\nid: ", idbuf, "\n\n", NULL);
        add_bytes(sc, open, strlen(open));
    }
    else {
        add_bytes(sc, ": ok\n\n", 6);
    }
    if (resume == SSE_RESUME_EXACT) resume = SSE_RESUME_NONE;
    /* the opening and any replay go out together, then live events */
    seen = sse_notify_generation();
    rv = send_news(sc, &resume);
    if (rv == APR_SUCCESS && !APR_BRIGADE_EMPTY(sc->bb)) {
        rv = flush_out(sc);
    }
    if (rv == APR_SUCCESS && handing_off
        && hand_off(sc, keepalive_sec, first_channel) == APR_SUCCESS) {
        return OK;
    }
    while (rv == APR_SUCCESS) {
        if (sse_notify_stopping()) {
            add_bytes(sc, ": server restarting\n\n", 21);
            flush_out(sc);
            break;
        }
        if (sse_store_has_news(sc->store, &sc->sub)) {
            rv = send_news(sc, &resume);
            continue;
        }
        if (keepalive_sec && apr_time_now() - sc->last_write
                             >= apr_time_from_sec(keepalive_sec)) {
            add_bytes(sc, ": keepalive\n\n", 13);
            if ((rv = flush_out(sc)) != APR_SUCCESS) break;
        }
        if (client_gone(sc)) {
            rv = APR_ECONNABORTED;
            break;
        }
        if (sse_notify_wait(&seen, &sc->sub, wait_time(sc, keepalive_sec))) {
            sse_store_count_wakeup(sc->store, sc->sub.row);
        }
    }
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, sc->r, SSE_LOGNO(00104)
                  "stream ends (%s) after %" APR_UINT64_T_FMT " events",
                  stream_end_reason(rv), sc->delivered);
    sse_store_unsubscribe(sc->store, &sc->sub);
    return OK;
}

static int sse_stream_handler(request_rec *r)
{
    const sse_dir_conf *dc;
    const char *why = NULL, *which = NULL, *first;
    sse_stream_request req;
    stream_ctx sc;
    sse_resume resume = SSE_RESUME_NONE;
    sse_result res;
    int status, handing_off;

    if (!r->handler || strcmp(r->handler, SSE_HANDLER_STREAM)) {
        return DECLINED;
    }
    if ((status = sse_location_check(r, &why)) != OK) {
        if (status != HTTP_INTERNAL_SERVER_ERROR) {
            return sse_request_refuse(r, status, why);
        }
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, SSE_LOGNO(00108)
                      "%s", why);
        return status;
    }
    if (r->method_number != M_GET) {
        /* the 405 page's Allow header is made from allowed_methods */
        ap_allow_methods(r, REPLACE_ALLOW, "GET", "HEAD", NULL);
        return HTTP_METHOD_NOT_ALLOWED;
    }
    if ((status = ap_discard_request_body(r)) != OK) {
        return status;
    }
    dc = sse_config_dir(r);
    if ((status = sse_request_resolve(r, &req)) != OK) {
        return status;
    }
    first = APR_ARRAY_IDX(req.names, 0, const char *);

    memset(&sc, 0, sizeof(sc));
    sc.r = r;
    sc.c = r->connection;
    sc.last_id_text = req.last_id;
    sc.store = sse_current_store();
    if (!sc.store) {
        return sse_request_refuse(r, HTTP_SERVICE_UNAVAILABLE,
                                  "the event store is not available");
    }
    if (r->header_only) {
        set_stream_headers(r);
        return OK;
    }
    handing_off = may_hand_off(r);
    if (handing_off && !sse_writer_has_room()) {
        sse_store_count_busy(sc.store, SSE_BUSY_SERVER);
        note_child_full(r);
        return answer_busy(r, "this child has no room for more streams "
                           "(open files)");
    }
    sc.sub.on_thread = !handing_off;
    res = sse_store_subscribe(sc.store, sse_child_row(),
                              (const char *const *)req.names->elts,
                              req.names->nelts, sse_config_autocreate(dc),
                              req.client, req.last_id, &sc.sub, &resume,
                              &which);
    switch (res) {
    case SSE_OK:
        break;
    case SSE_NOT_FOUND:
        return sse_request_refuse(r, HTTP_NOT_FOUND, apr_psprintf(r->pool,
                                  "channel '%s' does not exist", which));
    case SSE_BUSY:
        return answer_busy(r, which ? apr_psprintf(r->pool, "channel '%s' "
                           "has its maximum of subscribers", which)
                           : "the server has its maximum of subscribers");
    case SSE_CLIENT_LIMIT:
        return answer_busy(r, "this client address has its maximum of "
                           "streams (SSEMaxStreamsPerClient)");
    case SSE_TABLE_FULL:
        return answer_busy(r, "the channel table has no room for channels "
                           "that only subscribers asked for");
    default:
        return answer_busy(r, "this process cannot hold streams");
    }

    set_stream_headers(r);
    if (req.last_id) {
        apr_table_setn(r->headers_out, "SSE-Resume",
                       resume == SSE_RESUME_EXACT ? "exact" : "reset");
    }
    sc.bb = apr_brigade_create(r->pool, sc.c->bucket_alloc);
    apr_pool_create(&sc.scratch, r->pool);
    apr_pool_tag(sc.scratch, "sse-stream-scratch");
    sc.check_input = r->proto_num < 2000 && !sc.c->master;
    {
        int threaded = 0;
        ap_mpm_query(AP_MPMQ_IS_THREADED, &threaded);
        /* prefork: the child's stop shows only in the MPM state */
        sc.max_wait = threaded == AP_MPMQ_NOT_SUPPORTED
                      ? apr_time_from_sec(1)
                      : apr_time_from_sec(SSE_MAX_IDLE_WAIT_SEC);
    }
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, SSE_LOGNO(00105)
                  "stream opens: %d channel(s), first '%s', last event id %s",
                  req.names->nelts, first, req.last_id ? req.last_id : "-");
    return run_stream(&sc, resume, dc->retry_ms, sse_config_keepalive(dc),
                      handing_off, first);
}

void sse_stream_register_hooks(void)
{
    ap_hook_handler(sse_stream_handler, NULL, NULL, APR_HOOK_MIDDLE);
}
