/* mod_sse_test.c - test-only module: GET /test-publish?channel=&event=&data= publishes through mod_sse's optional sse_publish (mod_sse.h) and answers JSON. */
#include "httpd.h"
#include "http_config.h"
#include "http_protocol.h"
#include "http_log.h"
#include "apr_strings.h"

#include "mod_sse.h"

module AP_MODULE_DECLARE_DATA sse_test_module;

static APR_OPTIONAL_FN_TYPE(sse_publish) *sse_publish_fn;

static void sse_test_retrieve(void)
{
    sse_publish_fn = APR_RETRIEVE_OPTIONAL_FN(sse_publish);
}

/* Returns the decoded value of query parameter name, or NULL when absent. */
static const char *query_param(request_rec *r, const char *name)
{
    char *args, *pair, *state = NULL;
    apr_size_t nlen = strlen(name);

    if (r->args == NULL) {
        return NULL;
    }
    args = apr_pstrdup(r->pool, r->args);
    for (pair = apr_strtok(args, "&", &state); pair != NULL;
         pair = apr_strtok(NULL, "&", &state)) {
        if (strncmp(pair, name, nlen) == 0
            && (pair[nlen] == '=' || pair[nlen] == '\0')) {
            char *value = pair[nlen] == '=' ? pair + nlen + 1 : pair + nlen;
            if (ap_unescape_urlencoded(value) != OK) {
                return NULL;
            }
            return value;
        }
    }
    return NULL;
}

static int sse_test_handler(request_rec *r)
{
    const char *channel, *event, *data;
    apr_uint64_t id = 0;
    int subscribers = -1;
    apr_status_t rv;

    if (r->handler == NULL || strcmp(r->handler, "sse-test-publish") != 0) {
        return DECLINED;
    }
    if (r->method_number != M_GET) {
        r->allowed = (AP_METHOD_BIT << M_GET);
        return HTTP_METHOD_NOT_ALLOWED;
    }
    ap_set_content_type(r, "application/json");
    if (sse_publish_fn == NULL) {
        r->status = HTTP_INTERNAL_SERVER_ERROR;
        ap_rputs("{\"error\":\"sse_publish not available\"}", r);
        return OK;
    }
    channel = query_param(r, "channel");
    event = query_param(r, "event");
    data = query_param(r, "data");
    if (channel == NULL) {
        channel = "";
    }
    if (data == NULL) {
        data = "";
    }
    rv = sse_publish_fn(channel, event, data, strlen(data), &id, &subscribers);
    ap_log_rerror(APLOG_MARK, APLOG_INFO, rv, r,
                  "mod_sse_test: sse_publish(%s) returned %d", channel, rv);
    ap_rprintf(r, "{\"rv\":%d,\"id\":\"%" APR_UINT64_T_FMT "\",\"subscribers\":%d}",
               (int)rv, id, subscribers);
    return OK;
}

static void sse_test_register_hooks(apr_pool_t *p)
{
    (void)p;
    ap_hook_optional_fn_retrieve(sse_test_retrieve, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(sse_test_handler, NULL, NULL, APR_HOOK_MIDDLE);
}

AP_DECLARE_MODULE(sse_test) = {
    STANDARD20_MODULE_STUFF,
    NULL, NULL, NULL, NULL, NULL,
    sse_test_register_hooks,
    AP_MODULE_FLAG_NONE
};
