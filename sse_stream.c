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
 *   SSEHandOff Off): sse_stream_io.c copies whatever is new from the
 *   store, writes it with one FLUSH, and waits for the next wakeup,
 *   keepalive or stop.
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
#include "sse_stream_io.h"
#include "sse_stream.h"

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
        sse_stream_set_headers(r);
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
        if (!sse_stream_filter_is_transparent(f->frec->name)) {
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
static apr_status_t hand_off(sse_stream_io *sc, int keepalive_sec,
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

/* Request notes for LogFormat's %{sse-...}n. A handed-off stream is logged
 * at hand-off, so there they count what went out on the worker thread; its
 * SSE00401 line in the error log gives the totals when it ends. */
static void note_stream(sse_stream_io *sc, const char *end)
{
    apr_table_setn(sc->r->notes, "sse-events", apr_psprintf(sc->r->pool,
                   "%" APR_UINT64_T_FMT, sc->delivered));
    apr_table_setn(sc->r->notes, "sse-bytes", apr_psprintf(sc->r->pool,
                   "%" APR_UINT64_T_FMT, sc->bytes));
    apr_table_setn(sc->r->notes, "sse-end", end);
}

static const char *stream_end_reason(apr_status_t rv)
{
    return rv == APR_EOF ? "channel deleted"
         : rv == APR_EINTR ? "child stopping"
         : "client gone";
}

/* The opening, any replay, then (on the thread path) live events. */
static int run_stream(sse_stream_io *sc, int retry_ms, int keepalive_sec,
                      int handing_off, const char *first_channel)
{
    apr_status_t rv;

    sse_stream_add_opening(sc, retry_ms);
    if (sc->reset == SSE_RESUME_EXACT) sc->reset = SSE_RESUME_NONE;
    /* the opening and any replay go out together, then live events */
    sc->seen = sse_notify_generation();
    rv = sse_stream_send_news(sc);
    if (rv == APR_SUCCESS && !APR_BRIGADE_EMPTY(sc->bb)) {
        rv = sse_stream_flush(sc);
    }
    if (rv == APR_SUCCESS && handing_off
        && hand_off(sc, keepalive_sec, first_channel) == APR_SUCCESS) {
        note_stream(sc, "handed-off");
        return OK;
    }
    if (rv == APR_SUCCESS) {
        rv = sse_stream_live(sc, 0);
    }
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, sc->r, SSE_LOGNO(00104)
                  "stream ends (%s) after %" APR_UINT64_T_FMT " events",
                  stream_end_reason(rv), sc->delivered);
    note_stream(sc, rv == APR_EOF ? "deleted"
                    : rv == APR_EINTR ? "stopping" : "client-gone");
    sse_store_unsubscribe(sc->store, &sc->sub);
    return OK;
}

static int sse_stream_handler(request_rec *r)
{
    const sse_dir_conf *dc;
    const char *why = NULL, *which = NULL, *first;
    sse_stream_request req;
    sse_stream_io sc;
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
    apr_table_setn(r->notes, "sse-channels",
                   apr_array_pstrcat(r->pool, req.names, ','));

    sse_stream_io_init(&sc, r, NULL);
    sc.last_id_text = req.last_id;
    sc.store = sse_current_store();
    if (!sc.store) {
        return sse_request_refuse(r, HTTP_SERVICE_UNAVAILABLE,
                                  "the event store is not available");
    }
    if (r->header_only) {
        sse_stream_set_headers(r);
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

    sse_stream_io_begin(&sc);
    sc.subscribed = 1;
    sc.reset = resume;
    sse_stream_set_headers(r);
    if (req.last_id) {
        apr_table_setn(r->headers_out, "SSE-Resume",
                       resume == SSE_RESUME_EXACT ? "exact" : "reset");
    }
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, SSE_LOGNO(00105)
                  "stream opens: %d channel(s), first '%s', last event id %s",
                  req.names->nelts, first, req.last_id ? req.last_id : "-");
    return run_stream(&sc, dc->retry_ms, sc.keepalive_sec, handing_off,
                      first);
}

void sse_stream_register_hooks(void)
{
    ap_hook_handler(sse_stream_handler, NULL, NULL, APR_HOOK_MIDDLE);
}
