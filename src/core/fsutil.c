#include "miclip/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "miclip/checked.h"
#include "miclip/comm.h"

mc_status mc_mkdir_p(const char *dir, mc_error *err) {
    char path[4096];
    if (!mc_strlcpy(path, dir, sizeof path)) return MC_FAIL(err, MC_ERR_ARG, "path too long: %s", dir);
    size_t n = strlen(path);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != '\0') continue;
        char saved = path[i];
        path[i] = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            return MC_FAIL(err, MC_ERR_IO, "cannot create directory %s: %s", path, strerror(errno));
        path[i] = saved;
    }
    if (!mc_dir_exists(dir)) return MC_FAIL(err, MC_ERR_IO, "%s exists and is not a directory", dir);
    return MC_OK;
}

mc_status mc_write_file_atomic(const char *path, const void *data, size_t n, mc_error *err) {
    char tmp[4096];
    if (!mc_snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()))
        return MC_FAIL(err, MC_ERR_ARG, "path too long: %s", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return MC_FAIL(err, MC_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
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
 * poll(2). The wait is interruptible: a stop signal (comm.h) ends it with MC_ERR_INTERRUPTED.
 * The fd was opened O_NONBLOCK, so opening never blocked either. */
static mc_status read_stream(int fd, const char *path, size_t max_bytes, char **out, size_t *len,
                             mc_error *err) {
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    if (!buf) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory reading %s", path);
    mc_status s = MC_OK;
    for (;;) {
        if (mc_stop_signal()) {
            s = mc_fail_stopped(err, 0, "while waiting for %s (a pipe) to be written; nothing was done", path);
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
            s = MC_FAIL(err, MC_ERR_FORMAT, "%s is more than the %zu bytes allowed", path, max_bytes);
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
