/* acts.c - activation rows of one layer (acts.h). */
#include "method/acts.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/log.h"
#include "miclip/miclip.h"

void mc_acts_close(mc_acts *a) {
    free(a->cache);
    free(a->img_buf);
    memset(a, 0, sizeof *a);
}

mc_status mc_acts_open(const mc_comm *c, mc_store *st, const char *layer, mc_acts *a,
                       mc_error *err) {
    char name[512];
    if (!mc_snprintf(name, sizeof name, "acts/%s", layer))
        return MC_FAIL(err, MC_ERR_ARG, "layer name too long: %s", layer);
    mc_status s = mc_acts_open_dataset(c, st, name, a, err);
    if (s != MC_OK) mc_error_prefix(err, "layer '%s' (is it in extract.layers?)", layer);
    return s;
}

mc_status mc_acts_open_dataset(const mc_comm *c, mc_store *st, const char *name, mc_acts *a,
                               mc_error *err) {
    memset(a, 0, sizeof *a);
    a->st = st;
    if (!mc_strlcpy(a->name, name, sizeof a->name))
        return MC_FAIL(err, MC_ERR_ARG, "dataset name too long: %s", name);
    mc_store_dataset_info in;
    mc_status s = mc_store_dataset_info_get(st, a->name, &in, err);
    if (s == MC_OK) {
        a->ndim = in.ndim;
        for (int d = 0; d < in.ndim && d < 4; d++) a->shape[d] = in.shape[d];
        a->n_img = in.shape[0];
        if (in.ndim == 2)
            a->layout = MC_ACTS_VEC, a->tokens = 1, a->dim = in.shape[1];
        else if (in.ndim == 3)
            a->layout = MC_ACTS_SEQ, a->tokens = in.shape[1], a->dim = in.shape[2];
        else if (in.ndim == 4)
            a->layout = MC_ACTS_MAP, a->tokens = in.shape[2] * in.shape[3], a->dim = in.shape[1];
        else
            s = MC_FAIL(err, MC_ERR_UNSUPPORTED,
                        "%s: %s has %d dimensions; expected [N, D], [N, T, D] or [N, C, H, W]",
                        mc_store_path(st), a->name, in.ndim);
        a->per_img = a->tokens * a->dim;
        if (s == MC_OK && (a->dim < 1 || a->tokens < 1))
            s = MC_FAIL(err, MC_ERR_FORMAT, "%s: %s is empty", mc_store_path(st), a->name);
    }
    if (s == MC_OK && !(a->img_buf = mc_alloc_array((size_t)a->per_img, sizeof(float))))
        s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    s = mc_comm_agree(c, s, err);
    if (s != MC_OK) {
        mc_acts_close(a);
        return s;
    }
    /* Preload when small: the same values as reading on demand, only faster. */
    const char *env = getenv("MICLIP_PRELOAD_MB");
    double limit_mb = env && *env ? atof(env) : 1024.0;
    double mb = (double)a->n_img * (double)a->per_img * 4.0 / (1024.0 * 1024.0);
    int fits = mb <= limit_mb, all = 0;
    MPI_Allreduce(&fits, &all, 1, MPI_INT, MPI_MIN, c->comm);
    if (c->rank == 0)
        mc_debug("%s: %.1f MiB, %s (MICLIP_PRELOAD_MB %.0f)", a->name, mb,
                 all ? "preloaded" : "streamed", limit_mb);
    if (all) {
        a->cache = mc_alloc_array((size_t)a->n_img * (size_t)a->per_img, sizeof(float));
        s = a->cache
                ? MC_OK
                : MC_FAIL(err, MC_ERR_NOMEM, "out of memory preloading %s (%.0f MiB)", a->name, mb);
        s = mc_comm_agree(c, s, err);
        if (s == MC_OK)
            s = mc_store_read_rows(st, a->name, MC_DTYPE_F32, 0, a->n_img, a->cache, err);
        if (s != MC_OK) mc_acts_close(a);
    }
    return s;
}

/* One whole image (per_img floats) into a->img_buf; returns the pointer. */
static mc_status image_rows(mc_acts *a, int64_t img, const float **out, mc_error *err) {
    if (img < 0 || img >= a->n_img)
        return MC_FAIL(err, MC_ERR_INTERNAL, "image %lld out of range", (long long)img);
    if (a->cache) {
        *out = a->cache + img * a->per_img;
        return MC_OK;
    }
    int64_t start[4] = {img, 0, 0, 0}, count[4];
    count[0] = 1;
    for (int d = 1; d < a->ndim; d++) count[d] = a->shape[d];
    MC_TRY(mc_store_read_slice(a->st, a->name, MC_DTYPE_F32, start, count, a->img_buf, false, err));
    *out = a->img_buf;
    return MC_OK;
}

mc_status mc_acts_vectors(mc_acts *a, const int64_t *img, int64_t n, float *out, mc_error *err) {
    const int64_t D = a->dim;
    for (int64_t i = 0; i < n;) {
        if (img[i] < 0 || img[i] >= a->n_img)
            return MC_FAIL(err, MC_ERR_INTERNAL, "image %lld out of range", (long long)img[i]);
        if (a->layout == MC_ACTS_VEC && !a->cache) {
            /* Consecutive images in one read. */
            int64_t run = 1;
            while (i + run < n && img[i + run] == img[i] + run) run++;
            int64_t start[2] = {img[i], 0}, count[2] = {run, D};
            MC_TRY(mc_store_read_slice(a->st, a->name, MC_DTYPE_F32, start, count, out + i * D,
                                       false, err));
            i += run;
            continue;
        }
        float *o = out + i * D;
        if (a->layout == MC_ACTS_VEC) {
            memcpy(o, a->cache + img[i] * D, (size_t)D * sizeof(float));
        } else if (a->layout == MC_ACTS_SEQ) {
            /* The CLS token (token 0), as extract.pool: cls would have stored. */
            if (a->cache)
                memcpy(o, a->cache + img[i] * a->per_img, (size_t)D * sizeof(float));
            else {
                int64_t start[3] = {img[i], 0, 0}, count[3] = {1, 1, D};
                MC_TRY(
                    mc_store_read_slice(a->st, a->name, MC_DTYPE_F32, start, count, o, false, err));
            }
        } else {
            /* Spatial mean of a feature map, in double over positions in order. */
            const float *x;
            MC_TRY(image_rows(a, img[i], &x, err));
            const int64_t HW = a->tokens;
            for (int64_t ch = 0; ch < D; ch++) {
                double sum = 0;
                for (int64_t p = 0; p < HW; p++) sum += x[ch * HW + p];
                o[ch] = (float)(sum / (double)HW);
            }
        }
        i++;
    }
    return MC_OK;
}

mc_status mc_acts_token(mc_acts *a, int64_t img, int64_t t, float *out, mc_error *err) {
    const int64_t D = a->dim;
    if (img < 0 || img >= a->n_img || t < 0 || t >= a->tokens)
        return MC_FAIL(err, MC_ERR_INTERNAL, "token (%lld, %lld) out of range", (long long)img,
                       (long long)t);
    if (a->layout != MC_ACTS_MAP) {
        if (a->cache) {
            memcpy(out, a->cache + img * a->per_img + t * D, (size_t)D * sizeof(float));
            return MC_OK;
        }
        int64_t start[3] = {img, t, 0}, count[3] = {1, 1, D};
        if (a->layout == MC_ACTS_VEC) start[1] = 0, count[1] = D;
        return mc_store_read_slice(a->st, a->name, MC_DTYPE_F32, start, count, out, false, err);
    }
    const int64_t HW = a->tokens, W = a->shape[3];
    if (a->cache) {
        const float *x = a->cache + img * a->per_img;
        for (int64_t ch = 0; ch < D; ch++) out[ch] = x[ch * HW + t];
        return MC_OK;
    }
    int64_t start[4] = {img, 0, t / W, t % W}, count[4] = {1, D, 1, 1};
    return mc_store_read_slice(a->st, a->name, MC_DTYPE_F32, start, count, out, false, err);
}
