/* train.h - the numerical core of miclip's training: a counter-based RNG, Adam, the neuron
 * encoder E_n with the symmetric InfoNCE loss, and the top-k sparse autoencoder.
 *
 * Everything here is data-parallel over an mc_comm and gives bit-identical results for 1, 2, 4
 * (any number of) ranks at the same BLAS thread count. The scheme (docs/training.md):
 *  - randomness is a pure function of (seed, stream, global index) (mc_rng_*), so the data
 *    subset, the batch order and the initial weights do not depend on the rank count;
 *  - a global batch of B rows is cut into fixed "chunks" of chunk_rows rows (the last may be
 *    short); ranks own contiguous runs of whole chunks (mc_train_chunk_share), and every dense
 *    product over batch rows is done per chunk, so each row's result does not depend on which
 *    rank computed it;
 *  - E_n: normalised targets and the logits' rows are all-gathered (MPI_Allgatherv), the loss
 *    and everything O(B x classes) is computed by every rank over the whole batch in global row
 *    order; the weight gradient is a left fold over chunk partials in global chunk order,
 *    passed from rank to rank (chain), then broadcast;
 *  - SAE: the dense encoder product and the top-k selection run on local chunks; the inputs
 *    and the sparse codes (k indices and values per row, plus the AuxK codes) are
 *    all-gathered, and the sparse decoder, loss and backward run over the whole batch on
 *    every rank in global row order. That costs O(B k n) per rank, against O(B m n / P) for the
 *    dense part, and needs no gradient reduction at all.
 *
 * Data comes through callbacks that are handed global sample indices, so a stage can stream
 * batches from an HDF5 store larger than memory.
 *
 * Ownership: create functions allocate and return an owned object; free functions take the
 * address of the handle, accept NULL and set it to NULL. Arrays passed in are borrowed for the
 * call unless a comment says otherwise. Parameters are plain float32 arrays, row-major.
 */
#ifndef MICLIP_TRAIN_H
#define MICLIP_TRAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "miclip/comm.h"
#include "miclip/status.h"

/* --- counter-based RNG ---------------------------------------------------------------------
 * A keyed hash (splitmix64 finaliser, chained) of (seed, stream, index): no state, any index
 * can be drawn in any order on any rank. Streams name the purpose (below) so different uses
 * of one seed never share numbers. */
enum {
    MC_RNG_STREAM_SUBSET = 1, /* which samples form the training subset */
    MC_RNG_STREAM_ORDER = 2,  /* batch order: stream + epoch * 16 */
    MC_RNG_STREAM_INIT = 3,   /* weight initialisation: stream + tensor id * 16 */
};
uint64_t mc_rng_u64(uint64_t seed, uint64_t stream, uint64_t index);
/* Uniform in [0, 1) with 53 random bits. */
double mc_rng_uniform(uint64_t seed, uint64_t stream, uint64_t index);
/* Standard normal (Box-Muller on draws 2*index and 2*index+1). */
double mc_rng_normal(uint64_t seed, uint64_t stream, uint64_t index);
/* Uniform integer in [0, bound) (bound > 0), unbiased (Lemire's multiply with rejection; a
 * rejected draw moves to the next counter of a sub-stream). */
uint64_t mc_rng_below(uint64_t seed, uint64_t stream, uint64_t index, uint64_t bound);
/* The training subset: n_pick distinct indices of 0..n_total-1 (the first n_pick of the
 * permutation of stream MC_RNG_STREAM_SUBSET), sorted ascending into out[n_pick], so a store is
 * read in order. n_pick <= n_total. scratch holds n_total int64 (caller-owned). */
void mc_train_subset(uint64_t seed, int64_t n_total, int64_t n_pick, int64_t *scratch,
                     int64_t *out);
/* Fills perm[0..n) with a permutation of 0..n-1 (Fisher-Yates driven by mc_rng_below). */
void mc_rng_permutation(uint64_t seed, uint64_t stream, int64_t n, int64_t *perm);
/* The epoch's sample order: blocks of `block` consecutive samples (block >= 1; 1 = a full
 * shuffle) are permuted, samples inside a block stay in order, so a store can be read in
 * contiguous runs. order[0..n) receives sample indices. */
void mc_train_epoch_order(uint64_t seed, int epoch, int64_t n, int64_t block, int64_t *order);

/* --- Adam (PyTorch torch.optim.Adam semantics, bias-corrected, L2 weight decay) ------------ */
typedef struct {
    double lr;           /* 1e-3 */
    double beta1, beta2; /* 0.9, 0.999 */
    double eps;          /* 1e-8, added to sqrt(v_hat) as PyTorch does */
    double weight_decay; /* 0: added to the gradient (torch Adam, not AdamW) */
} mc_adam_config;
mc_adam_config mc_adam_defaults(void);

/* The moments of n parameters and the step counter. m and v are owned. */
typedef struct {
    mc_adam_config cfg;
    size_t n;
    int64_t step; /* number of updates taken so far */
    float *m, *v;
} mc_adam;

mc_status mc_adam_init(mc_adam *a, size_t n, const mc_adam_config *cfg, mc_error *err);
void mc_adam_free(mc_adam *a); /* frees m and v, zeroes the struct; NULL-safe */
/* One update of param[0..n) with grad[0..n). step is incremented first (step 1 is the first). */
void mc_adam_update(mc_adam *a, float *param, const float *grad);
/* Same, on the slice [off, off + count) of a parameter array that shares one step counter with
 * other slices (call mc_adam_tick once per step before the slices). */
void mc_adam_tick(mc_adam *a);
void mc_adam_update_slice(const mc_adam *a, size_t off, size_t count, float *param,
                          const float *grad);

/* --- chunked data-parallel helpers ---------------------------------------------------------- */
/* Chunks [c0, c1) of the global batch that this rank owns, and the rows [r0, r1) they cover. */
void mc_train_chunk_share(int64_t batch, int64_t chunk_rows, int rank, int size, int64_t *c0,
                          int64_t *c1, int64_t *r0, int64_t *r1);

/* --- neuron encoder E_n and the symmetric InfoNCE ------------------------------------------- */
typedef enum {
    MC_ALIGN_IN_OUT = 0, /* L_out + L_in (MiCLIP) */
    MC_ALIGN_IN = 1,     /* L_in only: activations vs CLIP image embeddings */
    MC_ALIGN_OUT = 2,    /* L_out only: activations vs the prompted text of the predicted label */
} mc_align_variant;

const char *mc_align_variant_name(mc_align_variant v);
/* Parses "in+out", "in", "out"; false if unknown. */
bool mc_align_variant_parse(const char *s, mc_align_variant *out);

typedef struct {
    int64_t n;         /* activation size (input of E_n) */
    int64_t d;         /* CLIP embedding size (output of E_n) */
    int64_t n_classes; /* rows of the class text-embedding table (L_out targets) */
    mc_align_variant variant;
    bool learn_scale;      /* true: learnable log logit scale, clamped to [0, log 100] */
    double logit_scale;    /* initial (learnable) or fixed logit scale: 1/0.07 by default;
                               Algorithm 1 literally is learn_scale=false, logit_scale=1 */
    mc_adam_config adam;   /* lr 1e-4 (paper C.2) */
    int64_t batch_size;    /* 1024 (paper C.2) */
    int epochs;            /* 1 */
    uint64_t seed;         /* init, subset, order */
    int64_t chunk_rows;    /* 128: unit of work of the rank-count-invariant scheme (at most
                               batch / chunk_rows ranks have rows) */
    int64_t shuffle_block; /* 1: full shuffle; larger keeps runs contiguous for the store */
} mc_align_config;
mc_align_config mc_align_defaults(void);

/* One batch's data for the local rows [r0, r1) of the global batch, filled by the provider:
 * acts (rows x n), img (rows x d, CLIP image embeddings; unused for MC_ALIGN_OUT), label
 * (rows, predicted class in [0, n_classes); unused for MC_ALIGN_IN). */
typedef mc_status (*mc_align_fetch_fn)(void *user, const int64_t *sample_idx, int64_t rows,
                                       float *acts, float *img, int32_t *label, mc_error *err);

typedef struct {
    float loss;     /* total (the training objective) */
    float loss_out; /* L_out (0 when not part of the variant) */
    float loss_in;  /* L_in */
    float logit_scale;
} mc_align_stats;

typedef struct mc_encoder mc_encoder; /* opaque: W [d x n], log scale, Adam state, buffers */

/* Creates E_n with W initialised as torch.nn.Linear(n, d, bias=False) is (uniform in
 * +-1/sqrt(n)), drawn from (cfg->seed, MC_RNG_STREAM_INIT). class_emb [n_classes x d] is
 * copied (the prompted class text embeddings; may be NULL for MC_ALIGN_IN). */
mc_status mc_encoder_create(const mc_align_config *cfg, const float *class_emb, mc_encoder **out,
                            mc_error *err);
void mc_encoder_free(mc_encoder **e);

/* Views of the state (owned by the encoder; valid until free). W is d x n row-major: unit i of
 * the layer maps to column i. */
float *mc_encoder_weight(mc_encoder *e);
float *mc_encoder_weight_grad(mc_encoder *e);
float mc_encoder_log_scale(const mc_encoder *e);
void mc_encoder_set_log_scale(mc_encoder *e, float v);
float mc_encoder_log_scale_grad(const mc_encoder *e);
mc_adam *mc_encoder_adam(mc_encoder *e); /* Adam state over [W..., log_scale] (d*n + 1) */
const mc_align_config *mc_encoder_config(const mc_encoder *e);

/* Loss and gradients for one global batch of `batch` rows, of which this rank holds the rows
 * [r0, r1) given by mc_train_chunk_share (acts, img, label as in mc_align_fetch_fn).
 * Collective. On return every rank has the same loss and the same full gradient (W and the
 * log scale). No update is made. */
mc_status mc_encoder_loss_grad(const mc_comm *c, mc_encoder *e, int64_t batch, const float *acts,
                               const float *img, const int32_t *label, mc_align_stats *st,
                               mc_error *err);
/* Adam step on W and (if learnable) the log scale, then the clamp. Same on every rank. */
void mc_encoder_apply(mc_encoder *e);
/* Embeds rows x n activations into rows x d (not normalised): out = acts W^T. */
void mc_encoder_embed(const mc_encoder *e, const float *acts, int64_t rows, float *out);

/* The training position (what a checkpoint must hold besides the weights and moments). */
typedef struct {
    int epoch;
    int64_t batch_in_epoch;
    int64_t global_step;
} mc_train_pos;

/* Per-step curve kept for the figures (owned arrays of length `count`). */
typedef struct {
    int64_t count, cap;
    float *loss, *loss_a, *loss_b,
        *extra; /* E_n: total, out, in, scale; SAE: loss, fvu, auxk, dead */
} mc_train_curve;
void mc_train_curve_free(mc_train_curve *c);
mc_status mc_train_curve_push(mc_train_curve *c, float a, float b, float cc, float d,
                              mc_error *err);

/* Optional hook called by the loops after each step (on every rank, same arguments): a stage
 * uses it to checkpoint every N steps or stop on a signal. Returning non-OK stops training with
 * that status (MC_ERR_INTERRUPTED for a clean stop). */
typedef mc_status (*mc_train_step_hook)(void *user, const mc_train_pos *pos, mc_error *err);

/* Trains E_n over n_samples samples (indices 0..n_samples-1 given to fetch), epochs x
 * floor(n_samples / batch_size) steps (a short last batch is dropped, as a DataLoader with
 * drop_last; if n_samples < batch_size there is one batch of all samples), starting from *pos
 * (zeroed for a fresh run) and advancing it. Appends to curve (may be NULL). Collective. */
mc_status mc_encoder_train(const mc_comm *c, mc_encoder *e, int64_t n_samples,
                           mc_align_fetch_fn fetch, void *user, mc_train_pos *pos,
                           mc_train_curve *curve, mc_train_step_hook hook, void *hook_user,
                           mc_error *err);

/* The same, up to epoch end_epoch instead of cfg->epochs (the align stage trains epoch by
 * epoch and evaluates a held-out loss in between; the result is bitwise that of one call). */
mc_status mc_encoder_train_to(const mc_comm *c, mc_encoder *e, int64_t n_samples,
                              mc_align_fetch_fn fetch, void *user, mc_train_pos *pos,
                              mc_train_curve *curve, mc_train_step_hook hook, void *hook_user,
                              int end_epoch, mc_error *err);

/* --- top-k sparse autoencoder --------------------------------------------------------------- */
typedef struct {
    int64_t n;            /* input size */
    int64_t m;            /* latents (24576 for ViT-B/16 in the paper) */
    int k;                /* active latents per sample: 32 */
    int k_aux;            /* AuxK latents: 256 (min with the number of dead latents) */
    double aux_coef;      /* 1/32 */
    int64_t dead_samples; /* a latent is dead after this many samples without firing: 10M */
    mc_adam_config adam;  /* lr 1e-3 (paper C.2) */
    int64_t batch_size;   /* 4096 */
    int epochs;           /* 1 */
    uint64_t seed;
    int64_t chunk_rows; /* 256 */
    int64_t shuffle_block;
    int64_t median_samples; /* rows used for the geometric-median b_pre init: 4096 */
    int median_iters;       /* Weiszfeld iterations: 100 (stops early on convergence) */
} mc_sae_config;
mc_sae_config mc_sae_defaults(void);

/* rows x n activations for the given global sample indices. */
typedef mc_status (*mc_sae_fetch_fn)(void *user, const int64_t *sample_idx, int64_t rows,
                                     float *acts, mc_error *err);

typedef struct {
    float loss;      /* fvu + aux_coef * auxk */
    float fvu;       /* sum ||a - a_hat||^2 / sum ||a - mean_batch(a)||^2 */
    float auxk;      /* AuxK term (before aux_coef), 0 with no dead latents */
    float l0;        /* mean number of non-zero latents per sample */
    float dead_frac; /* fraction of latents dead before this step */
} mc_sae_stats;

typedef struct mc_sae mc_sae; /* opaque */

/* Creates the SAE: encoder rows drawn as random unit vectors from (seed, MC_RNG_STREAM_INIT),
 * decoder = encoder transpose (unit-norm columns), b_enc = 0, b_pre = 0 until mc_sae_init_bpre. */
mc_status mc_sae_create(const mc_sae_config *cfg, mc_sae **out, mc_error *err);
void mc_sae_free(mc_sae **s);
const mc_sae_config *mc_sae_get_config(const mc_sae *s);

/* Parameter views (owned by the SAE). W_enc is m x n (row j = encoder of latent j); the decoder
 * is stored transposed, m x n (row j = decoder column W_dec[:, j], the unit-norm atom). */
float *mc_sae_w_enc(mc_sae *s);
float *mc_sae_b_enc(mc_sae *s);
float *mc_sae_w_dec_t(mc_sae *s);
float *mc_sae_b_pre(mc_sae *s);
/* Gradients, same layout (valid after mc_sae_loss_grad). */
float *mc_sae_grad_w_enc(mc_sae *s);
float *mc_sae_grad_b_enc(mc_sae *s);
float *mc_sae_grad_w_dec_t(mc_sae *s);
float *mc_sae_grad_b_pre(mc_sae *s);
/* Samples since each latent last fired (m entries). */
int64_t *mc_sae_since_fire(mc_sae *s);
mc_adam *mc_sae_adam(mc_sae *s); /* one Adam over [W_enc, b_enc, W_dec^T, b_pre] */
/* All parameters as one array in that order (*count floats); owned by the SAE. */
float *mc_sae_params(mc_sae *s, size_t *count);

/* b_pre = geometric median (Weiszfeld) of rows x n samples held by every rank (the same on all). */
mc_status mc_sae_init_bpre(mc_sae *s, const float *x, int64_t rows, mc_error *err);

/* Loss and gradients for one global batch (local rows [r0, r1) of mc_train_chunk_share in acts).
 * Collective; the gradients are identical on every rank. With update_stats, the dead-latent
 * counters advance by this batch (the training step does; a gradient check does not).
 * The decoder gradient has its component parallel to each atom removed. */
mc_status mc_sae_loss_grad(const mc_comm *c, mc_sae *s, int64_t batch, const float *acts,
                           bool update_stats, mc_sae_stats *st, mc_error *err);
/* Adam step on all parameters, then every decoder atom renormalised to unit length. */
void mc_sae_apply(mc_sae *s);
/* Metrics (no gradient, no statistics) on a batch as above: held-out evaluation. */
mc_status mc_sae_eval(const mc_comm *c, mc_sae *s, int64_t batch, const float *acts,
                      mc_sae_stats *st, mc_error *err);
/* Encodes rows x n into the top-k codes: idx[rows x k] (int32, best first) and val[rows x k]
 * (after the ReLU). Local, no MPI, no allocation (it uses buffers made by mc_sae_create, so one
 * SAE must not encode from two threads at once). */
void mc_sae_encode(mc_sae *s, const float *acts, int64_t rows, int32_t *idx, float *val);

/* Trains as mc_encoder_train does; b_pre is initialised first (when pos->global_step == 0) from
 * the first median_samples samples of epoch 0's order. Curve: loss, fvu, auxk, dead fraction. */
mc_status mc_sae_train(const mc_comm *c, mc_sae *s, int64_t n_samples, mc_sae_fetch_fn fetch,
                       void *user, mc_train_pos *pos, mc_train_curve *curve,
                       mc_train_step_hook hook, void *hook_user, mc_error *err);

/* --- checkpoints ----------------------------------------------------------------------------
 * One safetensors file per model holding everything a resume needs (docs/training.md):
 *   E_n: "W" [d, n] F32, "log_logit_scale" [] F32, "adam.m", "adam.v" [d*n + 1] F32
 *   SAE: "W_enc" [m, n], "b_enc" [m], "W_dec_T" [m, n] (row j = column j of W_dec, unit norm),
 *        "b_pre" [n] F32, "since_fire" [m] I64, "adam.m", "adam.v" [2mn + m + n] F32
 * and metadata (strings): "miclip.kind" ("encoder" | "sae"), "miclip.checkpoint_version" ("1"),
 * "config_hash" (the caller's), "epoch", "batch_in_epoch", "global_step", "adam_step", "seed",
 * the sizes, and for E_n "variant" and "learn_scale". The order of the data is a pure function
 * of (seed, epoch), so the position is the whole data state.
 * Save is local (call it on one rank; the file is written to a temporary name and renamed).
 * Load is local too (every rank loads the same file); it refuses a file whose kind, sizes or
 * config hash differ from the model's, naming the file and the field. */
mc_status mc_encoder_save(const mc_encoder *e, const mc_train_pos *pos, const char *config_hash,
                          const char *path, mc_error *err);
mc_status mc_encoder_load(mc_encoder *e, mc_train_pos *pos, const char *config_hash,
                          const char *path, mc_error *err);
mc_status mc_sae_save(const mc_sae *s, const mc_train_pos *pos, const char *config_hash,
                      const char *path, mc_error *err);
mc_status mc_sae_load(mc_sae *s, mc_train_pos *pos, const char *config_hash, const char *path,
                      mc_error *err);

/* A ready step hook for the training loops: checkpoints (rank 0 writes, then the status is
 * agreed collectively) every `every` steps (0: never), and when a stop signal reached any rank
 * (comm.h) checkpoints and returns MC_ERR_INTERRUPTED. Exactly one of enc and sae is set. The
 * final checkpoint at the end of training is the caller's (one more save). */
typedef struct {
    const mc_comm *comm;
    mc_encoder *enc;
    mc_sae *sae;
    const char *path;        /* borrowed */
    const char *config_hash; /* borrowed */
    int64_t every;
} mc_checkpoint_hook;
mc_status mc_checkpoint_hook_fn(void *user, const mc_train_pos *pos, mc_error *err);

#endif
