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

/* Runs in a forked child: parses n {"data":""} envelopes under an address
 * space cap of 256 MB more than the child has, and writes to fd how many
 * KB its resident set grew. A parser that allocates the rest of the body
 * for each string needs gigabytes here and dies of the cap instead. */
static void envelopes_memory_child(int fd, int n)
{
    static const char one[] = "{\"data\":\"\"},";
    apr_size_t len = (apr_size_t)n * (sizeof(one) - 1) + 1;
    char *body = malloc(len), *w = body;
    long page = sysconf(_SC_PAGESIZE), before;
    struct rlimit cap;
    apr_array_header_t *evs;
    apr_pool_t *p;
    int i;

    *w++ = '[';
    for (i = 0; i < n; i++, w += sizeof(one) - 1) {
        memcpy(w, one, sizeof(one) - 1);
    }
    w[-1] = ']';
    cap.rlim_cur = cap.rlim_max = (rlim_t)(statm_pages(0) * page)
                                  + (256 << 20);
    before = statm_pages(1);
    if (!before || setrlimit(RLIMIT_AS, &cap)
        || apr_pool_create_ex(&p, NULL, out_of_memory, NULL) != APR_SUCCESS
        || sse_json_parse_envelopes(p, body, len, &evs) || evs->nelts != n) {
        _exit(2);
    }
    before = (statm_pages(1) - before) * (page / 1024);
    if (write(fd, &before, sizeof(before)) != sizeof(before)) _exit(4);
    _exit(0);
}

/* A 512 KB array of tiny envelopes once made a child use 352 MB: every
 * decoded string got a buffer as large as the rest of the body. */
static void test_envelopes_memory(void)
{
    int fds[2], status = -1;
    long grown_kb = -1;
    pid_t pid;

    CHECK(pipe(fds) == 0);
    pid = fork();
    if (pid == 0) {
        close(fds[0]);
        envelopes_memory_child(fds[1], 43690);
    }
    close(fds[1]);
    if (read(fds[0], &grown_kb, sizeof(grown_kb)) != sizeof(grown_kb)) {
        grown_kb = -1;
    }
    close(fds[0]);
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(grown_kb >= 0 && grown_kb < 32 * 1024);
    if (!WIFEXITED(status) || WEXITSTATUS(status) || grown_kb >= 32 * 1024) {
        fprintf(stderr, "parsing 512 KB of envelopes: child exit %d (3: "
                "out of its 256 MB cap), resident set grew %ld KB\n",
                WIFEXITED(status) ? WEXITSTATUS(status) : -1, grown_kb);
    }
}

void json_tests(apr_pool_t *p)
{
    pool = p;
    test_json();
    test_envelope_duplicate_keys();
    test_envelopes_memory();
}
