#include "miclip/tensor.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtype_info[MC_DTYPE_COUNT] = {
    [MC_DTYPE_F64] = {"F64", 8}, [MC_DTYPE_F32] = {"F32", 4},  [MC_DTYPE_F16] = {"F16", 2},
    [MC_DTYPE_BF16] = {"BF16", 2}, [MC_DTYPE_I64] = {"I64", 8}, [MC_DTYPE_I32] = {"I32", 4},
    [MC_DTYPE_I16] = {"I16", 2}, [MC_DTYPE_I8] = {"I8", 1},    [MC_DTYPE_U8] = {"U8", 1},
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
