/* vision_bench.c - throughput of the vision models and of OpenBLAS sgemm (bench/vision.sh
 * builds and runs it; not a test).
 *   vision_bench peak THREADS            sgemm GFLOP/s on ViT-B/16-shaped products
 *   vision_bench model DIR BATCH THREADS SECONDS
 *                                        images/s of mc_model_forward on random pixels, and
 *                                        the sgemm peak measured just before and after */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "miclip/miclip.h"
#include "miclip/model.h"
#include "miclip/nn.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float *rnd(size_t n) {
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    return p;
}

/* Peak: the MLP product of ViT-B/16 at batch 32 ([6304, 768] x [768, 3072]^T), the largest and
 * most sgemm-friendly shape the model has: the best the library does on this machine. Returns
 * the best GFLOP/s (2 FLOP per multiply-add) of `reps` runs. */
static double peak_gflops(int reps) {
    const int64_t M = 6304, K = 768, N = 3072;
    float *a = rnd((size_t)(M * K)), *b = rnd((size_t)(N * K)), *c = rnd((size_t)(M * N));
    mc_linear(a, b, NULL, c, M, K, N, false); /* warm up */
    double best = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        mc_linear(a, b, NULL, c, M, K, N, false);
        double g = 2.0 * (double)M * (double)N * (double)K / (now() - t0) / 1e9;
        if (g > best) best = g;
    }
    free(a), free(b), free(c);
    return best;
}

static int peak(int threads) {
    mc_set_threads(threads);
    printf("sgemm_peak_gflops %.1f threads %d\n", peak_gflops(5), threads);
    return 0;
}

static int model(const char *dir, int batch, int threads, double seconds) {
    mc_set_threads(threads);
    mc_error err = {0};
    mc_model *m = NULL;
    if (mc_model_create(dir, &m, &err) != MC_OK) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    int C, H, W;
    mc_model_input_size(m, &C, &H, &W);
    float *px = rnd((size_t)batch * (size_t)(C * H * W));
    float *out = malloc((size_t)batch * (size_t)mc_model_output_dim(m) * sizeof(float));
    if (mc_model_forward(m, px, batch, H, W, NULL, out, NULL, &err) != MC_OK) { /* plans */
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    /* The machine may be shared: measure the sgemm peak right before and after the model, so
     * the fraction of peak compares numbers taken under the same load. */
    const double p0 = peak_gflops(3);
    int iters = 0;
    const double c0 = (double)clock() / CLOCKS_PER_SEC;
    double t0 = now(), t;
    do {
        mc_model_forward(m, px, batch, H, W, NULL, out, NULL, &err);
        iters++;
        t = now() - t0;
    } while (t < seconds);
    const double cpu = (double)clock() / CLOCKS_PER_SEC - c0; /* all threads of the process */
    const double p1 = peak_gflops(3);
    printf("images_per_s %.3f batch %d threads %d iters %d peak_gflops %.1f cpu_s_per_image %.4f\n",
           iters * batch / t, batch, threads, iters, 0.5 * (p0 + p1), cpu / (iters * batch));
    free(px), free(out);
    mc_model_free(&m);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "peak")) return peak(atoi(argv[2]));
    if (argc == 6 && !strcmp(argv[1], "model"))
        return model(argv[2], atoi(argv[3]), atoi(argv[4]), atof(argv[5]));
    fprintf(stderr, "usage: vision_bench peak THREADS | model DIR BATCH THREADS SECONDS\n");
    return 2;
}
