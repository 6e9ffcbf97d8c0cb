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
#include "miclip/model_desc.h"
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

static mc_status load_weights(mc_text_encoder *e, const mc_st_file *st, const char *prefix,
                              wslot *w, size_t n, mc_error *err) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t c;
        if (!mc_size_prod(w[i].shape, w[i].ndim, &c) || !mc_size_add(total, c, &total))
            return MC_FAIL(err, MC_ERR_NOMEM, "%s: weight sizes overflow", e->dir);
    }
    e->block = mc_alloc_array(total, sizeof(float));
    if (!e->block)
        return MC_FAIL(err, MC_ERR_NOMEM, "%s: cannot allocate %zu floats of weights", e->dir,
                       total);
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

/* The weight table: the description's tensors, in order; each one's storage is the next slice
 * of the block (assigned in order). */
typedef struct {
    wslot *w;
    size_t n;
    char (*names)[MC_DESC_TENSOR_NAME_MAX];
} wlist;

static void wl_free(wlist *l) {
    free(l->w);
    free(l->names);
}

/* Takes the sizes and the weight table from the description of config.json (model_desc.h), the
 * base-model prefix (probe's first component) left out when the file has no tensor probe. */
static mc_status take_desc(mc_text_encoder *e, const mc_hf_config *cfg, mc_desc_family fam,
                           const mc_st_file *st, const char *probe, wlist *l, mc_error *err) {
    mc_model_desc *d = NULL;
    MC_TRY(mc_model_desc_build(cfg->root, cfg->path, fam, &d, err));
    e->vocab = d->vocab, e->D = d->D, e->I = d->I, e->L = d->L, e->H = d->H, e->max_pos = d->T;
    e->buckets = d->buckets, e->act = d->act, e->eps = (float)d->eps;
    if (fam == MC_DESC_CLIP_TEXT) e->proj = d->out_dim;
    const bool strip = !mc_st_find(st, probe);
    const size_t np = strlen(d->base_prefix);
    l->n = (size_t)d->n_tensors;
    l->w = calloc(l->n, sizeof *l->w);
    l->names = calloc(l->n, sizeof *l->names);
    e->layers = calloc((size_t)e->L, sizeof *e->layers);
    if (!l->w || !l->names || !e->layers) {
        mc_model_desc_free(&d);
        return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < l->n; i++) {
        const mc_desc_tensor *t = &d->tensors[i];
        mc_strlcpy(l->names[i], t->base && strip ? t->name + np : t->name, sizeof l->names[i]);
        l->w[i] = (wslot){l->names[i], t->ndim, {t->shape[0], t->shape[1]}, NULL};
    }
    mc_model_desc_free(&d);
    return MC_OK;
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

/* Points each block's weights into the loaded list from entry k on, in the description's order
 * (the same for the CLIP text tower and MPNet); returns the entry after the last block. */
static size_t bind_layers(mc_text_encoder *e, const wlist *l, size_t k) {
    for (int64_t i = 0; i < e->L; i++) {
        text_layer *y = &e->layers[i];
        y->ln1_w = wl_ptr(e, l, k++);
        y->ln1_b = wl_ptr(e, l, k++);
        y->qkv_w = wl_ptr(e, l, k);
        k += 3; /* q, k, v weights are adjacent: [3D, D] */
        y->qkv_b = wl_ptr(e, l, k);
        k += 3; /* and so are the biases: [3D] */
        y->o_w = wl_ptr(e, l, k++);
        y->o_b = wl_ptr(e, l, k++);
        y->ln2_w = wl_ptr(e, l, k++);
        y->ln2_b = wl_ptr(e, l, k++);
        y->fc1_w = wl_ptr(e, l, k++);
        y->fc1_b = wl_ptr(e, l, k++);
        y->fc2_w = wl_ptr(e, l, k++);
        y->fc2_b = wl_ptr(e, l, k++);
    }
    return k;
}

static mc_status load_clip(mc_text_encoder *e, const mc_hf_config *cfg, const mc_st_file *st,
                           mc_error *err) {
    wlist l = {0};
    mc_status s = take_desc(e, cfg, MC_DESC_CLIP_TEXT, st,
                            "text_model.embeddings.token_embedding.weight", &l, err);
    if (s == MC_OK && !mc_st_find(st, "text_projection.weight"))
        s = MC_FAIL(err, MC_ERR_SHAPE,
                    "%s: tensor 'text_projection.weight' is missing; HINT: miclip needs the "
                    "CLIPModel (or CLIPTextModelWithProjection) weights, not the bare text model",
                    mc_st_path(st));
    if (s != MC_OK) {
        wl_free(&l);
        return s;
    }
    s = load_weights(e, st, "", l.w, l.n, err);
    if (s == MC_OK) {
        size_t k = 0;
        e->tok_emb = wl_ptr(e, &l, k++);
        e->pos_emb = wl_ptr(e, &l, k++);
        k = bind_layers(e, &l, k);
        e->final_ln_w = wl_ptr(e, &l, k++);
        e->final_ln_b = wl_ptr(e, &l, k++);
        e->proj_w = wl_ptr(e, &l, k++);
    }
    wl_free(&l);
    return s;
}

static mc_status load_mpnet(mc_text_encoder *e, const mc_hf_config *cfg, const mc_st_file *st,
                            mc_error *err) {
    wlist l = {0};
    mc_status s =
        take_desc(e, cfg, MC_DESC_MPNET, st, "mpnet.embeddings.word_embeddings.weight", &l, err);
    if (s != MC_OK) {
        wl_free(&l);
        return s;
    }
    s = load_weights(e, st, "", l.w, l.n, err);
    if (s == MC_OK) {
        size_t k = 0;
        e->tok_emb = wl_ptr(e, &l, k++);
        e->pos_emb = wl_ptr(e, &l, k++);
        e->emb_ln_w = wl_ptr(e, &l, k++);
        e->emb_ln_b = wl_ptr(e, &l, k++);
        e->rel_bias = wl_ptr(e, &l, k++);
        k = bind_layers(e, &l, k);
    }
    wl_free(&l);
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
        const char *modes[] = {"pooling_mode_cls_token", "pooling_mode_max_tokens",
                               "pooling_mode_mean_sqrt_len_tokens",
                               "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken"};
        s = mc_json_get_bool(j, "pooling_mode_mean_tokens", false, true, &mean,
                             "1_Pooling/config.json", err);
        for (size_t i = 0; s == MC_OK && i < 5; i++) {
            bool v = false;
            s = mc_json_get_bool(j, modes[i], false, false, &v, "1_Pooling/config.json", err);
            other |= v;
        }
        json_decref(j);
        if (s != MC_OK) return s;
        if (!mean || other)
            return MC_FAIL(err, MC_ERR_UNSUPPORTED,
                           "%s: only mean pooling (pooling_mode_mean_tokens alone) is implemented",
                           p);
    }
    return MC_OK;
}

mc_status mc_text_encoder_load(const char *dir, const mc_clip_tok_opts *clip_opts,
                               mc_text_encoder **out, mc_error *err) {
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
            s = MC_FAIL(err, MC_ERR_CONFIG,
                        "%s: the tokenizer context %d exceeds max_position_embeddings %lld", dir,
                        e->ctx, (long long)e->max_pos);
            goto fail;
        }
        if (mc_clip_tok_vocab_size(e->clip) > e->vocab) {
            s = MC_FAIL(err, MC_ERR_CONFIG, "%s: vocab.json has %d ids but the model only %lld",
                        dir, mc_clip_tok_vocab_size(e->clip), (long long)e->vocab);
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
            s = MC_FAIL(
                err, MC_ERR_CONFIG,
                "%s: the maximum length %d needs positions up to %d, but max_position_embeddings "
                "is %lld",
                dir, e->ctx, e->ctx + 1, (long long)e->max_pos);
            goto fail;
        }
    } else {
        s = MC_FAIL(err, MC_ERR_UNSUPPORTED,
                    "%s: a %s model has no text encoder; HINT: use a CLIPModel or an MPNet "
                    "sentence-transformers folder",
                    dir, mc_hf_family_name(cfg->family));
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
int mc_text_encoder_dim(const mc_text_encoder *e) {
    return (int)(e->family == MC_TEXT_CLIP ? e->proj : e->D);
}
int mc_text_encoder_context(const mc_text_encoder *e) { return e->ctx; }
mc_clip_tok *mc_text_encoder_clip_tok(mc_text_encoder *e) { return e->clip; }
mc_wordpiece *mc_text_encoder_wordpiece(mc_text_encoder *e) { return e->wp; }

const char *mc_text_encoder_hash(mc_text_encoder *e) {
    if (e->hash[0]) return e->hash;
    mc_trace_load("hash text encoder %s", e->dir);
    static const char *const files[] = {"config.json",
                                        "model.safetensors",
                                        "vocab.json",
                                        "merges.txt",
                                        "vocab.txt",
                                        "tokenizer_config.json",
                                        "sentence_bert_config.json",
                                        "modules.json",
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
    mc_snprintf(mode, sizeof mode, "clean=%d ctx=%d",
                e->clip ? (int)mc_clip_tok_clean(e->clip) : -1, e->ctx);
    mc_sha256_update(&h, mode, strlen(mode));
    uint8_t d[MC_SHA256_BYTES];
    mc_sha256_final(&h, d);
    mc_hex_encode(d, MC_SHA256_BYTES, e->hash);
    return e->hash;
}
