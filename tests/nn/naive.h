/* naive.h - straightforward reference kernels (loops over the definitions, double accumulation),
 * used only by tests as the oracle for the fast kernels in src/nn/. */
#ifndef MICLIP_TESTS_NAIVE_H
#define MICLIP_TESTS_NAIVE_H

#include <stdbool.h>
#include <stdint.h>

/* y[M,N] = x[M,K] W[N,K]^T + b */
void naive_linear(const float *x, const float *W, const float *b, float *y, int64_t M, int64_t K,
                  int64_t N);
void naive_layernorm(const float *x, const float *g, const float *b, float *y, int64_t rows,
                     int64_t dim, float eps);
/* Attention with separate q,k,v [B,T,H*hd]; masks as in mc_attn_desc. */
void naive_attention(const float *q, const float *k, const float *v, float *out, int64_t B,
                     int64_t T, int64_t H, int64_t hd, const float *key_mask, const float *bias,
                     bool causal, float *probs);
/* Direct convolution, NCHW, with bias (may be NULL). */
void naive_conv2d(const float *x, const float *w, const float *bias, float *y, int64_t B,
                  int64_t cin, int64_t H, int64_t W, int64_t cout, int64_t kh, int64_t kw,
                  int64_t stride, int64_t pad);

#endif
