/* sse_json.h - the little JSON mod_sse needs: parsing publish envelopes,
 * a small document parser (for JSON Web Tokens), and quoting strings for
 * replies. APR only.
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

typedef enum {
    SSE_JSON_NULL,
    SSE_JSON_FALSE,
    SSE_JSON_TRUE,
    SSE_JSON_NUMBER,
    SSE_JSON_STRING,
    SSE_JSON_ARRAY,
    SSE_JSON_OBJECT
} sse_json_type;

/* One value of a parsed document. Everything lives in the pool given to
 * sse_json_parse(); nothing points into the parsed text. */
typedef struct sse_json_value sse_json_value;
struct sse_json_value {
    sse_json_type type;
    const char *str;        /* STRING: decoded UTF-8, NUL-terminated, but
                             * may hold NULs (\u0000): use len.
                             * NUMBER: its JSON text, e.g. "-1.5e3" */
    apr_size_t len;         /* bytes in str */
    const char *key;        /* member of an object: its decoded key,
                             * NUL-terminated (use key_len); else NULL */
    apr_size_t key_len;
    apr_size_t count;       /* ARRAY, OBJECT: number of members */
    sse_json_value *child;  /* ARRAY, OBJECT: first member, NULL if empty */
    sse_json_value *next;   /* next member of the parent, in document order */
};

/* Parses text[0..len) as one JSON value (RFC 8259, strictly: no comments,
 * no trailing commas, no byte order mark, UTF-8 only, no lone
 * surrogates). Objects with a key given twice are refused. Arrays and
 * objects may nest at most max_depth deep ("[[1]]" is 2 deep); parsing
 * recurses once per level, so keep max_depth small (at most a few
 * hundred). Memory used from p is linear in len.
 * Returns NULL and sets *out on success; else *out is NULL and the return
 * value is a static message saying what is wrong (it never quotes the
 * text, so it is safe to log for secrets such as tokens). */
const char *sse_json_parse(apr_pool_t *p, const char *text, apr_size_t len,
                           int max_depth, sse_json_value **out);

/* Returns the member of obj with the given key, or NULL when there is
 * none or obj is NULL or not an object. */
const sse_json_value *sse_json_get(const sse_json_value *obj,
                                   const char *key);

/* Reads an integral number: an optional '-' and digits, no fraction or
 * exponent (so 1.0 and 1e3 are refused), within apr_int64_t.
 * Returns 0 and sets *out on success; -1 when v is NULL, not a number, not
 * written as an integer, or out of range. */
int sse_json_int64(const sse_json_value *v, apr_int64_t *out);

/* Returns s[0..len) as a quoted JSON string, allocated from p. */
char *sse_json_quote(apr_pool_t *p, const char *s, apr_size_t len);

#endif /* SSE_JSON_H */
