/* unit_tests.c - unit tests of the units that need no httpd: event framing
 * and validation (sse_event.c), query decoding (sse_query.c) and the
 * shared-memory store (sse_store.c); main() also runs the other files'
 * tests (JSON, JWT, the store's bounds and its repair).
 * Run by "make unit".
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <stdlib.h>
#include <ctype.h>
#include <locale.h>

#include "apr_general.h"
#include "apr_strings.h"

#include "sse_event.h"
#include "sse_query.h"
#include "sse_store.h"
#include "unit.h"

int unit_failures, unit_checks;

static apr_pool_t *pool;

static const char *frame(const char *type, long retry, const char *data)
{
    sse_event ev = { type, type ? strlen(type) : 0, data, strlen(data), retry };
    apr_size_t len;
    char *s = sse_event_frame(pool, &ev, &len);
    return apr_pstrmemdup(pool, s, len);
}

static void test_framing(void)
{
    CHECK_STR("data: hello\n\n", frame(NULL, -1, "hello"));
    CHECK_STR("data: a\ndata: b\ndata: c\ndata: d\n\n",
              frame(NULL, -1, "a\nb\rc\r\nd"));
    CHECK_STR("data: \n\n", frame(NULL, -1, ""));
    CHECK_STR("data: x\ndata: \n\n", frame(NULL, -1, "x\n"));
    CHECK_STR("data: \ndata: \n\n", frame(NULL, -1, "\r\n"));
    CHECK_STR("event: price\nretry: 3000\ndata:  two\n\n",
              frame("price", 3000, " two"));
}

static void test_validation(void)
{
    long retry;
    apr_uint64_t id;
    char buf[SSE_ID_TEXT_MAX];
    CHECK(sse_channel_name_problem("news", 4) == NULL);
    CHECK(sse_channel_name_problem("a-b_c.d:e@f~g", 13) == NULL);
    CHECK(sse_channel_name_problem("", 0) != NULL);
    CHECK(sse_channel_name_problem("a b", 3) != NULL);
    CHECK(sse_channel_name_problem("a/b", 3) != NULL);
    CHECK(sse_channel_name_problem("a,b", 3) != NULL);
    CHECK(sse_event_type_problem("ok", 2) == NULL);
    CHECK(sse_event_type_problem("a\nb", 3) != NULL);
    CHECK(sse_event_type_problem("a\rb", 3) != NULL);
    CHECK(sse_event_type_problem("a\0b", 3) != NULL);
    CHECK(sse_utf8_valid("h\xc3\xa9llo \xf0\x9f\x98\x80", 11));
    CHECK(!sse_utf8_valid("\xc3", 1));
    CHECK(!sse_utf8_valid("\xc0\xaf", 2));          /* overlong */
    CHECK(!sse_utf8_valid("\xed\xa0\x80", 3));      /* surrogate */
    CHECK(sse_retry_parse("03000", 5, &retry) == 0 && retry == 3000);
    CHECK(sse_retry_parse("12a", 3, &retry) != 0);
    CHECK(sse_retry_parse("-1", 2, &retry) != 0);
    CHECK(sse_retry_parse("", 0, &retry) != 0);
    CHECK(sse_retry_parse("99999999999", 11, &retry) != 0);
    CHECK(sse_id_parse("18446744073709551615", &id) == 0
          && id == APR_UINT64_MAX);
    CHECK(sse_id_parse("18446744073709551616", &id) != 0);
    CHECK(sse_id_parse("12x", &id) != 0);
    CHECK(sse_id_parse("", &id) != 0);
    sse_id_format(buf, 1234567890123ULL);
    CHECK_STR("1234567890123", buf);
}

/* In a Latin-1 locale isalnum(0xE9) is true; channel names must stay
 * ASCII whatever locale another module sets. The locale is built for the
 * test with localedef (Debian's locales package). */
static void test_channel_names_ignore_locale(void)
{
    char dir[] = "/tmp/sse_locale_XXXXXX", cmd[200];
    if (!mkdtemp(dir)) {
        CHECK(!"mkdtemp");
        return;
    }
    snprintf(cmd, sizeof(cmd), "localedef -i en_US -f ISO-8859-1 %s/latin1 "
             ">/dev/null 2>&1", dir);
    setenv("LOCPATH", dir, 1);
    if (system(cmd) != 0 || !setlocale(LC_CTYPE, "latin1")) {
        printf("skipped: channel names under a Latin-1 locale (localedef "
               "is not available)\n");
        return;
    }
    CHECK(isalnum(0xE9));     /* the locale is in force */
    CHECK(sse_channel_name_problem("caf\xe9", 4) != NULL);
    CHECK(sse_channel_name_problem("\xc0\xe9", 2) != NULL);
    CHECK(sse_channel_name_problem("cafe", 4) == NULL);
    setlocale(LC_CTYPE, "C");
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

static void test_query(void)
{
    apr_array_header_t *q = sse_query_parse(pool, "channel=a,b&event=x%0Ay&"
                                            "e=a+b&flag&channel=c");
    const sse_query_param *qp;
    CHECK(q != NULL);
    if (!q) return;
    qp = sse_query_get(q, "event");
    CHECK(qp && qp->value_len == 3 && !memcmp(qp->value, "x\ny", 3));
    CHECK_STR("a b", sse_query_get(q, "e")->value);
    CHECK_STR("", sse_query_get(q, "flag")->value);
    CHECK_STR("c", sse_query_get(q, "channel")->value);
    CHECK(sse_query_parse(pool, "a=%zz") == NULL);
    CHECK(sse_query_parse(pool, "a=%4") == NULL);
    qp = sse_query_get(sse_query_parse(pool, "n=%00"), "n");
    CHECK(qp && qp->value_len == 1 && qp->value[0] == '\0');
    /* names are compared whole: a %00 does not end one (found by
     * fuzz/fuzz_query.c: "%00005~" was returned for the name "") */
    q = sse_query_parse(pool, "event=ok&event%00x=bad&%00005~");
    qp = sse_query_get(q, "event");
    CHECK(qp && !strcmp(qp->value, "ok"));
    CHECK(sse_query_get(q, "") == NULL);
    qp = &APR_ARRAY_IDX(q, 1, sse_query_param);
    CHECK(qp->name_len == 7 && !memcmp(qp->name, "event\0x", 8));
}

sse_store *unit_store_new(apr_size_t size, apr_uint32_t channels,
                          apr_uint32_t history)
{
    apr_global_mutex_t *mutex;
    sse_store *st;
    sse_store_limits lim = { history, 0, 0, 0, 0, 0 };
    sse_store_geometry geo = { size, channels, 4, 64 };
    const char *why = NULL;
    CHECK(apr_global_mutex_create(&mutex, NULL, APR_LOCK_DEFAULT, pool)
          == APR_SUCCESS);
    CHECK(sse_store_create(&st, pool, &geo, NULL, mutex, &why)
          == APR_SUCCESS);
    sse_store_set_limits(st, &lim);
    return st;
}

apr_uint64_t unit_publish(sse_store *st, const char *ch, const char *frame)
{
    apr_size_t len = strlen(frame);
    apr_uint64_t id = 0;
    apr_uint32_t subs;
    if (sse_store_publish(st, ch, &frame, &len, 1, &id, &subs) != SSE_OK) {
        return 0;
    }
    return id;
}

static void test_store_replay(void)
{
    sse_store *st = unit_store_new(1 << 20, 16, 5);
    int row = sse_store_child_attach(st, (apr_int32_t)getpid());
    const char *names[] = { "a", "b" };
    sse_subscription sub;
    sse_resume resume;
    sse_read_result res;
    const char *which;
    apr_uint64_t ids[14];
    char last[SSE_ID_TEXT_MAX];
    int i;

    CHECK(row >= 0);
    for (i = 0; i < 14; i++) {
        ids[i] = unit_publish(st, (i % 2) ? "b" : "a", "data: x\n\n");
        CHECK(ids[i] != 0 && (i == 0 || ids[i] == ids[i - 1] + 1));
    }
    /* resume after ids[3]: a and b each hold their last 5 of 7; b dropped
     * ids[3] itself, which the client has: no gap */
    sse_id_format(last, ids[3]);
    CHECK(sse_store_subscribe(st, row, names, 2, 1, NULL, last, &sub, &resume,
                              &which) == SSE_OK);
    CHECK(resume == SSE_RESUME_EXACT);
    sse_store_read(st, &sub, pool, 1 << 16, &res);
    CHECK(res.events == 10 && res.first_id == ids[4] && res.last_id == ids[13]);
    CHECK(!res.gap && !res.more);
    /* framed with the id line first */
    CHECK(res.buf && !strncmp(res.buf, "id: ", 4));
    /* a tight budget delivers one message at a time, in order */
    sse_store_unsubscribe(st, &sub);
    CHECK(sse_store_subscribe(st, row, names, 2, 1, NULL, last, &sub, &resume,
                              &which) == SSE_OK);
    sse_store_read(st, &sub, pool, 1, &res);
    CHECK(res.events == 1 && res.first_id == ids[4] && res.more);
    sse_store_read(st, &sub, pool, 1, &res);
    CHECK(res.events == 1 && res.first_id == ids[5]);
    sse_store_unsubscribe(st, &sub);
    /* ids[2] was pushed out of a's history after ids[1]: expired */
    sse_id_format(last, ids[1]);
    CHECK(sse_store_subscribe(st, row, names, 1, 1, NULL, last, &sub, &resume,
                              &which) == SSE_OK);
    CHECK(resume == SSE_RESUME_EXPIRED);
    sse_store_unsubscribe(st, &sub);
    CHECK(sse_store_subscribe(st, row, names, 1, 1, NULL, "junk", &sub, &resume,
                              &which) == SSE_OK);
    CHECK(resume == SSE_RESUME_UNKNOWN);
    sse_store_unsubscribe(st, &sub);
    CHECK(sse_store_subscribe(st, row, (const char *[]){ "nope" }, 1, 0,
                              NULL, NULL, &sub, &resume, &which) == SSE_NOT_FOUND);
    CHECK(unit_store_violation(st) == NULL);
}

static void test_store_limits(void)
{
    sse_store *st = unit_store_new(64 * 1024, 4, 1000);
    char big[2000];
    sse_channel_info info;
    apr_uint64_t last = 0, id;
    int i, full = 0;

    memset(big, 'x', sizeof(big) - 3);
    memcpy(big + sizeof(big) - 3, "\n\n", 3);
    for (i = 0; i < 100 && !full; i++) {
        if ((id = unit_publish(st, "big", big))) last = id;
        else full = 1;
    }
    CHECK(full);
    /* the last free blocks, too few for a big one */
    while ((id = unit_publish(st, "big", "data: x\n\n"))) last = id;
    CHECK(sse_store_channel_info(st, "big", &info) == SSE_OK);
    CHECK(info.last_id == last && info.messages > 10);
    /* a full table refuses a 5th channel until one is deleted */
    CHECK(unit_publish(st, "c1", "data: 1\n\n") == 0);  /* memory is full */
    CHECK(sse_store_delete(st, "big", &info) == SSE_OK);
    CHECK(unit_publish(st, "c1", "data: 1\n\n")
          && unit_publish(st, "c2", "data: 1\n\n")
          && unit_publish(st, "c3", "data: 1\n\n")
          && unit_publish(st, "c4", "data: 1\n\n"));
    CHECK(unit_publish(st, "c5", "data: 1\n\n") == 0);
    CHECK(unit_store_violation(st) == NULL);
}

int main(void)
{
    apr_initialize();
    apr_pool_create(&pool, NULL);
    test_framing();
    test_validation();
    json_tests(pool);
    jwt_tests(pool);
    test_query();
    test_channel_names_ignore_locale();
    test_store_replay();
    test_store_limits();
    store_bounds_tests(pool);
    store_repair_tests(pool);
    store_random_tests(pool);
    read_cache_tests(pool);
    printf("%d passed, %d failed\n", unit_checks - unit_failures,
           unit_failures);
    apr_terminate();
    return unit_failures ? 1 : 0;
}
