/* store_util.c - string lists in a store, and whole-store helpers: peek at completion, start
 * afresh (store.h). */
#include "miclip/store.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "miclip/checked.h"
#include "miclip/comm.h"
#include "miclip/fsutil.h"
#include "miclip/log.h"
#include "store_int.h"

mc_status mc_store_write_strings(mc_store *st, const char *base, const char *const *strs, int64_t n,
                                 bool rank0_writes, mc_error *err) {
    /* <base>_bytes: U8, every string followed by a NUL; <base>_offsets: I64 [n + 1]. */
    size_t total = 0;
    for (int64_t i = 0; i < n; i++) total += strlen(strs[i]) + 1;
    uint8_t *bytes = malloc(total ? total : 1);
    int64_t *offs = mc_alloc_array((size_t)n + 1, sizeof *offs);
    mc_status s = MC_OK;
    if (!bytes || !offs) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory writing %s", base);
    size_t at = 0;
    for (int64_t i = 0; s == MC_OK && i < n; i++) {
        offs[i] = (int64_t)at;
        size_t l = strlen(strs[i]) + 1;
        memcpy(bytes + at, strs[i], l);
        at += l;
    }
    if (s == MC_OK) offs[n] = (int64_t)at;
    char name[512];
    int64_t shape_b = (int64_t)total, shape_o = n + 1;
    if (s == MC_OK) {
        snprintf(name, sizeof name, "%s_bytes", base);
        s = mc_store_create_dataset(st, name, MC_DTYPE_U8, 1, &shape_b, 0, err);
        if (s == MC_OK)
            s = mc_store_write_rows(st, name, MC_DTYPE_U8, 0, rank0_writes ? shape_b : 0, bytes,
                                    err);
    }
    if (s == MC_OK) {
        snprintf(name, sizeof name, "%s_offsets", base);
        s = mc_store_create_dataset(st, name, MC_DTYPE_I64, 1, &shape_o, 0, err);
        if (s == MC_OK)
            s = mc_store_write_rows(st, name, MC_DTYPE_I64, 0, rank0_writes ? shape_o : 0, offs,
                                    err);
    }
    free(bytes);
    free(offs);
    return s;
}

mc_status mc_store_read_strings(mc_store *st, const char *base, char ***out, int64_t *n,
                                mc_error *err) {
    char bn[512], on[512];
    snprintf(bn, sizeof bn, "%s_bytes", base);
    snprintf(on, sizeof on, "%s_offsets", base);
    mc_store_dataset_info ib, io;
    *out = NULL;
    *n = 0;
    MC_TRY(mc_store_dataset_info_get(st, bn, &ib, err));
    MC_TRY(mc_store_dataset_info_get(st, on, &io, err));
    if (ib.ndim != 1 || io.ndim != 1 || io.shape[0] < 1)
        return MC_FAIL(err, MC_ERR_FORMAT, "%s: %s is not a string list", mc_store_path(st), base);
    int64_t nb = ib.shape[0], cnt = io.shape[0] - 1;
    char *bytes = mc_alloc_array((size_t)nb + 1, 1);
    int64_t *offs = mc_alloc_array((size_t)cnt + 1, sizeof *offs);
    char **v = calloc((size_t)cnt + 1, sizeof *v);
    mc_status s =
        bytes && offs && v ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory reading %s", base);
    if (s == MC_OK) s = mc_store_read_rows(st, bn, MC_DTYPE_U8, 0, nb, bytes, err);
    if (s == MC_OK) s = mc_store_read_rows(st, on, MC_DTYPE_I64, 0, cnt + 1, offs, err);
    if (s == MC_OK) bytes[nb] = '\0';
    for (int64_t i = 0; s == MC_OK && i < cnt; i++) {
        if (offs[i] < 0 || offs[i] > nb || offs[i + 1] < offs[i] || offs[i + 1] > nb) {
            s = MC_FAIL(err, MC_ERR_FORMAT, "%s: %s offset %lld out of range", mc_store_path(st),
                        on, (long long)i);
            break;
        }
        if (!(v[i] = mc_strdup(bytes + offs[i]))) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    free(bytes);
    free(offs);
    if (s != MC_OK) {
        mc_strings_free(&v, cnt);
        return s;
    }
    *out = v;
    *n = cnt;
    return MC_OK;
}

void mc_strings_free(char ***v, int64_t n) {
    if (!v || !*v) return;
    for (int64_t i = 0; i < n; i++) free((*v)[i]);
    free(*v);
    *v = NULL;
}

/* One look: MC_ERR_LOCKED when another run holds the writer lock before the open or after the
 * close (its file may be half-flushed, and a writer that started during the read is caught). */
static mc_status peek_once(const mc_comm *c, const char *path, bool *complete, mc_error *err) {
    *complete = false;
    int state[2] = {0, 0}; /* exists, busy */
    if (c->rank == 0) state[0] = mc_file_exists(path), state[1] = mc_store_lock_busy(path);
    MPI_Bcast(state, 2, MPI_INT, 0, c->comm);
    if (state[1])
        return MC_FAIL(err, MC_ERR_LOCKED, "store '%s' is being written by another run", path);
    if (!state[0]) return MC_OK;
    mc_store *st = NULL;
    MC_TRY(mc_store_open(c, path, MC_STORE_READ, &st, err));
    *complete = mc_store_is_complete(st, "/");
    MC_TRY(mc_store_close(&st, err));
    int busy = c->rank == 0 ? mc_store_lock_busy(path) : 0;
    MPI_Bcast(&busy, 1, MPI_INT, 0, c->comm);
    if (busy) {
        *complete = false;
        return MC_FAIL(err, MC_ERR_LOCKED, "store '%s' is being written by another run", path);
    }
    return MC_OK;
}

/* Seconds a peek waits for another run's writer (MICLIP_STORE_WAIT_S, default 20 minutes). */
static long store_wait_seconds(void) {
    const char *e = getenv("MICLIP_STORE_WAIT_S");
    char *end = NULL;
    long v = e && *e ? strtol(e, &end, 10) : -1;
    return v >= 0 && end && *end == '\0' ? v : 1200;
}

mc_status mc_store_peek_complete(const mc_comm *c, const char *path, bool *complete,
                                 mc_error *err) {
    /* The tasks of a Slurm array share some stores (concept embeddings, the prefix cache, the
     * oracle's scores): one writes, the others wait here and then find it complete. */
    const long wait_s = store_wait_seconds();
    for (long waited = 0;; waited += 2) {
        mc_status s = peek_once(c, path, complete, err);
        if (s != MC_ERR_LOCKED || waited >= wait_s) return s;
        if (waited == 0) mc_info0("store %s is being written by another run; waiting for it", path);
        if (mc_comm_stop_requested(c))
            return MC_FAIL(err, MC_ERR_INTERRUPTED, "stopped by signal while waiting for %s", path);
        sleep(2);
    }
}

mc_status mc_store_fresh(const mc_comm *c, const char *path, mc_store **st, mc_error *err) {
    return mc_store_create(c, path, MC_STORE_OVERWRITE, st, err);
}

mc_status mc_store_finish(mc_store **st, mc_status s, mc_error *err) {
    if (s == MC_OK && *st) s = mc_store_set_complete(*st, "/", err);
    if (!*st) return s;
    mc_error ce = {0};
    mc_status cs = mc_store_close(st, &ce);
    if (s == MC_OK && cs != MC_OK) *err = ce, s = cs;
    return s;
}
