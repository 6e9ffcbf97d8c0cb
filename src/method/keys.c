/* keys.c - cache keys and output paths (keys.h). */
#include "method/keys.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/log.h"
#include "miclip/miclip.h"
#include "method/training.h"

void mc_key_of(const char *text, char hex[MC_KEY_HEX]) { mc_sha256_hex(text, strlen(text), hex); }

static mc_status make_paths(const mc_config *cfg, const char *sub, const char *tag,
                            const char *key_text, mc_run_paths *p, mc_error *err) {
    memset(p, 0, sizeof *p);
    mc_key_of(key_text, p->key);
    mc_strlcpy(p->tag, tag, sizeof p->tag);
    bool ok =
        mc_snprintf(p->dir, sizeof p->dir, "%s/%s", cfg->output_dir, sub) &&
        mc_snprintf(p->store, sizeof p->store, "%s/%s-%.16s.h5", p->dir, tag, p->key) &&
        mc_snprintf(p->ckpt, sizeof p->ckpt, "%s/%s-%.16s.ckpt.safetensors", p->dir, tag, p->key) &&
        mc_snprintf(p->curve, sizeof p->curve, "%s/%s-%.16s.curve.safetensors", p->dir, tag,
                    p->key);
    return ok ? MC_OK : MC_FAIL(err, MC_ERR_ARG, "output path too long under %s", cfg->output_dir);
}

mc_status mc_sae_paths(const mc_config *cfg, const char *extract_key, int64_t seed, mc_run_paths *p,
                       mc_error *err) {
    mc_sae_config s = mc_sae_config_of(cfg, 0, seed);
    char text[4096], lt[200], tag[256];
    snprintf(
        text, sizeof text,
        "miclip-sae/1\ncode=%s\nextract=%s\nlayer=%s\ninput=%d\nfeatures=%lld\nk=%d\nlr=%.17g\n"
        "batch=%lld\nepochs=%d\nsteps=%lld\naux_k=%d\naux_coef=%.17g\ndead_after=%lld\n"
        "init_samples=%lld\nmedian_iters=%d\nheldout=%.17g\nseed=%lld\nchunk=%lld\nshuffle=%lld\n"
        "adam=%.17g,%.17g,%.17g,%.17g\n",
        MICLIP_CACHE_VERSION, extract_key, cfg->sae.layer, cfg->sae.input, (long long)s.m, s.k,
        s.adam.lr, (long long)s.batch_size, s.epochs, (long long)cfg->sae.steps, s.k_aux,
        s.aux_coef, (long long)s.dead_samples, (long long)s.median_samples, s.median_iters,
        cfg->sae.heldout, (long long)seed, (long long)s.chunk_rows, (long long)s.shuffle_block,
        s.adam.beta1, s.adam.beta2, s.adam.eps, s.adam.weight_decay);
    /* Only when set, so the stores of configs without it keep their keys. */
    if (cfg->sae.input == MC_SAE_INPUT_ALL && cfg->sae.tokens_per_image > 0) {
        size_t len = strlen(text);
        snprintf(text + len, sizeof text - len, "tokens_per_image=%lld\n",
                 (long long)cfg->sae.tokens_per_image);
    }
    mc_layer_tag(cfg->sae.layer, lt, sizeof lt);
    snprintf(tag, sizeof tag, "sae-s%lld-l%s", (long long)seed, lt);
    return make_paths(cfg, "sae", tag, text, p, err);
}

mc_status mc_align_paths(const mc_config *cfg, const char *extract_key, int64_t seed,
                         const char *layer, int variant, mc_run_paths *p, mc_error *err) {
    mc_align_config a = mc_align_config_of(cfg, 0, 0, 0, variant, seed);
    char text[4096], lt[200], tag[256];
    snprintf(
        text, sizeof text,
        "miclip-align/"
        "1\ncode=%s\nextract=%s\nlayer=%s\nvariant=%s\nlr=%.17g\nbatch=%lld\nepochs=%d\n"
        "learn_scale=%d\nlogit_scale=%.17g\nseed=%lld\nchunk=%lld\nshuffle=%lld\n"
        "adam=%.17g,%.17g,%.17g,%.17g\nstop=%d\nheldout=%.17g\neval_every=%lld\npatience=%lld\n"
        "min_delta=%.17g\n",
        MICLIP_CACHE_VERSION, extract_key, layer, mc_variant_name(variant), a.adam.lr,
        (long long)a.batch_size, a.epochs, (int)a.learn_scale, a.logit_scale, (long long)seed,
        (long long)a.chunk_rows, (long long)a.shuffle_block, a.adam.beta1, a.adam.beta2, a.adam.eps,
        a.adam.weight_decay, cfg->align.stop, cfg->align.heldout, (long long)cfg->align.eval_every,
        (long long)cfg->align.patience, cfg->align.min_delta);
    mc_layer_tag(layer, lt, sizeof lt);
    snprintf(tag, sizeof tag, "align-s%lld-l%s-%s", (long long)seed, lt, mc_variant_tag(variant));
    return make_paths(cfg, "align", tag, text, p, err);
}

mc_status mc_model_dir_hash(const mc_comm *c, const char *dir, char hex[MC_SHA256_HEX_LEN + 1],
                            mc_error *err) {
    /* The files that determine a model's behaviour, hashed in a fixed order; absent optional
     * files contribute their name only. */
    static const char *files[] = {
        "config.json", "model.safetensors", "preprocessor_config.json", "vocab.json",
        "merges.txt",  "vocab.txt",         "tokenizer_config.json"};
    char *text = NULL;
    mc_status s = MC_OK;
    if (c->rank == 0) {
        mc_sha256 h;
        mc_sha256_init(&h);
        for (size_t i = 0; i < sizeof files / sizeof files[0] && s == MC_OK; i++) {
            char path[4096];
            if (!mc_path_join(path, sizeof path, dir, files[i])) {
                s = MC_FAIL(err, MC_ERR_ARG, "path too long: %s", dir);
                break;
            }
            mc_sha256_update(&h, files[i], strlen(files[i]) + 1);
            if (!mc_file_exists(path)) continue;
            uint8_t d[MC_SHA256_BYTES];
            bool hashed = false;
            s = mc_sha256_file_cached(path, d, &hashed, err);
            if (s == MC_OK && hashed) mc_debug("hashed %s (not in the file-hash cache)", path);
            if (s == MC_OK) mc_sha256_update(&h, d, sizeof d);
        }
        uint8_t d[MC_SHA256_BYTES];
        mc_sha256_final(&h, d);
        mc_hex_encode(d, MC_SHA256_BYTES, hex);
        hex[MC_SHA256_HEX_LEN] = '\0';
        if (s == MC_OK && !(text = mc_strdup(hex))) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    MC_TRY(mc_comm_agree(c, s, err));
    MC_TRY(mc_comm_bcast_string(c, 0, &text, err));
    mc_strlcpy(hex, text, MC_SHA256_HEX_LEN + 1);
    free(text);
    return MC_OK;
}
