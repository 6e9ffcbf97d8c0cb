/* store_layout.c - the layout record, damage checks and the resume entry point.
 *
 * A resumable stage creates every dataset up front, then calls mc_store_mark_layout: the root
 * gets "layout_datasets" (the sorted names of every dataset, one per line) and
 * "layout_complete" = 1, and the file is flushed. mc_store_set_complete records the same
 * attributes again (so every complete store carries its manifest). From then on:
 *
 *   - mc_store_open refuses a store whose manifest names a dataset that is not there: its
 *     contents contradict its own record (a dataset deleted or lost), so nothing it says can be
 *     trusted. The message names the store, the dataset and how to rebuild it (MC_ERR_FORMAT);
 *   - mc_store_resume (the writer's entry point) rebuilds from scratch, instead of refusing,
 *     a store that is empty or never got a superblock, that HDF5 cannot open, whose layout was
 *     never marked (a run killed between creating the file and marking its layout), or whose
 *     manifest is contradicted. Stores whose layout is intact are reopened and only their
 *     marked units are trusted. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "miclip/log.h"
#include "store_int.h"

#define LAYOUT_LIST_MAX ((size_t)60000) /* stays a compact attribute (HDF5's 64 KiB header limit) */

/* --- the manifest ------------------------------------------------------------------------ */

typedef struct {
    char **names;
    size_t n, cap;
    bool oom;
} name_list;

static herr_t visit_link(hid_t g, const char *name, const H5L_info_t *info, void *ud) {
    name_list *l = ud;
    if (info->type != H5L_TYPE_HARD) return 0;
    hid_t o = H5Oopen(g, name, H5P_DEFAULT);
    if (o < 0) {
        H5Eclear2(H5E_DEFAULT);
        return 0;
    }
    bool is_ds = H5Iget_type(o) == H5I_DATASET;
    H5Oclose(o);
    if (!is_ds) return 0;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 32;
        char **nn = realloc(l->names, cap * sizeof *nn);
        if (!nn) {
            l->oom = true;
            return -1;
        }
        l->names = nn;
        l->cap = cap;
    }
    size_t len = strlen(name);
    char *c = malloc(len + 2);
    if (!c) {
        l->oom = true;
        return -1;
    }
    c[0] = '/';
    memcpy(c + 1, name, len + 1);
    l->names[l->n++] = c;
    return 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Local: every dataset of the file, sorted, one per line (malloc'd). Names past
 * LAYOUT_LIST_MAX bytes are left out (the check then covers the first ones only). */
static mc_status list_datasets(mc_store *s, char **out, mc_error *err) {
    *out = NULL;
    name_list l = {0};
    herr_t h = H5Lvisit(s->file, H5_INDEX_NAME, H5_ITER_INC, visit_link, &l);
    mc_status st = MC_OK;
    if (l.oom)
        st = MC_FAIL(err, MC_ERR_NOMEM, "store '%s': out of memory listing datasets", s->path);
    else if (h < 0)
        st = MC_H5FAIL(err, "store '%s': cannot list its datasets", s->path);
    size_t total = 1;
    if (st == MC_OK) {
        qsort(l.names, l.n, sizeof *l.names, cmp_str);
        for (size_t i = 0; i < l.n; i++) total += strlen(l.names[i]) + 1;
        if (total > LAYOUT_LIST_MAX) total = LAYOUT_LIST_MAX;
        char *buf = malloc(total);
        if (!buf)
            st = MC_FAIL(err, MC_ERR_NOMEM, "store '%s': out of memory listing datasets", s->path);
        else {
            size_t len = 0;
            for (size_t i = 0; i < l.n; i++) {
                size_t k = strlen(l.names[i]);
                if (len + k + 2 > total) break;
                if (len) buf[len++] = '\n';
                memcpy(buf + len, l.names[i], k);
                len += k;
            }
            buf[len] = '\0';
            *out = buf;
        }
    }
    for (size_t i = 0; i < l.n; i++) free(l.names[i]);
    free(l.names);
    return st;
}

mc_status mc_store_record_layout(mc_store *s, mc_error *err) {
    char *list = NULL;
    mc_status st = s->comm.rank == 0 ? list_datasets(s, &list, err) : MC_OK;
    st = mc_store_agree(s, st, err);
    if (st == MC_OK)
        st = mc_store_set_attr_str(s, "/", MC_STORE_LAYOUT_LIST_ATTR, list ? list : "", err);
    free(list);
    MC_TRY(st);
    return mc_store_set_attr_i64(s, "/", MC_STORE_LAYOUT_ATTR, 1, err);
}

mc_status mc_store_mark_layout(mc_store *s, mc_error *err) {
    MC_TRY(mc_store_record_layout(s, err));
    MC_TRY(mc_store_flush(s, err));
    mc_store_hook(s, "mark_layout", "/");
    return MC_OK;
}

int mc_store_layout_check(mc_store *s, char *missing, size_t cap) {
    if (missing && cap) missing[0] = '\0';
    if (!mc_store_has_attr(s, "/", MC_STORE_LAYOUT_LIST_ATTR)) return 0;
    char *list = NULL;
    if (mc_store_get_attr_str(s, "/", MC_STORE_LAYOUT_LIST_ATTR, &list, NULL) != MC_OK) {
        if (missing && cap)
            snprintf(missing, cap, "(unreadable '%s' attribute)", MC_STORE_LAYOUT_LIST_ATTR);
        return -1;
    }
    int verdict = 1;
    for (char *p = list; p && *p && verdict > 0;) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = '\0';
        if (!mc_store_exists(s, p)) {
            verdict = -1;
            if (missing && cap) snprintf(missing, cap, "%s", p);
        }
        p = nl ? nl + 1 : NULL;
    }
    free(list);
    return verdict;
}

mc_status mc_store_damaged(mc_store *s, const char *missing, mc_error *err) {
    char *stage = NULL;
    char how[300];
    if (mc_store_has_attr(s, "/", "stage") &&
        mc_store_get_attr_str(s, "/", "stage", &stage, NULL) == MC_OK && stage[0] &&
        strlen(stage) < 64 && !strpbrk(stage, " \t\n`'"))
        snprintf(how, sizeof how, "`miclip %s CONFIG`", stage);
    else
        snprintf(how, sizeof how, "the stage that wrote it");
    free(stage);
    return MC_FAIL(
        err, MC_ERR_FORMAT,
        "store '%s' is damaged: its recorded layout has dataset '%s' but the file does not "
        "(deleted or lost); delete the store and rerun %s to rebuild it",
        s->path, missing, how);
}

/* --- probe and resume ---------------------------------------------------------------------- */

/* Rank 0: a file that exists but holds nothing a writer ever flushed: empty, or no bytes at
 * offset 0 (an MPI-IO HDF5 file killed before its first flush has no superblock there). */
static bool never_written(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    struct stat stt;
    unsigned char head[8];
    bool r = false;
    if (fstat(fd, &stt) == 0 && S_ISREG(stt.st_mode)) {
        ssize_t n = pread(fd, head, sizeof head, 0);
        if (n < (ssize_t)sizeof head)
            r = n >= 0;
        else {
            r = true;
            for (int i = 0; i < 8; i++) r = r && head[i] == 0;
        }
    }
    close(fd);
    return r;
}

static mc_status probe(const mc_comm *c, const char *path, mc_store_state *state, char *why,
                       size_t why_cap, mc_error *err) {
    *state = MC_STORE_ABSENT;
    why[0] = '\0';
    int info[2] = {0, 0}; /* exists, never written */
    if (c->rank == 0 && path) {
        struct stat stt;
        info[0] = lstat(path, &stt) == 0;
        info[1] = info[0] && never_written(path);
    }
    MPI_Bcast(info, 2, MPI_INT, 0, c->comm);
    if (!info[0]) return MC_OK;
    if (info[1]) {
        *state = MC_STORE_REBUILD;
        snprintf(why, why_cap,
                 "it is empty or has no HDF5 superblock (its writer died before the first flush)");
        return MC_OK;
    }
    mc_store *s = NULL;
    mc_error oe = {0};
    mc_status st = mc_store_open_tolerant(c, path, &s, &oe);
    if (st == MC_ERR_HDF5) {
        *state = MC_STORE_REBUILD;
        snprintf(why, why_cap, "HDF5 cannot open it (%.400s)", oe.msg);
        return MC_OK;
    }
    if (st != MC_OK) {
        if (err) *err = oe;
        return st;
    }
    char missing[MC_STORE_NAME_MAX + 64];
    int v = 0; /* rank 0's verdict: the same file, so the same everywhere, but agreed anyway */
    int layout = mc_store_layout_check(s, missing, sizeof missing);
    if (layout < 0)
        v = 3;
    else if (mc_store_is_complete(s, "/"))
        v = 1;
    else if (mc_store_has_attr(s, "/", MC_STORE_LAYOUT_ATTR))
        v = 2;
    else
        v = 4;
    MPI_Bcast(&v, 1, MPI_INT, 0, c->comm);
    MPI_Bcast(missing, (int)sizeof missing, MPI_CHAR, 0, c->comm);
    if (v == 1)
        *state = MC_STORE_COMPLETE;
    else if (v == 2)
        *state = MC_STORE_PARTIAL;
    else {
        *state = MC_STORE_REBUILD;
        if (v == 3)
            snprintf(why, why_cap, "its recorded layout has dataset '%s' but the file does not",
                     missing);
        else
            snprintf(why, why_cap,
                     "its layout was never completed (a run was killed while creating it)");
    }
    return mc_store_close(&s, err);
}

mc_status mc_store_probe(const mc_comm *c, const char *path, mc_store_state *state, mc_error *err) {
    *state = MC_STORE_ABSENT;
    int busy = c->rank == 0 && path && mc_store_lock_busy(path);
    MPI_Bcast(&busy, 1, MPI_INT, 0, c->comm);
    if (busy) /* half-written by another run: not a file to open, let alone judge */
        return MC_FAIL(err, MC_ERR_LOCKED, "store '%s' is being written by another run", path);
    char why[1600];
    return probe(c, path, state, why, sizeof why, err);
}

mc_status mc_store_resume(const mc_comm *c, const char *path, mc_store **out, bool *created,
                          mc_error *err) {
    *out = NULL;
    if (created) *created = false;
    /* Lock first, then probe: a store another run (a task sharing it) writes is then refused
     * as MC_ERR_LOCKED, never read half-written, and one that run completed between our probe
     * and our lock is seen complete instead of "already exists" or rebuilt. */
    int lock_fd = -1;
    mc_status st = MC_OK;
    if (c->rank == 0) st = mc_store_lock_acquire(path ? path : "", &lock_fd, err);
    st = mc_comm_agree(c, st, err);
    mc_store_state state = MC_STORE_ABSENT;
    char why[1600];
    if (st == MC_OK) st = probe(c, path, &state, why, sizeof why, err);
    mc_store_stop_hook(c->rank, path);
    if (st == MC_OK && (state == MC_STORE_COMPLETE || state == MC_STORE_PARTIAL))
        st = mc_store_open_locked(c, path, &lock_fd, out, err);
    else if (st == MC_OK) {
        if (state == MC_STORE_REBUILD && c->rank == 0)
            mc_warn("store '%s': %s; rebuilding it from scratch", path, why);
        if (created) *created = true;
        st = mc_store_create_locked(c, path, state == MC_STORE_REBUILD ? MC_STORE_OVERWRITE : 0,
                                    &lock_fd, out, err);
    }
    mc_store_lock_release(path ? path : "", &lock_fd); /* still ours only where we failed */
    return st;
}
