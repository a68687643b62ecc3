/* sse_request.c - what a stream request asks for: its channels (checked
 * against httpd's access rules for each channel's URL and, with
 * SSETokenKey, against the token's grants), its last event id, and the
 * client address the per-client limit counts.
 */
#include <arpa/inet.h>

#include "apr_strings.h"
#include "http_protocol.h"
#include "http_request.h"

#include "sse_private.h"
#include "sse_config.h"
#include "sse_event.h"
#include "sse_query.h"
#include "sse_location.h"
#include "sse_jwt.h"
#include "sse_access.h"
#include "sse_request.h"

int sse_request_refuse(request_rec *r, int status, const char *msg)
{
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, SSE_LOGNO(00101)
                  "refusing stream (%d): %s", status, msg);
    r->status = status;
    ap_set_content_type(r, "text/plain; charset=utf-8");
    ap_rvputs(r, msg, "\n", NULL);
    return DONE;
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
        /* a decoded %00 would cut the id short and make "1%00junk" read
         * as 1: keep every byte, so that it is malformed as sent */
        if (memchr(qp->value, '\0', qp->value_len)) {
            return sse_printable(r->pool, qp->value, qp->value_len);
        }
        return qp->value;
    }
    return NULL;
}

/* The client's address as the per-client limit counts it (IPv4 mapped
 * into IPv6); NULL when it cannot be read. */
const unsigned char *sse_request_client_address(request_rec *r,
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
 * (bad names; answered here, DONE), 401/403 (httpd's rules for a channel's
 * URL, or an SSEChannel expression without a valid value). */
static int channels_allowed_by_httpd(request_rec *r,
                                     const apr_array_header_t *params,
                                     apr_array_header_t **names)
{
    const sse_dir_conf *dc = sse_config_dir(r);
    const sse_location *loc = sse_location_of(r);
    const char *why = NULL, *refused;

    if (dc->channels) {
        if (*loc->rest || sse_query_get(params, "channel")) {
            return sse_request_refuse(r, HTTP_BAD_REQUEST, "this location "
                                      "serves fixed channels (SSEChannel); "
                                      "no channel can be chosen here");
        }
        if (!(*names = pinned_channels(r, dc->channels, &why))) {
            ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, SSE_LOGNO(00107)
                          "stream refused: %s", why);
            return HTTP_FORBIDDEN;
        }
        return OK;
    }
    if (!(*names = requested_channels(r, loc->rest, params, &why))) {
        return sse_request_refuse(r, HTTP_BAD_REQUEST, why);
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
        || !sse_config_dir(r)->token_key) {
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

int sse_request_resolve(request_rec *r, sse_stream_request *req)
{
    apr_array_header_t *params = sse_query_parse(r->pool, r->args);
    int status;
    memset(req, 0, sizeof(*req));
    if (!params) {
        return sse_request_refuse(r, HTTP_BAD_REQUEST,
                                  "malformed query string");
    }
    if ((status = resolve_channels(r, params, &req->names)) != OK) {
        return status;
    }
    req->last_id = request_last_id(r, params);
    req->client = sse_request_client_address(r, req->client_buf);
    return OK;
}
