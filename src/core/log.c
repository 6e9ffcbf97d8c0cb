#include "miclip/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static struct {
    int rank, size;
    mc_log_level level;
    bool quiet;
    bool env_checked;
    bool task_scope;
} g_log = {0, 1, MC_LOG_INFO, false, false, false};

/* MICLIP_LOG_TASKS=1 keeps every task's info lines at info (log.h). */
void mc_log_set_task_scope(bool on) {
    const char *v = getenv("MICLIP_LOG_TASKS");
    g_log.task_scope = on && !(v && *v && strcmp(v, "0") != 0);
}

/* Info inside a task scope is debug (log.h). */
static mc_log_level effective(mc_log_level level) {
    return level == MC_LOG_INFO && g_log.task_scope ? MC_LOG_DEBUG : level;
}

static void check_env(void) {
    if (g_log.env_checked) return;
    g_log.env_checked = true;
    const char *v = getenv("MICLIP_LOG");
    if (!v) return;
    if (!strcasecmp(v, "debug"))
        g_log.level = MC_LOG_DEBUG;
    else if (!strcasecmp(v, "info"))
        g_log.level = MC_LOG_INFO;
    else if (!strcasecmp(v, "warn"))
        g_log.level = MC_LOG_WARN;
    else if (!strcasecmp(v, "error"))
        g_log.level = MC_LOG_ERROR;
}

void mc_trace_load(const char *fmt, ...) {
    const char *v = getenv("MICLIP_TEST_TRACE_LOADS");
    if (!v || !*v || !strcmp(v, "0")) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "miclip[%d]: trace: %s\n", g_log.rank, msg); /* one write per line */
    fflush(stderr);
}

void mc_log_set_rank(int rank, int size) {
    g_log.rank = rank;
    g_log.size = size;
}
void mc_log_set_level(mc_log_level level) {
    check_env();
    if (!getenv("MICLIP_LOG")) g_log.level = level;
}
mc_log_level mc_log_get_level(void) {
    check_env();
    return g_log.level;
}
void mc_log_set_quiet(bool quiet) {
    g_log.quiet = quiet;
    if (quiet) mc_log_set_level(MC_LOG_WARN);
}
bool mc_log_is_quiet(void) { return g_log.quiet; }

static void vlog(mc_log_level level, const char *fmt, va_list ap) {
    static const char *tags[] = {"error: ", "warning: ", "", "debug: "};
    char line[2048];
    int n;
    if (g_log.size > 1)
        n = snprintf(line, sizeof line, "miclip[%d]: %s", g_log.rank, tags[level]);
    else
        n = snprintf(line, sizeof line, "miclip: %s", tags[level]);
    if (n < 0 || (size_t)n >= sizeof line) n = 0;
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    /* One write per line so lines from different ranks do not interleave mid-line. */
    fprintf(stderr, "%s\n", line);
    fflush(stderr);
}

void mc_log(mc_log_level level, const char *fmt, ...) {
    check_env();
    level = effective(level);
    if (level > g_log.level) return;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, fmt, ap);
    va_end(ap);
}

void mc_log0(mc_log_level level, const char *fmt, ...) {
    check_env();
    level = effective(level);
    if (g_log.rank != 0 || level > g_log.level) return;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, fmt, ap);
    va_end(ap);
}

/* --- warnings printed once per run --------------------------------------------------------- */

static struct {
    char key[128];
    long count;
} g_once[MC_WARN_ONCE_KEYS];
static int g_n_once;

/* Counts KEY; true when this is its first occurrence (or the table is full). */
static bool once_first(const char *key) {
    for (int i = 0; i < g_n_once; i++)
        if (!strncmp(g_once[i].key, key, sizeof g_once[i].key - 1)) return ++g_once[i].count == 1;
    if (g_n_once == MC_WARN_ONCE_KEYS) return true;
    snprintf(g_once[g_n_once].key, sizeof g_once[g_n_once].key, "%s", key);
    g_once[g_n_once++].count = 1;
    return true;
}

long mc_warn_once_count(const char *key) {
    for (int i = 0; i < g_n_once; i++)
        if (!strncmp(g_once[i].key, key, sizeof g_once[i].key - 1)) return g_once[i].count;
    return 0;
}

void mc_warn_once(const char *key, const char *fmt, ...) {
    check_env();
    if (!once_first(key) || MC_LOG_WARN > g_log.level) return;
    va_list ap;
    va_start(ap, fmt);
    vlog(MC_LOG_WARN, fmt, ap);
    va_end(ap);
}

void mc_warn0_once(const char *key, const char *fmt, ...) {
    check_env();
    if (g_log.rank != 0) return;
    if (!once_first(key) || MC_LOG_WARN > g_log.level) return;
    va_list ap;
    va_start(ap, fmt);
    vlog(MC_LOG_WARN, fmt, ap);
    va_end(ap);
}

static void log_plain(mc_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void log_plain(mc_log_level level, const char *fmt, ...) {
    if (level > g_log.level) return;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, fmt, ap);
    va_end(ap);
}

void mc_log_warn_summary(void) {
    check_env();
    for (int i = 0; i < g_n_once; i++)
        if (g_once[i].count > 1)
            log_plain(MC_LOG_WARN, "warning '%s' repeated %ld more time(s) (printed once above)",
                      g_once[i].key, g_once[i].count - 1);
}

void mc_log_error_record(const mc_error *e) {
    if (mc_log_get_level() >= MC_LOG_DEBUG && e->src_file)
        mc_log(MC_LOG_ERROR, "%s [%s, detected at %s:%d]", e->msg, mc_status_name(e->code),
               e->src_file, e->src_line);
    else
        mc_log(MC_LOG_ERROR, "%s", e->msg);
}

double mc_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void format_duration(double s, char *buf, size_t cap) {
    if (!(s >= 0) || s > 1e8) {
        snprintf(buf, cap, "--:--");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else
        snprintf(buf, cap, "%02ld:%02ld", t / 60, t % 60);
}

/* Rate, elapsed and ETA of p at now, for the bar and the log line alike. */
static double progress_times(const mc_progress *p, double now, char elapsed[32], char eta[32]) {
    double el = now - p->t_start;
    double rate = el > 0 ? (double)p->done / el : 0;
    snprintf(eta, 32, "--:--");
    format_duration(el, elapsed, 32);
    if (p->total > 0 && rate > 0) format_duration((double)(p->total - p->done) / rate, eta, 32);
    return rate;
}

static void draw(mc_progress *p, bool final) {
    double now = mc_now();
    char eta[32], elapsed[32];
    double rate = progress_times(p, now, elapsed, eta);
    const int width = 30;
    char bar[64];
    int filled = p->total > 0 ? (int)((double)width * (double)p->done / (double)p->total) : 0;
    if (filled > width) filled = width;
    for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '.';
    bar[width] = '\0';
    if (p->total > 0)
        fprintf(stderr, "\r%-16s [%s] %lld/%lld %s  %.1f %s/s  %s ETA %s ", p->label, bar,
                (long long)p->done, (long long)p->total, p->unit, rate, p->unit, elapsed, eta);
    else
        fprintf(stderr, "\r%-16s %lld %s  %.1f %s/s  %s ", p->label, (long long)p->done, p->unit,
                rate, p->unit, elapsed);
    if (final) fputc('\n', stderr);
    fflush(stderr);
    p->t_last_draw = now;
}

/* A progress line for logs that are not a terminal (log.h). */
static void line(mc_progress *p) {
    double now = mc_now();
    char eta[32], elapsed[32];
    double rate = progress_times(p, now, elapsed, eta);
    if (p->total > 0)
        log_plain(MC_LOG_INFO, "%s: %lld/%lld %s (%.0f%%), %.1f %s/s, %s elapsed, ETA %s", p->label,
                  (long long)p->done, (long long)p->total, p->unit,
                  100.0 * (double)p->done / (double)p->total, rate, p->unit, elapsed, eta);
    else
        log_plain(MC_LOG_INFO, "%s: %lld %s, %.1f %s/s, %s elapsed", p->label, (long long)p->done,
                  p->unit, rate, p->unit, elapsed);
    p->t_last_draw = now;
}

/* MICLIP_PROGRESS_INTERVAL: seconds, default 30; 0 every update; "off" / negative: never. */
static double progress_interval(void) {
    const char *v = getenv("MICLIP_PROGRESS_INTERVAL");
    if (!v || !*v) return 30.0;
    if (!strcasecmp(v, "off") || !strcasecmp(v, "none")) return -1.0;
    char *end = NULL;
    double d = strtod(v, &end);
    if (end == v || *end != '\0' || d != d) return 30.0;
    return d;
}

void mc_progress_start(mc_progress *p, const char *label, int64_t total, const char *unit) {
    check_env();
    memset(p, 0, sizeof *p);
    snprintf(p->label, sizeof p->label, "%s", label);
    p->total = total;
    p->unit = unit ? unit : "it";
    p->t_start = mc_now();
    p->t_last_draw = p->t_start;
    if (g_log.rank != 0 || g_log.quiet || g_log.level < MC_LOG_INFO) return;
    const char *mode = getenv("MICLIP_PROGRESS");
    bool tty = isatty(STDERR_FILENO);
    if (mode && !strcasecmp(mode, "off")) return;
    if (mode && !strcasecmp(mode, "bar"))
        tty = true;
    else if (mode && !strcasecmp(mode, "lines"))
        tty = false;
    if (tty) {
        p->active = true;
        draw(p, false);
        return;
    }
    p->interval = progress_interval();
    p->lines = p->interval >= 0;
}

void mc_progress_update(mc_progress *p, int64_t done) {
    p->done = done;
    if (p->lines) {
        if (mc_now() - p->t_last_draw >= p->interval) line(p);
        return;
    }
    if (!p->active) return;
    if (mc_now() - p->t_last_draw < 0.1) return;
    draw(p, false);
}

void mc_progress_finish(mc_progress *p) {
    if (p->active) {
        draw(p, true);
        p->active = false;
        return;
    }
    p->lines = false;
    double el = mc_now() - p->t_start;
    mc_log0(MC_LOG_INFO, "%s: %lld %s in %.1f s (%.1f %s/s)", p->label, (long long)p->done, p->unit,
            el, el > 0 ? (double)p->done / el : 0.0, p->unit);
}
