/* text_kernels.c - packed (padding-free) multi-head attention for the text towers
 * (nn_text.h). */
#include <math.h>
#include <string.h>

#include "miclip/nn.h"
#include "miclip/nn_text.h"

#define MC_PACKED_DIRECT_MAX 48 /* sequences up to this length use direct loops */

size_t mc_attention_packed_workspace(int64_t max_len) { return (size_t)max_len * (size_t)max_len; }

static void softmax_row(float *s, int64_t n) {
    float m = s[0];
    for (int64_t j = 1; j < n; j++) m = s[j] > m ? s[j] : m;
    float sum = 0.0f;
    for (int64_t j = 0; j < n; j++) {
        s[j] = expf(s[j] - m);
        sum += s[j];
    }
    float inv = 1.0f / sum;
    for (int64_t j = 0; j < n; j++) s[j] *= inv;
}

void mc_attention_packed(const mc_attn_packed_desc *d, const float *q, const float *k, const float *v,
                         float *out, float *work) {
    const int64_t H = d->H, hd = d->head_dim, D = H * hd, ld = d->ld_qkv ? d->ld_qkv : D;
    MC_ASSERT(H > 0 && hd > 0 && ld >= D);
    for (int64_t s = 0; s < d->n_seq; s++) {
        const int64_t L = d->len[s], o = d->off[s];
        MC_ASSERT(L >= 1 && (!d->bias || L <= d->bias_T));
        for (int64_t h = 0; h < H; h++) {
            const float *qh = q + o * ld + h * hd, *kh = k + o * ld + h * hd, *vh = v + o * ld + h * hd;
            const float *bh = d->bias ? d->bias + h * d->bias_T * d->bias_T : NULL;
            float *oh = out + o * D + h * hd;
            float *S = work;
            if (L > MC_PACKED_DIRECT_MAX) {
                mc_sgemm(false, true, L, L, hd, d->scale, qh, ld, kh, ld, 0.0f, S, L);
            } else {
                for (int64_t i = 0; i < L; i++) {
                    int64_t nj = d->causal ? i + 1 : L;
                    for (int64_t j = 0; j < nj; j++) {
                        const float *a = qh + i * ld, *b = kh + j * ld;
                        float acc = 0.0f;
                        for (int64_t c = 0; c < hd; c++) acc += a[c] * b[c];
                        S[i * L + j] = acc * d->scale;
                    }
                }
            }
            for (int64_t i = 0; i < L; i++) {
                int64_t nj = d->causal ? i + 1 : L;
                float *row = S + i * L;
                if (bh)
                    for (int64_t j = 0; j < nj; j++) row[j] += bh[i * d->bias_T + j];
                softmax_row(row, nj);
                for (int64_t j = nj; j < L; j++) row[j] = 0.0f;
            }
            if (L > MC_PACKED_DIRECT_MAX) {
                mc_sgemm(false, false, L, hd, L, 1.0f, S, L, vh, ld, 0.0f, oh, D);
            } else {
                for (int64_t i = 0; i < L; i++) {
                    float *oi = oh + i * D;
                    memset(oi, 0, (size_t)hd * sizeof *oi);
                    int64_t nj = d->causal ? i + 1 : L;
                    for (int64_t j = 0; j < nj; j++) {
                        const float p = S[i * L + j], *vj = vh + j * ld;
                        for (int64_t c = 0; c < hd; c++) oi[c] += p * vj[c];
                    }
                }
            }
        }
    }
}
