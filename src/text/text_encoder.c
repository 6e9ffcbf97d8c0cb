/* text_encoder.c - loading the text encoders (text.h): the CLIP text tower (+ text_projection)
 * and the MPNet sentence encoder (specs/hf-models.md 3.4 and 6.3), each a model family of
 * model.h (src/models/text_tower.c holds their weights and forward), with its tokenizer and, for
 * MPNet, the sentence-transformers modules around it. */
#include <stdlib.h>
#include <string.h>

#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/hash.h"
#include "miclip/hf.h"
#include "miclip/json.h"
#include "miclip/log.h"
#include "miclip/model.h"
#include "text_internal.h"
#include "text_encoder_int.h"

/* ---- loading --------------------------------------------------------------------------- */

/* The model of family f, and the sizes the tokenizer checks need. */
static mc_status load_model(mc_text_encoder *e, mc_family f, mc_error *err) {
    MC_TRY(mc_model_create_family(e->dir, f, &e->m, err));
    e->vocab = mc_model_vocab_size(e->m);
    e->dim = (int)mc_model_output_dim(e->m);
    int tokens;
    mc_model_transformer_dims(e->m, NULL, &tokens, NULL, NULL);
    e->max_pos = tokens;
    return MC_OK;
}

/* The sentence-transformers modules around MPNet: mean pooling required; Normalize optional. */
static mc_status load_mpnet_modules(mc_text_encoder *e, mc_error *err) {
    mc_status s;
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
    mc_status s;
    if (!mc_strlcpy(e->dir, dir, sizeof e->dir)) {
        s = MC_FAIL(err, MC_ERR_ARG, "%s: path too long", dir);
        goto fail;
    }
    if ((s = mc_hf_config_load(dir, &cfg, err)) != MC_OK) goto fail;
    if (cfg->family == MC_HF_CLIP) {
        e->family = MC_TEXT_CLIP;
        if ((s = load_model(e, MC_FAMILY_CLIP_TEXT, err)) != MC_OK ||
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
        if ((s = load_model(e, MC_FAMILY_MPNET, err)) != MC_OK ||
            (s = load_mpnet_modules(e, err)) != MC_OK ||
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
    mc_hf_config_free(&cfg);
    *out = e;
    return MC_OK;
fail:
    mc_hf_config_free(&cfg);
    mc_text_encoder_free(&e);
    return s;
}

void mc_text_encoder_free(mc_text_encoder **ep) {
    if (!ep || !*ep) return;
    mc_text_encoder *e = *ep;
    mc_model_free(&e->m);
    mc_clip_tok_free(&e->clip);
    mc_wp_free(&e->wp);
    free(e);
    *ep = NULL;
}

mc_text_family mc_text_encoder_family(const mc_text_encoder *e) { return e->family; }
int mc_text_encoder_dim(const mc_text_encoder *e) { return e->dim; }
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
