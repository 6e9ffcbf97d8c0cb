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
#include "method/training.h"

void mc_encoder_weights_free(mc_encoder_weights *w) {
    free(w->w);
    memset(w, 0, sizeof *w);
}

mc_status mc_encoder_weights_load(const mc_comm *c, const mc_config *cfg, const mc_train_data *td,
                                  int64_t seed, const char *layer, int variant, mc_encoder_weights *w,
                                  mc_error *err) {
    memset(w, 0, sizeof *w);
    mc_run_paths p;
    MC_TRY(mc_align_paths(cfg, td->extract_key, seed, layer, variant, &p, err));
    mc_strlcpy(w->key, p.key, sizeof w->key);
    mc_strlcpy(w->path, p.store, sizeof w->path);
    bool complete = false;
    MC_TRY(mc_store_peek_complete(c, p.store, &complete, err));
    if (!complete)
        return MC_FAIL(err, MC_ERR_ARG, "no trained E_n for seed %lld, layer '%s', variant %s (%s); run the "
                       "align stage first", (long long)seed, layer, mc_variant_name(variant), p.store);
    mc_store *st = NULL;
    MC_TRY(mc_store_open(c, p.store, MC_STORE_READ, &st, err));
    mc_store_dataset_info in;
    double scale = 0;
    mc_status s = mc_store_dataset_info_get(st, "W", &in, err);
    if (s == MC_OK && in.ndim != 2) s = MC_FAIL(err, MC_ERR_FORMAT, "%s: W is not a matrix", p.store);
    if (s == MC_OK) s = mc_store_get_attr_f64(st, "/", "logit_scale", &scale, err);
    if (s == MC_OK) {
        w->d = in.shape[0];
        w->n = in.shape[1];
        w->logit_scale = (float)scale;
        if (!(w->w = mc_alloc_array((size_t)(w->d * w->n), sizeof(float)))) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    s = mc_comm_agree(c, s, err);
    if (s == MC_OK) s = mc_store_read_rows(st, "W", MC_DTYPE_F32, 0, w->d, w->w, err);
    mc_store_close(&st, NULL);
    if (s != MC_OK) mc_encoder_weights_free(w);
    return s;
}

mc_status mc_unit_set_open(const mc_comm *c, const mc_config *cfg, const mc_train_data *td, int64_t seed,
                           const mc_encoder_weights *w, int kind, mc_unit_set *u, mc_error *err) {
    memset(u, 0, sizeof *u);
    u->kind = kind;
    if (kind == MC_UNIT_NEURON) {
        u->n_units = w->n;
        return MC_OK;
    }
    mc_run_paths p;
    MC_TRY(mc_sae_paths(cfg, td->extract_key, seed, &p, err));
    mc_strlcpy(u->sae_key, p.key, sizeof u->sae_key);
    mc_strlcpy(u->sae_path, p.store, sizeof u->sae_path);
    bool complete = false;
    MC_TRY(mc_store_peek_complete(c, p.store, &complete, err));
    if (!complete)
        return MC_FAIL(err, MC_ERR_ARG, "no trained SAE for seed %lld on layer '%s' (%s); run the sae stage first",
                       (long long)seed, cfg->sae.layer, p.store);
    mc_store *st = NULL;
    MC_TRY(mc_store_open(c, p.store, MC_STORE_READ, &st, err));
    mc_store_dataset_info in;
    mc_status s = mc_store_dataset_info_get(st, "W_dec_T", &in, err);
    if (s == MC_OK && (in.ndim != 2 || in.shape[1] != w->n))
        s = MC_FAIL(err, MC_ERR_SHAPE, "%s: W_dec_T is not [m, %lld] (E_n's input width)", p.store, (long long)w->n);
    if (s == MC_OK) u->n_units = in.shape[0];
    s = mc_comm_agree(c, s, err);
    mc_store_close(&st, NULL);
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

mc_status mc_unit_embed(const mc_comm *c, const mc_unit_set *u, const mc_encoder_weights *w, int64_t u0,
                        int64_t u1, float *out, mc_error *err) {
    const int64_t n = w->n, d = w->d, rows = u1 - u0;
    if (u->kind == MC_UNIT_NEURON) {
        for (int64_t i = 0; i < rows; i++)
            for (int64_t k = 0; k < d; k++) out[i * d + k] = w->w[k * n + u0 + i];
        mc_normalize_rows_f(out, rows, d);
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
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)len, (int)d, (int)n, 1.0f, dec + b * n,
                    (int)n, w->w, (int)n, 0.0f, out + b * d, (int)d);
    }
    free(dec);
    if (s == MC_OK) mc_normalize_rows_f(out, rows, d);
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
