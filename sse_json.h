/* sse_json.h - the little JSON mod_sse needs: parsing publish envelopes and
 * quoting strings for replies. APR only.
 */
#ifndef SSE_JSON_H
#define SSE_JSON_H

#include "apr_pools.h"
#include "apr_tables.h"

#include "sse_event.h"

/* Parses a publish body: one envelope {"data":..,"event":..,"retry":..} or
 * an array of them. Appends one sse_event per envelope to *events (created
 * from p). A string data is decoded; any other JSON value is kept as its
 * JSON text. Returns NULL on success, else a message for the publisher. */
const char *sse_json_parse_envelopes(apr_pool_t *p, const char *body,
                                     apr_size_t len,
                                     apr_array_header_t **events);

/* Returns s[0..len) as a quoted JSON string, allocated from p. */
char *sse_json_quote(apr_pool_t *p, const char *s, apr_size_t len);

#endif /* SSE_JSON_H */
