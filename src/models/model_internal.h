/* model_internal.h - what the family files (vit.c, resnet.c, text_tower.c) share with model.c:
 * the family interface, the model struct, the weight table that loads and validates tensors by
 * name and shape, the transformer block's tensors, and the run context that applies hooks. Not
 * a public header. */
#ifndef MICLIP_MODELS_INTERNAL_H
#define MICLIP_MODELS_INTERNAL_H

#include <jansson.h>

#include "miclip/model.h"
#include "miclip/model_desc.h"
#include "miclip/safetensors.h"

#define MC_NAME_MAX 192

typedef struct mc_run mc_run;

typedef struct {
    /* Picks the file's tensor prefix, takes the weight table and layers from m->desc
     * (mc_model_adopt_desc) and binds each tensor to its slot (mc_wt_bind). */
    mc_status (*load)(mc_model *m, const json_t *cfg, const char *cfg_label, const mc_st_file *st,
                      mc_error *err);
    /* Called once the weights are in memory (BatchNorm folding, qkv fusion). */
    mc_status (*finish)(mc_model *m, mc_error *err);
    /* Sets the layer shapes for an H x W input (NULL: the input size is fixed). The arena is
     * the description's (mc_model_desc_arena_floats). */
    void (*set_input)(mc_model *m, int64_t H, int64_t W);
    /* The forward entry: images for the vision families (the other NULL)... */
    mc_status (*forward)(mc_model *m, mc_run *r, const float *pixels, int64_t B, int64_t H,
                         int64_t W, float *output, mc_error *err);
    /* ...token rows for the text families (mc_model_forward_tokens). */
    mc_status (*forward_tokens)(mc_model *m, const int32_t *ids, const int32_t *lens, size_t n,
                                int64_t ctx, int32_t eos, float *output, mc_error *err);
    void (*free_impl)(void *impl);
} mc_family_ops;

/* One expected tensor: HF name, shape, and where its float32 copy goes. */
typedef struct {
    char name[MC_NAME_MAX];
    int ndim;
    int64_t shape[4];
    float **slot;
} mc_wentry;

struct mc_model {
    mc_family family;
    mc_model_desc *desc; /* from config.json: dims, layers, the weight table (owned) */
    const mc_family_ops *ops;
    char arch[128];
    char prefix[32]; /* base-model prefix found in the file ("vit.", "resnet." or "") */
    bool strip_base; /* the file leaves out desc->base_prefix (the family decides) */
    int64_t n_params;
    int in_c, in_h, in_w;
    bool any_size; /* ResNet: any input size */
    int64_t out_dim;
    const char *out_name;
    char **labels; /* [n_labels] or NULL */
    int64_t n_labels;
    int tf_layers, tf_tokens, tf_width, tf_heads;

    mc_layer_info *layers;
    int n_layers;

    mc_wentry *w; /* the weight table (m->desc's tensors under the file's prefix) */
    int n_w, next_bind;
    float *weights; /* one block for all of them */

    float *arena;
    size_t arena_floats;
    int64_t plan_B, plan_H, plan_W;

    void *impl; /* family-specific */
};

/* Copies m->desc's weight table (the base-model tensors under m->prefix, which the family set
 * from the file) and layer list into the model, with the input and output facts. */
mc_status mc_model_adopt_desc(mc_model *m, mc_error *err);
/* Sets m->prefix to the description's base-model prefix, or to "" when the file st leaves it
 * out (it lacks probe, a tensor's full name; transformers saves either layout). Without a file
 * (a declaration) the prefix is kept. */
void mc_model_pick_prefix(mc_model *m, const mc_st_file *st, const char *probe);
/* Points slot at the expected tensor named printf(fmt, ...) once the weights are loaded. Every
 * tensor of the table must be bound exactly once (checked after the family's load); a name the
 * description does not list is a bug in the family's code (MC_ASSERT). */
void mc_wt_bind(mc_model *m, float **slot, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A pre- or post-norm transformer block's tensors, as every transformer family (ViT, CLIP's
 * two towers, MPNet) declares them: q, k and v adjacent, so wq is the fused [3D, D] weight and
 * bq the fused [3D] bias (NULL without qkv biases). */
typedef struct {
    float *ln1_w, *ln1_b; /* pre-norm: before attention; MPNet: attention.LayerNorm (post) */
    float *wq, *wk, *wv;
    float *bq, *bk, *bv;
    float *wo, *bo;
    float *ln2_w, *ln2_b; /* pre-norm: before the MLP; MPNet: output.LayerNorm */
    float *w1, *b1, *w2, *b2;
} mc_tf_block;
/* Binds the L blocks' tensors under "<enc><l>." (nm: ln1, q, k, v, out, ln2, fc1, fc2). */
void mc_tf_bind_blocks(mc_model *m, mc_tf_block *blk, int64_t L, bool qkv_bias, const char *enc,
                       const char *const nm[8]);
/* Asserts, once the weights are in memory, that each block's q, k, v (and biases) are adjacent:
 * the loader lays tensors out in the description's order. */
void mc_tf_check_fused(const mc_tf_block *blk, int64_t L, int64_t D, bool qkv_bias);

/* Reads config.json and declares the weight table and layers without loading any weights
 * (the random-model writer walks m->w). The model cannot run. */
mc_status mc_model_declare(const char *cfg_path, mc_model **out, mc_error *err);

/* ---- run context ------------------------------------------------------------------------- */
struct mc_run {
    mc_model *m;
    const mc_forward_opts *o;
    int64_t B;
    int start;   /* layer index of opts.start_at, or -1 */
    int deepest; /* largest hooked layer index, or -1 */
    bool need_output;
    bool stopped;
    unsigned char *hooked; /* [n_layers]: 1 = READ/WRITE hooks, 2 = ATTN hooks (bit flags) */
};

/* Runs the READ/WRITE hooks of layer i on data [B, shape...]. Returns false when the forward
 * must stop (a callback said so, or nothing after i is needed); r->stopped is then set. */
bool mc_run_point(mc_run *r, int i, float *data);
/* True if layer i has ATTN hooks (so the block should record probabilities). */
static inline bool mc_run_wants_attn(const mc_run *r, int i) { return r->hooked[i] & 2; }
/* True if layer i has READ/WRITE hooks. */
static inline bool mc_run_wants(const mc_run *r, int i) { return r->hooked[i] & 1; }
/* Runs the ATTN hooks of layer i on probs [B, H, T, T]. Same return rule as mc_run_point
 * except that it never stops for "nothing needed" (the block output is still to come). */
bool mc_run_attn(mc_run *r, int i, float *probs, int64_t H, int64_t T);

extern const mc_family_ops mc_vit_ops;
extern const mc_family_ops mc_clip_vision_ops;
extern const mc_family_ops mc_resnet_ops;
extern const mc_family_ops mc_clip_text_ops;
extern const mc_family_ops mc_mpnet_ops;

#endif
