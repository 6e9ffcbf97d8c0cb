/* baselines_internal.h - the baselines stage (baselines.c): Act-Values and CLIP-Dissect on the
 * training-store activations, for the runner (run.c) and the intervene stage (intervene.c).
 * docs/baselines.md describes the definitions and the store layout. */
#ifndef MICLIP_BASELINES_INTERNAL_H
#define MICLIP_BASELINES_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "miclip/comm.h"
#include "miclip/config.h"
#include "miclip/stages.h"
#include "method/acts.h"
#include "method/concepts.h"
#include "method/train_data.h"
#include "method/units.h"

/* NetDissect-Lite's settings.QUANTILE: a unit's threshold is its top-0.5% activation. */
#define MC_NETDISSECT_QUANTILE 0.005

/* Collective. One task (seed, layer, method) of the baselines stage. */
mc_status mc_stage_baselines(const mc_comm *c, const mc_config *cfg, const mc_task *task,
                             mc_error *err);

/* Local. What the baselines stage refuses before any work: methods that need inputs this build
 * cannot use (netdissect: segmentation masks; vinterp: an LMM's descriptions). */
mc_status mc_baselines_check(const mc_config *cfg, mc_error *err);

/* Collective. The complete baselines store of (seed, layer, method): its path and key. A
 * config whose sweep lacks the task, or a store not complete, is an error naming the stage. */
mc_status mc_baselines_store(const mc_comm *c, const mc_config *cfg, int64_t seed,
                             const char *layer, int method, char *path, size_t path_cap, char *key,
                             size_t key_cap, mc_error *err);

/* --- netdissect.c --- */
/* Local. The concept-mask folder: baselines.netdissect_masks, else <root>/masks/<split> of the
 * training dataset (<root>/masks without a split). False when the path is too long. */
bool mc_netdissect_masks_dir(const mc_config *cfg, char *dir, size_t cap);
/* Local. What netdissect refuses before any work: extract.pool other than all, a `logits` layer,
 * a missing masks folder (one line naming the key or the folder). */
mc_status mc_netdissect_check(const mc_config *cfg, mc_error *err);
/* Collective. IoU of the neurons [u0, u0 + rows) of acts (this rank's) with every concept of the
 * sets whose use[] is set: S[set] = malloc'd [rows * n_concepts] (NULL for sets not used; the
 * caller frees). */
mc_status mc_netdissect_iou(const mc_comm *c, const mc_config *cfg, const mc_train_data *td,
                            mc_acts *acts, int64_t u0, int64_t rows, const mc_concepts *sets,
                            int n_sets, const bool *use, float **S, mc_error *err);

/* Local. The unit rows [u0, u1) rank `rank` of `size` owns: whole blocks of MC_UNIT_BLOCK. */
void mc_baselines_unit_rows(int64_t U, int rank, int size, int64_t *u0, int64_t *u1);

/* --- vinterp.c --- */
/* Local. What vinterp refuses before any work: neither explainer nor descriptions, or a
 * descriptions file that does not exist (one line naming the key). */
mc_status mc_vinterp_check(const mc_config *cfg, mc_error *err);
/* Collective. V-Interp's descriptions of the U units of one kind: top[rows * k] is this rank's
 * units' top images (activation descending). Rank 0 writes dir/grids/<kind>-<u>.png and .json,
 * runs baselines.vinterp.explainer once per unit (or reads baselines.vinterp.descriptions), adds
 * each unit's entry to index (a JSON array) and descs (an object) and embeds the texts with the
 * CLIP text tower (no prompt, L2-normalised). Every rank gets *desc [U] (mc_strings_free) and
 * *emb [U * dim] (free). */
mc_status mc_vinterp_describe(const mc_comm *c, const mc_config *cfg, const mc_task *task,
                              const mc_train_data *td, int kind, int64_t U, int64_t u0,
                              int64_t rows, const mc_scored *top, int64_t k, const char *dir,
                              json_t *index, json_t *descs, char ***desc, float **emb, int64_t dim,
                              mc_error *err);
/* Local. S[rows x cs->n] = cosine of the description embeddings emb[(u0 + u) * dim] (unit rows)
 * with the concept embeddings of cs. */
void mc_vinterp_scores(const float *emb, int64_t dim, int64_t u0, int64_t rows,
                       const mc_concepts *cs, float *S);

#endif
