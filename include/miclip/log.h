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

/* Prints "miclip: error: <msg>" (with the source location at debug level). */
void mc_log_error_record(const mc_error *e);

/* Monotonic wall time in seconds. */
double mc_now(void);

/* A progress bar with rate and ETA, drawn on stderr by rank 0 only, and only when stderr is a
 * TTY and the logger is not quiet; otherwise updates are free no-ops, apart from an info line
 * at the end. Plain struct, caller-owned; no allocation. */
typedef struct {
    char label[48];
    int64_t total;   /* units of work (images, steps); <= 0 means unknown */
    int64_t done;
    double t_start;
    double t_last_draw;
    bool active;     /* drawing on a TTY */
    const char *unit; /* "img", "step", ... (borrowed string literal) */
} mc_progress;

void mc_progress_start(mc_progress *p, const char *label, int64_t total, const char *unit);
/* Sets the amount done (not an increment) and redraws at most 10 times a second. */
void mc_progress_update(mc_progress *p, int64_t done);
void mc_progress_finish(mc_progress *p);

#endif
