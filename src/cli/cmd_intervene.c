/* cmd_intervene.c - `miclip intervene CONFIG`: runs the intervene stage (docs/intervene.md). */
#include "cli.h"
#include "miclip/config.h"

int mc_cmd_intervene(const mc_comm *c, int argc, char **argv) {
    return mc_cli_run_stage(c, argc, argv, MC_STAGE_INTERVENE);
}
