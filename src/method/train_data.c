/* train_data.c - the training extraction store of a seed (train_data.h). */
#include "method/train_data.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/log.h"
#include "miclip/miclip.h"
#include "miclip/stages.h"

void mc_train_data_close(mc_train_data *td) {
    if (td->st) mc_store_close(&td->st, NULL);
    mc_strings_free(&td->class_names, td->n_classes);
    free(td->valid);
    free(td->pred);
    memset(td, 0, sizeof *td);
}

mc_status mc_train_data_open(const mc_comm *c, const mc_config *cfg, int64_t seed,
                             mc_train_data *td, mc_error *err) {
    memset(td, 0, sizeof *td);
    MC_TRY(mc_extract_store_path(c, cfg, MC_SPLIT_TRAIN, seed, td->path, sizeof td->path, err));
    bool complete = false;
    MC_TRY(mc_store_peek_complete(c, td->path, &complete, err));
    if (!complete)
        return MC_FAIL(err, MC_ERR_ARG,
                       "the training activations of seed %lld are missing or incomplete "
                       "(%s); run the extract stage first (miclip extract CONFIG)",
                       (long long)seed, td->path);
    MC_TRY(mc_store_open(c, td->path, MC_STORE_READ, &td->st, err));
    char *key = NULL, *clip = NULL;
    mc_store_dataset_info vi, ci;
    mc_status s = mc_store_get_attr_str(td->st, "/", "extract_key", &key, err);
    if (s == MC_OK) s = mc_store_get_attr_str(td->st, "/", "clip_hash", &clip, err);
    if (s == MC_OK) s = mc_store_dataset_info_get(td->st, "images/valid", &vi, err);
    if (s == MC_OK) s = mc_store_dataset_info_get(td->st, "text/class_embeds", &ci, err);
    if (s == MC_OK && (vi.ndim != 1 || ci.ndim != 2))
        s = MC_FAIL(err, MC_ERR_FORMAT, "%s: unexpected images/valid or text/class_embeds shape",
                    td->path);
    if (s == MC_OK) {
        mc_strlcpy(td->extract_key, key, sizeof td->extract_key);
        mc_strlcpy(td->clip_hash, clip, sizeof td->clip_hash);
        td->n_img = vi.shape[0];
        td->n_classes = ci.shape[0];
        td->clip_dim = ci.shape[1];
    }
    free(key);
    free(clip);
    s = mc_comm_agree(c, s, err);
    int64_t nc = 0;
    if (s == MC_OK) s = mc_store_read_strings(td->st, "classes/names", &td->class_names, &nc, err);
    if (s == MC_OK && nc != td->n_classes)
        s = MC_FAIL(err, MC_ERR_FORMAT, "%s: %lld class names for %lld class embeddings", td->path,
                    (long long)nc, (long long)td->n_classes);
    if (s == MC_OK) {
        td->valid = mc_alloc_array((size_t)td->n_img + 1, 1);
        td->pred = mc_alloc_array((size_t)td->n_img + 1, sizeof(int32_t));
        if (!td->valid || !td->pred) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    s = mc_comm_agree(c, s, err);
    if (s == MC_OK)
        s = mc_store_read_rows(td->st, "images/valid", MC_DTYPE_U8, 0, td->n_img, td->valid, err);
    if (s == MC_OK)
        s = mc_store_read_rows(td->st, "target/predictions", MC_DTYPE_I32, 0, td->n_img, td->pred,
                               err);
    if (s != MC_OK) {
        td->n_classes = nc;
        mc_train_data_close(td);
    }
    return s;
}
