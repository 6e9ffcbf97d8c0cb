/* store_show.c - a human-readable listing of a store (used by `miclip store show`). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/checked.h"
#include "store_int.h"

typedef struct {
    mc_store *s;
    FILE *out;
    mc_status st;
    mc_error *err;
} show_ctx;

static herr_t print_attr(hid_t loc, const char *name, const H5A_info_t *ainfo, void *ud) {
    show_ctx *c = ud;
    (void)ainfo;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0) {
        fprintf(c->out, "    @%s = <unreadable>\n", name);
        H5Eclear2(H5E_DEFAULT);
        return 0;
    }
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    H5T_class_t cls = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    fprintf(c->out, "    @%s = ", name);
    if (n != 1) {
        fprintf(c->out, "<%lld values>\n", (long long)n);
    } else if (cls == H5T_STRING) {
        char obj[MC_STORE_NAME_MAX + 2];
        ssize_t k = H5Iget_name(loc, obj, sizeof obj);
        char *v = NULL;
        if (k > 0 && (size_t)k < sizeof obj &&
            mc_store_get_attr_str(c->s, obj, name, &v, NULL) == MC_OK)
            fprintf(c->out, "\"%s\"\n", v);
        else
            fprintf(c->out, "<string>\n");
        free(v);
    } else if (cls == H5T_INTEGER) {
        int64_t v = 0;
        if (H5Aread(a, H5T_NATIVE_INT64, &v) >= 0)
            fprintf(c->out, "%" PRId64 "\n", v);
        else
            fprintf(c->out, "<integer>\n");
    } else if (cls == H5T_FLOAT) {
        double v = 0;
        if (H5Aread(a, H5T_NATIVE_DOUBLE, &v) >= 0)
            fprintf(c->out, "%.17g\n", v);
        else
            fprintf(c->out, "<float>\n");
    } else {
        fprintf(c->out, "<type class %d>\n", (int)cls);
    }
    H5Eclear2(H5E_DEFAULT);
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    H5Aclose(a);
    return 0;
}

static void print_attrs(show_ctx *c, const char *path) {
    hid_t o = H5Oopen(c->s->file, path, H5P_DEFAULT);
    if (o < 0) {
        H5Eclear2(H5E_DEFAULT);
        return;
    }
    hsize_t idx = 0;
    /* Creation order is not tracked; name order is stable and readable. */
    H5Aiterate2(o, H5_INDEX_NAME, H5_ITER_INC, &idx, print_attr, c);
    H5Eclear2(H5E_DEFAULT);
    H5Oclose(o);
}

static herr_t visit(hid_t root, const char *rel, const H5O_info_t *info, void *ud) {
    show_ctx *c = ud;
    (void)root;
    char p[MC_STORE_NAME_MAX + 2];
    if (!strcmp(rel, "."))
        mc_strlcpy(p, "/", sizeof p);
    else if (mc_store_norm_name(c->s, rel, p, NULL) != MC_OK)
        return 0;
    if (info->type == H5O_TYPE_GROUP) {
        fprintf(c->out, "%s%s (group)\n", p, strcmp(p, "/") ? "/" : "");
        print_attrs(c, p);
        char dn[MC_STORE_NAME_MAX + 2];
        bool fits =
            mc_snprintf(dn, sizeof dn, "%s%s" MC_STORE_DONE_NAME, p, strcmp(p, "/") ? "/" : "");
        mc_store_dataset_info di;
        if (fits && mc_store_exists(c->s, dn) &&
            mc_store_dataset_info_get(c->s, dn, &di, NULL) == MC_OK && di.dtype == MC_DTYPE_U8 &&
            di.ndim == 1 && di.shape[0] > 0) {
            uint8_t *done = malloc((size_t)di.shape[0]);
            int64_t start = 0, k = 0, first_missing = -1;
            if (done && mc_store_read_slice(c->s, dn, MC_DTYPE_U8, &start, di.shape, done, false,
                                            NULL) == MC_OK) {
                for (int64_t i = 0; i < di.shape[0]; i++) {
                    k += done[i] == 1;
                    if (done[i] != 1 && first_missing < 0) first_missing = i;
                }
                fprintf(c->out, "    units done: %" PRId64 "/%" PRId64, k, di.shape[0]);
                if (first_missing >= 0)
                    fprintf(c->out, " (first missing: %" PRId64 ")", first_missing);
                fprintf(c->out, "\n");
            }
            free(done);
        }
        if (mc_store_is_complete(c->s, p)) fprintf(c->out, "    stage complete\n");
    } else if (info->type == H5O_TYPE_DATASET) {
        mc_store_dataset_info di;
        if (mc_store_dataset_info_get(c->s, p, &di, NULL) == MC_OK) {
            char shp[160];
            mc_shape_str(di.shape, di.ndim, shp, sizeof shp);
            hid_t d = H5Dopen2(c->s->file, p, H5P_DEFAULT);
            hid_t dcpl = d >= 0 ? H5Dget_create_plist(d) : H5I_INVALID_HID;
            hsize_t ch[MC_MAX_DIMS];
            char chunk[64] = "contiguous";
            if (dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED &&
                H5Pget_chunk(dcpl, MC_MAX_DIMS, ch) > 0)
                snprintf(chunk, sizeof chunk, "chunks of %llu rows", (unsigned long long)ch[0]);
            if (dcpl >= 0) H5Pclose(dcpl);
            if (d >= 0) H5Dclose(d);
            fprintf(c->out, "%s  %s %s  (%s)\n", p, mc_dtype_name(di.dtype), shp, chunk);
        } else {
            fprintf(c->out, "%s  <dataset of a type miclip does not write>\n", p);
        }
        H5Eclear2(H5E_DEFAULT);
        print_attrs(c, p);
    } else {
        fprintf(c->out, "%s  <other object>\n", p);
    }
    return 0;
}

mc_status mc_store_print(mc_store *s, FILE *out, mc_error *err) {
    show_ctx c = {s, out, MC_OK, err};
    fprintf(out, "store %s (%s)\n", s->path, MC_STORE_ID_VALUE);
    if (H5Ovisit2(s->file, H5_INDEX_NAME, H5_ITER_INC, visit, &c, H5O_INFO_BASIC) < 0)
        return MC_H5FAIL(err, "store '%s': cannot list its objects", s->path);
    return c.st;
}
