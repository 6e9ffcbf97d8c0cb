/* conv.c - 2-D convolution as im2col + one sgemm per image (1x1 stride-1 convs skip im2col),
 * and BatchNorm folding. */
#include <math.h>
#include <string.h>

#include "miclip/nn.h"
#include "parallel.h"

int64_t mc_conv_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad) {
    MC_ASSERT(stride > 0);
    return (in + 2 * pad - k) / stride + 1;
}

static bool conv_direct(const mc_conv_desc *c) {
    return c->kh == 1 && c->kw == 1 && c->stride == 1 && c->pad == 0;
}

size_t mc_conv2d_workspace(const mc_conv_desc *c, int64_t H, int64_t W) {
    if (conv_direct(c)) return 0;
    const int64_t Ho = mc_conv_out_size(H, c->kh, c->stride, c->pad);
    const int64_t Wo = mc_conv_out_size(W, c->kw, c->stride, c->pad);
    return (size_t)(c->cin * c->kh * c->kw) * (size_t)(Ho * Wo);
}

typedef struct {
    const mc_conv_desc *c;
    const float *x;
    int64_t H, W, Ho, Wo;
    float *col;
} im2col_job;

/* col[(ci, ky, kx), (oy, ox)] = x[ci, oy*s - p + ky, ox*s - p + kx] (0 outside), for input
 * channels [c0, c1): each channel fills its own rows of col. */
static void im2col_part(int64_t c0, int64_t c1, void *p) {
    const im2col_job *j = p;
    const mc_conv_desc *c = j->c;
    const int64_t s = c->stride, pad = c->pad, H = j->H, W = j->W, Ho = j->Ho, Wo = j->Wo;
    for (int64_t ci = c0; ci < c1; ci++) {
        const float *xc = j->x + ci * H * W;
        for (int64_t ky = 0; ky < c->kh; ky++) {
            for (int64_t kx = 0; kx < c->kw; kx++) {
                float *row = j->col + ((ci * c->kh + ky) * c->kw + kx) * Ho * Wo;
                for (int64_t oy = 0; oy < Ho; oy++) {
                    const int64_t iy = oy * s - pad + ky;
                    float *r = row + oy * Wo;
                    if (iy < 0 || iy >= H) {
                        memset(r, 0, (size_t)Wo * sizeof(float));
                        continue;
                    }
                    const float *xr = xc + iy * W;
                    /* valid outputs: 0 <= ox*s - pad + kx < W, i.e. ox in [lo, hi) */
                    int64_t lo = pad - kx > 0 ? (pad - kx + s - 1) / s : 0;
                    int64_t hi = W + pad - kx > 0 ? (W + pad - kx + s - 1) / s : 0;
                    if (lo > Wo) lo = Wo;
                    if (hi > Wo) hi = Wo;
                    if (hi < lo) hi = lo;
                    for (int64_t ox = 0; ox < lo; ox++) r[ox] = 0.0f;
                    if (s == 1) {
                        if (hi > lo)
                            memcpy(r + lo, xr + lo - pad + kx, (size_t)(hi - lo) * sizeof(float));
                    } else {
                        const float *src = xr + lo * s - pad + kx;
                        for (int64_t ox = lo; ox < hi; ox++, src += s) r[ox] = *src;
                    }
                    for (int64_t ox = hi; ox < Wo; ox++) r[ox] = 0.0f;
                }
            }
        }
    }
}

static void im2col(const mc_conv_desc *c, const float *x, int64_t H, int64_t W, int64_t Ho,
                   int64_t Wo, float *col) {
    im2col_job j = {c, x, H, W, Ho, Wo, col};
    mc_parallel_rows(c->cin, c->kh * c->kw * Ho * Wo, im2col_part, &j);
}

void mc_conv2d(const mc_conv_desc *c, const float *x, int64_t B, int64_t H, int64_t W,
               const float *w, const float *bias, float beta, mc_act act, float *y, float *work) {
    const int64_t Ho = mc_conv_out_size(H, c->kh, c->stride, c->pad);
    const int64_t Wo = mc_conv_out_size(W, c->kw, c->stride, c->pad);
    const int64_t K = c->cin * c->kh * c->kw, S = Ho * Wo;
    MC_ASSERT(Ho > 0 && Wo > 0);
    for (int64_t b = 0; b < B; b++) {
        const float *xb = x + b * c->cin * H * W;
        float *yb = y + b * c->cout * S;
        const float *col = xb;
        if (!conv_direct(c)) {
            im2col(c, xb, H, W, Ho, Wo, work);
            col = work;
        }
        /* y[cout, S] = w[cout, K] col[K, S] + beta y */
        mc_sgemm(false, false, c->cout, S, K, 1.0f, w, K, col, S, beta, yb, S);
    }
    if (bias || act != MC_ACT_NONE) mc_bias_act_channels(y, bias, B, c->cout, S, act);
}

void mc_bn_fold(float *w, float *bias_out, const float *conv_bias, const float *gamma,
                const float *beta, const float *mean, const float *var, float eps, int64_t cout,
                int64_t K) {
    for (int64_t o = 0; o < cout; o++) {
        /* torch's eval BN: alpha = w / sqrt(var + eps), computed in float32 */
        const float a = gamma[o] / sqrtf(var[o] + eps);
        float *wo = w + o * K;
        for (int64_t i = 0; i < K; i++) wo[i] *= a;
        const float cb = conv_bias ? conv_bias[o] : 0.0f;
        bias_out[o] = beta[o] + (cb - mean[o]) * a;
    }
}
