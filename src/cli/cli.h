/* cli.h - internal interface between main.c and the subcommands (src/cli/cmd_*.c).
 *
 * A subcommand is `int mc_cmd_NAME(const mc_comm *c, int argc, char **argv)`: argv[0] is the
 * subcommand name, the rest its arguments. It returns the process exit code, and must have
 * agreed on errors collectively before returning (mc_cli_finish does that and prints once).
 * Register it with one line in commands.def.
 */
#ifndef MICLIP_CLI_H
#define MICLIP_CLI_H

#include <stdbool.h>

#include "miclip/comm.h"
#include "miclip/status.h"

typedef int (*mc_cmd_fn)(const mc_comm *c, int argc, char **argv);

#define MC_COMMAND(name, fn, args, summary) int fn(const mc_comm *c, int argc, char **argv);
#include "commands.def"
#undef MC_COMMAND

/* Collective: agrees on s across ranks, prints the first failing rank's message once (on rank
 * 0) and returns the exit code for it. */
int mc_cli_finish(const mc_comm *c, mc_status s, mc_error *err);

/* True if argv holds -h or --help before a "--". */
bool mc_cli_wants_help(int argc, char **argv);

/* Prints a usage error on rank 0 ("miclip NAME: msg" + "try 'miclip NAME --help'") and returns
 * MC_EXIT_USAGE. Every rank sees the same argv, so every rank reaches the same verdict. */
int mc_cli_usage_error(const mc_comm *c, const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* cmd_run.c: runs one stage of CONFIG as `miclip <stage> CONFIG [--task I]` does. */
int mc_cli_run_stage(const mc_comm *c, int argc, char **argv, int stage);

/* Parses a non-negative integer option value; false (and a usage message) if malformed. */
bool mc_cli_parse_int(const char *s, long long lo, long long hi, long long *out);

#endif
