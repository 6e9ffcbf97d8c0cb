/* main.c - the miclip command line: global options, MPI start-up, dispatch to a subcommand.
 *
 *   miclip [--quiet|--verbose] [--threads N] COMMAND [ARGS...]
 *
 * The global options are one option table (globals.c, cli.h). Every rank parses the same argv
 * and so reaches the same decision without communication. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "miclip/log.h"
#include "miclip/miclip.h"

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
     * command (signals.h, docs/errors.md), and again after MPI_Init in case it touched them. */
    mc_signals_install();
    if (mc_comm_init(&argc, &argv, &comm, &err) != MC_OK) {
        fprintf(stderr, "miclip: %s\n", err.msg);
        return MC_EXIT_FAILURE;
    }
    mc_signals_install();
    /* The global options' table is in globals.c (cli.h): it parses up to the command name. */
    mc_cli_globals g;
    int rc = mc_cli_parse_globals(&comm, argc, argv, &g);
    if (rc >= 0) goto done;
    rc = MC_EXIT_OK;
    if (g.quiet) mc_log_set_quiet(true);
    if (g.verbose) mc_log_set_level(MC_LOG_DEBUG);
    /* Threads: --threads > MICLIP_THREADS > the CPUs this rank may use (mc_threads_default);
     * a config's 'threads' overrides them all for its run (run.c). The default is computed on
     * every rank, explicit or not, so its collectives match even if ranks' settings differ. */
    {
        long long threads = g.threads;
        const char *threads_from = "--threads";
        if (!threads) {
            const char *env = getenv("MICLIP_THREADS");
            threads_from = "MICLIP_THREADS";
            if (env && !mc_cli_parse_int(env, 1, 4096, &threads)) threads = 0;
        }
        char why[200], src[256];
        int n = mc_threads_default(&comm, why, sizeof why);
        snprintf(src, sizeof src, "default: %s", why);
        if (threads > 0)
            mc_set_threads_from((int)threads, threads_from);
        else
            mc_set_threads_from(n, src);
    }
    mc_debug("threads: %d per rank (%s)", mc_get_threads(), mc_threads_source());
    {
        const mc_cli_command *cmd = NULL;
        for (int k = 0; k < mc_cli_n_commands; k++)
            if (!strcmp(mc_cli_commands[k].name, argv[g.command])) cmd = &mc_cli_commands[k];
        if (!cmd) {
            rc = suggest_and_fail(&comm, argv[g.command]);
            goto done;
        }
        rc = cmd->fn(&comm, argc - g.command, argv + g.command);
    }
done:
    mc_log_warn_summary();
    mc_comm_finalize(&comm);
    return rc;
}
