/* precision.c - localization precision of a method's units (precision.h). */
#include "method/precision.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/checked.h"

static int desc_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Expected fraction of column u's top-k rows that lie in [lo, hi): rows above the k-th largest
 * value t all count; the rows equal to t fill the remaining slots, each equally likely. */
static double top_fraction(const float *acts, int64_t n, int64_t n_units, int64_t u, int64_t k,
                           int64_t lo, int64_t hi, float *scratch) {
    for (int64_t i = 0; i < n; i++) scratch[i] = acts[i * n_units + u];
    qsort(scratch, (size_t)n, sizeof *scratch, desc_float);
    const float t = scratch[k - 1];
    int64_t gt = 0, eq = 0, in_gt = 0, in_eq = 0;
    for (int64_t i = 0; i < n; i++) {
        float v = acts[i * n_units + u];
        bool in = i >= lo && i < hi;
        if (v > t) gt++, in_gt += in;
        if (v == t) eq++, in_eq += in;
    }
    return ((double)in_gt + (double)(k - gt) * (double)in_eq / (double)eq) / (double)k;
}

mc_status mc_unit_precision(const float *acts, int64_t n, int64_t n_units, const int64_t *first,
                            int64_t C, const int32_t *units, int64_t tau, double *prec,
                            double *mean, mc_error *err) {
    float *scratch = mc_alloc_array((size_t)(n > 0 ? n : 1), sizeof *scratch);
    if (!scratch) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory for %lld values", (long long)n);
    double sum = 0;
    int64_t used = 0;
    for (int64_t c = 0; c < C; c++) {
        const int64_t k = first[c + 1] - first[c];
        if (k <= 0) {
            prec[c] = NAN;
            continue;
        }
        double s = 0;
        for (int64_t q = 0; q < tau; q++)
            s += top_fraction(acts, n, n_units, units[c * tau + q], k, first[c], first[c + 1],
                              scratch);
        prec[c] = s / (double)tau;
        sum += prec[c], used++;
    }
    *mean = used ? sum / (double)used : NAN;
    free(scratch);
    return MC_OK;
}
