/* parallel_bench.c - what one mc_parallel_rows call costs beyond its work: the fork/join of
 * threads created per call (src/nn/parallel.c). Prints microseconds per call at 1, 2 and 4
 * threads for a loop just above the split threshold, and for an empty-work loop forced to split.
 * docs/performance.md ("Threads per call") weighs it against a forward's time.
 *
 *   build/tests/nn/bench_parallel [CALLS]        (default 20000) */
#include <stdio.h>
#include <stdlib.h>

#include "miclip/log.h"
#include "miclip/miclip.h"
#include "nn/parallel.h"

#define COLS 64

static void touch(int64_t r0, int64_t r1, void *ctx) {
    float *x = ctx;
    for (int64_t i = r0 * COLS; i < r1 * COLS; i++) x[i] = x[i] * 0.5f + 1.0f;
}

int main(int argc, char **argv) {
    const int calls = argc > 1 ? atoi(argv[1]) : 20000;
    /* 4096 rows x 64 = 262k elements: just above the split threshold; then 4x and 16x that. */
    float *x = calloc((size_t)65536 * COLS, sizeof *x);
    if (!x) return 1;
    for (int64_t rows = 4096; rows <= 65536; rows *= 4) {
        const int n = (int)(calls * 4096 / rows);
        printf("mc_parallel_rows: %d calls of %lld elements of work\n", n,
               (long long)(rows * COLS));
        double base = 0;
        for (int t = 1; t <= 4; t *= 2) {
            mc_set_threads(t);
            mc_parallel_rows(rows, COLS, touch, x); /* warm-up (starts the pool's workers) */
            double t0 = mc_now();
            for (int i = 0; i < n; i++) mc_parallel_rows(rows, COLS, touch, x);
            double us = (mc_now() - t0) / n * 1e6;
            if (t == 1) base = us;
            printf("  %d thread(s): %8.2f us per call", t, us);
            if (t > 1)
                printf(" (%.2fx the 1-thread call; overhead over the split work %.2f us)",
                       us / base, us - base / t);
            printf("\n");
        }
    }
    free(x);
    return 0;
}
