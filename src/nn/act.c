/* act.c - activations, fused bias+activation epilogues, softmax and residual adds. */
#include <math.h>
#include <string.h>

#include "miclip/nn.h"

mc_status mc_act_parse(const char *name, mc_act *out, mc_error *err) {
    if (!name) return MC_FAIL(err, MC_ERR_ARG, "activation name missing");
    if (strcmp(name, "gelu") == 0) *out = MC_ACT_GELU;
    else if (strcmp(name, "quick_gelu") == 0) *out = MC_ACT_QUICK_GELU;
    else if (strcmp(name, "relu") == 0) *out = MC_ACT_RELU;
    else
        return MC_FAIL(err, MC_ERR_UNSUPPORTED,
                       "activation \"%s\" is not supported (supported: gelu, quick_gelu, relu); "
                       "miclip does not approximate one activation with another",
                       name);
    return MC_OK;
}

const char *mc_act_name(mc_act a) {
    switch (a) {
    case MC_ACT_NONE: return "none";
    case MC_ACT_GELU: return "gelu";
    case MC_ACT_QUICK_GELU: return "quick_gelu";
    case MC_ACT_RELU: return "relu";
    default: return "?";
    }
}

/* Vectorised erff/expf: glibc's libmvec (linked through libm.so) has SIMD versions of both,
 * accurate to 1-2 ulp like the scalar ones (and like the Sleef functions PyTorch uses). GCC
 * only calls them for functions it may treat as const; expf may set errno, so declare
 * const aliases of the same symbols. target_clones builds AVX-512, AVX2 and SSE2 versions of
 * each loop and picks one at load time. */
float mc_vexpf(float) __asm__("expf") __attribute__((simd("notinbranch"), const, nothrow));
float mc_verff(float) __asm__("erff") __attribute__((simd("notinbranch"), const, nothrow));
#define MC_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

MC_CLONES void mc_gelu(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + mc_verff(x[i] * 0.70710678118654752f));
}
MC_CLONES void mc_quick_gelu(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = x[i] / (1.0f + mc_vexpf(-1.702f * x[i]));
}
MC_CLONES void mc_relu(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

/* x[i] = exp(x[i] - m), vectorised; the caller sums (in order, so results do not depend on the
 * vector width). */
MC_CLONES static void exp_shift(float *restrict x, size_t n, float m) {
    for (size_t i = 0; i < n; i++) x[i] = mc_vexpf(x[i] - m);
}
MC_CLONES static void add_bias(float *restrict x, const float *restrict b, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] += b[i];
}

void mc_act_apply(mc_act a, float *x, size_t n) {
    switch (a) {
    case MC_ACT_NONE: return;
    case MC_ACT_GELU: mc_gelu(x, n); return;
    case MC_ACT_QUICK_GELU: mc_quick_gelu(x, n); return;
    case MC_ACT_RELU: mc_relu(x, n); return;
    default: MC_PANIC("unknown activation %d", (int)a);
    }
}

void mc_bias_act_rows(float *x, const float *b, int64_t rows, int64_t cols, mc_act a) {
    for (int64_t r = 0; r < rows; r++) {
        float *xr = x + r * cols;
        if (b) add_bias(xr, b, (size_t)cols);
        mc_act_apply(a, xr, (size_t)cols);
    }
}

void mc_bias_act_channels(float *x, const float *b, int64_t B, int64_t C, int64_t S, mc_act a) {
    for (int64_t i = 0; i < B * C; i++) {
        float *xc = x + i * S;
        if (b) {
            const float bc = b[i % C];
            for (int64_t s = 0; s < S; s++) xc[s] += bc;
        }
        mc_act_apply(a, xc, (size_t)S);
    }
}

void mc_softmax_rows(float *x, int64_t rows, int64_t n) {
    for (int64_t r = 0; r < rows; r++) {
        float *xr = x + r * n;
        float m = -INFINITY;
        for (int64_t i = 0; i < n; i++)
            if (xr[i] > m) m = xr[i];
        if (m == -INFINITY) { /* every key masked */
            for (int64_t i = 0; i < n; i++) xr[i] = 0.0f;
            continue;
        }
        exp_shift(xr, (size_t)n, m);
        float s = 0.0f;
        for (int64_t i = 0; i < n; i++) s += xr[i];
        const float inv = 1.0f / s;
        for (int64_t i = 0; i < n; i++) xr[i] *= inv;
    }
}

MC_CLONES void mc_add_inplace(float *restrict y, const float *restrict x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}
