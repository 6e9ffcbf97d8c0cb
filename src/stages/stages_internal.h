/* stages_internal.h - what the files of src/stages/ share beyond the method layer (src/method/). */
#ifndef MICLIP_STAGES_INTERNAL_H
#define MICLIP_STAGES_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "miclip/config.h"
#include "miclip/stages.h"
#include "miclip/status.h"

/* The registry entries, one per stage file (registry.c lists them). */
extern const mc_stage_desc mc_extract_stage, mc_sae_stage, mc_align_stage, mc_localize_stage,
    mc_describe_stage, mc_baselines_stage, mc_intervene_stage, mc_report_stage;

#endif
