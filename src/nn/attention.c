/* attention.c - multi-head self-attention core over a batch: per (batch, head) one sgemm for
 * Q K^T, masks, a row softmax, one sgemm for P V. */
#include <math.h>
#include <string.h>

#include "miclip/nn.h"

size_t mc_attention_workspace(const mc_attn_desc *d) {
    /* The score matrices of all heads of one image: [H, T, T]. */
    return (size_t)d->H * (size_t)d->T * (size_t)d->T;
}

void mc_attention(const mc_attn_desc *d, const float *q, const float *k, const float *v, float *out,
                  float *work) {
    const int64_t B = d->B, T = d->T, H = d->H, hd = d->head_dim, D = H * hd;
    const int64_t ld = d->ld_qkv ? d->ld_qkv : D;
    const float scale = d->scale != 0.0f ? d->scale : 1.0f / sqrtf((float)hd);
    MC_ASSERT(B >= 0 && T > 0 && H > 0 && hd > 0 && ld >= D);
    for (int64_t b = 0; b < B; b++) {
        /* S_h[T,T] = scale * Q_h K_h^T for every head (q/k/v head h: columns h*hd.. of a row) */
        for (int64_t h = 0; h < H; h++)
            mc_sgemm(false, true, T, T, hd, scale, q + b * T * ld + h * hd, ld,
                     k + b * T * ld + h * hd, ld, 0.0f, work + h * T * T, T);
        for (int64_t h = 0; h < H; h++) {
            float *S = work + h * T * T;
            if (d->bias) mc_add_inplace(S, d->bias + h * T * T, (size_t)(T * T));
            if (d->key_mask)
                for (int64_t i = 0; i < T; i++)
                    mc_add_inplace(S + i * T, d->key_mask + b * T, (size_t)T);
            if (d->causal)
                for (int64_t i = 0; i < T; i++)
                    for (int64_t j = i + 1; j < T; j++) S[i * T + j] = -INFINITY;
        }
        mc_softmax_rows(work, H * T, T); /* over keys, all heads at once */
        if (d->probs) memcpy(d->probs + b * H * T * T, work, (size_t)(H * T * T) * sizeof(float));
        /* out_h[T,hd] = P_h V_h, into the head's columns of out (HF's head concatenation) */
        for (int64_t h = 0; h < H; h++)
            mc_sgemm(false, false, T, hd, T, 1.0f, work + h * T * T, T, v + b * T * ld + h * hd, ld,
                     0.0f, out + b * T * D + h * hd, D);
    }
}
