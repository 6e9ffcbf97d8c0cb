/* text_encoder_int.h - the text encoder struct, shared by text_encoder.c (loading) and
 * text_forward.c (forward passes and the embedding API). Not a public header. */
#ifndef MICLIP_TEXT_ENCODER_INT_H
#define MICLIP_TEXT_ENCODER_INT_H

#include "miclip/hash.h"
#include "miclip/nn.h"
#include "miclip/text.h"

typedef struct {
    float *ln1_w, *ln1_b; /* CLIP: layer_norm1 (pre-norm); MPNet: attention.LayerNorm (post) */
    float *qkv_w, *qkv_b; /* q, k, v fused: [3D, D], [3D] */
    float *o_w, *o_b;
    float *ln2_w, *ln2_b; /* CLIP: layer_norm2; MPNet: output.LayerNorm */
    float *fc1_w, *fc1_b; /* [I, D] */
    float *fc2_w, *fc2_b; /* [D, I] */
} text_layer;

struct mc_text_encoder {
    mc_text_family family;
    char dir[4096];
    int64_t vocab, D, I, L, H, max_pos, proj, buckets;
    float eps;
    mc_act act;
    bool normalize; /* MPNet: a Normalize module */
    float *block;   /* all weights */
    float *tok_emb, *pos_emb, *emb_ln_w, *emb_ln_b, *final_ln_w, *final_ln_b, *proj_w, *rel_bias;
    text_layer *layers;
    mc_clip_tok *clip;
    mc_wordpiece *wp;
    int ctx;
    char hash[MC_SHA256_HEX_LEN + 1];
    /* activation arena, grown on demand */
    float *arena;
    size_t arena_floats;
    int64_t *off, *len;
    size_t off_cap;
};

#endif
