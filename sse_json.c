/* sse_json.c - a strict RFC 8259 parser for publish envelopes, and JSON
 * string quoting for the admin API's replies.
 *
 * The parser validates the whole document (depth-limited), decodes only the
 * strings it needs, and remembers the raw text of non-string data so that
 * {"data": {"a": 1}} is sent as the JSON text {"a": 1}.
 */
#include <string.h>

#include "apr_strings.h"
#include "apr_lib.h"

#include "sse_json.h"

#define JSON_MAX_DEPTH 64

typedef struct {
    apr_pool_t *p;
    const char *s, *end;
    const char *err;
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

/* Validates any value and skips it. */
static int skip_value(json_parser *jp, int depth)
{
    if (depth > JSON_MAX_DEPTH) {
        return fail(jp, "JSON nested too deeply");
    }
    skip_ws(jp);
    if (jp->s >= jp->end) {
        return fail(jp, "unexpected end of JSON");
    }
    switch (*jp->s) {
    case '"':
        return parse_string(jp, NULL, NULL);
    case '{': case '[': {
        char close = *jp->s == '{' ? '}' : ']';
        int object = close == '}';
        jp->s++;
        skip_ws(jp);
        if (jp->s < jp->end && *jp->s == close) {
            jp->s++;
            return 0;
        }
        for (;;) {
            if (object) {
                skip_ws(jp);
                if (jp->s >= jp->end || *jp->s != '"') {
                    return fail(jp, "expected a JSON object key");
                }
                if (parse_string(jp, NULL, NULL)) return -1;
                skip_ws(jp);
                if (jp->s >= jp->end || *jp->s != ':') {
                    return fail(jp, "expected ':' in a JSON object");
                }
                jp->s++;
            }
            if (skip_value(jp, depth + 1)) return -1;
            skip_ws(jp);
            if (jp->s < jp->end && *jp->s == ',') {
                jp->s++;
                continue;
            }
            if (jp->s < jp->end && *jp->s == close) {
                jp->s++;
                return 0;
            }
            return fail(jp, "expected ',' or a closing bracket in JSON");
        }
    }
    case 't': return parse_literal(jp, "true");
    case 'f': return parse_literal(jp, "false");
    case 'n': return parse_literal(jp, "null");
    default:  return parse_number(jp);
    }
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
                if (skip_value(jp, 1)) return -1;
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
