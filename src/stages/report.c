/* report.c - the `report` stage: the paper's tables from the results the earlier stages stored,
 * with mean ± sample std over seeds and one-tailed paired t-tests of miclip against every other
 * method, the stage summaries and the training-curve figures (docs/report.md).
 *
 * Inputs (read only): each describe, baselines and intervene task's store, found through its
 * task index entry OUTPUT_DIR/<stage>/<task>.json (src/method/task_index.h) and checked against
 * its key; each task's text section OUTPUT_DIR/report/<descriptions|baselines|interventions>/
 * <task>.md (copied, never parsed); the curves/ datasets of the align and sae stores. Outputs:
 * OUTPUT_DIR/report/{descriptions,baselines,interventions}.md, tables/table{1,2,3,4}_*.{md,csv,tex},
 * figures/<figure>.{png,svg,pdf} and README.md, each rewritten only when its bytes change. The
 * store reads are collective; rank 0 writes every file. The same inputs give the same bytes.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "miclip/buf.h"
#include "method/acts.h"
#include "method/task_index.h"
#include "method/concepts.h"
#include "method/extract_key.h"
#include "method/keys.h"
#include "method/method_task.h"
#include "method/similarity.h"
#include "method/train_data.h"
#include "method/training.h"
#include "method/unit_tables.h"
#include "method/units.h"
#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/hash.h"
#include "miclip/json.h"
#include "miclip/log.h"
#include "miclip/plan.h"
#include "miclip/miclip.h"
#include "miclip/version.h"
#include "report_internal.h"
#include "stages_internal.h"

#define NAME_CAP 160
#define REF_T1 "miclip (in+out)"
#define REF_T2 "miclip"

/* ---- records and the tables built from them -------------------------------------------------- */

typedef struct {
    int method, col;
    int64_t seed;
    double v;
} cell_rec;

typedef struct {
    char name[NAME_CAP];
    int dir; /* +1: higher is better for miclip, -1: lower, 0: no direction */
} column;

/* One (method x column) table of values over seeds. */
typedef struct {
    char title[200], unit[32];
    const char *ref; /* the reference method's row name */
    int decimals;    /* of means and stds in md and tex; 0 means 2 */
    char
        na_note; /* not 0: no values can exist (e.g. no MPNet model); every cell is n/a with this note */
    int n_methods, n_cols, n_recs, cap_recs;
    char (*methods)[NAME_CAP];
    /* Rows of the paper's table that this config does not run, printed after the others with
     * every cell n/a and the row's footnote (paper_absent_rows). */
    int n_absent;
    struct {
        char method[NAME_CAP];
        char note;
    } absent[2];
    column *cols;
    cell_rec *recs;
} section;

static void section_free(section *s) {
    free(s->methods), free(s->cols), free(s->recs);
    memset(s, 0, sizeof *s);
}

static int name_index(char (*v)[NAME_CAP], int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(v[i], name)) return i;
    return -1;
}

/* The row of method (*m), added last when new. */
static mc_status section_row(section *s, const char *method, int *m, mc_error *err) {
    *m = name_index(s->methods, s->n_methods, method);
    if (*m >= 0) return MC_OK;
    void *p = realloc(s->methods, (size_t)(s->n_methods + 1) * sizeof *s->methods);
    if (!p) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    s->methods = p;
    mc_strlcpy(s->methods[s->n_methods], method, NAME_CAP);
    *m = s->n_methods++;
    return MC_OK;
}

/* The column col (*k), added last with direction dir when new. */
static mc_status section_col(section *s, const char *col, int dir, int *k, mc_error *err) {
    *k = -1;
    for (int i = 0; i < s->n_cols; i++)
        if (!strcmp(s->cols[i].name, col)) *k = i;
    if (*k >= 0) return MC_OK;
    void *p = realloc(s->cols, (size_t)(s->n_cols + 1) * sizeof *s->cols);
    if (!p) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    s->cols = p;
    mc_strlcpy(s->cols[s->n_cols].name, col, NAME_CAP);
    s->cols[s->n_cols].dir = dir;
    *k = s->n_cols++;
    return MC_OK;
}

static mc_status section_add(section *s, const char *method, const char *col, int dir, int64_t seed,
                             double v, const char *where, mc_error *err) {
    int m = -1, k = -1;
    MC_TRY(section_row(s, method, &m, err));
    MC_TRY(section_col(s, col, dir, &k, err));
    for (int i = 0; i < s->n_recs; i++)
        if (s->recs[i].method == m && s->recs[i].col == k && s->recs[i].seed == seed)
            return MC_FAIL(err, MC_ERR_FORMAT,
                           "%s: a second record for method '%s', column '%s', seed %lld", where,
                           method, col, (long long)seed);
    if (s->n_recs == s->cap_recs) {
        int cap = s->cap_recs ? 2 * s->cap_recs : 64;
        void *p = realloc(s->recs, (size_t)cap * sizeof *s->recs);
        if (!p) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        s->recs = p, s->cap_recs = cap;
    }
    s->recs[s->n_recs++] = (cell_rec){.method = m, .col = k, .seed = seed, .v = v};
    return MC_OK;
}

/* The reference method first, then the others in the order their records first appear. */
static void section_order(section *s) {
    int r = name_index(s->methods, s->n_methods, s->ref);
    if (r <= 0) return;
    char tmp[NAME_CAP];
    memcpy(tmp, s->methods[r], NAME_CAP);
    memmove(s->methods[1], s->methods[0], (size_t)r * NAME_CAP);
    memcpy(s->methods[0], tmp, NAME_CAP);
    for (int i = 0; i < s->n_recs; i++) {
        int m = s->recs[i].method;
        s->recs[i].method = m == r ? 0 : m < r ? m + 1 : m;
    }
}

/* Values of (method, col) in seed order: seeds[], vals[] of *n (arrays of cap n_recs). */
static void cell_values(const section *s, int m, int k, int64_t *seeds, double *vals, int *n) {
    *n = 0;
    for (int i = 0; i < s->n_recs; i++)
        if (s->recs[i].method == m && s->recs[i].col == k) {
            int j = (*n)++;
            while (j > 0 && seeds[j - 1] > s->recs[i].seed)
                seeds[j] = seeds[j - 1], vals[j] = vals[j - 1], j--;
            seeds[j] = s->recs[i].seed, vals[j] = s->recs[i].v;
        }
}

/* The statistics of one cell: its values, and the test of the reference against it. */
typedef struct {
    int n;
    double mean, sd;
    bool is_ref;
    mc_ttest tt;
    char note; /* footnote letter of an n/a test, 0 when the test has a p-value */
} cell_stats;

#define NOTE_FEW 'a'
#define NOTE_ZERO 'b'
#define NOTE_DIR 'c'
#define NOTE_NO_MPNET 'd'
#define NOTE_NO_VINTERP 'e'
#define NOTE_NO_NETDISSECT 'f'
#define N_NOTES 6

static mc_status cell_compute(const section *s, int m, int k, cell_stats *cs, mc_error *err) {
    int cap = s->n_recs + 1;
    int64_t *sa = malloc((size_t)cap * sizeof *sa), *sb = malloc((size_t)cap * sizeof *sb);
    double *va = malloc((size_t)cap * sizeof *va), *vb = malloc((size_t)cap * sizeof *vb);
    double *px = malloc((size_t)cap * sizeof *px), *py = malloc((size_t)cap * sizeof *py);
    mc_status st = MC_OK;
    memset(cs, 0, sizeof *cs);
    if (!sa || !sb || !va || !vb || !px || !py) {
        st = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        goto done;
    }
    int na = 0, nb = 0;
    cell_values(s, m, k, sa, va, &na);
    cs->n = na;
    cs->mean = mc_stats_mean(va, na);
    cs->sd = mc_stats_sd(va, na);
    int r = name_index(s->methods, s->n_methods, s->ref);
    cs->is_ref = m == r;
    if (cs->is_ref || na == 0) goto done;
    /* Pairs by seed: the reference's value (x) and this method's (y). */
    int np = 0;
    if (r >= 0) {
        cell_values(s, r, k, sb, vb, &nb);
        for (int i = 0, j = 0; i < na && j < nb;) {
            if (sa[i] == sb[j])
                px[np] = vb[j], py[np] = va[i], np++, i++, j++;
            else if (sa[i] < sb[j])
                i++;
            else
                j++;
        }
    }
    const int dir = s->cols[k].dir;
    cs->tt = mc_ttest_paired(px, py, np, dir >= 0 ? MC_TAIL_GREATER : MC_TAIL_LESS);
    if (dir == 0)
        cs->note = NOTE_DIR, cs->tt.status = MC_TTEST_OK, cs->tt.t = cs->tt.df = cs->tt.p = NAN;
    else if (cs->tt.status == MC_TTEST_FEW)
        cs->note = NOTE_FEW;
    else if (cs->tt.status == MC_TTEST_ZERO_VAR)
        cs->note = NOTE_ZERO;
done:
    free(sa), free(sb), free(va), free(vb), free(px), free(py);
    return st;
}

/* ---- reading the fragments ------------------------------------------------------------------- */

static const char *rel_path(const mc_config *cfg, const char *path) {
    size_t od = strlen(cfg->output_dir);
    return !strncmp(path, cfg->output_dir, od) && path[od] == '/' ? path + od + 1 : path;
}

/* ---- results from the stores ------------------------------------------------------------------ */

/* One task's numbers for one row of a summary: the row's identity as tab-separated display fields
 * (describe: layer, variant, set; baselines: layer, method, set; intervene: method, mode, beta,
 * units, dataset), the seed and up to five values. */
typedef struct {
    char key[4 * NAME_CAP];
    int64_t seed;
    double v[5];
} result;

typedef struct {
    result *v;
    int n, cap;
    int tasks; /* tasks read */
} results;

static void results_free(results *r) {
    free(r->v);
    memset(r, 0, sizeof *r);
}

/* A miclip record's method: "miclip", "miclip (in)" for another E_n variant and, with
 * intervene.readings, the reading ("miclip (section3.2)", "miclip (in, section3.2)"); reading -1
 * is the localize.* one (its pair of names when they mix the paper's two readings). */
static void miclip_label(const mc_config *cfg, int variant, int reading, char *out, size_t cap) {
    char rd[64] = "";
    const int r = reading >= 0 ? reading : mc_config_reading(cfg);
    if (cfg->intervene.readings.n > 0 && r >= 0)
        mc_snprintf(rd, sizeof rd, "%s", mc_reading_name(r));
    else if (cfg->intervene.readings.n > 0)
        mc_snprintf(rd, sizeof rd, "%s/%s", cfg->localize.sae_unit ? "atom" : "algorithm2",
                    cfg->localize.neuron_unit ? "activation" : "basis");
    if (variant >= 0 && rd[0])
        mc_snprintf(out, cap, "miclip (%s, %s)", mc_variant_name(variant), rd);
    else if (variant >= 0 || rd[0])
        mc_snprintf(out, cap, "miclip (%s)", variant >= 0 ? mc_variant_name(variant) : rd);
    else
        mc_snprintf(out, cap, "%s", REF_T2);
}

static mc_status results_add(results *r, const char *key, int64_t seed, const double *v, int nv,
                             mc_error *err) {
    if (r->n == r->cap) {
        int cap = r->cap ? 2 * r->cap : 64;
        void *p = realloc(r->v, (size_t)cap * sizeof *r->v);
        if (!p) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        r->v = p, r->cap = cap;
    }
    result *x = &r->v[r->n++];
    memset(x, 0, sizeof *x);
    mc_strlcpy(x->key, key, sizeof x->key);
    x->seed = seed;
    memcpy(x->v, v, (size_t)nv * sizeof *v);
    return MC_OK;
}

/* The concept sets of the config in their order (the implicit "classes" set when it lists none). */
static int concept_set_count(const mc_config *cfg) {
    return cfg->concepts.n > 0 ? cfg->concepts.n : 1;
}
static const char *concept_set_name(const mc_config *cfg, int i) {
    return cfg->concepts.n > 0 ? cfg->concepts.v[i].name : "classes";
}

/* Collective. Reads the results of every task of stage from its store (found through the task
 * index, its key checked), in sweep order. */
static mc_status read_results(const mc_comm *c, const mc_config *cfg, int stage, results *out,
                              mc_error *err) {
    mc_task *tasks = NULL;
    int n = 0;
    MC_TRY(mc_config_tasks(cfg, stage, &tasks, &n, err));
    char key_attr[64];
    mc_snprintf(key_attr, sizeof key_attr, "%s_key", mc_stage_name(stage));
    mc_status s = MC_OK;
    for (int t = 0; t < n && s == MC_OK; t++) {
        const mc_task *task = &tasks[t];
        char path[MC_PATH_CAP], key[MC_KEY_HEX], *stored = NULL;
        s = mc_comm_agree(c, mc_task_index_find(cfg, stage, task, path, sizeof path, key, err),
                          err);
        if (s != MC_OK) break;
        bool complete = false;
        s = mc_store_peek_complete(c, path, &complete, err);
        if (s == MC_OK && !complete)
            s = MC_FAIL(err, MC_ERR_ARG,
                        "report: %s is missing or incomplete: rerun the %s stage (task %s)",
                        rel_path(cfg, path), mc_stage_name(stage), task->id);
        mc_store *st = NULL;
        if (s == MC_OK) s = mc_store_open(c, path, MC_STORE_READ, &st, err);
        if (s == MC_OK) s = mc_store_get_attr_str(st, "/", key_attr, &stored, err);
        if (s == MC_OK && strcmp(stored, key))
            s = MC_FAIL(err, MC_ERR_FORMAT,
                        "report: %s carries %s %.16s, not the %.16s its task index records: "
                        "rerun the %s stage",
                        rel_path(cfg, path), key_attr, stored, key, mc_stage_name(stage));
        free(stored);
        if (stage == MC_STAGE_INTERVENE) {
            /* Delta-Acc, Delta-P, other class, clean accuracy of each (dataset, unit kind) group. */
            static const char *attrs[4] = {"delta_acc", "delta_prob", "specificity", "clean_acc"};
            for (int d = 0; s == MC_OK && d < cfg->intervene.datasets.n; d++)
                for (int k = 0; s == MC_OK && k < cfg->intervene.units.n; k++) {
                    const char *split =
                        cfg->intervene.datasets.v[d] == MC_EVAL_SET_EVAL ? "eval" : "unseen";
                    const char *kind = mc_unit_kind_name(cfg->intervene.units.v[k]);
                    char g[128], row[4 * NAME_CAP];
                    mc_snprintf(g, sizeof g, "%s/%s", split, kind);
                    if (!mc_store_exists(st, g))
                        continue; /* a dataset without any of the target's classes */
                    double v[5] = {0, 0, 0, 0, NAN};
                    for (int q = 0; s == MC_OK && q < 4; q++)
                        s = mc_store_get_attr_f64(st, g, attrs[q], &v[q], err);
                    /* the localization precision (stores written before it have none) */
                    if (s == MC_OK && mc_store_has_attr(st, g, "precision"))
                        s = mc_store_get_attr_f64(st, g, "precision", &v[4], err);
                    /* miclip's other E_n variants (intervene.variants) and, with
                     * intervene.readings, each reading are rows of their own. */
                    char meth[NAME_CAP];
                    if (task->method == MC_METHOD_MICLIP)
                        miclip_label(cfg, task->variant, task->reading, meth, sizeof meth);
                    else
                        mc_snprintf(meth, sizeof meth, "%s", mc_method_name(task->method));
                    mc_snprintf(row, sizeof row, "%s\t%s\t%g\t%s\t%s", meth,
                                mc_mode_name(task->mode), task->beta, kind, split);
                    if (s == MC_OK) s = results_add(out, row, task->seed, v, 5, err);
                }
        } else {
            /* The description accuracy of the logit neurons, per concept set. */
            const char *method = stage == MC_STAGE_BASELINES ? mc_method_name(task->method)
                                                             : mc_variant_name(task->variant);
            for (int i = 0; s == MC_OK && i < concept_set_count(cfg); i++) {
                char g[300], row[4 * NAME_CAP];
                mc_snprintf(g, sizeof g, "%s%s/neuron",
                            stage == MC_STAGE_BASELINES ? "describe/" : "",
                            concept_set_name(cfg, i));
                if (!mc_store_exists(st, g) || !mc_store_has_attr(st, g, "description_accuracy"))
                    continue;
                double v = 0;
                s = mc_store_get_attr_f64(st, g, "description_accuracy", &v, err);
                if (s == MC_OK && !(v >= 0 && v <= 1))
                    s = MC_FAIL(err, MC_ERR_FORMAT,
                                "%s: %s: description_accuracy %g is outside [0, 1]", path, g, v);
                mc_snprintf(row, sizeof row, "%s\t%s\t%s", task->layer, method,
                            concept_set_name(cfg, i));
                if (s == MC_OK) s = results_add(out, row, task->seed, &v, 1, err);
            }
        }
        if (st) mc_store_close(&st, NULL);
        s = mc_comm_agree(c, s, err);
        if (s == MC_OK) out->tasks++;
    }
    mc_tasks_free(&tasks);
    return s;
}

/* Which way miclip should move a Delta: removing/suppressing (scale beta < 1, add beta < 0) should
 * drop more (-1), enhancing (scale beta > 1, add beta > 0) gain more (+1); an identity edit has no
 * direction (0). */
static int edit_direction(const char *mode, double beta) {
    if (!strcmp(mode, "add")) return beta > 0 ? +1 : beta < 0 ? -1 : 0;
    return beta < 1 ? -1 : beta > 1 ? +1 : 0;
}

/* The key's tab-separated fields into f (the key is copied into buf first). */
static int key_fields(const char *key, char *buf, size_t cap, char **f, int max) {
    mc_strlcpy(buf, key, cap);
    int nf = 0;
    for (char *p = buf; nf < max;) {
        f[nf++] = p;
        char *tab = strchr(p, '\t');
        if (!tab) break;
        *tab = '\0', p = tab + 1;
    }
    return nf;
}

/* Table 1 rows: miclip's E_n variants ("miclip (in+out)") and the baselines, on `logits`. */
static mc_status table1_add(section *t1, const results *r, bool baseline, mc_error *err) {
    for (int i = 0; i < r->n; i++) {
        char buf[sizeof r->v[i].key], *f[3], name[NAME_CAP], where[64];
        if (key_fields(r->v[i].key, buf, sizeof buf, f, 3) != 3 || strcmp(f[0], "logits")) continue;
        if (baseline)
            mc_snprintf(name, sizeof name, "%s", f[1]);
        else
            mc_snprintf(name, sizeof name, "miclip (%s)", f[1]);
        mc_snprintf(where, sizeof where, "%s results", baseline ? "baselines" : "describe");
        MC_TRY(section_add(t1, name, f[2], +1, r->v[i].seed, 100.0 * r->v[i].v[0], where, err));
    }
    return MC_OK;
}

/* The E_n variant of a record of one of miclip's other variants ("miclip (in)", or with
 * intervene.readings "miclip (in, algorithm2)"), else -1: such records are Table 4's only. A
 * reading's row of the first variant ("miclip (section3.2)") is not one. */
static int variant_of_row(const char *method) {
    for (int v = 0; v < 3; v++) {
        char name[NAME_CAP];
        mc_snprintf(name, sizeof name, "miclip (%s", mc_variant_name(v));
        const size_t n = strlen(name);
        if (!strncmp(method, name, n) && (method[n] == ')' || method[n] == ',')) return v;
    }
    return -1;
}
static bool variant_row(const char *method) { return variant_of_row(method) >= 0; }

/* Table 2 columns: "units, mode beta, dataset"; Delta-Acc in t2[0], Delta-P in t2[1]. The unseen
 * dataset's records go to Table 3 instead. */
static mc_status table2_add(section *t2, const results *r, mc_error *err) {
    for (int i = 0; i < r->n; i++) {
        char buf[sizeof r->v[i].key], *f[5], col[NAME_CAP];
        if (key_fields(r->v[i].key, buf, sizeof buf, f, 5) != 5 || !strcmp(f[4], "unseen") ||
            variant_row(f[0]))
            continue;
        mc_snprintf(col, sizeof col, "%s, %s %s, %s", f[3], f[1], f[2], f[4]);
        const int dir = edit_direction(f[1], strtod(f[2], NULL));
        MC_TRY(section_add(&t2[0], f[0], col, dir, r->v[i].seed, r->v[i].v[0], "intervene results",
                           err));
        MC_TRY(section_add(&t2[1], f[0], col, dir, r->v[i].seed, r->v[i].v[1], "intervene results",
                           err));
    }
    return MC_OK;
}

/* The localization precision table: columns "units, dataset", one record per (method, seed) from
 * the first edit of the sweep (a method's units do not depend on the edit). */
static mc_status precision_add(section *tp, const results *r, mc_error *err) {
    char first[2 * NAME_CAP] = "";
    for (int i = 0; i < r->n; i++) {
        char buf[sizeof r->v[i].key], *f[5], col[NAME_CAP], edit[2 * NAME_CAP];
        if (key_fields(r->v[i].key, buf, sizeof buf, f, 5) != 5 || !isfinite(r->v[i].v[4]))
            continue;
        mc_snprintf(edit, sizeof edit, "%s %s", f[1], f[2]);
        if (!first[0]) mc_strlcpy(first, edit, sizeof first);
        if (strcmp(edit, first)) continue;
        mc_snprintf(col, sizeof col, "%s, %s", f[3], f[4]);
        MC_TRY(
            section_add(tp, f[0], col, +1, r->v[i].seed, r->v[i].v[4], "intervene results", err));
    }
    return MC_OK;
}

/* Table 3 (unseen concepts) in the paper's layout: sections (a) neurons and (b) SAE features, for
 * Delta-Acc (t3[0], t3[1]) and Delta-P (t3[2], t3[3]); columns "Enhancement (scale x2)" before
 * "Removal (scale x0)" as the paper prints them, then any other edit. Only the unseen dataset. */
static mc_status table3_add(section *t3, const results *r, bool add_mu, mc_error *err) {
    for (int pass = 0; pass < 3; pass++) /* enhancement, removal, identity edits */
        for (int i = 0; i < r->n; i++) {
            char buf[sizeof r->v[i].key], *f[5], col[NAME_CAP];
            if (key_fields(r->v[i].key, buf, sizeof buf, f, 5) != 5 || strcmp(f[4], "unseen") ||
                variant_row(f[0]))
                continue;
            const double beta = strtod(f[2], NULL);
            const int dir = edit_direction(f[1], beta);
            if (dir != (pass == 0 ? +1 : pass == 1 ? -1 : 0)) continue;
            const char *what = dir > 0 ? "Enhancement" : dir < 0 ? "Removal" : "Identity";
            if (!strcmp(f[1], "add"))
                mc_snprintf(col, sizeof col, "%s (add %+g%s)", what, beta, add_mu ? " mu" : "");
            else
                mc_snprintf(col, sizeof col, "%s (scale x%g)", what, beta);
            const int sec = !strcmp(f[3], "sae") ? 1 : 0;
            MC_TRY(section_add(&t3[sec], f[0], col, dir, r->v[i].seed, r->v[i].v[0],
                               "intervene results", err));
            MC_TRY(section_add(&t3[2 + sec], f[0], col, dir, r->v[i].seed, r->v[i].v[1],
                               "intervene results", err));
        }
    return MC_OK;
}

/* Table 4 (the ablation) in the paper's layout: rows miclip (in), (out), (in+out) (the paper's
 * Input-Only, Output-Only, MiCLIP) of intervene.variants, one section per unit kind (t4[0]
 * neurons, t4[1] SAE features); columns Delta-Acc of enhancement (scale x2) and removal (scale x0)
 * on the seen (eval) and the unseen dataset, created even without records so the layout stays the
 * paper's. A record "miclip" is the first align variant's. */
#define T4_REF "miclip (in+out)"
static const char *const t4_cols[4] = {"Seen: Enhancement (scale x2)", "Seen: Removal (scale x0)",
                                       "Unseen: Enhancement (scale x2)",
                                       "Unseen: Removal (scale x0)"};

static bool has_variant(const mc_enum_list *l, int v) {
    for (int i = 0; i < l->n; i++)
        if (l->v[i] == v) return true;
    return false;
}

static mc_status table4_add(section *t4, const mc_config *cfg, const results *r, mc_error *err) {
    static const int order[3] = {MC_VARIANT_IN, MC_VARIANT_OUT, MC_VARIANT_INOUT};
    for (int sec = 0; sec < 2; sec++) {
        int m = -1, k = -1;
        for (int i = 0; i < 3; i++) {
            if (!has_variant(&cfg->intervene.variants, order[i])) continue;
            char name[NAME_CAP];
            mc_snprintf(name, sizeof name, "miclip (%s)", mc_variant_name(order[i]));
            MC_TRY(section_row(&t4[sec], name, &m, err));
        }
        for (int c = 0; c < 4; c++)
            MC_TRY(section_col(&t4[sec], t4_cols[c], c % 2 ? -1 : +1, &k, err));
    }
    char def[NAME_CAP]; /* the first variant's row at the localize.* reading */
    miclip_label(cfg, -1, -1, def, sizeof def);
    for (int i = 0; i < r->n; i++) {
        char buf[sizeof r->v[i].key], *f[5], name[NAME_CAP];
        if (key_fields(r->v[i].key, buf, sizeof buf, f, 5) != 5 || strcmp(f[1], "scale")) continue;
        const int v = variant_of_row(f[0]);
        char at_default[NAME_CAP]; /* the variant's row at the localize.* reading */
        if (v >= 0) miclip_label(cfg, v, -1, at_default, sizeof at_default);
        if (!strcmp(f[0], def))
            mc_snprintf(name, sizeof name, "miclip (%s)",
                        mc_variant_name(cfg->align.variants.v[0]));
        else if (v >= 0 && !strcmp(f[0], at_default)) /* its other readings: interventions.md */
            mc_snprintf(name, sizeof name, "miclip (%s)", mc_variant_name(v));
        else
            continue;
        const double beta = strtod(f[2], NULL);
        if (beta != 2 && beta != 0) continue;
        const int c = (!strcmp(f[4], "unseen") ? 2 : 0) + (beta == 0 ? 1 : 0);
        const int sec = !strcmp(f[3], "sae") ? 1 : 0;
        MC_TRY(section_add(&t4[sec], name, t4_cols[c], c % 2 ? -1 : +1, r->v[i].seed, r->v[i].v[0],
                           "intervene results", err));
    }
    return MC_OK;
}

/* Table 4's note: why a half (seen / unseen) or a column has no value (the config does not run
 * that dataset or edit, or the target cannot classify the dataset's classes). */
static void table4_note(mc_buf *b, const mc_config *cfg, const section *t4) {
    for (int h = 0; h < 2; h++) {
        bool any[2] = {false, false};
        for (int i = 0; i < t4->n_recs; i++)
            if (t4->recs[i].col / 2 == h) any[t4->recs[i].col % 2] = true;
        if (any[0] && any[1]) continue;
        const int want_ds = h ? MC_EVAL_SET_UNSEEN : MC_EVAL_SET_EVAL;
        bool ds = false, scale = false;
        for (int i = 0; i < cfg->intervene.datasets.n; i++)
            ds |= cfg->intervene.datasets.v[i] == want_ds;
        for (int i = 0; i < cfg->intervene.modes.n; i++)
            scale |= cfg->intervene.modes.v[i] == MC_MODE_SCALE;
        if (any[0] || any[1]) { /* one edit is missing */
            const int e = any[0] ? 1 : 0;
            mc_buf_printf(
                b, " Column `%s` is empty (--): intervene.modes/betas has no scale x%d edit.",
                t4_cols[2 * h + e], e ? 0 : 2);
            continue;
        }
        const char *why =
            !ds      ? (h ? "intervene.datasets lacks `unseen`" : "intervene.datasets lacks `eval`")
            : !scale ? "intervene.modes lacks `scale`"
            : h      ? "the `unseen` dataset has none of the target's classes"
                     : "the `eval` dataset has none of the target's classes";
        if (h)
            mc_buf_printf(b,
                          " The unseen columns are empty (--): %s, so this run has no unseen half "
                          "(the paper's "
                          "DTD half; a CLIP target classifies unseen classes zero-shot, as "
                          "experiments/world-clip.yaml, which writes its own Table 4).",
                          why);
        else
            mc_buf_printf(b,
                          " The seen columns are empty (--): %s, so this run has no seen half (on "
                          "the tiny world "
                          "experiments/world.yaml runs it).",
                          why);
    }
}

/* Table 2's reference line: the clean accuracy of each dataset (the mean over the records, one
 * prefix per dataset), the headroom it leaves removal and enhancement, and what the reference rows
 * (random, oracle) are. */
/* Where V-Interp rows appear: which explainer (or file) wrote the descriptions behind them. */
static void vinterp_note(mc_buf *b, const mc_config *cfg) {
    mc_buf_printf(b,
                  " Rows `vinterp`: V-Interp's units, ranked by the CLIP text cosine of their "
                  "descriptions with "
                  "the class, the descriptions by the %s `%s`.",
                  cfg->baselines.vinterp_explainer[0] ? "explainer" : "descriptions file",
                  cfg->baselines.vinterp_explainer[0] ? cfg->baselines.vinterp_explainer
                                                      : cfg->baselines.vinterp_descriptions);
}

static void table2_reference(mc_buf *b, const mc_config *cfg, const results *r, bool unseen) {
    const char *splits[2] = {"eval", "unseen"};
    int shown = 0;
    for (int d = unseen ? 1 : 0; d < (unseen ? 2 : 1); d++) {
        double sum = 0;
        int n = 0;
        for (int i = 0; i < r->n; i++) {
            char buf[sizeof r->v[i].key], *f[5];
            if (key_fields(r->v[i].key, buf, sizeof buf, f, 5) == 5 && !strcmp(f[4], splits[d]) &&
                isfinite(r->v[i].v[3]))
                sum += r->v[i].v[3], n++;
        }
        if (!n) continue;
        const double acc = sum / n;
        mc_buf_printf(
            b, "%s%s %.2f%% (removal can cost at most %.2f pp, enhancement gain at most %.2f pp)",
            shown++ ? "; " : " Clean accuracy: ", splits[d], acc, acc, 100.0 - acc);
    }
    if (shown) mc_buf_printf(b, ".");
    bool rnd = false, orc = false, vi = false;
    for (int i = 0; i < cfg->intervene.methods.n; i++)
        rnd |= cfg->intervene.methods.v[i] == MC_METHOD_RANDOM,
            orc |= cfg->intervene.methods.v[i] == MC_METHOD_ORACLE,
            vi |= cfg->intervene.methods.v[i] == MC_METHOD_VINTERP;
    if (vi) vinterp_note(b, cfg);
    if (rnd)
        mc_buf_printf(b, " Reference row `random`: %lld random units per class.",
                      (long long)cfg->intervene.tau);
    if (orc)
        mc_buf_printf(
            b,
            " Reference row `oracle`: the %lld units whose single x0 removal lowers class c's mean "
            "probability most, measured on the same images (an in-sample reference for removal, "
            "not a bound "
            "on removing a set; docs/intervene.md).",
            (long long)cfg->intervene.tau);
}

/* ---- the stage summaries: report/descriptions.md, baselines.md, interventions.md ---------------- */

/* One row per key in the order keys first appear: its fields, the number of seeds, and mean and
 * sample std over seeds of each of nv values (accuracies: percentages to 0.1; deltas: "m ± s"). */
static void summary_rows(mc_buf *b, const results *r, int nv, bool percent) {
    bool *used = calloc((size_t)r->n + 1, sizeof *used);
    double *x = calloc((size_t)r->n + 1, sizeof *x);
    if (!used || !x) b->oom = true;
    for (int i = 0; used && x && i < r->n; i++) {
        if (used[i]) continue;
        int cnt = 0;
        for (int j = i; j < r->n; j++)
            if (!used[j] && !strcmp(r->v[i].key, r->v[j].key)) used[j] = true, cnt++;
        char buf[sizeof r->v[i].key], *f[8];
        int nf = key_fields(r->v[i].key, buf, sizeof buf, f, 8);
        for (int k = 0; k < nf; k++) mc_buf_printf(b, "| %s ", f[k]);
        mc_buf_printf(b, "| %d |", cnt);
        for (int q = 0; q < nv; q++) {
            int m = 0;
            for (int j = i; j < r->n; j++)
                if (!strcmp(r->v[i].key, r->v[j].key)) x[m++] = r->v[j].v[q];
            double mean = mc_stats_mean(x, m), sd = m > 1 ? mc_stats_sd(x, m) : 0;
            if (percent)
                mc_buf_printf(b, " %.1f%% | %.1f |", 100 * mean, 100 * sd);
            else
                mc_buf_printf(b, " %.2f ± %.2f |", mean, sd);
        }
        mc_buf_printf(b, "\n");
    }
    free(used), free(x);
}

/* Rank 0. Appends the task sections OUTPUT_DIR/report/<dir>/<task>.md of every task of stage to body
 * (each after a blank line); a missing one is an error naming the stage to run. */
static mc_status task_sections(const mc_config *cfg, int stage, const char *dir, mc_buf *body,
                               mc_error *err) {
    mc_task *tasks = NULL;
    int n = 0;
    MC_TRY(mc_config_tasks(cfg, stage, &tasks, &n, err));
    mc_status s = MC_OK;
    for (int t = 0; t < n && s == MC_OK; t++) {
        char path[MC_PATH_CAP], *text = NULL;
        size_t len = 0;
        mc_snprintf(path, sizeof path, "%s/report/%s/%s.md", cfg->output_dir, dir, tasks[t].id);
        if (!mc_file_exists(path))
            s = MC_FAIL(
                err, MC_ERR_ARG,
                "report: %s is missing: the %s stage has not finished task %s (run it first)", path,
                mc_stage_name(stage), tasks[t].id);
        else
            s = mc_read_file(path, 64u << 20, &text, &len, err);
        if (s == MC_OK) mc_buf_printf(body, "\n%s", text);
        free(text);
    }
    mc_tasks_free(&tasks);
    return s;
}

static mc_status write_summary(const mc_config *cfg, const char *file, mc_buf *b, mc_error *err) {
    if (b->oom) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    char path[MC_PATH_CAP];
    mc_snprintf(path, sizeof path, "%s/report/%s", cfg->output_dir, file);
    MC_TRY(mc_write_text_file_if_changed(path, b->p, b->n, err));
    mc_info0("report: %s", file);
    return MC_OK;
}

/* Rank 0. descriptions.md (describe) or baselines.md: the summary of the description accuracy on
 * `logits`, then every task's section. */
static mc_status description_summary(const mc_config *cfg, int stage, const results *r,
                                     mc_error *err) {
    const bool bl = stage == MC_STAGE_BASELINES;
    mc_buf b = {0};
    if (bl)
        mc_buf_printf(&b,
                      "# Baselines: %s\n\nAct-Values and CLIP-Dissect on the training activations "
                      "of each seed and "
                      "layer (docs/baselines.md). Written by the baselines stage; the full lists "
                      "are in tables/.\n",
                      cfg->name);
    else
        mc_buf_printf(&b,
                      "# Descriptions: %s\n\nTop concepts per unit (cosine of the unit's E_n "
                      "embedding with the "
                      "concept's CLIP text embedding, prompt \"%s\"), per seed, layer and E_n "
                      "variant. Written by the "
                      "describe stage; the full lists are in tables/.\n",
                      cfg->name, cfg->align.prompt);
    if (r->n)
        mc_buf_printf(
            &b,
            "\n## Description accuracy on `logits` (paper Table 1)\n\nFraction of logit neurons "
            "whose "
            "top concept is their own class.\n\n| layer | %s | concept set | seeds | mean | std |\n"
            "|---|---|---|---|---|---|\n",
            bl ? "method" : "variant");
    summary_rows(&b, r, 1, true);
    mc_status s = task_sections(cfg, stage, bl ? "baselines" : "descriptions", &b, err);
    if (s == MC_OK) s = write_summary(cfg, bl ? "baselines.md" : "descriptions.md", &b, err);
    mc_buf_free(&b);
    return s;
}

/* Rank 0. interventions.md: mean ± std over seeds per (method, mode, beta, units, dataset), then
 * every task's section. */
static mc_status intervention_summary(const mc_config *cfg, const results *r, mc_error *err) {
    mc_buf b = {0};
    mc_buf_printf(
        &b,
        "# Interventions: %s\n\nDelta-Acc: the accuracy on the images of class c with the top-%lld "
        "units of class c's concept edited at layer `%s`, minus the clean accuracy, averaged over "
        "classes "
        "(percentage points). Delta-P: the same for the mean probability of class c. Other class: "
        "Delta-Acc of the same edit on the images of class c+1. Mean ± sample std over seeds. "
        "Written by "
        "the intervene stage; per-class values in tables/.\n\n"
        "| method | mode | beta | units | dataset | seeds | Delta-Acc (pp) | Delta-P (pp) | other "
        "class (pp) | "
        "clean acc (%%) |\n|---|---|---|---|---|---|---|---|---|---|\n",
        cfg->name, (long long)cfg->intervene.tau, cfg->intervene.layer);
    summary_rows(&b, r, 4, false);
    for (int i = 0; i < cfg->intervene.methods.n; i++)
        if (cfg->intervene.methods.v[i] == MC_METHOD_VINTERP) {
            mc_buf_printf(&b, "\n");
            vinterp_note(&b, cfg);
            mc_buf_printf(&b, "\n");
        }
    mc_buf_printf(&b, "\n## Per task\n");
    mc_status s = task_sections(cfg, MC_STAGE_INTERVENE, "interventions", &b, err);
    if (s == MC_OK) s = write_summary(cfg, "interventions.md", &b, err);
    mc_buf_free(&b);
    return s;
}

/* ---- writing the tables ---------------------------------------------------------------------- */

static void tex_escaped(mc_buf *b, const char *s) {
    for (; *s; s++) {
        if (strchr("&%$#_{}", *s))
            mc_buf_printf(b, "\\%c", *s);
        else if (*s == '~')
            mc_buf_printf(b, "\\textasciitilde{}");
        else if (*s == '^')
            mc_buf_printf(b, "\\textasciicircum{}");
        else if (*s == '\\')
            mc_buf_printf(b, "\\textbackslash{}");
        else
            mc_buf_printf(b, "%c", *s);
    }
}

static void md_escaped(mc_buf *b, const char *s) {
    for (; *s; s++) mc_buf_printf(b, *s == '|' ? "\\|" : "%c", *s);
}

static const char *note_text(char note) {
    switch (note) {
    case NOTE_FEW:
        return "fewer than 2 seeds have values for both this method and the reference: no test";
    case NOTE_ZERO:
        return "every seed's difference from the reference is the same: zero variance, t undefined";
    case NOTE_NO_MPNET:
        return "no MPNet model: `models.mpnet` is not set in the config (the tiny world has none), "
               "so no MPNet score";
    case NOTE_NO_VINTERP:
        return "V-Interp is not run by this config: it needs an LMM explainer "
               "(`baselines.vinterp.explainer`) or a descriptions JSON "
               "(`baselines.vinterp.descriptions`) and none ships with miclip; list `vinterp` in "
               "`baselines.methods` and `intervene.methods` with one of them (docs/baselines.md)";
    case NOTE_NO_NETDISSECT:
        return "Network Dissection is not run by this config: it needs every token of its layer "
               "(`extract.pool: all`, no `logits` layer) and per-image concept masks; on the tiny "
               "world experiments/world-netdissect.yaml runs it (docs/baselines.md)";
    default: return "this edit leaves the units unchanged (scale 1 or add 0): no direction to test";
    }
}

/* A mean ± std cell (std "n/a" for one seed). */
static void fmt_mean(char *out, size_t cap, const cell_stats *cs, int decimals, bool tex) {
    const int d = decimals > 0 ? decimals : 2;
    if (cs->n == 0)
        mc_snprintf(out, cap, "--");
    else if (cs->n < 2)
        mc_snprintf(out, cap, "%.*f %s n/a", d, cs->mean, tex ? "$\\pm$" : "±");
    else
        mc_snprintf(out, cap, "%.*f %s %.*f", d, cs->mean, tex ? "$\\pm$" : "±", d, cs->sd);
}

static void fmt_test(char *out, size_t cap, const cell_stats *cs, double alpha, bool tex) {
    if (cs->n == 0)
        mc_snprintf(out, cap, "--");
    else if (cs->note)
        mc_snprintf(out, cap, tex ? "n/a$^{%c}$" : "n/a (%c)", cs->note);
    else {
        bool sig = cs->tt.p < alpha;
        if (tex)
            mc_snprintf(out, cap, "%st = %.3f, df = %.0f, p = %.3g%s", sig ? "\\textbf{" : "",
                        cs->tt.t, cs->tt.df, cs->tt.p, sig ? "}" : "");
        else
            mc_snprintf(out, cap, "%st = %.3f, df = %.0f, p = %.3g%s", sig ? "**" : "", cs->tt.t,
                        cs->tt.df, cs->tt.p, sig ? "**" : "");
    }
}

/* All cells of a section, [method * n_cols + col]. */
static mc_status section_stats(const section *s, cell_stats **out, mc_error *err) {
    *out = mc_alloc_array((size_t)s->n_methods * (size_t)s->n_cols + 1, sizeof **out);
    if (!*out) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    for (int m = 0; m < s->n_methods; m++)
        for (int k = 0; k < s->n_cols; k++)
            MC_TRY(cell_compute(s, m, k, &(*out)[m * s->n_cols + k], err));
    return MC_OK;
}

static const char *h1_word(int dir) { return dir > 0 ? "higher" : dir < 0 ? "lower" : "none"; }

static const char *dir_word(int dir) { return dir > 0 ? "greater" : dir < 0 ? "less" : "none"; }

/* The rows of s->absent: the method, then n/a with its footnote letter in every column. */
static void absent_md(mc_buf *b, const section *s, bool *used_notes) {
    for (int a = 0; a < s->n_absent; a++) {
        mc_buf_printf(b, "| "), md_escaped(b, s->absent[a].method), mc_buf_printf(b, " |");
        for (int k = 0; k < s->n_cols; k++) mc_buf_printf(b, " n/a (%c) |", s->absent[a].note);
        mc_buf_printf(b, "\n");
        used_notes[s->absent[a].note - 'a'] = true;
    }
}

static void absent_tex(mc_buf *b, const section *s, bool *used_notes) {
    for (int a = 0; a < s->n_absent; a++) {
        tex_escaped(b, s->absent[a].method);
        for (int k = 0; k < s->n_cols; k++) mc_buf_printf(b, " & n/a$^{%c}$", s->absent[a].note);
        mc_buf_printf(b, " \\\\\n");
        used_notes[s->absent[a].note - 'a'] = true;
    }
}

static void section_md(mc_buf *b, const section *s, const cell_stats *cs, double alpha,
                       bool *used_notes) {
    mc_buf_printf(b, "%s (%s; mean ± sample std over seeds, n - 1):\n\n| method |", s->title,
                  s->unit);
    for (int k = 0; k < s->n_cols; k++)
        mc_buf_printf(b, " "), md_escaped(b, s->cols[k].name), mc_buf_printf(b, " |");
    mc_buf_printf(b, "\n|---|");
    for (int k = 0; k < s->n_cols; k++) mc_buf_printf(b, "---|");
    mc_buf_printf(b, "\n");
    char cell[160];
    for (int m = 0; m < s->n_methods; m++) {
        mc_buf_printf(b, "| "), md_escaped(b, s->methods[m]), mc_buf_printf(b, " |");
        for (int k = 0; k < s->n_cols; k++) {
            if (s->na_note)
                mc_snprintf(cell, sizeof cell, "n/a (%c)", s->na_note);
            else
                fmt_mean(cell, sizeof cell, &cs[m * s->n_cols + k], s->decimals, false);
            mc_buf_printf(b, " %s |", cell);
        }
        mc_buf_printf(b, "\n");
    }
    absent_md(b, s, used_notes);
    if (s->na_note) {
        used_notes[s->na_note - 'a'] = true;
        mc_buf_printf(b, "\nNo t-tests (%c).\n", s->na_note);
        return;
    }
    mc_buf_printf(b,
                  "\nOne-tailed paired t-tests over seeds (pairs by seed), %s against each method; "
                  "H1 (in each "
                  "column's header): %s's mean is higher or lower, whichever is better; t = "
                  "mean(%s - method) / "
                  "(sd / sqrt(n)), df = n - 1; **bold**: p < %g.\n\n| method vs %s |",
                  s->ref, s->ref, s->ref, alpha, s->ref);
    for (int k = 0; k < s->n_cols; k++)
        mc_buf_printf(b, " "), md_escaped(b, s->cols[k].name),
            mc_buf_printf(b, " (H1: %s) |", h1_word(s->cols[k].dir));
    mc_buf_printf(b, "\n|---|");
    for (int k = 0; k < s->n_cols; k++) mc_buf_printf(b, "---|");
    mc_buf_printf(b, "\n");
    for (int m = 0; m < s->n_methods; m++) {
        if (cs[m * s->n_cols].is_ref) continue;
        mc_buf_printf(b, "| "), md_escaped(b, s->methods[m]), mc_buf_printf(b, " |");
        for (int k = 0; k < s->n_cols; k++) {
            const cell_stats *c = &cs[m * s->n_cols + k];
            fmt_test(cell, sizeof cell, c, alpha, false);
            if (c->note) used_notes[c->note - 'a'] = true;
            mc_buf_printf(b, " %s |", cell);
        }
        mc_buf_printf(b, "\n");
    }
    absent_md(b, s, used_notes);
}

static void section_tex(mc_buf *b, const section *s, const cell_stats *cs, double alpha,
                        bool *used_notes) {
    char cell[160];
    if (s->na_note) used_notes[s->na_note - 'a'] = true;
    for (int part = 0; part < (s->na_note ? 1 : 2); part++) {
        mc_buf_printf(b, "%% %s (%s), %s\n\\begin{tabular}{l", s->title, s->unit,
                      part ? "one-tailed paired t-tests against the reference"
                           : "mean $\\pm$ sample std over seeds");
        for (int k = 0; k < s->n_cols; k++) mc_buf_printf(b, "c");
        mc_buf_printf(b, "}\n\\hline\n%s", part ? "method vs " : "method");
        if (part) tex_escaped(b, s->ref);
        for (int k = 0; k < s->n_cols; k++) {
            mc_buf_printf(b, " & "), tex_escaped(b, s->cols[k].name);
            if (part) mc_buf_printf(b, " (H1: %s)", h1_word(s->cols[k].dir));
        }
        mc_buf_printf(b, " \\\\\n\\hline\n");
        for (int m = 0; m < s->n_methods; m++) {
            if (part && cs[m * s->n_cols].is_ref) continue;
            tex_escaped(b, s->methods[m]);
            for (int k = 0; k < s->n_cols; k++) {
                const cell_stats *c = &cs[m * s->n_cols + k];
                if (part) {
                    fmt_test(cell, sizeof cell, c, alpha, true);
                    if (c->note) used_notes[c->note - 'a'] = true;
                } else if (s->na_note) {
                    mc_snprintf(cell, sizeof cell, "n/a$^{%c}$", s->na_note);
                } else {
                    fmt_mean(cell, sizeof cell, c, s->decimals, true);
                }
                mc_buf_printf(b, " & %s", cell);
            }
            mc_buf_printf(b, " \\\\\n");
        }
        absent_tex(b, s, used_notes);
        mc_buf_printf(b, "\\hline\n\\end{tabular}\n\n");
    }
}

static void num17(mc_buf *b, double v) {
    if (isnan(v))
        mc_buf_printf(b, ",");
    else
        mc_buf_printf(b, ",%.17g", v);
}

/* A CSV row for a cell that has no value: n = 0, no numbers, the reason in `note`. */
static void csv_na_row(mc_buf *b, const char *table, const section *s, const char *method, int k,
                       char note) {
    mc_buf_csv(b, table), mc_buf_printf(b, ",");
    mc_buf_csv(b, s->title), mc_buf_printf(b, ",");
    mc_buf_csv(b, s->unit), mc_buf_printf(b, ",");
    mc_buf_csv(b, method), mc_buf_printf(b, ",");
    mc_buf_csv(b, s->cols[k].name);
    mc_buf_printf(b, ",0,,,");
    mc_buf_csv(b, s->ref);
    mc_buf_printf(b, ",,,,,,,");
    mc_buf_csv(b, note_text(note));
    mc_buf_printf(b, "\n");
}

static void section_csv(mc_buf *b, const char *table, const section *s, const cell_stats *cs,
                        double alpha) {
    for (int m = 0; m < s->n_methods; m++)
        for (int k = 0; k < s->n_cols; k++) {
            const cell_stats *c = &cs[m * s->n_cols + k];
            if (s->na_note) { /* no value can exist: one row saying why */
                csv_na_row(b, table, s, s->methods[m], k, s->na_note);
                continue;
            }
            if (c->n == 0) continue;
            mc_buf_csv(b, table), mc_buf_printf(b, ",");
            mc_buf_csv(b, s->title), mc_buf_printf(b, ",");
            mc_buf_csv(b, s->unit), mc_buf_printf(b, ",");
            mc_buf_csv(b, s->methods[m]), mc_buf_printf(b, ",");
            mc_buf_csv(b, s->cols[k].name);
            mc_buf_printf(b, ",%d", c->n);
            num17(b, c->mean), num17(b, c->sd);
            mc_buf_printf(b, ",");
            mc_buf_csv(b, s->ref);
            if (c->is_ref) {
                mc_buf_printf(b, ",,,,,,,reference\n");
                continue;
            }
            mc_buf_printf(b, ",%s,%lld", dir_word(s->cols[k].dir), (long long)c->tt.n);
            num17(b, c->tt.t), num17(b, c->tt.df), num17(b, c->tt.p);
            mc_buf_printf(b, ",%s,", c->note ? "" : c->tt.p < alpha ? "yes" : "no");
            if (c->note) mc_buf_csv(b, note_text(c->note));
            mc_buf_printf(b, "\n");
        }
    for (int a = 0; a < s->n_absent; a++) /* not run: one row per column saying why */
        for (int k = 0; k < s->n_cols; k++)
            csv_na_row(b, table, s, s->absent[a].method, k, s->absent[a].note);
}

static void notes_md(mc_buf *b, const bool *used) {
    bool any = false;
    for (int i = 0; i < N_NOTES; i++)
        if (used[i]) {
            mc_buf_printf(b, "%s(%c) n/a: %s.\n", any ? "" : "\n", 'a' + i,
                          note_text((char)('a' + i)));
            any = true;
        }
}

typedef struct {
    const char *file;  /* "table1_descriptions" */
    const char *title; /* heading */
    const char *intro; /* a paragraph */
    section *secs;
    int n_secs;
} table_spec;

/* Writes the table in each of cfg's formats under tables/; appends its Markdown to readme. */
static mc_status write_table(const mc_config *cfg, const table_spec *t, mc_buf *readme,
                             mc_error *err) {
    mc_buf md = {0}, tex = {0}, csv = {0};
    bool notes_md_used[N_NOTES] = {0}, notes_tex_used[N_NOTES] = {0};
    mc_status s = MC_OK;
    mc_buf_printf(&md, "## %s\n\n%s\n\n", t->title, t->intro);
    mc_buf_printf(&tex, "%% %s (miclip report stage, experiment %s)\n%% %s\n\n", t->title,
                  cfg->name, t->intro);
    mc_buf_printf(
        &csv,
        "table,section,unit,method,column,n,mean,std,reference,h1,pairs,t,df,p,significant,note\n");
    for (int i = 0; i < t->n_secs && s == MC_OK; i++) {
        cell_stats *cs = NULL;
        s = section_stats(&t->secs[i], &cs, err);
        if (s == MC_OK) {
            if (i) mc_buf_printf(&md, "\n");
            section_md(&md, &t->secs[i], cs, cfg->report.alpha, notes_md_used);
            section_tex(&tex, &t->secs[i], cs, cfg->report.alpha, notes_tex_used);
            section_csv(&csv, t->file, &t->secs[i], cs, cfg->report.alpha);
        }
        free(cs);
    }
    notes_md(&md, notes_md_used);
    /* Footnotes as text after the tabulars, so they print with the table. */
    for (int i = 0; i < N_NOTES; i++)
        if (notes_tex_used[i])
            mc_buf_printf(&tex, "\\noindent $^{%c}$ n/a: %s.\\par\n", 'a' + i,
                          note_text((char)('a' + i)));
    mc_buf_printf(&tex, "\\noindent Bold: p $<$ %g (one-tailed paired t-test over seeds).\\par\n",
                  cfg->report.alpha);
    if (md.oom || tex.oom || csv.oom) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    for (int f = 0; f < cfg->report.formats.n && s == MC_OK; f++) {
        int fmt = cfg->report.formats.v[f];
        const mc_buf *b = fmt == MC_FORMAT_MD ? &md : fmt == MC_FORMAT_CSV ? &csv : &tex;
        const char *ext = fmt == MC_FORMAT_MD ? "md" : fmt == MC_FORMAT_CSV ? "csv" : "tex";
        char path[MC_PATH_CAP];
        mc_snprintf(path, sizeof path, "%s/report/tables/%s.%s", cfg->output_dir, t->file, ext);
        s = mc_write_text_file_if_changed(path, b->p, b->n, err);
    }
    if (s == MC_OK) {
        mc_buf_printf(readme, "\n%s\nFiles:", md.p);
        for (int f = 0; f < cfg->report.formats.n; f++) {
            int fmt = cfg->report.formats.v[f];
            const char *ext = fmt == MC_FORMAT_MD ? "md" : fmt == MC_FORMAT_CSV ? "csv" : "tex";
            mc_buf_printf(readme, " [%s](tables/%s.%s)", ext, t->file, ext);
        }
        mc_buf_printf(readme, "\n");
        mc_info0("report: tables/%s (%d section(s))", t->file, t->n_secs);
    }
    mc_buf_free(&md), mc_buf_free(&tex), mc_buf_free(&csv);
    return s;
}

/* The mean of (method m, column k) over seeds; NAN without values. */
static double cell_mean(const section *s, int m, int k) {
    double sum = 0;
    int n = 0;
    for (int i = 0; i < s->n_recs; i++)
        if (s->recs[i].method == m && s->recs[i].col == k) sum += s->recs[i].v, n++;
    return n ? sum / n : NAN;
}

/* "What the tables show": per column of a section, the method that does best in the column's
 * direction (the reference rows random and oracle left out) against the section's reference
 * method, in plain sentences, so a reader sees where miclip wins and where it does not. */
static void section_verdict(mc_buf *b, const section *s, const char *what) {
    const int r = name_index(s->methods, s->n_methods, s->ref);
    if (r < 0 || s->n_cols == 0) return;
    int wins = 0, cols = 0;
    mc_buf others = {0};
    for (int k = 0; k < s->n_cols; k++) {
        const int dir = s->cols[k].dir;
        if (dir == 0) continue;
        int best = -1;
        double bv = NAN;
        for (int m = 0; m < s->n_methods; m++) {
            if (!strcmp(s->methods[m], "random") || !strcmp(s->methods[m], "oracle")) continue;
            double v = cell_mean(s, m, k);
            if (isnan(v)) continue;
            if (best < 0 || (dir > 0 ? v > bv : v < bv)) best = m, bv = v;
        }
        double rv = cell_mean(s, r, k);
        if (best < 0 || isnan(rv)) continue;
        cols++;
        if (best == r || rv == bv)
            wins++;
        else
            mc_buf_printf(&others, "%s`%s`: %s %.*f, %s %.*f", others.n ? "; " : "",
                          s->cols[k].name, s->methods[best], s->decimals ? s->decimals : 2, bv,
                          s->ref, s->decimals ? s->decimals : 2, rv);
    }
    if (cols == 0) {
        mc_buf_free(&others);
        return;
    }
    mc_buf_printf(b, "- %s: %s is best in %d of %d column(s)", what, s->ref, wins, cols);
    if (others.n) mc_buf_printf(b, "; another method is better in the others (%s)", others.p);
    mc_buf_printf(b, ".\n");
    if (others.oom) b->oom = true;
    mc_buf_free(&others);
}

static bool intervenes(const mc_config *cfg, int method) {
    for (int i = 0; i < cfg->intervene.methods.n; i++)
        if (cfg->intervene.methods.v[i] == method) return true;
    return false;
}

/* The paper's baseline rows of Tables 2 and 3 that this config does not run, each as a row of
 * n/a saying why, so that the table has the paper's rows instead of silently leaving them out:
 * Network Dissection (Table 2 only: the paper's Table 3 has no such row) and V-Interp. */
static void paper_absent_rows(section *s, const mc_config *cfg, bool unseen) {
    if (!unseen && !intervenes(cfg, MC_METHOD_NETDISSECT)) {
        mc_strlcpy(s->absent[s->n_absent].method, "netdissect", NAME_CAP);
        s->absent[s->n_absent++].note = NOTE_NO_NETDISSECT;
    }
    if (!intervenes(cfg, MC_METHOD_VINTERP)) {
        mc_strlcpy(s->absent[s->n_absent].method, "vinterp", NAME_CAP);
        s->absent[s->n_absent++].note = NOTE_NO_VINTERP;
    }
}

/* The tables (rank 0). */
/* Table 1's CLIP and MPNet score sections (rows and columns as the accuracy's); without an MPNet
 * model the MPNet section lists the CLIP section's cells as n/a (NOTE_NO_MPNET). */
static mc_status table1_scores(section *t1c, section *t1m, const mc_report_scores *sc,
                               mc_error *err) {
    for (int i = 0; i < sc->n; i++) {
        const mc_report_score *r = &sc->v[i];
        MC_TRY(section_add(t1c, r->method, r->set, +1, r->seed, r->clip, "CLIP scores", err));
        if (sc->have_mpnet)
            MC_TRY(section_add(t1m, r->method, r->set, +1, r->seed, r->mpnet, "MPNet scores", err));
    }
    if (sc->have_mpnet || !t1c->n_recs) return MC_OK;
    t1m->methods = mc_alloc_array((size_t)t1c->n_methods, sizeof *t1m->methods);
    t1m->cols = mc_alloc_array((size_t)t1c->n_cols, sizeof *t1m->cols);
    if (!t1m->methods || !t1m->cols) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    memcpy(t1m->methods, t1c->methods, (size_t)t1c->n_methods * sizeof *t1m->methods);
    memcpy(t1m->cols, t1c->cols, (size_t)t1c->n_cols * sizeof *t1m->cols);
    t1m->n_methods = t1c->n_methods, t1m->n_cols = t1c->n_cols;
    t1m->na_note = NOTE_NO_MPNET;
    return MC_OK;
}

static mc_status report_tables(const mc_config *cfg, const results *desc, const results *bl,
                               const mc_report_scores *scores, const results *inter, mc_buf *readme,
                               mc_error *err) {
    /* The reference row: miclip at the configured reading ("miclip (algorithm2)" with
     * intervene.readings, REF_T2 otherwise). */
    char ref2[NAME_CAP];
    miclip_label(cfg, -1, -1, ref2, sizeof ref2);
    section t1 = {.ref = REF_T1}, t2[2] = {{.ref = ref2}, {.ref = ref2}};
    section t3[4] = {{.ref = ref2}, {.ref = ref2}, {.ref = ref2}, {.ref = ref2}};
    static const char *t3_titles[4] = {"(a) Intervention on neurons, Delta-Acc",
                                       "(b) Intervention on SAE features, "
                                       "Delta-Acc",
                                       "(a) Intervention on neurons, Delta-P",
                                       "(b) Intervention on SAE "
                                       "features, Delta-P"};
    for (int i = 0; i < 4; i++) {
        mc_snprintf(t3[i].title, sizeof t3[i].title, "%s", t3_titles[i]);
        mc_snprintf(t3[i].unit, sizeof t3[i].unit, "pp");
    }
    section t1s[2] = {{.ref = REF_T1, .decimals = 4}, {.ref = REF_T1, .decimals = 4}};
    mc_snprintf(t1s[0].title, sizeof t1s[0].title, "CLIP score on `logits`");
    mc_snprintf(t1s[1].title, sizeof t1s[1].title, "MPNet score on `logits`");
    mc_snprintf(t1s[0].unit, sizeof t1s[0].unit, "cosine");
    mc_snprintf(t1s[1].unit, sizeof t1s[1].unit, "cosine");
    mc_snprintf(t1.title, sizeof t1.title, "Description accuracy on `logits`");
    mc_snprintf(t1.unit, sizeof t1.unit, "%%");
    mc_snprintf(t2[0].title, sizeof t2[0].title, "Delta-Acc");
    mc_snprintf(t2[0].unit, sizeof t2[0].unit, "pp");
    mc_snprintf(t2[1].title, sizeof t2[1].title, "Delta-P");
    mc_snprintf(t2[1].unit, sizeof t2[1].unit, "pp");
    section t4[2] = {{.ref = T4_REF}, {.ref = T4_REF}};
    section tp = {.ref = ref2};
    mc_snprintf(tp.title, sizeof tp.title, "Localization precision");
    mc_snprintf(tp.unit, sizeof tp.unit, "%%");
    mc_snprintf(t4[0].title, sizeof t4[0].title, "Neurons, Delta-Acc");
    mc_snprintf(t4[1].title, sizeof t4[1].title, "SAE features, Delta-Acc");
    mc_snprintf(t4[0].unit, sizeof t4[0].unit, "pp");
    mc_snprintf(t4[1].unit, sizeof t4[1].unit, "pp");
    mc_status s = table1_add(&t1, desc, false, err);
    if (s == MC_OK) s = table1_add(&t1, bl, true, err);
    if (s == MC_OK) s = table1_scores(&t1s[0], &t1s[1], scores, err);
    if (s == MC_OK) s = table2_add(t2, inter, err);
    if (s == MC_OK) s = table3_add(t3, inter, cfg->intervene.add_beta == 1, err);
    if (s == MC_OK) s = precision_add(&tp, inter, err);
    /* Table 4 compares E_n variants: only with more than one in intervene.variants. */
    const bool t4_on = cfg->intervene.variants.n > 1 && inter->n > 0;
    if (s == MC_OK && t4_on) s = table4_add(t4, cfg, inter, err);
    /* What the tables show, before them: where miclip is best and where it is not. */
    if (s == MC_OK && (t1.n_recs || t2[0].n_recs || t3[0].n_recs || t3[1].n_recs)) {
        mc_buf v = {0};
        if (t1.n_recs)
            section_verdict(&v, &t1, "Table 1, description accuracy (%, higher is better)");
        if (t1s[0].n_recs)
            section_verdict(&v, &t1s[0], "Table 1, CLIP score (cosine, higher is better)");
        if (t2[0].n_recs)
            section_verdict(
                &v, &t2[0],
                "Table 2, Delta-Acc (pp; removal: lower is better; enhancement: higher)");
        if (t3[0].n_recs) section_verdict(&v, &t3[0], "Table 3 (unseen), neurons, Delta-Acc (pp)");
        if (t3[1].n_recs)
            section_verdict(&v, &t3[1], "Table 3 (unseen), SAE features, Delta-Acc (pp)");
        if (t4[0].n_recs)
            section_verdict(&v, &t4[0], "Table 4 (ablation), neurons, Delta-Acc (pp)");
        if (t4[1].n_recs)
            section_verdict(&v, &t4[1], "Table 4 (ablation), SAE features, Delta-Acc (pp)");
        if (v.n)
            mc_buf_printf(
                readme,
                "\n## What the tables show\n\nComputed from the means below (the reference rows "
                "random and oracle are left out of \"best\"; significance is in the tables):\n\n%s",
                v.p);
        if (v.oom) readme->oom = true;
        mc_buf_free(&v);
    }
    if (s == MC_OK && (t1.n_recs || t1s[0].n_recs)) {
        section secs[3];
        int n_secs = 0;
        if (t1.n_recs) section_order(&t1), secs[n_secs++] = t1;
        if (t1s[0].n_recs) {
            section_order(&t1s[0]), section_order(&t1s[1]);
            secs[n_secs++] = t1s[0];
            if (t1s[1].n_recs || t1s[1].na_note) secs[n_secs++] = t1s[1];
        }
        char intro[1200];
        mc_snprintf(
            intro, sizeof intro,
            "Percentage of logit neurons whose top concept is their own class, per concept set "
            "(columns), "
            "for each method (rows; miclip's E_n variants and every baseline with records).%s Mean "
            "± sample "
            "standard deviation (n - 1) over seeds.",
            t1s[0].n_recs
                ? " CLIP score: the mean over the logit neurons of the cosine between the CLIP "
                  "text "
                  "embeddings of the neuron's top description and of its own class name, both put "
                  "into the concept prompt (align.prompt). MPNet score: the same in the sentence "
                  "space of the MPNet model (models.mpnet; the texts alone, mean-pooled and "
                  "normalised)."
                : "");
        table_spec ts = {
            .file = "table1_descriptions",
            .title = t1s[0].n_recs
                         ? "Table 1: descriptions of the logit neurons (accuracy, CLIP score, "
                           "MPNet score)"
                         : "Table 1: description accuracy on `logits`",
            .intro = intro,
            .secs = secs,
            .n_secs = n_secs};
        s = write_table(cfg, &ts, readme, err);
    } else if (s == MC_OK) {
        mc_info0(
            "report: no description-accuracy records on `logits` (describe %s): Table 1 omitted",
            mc_config_has_stage(cfg, MC_STAGE_DESCRIBE) ? "wrote none" : "is not in 'stages'");
    }
    if (s == MC_OK && t2[0].n_recs) {
        section_order(&t2[0]), section_order(&t2[1]);
        paper_absent_rows(&t2[0], cfg, false), paper_absent_rows(&t2[1], cfg, false);
    }
    if (s == MC_OK && t2[0].n_recs) {
        char intro[2000];
        /* Name how miclip embedded its units (docs/stages.md) and what an add beta means. */
        const char *nr = cfg->localize.neuron_unit == 1 ? "activation" : "basis";
        const char *sr = cfg->localize.sae_unit == 1 ? "atom" : "algorithm2";
        const bool inp_n = cfg->localize.neuron_unit == 1, inp_s = cfg->localize.sae_unit == 0;
        const char *in = cfg->localize.sae_inputs == 1 ? "class" : "all";
        mc_snprintf(intro, sizeof intro,
                    "Change of the accuracy (Delta-Acc) and of the mean probability of class c "
                    "(Delta-P) on the "
                    "images of class c when the top-%lld units of class c are edited at layer "
                    "`%s`, in percentage "
                    "points, per (unit kind, mode beta, dataset) column and method row. Mean ± "
                    "sample standard "
                    "deviation (n - 1) over seeds. MiCLIP's unit reading: neurons `%s`%s%s%s, SAE "
                    "features `%s`%s%s%s "
                    "(localize.neuron_unit / sae_unit / sae_inputs, docs/stages.md).%s",
                    (long long)cfg->intervene.tau, cfg->intervene.layer, nr,
                    inp_n ? " (inputs: " : "", inp_n ? in : "", inp_n ? ")" : "", sr,
                    inp_s ? " (inputs: " : "", inp_s ? in : "", inp_s ? ")" : "",
                    cfg->intervene.add_beta == 1
                        ? " Add columns: beta x mu_i, mu_i the unit's mean positive value "
                          "over the training images."
                        : "");
        mc_buf ref = {0};
        table2_reference(&ref, cfg, inter, false);
        if (!ref.oom && ref.p)
            mc_strlcpy(intro + strlen(intro), ref.p, sizeof intro - strlen(intro));
        mc_buf_free(&ref);
        table_spec ts = {.file = "table2_interventions",
                         .title = "Table 2: interventions",
                         .intro = intro,
                         .secs = t2,
                         .n_secs = 2};
        s = write_table(cfg, &ts, readme, err);
    } else if (s == MC_OK && (t3[0].n_recs || t3[1].n_recs)) {
        mc_info0("report: intervention records of the unseen dataset only: Table 2 omitted, Table "
                 "3 follows");
    } else if (s == MC_OK) {
        mc_info0("report: no intervention records (intervene %s): Table 2 omitted",
                 mc_config_has_stage(cfg, MC_STAGE_INTERVENE) ? "wrote none"
                                                              : "is not in 'stages'");
    }
    if (s == MC_OK && (t3[0].n_recs || t3[1].n_recs)) {
        section secs[4];
        int n_secs = 0;
        for (int i = 0; i < 4; i++)
            if (t3[i].n_recs) {
                section_order(&t3[i]), paper_absent_rows(&t3[i], cfg, true);
                secs[n_secs++] = t3[i];
            }
        char intro[2000];
        mc_snprintf(
            intro, sizeof intro,
            "The paper's Table 3: interventions on concepts never seen in alignment (the `unseen` "
            "dataset's "
            "classes; E_n was trained on the `train` dataset only). For each unseen class c the "
            "top-%lld "
            "units of c's concept at layer `%s` are edited, and the change of the accuracy "
            "(Delta-Acc) and "
            "of the mean probability of class c (Delta-P) on the images of class c is measured, in "
            "percentage points; enhancement = scale x2, removal = scale x0 as the paper (other "
            "edits follow). "
            "A CLIP target classifies zero-shot: softmax of its logit scale times the cosines of "
            "the image "
            "embedding with the prompted class-name text embeddings (align.prompt). Mean ± sample "
            "standard "
            "deviation (n - 1) over seeds. Methods that localize only the class names (Act-Values) "
            "have no "
            "units for an unseen concept and no row (docs/intervene.md).",
            (long long)cfg->intervene.tau, cfg->intervene.layer);
        mc_buf ref = {0};
        table2_reference(&ref, cfg, inter, true);
        if (!ref.oom && ref.p)
            mc_strlcpy(intro + strlen(intro), ref.p, sizeof intro - strlen(intro));
        mc_buf_free(&ref);
        table_spec ts = {.file = "table3_unseen",
                         .title = "Table 3: interventions on unseen concepts",
                         .intro = intro,
                         .secs = secs,
                         .n_secs = n_secs};
        s = write_table(cfg, &ts, readme, err);
    }
    if (s == MC_OK && t4_on && (t4[0].n_recs || t4[1].n_recs)) {
        section secs[2];
        int n_secs = 0;
        for (int i = 0; i < 2; i++)
            if (t4[i].n_recs) secs[n_secs++] = t4[i];
        mc_buf intro = {0};
        mc_buf_printf(&intro,
                      "The paper's Table 4 (ablation of E_n's grounding): miclip with E_n trained "
                      "on the input "
                      "grounding only (`in`, the paper's Input-Only), the output grounding only "
                      "(`out`, Output-Only) "
                      "and both (`in+out`, the full MiCLIP), each localizing its own top-%lld "
                      "units per class at layer "
                      "`%s` (intervene.variants). Delta-Acc (pp) on the images of class c after "
                      "enhancement (scale x2) "
                      "and removal (scale x0) of class c's units, on the seen concepts (the `eval` "
                      "dataset, Table 2's "
                      "records) and the unseen ones (the `unseen` dataset, Table 3's). The paper's "
                      "Delta-Acc columns "
                      "only; Delta-P and the other edits are in interventions.md. Rows in the "
                      "paper's order; the "
                      "t-tests are of `%s` against each ablation. Mean ± sample standard deviation "
                      "(n - 1) over seeds.",
                      (long long)cfg->intervene.tau, cfg->intervene.layer, T4_REF);
        table4_note(&intro, cfg, t4[0].n_recs ? &t4[0] : &t4[1]);
        if (intro.oom) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        table_spec ts = {.file = "table4_ablation",
                         .title = "Table 4: ablation of the input and output grounding",
                         .intro = intro.p,
                         .secs = secs,
                         .n_secs = n_secs};
        if (s == MC_OK) s = write_table(cfg, &ts, readme, err);
        mc_buf_free(&intro);
    } else if (s == MC_OK && inter->n > 0) {
        mc_info0("report: intervene.variants lists %s: Table 4 (ablation) omitted",
                 cfg->intervene.variants.n > 1 ? "variants without records" : "one E_n variant");
    }
    if (s == MC_OK && tp.n_recs) {
        section_order(&tp);
        char intro[1600];
        mc_snprintf(intro, sizeof intro,
                    "How well each method's top-%lld units of class c pick out c's images "
                    "(docs/intervene.md, \"Localization precision\"): for each unit, the fraction "
                    "of its n_c most activating images of the dataset (n_c = the number of c's "
                    "images; ties at the threshold shared out as under uniform tie-breaking) whose "
                    "object is c, a unit's value on an image being its mean over the edited tokens "
                    "at layer `%s` (a neuron's entry, an SAE feature's top-k code). Averaged over "
                    "c's units, then over the classes, in percent; chance is 1/C. On the tiny "
                    "world an image's class is the generator's ground truth of its object's colour "
                    "and shape. Mean ± sample standard deviation (n - 1) over seeds.",
                    (long long)cfg->intervene.tau, cfg->intervene.layer);
        table_spec ts = {.file = "table_precision",
                         .title = "Localization precision of the units",
                         .intro = intro,
                         .secs = &tp,
                         .n_secs = 1};
        s = write_table(cfg, &ts, readme, err);
    }
    section_free(&tp);
    section_free(&t1), section_free(&t2[0]), section_free(&t2[1]), section_free(&t1s[0]),
        section_free(&t1s[1]);
    for (int i = 0; i < 4; i++) section_free(&t3[i]);
    for (int i = 0; i < 2; i++) section_free(&t4[i]);
    return s;
}

/* ---- figures ----------------------------------------------------------------------------------- */

typedef struct {
    int n;
    double *x[MC_PLOT_MAX_SERIES], *y[MC_PLOT_MAX_SERIES];
} series_store;

static void series_free(series_store *ss) {
    for (int i = 0; i < MC_PLOT_MAX_SERIES; i++)
        free(ss->x[i]), free(ss->y[i]), ss->x[i] = ss->y[i] = NULL;
    ss->n = 0;
}

/* Collective. Reads the 1-D F32 dataset name of the complete store at path into x (steps 1..n)
 * and y (malloc'd). */
static mc_status read_curve(const mc_comm *c, const mc_config *cfg, const char *path,
                            const char *stage, const char *name, double **x, double **y, int64_t *n,
                            mc_error *err) {
    if (!mc_file_exists(path))
        return MC_FAIL(err, MC_ERR_ARG, "report: %s is missing: run the %s stage first",
                       rel_path(cfg, path), stage);
    bool complete = false;
    MC_TRY(mc_store_peek_complete(c, path, &complete, err));
    if (!complete)
        return MC_FAIL(err, MC_ERR_ARG, "report: %s is incomplete: finish the %s stage first",
                       rel_path(cfg, path), stage);
    mc_store *st = NULL;
    MC_TRY(mc_store_open(c, path, MC_STORE_READ, &st, err));
    mc_store_dataset_info info;
    mc_status s = mc_store_exists(st, name)
                      ? mc_store_dataset_info_get(st, name, &info, err)
                      : MC_FAIL(err, MC_ERR_FORMAT, "%s: no dataset '%s'", path, name);
    if (s == MC_OK && info.ndim != 1)
        s = MC_FAIL(err, MC_ERR_SHAPE, "%s: '%s' is not 1-D", path, name);
    s = mc_comm_agree(c, s, err);
    float *buf = NULL;
    if (s == MC_OK) {
        *n = info.shape[0];
        buf = mc_alloc_array((size_t)*n + 1, sizeof *buf);
        *x = mc_alloc_array((size_t)*n + 1, sizeof **x);
        *y = mc_alloc_array((size_t)*n + 1, sizeof **y);
        s = mc_comm_agree(c, buf && *x && *y ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory"),
                          err);
    }
    if (s == MC_OK) s = mc_store_read_rows(st, name, MC_DTYPE_F32, 0, *n, buf, err);
    for (int64_t i = 0; s == MC_OK && i < *n; i++) (*x)[i] = (double)(i + 1), (*y)[i] = buf[i];
    free(buf);
    mc_error ce = {0};
    mc_status cs = mc_store_close(&st, &ce);
    if (s == MC_OK && cs != MC_OK) *err = ce, s = cs;
    return s;
}

mc_status mc_report_write_figure_local(const mc_config *cfg, const mc_plot *p, const char *stem,
                                       mc_buf *readme, mc_error *err) {
    mc_status s = MC_OK;
    for (int f = 0; f < cfg->report.figure_formats.n && s == MC_OK; f++) {
        const int fmt = cfg->report.figure_formats.v[f];
        const char *ext = mc_plot_format_ext(fmt);
        char path[MC_PATH_CAP];
        if (!ext)
            s = MC_FAIL(err, MC_ERR_INTERNAL, "report.figure_formats: unknown format %d", fmt);
        else if (!mc_snprintf(path, sizeof path, "%s/report/figures/%s.%s", cfg->output_dir, stem,
                              ext))
            s = MC_FAIL(err, MC_ERR_ARG, "report: figure path too long: %s/report/figures/%s.%s",
                        cfg->output_dir, stem, ext);
        else
            s = mc_plot_write(p, fmt, path, err);
        if (s == MC_OK)
            mc_buf_printf(readme, "%s[%s](figures/%s.%s)", f ? " " : "- ", ext, stem, ext);
    }
    if (s == MC_OK) mc_buf_printf(readme, ": %s\n", p->title);
    return s;
}

/* Rank 0 writes p as figures/<stem>.<ext> in each figure format; the status is agreed. */
static mc_status write_figure(const mc_comm *c, const mc_config *cfg, const mc_plot *p,
                              const char *stem, mc_buf *readme, mc_error *err) {
    return mc_comm_agree(
        c, c->rank == 0 ? mc_report_write_figure_local(cfg, p, stem, readme, err) : MC_OK, err);
}

/* Collective: loss_curves (E_n loss per (layer, variant), one line per seed) and sae_curves (SAE
 * loss and FVU, one line per seed). */
static mc_status report_figures(const mc_comm *c, const mc_config *cfg, mc_buf *readme,
                                mc_error *err) {
    bool want_loss = false, want_sae = false, want_tsne = false, want_flawed = false;
    bool want_attn = false;
    for (int i = 0; i < cfg->report.figures.n; i++) {
        want_attn |= cfg->report.figures.v[i] == MC_FIGURE_ATTENTION_MAPS;
        want_loss |= cfg->report.figures.v[i] == MC_FIGURE_LOSS_CURVES;
        want_sae |= cfg->report.figures.v[i] == MC_FIGURE_SAE_CURVES;
        want_tsne |= cfg->report.figures.v[i] == MC_FIGURE_TSNE;
        want_flawed |= cfg->report.figures.v[i] == MC_FIGURE_FLAWED_REASONING;
    }
    if (want_loss && !mc_config_has_stage(cfg, MC_STAGE_ALIGN))
        mc_info0("report: loss_curves omitted: the align stage is not in 'stages'"),
            want_loss = false;
    if (want_sae && !mc_config_has_stage(cfg, MC_STAGE_SAE))
        mc_info0("report: sae_curves omitted: the sae stage is not in 'stages'"), want_sae = false;
    if (!want_loss && !want_sae && !want_tsne && !want_flawed && !want_attn) return MC_OK;
    const int n_seeds = cfg->seeds.n < MC_PLOT_MAX_SERIES ? cfg->seeds.n : MC_PLOT_MAX_SERIES;
    if (cfg->seeds.n > n_seeds) mc_info0("report: figures show the first %d seeds", n_seeds);
    /* The extraction key of each seed names its align and SAE stores. */
    char(*ekey)[MC_KEY_HEX] = calloc((size_t)n_seeds, sizeof *ekey);
    mc_status s = mc_comm_agree(c, ekey ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory"), err);
    for (int i = 0; i < n_seeds && s == MC_OK; i++) {
        mc_train_data td;
        s = mc_train_data_open(c, cfg, cfg->seeds.v[i], &td, err);
        if (s == MC_OK) mc_strlcpy(ekey[i], td.extract_key, MC_KEY_HEX), mc_train_data_close(&td);
    }
    if (s == MC_OK && readme) mc_buf_printf(readme, "\n## Figures\n\n");
    series_store ss = {0};
    for (int l = 0; want_loss && s == MC_OK && l < cfg->extract.layers.n; l++)
        for (int v = 0; s == MC_OK && v < cfg->align.variants.n; v++) {
            const char *layer = cfg->extract.layers.v[l];
            const int variant = cfg->align.variants.v[v];
            mc_plot p = {.n_panels = 1};
            mc_snprintf(p.title, sizeof p.title, "E_n training loss: layer %s, variant %s", layer,
                        mc_variant_name(variant));
            mc_plot_panel *pn = &p.panels[0];
            mc_snprintf(pn->xlabel, sizeof pn->xlabel, "step");
            mc_snprintf(pn->ylabel, sizeof pn->ylabel, "InfoNCE loss");
            for (int i = 0; i < n_seeds && s == MC_OK; i++) {
                mc_run_paths rp;
                int64_t n = 0;
                s = mc_align_paths(cfg, ekey[i], cfg->seeds.v[i], layer, variant, &rp, err);
                if (s == MC_OK)
                    s = read_curve(c, cfg, rp.store, "align", "curves/loss", &ss.x[i], &ss.y[i], &n,
                                   err);
                if (s == MC_OK) {
                    mc_plot_series *se = &pn->series[pn->n_series++];
                    mc_snprintf(se->label, sizeof se->label, "seed %lld",
                                (long long)cfg->seeds.v[i]);
                    se->x = ss.x[i], se->y = ss.y[i], se->n = n;
                }
            }
            char tag[256], stem[400];
            mc_layer_tag(layer, tag, sizeof tag);
            mc_snprintf(stem, sizeof stem, "loss_curves-l%s-%s", tag, mc_variant_tag(variant));
            if (s == MC_OK) s = write_figure(c, cfg, &p, stem, readme, err);
            series_free(&ss);
        }
    series_store s2 = {0};
    if (want_sae && s == MC_OK) {
        mc_plot p = {.n_panels = 2};
        mc_snprintf(p.title, sizeof p.title, "SAE training: layer %s", cfg->sae.layer);
        const char *names[2] = {"curves/loss", "curves/fvu"}, *ylab[2] = {"loss", "FVU"};
        for (int k = 0; k < 2; k++) {
            mc_snprintf(p.panels[k].xlabel, sizeof p.panels[k].xlabel, "step");
            mc_snprintf(p.panels[k].ylabel, sizeof p.panels[k].ylabel, "%s", ylab[k]);
        }
        for (int i = 0; i < n_seeds && s == MC_OK; i++) {
            mc_run_paths rp;
            s = mc_sae_paths(cfg, ekey[i], cfg->seeds.v[i], &rp, err);
            for (int k = 0; k < 2 && s == MC_OK; k++) {
                series_store *sk = k ? &s2 : &ss;
                int64_t n = 0;
                s = read_curve(c, cfg, rp.store, "sae", names[k], &sk->x[i], &sk->y[i], &n, err);
                if (s == MC_OK) {
                    mc_plot_series *se = &p.panels[k].series[p.panels[k].n_series++];
                    mc_snprintf(se->label, sizeof se->label, "seed %lld",
                                (long long)cfg->seeds.v[i]);
                    se->x = sk->x[i], se->y = sk->y[i], se->n = n;
                }
            }
        }
        char tag[256], stem[400];
        mc_layer_tag(cfg->sae.layer, tag, sizeof tag);
        mc_snprintf(stem, sizeof stem, "sae_curves-l%s", tag);
        if (s == MC_OK) s = write_figure(c, cfg, &p, stem, readme, err);
    }
    series_free(&ss), series_free(&s2);
    free(ekey);
    if (want_tsne && s == MC_OK) s = mc_report_tsne(c, cfg, readme, err);
    if (want_flawed && s == MC_OK) s = mc_report_flawed(c, cfg, readme, err);
    if (want_attn && s == MC_OK) s = mc_report_attention(c, cfg, readme, err);
    return s;
}

/* ---- the inputs record (issue 16: a rerun of a complete job touches nothing) -------------------- */

#define INPUTS_FORMAT "miclip-report-inputs/1"
#define INPUTS_RECORD ".inputs.json" /* under OUTPUT_DIR/report */

static int cmp_cstr(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Appends "relpath\tsize\tmtime\tctime\tinode\n" of every regular file under dir (rel: its path under
 * OUTPUT_DIR) to lines, less the record itself, store locks and write temporaries (transient). */
static mc_status walk_files(const char *dir, const char *rel, const char *skip, mc_buf *lines,
                            mc_error *err) {
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT
                   ? MC_OK
                   : MC_FAIL(err, MC_ERR_IO, "report: cannot list %s: %s", dir, strerror(errno));
    mc_status s = MC_OK;
    for (struct dirent *e; s == MC_OK && (e = readdir(d)) != NULL;) {
        const char *n = e->d_name;
        size_t ln = strlen(n);
        if (!strcmp(n, ".") || !strcmp(n, "..") || strstr(n, ".tmp.") ||
            (ln > 5 && !strcmp(n + ln - 5, ".lock")))
            continue;
        char path[MC_PATH_CAP], sub[MC_PATH_CAP];
        if (!mc_path_join(path, sizeof path, dir, n) ||
            !(rel[0] ? mc_snprintf(sub, sizeof sub, "%s/%s", rel, n)
                     : mc_strlcpy(sub, n, sizeof sub))) {
            s = MC_FAIL(err, MC_ERR_ARG, "report: path too long under %s", dir);
            break;
        }
        struct stat st;
        if (lstat(path, &st) != 0) continue; /* vanished while listing */
        if (S_ISDIR(st.st_mode))
            s = walk_files(path, sub, skip, lines, err);
        else if (S_ISREG(st.st_mode) && strcmp(sub, skip))
            mc_buf_printf(lines, "%s\t%lld\t%lld.%09ld\t%lld.%09ld\t%llu\n", sub,
                          (long long)st.st_size, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
                          (long long)st.st_ctim.tv_sec, st.st_ctim.tv_nsec,
                          (unsigned long long)st.st_ino);
    }
    closedir(d);
    return s;
}

/* Collective. The digest of everything the report depends on: the config (its hash), the build,
 * the text models' hashes (file-hash cache), and the identity (size, mtime, ctime, inode) of every
 * file under OUTPUT_DIR but the record, the report's own outputs included, so that a deleted or
 * edited output is rewritten too. Taken after the report is written, it equals the next run's
 * digest when nothing changed in between. Costs one stat per file (~860 in the main job). */
static mc_status inputs_digest(const mc_comm *c, const mc_config *cfg, char digest[MC_KEY_HEX],
                               mc_error *err) {
    char clip[MC_SHA256_HEX_LEN + 1] = "", mpnet[MC_SHA256_HEX_LEN + 1] = "";
    if (cfg->models.clip && cfg->models.clip[0])
        MC_TRY(mc_model_dir_hash(c, cfg->models.clip, clip, err));
    if (cfg->models.mpnet && cfg->models.mpnet[0])
        MC_TRY(mc_model_dir_hash(c, cfg->models.mpnet, mpnet, err));
    char *text = NULL;
    mc_status s = MC_OK;
    if (c->rank == 0) {
        mc_buf lines = {0}, b = {0};
        char skip[64];
        mc_snprintf(skip, sizeof skip, "report/%s", INPUTS_RECORD);
        s = walk_files(cfg->output_dir, "", skip, &lines, err);
        /* one line per file, sorted: the digest does not depend on the order readdir lists them */
        int64_t n = 0;
        for (size_t i = 0; i < lines.n; i++) n += lines.p[i] == '\n';
        char **v = s == MC_OK && !lines.oom ? mc_alloc_array((size_t)n + 1, sizeof *v) : NULL;
        if (s == MC_OK && !v) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        int64_t k = 0;
        for (char *q = lines.p; s == MC_OK && q && *q; k++) {
            char *nl = strchr(q, '\n');
            *nl = '\0';
            v[k] = q;
            q = nl + 1;
        }
        if (s == MC_OK) qsort(v, (size_t)k, sizeof *v, cmp_cstr);
        mc_buf_printf(&b, "%s\ncode=%s\nbuild=%s\nconfig=%s\nclip=%s\nmpnet=%s\n", INPUTS_FORMAT,
                      MICLIP_CACHE_VERSION, MICLIP_VERSION_STRING, cfg->hash, clip, mpnet);
        for (int64_t i = 0; s == MC_OK && i < k; i++) mc_buf_printf(&b, "%s\n", v[i]);
        if (s == MC_OK && b.oom) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        if (s == MC_OK) {
            mc_key_of(b.p, digest);
            text = mc_strdup(digest);
            if (!text) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        }
        free(v);
        mc_buf_free(&lines), mc_buf_free(&b);
    }
    MC_TRY(mc_comm_agree(c, s, err));
    MC_TRY(mc_comm_bcast_string(c, 0, &text, err));
    mc_strlcpy(digest, text, MC_KEY_HEX);
    free(text);
    return MC_OK;
}

static void record_path(const mc_config *cfg, char *buf, size_t cap) {
    mc_snprintf(buf, cap, "%s/report/%s", cfg->output_dir, INPUTS_RECORD);
}

/* Collective. Whether the record holds digest (a missing or unreadable record: no). */
static bool inputs_unchanged(const mc_comm *c, const mc_config *cfg, const char *digest) {
    int same = 0;
    if (c->rank == 0) {
        char path[MC_PATH_CAP];
        record_path(cfg, path, sizeof path);
        json_t *e = NULL;
        mc_error ignored = {0};
        const char *fmt = NULL, *d = NULL;
        if (mc_file_exists(path) && mc_json_load(path, false, &e, &ignored) == MC_OK &&
            mc_json_get_str(e, "format", true, NULL, &fmt, path, &ignored) == MC_OK &&
            mc_json_get_str(e, "digest", true, NULL, &d, path, &ignored) == MC_OK)
            same = !strcmp(fmt, INPUTS_FORMAT) && !strcmp(d, digest);
        json_decref(e);
    }
    MPI_Bcast(&same, 1, MPI_INT, 0, c->comm);
    return same != 0;
}

/* Collective. Records the digest taken after the report was written (rewritten only if changed). */
static mc_status inputs_record(const mc_comm *c, const mc_config *cfg, mc_error *err) {
    char digest[MC_KEY_HEX];
    MC_TRY(inputs_digest(c, cfg, digest, err));
    mc_status s = MC_OK;
    if (c->rank == 0) {
        char path[MC_PATH_CAP], text[256];
        record_path(cfg, path, sizeof path);
        int n = snprintf(text, sizeof text, "{\n \"format\": \"%s\",\n \"digest\": \"%s\"\n}",
                         INPUTS_FORMAT, digest);
        s = mc_write_text_file_if_changed(path, text, (size_t)n, err);
    }
    return mc_comm_agree(c, s, err);
}

/* ---- E_n convergence ------------------------------------------------------------------------------ */

enum { CONV_EPOCHS, CONV_BEST, CONV_HLOSS, CONV_HACC, CONV_TACC, CONV_N };

static void conv_cell(mc_buf *b, const double *v, int n, int dec, bool pct) {
    double x[64]; /* the seeds that have the value (n/a rows are skipped) */
    int k = 0;
    for (int i = 0; i < n && k < 64; i++)
        if (!isnan(v[i])) x[k++] = v[i];
    const double m = mc_stats_mean(x, k), sd = mc_stats_sd(x, k);
    const double f = pct ? 100.0 : 1.0;
    if (isnan(m))
        mc_buf_printf(b, " n/a |");
    else if (isnan(sd))
        mc_buf_printf(b, " %.*f%s |", dec, m * f, pct ? "%" : "");
    else
        mc_buf_printf(b, " %.*f ± %.*f%s |", dec, m * f, dec, sd * f, pct ? "%" : "");
}

/* Collective: per (layer, variant) how E_n's training ended (align stores' convergence record,
 * docs/stages.md), mean ± std over seeds, into readme and tables/en_convergence.{md,csv}. */
static mc_status report_convergence(const mc_comm *c, const mc_config *cfg, mc_buf *readme,
                                    mc_error *err) {
    if (!mc_config_has_stage(cfg, MC_STAGE_ALIGN)) return MC_OK;
    const int ns = cfg->seeds.n;
    char(*ekey)[MC_KEY_HEX] = calloc((size_t)ns, sizeof *ekey);
    double *v = mc_alloc_array((size_t)ns * CONV_N, sizeof(double));
    int *conv = mc_alloc_array((size_t)ns, sizeof(int));
    mc_status s = mc_comm_agree(
        c, ekey && v && conv ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory"), err);
    /* The table is an addition to the paper's: without the align results (a config whose
     * earlier stages ran elsewhere) it is omitted with an info line, not an error. */
    bool have = s == MC_OK;
    for (int i = 0; i < ns && s == MC_OK && have; i++) {
        mc_train_data td;
        mc_error e2 = {0};
        if (mc_train_data_open(c, cfg, cfg->seeds.v[i], &td, &e2) != MC_OK) {
            mc_info0("report: E_n convergence omitted: %s", e2.msg);
            have = false;
            break;
        }
        mc_strlcpy(ekey[i], td.extract_key, MC_KEY_HEX), mc_train_data_close(&td);
        for (int l = 0; have && l < cfg->extract.layers.n; l++)
            for (int vi = 0; have && vi < cfg->align.variants.n; vi++) {
                mc_run_paths rp;
                bool complete = false;
                s = mc_align_paths(cfg, ekey[i], cfg->seeds.v[i], cfg->extract.layers.v[l],
                                   cfg->align.variants.v[vi], &rp, err);
                if (s == MC_OK) s = mc_store_peek_complete(c, rp.store, &complete, err);
                if (s == MC_OK && !complete) {
                    mc_info0("report: E_n convergence omitted: %s is missing or incomplete",
                             rel_path(cfg, rp.store));
                    have = false;
                }
            }
    }
    if (s != MC_OK || !have) {
        free(ekey);
        free(v);
        free(conv);
        return s;
    }
    mc_buf md = {0}, csv = {0};
    const bool rule = cfg->align.stop == MC_ALIGN_STOP_CONVERGED;
    if (rule)
        mc_buf_printf(
            &md,
            "## E_n convergence\n\nE_n trained until its held-out alignment loss converged "
            "(align.stop: converged, docs/stages.md): %g%% of the training images held out, "
            "evaluated every "
            "%lld epoch(s), stopped after %lld evaluations without a relative improvement of %g "
            "(at most %lld "
            "epochs); the parameters of the best held-out loss are kept. Retrieval: the fraction "
            "of images "
            "whose E_n embedding is nearest to the text of their own predicted class (of %s). Mean "
            "± std "
            "over seeds.\n\n",
            100.0 * cfg->align.heldout, (long long)cfg->align.eval_every,
            (long long)cfg->align.patience, cfg->align.min_delta, (long long)cfg->align.max_epochs,
            "the class texts");
    else
        mc_buf_printf(
            &md,
            "## E_n convergence\n\nE_n trained for a fixed %lld epoch(s) (align.stop: epochs): no "
            "held-out loss. Retrieval: the fraction of training images whose E_n embedding is "
            "nearest "
            "to the text of their own predicted class. Mean ± std over seeds.\n\n",
            (long long)cfg->align.epochs);
    mc_buf_printf(
        &md,
        "| layer | variant | seeds | stopped by the rule | epochs run | best epoch | best held-out "
        "loss "
        "| held-out retrieval | training retrieval |\n|---|---|---|---|---|---|---|---|---|\n");
    mc_buf_printf(
        &csv, "layer,variant,seed,stop_reason,epochs_run,best_epoch,heldout_loss,heldout_retrieval,"
              "train_retrieval\n");
    for (int l = 0; s == MC_OK && l < cfg->extract.layers.n; l++)
        for (int vi = 0; s == MC_OK && vi < cfg->align.variants.n; vi++) {
            const char *layer = cfg->extract.layers.v[l];
            const int variant = cfg->align.variants.v[vi];
            int n_rule = 0;
            for (int i = 0; i < ns && s == MC_OK; i++) {
                mc_run_paths rp;
                s = mc_align_paths(cfg, ekey[i], cfg->seeds.v[i], layer, variant, &rp, err);
                mc_store *st = NULL;
                if (s == MC_OK) s = mc_store_open(c, rp.store, MC_STORE_READ, &st, err);
                char *why = NULL;
                mc_status ls = s;
                double *row = v + (size_t)i * CONV_N;
                for (int k = 0; k < CONV_N; k++) row[k] = NAN;
                if (ls == MC_OK)
                    ls = mc_store_get_attr_f64(st, "/", "train_retrieval", &row[CONV_TACC], err);
                if (ls == MC_OK && mc_store_has_attr(st, "/", "stop_reason"))
                    ls = mc_store_get_attr_str(st, "/", "stop_reason", &why, err);
                if (ls == MC_OK && mc_store_has_attr(st, "/", "heldout_loss")) {
                    int64_t e = 0, be = 0;
                    ls = mc_store_get_attr_i64(st, "/", "epochs_run", &e, err);
                    if (ls == MC_OK) ls = mc_store_get_attr_i64(st, "/", "best_epoch", &be, err);
                    if (ls == MC_OK)
                        ls = mc_store_get_attr_f64(st, "/", "heldout_loss", &row[CONV_HLOSS], err);
                    if (ls == MC_OK)
                        ls = mc_store_get_attr_f64(st, "/", "heldout_retrieval", &row[CONV_HACC],
                                                   err);
                    row[CONV_EPOCHS] = (double)e, row[CONV_BEST] = (double)be;
                }
                conv[i] = why && !strcmp(why, "converged");
                n_rule += conv[i];
                if (ls == MC_OK) {
                    mc_buf_printf(&csv, "%s,%s,%lld,%s", layer, mc_variant_name(variant),
                                  (long long)cfg->seeds.v[i], why ? why : "");
                    for (int k = 0; k < CONV_N; k++) num17(&csv, row[k]); /* ",value" or "," */
                    mc_buf_printf(&csv, "\n");
                }
                free(why);
                if (st) {
                    mc_error ce = {0};
                    mc_status cs = mc_store_close(&st, &ce);
                    if (ls == MC_OK && cs != MC_OK) *err = ce, ls = cs;
                }
                s = mc_comm_agree(c, ls, err);
            }
            if (s != MC_OK) break;
            mc_buf_printf(&md, "| %s | %s | %d |", layer, mc_variant_name(variant), ns);
            if (rule)
                mc_buf_printf(&md, " %d of %d |", n_rule, ns);
            else
                mc_buf_printf(&md, " n/a |");
            double col[64];
            for (int k = 0; k < CONV_N; k++) {
                int n = 0;
                for (int i = 0; i < ns && n < 64; i++) col[n++] = v[(size_t)i * CONV_N + k];
                conv_cell(&md, col, n,
                          k <= CONV_BEST    ? 1
                          : k == CONV_HLOSS ? 4
                                            : 1,
                          k >= CONV_HACC);
            }
            mc_buf_printf(&md, "\n");
        }
    if (s == MC_OK && (md.oom || csv.oom)) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    mc_status ws = s;
    if (ws == MC_OK && c->rank == 0) {
        for (int f = 0; f < cfg->report.formats.n && ws == MC_OK; f++) {
            const int fmt = cfg->report.formats.v[f];
            if (fmt != MC_FORMAT_MD && fmt != MC_FORMAT_CSV) continue;
            const mc_buf *b = fmt == MC_FORMAT_MD ? &md : &csv;
            char path[MC_PATH_CAP];
            mc_snprintf(path, sizeof path, "%s/report/tables/en_convergence.%s", cfg->output_dir,
                        fmt == MC_FORMAT_MD ? "md" : "csv");
            ws = mc_write_text_file_if_changed(path, b->p, b->n, err);
        }
        if (ws == MC_OK) mc_buf_printf(readme, "\n%s", md.p);
    }
    s = mc_comm_agree(c, ws, err);
    mc_buf_free(&md), mc_buf_free(&csv);
    free(ekey);
    free(v);
    free(conv);
    return s;
}

/* ---- the stage ----------------------------------------------------------------------------------- */

mc_status mc_report_check(const mc_config *cfg, mc_error *err) {
    (void)cfg, (void)err; /* every figure of the schema is drawn */
    return MC_OK;
}

mc_status mc_stage_report(const mc_comm *c, const mc_config *cfg, const mc_task *task,
                          mc_error *err) {
    (void)task;
    MC_TRY(mc_report_check(cfg, err));
    /* Nothing changed since the last report (its recorded inputs digest): skip before loading the
     * text encoders or reading any store (issue 16). */
    char digest[MC_KEY_HEX];
    MC_TRY(inputs_digest(c, cfg, digest, err));
    if (inputs_unchanged(c, cfg, digest)) {
        mc_info0("report: inputs unchanged since the last report, skipping (%s/report/README.md)",
                 cfg->output_dir);
        return MC_OK;
    }
    mc_buf readme = {0};
    /* No paths and no config hash: the same results read the same wherever the output folder is. */
    mc_buf_printf(
        &readme,
        "# Report: %s\n\nWritten by the report stage from the results the earlier stages stored "
        "(docs/report.md). Seeds:",
        cfg->name);
    for (int i = 0; i < cfg->seeds.n; i++)
        mc_buf_printf(&readme, "%s %lld", i ? "," : "", (long long)cfg->seeds.v[i]);
    mc_buf_printf(
        &readme,
        ". Every cell is the mean ± the sample standard deviation (n - 1) over seeds; each "
        "other method is compared with miclip by a one-tailed paired t-test over seeds (pairs by "
        "seed), "
        "bold where p < %g.\n",
        cfg->report.alpha);
    /* Every number comes from the stores the stages wrote; their Markdown sections are only text. */
    results desc = {0}, bl = {0}, inter = {0};
    mc_status s = MC_OK;
    if (mc_config_has_stage(cfg, MC_STAGE_DESCRIBE))
        s = read_results(c, cfg, MC_STAGE_DESCRIBE, &desc, err);
    if (s == MC_OK && mc_config_has_stage(cfg, MC_STAGE_BASELINES))
        s = read_results(c, cfg, MC_STAGE_BASELINES, &bl, err);
    if (s == MC_OK && mc_config_has_stage(cfg, MC_STAGE_INTERVENE))
        s = read_results(c, cfg, MC_STAGE_INTERVENE, &inter, err);
    /* Table 1's CLIP and MPNet scores from the describe layouts' top concepts (collective). */
    mc_report_scores scores = {0};
    if (s == MC_OK) s = mc_report_scores_compute(c, cfg, &scores, err);
    if (s == MC_OK && c->rank == 0) {
        if (mc_config_has_stage(cfg, MC_STAGE_DESCRIBE))
            s = description_summary(cfg, MC_STAGE_DESCRIBE, &desc, err);
        if (s == MC_OK && mc_config_has_stage(cfg, MC_STAGE_BASELINES))
            s = description_summary(cfg, MC_STAGE_BASELINES, &bl, err);
        if (s == MC_OK && mc_config_has_stage(cfg, MC_STAGE_INTERVENE))
            s = intervention_summary(cfg, &inter, err);
        if (s == MC_OK) s = report_tables(cfg, &desc, &bl, &scores, &inter, &readme, err);
    }
    s = mc_comm_agree(c, s, err);
    results_free(&desc), results_free(&bl), results_free(&inter);
    mc_report_scores_free(&scores);
    if (s == MC_OK) s = report_convergence(c, cfg, &readme, err);
    if (s == MC_OK) s = report_figures(c, cfg, c->rank == 0 ? &readme : NULL, err);
    if (s == MC_OK) {
        mc_status ws = MC_OK;
        if (c->rank == 0) {
            char path[MC_PATH_CAP];
            mc_snprintf(path, sizeof path, "%s/report/README.md", cfg->output_dir);
            ws = readme.oom ? MC_FAIL(err, MC_ERR_NOMEM, "out of memory")
                            : mc_write_text_file_if_changed(path, readme.p, readme.n, err);
            if (ws == MC_OK) mc_info0("report: -> %s", path);
        }
        s = mc_comm_agree(c, ws, err);
    }
    if (s == MC_OK) s = mc_report_site(c, cfg, c->rank == 0 && !readme.oom ? readme.p : NULL, err);
    if (s == MC_OK) s = inputs_record(c, cfg, err);
    mc_buf_free(&readme);
    return s;
}

/* ---- the registry entry ----------------------------------------------------------------------- */

static void report_cost(const mc_config *cfg, const mc_plan_inputs *in, mc_plan *p,
                        mc_plan_stage *S, double *flop, double *core_s, double *mem_b) {
    S->items = 1;
    mc_strlcpy(S->item_name, "report", sizeof S->item_name);
    *core_s = 60;
    mc_plan_add_store(p, S->stage, "tables/, figures/, index.html and site/", 1,
                      16.0 * 1024 * 1024);
}

const mc_stage_desc mc_report_stage = {
    .stage = MC_STAGE_REPORT,
    .summary = "the paper's tables with mean, std and paired t-tests, and the figures",
    .outputs = "report/README.md, report/tables/, report/figures/, report/index.html, report/site/",
    .check = mc_report_check,
    .run = mc_stage_report,
    .cost = report_cost,
};
