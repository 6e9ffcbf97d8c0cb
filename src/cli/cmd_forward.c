/* cmd_forward.c - `miclip forward MODEL_DIR IMAGE... [--layers NAME,...] [--batch N]
 * --out FILE.h5`: preprocesses the images as the folder's preprocessor_config.json says, runs
 * the model and writes an HDF5 store (store.h) with
 *   /pixel_values   [N, 3, H, W]  the preprocessed input
 *   /output         [N, K]        logits, or CLIP image embeddings before normalisation
 *   /layers/<name>  [N, ...]      each hooked layer in its natural layout ([N, tokens, dim] or
 *                                 [N, C, H, W]; vectors [N, K])
 * Batches of --batch images (cut at global multiples of --batch) are split over the ranks and
 * all ranks write each round's rows collectively (a rank with no batch left writes none), so
 * every image is computed in the same batch and the file is bitwise the same for any rank
 * count. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "miclip/checked.h"
#include "miclip/image.h"
#include "miclip/model.h"
#include "miclip/store.h"

#define MAX_LAYERS 128

typedef struct {
    float *buf;  /* [batch, per] for the current batch */
    int64_t per; /* floats per image */
    int index;   /* layer index */
} capture;

static bool capture_hook(const mc_hook_view *v, void *user) {
    capture *c = user;
    memcpy(c->buf, v->data, (size_t)(v->shape[0] * c->per) * sizeof(float));
    return true;
}

enum { OPT_LAYERS = 2, OPT_BATCH, OPT_OUT };

static const mc_cli_opt opts[] = {
    {"layers", MC_CLI_VALUE, OPT_LAYERS, "NAME,...", "comma-separated layer names (docs/hooks.md)"},
    {"batch", MC_CLI_VALUE, OPT_BATCH, "N", "images per forward call (default 8)"},
    {"out", MC_CLI_VALUE, OPT_OUT, "FILE.h5",
     "the store to write (replaced if it exists; required)"},
    {0}};

const mc_cli_cmd mc_cmd_forward_cli = {
    .name = "forward",
    .usage = "miclip forward MODEL_DIR IMAGE... [--layers NAME,...] [--batch N] --out FILE.h5",
    .about = "Runs a model folder (ViT, ResNet or CLIP) on images and writes an HDF5 store:\n"
             "  /pixel_values   [N, 3, H, W]  after preprocessing (preprocessor_config.json)\n"
             "  /output         [N, K]        logits; for a CLIP folder the image embeddings\n"
             "                                before normalisation\n"
             "  /layers/<name>  the hooked layers in natural layout: [N, tokens, dim] for\n"
             "                  transformers, [N, C, H, W] for ResNet (names: `miclip info`)\n",
    .opts = opts,
    .notes = "Images are split over MPI ranks; the result does not depend on the rank count.\n"};

static mc_status run(const mc_comm *c, const char *dir, char **imgs, int64_t N, char *layers_arg,
                     int64_t batch, const char *out_path, mc_error *err) {
    mc_model *m = NULL;
    mc_store *s = NULL;
    mc_preproc pp;
    capture caps[MAX_LAYERS];
    mc_hook hooks[MAX_LAYERS];
    int nl = 0;
    float *px = NULL, *out = NULL;
    mc_status st = mc_model_create(dir, &m, err);
    int C, H, W;
    if (st == MC_OK) st = mc_preproc_load(dir, &pp, err);
    if (st == MC_OK && !mc_preproc_fixed_size(&pp, &H, &W))
        st = MC_FAIL(err, MC_ERR_UNSUPPORTED,
                     "%s: the preprocessor's output size depends on the "
                     "image; a batch needs one size",
                     dir);
    if (st == MC_OK) {
        mc_model_input_size(m, &C, NULL, NULL);
        st = mc_model_plan(m, batch, H, W, err); /* also fixes the layer shapes for H x W */
    }
    /* the layers to capture */
    memset(caps, 0, sizeof caps);
    for (char *t = layers_arg ? strtok(layers_arg, ",") : NULL; st == MC_OK && t;
         t = strtok(NULL, ",")) {
        if (nl == MAX_LAYERS) {
            st = MC_FAIL(err, MC_ERR_ARG, "more than %d layers", MAX_LAYERS);
            break;
        }
        int idx;
        if ((st = mc_model_find_layer(m, t, &idx, err)) != MC_OK) break;
        const mc_layer_info *l = mc_model_layer(m, idx);
        int64_t per = 1;
        for (int d = 0; d < l->ndim; d++) per *= l->shape[d];
        caps[nl] = (capture){
            .buf = mc_alloc_array((size_t)(batch * per), sizeof(float)), .per = per, .index = idx};
        if (!caps[nl].buf) st = MC_FAIL(err, MC_ERR_NOMEM, "out of memory for layer %s", t);
        hooks[nl] =
            (mc_hook){.name = l->name, .mode = MC_HOOK_READ, .fn = capture_hook, .user = &caps[nl]};
        nl++;
    }
    const int64_t K = m ? mc_model_output_dim(m) : 0;
    if (st == MC_OK) {
        px = mc_alloc_array((size_t)(batch * 3 * H * W), sizeof(float));
        out = mc_alloc_array((size_t)(batch * K), sizeof(float));
        if (!px || !out) st = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    st = mc_comm_agree(c, st, err);
    /* the store and its datasets, created collectively */
    if (st == MC_OK) st = mc_store_create(c, out_path, MC_STORE_OVERWRITE, &s, err);
    if (st == MC_OK) {
        const int64_t ps[4] = {N, 3, H, W}, os[2] = {N, K};
        st = mc_store_create_dataset(s, "pixel_values", MC_DTYPE_F32, 4, ps, 0, err);
        if (st == MC_OK) st = mc_store_create_dataset(s, "output", MC_DTYPE_F32, 2, os, 0, err);
        if (st == MC_OK)
            st = mc_store_set_attr_str(s, "output", "name", mc_model_output_name(m), err);
        for (int i = 0; i < nl && st == MC_OK; i++) {
            const mc_layer_info *l = mc_model_layer(m, caps[i].index);
            int64_t sh[4] = {N};
            for (int d = 0; d < l->ndim; d++) sh[d + 1] = l->shape[d];
            char name[256];
            snprintf(name, sizeof name, "layers/%s", l->name);
            st = mc_store_create_dataset(s, name, MC_DTYPE_F32, l->ndim + 1, sh, 0, err);
        }
        if (st == MC_OK) st = mc_store_set_attr_str(s, "/", "model", dir, err);
        if (st == MC_OK)
            st = mc_store_set_attr_str(s, "/", "architecture", mc_model_architecture(m), err);
    }
    /* Whole batches (at global multiples of --batch) are split over the ranks, so every image
     * is computed in the same batch whatever the rank count: the file is bitwise the same. Every
     * rank takes part in each round's collective writes, with no rows when it has run out. */
    const int64_t n_batches = (N + batch - 1) / batch;
    int64_t q0, q1, most = 0;
    mc_shard_range(n_batches, c->rank, c->size, &q0, &q1);
    for (int r = 0; r < c->size; r++) {
        int64_t a, b;
        mc_shard_range(n_batches, r, c->size, &a, &b);
        if (b - a > most) most = b - a;
    }
    mc_forward_opts o = {.hooks = hooks, .n_hooks = nl};
    for (int64_t r = 0; r < most && st == MC_OK; r++) {
        /* A stop signal ends the run between batches (collectively). The file has no
         * completion records, so the rerun recomputes it. */
        int sig = mc_comm_poll(c, false, NULL);
        if (sig) {
            st = mc_fail_stopped(err, sig,
                                 "forward: %lld of %lld batches written; %s is incomplete, "
                                 "rerun the command to write it",
                                 (long long)(r * c->size), (long long)n_batches, out_path);
            break;
        }
        const int64_t q = q0 + r;
        const int64_t lo = q < q1 ? q * batch : 0;
        const int64_t hi = q < q1 ? (lo + batch < N ? lo + batch : N) : 0;
        mc_status ls = MC_OK;
        if (hi > lo) {
            ls = mc_preprocess_files(&pp, (const char *const *)imgs + lo, (size_t)(hi - lo), NULL,
                                     px, err);
            if (ls == MC_OK) ls = mc_model_forward(m, px, hi - lo, H, W, &o, out, NULL, err);
        }
        if ((st = mc_comm_agree(c, ls, err)) != MC_OK) break;
        st = mc_store_write_rows(s, "pixel_values", MC_DTYPE_F32, lo, hi, px, err);
        if (st == MC_OK) st = mc_store_write_rows(s, "output", MC_DTYPE_F32, lo, hi, out, err);
        for (int i = 0; i < nl && st == MC_OK; i++) {
            char name[256];
            snprintf(name, sizeof name, "layers/%s", mc_model_layer(m, caps[i].index)->name);
            st = mc_store_write_rows(s, name, MC_DTYPE_F32, lo, hi, caps[i].buf, err);
        }
    }
    if (s) {
        mc_error e2 = {0};
        mc_status cs = mc_store_close(&s, &e2);
        if (st == MC_OK && cs != MC_OK) st = cs, *err = e2;
    }
    for (int i = 0; i < nl; i++) free(caps[i].buf);
    free(px), free(out);
    mc_model_free(&m);
    return st;
}

int mc_cmd_forward(const mc_comm *c, int argc, char **argv) {
    mc_cli_parser p;
    int rc = mc_cli_begin(&p, c, &mc_cmd_forward_cli, argc, argv);
    if (rc >= 0) return rc;
    const char *dir = NULL, *out = NULL, *v;
    char *layers = NULL;
    long long batch = 8;
    char **imgs = calloc((size_t)argc, sizeof *imgs);
    int n = 0;
    if (!imgs) return MC_EXIT_FAILURE;
    for (int id; rc < 0 && (id = mc_cli_next(&p, &v)) != MC_CLI_END;) {
        switch (id) {
        case MC_CLI_ERROR: rc = MC_EXIT_USAGE; break;
        case OPT_LAYERS: layers = (char *)v; break;
        case OPT_OUT: out = v; break;
        case OPT_BATCH:
            if (!mc_cli_parse_int(v, 1, 4096, &batch))
                rc = mc_cli_usage_error(c, "forward", "--batch must be 1..4096, got '%s'", v);
            break;
        case MC_CLI_ARG:
            if (!dir)
                dir = v;
            else
                imgs[n++] = (char *)v;
            break;
        }
    }
    if (rc >= 0) {
        free(imgs);
        return rc;
    }
    if (!dir || n == 0 || !out) {
        free(imgs);
        return mc_cli_usage_error(c, "forward",
                                  "need MODEL_DIR, at least one IMAGE and --out FILE.h5");
    }
    mc_error err = {0};
    mc_status st = run(c, dir, imgs, n, layers, batch, out, &err);
    free(imgs);
    return mc_cli_finish(c, st, &err);
}
