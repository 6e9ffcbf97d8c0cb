/* train_bench.c - samples per second of one training step (loss, gradients, Adam update) of
 * miclip's E_n and top-k SAE at the sizes of the issue, on random data held in memory:
 *   E_n: n = 768, d = 512, batch 1024, in+out, learnable scale, 1000 classes
 *   SAE: n = 768, m = 24576, k = 32, batch 4096 (no dead latents, so no AuxK work)
 * Usage: bench_train en|sae|floor [timed steps [chunk_rows [classes]]] (0 = default chunk);
 * threads come from OPENBLAS_NUM_THREADS. `floor` times only the four matrix products of an E_n
 * step (same shapes, same chunking) and OpenBLAS's sgemm at 2048^3, the bound for the step.
 * bench/train.sh runs it beside bench/train_torch.py. One rank (MPI singleton). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "miclip/log.h"
#include "miclip/train.h"

static int64_t g_chunk = 0;      /* 0: the library default */
static int64_t g_classes = 1000; /* E_n: classes of the out targets */

/* Process CPU time: on a shared machine the fairer clock for a one-thread comparison. */
static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float *randn(size_t n, uint64_t stream) {
    float *x = malloc(n * sizeof(float));
    MC_ASSERT(x);
    for (size_t i = 0; i < n; i++) x[i] = (float)mc_rng_normal(1, stream, i);
    return x;
}

static double bench_en(const mc_comm *c, int steps) {
    const int64_t n = 768, d = 512, B = 1024, ncls = g_classes;
    mc_align_config cfg = mc_align_defaults();
    cfg.n = n;
    cfg.d = d;
    cfg.n_classes = ncls;
    cfg.batch_size = B;
    if (g_chunk > 0) cfg.chunk_rows = g_chunk;
    float *cls = randn((size_t)(ncls * d), 3), *a = randn((size_t)(B * n), 1),
          *img = randn((size_t)(B * d), 2);
    int32_t *lab = malloc(sizeof(int32_t) * B);
    for (int64_t i = 0; i < B; i++)
        lab[i] = (int32_t)mc_rng_below(1, 4, (uint64_t)i, (uint64_t)ncls);
    mc_encoder *e = NULL;
    mc_error err = {0};
    MC_ASSERT(mc_encoder_create(&cfg, cls, &e, &err) == MC_OK);
    mc_align_stats st;
    double t0 = 0, c0 = 0;
    for (int s = -1; s < steps; s++) { /* one warm-up step */
        if (s == 0) t0 = mc_now(), c0 = cpu_now();
        MC_ASSERT(mc_encoder_loss_grad(c, e, B, a, img, lab, &st, &err) == MC_OK);
        mc_encoder_apply(e);
    }
    double dt = mc_now() - t0, ct = cpu_now() - c0;
    printf("miclip E_n  n=768 d=512 batch=1024 classes=%lld: wall %.1f ms/step %.0f samples/s, cpu "
           "%.1f ms/step "
           "%.0f samples/s (loss %.4f, chunk %lld)\n",
           (long long)ncls, 1e3 * dt / steps, (double)B * steps / dt, 1e3 * ct / steps,
           (double)B * steps / ct, st.loss, (long long)cfg.chunk_rows);
    mc_encoder_free(&e);
    free(cls);
    free(a);
    free(img);
    free(lab);
    return (double)B * steps / dt;
}

/* The E_n step's products alone, per chunk as the step runs them: z = a W^T, cos = u T^T with
 * T = [distinct labels' texts ; images], du = H T, dW = sum_c dz_c^T a_c. */
static void bench_floor(int steps) {
    const int64_t n = 768, d = 512, B = 1024, ncls = g_classes;
    const int64_t C = g_chunk > 0 ? g_chunk : mc_align_defaults().chunk_rows;
    char *seen = calloc((size_t)ncls, 1);
    int64_t distinct = 0;
    for (int64_t i = 0; i < B; i++) {
        int64_t y = (int64_t)mc_rng_below(1, 4, (uint64_t)i, (uint64_t)ncls);
        distinct += !seen[y];
        seen[y] = 1;
    }
    free(seen);
    const int64_t nc = distinct + B;
    float *a = randn((size_t)(B * n), 1), *W = randn((size_t)(d * n), 2),
          *u = randn((size_t)(B * d), 3), *T = randn((size_t)(nc * d), 4),
          *cs = randn((size_t)(B * nc), 5), *du = randn((size_t)(B * d), 6),
          *gW = randn((size_t)(d * n), 7);
    double t[4] = {0}, w0 = 0;
    for (int s = -1; s < steps; s++) {
        if (s == 0) w0 = mc_now();
        double c0 = cpu_now(), c1, c2, c3, c4;
        for (int64_t r = 0; r < B; r += C) {
            int len = (int)(r + C < B ? C : B - r);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, len, (int)d, (int)n, 1.0f,
                        a + r * n, (int)n, W, (int)n, 0.0f, u + r * d, (int)d);
        }
        c1 = cpu_now();
        for (int64_t r = 0; r < B; r += C) {
            int len = (int)(r + C < B ? C : B - r);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, len, (int)nc, (int)d, 1.0f,
                        u + r * d, (int)d, T, (int)d, 0.0f, cs + r * nc, (int)nc);
        }
        c2 = cpu_now();
        for (int64_t r = 0; r < B; r += C) {
            int len = (int)(r + C < B ? C : B - r);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, len, (int)d, (int)nc, 1.0f,
                        cs + r * nc, (int)nc, T, (int)d, 0.0f, du + r * d, (int)d);
        }
        c3 = cpu_now();
        for (int64_t r = 0; r < B; r += C) {
            int len = (int)(r + C < B ? C : B - r);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)d, (int)n, len, 1.0f,
                        du + r * d, (int)d, a + r * n, (int)n, r ? 1.0f : 0.0f, gW, (int)n);
        }
        c4 = cpu_now();
        if (s >= 0) {
            t[0] += c1 - c0;
            t[1] += c2 - c1;
            t[2] += c3 - c2;
            t[3] += c4 - c3;
        }
    }
    const double wall = mc_now() - w0;
    const double fl[4] = {2.0 * B * d * n, 2.0 * B * nc * d, 2.0 * B * nc * d, 2.0 * B * d * n};
    const char *name[4] = {"z = a W^T", "cos = u T^T", "du = H T", "dW"};
    double tt = 0, ft = 0;
    for (int i = 0; i < 4; i++) {
        printf("floor %-12s %6.2f ms %6.1f GFLOP/s\n", name[i], 1e3 * t[i] / steps,
               fl[i] / (t[i] / steps) * 1e-9);
        tt += t[i];
        ft += fl[i];
    }
    printf("floor products of one E_n step (classes %lld: %lld target columns, chunk %lld): %.2f "
           "GFLOP, "
           "wall %.1f ms, cpu %.1f ms, %.1f GFLOP/s (cpu)\n",
           (long long)ncls, (long long)nc, (long long)C, ft * 1e-9, 1e3 * wall / steps,
           1e3 * tt / steps, ft / (tt / steps) * 1e-9);
    const int N = 2048;
    float *A = randn((size_t)N * N, 8), *Bm = randn((size_t)N * N, 9),
          *Cm = randn((size_t)N * N, 10);
    double best = 1e30;
    for (int r = 0; r < 3; r++) {
        double c0 = mc_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0f, A, N, Bm, N, 0.0f, Cm,
                    N);
        double dt = mc_now() - c0;
        if (dt < best) best = dt;
    }
    printf("floor sgemm 2048^3 (best of 3, wall): %.1f GFLOP/s\n", 2.0 * N * N * N / best * 1e-9);
    free(A);
    free(Bm);
    free(Cm);
    free(a);
    free(W);
    free(u);
    free(T);
    free(cs);
    free(du);
    free(gW);
}

static double bench_sae(const mc_comm *c, int steps) {
    const int64_t B = 4096;
    mc_sae_config cfg = mc_sae_defaults();
    cfg.n = 768;
    cfg.m = 24576;
    cfg.k = 32;
    cfg.batch_size = B;
    if (g_chunk > 0) cfg.chunk_rows = g_chunk;
    mc_sae *s = NULL;
    mc_error err = {0};
    MC_ASSERT(mc_sae_create(&cfg, &s, &err) == MC_OK);
    float *a = randn((size_t)(B * cfg.n), 5);
    MC_ASSERT(mc_sae_init_bpre(s, a, 1024, &err) == MC_OK);
    mc_sae_stats st;
    double t0 = 0, c0 = 0;
    for (int k = -1; k < steps; k++) {
        if (k == 0) t0 = mc_now(), c0 = cpu_now();
        MC_ASSERT(mc_sae_loss_grad(c, s, B, a, true, &st, &err) == MC_OK);
        mc_sae_apply(s);
    }
    double dt = mc_now() - t0, ct = cpu_now() - c0;
    printf("miclip SAE  768->24576 k=32 batch=4096: wall %.1f ms/step %.0f samples/s, cpu %.1f "
           "ms/step %.0f samples/s (fvu %.4f, chunk %lld)\n",
           1e3 * dt / steps, (double)B * steps / dt, 1e3 * ct / steps, (double)B * steps / ct,
           st.fvu, (long long)cfg.chunk_rows);
    mc_sae_free(&s);
    free(a);
    return (double)B * steps / dt;
}

int main(int argc, char **argv) {
    mc_comm c;
    mc_error err = {0};
    if (mc_comm_init(&argc, &argv, &c, &err) != MC_OK) return 1;
    const char *what = argc > 1 ? argv[1] : "en";
    int steps = argc > 2 ? atoi(argv[2]) : 5;
    if (steps < 1) steps = 1;
    if (argc > 3) g_chunk = atoll(argv[3]);
    if (argc > 4) g_classes = atoll(argv[4]);
    if (!strcmp(what, "en"))
        bench_en(&c, steps);
    else if (!strcmp(what, "sae"))
        bench_sae(&c, steps);
    else if (!strcmp(what, "floor"))
        bench_floor(steps);
    else
        fprintf(stderr, "usage: bench_train en|sae|floor [steps [chunk_rows [classes]]]\n");
    mc_comm_finalize(&c);
    return 0;
}
