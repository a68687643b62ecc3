/* read_check.c - what a store read may return, checked from the outside:
 * whole events, each starting with the id: line of its mark, in rising id
 * order above the cursor the read started from. Shared by the randomized
 * store test and the store fuzzer (fuzz/fuzz_store.c).
 */
#include <stdio.h>
#include <string.h>

#include "unit.h"

/* One event of a read: "id: <id>\n", lines without CR, none of them
 * blank or another id field, and the blank line that ends it. */
static const char *event_problem(const char *s, apr_size_t len,
                                 apr_uint64_t id)
{
    char idline[SSE_ID_TEXT_MAX + 8];
    apr_size_t idlen, i, col = 0;
    memcpy(idline, "id: ", 4);
    idlen = 4 + sse_id_format(idline + 4, id);
    idline[idlen++] = '\n';
    if (len < idlen + 1 || memcmp(s, idline, idlen)) {
        return "an event does not start with the id: line of its mark";
    }
    if (s[len - 1] != '\n' || s[len - 2] != '\n') {
        return "an event does not end with a blank line";
    }
    for (i = idlen; i < len; i++) {
        if (s[i] == '\r') return "an event holds a CR";
        if (s[i] != '\n') {
            if (col == 2 && s[i] == ':' && s[i - 2] == 'i'
                && s[i - 1] == 'd') {
                return "an event has a second id field";
            }
            col++;
            continue;
        }
        if (col == 2 && s[i - 2] == 'i' && s[i - 1] == 'd') {
            return "an event has a second id field";
        }
        if (col == 0 && i + 1 != len) {
            return "an event has a blank line inside";
        }
        col = 0;
    }
    return NULL;
}

const char *unit_read_problem(const sse_read_result *res, apr_uint64_t after)
{
    apr_uint32_t i;
    if (res->events == 0) {
        return res->len ? "bytes without events" : NULL;
    }
    if (!res->buf || !res->marks || res->marks[0].offset != 0) {
        return "the first event does not start the buffer";
    }
    if (res->first_id != res->marks[0].id
        || res->last_id != res->marks[res->events - 1].id) {
        return "first_id or last_id does not match the marks";
    }
    for (i = 0; i < res->events; i++) {
        const sse_read_mark *m = &res->marks[i];
        apr_size_t end = i + 1 < res->events ? res->marks[i + 1].offset
                                             : res->len;
        const char *why;
        if (m->id <= after) return "ids do not rise above the cursor";
        if (end <= m->offset || end > res->len) return "marks out of order";
        if ((why = event_problem(res->buf + m->offset, end - m->offset,
                                 m->id))) {
            return why;
        }
        after = m->id;
    }
    return NULL;
}
