/* vision_bench.c - throughput of the vision models and of OpenBLAS sgemm (bench/vision.sh
 * builds and runs it; not a test).
 *   vision_bench peak THREADS            sgemm GFLOP/s on ViT-B/16-shaped products
 *   vision_bench model DIR BATCH THREADS SECONDS
 *                                        images/s of mc_model_forward on random pixels, and
 *                                        the sgemm peak measured just before and after
 *   vision_bench suffix DIR LAYER BATCH THREADS SECONDS
 *                                        an intervention's forward (docs/performance.md,
 *                                        "Interventions against their floor"): CPU seconds per
 *                                        image of the naive edited forward (pixels -> output,
 *                                        a WRITE hook at LAYER) and of the floor (the same edit
 *                                        on a cached state at LAYER, only the layers after it),
 *                                        and their ratio */
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

/* The edit of the bench: 5 neurons scaled by 0 on every token (the stage's removal). */
static bool bench_edit(const mc_hook_view *v, void *user) {
    const int64_t *shape = user; /* per image: [T, D] */
    for (int64_t b = 0; b < v->shape[0]; b++)
        for (int64_t t = 0; t < shape[0]; t++)
            for (int64_t q = 0; q < 5; q++) v->data[(b * shape[0] + t) * shape[1] + q] = 0;
    return true;
}

static bool bench_capture(const mc_hook_view *v, void *user) {
    size_t n = (size_t)v->shape[0];
    for (int d = 1; d < v->ndim; d++) n *= (size_t)v->shape[d];
    memcpy(user, v->data, n * sizeof(float));
    return true;
}

/* CPU seconds per image (all threads) of `fn` repeated for `seconds`. */
static double cpu_per_image(mc_model *m, const float *px, int batch, int H, int W,
                            const mc_forward_opts *o, float *out, double seconds, mc_error *err) {
    int iters = 0;
    const double c0 = (double)clock() / CLOCKS_PER_SEC, t0 = now();
    do {
        if (mc_model_forward(m, px, batch, H, W, o, out, NULL, err) != MC_OK) return -1;
        iters++;
    } while (now() - t0 < seconds);
    return ((double)clock() / CLOCKS_PER_SEC - c0) / (iters * batch);
}

static int suffix(const char *dir, const char *layer, int batch, int threads, double seconds) {
    mc_set_threads(threads);
    mc_error err = {0};
    mc_model *m = NULL;
    int idx = -1;
    if (mc_model_create(dir, &m, &err) != MC_OK ||
        mc_model_find_layer(m, layer, &idx, &err) != MC_OK) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    const mc_layer_info *li = mc_model_layer(m, idx);
    if (li->ndim != 2 || !li->can_start) {
        fprintf(stderr, "error: layer %s is not a [T, D] point a forward can start from\n", layer);
        return 1;
    }
    int C, H, W;
    mc_model_input_size(m, &C, &H, &W);
    int64_t shape[2] = {li->shape[0], li->shape[1]};
    float *px = rnd((size_t)batch * (size_t)(C * H * W));
    float *out = malloc((size_t)batch * (size_t)mc_model_output_dim(m) * sizeof(float));
    float *state = malloc((size_t)batch * (size_t)(shape[0] * shape[1]) * sizeof(float));
    mc_hook cap = {.name = layer, .mode = MC_HOOK_READ, .fn = bench_capture, .user = state};
    mc_forward_opts oc = {.hooks = &cap, .n_hooks = 1};
    mc_hook ed = {.name = layer, .mode = MC_HOOK_WRITE, .fn = bench_edit, .user = shape};
    mc_forward_opts naive = {.hooks = &ed, .n_hooks = 1};
    mc_forward_opts floor = {.hooks = &ed, .n_hooks = 1, .start_at = layer, .start_state = state};
    double full = -1, suf = -1;
    if (mc_model_plan(m, batch, H, W, &err) == MC_OK &&
        mc_model_forward(m, px, batch, H, W, &oc, out, NULL, &err) == MC_OK) {
        full = cpu_per_image(m, px, batch, H, W, &naive, out, seconds, &err);
        if (full >= 0) suf = cpu_per_image(m, NULL, batch, H, W, &floor, out, seconds, &err);
    }
    if (full < 0 || suf < 0) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    printf("layer %s batch %d threads %d naive_cpu_s_per_image %.5f floor_cpu_s_per_image %.5f "
           "ratio %.2f\n",
           layer, batch, threads, full, suf, full / suf);
    free(px), free(out), free(state);
    mc_model_free(&m);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "peak")) return peak(atoi(argv[2]));
    if (argc == 6 && !strcmp(argv[1], "model"))
        return model(argv[2], atoi(argv[3]), atoi(argv[4]), atof(argv[5]));
    if (argc == 7 && !strcmp(argv[1], "suffix"))
        return suffix(argv[2], argv[3], atoi(argv[4]), atoi(argv[5]), atof(argv[6]));
    fprintf(stderr, "usage: vision_bench peak THREADS | model DIR BATCH THREADS SECONDS | suffix "
                    "DIR LAYER BATCH THREADS SECONDS\n");
    return 2;
}
