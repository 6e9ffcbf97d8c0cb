/* log.h - leveled, rank-aware logging and a rank-0 progress bar.
 *
 * The logger is the only process-wide state besides the MPI context. Every line goes to stderr,
 * prefixed "miclip[rank]" when more than one rank runs. mc_log0 prints on rank 0 only (for
 * messages that every rank would print identically). Levels: error < warn < info < debug;
 * the default is info, --quiet sets warn, --verbose sets debug, MICLIP_LOG=debug overrides.
 */
#ifndef MICLIP_LOG_H
#define MICLIP_LOG_H

#include <stdbool.h>
#include <stdint.h>

#include "miclip/status.h"

typedef enum { MC_LOG_ERROR = 0, MC_LOG_WARN, MC_LOG_INFO, MC_LOG_DEBUG } mc_log_level;

/* Called once by comm.c after MPI_Init, and by main for --quiet/--verbose. */
void mc_log_set_rank(int rank, int size);
void mc_log_set_level(mc_log_level level);
mc_log_level mc_log_get_level(void);
void mc_log_set_quiet(bool quiet); /* also hides progress bars */
bool mc_log_is_quiet(void);

void mc_log(mc_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mc_log0(mc_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define mc_error_log(...) mc_log(MC_LOG_ERROR, __VA_ARGS__)
#define mc_warn(...) mc_log(MC_LOG_WARN, __VA_ARGS__)
#define mc_info(...) mc_log(MC_LOG_INFO, __VA_ARGS__)
#define mc_debug(...) mc_log(MC_LOG_DEBUG, __VA_ARGS__)
#define mc_info0(...) mc_log0(MC_LOG_INFO, __VA_ARGS__)
#define mc_warn0(...) mc_log0(MC_LOG_WARN, __VA_ARGS__)

/* A warning that would repeat (per task, per dataset listing, ...) printed once per run: the
 * first call with a given KEY prints like mc_warn (mc_warn0_once: on rank 0 only), later calls
 * with the same KEY only count. mc_log_warn_summary (main, at exit) then prints, per key that
 * repeated, "warning 'KEY' repeated N more time(s)". At most MC_WARN_ONCE_KEYS keys are
 * tracked; further keys print every time. KEY is copied (up to 127 bytes). */
#define MC_WARN_ONCE_KEYS 64
void mc_warn_once(const char *key, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mc_warn0_once(const char *key, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mc_log_warn_summary(void);
/* How many times KEY was warned so far on this rank (0: never); for tests. */
long mc_warn_once_count(const char *key);

/* Task scope (the runner, run.c): while on, info messages are logged at debug level, so a
 * stage of many tasks prints its own one-line summary and not every task's lines; warnings and
 * errors and progress lines are unaffected. --verbose shows everything; MICLIP_LOG_TASKS=1 keeps
 * the tasks' info lines at info (the test suite's setting). */
void mc_log_set_task_scope(bool on);

/* A test trace of heavy loads (issue 16: a rerun of a complete job loads nothing): when
 * MICLIP_TEST_TRACE_LOADS is set (not "0"), prints "miclip[rank]: trace: <msg>" on every rank,
 * whatever the level. Called where model weights are loaded and where a file's bytes are hashed
 * (a file-hash cache miss). */
void mc_trace_load(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints "miclip: error: <msg>" (with the source location at debug level). */
void mc_log_error_record(const mc_error *e);

/* Monotonic wall time in seconds. */
double mc_now(void);

/* Progress with rate and ETA, on stderr by rank 0 only, and not when the logger is quiet:
 *  - a bar redrawn in place when stderr is a terminal;
 *  - otherwise (mpirun's and srun's pipes, Slurm log files) one line every
 *    MICLIP_PROGRESS_INTERVAL seconds (default 30; 0 = at every update, for tests; "off" or a
 *    negative value: none), "LABEL: 120/2400 img (5%), 3.1 img/s, 00:39 elapsed, ETA 12:16";
 *  - MICLIP_PROGRESS=bar|lines|off forces one of the three;
 *  - and an info line at the end ("LABEL: N img in T s (R img/s)"), which a task scope demotes.
 * Plain struct, caller-owned; no allocation. */
typedef struct {
    char label[48];
    int64_t total; /* units of work (images, steps); <= 0 means unknown */
    int64_t done;
    double t_start;
    double t_last_draw;
    bool active;      /* drawing on a TTY */
    bool lines;       /* printing a line every interval (not a TTY) */
    double interval;  /* seconds between lines */
    const char *unit; /* "img", "step", ... (borrowed string literal) */
} mc_progress;

void mc_progress_start(mc_progress *p, const char *label, int64_t total, const char *unit);
/* Sets the amount done (not an increment) and redraws at most 10 times a second. */
void mc_progress_update(mc_progress *p, int64_t done);
void mc_progress_finish(mc_progress *p);

#endif
