/* sse_filter.c - the "SSE" output filter: whatever a content generator
 * writes (CGI, PHP, a proxied backend, mod_lua, a static file) becomes an
 * event stream, so a script that prints tokens as they come is an
 * EventSource stream without SSE code of its own.
 *
 *   SetOutputFilter SSE                      (or AddOutputFilterByType SSE
 *   SSEFilterMode Lines | Flush               text/plain ...)
 *   SSEFilterEvent <type>
 *
 * Lines: every line (LF or CRLF) is one event. Flush: whatever arrives
 * before the generator pauses (a FLUSH from it, or its pipe having nothing
 * more to read) is one event, its lines joined by LF on the client. Events
 * get ids counting up from 1, or from the client's Last-Event-ID + 1, so a
 * generator that reads HTTP_LAST_EVENT_ID can resume where it left off. An
 * event that would outgrow SSEMaxMessageSize is cut there.
 *
 * Events go out as soon as they are whole, with a FLUSH. While the
 * generator is silent, keepalive comments follow SSEKeepAlive: written here
 * when its output can be waited on here (a pipe, or mod_cgi's stream);
 * when the generator holds the worker while it waits (mod_proxy), by the
 * child's ticker (sse_ticker.c) on plain HTTP/1.x, and not at all over TLS
 * or HTTP/2, where only httpd's own filters may write.
 *
 * Error answers (anything but 200) and subrequests pass through untouched.
 */
#include <stdlib.h>

#include "apr_strings.h"
#include "apr_poll.h"
#include "http_core.h"
#include "http_protocol.h"
#include "http_request.h"
#include "http_main.h"
#include "http_ssl.h"
#include "util_filter.h"

#include "sse_private.h"
#include "sse_config.h"
#include "sse_event.h"
#include "sse_notify.h"
#include "sse_stream_io.h"
#include "sse_ticker.h"
#include "sse_filter.h"

#define SSE_FILTER_NAME "SSE"

/* Longest sleep between looks at output that cannot be polled: a silent
 * generator costs about 50 wakeups a second, a token arrives at most this
 * late. */
#define MAX_BACKOFF apr_time_from_msec(20)

/* Events queued up to this many bytes are written at once, pause or not. */
#define WRITE_AT (64 * 1024)

typedef struct {
    sse_stream_io io;
    int mode;                  /* SSE_FILTER_LINES or SSE_FILTER_FLUSH */
    const char *event;         /* event type, NULL for "message" */
    apr_uint64_t next_id;
    char *pending;             /* the event being gathered (malloc) */
    apr_size_t len, cap;
    apr_size_t max_event;      /* SSEMaxMessageSize */
    apr_interval_time_t backoff;
    int stopped;               /* the child stopped: drop what follows */
    sse_tick *tick;            /* keepalives while the generator holds the
                                  thread (mod_proxy), or NULL */
    int cut;                   /* the line being read was cut at the size
                                  limit: its end alone is no event */
    int tick_checked;
} filter_ctx;

static apr_status_t free_pending(void *data)
{
    filter_ctx *fc = data;
    free(fc->pending);
    fc->pending = NULL;
    return APR_SUCCESS;
}

/* Bytes at the end of s[0..len) that start a UTF-8 sequence the rest of
 * which has not arrived: kept for the next event, not split. */
static apr_size_t utf8_unfinished_tail(const char *s, apr_size_t len)
{
    apr_size_t back;
    for (back = 1; back <= 3 && back <= len; back++) {
        unsigned char c = (unsigned char)s[len - back];
        if ((c & 0xC0) != 0x80) {
            apr_size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2
                            : 1;
            return need > back ? back : 0;
        }
    }
    return 0;
}

/* Where an event ends: at a line's LF, at the size limit, or where the
 * generator paused or ended. */
typedef enum { AT_LINE_END, AT_SIZE_LIMIT, AT_PAUSE } event_end;

/* Queues pending[0..n) as one event and keeps the rest for the next. The
 * line break that ended it is not part of its data; a cut at the size
 * limit keeps every byte. */
static void emit(filter_ctx *fc, apr_size_t n, event_end at)
{
    char id[SSE_ID_TEXT_MAX];
    apr_size_t data_len = n;
    const char *d = fc->pending;
    if (at == AT_PAUSE && fc->mode == SSE_FILTER_FLUSH && data_len
        && d[data_len - 1] == '\n') {
        data_len--;
    }
    if (at != AT_SIZE_LIMIT && data_len && d[data_len - 1] == '\r') {
        data_len--;
    }
    /* the line break of a line already sent in pieces is no event */
    if (!(at != AT_SIZE_LIMIT && fc->cut && !data_len)) {
        sse_id_format(id, fc->next_id++);
        sse_stream_add_event(&fc->io, id, fc->event, fc->pending, data_len);
    }
    fc->cut = at == AT_SIZE_LIMIT;
    memmove(fc->pending, fc->pending + n, fc->len - n);
    fc->len -= n;
}

/* Appends to pending, emitting whole lines (Lines) and anything that
 * reaches the size limit. */
static void take(filter_ctx *fc, const char *data, apr_size_t len)
{
    while (len) {
        apr_size_t room = fc->max_event - fc->len, n = len < room ? len : room;
        const char *nl = fc->mode == SSE_FILTER_LINES ? memchr(data, '\n', n)
                                                      : NULL;
        if (nl) n = (apr_size_t)(nl - data) + 1;
        if (fc->len + n > fc->cap) {
            apr_size_t cap = fc->cap ? fc->cap : 256;
            while (cap < fc->len + n) cap *= 2;
            fc->pending = realloc(fc->pending, cap);
            if (!fc->pending) abort();
            fc->cap = cap;
        }
        memcpy(fc->pending + fc->len, data, n);
        fc->len += n;
        data += n;
        len -= n;
        if (nl) {
            emit(fc, fc->len - 1, AT_LINE_END);  /* the line without LF */
            fc->len = 0;                         /* and drop the LF */
        }
        else if (fc->len == fc->max_event) {
            /* neither a UTF-8 character nor a CRLF is cut in two */
            apr_size_t keep = utf8_unfinished_tail(fc->pending, fc->len);
            if (!keep && fc->pending[fc->len - 1] == '\r') keep = 1;
            emit(fc, fc->len - (keep < fc->len ? keep : 0), AT_SIZE_LIMIT);
        }
    }
}

/* The generator paused (Flush mode) or ended: what is gathered is an
 * event, less an unfinished UTF-8 character unless this is the end. */
static void take_pause(filter_ctx *fc, int end)
{
    apr_size_t keep;
    if (!fc->len || (fc->mode == SSE_FILTER_LINES && !end)) return;
    keep = end ? 0 : utf8_unfinished_tail(fc->pending, fc->len);
    if (fc->len > keep) emit(fc, fc->len - keep, AT_PAUSE);
}

/* A generator that waits inside its handler (mod_proxy) gives the filter
 * no chance to write while it waits: the ticker writes keepalives then,
 * where it can write to the socket itself. */
static void start_ticker(ap_filter_t *f, filter_ctx *fc)
{
    conn_rec *c = f->c;
    ap_filter_t *below;
    fc->tick_checked = 1;
    if (!fc->io.keepalive_sec || f->r->proto_num >= 2000 || c->master
        || ap_ssl_conn_is_ssl(c)) {
        return;
    }
    for (below = f->next; below; below = below->next) {
        if (!sse_stream_filter_is_transparent(below->frec->name)) return;
    }
    fc->tick = sse_ticker_add(f->r, fc->io.keepalive_sec);
}

/* Every write of the response, taking turns with the ticker; end: the
 * brigade ends the response (EOS), or nothing more will be written. */
static apr_status_t pass_out(ap_filter_t *f, filter_ctx *fc, int end)
{
    apr_status_t rv;
    sse_ticker_enter(fc->tick);
    if (end) {
        fc->io.bytes += fc->io.queued;
        fc->io.queued = 0;
        rv = sse_stream_pass(&fc->io, fc->io.bb);
        apr_brigade_cleanup(fc->io.bb);
    }
    else {
        rv = sse_stream_flush(&fc->io);
    }
    sse_ticker_leave(fc->tick, end || rv != APR_SUCCESS);
    /* after the first write, once the headers are out */
    if (rv == APR_SUCCESS && !end && !fc->tick_checked) start_ticker(f, fc);
    return rv;
}

/* A restart: the response ends here, cleanly, so the client reconnects to
 * the new generation now; the caller's error makes the generator stop. */
static void end_for_stop(ap_filter_t *f, filter_ctx *fc)
{
    if (!sse_ticker_ended(fc->tick)) {
        sse_stream_add(&fc->io, ": server restarting\n\n", 21);
        APR_BRIGADE_INSERT_TAIL(fc->io.bb, apr_bucket_eos_create(
                                    fc->io.c->bucket_alloc));
        pass_out(f, fc, 1);
    }
    /* the reconnect must go to the new generation */
    f->c->keepalive = AP_CONN_CLOSE;
    fc->stopped = 1;
}

static apr_status_t write_out(ap_filter_t *f, filter_ctx *fc)
{
    if (APR_BRIGADE_EMPTY(fc->io.bb)) return APR_SUCCESS;
    return pass_out(f, fc, 0);
}

/* One wait for more output from b (which had nothing to read), keeping
 * the client's connection alive and noticing when it goes. */
static apr_status_t await_output(ap_filter_t *f, filter_ctx *fc,
                                 apr_bucket *b)
{
    apr_interval_time_t wait = fc->io.max_wait;
    apr_status_t rv;
    if (sse_notify_stopping()) {
        end_for_stop(f, fc);
        return APR_ECONNABORTED;
    }
    if (fc->io.keepalive_sec) {
        apr_time_t due = fc->io.last_write
                         + apr_time_from_sec(fc->io.keepalive_sec);
        apr_time_t now = apr_time_now();
        if (now >= due) {
            sse_stream_add(&fc->io, ": keepalive\n\n", 13);
            return pass_out(f, fc, 0);
        }
        if (due - now < wait) wait = due - now;
    }
    if (sse_stream_client_gone(&fc->io)) {
        fc->io.c->aborted = 1;
        return APR_ECONNABORTED;
    }
    /* look at the client and the child's state at least once a second */
    if (wait > apr_time_from_sec(1)) wait = apr_time_from_sec(1);
    if (b->type == &apr_bucket_type_pipe) {
        apr_pollfd_t pfd;
        apr_int32_t n = 0;
        memset(&pfd, 0, sizeof(pfd));
        pfd.p = fc->io.scratch;
        pfd.desc_type = APR_POLL_FILE;
        pfd.reqevents = APR_POLLIN;
        pfd.desc.f = b->data;
        rv = apr_poll(&pfd, 1, &n, wait);
        return rv == APR_SUCCESS || APR_STATUS_IS_TIMEUP(rv)
               || APR_STATUS_IS_EINTR(rv) ? APR_SUCCESS : rv;
    }
    if (fc->backoff < wait) wait = fc->backoff;
    apr_sleep(wait);
    fc->backoff = fc->backoff * 2 < MAX_BACKOFF ? fc->backoff * 2
                                                : MAX_BACKOFF;
    return APR_SUCCESS;
}

static void note_response(filter_ctx *fc, const char *end)
{
    request_rec *r = fc->io.r;
    if (apr_table_get(r->notes, "sse-end")) return;   /* ended before */
    apr_table_setn(r->notes, "sse-events", apr_psprintf(r->pool,
                   "%" APR_UINT64_T_FMT, fc->io.delivered));
    apr_table_setn(r->notes, "sse-bytes", apr_psprintf(r->pool,
                   "%" APR_UINT64_T_FMT, fc->io.bytes));
    apr_table_setn(r->notes, "sse-end", end);
}

static filter_ctx *filter_start(ap_filter_t *f)
{
    request_rec *r = f->r;
    const sse_dir_conf *dc = sse_config_dir(r);
    const char *last = apr_table_get(r->headers_in, "Last-Event-ID");
    filter_ctx *fc = apr_pcalloc(r->pool, sizeof(*fc));
    apr_uint64_t resume_from;

    sse_stream_io_init(&fc->io, r, f);
    sse_stream_io_begin(&fc->io);
    fc->mode = dc->filter_mode >= 0 ? dc->filter_mode : SSE_FILTER_LINES;
    fc->event = dc->filter_event;
    fc->max_event = sse_config_server(ap_server_conf)->max_message_size;
    fc->backoff = apr_time_from_msec(1);
    fc->next_id = last && sse_id_parse(last, &resume_from) == 0
                  && resume_from < APR_UINT64_MAX ? resume_from + 1 : 1;
    apr_pool_cleanup_register(r->pool, fc, free_pending,
                              apr_pool_cleanup_null);
    sse_stream_set_headers(r);
    /* a range of an endless stream means nothing; the byterange filter
     * would apply it to the last write */
    apr_table_unset(r->headers_in, "Range");
    apr_table_unset(r->headers_out, "ETag");
    apr_table_unset(r->headers_out, "Last-Modified");
    apr_table_unset(r->headers_out, "Accept-Ranges");
    sse_stream_add_opening(&fc->io, dc->retry_ms);
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, SSE_LOGNO(00501)
                  "output filter makes events (%s), first id %"
                  APR_UINT64_T_FMT, fc->mode == SSE_FILTER_LINES ? "lines"
                  : "flush", fc->next_id);
    return fc;
}

static apr_status_t sse_output_filter(ap_filter_t *f, apr_bucket_brigade *bb)
{
    request_rec *r = f->r;
    filter_ctx *fc = f->ctx;
    apr_status_t rv = APR_SUCCESS;

    if (!fc) {
        if (r->status != HTTP_OK || r->main) {
            ap_remove_output_filter(f);
            return ap_pass_brigade(f->next, bb);
        }
        const char *encoding = r->content_encoding ? r->content_encoding
                               : apr_table_get(r->headers_out,
                                               "Content-Encoding");
        if (!encoding) {
            /* CGI, FastCGI, SCGI put a script's Content-Encoding here */
            encoding = apr_table_get(r->err_headers_out, "Content-Encoding");
        }
        if (encoding && strcasecmp(encoding, "identity")) {
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, SSE_LOGNO(00502)
                          "SSE output filter: the generator's output is "
                          "encoded (%s), so it is passed on unchanged; "
                          "unset Accept-Encoding for its backend",
                          encoding);
            ap_remove_output_filter(f);
            return ap_pass_brigade(f->next, bb);
        }
        if (r->header_only) {
            sse_stream_set_headers(r);
            ap_remove_output_filter(f);
            return ap_pass_brigade(f->next, bb);
        }
        f->ctx = fc = filter_start(f);
    }
    if (sse_ticker_broken(fc->tick)) {
        f->c->aborted = 1;
    }
    if (!fc->stopped && !f->c->aborted && sse_notify_stopping()) {
        /* a generator that never waits here (mod_proxy) ends at its next
         * write */
        end_for_stop(f, fc);
        note_response(fc, "stopping");
        apr_brigade_cleanup(bb);
        return APR_ECONNABORTED;
    }
    while (!APR_BRIGADE_EMPTY(bb)) {
        apr_bucket *b = APR_BRIGADE_FIRST(bb);
        const char *data;
        apr_size_t len;

        if (fc->stopped) {
            /* ended already (a restart): nothing more */
            apr_bucket_delete(b);
            continue;
        }
        if (f->c->aborted) {
            /* the client is gone: the generator may stop */
            apr_brigade_cleanup(bb);
            rv = APR_ECONNABORTED;
            break;
        }
        if (APR_BUCKET_IS_EOS(b)) {
            take_pause(fc, 1);
            APR_BUCKET_REMOVE(b);
            APR_BRIGADE_INSERT_TAIL(fc->io.bb, b);
            rv = pass_out(f, fc, 1);
            note_response(fc, rv == APR_SUCCESS ? "done" : "client-gone");
            apr_brigade_cleanup(bb);
            return rv;
        }
        if (APR_BUCKET_IS_FLUSH(b)) {
            take_pause(fc, 0);
            apr_bucket_delete(b);
            if ((rv = pass_out(f, fc, 0)) != APR_SUCCESS) break;
            continue;
        }
        if (APR_BUCKET_IS_METADATA(b)) {
            APR_BUCKET_REMOVE(b);
            APR_BRIGADE_INSERT_TAIL(fc->io.bb, b);
            continue;
        }
        rv = apr_bucket_read(b, &data, &len, APR_NONBLOCK_READ);
        if (APR_STATUS_IS_EAGAIN(rv)) {
            take_pause(fc, 0);
            if ((rv = write_out(f, fc)) != APR_SUCCESS
                || (rv = await_output(f, fc, b)) != APR_SUCCESS) {
                break;
            }
            continue;
        }
        if (rv != APR_SUCCESS) break;
        fc->backoff = apr_time_from_msec(1);
        take(fc, data, len);
        apr_bucket_delete(b);
        /* a generator that never pauses (or a file) is written as it
         * goes, not gathered whole */
        if (fc->io.queued >= WRITE_AT && (rv = write_out(f, fc))
                                         != APR_SUCCESS) {
            break;
        }
    }
    if (rv == APR_SUCCESS && (rv = write_out(f, fc)) == APR_SUCCESS) {
        return APR_SUCCESS;
    }
    /* httpd sends no EOS down an aborted connection: note the end now */
    note_response(fc, fc->stopped || sse_ticker_ended(fc->tick)
                      ? "stopping" : f->c->aborted
                      ? "client-gone" : "generator-error");
    return rv;
}

/* A backend asked for compressed output would send bytes the filter
 * cannot cut into lines: ask for it plain where SetOutputFilter put the
 * filter (AddOutputFilterByType decides later; then an encoded answer is
 * passed on unchanged). */
static void plain_from_generator(request_rec *r)
{
    ap_filter_t *f;
    for (f = r->output_filters; f; f = f->next) {
        if (!strcasecmp(f->frec->name, SSE_FILTER_NAME)) {
            apr_table_unset(r->headers_in, "Accept-Encoding");
            return;
        }
    }
}

void sse_filter_register_hooks(void)
{
    ap_hook_insert_filter(plain_from_generator, NULL, NULL,
                          APR_HOOK_REALLY_LAST);
    ap_register_output_filter(SSE_FILTER_NAME, sse_output_filter, NULL,
                              AP_FTYPE_RESOURCE);
}
