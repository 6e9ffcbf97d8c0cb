/* acts.h - activation rows of one layer of an extraction store, preloaded or streamed.
 *
 * acts/<layer> is [N, D] (pooled), [N, T, D] (every token of a sequence) or [N, C, H, W] (every
 * position of a feature map). A "vector" is the per-image vector E_n is trained on: the row
 * itself, the CLS token (token 0) of a sequence, or the spatial mean of a map. A "token" is
 * one row of the per-position data: token t of a sequence, position t = h*W + w of a map
 * (the C channel values), or the row itself for pooled data (T = 1).
 *
 * Ownership: mc_acts_open fills a caller-owned struct; mc_acts_close releases it.
 */
#ifndef MICLIP_METHOD_ACTS_H
#define MICLIP_METHOD_ACTS_H

#include <stdbool.h>
#include <stdint.h>

#include "miclip/comm.h"
#include "miclip/store.h"

typedef enum { MC_ACTS_VEC, MC_ACTS_SEQ, MC_ACTS_MAP } mc_acts_layout;

typedef struct mc_acts {
    mc_store *st;   /* borrowed */
    char name[512]; /* "acts/<layer>" */
    mc_acts_layout layout;
    int ndim;                   /* of the dataset */
    int64_t shape[4];           /* of the dataset */
    int64_t n_img, tokens, dim; /* tokens per image (1, T or H*W) and the row width */
    int64_t per_img;            /* floats per image */
    float *cache;               /* the whole dataset as F32 when it fit the preload limit */
    float *img_buf;             /* one image, for map means and strided positions */
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

#endif
