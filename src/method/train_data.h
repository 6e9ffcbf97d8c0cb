/* train_data.h - the extraction store of one seed's training set, opened read-only: class names,
 * validity and the target's predictions, the inputs of every method stage (docs/stages.md).
 *
 * Ownership: mc_train_data_open fills a caller-owned struct whose heap members belong to it;
 * mc_train_data_close releases them (NULL-safe, zeroes the struct).
 */
#ifndef MICLIP_METHOD_TRAIN_DATA_H
#define MICLIP_METHOD_TRAIN_DATA_H

#include <stdbool.h>
#include <stdint.h>

#include "method/keys.h"
#include "miclip/store.h"

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

#endif
