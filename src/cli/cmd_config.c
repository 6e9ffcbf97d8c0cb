/* cmd_config.c - `miclip config CONFIG [--tasks] [--hash]` and `miclip config --schema-md`:
 * validate an experiment file, print its canonical resolved form, its hash and its sweep. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "miclip/config.h"
#include "miclip/stages.h"

static void usage(void) {
    printf("usage: miclip config CONFIG [--tasks] [--hash]\n"
           "       miclip config --schema-md\n\n"
           "Validates CONFIG (every error is one line FILE:LINE:COL: key 'a.b': message) and prints\n"
           "the resolved config (defaults filled, absolute paths, canonical order) followed by its\n"
           "hash, the SHA-256 of that text.\n\n"
           "  --tasks      also list the sweep: one line per task, STAGE INDEX ID, where INDEX is\n"
           "               the stage's SLURM_ARRAY_TASK_ID\n"
           "  --hash       print only the hash\n"
           "  --schema-md  print the key reference (docs/config.md) generated from the schema\n");
}

int mc_cmd_config(const mc_comm *c, int argc, char **argv) {
    if (mc_cli_wants_help(argc, argv)) {
        if (c->rank == 0) usage();
        return MC_EXIT_OK;
    }
    const char *path = NULL;
    bool tasks = false, hash_only = false, schema = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tasks")) tasks = true;
        else if (!strcmp(argv[i], "--hash")) hash_only = true;
        else if (!strcmp(argv[i], "--schema-md")) schema = true;
        else if (argv[i][0] == '-' && argv[i][1]) return mc_cli_usage_error(c, "config", "unknown option '%s'", argv[i]);
        else if (path) return mc_cli_usage_error(c, "config", "only one CONFIG file, got '%s' and '%s'", path, argv[i]);
        else path = argv[i];
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
