/* act.c - activations, fused bias+activation epilogues, softmax and residual adds. */
#include <math.h>
#include <string.h>

#include "miclip/nn.h"
#include "parallel.h"

mc_status mc_act_parse(const char *name, mc_act *out, mc_error *err) {
    if (!name) return MC_FAIL(err, MC_ERR_ARG, "activation name missing");
    if (strcmp(name, "gelu") == 0)
        *out = MC_ACT_GELU;
    else if (strcmp(name, "quick_gelu") == 0)
        *out = MC_ACT_QUICK_GELU;
    else if (strcmp(name, "relu") == 0)
        *out = MC_ACT_RELU;
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
#if defined(__clang__) /* clang has no simd attribute: plain const aliases (scalar calls) */
float mc_vexpf(float) __asm__("expf") __attribute__((const, nothrow));
float mc_verff(float) __asm__("erff") __attribute__((const, nothrow));
#else
float mc_vexpf(float) __asm__("expf") __attribute__((simd("notinbranch"), const, nothrow));
float mc_verff(float) __asm__("erff") __attribute__((simd("notinbranch"), const, nothrow));
#endif
#if defined(__clang__) /* clang 14 emits no resolver for clones unused in their own file */
#define MC_CLONES
#else
#define MC_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif

MC_CLONES void mc_gelu(float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        x[i] = 0.5f * x[i] * (1.0f + mc_verff(x[i] * 0.70710678118654752f));
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

typedef struct {
    float *x;
    const float *b;
    int64_t cols;
    mc_act a;
} bias_act_job;

static void bias_act_part(int64_t r0, int64_t r1, void *p) {
    const bias_act_job *j = p;
    for (int64_t r = r0; r < r1; r++) {
        float *xr = j->x + r * j->cols;
        if (j->b) add_bias(xr, j->b, (size_t)j->cols);
        mc_act_apply(j->a, xr, (size_t)j->cols);
    }
}

void mc_bias_act_rows(float *x, const float *b, int64_t rows, int64_t cols, mc_act a) {
    bias_act_job j = {x, b, cols, a};
    mc_parallel_rows(rows, a == MC_ACT_GELU || a == MC_ACT_QUICK_GELU ? 4 * cols : cols,
                     bias_act_part, &j);
}

typedef struct {
    float *x;
    const float *b;
    int64_t C, S;
    mc_act a;
} chan_job;

static void chan_part(int64_t r0, int64_t r1, void *p) {
    const chan_job *j = p;
    for (int64_t i = r0; i < r1; i++) {
        float *xc = j->x + i * j->S;
        if (j->b) {
            const float bc = j->b[i % j->C];
            for (int64_t s = 0; s < j->S; s++) xc[s] += bc;
        }
        mc_act_apply(j->a, xc, (size_t)j->S);
    }
}

void mc_bias_act_channels(float *x, const float *b, int64_t B, int64_t C, int64_t S, mc_act a) {
    chan_job j = {x, b, C, S, a};
    mc_parallel_rows(B * C, S, chan_part, &j);
}

typedef struct {
    float *x;
    int64_t n;
} softmax_job;

static void softmax_part(int64_t r0, int64_t r1, void *p) {
    const softmax_job *j = p;
    const int64_t n = j->n;
    for (int64_t r = r0; r < r1; r++) {
        float *xr = j->x + r * n;
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

void mc_softmax_rows(float *x, int64_t rows, int64_t n) {
    softmax_job j = {x, n};
    mc_parallel_rows(rows, 4 * n, softmax_part, &j);
}

MC_CLONES void mc_add_inplace(float *restrict y, const float *restrict x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}
