/* sse_event.c - the text/event-stream wire format (WHATWG HTML, "Server-sent
 * events"): what may appear in each field, and how one event is framed.
 *
 * A line ends at CRLF, LF or a lone CR, so no field value may contain
 * either; data is split into one data: line per line. Every field is
 * written as "name: value" because parsers strip exactly one space.
 */
#include <string.h>

#include "apr_strings.h"
#include "apr_lib.h"

#include "sse_event.h"
#include "sse_json.h"

/* ASCII ranges, not isalnum(): that follows the process's locale, and a
 * module that sets one (mod_php does) would let Latin-1 letters in. */
static int channel_char_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'
           || c == ':' || c == '@' || c == '~';
}

const char *sse_channel_name_problem(const char *name, apr_size_t len)
{
    apr_size_t i;
    if (len == 0) {
        return "is empty";
    }
    if (len > SSE_CHANNEL_MAX) {
        return "is longer than 128 bytes";
    }
    /* a channel is also a path segment (<location>/<channel>), and these
     * two would name another URL */
    if ((len == 1 && name[0] == '.')
        || (len == 2 && name[0] == '.' && name[1] == '.')) {
        return "may not be . or ..";
    }
    for (i = 0; i < len; i++) {
        if (!channel_char_ok((unsigned char)name[i])) {
            return "may only contain A-Z a-z 0-9 _ - . : @ ~";
        }
    }
    return NULL;
}

const char *sse_event_type_problem(const char *type, apr_size_t len)
{
    if (len > SSE_EVENT_TYPE_MAX) {
        return "event type is longer than 256 bytes";
    }
    if (memchr(type, '\r', len) || memchr(type, '\n', len)
        || memchr(type, '\0', len)) {
        return "event type contains CR, LF or NUL";
    }
    if (!sse_utf8_valid(type, len)) {
        return "event type is not valid UTF-8";
    }
    if (len >= sizeof(SSE_RESERVED_PREFIX) - 1
        && !memcmp(type, SSE_RESERVED_PREFIX,
                   sizeof(SSE_RESERVED_PREFIX) - 1)) {
        return "event types starting with \"" SSE_RESERVED_PREFIX "\" are "
               "reserved for mod_sse (sse-reset)";
    }
    return NULL;
}

int sse_utf8_valid(const char *s, apr_size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    const unsigned char *end = p + len;
    while (p < end) {
        unsigned char c = *p;
        apr_uint32_t cp;
        int n, i;
        if (c < 0x80) {
            p++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF)      { n = 1; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { n = 2; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { n = 3; cp = c & 0x07; }
        else return 0;
        if (end - p <= n) {
            return 0;
        }
        for (i = 1; i <= n; i++) {
            if ((p[i] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (p[i] & 0x3F);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000)
            || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
            return 0;
        }
        p += n + 1;
    }
    return 1;
}

int sse_retry_parse(const char *s, apr_size_t len, long *out)
{
    /* 64 bits: ten digits overflow a 32-bit long before the range check */
    apr_int64_t v = 0;
    apr_size_t i;
    if (len == 0 || len > 10) {
        return -1;
    }
    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v > 2147483647) {
        return -1;
    }
    *out = (long)v;
    return 0;
}

char *sse_printable(apr_pool_t *p, const char *s, apr_size_t len)
{
    apr_size_t n = len > 64 ? 64 : len, i;
    char *out = apr_palloc(p, n + 4);
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = (c >= 0x20 && c < 0x7f && c != '\'' && c != '"'
                  && c != '<' && c != '>' && c != '&') ? (char)c : '?';
    }
    memcpy(out + n, len > n ? "..." : "", len > n ? 4 : 1);
    return out;
}

apr_size_t sse_id_format(char *buf, apr_uint64_t id)
{
    char tmp[SSE_ID_TEXT_MAX];
    apr_size_t n = 0, i;
    do {
        tmp[n++] = (char)('0' + id % 10);
        id /= 10;
    } while (id);
    for (i = 0; i < n; i++) {
        buf[i] = tmp[n - 1 - i];
    }
    buf[n] = '\0';
    return n;
}

int sse_id_parse(const char *s, apr_uint64_t *out)
{
    apr_uint64_t v = 0;
    apr_size_t n = 0;
    for (; *s; s++, n++) {
        unsigned d;
        if (*s < '0' || *s > '9' || n >= 20) return -1;
        d = (unsigned)(*s - '0');
        if (v > (APR_UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    if (n == 0) {
        return -1;
    }
    *out = v;
    return 0;
}

/* Appends "name: value\n". */
static char *put_field(char *w, const char *name, apr_size_t nlen,
                       const char *value, apr_size_t vlen)
{
    memcpy(w, name, nlen);
    w += nlen;
    *w++ = ':';
    *w++ = ' ';
    memcpy(w, value, vlen);
    w += vlen;
    *w++ = '\n';
    return w;
}

char *sse_event_frame(apr_pool_t *p, const sse_event *ev, apr_size_t *len)
{
    const char *d = ev->data, *end = ev->data + ev->data_len;
    apr_size_t lines = 1, i;
    char *buf, *w;
    char num[SSE_ID_TEXT_MAX];

    for (i = 0; i < ev->data_len; i++) {
        if (d[i] == '\n' || (d[i] == '\r'
                             && (i + 1 == ev->data_len || d[i + 1] != '\n'))) {
            lines++;
        }
    }
    /* each line costs "data: " and "\n"; event, retry and the blank line */
    buf = apr_palloc(p, ev->data_len + lines * 7 + ev->event_len + 8
                        + 8 + SSE_ID_TEXT_MAX + 1);
    w = buf;
    if (ev->event && ev->event_len) {
        w = put_field(w, "event", 5, ev->event, ev->event_len);
    }
    if (ev->retry >= 0) {
        w = put_field(w, "retry", 5, num, sse_id_format(num,
                                                       (apr_uint64_t)ev->retry));
    }
    for (;;) {
        const char *eol = d;
        while (eol < end && *eol != '\n' && *eol != '\r') eol++;
        w = put_field(w, "data", 4, d, (apr_size_t)(eol - d));
        if (eol == end) break;
        d = eol + ((eol[0] == '\r' && eol + 1 < end && eol[1] == '\n') ? 2 : 1);
    }
    *w++ = '\n';
    *len = (apr_size_t)(w - buf);
    return buf;
}

char *sse_reset_frame(apr_pool_t *p, const char *reason, apr_uint64_t id,
                      const char *last_id_text, apr_size_t *len)
{
    char idbuf[SSE_ID_TEXT_MAX];
    const char *claimed = "null";
    char *text;
    if (last_id_text && sse_utf8_valid(last_id_text, strlen(last_id_text))) {
        claimed = sse_json_quote(p, last_id_text, strlen(last_id_text));
    }
    sse_id_format(idbuf, id);
    text = apr_pstrcat(p, "id: ", idbuf, "\nevent: sse-reset\ndata: "
                       "{\"reason\":\"", reason, "\",\"last_event_id\":",
                       claimed, "}\n\n", NULL);
    *len = strlen(text);
    return text;
}
