/* cmd_baselines.c - `miclip baselines CONFIG`: runs the baselines stage (docs/baselines.md). */
#include "cli.h"
#include "miclip/config.h"

int mc_cmd_baselines(const mc_comm *c, int argc, char **argv) {
    return mc_cli_run_stage(c, argc, argv, MC_STAGE_BASELINES);
}
