/* store_int.h - internals shared by the files of src/store/ (not a public header).
 *
 * The store handle, HDF5 error capture, dtype <-> HDF5 type mapping, path normalisation and
 * the sidecar lock. See include/miclip/store.h for the public contract. */
#ifndef MICLIP_STORE_INT_H
#define MICLIP_STORE_INT_H

#include <hdf5.h>

#include "miclip/store.h"

#define MC_STORE_NAME_MAX 1024
#define MC_STORE_ATTR_STR_MAX ((size_t)1 << 20) /* cap on string attributes read from a file */

struct mc_store {
    mc_comm comm; /* copy of the caller's context; comm.comm is the communicator used */
    char *path;   /* owned */
    hid_t file;   /* H5I_INVALID_HID when not open */
    bool writable;
    int lock_fd;     /* rank 0 of a writer: the flock'd "<path>.lock"; -1 otherwise */
    size_t io_limit; /* bytes per rank per H5Dread/H5Dwrite call */
    bool tolerant;   /* opened by the resume probe: no layout check at open */
};

/* Records an error whose message ends with the HDF5 error stack (innermost entries first),
 * then clears the stack. Use right after the failing HDF5 call. */
mc_status mc_store_h5fail_at(mc_error *err, mc_status code, const char *file, int line,
                             const char *fmt, ...) __attribute__((format(printf, 5, 6)));
#define MC_H5FAIL(err, ...) mc_store_h5fail_at((err), MC_ERR_HDF5, __FILE__, __LINE__, __VA_ARGS__)

/* Turns off HDF5's automatic printing of error stacks (idempotent; the library's setting). */
void mc_store_h5_quiet(void);

/* A new HDF5 type for dtype (the caller H5Tcloses it), little-endian file layout; F16 is the
 * IEEE binary16 layout. Returns H5I_INVALID_HID for dtypes a store cannot hold. */
hid_t mc_store_h5type(mc_dtype t);
bool mc_store_dtype_supported(mc_dtype t);
/* Maps a dataset's HDF5 type back to a dtype; false for types miclip does not write. */
bool mc_store_dtype_from_h5(hid_t type, mc_dtype *out);

/* Writes "/name" (leading slash added when missing) into buf[MC_STORE_NAME_MAX + 2]; an empty
 * name or "/" gives "/". False (and an error) when too long. */
mc_status mc_store_norm_name(const mc_store *s, const char *name, char *buf, mc_error *err);

/* --- checksums (store_sum.c) ---------------------------------------------------------------
 * Every dataset of a group marked complete carries MC_STORE_SUM_ATTR: the SHA-256 (hex) of its
 * elements in row-major order, little-endian, in its own dtype (numpy's
 * `hashlib.sha256(f[name][()].astype(f[name].dtype.newbyteorder("<")).tobytes())`). */

/* Local. Reads rows [b, e) of dataset p (absolute name) independently, in dtype, with no
 * checksum verification. */
mc_status mc_store_read_rows_raw(mc_store *s, const char *p, mc_dtype dtype, int64_t b, int64_t e,
                                 void *data, mc_error *err);
/* Local. The SHA-256 hex of dataset p's bytes, read in rounds of at most 16 MiB. */
mc_status mc_store_digest(mc_store *s, const char *p, char hex[65], mc_error *err);
/* Collective. Flushes, then records the checksum of every dataset under group (rank k hashes
 * datasets k, k + size, ...; the values are gathered and written by every rank). */
mc_status mc_store_seal(mc_store *s, const char *group, mc_error *err);
/* Local. After a read that covered the whole dataset p (open as d) into data (dtype): compares
 * with the recorded checksum, if any. A widened read (dtype != the dataset's) hashes the raw
 * bytes with a second, raw read. MC_ERR_FORMAT on a mismatch. */
mc_status mc_store_check_whole(mc_store *s, hid_t d, const char *p,
                               const mc_store_dataset_info *info, mc_dtype dtype, const void *data,
                               mc_error *err);
/* Local. True when dataset d carries a checksum (a write would make it stale). */
bool mc_store_is_sealed(hid_t d);

/* The kill-point test hook (store_hook.c): counts one store call that touched the file and,
 * under MICLIP_TEST_KILL_AT_STORE_CALL=N, raises SIGKILL after the Nth. Call it when a counted
 * call succeeds, with the call's name and the object it touched. */
void mc_store_hook(const mc_store *s, const char *what, const char *obj);
/* The stop-point test hook (store_hook.c): under MICLIP_TEST_STOP_AFTER_RESUME_PROBE=S, rank 0
 * raises SIGSTOP once after mc_store_resume probed a path containing S. */
void mc_store_stop_hook(int rank, const char *path);

/* Layout record (store_layout.c). record_layout writes "layout_datasets" and "layout_complete"
 * on / (Collective, no flush). layout_check (Local): 0 without a record, 1 when every recorded
 * dataset exists, -1 when one is missing (its name in missing[cap]). mc_store_damaged records
 * the "damaged" error naming the store, the dataset and how to rebuild it (MC_ERR_FORMAT). */
mc_status mc_store_record_layout(mc_store *s, mc_error *err);
int mc_store_layout_check(mc_store *s, char *missing, size_t cap);
mc_status mc_store_damaged(mc_store *s, const char *missing, mc_error *err);
/* Collective. mc_store_open(MC_STORE_WRITE) and mc_store_create with the lock rank 0 already
 * holds (*held_lock, which the store then owns: set to -1; other ranks pass -1), for
 * mc_store_resume, which locks before it probes. On failure the lock is released. */
mc_status mc_store_open_locked(const mc_comm *c, const char *path, int *held_lock, mc_store **out,
                               mc_error *err);
mc_status mc_store_create_locked(const mc_comm *c, const char *path, int flags, int *held_lock,
                                 mc_store **out, mc_error *err);
/* Collective. mc_store_open(MC_STORE_READ) without the layout check (for the resume probe). */
mc_status mc_store_open_tolerant(const mc_comm *c, const char *path, mc_store **out, mc_error *err);

/* Collective error agreement on the store's communicator. */
mc_status mc_store_agree(const mc_store *s, mc_status local, mc_error *err);

/* The sidecar lock "<store_path>.lock": flock(LOCK_EX | LOCK_NB), holder line written into it.
 * A symlink, hard link or non-regular file at that name is refused (MC_ERR_IO) untouched.
 * MC_ERR_LOCKED (message naming the holder) when another open file description holds it. */
mc_status mc_store_lock_acquire(const char *store_path, int *fd, mc_error *err);
/* Removes, in the store's folder, every miclip lock file nobody holds (a killed run's) and the
 * temporaries of dead processes (mc_fs_sweep_stale_once). Best effort; acquire calls it. */
void mc_store_lock_sweep(const char *store_path);
/* True when another process holds "<store_path>.lock" now: a writer has the store open (a lock
 * this process holds does not count). */
bool mc_store_lock_busy(const char *store_path);
/* Removes the lock file and releases the lock; fd is set to -1. No-op for fd < 0. */
void mc_store_lock_release(const char *store_path, int *fd);

#endif
