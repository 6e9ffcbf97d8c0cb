/* ttest_driver.c - reads paired samples from stdin ("n" then n lines "x y", repeated until EOF)
 * and prints, per sample, "mean_x sd_x mean_d t df p_greater p_less status" with 17 digits, for
 * test_ttest_ref.py to compare with numpy and scipy.stats.ttest_rel. */
#include <stdio.h>
#include <stdlib.h>

#include "stages/report_internal.h"

int main(void) {
    long n;
    while (scanf("%ld", &n) == 1) {
        if (n < 0 || n > 1000000) return 2;
        double *x = malloc((size_t)(n + 1) * sizeof *x), *y = malloc((size_t)(n + 1) * sizeof *y);
        if (!x || !y) return 2;
        for (long i = 0; i < n; i++)
            if (scanf("%lf %lf", &x[i], &y[i]) != 2) return 2;
        mc_ttest g = mc_ttest_paired(x, y, n, MC_TAIL_GREATER),
                 l = mc_ttest_paired(x, y, n, MC_TAIL_LESS);
        printf("%.17g %.17g %.17g %.17g %.17g %.17g %.17g %d\n", mc_stats_mean(x, n),
               mc_stats_sd(x, n), g.mean_diff, g.t, g.df, g.p, l.p, (int)g.status);
        free(x), free(y);
    }
    return 0;
}
