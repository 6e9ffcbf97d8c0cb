/* pblas_bench.c - per-rank peak memory and time of C = A B for the baselines' big product,
 * split 1-D over unit rows (today's layout) or 2-D block-cyclic with psgemm (pblas.h).
 *
 *   mpiexec -n P build/tests/core/bench_pblas MODE U N CN [NB]
 *
 * A is U x N (units x images: which images enter a unit's sum, about one in four), B is N x CN
 * (images x concepts: a soft-WPMI slot term log(1 + w (p - 1) + 1e-7) per entry), C = A B is
 * U x CN (units x concepts). With N = 512 the shape is also localize/describe's similarity
 * (units x embedding width, times width x concepts).
 *   1d  every rank owns whole 256-unit blocks of A's and C's rows (mc_shard_range, as the
 *       baselines stage) and makes and keeps all of B: B's memory and work do not fall with P.
 *   1d-img  every rank owns a share of the images (A's columns, B's rows, made once in all),
 *       computes its partial C for every unit and concept, and the partials are summed into
 *       unit rows (MPI_Reduce_scatter): C's memory does not fall with P.
 *   2d  A, B and C in NB x NB blocks (default 64) over the near-square grid; each rank makes its
 *       own entries; mc_psgemm.
 * Rank 0 prints each rank's VmHWM (peak resident memory), its VmHWM at start (MPI, BLAS and
 * BLACS loaded: the fixed part), the time from the first entry made to C complete (max over
 * ranks), and a RESULT line for bench/pblas.sh. docs/performance.md records the figures. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "miclip/checked.h"
#include "miclip/comm.h"
#include "miclip/log.h"
#include "miclip/pblas.h"

#define UNIT_BLOCK 256 /* MC_UNIT_BLOCK of the stages */

static double vm_hwm_mib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kb = atof(line + 6);
    if (f) fclose(f);
    return kb / 1024.0;
}

static float hash01(uint64_t seed, int64_t i, int64_t j) {
    uint64_t z = seed * 0x9E3779B97F4A7C15ull + (uint64_t)i * 0xBF58476D1CE4E5B9ull + (uint64_t)j;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)((double)(z >> 40) / (double)(1ull << 24));
}

static float a_entry(int64_t u, int64_t x) { return hash01(1, u, x) < 0.25f ? 1.0f : 0.0f; }

static float b_entry(int64_t x, int64_t d, int64_t cn) {
    float p = 2.0f * hash01(2, x, d) / (float)cn, w = 0.998f - 0.028f * hash01(3, x, 0);
    return logf(1.0f + w * (p - 1.0f) + 1e-7f);
}

int main(int argc, char **argv) {
    mc_comm c;
    mc_error err = {0};
    if (mc_comm_init(&argc, &argv, &c, &err) != MC_OK) return 1;
    if (argc < 5 || (strcmp(argv[1], "1d") && strcmp(argv[1], "1d-img") && strcmp(argv[1], "2d"))) {
        if (c.rank == 0) fprintf(stderr, "usage: bench_pblas 1d|1d-img|2d U N CN [NB]\n");
        mc_comm_finalize(&c);
        return 2;
    }
    const bool two_d = !strcmp(argv[1], "2d"), by_img = !strcmp(argv[1], "1d-img");
    const int64_t U = atoll(argv[2]), N = atoll(argv[3]), CN = atoll(argv[4]);
    const int nb = argc > 5 ? atoi(argv[5]) : 64;
    mc_pgrid g;
    memset(&g, 0, sizeof g);
    mc_status s = two_d ? mc_pgrid_open(&c, &g, &err) : MC_OK;
    const double base = vm_hwm_mib();
    MPI_Barrier(c.comm);
    const double t0 = mc_now();
    mc_pmat A, B, C;
    memset(&A, 0, sizeof A), memset(&B, 0, sizeof B), memset(&C, 0, sizeof C);
    float *a = NULL, *b = NULL, *cc = NULL;
    if (two_d) {
        if (s == MC_OK) s = mc_pmat_alloc(&c, &g, U, N, nb, nb, &A, &err);
        if (s == MC_OK) s = mc_pmat_alloc(&c, &g, N, CN, nb, nb, &B, &err);
        if (s == MC_OK) s = mc_pmat_alloc(&c, &g, U, CN, nb, nb, &C, &err);
        if (s == MC_OK) {
            for (int64_t j = 0; j < A.lc; j++)
                for (int64_t i = 0; i < A.lr; i++)
                    A.a[j * A.lld + i] = a_entry(mc_pmat_grow(&A, &g, i), mc_pmat_gcol(&A, &g, j));
            for (int64_t j = 0; j < B.lc; j++)
                for (int64_t i = 0; i < B.lr; i++)
                    B.a[j * B.lld + i] =
                        b_entry(mc_pmat_grow(&B, &g, i), mc_pmat_gcol(&B, &g, j), CN);
            s = mc_psgemm(&c, &g, &A, &B, &C, &err);
        }
    } else if (by_img) {
        /* Images split: A's columns and B's rows of this rank's images, C summed over ranks. */
        int64_t x0, x1, nblk = (U + UNIT_BLOCK - 1) / UNIT_BLOCK;
        mc_shard_range(N, c.rank, c.size, &x0, &x1);
        const int64_t n = x1 - x0;
        int *cnt = mc_alloc_array((size_t)c.size, sizeof(int)), rows = 0;
        for (int q = 0; cnt && q < c.size; q++) {
            int64_t b0, b1;
            mc_shard_range(nblk, q, c.size, &b0, &b1);
            int64_t u0 = b0 * UNIT_BLOCK < U ? b0 * UNIT_BLOCK : U;
            int64_t u1 = b1 * UNIT_BLOCK < U ? b1 * UNIT_BLOCK : U;
            cnt[q] = (int)((u1 - u0) * CN);
            if (q == c.rank) rows = (int)(u1 - u0);
        }
        a = mc_alloc_array((size_t)(U * n + 1), sizeof(float));
        b = mc_alloc_array((size_t)(n * CN + 1), sizeof(float));
        cc = mc_calloc_array((size_t)(U * CN), sizeof(float));
        float *mine = mc_alloc_array((size_t)(rows * CN + 1), sizeof(float));
        s = mc_comm_agree(
            &c, cnt && a && b && cc && mine ? MC_OK : MC_FAIL(&err, MC_ERR_NOMEM, "out of memory"),
            &err);
        if (s == MC_OK) {
            for (int64_t u = 0; u < U; u++)
                for (int64_t x = 0; x < n; x++) a[u * n + x] = a_entry(u, x0 + x);
            for (int64_t x = 0; x < n; x++)
                for (int64_t d = 0; d < CN; d++) b[x * CN + d] = b_entry(x0 + x, d, CN);
            if (n > 0)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)U, (int)CN, (int)n,
                            1.0f, a, (int)n, b, (int)CN, 0.0f, cc, (int)CN);
            MPI_Reduce_scatter(cc, mine, cnt, MPI_FLOAT, MPI_SUM, c.comm);
        }
        free(cnt), free(mine);
    } else {
        int64_t nblk = (U + UNIT_BLOCK - 1) / UNIT_BLOCK, b0, b1;
        mc_shard_range(nblk, c.rank, c.size, &b0, &b1);
        int64_t u0 = b0 * UNIT_BLOCK < U ? b0 * UNIT_BLOCK : U;
        int64_t u1 = b1 * UNIT_BLOCK < U ? b1 * UNIT_BLOCK : U, rows = u1 - u0;
        a = mc_alloc_array((size_t)(rows * N + 1), sizeof(float));
        b = mc_alloc_array((size_t)(N * CN), sizeof(float));
        cc = mc_alloc_array((size_t)(rows * CN + 1), sizeof(float));
        s = mc_comm_agree(&c, a && b && cc ? MC_OK : MC_FAIL(&err, MC_ERR_NOMEM, "out of memory"),
                          &err);
        if (s == MC_OK) {
            for (int64_t u = 0; u < rows; u++)
                for (int64_t x = 0; x < N; x++) a[u * N + x] = a_entry(u0 + u, x);
            for (int64_t x = 0; x < N; x++)
                for (int64_t d = 0; d < CN; d++) b[x * CN + d] = b_entry(x, d, CN);
            if (rows > 0)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)CN, (int)N,
                            1.0f, a, (int)N, b, (int)CN, 0.0f, cc, (int)CN);
        }
    }
    MPI_Barrier(c.comm);
    const double t = mc_now() - t0;
    double mine[3] = {vm_hwm_mib(), base, t}, *all = NULL;
    if (c.rank == 0) all = mc_alloc_array((size_t)c.size * 3, sizeof(double));
    MPI_Gather(mine, 3, MPI_DOUBLE, all, 3, MPI_DOUBLE, 0, c.comm);
    if (s == MC_OK && c.rank == 0 && all) {
        const double total = 4.0 * (double)(U * N + N * CN + U * CN) / 1048576.0;
        printf("bench_pblas %s: %d rank(s)", argv[1], c.size);
        if (two_d) printf(", grid %d x %d, %d x %d blocks", g.nprow, g.npcol, nb, nb);
        printf("; A %lld x %lld, B %lld x %lld, C %lld x %lld float32: %.0f MiB in all\n",
               (long long)U, (long long)N, (long long)N, (long long)CN, (long long)U, (long long)CN,
               total);
        double above = 0, tmax = 0;
        for (int q = 0; q < c.size; q++) {
            double *r = all + 3 * q;
            printf("  rank %d: VmHWM %7.0f MiB (at start %4.0f MiB), %.2f s\n", q, r[0], r[1],
                   r[2]);
            if (r[0] - r[1] > above) above = r[0] - r[1];
            if (r[2] > tmax) tmax = r[2];
        }
        const double share = total / c.size;
        printf("  max above start %.0f MiB = %.2f x total/P (%.0f MiB); target <= 1.2\n", above,
               above / share, share);
        printf("RESULT %s %d %.3f %.1f %.1f\n", argv[1], c.size, tmax, above, share);
    }
    if (s != MC_OK && c.rank == 0) fprintf(stderr, "bench_pblas: %s\n", err.msg);
    free(all), free(a), free(b), free(cc);
    mc_pmat_free(&A), mc_pmat_free(&B), mc_pmat_free(&C);
    if (two_d && g.nprow) mc_pgrid_close(&g);
    mc_comm_finalize(&c);
    return s == MC_OK ? 0 : 1;
}
