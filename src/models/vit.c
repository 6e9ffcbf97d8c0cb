/* vit.c - the two pre-norm vision transformers: ViTForImageClassification and the CLIP vision
 * tower with its visual projection. They share the block; they differ in the places marked
 * "CLIP:" (pre_layrnorm on the embeddings, no patch bias, class_embedding, post_layernorm on the
 * CLS only, a bias-free projection instead of a classifier). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/checked.h"
#include "miclip/json.h"
#include "model_internal.h"

mc_status mc_model_load_labels(mc_model *m, const json_t *cfg, const char *file, mc_error *err);

typedef struct {
    float *ln1_w, *ln1_b;
    float *wq, *wk, *wv; /* declared adjacently, so wq is the fused [3D, D] qkv weight */
    float *bq, *bk, *bv; /* likewise the fused [3D] bias (NULL without qkv_bias) */
    float *wo, *bo;
    float *ln2_w, *ln2_b;
    float *w1, *b1, *w2, *b2;
} tf_block;

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
    tf_block *blk;
} vit_impl;

static void vit_free(void *p) {
    vit_impl *v = p;
    if (v) free(v->blk);
    free(v);
}

/* Declares every tensor and layer of the transformer whose names the two families share. */
static mc_status declare(mc_model *m, vit_impl *v, const char *enc, const char *const nm[10],
                         mc_error *err) {
    const int64_t D = v->D, I = v->I;
    v->blk = calloc((size_t)v->L, sizeof *v->blk);
    if (!v->blk) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    const int64_t dd[2] = {D, D}, d1[1] = {D}, id[2] = {I, D}, di[2] = {D, I}, i1[1] = {I};
    for (int64_t l = 0; l < v->L; l++) {
        tf_block *b = &v->blk[l];
        const char *p = enc;
        /* nm: ln1, q, k, v, out, ln2, fc1, fc2 module paths below "<enc>.<l>." */
        MC_TRY(mc_wt_add(m, &b->ln1_w, 1, d1, err, "%s%lld.%s.weight", p, (long long)l, nm[0]));
        MC_TRY(mc_wt_add(m, &b->ln1_b, 1, d1, err, "%s%lld.%s.bias", p, (long long)l, nm[0]));
        MC_TRY(mc_wt_add(m, &b->wq, 2, dd, err, "%s%lld.%s.weight", p, (long long)l, nm[1]));
        MC_TRY(mc_wt_add(m, &b->wk, 2, dd, err, "%s%lld.%s.weight", p, (long long)l, nm[2]));
        MC_TRY(mc_wt_add(m, &b->wv, 2, dd, err, "%s%lld.%s.weight", p, (long long)l, nm[3]));
        if (v->qkv_bias) {
            MC_TRY(mc_wt_add(m, &b->bq, 1, d1, err, "%s%lld.%s.bias", p, (long long)l, nm[1]));
            MC_TRY(mc_wt_add(m, &b->bk, 1, d1, err, "%s%lld.%s.bias", p, (long long)l, nm[2]));
            MC_TRY(mc_wt_add(m, &b->bv, 1, d1, err, "%s%lld.%s.bias", p, (long long)l, nm[3]));
        }
        MC_TRY(mc_wt_add(m, &b->wo, 2, dd, err, "%s%lld.%s.weight", p, (long long)l, nm[4]));
        MC_TRY(mc_wt_add(m, &b->bo, 1, d1, err, "%s%lld.%s.bias", p, (long long)l, nm[4]));
        MC_TRY(mc_wt_add(m, &b->ln2_w, 1, d1, err, "%s%lld.%s.weight", p, (long long)l, nm[5]));
        MC_TRY(mc_wt_add(m, &b->ln2_b, 1, d1, err, "%s%lld.%s.bias", p, (long long)l, nm[5]));
        MC_TRY(mc_wt_add(m, &b->w1, 2, id, err, "%s%lld.%s.weight", p, (long long)l, nm[6]));
        MC_TRY(mc_wt_add(m, &b->b1, 1, i1, err, "%s%lld.%s.bias", p, (long long)l, nm[6]));
        MC_TRY(mc_wt_add(m, &b->w2, 2, di, err, "%s%lld.%s.weight", p, (long long)l, nm[7]));
        MC_TRY(mc_wt_add(m, &b->b2, 1, d1, err, "%s%lld.%s.bias", p, (long long)l, nm[7]));
    }
    /* Layers: 0 = embeddings, 1..L = blocks, L+1 = final norm, L+2 = output. */
    const int64_t td[2] = {v->T, D};
    if (mc_model_add_layer(m, "embeddings", 2, td, false, true) < 0)
        return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    for (int64_t l = 1; l <= v->L; l++) {
        char name[24];
        snprintf(name, sizeof name, "%lld", (long long)l);
        if (mc_model_add_layer(m, name, 2, td, true, true) < 0)
            return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    int ok = v->clip ? mc_model_add_layer(m, nm[8], 1, &D, false, false)
                     : mc_model_add_layer(m, nm[8], 2, td, false, false);
    ok = ok < 0 ? ok : mc_model_add_layer(m, nm[9], 1, &v->n_out, false, false);
    if (ok < 0) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    m->tf_layers = (int)v->L, m->tf_tokens = (int)v->T, m->tf_width = (int)D, m->tf_heads = (int)v->H;
    m->in_c = (int)v->C, m->in_h = m->in_w = (int)v->img;
    m->out_dim = v->n_out;
    m->out_name = v->clip ? "image_embeds" : "logits";
    return MC_OK;
}

/* Reads the sizes every transformer config has, with the given class defaults. */
static mc_status read_dims(vit_impl *v, const json_t *c, const char *f, int64_t patch_dflt,
                           const char *act_dflt, double eps_dflt, mc_error *err) {
    double eps;
    MC_TRY(mc_json_get_int(c, "hidden_size", false, 768, &v->D, f, err));
    MC_TRY(mc_json_get_int(c, "num_hidden_layers", false, 12, &v->L, f, err));
    MC_TRY(mc_json_get_int(c, "num_attention_heads", false, 12, &v->H, f, err));
    MC_TRY(mc_json_get_int(c, "intermediate_size", false, 3072, &v->I, f, err));
    MC_TRY(mc_json_get_int(c, "image_size", false, 224, &v->img, f, err));
    MC_TRY(mc_json_get_int(c, "patch_size", false, patch_dflt, &v->P, f, err));
    MC_TRY(mc_json_get_int(c, "num_channels", false, 3, &v->C, f, err));
    MC_TRY(mc_json_get_num(c, "layer_norm_eps", false, eps_dflt, &eps, f, err));
    MC_TRY(mc_cfg_act(c, "hidden_act", act_dflt, &v->act, f, err));
    v->eps = (float)eps;
    if (v->D < 1 || v->D > 65536 || v->L < 0 || v->L > 1000 || v->H < 1 || v->D % v->H != 0 ||
        v->I < 1 || v->I > 1 << 20 || v->C < 1 || v->C > 64 || v->P < 1 || v->img < v->P ||
        v->img > 4096 || !(eps > 0))
        return MC_FAIL(err, MC_ERR_FORMAT,
                       "%s: inconsistent sizes (hidden_size %lld, heads %lld, layers %lld, "
                       "intermediate %lld, image %lld, patch %lld, channels %lld, eps %g)",
                       f, (long long)v->D, (long long)v->H, (long long)v->L, (long long)v->I,
                       (long long)v->img, (long long)v->P, (long long)v->C, eps);
    v->side = v->img / v->P;
    v->T = v->side * v->side + 1;
    return MC_OK;
}

static mc_status vit_load(mc_model *m, const json_t *cfg, const char *f, const mc_st_file *st,
                          mc_error *err) {
    vit_impl *v = calloc(1, sizeof *v);
    if (!v) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    m->impl = v;
    MC_TRY(read_dims(v, cfg, f, 16, "gelu", 1e-12, err));
    MC_TRY(mc_json_get_bool(cfg, "qkv_bias", false, true, &v->qkv_bias, f, err));
    MC_TRY(mc_model_load_labels(m, cfg, f, err));
    v->n_out = m->n_labels;
    /* transformers strips or adds the base-model prefix itself; accept both layouts. */
    const char *p = (!st || mc_st_find(st, "vit.embeddings.cls_token")) ? "vit." : "";
    mc_strlcpy(m->prefix, p, sizeof m->prefix);
    const int64_t D = v->D;
    const int64_t cls[3] = {1, 1, D}, pos[3] = {1, v->T, D}, pw[4] = {D, v->C, v->P, v->P};
    MC_TRY(mc_wt_add(m, &v->cls, 3, cls, err, "%sembeddings.cls_token", p));
    MC_TRY(mc_wt_add(m, &v->pos, 3, pos, err, "%sembeddings.position_embeddings", p));
    MC_TRY(mc_wt_add(m, &v->patch_w, 4, pw, err, "%sembeddings.patch_embeddings.projection.weight", p));
    MC_TRY(mc_wt_add(m, &v->patch_b, 1, &D, err, "%sembeddings.patch_embeddings.projection.bias", p));
    char enc[64];
    snprintf(enc, sizeof enc, "%sencoder.layer.", p);
    static const char *const nm[10] = {
        "layernorm_before", "attention.attention.query", "attention.attention.key",
        "attention.attention.value", "attention.output.dense", "layernorm_after",
        "intermediate.dense", "output.dense", "layernorm", "logits"};
    MC_TRY(declare(m, v, enc, nm, err));
    MC_TRY(mc_wt_add(m, &v->fin_w, 1, &D, err, "%slayernorm.weight", p));
    MC_TRY(mc_wt_add(m, &v->fin_b, 1, &D, err, "%slayernorm.bias", p));
    const int64_t hw[2] = {v->n_out, D};
    MC_TRY(mc_wt_add(m, &v->head_w, 2, hw, err, "classifier.weight"));
    MC_TRY(mc_wt_add(m, &v->head_b, 1, &v->n_out, err, "classifier.bias"));
    return MC_OK;
}

static mc_status clip_load(mc_model *m, const json_t *cfg, const char *f, const mc_st_file *st,
                           mc_error *err) {
    vit_impl *v = calloc(1, sizeof *v);
    if (!v) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    m->impl = v;
    v->clip = true;
    v->qkv_bias = true;
    /* CLIPConfig: vision_config, overridden key by key by a non-null legacy
     * vision_config_dict (configuration_clip.py); a CLIPVisionModelWithProjection folder has the
     * vision config at the top level. */
    const char *mt = NULL;
    MC_TRY(mc_json_get_str(cfg, "model_type", false, "", &mt, f, err));
    json_t *vc = NULL, *vd = NULL;
    int64_t proj = 512;
    if (strcmp(mt, "clip_vision_model") == 0) {
        vc = json_deep_copy(cfg);
    } else {
        json_t *a = NULL;
        MC_TRY(mc_json_get_obj(cfg, "vision_config", false, &a, f, err));
        MC_TRY(mc_json_get_obj(cfg, "vision_config_dict", false, &vd, f, err));
        vc = a ? json_deep_copy(a) : json_object();
        if (vc && vd) json_object_update(vc, vd);
    }
    if (!vc) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    mc_status s = read_dims(v, vc, f, 32, "quick_gelu", 1e-5, err);
    if (s == MC_OK)
        s = mc_json_get_int(strcmp(mt, "clip_vision_model") == 0 ? vc : cfg, "projection_dim",
                            false, 512, &proj, f, err);
    json_decref(vc);
    MC_TRY(s);
    if (proj < 1 || proj > 65536)
        return MC_FAIL(err, MC_ERR_FORMAT, "%s: projection_dim %lld out of range", f, (long long)proj);
    v->n_out = proj;
    const char *p = "vision_model.";
    const int64_t D = v->D;
    const int64_t pos[2] = {v->T, D}, pw[4] = {D, v->C, v->P, v->P};
    MC_TRY(mc_wt_add(m, &v->cls, 1, &D, err, "%sembeddings.class_embedding", p));
    MC_TRY(mc_wt_add(m, &v->patch_w, 4, pw, err, "%sembeddings.patch_embedding.weight", p));
    MC_TRY(mc_wt_add(m, &v->pos, 2, pos, err, "%sembeddings.position_embedding.weight", p));
    MC_TRY(mc_wt_add(m, &v->pre_w, 1, &D, err, "%spre_layrnorm.weight", p));
    MC_TRY(mc_wt_add(m, &v->pre_b, 1, &D, err, "%spre_layrnorm.bias", p));
    static const char *const nm[10] = {"layer_norm1", "self_attn.q_proj", "self_attn.k_proj",
                                       "self_attn.v_proj", "self_attn.out_proj", "layer_norm2",
                                       "mlp.fc1", "mlp.fc2", "post_layernorm", "image_embeds"};
    MC_TRY(declare(m, v, "vision_model.encoder.layers.", nm, err));
    MC_TRY(mc_wt_add(m, &v->fin_w, 1, &D, err, "%spost_layernorm.weight", p));
    MC_TRY(mc_wt_add(m, &v->fin_b, 1, &D, err, "%spost_layernorm.bias", p));
    const int64_t hw[2] = {proj, D};
    MC_TRY(mc_wt_add(m, &v->head_w, 2, hw, err, "visual_projection.weight"));
    return MC_OK;
}

static mc_status vit_finish(mc_model *m, mc_error *err) {
    const vit_impl *v = m->impl;
    const int64_t D = v->D;
    /* The loader lays tensors out in declaration order, so q, k, v are one [3D, D] matrix. */
    for (int64_t l = 0; l < v->L; l++) {
        const tf_block *b = &v->blk[l];
        MC_ASSERT(b->wk == b->wq + D * D && b->wv == b->wk + D * D);
        MC_ASSERT(!v->qkv_bias || (b->bk == b->bq + D && b->bv == b->bk + D));
    }
    (void)err;
    return MC_OK;
}

/* Arena layout, in floats, for N = B*T rows. */
typedef struct {
    size_t x, ln, qkv, ctx, mlp, work, probs, patches, pooled, out, total;
} vit_plan;

static vit_plan plan(const vit_impl *v, int64_t B) {
    vit_plan p;
    const size_t N = (size_t)(B * v->T), D = (size_t)v->D;
    size_t o = 0;
    p.x = o, o += N * D;
    p.ln = o, o += N * D;
    p.qkv = o, o += N * 3 * D;
    p.ctx = o, o += N * D;
    p.mlp = o, o += N * (size_t)v->I;
    mc_attn_desc d = {.B = B, .T = v->T, .H = v->H, .head_dim = v->D / v->H};
    p.work = o, o += mc_attention_workspace(&d);
    p.probs = o, o += (size_t)(B * v->H) * (size_t)(v->T * v->T);
    p.patches = o, o += (size_t)B * (size_t)(v->side * v->side) * (size_t)(v->C * v->P * v->P);
    p.pooled = o, o += (size_t)B * D;
    p.out = o, o += (size_t)B * (size_t)v->n_out;
    p.total = o;
    return p;
}

static size_t vit_arena(const mc_model *m, int64_t B, int64_t H, int64_t W) {
    (void)H, (void)W;
    return plan(m->impl, B).total;
}

static mc_status vit_forward(mc_model *m, mc_run *r, const float *px, int64_t B, int64_t Hi,
                             int64_t Wi, float *output, mc_error *err) {
    const vit_impl *v = m->impl;
    const vit_plan pl = plan(v, B);
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
        const tf_block *b = &v->blk[l - 1];
        /* h = x + out_proj(attn(LN1(x))) */
        mc_layernorm(x, b->ln1_w, b->ln1_b, ln, N, D, v->eps);             /* [N, D] */
        mc_linear(ln, b->wq, b->bq, qkv, N, D, 3 * D, false);             /* [N, 3D] = q|k|v */
        ad.probs = mc_run_wants_attn(r, (int)l) ? A + pl.probs : NULL;
        mc_attention(&ad, qkv, qkv + D, qkv + 2 * D, ctx, A + pl.work);  /* [N, D] */
        if (ad.probs && !mc_run_attn(r, (int)l, ad.probs, v->H, T)) return MC_OK;
        mc_linear(ctx, b->wo, b->bo, x, N, D, D, true);                    /* x += ctx Wo^T + bo */
        /* x' = h + fc2(act(fc1(LN2(h)))) */
        mc_layernorm(x, b->ln2_w, b->ln2_b, ln, N, D, v->eps);
        mc_linear(ln, b->w1, NULL, mlp, N, D, v->I, false);                /* [N, I] */
        mc_bias_act_rows(mlp, b->b1, N, v->I, v->act);
        mc_linear(mlp, b->w2, b->b2, x, N, v->I, D, true);                 /* x += ... */
        if (!mc_run_point(r, (int)l, x)) return MC_OK;                     /* hidden_states[l] */
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

const mc_family_ops mc_vit_ops = {vit_load, vit_finish, vit_arena, vit_forward, vit_free};
const mc_family_ops mc_clip_vision_ops = {clip_load, vit_finish, vit_arena, vit_forward, vit_free};
