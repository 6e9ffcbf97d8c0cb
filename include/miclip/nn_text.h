/* nn_text.h - kernels the text towers need beyond nn.h (owned by the text module; nn.h is the
 * vision engineer's and is not edited).
 *
 * Packed attention: the sequences of a batch are stored back to back without padding, rows
 * [off[s], off[s] + len[s]) of one [T_total, ...] matrix, so the linear layers run as single
 * GEMMs over all real tokens and no work is spent on padding. Attention then runs per
 * sequence: short ones with direct loops (a BLAS call per head would cost more than the
 * arithmetic), long ones with two sgemm calls per head, the same computation as nn.h's
 * mc_attention on a batch of one. Masked keys (causal) get exactly zero weight, as the
 * references' -inf / finfo.min masks give.
 *
 * Pointers are borrowed for the call; inputs and outputs must not overlap.
 */
#ifndef MICLIP_NN_TEXT_H
#define MICLIP_NN_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int64_t n_seq;
    const int64_t *off; /* [n_seq] first row of each sequence */
    const int64_t *len; /* [n_seq] its length (>= 1) */
    int64_t H, head_dim;
    int64_t ld_qkv;    /* row stride of q, k, v (3*H*head_dim for a fused qkv buffer) */
    float scale;       /* multiplies q.k */
    bool causal;       /* key j > query i is dropped (CLIP text) */
    const float *bias; /* optional [H, bias_T, bias_T]: bias[h, i, j] is added for query i,
                          * key j of every sequence (MPNet's relative bias depends on i-j only,
                          * so the top-left block of the longest length serves all) */
    int64_t bias_T;    /* >= every len when bias is set */
    /* Shared prefix (causal only): when prefix_len > 0, positions [0, prefix_len) of every
     * sequence are the rows [prefix_off, prefix_off + prefix_len), shared by all sequences (a
     * common prompt prefix: under the causal mask its hidden states are the same in every
     * sequence), and positions [prefix_len, len[s]) are the rows off[s] + (position -
     * prefix_len). Only those own positions are queried and written; attend the prefix itself
     * with a separate call. */
    int64_t prefix_len, prefix_off;
} mc_attn_packed_desc;

/* Workspace floats for mc_attention_packed: max_len * max_len. */
size_t mc_attention_packed_workspace(int64_t max_len);
/* out[T_total, H*head_dim] (row stride H*head_dim), heads concatenated in head order. */
void mc_attention_packed(const mc_attn_packed_desc *d, const float *q, const float *k,
                         const float *v, float *out, float *work);

#endif
