/* sae_topk.c - the top-k sparse autoencoder (Gao et al. 2024, OpenAI's recipe), data-parallel
 * and exactly rank-count invariant.
 *
 *   x = a - b_pre,  pre = W_enc x + b_enc,  f = ReLU(TopK_k(pre)),  a_hat = W_dec f + b_pre
 *   loss = FVU + aux_coef * AuxK
 *   FVU  = sum_s |a_s - a_hat_s|^2 / sum_s |a_s - mean(a)|^2          (batch mean, a constant)
 *   AuxK = sum_s |e_s - e_hat_s|^2 / sum_s |e_s - mean(e)|^2,  e = a - a_hat (detached),
 *          e_hat = W_dec ReLU(TopK_kaux(pre restricted to dead latents))   -- no b_pre here
 * The FVU objective is the MSE up to the constant batch variance (Adam sees the same steps up
 * to eps); it makes the AuxK coefficient meaningful, as in OpenAI's normalised MSE.
 *
 * Work split: the dense encoder product (B m n) runs on each rank's chunks with sgemm; the
 * top-k and AuxK codes (indices and values), and the inputs, are all-gathered; the sparse
 * decoder, loss and backward (B (k + k_aux) n) run on every rank over the whole batch in global
 * row order, so every rank holds the same gradients without a reduction. The decoder is stored
 * transposed (row j = atom j, contiguous), so each active latent touches one contiguous row. */
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <string.h>

#include "miclip/tensor.h"
#include "train_internal.h"

enum { TOPK_BLOCK = 16 }; /* topk_wide's block of values */

struct mc_sae {
    mc_sae_config cfg;
    size_t np;            /* parameter count */
    float *params, *grad; /* [W_enc m*n][b_enc m][W_dec^T m*n][b_pre n] */
    float *w_enc, *b_enc, *w_dec, *b_pre;
    float *g_enc, *g_benc, *g_dec, *g_bpre;
    mc_adam adam;
    int64_t *since_fire; /* samples since each latent last fired */
    /* workspace */
    int64_t cap_batch;
    float *a_all, *e_all, *xloc, *pre, *val_all, *aval_all;
    float *x_all, *r_aux, *dot_main, *dot_aux, *ent_f, *ent_g;
    int32_t *ent_row;
    uint8_t *ent_aux;
    int64_t *lat_start;
    double *mean;
    float *enc_x, *enc_pre; /* mc_sae_encode's chunk buffers */
    float *enc_bm;          /* topk_wide's block maxima and their copy: 2 * (m / 16) */
    int32_t *enc_cand;      /* topk_wide's candidates: m */
    int32_t *idx_all, *aidx_all, *dead_list;
    int64_t *last_fire;
    int64_t *order;
    int order_epoch;
    int64_t order_n;
};

mc_sae_config mc_sae_defaults(void) {
    mc_sae_config c = {0};
    c.k = 32;
    c.k_aux = 256;
    c.aux_coef = 1.0 / 32.0;
    c.dead_samples = 10000000;
    c.adam = mc_adam_defaults();
    c.adam.lr = 1e-3;
    c.batch_size = 4096;
    c.epochs = 1;
    c.chunk_rows = 256;
    c.shuffle_block = 1;
    c.median_samples = 4096;
    c.median_iters = 100;
    return c;
}

static void free_work(mc_sae *s) {
    float **f[] = {&s->a_all, &s->e_all, &s->xloc,     &s->pre,     &s->val_all, &s->aval_all,
                   &s->x_all, &s->r_aux, &s->dot_main, &s->dot_aux, &s->ent_f,   &s->ent_g};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        free(*f[i]);
        *f[i] = NULL;
    }
    free(s->idx_all);
    free(s->aidx_all);
    free(s->ent_row);
    free(s->ent_aux);
    free(s->lat_start);
    free(s->mean);
    s->mean = NULL;
    s->idx_all = s->aidx_all = s->ent_row = NULL;
    s->ent_aux = NULL;
    s->lat_start = NULL;
    s->cap_batch = 0;
}

void mc_sae_free(mc_sae **ps) {
    if (!ps || !*ps) return;
    mc_sae *s = *ps;
    free_work(s);
    free(s->params);
    free(s->grad);
    free(s->since_fire);
    free(s->dead_list);
    free(s->last_fire);
    free(s->order);
    free(s->enc_x);
    free(s->enc_pre);
    free(s->enc_bm);
    free(s->enc_cand);
    mc_adam_free(&s->adam);
    free(s);
    *ps = NULL;
}

static void normalize_atoms(float *w, int64_t m, int64_t n) {
    for (int64_t j = 0; j < m; j++) {
        float *r = w + j * n;
        double ss = 0;
        for (int64_t i = 0; i < n; i++) ss += (double)r[i] * r[i];
        if (ss <= 0) continue;
        double inv = 1.0 / sqrt(ss);
        for (int64_t i = 0; i < n; i++) r[i] = (float)(r[i] * inv);
    }
}

mc_status mc_sae_create(const mc_sae_config *cfg, mc_sae **out, mc_error *err) {
    *out = NULL;
    if (cfg->n < 1 || cfg->m < 1 || cfg->k < 1 || cfg->k > cfg->m || cfg->k_aux < 0 ||
        cfg->batch_size < 1 || cfg->chunk_rows < 1 || cfg->epochs < 0 || cfg->dead_samples < 1 ||
        !(cfg->aux_coef >= 0) || cfg->median_iters < 0)
        return MC_FAIL(err, MC_ERR_CONFIG,
                       "sae: need n, m >= 1, 1 <= k <= m, k_aux >= 0, aux_coef >= 0, batch_size, "
                       "chunk_rows, dead_samples >= 1 (got n %lld, m %lld, k %d, k_aux %d, "
                       "batch %lld)",
                       (long long)cfg->n, (long long)cfg->m, cfg->k, cfg->k_aux,
                       (long long)cfg->batch_size);
    size_t mn, np;
    if (!mc_size_mul((size_t)cfg->m, (size_t)cfg->n, &mn) || !mc_size_mul(mn, 2, &np) ||
        !mc_size_add(np, (size_t)(cfg->m + cfg->n), &np))
        return MC_FAIL(err, MC_ERR_NOMEM, "sae: %lld x %lld is too large", (long long)cfg->m,
                       (long long)cfg->n);
    mc_sae *s = calloc(1, sizeof *s);
    if (!s) return MC_FAIL(err, MC_ERR_NOMEM, "sae: out of memory");
    s->cfg = *cfg;
    s->np = np;
    s->order_epoch = -1;
    s->params = mc_train_falloc(np);
    s->grad = mc_train_falloc(np);
    s->since_fire = mc_calloc_array((size_t)cfg->m, sizeof(int64_t));
    s->dead_list = mc_alloc_array((size_t)cfg->m, sizeof(int32_t));
    s->last_fire = mc_alloc_array((size_t)cfg->m, sizeof(int64_t));
    size_t cn, cm;
    if (mc_size_mul((size_t)cfg->chunk_rows, (size_t)cfg->n, &cn) &&
        mc_size_mul((size_t)cfg->chunk_rows, (size_t)cfg->m, &cm)) {
        s->enc_x = mc_train_falloc(cn);
        s->enc_pre = mc_train_falloc(cm);
    }
    s->enc_bm = mc_alloc_array((size_t)(2 * (cfg->m / TOPK_BLOCK) + 1), sizeof(float));
    s->enc_cand = mc_alloc_array((size_t)cfg->m, sizeof(int32_t));
    if (!s->params || !s->grad || !s->since_fire || !s->dead_list || !s->last_fire || !s->enc_x ||
        !s->enc_pre || !s->enc_bm || !s->enc_cand) {
        mc_sae_free(&s);
        return MC_FAIL(err, MC_ERR_NOMEM, "sae: out of memory for %zu parameters", np);
    }
    s->w_enc = s->params;
    s->b_enc = s->w_enc + mn;
    s->w_dec = s->b_enc + cfg->m;
    s->b_pre = s->w_dec + mn;
    s->g_enc = s->grad;
    s->g_benc = s->g_enc + mn;
    s->g_dec = s->g_benc + cfg->m;
    s->g_bpre = s->g_dec + mn;
    /* Random unit atoms; encoder = decoder^T. */
    for (size_t i = 0; i < mn; i++)
        s->w_enc[i] = (float)mc_rng_normal(cfg->seed, MC_RNG_STREAM_INIT, i);
    normalize_atoms(s->w_enc, cfg->m, cfg->n);
    memcpy(s->w_dec, s->w_enc, mn * sizeof(float));
    memset(s->b_enc, 0, (size_t)cfg->m * sizeof(float));
    memset(s->b_pre, 0, (size_t)cfg->n * sizeof(float));
    memset(s->grad, 0, np * sizeof(float));
    mc_status st = mc_adam_init(&s->adam, np, &cfg->adam, err);
    if (st != MC_OK) {
        mc_sae_free(&s);
        return st;
    }
    *out = s;
    return MC_OK;
}

const mc_sae_config *mc_sae_get_config(const mc_sae *s) { return &s->cfg; }
float *mc_sae_w_enc(mc_sae *s) { return s->w_enc; }
float *mc_sae_b_enc(mc_sae *s) { return s->b_enc; }
float *mc_sae_w_dec_t(mc_sae *s) { return s->w_dec; }
float *mc_sae_b_pre(mc_sae *s) { return s->b_pre; }
float *mc_sae_grad_w_enc(mc_sae *s) { return s->g_enc; }
float *mc_sae_grad_b_enc(mc_sae *s) { return s->g_benc; }
float *mc_sae_grad_w_dec_t(mc_sae *s) { return s->g_dec; }
float *mc_sae_grad_b_pre(mc_sae *s) { return s->g_bpre; }
int64_t *mc_sae_since_fire(mc_sae *s) { return s->since_fire; }
mc_adam *mc_sae_adam(mc_sae *s) { return &s->adam; }
float *mc_sae_params(mc_sae *s, size_t *count) {
    *count = s->np;
    return s->params;
}

mc_status mc_sae_init_bpre(mc_sae *s, const float *x, int64_t rows, mc_error *err) {
    const int64_t n = s->cfg.n;
    if (rows < 1) return MC_FAIL(err, MC_ERR_ARG, "sae: geometric median of no samples");
    double *y = calloc((size_t)n, sizeof(double)), *ny = calloc((size_t)n, sizeof(double));
    if (!y || !ny) {
        free(y);
        free(ny);
        return MC_FAIL(err, MC_ERR_NOMEM, "sae: out of memory");
    }
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < n; i++) y[i] += x[r * n + i];
    for (int64_t i = 0; i < n; i++) y[i] /= (double)rows;
    /* Weiszfeld: y <- sum w_r x_r / sum w_r with w_r = 1 / |x_r - y|, from the mean. */
    for (int it = 0; it < s->cfg.median_iters; it++) {
        double wsum = 0, scale = 0, move = 0;
        memset(ny, 0, (size_t)n * sizeof(double));
        for (int64_t r = 0; r < rows; r++) {
            const float *xr = x + r * n;
            double dd = 0;
            for (int64_t i = 0; i < n; i++) dd += (xr[i] - y[i]) * (xr[i] - y[i]);
            double w = 1.0 / fmax(sqrt(dd), 1e-12);
            wsum += w;
            for (int64_t i = 0; i < n; i++) ny[i] += w * xr[i];
        }
        for (int64_t i = 0; i < n; i++) {
            ny[i] /= wsum;
            move += (ny[i] - y[i]) * (ny[i] - y[i]);
            scale += ny[i] * ny[i];
            y[i] = ny[i];
        }
        if (sqrt(move) <= 1e-7 * (sqrt(scale) + 1e-12)) break;
    }
    for (int64_t i = 0; i < n; i++) s->b_pre[i] = (float)y[i];
    free(y);
    free(ny);
    return MC_OK;
}

static mc_status ensure_work(mc_sae *s, int64_t B, mc_error *err) {
    if (B <= s->cap_batch) return MC_OK;
    free_work(s);
    const mc_sae_config *c = &s->cfg;
    size_t bn, cm, bk, bka;
    if (!mc_size_mul((size_t)B, (size_t)c->n, &bn) ||
        !mc_size_mul((size_t)c->chunk_rows, (size_t)c->m, &cm) ||
        !mc_size_mul((size_t)B, (size_t)c->k, &bk) ||
        !mc_size_mul((size_t)B, (size_t)(c->k_aux ? c->k_aux : 1), &bka))
        return MC_FAIL(err, MC_ERR_NOMEM, "sae: batch %lld too large", (long long)B);
    s->a_all = mc_train_falloc(bn);
    s->e_all = mc_train_falloc(bn);
    s->xloc = mc_train_falloc(bn);
    s->pre = mc_train_falloc(cm);
    s->val_all = mc_train_falloc(bk);
    s->aval_all = mc_train_falloc(bka);
    s->idx_all = mc_alloc_array(bk, sizeof(int32_t));
    s->aidx_all = mc_alloc_array(bka, sizeof(int32_t));
    s->x_all = mc_train_falloc(bn);
    s->r_aux = mc_train_falloc(bn);
    s->dot_main = mc_train_falloc(bk);
    s->dot_aux = mc_train_falloc(bka);
    s->ent_f = mc_train_falloc(bk + bka);
    s->ent_g = mc_train_falloc(bk + bka);
    s->ent_row = mc_alloc_array(bk + bka, sizeof(int32_t));
    s->ent_aux = mc_alloc_array(bk + bka, sizeof(uint8_t));
    s->lat_start = mc_alloc_array((size_t)c->m + 1, sizeof(int64_t));
    s->mean = mc_alloc_array((size_t)c->n, sizeof(double));
    if (!s->a_all || !s->e_all || !s->xloc || !s->pre || !s->val_all || !s->aval_all ||
        !s->idx_all || !s->aidx_all || !s->x_all || !s->r_aux || !s->dot_main || !s->dot_aux ||
        !s->ent_f || !s->ent_g || !s->ent_row || !s->ent_aux || !s->lat_start || !s->mean) {
        free_work(s);
        return MC_FAIL(err, MC_ERR_NOMEM, "sae: out of memory for a batch of %lld", (long long)B);
    }
    s->cap_batch = B;
    return MC_OK;
}

/* "a is better than b": larger value, ties to the smaller index (a total order). */
static inline bool better(float va, int32_t ia, float vb, int32_t ib) {
    return va > vb || (va == vb && ia < ib);
}

/* Top-kk of row[cand] (cand == NULL: all m) into idx/val sorted best first, using a min-heap
 * on "better" (root = the worst kept). ncand >= kk. */
static void topk_row(const float *row, const int32_t *cand, int64_t ncand, int kk, int32_t *idx,
                     float *val) {
    int hn = 0;
    for (int64_t t = 0; t < ncand; t++) {
        int32_t j = cand ? cand[t] : (int32_t)t;
        float v = row[j];
        if (hn == kk) {
            if (!better(v, j, val[0], idx[0])) continue;
            /* replace the root, sift down */
            int p = 0;
            for (;;) {
                int l = 2 * p + 1, r = l + 1, w = p;
                float wv = v;
                int32_t wi = j;
                if (l < hn && better(wv, wi, val[l], idx[l])) {
                    w = l;
                    wv = val[l];
                    wi = idx[l];
                }
                if (r < hn && better(wv, wi, val[r], idx[r])) {
                    w = r;
                }
                if (w == p) break;
                val[p] = val[w];
                idx[p] = idx[w];
                p = w;
            }
            val[p] = v;
            idx[p] = j;
        } else {
            int p = hn++;
            while (p > 0) {
                int q = (p - 1) / 2;
                if (!better(val[q], idx[q], v, j)) break;
                val[p] = val[q];
                idx[p] = idx[q];
                p = q;
            }
            val[p] = v;
            idx[p] = j;
        }
    }
    /* Heap-sort out: repeatedly move the worst to the end -> best first. */
    for (int end = hn - 1; end > 0; end--) {
        float tv = val[0];
        int32_t ti = idx[0];
        float v = val[end];
        int32_t j = idx[end];
        int p = 0;
        for (;;) {
            int l = 2 * p + 1, r = l + 1, w = p;
            float wv = v;
            int32_t wi = j;
            if (l < end && better(wv, wi, val[l], idx[l])) {
                w = l;
                wv = val[l];
                wi = idx[l];
            }
            if (r < end && better(wv, wi, val[r], idx[r])) {
                w = r;
            }
            if (w == p) break;
            val[p] = val[w];
            idx[p] = idx[w];
            p = w;
        }
        val[p] = v;
        idx[p] = j;
        val[end] = tv;
        idx[end] = ti;
    }
}

/* topk_row over all m entries of a wide row, same result: the k-th largest of the 16-value block
 * maxima, tau, is a lower bound of the k-th largest value (k blocks hold a value >= tau), so only
 * values >= tau can be kept; the heap then runs over those few candidates (in index order, so
 * ties break as before). The block maxima ignore NaN; a row that yields fewer than k candidates
 * or too few blocks takes topk_row's full scan. bm: m / 16 floats, cand: m int32. */
static void topk_wide(const float *row, int64_t m, int k, float *bm, int32_t *cand, int32_t *idx,
                      float *val) {
    const int64_t nb = m / TOPK_BLOCK;
    if (nb < 2 * (int64_t)k) {
        topk_row(row, NULL, m, k, idx, val);
        return;
    }
    for (int64_t b = 0; b < nb; b++) {
        const float *x = row + b * TOPK_BLOCK;
        float mx = -INFINITY;
        for (int u = 0; u < TOPK_BLOCK; u++) mx = x[u] > mx ? x[u] : mx;
        bm[b] = mx;
    }
    float *sel = bm + nb; /* a copy the selection may reorder */
    memcpy(sel, bm, (size_t)nb * sizeof *sel);
    const float tau = mc_select_kth(sel, nb, nb - k); /* the k-th largest */
    int64_t nc = 0;
    if (tau > -INFINITY) {
        for (int64_t b = 0; b < nb; b++)
            if (bm[b] >= tau)
                for (int u = 0; u < TOPK_BLOCK; u++)
                    if (row[b * TOPK_BLOCK + u] >= tau) cand[nc++] = (int32_t)(b * TOPK_BLOCK + u);
        for (int64_t j = nb * TOPK_BLOCK; j < m; j++)
            if (row[j] >= tau) cand[nc++] = (int32_t)j;
    }
    if (nc >= k)
        topk_row(row, cand, nc, k, idx, val);
    else
        topk_row(row, NULL, m, k, idx, val);
}

void mc_sae_encode(mc_sae *s, const float *acts, int64_t rows, int32_t *idx, float *val) {
    const int64_t n = s->cfg.n, m = s->cfg.m, C = s->cfg.chunk_rows;
    const int k = s->cfg.k;
    float *x = s->enc_x, *pre = s->enc_pre; /* allocated by mc_sae_create */
    for (int64_t a = 0; a < rows; a += C) {
        int64_t len = a + C < rows ? C : rows - a;
        for (int64_t r = 0; r < len; r++)
            for (int64_t i = 0; i < n; i++) x[r * n + i] = acts[(a + r) * n + i] - s->b_pre[i];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)len, (int)m, (int)n, 1.0f, x,
                    (int)n, s->w_enc, (int)n, 0.0f, pre, (int)m);
        for (int64_t r = 0; r < len; r++) {
            float *pr = pre + r * m;
            for (int64_t j = 0; j < m; j++) pr[j] += s->b_enc[j];
            topk_wide(pr, m, k, s->enc_bm, s->enc_cand, idx + (a + r) * k, val + (a + r) * k);
            for (int t = 0; t < k; t++) val[(a + r) * k + t] = fmaxf(val[(a + r) * k + t], 0.0f);
        }
    }
}

enum { DO_GRAD = 1, DO_STATS = 2 };

static mc_status sae_pass(const mc_comm *c, mc_sae *s, int64_t B, const float *acts, int mode,
                          mc_sae_stats *st, mc_error *err) {
    const mc_sae_config *cfg = &s->cfg;
    const int64_t n = cfg->n, m = cfg->m, C = cfg->chunk_rows;
    const int k = cfg->k;
    if (B < 1) return MC_FAIL(err, MC_ERR_ARG, "sae: empty batch");
    /* Buffers agreed on before any collective, so no rank is left alone in one. */
    MC_TRY(mc_comm_agree(c, ensure_work(s, B, err), err));
    int64_t c0, c1, r0, r1;
    mc_train_chunk_share(B, C, c->rank, c->size, &c0, &c1, &r0, &r1);

    /* Dead latents as of the start of this step. */
    int64_t ndead = 0;
    for (int64_t j = 0; j < m; j++)
        if (s->since_fire[j] >= cfg->dead_samples) s->dead_list[ndead++] = (int32_t)j;
    const int kaux = cfg->aux_coef > 0 ? (int)(ndead < cfg->k_aux ? ndead : cfg->k_aux) : 0;

    /* Dense encoder on local chunks, then the top-k and AuxK selections per row. */
    for (int64_t ch = c0; ch < c1; ch++) {
        int64_t a = ch * C, len = a + C < B ? C : B - a;
        float *x = s->xloc + (a - r0) * n;
        const float *ac = acts + (a - r0) * n;
        for (int64_t r = 0; r < len; r++)
            for (int64_t i = 0; i < n; i++) x[r * n + i] = ac[r * n + i] - s->b_pre[i];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)len, (int)m, (int)n, 1.0f, x,
                    (int)n, s->w_enc, (int)n, 0.0f, s->pre, (int)m);
        for (int64_t r = 0; r < len; r++) {
            float *pr = s->pre + r * m;
            for (int64_t j = 0; j < m; j++) pr[j] += s->b_enc[j];
            int32_t *ix = s->idx_all + (a + r) * k;
            float *vx = s->val_all + (a + r) * k;
            topk_wide(pr, m, k, s->enc_bm, s->enc_cand, ix, vx);
            for (int t = 0; t < k; t++) vx[t] = fmaxf(vx[t], 0.0f);
            if (kaux > 0) {
                int32_t *ia = s->aidx_all + (a + r) * kaux;
                float *va = s->aval_all + (a + r) * kaux;
                topk_row(pr, s->dead_list, ndead, kaux, ia, va);
                for (int t = 0; t < kaux; t++) va[t] = fmaxf(va[t], 0.0f);
            }
        }
    }
    /* Inputs and codes of the whole batch to every rank. */
    memcpy(s->a_all + r0 * n, acts, (size_t)((r1 - r0) * n) * sizeof(float));
    MC_TRY(
        mc_train_gather_rows(c, B, C, s->a_all + r0 * n, s->a_all, (size_t)n * sizeof(float), err));
    MC_TRY(mc_train_gather_rows(c, B, C, s->idx_all + r0 * k, s->idx_all,
                                (size_t)k * sizeof(int32_t), err));
    MC_TRY(mc_train_gather_rows(c, B, C, s->val_all + r0 * k, s->val_all, (size_t)k * sizeof(float),
                                err));
    if (kaux > 0) {
        MC_TRY(mc_train_gather_rows(c, B, C, s->aidx_all + r0 * kaux, s->aidx_all,
                                    (size_t)kaux * sizeof(int32_t), err));
        MC_TRY(mc_train_gather_rows(c, B, C, s->aval_all + r0 * kaux, s->aval_all,
                                    (size_t)kaux * sizeof(float), err));
    }

    /* From here on: every rank, whole batch, global row order. */
    double *mean = s->mean;
    memset(mean, 0, (size_t)n * sizeof(double));
    for (int64_t r = 0; r < B; r++)
        for (int64_t i = 0; i < n; i++) mean[i] += s->a_all[r * n + i];
    for (int64_t i = 0; i < n; i++) mean[i] /= (double)B;
    double tv = 0, sse = 0, l0 = 0;
    for (int64_t r = 0; r < B; r++) {
        const float *ar = s->a_all + r * n;
        for (int64_t i = 0; i < n; i++) tv += (ar[i] - mean[i]) * (ar[i] - mean[i]);
    }
    const double tv_den = tv > 0 ? tv : DBL_MIN;
    /* Decode: a_hat = b_pre + sum f_j d_j; e = a - a_hat; and, while the sample's k atoms are
     * still in cache, the dots e . d_j that the encoder gradient needs. */
    for (int64_t r = 0; r < B; r++) {
        float *er = s->e_all + r * n;
        const float *ar = s->a_all + r * n;
        const int32_t *ix = s->idx_all + r * k;
        const float *vx = s->val_all + r * k;
        memcpy(er, s->b_pre, (size_t)n * sizeof(float));
        for (int t = 0; t < k; t++) {
            if (vx[t] <= 0) continue;
            l0 += 1;
            cblas_saxpy((int)n, vx[t], s->w_dec + (int64_t)ix[t] * n, 1, er, 1);
        }
        for (int64_t i = 0; i < n; i++) {
            er[i] = ar[i] - er[i];
            sse += (double)er[i] * er[i];
        }
        float *gd = s->dot_main + r * k;
        for (int t = 0; t < k; t++)
            gd[t] = vx[t] > 0 ? cblas_sdot((int)n, er, 1, s->w_dec + (int64_t)ix[t] * n, 1) : 0.0f;
    }
    double fvu = sse / tv_den;
    double auxk = 0, tve_den = 1;
    if (kaux > 0) {
        /* AuxK: reconstruct the residual from the dead latents (no b_pre: e has none).
         * r = e_hat - e is kept for the gradient, with its dots r . d_j. */
        memset(mean, 0, (size_t)n * sizeof(double));
        for (int64_t r = 0; r < B; r++)
            for (int64_t i = 0; i < n; i++) mean[i] += s->e_all[r * n + i];
        for (int64_t i = 0; i < n; i++) mean[i] /= (double)B;
        double tve = 0, num = 0;
        for (int64_t r = 0; r < B; r++) {
            const float *er = s->e_all + r * n;
            float *rr = s->r_aux + r * n;
            const int32_t *ia = s->aidx_all + r * kaux;
            const float *va = s->aval_all + r * kaux;
            memset(rr, 0, (size_t)n * sizeof(float));
            for (int t = 0; t < kaux; t++)
                if (va[t] > 0) cblas_saxpy((int)n, va[t], s->w_dec + (int64_t)ia[t] * n, 1, rr, 1);
            for (int64_t i = 0; i < n; i++) {
                tve += (er[i] - mean[i]) * (er[i] - mean[i]);
                rr[i] = rr[i] - er[i];
                num += (double)rr[i] * rr[i];
            }
            float *ga = s->dot_aux + r * kaux;
            for (int t = 0; t < kaux; t++)
                ga[t] =
                    va[t] > 0 ? cblas_sdot((int)n, rr, 1, s->w_dec + (int64_t)ia[t] * n, 1) : 0.0f;
        }
        tve_den = tve > 0 ? tve : DBL_MIN;
        auxk = num / tve_den;
    }

    if (mode & DO_GRAD) {
        /* dL/da_hat_s = dmain e_s (main) and dL/de_hat_s = daux r_s (AuxK). Per active pair
         * (s, j) with code value f: grad of the code g = delta_s . d_j; then
         *   dW_dec[j] += f delta_s,  dW_enc[j] += g x_s,  db_enc[j] += g,
         *   db_pre += sum_s delta_s(main) - W_enc^T db_enc.
         * The pairs are visited latent by latent (a counting sort, stable in sample order), so
         * each gradient row stays in cache while it accumulates. */
        const float dmain = (float)(-2.0 / tv_den);
        const float daux = (float)(2.0 * cfg->aux_coef / tve_den);
        memset(s->grad, 0, s->np * sizeof(float));
        int64_t *start = s->lat_start; /* m + 1 */
        memset(start, 0, (size_t)(m + 1) * sizeof(int64_t));
        for (int64_t r = 0; r < B; r++) {
            for (int t = 0; t < k; t++)
                if (s->val_all[r * k + t] > 0) start[s->idx_all[r * k + t] + 1]++;
            for (int t = 0; t < kaux; t++)
                if (s->aval_all[r * kaux + t] > 0) start[s->aidx_all[r * kaux + t] + 1]++;
        }
        for (int64_t j = 0; j < m; j++) start[j + 1] += start[j];
        int64_t *fill = s->last_fire; /* reused as the fill cursor */
        for (int64_t j = 0; j < m; j++) fill[j] = start[j];
        for (int64_t r = 0; r < B; r++) {
            for (int t = 0; t < k; t++) {
                float f = s->val_all[r * k + t];
                if (f <= 0) continue;
                int64_t q = fill[s->idx_all[r * k + t]]++;
                s->ent_row[q] = (int32_t)r;
                s->ent_aux[q] = 0;
                s->ent_f[q] = f * dmain;
                s->ent_g[q] = dmain * s->dot_main[r * k + t];
            }
            for (int t = 0; t < kaux; t++) {
                float z = s->aval_all[r * kaux + t];
                if (z <= 0) continue;
                int64_t q = fill[s->aidx_all[r * kaux + t]]++;
                s->ent_row[q] = (int32_t)r;
                s->ent_aux[q] = 1;
                s->ent_f[q] = z * daux;
                s->ent_g[q] = daux * s->dot_aux[r * kaux + t];
            }
        }
        /* x = a - b_pre for the whole batch (the same float values as the local encoder input). */
        for (int64_t r = 0; r < B; r++)
            for (int64_t i = 0; i < n; i++) s->x_all[r * n + i] = s->a_all[r * n + i] - s->b_pre[i];
        for (int64_t j = 0; j < m; j++) {
            if (start[j] == start[j + 1]) continue;
            float *gdj = s->g_dec + j * n, *gej = s->g_enc + j * n;
            float gb = 0;
            for (int64_t q = start[j]; q < start[j + 1]; q++) {
                int64_t r = s->ent_row[q];
                const float *vec = s->ent_aux[q] ? s->r_aux + r * n : s->e_all + r * n;
                cblas_saxpy((int)n, s->ent_f[q], vec, 1, gdj, 1);
                cblas_saxpy((int)n, s->ent_g[q], s->x_all + r * n, 1, gej, 1);
                gb += s->ent_g[q];
            }
            s->g_benc[j] = gb;
            /* Keep atoms unit-norm: drop the gradient component along the atom. */
            const float *dj = s->w_dec + j * n;
            double dot = 0;
            for (int64_t i = 0; i < n; i++) dot += (double)gdj[i] * dj[i];
            for (int64_t i = 0; i < n; i++) gdj[i] = (float)(gdj[i] - dot * dj[i]);
        }
        /* b_pre: direct path dmain * sum_s e_s, encoder path -W_enc^T db_enc. */
        for (int64_t i = 0; i < n; i++) {
            double acc = 0;
            for (int64_t r = 0; r < B; r++) acc += s->e_all[r * n + i];
            s->g_bpre[i] = (float)(dmain * acc);
        }
        cblas_sgemv(CblasRowMajor, CblasTrans, (int)m, (int)n, -1.0f, s->w_enc, (int)n, s->g_benc,
                    1, 1.0f, s->g_bpre, 1);
    }
    if (mode & DO_STATS) {
        for (int64_t j = 0; j < m; j++) s->last_fire[j] = -1;
        for (int64_t r = 0; r < B; r++)
            for (int t = 0; t < k; t++)
                if (s->val_all[r * k + t] > 0) s->last_fire[s->idx_all[r * k + t]] = r;
        for (int64_t j = 0; j < m; j++)
            s->since_fire[j] =
                s->last_fire[j] >= 0 ? B - 1 - s->last_fire[j] : s->since_fire[j] + B;
    }
    double loss = fvu + cfg->aux_coef * auxk;
    if (st) {
        st->loss = (float)loss;
        st->fvu = (float)fvu;
        st->auxk = (float)auxk;
        st->l0 = (float)(l0 / (double)B);
        st->dead_frac = (float)((double)ndead / (double)m);
    }
    if (!isfinite(loss))
        return MC_FAIL(err, MC_ERR_NUMERIC, "sae: the loss is not finite (%g)", loss);
    return MC_OK;
}

mc_status mc_sae_loss_grad(const mc_comm *c, mc_sae *s, int64_t batch, const float *acts,
                           bool update_stats, mc_sae_stats *st, mc_error *err) {
    return sae_pass(c, s, batch, acts, DO_GRAD | (update_stats ? DO_STATS : 0), st, err);
}

mc_status mc_sae_eval(const mc_comm *c, mc_sae *s, int64_t batch, const float *acts,
                      mc_sae_stats *st, mc_error *err) {
    return sae_pass(c, s, batch, acts, 0, st, err);
}

void mc_sae_apply(mc_sae *s) {
    mc_adam_update(&s->adam, s->params, s->grad);
    normalize_atoms(s->w_dec, s->cfg.m, s->cfg.n);
}

mc_status mc_sae_train(const mc_comm *c, mc_sae *s, int64_t n_samples, mc_sae_fetch_fn fetch,
                       void *user, mc_train_pos *pos, mc_train_curve *curve,
                       mc_train_step_hook hook, void *hook_user, mc_error *err) {
    const mc_sae_config *cfg = &s->cfg;
    if (n_samples < 1) return MC_FAIL(err, MC_ERR_ARG, "sae: no training samples");
    const int64_t B = n_samples < cfg->batch_size ? n_samples : cfg->batch_size;
    const int64_t steps = n_samples / B;
    if (!s->order || s->order_n != n_samples) {
        free(s->order);
        s->order = mc_alloc_array((size_t)n_samples, sizeof(int64_t));
        s->order_epoch = -1;
        s->order_n = n_samples;
    }
    mc_status st = s->order ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "sae: out of memory");
    MC_TRY(mc_comm_agree(c, st, err));
    if (pos->global_step == 0 && pos->epoch == 0 && pos->batch_in_epoch == 0) {
        /* b_pre: geometric median of the first median_samples of epoch 0's order. */
        int64_t nm = cfg->median_samples < n_samples ? cfg->median_samples : n_samples;
        if (nm < 1) nm = 1;
        mc_train_epoch_order(cfg->seed, 0, n_samples, cfg->shuffle_block, s->order);
        s->order_epoch = 0;
        int64_t c0, c1, r0, r1;
        mc_train_chunk_share(nm, cfg->chunk_rows, c->rank, c->size, &c0, &c1, &r0, &r1);
        float *xs = mc_train_falloc((size_t)(nm * cfg->n));
        mc_status fs = !xs ? MC_FAIL(err, MC_ERR_NOMEM, "sae: out of memory for the median sample")
                       : r1 > r0 ? fetch(user, s->order + r0, r1 - r0, xs + r0 * cfg->n, err)
                                 : MC_OK;
        st = mc_comm_agree(c, fs, err);
        if (st == MC_OK)
            st = mc_train_gather_rows(c, nm, cfg->chunk_rows, xs + r0 * cfg->n, xs,
                                      (size_t)cfg->n * sizeof(float), err);
        if (st == MC_OK) st = mc_comm_agree(c, mc_sae_init_bpre(s, xs, nm, err), err);
        free(xs);
        if (st != MC_OK) return st;
    }
    int64_t c0, c1, r0, r1;
    mc_train_chunk_share(B, cfg->chunk_rows, c->rank, c->size, &c0, &c1, &r0, &r1);
    const int64_t rows = r1 - r0;
    float *acts = mc_train_falloc((size_t)(rows * cfg->n));
    st = mc_comm_agree(c, acts ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "sae: out of memory"), err);
    while (st == MC_OK && pos->epoch < cfg->epochs) {
        if (s->order_epoch != pos->epoch) {
            mc_train_epoch_order(cfg->seed, pos->epoch, n_samples, cfg->shuffle_block, s->order);
            s->order_epoch = pos->epoch;
        }
        while (st == MC_OK && pos->batch_in_epoch < steps) {
            const int64_t *idx = s->order + pos->batch_in_epoch * B + r0;
            mc_status fs = rows > 0 ? fetch(user, idx, rows, acts, err) : MC_OK;
            st = mc_comm_agree(c, fs, err);
            if (st != MC_OK) break;
            mc_sae_stats ss;
            st = mc_sae_loss_grad(c, s, B, acts, true, &ss, err);
            if (st != MC_OK) break;
            mc_sae_apply(s);
            pos->batch_in_epoch++;
            pos->global_step++;
            if (curve) st = mc_train_curve_push(curve, ss.loss, ss.fvu, ss.auxk, ss.dead_frac, err);
            if (st == MC_OK && hook) st = hook(hook_user, pos, err);
        }
        if (st == MC_OK) {
            pos->epoch++;
            pos->batch_in_epoch = 0;
        }
    }
    free(acts);
    return st;
}
