/* sse_access.c - who may use a stream or the admin API beyond the
 * location's own Require.
 *
 * Channels: a stream names its channels in its path and query, so the
 * location's Require alone would make a channel only as private as the most
 * open stream location. Each channel is therefore asked of httpd itself, as
 * the URL <location>/<channel>, through a subrequest: whatever the admin
 * wrote for that URL (Require, Auth*, <Location>, <LocationMatch>, <If>)
 * decides, however the query was spelt.
 *
 * Browsers: a page on another site can send simple POSTs without a CORS
 * preflight, and DNS rebinding makes it look same-origin, so the admin API
 * refuses requests whose Origin or Sec-Fetch-Site show another site and
 * requests for a Host that is not a name of this server. CORS answers for
 * streams (and preflights, which carry no credentials and so are answered
 * before access control) go only to origins the admin listed.
 *
 * Tokens in the query string: EventSource cannot send headers, so a token
 * may come as ?authorization=; it is cut out of the request line and query
 * at translate_name, before any log or status page can show it.
 */
#include <arpa/inet.h>

#include "apr_strings.h"
#include "apr_lib.h"
#include "http_core.h"
#include "http_protocol.h"
#include "http_request.h"
#include "util_cookies.h"

#include "sse_private.h"
#include "sse_config.h"
#include "sse_location.h"
#include "sse_query.h"
#include "sse_jwt.h"
#include "sse_access.h"

#define TOKEN_PARAM "authorization"
#define TOKEN_SHOWN "redacted"

int sse_access_check_channels(request_rec *r, const char *base,
                              const apr_array_header_t *names,
                              const char **refused)
{
    int i;
    for (i = 0; i < names->nelts; i++) {
        const char *name = APR_ARRAY_IDX(names, i, const char *);
        const char *uri = apr_pstrcat(r->pool, base, "/", name, NULL);
        request_rec *rr;
        int status;
        if (!strcmp(uri, r->uri)) continue;   /* already decided */
        rr = ap_sub_req_lookup_uri(uri, r, NULL);
        status = rr->status;
        if (status != HTTP_OK) {
            const char *h;
            if ((h = apr_table_get(rr->err_headers_out, "WWW-Authenticate"))) {
                apr_table_setn(r->err_headers_out, "WWW-Authenticate",
                               apr_pstrdup(r->pool, h));
            }
            ap_destroy_sub_req(rr);
            *refused = name;
            ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, SSE_LOGNO(00301)
                          "channel '%s' refused (%d) by the access rules "
                          "of %s", name, status, uri);
            return status;
        }
        ap_destroy_sub_req(rr);
    }
    return OK;
}

/* ---------------------------------------------------------------- origins */

/* "scheme://host[:port]" of this request, lower case, default port
 * dropped, as a browser writes it in Origin. */
static const char *own_origin(request_rec *r)
{
    const char *scheme = ap_http_scheme(r);
    const char *host = apr_table_get(r->headers_in, "Host");
    if (!host) host = r->hostname ? r->hostname : "";
    return apr_pstrcat(r->pool, scheme, "://", host, NULL);
}

typedef enum {
    ORIGIN_NOT_ALLOWED = 0,
    ORIGIN_ANY,          /* listed as "*": no credentials */
    ORIGIN_LISTED        /* listed by name: credentials too */
} origin_grant;

static origin_grant cors_grant(request_rec *r, const char *origin)
{
    const sse_dir_conf *dc = sse_config_dir(r);
    const char *want;
    int i, any = 0;
    if (!dc || !dc->cors_origins || !origin) return ORIGIN_NOT_ALLOWED;
    want = sse_origin_canonical(r->pool, origin);
    for (i = 0; i < dc->cors_origins->nelts; i++) {
        const char *o = APR_ARRAY_IDX(dc->cors_origins, i, const char *);
        if (!strcmp(o, "*")) any = 1;
        else if (!strcmp(o, want)) return ORIGIN_LISTED;
    }
    return any ? ORIGIN_ANY : ORIGIN_NOT_ALLOWED;
}

static void set_cors(request_rec *r, const char *origin, origin_grant g)
{
    apr_table_t *t = r->err_headers_out;   /* errors too: a page may read
                                              why it was refused */
    apr_table_mergen(t, "Vary", "Origin");
    if (g == ORIGIN_LISTED) {
        apr_table_setn(t, "Access-Control-Allow-Origin", origin);
        apr_table_setn(t, "Access-Control-Allow-Credentials", "true");
    }
    else if (g == ORIGIN_ANY) {
        apr_table_setn(t, "Access-Control-Allow-Origin", "*");
    }
}

void sse_access_cors_headers(request_rec *r)
{
    const char *origin = apr_table_get(r->headers_in, "Origin");
    origin_grant g = cors_grant(r, origin);
    if (g != ORIGIN_NOT_ALLOWED) set_cors(r, origin, g);
}

static int is_ip_literal(request_rec *r, const char *host)
{
    unsigned char buf[16];
    apr_size_t n = strlen(host);
    if (n > 2 && host[0] == '[' && host[n - 1] == ']') {
        host = apr_pstrmemdup(r->pool, host + 1, n - 2);
    }
    return inet_pton(AF_INET, host, buf) == 1
           || inet_pton(AF_INET6, host, buf) == 1;
}

/* ServerName or a ServerAlias of the request's virtual host. */
static int is_server_name(request_rec *r, const char *host)
{
    const server_rec *s = r->server;
    int i;
    if (s->server_hostname && !strcasecmp(host, s->server_hostname)) {
        return 1;
    }
    for (i = 0; s->names && i < s->names->nelts; i++) {
        if (!strcasecmp(host, APR_ARRAY_IDX(s->names, i, const char *))) {
            return 1;
        }
    }
    for (i = 0; s->wild_names && i < s->wild_names->nelts; i++) {
        if (!ap_strcasecmp_match(host,
                                 APR_ARRAY_IDX(s->wild_names, i, const char *))) {
            return 1;
        }
    }
    return 0;
}

const char *sse_access_admin_origin(request_rec *r)
{
    const char *origin = apr_table_get(r->headers_in, "Origin");
    const char *site = apr_table_get(r->headers_in, "Sec-Fetch-Site");
    origin_grant g = cors_grant(r, origin);

    if (r->hostname && !is_ip_literal(r, r->hostname)
        && strcasecmp(r->hostname, "localhost")
        && !is_server_name(r, r->hostname)) {
        return apr_psprintf(r->pool, "host '%s' is not a name of this "
                            "server (ServerName, ServerAlias or an IP "
                            "address)", r->hostname);
    }
    if (g != ORIGIN_NOT_ALLOWED) {
        set_cors(r, origin, g);
        return NULL;
    }
    if (site && strcasecmp(site, "same-origin") && strcasecmp(site, "none")) {
        return "a page on another site may not use the admin API "
               "(Sec-Fetch-Site); list its origin in SSECorsOrigins";
    }
    if (origin && strcmp(sse_origin_canonical(r->pool, origin),
                         sse_origin_canonical(r->pool, own_origin(r)))) {
        return "a page on another origin may not use the admin API "
               "(Origin); list it in SSECorsOrigins";
    }
    return NULL;
}

/* CORS before access control. Preflights carry no credentials, so they
 * are answered here, before access control would ask for them; only for
 * listed origins, and they give away nothing but the CORS policy. */
static int cors_before_access(request_rec *r)
{
    const char *origin = apr_table_get(r->headers_in, "Origin");
    const sse_location *loc;
    origin_grant g;
    int admin;

    loc = sse_location_of(r);
    if (!origin || !loc->handler) return DECLINED;
    if (r->method_number != M_OPTIONS
        || !apr_table_get(r->headers_in, "Access-Control-Request-Method")) {
        /* from here on, so that a listed page can read why a stream was
         * refused (401, 403, 400, 405) as well as the stream itself; the
         * admin API sets them once the request passed its origin checks */
        if (!strcmp(loc->handler, SSE_HANDLER_STREAM)) {
            sse_access_cors_headers(r);
        }
        return DECLINED;
    }
    if (!(g = cors_grant(r, origin))) return DECLINED;
    admin = !strcmp(loc->handler, SSE_HANDLER_ADMIN);
    set_cors(r, origin, g);
    apr_table_setn(r->err_headers_out, "Access-Control-Allow-Methods",
                   admin ? "GET, POST, DELETE" : "GET");
    apr_table_setn(r->err_headers_out, "Access-Control-Allow-Headers",
                   admin ? "Authorization, Content-Type, SSE-Event, "
                           "SSE-Retry, Last-Event-ID"
                         : "Last-Event-ID, Authorization");
    apr_table_setn(r->err_headers_out, "Access-Control-Max-Age", "600");
    r->status = HTTP_NO_CONTENT;
    return DONE;
}

/* ----------------------------------------------------------------- tokens */

/* s with its query (the text after '?' up to a space or the end) made
 * query instead. */
static char *with_query(apr_pool_t *p, const char *s, const char *query)
{
    const char *q, *after;
    if (!s || !(q = strchr(s, '?'))) return (char *)s;
    after = q + 1 + strcspn(q + 1, " ");
    return apr_pstrcat(p, apr_pstrmemdup(p, s, (apr_size_t)(q + 1 - s)),
                       query, after, NULL);
}

/* Non-zero when the raw name of a name=value pair decodes to the token
 * parameter's name ("%61uthorization" is "authorization"). */
static int names_token(apr_pool_t *p, const char *pair, apr_size_t name_len)
{
    apr_array_header_t *one;
    /* each decoded byte takes 1 to 3 raw ones */
    if (name_len < sizeof(TOKEN_PARAM) - 1
        || name_len > 3 * (sizeof(TOKEN_PARAM) - 1)) {
        return 0;
    }
    one = sse_query_parse(p, apr_pstrmemdup(p, pair, name_len));
    return one && one->nelts == 1
           && sse_query_is(&APR_ARRAY_IDX(one, 0, sse_query_param),
                           TOKEN_PARAM);
}

/* Takes ?authorization= out of everything a log or status page shows,
 * keeping its decoded value for sse_access_token: every pair whose name
 * decodes to it, however spelled, decodable value or not. */
static int take_query_token(request_rec *r)
{
    const char *s = r->args;
    const sse_query_param *qp;
    apr_array_header_t *params;
    apr_size_t pairs = 1, i;
    char *shown, *out;
    int redacted = 0;

    if (!s || !*s || !sse_location_of(r)->handler) return DECLINED;
    params = sse_query_parse(r->pool, s);
    if (params && (qp = sse_query_get(params, TOKEN_PARAM))) {
        sse_request_state_get(r)->query_token = qp->value;
    }
    for (i = 0; s[i]; i++) pairs += s[i] == '&';
    out = shown = apr_palloc(r->pool, strlen(s) + 1
                                      + pairs * sizeof(TOKEN_SHOWN));
    while (*s) {
        apr_size_t pair_len = strcspn(s, "&");
        apr_size_t name_len = strcspn(s, "=&");
        apr_size_t value_len = pair_len - name_len - (name_len < pair_len);
        const char *value = s + name_len + 1;
        if (value_len > 0
            && !(value_len == sizeof(TOKEN_SHOWN) - 1
                 && !memcmp(value, TOKEN_SHOWN, value_len))
            && names_token(r->pool, s, name_len)) {
            memcpy(out, s, name_len + 1);
            memcpy(out + name_len + 1, TOKEN_SHOWN, sizeof(TOKEN_SHOWN) - 1);
            out += name_len + sizeof(TOKEN_SHOWN);
            redacted = 1;
        }
        else {
            memcpy(out, s, pair_len);
            out += pair_len;
        }
        if (s[pair_len] == '&') *out++ = '&';
        s += pair_len + (s[pair_len] == '&');
    }
    *out = '\0';
    if (redacted) {
        r->the_request = with_query(r->pool, r->the_request, shown);
        r->unparsed_uri = with_query(r->pool, r->unparsed_uri, shown);
        r->args = shown;
        r->parsed_uri.query = shown;
    }
    return DECLINED;
}

const char *sse_access_token(request_rec *r, const char *cookie_name)
{
    const char *h = apr_table_get(r->headers_in, "Authorization");
    const char *cookie;
    if (h && !strncasecmp(h, "Bearer ", 7)) {
        for (h += 7; *h == ' '; h++) ;
        return h;
    }
    if (cookie_name
        && ap_cookie_read(r, cookie_name, &cookie, 0) == APR_SUCCESS
        && cookie && *cookie) {
        return cookie;
    }
    return sse_request_state_get(r)->query_token;
}

int sse_access_token_claims(request_rec *r, sse_jwt_claims *claims)
{
    const sse_dir_conf *dc = sse_config_dir(r);
    const char *token, *why;
    if (!dc || !dc->token_key) return DECLINED;
    token = sse_access_token(r, sse_config_token_cookie(dc));
    why = !token || !*token ? "no token in the request"
        : sse_jwt_verify(r->pool, dc->token_key, token, strlen(token),
                         (apr_int64_t)apr_time_sec(apr_time_now()),
                         dc->token_audience, claims);
    if (why) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, SSE_LOGNO(00302)
                      "token refused: %s", why);
        apr_table_setn(r->err_headers_out, "WWW-Authenticate",
                       token && *token
                       ? "Bearer realm=\"sse\", error=\"invalid_token\""
                       : "Bearer realm=\"sse\"");
        return HTTP_UNAUTHORIZED;
    }
    if (!r->user && claims->subject) {
        r->user = apr_pstrdup(r->pool, claims->subject);
    }
    return OK;
}

int sse_access_token_grants(const apr_array_header_t *patterns,
                            const char *channel)
{
    int i;
    if (channel) return sse_jwt_allows(patterns, channel);
    for (i = 0; patterns && i < patterns->nelts; i++) {
        if (!strcmp(APR_ARRAY_IDX(patterns, i, const char *), "*")) return 1;
    }
    return 0;
}

void sse_access_register_hooks(void)
{
    ap_hook_translate_name(take_query_token, NULL, NULL, APR_HOOK_FIRST);
    ap_hook_header_parser(cors_before_access, NULL, NULL, APR_HOOK_FIRST);
}
