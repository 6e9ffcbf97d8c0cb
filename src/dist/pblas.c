/* pblas.c - 2-D block-cyclic matrices and psgemm over the ranks of an mc_comm (pblas.h).
 *
 * Debian's libscalapack-openmpi ships no C header: the few BLACS, PBLAS and TOOLS entry points
 * used here are declared below with their documented signatures (LP64: Fortran INTEGER is int). */
#include "miclip/pblas.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/checked.h"

int Csys2blacs_handle(MPI_Comm comm);
void Cfree_blacs_system_handle(int handle);
void Cblacs_gridinit(int *ctxt, const char *order, int nprow, int npcol);
void Cblacs_gridinfo(int ctxt, int *nprow, int *npcol, int *myrow, int *mycol);
void Cblacs_gridexit(int ctxt);
int numroc_(const int *n, const int *nb, const int *iproc, const int *isrcproc, const int *nprocs);
void descinit_(int *desc, const int *m, const int *n, const int *mb, const int *nb,
               const int *irsrc, const int *icsrc, const int *ictxt, const int *lld, int *info);
void psgemm_(const char *transa, const char *transb, const int *m, const int *n, const int *k,
             const float *alpha, const float *a, const int *ia, const int *ja, const int *desca,
             const float *b, const int *ib, const int *jb, const int *descb, const float *beta,
             float *c, const int *ic, const int *jc, const int *descc);

mc_status mc_pgrid_open(const mc_comm *c, mc_pgrid *g, mc_error *err) {
    memset(g, 0, sizeof *g);
    int pr = (int)sqrt((double)c->size);
    while (pr > 1 && c->size % pr) pr--;
    if (pr < 1) pr = 1;
    g->nprow = pr, g->npcol = c->size / pr;
    g->handle = Csys2blacs_handle(c->comm);
    g->ctxt = g->handle;
    Cblacs_gridinit(&g->ctxt, "Row", g->nprow, g->npcol);
    int nr = 0, nc = 0;
    Cblacs_gridinfo(g->ctxt, &nr, &nc, &g->myrow, &g->mycol);
    mc_status s = MC_OK;
    if (nr != g->nprow || nc != g->npcol || g->myrow < 0 || g->mycol < 0)
        s = MC_FAIL(err, MC_ERR_MPI, "BLACS grid %d x %d over %d ranks failed", g->nprow, g->npcol,
                    c->size);
    s = mc_comm_agree(c, s, err);
    if (s != MC_OK) mc_pgrid_close(g);
    return s;
}

void mc_pgrid_close(mc_pgrid *g) {
    if (g->nprow > 0 && g->myrow >= 0) Cblacs_gridexit(g->ctxt);
    if (g->nprow > 0) Cfree_blacs_system_handle(g->handle);
    memset(g, 0, sizeof *g);
}

mc_status mc_pmat_alloc(const mc_comm *c, const mc_pgrid *g, int64_t m, int64_t n, int mb, int nb,
                        mc_pmat *A, mc_error *err) {
    memset(A, 0, sizeof *A);
    mc_status s = MC_OK;
    if (m < 1 || n < 1 || m > INT_MAX || n > INT_MAX || mb < 1 || nb < 1)
        s = MC_FAIL(err, MC_ERR_UNSUPPORTED,
                    "distributed matrix of %lld x %lld in %d x %d blocks: out of ScaLAPACK's range",
                    (long long)m, (long long)n, mb, nb);
    if (s == MC_OK) {
        const int zero = 0, im = (int)m, in = (int)n;
        A->m = m, A->n = n, A->mb = mb, A->nb = nb;
        A->lr = numroc_(&im, &mb, &g->myrow, &zero, &g->nprow);
        A->lc = numroc_(&in, &nb, &g->mycol, &zero, &g->npcol);
        A->lld = A->lr > 1 ? A->lr : 1;
        /* PBLAS indexes a local array with int: lld * lc must stay below 2^31. */
        if ((double)A->lld * (double)A->lc >= 2147483647.0)
            s = MC_FAIL(err, MC_ERR_UNSUPPORTED,
                        "distributed matrix of %lld x %lld: %lld x %lld local entries exceed "
                        "ScaLAPACK's 32-bit indices; use more ranks",
                        (long long)m, (long long)n, (long long)A->lr, (long long)A->lc);
    }
    if (s == MC_OK) {
        int info = 0, lld = (int)A->lld, im = (int)m, in = (int)n, zero = 0;
        descinit_(A->desc, &im, &in, &mb, &nb, &zero, &zero, &g->ctxt, &lld, &info);
        if (info != 0)
            s = MC_FAIL(err, MC_ERR_INTERNAL, "descinit of a %lld x %lld matrix: info %d",
                        (long long)m, (long long)n, info);
    }
    if (s == MC_OK) {
        A->a = mc_calloc_array((size_t)(A->lld * (A->lc > 0 ? A->lc : 1)), sizeof(float));
        if (!A->a)
            s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory for %lld x %lld local entries",
                        (long long)A->lr, (long long)A->lc);
    }
    s = mc_comm_agree(c, s, err);
    if (s != MC_OK) mc_pmat_free(A);
    return s;
}

void mc_pmat_free(mc_pmat *A) {
    free(A->a);
    memset(A, 0, sizeof *A);
}

/* Block-cyclic from process 0: local index l of process p among np, blocks of b. */
static int64_t global_index(int64_t l, int b, int p, int np) {
    return (l / b) * (int64_t)b * np + (int64_t)p * b + l % b;
}

int64_t mc_pmat_grow(const mc_pmat *A, const mc_pgrid *g, int64_t li) {
    return global_index(li, A->mb, g->myrow, g->nprow);
}

int64_t mc_pmat_gcol(const mc_pmat *A, const mc_pgrid *g, int64_t lj) {
    return global_index(lj, A->nb, g->mycol, g->npcol);
}

mc_status mc_psgemm(const mc_comm *c, const mc_pgrid *g, const mc_pmat *A, const mc_pmat *B,
                    mc_pmat *C, mc_error *err) {
    mc_status s = MC_OK;
    if (A->n != B->m || A->m != C->m || B->n != C->n || A->mb != C->mb || A->nb != B->mb ||
        B->nb != C->nb)
        s = MC_FAIL(err, MC_ERR_SHAPE,
                    "psgemm: %lld x %lld (%d x %d blocks) times %lld x %lld (%d x %d) into %lld x "
                    "%lld (%d x %d)",
                    (long long)A->m, (long long)A->n, A->mb, A->nb, (long long)B->m,
                    (long long)B->n, B->mb, B->nb, (long long)C->m, (long long)C->n, C->mb, C->nb);
    MC_TRY(mc_comm_agree(c, s, err));
    const int m = (int)C->m, n = (int)C->n, k = (int)A->n, one = 1;
    const float alpha = 1.0f, beta = 0.0f;
    psgemm_("N", "N", &m, &n, &k, &alpha, A->a, &one, &one, A->desc, B->a, &one, &one, B->desc,
            &beta, C->a, &one, &one, C->desc);
    (void)g;
    return MC_OK;
}

mc_status mc_pmat_gather(const mc_comm *c, const mc_pgrid *g, const mc_pmat *A, float *full,
                         mc_error *err) {
    const int P = c->size;
    int me[2] = {g->myrow, g->mycol};
    int *pos = c->rank == 0 ? calloc((size_t)P * 2, sizeof(int)) : NULL;
    int *cnt = c->rank == 0 ? calloc((size_t)P, sizeof(int)) : NULL;
    int *dsp = c->rank == 0 ? calloc((size_t)P, sizeof(int)) : NULL;
    float *buf = NULL;
    mc_status s = MC_OK;
    if (c->rank == 0 && (!pos || !cnt || !dsp || !full))
        s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory gathering a distributed matrix");
    if ((double)A->m * (double)A->n >= 2147483647.0)
        s = MC_FAIL(err, MC_ERR_UNSUPPORTED, "gather of a %lld x %lld matrix: too large",
                    (long long)A->m, (long long)A->n);
    if (c->rank == 0 && s == MC_OK) {
        buf = mc_alloc_array((size_t)(A->m * A->n), sizeof(float));
        if (!buf) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory gathering a distributed matrix");
    }
    s = mc_comm_agree(c, s, err);
    if (s == MC_OK && MPI_Gather(me, 2, MPI_INT, pos, 2, MPI_INT, 0, c->comm) != MPI_SUCCESS)
        s = MC_FAIL(err, MC_ERR_MPI, "MPI_Gather of the grid positions failed");
    const int zero = 0, im = (int)A->m, in = (int)A->n;
    if (s == MC_OK && c->rank == 0)
        for (int q = 0, off = 0; q < P; q++) {
            int lr = numroc_(&im, &A->mb, &pos[2 * q], &zero, &g->nprow);
            int lc = numroc_(&in, &A->nb, &pos[2 * q + 1], &zero, &g->npcol);
            cnt[q] = lr * lc, dsp[q] = off, off += cnt[q];
        }
    /* Each rank sends its lr x lc entries packed (its lld may exceed lr when lr is 0). */
    float *mine = mc_alloc_array((size_t)(A->lr * A->lc + 1), sizeof(float));
    if (s == MC_OK && !mine) mc_comm_abort(c, 1, "out of memory gathering a distributed matrix");
    for (int64_t j = 0; s == MC_OK && j < A->lc; j++)
        memcpy(mine + j * A->lr, A->a + j * A->lld, (size_t)A->lr * sizeof(float));
    if (s == MC_OK && MPI_Gatherv(mine, (int)(A->lr * A->lc), MPI_FLOAT, buf, cnt, dsp, MPI_FLOAT,
                                  0, c->comm) != MPI_SUCCESS)
        s = MC_FAIL(err, MC_ERR_MPI, "MPI_Gatherv of a distributed matrix failed");
    if (s == MC_OK && c->rank == 0)
        for (int q = 0; q < P; q++) {
            int lr = numroc_(&im, &A->mb, &pos[2 * q], &zero, &g->nprow);
            int lc = numroc_(&in, &A->nb, &pos[2 * q + 1], &zero, &g->npcol);
            for (int64_t j = 0; j < lc; j++) {
                int64_t gj = global_index(j, A->nb, pos[2 * q + 1], g->npcol);
                for (int64_t i = 0; i < lr; i++) {
                    int64_t gi = global_index(i, A->mb, pos[2 * q], g->nprow);
                    full[gi * A->n + gj] = buf[dsp[q] + j * lr + i];
                }
            }
        }
    free(mine), free(buf), free(pos), free(cnt), free(dsp);
    return s;
}
