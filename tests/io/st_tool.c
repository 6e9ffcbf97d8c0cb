/* st_tool.c - a small helper for the Python cross-check (check_python_xcheck.py).
 *   st_tool dump FILE   prints what the C reader sees: "meta KEY VALUE", "tensor NAME DTYPE
 *                       DIMS HEX" (DIMS comma-separated, "-" for a scalar) and, for float
 *                       dtypes, "f32 NAME v,v,..." (%.9g of mc_st_read_f32); tab-separated.
 *   st_tool write FILE  writes a deterministic set of tensors with mc_st_writer; the Python
 *                       side recomputes them (formula below) with numpy/torch.
 * Formula: for i in 0..14, v_i = ((37 i) mod 101 - 50) / 7 as double; tensor "x.DTYPE" [3, 5]
 * holds v_i in F64, (float)v_i in F32, and its F16/BF16 rounding (mc_f32_to_f16/bf16); the
 * integer dtypes hold k_i = (37 i) mod 101 - 50 scaled (I64 x 123456789012, I32 x 100000,
 * I16 x 300, I8 x 1), U8 holds (37 i) mod 256 and BOOL holds i mod 3 == 0. Plus "edge.F16" and
 * "edge.BF16" (rounding edge cases), scalar "s.F32" = 2.6592f, empty "e.BF16" [0, 3]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/safetensors.h"

static const float edge[] = {0.0f,         -0.0f,    1e-8f,       6e-5f,         65504.0f,
                             65519.0f,     65520.0f, 1e5f,        3.0e38f,       -1.17549435e-38f,
                             0.333333343f, -2.5f,    1.00390625f, 1.0009765625f, 7.0e-8f};
#define N_EDGE (int)(sizeof edge / sizeof edge[0])

static int dump(const char *path) {
    mc_error err = {0};
    mc_st_file *f = NULL;
    if (mc_st_open(path, &f, &err) != MC_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    for (int i = 0; i < mc_st_metadata_count(f); i++) {
        const char *k, *v;
        mc_st_metadata_at(f, i, &k, &v);
        printf("meta\t%s\t%s\n", k, v);
    }
    for (int i = 0; i < mc_st_count(f); i++) {
        const mc_st_tensor *t = mc_st_at(f, i);
        printf("tensor\t%s\t%s\t", t->name, mc_dtype_name(t->dtype));
        if (t->ndim == 0) printf("-");
        for (int d = 0; d < t->ndim; d++) printf(d ? ",%lld" : "%lld", (long long)t->shape[d]);
        printf("\t");
        for (size_t b = 0; b < t->nbytes; b++) printf("%02x", ((const unsigned char *)t->data)[b]);
        printf("\n");
        if (t->dtype <= MC_DTYPE_BF16) { /* F64, F32, F16, BF16 */
            float *v = malloc(t->numel ? t->numel * sizeof(float) : 1);
            if (!v || mc_st_read_f32(f, t->name, t->ndim, t->shape, v, &err) != MC_OK) {
                fprintf(stderr, "%s\n", err.msg);
                return 1;
            }
            printf("f32\t%s\t", t->name);
            for (size_t k = 0; k < t->numel; k++) printf(k ? ",%.9g" : "%.9g", (double)v[k]);
            printf("\n");
            free(v);
        }
    }
    mc_st_close(&f);
    return 0;
}

static int write_file(const char *path) {
    mc_error err = {0};
    mc_st_writer *w = NULL;
    if (mc_st_writer_create(&w, &err) != MC_OK) goto fail;
    unsigned char buf[15 * 8];
    int64_t shape[2] = {3, 5};
    for (int dt = 0; dt < MC_DTYPE_COUNT; dt++) {
        for (int i = 0; i < 15; i++) {
            int k = (37 * i) % 101 - 50;
            double v = k / 7.0;
            float fv = (float)v;
            unsigned char *p = buf + i * mc_dtype_size(dt);
            switch ((mc_dtype)dt) {
            case MC_DTYPE_F64: memcpy(p, &v, 8); break;
            case MC_DTYPE_F32: memcpy(p, &fv, 4); break;
            case MC_DTYPE_F16: {
                uint16_t h = mc_f32_to_f16(fv);
                memcpy(p, &h, 2);
                break;
            }
            case MC_DTYPE_BF16: {
                uint16_t h = mc_f32_to_bf16(fv);
                memcpy(p, &h, 2);
                break;
            }
            case MC_DTYPE_I64: {
                int64_t x = (int64_t)k * 123456789012LL;
                memcpy(p, &x, 8);
                break;
            }
            case MC_DTYPE_I32: {
                int32_t x = k * 100000;
                memcpy(p, &x, 4);
                break;
            }
            case MC_DTYPE_I16: {
                int16_t x = (int16_t)(k * 300);
                memcpy(p, &x, 2);
                break;
            }
            case MC_DTYPE_I8: {
                int8_t x = (int8_t)k;
                memcpy(p, &x, 1);
                break;
            }
            case MC_DTYPE_U8: p[0] = (unsigned char)((37 * i) % 256); break;
            case MC_DTYPE_BOOL: p[0] = i % 3 == 0; break;
            default: break;
            }
        }
        char name[32];
        snprintf(name, sizeof name, "x.%s", mc_dtype_name(dt));
        if (mc_st_writer_add(w, name, (mc_dtype)dt, 2, shape, buf, &err) != MC_OK) goto fail;
    }
    uint16_t h[N_EDGE], b[N_EDGE];
    for (int i = 0; i < N_EDGE; i++) {
        h[i] = mc_f32_to_f16(edge[i]);
        b[i] = mc_f32_to_bf16(edge[i]);
    }
    int64_t ne[1] = {N_EDGE}, e[2] = {0, 3};
    float s = 2.6592f;
    if (mc_st_writer_add(w, "edge.F16", MC_DTYPE_F16, 1, ne, h, &err) != MC_OK ||
        mc_st_writer_add(w, "edge.BF16", MC_DTYPE_BF16, 1, ne, b, &err) != MC_OK ||
        mc_st_writer_add(w, "s.F32", MC_DTYPE_F32, 0, NULL, &s, &err) != MC_OK ||
        mc_st_writer_add(w, "e.BF16", MC_DTYPE_BF16, 2, e, NULL, &err) != MC_OK ||
        mc_st_writer_add_metadata(w, "format", "pt", &err) != MC_OK ||
        mc_st_writer_add_metadata(w, "source", "miclip st_tool", &err) != MC_OK ||
        mc_st_writer_save(w, path, &err) != MC_OK)
        goto fail;
    mc_st_writer_free(&w);
    return 0;
fail:
    fprintf(stderr, "%s\n", err.msg);
    mc_st_writer_free(&w);
    return 1;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "dump")) return dump(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "write")) return write_file(argv[2]);
    fprintf(stderr, "usage: st_tool dump|write FILE\n");
    return 2;
}
