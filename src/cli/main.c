/* main.c - the miclip command line: global options, MPI start-up, dispatch to a subcommand.
 *
 *   miclip [--quiet|--verbose] [--threads N] COMMAND [ARGS...]
 *
 * Every rank parses the same argv and so reaches the same decision without communication. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "miclip/log.h"
#include "miclip/miclip.h"

static void print_help(FILE *out) {
    fprintf(out,
            "miclip %s - interpret vision-model neurons and SAE features by aligning them with "
            "CLIP (MiCLIP)\n\n"
            "usage: miclip [--quiet|--verbose] [--threads N] COMMAND [ARGS...]\n"
            "       mpirun -n R miclip COMMAND ...    srun --mpi=pmix miclip COMMAND ...\n\n"
            "commands:\n",
            MICLIP_VERSION_STRING);
    for (int i = 0; i < mc_cli_n_commands; i++) {
        char head[256];
        snprintf(head, sizeof head, "%s %s", mc_cli_commands[i].name, mc_cli_commands[i].args);
        /* long usage lines get the summary on a line of its own, aligned */
        if (strlen(head) <= 34) fprintf(out, "  %-34s %s\n", head, mc_cli_commands[i].summary);
        else fprintf(out, "  %s\n  %-34s %s\n", head, "", mc_cli_commands[i].summary);
    }
    fprintf(out,
            "\nglobal options:\n"
            "  --quiet        warnings and errors only; no progress bars\n"
            "  --verbose      debug messages (or MICLIP_LOG=debug)\n"
            "  --threads N    BLAS/compute threads per rank (default: MICLIP_THREADS, else the CPUs\n"
            "                 this rank may use: its affinity mask shared among the node's ranks,\n"
            "                 at most SLURM_CPUS_PER_TASK and OMP_NUM_THREADS; a config's\n"
            "                 'threads' overrides all of these for its run)\n"
            "  --version      print the version\n"
            "  -h, --help     this help; 'miclip COMMAND --help' for a command's own\n\n"
            "exit codes: 0 success, 1 error, 2 usage error, 75 stopped by SIGINT/SIGTERM/SIGUSR1 "
            "after a checkpoint (rerun to resume; under mpirun send SIGUSR1: docs/errors.md)\n"
            "docs: docs/README.md in the source tree\n");
}

static int suggest_and_fail(const mc_comm *c, const char *name) {
    if (c->rank == 0) {
        fprintf(stderr, "miclip: unknown command '%s'", name);
        for (int i = 0; i < mc_cli_n_commands; i++)
            if (!strncmp(mc_cli_commands[i].name, name, 2)) {
                fprintf(stderr, " (did you mean '%s'?)", mc_cli_commands[i].name);
                break;
            }
        fprintf(stderr, "\ntry 'miclip --help'\n");
    }
    return MC_EXIT_USAGE;
}

int main(int argc, char **argv) {
    mc_comm comm;
    mc_error err = {0};
    /* Before anything can block: SIGINT, SIGTERM and SIGUSR1 only set the stop flag, for every
     * command (comm.h, docs/errors.md), and again after MPI_Init in case it touched them. */
    mc_signals_install();
    if (mc_comm_init(&argc, &argv, &comm, &err) != MC_OK) {
        fprintf(stderr, "miclip: %s\n", err.msg);
        return MC_EXIT_FAILURE;
    }
    mc_signals_install();
    int i = 1, rc = MC_EXIT_OK;
    long long threads = 0;
    const char *threads_from = "MICLIP_THREADS";
    const char *env_threads = getenv("MICLIP_THREADS");
    if (env_threads && !mc_cli_parse_int(env_threads, 1, 4096, &threads)) threads = 0;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) mc_log_set_quiet(true);
        else if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) mc_log_set_level(MC_LOG_DEBUG);
        else if (!strcmp(a, "--threads") && i + 1 < argc) {
            if (!mc_cli_parse_int(argv[++i], 1, 4096, &threads)) {
                rc = mc_cli_usage_error(&comm, "", "--threads takes a whole number from 1 to 4096");
                goto done;
            }
            threads_from = "--threads";
        } else if (!strcmp(a, "--version")) {
            if (comm.rank == 0) printf("miclip %s\n", MICLIP_VERSION_STRING);
            goto done;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            if (comm.rank == 0) print_help(stdout);
            goto done;
        } else {
            if (comm.rank == 0) fprintf(stderr, "miclip: unknown option '%s'\ntry 'miclip --help'\n", a);
            rc = MC_EXIT_USAGE;
            goto done;
        }
    }
    if (i >= argc) {
        if (comm.rank == 0) print_help(stderr);
        rc = MC_EXIT_USAGE;
        goto done;
    }
    /* Threads: --threads > MICLIP_THREADS > the CPUs this rank may use (mc_threads_default);
     * a config's 'threads' overrides them all for its run (run.c). The default is computed on
     * every rank, explicit or not, so its collectives match even if ranks' settings differ. */
    {
        char why[200], src[256];
        int n = mc_threads_default(&comm, why, sizeof why);
        snprintf(src, sizeof src, "default: %s", why);
        if (threads > 0) mc_set_threads_from((int)threads, threads_from);
        else mc_set_threads_from(n, src);
    }
    mc_debug("threads: %d per rank (%s)", mc_get_threads(), mc_threads_source());
    {
        const mc_cli_command *cmd = NULL;
        for (int k = 0; k < mc_cli_n_commands; k++)
            if (!strcmp(mc_cli_commands[k].name, argv[i])) cmd = &mc_cli_commands[k];
        if (!cmd) {
            rc = suggest_and_fail(&comm, argv[i]);
            goto done;
        }
        rc = cmd->fn(&comm, argc - i, argv + i);
    }
done:
    mc_log_warn_summary();
    mc_comm_finalize(&comm);
    return rc;
}
