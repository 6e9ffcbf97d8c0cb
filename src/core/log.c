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
} g_log = {0, 1, MC_LOG_INFO, false, false};

static void check_env(void) {
    if (g_log.env_checked) return;
    g_log.env_checked = true;
    const char *v = getenv("MICLIP_LOG");
    if (!v) return;
    if (!strcasecmp(v, "debug")) g_log.level = MC_LOG_DEBUG;
    else if (!strcasecmp(v, "info")) g_log.level = MC_LOG_INFO;
    else if (!strcasecmp(v, "warn")) g_log.level = MC_LOG_WARN;
    else if (!strcasecmp(v, "error")) g_log.level = MC_LOG_ERROR;
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
    if (g_log.size > 1) n = snprintf(line, sizeof line, "miclip[%d]: %s", g_log.rank, tags[level]);
    else n = snprintf(line, sizeof line, "miclip: %s", tags[level]);
    if (n < 0 || (size_t)n >= sizeof line) n = 0;
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    /* One write per line so lines from different ranks do not interleave mid-line. */
    fprintf(stderr, "%s\n", line);
    fflush(stderr);
}

void mc_log(mc_log_level level, const char *fmt, ...) {
    check_env();
    if (level > g_log.level) return;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, fmt, ap);
    va_end(ap);
}

void mc_log0(mc_log_level level, const char *fmt, ...) {
    check_env();
    if (g_log.rank != 0 || level > g_log.level) return;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, fmt, ap);
    va_end(ap);
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
    if (t >= 3600) snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else snprintf(buf, cap, "%02ld:%02ld", t / 60, t % 60);
}

static void draw(mc_progress *p, bool final) {
    double now = mc_now();
    double el = now - p->t_start;
    double rate = el > 0 ? (double)p->done / el : 0;
    char eta[32] = "--:--", elapsed[32];
    format_duration(el, elapsed, sizeof elapsed);
    if (p->total > 0 && rate > 0) format_duration((double)(p->total - p->done) / rate, eta, sizeof eta);
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

void mc_progress_start(mc_progress *p, const char *label, int64_t total, const char *unit) {
    memset(p, 0, sizeof *p);
    snprintf(p->label, sizeof p->label, "%s", label);
    p->total = total;
    p->unit = unit ? unit : "it";
    p->t_start = mc_now();
    p->active = g_log.rank == 0 && !g_log.quiet && isatty(STDERR_FILENO);
    if (p->active) draw(p, false);
}

void mc_progress_update(mc_progress *p, int64_t done) {
    p->done = done;
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
    double el = mc_now() - p->t_start;
    mc_log0(MC_LOG_INFO, "%s: %lld %s in %.1f s (%.1f %s/s)", p->label, (long long)p->done, p->unit,
            el, el > 0 ? (double)p->done / el : 0.0, p->unit);
}
