#include "miclip/tensor.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtype_info[MC_DTYPE_COUNT] = {
    [MC_DTYPE_F64] = {"F64", 8},   [MC_DTYPE_F32] = {"F32", 4}, [MC_DTYPE_F16] = {"F16", 2},
    [MC_DTYPE_BF16] = {"BF16", 2}, [MC_DTYPE_I64] = {"I64", 8}, [MC_DTYPE_I32] = {"I32", 4},
    [MC_DTYPE_I16] = {"I16", 2},   [MC_DTYPE_I8] = {"I8", 1},   [MC_DTYPE_U8] = {"U8", 1},
    [MC_DTYPE_BOOL] = {"BOOL", 1},
};

size_t mc_dtype_size(mc_dtype t) { return (unsigned)t < MC_DTYPE_COUNT ? dtype_info[t].size : 0; }

const char *mc_dtype_name(mc_dtype t) {
    return (unsigned)t < MC_DTYPE_COUNT ? dtype_info[t].name : "?";
}

bool mc_dtype_parse(const char *name, mc_dtype *out) {
    for (int i = 0; i < MC_DTYPE_COUNT; i++) {
        if (strcmp(name, dtype_info[i].name) == 0) {
            *out = (mc_dtype)i;
            return true;
        }
    }
    return false;
}

static float bits_to_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t f32_to_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

float mc_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24, exact in f32 */
        float v = (float)man * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    if (exp == 31) return bits_to_f32(sign | 0x7f800000u | (man << 13)); /* inf / nan */
    return bits_to_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

uint16_t mc_f32_to_f16(float f) {
    uint32_t x = f32_to_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf or nan (keep nan quiet) */
        return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65520: inf */
    if (ax < 0x38800000u) {
        /* subnormal or zero in f16: value / 2^-24 rounded to nearest even */
        float v = bits_to_f32(ax) * 16777216.0f; /* exact scaling by 2^24 */
        uint32_t m = (uint32_t)v;
        float rem = v - (float)m;
        if (rem > 0.5f || (rem == 0.5f && (m & 1u))) m++;
        return (uint16_t)(sign | m);
    }
    uint32_t exp = (ax >> 23) - 112u;
    uint32_t man = ax & 0x7fffffu;
    uint32_t h = (exp << 10) | (man >> 13);
    uint32_t rest = man & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++; /* may carry into the exponent */
    return (uint16_t)(sign | h);
}

float mc_bf16_to_f32(uint16_t b) { return bits_to_f32((uint32_t)b << 16); }

uint16_t mc_f32_to_bf16(float f) {
    uint32_t x = f32_to_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet nan */
    uint32_t lsb = (x >> 16) & 1u;
    x += 0x7fffu + lsb;
    return (uint16_t)(x >> 16);
}

mc_status mc_convert_to_f32(mc_dtype t, const void *src, size_t n, float *dst, mc_error *err) {
    const unsigned char *p = src;
    switch (t) {
    case MC_DTYPE_F32: memcpy(dst, src, n * 4); return MC_OK;
    case MC_DTYPE_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            dst[i] = (float)d;
        }
        return MC_OK;
    case MC_DTYPE_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = mc_f16_to_f32(h);
        }
        return MC_OK;
    case MC_DTYPE_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = mc_bf16_to_f32(h);
        }
        return MC_OK;
    default:
        return MC_FAIL(err, MC_ERR_UNSUPPORTED, "cannot convert dtype %s to F32", mc_dtype_name(t));
    }
}

void mc_shape_str(const int64_t *shape, int ndim, char *buf, size_t cap) {
    size_t used = 0;
    int n = snprintf(buf, cap, "[");
    if (n < 0) return;
    used = (size_t)n;
    for (int i = 0; i < ndim && used < cap; i++) {
        n = snprintf(buf + used, cap - used, i ? ", %lld" : "%lld", (long long)shape[i]);
        if (n < 0) return;
        used += (size_t)n;
    }
    if (used < cap) snprintf(buf + used, cap - used, "]");
}

/* --- finiteness ------------------------------------------------------------------------- */

/* An F32 is NaN or infinite exactly when its 8 exponent bits are all ones. */
#define F32_EXP_MASK 0x7f800000u

static inline bool bits_nonfinite(uint32_t b) { return (b & F32_EXP_MASK) == F32_EXP_MASK; }

size_t mc_count_nonfinite(const float *x, size_t n, size_t *first) {
    /* Blocks of 4096: a branch-free count per block (vectorised), then a search only in a
     * block that holds something. */
    size_t count = 0, where = n;
    for (size_t b = 0; b < n; b += 4096) {
        size_t e = n - b < 4096 ? n : b + 4096;
        uint32_t k = 0;
        for (size_t i = b; i < e; i++) {
            uint32_t u;
            memcpy(&u, x + i, sizeof u);
            k += (u & F32_EXP_MASK) == F32_EXP_MASK;
        }
        if (k && where == n)
            for (size_t i = b; i < e; i++) {
                uint32_t u;
                memcpy(&u, x + i, sizeof u);
                if (bits_nonfinite(u)) {
                    where = i;
                    break;
                }
            }
        count += k;
    }
    if (first) *first = where;
    return count;
}

static const char *nonfinite_kind(float v) { return isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf"; }

mc_status mc_check_finite(const float *x, size_t n, mc_error *err, const char *fmt, ...) {
    size_t first;
    size_t k = mc_count_nonfinite(x, n, &first);
    if (k == 0) return MC_OK;
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return MC_FAIL(err, MC_ERR_NUMERIC, "%s: %zu non-finite value%s (%s at index %zu)", what, k,
                   k == 1 ? "" : "s", nonfinite_kind(x[first]), first);
}

mc_status mc_check_finite_rows(const float *x, size_t rows, size_t per,
                               const char *const *row_names, mc_error *err, const char *fmt, ...) {
    size_t first_row = 0, first_el = 0, bad_rows = 0;
    char names[640] = "";
    size_t used = 0;
    for (size_t r = 0; r < rows; r++) {
        size_t f;
        if (!mc_count_nonfinite(x + r * per, per, &f)) continue;
        if (bad_rows == 0) first_row = r, first_el = f;
        if (bad_rows < 3 && used < sizeof names) {
            int w = row_names ? snprintf(names + used, sizeof names - used, "%s%s",
                                         bad_rows ? ", " : "", row_names[r])
                              : snprintf(names + used, sizeof names - used, "%srow %zu",
                                         bad_rows ? ", " : "", r);
            if (w > 0) used += (size_t)w;
        }
        bad_rows++;
    }
    if (bad_rows == 0) return MC_OK;
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    char more[48] = "";
    if (bad_rows > 3) snprintf(more, sizeof more, " and %zu more", bad_rows - 3);
    return MC_FAIL(
        err, MC_ERR_NUMERIC,
        "%s: non-finite values in %zu of %zu row%s: %s%s (first: %s at row %zu, element %zu)", what,
        bad_rows, rows, rows == 1 ? "" : "s", names, more,
        nonfinite_kind(x[first_row * per + first_el]), first_row, first_el);
}

/* Deterministic quickselect, median-of-three pivot. */
float mc_select_kth(float *v, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1;
    while (hi > lo) {
        int64_t mid = lo + (hi - lo) / 2;
        float a = v[lo], b = v[mid], c = v[hi];
        float piv = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] < piv) i++;
            while (v[j] > piv) j--;
            if (i <= j) {
                float t = v[i];
                v[i] = v[j], v[j] = t;
                i++, j--;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return v[k];
    }
    return v[k];
}
