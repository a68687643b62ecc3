/* sse_query.h - decoding a query string into name/value pairs. APR only. */
#ifndef SSE_QUERY_H
#define SSE_QUERY_H

#include "apr_tables.h"

typedef struct {
    const char *name;        /* NUL-terminated, may also contain NULs */
    apr_size_t name_len;
    const char *value;       /* NUL-terminated, may also contain NULs */
    apr_size_t value_len;
} sse_query_param;

/* Splits args at '&', decodes %XX and '+'. Returns sse_query_param
 * entries, or NULL when an escape is malformed. */
apr_array_header_t *sse_query_parse(apr_pool_t *p, const char *args);

/* Non-zero when the parameter's whole decoded name is name ("a%00b" is
 * not "a"). */
int sse_query_is(const sse_query_param *qp, const char *name);

/* The last parameter named name, or NULL. */
const sse_query_param *sse_query_get(const apr_array_header_t *params,
                                     const char *name);

#endif /* SSE_QUERY_H */
