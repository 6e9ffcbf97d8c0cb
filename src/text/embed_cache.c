/* embed_cache.c - the text-embedding cache in an HDF5 store (text.h: mc_text_embed_cached). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/checked.h"
#include "miclip/hash.h"
#include "miclip/log.h"
#include "text_internal.h"

mc_status mc_text_embed_cached(const mc_comm *c, mc_store *st, mc_text_encoder *e,
                               const char *const *texts, size_t n, const char *tmpl, float *out,
                               size_t *n_computed, mc_error *err) {
    return mc_text_embed_cached_ex(c, st, e, texts, n, tmpl, false, out, n_computed, err);
}

/* What the cache holds for a list of texts: read by every rank, independently. */
typedef struct {
    char grp[128], mh[MC_SHA256_HEX_LEN + 1];
    uint8_t *sha; /* [n * 32] */
    int64_t *src; /* [n] >= 0: row in cached; -1 - k: k-th miss */
    mc_strmap map;
    float *cached; /* [n_cached * dim] */
    size_t n_cached, n_miss;
    size_t *miss; /* [n_miss] indices of the missing texts (each once) */
    int64_t parts;
} cache_view;

static void view_free(cache_view *v) {
    free(v->sha), free(v->src), free(v->cached), free(v->miss);
    mc_strmap_free(&v->map);
}

/* Collective (agrees). Looks every text up in st's group for (e, tmpl, one_by_one). */
static mc_status cache_lookup(const mc_comm *c, mc_store *st, mc_text_encoder *e,
                              const char *const *texts, size_t n, const char *tmpl, bool one_by_one,
                              cache_view *v, mc_error *err) {
    const int64_t dim = mc_text_encoder_dim(e);
    memset(v, 0, sizeof *v);
    mc_strmap_init(&v->map);
    mc_status s = MC_OK;
    const char *mh = mc_text_encoder_hash(e);
    if (!mh) s = MC_FAIL(err, MC_ERR_IO, "cannot hash the model files of the text encoder");
    MC_TRY(mc_comm_agree(c, s, err));
    mc_strlcpy(v->mh, mh, sizeof v->mh);
    char keysrc[256], key[MC_SHA256_HEX_LEN + 1];
    mc_sha256 h;
    mc_sha256_init(&h);
    /* Rows embedded one text per forward live under their own key (their floats never depend on
     * a batch), so the two kinds never mix. */
    mc_snprintf(keysrc, sizeof keysrc, "%s\n%lld\n%s", mh, (long long)dim,
                one_by_one ? "one-by-one\n" : "");
    mc_sha256_update(&h, keysrc, strlen(keysrc));
    if (tmpl) mc_sha256_update(&h, tmpl, strlen(tmpl) + 1); /* NULL and "" differ */
    uint8_t d[MC_SHA256_BYTES];
    mc_sha256_final(&h, d);
    mc_hex_encode(d, MC_SHA256_BYTES, key);
    mc_snprintf(v->grp, sizeof v->grp, "text_cache/%.32s", key);

    v->sha = mc_alloc_array(n ? n : 1, MC_SHA256_BYTES);
    v->src = mc_alloc_array(n ? n : 1, sizeof *v->src);
    uint8_t *sha = v->sha;
    int64_t *src = v->src;
    if (!sha || !src) {
        s = MC_FAIL(err, MC_ERR_NOMEM, "text cache: out of memory");
        return mc_comm_agree(c, s, err);
    }
    for (size_t i = 0; i < n; i++)
        mc_sha256_bytes(texts[i], strlen(texts[i]), sha + i * MC_SHA256_BYTES);

    /* read every part of the group (every rank, independently) */
    int64_t parts = 0;
    const char *grp = v->grp;
    float *cached = NULL;
    size_t n_cached = 0, n_miss = 0;
    size_t *miss = NULL;
    if (mc_store_exists(st, grp) && mc_store_has_attr(st, grp, "n_parts"))
        s = mc_store_get_attr_i64(st, grp, "n_parts", &parts, err);
    for (int64_t p = 0; p < parts && s == MC_OK; p++) {
        char nh[192], ne[192];
        mc_snprintf(nh, sizeof nh, "%s/part_%lld/sha256", grp, (long long)p);
        mc_snprintf(ne, sizeof ne, "%s/part_%lld/embeds", grp, (long long)p);
        mc_store_dataset_info ih, ie;
        if ((s = mc_store_dataset_info_get(st, nh, &ih, err)) != MC_OK ||
            (s = mc_store_dataset_info_get(st, ne, &ie, err)) != MC_OK)
            break;
        int64_t m = ih.shape[0];
        if (ih.ndim != 2 || ih.shape[1] != MC_SHA256_BYTES || ie.ndim != 2 || ie.shape[0] != m ||
            ie.shape[1] != dim) {
            s = MC_FAIL(err, MC_ERR_FORMAT, "%s: cache part %lld has inconsistent shapes",
                        mc_store_path(st), (long long)p);
            break;
        }
        uint8_t *hs = mc_alloc_array((size_t)m ? (size_t)m : 1, MC_SHA256_BYTES);
        float *grow = realloc(cached, (n_cached + (size_t)m) * (size_t)dim * sizeof *cached + 1);
        if (!hs || !grow) {
            free(hs);
            s = MC_FAIL(err, MC_ERR_NOMEM, "text cache: out of memory");
            break;
        }
        cached = grow;
        const int64_t start[2] = {0, 0}, ch[2] = {m, MC_SHA256_BYTES}, ce[2] = {m, dim};
        if (m > 0 &&
            ((s = mc_store_read_slice(st, nh, MC_DTYPE_U8, start, ch, hs, false, err)) != MC_OK ||
             (s = mc_store_read_slice(st, ne, MC_DTYPE_F32, start, ce,
                                      cached + n_cached * (size_t)dim, false, err)) != MC_OK)) {
            free(hs);
            break;
        }
        for (int64_t r = 0; r < m; r++)
            if (!mc_strmap_put(&v->map, (const char *)hs + r * MC_SHA256_BYTES, MC_SHA256_BYTES,
                               (int32_t)(n_cached + (size_t)r), NULL)) {
                s = MC_FAIL(err, MC_ERR_NOMEM, "text cache: out of memory");
                break;
            }
        n_cached += (size_t)m;
        free(hs);
    }
    if (s != MC_OK) goto done;
    /* hits and (de-duplicated) misses */
    miss = mc_alloc_array(n ? n : 1, sizeof *miss);
    if (!miss) {
        s = MC_FAIL(err, MC_ERR_NOMEM, "text cache: out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        int32_t row;
        if (mc_strmap_get(&v->map, (const char *)sha + i * MC_SHA256_BYTES, MC_SHA256_BYTES,
                          &row)) {
            src[i] = row; /* a cached row (>= 0) or an earlier miss of this call (< 0) */
            continue;
        }
        int32_t tag = -1 - (int32_t)n_miss;
        if (!mc_strmap_put(&v->map, (const char *)sha + i * MC_SHA256_BYTES, MC_SHA256_BYTES, tag,
                           NULL)) {
            s = MC_FAIL(err, MC_ERR_NOMEM, "text cache: out of memory");
            goto done;
        }
        src[i] = tag;
        miss[n_miss++] = i;
    }
done:
    v->cached = cached, v->n_cached = n_cached, v->miss = miss, v->n_miss = n_miss,
    v->parts = parts;
    return mc_comm_agree(c, s, err);
}

mc_status mc_text_cache_missing(const mc_comm *c, mc_store *st, mc_text_encoder *e,
                                const char *const *texts, size_t n, const char *tmpl,
                                bool one_by_one, size_t *missing, mc_error *err) {
    cache_view v;
    mc_status s = cache_lookup(c, st, e, texts, n, tmpl, one_by_one, &v, err);
    *missing = v.n_miss;
    view_free(&v);
    return s;
}

mc_status mc_text_embed_cached_ex(const mc_comm *c, mc_store *st, mc_text_encoder *e,
                                  const char *const *texts, size_t n, const char *tmpl,
                                  bool one_by_one, float *out, size_t *n_computed, mc_error *err) {
    const int64_t dim = mc_text_encoder_dim(e);
    if (n_computed) *n_computed = 0;
    cache_view v;
    mc_status s = cache_lookup(c, st, e, texts, n, tmpl, one_by_one, &v, err);
    const char *grp = v.grp, *mh = v.mh;
    const uint8_t *sha = v.sha;
    const int64_t *src = v.src;
    const float *cached = v.cached;
    const size_t *miss = v.miss, n_miss = v.n_miss;
    const int64_t parts = v.parts;
    float *fresh = NULL;
    int *counts = NULL, *displs = NULL;
    uint8_t *miss_sha = NULL;
    if (s == MC_OK && n_miss > 0) {
        /* embed this rank's share of the misses, then gather all of them on every rank */
        int64_t b0, b1;
        mc_shard_range((int64_t)n_miss, c->rank, c->size, &b0, &b1);
        fresh = mc_alloc_array(n_miss * (size_t)dim, sizeof *fresh);
        const char **mine = mc_alloc_array((size_t)(b1 - b0) + 1, sizeof *mine);
        counts = calloc((size_t)c->size, sizeof *counts);
        displs = calloc((size_t)c->size, sizeof *displs);
        miss_sha = mc_alloc_array(n_miss, MC_SHA256_BYTES);
        mc_status ls = MC_OK;
        if (!fresh || !mine || !counts || !displs || !miss_sha ||
            n_miss * (size_t)dim > (size_t)INT32_MAX)
            ls = MC_FAIL(err, MC_ERR_NOMEM, "text cache: %zu new texts do not fit", n_miss);
        for (int64_t k = b0; ls == MC_OK && k < b1; k++) mine[k - b0] = texts[miss[k]];
        if (ls == MC_OK && one_by_one)
            for (int64_t k = 0; ls == MC_OK && k < b1 - b0; k++)
                ls = mc_text_embed(e, mine + k, 1, tmpl, false, fresh + (b0 + k) * dim, err);
        else if (ls == MC_OK)
            ls = mc_text_embed(e, mine, (size_t)(b1 - b0), tmpl, false, fresh + b0 * dim, err);
        free(mine);
        s = mc_comm_agree(c, ls, err);
        if (s == MC_OK) {
            for (int r = 0; r < c->size; r++) {
                int64_t a, b;
                mc_shard_range((int64_t)n_miss, r, c->size, &a, &b);
                counts[r] = (int)((b - a) * dim);
                displs[r] = (int)(a * dim);
            }
            if (MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, fresh, counts, displs, MPI_FLOAT,
                               c->comm) != MPI_SUCCESS)
                s = MC_FAIL(err, MC_ERR_MPI, "text cache: MPI_Allgatherv failed");
        }
        /* append one part: created collectively, each rank writes its rows */
        if (s == MC_OK) {
            for (size_t k = 0; k < n_miss; k++)
                memcpy(miss_sha + k * MC_SHA256_BYTES, sha + miss[k] * MC_SHA256_BYTES,
                       MC_SHA256_BYTES);
            char nh[192], ne[192];
            mc_snprintf(nh, sizeof nh, "%s/part_%lld/sha256", grp, (long long)parts);
            mc_snprintf(ne, sizeof ne, "%s/part_%lld/embeds", grp, (long long)parts);
            const int64_t sh[2] = {(int64_t)n_miss, MC_SHA256_BYTES},
                          se[2] = {(int64_t)n_miss, dim};
            if ((s = mc_store_create_group(st, grp, err)) == MC_OK &&
                (s = mc_store_create_dataset(st, nh, MC_DTYPE_U8, 2, sh, 0, err)) == MC_OK &&
                (s = mc_store_create_dataset(st, ne, MC_DTYPE_F32, 2, se, 0, err)) == MC_OK &&
                (s = mc_store_write_rows(st, nh, MC_DTYPE_U8, b0, b1,
                                         miss_sha + b0 * MC_SHA256_BYTES, err)) == MC_OK &&
                (s = mc_store_write_rows(st, ne, MC_DTYPE_F32, b0, b1, fresh + b0 * dim, err)) ==
                    MC_OK &&
                (s = mc_store_set_attr_str(st, grp, "model_hash", mh, err)) == MC_OK &&
                (s = mc_store_set_attr_str(st, grp, "template", tmpl ? tmpl : "", err)) == MC_OK &&
                (s = mc_store_set_attr_i64(st, grp, "dim", dim, err)) == MC_OK &&
                (s = mc_store_flush(st, err)) ==
                    MC_OK) /* data first, then the count that exposes it */
                s = mc_store_set_attr_i64(st, grp, "n_parts", parts + 1, err);
            if (s == MC_OK) s = mc_store_flush(st, err);
        }
    }
    if (s == MC_OK) {
        for (size_t i = 0; i < n; i++) {
            const float *row = src[i] >= 0 ? cached + src[i] * dim : fresh + (-1 - src[i]) * dim;
            memcpy(out + (int64_t)i * dim, row, (size_t)dim * sizeof *out);
        }
        if (n_computed) *n_computed = n_miss;
    }
    free(fresh);
    free(counts);
    free(displs);
    free(miss_sha);
    view_free(&v);
    return s;
}
