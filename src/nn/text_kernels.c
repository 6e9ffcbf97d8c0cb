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

void mc_attention_packed(const mc_attn_packed_desc *d, const float *q, const float *k,
                         const float *v, float *out, float *work) {
    const int64_t H = d->H, hd = d->head_dim, D = H * hd, ld = d->ld_qkv ? d->ld_qkv : D;
    const int64_t P = d->prefix_len;
    MC_ASSERT(H > 0 && hd > 0 && ld >= D && P >= 0 && (P == 0 || (d->causal && !d->bias)));
    for (int64_t s = 0; s < d->n_seq; s++) {
        /* positions [P, L) are queried; key position j lives at row kr(j) */
        const int64_t L = d->len[s], o = d->off[s], Lq = L - P;
        MC_ASSERT(Lq >= 1 && (!d->bias || L <= d->bias_T));
        for (int64_t h = 0; h < H; h++) {
            const float *qh = q + o * ld + h * hd; /* query position P + i: row i */
            const float *ko = k + o * ld + h * hd, *vo = v + o * ld + h * hd;
            const float *kp = k + d->prefix_off * ld + h * hd,
                        *vp = v + d->prefix_off * ld + h * hd;
            const float *bh = d->bias ? d->bias + h * d->bias_T * d->bias_T : NULL;
            float *oh = out + o * D + h * hd;
            float *S = work; /* [Lq, L]: query i (position P + i), key position j */
            if (L > MC_PACKED_DIRECT_MAX) {
                if (P) mc_sgemm(false, true, Lq, P, hd, d->scale, qh, ld, kp, ld, 0.0f, S, L);
                mc_sgemm(false, true, Lq, Lq, hd, d->scale, qh, ld, ko, ld, 0.0f, S + P, L);
            } else {
                for (int64_t i = 0; i < Lq; i++) {
                    const int64_t nj = d->causal ? P + i + 1 : L;
                    const float *a = qh + i * ld;
                    for (int64_t j = 0; j < nj; j++) {
                        const float *b = j < P ? kp + j * ld : ko + (j - P) * ld;
                        float acc = 0.0f;
                        for (int64_t c = 0; c < hd; c++) acc += a[c] * b[c];
                        S[i * L + j] = acc * d->scale;
                    }
                }
            }
            for (int64_t i = 0; i < Lq; i++) {
                const int64_t nj = d->causal ? P + i + 1 : L;
                float *row = S + i * L;
                if (bh)
                    for (int64_t j = 0; j < nj; j++) row[j] += bh[(P + i) * d->bias_T + j];
                softmax_row(row, nj);
                for (int64_t j = nj; j < L; j++) row[j] = 0.0f;
            }
            if (L > MC_PACKED_DIRECT_MAX) {
                if (P) mc_sgemm(false, false, Lq, hd, P, 1.0f, S, L, vp, ld, 0.0f, oh, D);
                mc_sgemm(false, false, Lq, hd, Lq, 1.0f, S + P, L, vo, ld, P ? 1.0f : 0.0f, oh, D);
            } else {
                for (int64_t i = 0; i < Lq; i++) {
                    float *oi = oh + i * D;
                    memset(oi, 0, (size_t)hd * sizeof *oi);
                    const int64_t nj = d->causal ? P + i + 1 : L;
                    for (int64_t j = 0; j < nj; j++) {
                        const float p = S[i * L + j], *vj = j < P ? vp + j * ld : vo + (j - P) * ld;
                        for (int64_t c = 0; c < hd; c++) oi[c] += p * vj[c];
                    }
                }
            }
        }
    }
}
