/* sse_query.c - query-string decoding that keeps exact bytes: a %00 or
 * %0A in an event type must reach validation (and be refused there), not be
 * cut short or silently rewritten.
 */
#include <string.h>

#include "apr_strings.h"
#include "apr_lib.h"

#include "sse_query.h"

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes s[0..len) into a new buffer; returns -1 on a bad escape. */
static int decode(apr_pool_t *p, const char *s, apr_size_t len,
                  char **out, apr_size_t *outlen)
{
    char *buf = apr_palloc(p, len + 1), *w = buf;
    apr_size_t i;
    for (i = 0; i < len; i++) {
        if (s[i] == '+') {
            *w++ = ' ';
        }
        else if (s[i] == '%') {
            int hi, lo;
            if (i + 2 >= len) return -1;
            hi = hexval(s[i + 1]);
            lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0) return -1;
            *w++ = (char)(hi * 16 + lo);
            i += 2;
        }
        else {
            *w++ = s[i];
        }
    }
    *w = '\0';
    *out = buf;
    *outlen = (apr_size_t)(w - buf);
    return 0;
}

apr_array_header_t *sse_query_parse(apr_pool_t *p, const char *args)
{
    apr_array_header_t *params = apr_array_make(p, 4, sizeof(sse_query_param));
    const char *s = args ? args : "";
    while (*s) {
        const char *end = strchr(s, '&'), *eq;
        apr_size_t len = end ? (apr_size_t)(end - s) : strlen(s);
        sse_query_param *qp;
        char *name, *value;
        apr_size_t nlen, vlen;
        eq = memchr(s, '=', len);
        if (len) {
            apr_size_t klen = eq ? (apr_size_t)(eq - s) : len;
            if (decode(p, s, klen, &name, &nlen)) return NULL;
            if (eq) {
                if (decode(p, eq + 1, len - klen - 1, &value, &vlen)) {
                    return NULL;
                }
            }
            else {
                value = "";
                vlen = 0;
            }
            qp = apr_array_push(params);
            qp->name = name;
            qp->name_len = nlen;
            qp->value = value;
            qp->value_len = vlen;
        }
        s += len;
        if (*s == '&') s++;
    }
    return params;
}

/* Compared whole, as JSON keys are: a name with %00 in it must not pass
 * for the shorter name before the NUL. */
int sse_query_is(const sse_query_param *qp, const char *name)
{
    return qp->name_len == strlen(name)
           && !memcmp(qp->name, name, qp->name_len);
}

const sse_query_param *sse_query_get(const apr_array_header_t *params,
                                     const char *name)
{
    int i;
    for (i = params->nelts - 1; i >= 0; i--) {
        const sse_query_param *qp = &APR_ARRAY_IDX(params, i, sse_query_param);
        if (sse_query_is(qp, name)) return qp;
    }
    return NULL;
}
