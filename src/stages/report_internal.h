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

#include "miclip/comm.h"
#include "miclip/config.h"
#include "miclip/plot.h"
#include "miclip/status.h"

/* --- the stage ----------------------------------------------------------------------------------- */
/* Collective. The report stage's one task: tables, figures and OUTPUT_DIR/report/README.md. */
mc_status mc_stage_report(const mc_comm *c, const mc_config *cfg, const mc_task *task, mc_error *err);
/* Local. Refuses the figures this build does not draw (tsne, attention_maps) with one line;
 * run.c calls it before any stage runs. */
mc_status mc_report_check(const mc_config *cfg, mc_error *err);

/* --- statistics -------------------------------------------------------------------------------- */
/* Mean of x[0..n) (two-pass: sum, then a correction by the mean residual); NAN when n < 1. */
double mc_stats_mean(const double *x, int64_t n);
/* Sample standard deviation sqrt(sum (x - mean)^2 / (n - 1)); NAN when n < 2. */
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
