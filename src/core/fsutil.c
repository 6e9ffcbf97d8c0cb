#include "miclip/fsutil.h"

#include <dirent.h>
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
    if (log->n > k && used < cap) snprintf(buf + used, cap - used, " and %lld more", (long long)(log->n - k));
}

static const char *file_kind(mode_t m) {
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    if (S_ISDIR(m)) return "a folder";
    return "not a regular file";
}

static int cmp_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

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
            s = MC_FAIL(err, MC_ERR_IO, "%s: cannot stat: %s (a file that vanished while listing, or a dangling symlink)",
                        path, strerror(errno));
            break;
        }
        if (kind == MC_LIST_DIRS) {
            /* files beside the folders are metadata (attributes.jsonl, README, label files),
             * unless their name says image: then they were meant to be in a class folder */
            if (!S_ISDIR(st.st_mode)) {
                if (want && want(nm)) mc_skip_log_add(skipped, path, "an image outside the class folders");
                continue;
            }
            if (nm[0] == '.') {
                mc_skip_log_add(skipped, path, "hidden folder");
                continue;
            }
        } else if (!S_ISREG(st.st_mode)) {
            s = MC_FAIL(err, MC_ERR_IO, "%s: is %s, not an image file", path, file_kind(st.st_mode));
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
