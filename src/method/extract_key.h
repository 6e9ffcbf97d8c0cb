/* extract_key.h - the identity of an extraction store: the dataset of a split (listed and
 * sampled), the key of everything that determines the store's contents, and its path
 * OUTPUT_DIR/extract/<split>-s<seed>-<key16>.h5 (docs/store.md).
 *
 * Ownership: mc_extract_plan_split fills a caller-owned plan whose dataset is released with
 * mc_dataset_free(&p->ds).
 */
#ifndef MICLIP_METHOD_EXTRACT_KEY_H
#define MICLIP_METHOD_EXTRACT_KEY_H

#include <stdbool.h>
#include <stdint.h>

#include "method/keys.h"
#include "miclip/dataset.h"
#include "miclip/model.h"
#include "miclip/stages.h"

/* What one split's extraction reads and where it writes. */
typedef struct {
    mc_split split;
    const mc_dataset_cfg *dcfg;
    mc_dataset ds;
    char key[MC_SHA256_HEX_LEN + 1];
    char path[MC_PATH_CAP];
} mc_extract_plan;

/* The dataset settings of split (datasets.train / eval / unseen). */
const mc_dataset_cfg *mc_split_dataset_cfg(const mc_config *cfg, mc_split s);
/* id2label of a model (a malloc'd array of *n pointers borrowed from the model; NULL with *n = 0
 * when the model has no labels). */
const char **mc_model_labels(mc_model *m, int *n);
/* Collective. Lists and samples the split's dataset for seed and computes its store key and path
 * from the model hashes (mc_model_dir_hash) and the target's labels. */
mc_status mc_extract_plan_split(const mc_comm *c, const mc_config *cfg, mc_split split, int64_t seed,
                                const char *const *labels, int n_labels, const char *target_hash,
                                const char *clip_hash, mc_extract_plan *p, mc_error *err);
/* Collective. The path of the extraction store of split for seed, computing the key (which lists
 * and hashes the dataset, hashes the model folders and reads the target's labels). */
mc_status mc_extract_store_path(const mc_comm *c, const mc_config *cfg, mc_split split,
                                int64_t seed, char *path, size_t cap, mc_error *err);

#endif
