/* test_pblas.c - mc_psgemm on a 2-D block-cyclic grid (pblas.h), driven by test_pblas.py.
 *
 *   mpiexec -n P test_pblas M K N NB OUT.bin [mismatch]
 *
 * A (M x K) and B (K x N) are made from their global indices alone, so every rank count builds
 * the same matrices; C = A B. Rank 0 writes int64 M, K, N, then A, B and C row-major float32.
 * B's columns 3j and 3j + 1 are equal (entries of C that tie exactly in real arithmetic).
 * `mismatch` gives B row blocks of 2 NB (A's column blocks are NB): mc_psgemm must refuse. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/comm.h"
#include "miclip/pblas.h"

/* A float in [-1, 1) from two indices (splitmix64); about one A entry in 4 is zero, as in a
 * sparse activation matrix. */
static float gen(uint64_t seed, int64_t i, int64_t j) {
    uint64_t z = seed * 0x9E3779B97F4A7C15ull + (uint64_t)i * 0xBF58476D1CE4E5B9ull + (uint64_t)j;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)((double)(z >> 40) / (double)(1ull << 23) - 1.0);
}

int main(int argc, char **argv) {
    mc_comm c;
    mc_error err = {0};
    if (mc_comm_init(&argc, &argv, &c, &err) != MC_OK) return 1;
    if (argc != 6 && argc != 7) {
        if (c.rank == 0) fprintf(stderr, "usage: test_pblas M K N NB OUT.bin [mismatch]\n");
        mc_comm_finalize(&c);
        return 2;
    }
    const int64_t M = atoll(argv[1]), K = atoll(argv[2]), N = atoll(argv[3]);
    const int nb = atoi(argv[4]);
    mc_pgrid g;
    mc_pmat A, B, C;
    memset(&A, 0, sizeof A), memset(&B, 0, sizeof B), memset(&C, 0, sizeof C);
    mc_status s = mc_pgrid_open(&c, &g, &err);
    if (s == MC_OK) s = mc_pmat_alloc(&c, &g, M, K, nb, nb, &A, &err);
    const int bmb = argc == 7 && !strcmp(argv[6], "mismatch") ? 2 * nb : nb;
    if (s == MC_OK) s = mc_pmat_alloc(&c, &g, K, N, bmb, nb, &B, &err);
    if (s == MC_OK) s = mc_pmat_alloc(&c, &g, M, N, nb, nb, &C, &err);
    if (s == MC_OK) {
        for (int64_t j = 0; j < A.lc; j++)
            for (int64_t i = 0; i < A.lr; i++) {
                float v = gen(1, mc_pmat_grow(&A, &g, i), mc_pmat_gcol(&A, &g, j));
                A.a[j * A.lld + i] = v < -0.5f ? 0.0f : v;
            }
        for (int64_t j = 0; j < B.lc; j++) {
            int64_t gj = mc_pmat_gcol(&B, &g, j);
            if (gj % 3 == 1) gj--; /* columns 3j and 3j + 1 equal */
            for (int64_t i = 0; i < B.lr; i++)
                B.a[j * B.lld + i] = gen(2, mc_pmat_grow(&B, &g, i), gj);
        }
        s = mc_psgemm(&c, &g, &A, &B, &C, &err);
    }
    float *full[3] = {NULL, NULL, NULL};
    const mc_pmat *mats[3] = {&A, &B, &C};
    for (int t = 0; t < 3 && s == MC_OK; t++) {
        if (c.rank == 0) full[t] = malloc((size_t)(mats[t]->m * mats[t]->n) * sizeof(float));
        s = mc_pmat_gather(&c, &g, mats[t], full[t], &err);
    }
    if (s == MC_OK && c.rank == 0) {
        FILE *f = fopen(argv[5], "wb");
        int64_t hdr[3] = {M, K, N};
        int ok = f && fwrite(hdr, sizeof hdr, 1, f) == 1;
        for (int t = 0; ok && t < 3; t++)
            ok = fwrite(full[t], sizeof(float), (size_t)(mats[t]->m * mats[t]->n), f) ==
                 (size_t)(mats[t]->m * mats[t]->n);
        if (!f || fclose(f) != 0 || !ok) {
            fprintf(stderr, "test_pblas: cannot write %s\n", argv[5]);
            s = MC_ERR_IO;
        }
        printf("test_pblas: %d rank(s), grid %d x %d, %lld x %lld x %lld in %d x %d blocks\n",
               c.size, g.nprow, g.npcol, (long long)M, (long long)K, (long long)N, nb, nb);
    }
    if (s != MC_OK && c.rank == 0 && err.msg[0]) fprintf(stderr, "test_pblas: %s\n", err.msg);
    for (int t = 0; t < 3; t++) free(full[t]);
    mc_pmat_free(&A), mc_pmat_free(&B), mc_pmat_free(&C);
    if (g.nprow) mc_pgrid_close(&g);
    mc_comm_finalize(&c);
    return s == MC_OK ? 0 : 1;
}
