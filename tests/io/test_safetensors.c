/* test_safetensors.c - safetensors writer/reader round trips (every dtype, 0-d scalars, empty
 * tensors, metadata), F16/BF16/F64 -> F32 conversion through the reader, lookup with expected
 * shapes, and the buffer entry point. Expected values come from first principles: bytes written
 * must be read back unchanged; F16/BF16 values chosen exactly representable. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/safetensors.h"
#include "test_util.h"

static void fill_bytes(unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)((i * 131u + seed * 17u + 7u) & 0xff);
}

static void test_round_trip(const char *path) {
    mc_error err = {0};
    mc_st_writer *w = NULL;
    CHECK(mc_st_writer_create(&w, &err) == MC_OK);
    /* one tensor per dtype with a distinct shape, plus a scalar, an empty tensor and a 0-size
     * leading dimension */
    const int64_t shapes[MC_DTYPE_COUNT][3] = {{2, 3, 1}, {4, 5, 1}, {3, 1, 1}, {2, 2, 1},
                                               {5, 1, 1}, {1, 7, 1}, {2, 1, 3}, {9, 1, 1},
                                               {3, 3, 1}, {4, 1, 1}};
    unsigned char *bufs[MC_DTYPE_COUNT];
    for (int d = 0; d < MC_DTYPE_COUNT; d++) {
        size_t n = (size_t)(shapes[d][0] * shapes[d][1] * shapes[d][2]) * mc_dtype_size(d);
        bufs[d] = malloc(n);
        fill_bytes(bufs[d], n, (unsigned)d);
        char name[32];
        snprintf(name, sizeof name, "t.%s", mc_dtype_name(d));
        CHECK(mc_st_writer_add(w, name, (mc_dtype)d, 3, shapes[d], bufs[d], &err) == MC_OK);
    }
    float scalar = 2.6592f;
    CHECK(mc_st_writer_add(w, "logit_scale", MC_DTYPE_F32, 0, NULL, &scalar, &err) == MC_OK);
    int64_t empty_shape[2] = {0, 4};
    CHECK(mc_st_writer_add(w, "empty", MC_DTYPE_F16, 2, empty_shape, NULL, &err) == MC_OK);
    int64_t e1[1] = {0};
    CHECK(mc_st_writer_add(w, "empty1", MC_DTYPE_I64, 1, e1, NULL, &err) == MC_OK);
    CHECK(mc_st_writer_add_metadata(w, "format", "pt", &err) == MC_OK);
    CHECK(mc_st_writer_add_metadata(w, "note", "caf\xc3\xa9", &err) == MC_OK);
    /* misuse is refused */
    CHECK(mc_st_writer_add(w, "logit_scale", MC_DTYPE_F32, 0, NULL, &scalar, &err) == MC_ERR_ARG);
    CHECK(mc_st_writer_add(w, "__metadata__", MC_DTYPE_F32, 0, NULL, &scalar, &err) == MC_ERR_ARG);
    int64_t neg[1] = {-1};
    CHECK(mc_st_writer_add(w, "neg", MC_DTYPE_F32, 1, neg, &scalar, &err) == MC_ERR_ARG);
    CHECK(mc_st_writer_save(w, path, &err) == MC_OK);
    mc_st_writer_free(&w);
    CHECK(w == NULL);

    mc_st_file *f = NULL;
    mc_status st = mc_st_open(path, &f, &err);
    CHECK_MSG(st == MC_OK, "%s", err.msg);
    if (st != MC_OK) return;
    CHECK(mc_st_count(f) == MC_DTYPE_COUNT + 3);
    CHECK(!strcmp(mc_st_path(f), path));
    CHECK(mc_st_header_bytes(f) % 8 == 0);
    for (int d = 0; d < MC_DTYPE_COUNT; d++) {
        char name[32];
        snprintf(name, sizeof name, "t.%s", mc_dtype_name(d));
        const mc_st_tensor *t = mc_st_find(f, name);
        CHECK_MSG(t != NULL, "%s missing", name);
        if (!t) continue;
        CHECK(t->dtype == (mc_dtype)d);
        CHECK(t->ndim == 3);
        CHECK(t->shape[0] == shapes[d][0] && t->shape[1] == shapes[d][1] &&
              t->shape[2] == shapes[d][2]);
        CHECK(t->numel == (size_t)(shapes[d][0] * shapes[d][1] * shapes[d][2]));
        CHECK(t->nbytes == t->numel * mc_dtype_size(d));
        CHECK_MSG(memcmp(t->data, bufs[d], t->nbytes) == 0, "%s data differs", name);
        /* data-section order = insertion order */
        CHECK(mc_st_at(f, d) == t);
        free(bufs[d]);
    }
    const mc_st_tensor *s = mc_st_find(f, "logit_scale");
    CHECK(s && s->ndim == 0 && s->numel == 1 && s->nbytes == 4);
    if (s) {
        float v;
        memcpy(&v, s->data, 4);
        CHECK(v == scalar);
    }
    const mc_st_tensor *e = mc_st_find(f, "empty");
    CHECK(e && e->ndim == 2 && e->numel == 0 && e->nbytes == 0 && e->shape[1] == 4);
    CHECK(mc_st_find(f, "empty1") != NULL);
    CHECK(mc_st_find(f, "nope") == NULL);
    CHECK(mc_st_find(f, "__metadata__") == NULL);
    CHECK(mc_st_metadata(f, "format") && !strcmp(mc_st_metadata(f, "format"), "pt"));
    CHECK(mc_st_metadata(f, "note") && !strcmp(mc_st_metadata(f, "note"), "caf\xc3\xa9"));
    CHECK(mc_st_metadata(f, "absent") == NULL);
    CHECK(mc_st_metadata_count(f) == 2);
    size_t total = 1 + 0 + 0;
    for (int d = 0; d < MC_DTYPE_COUNT; d++)
        total += (size_t)(shapes[d][0] * shapes[d][1] * shapes[d][2]);
    CHECK(mc_st_total_numel(f) == total);

    /* expected-shape lookup */
    const mc_st_tensor *t;
    int64_t ok_shape[3] = {4, -1, 1};
    CHECK(mc_st_get(f, "t.F32", 3, ok_shape, &t, &err) == MC_OK && t);
    int64_t bad_shape[3] = {4, 6, 1};
    memset(&err, 0, sizeof err);
    CHECK(mc_st_get(f, "t.F32", 3, bad_shape, &t, &err) == MC_ERR_SHAPE && !t);
    CHECK(strstr(err.msg, path) && strstr(err.msg, "t.F32") && strstr(err.msg, "[4, 5, 1]") &&
          strstr(err.msg, "[4, 6, 1]"));
    CHECK(mc_st_get(f, "t.F32", 2, bad_shape, &t, &err) == MC_ERR_SHAPE);
    CHECK(mc_st_get(f, "missing.weight", 2, bad_shape, &t, &err) == MC_ERR_SHAPE);
    CHECK(strstr(err.msg, "missing.weight") && strstr(err.msg, "missing"));
    CHECK(mc_st_get(f, "logit_scale", 0, NULL, &t, &err) == MC_OK);
    float dst[64];
    CHECK(mc_st_read_f32(f, "t.I64", 2, NULL, dst, &err) == MC_ERR_SHAPE);
    CHECK(mc_st_get(f, "t.I64", 3, NULL, &t, &err) == MC_OK);
    int64_t i64_shape[3] = {5, 1, 1};
    memset(&err, 0, sizeof err);
    CHECK(mc_st_read_f32(f, "t.I64", 3, i64_shape, dst, &err) == MC_ERR_UNSUPPORTED);
    CHECK(strstr(err.msg, "t.I64") && strstr(err.msg, path));
    mc_st_close(&f);
    CHECK(f == NULL);
    mc_st_close(&f); /* NULL-safe */
}

/* F16/BF16/F64 values written as raw bits; read_f32 must give the exact values. */
static void test_convert(const char *path) {
    mc_error err = {0};
    /* f16: 1.0=0x3c00, -2.0=0xc000, 0.5=0x3800, 65504=0x7bff, smallest subnormal 2^-24=0x0001 */
    const uint16_t h[5] = {0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001};
    const float hv[5] = {1.0f, -2.0f, 0.5f, 65504.0f, 5.9604644775390625e-8f};
    /* bf16: 1.0=0x3f80, -3.0=0xc040, 0.15625=0x3e20 */
    const uint16_t b[3] = {0x3f80, 0xc040, 0x3e20};
    const float bv[3] = {1.0f, -3.0f, 0.15625f};
    const double dv[2] = {0.25, -1e30};
    mc_st_writer *w = NULL;
    CHECK(mc_st_writer_create(&w, &err) == MC_OK);
    int64_t s5[1] = {5}, s3[1] = {3}, s2[1] = {2};
    CHECK(mc_st_writer_add(w, "h", MC_DTYPE_F16, 1, s5, h, &err) == MC_OK);
    CHECK(mc_st_writer_add(w, "b", MC_DTYPE_BF16, 1, s3, b, &err) == MC_OK);
    CHECK(mc_st_writer_add(w, "d", MC_DTYPE_F64, 1, s2, dv, &err) == MC_OK);
    CHECK(mc_st_writer_save(w, path, &err) == MC_OK);
    mc_st_writer_free(&w);
    mc_st_file *f = NULL;
    CHECK(mc_st_open(path, &f, &err) == MC_OK);
    if (!f) return;
    float out[5];
    CHECK(mc_st_read_f32(f, "h", 1, s5, out, &err) == MC_OK);
    for (int i = 0; i < 5; i++) CHECK_MSG(out[i] == hv[i], "f16[%d] %g vs %g", i, out[i], hv[i]);
    CHECK(mc_st_read_f32(f, "b", 1, s3, out, &err) == MC_OK);
    for (int i = 0; i < 3; i++) CHECK_MSG(out[i] == bv[i], "bf16[%d] %g vs %g", i, out[i], bv[i]);
    CHECK(mc_st_read_f32(f, "d", 1, s2, out, &err) == MC_OK);
    CHECK(out[0] == 0.25f && out[1] == (float)-1e30);
    mc_st_close(&f);
}

/* The buffer entry point sees the same bytes; an empty file (no tensors) is valid. */
static void test_buffer(const char *path) {
    mc_error err = {0};
    char *buf;
    size_t len;
    CHECK(mc_read_file(path, 1u << 20, &buf, &len, &err) == MC_OK);
    mc_st_file *f = NULL;
    CHECK(mc_st_open_buffer(buf, len, "mem", &f, &err) == MC_OK);
    CHECK(f && mc_st_count(f) == 3 && !strcmp(mc_st_path(f), "mem"));
    mc_st_close(&f);
    /* truncating by one byte must fail, naming the label */
    CHECK(mc_st_open_buffer(buf, len - 1, "mem", &f, &err) == MC_ERR_FORMAT && !f);
    CHECK(strstr(err.msg, "mem:") != NULL);
    free(buf);

    mc_st_writer *w = NULL;
    CHECK(mc_st_writer_create(&w, &err) == MC_OK);
    CHECK(mc_st_writer_save(w, path, &err) == MC_OK);
    mc_st_writer_free(&w);
    CHECK(mc_st_open(path, &f, &err) == MC_OK && f && mc_st_count(f) == 0);
    mc_st_close(&f);
}

int main(void) {
    char path[256];
    snprintf(path, sizeof path, "st_unit_%ld.safetensors", (long)getpid());
    test_round_trip(path);
    test_convert(path);
    test_buffer(path);
    unlink(path);
    return TEST_SUMMARY();
}
