#include "miclip/checked.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool mc_size_add(size_t a, size_t b, size_t *out) {
    size_t r;
    if (__builtin_add_overflow(a, b, &r)) return false;
    *out = r;
    return true;
}

bool mc_size_mul(size_t a, size_t b, size_t *out) {
    size_t r;
    if (__builtin_mul_overflow(a, b, &r)) return false;
    *out = r;
    return true;
}

bool mc_size_prod(const int64_t *dims, int n, size_t *out) {
    size_t r = 1;
    for (int i = 0; i < n; i++) {
        if (dims[i] < 0) return false;
        if ((uint64_t)dims[i] > SIZE_MAX) return false;
        if (!mc_size_mul(r, (size_t)dims[i], &r)) return false;
    }
    *out = r;
    return true;
}

bool mc_u64_add(uint64_t a, uint64_t b, uint64_t *out) {
    uint64_t r;
    if (__builtin_add_overflow(a, b, &r)) return false;
    *out = r;
    return true;
}

bool mc_u64_mul(uint64_t a, uint64_t b, uint64_t *out) {
    uint64_t r;
    if (__builtin_mul_overflow(a, b, &r)) return false;
    *out = r;
    return true;
}

void *mc_alloc_array(size_t n, size_t size) {
    size_t bytes;
    if (!mc_size_mul(n, size, &bytes)) return NULL;
    return malloc(bytes ? bytes : 1);
}

void *mc_calloc_array(size_t n, size_t size) {
    size_t bytes;
    if (!mc_size_mul(n, size, &bytes)) return NULL;
    return calloc(bytes ? n : 1, bytes ? size : 1);
}

bool mc_strlcpy(char *dst, const char *src, size_t cap) {
    if (cap == 0) return false;
    size_t n = strlen(src);
    bool fits = n < cap;
    if (!fits) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
    return fits;
}

bool mc_snprintf(char *dst, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(dst, cap, fmt, ap);
    va_end(ap);
    return n >= 0 && (size_t)n < cap;
}

char *mc_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}
