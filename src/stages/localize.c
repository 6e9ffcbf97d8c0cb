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

#include <cblas.h>

#include "method_internal.h"
#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/log.h"
#include "miclip/miclip.h"
#include "miclip/text.h"
#include "stages_internal.h"

static const mc_scored EMPTY = {-INFINITY, INT32_MAX};

void mc_sim_result_free(mc_sim_result *r) {
    free(r->loc);
    free(r->desc);
    free(r->sim);
    memset(r, 0, sizeof *r);
}

/* MPI reduction: two top lists (one per element of the contiguous type) -> the top of both. */
static void merge_tops(void *in, void *inout, int *len, MPI_Datatype *dt) {
    int bytes = 0;
    MPI_Type_size(*dt, &bytes);
    int64_t tau = bytes / (int64_t)sizeof(mc_scored);
    mc_scored *a = in, *b = inout;
    mc_scored *t = mc_alloc_array((size_t)tau, sizeof *t);
    if (!t) {
        fprintf(stderr, "miclip: out of memory merging top-unit lists\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    for (int e = 0; e < *len; e++, a += tau, b += tau) {
        int64_t i = 0, j = 0;
        for (int64_t k = 0; k < tau; k++) t[k] = mc_scored_before(&a[i], &b[j]) ? a[i++] : b[j++];
        memcpy(b, t, (size_t)tau * sizeof *t);
    }
    free(t);
}

mc_status mc_similarity(const mc_comm *c, const mc_unit_set *u, const mc_encoder_weights *w,
                        const float *concept_emb, int64_t n_concepts, int64_t tau_u, int64_t tau_c,
                        bool keep_sim, mc_sim_result *r, mc_error *err) {
    memset(r, 0, sizeof *r);
    const int64_t U = u->n_units, Cn = n_concepts, d = w->d;
    int64_t nb = (U + MC_UNIT_BLOCK - 1) / MC_UNIT_BLOCK, b0, b1;
    mc_shard_range(nb, c->rank, c->size, &b0, &b1);
    r->n_units = U, r->n_concepts = Cn, r->tau_u = tau_u, r->tau_c = tau_c;
    r->u0 = b0 * MC_UNIT_BLOCK < U ? b0 * MC_UNIT_BLOCK : U;
    r->u1 = b1 * MC_UNIT_BLOCK < U ? b1 * MC_UNIT_BLOCK : U;
    const int64_t rows = r->u1 - r->u0;
    float *emb = mc_alloc_array((size_t)(rows > 0 ? rows : 1), (size_t)d * sizeof(float));
    float *cn = mc_alloc_array((size_t)Cn, (size_t)d * sizeof(float));
    float *S = mc_alloc_array(MC_UNIT_BLOCK, (size_t)Cn * sizeof(float));
    int64_t *cnt = mc_calloc_array((size_t)Cn + 1, sizeof(int64_t));
    if (tau_u > 0) r->loc = mc_alloc_array((size_t)Cn, (size_t)tau_u * sizeof(mc_scored));
    if (tau_c > 0) r->desc = mc_alloc_array((size_t)(rows > 0 ? rows : 1), (size_t)tau_c * sizeof(mc_scored));
    if (keep_sim) r->sim = mc_alloc_array((size_t)(rows > 0 ? rows : 1), (size_t)Cn * sizeof(float));
    mc_status s = MC_OK;
    if (!emb || !cn || !S || !cnt || (tau_u > 0 && !r->loc) || (tau_c > 0 && !r->desc) || (keep_sim && !r->sim))
        s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory for %lld units x %lld concepts", (long long)U, (long long)Cn);
    s = mc_comm_agree(c, s, err);
    if (s == MC_OK) s = mc_unit_embed(c, u, w, r->u0, r->u1, emb, err);
    if (s == MC_OK) {
        memcpy(cn, concept_emb, (size_t)(Cn * d) * sizeof(float));
        mc_normalize_rows_f(cn, Cn, d);
        for (int64_t i = 0; tau_u > 0 && i < Cn * tau_u; i++) r->loc[i] = EMPTY;
        for (int64_t b = 0; b < rows; b += MC_UNIT_BLOCK) {
            int64_t len = rows - b < MC_UNIT_BLOCK ? rows - b : MC_UNIT_BLOCK;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)len, (int)Cn, (int)d, 1.0f, emb + b * d,
                        (int)d, cn, (int)d, 0.0f, S, (int)Cn);
            if (keep_sim) memcpy(r->sim + b * Cn, S, (size_t)(len * Cn) * sizeof(float));
            for (int64_t i = 0; i < len; i++) {
                const float *row = S + i * Cn;
                int32_t unit = (int32_t)(r->u0 + b + i);
                if (tau_c > 0) {
                    mc_scored *top = r->desc + (b + i) * tau_c;
                    int64_t n = 0;
                    for (int64_t j = 0; j < Cn; j++) mc_top_insert(top, &n, tau_c, row[j], (int32_t)j);
                }
                for (int64_t j = 0; tau_u > 0 && j < Cn; j++)
                    mc_top_insert(r->loc + j * tau_u, &cnt[j], tau_u, row[j], unit);
            }
        }
        /* Ranks without rows keep EMPTY lists; the merge is exact and commutative. */
        if (tau_u > 0 && c->size > 1) {
            MPI_Datatype dt;
            MPI_Op op;
            MPI_Type_contiguous((int)(tau_u * (int64_t)sizeof(mc_scored)), MPI_BYTE, &dt);
            MPI_Type_commit(&dt);
            MPI_Op_create(merge_tops, 1, &op);
            int rc = MPI_Allreduce(MPI_IN_PLACE, r->loc, (int)Cn, dt, op, c->comm);
            MPI_Op_free(&op);
            MPI_Type_free(&dt);
            if (rc != MPI_SUCCESS) s = MC_FAIL(err, MC_ERR_MPI, "MPI_Allreduce of the top-unit lists failed");
        }
    }
    free(emb), free(cn), free(S), free(cnt);
    if (s != MC_OK) mc_sim_result_free(r);
    return s;
}

mc_status mc_sim_gather_desc(const mc_comm *c, const mc_sim_result *r, mc_scored **all, mc_error *err) {
    *all = NULL;
    int *cnt = calloc((size_t)c->size, sizeof(int)), *dsp = calloc((size_t)c->size, sizeof(int));
    mc_scored *buf = c->rank == 0 ? mc_alloc_array((size_t)(r->n_units > 0 ? r->n_units : 1),
                                                   (size_t)r->tau_c * sizeof(mc_scored)) : NULL;
    mc_status s = cnt && dsp && (c->rank != 0 || buf) ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    s = mc_comm_agree(c, s, err);
    if (s == MC_OK) {
        int64_t nb = (r->n_units + MC_UNIT_BLOCK - 1) / MC_UNIT_BLOCK;
        for (int q = 0; q < c->size; q++) {
            int64_t b0, b1;
            mc_shard_range(nb, q, c->size, &b0, &b1);
            int64_t u0 = b0 * MC_UNIT_BLOCK < r->n_units ? b0 * MC_UNIT_BLOCK : r->n_units;
            int64_t u1 = b1 * MC_UNIT_BLOCK < r->n_units ? b1 * MC_UNIT_BLOCK : r->n_units;
            cnt[q] = (int)((u1 - u0) * r->tau_c * (int64_t)sizeof(mc_scored));
            dsp[q] = (int)(u0 * r->tau_c * (int64_t)sizeof(mc_scored));
        }
        int mine = (int)((r->u1 - r->u0) * r->tau_c * (int64_t)sizeof(mc_scored));
        if (MPI_Gatherv(r->desc, mine, MPI_BYTE, buf, cnt, dsp, MPI_BYTE, 0, c->comm) != MPI_SUCCESS)
            s = MC_FAIL(err, MC_ERR_MPI, "MPI_Gatherv of descriptions failed");
    }
    free(cnt), free(dsp);
    if (s == MC_OK) *all = buf;
    else free(buf);
    return s;
}

/* ---- one localize/describe task --------------------------------------------------------------- */

void mc_method_task_close(mc_method_task *mt) {
    mc_concepts_free(&mt->sets, mt->n_sets);
    mc_encoder_weights_free(&mt->w);
    mc_train_data_close(&mt->td);
    memset(mt, 0, sizeof *mt);
}

mc_status mc_method_task_open(const mc_comm *c, const mc_config *cfg, const mc_task *task, int stage,
                              mc_method_task *mt, mc_error *err) {
    memset(mt, 0, sizeof *mt);
    const bool loc = stage == MC_STAGE_LOCALIZE;
    const mc_enum_list *units = loc ? &cfg->localize.units : &cfg->describe.units;
    const mc_str_list *names = loc ? &cfg->localize.concepts : &cfg->describe.concepts;
    mt->tau = loc ? cfg->localize.tau : cfg->describe.tau;
    MC_TRY(mc_train_data_open(c, cfg, task->seed, &mt->td, err));
    mc_status s = mc_encoder_weights_load(c, cfg, &mt->td, task->seed, task->layer, task->variant, &mt->w, err);
    for (int i = 0; s == MC_OK && i < units->n; i++) {
        if (units->v[i] == MC_UNIT_SAE && !mc_sae_applies(cfg, task->layer)) {
            mc_info0("%s %s: no SAE on layer '%s' (sae.layer is '%s'%s); neurons only", mc_stage_name(stage), task->id,
                     task->layer, cfg->sae.layer, mc_config_has_stage(cfg, MC_STAGE_SAE) ? "" : ", sae stage not listed");
            continue;
        }
        s = mc_unit_set_open(c, cfg, &mt->td, task->seed, &mt->w, units->v[i], &mt->kinds[mt->n_kinds], err);
        if (s == MC_OK) mt->n_kinds++;
    }
    if (s == MC_OK) s = mc_concepts_load(c, cfg, &mt->td, names, &mt->sets, &mt->n_sets, err);
    if (s == MC_OK) {
        mc_buf b = {0};
        mc_buf_printf(&b, "miclip-%s/1\ncode=%s\nalign=%s\ntau=%lld\n", mc_stage_name(stage), MICLIP_CACHE_VERSION,
                      mt->w.key, (long long)mt->tau);
        for (int k = 0; k < mt->n_kinds; k++)
            mc_buf_printf(&b, "units=%s:%s\n", mc_unit_kind_name(mt->kinds[k].kind), mt->kinds[k].sae_key);
        for (int k = 0; k < mt->n_sets; k++) mc_buf_printf(&b, "set=%s:%s\n", mt->sets[k].name, mt->sets[k].key);
        if (b.oom) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        else mc_key_of(b.p, mt->key);
        mc_buf_free(&b);
    }
    if (s == MC_OK &&
        !(mc_snprintf(mt->store, sizeof mt->store, "%s/%s/%s-%.16s.h5", cfg->output_dir, mc_stage_name(stage), task->id, mt->key) &&
          mc_snprintf(mt->tables, sizeof mt->tables, "%s/tables", cfg->output_dir)))
        s = MC_FAIL(err, MC_ERR_ARG, "output path too long under %s", cfg->output_dir);
    if (s != MC_OK) mc_method_task_close(mt);
    return s;
}

/* ---- the localize stage ----------------------------------------------------------------------- */

mc_status mc_localize_write(const mc_comm *c, mc_store *st, const char *g, const mc_concepts *cs, int64_t tau,
                            const int32_t *idx, const float *sc, int64_t n_units, int kind, const char *sae_path,
                            const char *csv_path, mc_error *err) {
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
    if (s == MC_OK && kind == MC_UNIT_SAE) s = mc_store_set_attr_str(st, g, "sae_store", sae_path, err);
    if (s == MC_OK) {
        mc_status ws = MC_OK;
        if (root) {
            mc_buf b = {0};
            mc_buf_printf(&b, "concept_index,concept,rank,%s,score\n", kind_name);
            for (int64_t j = 0; j < cs->n; j++)
                for (int64_t q = 0; q < tau; q++) {
                    mc_buf_printf(&b, "%lld,", (long long)j);
                    mc_buf_csv(&b, cs->texts[j]);
                    mc_buf_printf(&b, ",%lld,%d,%.6f\n", (long long)q + 1, idx[j * tau + q], sc[j * tau + q]);
                }
            ws = b.oom ? MC_FAIL(err, MC_ERR_NOMEM, "out of memory") : mc_write_text_file(csv_path, b.p, b.n, err);
            mc_buf_free(&b);
        }
        s = mc_comm_agree(c, ws, err);
    }
    return s;
}

static mc_status localize_one(const mc_comm *c, const mc_task *task, mc_method_task *mt, mc_store *st,
                              const mc_concepts *cs, const mc_unit_set *u, mc_error *err) {
    int64_t tau = mt->tau < u->n_units ? mt->tau : u->n_units;
    mc_sim_result r;
    MC_TRY(mc_similarity(c, u, &mt->w, cs->emb, cs->n, tau, 0, false, &r, err));
    const char *kind = mc_unit_kind_name(u->kind);
    char g[512], csv[MC_PATH_CAP];
    mc_snprintf(g, sizeof g, "%s/%s", cs->name, kind);
    mc_snprintf(csv, sizeof csv, "%s/%s-%s-%s.csv", mt->tables, task->id, cs->name, kind);
    int32_t *idx = mc_alloc_array((size_t)(cs->n * tau), sizeof(int32_t));
    float *sc = mc_alloc_array((size_t)(cs->n * tau), sizeof(float));
    mc_status s = mc_comm_agree(c, idx && sc ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory"), err);
    for (int64_t i = 0; s == MC_OK && i < cs->n * tau; i++) idx[i] = r.loc[i].index, sc[i] = r.loc[i].score;
    if (s == MC_OK) s = mc_localize_write(c, st, g, cs, tau, idx, sc, u->n_units, u->kind, u->sae_path, csv, err);
    free(idx), free(sc);
    mc_sim_result_free(&r);
    return s;
}

mc_status mc_stage_localize(const mc_comm *c, const mc_config *cfg, const mc_task *task, mc_error *err) {
    mc_method_task mt;
    MC_TRY(mc_method_task_open(c, cfg, task, MC_STAGE_LOCALIZE, &mt, err));
    bool complete = false;
    mc_status s = mc_store_peek_complete(c, mt.store, &complete, err);
    if (s != MC_OK || complete) {
        if (complete) mc_info0("localize %s: complete, skipping (%s)", task->id, mt.store);
        mc_method_task_close(&mt);
        return s;
    }
    char dir[MC_PATH_CAP];
    mc_snprintf(dir, sizeof dir, "%s/localize", cfg->output_dir);
    s = mc_comm_agree(c, c->rank == 0 ? mc_mkdir_p(dir, err) : MC_OK, err);
    mc_store *st = NULL;
    if (s == MC_OK) s = mc_store_fresh(c, mt.store, &st, err);
    for (int i = 0; s == MC_OK && i < mt.n_sets; i++) {
        char g[300];
        mc_snprintf(g, sizeof g, "%s/concepts", mt.sets[i].name);
        s = mc_store_write_strings(st, g, (const char *const *)mt.sets[i].texts, mt.sets[i].n, true, err);
        for (int k = 0; s == MC_OK && k < mt.n_kinds; k++)
            s = localize_one(c, task, &mt, st, &mt.sets[i], &mt.kinds[k], err);
    }
    s = mc_method_task_finish(cfg, task, &mt, "localize", &st, s, err);
    mc_method_task_close(&mt);
    return s;
}

/* ---- queries ------------------------------------------------------------------------------------- */

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
    for (int i = 0; i < cfg->extract.layers.n; i++) known |= !strcmp(cfg->extract.layers.v[i], r->layer);
    if (!known) return MC_FAIL(err, MC_ERR_ARG, "layer '%s' is not in extract.layers", r->layer);
    if (r->units == MC_UNIT_SAE && !mc_sae_applies(cfg, r->layer))
        return MC_FAIL(err, MC_ERR_ARG, "no SAE on layer '%s' (sae.layer is '%s'%s)", r->layer, cfg->sae.layer,
                       mc_config_has_stage(cfg, MC_STAGE_SAE) ? "" : " and the sae stage is not listed");
    MC_TRY(mc_train_data_open(c, cfg, r->seed, td, err));
    mc_status s = mc_encoder_weights_load(c, cfg, td, r->seed, r->layer, r->variant, w, err);
    if (s == MC_OK) s = mc_unit_set_open(c, cfg, td, r->seed, w, r->units, u, err);
    if (s != MC_OK) {
        mc_encoder_weights_free(w);
        mc_train_data_close(td);
    }
    return s;
}

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
    mc_status s = emb ? mc_text_encoder_load(cfg->models.clip, NULL, &enc, err) : MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    if (s == MC_OK && mc_text_encoder_dim(enc) != td.clip_dim)
        s = MC_FAIL(err, MC_ERR_SHAPE, "%s: text width %d, image embeddings %lld", cfg->models.clip,
                    mc_text_encoder_dim(enc), (long long)td.clip_dim);
    if (s == MC_OK) s = mc_text_embed(enc, texts, (size_t)n, cfg->align.prompt, false, emb, err);
    s = mc_comm_agree(c, s, err);
    mc_sim_result res = {0};
    if (s == MC_OK) s = mc_similarity(c, &u, &w, emb, n, tau, 0, false, &res, err);
    if (s == MC_OK && c->rank == 0) {
        for (int i = 0; i < n; i++) {
            fprintf(out, "concept \"%s\" (prompt \"%s\"): top %lld %s%s of layer %s (seed %lld, variant %s, %lld units)\n",
                    texts[i], cfg->align.prompt, (long long)tau, r.units == MC_UNIT_SAE ? "SAE feature" : "neuron",
                    tau == 1 ? "" : "s", r.layer, (long long)r.seed, mc_variant_name(r.variant), (long long)u.n_units);
            /* A logit neuron is a class of the target: name it. */
            bool named = !strcmp(r.layer, "logits") && r.units == MC_UNIT_NEURON && u.n_units == td.n_classes;
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
    mc_encoder_weights_free(&w);
    mc_train_data_close(&td);
    return s;
}
