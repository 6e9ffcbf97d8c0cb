/* signals.c - the stop-signal flag (signals.h). No MPI: comm.c's collective poll reads it. */
#include "miclip/signals.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static volatile sig_atomic_t g_stop_signal = 0;

static void on_stop_signal(int sig) {
    /* Keep the first signal: it names the stop in the message. */
    if (!g_stop_signal) g_stop_signal = sig;
}

void mc_signals_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    /* No SA_RESTART: a blocking read of a pipe or FIFO (or an open of one, or a wait) returns
     * EINTR, so the code blocked there sees the flag instead of waiting for ever. */
    sa.sa_flags = 0;
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

int mc_stop_signal(void) { return (int)g_stop_signal; }

const char *mc_signal_name(int sig) {
    switch (sig) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGUSR1: return "SIGUSR1";
    case 0: return "a signal";
    default: return "a stop signal";
    }
}

mc_status mc_fail_stopped(mc_error *err, int sig, const char *fmt, ...) {
    char what[MC_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (!sig) sig = (int)g_stop_signal;
    return MC_FAIL(err, MC_ERR_INTERRUPTED, "stopped by %s: %s", mc_signal_name(sig), what);
}
