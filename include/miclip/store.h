/* store.h - the parallel HDF5 result store (MPI-IO), shared by every stage.
 *
 * A store is one HDF5 file written collectively by all ranks of a run through MPI-IO
 * (Debian's HDF5 1.10.8 openmpi build). Extraction, SAE/E_n checkpoints, localization tables
 * and intervention results all use the same small interface:
 *
 *   - a store-id attribute on the root group, "miclip_store" = "miclip-store/1" (format name /
 *     version), written at create and checked at open: miclip refuses files it did not write
 *     (HDF5 has a long CVE record on malformed files), and refuses non-HDF5 files before the
 *     HDF5 library parses a byte of them;
 *   - a lock: a writer (create, or open read-write) holds flock(LOCK_EX) on the sidecar
 *     "<path>.lock" (taken by rank 0; the file holds host, pid and start time), released at
 *     close or when the process dies. Parallel HDF5 has no SWMR and takes no lock of its own
 *     under MPI-IO. Readers take no lock;
 *   - datasets of rank 1..MC_MAX_DIMS (F64/F32/F16/I64/I32/I16/I8/U8), created collectively up
 *     front, contiguous or chunked along rows; F16 is the IEEE half layout numpy/h5py read as
 *     float16;
 *   - collective writes of each rank's row block [row_begin, row_end) of the first dimension
 *     (a rank with no rows still takes part), collective or independent slice reads;
 *   - string and numeric attributes on the file ("/"), groups and datasets, and a helper that
 *     writes the standard provenance set;
 *   - completion records: "/<group>/_done", a U8 dataset of n_units (1 = unit complete), and a
 *     "complete" attribute on a group for whole-stage skipping.
 *
 * Crash safety (docs/store.md). An MPI-IO HDF5 file killed before its first flush cannot be
 * opened at all, so mc_store_create builds the file under "<path>.creating" and renames it
 * into place only once it holds the store-id and has been closed: a file at <path> is always
 * openable. After that, everything up to the last mc_store_flush survives a SIGKILL. The
 * protocol per unit of work is: create all datasets up front and flush; then for each unit
 * write its rows (raw data only, no metadata change), and call mc_store_units_mark, which
 * flushes, marks and flushes again. A resumed run trusts only marked units and recomputes the
 * rest; outputs are deterministic, so recomputed units are byte-identical.
 *
 * Collectivity. Functions marked "Collective" must be called by every rank of the store's
 * communicator with the same arguments (except where a per-rank argument is named). They agree
 * on errors: if any rank fails, every rank returns the first failing rank's status and message,
 * so no rank is left blocked in a later collective. Functions marked "Local" may be called by
 * one rank alone. Attribute values and dataset shapes are taken from rank 0 and broadcast.
 *
 * Errors name the store path and the dataset or attribute; HDF5 failures carry the HDF5 error
 * stack (innermost first) inside the message instead of printing it to stderr.
 *
 * Ownership: mc_store is opaque; mc_store_close frees it and sets the handle to NULL. Every
 * pointer argument is borrowed for the call only. Strings returned through char ** are
 * malloc'd and freed by the caller.
 */
#ifndef MICLIP_STORE_H
#define MICLIP_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "miclip/comm.h"
#include "miclip/status.h"
#include "miclip/tensor.h"

#define MC_STORE_ID_ATTR "miclip_store"
#define MC_STORE_FORMAT "miclip-store"
#define MC_STORE_VERSION 1
#define MC_STORE_ID_VALUE "miclip-store/1"     /* MC_STORE_FORMAT "/" MC_STORE_VERSION */
#define MC_STORE_DONE_NAME "_done"             /* completion records: "/<group>/_done" */
#define MC_STORE_COMPLETE_ATTR "complete"      /* stage-complete attribute on a group */
#define MC_STORE_SUM_ATTR "sha256"             /* per-dataset checksum, recorded at completion */
#define MC_STORE_LAYOUT_ATTR "layout_complete" /* on /: 1 once the layout is marked */
#define MC_STORE_LAYOUT_LIST_ATTR "layout_datasets" /* on /: the recorded datasets, one a line */

typedef struct mc_store mc_store;

typedef enum {
    MC_STORE_READ = 0, /* read-only; no lock */
    MC_STORE_WRITE = 1 /* read-write; takes the lock */
} mc_store_mode;

/* Flags for mc_store_create. */
enum {
    MC_STORE_OVERWRITE = 1 /* replace an existing file at path (default: refuse) */
};

/* Collective. Creates a new, empty store at path (its directory must exist) and opens it
 * read-write, holding the lock. Refuses (MC_ERR_IO) when path exists, unless
 * MC_STORE_OVERWRITE. A writer killed inside this call leaves no file at path (only a stale
 * "<path>.creating", which the next create removes). */
mc_status mc_store_create(const mc_comm *c, const char *path, int flags, mc_store **out,
                          mc_error *err);

/* Collective. Opens an existing store. MC_STORE_WRITE takes the lock (MC_ERR_LOCKED naming
 * the holder's host and pid when another run holds it). A file that is not HDF5, or an HDF5
 * file without the store-id, is refused with MC_ERR_FORMAT; another store format version with
 * MC_ERR_UNSUPPORTED. */
mc_status mc_store_open(const mc_comm *c, const char *path, mc_store_mode mode, mc_store **out,
                        mc_error *err);

/* Collective. Opens path read-write if it exists, else creates it. *created (may be NULL)
 * tells which. The usual entry point of a resumable stage. */
mc_status mc_store_open_or_create(const mc_comm *c, const char *path, mc_store **out, bool *created,
                                  mc_error *err);

/* What a writer finds at a store path (mc_store_probe). */
typedef enum {
    MC_STORE_ABSENT = 0, /* no file */
    MC_STORE_COMPLETE,   /* "complete" on / and the recorded layout intact */
    MC_STORE_PARTIAL,    /* layout marked and intact, not complete: resume from the marks */
    MC_STORE_REBUILD     /* unusable as it is, to be rebuilt from scratch: empty or no
                          * superblock, HDF5 cannot open it, layout never marked (killed while
                          * being created), or a dataset of its recorded layout is missing */
} mc_store_state;

/* Collective. Classifies path without taking the lock and without changing it. Files that are
 * not stores (no HDF5 signature and not empty, no store-id, another format version) are still
 * errors, as with mc_store_open: a rebuild never deletes a file miclip did not write. A store
 * another run is writing (it holds the lock) is MC_ERR_LOCKED, unopened. */
mc_status mc_store_probe(const mc_comm *c, const char *path, mc_store_state *state, mc_error *err);

/* Collective. The entry point of a resumable stage's writer: takes the lock (MC_ERR_LOCKED when
 * another run holds it), then, by the state it probes under the lock, opens path read-write
 * when COMPLETE or PARTIAL (*created = false); creates it when ABSENT, and removes and
 * recreates it (a warning says why) when REBUILD (*created = true). A stage that gets
 * *created creates its whole layout, then calls mc_store_mark_layout before any unit; on a
 * reopened store it may trust only units marked complete. Check completeness first
 * (mc_store_probe) so a complete store is not even opened for writing. */
mc_status mc_store_resume(const mc_comm *c, const char *path, mc_store **out, bool *created,
                          mc_error *err);

/* Collective. Records the layout: "layout_datasets" on / (every dataset now in the file, sorted,
 * one a line), "layout_complete" = 1, then flushes. Call it once the up-front datasets (and the
 * completion records) exist. mc_store_set_complete records the same manifest again. A store
 * whose manifest names a dataset it does not hold is "damaged": mc_store_open refuses it
 * (MC_ERR_FORMAT, naming the store, the dataset and the command that rebuilds it), and
 * mc_store_resume rebuilds it. */
mc_status mc_store_mark_layout(mc_store *s, mc_error *err);

/* Collective. Flushes and closes the file, releases the lock, frees *s and sets it to NULL.
 * NULL or *s == NULL is a no-op. Returns the first error met while closing. */
mc_status mc_store_close(mc_store **s, mc_error *err);

/* Local. The path the store was opened with; whether it is writable. */
const char *mc_store_path(const mc_store *s);
bool mc_store_writable(const mc_store *s);

/* Collective. H5Fflush(global): everything written so far survives a SIGKILL. */
mc_status mc_store_flush(mc_store *s, mc_error *err);

/* --- groups and datasets --------------------------------------------------------------
 * Names are absolute or relative HDF5 paths ("extract/layer10/acts"); missing parent groups
 * are created. At most 1023 bytes. */

typedef struct {
    mc_dtype dtype;
    int ndim;
    int64_t shape[MC_MAX_DIMS];
} mc_store_dataset_info;

/* Collective. Creates a group (and its parents); an existing group is fine. */
mc_status mc_store_create_group(mc_store *s, const char *name, mc_error *err);

/* Collective. Creates dataset name with dtype and shape (ndim 1..MC_MAX_DIMS, every dimension
 * >= 0). chunk_rows > 0 makes it chunked with chunks of chunk_rows rows (all of the other
 * dimensions); 0 makes it contiguous. Space is allocated at creation and no fill value is
 * written (unwritten elements read as whatever the file holds, zero in a fresh file).
 * If the dataset exists with the same dtype and shape this succeeds without change (so a
 * resumed run can call it again); a different dtype or shape is MC_ERR_SHAPE. */
mc_status mc_store_create_dataset(mc_store *s, const char *name, mc_dtype dtype, int ndim,
                                  const int64_t *shape, int64_t chunk_rows, mc_error *err);

/* Local. True if an object (group or dataset) exists at name. */
bool mc_store_exists(mc_store *s, const char *name);

/* Local. The dtype and shape of dataset name. */
mc_status mc_store_dataset_info_get(mc_store *s, const char *name, mc_store_dataset_info *info,
                                    mc_error *err);

/* --- data transfer --------------------------------------------------------------------
 * dtype is the element type of the caller's buffer. Writes require it to equal the dataset's
 * dtype (convert with tensor.h first: HDF5's own float conversions are not numpy's). Reads
 * also accept a lossless widening (F16 -> F32/F64, F32 -> F64, a smaller integer -> a larger
 * signed one). Buffers are dense, row-major, holding exactly the selected elements.
 * Transfers larger than the per-call I/O limit (1 GiB per rank by default) are split into
 * rounds along the first dimension, agreed across ranks. */

/* Collective (per-rank rows). Writes this rank's rows [row_begin, row_end) of the first
 * dimension, all of the other dimensions. A rank with row_begin == row_end still calls it. */
mc_status mc_store_write_rows(mc_store *s, const char *name, mc_dtype dtype, int64_t row_begin,
                              int64_t row_end, const void *data, mc_error *err);

/* Collective (per-rank rows). Reads rows [row_begin, row_end) into data. */
mc_status mc_store_read_rows(mc_store *s, const char *name, mc_dtype dtype, int64_t row_begin,
                             int64_t row_end, void *data, mc_error *err);

/* The hyperslab start[ndim], count[ndim] of dataset name. collective = true: every rank calls
 * it (per-rank start/count; count NULL or any count 0 means this rank transfers nothing).
 * collective = false: Local (one rank may call it alone; writes are still raw data only). */
mc_status mc_store_write_slice(mc_store *s, const char *name, mc_dtype dtype, const int64_t *start,
                               const int64_t *count, const void *data, bool collective,
                               mc_error *err);
mc_status mc_store_read_slice(mc_store *s, const char *name, mc_dtype dtype, const int64_t *start,
                              const int64_t *count, void *data, bool collective, mc_error *err);

/* Local. Sets the per-rank, per-call I/O limit in bytes (>= 1; default 1 GiB). For tests and
 * for file systems that want smaller transfers; every rank must set the same value. */
void mc_store_set_io_limit(mc_store *s, size_t bytes);

/* --- attributes -----------------------------------------------------------------------
 * obj is "/" (the file), a group or a dataset. Setting an existing attribute replaces it.
 * Strings are stored as variable-length UTF-8 scalars (h5py reads them as str); integers as
 * int64 and reals as float64 scalars. Setters are Collective and use rank 0's value; getters
 * are Local. */

mc_status mc_store_set_attr_str(mc_store *s, const char *obj, const char *key, const char *value,
                                mc_error *err);
mc_status mc_store_set_attr_i64(mc_store *s, const char *obj, const char *key, int64_t value,
                                mc_error *err);
mc_status mc_store_set_attr_f64(mc_store *s, const char *obj, const char *key, double value,
                                mc_error *err);
/* Collective. Tables of attributes, set in order; the first failure stops and is returned. */
typedef struct {
    const char *key, *value;
} mc_store_attr_str;
typedef struct {
    const char *key;
    int64_t value;
} mc_store_attr_i64;
typedef struct {
    const char *key;
    double value;
} mc_store_attr_f64;
#define MC_STORE_ATTRS(a) (a), sizeof(a) / sizeof((a)[0])
mc_status mc_store_set_attrs_str(mc_store *s, const char *obj, const mc_store_attr_str *a, size_t n,
                                 mc_error *err);
mc_status mc_store_set_attrs_i64(mc_store *s, const char *obj, const mc_store_attr_i64 *a, size_t n,
                                 mc_error *err);
mc_status mc_store_set_attrs_f64(mc_store *s, const char *obj, const mc_store_attr_f64 *a, size_t n,
                                 mc_error *err);
/* *out is malloc'd (caller frees). Fixed-length string attributes are read too. */
mc_status mc_store_get_attr_str(mc_store *s, const char *obj, const char *key, char **out,
                                mc_error *err);
mc_status mc_store_get_attr_i64(mc_store *s, const char *obj, const char *key, int64_t *out,
                                mc_error *err);
mc_status mc_store_get_attr_f64(mc_store *s, const char *obj, const char *key, double *out,
                                mc_error *err);
/* Local. True if obj exists and has attribute key. */
bool mc_store_has_attr(mc_store *s, const char *obj, const char *key);

/* The standard provenance set. NULL strings and has_seed == false are left out. */
typedef struct {
    const char *stage;       /* "extract", "sae", ... */
    const char *config_hash; /* the resolved config's canonical hash */
    const char *model;       /* model identity: name and content hash */
    const char *dataset;     /* dataset identity: name, split, sample hash */
    int64_t seed;
    bool has_seed;
} mc_store_provenance;

/* Collective. Writes on obj: stage, config_hash, model, dataset, seed (when given), and always
 * code_version (MICLIP_VERSION_STRING), build_info, created_utc (ISO 8601), host, mpi_ranks,
 * and slurm_job_id / slurm_array_job_id / slurm_array_task_id when those are set. The
 * run-specific values are rank 0's. */
mc_status mc_store_write_provenance(mc_store *s, const char *obj, const mc_store_provenance *p,
                                    mc_error *err);

/* --- completion records ---------------------------------------------------------------- */

/* Collective. Creates "/<group>/_done" (U8[n_units], all 0) if absent, or checks that the
 * existing one has n_units entries (MC_ERR_SHAPE otherwise); then flushes. group "" or "/"
 * means the root. n_units >= 1. */
mc_status mc_store_units_init(mc_store *s, const char *group, int64_t n_units, mc_error *err);

/* Collective. done[n_units] receives 1 for each complete unit, 0 otherwise (same on every
 * rank); *n_done (may be NULL) the count. */
mc_status mc_store_units_read(mc_store *s, const char *group, int64_t n_units, uint8_t *done,
                              int64_t *n_done, mc_error *err);

/* Collective (per-rank units). The completion protocol: flush (so this unit's data is
 * durable), mark every rank's units[0..n) done, flush again. Each rank passes the units it
 * finished since its last call (n may be 0). */
mc_status mc_store_units_mark(mc_store *s, const char *group, const int64_t *units, int64_t n,
                              mc_error *err);

/* Collective. Records the checksum of every dataset under group (attribute "sha256", see
 * "checksums" below) and the layout manifest (as mc_store_mark_layout), sets group's "complete"
 * attribute to 1 and flushes. */
mc_status mc_store_set_complete(mc_store *s, const char *group, mc_error *err);
/* Local. True if group exists and its "complete" attribute is 1. */
bool mc_store_is_complete(mc_store *s, const char *group);

/* --- string lists and whole-store helpers ---------------------------------------------- */

/* Collective: writes n strings as <base>_bytes (U8, NUL-separated) and <base>_offsets
 * (I64 [n+1]). Only rank 0's data is written when rank0_writes (every rank passes the same
 * strings). */
mc_status mc_store_write_strings(mc_store *st, const char *base, const char *const *strs, int64_t n,
                                 bool rank0_writes, mc_error *err);
/* Reads <base>_bytes / <base>_offsets of st (every rank reads all): *out[n] malloc'd strings. */
mc_status mc_store_read_strings(mc_store *st, const char *base, char ***out, int64_t *n,
                                mc_error *err);
void mc_strings_free(char ***v, int64_t n);

/* Opens path for writing as a fresh store: an existing incomplete one is replaced. */
mc_status mc_store_fresh(const mc_comm *c, const char *path, mc_store **st, mc_error *err);
/* Collective. The end of a writer: when s is MC_OK, marks "/" complete (mc_store_set_complete);
 * always closes *st (NULL-safe). Returns s, or the first error that followed it. */
mc_status mc_store_finish(mc_store **st, mc_status s, mc_error *err);
/* Collective: true when path is a complete store (read-only peek). While another run holds the
 * store's writer lock (its file may be half-written) it waits for that writer, polling every
 * 2 s, up to MICLIP_STORE_WAIT_S seconds (environment, default 1200), then MC_ERR_LOCKED;
 * MC_ERR_INTERRUPTED on a stop signal. */
mc_status mc_store_peek_complete(const mc_comm *c, const char *path, bool *complete, mc_error *err);

/* --- checksums -------------------------------------------------------------------------
 * mc_store_set_complete records on every dataset under the group the attribute "sha256": the
 * SHA-256 (64 hex digits) of the dataset's elements in row-major order, little-endian, in the
 * dataset's own dtype (h5py: hashlib.sha256(ds[()].astype(ds.dtype.newbyteorder("<"))
 * .tobytes())). Rank k hashes datasets k, k + size, ... and every rank writes every attribute
 * with the same value. From then on:
 *   - a write into a dataset that carries a checksum is refused (MC_ERR_ARG): a completed
 *     store is never written again;
 *   - a read (mc_store_read_rows, mc_store_read_slice) whose selection on this rank is the
 *     whole dataset hashes what it read (a widened read hashes a second, raw read) and fails
 *     with MC_ERR_FORMAT naming the store and dataset when the bytes differ. Partial reads
 *     (row blocks, slices) are not checked: mc_store_verify checks everything. */

typedef struct {
    int64_t n_datasets; /* in the store */
    int64_t n_ok;       /* checksum recorded and matching */
    int64_t n_bad;      /* mismatching, unreadable, or without a checksum in a complete group */
    int64_t n_unsealed; /* in groups not (yet) complete: nothing to compare with */
} mc_store_verify_result;

/* Collective. Recomputes the checksum of every dataset of the store (rank k hashes datasets
 * k, k + size, ...) and compares it with the recorded one. Rank 0 prints one line per finding
 * to out: "STORE: dataset 'NAME': checksum mismatch (recorded sha256 X, computed Y)", "...:
 * cannot be read: ...", "...: no checksum although its stage is complete". Findings are
 * counted in *res, not returned as errors; the return value is for failures to do the check
 * at all (out of memory, the file's structure unreadable). */
mc_status mc_store_verify(mc_store *s, FILE *out, mc_store_verify_result *res, mc_error *err);

/* --- inspection ------------------------------------------------------------------------ */

/* Local. Prints every group and dataset (shape, dtype, chunking), their attributes, and the
 * completion state of each group with "_done" to out, in name order. */
mc_status mc_store_print(mc_store *s, FILE *out, mc_error *err);

#endif
