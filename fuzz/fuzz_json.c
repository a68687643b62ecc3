/* fuzz_json.c - libFuzzer target for the JSON parser (sse_json.c), both
 * ways it is used: publish envelopes and documents.
 *
 * Envelopes: an accepted body gives at least one event; a string data or
 * event is decoded UTF-8 in memory of its own, any other data is the
 * exact JSON text of a value (which the document parser accepts too,
 * short of duplicate keys, which envelopes pass through), a retry is in
 * range. Documents: a parsed tree is well-formed (counts, unique keys,
 * valid UTF-8, NUL-terminated strings, numbers that parse again), every
 * key is found by sse_json_get, sse_json_int64 agrees with strtoll, and
 * the tree written back out with sse_json_quote parses to the same tree.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apr_general.h"
#include "apr_strings.h"

#include "sse_json.h"
#include "fuzz.h"

#define MAX_DEPTH 32


static int within(const char *p, const uint8_t *data, size_t size)
{
    return p >= (const char *)data && p <= (const char *)data + size;
}

static void check_envelopes(const uint8_t *data, size_t size)
{
    apr_array_header_t *evs = NULL;
    const char *err = sse_json_parse_envelopes(pool, (const char *)data, size,
                                               &evs);
    int i;
    if (err) return;
    if (!evs || evs->nelts < 1) FAIL("an accepted body gave no event\n");
    for (i = 0; i < evs->nelts; i++) {
        const sse_event *ev = &APR_ARRAY_IDX(evs, i, sse_event);
        if (!ev->data) FAIL("an event without data\n");
        if (ev->retry < -1 || ev->retry > 2147483647L) FAIL("retry range\n");
        if (ev->event && (within(ev->event, data, size)
                          || !sse_utf8_valid(ev->event, ev->event_len))) {
            FAIL("event is not decoded UTF-8\n");
        }
        if (within(ev->data, data, size)) {
            sse_json_value *v;
            const char *why;
            /* raw JSON text of a non-string value */
            if (ev->data_len == 0 || ev->data[0] == '"') {
                FAIL("raw data is empty or a string\n");
            }
            why = sse_json_parse(pool, ev->data, ev->data_len, 64, &v);
            if (why && strcmp(why, "duplicate key in a JSON object")) {
                FAIL("raw data is not one JSON value: %s\n", why);
            }
        }
        else if (!sse_utf8_valid(ev->data, ev->data_len)) {
            FAIL("decoded data is not UTF-8\n");
        }
    }
}

static int same_tree(const sse_json_value *a, const sse_json_value *b)
{
    if (a->type != b->type || a->count != b->count
        || a->key_len != b->key_len
        || (a->key && memcmp(a->key, b->key, a->key_len))) {
        return 0;
    }
    if (a->type == SSE_JSON_STRING || a->type == SSE_JSON_NUMBER) {
        if (a->len != b->len || memcmp(a->str, b->str, a->len)) return 0;
    }
    for (a = a->child, b = b->child; a && b; a = a->next, b = b->next) {
        if (!same_tree(a, b)) return 0;
    }
    return !a && !b;
}

/* Checks one value and appends it, written back as JSON, to out. */
static void check_value(const sse_json_value *v, const sse_json_value *parent,
                        apr_array_header_t *out)
{
    const sse_json_value *m;
    apr_size_t n = 0;
    apr_int64_t i64;
    if (parent && parent->type == SSE_JSON_OBJECT) {
        const sse_json_value *found;
        if (!v->key || v->key[v->key_len] != '\0'
            || !sse_utf8_valid(v->key, v->key_len)) {
            FAIL("bad key\n");
        }
        /* a key with a NUL cannot be asked for by name */
        found = memchr(v->key, '\0', v->key_len) ? v
                : sse_json_get(parent, v->key);
        if (found != v) FAIL("sse_json_get misses a key\n");
        APR_ARRAY_PUSH(out, char *) = sse_json_quote(pool, v->key, v->key_len);
        APR_ARRAY_PUSH(out, char *) = ":";
    }
    else if (v->key) {
        FAIL("a key outside an object\n");
    }
    switch (v->type) {
    case SSE_JSON_NULL:  APR_ARRAY_PUSH(out, char *) = "null"; break;
    case SSE_JSON_FALSE: APR_ARRAY_PUSH(out, char *) = "false"; break;
    case SSE_JSON_TRUE:  APR_ARRAY_PUSH(out, char *) = "true"; break;
    case SSE_JSON_STRING:
        if (v->str[v->len] != '\0' || !sse_utf8_valid(v->str, v->len)) {
            FAIL("bad string\n");
        }
        APR_ARRAY_PUSH(out, char *) = sse_json_quote(pool, v->str, v->len);
        break;
    case SSE_JSON_NUMBER:
        if (strlen(v->str) != v->len) FAIL("number text\n");
        if (!sse_json_int64(v, &i64)) {
            char *end;
            long long ll;
            errno = 0;
            ll = strtoll(v->str, &end, 10);
            if (errno || *end || ll != (long long)i64) {
                FAIL("sse_json_int64 disagrees with strtoll on %s\n", v->str);
            }
        }
        else if (!strpbrk(v->str, ".eE")) {
            char *end;
            errno = 0;
            strtoll(v->str, &end, 10);
            if (!errno) FAIL("sse_json_int64 refused %s\n", v->str);
        }
        APR_ARRAY_PUSH(out, char *) = apr_pstrdup(pool, v->str);
        break;
    case SSE_JSON_ARRAY:
    case SSE_JSON_OBJECT:
        APR_ARRAY_PUSH(out, char *) = v->type == SSE_JSON_ARRAY ? "[" : "{";
        for (m = v->child; m; m = m->next) {
            if (n++) APR_ARRAY_PUSH(out, char *) = ",";
            check_value(m, v, out);
        }
        if (n != v->count) FAIL("count is %zu, members %zu\n", v->count, n);
        APR_ARRAY_PUSH(out, char *) = v->type == SSE_JSON_ARRAY ? "]" : "}";
        break;
    default:
        FAIL("unknown type\n");
    }
}

static void check_document(const uint8_t *data, size_t size)
{
    sse_json_value *v, *again;
    apr_array_header_t *out = apr_array_make(pool, 16, sizeof(char *));
    const char *why = sse_json_parse(pool, (const char *)data, size,
                                     MAX_DEPTH, &v), *text;
    if (why) {
        if (v) FAIL("a refused document gave a tree\n");
        return;
    }
    if (!v) FAIL("an accepted document gave no tree\n");
    check_value(v, NULL, out);
    text = apr_array_pstrcat(pool, out, 0);
    if ((why = sse_json_parse(pool, text, strlen(text), MAX_DEPTH, &again))) {
        FAIL("written back, the document is refused: %s\n", why);
    }
    if (!same_tree(v, again)) FAIL("written back, the tree differs\n");
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
    check_envelopes(data, size);
    check_document(data, size);
    apr_pool_clear(pool);
    return 0;
}
