/* store.c - the parallel HDF5 store: files, groups, datasets and data transfer.
 *
 * Every collective function follows one pattern: local checks, agree (so no rank enters an
 * HDF5 collective that another rank skipped), the HDF5 calls, agree again. HDF5 metadata
 * operations (create, open, attributes) are collective in parallel HDF5 anyway; raw-data
 * transfers use a collective or independent transfer property as asked. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "miclip/checked.h"
#include "miclip/log.h"
#include "store_int.h"

#define DEFAULT_IO_LIMIT ((size_t)1 << 30)

/* --- HDF5 error capture ------------------------------------------------------------------ */

typedef struct {
    char *buf;
    size_t cap, len;
    int count;
} stack_text;

static herr_t collect_entry(unsigned n, const H5E_error2_t *e, void *ud) {
    stack_text *t = ud;
    if (t->count >= 4) return 0; /* the innermost few say what went wrong */
    char minor[128] = "";
    H5Eget_msg(e->min_num, NULL, minor, sizeof minor);
    int w = snprintf(t->buf + t->len, t->cap - t->len, "%s%s(): %s%s%s%s", t->count ? "; " : "",
                     e->func_name ? e->func_name : "?", e->desc ? e->desc : "",
                     minor[0] ? " (" : "", minor, minor[0] ? ")" : "");
    if (w > 0) t->len += (size_t)w < t->cap - t->len ? (size_t)w : t->cap - t->len - 1;
    t->count++;
    return 0;
}

mc_status mc_store_h5fail_at(mc_error *err, mc_status code, const char *file, int line,
                             const char *fmt, ...) {
    char head[MC_ERROR_MSG_MAX], stack[MC_ERROR_MSG_MAX] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    /* Take the stack off the default one first: the H5Eget_msg calls below would clear it. */
    hid_t st = H5Eget_current_stack();
    if (st >= 0) {
        stack_text t = {stack, sizeof stack, 0, 0};
        H5Ewalk2(st, H5E_WALK_UPWARD, collect_entry, &t);
        H5Eclose_stack(st);
    }
    if (stack[0]) return mc_fail_at(err, code, file, line, "%s [HDF5: %s]", head, stack);
    return mc_fail_at(err, code, file, line, "%s", head);
}

void mc_store_h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

/* --- types ----------------------------------------------------------------------------- */

bool mc_store_dtype_supported(mc_dtype t) {
    switch (t) {
    case MC_DTYPE_F64:
    case MC_DTYPE_F32:
    case MC_DTYPE_F16:
    case MC_DTYPE_I64:
    case MC_DTYPE_I32:
    case MC_DTYPE_I16:
    case MC_DTYPE_I8:
    case MC_DTYPE_U8: return true;
    default: return false;
    }
}

hid_t mc_store_h5type(mc_dtype t) {
    switch (t) {
    case MC_DTYPE_F64: return H5Tcopy(H5T_IEEE_F64LE);
    case MC_DTYPE_F32: return H5Tcopy(H5T_IEEE_F32LE);
    case MC_DTYPE_I64: return H5Tcopy(H5T_STD_I64LE);
    case MC_DTYPE_I32: return H5Tcopy(H5T_STD_I32LE);
    case MC_DTYPE_I16: return H5Tcopy(H5T_STD_I16LE);
    case MC_DTYPE_I8: return H5Tcopy(H5T_STD_I8LE);
    case MC_DTYPE_U8: return H5Tcopy(H5T_STD_U8LE);
    case MC_DTYPE_F16: {
        /* IEEE binary16: sign bit 15, exponent bits 10..14 (bias 15), mantissa bits 0..9.
         * Narrow a float32 copy: fields first, then the size, so the fields always fit. */
        hid_t h = H5Tcopy(H5T_IEEE_F32LE);
        if (h < 0) return H5I_INVALID_HID;
        if (H5Tset_fields(h, 15, 10, 5, 0, 10) < 0 || H5Tset_size(h, 2) < 0 ||
            H5Tset_ebias(h, 15) < 0) {
            H5Tclose(h);
            return H5I_INVALID_HID;
        }
        return h;
    }
    default: return H5I_INVALID_HID;
    }
}

bool mc_store_dtype_from_h5(hid_t type, mc_dtype *out) {
    H5T_class_t cls = H5Tget_class(type);
    size_t size = H5Tget_size(type);
    if (cls == H5T_FLOAT) {
        if (size == 8)
            *out = MC_DTYPE_F64;
        else if (size == 4)
            *out = MC_DTYPE_F32;
        else if (size == 2) {
            size_t spos, epos, esize, mpos, msize;
            if (H5Tget_fields(type, &spos, &epos, &esize, &mpos, &msize) < 0 || esize != 5 ||
                msize != 10 || H5Tget_ebias(type) != 15)
                return false; /* a 16-bit float that is not IEEE half (e.g. bfloat16) */
            *out = MC_DTYPE_F16;
        } else
            return false;
        return true;
    }
    if (cls == H5T_INTEGER) {
        bool sign = H5Tget_sign(type) == H5T_SGN_2;
        if (sign && size == 8)
            *out = MC_DTYPE_I64;
        else if (sign && size == 4)
            *out = MC_DTYPE_I32;
        else if (sign && size == 2)
            *out = MC_DTYPE_I16;
        else if (sign && size == 1)
            *out = MC_DTYPE_I8;
        else if (!sign && size == 1)
            *out = MC_DTYPE_U8;
        else
            return false;
        return true;
    }
    return false;
}

/* Whether a buffer of dtype mem can be the target of a read of a dataset of dtype file
 * without loss. */
static bool read_widening_ok(mc_dtype file, mc_dtype mem) {
    if (file == mem) return true;
    bool ffloat = file == MC_DTYPE_F16 || file == MC_DTYPE_F32 || file == MC_DTYPE_F64;
    bool mfloat = mem == MC_DTYPE_F16 || mem == MC_DTYPE_F32 || mem == MC_DTYPE_F64;
    if (ffloat != mfloat) return false;
    if (ffloat) return mc_dtype_size(mem) > mc_dtype_size(file);
    /* integers: the target must be signed (all of ours but U8) and wider */
    return mem != MC_DTYPE_U8 && mc_dtype_size(mem) > mc_dtype_size(file);
}

/* --- small helpers ------------------------------------------------------------------------ */

mc_status mc_store_norm_name(const mc_store *s, const char *name, char *buf, mc_error *err) {
    if (!name) name = "";
    size_t n = strlen(name);
    if (n > MC_STORE_NAME_MAX - 1)
        return MC_FAIL(err, MC_ERR_ARG, "store '%s': object name longer than %d bytes: %.64s...",
                       s->path, MC_STORE_NAME_MAX - 1, name);
    if (name[0] == '/')
        memcpy(buf, name, n + 1);
    else {
        buf[0] = '/';
        memcpy(buf + 1, name, n + 1);
    }
    /* drop trailing slashes except the root's */
    size_t len = strlen(buf);
    while (len > 1 && buf[len - 1] == '/') buf[--len] = '\0';
    return MC_OK;
}

mc_status mc_store_agree(const mc_store *s, mc_status local, mc_error *err) {
    return mc_comm_agree(&s->comm, local, err);
}

const char *mc_store_path(const mc_store *s) { return s->path; }
bool mc_store_writable(const mc_store *s) { return s->writable; }
void mc_store_set_io_limit(mc_store *s, size_t bytes) { s->io_limit = bytes ? bytes : 1; }

static void store_free(mc_store *s) {
    if (!s) return;
    mc_store_lock_release(s->path ? s->path : "", &s->lock_fd);
    free(s->path);
    free(s);
}

/* Allocates the handle on every rank and agrees on success. */
static mc_status store_alloc(const mc_comm *c, const char *path, mc_store **out, mc_error *err) {
    mc_status st = MC_OK;
    mc_store *s = calloc(1, sizeof *s);
    if (!path || !*path)
        st = MC_FAIL(err, MC_ERR_ARG, "store: empty path");
    else if (!s || !(s->path = mc_strdup(path)))
        st = MC_FAIL(err, MC_ERR_NOMEM, "store '%s': out of memory", path);
    if (s) {
        s->comm = *c;
        s->file = H5I_INVALID_HID;
        s->lock_fd = -1;
        s->io_limit = DEFAULT_IO_LIMIT;
    }
    st = mc_comm_agree(c, st, err);
    if (st != MC_OK) {
        store_free(s);
        return st;
    }
    *out = s;
    return MC_OK;
}

static hid_t mpio_fapl(const mc_store *s) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return fapl;
    if (H5Pset_fapl_mpio(fapl, s->comm.comm, MPI_INFO_NULL) < 0 ||
        (s->writable && H5Pset_coll_metadata_write(fapl, true) < 0)) {
        H5Pclose(fapl);
        return H5I_INVALID_HID;
    }
    return fapl;
}

/* Rank 0, before HDF5 parses anything: a regular, non-empty file whose first 8 bytes are the
 * HDF5 signature (miclip writes no user block, so the superblock is at offset 0). */
static mc_status check_signature(const char *path, mc_error *err) {
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC /* a FIFO must not block before fstat */);
    if (fd < 0)
        return MC_FAIL(err, MC_ERR_IO, "store '%s': cannot open: %s", path, strerror(errno));
    struct stat stt;
    unsigned char head[8];
    mc_status st = MC_OK;
    if (fstat(fd, &stt) != 0 || !S_ISREG(stt.st_mode))
        st = MC_FAIL(err, MC_ERR_IO, "store '%s' is not a regular file", path);
    else if (pread(fd, head, sizeof head, 0) != (ssize_t)sizeof head || memcmp(head, sig, 8) != 0)
        st = MC_FAIL(err, MC_ERR_FORMAT,
                     "store '%s' is not an HDF5 file (no HDF5 signature at offset 0, size %lld "
                     "bytes); miclip opens only stores it wrote",
                     path, (long long)stt.st_size);
    close(fd);
    return st;
}

/* Collective: opens s->path with HDF5 and checks the store-id. */
static mc_status open_and_check(mc_store *s, mc_error *err) {
    mc_status st = MC_OK;
    hid_t fapl = mpio_fapl(s);
    if (fapl < 0) st = MC_H5FAIL(err, "store '%s': cannot set up MPI-IO access", s->path);
    if (st == MC_OK) {
        s->file = H5Fopen(s->path, s->writable ? H5F_ACC_RDWR : H5F_ACC_RDONLY, fapl);
        if (s->file < 0)
            st = MC_H5FAIL(err,
                           "store '%s': HDF5 cannot open it (a store whose writer was killed "
                           "before its first flush is unreadable: delete it and rerun)",
                           s->path);
    }
    if (fapl >= 0) H5Pclose(fapl);
    st = mc_store_agree(s, st, err);
    if (st != MC_OK) return st;

    char *id = NULL;
    if (H5Aexists(s->file, MC_STORE_ID_ATTR) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        st = MC_FAIL(err, MC_ERR_FORMAT,
                     "'%s' is an HDF5 file but not a miclip store (no '%s' attribute on /); "
                     "miclip opens only stores it wrote",
                     s->path, MC_STORE_ID_ATTR);
    } else if ((st = mc_store_get_attr_str(s, "/", MC_STORE_ID_ATTR, &id, err)) == MC_OK) {
        if (strncmp(id, MC_STORE_FORMAT "/", strlen(MC_STORE_FORMAT "/")) != 0)
            st = MC_FAIL(err, MC_ERR_FORMAT,
                         "'%s' is not a miclip store ('%s' is '%.64s', want '%s')", s->path,
                         MC_STORE_ID_ATTR, id, MC_STORE_ID_VALUE);
        else if (strcmp(id, MC_STORE_ID_VALUE) != 0)
            st = MC_FAIL(err, MC_ERR_UNSUPPORTED,
                         "store '%s' has format '%.64s'; this miclip reads '%s' only", s->path, id,
                         MC_STORE_ID_VALUE);
    }
    free(id);
    st = mc_store_agree(s, st, err);
    /* A store whose contents contradict its own layout record is refused (docs/store.md). */
    if (st == MC_OK && !s->tolerant) {
        char missing[MC_STORE_NAME_MAX + 64];
        if (mc_store_layout_check(s, missing, sizeof missing) < 0)
            st = mc_store_damaged(s, missing, err);
        st = mc_store_agree(s, st, err);
    }
    if (st != MC_OK) {
        H5Fclose(s->file);
        s->file = H5I_INVALID_HID;
    }
    return st;
}

/* --- files ------------------------------------------------------------------------------- */

/* Rank 0 of a writer: the lock the caller already holds (held_lock non-NULL and >= 0: the store
 * then owns it, *held_lock = -1, so it is never released between a probe and the open), else a
 * newly acquired one. */
static mc_status writer_lock(const char *path, int *held_lock, int *lock_fd, mc_error *err) {
    if (held_lock && *held_lock >= 0) {
        *lock_fd = *held_lock, *held_lock = -1;
        return MC_OK;
    }
    return mc_store_lock_acquire(path, lock_fd, err);
}

static mc_status open_store(const mc_comm *c, const char *path, mc_store_mode mode, bool tolerant,
                            int *held_lock, mc_store **out, mc_error *err) {
    *out = NULL;
    mc_store_h5_quiet();
    mc_store *s = NULL;
    MC_TRY(store_alloc(c, path, &s, err));
    s->writable = mode == MC_STORE_WRITE;
    s->tolerant = tolerant;
    mc_status st = MC_OK;
    if (c->rank == 0) {
        if (s->writable) st = writer_lock(path, held_lock, &s->lock_fd, err);
        if (st == MC_OK) st = check_signature(path, err);
    }
    st = mc_store_agree(s, st, err);
    if (st == MC_OK) st = open_and_check(s, err);
    if (st != MC_OK) {
        store_free(s);
        return st;
    }
    *out = s;
    if (s->writable) mc_store_hook(s, "open-write", "/");
    return MC_OK;
}

mc_status mc_store_open(const mc_comm *c, const char *path, mc_store_mode mode, mc_store **out,
                        mc_error *err) {
    return open_store(c, path, mode, false, NULL, out, err);
}

mc_status mc_store_open_tolerant(const mc_comm *c, const char *path, mc_store **out,
                                 mc_error *err) {
    return open_store(c, path, MC_STORE_READ, true, NULL, out, err);
}

mc_status mc_store_open_locked(const mc_comm *c, const char *path, int *held_lock, mc_store **out,
                               mc_error *err) {
    return open_store(c, path, MC_STORE_WRITE, false, held_lock, out, err);
}

mc_status mc_store_create_locked(const mc_comm *c, const char *path, int flags, int *held_lock,
                                 mc_store **out, mc_error *err) {
    *out = NULL;
    mc_store_h5_quiet();
    mc_store *s = NULL;
    MC_TRY(store_alloc(c, path, &s, err));
    s->writable = true;
    char tmp[4096];
    mc_status st = MC_OK;
    if (!mc_snprintf(tmp, sizeof tmp, "%s.creating", path))
        st = MC_FAIL(err, MC_ERR_ARG, "store path too long: %s", path);
    if (st == MC_OK && c->rank == 0) {
        st = writer_lock(path, held_lock, &s->lock_fd, err);
        struct stat stt;
        if (st == MC_OK && !(flags & MC_STORE_OVERWRITE) && lstat(path, &stt) == 0)
            st = MC_FAIL(err, MC_ERR_IO, "store '%s' already exists (open it, or remove it first)",
                         path);
        if (st == MC_OK && unlink(tmp) != 0 && errno != ENOENT)
            st = MC_FAIL(err, MC_ERR_IO, "store '%s': cannot remove stale %s: %s", path, tmp,
                         strerror(errno));
    }
    st = mc_store_agree(s, st, err);

    /* Build the file under the temporary name: id attribute, close (which writes the
     * superblock), then rename. A file at path is thus always openable. */
    if (st == MC_OK) {
        hid_t fapl = mpio_fapl(s);
        if (fapl < 0)
            st = MC_H5FAIL(err, "store '%s': cannot set up MPI-IO access", path);
        else {
            /* EXCL: rank 0 removed any stale tmp under the lock, so a file there now was planted
             * (a symlink to a victim, say) and must not be opened, let alone truncated. */
            s->file = H5Fcreate(tmp, H5F_ACC_EXCL, H5P_DEFAULT, fapl);
            if (s->file < 0) st = MC_H5FAIL(err, "store '%s': cannot create %s", path, tmp);
            H5Pclose(fapl);
        }
        st = mc_store_agree(s, st, err);
    }
    if (st == MC_OK) {
        st = mc_store_set_attr_str(s, "/", MC_STORE_ID_ATTR, MC_STORE_ID_VALUE, err);
        mc_status cs = H5Fclose(s->file) < 0
                           ? MC_H5FAIL(err, "store '%s': cannot close %s", path, tmp)
                           : MC_OK;
        s->file = H5I_INVALID_HID;
        if (st == MC_OK) st = cs;
        st = mc_store_agree(s, st, err);
        if (st == MC_OK) mc_store_hook(s, "create-built", tmp); /* a kill here leaves only tmp */
    }
    if (st == MC_OK) {
        if (c->rank == 0 && rename(tmp, path) != 0)
            st = MC_FAIL(err, MC_ERR_IO, "store '%s': cannot rename %s into place: %s", path, tmp,
                         strerror(errno));
        st = mc_store_agree(s, st, err);
    }
    if (st == MC_OK) st = open_and_check(s, err);
    if (st != MC_OK) {
        store_free(s);
        return st;
    }
    *out = s;
    mc_store_hook(s, "create", "/");
    return MC_OK;
}

mc_status mc_store_create(const mc_comm *c, const char *path, int flags, mc_store **out,
                          mc_error *err) {
    return mc_store_create_locked(c, path, flags, NULL, out, err);
}

mc_status mc_store_open_or_create(const mc_comm *c, const char *path, mc_store **out, bool *created,
                                  mc_error *err) {
    int exists = 0;
    if (c->rank == 0) {
        struct stat stt;
        exists = path && lstat(path, &stt) == 0;
    }
    MPI_Bcast(&exists, 1, MPI_INT, 0, c->comm);
    if (created) *created = !exists;
    if (exists) return mc_store_open(c, path, MC_STORE_WRITE, out, err);
    return mc_store_create(c, path, 0, out, err);
}

mc_status mc_store_close(mc_store **sp, mc_error *err) {
    if (!sp || !*sp) return MC_OK;
    mc_store *s = *sp;
    mc_status st = MC_OK;
    if (s->file >= 0 && H5Fclose(s->file) < 0)
        st = MC_H5FAIL(err, "store '%s': closing failed (data since the last flush may be lost)",
                       s->path);
    s->file = H5I_INVALID_HID;
    st = mc_store_agree(s, st, err);
    if (st == MC_OK && s->writable) mc_store_hook(s, "close", "/");
    store_free(s);
    *sp = NULL;
    return st;
}

mc_status mc_store_flush(mc_store *s, mc_error *err) {
    mc_status st = MC_OK;
    if (s->writable && H5Fflush(s->file, H5F_SCOPE_GLOBAL) < 0)
        st = MC_H5FAIL(err, "store '%s': flush failed", s->path);
    st = mc_store_agree(s, st, err);
    if (st == MC_OK) mc_store_hook(s, "flush", "/");
    return st;
}

/* --- groups and datasets ------------------------------------------------------------------- */

bool mc_store_exists(mc_store *s, const char *name) {
    char p[MC_STORE_NAME_MAX + 2];
    if (mc_store_norm_name(s, name, p, NULL) != MC_OK) return false;
    if (!strcmp(p, "/")) return true;
    /* H5Lexists fails on a path whose parent is missing, so test each prefix in turn. */
    for (char *q = p + 1;; q++) {
        if (*q != '/' && *q != '\0') continue;
        char saved = *q;
        *q = '\0';
        htri_t e = H5Lexists(s->file, p, H5P_DEFAULT);
        *q = saved;
        if (e <= 0) {
            H5Eclear2(H5E_DEFAULT);
            return false;
        }
        if (saved == '\0') break;
    }
    htri_t o = H5Oexists_by_name(s->file, p, H5P_DEFAULT);
    H5Eclear2(H5E_DEFAULT);
    return o > 0;
}

static hid_t lcpl_intermediate(void) {
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    if (lcpl >= 0 && H5Pset_create_intermediate_group(lcpl, 1) < 0) {
        H5Pclose(lcpl);
        return H5I_INVALID_HID;
    }
    return lcpl;
}

mc_status mc_store_create_group(mc_store *s, const char *name, mc_error *err) {
    char p[MC_STORE_NAME_MAX + 2];
    mc_status st = mc_store_norm_name(s, name, p, err);
    if (st == MC_OK && !s->writable)
        st =
            MC_FAIL(err, MC_ERR_ARG, "store '%s': group '%s': store is open read-only", s->path, p);
    st = mc_store_agree(s, st, err);
    if (st != MC_OK) return st;
    if (!mc_store_exists(s, p)) {
        hid_t lcpl = lcpl_intermediate();
        hid_t g = lcpl < 0 ? lcpl : H5Gcreate2(s->file, p, lcpl, H5P_DEFAULT, H5P_DEFAULT);
        if (g < 0)
            st = MC_H5FAIL(err, "store '%s': cannot create group '%s'", s->path, p);
        else
            H5Gclose(g);
        if (lcpl >= 0) H5Pclose(lcpl);
        st = mc_store_agree(s, st, err);
    }
    if (st == MC_OK) mc_store_hook(s, "create_group", p);
    return st;
}

/* Reads the dtype and shape of an open dataset. */
static mc_status dataset_info(const mc_store *s, hid_t d, const char *p,
                              mc_store_dataset_info *info, mc_error *err) {
    memset(info, 0, sizeof *info);
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
    mc_status st = MC_OK;
    if (t < 0 || sp < 0)
        st = MC_H5FAIL(err, "store '%s': dataset '%s': cannot read its type", s->path, p);
    else if (!mc_store_dtype_from_h5(t, &info->dtype))
        st = MC_FAIL(err, MC_ERR_FORMAT,
                     "store '%s': dataset '%s' has an element type miclip does not write", s->path,
                     p);
    else {
        int nd = H5Sget_simple_extent_ndims(sp);
        hsize_t dims[MC_MAX_DIMS];
        if (nd < 1 || nd > MC_MAX_DIMS)
            st = MC_FAIL(err, MC_ERR_FORMAT,
                         "store '%s': dataset '%s' has %d dimensions (1..%d supported)", s->path, p,
                         nd, MC_MAX_DIMS);
        else if (H5Sget_simple_extent_dims(sp, dims, NULL) < 0)
            st = MC_H5FAIL(err, "store '%s': dataset '%s': cannot read its shape", s->path, p);
        else {
            info->ndim = nd;
            for (int i = 0; i < nd; i++) {
                if (dims[i] > (hsize_t)INT64_MAX)
                    st = MC_FAIL(err, MC_ERR_FORMAT,
                                 "store '%s': dataset '%s': dimension %d too large", s->path, p, i);
                info->shape[i] = (int64_t)dims[i];
            }
        }
    }
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    return st;
}

static hid_t open_dataset(const mc_store *s, const char *p, mc_error *err) {
    hid_t d = H5Dopen2(s->file, p, H5P_DEFAULT);
    if (d < 0) MC_H5FAIL(err, "store '%s': no dataset '%s'", s->path, p);
    return d;
}

mc_status mc_store_dataset_info_get(mc_store *s, const char *name, mc_store_dataset_info *info,
                                    mc_error *err) {
    char p[MC_STORE_NAME_MAX + 2];
    MC_TRY(mc_store_norm_name(s, name, p, err));
    if (!mc_store_exists(s, p))
        return MC_FAIL(err, MC_ERR_SHAPE, "store '%s': no dataset '%s'", s->path, p);
    hid_t d = open_dataset(s, p, err);
    if (d < 0) return MC_ERR_HDF5;
    mc_status st = dataset_info(s, d, p, info, err);
    H5Dclose(d);
    return st;
}

mc_status mc_store_create_dataset(mc_store *s, const char *name, mc_dtype dtype, int ndim,
                                  const int64_t *shape, int64_t chunk_rows, mc_error *err) {
    char p[MC_STORE_NAME_MAX + 2];
    mc_status st = mc_store_norm_name(s, name, p, err);
    /* Rank 0's description is the one created; a rank that disagrees is a caller bug. */
    struct {
        int64_t dtype, ndim, chunk_rows, shape[MC_MAX_DIMS];
    } d0 = {0};
    if (st == MC_OK && (ndim < 1 || ndim > MC_MAX_DIMS || !shape))
        st = MC_FAIL(err, MC_ERR_ARG, "store '%s': dataset '%s': %d dimensions (1..%d supported)",
                     s->path, p, ndim, MC_MAX_DIMS);
    if (st == MC_OK) {
        d0.dtype = dtype;
        d0.ndim = ndim;
        d0.chunk_rows = chunk_rows;
        memcpy(d0.shape, shape, (size_t)ndim * sizeof *shape);
    }
    st = mc_store_agree(s, st, err);
    if (st != MC_OK) return st;
    MPI_Bcast(&d0, (int)sizeof d0, MPI_BYTE, 0, s->comm.comm);
    dtype = (mc_dtype)d0.dtype;
    ndim = (int)d0.ndim;
    chunk_rows = d0.chunk_rows;
    char shp[160];
    mc_shape_str(d0.shape, ndim, shp, sizeof shp);

    size_t esize = mc_store_dtype_supported(dtype) ? mc_dtype_size(dtype) : 0, total = 0, row = 0;
    if (!s->writable)
        st = MC_FAIL(err, MC_ERR_ARG, "store '%s': dataset '%s': store is open read-only", s->path,
                     p);
    else if (!esize)
        st = MC_FAIL(err, MC_ERR_UNSUPPORTED, "store '%s': dataset '%s': dtype %s cannot be stored",
                     s->path, p, (unsigned)dtype < MC_DTYPE_COUNT ? mc_dtype_name(dtype) : "?");
    else if (!mc_size_prod(d0.shape, ndim, &total) || !mc_size_mul(total, esize, &total) ||
             !mc_size_prod(d0.shape + 1, ndim - 1, &row) || !mc_size_mul(row, esize, &row))
        st = MC_FAIL(err, MC_ERR_ARG, "store '%s': dataset '%s': invalid or too large shape %s",
                     s->path, p, shp);
    else if (chunk_rows < 0)
        st = MC_FAIL(err, MC_ERR_ARG, "store '%s': dataset '%s': chunk_rows %lld < 0", s->path, p,
                     (long long)chunk_rows);
    else if (chunk_rows > 0) {
        size_t cb = 0; /* HDF5 chunks must stay under 4 GiB */
        if (!mc_size_mul(row ? row : esize, (size_t)chunk_rows, &cb) || cb >= ((size_t)1 << 32))
            st = MC_FAIL(err, MC_ERR_ARG,
                         "store '%s': dataset '%s': chunks of %lld rows exceed 4 GiB", s->path, p,
                         (long long)chunk_rows);
    }
    st = mc_store_agree(s, st, err);
    if (st != MC_OK) return st;

    if (mc_store_exists(s, p)) { /* a resumed run: it must be the same dataset */
        mc_store_dataset_info info;
        st = mc_store_dataset_info_get(s, p, &info, err);
        if (st == MC_OK) {
            bool same = info.dtype == dtype && info.ndim == ndim;
            for (int i = 0; same && i < ndim; i++) same = info.shape[i] == d0.shape[i];
            if (!same) {
                char have[160];
                mc_shape_str(info.shape, info.ndim, have, sizeof have);
                st =
                    MC_FAIL(err, MC_ERR_SHAPE,
                            "store '%s': dataset '%s' exists as %s %s, want %s %s (was the store "
                            "made by a different config?)",
                            s->path, p, mc_dtype_name(info.dtype), have, mc_dtype_name(dtype), shp);
            }
        }
        st = mc_store_agree(s, st, err);
        if (st == MC_OK) mc_store_hook(s, "create_dataset", p);
        return st;
    }

    hsize_t dims[MC_MAX_DIMS], chunk[MC_MAX_DIMS];
    for (int i = 0; i < ndim; i++) {
        dims[i] = (hsize_t)d0.shape[i];
        chunk[i] = dims[i] ? dims[i] : 1;
    }
    if (chunk_rows > 0) chunk[0] = (hsize_t)chunk_rows < chunk[0] ? (hsize_t)chunk_rows : chunk[0];
    hid_t ft = mc_store_h5type(dtype), space = H5Screate_simple(ndim, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE), lcpl = lcpl_intermediate();
    /* Early allocation (parallel HDF5 needs it) without fill: a fill would write the whole
     * dataset once more, which for token activations is tens of gigabytes. */
    bool ok = ft >= 0 && space >= 0 && dcpl >= 0 && lcpl >= 0 &&
              H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY) >= 0 &&
              H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) >= 0 &&
              (chunk_rows == 0 || H5Pset_chunk(dcpl, ndim, chunk) >= 0);
    hid_t d = ok ? H5Dcreate2(s->file, p, ft, space, lcpl, dcpl, H5P_DEFAULT) : H5I_INVALID_HID;
    if (d < 0)
        st = MC_H5FAIL(err, "store '%s': cannot create dataset '%s' (%s %s)", s->path, p,
                       mc_dtype_name(dtype), shp);
    else
        H5Dclose(d);
    if (ft >= 0) H5Tclose(ft);
    if (space >= 0) H5Sclose(space);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (lcpl >= 0) H5Pclose(lcpl);
    st = mc_store_agree(s, st, err);
    if (st == MC_OK) mc_store_hook(s, "create_dataset", p);
    return st;
}

/* --- data transfer ------------------------------------------------------------------------ */

typedef struct {
    bool write, collective;
    bool raw;  /* a read that skips the checksum verification */
    bool rows; /* start/count come from [row_begin, row_end) and the full other dims */
    int64_t row_begin, row_end;
    const int64_t *start, *count;
} xfer_req;

static mc_status xfer(mc_store *s, const char *name, mc_dtype dtype, const xfer_req *rq, void *data,
                      mc_error *err) {
    char p[MC_STORE_NAME_MAX + 2];
    const char *what = rq->write ? "write" : "read";
    mc_status st = mc_store_norm_name(s, name, p, err);
    hid_t d = H5I_INVALID_HID, fspace = H5I_INVALID_HID, mt = H5I_INVALID_HID;
    hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
    mc_store_dataset_info info = {0};
    int64_t start[MC_MAX_DIMS] = {0}, count[MC_MAX_DIMS] = {0};
    bool empty = false;
    size_t row_elems = 1, esize = 0;

    if (st == MC_OK && rq->write && !s->writable)
        st = MC_FAIL(err, MC_ERR_ARG, "store '%s': dataset '%s': store is open read-only", s->path,
                     p);
    if (st == MC_OK && !mc_store_exists(s, p))
        st = MC_FAIL(err, MC_ERR_SHAPE, "store '%s': no dataset '%s' to %s", s->path, p, what);
    if (st == MC_OK && (d = open_dataset(s, p, err)) < 0) st = MC_ERR_HDF5;
    if (st == MC_OK) st = dataset_info(s, d, p, &info, err);
    if (st == MC_OK && rq->write && mc_store_is_sealed(d))
        st = MC_FAIL(err, MC_ERR_ARG,
                     "store '%s': dataset '%s' belongs to a completed stage (its checksum '%s' is "
                     "recorded); a completed store is not written again",
                     s->path, p, MC_STORE_SUM_ATTR);
    if (st == MC_OK) {
        bool ok = mc_store_dtype_supported(dtype) &&
                  (rq->write ? dtype == info.dtype : read_widening_ok(info.dtype, dtype));
        if (!ok)
            st = MC_FAIL(err, MC_ERR_SHAPE,
                         "store '%s': dataset '%s' holds %s; cannot %s it %s a %s buffer", s->path,
                         p, mc_dtype_name(info.dtype), what, rq->write ? "from" : "into",
                         (unsigned)dtype < MC_DTYPE_COUNT ? mc_dtype_name(dtype) : "?");
    }
    if (st == MC_OK) {
        if (rq->rows) {
            start[0] = rq->row_begin;
            count[0] = rq->row_end - rq->row_begin;
            for (int i = 1; i < info.ndim; i++) count[i] = info.shape[i];
        } else if (rq->start && rq->count) {
            memcpy(start, rq->start, (size_t)info.ndim * sizeof *start);
            memcpy(count, rq->count, (size_t)info.ndim * sizeof *count);
        }
        empty = !rq->rows && (!rq->start || !rq->count);
        for (int i = 0; i < info.ndim && st == MC_OK; i++) {
            if (start[i] < 0 || count[i] < 0 || start[i] > info.shape[i] ||
                count[i] > info.shape[i] - start[i]) {
                char shp[160];
                mc_shape_str(info.shape, info.ndim, shp, sizeof shp);
                st = MC_FAIL(err, MC_ERR_SHAPE,
                             "store '%s': dataset '%s' %s: %s [%lld, %lld) of dimension %d is "
                             "outside its extent %lld",
                             s->path, p, shp, what, (long long)start[i],
                             (long long)(start[i] + count[i]), i, (long long)info.shape[i]);
            }
            if (count[i] == 0) empty = true;
        }
        esize = mc_dtype_size(dtype);
        if (st == MC_OK && !mc_size_prod(count + 1, info.ndim - 1, &row_elems))
            st = MC_FAIL(err, MC_ERR_SHAPE, "store '%s': dataset '%s': selection too large",
                         s->path, p);
        if (st == MC_OK && !empty && !data)
            st = MC_FAIL(err, MC_ERR_ARG, "store '%s': dataset '%s': NULL buffer", s->path, p);
    }
    if (st == MC_OK) {
        mt = mc_store_h5type(dtype);
        fspace = H5Dget_space(d);
        if (mt < 0 || fspace < 0 || dxpl < 0 ||
            H5Pset_dxpl_mpio(dxpl, rq->collective ? H5FD_MPIO_COLLECTIVE : H5FD_MPIO_INDEPENDENT) <
                0)
            st = MC_H5FAIL(err, "store '%s': dataset '%s': cannot set up the %s", s->path, p, what);
    }
    if (rq->collective) st = mc_store_agree(s, st, err);

    if (st == MC_OK) {
        /* Split along the first dimension so no call moves more than io_limit bytes per rank;
         * collective calls need the same number of rounds everywhere. */
        size_t row_bytes = row_elems * esize; /* cannot overflow: the dataset's size was checked */
        int64_t per_round = row_bytes ? (int64_t)(s->io_limit / row_bytes) : count[0];
        if (per_round < 1) per_round = 1;
        long long rounds = empty ? 0 : (count[0] + per_round - 1) / per_round, all_rounds = rounds;
        if (rq->collective)
            MPI_Allreduce(&rounds, &all_rounds, 1, MPI_LONG_LONG, MPI_MAX, s->comm.comm);
        hsize_t hs[MC_MAX_DIMS], hc[MC_MAX_DIMS];
        for (int i = 0; i < info.ndim; i++) {
            hs[i] = (hsize_t)start[i];
            hc[i] = (hsize_t)count[i];
        }
        for (long long r = 0; r < all_rounds; r++) {
            int64_t off = (int64_t)r * per_round;
            int64_t n = r < rounds ? (count[0] - off < per_round ? count[0] - off : per_round) : 0;
            /* The memory space has the file selection's shape: with a flat one HDF5 maps each
             * element to its chunk one at a time (H5S_select_iterate; 15 % of an intervene
             * task's CPU on its [B, T, D] state reads), with the same shape it maps whole
             * hyperslabs. The bytes moved are the same. */
            hsize_t mdims[MC_MAX_DIMS] = {1};
            const int mrank = n > 0 && info.ndim > 0 ? info.ndim : 1;
            for (int i = 0; n > 0 && i < info.ndim; i++) mdims[i] = i ? hc[i] : (hsize_t)n;
            hid_t ms = H5Screate_simple(mrank, mdims, NULL);
            herr_t h = ms < 0 ? -1 : 0;
            if (h >= 0 && n > 0) {
                hs[0] = (hsize_t)(start[0] + off);
                hc[0] = (hsize_t)n;
                h = H5Sselect_hyperslab(fspace, H5S_SELECT_SET, hs, NULL, hc, NULL);
            } else if (h >= 0) {
                h = H5Sselect_none(fspace);
                if (h >= 0) h = H5Sselect_none(ms);
            }
            char *buf =
                data ? (char *)data + (size_t)off * row_bytes : NULL; /* NULL: no rows here */
            if (h >= 0)
                h = rq->write ? H5Dwrite(d, mt, ms, fspace, dxpl, n > 0 ? buf : NULL)
                              : H5Dread(d, mt, ms, fspace, dxpl, n > 0 ? buf : NULL);
            if (h < 0 && st == MC_OK) /* keep taking part in later rounds: others wait on us */
                st = MC_H5FAIL(err, "store '%s': dataset '%s': %s of rows [%lld, %lld) failed",
                               s->path, p, what, (long long)(start[0] + off),
                               (long long)(start[0] + off + n));
            if (ms >= 0) H5Sclose(ms);
        }
    }
    /* A read of the whole dataset is checked against the checksum recorded at completion. */
    bool whole = !empty && info.ndim > 0;
    for (int i = 0; whole && i < info.ndim; i++) whole = start[i] == 0 && count[i] == info.shape[i];
    if (st == MC_OK && !rq->write && !rq->raw && whole)
        st = mc_store_check_whole(s, d, p, &info, dtype, data, err);
    if (mt >= 0) H5Tclose(mt);
    if (fspace >= 0) H5Sclose(fspace);
    if (dxpl >= 0) H5Pclose(dxpl);
    if (d >= 0) H5Dclose(d);
    if (rq->collective) st = mc_store_agree(s, st, err);
    if (st == MC_OK && rq->write) mc_store_hook(s, rq->rows ? "write_rows" : "write_slice", p);
    return st;
}

mc_status mc_store_write_rows(mc_store *s, const char *name, mc_dtype dtype, int64_t row_begin,
                              int64_t row_end, const void *data, mc_error *err) {
    xfer_req rq = {.write = true,
                   .collective = true,
                   .rows = true,
                   .row_begin = row_begin,
                   .row_end = row_end};
    return xfer(s, name, dtype, &rq, (void *)data, err);
}

mc_status mc_store_read_rows(mc_store *s, const char *name, mc_dtype dtype, int64_t row_begin,
                             int64_t row_end, void *data, mc_error *err) {
    xfer_req rq = {.write = false,
                   .collective = true,
                   .rows = true,
                   .row_begin = row_begin,
                   .row_end = row_end};
    return xfer(s, name, dtype, &rq, data, err);
}

mc_status mc_store_read_rows_raw(mc_store *s, const char *p, mc_dtype dtype, int64_t b, int64_t e,
                                 void *data, mc_error *err) {
    xfer_req rq = {.write = false,
                   .collective = false,
                   .raw = true,
                   .rows = true,
                   .row_begin = b,
                   .row_end = e};
    return xfer(s, p, dtype, &rq, data, err);
}

mc_status mc_store_write_slice(mc_store *s, const char *name, mc_dtype dtype, const int64_t *start,
                               const int64_t *count, const void *data, bool collective,
                               mc_error *err) {
    xfer_req rq = {.write = true, .collective = collective, .start = start, .count = count};
    return xfer(s, name, dtype, &rq, (void *)data, err);
}

mc_status mc_store_read_slice(mc_store *s, const char *name, mc_dtype dtype, const int64_t *start,
                              const int64_t *count, void *data, bool collective, mc_error *err) {
    xfer_req rq = {.write = false, .collective = collective, .start = start, .count = count};
    return xfer(s, name, dtype, &rq, data, err);
}
