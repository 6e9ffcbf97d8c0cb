/* report_site.c - the report's static results site: OUTPUT_DIR/report/index.html and
 * report/site/ (docs/report.md, "The results site").
 *
 * Which units: the units the report names, i.e. the units miclip edits for each class of the
 * eval dataset (the `units` of the first seed's intervene stores, layer intervene.layer) and the
 * first 16 (those descriptions.md lists), per unit kind. For each: a grid of its top SITE_TOP
 * eval images with its activation as a heat map (ViT: per patch token; ResNet: the spatial map,
 * upsampled), its top descriptions from the describe store (first variant) and every baselines
 * store of that seed and layer, and the per-class effect of every edit that included it.
 *
 * Where the numbers come from (nothing is recomputed with the model): the intervene prefix cache
 * of the eval dataset holds the layer's whole state per image ([n, T, D] or [n, C, H, W], what a
 * READ hook sees), so the ranking (the pooled vector as extract pools it; an SAE feature: the
 * SAE's top-k code of that vector) and the per-token maps (a feature: the code of each token) are
 * read from it; the images are read back from the dataset by the extraction store's paths at the
 * prefix's image_index, and shown as the target's preprocessor crops them (so the map lies on
 * what the model saw). Cost: one pass over the prefix state and one SAE encoding of the pooled
 * rows, then SITE_TOP rows per unit.
 *
 * Collectivity: every rank opens the stores and reads their small datasets (collective reads);
 * rank 0 alone reads the prefix state (local reads), ranks the images, loads them, draws the
 * grids and writes every file, each only when its bytes change. Statuses are agreed after each
 * phase, so an error ends every rank.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "method/extract_key.h"
#include "method/task_index.h"
#include "method/training.h"
#include "miclip/buf.h"
#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/image.h"
#include "miclip/log.h"
#include "miclip/model.h"
#include "miclip/plot.h"
#include "miclip/store.h"
#include "miclip/train.h"
#include "report_internal.h"
#include "stages_internal.h"

#define SITE_TOP 8    /* images per unit */
#define SITE_COLS 4   /* grid columns */
#define SITE_TILE 128 /* px per grid tile */
#define SITE_CHUNK 64 /* prefix rows per read in the ranking pass */
#define SITE_DESCRIBED                                                                             \
    16 /* the units descriptions.md lists per layer (describe.c REPORT_MAX_UNITS) */

/* One edit's effect per class: an intervene task's eval group of one unit kind. */
typedef struct {
    int method, mode, kind;
    double beta;
    int64_t C, tau;
    int32_t *units;       /* [C, tau] */
    double *dacc, *dprob; /* [C], percentage points (NAN: no images) */
} edit_rec;

/* One unit's descriptions from one source (a method) and concept set. */
typedef struct {
    char method[64], set[128];
    int kind;
    int64_t U, tau, n_con;
    int32_t *top; /* [U, tau] */
    float *score; /* [U, tau] */
    char **con;   /* [n_con] */
} desc_src;

/* One reported unit and its evidence. */
typedef struct {
    int kind;
    int32_t unit;
    int n;                  /* top images found (SAE: those where the feature fires) */
    int64_t rows[SITE_TOP]; /* prefix rows, best first */
    float act[SITE_TOP];
    float *heat; /* [SITE_TOP, P] or NULL */
} unit_ev;

typedef struct {
    const mc_config *cfg;
    int64_t seed;
    int64_t C;
    char **classes; /* [C], the eval dataset's classes */
    char **paths;   /* [n_paths], the extraction store's image paths */
    int64_t n_paths;
    edit_rec *edits;
    int n_edits;
    desc_src *descs;
    int n_descs;
    unit_ev *units;
    int n_units;
    /* the prefix cache */
    int64_t n, T, D, P, gw, gh; /* rows, tokens (map: H*W), width (map: C), heat cells and grid */
    bool map;
    int ndim;
    int64_t shape[3];
    int64_t *image_index; /* [n] */
    int32_t *labels;      /* [n] */
    char prefix_path[MC_PATH_CAP], sae_path[MC_PATH_CAP];
    char skip[MC_PATH_CAP + 200]; /* why there are no unit pages; "" when there are */
} site;

static void site_free(site *S) {
    mc_strings_free(&S->classes, S->C);
    mc_strings_free(&S->paths, S->n_paths);
    for (int i = 0; i < S->n_edits; i++)
        free(S->edits[i].units), free(S->edits[i].dacc), free(S->edits[i].dprob);
    for (int i = 0; i < S->n_descs; i++) {
        free(S->descs[i].top), free(S->descs[i].score);
        mc_strings_free(&S->descs[i].con, S->descs[i].n_con);
    }
    for (int i = 0; i < S->n_units; i++) free(S->units[i].heat);
    free(S->edits), free(S->descs), free(S->units), free(S->image_index), free(S->labels);
    memset(S, 0, sizeof *S);
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* OUTPUT_DIR/<dir>/<file name of attr>: a store named by an attribute, found in this output
 * folder even when the folder was moved (a cluster's scratch copied home). */
static mc_status store_beside(const mc_config *cfg, const char *dir, const char *attr, char *out,
                              mc_error *err) {
    if (!mc_snprintf(out, MC_PATH_CAP, "%s/%s/%s", cfg->output_dir, dir, base_name(attr)))
        return MC_FAIL(err, MC_ERR_ARG, "report: site: path too long: %s/%s/%s", cfg->output_dir,
                       dir, base_name(attr));
    return MC_OK;
}

/* Collective. Reads the 1-D or 2-D dataset name with first dimension rows (and second cols, or
 * 1) into a malloc'd buffer of elem-byte elements. */
static mc_status read_all(mc_store *st, const char *path, const char *name, mc_dtype dt,
                          size_t elem, int64_t rows, int64_t cols, void **out, mc_error *err) {
    *out = NULL;
    mc_store_dataset_info info;
    if (!mc_store_exists(st, name))
        return MC_FAIL(err, MC_ERR_FORMAT, "%s: no dataset '%s'", path, name);
    MC_TRY(mc_store_dataset_info_get(st, name, &info, err));
    if (info.shape[0] != rows ||
        (cols > 1 ? info.ndim != 2 || info.shape[1] != cols : info.ndim != 1))
        return MC_FAIL(err, MC_ERR_SHAPE, "%s: '%s' is not [%lld%s%lld]", path, name,
                       (long long)rows, cols > 1 ? ", " : "", cols > 1 ? (long long)cols : 0LL);
    *out = mc_alloc_array((size_t)(rows * cols) + 1, elem);
    if (!*out) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    mc_status s = mc_store_read_rows(st, name, dt, 0, rows, *out, err);
    if (s != MC_OK) free(*out), *out = NULL;
    return s;
}

/* Collective. The store of task (found through the task index, complete, opened read-only). */
static mc_status open_task_store(const mc_comm *c, const mc_config *cfg, int stage,
                                 const mc_task *task, char *path, mc_store **st, mc_error *err) {
    char key[MC_KEY_HEX];
    MC_TRY(
        mc_comm_agree(c, mc_task_index_find(cfg, stage, task, path, MC_PATH_CAP, key, err), err));
    bool complete = false;
    MC_TRY(mc_store_peek_complete(c, path, &complete, err));
    if (!complete)
        return MC_FAIL(err, MC_ERR_ARG,
                       "report: site: %s is incomplete: rerun the %s stage (task %s)", path,
                       mc_stage_name(stage), task->id);
    return mc_store_open(c, path, MC_STORE_READ, st, err);
}

/* ---- reading ----------------------------------------------------------------------------------- */

/* Collective. Every intervene task of the first seed: the eval group of each unit kind. miclip's
 * other E_n variants (intervene.variants) are left out: the site shows the first variant, as its
 * describe column does. */
static mc_status read_edits(const mc_comm *c, site *S, mc_error *err) {
    const mc_config *cfg = S->cfg;
    mc_task *tasks = NULL;
    int n = 0;
    MC_TRY(mc_config_tasks(cfg, MC_STAGE_INTERVENE, &tasks, &n, err));
    mc_status s = MC_OK;
    for (int t = 0; t < n && s == MC_OK; t++) {
        const mc_task *task = &tasks[t];
        if (task->seed != S->seed || task->variant >= 0) continue;
        char path[MC_PATH_CAP];
        mc_store *st = NULL;
        s = open_task_store(c, cfg, MC_STAGE_INTERVENE, task, path, &st, err);
        for (int k = 0; s == MC_OK && k < cfg->intervene.units.n; k++) {
            const int kind = cfg->intervene.units.v[k];
            char g[64], name[128];
            mc_snprintf(g, sizeof g, "eval/%s", mc_unit_kind_name(kind));
            if (!mc_store_exists(st, g)) continue;
            mc_snprintf(name, sizeof name, "%s/units", g);
            if (!mc_store_exists(st, name) || !mc_store_has_attr(st, g, "prefix_store")) {
                /* Only the table's attributes (a store reduced to its summary): no unit pages. */
                mc_snprintf(S->skip, sizeof S->skip, "%s has no per-class units in %s",
                            base_name(path), g);
                break;
            }
            if (!S->prefix_path[0]) {
                char *a = NULL;
                s = mc_store_get_attr_str(st, g, "prefix_store", &a, err);
                if (s == MC_OK) s = store_beside(cfg, "intervene", a, S->prefix_path, err);
                free(a);
            }
            if (s == MC_OK && kind == MC_UNIT_SAE && !S->sae_path[0]) {
                char *a = NULL;
                s = mc_store_get_attr_str(st, g, "sae_store", &a, err);
                if (s == MC_OK) s = store_beside(cfg, "sae", a, S->sae_path, err);
                free(a);
            }
            mc_snprintf(name, sizeof name, "%s/units", g);
            mc_store_dataset_info info;
            if (s == MC_OK) s = mc_store_dataset_info_get(st, name, &info, err);
            if (s == MC_OK && (info.ndim != 2 || info.shape[0] < 1 || info.shape[1] < 1))
                s = MC_FAIL(err, MC_ERR_SHAPE, "%s: %s is not [classes, tau]", path, name);
            if (s == MC_OK && S->C && info.shape[0] != S->C)
                s = MC_FAIL(err, MC_ERR_SHAPE, "%s: %s has %lld classes, not the eval set's %lld",
                            path, name, (long long)info.shape[0], (long long)S->C);
            if (s != MC_OK) break;
            void *p = realloc(S->edits, (size_t)(S->n_edits + 1) * sizeof *S->edits);
            if (!p) {
                s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
                break;
            }
            S->edits = p;
            edit_rec *e = &S->edits[S->n_edits++];
            memset(e, 0, sizeof *e);
            e->method = task->method, e->mode = task->mode, e->beta = task->beta, e->kind = kind;
            e->C = info.shape[0], e->tau = info.shape[1];
            S->C = e->C;
            s = read_all(st, path, name, MC_DTYPE_I32, sizeof(int32_t), e->C, e->tau,
                         (void **)&e->units, err);
            double *v[4] = {0};
            static const char *names[4] = {"acc_clean", "acc_edit", "prob_clean", "prob_edit"};
            for (int q = 0; q < 4 && s == MC_OK; q++) {
                mc_snprintf(name, sizeof name, "%s/%s", g, names[q]);
                s = read_all(st, path, name, MC_DTYPE_F64, sizeof(double), e->C, 1, (void **)&v[q],
                             err);
            }
            if (s == MC_OK) {
                e->dacc = malloc((size_t)e->C * sizeof *e->dacc),
                e->dprob = malloc((size_t)e->C * sizeof *e->dprob);
                if (!e->dacc || !e->dprob) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
            }
            /* Per class, as the stage's delta_acc / delta_prob average them (docs/intervene.md). */
            for (int64_t i = 0; s == MC_OK && i < e->C; i++)
                e->dacc[i] = 100 * (v[1][i] - v[0][i]), e->dprob[i] = 100 * (v[3][i] - v[2][i]);
            for (int q = 0; q < 4; q++) free(v[q]);
        }
        if (st) mc_store_close(&st, NULL);
        s = mc_comm_agree(c, s, err);
        if (S->skip[0]) break;
    }
    mc_tasks_free(&tasks);
    return s;
}

/* Collective. The descriptions of the units at intervene.layer: the describe store of (first
 * seed, layer, first variant) and each baselines store of (first seed, layer). */
static mc_status read_descs(const mc_comm *c, site *S, int stage, mc_error *err) {
    const mc_config *cfg = S->cfg;
    mc_task *tasks = NULL;
    int n = 0;
    MC_TRY(mc_config_tasks(cfg, stage, &tasks, &n, err));
    const bool bl = stage == MC_STAGE_BASELINES;
    mc_status s = MC_OK;
    for (int t = 0; t < n && s == MC_OK; t++) {
        const mc_task *task = &tasks[t];
        if (task->seed != S->seed || !task->layer || strcmp(task->layer, cfg->intervene.layer))
            continue;
        if (!bl && task->variant != cfg->align.variants.v[0]) continue;
        char path[MC_PATH_CAP];
        mc_store *st = NULL;
        s = open_task_store(c, cfg, stage, task, path, &st, err);
        const int n_sets = cfg->concepts.n > 0 ? cfg->concepts.n : 1;
        for (int i = 0; s == MC_OK && i < n_sets; i++)
            for (int k = 0; s == MC_OK && k < cfg->intervene.units.n; k++) {
                const char *set = cfg->concepts.n > 0 ? cfg->concepts.v[i].name : "classes";
                const int kind = cfg->intervene.units.v[k];
                char g[400], name[450];
                mc_snprintf(g, sizeof g, "%s%s/%s", bl ? "describe/" : "", set,
                            mc_unit_kind_name(kind));
                mc_snprintf(name, sizeof name, "%s/top_concepts", g);
                if (!mc_store_exists(st, name)) continue;
                mc_store_dataset_info info;
                s = mc_store_dataset_info_get(st, name, &info, err);
                if (s == MC_OK && (info.ndim != 2 || info.shape[0] < 1 || info.shape[1] < 1))
                    s = MC_FAIL(err, MC_ERR_SHAPE, "%s: %s is not [units, tau]", path, name);
                void *p = s == MC_OK
                              ? realloc(S->descs, (size_t)(S->n_descs + 1) * sizeof *S->descs)
                              : NULL;
                if (s == MC_OK && !p) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
                if (s != MC_OK) break;
                S->descs = p;
                desc_src *d = &S->descs[S->n_descs++];
                memset(d, 0, sizeof *d);
                if (bl)
                    mc_snprintf(d->method, sizeof d->method, "%s", mc_method_name(task->method));
                else
                    mc_snprintf(d->method, sizeof d->method, "miclip (%s)",
                                mc_variant_name(task->variant));
                mc_strlcpy(d->set, set, sizeof d->set);
                d->kind = kind, d->U = info.shape[0], d->tau = info.shape[1];
                s = read_all(st, path, name, MC_DTYPE_I32, sizeof(int32_t), d->U, d->tau,
                             (void **)&d->top, err);
                mc_snprintf(name, sizeof name, "%s/top_scores", g);
                if (s == MC_OK)
                    s = read_all(st, path, name, MC_DTYPE_F32, sizeof(float), d->U, d->tau,
                                 (void **)&d->score, err);
                mc_snprintf(name, sizeof name, "%s%s/concepts", bl ? "describe/" : "", set);
                if (s == MC_OK) s = mc_store_read_strings(st, name, &d->con, &d->n_con, err);
                for (int64_t j = 0; s == MC_OK && j < d->U * d->tau; j++)
                    if (d->top[j] < -1 || d->top[j] >= d->n_con)
                        s = MC_FAIL(err, MC_ERR_FORMAT,
                                    "%s: %s/top_concepts holds %d, not a concept of the set (%lld)",
                                    path, g, d->top[j], (long long)d->n_con);
            }
        if (st) mc_store_close(&st, NULL);
        s = mc_comm_agree(c, s, err);
    }
    mc_tasks_free(&tasks);
    return s;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* The reported units of each kind, ascending: the union over classes of miclip's units (of the
 * first miclip edit of that kind; without miclip, of the first edit) and the described units (the
 * first SITE_DESCRIBED, which descriptions.md lists). */
static mc_status pick_units(site *S, int64_t n_units_of_kind[2], mc_error *err) {
    for (int k = 0; k < S->cfg->intervene.units.n; k++) {
        const int kind = S->cfg->intervene.units.v[k];
        const edit_rec *e = NULL;
        for (int i = 0; i < S->n_edits && !e; i++)
            if (S->edits[i].kind == kind && S->edits[i].method == MC_METHOD_MICLIP)
                e = &S->edits[i];
        for (int i = 0; i < S->n_edits && !e; i++)
            if (S->edits[i].kind == kind) e = &S->edits[i];
        if (!e) continue;
        const int64_t nu = e->C * e->tau + SITE_DESCRIBED;
        int32_t *u = malloc((size_t)nu * sizeof *u);
        if (!u) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        memcpy(u, e->units, (size_t)(e->C * e->tau) * sizeof *u);
        for (int i = 0; i < SITE_DESCRIBED; i++) u[e->C * e->tau + i] = i;
        qsort(u, (size_t)nu, sizeof *u, cmp_i32);
        int64_t m = 0;
        for (int64_t i = 0; i < nu; i++)
            if (u[i] >= 0 && u[i] < n_units_of_kind[kind] && (m == 0 || u[m - 1] != u[i]))
                u[m++] = u[i];
        void *p = realloc(S->units, (size_t)(S->n_units + m + 1) * sizeof *S->units);
        if (!p) {
            free(u);
            return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        }
        S->units = p;
        for (int64_t i = 0; i < m; i++)
            S->units[S->n_units++] = (unit_ev){.kind = kind, .unit = u[i]};
        free(u);
    }
    return MC_OK;
}

/* Keeps the SITE_TOP largest (act, row) of a unit: larger act first, the lower row on a tie (rows
 * arrive in ascending order, so a tie never displaces). */
static void top_insert(unit_ev *u, int64_t row, float act) {
    if (u->n == SITE_TOP && !(act > u->act[SITE_TOP - 1])) return;
    int j = u->n < SITE_TOP ? u->n++ : SITE_TOP - 1;
    while (j > 0 && act > u->act[j - 1])
        u->act[j] = u->act[j - 1], u->rows[j] = u->rows[j - 1], j--;
    u->act[j] = act, u->rows[j] = row;
}

/* The pooled vectors of b images of the state (as extract pools the layer: mc_pool_apply). */
static void pool_rows(const site *S, const float *state, int64_t b, float *out) {
    mc_hook_view v = {.name = "", .ndim = S->ndim + 1, .data = (float *)state};
    v.shape[0] = b;
    for (int i = 0; i < S->ndim; i++) v.shape[i + 1] = S->shape[i];
    mc_pool p = S->map || S->cfg->extract.pool == MC_CFG_POOL_MEAN ? MC_POOL_MEAN : MC_POOL_CLS;
    mc_pool_apply(&v, p, out);
}

/* The P per-position vectors ([P, D]) of one image's state: a sequence's patch tokens 1..T-1, a
 * map's positions. */
static void token_rows(const site *S, const float *state, float *out) {
    for (int64_t p = 0; p < S->P; p++)
        for (int64_t i = 0; i < S->D; i++)
            out[p * S->D + i] = S->map ? state[i * S->P + p] : state[(p + 1) * S->D + i];
}

/* Rows [r0, r0 + b) of the prefix state (a local read: rank 0 alone). */
static mc_status read_state(const site *S, mc_store *st, int64_t r0, int64_t b, float *buf,
                            mc_error *err) {
    int64_t start[4] = {r0, 0, 0, 0}, count[4] = {b, S->shape[0], S->shape[1], S->shape[2]};
    return mc_store_read_slice(st, "state", MC_DTYPE_F32, start, count, buf, false, err);
}

/* Local (rank 0). The top images of every reported unit (the ranking pass over every image's
 * pooled vector and its SAE code) and their maps. */
static mc_status rank_units(site *S, mc_store *st, mc_sae *sae, mc_error *err) {
    const int64_t per = S->map ? S->D * S->P : S->T * S->D;
    const int k = sae ? mc_sae_get_config(sae)->k : 1;
    const int64_t tok_rows = S->P > SITE_CHUNK ? S->P : SITE_CHUNK;
    float *buf = mc_alloc_array((size_t)(SITE_CHUNK * per), sizeof *buf);
    float *pooled = mc_alloc_array((size_t)(SITE_CHUNK * S->D) + 1, sizeof *pooled);
    float *toks = mc_alloc_array((size_t)(S->P * S->D) + 1, sizeof *toks);
    int32_t *idx = mc_alloc_array((size_t)(tok_rows * k), sizeof *idx);
    float *val = mc_alloc_array((size_t)(tok_rows * k), sizeof *val);
    mc_status s =
        buf && pooled && toks && idx && val ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    /* The ranking pass: every image's pooled vector (and its SAE code). */
    for (int64_t r0 = 0; s == MC_OK && r0 < S->n; r0 += SITE_CHUNK) {
        const int64_t b = S->n - r0 < SITE_CHUNK ? S->n - r0 : SITE_CHUNK;
        s = read_state(S, st, r0, b, buf, err);
        if (s != MC_OK) break;
        pool_rows(S, buf, b, pooled);
        if (sae) mc_sae_encode(sae, pooled, b, idx, val);
        for (int i = 0; i < S->n_units; i++) {
            unit_ev *u = &S->units[i];
            for (int64_t r = 0; r < b; r++) {
                if (u->kind == MC_UNIT_NEURON) {
                    top_insert(u, r0 + r, pooled[r * S->D + u->unit]);
                    continue;
                }
                for (int j = 0; j < k; j++)
                    if (idx[r * k + j] == u->unit && val[r * k + j] > 0)
                        top_insert(u, r0 + r, val[r * k + j]);
            }
        }
    }
    /* The maps: each top image's state, per position. */
    for (int i = 0; s == MC_OK && i < S->n_units; i++) {
        unit_ev *u = &S->units[i];
        if (!S->gw || !u->n) continue;
        u->heat = mc_alloc_array((size_t)(SITE_TOP * S->P), sizeof *u->heat);
        if (!u->heat) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        for (int j = 0; s == MC_OK && j < u->n; j++) {
            s = read_state(S, st, u->rows[j], 1, buf, err);
            if (s != MC_OK) break;
            float *h = u->heat + (size_t)j * S->P;
            token_rows(S, buf, toks);
            if (u->kind == MC_UNIT_NEURON) {
                for (int64_t p = 0; p < S->P; p++) h[p] = toks[p * S->D + u->unit];
                continue;
            }
            mc_sae_encode(sae, toks, S->P, idx, val);
            for (int64_t p = 0; p < S->P; p++) {
                h[p] = 0;
                for (int q = 0; q < k; q++)
                    if (idx[p * k + q] == u->unit) h[p] = val[p * k + q];
            }
        }
    }
    free(buf), free(pooled), free(toks), free(idx), free(val);
    return s;
}

/* Collective. The top images of every reported unit and their heat maps, from the prefix cache. */
static mc_status read_evidence(const mc_comm *c, site *S, mc_error *err) {
    const mc_config *cfg = S->cfg;
    bool complete = false;
    MC_TRY(mc_store_peek_complete(c, S->prefix_path, &complete, err));
    if (!complete) {
        /* Prefix caches are large and may have been deleted once the interventions were done. */
        mc_snprintf(S->skip, sizeof S->skip,
                    "the prefix cache %s is missing or incomplete (rerun the intervene "
                    "stage to rebuild it)",
                    S->prefix_path);
        return MC_OK;
    }
    mc_store *st = NULL;
    MC_TRY(mc_store_open(c, S->prefix_path, MC_STORE_READ, &st, err));
    mc_store_dataset_info info;
    mc_status s = mc_store_exists(st, "state")
                      ? mc_store_dataset_info_get(st, "state", &info, err)
                      : MC_FAIL(err, MC_ERR_FORMAT, "%s: no dataset 'state'", S->prefix_path);
    if (s == MC_OK && info.ndim != 3 && info.ndim != 4)
        s = MC_FAIL(err, MC_ERR_SHAPE, "%s: 'state' is not [n, T, D] or [n, C, H, W]",
                    S->prefix_path);
    if (s == MC_OK) {
        S->n = info.shape[0], S->ndim = info.ndim - 1, S->map = info.ndim == 4;
        for (int i = 0; i < S->ndim; i++) S->shape[i] = info.shape[i + 1];
        if (S->map)
            S->D = info.shape[1], S->gh = info.shape[2], S->gw = info.shape[3],
            S->P = S->gh * S->gw;
        else {
            S->T = info.shape[1], S->D = info.shape[2], S->P = S->T - 1;
            int64_t g = (int64_t)llround(sqrt((double)S->P));
            if (g * g == S->P) S->gw = S->gh = g;
        }
        if (S->P < 1 || S->D < 1)
            s = MC_FAIL(err, MC_ERR_SHAPE, "%s: 'state' has no positions", S->prefix_path);
    }
    if (s == MC_OK)
        s = read_all(st, S->prefix_path, "image_index", MC_DTYPE_I64, sizeof(int64_t), S->n, 1,
                     (void **)&S->image_index, err);
    if (s == MC_OK)
        s = read_all(st, S->prefix_path, "labels", MC_DTYPE_I32, sizeof(int32_t), S->n, 1,
                     (void **)&S->labels, err);
    s = mc_comm_agree(c, s, err);
    mc_sae *sae = NULL;
    int64_t n_units[2] = {S->D, 0};
    if (s == MC_OK && S->sae_path[0] && !mc_file_exists(S->sae_path))
        mc_warn0("report: site: the SAE store %s is missing: no SAE feature pages", S->sae_path);
    else if (s == MC_OK && S->sae_path[0]) {
        s = mc_sae_load_store(c, cfg, S->sae_path, S->D, S->seed, &sae, err);
        if (s == MC_OK) n_units[MC_UNIT_SAE] = mc_sae_get_config(sae)->m;
    }
    if (s == MC_OK) s = mc_comm_agree(c, pick_units(S, n_units, err), err);
    /* Only rank 0 draws: it alone reads the state (local reads), the other ranks wait. */
    if (s == MC_OK && c->rank == 0) s = rank_units(S, st, sae, err);
    mc_sae_free(&sae);
    mc_error ce = {0};
    mc_status cs = mc_store_close(&st, &ce);
    if (s == MC_OK && cs != MC_OK) *err = ce, s = cs;
    return mc_comm_agree(c, s, err);
}

/* Collective. The eval dataset's class names and image paths, from its extraction store. */
static mc_status read_dataset(const mc_comm *c, site *S, mc_error *err) {
    char path[MC_PATH_CAP];
    MC_TRY(mc_extract_store_path(c, S->cfg, MC_SPLIT_EVAL, S->seed, path, sizeof path, err));
    mc_store *st = NULL;
    MC_TRY(mc_store_open(c, path, MC_STORE_READ, &st, err));
    int64_t C = 0;
    mc_status s = mc_store_read_strings(st, "classes/names", &S->classes, &C, err);
    if (s == MC_OK && C != S->C)
        s = MC_FAIL(err, MC_ERR_SHAPE, "%s: %lld classes, but the intervene stores have %lld", path,
                    (long long)C, (long long)S->C);
    if (s == MC_OK) s = mc_store_read_strings(st, "images/paths", &S->paths, &S->n_paths, err);
    if (s != MC_OK) mc_strings_free(&S->classes, C);
    S->C = C > S->C ? C : S->C;
    for (int64_t r = 0; s == MC_OK && r < S->n; r++)
        if (S->image_index[r] < 0 || S->image_index[r] >= S->n_paths || S->labels[r] < 0 ||
            S->labels[r] >= S->C)
            s = MC_FAIL(err, MC_ERR_FORMAT, "%s: row %lld names image %lld / class %d outside %s",
                        S->prefix_path, (long long)r, (long long)S->image_index[r], S->labels[r],
                        path);
    mc_store_close(&st, NULL);
    return mc_comm_agree(c, s, err);
}

/* ---- writing (rank 0) ---------------------------------------------------------------------------- */

static void html_esc(mc_buf *b, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '&': mc_buf_printf(b, "&amp;"); break;
        case '<': mc_buf_printf(b, "&lt;"); break;
        case '>': mc_buf_printf(b, "&gt;"); break;
        case '"': mc_buf_printf(b, "&quot;"); break;
        case '\'': mc_buf_printf(b, "&#39;"); break;
        default: mc_buf_printf(b, "%c", *s);
        }
    }
}

/* A JSON string body (inside a <script>: "</" is written "<\/"). */
static void js_esc(mc_buf *b, const char *s) {
    for (; *s; s++) {
        const unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            mc_buf_printf(b, "\\%c", ch);
        else if (ch < 0x20)
            mc_buf_printf(b, "\\u%04x", ch);
        else if (ch == '<')
            mc_buf_printf(b, "\\u003c");
        else
            mc_buf_printf(b, "%c", ch);
    }
}

static const char CSS[] =
    "body{font-family:'DejaVu Sans',sans-serif;max-width:1100px;margin:1em auto;padding:0 "
    "1em;color:#111}"
    "table{border-collapse:collapse;margin:.5em 0;font-size:90%}td,th{border:1px solid "
    "#bbb;padding:2px 6px}"
    "th{background:#eee}code{background:#f3f3f3}a{color:#1f4e9a}nav{margin-bottom:1em}"
    "img{max-width:100%}.figs img{max-width:48%;margin:4px}#hits li{margin:2px 0}";

static void page_open(mc_buf *b, const char *title, const char *home) {
    mc_buf_printf(b,
                  "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>");
    html_esc(b, title);
    mc_buf_printf(b, "</title>\n<style>%s</style>\n</head>\n<body>\n", CSS);
    if (home) mc_buf_printf(b, "<nav><a href=\"%s\">report index</a></nav>\n", home);
    mc_buf_printf(b, "<h1>");
    html_esc(b, title);
    mc_buf_printf(b, "</h1>\n");
}

/* Every page reports an image that does not decode on the console (the site's browser test
 * fails on any console error). */
static void page_close(mc_buf *b) {
    mc_buf_printf(
        b,
        "<script>window.addEventListener('load',function(){var im=document.images;"
        "for(var i=0;i<im.length;i++)if(!im[i].naturalWidth)console.error('image did not decode: '+"
        "im[i].getAttribute('src'));});</script>\n</body>\n</html>\n");
}

static mc_status write_page(const mc_config *cfg, const char *rel, mc_buf *b, int *changed,
                            mc_error *err) {
    char path[MC_PATH_CAP];
    if (!mc_snprintf(path, sizeof path, "%s/report/%s", cfg->output_dir, rel))
        return MC_FAIL(err, MC_ERR_ARG, "report: site: path too long: %s/report/%s",
                       cfg->output_dir, rel);
    if (b->oom) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory writing %s", path);
    bool same = false;
    char *old = NULL;
    size_t n = 0;
    mc_error ig = {0};
    if (mc_file_exists(path) && mc_read_file(path, b->n + 1, &old, &n, &ig) == MC_OK)
        same = n == b->n && !memcmp(old, b->p, n);
    free(old);
    if (!same) ++*changed;
    return same ? MC_OK : mc_write_text_file(path, b->p ? b->p : "", b->n, err);
}

/* Inline Markdown of README.md as HTML: `code`, **bold**, [text](link). */
static void md_inline(mc_buf *b, const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        if (s[i] == '`') {
            const char *e = memchr(s + i + 1, '`', n - i - 1);
            if (e) {
                mc_buf_printf(b, "<code>");
                for (const char *q = s + i + 1; q < e; q++) {
                    char one[2] = {*q, 0};
                    html_esc(b, one);
                }
                mc_buf_printf(b, "</code>");
                i = (size_t)(e - s) + 1;
                continue;
            }
        }
        if (s[i] == '*' && i + 1 < n && s[i + 1] == '*') {
            const char *e = i + 2 < n ? strstr(s + i + 2, "**") : NULL;
            if (e && (size_t)(e - s) < n) {
                mc_buf_printf(b, "<b>");
                md_inline(b, s + i + 2, (size_t)(e - s) - i - 2);
                mc_buf_printf(b, "</b>");
                i = (size_t)(e - s) + 2;
                continue;
            }
        }
        if (s[i] == '[') {
            const char *rb = memchr(s + i, ']', n - i);
            if (rb && (size_t)(rb - s) + 1 < n && rb[1] == '(') {
                const char *rp = memchr(rb, ')', n - (size_t)(rb - s));
                if (rp) {
                    mc_buf_printf(b, "<a href=\"");
                    char url[MC_PATH_CAP];
                    mc_snprintf(url, sizeof url, "%.*s", (int)(rp - rb - 2), rb + 2);
                    html_esc(b, url);
                    mc_buf_printf(b, "\">");
                    md_inline(b, s + i + 1, (size_t)(rb - s) - i - 1);
                    mc_buf_printf(b, "</a>");
                    i = (size_t)(rp - s) + 1;
                    continue;
                }
            }
        }
        char one[2] = {s[i], 0};
        html_esc(b, one);
        i++;
    }
}

/* README.md (headings, paragraphs, lists, pipe tables) as HTML; the PNG figures it links are shown. */
static void md_to_html(mc_buf *b, const char *md) {
    bool in_table = false, in_list = false, in_p = false;
    int row = 0;
    mc_buf figs = {0};
    for (const char *l = md; l && *l;) {
        const char *e = strchr(l, '\n');
        const size_t n = e ? (size_t)(e - l) : strlen(l);
        const bool table = n > 0 && l[0] == '|', list = n > 1 && l[0] == '-' && l[1] == ' ';
        if (in_table && !table) mc_buf_printf(b, "</table>\n"), in_table = false;
        if (in_list && !list) mc_buf_printf(b, "</ul>\n"), in_list = false;
        if (in_p && (n == 0 || table || list || l[0] == '#'))
            mc_buf_printf(b, "</p>\n"), in_p = false;
        if (n == 0) {
        } else if (l[0] == '#') {
            int h = 0;
            while ((size_t)h < n && l[h] == '#') h++;
            const int lv = h + 1 > 6 ? 6 : h + 1; /* the page's own title is <h1> */
            mc_buf_printf(b, "<h%d>", lv);
            md_inline(b, l + h + 1, n > (size_t)h + 1 ? n - (size_t)h - 1 : 0);
            mc_buf_printf(b, "</h%d>\n", lv);
        } else if (table) {
            if (!in_table) mc_buf_printf(b, "<table>\n"), in_table = true, row = 0;
            if (row == 1 && strspn(l, "|-: ") >= n) { /* the header's separator line */
                row++;
            } else {
                mc_buf_printf(b, "<tr>");
                size_t i = 1;
                while (i < n) {
                    size_t j = i;
                    while (j < n && l[j] != '|') j++;
                    if (j >= n) break;
                    size_t a = i, z = j;
                    while (a < z && l[a] == ' ') a++;
                    while (z > a && l[z - 1] == ' ') z--;
                    mc_buf_printf(b, row == 0 ? "<th>" : "<td>");
                    md_inline(b, l + a, z - a);
                    mc_buf_printf(b, row == 0 ? "</th>" : "</td>");
                    i = j + 1;
                }
                mc_buf_printf(b, "</tr>\n");
                row++;
            }
        } else if (list) {
            if (!in_list) mc_buf_printf(b, "<ul>\n"), in_list = true;
            mc_buf_printf(b, "<li>");
            md_inline(b, l + 2, n - 2);
            mc_buf_printf(b, "</li>\n");
            for (const char *q = l; q && q < l + n;) { /* figure PNGs are shown under the list */
                const char *f = strstr(q, "](figures/");
                if (!f || f >= l + n) break;
                const char *rp = memchr(f, ')', (size_t)(l + n - f));
                if (rp && rp - f > 6 && !memcmp(rp - 4, ".png", 4)) {
                    mc_buf_printf(&figs, "<a href=\"%.*s\"><img src=\"%.*s\" alt=\"figure\"></a>\n",
                                  (int)(rp - f - 2), f + 2, (int)(rp - f - 2), f + 2);
                }
                q = rp ? rp : NULL;
            }
        } else {
            mc_buf_printf(b, in_p ? "\n" : "<p>");
            in_p = true;
            md_inline(b, l, n);
        }
        l = e ? e + 1 : NULL;
    }
    if (in_table) mc_buf_printf(b, "</table>\n");
    if (in_list) mc_buf_printf(b, "</ul>\n");
    if (in_p) mc_buf_printf(b, "</p>\n");
    if (figs.n) mc_buf_printf(b, "<div class=\"figs\">\n%s</div>\n", figs.p);
    if (figs.oom) b->oom = true;
    mc_buf_free(&figs);
}

/* The last two components of an image path (class folder / file). */
static const char *tail_path(const char *p) {
    const char *a = strrchr(p, '/');
    if (!a || a == p) return p;
    const char *q = a - 1;
    while (q > p && *q != '/') q--;
    return *q == '/' ? q + 1 : p;
}

static void unit_stem(const unit_ev *u, char *out, size_t cap) {
    mc_snprintf(out, cap, "%s-%d", mc_unit_kind_name(u->kind), u->unit);
}

static int find_unit(const site *S, int kind, int32_t unit) {
    for (int i = 0; i < S->n_units; i++)
        if (S->units[i].kind == kind && S->units[i].unit == unit) return i;
    return -1;
}

static bool edit_has(const edit_rec *e, int64_t cls, int32_t unit) {
    for (int64_t j = 0; j < e->tau; j++)
        if (e->units[cls * e->tau + j] == unit) return true;
    return false;
}

static void edit_label(mc_buf *b, const edit_rec *e) {
    mc_buf_printf(b, "<td>%s</td><td>%s %g</td>", mc_method_name(e->method), mc_mode_name(e->mode),
                  e->beta);
}

static void fmt_pp(mc_buf *b, double v) {
    if (isfinite(v))
        mc_buf_printf(b, "<td>%+.2f</td>", v);
    else
        mc_buf_printf(b, "<td>--</td>");
}

mc_status mc_report_tile_image(const mc_preproc *pp, const char *path, uint8_t **rgb, int *ow,
                               int *oh, mc_error *err) {
    *rgb = NULL, *ow = *oh = 0;
    mc_image img = {0};
    mc_status s = mc_image_load(path, NULL, &img, err);
    if (s == MC_OK) s = mc_preproc_output_size(pp, img.w, img.h, oh, ow, err);
    float *fl = s == MC_OK ? mc_alloc_array((size_t)(3 * *oh * *ow), sizeof *fl) : NULL;
    *rgb = s == MC_OK ? mc_alloc_array((size_t)(3 * *oh * *ow), 1) : NULL;
    if (s == MC_OK && (!fl || !*rgb)) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    if (s == MC_OK) s = mc_preprocess(pp, &img, fl, *rgb, err);
    free(fl);
    mc_image_free(&img);
    return s;
}

/* The unit's grid: its top images as the target's preprocessor crops them, its map over each. */
static mc_status write_grid(const site *S, const mc_preproc *pp, const unit_ev *u, const char *rel,
                            int *changed, mc_error *err) {
    mc_grid_tile tiles[SITE_TOP];
    uint8_t *pix[SITE_TOP] = {0};
    memset(tiles, 0, sizeof tiles);
    mc_status s = MC_OK;
    float mx = 0;
    for (int j = 0; j < u->n && u->heat; j++)
        for (int64_t p = 0; p < S->P; p++)
            mx = u->heat[j * S->P + p] > mx ? u->heat[j * S->P + p] : mx;
    for (int j = 0; j < u->n && s == MC_OK; j++) {
        const int64_t row = u->rows[j], im = S->image_index[row];
        int oh = 0, ow = 0;
        s = mc_report_tile_image(pp, S->paths[im], &pix[j], &ow, &oh, err);
        mc_grid_tile *t = &tiles[j];
        t->rgb = pix[j], t->w = ow, t->h = oh;
        if (u->heat)
            t->heat = u->heat + (size_t)j * S->P, t->hw = (int)S->gw, t->hh = (int)S->gh,
            t->smooth = S->map;
        mc_snprintf(t->caption, sizeof t->caption, "#%lld %s", (long long)im,
                    S->classes[S->labels[row]]);
        mc_snprintf(t->caption2, sizeof t->caption2, "act %.4g", u->act[j]);
    }
    mc_grid g = {
        .n_tiles = u->n, .cols = SITE_COLS, .tile = SITE_TILE, .tiles = tiles, .heat_max = mx};
    mc_snprintf(g.title, sizeof g.title, "%s %d, layer %s: top %d eval images (heat 0 .. %.3g)",
                u->kind == MC_UNIT_SAE ? "SAE feature" : "neuron", u->unit, S->cfg->intervene.layer,
                u->n, mx);
    uint8_t *png = NULL;
    size_t len = 0;
    if (s == MC_OK) s = mc_grid_render_png(&g, &png, &len, err);
    if (s == MC_OK) {
        mc_buf b = {.p = (char *)png, .n = len, .cap = len};
        s = write_page(S->cfg, rel, &b, changed, err);
    }
    free(png);
    for (int j = 0; j < SITE_TOP; j++) free(pix[j]);
    return s;
}

static mc_status write_unit(const site *S, const mc_preproc *pp, const unit_ev *u, int *changed,
                            mc_error *err) {
    char stem[64], rel[128], title[160];
    unit_stem(u, stem, sizeof stem);
    mc_snprintf(rel, sizeof rel, "site/grids/%s.png", stem);
    MC_TRY(write_grid(S, pp, u, rel, changed, err));
    mc_buf b = {0};
    mc_snprintf(title, sizeof title, "%s %d (layer %s, seed %lld)",
                u->kind == MC_UNIT_SAE ? "SAE feature" : "Neuron", u->unit, S->cfg->intervene.layer,
                (long long)S->seed);
    page_open(&b, title, "../index.html");
    mc_buf_printf(&b, "<p>Edited for the classes:");
    int shown = 0;
    for (int64_t cls = 0; cls < S->C; cls++)
        for (int i = 0; i < S->n_edits; i++) {
            const edit_rec *e = &S->edits[i];
            if (e->kind != u->kind || e->method != MC_METHOD_MICLIP || !edit_has(e, cls, u->unit))
                continue;
            mc_buf_printf(&b, "%s <a href=\"class-%lld.html\">", shown++ ? "," : "",
                          (long long)cls);
            html_esc(&b, S->classes[cls]);
            mc_buf_printf(&b, "</a>");
            break;
        }
    mc_buf_printf(&b,
                  "%s.</p>\n<h2>Top images</h2>\n<p><img src=\"grids/%s.png\" alt=\"top images of "
                  "%s\"></p>\n",
                  shown ? "" : " none (listed as a described unit)", stem, stem);
    mc_buf_printf(
        &b,
        "<p>The %d eval images where the unit's pooled activation is largest, as the target's "
        "preprocessor crops them, with the unit's activation per %s drawn over each (one colour "
        "scale "
        "for the grid; read from the intervene prefix cache).</p>\n",
        u->n, S->map ? "position of the feature map, upsampled" : "patch token");
    mc_buf_printf(
        &b, "<table "
            "id=\"top\">\n<tr><th>rank</th><th>image</th><th>class</th><th>activation</th></tr>\n");
    for (int j = 0; j < u->n; j++) {
        const int64_t row = u->rows[j], im = S->image_index[row];
        mc_buf_printf(&b,
                      "<tr data-row=\"%lld\" data-image=\"%lld\" data-act=\"%.9g\"><td>%d</td><td>",
                      (long long)row, (long long)im, u->act[j], j + 1);
        html_esc(&b, tail_path(S->paths[im]));
        mc_buf_printf(&b, "</td><td>");
        html_esc(&b, S->classes[S->labels[row]]);
        mc_buf_printf(&b, "</td><td>%.6g</td></tr>\n", u->act[j]);
    }
    mc_buf_printf(&b, "</table>\n<h2>Descriptions</h2>\n");
    for (int i = 0; i < S->n_descs; i++) {
        const desc_src *d = &S->descs[i];
        if (d->kind != u->kind || u->unit >= d->U) continue;
        mc_buf_printf(&b, "<h3>");
        html_esc(&b, d->method);
        mc_buf_printf(&b, ", concept set ");
        html_esc(&b, d->set);
        mc_buf_printf(&b,
                      "</h3>\n<table "
                      "class=\"desc\">\n<tr><th>rank</th><th>concept</th><th>score</th></tr>\n");
        for (int64_t r = 0; r < d->tau; r++) {
            const int32_t j = d->top[u->unit * d->tau + r];
            if (j < 0) continue;
            mc_buf_printf(&b, "<tr><td>%lld</td><td>", (long long)r + 1);
            html_esc(&b, d->con[j]);
            mc_buf_printf(&b, "</td><td>%.4f</td></tr>\n", d->score[u->unit * d->tau + r]);
        }
        mc_buf_printf(&b, "</table>\n");
    }
    mc_buf_printf(
        &b,
        "<h2>Intervention effect</h2>\n<p>Each edit (eval dataset, layer %s) whose units for a "
        "class "
        "include this one: the change of that class's accuracy and mean probability, in percentage "
        "points.</p>\n<table "
        "id=\"effects\">\n<tr><th>class</th><th>method</th><th>edit</th><th>Delta-Acc</th>"
        "<th>Delta-P</th></tr>\n",
        S->cfg->intervene.layer);
    for (int i = 0; i < S->n_edits; i++) {
        const edit_rec *e = &S->edits[i];
        if (e->kind != u->kind) continue;
        for (int64_t cls = 0; cls < e->C; cls++) {
            if (!edit_has(e, cls, u->unit)) continue;
            mc_buf_printf(&b, "<tr><td><a href=\"class-%lld.html\">", (long long)cls);
            html_esc(&b, S->classes[cls]);
            mc_buf_printf(&b, "</a></td>");
            edit_label(&b, e);
            fmt_pp(&b, e->dacc[cls]), fmt_pp(&b, e->dprob[cls]);
            mc_buf_printf(&b, "</tr>\n");
        }
    }
    mc_buf_printf(&b, "</table>\n");
    page_close(&b);
    mc_snprintf(rel, sizeof rel, "site/%s.html", stem);
    mc_status s = write_page(S->cfg, rel, &b, changed, err);
    mc_buf_free(&b);
    return s;
}

static mc_status write_class(const site *S, int64_t cls, int *changed, mc_error *err) {
    mc_buf b = {0};
    char title[300], rel[64];
    mc_snprintf(title, sizeof title, "Class %s", S->classes[cls]);
    page_open(&b, title, "../index.html");
    mc_buf_printf(&b,
                  "<p>The units each method edits for this class at layer %s (seed %lld) and the "
                  "change of the "
                  "class's accuracy and mean probability on its eval images, in percentage points. "
                  "Linked units "
                  "have a page.</p>\n",
                  S->cfg->intervene.layer, (long long)S->seed);
    for (int k = 0; k < S->cfg->intervene.units.n; k++) {
        const int kind = S->cfg->intervene.units.v[k];
        mc_buf_printf(
            &b,
            "<h2>%s</h2>\n<table class=\"edits\">\n<tr><th>method</th><th>edit</th><th>units</th>"
            "<th>Delta-Acc</th><th>Delta-P</th></tr>\n",
            kind == MC_UNIT_SAE ? "SAE features" : "Neurons");
        for (int i = 0; i < S->n_edits; i++) {
            const edit_rec *e = &S->edits[i];
            if (e->kind != kind) continue;
            mc_buf_printf(&b, "<tr>");
            edit_label(&b, e);
            mc_buf_printf(&b, "<td>");
            for (int64_t j = 0; j < e->tau; j++) {
                const int32_t unit = e->units[cls * e->tau + j];
                const int ui = find_unit(S, kind, unit);
                if (ui >= 0) {
                    char stem[64];
                    unit_stem(&S->units[ui], stem, sizeof stem);
                    mc_buf_printf(&b, "%s<a href=\"%s.html\">%d</a>", j ? " " : "", stem, unit);
                } else {
                    mc_buf_printf(&b, "%s%d", j ? " " : "", unit);
                }
            }
            mc_buf_printf(&b, "</td>");
            fmt_pp(&b, e->dacc[cls]), fmt_pp(&b, e->dprob[cls]);
            mc_buf_printf(&b, "</tr>\n");
        }
        mc_buf_printf(&b, "</table>\n");
    }
    page_close(&b);
    mc_snprintf(rel, sizeof rel, "site/class-%lld.html", (long long)cls);
    mc_status s = write_page(S->cfg, rel, &b, changed, err);
    mc_buf_free(&b);
    return s;
}

/* The search: every (concept, unit) of the units' top descriptions and every class name, inline,
 * filtered as the reader types. */
static const char SEARCH_JS[] =
    "(function(){var q=document.getElementById('q'),out=document.getElementById('hits');"
    "function run(){var t=q.value.trim().toLowerCase();out.textContent='';if(!t)return;var n=0;"
    "for(var i=0;i<SITE.length&&n<200;i++){var "
    "e=SITE[i];if(e[0].toLowerCase().indexOf(t)<0)continue;n++;"
    "var "
    "li=document.createElement('li'),a=document.createElement('a');a.href=e[2];a.textContent=e[1];"
    "li.appendChild(document.createTextNode(e[0]+': '));li.appendChild(a);out.appendChild(li);}"
    "if(!n){var li=document.createElement('li');li.textContent='no match';out.appendChild(li);}}"
    "if(location.hash.length>1)q.value=decodeURIComponent(location.hash.slice(1));"
    "q.addEventListener('input',run);run();})();";

static mc_status write_index(const site *S, const char *readme, int *changed, mc_error *err) {
    const mc_config *cfg = S->cfg;
    mc_buf b = {0};
    char title[300];
    mc_snprintf(title, sizeof title, "Report: %s", cfg->name);
    page_open(&b, title, NULL);
    if (S->n_units || S->C)
        mc_buf_printf(
            &b, "<nav><a href=\"#units\">units and classes</a> · <a href=\"#search\">search by "
                "concept</a></nav>\n");
    /* README's own title is the page's. */
    const char *body = readme && !strncmp(readme, "# ", 2) && strchr(readme, '\n')
                           ? strchr(readme, '\n') + 1
                           : readme;
    if (body) md_to_html(&b, body);
    if (S->n_units || S->C) {
        mc_buf_printf(&b,
                      "<h2 id=\"units\">Units and classes</h2>\n<p>Seed %lld, layer %s: the units "
                      "miclip edits for each eval "
                      "class, each with its top images, descriptions and intervention effect; each "
                      "class with the "
                      "units every method edits for it.</p>\n<h3 id=\"search\">Search by "
                      "concept</h3>\n<p><input id=\"q\" type=\"search\" "
                      "placeholder=\"a concept, e.g. a colour or a class\" size=\"40\"></p>\n<ul "
                      "id=\"hits\"></ul>\n",
                      (long long)S->seed, cfg->intervene.layer);
        mc_buf_printf(&b, "<h3>Classes</h3>\n<p>");
        for (int64_t c = 0; c < S->C; c++) {
            mc_buf_printf(&b, "%s<a href=\"site/class-%lld.html\">", c ? " · " : "", (long long)c);
            html_esc(&b, S->classes[c]);
            mc_buf_printf(&b, "</a>");
        }
        mc_buf_printf(&b, "</p>\n");
        for (int k = 0; k < cfg->intervene.units.n; k++) {
            const int kind = cfg->intervene.units.v[k];
            mc_buf_printf(&b, "<h3>%s</h3>\n<p>", kind == MC_UNIT_SAE ? "SAE features" : "Neurons");
            int shown = 0;
            for (int i = 0; i < S->n_units; i++) {
                if (S->units[i].kind != kind) continue;
                char stem[64];
                unit_stem(&S->units[i], stem, sizeof stem);
                mc_buf_printf(&b, "%s<a href=\"site/%s.html\">%d</a>", shown++ ? " " : "", stem,
                              S->units[i].unit);
            }
            mc_buf_printf(&b, "</p>\n");
        }
        mc_buf_printf(&b, "<script>\nvar SITE=[");
        int n = 0;
        for (int64_t c = 0; c < S->C; c++) {
            char href[64];
            mc_snprintf(href, sizeof href, "site/class-%lld.html", (long long)c);
            mc_buf_printf(&b, "%s\n[\"", n++ ? "," : "");
            js_esc(&b, S->classes[c]);
            mc_buf_printf(&b, "\",\"class %lld\",\"%s\"]", (long long)c, href);
        }
        for (int i = 0; i < S->n_units; i++) {
            const unit_ev *u = &S->units[i];
            char stem[64];
            unit_stem(u, stem, sizeof stem);
            for (int d = 0; d < S->n_descs; d++) {
                const desc_src *ds = &S->descs[d];
                if (ds->kind != u->kind || u->unit >= ds->U) continue;
                for (int64_t r = 0; r < ds->tau; r++) {
                    const int32_t j = ds->top[u->unit * ds->tau + r];
                    if (j < 0) continue;
                    mc_buf_printf(&b, "%s\n[\"", n++ ? "," : "");
                    js_esc(&b, ds->con[j]);
                    mc_buf_printf(&b, "\",\"%s %d (",
                                  u->kind == MC_UNIT_SAE ? "SAE feature" : "neuron", u->unit);
                    js_esc(&b, ds->method);
                    mc_buf_printf(&b, ", rank %lld, %.3f)\",\"site/%s.html\"]", (long long)r + 1,
                                  ds->score[u->unit * ds->tau + r], stem);
                }
            }
        }
        mc_buf_printf(&b, "];\n%s\n</script>\n", SEARCH_JS);
    }
    page_close(&b);
    mc_status s = write_page(cfg, "index.html", &b, changed, err);
    mc_buf_free(&b);
    return s;
}

/* ---- the stage's entry -------------------------------------------------------------------------- */

mc_status mc_report_site(const mc_comm *c, const mc_config *cfg, const char *readme,
                         mc_error *err) {
    const double t0 = mc_now();
    site S = {.cfg = cfg, .seed = cfg->seeds.v[0]};
    mc_status s = MC_OK;
    const bool units = mc_config_has_stage(cfg, MC_STAGE_INTERVENE);
    if (!units)
        mc_info0("report: site: no unit or class pages (the intervene stage, whose prefix cache "
                 "holds the "
                 "activations they show, is not in 'stages')");
    if (units) s = read_edits(c, &S, err);
    if (s == MC_OK && units && !S.skip[0] && !S.prefix_path[0])
        mc_snprintf(S.skip, sizeof S.skip, "no intervene store has an eval group");
    if (s == MC_OK && units && !S.skip[0]) s = read_evidence(c, &S, err);
    if (s == MC_OK && units && !S.skip[0]) {
        if (mc_config_has_stage(cfg, MC_STAGE_DESCRIBE))
            s = read_descs(c, &S, MC_STAGE_DESCRIBE, err);
        if (s == MC_OK && mc_config_has_stage(cfg, MC_STAGE_BASELINES))
            s = read_descs(c, &S, MC_STAGE_BASELINES, err);
        if (s == MC_OK) s = read_dataset(c, &S, err);
    }
    if (s == MC_OK && S.skip[0]) {
        mc_warn0("report: site: no unit or class pages: %s", S.skip);
        for (int i = 0; i < S.n_units; i++) free(S.units[i].heat);
        S.n_units = 0, S.C = 0;
    }
    int changed = 0;
    if (s == MC_OK && c->rank == 0) {
        mc_preproc pp;
        if (S.n_units) s = mc_preproc_load(cfg->models.target, &pp, err);
        for (int i = 0; s == MC_OK && i < S.n_units; i++)
            s = write_unit(&S, &pp, &S.units[i], &changed, err);
        for (int64_t cls = 0; s == MC_OK && cls < S.C && S.n_units; cls++)
            s = write_class(&S, cls, &changed, err);
        if (s == MC_OK) s = write_index(&S, readme, &changed, err);
    }
    s = mc_comm_agree(c, s, err);
    if (s == MC_OK)
        mc_info0("report: site: -> %s/report/index.html (%d unit pages, %lld class pages, %d files "
                 "changed, %.2f s)",
                 cfg->output_dir, S.n_units, S.n_units ? (long long)S.C : 0LL, changed,
                 mc_now() - t0);
    site_free(&S);
    return s;
}
