/* report_stats.c - mean, sample std and the one-tailed paired t-test of the report tables
 * (report_internal.h): the one statistics module, on GSL (gsl_stats_mean / gsl_stats_sd, whose
 * long-double recurrences are as accurate as a compensated two-pass on the report's inputs:
 * docs/report.md, "Statistics"), the t distribution's tails from GSL's incomplete beta. */
#include <gsl/gsl_sf_gamma.h>
#include <gsl/gsl_statistics_double.h>
#include <math.h>
#include <stdlib.h>

#include "report_internal.h"

double mc_stats_mean(const double *x, int64_t n) {
    return n < 1 ? NAN : gsl_stats_mean(x, 1, (size_t)n);
}

double mc_stats_sd(const double *x, int64_t n) {
    return n < 2 ? NAN : gsl_stats_sd(x, 1, (size_t)n);
}

mc_ttest mc_ttest_paired(const double *x, const double *y, int64_t n, mc_tail tail) {
    mc_ttest r = {.status = MC_TTEST_OK,
                  .n = n,
                  .mean_diff = NAN,
                  .sd_diff = NAN,
                  .t = NAN,
                  .df = NAN,
                  .p = NAN};
    if (n < 2) {
        r.status = MC_TTEST_FEW;
        if (n == 1) r.mean_diff = x[0] - y[0];
        return r;
    }
    /* The differences' mean and sd by the same routines as every cell's. */
    double *d = malloc((size_t)n * sizeof *d);
    if (!d) { /* the n/a of "too few": no test without memory for n doubles */
        r.status = MC_TTEST_FEW;
        return r;
    }
    bool same = true;
    for (int64_t i = 0; i < n; i++) {
        d[i] = x[i] - y[i];
        same = same && d[i] == d[0];
    }
    const double m = mc_stats_mean(d, n);
    r.mean_diff = m;
    r.sd_diff = mc_stats_sd(d, n);
    free(d);
    /* Identical differences: the variance is zero in exact arithmetic whatever rounding left. */
    if (same || !(r.sd_diff > 0)) {
        r.status = MC_TTEST_ZERO_VAR;
        r.sd_diff = 0;
        return r;
    }
    r.df = (double)(n - 1);
    r.t = m / (r.sd_diff / sqrt((double)n));
    /* The smaller tail as 1/2 I_{df/(df+t^2)}(df/2, 1/2) (GSL's regularised incomplete beta), the
     * other as its complement. gsl_cdf_tdist_Q/P compute the same, but lose relative precision far
     * out (6 digits at p ~ 1e-20, df 37); the beta form matches scipy and mpmath to ~1e-15 there. */
    const double small = 0.5 * gsl_sf_beta_inc(r.df / 2, 0.5, r.df / (r.df + r.t * r.t));
    const bool t_agrees = tail == MC_TAIL_GREATER ? r.t > 0 : r.t < 0;
    r.p = t_agrees ? small : 1 - small;
    return r;
}
