/* safetensors.h - a validating reader (mmap) and a writer for the safetensors format.
 *
 * Format: 8-byte little-endian u64 N, then N bytes of UTF-8 JSON
 *   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *    "__metadata__": {"key": "string value", ...}}
 * then the data section: raw little-endian C-contiguous tensors; offsets count from the start
 * of the data section.
 *
 * mc_st_open refuses, each with a message naming the file and the tensor or field:
 * a file shorter than 8 bytes; N > 100,000,000 (the reference reader's cap) or past the end of
 * the file; JSON that is malformed, not an object, or has duplicate keys (jansson
 * JSON_REJECT_DUPLICATES); an unknown dtype; a shape that is not a list of non-negative
 * integers; shape x dtype size != end - begin (computed with overflow checks); offsets that are
 * not [begin <= end] inside the data section; spans that overlap or leave gaps: sorted by
 * begin, they must tile the data section exactly from 0 to its end; a __metadata__ that is not
 * a string-to-string object.
 *
 * Ownership: mc_st_file owns the mapping; tensor views (mc_st_tensor.data) point into it and
 * are valid until mc_st_close. Names are owned by the file too.
 */
#ifndef MICLIP_SAFETENSORS_H
#define MICLIP_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "miclip/status.h"
#include "miclip/tensor.h"

#define MC_ST_MAX_HEADER 100000000ull

typedef struct {
    const char *name; /* owned by the file */
    mc_dtype dtype;
    int ndim; /* 0 for a scalar */
    int64_t shape[MC_MAX_DIMS];
    size_t numel; /* product of shape (1 for a scalar) */
    size_t nbytes;
    const void *data; /* into the mapping; may be unaligned: copy or convert, do not cast */
} mc_st_tensor;

typedef struct mc_st_file mc_st_file; /* opaque */

/* Opens and validates path. On success *out owns the mapping; free with mc_st_close. */
mc_status mc_st_open(const char *path, mc_st_file **out, mc_error *err);
/* Same checks on a buffer in memory (the fuzzer's entry point); the buffer must outlive the
 * returned file. label names it in messages. */
mc_status mc_st_open_buffer(const void *buf, size_t len, const char *label, mc_st_file **out,
                            mc_error *err);
void mc_st_close(mc_st_file **f); /* NULL-safe; sets *f = NULL */

const char *mc_st_path(const mc_st_file *f);
int mc_st_count(const mc_st_file *f);
/* The i-th tensor in the order of the data section (0 <= i < count). */
const mc_st_tensor *mc_st_at(const mc_st_file *f, int i);
/* Lookup by exact name; NULL if absent. */
const mc_st_tensor *mc_st_find(const mc_st_file *f, const char *name);
/* Metadata value by key, or NULL. */
const char *mc_st_metadata(const mc_st_file *f, const char *key);
/* Number of metadata entries, and the i-th (key and value owned by the file). */
int mc_st_metadata_count(const mc_st_file *f);
void mc_st_metadata_at(const mc_st_file *f, int i, const char **key, const char **value);
/* Sum of numel over all tensors (the parameter count), and the JSON header length N. */
size_t mc_st_total_numel(const mc_st_file *f);
size_t mc_st_header_bytes(const mc_st_file *f);

/* Finds name and checks its shape against expect[0..ndim) (an entry of -1 matches any size).
 * expect may be NULL (rank checked only). Missing tensor, wrong rank or wrong size:
 * MC_ERR_SHAPE naming file, tensor, expected and found shapes. */
mc_status mc_st_get(const mc_st_file *f, const char *name, int ndim, const int64_t *expect,
                    const mc_st_tensor **out, mc_error *err);
/* mc_st_get, then converts the tensor (F32/F16/BF16/F64) to float32 into dst[numel]. */
mc_status mc_st_read_f32(const mc_st_file *f, const char *name, int ndim, const int64_t *expect,
                         float *dst, mc_error *err);
/* mc_st_read_f32, then refuses NaN and infinities (MC_ERR_NUMERIC): "PATH: tensor 'NAME': 1
 * non-finite value (NaN at index 123)". What every model loader (vision and text) reads weights
 * with; one vectorised pass over the converted copy (tensor.h, mc_check_finite). */
mc_status mc_st_read_f32_finite(const mc_st_file *f, const char *name, int ndim,
                                const int64_t *expect, float *dst, mc_error *err);

/* --- writer ---------------------------------------------------------------------------------
 * Collects tensors (copying their data), then writes the file atomically (temporary name, then
 * rename) with tensors in the order added and a sorted, minimal header. */
typedef struct mc_st_writer mc_st_writer;
mc_status mc_st_writer_create(mc_st_writer **out, mc_error *err);
mc_status mc_st_writer_add(mc_st_writer *w, const char *name, mc_dtype dtype, int ndim,
                           const int64_t *shape, const void *data, mc_error *err);
mc_status mc_st_writer_add_metadata(mc_st_writer *w, const char *key, const char *value,
                                    mc_error *err);
mc_status mc_st_writer_save(mc_st_writer *w, const char *path, mc_error *err);
void mc_st_writer_free(mc_st_writer **w);

#endif
