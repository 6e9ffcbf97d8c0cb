/* prefix_cache.h - interventions run the target from a cached prefix (design: "Interventions
 * reuse a cached prefix").
 *
 * The runner is the target model planned for intervene.batch_size images, with the shape of its
 * state at intervene.layer. The prefix cache of one dataset and seed holds the target's state at
 * intervene.layer (every token / position, float32 or float16 by intervene.cache_dtype, as a READ
 * hook sees it) of each valid image in
 * OUTPUT_DIR/intervene/prefix-<split>-l<layer>-<key16>.h5 (shared by the seeds that share the
 * extraction store), rows sorted by (class, image
 * index), with the clean logits and predictions computed by running the suffix from the stored
 * state. Work units are fixed batches of at most intervene.batch_size images of one class,
 * whatever the rank count, so every image is always computed in the same batch; units are dealt
 * round-robin and marked done as extract does (resumable). Tasks sharing a prefix under a Slurm
 * array wait for its writer.
 *
 * Ownership: mc_runner_init / mc_prefix_open fill caller-owned structs released by
 * mc_runner_free / mc_prefix_close (NULL-safe, zero the struct).
 */
#ifndef MICLIP_METHOD_PREFIX_CACHE_H
#define MICLIP_METHOD_PREFIX_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "method/keys.h"
#include "miclip/image.h"
#include "miclip/model.h"
#include "miclip/stages.h"
#include "miclip/store.h"

/* The target model, run from the prefix. */
typedef struct {
    mc_model *m;
    mc_preproc pp;
    int th, tw;
    const char *layer;   /* intervene.layer (borrowed) */
    bool map;            /* [C, H, W] (ResNet) rather than [T, D] */
    int64_t tokens, dim; /* T and D, or H*W and C */
    int64_t per;         /* floats per image of the state */
    int ndim;            /* of the state, per image */
    int64_t shape[3];
    int64_t out_dim;
    bool zeroshot;      /* a CLIP target: classes by cosine with their text embeddings */
    double logit_scale; /* CLIP target: exp(logit_scale) of its weights, else 100; 1 otherwise */
    char hash[MC_KEY_HEX];
} mc_runner;

/* Collective. Loads and plans models.target for intervene.layer. */
mc_status mc_runner_init(const mc_comm *c, const mc_config *cfg, mc_runner *R, mc_error *err);
/* Collective. What the keys need of the runner, without loading weights (issue 16): the target
 * declared from its config.json (labels, out_dim, zeroshot), layer and hash; m cannot run and
 * the state's shape is not set. mc_runner_free releases it. */
mc_status mc_runner_find(const mc_comm *c, const mc_config *cfg, mc_runner *R, mc_error *err);
void mc_runner_free(mc_runner *R);
/* Predictions in the dataset's class space: a classifier's argmax mapped to the dataset class of
 * that label (-1: a target class outside the dataset); a CLIP target classifies zero-shot. prob
 * receives the probability of dataset class k (softmax of the logits, or of 100 x the cosines).
 * scores: [B * C] scratch for a CLIP target. */
void mc_runner_predict(const mc_runner *R, const int32_t *class_of_target, const float *class_emb,
                       int64_t C, int64_t k, const float *out, int64_t B, int32_t *pred,
                       float *prob, float *scores);

/* The prefix cache of one dataset. */
typedef struct {
    mc_split split;
    bool skip; /* a classifier target without any of the dataset's classes */
    char path[MC_PATH_CAP];
    char key[MC_KEY_HEX];
    int64_t C;                /* the dataset's classes */
    char **class_names;       /* [C] */
    int32_t *class_of_target; /* [out_dim]: dataset class of each target label, or -1 */
    float *class_emb;         /* [C * out_dim]: prompted class text embeddings (CLIP target) */
    int64_t n;                /* rows: valid images with a class, sorted by (class, index) */
    int64_t *first;           /* [C + 1]: class c's rows are [first[c], first[c+1]) */
    int32_t *labels;          /* [n] */
    int32_t *clean_pred;      /* [n] */
    float *clean_prob;        /* [n]: probability of the image's class */
    mc_store *st;             /* open read-only once complete */
    /* intervene.prefix: recompute: the store holds no state; mc_prefix_state runs the layers
     * before intervene.layer again, from the images, in the cache's own fixed batches. */
    bool recompute;
    int64_t bs;   /* intervene.batch_size */
    char **paths; /* [n_paths] the extraction store's image paths (recompute) */
    int64_t n_paths;
    int64_t *image;           /* [n] each row's image index (recompute) */
    float *pix, *batch;       /* scratch: one batch's pixels and state (recompute) */
    int64_t batch_b, batch_e; /* the rows batch holds (recompute; 0, 0: none yet) */
} mc_prefix_set;

/* Collective. Finds the split's extraction store, lists its valid images by class, and builds (or
 * resumes, or opens) the prefix cache. */
mc_status mc_prefix_open(const mc_comm *c, const mc_config *cfg, mc_runner *R, mc_split split,
                         int64_t seed, mc_prefix_set *p, mc_error *err);
/* Collective. The same up to the cache's key and path (skip, C, class names, rows, key, path),
 * without opening or building the cache: R may come from mc_runner_find. */
mc_status mc_prefix_find(const mc_comm *c, const mc_config *cfg, mc_runner *R, mc_split split,
                         int64_t seed, mc_prefix_set *p, mc_error *err);
void mc_prefix_close(mc_prefix_set *p);
/* Collective. The provenance of a store derived from p's prefix (the prefix itself, the SAE
 * codes, the oracle's scores): stage intervene, the target's hash, p's split, no seed. */
mc_status mc_prefix_provenance(mc_store *st, const mc_config *cfg, const mc_runner *R,
                               const mc_prefix_set *p, mc_error *err);
/* Local. The state at intervene.layer of rows [b, e) of p into state[(e - b) * R->per], float32:
 * read from the cache, or (p->recompute) computed from the images by the forward to the layer,
 * each row in the fixed batch the cache computes it in, so both give the same floats. */
mc_status mc_prefix_state(const mc_runner *R, mc_prefix_set *p, int64_t b, int64_t e, float *state,
                          mc_error *err);

/* One work unit: rows [b, e) of class c. */
typedef struct {
    int64_t c, b, e;
} mc_row_unit;

/* The fixed batches: each class's rows cut in pieces of at most bs (malloc'd, *n_out of them). */
mc_row_unit *mc_class_batches(const int64_t *first, int64_t C, int64_t bs, int64_t *n_out);

#endif
