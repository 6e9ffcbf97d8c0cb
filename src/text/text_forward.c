/* text_forward.c - forward passes of the text encoders on packed rows, and the embedding API
 * (templates, ensembles, zero-shot). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/checked.h"
#include "miclip/log.h"
#include "miclip/model_desc.h"
#include "miclip/nn.h"
#include "miclip/nn_text.h"
#include "text_internal.h"

#include "text_encoder_int.h"

#define MC_TEXT_CHUNK_TOKENS 16384 /* packed tokens per forward chunk */

static mc_status arena_reserve(mc_text_encoder *e, size_t floats, size_t nseq, mc_error *err) {
    if (floats > e->arena_floats) {
        float *p = realloc(e->arena, floats * sizeof(float));
        if (!p)
            return MC_FAIL(err, MC_ERR_NOMEM,
                           "text encoder: cannot allocate %zu floats of activations", floats);
        e->arena = p;
        e->arena_floats = floats;
    }
    if (nseq > e->off_cap) {
        int64_t *a = realloc(e->off, nseq * sizeof *a);
        if (a) e->off = a;
        int64_t *b = realloc(e->len, nseq * sizeof *b);
        if (b) e->len = b;
        if (!a || !b) return MC_FAIL(err, MC_ERR_NOMEM, "text encoder: out of memory");
        e->off_cap = nseq;
    }
    return MC_OK;
}

/* MPNet relative position bucket of d = query - key (specs 6.3; HF relative_position_bucket
 * with num_buckets 32, max_distance 128). */
static int64_t mpnet_bucket(int64_t d, int64_t num_buckets) {
    int64_t half = num_buckets / 2, ret = d < 0 ? half : 0;
    int64_t n = d < 0 ? -d : d, max_exact = half / 2;
    if (n < max_exact) return ret + n;
    int64_t v = max_exact + (int64_t)(log((double)n / (double)max_exact) /
                                      log(128.0 / (double)max_exact) * (double)(half - max_exact));
    return ret + (v < half - 1 ? v : half - 1);
}

/* One chunk: rows [0, n) already validated; sequence lengths in e->len, the first row of each
 * sequence's own tokens in e->off, T rows in all. CLIP: the first P positions, the same ids in
 * every row, are the shared rows [0, P) (under the causal mask their hidden states are the same
 * in every sequence, so they are computed once); each sequence's rows hold positions P..len-1. */
static void forward_chunk(mc_text_encoder *e, const int32_t *ids, int64_t ctx, size_t n, int64_t T,
                          int64_t maxL, int64_t P, float *out) {
    const int64_t D = e->D, I = e->I, H = e->H, hd = D / H;
    float *x = e->arena, *h = x + T * D, *qkv = h + T * D, *att = qkv + T * 3 * D,
          *mlp = att + T * D, *work = mlp + T * I, *bias = work + maxL * maxL;
    const bool clip = e->family == MC_TEXT_CLIP;
    /* embeddings */
    for (int64_t t = 0; t < P; t++) { /* the shared prefix (CLIP only) */
        const float *te = e->tok_emb + (int64_t)ids[t] * D, *pe = e->pos_emb + t * D;
        for (int64_t c = 0; c < D; c++) x[t * D + c] = te[c] + pe[c];
    }
    for (size_t b = 0; b < n; b++) {
        const int32_t *row = ids + (int64_t)b * ctx;
        int64_t cnt = 0;
        for (int64_t t = P; t < e->len[b]; t++) {
            float *xr = x + (e->off[b] + t - P) * D;
            const float *te = e->tok_emb + (int64_t)row[t] * D;
            int64_t pos;
            if (clip) {
                pos = t;
            } else { /* create_position_ids_from_input_ids, padding_idx 1 */
                if (row[t] != 1) cnt++;
                pos = row[t] != 1 ? cnt + 1 : 1;
            }
            const float *pe = e->pos_emb + pos * D;
            for (int64_t c = 0; c < D; c++) xr[c] = te[c] + pe[c];
        }
    }
    if (!clip) {
        mc_layernorm(x, e->emb_ln_w, e->emb_ln_b, x, T, D, e->eps);
        /* bias[h, i, j] = W[bucket(i - j), h] for the longest sequence; shorter ones use its
         * top-left block (it depends on i - j only) */
        for (int64_t i = 0; i < maxL; i++)
            for (int64_t j = 0; j < maxL; j++) {
                int64_t bk = mpnet_bucket(i - j, 32);
                for (int64_t hh = 0; hh < H; hh++)
                    bias[(hh * maxL + i) * maxL + j] = e->rel_bias[bk * H + hh];
            }
    }
    mc_attn_packed_desc ad = {.n_seq = (int64_t)n,
                              .off = e->off,
                              .len = e->len,
                              .H = H,
                              .head_dim = hd,
                              .ld_qkv = 3 * D,
                              .scale = 1.0f / sqrtf((float)hd),
                              .causal = clip,
                              .bias = clip ? NULL : bias,
                              .bias_T = maxL,
                              .prefix_len = P,
                              .prefix_off = 0};
    const int64_t zero = 0;
    const mc_attn_packed_desc pd = {.n_seq = 1,
                                    .off = &zero,
                                    .len = &P,
                                    .H = H,
                                    .head_dim = hd,
                                    .ld_qkv = 3 * D,
                                    .scale = ad.scale,
                                    .causal = true};
    for (int64_t l = 0; l < e->L; l++) {
        const text_layer *y = &e->layers[l];
        if (clip) {
            /* pre-norm: x = x + out_proj(attn(LN1(x))); x = x + fc2(quick_gelu(fc1(LN2(x)))) */
            mc_layernorm(x, y->ln1_w, y->ln1_b, h, T, D, e->eps);
            mc_linear(h, y->qkv_w, y->qkv_b, qkv, T, D, 3 * D, false);             /* [T, 3D] */
            if (P) mc_attention_packed(&pd, qkv, qkv + D, qkv + 2 * D, att, work); /* the prefix */
            mc_attention_packed(&ad, qkv, qkv + D, qkv + 2 * D, att, work); /* [T, D] causal */
            mc_linear(att, y->o_w, y->o_b, x, T, D, D, true);               /* x += o(att) */
            mc_layernorm(x, y->ln2_w, y->ln2_b, h, T, D, e->eps);
            mc_linear(h, y->fc1_w, NULL, mlp, T, D, I, false); /* [T, I] */
            mc_bias_act_rows(mlp, y->fc1_b, T, I, e->act);
            mc_linear(mlp, y->fc2_w, y->fc2_b, x, T, I, D, true); /* x += fc2(.) */
        } else {
            /* post-norm: A = LN(o(attn(x)) + x); x' = LN(W2 gelu(W1 A + b1) + b2 + A) */
            mc_linear(x, y->qkv_w, y->qkv_b, qkv, T, D, 3 * D, false);
            mc_attention_packed(&ad, qkv, qkv + D, qkv + 2 * D, att, work); /* + relative bias */
            mc_linear(att, y->o_w, y->o_b, x, T, D, D, true);
            mc_layernorm(x, y->ln1_w, y->ln1_b, x, T, D, e->eps);
            mc_linear(x, y->fc1_w, NULL, mlp, T, D, I, false);
            mc_bias_act_rows(mlp, y->fc1_b, T, I, e->act);
            mc_linear(mlp, y->fc2_w, y->fc2_b, x, T, I, D, true);
            mc_layernorm(x, y->ln2_w, y->ln2_b, x, T, D, e->eps);
        }
    }
    if (clip) {
        /* final_layer_norm at the end token of each sequence (its last packed row), then the
         * projection without bias */
        for (size_t b = 0; b < n; b++)
            memcpy(h + (int64_t)b * D, x + (e->off[b] + e->len[b] - P - 1) * D,
                   (size_t)D * sizeof(float));
        mc_layernorm(h, e->final_ln_w, e->final_ln_b, h, (int64_t)n, D, e->eps);
        mc_linear(h, e->proj_w, NULL, out, (int64_t)n, D, e->proj, false);
    } else {
        /* mean over the sequence's tokens (all real: the attention mask is 1 on them) */
        for (size_t b = 0; b < n; b++) {
            float *o = out + (int64_t)b * D;
            memset(o, 0, (size_t)D * sizeof *o);
            for (int64_t t = 0; t < e->len[b]; t++) {
                const float *xr = x + (e->off[b] + t) * D;
                for (int64_t c = 0; c < D; c++) o[c] += xr[c];
            }
            float cnt = (float)e->len[b];
            for (int64_t c = 0; c < D; c++) o[c] /= cnt;
        }
        if (e->normalize) mc_l2_normalize_rows(out, (int64_t)n, D);
    }
}

mc_status mc_text_encoder_forward(mc_text_encoder *e, const int32_t *ids, const int32_t *lens,
                                  size_t n, float *out, mc_error *err) {
    const int64_t ctx = e->ctx, dim = mc_text_encoder_dim(e);
    const int32_t eos = e->clip ? mc_clip_tok_eos(e->clip) : -1;
    size_t b0 = 0;
    while (b0 < n) {
        /* gather a chunk of rows with at most MC_TEXT_CHUNK_TOKENS packed tokens */
        size_t b1 = b0;
        int64_t T = 0, maxL = 0;
        while (b1 < n) {
            const int32_t *row = ids + (int64_t)b1 * ctx;
            int64_t L;
            if (e->family == MC_TEXT_CLIP) {
                L = -1;
                for (int64_t t = 0; t < ctx; t++)
                    if (row[t] == eos) {
                        L = t + 1;
                        break;
                    }
                if (L < 0)
                    return MC_FAIL(
                        err, MC_ERR_ARG,
                        "text row %zu has no end token <|endoftext|> (id %d): CLIP pools at "
                        "its first occurrence",
                        b1, eos);
            } else {
                L = lens[b1];
                if (L < 1 || L > ctx)
                    return MC_FAIL(err, MC_ERR_ARG, "text row %zu: length %lld outside 1..%lld", b1,
                                   (long long)L, (long long)ctx);
            }
            for (int64_t t = 0; t < L; t++)
                if (row[t] < 0 || row[t] >= e->vocab)
                    return MC_FAIL(
                        err, MC_ERR_ARG,
                        "text row %zu position %lld: id %d outside the vocabulary 0..%lld", b1,
                        (long long)t, row[t], (long long)e->vocab - 1);
            if (b1 > b0 && T + L > MC_TEXT_CHUNK_TOKENS) break;
            if (b1 - b0 >= e->off_cap) MC_TRY(arena_reserve(e, 0, (b1 - b0 + 1) * 2, err));
            e->off[b1 - b0] = T;
            e->len[b1 - b0] = L;
            T += L;
            if (L > maxL) maxL = L;
            b1++;
        }
        /* CLIP: the positions every row of the chunk shares (a prompt template's prefix, at least
         * the start token), leaving each row one position of its own */
        int64_t P = 0;
        if (e->family == MC_TEXT_CLIP && b1 - b0 > 1) {
            int64_t minL = INT64_MAX;
            for (size_t b = 0; b < b1 - b0; b++) minL = e->len[b] < minL ? e->len[b] : minL;
            const int32_t *r0 = ids + (int64_t)b0 * ctx;
            for (P = 0; P < minL - 1; P++) {
                bool same = true;
                for (size_t b = 1; same && b < b1 - b0; b++)
                    same = ids[(int64_t)(b0 + b) * ctx + P] == r0[P];
                if (!same) break;
            }
        }
        T = P;
        for (size_t b = 0; b < b1 - b0; b++) {
            e->off[b] = T;
            T += e->len[b] - P;
        }
        const int64_t D = e->D;
        size_t need = mc_desc_text_arena_floats(D, e->I, e->H, T, maxL, (int64_t)(b1 - b0));
        MC_TRY(arena_reserve(e, need, b1 - b0, err));
        forward_chunk(e, ids + (int64_t)b0 * ctx, ctx, b1 - b0, T, maxL, P,
                      out + (int64_t)b0 * dim);
        b0 = b1;
    }
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
