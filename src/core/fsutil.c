#include "miclip/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "miclip/checked.h"

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

mc_status mc_read_file(const char *path, size_t max_bytes, char **out, size_t *len, mc_error *err) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return MC_FAIL(err, MC_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return MC_FAIL(err, MC_ERR_IO, "%s is not a regular file", path);
    }
    if ((unsigned long long)st.st_size > max_bytes) {
        fclose(f);
        return MC_FAIL(err, MC_ERR_FORMAT, "%s is %lld bytes, more than the %zu allowed", path,
                       (long long)st.st_size, max_bytes);
    }
    size_t size = (size_t)st.st_size;
    char *buf = malloc(size + 1);
    if (!buf) {
        fclose(f);
        return MC_FAIL(err, MC_ERR_NOMEM, "out of memory reading %s (%zu bytes)", path, size);
    }
    size_t got = fread(buf, 1, size, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || got != size) {
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
    if (!mc_strlcpy(dir, path, sizeof dir)) return MC_FAIL(err, MC_ERR_ARG, "path too long: %s", path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = '\0';
        MC_TRY(mc_mkdir_p(dir, err));
    }
    return mc_write_file_atomic(path, text, n, err);
}
