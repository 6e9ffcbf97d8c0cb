/* describe.c - the `describe` stage (top-tau concepts per unit, Eq. 4), the Markdown report
 * of the descriptions, and the interactive `miclip describe CONFIG --unit I` query.
 *
 * Unit rows are shared over ranks in fixed blocks (localize.c); each rank writes its rows of
 * the store, rank 0 gathers them for the CSV tables and the report. On the `logits` layer a
 * neuron's own class is known (unit i = class i of the target's id2label), so the report gives
 * the description accuracy of paper Table 1: the fraction of logit neurons whose top concept
 * is their own class. Output: OUTPUT_DIR/describe/<task>-<key16>.h5,
 * OUTPUT_DIR/tables/<task>-<set>-<units>.csv, OUTPUT_DIR/report/descriptions.md.
 */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
#include "miclip/plan.h"
#include "miclip/miclip.h"
#include "stages_internal.h"

#define REPORT_MAX_UNITS 16      /* units listed per table in the report (all logit neurons) */
#define KEEP_SIM_MAX (1ll << 24) /* the full similarity matrix is stored up to this size */

/* The report section of one (set, kind) on rank 0. Returns the description accuracy (NAN when
 * no unit has a known own class). */
static double report_table(mc_buf *b, const mc_task *task, const mc_method_task *mt,
                           const mc_concepts *cs, const mc_unit_set *u, const mc_scored *all,
                           int64_t tau) {
    const bool logits = !strcmp(task->layer, "logits") && u->kind == MC_UNIT_NEURON &&
                        u->n_units == mt->td.n_classes;
    int64_t known = 0, hits = 0;
    double acc =
        logits ? mc_describe_accuracy(cs, mt->td.class_names, u->n_units, all, tau, &known, &hits)
               : NAN;
    mc_buf_printf(b, "\n### %s, concept set `%s` (%lld concepts)\n\n",
                  u->kind == MC_UNIT_SAE ? "SAE features" : "neurons", cs->name, (long long)cs->n);
    if (logits && known) {
        mc_buf_printf(
            b,
            "Description accuracy (top concept = the neuron's own class): %lld / %lld = %.1f%%\n\n",
            (long long)hits, (long long)known, 100.0 * acc);
    }
    int64_t shown = u->n_units < REPORT_MAX_UNITS || logits ? u->n_units : REPORT_MAX_UNITS;
    mc_buf_printf(b, "| unit |%s top concepts (cosine) |\n|---|%s---|\n",
                  logits ? " own class | top is own |" : "", logits ? "---|---|" : "");
    for (int64_t i = 0; i < shown; i++) {
        mc_buf_printf(b, "| %lld |", (long long)i);
        if (logits) {
            int64_t own = mc_concept_index(cs, mt->td.class_names[i]);
            mc_buf_printf(b, " %s | %s |", mt->td.class_names[i],
                          own < 0                     ? "n/a"
                          : all[i * tau].index == own ? "yes"
                                                      : "no");
        }
        for (int64_t q = 0; q < tau; q++)
            mc_buf_printf(b, "%s %s (%.3f)", q ? "," : "", cs->texts[all[i * tau + q].index],
                          all[i * tau + q].score);
        mc_buf_printf(b, " |\n");
    }
    if (shown < u->n_units)
        mc_buf_printf(b, "\n(first %lld of %lld units; all of them in tables/%s-%s-%s.csv)\n",
                      (long long)shown, (long long)u->n_units, task->id, cs->name,
                      mc_unit_kind_name(u->kind));
    return acc;
}

static mc_status describe_one(const mc_comm *c, const mc_task *task, mc_method_task *mt,
                              mc_store *st, const mc_concepts *cs, const mc_unit_set *u,
                              mc_buf *report, mc_error *err) {
    const int64_t tau = mt->tau < cs->n ? mt->tau : cs->n, U = u->n_units;
    const bool keep = U * cs->n <= KEEP_SIM_MAX;
    mc_sim_result r;
    MC_TRY(mc_similarity(c, u, &mt->w, cs->emb, (const char *const *)cs->texts, cs->n, 0, tau, keep,
                         &r, err));
    const char *kind = mc_unit_kind_name(u->kind);
    char g[512], csv[MC_PATH_CAP];
    mc_snprintf(g, sizeof g, "%s/%s", cs->name, kind);
    mc_snprintf(csv, sizeof csv, "%s/%s-%s-%s.csv", mt->tables, task->id, cs->name, kind);
    mc_scored *all = NULL;
    mc_status s = mc_describe_write(c, st, g, &r, keep ? r.sim : NULL, cs, u->kind, u->sae_path,
                                    csv, &all, err);
    if (s == MC_OK) s = mc_store_set_attr_str(st, g, "reading", mc_unit_reading_name(u), err);
    double acc = NAN;
    if (s == MC_OK && c->rank == 0) acc = report_table(report, task, mt, cs, u, all, tau);
    free(all);
    if (s == MC_OK) s = mc_describe_set_accuracy(c, st, g, acc, err);
    mc_sim_result_free(&r);
    return s;
}

mc_status mc_stage_describe(const mc_comm *c, const mc_config *cfg, const mc_task *task,
                            mc_error *err) {
    mc_method_task mt;
    mc_store *st = NULL;
    bool done;
    mc_status s = mc_method_task_begin(c, cfg, task, MC_STAGE_DESCRIBE, &mt, &st, &done, err);
    if (done) return s;
    mc_buf report = {0};
    /* Paths relative to the output folder, so the report does not depend on where it lives. */
    size_t od = strlen(cfg->output_dir);
    const char *rel = strncmp(mt.w.path, cfg->output_dir, od) == 0 && mt.w.path[od] == '/'
                          ? mt.w.path + od + 1
                          : mt.w.path;
    mc_buf_printf(&report, "## seed %lld, layer `%s`, variant %s\n\nE_n: %s\n",
                  (long long)task->seed, task->layer, mc_variant_name(task->variant), rel);
    for (int i = 0; s == MC_OK && i < mt.n_sets; i++) {
        char g[300];
        mc_snprintf(g, sizeof g, "%s/concepts", mt.sets[i].name);
        s = mc_store_write_strings(st, g, (const char *const *)mt.sets[i].texts, mt.sets[i].n, true,
                                   err);
        for (int k = 0; s == MC_OK && k < mt.n_kinds; k++)
            s = describe_one(c, task, &mt, st, &mt.sets[i], &mt.kinds[k], &report, err);
    }
    /* The task's section of report/descriptions.md (the report stage assembles the file), before the
     * store is marked complete. */
    if (s == MC_OK) {
        mc_status ws = MC_OK;
        if (c->rank == 0) {
            char path[MC_PATH_CAP];
            mc_snprintf(path, sizeof path, "%s/report/descriptions/%s.md", cfg->output_dir,
                        task->id);
            ws = report.oom ? MC_FAIL(err, MC_ERR_NOMEM, "out of memory")
                            : mc_write_text_file(path, report.p, report.n, err);
        }
        s = mc_comm_agree(c, ws, err);
    }
    mc_buf_free(&report);
    s = mc_method_task_finish(cfg, task, &mt, "describe", &st, s, err);
    if (s == MC_OK) s = mc_task_index_write(c, cfg, MC_STAGE_DESCRIBE, task, mt.store, mt.key, err);
    mc_method_task_close(&mt);
    return s;
}

mc_status mc_query_describe(const mc_comm *c, const mc_config *cfg, const int64_t *units, int n,
                            const mc_query *q, FILE *out, mc_error *err) {
    mc_query r;
    mc_train_data td;
    mc_encoder_weights w;
    mc_unit_set u;
    MC_TRY(mc_query_open(c, cfg, q, &r, &td, &w, &u, err));
    mc_status s = MC_OK;
    for (int i = 0; i < n && s == MC_OK; i++)
        if (units[i] < 0 || units[i] >= u.n_units)
            s = MC_FAIL(err, MC_ERR_ARG, "unit %lld out of range: layer '%s' has %lld %s",
                        (long long)units[i], r.layer, (long long)u.n_units,
                        r.units == MC_UNIT_SAE ? "SAE features" : "neurons");
    mc_concepts *sets = NULL;
    int n_sets = 0;
    if (s == MC_OK) s = mc_concepts_load(c, cfg, &td, &cfg->describe.concepts, &sets, &n_sets, err);
    float *blk = mc_alloc_array(MC_UNIT_BLOCK, (size_t)w.d * sizeof(float));
    if (s == MC_OK && !blk) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    s = mc_comm_agree(c, s, err);
    for (int i = 0; i < n && s == MC_OK; i++) {
        /* The unit's embedding as its block computes it (the same numbers as the stages). */
        int64_t b0 = units[i] / MC_UNIT_BLOCK * MC_UNIT_BLOCK;
        int64_t b1 = b0 + MC_UNIT_BLOCK < u.n_units ? b0 + MC_UNIT_BLOCK : u.n_units;
        s = mc_unit_embed(c, &u, &w, b0, b1, false, blk, err);
        for (int k = 0; s == MC_OK && k < n_sets; k++) {
            const mc_concepts *cs = &sets[k];
            int64_t tau = r.tau > 0 ? r.tau : cfg->describe.tau;
            if (tau > cs->n) tau = cs->n;
            const int64_t len = b1 - b0, d = w.d;
            mc_scored *top = mc_alloc_array((size_t)tau, sizeof *top);
            float *cn = mc_alloc_array((size_t)cs->n, (size_t)d * sizeof(float));
            float *p = mc_alloc_array((size_t)len, (size_t)d * sizeof(float));
            float *S = mc_alloc_array((size_t)len, (size_t)cs->n * sizeof(float));
            int64_t *cls = mc_alloc_array((size_t)cs->n, sizeof(int64_t));
            double *qc = mc_alloc_array((size_t)cs->n, sizeof(double));
            if (!top || !cn || !p || !S || !cls || !qc) {
                free(top), free(cn), free(p), free(S), free(cls), free(qc);
                s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
                break;
            }
            /* The unit's scores as its block computes them in the stage (the same numbers). */
            memcpy(cn, cs->emb, (size_t)(cs->n * d) * sizeof(float));
            mc_normalize_rows_f(cn, cs->n, d);
            memcpy(p, blk, (size_t)(len * d) * sizeof(float));
            mc_concept_classes(&u, (const char *const *)cs->texts, cs->n, cls);
            mc_concept_qdots(&u, cn, cs->n, d, qc);
            mc_unit_scores_block(&u, d, p, len, b0, cn, cls, qc, cs->n, S);
            int64_t cnt = 0;
            for (int64_t j = 0; j < cs->n; j++)
                mc_top_insert(top, &cnt, tau, S[(units[i] - b0) * cs->n + j], (int32_t)j);
            free(p), free(S), free(cls), free(qc);
            if (c->rank == 0) {
                bool named = !strcmp(r.layer, "logits") && r.units == MC_UNIT_NEURON &&
                             u.n_units == td.n_classes;
                fprintf(out,
                        "%s %lld of layer %s%s%s%s (seed %lld, variant %s): top %lld concepts of "
                        "set '%s'\n",
                        r.units == MC_UNIT_SAE ? "SAE feature" : "neuron", (long long)units[i],
                        r.layer, named ? ", class \"" : "", named ? td.class_names[units[i]] : "",
                        named ? "\"" : "", (long long)r.seed, mc_variant_name(r.variant),
                        (long long)tau, cs->name);
                fprintf(out, "  rank  cosine    concept\n");
                for (int64_t q2 = 0; q2 < tau; q2++)
                    fprintf(out, "  %4lld  %.6f  %s\n", (long long)q2 + 1, top[q2].score,
                            cs->texts[top[q2].index]);
                fflush(out);
            }
            free(top), free(cn);
        }
    }
    free(blk);
    mc_concepts_free(&sets, n_sets);
    mc_unit_set_free(&u);
    mc_encoder_weights_free(&w);
    mc_train_data_close(&td);
    return s;
}

/* ---- the registry entry ----------------------------------------------------------------------- */

/* The complete tasks at once (stages.h: complete; method_task.h). */
static mc_status describe_complete(const mc_comm *c, const mc_config *cfg, const mc_task *tasks,
                                   int n, bool *done, mc_error *err) {
    return mc_method_tasks_complete(c, cfg, MC_STAGE_DESCRIBE, tasks, n, done, err);
}

const mc_stage_desc mc_describe_stage = {
    .stage = MC_STAGE_DESCRIBE,
    .summary = "the top-tau concepts of each unit (Eq. 4)",
    .outputs = "describe/<task>-<key16>.h5, tables/, report/descriptions.md",
    .check = NULL,
    .run = mc_stage_describe,
    .complete = describe_complete,
    .cost = mc_plan_unit_table_cost,
};
