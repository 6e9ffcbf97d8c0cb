/* pool.c - max/average pooling over NCHW maps, spatial mean, token mean. */
#include <math.h>

#include "miclip/nn.h"

void mc_maxpool2d(const float *x, int64_t B, int64_t C, int64_t H, int64_t W, int64_t k,
                  int64_t stride, int64_t pad, float *y) {
    const int64_t Ho = mc_conv_out_size(H, k, stride, pad);
    const int64_t Wo = mc_conv_out_size(W, k, stride, pad);
    for (int64_t bc = 0; bc < B * C; bc++) {
        const float *xc = x + bc * H * W;
        float *yc = y + bc * Ho * Wo;
        for (int64_t oy = 0; oy < Ho; oy++)
            for (int64_t ox = 0; ox < Wo; ox++) {
                float m = -INFINITY;
                for (int64_t ky = 0; ky < k; ky++) {
                    const int64_t iy = oy * stride - pad + ky;
                    if (iy < 0 || iy >= H) continue;
                    for (int64_t kx = 0; kx < k; kx++) {
                        const int64_t ix = ox * stride - pad + kx;
                        if (ix < 0 || ix >= W) continue;
                        const float v = xc[iy * W + ix];
                        /* NaN propagates as in torch */
                        if (v > m || isnan(v)) m = v;
                    }
                }
                yc[oy * Wo + ox] = m;
            }
    }
}

void mc_avgpool2d(const float *x, int64_t B, int64_t C, int64_t H, int64_t W, int64_t k,
                  int64_t stride, int64_t pad, float *y) {
    const int64_t Ho = mc_conv_out_size(H, k, stride, pad);
    const int64_t Wo = mc_conv_out_size(W, k, stride, pad);
    const float inv = 1.0f / (float)(k * k);
    for (int64_t bc = 0; bc < B * C; bc++) {
        const float *xc = x + bc * H * W;
        float *yc = y + bc * Ho * Wo;
        for (int64_t oy = 0; oy < Ho; oy++)
            for (int64_t ox = 0; ox < Wo; ox++) {
                float s = 0.0f;
                for (int64_t ky = 0; ky < k; ky++) {
                    const int64_t iy = oy * stride - pad + ky;
                    if (iy < 0 || iy >= H) continue;
                    for (int64_t kx = 0; kx < k; kx++) {
                        const int64_t ix = ox * stride - pad + kx;
                        if (ix >= 0 && ix < W) s += xc[iy * W + ix];
                    }
                }
                yc[oy * Wo + ox] = s * inv;
            }
    }
}

void mc_spatial_mean(const float *x, int64_t B, int64_t C, int64_t S, float *y) {
    for (int64_t bc = 0; bc < B * C; bc++) {
        const float *xc = x + bc * S;
        double s = 0.0;
        for (int64_t i = 0; i < S; i++) s += xc[i];
        y[bc] = (float)(s / (double)S);
    }
}

void mc_token_mean(const float *x, int64_t B, int64_t T, int64_t D, int64_t from, float *y) {
    MC_ASSERT(from >= 0 && from < T);
    for (int64_t b = 0; b < B; b++) {
        float *yb = y + b * D;
        for (int64_t d = 0; d < D; d++) yb[d] = 0.0f;
        for (int64_t t = from; t < T; t++) {
            const float *xt = x + (b * T + t) * D;
            for (int64_t d = 0; d < D; d++) yb[d] += xt[d];
        }
        const float inv = 1.0f / (float)(T - from);
        for (int64_t d = 0; d < D; d++) yb[d] *= inv;
    }
}
