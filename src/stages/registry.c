/* registry.c - the stage registry (stages.h): every stage this build implements, in pipeline
 * order. A new stage is one file holding its run, check and cost, plus one line here. */
#include "stages_internal.h"

static const mc_stage_desc *const registry[MC_STAGE_COUNT] = {
    [MC_STAGE_EXTRACT] = &mc_extract_stage,     [MC_STAGE_SAE] = &mc_sae_stage,
    [MC_STAGE_ALIGN] = &mc_align_stage,         [MC_STAGE_LOCALIZE] = &mc_localize_stage,
    [MC_STAGE_DESCRIBE] = &mc_describe_stage,   [MC_STAGE_BASELINES] = &mc_baselines_stage,
    [MC_STAGE_INTERVENE] = &mc_intervene_stage, [MC_STAGE_REPORT] = &mc_report_stage,
};

const mc_stage_desc *mc_stage_find(int stage) {
    return stage >= 0 && stage < MC_STAGE_COUNT ? registry[stage] : NULL;
}

bool mc_stage_implemented(int stage) { return mc_stage_find(stage) != NULL; }
