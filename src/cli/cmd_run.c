/* cmd_run.c - `miclip run CONFIG` and the per-stage commands (`miclip extract CONFIG`, ...). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "miclip/config.h"
#include "miclip/log.h"
#include "miclip/stages.h"

static void usage(const char *cmd, int stage) {
    if (stage >= 0) {
        const mc_stage_desc *d = mc_stage_find(stage);
        printf("usage: miclip %s CONFIG [--task I]\n\n"
               "Runs the '%s' stage of the experiment CONFIG (every task of its sweep, or task I):\n"
               "%s.\nWrites OUTPUT_DIR/%s.\n", cmd, cmd, d ? d->summary : "not implemented in this build",
               d ? d->outputs : "-");
    } else {
        printf("usage: miclip run CONFIG [--stage NAME] [--task I]\n\n"
               "Runs the experiment CONFIG: its stages in pipeline order, each over the tasks of its\n"
               "sweep (seeds x layers x variants ...; 'miclip config CONFIG --tasks' lists them).\n\n"
               "stages:\n");
        for (int s = 0; s < MC_STAGE_COUNT; s++) {
            const mc_stage_desc *d = mc_stage_find(s);
            printf("  %-10s %s\n", mc_stage_name(s), d ? d->summary : "(not implemented in this build)");
        }
    }
    printf("\noptions:\n"
           "%s"
           "  --task I       only task I of the stage's sweep (0-based; a Slurm array index).\n"
           "                 Default: every task, or $SLURM_ARRAY_TASK_ID when running one stage\n"
           "                 inside a Slurm array job.\n\n"
           "Stages are idempotent: complete outputs are skipped, interrupted ones resume.\n"
           "SIGINT/SIGTERM/SIGUSR1 stop after the unit of work in flight with exit code 75 (rerun to\n"
           "resume); under mpirun send SIGUSR1 to mpirun (it exits 1 on SIGINT/SIGTERM; docs/errors.md).\n",
           stage >= 0 ? "" : "  --stage NAME   only this stage (one of the stages above)\n");
}

static int run_command(const mc_comm *c, int argc, char **argv, int fixed_stage) {
    const char *cmd = argv[0];
    if (mc_cli_wants_help(argc, argv)) {
        if (c->rank == 0) usage(cmd, fixed_stage);
        return 0;
    }
    const char *path = NULL;
    int stage = fixed_stage;
    long long task = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--task") && i + 1 < argc) {
            if (!mc_cli_parse_int(argv[++i], 0, 1 << 30, &task))
                return mc_cli_usage_error(c, cmd, "--task takes a non-negative whole number");
        } else if (!strcmp(argv[i], "--stage") && i + 1 < argc && fixed_stage < 0) {
            const char *name = argv[++i];
            stage = -1;
            for (int s = 0; s < MC_STAGE_COUNT; s++)
                if (!strcmp(mc_stage_name(s), name)) stage = s;
            if (stage < 0) return mc_cli_usage_error(c, cmd, "unknown stage '%s'", name);
        } else if (argv[i][0] == '-') {
            return mc_cli_usage_error(c, cmd, "unknown option '%s'", argv[i]);
        } else if (!path) {
            path = argv[i];
        } else {
            return mc_cli_usage_error(c, cmd, "one CONFIG only");
        }
    }
    if (!path) return mc_cli_usage_error(c, cmd, "missing CONFIG");
    if (task < 0 && stage >= 0) {
        const char *env = getenv("SLURM_ARRAY_TASK_ID");
        if (env && *env && !mc_cli_parse_int(env, 0, 1 << 30, &task))
            return mc_cli_usage_error(c, cmd, "SLURM_ARRAY_TASK_ID='%s' is not a task index", env);
    }
    mc_error err = {0};
    mc_config *cfg = NULL;
    mc_status s = mc_config_load(c, path, &cfg, &err);
    if (s == MC_OK) s = mc_run(c, cfg, stage, (int)task, &err);
    int rc = mc_cli_finish(c, s, &err);
    mc_config_free(&cfg);
    return rc;
}

int mc_cmd_run(const mc_comm *c, int argc, char **argv) { return run_command(c, argc, argv, -1); }
int mc_cmd_extract(const mc_comm *c, int argc, char **argv) {
    return run_command(c, argc, argv, MC_STAGE_EXTRACT);
}
int mc_cmd_sae(const mc_comm *c, int argc, char **argv) { return run_command(c, argc, argv, MC_STAGE_SAE); }
int mc_cmd_align(const mc_comm *c, int argc, char **argv) { return run_command(c, argc, argv, MC_STAGE_ALIGN); }
/* For cmd_query.c: localize/describe without a query run their stage. */
int mc_cli_run_stage(const mc_comm *c, int argc, char **argv, int stage) {
    return run_command(c, argc, argv, stage);
}
