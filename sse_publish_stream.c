/* sse_publish_stream.c - the streaming publish: a POST whose body is
 * newline-delimited JSON (application/x-ndjson), one envelope per line, each
 * published as soon as its line has arrived, answered at the end with a
 * summary (the ids, and the errors by line number).
 *
 * Lines that arrive in one read are published together, as one batch with
 * consecutive ids (one store lock and one wakeup for all of them), which is
 * what makes a publisher that streams fast cheap; a line that arrives alone
 * is published alone, at once. A bad line gets its own error and the rest go
 * on. Only whole lines are ever published: a line cut short by a body that
 * ends early or stalls (Timeout) is dropped and the summary says so.
 */
#include "apr_strings.h"
#include "http_protocol.h"
#include "http_main.h"

#include "sse_private.h"
#include "sse_config.h"
#include "sse_event.h"
#include "sse_json.h"
#include "sse_store.h"
#include "sse_publish.h"
#include "sse_publish_stream.h"

/* The summary lists at most this many ids and errors; counts are exact. */
#define MAX_LISTED_IDS    10000
#define MAX_LISTED_ERRORS 100
/* A line may be this many times SSEMaxMessageSize: room for escaping. */
#define LINE_FACTOR       8

typedef struct {
    request_rec *r;
    const char *channel;
    apr_size_t max_line;
    apr_size_t history_size;
    /* the line being read */
    char *line;
    apr_size_t len, cap;
    int overlong;
    apr_uint64_t lineno;
    /* lines waiting to be published together */
    apr_pool_t *batch_pool;
    apr_array_header_t *batch;         /* sse_event */
    apr_array_header_t *batch_lines;   /* apr_uint64_t line numbers */
    /* the summary */
    apr_uint64_t published, failed;
    apr_uint64_t first_id, last_id;
    apr_array_header_t *ids;           /* const char * (JSON strings) */
    apr_array_header_t *errors;        /* const char * (JSON objects) */
} ndjson_ctx;

static void list_error(ndjson_ctx *x, apr_uint64_t line, int status,
                       const char *why)
{
    x->failed++;
    if (x->errors->nelts < MAX_LISTED_ERRORS) {
        APR_ARRAY_PUSH(x->errors, const char *) = apr_psprintf(x->r->pool,
            "{\"line\":%" APR_UINT64_T_FMT ",\"status\":%d,\"error\":%s}",
            line, status, sse_json_quote(x->r->pool, why, strlen(why)));
    }
}

/* A line refused before it reached the store: counted as a rejection. */
static void add_error(ndjson_ctx *x, apr_uint64_t line, int status,
                      const char *why)
{
    list_error(x, line, status, why);
    if (sse_current_store()) sse_store_count_rejected(sse_current_store());
}

/* Publishes the batch; every line of a batch the store refuses gets the
 * store's error. */
static void publish_batch(ndjson_ctx *x)
{
    sse_publish_result res;
    int i;
    if (!x->batch->nelts) return;
    sse_publish_events(x->batch_pool, x->channel, x->batch, &res);
    for (i = 0; i < x->batch->nelts; i++) {
        apr_uint64_t line = APR_ARRAY_IDX(x->batch_lines, i, apr_uint64_t);
        if (res.status != HTTP_CREATED) {
            /* the publish counted one rejection for the batch */
            list_error(x, line, res.status, res.error);
            continue;
        }
        {
            apr_uint64_t id = res.first_id + (apr_uint64_t)i;
            char buf[SSE_ID_TEXT_MAX];
            if (!x->first_id) x->first_id = id;
            x->last_id = id;
            x->published++;
            if (x->ids->nelts < MAX_LISTED_IDS) {
                sse_id_format(buf, id);
                APR_ARRAY_PUSH(x->ids, const char *) =
                    apr_pstrcat(x->r->pool, "\"", buf, "\"", NULL);
            }
        }
    }
    apr_array_clear(x->batch);
    apr_array_clear(x->batch_lines);
    apr_pool_clear(x->batch_pool);
}

/* One complete line: parsed and checked now, published with its batch. */
static void take_line(ndjson_ctx *x, const char *s, apr_size_t len)
{
    apr_array_header_t *events;
    const char *why;
    apr_size_t i = 0;
    int status;
    sse_event *ev;

    x->lineno++;
    while (len && (s[len - 1] == '\r' || s[len - 1] == ' '
                   || s[len - 1] == '\t')) {
        len--;
    }
    while (i < len && (s[i] == ' ' || s[i] == '\t')) i++;
    if (i == len) return;                 /* blank lines separate nothing */
    if (s[i] == '[') {
        add_error(x, x->lineno, HTTP_BAD_REQUEST,
                  "one envelope per line, not an array");
        return;
    }
    /* the envelope is kept until its batch is published */
    s = apr_pstrmemdup(x->batch_pool, s + i, len - i);
    if ((why = sse_json_parse_envelopes(x->batch_pool, s, len - i,
                                        &events))) {
        add_error(x, x->lineno, HTTP_BAD_REQUEST, why);
        return;
    }
    ev = &APR_ARRAY_IDX(events, 0, sse_event);
    if ((why = sse_publish_event_problem(x->batch_pool, ev, &status))) {
        add_error(x, x->lineno, status, why);
        return;
    }
    *(sse_event *)apr_array_push(x->batch) = *ev;
    APR_ARRAY_PUSH(x->batch_lines, apr_uint64_t) = x->lineno;
    /* a batch may not be longer than the history */
    if ((apr_size_t)x->batch->nelts >= x->history_size) publish_batch(x);
}

/* Adds bytes to the current line, taking every line they complete. */
static void take_bytes(ndjson_ctx *x, const char *s, apr_size_t n)
{
    while (n) {
        const char *nl = memchr(s, '\n', n);
        apr_size_t part = nl ? (apr_size_t)(nl - s) : n;
        if (!x->overlong) {
            if (x->len + part > x->max_line) {
                x->overlong = 1;
            }
            else {
                if (x->len + part > x->cap) {
                    apr_size_t cap = x->cap ? x->cap : 4096;
                    char *grown;
                    while (cap < x->len + part) cap *= 2;
                    if (cap > x->max_line) cap = x->max_line;
                    grown = apr_palloc(x->r->pool, cap);
                    if (x->len) memcpy(grown, x->line, x->len);
                    x->line = grown;
                    x->cap = cap;
                }
                memcpy(x->line + x->len, s, part);
                x->len += part;
            }
        }
        if (!nl) return;
        if (x->overlong) {
            x->lineno++;
            add_error(x, x->lineno, HTTP_REQUEST_ENTITY_TOO_LARGE,
                      apr_psprintf(x->r->pool, "line longer than %"
                                   APR_SIZE_T_FMT " bytes (8 x "
                                   "SSEMaxMessageSize)", x->max_line));
        }
        else {
            take_line(x, x->line, x->len);
        }
        x->len = 0;
        x->overlong = 0;
        s = nl + 1;
        n -= part + 1;
    }
}

static char *summary(ndjson_ctx *x, const char *body_error)
{
    char first[SSE_ID_TEXT_MAX], last[SSE_ID_TEXT_MAX];
    const char *ids_more = x->published > (apr_uint64_t)x->ids->nelts
                           ? ",\"ids_truncated\":true" : "";
    const char *err_more = x->failed > (apr_uint64_t)x->errors->nelts
                           ? ",\"errors_truncated\":true" : "";
    sse_id_format(first, x->first_id);
    sse_id_format(last, x->last_id);
    apr_table_setn(x->r->notes, "sse-events", apr_psprintf(x->r->pool,
                   "%" APR_UINT64_T_FMT, x->published));
    return apr_psprintf(x->r->pool,
        "{\"channel\":\"%s\",\"lines\":%" APR_UINT64_T_FMT ",\"published\":%"
        APR_UINT64_T_FMT ",\"failed\":%" APR_UINT64_T_FMT ",\"first_id\":%s,"
        "\"last_id\":%s,\"ids\":[%s]%s,\"errors\":[%s]%s%s%s}",
        x->channel, x->lineno, x->published, x->failed,
        x->first_id ? apr_pstrcat(x->r->pool, "\"", first, "\"", NULL)
                    : "null",
        x->last_id ? apr_pstrcat(x->r->pool, "\"", last, "\"", NULL)
                   : "null",
        apr_array_pstrcat(x->r->pool, x->ids, ','), ids_more,
        apr_array_pstrcat(x->r->pool, x->errors, ','), err_more,
        body_error ? ",\"body_error\":" : "",
        body_error ? sse_json_quote(x->r->pool, body_error,
                                    strlen(body_error)) : "");
}

int sse_publish_stream(request_rec *r, const char *channel,
                       const char **reply, int *status)
{
    const sse_server_conf *conf = sse_config_server(ap_server_conf);
    apr_bucket_brigade *bb = apr_brigade_create(r->pool,
                                                r->connection->bucket_alloc);
    const char *body_error = NULL;
    ndjson_ctx x;
    int seen_eos = 0;

    memset(&x, 0, sizeof(x));
    x.r = r;
    x.channel = channel;
    x.max_line = conf->max_message_size * LINE_FACTOR;
    x.history_size = sse_current_store()
                     ? sse_store_get_limits(sse_current_store())->history_size
                     : 1;
    apr_pool_create(&x.batch_pool, r->pool);
    apr_pool_tag(x.batch_pool, "sse-ndjson-batch");
    x.batch = apr_array_make(r->pool, 16, sizeof(sse_event));
    x.batch_lines = apr_array_make(r->pool, 16, sizeof(apr_uint64_t));
    x.ids = apr_array_make(r->pool, 16, sizeof(char *));
    x.errors = apr_array_make(r->pool, 4, sizeof(char *));
    *status = HTTP_OK;

    while (!seen_eos) {
        apr_bucket *b;
        apr_status_t rv = ap_get_brigade(r->input_filters, bb,
                                         AP_MODE_READBYTES, APR_BLOCK_READ,
                                         64 * 1024);
        if (rv != APR_SUCCESS) {
            /* the line being read is cut short: never published */
            *status = APR_STATUS_IS_TIMEUP(rv) ? HTTP_REQUEST_TIME_OUT
                                               : HTTP_BAD_REQUEST;
            body_error = APR_STATUS_IS_TIMEUP(rv)
                         ? "the body stalled for longer than Timeout"
                         : "the body ended before it was complete";
            r->connection->keepalive = AP_CONN_CLOSE;
            break;
        }
        for (b = APR_BRIGADE_FIRST(bb); b != APR_BRIGADE_SENTINEL(bb);
             b = APR_BUCKET_NEXT(b)) {
            const char *data;
            apr_size_t n;
            if (APR_BUCKET_IS_EOS(b)) {
                seen_eos = 1;
                break;
            }
            if (apr_bucket_read(b, &data, &n, APR_BLOCK_READ) == APR_SUCCESS
                && n) {
                take_bytes(&x, data, n);
            }
        }
        apr_brigade_cleanup(bb);
        /* what arrived together goes out together, now */
        publish_batch(&x);
    }
    if (seen_eos && (x.len || x.overlong)) {
        /* a last line without its newline is still a whole line */
        take_bytes(&x, "\n", 1);
        publish_batch(&x);
    }
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, SSE_LOGNO(00205)
                  "streaming publish to '%s': %" APR_UINT64_T_FMT " line(s), %"
                  APR_UINT64_T_FMT " published, %" APR_UINT64_T_FMT
                  " refused%s%s", channel, x.lineno, x.published, x.failed,
                  body_error ? "; " : "", body_error ? body_error : "");
    *reply = summary(&x, body_error);
    return OK;
}
