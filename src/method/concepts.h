/* concepts.h - concept sets and their CLIP text embeddings, cached in one store per set.
 *
 * Ownership: mc_concepts_load returns a malloc'd array of sets owned by the caller;
 * mc_concepts_free releases it (NULL-safe).
 */
#ifndef MICLIP_METHOD_CONCEPTS_H
#define MICLIP_METHOD_CONCEPTS_H

#include <stdbool.h>
#include <stdint.h>

#include "method/keys.h"
#include "method/train_data.h"

typedef struct {
    char name[128]; /* the set's name */
    int64_t n;
    char **texts; /* [n] */
    float *emb;   /* [n * dim] CLIP text embeddings of align.prompt filled with each text,
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
/* Collective. The two halves of mc_concepts_load: _open reads the texts and computes each set's
 * key and path (no embedding, no store opened: what a complete task's key needs); _embed then
 * reads (or computes and stores) the embeddings of the sets whose emb is still NULL. */
mc_status mc_concepts_open(const mc_comm *c, const mc_config *cfg, const mc_train_data *td,
                           const mc_str_list *names, mc_concepts **sets, int *n_sets,
                           mc_error *err);
mc_status mc_concepts_embed(const mc_comm *c, const mc_config *cfg, const mc_train_data *td,
                            mc_concepts *sets, int n_sets, mc_error *err);
void mc_concepts_free(mc_concepts **sets, int n_sets);

#endif
