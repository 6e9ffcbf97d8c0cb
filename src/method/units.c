/* units.c - E_n weights, unit sets and their embeddings (units.h). */
#include "method/units.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/log.h"
#include "miclip/miclip.h"
#include "method/acts.h"
#include "method/training.h"
#include "miclip/train.h"

void mc_encoder_weights_free(mc_encoder_weights *w) {
    free(w->w);
    memset(w, 0, sizeof *w);
}

mc_status mc_encoder_weights_find(const mc_comm *c, const mc_config *cfg, const mc_train_data *td,
                                  int64_t seed, const char *layer, int variant,
                                  mc_encoder_weights *w, mc_error *err) {
    memset(w, 0, sizeof *w);
    mc_run_paths p;
    MC_TRY(mc_align_paths(cfg, td->extract_key, seed, layer, variant, &p, err));
    mc_strlcpy(w->key, p.key, sizeof w->key);
    mc_strlcpy(w->path, p.store, sizeof w->path);
    bool complete = false;
    MC_TRY(mc_store_peek_complete(c, p.store, &complete, err));
    if (!complete)
        return MC_FAIL(err, MC_ERR_ARG,
                       "no trained E_n for seed %lld, layer '%s', variant %s (%s); run the "
                       "align stage first",
                       (long long)seed, layer, mc_variant_name(variant), p.store);
    return MC_OK;
}

mc_status mc_encoder_weights_read(const mc_comm *c, mc_encoder_weights *w, mc_error *err) {
    mc_store *st = NULL;
    MC_TRY(mc_store_open(c, w->path, MC_STORE_READ, &st, err));
    mc_store_dataset_info in;
    double scale = 0;
    mc_status s = mc_store_dataset_info_get(st, "W", &in, err);
    if (s == MC_OK && in.ndim != 2)
        s = MC_FAIL(err, MC_ERR_FORMAT, "%s: W is not a matrix", w->path);
    if (s == MC_OK) s = mc_store_get_attr_f64(st, "/", "logit_scale", &scale, err);
    if (s == MC_OK) {
        w->d = in.shape[0];
        w->n = in.shape[1];
        w->logit_scale = (float)scale;
        if (!(w->w = mc_alloc_array((size_t)(w->d * w->n), sizeof(float))))
            s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    s = mc_comm_agree(c, s, err);
    if (s == MC_OK) s = mc_store_read_rows(st, "W", MC_DTYPE_F32, 0, w->d, w->w, err);
    mc_store_close(&st, NULL);
    if (s != MC_OK) mc_encoder_weights_free(w);
    return s;
}

mc_status mc_encoder_weights_load(const mc_comm *c, const mc_config *cfg, const mc_train_data *td,
                                  int64_t seed, const char *layer, int variant,
                                  mc_encoder_weights *w, mc_error *err) {
    MC_TRY(mc_encoder_weights_find(c, cfg, td, seed, layer, variant, w, err));
    return mc_encoder_weights_read(c, w, err);
}

/* g_all (and g_class) of the INPUTS reading from the unit statistics of the training images. */
static mc_status unit_set_means(const mc_comm *c, const mc_config *cfg, const mc_train_data *td,
                                const char *layer, mc_sae *sae, bool tokens, mc_unit_set *u,
                                mc_error *err) {
    mc_unit_stats us;
    MC_TRY(mc_unit_stats_get(c, cfg, td, layer, sae, u->sae_key, tokens, &us, err));
    mc_status s = MC_OK;
    const int64_t U = us.n_units, C = us.n_classes;
    if (U != u->n_units)
        s = MC_FAIL(err, MC_ERR_SHAPE, "layer '%s': %lld units in the activations, %lld expected",
                    layer, (long long)U, (long long)u->n_units);
    if (s == MC_OK) {
        u->n_classes = C;
        u->class_names = td->class_names;
        u->g_all = mc_alloc_array((size_t)U, sizeof(double));
        if (u->inputs == MC_INPUTS_CLASS)
            u->g_class = mc_alloc_array((size_t)(C * U + 1), sizeof(double));
        if (!u->g_all || (u->inputs == MC_INPUTS_CLASS && !u->g_class))
            s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    for (int64_t i = 0; s == MC_OK && i < U; i++)
        u->g_all[i] = us.n_img ? us.sum[i] / (double)us.n_img : 0.0;
    for (int64_t cl = 0; s == MC_OK && u->g_class && cl < C; cl++)
        for (int64_t i = 0; i < U; i++)
            u->g_class[cl * U + i] =
                us.class_n[cl] ? us.class_sum[cl * U + i] / (double)us.class_n[cl] : NAN;
    mc_unit_stats_free(&us);
    return mc_comm_agree(c, s, err);
}

mc_status mc_unit_set_ident(const mc_config *cfg, const mc_train_data *td, int64_t seed, int kind,
                            mc_unit_set *u, mc_error *err) {
    memset(u, 0, sizeof *u);
    u->kind = kind;
    u->reading = kind == MC_UNIT_NEURON
                     ? (cfg->localize.neuron_unit == 1 ? MC_READ_INPUTS : MC_READ_PLAIN)
                     : (cfg->localize.sae_unit == 0 ? MC_READ_INPUTS : MC_READ_PLAIN);
    u->inputs = cfg->localize.sae_inputs == 1 ? MC_INPUTS_CLASS : MC_INPUTS_ALL;
    if (kind == MC_UNIT_NEURON) return MC_OK;
    mc_run_paths p;
    MC_TRY(mc_sae_paths(cfg, td->extract_key, seed, &p, err));
    mc_strlcpy(u->sae_key, p.key, sizeof u->sae_key);
    mc_strlcpy(u->sae_path, p.store, sizeof u->sae_path);
    return MC_OK;
}

mc_status mc_unit_set_find(const mc_comm *c, const mc_config *cfg, const mc_train_data *td,
                           int64_t seed, int kind, mc_unit_set *u, mc_error *err) {
    MC_TRY(mc_unit_set_ident(cfg, td, seed, kind, u, err));
    if (kind == MC_UNIT_NEURON) return MC_OK;
    bool complete = false;
    MC_TRY(mc_store_peek_complete(c, u->sae_path, &complete, err));
    if (!complete)
        return MC_FAIL(err, MC_ERR_ARG,
                       "no trained SAE for seed %lld on layer '%s' (%s); run the sae stage first",
                       (long long)seed, cfg->sae.layer, u->sae_path);
    return MC_OK;
}

mc_status mc_unit_set_open(const mc_comm *c, const mc_config *cfg, const mc_train_data *td,
                           int64_t seed, const char *layer, const mc_encoder_weights *w, int kind,
                           mc_unit_set *u, mc_error *err) {
    MC_TRY(mc_unit_set_find(c, cfg, td, seed, kind, u, err));
    if (kind == MC_UNIT_NEURON) {
        u->n_units = w->n;
        mc_status s = MC_OK;
        if (u->reading == MC_READ_INPUTS)
            s = unit_set_means(c, cfg, td, layer, NULL, false, u, err);
        return s;
    }
    mc_store *st = NULL;
    MC_TRY(mc_store_open(c, u->sae_path, MC_STORE_READ, &st, err));
    mc_store_dataset_info in;
    mc_status s = mc_store_dataset_info_get(st, "W_dec_T", &in, err);
    if (s == MC_OK && (in.ndim != 2 || in.shape[1] != w->n))
        s = MC_FAIL(err, MC_ERR_SHAPE, "%s: W_dec_T is not [m, %lld] (E_n's input width)",
                    u->sae_path, (long long)w->n);
    if (s == MC_OK) u->n_units = in.shape[0];
    s = mc_comm_agree(c, s, err);
    mc_store_close(&st, NULL);
    if (s == MC_OK && u->reading == MC_READ_INPUTS) {
        mc_sae *sae = NULL;
        s = mc_sae_load_store(c, cfg, u->sae_path, w->n, seed, &sae, err);
        if (s == MC_OK) {
            /* q = E_n(b_pre): the embedding every input's a_bar_i shares. */
            const float *b = mc_sae_b_pre(sae);
            u->q = mc_alloc_array((size_t)w->d, sizeof(float));
            if (!u->q) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
            for (int64_t k = 0; s == MC_OK && k < w->d; k++) {
                double acc = 0;
                for (int64_t j = 0; j < w->n; j++) acc += (double)w->w[k * w->n + j] * b[j];
                u->q[k] = (float)acc;
            }
            s = mc_comm_agree(c, s, err);
        }
        if (s == MC_OK)
            s = unit_set_means(c, cfg, td, layer, sae, cfg->sae.input == MC_SAE_INPUT_ALL, u, err);
        mc_sae_free(&sae);
    }
    if (s != MC_OK) mc_unit_set_free(u);
    return s;
}

void mc_unit_set_free(mc_unit_set *u) {
    free(u->g_all), free(u->g_class), free(u->q);
    u->g_all = u->g_class = NULL;
    u->q = NULL;
}

const char *mc_unit_reading_name(const mc_unit_set *u) {
    if (u->reading == MC_READ_PLAIN) return u->kind == MC_UNIT_NEURON ? "basis" : "atom";
    if (u->kind == MC_UNIT_NEURON)
        return u->inputs == MC_INPUTS_CLASS ? "activation (class)" : "activation (all)";
    return u->inputs == MC_INPUTS_CLASS ? "algorithm2 (class)" : "algorithm2 (all)";
}

void mc_unit_stats_free(mc_unit_stats *us) {
    free(us->sum), free(us->class_sum), free(us->class_n), free(us->fire_n), free(us->fire_sum);
    memset(us, 0, sizeof *us);
}

#define STATS_CHUNK 256

mc_status mc_sae_unit_values(mc_acts *a, mc_sae *sae, bool tokens, const int64_t *img, int64_t n,
                             float *out, int64_t *fire_n, double *fire_sum, mc_error *err) {
    const int64_t D = a->dim, T = tokens ? a->tokens : 1, m = mc_sae_get_config(sae)->m;
    const int kk = mc_sae_get_config(sae)->k;
    const int64_t rows = n * T;
    float *x = mc_alloc_array((size_t)(rows > 0 ? rows : 1), (size_t)D * sizeof(float));
    int32_t *idx = mc_alloc_array((size_t)(rows > 0 ? rows : 1), (size_t)kk * sizeof(int32_t));
    float *val = mc_alloc_array((size_t)(rows > 0 ? rows : 1), (size_t)kk * sizeof(float));
    double *acc = tokens ? mc_alloc_array((size_t)m, sizeof(double)) : NULL;
    mc_status s = MC_OK;
    if (!x || !idx || !val || (tokens && !acc))
        s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory for the SAE codes of %lld inputs",
                    (long long)rows);
    if (s == MC_OK && !tokens) s = mc_acts_vectors(a, img, n, x, err);
    for (int64_t r = 0; s == MC_OK && tokens && r < n; r++)
        for (int64_t t = 0; s == MC_OK && t < T; t++)
            s = mc_acts_token(a, img[r], t, x + (r * T + t) * D, err);
    if (s == MC_OK && rows > 0) mc_sae_encode(sae, x, rows, idx, val);
    for (int64_t r = 0; s == MC_OK && r < n; r++) {
        float *o = out + r * m;
        if (tokens)
            memset(acc, 0, (size_t)m * sizeof(double));
        else
            memset(o, 0, (size_t)m * sizeof(float));
        for (int64_t t = 0; t < T; t++)
            for (int q = 0; q < kk; q++) {
                const int64_t j = (r * T + t) * kk + q;
                const int32_t f = idx[j];
                const float v = val[j];
                if (tokens)
                    acc[f] += v;
                else
                    o[f] = v;
                if (v > 0 && fire_n) fire_n[f]++, fire_sum[f] += v;
            }
        for (int64_t f = 0; tokens && f < m; f++) o[f] = (float)(acc[f] / (double)T);
    }
    free(x), free(idx), free(val), free(acc);
    return s;
}

mc_status mc_unit_stats_compute(const mc_comm *c, const mc_train_data *td, const char *layer,
                                struct mc_sae *sae, bool tokens, mc_unit_stats *us, mc_error *err) {
    memset(us, 0, sizeof *us);
    mc_acts a;
    MC_TRY(mc_acts_open(c, td->st, layer, &a, err));
    const int64_t N = td->n_img, C = td->n_classes, D = a.dim;
    const int64_t U = sae ? mc_sae_get_config(sae)->m : D;
    us->n_units = U, us->n_classes = C;
    int32_t *labels = mc_alloc_array((size_t)(N > 0 ? N : 1), sizeof(int32_t));
    us->sum = mc_calloc_array((size_t)U, sizeof(double));
    us->class_sum = mc_calloc_array((size_t)(C * U + 1), sizeof(double));
    us->class_n = mc_calloc_array((size_t)C + 1, sizeof(int64_t));
    us->fire_n = mc_calloc_array((size_t)U, sizeof(int64_t));
    us->fire_sum = mc_calloc_array((size_t)U, sizeof(double));
    int64_t *img = mc_alloc_array(STATS_CHUNK, sizeof(int64_t));
    float *x = mc_alloc_array(STATS_CHUNK, (size_t)(sae ? U : D) * sizeof(float));
    mc_status s = MC_OK;
    if (!labels || !us->sum || !us->class_sum || !us->class_n || !us->fire_n || !us->fire_sum ||
        !img || !x)
        s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory for the statistics of %lld units",
                    (long long)U);
    s = mc_comm_agree(c, s, err);
    if (s == MC_OK)
        s = mc_store_read_rows(td->st, "images/labels", MC_DTYPE_I32, 0, N, labels, err);
    s = mc_comm_agree(c, s, err);
    /* Every rank sums every image in index order: the same doubles at any rank count. An SAE
     * feature's firing counts come from the codes themselves (per token for a token SAE). */
    for (int64_t i0 = 0; s == MC_OK && i0 < N;) {
        int64_t n = 0;
        for (; i0 < N && n < STATS_CHUNK; i0++)
            if (td->valid[i0]) img[n++] = i0;
        if (n == 0) break;
        s = sae ? mc_sae_unit_values(&a, sae, tokens, img, n, x, us->fire_n, us->fire_sum, err)
                : mc_acts_vectors(&a, img, n, x, err);
        if (s != MC_OK) break;
        for (int64_t r = 0; r < n; r++) {
            int32_t cl = labels[img[r]];
            bool in = cl >= 0 && cl < C;
            if (in) us->class_n[cl]++;
            us->n_img++;
            for (int64_t unit = 0; unit < U; unit++) {
                double v = x[r * U + unit];
                if (v == 0) continue;
                us->sum[unit] += v;
                if (in) us->class_sum[cl * U + unit] += v;
                if (!sae && v > 0) us->fire_n[unit]++, us->fire_sum[unit] += v;
            }
        }
    }
    free(labels), free(img), free(x);
    mc_acts_close(&a);
    s = mc_comm_agree(c, s, err);
    if (s != MC_OK) mc_unit_stats_free(us);
    return s;
}

void mc_normalize_rows_f(float *x, int64_t rows, int64_t d) {
    for (int64_t i = 0; i < rows; i++) {
        float *r = x + i * d;
        double ss = 0;
        for (int64_t k = 0; k < d; k++) ss += (double)r[k] * r[k];
        double nrm = sqrt(ss);
        if (nrm < 1e-12) nrm = 1e-12;
        for (int64_t k = 0; k < d; k++) r[k] = (float)(r[k] / nrm);
    }
}

mc_status mc_unit_embed(const mc_comm *c, const mc_unit_set *u, const mc_encoder_weights *w,
                        int64_t u0, int64_t u1, bool normalize, float *out, mc_error *err) {
    const int64_t n = w->n, d = w->d, rows = u1 - u0;
    if (u->kind == MC_UNIT_NEURON) {
        for (int64_t i = 0; i < rows; i++)
            for (int64_t k = 0; k < d; k++) out[i * d + k] = w->w[k * n + u0 + i];
        if (normalize) mc_normalize_rows_f(out, rows, d);
        return MC_OK;
    }
    mc_store *st = NULL;
    MC_TRY(mc_store_open(c, u->sae_path, MC_STORE_READ, &st, err));
    float *dec = mc_alloc_array((size_t)(rows > 0 ? rows : 1), (size_t)n * sizeof(float));
    mc_status s = mc_comm_agree(c, dec ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory"), err);
    if (s == MC_OK) s = mc_store_read_rows(st, "W_dec_T", MC_DTYPE_F32, u0, u1, dec, err);
    mc_store_close(&st, NULL);
    /* E_n W_dec[:, i] for fixed blocks of units: the same product whatever the rank count. */
    for (int64_t b = 0; s == MC_OK && b < rows; b += MC_UNIT_BLOCK) {
        int64_t len = rows - b < MC_UNIT_BLOCK ? rows - b : MC_UNIT_BLOCK;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)len, (int)d, (int)n, 1.0f,
                    dec + b * n, (int)n, w->w, (int)n, 0.0f, out + b * d, (int)d);
    }
    free(dec);
    if (s == MC_OK && normalize) mc_normalize_rows_f(out, rows, d);
    return s;
}

bool mc_scored_before(const mc_scored *a, const mc_scored *b) {
    return a->score > b->score || (a->score == b->score && a->index < b->index);
}

void mc_top_insert(mc_scored *top, int64_t *n, int64_t cap, float score, int32_t index) {
    mc_scored x = {score, index};
    if (*n == cap && !mc_scored_before(&x, &top[cap - 1])) return;
    int64_t i = *n < cap ? (*n)++ : cap - 1;
    while (i > 0 && mc_scored_before(&x, &top[i - 1])) {
        top[i] = top[i - 1];
        i--;
    }
    top[i] = x;
}
