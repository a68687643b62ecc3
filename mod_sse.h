/* mod_sse.h - public C API of mod_sse, for other httpd modules.
 *
 * Everything here is an APR optional function, so a module that uses it
 * neither links against mod_sse nor depends on module load order. Retrieve
 * the pointer in an optional_fn_retrieve hook; it is NULL when mod_sse is not
 * loaded:
 *
 *     static APR_OPTIONAL_FN_TYPE(sse_publish) *sse_publish_fn;
 *     static void retrieve(void)
 *     {
 *         sse_publish_fn = APR_RETRIEVE_OPTIONAL_FN(sse_publish);
 *     }
 *     ...
 *     ap_hook_optional_fn_retrieve(retrieve, NULL, NULL, APR_HOOK_MIDDLE);
 */
#ifndef MOD_SSE_H
#define MOD_SSE_H

#include "httpd.h"
#include "apr_optional.h"
#include "apr_time.h"

#define MOD_SSE_VERSION     "0.1.0"
/* 8 bits each: major, minor, patch */
#define MOD_SSE_VERSION_NUM 0x000100

/**
 * Publish one event to a channel, exactly as a POST to the admin API does:
 * the channel is created if needed, the server assigns the id, every
 * subscriber of the channel in every child process is woken.
 *
 * Callable from any thread of a child process (after child_init); not from
 * the parent process. Does no network I/O; holds the store lock only for a
 * copy of the event.
 *
 * @param channel      channel name (1-128 bytes of A-Z a-z 0-9 _ - . : @ ~)
 * @param event        event type, or NULL for the default "message"
 * @param data         event data, UTF-8; split into data: lines at CR/LF/CRLF
 * @param len          length of data in bytes
 * @param id           if not NULL, receives the id the subscribers will see
 * @param subscribers  if not NULL, receives the subscriber count of the
 *                     channel at publish time (all children)
 * @return APR_SUCCESS
 *         APR_EINVAL   bad channel name, event type with CR/LF/NUL, data or
 *                      event not UTF-8, data over SSEMaxMessageSize
 *         APR_ENOSPC   shared memory or channel table full
 *         APR_ENOTIMPL the store is not available in this process
 */
APR_DECLARE_OPTIONAL_FN(apr_status_t, sse_publish,
                        (const char *channel, const char *event,
                         const char *data, apr_size_t len,
                         apr_uint64_t *id, int *subscribers));

/* ---- Streams of your own -------------------------------------------------
 *
 * A handler of another module answers its request as an event stream and
 * pushes its own events, with what sse-stream gives its streams: the
 * headers, UTF-8 framing (multi-line data split into data: lines), a FLUSH
 * per write, keepalive comments (SSEKeepAlive of the request's location),
 * SSERetry, noticing a client that left, ending cleanly when the server
 * restarts. It may also join channels, whose events then arrive
 * interleaved with its own:
 *
 *     sse_response *s;
 *     const char *chans[] = { "announcements" };
 *     apr_status_t rv = open_fn(r, chans, 1, &s);
 *     if (rv == APR_EOF) return OK;           (HEAD: the headers only)
 *     if (rv != APR_SUCCESS) return HTTP_SERVICE_UNAVAILABLE;
 *     while (wait_fn(s, apr_time_from_sec(1)) == APR_TIMEUP) {
 *         sse_response_event ev = { "tick", NULL, "1", 1 };
 *         if (send_fn(s, &ev, 1) != APR_SUCCESS) break;
 *     }
 *     close_fn(s);
 *     return OK;
 *
 * The stream holds the handler's worker thread (it is not handed off to
 * the writer). Use one sse_response from one thread. The channels a
 * handler joins are its choice: it is responsible for who may read them
 * (httpd's access control still applies to its own URL).
 */

typedef struct sse_response sse_response;

/* One event to send. */
typedef struct {
    const char *event;   /* event type, NULL for "message"; no CR, LF or
                            NUL, and not starting with "sse-" */
    const char *id;      /* NULL: no id line (leave it NULL when channels
                            are joined, so the client resumes by their ids);
                            no CR, LF or NUL */
    const char *data;    /* UTF-8; may be NULL when len is 0 */
    apr_size_t len;
} sse_response_event;

/**
 * Starts an event-stream response on r: sends the headers, retry: (with
 * SSERetry), ": ok", and, when channels are given, subscribes to them and
 * replays what the client missed after its Last-Event-ID. Channel limits
 * (SSEMaxSubscribers and the others) apply.
 * @return APR_SUCCESS with *out set; otherwise nothing is sent and *out
 *         is left as it was:
 *         APR_EOF      a HEAD request: the stream headers are set, there is
 *                      nothing to stream; return OK
 *         APR_EINVAL   a bad channel name, more than 64 channels
 *         APR_EAGAIN   a subscriber limit is reached (answer 503)
 *         APR_ENOENT   a channel does not exist and SSEAutoCreate is Off
 *         APR_ENOTIMPL channels given but the store is not available
 */
APR_DECLARE_OPTIONAL_FN(apr_status_t, sse_response_open,
                        (request_rec *r, const char *const *channels,
                         int nchannels, sse_response **out));

/**
 * Sends n events with one write (a batch: several events, one FLUSH).
 * @return APR_SUCCESS; APR_EINVAL (nothing sent) for a bad event type or
 *         id, or data that is not UTF-8; APR_ECONNABORTED or another
 *         error once the client is gone.
 */
APR_DECLARE_OPTIONAL_FN(apr_status_t, sse_response_send,
                        (sse_response *s, const sse_response_event *events,
                         int n));

/** Sends a comment (": text"; every line of text becomes a comment line). */
APR_DECLARE_OPTIONAL_FN(apr_status_t, sse_response_comment,
                        (sse_response *s, const char *text));

/**
 * Keeps the stream alive for up to timeout: delivers the joined channels'
 * events as they come, sends keepalives, watches the client.
 * @return APR_TIMEUP       the time passed: send your own events, wait again
 *         APR_ECONNABORTED the client is gone
 *         APR_EOF          a joined channel was deleted
 *         APR_EINTR        the server is restarting or stopping (the client
 *                          was told and reconnects): close and return
 */
APR_DECLARE_OPTIONAL_FN(apr_status_t, sse_response_wait,
                        (sse_response *s, apr_interval_time_t timeout));

/** Ends the stream: leaves its channels, notes its figures for the access
 * log (a stream never closed leaves its channels when the request ends,
 * but logs no figures). Return from the handler afterwards (OK); httpd
 * ends the body. */
APR_DECLARE_OPTIONAL_FN(void, sse_response_close, (sse_response *s));

#endif /* MOD_SSE_H */
