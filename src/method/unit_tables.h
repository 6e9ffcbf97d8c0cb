/* unit_tables.h - the two result layouts every method writes: the localize layout (top units per
 * concept) and the describe layout (top concepts per unit), each a group of a store plus a CSV
 * table (docs/stages.md). The method stages and the baselines write through these.
 */
#ifndef MICLIP_METHOD_UNIT_TABLES_H
#define MICLIP_METHOD_UNIT_TABLES_H

#include <stdbool.h>
#include <stdint.h>

#include "method/concepts.h"
#include "method/similarity.h"
#include "miclip/store.h"

/* Collective. Writes group g of st from rank 0's idx/sc [cs->n, tau] (each concept's top units
 * and scores): top_units, top_scores, the attributes n_units, tau and (kind MC_UNIT_SAE)
 * sae_store, and the CSV table csv_path (rank 0). */
mc_status mc_localize_write(const mc_comm *c, mc_store *st, const char *g, const mc_concepts *cs,
                            int64_t tau, const int32_t *idx, const float *sc, int64_t n_units,
                            int kind, const char *sae_path, const char *csv_path, mc_error *err);

/* --- the describe layout ------------------- */
/* Collective. Writes group g of st: top_concepts and top_scores [n_units, tau_c] from r's rows,
 * sim [n_units, n_concepts] from this rank's rows when sim is not NULL, the attributes n_units,
 * tau and (kind MC_UNIT_SAE) sae_store; gathers every unit's top concepts into *all (rank 0,
 * caller frees; NULL elsewhere) and writes them as the CSV table csv_path (rank 0). */
mc_status mc_describe_write(const mc_comm *c, mc_store *st, const char *g, const mc_sim_result *r,
                            const float *sim, const mc_concepts *cs, int kind, const char *sae_path,
                            const char *csv_path, mc_scored **all, mc_error *err);
/* Local. The description accuracy on logit neurons (the paper's Table 1): of the n_units neurons
 * whose class name class_names[i] is in cs (case-insensitive), the share whose top concept
 * all[i * tau] is that name. *known and *hits are those counts; NAN when none is known. */
double mc_describe_accuracy(const mc_concepts *cs, char *const *class_names, int64_t n_units,
                            const mc_scored *all, int64_t tau, int64_t *known, int64_t *hits);
/* Local. Index of text in cs (case-insensitive), or -1. */
int64_t mc_concept_index(const mc_concepts *cs, const char *text);
/* Collective. Sets g's description_accuracy to rank 0's acc, unless it is NaN (no unit has a
 * known own class). */
mc_status mc_describe_set_accuracy(const mc_comm *c, mc_store *st, const char *g, double acc,
                                   mc_error *err);

#endif
