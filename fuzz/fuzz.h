/* fuzz.h - what the fuzz targets share: starting APR, the pool each input
 * uses (and clears when done), and FAIL, which reports a broken property
 * and aborts so that libFuzzer saves the input.
 */
#ifndef SSE_FUZZ_H
#define SSE_FUZZ_H

#include <stdio.h>
#include <stdlib.h>

#include "apr_general.h"
#include "apr_pools.h"

#define FAIL(...) do { fprintf(stderr, __VA_ARGS__); abort(); } while (0)

static apr_pool_t *pool;

/* For LLVMFuzzerInitialize. */
static void fuzz_start(void)
{
    apr_initialize();
    apr_pool_create(&pool, NULL);
}

#endif /* SSE_FUZZ_H */
