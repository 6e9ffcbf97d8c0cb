/* units.h - the units a method ranks: E_n's weights, the unit sets of a layer (neurons, SAE
 * features) and their embeddings through E_n, and the (score, index) ranking order shared by
 * every top-k list.
 *
 * Ownership: mc_encoder_weights_load fills a caller-owned struct; mc_encoder_weights_free
 * releases it.
 */
#ifndef MICLIP_METHOD_UNITS_H
#define MICLIP_METHOD_UNITS_H

#include <stdbool.h>
#include <stdint.h>

#include "method/keys.h"
#include "method/train_data.h"

/* E_n of an align store: W [d x n] (unit i of the layer = column i). */
typedef struct {
    int64_t n, d;
    float *w; /* [d * n] */
    float logit_scale;
    char key[MC_KEY_HEX];
    char path[MC_PATH_CAP];
} mc_encoder_weights;
/* Collective. Reads the complete align store of (seed, layer, variant). */
mc_status mc_encoder_weights_load(const mc_comm *c, const mc_config *cfg, const mc_train_data *td,
                                  int64_t seed, const char *layer, int variant,
                                  mc_encoder_weights *w, mc_error *err);
/* Collective. The halves of mc_encoder_weights_load: _find sets key and path and checks that the
 * store is complete (what a task's key needs, nothing read); _read then reads W. */
mc_status mc_encoder_weights_find(const mc_comm *c, const mc_config *cfg, const mc_train_data *td,
                                  int64_t seed, const char *layer, int variant,
                                  mc_encoder_weights *w, mc_error *err);
mc_status mc_encoder_weights_read(const mc_comm *c, mc_encoder_weights *w, mc_error *err);
void mc_encoder_weights_free(mc_encoder_weights *w);

/* The unit embeddings of one kind, for the unit rows [u0, u1): neurons are the columns of W,
 * SAE features E_n W_dec[:, i] (W_dec read from the complete SAE store). Computed in fixed
 * blocks of MC_UNIT_BLOCK units, so every unit's embedding is the same whatever rows a rank
 * asks for. */
#define MC_UNIT_BLOCK 256
/* Per-unit statistics over the valid training images of a train store, in image order (the
 * same on every rank): the unit's value on an image is the image's E_n input vector
 * (mc_acts_vectors) at dimension i (a neuron) or its SAE top-k code f_i (an SAE feature, 0 when
 * not among the k). Sums in double, image by image in index order. */
typedef struct {
    int64_t n_units, n_classes, n_img; /* n_img: valid images summed */
    double *sum;                       /* [U] sum of the value */
    double *class_sum; /* [C * U] row c: the sum over the images labelled c (images/labels) */
    int64_t *class_n;  /* [C] */
    int64_t *fire_n;   /* [U] images where the value is > 0 */
    double *fire_sum;  /* [U] sum of the value over them */
} mc_unit_stats;
/* Collective. sae NULL: neurons of layer; else the SAE's codes of layer's vectors, or (tokens,
 * a token-level SAE: sae.input all) each image's value is the mean over its tokens of the
 * tokens' codes (mc_sae_unit_values) and fire_n / fire_sum count the tokens where the code is
 * > 0 (the edit adds mu to a token). */
struct mc_sae;
mc_status mc_unit_stats_compute(const mc_comm *c, const mc_train_data *td, const char *layer,
                                struct mc_sae *sae, bool tokens, mc_unit_stats *us, mc_error *err);
/* Collective. The same statistics, computed once per (training extraction, layer, SAE, tokens)
 * into OUTPUT_DIR/unit-stats/<neuron|sae>-l<layer>-<key16>.h5 (a shared store: the first task
 * writes it, the others wait for it and read it) and read from there by every later task, bit for
 * bit what mc_unit_stats_compute returns. sae_key: the SAE store's key (with sae). */
mc_status mc_unit_stats_get(const mc_comm *c, const mc_config *cfg, const mc_train_data *td,
                            const char *layer, struct mc_sae *sae, const char *sae_key, bool tokens,
                            mc_unit_stats *us, mc_error *err);
/* Local. What one image "activates" an SAE feature, for the methods that need one value per
 * image and unit (Algorithm 2's mean code, Act-Values, CLIP-Dissect, mu): out[n * m] (dense)
 * for images img[0..n) of acts a. tokens false: the SAE code of the image's E_n input vector
 * (mc_acts_vectors). tokens true (a token-level SAE): the mean over the image's a->tokens
 * tokens of their codes, summed in double in token order (the spatial mean CLIP-Dissect's
 * code takes of a conv map; docs/stages.md). fire_n / fire_sum ([m], optional, accumulated):
 * the count and sum of the positive code values over every SAE input in order (the vector, or
 * each token). */
struct mc_acts;
mc_status mc_sae_unit_values(struct mc_acts *a, struct mc_sae *sae, bool tokens, const int64_t *img,
                             int64_t n, float *out, int64_t *fire_n, double *fire_sum,
                             mc_error *err);
void mc_unit_stats_free(mc_unit_stats *us);

/* How a unit is embedded (localize.neuron_unit / localize.sae_unit, docs/stages.md):
 * PLAIN  neuron E_n(e_i) (Algorithm 2 line 7, "basis"); SAE feature E_n(W_dec[:, i]) ("atom");
 * INPUTS the mean over a set S of training inputs x of E_n(a_bar_i(x)), which E_n's linearity
 *        makes E_n(g_i(S) p_i) + q with p_i = e_i or W_dec[:, i], g_i(S) the mean of the unit's
 *        value over S and q = E_n(b_pre) for SAE features (Algorithm 2 lines 5/14, "algorithm2"),
 *        0 for neurons (Section 3.2's a_i e_i, "activation"). S is every valid training image
 *        (localize.sae_inputs: all) or, for a concept that names a class, that class's training
 *        images (class). */
enum { MC_READ_PLAIN = 0, MC_READ_INPUTS = 1 };
enum { MC_INPUTS_ALL = 0, MC_INPUTS_CLASS = 1 };
typedef struct {
    int kind; /* mc_unit_kind */
    int64_t n_units;
    char sae_key[MC_KEY_HEX]; /* "" for neurons */
    char sae_path[MC_PATH_CAP];
    int reading; /* MC_READ_* */
    int inputs;  /* MC_INPUTS_* */
    /* MC_READ_INPUTS only (owned; mc_unit_set_free): */
    double *g_all;   /* [U] */
    double *g_class; /* [C * U] (inputs == class), NaN row for a class without images */
    int64_t n_classes;
    char **class_names; /* [C] borrowed from the train data */
    float *q;           /* [d] E_n(b_pre), or NULL (neurons) */
} mc_unit_set;
/* The reading's name as tables print it: "basis", "activation", "atom", "algorithm2 (all)",
 * "algorithm2 (class)", "activation (class)". */
const char *mc_unit_reading_name(const mc_unit_set *u);
void mc_unit_set_free(mc_unit_set *u);
/* Collective. What a task's key needs of a unit set: kind, reading, inputs and (SAE) the store's
 * key and path, checked complete; nothing is read. mc_unit_set_open starts with it. */
mc_status mc_unit_set_find(const mc_comm *c, const mc_config *cfg, const mc_train_data *td,
                           int64_t seed, int kind, mc_unit_set *u, mc_error *err);
/* Local. The same without checking the SAE store (the ids only). */
mc_status mc_unit_set_ident(const mc_config *cfg, const mc_train_data *td, int64_t seed, int kind,
                            mc_unit_set *u, mc_error *err);
/* Collective. Describes the unit set of kind for (seed, layer) (SAE: finds its store). */
/* layer: the units' layer (the train store's acts/<layer> give the INPUTS reading's means).
 * u is the caller's: mc_unit_set_free. */
mc_status mc_unit_set_open(const mc_comm *c, const mc_config *cfg, const mc_train_data *td,
                           int64_t seed, const char *layer, const mc_encoder_weights *w, int kind,
                           mc_unit_set *u, mc_error *err);
/* Collective (per-rank rows; u0 and u1 multiples of MC_UNIT_BLOCK or u1 = n_units). out[(u1-u0) * d]:
 * the plain unit directions p_i (E_n e_i or E_n W_dec[:, i]), L2-normalised (x / max(|x|, 1e-12))
 * when normalize. */
mc_status mc_unit_embed(const mc_comm *c, const mc_unit_set *u, const mc_encoder_weights *w,
                        int64_t u0, int64_t u1, bool normalize, float *out, mc_error *err);

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

#endif
