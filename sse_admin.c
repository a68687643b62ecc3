/* sse_admin.c - the "sse-admin" handler: a small JSON REST API.
 *
 *   POST   channels/{channel}   publish (text body, JSON envelope(s), or
 *                                a stream of them: application/x-ndjson)
 *   GET    channels/{channel}   channel statistics
 *   DELETE channels/{channel}   drop history, end subscribers' streams
 *   GET    channels             all channels
 *   GET    status               server totals
 *   GET    metrics              the same, for Prometheus (sse_report.c)
 *
 * Access control is httpd's (Require on the location); sse_access.c adds
 * the refusal of other sites' pages and, with SSETokenKey, tokens whose
 * sse_publish claim grants the channel ("*" for status and the list). Paths are relative to the <Location>
 * that set the handler, whatever sections nest below it. Every answer,
 * errors included, is JSON, and a refused request changes nothing.
 */
#include "apr_strings.h"
#include "http_core.h"
#include "http_protocol.h"
#include "http_request.h"
#include "http_main.h"

#include "mod_sse.h"
#include "sse_private.h"
#include "sse_config.h"
#include "sse_event.h"
#include "sse_json.h"
#include "sse_query.h"
#include "sse_store.h"
#include "sse_notify.h"
#include "sse_publish.h"
#include "sse_publish_stream.h"
#include "sse_admin.h"
#include "sse_location.h"
#include "sse_jwt.h"
#include "sse_access.h"
#include "sse_report.h"
#include "sse_redis.h"

/* A JSON publish may be this many times SSEMaxMessageSize: room for
 * escaping and for batches. */
#define JSON_BODY_FACTOR 8

static int reply(request_rec *r, int status, const char *json)
{
    r->status = status;
    ap_set_content_type(r, "application/json");
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    ap_rvputs(r, json, "\n", NULL);
    return OK;
}

static int reply_error(request_rec *r, int status, const char *msg)
{
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, SSE_LOGNO(00201)
                  "admin request refused (%d): %s", status, msg);
    if (ap_discard_request_body(r) != OK) {
        /* the body could not be read; make sure it is not parsed as the
         * next request */
        r->connection->keepalive = AP_CONN_CLOSE;
    }
    return reply(r, status, apr_psprintf(r->pool, "{\"error\":%s,\"status\""
                                         ":%d}", sse_json_quote(r->pool, msg,
                                         strlen(msg)), status));
}

static int not_allowed(request_rec *r, const char *allow)
{
    r->allowed = 0;
    /* reply() answers with the status set, so headers_out is sent together
     * with err_headers_out: the header goes in one of them only */
    apr_table_setn(r->headers_out, "Allow", allow);
    return reply_error(r, HTTP_METHOD_NOT_ALLOWED, apr_psprintf(r->pool,
                       "method %s not allowed here (allowed: %s)",
                       r->method, allow));
}

static const char *id_json(apr_pool_t *p, apr_uint64_t id)
{
    char buf[SSE_ID_TEXT_MAX];
    if (!id) return "null";
    sse_id_format(buf, id);
    return apr_pstrcat(p, "\"", buf, "\"", NULL);
}

static const char *channel_json(apr_pool_t *p, const sse_channel_info *ci)
{
    return apr_psprintf(p, "{\"channel\":\"%s\",\"subscribers\":%u,"
                        "\"messages\":%u,\"first_id\":%s,\"last_id\":%s,"
                        "\"published\":%" APR_UINT64_T_FMT ",\"bytes\":%"
                        APR_UINT64_T_FMT "}", ci->name, ci->subscribers,
                        ci->messages, id_json(p, ci->first_id),
                        id_json(p, ci->last_id), ci->published, ci->bytes);
}

/* Reads the whole body, at most limit bytes, into memory of its size (not
 * of the limit: SSEMaxMessageSize may allow hundreds of megabytes). Returns
 * OK or an HTTP status with *why set. */
static int read_body(request_rec *r, apr_size_t limit, char **body,
                     apr_size_t *len, const char **why)
{
    apr_bucket_brigade *bb = apr_brigade_create(r->pool,
                                                r->connection->bucket_alloc);
    apr_bucket_brigade *kept = apr_brigade_create(r->pool,
                                                  r->connection->bucket_alloc);
    const char *cl = apr_table_get(r->headers_in, "Content-Length");
    apr_off_t total = 0;
    apr_size_t flat;
    int seen_eos = 0;
    char *buf;

    if (cl && apr_atoi64(cl) > (apr_int64_t)limit) {
        *why = apr_psprintf(r->pool, "body of %s bytes is larger than the "
                            "limit of %" APR_SIZE_T_FMT " bytes "
                            "(SSEMaxMessageSize)",
                            sse_printable(r->pool, cl, strlen(cl)), limit);
        return HTTP_REQUEST_ENTITY_TOO_LARGE;
    }
    while (!seen_eos) {
        apr_bucket *b;
        apr_status_t rv = ap_get_brigade(r->input_filters, bb,
                                         AP_MODE_READBYTES, APR_BLOCK_READ,
                                         HUGE_STRING_LEN);
        if (rv != APR_SUCCESS) {
            *why = "could not read the request body";
            return ap_map_http_request_error(rv, HTTP_BAD_REQUEST);
        }
        while (!APR_BRIGADE_EMPTY(bb)) {
            b = APR_BRIGADE_FIRST(bb);
            if (APR_BUCKET_IS_EOS(b)) {
                seen_eos = 1;
                apr_bucket_delete(b);
                continue;
            }
            if (APR_BUCKET_IS_METADATA(b)) {
                apr_bucket_delete(b);
                continue;
            }
            total += (apr_off_t)b->length;
            if ((apr_size_t)total > limit) {
                *why = apr_psprintf(r->pool, "body is larger than the limit "
                                    "of %" APR_SIZE_T_FMT " bytes "
                                    "(SSEMaxMessageSize)", limit);
                return HTTP_REQUEST_ENTITY_TOO_LARGE;
            }
            /* the input filters reuse their buffers: keep a copy */
            if (apr_bucket_setaside(b, r->pool) != APR_SUCCESS) {
                *why = "could not read the request body";
                return HTTP_BAD_REQUEST;
            }
            APR_BUCKET_REMOVE(b);
            APR_BRIGADE_INSERT_TAIL(kept, b);
        }
    }
    flat = (apr_size_t)total;
    buf = apr_palloc(r->pool, flat + 1);
    if (apr_brigade_flatten(kept, buf, &flat) != APR_SUCCESS
        || flat != (apr_size_t)total) {
        *why = "could not read the request body";
        return HTTP_BAD_REQUEST;
    }
    apr_brigade_cleanup(kept);
    buf[flat] = '\0';
    *body = buf;
    *len = flat;
    return OK;
}

static int is_json(request_rec *r)
{
    const char *ct = apr_table_get(r->headers_in, "Content-Type");
    return ct && !strncasecmp(ct, "application/json", 16)
           && (ct[16] == '\0' || ct[16] == ';' || ct[16] == ' ');
}

/* Event type and retry of a text publish, from the query or headers. */
static int plain_event(request_rec *r, sse_event *ev, const char **why)
{
    apr_array_header_t *params = sse_query_parse(r->pool, r->args);
    const sse_query_param *qp;
    const char *h;

    memset(ev, 0, sizeof(*ev));
    ev->retry = -1;
    if (!params) {
        *why = "malformed query string";
        return HTTP_BAD_REQUEST;
    }
    if ((qp = sse_query_get(params, "event"))) {
        ev->event = qp->value;
        ev->event_len = qp->value_len;
    }
    else if ((h = apr_table_get(r->headers_in, "SSE-Event"))) {
        ev->event = h;
        ev->event_len = strlen(h);
    }
    if (ev->event && (*why = sse_event_type_problem(ev->event,
                                                    ev->event_len))) {
        return HTTP_BAD_REQUEST;
    }
    qp = sse_query_get(params, "retry");
    h = qp ? qp->value : apr_table_get(r->headers_in, "SSE-Retry");
    if (h && sse_retry_parse(h, qp ? qp->value_len : strlen(h), &ev->retry)) {
        *why = "retry must be a number of milliseconds, digits only";
        return HTTP_BAD_REQUEST;
    }
    return OK;
}

/* A JSON body that is an array gets "ids", even for one envelope. */
static int is_array(const char *body, apr_size_t len)
{
    apr_size_t i = 0;
    while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\n'
                       || body[i] == '\r')) {
        i++;
    }
    return i < len && body[i] == '[';
}

/* application/x-ndjson: a stream of envelopes, one per line */
static int is_ndjson(request_rec *r)
{
    const char *ct = apr_table_get(r->headers_in, "Content-Type");
    return ct && !strncasecmp(ct, "application/x-ndjson", 20)
           && (ct[20] == '\0' || ct[20] == ';' || ct[20] == ' ');
}

static int publish(request_rec *r, const char *channel)
{
    const sse_server_conf *conf = sse_config_server(ap_server_conf);
    apr_array_header_t *events;
    sse_publish_result result;
    const char *why = NULL;
    char *body;
    apr_size_t len;
    int json = is_json(r), status, i;

    apr_table_setn(r->notes, "sse-channels", channel);
    if (is_ndjson(r)) {
        const char *summary;
        sse_publish_stream(r, channel, &summary, &status);
        return reply(r, status, summary);
    }
    if (json) {
        if ((status = read_body(r, conf->max_message_size * JSON_BODY_FACTOR,
                                &body, &len, &why)) != OK) {
            goto refused;
        }
        if ((why = sse_json_parse_envelopes(r->pool, body, len, &events))) {
            status = HTTP_BAD_REQUEST;
            goto refused;
        }
    }
    else {
        sse_event *ev;
        events = apr_array_make(r->pool, 1, sizeof(sse_event));
        ev = apr_array_push(events);
        if ((status = plain_event(r, ev, &why)) != OK
            || (status = read_body(r, conf->max_message_size, &body, &len,
                                   &why)) != OK) {
            goto refused;
        }
        ev->data = body;
        ev->data_len = len;
    }
    sse_publish_events(r->pool, channel, events, &result);
    if (result.status != HTTP_CREATED) {
        status = result.status;
        why = result.error;
        goto refused_counted;
    }
    apr_table_setn(r->notes, "sse-events",
                   apr_itoa(r->pool, events->nelts));
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, SSE_LOGNO(00202)
                  "published %d event(s) to '%s', first id %" APR_UINT64_T_FMT
                  ", %u subscriber(s)", events->nelts, channel,
                  result.first_id, result.subscribers);
    if (!json || !is_array(body, len)) {
        return reply(r, HTTP_CREATED, apr_psprintf(r->pool,
                     "{\"channel\":\"%s\",\"id\":%s,\"subscribers\":%u}",
                     channel, id_json(r->pool, result.first_id),
                     result.subscribers));
    }
    {
        apr_array_header_t *ids = apr_array_make(r->pool, events->nelts,
                                                 sizeof(char *));
        for (i = 0; i < events->nelts; i++) {
            APR_ARRAY_PUSH(ids, const char *) =
                id_json(r->pool, result.first_id + (apr_uint64_t)i);
        }
        return reply(r, HTTP_CREATED, apr_psprintf(r->pool,
                     "{\"channel\":\"%s\",\"ids\":[%s],\"subscribers\":%u}",
                     channel, apr_array_pstrcat(r->pool, ids, ','),
                     result.subscribers));
    }
refused:
    if (sse_current_store()) sse_store_count_rejected(sse_current_store());
refused_counted:
    return reply_error(r, status, why);
}

static int channel_request(request_rec *r, sse_store *st, const char *name)
{
    const char *why = sse_channel_name_problem(name, strlen(name));
    sse_channel_info info;

    if (why) {
        if (r->method_number == M_POST && sse_current_store()) {
            sse_store_count_rejected(sse_current_store());
        }
        return reply_error(r, HTTP_BAD_REQUEST,
                           apr_pstrcat(r->pool, "channel name ", why, NULL));
    }
    switch (r->method_number) {
    case M_POST:
        return publish(r, name);
    case M_GET:
        if (sse_store_channel_info(st, name, &info) != SSE_OK) {
            return reply_error(r, HTTP_NOT_FOUND, apr_psprintf(r->pool,
                               "channel '%s' does not exist", name));
        }
        return reply(r, HTTP_OK, channel_json(r->pool, &info));
    case M_DELETE:
        if (sse_redis_enabled()) {
            /* every server's mirror drops it, in order with publishes */
            const char *why;
            if (sse_store_channel_info(st, name, &info) != SSE_OK) {
                return reply_error(r, HTTP_NOT_FOUND, apr_psprintf(r->pool,
                                   "channel '%s' does not exist", name));
            }
            if (sse_redis_delete(r->pool, name, &why) != APR_SUCCESS) {
                return reply_error(r, HTTP_SERVICE_UNAVAILABLE, why);
            }
        }
        else if (sse_store_delete(st, name, &info) != SSE_OK) {
            return reply_error(r, HTTP_NOT_FOUND, apr_psprintf(r->pool,
                               "channel '%s' does not exist", name));
        }
        sse_notify_all(sse_store_wake_word(st));
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, SSE_LOGNO(00203)
                      "channel '%s' deleted: %u message(s) dropped, %u "
                      "subscriber(s) ended", name, info.messages,
                      info.subscribers);
        return reply(r, HTTP_OK, apr_psprintf(r->pool,
                     "{\"channel\":\"%s\",\"deleted\":true,\"messages\":%u,"
                     "\"subscribers\":%u}", name, info.messages,
                     info.subscribers));
    default:
        return not_allowed(r, "GET, POST, DELETE");
    }
}

static int list_channels(request_rec *r, sse_store *st)
{
    apr_array_header_t *infos = sse_store_list(st, r->pool);
    apr_array_header_t *parts = apr_array_make(r->pool, infos->nelts + 2,
                                               sizeof(char *));
    int i;
    if (r->method_number != M_GET) return not_allowed(r, "GET");
    for (i = 0; i < infos->nelts; i++) {
        APR_ARRAY_PUSH(parts, const char *) = channel_json(r->pool,
                &APR_ARRAY_IDX(infos, i, sse_channel_info));
    }
    return reply(r, HTTP_OK, apr_pstrcat(r->pool, "{\"channels\":[",
                 apr_array_pstrcat(r->pool, parts, ','), "]}", NULL));
}

/* ,"redis":{...} with SSERedis, else nothing */
static const char *redis_json(request_rec *r, const sse_store_status *s)
{
    static const char *const states[] = { "off", "connecting", "subscribed" };
    const sse_server_conf *conf = sse_config_server(ap_server_conf);
    if (!conf->redis.host) return "";
    return apr_psprintf(r->pool, ",\"redis\":{\"host\":\"%s:%d\",\"state\":"
        "\"%s\",\"reconnects\":%u,\"mirrored\":%" APR_UINT64_T_FMT
        ",\"caught_up\":%" APR_UINT64_T_FMT ",\"lag_ms\":%" APR_INT64_T_FMT
        "}", conf->redis.host, conf->redis.port,
        states[s->redis.state <= SSE_REDIS_SUBSCRIBED ? s->redis.state : 0],
        s->redis.reconnects, s->redis.mirrored, s->redis.caught_up,
        s->redis.lag_usec / 1000);
}

static int server_status(request_rec *r, sse_store *st)
{
    sse_store_status s;
    apr_array_header_t *kids;
    int i;
    if (r->method_number != M_GET) return not_allowed(r, "GET");
    sse_store_status_get(st, r->pool, &s);
    kids = apr_array_make(r->pool, s.children->nelts + 1, sizeof(char *));
    for (i = 0; i < s.children->nelts; i++) {
        const sse_child_info *ci = &APR_ARRAY_IDX(s.children, i,
                                                  sse_child_info);
        APR_ARRAY_PUSH(kids, const char *) = apr_psprintf(r->pool,
                "{\"pid\":%d,\"subscribers\":%u,\"writer_streams\":%u,"
                "\"thread_streams\":%u,\"thread_wakeups\":%u}",
                (int)ci->pid, ci->subscribers, ci->parked, ci->on_threads,
                ci->wakeups);
    }
    return reply(r, HTTP_OK, apr_psprintf(r->pool,
        "{\"version\":\"%s\",\"channels\":%u,\"max_channels\":%u,"
        "\"subscribers\":%u,\"writer_streams\":%u,\"max_subscribers\":%u,"
        "\"children\":[%s],"
        "\"shm\":{\"size\":%" APR_UINT64_T_FMT ",\"used\":%" APR_UINT64_T_FMT
        ",\"free\":%" APR_UINT64_T_FMT "},\"messages\":%" APR_UINT64_T_FMT
        ",\"published\":%" APR_UINT64_T_FMT ",\"delivered\":%"
        APR_UINT64_T_FMT ",\"rejected\":%" APR_UINT64_T_FMT
        ",\"first_id\":%s,\"last_id\":%s,\"repairs\":%u,"
        "\"busy\":{\"server\":%" APR_UINT64_T_FMT ",\"channel\":%"
        APR_UINT64_T_FMT ",\"client\":%" APR_UINT64_T_FMT ",\"table\":%"
        APR_UINT64_T_FMT "},\"max_streams_per_client\":%u%s}",
        MOD_SSE_VERSION, s.channels, s.max_channels, s.subscribers, s.parked,
        sse_store_get_limits(st)->max_subscribers,
        apr_array_pstrcat(r->pool, kids, ','), s.shm_size, s.shm_used,
        s.shm_free, s.messages, s.published, s.delivered, s.rejected,
        id_json(r->pool, s.first_id),
        id_json(r->pool, s.last_id > s.first_id - 1 ? s.last_id : 0),
        s.repairs, s.busy[SSE_BUSY_SERVER], s.busy[SSE_BUSY_CHANNEL],
        s.busy[SSE_BUSY_CLIENT], s.busy[SSE_BUSY_TABLE],
        sse_store_get_limits(st)->max_per_client, redis_json(r, &s)));
}

#ifdef SSE_TEST_HOOKS
/* Test builds: POST test/crash/<point> arms a crash point of the store. */
static int arm_crash_point(request_rec *r, sse_store *st, const char *name)
{
    static const char *const names[SSE_CRASH_POINTS] = {
        NULL, "publish-written", "publish-linked", "subscribe", "delete",
        "trim"
    };
    int i;
    for (i = 1; i < SSE_CRASH_POINTS; i++) {
        if (!strcmp(name, names[i])
            && sse_store_test_arm(st, (sse_crash_point)i) == APR_SUCCESS) {
            return reply(r, HTTP_OK, apr_psprintf(r->pool,
                         "{\"armed\":\"%s\"}", names[i]));
        }
    }
    return reply_error(r, HTTP_NOT_FOUND, "no such crash point");
}
#endif

static int sse_admin_handler(request_rec *r)
{
    const char *path, *why;
    sse_jwt_claims claims, *grants;
    sse_store *st;
    int status;

    if (!r->handler || strcmp(r->handler, SSE_HANDLER_ADMIN)) {
        return DECLINED;
    }
    if ((status = sse_location_check(r, &why)) != OK) {
        if (status != HTTP_INTERNAL_SERVER_ERROR) {
            return reply_error(r, status, why);
        }
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, SSE_LOGNO(00204)
                      "%s", why);
        return reply_error(r, status, "the admin API is not configured "
                           "here (see the error log)");
    }
    if ((why = sse_access_admin_origin(r))) {
        return reply_error(r, HTTP_FORBIDDEN, why);
    }
    status = sse_access_token_claims(r, &claims);
    if (status != OK && status != DECLINED) {
        return reply_error(r, status, "this API needs a valid token "
                           "(Authorization: Bearer); see the error log");
    }
    grants = status == OK ? &claims : NULL;
    path = sse_location_of(r)->rest;
    if (!(st = sse_current_store())) {
        return reply_error(r, HTTP_SERVICE_UNAVAILABLE,
                           "the event store is not available (see the "
                           "error log)");
    }
    if (!strcmp(path, "status") || !strcmp(path, "channels")
        || !strcmp(path, "channels/") || !strcmp(path, "metrics")) {
        if (grants && !sse_access_token_grants(grants->publish, NULL)) {
            return reply_error(r, HTTP_FORBIDDEN, "the token's sse_publish "
                               "claim does not grant every channel (\"*\")");
        }
        if (path[0] == 'm') {
            return r->method_number == M_GET ? sse_report_metrics(r, st)
                                             : not_allowed(r, "GET");
        }
        return path[0] == 's' ? server_status(r, st) : list_channels(r, st);
    }
#ifdef SSE_TEST_HOOKS
    if (!strncmp(path, "test/crash/", 11) && r->method_number == M_POST) {
        return arm_crash_point(r, st, path + 11);
    }
#endif
    if (!strncmp(path, "channels/", 9)) {
        if (grants && !sse_access_token_grants(grants->publish, path + 9)) {
            return reply_error(r, HTTP_FORBIDDEN, "the token's sse_publish "
                               "claim does not grant this channel");
        }
        return channel_request(r, st, path + 9);
    }
    return reply_error(r, HTTP_NOT_FOUND, apr_psprintf(r->pool,
                       "no such admin resource '%s' (use status, metrics, channels, "
                       "channels/{channel})",
                       sse_printable(r->pool, path, strlen(path))));
}

void sse_admin_register_hooks(void)
{
    ap_hook_handler(sse_admin_handler, NULL, NULL, APR_HOOK_MIDDLE);
}
