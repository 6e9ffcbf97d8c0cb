/* store_lock.c - the writer lock of a store: flock on the sidecar "<path>.lock".
 *
 * Parallel HDF5 takes no file lock under MPI-IO, so two runs could otherwise write one store
 * at once. Rank 0 of a writer holds flock(LOCK_EX) on "<path>.lock" for as long as the store is
 * open; the kernel drops it when the process dies (SIGKILL included), so a stale lock never
 * blocks a rerun. The file holds one line naming the holder for the error message.
 *
 * The lock file is removed at release. A taker that opened the file just before the previous
 * holder removed it would lock an orphaned inode, so after locking it checks that the path
 * still names the inode it locked, and retries otherwise. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "miclip/checked.h"
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

mc_status mc_store_lock_acquire(const char *store_path, int *out_fd, mc_error *err) {
    *out_fd = -1;
    char lp[4096];
    if (!lock_path(store_path, lp, sizeof lp))
        return MC_FAIL(err, MC_ERR_ARG, "store path too long: %s", store_path);
    for (int attempt = 0; attempt < 20; attempt++) {
        int fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
            return MC_FAIL(err, MC_ERR_IO, "store '%s': cannot create lock file %s: %s", store_path,
                           lp, strerror(errno));
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
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
        int n = snprintf(line, sizeof line, "host %s pid %ld since %s\n", host, (long)getpid(), when);
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

void mc_store_lock_release(const char *store_path, int *fd) {
    if (*fd < 0) return;
    char lp[4096];
    /* Remove while still holding it, so nobody locks the name we are about to drop. */
    if (lock_path(store_path, lp, sizeof lp)) unlink(lp);
    close(*fd);
    *fd = -1;
}
