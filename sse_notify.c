/* sse_notify.c - cross-process wakeups without polling.
 *
 * A publish bumps a 32-bit word in shared memory and calls FUTEX_WAKE on it
 * (a shared futex: no FUTEX_PRIVATE_FLAG, so waiters in other processes
 * wake). Each child runs one dispatcher thread in FUTEX_WAIT on that word;
 * it turns a change into a local generation bump and wakes only the stream
 * threads whose channels have news (each waits on a private futex word of
 * its own), so a publish does not wake every thread of every stream.
 *
 * Under prefork a child has one thread and is stopped from a signal
 * handler that may interrupt its wait, so there is no dispatcher, mutex or
 * condition: the stream thread waits on the shared word itself.
 *
 * Waits and wakes use futex bitsets: a publish wakes every child, while a
 * child's own stop or poke wakes only its own dispatcher. Waking the other
 * children at a stop would make them end streams while their MPM may be
 * closing busy sockets (an ungraceful stop), a race inside mpm_event that
 * crashes the child.
 *
 * Every wait has a timeout, so a lost wakeup costs at most one interval.
 * Without futexes (not Linux) waiters poll the word every 20 ms.
 */
#include <stdlib.h>

#include "apr_thread_proc.h"
#include "apr_thread_mutex.h"
#include "apr_strings.h"

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <limits.h>
#include <time.h>
#define SSE_HAVE_FUTEX 1
#endif

#include "ap_mpm.h"

#include "sse_private.h"
#include "sse_notify.h"

/* A stream thread waiting for news of its own channels. */
typedef struct waiter waiter;
struct waiter {
    apr_uint32_t woken;          /* futex word: 0 while waiting */
    const void *interest;        /* for news_of(); NULL: any change */
    int listed;                  /* on the list; guarded by local_mutex */
    waiter *prev, *next;
};

static apr_thread_mutex_t *local_mutex;  /* guards the two below */
static apr_uint32_t local_generation;
static waiter *waiters;
static sse_notify_news_fn *news_of;
static volatile apr_uint32_t stopping;
static apr_thread_t *dispatcher;
static sse_notify_round_fn *dispatch_round;
static apr_uint32_t *shared_word;
/* prefork: no dispatcher, the one stream thread waits on shared_word */
static int single_threaded;

#define PUBLISH_BIT 0x80000000u
/* this child's own bit; children beyond 31 rows share bits, which costs
 * only a spurious wakeup */
static apr_uint32_t own_bit = 1;

/* Waits while *word == expected, at most timeout, for a publish or for
 * this child's own wakeups. */
static void word_wait(apr_uint32_t *word, apr_uint32_t expected,
                      apr_interval_time_t timeout)
{
#if SSE_HAVE_FUTEX
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)apr_time_sec(timeout);
    ts.tv_nsec += (long)apr_time_usec(timeout) * 1000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    /* EAGAIN (changed already), EINTR and ETIMEDOUT all mean "look again" */
    syscall(SYS_futex, word, FUTEX_WAIT_BITSET, expected, &ts, NULL,
            PUBLISH_BIT | own_bit);
#else
    (void)word;
    (void)expected;
    apr_sleep(timeout < apr_time_from_msec(20) ? timeout
                                               : apr_time_from_msec(20));
#endif
}

static void word_wake(apr_uint32_t *word, apr_uint32_t bits)
{
#if SSE_HAVE_FUTEX
    syscall(SYS_futex, word, FUTEX_WAKE_BITSET, INT_MAX, NULL, NULL, bits);
#else
    (void)word;
    (void)bits;
#endif
}

static void futex_wake_one(apr_uint32_t *word)
{
#if SSE_HAVE_FUTEX
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
#else
    (void)word;
#endif
}

static void unlist(waiter *w)
{
    if (w->prev) w->prev->next = w->next;
    else waiters = w->next;
    if (w->next) w->next->prev = w->prev;
    w->listed = 0;
}

/* Wakes the stream threads whose channels have news (all of them when
 * everybody must look: a stop). Waiting threads enqueue under the same
 * mutex after checking the generation, so none misses a change.
 *
 * The chosen waiters are taken off the list and marked under the mutex,
 * but the futex wakes happen after it is released: woken under it, a
 * thousand threads would all queue on the mutex the dispatcher still
 * holds (measured: a third of a thread-path stream's CPU per event). A
 * marked waiter returns without the mutex, so its futex word may be gone
 * by the time it is woken; FUTEX_WAKE only looks the address up, and
 * every futex wait here and in glibc tolerates a spurious wakeup. */
static void wake_local(int everybody)
{
    waiter *w, *next;
    apr_uint32_t **words = NULL;
    apr_size_t n = 0, i, listed = 0;
    apr_thread_mutex_lock(local_mutex);
    __atomic_add_fetch(&local_generation, 1, __ATOMIC_RELEASE);
    for (w = waiters; w; w = w->next) listed++;
    if (listed) words = malloc(listed * sizeof(*words));
    for (w = waiters; w; w = next) {
        next = w->next;
        if (everybody || !w->interest || !news_of || news_of(w->interest)) {
            unlist(w);
            __atomic_store_n(&w->woken, 1, __ATOMIC_RELEASE);
            if (words) words[n++] = &w->woken;
            else futex_wake_one(&w->woken);   /* out of memory: here */
        }
    }
    apr_thread_mutex_unlock(local_mutex);
    for (i = 0; i < n; i++) futex_wake_one(words[i]);
    free(words);
}

/* The MPM marks a stop before it closes the sockets of busy workers (an
 * ungraceful stop) and runs child_stopping right after. */
static int mpm_stopping(void)
{
    int state = AP_MPMQ_RUNNING;
    ap_mpm_query(AP_MPMQ_MPM_STATE, &state);
    return state == AP_MPMQ_STOPPING;
}

static void *APR_THREAD_FUNC dispatch(apr_thread_t *thread, void *arg)
{
    apr_uint32_t last = __atomic_load_n(shared_word, __ATOMIC_ACQUIRE);
    (void)arg;
    while (!stopping) {
        apr_uint32_t now;
        int changed;
        word_wait(shared_word, last, apr_time_from_sec(1));
        now = __atomic_load_n(shared_word, __ATOMIC_ACQUIRE);
        changed = now != last;
        last = now;
        if (stopping) break;
        if (mpm_stopping()) {
            /* stand still until child_stopping: an ungraceful stop is
             * closing busy sockets now, and no stream may end meanwhile */
            continue;
        }
        if (changed) wake_local(0);
        if (dispatch_round) dispatch_round(changed, 0);
    }
    if (dispatch_round) dispatch_round(0, 1);
    /* Return, not apr_thread_exit(): that one ends in pthread_exit(), which
     * unwinds this frame without its epilogue (it is not declared noreturn),
     * so an AddressSanitizer build leaves the frame's stack poisoned and
     * reports its own teardown of the thread. The thread's pool goes with
     * pchild, and join_dispatcher() does not use the exit status. */
    (void)thread;
    return NULL;
}

static apr_status_t join_dispatcher(void *unused)
{
    apr_status_t rv;
    (void)unused;
    sse_notify_stop();
    if (dispatcher) {
        apr_thread_join(&rv, dispatcher);
    }
    dispatcher = NULL;
    return APR_SUCCESS;
}

apr_status_t sse_notify_child_init(apr_pool_t *pchild, apr_uint32_t *word,
                                   int row, int threaded_mpm,
                                   sse_notify_round_fn *round,
                                   sse_notify_news_fn *news)
{
    apr_pool_t *forever;
    apr_status_t rv;
    shared_word = word;
    own_bit = 1u << ((row < 0 ? 0 : row) % 31);
    stopping = 0;
    local_generation = 0;
    single_threaded = !threaded_mpm;
    dispatch_round = single_threaded ? NULL : round;
    news_of = news;
    if (single_threaded) {
        return APR_SUCCESS;
    }
    /* The mutex and condition live until the process exits, so no cleanup
     * can destroy them under a waiter. */
    if ((rv = apr_pool_create_unmanaged_ex(&forever, NULL, NULL))
        || (rv = apr_thread_mutex_create(&local_mutex,
                                         APR_THREAD_MUTEX_DEFAULT, forever))
        || (rv = ap_thread_create(&dispatcher, NULL, dispatch, NULL,
                                  pchild))) {
        return rv;
    }
    /* runs before pchild's threads are cleaned up */
    apr_pool_pre_cleanup_register(pchild, NULL, join_dispatcher);
    return APR_SUCCESS;
}

void sse_notify_stop(void)
{
    stopping = 1;
    if (local_mutex && !single_threaded) {
        wake_local(1);
    }
    if (shared_word) {
        /* gets our own waiter out of FUTEX_WAIT, no other child's */
        word_wake(shared_word, own_bit);
    }
}

int sse_notify_stopping(void)
{
    return stopping != 0 || mpm_stopping();
}

apr_uint32_t sse_notify_generation(void)
{
    if (single_threaded) {
        return __atomic_load_n(shared_word, __ATOMIC_ACQUIRE);
    }
    return __atomic_load_n(&local_generation, __ATOMIC_ACQUIRE);
}

int sse_notify_available(void)
{
    return local_mutex != NULL || single_threaded;
}

int sse_notify_wait(apr_uint32_t *seen, const void *interest,
                    apr_interval_time_t timeout)
{
    waiter w;
    if (single_threaded) {
        if (!stopping) word_wait(shared_word, *seen, timeout);
        *seen = __atomic_load_n(shared_word, __ATOMIC_ACQUIRE);
        return 0;
    }
    memset(&w, 0, sizeof(w));
    w.interest = interest;
    apr_thread_mutex_lock(local_mutex);
    if (local_generation != *seen || stopping) {
        *seen = local_generation;
        apr_thread_mutex_unlock(local_mutex);
        return 0;
    }
    w.next = waiters;
    if (waiters) waiters->prev = &w;
    waiters = &w;
    w.listed = 1;
    apr_thread_mutex_unlock(local_mutex);
#if SSE_HAVE_FUTEX
    {
        struct timespec ts;
        ts.tv_sec = (time_t)apr_time_sec(timeout);
        ts.tv_nsec = (long)apr_time_usec(timeout) * 1000L;
        /* EAGAIN (woken already), EINTR, ETIMEDOUT: look again */
        syscall(SYS_futex, &w.woken, FUTEX_WAIT_PRIVATE, 0, &ts, NULL, 0);
    }
#else
    apr_sleep(timeout < apr_time_from_msec(20) ? timeout
                                               : apr_time_from_msec(20));
#endif
    if (__atomic_load_n(&w.woken, __ATOMIC_ACQUIRE)) {
        /* the dispatcher took it off the list before marking it */
        *seen = __atomic_load_n(&local_generation, __ATOMIC_ACQUIRE);
        return 1;
    }
    apr_thread_mutex_lock(local_mutex);
    if (w.listed) unlist(&w);
    *seen = local_generation;
    apr_thread_mutex_unlock(local_mutex);
    return __atomic_load_n(&w.woken, __ATOMIC_ACQUIRE) != 0;
}

void sse_notify_poke(void)
{
    if (shared_word) word_wake(shared_word, own_bit);
}

void sse_notify_all(apr_uint32_t *word)
{
    __atomic_add_fetch(word, 1, __ATOMIC_RELEASE);
    word_wake(word, FUTEX_BITSET_MATCH_ANY);
}
