/* sae_codes.c - the SAE's top-k code of a prefix cache's edited tokens, computed once
 * (sae_codes.h). */
#include "method/sae_codes.h"

#include <stdlib.h>
#include <string.h>

#include "miclip/buf.h"
#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/log.h"
#include "miclip/miclip.h"
#include "method/shared_store.h"

#define CODES_KEY_VERSION "miclip-intervene-codes/1"

mc_status mc_sae_codes_key(const mc_config *cfg, const mc_prefix_set *p, const char *sae_key,
                           int64_t t0, int64_t t1, char key[MC_KEY_HEX], char *path, size_t cap,
                           mc_error *err) {
    mc_buf b = {0};
    /* The batch size is in the prefix key too; it is named here since the codes are encoded in
     * its batches. */
    mc_buf_printf(&b, "%s\ncode=%s\nprefix=%s\nsae=%s\ntokens=%lld:%lld\nbatch_size=%lld\n",
                  CODES_KEY_VERSION, MICLIP_CACHE_VERSION, p->key, sae_key, (long long)t0,
                  (long long)t1, (long long)cfg->intervene.batch_size);
    mc_status s = b.oom ? MC_FAIL(err, MC_ERR_NOMEM, "out of memory") : MC_OK;
    if (s == MC_OK) mc_key_of(b.p, key);
    mc_buf_free(&b);
    char tag[256];
    mc_layer_tag(cfg->intervene.layer, tag, sizeof tag);
    if (s == MC_OK && !mc_snprintf(path, cap, "%s/intervene/codes-%s-l%s-%.16s.h5", cfg->output_dir,
                                   mc_split_name(p->split), tag, key))
        s = MC_FAIL(err, MC_ERR_ARG, "output path too long under %s", cfg->output_dir);
    return s;
}

void mc_sae_codes_close(mc_sae_codes *sc) {
    if (sc->st) mc_store_close(&sc->st, NULL);
    memset(sc, 0, sizeof *sc);
}

/* The edited tokens of rows [0, B) of state, gathered as the edit gathers them (intervene.c's
 * edit_fn): rows[(b * nt + t) * D + i] = token t0 + t's entry i. */
static void gather_rows(const mc_runner *R, const float *state, int64_t B, int64_t t0, int64_t t1,
                        float *rows) {
    const int64_t nt = t1 - t0, D = R->dim, T = R->tokens;
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < nt; t++)
            for (int64_t i = 0; i < D; i++)
                rows[(b * nt + t) * D + i] =
                    R->map ? state[(b * D + i) * T + t0 + t] : state[(b * T + t0 + t) * D + i];
}

/* Writes (or resumes) the codes into st, opened by mc_store_resume (*created: a fresh store),
 * then marks it complete and closes it. Collective. */
static mc_status codes_build(const mc_comm *c, const mc_config *cfg, const mc_runner *R,
                             mc_prefix_set *p, const mc_sae_codes_sae *sae, mc_sae_codes *sc,
                             mc_store *st, bool created, mc_error *err) {
    const int64_t bs = cfg->intervene.batch_size, nt = sc->t1 - sc->t0, k = sc->k, N = p->n;
    int64_t n_units = 0;
    mc_row_unit *units = mc_class_batches(p->first, p->C, bs, &n_units);
    mc_status s = units ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    s = mc_comm_agree(c, s, err);
    if (s == MC_OK && created) {
        int64_t sh[3] = {N, nt, k};
        s = mc_store_create_dataset(st, "idx", MC_DTYPE_I32, 3, sh, bs, err);
        if (s == MC_OK) s = mc_store_create_dataset(st, "val", MC_DTYPE_F32, 3, sh, bs, err);
        if (s == MC_OK) s = mc_prefix_provenance(st, cfg, R, p, err);
        const mc_store_attr_str sa[] = {{"codes_key", sc->key}, {"prefix_store", p->path},
                                        {"prefix_key", p->key}, {"sae_store", sae->path},
                                        {"sae_key", sae->key},  {"layer", R->layer}};
        if (s == MC_OK) s = mc_store_set_attrs_str(st, "/", MC_STORE_ATTRS(sa), err);
        const mc_store_attr_i64 ia[] = {
            {"token_begin", sc->t0}, {"token_end", sc->t1}, {"k", k}, {"batch_size", bs}};
        if (s == MC_OK) s = mc_store_set_attrs_i64(st, "/", MC_STORE_ATTRS(ia), err);
    }
    const int64_t nu = n_units > 0 ? n_units : 1;
    if (s == MC_OK) s = mc_store_units_init(st, "/", nu, err);
    if (s == MC_OK && created) s = mc_store_mark_layout(st, err);
    s = mc_comm_agree(c, s, err);
    uint8_t *done = calloc((size_t)nu, 1);
    int64_t *pending = mc_alloc_array((size_t)nu, sizeof *pending);
    float *state = mc_alloc_array((size_t)bs, (size_t)R->per * sizeof(float));
    float *rows = mc_alloc_array((size_t)(bs * nt), (size_t)R->dim * sizeof(float));
    int32_t *idx = mc_alloc_array((size_t)(bs * nt), (size_t)k * sizeof(int32_t));
    float *val = mc_alloc_array((size_t)(bs * nt), (size_t)k * sizeof(float));
    if (s == MC_OK && (!done || !pending || !state || !rows || !idx || !val))
        s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory for a batch of %lld images", (long long)bs);
    s = mc_comm_agree(c, s, err);
    int64_t n_pending = 0, n_done = 0;
    if (s == MC_OK) s = mc_store_units_read(st, "/", nu, done, &n_done, err);
    for (int64_t u = 0; s == MC_OK && u < n_units; u++)
        if (!done[u]) pending[n_pending++] = u;
    if (s == MC_OK && n_done > 0)
        mc_info0("intervene: SAE codes of %s resuming, %lld of %lld batches done",
                 mc_split_name(p->split), (long long)n_done, (long long)n_units);
    mc_progress prog;
    mc_progress_start(&prog, "SAE codes", n_pending, "batch");
    const int64_t rounds = (n_pending + c->size - 1) / c->size;
    for (int64_t r = 0; s == MC_OK && r < rounds; r++) {
        const int64_t slot = r * c->size + c->rank;
        int64_t unit = -1, b = 0, e = 0;
        mc_status ls = MC_OK;
        if (slot < n_pending) {
            unit = pending[slot];
            b = units[unit].b, e = units[unit].e;
            ls = mc_prefix_state(R, p, b, e, state, err);
            if (ls == MC_OK) {
                gather_rows(R, state, e - b, sc->t0, sc->t1, rows);
                mc_sae_encode(sae->sae, rows, (e - b) * nt, idx, val);
            }
        }
        s = mc_comm_agree(c, ls, err);
        if (s == MC_OK) s = mc_store_write_rows(st, "idx", MC_DTYPE_I32, b, e, idx, err);
        if (s == MC_OK) s = mc_store_write_rows(st, "val", MC_DTYPE_F32, b, e, val, err);
        if (s == MC_OK) s = mc_store_units_mark(st, "/", &unit, unit >= 0 ? 1 : 0, err);
        mc_progress_update(&prog, (r + 1) * c->size < n_pending ? (r + 1) * c->size : n_pending);
        if (s == MC_OK && mc_comm_stop_requested(c))
            s = MC_FAIL(err, MC_ERR_INTERRUPTED,
                        "intervene: SAE codes of %s stopped by signal; the store is consistent, "
                        "rerun to resume (%s)",
                        mc_split_name(p->split), sc->path);
    }
    mc_progress_finish(&prog);
    s = mc_store_finish(&st, s, err);
    if (s == MC_OK)
        mc_info0("intervene: SAE codes of %s: %lld images x %lld tokens -> %s",
                 mc_split_name(p->split), (long long)N, (long long)nt, sc->path);
    free(units), free(done), free(pending), free(state), free(rows), free(idx), free(val);
    return s;
}

/* codes_build's inputs, for mc_shared_store_ensure. */
typedef struct {
    const mc_config *cfg;
    const mc_runner *R;
    mc_prefix_set *p;
    const mc_sae_codes_sae *sae;
    mc_sae_codes *sc;
} codes_job;

static mc_status codes_job_build(const mc_comm *c, mc_store *st, bool created, void *user,
                                 mc_error *err) {
    codes_job *j = user;
    return codes_build(c, j->cfg, j->R, j->p, j->sae, j->sc, st, created, err);
}

mc_status mc_sae_codes_open(const mc_comm *c, const mc_config *cfg, const mc_runner *R,
                            mc_prefix_set *p, const mc_sae_codes_sae *sae, int64_t t0, int64_t t1,
                            mc_sae_codes *sc, mc_error *err) {
    memset(sc, 0, sizeof *sc);
    sc->n = p->n, sc->t0 = t0, sc->t1 = t1, sc->k = mc_sae_get_config(sae->sae)->k;
    mc_status s =
        mc_sae_codes_key(cfg, p, sae->key, t0, t1, sc->key, sc->path, sizeof sc->path, err);
    char what[64];
    mc_snprintf(what, sizeof what, "intervene: SAE codes of %s", mc_split_name(p->split));
    codes_job job = {cfg, R, p, sae, sc};
    if (s == MC_OK) s = mc_shared_store_ensure(c, sc->path, what, codes_job_build, &job, err);
    if (s == MC_OK) s = mc_store_open(c, sc->path, MC_STORE_READ, &sc->st, err);
    const char *ds[2] = {"idx", "val"};
    for (int q = 0; s == MC_OK && q < 2; q++) {
        mc_store_dataset_info di;
        s = mc_store_dataset_info_get(sc->st, ds[q], &di, err);
        if (s == MC_OK && (di.ndim != 3 || di.shape[0] != sc->n || di.shape[1] != t1 - t0 ||
                           di.shape[2] != sc->k))
            s = MC_FAIL(err, MC_ERR_FORMAT, "%s: %s is not [%lld, %lld, %d]", sc->path, ds[q],
                        (long long)sc->n, (long long)(t1 - t0), sc->k);
    }
    s = mc_comm_agree(c, s, err);
    if (s != MC_OK) mc_sae_codes_close(sc);
    return s;
}

mc_status mc_sae_codes_read(mc_sae_codes *sc, int64_t b, int64_t e, int32_t *idx, float *val,
                            mc_error *err) {
    int64_t start[3] = {b, 0, 0}, count[3] = {e - b, sc->t1 - sc->t0, sc->k};
    MC_TRY(mc_store_read_slice(sc->st, "idx", MC_DTYPE_I32, start, count, idx, false, err));
    return mc_store_read_slice(sc->st, "val", MC_DTYPE_F32, start, count, val, false, err);
}
