/* localize.c - unit x concept similarity (Algorithm 2), the `localize` stage (top-tau units
 * per concept, Eq. 3) and the interactive `miclip localize CONFIG --concept TEXT` query.
 *
 * A unit's embedding is a column of E_n (a neuron) or E_n W_dec[:, i] (an SAE feature); a
 * concept's is the CLIP text embedding of align.prompt filled with the concept. Similarity is
 * the cosine. Unit rows are shared over ranks in fixed blocks, the per-concept top lists are
 * merged with an exact, order-independent reduction (score descending, then index), so the
 * results are identical at any rank count. Output: OUTPUT_DIR/localize/<task>-<key16>.h5 and
 * OUTPUT_DIR/tables/<task>-<set>-<units>.csv (docs/stages.md).
 */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/plan.h" /* before cblas.h, whose complex.h defines I (a field name in plan.h) */
#include <cblas.h>

#include "miclip/buf.h"
#include "method/acts.h"
#include "method/concepts.h"
#include "method/extract_key.h"
#include "method/keys.h"
#include "method/method_task.h"
#include "method/similarity.h"
#include "method/task_index.h"
#include "method/train_data.h"
#include "method/training.h"
#include "method/unit_tables.h"
#include "method/units.h"
#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/log.h"
#include "miclip/miclip.h"
#include "miclip/text.h"
#include "stages_internal.h"

/* ---- the localize stage ----------------------------------------------------------------------- */

static mc_status localize_one(const mc_comm *c, const mc_task *task, mc_method_task *mt,
                              mc_store *st, const mc_concepts *cs, const mc_unit_set *u,
                              mc_error *err) {
    int64_t tau = mt->tau < u->n_units ? mt->tau : u->n_units;
    mc_sim_result r;
    MC_TRY(mc_similarity(c, u, &mt->w, cs->emb, (const char *const *)cs->texts, cs->n, tau, 0,
                         false, &r, err));
    const char *kind = mc_unit_kind_name(u->kind);
    char g[512], csv[MC_PATH_CAP];
    mc_snprintf(g, sizeof g, "%s/%s", cs->name, kind);
    mc_snprintf(csv, sizeof csv, "%s/%s-%s-%s.csv", mt->tables, task->id, cs->name, kind);
    int32_t *idx = mc_alloc_array((size_t)(cs->n * tau), sizeof(int32_t));
    float *sc = mc_alloc_array((size_t)(cs->n * tau), sizeof(float));
    mc_status s =
        mc_comm_agree(c, idx && sc ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory"), err);
    for (int64_t i = 0; s == MC_OK && i < cs->n * tau; i++)
        idx[i] = r.loc[i].index, sc[i] = r.loc[i].score;
    if (s == MC_OK)
        s = mc_localize_write(c, st, g, cs, tau, idx, sc, u->n_units, u->kind, u->sae_path, csv,
                              err);
    if (s == MC_OK) s = mc_store_set_attr_str(st, g, "reading", mc_unit_reading_name(u), err);
    free(idx), free(sc);
    mc_sim_result_free(&r);
    return s;
}

mc_status mc_stage_localize(const mc_comm *c, const mc_config *cfg_in, const mc_task *task,
                            mc_error *err) {
    /* Another reading (intervene.readings) is the config with that reading's localize.* units. */
    mc_config rcfg = *cfg_in;
    mc_config_set_reading(&rcfg, task->reading);
    const mc_config *cfg = &rcfg;
    mc_method_task mt;
    mc_store *st = NULL;
    bool done;
    mc_status s = mc_method_task_begin(c, cfg, task, MC_STAGE_LOCALIZE, &mt, &st, &done, err);
    if (done) return s;
    for (int i = 0; s == MC_OK && i < mt.n_sets; i++) {
        char g[300];
        mc_snprintf(g, sizeof g, "%s/concepts", mt.sets[i].name);
        s = mc_store_write_strings(st, g, (const char *const *)mt.sets[i].texts, mt.sets[i].n, true,
                                   err);
        for (int k = 0; s == MC_OK && k < mt.n_kinds; k++)
            s = localize_one(c, task, &mt, st, &mt.sets[i], &mt.kinds[k], err);
    }
    s = mc_method_task_finish(cfg, task, &mt, "localize", &st, s, err);
    if (s == MC_OK) s = mc_task_index_write(c, cfg, MC_STAGE_LOCALIZE, task, mt.store, mt.key, err);
    mc_method_task_close(&mt);
    return s;
}

/* ---- queries ------------------------------------------------------------------------------------- */

mc_status mc_query_localize(const mc_comm *c, const mc_config *cfg, const char *const *texts, int n,
                            const mc_query *q, FILE *out, mc_error *err) {
    mc_query r;
    mc_train_data td;
    mc_encoder_weights w;
    mc_unit_set u;
    MC_TRY(mc_query_open(c, cfg, q, &r, &td, &w, &u, err));
    int64_t tau = r.tau > 0 ? r.tau : cfg->localize.tau;
    if (tau > u.n_units) tau = u.n_units;
    mc_text_encoder *enc = NULL;
    float *emb = mc_alloc_array((size_t)n, (size_t)td.clip_dim * sizeof(float));
    mc_status s = emb ? mc_text_encoder_load(cfg->models.clip, NULL, &enc, err)
                      : MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    if (s == MC_OK && mc_text_encoder_dim(enc) != td.clip_dim)
        s = MC_FAIL(err, MC_ERR_SHAPE, "%s: text width %d, image embeddings %lld", cfg->models.clip,
                    mc_text_encoder_dim(enc), (long long)td.clip_dim);
    if (s == MC_OK) s = mc_text_embed(enc, texts, (size_t)n, cfg->align.prompt, false, emb, err);
    s = mc_comm_agree(c, s, err);
    mc_sim_result res = {0};
    if (s == MC_OK) s = mc_similarity(c, &u, &w, emb, texts, n, tau, 0, false, &res, err);
    if (s == MC_OK && c->rank == 0) {
        for (int i = 0; i < n; i++) {
            fprintf(out,
                    "concept \"%s\" (prompt \"%s\"): top %lld %s%s of layer %s (seed %lld, variant "
                    "%s, %lld units, "
                    "reading %s)\n",
                    texts[i], cfg->align.prompt, (long long)tau,
                    r.units == MC_UNIT_SAE ? "SAE feature" : "neuron", tau == 1 ? "" : "s", r.layer,
                    (long long)r.seed, mc_variant_name(r.variant), (long long)u.n_units,
                    mc_unit_reading_name(&u));
            /* A logit neuron is a class of the target: name it. */
            bool named = !strcmp(r.layer, "logits") && r.units == MC_UNIT_NEURON &&
                         u.n_units == td.n_classes;
            fprintf(out, "  rank  unit      cosine%s\n", named ? "    class" : "");
            for (int64_t k = 0; k < tau; k++) {
                const mc_scored *e = &res.loc[i * tau + k];
                fprintf(out, "  %4lld  %-8d  %.6f", (long long)k + 1, e->index, e->score);
                fprintf(out, named ? "  %s\n" : "%s\n", named ? td.class_names[e->index] : "");
            }
        }
        fflush(out);
    }
    mc_sim_result_free(&res);
    mc_text_encoder_free(&enc);
    free(emb);
    mc_unit_set_free(&u);
    mc_encoder_weights_free(&w);
    mc_train_data_close(&td);
    return s;
}

/* ---- the registry entry ----------------------------------------------------------------------- */

/* The complete tasks at once (stages.h: complete; method_task.h). */
static mc_status localize_complete(const mc_comm *c, const mc_config *cfg, const mc_task *tasks,
                                   int n, bool *done, mc_error *err) {
    return mc_method_tasks_complete(c, cfg, MC_STAGE_LOCALIZE, tasks, n, done, err);
}

const mc_stage_desc mc_localize_stage = {
    .stage = MC_STAGE_LOCALIZE,
    .summary = "the top-tau units of each concept (Eq. 3)",
    .outputs = "localize/<task>-<key16>.h5, tables/",
    .check = NULL,
    .run = mc_stage_localize,
    .complete = localize_complete,
    .cost = mc_plan_unit_table_cost,
};
