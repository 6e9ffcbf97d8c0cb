/* store_sum.c - per-dataset checksums: recorded when a group is marked complete, checked when
 * a dataset is read whole, and recomputed for every dataset by mc_store_verify
 * (`miclip store verify`). See docs/store.md, "Checksums". */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/checked.h"
#include "miclip/hash.h"
#include "store_int.h"

#define DIGEST_ROUND_BYTES ((size_t)16 << 20) /* raw bytes hashed per read */

bool mc_store_is_sealed(hid_t d) {
    htri_t e = H5Aexists(d, MC_STORE_SUM_ATTR);
    if (e < 0) H5Eclear2(H5E_DEFAULT);
    return e > 0;
}

/* Bytes per row and rows of dataset p. */
static mc_status row_geometry(mc_store *s, const char *p, mc_store_dataset_info *info,
                              size_t *row_bytes, mc_error *err) {
    MC_TRY(mc_store_dataset_info_get(s, p, info, err));
    size_t re = 1;
    if (!mc_size_prod(info->shape + 1, info->ndim - 1, &re) ||
        !mc_size_mul(re, mc_dtype_size(info->dtype), row_bytes))
        return MC_FAIL(err, MC_ERR_FORMAT, "store '%s': dataset '%s': rows too large", s->path, p);
    return MC_OK;
}

mc_status mc_store_digest(mc_store *s, const char *p, char hex[65], mc_error *err) {
    mc_store_dataset_info info;
    size_t row_bytes = 0;
    MC_TRY(row_geometry(s, p, &info, &row_bytes, err));
    int64_t per = row_bytes ? (int64_t)(DIGEST_ROUND_BYTES / row_bytes) : info.shape[0];
    if (per < 1) per = 1;
    int64_t n = info.shape[0];
    size_t cap = 1;
    if (row_bytes && n > 0) cap = (size_t)(per < n ? per : n) * row_bytes;
    unsigned char *buf = malloc(cap ? cap : 1);
    if (!buf)
        return MC_FAIL(err, MC_ERR_NOMEM, "store '%s': dataset '%s': out of memory for a checksum",
                       s->path, p);
    mc_sha256 h;
    mc_sha256_init(&h);
    mc_status st = MC_OK;
    for (int64_t b = 0; st == MC_OK && row_bytes && b < n; b += per) {
        int64_t e = b + per < n ? b + per : n;
        st = mc_store_read_rows_raw(s, p, info.dtype, b, e, buf, err);
        if (st == MC_OK) mc_sha256_update(&h, buf, (size_t)(e - b) * row_bytes);
    }
    free(buf);
    if (st != MC_OK) return st;
    uint8_t d[MC_SHA256_BYTES];
    mc_sha256_final(&h, d);
    mc_hex_encode(d, MC_SHA256_BYTES, hex);
    return MC_OK;
}

/* --- listing datasets -------------------------------------------------------------------- */

typedef struct {
    char **names; /* absolute */
    size_t n, cap;
    const char *base; /* the visited group, absolute */
    bool oom;
} name_list;

static herr_t list_visit(hid_t root, const char *rel, const H5O_info_t *info, void *ud) {
    (void)root;
    name_list *l = ud;
    if (info->type != H5O_TYPE_DATASET) return 0;
    if (l->n == l->cap) {
        size_t nc = l->cap ? 2 * l->cap : 64;
        char **nn = realloc(l->names, nc * sizeof *nn);
        if (!nn) {
            l->oom = true;
            return 1;
        }
        l->names = nn;
        l->cap = nc;
    }
    size_t need = strlen(l->base) + strlen(rel) + 2;
    char *p = malloc(need);
    if (!p) {
        l->oom = true;
        return 1;
    }
    snprintf(p, need, "%s%s%s", l->base, strcmp(l->base, "/") ? "/" : "", rel);
    l->names[l->n++] = p;
    return 0;
}

static void list_free(name_list *l) {
    for (size_t i = 0; i < l->n; i++) free(l->names[i]);
    free(l->names);
    memset(l, 0, sizeof *l);
}

/* Local. Every dataset under group p (absolute), in name order: the same list on every rank. */
static mc_status list_datasets(mc_store *s, const char *p, name_list *l, mc_error *err) {
    memset(l, 0, sizeof *l);
    l->base = p;
    hid_t g = H5Oopen(s->file, p, H5P_DEFAULT);
    if (g < 0) return MC_H5FAIL(err, "store '%s': cannot open '%s'", s->path, p);
    herr_t h = H5Ovisit2(g, H5_INDEX_NAME, H5_ITER_INC, list_visit, l, H5O_INFO_BASIC);
    H5Oclose(g);
    if (l->oom) {
        list_free(l);
        return MC_FAIL(err, MC_ERR_NOMEM, "store '%s': out of memory listing '%s'", s->path, p);
    }
    if (h < 0) {
        list_free(l);
        return MC_H5FAIL(err, "store '%s': cannot list the datasets under '%s'", s->path, p);
    }
    return MC_OK;
}

/* Collective. Rank k hashes datasets k, k + size, ...; on return every rank holds every digest
 * (hex[i], 65 bytes each). Any failure is agreed and returned. */
static mc_status digest_all(mc_store *s, const name_list *l, char (*hex)[65], mc_error *err) {
    mc_status st = MC_OK;
    memset(hex, 0, l->n * sizeof *hex);
    for (size_t i = (size_t)s->comm.rank; st == MC_OK && i < l->n; i += (size_t)s->comm.size)
        st = mc_store_digest(s, l->names[i], hex[i], err);
    MC_TRY(mc_store_agree(s, st, err));
    /* every entry was written by exactly one rank and is zero elsewhere */
    size_t bytes = l->n * sizeof *hex;
    for (size_t off = 0; off < bytes; off += (size_t)1 << 30) {
        size_t k = bytes - off < ((size_t)1 << 30) ? bytes - off : ((size_t)1 << 30);
        MPI_Allreduce(MPI_IN_PLACE, (unsigned char *)hex + off, (int)k, MPI_UNSIGNED_CHAR, MPI_BOR,
                      s->comm.comm);
    }
    return MC_OK;
}

mc_status mc_store_seal(mc_store *s, const char *group, mc_error *err) {
    char p[MC_STORE_NAME_MAX + 2];
    MC_TRY(mc_store_norm_name(s, group, p, err));
    /* Every rank's rows are on disk before anyone reads them back. */
    MC_TRY(mc_store_flush(s, err));
    name_list l;
    mc_status st = list_datasets(s, p, &l, err);
    MC_TRY(mc_store_agree(s, st, err));
    char(*hex)[65] = mc_calloc_array(l.n ? l.n : 1, sizeof *hex);
    st = hex ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "store '%s': out of memory", s->path);
    st = mc_store_agree(s, st, err);
    if (st == MC_OK) st = digest_all(s, &l, hex, err);
    /* Attribute writes are collective metadata operations: every rank writes every checksum,
     * with the same value (mc_store_set_attr_str uses rank 0's). */
    for (size_t i = 0; st == MC_OK && i < l.n; i++)
        st = mc_store_set_attr_str(s, l.names[i], MC_STORE_SUM_ATTR, hex[i], err);
    free(hex);
    list_free(&l);
    return st;
}

mc_status mc_store_check_whole(mc_store *s, hid_t d, const char *p,
                               const mc_store_dataset_info *info, mc_dtype dtype, const void *data,
                               mc_error *err) {
    if (!mc_store_is_sealed(d)) return MC_OK;
    char *want = NULL;
    MC_TRY(mc_store_get_attr_str(s, p, MC_STORE_SUM_ATTR, &want, err));
    char got[65] = "";
    mc_status st = MC_OK;
    if (dtype == info->dtype) { /* the buffer holds the dataset's bytes (little-endian host) */
        size_t n = 0;
        if (!mc_size_prod(info->shape, info->ndim, &n) || !mc_size_mul(n, mc_dtype_size(dtype), &n))
            st = MC_FAIL(err, MC_ERR_FORMAT, "store '%s': dataset '%s': too large", s->path, p);
        else
            mc_sha256_hex(data, n, got);
    } else { /* widened on the way in: hash the stored bytes */
        st = mc_store_digest(s, p, got, err);
    }
    if (st == MC_OK && strcmp(want, got) != 0)
        st =
            MC_FAIL(err, MC_ERR_FORMAT,
                    "store '%s': dataset '%s' does not match the checksum recorded when its stage "
                    "completed (sha256 %.16s..., read %.16s...): the file was modified or damaged "
                    "since; `miclip store verify %s` lists every damaged dataset; delete the store "
                    "and rerun the stage that wrote it",
                    s->path, p, want, got, s->path);
    free(want);
    return st;
}

/* --- verify --------------------------------------------------------------------------------- */

/* True when p or one of its parent groups is marked complete. */
static bool in_complete_group(mc_store *s, const char *p) {
    char q[MC_STORE_NAME_MAX + 2];
    mc_strlcpy(q, p, sizeof q);
    for (;;) {
        char *slash = strrchr(q, '/');
        if (!slash) return false;
        if (slash == q) return mc_store_is_complete(s, "/");
        *slash = '\0';
        if (mc_store_is_complete(s, q)) return true;
    }
}

mc_status mc_store_verify(mc_store *s, FILE *out, mc_store_verify_result *res, mc_error *err) {
    memset(res, 0, sizeof *res);
    name_list l;
    mc_status st = list_datasets(s, "/", &l, err);
    MC_TRY(mc_store_agree(s, st, err));
    char(*hex)[65] = mc_calloc_array(l.n ? l.n : 1, sizeof *hex);
    st = hex ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "store '%s': out of memory", s->path);
    st = mc_store_agree(s, st, err);
    /* A dataset that cannot be read is a finding, not a reason to stop: each rank records its
     * own failures as a message line in fails[i] (gathered like the digests). */
    char(*fails)[256] = st == MC_OK ? mc_calloc_array(l.n ? l.n : 1, sizeof *fails) : NULL;
    if (st == MC_OK && !fails)
        st = MC_FAIL(err, MC_ERR_NOMEM, "store '%s': out of memory", s->path);
    st = mc_store_agree(s, st, err);
    if (st == MC_OK) {
        for (size_t i = (size_t)s->comm.rank; i < l.n; i += (size_t)s->comm.size) {
            mc_error e = {0};
            if (mc_store_digest(s, l.names[i], hex[i], &e) != MC_OK) {
                mc_strlcpy(fails[i], e.msg[0] ? e.msg : "unreadable",
                           sizeof fails[i]); /* truncates */
                memset(hex[i], 0, sizeof hex[i]);
            }
        }
        MPI_Allreduce(MPI_IN_PLACE, hex, (int)(l.n * sizeof *hex), MPI_UNSIGNED_CHAR, MPI_BOR,
                      s->comm.comm);
        MPI_Allreduce(MPI_IN_PLACE, fails, (int)(l.n * sizeof *fails), MPI_UNSIGNED_CHAR, MPI_BOR,
                      s->comm.comm);
    }
    for (size_t i = 0; st == MC_OK && i < l.n; i++) {
        const char *p = l.names[i];
        bool rank0 = s->comm.rank == 0;
        if (fails[i][0]) {
            res->n_bad++;
            if (rank0) fprintf(out, "%s: dataset '%s': cannot be read: %s\n", s->path, p, fails[i]);
            continue;
        }
        hid_t d = H5Dopen2(s->file, p, H5P_DEFAULT);
        bool sealed = d >= 0 && mc_store_is_sealed(d);
        if (d >= 0)
            H5Dclose(d);
        else
            H5Eclear2(H5E_DEFAULT);
        if (!sealed) {
            if (in_complete_group(s, p)) {
                res->n_bad++;
                if (rank0)
                    fprintf(out,
                            "%s: dataset '%s': no checksum although its stage is complete (written "
                            "by a miclip that recorded none, or the attribute was removed)\n",
                            s->path, p);
            } else {
                res->n_unsealed++;
            }
            continue;
        }
        char *want = NULL;
        mc_error e = {0};
        if (mc_store_get_attr_str(s, p, MC_STORE_SUM_ATTR, &want, &e) != MC_OK) {
            res->n_bad++;
            if (rank0)
                fprintf(out, "%s: dataset '%s': unreadable checksum: %s\n", s->path, p, e.msg);
        } else if (strcmp(want, hex[i]) != 0) {
            res->n_bad++;
            if (rank0)
                fprintf(out,
                        "%s: dataset '%s': checksum mismatch (recorded sha256 %s, computed %s)\n",
                        s->path, p, want, hex[i]);
        } else {
            res->n_ok++;
        }
        free(want);
    }
    res->n_datasets = (int64_t)l.n;
    free(hex);
    free(fails);
    list_free(&l);
    return st;
}
