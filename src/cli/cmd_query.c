/* cmd_query.c - `miclip localize` and `miclip describe`: with --concept / --unit an interactive
 * query on the trained encoders ("which units are 'red circle'?", "what is unit 12?");
 * without, the stage itself (as `miclip run CONFIG --stage localize`). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "miclip/config.h"
#include "miclip/stages.h"

enum { OPT_TASK = 2, OPT_QUERY, OPT_SEED, OPT_LAYER, OPT_VARIANT, OPT_UNITS, OPT_TAU };

#define QUERY_OPTS(what)                                                                           \
    {"seed", MC_CLI_VALUE, OPT_SEED, "S",                                                          \
     "seed of the trained encoder (default: the first of 'seeds')"},                               \
        {"layer", MC_CLI_VALUE, OPT_LAYER, "L",                                                    \
         "layer (default: extract.layers[0]; sae.layer with --units sae)"},                        \
        {"variant", MC_CLI_VALUE, OPT_VARIANT, "V",                                                \
         "E_n variant in+out|in|out (default: the first of align.variants)"},                      \
        {"units", MC_CLI_VALUE, OPT_UNITS, "K",                                                    \
         "neuron (default) or sae (SAE features, on sae.layer)"},                                  \
        {"tau", MC_CLI_VALUE, OPT_TAU, "N", "how many to print (default: " what ".tau)"}, {        \
        0                                                                                          \
    }

static const mc_cli_opt localize_opts[] = {
    {"task", MC_CLI_VALUE, OPT_TASK, "I", "only task I of the stage's sweep (stage mode)"},
    {"concept", MC_CLI_VALUE, OPT_QUERY, "TEXT", "query mode: the top units for TEXT (repeatable)"},
    QUERY_OPTS("localize")};
static const mc_cli_opt describe_opts[] = {
    {"task", MC_CLI_VALUE, OPT_TASK, "I", "only task I of the stage's sweep (stage mode)"},
    {"unit", MC_CLI_VALUE, OPT_QUERY, "I", "query mode: the top concepts of unit I (repeatable)"},
    QUERY_OPTS("describe")};

const mc_cli_cmd mc_cmd_localize_cli = {
    .name = "localize",
    .usage = "miclip localize CONFIG [--task I]\n"
             "       miclip localize CONFIG --concept TEXT [--concept TEXT ...] [--seed S] "
             "[--layer L] [--variant V]\n"
             "                       [--units neuron|sae] [--tau N]",
    .about = "Without --concept: runs the localize stage (top-tau units per concept of each "
             "concept set).\n"
             "With --concept: prints the top units of the layer for TEXT (embedded with CLIP and "
             "align.prompt),\n"
             "from the E_n the align stage trained (and the SAE, with --units sae).\n",
    .opts = localize_opts};
const mc_cli_cmd mc_cmd_describe_cli = {
    .name = "describe",
    .usage = "miclip describe CONFIG [--task I]\n"
             "       miclip describe CONFIG --unit I [--unit I ...] [--seed S] [--layer L] "
             "[--variant V]\n"
             "                       [--units neuron|sae] [--tau N]",
    .about = "Without --unit: runs the describe stage (top-tau concepts per unit, and "
             "report/descriptions.md).\n"
             "With --unit: prints the top concepts of each describe.concepts set for unit I of the "
             "layer, from\n"
             "the trained E_n (and the SAE, with --units sae).\n",
    .opts = describe_opts};

static int query_command(const mc_comm *c, int argc, char **argv, bool loc) {
    const mc_cli_cmd *spec = loc ? &mc_cmd_localize_cli : &mc_cmd_describe_cli;
    const char *cmd = spec->name;
    mc_cli_parser p;
    int rc = mc_cli_begin(&p, c, spec, argc, argv);
    if (rc >= 0) return rc;
    mc_query q;
    mc_query_defaults(&q);
    const char *path = NULL, *task = NULL, *query_only = NULL, *v;
    const char **texts = calloc((size_t)argc, sizeof *texts);
    int64_t *units = calloc((size_t)argc, sizeof *units);
    int n = 0;
    bool query = false;
    if (!texts || !units) rc = mc_cli_usage_error(c, cmd, "out of memory");
    for (int id; rc < 0 && (id = mc_cli_next(&p, &v)) != MC_CLI_END;) {
        long long x = 0;
        if (id > OPT_QUERY && !query_only)
            query_only = id == OPT_SEED      ? "--seed"
                         : id == OPT_LAYER   ? "--layer"
                         : id == OPT_VARIANT ? "--variant"
                         : id == OPT_UNITS   ? "--units"
                                             : "--tau";
        switch (id) {
        case MC_CLI_ERROR: rc = MC_EXIT_USAGE; break;
        case OPT_TASK: task = v; break;
        case OPT_QUERY:
            query = true;
            if (loc)
                texts[n++] = v;
            else if (mc_cli_parse_int(v, 0, (1ll << 31) - 1, &x))
                units[n++] = x;
            else
                rc = mc_cli_usage_error(c, cmd, "--unit takes a unit index (0, 1, ...)");
            break;
        case OPT_SEED:
            if (mc_cli_parse_int(v, 0, (1ll << 62), &x))
                q.seed = x;
            else
                rc = mc_cli_usage_error(c, cmd, "--seed takes a non-negative whole number");
            break;
        case OPT_LAYER: q.layer = v; break;
        case OPT_VARIANT:
            q.variant = !strcmp(v, "in+out") ? MC_VARIANT_INOUT
                        : !strcmp(v, "in")   ? MC_VARIANT_IN
                        : !strcmp(v, "out")  ? MC_VARIANT_OUT
                                             : -2;
            if (q.variant == -2)
                rc = mc_cli_usage_error(c, cmd, "--variant takes in+out, in or out");
            break;
        case OPT_UNITS:
            q.units = !strcmp(v, "neuron") ? MC_UNIT_NEURON : !strcmp(v, "sae") ? MC_UNIT_SAE : -2;
            if (q.units == -2) rc = mc_cli_usage_error(c, cmd, "--units takes neuron or sae");
            break;
        case OPT_TAU:
            if (mc_cli_parse_int(v, 1, 1000000, &x))
                q.tau = x;
            else
                rc = mc_cli_usage_error(c, cmd, "--tau takes a number from 1 to 1000000");
            break;
        case MC_CLI_ARG:
            if (path) rc = mc_cli_usage_error(c, cmd, "one CONFIG only");
            path = v;
            break;
        }
    }
    if (rc < 0 && !query && query_only)
        rc =
            mc_cli_usage_error(c, cmd, "%s goes with %s", query_only, loc ? "--concept" : "--unit");
    if (rc < 0 && !query) { /* the stage itself: its own parser takes --task (and only that) */
        free(texts);
        free(units);
        return mc_cli_run_stage(c, argc, argv, loc ? MC_STAGE_LOCALIZE : MC_STAGE_DESCRIBE);
    }
    if (rc < 0 && task)
        rc = mc_cli_usage_error(c, cmd, "--task is for the stage, not with %s",
                                loc ? "--concept" : "--unit");
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

int mc_cmd_localize(const mc_comm *c, int argc, char **argv) {
    return query_command(c, argc, argv, true);
}
int mc_cmd_describe(const mc_comm *c, int argc, char **argv) {
    return query_command(c, argc, argv, false);
}
