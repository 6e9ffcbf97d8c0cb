/* cmd_report.c - `miclip report CONFIG`: runs the report stage (docs/report.md). */
#include "cli.h"
#include "miclip/config.h"

int mc_cmd_report(const mc_comm *c, int argc, char **argv) {
    return mc_cli_run_stage(c, argc, argv, MC_STAGE_REPORT);
}
