/* test_cli.c - the commands' option tables (src/cli/cli.h), in process, at any rank count:
 *   - the parser itself: positionals and options in command-line order, --opt=VALUE and
 *     --opt VALUE alike, "--" ends the options, abbreviations refused, and a second parse in
 *     the same process (getopt's global state re-initialised) gives the same result;
 *   - for every command of commands.def: --help exits 0 and lists every option of its table
 *     (and -h, --help); an unknown option, a missing value, an abbreviation and a value given
 *     to a flag exit 2 with one message naming the option, printed by rank 0 only;
 *   - miclip's global options (src/cli/globals.c): every spelling (-q/--quiet, -v/--verbose,
 *     --threads N and =N), parsing ending at the command, --help listing the table, and the
 *     same usage errors.
 * Run under mpiexec -n 1 and -n 2 (tests/core/CMakeLists.txt). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "test_util.h"

static int rank = 0;

/* Runs fn(argv) with stdout and stderr captured; returns its exit code. */
static int call(const mc_comm *c, mc_cmd_fn fn, int argc, const char *const *args, char *out,
                size_t oc, char *err, size_t ec) {
    char *argv[16];
    for (int i = 0; i < argc; i++) argv[i] = strdup(args[i]);
    argv[argc] = NULL;
    FILE *fo = tmpfile(), *fe = tmpfile();
    fflush(stdout), fflush(stderr);
    int so = dup(1), se = dup(2);
    dup2(fileno(fo), 1), dup2(fileno(fe), 2);
    int rc = fn(c, argc, argv);
    fflush(stdout), fflush(stderr);
    dup2(so, 1), dup2(se, 2);
    close(so), close(se);
    size_t n;
    rewind(fo), n = fread(out, 1, oc - 1, fo), out[n] = '\0';
    rewind(fe), n = fread(err, 1, ec - 1, fe), err[n] = '\0';
    fclose(fo), fclose(fe);
    for (int i = 0; i < argc; i++) free(argv[i]);
    return rc;
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* "--name" in text as a whole option name (not a prefix of a longer one). */
static bool lists(const char *text, const char *name) {
    size_t n = strlen(name);
    for (const char *p = text; (p = strstr(p, "--")); p += 2)
        if (!strncmp(p + 2, name, n) && !(p[2 + n] == '-' || (p[2 + n] >= 'a' && p[2 + n] <= 'z')))
            return true;
    return false;
}

/* The usage error of `cmd ARGS...`: exit 2, and on rank 0 one message naming `what` (plus the
 * "try" line), on the other ranks nothing. */
static void expect_usage_error(const mc_comm *c, const mc_cli_command *k, const char *const *args,
                               int n, const char *what) {
    static char out[1 << 16], err[1 << 16];
    int rc = call(c, k->fn, n, args, out, sizeof out, err, sizeof err);
    CHECK_MSG(rc == MC_EXIT_USAGE, "rank %d: miclip %s ... %s: exit %d, want 2: %s", rank, k->name,
              what, rc, err);
    if (rank == 0) {
        char head[128];
        snprintf(head, sizeof head, "miclip %s: ", k->name);
        CHECK_MSG(!strncmp(err, head, strlen(head)) && strstr(err, what) && count_lines(err) == 2 &&
                      strstr(strchr(err, '\n'), "try 'miclip"),
                  "miclip %s ... %s: want one message naming it: '%s'", k->name, what, err);
    } else {
        CHECK_MSG(!*err && !*out, "rank %d printed: %s%s", rank, out, err);
    }
}

static void check_command(const mc_comm *c, const mc_cli_command *k) {
    static char out[1 << 16], err[1 << 16];
    const mc_cli_cmd *t = k->cli;
    CHECK_MSG(t && !strcmp(t->name, k->name), "%s: its table names it '%s'", k->name,
              t ? t->name : "(none)");
    if (!t) return;
    /* --help and -h: exit 0, every option listed (rank 0), nothing printed elsewhere */
    for (int h = 0; h < 2; h++) {
        const char *args[] = {k->name, h ? "-h" : "--help"};
        int rc = call(c, k->fn, 2, args, out, sizeof out, err, sizeof err);
        CHECK_MSG(rc == 0, "miclip %s %s: exit %d: %s", k->name, args[1], rc, err);
        if (rank == 0) {
            CHECK_MSG(!strncmp(out, "usage: miclip ", 14) && strstr(out, "\noptions:\n") &&
                          strstr(out, "-h, --help"),
                      "miclip %s --help: %s", k->name, out);
            for (const mc_cli_opt *o = t->opts; o && o->name; o++) {
                CHECK_MSG(lists(strstr(out, "\noptions:\n"), o->name),
                          "miclip %s --help does not list --%s", k->name, o->name);
                CHECK_MSG(o->help && *o->help, "miclip %s: --%s has no help", k->name, o->name);
                CHECK_MSG(o->id > MC_CLI_ARG && !o->has_arg == !o->arg_name,
                          "miclip %s: --%s: id %d, arg_name %s", k->name, o->name, o->id,
                          o->arg_name ? o->arg_name : "NULL");
            }
        } else {
            CHECK_MSG(!*out && !*err, "rank %d printed help", rank);
        }
    }
    /* errors, after the sub-action when the command has one */
    const char *args[6] = {k->name};
    int n0 = 1;
    if (t->action) args[n0++] = t->action;
    args[n0] = "--no-such-option";
    expect_usage_error(c, k, args, n0 + 1, "'--no-such-option'");
    args[n0] = "--no-such-option=1";
    expect_usage_error(c, k, args, n0 + 1, "'--no-such-option'");
    args[n0] = "-Z";
    expect_usage_error(c, k, args, n0 + 1, "'-Z'");
    for (const mc_cli_opt *o = t->opts; o && o->name; o++) {
        char full[128], quoted[140], abbr[128];
        snprintf(full, sizeof full, "--%s", o->name);
        snprintf(quoted, sizeof quoted, "'--%s'", o->name);
        if (o->has_arg) { /* the value missing at the end of the line */
            args[n0] = full;
            expect_usage_error(c, k, args, n0 + 1, quoted);
        } else { /* a value given to a flag */
            char eq[140];
            snprintf(eq, sizeof eq, "--%s=1", o->name);
            args[n0] = eq;
            expect_usage_error(c, k, args, n0 + 1, quoted);
        }
        /* an abbreviation (unless it is another option's whole name) */
        snprintf(abbr, sizeof abbr, "--%.*s", (int)strlen(o->name) - 1, o->name);
        bool taken = false;
        for (const mc_cli_opt *q = t->opts; q->name; q++) taken |= !strcmp(q->name, abbr + 2);
        if (strlen(o->name) > 1 && !taken) {
            char qa[140];
            snprintf(qa, sizeof qa, "'%s'", abbr);
            args[n0] = abbr, args[n0 + 1] = "1";
            expect_usage_error(c, k, args, n0 + 2, qa);
        }
    }
}

/* --- the parser on a table of its own ------------------------------------------------------ */
enum { T_VAL = 2, T_FLAG, T_VALUE2 };
static const mc_cli_opt topts[] = {{"val", MC_CLI_VALUE, T_VAL, "V", "a value"},
                                   {"flag", MC_CLI_FLAG, T_FLAG, NULL, "a flag"},
                                   {"value", MC_CLI_VALUE, T_VALUE2, "V", "a longer name"},
                                   {0}};
static const mc_cli_cmd tcmd = {.name = "t", .usage = "t", .opts = topts};

/* "id:value" for each item, joined by spaces; "ERR" for an error (and the parse stops). */
static void parse(const mc_comm *c, int argc, const char *const *args, char *buf, size_t cap) {
    char *argv[16];
    for (int i = 0; i < argc; i++) argv[i] = (char *)args[i];
    mc_cli_parser p;
    buf[0] = '\0';
    int rc = mc_cli_begin(&p, c, &tcmd, argc, argv);
    if (rc >= 0) {
        snprintf(buf, cap, "EXIT%d", rc);
        return;
    }
    const char *v;
    for (int id; (id = mc_cli_next(&p, &v)) != MC_CLI_END;) {
        size_t n = strlen(buf);
        if (id == MC_CLI_ERROR) {
            snprintf(buf + n, cap - n, "%sERR", n ? " " : "");
            return;
        }
        snprintf(buf + n, cap - n, "%s%d:%s", n ? " " : "", id, v ? v : "-");
    }
    /* argv is not reordered (RETURN_IN_ORDER): the caller's positionals stay in place */
    for (int i = 0; i < argc; i++) CHECK(argv[i] == args[i]);
}

static void check_parser(const mc_comm *c) {
    static char out[1 << 12], err[1 << 12];
    char got[512];
    const char *a1[] = {"t",       "x",       "--val", "1",  "y",     "--flag",
                        "--val=2", "--value", "",      "--", "--val", "-h"};
    for (int round = 0; round < 2; round++) { /* twice: optind re-initialised */
        parse(c, 12, a1, got, sizeof got);
        CHECK_MSG(!strcmp(got, "1:x 2:1 1:y 3:- 2:2 4: 1:--val 1:-h"), "round %d: %s", round, got);
    }
    setenv("POSIXLY_CORRECT", "1", 1); /* no effect: positionals come back in order anyway */
    parse(c, 12, a1, got, sizeof got);
    CHECK_MSG(!strcmp(got, "1:x 2:1 1:y 3:- 2:2 4: 1:--val 1:-h"), "POSIXLY_CORRECT: %s", got);
    unsetenv("POSIXLY_CORRECT");
    const char *a2[] = {"t", "--va", "1"}; /* ambiguous abbreviation */
    const char *a3[] = {"t", "--fla"};     /* unambiguous abbreviation: refused all the same */
    const char *a4[] = {"t", "-", "--val", "-5"};
    const char *a5[] = {"t", "--val", "--help"};
    const char *a6[] = {"t", "--", "--help"};
    /* errors print on rank 0: capture them */
    fflush(stderr);
    int se = dup(2);
    FILE *fe = tmpfile();
    dup2(fileno(fe), 2);
    parse(c, 3, a2, got, sizeof got);
    CHECK_MSG(!strcmp(got, "ERR"), "--va: %s", got);
    parse(c, 2, a3, got, sizeof got);
    CHECK_MSG(!strcmp(got, "ERR"), "--fla: %s", got);
    fflush(stderr);
    dup2(se, 2), close(se);
    rewind(fe);
    size_t n = fread(err, 1, sizeof err - 1, fe);
    err[n] = '\0';
    fclose(fe);
    if (rank == 0)
        CHECK_MSG(strstr(err, "miclip t: unknown option '--va'") &&
                      strstr(err, "miclip t: unknown option '--fla'"),
                  "%s", err);
    else
        CHECK_MSG(!*err, "rank %d: %s", rank, err);
    parse(c, 4, a4, got, sizeof got);
    CHECK_MSG(!strcmp(got, "1:- 2:-5"), "'-' and a negative value: %s", got);
    fflush(stdout);
    int so = dup(1);
    FILE *fo = tmpfile();
    dup2(fileno(fo), 1);
    parse(c, 3, a5, got, sizeof got);
    CHECK_MSG(!strcmp(got, "EXIT0"), "--help anywhere before --: %s", got);
    parse(c, 3, a6, got, sizeof got);
    fflush(stdout);
    dup2(so, 1), close(so);
    rewind(fo);
    n = fread(out, 1, sizeof out - 1, fo);
    out[n] = '\0';
    fclose(fo);
    CHECK_MSG(!strcmp(got, "1:--help"), "--help after --: %s", got);
    if (rank == 0)
        CHECK_MSG(strstr(out, "  --val V     a value\n") && strstr(out, "  --flag      a flag\n") &&
                      strstr(out, "  -h, --help  this help\n"),
                  "generated help: %s", out);
}

/* --- miclip's global options (src/cli/globals.c) ----------------------------------------- */
static mc_cli_globals g_last;
static int globals_fn(const mc_comm *c, int argc, char **argv) {
    return mc_cli_parse_globals(c, argc, argv, &g_last);
}

/* `miclip ARGS...` up to the command: exit 2 and, on rank 0, "miclip: ..." naming `what` and
 * the "try 'miclip --help'" line; nothing on the other ranks. */
static void expect_global_error(const mc_comm *c, const char *const *args, int n,
                                const char *what) {
    static char out[1 << 12], err[1 << 12];
    int rc = call(c, globals_fn, n, args, out, sizeof out, err, sizeof err);
    CHECK_MSG(rc == MC_EXIT_USAGE, "rank %d: miclip %s: exit %d, want 2: %s", rank, args[1], rc,
              err);
    if (rank == 0)
        CHECK_MSG(!strncmp(err, "miclip: ", 8) && strstr(err, what) && count_lines(err) == 2 &&
                      strstr(err, "\ntry 'miclip --help'\n"),
                  "miclip %s: want one message naming %s: '%s'", args[1], what, err);
    else
        CHECK_MSG(!*err && !*out, "rank %d printed: %s%s", rank, out, err);
}

static void check_globals(const mc_comm *c) {
    static char out[1 << 16], err[1 << 16];
    /* every accepted spelling; the command ends the global options (its own --help stays its) */
    const char *a1[] = {"miclip", "-q", "--verbose", "--threads", "3", "run", "x", "--help", "-q"};
    int rc = call(c, globals_fn, 9, a1, out, sizeof out, err, sizeof err);
    CHECK_MSG(rc == -1 && g_last.quiet && g_last.verbose && g_last.threads == 3 &&
                  g_last.command == 5,
              "globals a1: rc %d quiet %d verbose %d threads %lld command %d", rc, g_last.quiet,
              g_last.verbose, g_last.threads, g_last.command);
    const char *a2[] = {"miclip", "--quiet", "-v", "--threads=7", "version"};
    rc = call(c, globals_fn, 5, a2, out, sizeof out, err, sizeof err);
    CHECK_MSG(rc == -1 && g_last.quiet && g_last.verbose && g_last.threads == 7 &&
                  g_last.command == 4,
              "globals a2: rc %d command %d threads %lld", rc, g_last.command, g_last.threads);
    const char *a3[] = {"miclip", "world", "--quiet"};
    rc = call(c, globals_fn, 3, a3, out, sizeof out, err, sizeof err);
    CHECK_MSG(rc == -1 && !g_last.quiet && !g_last.verbose && !g_last.threads &&
                  g_last.command == 1,
              "globals a3: rc %d command %d", rc, g_last.command);
    const char *a4[] = {"miclip", "--", "version"};
    rc = call(c, globals_fn, 3, a4, out, sizeof out, err, sizeof err);
    CHECK_MSG(rc == -1 && g_last.command == 2, "globals a4: rc %d command %d", rc, g_last.command);
    /* --help and -h: the whole help, every option of the table with its alias, exit 0 */
    for (int h = 0; h < 2; h++) {
        const char *args[] = {"miclip", "--quiet", h ? "-h" : "--help", "run", "--bogus"};
        rc = call(c, globals_fn, 5, args, out, sizeof out, err, sizeof err);
        CHECK_MSG(rc == 0 && !*err, "miclip %s: exit %d: %s", args[2], rc, err);
        if (rank == 0) {
            const char *g = strstr(out, "\nglobal options:\n");
            CHECK_MSG(!strncmp(out, "miclip ", 7) && strstr(out, "\nusage: miclip ") && g &&
                          strstr(out, "\ncommands:\n") && strstr(g, "\n  -q, --quiet ") &&
                          strstr(g, "\n  -v, --verbose ") && strstr(g, "\n  -h, --help "),
                      "miclip %s: %s", args[2], out);
            for (const mc_cli_opt *o = mc_cli_globals_cli.opts; g && o->name; o++)
                CHECK_MSG(lists(g, o->name) && o->help && *o->help, "miclip --help: --%s", o->name);
            for (int i = 0; i < mc_cli_n_commands; i++) {
                char line[128];
                snprintf(line, sizeof line, "\n  %s ", mc_cli_commands[i].name);
                CHECK_MSG(strstr(out, line), "miclip --help does not list %s",
                          mc_cli_commands[i].name);
            }
        } else {
            CHECK_MSG(!*out, "rank %d printed the help", rank);
        }
    }
    const char *a5[] = {"miclip", "--version", "--bogus"};
    rc = call(c, globals_fn, 3, a5, out, sizeof out, err, sizeof err);
    CHECK_MSG(rc == 0 && (rank != 0 || !strncmp(out, "miclip ", 7)), "--version: %d %s", rc, out);
    /* no command: the help on stderr, exit 2 */
    const char *a6[] = {"miclip", "-q"};
    rc = call(c, globals_fn, 2, a6, out, sizeof out, err, sizeof err);
    CHECK_MSG(rc == MC_EXIT_USAGE && !*out && (rank != 0 || strstr(err, "global options:")),
              "no command: %d %s", rc, err);
    /* usage errors, each naming the option */
    const char *e1[] = {"miclip", "--bogus", "version"};
    expect_global_error(c, e1, 3, "'--bogus'");
    const char *e2[] = {"miclip", "--thr", "3", "version"}; /* abbreviation */
    expect_global_error(c, e2, 4, "'--thr'");
    const char *e3[] = {"miclip", "--threads"};
    expect_global_error(c, e3, 2, "'--threads' needs a value");
    const char *e4[] = {"miclip", "--quiet=1", "version"};
    expect_global_error(c, e4, 3, "'--quiet' takes no value");
    const char *e5[] = {"miclip", "-Z", "version"};
    expect_global_error(c, e5, 3, "'-Z'");
    const char *e6[] = {"miclip", "--threads", "0", "version"};
    expect_global_error(c, e6, 4, "--threads takes a whole number from 1 to 4096");
    const char *e7[] = {"miclip", "--threads=x", "version"};
    expect_global_error(c, e7, 3, "--threads takes a whole number from 1 to 4096");
}

int main(int argc, char **argv) {
    mc_comm c;
    mc_error e = {0};
    if (mc_comm_init(&argc, &argv, &c, &e) != MC_OK) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    rank = c.rank;
    check_parser(&c);
    check_globals(&c);
    for (int i = 0; i < mc_cli_n_commands; i++) check_command(&c, &mc_cli_commands[i]);
    fprintf(stderr, "rank %d: %d commands, ", rank, mc_cli_n_commands);
    mc_comm_finalize(&c);
    return TEST_SUMMARY();
}
