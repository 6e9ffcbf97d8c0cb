/* test_log.c - the logger's run-level features (log.h): progress lines when stderr is not a
 * terminal, warnings printed once with a count, and the task scope that demotes info lines.
 * stderr goes to a file, which the checks then read; nothing depends on wall-clock time
 * (MICLIP_PROGRESS_INTERVAL=0 prints a line at every update). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "miclip/log.h"
#include "test_util.h"

static char g_buf[1 << 16];

/* Runs the logging in fn with stderr sent to PATH, then reads the file into g_buf. */
static const char *capture(const char *path, void (*fn)(void)) {
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    FILE *f = fopen(path, "w");
    if (!f || saved < 0) return "";
    dup2(fileno(f), STDERR_FILENO);
    fn();
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    fclose(f);
    FILE *r = fopen(path, "r");
    size_t n = r ? fread(g_buf, 1, sizeof g_buf - 1, r) : 0;
    if (r) fclose(r);
    g_buf[n] = '\0';
    return g_buf;
}

static int count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

static void progress_lines(void) {
    mc_progress p;
    mc_progress_start(&p, "extract", 40, "img");
    for (int i = 10; i <= 40; i += 10) mc_progress_update(&p, i);
    mc_progress_finish(&p);
}

static void warnings(void) {
    for (int i = 0; i < 5; i++) mc_warn_once("no sae", "no SAE on layer '%d'; neurons only", i);
    mc_warn0_once("other", "a different warning");
    mc_log_warn_summary();
}

static void scoped(void) {
    mc_info("before the scope");
    mc_log_set_task_scope(true);
    mc_info("an info line in the scope");
    mc_warn("a warning inside the scope");
    mc_log_set_task_scope(false);
    mc_info("after the scope");
}

int main(void) {
    unsetenv("MICLIP_LOG_TASKS");
    setenv("MICLIP_PROGRESS", "lines", 1);
    setenv("MICLIP_PROGRESS_INTERVAL", "0", 1);
    const char *out = capture("test_log_progress.txt", progress_lines);
    CHECK_MSG(count(out, "extract: 10/40 img (25%)") == 1, "%s", out);
    CHECK_MSG(count(out, "extract: 40/40 img (100%)") == 1, "%s", out);
    CHECK_MSG(count(out, " ETA ") == 4, "%s", out);
    CHECK_MSG(count(out, "extract: 40 img in ") == 1, "%s", out); /* the final line */
    CHECK_MSG(!strchr(out, '\r'), "a bar was drawn into a file: %s", out);

    setenv("MICLIP_PROGRESS_INTERVAL", "off", 1);
    out = capture("test_log_progress_off.txt", progress_lines);
    CHECK_MSG(count(out, " ETA ") == 0 && count(out, "extract: 40 img in ") == 1, "%s", out);

    out = capture("test_log_warn.txt", warnings);
    CHECK_MSG(count(out, "warning: no SAE on layer '0'") == 1, "%s", out);
    CHECK_MSG(count(out, "no SAE on layer '1'") == 0, "%s", out);
    CHECK_MSG(count(out, "warning 'no sae' repeated 4 more time(s)") == 1, "%s", out);
    CHECK_MSG(count(out, "a different warning") == 1 && count(out, "'other' repeated") == 0, "%s",
              out);
    CHECK(mc_warn_once_count("no sae") == 5);
    CHECK(mc_warn_once_count("never") == 0);

    out = capture("test_log_scope.txt", scoped);
    CHECK_MSG(count(out, "before the scope") == 1 && count(out, "after the scope") == 1, "%s", out);
    CHECK_MSG(count(out, "info line in the scope") == 0, "%s", out);
    CHECK_MSG(count(out, "warning: a warning inside the scope") == 1, "%s", out);
    mc_log_set_level(MC_LOG_DEBUG);
    out = capture("test_log_scope_debug.txt", scoped);
    CHECK_MSG(count(out, "debug: an info line in the scope") == 1, "%s", out);
    mc_log_set_level(MC_LOG_INFO);
    setenv("MICLIP_LOG_TASKS", "1", 1); /* keeps the tasks' lines at info */
    out = capture("test_log_scope_tasks.txt", scoped);
    CHECK_MSG(count(out, "miclip: an info line in the scope") == 1, "%s", out);
    return TEST_SUMMARY();
}
