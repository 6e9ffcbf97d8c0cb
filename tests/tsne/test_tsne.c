/* test_tsne.c - unit checks of src/method/tsne.c: input validation, clusters separated by both
 * methods, the same bits at 1 and 2 threads, trustworthiness on known cases. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "method/tsne.h"
#include "miclip/miclip.h"
#include "miclip/train.h"
#include "test_util.h"

/* n points in d dims around c centres 10 apart on the axes, N(0, 1) noise keyed by seed. */
static float *blobs(int64_t n, int64_t d, int c, uint64_t seed, int *label) {
    float *x = malloc((size_t)(n * d) * sizeof *x);
    for (int64_t i = 0; i < n; i++) {
        label[i] = (int)(i % c);
        for (int64_t k = 0; k < d; k++)
            x[i * d + k] = (float)((k == label[i] ? 10.0 : 0.0) +
                                   mc_rng_normal(seed, 0, (uint64_t)(i * d + k)));
    }
    return x;
}

/* Fraction of points whose nearest embedded neighbour has the same label. */
static double nn_accuracy(const double *y, int64_t n, int dims, const int *label) {
    int64_t ok = 0;
    for (int64_t i = 0; i < n; i++) {
        double best = INFINITY;
        int64_t arg = -1;
        for (int64_t j = 0; j < n; j++) {
            if (j == i) continue;
            double s = 0;
            for (int k = 0; k < dims; k++)
                s += (y[i * dims + k] - y[j * dims + k]) * (y[i * dims + k] - y[j * dims + k]);
            if (s < best) best = s, arg = j;
        }
        ok += label[arg] == label[i];
    }
    return (double)ok / (double)n;
}

static void test_validation(void) {
    float x[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    double y[8];
    mc_tsne_config c = mc_tsne_defaults();
    mc_error e = {0};
    c.perplexity = 1.5;
    CHECK(mc_tsne(x, 1, 3, &c, y, NULL, NULL, &e) == MC_ERR_ARG);
    CHECK(strstr(e.msg, "at least 2 points") != NULL);
    c.perplexity = 4.0;
    CHECK(mc_tsne(x, 4, 3, &c, y, NULL, NULL, &e) == MC_ERR_ARG);
    CHECK(strstr(e.msg, "perplexity") != NULL);
    c.perplexity = 1.5;
    x[7] = NAN;
    CHECK(mc_tsne(x, 4, 3, &c, y, NULL, NULL, &e) == MC_ERR_NUMERIC);
    CHECK(strstr(e.msg, "point 2, dimension 1") != NULL);
    x[7] = 7;
    c.dims = 4;
    CHECK(mc_tsne(x, 4, 3, &c, y, NULL, NULL, &e) == MC_ERR_ARG); /* Barnes-Hut: dims <= 3 */
    c.method = MC_TSNE_EXACT;
    CHECK(mc_tsne(x, 4, 3, &c, y, NULL, NULL, &e) == MC_ERR_ARG); /* pca: dims <= min(n, d) */
    CHECK(strstr(e.msg, "min(n, d)") != NULL);
    c.dims = 2;
    c.exaggeration_iters = c.max_iter + 1;
    CHECK(mc_tsne(x, 4, 3, &c, y, NULL, NULL, &e) == MC_ERR_ARG);
    c = mc_tsne_defaults();
    c.perplexity = 1.5;
    c.theta = 1.5;
    CHECK(mc_tsne(x, 4, 3, &c, y, NULL, NULL, &e) == MC_ERR_ARG);
    /* All points identical: no principal direction for 'pca'; 'random' still embeds. */
    float same[12] = {1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3};
    c = mc_tsne_defaults();
    c.perplexity = 1.5;
    CHECK(mc_tsne(same, 4, 3, &c, y, NULL, NULL, &e) == MC_ERR_NUMERIC);
    c.init = MC_TSNE_INIT_RANDOM;
    double kl = NAN;
    CHECK(mc_tsne(same, 4, 3, &c, y, &kl, NULL, &e) == MC_OK);
    int finite = 1;
    for (int i = 0; i < 8; i++) finite &= isfinite(y[i]);
    CHECK(finite && isfinite(kl));
    /* Two points: the smallest valid input. */
    c = mc_tsne_defaults();
    c.perplexity = 1.0;
    for (int m = 0; m < 2; m++) {
        c.method = m ? MC_TSNE_EXACT : MC_TSNE_BARNES_HUT;
        CHECK(mc_tsne(x, 2, 3, &c, y, &kl, NULL, &e) == MC_OK);
        CHECK(isfinite(y[0]) && isfinite(y[3]) && (y[0] != y[2] || y[1] != y[3]));
    }
}

static void test_clusters_and_threads(void) {
    int64_t n = 400, d = 12;
    int *label = malloc((size_t)n * sizeof *label);
    float *x = blobs(n, d, 4, 7, label);
    double *y1 = malloc((size_t)n * 2 * sizeof *y1), *y2 = malloc((size_t)n * 2 * sizeof *y2);
    for (int m = 0; m < 2; m++) {
        mc_tsne_config c = mc_tsne_defaults();
        c.method = m ? MC_TSNE_EXACT : MC_TSNE_BARNES_HUT;
        c.max_iter = 400;
        for (int init = 0; init < 2; init++) {
            c.init = init ? MC_TSNE_INIT_RANDOM : MC_TSNE_INIT_PCA;
            c.seed = 3;
            mc_error e = {0};
            double kl1 = 0, kl2 = 0;
            int it1 = 0, it2 = 0;
            mc_set_threads(1);
            CHECK_MSG(mc_tsne(x, n, d, &c, y1, &kl1, &it1, &e) == MC_OK, "%s", e.msg);
            mc_set_threads(2);
            CHECK_MSG(mc_tsne(x, n, d, &c, y2, &kl2, &it2, &e) == MC_OK, "%s", e.msg);
            CHECK_MSG(memcmp(y1, y2, (size_t)n * 2 * sizeof *y1) == 0 &&
                          memcmp(&kl1, &kl2, sizeof kl1) == 0,
                      "method %d init %d: 1 and 2 threads differ", m, init);
            CHECK(it1 == it2 && it1 >= 300 && it1 <= 400);
            double acc = nn_accuracy(y1, n, 2, label);
            double t = mc_trustworthiness(x, y1, n, d, 2, 5);
            CHECK_MSG(acc == 1.0 && t > 0.9, "method %d init %d: 1-NN accuracy %.3f, T(5) %.4f", m,
                      init, acc, t);
            CHECK_MSG(kl1 > 0 && kl1 < 2.0, "method %d init %d: KL %.4f", m, init, kl1);
        }
    }
    mc_set_threads(1);
    free(label);
    free(x);
    free(y1);
    free(y2);
}

static void test_trustworthiness(void) {
    /* An embedding that is the input itself keeps every neighbourhood: T = 1 exactly. */
    int64_t n = 50;
    float x[100];
    double y[100], yr[100];
    for (int64_t i = 0; i < n * 2; i++) {
        x[i] = (float)mc_rng_normal(11, 0, (uint64_t)i);
        y[i] = x[i];
    }
    CHECK(mc_trustworthiness(x, y, n, 2, 2, 5) == 1.0);
    /* A random embedding is far less trustworthy; k >= n / 2 is refused with NaN. */
    for (int64_t i = 0; i < n * 2; i++) yr[i] = mc_rng_normal(12, 0, (uint64_t)i);
    double t = mc_trustworthiness(x, yr, n, 2, 2, 5);
    CHECK_MSG(t < 0.75 && t > 0.0, "T %.4f", t);
    CHECK(isnan(mc_trustworthiness(x, y, n, 2, 2, 25)));
    CHECK(isnan(mc_trustworthiness(x, y, n, 2, 2, 0)));
    /* Hand-worked, no ties (k = 1): x = 0 1 3 7, y = 0 5 1.5 3.8. Embedded nearest neighbours
     * 0->2, 1->3, 2->0, 3->1 have input ranks 2, 3, 2, 2: penalty 1 + 2 + 1 + 1 = 5,
     * T = 1 - 5 * 2 / (4 * 1 * (8 - 3 - 1)) = 0.375 (sklearn.manifold.trustworthiness agrees). */
    float xl[4] = {0, 1, 3, 7};
    double yl[4] = {0, 5, 1.5, 3.8};
    CHECK_NEAR(mc_trustworthiness(xl, yl, 4, 1, 1, 1), 0.375, 1e-15);
}

int main(void) {
    test_validation();
    test_trustworthiness();
    test_clusters_and_threads();
    return TEST_SUMMARY();
}
