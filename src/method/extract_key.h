/* extract_key.h - the identity of an extraction store: the dataset of a split (listed and
 * sampled), the key of everything that determines the store's contents, and its path
 * OUTPUT_DIR/extract/<split>-<key16>.h5, or <split>-s<sample seed>-<key16>.h5 for a sampled split
 * (docs/extract.md). The run's seed enters only through the sample it draws.
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
#include "miclip/stages.h"

/* What one split's extraction reads and where it writes. */
typedef struct {
    mc_split split;
    const mc_dataset_cfg *dcfg;
    mc_dataset ds;
    int64_t
        sample_seed; /* the seed that drew the sample, or -1: the whole split (any seed's store) */
    char key[MC_SHA256_HEX_LEN + 1];
    char path[MC_PATH_CAP];
} mc_extract_plan;

/* The seed that draws the n_samples images of d for the run's seed (datasets.*.sample_seed), or
 * -1 when d is not sampled (n_samples 0). Local. */
int64_t mc_split_sample_seed(const mc_dataset_cfg *d, int64_t seed);

/* The dataset settings of split (datasets.train / eval / unseen). */
const mc_dataset_cfg *mc_split_dataset_cfg(const mc_config *cfg, mc_split s);
/* The target's class labels: config.json's id2label in id order (none without one). Owned. */
typedef struct {
    char **v;
    int n;
} mc_labels;
/* Collective. Reads models.target/config.json only (no weights). */
mc_status mc_target_labels(const mc_comm *c, const mc_config *cfg, mc_labels *l, mc_error *err);
void mc_labels_free(mc_labels *l);
/* Collective. Lists and samples the split's dataset for seed and computes its store key and path
 * from the model hashes (mc_model_dir_hash) and the target's labels. The seed enters the key and
 * path only where it draws a sample (n_samples set and below the listing's size), as the sample
 * seed (mc_split_sample_seed): runs of other seeds find the same store. */
mc_status mc_extract_plan_split(const mc_comm *c, const mc_config *cfg, mc_split split,
                                int64_t seed, const char *const *labels, int n_labels,
                                const char *target_hash, const char *clip_hash, mc_extract_plan *p,
                                mc_error *err);
/* Collective (rank 0 writes). The run manifest of a complete extraction store:
 * OUTPUT_DIR/extract/<split>-s<seed>.json with its recipe (what determines the store apart from
 * the dataset folder's contents: model hashes, extraction settings, the dataset's settings), key,
 * store path, model hashes, image count and class names. */
mc_status mc_extract_manifest_write(const mc_comm *c, const mc_config *cfg,
                                    const mc_extract_plan *p, int64_t seed, const char *target_hash,
                                    const char *clip_hash, mc_error *err);
/* Collective. The path of the extraction store of split for seed. From the run manifest when its
 * recipe matches the config and its store carries the recorded key (no dataset listing; the model
 * hashes come from the file-hash cache); otherwise the key is computed (the dataset listed and
 * sampled, the target's labels read from its config.json). */
mc_status mc_extract_store_path(const mc_comm *c, const mc_config *cfg, mc_split split,
                                int64_t seed, char *path, size_t cap, mc_error *err);

#endif
