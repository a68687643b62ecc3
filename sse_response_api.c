/* sse_response_api.c - the stream API of mod_sse.h: another module's
 * handler answers its own request as an event stream, pushes its own
 * events, and may join channels. Everything on the wire is what the
 * sse-stream handler writes on its thread path (sse_stream_io.c).
 */
#include "apr_strings.h"
#include "http_protocol.h"

#include "mod_sse.h"
#include "sse_private.h"
#include "sse_config.h"
#include "sse_event.h"
#include "sse_store.h"
#include "sse_notify.h"
#include "sse_request.h"
#include "sse_stream_io.h"
#include "sse_response_api.h"

struct sse_response {
    sse_stream_io io;
    int closed;
    apr_status_t ended;        /* why a send or wait said the stream is
                                  over, APR_SUCCESS while it is not */
    unsigned char client_buf[16];
};

static apr_status_t join(sse_response *s, const char *const *channels,
                         int n)
{
    request_rec *r = s->io.r;
    apr_array_header_t *names;
    const char *which = NULL;
    sse_resume resume = SSE_RESUME_NONE;
    int i;

    if (n > SSE_MAX_STREAM_CHANNELS) return APR_EINVAL;
    names = apr_array_make(r->pool, n, sizeof(const char *));
    for (i = 0; i < n; i++) {
        if (!channels[i]
            || sse_channel_name_problem(channels[i], strlen(channels[i]))) {
            return APR_EINVAL;
        }
        APR_ARRAY_PUSH(names, const char *) = channels[i];
    }
    if (!(s->io.store = sse_current_store()) || sse_child_row() < 0) {
        return APR_ENOTIMPL;
    }
    s->io.last_id_text = apr_table_get(r->headers_in, "Last-Event-ID");
    s->io.sub.on_thread = 1;
    switch (sse_store_subscribe(s->io.store, sse_child_row(), channels, n,
                                sse_config_autocreate(sse_config_dir(r)),
                                sse_request_client_address(r, s->client_buf),
                                s->io.last_id_text, &s->io.sub, &resume,
                                &which)) {
    case SSE_OK:
        break;
    case SSE_NOT_FOUND:
        return APR_ENOENT;
    case SSE_BUSY:
    case SSE_CLIENT_LIMIT:
    case SSE_TABLE_FULL:
        return APR_EAGAIN;
    default:
        return APR_ENOTIMPL;
    }
    s->io.subscribed = 1;
    s->io.reset = resume == SSE_RESUME_EXACT ? SSE_RESUME_NONE : resume;
    apr_table_setn(r->notes, "sse-channels",
                   apr_array_pstrcat(r->pool, names, ','));
    return APR_SUCCESS;
}

/* A handler that returns without closing still leaves its channels. */
static apr_status_t close_at_request_end(void *data)
{
    sse_response *s = data;
    if (!s->closed && s->io.subscribed) {
        sse_store_unsubscribe(s->io.store, &s->io.sub);
        s->io.subscribed = 0;
    }
    return APR_SUCCESS;
}

static apr_status_t sse_response_open(request_rec *r,
                                      const char *const *channels,
                                      int nchannels, sse_response **out)
{
    sse_response *s = apr_pcalloc(r->pool, sizeof(*s));
    apr_status_t rv;

    if (r->header_only) {
        /* HEAD: the headers are all there is; they go out when the
         * handler returns */
        sse_stream_set_headers(r);
        return APR_EOF;
    }
    sse_stream_io_init(&s->io, r, NULL);
    if (nchannels > 0 && (rv = join(s, channels, nchannels)) != APR_SUCCESS) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, rv, r, SSE_LOGNO(00601)
                      "stream API: channels not joined");
        return rv;
    }
    sse_stream_io_begin(&s->io);
    sse_stream_set_headers(r);
    sse_stream_add_opening(&s->io, sse_config_dir(r)->retry_ms);
    s->io.seen = sse_notify_generation();
    if (s->io.subscribed) {
        /* the opening and any replay go out together */
        rv = sse_stream_send_news(&s->io);
        if (rv == APR_SUCCESS && !APR_BRIGADE_EMPTY(s->io.bb)) {
            rv = sse_stream_flush(&s->io);
        }
    }
    else {
        rv = sse_stream_flush(&s->io);
    }
    apr_pool_cleanup_register(r->pool, s, close_at_request_end,
                              apr_pool_cleanup_null);
    *out = s;
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, rv, r, SSE_LOGNO(00602)
                  "stream API: response opened, %d channel(s)", nchannels);
    /* the stream is open even when the client left already: that shows
     * at the first send or wait, as the caller expects it to */
    return APR_SUCCESS;
}

static apr_status_t note_end(sse_response *s, apr_status_t rv)
{
    if (rv != APR_SUCCESS && rv != APR_TIMEUP && s->ended == APR_SUCCESS) {
        s->ended = rv;
    }
    return rv;
}

/* Non-zero when the text may go on an id: line. */
static int id_ok(const char *id)
{
    return id[strcspn(id, "\r\n")] == '\0';
}

static apr_status_t sse_response_send(sse_response *s,
                                      const sse_response_event *events,
                                      int n)
{
    int i;
    if (s->closed || n < 0) return APR_EINVAL;
    for (i = 0; i < n; i++) {
        const sse_response_event *ev = &events[i];
        if ((ev->event && sse_event_type_problem(ev->event,
                                                 strlen(ev->event)))
            || (ev->id && !id_ok(ev->id))
            || (!ev->data && ev->len)
            || (ev->len && !sse_utf8_valid(ev->data, ev->len))) {
            return APR_EINVAL;
        }
    }
    for (i = 0; i < n; i++) {
        const sse_response_event *ev = &events[i];
        sse_stream_add_event(&s->io, ev->id, ev->event,
                             ev->data ? ev->data : "", ev->len);
    }
    return note_end(s, sse_stream_flush(&s->io));
}

static apr_status_t sse_response_comment(sse_response *s, const char *text)
{
    if (s->closed || !text) return APR_EINVAL;
    sse_stream_add_comment(&s->io, text);
    return note_end(s, sse_stream_flush(&s->io));
}

static apr_status_t sse_response_wait(sse_response *s,
                                      apr_interval_time_t timeout)
{
    if (s->closed) return APR_EINVAL;
    return note_end(s, sse_stream_live(&s->io, apr_time_now()
                                   + (timeout > 0 ? timeout : 0) + 1));
}

static void sse_response_close(sse_response *s)
{
    request_rec *r = s->io.r;
    if (s->closed) return;
    s->closed = 1;
    if (s->io.subscribed) {
        sse_store_unsubscribe(s->io.store, &s->io.sub);
        s->io.subscribed = 0;
    }
    apr_table_setn(r->notes, "sse-events", apr_psprintf(r->pool,
                   "%" APR_UINT64_T_FMT, s->io.delivered));
    apr_table_setn(r->notes, "sse-bytes", apr_psprintf(r->pool,
                   "%" APR_UINT64_T_FMT, s->io.bytes));
    apr_table_setn(r->notes, "sse-end",
                   s->ended == APR_SUCCESS ? "closed"
                   : s->ended == APR_EOF ? "deleted"
                   : s->ended == APR_EINTR ? "stopping" : "client-gone");
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, SSE_LOGNO(00603)
                  "stream API: response closed after %" APR_UINT64_T_FMT
                  " events", s->io.delivered);
}

void sse_response_api_register(void)
{
    APR_REGISTER_OPTIONAL_FN(sse_response_open);
    APR_REGISTER_OPTIONAL_FN(sse_response_send);
    APR_REGISTER_OPTIONAL_FN(sse_response_comment);
    APR_REGISTER_OPTIONAL_FN(sse_response_wait);
    APR_REGISTER_OPTIONAL_FN(sse_response_close);
}
