/* mod_sse.c - server-sent events pub/sub for Apache httpd 2.4: module glue.
 *
 * Creates the shared-memory store (parent, post_config) once and keeps it
 * across restart generations, attaches each child to it (child_init), ends
 * every stream when a child stops (child_stopping), and drops the share of
 * children that died (monitor, parent). The handlers live in sse_stream.c
 * and sse_admin.c, the directives in sse_config.c.
 *
 *   <Location /events>    SetHandler sse-stream </Location>
 *   <Location /sse-admin> SetHandler sse-admin  Require local </Location>
 */
#include <unistd.h>
#include <sys/resource.h>

#include "apr_strings.h"
#include "http_main.h"
#include "http_core.h"
#include "http_request.h"
#include "ap_mpm.h"
#include "mpm_common.h"
#include "util_mutex.h"
#include "util_cfgtree.h"

#include "mod_sse.h"
#define SSE_DECLARES_MODULE
#include "sse_private.h"
#include "sse_config.h"
#include "sse_store.h"
#include "sse_notify.h"
#include "sse_writer.h"
#include "sse_publish.h"
#include "sse_stream.h"
#include "sse_admin.h"
#include "sse_report.h"
#include "sse_filter.h"
#include "sse_response_api.h"
#include "sse_ticker.h"
#include "sse_redis.h"
#include "sse_read_cache.h"
#include "sse_location.h"
#include "sse_access.h"

#define SSE_MUTEX_TYPE    "sse-store"
#define SSE_RETAINED_KEY  "mod_sse-store"

/* Lives in ap_pglobal, across restart generations. */
typedef struct {
    sse_store *store;
    apr_pool_t *pool;   /* owns the store's segment and mutex */
} sse_retained;

/* Per process; static variables are reset when the DSO is reloaded, and
 * post_config sets them again. Children inherit them through fork. */
static sse_store *current_store;
static int child_row = -1;

sse_store *sse_current_store(void)
{
    return current_store;
}

int sse_child_row(void)
{
    return child_row;
}

static int sse_pre_config(apr_pool_t *pconf, apr_pool_t *plog,
                          apr_pool_t *ptemp)
{
    (void)plog;
    (void)ptemp;
    /* lets admins choose the lock with "Mutex <mechanism> sse-store" */
    return ap_mutex_register(pconf, SSE_MUTEX_TYPE, NULL, APR_LOCK_DEFAULT,
                             0);
}

static int mpm_value(int query, int fallback)
{
    int v = 0;
    if (ap_mpm_query(query, &v) != APR_SUCCESS || v <= 0) return fallback;
    return v;
}

/* Handed-off streams one child may own: each is an open file, so its
 * open-files limit (ulimit -n) less a reserve for listeners, logs,
 * connections on threads and the rest. */
static apr_uint32_t writer_streams_per_child(void)
{
    struct rlimit rl;
    rlim_t cur, reserve;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) {
        return 60000;
    }
    cur = rl.rlim_cur;
    reserve = cur / 10 > 64 ? cur / 10 : 64;
    return cur > reserve ? (apr_uint32_t)(cur - reserve) : 1;
}

static int threaded_mpm(void)
{
    return mpm_value(AP_MPMQ_IS_THREADED, 0) != AP_MPMQ_NOT_SUPPORTED;
}

/* Default SSEMaxSubscribers. Where streams leave their threads (threaded
 * MPMs), open files bound them: every child the MPM may run times what
 * one child's writer may own. Under prefork every stream is a process:
 * keep 10% of them (at least 2) for pages and the admin API. */
static apr_uint32_t default_max_subscribers(void)
{
    int workers = mpm_value(AP_MPMQ_MAX_DAEMONS, 1)
                  * mpm_value(AP_MPMQ_MAX_THREADS, 1);
    int reserve = workers / 10 > 2 ? workers / 10 : 2;
    if (threaded_mpm()) {
        apr_uint64_t n = (apr_uint64_t)mpm_value(AP_MPMQ_MAX_DAEMONS, 1)
                         * writer_streams_per_child();
        return n > 10000000 ? 10000000 : (apr_uint32_t)n;
    }
    return workers > reserve ? (apr_uint32_t)(workers - reserve) : 1;
}

/* Streams on worker threads one child may hold: a child whose threads all
 * hold streams cannot serve the keep-alive connections it already owns, so
 * 10% of its threads (at least 1) stay free. 0 (no limit) under prefork.
 * Handed-off streams hold no thread and do not count. */
static apr_uint32_t default_max_per_child(void)
{
    int threads = mpm_value(AP_MPMQ_MAX_THREADS, 1);
    int reserve = threads / 10 > 1 ? threads / 10 : 1;
    if (mpm_value(AP_MPMQ_IS_THREADED, 0) == AP_MPMQ_NOT_SUPPORTED
        || threads <= 1) {
        return 0;
    }
    return (apr_uint32_t)(threads - reserve);
}

/* The store's shape from the configuration: a child row per process the
 * MPM may run at once, plus slack for rows of exited children not yet
 * reaped, and a client table for every stream the server may hold. */
static void store_geometry(const sse_server_conf *conf,
                           sse_store_geometry *geo)
{
    apr_uint32_t daemons = (apr_uint32_t)mpm_value(AP_MPMQ_HARD_LIMIT_DAEMONS,
                                                   1);
    apr_uint32_t threads = (apr_uint32_t)mpm_value(AP_MPMQ_HARD_LIMIT_THREADS,
                                                   1);
    geo->size = conf->shm_size;
    geo->max_channels = conf->max_channels;
    geo->max_children = daemons + 2;
    geo->max_streams = daemons * threads;
    if (conf->max_subscribers > 0
        && (apr_uint32_t)conf->max_subscribers > geo->max_streams) {
        geo->max_streams = (apr_uint32_t)conf->max_subscribers;
    }
}

static apr_status_t create_store(sse_retained *kept, server_rec *s,
                                 const sse_store_geometry *geo)
{
    apr_pool_t *pool;
    apr_global_mutex_t *mutex;
    sse_store *store;
    const char *why = NULL;
    apr_status_t rv;

    apr_pool_create(&pool, ap_pglobal);
    apr_pool_tag(pool, "sse-store");
    rv = ap_global_mutex_create(&mutex, NULL, SSE_MUTEX_TYPE, NULL, s, pool,
                                0);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, SSE_LOGNO(00001)
                     "cannot create the store mutex");
        apr_pool_destroy(pool);
        return rv;
    }
    rv = sse_store_create(&store, pool, geo,
                          ap_runtime_dir_relative(pool, "sse-store.shm"),
                          mutex, &why);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, SSE_LOGNO(00002)
                     "cannot create the event store: %s", why);
        apr_pool_destroy(pool);
        return rv;
    }
    if (kept->pool) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s, SSE_LOGNO(00003)
                     "store size, channel count, server limits or mod_sse's "
                     "store layout changed: the store was recreated and its "
                     "history dropped");
        /* children of older generations keep their own mapping */
        apr_pool_destroy(kept->pool);
    }
    kept->pool = pool;
    kept->store = store;
    return APR_SUCCESS;
}

/* Also runs for "apachectl configtest": refuse a store that cannot hold
 * the configured channel table, saying by how much. */
static int sse_check_config(apr_pool_t *pconf, apr_pool_t *plog,
                            apr_pool_t *ptemp, server_rec *s)
{
    const sse_server_conf *conf = sse_config_server(s);
    sse_store_geometry geo;
    apr_uint64_t need;
    (void)pconf;
    (void)plog;
    (void)ptemp;
    store_geometry(conf, &geo);
    need = sse_store_min_size(&geo);
    if (need > conf->shm_size) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, SSE_LOGNO(00009)
                     "SSESharedMemorySize %" APR_SIZE_T_FMT " is too small "
                     "for SSEMaxChannels %u: at least %" APR_UINT64_T_FMT
                     " bytes are needed", conf->shm_size, conf->max_channels,
                     need);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    return OK;
}

/* Whether the condition of an <IfModule> or <IfDefine> section holds; any
 * other section is taken as holding. Only the top level matters here. */
static int section_applies(apr_pool_t *p, const ap_directive_t *d)
{
    const char *args = d->args ? d->args : "";
    char *word = ap_getword_conf(p, &args);
    char *end = strrchr(word, '>');
    int negate = 0, found;
    if (end) *end = '\0';
    if (*word == '!') {
        negate = 1;
        word++;
    }
    if (!strcasecmp(d->directive, "<IfDefine")) {
        found = ap_exists_config_define(word);
    }
    else if (!strcasecmp(d->directive, "<IfModule")) {
        size_t n = strlen(word);
        found = ap_find_linked_module(word) != NULL;
        if (!found && n > 7 && !strcmp(word + n - 7, "_module")) {
            module *m;
            word[n - 7] = '\0';
            for (m = ap_top_module; m && !found; m = m->next) {
                const char *shortname = ap_find_module_short_name(
                                                          m->module_index);
                found = shortname && !strcmp(shortname, word);
            }
        }
    }
    else {
        return strcasecmp(d->directive, "<VirtualHost") != 0;
    }
    return negate ? !found : found;
}

/* The last ListenCoresBucketsRatio in force, 0 when none: httpd keeps it
 * to itself, so read it from the configuration tree. */
static int configured_bucket_ratio(apr_pool_t *p, const ap_directive_t *d)
{
    int ratio = 0;
    for (; d; d = d->next) {
        if (d->first_child) {
            if (section_applies(p, d)) {
                int inner = configured_bucket_ratio(p, d->first_child);
                if (inner) ratio = inner;
            }
        }
        else if (!strcasecmp(d->directive, "ListenCoresBucketsRatio")
                 && d->args) {
            ratio = atoi(d->args);
        }
    }
    return ratio;
}

/* Listener buckets the event and worker MPMs use: with
 * ListenCoresBucketsRatio R > 0, one SO_REUSEPORT listener per R online
 * cores, and child i accepts only on bucket i % buckets. */
static int listener_buckets(apr_pool_t *p, int *ratio)
{
    long cores;
    *ratio = configured_bucket_ratio(p, ap_conftree);
    if (*ratio <= 0) return 1;
    cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < *ratio) return 1;
    return (int)(cores / *ratio);
}

/* A child that the MPM stops while the server runs (idle maintenance, or
 * MaxConnectionsPerChild) ends every stream its writer owns: clients
 * reconnect and resume, but nobody wants that. Handed-off streams leave
 * every thread idle, and the MPM stops a child of a bucket whose idle
 * threads exceed MaxSpareThreads / buckets: so that can never happen, it
 * must be at least buckets x (children in the fullest bucket) x threads.
 * Say how to avoid it. */
static void warn_about_child_recycling(apr_pool_t *p, server_rec *s)
{
    int spare = mpm_value(AP_MPMQ_MAX_SPARE_THREADS, 0);
    int daemons = mpm_value(AP_MPMQ_MAX_DAEMONS, 1);
    int threads = mpm_value(AP_MPMQ_MAX_THREADS, 1);
    int per_child = mpm_value(AP_MPMQ_MAX_REQUESTS_DAEMON, 0);
    int ratio;
    int buckets = listener_buckets(p, &ratio);
    int fullest = (daemons + buckets - 1) / buckets;
    int needed = buckets * fullest * threads;
    if (!threaded_mpm()) return;
    if (spare && spare < needed) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s, SSE_LOGNO(00012)
                     "MaxSpareThreads %d is below %d (%d listener "
                     "bucket(s) x %d child(ren) each x ThreadsPerChild %d): "
                     "idle maintenance may stop a child and end the streams "
                     "it holds (they reconnect and resume); set "
                     "MaxSpareThreads to %d", spare, needed, buckets, fullest,
                     threads, needed);
    }
    if (daemons % buckets) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s, SSE_LOGNO(00014)
                     "%d children over %d listener buckets "
                     "(ListenCoresBucketsRatio %d): new streams are spread "
                     "evenly over buckets, not children, so some children "
                     "get more; make MaxRequestWorkers / ThreadsPerChild a "
                     "multiple of %d", daemons, buckets, ratio,
                     buckets);
    }
    if (per_child) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s, SSE_LOGNO(00013)
                     "MaxConnectionsPerChild %d ends a child's streams when "
                     "it is reached; set it to 0", per_child);
    }
}

static int sse_post_config(apr_pool_t *pconf, apr_pool_t *plog,
                           apr_pool_t *ptemp, server_rec *s)
{
    const sse_server_conf *conf = sse_config_server(s);
    sse_retained *kept;
    sse_store_limits limits;
    sse_store_geometry geo;
    (void)plog;

    current_store = NULL;
    /* the first pass at startup only checks the configuration */
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return OK;
    }
    store_geometry(conf, &geo);
    kept = ap_retained_data_get(SSE_RETAINED_KEY);
    if (!kept) {
        kept = ap_retained_data_create(SSE_RETAINED_KEY, sizeof(*kept));
    }
    if (!kept->store || !sse_store_has_geometry(kept->store, &geo)) {
        if (create_store(kept, s, &geo) != APR_SUCCESS) {
            /* a store of another mod_sse version cannot be used at all */
            if (!kept->store || !sse_store_is_current(kept->store)) {
                return HTTP_INTERNAL_SERVER_ERROR;
            }
            /* a restart must not take a running server down */
            ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, SSE_LOGNO(00010)
                         "keeping the previous store; the new store size "
                         "or channel count applies after a full restart");
        }
    }
    limits.history_size = conf->history_size;
    limits.history_max_age = conf->history_max_age;
    limits.max_subscribers = conf->max_subscribers > 0
                             ? (apr_uint32_t)conf->max_subscribers
                             : default_max_subscribers();
    limits.max_per_channel = (apr_uint32_t)conf->max_per_channel;
    limits.max_per_child = default_max_per_child();
    /* one address may hold a tenth of the server, so no single client
     * takes every slot; addresses shared by many users (NAT, proxies
     * without mod_remoteip) need a higher SSEMaxStreamsPerClient */
    limits.max_per_client = conf->max_per_client > 0
                            ? (apr_uint32_t)conf->max_per_client
                            : limits.max_subscribers / 10 > 16
                              ? limits.max_subscribers / 10 : 16;
    sse_store_set_limits(kept->store, &limits);
    current_store = kept->store;
    if (sse_redis_start_mirror(pconf, s, current_store) != APR_SUCCESS) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    warn_about_child_recycling(ptemp, s);
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, SSE_LOGNO(00004)
                 "mod_sse %s: store of %" APR_SIZE_T_FMT " bytes, %u "
                 "channels, history %u, max %u subscribers (%u per child, "
                 "%u per client address)",
                 MOD_SSE_VERSION, conf->shm_size, conf->max_channels,
                 limits.history_size, limits.max_subscribers,
                 limits.max_per_child, limits.max_per_client);
    return OK;
}

static apr_status_t detach_child(void *unused)
{
    (void)unused;
    if (current_store && child_row >= 0) {
        sse_store_child_detach(current_store, child_row, (apr_int32_t)getpid());
        child_row = -1;
    }
    return APR_SUCCESS;
}

/* For the dispatcher: whether a waiting stream thread has news. */
static int stream_has_news(const void *sub)
{
    return current_store && sse_store_has_news(current_store, sub);
}

static void sse_child_init(apr_pool_t *pchild, server_rec *s)
{
    apr_global_mutex_t **mutex;
    apr_status_t rv;
    int threaded;

    if (!current_store) return;
    mutex = sse_store_mutex(current_store);
    rv = apr_global_mutex_child_init(mutex, apr_global_mutex_lockfile(*mutex),
                                     pchild);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, SSE_LOGNO(00005)
                     "cannot attach to the store mutex; streams and "
                     "publishing are disabled in this child");
        current_store = NULL;
        return;
    }
    child_row = sse_store_child_attach(current_store, (apr_int32_t)getpid());
    if (child_row < 0) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, SSE_LOGNO(00006)
                     "no free row in the store's child table; this child "
                     "cannot hold streams");
    }
    apr_pool_cleanup_register(pchild, NULL, detach_child,
                              apr_pool_cleanup_null);
    sse_redis_child_init(pchild, s);
    threaded = threaded_mpm();
    /* the writer runs in the dispatcher thread, so only with one */
    if (threaded) {
        sse_writer_limits wl;
        wl.max_pending = sse_config_server(s)->max_pending;
        wl.stall_timeout = s->timeout;
        wl.max_streams = writer_streams_per_child();
        rv = sse_writer_child_init(current_store, child_row, &wl);
        if (rv != APR_SUCCESS && rv != APR_ENOTIMPL) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, rv, s, SSE_LOGNO(00011)
                         "cannot start the writer; every stream keeps its "
                         "worker thread");
        }
        sse_read_cache_enable();
        if ((rv = sse_ticker_child_init(pchild)) != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, rv, s, SSE_LOGNO(00015)
                         "cannot start the ticker; SSE-filtered responses "
                         "of proxied backends get no keepalives");
        }
    }
    rv = sse_notify_child_init(pchild, sse_store_wake_word(current_store),
                               child_row, threaded, sse_writer_round,
                               stream_has_news);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, SSE_LOGNO(00007)
                     "cannot start the dispatcher thread");
    }
}

#if AP_MODULE_MAGIC_AT_LEAST(20120211, 110)
/* Runs in the child's main thread as soon as it is told to stop: ends
 * every stream now, or graceful restarts would wait for the clients. */
static void sse_child_stopping(apr_pool_t *pchild, int graceful)
{
    (void)pchild;
    (void)graceful;
    sse_notify_stop();
}
#endif

/* Parent, about once a second: forget the subscribers of dead children. */
static int sse_monitor(apr_pool_t *p, server_rec *s)
{
    (void)p;
    if (current_store) {
        int reaped = sse_store_reap_children(current_store);
        if (reaped) {
            ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s, SSE_LOGNO(00008)
                         "dropped the subscribers of %d exited child(ren)",
                         reaped);
        }
    }
    return DECLINED;
}

static void sse_register_hooks(apr_pool_t *p)
{
    (void)p;
    sse_publish_register();
    sse_response_api_register();
    ap_hook_pre_config(sse_pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_check_config(sse_check_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(sse_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(sse_child_init, NULL, NULL, APR_HOOK_MIDDLE);
#if AP_MODULE_MAGIC_AT_LEAST(20120211, 110)
    ap_hook_child_stopping(sse_child_stopping, NULL, NULL, APR_HOOK_MIDDLE);
#endif
    ap_hook_monitor(sse_monitor, NULL, NULL, APR_HOOK_MIDDLE);
    sse_location_register_hooks();
    sse_access_register_hooks();
    sse_stream_register_hooks();
    sse_admin_register_hooks();
    sse_report_register_hooks();
    sse_filter_register_hooks();
}

AP_DECLARE_MODULE(sse) = {
    STANDARD20_MODULE_STUFF,
    sse_create_dir_conf,
    sse_merge_dir_conf,
    sse_create_server_conf,
    NULL,
    sse_cmds,
    sse_register_hooks,
    AP_MODULE_FLAG_NONE
};
