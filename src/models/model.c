/* model.c - the one loader path of every family (vision and text): family dispatch from
 * config.json, the weight table (load by name with shape checks, unknown-tensor errors,
 * F16/BF16 conversion), layer lookup, arena planning, the forward entries, hooks, pooling. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/checked.h"
#include "miclip/json.h"
#include "miclip/log.h"
#include "model_internal.h"

/* ---- declarations used by the families --------------------------------------------------- */

mc_status mc_model_adopt_desc(mc_model *m, mc_error *err) {
    const mc_model_desc *d = m->desc;
    m->w = calloc((size_t)d->n_tensors, sizeof *m->w);
    m->layers = calloc((size_t)d->n_layers, sizeof *m->layers);
    if (!m->w || !m->layers) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory declaring weights");
    const size_t np = strlen(d->base_prefix);
    for (int i = 0; i < d->n_tensors; i++) {
        const mc_desc_tensor *t = &d->tensors[i];
        mc_wentry *e = &m->w[i];
        mc_strlcpy(e->name, t->base && m->strip_base ? t->name + np : t->name, sizeof e->name);
        e->ndim = t->ndim;
        memcpy(e->shape, t->shape, sizeof e->shape);
    }
    m->n_w = d->n_tensors;
    for (int i = 0; i < d->n_layers; i++) {
        const mc_desc_layer *dl = &d->layers[i];
        mc_layer_info *l = &m->layers[i];
        if (!(l->name = mc_strdup(dl->name))) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        m->n_layers++;
        l->ndim = dl->ndim;
        memcpy(l->shape, dl->shape, sizeof l->shape);
        l->has_attention = dl->has_attention;
        l->can_start = dl->can_start;
    }
    m->in_c = (int)d->C, m->in_h = (int)d->in_h, m->in_w = (int)d->in_w;
    m->out_dim = d->out_dim;
    m->out_name = d->out_name;
    if (d->family != MC_DESC_RESNET) {
        m->tf_layers = (int)d->L, m->tf_tokens = (int)d->T;
        m->tf_width = (int)d->D, m->tf_heads = (int)d->H;
    }
    return MC_OK;
}

void mc_model_pick_prefix(mc_model *m, const mc_st_file *st, const char *probe) {
    m->strip_base = st && !mc_st_find(st, probe);
    mc_strlcpy(m->prefix, m->strip_base ? "" : m->desc->base_prefix, sizeof m->prefix);
}

void mc_wt_bind(mc_model *m, float **slot, const char *fmt, ...) {
    char name[MC_NAME_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    MC_ASSERT(n > 0 && n < (int)sizeof name && m->n_w > 0);
    /* families bind in table order, so the search starts where the last one matched */
    for (int k = 0; k < m->n_w; k++) {
        mc_wentry *e = &m->w[(m->next_bind + k) % m->n_w];
        if (strcmp(e->name, name) == 0) {
            MC_ASSERT(e->slot == NULL);
            e->slot = slot;
            m->next_bind = (m->next_bind + k + 1) % m->n_w;
            return;
        }
    }
    MC_ASSERT(!"a family binds a tensor its description does not list");
}

/* ---- create / free ---------------------------------------------------------------------- */

/* Extra tensors a folder may carry that the family does not use (hf-models.md §0). */
static bool tolerated(const mc_model *m, const char *name) {
    const size_t n = strlen(name);
    static const char *const suffixes[] = {"position_ids", "num_batches_tracked"};
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
        size_t k = strlen(suffixes[i]);
        if (n >= k && strcmp(name + n - k, suffixes[i]) == 0) return true;
    }
    if (strncmp(name, "pooler.", 7) == 0) return true;
    if (m->prefix[0] && strncmp(name, m->prefix, strlen(m->prefix)) == 0 &&
        strncmp(name + strlen(m->prefix), "pooler.", 7) == 0)
        return true;
    if (m->family == MC_FAMILY_CLIP_VISION) /* the text side of a CLIPModel folder */
        return strncmp(name, "text_model.", 11) == 0 ||
               strcmp(name, "text_projection.weight") == 0 || strcmp(name, "logit_scale") == 0;
    if (m->family == MC_FAMILY_CLIP_TEXT) /* the vision side of a CLIPModel folder */
        return strncmp(name, "vision_model.", 13) == 0 ||
               strcmp(name, "visual_projection.weight") == 0 || strcmp(name, "logit_scale") == 0;
    return false;
}

static mc_status load_weights(mc_model *m, const mc_st_file *st, mc_error *err) {
    size_t total = 0;
    size_t *offs = malloc(((size_t)m->n_w + 1) * sizeof *offs);
    if (!offs) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    for (int i = 0; i < m->n_w; i++) {
        size_t n;
        if (!mc_size_prod(m->w[i].shape, m->w[i].ndim, &n) || !mc_size_add(total, n, &total)) {
            free(offs);
            return MC_FAIL(err, MC_ERR_NOMEM, "tensor %s: size overflows", m->w[i].name);
        }
        offs[i] = total - n;
    }
    m->weights = mc_alloc_array(total ? total : 1, sizeof(float));
    if (!m->weights) {
        free(offs);
        return MC_FAIL(err, MC_ERR_NOMEM, "cannot allocate %zu floats of weights", total);
    }
    m->n_params = 0;
    for (int i = 0; i < m->n_w; i++) {
        const mc_wentry *e = &m->w[i];
        float *dst = m->weights + offs[i];
        mc_status s = mc_st_read_f32_finite(st, e->name, e->ndim, e->shape, dst, err);
        if (s != MC_OK) {
            free(offs);
            return s;
        }
        *e->slot = dst;
        m->n_params += (int64_t)(i + 1 < m->n_w ? offs[i + 1] - offs[i] : total - offs[i]);
    }
    free(offs);
    /* Every tensor in the file is either expected or a known extra. Lookups are linear in the
     * table, which is a few hundred names: negligible next to reading the weights. */
    for (int j = 0; j < mc_st_count(st); j++) {
        const mc_st_tensor *t = mc_st_at(st, j);
        bool known = tolerated(m, t->name);
        for (int i = 0; !known && i < m->n_w; i++) known = strcmp(m->w[i].name, t->name) == 0;
        if (!known)
            return MC_FAIL(err, MC_ERR_SHAPE,
                           "%s: tensor '%s' is not part of a %s model with this config.json "
                           "(HINT: is config.json from the same checkpoint? does the layer count "
                           "or layer_type match?)",
                           mc_st_path(st), t->name, m->arch);
    }
    return MC_OK;
}

static mc_status load_labels(mc_model *m, const json_t *cfg, const char *file, mc_error *err) {
    json_t *id2 = NULL;
    MC_TRY(mc_json_get_obj(cfg, "id2label", false, &id2, file, err));
    int64_t n = 2; /* PretrainedConfig's default num_labels */
    if (id2)
        n = (int64_t)json_object_size(id2);
    else
        MC_TRY(mc_json_get_int(cfg, "num_labels", false, 2, &n, file, err));
    if (n < 1 || n > 1000000)
        return MC_FAIL(err, MC_ERR_FORMAT, "%s: %lld labels is out of range", file, (long long)n);
    m->n_labels = n;
    if (!id2) return MC_OK;
    m->labels = calloc((size_t)n, sizeof *m->labels);
    if (!m->labels) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof key, "%lld", (long long)i);
        const char *s;
        MC_TRY(mc_json_get_str(id2, key, true, NULL, &s, file, err));
        m->labels[i] = mc_strdup(s);
        if (!m->labels[i]) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    return MC_OK;
}

/* What each family loads with: its description, its interface, its architecture name. */
static const struct {
    mc_desc_family df;
    const mc_family_ops *ops;
    const char *arch;
} families[MC_FAMILY_COUNT] = {
    [MC_FAMILY_VIT] = {MC_DESC_VIT, &mc_vit_ops, "ViTForImageClassification"},
    [MC_FAMILY_RESNET] = {MC_DESC_RESNET, &mc_resnet_ops, "ResNetForImageClassification"},
    [MC_FAMILY_CLIP_VISION] = {MC_DESC_CLIP_VISION, &mc_clip_vision_ops, "CLIPModel"},
    [MC_FAMILY_CLIP_TEXT] = {MC_DESC_CLIP_TEXT, &mc_clip_text_ops, "CLIPTextModelWithProjection"},
    [MC_FAMILY_MPNET] = {MC_DESC_MPNET, &mc_mpnet_ops, "MPNetModel"},
};

/* Sets family f (its interface and architecture name) and builds its description. */
static mc_status set_family(mc_model *m, const json_t *cfg, const char *file, mc_family f,
                            const char *arch, mc_error *err) {
    m->family = f;
    m->ops = families[f].ops;
    mc_strlcpy(m->arch, arch ? arch : families[f].arch, sizeof m->arch);
    return mc_model_desc_build(cfg, file, families[f].df, &m->desc, err);
}

/* The vision family from config.json: architectures[0], else model_type. (The text families
 * are chosen by their caller, text.h, from the same folders.) */
static mc_status detect_family(const json_t *cfg, const char *file, mc_model *m, mc_error *err) {
    const char *arch = NULL, *mt = NULL;
    json_t *archs = NULL;
    MC_TRY(mc_json_get_array(cfg, "architectures", false, &archs, file, err));
    if (archs && json_array_size(archs) > 0 && json_is_string(json_array_get(archs, 0)))
        arch = json_string_value(json_array_get(archs, 0));
    MC_TRY(mc_json_get_str(cfg, "model_type", false, NULL, &mt, file, err));
    static const struct {
        const char *arch, *model_type;
        mc_family f;
    } table[] = {
        {"ViTForImageClassification", "vit", MC_FAMILY_VIT},
        {"ResNetForImageClassification", "resnet", MC_FAMILY_RESNET},
        {"CLIPModel", "clip", MC_FAMILY_CLIP_VISION},
        {"CLIPVisionModelWithProjection", "clip_vision_model", MC_FAMILY_CLIP_VISION},
    };
    for (size_t i = 0; i < sizeof table / sizeof *table; i++) {
        if ((arch && strcmp(arch, table[i].arch) == 0) ||
            (!arch && mt && strcmp(mt, table[i].model_type) == 0))
            return set_family(m, cfg, file, table[i].f, table[i].arch, err);
    }
    return MC_FAIL(err, MC_ERR_UNSUPPORTED,
                   "%s: architecture '%s' (model_type '%s') is not supported; supported: "
                   "ViTForImageClassification, ResNetForImageClassification, CLIPModel, "
                   "CLIPVisionModelWithProjection",
                   file, arch ? arch : "(none)", mt ? mt : "(none)");
}

/* Every tensor of the description is used by the family's forward. */
static mc_status check_bound(const mc_model *m, mc_error *err) {
    for (int i = 0; i < m->n_w; i++)
        if (!m->w[i].slot)
            return MC_FAIL(err, MC_ERR_INTERNAL, "%s: tensor %s is described but never bound",
                           m->arch, m->w[i].name);
    return MC_OK;
}

/* The one loader path: config.json, the family (detected among the vision families when f is
 * negative) and its description, the family's load (it binds the weight table), then, when
 * st_path is given, the weights and the family's finish. Without st_path the model is only
 * declared. */
static mc_status load(const char *cfg_path, const char *st_path, int f, mc_model **out,
                      mc_error *err) {
    *out = NULL;
    mc_model *m = calloc(1, sizeof *m);
    if (!m) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    json_t *cfg = NULL;
    mc_st_file *st = NULL;
    mc_status s = mc_json_load(cfg_path, false, &cfg, err);
    if (s == MC_OK)
        s = f < 0 ? detect_family(cfg, cfg_path, m, err)
                  : set_family(m, cfg, cfg_path, (mc_family)f, NULL, err);
    if (s == MC_OK && st_path) s = mc_st_open(st_path, &st, err);
    if (s == MC_OK) s = m->ops->load(m, cfg, cfg_path, st, err);
    if (s == MC_OK) s = check_bound(m, err);
    if (s == MC_OK && st) s = load_weights(m, st, err);
    if (s == MC_OK && st && m->ops->finish) s = m->ops->finish(m, err);
    mc_st_close(&st);
    json_decref(cfg);
    if (s != MC_OK) {
        mc_model_free(&m);
        return s;
    }
    *out = m;
    return MC_OK;
}

mc_status mc_model_declare(const char *cfg_path, mc_model **out, mc_error *err) {
    return load(cfg_path, NULL, -1, out, err);
}

mc_status mc_model_declare_dir(const char *dir, mc_model **out, mc_error *err) {
    *out = NULL;
    char cfg_path[4096];
    if (!mc_snprintf(cfg_path, sizeof cfg_path, "%s/config.json", dir))
        return MC_FAIL(err, MC_ERR_ARG, "model folder path too long: %s", dir);
    return mc_model_declare(cfg_path, out, err);
}

/* The folder's two files; f as in load(). */
static mc_status create(const char *dir, int f, mc_model **out, mc_error *err) {
    *out = NULL;
    char cfg_path[4096], st_path[4096];
    if (!mc_snprintf(cfg_path, sizeof cfg_path, "%s/config.json", dir) ||
        !mc_snprintf(st_path, sizeof st_path, "%s/model.safetensors", dir))
        return MC_FAIL(err, MC_ERR_ARG, "model folder path too long: %s", dir);
    mc_debug("loading model %s", dir);
    return load(cfg_path, st_path, f, out, err);
}

mc_status mc_model_create(const char *dir, mc_model **out, mc_error *err) {
    mc_trace_load("load model %s", dir);
    return create(dir, -1, out, err);
}

mc_status mc_model_create_family(const char *dir, mc_family f, mc_model **out, mc_error *err) {
    *out = NULL;
    if ((int)f < 0 || f >= MC_FAMILY_COUNT)
        return MC_FAIL(err, MC_ERR_ARG, "%s: no model family %d", dir, (int)f);
    /* the text encoders trace their loads as such (text.h) */
    if (!families[f].ops->forward_tokens) mc_trace_load("load model %s", dir);
    return create(dir, (int)f, out, err);
}

void mc_model_free(mc_model **mp) {
    if (!mp || !*mp) return;
    mc_model *m = *mp;
    if (m->ops && m->ops->free_impl) m->ops->free_impl(m->impl);
    for (int i = 0; i < m->n_layers; i++) free((char *)m->layers[i].name);
    free(m->layers);
    if (m->labels)
        for (int64_t i = 0; i < m->n_labels; i++) free(m->labels[i]);
    free(m->labels);
    free(m->w);
    free(m->weights);
    free(m->arena);
    mc_model_desc_free(&m->desc);
    free(m);
    *mp = NULL;
}

/* Shared by the families: labels are read after the family knows its config object. */
mc_status mc_model_load_labels(mc_model *m, const json_t *cfg, const char *file, mc_error *err);
mc_status mc_model_load_labels(mc_model *m, const json_t *cfg, const char *file, mc_error *err) {
    return load_labels(m, cfg, file, err);
}

/* ---- getters ----------------------------------------------------------------------------- */

mc_family mc_model_family(const mc_model *m) { return m->family; }
const char *mc_family_name(mc_family f) {
    switch (f) {
    case MC_FAMILY_VIT: return "vit";
    case MC_FAMILY_RESNET: return "resnet";
    case MC_FAMILY_CLIP_VISION: return "clip_vision";
    case MC_FAMILY_CLIP_TEXT: return "clip_text";
    case MC_FAMILY_MPNET: return "mpnet";
    default: return "?";
    }
}
const char *mc_model_architecture(const mc_model *m) { return m->arch; }
int64_t mc_model_param_count(const mc_model *m) { return m->n_params; }
void mc_model_input_size(const mc_model *m, int *c, int *h, int *w) {
    if (c) *c = m->in_c;
    if (h) *h = m->in_h;
    if (w) *w = m->in_w;
}
int64_t mc_model_output_dim(const mc_model *m) { return m->out_dim; }
int64_t mc_model_vocab_size(const mc_model *m) { return m->desc->vocab; }
const char *mc_model_output_name(const mc_model *m) { return m->out_name; }
const char *mc_model_label(const mc_model *m, int64_t i) {
    return (m->labels && i >= 0 && i < m->n_labels) ? m->labels[i] : NULL;
}
void mc_model_transformer_dims(const mc_model *m, int *layers, int *tokens, int *width,
                               int *heads) {
    if (layers) *layers = m->tf_layers;
    if (tokens) *tokens = m->tf_tokens;
    if (width) *width = m->tf_width;
    if (heads) *heads = m->tf_heads;
}
int mc_model_layer_count(const mc_model *m) { return m->n_layers; }
const mc_layer_info *mc_model_layer(const mc_model *m, int i) {
    return (i >= 0 && i < m->n_layers) ? &m->layers[i] : NULL;
}

mc_status mc_model_find_layer(const mc_model *m, const char *name, int *index, mc_error *err) {
    /* the description resolves aliases; the model's layer list is the description's */
    const int i = mc_model_desc_find_layer(m->desc, name);
    *index = i;
    if (i >= 0) return MC_OK;
    return MC_FAIL(err, MC_ERR_ARG,
                   "layer '%s' does not exist in this %s model (e.g. '%s', '%s', '%s'; "
                   "`miclip info MODEL_DIR` lists them all)",
                   name, m->arch, m->layers[0].name, m->layers[m->n_layers / 2].name,
                   m->layers[m->n_layers - 1].name);
}

size_t mc_model_arena_bytes(const mc_model *m, int64_t B) {
    return mc_model_desc_arena_floats(m->desc, B, m->in_h, m->in_w) * sizeof(float);
}

mc_status mc_model_plan(mc_model *m, int64_t B, int64_t H, int64_t W, mc_error *err) {
    if (B < 1 || B > 1 << 20 || H < 1 || W < 1 || H > 4096 || W > 4096)
        return MC_FAIL(err, MC_ERR_ARG, "cannot plan a batch of %lld images of %lldx%lld",
                       (long long)B, (long long)H, (long long)W);
    if (B <= m->plan_B && H == m->plan_H && W == m->plan_W) return MC_OK;
    size_t n = mc_model_desc_arena_floats(m->desc, B, H, W);
    if (m->ops->set_input) m->ops->set_input(m, H, W);
    free(m->arena);
    m->arena = mc_alloc_array(n, sizeof(float));
    m->arena_floats = m->arena ? n : 0;
    m->plan_B = m->arena ? B : 0, m->plan_H = H, m->plan_W = W;
    if (!m->arena)
        return MC_FAIL(err, MC_ERR_NOMEM,
                       "cannot allocate the %zu-byte activation arena for a "
                       "batch of %lld",
                       n * sizeof(float), (long long)B);
    return MC_OK;
}

/* ---- forward ----------------------------------------------------------------------------- */

bool mc_run_point(mc_run *r, int i, float *data) {
    if (r->hooked[i] & 1) {
        const mc_layer_info *l = &r->m->layers[i];
        mc_hook_view v = {.name = l->name, .layer = i, .ndim = l->ndim + 1, .data = data};
        v.shape[0] = r->B;
        for (int d = 0; d < l->ndim; d++) v.shape[d + 1] = l->shape[d];
        for (int h = 0; h < r->o->n_hooks; h++) {
            const mc_hook *hk = &r->o->hooks[h];
            int idx;
            if (hk->mode == MC_HOOK_ATTN ||
                mc_model_find_layer(r->m, hk->name, &idx, NULL) != MC_OK || idx != i)
                continue;
            if (!hk->fn(&v, hk->user)) {
                r->stopped = true;
                return false;
            }
        }
    }
    if (!r->need_output && i >= r->deepest) {
        r->stopped = true;
        return false;
    }
    return true;
}

bool mc_run_attn(mc_run *r, int i, float *probs, int64_t H, int64_t T) {
    const mc_layer_info *l = &r->m->layers[i];
    mc_hook_view v = {.name = l->name, .layer = i, .ndim = 4, .data = probs};
    v.shape[0] = r->B, v.shape[1] = H, v.shape[2] = T, v.shape[3] = T;
    for (int h = 0; h < r->o->n_hooks; h++) {
        const mc_hook *hk = &r->o->hooks[h];
        int idx;
        if (hk->mode != MC_HOOK_ATTN || mc_model_find_layer(r->m, hk->name, &idx, NULL) != MC_OK ||
            idx != i)
            continue;
        if (!hk->fn(&v, hk->user)) {
            r->stopped = true;
            return false;
        }
    }
    return true;
}

mc_status mc_model_forward(mc_model *m, const float *pixels, int64_t B, int64_t H, int64_t W,
                           const mc_forward_opts *opts, float *output, bool *stopped,
                           mc_error *err) {
    static const mc_forward_opts none = {0};
    const mc_forward_opts *o = opts ? opts : &none;
    if (stopped) *stopped = false;
    if (!m->ops->forward)
        return MC_FAIL(err, MC_ERR_ARG, "%s: a %s model takes token ids, not images", m->arch,
                       mc_family_name(m->family));
    if (B < 1 || B > 1 << 20)
        return MC_FAIL(err, MC_ERR_ARG, "batch size %lld out of range", (long long)B);
    if (m->any_size) {
        if (H < 32 || W < 32 || H > 4096 || W > 4096)
            return MC_FAIL(err, MC_ERR_ARG, "%s: input %lldx%lld out of range (32..4096)", m->arch,
                           (long long)H, (long long)W);
    } else if (H != m->in_h || W != m->in_w) {
        return MC_FAIL(err, MC_ERR_ARG,
                       "%s: input is %lldx%lld but the model takes %dx%d (image_size in "
                       "config.json; position embeddings are not interpolated)",
                       m->arch, (long long)H, (long long)W, m->in_h, m->in_w);
    }
    mc_run r = {.m = m, .o = o, .B = B, .start = -1, .deepest = -1, .need_output = output != NULL};
    r.hooked = calloc((size_t)m->n_layers, 1);
    if (!r.hooked) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    mc_status s = MC_OK;
    for (int h = 0; h < o->n_hooks && s == MC_OK; h++) {
        int idx;
        const mc_hook *hk = &o->hooks[h];
        if (!hk->name || !hk->fn) {
            s = MC_FAIL(err, MC_ERR_ARG, "hook %d has no name or no callback", h);
            break;
        }
        s = mc_model_find_layer(m, hk->name, &idx, err);
        if (s != MC_OK) break;
        if (hk->mode == MC_HOOK_ATTN && !m->layers[idx].has_attention) {
            s = MC_FAIL(err, MC_ERR_ARG,
                        "layer '%s' has no attention probabilities (use a block "
                        "name \"1\"..\"%d\")",
                        hk->name, m->tf_layers);
            break;
        }
        r.hooked[idx] |= hk->mode == MC_HOOK_ATTN ? 2 : 1;
        if (idx > r.deepest) r.deepest = idx;
    }
    if (s == MC_OK && o->start_at) {
        s = mc_model_find_layer(m, o->start_at, &r.start, err);
        if (s == MC_OK && !m->layers[r.start].can_start)
            s = MC_FAIL(err, MC_ERR_UNSUPPORTED, "a forward cannot start at layer '%s'",
                        o->start_at);
        if (s == MC_OK && !o->start_state)
            s = MC_FAIL(err, MC_ERR_ARG, "start_at '%s' given without start_state", o->start_at);
        for (int i = 0; s == MC_OK && i < r.start; i++)
            if (r.hooked[i])
                s = MC_FAIL(err, MC_ERR_ARG,
                            "hook on layer '%s' comes before start_at '%s' and would never run",
                            m->layers[i].name, o->start_at);
    }
    if (s == MC_OK && !output && r.deepest < 0)
        s = MC_FAIL(err, MC_ERR_ARG,
                    "forward with neither an output buffer nor a hook does nothing");
    /* Plan the arena: once per batch size (and input size), kept for smaller batches. */
    if (s == MC_OK && (B > m->plan_B || H != m->plan_H || W != m->plan_W))
        s = mc_model_plan(m, B, H, W, err);
    if (s == MC_OK) s = m->ops->forward(m, &r, pixels, B, H, W, output, err);
    if (stopped) *stopped = r.stopped;
    free(r.hooked);
    return s;
}

mc_status mc_model_forward_tokens(mc_model *m, const int32_t *ids, const int32_t *lens, size_t n,
                                  int64_t ctx, int32_t eos, float *output, mc_error *err) {
    if (!m->ops->forward_tokens)
        return MC_FAIL(err, MC_ERR_ARG, "%s: a %s model takes images, not token ids", m->arch,
                       mc_family_name(m->family));
    if (!m->weights) return MC_FAIL(err, MC_ERR_ARG, "%s: a declared model cannot run", m->arch);
    return m->ops->forward_tokens(m, ids, lens, n, ctx, eos, output, err);
}

/* ---- pooling of hooked tensors ------------------------------------------------------------ */

int64_t mc_pool_dim(const mc_hook_view *v, mc_pool p) {
    int64_t per = 1;
    for (int d = 1; d < v->ndim; d++) per *= v->shape[d];
    if (v->ndim == 2 || p == MC_POOL_ALL) return per;
    if (v->ndim == 3) return v->shape[2];                         /* [B, T, D] */
    if (v->ndim == 4) return p == MC_POOL_MEAN ? v->shape[1] : 0; /* [B, C, H, W]: no CLS */
    return 0;
}

void mc_pool_apply(const mc_hook_view *v, mc_pool p, float *out) {
    const int64_t B = v->shape[0];
    int64_t per = 1;
    for (int d = 1; d < v->ndim; d++) per *= v->shape[d];
    if (v->ndim == 2 || p == MC_POOL_ALL) {
        memcpy(out, v->data, (size_t)(B * per) * sizeof(float));
    } else if (v->ndim == 3) {
        const int64_t T = v->shape[1], D = v->shape[2];
        if (p == MC_POOL_CLS)
            for (int64_t b = 0; b < B; b++)
                memcpy(out + b * D, v->data + b * T * D, (size_t)D * sizeof(float));
        else
            mc_token_mean(v->data, B, T, D, T > 1 ? 1 : 0, out);
    } else {
        MC_ASSERT(v->ndim == 4 && p == MC_POOL_MEAN);
        mc_spatial_mean(v->data, B, v->shape[1], v->shape[2] * v->shape[3], out);
    }
}

mc_status mc_pool_parse(const char *s, mc_pool *out, mc_error *err) {
    if (strcmp(s, "all") == 0)
        *out = MC_POOL_ALL;
    else if (strcmp(s, "cls") == 0)
        *out = MC_POOL_CLS;
    else if (strcmp(s, "mean") == 0)
        *out = MC_POOL_MEAN;
    else
        return MC_FAIL(err, MC_ERR_ARG, "pool '%s' is not one of all, cls, mean", s);
    return MC_OK;
}
