/* text_tower.c - the two text families: the CLIP text tower with its text_projection, and the
 * MPNet sentence encoder (specs/hf-models.md 3.4 and 6.3). They load through the same path as
 * the vision families (model.c: the description's weight table, bound by name) and share the
 * transformer block's tensors (mc_tf_block); they differ in the places marked "CLIP:" (causal
 * pre-norm blocks, the end token's final_layer_norm and the projection) and "MPNet:" (the
 * embedding LayerNorm, a relative position bias, post-norm blocks, mean pooling).
 *
 * Both run on packed token rows: the real tokens of every sequence in the batch back to back,
 * [T_total, D]. Linear layers are one GEMM over all of them; attention runs per sequence
 * (nn_text.h). For CLIP only the tokens up to the first end token are run: the causal mask
 * makes the pooled output independent of what follows it, as the reference pads to 77.
 * The activation arena (m->arena) grows on demand with the chunk it must hold. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/checked.h"
#include "miclip/nn.h"
#include "miclip/nn_text.h"
#include "model_internal.h"

#define MC_TEXT_CHUNK_TOKENS 16384 /* packed tokens per forward chunk */

typedef struct {
    bool clip;
    int64_t vocab, D, I, L, H, proj;
    float eps;
    mc_act act;
    float *tok_emb, *pos_emb;
    float *emb_ln_w, *emb_ln_b, *rel_bias;   /* MPNet */
    float *final_ln_w, *final_ln_b, *proj_w; /* CLIP */
    mc_tf_block *blk;
    int64_t *off, *len; /* per sequence of a chunk: its first packed row, its length */
    size_t off_cap;
} text_impl;

static void text_free(void *p) {
    text_impl *t = p;
    if (t) free(t->blk), free(t->off), free(t->len);
    free(t);
}

/* The sizes from the description, the block array and the file's prefix (probe: a tensor's full
 * name). */
static mc_status text_take(mc_model *m, text_impl **out, const mc_st_file *st, const char *probe,
                           mc_error *err) {
    const mc_model_desc *d = m->desc;
    text_impl *t = calloc(1, sizeof *t);
    if (!t) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    m->impl = t;
    *out = t;
    t->vocab = d->vocab, t->D = d->D, t->I = d->I, t->L = d->L, t->H = d->H;
    t->proj = d->out_dim, t->eps = (float)d->eps, t->act = d->act;
    t->blk = calloc((size_t)t->L, sizeof *t->blk);
    if (!t->blk) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    mc_model_pick_prefix(m, st, probe);
    return mc_model_adopt_desc(m, err);
}

static mc_status clip_text_load(mc_model *m, const json_t *cfg, const char *f, const mc_st_file *st,
                                mc_error *err) {
    (void)cfg, (void)f;
    if (st && !mc_st_find(st, "text_projection.weight"))
        return MC_FAIL(err, MC_ERR_SHAPE,
                       "%s: tensor 'text_projection.weight' is missing; HINT: miclip needs the "
                       "CLIPModel (or CLIPTextModelWithProjection) weights, not the bare text "
                       "model",
                       mc_st_path(st));
    text_impl *t;
    MC_TRY(text_take(m, &t, st, "text_model.embeddings.token_embedding.weight", err));
    t->clip = true;
    const char *p = m->prefix;
    mc_wt_bind(m, &t->tok_emb, "%sembeddings.token_embedding.weight", p);
    mc_wt_bind(m, &t->pos_emb, "%sembeddings.position_embedding.weight", p);
    char enc[64];
    snprintf(enc, sizeof enc, "%sencoder.layers.", p);
    static const char *const nm[8] = {
        "layer_norm1",        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
        "self_attn.out_proj", "layer_norm2",      "mlp.fc1",          "mlp.fc2"};
    mc_tf_bind_blocks(m, t->blk, t->L, true, enc, nm);
    mc_wt_bind(m, &t->final_ln_w, "%sfinal_layer_norm.weight", p);
    mc_wt_bind(m, &t->final_ln_b, "%sfinal_layer_norm.bias", p);
    mc_wt_bind(m, &t->proj_w, "text_projection.weight");
    return MC_OK;
}

static mc_status mpnet_load(mc_model *m, const json_t *cfg, const char *f, const mc_st_file *st,
                            mc_error *err) {
    (void)cfg, (void)f;
    text_impl *t;
    MC_TRY(text_take(m, &t, st, "mpnet.embeddings.word_embeddings.weight", err));
    const char *p = m->prefix;
    mc_wt_bind(m, &t->tok_emb, "%sembeddings.word_embeddings.weight", p);
    mc_wt_bind(m, &t->pos_emb, "%sembeddings.position_embeddings.weight", p);
    mc_wt_bind(m, &t->emb_ln_w, "%sembeddings.LayerNorm.weight", p);
    mc_wt_bind(m, &t->emb_ln_b, "%sembeddings.LayerNorm.bias", p);
    mc_wt_bind(m, &t->rel_bias, "%sencoder.relative_attention_bias.weight", p);
    char enc[64];
    snprintf(enc, sizeof enc, "%sencoder.layer.", p);
    /* ln1 is attention.LayerNorm (post-norm after attention), ln2 output.LayerNorm */
    static const char *const nm[8] = {"attention.LayerNorm", "attention.attn.q", "attention.attn.k",
                                      "attention.attn.v",    "attention.attn.o", "output.LayerNorm",
                                      "intermediate.dense",  "output.dense"};
    mc_tf_bind_blocks(m, t->blk, t->L, true, enc, nm);
    return MC_OK;
}

static mc_status text_finish(mc_model *m, mc_error *err) {
    const text_impl *t = m->impl;
    mc_tf_check_fused(t->blk, t->L, t->D, true);
    (void)err;
    return MC_OK;
}

static mc_status arena_reserve(mc_model *m, size_t floats, size_t nseq, mc_error *err) {
    text_impl *t = m->impl;
    if (floats > m->arena_floats) {
        float *p = realloc(m->arena, floats * sizeof(float));
        if (!p)
            return MC_FAIL(err, MC_ERR_NOMEM,
                           "text encoder: cannot allocate %zu floats of activations", floats);
        m->arena = p;
        m->arena_floats = floats;
    }
    if (nseq > t->off_cap) {
        int64_t *a = realloc(t->off, nseq * sizeof *a);
        if (a) t->off = a;
        int64_t *b = realloc(t->len, nseq * sizeof *b);
        if (b) t->len = b;
        if (!a || !b) return MC_FAIL(err, MC_ERR_NOMEM, "text encoder: out of memory");
        t->off_cap = nseq;
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

/* One chunk: rows [0, n) already validated; sequence lengths in t->len, the first row of each
 * sequence's own tokens in t->off, T rows in all. CLIP: the first P positions, the same ids in
 * every row, are the shared rows [0, P) (under the causal mask their hidden states are the same
 * in every sequence, so they are computed once); each sequence's rows hold positions P..len-1. */
static void forward_chunk(mc_model *m, const int32_t *ids, int64_t ctx, size_t n, int64_t T,
                          int64_t maxL, int64_t P, float *out) {
    const text_impl *e = m->impl;
    const int64_t D = e->D, I = e->I, H = e->H, hd = D / H;
    float *x = m->arena, *h = x + T * D, *qkv = h + T * D, *att = qkv + T * 3 * D,
          *mlp = att + T * D, *work = mlp + T * I, *bias = work + maxL * maxL;
    const bool clip = e->clip;
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
        const mc_tf_block *y = &e->blk[l];
        if (clip) {
            /* pre-norm: x = x + out_proj(attn(LN1(x))); x = x + fc2(quick_gelu(fc1(LN2(x)))) */
            mc_layernorm(x, y->ln1_w, y->ln1_b, h, T, D, e->eps);
            mc_linear(h, y->wq, y->bq, qkv, T, D, 3 * D, false);                   /* [T, 3D] */
            if (P) mc_attention_packed(&pd, qkv, qkv + D, qkv + 2 * D, att, work); /* the prefix */
            mc_attention_packed(&ad, qkv, qkv + D, qkv + 2 * D, att, work); /* [T, D] causal */
            mc_linear(att, y->wo, y->bo, x, T, D, D, true);                 /* x += o(att) */
            mc_layernorm(x, y->ln2_w, y->ln2_b, h, T, D, e->eps);
            mc_linear(h, y->w1, NULL, mlp, T, D, I, false); /* [T, I] */
            mc_bias_act_rows(mlp, y->b1, T, I, e->act);
            mc_linear(mlp, y->w2, y->b2, x, T, I, D, true); /* x += fc2(.) */
        } else {
            /* post-norm: A = LN(o(attn(x)) + x); x' = LN(W2 gelu(W1 A + b1) + b2 + A) */
            mc_linear(x, y->wq, y->bq, qkv, T, D, 3 * D, false);
            mc_attention_packed(&ad, qkv, qkv + D, qkv + 2 * D, att, work); /* + relative bias */
            mc_linear(att, y->wo, y->bo, x, T, D, D, true);
            mc_layernorm(x, y->ln1_w, y->ln1_b, x, T, D, e->eps);
            mc_linear(x, y->w1, NULL, mlp, T, D, I, false);
            mc_bias_act_rows(mlp, y->b1, T, I, e->act);
            mc_linear(mlp, y->w2, y->b2, x, T, I, D, true);
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
    }
}

static mc_status text_forward(mc_model *m, const int32_t *ids, const int32_t *lens, size_t n,
                              int64_t ctx, int32_t eos, float *out, mc_error *err) {
    text_impl *e = m->impl;
    const int64_t dim = m->out_dim;
    size_t b0 = 0;
    while (b0 < n) {
        /* gather a chunk of rows with at most MC_TEXT_CHUNK_TOKENS packed tokens */
        size_t b1 = b0;
        int64_t T = 0, maxL = 0;
        while (b1 < n) {
            const int32_t *row = ids + (int64_t)b1 * ctx;
            int64_t L;
            if (e->clip) {
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
            if (b1 - b0 >= e->off_cap) MC_TRY(arena_reserve(m, 0, (b1 - b0 + 1) * 2, err));
            e->off[b1 - b0] = T;
            e->len[b1 - b0] = L;
            T += L;
            if (L > maxL) maxL = L;
            b1++;
        }
        /* CLIP: the positions every row of the chunk shares (a prompt template's prefix, at least
         * the start token), leaving each row one position of its own */
        int64_t P = 0;
        if (e->clip && b1 - b0 > 1) {
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
        size_t need = mc_desc_text_arena_floats(e->D, e->I, e->H, T, maxL, (int64_t)(b1 - b0));
        MC_TRY(arena_reserve(m, need, b1 - b0, err));
        forward_chunk(m, ids + (int64_t)b0 * ctx, ctx, b1 - b0, T, maxL, P,
                      out + (int64_t)b0 * dim);
        b0 = b1;
    }
    return MC_OK;
}

const mc_family_ops mc_clip_text_ops = {.load = clip_text_load,
                                        .finish = text_finish,
                                        .forward_tokens = text_forward,
                                        .free_impl = text_free};
const mc_family_ops mc_mpnet_ops = {.load = mpnet_load,
                                    .finish = text_finish,
                                    .forward_tokens = text_forward,
                                    .free_impl = text_free};
