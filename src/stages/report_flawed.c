/* report_flawed.c - the report's Figure 5, flawed reasoning (paper Section 4.6): per aligned layer,
 * the cosine of E_n(activation) with the CLIP text embeddings of an image's ground-truth label
 * and of a competing label, for the first correctly classified and the first misclassified eval
 * image, with the layer where the wrong label overtakes marked (docs/report.md).
 *
 * Inputs (read only): the eval extraction store of the first seed (images/labels, images/valid,
 * target/predictions, classes/names, acts/<layer>), E_n of (first seed, layer, first variant) for
 * every extract.layers entry, the class set's text embeddings (mc_concepts_load: the ones describe
 * and localize use). Outputs: figures/flawed_reasoning.{png,svg,pdf} and .csv. Collective; rank 0
 * writes; the same stores give the same bytes at any rank count.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "method/acts.h"
#include "method/concepts.h"
#include "method/extract_key.h"
#include "method/keys.h"
#include "method/train_data.h"
#include "method/units.h"
#include "miclip/buf.h"
#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/log.h"
#include "miclip/store.h"
#include "report_internal.h"
#include "stages_internal.h"

#define FR_MAX_LAYERS 64

/* cos(W a, t) in double: W [d x n] row-major, a [n], t [d]. */
static double en_cos(const float *W, int64_t d, int64_t n, const float *a, const float *t) {
    double zz = 0, zt = 0, tt = 0;
    for (int64_t k = 0; k < d; k++) {
        double z = 0;
        for (int64_t i = 0; i < n; i++) z += (double)W[k * n + i] * a[i];
        zz += z * z, zt += z * t[k], tt += (double)t[k] * t[k];
    }
    return zt / fmax(sqrt(zz) * sqrt(tt), 1e-12);
}

static int64_t find_class(const mc_concepts *cs, const char *name) {
    for (int64_t j = 0; j < cs->n; j++)
        if (!strcasecmp(cs->texts[j], name)) return j;
    return -1;
}

mc_status mc_report_open_eval(const mc_comm *c, const mc_config *cfg, int64_t seed,
                              const char *figure, char *epath, size_t cap, mc_store **st,
                              mc_error *err) {
    *st = NULL;
    MC_TRY(mc_extract_store_path(c, cfg, MC_SPLIT_EVAL, seed, epath, cap, err));
    bool complete = false;
    MC_TRY(mc_store_peek_complete(c, epath, &complete, err));
    if (!complete)
        return MC_FAIL(err, MC_ERR_ARG,
                       "report: %s: %s is missing or incomplete: run the extract stage first (it "
                       "extracts the eval split for this figure)",
                       figure, epath);
    return mc_store_open(c, epath, MC_STORE_READ, st, err);
}

mc_status mc_report_flawed(const mc_comm *c, const mc_config *cfg, mc_buf *readme, mc_error *err) {
    if (!mc_config_has_stage(cfg, MC_STAGE_ALIGN) || !cfg->datasets.eval.kind) {
        mc_info0("report: flawed_reasoning omitted: it needs the align stage and datasets.eval");
        return MC_OK;
    }
    const char *set = NULL;
    for (int i = 0; i < cfg->concepts.n && !set; i++)
        if (cfg->concepts.v[i].source == MC_CONCEPTS_CLASSES) set = cfg->concepts.v[i].name;
    if (!set) {
        mc_info0("report: flawed_reasoning omitted: no concept set has source 'classes'");
        return MC_OK;
    }
    const int64_t seed = cfg->seeds.v[0];
    const int variant = cfg->align.variants.v[0];
    const int L = cfg->extract.layers.n < FR_MAX_LAYERS ? cfg->extract.layers.n : FR_MAX_LAYERS;
    mc_train_data td = {0};
    bool have_td = false;
    mc_status s = mc_train_data_open(c, cfg, seed, &td, err);
    have_td = s == MC_OK;
    /* The class set's text embeddings: align.prompt filled with each class name. */
    mc_concepts *sets = NULL;
    int n_sets = 0;
    char *one[1] = {(char *)set};
    mc_str_list names = {.n = 1, .v = one};
    if (s == MC_OK) s = mc_concepts_load(c, cfg, &td, &names, &sets, &n_sets, err);
    const mc_concepts *cs = s == MC_OK && n_sets == 1 ? &sets[0] : NULL;
    if (s == MC_OK && !cs)
        s = MC_FAIL(err, MC_ERR_INTERNAL, "report: flawed_reasoning: %d concept sets for '%s'",
                    n_sets, set);
    /* The eval store (extracted when the intervene stage lists eval). */
    char epath[MC_PATH_CAP];
    mc_store *st = NULL;
    if (s == MC_OK)
        s = mc_report_open_eval(c, cfg, seed, "flawed_reasoning", epath, sizeof epath, &st, err);
    int64_t N = 0, C = 0;
    char **cls_names = NULL;
    int32_t *lab = NULL, *pred = NULL;
    uint8_t *valid = NULL;
    if (s == MC_OK) s = mc_store_read_strings(st, "classes/names", &cls_names, &C, err);
    mc_store_dataset_info info;
    if (s == MC_OK) s = mc_store_dataset_info_get(st, "images/labels", &info, err);
    if (s == MC_OK) {
        N = info.shape[0];
        lab = mc_alloc_array((size_t)N + 1, sizeof *lab);
        pred = mc_alloc_array((size_t)N + 1, sizeof *pred);
        valid = mc_alloc_array((size_t)N + 1, sizeof *valid);
        s = mc_comm_agree(
            c, lab && pred && valid ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory"), err);
    }
    if (s == MC_OK) s = mc_store_read_rows(st, "images/labels", MC_DTYPE_I32, 0, N, lab, err);
    if (s == MC_OK) s = mc_store_read_rows(st, "target/predictions", MC_DTYPE_I32, 0, N, pred, err);
    if (s == MC_OK) s = mc_store_read_rows(st, "images/valid", MC_DTYPE_U8, 0, N, valid, err);
    /* The two images, in index order: the first whose prediction names its class, the first whose
     * prediction names another class of the set (a target label is the set's text of that index). */
    int64_t img[2] = {-1, -1}, tru[2] = {-1, -1}, other[2] = {-1, -1};
    for (int64_t i = 0; s == MC_OK && i < N; i++) {
        if (!valid[i] || lab[i] < 0 || lab[i] >= C || pred[i] < 0 || pred[i] >= cs->n) continue;
        const int64_t t = find_class(cs, cls_names[lab[i]]);
        if (t < 0) continue;
        const int k = t == pred[i] ? 0 : 1;
        if (img[k] < 0) img[k] = i, tru[k] = t, other[k] = pred[i];
    }
    /* Per layer: cos(E_n a, t) for the ground truth and the competing label; for the correct image
     * the competitor is the class (not its own) closest at the last layer, chosen after the pass. */
    double cos_t[2][FR_MAX_LAYERS], cos_o[2][FR_MAX_LAYERS];
    double *cos_all = NULL; /* the correct image's cosine with every class at each layer [L * n] */
    if (s == MC_OK && img[0] >= 0) {
        cos_all = mc_alloc_array((size_t)(L * cs->n), sizeof *cos_all);
        s = mc_comm_agree(c, cos_all ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory"), err);
    }
    for (int l = 0; s == MC_OK && l < L; l++) {
        const char *layer = cfg->extract.layers.v[l];
        mc_encoder_weights w = {0};
        mc_acts a = {0};
        s = mc_encoder_weights_load(c, cfg, &td, seed, layer, variant, &w, err);
        bool have_w = s == MC_OK, have_a = false;
        if (s == MC_OK) s = mc_acts_open(c, st, layer, &a, err), have_a = s == MC_OK;
        if (s == MC_OK && (a.dim != w.n || cs->dim != w.d))
            s = MC_FAIL(err, MC_ERR_SHAPE,
                        "report: flawed_reasoning: layer %s: E_n is %lld x %lld, activations %lld "
                        "wide, text embeddings %lld",
                        layer, (long long)w.d, (long long)w.n, (long long)a.dim,
                        (long long)cs->dim);
        float *v = s == MC_OK ? mc_alloc_array((size_t)a.dim, sizeof *v) : NULL;
        if (s == MC_OK && !v) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        for (int k = 0; s == MC_OK && k < 2; k++) {
            if (img[k] < 0) continue;
            s = mc_acts_vectors(&a, &img[k], 1, v, err);
            if (s != MC_OK) break;
            cos_t[k][l] = en_cos(w.w, w.d, w.n, v, cs->emb + tru[k] * cs->dim);
            if (k == 1) cos_o[k][l] = en_cos(w.w, w.d, w.n, v, cs->emb + other[k] * cs->dim);
            for (int64_t j = 0; k == 0 && j < cs->n; j++)
                cos_all[l * cs->n + j] = en_cos(w.w, w.d, w.n, v, cs->emb + j * cs->dim);
        }
        free(v);
        s = mc_comm_agree(c, s, err);
        if (have_a) mc_acts_close(&a);
        if (have_w) mc_encoder_weights_free(&w);
    }
    if (s == MC_OK && img[0] >= 0) {
        other[0] = -1;
        for (int64_t j = 0; j < cs->n; j++)
            if (j != tru[0] && (other[0] < 0 ||
                                cos_all[(L - 1) * cs->n + j] > cos_all[(L - 1) * cs->n + other[0]]))
                other[0] = j;
        for (int l = 0; l < L && other[0] >= 0; l++) cos_o[0][l] = cos_all[l * cs->n + other[0]];
    }
    if (s == MC_OK && (img[0] < 0 || img[1] < 0 || other[0] < 0))
        mc_info0("report: flawed_reasoning: the eval images hold %s",
                 img[1] < 0 ? "no misclassified image (its panel "
                              "is empty)"
                            : "no correctly classified image (its panel is empty)");

    if (s == MC_OK && c->rank == 0) {
        mc_plot p = {.n_panels = 2};
        mc_snprintf(p.title, sizeof p.title,
                    "Flawed reasoning: E_n(activation) vs label text per layer (seed %lld, %s)",
                    (long long)seed, mc_variant_name(variant));
        double xs[FR_MAX_LAYERS];
        for (int l = 0; l < L; l++) xs[l] = l + 1;
        mc_buf csv = {0}, lay = {0};
        mc_buf_printf(&csv, "panel,image,layer_index,layer,label,class,cosine\n");
        for (int l = 0; l < L; l++)
            mc_buf_printf(&lay, "%s%d = %s", l ? ", " : "", l + 1, cfg->extract.layers.v[l]);
        static const char *panel_name[2] = {"correct", "misclassified"};
        for (int k = 0; k < 2; k++) {
            mc_plot_panel *pn = &p.panels[k];
            pn->yscale = MC_PLOT_Y_LINEAR;
            mc_snprintf(pn->xlabel, sizeof pn->xlabel, "layer (%s)", lay.oom ? "" : lay.p);
            mc_snprintf(pn->ylabel, sizeof pn->ylabel, "cosine with the label's text");
            if (img[k] < 0 || other[k] < 0) {
                mc_snprintf(pn->title, sizeof pn->title, "%s: no such eval image", panel_name[k]);
                continue;
            }
            mc_snprintf(pn->title, sizeof pn->title, "%s: eval image %lld", panel_name[k],
                        (long long)img[k]);
            const char *lk[2] = {"ground truth", k == 0 ? "closest other" : "predicted"};
            const int64_t ci[2] = {tru[k], other[k]};
            const double *yv[2] = {cos_t[k], cos_o[k]};
            for (int q = 0; q < 2; q++) {
                mc_plot_series *se = &pn->series[pn->n_series++];
                mc_snprintf(se->label, sizeof se->label, "%s: %s", lk[q], cs->texts[ci[q]]);
                se->x = xs, se->y = yv[q], se->n = L;
                for (int l = 0; l < L; l++) {
                    mc_buf_printf(&csv, "%s,%lld,%d,", panel_name[k], (long long)img[k], l + 1);
                    mc_buf_csv(&csv, cfg->extract.layers.v[l]);
                    mc_buf_printf(&csv, ",%s,",
                                  q ? (k ? "predicted" : "closest_other") : "ground_truth");
                    mc_buf_csv(&csv, cs->texts[ci[q]]);
                    mc_buf_printf(&csv, ",%.17g\n", yv[q][l]);
                }
            }
            /* The first layer where the competing label's cosine exceeds the ground truth's. */
            for (int l = 0; l < L; l++)
                if (cos_o[k][l] > cos_t[k][l]) {
                    pn->n_markers = 1;
                    pn->markers[0].x = l + 1;
                    mc_snprintf(pn->markers[0].label, sizeof pn->markers[0].label, "%s overtakes",
                                k ? "wrong label" : "other label");
                    break;
                }
            if (!pn->n_markers) {
                const size_t at = strlen(pn->title);
                mc_snprintf(pn->title + at, sizeof pn->title - at, " (never overtaken)");
            }
        }
        char cpath[MC_PATH_CAP];
        mc_snprintf(cpath, sizeof cpath, "%s/report/figures/flawed_reasoning.csv", cfg->output_dir);
        s = csv.oom || lay.oom ? MC_FAIL(err, MC_ERR_NOMEM, "out of memory")
                               : mc_write_text_file_if_changed(cpath, csv.p, csv.n, err);
        if (s == MC_OK) s = mc_report_write_figure_local(cfg, &p, "flawed_reasoning", readme, err);
        if (s == MC_OK) mc_buf_printf(readme, "  (values: [csv](figures/flawed_reasoning.csv))\n");
        mc_buf_free(&csv), mc_buf_free(&lay);
    }
    s = mc_comm_agree(c, s, err);
    free(cos_all), free(lab), free(pred), free(valid);
    if (cls_names) mc_strings_free(&cls_names, C);
    if (st) mc_store_close(&st, NULL);
    mc_concepts_free(&sets, n_sets);
    if (have_td) mc_train_data_close(&td);
    return s;
}
