/* test_train_grad.c - finite-difference checks of the analytic gradients of E_n + InfoNCE
 * (all variants, learnable and fixed scale) and of the top-k SAE with AuxK, plus RNG and
 * helper invariants. Central differences along random directions d:
 *   (L(p + h d) - L(p - h d)) / 2h  vs  grad . d,
 * for one direction over all parameters and one per parameter group. The code runs in float32
 * (losses reduced in float64, returned as float), so the bound is 2e-3 relative to
 * max(|grad . d|, 1e-3): rounding of the float loss (~1e-7 L) over 2h = 2e-3 gives ~1e-4,
 * truncation O(h^2) the rest. SAE directions on the decoder are tangent to each unit atom, so
 * the projected gradient is the exact derivative along them. AuxK's target e = a - a_hat is
 * detached (a stop-gradient), so its finite difference is taken along parameters that leave e
 * unchanged: the encoder and decoder rows of dead latents that no sample selects in its top-k. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/train.h"
#include "test_util.h"

static mc_comm C;

static float frand(uint64_t i) { return (float)mc_rng_normal(99, 7, i); }

/* ---------------- E_n ---------------- */
typedef struct {
    int64_t n, d, nc, B;
    float *acts, *img, *cls;
    int32_t *lab;
} align_data;

static float align_loss(mc_encoder *e, align_data *D) {
    mc_error err = {0};
    mc_align_stats st;
    MC_ASSERT(mc_encoder_loss_grad(&C, e, D->B, D->acts, D->img, D->lab, &st, &err) == MC_OK);
    return st.loss;
}

static void check_align(mc_align_variant v, bool learn) {
    align_data D = {.n = 9, .d = 5, .nc = 4, .B = 14};
    D.acts = malloc(sizeof(float) * D.B * D.n);
    D.img = malloc(sizeof(float) * D.B * D.d);
    D.cls = malloc(sizeof(float) * D.nc * D.d);
    D.lab = malloc(sizeof(int32_t) * D.B);
    for (int64_t i = 0; i < D.B * D.n; i++) D.acts[i] = frand(i);
    for (int64_t i = 0; i < D.B * D.d; i++) D.img[i] = frand(1000 + i);
    for (int64_t i = 0; i < D.nc * D.d; i++) D.cls[i] = frand(2000 + i);
    for (int64_t i = 0; i < D.B; i++)
        D.lab[i] = (int32_t)mc_rng_below(5, 5, (uint64_t)i, (uint64_t)D.nc);
    mc_align_config cfg = mc_align_defaults();
    cfg.n = D.n;
    cfg.d = D.d;
    cfg.n_classes = D.nc;
    cfg.variant = v;
    cfg.learn_scale = learn;
    cfg.logit_scale = 3.0; /* moderate, so the curvature keeps h = 1e-3 accurate */
    cfg.batch_size = D.B;
    cfg.chunk_rows = 4;
    cfg.seed = 11;
    mc_encoder *e = NULL;
    mc_error err = {0};
    CHECK(mc_encoder_create(&cfg, D.cls, &e, &err) == MC_OK);
    size_t np = (size_t)(D.d * D.n) + 1;
    float *p = mc_encoder_weight(e);
    (void)align_loss(e, &D);
    float *g = malloc(sizeof(float) * np), *p0 = malloc(sizeof(float) * np),
          *dir = malloc(sizeof(float) * np);
    memcpy(g, mc_encoder_weight_grad(e), sizeof(float) * np);
    memcpy(p0, p, sizeof(float) * np);
    const float h = 1e-3f;
    for (int group = 0; group < 3; group++) { /* 0: all, 1: W only, 2: log scale only */
        double gd = 0;
        for (size_t i = 0; i < np; i++) {
            bool in = group == 0 || (group == 1 ? i < np - 1 : i == np - 1);
            if (i == np - 1 && !learn) in = false; /* a fixed scale is not a parameter */
            dir[i] = in ? frand(5000 + i + 100000 * (uint64_t)group) : 0.0f;
            gd += (double)g[i] * dir[i];
        }
        for (size_t i = 0; i < np; i++) p[i] = p0[i] + h * dir[i];
        double lp = align_loss(e, &D);
        for (size_t i = 0; i < np; i++) p[i] = p0[i] - h * dir[i];
        double lm = align_loss(e, &D);
        memcpy(p, p0, sizeof(float) * np);
        double fd = (lp - lm) / (2.0 * h);
        double tol = 2e-3 * fmax(fabs(gd), 1e-3);
        CHECK_MSG(fabs(fd - gd) <= tol, "align %s %s group %d: fd %.7g vs grad.d %.7g",
                  mc_align_variant_name(v), learn ? "learn" : "fixed", group, fd, gd);
    }
    if (!learn) CHECK(mc_encoder_log_scale_grad(e) == 0.0f);
    mc_encoder_free(&e);
    CHECK(e == NULL);
    free(g);
    free(p0);
    free(dir);
    free(D.acts);
    free(D.img);
    free(D.cls);
    free(D.lab);
}

/* ---------------- SAE ---------------- */
static void check_sae(bool aux) {
    mc_sae_config cfg = mc_sae_defaults();
    cfg.n = 8;
    cfg.m = 40;
    cfg.k = 2;
    cfg.k_aux = 4;
    cfg.batch_size = 13;
    cfg.chunk_rows = 4;
    cfg.dead_samples = 100;
    cfg.seed = 3;
    mc_sae *s = NULL;
    mc_error err = {0};
    CHECK(mc_sae_create(&cfg, &s, &err) == MC_OK);
    const int64_t B = 13;
    float *a = malloc(sizeof(float) * B * cfg.n);
    for (int64_t i = 0; i < B * cfg.n; i++) a[i] = frand(7000 + i);
    for (int64_t j = 0; j < cfg.m; j++) {
        mc_sae_b_enc(s)[j] = 0.1f * frand(8000 + j);
        mc_sae_since_fire(s)[j] = (aux && j % 3 == 0) ? 1000 : 0;
    }
    for (int64_t i = 0; i < cfg.n; i++) mc_sae_b_pre(s)[i] = 0.1f * frand(9000 + i);
    size_t np;
    float *p = mc_sae_params(s, &np);
    mc_sae_stats st;
    CHECK(mc_sae_loss_grad(&C, s, B, a, false, &st, &err) == MC_OK);
    CHECK(aux ? st.auxk > 0 : st.auxk == 0);
    CHECK(st.l0 > 0 && st.l0 <= cfg.k);
    float *g = malloc(sizeof(float) * np), *p0 = malloc(sizeof(float) * np),
          *dir = malloc(sizeof(float) * np);
    memcpy(g, mc_sae_grad_w_enc(s), sizeof(float) * np);
    memcpy(p0, p, sizeof(float) * np);
    const size_t mn = (size_t)(cfg.m * cfg.n);
    const size_t off[5] = {0, mn, mn + cfg.m, 2 * mn + cfg.m, np};
    const float h = 1e-3f;
    /* With AuxK: latents free to move = dead and never in a main top-k of this batch. */
    bool *free_lat = calloc((size_t)cfg.m, sizeof(bool));
    int32_t *ix = malloc(sizeof(int32_t) * B * cfg.k);
    float *vx = malloc(sizeof(float) * B * cfg.k);
    mc_sae_encode(s, a, B, ix, vx);
    int64_t nfree = 0;
    for (int64_t j = 0; j < cfg.m; j++) free_lat[j] = mc_sae_since_fire(s)[j] >= cfg.dead_samples;
    for (int64_t t = 0; t < B * cfg.k; t++) free_lat[ix[t]] = false;
    for (int64_t j = 0; j < cfg.m; j++) nfree += free_lat[j];
    if (aux) CHECK(nfree >= 2);
    for (int group = 0; group < 5; group++) { /* 0: all; 1..4: W_enc, b_enc, W_dec, b_pre */
        if (aux && (group == 4)) continue;    /* b_pre moves e */
        for (size_t i = 0; i < np; i++) {
            bool in = group == 0 || (i >= off[group - 1] && i < off[group]);
            if (aux) { /* only rows (or bias entries) of free latents */
                int64_t j = -1;
                if (i < off[1])
                    j = (int64_t)(i / (size_t)cfg.n);
                else if (i < off[2])
                    j = (int64_t)(i - off[1]);
                else if (i < off[3])
                    j = (int64_t)((i - off[2]) / (size_t)cfg.n);
                in = in && j >= 0 && free_lat[j];
            }
            dir[i] = in ? frand(20000 + i + 100000 * (uint64_t)group) : 0.0f;
        }
        /* Decoder directions tangent to each unit atom. */
        for (int64_t j = 0; j < cfg.m; j++) {
            float *dj = dir + off[2] + j * cfg.n;
            const float *wj = p0 + off[2] + j * cfg.n;
            double dot = 0;
            for (int64_t i = 0; i < cfg.n; i++) dot += (double)dj[i] * wj[i];
            for (int64_t i = 0; i < cfg.n; i++) dj[i] = (float)(dj[i] - dot * wj[i]);
        }
        double gd = 0;
        for (size_t i = 0; i < np; i++) gd += (double)g[i] * dir[i];
        for (size_t i = 0; i < np; i++) p[i] = p0[i] + h * dir[i];
        CHECK(mc_sae_loss_grad(&C, s, B, a, false, &st, &err) == MC_OK);
        double lp = st.loss;
        for (size_t i = 0; i < np; i++) p[i] = p0[i] - h * dir[i];
        CHECK(mc_sae_loss_grad(&C, s, B, a, false, &st, &err) == MC_OK);
        double lm = st.loss;
        memcpy(p, p0, sizeof(float) * np);
        double fd = (lp - lm) / (2.0 * h);
        double tol = 2e-3 * fmax(fabs(gd), 1e-3);
        CHECK_MSG(fabs(gd) > 1e-3, "sae %s group %d: the direction does not move the loss (%g)",
                  aux ? "auxk" : "no-aux", group, gd);
        CHECK_MSG(fabs(fd - gd) <= tol, "sae %s group %d: fd %.7g vs grad.d %.7g",
                  aux ? "auxk" : "no-aux", group, fd, gd);
    }
    free(free_lat);
    free(ix);
    free(vx);
    /* A training step keeps the atoms unit-norm and moves the dead counters. */
    CHECK(mc_sae_loss_grad(&C, s, B, a, true, &st, &err) == MC_OK);
    mc_sae_apply(s);
    for (int64_t j = 0; j < cfg.m; j++) {
        double ss = 0;
        for (int64_t i = 0; i < cfg.n; i++)
            ss += (double)p[off[2] + j * cfg.n + i] * p[off[2] + j * cfg.n + i];
        CHECK_NEAR(sqrt(ss), 1.0, 1e-6);
    }
    int64_t fired = 0;
    for (int64_t j = 0; j < cfg.m; j++) fired += mc_sae_since_fire(s)[j] < B;
    CHECK(fired >= 1);
    mc_sae_free(&s);
    CHECK(s == NULL);
    free(a);
    free(g);
    free(p0);
    free(dir);
}

static void check_rng(void) {
    /* Pure function of the keys; distinct streams differ; permutations are permutations. */
    CHECK(mc_rng_u64(1, 2, 3) == mc_rng_u64(1, 2, 3));
    CHECK(mc_rng_u64(1, 2, 3) != mc_rng_u64(1, 3, 3));
    CHECK(mc_rng_u64(1, 2, 3) != mc_rng_u64(2, 2, 3));
    double mean = 0, var = 0;
    for (int i = 0; i < 20000; i++) {
        double z = mc_rng_normal(4, 1, (uint64_t)i);
        mean += z;
        var += z * z;
    }
    mean /= 20000;
    var = var / 20000 - mean * mean;
    CHECK_NEAR(mean, 0.0, 0.03); /* 4 sigma of the sample mean */
    CHECK_NEAR(var, 1.0, 0.05);
    for (int64_t block = 1; block <= 4; block++) {
        int64_t n = 23, order[23], seen[23] = {0};
        mc_train_epoch_order(9, 2, n, block, order);
        for (int64_t i = 0; i < n; i++) {
            CHECK(order[i] >= 0 && order[i] < n);
            if (order[i] >= 0 && order[i] < n) seen[order[i]]++;
        }
        for (int64_t i = 0; i < n; i++) CHECK(seen[i] == 1);
        for (int64_t i = 1; i < n; i++)
            if (order[i] % block != 0)
                CHECK(order[i] == order[i - 1] + 1); /* runs stay contiguous */
    }
    /* A subset is sorted, distinct and in range. */
    {
        int64_t scratch[50], sub[20];
        mc_train_subset(3, 50, 20, scratch, sub);
        for (int i = 0; i < 20; i++)
            CHECK(sub[i] >= 0 && sub[i] < 50 && (i == 0 || sub[i] > sub[i - 1]));
    }
    /* Chunk shares tile the batch in rank order. */
    for (int size = 1; size <= 5; size++) {
        int64_t next = 0;
        for (int r = 0; r < size; r++) {
            int64_t c0, c1, r0, r1;
            mc_train_chunk_share(37, 8, r, size, &c0, &c1, &r0, &r1);
            CHECK(r0 == next && r1 >= r0 && r0 == (c0 * 8 < 37 ? c0 * 8 : 37));
            next = r1;
        }
        CHECK(next == 37);
    }
}

int main(int argc, char **argv) {
    mc_error err = {0};
    if (mc_comm_init(&argc, &argv, &C, &err) != MC_OK) return 1;
    check_rng();
    for (int v = 0; v < 3; v++) {
        check_align((mc_align_variant)v, true);
        check_align((mc_align_variant)v, false);
    }
    check_sae(false);
    check_sae(true);
    int rc = TEST_SUMMARY();
    mc_comm_finalize(&C);
    return rc;
}
