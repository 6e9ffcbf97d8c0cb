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
    mc_scored *loc; /* [n_concepts * tau_u] */
    int64_t tau_c;
    mc_scored *desc; /* [(u1 - u0) * tau_c] */
    float *sim;      /* [(u1 - u0) * n_concepts] when keep_sim */
} mc_sim_result;
/* concept_texts [n_concepts] name the concepts (the `class` input set looks a concept up among
 * the classes by name, case-insensitively); NULL: every concept uses all inputs. */
mc_status mc_similarity(const mc_comm *c, const mc_unit_set *u, const mc_encoder_weights *w,
                        const float *concept_emb, const char *const *concept_texts,
                        int64_t n_concepts, int64_t tau_u, int64_t tau_c, bool keep_sim,
                        mc_sim_result *r, mc_error *err);
/* Local. The class whose images are a concept's input set under u's reading, or -1 (all
 * inputs): cls[n_concepts]. */
void mc_concept_classes(const mc_unit_set *u, const char *const *texts, int64_t n, int64_t *cls);
/* Local. <q, c_j> in double for each of the Cn normalised concept embeddings cn[Cn x d], q the
 * INPUTS reading's shared term (zeros without one): qc[Cn]. It does not depend on the unit, so
 * it is computed once per concept set, not once per (unit, concept). */
void mc_concept_qdots(const mc_unit_set *u, const float *cn, int64_t Cn, int64_t d, double *qc);
/* Local. Scores S[len x Cn] of units [unit0, unit0 + len) (one block, len <= MC_UNIT_BLOCK) from
 * their raw directions p[len x d] (mc_unit_embed, normalize = false; overwritten) and the
 * normalised concept embeddings cn[Cn x d], cls from mc_concept_classes and qc from
 * mc_concept_qdots (read by the INPUTS reading only). The arithmetic of mc_similarity, so a
 * query prints the stage's numbers. */
void mc_unit_scores_block(const mc_unit_set *u, int64_t d, float *p, int64_t len, int64_t unit0,
                          const float *cn, const int64_t *cls, const double *qc, int64_t Cn,
                          float *S);
void mc_sim_result_free(mc_sim_result *r);
/* Collective: rank 0 receives every unit's desc rows, [n_units * tau_c] (*all NULL elsewhere). */
mc_status mc_sim_gather_desc(const mc_comm *c, const mc_sim_result *r, mc_scored **all,
                             mc_error *err);

#endif
