/* stages_internal.h - what the files of src/stages/ share beyond the method layer (src/method/). */
#ifndef MICLIP_STAGES_INTERNAL_H
#define MICLIP_STAGES_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "miclip/buf.h"
#include "miclip/config.h"
#include "miclip/stages.h"
#include "miclip/status.h"

/* The registry entries, one per stage file (registry.c lists them). */
extern const mc_stage_desc mc_extract_stage, mc_sae_stage, mc_align_stage, mc_localize_stage,
    mc_describe_stage, mc_baselines_stage, mc_intervene_stage, mc_report_stage;

/* Local (rank 0). The report fragments OUTPUT_DIR/report/<dir>/<task>.md of every task of
 * stage, in sweep order: appends each present fragment to body (after a blank line), each record
 * "<!-- <tag>\tFIELDS -->" in them to records as "FIELDS\n", and counts the fragments found. */
mc_status mc_report_gather(const mc_config *cfg, int stage, const char *dir, const char *tag, mc_buf *body,
                           mc_buf *records, int *found, mc_error *err);

#endif
