/* model_desc.c - the weightless model description (model_desc.h): one builder per family reads
 * config.json and lists the layers, their MACs and the weight table. */
#include "miclip/model_desc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/checked.h"
#include "miclip/json.h"

static const char *family_names[MC_DESC_FAMILY_COUNT] = {"vit", "resnet", "clip_vision",
                                                         "clip_text", "mpnet"};

const char *mc_desc_family_name(mc_desc_family f) {
    return (unsigned)f < MC_DESC_FAMILY_COUNT ? family_names[f] : "?";
}

double mc_desc_block_mac(double T, double D, double I) {
    return 4.0 * T * D * D    /* Q, K, V and output projections */
           + 2.0 * T * T * D  /* scores Q K^T and probabilities x V, all heads */
           + 2.0 * T * D * I; /* MLP fc1 and fc2 */
}

void mc_model_desc_free(mc_model_desc **dp) {
    if (!dp || !*dp) return;
    free((*dp)->layers);
    free((*dp)->tensors);
    free(*dp);
    *dp = NULL;
}

/* ---- building blocks ------------------------------------------------------------------------ */

/* Growth of the two lists; a failed allocation is remembered and reported once at the end. */
typedef struct {
    mc_model_desc *d;
    int cap_l, cap_t;
    bool nomem;
} builder;

static mc_desc_tensor *tensor(builder *b, bool base, int ndim, int64_t d0, int64_t d1, int64_t d2,
                              int64_t d3, const char *fmt, ...)
    __attribute__((format(printf, 8, 9)));
static mc_desc_tensor *tensor(builder *b, bool base, int ndim, int64_t d0, int64_t d1, int64_t d2,
                              int64_t d3, const char *fmt, ...) {
    mc_model_desc *d = b->d;
    if (b->nomem) return NULL;
    if (d->n_tensors == b->cap_t) {
        int cap = b->cap_t ? 2 * b->cap_t : 256;
        mc_desc_tensor *p = realloc(d->tensors, (size_t)cap * sizeof *p);
        if (!p) return b->nomem = true, NULL;
        d->tensors = p, b->cap_t = cap;
    }
    mc_desc_tensor *t = &d->tensors[d->n_tensors++];
    memset(t, 0, sizeof *t);
    char tail[MC_DESC_TENSOR_NAME_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tail, sizeof tail, fmt, ap);
    va_end(ap);
    MC_ASSERT(n > 0 && n < (int)sizeof tail);
    n = snprintf(t->name, sizeof t->name, "%s%s", base ? d->base_prefix : "", tail);
    MC_ASSERT(n > 0 && n < (int)sizeof t->name);
    t->base = base;
    t->ndim = ndim;
    const int64_t s[4] = {d0, d1, d2, d3};
    for (int i = 0; i < ndim; i++) t->shape[i] = s[i];
    return t;
}
#define T1(b, base, a, ...) tensor(b, base, 1, a, 0, 0, 0, __VA_ARGS__)
#define T2(b, base, a, c, ...) tensor(b, base, 2, a, c, 0, 0, __VA_ARGS__)

static mc_desc_layer *layer(builder *b, const char *name, int ndim, int64_t s0, int64_t s1,
                            int64_t s2, double mac) {
    mc_model_desc *d = b->d;
    if (b->nomem) return NULL;
    if (d->n_layers == b->cap_l) {
        int cap = b->cap_l ? 2 * b->cap_l : 64;
        mc_desc_layer *p = realloc(d->layers, (size_t)cap * sizeof *p);
        if (!p) return b->nomem = true, NULL;
        d->layers = p, b->cap_l = cap;
    }
    mc_desc_layer *l = &d->layers[d->n_layers++];
    memset(l, 0, sizeof *l);
    mc_strlcpy(l->name, name, sizeof l->name);
    l->ndim = ndim;
    const int64_t s[3] = {s0, s1, s2};
    for (int i = 0; i < ndim; i++) l->shape[i] = s[i];
    l->mac = mac;
    return l;
}

static mc_status cfg_act(const json_t *c, const char *key, const char *dflt, mc_act *out,
                         const char *file, mc_error *err) {
    const char *s;
    MC_TRY(mc_json_get_str(c, key, false, dflt, &s, file, err));
    mc_status st = mc_act_parse(s, out, err);
    if (st != MC_OK) mc_error_prefix(err, "%s: %s", file, key);
    return st;
}

/* Classifier labels: id2label's size, else num_labels (PretrainedConfig's default 2). */
static mc_status read_n_labels(const json_t *cfg, const char *file, int64_t *n, mc_error *err) {
    json_t *id2 = NULL;
    MC_TRY(mc_json_get_obj(cfg, "id2label", false, &id2, file, err));
    *n = 2;
    if (id2)
        *n = (int64_t)json_object_size(id2);
    else
        MC_TRY(mc_json_get_int(cfg, "num_labels", false, 2, n, file, err));
    if (*n < 1 || *n > 1000000)
        return MC_FAIL(err, MC_ERR_FORMAT, "%s: %lld labels is out of range", file, (long long)*n);
    return MC_OK;
}

/* ---- ViT and the CLIP vision tower ----------------------------------------------------------- */

/* The sizes every vision transformer config has, with the given class defaults. */
static mc_status read_vision_dims(mc_model_desc *d, const json_t *c, const char *f,
                                  int64_t patch_dflt, const char *act_dflt, double eps_dflt,
                                  mc_error *err) {
    MC_TRY(mc_json_get_int(c, "hidden_size", false, 768, &d->D, f, err));
    MC_TRY(mc_json_get_int(c, "num_hidden_layers", false, 12, &d->L, f, err));
    MC_TRY(mc_json_get_int(c, "num_attention_heads", false, 12, &d->H, f, err));
    MC_TRY(mc_json_get_int(c, "intermediate_size", false, 3072, &d->I, f, err));
    MC_TRY(mc_json_get_int(c, "image_size", false, 224, &d->image, f, err));
    MC_TRY(mc_json_get_int(c, "patch_size", false, patch_dflt, &d->patch, f, err));
    MC_TRY(mc_json_get_int(c, "num_channels", false, 3, &d->C, f, err));
    MC_TRY(mc_json_get_num(c, "layer_norm_eps", false, eps_dflt, &d->eps, f, err));
    MC_TRY(cfg_act(c, "hidden_act", act_dflt, &d->act, f, err));
    if (d->D < 1 || d->D > 65536 || d->L < 0 || d->L > 1000 || d->H < 1 || d->D % d->H != 0 ||
        d->I < 1 || d->I > 1 << 20 || d->C < 1 || d->C > 64 || d->patch < 1 ||
        d->image < d->patch || d->image > 4096 || !(d->eps > 0))
        return MC_FAIL(err, MC_ERR_FORMAT,
                       "%s: inconsistent sizes (hidden_size %lld, heads %lld, layers %lld, "
                       "intermediate %lld, image %lld, patch %lld, channels %lld, eps %g)",
                       f, (long long)d->D, (long long)d->H, (long long)d->L, (long long)d->I,
                       (long long)d->image, (long long)d->patch, (long long)d->C, d->eps);
    d->side = d->image / d->patch;
    d->T = d->side * d->side + 1;
    d->in_h = d->in_w = d->image;
    return MC_OK;
}

/* One block's tensors under "<enc><l>.": nm = ln1, q, k, v, out, ln2, fc1, fc2 module paths.
 * q, k, v are declared adjacently (weights, then biases): the loader fuses them. */
static void block_tensors(builder *b, bool base, const char *enc, int64_t l, bool qkv_bias,
                          const char *const nm[8]) {
    const int64_t D = b->d->D, I = b->d->I;
    const long long k = (long long)l;
    T1(b, base, D, "%s%lld.%s.weight", enc, k, nm[0]);
    T1(b, base, D, "%s%lld.%s.bias", enc, k, nm[0]);
    for (int i = 1; i <= 3; i++) T2(b, base, D, D, "%s%lld.%s.weight", enc, k, nm[i]);
    for (int i = 1; qkv_bias && i <= 3; i++) T1(b, base, D, "%s%lld.%s.bias", enc, k, nm[i]);
    T2(b, base, D, D, "%s%lld.%s.weight", enc, k, nm[4]);
    T1(b, base, D, "%s%lld.%s.bias", enc, k, nm[4]);
    T1(b, base, D, "%s%lld.%s.weight", enc, k, nm[5]);
    T1(b, base, D, "%s%lld.%s.bias", enc, k, nm[5]);
    T2(b, base, I, D, "%s%lld.%s.weight", enc, k, nm[6]);
    T1(b, base, I, "%s%lld.%s.bias", enc, k, nm[6]);
    T2(b, base, D, I, "%s%lld.%s.weight", enc, k, nm[7]);
    T1(b, base, D, "%s%lld.%s.bias", enc, k, nm[7]);
}

/* Layers of a vision transformer: embeddings (the patch convolution's MACs), the blocks, the
 * final norm and the head. The cumulative counts are written in closed form. */
static void vision_layers(builder *b, const char *fin, const char *out, bool fin_all_tokens) {
    mc_model_desc *d = b->d;
    const double D = (double)d->D, T = (double)d->T;
    const double patch = (T - 1) * D * (double)(d->C * d->patch * d->patch);
    const double blk = mc_desc_block_mac(T, D, (double)d->I);
    mc_desc_layer *l = layer(b, "embeddings", 2, d->T, d->D, 0, patch);
    if (l) l->mac_cum = patch, l->can_start = true;
    for (int64_t k = 1; k <= d->L; k++) {
        char name[24];
        snprintf(name, sizeof name, "%lld", (long long)k);
        if ((l = layer(b, name, 2, d->T, d->D, 0, blk)))
            l->mac_cum = patch + (double)k * blk, l->has_attention = l->can_start = true;
    }
    const double full = patch + (double)d->L * blk;
    l = fin_all_tokens ? layer(b, fin, 2, d->T, d->D, 0, 0) : layer(b, fin, 1, d->D, 0, 0, 0);
    if (l) l->mac_cum = full;
    if ((l = layer(b, out, 1, d->out_dim, 0, 0, D * (double)d->out_dim)))
        l->mac_cum = full + D * (double)d->out_dim;
    d->out_name = out;
}

static mc_status build_vit(builder *b, const json_t *cfg, const char *f, mc_error *err) {
    mc_model_desc *d = b->d;
    MC_TRY(read_vision_dims(d, cfg, f, 16, "gelu", 1e-12, err));
    MC_TRY(mc_json_get_bool(cfg, "qkv_bias", false, true, &d->qkv_bias, f, err));
    MC_TRY(read_n_labels(cfg, f, &d->n_labels, err));
    d->out_dim = d->n_labels;
    d->base_prefix = "vit.";
    const int64_t D = d->D;
    tensor(b, true, 3, 1, 1, D, 0, "embeddings.cls_token");
    tensor(b, true, 3, 1, d->T, D, 0, "embeddings.position_embeddings");
    tensor(b, true, 4, D, d->C, d->patch, d->patch,
           "embeddings.patch_embeddings.projection.weight");
    T1(b, true, D, "embeddings.patch_embeddings.projection.bias");
    static const char *const nm[8] = {"layernorm_before",        "attention.attention.query",
                                      "attention.attention.key", "attention.attention.value",
                                      "attention.output.dense",  "layernorm_after",
                                      "intermediate.dense",      "output.dense"};
    for (int64_t l = 0; l < d->L; l++) block_tensors(b, true, "encoder.layer.", l, d->qkv_bias, nm);
    T1(b, true, D, "layernorm.weight");
    T1(b, true, D, "layernorm.bias");
    T2(b, false, d->out_dim, D, "classifier.weight");
    T1(b, false, d->out_dim, "classifier.bias");
    vision_layers(b, "layernorm", "logits", true);
    return MC_OK;
}

/* CLIPConfig: vision_config, overridden key by key by a non-null legacy vision_config_dict
 * (configuration_clip.py); a CLIPVisionModelWithProjection folder has it at the top level.
 * Likewise text_config / text_config_dict. *sub is a new reference. */
static mc_status clip_sub(const json_t *cfg, const char *f, const char *key, const char *dict,
                          bool *top, json_t **sub, mc_error *err) {
    const char *mt = NULL;
    MC_TRY(mc_json_get_str(cfg, "model_type", false, "", &mt, f, err));
    *top = strcmp(mt, "clip_vision_model") == 0 && strcmp(key, "vision_config") == 0;
    json_t *a = NULL, *v = NULL;
    if (*top) {
        *sub = json_deep_copy(cfg);
    } else {
        MC_TRY(mc_json_get_obj(cfg, key, false, &a, f, err));
        MC_TRY(mc_json_get_obj(cfg, dict, false, &v, f, err));
        *sub = a ? json_deep_copy(a) : json_object();
        if (*sub && v) json_object_update(*sub, v);
    }
    if (!*sub) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    return MC_OK;
}

static mc_status build_clip_vision(builder *b, const json_t *cfg, const char *f, mc_error *err) {
    mc_model_desc *d = b->d;
    json_t *vc = NULL;
    bool top;
    MC_TRY(clip_sub(cfg, f, "vision_config", "vision_config_dict", &top, &vc, err));
    int64_t proj = 512;
    mc_status s = read_vision_dims(d, vc, f, 32, "quick_gelu", 1e-5, err);
    if (s == MC_OK)
        s = mc_json_get_int(top ? vc : cfg, "projection_dim", false, 512, &proj, f, err);
    json_decref(vc);
    MC_TRY(s);
    if (proj < 1 || proj > 65536)
        return MC_FAIL(err, MC_ERR_FORMAT, "%s: projection_dim %lld out of range", f,
                       (long long)proj);
    d->out_dim = proj;
    d->qkv_bias = true;
    d->base_prefix = "vision_model.";
    const int64_t D = d->D;
    T1(b, true, D, "embeddings.class_embedding");
    tensor(b, true, 4, D, d->C, d->patch, d->patch, "embeddings.patch_embedding.weight");
    T2(b, true, d->T, D, "embeddings.position_embedding.weight");
    T1(b, true, D, "pre_layrnorm.weight");
    T1(b, true, D, "pre_layrnorm.bias");
    static const char *const nm[8] = {
        "layer_norm1",        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
        "self_attn.out_proj", "layer_norm2",      "mlp.fc1",          "mlp.fc2"};
    for (int64_t l = 0; l < d->L; l++) block_tensors(b, true, "encoder.layers.", l, true, nm);
    T1(b, true, D, "post_layernorm.weight");
    T1(b, true, D, "post_layernorm.bias");
    T2(b, false, proj, D, "visual_projection.weight");
    vision_layers(b, "post_layernorm", "image_embeds", false);
    return MC_OK;
}

/* ---- the text towers ------------------------------------------------------------------------ */

static mc_status cfg_int(const json_t *o, const char *k, int64_t dflt, int64_t lo, int64_t hi,
                         int64_t *out, const char *file, mc_error *err) {
    MC_TRY(mc_json_get_int(o, k, false, dflt, out, file, err));
    if (*out < lo || *out > hi)
        return MC_FAIL(err, MC_ERR_CONFIG, "%s: %s = %lld is out of range [%lld, %lld]", file, k,
                       (long long)*out, (long long)lo, (long long)hi);
    return MC_OK;
}

/* Text layers per sequence of T tokens: embeddings (a lookup, no MACs) and the blocks. */
static void text_layers(builder *b) {
    mc_model_desc *d = b->d;
    const double blk = mc_desc_block_mac((double)d->T, (double)d->D, (double)d->I);
    mc_desc_layer *l = layer(b, "embeddings", 2, d->T, d->D, 0, 0);
    for (int64_t k = 1; k <= d->L; k++) {
        char name[24];
        snprintf(name, sizeof name, "%lld", (long long)k);
        if ((l = layer(b, name, 2, d->T, d->D, 0, blk)))
            l->mac_cum = (double)k * blk, l->has_attention = true;
    }
}

static mc_status build_clip_text(builder *b, const json_t *cfg, const char *f, mc_error *err) {
    mc_model_desc *d = b->d;
    json_t *tc = NULL;
    bool top;
    MC_TRY(clip_sub(cfg, f, "text_config", "text_config_dict", &top, &tc, err));
    mc_status s;
    if ((s = cfg_int(tc, "vocab_size", 49408, 1, INT32_MAX, &d->vocab, f, err)) ||
        (s = cfg_int(tc, "hidden_size", 512, 1, 65536, &d->D, f, err)) ||
        (s = cfg_int(tc, "intermediate_size", 2048, 1, 1 << 20, &d->I, f, err)) ||
        (s = cfg_int(tc, "num_hidden_layers", 12, 1, 1024, &d->L, f, err)) ||
        (s = cfg_int(tc, "num_attention_heads", 8, 1, 4096, &d->H, f, err)) ||
        (s = cfg_int(tc, "max_position_embeddings", 77, 2, 1 << 20, &d->T, f, err)) ||
        (s = cfg_act(tc, "hidden_act", "quick_gelu", &d->act, f, err)) ||
        (s = mc_json_get_num(tc, "layer_norm_eps", false, 1e-5, &d->eps, f, err)) ||
        (s = cfg_int(cfg, "projection_dim", 512, 1, 65536, &d->out_dim, f, err))) {
        json_decref(tc);
        return s;
    }
    json_decref(tc);
    if (d->D % d->H)
        return MC_FAIL(err, MC_ERR_CONFIG,
                       "%s: hidden_size %lld is not a multiple of "
                       "num_attention_heads %lld",
                       f, (long long)d->D, (long long)d->H);
    d->qkv_bias = true;
    d->base_prefix = "text_model.";
    const int64_t D = d->D;
    T2(b, true, d->vocab, D, "embeddings.token_embedding.weight");
    T2(b, true, d->T, D, "embeddings.position_embedding.weight");
    static const char *const nm[8] = {
        "layer_norm1",        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
        "self_attn.out_proj", "layer_norm2",      "mlp.fc1",          "mlp.fc2"};
    for (int64_t l = 0; l < d->L; l++) block_tensors(b, true, "encoder.layers.", l, true, nm);
    T1(b, true, D, "final_layer_norm.weight");
    T1(b, true, D, "final_layer_norm.bias");
    T2(b, false, d->out_dim, D, "text_projection.weight");
    text_layers(b);
    const double full = (double)d->L * mc_desc_block_mac((double)d->T, (double)D, (double)d->I);
    mc_desc_layer *l = layer(b, "final_layer_norm", 2, d->T, D, 0, 0);
    if (l) l->mac_cum = full;
    /* the projection of the pooled (end-token) row */
    if ((l = layer(b, "text_embeds", 1, d->out_dim, 0, 0, (double)D * (double)d->out_dim)))
        l->mac_cum = full + (double)D * (double)d->out_dim;
    d->out_name = "text_embeds";
    return MC_OK;
}

static mc_status build_mpnet(builder *b, const json_t *c, const char *f, mc_error *err) {
    mc_model_desc *d = b->d;
    int64_t pad = 1;
    mc_status s;
    if ((s = cfg_int(c, "vocab_size", 30527, 1, INT32_MAX, &d->vocab, f, err)) ||
        (s = cfg_int(c, "hidden_size", 768, 1, 65536, &d->D, f, err)) ||
        (s = cfg_int(c, "intermediate_size", 3072, 1, 1 << 20, &d->I, f, err)) ||
        (s = cfg_int(c, "num_hidden_layers", 12, 1, 1024, &d->L, f, err)) ||
        (s = cfg_int(c, "num_attention_heads", 12, 1, 4096, &d->H, f, err)) ||
        (s = cfg_int(c, "max_position_embeddings", 512, 3, 1 << 20, &d->T, f, err)) ||
        (s = cfg_int(c, "relative_attention_num_buckets", 32, 2, 4096, &d->buckets, f, err)) ||
        (s = cfg_int(c, "pad_token_id", 1, 0, INT32_MAX, &pad, f, err)) ||
        (s = cfg_act(c, "hidden_act", "gelu", &d->act, f, err)) ||
        (s = mc_json_get_num(c, "layer_norm_eps", false, 1e-12, &d->eps, f, err)))
        return s;
    if (d->buckets < 32)
        return MC_FAIL(err, MC_ERR_CONFIG,
                       "%s: relative_attention_num_buckets %lld < 32 (the bias "
                       "always uses 32 buckets)",
                       f, (long long)d->buckets);
    if (pad != 1)
        return MC_FAIL(err, MC_ERR_UNSUPPORTED,
                       "%s: pad_token_id %lld: miclip's MPNet position "
                       "ids assume padding_idx 1",
                       f, (long long)pad);
    if (d->D % d->H)
        return MC_FAIL(err, MC_ERR_CONFIG,
                       "%s: hidden_size is not a multiple of num_attention_heads", f);
    d->qkv_bias = true;
    d->out_dim = d->D;
    d->base_prefix = "mpnet.";
    const int64_t D = d->D;
    T2(b, true, d->vocab, D, "embeddings.word_embeddings.weight");
    T2(b, true, d->T, D, "embeddings.position_embeddings.weight");
    T1(b, true, D, "embeddings.LayerNorm.weight");
    T1(b, true, D, "embeddings.LayerNorm.bias");
    T2(b, true, d->buckets, d->H, "encoder.relative_attention_bias.weight");
    static const char *const nm[8] = {"attention.LayerNorm", "attention.attn.q", "attention.attn.k",
                                      "attention.attn.v",    "attention.attn.o", "output.LayerNorm",
                                      "intermediate.dense",  "output.dense"};
    for (int64_t l = 0; l < d->L; l++) block_tensors(b, true, "encoder.layer.", l, true, nm);
    text_layers(b);
    /* mean pooling over the tokens (no MACs counted), then an optional L2 normalisation */
    mc_desc_layer *l = layer(b, "sentence_embedding", 1, D, 0, 0, 0);
    if (l) l->mac_cum = (double)d->L * mc_desc_block_mac((double)d->T, (double)D, (double)d->I);
    d->out_name = "sentence_embedding";
    return MC_OK;
}

/* ---- ResNet ---------------------------------------------------------------------------------- */

static double conv_mac(int64_t cin, int64_t cout, int64_t k, int64_t Ho, int64_t Wo) {
    return (double)cin * (double)cout * (double)(k * k) * (double)Ho * (double)Wo;
}

/* A ResNet conv as nn.h runs it: k x k, stride, padding k/2. */
static mc_conv_desc rn_conv(int64_t cin, int64_t cout, int64_t k, int64_t stride) {
    return (mc_conv_desc){
        .cin = cin, .cout = cout, .kh = k, .kw = k, .stride = stride, .pad = k / 2};
}

/* Walks the network for an H x W input in forward order (per bottleneck layer: shortcut, 1x1,
 * 3x3, 1x1, the layer, the stage), calling visit(u, i, C, h, w, mac) with the layer index i in
 * d->layers and that layer's own MACs, and widening *work to the largest im2col workspace. */
typedef void (*rn_visit)(void *u, int i, int64_t C, int64_t h, int64_t w, double mac);

static void resnet_walk(const mc_model_desc *d, int64_t H, int64_t W, rn_visit visit, void *u,
                        size_t *work) {
    int i = 0;
    size_t wk = 0, c;
    mc_conv_desc cv = rn_conv(d->C, d->E, 7, 2);
    if ((c = mc_conv2d_workspace(&cv, H, W)) > wk) wk = c;
    int64_t h = mc_conv_out_size(H, 7, 2, 3), w = mc_conv_out_size(W, 7, 2, 3);
    visit(u, i++, d->E, h, w, conv_mac(d->C, d->E, 7, h, w));
    h = mc_conv_out_size(h, 3, 2, 1), w = mc_conv_out_size(w, 3, 2, 1);
    visit(u, i++, d->E, h, w, 0); /* max pool */
    int64_t in = d->E;
    for (int s = 0; s < d->n_stages; s++) {
        const int64_t out = d->hs[s], mid = out / 4; /* reduction 4 */
        for (int l = 0; l < d->depth[s]; l++) {
            const int64_t cin = l == 0 ? in : out;
            const int64_t stride = (l == 0 && (s > 0 || d->ds_first)) ? 2 : 1;
            /* v1.5: the stride sits on the 3x3 unless downsample_in_bottleneck */
            const mc_conv_desc ca = rn_conv(cin, mid, 1, d->ds_bneck ? stride : 1);
            const mc_conv_desc cb = rn_conv(mid, mid, 3, d->ds_bneck ? 1 : stride);
            const int64_t ha = mc_conv_out_size(h, 1, ca.stride, 0);
            const int64_t wa = mc_conv_out_size(w, 1, ca.stride, 0);
            const int64_t hb = mc_conv_out_size(ha, 3, cb.stride, 1);
            const int64_t wb = mc_conv_out_size(wa, 3, cb.stride, 1);
            const bool has_sc = cin != out || stride != 1;
            if (has_sc) {
                cv = rn_conv(cin, out, 1, stride);
                if ((c = mc_conv2d_workspace(&cv, h, w)) > wk) wk = c;
            }
            if ((c = mc_conv2d_workspace(&ca, h, w)) > wk) wk = c;
            if ((c = mc_conv2d_workspace(&cb, ha, wa)) > wk) wk = c;
            visit(u, i++, out, hb, wb, has_sc ? conv_mac(cin, out, 1, hb, wb) : 0);
            visit(u, i++, mid, ha, wa, conv_mac(cin, mid, 1, ha, wa));
            visit(u, i++, mid, hb, wb, conv_mac(mid, mid, 3, hb, wb));
            visit(u, i++, out, hb, wb, conv_mac(mid, out, 1, hb, wb));
            visit(u, i++, out, hb, wb, 0); /* the layer: residual add + activation */
            if (l == d->depth[s] - 1) visit(u, i++, out, hb, wb, 0); /* the stage */
            h = hb, w = wb;
        }
        in = out;
    }
    visit(u, i++, in, 1, 1, 0); /* pooler */
    if (work) *work = wk;
}

static void set_shape(void *u, int i, int64_t C, int64_t h, int64_t w, double mac) {
    mc_model_desc *d = u;
    mc_desc_layer *l = &d->layers[i];
    l->shape[0] = C, l->shape[1] = h, l->shape[2] = w;
    l->mac = mac;
}

void mc_model_desc_set_input(mc_model_desc *d, int64_t H, int64_t W) {
    if (d->family != MC_DESC_RESNET) return;
    resnet_walk(d, H, W, set_shape, d, NULL);
    double cum = 0;
    for (int i = 0; i < d->n_layers; i++) cum += d->layers[i].mac, d->layers[i].mac_cum = cum;
    d->mac = cum;
    d->in_h = H, d->in_w = W;
}

static void conv_bn_tensors(builder *b, int64_t cin, int64_t cout, int64_t k, const char *path) {
    tensor(b, true, 4, cout, cin, k, k, "%s.convolution.weight", path);
    T1(b, true, cout, "%s.normalization.weight", path);
    T1(b, true, cout, "%s.normalization.bias", path);
    T1(b, true, cout, "%s.normalization.running_mean", path);
    T1(b, true, cout, "%s.normalization.running_var", path);
}

static mc_status build_resnet(builder *b, const json_t *cfg, const char *f, mc_error *err) {
    mc_model_desc *d = b->d;
    const char *lt;
    int n1 = 0, n2 = 0;
    MC_TRY(mc_json_get_int(cfg, "num_channels", false, 3, &d->C, f, err));
    MC_TRY(mc_json_get_int(cfg, "embedding_size", false, 64, &d->E, f, err));
    MC_TRY(mc_json_get_str(cfg, "layer_type", false, "bottleneck", &lt, f, err));
    MC_TRY(cfg_act(cfg, "hidden_act", "relu", &d->act, f, err));
    MC_TRY(mc_json_get_bool(cfg, "downsample_in_first_stage", false, false, &d->ds_first, f, err));
    MC_TRY(mc_json_get_bool(cfg, "downsample_in_bottleneck", false, false, &d->ds_bneck, f, err));
    if (strcmp(lt, "bottleneck") != 0)
        return MC_FAIL(err, MC_ERR_UNSUPPORTED,
                       "%s: layer_type \"%s\" is not supported (only "
                       "\"bottleneck\", as ResNet-50)",
                       f, lt);
    if (json_object_get(cfg, "hidden_sizes"))
        MC_TRY(
            mc_json_get_int_array(cfg, "hidden_sizes", d->hs, -1, MC_DESC_MAX_STAGES, &n1, f, err));
    else
        n1 = 4, d->hs[0] = 256, d->hs[1] = 512, d->hs[2] = 1024, d->hs[3] = 2048;
    if (json_object_get(cfg, "depths"))
        MC_TRY(mc_json_get_int_array(cfg, "depths", d->depth, -1, MC_DESC_MAX_STAGES, &n2, f, err));
    else
        n2 = 4, d->depth[0] = 3, d->depth[1] = 4, d->depth[2] = 6, d->depth[3] = 3;
    if (n1 != n2 || n1 < 1)
        return MC_FAIL(err, MC_ERR_FORMAT, "%s: hidden_sizes has %d entries but depths has %d", f,
                       n1, n2);
    d->n_stages = n1;
    if (d->C < 1 || d->C > 64 || d->E < 1 || d->E > 65536)
        return MC_FAIL(err, MC_ERR_FORMAT,
                       "%s: num_channels %lld / embedding_size %lld out of range", f,
                       (long long)d->C, (long long)d->E);
    for (int s = 0; s < n1; s++)
        if (d->hs[s] < 4 || d->hs[s] > 65536 || d->depth[s] < 1 || d->depth[s] > 1000)
            return MC_FAIL(err, MC_ERR_FORMAT,
                           "%s: stage %d: hidden size %lld / depth %lld out of "
                           "range",
                           f, s, (long long)d->hs[s], (long long)d->depth[s]);
    MC_TRY(read_n_labels(cfg, f, &d->n_labels, err));
    d->out_dim = d->n_labels;
    d->base_prefix = "resnet.";
    d->image = 224;
    /* the weight table, in load order: stem, then per layer shortcut, 1x1, 3x3, 1x1 */
    char path[MC_DESC_TENSOR_NAME_MAX], name[MC_DESC_LAYER_NAME_MAX];
    conv_bn_tensors(b, d->C, d->E, 7, "embedder.embedder");
    layer(b, "embedder.embedder", 3, d->E, 1, 1, 0);
    mc_desc_layer *l = layer(b, "embedder", 3, d->E, 1, 1, 0);
    if (l) l->can_start = true;
    int64_t in = d->E;
    for (int s = 0; s < n1; s++) {
        const int64_t out = d->hs[s], mid = out / 4;
        for (int k = 0; k < d->depth[s]; k++) {
            const int64_t cin = k == 0 ? in : out;
            const int64_t stride = (k == 0 && (s > 0 || d->ds_first)) ? 2 : 1;
            if (cin != out || stride != 1) {
                snprintf(path, sizeof path, "encoder.stages.%d.layers.%d.shortcut", s, k);
                conv_bn_tensors(b, cin, out, 1, path);
            }
            snprintf(path, sizeof path, "encoder.stages.%d.layers.%d.layer.0", s, k);
            conv_bn_tensors(b, cin, mid, 1, path);
            snprintf(path, sizeof path, "encoder.stages.%d.layers.%d.layer.1", s, k);
            conv_bn_tensors(b, mid, mid, 3, path);
            snprintf(path, sizeof path, "encoder.stages.%d.layers.%d.layer.2", s, k);
            conv_bn_tensors(b, mid, out, 1, path);
            snprintf(name, sizeof name, "stages.%d.layers.%d.shortcut", s, k);
            layer(b, name, 3, out, 1, 1, 0);
            for (int j = 0; j < 3; j++) {
                snprintf(name, sizeof name, "stages.%d.layers.%d.layer.%d", s, k, j);
                layer(b, name, 3, j == 2 ? out : mid, 1, 1, 0);
            }
            snprintf(name, sizeof name, "stages.%d.layers.%d", s, k);
            if ((l = layer(b, name, 3, out, 1, 1, 0))) l->can_start = true;
            if (k == d->depth[s] - 1) {
                snprintf(name, sizeof name, "stages.%d", s);
                if ((l = layer(b, name, 3, out, 1, 1, 0))) l->can_start = true;
            }
        }
        in = out;
    }
    layer(b, "pooler", 3, in, 1, 1, 0);
    layer(b, "logits", 1, d->out_dim, 0, 0, (double)in * (double)d->out_dim);
    T2(b, false, d->out_dim, in, "classifier.1.weight");
    T1(b, false, d->out_dim, "classifier.1.bias");
    d->out_name = "logits";
    if (b->nomem) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory describing %s", f);
    mc_model_desc_set_input(d, 224, 224);
    return MC_OK;
}

/* ---- build / lookup -------------------------------------------------------------------------- */

mc_status mc_model_desc_build(const json_t *cfg, const char *file, mc_desc_family fam,
                              mc_model_desc **out, mc_error *err) {
    *out = NULL;
    mc_model_desc *d = calloc(1, sizeof *d);
    if (!d) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    d->family = fam;
    d->base_prefix = "";
    d->C = 3;
    builder b = {.d = d};
    mc_status s;
    switch (fam) {
    case MC_DESC_VIT: s = build_vit(&b, cfg, file, err); break;
    case MC_DESC_RESNET: s = build_resnet(&b, cfg, file, err); break;
    case MC_DESC_CLIP_VISION: s = build_clip_vision(&b, cfg, file, err); break;
    case MC_DESC_CLIP_TEXT: s = build_clip_text(&b, cfg, file, err); break;
    case MC_DESC_MPNET: s = build_mpnet(&b, cfg, file, err); break;
    default: s = MC_FAIL(err, MC_ERR_ARG, "%s: unknown model family %d", file, (int)fam);
    }
    if (s == MC_OK && b.nomem) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory describing %s", file);
    if (s == MC_OK) {
        for (int i = 0; i < d->n_tensors; i++) {
            int64_t n = 1;
            for (int k = 0; k < d->tensors[i].ndim; k++) {
                const int64_t v = d->tensors[i].shape[k];
                if (v <= 0 || v > (int64_t)1 << 32 || n > INT64_MAX / v) {
                    s = MC_FAIL(err, MC_ERR_FORMAT,
                                "%s: tensor %s: the config implies dimension "
                                "%d = %lld, which is not a valid size",
                                file, d->tensors[i].name, k, (long long)v);
                    break;
                }
                n *= v;
            }
            if (s != MC_OK) break;
            d->params += n;
        }
    }
    if (s != MC_OK) {
        mc_model_desc_free(&d);
        return s;
    }
    d->mac = d->layers[d->n_layers - 1].mac_cum;
    *out = d;
    return MC_OK;
}

int mc_model_desc_layer_index(const mc_model_desc *d, const char *name) {
    for (int i = 0; i < d->n_layers; i++)
        if (strcmp(d->layers[i].name, name) == 0) return i;
    return -1;
}

int mc_model_desc_find_layer(const mc_model_desc *d, const char *name) {
    const char *n = name;
    char buf[MC_DESC_LAYER_NAME_MAX];
    if (d->family == MC_DESC_RESNET) {
        /* HF module paths: an optional "resnet." / "resnet.encoder." prefix; modules whose
         * output is another listed tensor are aliases of it */
        if (strncmp(n, "resnet.encoder.", 15) == 0)
            n += 15;
        else if (strncmp(n, "resnet.", 7) == 0)
            n += 7;
        const size_t len = strlen(n);
        if (strcmp(n, "embedder.pooler") == 0)
            n = "embedder";
        else if (strcmp(n, "encoder") == 0 && d->n_layers >= 3)
            n = d->layers[d->n_layers - 3].name;
        else if (len > 11 && len < sizeof buf && strcmp(n + len - 11, ".activation") == 0 &&
                 strncmp(n, "stages.", 7) == 0) {
            memcpy(buf, n, len - 11); /* stages.S.layers.L.activation: the layer's output */
            buf[len - 11] = '\0';
            n = buf;
        }
    } else if (strcmp(n, "0") == 0) {
        n = "embeddings";
    } else if (strcmp(n, "last_hidden_state") == 0) { /* HF output names */
        n = d->family == MC_DESC_VIT           ? "layernorm"
            : d->family == MC_DESC_CLIP_TEXT   ? "final_layer_norm"
            : d->family == MC_DESC_CLIP_VISION ? d->layers[d->n_layers - 3].name
                                               : d->layers[d->n_layers - 2].name;
    } else if (strcmp(n, "pooler_output") == 0 && d->family == MC_DESC_CLIP_VISION) {
        n = "post_layernorm";
    }
    return mc_model_desc_layer_index(d, n);
}

/* ---- arena ---------------------------------------------------------------------------------- */

size_t mc_desc_text_arena_floats(int64_t D, int64_t I, int64_t H, int64_t rows, int64_t max_len,
                                 int64_t n_seq) {
    /* x, LN, q|k|v, context (6 D per row), the MLP hidden (I per row), one sequence's scores and
     * relative bias (max_len^2 (1 + H)), and one pooled row per sequence */
    return (size_t)rows * (size_t)(6 * D + I) + (size_t)(max_len * max_len) * (size_t)(1 + H) +
           (size_t)n_seq * (size_t)D;
}

typedef struct {
    size_t act;
} rn_arena;

static void widest(void *u, int i, int64_t C, int64_t h, int64_t w, double mac) {
    (void)i, (void)mac;
    rn_arena *a = u;
    const size_t n = (size_t)C * (size_t)h * (size_t)w;
    if (n > a->act) a->act = n;
}

void mc_desc_resnet_buffers(const mc_model_desc *d, int64_t H, int64_t W, size_t *act,
                            size_t *work) {
    rn_arena a = {0};
    resnet_walk(d, H, W, widest, &a, work);
    const size_t lg = (size_t)d->out_dim; /* the logits vector counts among the maps */
    *act = lg > a.act ? lg : a.act;
}

mc_desc_vit_arena mc_desc_vit_arena_layout(const mc_model_desc *d, int64_t B) {
    mc_desc_vit_arena p;
    const size_t N = (size_t)(B * d->T), D = (size_t)d->D;
    size_t o = 0;
    p.x = o, o += N * D;
    p.ln = o, o += N * D;
    p.qkv = o, o += N * 3 * D;
    p.ctx = o, o += N * D;
    p.mlp = o, o += N * (size_t)d->I;
    mc_attn_desc ad = {.B = B, .T = d->T, .H = d->H, .head_dim = d->D / d->H};
    p.work = o, o += mc_attention_workspace(&ad);
    p.probs = o, o += (size_t)(B * d->H) * (size_t)(d->T * d->T);
    const size_t K = (size_t)(d->C * d->patch * d->patch); /* one unfolded patch */
    p.patches = o, o += (size_t)B * (size_t)(d->side * d->side) * K;
    p.pooled = o, o += (size_t)B * D;
    p.out = o, o += (size_t)B * (size_t)d->out_dim;
    p.total = o;
    return p;
}

size_t mc_model_desc_arena_floats(const mc_model_desc *d, int64_t B, int64_t H, int64_t W) {
    switch (d->family) {
    case MC_DESC_VIT:
    case MC_DESC_CLIP_VISION: return mc_desc_vit_arena_layout(d, B).total;
    case MC_DESC_RESNET: {
        /* five activation buffers of the largest per-image map, the im2col workspace, the pooled
         * features and the logits (resnet.c) */
        size_t act, work;
        mc_desc_resnet_buffers(d, H, W, &act, &work);
        const size_t tail = (size_t)d->hs[d->n_stages - 1] + (size_t)d->out_dim;
        return 5 * (size_t)B * act + work + (size_t)B * tail;
    }
    case MC_DESC_CLIP_TEXT:
    case MC_DESC_MPNET: return mc_desc_text_arena_floats(d->D, d->I, d->H, B * d->T, d->T, B);
    default: return 0;
    }
}
