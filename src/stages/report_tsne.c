/* report_tsne.c - the report's Figure 3: the SAE features MiCLIP localizes for the classes,
 * embedded through E_n and laid out in 2-D by t-SNE (src/method/tsne.c), coloured by the class's
 * colour (the tiny world's coarse category; docs/report.md).
 *
 * Inputs (read only): the localize store of (first seed, sae.layer, first align variant), found
 * through its task index entry; its <set>/concepts and <set>/sae/top_units of the first concept
 * set whose source is `classes`; E_n of that align store and the SAE's W_dec (the unit
 * embedding localize read). Outputs: figures/tsne_sae-l<layer>.{png,svg,pdf}, .csv (the points)
 * and -input.csv (the t-SNE's input rows).
 * Collective; rank 0 writes. The same stores give the same bytes at any rank count.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "method/keys.h"
#include "method/task_index.h"
#include "method/train_data.h"
#include "method/tsne.h"
#include "method/units.h"
#include "miclip/buf.h"
#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/log.h"
#include "miclip/store.h"
#include "miclip/world.h"
#include "report_internal.h"
#include "stages_internal.h"

/* The world's coarse category of a class name: its colour ("red circle" -> red), the first of
 * the taxonomy's two axes (colour x shape). -1 when the name starts with no world colour. */
static int class_colour(const char *name) {
    for (int i = 0; i < MC_WORLD_NUM_COLOURS; i++) {
        const char *cn = mc_world_colour_name(i);
        size_t n = strlen(cn);
        if (!strncmp(name, cn, n) && (name[n] == ' ' || name[n] == '_')) return i;
    }
    return -1;
}

mc_status mc_report_read_localized(const mc_comm *c, const char *path, const char *set,
                                   char ***names, int64_t *C, int32_t **top, float **score,
                                   int64_t *tau, mc_error *err) {
    mc_store *st = NULL;
    MC_TRY(mc_store_open(c, path, MC_STORE_READ, &st, err));
    char g[300], ds[320];
    mc_snprintf(g, sizeof g, "%s/concepts", set);
    mc_status s = mc_store_read_strings(st, g, names, C, err);
    mc_snprintf(ds, sizeof ds, "%s/sae/top_units", set);
    mc_store_dataset_info info;
    if (s == MC_OK && !mc_store_exists(st, ds))
        s = MC_FAIL(err, MC_ERR_FORMAT, "%s: no dataset '%s' (localize.units must include sae)",
                    path, ds);
    if (s == MC_OK) s = mc_store_dataset_info_get(st, ds, &info, err);
    if (s == MC_OK && (info.ndim != 2 || info.shape[0] != *C || info.shape[1] < 1))
        s = MC_FAIL(err, MC_ERR_SHAPE, "%s: '%s' is not [%lld x tau]", path, ds, (long long)*C);
    if (s == MC_OK) {
        *tau = info.shape[1];
        *top = mc_alloc_array((size_t)(*C * *tau), sizeof **top);
        *score = mc_alloc_array((size_t)(*C * *tau), sizeof **score);
        if (!*top || !*score) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    s = mc_comm_agree(c, s, err);
    if (s == MC_OK) s = mc_store_read_rows(st, ds, MC_DTYPE_I32, 0, *C, *top, err);
    mc_snprintf(ds, sizeof ds, "%s/sae/top_scores", set);
    if (s == MC_OK) s = mc_store_read_rows(st, ds, MC_DTYPE_F32, 0, *C, *score, err);
    mc_store_close(&st, NULL);
    return s;
}

mc_status mc_report_tsne(const mc_comm *c, const mc_config *cfg, mc_buf *readme, mc_error *err) {
    if (!mc_config_has_stage(cfg, MC_STAGE_LOCALIZE) || !cfg->sae.layer) {
        mc_info0("report: tsne omitted: the localize stage is not in 'stages'");
        return MC_OK;
    }
    const char *set = NULL;
    for (int i = 0; i < cfg->concepts.n && !set; i++)
        if (cfg->concepts.v[i].source == MC_CONCEPTS_CLASSES) set = cfg->concepts.v[i].name;
    if (!set) {
        mc_info0("report: tsne omitted: no concept set has source 'classes'");
        return MC_OK;
    }
    const int64_t seed = cfg->seeds.v[0];
    const int variant = cfg->align.variants.v[0];
    mc_task *tasks = NULL;
    int nt = 0;
    MC_TRY(mc_config_tasks(cfg, MC_STAGE_LOCALIZE, &tasks, &nt, err));
    const mc_task *task = NULL;
    for (int t = 0; t < nt && !task; t++)
        if (tasks[t].seed == seed && !strcmp(tasks[t].layer, cfg->sae.layer) &&
            tasks[t].variant == variant && tasks[t].reading < 0)
            task = &tasks[t];
    char path[MC_PATH_CAP], key[MC_KEY_HEX];
    mc_status s = task ? MC_OK
                       : MC_FAIL(err, MC_ERR_ARG,
                                 "report: tsne: localize has no task for seed %lld, layer %s "
                                 "(sae.layer must be among extract.layers)",
                                 (long long)seed, cfg->sae.layer);
    if (s == MC_OK)
        s = mc_comm_agree(
            c, mc_task_index_find(cfg, MC_STAGE_LOCALIZE, task, path, sizeof path, key, err), err);
    bool complete = false;
    if (s == MC_OK) s = mc_store_peek_complete(c, path, &complete, err);
    if (s == MC_OK && !complete)
        s = MC_FAIL(err, MC_ERR_ARG,
                    "report: %s is missing or incomplete: rerun the localize stage (task %s)", path,
                    task->id);
    char **names = NULL;
    int64_t C = 0, tau = 0;
    int32_t *top = NULL;
    float *score = NULL;
    if (s == MC_OK) s = mc_report_read_localized(c, path, set, &names, &C, &top, &score, &tau, err);

    /* The unit embedding localize ranked by, for every SAE feature (every rank computes all). */
    mc_train_data td = {0};
    mc_encoder_weights w = {0};
    mc_unit_set u = {0};
    bool have_td = false, have_w = false, have_u = false;
    if (s == MC_OK) s = mc_train_data_open(c, cfg, seed, &td, err), have_td = s == MC_OK;
    if (s == MC_OK)
        s = mc_encoder_weights_load(c, cfg, &td, seed, cfg->sae.layer, variant, &w, err),
        have_w = s == MC_OK;
    if (s == MC_OK)
        s = mc_unit_set_open(c, cfg, &td, seed, cfg->sae.layer, &w, MC_UNIT_SAE, &u, err),
        have_u = s == MC_OK;
    const int64_t U = have_u ? u.n_units : 0, d = have_w ? w.d : 0;
    float *p = NULL;
    if (s == MC_OK) {
        p = mc_alloc_array((size_t)U, (size_t)d * sizeof *p);
        s = mc_comm_agree(c, p ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory"), err);
    }
    if (s == MC_OK) s = mc_unit_embed(c, &u, &w, 0, U, false, p, err);

    /* The points: each feature once (in order of first appearance, class by class then rank),
     * labelled by the class whose list gives it the highest cosine (ties: the earlier class), not
     * the first class listing it, which would favour the classes early in the class order. */
    int32_t *feat = NULL, *cls = NULL;
    float *best = NULL;
    int64_t n = 0;
    if (s == MC_OK) {
        feat = mc_alloc_array((size_t)(C * tau), sizeof *feat);
        cls = mc_alloc_array((size_t)(C * tau), sizeof *cls);
        best = mc_alloc_array((size_t)(C * tau), sizeof *best);
        if (!feat || !cls || !best) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    for (int64_t j = 0; s == MC_OK && j < C; j++)
        for (int64_t q = 0; s == MC_OK && q < tau; q++) {
            int32_t f = top[j * tau + q];
            if (f < 0 || f >= U) {
                s = MC_FAIL(err, MC_ERR_FORMAT, "%s: %s/sae/top_units holds unit %d of %lld", path,
                            set, f, (long long)U);
                break;
            }
            const float sc = score[j * tau + q];
            int64_t k = 0;
            while (k < n && feat[k] != f) k++;
            if (k == n)
                feat[n] = f, cls[n] = (int32_t)j, best[n] = sc, n++;
            else if (sc > best[k])
                cls[k] = (int32_t)j, best[k] = sc;
        }
    s = mc_comm_agree(c, s, err);
    const bool few = s == MC_OK && n < 4;
    if (few) mc_info0("report: tsne omitted: only %lld distinct features localized", (long long)n);
    /* x: the INPUTS reading's g p_i + q (g the feature's mean code over all training images, or
     * over its class's when localize.sae_inputs is class), the plain p_i otherwise; then
     * L2-normalised, so euclidean t-SNE distances follow the cosine localize ranks by. */
    float *x = NULL;
    double *y = NULL;
    if (s == MC_OK && !few) {
        x = mc_alloc_array((size_t)n, (size_t)d * sizeof *x);
        y = mc_alloc_array((size_t)n * 2, sizeof *y);
        s = mc_comm_agree(c, x && y ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory"), err);
    }
    for (int64_t i = 0; s == MC_OK && !few && i < n; i++) {
        const float *pi = p + (int64_t)feat[i] * d;
        double g = 1;
        if (u.reading == MC_READ_INPUTS) {
            int64_t cc = -1;
            if (u.inputs == MC_INPUTS_CLASS)
                for (int64_t k = 0; k < u.n_classes && cc < 0; k++)
                    if (!strcasecmp(u.class_names[k], names[cls[i]])) cc = k;
            g = cc >= 0 ? u.g_class[cc * U + feat[i]] : u.g_all[feat[i]];
            if (isnan(g)) g = u.g_all[feat[i]];
        }
        for (int64_t k = 0; k < d; k++)
            x[i * d + k] =
                (float)(g * pi[k] + (u.reading == MC_READ_INPUTS && u.q ? (double)u.q[k] : 0.0));
    }
    if (s == MC_OK && !few) mc_normalize_rows_f(x, n, d);
    /* sklearn's defaults (exact gradient: n is small), seeded by the first seed; the perplexity
     * 30 lowered to (n - 1) / 3 when there are fewer than 91 points (sklearn needs perplexity < n). */
    mc_tsne_config tc = mc_tsne_defaults();
    tc.method = MC_TSNE_EXACT;
    tc.seed = (uint64_t)seed;
    if (tc.perplexity > (double)(n - 1) / 3) tc.perplexity = (double)(n - 1) / 3;
    double kl = 0;
    int iters = 0;
    if (s == MC_OK && !few) s = mc_comm_agree(c, mc_tsne(x, n, d, &tc, y, &kl, &iters, err), err);

    if (s == MC_OK && !few && c->rank == 0) {
        /* One scatter series per colour present, in the world's colour order; "other" last. */
        mc_plot p2 = {.n_panels = 1};
        char tag[256];
        mc_layer_tag(cfg->sae.layer, tag, sizeof tag);
        mc_snprintf(p2.title, sizeof p2.title,
                    "t-SNE of the SAE features localized for the classes: layer %s, seed %lld",
                    cfg->sae.layer, (long long)seed);
        mc_plot_panel *pn = &p2.panels[0];
        mc_snprintf(pn->title, sizeof pn->title,
                    "%lld features (top %lld per class), coloured by the class's colour",
                    (long long)n, (long long)tau);
        mc_snprintf(pn->xlabel, sizeof pn->xlabel, "t-SNE 1");
        mc_snprintf(pn->ylabel, sizeof pn->ylabel, "t-SNE 2");
        pn->yscale = MC_PLOT_Y_LINEAR;
        double *sx = mc_alloc_array((size_t)n, sizeof *sx),
               *sy = mc_alloc_array((size_t)n, sizeof *sy);
        int *cat = mc_alloc_array((size_t)n, sizeof *cat);
        mc_buf csv = {0};
        if (!sx || !sy || !cat) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        for (int64_t i = 0; s == MC_OK && i < n; i++) {
            int k = class_colour(names[cls[i]]);
            cat[i] = k < 0 ? MC_WORLD_NUM_COLOURS : k;
        }
        mc_buf_printf(&csv, "feature,class,category,x,y\n");
        int64_t off = 0;
        for (int k = 0; s == MC_OK && k <= MC_WORLD_NUM_COLOURS; k++) {
            int64_t n0 = off;
            for (int64_t i = 0; i < n; i++)
                if (cat[i] == k) {
                    sx[off] = y[2 * i], sy[off] = y[2 * i + 1], off++;
                    mc_buf_printf(&csv, "%d,", feat[i]);
                    mc_buf_csv(&csv, names[cls[i]]);
                    mc_buf_printf(&csv, ",%s,%.17g,%.17g\n",
                                  k < MC_WORLD_NUM_COLOURS ? mc_world_colour_name(k) : "other",
                                  y[2 * i], y[2 * i + 1]);
                }
            if (off == n0) continue;
            mc_plot_series *se = &pn->series[pn->n_series++];
            mc_snprintf(se->label, sizeof se->label, "%s",
                        k < MC_WORLD_NUM_COLOURS ? mc_world_colour_name(k) : "other");
            se->x = sx + n0, se->y = sy + n0, se->n = off - n0, se->points = true;
            /* Each colour drawn in the world's own hue, a light one (yellow) darkened to luma 0.75
             * so it reads on white. */
            double rgb[3];
            if (mc_world_colour_rgb(k, rgb)) {
                const double luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2];
                const double dim = luma > 0.75 ? 0.75 / luma : 1.0;
                se->own_rgb = true;
                for (int q = 0; q < 3; q++) se->rgb[q] = (uint8_t)lround(255 * rgb[q] * dim);
            }
        }
        char stem[400], cpath[MC_PATH_CAP];
        mc_snprintf(stem, sizeof stem, "tsne_sae-l%s", tag);
        mc_snprintf(cpath, sizeof cpath, "%s/report/figures/%s.csv", cfg->output_dir, stem);
        if (s == MC_OK && !few)
            s = csv.oom ? MC_FAIL(err, MC_ERR_NOMEM, "out of memory")
                        : mc_write_text_file_if_changed(cpath, csv.p, csv.n, err);
        /* The t-SNE's input rows, %.9g (float32 round-trips), so a reader can rerun the layout. */
        mc_buf in = {0};
        mc_buf_printf(&in, "feature");
        for (int64_t k = 0; k < d; k++) mc_buf_printf(&in, ",e%lld", (long long)k);
        mc_buf_printf(&in, "\n");
        for (int64_t i = 0; i < n; i++) {
            mc_buf_printf(&in, "%d", feat[i]);
            for (int64_t k = 0; k < d; k++) mc_buf_printf(&in, ",%.9g", (double)x[i * d + k]);
            mc_buf_printf(&in, "\n");
        }
        mc_snprintf(cpath, sizeof cpath, "%s/report/figures/%s-input.csv", cfg->output_dir, stem);
        if (s == MC_OK && !few)
            s = in.oom ? MC_FAIL(err, MC_ERR_NOMEM, "out of memory")
                       : mc_write_text_file_if_changed(cpath, in.p, in.n, err);
        mc_buf_free(&in);
        if (s == MC_OK && !few) s = mc_report_write_figure_local(cfg, &p2, stem, readme, err);
        if (s == MC_OK && !few)
            mc_buf_printf(readme,
                          "  (points: [csv](figures/%s.csv), input rows: "
                          "[csv](figures/%s-input.csv); t-SNE exact, perplexity %g, KL %.4f "
                          "after %d steps)\n",
                          stem, stem, tc.perplexity, kl, iters);
        mc_buf_free(&csv);
        free(sx), free(sy), free(cat);
    }
    s = mc_comm_agree(c, s, err);
    free(x), free(y);
    free(p), free(feat), free(cls), free(best), free(top), free(score);
    if (names) mc_strings_free(&names, C);
    if (have_u) mc_unit_set_free(&u);
    if (have_w) mc_encoder_weights_free(&w);
    if (have_td) mc_train_data_close(&td);
    mc_tasks_free(&tasks);
    return s;
}
