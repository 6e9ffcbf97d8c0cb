/* random.c - random-weight Hugging Face folders for benchmarks and tests, written without
 * PyTorch: the config is built here, the family loader declares the expected tensors from it
 * (so the folder always matches what mc_model_create expects), and each tensor is filled from
 * a seeded generator and written with the safetensors writer. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/json.h"
#include "model_internal.h"

typedef struct {
    const char *name, *family;
    int64_t D, L, H, I, img, patch, labels;   /* transformers */
    int64_t E, hs[4], depths[4], n_stages;    /* resnet */
    int64_t proj, tD, tL, tH, tI, vocab, ctx; /* clip */
} arch_spec;

static const arch_spec k_archs[] = {
    {"vit-b16", "vit", 768, 12, 12, 3072, 224, 16, 1000, 0, {0}, {0}, 0, 0, 0, 0, 0, 0, 0, 0},
    {"resnet50",   "resnet", 0, 0, 0, 0, 224, 0, 1000, 64, {256, 512, 1024, 2048},
     {3, 4, 6, 3}, 4,        0, 0, 0, 0, 0,   0, 0},
    {"clip-b16", "clip", 768, 12,  12,  3072, 224, 16,   0,     0,
     {0},        {0},    0,   512, 512, 12,   8,   2048, 49408, 77},
    {"vit-tiny", "vit", 64, 2, 4, 128, 32, 8, 10, 0, {0}, {0}, 0, 0, 0, 0, 0, 0, 0, 0},
    {"resnet-tiny", "resnet", 0, 0, 0, 0, 64, 0, 10, 16, {32, 64}, {1, 2}, 2, 0, 0, 0, 0, 0, 0, 0},
    {"clip-tiny", "clip", 64, 2, 4, 128, 32, 8, 0, 0, {0}, {0}, 0, 32, 32, 2, 4, 64, 49408, 77},
};

const char *mc_model_random_archs(void) {
    return "vit-b16, resnet50, clip-b16, vit-tiny, resnet-tiny, clip-tiny";
}

static json_t *labels_json(int64_t n) {
    json_t *o = json_object();
    for (int64_t i = 0; i < n; i++) {
        char k[24], v[32];
        snprintf(k, sizeof k, "%lld", (long long)i);
        snprintf(v, sizeof v, "class_%lld", (long long)i);
        json_object_set_new(o, k, json_string(v));
    }
    return o;
}

static json_t *floats3(double a, double b, double c) { return json_pack("[f,f,f]", a, b, c); }

static void build_configs(const arch_spec *a, json_t **cfg, json_t **pre) {
    if (strcmp(a->family, "vit") == 0) {
        *cfg = json_pack("{s:[s],s:s,s:I,s:I,s:I,s:I,s:s,s:f,s:I,s:I,s:I,s:b}", "architectures",
                         "ViTForImageClassification", "model_type", "vit", "hidden_size",
                         (json_int_t)a->D, "num_hidden_layers", (json_int_t)a->L,
                         "num_attention_heads", (json_int_t)a->H, "intermediate_size",
                         (json_int_t)a->I, "hidden_act", "gelu", "layer_norm_eps", 1e-12,
                         "image_size", (json_int_t)a->img, "patch_size", (json_int_t)a->patch,
                         "num_channels", (json_int_t)3, "qkv_bias", 1);
        *pre = json_pack("{s:s,s:b,s:b,s:o,s:o,s:I,s:I}", "image_processor_type",
                         "ViTImageProcessor", "do_normalize", 1, "do_resize", 1, "image_mean",
                         floats3(0.5, 0.5, 0.5), "image_std", floats3(0.5, 0.5, 0.5), "resample",
                         (json_int_t)2, "size", (json_int_t)a->img);
    } else if (strcmp(a->family, "resnet") == 0) {
        json_t *hs = json_array(), *dp = json_array();
        for (int s = 0; s < a->n_stages; s++) {
            json_array_append_new(hs, json_integer(a->hs[s]));
            json_array_append_new(dp, json_integer(a->depths[s]));
        }
        *cfg = json_pack("{s:[s],s:s,s:I,s:I,s:o,s:o,s:s,s:s,s:b,s:b}", "architectures",
                         "ResNetForImageClassification", "model_type", "resnet", "num_channels",
                         (json_int_t)3, "embedding_size", (json_int_t)a->E, "hidden_sizes", hs,
                         "depths", dp, "layer_type", "bottleneck", "hidden_act", "relu",
                         "downsample_in_first_stage", 0, "downsample_in_bottleneck", 0);
        *pre = json_pack("{s:s,s:f,s:b,s:b,s:o,s:o,s:I,s:{s:I}}", "image_processor_type",
                         "ConvNextImageProcessor", "crop_pct", 0.875, "do_normalize", 1,
                         "do_resize", 1, "image_mean", floats3(0.485, 0.456, 0.406), "image_std",
                         floats3(0.229, 0.224, 0.225), "resample", (json_int_t)3, "size",
                         "shortest_edge", (json_int_t)a->img);
    } else {
        json_t *vc = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:s,s:f}", "hidden_size", (json_int_t)a->D,
                               "num_hidden_layers", (json_int_t)a->L, "num_attention_heads",
                               (json_int_t)a->H, "intermediate_size", (json_int_t)a->I,
                               "image_size", (json_int_t)a->img, "patch_size", (json_int_t)a->patch,
                               "hidden_act", "quick_gelu", "layer_norm_eps", 1e-5);
        json_t *tc = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:s,s:f,s:I,s:I,s:I}", "hidden_size",
                               (json_int_t)a->tD, "num_hidden_layers", (json_int_t)a->tL,
                               "num_attention_heads", (json_int_t)a->tH, "intermediate_size",
                               (json_int_t)a->tI, "vocab_size", (json_int_t)a->vocab,
                               "max_position_embeddings", (json_int_t)a->ctx, "hidden_act",
                               "quick_gelu", "layer_norm_eps", 1e-5, "bos_token_id", (json_int_t)0,
                               "eos_token_id", (json_int_t)2, "pad_token_id", (json_int_t)1);
        *cfg = json_pack("{s:[s],s:s,s:I,s:f,s:o,s:o}", "architectures", "CLIPModel", "model_type",
                         "clip", "projection_dim", (json_int_t)a->proj, "logit_scale_init_value",
                         2.6592, "vision_config", vc, "text_config", tc);
        *pre = json_pack("{s:s,s:I,s:b,s:b,s:b,s:o,s:o,s:I,s:I}", "image_processor_type",
                         "CLIPImageProcessor", "crop_size", (json_int_t)a->img, "do_center_crop", 1,
                         "do_normalize", 1, "do_resize", 1, "image_mean",
                         floats3(0.48145466, 0.4578275, 0.40821073), "image_std",
                         floats3(0.26862954, 0.26130258, 0.27577711), "resample", (json_int_t)3,
                         "size", (json_int_t)a->img);
    }
    if (a->labels > 0) json_object_set_new(*cfg, "id2label", labels_json(a->labels));
}

/* splitmix64: a deterministic stream per (seed, tensor index). */
static uint64_t mix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float unif(uint64_t *s) { /* [-1, 1) */
    return (float)((mix(s) >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static bool ends(const char *s, const char *suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && strcmp(s + n - k, suf) == 0;
}

/* Fills one tensor by the role its name gives it. */
static void fill(const char *name, int ndim, const int64_t *shape, float *x, size_t n,
                 uint64_t *rng) {
    const bool norm = strstr(name, "norm") || strstr(name, "layrnorm");
    if (norm && ends(name, ".weight")) {
        for (size_t i = 0; i < n; i++) x[i] = 1.0f + 0.2f * unif(rng);
    } else if (ends(name, "running_var")) {
        for (size_t i = 0; i < n; i++) x[i] = 0.75f + 0.5f * unif(rng) * 0.5f;
    } else if (ndim >= 2 && !strstr(name, "position_embedding") && !strstr(name, "cls_token")) {
        /* uniform with variance 1/fan_in keeps activations O(1) through depth */
        size_t fan_in = 1;
        for (int d = 1; d < ndim; d++) fan_in *= (size_t)shape[d];
        if (strstr(name, "token_embedding")) fan_in = 1;
        const float a = sqrtf(3.0f / (float)fan_in);
        for (size_t i = 0; i < n; i++) x[i] = a * unif(rng);
    } else { /* biases, shifts, means, class/position embeddings */
        for (size_t i = 0; i < n; i++) x[i] = 0.1f * unif(rng);
    }
}

static mc_status add_tensor(mc_st_writer *w, const char *name, int ndim, const int64_t *shape,
                            mc_dtype dtype, uint64_t seed, int index, mc_error *err) {
    size_t n;
    if (!mc_size_prod(shape, ndim, &n))
        return MC_FAIL(err, MC_ERR_NOMEM, "%s: size overflow", name);
    float *x = mc_alloc_array(n ? n : 1, sizeof(float));
    void *buf = dtype == MC_DTYPE_F32 ? NULL : mc_alloc_array(n ? n : 1, 2);
    if (!x || (dtype != MC_DTYPE_F32 && !buf)) {
        free(x), free(buf);
        return MC_FAIL(err, MC_ERR_NOMEM, "out of memory for tensor %s", name);
    }
    uint64_t rng = seed * 0x100000001B3ull + (uint64_t)index * 0x9E3779B97F4A7C15ull + 1;
    fill(name, ndim, shape, x, n, &rng);
    if (dtype == MC_DTYPE_F16 || dtype == MC_DTYPE_BF16) {
        uint16_t *h = buf;
        for (size_t i = 0; i < n; i++)
            h[i] = dtype == MC_DTYPE_F16 ? mc_f32_to_f16(x[i]) : mc_f32_to_bf16(x[i]);
    }
    mc_status s = mc_st_writer_add(w, name, dtype, ndim, shape, buf ? buf : (void *)x, err);
    free(x), free(buf);
    return s;
}

/* The CLIP text tower's tensors (hf-models.md §3.2), which the vision loader does not declare. */
static mc_status add_clip_text(mc_st_writer *w, const arch_spec *a, mc_dtype dt, uint64_t seed,
                               int *idx, mc_error *err) {
    const int64_t D = a->tD, I = a->tI;
    const int64_t te[2] = {a->vocab, D}, pe[2] = {a->ctx, D}, dd[2] = {D, D}, d1[1] = {D},
                  id[2] = {I, D}, di[2] = {D, I}, i1[1] = {I}, tp[2] = {a->proj, D};
    char n[MC_NAME_MAX];
#define T(NAME_FMT, ND, SH, ...)                                                                   \
    do {                                                                                           \
        snprintf(n, sizeof n, NAME_FMT, __VA_ARGS__);                                              \
        MC_TRY(add_tensor(w, n, ND, SH, dt, seed, (*idx)++, err));                                 \
    } while (0)
    T("%s", 2, te, "text_model.embeddings.token_embedding.weight");
    T("%s", 2, pe, "text_model.embeddings.position_embedding.weight");
    for (int64_t l = 0; l < a->tL; l++) {
        static const char *const pr[4] = {"q_proj", "k_proj", "v_proj", "out_proj"};
        for (int k = 0; k < 4; k++) {
            T("text_model.encoder.layers.%lld.self_attn.%s.weight", 2, dd, (long long)l, pr[k]);
            T("text_model.encoder.layers.%lld.self_attn.%s.bias", 1, d1, (long long)l, pr[k]);
        }
        for (int k = 1; k <= 2; k++) {
            T("text_model.encoder.layers.%lld.layer_norm%d.weight", 1, d1, (long long)l, k);
            T("text_model.encoder.layers.%lld.layer_norm%d.bias", 1, d1, (long long)l, k);
        }
        T("text_model.encoder.layers.%lld.mlp.fc1.weight", 2, id, (long long)l);
        T("text_model.encoder.layers.%lld.mlp.fc1.bias", 1, i1, (long long)l);
        T("text_model.encoder.layers.%lld.mlp.fc2.weight", 2, di, (long long)l);
        T("text_model.encoder.layers.%lld.mlp.fc2.bias", 1, d1, (long long)l);
    }
    T("%s", 1, d1, "text_model.final_layer_norm.weight");
    T("%s", 1, d1, "text_model.final_layer_norm.bias");
    T("%s", 2, tp, "text_projection.weight");
#undef T
    /* logit_scale: the trained value of OpenAI's models, ln 100 */
    float ls = logf(100.0f);
    uint16_t h = dt == MC_DTYPE_F16 ? mc_f32_to_f16(ls) : mc_f32_to_bf16(ls);
    return mc_st_writer_add(w, "logit_scale", dt, 0, NULL,
                            dt == MC_DTYPE_F32 ? (void *)&ls : (void *)&h, err);
}

static mc_status write_json(const char *dir, const char *name, json_t *j, mc_error *err) {
    char path[4096];
    if (!mc_path_join(path, sizeof path, dir, name))
        return MC_FAIL(err, MC_ERR_ARG, "path too long: %s/%s", dir, name);
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(9));
    if (!text) return MC_FAIL(err, MC_ERR_NOMEM, "cannot serialise %s", name);
    size_t n = strlen(text);
    text[n] = '\n'; /* overwrite the NUL: the length passed below excludes it anyway */
    mc_status s = mc_write_file_atomic(path, text, n + 1, err);
    free(text);
    return s;
}

mc_status mc_model_write_random(const char *arch, uint64_t seed, mc_dtype dtype,
                                const char *out_dir, mc_error *err) {
    const arch_spec *a = NULL;
    for (size_t i = 0; i < sizeof k_archs / sizeof *k_archs; i++)
        if (strcmp(k_archs[i].name, arch) == 0) a = &k_archs[i];
    if (!a)
        return MC_FAIL(err, MC_ERR_ARG, "unknown --arch '%s' (one of: %s)", arch,
                       mc_model_random_archs());
    if (dtype != MC_DTYPE_F32 && dtype != MC_DTYPE_F16 && dtype != MC_DTYPE_BF16)
        return MC_FAIL(err, MC_ERR_ARG, "dtype must be F32, F16 or BF16");
    MC_TRY(mc_mkdir_p(out_dir, err));
    json_t *cfg = NULL, *pre = NULL;
    build_configs(a, &cfg, &pre);
    if (!cfg || !pre) {
        json_decref(cfg), json_decref(pre);
        return MC_FAIL(err, MC_ERR_NOMEM, "cannot build the config");
    }
    mc_status s = write_json(out_dir, "config.json", cfg, err);
    if (s == MC_OK) s = write_json(out_dir, "preprocessor_config.json", pre, err);
    json_decref(cfg), json_decref(pre);
    MC_TRY(s);

    char cfg_path[4096], st_path[4096];
    mc_path_join(cfg_path, sizeof cfg_path, out_dir, "config.json");
    if (!mc_path_join(st_path, sizeof st_path, out_dir, "model.safetensors"))
        return MC_FAIL(err, MC_ERR_ARG, "path too long: %s", out_dir);
    mc_model *m = NULL;
    MC_TRY(mc_model_declare(cfg_path, &m, err));
    mc_st_writer *w = NULL;
    s = mc_st_writer_create(&w, err);
    int idx = 0;
    if (s == MC_OK && strcmp(a->family, "clip") == 0)
        s = add_clip_text(w, a, dtype, seed, &idx, err);
    for (int i = 0; s == MC_OK && i < m->n_w; i++)
        s = add_tensor(w, m->w[i].name, m->w[i].ndim, m->w[i].shape, dtype, seed, idx++, err);
    if (s == MC_OK) s = mc_st_writer_add_metadata(w, "format", "pt", err);
    if (s == MC_OK) s = mc_st_writer_save(w, st_path, err);
    mc_st_writer_free(&w);
    mc_model_free(&m);
    return s;
}
