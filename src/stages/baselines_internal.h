/* baselines_internal.h - the baselines stage (baselines.c): Act-Values and CLIP-Dissect on the
 * training-store activations, for the runner (run.c) and the intervene stage (intervene.c).
 * docs/baselines.md describes the definitions and the store layout. */
#ifndef MICLIP_BASELINES_INTERNAL_H
#define MICLIP_BASELINES_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "miclip/comm.h"
#include "miclip/config.h"
#include "miclip/stages.h"

/* Collective. One task (seed, layer, method) of the baselines stage. */
mc_status mc_stage_baselines(const mc_comm *c, const mc_config *cfg, const mc_task *task, mc_error *err);

/* Local. What the baselines stage refuses before any work: methods that need inputs this build
 * cannot use (netdissect: segmentation masks; vinterp: an LMM's descriptions). */
mc_status mc_baselines_check(const mc_config *cfg, mc_error *err);

/* Collective. The complete baselines store of (seed, layer, method): its path and key. A
 * config whose sweep lacks the task, or a store not complete, is an error naming the stage. */
mc_status mc_baselines_store(const mc_comm *c, const mc_config *cfg, int64_t seed, const char *layer, int method,
                             char *path, size_t path_cap, char *key, size_t key_cap, mc_error *err);

#endif
