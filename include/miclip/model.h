/* model.h - models loaded from Hugging Face folders, run in float32; the vision models with
 * named hooks.
 *
 * Vision families (mc_model_create chooses from config.json's "architectures" / "model_type"):
 *   vit          ViTForImageClassification (google/vit-base-patch16-224 layout)
 *   resnet       ResNetForImageClassification, bottleneck layers (microsoft/resnet-50 layout);
 *                BatchNorm is folded into the convolutions at load
 *   clip_vision  the vision tower + visual_projection of a CLIPModel (or of a
 *                CLIPVisionModelWithProjection) folder (openai/clip-vit-base-patch16 layout)
 * Text families (mc_model_create_family; the text encoder of text.h wraps them with their
 * tokenizers and is what callers use):
 *   clip_text    the text tower + text_projection of a CLIPModel (or CLIPTextModelWithProjection)
 *   mpnet        a sentence-transformers MPNet folder (the MPNetModel inside it)
 * Every family loads through one path (the description's weight table, bound by name) and is
 * freed by mc_model_free; vision models run with mc_model_forward, text models with
 * mc_model_forward_tokens.
 * Every hyper-parameter comes from config.json, with the config class's default for a missing
 * key (docs/models.md lists them), through the weightless model description (model_desc.h),
 * which also gives the expected tensors, the layer list and the arena. Weights come from model.safetensors (F32, F16 or BF16;
 * converted to F32 once at load). Every expected tensor must be present with its exact shape;
 * a tensor the family does not know is an error naming it (ignored: position_ids,
 * num_batches_tracked, pooler.*, and the text tower of a CLIPModel folder).
 *
 * Layers and hooks (docs/hooks.md). Every hookable point has a stable name (mc_model_layer):
 *   transformers  "embeddings" (alias "0"): the encoder input (ViT: CLS + patches + positions;
 *                 CLIP: after pre_layrnorm), "1".."L": the residual stream after block k
 *                 (HF hidden_states[k]); ViT "layernorm" (final LN, all tokens), "logits";
 *                 CLIP "post_layernorm" (pooled CLS), "image_embeds".
 *   resnet        "embedder.embedder" (stem conv+BN+ReLU), "embedder" (after the max pool),
 *                 "stages.S.layers.L.layer.0/1/2", "stages.S.layers.L.shortcut",
 *                 "stages.S.layers.L" (the layer's output), "stages.S" (the stage's output),
 *                 "pooler" (spatial mean, [C,1,1]), "logits". The prefixes "resnet." and
 *                 "resnet.encoder." are accepted too.
 * A hook is (name, mode, callback, user pointer). READ hooks see the tensor and must not change
 * it; WRITE hooks may change it in place, and the forward continues from the changed tensor;
 * ATTN hooks on a block name ("1".."L") see that block's attention probabilities [B,H,T,T].
 * A callback returning false stops the forward: mc_model_forward then returns MC_OK with
 * *stopped = true and the output unwritten. When output is NULL, the forward also stops by
 * itself right after the deepest hooked point (extraction never pays for the head).
 * Several hooks on one point run in list order.
 *
 * Prefix cache: opts.start_at names a layer whose output the caller supplies in
 * opts.start_state (the tensor a READ hook saw there, same layout); the forward then runs only
 * what follows it. Hooks at start_at itself still run (so an intervention can edit the cached
 * state); hooks before it are an error. Transformers can start at "0".."L"; ResNet at
 * "embedder", "stages.S" and "stages.S.layers.L".
 *
 * Memory: weights live in one block; activations in one arena sized for the largest batch seen
 * so far (planned from the sizes before the first image; a larger batch re-plans once). Nothing
 * is allocated per layer. A model is not thread-safe: one forward at a time.
 *
 * Ownership: mc_model is opaque; mc_model_free frees it and NULLs the handle. Strings and
 * layer descriptions returned are owned by the model. Hook and option structs are borrowed for
 * the call.
 */
#ifndef MICLIP_MODEL_H
#define MICLIP_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "miclip/nn.h"
#include "miclip/status.h"
#include "miclip/tensor.h"

typedef enum {
    MC_FAMILY_VIT = 0,
    MC_FAMILY_RESNET,
    MC_FAMILY_CLIP_VISION,
    MC_FAMILY_CLIP_TEXT,
    MC_FAMILY_MPNET,
    MC_FAMILY_COUNT
} mc_family;

typedef struct mc_model mc_model;

/* One hookable point. shape is per image (the batch dimension comes first at run time):
 * [T, D] for token sequences, [C, H, W] for feature maps, [N] for vectors (logits). */
typedef struct {
    const char *name;
    int ndim;
    int64_t shape[3];
    bool has_attention; /* an ATTN hook may be placed here (transformer blocks "1".."L") */
    bool can_start;     /* valid as opts.start_at */
} mc_layer_info;

/* What a callback sees. data is the live tensor [batch, shape...] (or the attention
 * probabilities [batch, H, T, T] for ATTN hooks), valid only during the call. */
typedef struct {
    const char *name; /* the layer's canonical name */
    int layer;        /* index into the model's layer list */
    int ndim;         /* including the batch dimension */
    int64_t shape[5];
    float *data;
} mc_hook_view;

typedef bool (*mc_hook_fn)(const mc_hook_view *v, void *user);

typedef enum {
    MC_HOOK_READ = 0, /* capture; must not modify */
    MC_HOOK_WRITE,    /* modify in place before the forward continues */
    MC_HOOK_ATTN      /* read a block's attention probabilities */
} mc_hook_mode;

typedef struct {
    const char *name; /* a layer name (aliases accepted) */
    mc_hook_mode mode;
    mc_hook_fn fn;
    void *user;
} mc_hook;

typedef struct {
    const mc_hook *hooks;
    int n_hooks;
    const char *start_at;     /* NULL: run from the pixels */
    const float *start_state; /* [B, shape of start_at] when start_at is set */
} mc_forward_opts;

/* Loads model_dir (config.json + model.safetensors). Errors name the file and the key/tensor. */
mc_status mc_model_create(const char *model_dir, mc_model **out, mc_error *err);
/* Loads model_dir as family f, whatever its config names first (a CLIPModel folder holds two:
 * MC_FAMILY_CLIP_VISION and MC_FAMILY_CLIP_TEXT). The text families' extra check: a CLIP text
 * tower needs text_projection.weight. */
mc_status mc_model_create_family(const char *model_dir, mc_family f, mc_model **out, mc_error *err);
void mc_model_free(mc_model **m); /* NULL-safe; sets *m = NULL */
/* Reads model_dir's config.json alone and declares the model (family, labels, output width,
 * layers) without loading any weights: what a task's key needs (issue 16). It cannot run. */
mc_status mc_model_declare_dir(const char *model_dir, mc_model **out, mc_error *err);

mc_family mc_model_family(const mc_model *m);
/* "vit", "resnet", "clip_vision", "clip_text", "mpnet" */
const char *mc_family_name(mc_family f);
const char *mc_model_architecture(const mc_model *m); /* config's architectures[0] */
/* Parameters of the tensors this model loads (before BatchNorm folding; BN running stats
 * count as parameters, as in a state dict; for CLIP the vision tower and projection only). */
int64_t mc_model_param_count(const mc_model *m);
/* The input the model expects: channels and the fixed image size (transformers), or the
 * default size (ResNet: 224, any size >= 32 works). */
void mc_model_input_size(const mc_model *m, int *channels, int *height, int *width);
/* Width of the output: number of labels, or the CLIP projection size. */
int64_t mc_model_output_dim(const mc_model *m);
/* Text families: the vocabulary size (0 for the vision families). */
int64_t mc_model_vocab_size(const mc_model *m);
/* "logits", "image_embeds", "text_embeds" or "sentence_embedding". */
const char *mc_model_output_name(const mc_model *m);
/* id2label entry i, or NULL when the config has none. */
const char *mc_model_label(const mc_model *m, int64_t i);
/* Transformer facts (0 for ResNet): blocks, tokens (text: max_position_embeddings), width,
 * heads. */
void mc_model_transformer_dims(const mc_model *m, int *layers, int *tokens, int *width, int *heads);

int mc_model_layer_count(const mc_model *m);
const mc_layer_info *mc_model_layer(const mc_model *m, int i);
/* Resolves a name or alias to its index; MC_ERR_ARG listing a few valid names otherwise. */
mc_status mc_model_find_layer(const mc_model *m, const char *name, int *index, mc_error *err);

/* Bytes of the activation arena for a batch of B images at the default input size (for
 * `miclip plan`). */
size_t mc_model_arena_bytes(const mc_model *m, int64_t B);
/* Plans (allocates) the arena for batches up to B images of H x W, and sets the layer shapes
 * for that input size (ResNet maps depend on it). mc_model_forward plans by itself when a batch
 * does not fit; call this first to get the layer shapes, or to fail early on memory. */
mc_status mc_model_plan(mc_model *m, int64_t B, int64_t H, int64_t W, mc_error *err);

/* Runs a batch: pixels [B, C, H, W] (H, W from mc_model_input_size for transformers; any for
 * ResNet), output [B, output_dim] or NULL. opts may be NULL. *stopped (may be NULL) tells
 * whether a hook (or output == NULL) ended the forward before the output. */
mc_status mc_model_forward(mc_model *m, const float *pixels, int64_t B, int64_t H, int64_t W,
                           const mc_forward_opts *opts, float *output, bool *stopped,
                           mc_error *err);

/* Runs n token rows of a text family: ids [n, ctx] (ids outside the vocabulary are an error
 * naming the row). CLIP pools at each row's first eos id (a row without one is an error) and
 * writes text_embeds; MPNet reads each row's length from lens and writes the mean of its
 * tokens' last hidden states (sentence-transformers' Normalize is the caller's, text.h).
 * output [n, mc_model_output_dim]. Rows are run in chunks of packed tokens; the activation
 * arena grows to the largest chunk. An image model is an error. */
mc_status mc_model_forward_tokens(mc_model *m, const int32_t *ids, const int32_t *lens, size_t n,
                                  int64_t ctx, int32_t eos, float *output, mc_error *err);

/* Writes a random-weight Hugging Face folder (config.json, preprocessor_config.json,
 * model.safetensors) for arch: "vit-b16", "resnet50", "clip-b16" (full size: the layouts of
 * google/vit-base-patch16-224, microsoft/resnet-50, openai/clip-vit-base-patch16, CLIP with
 * its text tower too) or "vit-tiny", "resnet-tiny", "clip-tiny" (small, for tests). Weights are
 * a deterministic function of seed: uniform with variance 1/fan_in for matrices and
 * convolutions, LayerNorm/BatchNorm scales near 1 and shifts/statistics non-trivial. dtype is
 * MC_DTYPE_F32, F16 or BF16. out_dir is created if missing. */
mc_status mc_model_write_random(const char *arch, uint64_t seed, mc_dtype dtype,
                                const char *out_dir, mc_error *err);
/* The arch names mc_model_write_random accepts, comma-separated. */
const char *mc_model_random_archs(void);

/* Pooling of a hooked tensor into [B, dim] rows (for capture callbacks). */
typedef enum {
    MC_POOL_ALL = 0, /* no pooling: copy all of it ([B, T*D] / [B, C*H*W]) */
    MC_POOL_CLS,     /* token 0 of a sequence */
    MC_POOL_MEAN,    /* mean over patch tokens 1..T-1 of a sequence; spatial mean of a map */
} mc_pool;
/* Elements per image after pooling v (0 if the pool does not apply to v's layout). */
int64_t mc_pool_dim(const mc_hook_view *v, mc_pool p);
/* out[batch, mc_pool_dim] from v. A vector layer ([B, N]) is copied whatever the pool. */
void mc_pool_apply(const mc_hook_view *v, mc_pool p, float *out);
mc_status mc_pool_parse(const char *s, mc_pool *out, mc_error *err); /* all | cls | mean */

#endif
