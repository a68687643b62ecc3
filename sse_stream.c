/* sse_stream.c - the "sse-stream" handler: one request = one subscriber.
 *
 * Resolves the channels, registers the subscription in the store, then
 * loops: copy whatever is new from the store (replay first, then live), write
 * it with one FLUSH, wait for the next wakeup, keepalive or stop. The loop
 * never holds the store lock while writing, and every wait is bounded, so a
 * dead client costs at most one keepalive interval of a thread.
 *
 * Memory: the brigade lives as long as the request; everything made for one
 * write comes from a scratch pool cleared after it, so a stream open for
 * days stays the same size.
 */
#include <arpa/inet.h>

#include "apr_strings.h"
#include "apr_poll.h"
#include "apr_support.h"
#include "http_core.h"
#include "http_protocol.h"
#include "http_request.h"
#include "http_ssl.h"
#include "ap_mpm.h"
#include "util_filter.h"

#include "sse_private.h"
#include "sse_config.h"
#include "sse_event.h"
#include "sse_json.h"
#include "sse_query.h"
#include "sse_store.h"
#include "sse_notify.h"
#include "sse_fanout.h"
#include "sse_stream.h"
#include "sse_location.h"
#include "sse_jwt.h"
#include "sse_access.h"

/* Bytes copied from the store per write; a longer replay takes several. */
#define READ_BUDGET (256 * 1024)

typedef struct {
    request_rec *r;
    conn_rec *c;
    apr_bucket_brigade *bb;
    apr_pool_t *scratch;
    sse_store *store;
    sse_subscription sub;
    int check_input;           /* HTTP/1.x: poll the socket for EOF */
    apr_time_t last_write;
    apr_interval_time_t max_wait; /* longest wait between looks at the
                                     client and the MPM state */
    apr_uint64_t delivered;
    int may_park;              /* the child's writer may write for us */
    sse_parked parked;
} stream_ctx;

static const char *reset_reasons[] = {
    NULL, NULL, "expired", "unknown", "overflow"
};

static int plain_error(request_rec *r, int status, const char *msg)
{
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, SSE_LOGNO(00101)
                  "refusing stream (%d): %s", status, msg);
    r->status = status;
    ap_set_content_type(r, "text/plain; charset=utf-8");
    ap_rvputs(r, msg, "\n", NULL);
    return OK;
}

static int add_channel(apr_array_header_t *names, const char *name,
                       apr_size_t len, apr_pool_t *p, const char **why)
{
    const char *problem = sse_channel_name_problem(name, len);
    int i;
    if (problem) {
        *why = apr_psprintf(p, "channel '%s' %s", sse_printable(p, name, len),
                            problem);
        return -1;
    }
    for (i = 0; i < names->nelts; i++) {
        const char *have = APR_ARRAY_IDX(names, i, const char *);
        if (strlen(have) == len && !memcmp(have, name, len)) return 0;
    }
    if (names->nelts >= SSE_MAX_STREAM_CHANNELS) {
        *why = "more than 64 channels on one stream";
        return -1;
    }
    APR_ARRAY_PUSH(names, const char *) = apr_pstrmemdup(p, name, len);
    return 0;
}

/* The server-chosen channels of a location with SSEChannel; expressions
 * are evaluated now, after authentication. NULL and *why on error. */
static apr_array_header_t *pinned_channels(request_rec *r,
                                           const apr_array_header_t *pins,
                                           const char **why)
{
    apr_array_header_t *names = apr_array_make(r->pool, pins->nelts,
                                               sizeof(char *));
    int i;
    for (i = 0; i < pins->nelts; i++) {
        const sse_channel_pin *pin = &APR_ARRAY_IDX(pins, i, sse_channel_pin);
        const char *name = pin->text, *err = NULL;
        if (pin->expr) {
            name = ap_expr_str_exec(r, pin->expr, &err);
            if (err || !name) {
                *why = apr_psprintf(r->pool, "SSEChannel \"%s\" could not "
                                    "be evaluated: %s", pin->text,
                                    err ? err : "no value");
                return NULL;
            }
        }
        if (add_channel(names, name, strlen(name), r->pool, why)) {
            *why = apr_psprintf(r->pool, "SSEChannel \"%s\" gave an invalid "
                                "channel name: %s", pin->text, *why);
            return NULL;
        }
    }
    return names;
}

/* The channels a client asked for: path remainder plus channel=
 * parameters (repeatable, comma-separated). NULL and *why on error. */
static apr_array_header_t *requested_channels(request_rec *r,
                                              const char *rest,
                                              const apr_array_header_t *params,
                                              const char **why)
{
    apr_array_header_t *names = apr_array_make(r->pool, 4, sizeof(char *));
    int i;

    if (*rest && add_channel(names, rest, strlen(rest), r->pool, why)) {
        return NULL;
    }
    for (i = 0; i < params->nelts; i++) {
        const sse_query_param *qp = &APR_ARRAY_IDX(params, i, sse_query_param);
        const char *s = qp->value, *end = s + qp->value_len;
        if (!sse_query_is(qp, "channel")) continue;
        do {
            const char *comma = memchr(s, ',', (apr_size_t)(end - s));
            const char *stop = comma ? comma : end;
            if (add_channel(names, s, (apr_size_t)(stop - s), r->pool, why)) {
                return NULL;
            }
            s = comma ? comma + 1 : end;
        } while (s < end);
        if (qp->value_len == 0
            && add_channel(names, "", 0, r->pool, why)) {
            return NULL;
        }
    }
    if (!names->nelts) {
        *why = "no channel given: use /<location>/<channel> or ?channel=";
        return NULL;
    }
    return names;
}

static const char *request_last_id(request_rec *r,
                                   const apr_array_header_t *params)
{
    const char *h = apr_table_get(r->headers_in, "Last-Event-ID");
    const sse_query_param *qp;
    if (h) return h;
    if ((qp = sse_query_get(params, "lastEventId"))
        || (qp = sse_query_get(params, "last_event_id"))) {
        return qp->value;
    }
    return NULL;
}

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
    APR_BRIGADE_INSERT_TAIL(sc->bb,
                            apr_bucket_flush_create(sc->c->bucket_alloc));
    rv = ap_pass_brigade(sc->r->output_filters, sc->bb);
    apr_brigade_cleanup(sc->bb);
    apr_pool_clear(sc->scratch);
    sc->last_write = apr_time_now();
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
    return plain_error(r, HTTP_SERVICE_UNAVAILABLE, why);
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
        if (APR_STATUS_IS_EAGAIN(rv)) return 0;
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
static void add_reset(stream_ctx *sc, sse_resume why, apr_uint64_t id,
                      const char *last_id_text)
{
    char idbuf[SSE_ID_TEXT_MAX];
    const char *claimed = "null";
    if (last_id_text && sse_utf8_valid(last_id_text, strlen(last_id_text))) {
        claimed = sse_json_quote(sc->scratch, last_id_text,
                                 strlen(last_id_text));
    }
    sse_id_format(idbuf, id);
    {
        char *text = apr_psprintf(sc->scratch, "id: %s\nevent: sse-reset\n"
                                  "data: {\"reason\":\"%s\",\"last_event_id\""
                                  ":%s}\n\n", idbuf, reset_reasons[why],
                                  claimed);
        add_bytes(sc, text, strlen(text));
    }
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, sc->r, SSE_LOGNO(00103)
                  "stream told to reset (%s), last event id %s",
                  reset_reasons[why], last_id_text ? last_id_text : "-");
}

/* Sends everything new; *reset says a reset notice must go first.
 * Returns APR_EOF when a channel was deleted. */
static apr_status_t send_news(stream_ctx *sc, sse_resume *reset,
                              const char *last_id_text)
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
                                             : sc->sub.cursor, last_id_text);
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

/* Decided once the headers are out, when chunking is known. */
static int stream_may_park(stream_ctx *sc)
{
    ap_filter_t *f;
    if (!sse_fanout_available() || !sc->check_input || sc->c->master
        || ap_ssl_conn_is_ssl(sc->c)) {
        return 0;
    }
    for (f = sc->r->output_filters; f; f = f->next) {
        if (!filter_is_transparent(f->frec->name)) {
            ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, sc->r, SSE_LOGNO(00106)
                          "output filter '%s' sees every byte: this stream "
                          "writes from its own thread", f->frec->name);
            return 0;
        }
    }
    return 1;
}

/* Writes what the writer could not, straight to the socket: it is the
 * rest of a chunk the filters already consider sent. */
static apr_status_t write_pending(stream_ctx *sc)
{
    apr_socket_t *sock = ap_get_conn_socket(sc->c);
    const char *at = sc->parked.pending;
    apr_size_t left = sc->parked.pending_len;
    apr_status_t rv = APR_SUCCESS;
    while (left && rv == APR_SUCCESS) {
        apr_size_t n = left;
        rv = apr_socket_send(sock, at, &n);
        at += n;
        left -= n;
    }
    free(sc->parked.pending);
    sc->parked.pending = NULL;
    return rv;
}

/* Sleeps while the child's writer serves this stream; returns when the
 * thread has work again. */
static apr_status_t park(stream_ctx *sc, int keepalive_sec, apr_uint32_t seen)
{
    sse_parked *p = &sc->parked;
    apr_os_sock_t fd;
    sse_park_end why;

    if (apr_os_sock_get(&fd, ap_get_conn_socket(sc->c)) != APR_SUCCESS) {
        sc->may_park = 0;
        return APR_SUCCESS;
    }
    p->fd = fd;
    p->chunked = sc->r->chunked;
    p->keepalive_sec = keepalive_sec;
    p->sub = &sc->sub;
    p->last_write = sc->last_write;
    why = sse_fanout_park(p, seen);
    sc->last_write = p->last_write;
    sc->delivered += p->delivered;
    switch (why) {
    case SSE_PARK_SLOW:
        return write_pending(sc);
    case SSE_PARK_GONE:
        /* like client_gone: c->aborted would send mpm_event down a path
         * that frees the connection while an ungraceful stop may still
         * close its socket (close_worker_sockets) */
        return APR_ECONNABORTED;
    case SSE_PARK_INPUT:
        sc->may_park = 0;
        return APR_SUCCESS;
    default:
        return APR_SUCCESS;
    }
}

static const char *stream_end_reason(apr_status_t rv)
{
    return rv == APR_EOF ? "channel deleted"
         : sse_notify_stopping() ? "child stopping"
         : "client gone";
}

static int run_stream(stream_ctx *sc, sse_resume resume,
                      const char *last_id_text, int retry_ms,
                      int keepalive_sec)
{
    apr_status_t rv = APR_SUCCESS;
    apr_uint32_t seen;

    if (retry_ms >= 0) {
        char *line = apr_psprintf(sc->scratch, "retry: %d\n\n", retry_ms);
        add_bytes(sc, line, strlen(line));
    }
    add_bytes(sc, ": ok\n\n", 6);
    if (resume == SSE_RESUME_EXACT) resume = SSE_RESUME_NONE;
    /* the preamble and any replay go out together, then live events */
    seen = sse_notify_generation();
    rv = send_news(sc, &resume, last_id_text);
    if (rv == APR_SUCCESS && !APR_BRIGADE_EMPTY(sc->bb)) {
        rv = flush_out(sc);
    }
    sc->may_park = rv == APR_SUCCESS && stream_may_park(sc);
    while (rv == APR_SUCCESS) {
        if (sse_notify_stopping()) {
            add_bytes(sc, ": server restarting\n\n", 21);
            flush_out(sc);
            break;
        }
        if (sse_store_has_news(sc->store, &sc->sub)) {
            rv = send_news(sc, &resume, last_id_text);
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
        if (sc->may_park && !sc->c->data_in_output_filters) {
            rv = park(sc, keepalive_sec, seen);
            seen = sse_notify_generation();
            continue;
        }
        sse_notify_wait(&seen, wait_time(sc, keepalive_sec));
    }
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, sc->r, SSE_LOGNO(00104)
                  "stream ends (%s) after %" APR_UINT64_T_FMT " events",
                  stream_end_reason(rv), sc->delivered);
    return OK;
}

/* The client's address as the per-client limit counts it (IPv4 mapped
 * into IPv6); NULL when it cannot be read. */
static const unsigned char *client_address(request_rec *r,
                                           unsigned char *buf)
{
    const char *ip = r->useragent_ip;
    if (!ip) return NULL;
    if (inet_pton(AF_INET6, ip, buf) == 1) return buf;
    memset(buf, 0, 10);
    buf[10] = buf[11] = 0xff;
    return inet_pton(AF_INET, ip, buf + 12) == 1 ? buf : NULL;
}

/* Which channels, as far as httpd's access rules go: refuses with 400
 * (bad names), 401/403 (httpd's rules for a channel's URL, or an
 * SSEChannel expression without a valid value). */
static int channels_allowed_by_httpd(request_rec *r,
                                     const apr_array_header_t *params,
                                     apr_array_header_t **names)
{
    const sse_dir_conf *dc = sse_config_dir(r);
    const sse_location *loc = sse_location_of(r);
    const char *why = NULL, *refused;

    if (dc->channels) {
        if (*loc->rest || sse_query_get(params, "channel")) {
            *names = NULL;
            return plain_error(r, HTTP_BAD_REQUEST, "this location serves "
                               "fixed channels (SSEChannel); no channel can "
                               "be chosen here");
        }
        if (!(*names = pinned_channels(r, dc->channels, &why))) {
            ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, SSE_LOGNO(00107)
                          "stream refused: %s", why);
            return HTTP_FORBIDDEN;
        }
        return OK;
    }
    if (!(*names = requested_channels(r, loc->rest, params, &why))) {
        return plain_error(r, HTTP_BAD_REQUEST, why);
    }
    return sse_access_check_channels(r, loc->base, *names, &refused);
}

/* Which channels, and whether this client may have them: httpd's rules,
 * then, on a location with SSETokenKey, a valid token (401) whose
 * sse_subscribe claim covers every channel (403). */
static int resolve_channels(request_rec *r, const apr_array_header_t *params,
                            apr_array_header_t **names)
{
    sse_jwt_claims claims;
    int status = sse_access_token_claims(r, &claims), i;
    if (status != OK && status != DECLINED) return status;
    if ((status = channels_allowed_by_httpd(r, params, names)) != OK
        || !*names || !sse_config_dir(r)->token_key) {
        return status;
    }
    for (i = 0; i < (*names)->nelts; i++) {
        const char *name = APR_ARRAY_IDX(*names, i, const char *);
        if (!sse_access_token_grants(claims.subscribe, name)) {
            ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, SSE_LOGNO(00109)
                          "stream refused: the token does not grant "
                          "channel '%s'", name);
            return HTTP_FORBIDDEN;
        }
    }
    return OK;
}

static int sse_stream_handler(request_rec *r)
{
    const sse_dir_conf *dc;
    apr_array_header_t *params, *names = NULL;
    const char *why = NULL, *last_id, *which = NULL;
    unsigned char addr[16];
    stream_ctx sc;
    sse_resume resume = SSE_RESUME_NONE;
    sse_result res;
    int status;

    if (!r->handler || strcmp(r->handler, SSE_HANDLER_STREAM)) {
        return DECLINED;
    }
    if ((status = sse_location_check(r, &why)) != OK) {
        if (status != HTTP_INTERNAL_SERVER_ERROR) {
            return plain_error(r, status, why);
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
    sse_access_cors_headers(r);
    dc = sse_config_dir(r);
    if (!(params = sse_query_parse(r->pool, r->args))) {
        return plain_error(r, HTTP_BAD_REQUEST, "malformed query string");
    }
    if ((status = resolve_channels(r, params, &names)) != OK) {
        return status;
    }
    if (!names) {
        return OK;   /* answered already */
    }
    last_id = request_last_id(r, params);

    memset(&sc, 0, sizeof(sc));
    sc.r = r;
    sc.c = r->connection;
    sc.store = sse_current_store();
    if (!sc.store) {
        return plain_error(r, HTTP_SERVICE_UNAVAILABLE,
                           "the event store is not available");
    }
    if (r->header_only) {
        set_stream_headers(r);
        return OK;
    }
    res = sse_store_subscribe(sc.store, sse_child_row(),
                              (const char *const *)names->elts, names->nelts,
                              sse_config_autocreate(dc),
                              client_address(r, addr), last_id, &sc.sub,
                              &resume, &which);
    switch (res) {
    case SSE_OK:
        break;
    case SSE_NOT_FOUND:
        return plain_error(r, HTTP_NOT_FOUND, apr_psprintf(r->pool,
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
    if (last_id) {
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
                  names->nelts, APR_ARRAY_IDX(names, 0, const char *),
                  last_id ? last_id : "-");
    run_stream(&sc, resume, last_id, dc->retry_ms,
               sse_config_keepalive(dc));
    sse_store_unsubscribe(sc.store, &sc.sub);
    return OK;
}

void sse_stream_register_hooks(void)
{
    ap_hook_handler(sse_stream_handler, NULL, NULL, APR_HOOK_MIDDLE);
}
