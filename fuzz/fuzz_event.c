/* fuzz_event.c - libFuzzer target for sse_event_frame (sse_event.c).
 *
 * The framed event is read back by the event-stream parser of the WHATWG
 * HTML standard ("Server-sent events", 9.2.6), written out below. For any
 * event type the server accepts (sse_event_type_problem), any retry and
 * any data, the parser must see exactly one event, with the given type,
 * the given retry, and the data with CRLF and CR turned into LF; no other
 * field, no id, and nothing after the event.
 *
 * Input: [type length][flags][4 bytes retry][type][data...]
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

#include "apr_general.h"
#include "apr_strings.h"

#include "sse_event.h"
#include "fuzz.h"


/* What the parser saw. */
typedef struct {
    int events;          /* dispatched */
    char type[SSE_EVENT_TYPE_MAX + 16];
    apr_size_t type_len;
    char *data;          /* of the last event dispatched */
    apr_size_t data_len;
    long retry;          /* -1: never set */
    int id_seen;         /* an id field, or anything unknown */
    int other_fields;
    int event_lines, retry_lines;
    int leftover;        /* bytes after the last dispatch */
} parsed;

static int is_field(const char *name, apr_size_t nlen, const char *want)
{
    return nlen == strlen(want) && !memcmp(name, want, nlen);
}

/* One line, without its end, as "process the field" says. */
static void take_line(parsed *ps, const char *line, apr_size_t len,
                      char *typebuf, apr_size_t *typelen,
                      char *databuf, apr_size_t *datalen)
{
    const char *colon = memchr(line, ':', len), *value;
    apr_size_t nlen, vlen;
    if (len == 0) {
        /* dispatch */
        if (*datalen == 0) {
            *typelen = 0;
            return;
        }
        if (databuf[*datalen - 1] == '\n') (*datalen)--;
        ps->events++;
        memcpy(ps->type, *typelen ? typebuf : "message",
               *typelen ? *typelen : 7);
        ps->type_len = *typelen ? *typelen : 7;
        ps->data = databuf;
        ps->data_len = *datalen;
        *datalen = 0;
        *typelen = 0;
        return;
    }
    if (colon == line) return;                       /* a comment */
    nlen = colon ? (apr_size_t)(colon - line) : len;
    value = colon ? colon + 1 : line + len;
    vlen = colon ? len - nlen - 1 : 0;
    if (vlen && *value == ' ') {
        value++;
        vlen--;
    }
    if (is_field(line, nlen, "event")) {
        ps->event_lines++;
        if (vlen > SSE_EVENT_TYPE_MAX) FAIL("event line too long\n");
        memcpy(typebuf, value, vlen);
        *typelen = vlen;
    }
    else if (is_field(line, nlen, "data")) {
        memcpy(databuf + *datalen, value, vlen);
        *datalen += vlen;
        databuf[(*datalen)++] = '\n';
    }
    else if (is_field(line, nlen, "retry")) {
        apr_size_t i;
        long v = 0;
        ps->retry_lines++;
        for (i = 0; i < vlen; i++) {
            if (value[i] < '0' || value[i] > '9') break;
            v = v * 10 + (value[i] - '0');
        }
        if (i == vlen && vlen) ps->retry = v;
    }
    else if (is_field(line, nlen, "id")) {
        ps->id_seen = 1;
    }
    else {
        ps->other_fields++;
    }
}

/* Splits the stream at CRLF, LF or CR. */
static void parse_stream(parsed *ps, const char *s, apr_size_t len)
{
    char typebuf[SSE_EVENT_TYPE_MAX + 16];
    char *databuf = malloc(len + 1);
    apr_size_t typelen = 0, datalen = 0, start = 0, i = 0;
    memset(ps, 0, sizeof(*ps));
    ps->retry = -1;
    while (i < len) {
        if (s[i] == '\r' || s[i] == '\n') {
            take_line(ps, s + start, i - start, typebuf, &typelen, databuf,
                      &datalen);
            i += (s[i] == '\r' && i + 1 < len && s[i + 1] == '\n') ? 2 : 1;
            start = i;
        }
        else {
            i++;
        }
    }
    /* an unterminated line or undispatched fields are never an event */
    ps->leftover = start != len || datalen != 0 || typelen != 0;
    if (ps->data) {
        /* keep the dispatched data beyond this buffer's life */
        char *copy = apr_pmemdup(pool, ps->data, ps->data_len + 1);
        ps->data = copy;
    }
    free(databuf);
}

/* The data as the parser should see it: CRLF and CR become LF. */
static apr_size_t normalise(const char *d, apr_size_t len, char *out)
{
    apr_size_t i, n = 0;
    for (i = 0; i < len; i++) {
        if (d[i] == '\r') {
            out[n++] = '\n';
            if (i + 1 < len && d[i + 1] == '\n') i++;
        }
        else {
            out[n++] = d[i];
        }
    }
    return n;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_start();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
    sse_event ev;
    parsed ps;
    apr_size_t type_len, framed_len, want_len;
    unsigned flags;
    char *framed, *want;
    apr_uint32_t r;

    if (size < 6) return 0;
    type_len = in[0];
    flags = in[1];
    r = (apr_uint32_t)in[2] | (apr_uint32_t)in[3] << 8
        | (apr_uint32_t)in[4] << 16 | (apr_uint32_t)in[5] << 24;
    in += 6;
    size -= 6;
    if (type_len > size) type_len = size;
    memset(&ev, 0, sizeof(ev));
    /* flag 1: no type at all (NULL), else possibly an empty one */
    ev.event = (flags & 1) ? NULL : (const char *)in;
    ev.event_len = (flags & 1) ? 0 : type_len;
    ev.retry = (flags & 2) ? (long)(r & 0x7fffffff) : -1;
    ev.data = (const char *)in + type_len;
    ev.data_len = size - type_len;
    if (ev.event && sse_event_type_problem(ev.event, ev.event_len)) {
        return 0;       /* the server refuses these before framing */
    }

    framed = sse_event_frame(pool, &ev, &framed_len);
    parse_stream(&ps, framed, framed_len);
    want = malloc(ev.data_len + 1);
    want_len = normalise(ev.data, ev.data_len, want);

    if (ps.events != 1) FAIL("%d events, not one\n", ps.events);
    if (ps.leftover) FAIL("bytes after the event\n");
    if (ps.id_seen || ps.other_fields) FAIL("an id or unknown field\n");
    if (ps.event_lines > 1 || ps.retry_lines > 1) FAIL("repeated field\n");
    if (ps.data_len != want_len || memcmp(ps.data, want, want_len)) {
        FAIL("data differs\n");
    }
    if (ev.event && ev.event_len) {
        if (ps.type_len != ev.event_len
            || memcmp(ps.type, ev.event, ev.event_len)) {
            FAIL("event type differs\n");
        }
    }
    else if (ps.type_len != 7 || memcmp(ps.type, "message", 7)) {
        FAIL("default event type is not message\n");
    }
    if (ps.retry != ev.retry) {
        FAIL("retry %ld, not %ld\n", ps.retry, ev.retry);
    }
    free(want);
    apr_pool_clear(pool);
    return 0;
}
