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
uint16_t mc_f32_to_f16(float f);   /* round to nearest even, as numpy/torch */
float mc_bf16_to_f32(uint16_t b);
uint16_t mc_f32_to_bf16(float f);  /* round to nearest even, as torch */

/* Converts n elements of a floating dtype (F64/F32/F16/BF16) at src (any alignment) into dst.
 * Returns MC_ERR_UNSUPPORTED for integer dtypes. */
mc_status mc_convert_to_f32(mc_dtype t, const void *src, size_t n, float *dst, mc_error *err);

/* Formats a shape as "[2, 3, 4]" into buf. */
void mc_shape_str(const int64_t *shape, int ndim, char *buf, size_t cap);

#endif
