/* method_internal.h - helpers shared by the method stages (sae.c, align.c, localize.c,
 * describe.c) and the interactive queries: the training store of a seed, activation rows
 * streamed from it, cache keys and output paths, training curves beside checkpoints, concept
 * sets and their embeddings, and unit x concept similarities. docs/stages.md describes the
 * stores these helpers read and write.
 *
 * Ownership: every *_open / *_load / *_build fills a caller-owned struct whose heap members
 * belong to it and are released by the matching *_close / *_free (NULL-safe, zeroes the
 * struct). Borrowed pointers are marked.
 */
#ifndef MICLIP_METHOD_INTERNAL_H
#define MICLIP_METHOD_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "miclip/comm.h"
#include "miclip/config.h"
#include "miclip/hash.h"
#include "miclip/stages.h"
#include "miclip/store.h"
#include "miclip/train.h"

#define MC_KEY_HEX (MC_SHA256_HEX_LEN + 1)
#define MC_PATH_CAP 4096

/* --- the extraction store of one seed's training set (read-only) ---------------------------- */
typedef struct {
    char path[MC_PATH_CAP];
    char extract_key[MC_KEY_HEX];
    char clip_hash[MC_KEY_HEX];
    mc_store *st;       /* open read-only */
    int64_t n_img;      /* N */
    int64_t n_classes;  /* C */
    int64_t clip_dim;   /* P */
    char **class_names; /* [C] */
    uint8_t *valid;     /* [N] */
    int32_t *pred;      /* [N] target/predictions */
} mc_train_data;

/* Collective. Finds (mc_extract_store_path) and opens the train store of seed; it must be
 * complete (else MC_ERR_ARG naming the store and the extract stage). */
mc_status mc_train_data_open(const mc_comm *c, const mc_config *cfg, int64_t seed,
                             mc_train_data *td, mc_error *err);
/* Collective (closes the store). */
void mc_train_data_close(mc_train_data *td);

/* --- activation rows of one layer --------------------------------------------------------------
 * acts/<layer> is [N, D] (pooled), [N, T, D] (every token of a sequence) or [N, C, H, W] (every
 * position of a feature map). A "vector" is the per-image vector E_n is trained on: the row
 * itself, the CLS token (token 0) of a sequence, or the spatial mean of a map. A "token" is
 * one row of the per-position data: token t of a sequence, position t = h*W + w of a map
 * (the C channel values), or the row itself for pooled data (T = 1). */
typedef enum { MC_ACTS_VEC, MC_ACTS_SEQ, MC_ACTS_MAP } mc_acts_layout;

typedef struct {
    mc_store *st;          /* borrowed */
    char name[512];        /* "acts/<layer>" */
    mc_acts_layout layout;
    int ndim;              /* of the dataset */
    int64_t shape[4];      /* of the dataset */
    int64_t n_img, tokens, dim; /* tokens per image (1, T or H*W) and the row width */
    int64_t per_img;       /* floats per image */
    float *cache;          /* the whole dataset as F32 when it fit the preload limit */
    float *img_buf;        /* one image, for map means and strided positions */
} mc_acts;

/* Collective. Opens acts/<layer>. The whole dataset is read into memory when its F32 size is
 * at most MICLIP_PRELOAD_MB (environment, MiB; default 1024) on every rank; otherwise rows
 * are read from the store on demand (independent reads). Either way the values are the same. */
mc_status mc_acts_open(const mc_comm *c, mc_store *st, const char *layer, mc_acts *a,
                       mc_error *err);
/* Collective. The same on any row dataset of the store ("clip/image_embeds"). */
mc_status mc_acts_open_dataset(const mc_comm *c, mc_store *st, const char *name, mc_acts *a,
                               mc_error *err);
void mc_acts_close(mc_acts *a);
/* Local. n per-image vectors for images img[0..n) into out[n * dim]. */
mc_status mc_acts_vectors(mc_acts *a, const int64_t *img, int64_t n, float *out, mc_error *err);
/* Local. Token rows: out[dim] = token t of image img. */
mc_status mc_acts_token(mc_acts *a, int64_t img, int64_t t, float *out, mc_error *err);

/* --- keys and paths ----------------------------------------------------------------------- */
/* "10" -> "10", "stages.3.layers.1.shortcut" -> itself; other bytes -> '_' (as task ids). */
void mc_layer_tag(const char *layer, char *out, size_t cap);
/* "in+out" -> "inout". */
const char *mc_variant_tag(int variant);
/* SHA-256 hex of text. */
void mc_key_of(const char *text, char hex[MC_KEY_HEX]);

/* The SAE of seed on sae.layer: key and paths (dir OUTPUT_DIR/sae, store <tag>-<key16>.h5,
 * checkpoint <tag>-<key16>.ckpt.safetensors, curve <tag>-<key16>.curve.safetensors). */
typedef struct {
    char key[MC_KEY_HEX];
    char dir[MC_PATH_CAP], store[MC_PATH_CAP], ckpt[MC_PATH_CAP], curve[MC_PATH_CAP];
    char tag[256];
} mc_run_paths;
mc_status mc_sae_paths(const mc_config *cfg, const char *extract_key, int64_t seed,
                       mc_run_paths *p, mc_error *err);
/* The settings of the SAE (train.h) for cfg; n is the input width. */
mc_sae_config mc_sae_config_of(const mc_config *cfg, int64_t n, int64_t seed);
/* Collective. Creates the SAE of cfg for a dim-wide layer and seed and loads its weights from the
 * sae stage's store at path (each dataset's shape checked; MC_ERR_SHAPE names the store and the
 * dataset). *out is the caller's (mc_sae_free). */
mc_status mc_sae_load_store(const mc_comm *c, const mc_config *cfg, const char *path, int64_t dim, int64_t seed,
                            mc_sae **out, mc_error *err);
/* E_n of (seed, layer, variant): key and paths under OUTPUT_DIR/align. */
mc_status mc_align_paths(const mc_config *cfg, const char *extract_key, int64_t seed,
                         const char *layer, int variant, mc_run_paths *p, mc_error *err);
mc_align_config mc_align_config_of(const mc_config *cfg, int64_t n, int64_t d, int64_t n_classes,
                                   int variant, int64_t seed);

/* --- curves beside a checkpoint ------------------------------------------------------------ */
/* Local (rank 0). Writes curve (count entries of its four arrays) atomically as safetensors. */
mc_status mc_curve_save(const mc_train_curve *curve, const char *path, mc_error *err);
/* Local. Loads path into curve (emptied first), keeping the first `keep` entries; a file with
 * fewer is MC_ERR_FORMAT. A missing file with keep == 0 gives an empty curve. */
mc_status mc_curve_load(mc_train_curve *curve, const char *path, int64_t keep, mc_error *err);

/* A step hook for the training loops: every `every` steps, and when a stop signal reached
 * any rank, rank 0 writes the curve and then the checkpoint (curve first, so a curve is never
 * shorter than its checkpoint's step), the status is agreed, and a stop returns
 * MC_ERR_INTERRUPTED. When max_steps > 0, reaching it stops training with *limit_hit set. */
typedef struct {
    const mc_comm *comm;
    mc_encoder *enc;        /* exactly one of enc and sae */
    mc_sae *sae;
    const mc_train_curve *curve;
    const char *ckpt, *curve_path, *key; /* borrowed */
    int64_t every, max_steps;
    bool limit_hit;
    const char *what;       /* "sae", "align": messages */
} mc_stage_hook;
mc_status mc_stage_hook_fn(void *user, const mc_train_pos *pos, mc_error *err);
/* Collective. Loads p's checkpoint into enc or sae (and its curve, cut to the checkpoint's
 * step) when it exists; *pos stays zero otherwise. */
mc_status mc_stage_resume_checkpoint(const mc_comm *c, const mc_run_paths *p, mc_encoder *enc,
                                     mc_sae *sae, mc_train_pos *pos, mc_train_curve *curve,
                                     const char *what, mc_error *err);
/* Collective. Saves checkpoint and curve now (rank 0), agreeing on the status. */
mc_status mc_stage_save(mc_stage_hook *h, const mc_train_pos *pos, mc_error *err);

/* --- concept sets ----------------------------------------------------------------------------- */
typedef struct {
    char name[128];      /* the set's name */
    int64_t n;
    char **texts;        /* [n] */
    float *emb;          /* [n * dim] CLIP text embeddings of align.prompt filled with each text,
                            before normalisation */
    int64_t dim;
    char key[MC_KEY_HEX];
    char path[MC_PATH_CAP];
} mc_concepts;

/* Collective. Loads the concept sets named in names (all of cfg->concepts when names->n == 0;
 * an implicit set "classes" of the class names when the config has none) and their embeddings,
 * from OUTPUT_DIR/concepts/<set>-<key16>.h5 (key: CLIP hash, prompt and the list), computing
 * and storing them when absent (texts split over ranks). *sets is an array of *n_sets. */
mc_status mc_concepts_load(const mc_comm *c, const mc_config *cfg, const mc_train_data *td,
                           const mc_str_list *names, mc_concepts **sets, int *n_sets,
                           mc_error *err);
void mc_concepts_free(mc_concepts **sets, int n_sets);

/* --- units ----------------------------------------------------------------------------------- */
/* E_n of an align store: W [d x n] (unit i of the layer = column i). */
typedef struct {
    int64_t n, d;
    float *w;          /* [d * n] */
    float logit_scale;
    char key[MC_KEY_HEX];
    char path[MC_PATH_CAP];
} mc_encoder_weights;
/* Collective. Reads the complete align store of (seed, layer, variant). */
mc_status mc_encoder_weights_load(const mc_comm *c, const mc_config *cfg, const mc_train_data *td,
                                  int64_t seed, const char *layer, int variant,
                                  mc_encoder_weights *w, mc_error *err);
void mc_encoder_weights_free(mc_encoder_weights *w);

/* Whether SAE features exist for layer in this config (sae stage listed and sae.layer). */
bool mc_sae_applies(const mc_config *cfg, const char *layer);

/* The unit embeddings of one kind, for the unit rows [u0, u1): neurons are the columns of W,
 * SAE features E_n W_dec[:, i] (W_dec read from the complete SAE store). Computed in fixed
 * blocks of MC_UNIT_BLOCK units, so every unit's embedding is the same whatever rows a rank
 * asks for. */
#define MC_UNIT_BLOCK 256
typedef struct {
    int kind;            /* mc_unit_kind */
    int64_t n_units;
    char sae_key[MC_KEY_HEX]; /* "" for neurons */
    char sae_path[MC_PATH_CAP];
} mc_unit_set;
/* Collective. Describes the unit set of kind for (seed, layer) (SAE: finds its store). */
mc_status mc_unit_set_open(const mc_comm *c, const mc_config *cfg, const mc_train_data *td,
                           int64_t seed, const mc_encoder_weights *w, int kind, mc_unit_set *u,
                           mc_error *err);
/* Collective (per-rank rows; u0 and u1 multiples of MC_UNIT_BLOCK or u1 = n_units). out[(u1-u0) * d]:
 * the unit embeddings, L2-normalised (x / max(|x|, 1e-12)). */
mc_status mc_unit_embed(const mc_comm *c, const mc_unit_set *u, const mc_encoder_weights *w,
                        int64_t u0, int64_t u1, float *out, mc_error *err);

/* Local. Rows of x [rows x d] normalised in place, in double (x / max(|x|, 1e-12)). */
void mc_normalize_rows_f(float *x, int64_t rows, int64_t d);

/* A (score, index) pair; the ranking order is score descending, then index ascending. */
typedef struct {
    float score;
    int32_t index;
} mc_scored;
/* Inserts (score, index) into top[0..*n) kept sorted, capacity cap. */
void mc_top_insert(mc_scored *top, int64_t *n, int64_t cap, float score, int32_t index);
bool mc_scored_before(const mc_scored *a, const mc_scored *b);

/* Local. Writes text to path atomically after creating its directory. */
mc_status mc_write_text_file(const char *path, const char *text, size_t n, mc_error *err);

/* A growing text buffer for tables and reports. */
typedef struct {
    char *p;
    size_t n, cap;
    bool oom;
} mc_buf;
void mc_buf_printf(mc_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mc_buf_free(mc_buf *b);
/* CSV field: quoted when it holds a comma, quote or newline. */
void mc_buf_csv(mc_buf *b, const char *s);

/* Local (rank 0). The report fragments OUTPUT_DIR/report/<dir>/<task>.md of every task of
 * stage, in sweep order: appends each present fragment to body (after a blank line), each record
 * "<!-- <tag>\tFIELDS -->" in them to records as "FIELDS\n", and counts the fragments found. */
mc_status mc_report_gather(const mc_config *cfg, int stage, const char *dir, const char *tag, mc_buf *body,
                           mc_buf *records, int *found, mc_error *err);

/* Reads <base>_bytes / <base>_offsets of st (every rank reads all): *out[n] malloc'd strings. */
mc_status mc_store_read_strings(mc_store *st, const char *base, char ***out, int64_t *n,
                                mc_error *err);
void mc_strings_free(char ***v, int64_t n);

/* Opens path for writing as a fresh store: an existing incomplete one is replaced. */
mc_status mc_store_fresh(const mc_comm *c, const char *path, mc_store **st, mc_error *err);
/* Collective: true when path is a complete store (read-only peek). */
mc_status mc_store_peek_complete(const mc_comm *c, const char *path, bool *complete, mc_error *err);

/* --- similarity (localize.c) ------------------------------------------------------------------ */
/* Cosine similarity of every unit of u with every concept of cs. Unit rows are shared over ranks
 * in blocks of MC_UNIT_BLOCK; this rank holds [u0, u1). tau_u > 0: the top tau_u units of each
 * concept (Eq. 3), merged over ranks, on every rank. tau_c > 0: the top tau_c concepts of each of
 * this rank's units (Eq. 4). Ties rank the lower index first. */
typedef struct {
    int64_t n_units, n_concepts, u0, u1;
    int64_t tau_u;
    mc_scored *loc;  /* [n_concepts * tau_u] */
    int64_t tau_c;
    mc_scored *desc; /* [(u1 - u0) * tau_c] */
    float *sim;      /* [(u1 - u0) * n_concepts] when keep_sim */
} mc_sim_result;
mc_status mc_similarity(const mc_comm *c, const mc_unit_set *u, const mc_encoder_weights *w,
                        const float *concept_emb, int64_t n_concepts, int64_t tau_u, int64_t tau_c,
                        bool keep_sim, mc_sim_result *r, mc_error *err);
void mc_sim_result_free(mc_sim_result *r);
/* Collective: rank 0 receives every unit's desc rows, [n_units * tau_c] (*all NULL elsewhere). */
mc_status mc_sim_gather_desc(const mc_comm *c, const mc_sim_result *r, mc_scored **all, mc_error *err);

/* --- the localize layout (localize.c; also written by the baselines stage) ------------------- */
/* Collective. Writes group g of st from rank 0's idx/sc [cs->n, tau] (each concept's top units
 * and scores): top_units, top_scores, the attributes n_units, tau and (kind MC_UNIT_SAE)
 * sae_store, and the CSV table csv_path (rank 0). */
mc_status mc_localize_write(const mc_comm *c, mc_store *st, const char *g, const mc_concepts *cs, int64_t tau,
                            const int32_t *idx, const float *sc, int64_t n_units, int kind, const char *sae_path,
                            const char *csv_path, mc_error *err);

/* --- the describe layout (describe.c; also written by the baselines stage) ------------------- */
/* Collective. Writes group g of st: top_concepts and top_scores [n_units, tau_c] from r's rows,
 * sim [n_units, n_concepts] from this rank's rows when sim is not NULL, the attributes n_units,
 * tau and (kind MC_UNIT_SAE) sae_store; gathers every unit's top concepts into *all (rank 0,
 * caller frees; NULL elsewhere) and writes them as the CSV table csv_path (rank 0). */
mc_status mc_describe_write(const mc_comm *c, mc_store *st, const char *g, const mc_sim_result *r, const float *sim,
                            const mc_concepts *cs, int kind, const char *sae_path, const char *csv_path,
                            mc_scored **all, mc_error *err);
/* Collective. Sets g's description_accuracy to rank 0's acc, unless it is NaN (no unit has a
 * known own class). */
mc_status mc_describe_set_accuracy(const mc_comm *c, mc_store *st, const char *g, double acc, mc_error *err);

/* One localize/describe task: the train store, E_n, the unit kinds and concept sets, the key. */
typedef struct {
    mc_train_data td;
    mc_encoder_weights w;
    mc_concepts *sets;
    int n_sets;
    int n_kinds;
    mc_unit_set kinds[2];
    int64_t tau;
    char key[MC_KEY_HEX];
    char store[MC_PATH_CAP];
    char tables[MC_PATH_CAP]; /* OUTPUT_DIR/tables */
} mc_method_task;
/* Collective. stage is MC_STAGE_LOCALIZE or MC_STAGE_DESCRIBE. */
mc_status mc_method_task_open(const mc_comm *c, const mc_config *cfg, const mc_task *task, int stage,
                              mc_method_task *mt, mc_error *err);
void mc_method_task_close(mc_method_task *mt);
/* Collective: the common end of localize and describe. When s is MC_OK, writes the provenance
 * and the task attributes (<stage>_key, align_store, layer, variant), marks the store complete;
 * always closes *st (keeping the first error) and logs the result. Returns the final status. */
mc_status mc_method_task_finish(const mc_config *cfg, const mc_task *task, const mc_method_task *mt,
                                const char *stage, mc_store **st, mc_status s, mc_error *err);

/* Collective. Resolves q's defaults into *r and loads the train store, E_n and the unit set. */
mc_status mc_query_open(const mc_comm *c, const mc_config *cfg, const mc_query *q, mc_query *r,
                        mc_train_data *td, mc_encoder_weights *w, mc_unit_set *u, mc_error *err);

#endif
