/* unit_tables.c - the localize and describe layouts (unit_tables.h). */
#include "method/unit_tables.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/log.h"
#include "miclip/miclip.h"
#include "miclip/buf.h"

mc_status mc_localize_write(const mc_comm *c, mc_store *st, const char *g, const mc_concepts *cs,
                            int64_t tau, const int32_t *idx, const float *sc, int64_t n_units,
                            int kind, const char *sae_path, const char *csv_path, mc_error *err) {
    const char *kind_name = mc_unit_kind_name(kind);
    char name[600];
    int64_t sh[2] = {cs->n, tau};
    const bool root = c->rank == 0;
    mc_status s = MC_OK;
    mc_snprintf(name, sizeof name, "%s/top_units", g);
    if (s == MC_OK) s = mc_store_create_dataset(st, name, MC_DTYPE_I32, 2, sh, 0, err);
    if (s == MC_OK) s = mc_store_write_rows(st, name, MC_DTYPE_I32, 0, root ? cs->n : 0, idx, err);
    mc_snprintf(name, sizeof name, "%s/top_scores", g);
    if (s == MC_OK) s = mc_store_create_dataset(st, name, MC_DTYPE_F32, 2, sh, 0, err);
    if (s == MC_OK) s = mc_store_write_rows(st, name, MC_DTYPE_F32, 0, root ? cs->n : 0, sc, err);
    if (s == MC_OK) s = mc_store_set_attr_i64(st, g, "n_units", n_units, err);
    if (s == MC_OK) s = mc_store_set_attr_i64(st, g, "tau", tau, err);
    if (s == MC_OK && kind == MC_UNIT_SAE)
        s = mc_store_set_attr_str(st, g, "sae_store", sae_path, err);
    if (s == MC_OK) {
        mc_status ws = MC_OK;
        if (root) {
            mc_buf b = {0};
            mc_buf_printf(&b, "concept_index,concept,rank,%s,score\n", kind_name);
            for (int64_t j = 0; j < cs->n; j++)
                for (int64_t q = 0; q < tau; q++) {
                    mc_buf_printf(&b, "%lld,", (long long)j);
                    mc_buf_csv(&b, cs->texts[j]);
                    mc_buf_printf(&b, ",%lld,%d,%.6f\n", (long long)q + 1, idx[j * tau + q],
                                  sc[j * tau + q]);
                }
            ws = b.oom ? MC_FAIL(err, MC_ERR_NOMEM, "out of memory")
                       : mc_write_text_file(csv_path, b.p, b.n, err);
            mc_buf_free(&b);
        }
        s = mc_comm_agree(c, ws, err);
    }
    return s;
}

mc_status mc_describe_write(const mc_comm *c, mc_store *st, const char *g, const mc_sim_result *r,
                            const float *sim, const mc_concepts *cs, int kind, const char *sae_path,
                            const char *csv_path, mc_scored **all, mc_error *err) {
    *all = NULL;
    const int64_t tau = r->tau_c, U = r->n_units, rows = r->u1 - r->u0;
    const char *kind_name = mc_unit_kind_name(kind);
    char name[600];
    int32_t *idx = mc_alloc_array((size_t)(rows * tau + 1), sizeof(int32_t));
    float *sc = mc_alloc_array((size_t)(rows * tau + 1), sizeof(float));
    mc_status s =
        mc_comm_agree(c, idx && sc ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory"), err);
    for (int64_t i = 0; s == MC_OK && i < rows * tau; i++)
        idx[i] = r->desc[i].index, sc[i] = r->desc[i].score;
    int64_t sh[2] = {U, tau};
    mc_snprintf(name, sizeof name, "%s/top_concepts", g);
    if (s == MC_OK) s = mc_store_create_dataset(st, name, MC_DTYPE_I32, 2, sh, 0, err);
    if (s == MC_OK) s = mc_store_write_rows(st, name, MC_DTYPE_I32, r->u0, r->u1, idx, err);
    mc_snprintf(name, sizeof name, "%s/top_scores", g);
    if (s == MC_OK) s = mc_store_create_dataset(st, name, MC_DTYPE_F32, 2, sh, 0, err);
    if (s == MC_OK) s = mc_store_write_rows(st, name, MC_DTYPE_F32, r->u0, r->u1, sc, err);
    free(idx), free(sc);
    if (sim) {
        int64_t sh2[2] = {U, cs->n};
        mc_snprintf(name, sizeof name, "%s/sim", g);
        if (s == MC_OK) s = mc_store_create_dataset(st, name, MC_DTYPE_F32, 2, sh2, 0, err);
        if (s == MC_OK) s = mc_store_write_rows(st, name, MC_DTYPE_F32, r->u0, r->u1, sim, err);
    }
    if (s == MC_OK) s = mc_store_set_attr_i64(st, g, "n_units", U, err);
    if (s == MC_OK) s = mc_store_set_attr_i64(st, g, "tau", tau, err);
    if (s == MC_OK && kind == MC_UNIT_SAE)
        s = mc_store_set_attr_str(st, g, "sae_store", sae_path, err);
    if (s == MC_OK) s = mc_sim_gather_desc(c, r, all, err);
    mc_status ws = MC_OK;
    if (s == MC_OK && c->rank == 0) {
        mc_buf b = {0};
        mc_buf_printf(&b, "%s,rank,concept_index,concept,score\n", kind_name);
        for (int64_t i = 0; i < U; i++)
            for (int64_t q = 0; q < tau; q++) {
                const mc_scored *e = &(*all)[i * tau + q];
                mc_buf_printf(&b, "%lld,%lld,%d,", (long long)i, (long long)q + 1, e->index);
                mc_buf_csv(&b, cs->texts[e->index]);
                mc_buf_printf(&b, ",%.6f\n", e->score);
            }
        ws = b.oom ? MC_FAIL(err, MC_ERR_NOMEM, "out of memory")
                   : mc_write_text_file(csv_path, b.p, b.n, err);
        mc_buf_free(&b);
    }
    s = mc_comm_agree(c, s == MC_OK ? ws : s, err); /* every rank returns the same status */
    if (s != MC_OK) {
        free(*all);
        *all = NULL;
    }
    return s;
}

mc_status mc_describe_set_accuracy(const mc_comm *c, mc_store *st, const char *g, double acc,
                                   mc_error *err) {
    /* Rank 0 computed it: every rank learns the value, then all set the attribute together. */
    MPI_Bcast(&acc, 1, MPI_DOUBLE, 0, c->comm);
    return isnan(acc) ? MC_OK : mc_store_set_attr_f64(st, g, "description_accuracy", acc, err);
}

int64_t mc_concept_index(const mc_concepts *cs, const char *text) {
    for (int64_t j = 0; j < cs->n; j++)
        if (!strcasecmp(cs->texts[j], text)) return j;
    return -1;
}

double mc_describe_accuracy(const mc_concepts *cs, char *const *class_names, int64_t n_units,
                            const mc_scored *all, int64_t tau, int64_t *known, int64_t *hits) {
    *known = *hits = 0;
    for (int64_t i = 0; i < n_units; i++) {
        int64_t own = mc_concept_index(cs, class_names[i]);
        if (own < 0) continue;
        ++*known;
        *hits += all[i * tau].index == own;
    }
    return *known ? (double)*hits / (double)*known : NAN;
}
