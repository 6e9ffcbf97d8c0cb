/* text_encoder.c - the CLIP text tower (+ text_projection) and the MPNet sentence encoder
 * (text.h; specs/hf-models.md 3.4 and 6.3).
 *
 * Both run on packed token rows: the real tokens of every sequence in the batch back to back,
 * [T_total, D]. Linear layers are one GEMM over all of them; attention runs per sequence
 * (nn_text.h). For CLIP only the tokens up to the first end token are run: the causal mask
 * makes the pooled output independent of what follows it, as the reference pads to 77.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/hash.h"
#include "miclip/hf.h"
#include "miclip/json.h"
#include "miclip/log.h"
#include "miclip/nn.h"
#include "miclip/nn_text.h"
#include "miclip/safetensors.h"
#include "text_internal.h"
#include "text_encoder_int.h"



typedef struct {
    const char *name;
    int ndim;
    int64_t shape[2];
    float *dst;
} wslot;


/* ---- loading --------------------------------------------------------------------------- */

static mc_status cfg_int(const json_t *o, const char *k, int64_t dflt, int64_t lo, int64_t hi, int64_t *out,
                         const char *file, mc_error *err) {
    MC_TRY(mc_json_get_int(o, k, false, dflt, out, file, err));
    if (*out < lo || *out > hi)
        return MC_FAIL(err, MC_ERR_CONFIG, "%s: %s = %lld is out of range [%lld, %lld]", file, k, (long long)*out,
                       (long long)lo, (long long)hi);
    return MC_OK;
}

static mc_status load_weights(mc_text_encoder *e, const mc_st_file *st, const char *prefix, wslot *w, size_t n,
                              mc_error *err) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t c;
        if (!mc_size_prod(w[i].shape, w[i].ndim, &c) || !mc_size_add(total, c, &total))
            return MC_FAIL(err, MC_ERR_NOMEM, "%s: weight sizes overflow", e->dir);
    }
    e->block = mc_alloc_array(total, sizeof(float));
    if (!e->block) return MC_FAIL(err, MC_ERR_NOMEM, "%s: cannot allocate %zu floats of weights", e->dir, total);
    float *p = e->block;
    for (size_t i = 0; i < n; i++) {
        char name[256];
        if (!mc_snprintf(name, sizeof name, "%s%s", prefix, w[i].name))
            return MC_FAIL(err, MC_ERR_ARG, "tensor name too long: %s", w[i].name);
        size_t c;
        mc_size_prod(w[i].shape, w[i].ndim, &c);
        MC_TRY(mc_st_read_f32_finite(st, name, w[i].ndim, w[i].shape, p, err));
        /* the fused qkv slots point into the middle of a block: they carry dst */
        if (w[i].dst) memcpy(w[i].dst, p, c * sizeof(float));
        p += c;
    }
    return MC_OK;
}

/* Declares one tensor whose storage is the next slice of the block (assigned in order). */
typedef struct {
    wslot *w;
    size_t n, cap;
    char (*names)[160];
} wlist;

static bool wl_add(wlist *l, const char *name, int ndim, int64_t d0, int64_t d1) {
    if (l->n == l->cap) return false;
    mc_snprintf(l->names[l->n], sizeof l->names[0], "%s", name);
    l->w[l->n] = (wslot){l->names[l->n], ndim, {d0, d1}, NULL};
    l->n++;
    return true;
}

/* Assigns each declared tensor's pointer from the block, in order. */
static float *wl_ptr(const mc_text_encoder *e, const wlist *l, size_t idx) {
    float *p = e->block;
    for (size_t i = 0; i < idx; i++) {
        size_t c;
        mc_size_prod(l->w[i].shape, l->w[i].ndim, &c);
        p += c;
    }
    return p;
}

static mc_status load_clip(mc_text_encoder *e, const mc_hf_config *cfg, const mc_st_file *st, mc_error *err) {
    const char *file = cfg->path;
    json_t *tc = json_object();
    if (!tc) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    json_t *a = json_object_get(cfg->root, "text_config"), *b = json_object_get(cfg->root, "text_config_dict");
    if (a && json_is_object(a)) json_object_update(tc, a);
    if (b && json_is_object(b)) json_object_update(tc, b); /* the legacy dict overrides (specs 3.1) */
    mc_status s;
    int64_t act_len = 0;
    const char *act = NULL;
    double eps = 1e-5;
    if ((s = cfg_int(tc, "vocab_size", 49408, 1, INT32_MAX, &e->vocab, file, err)) ||
        (s = cfg_int(tc, "hidden_size", 512, 1, 65536, &e->D, file, err)) ||
        (s = cfg_int(tc, "intermediate_size", 2048, 1, 1 << 20, &e->I, file, err)) ||
        (s = cfg_int(tc, "num_hidden_layers", 12, 1, 1024, &e->L, file, err)) ||
        (s = cfg_int(tc, "num_attention_heads", 8, 1, 4096, &e->H, file, err)) ||
        (s = cfg_int(tc, "max_position_embeddings", 77, 2, 1 << 20, &e->max_pos, file, err)) ||
        (s = mc_json_get_str(tc, "hidden_act", false, "quick_gelu", &act, file, err)) ||
        (s = mc_json_get_num(tc, "layer_norm_eps", false, 1e-5, &eps, file, err)) ||
        (s = cfg_int(cfg->root, "projection_dim", 512, 1, 65536, &e->proj, file, err)) ||
        (s = mc_act_parse(act, &e->act, err))) {
        json_decref(tc);
        return s;
    }
    (void)act_len;
    json_decref(tc);
    e->eps = (float)eps;
    if (e->D % e->H) return MC_FAIL(err, MC_ERR_CONFIG, "%s: hidden_size %lld is not a multiple of num_attention_heads %lld",
                                    file, (long long)e->D, (long long)e->H);
    const char *prefix = mc_st_find(st, "text_model.embeddings.token_embedding.weight") ? "text_model." : "";
    if (!mc_st_find(st, "text_projection.weight"))
        return MC_FAIL(err, MC_ERR_SHAPE, "%s: tensor 'text_projection.weight' is missing; HINT: miclip needs the "
                       "CLIPModel (or CLIPTextModelWithProjection) weights, not the bare text model", mc_st_path(st));
    size_t cap = 8 + 16 * (size_t)e->L;
    wlist l = {calloc(cap, sizeof(wslot)), 0, cap, calloc(cap, 160)};
    e->layers = calloc((size_t)e->L, sizeof *e->layers);
    if (!l.w || !l.names || !e->layers) {
        free(l.w);
        free(l.names);
        return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    const int64_t D = e->D, I = e->I;
    char n[160];
    wl_add(&l, "embeddings.token_embedding.weight", 2, e->vocab, D);
    wl_add(&l, "embeddings.position_embedding.weight", 2, e->max_pos, D);
    for (int64_t i = 0; i < e->L; i++) {
#define LW(suffix, nd, d0, d1)                                                           \
    mc_snprintf(n, sizeof n, "encoder.layers.%lld.%s", (long long)i, suffix);           \
    wl_add(&l, n, nd, d0, d1)
        LW("layer_norm1.weight", 1, D, 0); LW("layer_norm1.bias", 1, D, 0);
        LW("self_attn.q_proj.weight", 2, D, D); LW("self_attn.k_proj.weight", 2, D, D);
        LW("self_attn.v_proj.weight", 2, D, D);
        LW("self_attn.q_proj.bias", 1, D, 0); LW("self_attn.k_proj.bias", 1, D, 0); LW("self_attn.v_proj.bias", 1, D, 0);
        LW("self_attn.out_proj.weight", 2, D, D); LW("self_attn.out_proj.bias", 1, D, 0);
        LW("layer_norm2.weight", 1, D, 0); LW("layer_norm2.bias", 1, D, 0);
        LW("mlp.fc1.weight", 2, I, D); LW("mlp.fc1.bias", 1, I, 0);
        LW("mlp.fc2.weight", 2, D, I); LW("mlp.fc2.bias", 1, D, 0);
#undef LW
    }
    wl_add(&l, "final_layer_norm.weight", 1, D, 0);
    wl_add(&l, "final_layer_norm.bias", 1, D, 0);
    size_t n_text = l.n;
    wl_add(&l, "text_projection.weight", 2, e->proj, D);
    /* names carry the text_model. prefix except the projection */
    for (size_t i = 0; i < n_text; i++) {
        char tmp[160];
        mc_snprintf(tmp, sizeof tmp, "%s%s", prefix, l.names[i]);
        memcpy(l.names[i], tmp, sizeof tmp);
    }
    s = load_weights(e, st, "", l.w, l.n, err);
    if (s == MC_OK) {
        size_t k = 0;
        e->tok_emb = wl_ptr(e, &l, k++);
        e->pos_emb = wl_ptr(e, &l, k++);
        for (int64_t i = 0; i < e->L; i++) {
            text_layer *y = &e->layers[i];
            y->ln1_w = wl_ptr(e, &l, k++); y->ln1_b = wl_ptr(e, &l, k++);
            y->qkv_w = wl_ptr(e, &l, k); k += 3; /* q, k, v weights are adjacent: [3D, D] */
            y->qkv_b = wl_ptr(e, &l, k); k += 3; /* and so are the biases: [3D] */
            y->o_w = wl_ptr(e, &l, k++); y->o_b = wl_ptr(e, &l, k++);
            y->ln2_w = wl_ptr(e, &l, k++); y->ln2_b = wl_ptr(e, &l, k++);
            y->fc1_w = wl_ptr(e, &l, k++); y->fc1_b = wl_ptr(e, &l, k++);
            y->fc2_w = wl_ptr(e, &l, k++); y->fc2_b = wl_ptr(e, &l, k++);
        }
        e->final_ln_w = wl_ptr(e, &l, k++);
        e->final_ln_b = wl_ptr(e, &l, k++);
        e->proj_w = wl_ptr(e, &l, k++);
    }
    free(l.w);
    free(l.names);
    return s;
}

static mc_status load_mpnet(mc_text_encoder *e, const mc_hf_config *cfg, const mc_st_file *st, mc_error *err) {
    const char *file = cfg->path;
    const json_t *c = cfg->root;
    const char *act = NULL;
    double eps = 1e-12;
    int64_t pad = 1;
    mc_status s;
    if ((s = cfg_int(c, "vocab_size", 30527, 1, INT32_MAX, &e->vocab, file, err)) ||
        (s = cfg_int(c, "hidden_size", 768, 1, 65536, &e->D, file, err)) ||
        (s = cfg_int(c, "intermediate_size", 3072, 1, 1 << 20, &e->I, file, err)) ||
        (s = cfg_int(c, "num_hidden_layers", 12, 1, 1024, &e->L, file, err)) ||
        (s = cfg_int(c, "num_attention_heads", 12, 1, 4096, &e->H, file, err)) ||
        (s = cfg_int(c, "max_position_embeddings", 512, 3, 1 << 20, &e->max_pos, file, err)) ||
        (s = cfg_int(c, "relative_attention_num_buckets", 32, 2, 4096, &e->buckets, file, err)) ||
        (s = cfg_int(c, "pad_token_id", 1, 0, INT32_MAX, &pad, file, err)) ||
        (s = mc_json_get_str(c, "hidden_act", false, "gelu", &act, file, err)) ||
        (s = mc_json_get_num(c, "layer_norm_eps", false, 1e-12, &eps, file, err)) || (s = mc_act_parse(act, &e->act, err)))
        return s;
    if (e->buckets < 32)
        return MC_FAIL(err, MC_ERR_CONFIG, "%s: relative_attention_num_buckets %lld < 32 (the bias always uses 32 buckets)",
                       file, (long long)e->buckets);
    if (pad != 1)
        return MC_FAIL(err, MC_ERR_UNSUPPORTED, "%s: pad_token_id %lld: miclip's MPNet position ids assume padding_idx 1",
                       file, (long long)pad);
    if (e->D % e->H) return MC_FAIL(err, MC_ERR_CONFIG, "%s: hidden_size is not a multiple of num_attention_heads", file);
    e->eps = (float)eps;
    const char *prefix = mc_st_find(st, "mpnet.embeddings.word_embeddings.weight") ? "mpnet." : "";
    size_t cap = 8 + 16 * (size_t)e->L;
    wlist l = {calloc(cap, sizeof(wslot)), 0, cap, calloc(cap, 160)};
    e->layers = calloc((size_t)e->L, sizeof *e->layers);
    if (!l.w || !l.names || !e->layers) {
        free(l.w);
        free(l.names);
        return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    const int64_t D = e->D, I = e->I;
    char n[160];
#define AW(nm, nd, d0, d1)                                  \
    mc_snprintf(n, sizeof n, "%s%s", prefix, nm);           \
    wl_add(&l, n, nd, d0, d1)
    AW("embeddings.word_embeddings.weight", 2, e->vocab, D);
    AW("embeddings.position_embeddings.weight", 2, e->max_pos, D);
    AW("embeddings.LayerNorm.weight", 1, D, 0);
    AW("embeddings.LayerNorm.bias", 1, D, 0);
    AW("encoder.relative_attention_bias.weight", 2, e->buckets, e->H);
    for (int64_t i = 0; i < e->L; i++) {
#define LW(suffix, nd, d0, d1)                                                                    \
    mc_snprintf(n, sizeof n, "%sencoder.layer.%lld.%s", prefix, (long long)i, suffix);           \
    wl_add(&l, n, nd, d0, d1)
        LW("attention.LayerNorm.weight", 1, D, 0); LW("attention.LayerNorm.bias", 1, D, 0);
        LW("attention.attn.q.weight", 2, D, D); LW("attention.attn.k.weight", 2, D, D);
        LW("attention.attn.v.weight", 2, D, D);
        LW("attention.attn.q.bias", 1, D, 0); LW("attention.attn.k.bias", 1, D, 0); LW("attention.attn.v.bias", 1, D, 0);
        LW("attention.attn.o.weight", 2, D, D); LW("attention.attn.o.bias", 1, D, 0);
        LW("output.LayerNorm.weight", 1, D, 0); LW("output.LayerNorm.bias", 1, D, 0);
        LW("intermediate.dense.weight", 2, I, D); LW("intermediate.dense.bias", 1, I, 0);
        LW("output.dense.weight", 2, D, I); LW("output.dense.bias", 1, D, 0);
#undef LW
    }
#undef AW
    s = load_weights(e, st, "", l.w, l.n, err);
    if (s == MC_OK) {
        size_t k = 0;
        e->tok_emb = wl_ptr(e, &l, k++);
        e->pos_emb = wl_ptr(e, &l, k++);
        e->emb_ln_w = wl_ptr(e, &l, k++);
        e->emb_ln_b = wl_ptr(e, &l, k++);
        e->rel_bias = wl_ptr(e, &l, k++);
        for (int64_t i = 0; i < e->L; i++) {
            text_layer *y = &e->layers[i];
            y->ln1_w = wl_ptr(e, &l, k++); y->ln1_b = wl_ptr(e, &l, k++);
            y->qkv_w = wl_ptr(e, &l, k); k += 3;
            y->qkv_b = wl_ptr(e, &l, k); k += 3;
            y->o_w = wl_ptr(e, &l, k++); y->o_b = wl_ptr(e, &l, k++);
            y->ln2_w = wl_ptr(e, &l, k++); y->ln2_b = wl_ptr(e, &l, k++);
            y->fc1_w = wl_ptr(e, &l, k++); y->fc1_b = wl_ptr(e, &l, k++);
            y->fc2_w = wl_ptr(e, &l, k++); y->fc2_b = wl_ptr(e, &l, k++);
        }
    }
    free(l.w);
    free(l.names);
    if (s != MC_OK) return s;
    /* sentence-transformers modules: mean pooling required; Normalize optional */
    char p[4096];
    e->normalize = true;
    json_t *j = NULL;
    if (mc_path_join(p, sizeof p, e->dir, "modules.json") && mc_file_exists(p)) {
        MC_TRY(mc_json_load(p, true, &j, err));
        bool norm = false;
        size_t i;
        json_t *m;
        if (json_is_array(j)) {
            json_array_foreach(j, i, m) {
                json_t *ty = json_object_get(m, "type");
                if (json_is_string(ty) && strstr(json_string_value(ty), "Normalize")) norm = true;
            }
        }
        json_decref(j);
        e->normalize = norm;
    }
    if (mc_path_join(p, sizeof p, e->dir, "1_Pooling/config.json") && mc_file_exists(p)) {
        MC_TRY(mc_json_load(p, false, &j, err));
        bool mean = true, other = false;
        const char *modes[] = {"pooling_mode_cls_token", "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens",
                               "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken"};
        s = mc_json_get_bool(j, "pooling_mode_mean_tokens", false, true, &mean, "1_Pooling/config.json", err);
        for (size_t i = 0; s == MC_OK && i < 5; i++) {
            bool v = false;
            s = mc_json_get_bool(j, modes[i], false, false, &v, "1_Pooling/config.json", err);
            other |= v;
        }
        json_decref(j);
        if (s != MC_OK) return s;
        if (!mean || other)
            return MC_FAIL(err, MC_ERR_UNSUPPORTED, "%s: only mean pooling (pooling_mode_mean_tokens alone) is implemented", p);
    }
    return MC_OK;
}

mc_status mc_text_encoder_load(const char *dir, const mc_clip_tok_opts *clip_opts, mc_text_encoder **out,
                               mc_error *err) {
    *out = NULL;
    mc_text_encoder *e = calloc(1, sizeof *e);
    if (!e) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    mc_trace_load("load text encoder %s", dir);
    mc_hf_config *cfg = NULL;
    mc_st_file *st = NULL;
    mc_status s;
    if (!mc_strlcpy(e->dir, dir, sizeof e->dir)) {
        s = MC_FAIL(err, MC_ERR_ARG, "%s: path too long", dir);
        goto fail;
    }
    if ((s = mc_hf_config_load(dir, &cfg, err)) != MC_OK) goto fail;
    char p[4096];
    if (!mc_path_join(p, sizeof p, dir, "model.safetensors")) {
        s = MC_FAIL(err, MC_ERR_ARG, "%s: path too long", dir);
        goto fail;
    }
    if (cfg->family == MC_HF_CLIP) {
        e->family = MC_TEXT_CLIP;
        if ((s = mc_st_open(p, &st, err)) != MC_OK || (s = load_clip(e, cfg, st, err)) != MC_OK ||
            (s = mc_clip_tok_load(dir, clip_opts, &e->clip, err)) != MC_OK)
            goto fail;
        e->ctx = mc_clip_tok_context(e->clip);
        if (e->ctx > e->max_pos) {
            s = MC_FAIL(err, MC_ERR_CONFIG, "%s: the tokenizer context %d exceeds max_position_embeddings %lld", dir,
                        e->ctx, (long long)e->max_pos);
            goto fail;
        }
        if (mc_clip_tok_vocab_size(e->clip) > e->vocab) {
            s = MC_FAIL(err, MC_ERR_CONFIG, "%s: vocab.json has %d ids but the model only %lld", dir,
                        mc_clip_tok_vocab_size(e->clip), (long long)e->vocab);
            goto fail;
        }
    } else if (cfg->family == MC_HF_MPNET) {
        e->family = MC_TEXT_MPNET;
        e->proj = 0;
        if ((s = mc_st_open(p, &st, err)) != MC_OK || (s = load_mpnet(e, cfg, st, err)) != MC_OK ||
            (s = mc_wp_load(dir, NULL, &e->wp, err)) != MC_OK)
            goto fail;
        e->ctx = mc_wp_max_length(e->wp);
        if (e->ctx > e->max_pos - 2) {
            s = MC_FAIL(err, MC_ERR_CONFIG, "%s: the maximum length %d needs positions up to %d, but max_position_embeddings "
                        "is %lld", dir, e->ctx, e->ctx + 1, (long long)e->max_pos);
            goto fail;
        }
    } else {
        s = MC_FAIL(err, MC_ERR_UNSUPPORTED, "%s: a %s model has no text encoder; HINT: use a CLIPModel or an MPNet "
                    "sentence-transformers folder", dir, mc_hf_family_name(cfg->family));
        goto fail;
    }
    mc_st_close(&st);
    mc_hf_config_free(&cfg);
    *out = e;
    return MC_OK;
fail:
    mc_st_close(&st);
    mc_hf_config_free(&cfg);
    mc_text_encoder_free(&e);
    return s;
}

void mc_text_encoder_free(mc_text_encoder **ep) {
    if (!ep || !*ep) return;
    mc_text_encoder *e = *ep;
    free(e->block);
    free(e->layers);
    free(e->arena);
    free(e->off);
    free(e->len);
    mc_clip_tok_free(&e->clip);
    mc_wp_free(&e->wp);
    free(e);
    *ep = NULL;
}

mc_text_family mc_text_encoder_family(const mc_text_encoder *e) { return e->family; }
int mc_text_encoder_dim(const mc_text_encoder *e) { return (int)(e->family == MC_TEXT_CLIP ? e->proj : e->D); }
int mc_text_encoder_context(const mc_text_encoder *e) { return e->ctx; }
mc_clip_tok *mc_text_encoder_clip_tok(mc_text_encoder *e) { return e->clip; }
mc_wordpiece *mc_text_encoder_wordpiece(mc_text_encoder *e) { return e->wp; }

const char *mc_text_encoder_hash(mc_text_encoder *e) {
    if (e->hash[0]) return e->hash;
    mc_trace_load("hash text encoder %s", e->dir);
    static const char *const files[] = {"config.json", "model.safetensors", "vocab.json", "merges.txt", "vocab.txt",
                                        "tokenizer_config.json", "sentence_bert_config.json", "modules.json",
                                        "1_Pooling/config.json"};
    mc_sha256 h;
    mc_sha256_init(&h);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char p[4096], hex[MC_SHA256_HEX_LEN + 1];
        mc_error err = {0};
        if (!mc_path_join(p, sizeof p, e->dir, files[i]) || !mc_file_exists(p)) continue;
        if (mc_sha256_file(p, NULL, hex, &err) != MC_OK) return NULL;
        mc_sha256_update(&h, files[i], strlen(files[i]) + 1);
        mc_sha256_update(&h, hex, MC_SHA256_HEX_LEN);
    }
    /* the clean-up mode and the context change the ids, so they are part of the identity */
    char mode[64];
    mc_snprintf(mode, sizeof mode, "clean=%d ctx=%d", e->clip ? (int)mc_clip_tok_clean(e->clip) : -1, e->ctx);
    mc_sha256_update(&h, mode, strlen(mode));
    uint8_t d[MC_SHA256_BYTES];
    mc_sha256_final(&h, d);
    mc_hex_encode(d, MC_SHA256_BYTES, e->hash);
    return e->hash;
}
