/* test_report_stats.c - the report's statistics (src/stages/report_stats.c) against cases worked
 * out by hand: means and sample standard deviations of small integer sets, and paired t-tests
 * whose t distribution has a closed form (df = 1: Cauchy, Q(t) = 1/2 - atan(t)/pi; df = 2:
 * Q(t) = 1/2 - t / (2 sqrt(2 + t^2))), plus the n/a cases. */
#include <gsl/gsl_cdf.h>
#include <math.h>
#include <stdlib.h>

#include "stages/report_internal.h"
#include "test_util.h"

int main(void) {
    /* mean and sample std: {1, 2, 3, 4}: mean 5/2, sum of squares 5, sd sqrt(5/3). */
    const double a[] = {1, 2, 3, 4};
    CHECK_NEAR(mc_stats_mean(a, 4), 2.5, 0);
    CHECK_NEAR(mc_stats_sd(a, 4), sqrt(5.0 / 3.0), 1e-15);
    /* A large offset must not cost precision: {1e9 + 1, + 2, + 3} has sd exactly 1. */
    const double big[] = {1e9 + 1, 1e9 + 2, 1e9 + 3};
    CHECK_NEAR(mc_stats_mean(big, 3), 1e9 + 2, 0);
    CHECK_NEAR(mc_stats_sd(big, 3), 1.0, 1e-12);
    CHECK(isnan(mc_stats_mean(a, 0)));
    CHECK(isnan(mc_stats_sd(a, 1)));

    /* df = 1: d = {2, 3}: mean 2.5, sd sqrt(1/2), se 1/2, t = 5. */
    const double x1[] = {3, 5}, y1[] = {1, 2};
    mc_ttest r = mc_ttest_paired(x1, y1, 2, MC_TAIL_GREATER);
    CHECK(r.status == MC_TTEST_OK);
    CHECK_NEAR(r.t, 5.0, 1e-14);
    CHECK_NEAR(r.df, 1.0, 0);
    CHECK_NEAR(r.p, 0.5 - atan(5.0) / M_PI, 1e-14);
    r = mc_ttest_paired(x1, y1, 2, MC_TAIL_LESS);
    CHECK_NEAR(r.p, 0.5 + atan(5.0) / M_PI, 1e-14);

    /* df = 2: d = {1, 2, 3}: mean 2, sd 1, t = 2 sqrt(3). */
    const double x2[] = {2, 4, 6}, y2[] = {1, 2, 3};
    const double t2 = 2 * sqrt(3.0), q2 = 0.5 - t2 / (2 * sqrt(2 + t2 * t2));
    r = mc_ttest_paired(x2, y2, 3, MC_TAIL_GREATER);
    CHECK(r.status == MC_TTEST_OK);
    CHECK_NEAR(r.mean_diff, 2.0, 0);
    CHECK_NEAR(r.sd_diff, 1.0, 1e-15);
    CHECK_NEAR(r.t, t2, 1e-14);
    CHECK_NEAR(r.p, q2, 1e-14);
    /* Swapping the samples flips t; the opposite tail gives the same p. */
    mc_ttest rs = mc_ttest_paired(y2, x2, 3, MC_TAIL_LESS);
    CHECK_NEAR(rs.t, -t2, 1e-14);
    CHECK_NEAR(rs.p, q2, 1e-14);
    r = mc_ttest_paired(x2, y2, 3, MC_TAIL_LESS);
    CHECK_NEAR(r.p, 1 - q2, 1e-14);

    /* n/a: fewer than two pairs, and identical differences (no p-value is invented). */
    r = mc_ttest_paired(x2, y2, 1, MC_TAIL_GREATER);
    CHECK(r.status == MC_TTEST_FEW && isnan(r.p) && isnan(r.t) && r.mean_diff == 1);
    r = mc_ttest_paired(x2, y2, 0, MC_TAIL_GREATER);
    CHECK(r.status == MC_TTEST_FEW && isnan(r.p));
    const double x3[] = {3, 4, 5}, y3[] = {1, 2, 3};
    r = mc_ttest_paired(x3, y3, 3, MC_TAIL_GREATER);
    CHECK(r.status == MC_TTEST_ZERO_VAR && isnan(r.p) && isnan(r.t) && r.mean_diff == 2);
    /* Over moderate p the tails equal GSL's t distribution functions (the report's own p uses the
     * incomplete-beta form, which keeps its relative precision far out, report_stats.c). */
    srand(7);
    for (int rep = 0; rep < 200; rep++) {
        double x[12], y[12];
        const int n = 2 + rep % 10;
        for (int i = 0; i < n; i++)
            x[i] = rand() / (double)RAND_MAX, y[i] = x[i] + (rand() / (double)RAND_MAX - 0.4);
        mc_ttest g = mc_ttest_paired(x, y, n, MC_TAIL_GREATER),
                 l = mc_ttest_paired(x, y, n, MC_TAIL_LESS);
        CHECK_NEAR(g.p, gsl_cdf_tdist_Q(g.t, g.df), 1e-12);
        CHECK_NEAR(l.p, gsl_cdf_tdist_P(l.t, l.df), 1e-12);
        CHECK_NEAR(g.p + l.p, 1.0, 1e-15);
    }
    return TEST_SUMMARY();
}
