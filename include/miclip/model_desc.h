/* model_desc.h - the weightless description of a model, read from config.json alone.
 *
 * One description per network (a CLIP folder has two: its vision tower and its text tower):
 * the hyper-parameters, the list of hookable layers (the names users give in configs, the
 * output shape per image or token sequence, the multiply-adds of each), the weight table
 * (every tensor's name and shape, in load order), the parameter count and the activation arena.
 * It is the single source of these facts: the loaders (model.h, text.h) take their dims, layer
 * list and expected tensor shapes from it, and `miclip plan` / the pre-flight take their costs
 * and layer names from it, so a shape the loader checks and a shape the planner counts cannot
 * drift apart. Building one reads no weights.
 *
 * Families and what their layers are (docs/hooks.md, docs/architecture.md):
 *   VIT, CLIP_VISION  "embeddings", "1".."L", then "layernorm" [T, D] / "post_layernorm" [D],
 *                     then "logits" / "image_embeds" [N]; shapes per image.
 *   RESNET            stem, pool, per bottleneck layer shortcut, layer.0..2, the layer and the
 *                     stage, then "pooler" [C, 1, 1] and "logits"; [C, H, W] at the input size
 *                     set last (224 x 224 until mc_model_desc_set_input).
 *   CLIP_TEXT, MPNET  "embeddings", "1".."L", CLIP "final_layer_norm" [T, D] and "text_embeds"
 *                     [proj]; shapes per sequence of T = max_position_embeddings tokens.
 * MACs count multiply-adds from first principles: convolutions and linear layers
 * (in x out x output positions), attention scores and mixing (2 T^2 D per block); norms,
 * activations, pooling and softmax are not counted. mac is the layer's own work; mac_cum is the
 * work of a forward that stops right after the layer (the forward order, as the loader runs it).
 *
 * Ownership: the description owns its arrays; mc_model_desc_free releases them.
 */
#ifndef MICLIP_MODEL_DESC_H
#define MICLIP_MODEL_DESC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "miclip/nn.h"
#include "miclip/status.h"

typedef enum {
    MC_DESC_VIT = 0,
    MC_DESC_RESNET,
    MC_DESC_CLIP_VISION,
    MC_DESC_CLIP_TEXT,
    MC_DESC_MPNET,
    MC_DESC_FAMILY_COUNT
} mc_desc_family;

#define MC_DESC_TENSOR_NAME_MAX 192
#define MC_DESC_LAYER_NAME_MAX 48
#define MC_DESC_MAX_STAGES 16

typedef struct {
    char name[MC_DESC_LAYER_NAME_MAX];
    int ndim;
    int64_t shape[3];   /* per image / sequence: [T, D], [C, H, W] or [N] */
    bool has_attention; /* a transformer block: ATTN hooks may go here */
    bool can_start;     /* a prefix-cached forward may start here */
    double mac;         /* multiply-adds of this layer alone, per image / sequence */
    double mac_cum;     /* multiply-adds of a forward that stops after this layer */
} mc_desc_layer;

typedef struct {
    char name[MC_DESC_TENSOR_NAME_MAX]; /* with the base-model prefix when base is true */
    bool base; /* carries base_prefix ("vit.", "resnet.", ...), which a file may leave out */
    int ndim;
    int64_t shape[4];
} mc_desc_tensor;

typedef struct {
    mc_desc_family family;
    const char *base_prefix; /* what the tensors with base set start with ("" when none) */
    /* input: channels and image size (vision); ResNet: the size its layer shapes describe */
    int64_t C, image, in_h, in_w;
    /* transformers: width, blocks, heads, MLP width, tokens (T = side^2 + 1 for images, the
     * context length for text), patch size and patches per side */
    int64_t D, L, H, I, T, patch, side;
    int64_t vocab, buckets; /* text: vocabulary; MPNet: relative attention buckets */
    bool qkv_bias;          /* ViT: q, k, v carry biases */
    double eps;             /* LayerNorm epsilon (transformers) */
    mc_act act;             /* hidden_act */
    /* ResNet: stem width, stages, downsampling placement */
    int64_t E, n_stages, hs[MC_DESC_MAX_STAGES], depth[MC_DESC_MAX_STAGES];
    bool ds_first, ds_bneck;
    int64_t n_labels;     /* classifiers: id2label size, else num_labels (default 2) */
    int64_t out_dim;      /* labels, the CLIP projection size, or D (MPNet) */
    const char *out_name; /* the last layer's name: "logits", "image_embeds", ... */

    mc_desc_layer *layers;
    int n_layers;
    mc_desc_tensor *tensors;
    int n_tensors;
    int64_t params; /* elements of every tensor (BatchNorm statistics included) */
    double mac;     /* a full forward per image / sequence (the last layer's mac_cum) */
} mc_model_desc;

/* Builds the description of family fam from a parsed config.json (file labels the messages).
 * For CLIP_VISION the config may be a CLIPModel's (vision_config, overridden by a legacy
 * vision_config_dict) or a CLIPVisionModelWithProjection's (model_type "clip_vision_model");
 * CLIP_TEXT reads text_config (+ text_config_dict) and the top-level projection_dim. Missing
 * keys take the Hugging Face config class's default. Errors name the file and the key. */
mc_status mc_model_desc_build(const json_t *cfg, const char *file, mc_desc_family fam,
                              mc_model_desc **out, mc_error *err);
void mc_model_desc_free(mc_model_desc **d); /* NULL-safe; sets *d = NULL */

const char *mc_desc_family_name(mc_desc_family f); /* "vit", ..., "clip_text", "mpnet" */

/* Exact name lookup (no aliases); -1 when absent. */
int mc_model_desc_layer_index(const mc_model_desc *d, const char *name);
/* Resolves a layer name as users may give it (model.h: "0", "last_hidden_state",
 * "pooler_output", ResNet's "resnet." / "resnet.encoder." prefixes and HF module aliases) to an
 * index; -1 when it names no layer. */
int mc_model_desc_find_layer(const mc_model_desc *d, const char *name);

/* ResNet: recomputes the layer shapes and MACs for an H x W input (any size >= 32). A no-op
 * for the transformers, whose input size is fixed. */
void mc_model_desc_set_input(mc_model_desc *d, int64_t H, int64_t W);

/* Floats of the activation arena the loader allocates for a batch of B images of H x W
 * (transformers: sequences of T tokens; H, W are ignored). */
size_t mc_model_desc_arena_floats(const mc_model_desc *d, int64_t B, int64_t H, int64_t W);

/* The arena layouts the forwards use, in floats (the totals above are built from these).
 * Vision transformers, for B images: */
typedef struct {
    size_t x, ln, qkv, ctx, mlp, work, probs, patches, pooled, out, total;
} mc_desc_vit_arena;
mc_desc_vit_arena mc_desc_vit_arena_layout(const mc_model_desc *d, int64_t B);
/* ResNet, for an H x W input: the largest per-image map (five buffers of it per image) and the
 * largest im2col workspace. */
void mc_desc_resnet_buffers(const mc_model_desc *d, int64_t H, int64_t W, size_t *act,
                            size_t *work);

/* The text towers' packed forward (text.h) of width D, MLP width I and H heads: floats for
 * `rows` tokens of `n_seq` sequences packed back to back, the longest max_len tokens. For B
 * sequences of T tokens this is mc_model_desc_arena_floats(d, B, 0, 0). */
size_t mc_desc_text_arena_floats(int64_t D, int64_t I, int64_t H, int64_t rows, int64_t max_len,
                                 int64_t n_seq);

/* Multiply-adds of one pre- or post-norm transformer block over T tokens of width D with an MLP
 * of width I: q, k, v and output projections 4 T D^2, scores and mixing 2 T^2 D, MLP 2 T D I. */
double mc_desc_block_mac(double T, double D, double I);

#endif
