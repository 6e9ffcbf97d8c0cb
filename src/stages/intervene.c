/* intervene.c - the `intervene` stage (paper Section 3.3, model steering): scale or shift the
 * top-tau units of each class's concept at intervene.layer and measure the change of that
 * class's accuracy (Delta-Acc) and of another class's (specificity).
 *
 * Prefix cache. For every dataset of intervene.datasets and seed, the target's state at
 * intervene.layer (every token / position, float32, as a READ hook sees it) of each valid image
 * is stored once in OUTPUT_DIR/intervene/prefix-<split>-l<layer>-<key16>.h5, rows sorted
 * by (class, image index), with the clean logits and predictions computed by running the suffix
 * from the stored state. Work units are fixed batches of at most intervene.batch_size images of
 * one class, whatever the rank count, so every image is always computed in the same batch;
 * units are dealt round-robin and marked done as extract does (resumable).
 *
 * A task (seed, method, mode, beta) edits, for each unit kind and dataset and each class c,
 * class c's units on the images of class c (Delta-Acc) and of class (c+1) mod C (specificity),
 * in the same per-class batches as the clean run, so beta 1 (scale) or 0 (add) reproduces the
 * clean predictions bit for bit. Classes are dealt round-robin over ranks, one class per rank
 * and round; each class's rows are written collectively and marked done. Output:
 * OUTPUT_DIR/intervene/<task>-<key16>.h5, OUTPUT_DIR/tables/<task>-<dataset>-<units>.csv and
 * OUTPUT_DIR/report/interventions.md (docs/intervene.md).
 *
 * Code store. The SAE's top-k code of the edited tokens depends only on the clean cached state
 * and the SAE: it is encoded once per (prefix cache, SAE, tokens) into
 * OUTPUT_DIR/intervene/codes-<split>-l<layer>-<key16>.h5 (method/sae_codes.c) by the first task
 * that needs it, and the SAE scale edits, the precision and the oracle read it from there.
 */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "miclip/buf.h"
#include "method/acts.h"
#include "method/concepts.h"
#include "method/extract_key.h"
#include "method/keys.h"
#include "method/precision.h"
#include "method/prefix_cache.h"
#include "method/sae_codes.h"
#include "method/task_index.h"
#include "method/method_task.h"
#include "method/similarity.h"
#include "method/train_data.h"
#include "method/training.h"
#include "method/unit_tables.h"
#include "method/units.h"
#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/image.h"
#include "miclip/log.h"
#include "miclip/plan.h"
#include "miclip/miclip.h"
#include "miclip/model.h"
#include "miclip/text.h"
#include "baselines_internal.h"
#include "intervene_internal.h"
#include "stages_internal.h"

#define TASK_KEY_VERSION "miclip-intervene/1"

/* ---- the edit: a WRITE hook at intervene.layer ------------------------------------------- */

typedef struct {
    mc_sae *sae;          /* NULL for neurons */
    const float *w_dec_t; /* [m, n] (borrowed from sae) */
    int64_t m;            /* SAE features */
    int k;
    char path[MC_PATH_CAP];
    char key[MC_KEY_HEX];
} sae_units;

typedef struct {
    const mc_runner *R;
    int kind; /* mc_unit_kind */
    int mode; /* mc_mode */
    float beta;
    const float *mu;      /* add with intervene.add_beta mu: beta * mu[unit] is added; else NULL */
    const int32_t *units; /* [tau] */
    int64_t tau;
    const int32_t
        *row_unit; /* oracle: [B], batch row b scales its own single unit row_unit[b] (else NULL) */
    int64_t t0, t1; /* tokens edited */
    sae_units *sae;
    uint8_t *mask; /* [m]: unit i is edited (SAE scale) */
    float *rows;   /* [B * tokens, dim] gathered tokens (SAE) */
    int32_t *idx;  /* [B * tokens, k]: a batch's codes, read from the code store */
    float *val;
    /* SAE scale: the top-k codes of the edited tokens ([image * tokens + t, k]) and batch row b's
     * image code_row[b]: the batch's rows of the code store (edited_rows), or the class's
     * (oracle_class) */
    const int32_t *code_idx;
    const float *code_val;
    const int64_t *code_row;
    mc_sae_codes *codes; /* the code store of the prefix (SAE units), else NULL */
    int64_t *code_ident; /* [batch_size]: 0, 1, ... (edited_rows' code_row) */
} edit_ctx;

/* Element (b, t, i) of the state: token t's value of unit i. */
static inline float *elem(const edit_ctx *e, float *data, int64_t b, int64_t t, int64_t i) {
    const mc_runner *R = e->R;
    return R->map ? data + (b * R->dim + i) * R->tokens + t
                  : data + (b * R->tokens + t) * R->dim + i;
}

static bool edit_fn(const mc_hook_view *v, void *user) {
    edit_ctx *e = user;
    const int64_t B = v->shape[0], D = e->R->dim, nt = e->t1 - e->t0;
    if (e->kind == MC_UNIT_NEURON && e->row_unit) {
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = e->t0; t < e->t1; t++) {
                float *x = elem(e, v->data, b, t, e->row_unit[b]);
                *x = e->beta * *x;
            }
        return true;
    }
    if (e->kind == MC_UNIT_NEURON) {
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = e->t0; t < e->t1; t++)
                for (int64_t q = 0; q < e->tau; q++) {
                    float *x = elem(e, v->data, b, t, e->units[q]);
                    *x = e->mode == MC_MODE_SCALE
                             ? e->beta * *x
                             : *x + (e->mu ? e->beta * e->mu[e->units[q]] : e->beta);
                }
        return true;
    }
    /* SAE features: a += sum_i (beta - 1) f_i W_dec[:, i] (scale, f the top-k code of a) or
     * a += beta W_dec[:, i] (add), so the reconstruction error stays in a. */
    const int64_t rows = B * nt;
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < nt; t++)
            for (int64_t i = 0; i < D; i++)
                e->rows[(b * nt + t) * D + i] = *elem(e, v->data, b, e->t0 + t, i);
    const int k = e->sae->k;
    MC_ASSERT(e->mode != MC_MODE_SCALE || e->code_idx);
    for (int64_t r = 0; r < rows; r++) {
        float *a = e->rows + r * D;
        if (e->mode == MC_MODE_SCALE) {
            /* the code of this row, from the code store (the clean state's, computed once) */
            const int64_t cr = e->code_row[r / nt] * nt + r % nt;
            const int32_t *idx = e->code_idx;
            const float *val = e->code_val;
            for (int j = 0; j < k; j++) {
                int32_t f = idx[cr * k + j];
                if (e->row_unit ? f != e->row_unit[r / nt] : !e->mask[f]) continue;
                float coef = (e->beta - 1.0f) * val[cr * k + j];
                const float *atom = e->sae->w_dec_t + (int64_t)f * D;
                for (int64_t i = 0; i < D; i++) a[i] += coef * atom[i];
            }
        } else {
            for (int64_t q = 0; q < e->tau; q++) {
                const float *atom = e->sae->w_dec_t + (int64_t)e->units[q] * D;
                const float add = e->mu ? e->beta * e->mu[e->units[q]] : e->beta;
                for (int64_t i = 0; i < D; i++) a[i] += add * atom[i];
            }
        }
    }
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < nt; t++)
            for (int64_t i = 0; i < D; i++)
                *elem(e, v->data, b, e->t0 + t, i) = e->rows[(b * nt + t) * D + i];
    return true;
}

/* ---- units per class --------------------------------------------------------------------- */

static void sae_units_free(sae_units *u) {
    mc_sae_free(&u->sae);
    memset(u, 0, sizeof *u);
}

/* Loads the complete SAE of seed (the sae stage's store) for editing. Collective. */
static mc_status sae_units_load(const mc_comm *c, const mc_config *cfg, const mc_train_data *td,
                                int64_t seed, int64_t dim, sae_units *u, mc_error *err) {
    memset(u, 0, sizeof *u);
    mc_run_paths rp;
    MC_TRY(mc_sae_paths(cfg, td->extract_key, seed, &rp, err));
    bool complete = false;
    MC_TRY(mc_store_peek_complete(c, rp.store, &complete, err));
    if (!complete)
        return MC_FAIL(
            err, MC_ERR_ARG,
            "intervene.units lists sae but the SAE of seed %lld is missing or incomplete "
            "(%s); run the sae stage first",
            (long long)seed, rp.store);
    mc_strlcpy(u->path, rp.store, sizeof u->path);
    mc_strlcpy(u->key, rp.key, sizeof u->key);
    mc_sae_config sc = mc_sae_config_of(cfg, dim, seed);
    u->m = sc.m, u->k = sc.k;
    mc_status s = mc_sae_load_store(c, cfg, rp.store, dim, seed, &u->sae, err);
    if (s == MC_OK) u->w_dec_t = mc_sae_w_dec_t(u->sae);
    if (s != MC_OK) sae_units_free(u);
    return s;
}

typedef struct {
    int kind;
    int64_t n_units; /* neurons: the layer's width; SAE: features */
    int32_t *units;  /* [C * tau] of one dataset */
    float *mu; /* [n_units] mean value where > 0 over the training images (add_beta mu), or NULL */
} kind_units;

/* The store a method's units come from and its key (the task key's source): miclip's localize
 * store of (seed, intervene.layer, the task's E_n variant), or the baselines store of (seed,
 * intervene.layer, method); it must be complete. Metadata only (issue 16). Collective. */
static mc_status units_source(const mc_comm *c, const mc_config *cfg, int64_t seed, int method,
                              int variant, int reading, char *store, size_t cap,
                              char key[MC_KEY_HEX], mc_error *err) {
    if (method != MC_METHOD_MICLIP)
        return mc_baselines_store(c, cfg, seed, cfg->intervene.layer, method, store, cap, key,
                                  MC_KEY_HEX, err);
    mc_task *tasks = NULL;
    int n = 0, found = -1;
    MC_TRY(mc_config_tasks(cfg, MC_STAGE_LOCALIZE, &tasks, &n, err));
    for (int t = 0; t < n; t++)
        if (tasks[t].seed == seed && !strcmp(tasks[t].layer, cfg->intervene.layer) &&
            tasks[t].variant == variant && tasks[t].reading == reading && found < 0)
            found = t;
    mc_status s = MC_OK;
    if (found < 0)
        s = MC_FAIL(err, MC_ERR_CONFIG,
                    "%s: intervene (miclip) needs the localize output of seed %lld, layer '%s', "
                    "variant %s, reading %s; add localize to 'stages'",
                    cfg->source_path, (long long)seed, cfg->intervene.layer,
                    mc_variant_name(variant),
                    mc_reading_name(reading >= 0 ? reading : mc_config_reading(cfg)));
    mc_method_task mt;
    memset(&mt, 0, sizeof mt);
    mc_config rcfg = *cfg; /* the localize task's reading decides its key */
    mc_config_set_reading(&rcfg, reading);
    if (s == MC_OK)
        s = mc_method_task_find(c, &rcfg, &tasks[found], MC_STAGE_LOCALIZE, &mt,
                                err); /* key, store */
    bool complete = false;
    if (s == MC_OK) s = mc_store_peek_complete(c, mt.store, &complete, err);
    if (s == MC_OK && !complete)
        s = MC_FAIL(err, MC_ERR_ARG,
                    "the localize output of task %s is missing (%s); run the localize stage first "
                    "(miclip localize CONFIG)",
                    tasks[found].id, mt.store);
    if (s == MC_OK && !(mc_strlcpy(store, mt.store, cap) && mc_strlcpy(key, mt.key, MC_KEY_HEX)))
        s = MC_FAIL(err, MC_ERR_INTERNAL, "path too long");
    mc_method_task_close(&mt);
    mc_tasks_free(&tasks);
    return s;
}

/* miclip: top units of each class's concept from the localize store of (seed, intervene.layer,
 * variant: the task's E_n variant); act_values / clip_dissect: the same from the localize/ group of the
 * baselines store of (seed, intervene.layer, method). A class's concept is its name, looked up in
 * the `source: classes` set first, then in the other localized sets (unseen classes). Fills
 * ku[d][k].units for the datasets not skipped. Collective. */
static mc_status miclip_units(const mc_comm *c, const mc_config *cfg, int64_t seed, int method,
                              int variant, int reading, const mc_prefix_set *ps, int nd,
                              kind_units (*ku)[2], int nk, char *source_key, size_t key_cap,
                              mc_error *err) {
    const char *set = NULL;
    for (int i = 0; i < cfg->concepts.n; i++)
        if (cfg->concepts.v[i].source == MC_CONCEPTS_CLASSES && !set) set = cfg->concepts.v[i].name;
    if (!set)
        return MC_FAIL(err, MC_ERR_CONFIG,
                       "%s: intervene.methods lists %s, which needs a concept set with "
                       "'source: classes' in 'concepts' (the class names are the concepts)",
                       cfg->source_path, mc_method_name(method));
    const bool baseline = method != MC_METHOD_MICLIP;
    const char *pre = baseline
                          ? "localize/"
                          : ""; /* the baselines store holds the localize layout under localize/ */
    char store[MC_PATH_CAP], key[MC_KEY_HEX];
    mc_status s =
        units_source(c, cfg, seed, method, variant, reading, store, sizeof store, key, err);
    mc_store *st = NULL;
    if (s == MC_OK) s = mc_store_open(c, store, MC_STORE_READ, &st, err);
    /* The localized sets, `set` first. */
    const int ns_max = cfg->concepts.n;
    const char **sets = calloc((size_t)ns_max + 1, sizeof *sets);
    char ***names = calloc((size_t)ns_max + 1, sizeof *names);
    int64_t *n_names = calloc((size_t)ns_max + 1, sizeof *n_names);
    int ns = 0;
    if (s == MC_OK && (!sets || !names || !n_names))
        s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    if (s == MC_OK) sets[ns++] = set;
    for (int i = 0; s == MC_OK && i < cfg->concepts.n; i++) {
        char base[300];
        mc_snprintf(base, sizeof base, "%s%s/concepts_offsets", pre, cfg->concepts.v[i].name);
        if (strcmp(cfg->concepts.v[i].name, set) && mc_store_exists(st, base))
            sets[ns++] = cfg->concepts.v[i].name;
    }
    for (int i = 0; s == MC_OK && i < ns; i++) {
        char base[300];
        mc_snprintf(base, sizeof base, "%s%s/concepts", pre, sets[i]);
        s = mc_store_read_strings(st, base, &names[i], &n_names[i], err);
    }
    const int64_t tau = cfg->intervene.tau;
    for (int k = 0; s == MC_OK && k < nk; k++) {
        const char *kind = mc_unit_kind_name(ku[0][k].kind);
        for (int d = 0; s == MC_OK && d < nd; d++) {
            if (ps[d].skip) continue;
            for (int64_t cl = 0; s == MC_OK && cl < ps[d].C; cl++) {
                int si = -1;
                int64_t j = -1;
                for (int i = 0; i < ns && j < 0; i++)
                    for (int64_t q = 0; q < n_names[i] && j < 0; q++)
                        if (!strcasecmp(names[i][q], ps[d].class_names[cl])) j = q, si = i;
                if (j < 0) {
                    s = MC_FAIL(
                        err, MC_ERR_ARG,
                        "%s: %s class '%s' is a concept of no localized set (%s and the other "
                        "sets of 'concepts'); add a concept set that names it",
                        store, mc_split_name(ps[d].split), ps[d].class_names[cl], set);
                    break;
                }
                char name[400];
                mc_snprintf(name, sizeof name, "%s%s/%s/top_units", pre, sets[si], kind);
                mc_store_dataset_info di;
                if (!mc_store_exists(st, name)) {
                    s = MC_FAIL(
                        err, MC_ERR_ARG,
                        "%s: no %s (the localize output lacks %s units of concept set '%s')", store,
                        name, kind, sets[si]);
                    break;
                }
                s = mc_store_dataset_info_get(st, name, &di, err);
                if (s == MC_OK && (di.ndim != 2 || di.shape[0] != n_names[si] || di.shape[1] < tau))
                    s = MC_FAIL(err, MC_ERR_CONFIG,
                                "%s: %s holds the top %lld units per concept; intervene.tau is "
                                "%lld (raise localize.tau)",
                                store, name, (long long)(di.ndim == 2 ? di.shape[1] : 0),
                                (long long)tau);
                int64_t start[2] = {j, 0}, count[2] = {1, tau};
                if (s == MC_OK)
                    s = mc_store_read_slice(st, name, MC_DTYPE_I32, start, count,
                                            ku[d][k].units + cl * tau, false, err);
            }
            s = mc_comm_agree(c, s, err);
        }
    }
    if (s == MC_OK && !mc_strlcpy(source_key, key, key_cap))
        s = MC_FAIL(err, MC_ERR_INTERNAL, "key too long");
    if (st) mc_store_close(&st, NULL);
    for (int i = 0; names && i < ns; i++) mc_strings_free(&names[i], n_names[i]);
    free(sets), free(names), free(n_names);
    return s;
}

/* random: tau distinct units per class, drawn by a keyed RNG from (seed, class, unit kind). */
static void random_units(int64_t seed, int64_t C, int kind, int64_t n_units, int64_t tau,
                         int32_t *units) {
    for (int64_t cl = 0; cl < C; cl++) {
        uint64_t stream = 0x696e74657276656eull ^ ((uint64_t)kind << 40) ^ (uint64_t)cl;
        int64_t got = 0;
        for (uint64_t draw = 0; got < tau; draw++) {
            int32_t u = (int32_t)mc_rng_below((uint64_t)seed, stream, draw, (uint64_t)n_units);
            bool dup = false;
            for (int64_t q = 0; q < got; q++) dup |= units[cl * tau + q] == u;
            if (!dup) units[cl * tau + got++] = u;
        }
    }
}

/* ---- checks before any work -------------------------------------------------------------- */

mc_status mc_intervene_check(const mc_config *cfg, mc_error *err) {
    for (int i = 0; i < cfg->intervene.methods.n; i++) {
        int m = cfg->intervene.methods.v[i];
        if (m == MC_METHOD_NETDISSECT)
            for (int k = 0; k < cfg->intervene.units.n; k++)
                if (cfg->intervene.units.v[k] == MC_UNIT_SAE)
                    return MC_FAIL(err, MC_ERR_CONFIG,
                                   "%s: intervene.methods lists netdissect, which localizes "
                                   "neurons only: set intervene.units: [neuron]",
                                   cfg->source_path);
        if (m == MC_METHOD_ORACLE && cfg->intervene.oracle_candidates > 0 &&
            cfg->intervene.oracle_candidates < cfg->intervene.tau)
            return MC_FAIL(err, MC_ERR_CONFIG,
                           "%s: intervene.oracle_candidates (%lld) is below intervene.tau (%lld): "
                           "the oracle picks tau units among the candidates",
                           cfg->source_path, (long long)cfg->intervene.oracle_candidates,
                           (long long)cfg->intervene.tau);
        if ((m == MC_METHOD_ACT_VALUES || m == MC_METHOD_CLIP_DISSECT ||
             m == MC_METHOD_NETDISSECT || m == MC_METHOD_VINTERP) &&
            !mc_config_has_stage(cfg, MC_STAGE_BASELINES))
            return MC_FAIL(
                err, MC_ERR_CONFIG,
                "%s: intervene.methods lists %s, which reads the baselines stage's output; "
                "add baselines to 'stages'",
                cfg->source_path, mc_method_name(m));
    }
    if (cfg->intervene.prefix == MC_PREFIX_RECOMPUTE && cfg->intervene.cache_dtype == 1)
        return MC_FAIL(err, MC_ERR_CONFIG,
                       "%s: intervene.cache_dtype: f16 rounds a cached state, and "
                       "intervene.prefix: recompute caches none: use one or the other",
                       cfg->source_path);
    for (int i = 0; i < cfg->intervene.units.n; i++)
        if (cfg->intervene.units.v[i] == MC_UNIT_SAE &&
            (!mc_config_has_stage(cfg, MC_STAGE_SAE) ||
             strcmp(cfg->sae.layer, cfg->intervene.layer)))
            return MC_FAIL(
                err, MC_ERR_CONFIG,
                "%s: intervene.units lists sae, but the SAE is trained on sae.layer '%s'%s "
                "and intervene.layer is '%s': they must be equal",
                cfg->source_path, cfg->sae.layer,
                mc_config_has_stage(cfg, MC_STAGE_SAE) ? "" : " (and the sae stage is not listed)",
                cfg->intervene.layer);
    return MC_OK;
}

/* ---- one task ------------------------------------------------------------------------------ */

/* Edited forwards of class cl's units over rows [b, e) of p (fixed per-class batches):
 * predictions into pred[e - b], the first row's logits into first (may be NULL). */
static mc_status edited_rows(const mc_config *cfg, mc_runner *R, mc_prefix_set *p, edit_ctx *ec,
                             int64_t b, int64_t e, float *state, float *logits, float *scores,
                             int32_t *pred, float *prob, float *first, mc_error *err) {
    const int64_t bs = cfg->intervene.batch_size;
    for (int64_t r = b; r < e; r += bs) {
        int64_t re = r + bs < e ? r + bs : e, B = re - r;
        MC_TRY(mc_prefix_state(R, p, r, re, state, err));
        const bool coded = ec->kind == MC_UNIT_SAE && ec->mode == MC_MODE_SCALE;
        if (coded) { /* the batch's codes: those the edit would encode, read once computed */
            MC_TRY(mc_sae_codes_read(ec->codes, r, re, ec->idx, ec->val, err));
            ec->code_idx = ec->idx, ec->code_val = ec->val, ec->code_row = ec->code_ident;
        }
        mc_hook hk = {.name = R->layer, .mode = MC_HOOK_WRITE, .fn = edit_fn, .user = ec};
        mc_forward_opts o = {
            .hooks = &hk, .n_hooks = 1, .start_at = R->layer, .start_state = state};
        mc_status s = mc_model_forward(R->m, NULL, B, R->th, R->tw, &o, logits, NULL, err);
        ec->code_idx = NULL, ec->code_val = NULL, ec->code_row = NULL;
        MC_TRY(s);
        mc_runner_predict(R, p->class_of_target, p->class_emb, p->C, p->labels[b], logits, B,
                          pred + (r - b), prob + (r - b), scores);
        if (first && r == b) memcpy(first, logits, (size_t)R->out_dim * sizeof(float));
    }
    return MC_OK;
}

typedef struct {
    double delta, spec, clean; /* percentage points; clean accuracy in percent */
    double dprob;              /* change of the class's mean probability, percentage points */
    double precision;          /* localization precision, percent (group_precision) */
    int64_t n_classes;         /* classes with images */
} group_result;

static const char *tokens_name(int t) {
    return t == MC_TOKENS_CLS ? "cls" : t == MC_TOKENS_PATCHES ? "patches" : "all";
}

/* Metrics of one (dataset, kind) group from the stored predictions; rank 0 writes them, the CSV
 * and the report lines. Collective. */
static mc_status group_metrics(const mc_comm *c, const mc_config *cfg, const mc_task *task,
                               const mc_runner *R, mc_prefix_set *p, mc_store *st, const char *g,
                               const kind_units *ku, const char *tables, group_result *res,
                               mc_error *err) {
    const int64_t C = p->C, N = p->n, tau = cfg->intervene.tau;
    int32_t *ep = mc_alloc_array((size_t)N, sizeof *ep),
            *xp = mc_alloc_array((size_t)N, sizeof *xp);
    double *m = mc_alloc_array(
        (size_t)C * 6,
        sizeof *m); /* acc_clean, acc_edit, other_clean, other_edit, prob_clean, prob_edit */
    float *pp = mc_alloc_array((size_t)N, sizeof *pp);
    int64_t *cnt = mc_alloc_array((size_t)C, sizeof *cnt);
    mc_status s = mc_comm_agree(
        c, ep && xp && m && cnt && pp ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory"), err);
    char name[600];
    mc_snprintf(name, sizeof name, "%s/edit_pred", g);
    if (s == MC_OK) s = mc_store_read_rows(st, name, MC_DTYPE_I32, 0, N, ep, err);
    mc_snprintf(name, sizeof name, "%s/cross_pred", g);
    if (s == MC_OK) s = mc_store_read_rows(st, name, MC_DTYPE_I32, 0, N, xp, err);
    mc_snprintf(name, sizeof name, "%s/edit_prob", g);
    if (s == MC_OK) s = mc_store_read_rows(st, name, MC_DTYPE_F32, 0, N, pp, err);
    double sd = 0, ss = 0, sc = 0, sp = 0;
    int64_t nd = 0, ns = 0, hit_all = 0;
    for (int64_t k = 0; s == MC_OK && k < C; k++) {
        int64_t o = (k + 1) % C, n = p->first[k + 1] - p->first[k],
                no = p->first[o + 1] - p->first[o];
        int64_t hc = 0, he = 0, oc = 0, oe = 0;
        for (int64_t i = p->first[k]; i < p->first[k + 1]; i++)
            hc += p->clean_pred[i] == k, he += ep[i] == k;
        for (int64_t i = p->first[o]; i < p->first[o + 1]; i++)
            oc += p->clean_pred[i] == o, oe += xp[i] == o;
        double pc = 0, pe = 0;
        for (int64_t i = p->first[k]; i < p->first[k + 1]; i++) pc += p->clean_prob[i], pe += pp[i];
        m[4 * C + k] = n ? pc / (double)n : NAN;
        m[5 * C + k] = n ? pe / (double)n : NAN;
        if (n) sp += 100.0 * (m[5 * C + k] - m[4 * C + k]);
        cnt[k] = n;
        hit_all += hc;
        m[k] = n ? (double)hc / (double)n : NAN;
        m[C + k] = n ? (double)he / (double)n : NAN;
        m[2 * C + k] = no ? (double)oc / (double)no : NAN;
        m[3 * C + k] = no ? (double)oe / (double)no : NAN;
        if (n) sd += 100.0 * (m[C + k] - m[k]), nd++;
        if (no) ss += 100.0 * (m[3 * C + k] - m[2 * C + k]), ns++;
    }
    sc = N ? 100.0 * (double)hit_all / (double)N : NAN;
    res->delta = nd ? sd / (double)nd : NAN;
    res->spec = ns ? ss / (double)ns : NAN;
    res->dprob = nd ? sp / (double)nd : NAN;
    res->clean = sc;
    res->n_classes = nd;
    bool root = c->rank == 0;
    const char *mn[6] = {"acc_clean",      "acc_edit",   "other_acc_clean",
                         "other_acc_edit", "prob_clean", "prob_edit"};
    for (int q = 0; s == MC_OK && q < 6; q++) {
        mc_snprintf(name, sizeof name, "%s/%s", g, mn[q]);
        s = mc_store_write_rows(st, name, MC_DTYPE_F64, 0, root ? C : 0, m + q * C, err);
    }
    mc_snprintf(name, sizeof name, "%s/n_images", g);
    if (s == MC_OK) s = mc_store_write_rows(st, name, MC_DTYPE_I64, 0, root ? C : 0, cnt, err);
    if (s == MC_OK) s = mc_store_set_attr_f64(st, g, "delta_acc", res->delta, err);
    if (s == MC_OK) s = mc_store_set_attr_f64(st, g, "specificity", res->spec, err);
    if (s == MC_OK) s = mc_store_set_attr_f64(st, g, "delta_prob", res->dprob, err);
    if (s == MC_OK) s = mc_store_set_attr_f64(st, g, "clean_acc", res->clean, err);
    if (s == MC_OK) s = mc_store_set_attr_i64(st, g, "n_units", ku->n_units, err);
    if (s == MC_OK && root) {
        mc_buf b = {0};
        mc_buf_printf(
            &b,
            "class_index,class,n_images,acc_clean,acc_edit,delta_pp,other_class,other_acc_clean,"
            "other_acc_edit,other_delta_pp,prob_clean,prob_edit,units\n");
        for (int64_t k = 0; k < C; k++) {
            int64_t o = (k + 1) % C;
            mc_buf_printf(&b, "%lld,", (long long)k);
            mc_buf_csv(&b, p->class_names[k]);
            mc_buf_printf(&b, ",%lld,%.6f,%.6f,%.4f,%lld,%.6f,%.6f,%.4f,", (long long)cnt[k], m[k],
                          m[C + k], 100.0 * (m[C + k] - m[k]), (long long)o, m[2 * C + k],
                          m[3 * C + k], 100.0 * (m[3 * C + k] - m[2 * C + k]));
            mc_buf_printf(&b, "%.6f,%.6f,", m[4 * C + k], m[5 * C + k]);
            for (int64_t q = 0; q < tau; q++)
                mc_buf_printf(&b, "%s%d", q ? ";" : "", ku->units[k * tau + q]);
            mc_buf_printf(&b, "\n");
        }
        char path[MC_PATH_CAP];
        mc_snprintf(path, sizeof path, "%s/%s-%s-%s.csv", tables, task->id, mc_split_name(p->split),
                    mc_unit_kind_name(ku->kind));
        s = b.oom ? MC_FAIL(err, MC_ERR_NOMEM, "out of memory")
                  : mc_write_text_file(path, b.p, b.n, err);
        mc_buf_free(&b);
    }
    s = mc_comm_agree(c, s, err);
    free(ep), free(xp), free(m), free(cnt), free(pp);
    return s;
}

/* The edited tokens [t0, t1) of the state (intervene.tokens; a feature map's positions all). */
static void edited_tokens(const mc_config *cfg, const mc_runner *R, int64_t *t0, int64_t *t1) {
    *t0 = 0, *t1 = R->tokens;
    if (!R->map && cfg->intervene.tokens == MC_TOKENS_CLS) *t1 = 1;
    if (!R->map && cfg->intervene.tokens == MC_TOKENS_PATCHES) *t0 = 1;
}

/* Localization precision of one (dataset, kind) group (docs/intervene.md): each image's value of
 * every unit is its mean over the edited tokens (a neuron: the state's entry, read from the
 * prefix cache; an SAE feature: its top-k code, 0 where it does not fire, read from the code
 * store), in row order, then mc_unit_precision. Every rank computes the same numbers; rank 0
 * writes <g>/precision [C] and the group's attribute "precision" (percent). Collective. */
static mc_status group_precision(const mc_comm *c, const mc_config *cfg, const mc_runner *R,
                                 mc_prefix_set *p, mc_store *st, const char *g,
                                 const kind_units *ku, sae_units *sae, mc_sae_codes *codes,
                                 double *mean, mc_error *err) {
    const int64_t N = p->n, C = p->C, D = R->dim, nu = ku->n_units, bs = cfg->intervene.batch_size,
                  tau = cfg->intervene.tau;
    int64_t t0, t1;
    edited_tokens(cfg, R, &t0, &t1);
    const int64_t nt = t1 - t0;
    const bool is_sae = ku->kind == MC_UNIT_SAE;
    const int k = is_sae ? sae->k : 0;
    float *acts = calloc((size_t)(N > 0 ? N : 1) * (size_t)nu, sizeof(float));
    float *state = is_sae ? NULL : mc_alloc_array((size_t)bs, (size_t)R->per * sizeof(float));
    int32_t *idx = mc_alloc_array((size_t)bs * (size_t)nt, (size_t)(k > 0 ? k : 1) * 4);
    float *val = mc_alloc_array((size_t)bs * (size_t)nt, (size_t)(k > 0 ? k : 1) * 4);
    double *prec = mc_alloc_array((size_t)(C > 0 ? C : 1), sizeof(double));
    mc_status s = acts && (state || is_sae) && idx && val && prec
                      ? MC_OK
                      : MC_FAIL(err, MC_ERR_NOMEM, "out of memory for the precision of %s", g);
    const float inv = 1.0f / (float)nt;
    for (int64_t r = 0; s == MC_OK && r < N; r += bs) {
        const int64_t B = r + bs < N ? bs : N - r;
        if (is_sae) {
            /* the codes of rows [r, r + B): mc_sae_encode's codes of these tokens (a row's code
             * does not depend on the rows encoded with it where the BLAS rounds each row alike,
             * as OpenBLAS does here: docs/intervene.md, "Code store") */
            s = mc_sae_codes_read(codes, r, r + B, idx, val, err);
            for (int64_t q = 0; s == MC_OK && q < B * nt; q++)
                for (int j = 0; j < k; j++)
                    acts[(r + q / nt) * nu + idx[q * k + j]] += val[q * k + j] * inv;
            continue;
        }
        s = mc_prefix_state(R, p, r, r + B, state, err);
        for (int64_t b = 0; s == MC_OK && b < B; b++)
            for (int64_t t = 0; t < nt; t++)
                for (int64_t i = 0; i < D; i++) {
                    const int64_t tt = t0 + t;
                    float x = R->map ? state[(b * D + i) * R->tokens + tt]
                                     : state[(b * R->tokens + tt) * D + i];
                    acts[(r + b) * nu + i] += x * inv;
                }
    }
    if (s == MC_OK)
        s = mc_unit_precision(acts, N, nu, p->first, C, ku->units, tau, prec, mean, err);
    if (s == MC_OK) *mean *= 100.0;
    s = mc_comm_agree(c, s, err);
    char name[600];
    mc_snprintf(name, sizeof name, "%s/precision", g);
    if (s == MC_OK && !mc_store_exists(st, name)) {
        int64_t sh[1] = {C};
        s = mc_store_create_dataset(st, name, MC_DTYPE_F64, 1, sh, 0, err);
    }
    if (s == MC_OK)
        s = mc_store_write_rows(st, name, MC_DTYPE_F64, 0, c->rank == 0 ? C : 0, prec, err);
    if (s == MC_OK) s = mc_store_set_attr_f64(st, g, "precision", *mean, err);
    free(acts), free(state), free(idx), free(val), free(prec);
    return s;
}

/* Runs (or resumes) one (dataset, kind) group: class by class, round-robin over ranks. */
static mc_status run_group(const mc_comm *c, const mc_config *cfg, const mc_task *task,
                           mc_runner *R, mc_prefix_set *p, mc_store *st, const char *g,
                           const kind_units *ku, sae_units *sae, mc_sae_codes *codes,
                           mc_error *err) {
    const int64_t C = p->C, tau = cfg->intervene.tau, bs = cfg->intervene.batch_size;
    int64_t maxn = 1;
    for (int64_t k = 0; k < C; k++)
        if (p->first[k + 1] - p->first[k] > maxn) maxn = p->first[k + 1] - p->first[k];
    edit_ctx ec = {.R = R,
                   .kind = ku->kind,
                   .mode = task->mode,
                   .beta = (float)task->beta,
                   .tau = tau,
                   .sae = sae,
                   .codes = codes,
                   .mu = task->mode == MC_MODE_ADD ? ku->mu : NULL};
    edited_tokens(cfg, R, &ec.t0, &ec.t1);
    float *state = mc_alloc_array((size_t)bs, (size_t)R->per * sizeof(float));
    float *logits = mc_alloc_array((size_t)bs, (size_t)R->out_dim * sizeof(float));
    float *first = calloc((size_t)R->out_dim, sizeof(float));
    int32_t *ep = mc_alloc_array((size_t)maxn, sizeof *ep),
            *xp = mc_alloc_array((size_t)maxn, sizeof *xp);
    float *eprob = mc_alloc_array((size_t)maxn, sizeof *eprob),
          *xprob = mc_alloc_array((size_t)maxn, sizeof *xprob);
    float *scores = mc_alloc_array((size_t)bs, (size_t)C * sizeof *scores);
    uint8_t *done = calloc((size_t)C, 1);
    int64_t *pending = mc_alloc_array((size_t)C, sizeof *pending);
    bool need_sae = ku->kind == MC_UNIT_SAE;
    if (need_sae) {
        ec.mask = calloc((size_t)sae->m, 1);
        ec.rows = mc_alloc_array((size_t)bs * (size_t)R->tokens, (size_t)R->dim * sizeof(float));
        ec.idx = mc_alloc_array((size_t)bs * (size_t)R->tokens, (size_t)sae->k * sizeof(int32_t));
        ec.val = mc_alloc_array((size_t)bs * (size_t)R->tokens, (size_t)sae->k * sizeof(float));
        ec.code_ident = mc_alloc_array((size_t)bs, sizeof(int64_t));
        for (int64_t b = 0; ec.code_ident && b < bs; b++) ec.code_ident[b] = b;
    }
    mc_status s = MC_OK;
    if (!state || !logits || !first || !ep || !xp || !eprob || !xprob || !scores || !done ||
        !pending || (need_sae && (!ec.mask || !ec.rows || !ec.idx || !ec.val || !ec.code_ident)))
        s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory for a batch of %lld images", (long long)bs);
    s = mc_comm_agree(c, s, err);
    int64_t n_pending = 0, n_done = 0;
    if (s == MC_OK) s = mc_store_units_read(st, g, C, done, &n_done, err);
    for (int64_t k = 0; s == MC_OK && k < C; k++)
        if (!done[k]) pending[n_pending++] = k;
    if (s == MC_OK && n_done > 0)
        mc_info0("intervene %s %s: resuming, %lld of %lld classes done", task->id, g,
                 (long long)n_done, (long long)C);
    char label[700];
    mc_snprintf(label, sizeof label, "intervene %s", g);
    mc_progress prog;
    mc_progress_start(&prog, label, n_pending, "class");
    char n_ep[600], n_xp[600], n_fl[600], n_pp[600];
    mc_snprintf(n_pp, sizeof n_pp, "%s/edit_prob", g);
    mc_snprintf(n_ep, sizeof n_ep, "%s/edit_pred", g);
    mc_snprintf(n_xp, sizeof n_xp, "%s/cross_pred", g);
    mc_snprintf(n_fl, sizeof n_fl, "%s/first_logits", g);
    int64_t rounds = (n_pending + c->size - 1) / c->size;
    for (int64_t r = 0; s == MC_OK && r < rounds; r++) {
        int64_t slot = r * c->size + c->rank, cl = -1, o = 0;
        mc_status ls = MC_OK;
        memset(first, 0, (size_t)R->out_dim * sizeof(float));
        if (slot < n_pending) {
            cl = pending[slot];
            o = (cl + 1) % C;
            ec.units = ku->units + cl * tau;
            if (need_sae) {
                memset(ec.mask, 0, (size_t)sae->m);
                for (int64_t q = 0; q < tau; q++) ec.mask[ec.units[q]] = 1;
            }
            ls = edited_rows(cfg, R, p, &ec, p->first[cl], p->first[cl + 1], state, logits, scores,
                             ep, eprob, first, err);
            if (ls == MC_OK)
                ls = edited_rows(cfg, R, p, &ec, p->first[o], p->first[o + 1], state, logits,
                                 scores, xp, xprob, NULL, err);
        }
        s = mc_comm_agree(c, ls, err);
        bool mine = cl >= 0;
        if (s == MC_OK)
            s = mc_store_write_rows(st, n_ep, MC_DTYPE_I32, mine ? p->first[cl] : 0,
                                    mine ? p->first[cl + 1] : 0, ep, err);
        if (s == MC_OK)
            s = mc_store_write_rows(st, n_pp, MC_DTYPE_F32, mine ? p->first[cl] : 0,
                                    mine ? p->first[cl + 1] : 0, eprob, err);
        if (s == MC_OK)
            s = mc_store_write_rows(st, n_xp, MC_DTYPE_I32, mine ? p->first[o] : 0,
                                    mine ? p->first[o + 1] : 0, xp, err);
        if (s == MC_OK)
            s = mc_store_write_rows(st, n_fl, MC_DTYPE_F32, mine ? cl : 0, mine ? cl + 1 : 0, first,
                                    err);
        if (s == MC_OK) s = mc_store_units_mark(st, g, &cl, mine ? 1 : 0, err);
        mc_progress_update(&prog, (r + 1) * c->size < n_pending ? (r + 1) * c->size : n_pending);
        if (s == MC_OK && mc_comm_stop_requested(c))
            s = MC_FAIL(err, MC_ERR_INTERRUPTED,
                        "intervene %s: stopped by signal; the store is consistent, rerun to "
                        "resume (%s)",
                        task->id, mc_store_path(st));
    }
    mc_progress_finish(&prog);
    free(state), free(logits), free(first), free(ep), free(xp), free(eprob), free(xprob),
        free(scores), free(done);
    free(pending);
    free(ec.mask), free(ec.rows), free(ec.idx), free(ec.val), free(ec.code_ident);
    return s;
}

/* ---- oracle: each class's units ranked by their single removal, measured ------------------------ */

/* The ablation scores of one (dataset, unit kind): drop[c * n_units + u] = the mean over class c's
 * images of (clean probability of c - its probability with unit u alone scaled by 0), the same edit
 * on the same tokens as the stage's removal; hit[] the same for the accuracy (fractions). A unit
 * outside the class's candidates (intervene.oracle_candidates) scores NaN. */
typedef struct {
    char path[MC_PATH_CAP];
    char key[MC_KEY_HEX];
    int64_t C, n_units;
    double *drop, *hit; /* [C * n_units] */
    int64_t *n_forward; /* [C]: image-suffix forwards spent on the class */
} oracle_scores;

static void oracle_scores_free(oracle_scores *o) {
    free(o->drop), free(o->hit), free(o->n_forward);
    memset(o, 0, sizeof *o);
}

/* One class cl: the candidates' single-unit removals, (unit, image) pairs packed into batches of
 * intervene.batch_size in (unit, row) order; an SAE feature is run only on the images where it is
 * among the top-k code of an edited token (elsewhere the edit changes nothing: the clean
 * probability counts). Fills drop/hit[n_units] and *nf. */
static mc_status oracle_class(const mc_config *cfg, mc_runner *R, mc_prefix_set *p, edit_ctx *ec,
                              int64_t cl, int64_t n_units, float *cstate, float *state,
                              float *logits, float *scores, int32_t *pred, float *prob,
                              int32_t *row_unit, int64_t *pair_row, uint8_t *active, double *act,
                              int64_t *order, int32_t *sidx, float *sval, double *drop, double *hit,
                              int64_t *nf, mc_error *err) {
    const int64_t f0 = p->first[cl], n = p->first[cl + 1] - f0, bs = cfg->intervene.batch_size;
    const int64_t D = R->dim, nt = ec->t1 - ec->t0, per = R->per;
    *nf = 0;
    for (int64_t u = 0; u < n_units; u++) drop[u] = 0, hit[u] = 0, act[u] = 0;
    if (n == 0) return MC_OK;
    MC_TRY(mc_prefix_state(R, p, f0, f0 + n, cstate, err));
    /* Which units act on which image, and each unit's mean absolute activation over the class's edited
     * tokens (x0 removes |a|: a strongly negative neuron matters as much as a positive one). */
    if (ec->kind == MC_UNIT_SAE) {
        memset(active, 0, (size_t)(n_units * n));
        /* the class's codes from the code store (the same codes an encode of its rows gives
         * where the BLAS rounds each row alike: docs/intervene.md, "Code store") */
        MC_TRY(mc_sae_codes_read(ec->codes, f0, f0 + n, sidx, sval, err));
        const int k = ec->sae->k;
        for (int64_t r = 0; r < n * nt; r++)
            for (int j = 0; j < k; j++) {
                int32_t f = sidx[r * k + j];
                active[f * n + r / nt] = 1;
                act[f] += sval[r * k + j];
            }
    } else {
        memset(active, 1, (size_t)(n_units * n));
        for (int64_t b = 0; b < n; b++)
            for (int64_t t = ec->t0; t < ec->t1; t++)
                for (int64_t i = 0; i < D; i++) act[i] += fabs((double)*elem(ec, cstate, b, t, i));
    }
    /* Candidates: every unit, or the top oracle_candidates by mean absolute activation (ties: lower index). */
    const int64_t N = cfg->intervene.oracle_candidates;
    for (int64_t u = 0; u < n_units; u++) order[u] = u;
    if (N > 0 && N < n_units) {
        for (int64_t a = 0; a < N;
             a++) { /* partial selection sort: N x n_units, cheap beside the forwards */
            int64_t best = a;
            for (int64_t q = a + 1; q < n_units; q++)
                if (act[order[q]] > act[order[best]] ||
                    (act[order[q]] == act[order[best]] && order[q] < order[best]))
                    best = q;
            int64_t tmp = order[a];
            order[a] = order[best], order[best] = tmp;
        }
        for (int64_t a = N; a < n_units; a++) drop[order[a]] = NAN, hit[order[a]] = NAN;
        /* the candidates in unit order, so the pairs' order does not depend on N's ranking */
        for (int64_t a = 1; a < N; a++)
            for (int64_t q = a; q > 0 && order[q - 1] > order[q]; q--) {
                int64_t tmp = order[q];
                order[q] = order[q - 1], order[q - 1] = tmp;
            }
    }
    const int64_t nc = N > 0 && N < n_units ? N : n_units;
    /* The (unit, row) pairs in order, cut into batches. */
    int64_t u_at = 0, i_at = 0;
    for (;;) {
        int64_t B = 0;
        while (B < bs && u_at < nc) {
            int64_t u = order[u_at];
            if (active[u * n + i_at]) {
                row_unit[B] = (int32_t)u, pair_row[B] = i_at;
                memcpy(state + B * per, cstate + i_at * per, (size_t)per * sizeof(float));
                B++;
            }
            if (++i_at == n) i_at = 0, u_at++;
        }
        if (B == 0) break;
        ec->row_unit = row_unit;
        if (ec->kind == MC_UNIT_SAE) /* every pair's image was encoded above: reuse its code */
            ec->code_idx = sidx, ec->code_val = sval, ec->code_row = pair_row;
        mc_hook hk = {.name = R->layer, .mode = MC_HOOK_WRITE, .fn = edit_fn, .user = ec};
        mc_forward_opts o = {
            .hooks = &hk, .n_hooks = 1, .start_at = R->layer, .start_state = state};
        mc_status s = mc_model_forward(R->m, NULL, B, R->th, R->tw, &o, logits, NULL, err);
        ec->row_unit = NULL, ec->code_idx = NULL, ec->code_val = NULL, ec->code_row = NULL;
        if (s != MC_OK) return s;
        mc_runner_predict(R, p->class_of_target, p->class_emb, p->C, cl, logits, B, pred, prob,
                          scores);
        for (int64_t b = 0; b < B; b++) {
            int64_t row = f0 + pair_row[b];
            drop[row_unit[b]] += (double)p->clean_prob[row] - (double)prob[b];
            hit[row_unit[b]] += (double)(p->clean_pred[row] == cl) - (double)(pred[b] == cl);
        }
        *nf += B;
    }
    for (int64_t a = 0; a < nc; a++) drop[order[a]] /= (double)n, hit[order[a]] /= (double)n;
    return MC_OK;
}

/* Builds (or resumes, or reads) the ablation scores of one (dataset, unit kind):
 * OUTPUT_DIR/intervene/oracle-<split>-l<layer>-<kind>-<key16>.h5 (key: the prefix, the SAE, the
 * tokens, the candidates), shared by every oracle task that shares them (neurons: every seed of a
 * prefix). Classes are dealt round-robin over ranks and marked done; every rank ends with the whole
 * matrices. Collective. */
enum { ORACLE_WAIT_TRIES = 600 }; /* 2 s apart: a concurrent writer gets 20 minutes */

/* The key of the ablation scores of (the prefix p, unit kind): every input of the scores. */
static mc_status oracle_key(const mc_config *cfg, const mc_prefix_set *p, int kind,
                            const char *sae_key, char key[MC_KEY_HEX], mc_error *err) {
    mc_buf kb = {0};
    mc_buf_printf(&kb,
                  "miclip-intervene-oracle/" /* 2: an SAE pair reuses its image's code */
                  "2\ncode=%s\nprefix=%s\nkind=%s\nsae=%s\ntokens=%s\nbatch_size=%lld\n"
                  "candidates=%lld\nbeta=0\n",
                  MICLIP_CACHE_VERSION, p->key, mc_unit_kind_name(kind),
                  kind == MC_UNIT_SAE ? sae_key : "", tokens_name(cfg->intervene.tokens),
                  (long long)cfg->intervene.batch_size,
                  (long long)cfg->intervene.oracle_candidates);
    mc_status s = kb.oom ? MC_FAIL(err, MC_ERR_NOMEM, "out of memory") : MC_OK;
    if (s == MC_OK) mc_key_of(kb.p, key);
    mc_buf_free(&kb);
    return s;
}

static mc_status oracle_scores_get(const mc_comm *c, const mc_config *cfg, mc_runner *R,
                                   mc_prefix_set *p, int kind, int64_t n_units, sae_units *sae,
                                   mc_sae_codes *codes, oracle_scores *o, mc_error *err) {
    memset(o, 0, sizeof *o);
    const int64_t C = p->C, bs = cfg->intervene.batch_size;
    o->C = C, o->n_units = n_units;
    mc_status s = oracle_key(cfg, p, kind, sae->key, o->key, err);
    if (s == MC_OK &&
        !mc_snprintf(o->path, sizeof o->path, "%s/intervene/oracle-%s-l%s-%s-%.16s.h5",
                     cfg->output_dir, mc_split_name(p->split), R->layer, mc_unit_kind_name(kind),
                     o->key))
        s = MC_FAIL(err, MC_ERR_ARG, "output path too long under %s", cfg->output_dir);
    const size_t cu = (size_t)(C > 0 ? C : 1) * (size_t)n_units;
    o->drop = mc_alloc_array(cu, sizeof(double));
    o->hit = mc_alloc_array(cu, sizeof(double));
    o->n_forward = calloc((size_t)(C > 0 ? C : 1), sizeof(int64_t));
    if (s == MC_OK && (!o->drop || !o->hit || !o->n_forward))
        s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    MC_TRY(mc_comm_agree(c, s, err));
    bool complete = false, created = false;
    mc_store *st = NULL;
    /* The tasks of a Slurm array share this store: one writes it, the others wait for its writer
     * (as for the prefix cache) instead of failing on its lock; a writer that died leaves no
     * lock, and the next attempt resumes its store. */
    for (int attempt = 0;; attempt++) {
        s = mc_store_peek_complete(c, o->path, &complete, err);
        if (s == MC_OK)
            s = complete ? mc_store_open(c, o->path, MC_STORE_READ, &st, err)
                         : mc_store_resume(c, o->path, &st, &created, err);
        /* The writer finished between the peek and the resume: read its store, never
         * rewrite a complete one that other tasks may be reading. */
        if (s == MC_OK && !complete && !created && mc_store_is_complete(st, "/")) {
            s = mc_store_close(&st, err);
            complete = true;
            if (s == MC_OK) s = mc_store_open(c, o->path, MC_STORE_READ, &st, err);
        }
        if (s != MC_ERR_LOCKED || attempt >= ORACLE_WAIT_TRIES) break;
        if (attempt == 0) mc_info0("intervene: another run is writing %s; waiting", o->path);
        sleep(2);
    }
    if (s == MC_OK && created) {
        int64_t sh[2] = {C, n_units};
        s = mc_store_create_dataset(st, "drop_prob", MC_DTYPE_F64, 2, sh, 0, err);
        if (s == MC_OK) s = mc_store_create_dataset(st, "drop_acc", MC_DTYPE_F64, 2, sh, 0, err);
        if (s == MC_OK) s = mc_store_create_dataset(st, "n_forward", MC_DTYPE_I64, 1, sh, 0, err);
        if (s == MC_OK) s = mc_prefix_provenance(st, cfg, R, p, err);
        const mc_store_attr_str sa[] = {{"oracle_key", o->key},
                                        {"prefix_store", p->path},
                                        {"kind", mc_unit_kind_name(kind)},
                                        {"sae_store", kind == MC_UNIT_SAE ? sae->path : ""},
                                        {"layer", R->layer},
                                        {"tokens", tokens_name(cfg->intervene.tokens)},
                                        {"criterion", "drop_prob"}};
        if (s == MC_OK) s = mc_store_set_attrs_str(st, "/", MC_STORE_ATTRS(sa), err);
        if (s == MC_OK)
            s = mc_store_set_attr_i64(st, "/", "candidates", cfg->intervene.oracle_candidates, err);
    }
    if (s == MC_OK && !complete) s = mc_store_units_init(st, "/", C > 0 ? C : 1, err);
    if (s == MC_OK && created) s = mc_store_mark_layout(st, err);
    s = mc_comm_agree(c, s, err);
    if (s == MC_OK && !complete) {
        int64_t maxn = 1;
        for (int64_t k = 0; k < C; k++)
            if (p->first[k + 1] - p->first[k] > maxn) maxn = p->first[k + 1] - p->first[k];
        edit_ctx ec = {
            .R = R, .kind = kind, .mode = MC_MODE_SCALE, .beta = 0.0f, .tau = 1, .sae = sae};
        ec.codes = codes;
        ec.t0 = 0, ec.t1 = R->tokens;
        if (!R->map && cfg->intervene.tokens == MC_TOKENS_CLS) ec.t1 = 1;
        if (!R->map && cfg->intervene.tokens == MC_TOKENS_PATCHES) ec.t0 = 1;
        const bool need_sae = kind == MC_UNIT_SAE;
        const int64_t nt = ec.t1 - ec.t0, k = need_sae ? sae->k : 1;
        float *cstate = mc_alloc_array((size_t)maxn, (size_t)R->per * sizeof(float));
        float *state = mc_alloc_array((size_t)bs, (size_t)R->per * sizeof(float));
        float *logits = mc_alloc_array((size_t)bs, (size_t)R->out_dim * sizeof(float));
        float *scores = mc_alloc_array((size_t)bs, (size_t)(C > 0 ? C : 1) * sizeof(float));
        int32_t *pred = mc_alloc_array((size_t)bs, sizeof(int32_t)),
                *row_unit = mc_alloc_array((size_t)bs, sizeof(int32_t));
        float *prob = mc_alloc_array((size_t)bs, sizeof(float));
        int64_t *pair_row = mc_alloc_array((size_t)bs, sizeof(int64_t)),
                *order = mc_alloc_array((size_t)n_units, sizeof(int64_t));
        uint8_t *active = mc_alloc_array((size_t)maxn, (size_t)n_units);
        double *act = mc_alloc_array((size_t)n_units, sizeof(double));
        double *drop = mc_alloc_array((size_t)n_units, sizeof(double)),
               *hit = mc_alloc_array((size_t)n_units, sizeof(double));
        int32_t *sidx =
            need_sae ? mc_alloc_array((size_t)(maxn * nt), (size_t)k * sizeof(int32_t)) : NULL;
        float *sval =
            need_sae ? mc_alloc_array((size_t)(maxn * nt), (size_t)k * sizeof(float)) : NULL;
        if (need_sae) {
            ec.rows =
                mc_alloc_array((size_t)bs * (size_t)R->tokens, (size_t)R->dim * sizeof(float));
            ec.idx =
                mc_alloc_array((size_t)bs * (size_t)R->tokens, (size_t)sae->k * sizeof(int32_t));
            ec.val = mc_alloc_array((size_t)bs * (size_t)R->tokens, (size_t)sae->k * sizeof(float));
        }
        uint8_t *done = calloc((size_t)(C > 0 ? C : 1), 1);
        int64_t *pending = mc_alloc_array((size_t)(C > 0 ? C : 1), sizeof(int64_t));
        if (!cstate || !state || !logits || !scores || !pred || !row_unit || !prob || !pair_row ||
            !order || !active || !act || !drop || !hit || !done || !pending ||
            (need_sae && (!sidx || !sval || !ec.rows || !ec.idx || !ec.val)))
            s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory for the oracle's ablations");
        s = mc_comm_agree(c, s, err);
        int64_t n_pending = 0, n_done = 0;
        if (s == MC_OK) s = mc_store_units_read(st, "/", C > 0 ? C : 1, done, &n_done, err);
        for (int64_t q = 0; s == MC_OK && q < C; q++)
            if (!done[q]) pending[n_pending++] = q;
        if (s == MC_OK && n_done > 0)
            mc_info0("intervene oracle %s %s: resuming, %lld of %lld classes done",
                     mc_split_name(p->split), mc_unit_kind_name(kind), (long long)n_done,
                     (long long)C);
        char label[200];
        mc_snprintf(label, sizeof label, "oracle %s/%s", mc_split_name(p->split),
                    mc_unit_kind_name(kind));
        mc_progress prog;
        mc_progress_start(&prog, label, n_pending, "class");
        int64_t rounds = (n_pending + c->size - 1) / c->size;
        for (int64_t r = 0; s == MC_OK && r < rounds; r++) {
            int64_t slot = r * c->size + c->rank, cl = -1, nf = 0;
            mc_status ls = MC_OK;
            if (slot < n_pending) {
                cl = pending[slot];
                ls = oracle_class(cfg, R, p, &ec, cl, n_units, cstate, state, logits, scores, pred,
                                  prob, row_unit, pair_row, active, act, order, sidx, sval, drop,
                                  hit, &nf, err);
            }
            s = mc_comm_agree(c, ls, err);
            bool mine = cl >= 0;
            if (s == MC_OK)
                s = mc_store_write_rows(st, "drop_prob", MC_DTYPE_F64, mine ? cl : 0,
                                        mine ? cl + 1 : 0, drop, err);
            if (s == MC_OK)
                s = mc_store_write_rows(st, "drop_acc", MC_DTYPE_F64, mine ? cl : 0,
                                        mine ? cl + 1 : 0, hit, err);
            if (s == MC_OK)
                s = mc_store_write_rows(st, "n_forward", MC_DTYPE_I64, mine ? cl : 0,
                                        mine ? cl + 1 : 0, &nf, err);
            if (s == MC_OK) s = mc_store_units_mark(st, "/", &cl, mine ? 1 : 0, err);
            mc_progress_update(&prog,
                               (r + 1) * c->size < n_pending ? (r + 1) * c->size : n_pending);
            if (s == MC_OK && mc_comm_stop_requested(c))
                s = MC_FAIL(err, MC_ERR_INTERRUPTED,
                            "intervene oracle: stopped by signal; the store is consistent, "
                            "rerun to resume (%s)",
                            o->path);
        }
        mc_progress_finish(&prog);
        free(cstate), free(state), free(logits), free(scores), free(pred), free(row_unit),
            free(prob), free(pair_row);
        free(order), free(active), free(act), free(drop), free(hit), free(sidx), free(sval),
            free(done);
        free(pending), free(ec.rows), free(ec.idx), free(ec.val);
    }
    if (s == MC_OK) s = mc_store_read_rows(st, "drop_prob", MC_DTYPE_F64, 0, C, o->drop, err);
    if (s == MC_OK) s = mc_store_read_rows(st, "drop_acc", MC_DTYPE_F64, 0, C, o->hit, err);
    if (s == MC_OK) s = mc_store_read_rows(st, "n_forward", MC_DTYPE_I64, 0, C, o->n_forward, err);
    s = mc_comm_agree(c, s, err);
    if (!complete && st) {
        s = mc_store_finish(&st, s, err);
        if (s == MC_OK) {
            int64_t tot = 0;
            for (int64_t q = 0; q < C; q++) tot += o->n_forward[q];
            mc_info0("intervene oracle %s %s: %lld single-unit removals x images (suffix forwards) "
                     "-> %s",
                     mc_split_name(p->split), mc_unit_kind_name(kind), (long long)tot, o->path);
        }
    } else if (st) {
        mc_store_close(&st, NULL);
    }
    return s;
}

/* The oracle's units: for each class the tau units of largest drop (NaN: not a candidate, never
 * chosen; ties: the lower unit index). */
static void oracle_pick(const oracle_scores *o, int64_t tau, int32_t *units) {
    for (int64_t cl = 0; cl < o->C; cl++) {
        const double *d = o->drop + cl * o->n_units;
        for (int64_t q = 0; q < tau; q++) {
            int64_t best = -1;
            for (int64_t u = 0; u < o->n_units; u++) {
                if (isnan(d[u])) continue;
                bool used = false;
                for (int64_t j = 0; j < q; j++) used |= units[cl * tau + j] == u;
                if (used) continue;
                if (best < 0 || d[u] > d[best]) best = u;
            }
            units[cl * tau + q] = (int32_t)(best < 0 ? 0 : best);
        }
    }
}

/* The key of task (TASK_KEY_VERSION's text) and its store's path: the method's units' source key,
 * the SAE's key when intervene.units lists sae ("" otherwise), each dataset's prefix key. */
static mc_status task_key(const mc_config *cfg, const mc_task *task, const char *source,
                          const char *sae_key, const mc_prefix_set *ps, char key[MC_KEY_HEX],
                          char *store, size_t cap, mc_error *err) {
    const bool use_mu = task->mode == MC_MODE_ADD && cfg->intervene.add_beta == 1;
    mc_buf b = {0};
    mc_buf_printf(
        &b,
        "%s\ncode=%s\nmethod=%s\nsource=%s\nmode=%s\nbeta=%.17g\ntokens=%s\ntau=%lld\nseed=%lld\n",
        TASK_KEY_VERSION, MICLIP_CACHE_VERSION, mc_method_name(task->method), source,
        mc_mode_name(task->mode), task->beta, tokens_name(cfg->intervene.tokens),
        (long long)cfg->intervene.tau, (long long)task->seed);
    for (int k = 0; k < cfg->intervene.units.n; k++) {
        const int kind = cfg->intervene.units.v[k];
        mc_buf_printf(&b, "units=%s:%s\n", mc_unit_kind_name(kind),
                      kind == MC_UNIT_SAE ? sae_key : "");
    }
    if (use_mu) mc_buf_printf(&b, "add_beta=mu\n");
    for (int d = 0; d < cfg->intervene.datasets.n; d++)
        mc_buf_printf(&b, "prefix=%s:%s\n", mc_split_name(ps[d].split),
                      ps[d].skip ? "skipped" : ps[d].key);
    mc_status s = b.oom ? MC_FAIL(err, MC_ERR_NOMEM, "out of memory") : MC_OK;
    if (s == MC_OK) mc_key_of(b.p, key);
    mc_buf_free(&b);
    if (s == MC_OK &&
        !mc_snprintf(store, cap, "%s/intervene/%s-%.16s.h5", cfg->output_dir, task->id, key))
        s = MC_FAIL(err, MC_ERR_ARG, "output path too long under %s", cfg->output_dir);
    return s;
}

static mc_split split_of(int eval_set) {
    return eval_set == MC_EVAL_SET_EVAL ? MC_SPLIT_EVAL : MC_SPLIT_UNSEEN;
}

/* What the keys of a seed's tasks share (issue 16): each dataset's prefix (key, skip) and the SAE's
 * key, from metadata alone. */
typedef struct {
    int64_t seed;
    mc_prefix_set ps[2];
    char sae_key[MC_KEY_HEX];
} seed_meta;

static void seed_meta_close(seed_meta *m) {
    for (int d = 0; d < 2; d++) mc_prefix_close(&m->ps[d]);
    memset(m, 0, sizeof *m);
}

/* Collective. R from mc_runner_find (or mc_runner_init). */
static mc_status seed_meta_open(const mc_comm *c, const mc_config *cfg, mc_runner *R, int64_t seed,
                                seed_meta *m, mc_error *err) {
    memset(m, 0, sizeof *m);
    m->seed = seed;
    mc_train_data td;
    memset(&td, 0, sizeof td);
    mc_status s = mc_train_data_open(c, cfg, seed, &td, err);
    for (int d = 0; s == MC_OK && d < cfg->intervene.datasets.n; d++)
        s = mc_prefix_find(c, cfg, R, split_of(cfg->intervene.datasets.v[d]), seed, &m->ps[d], err);
    for (int k = 0; s == MC_OK && k < cfg->intervene.units.n; k++)
        if (cfg->intervene.units.v[k] == MC_UNIT_SAE) {
            mc_run_paths rp;
            s = mc_sae_paths(cfg, td.extract_key, seed, &rp, err);
            if (s == MC_OK) mc_strlcpy(m->sae_key, rp.key, sizeof m->sae_key);
        }
    mc_train_data_close(&td);
    if (s != MC_OK) seed_meta_close(m);
    return s;
}

/* The units' source key of task: the oracle scores' keys (from the prefix and SAE keys), "random",
 * or the localize / baselines store's key (units_source). Collective. */
static mc_status task_source(const mc_comm *c, const mc_config *cfg, const mc_task *task,
                             const seed_meta *m, char source[MC_KEY_HEX], mc_error *err) {
    const int nk = cfg->intervene.units.n, nd = cfg->intervene.datasets.n;
    mc_strlcpy(source, "random", MC_KEY_HEX);
    if (task->method == MC_METHOD_RANDOM) return MC_OK;
    if (task->method != MC_METHOD_ORACLE) {
        char path[MC_PATH_CAP];
        return units_source(c, cfg, task->seed, task->method,
                            task->variant >= 0 ? task->variant : cfg->align.variants.v[0],
                            task->reading, path, sizeof path, source, err);
    }
    mc_buf b = {0};
    mc_status s = MC_OK;
    for (int d = 0; s == MC_OK && d < nd; d++)
        for (int k = 0; s == MC_OK && k < nk && !m->ps[d].skip; k++) {
            char ok[MC_KEY_HEX];
            const int kind = cfg->intervene.units.v[k];
            s = oracle_key(cfg, &m->ps[d], kind, m->sae_key, ok, err);
            mc_buf_printf(&b, "%s/%s:%s\n", mc_split_name(m->ps[d].split), mc_unit_kind_name(kind),
                          ok);
        }
    if (s == MC_OK && b.oom) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    if (s == MC_OK) mc_key_of(b.p ? b.p : "", source);
    mc_buf_free(&b);
    return s;
}

/* The task's key and store from metadata alone (issue 16): the target declared from its
 * config.json and its folder's hash (file-hash cache), the prefixes' keys, the SAE's key, the
 * units' source key (the localize or baselines store's, the oracle scores' keys). No weights,
 * prefix cache, SAE or unit list is loaded, so a complete task is skipped at the cost of a few
 * small reads. mc_stage_intervene checks that the inputs it loads give the same key. Collective. */
static mc_status intervene_find(const mc_comm *c, const mc_config *cfg, const mc_task *task,
                                char key[MC_KEY_HEX], char *store, size_t cap, mc_error *err) {
    mc_runner R;
    MC_TRY(mc_runner_find(c, cfg, &R, err));
    seed_meta m;
    mc_status s = seed_meta_open(c, cfg, &R, task->seed, &m, err);
    char source[MC_KEY_HEX];
    if (s == MC_OK) s = task_source(c, cfg, task, &m, source, err);
    if (s == MC_OK) s = task_key(cfg, task, source, m.sae_key, m.ps, key, store, cap, err);
    seed_meta_close(&m);
    mc_runner_free(&R);
    return s;
}

/* The registry's `complete` (stages.h): every task's key with the target declared once, each
 * seed's prefixes and SAE key once, and each (seed, method)'s source key once; a complete task's
 * index entry is written as mc_stage_intervene writes it. Collective. */
static mc_status intervene_complete(const mc_comm *c, const mc_config *cfg, const mc_task *tasks,
                                    int n, bool *done, mc_error *err) {
    MC_TRY(mc_intervene_check(cfg, err));
    mc_runner R;
    MC_TRY(mc_runner_find(c, cfg, &R, err));
    seed_meta m;
    memset(&m, 0, sizeof m);
    bool have_seed = false;
    /* The source key depends on the method and, for miclip, on the E_n variant (its localize
     * store): cached per (method, variant), variant -1 (the first align variant) in slot 0. A
     * cache keyed by the method alone gave the other variants' tasks the first variant's key, so
     * they were never found complete here and each paid the whole intervene_find. */
    enum { N_METHODS = 16, N_VARIANTS = 12 }; /* (variant + 1) + 4 * (reading + 1) */
    char src[N_METHODS][N_VARIANTS][MC_KEY_HEX];
    bool have_src[N_METHODS][N_VARIANTS];
    mc_status s = MC_OK;
    for (int t = 0; t < n && s == MC_OK; t++) {
        const mc_task *task = &tasks[t];
        if (!have_seed || m.seed != task->seed) {
            if (have_seed) seed_meta_close(&m);
            have_seed = false;
            s = seed_meta_open(c, cfg, &R, task->seed, &m, err);
            if (s != MC_OK) break;
            have_seed = true;
            memset(have_src, 0, sizeof have_src);
        }
        char source[MC_KEY_HEX], key[MC_KEY_HEX], store[MC_PATH_CAP];
        const int mi = task->method, vi = task->variant + 1 + 4 * (task->reading + 1);
        const bool cacheable = mi >= 0 && mi < N_METHODS && vi >= 0 && vi < N_VARIANTS;
        if (cacheable && have_src[mi][vi]) {
            mc_strlcpy(source, src[mi][vi], sizeof source);
        } else {
            s = task_source(c, cfg, task, &m, source, err);
            if (s == MC_OK && cacheable)
                mc_strlcpy(src[mi][vi], source, sizeof src[mi][vi]), have_src[mi][vi] = true;
        }
        if (s == MC_OK)
            s = task_key(cfg, task, source, m.sae_key, m.ps, key, store, sizeof store, err);
        if (s == MC_OK) s = mc_store_peek_complete(c, store, &done[t], err);
        if (s == MC_OK && done[t]) {
            mc_info0("intervene %s: complete, skipping (%s)", task->id, store);
            s = mc_task_index_write(c, cfg, MC_STAGE_INTERVENE, task, store, key, err);
        }
    }
    if (have_seed) seed_meta_close(&m);
    mc_runner_free(&R);
    return s;
}

mc_status mc_stage_intervene(const mc_comm *c, const mc_config *cfg, const mc_task *task,
                             mc_error *err) {
    MC_TRY(mc_intervene_check(cfg, err));
    /* A complete task is found from its key before anything is loaded (issue 16). */
    char found_key[MC_KEY_HEX], found_store[MC_PATH_CAP];
    bool found_complete = false;
    MC_TRY(intervene_find(c, cfg, task, found_key, found_store, sizeof found_store, err));
    MC_TRY(mc_store_peek_complete(c, found_store, &found_complete, err));
    if (found_complete) {
        mc_info0("intervene %s: complete, skipping (%s)", task->id, found_store);
        return mc_task_index_write(c, cfg, MC_STAGE_INTERVENE, task, found_store, found_key, err);
    }
    mc_runner R;
    MC_TRY(mc_runner_init(c, cfg, &R, err));
    const int64_t tau = cfg->intervene.tau;
    mc_train_data td;
    memset(&td, 0, sizeof td);
    mc_status s = mc_train_data_open(c, cfg, task->seed, &td, err);
    const int nk = cfg->intervene.units.n, nd = cfg->intervene.datasets.n;
    kind_units ku[2][2];
    sae_units sae;
    mc_prefix_set ps[2];
    memset(ku, 0, sizeof ku);
    memset(&sae, 0, sizeof sae);
    memset(ps, 0, sizeof ps);
    for (int d = 0; s == MC_OK && d < nd; d++)
        s = mc_prefix_open(c, cfg, &R, split_of(cfg->intervene.datasets.v[d]), task->seed, &ps[d],
                           err);
    char source[MC_KEY_HEX] = "random";
    for (int k = 0; s == MC_OK && k < nk; k++) {
        int kind = cfg->intervene.units.v[k];
        if (kind == MC_UNIT_SAE) s = sae_units_load(c, cfg, &td, task->seed, R.dim, &sae, err);
        int64_t nu = kind == MC_UNIT_SAE ? sae.m : R.dim;
        if (s == MC_OK && tau > nu)
            s = MC_FAIL(err, MC_ERR_CONFIG,
                        "%s: intervene.tau (%lld) exceeds the %lld %s units of layer '%s'",
                        cfg->source_path, (long long)tau, (long long)nu, mc_unit_kind_name(kind),
                        R.layer);
        for (int d = 0; s == MC_OK && d < nd; d++) {
            ku[d][k].kind = kind, ku[d][k].n_units = nu;
            ku[d][k].units =
                mc_alloc_array((size_t)((ps[d].C > 0 ? ps[d].C : 1) * tau), sizeof(int32_t));
            if (!ku[d][k].units) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        }
        s = mc_comm_agree(c, s, err);
    }
    /* SAE units: the top-k code of each dataset's edited tokens, computed once per (prefix, SAE,
     * tokens) by the first task that needs it and read by every edit, precision and oracle. */
    mc_sae_codes codes[2];
    memset(codes, 0, sizeof codes);
    if (s == MC_OK && sae.sae) {
        int64_t t0, t1;
        edited_tokens(cfg, &R, &t0, &t1);
        const mc_sae_codes_sae cs = {.sae = sae.sae, .path = sae.path, .key = sae.key};
        for (int d = 0; s == MC_OK && d < nd; d++)
            if (!ps[d].skip) s = mc_sae_codes_open(c, cfg, &R, &ps[d], &cs, t0, t1, &codes[d], err);
    }
    oracle_scores os[2][2];
    memset(os, 0, sizeof os);
    if (s == MC_OK && task->method == MC_METHOD_ORACLE) {
        /* oracle: the tau units whose single x0 removal lowers the class's mean probability most,
         * measured on the same images the task then evaluates (an in-sample reference). */
        mc_buf b = {0};
        for (int d = 0; s == MC_OK && d < nd; d++)
            for (int k = 0; s == MC_OK && k < nk && !ps[d].skip; k++) {
                s = oracle_scores_get(c, cfg, &R, &ps[d], ku[d][k].kind, ku[d][k].n_units, &sae,
                                      &codes[d], &os[d][k], err);
                if (s == MC_OK) oracle_pick(&os[d][k], tau, ku[d][k].units);
                mc_buf_printf(&b, "%s/%s:%s\n", mc_split_name(ps[d].split),
                              mc_unit_kind_name(ku[d][k].kind), os[d][k].key);
            }
        if (s == MC_OK && b.oom) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        if (s == MC_OK) mc_key_of(b.p ? b.p : "", source);
        mc_buf_free(&b);
    } else if (s == MC_OK && task->method != MC_METHOD_RANDOM) {
        /* variant -1: the first align variant (the task id without the variant axis). */
        const int variant = task->variant >= 0 ? task->variant : cfg->align.variants.v[0];
        s = miclip_units(c, cfg, task->seed, task->method, variant, task->reading, ps, nd, ku, nk,
                         source, sizeof source, err);
    } else if (s == MC_OK) {
        for (int d = 0; d < nd; d++)
            for (int k = 0; k < nk; k++)
                if (!ps[d].skip)
                    random_units(task->seed, ps[d].C, ku[d][k].kind, ku[d][k].n_units, tau,
                                 ku[d][k].units);
    }
    /* add_beta mu: mu_i = the unit's mean value over the valid training images where it is > 0
     * (the E_n input vector's entry / the SAE code; mc_unit_stats_get: computed once, image order); a
     * token-level SAE's feature: over the training tokens where its code is > 0. */
    const bool use_mu = task->mode == MC_MODE_ADD && cfg->intervene.add_beta == 1;
    for (int k = 0; s == MC_OK && use_mu && k < nk; k++) {
        mc_unit_stats us;
        s = mc_unit_stats_get(c, cfg, &td, cfg->intervene.layer,
                              ku[0][k].kind == MC_UNIT_SAE ? sae.sae : NULL, sae.key,
                              cfg->sae.input == MC_SAE_INPUT_ALL, &us, err);
        if (s == MC_OK && us.n_units != ku[0][k].n_units)
            s = MC_FAIL(err, MC_ERR_SHAPE,
                        "intervene %s: %lld units in the training activations, %lld expected",
                        task->id, (long long)us.n_units, (long long)ku[0][k].n_units);
        float *mu = s == MC_OK ? mc_alloc_array((size_t)us.n_units, sizeof(float)) : NULL;
        if (s == MC_OK && !mu) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        for (int64_t i = 0; s == MC_OK && i < us.n_units; i++)
            mu[i] = us.fire_n[i] ? (float)(us.fire_sum[i] / (double)us.fire_n[i]) : 0.0f;
        for (int d = 0; s == MC_OK && d < nd; d++) ku[d][k].mu = mu; /* owned by ku[0][k] */
        if (s != MC_OK) free(mu);
        mc_unit_stats_free(&us);
        s = mc_comm_agree(c, s, err);
    }
    /* Unit indices read from a store index the edit's buffers: every one must be in range. */
    for (int d = 0; s == MC_OK && d < nd; d++)
        for (int k = 0; s == MC_OK && k < nk && !ps[d].skip; k++)
            for (int64_t i = 0; i < ps[d].C * tau; i++)
                if (ku[d][k].units[i] < 0 || ku[d][k].units[i] >= ku[d][k].n_units) {
                    s = MC_FAIL(
                        err, MC_ERR_FORMAT,
                        "intervene %s: %s unit %d of class '%s' is out of range (%lld units; "
                        "localize output of another layer or SAE?)",
                        task->id, mc_unit_kind_name(ku[d][k].kind), ku[d][k].units[i],
                        ps[d].class_names[i / tau], (long long)ku[d][k].n_units);
                    break;
                }
    /* The task's key: every input of its results (the same text intervene_find keyed). */
    char key[MC_KEY_HEX], store[MC_PATH_CAP], tables[MC_PATH_CAP];
    if (s == MC_OK) s = task_key(cfg, task, source, sae.key, ps, key, store, sizeof store, err);
    if (s == MC_OK && strcmp(key, found_key))
        s = MC_FAIL(err, MC_ERR_INTERNAL,
                    "intervene %s: the key from the loaded inputs (%.16s) is not the "
                    "key from their metadata (%.16s)",
                    task->id, key, found_key);
    if (s == MC_OK && !mc_snprintf(tables, sizeof tables, "%s/tables", cfg->output_dir))
        s = MC_FAIL(err, MC_ERR_ARG, "output path too long under %s", cfg->output_dir);
    bool complete = false;
    if (s == MC_OK) s = mc_store_peek_complete(c, store, &complete, err);
    if (s == MC_OK && complete) mc_info0("intervene %s: complete, skipping (%s)", task->id, store);
    mc_store *st = NULL;
    bool created = false;
    if (s == MC_OK && !complete) s = mc_store_resume(c, store, &st, &created, err);
    /* Layout: every group's datasets up front (the unit lists written once). */
    for (int d = 0; s == MC_OK && !complete && d < nd; d++)
        for (int k = 0; s == MC_OK && k < nk && !ps[d].skip; k++) {
            const int64_t C = ps[d].C;
            char g[300], name[600];
            mc_snprintf(g, sizeof g, "%s/%s", mc_split_name(ps[d].split),
                        mc_unit_kind_name(ku[d][k].kind));
            if (created) {
                int64_t sh[2] = {C, tau};
                bool root = c->rank == 0;
                mc_snprintf(name, sizeof name, "%s/units", g);
                s = mc_store_create_dataset(st, name, MC_DTYPE_I32, 2, sh, 0, err);
                if (s == MC_OK)
                    s = mc_store_write_rows(st, name, MC_DTYPE_I32, 0, root ? C : 0, ku[d][k].units,
                                            err);
                sh[0] = ps[d].n;
                const char *pn[2] = {"edit_pred", "cross_pred"};
                for (int q = 0; s == MC_OK && q < 2; q++) {
                    mc_snprintf(name, sizeof name, "%s/%s", g, pn[q]);
                    s = mc_store_create_dataset(st, name, MC_DTYPE_I32, 1, sh, 0, err);
                }
                mc_snprintf(name, sizeof name, "%s/edit_prob", g);
                if (s == MC_OK) s = mc_store_create_dataset(st, name, MC_DTYPE_F32, 1, sh, 0, err);
                sh[0] = C, sh[1] = R.out_dim;
                mc_snprintf(name, sizeof name, "%s/first_logits", g);
                if (s == MC_OK) s = mc_store_create_dataset(st, name, MC_DTYPE_F32, 2, sh, 0, err);
                const char *mn[6] = {"acc_clean",      "acc_edit",   "other_acc_clean",
                                     "other_acc_edit", "prob_clean", "prob_edit"};
                for (int q = 0; s == MC_OK && q < 6; q++) {
                    mc_snprintf(name, sizeof name, "%s/%s", g, mn[q]);
                    s = mc_store_create_dataset(st, name, MC_DTYPE_F64, 1, sh, 0, err);
                }
                mc_snprintf(name, sizeof name, "%s/n_images", g);
                if (s == MC_OK) s = mc_store_create_dataset(st, name, MC_DTYPE_I64, 1, sh, 0, err);
                if (s == MC_OK) s = mc_store_set_attr_str(st, g, "prefix_store", ps[d].path, err);
                if (s == MC_OK && ku[d][k].kind == MC_UNIT_SAE)
                    s = mc_store_set_attr_str(st, g, "sae_store", sae.path, err);
                if (s == MC_OK && os[d][k].drop) {
                    /* the oracle's ablation scores of each class's units, [C, tau] (the whole matrix: oracle_store) */
                    double *sc = mc_alloc_array((size_t)(2 * C * tau + 1), sizeof(double));
                    if (!sc) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
                    for (int64_t i = 0; s == MC_OK && i < C * tau; i++) {
                        sc[i] = os[d][k].drop[(i / tau) * os[d][k].n_units + ku[d][k].units[i]];
                        sc[C * tau + i] =
                            os[d][k].hit[(i / tau) * os[d][k].n_units + ku[d][k].units[i]];
                    }
                    sh[0] = C, sh[1] = tau;
                    const char *on[2] = {"oracle_drop_prob", "oracle_drop_acc"};
                    for (int q = 0; s == MC_OK && q < 2; q++) {
                        mc_snprintf(name, sizeof name, "%s/%s", g, on[q]);
                        s = mc_store_create_dataset(st, name, MC_DTYPE_F64, 2, sh, 0, err);
                        if (s == MC_OK)
                            s = mc_store_write_rows(st, name, MC_DTYPE_F64, 0, root ? C : 0,
                                                    sc + q * C * tau, err);
                    }
                    if (s == MC_OK)
                        s = mc_store_set_attr_str(st, g, "oracle_store", os[d][k].path, err);
                    free(sc);
                }
                if (s == MC_OK && ku[d][k].mu) {
                    /* mu of each class's units, [C, tau] (add_beta mu) */
                    float *mu = mc_alloc_array((size_t)(C * tau + 1), sizeof(float));
                    if (!mu) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
                    for (int64_t i = 0; s == MC_OK && i < C * tau; i++)
                        mu[i] = ku[d][k].mu[ku[d][k].units[i]];
                    sh[0] = C, sh[1] = tau;
                    mc_snprintf(name, sizeof name, "%s/units_mu", g);
                    if (s == MC_OK)
                        s = mc_store_create_dataset(st, name, MC_DTYPE_F32, 2, sh, 0, err);
                    if (s == MC_OK)
                        s = mc_store_write_rows(st, name, MC_DTYPE_F32, 0, root ? C : 0, mu, err);
                    free(mu);
                }
            }
            if (s == MC_OK) s = mc_store_units_init(st, g, C, err);
        }
    if (s == MC_OK && created) {
        mc_store_provenance prov = {.stage = "intervene",
                                    .config_hash = cfg->hash,
                                    .model = R.hash,
                                    .seed = task->seed,
                                    .has_seed = true};
        s = mc_store_write_provenance(st, "/", &prov, err);
        if (s == MC_OK) s = mc_store_mark_layout(st, err);
    }
    group_result gr[2][2];
    memset(gr, 0, sizeof gr);
    for (int d = 0; s == MC_OK && !complete && d < nd; d++)
        for (int k = 0; s == MC_OK && k < nk && !ps[d].skip; k++) {
            char g[300];
            mc_snprintf(g, sizeof g, "%s/%s", mc_split_name(ps[d].split),
                        mc_unit_kind_name(ku[d][k].kind));
            s = run_group(c, cfg, task, &R, &ps[d], st, g, &ku[d][k], &sae, &codes[d], err);
            if (s == MC_OK)
                s = group_metrics(c, cfg, task, &R, &ps[d], st, g, &ku[d][k], tables, &gr[d][k],
                                  err);
            if (s == MC_OK)
                s = group_precision(c, cfg, &R, &ps[d], st, g, &ku[d][k], &sae, &codes[d],
                                    &gr[d][k].precision, err);
            if (s == MC_OK)
                mc_info0("intervene %s %s: Delta-Acc %+.2f pp, Delta-P %+.2f pp, other class %+.2f "
                         "pp (clean %.1f%%, "
                         "%lld classes), precision %.1f%%",
                         task->id, g, gr[d][k].delta, gr[d][k].dprob, gr[d][k].spec, gr[d][k].clean,
                         (long long)gr[d][k].n_classes, gr[d][k].precision);
        }
    if (s == MC_OK && !complete) {
        const mc_store_attr_str sa[] = {{"intervene_key", key},
                                        {"method", mc_method_name(task->method)},
                                        {"mode", mc_mode_name(task->mode)},
                                        {"layer", R.layer},
                                        {"tokens", tokens_name(cfg->intervene.tokens)},
                                        {"units_source", source}};
        if (s == MC_OK) s = mc_store_set_attrs_str(st, "/", MC_STORE_ATTRS(sa), err);
        if (s == MC_OK) s = mc_store_set_attr_f64(st, "/", "beta", task->beta, err);
        if (s == MC_OK)
            s = mc_store_set_attr_str(st, "/", "add_beta", use_mu ? "mu" : "value", err);
        if (s == MC_OK) s = mc_store_set_attr_i64(st, "/", "tau", tau, err);
        /* Only the other variants name theirs: the first variant's store stays as it was. */
        if (s == MC_OK && task->variant >= 0)
            s = mc_store_set_attr_str(st, "/", "variant", mc_variant_name(task->variant), err);
        /* Likewise only the other readings name theirs. */
        if (s == MC_OK && task->reading >= 0)
            s = mc_store_set_attr_str(st, "/", "reading", mc_reading_name(task->reading), err);
        /* The task's section of report/interventions.md (rank 0; the report stage assembles the file). */
        mc_status ws = MC_OK;
        if (s == MC_OK && c->rank == 0) {
            mc_buf b = {0};
            char who[64];
            if (task->variant >= 0)
                mc_snprintf(who, sizeof who, "%s (E_n %s)", mc_method_name(task->method),
                            mc_variant_name(task->variant));
            else
                mc_snprintf(who, sizeof who, "%s", mc_method_name(task->method));
            if (task->reading >= 0)
                mc_snprintf(who + strlen(who), sizeof who - strlen(who), " (reading %s)",
                            mc_reading_name(task->reading));
            mc_buf_printf(&b,
                          "### %s\n\n%s units, %s, beta %g%s, tokens %s, seed %lld.\n\n| units | "
                          "dataset | classes | "
                          "Delta-Acc (pp) | Delta-P (pp) | other class (pp) | clean acc (%%) "
                          "| precision (%%) |\n|---|---|---|---|---|---|---|---|\n",
                          task->id, who, mc_mode_name(task->mode), task->beta,
                          use_mu ? " x mu_i" : "", tokens_name(cfg->intervene.tokens),
                          (long long)task->seed);
            for (int d = 0; d < nd; d++)
                for (int k = 0; k < nk && !ps[d].skip; k++)
                    mc_buf_printf(&b, "| %s | %s | %lld | %+.2f | %+.2f | %+.2f | %.1f | %.1f |\n",
                                  mc_unit_kind_name(ku[d][k].kind), mc_split_name(ps[d].split),
                                  (long long)gr[d][k].n_classes, gr[d][k].delta, gr[d][k].dprob,
                                  gr[d][k].spec, gr[d][k].clean, gr[d][k].precision);
            char path[MC_PATH_CAP];
            mc_snprintf(path, sizeof path, "%s/report/interventions/%s.md", cfg->output_dir,
                        task->id);
            ws = b.oom ? MC_FAIL(err, MC_ERR_NOMEM, "out of memory")
                       : mc_write_text_file(path, b.p, b.n, err);
            mc_buf_free(&b);
        }
        if (s == MC_OK) s = mc_comm_agree(c, ws, err);
        if (s == MC_OK) s = mc_store_set_complete(st, "/", err);
    }
    if (st) {
        mc_error ce = {0};
        mc_status cs = mc_store_close(&st, &ce);
        if (s == MC_OK && cs != MC_OK) *err = ce, s = cs;
    }
    if (s == MC_OK && !complete) mc_info0("intervene %s: -> %s", task->id, store);
    if (s == MC_OK) s = mc_task_index_write(c, cfg, MC_STAGE_INTERVENE, task, store, key, err);
    for (int d = 0; d < 2; d++) mc_prefix_close(&ps[d]), mc_sae_codes_close(&codes[d]);
    for (int d = 0; d < 2; d++)
        for (int k = 0; k < 2; k++) free(ku[d][k].units);
    for (int k = 0; k < 2; k++) free(ku[0][k].mu);
    for (int d = 0; d < 2; d++)
        for (int k = 0; k < 2; k++) oracle_scores_free(&os[d][k]);
    sae_units_free(&sae);
    mc_train_data_close(&td);
    mc_runner_free(&R);
    return s;
}

/* ---- the registry entry ----------------------------------------------------------------------- */

static void intervene_cost(const mc_config *cfg, const mc_plan_inputs *in, mc_plan *p,
                           mc_plan_stage *S, double *flop, double *core_s, double *mem_b) {
    int64_t n = in->int_images; /* the images of classes the target has (plan.c) */
    double suffix = p->target.gmac - in->int_prefix;
    /* each image twice per unit kind: its own class's edit and the previous class's (specificity) */
    int units = 2 * cfg->intervene.units.n;
    S->items = (double)n * units;
    mc_strlcpy(S->item_name, "forwards", sizeof S->item_name);
    /* SAE features: the SAE's top-k code of every edited token of the clean state (one
     * [tokens x n] x [n x m] product per image), which the scale edits, the precision and the
     * oracle read, is encoded once per seed's SAE and eval set into the code store
     * (method/sae_codes.c) and amortized over the tasks like the prefix. */
    const double width = in->sae_dim > 0 ? (double)in->sae_dim : 1,
                 all_toks = (double)in->int_T / width;
    const double toks = cfg->intervene.tokens == MC_TOKENS_CLS       ? 1
                        : cfg->intervene.tokens == MC_TOKENS_PATCHES ? all_toks - 1
                                                                     : all_toks;
    bool has_sae = false;
    for (int k = 0; k < cfg->intervene.units.n; k++)
        has_sae |= cfg->intervene.units.v[k] == MC_UNIT_SAE;
    const double tasks = S->n_tasks > 0 ? S->n_tasks : 1;
    /* encodes per task: each seed's images once, shared by the tasks */
    const double enc_imgs = has_sae ? (double)n * (double)cfg->seeds.n / tasks : 0;
    const double enc_gmac = toks * (double)cfg->sae.features * width / 1e9;
    S->gmac_per_item =
        suffix + enc_gmac * enc_imgs / ((double)n * units > 0 ? (double)n * units : 1);
    *flop = 2e9 * suffix * (double)n * units + 2e9 * enc_gmac * enc_imgs;
    *core_s = 2e9 * suffix * (double)n * units / in->fwd + 2e9 * enc_gmac * enc_imgs / in->gemm;
    *mem_b += in->tgt_w + mc_plan_arena_bytes(&p->target, cfg->intervene.batch_size) +
              (double)cfg->intervene.batch_size * (double)in->int_T * 4 +
              (double)cfg->sae.features * (double)in->sae_dim * 4;
    /* Where the edited forwards start (intervene.prefix), both costed per task. cache: the state
     * is written once and read back by every edited forward, and once by a neuron task's
     * precision (bytes at the calibrated memory rate: optimistic for a shared filesystem);
     * recompute: each of those decodes its image and runs the layers before intervene.layer
     * again. The stage's note names the configured one and what the other would cost. */
    const double state_b = cfg->intervene.cache_dtype == 1 ? 2 : 4; /* intervene.cache_dtype */
    const double state_bytes = (double)in->int_T * state_b;
    bool has_neuron = false;
    for (int k = 0; k < cfg->intervene.units.n; k++)
        has_neuron |= cfg->intervene.units.v[k] == MC_UNIT_NEURON;
    const double reads = (double)n * units + (has_neuron ? (double)n : 0);
    const double cache_s =
        reads * state_bytes / in->mem + (double)n * state_bytes / in->mem / tasks;
    const double redo_s = reads * (2e9 * in->int_prefix / in->fwd + 1.0 / in->dec);
    const bool recompute = cfg->intervene.prefix == MC_PREFIX_RECOMPUTE;
    *core_s += recompute ? redo_s : cache_s;
    *flop += recompute ? 2e9 * in->int_prefix * reads : 0;
    {
        const double other_h = (recompute ? cache_s - redo_s : redo_s - cache_s) * tasks / 3600;
        snprintf(S->note, sizeof S->note, "prefix: %s; %s would cost %s%.1f core-h%s",
                 recompute ? "recompute" : "cache", recompute ? "a cache" : "recompute",
                 other_h >= 0 ? "+" : "", other_h,
                 other_h < 0 ? (recompute ? " (set intervene.prefix: cache)"
                                          : " (set intervene.prefix: recompute)")
                             : "");
    }
    /* the prefix store: the hidden states at the intervened layer (cache), once per eval set,
     * and the clean logits */
    mc_plan_add_store(p, S->stage,
                      recompute ? "intervene/prefix-<set>.h5 (clean run, no state)"
                                : "intervene/prefix-<set>.h5 (cached hidden states)",
                      1,
                      (double)n * ((recompute ? 0 : state_bytes) + (double)p->target.out_dim * 4) +
                          MC_PLAN_STORE_OVERHEAD_BYTES);
    if (has_sae) /* idx int32 and val float32 per (image, edited token, k) */
        mc_plan_add_store(p, S->stage, "intervene/codes-<set>.h5 (SAE top-k codes of the prefix)",
                          cfg->seeds.n,
                          (double)n * toks * (double)cfg->sae.k * 8 + MC_PLAN_STORE_OVERHEAD_BYTES);
    mc_plan_add_store(p, S->stage, "intervene/<task>.h5 (per-class accuracy)", S->n_tasks,
                      (double)in->n_classes * 16 + MC_PLAN_STORE_OVERHEAD_BYTES);
    /* computing the prefix itself once: decode, the forward to the layer and the clean suffix
     * (prefix_cache.c: the clean predictions), i.e. one full forward per image */
    *core_s += (2e9 * p->target.gmac * (double)n / in->fwd + (double)n / in->dec) /
               (S->n_tasks > 0 ? S->n_tasks : 1);
    /* the oracle's ablation scores, once per dataset and unit kind (SAE: per seed): one suffix
     * forward per (unit, image), an SAE feature only on the images where it fires (at most
     * min(features, k x tokens) per image); intervene.oracle_candidates caps the units */
    bool oracle = false;
    for (int i = 0; i < cfg->intervene.methods.n; i++)
        oracle |= cfg->intervene.methods.v[i] == MC_METHOD_ORACLE;
    if (oracle && in->sae_dim > 0) {
        const double D = (double)in->sae_dim, T = (double)in->int_T / D,
                     cap = (double)cfg->intervene.oracle_candidates;
        double pairs = 0;
        for (int k = 0; k < cfg->intervene.units.n; k++) {
            double u = cfg->intervene.units.v[k] == MC_UNIT_SAE ? (double)cfg->sae.features : D;
            if (cap > 0 && cap < u) u = cap;
            if (cfg->intervene.units.v[k] == MC_UNIT_SAE) {
                double fire = (double)cfg->sae.k * T;
                pairs += (double)cfg->seeds.n * (u < fire ? u : fire);
            } else {
                pairs += u;
            }
        }
        *core_s += 2e9 * suffix * (double)n * pairs / in->fwd / (S->n_tasks > 0 ? S->n_tasks : 1);
    }
}

const mc_stage_desc mc_intervene_stage = {
    .stage = MC_STAGE_INTERVENE,
    .summary = "Delta-Acc of scaling or shifting each class's top units, from a cached prefix",
    .outputs = "intervene/prefix-*.h5, intervene/codes-*.h5, intervene/<task>-<key16>.h5, tables/, "
               "report/interventions.md",
    .check = mc_intervene_check,
    .run = mc_stage_intervene,
    .complete = intervene_complete,
    .cost = intervene_cost,
};
