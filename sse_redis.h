/* sse_redis.h - several servers sharing channels, history and ids through
 * Redis (SSERedis). */
#ifndef SSE_REDIS_H
#define SSE_REDIS_H

#include "httpd.h"

struct sse_store;

/* SSERedis redis://[user:password@]host:port[/db] */
typedef struct {
    const char *url;           /* as configured; NULL: not set */
    const char *host;
    int port;
    const char *user, *password;
    int db;
} sse_redis_conf;

/* NULL when url is valid (fills *out), else what is wrong. */
const char *sse_redis_parse_url(apr_pool_t *p, const char *url,
                                sse_redis_conf *out);

/* Non-zero in a child whose server publishes through Redis. */
int sse_redis_enabled(void);

/* Publishes n framed events to channel through Redis: ids assigned there,
 * every server's mirror stores and delivers them. APR_SUCCESS with
 * *first_id, or an error with *why (Redis unreachable or refusing). */
apr_status_t sse_redis_publish(apr_pool_t *p, const char *channel,
                               const char *const *frames,
                               const apr_size_t *lens, int n,
                               apr_uint32_t history,
                               apr_interval_time_t max_age,
                               apr_uint64_t *first_id, const char **why);

/* Deletes the channel on every server: its stream in Redis, and every
 * mirror drops it (ending its streams) in order with the publishes. */
apr_status_t sse_redis_delete(apr_pool_t *p, const char *channel,
                              const char **why);

/* Parent, post_config of a real generation: forks this generation's
 * mirror process (stopped with pconf). */
apr_status_t sse_redis_start_mirror(apr_pool_t *pconf, server_rec *s,
                                    struct sse_store *st);

/* Child: the publishing connection. */
void sse_redis_child_init(apr_pool_t *pchild, server_rec *s);

#endif /* SSE_REDIS_H */
