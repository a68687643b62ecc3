/* sse_config.c - mod_sse's directives: parsing, range checks with errors
 * that say what is wrong, defaults, and merging of per-location settings.
 *
 * Store settings (memory size, channel count, history, limits) shape one
 * shared-memory segment for the whole server, so they are accepted in the
 * main server only; per-location settings shape individual streams.
 */
#include "apr_strings.h"
#include "apr_lib.h"
#include "http_core.h"

#include "sse_private.h"
#include "sse_config.h"
#include "sse_event.h"
#include "sse_jwt.h"

void *sse_create_server_conf(apr_pool_t *p, server_rec *s)
{
    sse_server_conf *conf = apr_pcalloc(p, sizeof(*conf));
    (void)s;
    conf->shm_size = SSE_DEFAULT_SHM_SIZE;
    conf->max_channels = SSE_DEFAULT_MAX_CHANNELS;
    conf->history_size = SSE_DEFAULT_HISTORY_SIZE;
    conf->history_max_age = 0;
    conf->max_message_size = SSE_DEFAULT_MAX_MESSAGE;
    conf->max_subscribers = 0;
    conf->max_per_channel = 0;
    conf->max_pending = SSE_DEFAULT_MAX_PENDING;
    return conf;
}

void *sse_create_dir_conf(apr_pool_t *p, char *dir)
{
    (void)dir;
    sse_dir_conf *conf = apr_pcalloc(p, sizeof(*conf));
    conf->channels = NULL;
    conf->autocreate = -1;
    conf->retry_ms = -1;
    conf->keepalive_sec = -1;
    conf->hand_off = -1;
    conf->filter_mode = -1;
    return conf;
}

#define SSE_MERGE(field, unset) \
    (add->field != (unset) ? add->field : base->field)

void *sse_merge_dir_conf(apr_pool_t *p, void *basev, void *addv)
{
    const sse_dir_conf *base = basev, *add = addv;
    sse_dir_conf *conf = apr_pcalloc(p, sizeof(*conf));
    conf->channels = add->channels ? add->channels : base->channels;
    conf->cors_origins = add->cors_origins ? add->cors_origins
                                           : base->cors_origins;
    conf->token_key = add->token_key ? add->token_key : base->token_key;
    conf->token_audience = add->token_audience ? add->token_audience
                                               : base->token_audience;
    conf->token_cookie = add->token_cookie ? add->token_cookie
                                           : base->token_cookie;
    conf->autocreate = SSE_MERGE(autocreate, -1);
    conf->retry_ms = SSE_MERGE(retry_ms, -1);
    conf->keepalive_sec = SSE_MERGE(keepalive_sec, -1);
    conf->hand_off = SSE_MERGE(hand_off, -1);
    conf->filter_mode = SSE_MERGE(filter_mode, -1);
    conf->filter_event = add->filter_event ? add->filter_event
                                           : base->filter_event;
    return conf;
}

const sse_server_conf *sse_config_server(const server_rec *s)
{
    return ap_get_module_config(s->module_config, &sse_module);
}

const sse_dir_conf *sse_config_dir(const request_rec *r)
{
    return ap_get_module_config(r->per_dir_config, &sse_module);
}

int sse_config_autocreate(const sse_dir_conf *dc)
{
    return dc->autocreate != 0;
}

int sse_config_hand_off(const sse_dir_conf *dc)
{
    return dc->hand_off != 0;
}

int sse_config_keepalive(const sse_dir_conf *dc)
{
    return dc->keepalive_sec >= 0 ? dc->keepalive_sec
                                  : SSE_DEFAULT_KEEPALIVE_SEC;
}

const char *sse_config_token_cookie(const sse_dir_conf *dc)
{
    return dc->token_cookie ? dc->token_cookie : SSE_DEFAULT_TOKEN_COOKIE;
}

/* Parses a non-negative integer that fits in max; NULL on success. */
static const char *parse_count(cmd_parms *cmd, const char *arg,
                               apr_int64_t min, apr_int64_t max,
                               apr_int64_t *out)
{
    char *end;
    apr_int64_t v;
    if (!apr_isdigit(*arg)) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a number",
                            cmd->cmd->name, arg);
    }
    v = apr_strtoi64(arg, &end, 10);
    if (*end || v < min || v > max) {
        return apr_psprintf(cmd->pool, "%s: '%s' must be a whole number "
                            "from %" APR_INT64_T_FMT " to %" APR_INT64_T_FMT,
                            cmd->cmd->name, arg, min, max);
    }
    *out = v;
    return NULL;
}

/* Parses a byte size with an optional K, M or G suffix. */
static const char *parse_size(cmd_parms *cmd, const char *arg,
                              apr_int64_t min, apr_int64_t max,
                              apr_int64_t *out)
{
    char *end;
    apr_int64_t v, mult = 1;
    if (!apr_isdigit(*arg)) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a size (e.g. 64K, "
                            "32M)", cmd->cmd->name, arg);
    }
    v = apr_strtoi64(arg, &end, 10);
    switch (apr_toupper(*end)) {
    case 'K': mult = 1024; end++; break;
    case 'M': mult = 1024 * 1024; end++; break;
    case 'G': mult = 1024 * 1024 * 1024; end++; break;
    default: break;
    }
    if (*end || v > max / mult || v * mult < min) {
        return apr_psprintf(cmd->pool, "%s: '%s' must be a size from "
                            "%" APR_INT64_T_FMT " to %" APR_INT64_T_FMT
                            " bytes (K, M, G suffixes allowed)",
                            cmd->cmd->name, arg, min, max);
    }
    *out = v * mult;
    return NULL;
}

static sse_server_conf *main_conf(cmd_parms *cmd)
{
    return ap_get_module_config(cmd->server->module_config, &sse_module);
}

static const char *set_shm_size(cmd_parms *cmd, void *dc, const char *arg)
{
    apr_int64_t v;
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    (void)dc;
    if (err) return err;
    if ((err = parse_size(cmd, arg, SSE_MIN_SHM_SIZE,
                          (apr_int64_t)64 * 1024 * 1024 * 1024, &v))) {
        return err;
    }
    main_conf(cmd)->shm_size = (apr_size_t)v;
    return NULL;
}

static const char *set_max_message(cmd_parms *cmd, void *dc, const char *arg)
{
    apr_int64_t v;
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    (void)dc;
    if (err) return err;
    if (!strcasecmp(cmd->cmd->name, "SSEMaxPendingBytes")) {
        if ((err = parse_size(cmd, arg, 4096, 64 * 1024 * 1024, &v))) {
            return err;
        }
        main_conf(cmd)->max_pending = (apr_size_t)v;
        return NULL;
    }
    if ((err = parse_size(cmd, arg, 1, 64 * 1024 * 1024, &v))) return err;
    main_conf(cmd)->max_message_size = (apr_size_t)v;
    return NULL;
}

static const char *set_server_count(cmd_parms *cmd, void *dc, const char *arg)
{
    apr_int64_t v;
    sse_server_conf *conf;
    const char *name = cmd->cmd->name;
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    (void)dc;
    if (err) return err;
    conf = main_conf(cmd);
    if (!strcasecmp(name, "SSEMaxChannels")) {
        if ((err = parse_count(cmd, arg, 1, 1000000, &v))) return err;
        conf->max_channels = (apr_uint32_t)v;
    }
    else if (!strcasecmp(name, "SSEHistorySize")) {
        if ((err = parse_count(cmd, arg, 1, 1000000, &v))) return err;
        conf->history_size = (apr_uint32_t)v;
    }
    else if (!strcasecmp(name, "SSEHistoryMaxAge")) {
        if ((err = parse_count(cmd, arg, 0, 10 * 365 * 86400, &v))) return err;
        conf->history_max_age = apr_time_from_sec(v);
    }
    else if (!strcasecmp(name, "SSEMaxSubscribers")) {
        if ((err = parse_count(cmd, arg, 1, 10000000, &v))) return err;
        conf->max_subscribers = (int)v;
    }
    else if (!strcasecmp(name, "SSEMaxStreamsPerClient")) {
        if ((err = parse_count(cmd, arg, 1, 10000000, &v))) return err;
        conf->max_per_client = (int)v;
    }
    else {
        if ((err = parse_count(cmd, arg, 0, 10000000, &v))) return err;
        conf->max_per_channel = (int)v;
    }
    return NULL;
}

static const char *set_channel(cmd_parms *cmd, void *dcv, const char *arg)
{
    sse_dir_conf *dc = dcv;
    sse_channel_pin *pin;
    const char *why;
    if (!cmd->path) {
        return "SSEChannel belongs in a <Location> section";
    }
    if (!dc->channels) {
        dc->channels = apr_array_make(cmd->pool, 2, sizeof(sse_channel_pin));
    }
    if (dc->channels->nelts >= SSE_MAX_STREAM_CHANNELS) {
        return apr_psprintf(cmd->pool, "SSEChannel: at most %d channels per "
                            "location", SSE_MAX_STREAM_CHANNELS);
    }
    pin = apr_array_push(dc->channels);
    pin->text = arg;
    pin->expr = NULL;
    if (!strstr(arg, "%{")) {
        if ((why = sse_channel_name_problem(arg, strlen(arg)))) {
            return apr_psprintf(cmd->pool, "SSEChannel: '%s' %s", arg, why);
        }
        return NULL;
    }
    pin->expr = ap_expr_parse_cmd(cmd, arg, AP_EXPR_FLAG_STRING_RESULT, &why,
                                  NULL);
    if (why) {
        return apr_psprintf(cmd->pool, "SSEChannel: cannot parse '%s' as an "
                            "expression: %s", arg, why);
    }
    return NULL;
}

char *sse_origin_canonical(apr_pool_t *p, const char *origin)
{
    char *o = apr_pstrdup(p, origin);
    char *port = ap_strrchr(o, ':');
    ap_str_tolower(o);
    /* the scheme's own colon is not a port */
    if (port && port[1] != '/'
        && ((!strncmp(o, "http://", 7) && !strcmp(port, ":80"))
            || (!strncmp(o, "https://", 8) && !strcmp(port, ":443")))) {
        *port = '\0';
    }
    return o;
}

static const char *set_cors_origins(cmd_parms *cmd, void *dcv,
                                    const char *arg)
{
    sse_dir_conf *dc = dcv;
    char *o = sse_origin_canonical(cmd->pool, arg);
    const char *host = !strncmp(o, "http://", 7) ? o + 7
                     : !strncmp(o, "https://", 8) ? o + 8 : NULL;
    if (strcmp(o, "*") && (!host || !*host || strpbrk(host, "/?#@ "))) {
        return apr_psprintf(cmd->pool, "SSECorsOrigins: '%s' is not an "
                            "origin: write scheme://host[:port] (no path, no "
                            "trailing slash) or *", arg);
    }
    if (!dc->cors_origins) {
        dc->cors_origins = apr_array_make(cmd->pool, 2, sizeof(char *));
    }
    APR_ARRAY_PUSH(dc->cors_origins, const char *) = o;
    return NULL;
}

/* The key is read now, so that "apachectl configtest" reports a missing
 * file, a short secret or the wrong kind of key. */
static const char *set_token_key(cmd_parms *cmd, void *dcv, const char *alg,
                                 const char *file)
{
    sse_dir_conf *dc = dcv;
    sse_jwt_key *key;
    const char *why, *path;
    sse_jwt_alg a = sse_jwt_alg_parse(alg);
    if (!a) {
        return apr_psprintf(cmd->pool, "SSETokenKey: algorithm '%s' is not "
                            "one of HS256, RS256, ES256", alg);
    }
    if (!(path = ap_server_root_relative(cmd->pool, file))) {
        return apr_psprintf(cmd->pool, "SSETokenKey: bad path '%s'", file);
    }
    if ((why = sse_jwt_key_load(cmd->pool, a, path, &key))) {
        return apr_pstrcat(cmd->pool, "SSETokenKey: ", why, NULL);
    }
    dc->token_key = key;
    return NULL;
}

static const char *set_token_string(cmd_parms *cmd, void *dcv,
                                    const char *arg)
{
    sse_dir_conf *dc = dcv;
    if (!strcasecmp(cmd->cmd->name, "SSETokenCookie")) {
        if (!*arg || strpbrk(arg, "=;, \t")) {
            return apr_psprintf(cmd->pool, "SSETokenCookie: '%s' is not a "
                                "cookie name", arg);
        }
        dc->token_cookie = arg;
    }
    else {
        dc->token_audience = arg;
    }
    return NULL;
}

static const char *set_flag(cmd_parms *cmd, void *dcv, int on)
{
    sse_dir_conf *dc = dcv;
    if (!strcasecmp(cmd->cmd->name, "SSEHandOff")) dc->hand_off = on;
    else dc->autocreate = on;
    return NULL;
}

static const char *set_retry(cmd_parms *cmd, void *dcv, const char *arg)
{
    apr_int64_t v;
    const char *err = parse_count(cmd, arg, 0, 86400000, &v);
    if (err) return err;
    ((sse_dir_conf *)dcv)->retry_ms = (int)v;
    return NULL;
}

static const char *set_keepalive(cmd_parms *cmd, void *dcv, const char *arg)
{
    apr_int64_t v;
    const char *err = parse_count(cmd, arg, 0, 3600, &v);
    if (err) return err;
    ((sse_dir_conf *)dcv)->keepalive_sec = (int)v;
    return NULL;
}

static const char *set_filter_mode(cmd_parms *cmd, void *dcv,
                                   const char *arg)
{
    if (!strcasecmp(arg, "lines")) {
        ((sse_dir_conf *)dcv)->filter_mode = SSE_FILTER_LINES;
    }
    else if (!strcasecmp(arg, "flush")) {
        ((sse_dir_conf *)dcv)->filter_mode = SSE_FILTER_FLUSH;
    }
    else {
        return apr_psprintf(cmd->pool, "SSEFilterMode: '%s' is neither Lines "
                            "(one event per line) nor Flush (one event per "
                            "flush of the generator)", arg);
    }
    return NULL;
}

static const char *set_filter_event(cmd_parms *cmd, void *dcv,
                                    const char *arg)
{
    const char *why = sse_event_type_problem(arg, strlen(arg));
    if (why) {
        return apr_psprintf(cmd->pool, "SSEFilterEvent: %s", why);
    }
    ((sse_dir_conf *)dcv)->filter_event = arg;
    return NULL;
}

static const char *set_redis(cmd_parms *cmd, void *dc, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    (void)dc;
    if (err) return err;
    if ((err = sse_redis_parse_url(cmd->pool, arg, &main_conf(cmd)->redis))) {
        return apr_psprintf(cmd->pool, "SSERedis %s: %s", arg, err);
    }
    return NULL;
}

const command_rec sse_cmds[] = {
    AP_INIT_TAKE1("SSESharedMemorySize", set_shm_size, NULL, RSRC_CONF,
                  "size of the shared-memory store, K/M/G suffixes "
                  "(main server; default 32M)"),
    AP_INIT_TAKE1("SSEMaxChannels", set_server_count, NULL, RSRC_CONF,
                  "channels the store can hold (main server; default 1024)"),
    AP_INIT_TAKE1("SSEHistorySize", set_server_count, NULL, RSRC_CONF,
                  "messages retained per channel, at least 1 "
                  "(main server; default 100)"),
    AP_INIT_TAKE1("SSEHistoryMaxAge", set_server_count, NULL, RSRC_CONF,
                  "seconds a message is retained, 0 = no limit "
                  "(main server; default 0)"),
    AP_INIT_TAKE1("SSEMaxMessageSize", set_max_message, NULL, RSRC_CONF,
                  "largest event data accepted, K/M suffixes "
                  "(main server; default 64K)"),
    AP_INIT_TAKE1("SSEMaxSubscribers", set_server_count, NULL, RSRC_CONF,
                  "open streams in the whole server (main server; default "
                  "MaxRequestWorkers minus 10%, at least 2 kept free)"),
    AP_INIT_TAKE1("SSEMaxSubscribersPerChannel", set_server_count, NULL,
                  RSRC_CONF, "subscribers per channel, 0 = no limit "
                  "(main server; default 0)"),
    AP_INIT_TAKE1("SSEMaxStreamsPerClient", set_server_count, NULL,
                  RSRC_CONF, "open streams one client address may hold "
                  "(main server; default 10% of SSEMaxSubscribers, at "
                  "least 16)"),
    AP_INIT_ITERATE("SSEChannel", set_channel, NULL, ACCESS_CONF,
                    "channel(s) a stream location always serves: names or "
                    "expressions such as \"user-%{REMOTE_USER}\" "
                    "(Location; repeatable)"),
    AP_INIT_ITERATE("SSECorsOrigins", set_cors_origins, NULL, ACCESS_CONF,
                    "origins (scheme://host[:port]) or * whose pages may use "
                    "this location from a browser (Location; default none)"),
    AP_INIT_TAKE2("SSETokenKey", set_token_key, NULL, RSRC_CONF | ACCESS_CONF,
                  "HS256|RS256|ES256 and the key file (secret, or PEM public "
                  "key): streams and the admin API then need a signed token "
                  "(server, Location; default none)"),
    AP_INIT_TAKE1("SSETokenAudience", set_token_string, NULL,
                  RSRC_CONF | ACCESS_CONF,
                  "the \"aud\" a token must name (server, Location; default "
                  "none: tokens naming an audience are refused)"),
    AP_INIT_TAKE1("SSETokenCookie", set_token_string, NULL,
                  RSRC_CONF | ACCESS_CONF,
                  "cookie that may carry the token (server, Location; "
                  "default sse_token)"),
    AP_INIT_FLAG("SSEHandOff", set_flag, NULL, RSRC_CONF | ACCESS_CONF,
                 "On: a plain HTTP/1.x stream leaves its worker thread for "
                 "the child's writer once caught up; Off: every stream "
                 "keeps its thread (server, directory; default On)"),
    AP_INIT_TAKE1("SSEMaxPendingBytes", set_max_message, NULL, RSRC_CONF,
                  "bytes a slow handed-off stream may owe before it is ended "
                  "to resume from history, K/M suffixes (main server; "
                  "default 64K)"),
    AP_INIT_FLAG("SSEAutoCreate", set_flag, NULL,
                 RSRC_CONF | ACCESS_CONF,
                 "On: subscribing creates unknown channels; Off: 404 "
                 "(server, directory; default On)"),
    AP_INIT_TAKE1("SSERetry", set_retry, NULL, RSRC_CONF | ACCESS_CONF,
                  "reconnection time in ms sent as retry: at stream start "
                  "(server, directory; default unset)"),
    AP_INIT_TAKE1("SSEKeepAlive", set_keepalive, NULL,
                  RSRC_CONF | ACCESS_CONF,
                  "seconds of silence before a keepalive comment, 0 = none "
                  "(server, directory; default 15)"),
    AP_INIT_TAKE1("SSERedis", set_redis, NULL, RSRC_CONF,
                  "redis://[user:password@]host:port[/db]: share channels, "
                  "history and ids with every server using the same Redis "
                  "(main server; default none)"),
    AP_INIT_TAKE1("SSEFilterMode", set_filter_mode, NULL,
                  RSRC_CONF | ACCESS_CONF | OR_FILEINFO,
                  "the SSE output filter makes one event per line (Lines) or "
                  "per flush of the generator (Flush) (server, directory, "
                  ".htaccess; default Lines)"),
    AP_INIT_TAKE1("SSEFilterEvent", set_filter_event, NULL,
                  RSRC_CONF | ACCESS_CONF | OR_FILEINFO,
                  "event type of the events the SSE output filter makes "
                  "(server, directory, .htaccess; default none: message)"),
    { NULL }
};
