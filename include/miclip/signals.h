/* signals.h - stop signals: the process-local half of comm.h's stop protocol, without MPI.
 *
 * SIGINT (Ctrl-C), SIGTERM (kill, scancel, srun) and SIGUSR1 (Slurm's --signal=B:USR1@N) are
 * handled alike by every command: the handler only records the signal. Handlers are installed
 * without SA_RESTART, so a system call blocked on a pipe, FIFO or wait returns EINTR and its
 * caller checks mc_stop_signal. Long loops poll collectively between units of work
 * (mc_comm_poll, comm.h), finish and checkpoint the unit in flight, and return
 * MC_ERR_INTERRUPTED (exit code 75, one message). What each launcher does with the signals:
 * docs/errors.md. Kept apart from comm.h so that MPI-free code (fsutil.c, the world generator's
 * standalone driver tools/world/world_gen.c) can use it without <mpi.h>.
 */
#ifndef MICLIP_SIGNALS_H
#define MICLIP_SIGNALS_H

#include "miclip/status.h"

/* Installs the handlers (main does, once, before any command runs). Safe to call more than
 * once. */
void mc_signals_install(void);
/* The local flag: the first stop signal this process received, or 0. */
int mc_stop_signal(void);
/* "SIGINT", "SIGTERM", "SIGUSR1" ("a signal" for 0). */
const char *mc_signal_name(int sig);
/* Records MC_ERR_INTERRUPTED: "stopped by SIGTERM: <what>" (sig 0: this process's signal).
 * <what> should say what was kept and that a rerun resumes. */
mc_status mc_fail_stopped(mc_error *err, int sig, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
