/* sse_config.h - mod_sse's directives: server-wide store settings and
 * per-location stream settings, with their defaults.
 */
#ifndef SSE_CONFIG_H
#define SSE_CONFIG_H

#include "httpd.h"
#include "http_config.h"
#include "ap_expr.h"

#include "sse_redis.h"

#define SSE_DEFAULT_SHM_SIZE        (32 * 1024 * 1024)
#define SSE_MIN_SHM_SIZE            (64 * 1024)
#define SSE_DEFAULT_MAX_CHANNELS    1024
#define SSE_DEFAULT_HISTORY_SIZE    100
#define SSE_DEFAULT_MAX_MESSAGE     (64 * 1024)
#define SSE_DEFAULT_KEEPALIVE_SEC   15
#define SSE_DEFAULT_TOKEN_COOKIE    "sse_token"
#define SSE_DEFAULT_MAX_PENDING     (64 * 1024)
/* Streams wake at least this often to check the client, even without
 * keepalive comments. */
#define SSE_MAX_IDLE_WAIT_SEC       15

/* Server-wide settings; only the main server's values are used. */
typedef struct {
    apr_size_t shm_size;          /* SSESharedMemorySize */
    apr_uint32_t max_channels;    /* SSEMaxChannels */
    apr_uint32_t history_size;    /* SSEHistorySize */
    apr_interval_time_t history_max_age; /* SSEHistoryMaxAge, 0 = none */
    apr_size_t max_message_size;  /* SSEMaxMessageSize */
    int max_subscribers;          /* SSEMaxSubscribers, 0 = derived */
    int max_per_channel;          /* SSEMaxSubscribersPerChannel, 0 = none */
    int max_per_client;           /* SSEMaxStreamsPerClient, 0 = derived */
    apr_size_t max_pending;       /* SSEMaxPendingBytes */
    sse_redis_conf redis;         /* SSERedis; host NULL: not set */
} sse_server_conf;

/* One SSEChannel: a fixed name, or an expression evaluated per request
 * after authentication ("user-%{REMOTE_USER}"). */
typedef struct {
    const char *text;             /* as configured */
    ap_expr_info_t *expr;         /* NULL for a fixed name */
} sse_channel_pin;

/* Per-location settings of sse-stream. -1 means "not set here". */
typedef struct {
    apr_array_header_t *channels; /* SSEChannel pins (sse_channel_pin) */
    apr_array_header_t *cors_origins; /* SSECorsOrigins: lower-case
                                     "scheme://host[:port]" or "*" */
    const struct sse_jwt_key *token_key; /* SSETokenKey: tokens required */
    const char *token_audience;   /* SSETokenAudience, NULL = none */
    const char *token_cookie;     /* SSETokenCookie, NULL = default */
    int autocreate;               /* SSEAutoCreate */
    int retry_ms;                 /* SSERetry, -1 = don't send */
    int keepalive_sec;            /* SSEKeepAlive, 0 = off */
    int hand_off;                 /* SSEHandOff: streams leave their thread */
    int filter_mode;              /* SSEFilterMode, -1 = default (lines) */
    const char *filter_event;     /* SSEFilterEvent, NULL = "message" */
} sse_dir_conf;

/* How the SSE output filter cuts what a generator writes into events. */
#define SSE_FILTER_LINES 0        /* one event per line */
#define SSE_FILTER_FLUSH 1        /* one event per flush or pause */

extern const command_rec sse_cmds[];

void *sse_create_server_conf(apr_pool_t *p, server_rec *s);
void *sse_create_dir_conf(apr_pool_t *p, char *dir);
void *sse_merge_dir_conf(apr_pool_t *p, void *basev, void *addv);

const sse_server_conf *sse_config_server(const server_rec *s);
const sse_dir_conf *sse_config_dir(const request_rec *r);

/* An origin as browsers write it in Origin: lower case, without the
 * scheme's default port. */
char *sse_origin_canonical(apr_pool_t *p, const char *origin);

/* Effective values with defaults applied. */
int sse_config_autocreate(const sse_dir_conf *dc);
int sse_config_keepalive(const sse_dir_conf *dc);
int sse_config_hand_off(const sse_dir_conf *dc);
const char *sse_config_token_cookie(const sse_dir_conf *dc);

#endif /* SSE_CONFIG_H */
