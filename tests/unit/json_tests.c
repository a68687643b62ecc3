/* json_tests.c - unit tests of sse_json.c: publish envelopes, quoting, and
 * that parsing needs memory in proportion to the body, not more.
 */
#include <stdlib.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "apr_strings.h"

#include "sse_json.h"
#include "unit.h"

static apr_pool_t *pool;

static const char *parse(const char *json, apr_array_header_t **evs)
{
    return sse_json_parse_envelopes(pool, json, strlen(json), evs);
}

static void test_json(void)
{
    apr_array_header_t *evs;
    sse_event *ev;
    const char *err;

    err = parse("{\"data\":\"a\\nb\\u00e9\\ud83d"
                "\\ude00\",\"event\":\"x\",\"retry\":5}", &evs);
    CHECK(err == NULL);
    if (!err) {
        ev = &APR_ARRAY_IDX(evs, 0, sse_event);
        CHECK(ev->data_len == 9 && !memcmp(ev->data, "a\nb\xc3\xa9\xf0\x9f\x98\x80", 9));
        CHECK(ev->event_len == 1 && ev->retry == 5);
    }
    err = parse(" {\"data\": {\"a\": [1, 2.5e3]}} ", &evs);
    CHECK(err == NULL);
    if (!err) {
        ev = &APR_ARRAY_IDX(evs, 0, sse_event);
        CHECK(ev->data_len == 17 && !memcmp(ev->data, "{\"a\": [1, 2.5e3]}", 17));
    }
    err = sse_json_parse_envelopes(pool, "[{\"data\":1},{\"data\":\"2\","
                                   "\"retry\":\"7\"}]", 37, &evs);
    CHECK(err == NULL && evs->nelts == 2);
    CHECK(sse_json_parse_envelopes(pool, "{\"data\":1,\"id\":2}", 17, &evs));
    CHECK(sse_json_parse_envelopes(pool, "{\"data\":1,\"x\":2}", 16, &evs));
    CHECK(sse_json_parse_envelopes(pool, "{\"event\":\"a\"}", 13, &evs));
    CHECK(sse_json_parse_envelopes(pool, "{\"data\":1", 9, &evs));
    CHECK(sse_json_parse_envelopes(pool, "[]", 2, &evs));
    CHECK(sse_json_parse_envelopes(pool, "{\"data\":1} x", 12, &evs));
    CHECK(sse_json_parse_envelopes(pool, "{\"data\":\"\\ud800\"}", 17, &evs));
    CHECK(sse_json_parse_envelopes(pool, "{\"data\":1,\"retry\":-1}", 21, &evs));
    CHECK(sse_json_parse_envelopes(pool, "{\"data\":01}", 11, &evs));
    CHECK(sse_json_parse_envelopes(pool, "{\"data\":\"\\\"}", 12, &evs));
    CHECK(sse_json_parse_envelopes(pool, "{\"data\":\"\\u12\"}", 15, &evs));
    err = parse("{\"data\":\"\\\\\\\"\"}", &evs);
    CHECK(err == NULL && APR_ARRAY_IDX(evs, 0, sse_event).data_len == 2);
    CHECK_STR("\"a\\\"b\\\\c\\n\\u0001\"", sse_json_quote(pool, "a\"b\\c\n\1", 7));
}

/* A key given twice in one envelope is refused, not last-one-wins. */
static void test_envelope_duplicate_keys(void)
{
    apr_array_header_t *evs;
    CHECK_STR("duplicate key \"data\" in an envelope",
              parse("{\"data\":\"a\",\"data\":\"b\"}", &evs));
    CHECK_STR("duplicate key \"data\" in an envelope",
              parse("[{\"data\":1},{\"data\":{\"x\":1},\"data\":2}]", &evs));
    CHECK_STR("duplicate key \"event\" in an envelope",
              parse("{\"event\":\"a\",\"data\":1,\"event\":\"a\"}", &evs));
    CHECK_STR("duplicate key \"retry\" in an envelope",
              parse("{\"retry\":1,\"data\":1,\"retry\":\"2\"}", &evs));
    /* a key is compared whole: "data" plus a NUL is another key */
    CHECK_STR("unknown envelope key \"data\\u0000\" (use data, event, retry)",
              parse("{\"data\\u0000\":1}", &evs));
    /* the same key in the data value or in another envelope is fine */
    CHECK(parse("{\"data\":{\"data\":1,\"event\":2}}", &evs) == NULL);
    CHECK(parse("[{\"data\":1,\"event\":\"a\"},{\"event\":\"a\",\"data\":1}]",
                &evs) == NULL && evs->nelts == 2);
}

/* Pages of virtual size (which == 0) or resident set (which == 1), from
 * /proc/self/statm; 0 when unknown. */
static long statm_pages(int which)
{
    long v[2] = { 0, 0 };
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &v[0], &v[1]) != 2) v[0] = v[1] = 0;
        fclose(f);
    }
    return v[which];
}

static int out_of_memory(int rv)
{
    (void)rv;
    _exit(3);
}

/* Parses body, an array of n elements; non-zero when that went well. */
typedef int (*parse_fn)(apr_pool_t *p, const char *body, apr_size_t len,
                        int n);

static int parse_envelopes_n(apr_pool_t *p, const char *body, apr_size_t len,
                             int n)
{
    apr_array_header_t *evs;
    return !sse_json_parse_envelopes(p, body, len, &evs) && evs->nelts == n;
}

static int parse_document_n(apr_pool_t *p, const char *body, apr_size_t len,
                            int n)
{
    sse_json_value *v;
    return !sse_json_parse(p, body, len, 64, &v) && v->count == (apr_size_t)n;
}

/* Runs in a forked child: parses an array of n copies of one (which ends
 * in a comma) under an address space cap of 256 MB more than the child
 * has, and writes to fd how many KB its resident set grew. A parser that
 * allocates the rest of the body for each string needs gigabytes here and
 * dies of the cap instead. */
static void memory_child(int fd, const char *one, int n, parse_fn parse_n)
{
    apr_size_t olen = strlen(one), len = (apr_size_t)n * olen + 1;
    char *body = malloc(len), *w = body;
    long page = sysconf(_SC_PAGESIZE), before;
    struct rlimit cap;
    apr_pool_t *p;
    int i;

    *w++ = '[';
    for (i = 0; i < n; i++, w += olen) {
        memcpy(w, one, olen);
    }
    w[-1] = ']';
    cap.rlim_cur = cap.rlim_max = (rlim_t)(statm_pages(0) * page)
                                  + (256 << 20);
    before = statm_pages(1);
    if (!before || setrlimit(RLIMIT_AS, &cap)
        || apr_pool_create_ex(&p, NULL, out_of_memory, NULL) != APR_SUCCESS
        || !parse_n(p, body, len, n)) {
        _exit(2);
    }
    before = (statm_pages(1) - before) * (page / 1024);
    if (write(fd, &before, sizeof(before)) != sizeof(before)) _exit(4);
    _exit(0);
}

/* Checks that parsing an array of n copies of one takes less than
 * max_kb. */
static void check_memory(const char *one, int n, parse_fn parse_n,
                         long max_kb)
{
    int fds[2], status = -1;
    long grown_kb = -1;
    pid_t pid;

    CHECK(pipe(fds) == 0);
    pid = fork();
    if (pid == 0) {
        close(fds[0]);
        memory_child(fds[1], one, n, parse_n);
    }
    close(fds[1]);
    if (read(fds[0], &grown_kb, sizeof(grown_kb)) != sizeof(grown_kb)) {
        grown_kb = -1;
    }
    close(fds[0]);
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(grown_kb >= 0 && grown_kb < max_kb);
    if (!WIFEXITED(status) || WEXITSTATUS(status) || grown_kb >= max_kb) {
        fprintf(stderr, "parsing %d x %s: child exit %d (3: out of its "
                "256 MB cap), resident set grew %ld KB\n", n, one,
                WIFEXITED(status) ? WEXITSTATUS(status) : -1, grown_kb);
    }
}

/* A 512 KB array of tiny envelopes once made a child use 352 MB: every
 * decoded string got a buffer as large as the rest of the body. */
static void test_memory(void)
{
    check_memory("{\"data\":\"\"},", 43690, parse_envelopes_n, 32 * 1024);
    /* a document costs a node per value: some 150 bytes per 9 here */
    check_memory("{\"k\":\"\"},", 58254, parse_document_n, 32 * 1024);
}

/* what parse_doc() refused last */
static const char *doc_error;

static const sse_json_value *parse_doc(const char *text, int max_depth)
{
    sse_json_value *v;
    doc_error = sse_json_parse(pool, text, strlen(text), max_depth, &v);
    return v;
}

static void test_document(void)
{
    const sse_json_value *v, *m;
    sse_json_value *out;

    v = parse_doc(" {\"a\" : [1, {\"b\": null}, true, false],\t"
                  "\"c\":\"x\\u0000y\", \"\":-2.5e-3 }\r\n", 8);
    CHECK(v && v->type == SSE_JSON_OBJECT && v->count == 3);
    if (!v) return;
    m = sse_json_get(v, "a");
    CHECK(m && m->type == SSE_JSON_ARRAY && m->count == 4 && m == v->child);
    CHECK(m && m->child->type == SSE_JSON_NUMBER && m->child->key == NULL);
    CHECK(m && m->child->next->type == SSE_JSON_OBJECT
          && sse_json_get(m->child->next, "b")->type == SSE_JSON_NULL);
    CHECK(m && m->child->next->next->type == SSE_JSON_TRUE
          && m->child->next->next->next->type == SSE_JSON_FALSE
          && !m->child->next->next->next->next);
    m = sse_json_get(v, "c");
    CHECK(m && m->type == SSE_JSON_STRING && m->len == 3
          && !memcmp(m->str, "x\0y", 4) && m->key_len == 1);
    m = sse_json_get(v, "");
    CHECK(m && m->type == SSE_JSON_NUMBER && m->len == 7);
    CHECK_STR("-2.5e-3", m ? m->str : NULL);
    CHECK(!sse_json_get(v, "b") && !sse_json_get(v->child, "a")
          && !sse_json_get(NULL, "a"));
    /* scalars at the top */
    CHECK((v = parse_doc("\"\\ud83d\\ude00\"", 0)) && v->len == 4);
    CHECK((v = parse_doc("null", 0)) && v->type == SSE_JSON_NULL);
    CHECK((v = parse_doc("[]", 1)) && v->count == 0 && !v->child);
    /* not JSON, or not strictly so */
    CHECK(!parse_doc("", 8) && doc_error);
    CHECK(!parse_doc(" ", 8));
    CHECK(!parse_doc("[1,]", 8));
    CHECK(!parse_doc("{,}", 8));
    CHECK(!parse_doc("{\"a\":1,}", 8));
    CHECK(!parse_doc("{\"a\" 1}", 8));
    CHECK(!parse_doc("{'a':1}", 8));
    CHECK(!parse_doc("{a:1}", 8));
    CHECK(!parse_doc("[1] /* c */", 8));
    CHECK(!parse_doc("\xef\xbb\xbf[1]", 8));
    CHECK(!parse_doc("\f1", 8));
    CHECK(!parse_doc("01", 8));
    CHECK(!parse_doc("1.", 8));
    CHECK(!parse_doc(".5", 8));
    CHECK(!parse_doc("+1", 8));
    CHECK(!parse_doc("1e", 8));
    CHECK(!parse_doc("NaN", 8));
    CHECK(!parse_doc("Infinity", 8));
    CHECK(!parse_doc("tru", 8));
    CHECK(!parse_doc("nul", 8));
    CHECK(!parse_doc("1 2", 8));
    CHECK(!parse_doc("\"a", 8));
    CHECK(!parse_doc("\"\\x\"", 8));
    CHECK(!parse_doc("\"a\tb\"", 8));
    CHECK(!parse_doc("\"\\udc00\"", 8));
    CHECK_STR("invalid UTF-8 in a JSON string", (parse_doc("\"\xff\"", 8),
                                                  doc_error));
    CHECK(!parse_doc("\"\xc0\xaf\"", 8));
    CHECK(!parse_doc("\"\xed\xa0\x80\"", 8));
    CHECK(parse_doc("\"h\xc3\xa9\"", 8));
    /* a text with a NUL in it is not one JSON value */
    CHECK(sse_json_parse(pool, "1\0", 2, 8, &out) && !out);
}

static void test_document_keys_and_depth(void)
{
    const sse_json_value *v;
    char big[2048], *w = big;
    int i;

    CHECK_STR("duplicate key in a JSON object",
              (parse_doc("{\"a\":1,\"b\":2,\"a\":3}", 8), doc_error));
    CHECK(!parse_doc("[{\"x\":{\"a\":1,\"a\":1}}]", 8));
    CHECK(!parse_doc("{\"a\":1,\"\\u0061\":2}", 8));
    CHECK(parse_doc("{\"a\":{\"a\":1},\"b\":{\"a\":1},\"a\\u0000\":1}", 8));
    /* past 16 members duplicates are found by sorting */
    w += sprintf(w, "{");
    for (i = 0; i < 100; i++) w += sprintf(w, "\"k%d\":%d,", 99 - i, i);
    strcpy(w, "\"k42\":0}");
    CHECK(!parse_doc(big, 8) && doc_error);
    strcpy(w, "\"k100\":0}");
    CHECK((v = parse_doc(big, 8)) && v->count == 101);
    CHECK(v && sse_json_get(v, "k0")->str[0] == '9');
    /* depth counts arrays and objects */
    CHECK(parse_doc("[[1]]", 2) && !parse_doc("[[1]]", 1));
    CHECK(parse_doc("1", 0) && !parse_doc("[]", 0));
    CHECK(!parse_doc("{\"a\":{\"b\":{}}}", 2));
    memset(big, '[', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    CHECK_STR("JSON nested too deeply", (parse_doc(big, 64), doc_error));
}

static void test_int64(void)
{
    apr_int64_t n = 7;
    CHECK(sse_json_int64(parse_doc("0", 0), &n) == 0 && n == 0);
    CHECK(sse_json_int64(parse_doc("-0", 0), &n) == 0 && n == 0);
    CHECK(sse_json_int64(parse_doc("1700000000", 0), &n) == 0
          && n == 1700000000);
    CHECK(sse_json_int64(parse_doc("9223372036854775807", 0), &n) == 0
          && n == APR_INT64_MAX);
    CHECK(sse_json_int64(parse_doc("-9223372036854775808", 0), &n) == 0
          && n == APR_INT64_MIN);
    n = 7;
    CHECK(sse_json_int64(parse_doc("9223372036854775808", 0), &n) == -1);
    CHECK(sse_json_int64(parse_doc("-9223372036854775809", 0), &n) == -1);
    CHECK(sse_json_int64(parse_doc("99999999999999999999", 0), &n) == -1);
    CHECK(sse_json_int64(parse_doc("1.0", 0), &n) == -1);
    CHECK(sse_json_int64(parse_doc("1e3", 0), &n) == -1);
    CHECK(sse_json_int64(parse_doc("\"1\"", 0), &n) == -1);
    CHECK(sse_json_int64(parse_doc("true", 0), &n) == -1);
    CHECK(sse_json_int64(NULL, &n) == -1 && n == 7);
}

void json_tests(apr_pool_t *p)
{
    pool = p;
    test_json();
    test_envelope_duplicate_keys();
    test_memory();
    test_document();
    test_document_keys_and_depth();
    test_int64();
}
