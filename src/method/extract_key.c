/* extract_key.c - what an extraction store holds and where it is (extract_key.h). */
#include "method/extract_key.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/checked.h"
#include "miclip/buf.h"
#include "miclip/fsutil.h"
#include "miclip/json.h"
#include "miclip/log.h"
#include "miclip/miclip.h"
#include "miclip/store.h"

#define EXTRACT_KEY_VERSION "miclip-extract/2" /* 2: the seed only where it draws the sample */

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

void mc_labels_free(mc_labels *l) {
    for (int i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* The model's labels are config.json's id2label in id order, or none (models.c reads them the
 * same way). */
static mc_status read_labels(const char *dir, mc_labels *l, mc_error *err) {
    char file[MC_PATH_CAP];
    if (!mc_snprintf(file, sizeof file, "%s/config.json", dir))
        return MC_FAIL(err, MC_ERR_ARG, "path too long: %s", dir);
    json_t *cfg = NULL, *id2 = NULL;
    MC_TRY(mc_json_load(file, false, &cfg, err));
    mc_status s = mc_json_get_obj(cfg, "id2label", false, &id2, file, err);
    int64_t n = s == MC_OK && id2 ? (int64_t)json_object_size(id2) : 0;
    if (n > 1000000)
        s = MC_FAIL(err, MC_ERR_FORMAT, "%s: %lld labels is out of range", file, (long long)n);
    if (s == MC_OK && n > 0 && !(l->v = calloc((size_t)n, sizeof *l->v)))
        s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; s == MC_OK && i < n; i++, l->n++) {
        char key[32];
        const char *text;
        snprintf(key, sizeof key, "%lld", (long long)i);
        s = mc_json_get_str(id2, key, true, NULL, &text, file, err);
        if (s == MC_OK && !(l->v[i] = mc_strdup(text)))
            s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    json_decref(cfg);
    if (s != MC_OK) mc_labels_free(l);
    return s;
}

mc_status mc_target_labels(const mc_comm *c, const mc_config *cfg, mc_labels *l, mc_error *err) {
    memset(l, 0, sizeof *l);
    return mc_comm_agree(c, read_labels(cfg->models.target, l, err), err);
}

int64_t mc_split_sample_seed(const mc_dataset_cfg *d, int64_t seed) {
    if (d->n_samples <= 0) return -1;
    return d->sample_seed == MC_SAMPLE_PER_SEED ? seed : d->sample_seed;
}

mc_status mc_extract_plan_split(const mc_comm *c, const mc_config *cfg, mc_split split,
                                int64_t seed, const char *const *labels, int n_labels,
                                const char *target_hash, const char *clip_hash, mc_extract_plan *p,
                                mc_error *err) {
    memset(p, 0, sizeof *p);
    p->split = split;
    p->dcfg = mc_split_dataset_cfg(cfg, split);
    MC_TRY(mc_dataset_load(c, p->dcfg, labels, n_labels, &p->ds, err));
    /* The seed enters only where it draws a sample: n_samples set and below the listing's size.
     * Otherwise the split is the whole listing, the same for every seed, and one store serves all. */
    int64_t listed = p->ds.n;
    p->sample_seed = mc_split_sample_seed(p->dcfg, seed);
    if (p->dcfg->n_samples >= listed) p->sample_seed = -1;
    mc_status s = p->sample_seed >= 0
                      ? mc_dataset_sample(&p->ds, p->dcfg->n_samples, (uint64_t)p->sample_seed, err)
                      : MC_OK;
    s = mc_comm_agree(c, s, err);
    if (s != MC_OK) return s;
    char ds_hash[MC_SHA256_HEX_LEN + 1];
    mc_dataset_hash(&p->ds, ds_hash);
    /* The key: everything that determines the store's contents. */
    mc_sha256 h;
    mc_sha256_init(&h);
    char line[8192];
    snprintf(line, sizeof line,
             "%s\ncode=%s\ntarget=%s\nclip=%s\ndataset=%s\nsample_seed=%lld\npool=%s\n"
             "dtype=%d\nbad=%d\nprompt=%s\n",
             EXTRACT_KEY_VERSION, MICLIP_CACHE_VERSION, target_hash, clip_hash, ds_hash,
             (long long)p->sample_seed, mc_pool_name(cfg->extract.pool), cfg->extract.dtype,
             cfg->extract.on_bad_image, cfg->align.prompt);
    mc_sha256_update(&h, line, strlen(line));
    for (int i = 0; i < cfg->extract.layers.n; i++)
        mc_sha256_update(&h, cfg->extract.layers.v[i], strlen(cfg->extract.layers.v[i]) + 1);
    uint8_t d[MC_SHA256_BYTES];
    mc_sha256_final(&h, d);
    mc_hex_encode(d, MC_SHA256_BYTES, p->key);
    p->key[MC_SHA256_HEX_LEN] = '\0';
    /* <split>-<key16>.h5 for the whole split; <split>-s<sample seed>-<key16>.h5 for a sample. */
    char tag[32] = "";
    if (p->sample_seed >= 0) snprintf(tag, sizeof tag, "-s%lld", (long long)p->sample_seed);
    if (!mc_snprintf(p->path, sizeof p->path, "%s/extract/%s%s-%.16s.h5", cfg->output_dir,
                     mc_split_name(split), tag, p->key))
        return MC_FAIL(err, MC_ERR_ARG, "output path too long under %s", cfg->output_dir);
    return MC_OK;
}

/* ---- the run manifest ---------------------------------------------------------------------- */

/* What determines an extraction store apart from the images found in the dataset folder: the
 * manifest of a split is trusted while this is unchanged. */
static void recipe_of(const mc_config *cfg, mc_split split, int64_t seed, const char *target_hash,
                      const char *clip_hash, char hex[MC_KEY_HEX]) {
    const mc_dataset_cfg *d = mc_split_dataset_cfg(cfg, split);
    mc_buf b = {0};
    mc_buf_printf(
        &b,
        "%s\ncode=%s\ntarget=%s\nclip=%s\nsample_seed=%lld\npool=%s\ndtype=%d\nbad=%d\nprompt=%s\n",
        EXTRACT_KEY_VERSION, MICLIP_CACHE_VERSION, target_hash, clip_hash,
        (long long)mc_split_sample_seed(d, seed), mc_pool_name(cfg->extract.pool),
        cfg->extract.dtype, cfg->extract.on_bad_image, cfg->align.prompt);
    mc_buf_printf(&b, "dataset=%d\n%s\n%s\n%lld\n%s\n%s\n", d->kind, d->root, d->split,
                  (long long)d->n_samples, d->labels, d->class_names);
    for (int i = 0; i < cfg->extract.layers.n; i++)
        mc_buf_printf(&b, "layer=%s\n", cfg->extract.layers.v[i]);
    MC_ASSERT(!b.oom);
    mc_key_of(b.p, hex);
    mc_buf_free(&b);
}

static bool manifest_path(const mc_config *cfg, mc_split split, int64_t seed, char *buf,
                          size_t cap) {
    return mc_snprintf(buf, cap, "%s/extract/%s-s%lld.json", cfg->output_dir, mc_split_name(split),
                       (long long)seed);
}

mc_status mc_extract_manifest_write(const mc_comm *c, const mc_config *cfg,
                                    const mc_extract_plan *p, int64_t seed, const char *target_hash,
                                    const char *clip_hash, mc_error *err) {
    mc_status s = MC_OK;
    if (c->rank == 0) {
        char path[MC_PATH_CAP], recipe[MC_KEY_HEX];
        recipe_of(cfg, p->split, seed, target_hash, clip_hash, recipe);
        json_t *classes = json_array();
        for (int64_t k = 0; classes && k < p->ds.n_classes; k++)
            if (json_array_append_new(classes, json_string(p->ds.class_names[k])) != 0) {
                json_decref(classes);
                classes = NULL;
            }
        json_t *m = classes
                        ? json_pack("{s:s, s:s, s:I, s:s, s:s, s:s, s:s, s:s, s:I, s:o}", "format",
                                    "miclip-extract-manifest/1", "split", mc_split_name(p->split),
                                    "seed", (json_int_t)seed, "recipe", recipe, "key", p->key,
                                    "store", p->path, "target_hash", target_hash, "clip_hash",
                                    clip_hash, "images", (json_int_t)p->ds.n, "classes", classes)
                        : NULL;
        char *text = m ? json_dumps(m, JSON_INDENT(1) | JSON_PRESERVE_ORDER) : NULL;
        if (!text)
            s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory writing the extraction manifest");
        else if (!manifest_path(cfg, p->split, seed, path, sizeof path))
            s = MC_FAIL(err, MC_ERR_ARG, "output path too long under %s", cfg->output_dir);
        else
            s = mc_write_text_file_if_changed(path, text, strlen(text),
                                              err); /* a rerun touches nothing */
        free(text);
        json_decref(m);
    }
    return mc_comm_agree(c, s, err);
}

/* Rank 0: the store path and key of the split's manifest when it exists, was written for the same
 * recipe and its store exists; "" otherwise. A manifest that does not parse is ignored (the key
 * is then computed again, and extract rewrites it). */
static void manifest_lookup(const mc_config *cfg, mc_split split, int64_t seed, const char *recipe,
                            char *store, size_t cap, char key[MC_KEY_HEX]) {
    store[0] = key[0] = '\0';
    char path[MC_PATH_CAP];
    json_t *m = NULL;
    mc_error ignored = {0};
    if (!manifest_path(cfg, split, seed, path, sizeof path) || !mc_file_exists(path) ||
        mc_json_load(path, false, &m, &ignored) != MC_OK)
        return;
    const char *r = NULL, *st = NULL, *k = NULL;
    if (mc_json_get_str(m, "recipe", true, NULL, &r, path, &ignored) == MC_OK &&
        mc_json_get_str(m, "store", true, NULL, &st, path, &ignored) == MC_OK &&
        mc_json_get_str(m, "key", true, NULL, &k, path, &ignored) == MC_OK && !strcmp(r, recipe) &&
        strlen(k) == MC_SHA256_HEX_LEN && mc_file_exists(st) && mc_strlcpy(store, st, cap))
        mc_strlcpy(key, k, MC_KEY_HEX);
    if (!key[0]) store[0] = '\0';
    json_decref(m);
}

mc_status mc_extract_store_path(const mc_comm *c, const mc_config *cfg, mc_split split,
                                int64_t seed, char *path, size_t cap, mc_error *err) {
    char th[MC_KEY_HEX], chh[MC_KEY_HEX], recipe[MC_KEY_HEX], key[MC_KEY_HEX];
    MC_TRY(mc_model_dir_hash(c, cfg->models.target, th, err));
    MC_TRY(mc_model_dir_hash(c, cfg->models.clip, chh, err));
    /* The manifest extract wrote: no dataset listing. Its store must carry the recorded key. */
    char *found = NULL;
    if (c->rank == 0) {
        char store[MC_PATH_CAP];
        recipe_of(cfg, split, seed, th, chh, recipe);
        manifest_lookup(cfg, split, seed, recipe, store, sizeof store, key);
        found = mc_strdup(store);
        if (!found) mc_comm_abort(c, 1, "out of memory");
    }
    MC_TRY(mc_comm_bcast_string(c, 0, &found, err));
    if (found[0]) {
        char *k = c->rank == 0 ? mc_strdup(key) : NULL;
        mc_status s = mc_comm_bcast_string(c, 0, &k, err);
        mc_store *st = NULL;
        char *attr = NULL;
        if (s == MC_OK) s = mc_store_open(c, found, MC_STORE_READ, &st, err);
        if (s == MC_OK) s = mc_store_get_attr_str(st, "/", "extract_key", &attr, err);
        if (st) mc_store_close(&st, NULL);
        bool ok = s == MC_OK && !strcmp(attr, k) && mc_strlcpy(path, found, cap);
        free(attr), free(k), free(found);
        if (ok) return MC_OK;
        mc_debug("extract manifest of %s seed %lld does not match its store; computing the key",
                 mc_split_name(split), (long long)seed);
    } else {
        free(found);
    }
    /* No manifest (extract not run yet, or another recipe): list the dataset and compute the key. */
    mc_labels labels;
    MC_TRY(mc_target_labels(c, cfg, &labels, err));
    mc_extract_plan p;
    mc_status s = mc_extract_plan_split(c, cfg, split, seed, (const char *const *)labels.v,
                                        labels.n, th, chh, &p, err);
    if (s == MC_OK && !mc_strlcpy(path, p.path, cap)) s = MC_FAIL(err, MC_ERR_ARG, "path too long");
    mc_dataset_free(&p.ds);
    mc_labels_free(&labels);
    return s;
}
