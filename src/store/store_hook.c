/* store_hook.c - the kill-point test hook: count the store calls that touch a file.
 *
 * MICLIP_TEST_KILL_AT_STORE_CALL=N makes the process raise SIGKILL on itself right after its
 * Nth counted store call returns (N >= 1), so a test can put a kill at a chosen point of a
 * stage's progress instead of after a wall-clock delay. MICLIP_TEST_STORE_TRACE=1 prints one
 * line per counted call on stderr ("miclip[R] store call N: WHAT OBJ (PATH)"), which is how a
 * test learns how many calls an uninterrupted run makes.
 *
 * The counter is per process; every rank counts its own calls (the collective calls come in
 * the same order on every rank, so all ranks die at the same point). The calls counted are
 * listed in docs/store.md; each counts once when it returns successfully, and a nested call
 * (mc_store_units_mark's flushes and write, mc_store_set_complete's attributes, ...) counts on
 * its own as well. Unset, the hook costs one branch per call. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_int.h"

static long long kill_at = -1; /* -1: not read yet; 0: off */
static bool trace;
static long long calls;

static void hook_init(void) {
    if (kill_at >= 0) return;
    const char *k = getenv("MICLIP_TEST_KILL_AT_STORE_CALL");
    char *end = NULL;
    long long v = k && *k ? strtoll(k, &end, 10) : 0;
    kill_at = (end && *end == '\0' && v > 0) ? v : 0;
    const char *t = getenv("MICLIP_TEST_STORE_TRACE");
    trace = t && *t && *t != '0';
}

void mc_store_hook(const mc_store *s, const char *what, const char *obj) {
    hook_init();
    if (!kill_at && !trace) return;
    calls++;
    if (trace) {
        fprintf(stderr, "miclip[%d] store call %lld: %s %s (%s)\n", s ? s->comm.rank : -1, calls,
                what, obj && *obj ? obj : "-", s && s->path ? s->path : "?");
        fflush(stderr);
    }
    if (kill_at && calls == kill_at) {
        fflush(stdout);
        fflush(stderr);
        raise(SIGKILL);
    }
}

/* MICLIP_TEST_STOP_AFTER_RESUME_PROBE=S: rank 0 stops itself (SIGSTOP), once, right after
 * mc_store_resume has probed a store whose path contains S, so a test can have another run
 * write that store meanwhile and then continue this one (SIGCONT): the moment is the program's
 * own progress, not a delay. */
void mc_store_stop_hook(int rank, const char *path) {
    static bool stopped;
    const char *want = getenv("MICLIP_TEST_STOP_AFTER_RESUME_PROBE");
    if (stopped || rank != 0 || !want || !*want || !path || !strstr(path, want)) return;
    stopped = true;
    fflush(stdout);
    fflush(stderr);
    raise(SIGSTOP);
}
