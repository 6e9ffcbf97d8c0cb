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

#endif
