/* sse_publish.c - the one publish path: validate every event, frame each
 * once, store them all under one lock with consecutive ids, wake every
 * child. Used by the admin API and by other modules through mod_sse.h.
 */
#include "apr_strings.h"
#include "http_main.h"

#include "mod_sse.h"
#include "sse_private.h"
#include "sse_config.h"
#include "sse_store.h"
#include "sse_notify.h"
#include "sse_publish.h"
#include "sse_redis.h"

static int refuse(sse_publish_result *result, int status, const char *error)
{
    result->status = status;
    result->error = error;
    if (sse_current_store()) sse_store_count_rejected(sse_current_store());
    return status;
}

const char *sse_publish_event_problem(apr_pool_t *p, const sse_event *ev,
                                      int *status)
{
    apr_size_t max_size = sse_config_server(ap_server_conf)->max_message_size;
    const char *why;
    *status = HTTP_BAD_REQUEST;
    if (ev->event && (why = sse_event_type_problem(ev->event, ev->event_len))) {
        return why;
    }
    if (ev->data_len > max_size) {
        *status = HTTP_REQUEST_ENTITY_TOO_LARGE;
        return apr_psprintf(p, "event data of %" APR_SIZE_T_FMT " bytes is "
                            "larger than SSEMaxMessageSize (%" APR_SIZE_T_FMT
                            ")", ev->data_len, max_size);
    }
    if (!sse_utf8_valid(ev->data, ev->data_len)) {
        return "event data is not valid UTF-8";
    }
    return NULL;
}

/* Several servers (SSERedis): Redis assigns the ids and every server's
 * mirror stores the events; the subscribers counted are this server's. */
static void publish_through_redis(apr_pool_t *p, sse_store *st,
                                  const char *channel, const char **frames,
                                  const apr_size_t *lens, int n,
                                  sse_publish_result *result)
{
    apr_uint32_t history = sse_store_get_limits(st)->history_size;
    sse_channel_info info;
    const char *why;
    if ((apr_uint32_t)n > history) {
        refuse(result, HTTP_REQUEST_ENTITY_TOO_LARGE, apr_psprintf(p,
               "a batch of %d events is longer than SSEHistorySize (%u)",
               n, history));
        return;
    }
    if (sse_redis_publish(p, channel, frames, lens, n, history,
                          sse_store_get_limits(st)->history_max_age,
                          &result->first_id, &why) != APR_SUCCESS) {
        refuse(result, HTTP_SERVICE_UNAVAILABLE, why);
        return;
    }
    result->subscribers = sse_store_channel_info(st, channel, &info) == SSE_OK
                          ? info.subscribers : 0;
}

void sse_publish_events(apr_pool_t *p, const char *channel,
                        const apr_array_header_t *events,
                        sse_publish_result *result)
{
    sse_store *st = sse_current_store();
    const sse_server_conf *conf = sse_config_server(ap_server_conf);
    const char **frames;
    apr_size_t *lens;
    const char *why;
    int i, status;

    result->status = HTTP_CREATED;
    result->error = NULL;
    if (!st) {
        refuse(result, HTTP_SERVICE_UNAVAILABLE, "the event store is not "
               "available (see the error log)");
        return;
    }
    if ((why = sse_channel_name_problem(channel, strlen(channel)))) {
        refuse(result, HTTP_BAD_REQUEST,
               apr_pstrcat(p, "channel name ", why, NULL));
        return;
    }
    frames = apr_palloc(p, sizeof(*frames) * (apr_size_t)events->nelts);
    lens = apr_palloc(p, sizeof(*lens) * (apr_size_t)events->nelts);
    for (i = 0; i < events->nelts; i++) {
        const sse_event *ev = &APR_ARRAY_IDX(events, i, sse_event);
        if ((why = sse_publish_event_problem(p, ev, &status))) {
            refuse(result, status, events->nelts > 1
                   ? apr_psprintf(p, "envelope %d: %s", i, why) : why);
            return;
        }
        frames[i] = sse_event_frame(p, ev, &lens[i]);
    }
    if (sse_redis_enabled()) {
        publish_through_redis(p, st, channel, frames, lens, events->nelts,
                              result);
        return;
    }
    switch (sse_store_publish(st, channel, frames, lens, events->nelts,
                              &result->first_id, &result->subscribers)) {
    case SSE_OK:
        /* Subscribing and publishing both hold the store lock, so a stream
         * that was not counted here subscribed after this event and never
         * waits for it: with nobody to wake, no child is disturbed. */
        if (result->subscribers) sse_notify_all(sse_store_wake_word(st));
        return;
    case SSE_MEMORY_FULL:
        refuse(result, HTTP_INSUFFICIENT_STORAGE, "shared memory is full: "
               "raise SSESharedMemorySize or lower SSEHistorySize");
        return;
    case SSE_TABLE_FULL:
        refuse(result, HTTP_INSUFFICIENT_STORAGE, apr_psprintf(p,
               "channel table is full: all %u channels hold messages or "
               "subscribers (SSEMaxChannels)", conf->max_channels));
        return;
    case SSE_TOO_MANY:
        refuse(result, HTTP_REQUEST_ENTITY_TOO_LARGE, apr_psprintf(p,
               "a batch of %d events is longer than SSEHistorySize (%u)",
               events->nelts, sse_store_get_limits(st)->history_size));
        return;
    default:
        refuse(result, HTTP_INTERNAL_SERVER_ERROR, "unexpected store result");
        return;
    }
}

static apr_status_t sse_publish(const char *channel, const char *event,
                                const char *data, apr_size_t len,
                                apr_uint64_t *id, int *subscribers)
{
    apr_pool_t *p;
    apr_array_header_t *events;
    sse_event *ev;
    sse_publish_result result;

    if (!sse_current_store() || sse_child_row() < 0) {
        return APR_ENOTIMPL;
    }
    if (!channel || (!data && len)) {
        return APR_EINVAL;
    }
    apr_pool_create(&p, NULL);
    events = apr_array_make(p, 1, sizeof(sse_event));
    ev = apr_array_push(events);
    ev->event = event;
    ev->event_len = event ? strlen(event) : 0;
    ev->data = data ? data : "";
    ev->data_len = len;
    ev->retry = -1;
    sse_publish_events(p, channel, events, &result);
    apr_pool_destroy(p);
    if (result.status == HTTP_CREATED) {
        if (id) *id = result.first_id;
        if (subscribers) *subscribers = (int)result.subscribers;
        return APR_SUCCESS;
    }
    return result.status == HTTP_INSUFFICIENT_STORAGE ? APR_ENOSPC
         : result.status == HTTP_SERVICE_UNAVAILABLE ? APR_ENOTIMPL
         : APR_EINVAL;
}

void sse_publish_register(void)
{
    APR_REGISTER_OPTIONAL_FN(sse_publish);
}
