/* attention.c - multi-head self-attention core over a batch: per (batch, head) one sgemm for
 * Q K^T, masks, a row softmax, one sgemm for P V. */
#include <math.h>
#include <string.h>

#include "miclip/nn.h"

size_t mc_attention_workspace(const mc_attn_desc *d) {
    /* One [T, T] score matrix per (batch, head) pair at a time. */
    return (size_t)d->T * (size_t)d->T;
}

void mc_attention(const mc_attn_desc *d, const float *q, const float *k, const float *v,
                  float *out, float *work) {
    const int64_t B = d->B, T = d->T, H = d->H, hd = d->head_dim, D = H * hd;
    const int64_t ld = d->ld_qkv ? d->ld_qkv : D;
    const float scale = d->scale != 0.0f ? d->scale : 1.0f / sqrtf((float)hd);
    MC_ASSERT(B >= 0 && T > 0 && H > 0 && hd > 0 && ld >= D);
    float *S = work;
    for (int64_t b = 0; b < B; b++) {
        for (int64_t h = 0; h < H; h++) {
            const float *qb = q + b * T * ld + h * hd;
            const float *kb = k + b * T * ld + h * hd;
            const float *vb = v + b * T * ld + h * hd;
            /* S[T,T] = scale * Q_h K_h^T */
            mc_sgemm(false, true, T, T, hd, scale, qb, ld, kb, ld, 0.0f, S, T);
            if (d->bias) {
                const float *bh = d->bias + h * T * T;
                for (int64_t i = 0; i < T * T; i++) S[i] += bh[i];
            }
            if (d->key_mask) {
                const float *m = d->key_mask + b * T;
                for (int64_t i = 0; i < T; i++)
                    for (int64_t j = 0; j < T; j++) S[i * T + j] += m[j];
            }
            if (d->causal) {
                for (int64_t i = 0; i < T; i++)
                    for (int64_t j = i + 1; j < T; j++) S[i * T + j] = -INFINITY;
            }
            mc_softmax_rows(S, T, T);
            if (d->probs) memcpy(d->probs + (b * H + h) * T * T, S, (size_t)(T * T) * sizeof(float));
            /* out_h[T,hd] = P V_h, written into the head's columns of out */
            mc_sgemm(false, false, T, hd, T, 1.0f, S, T, vb, ld, 0.0f, out + b * T * D + h * hd, D);
        }
    }
}
