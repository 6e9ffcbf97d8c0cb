/* encoder.c - the neuron encoder E_n (linear, no bias) trained with CLIP's symmetric InfoNCE
 * against the prompted text embedding of the predicted label (L_out) and the CLIP image
 * embedding of the input (L_in), data-parallel and exactly rank-count invariant.
 *
 * Per branch, with u_i = normalize(W a_i), targets t normalised, s the logit scale:
 *   L_ij = s u_i . t_j,  loss = 1/(2B) [ sum_i CE(row i, target i) + sum_j CE(col j, target j) ]
 * which is CLIP's (cross_entropy(logits, arange) + cross_entropy(logits.T, arange)) / 2.
 * Samples that share a label have identical out-targets: as in CLIP the target is still the
 * diagonal (no multi-positive), the duplicate columns simply appear in the softmax. We compute
 * that exactly but cheaply: the B x B logits of the out branch have only C_b distinct columns
 * (C_b = number of distinct labels in the batch), so rows work on the B x C_b matrix with column
 * multiplicities cnt_c: row lse_i = log sum_c cnt_c exp(L_ic), column lse for a column of label
 * c = log sum_i exp(L_ic), and the gradient folds the duplicate columns together:
 *   H_ic = [cnt_c exp(L_ic - lseR_i) + cnt_c exp(L_ic - lseC_c) - 2 [c_i = c]] / (2B),
 *   dU = s H T,  dlog s = sum_ic H_ic L_ic.
 * The in branch is the same with C_b = B and cnt = 1. Both branches share one target table
 * T = [distinct label texts ; images], so the cosines and dU are one product each. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "train_internal.h"

#define NORM_EPS 1e-12 /* F.normalize's default clamp */

struct mc_encoder {
    mc_align_config cfg;
    float *params; /* [d*n] W, then the log logit scale */
    float *grad;   /* same layout */
    mc_adam adam;
    float *class_emb; /* [n_classes x d], normalised */
    /* workspace, sized for cap_batch rows */
    int64_t cap_batch;
    float *u, *du, *inv_r, *tmp, *tgt, *cos_all, *h;
    /* softmax of one branch (at most B columns): column multiplicities, row and column maxima
     * of the cosines, reciprocal column sums */
    float *wcol, *rmax, *cmax, *cinv;
    double *rsum, *csum; /* row and column sums of the shifted exps */
    int32_t *label_all, *col_of, *cnt, *cls_of_col, *cls_seen;
    int64_t *order; /* sample order of the current epoch */
    int order_epoch;
    int64_t order_n;
    int fold_by_beta; /* -1: not probed yet; 1: beta_fold_exact held (see there) */
};

const char *mc_align_variant_name(mc_align_variant v) {
    switch (v) {
    case MC_ALIGN_IN_OUT: return "in+out";
    case MC_ALIGN_IN: return "in";
    case MC_ALIGN_OUT: return "out";
    }
    return "?";
}

bool mc_align_variant_parse(const char *s, mc_align_variant *out) {
    if (!strcmp(s, "in+out") || !strcmp(s, "miclip"))
        *out = MC_ALIGN_IN_OUT;
    else if (!strcmp(s, "in"))
        *out = MC_ALIGN_IN;
    else if (!strcmp(s, "out"))
        *out = MC_ALIGN_OUT;
    else
        return false;
    return true;
}

mc_align_config mc_align_defaults(void) {
    mc_align_config c = {0};
    c.variant = MC_ALIGN_IN_OUT;
    c.learn_scale = true;
    c.logit_scale = 1.0 / 0.07;
    c.adam = mc_adam_defaults();
    c.adam.lr = 1e-4;
    c.batch_size = 1024;
    c.epochs = 1;
    c.seed = 0;
    c.chunk_rows = 128;
    c.shuffle_block = 1;
    return c;
}

static bool uses_in(const mc_align_config *c) { return c->variant != MC_ALIGN_OUT; }
static bool uses_out(const mc_align_config *c) { return c->variant != MC_ALIGN_IN; }

static void free_work(mc_encoder *e) {
    float **f[] = {&e->u, &e->du,   &e->inv_r, &e->tmp,  &e->tgt, &e->cos_all,
                   &e->h, &e->wcol, &e->rmax,  &e->cmax, &e->cinv};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        free(*f[i]);
        *f[i] = NULL;
    }
    int32_t **g[] = {&e->label_all, &e->col_of, &e->cnt, &e->cls_of_col};
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
        free(*g[i]);
        *g[i] = NULL;
    }
    free(e->rsum);
    free(e->csum);
    e->rsum = e->csum = NULL;
    e->cap_batch = 0;
}

void mc_encoder_free(mc_encoder **pe) {
    if (!pe || !*pe) return;
    mc_encoder *e = *pe;
    free_work(e);
    free(e->params);
    free(e->grad);
    free(e->class_emb);
    free(e->cls_seen);
    free(e->order);
    mc_adam_free(&e->adam);
    free(e);
    *pe = NULL;
}

/* --- vectorised row kernels ---------------------------------------------------------------------
 * Each runs in an AVX-512, an AVX2+FMA or a baseline clone picked at load time. A result does
 * not depend on which: element-wise code has no implicit FMA contraction (-std=c17), fmaf is
 * exact in every clone, and every sum is taken in double over VEC_LANES fixed partial sums
 * combined pairwise (a row's result does not depend on the rank count either). */
#if defined(__clang__) || !defined(__x86_64__) /* one plain version (the sanitizer builds) */
#define VEC_CLONES
#else
#define VEC_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
enum { VEC_LANES = 16 };

static double sum_lanes(double *acc) {
    for (int w = VEC_LANES / 2; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) acc[l] += acc[l + w];
    return acc[0];
}

/* sum_j x[j] y[j] in double, in VEC_LANES fixed partial sums. */
VEC_CLONES static double dot_f_d(const float *restrict x, const float *restrict y, int64_t n) {
    double acc[VEC_LANES] = {0};
    int64_t j = 0;
    for (; j + VEC_LANES <= n; j += VEC_LANES)
        for (int l = 0; l < VEC_LANES; l++) acc[l] += (double)x[j + l] * (double)y[j + l];
    for (int l = 0; j + l < n; l++) acc[l] += (double)x[j + l] * (double)y[j + l];
    return sum_lanes(acc);
}

/* sum_j x[j] in double, the same way. */
VEC_CLONES static double sum_f_d(const float *restrict x, int64_t n) {
    double acc[VEC_LANES] = {0};
    int64_t j = 0;
    for (; j + VEC_LANES <= n; j += VEC_LANES)
        for (int l = 0; l < VEC_LANES; l++) acc[l] += (double)x[j + l];
    for (int l = 0; j + l < n; l++) acc[l] += (double)x[j + l];
    return sum_lanes(acc);
}

/* y[k] = (float)(x[k] * f), f in double; y may be x. */
VEC_CLONES static void scale_row_d(float *y, const float *x, int64_t n, double f) {
    for (int64_t k = 0; k < n; k++) y[k] = (float)(x[k] * f);
}

/* The backward of normalize: du[k] = (du[k] - dot u[k]) inv, dot = du . u (in double). */
VEC_CLONES static void dz_row(float *restrict du, const float *restrict u, int64_t n, double dot,
                              float inv) {
    for (int64_t k = 0; k < n; k++) du[k] = (float)((du[k] - dot * u[k]) * inv);
}

/* Normalises rows x d of x into y (F.normalize, norm in double); y may be x. inv_r receives
 * 1 / max(|row|, eps) and may be NULL. */
static void normalize_rows_to(float *y, const float *x, int64_t rows, int64_t d, float *inv_r) {
    for (int64_t i = 0; i < rows; i++) {
        const float *r = x + i * d;
        double nrm = sqrt(dot_f_d(r, r, d));
        double inv = 1.0 / (nrm > NORM_EPS ? nrm : NORM_EPS);
        scale_row_d(y + i * d, r, d, inv);
        if (inv_r) inv_r[i] = (float)inv;
    }
}

static void normalize_rows(float *x, int64_t rows, int64_t d, float *inv_r) {
    normalize_rows_to(x, x, rows, d, inv_r);
}

mc_status mc_encoder_create(const mc_align_config *cfg, const float *class_emb, mc_encoder **out,
                            mc_error *err) {
    *out = NULL;
    if (cfg->n < 1 || cfg->d < 1 || cfg->batch_size < 1 || cfg->chunk_rows < 1 || cfg->epochs < 0)
        return MC_FAIL(err, MC_ERR_CONFIG,
                       "align: need n, d, batch_size, chunk_rows >= 1 and epochs >= 0 (got n %lld, "
                       "d %lld, batch %lld, chunk %lld, epochs %d)",
                       (long long)cfg->n, (long long)cfg->d, (long long)cfg->batch_size,
                       (long long)cfg->chunk_rows, cfg->epochs);
    if (cfg->variant != MC_ALIGN_IN_OUT && cfg->variant != MC_ALIGN_IN &&
        cfg->variant != MC_ALIGN_OUT)
        return MC_FAIL(err, MC_ERR_CONFIG, "align: unknown variant %d", (int)cfg->variant);
    if (!(cfg->logit_scale > 0) || !isfinite(cfg->logit_scale))
        return MC_FAIL(err, MC_ERR_CONFIG, "align: logit scale must be positive (got %g)",
                       cfg->logit_scale);
    if (uses_out(cfg) && (cfg->n_classes < 1 || !class_emb))
        return MC_FAIL(err, MC_ERR_CONFIG,
                       "align: variant '%s' needs the class text embeddings (n_classes >= 1)",
                       mc_align_variant_name(cfg->variant));
    size_t dn;
    if (!mc_size_mul((size_t)cfg->d, (size_t)cfg->n, &dn) || dn + 1 < dn)
        return MC_FAIL(err, MC_ERR_NOMEM, "align: W of %lld x %lld is too large", (long long)cfg->d,
                       (long long)cfg->n);
    mc_encoder *e = calloc(1, sizeof *e);
    if (!e) return MC_FAIL(err, MC_ERR_NOMEM, "align: out of memory");
    e->cfg = *cfg;
    e->order_epoch = -1;
    e->fold_by_beta = -1;
    e->params = mc_train_falloc(dn + 1);
    e->grad = mc_train_falloc(dn + 1);
    if (!e->params || !e->grad) goto nomem;
    if (uses_out(cfg)) {
        size_t cd;
        if (!mc_size_mul((size_t)cfg->n_classes, (size_t)cfg->d, &cd)) goto nomem;
        e->class_emb = mc_train_falloc(cd);
        e->cls_seen = mc_alloc_array((size_t)cfg->n_classes, sizeof(int32_t));
        if (!e->class_emb || !e->cls_seen) goto nomem;
        memcpy(e->class_emb, class_emb, cd * sizeof(float));
        for (size_t i = 0; i < cd; i++)
            if (!isfinite(e->class_emb[i])) {
                mc_encoder_free(&e);
                return MC_FAIL(err, MC_ERR_NUMERIC,
                               "align: class embedding %zu has a non-finite value",
                               i / (size_t)cfg->d);
            }
        normalize_rows(e->class_emb, cfg->n_classes, cfg->d, NULL);
        for (int64_t c = 0; c < cfg->n_classes; c++) e->cls_seen[c] = -1;
    }
    /* torch.nn.Linear(n, d, bias=False): kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(n), 1/sqrt(n)). */
    double bound = 1.0 / sqrt((double)cfg->n);
    for (size_t i = 0; i < dn; i++)
        e->params[i] =
            (float)((2.0 * mc_rng_uniform(cfg->seed, MC_RNG_STREAM_INIT, i) - 1.0) * bound);
    e->params[dn] = (float)log(cfg->logit_scale);
    memset(e->grad, 0, (dn + 1) * sizeof(float));
    mc_status st = mc_adam_init(&e->adam, dn + 1, &cfg->adam, err);
    if (st != MC_OK) {
        mc_encoder_free(&e);
        return st;
    }
    *out = e;
    return MC_OK;
nomem:
    mc_encoder_free(&e);
    return MC_FAIL(err, MC_ERR_NOMEM, "align: out of memory for W (%lld x %lld)", (long long)cfg->d,
                   (long long)cfg->n);
}

float *mc_encoder_weight(mc_encoder *e) { return e->params; }
float *mc_encoder_weight_grad(mc_encoder *e) { return e->grad; }
float mc_encoder_log_scale(const mc_encoder *e) { return e->params[e->cfg.d * e->cfg.n]; }
void mc_encoder_set_log_scale(mc_encoder *e, float v) { e->params[e->cfg.d * e->cfg.n] = v; }
float mc_encoder_log_scale_grad(const mc_encoder *e) { return e->grad[e->cfg.d * e->cfg.n]; }
mc_adam *mc_encoder_adam(mc_encoder *e) { return &e->adam; }
const mc_align_config *mc_encoder_config(const mc_encoder *e) { return &e->cfg; }

void mc_encoder_embed(const mc_encoder *e, const float *acts, int64_t rows, float *out) {
    if (rows <= 0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)e->cfg.d, (int)e->cfg.n,
                1.0f, acts, (int)e->cfg.n, e->params, (int)e->cfg.n, 0.0f, out, (int)e->cfg.d);
}

static mc_status ensure_work(mc_encoder *e, int64_t batch, mc_error *err) {
    if (batch <= e->cap_batch) return MC_OK;
    free_work(e);
    const int64_t d = e->cfg.d;
    int64_t cmax = 2 * batch; /* columns: distinct labels (<= batch) and the batch's images */
    size_t bd, bc;
    if (!mc_size_mul((size_t)batch, (size_t)d, &bd) ||
        !mc_size_mul((size_t)batch, (size_t)cmax, &bc))
        return MC_FAIL(err, MC_ERR_NOMEM, "align: batch %lld too large", (long long)batch);
    e->u = mc_train_falloc(bd);
    e->du = mc_train_falloc(bd);
    e->inv_r = mc_train_falloc((size_t)batch);
    e->tgt = mc_train_falloc(2 * bd);
    e->cos_all = mc_train_falloc(bc);
    e->h = mc_train_falloc(bc);
    e->label_all = mc_alloc_array((size_t)batch, sizeof(int32_t));
    e->col_of = mc_alloc_array((size_t)batch, sizeof(int32_t));
    e->cnt = mc_alloc_array((size_t)batch, sizeof(int32_t));
    e->cls_of_col = mc_alloc_array((size_t)batch, sizeof(int32_t));
    e->rsum = mc_alloc_array((size_t)batch, sizeof(double));
    e->csum = mc_alloc_array((size_t)batch, sizeof(double));
    e->wcol = mc_train_falloc((size_t)batch);
    e->rmax = mc_train_falloc((size_t)batch);
    e->cmax = mc_train_falloc((size_t)batch);
    e->cinv = mc_train_falloc((size_t)batch);
    e->tmp = mc_train_falloc((size_t)(d * e->cfg.n));
    if (!e->u || !e->du || !e->inv_r || !e->tgt || !e->cos_all || !e->h || !e->label_all ||
        !e->col_of || !e->cnt || !e->cls_of_col || !e->rsum || !e->csum || !e->wcol || !e->rmax ||
        !e->cmax || !e->cinv || !e->tmp) {
        free_work(e);
        return MC_FAIL(err, MC_ERR_NOMEM, "align: out of memory for a batch of %lld",
                       (long long)batch);
    }
    e->cap_batch = batch;
    return MC_OK;
}

/* --- the two softmaxes of a branch ------------------------------------------------------------
 * Rows and columns are shifted by their own maximum (as torch's cross_entropy does), so any
 * logit scale works in float: exp(s (c - max)) lies in (0, 1]. The kernels run element-wise in
 * float with exps from exp_nonpos and sum in double over VEC_LANES partial sums. */
/* exp(x) for x <= 0 (NaN stays NaN), without a library call so that loops over it vectorise:
 * x = k ln2 + r with |r| <= ln2/2 (Cody-Waite, k ln2_hi exact), e^r by its degree-7 Taylor
 * polynomial (truncation 5e-9), 2^k built in the exponent bits. Within 1 ulp of exp() (checked
 * over every float in [-75, 0]). Inputs below -75 give e^-75 = 3e-33 instead of a smaller
 * number: next to the row or column maximum's 1 in a sum that is below float resolution, and
 * it keeps every product of the kernels clear of subnormals (which are slow). */
static inline float exp_nonpos(float x) {
    /* max(x, -75) as a bit select: GCC does not if-convert a float ?: under -ftrapping-math,
     * and the loops would stay scalar. NaN compares false and stays NaN. */
    const float lo = -75.0f;
    uint32_t xb, lb, below = -(uint32_t)(x < lo);
    memcpy(&xb, &x, sizeof xb);
    memcpy(&lb, &lo, sizeof lb);
    xb = (xb & ~below) | (lb & below);
    memcpy(&x, &xb, sizeof x);
    const float shift = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float t = x * 1.44269504088896341f + shift;
    uint32_t tb;
    memcpy(&tb, &t, sizeof tb); /* the low mantissa bits hold k */
    float k = t - shift;
    float r = fmaf(k, 2.12194440e-4f, fmaf(k, -0.693359375f, x));
    float p = 1.0f / 5040.0f;
    p = fmaf(p, r, 1.0f / 720.0f);
    p = fmaf(p, r, 1.0f / 120.0f);
    p = fmaf(p, r, 1.0f / 24.0f);
    p = fmaf(p, r, 1.0f / 6.0f);
    p = fmaf(p, r, 0.5f);
    p = fmaf(p, r, 1.0f);
    p = fmaf(p, r, 1.0f);
    uint32_t sb = (tb - 0x4B400000u + 127u) << 23; /* 2^k, k in [-109, 0] */
    float sc;
    memcpy(&sc, &sb, sizeof sc);
    return p * sc;
}

/* Returns max_j c[j] and raises cmax[j] to c[j]. The row maximum is taken on integer keys that
 * order like the floats (sign-magnitude to two's complement), because GCC vectorises an integer
 * max reduction but not a float one; max is exact, so this changes no result. */
VEC_CLONES static float max_row(const float *restrict c, int64_t n, float *restrict cmax) {
    int32_t best = INT32_MIN;
    for (int64_t j = 0; j < n; j++) {
        uint32_t u;
        memcpy(&u, &c[j], sizeof u);
        int32_t key = (int32_t)(u ^ ((u >> 31) * 0x7fffffffu));
        best = key > best ? key : best;
        cmax[j] = c[j] > cmax[j] ? c[j] : cmax[j];
    }
    uint32_t u = (uint32_t)best;
    u ^= (u >> 31) * 0x7fffffffu;
    float m;
    memcpy(&m, &u, sizeof m);
    return m;
}

/* One row's exps: h[j] = w[j] e^{s (c[j] - rmax)} (kept for grad_row, summed by the caller)
 * and csum[j] += e^{s (c[j] - cmax[j])}. */
VEC_CLONES static void exp_row(const float *restrict c, int64_t n, float s, float rmax,
                               const float *restrict cmax, const float *restrict w,
                               float *restrict h, double *restrict csum) {
    for (int64_t j = 0; j < n; j++) {
        h[j] = w[j] * exp_nonpos(s * (c[j] - rmax));
        csum[j] += (double)exp_nonpos(s * (c[j] - cmax[j]));
    }
}

/* One row of 2B dloss/dlogit without the target's -2, from exp_row's h:
 * w[j] (softmax_row + softmax_col). */
VEC_CLONES static void grad_row(const float *restrict c, int64_t n, float s, float rinv,
                                const float *restrict cmax, const float *restrict cinv,
                                const float *restrict w, float *restrict h) {
    for (int64_t j = 0; j < n; j++)
        h[j] = h[j] * rinv + w[j] * (exp_nonpos(s * (c[j] - cmax[j])) * cinv[j]);
}

VEC_CLONES static void scale_row(float *restrict h, int64_t n, float f) {
    for (int64_t j = 0; j < n; j++) h[j] *= f;
}

/* The softmax part of one contrastive branch, replicated over the whole batch in row order.
 * Its logits are s * cos[:, col0 : col0 + nc] (row stride ld); col_of[i] is the target column
 * of row i and cnt[j] the multiplicity of column j (both NULL: the identity, cnt 1). Writes
 * H (dloss/dcos) into e->h at the same place, adds the branch loss and dloss/dlog s. Three
 * passes over the cosines: maxima; exps and sums (the row exps stay in H); gradient. */
static void softmax_part(mc_encoder *e, int64_t B, int64_t ld, int64_t col0, int64_t nc,
                         const int32_t *col_of, const int32_t *cnt, float s, double *loss,
                         double *dlogs) {
    const float *cos_all = e->cos_all + col0;
    float *hall = e->h + col0;
    float *w = e->wcol, *rmax = e->rmax, *cmax = e->cmax, *cinv = e->cinv;
    double *rsum = e->rsum, *csum = e->csum;
    const double inv2b = 1.0 / (2.0 * (double)B), sd = (double)s;
    for (int64_t j = 0; j < nc; j++) {
        w[j] = cnt ? (float)cnt[j] : 1.0f;
        cmax[j] = -INFINITY;
        csum[j] = 0;
    }
    for (int64_t i = 0; i < B; i++) rmax[i] = max_row(cos_all + i * ld, nc, cmax);
    for (int64_t i = 0; i < B; i++) {
        exp_row(cos_all + i * ld, nc, s, rmax[i], cmax, w, hall + i * ld, csum);
        rsum[i] = sum_f_d(hall + i * ld, nc);
    }
    for (int64_t j = 0; j < nc; j++) cinv[j] = (float)(1.0 / csum[j]);
    double l_sum = 0, ds = 0;
    const float hs = (float)(sd * inv2b);
    for (int64_t i = 0; i < B; i++) {
        const float *row = cos_all + i * ld;
        float *h = hall + i * ld;
        const int32_t ci = col_of ? col_of[i] : (int32_t)i;
        /* -log softmax_row(i, c_i) - log softmax_col(i, c_i), from the shifted sums */
        l_sum += log(rsum[i]) + sd * ((double)rmax[i] - (double)row[ci]) + log(csum[ci]) +
                 sd * ((double)cmax[ci] - (double)row[ci]);
        grad_row(row, nc, s, (float)(1.0 / rsum[i]), cmax, cinv, w, h);
        h[ci] -= 2.0f;
        ds += dot_f_d(h, row, nc); /* sum_j (2B dloss/dlogit_ij) cos_ij */
        scale_row(h, nc, hs);      /* dloss/dcos = s dloss/dlogit */
    }
    *loss += l_sum * inv2b;
    *dlogs += ds * sd * inv2b;
}

/* Whether a weight-gradient chunk can be folded into the running sum by the product itself
 * (sgemm with beta 1) rather than by a product into tmp and a separate add, with the same bits:
 * true when the BLAS adds its finished product to C with one rounding, i.e. it does not split
 * the k = chunk_rows deep sum into blocks (OpenBLAS splits beyond its GEMM_Q, 320 floats with
 * the kernels here). The ranks after the first always fold by a separate add, so only this
 * keeps the result independent of the rank count; it is checked on the real shape (d x n) with
 * random numbers, once, rather than assumed. */
static bool beta_fold_exact(int64_t d, int64_t n, int64_t k) {
    const size_t dn = (size_t)(d * n), na = (size_t)(k * d), nb = (size_t)(k * n);
    float *a = mc_train_falloc(na), *b = mc_train_falloc(nb), *c1 = mc_train_falloc(dn),
          *c2 = mc_train_falloc(dn), *t = mc_train_falloc(dn);
    bool same = false;
    if (a && b && c1 && c2 && t) {
        float *fill[] = {a, b, c1};
        size_t len[] = {na, nb, dn};
        for (int f = 0; f < 3; f++)
            for (size_t i = 0; i < len[f]; i++)
                fill[f][i] = (float)(mc_rng_u64(7, 100 + (uint64_t)f, i) >> 40) * 0x1p-24f - 0.5f;
        memcpy(c2, c1, dn * sizeof(float));
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)d, (int)n, (int)k, 1.0f, a,
                    (int)d, b, (int)n, 0.0f, t, (int)n);
        for (size_t i = 0; i < dn; i++) c1[i] += t[i];
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)d, (int)n, (int)k, 1.0f, a,
                    (int)d, b, (int)n, 1.0f, c2, (int)n);
        same = !memcmp(c1, c2, dn * sizeof(float));
    }
    free(a);
    free(b);
    free(c1);
    free(c2);
    free(t);
    return same;
}

mc_status mc_encoder_loss_grad(const mc_comm *c, mc_encoder *e, int64_t B, const float *acts,
                               const float *img, const int32_t *label, mc_align_stats *st,
                               mc_error *err) {
    const mc_align_config *cfg = &e->cfg;
    const int64_t n = cfg->n, d = cfg->d, C = cfg->chunk_rows;
    if (B < 1) return MC_FAIL(err, MC_ERR_ARG, "align: empty batch");
    int64_t c0, c1, r0, r1;
    mc_train_chunk_share(B, C, c->rank, c->size, &c0, &c1, &r0, &r1);
    const int64_t rows = r1 - r0;
    /* Buffers first, and agreed on, so no rank is left alone in a collective. Ranks after the
     * first keep their chunks' weight-gradient partials until the running sum arrives. */
    const size_t dn = (size_t)(d * n);
    const int64_t nloc = c1 - c0;
    float *parts = NULL;
    mc_status ws = ensure_work(e, B, err);
    if (ws == MC_OK && c->rank > 0 && nloc > 0) {
        size_t np;
        if (!mc_size_mul(dn, (size_t)nloc, &np) || !(parts = mc_train_falloc(np)))
            ws = MC_FAIL(err, MC_ERR_NOMEM, "align: out of memory for gradient partials");
    }
    ws = mc_comm_agree(c, ws, err);
    if (ws != MC_OK) {
        free(parts);
        return ws;
    }
    mc_status s = MC_OK;
    const float scale = expf(mc_encoder_log_scale(e));

    /* z = a W^T per chunk, u = normalize(z) in place (1 / |z| kept for the backward). */
    for (int64_t ch = c0; ch < c1; ch++) {
        int64_t a = ch * C, len = (a + C < B ? C : B - a);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)len, (int)d, (int)n, 1.0f,
                    acts + (a - r0) * n, (int)n, e->params, (int)n, 0.0f, e->u + (a - r0) * d,
                    (int)d);
    }
    normalize_rows(e->u, rows, d, e->inv_r);

    /* The targets of both branches side by side in tgt: [distinct labels' text ; images]. */
    int64_t nc_out = 0;
    if (uses_out(cfg)) {
        /* Gather labels; columns = distinct labels in first-appearance order. */
        if ((s = mc_train_gather_rows(c, B, C, label, e->label_all, sizeof(int32_t), err)) != MC_OK)
            goto done;
        mc_status bad = MC_OK;
        for (int64_t i = 0; i < B; i++) {
            int32_t y = e->label_all[i];
            if (y < 0 || y >= cfg->n_classes) {
                bad = MC_FAIL(err, MC_ERR_FORMAT,
                              "align: sample %lld of the batch has label %d, "
                              "outside [0, %lld)",
                              (long long)i, (int)y, (long long)cfg->n_classes);
                break;
            }
            if (e->cls_seen[y] < 0) {
                e->cls_seen[y] = (int32_t)nc_out;
                e->cls_of_col[nc_out] = y;
                e->cnt[nc_out] = 0;
                memcpy(e->tgt + nc_out * d, e->class_emb + (int64_t)y * d,
                       (size_t)d * sizeof(float));
                nc_out++;
            }
            e->col_of[i] = e->cls_seen[y];
            e->cnt[e->col_of[i]]++;
        }
        for (int64_t j = 0; j < nc_out; j++) e->cls_seen[e->cls_of_col[j]] = -1;
        if ((s = bad) != MC_OK) goto done; /* every rank saw the same gathered labels */
    }
    const int64_t nc_in = uses_in(cfg) ? B : 0, ncols = nc_out + nc_in;
    if (uses_in(cfg)) {
        float *all = e->tgt + nc_out * d, *mine = all + r0 * d;
        normalize_rows_to(mine, img, rows, d, NULL);
        if ((s = mc_train_gather_rows(c, B, C, mine, all, (size_t)d * sizeof(float), err)) != MC_OK)
            goto done;
    }
    /* cos = u tgt^T for the local chunks (one product for both branches), then all rows. */
    for (int64_t ch = c0; ch < c1; ch++) {
        int64_t a = ch * C, len = (a + C < B ? C : B - a);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)len, (int)ncols, (int)d, 1.0f,
                    e->u + (a - r0) * d, (int)d, e->tgt, (int)d, 0.0f, e->cos_all + a * ncols,
                    (int)ncols);
    }
    s = mc_train_gather_rows(c, B, C, e->cos_all + r0 * ncols, e->cos_all,
                             (size_t)ncols * sizeof(float), err);
    if (s != MC_OK) goto done;
    double loss_in = 0, loss_out = 0, dlogs = 0;
    if (nc_out) softmax_part(e, B, ncols, 0, nc_out, e->col_of, e->cnt, scale, &loss_out, &dlogs);
    if (nc_in) softmax_part(e, B, ncols, nc_out, nc_in, NULL, NULL, scale, &loss_in, &dlogs);
    /* du = H tgt for the local chunks. */
    for (int64_t ch = c0; ch < c1; ch++) {
        int64_t a = ch * C, len = (a + C < B ? C : B - a);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)len, (int)d, (int)ncols, 1.0f,
                    e->h + a * ncols, (int)ncols, e->tgt, (int)d, 0.0f, e->du + (a - r0) * d,
                    (int)d);
    }

    /* dz = (du - (du.u) u) / max(|z|, eps); when clamped the norm has no gradient. */
    for (int64_t i = 0; i < rows; i++) {
        float *du = e->du + i * d;
        const float *u = e->u + i * d;
        float inv = e->inv_r[i];
        bool clamped = inv >= (float)(1.0 / NORM_EPS);
        dz_row(du, u, d, clamped ? 0.0 : dot_f_d(du, u, d), inv);
    }

    /* dW = sum over chunks of dz_c^T a_c, left fold in global chunk order (chain over ranks).
     * The first rank folds its chunks as it goes, by the product itself where that is exact. */
    float *gW = e->grad;
    if (!parts && nloc > 1 && e->fold_by_beta < 0) e->fold_by_beta = beta_fold_exact(d, n, C);
    for (int64_t ch = c0; ch < c1; ch++) {
        int64_t a = ch * C, len = (a + C < B ? C : B - a);
        const bool fold = !parts && ch > 0;
        float *dst =
            parts ? parts + (size_t)(ch - c0) * dn : (fold && e->fold_by_beta != 1 ? e->tmp : gW);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)d, (int)n, (int)len, 1.0f,
                    e->du + (a - r0) * d, (int)d, acts + (a - r0) * n, (int)n,
                    dst == gW && fold ? 1.0f : 0.0f, dst, (int)n);
        if (dst == e->tmp)
            for (size_t i = 0; i < dn; i++) gW[i] += e->tmp[i];
    }
    s = mc_train_chain_begin(c, gW, dn, err);
    if (s == MC_OK && parts)
        for (int64_t k = 0; k < nloc; k++) {
            const float *p = parts + (size_t)k * dn;
            for (size_t i = 0; i < dn; i++) gW[i] += p[i];
        }
    if (s == MC_OK) s = mc_train_chain_end(c, gW, dn, err);
    if (s != MC_OK) goto done;
    gW[dn] = cfg->learn_scale ? (float)dlogs : 0.0f;

    double total = loss_in + loss_out;
    if (st) {
        st->loss = (float)total;
        st->loss_in = (float)loss_in;
        st->loss_out = (float)loss_out;
        st->logit_scale = expf(mc_encoder_log_scale(e));
    }
    if (!isfinite(total))
        s = MC_FAIL(err, MC_ERR_NUMERIC, "align: the loss is not finite (%g)", total);
done:
    free(parts);
    return s;
}

void mc_encoder_apply(mc_encoder *e) {
    const size_t dn = (size_t)(e->cfg.d * e->cfg.n);
    mc_adam_tick(&e->adam);
    mc_adam_update_slice(&e->adam, 0, dn, e->params, e->grad);
    if (e->cfg.learn_scale) {
        mc_adam_update_slice(&e->adam, dn, 1, e->params + dn, e->grad + dn);
        /* CLIP clamps the logit scale at 100: log scale in [0, log 100]. */
        float lmax = (float)log(100.0);
        if (e->params[dn] > lmax) e->params[dn] = lmax;
        if (e->params[dn] < 0.0f) e->params[dn] = 0.0f;
    }
}

mc_status mc_encoder_train(const mc_comm *c, mc_encoder *e, int64_t n_samples,
                           mc_align_fetch_fn fetch, void *user, mc_train_pos *pos,
                           mc_train_curve *curve, mc_train_step_hook hook, void *hook_user,
                           mc_error *err) {
    return mc_encoder_train_to(c, e, n_samples, fetch, user, pos, curve, hook, hook_user,
                               e->cfg.epochs, err);
}

mc_status mc_encoder_train_to(const mc_comm *c, mc_encoder *e, int64_t n_samples,
                              mc_align_fetch_fn fetch, void *user, mc_train_pos *pos,
                              mc_train_curve *curve, mc_train_step_hook hook, void *hook_user,
                              int end_epoch, mc_error *err) {
    const mc_align_config *cfg = &e->cfg;
    if (n_samples < 1) return MC_FAIL(err, MC_ERR_ARG, "align: no training samples");
    const int64_t B = n_samples < cfg->batch_size ? n_samples : cfg->batch_size;
    const int64_t steps = n_samples / B;
    int64_t c0, c1, r0, r1;
    mc_train_chunk_share(B, cfg->chunk_rows, c->rank, c->size, &c0, &c1, &r0, &r1);
    const int64_t rows = r1 - r0;
    float *acts = mc_train_falloc((size_t)(rows * cfg->n));
    float *img = mc_train_falloc((size_t)(rows * cfg->d));
    int32_t *lab = mc_alloc_array((size_t)(rows ? rows : 1), sizeof(int32_t));
    if (!e->order || e->order_n != n_samples) {
        free(e->order);
        e->order = mc_alloc_array((size_t)n_samples, sizeof(int64_t));
        e->order_epoch = -1;
        e->order_n = n_samples;
    }
    mc_status s = MC_OK;
    if (!acts || !img || !lab || !e->order) s = MC_FAIL(err, MC_ERR_NOMEM, "align: out of memory");
    s = mc_comm_agree(c, s, err);
    while (s == MC_OK && pos->epoch < end_epoch) {
        if (e->order_epoch != pos->epoch) {
            mc_train_epoch_order(cfg->seed, pos->epoch, n_samples, cfg->shuffle_block, e->order);
            e->order_epoch = pos->epoch;
        }
        for (; s == MC_OK && pos->batch_in_epoch < steps;) {
            const int64_t *idx = e->order + pos->batch_in_epoch * B + r0;
            mc_status fs = rows > 0 ? fetch(user, idx, rows, acts, img, lab, err) : MC_OK;
            /* A failed read on one rank must not leave the others in a collective. */
            s = mc_comm_agree(c, fs, err);
            if (s != MC_OK) break;
            mc_align_stats st;
            s = mc_encoder_loss_grad(c, e, B, acts, img, lab, &st, err);
            if (s != MC_OK) break;
            mc_encoder_apply(e);
            pos->batch_in_epoch++;
            pos->global_step++;
            if (curve)
                s = mc_train_curve_push(curve, st.loss, st.loss_out, st.loss_in, st.logit_scale,
                                        err);
            if (s == MC_OK && hook) s = hook(hook_user, pos, err);
        }
        if (s == MC_OK) {
            pos->epoch++;
            pos->batch_in_epoch = 0;
        }
    }
    free(acts);
    free(img);
    free(lab);
    return s;
}
