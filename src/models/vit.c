/* vit.c - the two pre-norm vision transformers: ViTForImageClassification and the CLIP vision
 * tower with its visual projection. They share the block; they differ in the places marked
 * "CLIP:" (pre_layrnorm on the embeddings, no patch bias, class_embedding, post_layernorm on the
 * CLS only, a bias-free projection instead of a classifier). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/checked.h"
#include "model_internal.h"

mc_status mc_model_load_labels(mc_model *m, const json_t *cfg, const char *file, mc_error *err);

typedef struct {
    bool clip;
    int64_t D, L, H, I, P, C, img, side, T, n_out;
    float eps;
    mc_act act;
    bool qkv_bias;
    float *patch_w, *patch_b, *cls, *pos;
    float *pre_w, *pre_b;   /* CLIP: pre_layrnorm */
    float *fin_w, *fin_b;   /* ViT: layernorm (all tokens); CLIP: post_layernorm (CLS) */
    float *head_w, *head_b; /* ViT: classifier; CLIP: visual_projection (no bias) */
    mc_tf_block *blk;
} vit_impl;

static void vit_free(void *p) {
    vit_impl *v = p;
    if (v) free(v->blk);
    free(v);
}

void mc_tf_bind_blocks(mc_model *m, mc_tf_block *blk, int64_t L, bool qkv_bias, const char *enc,
                       const char *const nm[8]) {
    for (int64_t l = 0; l < L; l++) {
        mc_tf_block *b = &blk[l];
        const char *p = enc;
        const long long k = (long long)l;
        mc_wt_bind(m, &b->ln1_w, "%s%lld.%s.weight", p, k, nm[0]);
        mc_wt_bind(m, &b->ln1_b, "%s%lld.%s.bias", p, k, nm[0]);
        mc_wt_bind(m, &b->wq, "%s%lld.%s.weight", p, k, nm[1]);
        mc_wt_bind(m, &b->wk, "%s%lld.%s.weight", p, k, nm[2]);
        mc_wt_bind(m, &b->wv, "%s%lld.%s.weight", p, k, nm[3]);
        if (qkv_bias) {
            mc_wt_bind(m, &b->bq, "%s%lld.%s.bias", p, k, nm[1]);
            mc_wt_bind(m, &b->bk, "%s%lld.%s.bias", p, k, nm[2]);
            mc_wt_bind(m, &b->bv, "%s%lld.%s.bias", p, k, nm[3]);
        }
        mc_wt_bind(m, &b->wo, "%s%lld.%s.weight", p, k, nm[4]);
        mc_wt_bind(m, &b->bo, "%s%lld.%s.bias", p, k, nm[4]);
        mc_wt_bind(m, &b->ln2_w, "%s%lld.%s.weight", p, k, nm[5]);
        mc_wt_bind(m, &b->ln2_b, "%s%lld.%s.bias", p, k, nm[5]);
        mc_wt_bind(m, &b->w1, "%s%lld.%s.weight", p, k, nm[6]);
        mc_wt_bind(m, &b->b1, "%s%lld.%s.bias", p, k, nm[6]);
        mc_wt_bind(m, &b->w2, "%s%lld.%s.weight", p, k, nm[7]);
        mc_wt_bind(m, &b->b2, "%s%lld.%s.bias", p, k, nm[7]);
    }
}

void mc_tf_check_fused(const mc_tf_block *blk, int64_t L, int64_t D, bool qkv_bias) {
    for (int64_t l = 0; l < L; l++) {
        const mc_tf_block *b = &blk[l];
        MC_ASSERT(b->wk == b->wq + D * D && b->wv == b->wk + D * D);
        MC_ASSERT(!qkv_bias || (b->bk == b->bq + D && b->bv == b->bk + D));
    }
}

/* The sizes from the description (model_desc.h reads config.json), and the block array. */
static mc_status take_dims(mc_model *m, vit_impl *v, mc_error *err) {
    const mc_model_desc *d = m->desc;
    v->D = d->D, v->L = d->L, v->H = d->H, v->I = d->I, v->P = d->patch, v->C = d->C;
    v->img = d->image, v->side = d->side, v->T = d->T, v->n_out = d->out_dim;
    v->eps = (float)d->eps, v->act = d->act, v->qkv_bias = d->qkv_bias;
    v->blk = calloc((size_t)(v->L ? v->L : 1), sizeof *v->blk);
    if (!v->blk) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    return mc_model_adopt_desc(m, err);
}

static mc_status vit_load(mc_model *m, const json_t *cfg, const char *f, const mc_st_file *st,
                          mc_error *err) {
    vit_impl *v = calloc(1, sizeof *v);
    if (!v) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    m->impl = v;
    MC_TRY(mc_model_load_labels(m, cfg, f, err));
    mc_model_pick_prefix(m, st, "vit.embeddings.cls_token");
    MC_TRY(take_dims(m, v, err));
    const char *p = m->prefix;
    mc_wt_bind(m, &v->cls, "%sembeddings.cls_token", p);
    mc_wt_bind(m, &v->pos, "%sembeddings.position_embeddings", p);
    mc_wt_bind(m, &v->patch_w, "%sembeddings.patch_embeddings.projection.weight", p);
    mc_wt_bind(m, &v->patch_b, "%sembeddings.patch_embeddings.projection.bias", p);
    char enc[64];
    snprintf(enc, sizeof enc, "%sencoder.layer.", p);
    static const char *const nm[8] = {"layernorm_before",        "attention.attention.query",
                                      "attention.attention.key", "attention.attention.value",
                                      "attention.output.dense",  "layernorm_after",
                                      "intermediate.dense",      "output.dense"};
    mc_tf_bind_blocks(m, v->blk, v->L, v->qkv_bias, enc, nm);
    mc_wt_bind(m, &v->fin_w, "%slayernorm.weight", p);
    mc_wt_bind(m, &v->fin_b, "%slayernorm.bias", p);
    mc_wt_bind(m, &v->head_w, "classifier.weight");
    mc_wt_bind(m, &v->head_b, "classifier.bias");
    return MC_OK;
}

static mc_status clip_load(mc_model *m, const json_t *cfg, const char *f, const mc_st_file *st,
                           mc_error *err) {
    (void)cfg, (void)f, (void)st;
    vit_impl *v = calloc(1, sizeof *v);
    if (!v) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    m->impl = v;
    v->clip = true;
    MC_TRY(take_dims(m, v, err));
    const char *p = "vision_model.";
    mc_wt_bind(m, &v->cls, "%sembeddings.class_embedding", p);
    mc_wt_bind(m, &v->patch_w, "%sembeddings.patch_embedding.weight", p);
    mc_wt_bind(m, &v->pos, "%sembeddings.position_embedding.weight", p);
    mc_wt_bind(m, &v->pre_w, "%spre_layrnorm.weight", p);
    mc_wt_bind(m, &v->pre_b, "%spre_layrnorm.bias", p);
    static const char *const nm[8] = {
        "layer_norm1",        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
        "self_attn.out_proj", "layer_norm2",      "mlp.fc1",          "mlp.fc2"};
    mc_tf_bind_blocks(m, v->blk, v->L, v->qkv_bias, "vision_model.encoder.layers.", nm);
    mc_wt_bind(m, &v->fin_w, "%spost_layernorm.weight", p);
    mc_wt_bind(m, &v->fin_b, "%spost_layernorm.bias", p);
    mc_wt_bind(m, &v->head_w, "visual_projection.weight");
    return MC_OK;
}

static mc_status vit_finish(mc_model *m, mc_error *err) {
    const vit_impl *v = m->impl;
    mc_tf_check_fused(v->blk, v->L, v->D, v->qkv_bias);
    (void)err;
    return MC_OK;
}

static mc_status vit_forward(mc_model *m, mc_run *r, const float *px, int64_t B, int64_t Hi,
                             int64_t Wi, float *output, mc_error *err) {
    const vit_impl *v = m->impl;
    const mc_desc_vit_arena pl = mc_desc_vit_arena_layout(m->desc, B);
    float *A = m->arena;
    float *x = A + pl.x, *ln = A + pl.ln, *qkv = A + pl.qkv, *ctx = A + pl.ctx, *mlp = A + pl.mlp;
    const int64_t D = v->D, T = v->T, N = B * T, L = v->L, P = v->P, C = v->C, S = v->side;
    const int64_t K = C * P * P; /* patch vector length, (c, ky, kx) order */
    (void)Wi;

    int first_block = 1;
    if (r->start >= 0) {
        memcpy(x, r->o->start_state, (size_t)(N * D) * sizeof(float));
        first_block = r->start + 1;
        if (r->start <= L && !mc_run_point(r, r->start, x)) return MC_OK;
    } else {
        /* Patches: conv(k=P, stride=P) == unfold into [B, S*S, K] rows, then x W^T. */
        float *pat = A + pl.patches;
        for (int64_t b = 0; b < B; b++)
            for (int64_t py = 0; py < S; py++)
                for (int64_t pxi = 0; pxi < S; pxi++) {
                    float *row = pat + ((b * S + py) * S + pxi) * K;
                    for (int64_t c = 0; c < C; c++)
                        for (int64_t ky = 0; ky < P; ky++)
                            memcpy(row + (c * P + ky) * P,
                                   px + ((b * C + c) * Hi + py * P + ky) * Wi + pxi * P,
                                   (size_t)P * sizeof(float));
                }
        for (int64_t b = 0; b < B; b++) {
            float *xb = x + b * T * D;
            /* tokens 1..T-1 = patches W^T (+ bias: ViT only; CLIP's patch conv has none) */
            mc_linear(pat + b * (T - 1) * K, v->patch_w, v->patch_b, xb + D, T - 1, K, D, false);
            memcpy(xb, v->cls, (size_t)D * sizeof(float)); /* CLS first, then + positions */
            mc_add_inplace(xb, v->pos, (size_t)(T * D));
        }
        if (v->clip) mc_layernorm(x, v->pre_w, v->pre_b, x, N, D, v->eps); /* CLIP: pre_layrnorm */
        if (!mc_run_point(r, 0, x)) return MC_OK;
    }

    mc_attn_desc ad = {.B = B, .T = T, .H = v->H, .head_dim = D / v->H, .ld_qkv = 3 * D};
    for (int64_t l = first_block; l <= L; l++) {
        const mc_tf_block *b = &v->blk[l - 1];
        /* h = x + out_proj(attn(LN1(x))) */
        mc_layernorm(x, b->ln1_w, b->ln1_b, ln, N, D, v->eps); /* [N, D] */
        mc_linear(ln, b->wq, b->bq, qkv, N, D, 3 * D, false);  /* [N, 3D] = q|k|v */
        ad.probs = mc_run_wants_attn(r, (int)l) ? A + pl.probs : NULL;
        mc_attention(&ad, qkv, qkv + D, qkv + 2 * D, ctx, A + pl.work); /* [N, D] */
        if (ad.probs && !mc_run_attn(r, (int)l, ad.probs, v->H, T)) return MC_OK;
        mc_linear(ctx, b->wo, b->bo, x, N, D, D, true); /* x += ctx Wo^T + bo */
        /* x' = h + fc2(act(fc1(LN2(h)))) */
        mc_layernorm(x, b->ln2_w, b->ln2_b, ln, N, D, v->eps);
        mc_linear(ln, b->w1, NULL, mlp, N, D, v->I, false); /* [N, I] */
        mc_bias_act_rows(mlp, b->b1, N, v->I, v->act);
        mc_linear(mlp, b->w2, b->b2, x, N, v->I, D, true); /* x += ... */
        if (!mc_run_point(r, (int)l, x)) return MC_OK;     /* hidden_states[l] */
    }

    float *pooled = A + pl.pooled, *out = A + pl.out;
    const int fin = (int)L + 1, outl = (int)L + 2;
    if (!v->clip) {
        /* ViT: last_hidden_state = layernorm(x) on all tokens; logits from its CLS row. Only the
         * CLS rows are normalised unless the full tensor is hooked. */
        if (mc_run_wants(r, fin)) {
            mc_layernorm(x, v->fin_w, v->fin_b, ln, N, D, v->eps);
            if (!mc_run_point(r, fin, ln)) return MC_OK;
            for (int64_t bi = 0; bi < B; bi++)
                memcpy(pooled + bi * D, ln + bi * T * D, (size_t)D * sizeof(float));
        } else {
            for (int64_t bi = 0; bi < B; bi++)
                memcpy(pooled + bi * D, x + bi * T * D, (size_t)D * sizeof(float));
            mc_layernorm(pooled, v->fin_w, v->fin_b, pooled, B, D, v->eps);
            if (!mc_run_point(r, fin, pooled)) return MC_OK;
        }
    } else {
        /* CLIP: pooler_output = post_layernorm(last_hidden_state[:, 0]) */
        for (int64_t bi = 0; bi < B; bi++)
            memcpy(pooled + bi * D, x + bi * T * D, (size_t)D * sizeof(float));
        mc_layernorm(pooled, v->fin_w, v->fin_b, pooled, B, D, v->eps);
        if (!mc_run_point(r, fin, pooled)) return MC_OK;
    }
    /* ViT: logits = classifier(cls); CLIP: image_embeds = visual_projection(pooled), no bias */
    mc_linear(pooled, v->head_w, v->head_b, out, B, D, v->n_out, false);
    if (!mc_run_point(r, outl, out)) return MC_OK;
    if (output) memcpy(output, out, (size_t)(B * v->n_out) * sizeof(float));
    (void)err;
    return MC_OK;
}

const mc_family_ops mc_vit_ops = {
    .load = vit_load, .finish = vit_finish, .forward = vit_forward, .free_impl = vit_free};
const mc_family_ops mc_clip_vision_ops = {
    .load = clip_load, .finish = vit_finish, .forward = vit_forward, .free_impl = vit_free};
