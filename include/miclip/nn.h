/* nn.h - the float32 kernels every model is built from.
 *
 * Layout conventions (all tensors are dense, C-contiguous float32 unless a stride says otherwise):
 *   - token sequences are [B, T, D] (batch, tokens, width), rows of D;
 *   - feature maps are NCHW [B, C, H, W];
 *   - linear weights are Hugging Face's [out, in] and are used as stored (y = x W^T + b);
 *   - conv weights are [cout, cin, kh, kw].
 *
 * Every matrix product goes through mc_sgemm (one OpenBLAS cblas_sgemm wrapper, row-major), whose
 * thread count is the process setting of miclip.h (mc_set_threads). Element-wise kernels run on
 * the calling thread. None of these functions allocates: callers pass workspaces whose sizes the
 * *_workspace functions report, so a model can plan one arena per batch size.
 *
 * Pointers are borrowed for the duration of the call. Unless a comment says "in place allowed",
 * inputs and outputs must not overlap. Sizes are trusted here (the models check outside sizes
 * before calling); violations of documented preconditions are MC_ASSERT failures.
 *
 * Naive reference versions of the fast kernels live in tests/nn/ and are the oracle for them.
 */
#ifndef MICLIP_NN_H
#define MICLIP_NN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "miclip/status.h"

/* ---- matrix products ------------------------------------------------------------------------ */

/* C[M,N] = alpha * op(A) op(B) + beta * C, row-major; op(X) = X^T when trans_X.
 * lda/ldb/ldc are row strides in elements of the stored (untransposed) matrices. */
void mc_sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
              int64_t ldc);

/* y[M,N] = x[M,K] W[N,K]^T + b[N] (b may be NULL). W is a Hugging Face Linear weight as stored.
 * With accumulate, y += x W^T + b instead (a fused residual add). */
void mc_linear(const float *x, const float *W, const float *b, float *y, int64_t M, int64_t K,
               int64_t N, bool accumulate);

/* ---- normalisation and activations ---------------------------------------------------------- */

/* LayerNorm over the last dimension (torch semantics: biased variance, eps inside the sqrt):
 * y = (x - mean) / sqrt(var + eps) * gamma + beta. gamma/beta may be NULL (1 and 0).
 * In place allowed (y == x). */
void mc_layernorm(const float *x, const float *gamma, const float *beta, float *y, int64_t rows,
                  int64_t dim, float eps);

typedef enum {
    MC_ACT_NONE = 0,
    MC_ACT_GELU,       /* exact: 0.5 x (1 + erf(x / sqrt 2)), HF "gelu" */
    MC_ACT_QUICK_GELU, /* x sigmoid(1.702 x), HF "quick_gelu" */
    MC_ACT_RELU,       /* max(0, x) */
    MC_ACT_COUNT
} mc_act;

/* Parses a Hugging Face hidden_act string ("gelu", "quick_gelu", "relu"). Any other name is
 * MC_ERR_UNSUPPORTED (tanh approximations are refused, not silently approximated). */
mc_status mc_act_parse(const char *name, mc_act *out, mc_error *err);
const char *mc_act_name(mc_act a);

/* In place on x[n]. */
void mc_act_apply(mc_act a, float *x, size_t n);
void mc_gelu(float *x, size_t n);
void mc_quick_gelu(float *x, size_t n);
void mc_relu(float *x, size_t n);

/* x[rows, cols] <- bias-added activation, one bias per column: x[r,c] = act(x[r,c] + b[c]).
 * b may be NULL. The fused epilogue of a linear layer. */
void mc_bias_act_rows(float *x, const float *b, int64_t rows, int64_t cols, mc_act a);
/* x[B, C, S] <- act(x + b[c]) for NCHW maps (S = H*W). b may be NULL. */
void mc_bias_act_channels(float *x, const float *b, int64_t B, int64_t C, int64_t S, mc_act a);

/* Numerically stable softmax over each row of x[rows, n], in place (max subtracted; a row whose
 * entries are all -inf becomes all zeros rather than NaN). */
void mc_softmax_rows(float *x, int64_t rows, int64_t n);

/* y[n] += x[n] (residual add); y and x must not overlap. */
void mc_add_inplace(float *restrict y, const float *restrict x, size_t n);

/* ---- attention ------------------------------------------------------------------------------- */

/* Multi-head self-attention core: out = softmax(scale * Q K^T + masks) V per head.
 * q, k, v: [B, T, H*hd] with row stride ld_qkv (so a fused [B, T, 3D] qkv buffer works with
 * q = buf, k = buf + D, v = buf + 2D, ld_qkv = 3D). out: [B, T, H*hd], row stride H*hd (heads
 * concatenated in head order, as HF's view/permute/reshape does).
 * Masks, all optional, added to the logits before the softmax:
 *   key_mask [B, T]:   additive, per key (0 keep, a large negative or -inf drops the key);
 *   bias     [H, T, T]: additive per head, shared across the batch (MPNet's relative bias);
 *   causal:            key j > query i is dropped (CLIP text).
 * probs (optional) receives the probabilities [B, H, T, T] (hooks: attention maps). */
typedef struct {
    int64_t B, T, H, head_dim;
    int64_t ld_qkv;        /* row stride of q, k and v; 0 means H*head_dim */
    float scale;           /* 0 means 1/sqrt(head_dim) */
    const float *key_mask; /* [B, T] or NULL */
    const float *bias;     /* [H, T, T] or NULL */
    bool causal;
    float *probs; /* [B, H, T, T] out, or NULL */
} mc_attn_desc;

/* Workspace floats mc_attention needs. */
size_t mc_attention_workspace(const mc_attn_desc *d);
void mc_attention(const mc_attn_desc *d, const float *q, const float *k, const float *v, float *out,
                  float *work);

/* ---- convolution and pooling (NCHW) ------------------------------------------------------------ */

typedef struct {
    int64_t cin, cout, kh, kw;
    int64_t stride, pad; /* same in both directions (every model here) */
} mc_conv_desc;

/* Output size of a convolution/pool along one axis: (in + 2 pad - k) / stride + 1. */
int64_t mc_conv_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad);

/* Workspace floats for mc_conv2d on an H x W input (the im2col matrix of one image; 0 for a 1x1
 * stride-1 unpadded conv, which multiplies the input directly). */
size_t mc_conv2d_workspace(const mc_conv_desc *c, int64_t H, int64_t W);

/* y[B, cout, Ho, Wo] = act(conv(x[B, cin, H, W], w[cout, cin, kh, kw]) + bias + beta * y).
 * beta is 0 (overwrite) or 1 (accumulate onto y: a fused residual add before the activation).
 * bias may be NULL. work has mc_conv2d_workspace floats. */
void mc_conv2d(const mc_conv_desc *c, const float *x, int64_t B, int64_t H, int64_t W,
               const float *w, const float *bias, float beta, mc_act act, float *y, float *work);

/* Folds an eval BatchNorm into the preceding convolution, in place:
 * w[cout, K] *= gamma/sqrt(var+eps) per output row; bias_out[c] = beta - mean*gamma/sqrt(var+eps)
 * (plus the conv's own bias times the scale, if conv_bias is not NULL). */
void mc_bn_fold(float *w, float *bias_out, const float *conv_bias, const float *gamma,
                const float *beta, const float *mean, const float *var, float eps, int64_t cout,
                int64_t K);

/* Max pool k x k, stride, padding counted as -inf. y: [B, C, Ho, Wo]. */
void mc_maxpool2d(const float *x, int64_t B, int64_t C, int64_t H, int64_t W, int64_t k,
                  int64_t stride, int64_t pad, float *y);
/* Average pool k x k; padding counts as zeros in the divisor (torch count_include_pad=True). */
void mc_avgpool2d(const float *x, int64_t B, int64_t C, int64_t H, int64_t W, int64_t k,
                  int64_t stride, int64_t pad, float *y);
/* y[B, C] = mean over H*W of x[B, C, H, W] (AdaptiveAvgPool2d(1)). */
void mc_spatial_mean(const float *x, int64_t B, int64_t C, int64_t S, float *y);

/* Mean over tokens [from, T) of x[B, T, D] (from = 1: the patch mean of a ViT). y: [B, D].
 * (CLS pooling needs no kernel: it is row 0 of each sequence.) */
void mc_token_mean(const float *x, int64_t B, int64_t T, int64_t D, int64_t from, float *y);

#endif
