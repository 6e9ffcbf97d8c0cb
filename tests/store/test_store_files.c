/* test_store_files MODE DIR: the store's side files in a hostile output folder (issue 16). Run
 * on one rank (the lock is rank 0's business).
 *   lock_symlink  "<store>.lock" planted as a symlink, or as a hard link, to a victim file:
 *                 creating or opening the store for writing is refused with MC_ERR_IO naming
 *                 the lock file, and the victim is left byte for byte unchanged.
 *   lock_stale    lock files a killed run left (nobody holds them) and temporaries of a dead
 *                 process of this host are removed when a store in that folder is opened for
 *                 writing; a held lock, a file that is not a miclip lock and a live process's
 *                 temporary are kept. */
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "miclip/comm.h"
#include "miclip/fsutil.h"
#include "miclip/store.h"
#include "test_util.h"

static char dir[PATH_MAX];

static void path_of(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/%s", dir, name);
}

static void put(const char *name, const char *text) {
    char p[PATH_MAX + 64];
    path_of(p, sizeof p, name);
    FILE *f = fopen(p, "w");
    CHECK_MSG(f != NULL, "cannot create %s: %s", p, strerror(errno));
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static bool has(const char *name) {
    char p[PATH_MAX + 64];
    struct stat st;
    path_of(p, sizeof p, name);
    return lstat(p, &st) == 0;
}

static bool holds(const char *name, const char *text) {
    char p[PATH_MAX + 64], *out = NULL;
    mc_error err = {0};
    path_of(p, sizeof p, name);
    if (mc_read_file(p, 1 << 20, &out, NULL, &err) != MC_OK) return false;
    bool same = !strcmp(out, text);
    if (!same) fprintf(stderr, "%s holds '%s', expected '%s'\n", name, out, text);
    free(out);
    return same;
}

/* Creating, then opening for writing, must both be refused without touching the victim. */
static void expect_refused(const mc_comm *c, const char *store, const char *what) {
    char sp[PATH_MAX + 64], lp[PATH_MAX + 128];
    path_of(sp, sizeof sp, store);
    snprintf(lp, sizeof lp, "%s.lock", sp);
    mc_store *s = NULL;
    mc_error err = {0};
    mc_status st = mc_store_create(c, sp, 0, &s, &err);
    CHECK_MSG(st == MC_ERR_IO, "create with a %s lock: %s (%s)", what, mc_status_name(st), err.msg);
    CHECK_MSG(strstr(err.msg, lp) && strstr(err.msg, what), "message does not name %s and '%s': %s",
              lp, what, err.msg);
    CHECK_MSG(!has(store), "%s was created anyway", store);
    mc_store_close(&s, &err);
    CHECK(holds("victim", "precious\n"));
}

static void test_lock_symlink(const mc_comm *c) {
    put("victim", "precious\n");
    char victim[PATH_MAX + 64], lp[PATH_MAX + 64];
    path_of(victim, sizeof victim, "victim");
    path_of(lp, sizeof lp, "s.h5.lock");
    CHECK(symlink(victim, lp) == 0);
    expect_refused(c, "s.h5", "symbolic link");
    CHECK_MSG(has("s.h5.lock"), "the planted symlink was removed (leave it for a person to see)");

    path_of(lp, sizeof lp, "t.h5.lock");
    CHECK(link(victim, lp) == 0);
    expect_refused(c, "t.h5", "hard-linked");

    /* An existing store opened for writing: the same refusal. */
    char sp[PATH_MAX + 64], up[PATH_MAX + 64];
    path_of(sp, sizeof sp, "u.h5");
    mc_store *s = NULL;
    mc_error err = {0};
    CHECK_MSG(mc_store_create(c, sp, 0, &s, &err) == MC_OK, "%s", err.msg);
    CHECK(mc_store_close(&s, &err) == MC_OK);
    path_of(up, sizeof up, "u.h5.lock");
    CHECK(symlink(victim, up) == 0);
    mc_status st = mc_store_open(c, sp, MC_STORE_WRITE, &s, &err);
    CHECK_MSG(st == MC_ERR_IO && strstr(err.msg, "symbolic link"), "open for writing: %s (%s)",
              mc_status_name(st), err.msg);
    mc_store_close(&s, &err);
    CHECK(holds("victim", "precious\n"));
    CHECK_MSG(mc_store_open(c, sp, MC_STORE_READ, &s, &err) == MC_OK, "a reader takes no lock: %s",
              err.msg);
    mc_store_close(&s, &err);
}

static void test_lock_stale(const mc_comm *c) {
    pid_t child = fork();
    if (child == 0) _exit(0);
    int status = 0;
    CHECK(child > 0 && waitpid(child, &status, 0) == child); /* reaped: its pid is free */
    char host[256], line[512], tmp_dead[600], tmp_live[600];
    if (gethostname(host, sizeof host - 1) != 0) snprintf(host, sizeof host, "unknown");
    host[sizeof host - 1] = '\0';
    snprintf(line, sizeof line, "host %s pid %ld since 2024-01-01T00:00:00Z\n", host, (long)child);
    put("killed.h5.lock", line); /* left by a run killed while writing killed.h5 */
    put("killed.h5", "");
    put("orphan.h5.lock", line); /* its store is gone too */
    put("held.h5.lock", line);   /* held below, as a live writer would */
    put("notes.lock", "not a miclip lock\n");
    snprintf(tmp_dead, sizeof tmp_dead, "table.csv.tmp.%ld.AbCd1234.%s", (long)child, host);
    put(tmp_dead, "partial");
    snprintf(tmp_live, sizeof tmp_live, "table.csv.tmp.%ld.AbCd1234.%s", (long)getppid(), host);
    put(tmp_live, "in flight");

    char hp[PATH_MAX + 64];
    path_of(hp, sizeof hp, "held.h5.lock");
    int hfd = open(hp, O_RDONLY);
    CHECK(hfd >= 0 && flock(hfd, LOCK_EX | LOCK_NB) == 0); /* another open file description */

    char sp[PATH_MAX + 64];
    path_of(sp, sizeof sp, "new.h5");
    mc_store *s = NULL;
    mc_error err = {0};
    CHECK_MSG(mc_store_create(c, sp, 0, &s, &err) == MC_OK, "%s", err.msg);
    CHECK_MSG(!has("killed.h5.lock"), "the stale killed.h5.lock was kept");
    CHECK_MSG(!has("orphan.h5.lock"), "the stale orphan.h5.lock was kept");
    CHECK_MSG(!has(tmp_dead), "the dead process's %s was kept", tmp_dead);
    CHECK_MSG(has("held.h5.lock"), "a held lock was removed");
    CHECK_MSG(has("notes.lock"), "a file that is not a miclip lock was removed");
    CHECK_MSG(has(tmp_live), "a live process's %s was removed", tmp_live);
    CHECK_MSG(has("new.h5.lock"), "the writer holds no lock file");
    CHECK(mc_store_close(&s, &err) == MC_OK);
    CHECK_MSG(!has("new.h5.lock"), "the lock was not removed at close");
    close(hfd);
}

int main(int argc, char **argv) {
    mc_comm c;
    mc_error err = {0};
    if (mc_comm_init(&argc, &argv, &c, &err) != MC_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    int rc = 2;
    if (argc == 3 && c.size == 1) {
        snprintf(dir, sizeof dir, "%s", argv[2]);
        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        char abs[PATH_MAX];
        /* Absolute, so the planted links point at the victim, not at a dangling relative name. */
        if (system(cmd) == 0 && mc_mkdir_p(dir, &err) == MC_OK && realpath(argv[2], abs)) {
            snprintf(dir, sizeof dir, "%s", abs);
            if (!strcmp(argv[1], "lock_symlink"))
                test_lock_symlink(&c);
            else if (!strcmp(argv[1], "lock_stale"))
                test_lock_stale(&c);
            else
                mc_test_failures++;
            rc = TEST_SUMMARY();
        }
    } else
        fprintf(stderr, "usage: mpiexec -n 1 test_store_files lock_symlink|lock_stale DIR\n");
    mc_comm_finalize(&c);
    return rc;
}
