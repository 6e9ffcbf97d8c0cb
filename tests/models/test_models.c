/* test_models.c - model-level unit tests on tiny random folders written by
 * mc_model_write_random (no PyTorch): every family loads, a batch equals its images run one by
 * one, hooks see the documented shapes, a false return and a NULL output stop the forward, the
 * prefix path equals the full forward, and malformed folders fail with the tensor named; the
 * CLIP text tower of the same folder loads through the same path and runs on token rows. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/fsutil.h"
#include "miclip/model.h"
#include "miclip/safetensors.h"
#include "test_util.h"

static float *rnd(size_t n, unsigned seed) {
    float *p = malloc(n * sizeof(float));
    srand(seed);
    for (size_t i = 0; i < n; i++) p[i] = (float)rand() / (float)RAND_MAX * 2.0f - 1.0f;
    return p;
}

static double max_rel(const float *a, const float *b, size_t n) {
    double e = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > e || isnan(d)) e = d;
        if (fabs(b[i]) > m) m = fabs(b[i]);
    }
    return e / (m > 0 ? m : 1);
}

typedef struct {
    int calls;
    int last_layer;
    float *copy;
    size_t n;
    bool ret;
} probe;

static bool probe_hook(const mc_hook_view *v, void *user) {
    probe *p = user;
    p->calls++;
    p->last_layer = v->layer;
    size_t n = 1;
    for (int d = 0; d < v->ndim; d++) n *= (size_t)v->shape[d];
    free(p->copy);
    p->copy = malloc(n * sizeof(float));
    memcpy(p->copy, v->data, n * sizeof(float));
    p->n = n;
    return p->ret;
}

static void test_family(const char *arch, const char *mid_layer) {
    char dir[256];
    snprintf(dir, sizeof dir, "models_%s", arch);
    mc_error err = {0};
    CHECK(mc_model_write_random(arch, 7, MC_DTYPE_F32, dir, &err) == MC_OK);
    mc_model *m = NULL;
    CHECK_MSG(mc_model_create(dir, &m, &err) == MC_OK, "%s", err.msg);
    if (!m) return;
    int C, H, W;
    mc_model_input_size(m, &C, &H, &W);
    const int64_t B = 3, K = mc_model_output_dim(m), n_px = (int64_t)C * H * W;
    float *px = rnd((size_t)(B * n_px), 11);
    float *out = malloc((size_t)(B * K) * sizeof(float)), *one = malloc((size_t)K * sizeof(float));
    CHECK(mc_model_forward(m, px, B, H, W, NULL, out, NULL, &err) == MC_OK);
    double worst = 0;
    for (int64_t b = 0; b < B; b++) {
        CHECK(mc_model_forward(m, px + b * n_px, 1, H, W, NULL, one, NULL, &err) == MC_OK);
        double e = max_rel(one, out + b * K, (size_t)K);
        worst = e > worst ? e : worst;
    }
    printf("%-12s params %lld, layers %d, batch vs single %.2e\n", arch,
           (long long)mc_model_param_count(m), mc_model_layer_count(m), worst);
    CHECK(worst < 1e-5);

    /* read hook on the mid layer; output NULL stops right after it */
    int idx;
    CHECK(mc_model_find_layer(m, mid_layer, &idx, &err) == MC_OK);
    const mc_layer_info *li = mc_model_layer(m, idx);
    probe p = {.ret = true};
    mc_hook hk = {mid_layer, MC_HOOK_READ, probe_hook, &p};
    mc_forward_opts o = {.hooks = &hk, .n_hooks = 1};
    bool stopped = false;
    CHECK(mc_model_forward(m, px, B, H, W, &o, NULL, &stopped, &err) == MC_OK);
    CHECK(stopped && p.calls == 1 && p.last_layer == idx);
    size_t per = 1;
    for (int d = 0; d < li->ndim; d++) per *= (size_t)li->shape[d];
    CHECK(p.n == (size_t)B * per);
    float *state = p.copy;
    p.copy = NULL;
    /* a false return stops even with an output buffer */
    p.ret = false;
    p.calls = 0;
    CHECK(mc_model_forward(m, px, B, H, W, &o, out, &stopped, &err) == MC_OK && stopped &&
          p.calls == 1);
    /* prefix: start from the captured state == full forward */
    float *out2 = malloc((size_t)(B * K) * sizeof(float));
    mc_forward_opts po = {.start_at = mid_layer, .start_state = state};
    CHECK(mc_model_forward(m, px, B, H, W, NULL, out, NULL, &err) == MC_OK);
    CHECK_MSG(mc_model_forward(m, NULL, B, H, W, &po, out2, &stopped, &err) == MC_OK, "%s",
              err.msg);
    CHECK(!stopped);
    CHECK_MSG(max_rel(out2, out, (size_t)(B * K)) < 1e-6, "%s prefix %.3g", arch,
              max_rel(out2, out, (size_t)(B * K)));
    /* a hook before start_at is refused; unknown layer names are refused */
    mc_hook early = {mc_model_layer(m, 0)->name, MC_HOOK_READ, probe_hook, &p};
    po.hooks = &early, po.n_hooks = 1;
    CHECK(mc_model_forward(m, NULL, B, H, W, &po, out2, NULL, &err) == MC_ERR_ARG);
    mc_hook bad = {"no.such.layer", MC_HOOK_READ, probe_hook, &p};
    o.hooks = &bad;
    CHECK(mc_model_forward(m, px, B, H, W, &o, out, NULL, &err) == MC_ERR_ARG);
    CHECK(strstr(err.msg, "no.such.layer") != NULL);
    free(p.copy);
    free(state), free(out2), free(px), free(out), free(one);
    mc_model_free(&m);
    CHECK(m == NULL);
}

/* Rewrites a BF16 folder's model.safetensors with one tensor dropped, one unknown tensor added,
 * one tensor reshaped, or a tolerated extra buffer added. */
/* F16 and BF16 folders load (converted once) and give the F32 folder's outputs up to the
 * weights' rounding (F16 keeps 11 significant bits, BF16 8). */
static void test_half_dtypes(void) {
    mc_error err = {0};
    const mc_dtype dts[2] = {MC_DTYPE_F16, MC_DTYPE_BF16};
    const double tol[2] = {1e-2, 5e-2};
    float *ref = NULL, *px = NULL;
    int64_t K = 0;
    for (int k = -1; k < 2; k++) {
        const char *dir = k < 0    ? "models_half_f32"
                          : k == 0 ? "models_half_f16"
                                   : "models_half_bf16";
        CHECK(mc_model_write_random("clip-tiny", 9, k < 0 ? MC_DTYPE_F32 : dts[k], dir, &err) ==
              MC_OK);
        mc_model *m = NULL;
        CHECK_MSG(mc_model_create(dir, &m, &err) == MC_OK, "%s: %s", dir, err.msg);
        if (!m) return;
        int C, H, W;
        mc_model_input_size(m, &C, &H, &W);
        K = mc_model_output_dim(m);
        if (!px) px = rnd((size_t)(2 * C * H * W), 5);
        float *out = malloc((size_t)(2 * K) * sizeof(float));
        CHECK(mc_model_forward(m, px, 2, H, W, NULL, out, NULL, &err) == MC_OK);
        if (k < 0) {
            ref = out;
        } else {
            const double e = max_rel(out, ref, (size_t)(2 * K));
            printf("clip-tiny %s weights: output differs from F32 by %.2e of max\n",
                   k ? "BF16" : "F16", e);
            CHECK(e < tol[k] && e > 0);
            free(out);
        }
        mc_model_free(&m);
    }
    free(ref), free(px);
}

/* HF module paths that are aliases of listed ResNet tensors. */
static void test_resnet_aliases(void) {
    mc_error err = {0};
    mc_model *m = NULL;
    CHECK(mc_model_create("models_resnet-tiny", &m, &err) == MC_OK);
    if (!m) return;
    static const char *const pairs[][2] = {
        {"resnet.encoder.stages.1.layers.0", "stages.1.layers.0"},
        {"resnet.embedder", "embedder"},
        {"embedder.pooler", "embedder"},
        {"encoder", "stages.1"},
        {"stages.0.layers.0.activation", "stages.0.layers.0"},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) {
        int a = -1, b = -2;
        mc_model_find_layer(m, pairs[i][0], &a, &err);
        mc_model_find_layer(m, pairs[i][1], &b, &err);
        CHECK_MSG(a == b, "%s -> %d, %s -> %d", pairs[i][0], a, pairs[i][1], b);
    }
    mc_model_free(&m);
}

static void test_bad_folder(void) {
    mc_error err = {0};
    CHECK(mc_model_write_random("vit-tiny", 1, MC_DTYPE_BF16, "models_bad", &err) == MC_OK);
    mc_model *m = NULL;
    CHECK_MSG(mc_model_create("models_bad", &m, &err) == MC_OK, "bf16 load: %s", err.msg);
    mc_model_free(&m);
    mc_st_file *f = NULL;
    CHECK(mc_st_open("models_bad/model.safetensors", &f, &err) == MC_OK);
    if (!f) return;
    const char *victim = "vit.encoder.layer.1.output.dense.bias";
    for (int mode = 0; mode < 4; mode++) {
        mc_st_writer *w = NULL;
        mc_st_writer_create(&w, &err);
        for (int i = 0; i < mc_st_count(f); i++) {
            const mc_st_tensor *t = mc_st_at(f, i);
            const bool is_v = strcmp(t->name, victim) == 0;
            if (is_v && mode == 0) continue; /* missing */
            const char *name = t->name;
            int64_t shape[8];
            memcpy(shape, t->shape, sizeof shape);
            int nd = t->ndim;
            if (is_v && mode == 2) shape[0] = shape[0] / 2; /* wrong shape */
            mc_st_writer_add(w, name, t->dtype, nd, shape, t->data, &err);
        }
        if (mode == 1) { /* an unknown tensor */
            int64_t s1[1] = {4};
            float z[4] = {0};
            mc_st_writer_add(w, "vit.encoder.layer.1.output.dense.extra", MC_DTYPE_F32, 1, s1, z,
                             &err);
        }
        if (mode == 3) { /* tolerated extras */
            int64_t s1[2] = {1, 17};
            int64_t ids[17] = {0};
            mc_st_writer_add(w, "vit.embeddings.position_ids", MC_DTYPE_I64, 2, s1, ids, &err);
        }
        CHECK(mc_mkdir_p("models_bad2", &err) == MC_OK);
        CHECK(mc_st_writer_save(w, "models_bad2/model.safetensors", &err) == MC_OK);
        mc_st_writer_free(&w);
        char *cfg;
        size_t len;
        CHECK(mc_read_file("models_bad/config.json", 1 << 20, &cfg, &len, &err) == MC_OK);
        CHECK(mc_write_file_atomic("models_bad2/config.json", cfg, len, &err) == MC_OK);
        free(cfg);
        mc_error e = {0};
        mc_status s = mc_model_create("models_bad2", &m, &e);
        if (mode == 3) {
            CHECK_MSG(s == MC_OK, "extras not tolerated: %s", e.msg);
        } else {
            printf("  bad folder %d: %s\n", mode, e.msg);
            CHECK(s != MC_OK);
            CHECK(strstr(e.msg, mode == 1 ? "output.dense.extra" : victim) != NULL);
        }
        mc_model_free(&m);
    }
    mc_st_close(&f);
}

/* The text tower of a CLIPModel folder is a family of its own: it loads through the same path
 * (tolerating the vision side, rejecting an unknown text tensor), runs token rows (a batch
 * equals its rows run alone), and each forward entry refuses the other kind of model. */
static void test_text_family(void) {
    mc_error err = {0};
    mc_model *t = NULL, *v = NULL;
    CHECK_MSG(mc_model_create_family("models_clip-tiny", MC_FAMILY_CLIP_TEXT, &t, &err) == MC_OK,
              "%s", err.msg);
    CHECK(mc_model_create("models_clip-tiny", &v, &err) == MC_OK);
    if (!t || !v) return;
    CHECK(mc_model_family(t) == MC_FAMILY_CLIP_TEXT);
    CHECK(strcmp(mc_family_name(mc_model_family(t)), "clip_text") == 0);
    CHECK(strcmp(mc_model_output_name(t), "text_embeds") == 0);
    /* both towers end in the shared embedding space */
    CHECK(mc_model_output_dim(t) == mc_model_output_dim(v));
    const int64_t V = mc_model_vocab_size(t), K = mc_model_output_dim(t), ctx = 8;
    CHECK(V > 8 && mc_model_vocab_size(v) == 0);
    const int32_t eos = (int32_t)(V - 1);
    int32_t ids[3 * 8] = {0, 3,   5, eos, 0, 0, 0,   0, 0, 3, 7, 2,
                          6, eos, 0, 0,   0, 4, eos, 0, 0, 0, 0, 0};
    float all[3 * 64], one[64];
    CHECK(K <= 64);
    CHECK_MSG(mc_model_forward_tokens(t, ids, NULL, 3, ctx, eos, all, &err) == MC_OK, "%s",
              err.msg);
    for (int r = 0; r < 3; r++) {
        CHECK(mc_model_forward_tokens(t, ids + r * ctx, NULL, 1, ctx, eos, one, &err) == MC_OK);
        CHECK_MSG(max_rel(all + r * K, one, (size_t)K) < 1e-5, "row %d: %.2e", r,
                  max_rel(all + r * K, one, (size_t)K));
    }
    mc_error e = {0};
    int32_t bad[8] = {0, 3, 5, 6, 0, 0, 0, 0}; /* no end token */
    CHECK(mc_model_forward_tokens(t, bad, NULL, 1, ctx, eos, one, &e) == MC_ERR_ARG &&
          strstr(e.msg, "end token"));
    bad[2] = (int32_t)V, bad[3] = eos; /* outside the vocabulary */
    CHECK(mc_model_forward_tokens(t, bad, NULL, 1, ctx, eos, one, &e) == MC_ERR_ARG &&
          strstr(e.msg, "vocabulary"));
    float px[1];
    CHECK(mc_model_forward(t, px, 1, 1, 1, NULL, one, NULL, &e) == MC_ERR_ARG &&
          strstr(e.msg, "token ids"));
    CHECK(mc_model_forward_tokens(v, ids, NULL, 1, ctx, eos, one, &e) == MC_ERR_ARG &&
          strstr(e.msg, "takes images"));
    mc_model_free(&t);
    mc_model_free(&v);

    /* an unknown text tensor is an error naming it, as for the vision families */
    mc_st_file *f = NULL;
    CHECK(mc_st_open("models_clip-tiny/model.safetensors", &f, &err) == MC_OK);
    if (!f) return;
    mc_st_writer *w = NULL;
    mc_st_writer_create(&w, &err);
    for (int i = 0; i < mc_st_count(f); i++) {
        const mc_st_tensor *x = mc_st_at(f, i);
        mc_st_writer_add(w, x->name, x->dtype, x->ndim, x->shape, x->data, &err);
    }
    int64_t s1[1] = {4};
    float z[4] = {0};
    mc_st_writer_add(w, "text_model.encoder.layers.0.extra", MC_DTYPE_F32, 1, s1, z, &err);
    CHECK(mc_mkdir_p("models_text_bad", &err) == MC_OK);
    CHECK(mc_st_writer_save(w, "models_text_bad/model.safetensors", &err) == MC_OK);
    mc_st_writer_free(&w);
    mc_st_close(&f);
    char *cfg;
    size_t len;
    CHECK(mc_read_file("models_clip-tiny/config.json", 1 << 20, &cfg, &len, &err) == MC_OK);
    CHECK(mc_write_file_atomic("models_text_bad/config.json", cfg, len, &err) == MC_OK);
    free(cfg);
    CHECK(mc_model_create_family("models_text_bad", MC_FAMILY_CLIP_TEXT, &t, &e) == MC_ERR_SHAPE);
    printf("  unknown text tensor: %s\n", e.msg);
    CHECK(strstr(e.msg, "text_model.encoder.layers.0.extra") != NULL);
    mc_model_free(&t);
}

int main(void) {
    test_family("vit-tiny", "1");
    test_family("clip-tiny", "1");
    test_family("resnet-tiny", "stages.0.layers.0");
    test_family("resnet-tiny", "stages.1");
    test_family("resnet-tiny", "embedder");
    test_half_dtypes();
    test_resnet_aliases();
    {
        mc_error err = {0};
        mc_model *m = NULL;
        int a = -1, b = -2;
        CHECK(mc_model_create("models_clip-tiny", &m, &err) == MC_OK);
        if (m) {
            mc_model_find_layer(m, "last_hidden_state", &a, &err);
            mc_model_find_layer(m, "2", &b, &err);
            CHECK(a == b);
            mc_model_find_layer(m, "pooler_output", &a, &err);
            mc_model_find_layer(m, "post_layernorm", &b, &err);
            CHECK(a == b);
        }
        mc_model_free(&m);
    }
    test_bad_folder();
    test_text_family();
    return TEST_SUMMARY();
}
