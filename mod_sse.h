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

#include "apr_optional.h"

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

#endif /* MOD_SSE_H */
