/* Unit tests of src/core: checked arithmetic, bounded strings, dtype conversions, errors. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "miclip/checked.h"
#include "miclip/status.h"
#include "miclip/tensor.h"
#include "test_util.h"

static void test_checked(void) {
    size_t r = 7;
    CHECK(mc_size_add(1, 2, &r) && r == 3);
    CHECK(!mc_size_add(SIZE_MAX, 1, &r) && r == 3); /* untouched on overflow */
    CHECK(mc_size_mul(1u << 20, 1u << 10, &r) && r == (size_t)1 << 30);
    CHECK(!mc_size_mul(SIZE_MAX / 2 + 1, 2, &r));
    int64_t dims[3] = {2, 3, 4};
    CHECK(mc_size_prod(dims, 3, &r) && r == 24);
    CHECK(mc_size_prod(dims, 0, &r) && r == 1);
    int64_t neg[2] = {2, -1};
    CHECK(!mc_size_prod(neg, 2, &r));
    int64_t huge[3] = {INT64_MAX / 4, 16, 1}; /* 2^65 - 16: past SIZE_MAX */
    CHECK(!mc_size_prod(huge, 3, &r));
    CHECK(mc_alloc_array(SIZE_MAX / 4, 8) == NULL);
    char buf[4];
    CHECK(mc_strlcpy(buf, "abc", sizeof buf) && !strcmp(buf, "abc"));
    CHECK(!mc_strlcpy(buf, "abcd", sizeof buf) && !strcmp(buf, "abc"));
    CHECK(!mc_snprintf(buf, sizeof buf, "%d", 12345));
}

/* Every F16 bit pattern converts to F32 and back unchanged (NaNs stay NaN): the conversion is
 * exact, which is what loading F16 weights relies on. Expected values from first principles. */
static void test_f16(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = mc_f16_to_f32((uint16_t)h);
        uint16_t back = mc_f32_to_f16(f);
        bool nan = ((h >> 10) & 0x1f) == 0x1f && (h & 0x3ff);
        if (nan ? !(f != f) : back != h) bad++;
    }
    CHECK_MSG(bad == 0, "%d F16 patterns did not round-trip", bad);
    CHECK(mc_f16_to_f32(0x3c00) == 1.0f);
    CHECK(mc_f16_to_f32(0xc000) == -2.0f);
    CHECK(mc_f16_to_f32(0x7bff) == 65504.0f);
    CHECK(mc_f16_to_f32(0x0001) == 5.9604644775390625e-8f); /* smallest subnormal, 2^-24 */
    /* Rounding to nearest even: 1 + 2^-11 lies halfway between 1 and 1 + 2^-10: goes to 1. */
    CHECK(mc_f32_to_f16(1.0f + 0x1p-11f) == 0x3c00);
    CHECK(mc_f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3c02); /* halfway, odd below: rounds up */
    CHECK(mc_f32_to_f16(65520.0f) == 0x7c00);            /* overflow to inf */
    CHECK(mc_f32_to_f16(0x1p-25f) == 0x0000);            /* half of the smallest: even -> 0 */
    CHECK(mc_f32_to_f16(0x1p-25f * 3) == 0x0002);        /* 1.5 * 2^-24 rounds to 2 * 2^-24 */
}

static void test_bf16(void) {
    int bad = 0;
    for (uint32_t b = 0; b < 65536; b++) {
        float f = mc_bf16_to_f32((uint16_t)b);
        bool nan = ((b >> 7) & 0xff) == 0xff && (b & 0x7f);
        if (nan ? !(f != f) : mc_f32_to_bf16(f) != b) bad++;
    }
    CHECK_MSG(bad == 0, "%d BF16 patterns did not round-trip", bad);
    CHECK(mc_bf16_to_f32(0x3f80) == 1.0f);
    CHECK(mc_f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80);     /* halfway, even below */
    CHECK(mc_f32_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3f82); /* halfway, odd below: up */
}

static void test_convert(void) {
    uint16_t h[3] = {0x3c00, 0xc000, 0x3800};
    float out[3];
    mc_error e = {0};
    CHECK(mc_convert_to_f32(MC_DTYPE_F16, h, 3, out, &e) == MC_OK);
    CHECK(out[0] == 1.0f && out[1] == -2.0f && out[2] == 0.5f);
    int64_t i64 = 3;
    CHECK(mc_convert_to_f32(MC_DTYPE_I64, &i64, 1, out, &e) == MC_ERR_UNSUPPORTED);
    CHECK(strstr(e.msg, "I64") != NULL);
    mc_dtype t;
    CHECK(mc_dtype_parse("BF16", &t) && t == MC_DTYPE_BF16 && mc_dtype_size(t) == 2);
    CHECK(!mc_dtype_parse("F8_E4M3", &t));
    char s[64];
    int64_t shape[3] = {2, 197, 768};
    mc_shape_str(shape, 3, s, sizeof s);
    CHECK(!strcmp(s, "[2, 197, 768]"));
}

static void test_errors(void) {
    mc_error e = {0};
    CHECK(MC_FAIL(&e, MC_ERR_FORMAT, "bad %s\nline", "thing") == MC_ERR_FORMAT);
    CHECK(e.code == MC_ERR_FORMAT && !strcmp(e.msg, "bad thing line"));
    mc_error_prefix(&e, "model.safetensors");
    CHECK(!strcmp(e.msg, "model.safetensors: bad thing line"));
    CHECK(mc_status_exit_code(MC_ERR_INTERRUPTED) == MC_EXIT_INTERRUPTED);
    CHECK(mc_status_exit_code(MC_ERR_ARG) == MC_EXIT_USAGE);
    CHECK(mc_status_exit_code(MC_ERR_IO) == MC_EXIT_FAILURE);
    CHECK(!strcmp(mc_status_name(MC_ERR_SHAPE), "shape"));
    CHECK(MC_FAIL(NULL, MC_ERR_IO, "ignored") == MC_ERR_IO);
}

/* issue 16: the finiteness scan (count, first index, every block boundary) and its messages */
static void test_finite(void) {
    enum { N = 10000 };
    static float x[N];
    for (int i = 0; i < N; i++) x[i] = (float)i * 1e-3f - 3.0f;
    x[17] = FLT_MAX; /* large but finite */
    x[18] = -0.0f;
    x[19] = 1e-45f; /* subnormal */
    size_t first = 0;
    CHECK(mc_count_nonfinite(x, N, &first) == 0 && first == N);
    mc_error err = {0};
    CHECK(mc_check_finite(x, N, &err, "t") == MC_OK);
    const size_t at[] = {4095, 4096, 9999};
    for (size_t k = 0; k < 3; k++) {
        float keep = x[at[k]];
        x[at[k]] = NAN;
        CHECK(mc_count_nonfinite(x, N, &first) == 1 && first == at[k]);
        x[at[k]] = keep;
    }
    x[123] = NAN;
    x[5000] = INFINITY;
    x[9000] = -INFINITY;
    CHECK(mc_count_nonfinite(x, N, &first) == 3 && first == 123);
    CHECK(mc_check_finite(x, N, &err, "w.safetensors: tensor '%s'", "a.weight") == MC_ERR_NUMERIC);
    CHECK_MSG(strcmp(err.msg,
                     "w.safetensors: tensor 'a.weight': 3 non-finite values (NaN at index 123)") ==
                  0,
              "%s", err.msg);
    CHECK(mc_check_finite(x + 124, 1, &err, "t") == MC_OK);
    CHECK(mc_check_finite(x + 5000, 1, &err, "t") == MC_ERR_NUMERIC &&
          strstr(err.msg, "1 non-finite value (+Inf at index 0)"));
    /* rows: 10 rows of 1000; rows 0, 5 and 9 hold one each */
    const char *names[10] = {"a.png", "b.png", "c.png", "d.png", "e.png",
                             "f.png", "g.png", "h.png", "i.png", "j.png"};
    CHECK(mc_check_finite_rows(x, 10, 1000, names, &err, "layer '%s'", "L") == MC_ERR_NUMERIC);
    CHECK_MSG(strcmp(err.msg, "layer 'L': non-finite values in 3 of 10 rows: a.png, f.png, j.png "
                              "(first: NaN at row 0, "
                              "element 123)") == 0,
              "%s", err.msg);
    x[2500] = NAN;
    CHECK(mc_check_finite_rows(x, 10, 1000, NULL, &err, "L") == MC_ERR_NUMERIC);
    CHECK_MSG(strstr(err.msg, "in 4 of 10 rows: row 0, row 2, row 5 and 1 more") != NULL, "%s",
              err.msg);
    CHECK(mc_check_finite_rows(x + 1000, 1, 1000, names, &err, "L") == MC_OK);
    CHECK(mc_count_nonfinite(x, 0, &first) == 0 && first == 0);
}

int main(void) {
    test_finite();
    test_checked();
    test_f16();
    test_bf16();
    test_convert();
    test_errors();
    return TEST_SUMMARY();
}
