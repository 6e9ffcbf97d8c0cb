/* store_lock.c - the writer lock of a store: flock on the sidecar "<path>.lock".
 *
 * Parallel HDF5 takes no file lock under MPI-IO, so two runs could otherwise write one store
 * at once. Rank 0 of a writer holds flock(LOCK_EX) on "<path>.lock" for as long as the store is
 * open; the kernel drops it when the process dies (SIGKILL included), so a stale lock never
 * blocks a rerun. The file holds one line naming the holder for the error message.
 *
 * The lock file is removed at release. A taker that opened the file just before the previous
 * holder removed it would lock an orphaned inode, so after locking it checks that the path
 * still names the inode it locked, and retries otherwise.
 *
 * Anyone who can write into the output folder could plant "<path>.lock" as a symlink or hard
 * link to another file, which the taker would truncate and write: the lock is opened with
 * O_NOFOLLOW and must be a regular file with one link, else the open is refused.
 *
 * A killed run leaves its lock file behind (harmless, but clutter that nobody removed): a
 * taker first sweeps its folder, removing every miclip lock file that nobody holds. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/log.h"
#include "store_int.h"

static bool lock_path(const char *store_path, char *buf, size_t cap) {
    return mc_snprintf(buf, cap, "%s.lock", store_path);
}

/* Reads the holder line (best effort: the holder may not have written it yet). */
static void read_holder(int fd, char *buf, size_t cap) {
    ssize_t n = pread(fd, buf, cap - 1, 0);
    if (n <= 0) {
        mc_strlcpy(buf, "holder not yet recorded", cap);
        return;
    }
    buf[n] = '\0';
    for (char *p = buf; *p; p++)
        if (*p == '\n' || *p == '\r') *p = *(p + 1) ? ' ' : '\0';
}

/* True when fd's first bytes are a holder line this file writes ("host H pid P since T"). */
static bool is_miclip_lock(int fd) {
    char buf[16];
    ssize_t n = pread(fd, buf, 5, 0);
    return n == 5 && !memcmp(buf, "host ", 5);
}

void mc_store_lock_sweep(const char *store_path) {
    char dir[4096];
    const char *slash = strrchr(store_path, '/');
    if (!slash)
        mc_strlcpy(dir, ".", sizeof dir);
    else if (slash == store_path)
        mc_strlcpy(dir, "/", sizeof dir);
    else if (!mc_snprintf(dir, sizeof dir, "%.*s", (int)(slash - store_path), store_path))
        return;
    mc_fs_sweep_stale_once(dir); /* temporaries of dead processes */
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n <= 5 || strcmp(e->d_name + n - 5, ".lock") != 0) continue;
        int fd = openat(dirfd(d), e->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) continue;
        struct stat locked, now;
        /* Unheld (flock succeeds), ours, and still the file at that name: then nobody can be
         * using it, and removing it while holding it is what a releasing holder does too. */
        if (fstat(fd, &locked) == 0 && S_ISREG(locked.st_mode) && locked.st_nlink == 1 &&
            is_miclip_lock(fd) && flock(fd, LOCK_EX | LOCK_NB) == 0 &&
            fstatat(dirfd(d), e->d_name, &now, AT_SYMLINK_NOFOLLOW) == 0 &&
            now.st_ino == locked.st_ino && now.st_dev == locked.st_dev &&
            unlinkat(dirfd(d), e->d_name, 0) == 0)
            mc_debug("removed %s/%s, a lock file nobody holds (left by a killed run)", dir,
                     e->d_name);
        close(fd);
    }
    closedir(d);
}

mc_status mc_store_lock_acquire(const char *store_path, int *out_fd, mc_error *err) {
    *out_fd = -1;
    char lp[4096];
    if (!lock_path(store_path, lp, sizeof lp))
        return MC_FAIL(err, MC_ERR_ARG, "store path too long: %s", store_path);
    mc_store_lock_sweep(store_path);
    for (int attempt = 0; attempt < 20; attempt++) {
        int fd = open(lp, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0644);
        if (fd < 0 && errno == ELOOP)
            return MC_FAIL(err, MC_ERR_IO,
                           "store '%s': lock file %s is a symbolic link; refusing to follow it "
                           "(remove it: miclip never makes one)",
                           store_path, lp);
        if (fd < 0)
            return MC_FAIL(err, MC_ERR_IO, "store '%s': cannot create lock file %s: %s", store_path,
                           lp, strerror(errno));
        struct stat own;
        bool reg = fstat(fd, &own) == 0 && S_ISREG(own.st_mode);
        if (!reg || own.st_nlink != 1) {
            close(fd);
            return MC_FAIL(err, MC_ERR_IO,
                           "store '%s': lock file %s is %s; refusing to write it (remove it: "
                           "miclip only makes a plain file with one link)",
                           store_path, lp,
                           reg ? "hard-linked to another name" : "not a regular file");
        }
        int got = flock(fd, LOCK_EX | LOCK_NB);
        /* A sweeper (mc_store_lock_sweep) or a reader's look (mc_store_lock_busy) holds an
         * unheld lock for an instant, which a loaded machine may stretch: retry up to 1 s. */
        for (int i = 0; got != 0 && errno == EWOULDBLOCK && i < 100; i++) {
            nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
            got = flock(fd, LOCK_EX | LOCK_NB);
        }
        if (got != 0) {
            int e = errno;
            if (e == EWOULDBLOCK) {
                char holder[256];
                read_holder(fd, holder, sizeof holder);
                close(fd);
                return MC_FAIL(err, MC_ERR_LOCKED,
                               "store '%s' is being written by another run (%s; lock file %s). "
                               "Wait for it to finish, or stop it; a killed run's lock is "
                               "released by the kernel",
                               store_path, holder, lp);
            }
            close(fd);
            return MC_FAIL(err, MC_ERR_IO,
                           "store '%s': cannot lock %s: %s (the file system must support flock)",
                           store_path, lp, strerror(e));
        }
        struct stat locked, now;
        if (fstat(fd, &locked) != 0 || stat(lp, &now) != 0 || locked.st_ino != now.st_ino ||
            locked.st_dev != now.st_dev) {
            close(fd); /* the previous holder removed it between our open and flock */
            continue;
        }
        char host[256] = "unknown", when[32] = "unknown", line[512];
        gethostname(host, sizeof host - 1);
        host[sizeof host - 1] = '\0';
        time_t t = time(NULL);
        struct tm tm;
        if (gmtime_r(&t, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
        int n =
            snprintf(line, sizeof line, "host %s pid %ld since %s\n", host, (long)getpid(), when);
        if (ftruncate(fd, 0) != 0 || n <= 0 || pwrite(fd, line, strlen(line), 0) < 0) {
            int e = errno;
            close(fd);
            return MC_FAIL(err, MC_ERR_IO, "store '%s': cannot write lock file %s: %s", store_path,
                           lp, strerror(e));
        }
        *out_fd = fd;
        return MC_OK;
    }
    return MC_FAIL(err, MC_ERR_IO, "store '%s': lock file %s keeps being replaced by another run",
                   store_path, lp);
}

bool mc_store_lock_busy(const char *store_path) {
    char lp[4096];
    if (!lock_path(store_path, lp, sizeof lp)) return false;
    int fd = open(lp, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return false; /* no lock file: no writer (a writer makes it before the store) */
    /* A shared lock for an instant: a writer taking its exclusive lock retries past it. */
    bool busy = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    if (busy) { /* our own process's writer is not "another run": never wait for ourselves */
        char holder[256], me[300], host[256] = "unknown";
        read_holder(fd, holder, sizeof holder);
        gethostname(host, sizeof host - 1);
        host[sizeof host - 1] = '\0';
        snprintf(me, sizeof me, "host %s pid %ld ", host, (long)getpid());
        busy = strncmp(holder, me, strlen(me)) != 0;
    }
    close(fd);
    return busy;
}

void mc_store_lock_release(const char *store_path, int *fd) {
    if (*fd < 0) return;
    char lp[4096];
    /* Remove while still holding it, so nobody locks the name we are about to drop. */
    if (lock_path(store_path, lp, sizeof lp)) unlink(lp);
    close(*fd);
    *fd = -1;
}
