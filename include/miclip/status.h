/* status.h - the one error convention of miclip.
 *
 * Every function that can fail on outside input (files, configs, user arguments, MPI, HDF5)
 * returns an mc_status and, on failure, fills a caller-owned mc_error with one human line:
 * what was expected, what was found, and where (file name and field, tensor name, YAML
 * line:column). Errors are values until the top of the program; the command's main function
 * agrees on them across ranks (comm.h: mc_comm_agree) and prints the message once.
 *
 * Internal invariants (things that cannot happen unless miclip itself is wrong) use MC_ASSERT,
 * which is always on, independent of NDEBUG, and aborts with file:line.
 */
#ifndef MICLIP_STATUS_H
#define MICLIP_STATUS_H

#include <stddef.h>

typedef enum {
    MC_OK = 0,
    MC_ERR_ARG,         /* bad command-line argument or API misuse by the caller */
    MC_ERR_IO,          /* a file could not be opened, read, written or renamed */
    MC_ERR_FORMAT,      /* a file's contents are malformed (safetensors, JSON, image, store) */
    MC_ERR_CONFIG,      /* an experiment config is invalid (YAML syntax, key, type, range) */
    MC_ERR_SHAPE,       /* a tensor has the wrong shape, dtype or size, or is missing */
    MC_ERR_NOMEM,       /* an allocation failed or a size overflowed */
    MC_ERR_HDF5,        /* the HDF5 library reported an error */
    MC_ERR_MPI,         /* the MPI library reported an error */
    MC_ERR_NUMERIC,     /* NaN or Inf where finite numbers are required */
    MC_ERR_LOCKED,      /* a store is being written by another run */
    MC_ERR_INTERRUPTED, /* a command stopped on SIGINT/SIGTERM/SIGUSR1 after checkpointing */
    MC_ERR_UNSUPPORTED, /* a valid input that miclip does not handle (and will not approximate) */
    MC_ERR_INTERNAL,    /* a bug in miclip */
    MC_STATUS_COUNT
} mc_status;

#define MC_ERROR_MSG_MAX 1024

/* The error record. Caller-owned, usually on the stack; zero-initialise it (mc_error e = {0}). */
typedef struct {
    mc_status code;
    char msg[MC_ERROR_MSG_MAX]; /* one line, no trailing newline */
    const char *src_file;       /* where in miclip's source the error was detected */
    int src_line;
} mc_error;

/* Process exit codes (documented in docs/errors.md). */
enum {
    MC_EXIT_OK = 0,
    MC_EXIT_FAILURE = 1, /* any error */
    MC_EXIT_USAGE = 2,   /* bad command line */
    MC_EXIT_INTERRUPTED =
        75 /* stopped by SIGINT/SIGTERM/SIGUSR1 after a clean checkpoint: requeue me */
};

/* Records an error in e (which may be NULL) and returns code. The message is printf-formatted.
 * A later call overwrites an earlier one; use mc_error_prefix to add context on the way up. */
mc_status mc_fail_at(mc_error *e, mc_status code, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
#define MC_FAIL(e, code, ...) mc_fail_at((e), (code), __FILE__, __LINE__, __VA_ARGS__)

/* Prepends "prefix: " to e->msg (truncating at MC_ERROR_MSG_MAX), keeping code and location. */
void mc_error_prefix(mc_error *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A short stable name for a status ("io", "format", ...). */
const char *mc_status_name(mc_status s);

/* Maps a status to the process exit code. */
int mc_status_exit_code(mc_status s);

/* Always-on invariant check: prints file:line and the expression, then aborts (MPI_Abort when
 * MPI is up, so no rank is left waiting). Never use it for input validation. */
_Noreturn void mc_panic_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define MC_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (!(cond)) mc_panic_at(__FILE__, __LINE__, "assertion failed: %s", #cond);               \
    } while (0)
#define MC_PANIC(...) mc_panic_at(__FILE__, __LINE__, __VA_ARGS__)

/* Propagate a failing status: MC_TRY(f(x, err)); */
#define MC_TRY(expr)                                                                               \
    do {                                                                                           \
        mc_status mc_try_s_ = (expr);                                                              \
        if (mc_try_s_ != MC_OK) return mc_try_s_;                                                  \
    } while (0)

/* Hook used by mc_panic_at to abort all ranks; comm.c installs MPI_Abort here. */
void mc_set_abort_handler(void (*handler)(int code));

#endif
