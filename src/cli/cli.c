/* cli.c - what the commands share: the command table, usage errors, collective exit codes, and
 * the option tables (cli.h): one table per command parses its argv with getopt_long and prints
 * the options section of its --help. */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "miclip/log.h"

const mc_cli_command mc_cli_commands[] = {
#define MC_COMMAND(name, fn, args, summary) {name, fn, args, summary, &fn##_cli},
#include "commands.def"
#undef MC_COMMAND
};
const int mc_cli_n_commands = (int)(sizeof mc_cli_commands / sizeof mc_cli_commands[0]);

int mc_cli_finish(const mc_comm *c, mc_status s, mc_error *err) {
    mc_status agreed = mc_comm_agree(c, s, err);
    if (agreed == MC_OK) return MC_EXIT_OK;
    if (c->rank == 0) {
        if (agreed == MC_ERR_INTERRUPTED)
            mc_warn("%s", err->msg);
        else
            mc_log_error_record(err);
    }
    return mc_status_exit_code(agreed);
}

bool mc_cli_wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--")) return false;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return true;
    }
    return false;
}

int mc_cli_usage_error(const mc_comm *c, const char *cmd, const char *fmt, ...) {
    if (c->rank == 0) {
        char msg[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        if (*cmd)
            fprintf(stderr, "miclip %s: %s\ntry 'miclip %s --help'\n", cmd, msg, cmd);
        else
            fprintf(stderr, "miclip: %s\ntry 'miclip --help'\n", msg);
    }
    return MC_EXIT_USAGE;
}

bool mc_cli_parse_int(const char *s, long long lo, long long hi, long long *out) {
    if (!s || !*s) return false;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (*end != '\0' || v < lo || v > hi) return false;
    *out = v;
    return true;
}

/* --- help --------------------------------------------------------------------------------- */

#define HELP_COL_MAX 24 /* widest "--name ARG" that keeps its help on the same line */

/* The alias letter of option `name` in aliases, or 0. */
static char alias_of(const mc_cli_alias *aliases, const char *name) {
    for (const mc_cli_alias *a = aliases; a && a->letter; a++)
        if (!strcmp(a->name, name)) return a->letter;
    return 0;
}

static int opt_head(const mc_cli_opt *o, char letter, char *buf, size_t cap) {
    char alias[8] = "";
    if (letter) snprintf(alias, sizeof alias, "-%c, ", letter);
    return snprintf(buf, cap, "%s--%s%s%s", alias, o->name, o->arg_name ? " " : "",
                    o->arg_name ? o->arg_name : "");
}

/* "  HEAD  help line 1\n" then the help's further lines under the first. */
static void help_line(FILE *out, const char *head, int col, const char *help) {
    int n = (int)strlen(head);
    if (n > col)
        fprintf(out, "  %s\n  %-*s  ", head, col, "");
    else
        fprintf(out, "  %-*s  ", col, head);
    for (const char *h = help ? help : ""; *h;) {
        const char *e = strchr(h, '\n');
        int len = e ? (int)(e - h) : (int)strlen(h);
        fprintf(out, "%.*s\n", len, h);
        if (!e) return;
        h = e + 1;
        if (*h) fprintf(out, "  %-*s  ", col, "");
    }
    fputc('\n', out);
}

void mc_cli_help_options(FILE *out, const mc_cli_cmd *cmd, const char *help_help) {
    int col = 10; /* "-h, --help" */
    char head[256];
    for (const mc_cli_opt *o = cmd->opts; o && o->name; o++) {
        int n = opt_head(o, alias_of(cmd->aliases, o->name), head, sizeof head);
        if (n > col && n <= HELP_COL_MAX) col = n;
    }
    for (const mc_cli_opt *o = cmd->opts; o && o->name; o++) {
        opt_head(o, alias_of(cmd->aliases, o->name), head, sizeof head);
        help_line(out, head, col, o->help);
    }
    if (help_help) help_line(out, "-h, --help", col, help_help);
}

void mc_cli_help(FILE *out, const mc_cli_cmd *cmd) {
    fprintf(out, "usage: %s\n", cmd->usage);
    if (cmd->about) fprintf(out, "\n%s", cmd->about);
    if (cmd->about_more) cmd->about_more(out, cmd);
    fprintf(out, "\noptions:\n");
    mc_cli_help_options(out, cmd, "this help");
    if (cmd->notes) fprintf(out, "\n%s", cmd->notes);
}

/* --- parsing ------------------------------------------------------------------------------ */

/* The parser drives glibc's getopt_long over argv in RETURN_IN_ORDER mode (optstring "-:"):
 * positionals come back in place as code 1, options as 0x100 + their table index; nothing is
 * permuted, whatever POSIXLY_CORRECT says, and the leading ':' makes a missing value ':'
 * instead of '?'. opterr = 0: getopt prints nothing itself (the messages are ours, rank 0's).
 *
 * getopt keeps its state in globals (optind, optarg, optopt and a private "next character"
 * pointer), and a command may parse more than one argv in one process (localize without
 * --concept hands its argv to the stage's parser; the tests run every command in one process).
 * optind = 0 (not 1) makes glibc re-initialise all of it, including the optstring's ordering
 * flags, on the next call; mc_cli_begin does so each time. */
enum { OPT_BASE = 0x100 };

int mc_cli_begin(mc_cli_parser *p, const mc_comm *c, const mc_cli_cmd *cmd, int argc, char **argv) {
    memset(p, 0, sizeof *p);
    p->c = c;
    p->cmd = cmd;
    if (!cmd->until_command && mc_cli_wants_help(argc, argv)) {
        if (c->rank == 0) mc_cli_help(stdout, cmd);
        return MC_EXIT_OK;
    }
    if (cmd->action) {
        if (argc < 2) {
            if (c->rank == 0) mc_cli_help(stdout, cmd);
            return MC_EXIT_USAGE;
        }
        if (strcmp(argv[1], cmd->action) != 0)
            return mc_cli_usage_error(c, cmd->name, "unknown action '%s' (expected '%s')", argv[1],
                                      cmd->action);
        argc--, argv++; /* getopt skips argv[0]: the action takes the command name's place */
        p->shift = 1;
    }
    p->argc = argc;
    p->argv = argv;
    int n = 0;
    size_t ns = 2;
    memcpy(p->shorts, "-:", 3);
    for (const mc_cli_opt *o = cmd->opts; o && o->name; o++) {
        if (n == MC_CLI_MAX_OPTS) {
            fprintf(stderr, "miclip %s: more than %d options in its table\n", cmd->name,
                    MC_CLI_MAX_OPTS);
            abort(); /* a programming error, caught by tests/core/test_cli.c */
        }
        p->lopts[n] = (struct option){o->name, o->has_arg ? required_argument : no_argument, NULL,
                                      OPT_BASE + n};
        n++;
        char letter = alias_of(cmd->aliases, o->name);
        if (letter) { /* "q" or "t:" */
            p->shorts[ns++] = letter;
            if (o->has_arg) p->shorts[ns++] = ':';
            p->shorts[ns] = '\0';
        }
    }
    p->lopts[n] = (struct option){0};
    optind = 0; /* full re-initialisation of glibc's getopt (see above) */
    opterr = 0;
    return -1;
}

/* The option's name as typed ("--tas" of "--tas=1"), for messages. */
static void typed_name(const char *tok, char *buf, size_t cap) {
    size_t n = strcspn(tok, "=");
    snprintf(buf, cap, "%.*s", (int)(n < 200 ? n : 200), tok);
}

int mc_cli_next(mc_cli_parser *p, const char **val) {
    *val = NULL;
    const char *cmd = p->cmd->name;
    if (p->rest) {
        if (p->next >= p->argc) return MC_CLI_END;
        p->arg_index = p->next + p->shift;
        *val = p->argv[p->next++];
        if (p->cmd->until_command) p->next = p->argc; /* the command ends the global options */
        return MC_CLI_ARG;
    }
    int r = getopt_long(p->argc, p->argv, p->shorts, p->lopts, NULL);
    char name[256];
    if (r == -1) { /* the end, or "--": what follows it is positional */
        p->rest = true;
        p->next = optind;
        return mc_cli_next(p, val);
    }
    if (r == 1) {
        *val = optarg;
        p->arg_index = optind - 1 + p->shift;
        if (p->cmd->until_command) p->rest = true, p->next = p->argc; /* see above */
        return MC_CLI_ARG;
    }
    if (r == ':') { /* a value option at the end of argv */
        typed_name(p->argv[optind - 1], name, sizeof name);
        mc_cli_usage_error(p->c, cmd, "option '%s' needs a value", name);
        return MC_CLI_ERROR;
    }
    if (r == '?') {
        typed_name(p->argv[optind - 1], name, sizeof name);
        if (optopt >= OPT_BASE) /* --flag=value */
            mc_cli_usage_error(p->c, cmd, "option '%s' takes no value", name);
        else if (optopt) /* -x: no short options but -h */
            mc_cli_usage_error(p->c, cmd, "unknown option '-%c'", optopt);
        else
            mc_cli_usage_error(p->c, cmd, "unknown option '%s'", name);
        return MC_CLI_ERROR;
    }
    if (r < OPT_BASE) { /* a one-letter alias: getopt matched it exactly */
        for (const mc_cli_opt *o = p->cmd->opts; o && o->name; o++)
            if (alias_of(p->cmd->aliases, o->name) == r) {
                *val = o->has_arg ? optarg : NULL;
                return o->id;
            }
        mc_cli_usage_error(p->c, cmd, "unknown option '-%c'", r); /* not reached */
        return MC_CLI_ERROR;
    }
    const int k = r - OPT_BASE;
    const mc_cli_opt *o = &p->cmd->opts[k];
    /* glibc accepts unambiguous abbreviations (--tas for --task): refuse them, so that the
     * accepted spellings are exactly the table's and a new option never changes an old one. */
    const char *tok =
        o->has_arg && optarg == p->argv[optind - 1] ? p->argv[optind - 2] : p->argv[optind - 1];
    typed_name(tok, name, sizeof name);
    if (strncmp(name, "--", 2) != 0 || strcmp(name + 2, o->name) != 0) {
        mc_cli_usage_error(p->c, cmd, "unknown option '%s'", name);
        return MC_CLI_ERROR;
    }
    *val = o->has_arg ? optarg : NULL;
    return o->id;
}
