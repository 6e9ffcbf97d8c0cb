/* report_scores.c - the open-vocabulary scores of paper Table 1 (docs/report.md "CLIP and MPNet
 * scores"): for every describe and baselines task on `logits` and every concept set, the mean
 * over the logit neurons of the cosine between the text embedding of the neuron's top
 * description and that of its own class name, in CLIP's text space (both texts put into
 * align.prompt, as the concept sets are embedded) and in the MPNet sentence space (the texts
 * alone, mean-pooled and normalised as sentence-transformers does).
 *
 * Inputs: the describe layout of each store found through the task index (top_concepts [U, tau]
 * and the set's concept strings), the class names of the seed's extraction store, the CLIP and
 * MPNet folders of the config. The embeddings are cached in OUTPUT_DIR/concepts/text_cache.h5,
 * each text embedded in a forward of its own (mc_text_embed_cached_ex), so the scores are the
 * same bytes at any rank count and whatever an earlier run cached.
 */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "method/task_index.h"
#include "method/train_data.h"
#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/log.h"
#include "miclip/miclip.h"
#include "miclip/text.h"
#include "report_internal.h"
#include "stages_internal.h"

void mc_report_scores_free(mc_report_scores *s) {
    free(s->v);
    memset(s, 0, sizeof *s);
}

/* One (task, concept set) whose describe layout has top concepts for the logit neurons. */
typedef struct {
    char method[MC_REPORT_NAME_CAP], set[128];
    int64_t seed, n_units;
    char **desc;    /* [n_units] each neuron's top description (owned) */
    int32_t *d_idx; /* [n_units] index of desc[i] in the unique texts */
} item;

typedef struct {
    item *v;
    int n, cap;
} items;

static void items_free(items *it) {
    for (int i = 0; i < it->n; i++) {
        mc_strings_free(&it->v[i].desc, it->v[i].n_units);
        free(it->v[i].d_idx);
    }
    free(it->v);
    memset(it, 0, sizeof *it);
}

static const char *set_name(const mc_config *cfg, int i) {
    return cfg->concepts.n > 0 ? cfg->concepts.v[i].name : "classes";
}

/* Collective. Reads the top description of every logit neuron of every set from the store of each
 * `logits` task of stage. */
static mc_status read_items(const mc_comm *c, const mc_config *cfg, int stage, items *out,
                            mc_error *err) {
    mc_task *tasks = NULL;
    int n = 0;
    MC_TRY(mc_config_tasks(cfg, stage, &tasks, &n, err));
    const bool bl = stage == MC_STAGE_BASELINES;
    mc_status s = MC_OK;
    for (int t = 0; t < n && s == MC_OK; t++) {
        const mc_task *task = &tasks[t];
        if (!task->layer || strcmp(task->layer, "logits")) continue;
        char path[MC_PATH_CAP], key[MC_KEY_HEX];
        s = mc_comm_agree(c, mc_task_index_find(cfg, stage, task, path, sizeof path, key, err),
                          err);
        mc_store *st = NULL;
        if (s == MC_OK) s = mc_store_open(c, path, MC_STORE_READ, &st, err);
        const int n_sets = cfg->concepts.n > 0 ? cfg->concepts.n : 1;
        for (int i = 0; s == MC_OK && i < n_sets; i++) {
            char g[400], name[450];
            mc_snprintf(g, sizeof g, "%s%s/neuron", bl ? "describe/" : "", set_name(cfg, i));
            mc_snprintf(name, sizeof name, "%s/top_concepts", g);
            if (!mc_store_exists(st, name)) continue; /* no describe layout: nothing to score */
            mc_store_dataset_info info;
            s = mc_store_dataset_info_get(st, name, &info, err);
            if (s == MC_OK && (info.ndim != 2 || info.shape[0] < 1 || info.shape[1] < 1 ||
                               info.shape[0] > INT32_MAX))
                s = MC_FAIL(err, MC_ERR_SHAPE, "%s: %s is not [units, tau]", path, name);
            s = mc_comm_agree(c, s, err);
            if (s != MC_OK) break;
            const int64_t U = info.shape[0], tau = info.shape[1];
            int32_t *top = mc_alloc_array((size_t)(U * tau), sizeof *top);
            s = mc_comm_agree(c, top ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory"), err);
            if (s == MC_OK) s = mc_store_read_rows(st, name, MC_DTYPE_I32, 0, U, top, err);
            char **concepts = NULL;
            int64_t n_con = 0;
            mc_snprintf(name, sizeof name, "%s%s/concepts", bl ? "describe/" : "",
                        set_name(cfg, i));
            if (s == MC_OK) s = mc_store_read_strings(st, name, &concepts, &n_con, err);
            item it = {.seed = task->seed, .n_units = U};
            if (s == MC_OK) {
                mc_strlcpy(it.set, set_name(cfg, i), sizeof it.set);
                if (bl)
                    mc_snprintf(it.method, sizeof it.method, "%s", mc_method_name(task->method));
                else
                    mc_snprintf(it.method, sizeof it.method, "miclip (%s)",
                                mc_variant_name(task->variant));
                it.desc = calloc((size_t)U, sizeof *it.desc);
                if (!it.desc) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
            }
            for (int64_t u = 0; s == MC_OK && u < U; u++) {
                int32_t j = top[u * tau];
                if (j < 0 || j >= n_con)
                    s = MC_FAIL(
                        err, MC_ERR_FORMAT,
                        "%s: %s/top_concepts[%lld, 0] = %d is not a concept of the set (%lld)",
                        path, g, (long long)u, j, (long long)n_con);
                else if (!(it.desc[u] = mc_strdup(concepts[j])))
                    s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
            }
            if (s == MC_OK && out->n == out->cap) {
                int cap = out->cap ? 2 * out->cap : 16;
                void *p = realloc(out->v, (size_t)cap * sizeof *out->v);
                if (!p)
                    s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
                else
                    out->v = p, out->cap = cap;
            }
            if (s == MC_OK)
                out->v[out->n++] = it;
            else
                mc_strings_free(&it.desc, U);
            mc_strings_free(&concepts, n_con);
            free(top);
            s = mc_comm_agree(c, s, err);
        }
        if (st) mc_store_close(&st, NULL);
        s = mc_comm_agree(c, s, err);
    }
    mc_tasks_free(&tasks);
    return s;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int32_t text_index(char **uniq, int64_t n, const char *t) {
    char *const *p = bsearch(&t, uniq, (size_t)n, sizeof *uniq, cmp_str);
    return p ? (int32_t)(p - uniq) : -1;
}

/* cos(a, b) in double; 0 when either row is zero. */
static double cosine(const float *a, const float *b, int64_t d) {
    double ab = 0, aa = 0, bb = 0;
    for (int64_t k = 0; k < d; k++)
        ab += (double)a[k] * b[k], aa += (double)a[k] * a[k], bb += (double)b[k] * b[k];
    return aa > 0 && bb > 0 ? ab / (sqrt(aa) * sqrt(bb)) : 0.0;
}

/* Collective. Embeds the n unique texts with the encoder in dir (template tmpl) through the cache
 * store at cpath; *emb [n * dim] malloc'd. The store is opened for writing only when it lacks a
 * text, so a rerun leaves the file untouched. */
static mc_status embed_all(const mc_comm *c, const mc_config *cfg, const char *cpath,
                           const char *dir, const char *what, char **texts, int64_t n,
                           const char *tmpl, float **emb, int64_t *dim, mc_error *err) {
    mc_text_encoder *enc = NULL;
    MC_TRY(mc_comm_agree(c, mc_text_encoder_load(dir, NULL, &enc, err), err));
    *dim = mc_text_encoder_dim(enc);
    *emb = mc_alloc_array((size_t)n, (size_t)*dim * sizeof(float));
    mc_status s = mc_comm_agree(c, *emb ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory"), err);
    int exists = c->rank == 0 ? mc_file_exists(cpath) : 0;
    MPI_Bcast(&exists, 1, MPI_INT, 0, c->comm);
    size_t missing = (size_t)n, computed = 0;
    mc_store *cache = NULL;
    if (s == MC_OK && exists) {
        s = mc_store_open(c, cpath, MC_STORE_READ, &cache, err);
        if (s == MC_OK)
            s = mc_text_cache_missing(c, cache, enc, (const char *const *)texts, (size_t)n, tmpl,
                                      true, &missing, err);
        if (s == MC_OK && missing > 0) s = mc_store_close(&cache, err);
    }
    bool created = false;
    if (s == MC_OK && missing > 0) s = mc_store_open_or_create(c, cpath, &cache, &created, err);
    if (s == MC_OK && created) { /* the run that started the cache, like every store's provenance */
        mc_store_provenance prov = {.stage = "report", .config_hash = cfg->hash};
        s = mc_store_write_provenance(cache, "/", &prov, err);
    }
    if (s == MC_OK)
        s = mc_text_embed_cached_ex(c, cache, enc, (const char *const *)texts, (size_t)n, tmpl,
                                    true, *emb, &computed, err);
    if (cache) {
        mc_error ce = {0};
        mc_status cs = mc_store_close(&cache, &ce);
        if (s == MC_OK && cs != MC_OK) *err = ce, s = cs;
    }
    if (s == MC_OK)
        mc_info0("report: %s text embeddings of %lld texts (%zu computed, the rest cached)", what,
                 (long long)n, computed);
    mc_text_encoder_free(&enc);
    return s;
}

mc_status mc_report_scores_compute(const mc_comm *c, const mc_config *cfg, mc_report_scores *out,
                                   mc_error *err) {
    memset(out, 0, sizeof *out);
    items it = {0};
    mc_status s = MC_OK;
    if (mc_config_has_stage(cfg, MC_STAGE_DESCRIBE))
        s = read_items(c, cfg, MC_STAGE_DESCRIBE, &it, err);
    if (s == MC_OK && mc_config_has_stage(cfg, MC_STAGE_BASELINES))
        s = read_items(c, cfg, MC_STAGE_BASELINES, &it, err);
    if (s != MC_OK || it.n == 0) {
        items_free(&it);
        return s;
    }
    /* The class names of each seed (the ground truth: logit neuron i is class i). */
    const int n_seeds = cfg->seeds.n;
    char ***names = calloc((size_t)n_seeds, sizeof *names);
    int64_t *n_names = calloc((size_t)n_seeds, sizeof *n_names);
    s = mc_comm_agree(c, names && n_names ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory"),
                      err);
    for (int k = 0; s == MC_OK && k < n_seeds; k++) {
        bool used = false;
        for (int i = 0; i < it.n; i++) used |= it.v[i].seed == cfg->seeds.v[k];
        if (!used) continue;
        mc_train_data td;
        s = mc_train_data_open(c, cfg, cfg->seeds.v[k], &td, err);
        if (s != MC_OK) break;
        names[k] = calloc((size_t)td.n_classes + 1, sizeof **names);
        mc_status ls = names[k] ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        for (int64_t j = 0; ls == MC_OK && j < td.n_classes; j++, n_names[k]++)
            if (!(names[k][j] = mc_strdup(td.class_names[j])))
                ls = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        mc_train_data_close(&td);
        s = mc_comm_agree(c, ls, err);
    }
    /* Which class list each item uses; items whose unit count is not the class count are not logit
     * neurons of a classifier (nothing to compare with) and are dropped. */
    int64_t total = 0;
    int *seed_of = calloc((size_t)it.n + 1, sizeof *seed_of);
    if (s == MC_OK && !seed_of) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    for (int i = 0; s == MC_OK && i < it.n; i++) {
        seed_of[i] = -1;
        for (int k = 0; k < n_seeds; k++)
            if (cfg->seeds.v[k] == it.v[i].seed) seed_of[i] = k;
        if (seed_of[i] >= 0 && it.v[i].n_units == n_names[seed_of[i]])
            total += 2 * it.v[i].n_units;
        else
            seed_of[i] = -1;
    }
    /* The unique texts (sorted, so the list and hence the cache's new part do not depend on ranks). */
    char **all = s == MC_OK ? mc_alloc_array((size_t)total + 1, sizeof *all) : NULL;
    if (s == MC_OK && !all) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    int64_t n_all = 0;
    for (int i = 0; s == MC_OK && i < it.n; i++) {
        if (seed_of[i] < 0) continue;
        for (int64_t u = 0; u < it.v[i].n_units; u++) {
            all[n_all++] = it.v[i].desc[u];
            all[n_all++] = names[seed_of[i]][u];
        }
    }
    int64_t n_uniq = 0;
    if (s == MC_OK && n_all) {
        qsort(all, (size_t)n_all, sizeof *all, cmp_str);
        for (int64_t i = 0; i < n_all; i++)
            if (!n_uniq || strcmp(all[n_uniq - 1], all[i])) all[n_uniq++] = all[i];
    }
    float *e_clip = NULL, *e_mp = NULL;
    int64_t d_clip = 0, d_mp = 0;
    const bool mpnet = cfg->models.mpnet && cfg->models.mpnet[0];
    s = mc_comm_agree(c, s, err);
    if (s == MC_OK && n_uniq) {
        char dir[MC_PATH_CAP], cpath[MC_PATH_CAP];
        mc_snprintf(dir, sizeof dir, "%s/concepts", cfg->output_dir);
        mc_snprintf(cpath, sizeof cpath, "%s/text_cache.h5", dir);
        s = mc_comm_agree(c, c->rank == 0 ? mc_mkdir_p(dir, err) : MC_OK, err);
        if (s == MC_OK)
            s = embed_all(c, cfg, cpath, cfg->models.clip, "CLIP", all, n_uniq, cfg->align.prompt,
                          &e_clip, &d_clip, err);
        if (s == MC_OK && mpnet)
            s = embed_all(c, cfg, cpath, cfg->models.mpnet, "MPNet", all, n_uniq, NULL, &e_mp,
                          &d_mp, err);
    }
    /* The scores: mean over the neurons in unit order, in double, the same on every rank. */
    if (s == MC_OK) {
        out->v = calloc((size_t)it.n + 1, sizeof *out->v);
        if (!out->v) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    out->have_mpnet = mpnet;
    for (int i = 0; s == MC_OK && i < it.n; i++) {
        if (seed_of[i] < 0) continue;
        const item *x = &it.v[i];
        double sc = 0, sm = 0;
        for (int64_t u = 0; u < x->n_units; u++) {
            int32_t a = text_index(all, n_uniq, x->desc[u]),
                    b = text_index(all, n_uniq, names[seed_of[i]][u]);
            MC_ASSERT(a >= 0 && b >= 0);
            sc += cosine(e_clip + a * d_clip, e_clip + b * d_clip, d_clip);
            if (mpnet) sm += cosine(e_mp + a * d_mp, e_mp + b * d_mp, d_mp);
        }
        mc_report_score *r = &out->v[out->n++];
        mc_strlcpy(r->method, x->method, sizeof r->method);
        mc_strlcpy(r->set, x->set, sizeof r->set);
        r->seed = x->seed;
        r->n_units = x->n_units;
        r->clip = sc / (double)x->n_units;
        r->mpnet = mpnet ? sm / (double)x->n_units : NAN;
    }
    free(e_clip), free(e_mp), free(all), free(seed_of);
    for (int k = 0; names && k < n_seeds; k++) mc_strings_free(&names[k], n_names[k]);
    free(names), free(n_names);
    items_free(&it);
    if (s != MC_OK) mc_report_scores_free(out);
    return s;
}
