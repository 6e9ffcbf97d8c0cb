/* similarity.h - unit x concept cosine similarity with exact, rank-count independent top lists
 * per concept (Eq. 3) and per unit (Eq. 4).
 */
#ifndef MICLIP_METHOD_SIMILARITY_H
#define MICLIP_METHOD_SIMILARITY_H

#include <stdbool.h>
#include <stdint.h>

#include "method/units.h"

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

#endif
