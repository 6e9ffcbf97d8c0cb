/* test_sae_planted.c - the top-k SAE recovers a planted sparse dictionary.
 *
 * Data: 64 random unit atoms in R^32; each sample is the sum of 3 distinct atoms with
 * coefficients uniform in [0.5, 1.5] (drawn from the counter RNG by sample index). An SAE with
 * 128 latents and k = 3 is trained with the full recipe (geometric-median b_pre, tied init,
 * unit-norm decoder, AuxK). Pass: at least 90% of the planted atoms have a decoder atom at
 * cosine >= 0.9 (the criterion), and the final FVU is below 0.1. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/train.h"
#include "test_util.h"

enum { N = 32, ATOMS = 64, K_TRUE = 3 };
static float atoms[ATOMS][N];

static mc_status fetch(void *user, const int64_t *idx, int64_t rows, float *acts, mc_error *err) {
    (void)user;
    (void)err;
    for (int64_t r = 0; r < rows; r++) {
        uint64_t s = (uint64_t)idx[r];
        float *x = acts + r * N;
        memset(x, 0, sizeof(float) * N);
        int chosen[K_TRUE];
        for (int t = 0; t < K_TRUE; t++) {
            int a;
            uint64_t draw = 0;
            bool dupl;
            do { /* distinct atoms */
                a = (int)mc_rng_below(21, 1, s * 64 + t * 8 + draw++, ATOMS);
                dupl = false;
                for (int u = 0; u < t; u++) dupl |= chosen[u] == a;
            } while (dupl);
            chosen[t] = a;
            float coef = 0.5f + (float)mc_rng_uniform(21, 2, s * 8 + (uint64_t)t);
            for (int i = 0; i < N; i++) x[i] += coef * atoms[a][i];
        }
    }
    return MC_OK;
}

int main(int argc, char **argv) {
    mc_comm c;
    mc_error err = {0};
    if (mc_comm_init(&argc, &argv, &c, &err) != MC_OK) return 1;
    for (int a = 0; a < ATOMS; a++) {
        double ss = 0;
        for (int i = 0; i < N; i++) {
            atoms[a][i] = (float)mc_rng_normal(20, 1, (uint64_t)(a * N + i));
            ss += atoms[a][i] * atoms[a][i];
        }
        for (int i = 0; i < N; i++) atoms[a][i] = (float)(atoms[a][i] / sqrt(ss));
    }
    mc_sae_config cfg = mc_sae_defaults();
    cfg.n = N;
    cfg.m = 128;
    cfg.k = K_TRUE;
    cfg.k_aux = 16;
    cfg.dead_samples = 4096;
    cfg.batch_size = 256;
    cfg.chunk_rows = 64;
    cfg.epochs = 6;
    cfg.seed = 1;
    cfg.adam.lr = 3e-3;
    cfg.median_samples = 1024;
    mc_sae *s = NULL;
    CHECK(mc_sae_create(&cfg, &s, &err) == MC_OK);
    mc_train_pos pos = {0};
    mc_train_curve curve = {0};
    mc_status st = mc_sae_train(&c, s, 65536, fetch, NULL, &pos, &curve, NULL, NULL, &err);
    if (st != MC_OK) fprintf(stderr, "%s\n", err.msg);
    CHECK(st == MC_OK);
    /* Held-out FVU on samples the training never saw. */
    int64_t idx[1024];
    for (int i = 0; i < 1024; i++) idx[i] = 1000000 + i;
    float *x = malloc(sizeof(float) * 1024 * N);
    fetch(NULL, idx, 1024, x, &err);
    mc_sae_stats ev;
    CHECK(mc_sae_eval(&c, s, 1024, x, &ev, &err) == MC_OK);
    const float *dec = mc_sae_w_dec_t(s);
    int matched = 0;
    for (int a = 0; a < ATOMS; a++) {
        double best = -1;
        for (int64_t j = 0; j < cfg.m; j++) {
            double dot = 0;
            for (int i = 0; i < N; i++) dot += (double)atoms[a][i] * dec[j * N + i];
            if (dot > best) best = dot;
        }
        matched += best >= 0.9;
    }
    printf("steps %lld, train loss %.4f -> %.4f, held-out FVU %.4f, L0 %.2f, dead %.3f; "
           "matched %d / %d planted atoms at cosine >= 0.9\n",
           (long long)curve.count, curve.loss[0], curve.loss[curve.count - 1], ev.fvu, ev.l0,
           curve.extra[curve.count - 1], matched, ATOMS);
    CHECK(matched * 10 >= ATOMS * 9);
    CHECK(ev.fvu < 0.1f);
    free(x);
    mc_train_curve_free(&curve);
    mc_sae_free(&s);
    int rc = TEST_SUMMARY();
    mc_comm_finalize(&c);
    return rc;
}
