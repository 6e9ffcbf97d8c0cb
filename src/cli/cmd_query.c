/* cmd_query.c - `miclip localize` and `miclip describe`: with --concept / --unit an interactive
 * query on the trained encoders ("which units are 'red circle'?", "what is unit 12?");
 * without, the stage itself (as `miclip run CONFIG --stage localize`). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "miclip/config.h"
#include "miclip/stages.h"

static void usage(bool loc) {
    const char *cmd = loc ? "localize" : "describe";
    printf("usage: miclip %s CONFIG [--task I]\n"
           "       miclip %s CONFIG %s [--seed S] [--layer L] [--variant V] [--units neuron|sae] [--tau N]\n\n",
           cmd, cmd, loc ? "--concept TEXT [--concept TEXT ...]" : "--unit I [--unit I ...]");
    if (loc)
        printf("Without --concept: runs the localize stage (top-tau units per concept of each concept set).\n"
               "With --concept: prints the top units of the layer for TEXT (embedded with CLIP and align.prompt),\n"
               "from the E_n the align stage trained (and the SAE, with --units sae).\n");
    else
        printf("Without --unit: runs the describe stage (top-tau concepts per unit, and report/descriptions.md).\n"
               "With --unit: prints the top concepts of each describe.concepts set for unit I of the layer, from\n"
               "the trained E_n (and the SAE, with --units sae).\n");
    printf("\noptions:\n"
           "  --task I         only task I of the stage's sweep (stage mode)\n"
           "  --seed S         seed of the trained encoder (default: the first of 'seeds')\n"
           "  --layer L        layer (default: extract.layers[0]; sae.layer with --units sae)\n"
           "  --variant V      E_n variant in+out|in|out (default: the first of align.variants)\n"
           "  --units K        neuron (default) or sae (SAE features, on sae.layer)\n"
           "  --tau N          how many to print (default: %s.tau)\n", cmd);
}

static int query_command(const mc_comm *c, int argc, char **argv, bool loc) {
    const char *cmd = argv[0];
    if (mc_cli_wants_help(argc, argv)) {
        if (c->rank == 0) usage(loc);
        return 0;
    }
    const char *query_opt = loc ? "--concept" : "--unit";
    bool query = false;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], query_opt)) query = true;
    if (!query) return mc_cli_run_stage(c, argc, argv, loc ? MC_STAGE_LOCALIZE : MC_STAGE_DESCRIBE);

    mc_query q;
    mc_query_defaults(&q);
    const char *path = NULL;
    const char **texts = calloc((size_t)argc, sizeof *texts);
    int64_t *units = calloc((size_t)argc, sizeof *units);
    int n = 0, rc = -1;
    if (!texts || !units) rc = mc_cli_usage_error(c, cmd, "out of memory");
    for (int i = 1; rc < 0 && i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        long long v = 0;
        if (!strcmp(a, query_opt) && has) {
            if (loc) texts[n++] = argv[++i];
            else if (mc_cli_parse_int(argv[++i], 0, (1ll << 31) - 1, &v)) units[n++] = v;
            else rc = mc_cli_usage_error(c, cmd, "--unit takes a unit index (0, 1, ...)");
        } else if (!strcmp(a, "--seed") && has) {
            if (mc_cli_parse_int(argv[++i], 0, (1ll << 62), &v)) q.seed = v;
            else rc = mc_cli_usage_error(c, cmd, "--seed takes a non-negative whole number");
        } else if (!strcmp(a, "--layer") && has) {
            q.layer = argv[++i];
        } else if (!strcmp(a, "--variant") && has) {
            const char *s = argv[++i];
            q.variant = !strcmp(s, "in+out") ? MC_VARIANT_INOUT : !strcmp(s, "in") ? MC_VARIANT_IN
                      : !strcmp(s, "out") ? MC_VARIANT_OUT : -2;
            if (q.variant == -2) rc = mc_cli_usage_error(c, cmd, "--variant takes in+out, in or out");
        } else if (!strcmp(a, "--units") && has) {
            const char *s = argv[++i];
            q.units = !strcmp(s, "neuron") ? MC_UNIT_NEURON : !strcmp(s, "sae") ? MC_UNIT_SAE : -2;
            if (q.units == -2) rc = mc_cli_usage_error(c, cmd, "--units takes neuron or sae");
        } else if (!strcmp(a, "--tau") && has) {
            if (mc_cli_parse_int(argv[++i], 1, 1000000, &v)) q.tau = v;
            else rc = mc_cli_usage_error(c, cmd, "--tau takes a number from 1 to 1000000");
        } else if (a[0] == '-') {
            rc = mc_cli_usage_error(c, cmd, "unknown option '%s' (or missing value)", a);
        } else if (!path) {
            path = a;
        } else {
            rc = mc_cli_usage_error(c, cmd, "one CONFIG only");
        }
    }
    if (rc < 0 && !path) rc = mc_cli_usage_error(c, cmd, "missing CONFIG");
    if (rc < 0) {
        mc_error err = {0};
        mc_config *cfg = NULL;
        mc_status s = mc_config_load(c, path, &cfg, &err);
        if (s == MC_OK)
            s = loc ? mc_query_localize(c, cfg, texts, n, &q, stdout, &err)
                    : mc_query_describe(c, cfg, units, n, &q, stdout, &err);
        rc = mc_cli_finish(c, s, &err);
        mc_config_free(&cfg);
    }
    free(texts);
    free(units);
    return rc;
}

int mc_cmd_localize(const mc_comm *c, int argc, char **argv) { return query_command(c, argc, argv, true); }
int mc_cmd_describe(const mc_comm *c, int argc, char **argv) { return query_command(c, argc, argv, false); }
