/* globals.c - miclip's global options (`miclip [--quiet|--verbose] [--threads N] COMMAND ...`):
 * one option table, like every command's (cli.h), that parses them and prints their part of
 * `miclip --help`. Kept apart from main.c so that tests/core/test_cli.c checks it in process. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "miclip/miclip.h"

enum { G_QUIET = 2, G_VERBOSE, G_THREADS, G_VERSION, G_HELP };

static const mc_cli_opt global_opts[] = {
    {"quiet", MC_CLI_FLAG, G_QUIET, NULL, "warnings and errors only; no progress bars"},
    {"verbose", MC_CLI_FLAG, G_VERBOSE, NULL, "debug messages (or MICLIP_LOG=debug)"},
    {"threads", MC_CLI_VALUE, G_THREADS, "N",
     "BLAS/compute threads per rank (default: MICLIP_THREADS, else the CPUs\n"
     "this rank may use: its affinity mask shared among the node's ranks,\n"
     "at most SLURM_CPUS_PER_TASK and OMP_NUM_THREADS; a config's\n"
     "'threads' overrides all of these for its run)"},
    {"version", MC_CLI_FLAG, G_VERSION, NULL, "print the version"},
    {"help", MC_CLI_FLAG, G_HELP, NULL, "this help; 'miclip COMMAND --help' for a command's own"},
    {0}};

static const mc_cli_alias global_aliases[] = {
    {'q', "quiet"}, {'v', "verbose"}, {'h', "help"}, {0, NULL}};

/* The name "" makes usage errors read "miclip: ..." and "try 'miclip --help'". */
const mc_cli_cmd mc_cli_globals_cli = {
    .name = "",
    .usage = "miclip [--quiet|--verbose] [--threads N] COMMAND [ARGS...]",
    .opts = global_opts,
    .until_command = true,
    .aliases = global_aliases};

void mc_cli_main_help(FILE *out) {
    fprintf(out,
            "miclip %s - interpret vision-model neurons and SAE features by aligning them with "
            "CLIP (MiCLIP)\n\n"
            "usage: %s\n"
            "       mpirun -n R miclip COMMAND ...    srun --mpi=pmix miclip COMMAND ...\n\n"
            "commands:\n",
            MICLIP_VERSION_STRING, mc_cli_globals_cli.usage);
    for (int i = 0; i < mc_cli_n_commands; i++) {
        char head[256];
        snprintf(head, sizeof head, "%s %s", mc_cli_commands[i].name, mc_cli_commands[i].args);
        /* long usage lines get the summary on a line of its own, aligned */
        if (strlen(head) <= 34)
            fprintf(out, "  %-34s %s\n", head, mc_cli_commands[i].summary);
        else
            fprintf(out, "  %s\n  %-34s %s\n", head, "", mc_cli_commands[i].summary);
    }
    fprintf(out, "\nglobal options:\n");
    mc_cli_help_options(out, &mc_cli_globals_cli, NULL);
    fprintf(out,
            "\nexit codes: 0 success, 1 error, 2 usage error, 75 stopped by SIGINT/SIGTERM/SIGUSR1 "
            "after a checkpoint (rerun to resume; under mpirun send SIGUSR1: docs/errors.md)\n"
            "docs: docs/README.md in the source tree\n");
}

int mc_cli_parse_globals(const mc_comm *c, int argc, char **argv, mc_cli_globals *g) {
    memset(g, 0, sizeof *g);
    mc_cli_parser pr;
    int rc = mc_cli_begin(&pr, c, &mc_cli_globals_cli, argc, argv);
    if (rc >= 0) return rc;
    const char *v;
    for (int id; (id = mc_cli_next(&pr, &v)) != MC_CLI_END;) {
        switch (id) {
        case MC_CLI_ERROR: return MC_EXIT_USAGE;
        case MC_CLI_ARG: g->command = pr.arg_index; return -1;
        case G_QUIET: g->quiet = true; break;
        case G_VERBOSE: g->verbose = true; break;
        case G_THREADS:
            if (!mc_cli_parse_int(v, 1, 4096, &g->threads))
                return mc_cli_usage_error(c, "", "--threads takes a whole number from 1 to 4096");
            break;
        case G_VERSION:
            if (c->rank == 0) printf("miclip %s\n", MICLIP_VERSION_STRING);
            return MC_EXIT_OK;
        case G_HELP:
            if (c->rank == 0) mc_cli_main_help(stdout);
            return MC_EXIT_OK;
        default: break;
        }
    }
    /* no command */
    if (c->rank == 0) mc_cli_main_help(stderr);
    return MC_EXIT_USAGE;
}
