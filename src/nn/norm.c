/* norm.c - LayerNorm over the last dimension (torch semantics). */
#include <math.h>

#include "miclip/nn.h"
#include "parallel.h"

typedef struct {
    const float *x, *gamma, *beta;
    float *y;
    int64_t dim;
    float eps;
} ln_job;

static void ln_part(int64_t r0, int64_t r1, void *p) {
    const ln_job *j = p;
    const float *x = j->x, *gamma = j->gamma, *beta = j->beta;
    float *y = j->y;
    const int64_t dim = j->dim;
    const float eps = j->eps;
    for (int64_t r = r0; r < r1; r++) {
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

void mc_layernorm(const float *x, const float *gamma, const float *beta, float *y, int64_t rows,
                  int64_t dim, float eps) {
    ln_job j = {x, gamma, beta, y, dim, eps};
    mc_parallel_rows(rows, 3 * dim, ln_part, &j);
}
