/* method_task.c - one localize/describe task and the query inputs (method_task.h). */
#include "method/method_task.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/log.h"
#include "miclip/miclip.h"
#include "miclip/buf.h"
#include "method/task_index.h"
#include "method/training.h"

void mc_method_task_close(mc_method_task *mt) {
    for (int k = 0; k < mt->n_kinds; k++) mc_unit_set_free(&mt->kinds[k]);
    mc_concepts_free(&mt->sets, mt->n_sets);
    mc_encoder_weights_free(&mt->w);
    mc_train_data_close(&mt->td);
    memset(mt, 0, sizeof *mt);
}

/* The task's key (from mt's tau, E_n key, unit kinds and concept sets' keys) and its store and
 * tables paths. */
static mc_status method_key(const mc_config *cfg, const mc_task *task, int stage,
                            mc_method_task *mt, mc_error *err) {
    mc_buf b = {0};
    mc_buf_printf(&b, "miclip-%s/1\ncode=%s\nalign=%s\ntau=%lld\n", mc_stage_name(stage),
                  MICLIP_CACHE_VERSION, mt->w.key, (long long)mt->tau);
    for (int k = 0; k < mt->n_kinds; k++) {
        mc_buf_printf(&b, "units=%s:%s\n", mc_unit_kind_name(mt->kinds[k].kind),
                      mt->kinds[k].sae_key);
        /* The reading changes every score (basis/atom keep the old key text). */
        if (mt->kinds[k].reading != MC_READ_PLAIN)
            mc_buf_printf(&b, "reading=%s\n", mc_unit_reading_name(&mt->kinds[k]));
    }
    for (int k = 0; k < mt->n_sets; k++)
        mc_buf_printf(&b, "set=%s:%s\n", mt->sets[k].name, mt->sets[k].key);
    mc_status s = b.oom ? MC_FAIL(err, MC_ERR_NOMEM, "out of memory") : MC_OK;
    if (s == MC_OK) mc_key_of(b.p, mt->key);
    mc_buf_free(&b);
    if (s == MC_OK && !(mc_snprintf(mt->store, sizeof mt->store, "%s/%s/%s-%.16s.h5",
                                    cfg->output_dir, mc_stage_name(stage), task->id, mt->key) &&
                        mc_snprintf(mt->tables, sizeof mt->tables, "%s/tables", cfg->output_dir)))
        s = MC_FAIL(err, MC_ERR_ARG, "output path too long under %s", cfg->output_dir);
    return s;
}

mc_status mc_method_task_find(const mc_comm *c, const mc_config *cfg, const mc_task *task,
                              int stage, mc_method_task *mt, mc_error *err) {
    memset(mt, 0, sizeof *mt);
    const bool loc = stage == MC_STAGE_LOCALIZE;
    const mc_enum_list *units = loc ? &cfg->localize.units : &cfg->describe.units;
    const mc_str_list *names = loc ? &cfg->localize.concepts : &cfg->describe.concepts;
    mt->tau = loc ? cfg->localize.tau : cfg->describe.tau;
    MC_TRY(mc_train_data_open(c, cfg, task->seed, &mt->td, err));
    mc_status s = mc_encoder_weights_find(c, cfg, &mt->td, task->seed, task->layer, task->variant,
                                          &mt->w, err);
    for (int i = 0; s == MC_OK && i < units->n; i++) {
        if (units->v[i] == MC_UNIT_SAE && !mc_sae_applies(cfg, task->layer)) {
            mc_info0("%s %s: no SAE on layer '%s' (sae.layer is '%s'%s); neurons only",
                     mc_stage_name(stage), task->id, task->layer, cfg->sae.layer,
                     mc_config_has_stage(cfg, MC_STAGE_SAE) ? "" : ", sae stage not listed");
            continue;
        }
        s = mc_unit_set_find(c, cfg, &mt->td, task->seed, units->v[i], &mt->kinds[mt->n_kinds],
                             err);
        if (s == MC_OK) mt->n_kinds++;
    }
    if (s == MC_OK) s = mc_concepts_open(c, cfg, &mt->td, names, &mt->sets, &mt->n_sets, err);
    if (s == MC_OK) s = method_key(cfg, task, stage, mt, err);
    if (s != MC_OK) mc_method_task_close(mt);
    return s;
}

mc_status mc_method_task_load(const mc_comm *c, const mc_config *cfg, const mc_task *task,
                              mc_method_task *mt, mc_error *err) {
    mc_status s = mc_encoder_weights_read(c, &mt->w, err);
    for (int k = 0; s == MC_OK && k < mt->n_kinds; k++)
        s = mc_unit_set_open(c, cfg, &mt->td, task->seed, task->layer, &mt->w, mt->kinds[k].kind,
                             &mt->kinds[k], err);
    if (s == MC_OK) s = mc_concepts_embed(c, cfg, &mt->td, mt->sets, mt->n_sets, err);
    if (s != MC_OK) mc_method_task_close(mt);
    return s;
}

mc_status mc_method_task_begin(const mc_comm *c, const mc_config *cfg, const mc_task *task,
                               int stage, mc_method_task *mt, mc_store **st, bool *done,
                               mc_error *err) {
    const char *name = mc_stage_name(stage);
    *st = NULL;
    *done = true;
    /* The key from metadata first: a complete task loads nothing (issue 16). */
    MC_TRY(mc_method_task_find(c, cfg, task, stage, mt, err));
    bool complete = false;
    mc_status s = mc_store_peek_complete(c, mt->store, &complete, err);
    if (s != MC_OK || complete) {
        if (complete) {
            mc_info0("%s %s: complete, skipping (%s)", name, task->id, mt->store);
            s = mc_task_index_write(c, cfg, stage, task, mt->store, mt->key, err);
        }
        mc_method_task_close(mt);
        return s;
    }
    MC_TRY(mc_method_task_load(c, cfg, task, mt, err));
    *done = false;
    char dir[MC_PATH_CAP];
    mc_snprintf(dir, sizeof dir, "%s/%s", cfg->output_dir, name);
    s = mc_comm_agree(c, c->rank == 0 ? mc_mkdir_p(dir, err) : MC_OK, err);
    if (s == MC_OK) s = mc_store_fresh(c, mt->store, st, err);
    return s;
}

mc_status mc_method_task_finish(const mc_config *cfg, const mc_task *task, const mc_method_task *mt,
                                const char *stage, mc_store **st, mc_status s, mc_error *err) {
    mc_store_provenance prov = {.stage = stage,
                                .config_hash = cfg->hash,
                                .model = mt->w.key,
                                .dataset = mt->td.path,
                                .seed = task->seed,
                                .has_seed = true};
    char key_attr[64];
    snprintf(key_attr, sizeof key_attr, "%s_key", stage);
    if (s == MC_OK) s = mc_store_write_provenance(*st, "/", &prov, err);
    if (s == MC_OK) s = mc_store_set_attr_str(*st, "/", key_attr, mt->key, err);
    if (s == MC_OK) s = mc_store_set_attr_str(*st, "/", "align_store", mt->w.path, err);
    if (s == MC_OK) s = mc_store_set_attr_str(*st, "/", "layer", task->layer, err);
    if (s == MC_OK)
        s = mc_store_set_attr_str(*st, "/", "variant", mc_variant_name(task->variant), err);
    s = mc_store_finish(st, s, err);
    if (s == MC_OK)
        mc_info0("%s %s: %d concept set(s) x %d unit kind(s) -> %s", stage, task->id, mt->n_sets,
                 mt->n_kinds, mt->store);
    return s;
}

void mc_query_defaults(mc_query *q) {
    memset(q, 0, sizeof *q);
    q->seed = -1;
    q->variant = -1;
    q->units = -1;
}

/* Resolves the query's defaults and loads E_n and the unit set. Collective. */
mc_status mc_query_open(const mc_comm *c, const mc_config *cfg, const mc_query *q, mc_query *r,
                        mc_train_data *td, mc_encoder_weights *w, mc_unit_set *u, mc_error *err) {
    *r = *q;
    if (r->seed < 0) r->seed = cfg->seeds.v[0];
    if (r->units < 0) r->units = MC_UNIT_NEURON;
    if (!r->layer) r->layer = r->units == MC_UNIT_SAE ? cfg->sae.layer : cfg->extract.layers.v[0];
    if (r->variant < 0) r->variant = cfg->align.variants.v[0];
    bool known = false;
    for (int i = 0; i < cfg->extract.layers.n; i++)
        known |= !strcmp(cfg->extract.layers.v[i], r->layer);
    if (!known) return MC_FAIL(err, MC_ERR_ARG, "layer '%s' is not in extract.layers", r->layer);
    if (r->units == MC_UNIT_SAE && !mc_sae_applies(cfg, r->layer))
        return MC_FAIL(
            err, MC_ERR_ARG, "no SAE on layer '%s' (sae.layer is '%s'%s)", r->layer, cfg->sae.layer,
            mc_config_has_stage(cfg, MC_STAGE_SAE) ? "" : " and the sae stage is not listed");
    MC_TRY(mc_train_data_open(c, cfg, r->seed, td, err));
    mc_status s = mc_encoder_weights_load(c, cfg, td, r->seed, r->layer, r->variant, w, err);
    if (s == MC_OK) s = mc_unit_set_open(c, cfg, td, r->seed, r->layer, w, r->units, u, err);
    if (s != MC_OK) {
        mc_encoder_weights_free(w);
        mc_train_data_close(td);
    }
    return s;
}

mc_status mc_method_tasks_complete(const mc_comm *c, const mc_config *cfg, int stage,
                                   const mc_task *tasks, int n, bool *done, mc_error *err) {
    const bool loc = stage == MC_STAGE_LOCALIZE;
    const mc_enum_list *units = loc ? &cfg->localize.units : &cfg->describe.units;
    const mc_str_list *names = loc ? &cfg->localize.concepts : &cfg->describe.concepts;
    /* One seed's train store and concept sets serve all its tasks (sweep order: seeds outermost). */
    mc_method_task seed_mt;
    memset(&seed_mt, 0, sizeof seed_mt);
    bool have_seed = false;
    int64_t seed = 0;
    mc_status s = MC_OK;
    for (int t = 0; t < n && s == MC_OK; t++) {
        const mc_task *task = &tasks[t];
        if (!have_seed || seed != task->seed) {
            if (have_seed) mc_method_task_close(&seed_mt);
            have_seed = false;
            s = mc_train_data_open(c, cfg, task->seed, &seed_mt.td, err);
            if (s == MC_OK)
                s = mc_concepts_open(c, cfg, &seed_mt.td, names, &seed_mt.sets, &seed_mt.n_sets,
                                     err);
            if (s != MC_OK) {
                mc_method_task_close(&seed_mt);
                break;
            }
            have_seed = true, seed = task->seed;
        }
        /* What mc_method_task_find computes, less the completeness checks of E_n and the SAE (a
         * complete task store under this key was made from them). */
        mc_method_task mt = seed_mt;
        mt.tau = loc ? cfg->localize.tau : cfg->describe.tau;
        mt.n_kinds = 0;
        mc_run_paths rp;
        s = mc_align_paths(cfg, seed_mt.td.extract_key, task->seed, task->layer, task->variant, &rp,
                           err);
        if (s == MC_OK) mc_strlcpy(mt.w.key, rp.key, sizeof mt.w.key);
        for (int i = 0; s == MC_OK && i < units->n; i++) {
            if (units->v[i] == MC_UNIT_SAE && !mc_sae_applies(cfg, task->layer)) continue;
            s = mc_unit_set_ident(cfg, &seed_mt.td, task->seed, units->v[i],
                                  &mt.kinds[mt.n_kinds++], err);
        }
        if (s == MC_OK) s = method_key(cfg, task, stage, &mt, err);
        if (s == MC_OK) s = mc_store_peek_complete(c, mt.store, &done[t], err);
        if (s == MC_OK && done[t]) {
            mc_info0("%s %s: complete, skipping (%s)", mc_stage_name(stage), task->id, mt.store);
            if (!loc)
                s = mc_task_index_write(c, cfg, MC_STAGE_DESCRIBE, task, mt.store, mt.key, err);
        }
    }
    if (have_seed) mc_method_task_close(&seed_mt);
    return s;
}
