/* tsne_run.c - the t-SNE driver of ref_tsne.py and the timing in docs/tsne.md.
 *
 *   tsne_run embed x.f32 N D y.f64 [--method exact|bh] [--dims k] [--perplexity p]
 *            [--iters n] [--exag-iters n] [--exag e] [--lr r] [--init pca|random] [--seed s]
 *            [--theta t] [--threads t]
 *     x: N*D float32 rows; y: N*dims float64. Prints "kl=<%.17g> n_iter=<n> seconds=<s>".
 *   tsne_run trust x.f32 N D y.f64 DIMS K
 *     Prints mc_trustworthiness(x, y, K) with %.17g.
 * Exit 0 on success, 1 on an error (one line on stderr). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "method/tsne.h"
#include "miclip/miclip.h"

static void *read_all(const char *path, size_t n, size_t size) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: cannot open\n", path);
        return NULL;
    }
    void *b = malloc(n * size + 1);
    size_t got = b ? fread(b, size, n, f) : 0;
    int extra = fgetc(f);
    fclose(f);
    if (got != n || extra != EOF) {
        fprintf(stderr, "%s: expected exactly %zu values of %zu bytes\n", path, n, size);
        free(b);
        return NULL;
    }
    return b;
}

int main(int argc, char **argv) {
    if (argc >= 8 && strcmp(argv[1], "trust") == 0) {
        int64_t n = atoll(argv[3]), d = atoll(argv[4]);
        int dims = atoi(argv[6]), k = atoi(argv[7]);
        float *x = read_all(argv[2], (size_t)(n * d), sizeof(float));
        double *y = read_all(argv[5], (size_t)n * (size_t)dims, sizeof(double));
        if (!x || !y) return 1;
        printf("%.17g\n", mc_trustworthiness(x, y, n, d, dims, k));
        free(x);
        free(y);
        return 0;
    }
    if (argc < 6 || strcmp(argv[1], "embed") != 0) {
        fprintf(stderr,
                "usage: tsne_run embed x.f32 N D y.f64 [options] | trust x.f32 N D y.f64 DIMS K\n");
        return 1;
    }
    int64_t n = atoll(argv[3]), d = atoll(argv[4]);
    mc_tsne_config cfg = mc_tsne_defaults();
    for (int i = 6; i + 1 < argc; i += 2) {
        const char *o = argv[i], *v = argv[i + 1];
        if (!strcmp(o, "--method"))
            cfg.method = strcmp(v, "exact") == 0 ? MC_TSNE_EXACT : MC_TSNE_BARNES_HUT;
        else if (!strcmp(o, "--dims"))
            cfg.dims = atoi(v);
        else if (!strcmp(o, "--perplexity"))
            cfg.perplexity = atof(v);
        else if (!strcmp(o, "--iters"))
            cfg.max_iter = atoi(v);
        else if (!strcmp(o, "--exag-iters"))
            cfg.exaggeration_iters = atoi(v);
        else if (!strcmp(o, "--exag"))
            cfg.early_exaggeration = atof(v);
        else if (!strcmp(o, "--lr"))
            cfg.learning_rate = atof(v);
        else if (!strcmp(o, "--init"))
            cfg.init = strcmp(v, "random") == 0 ? MC_TSNE_INIT_RANDOM : MC_TSNE_INIT_PCA;
        else if (!strcmp(o, "--seed"))
            cfg.seed = strtoull(v, NULL, 10);
        else if (!strcmp(o, "--theta"))
            cfg.theta = atof(v);
        else if (!strcmp(o, "--threads"))
            mc_set_threads(atoi(v));
        else {
            fprintf(stderr, "unknown option %s\n", o);
            return 1;
        }
    }
    if (n < 1 || d < 1 || cfg.dims < 1) {
        fprintf(stderr, "N, D and dims must be positive\n");
        return 1;
    }
    float *x = read_all(argv[2], (size_t)(n * d), sizeof(float));
    double *y = malloc((size_t)n * (size_t)cfg.dims * sizeof(double));
    if (!x || !y) return 1;
    mc_error err = {0};
    double kl = 0.0;
    int it = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    mc_status st = mc_tsne(x, n, d, &cfg, y, &kl, &it, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (st != MC_OK) {
        fprintf(stderr, "error (%s): %s\n", mc_status_name(st), err.msg);
        return 1;
    }
    FILE *f = fopen(argv[5], "wb");
    if (!f ||
        fwrite(y, sizeof(double), (size_t)n * (size_t)cfg.dims, f) !=
            (size_t)n * (size_t)cfg.dims ||
        fclose(f) != 0) {
        fprintf(stderr, "%s: cannot write\n", argv[5]);
        return 1;
    }
    printf("kl=%.17g n_iter=%d seconds=%.3f\n", kl, it,
           (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    free(x);
    free(y);
    return 0;
}
