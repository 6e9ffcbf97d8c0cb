/* parallel.h - splits an element-wise loop over the rank's compute threads (mc_get_threads)
 * with plain pthreads: disjoint row ranges, so no two threads write the same memory. Never
 * called around a BLAS call (OpenBLAS threads itself). Internal to src/nn. */
#ifndef MICLIP_NN_PARALLEL_H
#define MICLIP_NN_PARALLEL_H

#include <stdint.h>

/* Calls fn(r0, r1, ctx) on disjoint ranges covering [0, rows); runs on the calling thread alone
 * when one thread is configured or when rows * cost_per_row is below a few tens of
 * microseconds of work. */
void mc_parallel_rows(int64_t rows, int64_t cost_per_row,
                      void (*fn)(int64_t r0, int64_t r1, void *ctx), void *ctx);

#endif
