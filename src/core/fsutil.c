#include "miclip/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "miclip/checked.h"
#include "miclip/signals.h"
#include "miclip/log.h"

mc_status mc_mkdir_p(const char *dir, mc_error *err) {
    char path[4096];
    if (!mc_strlcpy(path, dir, sizeof path))
        return MC_FAIL(err, MC_ERR_ARG, "path too long: %s", dir);
    size_t n = strlen(path);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != '\0') continue;
        char saved = path[i];
        path[i] = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            return MC_FAIL(err, MC_ERR_IO, "cannot create directory %s: %s", path, strerror(errno));
        path[i] = saved;
    }
    if (!mc_dir_exists(dir))
        return MC_FAIL(err, MC_ERR_IO, "%s exists and is not a directory", dir);
    return MC_OK;
}

/* This host's name as it appears in temporary names: characters other than letters, digits,
 * '.', '-' and '_' become '_' (a file name must not hold '/'). */
static void host_tag(char *buf, size_t cap) {
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) != 0 || !host[0])
        mc_strlcpy(host, "unknown", sizeof host);
    host[sizeof host - 1] = '\0';
    size_t n = 0;
    for (const char *p = host; *p && n + 1 < cap && n < 64; p++) {
        char ch = *p;
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' || ch == '_';
        buf[n++] = ok ? ch : '_';
    }
    buf[n] = '\0';
}

/* n random letters and digits: from getrandom, else (no entropy yet) from the clock and a
 * counter. Unpredictability is a bonus; O_EXCL is what makes the create safe. */
static void random_tag(char *buf, size_t n) {
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    static _Atomic unsigned long counter;
    unsigned char raw[32];
    if (n > sizeof raw) n = sizeof raw;
    if (getrandom(raw, n, GRND_NONBLOCK) != (ssize_t)n) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        unsigned long x = (unsigned long)ts.tv_nsec ^ ((unsigned long)ts.tv_sec << 20) ^
                          (counter++ * 2654435761UL);
        for (size_t i = 0; i < n; i++) {
            x = x * 6364136223846793005UL + 1442695040888963407UL;
            raw[i] = (unsigned char)(x >> 33);
        }
    }
    for (size_t i = 0; i < n; i++) buf[i] = alphabet[raw[i] % (sizeof alphabet - 1)];
    buf[n] = '\0';
}

/* Splits path into its folder ("." when it has none) and base name. */
static bool split_path(const char *path, char *dir, size_t dcap, const char **base) {
    const char *slash = strrchr(path, '/');
    *base = slash ? slash + 1 : path;
    if (!slash) return mc_strlcpy(dir, ".", dcap);
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    if (n + 1 > dcap) return false;
    memcpy(dir, path, n);
    dir[n] = '\0';
    return true;
}

/* If name is "<anything>.tmp.<pid>.<8 random>.<host>" with host this host's tag, the pid. */
static bool parse_tmp_name(const char *name, const char *host, long *pid) {
    for (const char *p = strstr(name, ".tmp."); p; p = strstr(p + 1, ".tmp.")) {
        const char *q = p + 5;
        char *end = NULL;
        if (*q < '0' || *q > '9') continue;
        errno = 0;
        long v = strtol(q, &end, 10);
        if (errno || v <= 0 || *end != '.') continue;
        q = end + 1;
        size_t r = 0;
        while (r < MC_TMP_RANDOM_LEN &&
               ((q[r] >= 'a' && q[r] <= 'z') || (q[r] >= 'A' && q[r] <= 'Z') ||
                (q[r] >= '0' && q[r] <= '9')))
            r++;
        if (r != MC_TMP_RANDOM_LEN || q[r] != '.' || strcmp(q + r + 1, host) != 0) continue;
        *pid = v;
        return true;
    }
    return false;
}

int mc_fs_sweep_stale(const char *dir) {
    char host[80];
    host_tag(host, sizeof host);
    DIR *d = opendir(dir);
    if (!d) return 0;
    int removed = 0;
    long self = (long)getpid();
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        long pid = 0;
        if (!parse_tmp_name(e->d_name, host, &pid) || pid == self) continue;
        /* Only a pid that is gone: EPERM means alive (another user's process). */
        if ((pid_t)pid != pid || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (unlinkat(dirfd(d), e->d_name, 0) == 0) {
            removed++;
            mc_debug("removed %s/%s, a temporary of process %ld on this host, which is gone", dir,
                     e->d_name, pid);
        }
    }
    closedir(d);
    return removed;
}

/* The folders this process has swept, by device and inode: each is swept once. */
static pthread_mutex_t swept_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    dev_t dev;
    ino_t ino;
} swept[256];
static size_t n_swept;

int mc_fs_sweep_stale_once(const char *dir) {
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return 0;
    pthread_mutex_lock(&swept_mu);
    bool seen = n_swept == sizeof swept / sizeof swept[0]; /* table full: stop sweeping */
    for (size_t i = 0; !seen && i < n_swept; i++)
        seen = swept[i].dev == st.st_dev && swept[i].ino == st.st_ino;
    if (!seen) {
        swept[n_swept].dev = st.st_dev;
        swept[n_swept].ino = st.st_ino;
        n_swept++;
    }
    pthread_mutex_unlock(&swept_mu);
    return seen ? 0 : mc_fs_sweep_stale(dir);
}

mc_status mc_write_file_atomic(const char *path, const void *data, size_t n, mc_error *err) {
    char dir[4096], host[80], tmp[4096], rnd[MC_TMP_RANDOM_LEN + 1];
    const char *base = NULL;
    if (!split_path(path, dir, sizeof dir, &base) || !*base)
        return MC_FAIL(err, MC_ERR_ARG, "not a file path: %s", path);
    mc_fs_sweep_stale_once(dir);
    host_tag(host, sizeof host);
    /* A new file under a name nobody can guess: O_EXCL|O_NOFOLLOW never opens a file or symlink
     * someone planted, so the run can only ever write the file it creates here. */
    int fd = -1;
    for (int attempt = 0; fd < 0 && attempt < 100; attempt++) {
        random_tag(rnd, MC_TMP_RANDOM_LEN);
        if (!mc_snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%s.%s", path, (long)getpid(), rnd, host))
            return MC_FAIL(err, MC_ERR_ARG, "path too long: %s", path);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0 && errno != EEXIST)
            return MC_FAIL(err, MC_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    }
    if (fd < 0)
        return MC_FAIL(err, MC_ERR_IO, "cannot create a temporary file beside %s: %s", path,
                       strerror(errno));
    const char *p = data;
    size_t left = n;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            close(fd);
            unlink(tmp);
            return MC_FAIL(err, MC_ERR_IO, "cannot write %s: %s", tmp, strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        unlink(tmp);
        return MC_FAIL(err, MC_ERR_IO, "cannot flush %s: %s", tmp, strerror(errno));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return MC_FAIL(err, MC_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(e));
    }
    return MC_OK;
}

/* A FIFO or pipe (a named pipe, `<(cmd)`): read to the end, waiting for the writer with
 * poll(2). The wait is interruptible: a stop signal (signals.h) ends it with MC_ERR_INTERRUPTED.
 * The fd was opened O_NONBLOCK, so opening never blocked either. */
static mc_status read_stream(int fd, const char *path, size_t max_bytes, char **out, size_t *len,
                             mc_error *err) {
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    if (!buf) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory reading %s", path);
    mc_status s = MC_OK;
    for (;;) {
        if (mc_stop_signal()) {
            s = mc_fail_stopped(
                err, 0, "while waiting for %s (a pipe) to be written; nothing was done", path);
            break;
        }
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        /* The timeout only bounds the window between the flag check and poll. */
        int pr = poll(&pf, 1, 250);
        if (pr < 0 && errno != EINTR) {
            s = MC_FAIL(err, MC_ERR_IO, "cannot read %s: %s", path, strerror(errno));
            break;
        }
        if (pr <= 0) continue;
        if (n + 1 >= cap) {
            size_t ncap = cap * 2;
            char *nb = realloc(buf, ncap);
            if (!nb) {
                s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory reading %s", path);
                break;
            }
            buf = nb, cap = ncap;
        }
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            s = MC_FAIL(err, MC_ERR_IO, "cannot read %s: %s", path, strerror(errno));
            break;
        }
        if (r == 0) break; /* the writer closed it */
        n += (size_t)r;
        if (n > max_bytes) {
            s = MC_FAIL(err, MC_ERR_FORMAT, "%s is more than the %zu bytes allowed", path,
                        max_bytes);
            break;
        }
    }
    if (s != MC_OK) {
        free(buf);
        return s;
    }
    buf[n] = '\0';
    *out = buf;
    if (len) *len = n;
    return MC_OK;
}

mc_status mc_read_file(const char *path, size_t max_bytes, char **out, size_t *len, mc_error *err) {
    *out = NULL;
    /* O_NONBLOCK: opening a FIFO must not block before the type check (a FIFO without a writer
     * would wait in open(2) for ever); it changes nothing for a regular file. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return MC_FAIL(err, MC_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !(S_ISREG(st.st_mode) || S_ISFIFO(st.st_mode))) {
        close(fd);
        return MC_FAIL(err, MC_ERR_IO, "%s is not a regular file", path);
    }
    if (S_ISFIFO(st.st_mode)) {
        mc_status s = read_stream(fd, path, max_bytes, out, len, err);
        close(fd);
        return s;
    }
    if ((unsigned long long)st.st_size > max_bytes) {
        close(fd);
        return MC_FAIL(err, MC_ERR_FORMAT, "%s is %lld bytes, more than the %zu allowed", path,
                       (long long)st.st_size, max_bytes);
    }
    size_t size = (size_t)st.st_size;
    char *buf = malloc(size + 1);
    if (!buf) {
        close(fd);
        return MC_FAIL(err, MC_ERR_NOMEM, "out of memory reading %s (%zu bytes)", path, size);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got != size) {
        free(buf);
        return MC_FAIL(err, MC_ERR_IO, "cannot read %s (got %zu of %zu bytes)", path, got, size);
    }
    buf[size] = '\0';
    *out = buf;
    if (len) *len = size;
    return MC_OK;
}

bool mc_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

bool mc_dir_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool mc_path_join(char *buf, size_t cap, const char *dir, const char *name) {
    size_t n = strlen(dir);
    bool slash = n > 0 && dir[n - 1] == '/';
    return mc_snprintf(buf, cap, "%s%s%s", dir, slash ? "" : "/", name);
}

mc_status mc_write_text_file(const char *path, const char *text, size_t n, mc_error *err) {
    char dir[4096];
    if (!mc_strlcpy(dir, path, sizeof dir))
        return MC_FAIL(err, MC_ERR_ARG, "path too long: %s", path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = '\0';
        MC_TRY(mc_mkdir_p(dir, err));
    }
    return mc_write_file_atomic(path, text, n, err);
}

mc_status mc_write_text_file_if_changed(const char *path, const char *text, size_t n,
                                        mc_error *err) {
    char *old = NULL;
    size_t old_len = 0;
    mc_error ignored = {0};
    bool same = mc_file_exists(path) &&
                mc_read_file(path, n + 1, &old, &old_len, &ignored) == MC_OK && old_len == n &&
                !memcmp(old, text, n);
    free(old);
    return same ? MC_OK : mc_write_text_file(path, text, n, err);
}

/* --- listing a folder -------------------------------------------------------------------- */

void mc_skip_log_add(mc_skip_log *log, const char *path, const char *reason) {
    if (!log) return;
    if (log->n < MC_SKIP_EXAMPLES)
        snprintf(log->first[log->n], sizeof log->first[0], "%.250s (%s)", path, reason);
    log->n++;
}

void mc_skip_log_format(const mc_skip_log *log, char *buf, size_t cap) {
    size_t used = 0;
    if (cap) buf[0] = '\0';
    int64_t k = log->n < MC_SKIP_EXAMPLES ? log->n : MC_SKIP_EXAMPLES;
    for (int64_t i = 0; i < k && used < cap; i++) {
        int w = snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", log->first[i]);
        if (w > 0) used += (size_t)w;
    }
    if (log->n > k && used < cap)
        snprintf(buf + used, cap - used, " and %lld more", (long long)(log->n - k));
}

static const char *file_kind(mode_t m) {
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    if (S_ISDIR(m)) return "a folder";
    return "not a regular file";
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void mc_list_free(char **names, int64_t n) {
    for (int64_t i = 0; names && i < n; i++) free(names[i]);
    free(names);
}

mc_status mc_list_dir(const char *dir, mc_list_kind kind, bool (*want)(const char *name),
                      mc_skip_log *skipped, char ***names, int64_t *n, mc_error *err) {
    *names = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return MC_FAIL(err, MC_ERR_IO, "cannot read folder %s: %s", dir, strerror(errno));
    char **v = NULL;
    int64_t cnt = 0, cap = 0;
    mc_status s = MC_OK;
    struct dirent *e;
    while (s == MC_OK && (e = readdir(d))) {
        const char *nm = e->d_name;
        if (!strcmp(nm, ".") || !strcmp(nm, "..")) continue;
        char path[4096];
        if (!mc_path_join(path, sizeof path, dir, nm)) {
            s = MC_FAIL(err, MC_ERR_ARG, "path too long in %s", dir);
            break;
        }
        if (kind == MC_LIST_FILES && nm[0] == '.') {
            mc_skip_log_add(skipped, path, "hidden");
            continue;
        }
        if (kind == MC_LIST_FILES && want && !want(nm)) {
            mc_skip_log_add(skipped, path, "not an image file name");
            continue;
        }
        struct stat st;
        if (stat(path, &st) != 0) {
            s = MC_FAIL(
                err, MC_ERR_IO,
                "%s: cannot stat: %s (a file that vanished while listing, or a dangling symlink)",
                path, strerror(errno));
            break;
        }
        if (kind == MC_LIST_DIRS) {
            /* files beside the folders are metadata (attributes.jsonl, README, label files),
             * unless their name says image: then they were meant to be in a class folder */
            if (!S_ISDIR(st.st_mode)) {
                if (want && want(nm))
                    mc_skip_log_add(skipped, path, "an image outside the class folders");
                continue;
            }
            if (nm[0] == '.') {
                mc_skip_log_add(skipped, path, "hidden folder");
                continue;
            }
        } else if (!S_ISREG(st.st_mode)) {
            s = MC_FAIL(err, MC_ERR_IO, "%s: is %s, not an image file", path,
                        file_kind(st.st_mode));
            break;
        } else if (access(path, R_OK) != 0) {
            s = MC_FAIL(err, MC_ERR_IO, "%s: cannot be read: %s", path, strerror(errno));
            break;
        }
        if (cnt == cap) {
            int64_t nc = cap ? 2 * cap : 64;
            char **nv = realloc(v, (size_t)nc * sizeof *nv);
            if (!nv) {
                s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory listing %s", dir);
                break;
            }
            v = nv;
            cap = nc;
        }
        if (!(v[cnt] = mc_strdup(nm))) {
            s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory listing %s", dir);
            break;
        }
        cnt++;
    }
    closedir(d);
    if (s != MC_OK) {
        mc_list_free(v, cnt);
        return s;
    }
    if (cnt > 1) qsort(v, (size_t)cnt, sizeof *v, cmp_name);
    *names = v;
    *n = cnt;
    return MC_OK;
}
