/* gemm.c - the single sgemm wrapper (row-major OpenBLAS) and the linear layer built on it. */
#include <cblas.h>

#include "miclip/nn.h"

void mc_sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
              int64_t ldc) {
    MC_ASSERT(M >= 0 && N >= 0 && K >= 0);
    if (M == 0 || N == 0) return;
    /* OpenBLAS takes blasint (int here); every model dimension is far below 2^31 per operand,
     * but check anyway rather than truncate silently. */
    MC_ASSERT(M < INT32_MAX && N < INT32_MAX && K < INT32_MAX && lda < INT32_MAX &&
              ldb < INT32_MAX && ldc < INT32_MAX);
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K, alpha, A, (int)lda, B,
                (int)ldb, beta, C, (int)ldc);
}

void mc_linear(const float *x, const float *W, const float *b, float *y, int64_t M, int64_t K,
               int64_t N, bool accumulate) {
    /* HF: y = x @ W.T + b with W [N, K] as stored, so B = W with trans_b. */
    mc_sgemm(false, true, M, N, K, 1.0f, x, K, W, K, accumulate ? 1.0f : 0.0f, y, N);
    if (b) mc_bias_act_rows(y, b, M, N, MC_ACT_NONE);
}
