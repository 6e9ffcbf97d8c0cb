/* test_nn.c - every fast kernel of src/nn against its naive reference (naive.c) or its
 * definition. Tolerance: 1e-5 relative to the largest reference magnitude, a float32 GEMM's
 * accumulation error at these sizes (K <= 600) with a 10x margin. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/miclip.h"
#include "miclip/nn.h"
#include "naive.h"
#include "test_util.h"

static uint64_t rng = 88172645463325252ull;
static float urand(void) { /* xorshift64, uniform in [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
}
static float *rnd(size_t n, float scale) {
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = urand() * scale;
    return p;
}
static double rel_err(const float *a, const float *ref, size_t n) {
    double mx = 0, ma = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        if (d > mx || isnan(d)) mx = d;
        if (fabs(ref[i]) > ma) ma = fabs(ref[i]);
    }
    return mx / (ma > 0 ? ma : 1);
}
#define CHECK_CLOSE(name, a, ref, n)                                                               \
    do {                                                                                           \
        double e_ = rel_err((a), (ref), (n));                                                      \
        printf("%-28s max err / max|ref| = %.3g\n", name, e_);                                     \
        CHECK_MSG(e_ <= 1e-5, "%s: %.3g", name, e_);                                               \
    } while (0)

static void test_linear(void) {
    const int64_t M = 7, K = 33, N = 19;
    float *x = rnd(M * K, 1), *W = rnd(N * K, 1), *b = rnd(N, 1);
    float *y = calloc(M * N, 4), *r = calloc(M * N, 4);
    mc_linear(x, W, b, y, M, K, N, false);
    naive_linear(x, W, b, r, M, K, N);
    CHECK_CLOSE("linear", y, r, M * N);
    /* accumulate: y += x W^T + b */
    mc_linear(x, W, b, y, M, K, N, true);
    for (int64_t i = 0; i < M * N; i++) r[i] *= 2;
    CHECK_CLOSE("linear accumulate", y, r, M * N);
    free(x), free(W), free(b), free(y), free(r);
}

static void test_layernorm(void) {
    const int64_t R = 5, D = 77;
    float *x = rnd(R * D, 3), *g = rnd(D, 1), *b = rnd(D, 1), *y = calloc(R * D, 4),
          *r = calloc(R * D, 4);
    for (int64_t i = 0; i < R * D; i++) x[i] += 10.0f; /* a large mean */
    naive_layernorm(x, g, b, r, R, D, 1e-5f);
    mc_layernorm(x, g, b, y, R, D, 1e-5f);
    CHECK_CLOSE("layernorm", y, r, R * D);
    mc_layernorm(x, g, b, x, R, D, 1e-5f); /* in place */
    CHECK_CLOSE("layernorm in place", x, r, R * D);
    free(x), free(g), free(b), free(y), free(r);
}

static void test_acts(void) {
    float v[7] = {-3.0f, -1.0f, -0.1f, 0.0f, 0.5f, 1.0f, 4.0f};
    float g[7], qg[7], rl[7];
    memcpy(g, v, sizeof v), memcpy(qg, v, sizeof v), memcpy(rl, v, sizeof v);
    mc_act_apply(MC_ACT_GELU, g, 7);
    mc_act_apply(MC_ACT_QUICK_GELU, qg, 7);
    mc_act_apply(MC_ACT_RELU, rl, 7);
    for (int i = 0; i < 7; i++) {
        const double x = v[i];
        CHECK_NEAR(g[i], 0.5 * x * (1 + erf(x / sqrt(2.0))), 1e-6);
        CHECK_NEAR(qg[i], x / (1 + exp(-1.702 * x)), 1e-6);
        CHECK_NEAR(rl[i], x > 0 ? x : 0, 0);
    }
    /* The vectorised (libmvec) paths over a wide range, against the double-precision formulas:
     * the float formula itself carries |x|*eps of rounding, so allow 2 ulp of max(1, |x|). */
    const size_t n = 200001;
    float *x = malloc(n * 4), *gx = malloc(n * 4), *qx = malloc(n * 4), *sx = malloc(n * 4);
    for (size_t i = 0; i < n; i++) x[i] = -12.0f + 24.0f * (float)i / (float)(n - 1);
    memcpy(gx, x, n * 4), memcpy(qx, x, n * 4);
    mc_gelu(gx, n);
    mc_quick_gelu(qx, n);
    double wg = 0, wq = 0;
    for (size_t i = 0; i < n; i++) {
        const double xi = x[i], sc = fmax(1.0, fabs(xi)) * 1.1920929e-7;
        wg = fmax(wg, fabs(gx[i] - 0.5 * xi * (1 + erf(xi / sqrt(2.0)))) / sc);
        wq = fmax(wq, fabs(qx[i] - xi / (1 + exp(-1.702 * xi))) / sc);
    }
    printf("gelu / quick_gelu on [-12, 12]: worst error %.2f / %.2f ulp of max(1,|x|)\n", wg, wq);
    CHECK(wg <= 2.0 && wq <= 2.0);
    /* softmax rows of 197 against double */
    for (size_t i = 0; i < 197 * 4; i++) sx[i] = x[(i * 7919) % n];
    float ref[197];
    double ws = 0;
    for (int r = 0; r < 4; r++) {
        double mx = -1e30, z = 0;
        for (int j = 0; j < 197; j++) mx = fmax(mx, sx[r * 197 + j]);
        for (int j = 0; j < 197; j++) z += exp(sx[r * 197 + j] - mx);
        for (int j = 0; j < 197; j++) ref[j] = (float)(exp(sx[r * 197 + j] - mx) / z);
        mc_softmax_rows(sx + r * 197, 1, 197);
        ws = fmax(ws, rel_err(sx + r * 197, ref, 197));
    }
    printf("softmax rows: %.3g\n", ws);
    CHECK(ws <= 1e-6);
    free(x), free(gx), free(qx), free(sx);
    mc_act a;
    mc_error e = {0};
    CHECK(mc_act_parse("quick_gelu", &a, &e) == MC_OK && a == MC_ACT_QUICK_GELU);
    CHECK(mc_act_parse("gelu_new", &a, &e) == MC_ERR_UNSUPPORTED);
    /* softmax: sums to one, masked row all zero */
    float s[6] = {1, 2, 3, -INFINITY, -INFINITY, -INFINITY};
    mc_softmax_rows(s, 2, 3);
    CHECK_NEAR(s[0] + s[1] + s[2], 1.0, 1e-6);
    CHECK_NEAR(s[2] / s[1], exp(1.0), 1e-5);
    CHECK(s[3] == 0 && s[4] == 0 && s[5] == 0);
}

static void test_attention(bool mask, bool bias, bool causal, bool fused) {
    const int64_t B = 2, T = 9, H = 3, hd = 8, D = H * hd;
    float *qkv = rnd(B * T * 3 * D, 2);
    float *q = malloc(B * T * D * 4), *k = malloc(B * T * D * 4), *v = malloc(B * T * D * 4);
    for (int64_t r = 0; r < B * T; r++) {
        memcpy(q + r * D, qkv + r * 3 * D, D * 4);
        memcpy(k + r * D, qkv + r * 3 * D + D, D * 4);
        memcpy(v + r * D, qkv + r * 3 * D + 2 * D, D * 4);
    }
    float *km = NULL, *bs = NULL;
    if (mask) {
        km = calloc(B * T, 4);
        km[T - 1] = -INFINITY, km[T - 2] = -1e9f, km[T + 3] = -INFINITY;
    }
    if (bias) bs = rnd(H * T * T, 1);
    float *out = calloc(B * T * D, 4), *ref = calloc(B * T * D, 4);
    float *pr = calloc(B * H * T * T, 4), *pref = calloc(B * H * T * T, 4);
    mc_attn_desc d = {.B = B,
                      .T = T,
                      .H = H,
                      .head_dim = hd,
                      .key_mask = km,
                      .bias = bs,
                      .causal = causal,
                      .probs = pr};
    float *work = malloc(mc_attention_workspace(&d) * 4);
    if (fused) {
        d.ld_qkv = 3 * D;
        mc_attention(&d, qkv, qkv + D, qkv + 2 * D, out, work);
    } else {
        mc_attention(&d, q, k, v, out, work);
    }
    naive_attention(q, k, v, ref, B, T, H, hd, km, bs, causal, pref);
    char name[64];
    snprintf(name, sizeof name, "attention m%d b%d c%d f%d", mask, bias, causal, fused);
    CHECK_CLOSE(name, out, ref, B * T * D);
    CHECK_CLOSE("  probabilities", pr, pref, B * H * T * T);
    free(qkv), free(q), free(k), free(v), free(km), free(bs), free(out), free(ref), free(pr),
        free(pref), free(work);
}

static void test_conv(int64_t cin, int64_t cout, int64_t k, int64_t s, int64_t p, int64_t H,
                      int64_t W, bool with_bias) {
    const int64_t B = 2;
    mc_conv_desc c = {.cin = cin, .cout = cout, .kh = k, .kw = k, .stride = s, .pad = p};
    const int64_t Ho = mc_conv_out_size(H, k, s, p), Wo = mc_conv_out_size(W, k, s, p);
    float *x = rnd(B * cin * H * W, 1), *w = rnd(cout * cin * k * k, 1);
    float *b = with_bias ? rnd(cout, 1) : NULL;
    size_t n = B * cout * Ho * Wo;
    float *y = calloc(n, 4), *r = calloc(n, 4), *y2 = malloc(n * 4);
    float *work = malloc((mc_conv2d_workspace(&c, H, W) + 1) * 4);
    mc_conv2d(&c, x, B, H, W, w, b, 0.0f, MC_ACT_NONE, y, work);
    naive_conv2d(x, w, b, r, B, cin, H, W, cout, k, k, s, p);
    char name[64];
    snprintf(name, sizeof name, "conv %ldx%ld s%ld p%ld", (long)k, (long)k, (long)s, (long)p);
    CHECK_CLOSE(name, y, r, n);
    /* accumulate + relu: y2 = relu(conv + bias + r) */
    memcpy(y2, r, n * 4);
    mc_conv2d(&c, x, B, H, W, w, b, 1.0f, MC_ACT_RELU, y2, work);
    for (size_t i = 0; i < n; i++) r[i] = fmaxf(2 * r[i], 0);
    CHECK_CLOSE("  accumulate+relu", y2, r, n);
    free(x), free(w), free(b), free(y), free(r), free(y2), free(work);
}

static void test_bn_fold(void) {
    const int64_t cin = 4, cout = 5, k = 3, H = 6, W = 7, B = 1;
    mc_conv_desc c = {.cin = cin, .cout = cout, .kh = k, .kw = k, .stride = 1, .pad = 1};
    float *x = rnd(cin * H * W, 1), *w = rnd(cout * cin * k * k, 1);
    float *g = rnd(cout, 1), *be = rnd(cout, 1), *mu = rnd(cout, 1), *var = rnd(cout, 1);
    for (int64_t i = 0; i < cout; i++) var[i] = fabsf(var[i]) + 0.1f;
    size_t n = cout * H * W;
    float *r = malloc(n * 4), *y = malloc(n * 4), *fb = malloc(cout * 4);
    naive_conv2d(x, w, NULL, r, B, cin, H, W, cout, k, k, 1, 1);
    for (int64_t o = 0; o < cout; o++)
        for (int64_t i = 0; i < H * W; i++)
            r[o * H * W + i] =
                (float)((r[o * H * W + i] - mu[o]) / sqrt(var[o] + 1e-5) * g[o] + be[o]);
    mc_bn_fold(w, fb, NULL, g, be, mu, var, 1e-5f, cout, cin * k * k);
    float *work = malloc(mc_conv2d_workspace(&c, H, W) * 4);
    mc_conv2d(&c, x, B, H, W, w, fb, 0.0f, MC_ACT_NONE, y, work);
    CHECK_CLOSE("conv + folded batchnorm", y, r, n);
    free(x), free(w), free(g), free(be), free(mu), free(var), free(r), free(y), free(fb),
        free(work);
}

static void test_pools(void) {
    const int64_t B = 2, C = 3, H = 7, W = 6;
    float *x = rnd(B * C * H * W, 1);
    const int64_t Ho = mc_conv_out_size(H, 3, 2, 1), Wo = mc_conv_out_size(W, 3, 2, 1);
    float *y = malloc(B * C * Ho * Wo * 4), *a = malloc(B * C * Ho * Wo * 4);
    mc_maxpool2d(x, B, C, H, W, 3, 2, 1, y);
    mc_avgpool2d(x, B, C, H, W, 3, 2, 1, a);
    int bad_max = 0, bad_avg = 0;
    for (int64_t bc = 0; bc < B * C; bc++)
        for (int64_t oy = 0; oy < Ho; oy++)
            for (int64_t ox = 0; ox < Wo; ox++) {
                float m = -INFINITY;
                double s = 0;
                for (int64_t ky = 0; ky < 3; ky++)
                    for (int64_t kx = 0; kx < 3; kx++) {
                        int64_t iy = oy * 2 - 1 + ky, ix = ox * 2 - 1 + kx;
                        if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                        float v = x[(bc * H + iy) * W + ix];
                        m = v > m ? v : m;
                        s += v;
                    }
                if (y[(bc * Ho + oy) * Wo + ox] != m) bad_max++;
                if (fabs(a[(bc * Ho + oy) * Wo + ox] - s / 9) > 1e-6) bad_avg++;
            }
    CHECK(bad_max == 0);
    CHECK(bad_avg == 0);
    float sm[6];
    mc_spatial_mean(x, B, C, H * W, sm);
    double s0 = 0;
    for (int64_t i = 0; i < H * W; i++) s0 += x[i];
    CHECK_NEAR(sm[0], s0 / (H * W), 1e-6);
    float tm[2 * 14];
    mc_token_mean(x, 2, 3, 14, 1, tm);
    CHECK_NEAR(tm[0], (x[14] + x[28]) / 2.0, 1e-6);
    free(x), free(y), free(a);
}

/* The element-wise kernels split rows over threads; results must not depend on the count. */
static void test_threads(void) {
    const int64_t R = 600, D = 768;
    float *x = rnd(R * D, 3), *g = rnd(D, 1), *b = rnd(D, 1);
    float *y1 = malloc(R * D * 4), *y2 = malloc(R * D * 4);
    bool same = true;
    for (int k = 0; k < 3; k++) {
        for (int t = 1; t <= 2; t++) {
            mc_set_threads(t);
            float *y = t == 1 ? y1 : y2;
            memcpy(y, x, R * D * 4);
            if (k == 0) mc_layernorm(x, g, b, y, R, D, 1e-5f);
            if (k == 1) mc_bias_act_rows(y, b, R, D, MC_ACT_GELU);
            if (k == 2) mc_softmax_rows(y, R, D);
        }
        same = same && memcmp(y1, y2, R * D * 4) == 0;
    }
    CHECK_MSG(same, "1 and 2 threads differ");
    /* im2col is split over input channels at 2 threads: same result as the naive conv */
    mc_set_threads(2);
    mc_conv_desc c = {.cin = 64, .cout = 16, .kh = 3, .kw = 3, .stride = 2, .pad = 1};
    float *w = rnd(16 * 64 * 9, 1), *cx = rnd(64 * 57 * 57, 1);
    const int64_t Ho = mc_conv_out_size(57, 3, 2, 1), n = 16 * Ho * Ho;
    float *cy = malloc(n * 4), *cr = malloc(n * 4),
          *work = malloc(mc_conv2d_workspace(&c, 57, 57) * 4);
    mc_conv2d(&c, cx, 1, 57, 57, w, NULL, 0.0f, MC_ACT_NONE, cy, work);
    naive_conv2d(cx, w, NULL, cr, 1, 64, 57, 57, 16, 3, 3, 2, 1);
    CHECK_CLOSE("conv 3x3 s2 at 2 threads", cy, cr, n);
    free(w), free(cx), free(cy), free(cr), free(work);
    mc_set_threads(1);
    free(x), free(g), free(b), free(y1), free(y2);
}

int main(void) {
    test_threads();
    test_linear();
    test_layernorm();
    test_acts();
    for (int m = 0; m < 2; m++)
        for (int c = 0; c < 2; c++) test_attention(m, c == 0 && m == 1, c, m);
    test_attention(false, true, false, false);
    test_conv(3, 8, 7, 2, 3, 17, 15, false);
    test_conv(5, 6, 3, 1, 1, 9, 8, true);
    test_conv(5, 6, 3, 2, 1, 9, 8, true);
    test_conv(6, 7, 1, 1, 0, 5, 4, true);
    test_conv(6, 7, 1, 2, 0, 5, 4, false);
    test_conv(3, 4, 4, 4, 0, 16, 12, true); /* patch embedding */
    test_conv(2, 3, 3, 2, 1, 2, 2, true);   /* input smaller than the kernel */
    test_conv(3, 2, 7, 2, 3, 5, 3, false);
    test_conv(2, 2, 3, 3, 2, 11, 7, true); /* stride 3, pad 2 */
    test_bn_fold();
    test_pools();
    return TEST_SUMMARY();
}
