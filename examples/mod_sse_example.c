/* mod_sse_example.c - an example of mod_sse's stream API (mod_sse.h): a
 * handler that answers its own request as an event stream, sends a batch,
 * a comment and timed "tick" events of its own, and can join a channel so
 * that what is published there arrives in between.
 *
 *   LoadModule sse_example_module modules/mod_sse_example.so
 *   <Location /ticks>
 *       SetHandler sse-example
 *   </Location>
 *
 *   GET /ticks?ticks=3&every=200&channel=news&hold=1
 *
 * Build: make examples (apxs -c -I<mod_sse> mod_sse_example.c).
 */
#include "httpd.h"
#include "http_config.h"
#include "http_protocol.h"
#include "http_log.h"
#include "apr_strings.h"

#include "mod_sse.h"

module AP_MODULE_DECLARE_DATA sse_example_module;

static APR_OPTIONAL_FN_TYPE(sse_response_open) *open_fn;
static APR_OPTIONAL_FN_TYPE(sse_response_send) *send_fn;
static APR_OPTIONAL_FN_TYPE(sse_response_comment) *comment_fn;
static APR_OPTIONAL_FN_TYPE(sse_response_wait) *wait_fn;
static APR_OPTIONAL_FN_TYPE(sse_response_close) *close_fn;

static void retrieve(void)
{
    open_fn = APR_RETRIEVE_OPTIONAL_FN(sse_response_open);
    send_fn = APR_RETRIEVE_OPTIONAL_FN(sse_response_send);
    comment_fn = APR_RETRIEVE_OPTIONAL_FN(sse_response_comment);
    wait_fn = APR_RETRIEVE_OPTIONAL_FN(sse_response_wait);
    close_fn = APR_RETRIEVE_OPTIONAL_FN(sse_response_close);
}

/* The value of a query parameter (not decoded: the example's values are
 * numbers and channel names), or NULL. */
static const char *param(request_rec *r, const char *name)
{
    apr_size_t n = strlen(name);
    const char *p = r->args;
    while (p && *p) {
        if (!strncmp(p, name, n) && p[n] == '=') {
            return apr_pstrndup(r->pool, p + n + 1, strcspn(p + n + 1, "&"));
        }
        p = strchr(p, '&');
        if (p) p++;
    }
    return NULL;
}

static const char *why(apr_status_t rv)
{
    return rv == APR_TIMEUP ? "done"
         : rv == APR_ECONNABORTED ? "client gone"
         : rv == APR_EOF ? "channel deleted"
         : rv == APR_EINTR ? "server restarting"
         : "write error";
}

static int example_handler(request_rec *r)
{
    const char *channel = param(r, "channel"), *v;
    int ticks = (v = param(r, "ticks")) ? atoi(v) : 3;
    int every_ms = (v = param(r, "every")) ? atoi(v) : 200;
    int hold = param(r, "hold") != NULL, i;
    sse_response *s;
    apr_status_t rv;
    sse_response_event hello[2] = {
        { "hello", NULL, "batch one", 9 },
        { "hello", NULL, "batch two\nsecond line", 21 },
    };

    if (!r->handler || strcmp(r->handler, "sse-example")) return DECLINED;
    if (r->method_number != M_GET) return HTTP_METHOD_NOT_ALLOWED;
    if (!open_fn) return HTTP_SERVICE_UNAVAILABLE;     /* no mod_sse */

    rv = open_fn(r, channel ? &channel : NULL, channel ? 1 : 0, &s);
    if (rv == APR_EOF) return OK;                      /* HEAD */
    if (rv == APR_EAGAIN) return HTTP_SERVICE_UNAVAILABLE;
    if (rv != APR_SUCCESS) return HTTP_BAD_REQUEST;

    rv = send_fn(s, hello, 2);                         /* one write */
    if (rv == APR_SUCCESS) rv = comment_fn(s, "from mod_sse_example");
    if (rv == APR_SUCCESS && param(r, "bad")) {
        /* event types starting with sse- are mod_sse's own */
        sse_response_event forged = { "sse-reset", NULL, "x", 1 };
        apr_status_t refused = send_fn(s, &forged, 1);
        rv = comment_fn(s, apr_psprintf(r->pool, "forged event refused: %s",
                                        refused == APR_EINVAL ? "EINVAL"
                                        : "no"));
    }
    for (i = 1; rv == APR_SUCCESS && i <= ticks; i++) {
        /* channel events and keepalives go out while we wait */
        if ((rv = wait_fn(s, apr_time_from_msec(every_ms))) == APR_TIMEUP) {
            /* nothing per event on r->pool: a stream may run for days */
            char data[32];
            int len = apr_snprintf(data, sizeof(data), "tick %d \xc3\xa9", i);
            sse_response_event tick = { "tick", NULL, data, (apr_size_t)len };
            rv = send_fn(s, &tick, 1);
        }
    }
    while (hold && (rv == APR_SUCCESS || rv == APR_TIMEUP)) {
        rv = wait_fn(s, apr_time_from_sec(1));
    }
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                  "mod_sse_example: stream ended (%s)",
                  why(rv == APR_SUCCESS ? APR_TIMEUP : rv));
    close_fn(s);
    return OK;
}

static void register_hooks(apr_pool_t *p)
{
    (void)p;
    ap_hook_optional_fn_retrieve(retrieve, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(example_handler, NULL, NULL, APR_HOOK_MIDDLE);
}

AP_DECLARE_MODULE(sse_example) = {
    STANDARD20_MODULE_STUFF, NULL, NULL, NULL, NULL, NULL, register_hooks,
    AP_MODULE_FLAG_NONE
};
