/* model_dump.c - the C side of the PyTorch reference tests: runs a model folder on pixel
 * tensors given as raw files and writes the output and hooked tensors as raw files.
 *
 * Raw tensor file ("MCT1"): 4-byte magic, int32 ndim, int64 shape[ndim], float32 data (little
 * endian). The Python scripts in this folder read and write the same format.
 *
 * usage: model_dump MODEL_DIR PIXELS.mct OUT_PREFIX [--layers a,b,...] [--attn k,...]
 *                   [--edit LAYER --units i,j,... --beta B] [--start LAYER STATE.mct]
 *   writes OUT_PREFIX.output.mct, OUT_PREFIX.<layer>.mct, OUT_PREFIX.attn<k>.mct
 *   --edit scales the chosen units (the last axis of a token tensor, the channel axis of a
 *   feature map) by B with a WRITE hook, on every token/position. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/model.h"

static float *read_mct(const char *path, int *ndim, int64_t *shape) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char magic[4];
    int32_t nd;
    float *data = NULL;
    if (fread(magic, 1, 4, f) != 4 || memcmp(magic, "MCT1", 4) != 0 || fread(&nd, 4, 1, f) != 1 ||
        nd < 1 || nd > 5 || fread(shape, 8, (size_t)nd, f) != (size_t)nd)
        goto done;
    size_t n = 1;
    for (int i = 0; i < nd; i++) n *= (size_t)shape[i];
    data = malloc(n * sizeof(float));
    if (data && fread(data, 4, n, f) != n) free(data), data = NULL;
    *ndim = nd;
done:
    fclose(f);
    return data;
}

static int write_mct(const char *path, int ndim, const int64_t *shape, const float *data) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int32_t nd = ndim;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    int ok = fwrite("MCT1", 1, 4, f) == 4 && fwrite(&nd, 4, 1, f) == 1 &&
             fwrite(shape, 8, (size_t)ndim, f) == (size_t)ndim && fwrite(data, 4, n, f) == n;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

static const char *g_prefix;

static bool save_hook(const mc_hook_view *v, void *user) {
    char path[1024];
    snprintf(path, sizeof path, "%s.%s%s.mct", g_prefix, user ? "attn" : "", v->name);
    if (write_mct(path, v->ndim, v->shape, v->data) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    return true;
}

typedef struct {
    int64_t units[64];
    int n;
    float beta;
} edit_spec;

static bool edit_hook(const mc_hook_view *v, void *user) {
    const edit_spec *e = user;
    if (v->ndim == 4) { /* [B, C, H, W]: scale channels */
        const int64_t S = v->shape[2] * v->shape[3];
        for (int64_t b = 0; b < v->shape[0]; b++)
            for (int i = 0; i < e->n; i++) {
                float *p = v->data + (b * v->shape[1] + e->units[i]) * S;
                for (int64_t s = 0; s < S; s++) p[s] *= e->beta;
            }
    } else { /* [..., D]: scale the last axis on every row */
        const int64_t D = v->shape[v->ndim - 1];
        int64_t rows = 1;
        for (int d = 0; d < v->ndim - 1; d++) rows *= v->shape[d];
        for (int64_t r = 0; r < rows; r++)
            for (int i = 0; i < e->n; i++) v->data[r * D + e->units[i]] *= e->beta;
    }
    return true;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: model_dump MODEL_DIR PIXELS.mct OUT_PREFIX [options]\n");
        return 2;
    }
    g_prefix = argv[3];
    mc_error err = {0};
    mc_model *m = NULL;
    if (mc_model_create(argv[1], &m, &err) != MC_OK) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    int nd;
    int64_t shape[5];
    float *px = read_mct(argv[2], &nd, shape);
    if (!px || nd != 4) {
        fprintf(stderr, "cannot read pixels %s\n", argv[2]);
        return 1;
    }
    mc_hook hooks[256];
    int nh = 0;
    static char names[256][64];
    edit_spec edit = {.beta = 1};
    const char *start_at = NULL;
    float *start_state = NULL;
    for (int i = 4; i < argc; i++) {
        if ((!strcmp(argv[i], "--layers") || !strcmp(argv[i], "--attn")) && i + 1 < argc) {
            const bool attn = !strcmp(argv[i], "--attn");
            char *list = argv[++i];
            for (char *t = strtok(list, ","); t && nh < 200; t = strtok(NULL, ",")) {
                snprintf(names[nh], sizeof names[nh], "%s", t);
                hooks[nh] = (mc_hook){names[nh], attn ? MC_HOOK_ATTN : MC_HOOK_READ, save_hook,
                                      attn ? (void *)1 : NULL};
                nh++;
            }
        } else if (!strcmp(argv[i], "--edit") && i + 1 < argc) {
            /* the edit runs before the read hooks of the same layer (list order) */
            memmove(hooks + 1, hooks, (size_t)nh * sizeof *hooks);
            hooks[0] = (mc_hook){argv[++i], MC_HOOK_WRITE, edit_hook, &edit};
            nh++;
        } else if (!strcmp(argv[i], "--units") && i + 1 < argc) {
            for (char *t = strtok(argv[++i], ","); t && edit.n < 64; t = strtok(NULL, ","))
                edit.units[edit.n++] = atoll(t);
        } else if (!strcmp(argv[i], "--beta") && i + 1 < argc) {
            edit.beta = strtof(argv[++i], NULL);
        } else if (!strcmp(argv[i], "--start") && i + 2 < argc) {
            start_at = argv[++i];
            int snd;
            int64_t ss[5];
            start_state = read_mct(argv[++i], &snd, ss);
            if (!start_state) {
                fprintf(stderr, "cannot read %s\n", argv[i]);
                return 1;
            }
        } else {
            fprintf(stderr, "unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    const int64_t B = shape[0], n_out = mc_model_output_dim(m);
    float *out = malloc((size_t)(B * n_out) * sizeof(float));
    mc_forward_opts o = {
        .hooks = hooks, .n_hooks = nh, .start_at = start_at, .start_state = start_state};
    bool stopped;
    if (mc_model_forward(m, px, B, shape[2], shape[3], &o, out, &stopped, &err) != MC_OK) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s.output.mct", g_prefix);
    const int64_t os[2] = {B, n_out};
    if (write_mct(path, 2, os, out) != 0) return 1;
    free(out), free(px), free(start_state);
    mc_model_free(&m);
    return 0;
}
