/* report_stats.c - mean, sample std and the one-tailed paired t-test of the report tables
 * (report_internal.h). The t distribution's tails come from GSL. */
#include <gsl/gsl_sf_gamma.h>
#include <math.h>

#include "report_internal.h"

double mc_stats_mean(const double *x, int64_t n) {
    if (n < 1) return NAN;
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += x[i];
    double m = s / (double)n, r = 0;
    /* The mean of the residuals corrects the rounding of the first pass. */
    for (int64_t i = 0; i < n; i++) r += x[i] - m;
    return m + r / (double)n;
}

double mc_stats_sd(const double *x, int64_t n) {
    if (n < 2) return NAN;
    double m = mc_stats_mean(x, n), ss = 0;
    for (int64_t i = 0; i < n; i++) ss += (x[i] - m) * (x[i] - m);
    return sqrt(ss / (double)(n - 1));
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
    /* Differences in two passes over the pairs (no buffer): mean, then squared deviations. */
    double s = 0;
    bool same = true;
    const double d0 = x[0] - y[0];
    for (int64_t i = 0; i < n; i++) {
        double d = x[i] - y[i];
        s += d;
        same = same && d == d0;
    }
    double m = s / (double)n, rr = 0;
    for (int64_t i = 0; i < n; i++) rr += (x[i] - y[i]) - m;
    m += rr / (double)n;
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += ((x[i] - y[i]) - m) * ((x[i] - y[i]) - m);
    r.mean_diff = m;
    r.sd_diff = sqrt(ss / (double)(n - 1));
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
