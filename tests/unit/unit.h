/* unit.h - the check macros and counters shared by the unit test files, so
 * that each unit's tests can live in a file of their own and still be run
 * and counted by the one binary that "make unit" builds.
 */
#ifndef SSE_UNIT_H
#define SSE_UNIT_H

#include <stdio.h>
#include <string.h>

#include "apr_pools.h"

#include "sse_store.h"

extern int unit_failures, unit_checks;

#define CHECK(cond) do { unit_checks++; if (!(cond)) { unit_failures++; \
    fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); } \
} while (0)
#define CHECK_STR(want, got) do { const char *w_ = (want), *g_ = (got); \
    unit_checks++; if (!g_ || strcmp(w_, g_)) { unit_failures++; \
    fprintf(stderr, "%s:%d: expected \"%s\", got \"%s\"\n", __FILE__, \
            __LINE__, w_, g_ ? g_ : "(null)"); } } while (0)

/* The suites in the other files, called by main() in unit_tests.c. */
void json_tests(apr_pool_t *p);
void jwt_tests(apr_pool_t *p);
void store_bounds_tests(apr_pool_t *p);
void store_repair_tests(apr_pool_t *p);
void store_random_tests(apr_pool_t *p);
void read_cache_tests(apr_pool_t *p);

/* A store of size bytes and channels slots for 4 children and 64 streams,
 * keeping history messages per channel (unit_tests.c). */
sse_store *unit_store_new(apr_size_t size, apr_uint32_t channels,
                          apr_uint32_t history);
/* Publishes one frame; returns its id, 0 when refused (unit_tests.c). */
apr_uint64_t unit_publish(sse_store *st, const char *channel,
                          const char *frame);

/* NULL when every invariant of the store holds, else the first broken
 * one (store_repair_tests.c; takes the store's lock). */
const char *unit_store_violation(sse_store *st);

/* NULL when a read's result is whole events in rising id order above
 * after, each starting with its mark's id: line; else what is wrong
 * (read_check.c). */
const char *unit_read_problem(const sse_read_result *res, apr_uint64_t after);

#endif /* SSE_UNIT_H */
