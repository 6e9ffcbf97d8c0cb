/* train_internal.h - helpers shared by the files of src/train (not a public API). */
#ifndef MICLIP_TRAIN_INTERNAL_H
#define MICLIP_TRAIN_INTERNAL_H

#include <stdlib.h>

#include "miclip/checked.h"
#include "miclip/train.h"

/* All-gathers the rows of a chunk-sharded batch: this rank's rows [r0, r1) (local, row_bytes
 * each) into all[batch] at their global positions, on every rank. local may already point at
 * all + r0 * row_bytes. */
mc_status mc_train_gather_rows(const mc_comm *c, int64_t batch, int64_t chunk_rows,
                               const void *local, void *all, size_t row_bytes, mc_error *err);

/* The chain fold: rank r receives the running sum of chunks before its own from rank r-1
 * (begin), adds its chunk partials in order (the caller; rank 0 starts with its first partial),
 * passes it on, and the last rank broadcasts the total (end). The result is the left fold
 * p0 + p1 + ... in global chunk order for any rank count. */
mc_status mc_train_chain_begin(const mc_comm *c, float *acc, size_t n, mc_error *err);
mc_status mc_train_chain_end(const mc_comm *c, float *acc, size_t n, mc_error *err);
mc_status mc_train_bcast_f32(const mc_comm *c, float *buf, size_t n, int root, mc_error *err);

/* Allocation of n floats, NULL on overflow or failure. */
static inline float *mc_train_falloc(size_t n) { return mc_alloc_array(n ? n : 1, sizeof(float)); }

#endif
