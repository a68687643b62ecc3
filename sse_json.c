/* sse_json.c - JSON in and out: a strict RFC 8259 parser, used two ways,
 * and string quoting for the admin API's replies.
 *
 * Publish envelopes are parsed as a stream: the whole body is validated
 * (depth-limited), only the strings an event needs are decoded, and the raw
 * text of non-string data is remembered so that {"data": {"a": 1}} is sent
 * as the JSON text {"a": 1}; nothing is built for the data value, which
 * keeps a large body cheap. sse_json_parse() builds a document instead, for
 * small texts whose members are looked up (JWT headers and claims).
 * Either way memory is linear in the text: a decoded string gets a buffer
 * of its own escaped length.
 */
#include <stdlib.h>
#include <string.h>

#include "apr_strings.h"
#include "apr_lib.h"

#include "sse_json.h"

#define ENVELOPE_DATA_MAX_DEPTH 64

typedef struct {
    apr_pool_t *p;
    const char *s, *end;
    const char *err;
    int max_depth;          /* containers may nest this deep */
} json_parser;

static void skip_ws(json_parser *jp)
{
    while (jp->s < jp->end && (*jp->s == ' ' || *jp->s == '\t'
                               || *jp->s == '\n' || *jp->s == '\r')) {
        jp->s++;
    }
}

static int fail(json_parser *jp, const char *what)
{
    if (!jp->err) jp->err = what;
    return -1;
}

static int hex4(const char *s, apr_uint32_t *out)
{
    apr_uint32_t v = 0;
    int i;
    for (i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (apr_uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (apr_uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (apr_uint32_t)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

static char *put_utf8(char *w, apr_uint32_t cp)
{
    if (cp < 0x80) {
        *w++ = (char)cp;
    }
    else if (cp < 0x800) {
        *w++ = (char)(0xC0 | (cp >> 6));
        *w++ = (char)(0x80 | (cp & 0x3F));
    }
    else if (cp < 0x10000) {
        *w++ = (char)(0xE0 | (cp >> 12));
        *w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *w++ = (char)(0x80 | (cp & 0x3F));
    }
    else {
        *w++ = (char)(0xF0 | (cp >> 18));
        *w++ = (char)(0x80 | ((cp >> 12) & 0x3F));
        *w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *w++ = (char)(0x80 | (cp & 0x3F));
    }
    return w;
}

/* Parses a string at jp->s (the opening quote). With out != NULL, the
 * decoded bytes are returned (allocated from jp->p). The closing quote is
 * found first so that the buffer is as long as this string's escaped form
 * (decoding never makes it longer), not as long as the rest of the body:
 * that made a body of many short strings cost memory quadratic in its
 * length. */
static int parse_string(json_parser *jp, char **out, apr_size_t *outlen)
{
    const char *s = jp->s + 1, *close = s;
    char *buf = NULL, *w = NULL;

    while (close < jp->end && *close != '"') {
        close += (*close == '\\') ? 2 : 1;
    }
    if (close >= jp->end) {
        return fail(jp, "unterminated JSON string");
    }
    if (!sse_utf8_valid(s, (apr_size_t)(close - s))) {
        return fail(jp, "invalid UTF-8 in a JSON string");
    }
    if (out) {
        buf = w = apr_palloc(jp->p, (apr_size_t)(close - s) + 1);
    }
    while (s < close) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20) {
            return fail(jp, "control character in a JSON string");
        }
        if (c != '\\') {
            if (w) *w++ = (char)c;
            s++;
            continue;
        }
        switch (*++s) {
        case '"': case '\\': case '/':
            if (w) *w++ = *s;
            s++;
            break;
        case 'b': if (w) *w++ = '\b'; s++; break;
        case 'f': if (w) *w++ = '\f'; s++; break;
        case 'n': if (w) *w++ = '\n'; s++; break;
        case 'r': if (w) *w++ = '\r'; s++; break;
        case 't': if (w) *w++ = '\t'; s++; break;
        case 'u': {
            apr_uint32_t cp, lo;
            if (close - s < 5 || hex4(s + 1, &cp)) {
                return fail(jp, "bad \\u escape in a JSON string");
            }
            s += 5;
            if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return fail(jp, "lone surrogate in a JSON string");
            }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (close - s < 6 || s[0] != '\\' || s[1] != 'u'
                    || hex4(s + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
                    return fail(jp, "lone surrogate in a JSON string");
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                s += 6;
            }
            if (w) w = put_utf8(w, cp);
            break;
        }
        default:
            return fail(jp, "bad escape in a JSON string");
        }
    }
    jp->s = close + 1;
    if (out) {
        *w = '\0';
        *out = buf;
        *outlen = (apr_size_t)(w - buf);
    }
    return 0;
}

static int parse_number(json_parser *jp)
{
    const char *s = jp->s;
    if (s < jp->end && *s == '-') s++;
    if (s >= jp->end || !apr_isdigit(*s)) {
        return fail(jp, "malformed JSON number");
    }
    if (*s == '0') s++;
    else while (s < jp->end && apr_isdigit(*s)) s++;
    if (s < jp->end && *s == '.') {
        s++;
        if (s >= jp->end || !apr_isdigit(*s)) {
            return fail(jp, "malformed JSON number");
        }
        while (s < jp->end && apr_isdigit(*s)) s++;
    }
    if (s < jp->end && (*s == 'e' || *s == 'E')) {
        s++;
        if (s < jp->end && (*s == '+' || *s == '-')) s++;
        if (s >= jp->end || !apr_isdigit(*s)) {
            return fail(jp, "malformed JSON number");
        }
        while (s < jp->end && apr_isdigit(*s)) s++;
    }
    jp->s = s;
    return 0;
}

static int parse_literal(json_parser *jp, const char *word)
{
    apr_size_t n = strlen(word);
    if ((apr_size_t)(jp->end - jp->s) < n || memcmp(jp->s, word, n)) {
        return fail(jp, "malformed JSON");
    }
    jp->s += n;
    return 0;
}

static sse_json_value *new_value(json_parser *jp, sse_json_type type)
{
    sse_json_value *v = apr_pcalloc(jp->p, sizeof(*v));
    v->type = type;
    return v;
}

static int key_order(const void *a, const void *b)
{
    const sse_json_value *x = *(const sse_json_value *const *)a;
    const sse_json_value *y = *(const sse_json_value *const *)b;
    if (x->key_len != y->key_len) {
        return x->key_len < y->key_len ? -1 : 1;
    }
    return memcmp(x->key, y->key, x->key_len);
}

/* Non-zero when two members of obj have the same key. Small objects are
 * compared pair by pair; large ones sorted, so a body of one huge object
 * costs n log n, not n squared. */
static int has_duplicate_keys(apr_pool_t *p, const sse_json_value *obj)
{
    const sse_json_value *a, *b, **sorted;
    apr_size_t i = 0;

    if (obj->count <= 16) {
        for (a = obj->child; a; a = a->next) {
            for (b = a->next; b; b = b->next) {
                if (!key_order(&a, &b)) return 1;
            }
        }
        return 0;
    }
    sorted = apr_palloc(p, obj->count * sizeof(*sorted));
    for (a = obj->child; a; a = a->next) {
        sorted[i++] = a;
    }
    qsort(sorted, obj->count, sizeof(*sorted), key_order);
    for (i = 1; i < obj->count; i++) {
        if (!key_order(&sorted[i - 1], &sorted[i])) return 1;
    }
    return 0;
}

static int parse_value(json_parser *jp, int depth, sse_json_value **out);

/* Parses the array or object at jp->s; depth counts the containers around
 * it. Members are linked in document order. */
static int parse_container(json_parser *jp, int depth, sse_json_value *v)
{
    char close = *jp->s == '{' ? '}' : ']';
    int object = close == '}';
    sse_json_value **tail = v ? &v->child : NULL;

    if (depth >= jp->max_depth) {
        return fail(jp, "JSON nested too deeply");
    }
    jp->s++;
    skip_ws(jp);
    if (jp->s < jp->end && *jp->s == close) {
        jp->s++;
        return 0;
    }
    for (;;) {
        sse_json_value *member = NULL;
        char *key = NULL;
        apr_size_t klen = 0;
        if (object) {
            skip_ws(jp);
            if (jp->s >= jp->end || *jp->s != '"') {
                return fail(jp, "expected a JSON object key");
            }
            if (parse_string(jp, v ? &key : NULL, &klen)) return -1;
            skip_ws(jp);
            if (jp->s >= jp->end || *jp->s != ':') {
                return fail(jp, "expected ':' in a JSON object");
            }
            jp->s++;
        }
        if (parse_value(jp, depth + 1, v ? &member : NULL)) return -1;
        if (v) {
            member->key = key;
            member->key_len = klen;
            *tail = member;
            tail = &member->next;
            v->count++;
        }
        skip_ws(jp);
        if (jp->s < jp->end && *jp->s == ',') {
            jp->s++;
            continue;
        }
        if (jp->s < jp->end && *jp->s == close) {
            jp->s++;
            break;
        }
        return fail(jp, "expected ',' or a closing bracket in JSON");
    }
    if (v && object && has_duplicate_keys(jp->p, v)) {
        return fail(jp, "duplicate key in a JSON object");
    }
    return 0;
}

/* Parses one value at jp->s, depth containers deep. With out, its tree is
 * built from jp->p; without, it is only validated, which allocates
 * nothing. */
static int parse_value(json_parser *jp, int depth, sse_json_value **out)
{
    sse_json_value *v = NULL;
    const char *start;

    skip_ws(jp);
    if (jp->s >= jp->end) {
        return fail(jp, "unexpected end of JSON");
    }
    start = jp->s;
    switch (*jp->s) {
    case '"': {
        char *str = NULL;
        apr_size_t len = 0;
        if (parse_string(jp, out ? &str : NULL, &len)) return -1;
        if (out) {
            v = new_value(jp, SSE_JSON_STRING);
            v->str = str;
            v->len = len;
        }
        break;
    }
    case '{': case '[':
        if (out) {
            v = new_value(jp, *jp->s == '{' ? SSE_JSON_OBJECT
                                            : SSE_JSON_ARRAY);
        }
        if (parse_container(jp, depth, v)) return -1;
        break;
    case 't': case 'f': case 'n': {
        /* indexed by sse_json_type, whose first three are these */
        static const char *const words[] = { "null", "false", "true" };
        sse_json_type type = *jp->s == 'n' ? SSE_JSON_NULL
                             : *jp->s == 'f' ? SSE_JSON_FALSE : SSE_JSON_TRUE;
        if (parse_literal(jp, words[type])) return -1;
        if (out) v = new_value(jp, type);
        break;
    }
    default:
        if (*jp->s != '-' && !apr_isdigit(*jp->s)) {
            return fail(jp, "malformed JSON");
        }
        if (parse_number(jp)) return -1;
        if (out) {
            v = new_value(jp, SSE_JSON_NUMBER);
            v->len = (apr_size_t)(jp->s - start);
            v->str = apr_pstrmemdup(jp->p, start, v->len);
        }
    }
    if (out) *out = v;
    return 0;
}

static int parse_retry_value(json_parser *jp, sse_event *ev)
{
    const char *start = jp->s;
    if (*jp->s == '"') {
        char *str;
        apr_size_t len;
        if (parse_string(jp, &str, &len)) return -1;
        if (sse_retry_parse(str, len, &ev->retry)) {
            return fail(jp, "\"retry\" must be digits only");
        }
        return 0;
    }
    if (parse_number(jp)) return -1;
    if (sse_retry_parse(start, (apr_size_t)(jp->s - start), &ev->retry)) {
        return fail(jp, "\"retry\" must be a non-negative whole number");
    }
    return 0;
}

/* A key given twice is refused: JSON leaves its meaning open (parsers
 * keep the first, the last, or fail), so the publisher may mean either. */
static int once(json_parser *jp, int *seen, const char *key)
{
    if (*seen) {
        return fail(jp, apr_psprintf(jp->p, "duplicate key \"%s\" in an "
                                     "envelope", key));
    }
    *seen = 1;
    return 0;
}

/* Compares the whole decoded key: "data\u0000x" is not "data". */
static int key_is(const char *key, apr_size_t klen, const char *name)
{
    return klen == strlen(name) && !memcmp(key, name, klen);
}

static int parse_envelope(json_parser *jp, apr_array_header_t *events)
{
    sse_event *ev = apr_array_push(events);
    int have_data = 0, have_event = 0, have_retry = 0;
    memset(ev, 0, sizeof(*ev));
    ev->retry = -1;

    skip_ws(jp);
    if (jp->s >= jp->end || *jp->s != '{') {
        return fail(jp, "an envelope must be a JSON object");
    }
    jp->s++;
    skip_ws(jp);
    if (jp->s < jp->end && *jp->s == '}') {
        return fail(jp, "an envelope needs \"data\"");
    }
    for (;;) {
        char *key;
        apr_size_t klen;
        skip_ws(jp);
        if (jp->s >= jp->end || *jp->s != '"') {
            return fail(jp, "expected a JSON object key");
        }
        if (parse_string(jp, &key, &klen)) return -1;
        skip_ws(jp);
        if (jp->s >= jp->end || *jp->s != ':') {
            return fail(jp, "expected ':' in a JSON object");
        }
        jp->s++;
        skip_ws(jp);
        if (jp->s >= jp->end) {
            return fail(jp, "unexpected end of JSON");
        }
        if (key_is(key, klen, "data")) {
            if (once(jp, &have_data, "data")) return -1;
            if (*jp->s == '"') {
                char *str;
                if (parse_string(jp, &str, &ev->data_len)) return -1;
                ev->data = str;
            }
            else {
                const char *start = jp->s;
                if (parse_value(jp, 0, NULL)) return -1;
                ev->data = start;
                ev->data_len = (apr_size_t)(jp->s - start);
            }
        }
        else if (key_is(key, klen, "event")) {
            char *str;
            if (once(jp, &have_event, "event")) return -1;
            if (*jp->s != '"') {
                return fail(jp, "\"event\" must be a string");
            }
            if (parse_string(jp, &str, &ev->event_len)) return -1;
            ev->event = str;
        }
        else if (key_is(key, klen, "retry")) {
            if (once(jp, &have_retry, "retry")
                || parse_retry_value(jp, ev)) return -1;
        }
        else if (key_is(key, klen, "id")) {
            return fail(jp, "\"id\" cannot be set: ids are assigned by the "
                            "server");
        }
        else {
            jp->err = apr_psprintf(jp->p, "unknown envelope key %s (use "
                                   "data, event, retry)",
                                   sse_json_quote(jp->p, key, klen));
            return -1;
        }
        skip_ws(jp);
        if (jp->s < jp->end && *jp->s == ',') {
            jp->s++;
            continue;
        }
        if (jp->s < jp->end && *jp->s == '}') {
            jp->s++;
            break;
        }
        return fail(jp, "expected ',' or '}' in an envelope");
    }
    if (!have_data) {
        return fail(jp, "an envelope needs \"data\"");
    }
    return 0;
}

const char *sse_json_parse_envelopes(apr_pool_t *p, const char *body,
                                     apr_size_t len,
                                     apr_array_header_t **events)
{
    json_parser jp;
    jp.p = p;
    jp.s = body;
    jp.end = body + len;
    jp.err = NULL;
    jp.max_depth = ENVELOPE_DATA_MAX_DEPTH;
    *events = apr_array_make(p, 4, sizeof(sse_event));

    skip_ws(&jp);
    if (jp.s < jp.end && *jp.s == '[') {
        jp.s++;
        skip_ws(&jp);
        if (jp.s < jp.end && *jp.s == ']') {
            return "the array of envelopes is empty";
        }
        for (;;) {
            if (parse_envelope(&jp, *events)) return jp.err;
            skip_ws(&jp);
            if (jp.s < jp.end && *jp.s == ',') {
                jp.s++;
                continue;
            }
            if (jp.s < jp.end && *jp.s == ']') {
                jp.s++;
                break;
            }
            return "expected ',' or ']' in the array of envelopes";
        }
    }
    else if (parse_envelope(&jp, *events)) {
        return jp.err;
    }
    skip_ws(&jp);
    if (jp.s != jp.end) {
        return "unexpected text after the JSON value";
    }
    return NULL;
}

const char *sse_json_parse(apr_pool_t *p, const char *text, apr_size_t len,
                           int max_depth, sse_json_value **out)
{
    json_parser jp;
    sse_json_value *v;

    jp.p = p;
    jp.s = text;
    jp.end = text + len;
    jp.err = NULL;
    jp.max_depth = max_depth;
    *out = NULL;
    if (parse_value(&jp, 0, &v)) {
        return jp.err;
    }
    skip_ws(&jp);
    if (jp.s != jp.end) {
        return "unexpected text after the JSON value";
    }
    *out = v;
    return NULL;
}

const sse_json_value *sse_json_get(const sse_json_value *obj, const char *key)
{
    const sse_json_value *m;
    apr_size_t klen = strlen(key);

    if (!obj || obj->type != SSE_JSON_OBJECT) {
        return NULL;
    }
    for (m = obj->child; m; m = m->next) {
        if (m->key_len == klen && !memcmp(m->key, key, klen)) {
            return m;
        }
    }
    return NULL;
}

int sse_json_int64(const sse_json_value *v, apr_int64_t *out)
{
    apr_uint64_t n = 0, limit = APR_INT64_MAX;
    apr_size_t i = 0;

    if (!v || v->type != SSE_JSON_NUMBER) {
        return -1;
    }
    if (v->str[0] == '-') {
        limit = (apr_uint64_t)APR_INT64_MAX + 1;
        i = 1;
    }
    if (i == v->len) {
        return -1;
    }
    for (; i < v->len; i++) {
        unsigned int d = (unsigned char)v->str[i] - '0';
        if (d > 9 || n > (limit - d) / 10) {
            return -1;
        }
        n = n * 10 + d;
    }
    /* -(n - 1) - 1 reaches APR_INT64_MIN without overflowing */
    *out = v->str[0] != '-' ? (apr_int64_t)n
           : n ? -(apr_int64_t)(n - 1) - 1 : 0;
    return 0;
}

char *sse_json_quote(apr_pool_t *p, const char *s, apr_size_t len)
{
    static const char hex[] = "0123456789abcdef";
    char *buf = apr_palloc(p, len * 6 + 3), *w = buf;
    apr_size_t i;
    *w++ = '"';
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            *w++ = '\\';
            *w++ = (char)c;
        }
        else if (c == '\n') { *w++ = '\\'; *w++ = 'n'; }
        else if (c == '\r') { *w++ = '\\'; *w++ = 'r'; }
        else if (c == '\t') { *w++ = '\\'; *w++ = 't'; }
        else if (c < 0x20 || c == 0x7F) {
            memcpy(w, "\\u00", 4);
            w[4] = hex[c >> 4];
            w[5] = hex[c & 15];
            w += 6;
        }
        else {
            *w++ = (char)c;
        }
    }
    *w++ = '"';
    *w = '\0';
    return buf;
}
