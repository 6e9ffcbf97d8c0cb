/* training.h - what the sae and align stages share: the train.h settings a config asks for,
 * training curves beside a checkpoint, the checkpoint step hook and resume, and loading a
 * trained SAE back from its store.
 */
#ifndef MICLIP_METHOD_TRAINING_H
#define MICLIP_METHOD_TRAINING_H

#include <stdbool.h>
#include <stdint.h>

#include "method/keys.h"
#include "method/train_data.h"
#include "miclip/comm.h"
#include "miclip/config.h"
#include "miclip/train.h"

/* The settings of the SAE (train.h) for cfg; n is the input width. */
mc_sae_config mc_sae_config_of(const mc_config *cfg, int64_t n, int64_t seed);
/* The settings of E_n for cfg: n inputs, d outputs, n_classes text targets. */
mc_align_config mc_align_config_of(const mc_config *cfg, int64_t n, int64_t d, int64_t n_classes,
                                   int variant, int64_t seed);
/* Collective. Creates the SAE of cfg for a dim-wide layer and seed and loads its weights from the
 * sae stage's store at path (each dataset's shape checked; MC_ERR_SHAPE names the store and the
 * dataset). *out is the caller's (mc_sae_free). */
mc_status mc_sae_load_store(const mc_comm *c, const mc_config *cfg, const char *path, int64_t dim,
                            int64_t seed, mc_sae **out, mc_error *err);
/* Whether SAE features exist for layer in this config (sae stage listed and sae.layer). */
bool mc_sae_applies(const mc_config *cfg, const char *layer);

/* Local (rank 0). Writes curve (count entries of its four arrays) atomically as safetensors. */
mc_status mc_curve_save(const mc_train_curve *curve, const char *path, mc_error *err);
/* Local. Loads path into curve (emptied first), keeping the first `keep` entries; a file with
 * fewer is MC_ERR_FORMAT. A missing file with keep == 0 gives an empty curve. */
mc_status mc_curve_load(mc_train_curve *curve, const char *path, int64_t keep, mc_error *err);

/* Local. Splits imgs[0..n) (ascending) into held-out rows, the first nh of the permutation of
 * (seed, stream), and training rows, both ascending in *ho and *train (each allocated n + 1 long,
 * the caller's to free, also on failure). A pure function of its arguments: the same on every
 * rank and at any rank count. */
mc_status mc_heldout_split(const int64_t *imgs, int64_t n, int64_t nh, int64_t seed,
                           uint64_t stream, int64_t **train, int64_t *n_train, int64_t **ho,
                           int64_t *n_ho, mc_error *err);

/* Collective. What the sae and align stores share, in this order: the four arrays of curve as 1-D
 * float32 datasets names[0..3] (rank 0's values) and the provenance of stage (training data td,
 * seed). The datasets and attributes that follow are each stage's own. */
mc_status mc_train_store_common(mc_store *st, bool root, const mc_train_curve *curve,
                                const char *const names[4], const char *stage, const mc_config *cfg,
                                const mc_train_data *td, int64_t seed, mc_error *err);

/* A step hook for the training loops: every `every` steps, and when a stop signal reached
 * any rank, rank 0 writes the curve and then the checkpoint (curve first, so a curve is never
 * shorter than its checkpoint's step), the status is agreed, and a stop returns
 * MC_ERR_INTERRUPTED. When max_steps > 0, reaching it stops training with *limit_hit set. */
typedef struct {
    const mc_comm *comm;
    mc_encoder *enc; /* exactly one of enc and sae */
    mc_sae *sae;
    const mc_train_curve *curve;
    const char *ckpt, *curve_path, *key; /* borrowed */
    int64_t every, max_steps;
    bool limit_hit;
    const char *what; /* "sae", "align": messages */
    /* Optional: more state to save with every checkpoint (rank 0, before the curve and the
     * checkpoint, so it is never older than the checkpoint it goes with). */
    mc_status (*save_extra)(void *user, mc_error *err);
    void *extra_user;
} mc_stage_hook;
mc_status mc_stage_hook_fn(void *user, const mc_train_pos *pos, mc_error *err);
/* Collective. Loads p's checkpoint into enc or sae (and its curve, cut to the checkpoint's
 * step) when it exists; *pos stays zero otherwise. */
mc_status mc_stage_resume_checkpoint(const mc_comm *c, const mc_run_paths *p, mc_encoder *enc,
                                     mc_sae *sae, mc_train_pos *pos, mc_train_curve *curve,
                                     const char *what, mc_error *err);
/* Collective. Saves checkpoint and curve now (rank 0), agreeing on the status. */
mc_status mc_stage_save(mc_stage_hook *h, const mc_train_pos *pos, mc_error *err);

#endif
