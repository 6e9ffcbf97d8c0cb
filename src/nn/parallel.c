/* parallel.c - mc_parallel_rows: fork/join over at most mc_get_threads() threads, run by a pool of
 * workers that start on first use and then wait on a condition variable between calls. Creating
 * threads per call cost ~50 us per call on a 2-core machine, as much as the work of a call near
 * the split threshold (bench/parallel_bench.c, docs/performance.md); waking a waiting worker
 * costs a few microseconds. The pool is the one piece of process state src/nn keeps. */
#include "parallel.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "miclip/miclip.h"

#define MC_PAR_MAX 64
#define MC_PAR_MIN_WORK 200000 /* elements of work below which one thread is faster */

typedef struct {
    void (*fn)(int64_t, int64_t, void *);
    void *ctx;
    int64_t r0, r1;
} par_job;

/* Worker i (1..started) runs jobs[i] of each generation while i <= active. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    int started, active, pending;
    uint64_t gen;
    par_job jobs[MC_PAR_MAX];
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER,
          .wake = PTHREAD_COND_INITIALIZER,
          .done = PTHREAD_COND_INITIALIZER};

/* One caller at a time uses the pool; a concurrent caller runs its loop alone. */
static pthread_mutex_t pool_owner = PTHREAD_MUTEX_INITIALIZER;

static void *worker(void *arg) {
    const int id = (int)(intptr_t)arg;
    uint64_t seen = 0;
    pthread_mutex_lock(&pool.mu);
    for (;;) {
        while (pool.gen == seen) pthread_cond_wait(&pool.wake, &pool.mu);
        seen = pool.gen;
        if (id > pool.active) continue;
        par_job j = pool.jobs[id];
        pthread_mutex_unlock(&pool.mu);
        j.fn(j.r0, j.r1, j.ctx);
        pthread_mutex_lock(&pool.mu);
        if (--pool.pending == 0) pthread_cond_signal(&pool.done);
    }
    return NULL;
}

void mc_parallel_rows(int64_t rows, int64_t cost_per_row, void (*fn)(int64_t, int64_t, void *),
                      void *ctx) {
    int t = mc_get_threads();
    if (t > MC_PAR_MAX) t = MC_PAR_MAX;
    if (t > rows) t = (int)rows;
    if (t <= 1 || rows * cost_per_row < MC_PAR_MIN_WORK ||
        pthread_mutex_trylock(&pool_owner) != 0) {
        if (rows > 0) fn(0, rows, ctx);
        return;
    }
    /* Workers are only ever added; one that cannot be started leaves its share to fewer threads. */
    while (pool.started < t - 1) {
        pthread_t tid;
        if (pthread_create(&tid, NULL, worker, (void *)(intptr_t)(pool.started + 1)) != 0) break;
        pthread_detach(tid);
        pool.started++;
    }
    if (t > pool.started + 1) t = pool.started + 1;
    pthread_mutex_lock(&pool.mu);
    for (int i = 0; i < t; i++) pool.jobs[i] = (par_job){fn, ctx, rows * i / t, rows * (i + 1) / t};
    pool.active = pool.pending = t - 1;
    pool.gen++;
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.mu);
    fn(pool.jobs[0].r0, pool.jobs[0].r1, ctx);
    pthread_mutex_lock(&pool.mu);
    while (pool.pending > 0) pthread_cond_wait(&pool.done, &pool.mu);
    pthread_mutex_unlock(&pool.mu);
    pthread_mutex_unlock(&pool_owner);
}
