/* checked.h - overflow-checked size arithmetic and bounded strings.
 *
 * Every size that comes from outside miclip (a safetensors header, a YAML integer, an image's
 * dimensions, an HDF5 extent) goes through these before anything is allocated or indexed.
 * Each returns true on success and false when the result does not fit, leaving *out untouched.
 */
#ifndef MICLIP_CHECKED_H
#define MICLIP_CHECKED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

bool mc_size_add(size_t a, size_t b, size_t *out);
bool mc_size_mul(size_t a, size_t b, size_t *out);
/* Product of n dimensions (1 for n == 0); false on overflow or if any dim is negative. */
bool mc_size_prod(const int64_t *dims, int n, size_t *out);
bool mc_u64_add(uint64_t a, uint64_t b, uint64_t *out);
bool mc_u64_mul(uint64_t a, uint64_t b, uint64_t *out);

/* Checked allocation: malloc(n * size) that fails (returns NULL) on overflow. The caller frees. */
void *mc_alloc_array(size_t n, size_t size);
/* Same, zero-filled. */
void *mc_calloc_array(size_t n, size_t size);

/* Copies src into dst[cap] always NUL-terminated; returns false if it had to truncate. */
bool mc_strlcpy(char *dst, const char *src, size_t cap);
/* snprintf that returns false on truncation or encoding error. */
bool mc_snprintf(char *dst, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* strdup that returns NULL on failure; the caller frees. */
char *mc_strdup(const char *s);

#endif
