/* cmd_config.c - `miclip config CONFIG [--tasks] [--hash]` and `miclip config --schema-md`:
 * validate an experiment file, print its canonical resolved form, its hash and its sweep. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "miclip/config.h"
#include "miclip/stages.h"

enum { OPT_TASKS = 2, OPT_HASH, OPT_SCHEMA };

static const mc_cli_opt opts[] = {
    {"tasks", MC_CLI_FLAG, OPT_TASKS, NULL,
     "also list the sweep: one line per task, STAGE INDEX ID, where INDEX is\n"
     "the stage's SLURM_ARRAY_TASK_ID"},
    {"hash", MC_CLI_FLAG, OPT_HASH, NULL, "print only the hash"},
    {"schema-md", MC_CLI_FLAG, OPT_SCHEMA, NULL,
     "print the key reference (docs/config.md) generated from the schema"},
    {0}};

const mc_cli_cmd mc_cmd_config_cli = {
    .name = "config",
    .usage = "miclip config CONFIG [--tasks] [--hash]\n"
             "       miclip config --schema-md",
    .about =
        "Validates CONFIG (every error is one line FILE:LINE:COL: key 'a.b': message) and prints\n"
        "the resolved config (defaults filled, absolute paths, canonical order) followed by its\n"
        "hash, the SHA-256 of that text.\n",
    .opts = opts};

int mc_cmd_config(const mc_comm *c, int argc, char **argv) {
    mc_cli_parser p;
    int rc0 = mc_cli_begin(&p, c, &mc_cmd_config_cli, argc, argv);
    if (rc0 >= 0) return rc0;
    const char *path = NULL, *v;
    bool tasks = false, hash_only = false, schema = false;
    for (int id; (id = mc_cli_next(&p, &v)) != MC_CLI_END;) {
        switch (id) {
        case MC_CLI_ERROR: return MC_EXIT_USAGE;
        case OPT_TASKS: tasks = true; break;
        case OPT_HASH: hash_only = true; break;
        case OPT_SCHEMA: schema = true; break;
        case MC_CLI_ARG:
            if (path)
                return mc_cli_usage_error(c, "config", "only one CONFIG file, got '%s' and '%s'",
                                          path, v);
            path = v;
            break;
        }
    }
    if (schema) {
        if (path || tasks || hash_only)
            return mc_cli_usage_error(c, "config", "--schema-md takes no other argument");
        if (c->rank == 0) mc_config_write_schema_md(stdout);
        return MC_EXIT_OK;
    }
    if (!path) return mc_cli_usage_error(c, "config", "missing CONFIG file");

    mc_error err = {0};
    mc_config *cfg = NULL;
    mc_status s = mc_config_load(c, path, &cfg, &err);
    mc_task *list = NULL;
    int n = 0;
    if (s == MC_OK && tasks) s = mc_config_all_tasks(cfg, &list, &n, &err);
    int rc = mc_cli_finish(c, s, &err);
    if (rc == MC_EXIT_OK && c->rank == 0) {
        if (hash_only) {
            printf("%s\n", cfg->hash);
        } else {
            fputs(cfg->canonical, stdout);
            printf("# config hash (SHA-256 of the text above): %s\n", cfg->hash);
        }
        if (tasks) {
            printf("# tasks: stage index id (%d in all)\n", n);
            for (int i = 0; i < n; i++)
                printf("%s %d %s\n", mc_stage_name(list[i].stage), list[i].index, list[i].id);
        }
    }
    if (rc == MC_EXIT_OK && !tasks && !hash_only) rc = mc_preflight_report(c, cfg); /* issue 16 */
    mc_tasks_free(&list);
    mc_config_free(&cfg);
    return rc;
}
