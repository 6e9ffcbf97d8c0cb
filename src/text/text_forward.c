/* text_forward.c - the text encoders' forward (the model's, model.h, then MPNet's Normalize
 * module), tokenizing, and the embedding API (templates, ensembles, zero-shot). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/checked.h"
#include "miclip/log.h"
#include "miclip/nn.h"
#include "text_internal.h"

#include "text_encoder_int.h"

mc_status mc_text_encoder_forward(mc_text_encoder *e, const int32_t *ids, const int32_t *lens,
                                  size_t n, float *out, mc_error *err) {
    const int32_t eos = e->clip ? mc_clip_tok_eos(e->clip) : -1;
    MC_TRY(mc_model_forward_tokens(e->m, ids, lens, n, e->ctx, eos, out, err));
    /* sentence-transformers' Normalize module, row by row after the pooling */
    if (e->normalize) mc_l2_normalize_rows(out, (int64_t)n, e->dim);
    return MC_OK;
}

mc_status mc_text_encoder_tokenize(mc_text_encoder *e, const char *const *texts, size_t n,
                                   int32_t *ids, int32_t *lens, mc_error *err) {
    const int ctx = e->ctx;
    for (size_t i = 0; i < n; i++) {
        int32_t *row = ids + (int64_t)i * ctx;
        int cnt = 0;
        mc_status s;
        if (e->clip) {
            s = mc_clip_tok_encode(e->clip, texts[i], strlen(texts[i]), row, &cnt, err);
        } else {
            s = mc_wp_encode(e->wp, texts[i], strlen(texts[i]), row, ctx, &cnt, err);
            for (int k = cnt; k < ctx; k++) row[k] = 1; /* <pad> */
        }
        if (s != MC_OK) {
            mc_error_prefix(err, "text %zu", i);
            return s;
        }
        if (lens) lens[i] = cnt;
    }
    return MC_OK;
}

/* ---- embedding API ------------------------------------------------------------------------ */

void mc_l2_normalize_rows(float *x, int64_t rows, int64_t dim) {
    for (int64_t r = 0; r < rows; r++) {
        float *v = x + r * dim, ss = 0.0f;
        for (int64_t c = 0; c < dim; c++) ss += v[c] * v[c];
        float nrm = sqrtf(ss);
        if (nrm < 1e-12f) nrm = 1e-12f;
        for (int64_t c = 0; c < dim; c++) v[c] /= nrm;
    }
}

mc_status mc_text_apply_template(const char *tmpl, const char *text, char **out, mc_error *err) {
    *out = NULL;
    if (!tmpl) {
        *out = mc_strdup(text);
        return *out ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    size_t tl = strlen(tmpl), xl = strlen(text), holes = 0;
    for (size_t i = 0; i < tl; i++) {
        if (tmpl[i] == '{' && i + 1 < tl && tmpl[i + 1] == '}') {
            holes++;
            i++;
        } else if ((tmpl[i] == '{' || tmpl[i] == '}') && i + 1 < tl && tmpl[i + 1] == tmpl[i])
            i++;
        else if (tmpl[i] == '{' || tmpl[i] == '}')
            return MC_FAIL(err, MC_ERR_ARG,
                           "template \"%s\": a lone '%c' at offset %zu (use \"{}\" for the text, "
                           "\"{{\" and \"}}\" for braces)",
                           tmpl, tmpl[i], i);
    }
    if (holes == 0)
        return MC_FAIL(err, MC_ERR_ARG, "template \"%s\" has no \"{}\" for the text", tmpl);
    size_t cap;
    if (!mc_size_mul(holes, xl, &cap) || !mc_size_add(cap, tl + 1, &cap))
        return MC_FAIL(err, MC_ERR_NOMEM, "template too long");
    char *s = malloc(cap), *w = s;
    if (!s) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < tl; i++) {
        if (tmpl[i] == '{' && tmpl[i + 1] == '}') {
            memcpy(w, text, xl);
            w += xl;
            i++;
        } else if ((tmpl[i] == '{' || tmpl[i] == '}') && tmpl[i + 1] == tmpl[i]) {
            *w++ = tmpl[i++];
        } else {
            *w++ = tmpl[i];
        }
    }
    *w = '\0';
    *out = s;
    return MC_OK;
}

#define MC_EMBED_BATCH 256

mc_status mc_text_embed(mc_text_encoder *e, const char *const *texts, size_t n, const char *tmpl,
                        bool normalize, float *out, mc_error *err) {
    const int ctx = e->ctx, dim = mc_text_encoder_dim(e);
    int32_t *ids = mc_alloc_array((size_t)MC_EMBED_BATCH * (size_t)ctx, sizeof *ids);
    int32_t *lens = mc_alloc_array(MC_EMBED_BATCH, sizeof *lens);
    char **filled = calloc(MC_EMBED_BATCH, sizeof *filled);
    mc_status s = MC_OK;
    if (!ids || !lens || !filled) {
        s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        goto done;
    }
    mc_progress pr;
    mc_progress_start(&pr, "embed text", n > 2000 ? (int64_t)n : 0, "txt");
    for (size_t b0 = 0; b0 < n; b0 += MC_EMBED_BATCH) {
        size_t m = n - b0 < MC_EMBED_BATCH ? n - b0 : MC_EMBED_BATCH;
        for (size_t i = 0; i < m; i++) {
            free(filled[i]);
            filled[i] = NULL;
            if ((s = mc_text_apply_template(tmpl, texts[b0 + i], &filled[i], err)) != MC_OK)
                goto done;
        }
        if ((s = mc_text_encoder_tokenize(e, (const char *const *)filled, m, ids, lens, err)) !=
            MC_OK) {
            mc_error_prefix(err, "batch at %zu", b0);
            goto done;
        }
        if ((s = mc_text_encoder_forward(e, ids, lens, m, out + (int64_t)b0 * dim, err)) != MC_OK)
            goto done;
        if (n > 2000) mc_progress_update(&pr, (int64_t)(b0 + m));
    }
    if (n > 2000) mc_progress_finish(&pr);
    if (normalize) mc_l2_normalize_rows(out, (int64_t)n, dim);
done:
    if (filled)
        for (size_t i = 0; i < MC_EMBED_BATCH; i++) free(filled[i]);
    free(filled);
    free(ids);
    free(lens);
    return s;
}

mc_status mc_text_embed_ensemble(mc_text_encoder *e, const char *const *texts, size_t n,
                                 const char *const *templates, size_t n_templates, float *out,
                                 mc_error *err) {
    if (n_templates == 0) return MC_FAIL(err, MC_ERR_ARG, "template ensemble: no templates");
    const int64_t dim = mc_text_encoder_dim(e);
    float *tmp = mc_alloc_array(n ? n * (size_t)dim : 1, sizeof *tmp);
    if (!tmp) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    memset(out, 0, n * (size_t)dim * sizeof *out);
    mc_status s = MC_OK;
    for (size_t k = 0; k < n_templates && s == MC_OK; k++) {
        if ((s = mc_text_embed(e, texts, n, templates[k], true, tmp, err)) != MC_OK) break;
        for (size_t i = 0; i < n * (size_t)dim; i++) out[i] += tmp[i];
    }
    /* CLIP's notebook: mean of the normalised embeddings, then normalise (dividing by the
     * count first changes nothing after the normalisation, but keeps the reference order) */
    for (size_t i = 0; s == MC_OK && i < n * (size_t)dim; i++) out[i] /= (float)n_templates;
    if (s == MC_OK) mc_l2_normalize_rows(out, (int64_t)n, dim);
    free(tmp);
    return s;
}

void mc_zeroshot_classify(const float *class_emb, int64_t n_classes, const float *img_emb,
                          int64_t n_img, int64_t dim, int32_t *pred, float *scores) {
    for (int64_t i = 0; i < n_img; i++) {
        const float *v = img_emb + i * dim;
        double vn = 0;
        for (int64_t c = 0; c < dim; c++) vn += (double)v[c] * v[c];
        vn = sqrt(vn);
        int32_t best = 0;
        double best_s = -INFINITY;
        for (int64_t k = 0; k < n_classes; k++) {
            const float *u = class_emb + k * dim;
            double dot = 0, un = 0;
            for (int64_t c = 0; c < dim; c++) {
                dot += (double)u[c] * v[c];
                un += (double)u[c] * u[c];
            }
            double sc = (vn > 0 && un > 0) ? dot / (vn * sqrt(un)) : 0.0;
            if (scores) scores[i * n_classes + k] = (float)sc;
            if (sc > best_s) { /* strict: the first index wins ties, as torch.argmax */
                best_s = sc;
                best = (int32_t)k;
            }
        }
        pred[i] = best;
    }
}
