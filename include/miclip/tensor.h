/* tensor.h - element types and conversions shared by the readers, models and stores.
 *
 * miclip computes in float32. Weights stored as F16/BF16 are converted once at load with
 * mc_convert_to_f32 (round-trip exact: every F16 and BF16 value is representable in F32).
 */
#ifndef MICLIP_TENSOR_H
#define MICLIP_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "miclip/status.h"

typedef enum {
    MC_DTYPE_F64 = 0,
    MC_DTYPE_F32,
    MC_DTYPE_F16,
    MC_DTYPE_BF16,
    MC_DTYPE_I64,
    MC_DTYPE_I32,
    MC_DTYPE_I16,
    MC_DTYPE_I8,
    MC_DTYPE_U8,
    MC_DTYPE_BOOL,
    MC_DTYPE_COUNT
} mc_dtype;

#define MC_MAX_DIMS 8

/* Bytes per element. */
size_t mc_dtype_size(mc_dtype t);
/* The safetensors spelling ("F32", "BF16", ...). */
const char *mc_dtype_name(mc_dtype t);
/* Parses a safetensors dtype name; false if unknown. */
bool mc_dtype_parse(const char *name, mc_dtype *out);

float mc_f16_to_f32(uint16_t h);
uint16_t mc_f32_to_f16(float f); /* round to nearest even, as numpy/torch */
float mc_bf16_to_f32(uint16_t b);
uint16_t mc_f32_to_bf16(float f); /* round to nearest even, as torch */

/* Converts n elements of a floating dtype (F64/F32/F16/BF16) at src (any alignment) into dst.
 * Returns MC_ERR_UNSUPPORTED for integer dtypes. */
mc_status mc_convert_to_f32(mc_dtype t, const void *src, size_t n, float *dst, mc_error *err);

/* --- finiteness -------------------------------------------------------------------------
 * NaN and +-Inf are refused where finite numbers are required (weights at load, activations
 * before they are stored). The scan tests the exponent bits of every element without branches,
 * so the compiler vectorises it (about memory speed); only when something is found is the
 * first offender located. */

/* The number of non-finite values in x[0..n); *first (may be NULL) receives the index of the
 * first one, or n when there is none. */
size_t mc_count_nonfinite(const float *x, size_t n, size_t *first);

/* MC_OK when x[0..n) is finite; otherwise MC_ERR_NUMERIC with the message
 * "<what>: K non-finite value(s) (NaN at index I)", what being printf(fmt, ...): e.g.
 * "model.safetensors: tensor 'vit.encoder.layer.3.attention.output.dense.weight': 1 non-finite
 * value (NaN at index 123)". */
mc_status mc_check_finite(const float *x, size_t n, mc_error *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The same over a row-major block x[rows][per] (one row per sample). The message names the
 * rows holding a non-finite value, by row_names[r] when row_names is not NULL (else "row r"),
 * the first three and a count of the rest: "<what>: non-finite values in 2 of 8 rows: a.png,
 * b.png (first: Inf at row 3, element 17)". */
mc_status mc_check_finite_rows(const float *x, size_t rows, size_t per,
                               const char *const *row_names, mc_error *err, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* Formats a shape as "[2, 3, 4]" into buf. */
void mc_shape_str(const int64_t *shape, int ndim, char *buf, size_t cap);

/* The k-th smallest of v[0..n) (0 <= k < n; no NaN), reordering v. Local. */
float mc_select_kth(float *v, int64_t n, int64_t k);

#endif
