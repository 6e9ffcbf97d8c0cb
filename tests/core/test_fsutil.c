/* test_fsutil MODE DIR: mc_write_file_atomic against a hostile output folder (issue 16).
 *   symlink  a symlink planted at the old predictable temporary name "<path>.tmp.<pid>" and at
 *            the target itself, both pointing at a victim file: the write must leave the victim
 *            unchanged and put a regular file at the target.
 *   stale    temporaries left by a dead process of this host are removed by the next write into
 *            the folder; those of a live process, of another host, and names that are not
 *            miclip's temporaries are kept. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "miclip/fsutil.h"
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

static char *slurp(const char *name) {
    char p[PATH_MAX + 64], *out = NULL;
    mc_error err = {0};
    path_of(p, sizeof p, name);
    if (mc_read_file(p, 1 << 20, &out, NULL, &err) != MC_OK) return NULL;
    return out;
}

/* The host as mc_write_file_atomic records it (this test's hosts need no mangling). */
static void host(char *buf, size_t cap) {
    if (gethostname(buf, cap - 1) != 0) snprintf(buf, cap, "unknown");
    buf[cap - 1] = '\0';
    for (char *p = buf; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '-' || *p == '_'))
            *p = '_';
}

static void test_symlink(void) {
    put("victim", "precious\n");
    char victim[PATH_MAX + 64], target[PATH_MAX + 64], old_tmp[PATH_MAX + 128],
        link2[PATH_MAX + 64];
    path_of(victim, sizeof victim, "victim");
    path_of(target, sizeof target, "out.csv");
    snprintf(old_tmp, sizeof old_tmp, "%s.tmp.%ld", target, (long)getpid());
    CHECK(symlink(victim, old_tmp) == 0);
    mc_error err = {0};
    CHECK_MSG(mc_write_file_atomic(target, "new\n", 4, &err) == MC_OK, "%s", err.msg);
    char *v = slurp("victim"), *t = slurp("out.csv");
    CHECK_MSG(v && !strcmp(v, "precious\n"),
              "the victim was written through the planted link: '%s'", v ? v : "(gone)");
    CHECK_MSG(t && !strcmp(t, "new\n"), "out.csv holds '%s'", t ? t : "(nothing)");
    struct stat st;
    CHECK_MSG(lstat(target, &st) == 0 && S_ISREG(st.st_mode), "out.csv is not a regular file");
    free(v);
    free(t);

    /* A symlink at the target itself is replaced, never followed. */
    path_of(link2, sizeof link2, "out2.csv");
    CHECK(symlink(victim, link2) == 0);
    CHECK_MSG(mc_write_file_atomic(link2, "two\n", 4, &err) == MC_OK, "%s", err.msg);
    v = slurp("victim");
    CHECK_MSG(v && !strcmp(v, "precious\n"), "the victim was written through out2.csv: '%s'",
              v ? v : "(gone)");
    CHECK_MSG(lstat(link2, &st) == 0 && S_ISREG(st.st_mode), "out2.csv is still a symlink");
    free(v);
}

static void test_stale(void) {
    pid_t child = fork();
    if (child == 0) _exit(0);
    int status = 0;
    CHECK(child > 0 && waitpid(child, &status, 0) == child); /* reaped: its pid is free */
    long dead = (long)child, self = (long)getpid(), parent = (long)getppid();
    char h[256], name[512];
    host(h, sizeof h);

    snprintf(name, sizeof name, "a.csv.tmp.%ld.AbCd1234.%s", dead, h);
    put(name, "stale");
    char dead_name[512];
    snprintf(dead_name, sizeof dead_name, "%s", name);
    snprintf(name, sizeof name, "b.h5.tmp.%ld.zzzzzzzz.%s", dead,
             h); /* another target, same folder */
    put(name, "stale");
    char dead_name2[512];
    snprintf(dead_name2, sizeof dead_name2, "%s", name);
    char live_self[512], live_parent[512], other_host[512], legacy[512], not_ours[512];
    snprintf(live_self, sizeof live_self, "c.csv.tmp.%ld.AbCd1234.%s", self, h);
    snprintf(live_parent, sizeof live_parent, "d.csv.tmp.%ld.AbCd1234.%s", parent, h);
    snprintf(other_host, sizeof other_host, "e.csv.tmp.%ld.AbCd1234.%s-elsewhere", dead, h);
    snprintf(legacy, sizeof legacy, "f.csv.tmp.%ld",
             dead); /* no host recorded: cannot tell whose */
    snprintf(not_ours, sizeof not_ours, "notes.tmp.%ld.short.%s", dead, h);
    const char *keep[] = {live_self, live_parent, other_host, legacy, not_ours};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) put(keep[i], "keep");

    char target[PATH_MAX + 64];
    path_of(target, sizeof target, "x.csv");
    mc_error err = {0};
    CHECK_MSG(mc_write_file_atomic(target, "x\n", 2, &err) == MC_OK, "%s", err.msg);
    CHECK_MSG(!has(dead_name), "%s (dead pid %ld, this host) was not removed", dead_name, dead);
    CHECK_MSG(!has(dead_name2), "%s (dead pid %ld, this host) was not removed", dead_name2, dead);
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++)
        CHECK_MSG(has(keep[i]), "%s was removed", keep[i]);
    CHECK(has("x.csv"));
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: test_fsutil symlink|stale DIR\n");
        return 2;
    }
    snprintf(dir, sizeof dir, "%s", argv[2]);
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) return 2;
    mc_error err = {0};
    if (mc_mkdir_p(dir, &err) != MC_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    /* Absolute, so the planted links point at the victim and not at a dangling relative name. */
    char abs[PATH_MAX];
    if (!realpath(argv[2], abs)) return 2;
    snprintf(dir, sizeof dir, "%s", abs);
    if (!strcmp(argv[1], "symlink"))
        test_symlink();
    else if (!strcmp(argv[1], "stale"))
        test_stale();
    else
        return 2;
    return TEST_SUMMARY();
}
