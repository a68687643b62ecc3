/* sse_report.c - mod_sse's figures for operators, read once from the store
 * and written two ways: an "SSE" section of mod_status's server-status page
 * (HTML, or "SSE..." lines for ?auto) and Prometheus metrics (text exposition
 * format 0.0.4) for GET <admin>/metrics. Both show the same totals; the
 * metrics add per-child series and the busiest channels by name.
 */
#include <stddef.h>
#include <stdlib.h>

#include "httpd.h"
#include "apr_strings.h"
#include "http_protocol.h"
#include "http_main.h"
#include "mod_status.h"

#include "mod_sse.h"
#include "sse_private.h"
#include "sse_store.h"
#include "sse_config.h"
#include "sse_report.h"

/* One snapshot of the store, with the per-child sums the store leaves to
 * its readers. */
typedef struct {
    sse_store_status s;
    const sse_store_limits *limits;
    apr_uint32_t thread_streams;
    apr_uint64_t busy_total;
} sse_figures;

static void read_figures(sse_store *st, apr_pool_t *p, sse_figures *f)
{
    int i;
    sse_store_status_get(st, p, &f->s);
    f->limits = sse_store_get_limits(st);
    f->thread_streams = 0;
    for (i = 0; i < f->s.children->nelts; i++) {
        f->thread_streams += APR_ARRAY_IDX(f->s.children, i,
                                           sse_child_info).on_threads;
    }
    f->busy_total = 0;
    for (i = 0; i < SSE_BUSY_REASONS; i++) {
        f->busy_total += f->s.busy[i];
    }
}

/* ---- server-status -------------------------------------------------------- */

static const char *const busy_names[SSE_BUSY_REASONS] = {
    "server", "channel", "client", "table"
};

static void status_short(request_rec *r, const sse_figures *f)
{
    int i;
    ap_rprintf(r,
        "SSEVersion: %s\n"
        "SSEChannels: %u\nSSEMaxChannels: %u\n"
        "SSESubscribers: %u\nSSEMaxSubscribers: %u\n"
        "SSEWriterStreams: %u\nSSEThreadStreams: %u\n"
        "SSEPublished: %" APR_UINT64_T_FMT "\n"
        "SSEDelivered: %" APR_UINT64_T_FMT "\n"
        "SSERejected: %" APR_UINT64_T_FMT "\n"
        "SSEBusy: %" APR_UINT64_T_FMT "\n"
        "SSEMessages: %" APR_UINT64_T_FMT "\n"
        "SSEShmSize: %" APR_UINT64_T_FMT "\n"
        "SSEShmUsed: %" APR_UINT64_T_FMT "\n"
        "SSEShmFree: %" APR_UINT64_T_FMT "\n"
        "SSERepairs: %u\nSSEChildren: %d\n",
        MOD_SSE_VERSION, f->s.channels, f->s.max_channels, f->s.subscribers,
        f->limits->max_subscribers, f->s.parked, f->thread_streams,
        f->s.published, f->s.delivered, f->s.rejected, f->busy_total,
        f->s.messages, f->s.shm_size, f->s.shm_used, f->s.shm_free,
        f->s.repairs, f->s.children->nelts);
    for (i = 0; i < f->s.children->nelts; i++) {
        const sse_child_info *ci = &APR_ARRAY_IDX(f->s.children, i,
                                                  sse_child_info);
        ap_rprintf(r, "SSEChild: pid=%d subscribers=%u writer_streams=%u "
                   "thread_streams=%u\n", (int)ci->pid, ci->subscribers,
                   ci->parked, ci->on_threads);
    }
}

static void status_html(request_rec *r, const sse_figures *f)
{
    int i;
    ap_rprintf(r,
        "<hr />\n<h2>SSE (mod_sse %s)</h2>\n<table border=\"0\">\n"
        "<tr><th align=\"left\">Channels</th><td>%u of %u</td></tr>\n"
        "<tr><th align=\"left\">Subscribers</th><td>%u of %u</td></tr>\n"
        "<tr><th align=\"left\">Streams handed off</th><td>%u</td></tr>\n"
        "<tr><th align=\"left\">Streams on threads</th><td>%u</td></tr>\n"
        "<tr><th align=\"left\">Published</th><td>%" APR_UINT64_T_FMT
        "</td></tr>\n"
        "<tr><th align=\"left\">Delivered</th><td>%" APR_UINT64_T_FMT
        "</td></tr>\n"
        "<tr><th align=\"left\">Rejected publishes</th><td>%"
        APR_UINT64_T_FMT "</td></tr>\n",
        MOD_SSE_VERSION, f->s.channels, f->s.max_channels, f->s.subscribers,
        f->limits->max_subscribers, f->s.parked, f->thread_streams,
        f->s.published, f->s.delivered, f->s.rejected);
    ap_rputs("<tr><th align=\"left\">Subscribers told to retry</th><td>", r);
    for (i = 0; i < SSE_BUSY_REASONS; i++) {
        ap_rprintf(r, "%s%s %" APR_UINT64_T_FMT, i ? ", " : "",
                   busy_names[i], f->s.busy[i]);
    }
    ap_rprintf(r, "</td></tr>\n"
        "<tr><th align=\"left\">Messages retained</th><td>%" APR_UINT64_T_FMT
        "</td></tr>\n"
        "<tr><th align=\"left\">Shared memory</th><td>%" APR_UINT64_T_FMT
        " bytes used, %" APR_UINT64_T_FMT " free, of %" APR_UINT64_T_FMT
        "</td></tr>\n"
        "<tr><th align=\"left\">Store repairs</th><td>%u</td></tr>\n"
        "</table>\n", f->s.messages, f->s.shm_used, f->s.shm_free,
        f->s.shm_size, f->s.repairs);
    ap_rputs("<table border=\"0\"><tr><th>Child PID</th><th>Subscribers</th>"
             "<th>Handed off</th><th>On threads</th></tr>\n", r);
    for (i = 0; i < f->s.children->nelts; i++) {
        const sse_child_info *ci = &APR_ARRAY_IDX(f->s.children, i,
                                                  sse_child_info);
        ap_rprintf(r, "<tr><td>%d</td><td>%u</td><td>%u</td><td>%u</td>"
                   "</tr>\n", (int)ci->pid, ci->subscribers, ci->parked,
                   ci->on_threads);
    }
    ap_rputs("</table>\n", r);
}

static int sse_status_section(request_rec *r, int flags)
{
    sse_store *st = sse_current_store();
    sse_figures f;
    if (!st) {
        ap_rputs(flags & AP_STATUS_SHORT ? "SSEStore: unavailable\n"
                 : "<hr />\n<h2>SSE</h2>\n<p>The event store is not "
                   "available (see the error log).</p>\n", r);
        return OK;
    }
    read_figures(st, r->pool, &f);
    if (flags & AP_STATUS_SHORT) {
        status_short(r, &f);
    }
    else {
        status_html(r, &f);
    }
    return OK;
}

/* ---- Prometheus ----------------------------------------------------------- */

static void metric_head(request_rec *r, const char *name, const char *type,
                        const char *help)
{
    ap_rprintf(r, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void metric(request_rec *r, const char *name, const char *type,
                   const char *help, apr_uint64_t value)
{
    metric_head(r, name, type, help);
    ap_rprintf(r, "%s %" APR_UINT64_T_FMT "\n", name, value);
}

/* One series per child of a 32-bit figure of sse_child_info. */
static void per_child(request_rec *r, const sse_figures *f, const char *name,
                      const char *type, const char *help, size_t field)
{
    int i;
    metric_head(r, name, type, help);
    for (i = 0; i < f->s.children->nelts; i++) {
        const sse_child_info *ci = &APR_ARRAY_IDX(f->s.children, i,
                                                  sse_child_info);
        ap_rprintf(r, "%s{pid=\"%d\"} %u\n", name, (int)ci->pid,
                   *(const apr_uint32_t *)((const char *)ci + field));
    }
}

static int busiest_first(const void *a, const void *b)
{
    const sse_channel_info *x = a, *y = b;
    if (x->subscribers != y->subscribers) {
        return x->subscribers < y->subscribers ? 1 : -1;
    }
    if (x->published != y->published) {
        return x->published < y->published ? 1 : -1;
    }
    return strcmp(x->name, y->name);
}

static void channel_metrics(request_rec *r, sse_store *st)
{
    apr_array_header_t *infos = sse_store_list(st, r->pool);
    int i, n;
    qsort(infos->elts, infos->nelts, sizeof(sse_channel_info),
          busiest_first);
    n = infos->nelts < SSE_METRICS_TOP_CHANNELS ? infos->nelts
        : SSE_METRICS_TOP_CHANNELS;
    /* channel names are [A-Za-z0-9_.:@~-]: nothing to escape in a label */
    metric_head(r, "sse_channel_subscribers", "gauge",
                "Subscribers of the busiest channels (at most "
                APR_STRINGIFY(SSE_METRICS_TOP_CHANNELS) ", most subscribers "
                "first).");
    for (i = 0; i < n; i++) {
        const sse_channel_info *ci = &APR_ARRAY_IDX(infos, i,
                                                    sse_channel_info);
        ap_rprintf(r, "sse_channel_subscribers{channel=\"%s\"} %u\n",
                   ci->name, ci->subscribers);
    }
    metric_head(r, "sse_channel_published_total", "counter",
                "Events published to each of the busiest channels since it "
                "was created.");
    for (i = 0; i < n; i++) {
        const sse_channel_info *ci = &APR_ARRAY_IDX(infos, i,
                                                    sse_channel_info);
        ap_rprintf(r, "sse_channel_published_total{channel=\"%s\"} %"
                   APR_UINT64_T_FMT "\n", ci->name, ci->published);
    }
}

int sse_report_metrics(request_rec *r, sse_store *st)
{
    sse_figures f;
    int i;
    read_figures(st, r->pool, &f);
    ap_set_content_type(r, "text/plain; version=0.0.4; charset=utf-8");
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    if (r->header_only) {
        return OK;
    }
    metric_head(r, "sse_info", "gauge", "mod_sse version.");
    ap_rprintf(r, "sse_info{version=\"%s\"} 1\n", MOD_SSE_VERSION);
    metric(r, "sse_channels", "gauge", "Channels in the shared-memory table.",
           f.s.channels);
    metric(r, "sse_channels_max", "gauge",
           "Channel table slots (SSEMaxChannels).", f.s.max_channels);
    metric(r, "sse_subscribers", "gauge",
           "Open streams, all children.", f.s.subscribers);
    metric(r, "sse_subscribers_max", "gauge",
           "SSEMaxSubscribers in effect (0 = no limit).",
           f.limits->max_subscribers);
    metric_head(r, "sse_streams", "gauge",
                "Open streams by who serves them: the child's writer "
                "(handed off) or a worker thread.");
    ap_rprintf(r, "sse_streams{served_by=\"writer\"} %u\n"
               "sse_streams{served_by=\"thread\"} %u\n",
               f.s.parked, f.thread_streams);
    metric(r, "sse_published_total", "counter",
           "Events accepted for publishing.", f.s.published);
    metric(r, "sse_delivered_total", "counter",
           "Events written to subscribers.", f.s.delivered);
    metric(r, "sse_rejected_total", "counter",
           "Publishes refused by the store (table or memory full).",
           f.s.rejected);
    metric_head(r, "sse_busy_total", "counter",
                "Subscribers told to come back later, by the limit they "
                "met.");
    for (i = 0; i < SSE_BUSY_REASONS; i++) {
        ap_rprintf(r, "sse_busy_total{reason=\"%s\"} %" APR_UINT64_T_FMT
                   "\n", busy_names[i], f.s.busy[i]);
    }
    metric(r, "sse_messages", "gauge", "Events retained in history.",
           f.s.messages);
    metric(r, "sse_last_event_id", "gauge", "Newest event id issued.",
           f.s.last_id);
    metric(r, "sse_shm_size_bytes", "gauge",
           "Size of the shared-memory store.", f.s.shm_size);
    metric(r, "sse_shm_used_bytes", "gauge",
           "Shared memory holding channels and history.", f.s.shm_used);
    metric(r, "sse_shm_free_bytes", "gauge",
           "Shared memory free for history.", f.s.shm_free);
    metric(r, "sse_store_repairs_total", "counter",
           "Store repairs after a child died holding its lock.",
           f.s.repairs);
    metric_head(r, "sse_child_streams", "gauge",
                "Open streams of each child process, by who serves them.");
    for (i = 0; i < f.s.children->nelts; i++) {
        const sse_child_info *ci = &APR_ARRAY_IDX(f.s.children, i,
                                                  sse_child_info);
        ap_rprintf(r, "sse_child_streams{pid=\"%d\",served_by=\"writer\"} "
                   "%u\nsse_child_streams{pid=\"%d\",served_by=\"thread\"} "
                   "%u\n", (int)ci->pid, ci->parked, (int)ci->pid,
                   ci->on_threads);
    }
    per_child(r, &f, "sse_child_subscribers", "gauge",
              "Open streams (subscribers) of each child process.",
              offsetof(sse_child_info, subscribers));
    per_child(r, &f, "sse_child_thread_wakeups_total", "counter",
              "Stream threads of each child woken for news.",
              offsetof(sse_child_info, wakeups));
    if (sse_config_server(ap_server_conf)->redis.host) {
        metric(r, "sse_redis_up", "gauge",
               "1 while the Redis mirror is subscribed (SSERedis).",
               f.s.redis.state == SSE_REDIS_SUBSCRIBED);
        metric(r, "sse_redis_reconnects_total", "counter",
               "Redis subscriptions lost and made again.",
               f.s.redis.reconnects);
        metric(r, "sse_redis_mirrored_total", "counter",
               "Events copied in from Redis.", f.s.redis.mirrored);
        metric(r, "sse_redis_caught_up_total", "counter",
               "Events read back from Redis after a (re)connect.",
               f.s.redis.caught_up);
        metric_head(r, "sse_redis_lag_seconds", "gauge",
                    "Time from Redis taking the newest copied event's id to "
                    "its copy here.");
        ap_rprintf(r, "sse_redis_lag_seconds %.6f\n",
                   (double)f.s.redis.lag_usec / 1e6);
    }
    channel_metrics(r, st);
    return OK;
}

void sse_report_register_hooks(void)
{
    APR_OPTIONAL_HOOK(ap, status_hook, sse_status_section, NULL, NULL,
                      APR_HOOK_MIDDLE);
}
