/* norm.c - LayerNorm over the last dimension (torch semantics). */
#include <math.h>

#include "miclip/nn.h"

void mc_layernorm(const float *x, const float *gamma, const float *beta, float *y, int64_t rows,
                  int64_t dim, float eps) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * dim;
        float *yr = y + r * dim;
        /* Two passes in double: the mean first, then the centred sum of squares, so the
         * variance does not lose digits for rows with a large mean (torch is also two-pass). */
        double s = 0.0;
        for (int64_t i = 0; i < dim; i++) s += xr[i];
        const double mean = s / (double)dim;
        double ss = 0.0;
        for (int64_t i = 0; i < dim; i++) {
            const double d = xr[i] - mean;
            ss += d * d;
        }
        const double var = ss / (double)dim; /* biased, as torch */
        const float rstd = (float)(1.0 / sqrt(var + (double)eps));
        const float fmean = (float)mean;
        for (int64_t i = 0; i < dim; i++) {
            float v = (xr[i] - fmean) * rstd;
            if (gamma) v *= gamma[i];
            if (beta) v += beta[i];
            yr[i] = v;
        }
    }
}
