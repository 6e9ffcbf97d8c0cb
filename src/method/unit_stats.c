/* unit_stats.c - the unit statistics of a training extraction, computed once into a shared store
 * and read by every later task (units.h, mc_unit_stats_get). */
#include <stdlib.h>
#include <string.h>

#include "miclip/buf.h"
#include "miclip/checked.h"
#include "miclip/log.h"
#include "miclip/miclip.h"
#include "method/shared_store.h"
#include "method/units.h"

#define STATS_KEY_VERSION "miclip-unit-stats/1"

/* The statistics' inputs, for the builder. */
typedef struct {
    const mc_config *cfg;
    const mc_train_data *td;
    const char *layer;
    struct mc_sae *sae;
    const char *sae_key;
    bool tokens;
} stats_job;

static mc_status stats_build(const mc_comm *c, mc_store *st, bool created, void *user,
                             mc_error *err) {
    const stats_job *j = user;
    mc_unit_stats us;
    mc_status s = mc_unit_stats_compute(c, j->td, j->layer, j->sae, j->tokens, &us, err);
    if (s != MC_OK) return mc_store_finish(&st, s, err);
    const int64_t U = us.n_units, C = us.n_classes;
    /* A resumed store was killed before completion: its datasets exist with these shapes (the
     * key fixes them) and every row is written again. */
    int64_t sh[2] = {U, 0};
    if (s == MC_OK) s = mc_store_create_dataset(st, "sum", MC_DTYPE_F64, 1, sh, 0, err);
    if (s == MC_OK) s = mc_store_create_dataset(st, "fire_n", MC_DTYPE_I64, 1, sh, 0, err);
    if (s == MC_OK) s = mc_store_create_dataset(st, "fire_sum", MC_DTYPE_F64, 1, sh, 0, err);
    sh[0] = C, sh[1] = U;
    if (s == MC_OK) s = mc_store_create_dataset(st, "class_sum", MC_DTYPE_F64, 2, sh, 0, err);
    if (s == MC_OK) s = mc_store_create_dataset(st, "class_n", MC_DTYPE_I64, 1, sh, 0, err);
    if (s == MC_OK && created) {
        const mc_store_attr_str sa[] = {{"extract_store", j->td->path},
                                        {"extract_key", j->td->extract_key},
                                        {"layer", j->layer},
                                        {"units", j->sae ? "sae" : "neuron"},
                                        {"sae_key", j->sae ? j->sae_key : ""}};
        s = mc_store_set_attrs_str(st, "/", MC_STORE_ATTRS(sa), err);
        if (s == MC_OK) s = mc_store_set_attr_i64(st, "/", "tokens", j->tokens, err);
        /* the provenance set every store carries (the Slurm job that wrote it, ...); no seed:
         * the seeds that share the training extraction share the store */
        const mc_store_provenance prov = {
            .stage = "unit-stats", .config_hash = j->cfg->hash, .dataset = "train"};
        if (s == MC_OK) s = mc_store_write_provenance(st, "/", &prov, err);
        if (s == MC_OK) s = mc_store_mark_layout(st, err);
    }
    /* Every rank computed the same doubles (image order); rank 0 writes them. */
    const bool root = c->rank == 0;
    if (s == MC_OK) s = mc_store_write_rows(st, "sum", MC_DTYPE_F64, 0, root ? U : 0, us.sum, err);
    if (s == MC_OK)
        s = mc_store_write_rows(st, "fire_n", MC_DTYPE_I64, 0, root ? U : 0, us.fire_n, err);
    if (s == MC_OK)
        s = mc_store_write_rows(st, "fire_sum", MC_DTYPE_F64, 0, root ? U : 0, us.fire_sum, err);
    if (s == MC_OK)
        s = mc_store_write_rows(st, "class_sum", MC_DTYPE_F64, 0, root ? C : 0, us.class_sum, err);
    if (s == MC_OK)
        s = mc_store_write_rows(st, "class_n", MC_DTYPE_I64, 0, root ? C : 0, us.class_n, err);
    if (s == MC_OK) s = mc_store_set_attr_i64(st, "/", "n_img", us.n_img, err);
    mc_unit_stats_free(&us);
    return mc_store_finish(&st, s, err);
}

/* Reads the complete store at path into us (every rank reads all). */
static mc_status stats_read(const mc_comm *c, const char *path, mc_unit_stats *us, mc_error *err) {
    memset(us, 0, sizeof *us);
    mc_store *st = NULL;
    MC_TRY(mc_store_open(c, path, MC_STORE_READ, &st, err));
    mc_store_dataset_info si, ci;
    mc_status s = mc_store_dataset_info_get(st, "sum", &si, err);
    if (s == MC_OK) s = mc_store_dataset_info_get(st, "class_sum", &ci, err);
    if (s == MC_OK && (si.ndim != 1 || ci.ndim != 2 || ci.shape[1] != si.shape[0]))
        s = MC_FAIL(err, MC_ERR_FORMAT, "%s: class_sum is not [C, %lld] (sum's length)", path,
                    (long long)si.shape[0]);
    if (s == MC_OK) s = mc_store_get_attr_i64(st, "/", "n_img", &us->n_img, err);
    if (s == MC_OK) {
        const int64_t U = si.shape[0], C = ci.shape[0];
        us->n_units = U, us->n_classes = C;
        us->sum = mc_alloc_array((size_t)U + 1, sizeof(double));
        us->class_sum = mc_alloc_array((size_t)(C * U + 1), sizeof(double));
        us->class_n = mc_alloc_array((size_t)C + 1, sizeof(int64_t));
        us->fire_n = mc_alloc_array((size_t)U + 1, sizeof(int64_t));
        us->fire_sum = mc_alloc_array((size_t)U + 1, sizeof(double));
        if (!us->sum || !us->class_sum || !us->class_n || !us->fire_n || !us->fire_sum)
            s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory for the statistics of %lld units",
                        (long long)U);
    }
    s = mc_comm_agree(c, s, err);
    const int64_t U = us->n_units, C = us->n_classes;
    if (s == MC_OK) s = mc_store_read_rows(st, "sum", MC_DTYPE_F64, 0, U, us->sum, err);
    if (s == MC_OK) s = mc_store_read_rows(st, "fire_n", MC_DTYPE_I64, 0, U, us->fire_n, err);
    if (s == MC_OK) s = mc_store_read_rows(st, "fire_sum", MC_DTYPE_F64, 0, U, us->fire_sum, err);
    if (s == MC_OK) s = mc_store_read_rows(st, "class_sum", MC_DTYPE_F64, 0, C, us->class_sum, err);
    if (s == MC_OK) s = mc_store_read_rows(st, "class_n", MC_DTYPE_I64, 0, C, us->class_n, err);
    mc_store_close(&st, NULL);
    if (s != MC_OK) mc_unit_stats_free(us);
    return s;
}

mc_status mc_unit_stats_get(const mc_comm *c, const mc_config *cfg, const mc_train_data *td,
                            const char *layer, struct mc_sae *sae, const char *sae_key, bool tokens,
                            mc_unit_stats *us, mc_error *err) {
    memset(us, 0, sizeof *us);
    mc_buf b = {0};
    mc_buf_printf(&b, "%s\ncode=%s\ntrain=%s\nlayer=%s\nsae=%s\ntokens=%d\n", STATS_KEY_VERSION,
                  MICLIP_CACHE_VERSION, td->extract_key, layer, sae ? sae_key : "none",
                  sae ? (int)tokens : 0);
    if (b.oom) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    char key[MC_KEY_HEX], tag[256], path[MC_PATH_CAP], what[320];
    mc_key_of(b.p, key);
    mc_buf_free(&b);
    mc_layer_tag(layer, tag, sizeof tag);
    if (!mc_snprintf(path, sizeof path, "%s/unit-stats/%s-l%s-%.16s.h5", cfg->output_dir,
                     sae ? "sae" : "neuron", tag, key))
        return MC_FAIL(err, MC_ERR_ARG, "output path too long under %s", cfg->output_dir);
    mc_snprintf(what, sizeof what, "unit statistics of layer '%s' (%s)", layer,
                sae ? "SAE features" : "neurons");
    stats_job job = {cfg, td, layer, sae, sae_key, tokens};
    MC_TRY(mc_shared_store_ensure(c, path, what, stats_build, &job, err));
    return stats_read(c, path, us, err);
}
