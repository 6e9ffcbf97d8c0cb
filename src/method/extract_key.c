/* extract_key.c - what an extraction store holds and where it is (extract_key.h). */
#include "method/extract_key.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/checked.h"
#include "miclip/miclip.h"

#define EXTRACT_KEY_VERSION "miclip-extract/1"

const char *mc_split_name(mc_split s) {
    static const char *names[MC_SPLIT_COUNT] = {"train", "eval", "unseen"};
    return (unsigned)s < MC_SPLIT_COUNT ? names[s] : "?";
}

const mc_dataset_cfg *mc_split_dataset_cfg(const mc_config *cfg, mc_split s) {
    switch (s) {
    case MC_SPLIT_TRAIN: return &cfg->datasets.train;
    case MC_SPLIT_EVAL: return &cfg->datasets.eval;
    default: return &cfg->datasets.unseen;
    }
}

const char **mc_model_labels(mc_model *m, int *n) {
    int64_t dim = mc_model_output_dim(m);
    if (!mc_model_label(m, 0)) {
        *n = 0;
        return NULL;
    }
    const char **v = calloc((size_t)dim, sizeof *v);
    if (!v) return NULL;
    for (int64_t i = 0; i < dim; i++) v[i] = mc_model_label(m, i);
    *n = (int)dim;
    return v;
}

mc_status mc_extract_plan_split(const mc_comm *c, const mc_config *cfg, mc_split split, int64_t seed,
                            const char *const *labels, int n_labels, const char *target_hash,
                            const char *clip_hash, mc_extract_plan *p, mc_error *err) {
    memset(p, 0, sizeof *p);
    p->split = split;
    p->dcfg = mc_split_dataset_cfg(cfg, split);
    MC_TRY(mc_dataset_load(c, p->dcfg, labels, n_labels, &p->ds, err));
    mc_status s = mc_dataset_sample(&p->ds, p->dcfg->n_samples, (uint64_t)seed, err);
    s = mc_comm_agree(c, s, err);
    if (s != MC_OK) return s;
    char ds_hash[MC_SHA256_HEX_LEN + 1];
    mc_dataset_hash(&p->ds, ds_hash);
    /* The key: everything that determines the store's contents. */
    mc_sha256 h;
    mc_sha256_init(&h);
    char line[8192];
    snprintf(line, sizeof line, "%s\ncode=%s\ntarget=%s\nclip=%s\ndataset=%s\nseed=%lld\npool=%s\n"
             "dtype=%d\nbad=%d\nprompt=%s\n", EXTRACT_KEY_VERSION, MICLIP_CACHE_VERSION,
             target_hash, clip_hash, ds_hash, (long long)seed, mc_pool_name(cfg->extract.pool),
             cfg->extract.dtype, cfg->extract.on_bad_image, cfg->align.prompt);
    mc_sha256_update(&h, line, strlen(line));
    for (int i = 0; i < cfg->extract.layers.n; i++)
        mc_sha256_update(&h, cfg->extract.layers.v[i], strlen(cfg->extract.layers.v[i]) + 1);
    uint8_t d[MC_SHA256_BYTES];
    mc_sha256_final(&h, d);
    mc_hex_encode(d, MC_SHA256_BYTES, p->key);
    p->key[MC_SHA256_HEX_LEN] = '\0';
    if (!mc_snprintf(p->path, sizeof p->path, "%s/extract/%s-s%lld-%.16s.h5", cfg->output_dir,
                     mc_split_name(split), (long long)seed, p->key))
        return MC_FAIL(err, MC_ERR_ARG, "output path too long under %s", cfg->output_dir);
    return MC_OK;
}


mc_status mc_extract_store_path(const mc_comm *c, const mc_config *cfg, mc_split split, int64_t seed,
                                char *path, size_t cap, mc_error *err) {
    char th[MC_SHA256_HEX_LEN + 1], chh[MC_SHA256_HEX_LEN + 1];
    MC_TRY(mc_model_dir_hash(c, cfg->models.target, th, err));
    MC_TRY(mc_model_dir_hash(c, cfg->models.clip, chh, err));
    mc_model *m = NULL;
    mc_status s = mc_model_create(cfg->models.target, &m, err);
    s = mc_comm_agree(c, s, err);
    if (s != MC_OK) return s;
    int n_labels = 0;
    const char **labels = mc_model_labels(m, &n_labels);
    mc_extract_plan p;
    s = mc_extract_plan_split(c, cfg, split, seed, labels, n_labels, th, chh, &p, err);
    if (s == MC_OK && !mc_strlcpy(path, p.path, cap)) s = MC_FAIL(err, MC_ERR_ARG, "path too long");
    mc_dataset_free(&p.ds);
    free(labels);
    mc_model_free(&m);
    return s;
}
