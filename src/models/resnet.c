/* resnet.c - ResNetForImageClassification (microsoft/resnet-50 layout, ResNet v1.5 bottleneck):
 * stem conv 7x7/2 + BN + act, max pool 3x3/2, stages of bottleneck layers, spatial mean,
 * classifier. BatchNorm (eval, eps 1e-5 as nn.BatchNorm2d) is folded into each convolution at
 * load: w' = w * g/sqrt(var+eps), b' = beta - mean * g/sqrt(var+eps). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/checked.h"
#include "miclip/json.h"
#include "model_internal.h"

mc_status mc_model_load_labels(mc_model *m, const json_t *cfg, const char *file, mc_error *err);

#define RESNET_MAX_STAGES 16
#define BN_EPS 1e-5f /* nn.BatchNorm2d default; HF's ResNetConvLayer does not change it */

typedef struct {
    mc_conv_desc d;
    float *w, *b;                  /* w is folded in place; b points into the bias block */
    float *g, *beta, *mean, *var;  /* BN parameters as loaded */
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
    float *biases; /* folded biases of every conv */
    int64_t cur_h, cur_w; /* the input size the layer shapes describe */
} resnet_impl;

static void resnet_free(void *p) {
    resnet_impl *r = p;
    if (r) free(r->lay), free(r->biases);
    free(r);
}

static mc_status declare_conv_bn(mc_model *m, conv_bn *cb, int64_t cin, int64_t cout, int64_t k,
                                 int64_t stride, const char *path, mc_error *err) {
    cb->d = (mc_conv_desc){.cin = cin, .cout = cout, .kh = k, .kw = k, .stride = stride, .pad = k / 2};
    const int64_t ws[4] = {cout, cin, k, k};
    MC_TRY(mc_wt_add(m, &cb->w, 4, ws, err, "%s.convolution.weight", path));
    MC_TRY(mc_wt_add(m, &cb->g, 1, &cout, err, "%s.normalization.weight", path));
    MC_TRY(mc_wt_add(m, &cb->beta, 1, &cout, err, "%s.normalization.bias", path));
    MC_TRY(mc_wt_add(m, &cb->mean, 1, &cout, err, "%s.normalization.running_mean", path));
    MC_TRY(mc_wt_add(m, &cb->var, 1, &cout, err, "%s.normalization.running_var", path));
    return MC_OK;
}

static int add_layer(mc_model *m, const char *name, int64_t c, bool can_start) {
    const int64_t shape[3] = {c, 1, 1}; /* spatial sizes are set per input size (set_shapes) */
    return mc_model_add_layer(m, name, 3, shape, false, can_start);
}

/* Sets the [C, H, W] of every layer for an Hi x Wi input. */
static void set_shapes(mc_model *m, int64_t Hi, int64_t Wi) {
    resnet_impl *r = m->impl;
    if (r->cur_h == Hi && r->cur_w == Wi) return;
    int64_t h = mc_conv_out_size(Hi, 7, 2, 3), w = mc_conv_out_size(Wi, 7, 2, 3);
    m->layers[r->idx_stem].shape[1] = h, m->layers[r->idx_stem].shape[2] = w;
    h = mc_conv_out_size(h, 3, 2, 1), w = mc_conv_out_size(w, 3, 2, 1);
    m->layers[r->idx_emb].shape[1] = h, m->layers[r->idx_emb].shape[2] = w;
    for (int j = 0; j < r->n_lay; j++) {
        bneck *L = &r->lay[j];
        const int64_t ha = mc_conv_out_size(h, 1, L->a.d.stride, 0), wa = mc_conv_out_size(w, 1, L->a.d.stride, 0);
        const int64_t hb = mc_conv_out_size(ha, 3, L->b.d.stride, 1), wb = mc_conv_out_size(wa, 3, L->b.d.stride, 1);
        const int idx[6] = {L->idx_sc, L->idx_a, L->idx_b, L->idx_c, L->idx_out, L->idx_stage};
        const int64_t hh[6] = {hb, ha, hb, hb, hb, hb}, ww[6] = {wb, wa, wb, wb, wb, wb};
        for (int k = 0; k < 6; k++)
            if (idx[k] >= 0) m->layers[idx[k]].shape[1] = hh[k], m->layers[idx[k]].shape[2] = ww[k];
        h = hb, w = wb;
    }
    r->cur_h = Hi, r->cur_w = Wi;
}

static mc_status resnet_load(mc_model *m, const json_t *cfg, const char *f, const mc_st_file *st,
                             mc_error *err) {
    resnet_impl *r = calloc(1, sizeof *r);
    if (!r) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    m->impl = r;
    const char *lt;
    int n1 = 0, n2 = 0;
    MC_TRY(mc_json_get_int(cfg, "num_channels", false, 3, &r->C, f, err));
    MC_TRY(mc_json_get_int(cfg, "embedding_size", false, 64, &r->E, f, err));
    MC_TRY(mc_json_get_str(cfg, "layer_type", false, "bottleneck", &lt, f, err));
    MC_TRY(mc_cfg_act(cfg, "hidden_act", "relu", &r->act, f, err));
    MC_TRY(mc_json_get_bool(cfg, "downsample_in_first_stage", false, false, &r->ds_first, f, err));
    MC_TRY(mc_json_get_bool(cfg, "downsample_in_bottleneck", false, false, &r->ds_bneck, f, err));
    if (strcmp(lt, "bottleneck") != 0)
        return MC_FAIL(err, MC_ERR_UNSUPPORTED, "%s: layer_type \"%s\" is not supported (only "
                       "\"bottleneck\", as ResNet-50)", f, lt);
    if (json_object_get(cfg, "hidden_sizes"))
        MC_TRY(mc_json_get_int_array(cfg, "hidden_sizes", r->hs, -1, RESNET_MAX_STAGES, &n1, f, err));
    else
        n1 = 4, r->hs[0] = 256, r->hs[1] = 512, r->hs[2] = 1024, r->hs[3] = 2048;
    if (json_object_get(cfg, "depths"))
        MC_TRY(mc_json_get_int_array(cfg, "depths", r->depth, -1, RESNET_MAX_STAGES, &n2, f, err));
    else
        n2 = 4, r->depth[0] = 3, r->depth[1] = 4, r->depth[2] = 6, r->depth[3] = 3;
    if (n1 != n2 || n1 < 1)
        return MC_FAIL(err, MC_ERR_FORMAT, "%s: hidden_sizes has %d entries but depths has %d", f, n1, n2);
    r->n_stages = n1;
    if (r->C < 1 || r->C > 64 || r->E < 1 || r->E > 65536)
        return MC_FAIL(err, MC_ERR_FORMAT, "%s: num_channels %lld / embedding_size %lld out of range",
                       f, (long long)r->C, (long long)r->E);
    for (int s = 0; s < n1; s++)
        if (r->hs[s] < 4 || r->hs[s] > 65536 || r->depth[s] < 1 || r->depth[s] > 1000)
            return MC_FAIL(err, MC_ERR_FORMAT, "%s: stage %d: hidden size %lld / depth %lld out of "
                           "range", f, s, (long long)r->hs[s], (long long)r->depth[s]);
    MC_TRY(mc_model_load_labels(m, cfg, f, err));
    r->n_out = m->n_labels;
    const char *p = (!st || mc_st_find(st, "resnet.embedder.embedder.convolution.weight")) ? "resnet." : "";
    mc_strlcpy(m->prefix, p, sizeof m->prefix);

    char path[MC_NAME_MAX], name[MC_NAME_MAX];
    snprintf(path, sizeof path, "%sembedder.embedder", p);
    MC_TRY(declare_conv_bn(m, &r->stem, r->C, r->E, 7, 2, path, err));
    r->idx_stem = add_layer(m, "embedder.embedder", r->E, false);
    r->idx_emb = add_layer(m, "embedder", r->E, true);
    for (int s = 0; s < n1; s++) r->n_lay += (int)r->depth[s];
    r->lay = calloc((size_t)r->n_lay, sizeof *r->lay);
    if (!r->lay) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    int j = 0;
    int64_t in = r->E;
    for (int s = 0; s < n1; s++) {
        const int64_t out = r->hs[s], mid = out / 4; /* reduction 4 */
        for (int l = 0; l < r->depth[s]; l++, j++) {
            bneck *L = &r->lay[j];
            const int64_t cin = l == 0 ? in : out;
            const int64_t stride = (l == 0 && (s > 0 || r->ds_first)) ? 2 : 1;
            L->has_sc = cin != out || stride != 1;
#define PATH(...) snprintf(path, sizeof path, __VA_ARGS__)
            if (L->has_sc) {
                PATH("%sencoder.stages.%d.layers.%d.shortcut", p, s, l);
                MC_TRY(declare_conv_bn(m, &L->sc, cin, out, 1, stride, path, err));
            }
            /* v1.5: the stride sits on the 3x3 unless downsample_in_bottleneck */
            PATH("%sencoder.stages.%d.layers.%d.layer.0", p, s, l);
            MC_TRY(declare_conv_bn(m, &L->a, cin, mid, 1, r->ds_bneck ? stride : 1, path, err));
            PATH("%sencoder.stages.%d.layers.%d.layer.1", p, s, l);
            MC_TRY(declare_conv_bn(m, &L->b, mid, mid, 3, r->ds_bneck ? 1 : stride, path, err));
            PATH("%sencoder.stages.%d.layers.%d.layer.2", p, s, l);
            MC_TRY(declare_conv_bn(m, &L->c, mid, out, 1, 1, path, err));
#undef PATH
            snprintf(name, sizeof name, "stages.%d.layers.%d.shortcut", s, l);
            L->idx_sc = add_layer(m, name, out, false);
            for (int k = 0; k < 3; k++) {
                snprintf(name, sizeof name, "stages.%d.layers.%d.layer.%d", s, l, k);
                int idx = add_layer(m, name, k == 2 ? out : mid, false);
                if (k == 0) L->idx_a = idx;
                if (k == 1) L->idx_b = idx;
                if (k == 2) L->idx_c = idx;
            }
            snprintf(name, sizeof name, "stages.%d.layers.%d", s, l);
            L->idx_out = add_layer(m, name, out, true);
            L->idx_stage = -1;
            if (l == r->depth[s] - 1) {
                snprintf(name, sizeof name, "stages.%d", s);
                L->idx_stage = add_layer(m, name, out, true);
            }
        }
        in = out;
    }
    const int64_t Cf = r->hs[n1 - 1];
    r->idx_pool = add_layer(m, "pooler", Cf, false);
    r->idx_logits = mc_model_add_layer(m, "logits", 1, &r->n_out, false, false);
    bool ok = r->idx_stem >= 0 && r->idx_emb >= 0 && r->idx_pool >= 0 && r->idx_logits >= 0;
    for (int k = 0; k < r->n_lay; k++) {
        const bneck *L = &r->lay[k];
        ok = ok && L->idx_sc >= 0 && L->idx_a >= 0 && L->idx_b >= 0 && L->idx_c >= 0 && L->idx_out >= 0;
    }
    if (!ok) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory listing the layers");
    const int64_t fw[2] = {r->n_out, Cf};
    MC_TRY(mc_wt_add(m, &r->fc_w, 2, fw, err, "classifier.1.weight"));
    MC_TRY(mc_wt_add(m, &r->fc_b, 1, &r->n_out, err, "classifier.1.bias"));
    m->in_c = (int)r->C, m->in_h = m->in_w = 224;
    m->any_size = true;
    m->out_dim = r->n_out;
    m->out_name = "logits";
    set_shapes(m, 224, 224);
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

/* Arena: five activation buffers of the largest per-image map, the im2col workspace, and the
 * pooled features and logits. */
typedef struct {
    size_t act, work, total;
} rn_plan;

static rn_plan plan(const mc_model *m, int64_t B, int64_t H, int64_t W) {
    set_shapes((mc_model *)m, H, W);
    resnet_impl *r = m->impl;
    rn_plan p = {0};
    for (int i = 0; i < m->n_layers; i++) {
        const mc_layer_info *l = &m->layers[i];
        size_t n = 1;
        for (int d = 0; d < l->ndim; d++) n *= (size_t)l->shape[d];
        if (n > p.act) p.act = n;
    }
    /* im2col input sizes: the stem sees HxW, every other conv its layer's input map */
    size_t w = mc_conv2d_workspace(&r->stem.d, H, W);
    int64_t h = m->layers[r->idx_emb].shape[1], ww = m->layers[r->idx_emb].shape[2];
    for (int j = 0; j < r->n_lay; j++) {
        bneck *L = &r->lay[j];
        const int64_t ha = m->layers[L->idx_a].shape[1], wa = m->layers[L->idx_a].shape[2];
        size_t c;
        if (L->has_sc && (c = mc_conv2d_workspace(&L->sc.d, h, ww)) > w) w = c;
        if ((c = mc_conv2d_workspace(&L->a.d, h, ww)) > w) w = c;
        if ((c = mc_conv2d_workspace(&L->b.d, ha, wa)) > w) w = c;
        h = m->layers[L->idx_out].shape[1], ww = m->layers[L->idx_out].shape[2];
    }
    p.work = w;
    const size_t Cf = (size_t)r->hs[r->n_stages - 1];
    p.total = 5 * (size_t)B * p.act + w + (size_t)B * (Cf + (size_t)r->n_out);
    return p;
}

static size_t resnet_arena(const mc_model *m, int64_t B, int64_t H, int64_t W) {
    return plan(m, B, H, W).total;
}

static mc_status resnet_forward(mc_model *m, mc_run *run, const float *px, int64_t B, int64_t H,
                                int64_t W, float *output, mc_error *err) {
    resnet_impl *r = m->impl;
    const rn_plan pl = plan(m, B, H, W);
    float *X = m->arena, *Y = X + B * pl.act, *T1 = Y + B * pl.act, *T2 = T1 + B * pl.act;
    float *S0 = T2 + B * pl.act, *work = S0 + B * pl.act, *pooled = work + pl.work;
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
        memcpy(X, run->o->start_state, (size_t)(B * l->shape[0] * l->shape[1] * l->shape[2]) * sizeof(float));
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
        mc_conv2d(&L->a.d, X, B, h, w, L->a.w, L->a.b, 0.0f, r->act, T1, work);          /* 1x1 */
        if (!mc_run_point(run, L->idx_a, T1)) return MC_OK;
        mc_conv2d(&L->b.d, T1, B, HW(L->idx_a), L->b.w, L->b.b, 0.0f, r->act, T2, work); /* 3x3 */
        if (!mc_run_point(run, L->idx_b, T2)) return MC_OK;
        if (mc_run_wants(run, L->idx_c)) {
            mc_conv2d(&L->c.d, T2, B, HW(L->idx_b), L->c.w, L->c.b, 0.0f, MC_ACT_NONE, T1, work);
            if (!mc_run_point(run, L->idx_c, T1)) return MC_OK;
            const size_t n = (size_t)(B * L->c.d.cout) * (size_t)(Ls[L->idx_c].shape[1] * Ls[L->idx_c].shape[2]);
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

const mc_family_ops mc_resnet_ops = {resnet_load, resnet_finish, resnet_arena, resnet_forward,
                                     resnet_free};
