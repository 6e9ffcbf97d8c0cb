/* pblas.h - distributed float32 matrix products with ScaLAPACK's PBLAS (psgemm) on 2-D
 * block-cyclic matrices (docs/performance.md, "Products over ranks").
 *
 * A 1-D split of C = A B over the rows of A leaves B whole on every rank; when B is large (the
 * baselines' images x concepts terms at paper scale) its memory and the work that makes it do
 * not fall with the ranks. Here A, B and C are each spread over a near-square nprow x npcol
 * grid of the ranks in nb x nb blocks, so every rank holds about 1/P of each.
 *
 * Numbers: psgemm sums over k in an order set by the block distribution, so C differs between
 * rank counts by rounding only: |C_P - C| <= gamma_K (|A| |B|) entrywise, gamma_K = K u / (1 - K
 * u), u = 2^-24 (the standard bound of a K-term float32 dot product in any order; tested at 1, 2,
 * 3 and 4 ranks against numpy in float64, tests/core/test_pblas.py). Results are not bitwise
 * equal across rank counts; a ranking read from C is equal wherever its gaps exceed 2 gamma_K
 * (|A| |B|). */
#ifndef MICLIP_PBLAS_H
#define MICLIP_PBLAS_H

#include <stdint.h>

#include "miclip/comm.h"
#include "miclip/status.h"

/* A BLACS process grid over every rank of a communicator, row-major (rank = row * npcol + col). */
typedef struct {
    int handle, ctxt; /* BLACS system handle and context */
    int nprow, npcol, myrow, mycol;
} mc_pgrid;

/* A global m x n float32 matrix in mb x nb blocks over a grid, first block on process (0, 0).
 * This rank's part is lr x lc, column-major with leading dimension lld. */
typedef struct {
    int64_t m, n, lr, lc, lld;
    int mb, nb;
    int desc[9]; /* ScaLAPACK's array descriptor */
    float *a;    /* owned; lld * lc floats (at least one) */
} mc_pmat;

/* Collective. The most square grid with nprow * npcol = c->size and nprow <= npcol (1 x 1, 1 x 2,
 * 1 x 3, 2 x 2, 2 x 3, ...). */
mc_status mc_pgrid_open(const mc_comm *c, mc_pgrid *g, mc_error *err);
void mc_pgrid_close(mc_pgrid *g);

/* Collective. Allocates this rank's zeroed part of an m x n matrix in mb x nb blocks. Refuses
 * shapes whose global or local sizes ScaLAPACK's 32-bit indices cannot address. */
mc_status mc_pmat_alloc(const mc_comm *c, const mc_pgrid *g, int64_t m, int64_t n, int mb, int nb,
                        mc_pmat *A, mc_error *err);
void mc_pmat_free(mc_pmat *A);

/* The global row (column) of this rank's local row li (column lj). */
int64_t mc_pmat_grow(const mc_pmat *A, const mc_pgrid *g, int64_t li);
int64_t mc_pmat_gcol(const mc_pmat *A, const mc_pgrid *g, int64_t lj);

/* Collective. C = A B (A m x k, B k x n, C m x n; all on grid g, with A's row blocks equal to
 * C's, A's column blocks to B's row blocks, B's column blocks to C's). */
mc_status mc_psgemm(const mc_comm *c, const mc_pgrid *g, const mc_pmat *A, const mc_pmat *B,
                    mc_pmat *C, mc_error *err);

/* Collective. The whole matrix, row-major m x n, into full on rank 0 (NULL elsewhere: ignored);
 * for tests and small outputs. */
mc_status mc_pmat_gather(const mc_comm *c, const mc_pgrid *g, const mc_pmat *A, float *full,
                         mc_error *err);

#endif
