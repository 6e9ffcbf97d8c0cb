#include "miclip/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void (*abort_handler)(int code); /* set once by comm.c; NULL before MPI is up */

void mc_set_abort_handler(void (*handler)(int code)) { abort_handler = handler; }

mc_status mc_fail_at(mc_error *e, mc_status code, const char *file, int line, const char *fmt,
                     ...) {
    if (!e) return code;
    e->code = code;
    e->src_file = file;
    e->src_line = line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    /* Keep it one line: a newline inside would break log parsing. */
    for (char *p = e->msg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    return code;
}

void mc_error_prefix(mc_error *e, const char *fmt, ...) {
    if (!e) return;
    char prefix[MC_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    /* Build "prefix: msg" by hand so truncation is explicit rather than a format warning. */
    char joined[MC_ERROR_MSG_MAX];
    size_t np = strnlen(prefix, sizeof joined - 3);
    memcpy(joined, prefix, np);
    joined[np] = ':';
    joined[np + 1] = ' ';
    size_t room = sizeof joined - np - 3;
    size_t nm = strnlen(e->msg, room);
    memcpy(joined + np + 2, e->msg, nm);
    joined[np + 2 + nm] = '\0';
    memcpy(e->msg, joined, sizeof e->msg);
}

const char *mc_status_name(mc_status s) {
    static const char *names[MC_STATUS_COUNT] = {
        [MC_OK] = "ok",
        [MC_ERR_ARG] = "argument",
        [MC_ERR_IO] = "io",
        [MC_ERR_FORMAT] = "format",
        [MC_ERR_CONFIG] = "config",
        [MC_ERR_SHAPE] = "shape",
        [MC_ERR_NOMEM] = "memory",
        [MC_ERR_HDF5] = "hdf5",
        [MC_ERR_MPI] = "mpi",
        [MC_ERR_NUMERIC] = "numeric",
        [MC_ERR_LOCKED] = "locked",
        [MC_ERR_INTERRUPTED] = "interrupted",
        [MC_ERR_UNSUPPORTED] = "unsupported",
        [MC_ERR_INTERNAL] = "internal",
    };
    if ((int)s < 0 || s >= MC_STATUS_COUNT) return "unknown";
    return names[s];
}

int mc_status_exit_code(mc_status s) {
    switch (s) {
    case MC_OK: return MC_EXIT_OK;
    case MC_ERR_ARG: return MC_EXIT_USAGE;
    case MC_ERR_INTERRUPTED: return MC_EXIT_INTERRUPTED;
    default: return MC_EXIT_FAILURE;
    }
}

_Noreturn void mc_panic_at(const char *file, int line, const char *fmt, ...) {
    char msg[MC_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "miclip: internal error at %s:%d: %s\n", file, line, msg);
    fflush(stderr);
    if (abort_handler) abort_handler(MC_EXIT_FAILURE);
    abort();
}
