/* resnet.c - ResNetForImageClassification (microsoft/resnet-50 layout, ResNet v1.5 bottleneck):
 * stem conv 7x7/2 + BN + act, max pool 3x3/2, stages of bottleneck layers, spatial mean,
 * classifier. BatchNorm (eval, eps 1e-5 as nn.BatchNorm2d) is folded into each convolution at
 * load: w' = w * g/sqrt(var+eps), b' = beta - mean * g/sqrt(var+eps). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/checked.h"
#include "model_internal.h"

mc_status mc_model_load_labels(mc_model *m, const json_t *cfg, const char *file, mc_error *err);

#define RESNET_MAX_STAGES 16
#define BN_EPS 1e-5f /* nn.BatchNorm2d default; HF's ResNetConvLayer does not change it */

typedef struct {
    mc_conv_desc d;
    float *w, *b;                 /* w is folded in place; b points into the bias block */
    float *g, *beta, *mean, *var; /* BN parameters as loaded */
} conv_bn;

typedef struct {
    conv_bn a, b, c, sc; /* layer.0 (1x1), layer.1 (3x3), layer.2 (1x1), shortcut (1x1) */
    bool has_sc;
    int idx_sc, idx_a, idx_b, idx_c, idx_out, idx_stage; /* idx_stage -1 unless last in stage */
} bneck;

typedef struct {
    int64_t C, E, n_stages, hs[RESNET_MAX_STAGES], depth[RESNET_MAX_STAGES], n_out;
    bool ds_first, ds_bneck;
    mc_act act;
    conv_bn stem;
    bneck *lay;
    int n_lay;
    int idx_stem, idx_emb, idx_pool, idx_logits;
    float *fc_w, *fc_b;
    float *biases;        /* folded biases of every conv */
    int64_t cur_h, cur_w; /* the input size the layer shapes describe */
} resnet_impl;

static void resnet_free(void *p) {
    resnet_impl *r = p;
    if (r) free(r->lay), free(r->biases);
    free(r);
}

/* Binds one conv + BN's tensors under path; the conv's sizes are the description's. */
static void bind_conv_bn(mc_model *m, conv_bn *cb, int64_t cin, int64_t cout, int64_t k,
                         int64_t stride, const char *path) {
    cb->d =
        (mc_conv_desc){.cin = cin, .cout = cout, .kh = k, .kw = k, .stride = stride, .pad = k / 2};
    mc_wt_bind(m, &cb->w, "%s.convolution.weight", path);
    mc_wt_bind(m, &cb->g, "%s.normalization.weight", path);
    mc_wt_bind(m, &cb->beta, "%s.normalization.bias", path);
    mc_wt_bind(m, &cb->mean, "%s.normalization.running_mean", path);
    mc_wt_bind(m, &cb->var, "%s.normalization.running_var", path);
}

/* Sets the [C, H, W] of every layer for an Hi x Wi input (the description computes them). */
static void set_shapes(mc_model *m, int64_t Hi, int64_t Wi) {
    resnet_impl *r = m->impl;
    if (r->cur_h == Hi && r->cur_w == Wi) return;
    mc_model_desc_set_input(m->desc, Hi, Wi);
    for (int i = 0; i < m->n_layers; i++)
        memcpy(m->layers[i].shape, m->desc->layers[i].shape, sizeof m->layers[i].shape);
    r->cur_h = Hi, r->cur_w = Wi;
}

/* The index of a layer the description must list. */
static int idx_of(const mc_model *m, const char *name) {
    const int i = mc_model_desc_layer_index(m->desc, name);
    MC_ASSERT(i >= 0);
    return i;
}

static mc_status resnet_load(mc_model *m, const json_t *cfg, const char *f, const mc_st_file *st,
                             mc_error *err) {
    resnet_impl *r = calloc(1, sizeof *r);
    if (!r) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    m->impl = r;
    const mc_model_desc *d = m->desc;
    MC_ASSERT(d->n_stages <= RESNET_MAX_STAGES);
    r->C = d->C, r->E = d->E, r->n_stages = d->n_stages, r->act = d->act;
    r->ds_first = d->ds_first, r->ds_bneck = d->ds_bneck;
    for (int s = 0; s < d->n_stages; s++) r->hs[s] = d->hs[s], r->depth[s] = d->depth[s];
    MC_TRY(mc_model_load_labels(m, cfg, f, err));
    r->n_out = d->out_dim;
    mc_model_pick_prefix(m, st, "resnet.embedder.embedder.convolution.weight");
    MC_TRY(mc_model_adopt_desc(m, err));
    const char *p = m->prefix;

    char path[MC_NAME_MAX], name[MC_NAME_MAX];
    snprintf(path, sizeof path, "%sembedder.embedder", p);
    bind_conv_bn(m, &r->stem, r->C, r->E, 7, 2, path);
    r->idx_stem = idx_of(m, "embedder.embedder");
    r->idx_emb = idx_of(m, "embedder");
    for (int s = 0; s < r->n_stages; s++) r->n_lay += (int)r->depth[s];
    r->lay = calloc((size_t)r->n_lay, sizeof *r->lay);
    if (!r->lay) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    int j = 0;
    int64_t in = r->E;
    for (int s = 0; s < r->n_stages; s++) {
        const int64_t out = r->hs[s], mid = out / 4; /* reduction 4 */
        for (int l = 0; l < r->depth[s]; l++, j++) {
            bneck *L = &r->lay[j];
            const int64_t cin = l == 0 ? in : out;
            const int64_t stride = (l == 0 && (s > 0 || r->ds_first)) ? 2 : 1;
            L->has_sc = cin != out || stride != 1;
#define PATH(...) snprintf(path, sizeof path, __VA_ARGS__)
            if (L->has_sc) {
                PATH("%sencoder.stages.%d.layers.%d.shortcut", p, s, l);
                bind_conv_bn(m, &L->sc, cin, out, 1, stride, path);
            }
            /* v1.5: the stride sits on the 3x3 unless downsample_in_bottleneck */
            PATH("%sencoder.stages.%d.layers.%d.layer.0", p, s, l);
            bind_conv_bn(m, &L->a, cin, mid, 1, r->ds_bneck ? stride : 1, path);
            PATH("%sencoder.stages.%d.layers.%d.layer.1", p, s, l);
            bind_conv_bn(m, &L->b, mid, mid, 3, r->ds_bneck ? 1 : stride, path);
            PATH("%sencoder.stages.%d.layers.%d.layer.2", p, s, l);
            bind_conv_bn(m, &L->c, mid, out, 1, 1, path);
#undef PATH
            snprintf(name, sizeof name, "stages.%d.layers.%d.shortcut", s, l);
            L->idx_sc = idx_of(m, name);
            snprintf(name, sizeof name, "stages.%d.layers.%d.layer.0", s, l);
            L->idx_a = idx_of(m, name);
            snprintf(name, sizeof name, "stages.%d.layers.%d.layer.1", s, l);
            L->idx_b = idx_of(m, name);
            snprintf(name, sizeof name, "stages.%d.layers.%d.layer.2", s, l);
            L->idx_c = idx_of(m, name);
            snprintf(name, sizeof name, "stages.%d.layers.%d", s, l);
            L->idx_out = idx_of(m, name);
            L->idx_stage = -1;
            if (l == r->depth[s] - 1) {
                snprintf(name, sizeof name, "stages.%d", s);
                L->idx_stage = idx_of(m, name);
            }
        }
        in = out;
    }
    r->idx_pool = idx_of(m, "pooler");
    r->idx_logits = idx_of(m, "logits");
    mc_wt_bind(m, &r->fc_w, "classifier.1.weight");
    mc_wt_bind(m, &r->fc_b, "classifier.1.bias");
    m->any_size = true;
    r->cur_h = d->in_h, r->cur_w = d->in_w; /* the description's shapes are for 224 x 224 */
    return MC_OK;
}

/* Every conv_bn in forward order (stem, then per layer shortcut, a, b, c). */
static int all_convs(resnet_impl *r, conv_bn **out) {
    int n = 0;
    if (out) out[n] = &r->stem;
    n++;
    for (int j = 0; j < r->n_lay; j++) {
        bneck *L = &r->lay[j];
        if (L->has_sc) {
            if (out) out[n] = &L->sc;
            n++;
        }
        if (out) out[n] = &L->a, out[n + 1] = &L->b, out[n + 2] = &L->c;
        n += 3;
    }
    return n;
}

static mc_status resnet_finish(mc_model *m, mc_error *err) {
    resnet_impl *r = m->impl;
    const int n = all_convs(r, NULL);
    conv_bn **cv = malloc((size_t)n * sizeof *cv);
    if (!cv) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    all_convs(r, cv);
    size_t nb = 0;
    for (int i = 0; i < n; i++) nb += (size_t)cv[i]->d.cout;
    r->biases = malloc(nb * sizeof(float));
    if (!r->biases) {
        free(cv);
        return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        conv_bn *c = cv[i];
        c->b = r->biases + o;
        o += (size_t)c->d.cout;
        mc_bn_fold(c->w, c->b, NULL, c->g, c->beta, c->mean, c->var, BN_EPS, c->d.cout,
                   c->d.cin * c->d.kh * c->d.kw);
    }
    free(cv);
    return MC_OK;
}

static void resnet_set_input(mc_model *m, int64_t H, int64_t W) { set_shapes(m, H, W); }

static mc_status resnet_forward(mc_model *m, mc_run *run, const float *px, int64_t B, int64_t H,
                                int64_t W, float *output, mc_error *err) {
    resnet_impl *r = m->impl;
    set_shapes(m, H, W);
    size_t act, wk; /* the arena's layout (mc_model_desc_arena_floats) */
    mc_desc_resnet_buffers(m->desc, H, W, &act, &wk);
    const int64_t A = (int64_t)act;
    float *X = m->arena, *Y = X + B * A, *T1 = Y + B * A, *T2 = T1 + B * A;
    float *S0 = T2 + B * A, *work = S0 + B * A, *pooled = work + wk;
    const int64_t Cf = r->hs[r->n_stages - 1];
    float *logits = pooled + B * Cf;
    const mc_layer_info *Ls = m->layers;
#define HW(i) Ls[i].shape[1], Ls[i].shape[2]
    int64_t h, w;

    const int start = run->start;
    if (start < 0) {
        /* stem: act(BN(conv7x7/2(x))), then max pool 3x3/2 pad 1 */
        mc_conv2d(&r->stem.d, px, B, H, W, r->stem.w, r->stem.b, 0.0f, r->act, S0, work);
        if (!mc_run_point(run, r->idx_stem, S0)) return MC_OK;
        mc_maxpool2d(S0, B, r->E, HW(r->idx_stem), 3, 2, 1, X);
        if (!mc_run_point(run, r->idx_emb, X)) return MC_OK;
    } else {
        const mc_layer_info *l = &Ls[start];
        memcpy(X, run->o->start_state,
               (size_t)(B * l->shape[0] * l->shape[1] * l->shape[2]) * sizeof(float));
        if (!mc_run_point(run, start, X)) return MC_OK;
    }
    h = Ls[r->idx_emb].shape[1], w = Ls[r->idx_emb].shape[2];
    for (int j = 0; j < r->n_lay; j++) {
        const bneck *L = &r->lay[j];
        if (start >= L->idx_out) { /* prefix cache: this layer is before the start point */
            if (start == L->idx_out && L->idx_stage >= 0 && !mc_run_point(run, L->idx_stage, X))
                return MC_OK;
            h = Ls[L->idx_out].shape[1], w = Ls[L->idx_out].shape[2];
            continue;
        }
        /* residual = shortcut(x): strided 1x1 conv + BN, or the identity (copied, so a write
         * hook on it edits only the residual branch) */
        if (L->has_sc)
            mc_conv2d(&L->sc.d, X, B, h, w, L->sc.w, L->sc.b, 0.0f, MC_ACT_NONE, Y, work);
        else
            memcpy(Y, X, (size_t)(B * L->c.d.cout * h * w) * sizeof(float));
        if (!mc_run_point(run, L->idx_sc, Y)) return MC_OK;
        mc_conv2d(&L->a.d, X, B, h, w, L->a.w, L->a.b, 0.0f, r->act, T1, work); /* 1x1 */
        if (!mc_run_point(run, L->idx_a, T1)) return MC_OK;
        mc_conv2d(&L->b.d, T1, B, HW(L->idx_a), L->b.w, L->b.b, 0.0f, r->act, T2, work); /* 3x3 */
        if (!mc_run_point(run, L->idx_b, T2)) return MC_OK;
        if (mc_run_wants(run, L->idx_c)) {
            mc_conv2d(&L->c.d, T2, B, HW(L->idx_b), L->c.w, L->c.b, 0.0f, MC_ACT_NONE, T1, work);
            if (!mc_run_point(run, L->idx_c, T1)) return MC_OK;
            const size_t n =
                (size_t)(B * L->c.d.cout) * (size_t)(Ls[L->idx_c].shape[1] * Ls[L->idx_c].shape[2]);
            mc_add_inplace(Y, T1, n);
            mc_act_apply(r->act, Y, n);
        } else {
            /* out = act(BN(conv1x1(h)) + residual): the sgemm accumulates onto the residual */
            mc_conv2d(&L->c.d, T2, B, HW(L->idx_b), L->c.w, L->c.b, 1.0f, r->act, Y, work);
            if (!mc_run_point(run, L->idx_c, Y)) return MC_OK; /* only the stop rule applies */
        }
        if (!mc_run_point(run, L->idx_out, Y)) return MC_OK;
        if (L->idx_stage >= 0 && !mc_run_point(run, L->idx_stage, Y)) return MC_OK;
        float *t = X;
        X = Y, Y = t;
        h = Ls[L->idx_out].shape[1], w = Ls[L->idx_out].shape[2];
    }
    /* pooler: AdaptiveAvgPool2d(1) -> [B, Cf, 1, 1]; logits = classifier.1(flatten) */
    mc_spatial_mean(X, B, Cf, h * w, pooled);
    if (!mc_run_point(run, r->idx_pool, pooled)) return MC_OK;
    mc_linear(pooled, r->fc_w, r->fc_b, logits, B, Cf, r->n_out, false);
    if (!mc_run_point(run, r->idx_logits, logits)) return MC_OK;
    if (output) memcpy(output, logits, (size_t)(B * r->n_out) * sizeof(float));
#undef HW
    (void)err;
    return MC_OK;
}

const mc_family_ops mc_resnet_ops = {.load = resnet_load,
                                     .finish = resnet_finish,
                                     .set_input = resnet_set_input,
                                     .forward = resnet_forward,
                                     .free_impl = resnet_free};
