/* report.c - the `report` stage: the paper's tables from the records earlier stages wrote, with
 * mean ± sample std over seeds and one-tailed paired t-tests of miclip against every other method,
 * and the training-curve figures (docs/report.md).
 *
 * Inputs (read only): the describe fragments OUTPUT_DIR/report/descriptions/<task>.md ("accuracy"
 * records), the intervene fragments OUTPUT_DIR/report/interventions/<task>.md ("delta" records),
 * the baselines' describe-style fragments when that stage is listed, and the curves/ datasets of
 * the align and sae stores. Outputs: OUTPUT_DIR/report/tables/table{1,2}_*.{md,csv,tex},
 * OUTPUT_DIR/report/figures/<figure>.{svg,png} and OUTPUT_DIR/report/README.md. Rank 0 reads records and
 * writes every file; the store reads of the figures are collective. The same inputs give the same
 * bytes.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/buf.h"
#include "method/acts.h"
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
#include "miclip/image_write.h"
#include "miclip/log.h"
#include "miclip/plan.h"
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
    int n_methods, n_cols, n_recs, cap_recs;
    char (*methods)[NAME_CAP];
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

static mc_status section_add(section *s, const char *method, const char *col, int dir, int64_t seed, double v,
                             const char *where, mc_error *err) {
    int m = name_index(s->methods, s->n_methods, method);
    if (m < 0) {
        void *p = realloc(s->methods, (size_t)(s->n_methods + 1) * sizeof *s->methods);
        if (!p) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        s->methods = p;
        mc_strlcpy(s->methods[s->n_methods], method, NAME_CAP);
        m = s->n_methods++;
    }
    int k = -1;
    for (int i = 0; i < s->n_cols; i++)
        if (!strcmp(s->cols[i].name, col)) k = i;
    if (k < 0) {
        void *p = realloc(s->cols, (size_t)(s->n_cols + 1) * sizeof *s->cols);
        if (!p) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        s->cols = p;
        mc_strlcpy(s->cols[s->n_cols].name, col, NAME_CAP);
        s->cols[s->n_cols].dir = dir;
        k = s->n_cols++;
    }
    for (int i = 0; i < s->n_recs; i++)
        if (s->recs[i].method == m && s->recs[i].col == k && s->recs[i].seed == seed)
            return MC_FAIL(err, MC_ERR_FORMAT, "%s: a second record for method '%s', column '%s', seed %lld", where,
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
            while (j > 0 && seeds[j - 1] > s->recs[i].seed) seeds[j] = seeds[j - 1], vals[j] = vals[j - 1], j--;
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
            if (sa[i] == sb[j]) px[np] = vb[j], py[np] = va[i], np++, i++, j++;
            else if (sa[i] < sb[j]) i++;
            else j++;
        }
    }
    const int dir = s->cols[k].dir;
    cs->tt = mc_ttest_paired(px, py, np, dir >= 0 ? MC_TAIL_GREATER : MC_TAIL_LESS);
    if (dir == 0) cs->note = NOTE_DIR, cs->tt.status = MC_TTEST_OK, cs->tt.t = cs->tt.df = cs->tt.p = NAN;
    else if (cs->tt.status == MC_TTEST_FEW) cs->note = NOTE_FEW;
    else if (cs->tt.status == MC_TTEST_ZERO_VAR) cs->note = NOTE_ZERO;
done:
    free(sa), free(sb), free(va), free(vb), free(px), free(py);
    return st;
}

/* ---- reading the fragments ------------------------------------------------------------------- */

static const char *rel_path(const mc_config *cfg, const char *path) {
    size_t od = strlen(cfg->output_dir);
    return !strncmp(path, cfg->output_dir, od) && path[od] == '/' ? path + od + 1 : path;
}

typedef mc_status (*record_fn)(void *user, char **f, int nf, const char *where, mc_error *err);

/* Every task of stage must have written OUTPUT_DIR/report/<dir>/<task>.md; each "<!-- tag\t...
 * -->" record in it goes to fn as tab-separated fields (where = "file:line"). */
static mc_status read_records(const mc_config *cfg, int stage, const char *dir, const char *tag, record_fn fn,
                              void *user, int *n_records, mc_error *err) {
    mc_task *tasks = NULL;
    int n = 0;
    MC_TRY(mc_config_tasks(cfg, stage, &tasks, &n, err));
    char open_tag[64];
    mc_snprintf(open_tag, sizeof open_tag, "<!-- %s\t", tag);
    const size_t skip = strlen(open_tag);
    mc_status s = MC_OK;
    *n_records = 0;
    for (int t = 0; t < n && s == MC_OK; t++) {
        char path[MC_PATH_CAP];
        mc_snprintf(path, sizeof path, "%s/report/%s/%s.md", cfg->output_dir, dir, tasks[t].id);
        if (!mc_file_exists(path)) {
            s = MC_FAIL(err, MC_ERR_ARG, "report: %s is missing: the %s stage has not finished task %s (run it first)",
                        path, mc_stage_name(stage), tasks[t].id);
            break;
        }
        char *text = NULL;
        size_t len = 0;
        s = mc_read_file(path, 64u << 20, &text, &len, err);
        if (s == MC_OK && memchr(text, '\0', len))
            s = MC_FAIL(err, MC_ERR_FORMAT, "%s: a NUL byte: not a report fragment", path);
        int line = 1;
        const char *prev = text;
        for (char *q = s == MC_OK ? strstr(text, open_tag) : NULL; q && s == MC_OK; q = strstr(q, open_tag)) {
            for (; prev < q; prev++) line += *prev == '\n';
            char where[MC_PATH_CAP + 32];
            mc_snprintf(where, sizeof where, "%s:%d", path, line);
            char *nl = strchr(q, '\n'), *e = strstr(q, " -->");
            if (!e || (nl && nl < e)) {
                s = MC_FAIL(err, MC_ERR_FORMAT, "%s: unterminated '%s' record", where, tag);
                break;
            }
            *e = '\0';
            char *f[16];
            int nf = 0;
            for (char *p = q + skip; nf < 16;) {
                f[nf++] = p;
                char *tab = strchr(p, '\t');
                if (!tab) break;
                *tab = '\0', p = tab + 1;
            }
            s = fn(user, f, nf, where, err);
            (*n_records)++;
            q = e + 1;
        }
        free(text);
    }
    mc_tasks_free(&tasks);
    return s;
}

static mc_status parse_f64(const char *text, const char *field, const char *where, double *out, mc_error *err) {
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end || errno || !isfinite(v))
        return MC_FAIL(err, MC_ERR_FORMAT, "%s: field '%s' is '%.40s', not a finite number", where, field, text);
    *out = v;
    return MC_OK;
}

static mc_status parse_seed(const char *text, const char *where, int64_t *out, mc_error *err) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (end == text || *end || errno || v < 0)
        return MC_FAIL(err, MC_ERR_FORMAT, "%s: field 'seed' is '%.40s', not a seed", where, text);
    *out = v;
    return MC_OK;
}

static bool is_variant(const char *s) {
    for (int v = MC_VARIANT_INOUT; v <= MC_VARIANT_OUT; v++)
        if (!strcmp(s, mc_variant_name(v))) return true;
    return false;
}

/* Describe "accuracy" records: layer, variant, set, seed, accuracy (a fraction). A method-first
 * record (method, layer, variant, set, seed, accuracy) names a baseline; a variant field that is
 * not an E_n variant names the method too. Only the `logits` layer enters Table 1. */
static mc_status accuracy_record(void *user, char **f, int nf, const char *where, mc_error *err) {
    section *t1 = user;
    const char *method = NULL, *layer, *variant, *set, *seed_s, *val_s;
    if (nf == 5) layer = f[0], variant = f[1], set = f[2], seed_s = f[3], val_s = f[4];
    else if (nf == 6) method = f[0], layer = f[1], variant = f[2], set = f[3], seed_s = f[4], val_s = f[5];
    else return MC_FAIL(err, MC_ERR_FORMAT, "%s: 'accuracy' record has %d fields, expected 5 or 6", where, nf);
    int64_t seed = 0;
    double v = 0;
    MC_TRY(parse_seed(seed_s, where, &seed, err));
    MC_TRY(parse_f64(val_s, "accuracy", where, &v, err));
    if (v < 0 || v > 1) return MC_FAIL(err, MC_ERR_FORMAT, "%s: accuracy %g is outside [0, 1]", where, v);
    if (strcmp(layer, "logits")) return MC_OK;
    char name[NAME_CAP];
    if (method && strcmp(method, "miclip"))
        mc_snprintf(name, sizeof name, "%s", method);
    else if (is_variant(variant))
        mc_snprintf(name, sizeof name, "miclip (%s)", variant);
    else
        mc_snprintf(name, sizeof name, "%s", variant);
    return section_add(t1, name, set, +1, seed, 100.0 * v, where, err);
}

/* Which way miclip should move a Delta: removing/suppressing (scale beta < 1, add beta < 0) should
 * drop more (-1), enhancing (scale beta > 1, add beta > 0) gain more (+1); an identity edit has no
 * direction (0). */
static int edit_direction(const char *mode, double beta) {
    if (!strcmp(mode, "add")) return beta > 0 ? +1 : beta < 0 ? -1 : 0;
    return beta < 1 ? -1 : beta > 1 ? +1 : 0;
}

/* Intervene "delta" records: method, mode, beta, units, dataset, seed, Delta-Acc, Delta-P,
 * other class, clean acc. */
static mc_status delta_record(void *user, char **f, int nf, const char *where, mc_error *err) {
    section *t2 = user; /* [0]: Delta-Acc, [1]: Delta-P */
    if (nf != 10) return MC_FAIL(err, MC_ERR_FORMAT, "%s: 'delta' record has %d fields, expected 10", where, nf);
    double beta = 0, dacc = 0, dp = 0;
    int64_t seed = 0;
    MC_TRY(parse_f64(f[2], "beta", where, &beta, err));
    MC_TRY(parse_seed(f[5], where, &seed, err));
    MC_TRY(parse_f64(f[6], "Delta-Acc", where, &dacc, err));
    MC_TRY(parse_f64(f[7], "Delta-P", where, &dp, err));
    if (strcmp(f[1], "scale") && strcmp(f[1], "add"))
        return MC_FAIL(err, MC_ERR_FORMAT, "%s: mode '%.40s' is neither scale nor add", where, f[1]);
    char col[NAME_CAP];
    mc_snprintf(col, sizeof col, "%s, %s %s, %s", f[3], f[1], f[2], f[4]);
    const int dir = edit_direction(f[1], beta);
    MC_TRY(section_add(&t2[0], f[0], col, dir, seed, dacc, where, err));
    return section_add(&t2[1], f[0], col, dir, seed, dp, where, err);
}

/* ---- writing the tables ---------------------------------------------------------------------- */

static void tex_escaped(mc_buf *b, const char *s) {
    for (; *s; s++) {
        if (strchr("&%$#_{}", *s)) mc_buf_printf(b, "\\%c", *s);
        else if (*s == '~') mc_buf_printf(b, "\\textasciitilde{}");
        else if (*s == '^') mc_buf_printf(b, "\\textasciicircum{}");
        else if (*s == '\\') mc_buf_printf(b, "\\textbackslash{}");
        else mc_buf_printf(b, "%c", *s);
    }
}

static void md_escaped(mc_buf *b, const char *s) {
    for (; *s; s++) mc_buf_printf(b, *s == '|' ? "\\|" : "%c", *s);
}

static const char *note_text(char note) {
    switch (note) {
    case NOTE_FEW: return "fewer than 2 seeds have values for both this method and the reference: no test";
    case NOTE_ZERO: return "every seed's difference from the reference is the same: zero variance, t undefined";
    default: return "this edit leaves the units unchanged (scale 1 or add 0): no direction to test";
    }
}

/* A mean ± std cell (std "n/a" for one seed). */
static void fmt_mean(char *out, size_t cap, const cell_stats *cs, bool tex) {
    if (cs->n == 0) mc_snprintf(out, cap, "--");
    else if (cs->n < 2) mc_snprintf(out, cap, "%.2f %s n/a", cs->mean, tex ? "$\\pm$" : "±");
    else mc_snprintf(out, cap, "%.2f %s %.2f", cs->mean, tex ? "$\\pm$" : "±", cs->sd);
}

static void fmt_test(char *out, size_t cap, const cell_stats *cs, double alpha, bool tex) {
    if (cs->n == 0) mc_snprintf(out, cap, "--");
    else if (cs->note) mc_snprintf(out, cap, tex ? "n/a$^{%c}$" : "n/a (%c)", cs->note);
    else {
        bool sig = cs->tt.p < alpha;
        if (tex)
            mc_snprintf(out, cap, "%st = %.3f, df = %.0f, p = %.3g%s", sig ? "\\textbf{" : "", cs->tt.t, cs->tt.df,
                        cs->tt.p, sig ? "}" : "");
        else
            mc_snprintf(out, cap, "%st = %.3f, df = %.0f, p = %.3g%s", sig ? "**" : "", cs->tt.t, cs->tt.df, cs->tt.p,
                        sig ? "**" : "");
    }
}

/* All cells of a section, [method * n_cols + col]. */
static mc_status section_stats(const section *s, cell_stats **out, mc_error *err) {
    *out = mc_alloc_array((size_t)s->n_methods * (size_t)s->n_cols + 1, sizeof **out);
    if (!*out) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    for (int m = 0; m < s->n_methods; m++)
        for (int k = 0; k < s->n_cols; k++) MC_TRY(cell_compute(s, m, k, &(*out)[m * s->n_cols + k], err));
    return MC_OK;
}

static const char *h1_word(int dir) { return dir > 0 ? "higher" : dir < 0 ? "lower" : "none"; }

static const char *dir_word(int dir) { return dir > 0 ? "greater" : dir < 0 ? "less" : "none"; }

static void section_md(mc_buf *b, const section *s, const cell_stats *cs, double alpha, bool *used_notes) {
    mc_buf_printf(b, "%s (%s; mean ± sample std over seeds, n - 1):\n\n| method |", s->title, s->unit);
    for (int k = 0; k < s->n_cols; k++) mc_buf_printf(b, " "), md_escaped(b, s->cols[k].name), mc_buf_printf(b, " |");
    mc_buf_printf(b, "\n|---|");
    for (int k = 0; k < s->n_cols; k++) mc_buf_printf(b, "---|");
    mc_buf_printf(b, "\n");
    char cell[160];
    for (int m = 0; m < s->n_methods; m++) {
        mc_buf_printf(b, "| "), md_escaped(b, s->methods[m]), mc_buf_printf(b, " |");
        for (int k = 0; k < s->n_cols; k++) {
            fmt_mean(cell, sizeof cell, &cs[m * s->n_cols + k], false);
            mc_buf_printf(b, " %s |", cell);
        }
        mc_buf_printf(b, "\n");
    }
    mc_buf_printf(b, "\nOne-tailed paired t-tests over seeds (pairs by seed), %s against each method; H1 (in each "
                  "column's header): %s's mean is higher or lower, whichever is better; t = mean(%s - method) / "
                  "(sd / sqrt(n)), df = n - 1; **bold**: p < %g.\n\n| method vs %s |", s->ref, s->ref, s->ref, alpha, s->ref);
    for (int k = 0; k < s->n_cols; k++)
        mc_buf_printf(b, " "), md_escaped(b, s->cols[k].name), mc_buf_printf(b, " (H1: %s) |", h1_word(s->cols[k].dir));
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
}

static void section_tex(mc_buf *b, const section *s, const cell_stats *cs, double alpha, bool *used_notes) {
    char cell[160];
    for (int part = 0; part < 2; part++) {
        mc_buf_printf(b, "%% %s (%s), %s\n\\begin{tabular}{l", s->title, s->unit,
                      part ? "one-tailed paired t-tests against the reference" : "mean $\\pm$ sample std over seeds");
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
                } else {
                    fmt_mean(cell, sizeof cell, c, true);
                }
                mc_buf_printf(b, " & %s", cell);
            }
            mc_buf_printf(b, " \\\\\n");
        }
        mc_buf_printf(b, "\\hline\n\\end{tabular}\n\n");
    }
}

static void num17(mc_buf *b, double v) {
    if (isnan(v)) mc_buf_printf(b, ",");
    else mc_buf_printf(b, ",%.17g", v);
}

static void section_csv(mc_buf *b, const char *table, const section *s, const cell_stats *cs, double alpha) {
    for (int m = 0; m < s->n_methods; m++)
        for (int k = 0; k < s->n_cols; k++) {
            const cell_stats *c = &cs[m * s->n_cols + k];
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
}

static void notes_md(mc_buf *b, const bool *used) {
    bool any = false;
    for (int i = 0; i < 3; i++)
        if (used[i]) {
            mc_buf_printf(b, "%s(%c) n/a: %s.\n", any ? "" : "\n", 'a' + i, note_text((char)('a' + i)));
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
static mc_status write_table(const mc_config *cfg, const table_spec *t, mc_buf *readme, mc_error *err) {
    mc_buf md = {0}, tex = {0}, csv = {0};
    bool notes_md_used[3] = {0}, notes_tex_used[3] = {0};
    mc_status s = MC_OK;
    mc_buf_printf(&md, "## %s\n\n%s\n\n", t->title, t->intro);
    mc_buf_printf(&tex, "%% %s (miclip report stage, experiment %s)\n%% %s\n\n", t->title, cfg->name, t->intro);
    mc_buf_printf(&csv, "table,section,unit,method,column,n,mean,std,reference,h1,pairs,t,df,p,significant,note\n");
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
    for (int i = 0; i < 3; i++)
        if (notes_tex_used[i])
            mc_buf_printf(&tex, "\\noindent $^{%c}$ n/a: %s.\\par\n", 'a' + i, note_text((char)('a' + i)));
    mc_buf_printf(&tex, "\\noindent Bold: p $<$ %g (one-tailed paired t-test over seeds).\\par\n", cfg->report.alpha);
    if (md.oom || tex.oom || csv.oom) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    for (int f = 0; f < cfg->report.formats.n && s == MC_OK; f++) {
        int fmt = cfg->report.formats.v[f];
        const mc_buf *b = fmt == MC_FORMAT_MD ? &md : fmt == MC_FORMAT_CSV ? &csv : &tex;
        const char *ext = fmt == MC_FORMAT_MD ? "md" : fmt == MC_FORMAT_CSV ? "csv" : "tex";
        char path[MC_PATH_CAP];
        mc_snprintf(path, sizeof path, "%s/report/tables/%s.%s", cfg->output_dir, t->file, ext);
        s = mc_write_text_file(path, b->p, b->n, err);
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

/* The tables (rank 0). */
static mc_status report_tables(const mc_config *cfg, mc_buf *readme, mc_error *err) {
    section t1 = {.ref = REF_T1}, t2[2] = {{.ref = REF_T2}, {.ref = REF_T2}};
    mc_snprintf(t1.title, sizeof t1.title, "Description accuracy on `logits`");
    mc_snprintf(t1.unit, sizeof t1.unit, "%%");
    mc_snprintf(t2[0].title, sizeof t2[0].title, "Delta-Acc");
    mc_snprintf(t2[0].unit, sizeof t2[0].unit, "pp");
    mc_snprintf(t2[1].title, sizeof t2[1].title, "Delta-P");
    mc_snprintf(t2[1].unit, sizeof t2[1].unit, "pp");
    mc_status s = MC_OK;
    int nr = 0;
    if (mc_config_has_stage(cfg, MC_STAGE_DESCRIBE))
        s = read_records(cfg, MC_STAGE_DESCRIBE, "descriptions", "accuracy", accuracy_record, &t1, &nr, err);
    if (s == MC_OK && mc_config_has_stage(cfg, MC_STAGE_BASELINES) && mc_stage_implemented(MC_STAGE_BASELINES))
        s = read_records(cfg, MC_STAGE_BASELINES, "baselines", "accuracy", accuracy_record, &t1, &nr, err);
    if (s == MC_OK && t1.n_recs) {
        section_order(&t1);
        table_spec ts = {
            .file = "table1_descriptions", .title = "Table 1: description accuracy on `logits`",
            .intro = "Percentage of logit neurons whose top concept is their own class, per concept set (columns), "
                     "for each method (rows; miclip's E_n variants and every baseline with records). Mean ± sample "
                     "standard deviation (n - 1) over seeds.",
            .secs = &t1, .n_secs = 1};
        s = write_table(cfg, &ts, readme, err);
    } else if (s == MC_OK) {
        mc_info0("report: no description-accuracy records on `logits` (describe %s): Table 1 omitted",
                 mc_config_has_stage(cfg, MC_STAGE_DESCRIBE) ? "wrote none" : "is not in 'stages'");
    }
    if (s == MC_OK && mc_config_has_stage(cfg, MC_STAGE_INTERVENE))
        s = read_records(cfg, MC_STAGE_INTERVENE, "interventions", "delta", delta_record, t2, &nr, err);
    if (s == MC_OK && t2[0].n_recs) {
        section_order(&t2[0]), section_order(&t2[1]);
        char intro[600];
        mc_snprintf(intro, sizeof intro,
                    "Change of the accuracy (Delta-Acc) and of the mean probability of class c (Delta-P) on the "
                    "images of class c when the top-%lld units of class c are edited at layer `%s`, in percentage "
                    "points, per (unit kind, mode beta, dataset) column and method row. Mean ± sample standard "
                    "deviation (n - 1) over seeds.",
                    (long long)cfg->intervene.tau, cfg->intervene.layer);
        table_spec ts = {.file = "table2_interventions", .title = "Table 2: interventions", .intro = intro,
                         .secs = t2, .n_secs = 2};
        s = write_table(cfg, &ts, readme, err);
    } else if (s == MC_OK) {
        mc_info0("report: no intervention records (intervene %s): Table 2 omitted",
                 mc_config_has_stage(cfg, MC_STAGE_INTERVENE) ? "wrote none" : "is not in 'stages'");
    }
    section_free(&t1), section_free(&t2[0]), section_free(&t2[1]);
    return s;
}

/* ---- figures ----------------------------------------------------------------------------------- */

typedef struct {
    int n;
    double *x[MC_PLOT_MAX_SERIES], *y[MC_PLOT_MAX_SERIES];
} series_store;

static void series_free(series_store *ss) {
    for (int i = 0; i < MC_PLOT_MAX_SERIES; i++) free(ss->x[i]), free(ss->y[i]), ss->x[i] = ss->y[i] = NULL;
    ss->n = 0;
}

/* Collective. Reads the 1-D F32 dataset name of the complete store at path into x (steps 1..n)
 * and y (malloc'd). */
static mc_status read_curve(const mc_comm *c, const mc_config *cfg, const char *path, const char *stage,
                            const char *name, double **x, double **y, int64_t *n, mc_error *err) {
    if (!mc_file_exists(path))
        return MC_FAIL(err, MC_ERR_ARG, "report: %s is missing: run the %s stage first", rel_path(cfg, path), stage);
    bool complete = false;
    MC_TRY(mc_store_peek_complete(c, path, &complete, err));
    if (!complete)
        return MC_FAIL(err, MC_ERR_ARG, "report: %s is incomplete: finish the %s stage first", rel_path(cfg, path), stage);
    mc_store *st = NULL;
    MC_TRY(mc_store_open(c, path, MC_STORE_READ, &st, err));
    mc_store_dataset_info info;
    mc_status s = mc_store_exists(st, name) ? mc_store_dataset_info_get(st, name, &info, err)
                                            : MC_FAIL(err, MC_ERR_FORMAT, "%s: no dataset '%s'", path, name);
    if (s == MC_OK && info.ndim != 1) s = MC_FAIL(err, MC_ERR_SHAPE, "%s: '%s' is not 1-D", path, name);
    s = mc_comm_agree(c, s, err);
    float *buf = NULL;
    if (s == MC_OK) {
        *n = info.shape[0];
        buf = mc_alloc_array((size_t)*n + 1, sizeof *buf);
        *x = mc_alloc_array((size_t)*n + 1, sizeof **x);
        *y = mc_alloc_array((size_t)*n + 1, sizeof **y);
        s = mc_comm_agree(c, buf && *x && *y ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory"), err);
    }
    if (s == MC_OK) s = mc_store_read_rows(st, name, MC_DTYPE_F32, 0, *n, buf, err);
    for (int64_t i = 0; s == MC_OK && i < *n; i++) (*x)[i] = (double)(i + 1), (*y)[i] = buf[i];
    free(buf);
    mc_error ce = {0};
    mc_status cs = mc_store_close(&st, &ce);
    if (s == MC_OK && cs != MC_OK) *err = ce, s = cs;
    return s;
}

/* Rank 0 writes p as figures/<stem>.<ext> in each figure format (mc_plot_write: PNG, SVG and PDF
 * from one drawing, written atomically); the status is agreed. */
static mc_status write_figure(const mc_comm *c, const mc_config *cfg, const mc_plot *p, const char *stem,
                              mc_buf *readme, mc_error *err) {
    mc_status s = MC_OK;
    if (c->rank == 0) {
        for (int f = 0; f < cfg->report.figure_formats.n && s == MC_OK; f++) {
            const int fmt = cfg->report.figure_formats.v[f];
            const char *ext = mc_plot_format_ext(fmt);
            char path[MC_PATH_CAP];
            if (!ext) s = MC_FAIL(err, MC_ERR_INTERNAL, "report.figure_formats: unknown format %d", fmt);
            else if (!mc_snprintf(path, sizeof path, "%s/report/figures/%s.%s", cfg->output_dir, stem, ext))
                s = MC_FAIL(err, MC_ERR_ARG, "report: figure path too long: %s/report/figures/%s.%s", cfg->output_dir, stem, ext);
            else s = mc_plot_write(p, fmt, path, err);
            if (s == MC_OK) mc_buf_printf(readme, "%s[%s](figures/%s.%s)", f ? " " : "- ", ext, stem, ext);
        }
        if (s == MC_OK) mc_buf_printf(readme, ": %s\n", p->title);
    }
    return mc_comm_agree(c, s, err);
}

/* Collective: loss_curves (E_n loss per (layer, variant), one line per seed) and sae_curves (SAE
 * loss and FVU, one line per seed). */
static mc_status report_figures(const mc_comm *c, const mc_config *cfg, mc_buf *readme, mc_error *err) {
    bool want_loss = false, want_sae = false;
    for (int i = 0; i < cfg->report.figures.n; i++) {
        want_loss |= cfg->report.figures.v[i] == MC_FIGURE_LOSS_CURVES;
        want_sae |= cfg->report.figures.v[i] == MC_FIGURE_SAE_CURVES;
    }
    if (want_loss && !mc_config_has_stage(cfg, MC_STAGE_ALIGN))
        mc_info0("report: loss_curves omitted: the align stage is not in 'stages'"), want_loss = false;
    if (want_sae && !mc_config_has_stage(cfg, MC_STAGE_SAE))
        mc_info0("report: sae_curves omitted: the sae stage is not in 'stages'"), want_sae = false;
    if (!want_loss && !want_sae) return MC_OK;
    const int n_seeds = cfg->seeds.n < MC_PLOT_MAX_SERIES ? cfg->seeds.n : MC_PLOT_MAX_SERIES;
    if (cfg->seeds.n > n_seeds) mc_info0("report: figures show the first %d seeds", n_seeds);
    /* The extraction key of each seed names its align and SAE stores. */
    char (*ekey)[MC_KEY_HEX] = calloc((size_t)n_seeds, sizeof *ekey);
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
            mc_snprintf(p.title, sizeof p.title, "E_n training loss: layer %s, variant %s", layer, mc_variant_name(variant));
            mc_plot_panel *pn = &p.panels[0];
            mc_snprintf(pn->xlabel, sizeof pn->xlabel, "step");
            mc_snprintf(pn->ylabel, sizeof pn->ylabel, "InfoNCE loss");
            for (int i = 0; i < n_seeds && s == MC_OK; i++) {
                mc_run_paths rp;
                int64_t n = 0;
                s = mc_align_paths(cfg, ekey[i], cfg->seeds.v[i], layer, variant, &rp, err);
                if (s == MC_OK) s = read_curve(c, cfg, rp.store, "align", "curves/loss", &ss.x[i], &ss.y[i], &n, err);
                if (s == MC_OK) {
                    mc_plot_series *se = &pn->series[pn->n_series++];
                    mc_snprintf(se->label, sizeof se->label, "seed %lld", (long long)cfg->seeds.v[i]);
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
                    mc_snprintf(se->label, sizeof se->label, "seed %lld", (long long)cfg->seeds.v[i]);
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
    return s;
}

/* ---- the stage ----------------------------------------------------------------------------------- */

mc_status mc_report_check(const mc_config *cfg, mc_error *err) {
    for (int i = 0; i < cfg->report.figures.n; i++) {
        int f = cfg->report.figures.v[i];
        if (f != MC_FIGURE_LOSS_CURVES && f != MC_FIGURE_SAE_CURVES)
            return MC_FAIL(err, MC_ERR_UNSUPPORTED,
                           "%s: report.figures: '%s' is not implemented in this build (implemented: loss_curves, "
                           "sae_curves)", cfg->source_path, f == MC_FIGURE_TSNE ? "tsne" : "attention_maps");
    }
    return MC_OK;
}

mc_status mc_stage_report(const mc_comm *c, const mc_config *cfg, const mc_task *task, mc_error *err) {
    (void)task;
    MC_TRY(mc_report_check(cfg, err));
    mc_buf readme = {0};
    /* No paths and no config hash: the same results read the same wherever the output folder is. */
    mc_buf_printf(&readme, "# Report: %s\n\nWritten by the report stage from the records of the earlier stages "
                  "(docs/report.md). Seeds:", cfg->name);
    for (int i = 0; i < cfg->seeds.n; i++) mc_buf_printf(&readme, "%s %lld", i ? "," : "", (long long)cfg->seeds.v[i]);
    mc_buf_printf(&readme, ". Every cell is the mean ± the sample standard deviation (n - 1) over seeds; each "
                  "other method is compared with miclip by a one-tailed paired t-test over seeds (pairs by seed), "
                  "bold where p < %g.\n", cfg->report.alpha);
    mc_status s = c->rank == 0 ? report_tables(cfg, &readme, err) : MC_OK;
    s = mc_comm_agree(c, s, err);
    if (s == MC_OK) s = report_figures(c, cfg, c->rank == 0 ? &readme : NULL, err);
    if (s == MC_OK) {
        mc_status ws = MC_OK;
        if (c->rank == 0) {
            char path[MC_PATH_CAP];
            mc_snprintf(path, sizeof path, "%s/report/README.md", cfg->output_dir);
            ws = readme.oom ? MC_FAIL(err, MC_ERR_NOMEM, "out of memory") : mc_write_text_file(path, readme.p, readme.n, err);
            if (ws == MC_OK) mc_info0("report: -> %s", path);
        }
        s = mc_comm_agree(c, ws, err);
    }
    mc_buf_free(&readme);
    return s;
}

/* ---- the registry entry ----------------------------------------------------------------------- */

static void report_cost(const mc_config *cfg, const mc_plan_inputs *in, mc_plan *p, mc_plan_stage *S, double *flop,
                        double *core_s, double *mem_b) {
    S->items = 1;
    mc_strlcpy(S->item_name, "report", sizeof S->item_name);
    *core_s = 60;
    mc_plan_add_store(p, S->stage, "tables/ and figures/", 1, 16.0 * 1024 * 1024);
}

const mc_stage_desc mc_report_stage = {
    .stage = MC_STAGE_REPORT,
    .summary = "the paper's tables with mean, std and paired t-tests, and the figures",
    .outputs = "report/README.md, report/tables/, report/figures/",
    .check = mc_report_check,
    .run = mc_stage_report,
    .cost = report_cost,
};
