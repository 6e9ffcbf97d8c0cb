/* report_internal.h - the statistics behind the report stage's tables (report_stats.c); the
 * figures are drawn by src/plot (miclip/plot.h).
 *
 * Statistics: mean, sample standard deviation (n - 1) and the one-tailed paired t-test over seeds
 * (pairs (x_i, y_i), differences d_i = x_i - y_i, t = mean(d) / (sd(d) / sqrt(n)), df = n - 1, the
 * tail from GSL's Student t distribution). Pure functions on caller-owned arrays; no allocation.

 */
#ifndef MICLIP_REPORT_INTERNAL_H
#define MICLIP_REPORT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "miclip/buf.h"
#include "miclip/comm.h"
#include "miclip/config.h"
#include "miclip/image.h"
#include "miclip/plot.h"
#include "miclip/status.h"
#include "miclip/store.h"

/* --- the stage ----------------------------------------------------------------------------------- */
/* Collective. The report stage's one task: tables, figures and OUTPUT_DIR/report/README.md. */
mc_status mc_stage_report(const mc_comm *c, const mc_config *cfg, const mc_task *task,
                          mc_error *err);
/* Local. Refuses the figures this build does not draw with one line (none today); run.c calls it
 * before any stage runs. */
mc_status mc_report_check(const mc_config *cfg, mc_error *err);

/* Rank 0 only. Writes p as OUTPUT_DIR/report/figures/<stem>.<ext> in each report.figure_formats
 * (mc_plot_write: atomic) and lists the files and the title as one README line. */
mc_status mc_report_write_figure_local(const mc_config *cfg, const mc_plot *p, const char *stem,
                                       mc_buf *readme, mc_error *err);
/* Collective. Figure 3 (report_tsne.c): the SAE features localized for the classes, through E_n,
 * t-SNE to 2-D, coloured by the tiny world's class colour; figures/tsne_sae-l<layer>.* and .csv.
 * Omitted with an info line without the localize stage or a `classes` concept set. */
mc_status mc_report_tsne(const mc_comm *c, const mc_config *cfg, mc_buf *readme, mc_error *err);
/* Collective (report_tsne.c). Reads a localize store's class set `set`: names [C], its top SAE
 * units and their cosines [C x tau] (malloc'd, the caller's). */
mc_status mc_report_read_localized(const mc_comm *c, const char *path, const char *set,
                                   char ***names, int64_t *C, int32_t **top, float **score,
                                   int64_t *tau, mc_error *err);
/* Local (report_site.c). Decodes the image at path and preprocesses it as the target sees it:
 * *rgb (malloc'd, the caller's, also on failure) holds *oh x *ow x 3 bytes, a grid tile's pixels. */
mc_status mc_report_tile_image(const mc_preproc *pp, const char *path, uint8_t **rgb, int *ow,
                               int *oh, mc_error *err);
/* Collective (report_flawed.c). Opens the eval extraction store of `seed` for reading, its path
 * in epath; refuses a missing or incomplete one with one line naming `figure` and the stage that
 * makes it. */
mc_status mc_report_open_eval(const mc_comm *c, const mc_config *cfg, int64_t seed,
                              const char *figure, char *epath, size_t cap, mc_store **st,
                              mc_error *err);
/* Collective. Figures 4 and 6 (report_attention.c): the CLS-to-patch attention of the block after
 * sae.layer when the patch tokens keep only chosen SAE features (paper D.2.2), for the first eval
 * images of a class (its localized features) and the top eval images of the feature described by
 * report.attention_concept; figures/attention_maps_{class,concept}.* and attention_maps.csv.
 * Omitted with an info line when a needed stage, dataset or a transformer target is missing. */
mc_status mc_report_attention(const mc_comm *c, const mc_config *cfg, mc_buf *readme,
                              mc_error *err);
/* Collective. Figure 5 (report_flawed.c): per extract.layers entry, cos(E_n a, text) of the first
 * correct and the first misclassified eval image with its true and a competing label;
 * figures/flawed_reasoning.* and .csv. Omitted with an info line without align, datasets.eval or
 * a `classes` concept set. */
mc_status mc_report_flawed(const mc_comm *c, const mc_config *cfg, mc_buf *readme, mc_error *err);

/* Collective. The results site (report_site.c): OUTPUT_DIR/report/index.html (readme, rank 0's
 * README.md text, rendered with links to a page per class and per reported unit) and
 * report/site/ (those pages and each unit's image grid). Files are written only when changed. */
mc_status mc_report_site(const mc_comm *c, const mc_config *cfg, const char *readme, mc_error *err);

/* --- the open-vocabulary scores of Table 1 (report_scores.c) ----------------------------------- */
#define MC_REPORT_NAME_CAP 160

/* One (task, concept set) on `logits`: the mean over its logit neurons of the cosine between the
 * text embeddings of the neuron's top description and of its own class name. */
typedef struct {
    char method[MC_REPORT_NAME_CAP]; /* "miclip (in+out)", "clip_dissect", ... (Table 1's rows) */
    char set[128];
    int64_t seed, n_units;
    double clip;  /* CLIP text space, both texts in align.prompt */
    double mpnet; /* MPNet sentence space (the texts alone); NAN without models.mpnet */
} mc_report_score;

typedef struct {
    mc_report_score *v;
    int n;
    bool have_mpnet; /* models.mpnet is set */
} mc_report_scores;

/* Collective. The scores of every describe and baselines task on `logits` (sweep order, sets in
 * the config's order) whose describe layout has top_concepts; none (n = 0, no model loaded) when
 * no layout has them. Embeddings are cached in OUTPUT_DIR/concepts/text_cache.h5, one text per
 * forward, so every rank count gives the same numbers. */
mc_status mc_report_scores_compute(const mc_comm *c, const mc_config *cfg, mc_report_scores *out,
                                   mc_error *err);
void mc_report_scores_free(mc_report_scores *s);

/* --- statistics -------------------------------------------------------------------------------- */
/* Mean of x[0..n) (gsl_stats_mean: a long-double running mean); NAN when n < 1. */
double mc_stats_mean(const double *x, int64_t n);
/* Sample standard deviation sqrt(sum (x - mean)^2 / (n - 1)) (gsl_stats_sd); NAN when n < 2. */
double mc_stats_sd(const double *x, int64_t n);

/* Which tail the alternative hypothesis names: mean(x - y) > 0 or < 0. */
typedef enum { MC_TAIL_GREATER = 1, MC_TAIL_LESS = -1 } mc_tail;

/* Why a test has no p-value. */
typedef enum {
    MC_TTEST_OK = 0,
    MC_TTEST_FEW,      /* fewer than 2 pairs */
    MC_TTEST_ZERO_VAR, /* every difference is the same: t is undefined (0/0) or infinite */
} mc_ttest_status;

typedef struct {
    mc_ttest_status status;
    int64_t n;        /* pairs */
    double mean_diff; /* mean of x - y (NAN when n == 0) */
    double sd_diff;   /* sample std of x - y (NAN when n < 2) */
    double t, df, p;  /* NAN unless status == MC_TTEST_OK */
} mc_ttest;

/* One-tailed paired t-test of x against y (n pairs, x[i] pairs with y[i]). tail GREATER: H1
 * mean(x - y) > 0, p = Q_t(t; n - 1); LESS: H1 mean(x - y) < 0, p = P_t(t; n - 1). */
mc_ttest mc_ttest_paired(const double *x, const double *y, int64_t n, mc_tail tail);

#endif
