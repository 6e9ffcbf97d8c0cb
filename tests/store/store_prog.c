/* store_prog.c - the store's test driver, run under mpiexec at 1, 2 and 4 ranks.
 *
 *   store_prog api DIR                  API checks (round trips, errors, widening, rounds)
 *   store_prog write OUT N BATCH        a deterministic multi-dataset store, rows sharded over
 *                                       ranks and written in collective batches of BATCH rows
 *   store_prog units OUT U R [K PHASE]  U units of R rows each, flush+mark per unit, resuming
 *                                       from the marks; with K, the rank that owns unit K
 *                                       raises SIGKILL: PHASE "data" after writing its rows,
 *                                       "mark" after the marks are durable, "nometa" after
 *                                       creating the datasets, before any flush
 *   store_prog recover OUT U R          the same units through the resume protocol: probe,
 *                                       mc_store_resume (rebuilds an unusable store), layout
 *                                       created and marked only when created, "complete" on /;
 *                                       kill points come from MICLIP_TEST_KILL_AT_STORE_CALL
 *   store_prog hold PATH READY          opens PATH read-write, writes READY.<rank> (its pid),
 *                                       then sleeps until killed
 *   store_prog read PATH NAME native|f64 [rank0]
 *                                       reads dataset NAME whole on every rank (collective;
 *                                       f64 widens), or on rank 0 alone (independent); exit 0
 *                                       iff it succeeds (rank 0 prints the error)
 *   store_prog version                  prints MICLIP_VERSION_STRING (what provenance must hold)
 *   store_prog expect PATH read|write CODE [TEXT]
 *                                       opens PATH; exit 0 iff the status name is CODE (and
 *                                       the message contains TEXT)
 *
 * Values are functions of the global row and column only, so every rank count writes the same
 * bytes (tests/store/store_ref.py computes the same functions in numpy). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "miclip/comm.h"
#include "miclip/fsutil.h"
#include "miclip/miclip.h"
#include "miclip/store.h"
#include "miclip/tensor.h"
#include "test_util.h"

/* --- the deterministic content (mirrored in store_ref.py) ------------------------------- */

static float val_f32(int64_t row, int64_t col, int ds) {
    return (float)((row * 131 + col * 7 + ds * 1000) % 1009) / 7.0f - 50.0f;
}
static int64_t val_i64(int64_t row, int64_t col) { return row * 10000000000LL + col * 3 - 5; }
static int32_t val_i32(int64_t row, int64_t col) { return (int32_t)(-(row * 10 + col)); }
static uint8_t val_u8(int64_t row, int64_t col) { return (uint8_t)((row * 7 + col) % 256); }

typedef struct {
    const char *name;
    mc_dtype dtype;
    int ndim;
    int64_t shape[4]; /* shape[0] < 0: N rows */
    int64_t chunk_rows;
} ds_spec;

static const ds_spec g_specs[] = {
    {"extract/acts", MC_DTYPE_F32, 3, {-1, 3, 5}, 4},
    {"extract/acts16", MC_DTYPE_F16, 2, {-1, 7}, 0},
    {"extract/labels", MC_DTYPE_I64, 1, {-1}, 0},
    {"extract/pred", MC_DTYPE_I32, 2, {-1, 2}, 16},
    {"extract/mask", MC_DTYPE_U8, 4, {-1, 2, 2, 3}, 0},
    {"tiny", MC_DTYPE_U8, 2, {3, 2}, 0},   /* fewer rows than ranks at 4 */
    {"empty", MC_DTYPE_F32, 2, {0, 4}, 0}, /* no rows at all */
};
enum { N_SPECS = sizeof g_specs / sizeof g_specs[0] };

static int64_t row_elems(const ds_spec *d) {
    int64_t e = 1;
    for (int i = 1; i < d->ndim; i++) e *= d->shape[i];
    return e;
}

/* Fills rows [b, e) of dataset k into buf (dtype of the spec). */
static void fill_rows(int k, int64_t b, int64_t e, void *buf) {
    const ds_spec *d = &g_specs[k];
    int64_t re = row_elems(d);
    for (int64_t r = b; r < e; r++)
        for (int64_t c = 0; c < re; c++) {
            int64_t i = (r - b) * re + c;
            switch (d->dtype) {
            case MC_DTYPE_F32: ((float *)buf)[i] = val_f32(r, c, k); break;
            case MC_DTYPE_F16: ((uint16_t *)buf)[i] = mc_f32_to_f16(val_f32(r, c, k)); break;
            case MC_DTYPE_I64: ((int64_t *)buf)[i] = val_i64(r, c); break;
            case MC_DTYPE_I32: ((int32_t *)buf)[i] = val_i32(r, c); break;
            default: ((uint8_t *)buf)[i] = val_u8(r, c); break;
            }
        }
}

static void die(const mc_comm *c, mc_status st, const mc_error *err) {
    if (st == MC_OK) return;
    if (c->rank == 0) fprintf(stderr, "store_prog: error (%s): %s\n", mc_status_name(st), err->msg);
    mc_comm_finalize((mc_comm *)c);
    exit(1);
}

static mc_status create_all(mc_store *s, int64_t n, mc_error *err) {
    for (int k = 0; k < N_SPECS; k++) {
        int64_t shape[4];
        memcpy(shape, g_specs[k].shape, sizeof shape);
        if (shape[0] < 0) shape[0] = n;
        MC_TRY(mc_store_create_dataset(s, g_specs[k].name, g_specs[k].dtype, g_specs[k].ndim, shape,
                                       g_specs[k].chunk_rows, err));
    }
    return MC_OK;
}

static int64_t rows_of(int k, int64_t n) {
    return g_specs[k].shape[0] < 0 ? n : g_specs[k].shape[0];
}

/* Writes rows [b, e) of every dataset whose first dimension is the sample axis. */
static mc_status write_sample_rows(mc_store *s, int64_t b, int64_t e, mc_error *err) {
    for (int k = 0; k < N_SPECS; k++) {
        if (g_specs[k].shape[0] >= 0) continue;
        size_t bytes = (size_t)((e - b) * row_elems(&g_specs[k])) * mc_dtype_size(g_specs[k].dtype);
        void *buf = malloc(bytes ? bytes : 1);
        fill_rows(k, b, e, buf);
        mc_status st = mc_store_write_rows(s, g_specs[k].name, g_specs[k].dtype, b, e, buf, err);
        free(buf);
        MC_TRY(st);
    }
    return MC_OK;
}

/* Writes every fixed-size dataset with this rank's shard. */
static mc_status write_fixed(mc_store *s, const mc_comm *c, mc_error *err) {
    for (int k = 0; k < N_SPECS; k++) {
        if (g_specs[k].shape[0] < 0) continue;
        int64_t b, e;
        mc_shard_range(rows_of(k, 0), c->rank, c->size, &b, &e);
        void *buf = malloc(
            (size_t)((e - b) * row_elems(&g_specs[k])) * mc_dtype_size(g_specs[k].dtype) + 1);
        fill_rows(k, b, e, buf);
        mc_status st = mc_store_write_rows(s, g_specs[k].name, g_specs[k].dtype, b, e, buf, err);
        free(buf);
        MC_TRY(st);
    }
    return MC_OK;
}

static void provenance(mc_store *s, const mc_comm *c, const char *obj, const char *stage) {
    mc_error err = {0};
    mc_store_provenance p = {.stage = stage,
                             .config_hash = "cfg-0123abcd",
                             .model = "tiny-vit@sha256:feed",
                             .dataset = "world/train@n",
                             .seed = 17,
                             .has_seed = true};
    die(c, mc_store_write_provenance(s, obj, &p, &err), &err);
}

/* --- write --------------------------------------------------------------------------------- */

static int cmd_write(const mc_comm *c, const char *out, int64_t n, int64_t batch) {
    mc_error err = {0};
    mc_store *s = NULL;
    die(c, mc_store_create(c, out, MC_STORE_OVERWRITE, &s, &err), &err);
    die(c, create_all(s, n, &err), &err);
    provenance(s, c, "/", "test");
    die(c, mc_store_set_attr_str(s, "extract", "layer", "10", &err), &err);
    die(c, mc_store_set_attr_f64(s, "extract/acts", "scale", 0.125, &err), &err);
    die(c, mc_store_flush(s, &err), &err);
    int64_t b, e;
    mc_shard_range(n, c->rank, c->size, &b, &e);
    /* Batches: every rank takes part in as many calls as the busiest rank needs. */
    int64_t mine = (e - b + batch - 1) / batch, rounds = 0;
    MPI_Allreduce(&mine, &rounds, 1, MPI_INT64_T, MPI_MAX, c->comm);
    for (int64_t r = 0; r < rounds; r++) {
        int64_t rb = b + r * batch < e ? b + r * batch : e;
        int64_t re = rb + batch < e ? rb + batch : e;
        die(c, write_sample_rows(s, rb, re, &err), &err);
    }
    die(c, write_fixed(s, c, &err), &err);
    die(c, mc_store_set_complete(s, "extract", &err), &err);
    die(c, mc_store_close(&s, &err), &err);
    if (c->rank == 0) printf("wrote %s: %lld rows on %d ranks\n", out, (long long)n, c->size);
    return 0;
}

/* --- units: flush + mark per unit, kill and resume ------------------------------------------ */

static int cmd_units(const mc_comm *c, const char *out, int64_t n_units, int64_t rows_per_unit,
                     int64_t kill_unit, const char *phase) {
    mc_error err = {0};
    mc_store *s = NULL;
    int64_t n = n_units * rows_per_unit;
    die(c, mc_store_open_or_create(c, out, &s, NULL, &err), &err);
    if (mc_store_is_complete(s, "extract")) {
        if (c->rank == 0) printf("stage complete, nothing to do\n");
        die(c, mc_store_close(&s, &err), &err);
        return 0;
    }
    if (c->rank == 0)
        printf("datasets present at open: %s\n", mc_store_exists(s, "extract/acts") ? "yes" : "no");
    die(c, create_all(s, n, &err), &err);
    if (kill_unit == -1 && !strcmp(phase, "nometa") && c->rank == c->size - 1) raise(SIGKILL);
    die(c, mc_store_units_init(s, "extract", n_units, &err), &err);
    /* provenance goes in once, with the units' record (a run killed earlier may not have it) */
    if (!mc_store_has_attr(s, "/", "code_version")) provenance(s, c, "/", "units");
    die(c, write_fixed(s, c, &err), &err);
    uint8_t *done = malloc((size_t)n_units);
    int64_t n_done = 0;
    die(c, mc_store_units_read(s, "extract", n_units, done, &n_done, &err), &err);
    if (c->rank == 0)
        printf("already done: %lld of %lld units\n", (long long)n_done, (long long)n_units);
    int64_t *pending = malloc((size_t)n_units * sizeof *pending), n_pending = 0;
    for (int64_t u = 0; u < n_units; u++)
        if (!done[u]) pending[n_pending++] = u;
    /* "external": the script SIGKILLs every rank from outside once a step is reported; the
     * pauses put the kill at an unknown point between writing rows and marking them. */
    bool external = !strcmp(phase, "external");
    if (external) {
        printf("pid %d %ld\n", c->rank, (long)getpid());
        fflush(stdout);
    }
    /* Step k: rank r computes pending unit k*size + r, writing that unit's rows. */
    int64_t computed = 0;
    for (int64_t k = 0; k * c->size < n_pending; k++) {
        int64_t idx = k * c->size + c->rank;
        int64_t u = idx < n_pending ? pending[idx] : -1;
        int64_t b = u >= 0 ? u * rows_per_unit : 0, e = u >= 0 ? b + rows_per_unit : 0;
        die(c, write_sample_rows(s, b, e, &err), &err);
        if (u == kill_unit && !strcmp(phase, "data")) raise(SIGKILL);
        if (external) usleep(40000);
        die(c, mc_store_units_mark(s, "extract", &u, u >= 0 ? 1 : 0, &err), &err);
        computed += u >= 0;
        if (external && c->rank == 0) {
            printf("marked step %lld\n", (long long)k);
            fflush(stdout);
        }
        if (external) usleep(40000);
        /* the killing rank waits until every rank's marks of this step are durable */
        int64_t killer = u == kill_unit && !strcmp(phase, "mark");
        if (killer) raise(SIGKILL);
    }
    long long all_computed = 0, mine = computed;
    MPI_Reduce(&mine, &all_computed, 1, MPI_LONG_LONG, MPI_SUM, 0, c->comm);
    if (c->rank == 0) printf("computed: %lld units\n", all_computed);
    die(c, mc_store_units_read(s, "extract", n_units, done, &n_done, &err), &err);
    CHECK(n_done == n_units);
    die(c, mc_store_set_complete(s, "extract", &err), &err);
    die(c, mc_store_close(&s, &err), &err);
    free(done);
    free(pending);
    return mc_test_failures ? 1 : 0;
}

/* --- recover: the resume protocol (probe, resume, mark_layout) ------------------------------ */

static int cmd_recover(const mc_comm *c, const char *out, int64_t n_units, int64_t rows_per_unit) {
    static const char *const names[] = {"absent", "complete", "partial", "rebuild"};
    mc_error err = {0};
    mc_store *s = NULL;
    int64_t n = n_units * rows_per_unit;
    mc_store_state state;
    die(c, mc_store_probe(c, out, &state, &err), &err);
    if (c->rank == 0) printf("state at start: %s\n", names[state]);
    if (state == MC_STORE_COMPLETE) {
        if (c->rank == 0) printf("stage complete, nothing to do\n");
        return 0;
    }
    bool created = false;
    die(c, mc_store_resume(c, out, &s, &created, &err), &err);
    if (c->rank == 0) printf("%s\n", created ? "created" : "reopened");
    if (created) {
        die(c, create_all(s, n, &err), &err);
        die(c, mc_store_units_init(s, "extract", n_units, &err), &err);
        provenance(s, c, "/", "units");
        die(c, write_fixed(s, c, &err), &err);
        die(c, mc_store_mark_layout(s, &err), &err);
    } else {
        die(c, mc_store_units_init(s, "extract", n_units, &err), &err);
    }
    uint8_t *done = malloc((size_t)n_units);
    int64_t *pending = malloc((size_t)n_units * sizeof *pending), n_done = 0, n_pending = 0;
    die(c, mc_store_units_read(s, "extract", n_units, done, &n_done, &err), &err);
    if (c->rank == 0)
        printf("already done: %lld of %lld units\n", (long long)n_done, (long long)n_units);
    for (int64_t u = 0; u < n_units; u++)
        if (!done[u]) pending[n_pending++] = u;
    for (int64_t k = 0; k * c->size < n_pending; k++) {
        int64_t idx = k * c->size + c->rank;
        int64_t u = idx < n_pending ? pending[idx] : -1;
        int64_t b = u >= 0 ? u * rows_per_unit : 0, e = u >= 0 ? b + rows_per_unit : 0;
        die(c, write_sample_rows(s, b, e, &err), &err);
        die(c, mc_store_units_mark(s, "extract", &u, u >= 0 ? 1 : 0, &err), &err);
    }
    die(c, mc_store_units_read(s, "extract", n_units, done, &n_done, &err), &err);
    CHECK(n_done == n_units);
    die(c, mc_store_set_complete(s, "/", &err), &err);
    die(c, mc_store_close(&s, &err), &err);
    free(done);
    free(pending);
    return mc_test_failures ? 1 : 0;
}

/* --- lock holder and open expectations ------------------------------------------------------ */

static int cmd_hold(const mc_comm *c, const char *path, const char *ready) {
    mc_error err = {0};
    mc_store *s = NULL;
    die(c, mc_store_open(c, path, MC_STORE_WRITE, &s, &err), &err);
    char rp[4096], pid[32];
    snprintf(rp, sizeof rp, "%s.%d", ready, c->rank);
    snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    die(c, mc_write_file_atomic(rp, pid, strlen(pid), &err), &err);
    for (int i = 0; i < 600; i++) usleep(100000); /* killed long before */
    die(c, mc_store_close(&s, &err), &err);
    return 0;
}

static int cmd_expect(const mc_comm *c, const char *path, const char *mode, const char *code,
                      const char *text) {
    mc_error err = {0};
    mc_store *s = NULL;
    mc_status st;
    if (!strcmp(mode, "peek")) { /* the skip-if-complete check of a stage */
        bool complete = false;
        st = mc_store_peek_complete(c, path, &complete, &err);
    } else {
        st = mc_store_open(c, path, !strcmp(mode, "write") ? MC_STORE_WRITE : MC_STORE_READ, &s,
                           &err);
    }
    bool ok = !strcmp(mc_status_name(st), code) && (!text || strstr(err.msg, text));
    /* every rank must have the same verdict and message */
    int mine = ok, all = 0;
    MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, c->comm);
    if (c->rank == 0)
        printf("open %s (%s): %s%s%s -> %s\n", path, mode, mc_status_name(st), st ? ": " : "",
               st ? err.msg : "", all ? "as expected" : "UNEXPECTED");
    if (st == MC_OK) mc_store_close(&s, &err);
    return all ? 0 : 1;
}

/* --- read: a downstream reader of a whole dataset -------------------------------------------- */

static int cmd_read(const mc_comm *c, const char *path, const char *name, const char *how,
                    bool rank0) {
    mc_error err = {0};
    mc_store *s = NULL;
    mc_status st = mc_store_open(c, path, MC_STORE_READ, &s, &err);
    mc_store_dataset_info info = {0};
    if (st == MC_OK) st = mc_store_dataset_info_get(s, name, &info, &err);
    st = mc_comm_agree(c, st, &err);
    void *buf = NULL;
    if (st == MC_OK) {
        mc_dtype dt = !strcmp(how, "f64") ? MC_DTYPE_F64 : info.dtype;
        size_t n = 1;
        for (int i = 0; i < info.ndim; i++) n *= (size_t)info.shape[i];
        buf = malloc(n * mc_dtype_size(dt) + 1);
        if (!rank0) {
            st = mc_store_read_rows(s, name, dt, 0, info.shape[0], buf, &err);
        } else {
            int64_t start[MC_MAX_DIMS] = {0};
            st = c->rank == 0
                     ? mc_store_read_slice(s, name, dt, start, info.shape, buf, false, &err)
                     : MC_OK;
            st = mc_comm_agree(c, st, &err);
        }
    }
    if (c->rank == 0)
        printf("read %s %s: %s%s%s\n", path, name, mc_status_name(st), st ? ": " : "",
               st ? err.msg : "");
    free(buf);
    if (s) mc_store_close(&s, NULL);
    return st == MC_OK ? 0 : 1;
}

/* --- api ------------------------------------------------------------------------------------ */

static bool contains(const mc_error *e, const char *s) { return strstr(e->msg, s) != NULL; }

static int cmd_api(const mc_comm *c, const char *dir) {
    char path[4096], bad[4096], trunc[4096];
    snprintf(path, sizeof path, "%s/api_np%d.h5", dir, c->size);
    snprintf(bad, sizeof bad, "%s/api_np%d.txt", dir, c->size);
    snprintf(trunc, sizeof trunc, "%s/api_np%d_trunc.h5", dir, c->size);
    mc_error err = {0};
    mc_store *s = NULL;
    if (c->rank == 0) {
        unlink(path);
        unlink(bad);
    }
    MPI_Barrier(c->comm);

    /* open of a missing file: every rank gets the error */
    CHECK(mc_store_open(c, path, MC_STORE_READ, &s, &err) == MC_ERR_IO && contains(&err, path));
    CHECK(s == NULL);

    CHECK(mc_store_create(c, path, 0, &s, &err) == MC_OK);
    CHECK(mc_store_writable(s) && !strcmp(mc_store_path(s), path));
    /* a second create refuses an existing file (the lock is ours already, so LOCKED first) */
    mc_store *s2 = NULL;
    mc_status st = mc_store_create(c, path, 0, &s2, &err);
    CHECK_MSG(st == MC_ERR_LOCKED && contains(&err, path), "%s", err.msg);

    int64_t sh[3] = {10, 3, 4};
    CHECK(mc_store_create_dataset(s, "g1/g2/x", MC_DTYPE_F32, 3, sh, 3, &err) == MC_OK);
    CHECK(mc_store_create_dataset(s, "/g1/g2/x", MC_DTYPE_F32, 3, sh, 3, &err) ==
          MC_OK); /* idempotent */
    int64_t sh_other[3] = {11, 3, 4};
    st = mc_store_create_dataset(s, "g1/g2/x", MC_DTYPE_F32, 3, sh_other, 0, &err);
    CHECK_MSG(st == MC_ERR_SHAPE && contains(&err, "/g1/g2/x") && contains(&err, path), "%s",
              err.msg);
    st = mc_store_create_dataset(s, "bf", MC_DTYPE_BF16, 1, sh, 0, &err);
    CHECK_MSG(st == MC_ERR_UNSUPPORTED && contains(&err, "/bf"), "%s", err.msg);
    st = mc_store_create_dataset(s, "neg", MC_DTYPE_F32, 1, (int64_t[]){-3}, 0, &err);
    CHECK_MSG(st == MC_ERR_ARG, "%s", err.msg);
    CHECK(mc_store_exists(s, "g1") && mc_store_exists(s, "/g1/g2/x") &&
          !mc_store_exists(s, "g1/nope/x"));

    /* a small io limit splits transfers into many rounds; rows differ per rank */
    mc_store_set_io_limit(s, 3 * 12 * sizeof(float) + 5);
    int64_t b, e;
    mc_shard_range(10, c->rank, c->size, &b, &e);
    float *buf = calloc(10 * 12, sizeof *buf), *back = calloc(10 * 12, sizeof *back);
    for (int64_t i = 0; i < (e - b) * 12; i++) buf[i] = (float)(b * 12 + i) * 0.5f;
    CHECK(mc_store_write_rows(s, "g1/g2/x", MC_DTYPE_F32, b, e, buf, &err) == MC_OK);
    CHECK(mc_store_flush(s, &err) == MC_OK);
    CHECK(mc_store_read_rows(s, "g1/g2/x", MC_DTYPE_F32, 0, 10, back, &err) == MC_OK);
    int bad_vals = 0;
    for (int i = 0; i < 120; i++) bad_vals += back[i] != (float)i * 0.5f;
    CHECK_MSG(bad_vals == 0, "%d wrong values after a rounds write", bad_vals);

    /* a slice read, collective and independent; widening F32 -> F64 */
    int64_t st3[3] = {2, 1, 1}, ct3[3] = {3, 2, 2};
    double sl[12];
    CHECK(mc_store_read_slice(s, "g1/g2/x", MC_DTYPE_F64, st3, ct3, sl, true, &err) == MC_OK);
    bad_vals = 0;
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++)
            for (int k = 0; k < 2; k++)
                bad_vals += sl[(i * 2 + j) * 2 + k] != ((2 + i) * 12 + (1 + j) * 4 + (1 + k)) * 0.5;
    CHECK(bad_vals == 0);
    if (c->rank == c->size - 1) {
        float one = 0;
        int64_t p0[3] = {9, 2, 3}, p1[3] = {1, 1, 1};
        CHECK(mc_store_read_slice(s, "g1/g2/x", MC_DTYPE_F32, p0, p1, &one, false, &err) == MC_OK);
        CHECK(one == 119 * 0.5f);
    }
    /* errors name the store and the dataset, and every rank sees the same one */
    st = mc_store_write_rows(s, "g1/g2/x", MC_DTYPE_F32, 8, c->rank == 0 ? 11 : 8, buf, &err);
    CHECK_MSG(st == MC_ERR_SHAPE && contains(&err, "/g1/g2/x") && contains(&err, path), "%s",
              err.msg);
    st = mc_store_write_rows(s, "g1/g2/x", MC_DTYPE_F64, 0, 0, buf, &err);
    CHECK_MSG(st == MC_ERR_SHAPE && contains(&err, "F32"), "%s", err.msg);
    st = mc_store_read_rows(s, "g1/g2/x", MC_DTYPE_F16, 0, 0, back, &err); /* narrowing */
    CHECK(st == MC_ERR_SHAPE);
    st = mc_store_read_rows(s, "g1/missing", MC_DTYPE_F32, 0, 0, back, &err);
    CHECK_MSG(st == MC_ERR_SHAPE && contains(&err, "/g1/missing"), "%s", err.msg);

    /* F16 round trip and F16 -> F32 widening */
    CHECK(mc_store_create_dataset(s, "h", MC_DTYPE_F16, 1, (int64_t[]){4}, 0, &err) == MC_OK);
    uint16_t h[4] = {mc_f32_to_f16(1.5f), mc_f32_to_f16(-2.25f), mc_f32_to_f16(65504.f),
                     mc_f32_to_f16(1e-7f)};
    CHECK(mc_store_write_rows(s, "h", MC_DTYPE_F16, 0, c->rank == 0 ? 4 : 0, h, &err) == MC_OK);
    float hf[4];
    CHECK(mc_store_read_rows(s, "h", MC_DTYPE_F32, 0, 4, hf, &err) == MC_OK);
    for (int i = 0; i < 4; i++) CHECK(hf[i] == mc_f16_to_f32(h[i]));
    mc_store_dataset_info info;
    CHECK(mc_store_dataset_info_get(s, "h", &info, &err) == MC_OK && info.dtype == MC_DTYPE_F16 &&
          info.ndim == 1 && info.shape[0] == 4);
    CHECK(mc_store_dataset_info_get(s, "g1/g2/x", &info, &err) == MC_OK && info.ndim == 3 &&
          info.shape[2] == 4);

    /* attributes: rank 0's value wins; replace; types; missing */
    char rv[32];
    snprintf(rv, sizeof rv, "rank%d", c->rank);
    CHECK(mc_store_set_attr_str(s, "/", "who", rv, &err) == MC_OK);
    CHECK(mc_store_set_attr_str(s, "g1", "note", "ünïcode ok", &err) == MC_OK);
    CHECK(mc_store_set_attr_i64(s, "g1/g2/x", "n", 1234567890123LL, &err) == MC_OK);
    CHECK(mc_store_set_attr_i64(s, "g1/g2/x", "n", -7, &err) == MC_OK);
    CHECK(mc_store_set_attr_f64(s, "g1/g2/x", "lr", 1e-3, &err) == MC_OK);
    st = mc_store_set_attr_str(s, "nowhere", "k", "v", &err);
    CHECK_MSG(st == MC_ERR_ARG && contains(&err, "/nowhere"), "%s", err.msg);
    char *sv = NULL;
    CHECK(mc_store_get_attr_str(s, "/", "who", &sv, &err) == MC_OK && sv && !strcmp(sv, "rank0"));
    free(sv);
    sv = NULL;
    CHECK(mc_store_get_attr_str(s, "/g1", "note", &sv, &err) == MC_OK && sv &&
          !strcmp(sv, "ünïcode ok"));
    free(sv);
    int64_t iv = 0;
    double dv = 0;
    CHECK(mc_store_get_attr_i64(s, "g1/g2/x", "n", &iv, &err) == MC_OK && iv == -7);
    CHECK(mc_store_get_attr_f64(s, "g1/g2/x", "lr", &dv, &err) == MC_OK && dv == 1e-3);
    CHECK(mc_store_get_attr_f64(s, "g1/g2/x", "n", &dv, &err) == MC_OK && dv == -7.0);
    st = mc_store_get_attr_i64(s, "g1/g2/x", "lr", &iv, &err);
    CHECK_MSG(st == MC_ERR_FORMAT && contains(&err, "lr"), "%s", err.msg);
    st = mc_store_get_attr_str(s, "g1", "absent", &sv, &err);
    CHECK_MSG(st == MC_ERR_FORMAT && contains(&err, "absent") && contains(&err, "/g1"), "%s",
              err.msg);
    CHECK(mc_store_has_attr(s, "/", MC_STORE_ID_ATTR) && !mc_store_has_attr(s, "/zz", "who"));

    /* completion records */
    CHECK(mc_store_units_init(s, "stage", 7, &err) == MC_OK);
    CHECK(mc_store_units_init(s, "stage", 7, &err) == MC_OK);
    st = mc_store_units_init(s, "stage", 8, &err);
    CHECK_MSG(st == MC_ERR_SHAPE && contains(&err, "/stage/_done"), "%s", err.msg);
    int64_t mine[2] = {c->rank % 7, (c->rank + 3) % 7};
    CHECK(mc_store_units_mark(s, "stage", mine, 2, &err) == MC_OK);
    uint8_t done[7];
    int64_t nd = 0;
    CHECK(mc_store_units_read(s, "stage", 7, done, &nd, &err) == MC_OK);
    int expect = 0;
    for (int u = 0; u < 7; u++) {
        bool want = false;
        for (int r = 0; r < c->size; r++) want = want || u == r % 7 || u == (r + 3) % 7;
        expect += want;
        CHECK(done[u] == want);
    }
    CHECK(nd == expect);
    int64_t oob = 7;
    st = mc_store_units_mark(s, "stage", &oob, c->rank == 0 ? 1 : 0, &err);
    CHECK_MSG(st == MC_ERR_ARG && contains(&err, "unit 7"), "%s", err.msg);
    CHECK(!mc_store_is_complete(s, "stage"));
    CHECK(mc_store_set_complete(s, "stage", &err) == MC_OK);
    CHECK(mc_store_is_complete(s, "stage"));
    /* issue 16: completion records a checksum on every dataset of the group, and seals it */
    CHECK(mc_store_has_attr(s, "stage/_done", MC_STORE_SUM_ATTR));
    CHECK(!mc_store_has_attr(s, "g1/g2/x", MC_STORE_SUM_ATTR));
    st = mc_store_write_rows(s, "stage/_done", MC_DTYPE_U8, 0, 0, done, &err);
    CHECK_MSG(st == MC_ERR_ARG && contains(&err, "completed stage"), "%s", err.msg);
    CHECK(mc_store_units_read(s, "stage", 7, done, &nd, &err) ==
          MC_OK); /* a whole, verified read */
    CHECK(mc_store_units_init(s, "/", 2, &err) == MC_OK && mc_store_exists(s, "/_done"));
    CHECK(mc_store_close(&s, &err) == MC_OK && s == NULL);
    CHECK(mc_store_close(&s, &err) == MC_OK); /* NULL is a no-op */

    /* reopen read-only: contents, and writes refused */
    CHECK(mc_store_open(c, path, MC_STORE_READ, &s, &err) == MC_OK);
    if (s) {
        CHECK(!mc_store_writable(s));
        CHECK(mc_store_is_complete(s, "stage"));
        CHECK(mc_store_read_rows(s, "g1/g2/x", MC_DTYPE_F32, 0, 10, back, &err) == MC_OK);
        CHECK(back[119] == 119 * 0.5f);
        st = mc_store_write_rows(s, "g1/g2/x", MC_DTYPE_F32, 0, 0, buf, &err);
        CHECK_MSG(st == MC_ERR_ARG && contains(&err, "read-only"), "%s", err.msg);
        st = mc_store_set_attr_i64(s, "/", "k", 1, &err);
        CHECK(st == MC_ERR_ARG);
        /* a reader and a writer at once: readers take no lock */
        mc_store *w = NULL;
        CHECK(mc_store_open(c, path, MC_STORE_WRITE, &w, &err) == MC_OK);
        mc_store *w2 = NULL;
        st = mc_store_open(c, path, MC_STORE_WRITE, &w2, &err);
        char pidtxt[32];
        snprintf(pidtxt, sizeof pidtxt, "pid %ld", (long)getpid());
        /* the holder named is rank 0's process */
        long pid0 = (long)getpid();
        MPI_Bcast(&pid0, 1, MPI_LONG, 0, c->comm);
        snprintf(pidtxt, sizeof pidtxt, "pid %ld", pid0);
        CHECK_MSG(st == MC_ERR_LOCKED && contains(&err, pidtxt) && w2 == NULL, "%s", err.msg);
        CHECK(mc_store_close(&w, &err) == MC_OK);
        CHECK(mc_store_open(c, path, MC_STORE_WRITE, &w2, &err) == MC_OK); /* free again */
        CHECK(mc_store_close(&w2, &err) == MC_OK);
        CHECK(mc_store_close(&s, &err) == MC_OK);
    }
    char lockp[4200];
    snprintf(lockp, sizeof lockp, "%s.lock", path);
    CHECK(!mc_file_exists(lockp));

    /* not HDF5; truncated HDF5 (the HDF5 error stack lands in the message) */
    if (c->rank == 0) {
        CHECK(mc_write_file_atomic(bad, "hello, not a store\n", 19, &err) == MC_OK);
        char *all = NULL;
        size_t len = 0;
        CHECK(mc_read_file(path, 1 << 26, &all, &len, &err) == MC_OK);
        CHECK(mc_write_file_atomic(trunc, all, len > 800 ? 800 : len, &err) == MC_OK);
        free(all);
    }
    MPI_Barrier(c->comm);
    st = mc_store_open(c, bad, MC_STORE_WRITE, &s, &err);
    CHECK_MSG(st == MC_ERR_FORMAT && contains(&err, "not an HDF5 file") && contains(&err, bad),
              "%s", err.msg);
    st = mc_store_open(c, trunc, MC_STORE_READ, &s, &err);
    CHECK_MSG(st != MC_OK && contains(&err, trunc), "%s", err.msg);
    if (c->rank == 0) printf("truncated store: %s: %s\n", mc_status_name(st), err.msg);
    st = mc_store_create(c, "/nonexistent-dir/x.h5", 0, &s, &err);
    CHECK_MSG(st == MC_ERR_IO && contains(&err, "/nonexistent-dir/x.h5"), "%s", err.msg);

    free(buf);
    free(back);
    int fails = mc_test_failures, all_fails = 0;
    MPI_Allreduce(&fails, &all_fails, 1, MPI_INT, MPI_SUM, c->comm);
    if (c->rank == 0)
        printf("api: %d checks on rank 0, %d failures over all ranks\n", mc_test_checks, all_fails);
    return all_fails ? 1 : 0;
}

int main(int argc, char **argv) {
    mc_comm c;
    mc_error err = {0};
    if (mc_comm_init(&argc, &argv, &c, &err) != MC_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    int rc = 2;
    const char *m = argc > 1 ? argv[1] : "";
    if (!strcmp(m, "version")) {
        if (c.rank == 0) printf("%s\n", MICLIP_VERSION_STRING);
        rc = 0;
    } else if (!strcmp(m, "api") && argc == 3)
        rc = cmd_api(&c, argv[2]);
    else if (!strcmp(m, "write") && argc == 5)
        rc = cmd_write(&c, argv[2], atoll(argv[3]), atoll(argv[4]));
    else if (!strcmp(m, "units") && (argc == 5 || argc == 7))
        rc = cmd_units(&c, argv[2], atoll(argv[3]), atoll(argv[4]), argc == 7 ? atoll(argv[5]) : -2,
                       argc == 7 ? argv[6] : "");
    else if (!strcmp(m, "read") && (argc == 5 || argc == 6))
        rc = cmd_read(&c, argv[2], argv[3], argv[4], argc == 6 && !strcmp(argv[5], "rank0"));
    else if (!strcmp(m, "recover") && argc == 5)
        rc = cmd_recover(&c, argv[2], atoll(argv[3]), atoll(argv[4]));
    else if (!strcmp(m, "hold") && argc == 4)
        rc = cmd_hold(&c, argv[2], argv[3]);
    else if (!strcmp(m, "expect") && (argc == 5 || argc == 6))
        rc = cmd_expect(&c, argv[2], argv[3], argv[4], argc == 6 ? argv[5] : NULL);
    else if (c.rank == 0)
        fprintf(stderr, "store_prog: bad arguments (see the top of store_prog.c)\n");
    mc_comm_finalize(&c);
    return rc;
}
