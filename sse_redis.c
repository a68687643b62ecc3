/* sse_redis.c - several servers sharing channels through Redis (SSERedis).
 *
 * Ids are assigned in one place: a publish runs one Lua script in Redis
 * that takes the next id (never below Redis's clock in microseconds, as a
 * local store's ids are), appends the events to the channel's stream
 * (sse:ch:<name>, trimmed to about SSEHistorySize) and PUBLISHes them on
 * sse:events. A script runs alone, so the order of the messages on
 * sse:events is the order of their ids.
 *
 * Each server generation forks one mirror process (like mod_cgid's
 * daemon). It subscribes to sse:events and copies every message into the
 * server's shared-memory store with its id, then wakes the children: all
 * delivery, replay and resume stays local. Whenever it (re)connects, it
 * first reads, in one MULTI/EXEC snapshot, what every channel's stream
 * holds after the store's newest id, so a restart of the server or of
 * Redis loses nothing the streams still hold. Messages it already has are
 * skipped (their ids are not new).
 *
 * Publishing while Redis cannot be reached fails with 503: a local-only
 * event would get an id the other servers never see.
 */
#include <errno.h>
#include <unistd.h>
#include <signal.h>
#include <stdlib.h>
#include <hiredis/hiredis.h>

#include "apr_strings.h"
#include "apr_thread_mutex.h"
#include "apr_signal.h"
#include "http_core.h"
#include "http_main.h"
#include "http_log.h"
#include "mpm_common.h"
#include "ap_mpm.h"

#include "sse_private.h"
#include "sse_config.h"
#include "sse_store.h"
#include "sse_notify.h"
#include "sse_event.h"
#include "sse_redis.h"

#define KEY_LAST     "sse:last_id"
#define KEY_CHANNELS "sse:channels"
#define KEY_EVENTS   "sse:events"
#define KEY_STREAM   "sse:ch:"
#define KEY_LOST_TOLD "sse:lost_told"

/* Seconds to wait for Redis to connect or answer a publish. */
#define PUBLISH_TIMEOUT_SEC 2
/* Between attempts of the mirror to reach Redis. */
#define RETRY_USEC 200000

/* KEYS: last-id key, channel set, the channel's stream, the events
 * channel. ARGV: channel, history size, history age in microseconds (0:
 * none), frames... Returns the first id. */
static const char publish_script[] =
    "local last = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
    "local t = redis.call('TIME')\n"
    "local id = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "if id <= last then id = last + 1 end\n"
    "local n = #ARGV - 3\n"
    "local parts = {ARGV[1], '\\n', string.format('%.0f', id), '\\n'}\n"
    "for i = 1, n do\n"
    "  local f = ARGV[3 + i]\n"
    "  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2],\n"
    "             string.format('%.0f-0', id + i - 1), 'f', f)\n"
    "  parts[#parts + 1] = tostring(#f) .. '\\n' .. f\n"
    "end\n"
    "local age = tonumber(ARGV[3])\n"
    "if age > 0 then\n"
    "  redis.call('XTRIM', KEYS[3], 'MINID', '~',\n"
    "             string.format('%.0f-0', id - age))\n"
    "end\n"
    "redis.call('SET', KEYS[1], string.format('%.0f', id + n - 1))\n"
    "redis.call('SADD', KEYS[2], ARGV[1])\n"
    "redis.call('PUBLISH', KEYS[4], table.concat(parts))\n"
    "return string.format('%.0f', id)\n";

/* KEYS: channel set, the channel's stream, the events channel. ARGV:
 * channel. Channel names never start with '!': the mirrors read this as a
 * delete. */
static const char delete_script[] =
    "redis.call('DEL', KEYS[2])\n"
    "redis.call('SREM', KEYS[1], ARGV[1])\n"
    "redis.call('PUBLISH', KEYS[3], '!delete\\n' .. ARGV[1])\n"
    "return 1\n";

/* ---- configuration ------------------------------------------------------ */

const char *sse_redis_parse_url(apr_pool_t *p, const char *url,
                                sse_redis_conf *out)
{
    const char *rest, *at, *slash, *colon;
    char *end;
    memset(out, 0, sizeof(*out));
    out->url = url;
    out->db = 0;
    if (!strncasecmp(url, "rediss://", 9)) {
        return "rediss:// (TLS) is not supported by this build: use "
               "redis:// on a private network, or a TLS tunnel";
    }
    if (strncasecmp(url, "redis://", 8)) {
        return "the URL must start with redis://";
    }
    rest = url + 8;
    if ((at = strrchr(rest, '@'))) {
        const char *userinfo = apr_pstrndup(p, rest, (apr_size_t)(at - rest));
        const char *c = strchr(userinfo, ':');
        if (c) {
            out->user = c > userinfo ? apr_pstrndup(p, userinfo,
                                        (apr_size_t)(c - userinfo)) : NULL;
            out->password = apr_pstrdup(p, c + 1);
        }
        else {
            out->password = userinfo;    /* redis://secret@host */
        }
        rest = at + 1;
    }
    slash = strchr(rest, '/');
    colon = strrchr(rest, ':');
    if (colon && slash && colon > slash) colon = NULL;
    out->host = apr_pstrndup(p, rest, (apr_size_t)((colon ? colon
                             : slash ? slash : rest + strlen(rest)) - rest));
    if (!*out->host) return "the URL names no host";
    out->port = 6379;
    if (colon) {
        long port = strtol(colon + 1, &end, 10);
        if (end == colon + 1 || (*end && *end != '/') || port < 1
            || port > 65535) {
            return "the port must be a number from 1 to 65535";
        }
        out->port = (int)port;
    }
    if (slash && slash[1]) {
        long db = strtol(slash + 1, &end, 10);
        if (*end || db < 0 || db > 100000) {
            return "the database after / must be a number";
        }
        out->db = (int)db;
    }
    return NULL;
}

/* ---- a connection -------------------------------------------------------- */

/* A connected, authenticated context with the database selected, or NULL
 * with *why set (from p). */
static redisContext *redis_open(apr_pool_t *p, const sse_redis_conf *rc,
                                int timeout_sec, const char **why)
{
    struct timeval tv = { timeout_sec, 0 };
    redisContext *ctx = redisConnectWithTimeout(rc->host, rc->port, tv);
    redisReply *r = NULL;
    if (!ctx || ctx->err) {
        *why = ctx ? apr_pstrdup(p, ctx->errstr) : "out of memory";
        if (ctx) redisFree(ctx);
        return NULL;
    }
    redisSetTimeout(ctx, tv);
    if (rc->password) {
        r = rc->user ? redisCommand(ctx, "AUTH %s %s", rc->user, rc->password)
                     : redisCommand(ctx, "AUTH %s", rc->password);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            *why = "Redis refused the password (AUTH)";
            goto fail;
        }
        freeReplyObject(r);
    }
    if (rc->db) {
        r = redisCommand(ctx, "SELECT %d", rc->db);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            *why = "Redis refused the database number (SELECT)";
            goto fail;
        }
        freeReplyObject(r);
    }
    return ctx;
fail:
    if (r) freeReplyObject(r);
    redisFree(ctx);
    return NULL;
}

/* ---- publishing (any child thread) -------------------------------------- */

static const sse_redis_conf *redis_conf;   /* NULL: no SSERedis */
static apr_thread_mutex_t *publish_lock;   /* one connection per child */
static redisContext *publish_ctx;

int sse_redis_enabled(void)
{
    return redis_conf != NULL;
}

/* Runs the publish script on ctx; NULL when the connection failed. */
static redisReply *publish_command(redisContext *ctx, apr_pool_t *p,
                                   const char *channel,
                                   const char *const *frames,
                                   const apr_size_t *lens, int n,
                                   apr_uint32_t history,
                                   apr_interval_time_t max_age)
{
    const char **argv = apr_palloc(p, sizeof(char *) * (apr_size_t)(n + 10));
    size_t *argl = apr_palloc(p, sizeof(size_t) * (apr_size_t)(n + 10));
    const char *key = apr_pstrcat(p, KEY_STREAM, channel, NULL);
    const char *h = apr_psprintf(p, "%u", history);
    const char *age = apr_psprintf(p, "%" APR_INT64_T_FMT,
                                   (apr_int64_t)max_age);
    int i, k = 0;
#define ARG(s, l) (argv[k] = (s), argl[k] = (l), k++)
    ARG("EVAL", 4);
    ARG(publish_script, sizeof(publish_script) - 1);
    ARG("4", 1);
    ARG(KEY_LAST, strlen(KEY_LAST));
    ARG(KEY_CHANNELS, strlen(KEY_CHANNELS));
    ARG(key, strlen(key));
    ARG(KEY_EVENTS, strlen(KEY_EVENTS));
    ARG(channel, strlen(channel));
    ARG(h, strlen(h));
    ARG(age, strlen(age));
    for (i = 0; i < n; i++) ARG(frames[i], lens[i]);
#undef ARG
    return redisCommandArgv(ctx, k, argv, argl);
}

/* Sends one command on ctx; NULL when the connection failed. */
typedef redisReply *command_fn(redisContext *ctx, apr_pool_t *p,
                               const void *arg);

/* Runs a command on this child's connection, connecting when needed; a
 * connection that broke since the last command gets one retry. The reply
 * (the caller frees it), or NULL with *why. */
static redisReply *child_command(apr_pool_t *p, command_fn *send,
                                 const void *arg, const char **why)
{
    redisReply *r = NULL;
    int attempt;
    apr_thread_mutex_lock(publish_lock);
    for (attempt = 0; attempt < 2 && !r; attempt++) {
        if (!publish_ctx
            && !(publish_ctx = redis_open(p, redis_conf, PUBLISH_TIMEOUT_SEC,
                                          why))) {
            *why = apr_psprintf(p, "Redis at %s:%d (SSERedis) is not "
                                "reachable: %s", redis_conf->host,
                                redis_conf->port, *why);
            break;
        }
        if (!(r = send(publish_ctx, p, arg))) {
            *why = "the connection to Redis broke during the command";
            redisFree(publish_ctx);
            publish_ctx = NULL;
        }
    }
    apr_thread_mutex_unlock(publish_lock);
    return r;
}

/* NULL when r is of the type the command answers with, else why not. */
static const char *reply_problem(apr_pool_t *p, const redisReply *r,
                                 int type, const char *what)
{
    if (r->type == type) return NULL;
    return r->type == REDIS_REPLY_ERROR
           ? apr_pstrcat(p, "Redis refused the ", what, ": ", r->str, NULL)
           : apr_pstrcat(p, "Redis answered the ", what, " unexpectedly",
                         NULL);
}

typedef struct {
    const char *channel;
    const char *const *frames;
    const apr_size_t *lens;
    int n;
    apr_uint32_t history;
    apr_interval_time_t max_age;
} publish_args;

static redisReply *send_publish(redisContext *ctx, apr_pool_t *p,
                                const void *arg)
{
    const publish_args *a = arg;
    return publish_command(ctx, p, a->channel, a->frames, a->lens, a->n,
                           a->history, a->max_age);
}

apr_status_t sse_redis_publish(apr_pool_t *p, const char *channel,
                               const char *const *frames,
                               const apr_size_t *lens, int n,
                               apr_uint32_t history,
                               apr_interval_time_t max_age,
                               apr_uint64_t *first_id, const char **why)
{
    publish_args a = { channel, frames, lens, n, history, max_age };
    redisReply *r;
    apr_status_t rv = APR_EGENERAL;

    *why = "Redis (SSERedis) is not available in this process";
    if (!publish_lock) return APR_ENOTIMPL;
    if (!(r = child_command(p, send_publish, &a, why))) return rv;
    if (!(*why = reply_problem(p, r, REDIS_REPLY_STRING, "publish"))) {
        if (sse_id_parse(r->str, first_id) == 0) rv = APR_SUCCESS;
        else *why = "Redis answered the publish unexpectedly";
    }
    freeReplyObject(r);
    return rv;
}

static redisReply *send_delete(redisContext *ctx, apr_pool_t *p,
                               const void *arg)
{
    const char *channel = arg;
    return redisCommand(ctx, "EVAL %s 3 %s %s %s %s", delete_script,
                        KEY_CHANNELS, apr_pstrcat(p, KEY_STREAM, channel,
                                                  NULL),
                        KEY_EVENTS, channel);
}

apr_status_t sse_redis_delete(apr_pool_t *p, const char *channel,
                              const char **why)
{
    redisReply *r;
    apr_status_t rv;
    *why = "Redis (SSERedis) is not available in this process";
    if (!publish_lock) return APR_ENOTIMPL;
    if (!(r = child_command(p, send_delete, channel, why))) {
        return APR_EGENERAL;
    }
    *why = reply_problem(p, r, REDIS_REPLY_INTEGER, "delete");
    rv = *why ? APR_EGENERAL : APR_SUCCESS;
    freeReplyObject(r);
    return rv;
}

static apr_status_t close_publish_ctx(void *data)
{
    (void)data;
    if (publish_ctx) redisFree(publish_ctx);
    publish_ctx = NULL;
    return APR_SUCCESS;
}

void sse_redis_child_init(apr_pool_t *pchild, server_rec *s)
{
    const sse_server_conf *conf = sse_config_server(s);
    if (!conf->redis.host) return;
    redis_conf = &conf->redis;
    if (apr_thread_mutex_create(&publish_lock, APR_THREAD_MUTEX_DEFAULT,
                                pchild) != APR_SUCCESS) {
        publish_lock = NULL;
        return;
    }
    apr_pool_cleanup_register(pchild, NULL, close_publish_ctx,
                              apr_pool_cleanup_null);
}

/* ---- the mirror process ------------------------------------------------- */

typedef struct {
    apr_uint64_t id;
    const char *channel;
    const char *frame;
    apr_size_t len;
} mirrored;

static int by_id(const void *a, const void *b)
{
    const mirrored *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

static void store_copy(sse_store *st, const char *channel,
                       const char *const *frames, const apr_size_t *lens,
                       int n, apr_uint64_t first_id)
{
    apr_uint32_t subscribers = 0;
    sse_result res = sse_store_publish_at(st, channel, frames, lens, n,
                                          first_id, &subscribers);
    if (res == SSE_OK) {
        sse_redis_figures *fig = sse_store_redis_figures(st);
        __atomic_add_fetch(&fig->mirrored, (apr_uint64_t)n, __ATOMIC_RELAXED);
        /* ids are Redis's clock in microseconds when it took them */
        __atomic_store_n(&fig->lag_usec, (apr_int64_t)apr_time_now()
                         - (apr_int64_t)(first_id + (apr_uint64_t)n - 1),
                         __ATOMIC_RELAXED);
        if (subscribers) sse_notify_all(sse_store_wake_word(st));
    }
    else if (res != SSE_OK && res != SSE_STALE) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, ap_server_conf,
                     SSE_LOGNO(00702) "Redis mirror: event %" APR_UINT64_T_FMT
                     " of '%s' could not be stored here (store result %d)",
                     first_id, channel, (int)res);
    }
}

/* Everything the channels' streams hold after the store's newest id, read
 * in one snapshot and stored in id order. Returns 0, or -1 when Redis
 * failed. */
static int catch_up(redisContext *ctx, sse_store *st, apr_pool_t *p)
{
    redisReply *members, *exec;
    apr_array_header_t *all = apr_array_make(p, 64, sizeof(mirrored));
    apr_uint64_t after = sse_store_last_id(st);
    const char *start = apr_psprintf(p, "(%" APR_UINT64_T_FMT "-0", after);
    size_t i, j;
    int n;

    members = redisCommand(ctx, "SMEMBERS " KEY_CHANNELS);
    if (!members || members->type != REDIS_REPLY_ARRAY) {
        if (members) freeReplyObject(members);
        return -1;
    }
    redisAppendCommand(ctx, "MULTI");
    for (i = 0; i < members->elements; i++) {
        redisAppendCommand(ctx, "XRANGE " KEY_STREAM "%b %s +",
                           members->element[i]->str,
                           (size_t)members->element[i]->len,
                           after ? start : "-");
    }
    redisAppendCommand(ctx, "EXEC");
    for (i = 0; i < members->elements + 1; i++) {   /* MULTI, QUEUED... */
        redisReply *q = NULL;
        if (redisGetReply(ctx, (void **)&q) != REDIS_OK) {
            freeReplyObject(members);
            return -1;
        }
        freeReplyObject(q);
    }
    if (redisGetReply(ctx, (void **)&exec) != REDIS_OK || !exec
        || exec->type != REDIS_REPLY_ARRAY
        || exec->elements != members->elements) {
        if (exec) freeReplyObject(exec);
        freeReplyObject(members);
        return -1;
    }
    for (i = 0; i < exec->elements; i++) {
        redisReply *entries = exec->element[i];
        const char *channel = apr_pstrndup(p, members->element[i]->str,
                                           members->element[i]->len);
        if (entries->type != REDIS_REPLY_ARRAY) continue;
        for (j = 0; j < entries->elements; j++) {
            redisReply *e = entries->element[j], *fields;
            mirrored *m;
            if (e->type != REDIS_REPLY_ARRAY || e->elements != 2) continue;
            fields = e->element[1];
            if (fields->type != REDIS_REPLY_ARRAY || fields->elements < 2) {
                continue;
            }
            m = apr_array_push(all);
            m->id = apr_strtoi64(e->element[0]->str, NULL, 10);
            m->channel = channel;
            m->frame = apr_pstrmemdup(p, fields->element[1]->str,
                                      fields->element[1]->len);
            m->len = fields->element[1]->len;
        }
    }
    freeReplyObject(exec);
    freeReplyObject(members);
    qsort(all->elts, (size_t)all->nelts, sizeof(mirrored), by_id);
    for (n = 0; n < all->nelts; n++) {
        mirrored *m = &APR_ARRAY_IDX(all, n, mirrored);
        store_copy(st, m->channel, &m->frame, &m->len, 1, m->id);
    }
    __atomic_add_fetch(&sse_store_redis_figures(st)->caught_up,
                       (apr_uint64_t)all->nelts, __ATOMIC_RELAXED);
    if (all->nelts) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, ap_server_conf,
                     SSE_LOGNO(00703) "Redis mirror: caught up %d event(s) "
                     "after id %" APR_UINT64_T_FMT, all->nelts, after);
    }
    return 0;
}

/* Redis no longer knows ids this server has: it was restarted without its
 * data (or flushed). Events it took but this server had not copied yet are
 * gone, so the clients must not resume silently: ids go on above every id
 * this server has, and one server (the first to see it) publishes an
 * sse-reset event ("lost") to every channel, which every server delivers.
 * Returns -1 when Redis failed. */
static int detect_loss(redisContext *ctx, sse_store *st, apr_pool_t *p)
{
    apr_uint64_t have = sse_store_last_id(st), known = 0;
    const char *have_text = apr_psprintf(p, "%" APR_UINT64_T_FMT, have);
    redisReply *r = redisCommand(ctx, "GET " KEY_LAST);
    int told;
    if (!r) return -1;
    if (r->type == REDIS_REPLY_STRING) sse_id_parse(r->str, &known);
    freeReplyObject(r);
    if (!have || known >= have) return 0;
    r = redisCommand(ctx, "EVAL %s 1 %s %s",
                     "if tonumber(redis.call('GET', KEYS[1]) or '0') "
                     "< tonumber(ARGV[1]) then "
                     "redis.call('SET', KEYS[1], ARGV[1]) end return 1",
                     KEY_LAST, have_text);
    if (!r) return -1;
    freeReplyObject(r);
    r = redisCommand(ctx, "SET " KEY_LOST_TOLD " %s NX EX 600", have_text);
    if (!r) return -1;
    told = r->type == REDIS_REPLY_STATUS;      /* OK: this server tells */
    freeReplyObject(r);
    ap_log_error(APLOG_MARK, APLOG_WARNING, 0, ap_server_conf,
                 SSE_LOGNO(00710) "Redis lost its data (it knows ids up to %"
                 APR_UINT64_T_FMT ", this server has %" APR_UINT64_T_FMT
                 "): events not copied here before are gone; %s",
                 known, have, told ? "telling every channel's clients "
                 "(sse-reset, reason lost)" : "another server tells the "
                 "clients");
    if (told) {
        const sse_store_limits *lim = sse_store_get_limits(st);
        apr_array_header_t *chans = sse_store_list(st, p);
        apr_size_t len;
        const char *frame = sse_reset_frame(p, "lost", 0, NULL, &len);
        int i;
        /* the frame without its id: line, as published events are stored */
        frame = strchr(frame, '\n') + 1;
        len = strlen(frame);
        for (i = 0; i < chans->nelts; i++) {
            const sse_channel_info *ci = &APR_ARRAY_IDX(chans, i,
                                                        sse_channel_info);
            if (!(r = publish_command(ctx, p, ci->name, &frame, &len, 1,
                                      lim->history_size,
                                      lim->history_max_age))) {
                return -1;
            }
            freeReplyObject(r);
        }
    }
    return 0;
}

/* One message of sse:events: "<channel>\n<first id>\n" then, per event,
 * "<length>\n<frame>". */
static void mirror_message(sse_store *st, apr_pool_t *p, const char *msg,
                           size_t len)
{
    const char *end = msg + len, *nl;
    apr_array_header_t *frames = apr_array_make(p, 4, sizeof(char *));
    apr_array_header_t *lens = apr_array_make(p, 4, sizeof(apr_size_t));
    const char *channel;
    apr_uint64_t first;
    if (len > 8 && !memcmp(msg, "!delete\n", 8)) {
        sse_channel_info info;
        channel = apr_pstrndup(p, msg + 8, len - 8);
        if (sse_store_delete(st, channel, &info) == SSE_OK) {
            sse_notify_all(sse_store_wake_word(st));
        }
        return;
    }
    if (!(nl = memchr(msg, '\n', len))) return;
    channel = apr_pstrndup(p, msg, (apr_size_t)(nl - msg));
    msg = nl + 1;
    if (!(nl = memchr(msg, '\n', (size_t)(end - msg)))) return;
    first = apr_strtoi64(apr_pstrndup(p, msg, (apr_size_t)(nl - msg)), NULL,
                         10);
    msg = nl + 1;
    while (msg < end) {
        apr_size_t flen;
        if (!(nl = memchr(msg, '\n', (size_t)(end - msg)))) return;
        flen = (apr_size_t)apr_strtoi64(apr_pstrndup(p, msg,
                                        (apr_size_t)(nl - msg)), NULL, 10);
        msg = nl + 1;
        if (flen > (apr_size_t)(end - msg)) return;
        APR_ARRAY_PUSH(frames, const char *) = msg;
        APR_ARRAY_PUSH(lens, apr_size_t) = flen;
        msg += flen;
    }
    if (frames->nelts) {
        store_copy(st, channel, (const char *const *)frames->elts,
                   (const apr_size_t *)lens->elts, frames->nelts, first);
    }
}

static volatile sig_atomic_t mirror_stop;

static void on_term(int sig)
{
    (void)sig;
    mirror_stop = 1;
}

/* The mirror's life: (re)connect, subscribe, catch up, copy, until told to
 * stop or the parent is gone. */
static void set_state(sse_store *st, apr_uint32_t state)
{
    sse_redis_figures *fig = sse_store_redis_figures(st);
    if (__atomic_load_n(&fig->state, __ATOMIC_RELAXED) == state) return;
    if (state == SSE_REDIS_CONNECTING
        && __atomic_load_n(&fig->state, __ATOMIC_RELAXED)
           == SSE_REDIS_SUBSCRIBED) {
        __atomic_add_fetch(&fig->reconnects, 1, __ATOMIC_RELAXED);
    }
    __atomic_store_n(&fig->since, (apr_uint64_t)apr_time_now(),
                     __ATOMIC_RELAXED);
    __atomic_store_n(&fig->state, state, __ATOMIC_RELAXED);
}

static void mirror_main(sse_store *st, const sse_redis_conf *rc,
                        apr_pool_t *p, pid_t parent)
{
    int connected_once = 0;
    apr_time_t last_logged = 0;
    set_state(st, SSE_REDIS_CONNECTING);
    while (!mirror_stop && getppid() == parent) {
        const char *why = NULL;
        redisContext *sub, *cmd;
        redisReply *r;
        apr_pool_clear(p);
        sub = redis_open(p, rc, 1, &why);
        cmd = sub ? redis_open(p, rc, 5, &why) : NULL;
        if (!sub || !cmd) {
            apr_time_t now = apr_time_now();
            if (sub) redisFree(sub);
            /* once when it starts failing, then once a minute */
            if (connected_once || now - last_logged > apr_time_from_sec(60)) {
                ap_log_error(APLOG_MARK, APLOG_WARNING, 0, ap_server_conf,
                             SSE_LOGNO(00704) "Redis mirror: cannot reach "
                             "%s:%d (%s); retrying every %d ms", rc->host,
                             rc->port, why ? why : "?", RETRY_USEC / 1000);
                last_logged = now;
            }
            connected_once = 0;
            usleep(RETRY_USEC);
            continue;
        }
        r = redisCommand(sub, "SUBSCRIBE " KEY_EVENTS);
        if (r) freeReplyObject(r);
        if (!r || detect_loss(cmd, st, p) != 0 || catch_up(cmd, st, p) != 0) {
            redisFree(sub);
            redisFree(cmd);
            usleep(RETRY_USEC);
            continue;
        }
        redisFree(cmd);
        set_state(st, SSE_REDIS_SUBSCRIBED);
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, ap_server_conf,
                     SSE_LOGNO(00705) "Redis mirror: subscribed at %s:%d",
                     rc->host, rc->port);
        connected_once = 1;
        {
            /* wake now and then to see a stop or a dead parent */
            struct timeval tv = { 1, 0 };
            redisSetTimeout(sub, tv);
        }
        while (!mirror_stop && getppid() == parent) {
            redisReply *m = NULL;
            if (redisGetReply(sub, (void **)&m) != REDIS_OK) {
                if (sub->err == REDIS_ERR_IO && (errno == EAGAIN
                                                 || errno == EWOULDBLOCK)) {
                    sub->err = 0;       /* a read timeout: look again */
                    continue;
                }
                break;
            }
            if (m && m->type == REDIS_REPLY_ARRAY && m->elements == 3
                && m->element[2]->type == REDIS_REPLY_STRING) {
                apr_pool_clear(p);
                mirror_message(st, p, m->element[2]->str,
                               m->element[2]->len);
            }
            if (m) freeReplyObject(m);
        }
        redisFree(sub);
        if (!mirror_stop) {
            /* a mirror told to stop leaves the figures to its successor */
            set_state(st, SSE_REDIS_CONNECTING);
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, ap_server_conf,
                         SSE_LOGNO(00706) "Redis mirror: lost the "
                         "subscription; reconnecting and catching up");
        }
    }
}

/* The mirror of this generation; forked again when it dies (the MPM
 * reaps it and tells us, as it does for mod_cgid's daemon). */
static apr_pool_t *mirror_pconf;
static server_rec *mirror_server;
static sse_store *mirror_store;

static apr_status_t fork_mirror(void);

static void mirror_maintenance(int reason, void *data, apr_wait_t status)
{
    apr_proc_t *proc = data;
    int mpm_state = AP_MPMQ_STOPPING;
    (void)status;
    switch (reason) {
    case APR_OC_REASON_DEATH:
    case APR_OC_REASON_LOST:
        apr_proc_other_child_unregister(data);
        if (ap_mpm_query(AP_MPMQ_MPM_STATE, &mpm_state) == APR_SUCCESS
            && mpm_state != AP_MPMQ_STOPPING) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, mirror_server,
                         SSE_LOGNO(00709) "the Redis mirror process %d "
                         "ended; starting it again", (int)proc->pid);
            fork_mirror();
        }
        break;
    case APR_OC_REASON_RESTART:
        /* the next generation starts its own */
        apr_proc_other_child_unregister(data);
        kill(proc->pid, SIGTERM);
        break;
    case APR_OC_REASON_UNREGISTER:
        kill(proc->pid, SIGTERM);
        break;
    }
}

static apr_status_t fork_mirror(void)
{
    apr_proc_t *proc = apr_pcalloc(mirror_pconf, sizeof(*proc));
    const sse_server_conf *conf = sse_config_server(mirror_server);
    pid_t parent = getpid();
    apr_status_t rv = apr_proc_fork(proc, mirror_pconf);
    if (rv == APR_INCHILD) {
        apr_pool_t *p, *work;
        apr_global_mutex_t **mutex = sse_store_mutex(mirror_store);
        apr_signal(SIGTERM, on_term);
        apr_signal(SIGHUP, on_term);
        apr_signal(SIGUSR1, on_term);
        apr_signal(SIGWINCH, on_term);
        apr_pool_create(&p, mirror_pconf);
        if (apr_global_mutex_child_init(mutex,
                                        apr_global_mutex_lockfile(*mutex),
                                        p) != APR_SUCCESS
            || ap_run_drop_privileges(p, ap_server_conf) != 0) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, 0, mirror_server,
                         SSE_LOGNO(00707) "Redis mirror: cannot attach to "
                         "the store");
            _exit(1);
        }
        /* p holds the lock's attachment: work in a pool of its own */
        apr_pool_create(&work, p);
        mirror_main(mirror_store, &conf->redis, work, parent);
        _exit(0);
    }
    if (rv != APR_INPARENT) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, mirror_server,
                     SSE_LOGNO(00708) "cannot start the Redis mirror process");
        return rv;
    }
    apr_proc_other_child_register(proc, mirror_maintenance, proc, NULL,
                                  mirror_pconf);
    return APR_SUCCESS;
}

apr_status_t sse_redis_start_mirror(apr_pool_t *pconf, server_rec *s,
                                    sse_store *st)
{
    if (!sse_config_server(s)->redis.host || !st) return APR_SUCCESS;
    mirror_pconf = pconf;
    mirror_server = s;
    mirror_store = st;
    return fork_mirror();
}
