/* naive.c - the reference kernels of naive.h: each is the textbook definition. */
#include "naive.h"

#include <math.h>
#include <stdlib.h>

void naive_linear(const float *x, const float *W, const float *b, float *y, int64_t M, int64_t K,
                  int64_t N) {
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double s = b ? b[n] : 0.0;
            for (int64_t k = 0; k < K; k++) s += (double)x[m * K + k] * W[n * K + k];
            y[m * N + n] = (float)s;
        }
}

void naive_layernorm(const float *x, const float *g, const float *b, float *y, int64_t rows,
                     int64_t dim, float eps) {
    for (int64_t r = 0; r < rows; r++) {
        double mu = 0, var = 0;
        for (int64_t i = 0; i < dim; i++) mu += x[r * dim + i];
        mu /= dim;
        for (int64_t i = 0; i < dim; i++) var += (x[r * dim + i] - mu) * (x[r * dim + i] - mu);
        var /= dim;
        for (int64_t i = 0; i < dim; i++)
            y[r * dim + i] = (float)((x[r * dim + i] - mu) / sqrt(var + eps) * g[i] + b[i]);
    }
}

void naive_attention(const float *q, const float *k, const float *v, float *out, int64_t B,
                     int64_t T, int64_t H, int64_t hd, const float *key_mask, const float *bias,
                     bool causal, float *probs) {
    const int64_t D = H * hd;
    double *s = malloc(sizeof(double) * (size_t)T);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < T; i++) {
                double mx = -INFINITY;
                for (int64_t j = 0; j < T; j++) {
                    double d = 0;
                    for (int64_t c = 0; c < hd; c++)
                        d += (double)q[(b * T + i) * D + h * hd + c] *
                             k[(b * T + j) * D + h * hd + c];
                    d /= sqrt((double)hd);
                    if (bias) d += bias[(h * T + i) * T + j];
                    if (key_mask) d += key_mask[b * T + j];
                    if (causal && j > i) d = -INFINITY;
                    s[j] = d;
                    if (d > mx) mx = d;
                }
                double z = 0;
                for (int64_t j = 0; j < T; j++) {
                    s[j] = exp(s[j] - mx);
                    z += s[j];
                }
                for (int64_t j = 0; j < T; j++) {
                    s[j] /= z;
                    if (probs) probs[((b * H + h) * T + i) * T + j] = (float)s[j];
                }
                for (int64_t c = 0; c < hd; c++) {
                    double acc = 0;
                    for (int64_t j = 0; j < T; j++) acc += s[j] * v[(b * T + j) * D + h * hd + c];
                    out[(b * T + i) * D + h * hd + c] = (float)acc;
                }
            }
    free(s);
}

void naive_conv2d(const float *x, const float *w, const float *bias, float *y, int64_t B,
                  int64_t cin, int64_t H, int64_t W, int64_t cout, int64_t kh, int64_t kw,
                  int64_t stride, int64_t pad) {
    const int64_t Ho = (H + 2 * pad - kh) / stride + 1, Wo = (W + 2 * pad - kw) / stride + 1;
    for (int64_t b = 0; b < B; b++)
        for (int64_t o = 0; o < cout; o++)
            for (int64_t oy = 0; oy < Ho; oy++)
                for (int64_t ox = 0; ox < Wo; ox++) {
                    double s = bias ? bias[o] : 0.0;
                    for (int64_t c = 0; c < cin; c++)
                        for (int64_t ky = 0; ky < kh; ky++)
                            for (int64_t kx = 0; kx < kw; kx++) {
                                const int64_t iy = oy * stride - pad + ky,
                                              ix = ox * stride - pad + kx;
                                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                                s += (double)x[((b * cin + c) * H + iy) * W + ix] *
                                     w[((o * cin + c) * kh + ky) * kw + kx];
                            }
                    y[((b * cout + o) * Ho + oy) * Wo + ox] = (float)s;
                }
}
