/* intervene_internal.h - the intervene stage (intervene.c), for the runner (run.c). */
#ifndef MICLIP_INTERVENE_INTERNAL_H
#define MICLIP_INTERVENE_INTERNAL_H

#include "miclip/comm.h"
#include "miclip/config.h"
#include "miclip/stages.h"

/* Collective. One task (seed, method, mode, beta) of the intervene stage (docs/intervene.md). */
mc_status mc_stage_intervene(const mc_comm *c, const mc_config *cfg, const mc_task *task,
                             mc_error *err);

/* Local. What intervene can refuse before any stage runs: methods other than miclip and random
 * (netdissect, vinterp; act_values / clip_dissect without the baselines stage), SAE units on a layer
 * without the SAE. */
mc_status mc_intervene_check(const mc_config *cfg, mc_error *err);

#endif
