/* train_bench.c - samples per second of one training step (loss, gradients, Adam update) of
 * miclip's E_n and top-k SAE at the sizes of the issue, on random data held in memory:
 *   E_n: n = 768, d = 512, batch 1024, in+out, learnable scale, 1000 classes
 *   SAE: n = 768, m = 24576, k = 32, batch 4096 (no dead latents, so no AuxK work)
 * Usage: bench_train en|sae [timed steps [chunk_rows [classes]]] (0 = default chunk); threads come from OPENBLAS_NUM_THREADS.
 * bench/train.sh runs it beside bench/train_torch.py. One rank (MPI singleton). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "miclip/log.h"
#include "miclip/train.h"

static int64_t g_chunk = 0;     /* 0: the library default */
static int64_t g_classes = 1000; /* E_n: classes of the out targets */

/* Process CPU time: on a shared machine the fairer clock for a one-thread comparison. */
static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float *randn(size_t n, uint64_t stream)
{
    float *x = malloc(n * sizeof(float));
    MC_ASSERT(x);
    for (size_t i = 0; i < n; i++) x[i] = (float)mc_rng_normal(1, stream, i);
    return x;
}

static double bench_en(const mc_comm *c, int steps)
{
    const int64_t n = 768, d = 512, B = 1024, ncls = g_classes;
    mc_align_config cfg = mc_align_defaults();
    cfg.n = n;
    cfg.d = d;
    cfg.n_classes = ncls;
    cfg.batch_size = B;
    if (g_chunk > 0) cfg.chunk_rows = g_chunk;
    float *cls = randn((size_t)(ncls * d), 3), *a = randn((size_t)(B * n), 1), *img = randn((size_t)(B * d), 2);
    int32_t *lab = malloc(sizeof(int32_t) * B);
    for (int64_t i = 0; i < B; i++) lab[i] = (int32_t)mc_rng_below(1, 4, (uint64_t)i, (uint64_t)ncls);
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
    printf("miclip E_n  n=768 d=512 batch=1024 classes=%lld: wall %.1f ms/step %.0f samples/s, cpu %.1f ms/step "
           "%.0f samples/s (loss %.4f, chunk %lld)\n", (long long)ncls, 1e3 * dt / steps, (double)B * steps / dt,
           1e3 * ct / steps, (double)B * steps / ct, st.loss, (long long)cfg.chunk_rows);
    mc_encoder_free(&e);
    free(cls);
    free(a);
    free(img);
    free(lab);
    return (double)B * steps / dt;
}

static double bench_sae(const mc_comm *c, int steps)
{
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
           "ms/step %.0f samples/s (fvu %.4f, chunk %lld)\n", 1e3 * dt / steps, (double)B * steps / dt,
           1e3 * ct / steps, (double)B * steps / ct, st.fvu, (long long)cfg.chunk_rows);
    mc_sae_free(&s);
    free(a);
    return (double)B * steps / dt;
}

int main(int argc, char **argv)
{
    mc_comm c;
    mc_error err = {0};
    if (mc_comm_init(&argc, &argv, &c, &err) != MC_OK) return 1;
    const char *what = argc > 1 ? argv[1] : "en";
    int steps = argc > 2 ? atoi(argv[2]) : 5;
    if (steps < 1) steps = 1;
    if (argc > 3) g_chunk = atoll(argv[3]);
    if (argc > 4) g_classes = atoll(argv[4]);
    if (!strcmp(what, "en")) bench_en(&c, steps);
    else if (!strcmp(what, "sae")) bench_sae(&c, steps);
    else fprintf(stderr, "usage: bench_train en|sae [steps]\n");
    mc_comm_finalize(&c);
    return 0;
}
