/* cmd_run.c - `miclip run CONFIG` and the per-stage commands (`miclip extract CONFIG`, ...). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "miclip/config.h"
#include "miclip/log.h"
#include "miclip/stages.h"

enum { OPT_TASK = 2, OPT_STAGE };

#define TASK_OPT                                                                                   \
    {                                                                                              \
        "task", MC_CLI_VALUE, OPT_TASK, "I",                                                       \
            "only task I of the stage's sweep (0-based; a Slurm array index).\n"                   \
            "Default: every task, or $SLURM_ARRAY_TASK_ID when running one stage\n"                \
            "inside a Slurm array job."                                                            \
    }

static const mc_cli_opt run_opts[] = {
    {"stage", MC_CLI_VALUE, OPT_STAGE, "NAME", "only this stage (one of the stages above)"},
    TASK_OPT,
    {0}};
static const mc_cli_opt stage_opts[] = {TASK_OPT, {0}};

#define RUN_NOTES                                                                                  \
    "Stages are idempotent: complete outputs are skipped, interrupted ones resume.\n"              \
    "SIGINT/SIGTERM/SIGUSR1 stop after the unit of work in flight with exit code 75 (rerun to\n"   \
    "resume); under mpirun send SIGUSR1 to mpirun (it exits 1 on SIGINT/SIGTERM; "                 \
    "docs/errors.md).\n"

static int stage_of(const char *name) {
    for (int s = 0; s < MC_STAGE_COUNT; s++)
        if (!strcmp(mc_stage_name(s), name)) return s;
    return -1;
}

static void run_stages(FILE *out, const mc_cli_cmd *cmd) {
    (void)cmd;
    fprintf(out, "\nstages:\n");
    for (int s = 0; s < MC_STAGE_COUNT; s++) {
        const mc_stage_desc *d = mc_stage_find(s);
        fprintf(out, "  %-10s %s\n", mc_stage_name(s),
                d ? d->summary : "(not implemented in this build)");
    }
}

static void stage_about(FILE *out, const mc_cli_cmd *cmd) {
    const mc_stage_desc *d = mc_stage_find(stage_of(cmd->name));
    fprintf(out,
            "\nRuns the '%s' stage of the experiment CONFIG (every task of its sweep, or task I):\n"
            "%s.\nWrites OUTPUT_DIR/%s.\n",
            cmd->name, d ? d->summary : "not implemented in this build", d ? d->outputs : "-");
}

const mc_cli_cmd mc_cmd_run_cli = {
    .name = "run",
    .usage = "miclip run CONFIG [--stage NAME] [--task I]",
    .about =
        "Runs the experiment CONFIG: its stages in pipeline order, each over the tasks of its\n"
        "sweep (seeds x layers x variants ...; 'miclip config CONFIG --tasks' lists them).\n",
    .about_more = run_stages,
    .opts = run_opts,
    .notes = RUN_NOTES};

/* The stage commands share the --task table; localize/describe (cmd_query.c) add their query. */
#define STAGE_CLI(var, cmdname)                                                                    \
    const mc_cli_cmd var = {.name = cmdname,                                                       \
                            .usage = "miclip " cmdname " CONFIG [--task I]",                       \
                            .about_more = stage_about,                                             \
                            .opts = stage_opts,                                                    \
                            .notes = RUN_NOTES};
STAGE_CLI(mc_cmd_extract_cli, "extract")
STAGE_CLI(mc_cmd_sae_cli, "sae")
STAGE_CLI(mc_cmd_align_cli, "align")
STAGE_CLI(mc_cmd_intervene_cli, "intervene")
STAGE_CLI(mc_cmd_report_cli, "report")
STAGE_CLI(mc_cmd_baselines_cli, "baselines")
/* localize/describe without their query: the stage (no help of its own: cmd_query.c's). */
STAGE_CLI(stage_localize_cli, "localize")
STAGE_CLI(stage_describe_cli, "describe")

static const mc_cli_cmd *stage_cli(int stage) {
    switch (stage) {
    case MC_STAGE_EXTRACT: return &mc_cmd_extract_cli;
    case MC_STAGE_SAE: return &mc_cmd_sae_cli;
    case MC_STAGE_ALIGN: return &mc_cmd_align_cli;
    case MC_STAGE_LOCALIZE: return &stage_localize_cli;
    case MC_STAGE_DESCRIBE: return &stage_describe_cli;
    case MC_STAGE_BASELINES: return &mc_cmd_baselines_cli;
    case MC_STAGE_INTERVENE: return &mc_cmd_intervene_cli;
    case MC_STAGE_REPORT: return &mc_cmd_report_cli;
    default: return &mc_cmd_run_cli;
    }
}

static int run_command(const mc_comm *c, int argc, char **argv, int fixed_stage) {
    const mc_cli_cmd *spec = stage_cli(fixed_stage);
    const char *cmd = spec->name;
    mc_cli_parser p;
    int rc = mc_cli_begin(&p, c, spec, argc, argv);
    if (rc >= 0) return rc;
    const char *path = NULL, *v;
    int stage = fixed_stage;
    long long task = -1;
    for (int id; (id = mc_cli_next(&p, &v)) != MC_CLI_END;) {
        switch (id) {
        case MC_CLI_ERROR: return MC_EXIT_USAGE;
        case OPT_TASK:
            if (!mc_cli_parse_int(v, 0, 1 << 30, &task))
                return mc_cli_usage_error(c, cmd, "--task takes a non-negative whole number");
            break;
        case OPT_STAGE:
            stage = stage_of(v);
            if (stage < 0) return mc_cli_usage_error(c, cmd, "unknown stage '%s'", v);
            break;
        case MC_CLI_ARG:
            if (path) return mc_cli_usage_error(c, cmd, "one CONFIG only");
            path = v;
            break;
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
    rc = mc_cli_finish(c, s, &err);
    mc_config_free(&cfg);
    return rc;
}

int mc_cmd_run(const mc_comm *c, int argc, char **argv) { return run_command(c, argc, argv, -1); }
int mc_cmd_extract(const mc_comm *c, int argc, char **argv) {
    return run_command(c, argc, argv, MC_STAGE_EXTRACT);
}
int mc_cmd_sae(const mc_comm *c, int argc, char **argv) {
    return run_command(c, argc, argv, MC_STAGE_SAE);
}
int mc_cmd_align(const mc_comm *c, int argc, char **argv) {
    return run_command(c, argc, argv, MC_STAGE_ALIGN);
}
/* For cmd_query.c, cmd_intervene.c, ...: the stage commands. */
int mc_cli_run_stage(const mc_comm *c, int argc, char **argv, int stage) {
    return run_command(c, argc, argv, stage);
}
