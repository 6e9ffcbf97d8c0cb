/* parallel.c - mc_parallel_rows: fork/join over at most mc_get_threads() threads. Thread
 * creation costs ~10-20 us, so only loops worth well over that are split. */
#include "parallel.h"

#include <pthread.h>
#include <stdbool.h>

#include "miclip/miclip.h"

#define MC_PAR_MAX 64
#define MC_PAR_MIN_WORK 200000 /* elements of work below which one thread is faster */

typedef struct {
    void (*fn)(int64_t, int64_t, void *);
    void *ctx;
    int64_t r0, r1;
} par_job;

static void *par_run(void *p) {
    par_job *j = p;
    j->fn(j->r0, j->r1, j->ctx);
    return NULL;
}

void mc_parallel_rows(int64_t rows, int64_t cost_per_row, void (*fn)(int64_t, int64_t, void *),
                      void *ctx) {
    int t = mc_get_threads();
    if (t > MC_PAR_MAX) t = MC_PAR_MAX;
    if (t > rows) t = (int)rows;
    if (t <= 1 || rows * cost_per_row < MC_PAR_MIN_WORK) {
        if (rows > 0) fn(0, rows, ctx);
        return;
    }
    par_job jobs[MC_PAR_MAX];
    pthread_t tid[MC_PAR_MAX];
    bool started[MC_PAR_MAX] = {0};
    for (int i = 0; i < t; i++)
        jobs[i] = (par_job){fn, ctx, rows * i / t, rows * (i + 1) / t};
    for (int i = 1; i < t; i++) started[i] = pthread_create(&tid[i], NULL, par_run, &jobs[i]) == 0;
    par_run(&jobs[0]);
    for (int i = 1; i < t; i++) {
        if (started[i]) pthread_join(tid[i], NULL);
        else par_run(&jobs[i]); /* could not start a thread: do its share here */
    }
}
