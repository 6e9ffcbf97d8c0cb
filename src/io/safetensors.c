/* safetensors.c - the validating safetensors reader (mmap or caller buffer) and the writer.
 *
 * Validation order follows the file: length prefix, header bounds, JSON syntax (duplicates
 * rejected), per-entry checks (dtype, shape, offsets, size), then the global tiling check on
 * the spans sorted by offset. Nothing is allocated from a size read in the file before that
 * size has been compared with the bytes actually present. */
#include "miclip/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "miclip/checked.h"
#include "miclip/fsutil.h"

struct mc_st_file {
    char *path; /* label used in messages (the path for mc_st_open) */
    void *map;  /* mmap'd region, or NULL for a caller buffer */
    size_t map_len;
    const unsigned char *base; /* start of the file bytes */
    size_t len;
    size_t data_start; /* 8 + header length */
    int count;
    mc_st_tensor *tensors; /* in data-section order */
    int *by_name;          /* indices into tensors, sorted by name (for bsearch) */
    int n_meta;
    char **meta_keys, **meta_vals;
};

/* ------------------------------------------------------------------------------------------ */
/* header parsing */

typedef struct {
    const char *name;
    uint64_t begin, end;
    size_t idx; /* index of the parsed entry */
} span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

typedef struct {
    const char *name;
    int idx;
} name_ref;

static int cmp_name_ref(const void *a, const void *b) {
    return strcmp(((const name_ref *)a)->name, ((const name_ref *)b)->name);
}

/* A JSON integer >= 0 as u64; false for anything else (float, negative, string, ...). */
static bool json_u64(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v)) return false;
    json_int_t i = json_integer_value(v);
    if (i < 0) return false;
    *out = (uint64_t)i;
    return true;
}

static mc_status parse_metadata(mc_st_file *f, json_t *meta, mc_error *err) {
    if (!json_is_object(meta))
        return MC_FAIL(err, MC_ERR_FORMAT, "%s: __metadata__ must be an object of strings",
                       f->path);
    size_t n = json_object_size(meta);
    f->meta_keys = mc_calloc_array(n ? n : 1, sizeof(char *));
    f->meta_vals = mc_calloc_array(n ? n : 1, sizeof(char *));
    if (!f->meta_keys || !f->meta_vals)
        return MC_FAIL(err, MC_ERR_NOMEM, "%s: out of memory for metadata", f->path);
    const char *key;
    json_t *val;
    json_object_foreach(meta, key, val) {
        if (!json_is_string(val))
            return MC_FAIL(err, MC_ERR_FORMAT, "%s: __metadata__ key '%s' must have a string value",
                           f->path, key);
        f->meta_keys[f->n_meta] = mc_strdup(key);
        f->meta_vals[f->n_meta] = mc_strdup(json_string_value(val));
        f->n_meta++;
        if (!f->meta_keys[f->n_meta - 1] || !f->meta_vals[f->n_meta - 1])
            return MC_FAIL(err, MC_ERR_NOMEM, "%s: out of memory for metadata", f->path);
    }
    return MC_OK;
}

/* dtypes of the safetensors format that mc_dtype does not cover (unsigned wide integers, 8-bit
 * and smaller floats): a file using them is valid but unsupported, not malformed. */
static bool is_spec_dtype(const char *s) {
    static const char *const others[] = {"U16",     "U32",     "U64",     "F8_E4M3", "F8_E5M2",
                                         "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4",      "C64"};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++)
        if (!strcmp(s, others[i])) return true;
    return false;
}

/* Validates one tensor entry and fills t (name borrowed from the JSON; copied later). */
static mc_status parse_entry(const mc_st_file *f, const char *name, json_t *info, uint64_t data_len,
                             mc_st_tensor *t, span *s, mc_error *err) {
    const char *p = f->path;
    if (!json_is_object(info))
        return MC_FAIL(err, MC_ERR_FORMAT, "%s: tensor '%s': entry must be an object", p, name);
    const char *key;
    json_t *val;
    json_object_foreach(info, key, val) {
        if (strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data_offsets"))
            return MC_FAIL(err, MC_ERR_FORMAT,
                           "%s: tensor '%s': unknown field '%s' (expected dtype, shape, "
                           "data_offsets)",
                           p, name, key);
    }
    json_t *jd = json_object_get(info, "dtype");
    json_t *js = json_object_get(info, "shape");
    json_t *jo = json_object_get(info, "data_offsets");
    if (!jd || !js || !jo)
        return MC_FAIL(err, MC_ERR_FORMAT, "%s: tensor '%s': missing field '%s'", p, name,
                       !jd   ? "dtype"
                       : !js ? "shape"
                             : "data_offsets");
    if (json_is_string(jd) && !mc_dtype_parse(json_string_value(jd), &t->dtype) &&
        is_spec_dtype(json_string_value(jd)))
        return MC_FAIL(err, MC_ERR_UNSUPPORTED,
                       "%s: tensor '%s': dtype '%s' is valid safetensors but miclip reads only "
                       "F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL",
                       p, name, json_string_value(jd));
    if (!json_is_string(jd) || !mc_dtype_parse(json_string_value(jd), &t->dtype))
        return MC_FAIL(err, MC_ERR_FORMAT,
                       "%s: tensor '%s': unknown dtype %s%s%s (known: F64 F32 F16 BF16 I64 I32 "
                       "I16 I8 U8 BOOL)",
                       p, name, json_is_string(jd) ? "'" : "",
                       json_is_string(jd) ? json_string_value(jd) : "(not a string)",
                       json_is_string(jd) ? "'" : "");
    if (!json_is_array(js))
        return MC_FAIL(err, MC_ERR_FORMAT, "%s: tensor '%s': shape must be a list of integers", p,
                       name);
    size_t nd = json_array_size(js);
    if (nd > MC_MAX_DIMS)
        return MC_FAIL(err, MC_ERR_UNSUPPORTED,
                       "%s: tensor '%s': %zu dimensions, miclip handles at most %d", p, name, nd,
                       MC_MAX_DIMS);
    t->ndim = (int)nd;
    for (size_t i = 0; i < nd; i++) {
        uint64_t d;
        if (!json_u64(json_array_get(js, i), &d) || d > (uint64_t)INT64_MAX)
            return MC_FAIL(err, MC_ERR_FORMAT,
                           "%s: tensor '%s': shape[%zu] must be a non-negative integer", p, name,
                           i);
        t->shape[i] = (int64_t)d;
    }
    if (!mc_size_prod(t->shape, t->ndim, &t->numel) ||
        !mc_size_mul(t->numel, mc_dtype_size(t->dtype), &t->nbytes)) {
        char sh[256];
        mc_shape_str(t->shape, t->ndim, sh, sizeof sh);
        return MC_FAIL(err, MC_ERR_FORMAT, "%s: tensor '%s': size of shape %s x %s overflows", p,
                       name, sh, mc_dtype_name(t->dtype));
    }
    if (!json_is_array(jo) || json_array_size(jo) != 2 ||
        !json_u64(json_array_get(jo, 0), &s->begin) || !json_u64(json_array_get(jo, 1), &s->end))
        return MC_FAIL(err, MC_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets must be [begin, end] of non-negative "
                       "integers",
                       p, name);
    if (s->begin > s->end)
        return MC_FAIL(err, MC_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets [%llu, %llu] has begin > end", p, name,
                       (unsigned long long)s->begin, (unsigned long long)s->end);
    if (s->end > data_len)
        return MC_FAIL(err, MC_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets end %llu is past the data section "
                       "(%llu bytes)",
                       p, name, (unsigned long long)s->end, (unsigned long long)data_len);
    if (s->end - s->begin != (uint64_t)t->nbytes) {
        char sh[256];
        mc_shape_str(t->shape, t->ndim, sh, sizeof sh);
        return MC_FAIL(err, MC_ERR_FORMAT,
                       "%s: tensor '%s': shape %s x %s is %zu bytes but data_offsets [%llu, %llu] "
                       "span %llu",
                       p, name, sh, mc_dtype_name(t->dtype), t->nbytes,
                       (unsigned long long)s->begin, (unsigned long long)s->end,
                       (unsigned long long)(s->end - s->begin));
    }
    s->name = name;
    return MC_OK;
}

static mc_status parse_file(mc_st_file *f, mc_error *err) {
    const char *p = f->path;
    if (f->len < 8)
        return MC_FAIL(err, MC_ERR_FORMAT,
                       "%s: %zu bytes, too short for the 8-byte header length (truncated?)", p,
                       f->len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | f->base[i]; /* little-endian on any host */
    if (n > MC_ST_MAX_HEADER)
        return MC_FAIL(err, MC_ERR_FORMAT,
                       "%s: header length %llu exceeds the %llu-byte cap (not a safetensors "
                       "file?)",
                       p, (unsigned long long)n, MC_ST_MAX_HEADER);
    if (n > f->len - 8)
        return MC_FAIL(err, MC_ERR_FORMAT,
                       "%s: header length %llu is past the end of the file (%zu bytes; "
                       "truncated?)",
                       p, (unsigned long long)n, f->len);
    f->data_start = 8 + (size_t)n;
    uint64_t data_len = f->len - f->data_start;

    json_error_t jerr;
    json_t *root = json_loadb((const char *)f->base + 8, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        /* jansson does not name a duplicate key: show the text just before the error */
        char near[48];
        size_t end = jerr.position > 0 && (size_t)jerr.position <= n ? (size_t)jerr.position : 0;
        size_t begin = end > sizeof near - 1 ? end - (sizeof near - 1) : 0, k = 0;
        for (size_t i = begin; i < end; i++) {
            unsigned char ch = f->base[8 + i];
            near[k++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
        }
        near[k] = '\0';
        return MC_FAIL(err, MC_ERR_FORMAT, "%s: header JSON invalid at byte %d: %s (after '%s')", p,
                       jerr.position, jerr.text, near);
    }
    mc_status st = MC_OK;
    span *spans = NULL;
    if (!json_is_object(root)) {
        st = MC_FAIL(err, MC_ERR_FORMAT, "%s: header JSON must be an object", p);
        goto done;
    }
    size_t nkeys = json_object_size(root);
    json_t *meta = json_object_get(root, "__metadata__");
    size_t nt = nkeys - (meta ? 1 : 0);
    if (nt > INT32_MAX) {
        st = MC_FAIL(err, MC_ERR_FORMAT, "%s: too many tensors (%zu)", p, nt);
        goto done;
    }
    if (meta && (st = parse_metadata(f, meta, err)) != MC_OK) goto done;
    f->tensors = mc_calloc_array(nt ? nt : 1, sizeof(mc_st_tensor));
    spans = mc_calloc_array(nt ? nt : 1, sizeof(span));
    f->by_name = mc_calloc_array(nt ? nt : 1, sizeof(int));
    if (!f->tensors || !spans || !f->by_name) {
        st = MC_FAIL(err, MC_ERR_NOMEM, "%s: out of memory for %zu tensors", p, nt);
        goto done;
    }
    mc_st_tensor *tmp = mc_calloc_array(nt ? nt : 1, sizeof(mc_st_tensor));
    if (!tmp) {
        st = MC_FAIL(err, MC_ERR_NOMEM, "%s: out of memory for %zu tensors", p, nt);
        goto done;
    }
    size_t k = 0;
    const char *name;
    json_t *info;
    json_object_foreach(root, name, info) {
        if (!strcmp(name, "__metadata__")) continue;
        if ((st = parse_entry(f, name, info, data_len, &tmp[k], &spans[k], err)) != MC_OK) {
            free(tmp);
            goto done;
        }
        tmp[k].name = name; /* borrowed from root until copied below */
        k++;
    }
    /* Sort by offset and require the spans to tile [0, data_len) exactly. Equal (begin, end)
     * pairs are only possible for empty tensors, so ties do not hide overlaps. */
    for (size_t i = 0; i < nt; i++) {
        spans[i].name = tmp[i].name;
        spans[i].idx = i;
    }
    qsort(spans, nt, sizeof(span), cmp_span);
    uint64_t expect = 0;
    const char *prev = NULL;
    for (size_t i = 0; i < nt; i++) {
        if (spans[i].begin < expect) {
            st = MC_FAIL(err, MC_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s' (ends at "
                         "%llu)",
                         p, spans[i].name, (unsigned long long)spans[i].begin,
                         (unsigned long long)spans[i].end, prev, (unsigned long long)expect);
            break;
        }
        if (spans[i].begin > expect) {
            st = MC_FAIL(err, MC_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets begin %llu leaves a gap after offset %llu"
                         "%s%s%s",
                         p, spans[i].name, (unsigned long long)spans[i].begin,
                         (unsigned long long)expect, prev ? " (end of tensor '" : "",
                         prev ? prev : "", prev ? "')" : "");
            break;
        }
        expect = spans[i].end;
        prev = spans[i].name;
    }
    if (st == MC_OK && expect != data_len)
        st = MC_FAIL(err, MC_ERR_FORMAT,
                     "%s: the tensors cover %llu of the %llu data bytes: %llu trailing bytes "
                     "belong to no tensor",
                     p, (unsigned long long)expect, (unsigned long long)data_len,
                     (unsigned long long)(data_len - expect));
    for (size_t i = 0; st == MC_OK && i < nt; i++) {
        f->tensors[i] = tmp[spans[i].idx];
        f->tensors[i].data = f->base + f->data_start + spans[i].begin;
        f->tensors[i].name = mc_strdup(spans[i].name);
        f->count = (int)i + 1;
        if (!f->tensors[i].name) st = MC_FAIL(err, MC_ERR_NOMEM, "%s: out of memory", p);
    }
    free(tmp);
    if (st != MC_OK) goto done;
    /* Name index for mc_st_find (names are unique: duplicate JSON keys were rejected). */
    name_ref *refs = mc_alloc_array(nt ? nt : 1, sizeof(name_ref));
    if (!refs) {
        st = MC_FAIL(err, MC_ERR_NOMEM, "%s: out of memory", p);
        goto done;
    }
    for (int i = 0; i < f->count; i++) refs[i] = (name_ref){f->tensors[i].name, i};
    qsort(refs, nt, sizeof(name_ref), cmp_name_ref);
    for (int i = 0; i < f->count; i++) f->by_name[i] = refs[i].idx;
    free(refs);
done:
    free(spans);
    json_decref(root);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* open / close */

static mc_status finish_open(mc_st_file *f, mc_st_file **out, mc_error *err) {
    mc_status st = parse_file(f, err);
    if (st != MC_OK) {
        mc_st_close(&f);
        return st;
    }
    *out = f;
    return MC_OK;
}

mc_status mc_st_open_buffer(const void *buf, size_t len, const char *label, mc_st_file **out,
                            mc_error *err) {
    *out = NULL;
    mc_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = mc_strdup(label ? label : "(buffer)"))) {
        free(f);
        return MC_FAIL(err, MC_ERR_NOMEM, "out of memory opening %s", label ? label : "(buffer)");
    }
    f->base = buf;
    f->len = len;
    return finish_open(f, out, err);
}

mc_status mc_st_open(const char *path, mc_st_file **out, mc_error *err) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC /* a FIFO must not block before fstat */);
    if (fd < 0) return MC_FAIL(err, MC_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return MC_FAIL(err, MC_ERR_IO, "%s is not a regular file", path);
    }
    mc_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = mc_strdup(path))) {
        free(f);
        close(fd);
        return MC_FAIL(err, MC_ERR_NOMEM, "out of memory opening %s", path);
    }
    f->len = (size_t)sb.st_size;
    if (f->len > 0) {
        void *m = mmap(NULL, f->len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            free(f->path);
            free(f);
            return MC_FAIL(err, MC_ERR_IO, "cannot map %s (%zu bytes): %s", path,
                           (size_t)sb.st_size, strerror(e));
        }
        f->map = m;
        f->map_len = f->len;
        f->base = m;
    } else {
        static const unsigned char empty[1];
        f->base = empty;
    }
    close(fd); /* the mapping stays valid */
    return finish_open(f, out, err);
}

void mc_st_close(mc_st_file **fp) {
    if (!fp || !*fp) return;
    mc_st_file *f = *fp;
    if (f->map) munmap(f->map, f->map_len);
    for (int i = 0; i < f->count; i++) free((char *)f->tensors[i].name);
    free(f->tensors);
    free(f->by_name);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_vals[i]);
    }
    free(f->meta_keys);
    free(f->meta_vals);
    free(f->path);
    free(f);
    *fp = NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* queries */

const char *mc_st_path(const mc_st_file *f) { return f->path; }
int mc_st_count(const mc_st_file *f) { return f->count; }

const mc_st_tensor *mc_st_at(const mc_st_file *f, int i) {
    MC_ASSERT(i >= 0 && i < f->count);
    return &f->tensors[i];
}

const mc_st_tensor *mc_st_find(const mc_st_file *f, const char *name) {
    int lo = 0, hi = f->count - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        const mc_st_tensor *t = &f->tensors[f->by_name[mid]];
        int c = strcmp(name, t->name);
        if (c == 0) return t;
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return NULL;
}

const char *mc_st_metadata(const mc_st_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta_keys[i], key)) return f->meta_vals[i];
    return NULL;
}

int mc_st_metadata_count(const mc_st_file *f) { return f->n_meta; }

void mc_st_metadata_at(const mc_st_file *f, int i, const char **key, const char **value) {
    MC_ASSERT(i >= 0 && i < f->n_meta);
    *key = f->meta_keys[i];
    *value = f->meta_vals[i];
}

size_t mc_st_total_numel(const mc_st_file *f) {
    size_t total = 0;
    for (int i = 0; i < f->count; i++) total += f->tensors[i].numel; /* bounded by file size */
    return total;
}

size_t mc_st_header_bytes(const mc_st_file *f) { return f->data_start - 8; }

mc_status mc_st_get(const mc_st_file *f, const char *name, int ndim, const int64_t *expect,
                    const mc_st_tensor **out, mc_error *err) {
    *out = NULL;
    char want[256], got[256];
    if (ndim < 0 || ndim > MC_MAX_DIMS)
        return MC_FAIL(err, MC_ERR_ARG, "%s: tensor '%s': expected rank %d is out of range",
                       f->path, name, ndim);
    /* Zeroed: gcc -O2 -g (RelWithDebInfo) cannot see that only the first ndim are read. */
    int64_t any[MC_MAX_DIMS] = {0};
    if (!expect) { /* NULL: any size in each of the ndim dimensions */
        for (int i = 0; i < ndim; i++) any[i] = -1;
        expect = any;
    }
    mc_shape_str(expect, ndim, want, sizeof want);
    const mc_st_tensor *t = mc_st_find(f, name);
    if (!t)
        return MC_FAIL(err, MC_ERR_SHAPE, "%s: tensor '%s' (expected shape %s) is missing", f->path,
                       name, want);
    bool ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        if (expect[i] != -1 && expect[i] != t->shape[i]) ok = false;
    if (!ok) {
        mc_shape_str(t->shape, t->ndim, got, sizeof got);
        return MC_FAIL(err, MC_ERR_SHAPE, "%s: tensor '%s' has shape %s, expected %s", f->path,
                       name, got, want);
    }
    *out = t;
    return MC_OK;
}

mc_status mc_st_read_f32(const mc_st_file *f, const char *name, int ndim, const int64_t *expect,
                         float *dst, mc_error *err) {
    const mc_st_tensor *t;
    MC_TRY(mc_st_get(f, name, ndim, expect, &t, err));
    mc_status st = mc_convert_to_f32(t->dtype, t->data, t->numel, dst, err);
    if (st != MC_OK) mc_error_prefix(err, "%s: tensor '%s'", f->path, name);
    return st;
}

mc_status mc_st_read_f32_finite(const mc_st_file *f, const char *name, int ndim,
                                const int64_t *expect, float *dst, mc_error *err) {
    MC_TRY(mc_st_read_f32(f, name, ndim, expect, dst, err));
    const mc_st_tensor *t = mc_st_find(f, name);
    return mc_check_finite(dst, t ? t->numel : 0, err, "%s: tensor '%s'", f->path, name);
}

/* ------------------------------------------------------------------------------------------ */
/* writer */

typedef struct {
    char *name;
    mc_dtype dtype;
    int ndim;
    int64_t shape[MC_MAX_DIMS];
    size_t nbytes;
    void *data;
} wtensor;

struct mc_st_writer {
    wtensor *t;
    int n, cap;
    json_t *meta; /* string -> string */
};

mc_status mc_st_writer_create(mc_st_writer **out, mc_error *err) {
    *out = calloc(1, sizeof **out);
    if (!*out || !((*out)->meta = json_object())) {
        free(*out);
        *out = NULL;
        return MC_FAIL(err, MC_ERR_NOMEM, "out of memory creating a safetensors writer");
    }
    return MC_OK;
}

void mc_st_writer_free(mc_st_writer **wp) {
    if (!wp || !*wp) return;
    mc_st_writer *w = *wp;
    for (int i = 0; i < w->n; i++) {
        free(w->t[i].name);
        free(w->t[i].data);
    }
    free(w->t);
    json_decref(w->meta);
    free(w);
    *wp = NULL;
}

mc_status mc_st_writer_add(mc_st_writer *w, const char *name, mc_dtype dtype, int ndim,
                           const int64_t *shape, const void *data, mc_error *err) {
    if (!name || !strcmp(name, "__metadata__"))
        return MC_FAIL(err, MC_ERR_ARG, "safetensors writer: invalid tensor name '%s'",
                       name ? name : "(null)");
    if ((unsigned)dtype >= MC_DTYPE_COUNT)
        return MC_FAIL(err, MC_ERR_ARG, "safetensors writer: tensor '%s': invalid dtype %d", name,
                       (int)dtype);
    if (ndim < 0 || ndim > MC_MAX_DIMS)
        return MC_FAIL(err, MC_ERR_ARG, "safetensors writer: tensor '%s': %d dimensions", name,
                       ndim);
    for (int i = 0; i < w->n; i++)
        if (!strcmp(w->t[i].name, name))
            return MC_FAIL(err, MC_ERR_ARG, "safetensors writer: tensor '%s' added twice", name);
    size_t numel, nbytes;
    if (!mc_size_prod(shape, ndim, &numel) || !mc_size_mul(numel, mc_dtype_size(dtype), &nbytes))
        return MC_FAIL(err, MC_ERR_ARG,
                       "safetensors writer: tensor '%s': negative or overflowing shape", name);
    if (w->n == w->cap) {
        int nc = w->cap ? 2 * w->cap : 16;
        wtensor *nt = realloc(w->t, (size_t)nc * sizeof *nt);
        if (!nt) return MC_FAIL(err, MC_ERR_NOMEM, "safetensors writer: out of memory");
        w->t = nt;
        w->cap = nc;
    }
    wtensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    t->name = mc_strdup(name);
    t->data = malloc(nbytes ? nbytes : 1);
    if (!t->name || !t->data) {
        free(t->name);
        free(t->data);
        return MC_FAIL(err, MC_ERR_NOMEM, "safetensors writer: out of memory for '%s' (%zu bytes)",
                       name, nbytes);
    }
    if (nbytes) memcpy(t->data, data, nbytes);
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->nbytes = nbytes;
    w->n++;
    return MC_OK;
}

mc_status mc_st_writer_add_metadata(mc_st_writer *w, const char *key, const char *value,
                                    mc_error *err) {
    json_t *v = json_string(value);
    if (!v || json_object_set_new(w->meta, key, v) != 0)
        return MC_FAIL(err, MC_ERR_ARG,
                       "safetensors writer: metadata '%s' is not valid UTF-8 (or out of memory)",
                       key);
    return MC_OK;
}

/* Builds the header object; its keys are dumped sorted (JSON_SORT_KEYS). */
static mc_status build_header(const mc_st_writer *w, char **out, mc_error *err) {
    json_t *root = json_object();
    if (!root) return MC_FAIL(err, MC_ERR_NOMEM, "safetensors writer: out of memory");
    uint64_t off = 0;
    bool ok = true;
    for (int i = 0; ok && i < w->n; i++) {
        const wtensor *t = &w->t[i];
        json_t *shape = json_array();
        for (int d = 0; shape && d < t->ndim; d++)
            if (json_array_append_new(shape, json_integer(t->shape[d])) != 0) ok = false;
        uint64_t end = off + t->nbytes; /* sum of sizes of buffers that exist: cannot overflow */
        json_t *info = json_pack("{s:s, s:o, s:[I,I]}", "dtype", mc_dtype_name(t->dtype), "shape",
                                 shape, "data_offsets", (json_int_t)off, (json_int_t)end);
        if (!shape || !info || json_object_set_new(root, t->name, info) != 0) {
            json_decref(root);
            return MC_FAIL(err, MC_ERR_ARG,
                           "safetensors writer: tensor name '%s' is not valid UTF-8 (or out of "
                           "memory)",
                           t->name);
        }
        off = end;
    }
    if (ok && json_object_size(w->meta) > 0)
        ok = json_object_set(root, "__metadata__", w->meta) == 0;
    char *s = ok ? json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(root);
    if (!s) return MC_FAIL(err, MC_ERR_NOMEM, "safetensors writer: cannot serialise the header");
    *out = s;
    return MC_OK;
}

mc_status mc_st_writer_save(mc_st_writer *w, const char *path, mc_error *err) {
    char *hdr = NULL;
    mc_status st = build_header(w, &hdr, err);
    if (st != MC_OK) {
        mc_error_prefix(err, "%s", path);
        return st;
    }
    /* Pad the header with spaces to a multiple of 8, as the reference writer does, so the data
     * section starts 8-byte aligned in the file. */
    size_t hlen = strlen(hdr);
    size_t padded = (hlen + 7) & ~(size_t)7;
    size_t total = 8 + padded;
    for (int i = 0; i < w->n; i++) {
        if (!mc_size_add(total, w->t[i].nbytes, &total)) {
            free(hdr);
            return MC_FAIL(err, MC_ERR_NOMEM, "%s: file size overflows", path);
        }
    }
    if (padded > MC_ST_MAX_HEADER) {
        free(hdr);
        return MC_FAIL(err, MC_ERR_ARG, "%s: header of %zu bytes exceeds the safetensors cap", path,
                       padded);
    }
    unsigned char *buf = malloc(total);
    if (!buf) {
        free(hdr);
        return MC_FAIL(err, MC_ERR_NOMEM, "%s: out of memory (%zu bytes)", path, total);
    }
    uint64_t n = padded;
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(n >> (8 * i));
    memcpy(buf + 8, hdr, hlen);
    memset(buf + 8 + hlen, ' ', padded - hlen);
    free(hdr);
    size_t pos = 8 + padded;
    for (int i = 0; i < w->n; i++) {
        if (w->t[i].nbytes) memcpy(buf + pos, w->t[i].data, w->t[i].nbytes);
        pos += w->t[i].nbytes;
    }
    st = mc_write_file_atomic(path, buf, total, err);
    free(buf);
    return st;
}
