/* text_encoder_int.h - the text encoder struct, shared by text_encoder.c (loading) and
 * text_forward.c (forward passes and the embedding API). Not a public header. */
#ifndef MICLIP_TEXT_ENCODER_INT_H
#define MICLIP_TEXT_ENCODER_INT_H

#include "miclip/hash.h"
#include "miclip/model.h"
#include "miclip/text.h"

/* The tokenizer and the sentence-transformers modules around a text model (model.h: the
 * clip_text or mpnet family, loaded and run like the vision models). */
struct mc_text_encoder {
    mc_text_family family;
    char dir[4096];
    mc_model *m;
    int64_t vocab, max_pos;
    int dim;        /* output width: CLIP's projection, MPNet's hidden size */
    bool normalize; /* MPNet: a Normalize module */
    mc_clip_tok *clip;
    mc_wordpiece *wp;
    int ctx;
    char hash[MC_SHA256_HEX_LEN + 1];
};

#endif
