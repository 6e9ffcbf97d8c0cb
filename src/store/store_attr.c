/* store_attr.c - attributes, the provenance set, completion records and stage completion. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "miclip/checked.h"
#include "miclip/miclip.h"
#include "store_int.h"

/* --- attributes ----------------------------------------------------------------------------- */

static hid_t vlen_utf8(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t >= 0 && (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0)) {
        H5Tclose(t);
        return H5I_INVALID_HID;
    }
    return t;
}

/* Collective part shared by the setters: (re)creates scalar attribute key on obj. */
static mc_status attr_write(mc_store *s, const char *obj, const char *key, hid_t ftype, hid_t mtype,
                            const void *buf, mc_status pre, mc_error *err) {
    char p[MC_STORE_NAME_MAX + 2];
    mc_status st = pre;
    if (st == MC_OK) st = mc_store_norm_name(s, obj, p, err);
    if (st == MC_OK && (!key || !*key))
        st = MC_FAIL(err, MC_ERR_ARG, "store '%s': empty attribute name on '%s'", s->path, p);
    if (st == MC_OK && !s->writable)
        st = MC_FAIL(err, MC_ERR_ARG, "store '%s': attribute '%s' on '%s': store is open read-only",
                     s->path, key, p);
    if (st == MC_OK && !mc_store_exists(s, p))
        st =
            MC_FAIL(err, MC_ERR_ARG, "store '%s': attribute '%s': no object '%s'", s->path, key, p);
    st = mc_store_agree(s, st, err);
    if (st != MC_OK) return st;

    hid_t o = H5Oopen(s->file, p, H5P_DEFAULT), sp = H5Screate(H5S_SCALAR), a = H5I_INVALID_HID;
    bool ok = o >= 0 && sp >= 0 && ftype >= 0 && mtype >= 0;
    if (ok) {
        htri_t ex = H5Aexists(o, key);
        ok = ex >= 0 && (ex == 0 || H5Adelete(o, key) >= 0);
    }
    if (ok) ok = (a = H5Acreate2(o, key, ftype, sp, H5P_DEFAULT, H5P_DEFAULT)) >= 0;
    if (ok) ok = H5Awrite(a, mtype, buf) >= 0;
    if (!ok)
        st = MC_H5FAIL(err, "store '%s': cannot write attribute '%s' on '%s'", s->path, key, p);
    if (a >= 0) H5Aclose(a);
    if (sp >= 0) H5Sclose(sp);
    if (o >= 0) H5Oclose(o);
    st = mc_store_agree(s, st, err);
    if (st == MC_OK) {
        char what[MC_STORE_NAME_MAX + 300];
        snprintf(what, sizeof what, "%s@%s", p, key);
        mc_store_hook(s, "set_attr", what);
    }
    return st;
}

mc_status mc_store_set_attr_str(mc_store *s, const char *obj, const char *key, const char *value,
                                mc_error *err) {
    /* HDF5 metadata must be identical on every rank: use rank 0's value. */
    char *v = s->comm.rank == 0 ? (char *)value : NULL;
    mc_status st = mc_comm_bcast_string(&s->comm, 0, &v, err);
    if (st == MC_OK && !v)
        st = MC_FAIL(err, MC_ERR_ARG, "store '%s': attribute '%s': NULL string value", s->path,
                     key ? key : "?");
    hid_t t = vlen_utf8();
    st = attr_write(s, obj, key, t, t, &v, st, err);
    if (t >= 0) H5Tclose(t);
    if (s->comm.rank != 0) free(v);
    return st;
}

mc_status mc_store_set_attr_i64(mc_store *s, const char *obj, const char *key, int64_t value,
                                mc_error *err) {
    MPI_Bcast(&value, 1, MPI_INT64_T, 0, s->comm.comm);
    return attr_write(s, obj, key, H5T_STD_I64LE, H5T_NATIVE_INT64, &value, MC_OK, err);
}

mc_status mc_store_set_attr_f64(mc_store *s, const char *obj, const char *key, double value,
                                mc_error *err) {
    MPI_Bcast(&value, 1, MPI_DOUBLE, 0, s->comm.comm);
    return attr_write(s, obj, key, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value, MC_OK, err);
}

mc_status mc_store_set_attrs_str(mc_store *s, const char *obj, const mc_store_attr_str *a, size_t n,
                                 mc_error *err) {
    mc_status st = MC_OK;
    for (size_t i = 0; st == MC_OK && i < n; i++)
        st = mc_store_set_attr_str(s, obj, a[i].key, a[i].value, err);
    return st;
}

mc_status mc_store_set_attrs_i64(mc_store *s, const char *obj, const mc_store_attr_i64 *a, size_t n,
                                 mc_error *err) {
    mc_status st = MC_OK;
    for (size_t i = 0; st == MC_OK && i < n; i++)
        st = mc_store_set_attr_i64(s, obj, a[i].key, a[i].value, err);
    return st;
}

mc_status mc_store_set_attrs_f64(mc_store *s, const char *obj, const mc_store_attr_f64 *a, size_t n,
                                 mc_error *err) {
    mc_status st = MC_OK;
    for (size_t i = 0; st == MC_OK && i < n; i++)
        st = mc_store_set_attr_f64(s, obj, a[i].key, a[i].value, err);
    return st;
}

bool mc_store_has_attr(mc_store *s, const char *obj, const char *key) {
    char p[MC_STORE_NAME_MAX + 2];
    if (!key || mc_store_norm_name(s, obj, p, NULL) != MC_OK || !mc_store_exists(s, p))
        return false;
    htri_t e = H5Aexists_by_name(s->file, p, key, H5P_DEFAULT);
    H5Eclear2(H5E_DEFAULT);
    return e > 0;
}

/* Opens attribute key on obj and checks it is a scalar (or one element) of class cls (or
 * class alt when alt >= 0). Returns the attribute and its type (both to be closed). */
static mc_status attr_open(mc_store *s, const char *obj, const char *key, H5T_class_t cls, int alt,
                           hid_t *a_out, hid_t *t_out, mc_error *err) {
    char p[MC_STORE_NAME_MAX + 2];
    *a_out = *t_out = H5I_INVALID_HID;
    MC_TRY(mc_store_norm_name(s, obj, p, err));
    if (!mc_store_has_attr(s, p, key))
        return MC_FAIL(err, MC_ERR_FORMAT, "store '%s': '%s' has no attribute '%s'", s->path, p,
                       key ? key : "?");
    hid_t a = H5Aopen_by_name(s->file, p, key, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0)
        return MC_H5FAIL(err, "store '%s': cannot open attribute '%s' on '%s'", s->path, key, p);
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    mc_status st = MC_OK;
    H5T_class_t c = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    if (t < 0 || sp < 0)
        st = MC_H5FAIL(err, "store '%s': attribute '%s' on '%s': unreadable", s->path, key, p);
    else if (c != cls && (alt < 0 || (int)c != alt))
        st = MC_FAIL(err, MC_ERR_FORMAT,
                     "store '%s': attribute '%s' on '%s' has the wrong type (%s expected)", s->path,
                     key, p,
                     cls == H5T_STRING    ? "string"
                     : cls == H5T_INTEGER ? "integer"
                                          : "number");
    else if (n != 1)
        st = MC_FAIL(err, MC_ERR_FORMAT,
                     "store '%s': attribute '%s' on '%s' has %lld elements, want 1", s->path, key,
                     p, (long long)n);
    if (sp >= 0) H5Sclose(sp);
    if (st != MC_OK) {
        if (t >= 0) H5Tclose(t);
        H5Aclose(a);
        return st;
    }
    *a_out = a;
    *t_out = t;
    return MC_OK;
}

mc_status mc_store_get_attr_str(mc_store *s, const char *obj, const char *key, char **out,
                                mc_error *err) {
    *out = NULL;
    hid_t a, t;
    MC_TRY(attr_open(s, obj, key, H5T_STRING, -1, &a, &t, err));
    mc_status st = MC_OK;
    htri_t var = H5Tis_variable_str(t);
    hid_t mt = var > 0 ? vlen_utf8() : H5Tcopy(H5T_C_S1);
    if (var > 0) {
        char *v = NULL;
        if (mt < 0 || H5Aread(a, mt, &v) < 0)
            st = MC_H5FAIL(err, "store '%s': cannot read attribute '%s'", s->path, key);
        else if (!v || strnlen(v, MC_STORE_ATTR_STR_MAX) >= MC_STORE_ATTR_STR_MAX)
            st = MC_FAIL(err, MC_ERR_FORMAT, "store '%s': attribute '%s' is NULL or over %zu bytes",
                         s->path, key, MC_STORE_ATTR_STR_MAX);
        else if (!(*out = mc_strdup(v)))
            st = MC_FAIL(err, MC_ERR_NOMEM, "store '%s': out of memory reading '%s'", s->path, key);
        if (v) H5free_memory(v);
    } else {
        size_t n = H5Tget_size(t);
        char *buf = n && n < MC_STORE_ATTR_STR_MAX ? malloc(n + 1) : NULL;
        if (!buf)
            st = MC_FAIL(err, MC_ERR_FORMAT, "store '%s': attribute '%s' has size %zu", s->path,
                         key, n);
        else if (mt < 0 || H5Tset_size(mt, n) < 0 || H5Aread(a, mt, buf) < 0)
            st = MC_H5FAIL(err, "store '%s': cannot read attribute '%s'", s->path, key);
        if (st == MC_OK) {
            buf[n] = '\0';
            *out = buf;
        } else
            free(buf);
    }
    if (mt >= 0) H5Tclose(mt);
    H5Tclose(t);
    H5Aclose(a);
    return st;
}

mc_status mc_store_get_attr_i64(mc_store *s, const char *obj, const char *key, int64_t *out,
                                mc_error *err) {
    hid_t a, t;
    MC_TRY(attr_open(s, obj, key, H5T_INTEGER, -1, &a, &t, err));
    mc_status st = MC_OK;
    if (H5Aread(a, H5T_NATIVE_INT64, out) < 0)
        st = MC_H5FAIL(err, "store '%s': cannot read attribute '%s'", s->path, key);
    H5Tclose(t);
    H5Aclose(a);
    return st;
}

mc_status mc_store_get_attr_f64(mc_store *s, const char *obj, const char *key, double *out,
                                mc_error *err) {
    hid_t a, t;
    MC_TRY(attr_open(s, obj, key, H5T_FLOAT, H5T_INTEGER, &a, &t, err));
    mc_status st = MC_OK;
    if (H5Aread(a, H5T_NATIVE_DOUBLE, out) < 0)
        st = MC_H5FAIL(err, "store '%s': cannot read attribute '%s'", s->path, key);
    H5Tclose(t);
    H5Aclose(a);
    return st;
}

/* --- provenance ----------------------------------------------------------------------------- */

mc_status mc_store_write_provenance(mc_store *s, const char *obj, const mc_store_provenance *p,
                                    mc_error *err) {
    char host[256] = "unknown", when[32] = "unknown";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    time_t t = time(NULL);
    struct tm tm;
    if (gmtime_r(&t, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    /* Every rank runs the same sequence of collective setters; values are rank 0's. */
    int has_seed = p && p->has_seed;
    MPI_Bcast(&has_seed, 1, MPI_INT, 0, s->comm.comm);
    const struct {
        const char *key, *value;
    } strs[] = {
        {"stage", p ? p->stage : NULL},
        {"config_hash", p ? p->config_hash : NULL},
        {"model", p ? p->model : NULL},
        {"dataset", p ? p->dataset : NULL},
        {"code_version", MICLIP_VERSION_STRING},
        {"build_info", MICLIP_BUILD_INFO},
        {"created_utc", when},
        {"host", host},
        {"slurm_job_id", getenv("SLURM_JOB_ID")},
        {"slurm_array_job_id", getenv("SLURM_ARRAY_JOB_ID")},
        {"slurm_array_task_id", getenv("SLURM_ARRAY_TASK_ID")},
        {"slurm_restart_count", getenv("SLURM_RESTART_COUNT")}, /* unset on a job's first run */
    };
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        int present = strs[i].value != NULL;
        MPI_Bcast(&present, 1, MPI_INT, 0, s->comm.comm);
        if (present) MC_TRY(mc_store_set_attr_str(s, obj, strs[i].key, strs[i].value, err));
    }
    if (has_seed) MC_TRY(mc_store_set_attr_i64(s, obj, "seed", p ? p->seed : 0, err));
    return mc_store_set_attr_i64(s, obj, "mpi_ranks", s->comm.size, err);
}

/* --- completion records --------------------------------------------------------------------- */

static mc_status done_name(const mc_store *s, const char *group, char *buf, mc_error *err) {
    char g[MC_STORE_NAME_MAX + 2];
    MC_TRY(mc_store_norm_name(s, group, g, err));
    if (!mc_snprintf(buf, MC_STORE_NAME_MAX + 2, "%s%s" MC_STORE_DONE_NAME, g,
                     strcmp(g, "/") ? "/" : ""))
        return MC_FAIL(err, MC_ERR_ARG, "store '%s': group name too long: %s", s->path, g);
    return MC_OK;
}

/* Local: the number of units recorded in an existing _done dataset. */
static mc_status done_units(mc_store *s, const char *dn, int64_t *n_units, mc_error *err) {
    mc_store_dataset_info info;
    MC_TRY(mc_store_dataset_info_get(s, dn, &info, err));
    if (info.dtype != MC_DTYPE_U8 || info.ndim != 1)
        return MC_FAIL(err, MC_ERR_FORMAT, "store '%s': '%s' is not a completion record (U8, 1-D)",
                       s->path, dn);
    *n_units = info.shape[0];
    return MC_OK;
}

mc_status mc_store_units_init(mc_store *s, const char *group, int64_t n_units, mc_error *err) {
    char dn[MC_STORE_NAME_MAX + 2];
    mc_status st = done_name(s, group, dn, err);
    if (st == MC_OK && n_units < 1)
        st = MC_FAIL(err, MC_ERR_ARG, "store '%s': '%s': %lld units (>= 1 needed)", s->path, dn,
                     (long long)n_units);
    MC_TRY(mc_store_agree(s, st, err));
    if (mc_store_exists(s, dn)) {
        int64_t have = 0;
        st = done_units(s, dn, &have, err);
        if (st == MC_OK && have != n_units)
            st = MC_FAIL(err, MC_ERR_SHAPE,
                         "store '%s': '%s' records %lld units, this run has %lld (was the store "
                         "made by a different config?)",
                         s->path, dn, (long long)have, (long long)n_units);
        return mc_store_agree(s, st, err);
    }
    int64_t shape[1] = {n_units};
    MC_TRY(mc_store_create_dataset(s, dn, MC_DTYPE_U8, 1, shape, 0, err));
    /* The dataset has no fill value: write the zeros explicitly (rank 0, the others empty). */
    uint8_t *zeros = s->comm.rank == 0 ? calloc((size_t)n_units, 1) : NULL;
    st = s->comm.rank == 0 && !zeros
             ? MC_FAIL(err, MC_ERR_NOMEM, "store '%s': out of memory for '%s'", s->path, dn)
             : MC_OK;
    MC_TRY(mc_store_agree(s, st, err));
    st = mc_store_write_rows(s, dn, MC_DTYPE_U8, 0, s->comm.rank == 0 ? n_units : 0, zeros, err);
    free(zeros);
    MC_TRY(st);
    MC_TRY(mc_store_flush(s, err));
    mc_store_hook(s, "units_init", dn);
    return MC_OK;
}

mc_status mc_store_units_read(mc_store *s, const char *group, int64_t n_units, uint8_t *done,
                              int64_t *n_done, mc_error *err) {
    char dn[MC_STORE_NAME_MAX + 2];
    int64_t have = 0;
    mc_status st = done_name(s, group, dn, err);
    if (st == MC_OK) st = done_units(s, dn, &have, err);
    if (st == MC_OK && have != n_units)
        st = MC_FAIL(err, MC_ERR_SHAPE, "store '%s': '%s' records %lld units, caller expects %lld",
                     s->path, dn, (long long)have, (long long)n_units);
    MC_TRY(mc_store_agree(s, st, err));
    MC_TRY(mc_store_read_rows(s, dn, MC_DTYPE_U8, 0, n_units, done, err));
    int64_t k = 0;
    for (int64_t i = 0; i < n_units; i++) {
        if (done[i] > 1)
            st = MC_FAIL(err, MC_ERR_FORMAT, "store '%s': '%s'[%lld] = %u (0 or 1 expected)",
                         s->path, dn, (long long)i, done[i]);
        k += done[i] == 1;
    }
    if (n_done) *n_done = k;
    return st; /* every rank read the same bytes, so the verdict is the same everywhere */
}

mc_status mc_store_units_mark(mc_store *s, const char *group, const int64_t *units, int64_t n,
                              mc_error *err) {
    char dn[MC_STORE_NAME_MAX + 2];
    int64_t n_units = 0;
    mc_status st = done_name(s, group, dn, err);
    if (st == MC_OK) st = done_units(s, dn, &n_units, err);
    if (st == MC_OK && (n < 0 || n > INT32_MAX || (n > 0 && !units)))
        st = MC_FAIL(err, MC_ERR_ARG, "store '%s': '%s': bad unit list (%lld entries)", s->path, dn,
                     (long long)n);
    for (int64_t i = 0; st == MC_OK && i < n; i++)
        if (units[i] < 0 || units[i] >= n_units)
            st = MC_FAIL(err, MC_ERR_ARG, "store '%s': '%s': unit %lld outside [0, %lld)", s->path,
                         dn, (long long)units[i], (long long)n_units);
    MC_TRY(mc_store_agree(s, st, err));

    /* Gather every rank's units so the marks can be written as one block. */
    int mine = (int)n, *counts = NULL, *displs = NULL, total = 0;
    int64_t *all = NULL;
    uint8_t *done = NULL;
    counts = mc_calloc_array((size_t)s->comm.size, sizeof *counts);
    displs = mc_calloc_array((size_t)s->comm.size, sizeof *displs);
    if (!counts || !displs) st = MC_FAIL(err, MC_ERR_NOMEM, "store '%s': out of memory", s->path);
    st = mc_store_agree(s, st, err);
    int64_t sum = 0;
    if (st == MC_OK) {
        MPI_Allgather(&mine, 1, MPI_INT, counts, 1, MPI_INT, s->comm.comm);
        for (int r = 0; r < s->comm.size; r++) {
            displs[r] = sum > INT32_MAX ? 0 : (int)sum;
            sum += counts[r];
        }
        if (sum > INT32_MAX)
            st = MC_FAIL(err, MC_ERR_ARG, "store '%s': '%s': %lld unit marks in one call", s->path,
                         dn, (long long)sum);
    }
    total = (int)sum;
    if (st == MC_OK && !(all = mc_alloc_array((size_t)total + 1, sizeof *all)))
        st = MC_FAIL(err, MC_ERR_NOMEM, "store '%s': out of memory", s->path);
    if (st == MC_OK && !(done = malloc((size_t)n_units)))
        st = MC_FAIL(err, MC_ERR_NOMEM, "store '%s': out of memory", s->path);
    st = mc_store_agree(s, st, err);
    if (st == MC_OK) {
        MPI_Allgatherv(units, mine, MPI_INT64_T, all, counts, displs, MPI_INT64_T, s->comm.comm);
        /* 1. the units' data is durable before any mark says so */
        st = mc_store_flush(s, err);
    }
    if (st == MC_OK) st = mc_store_units_read(s, group, n_units, done, NULL, err);
    if (st == MC_OK) {
        for (int i = 0; i < total; i++) done[all[i]] = 1;
        /* 2. the marks (rank 0 writes the whole record; the others take part empty) */
        st = mc_store_write_rows(s, dn, MC_DTYPE_U8, 0, s->comm.rank == 0 ? n_units : 0, done, err);
    }
    /* 3. the marks are durable */
    if (st == MC_OK) st = mc_store_flush(s, err);
    free(counts);
    free(displs);
    free(all);
    free(done);
    if (st == MC_OK) mc_store_hook(s, "units_mark", dn);
    return st;
}

mc_status mc_store_set_complete(mc_store *s, const char *group, mc_error *err) {
    MC_TRY(mc_store_create_group(s, group, err));
    /* The checksum of every dataset under the group, before the mark that makes it final. */
    MC_TRY(mc_store_seal(s, group, err));
    /* The run that finished the work: after a Slurm requeue it differs from the run that
     * created the store (whose ids the provenance holds). Values are rank 0's. */
    time_t t = time(NULL);
    struct tm tm;
    char when[32] = "unknown";
    if (gmtime_r(&t, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    const struct {
        const char *key, *value;
    } fin[] = {
        {"completed_utc", when},
        {"completed_slurm_job_id", getenv("SLURM_JOB_ID")},
        {"completed_slurm_restart_count", getenv("SLURM_RESTART_COUNT")},
    };
    for (size_t i = 0; i < sizeof fin / sizeof fin[0]; i++) {
        int present = fin[i].value != NULL;
        MPI_Bcast(&present, 1, MPI_INT, 0, s->comm.comm);
        if (present) MC_TRY(mc_store_set_attr_str(s, group, fin[i].key, fin[i].value, err));
    }
    /* The manifest of what the complete store holds: a later open that finds one of these
     * datasets missing reports the store as damaged instead of trusting "complete". */
    MC_TRY(mc_store_record_layout(s, err));
    MC_TRY(mc_store_set_attr_i64(s, group, MC_STORE_COMPLETE_ATTR, 1, err));
    MC_TRY(mc_store_flush(s, err));
    mc_store_hook(s, "set_complete", group);
    return MC_OK;
}

bool mc_store_is_complete(mc_store *s, const char *group) {
    int64_t v = 0;
    if (!mc_store_has_attr(s, group, MC_STORE_COMPLETE_ATTR)) return false;
    return mc_store_get_attr_i64(s, group, MC_STORE_COMPLETE_ATTR, &v, NULL) == MC_OK && v == 1;
}
