/* fuzz_query.c - libFuzzer target for the query decoder (sse_query.c).
 *
 * The input is a query string (as httpd's r->args: it ends at the first
 * NUL). sse_query_parse must agree with the decoder written out below:
 * NULL exactly when some escape is malformed, else one parameter per
 * non-empty '&'-separated part, in order, with names and values decoded
 * byte for byte. sse_query_get must return the last parameter whose whole
 * decoded name is the name asked for.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apr_general.h"
#include "apr_strings.h"

#include "sse_query.h"
#include "fuzz.h"


typedef struct {
    char *name, *value;
    apr_size_t name_len, value_len;
} ref_param;

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* %XX with two hex digits, '+' for a space; -1 on a bad escape. */
static int ref_decode(const char *s, apr_size_t len, char **out,
                      apr_size_t *outlen)
{
    char *w = *out = apr_palloc(pool, len + 1);
    apr_size_t i;
    for (i = 0; i < len; i++) {
        if (s[i] == '%') {
            if (len - i < 3 || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0) {
                return -1;
            }
            *w++ = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        }
        else {
            *w++ = s[i] == '+' ? ' ' : s[i];
        }
    }
    *outlen = (apr_size_t)(w - *out);
    return 0;
}

/* Returns the number of parameters, or -1 for a malformed query. */
static int ref_parse(const char *q, ref_param *out, int max)
{
    int n = 0;
    while (*q) {
        apr_size_t len = strcspn(q, "&");
        if (len) {
            const char *eq = memchr(q, '=', len);
            apr_size_t nlen = eq ? (apr_size_t)(eq - q) : len;
            ref_param *rp = &out[n < max ? n : max - 1];
            if (ref_decode(q, nlen, &rp->name, &rp->name_len)) return -1;
            if (eq) {
                if (ref_decode(eq + 1, len - nlen - 1, &rp->value,
                               &rp->value_len)) {
                    return -1;
                }
            }
            else {
                rp->value = "";
                rp->value_len = 0;
            }
            n++;
        }
        q += len;
        if (*q == '&') q++;
    }
    return n;
}

/* The last parameter whose whole name is name, or -1. */
static int ref_get(const ref_param *rp, int n, const char *name)
{
    apr_size_t len = strlen(name);
    int i;
    for (i = n - 1; i >= 0; i--) {
        if (rp[i].name_len == len && !memcmp(rp[i].name, name, len)) {
            return i;
        }
    }
    return -1;
}

static void compare_get(const apr_array_header_t *params, const ref_param *rp,
                        int n, const char *name)
{
    const sse_query_param *got = sse_query_get(params, name);
    int want = ref_get(rp, n, name);
    if (want < 0) {
        if (got) FAIL("sse_query_get(\"%s\") found a parameter\n", name);
        return;
    }
    if (got != &APR_ARRAY_IDX(params, want, sse_query_param)) {
        FAIL("sse_query_get(\"%s\") is not the last one of that name\n",
             name);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_start();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const known[] = {
        "event", "retry", "channel", "authorization", "lastEventId",
        "last_event_id", "", "a", NULL
    };
    char *q = apr_pstrmemdup(pool, (const char *)data, size);
    apr_array_header_t *params = sse_query_parse(pool, q);
    ref_param *rp = apr_pcalloc(pool, sizeof(*rp) * (size / 2 + 2));
    int n = ref_parse(q, rp, (int)(size / 2 + 2)), i;

    if (n < 0) {
        if (params) FAIL("a malformed query was accepted\n");
        apr_pool_clear(pool);
        return 0;
    }
    if (!params) FAIL("a well-formed query was refused\n");
    if (params->nelts != n) FAIL("%d parameters, not %d\n", params->nelts, n);
    for (i = 0; i < n; i++) {
        const sse_query_param *qp = &APR_ARRAY_IDX(params, i, sse_query_param);
        if (qp->value_len != rp[i].value_len
            || memcmp(qp->value, rp[i].value, rp[i].value_len)
            || qp->value[qp->value_len] != '\0') {
            FAIL("value %d differs\n", i);
        }
        if (qp->name_len != rp[i].name_len
            || memcmp(qp->name, rp[i].name, rp[i].name_len)
            || qp->name[qp->name_len] != '\0') {
            FAIL("name %d differs\n", i);
        }
    }
    for (i = 0; known[i]; i++) {
        compare_get(params, rp, n, known[i]);
    }
    for (i = 0; i < n; i++) {
        /* every name that can be asked for (one without a NUL) */
        if (!memchr(rp[i].name, '\0', rp[i].name_len)) {
            rp[i].name[rp[i].name_len] = '\0';
            compare_get(params, rp, n, rp[i].name);
        }
    }
    apr_pool_clear(pool);
    return 0;
}
