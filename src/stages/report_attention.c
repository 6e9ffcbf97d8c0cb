/* report_attention.c - the report's Figures 4 and 6, feature-conditioned attention maps (paper
 * Section 4.4 Analysis 5, Section 4.7 Analysis 7, Appendix D.2.2; docs/report.md).
 *
 * For an image and a set F of SAE features at sae.layer (= l, the residual stream after block l):
 * the target runs to layer l; each patch token a_p (tokens 1..T-1) is replaced by the SAE
 * reconstruction from F alone, a~_p = b_pre + sum_{i in F} z_p,i W_dec[:, i], z_p the SAE's top-k
 * code of a_p (Eq. 12-14); the CLS token is left as it was. Block l + 1 then runs on that state
 * and its attention gives the map: per head h, the CLS row's weights over the patch keys,
 * renormalised to sum 1 over the patches (softmax(q_CLS K_patches / sqrt(d_k)), Eq. 15), averaged
 * over the heads and laid out on the patch grid.
 *   Figure 4: F = the localize store's top units of report.attention_class (default: the first
 *             class of the `classes` set, the paper's "kit fox"), on the first
 *             report.attention_images valid eval images of that class, in index order.
 *   Figure 6: F = the one SAE feature whose top description (describe store, first seed and
 *             variant, any concept set) is report.attention_concept, the highest-scoring such
 *             feature (ties: the lowest index); the images are its top report.attention_images
 *             valid eval images by its top-k code of the eval store's pooled vector.
 * The paper's Figure 6 uses an early layer (3 of 12); miclip has one SAE (sae.layer), so both
 * figures use it.
 *
 * Inputs (read only): the localize and describe stores of (first seed, sae.layer, first variant),
 * the SAE, the eval extraction store (labels, valid, paths, acts/<sae.layer>), the target model
 * and the images (read back from the dataset by the store's paths). Outputs:
 * figures/attention_maps_class.{png,svg,pdf}, attention_maps_concept.* and attention_maps.csv
 * (every map's values). Collective: every rank reads the stores; rank 0 alone runs the model and
 * writes, so any rank count gives the same bytes.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "method/acts.h"
#include "method/extract_key.h"
#include "method/keys.h"
#include "method/task_index.h"
#include "method/train_data.h"
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

#define AM_MAX_IMAGES 64 /* the schema's bound on report.attention_images */
#define AM_TILE 128      /* px per grid tile */

/* One figure: its images (eval indices), the kept features and the maps [n, P]. */
typedef struct {
    const char *stem, *what; /* "class" / "concept"; the title's subject */
    char subject[160];
    int32_t *feat;
    int n_feat;
    int n;
    int64_t img[AM_MAX_IMAGES];
    float score[AM_MAX_IMAGES]; /* Figure 6: the feature's code on the image */
    double *map;                /* [n, P] */
} am_fig;

/* The forward's hooks: the WRITE hook at sae.layer keeps F on the patch tokens; the ATTN hook of
 * the next block takes the CLS row and stops the forward. */
typedef struct {
    mc_sae *sae;
    const int32_t *feat;
    int n_feat, k;
    int64_t D;
    int32_t *idx;
    float *val;
    double *map; /* [P] out */
    bool seen;
} am_hooks;

static bool is_kept(const am_hooks *h, int32_t i) {
    for (int j = 0; j < h->n_feat; j++)
        if (h->feat[j] == i) return true;
    return false;
}

static bool keep_features(const mc_hook_view *v, void *user) {
    am_hooks *h = user;
    const int64_t B = v->shape[0], T = v->shape[1], D = v->shape[2];
    const float *wdt = mc_sae_w_dec_t(h->sae), *bpre = mc_sae_b_pre(h->sae);
    for (int64_t b = 0; b < B; b++) {
        float *pat = v->data + (b * T + 1) * D; /* tokens 1..T-1; the CLS (token 0) stays */
        mc_sae_encode(h->sae, pat, T - 1, h->idx, h->val);
        for (int64_t p = 0; p < T - 1; p++) {
            float *x = pat + p * D;
            memcpy(x, bpre, (size_t)D * sizeof *x);
            for (int j = 0; j < h->k; j++) {
                const int32_t i = h->idx[p * h->k + j];
                const float z = h->val[p * h->k + j];
                if (z == 0 || !is_kept(h, i)) continue;
                for (int64_t e = 0; e < D; e++) x[e] += z * wdt[(int64_t)i * D + e];
            }
        }
    }
    return true;
}

static bool cls_attention(const mc_hook_view *v, void *user) {
    am_hooks *h = user;
    const int64_t H = v->shape[1], T = v->shape[2]; /* one image: [1, H, T, T] */
    for (int64_t p = 0; p < T - 1; p++) h->map[p] = 0;
    for (int64_t hd = 0; hd < H; hd++) {
        const float *row = v->data + hd * T * T; /* query 0 (CLS) of head hd */
        double z = 0;
        for (int64_t j = 1; j < T; j++) z += row[j];
        for (int64_t j = 1; j < T; j++) h->map[j - 1] += z > 0 ? row[j] / z : 0;
    }
    for (int64_t p = 0; p < T - 1; p++) h->map[p] /= (double)H;
    h->seen = true;
    return false; /* nothing after this block is needed */
}

/* The store of a (seed, sae.layer, variant) task of stage, found through the task index. */
static mc_status task_store(const mc_comm *c, const mc_config *cfg, int stage, char *path,
                            mc_error *err) {
    mc_task *tasks = NULL;
    int nt = 0;
    MC_TRY(mc_config_tasks(cfg, stage, &tasks, &nt, err));
    const mc_task *task = NULL;
    for (int t = 0; t < nt && !task; t++)
        if (tasks[t].seed == cfg->seeds.v[0] && tasks[t].layer &&
            !strcmp(tasks[t].layer, cfg->sae.layer) &&
            tasks[t].variant == cfg->align.variants.v[0] && tasks[t].reading < 0)
            task = &tasks[t];
    char key[MC_KEY_HEX];
    mc_status s = task ? MC_OK
                       : MC_FAIL(err, MC_ERR_ARG,
                                 "report: attention_maps: %s has no task for seed %lld, layer %s",
                                 mc_stage_name(stage), (long long)cfg->seeds.v[0], cfg->sae.layer);
    if (s == MC_OK)
        s = mc_comm_agree(c, mc_task_index_find(cfg, stage, task, path, MC_PATH_CAP, key, err),
                          err);
    bool complete = false;
    if (s == MC_OK) s = mc_store_peek_complete(c, path, &complete, err);
    if (s == MC_OK && !complete)
        s = MC_FAIL(err, MC_ERR_ARG, "report: %s is missing or incomplete: rerun the %s stage",
                    path, mc_stage_name(stage));
    mc_tasks_free(&tasks);
    return s;
}

/* Collective. Figure 6's feature: the highest top-1 score among the SAE features whose top
 * description is `concept` in any concept set of the describe store (-1: none). */
static mc_status concept_feature(const mc_comm *c, const mc_config *cfg, const char *concept,
                                 int32_t *feat, float *best, char *set_out, mc_error *err) {
    char path[MC_PATH_CAP];
    MC_TRY(task_store(c, cfg, MC_STAGE_DESCRIBE, path, err));
    mc_store *st = NULL;
    MC_TRY(mc_store_open(c, path, MC_STORE_READ, &st, err));
    mc_status s = MC_OK;
    *feat = -1, *best = -INFINITY;
    for (int i = 0; s == MC_OK && i < cfg->concepts.n; i++) {
        const char *set = cfg->concepts.v[i].name;
        char g[300];
        mc_snprintf(g, sizeof g, "%s/sae/top_concepts", set);
        if (!mc_store_exists(st, g)) continue;
        mc_store_dataset_info info;
        s = mc_store_dataset_info_get(st, g, &info, err);
        if (s == MC_OK && (info.ndim != 2 || info.shape[1] < 1))
            s = MC_FAIL(err, MC_ERR_SHAPE, "%s: %s is not [units, tau]", path, g);
        const int64_t U = s == MC_OK ? info.shape[0] : 0, tau = s == MC_OK ? info.shape[1] : 0;
        int32_t *top = s == MC_OK ? mc_alloc_array((size_t)(U * tau), sizeof *top) : NULL;
        float *sc = s == MC_OK ? mc_alloc_array((size_t)(U * tau), sizeof *sc) : NULL;
        if (s == MC_OK && (!top || !sc)) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        s = mc_comm_agree(c, s, err);
        if (s == MC_OK) s = mc_store_read_rows(st, g, MC_DTYPE_I32, 0, U, top, err);
        mc_snprintf(g, sizeof g, "%s/sae/top_scores", set);
        if (s == MC_OK) s = mc_store_read_rows(st, g, MC_DTYPE_F32, 0, U, sc, err);
        char **con = NULL;
        int64_t n_con = 0;
        mc_snprintf(g, sizeof g, "%s/concepts", set);
        if (s == MC_OK) s = mc_store_read_strings(st, g, &con, &n_con, err);
        for (int64_t u = 0; s == MC_OK && u < U; u++) {
            const int32_t t = top[u * tau];
            if (t >= 0 && t < n_con && !strcasecmp(con[t], concept) && sc[u * tau] > *best)
                *feat = (int32_t)u, *best = sc[u * tau], mc_strlcpy(set_out, set, 128);
        }
        if (con) mc_strings_free(&con, n_con);
        free(top), free(sc);
    }
    mc_store_close(&st, NULL);
    return s;
}

/* Local (rank 0). Each image of f: load, preprocess as the target does, run with the hooks. */
static mc_status run_maps(const mc_config *cfg, mc_model *m, const mc_preproc *pp, mc_sae *sae,
                          char **paths, int block, am_fig *f, int64_t P, mc_error *err) {
    const mc_sae_config *sc = mc_sae_get_config(sae);
    am_hooks h = {.sae = sae, .feat = f->feat, .n_feat = f->n_feat, .k = sc->k, .D = sc->n};
    h.idx = mc_alloc_array((size_t)(P * sc->k), sizeof *h.idx);
    h.val = mc_alloc_array((size_t)(P * sc->k), sizeof *h.val);
    f->map = mc_alloc_array((size_t)(f->n * P) + 1, sizeof *f->map);
    mc_status s = h.idx && h.val && f->map ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    char bname[32];
    mc_snprintf(bname, sizeof bname, "%d", block);
    const mc_hook hooks[2] = {{cfg->sae.layer, MC_HOOK_WRITE, keep_features, &h},
                              {bname, MC_HOOK_ATTN, cls_attention, &h}};
    const mc_forward_opts opts = {.hooks = hooks, .n_hooks = 2};
    for (int j = 0; s == MC_OK && j < f->n; j++) {
        mc_image img = {0};
        int oh = 0, ow = 0;
        s = mc_image_load(paths[f->img[j]], NULL, &img, err);
        if (s == MC_OK) s = mc_preproc_output_size(pp, img.w, img.h, &oh, &ow, err);
        float *px = s == MC_OK ? mc_alloc_array((size_t)(3 * oh * ow), sizeof *px) : NULL;
        if (s == MC_OK && !px) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        if (s == MC_OK) s = mc_preprocess(pp, &img, px, NULL, err);
        mc_image_free(&img);
        h.map = f->map + (size_t)j * P, h.seen = false;
        bool stopped = false;
        if (s == MC_OK) s = mc_model_forward(m, px, 1, oh, ow, &opts, NULL, &stopped, err);
        if (s == MC_OK && !h.seen)
            s = MC_FAIL(err, MC_ERR_INTERNAL, "report: attention_maps: block %s gave no attention",
                        bname);
        free(px);
    }
    free(h.idx), free(h.val);
    return s;
}

/* Local (rank 0). The grid of f's images with their maps, in every figure format. */
static mc_status draw(const mc_config *cfg, const mc_preproc *pp, char **paths, char **cls_names,
                      const int32_t *lab, const am_fig *f, int64_t P, int64_t g, int block,
                      mc_buf *readme, mc_error *err) {
    mc_grid_tile tiles[AM_MAX_IMAGES];
    uint8_t *pix[AM_MAX_IMAGES] = {0};
    float *heat = mc_alloc_array((size_t)(f->n * P) + 1, sizeof *heat);
    memset(tiles, 0, sizeof tiles);
    mc_status s = heat ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    /* Drawn: each map minus its minimum, over its range (the grid's heat is 0 .. its max): the
     * weights of one map differ by a few per cent of 1/P, so from 0 they would all look hot. */
    for (int j = 0; s == MC_OK && j < f->n; j++) {
        const double *m = f->map + (size_t)j * P;
        double lo = m[0];
        for (int64_t p = 1; p < P; p++) lo = fmin(lo, m[p]);
        for (int64_t p = 0; p < P; p++) heat[(size_t)j * P + p] = (float)(m[p] - lo);
    }
    for (int j = 0; j < f->n && s == MC_OK; j++) {
        int oh = 0, ow = 0;
        s = mc_report_tile_image(pp, paths[f->img[j]], &pix[j], &ow, &oh, err);
        mc_grid_tile *t = &tiles[j];
        t->rgb = pix[j], t->w = ow, t->h = oh;
        /* Each map on its own scale (DINO shows each image's map so), patches as blocks. */
        t->heat = heat + (size_t)j * P, t->hw = (int)g, t->hh = (int)g;
        mc_snprintf(t->caption, sizeof t->caption, "#%lld %s", (long long)f->img[j],
                    cls_names[lab[f->img[j]]]);
        double mx = 0, lo = 1;
        for (int64_t p = 0; p < P; p++)
            mx = fmax(mx, f->map[(size_t)j * P + p]), lo = fmin(lo, f->map[(size_t)j * P + p]);
        /* Short enough for a 128 px tile (captions are cut at its width). */
        if (f->score[j] > 0)
            mc_snprintf(t->caption2, sizeof t->caption2, "code %.3g, max %.2g", f->score[j], mx);
        else
            mc_snprintf(t->caption2, sizeof t->caption2, "attn %.2g .. %.2g", lo, mx);
    }
    mc_buf fl = {0};
    for (int i = 0; i < f->n_feat; i++) mc_buf_printf(&fl, "%s%d", i ? "," : "", f->feat[i]);
    mc_grid gr = {.n_tiles = f->n, .cols = f->n < 6 ? f->n : 6, .tile = AM_TILE, .tiles = tiles};
    mc_snprintf(gr.title, sizeof gr.title,
                "Fig. %s: CLS attention, block %d, keeping feature%s %s (%s)",
                strcmp(f->stem, "class") ? "6" : "4", block, f->n_feat > 1 ? "s" : "",
                fl.oom ? "" : fl.p, f->subject);
    for (int k = 0; s == MC_OK && k < cfg->report.figure_formats.n; k++) {
        const int fmt = cfg->report.figure_formats.v[k];
        const char *ext = mc_plot_format_ext(fmt);
        char path[MC_PATH_CAP];
        uint8_t *data = NULL;
        size_t len = 0;
        if (!mc_snprintf(path, sizeof path, "%s/report/figures/attention_maps_%s.%s",
                         cfg->output_dir, f->stem, ext ? ext : "?"))
            s = MC_FAIL(err, MC_ERR_ARG, "report: figure path too long under %s", cfg->output_dir);
        if (s == MC_OK) s = mc_grid_render(&gr, fmt, &data, &len, err);
        if (s == MC_OK) s = mc_write_text_file_if_changed(path, (const char *)data, len, err);
        free(data);
        if (s == MC_OK)
            mc_buf_printf(readme, "%s[%s](figures/attention_maps_%s.%s)", k ? " " : "- ", ext,
                          f->stem, ext);
    }
    if (s == MC_OK)
        mc_buf_printf(
            readme,
            ": %s: the CLS-to-patch attention of block %d (mean of heads) when the patch "
            "tokens at layer %s keep only SAE feature%s %s (%s '%s'); each map drawn from "
            "its minimum to its maximum  (values: [csv](figures/attention_maps.csv))\n",
            gr.title, block, cfg->sae.layer, f->n_feat > 1 ? "s" : "", fl.oom ? "" : fl.p, f->what,
            f->subject);
    mc_buf_free(&fl);
    for (int j = 0; j < AM_MAX_IMAGES; j++) free(pix[j]);
    free(heat);
    return s;
}

mc_status mc_report_attention(const mc_comm *c, const mc_config *cfg, mc_buf *readme,
                              mc_error *err) {
    const char *why = !mc_config_has_stage(cfg, MC_STAGE_LOCALIZE) || !cfg->sae.layer
                          ? "it needs the sae and localize stages"
                      : !cfg->datasets.eval.kind ? "it needs datasets.eval"
                                                 : NULL;
    const char *set = NULL;
    for (int i = 0; i < cfg->concepts.n && !set; i++)
        if (cfg->concepts.v[i].source == MC_CONCEPTS_CLASSES) set = cfg->concepts.v[i].name;
    if (!why && !set) why = "no concept set has source 'classes'";
    /* The target: a transformer whose block after sae.layer exists. */
    mc_model *decl = NULL;
    int block = -1, n_blocks = 0;
    if (!why) {
        mc_error e2 = {0};
        MC_TRY(mc_comm_agree(c, mc_model_declare_dir(cfg->models.target, &decl, err), err));
        int li = -1, T = 0, D = 0, H = 0;
        mc_model_transformer_dims(decl, &n_blocks, &T, &D, &H);
        if (mc_model_find_layer(decl, cfg->sae.layer, &li, &e2) == MC_OK) {
            const char *nm = mc_model_layer(decl, li)->name;
            char *end = NULL;
            long v = !strcmp(nm, "embeddings") ? 0 : strtol(nm, &end, 10);
            if (!strcmp(nm, "embeddings") || (end && end != nm && !*end)) block = (int)v + 1;
        }
        mc_model_free(&decl);
        if (!n_blocks)
            why = "the target is not a transformer (no attention)";
        else if (block < 1 || block > n_blocks)
            why = "sae.layer is not followed by a transformer block";
    }
    if (why) {
        mc_info0("report: attention_maps omitted: %s", why);
        return MC_OK;
    }
    const int64_t seed = cfg->seeds.v[0];
    const int N = (int)cfg->report.attention_images;
    am_fig fig[2] = {{.stem = "class", .what = "class"}, {.stem = "concept", .what = "concept"}};
    int n_fig = 0;

    /* Figure 4's class and features: the localize store. */
    char path[MC_PATH_CAP];
    char **loc_names = NULL;
    int64_t LC = 0, tau = 0;
    int32_t *top = NULL;
    float *top_sc = NULL;
    mc_status s = task_store(c, cfg, MC_STAGE_LOCALIZE, path, err);
    if (s == MC_OK)
        s = mc_report_read_localized(c, path, set, &loc_names, &LC, &top, &top_sc, &tau, err);
    int64_t cls = -1;
    const char *want = cfg->report.attention_class;
    for (int64_t j = 0; s == MC_OK && j < LC && cls < 0; j++)
        if (want && want[0] ? !strcasecmp(loc_names[j], want) : j == 0) cls = j;
    if (s == MC_OK && cls < 0)
        s = MC_FAIL(err, MC_ERR_ARG, "%s: report.attention_class: '%s' is not a class of '%s'",
                    cfg->source_path, want, set);
    if (s == MC_OK) {
        am_fig *f = &fig[n_fig++];
        f->feat = top + cls * tau, f->n_feat = (int)tau;
        mc_strlcpy(f->subject, loc_names[cls], sizeof f->subject);
    }
    /* Figure 6's feature: the describe store. */
    char dset[128] = "";
    int32_t cfeat = -1;
    float cscore = 0;
    const char *concept = cfg->report.attention_concept;
    if (s == MC_OK && concept && concept[0] && !mc_config_has_stage(cfg, MC_STAGE_DESCRIBE))
        mc_info0("report: attention_maps: Figure 6 omitted: it needs the describe stage");
    else if (s == MC_OK && concept && concept[0]) {
        s = concept_feature(c, cfg, concept, &cfeat, &cscore, dset, err);
        if (s == MC_OK && cfeat < 0)
            mc_info0("report: attention_maps: Figure 6 omitted: no SAE feature's top description "
                     "is '%s'",
                     concept);
        if (s == MC_OK && cfeat >= 0) {
            am_fig *f = &fig[n_fig++];
            f->feat = &cfeat, f->n_feat = 1;
            mc_snprintf(f->subject, sizeof f->subject, "%s", concept);
        }
    }

    /* The eval store: labels, validity, paths, the pooled vectors at sae.layer (Figure 6). */
    char epath[MC_PATH_CAP];
    mc_store *st = NULL;
    if (s == MC_OK)
        s = mc_report_open_eval(c, cfg, seed, "attention_maps", epath, sizeof epath, &st, err);
    int64_t NI = 0, C = 0, n_paths = 0;
    char **cls_names = NULL, **paths = NULL;
    int32_t *lab = NULL;
    uint8_t *valid = NULL;
    if (s == MC_OK) s = mc_store_read_strings(st, "classes/names", &cls_names, &C, err);
    if (s == MC_OK) s = mc_store_read_strings(st, "images/paths", &paths, &n_paths, err);
    mc_store_dataset_info info;
    if (s == MC_OK) s = mc_store_dataset_info_get(st, "images/labels", &info, err);
    if (s == MC_OK) {
        NI = info.shape[0];
        lab = mc_alloc_array((size_t)NI + 1, sizeof *lab);
        valid = mc_alloc_array((size_t)NI + 1, sizeof *valid);
        s = mc_comm_agree(c, lab && valid ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory"),
                          err);
    }
    if (s == MC_OK) s = mc_store_read_rows(st, "images/labels", MC_DTYPE_I32, 0, NI, lab, err);
    if (s == MC_OK) s = mc_store_read_rows(st, "images/valid", MC_DTYPE_U8, 0, NI, valid, err);
    for (int64_t i = 0; s == MC_OK && i < NI; i++)
        if (valid[i] && (lab[i] < 0 || lab[i] >= C || i >= n_paths))
            s = MC_FAIL(err, MC_ERR_FORMAT, "%s: image %lld has label %d of %lld classes", epath,
                        (long long)i, lab[i], (long long)C);
    /* Figure 4's images: the first N valid eval images of the class. */
    for (int64_t i = 0; s == MC_OK && i < NI && fig[0].n < N; i++)
        if (valid[i] && !strcasecmp(cls_names[lab[i]], fig[0].subject)) fig[0].img[fig[0].n++] = i;
    /* The SAE (every rank loads it: Figure 6 ranks the eval images by its code). */
    mc_train_data td = {0};
    bool have_td = false;
    mc_sae *sae = NULL;
    mc_acts a = {0};
    bool have_a = false;
    if (s == MC_OK) s = mc_train_data_open(c, cfg, seed, &td, err), have_td = s == MC_OK;
    if (s == MC_OK) s = mc_acts_open(c, st, cfg->sae.layer, &a, err), have_a = s == MC_OK;
    mc_run_paths rp;
    if (s == MC_OK) s = mc_sae_paths(cfg, td.extract_key, seed, &rp, err);
    if (s == MC_OK) s = mc_sae_load_store(c, cfg, rp.store, a.dim, seed, &sae, err);
    /* Figure 6's images: the feature's top N valid eval images by its top-k code of the pooled
     * vector (larger first, the lower index on a tie). */
    if (s == MC_OK && n_fig == 2) {
        am_fig *f = &fig[1];
        const int k = mc_sae_get_config(sae)->k;
        float *v = mc_alloc_array((size_t)a.dim, sizeof *v);
        int32_t *idx = mc_alloc_array((size_t)k, sizeof *idx);
        float *val = mc_alloc_array((size_t)k, sizeof *val);
        s = v && idx && val ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        for (int64_t i = 0; s == MC_OK && i < NI; i++) {
            if (!valid[i]) continue;
            s = mc_acts_vectors(&a, &i, 1, v, err);
            if (s != MC_OK) break;
            mc_sae_encode(sae, v, 1, idx, val);
            float z = 0;
            for (int j = 0; j < k; j++)
                if (idx[j] == cfeat) z = val[j];
            if (!(z > 0) || (f->n == N && !(z > f->score[N - 1]))) continue;
            int j = f->n < N ? f->n++ : N - 1;
            while (j > 0 && z > f->score[j - 1])
                f->score[j] = f->score[j - 1], f->img[j] = f->img[j - 1], j--;
            f->score[j] = z, f->img[j] = i;
        }
        free(v), free(idx), free(val);
        s = mc_comm_agree(c, s, err);
    }

    /* Rank 0: the maps, the figures and the CSV. */
    if (s == MC_OK && c->rank == 0) {
        mc_model *m = NULL;
        mc_preproc pp;
        int nb = 0, T = 0, D = 0, H = 0;
        s = mc_model_create(cfg->models.target, &m, err);
        if (s == MC_OK) s = mc_preproc_load(cfg->models.target, &pp, err);
        if (s == MC_OK) mc_model_transformer_dims(m, &nb, &T, &D, &H);
        const int64_t P = T - 1, g = (int64_t)llround(sqrt((double)(T > 1 ? T - 1 : 1)));
        if (s == MC_OK && (g * g != P || D != a.dim))
            s = MC_FAIL(err, MC_ERR_SHAPE,
                        "report: attention_maps: %lld patches (not a square grid) or width %d "
                        "!= the SAE's %lld",
                        (long long)P, D, (long long)a.dim);
        mc_buf csv = {0};
        mc_buf_printf(&csv, "figure,image,class,features,block,patch,row,col,attention\n");
        for (int q = 0; s == MC_OK && q < n_fig; q++) {
            am_fig *f = &fig[q];
            if (!f->n) {
                mc_info0("report: attention_maps: no eval image for %s '%s'", f->what, f->subject);
                continue;
            }
            s = run_maps(cfg, m, &pp, sae, paths, block, f, P, err);
            if (s == MC_OK) s = draw(cfg, &pp, paths, cls_names, lab, f, P, g, block, readme, err);
            mc_buf fl = {0};
            for (int i = 0; i < f->n_feat; i++)
                mc_buf_printf(&fl, "%s%d", i ? " " : "", f->feat[i]);
            for (int j = 0; s == MC_OK && j < f->n; j++)
                for (int64_t p = 0; p < P; p++) {
                    mc_buf_printf(&csv, "%s,%lld,", f->stem, (long long)f->img[j]);
                    mc_buf_csv(&csv, cls_names[lab[f->img[j]]]);
                    mc_buf_printf(&csv, ",%s,%d,%lld,%lld,%lld,%.9g\n", fl.oom ? "" : fl.p, block,
                                  (long long)p, (long long)(p / g), (long long)(p % g),
                                  f->map[(size_t)j * P + p]);
                }
            mc_buf_free(&fl);
        }
        if (s == MC_OK && dset[0])
            mc_buf_printf(readme,
                          "  (Figure 6's feature %d: its top description in '%s' is '%s', "
                          "score %.4g)\n",
                          cfeat, dset, concept, cscore);
        char cpath[MC_PATH_CAP];
        mc_snprintf(cpath, sizeof cpath, "%s/report/figures/attention_maps.csv", cfg->output_dir);
        if (s == MC_OK)
            s = csv.oom ? MC_FAIL(err, MC_ERR_NOMEM, "out of memory")
                        : mc_write_text_file_if_changed(cpath, csv.p, csv.n, err);
        mc_buf_free(&csv);
        mc_model_free(&m);
    }
    s = mc_comm_agree(c, s, err);
    for (int q = 0; q < 2; q++) free(fig[q].map);
    mc_sae_free(&sae);
    if (have_a) mc_acts_close(&a);
    if (have_td) mc_train_data_close(&td);
    if (st) mc_store_close(&st, NULL);
    if (cls_names) mc_strings_free(&cls_names, C);
    if (paths) mc_strings_free(&paths, n_paths);
    if (loc_names) mc_strings_free(&loc_names, LC);
    free(top), free(top_sc), free(lab), free(valid);
    return s;
}
