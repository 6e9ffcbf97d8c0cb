/* cli.h - internal interface between main.c and the subcommands (src/cli/cmd_*.c).
 *
 * A subcommand is `int mc_cmd_NAME(const mc_comm *c, int argc, char **argv)`: argv[0] is the
 * subcommand name, the rest its arguments. It returns the process exit code, and must have
 * agreed on errors collectively before returning (mc_cli_finish does that and prints once).
 * Register it with one line in commands.def, and give it its option table mc_cmd_NAME_cli
 * (below; docs/architecture.md, "The command line").
 */
#ifndef MICLIP_CLI_H
#define MICLIP_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>

#include "miclip/comm.h"
#include "miclip/status.h"

typedef int (*mc_cmd_fn)(const mc_comm *c, int argc, char **argv);

/* --- option tables ------------------------------------------------------------------------
 * Every command has ONE table of its options, which both parses argv (getopt_long, through
 * mc_cli_begin/mc_cli_next) and prints the options section of its --help (mc_cli_help):
 *
 *   static const mc_cli_opt opts[] = {
 *       {"task", MC_CLI_VALUE, OPT_TASK, "I", "only task I of the stage's sweep"},
 *       {"json", MC_CLI_FLAG, OPT_JSON, NULL, "the plan as JSON"},
 *       {0}};
 *   const mc_cli_cmd mc_cmd_plan_cli = {"plan", "miclip plan CONFIG [--json]", "About...", opts};
 *
 *   mc_cli_parser p;
 *   int rc = mc_cli_begin(&p, c, &mc_cmd_plan_cli, argc, argv);
 *   if (rc >= 0) return rc;                       (--help printed: 0)
 *   const char *v;
 *   for (int id; (id = mc_cli_next(&p, &v)) != MC_CLI_END;) switch (id) {
 *       case MC_CLI_ERROR: return MC_EXIT_USAGE;  (message printed on rank 0)
 *       case MC_CLI_ARG: positional v ...
 *       case OPT_TASK: v is the value ...
 *   }
 *
 * Options are long (--name VALUE or --name=VALUE), with a one-letter alias (-q) where the
 * command's alias list gives one; abbreviations are refused, so adding an option never changes
 * what an existing spelling means. Positionals and options mix in any order and come back in
 * command-line order; after "--" everything is positional. -h/--help anywhere before "--" prints
 * the help (mc_cli_begin). Every rank parses the same argv the same way, so every rank reaches
 * the same verdict; only rank 0 prints.
 *
 * miclip's own global options (src/cli/globals.c) are a table of the same kind with
 * until_command set: they come before the command, parsing ends at the first positional (the
 * command name), and -h/--help are entries of that table, not a scan of the whole argv (which
 * would steal a command's own --help). */
enum { MC_CLI_FLAG = 0, MC_CLI_VALUE = 1 };                 /* mc_cli_opt.has_arg */
enum { MC_CLI_ERROR = -1, MC_CLI_END = 0, MC_CLI_ARG = 1 }; /* mc_cli_next; table ids are > 1 */
#define MC_CLI_MAX_OPTS 32

typedef struct {
    const char *name;     /* long name without "--"; a {0} entry ends the table */
    int has_arg;          /* MC_CLI_FLAG or MC_CLI_VALUE */
    int id;               /* what mc_cli_next returns for it: > 1, unique in the table */
    const char *arg_name; /* the value's name in the help ("N", "FILE"); NULL for a flag */
    const char *help;     /* one or more lines ('\n'-separated), aligned in the help */
} mc_cli_opt;

/* A one-letter alias of a table's option: {'q', "quiet"} accepts -q for --quiet. */
typedef struct {
    char letter; /* 0 ends the list */
    const char *name;
} mc_cli_alias;

typedef struct mc_cli_cmd {
    const char *name;       /* as typed: "run", "embed-text" */
    const char *action;     /* the one sub-action that must come first ("make"), or NULL:
                           * mc_cli_begin checks it (missing: the help and exit 2) */
    const char *usage;      /* after "usage: "; more lines indented by the command itself */
    const char *about;      /* paragraphs after the usage, or NULL */
    const mc_cli_opt *opts; /* the option table (NULL: no options) */
    const char *notes;      /* printed after the options, or NULL */
    void (*about_more)(FILE *out, const struct mc_cli_cmd *cmd); /* prints generated text
                                                     * after about (stage lists), or NULL */
    bool until_command; /* the global options (above): parsing ends at the first positional,
                           * whose argv index mc_cli_parser.arg_index gives; no help scan */
    const mc_cli_alias *aliases; /* one-letter aliases of options ("-q, --quiet" in the help),
                                  * or NULL */
} mc_cli_cmd;

typedef struct {
    const mc_comm *c;
    const mc_cli_cmd *cmd;
    int argc;
    char **argv;
    bool rest;     /* after "--": argv[optind..] are positionals */
    int next;      /* the next positional after "--" */
    int shift;     /* 1 when the sub-action was skipped: argv here is the caller's argv + 1 */
    int arg_index; /* the caller's argv index of the positional mc_cli_next last returned */
    struct option lopts[MC_CLI_MAX_OPTS + 1];
    char shorts[3 + 2 * MC_CLI_MAX_OPTS]; /* getopt's optstring: "-:" and the one-letter aliases */
} mc_cli_parser;

/* Prints the help of cmd to out: usage, about, "options:" from the table (with -h, --help),
 * notes. */
void mc_cli_help(FILE *out, const mc_cli_cmd *cmd);
/* Prints the lines of cmd's option table, aligned ("  -q, --quiet    help"), then "-h, --help"
 * with help_help unless that is NULL. mc_cli_help's options section; main's "global options". */
void mc_cli_help_options(FILE *out, const mc_cli_cmd *cmd, const char *help_help);

/* Starts parsing argv[1..argc) (argv[0] is the command name) with cmd's table. Returns -1 to go
 * on with mc_cli_next, or the exit code to return at once: 0 after printing the help (-h or
 * --help before a "--", on rank 0). */
int mc_cli_begin(mc_cli_parser *p, const mc_comm *c, const mc_cli_cmd *cmd, int argc, char **argv);

/* The next item of argv, in command-line order: an option's id (*val its value, NULL for a
 * flag), MC_CLI_ARG (*val the positional), MC_CLI_END, or MC_CLI_ERROR after printing one usage
 * message naming the option on rank 0 (unknown, abbreviated, missing value, value given to a
 * flag): return MC_EXIT_USAGE then. */
int mc_cli_next(mc_cli_parser *p, const char **val);

/* The commands of commands.def, in order, each with its option table: main.c dispatches
 * through it and tests/core/test_cli.c checks every command's table against its --help. */
typedef struct {
    const char *name;
    mc_cmd_fn fn;
    const char *args;
    const char *summary;
    const mc_cli_cmd *cli;
} mc_cli_command;
extern const mc_cli_command mc_cli_commands[];
extern const int mc_cli_n_commands;

/* Each command's function and its option table, named fn##_cli (mc_cmd_run_cli). */
#define MC_COMMAND(name, fn, args, summary)                                                        \
    int fn(const mc_comm *c, int argc, char **argv);                                               \
    extern const mc_cli_cmd fn##_cli;
#include "commands.def"
#undef MC_COMMAND

/* Collective: agrees on s across ranks, prints the first failing rank's message once (on rank
 * 0) and returns the exit code for it. */
int mc_cli_finish(const mc_comm *c, mc_status s, mc_error *err);

/* True if argv holds -h or --help before a "--". */
bool mc_cli_wants_help(int argc, char **argv);

/* Prints a usage error on rank 0 ("miclip NAME: msg" + "try 'miclip NAME --help'"; NAME "" for
 * the global options: "miclip: msg" + "try 'miclip --help'") and returns MC_EXIT_USAGE. Every
 * rank sees the same argv, so every rank reaches the same verdict. */
int mc_cli_usage_error(const mc_comm *c, const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* --- the global options (src/cli/globals.c) ---------------------------------------------- */
typedef struct {
    bool quiet, verbose; /* --quiet / -q, --verbose / -v */
    long long threads;   /* --threads N, or 0: not given */
    int command;         /* argv index of the command name */
} mc_cli_globals;
extern const mc_cli_cmd mc_cli_globals_cli;
/* Parses miclip's global options from argv[1..] up to the command name into *g. Returns -1 to go
 * on (g->command set), or the exit code to return at once: 0 after --help or --version (printed
 * on rank 0), 2 after a usage error or with no command (the help on stderr). */
int mc_cli_parse_globals(const mc_comm *c, int argc, char **argv, mc_cli_globals *g);
/* miclip --help: the usage, the commands of commands.def, the global options' table, the exit
 * codes. */
void mc_cli_main_help(FILE *out);

/* cmd_run.c: runs one stage of CONFIG as `miclip <stage> CONFIG [--task I]` does. */
int mc_cli_run_stage(const mc_comm *c, int argc, char **argv, int stage);

/* Parses a non-negative integer option value; false (and a usage message) if malformed. */
bool mc_cli_parse_int(const char *s, long long lo, long long hi, long long *out);

#endif
