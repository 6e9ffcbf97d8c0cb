/* optim.c - Adam with PyTorch's torch.optim.Adam semantics (single-tensor path of torch 1.13),
 * the chunk sharding of the data-parallel scheme, and the loss-curve container.
 *
 * Per element, in float32 as torch computes it:
 *   g += wd * p;  m = m*b1 + g*(1-b1);  v = v*b2 + (1-b2)*g*g;
 *   denom = sqrt(v) / sqrt(1 - b2^t) + eps;  p += -(lr / (1 - b1^t)) * m / denom
 * with the bias corrections computed in double, as Python does. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/checked.h"
#include "miclip/train.h"

mc_adam_config mc_adam_defaults(void) {
    return (mc_adam_config){
        .lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.0};
}

mc_status mc_adam_init(mc_adam *a, size_t n, const mc_adam_config *cfg, mc_error *err) {
    memset(a, 0, sizeof *a);
    if (!(cfg->lr >= 0) || !(cfg->beta1 >= 0 && cfg->beta1 < 1) ||
        !(cfg->beta2 >= 0 && cfg->beta2 < 1) || !(cfg->eps >= 0) || !(cfg->weight_decay >= 0))
        return MC_FAIL(err, MC_ERR_CONFIG,
                       "Adam: need lr >= 0, 0 <= beta1, beta2 < 1, eps >= 0, weight_decay >= 0 "
                       "(got lr %g, betas %g %g, eps %g, wd %g)",
                       cfg->lr, cfg->beta1, cfg->beta2, cfg->eps, cfg->weight_decay);
    a->cfg = *cfg;
    a->n = n;
    a->m = mc_calloc_array(n ? n : 1, sizeof(float));
    a->v = mc_calloc_array(n ? n : 1, sizeof(float));
    if (!a->m || !a->v) {
        mc_adam_free(a);
        return MC_FAIL(err, MC_ERR_NOMEM, "Adam: cannot allocate moments for %zu parameters", n);
    }
    return MC_OK;
}

void mc_adam_free(mc_adam *a) {
    if (!a) return;
    free(a->m);
    free(a->v);
    memset(a, 0, sizeof *a);
}

void mc_adam_tick(mc_adam *a) { a->step++; }

void mc_adam_update_slice(const mc_adam *a, size_t off, size_t count, float *param,
                          const float *grad) {
    const double t = (double)a->step;
    const double bc1 = 1.0 - pow(a->cfg.beta1, t);
    const double bc2 = 1.0 - pow(a->cfg.beta2, t);
    const float neg_step = (float)(-(a->cfg.lr / bc1));
    const float bc2_sqrt = (float)sqrt(bc2);
    const float b1 = (float)a->cfg.beta1, one_b1 = (float)(1.0 - a->cfg.beta1);
    const float b2 = (float)a->cfg.beta2, one_b2 = (float)(1.0 - a->cfg.beta2);
    const float eps = (float)a->cfg.eps, wd = (float)a->cfg.weight_decay;
    float *m = a->m + off, *v = a->v + off;
    for (size_t i = 0; i < count; i++) {
        float g = grad[i];
        if (wd != 0.0f) g = g + wd * param[i];
        m[i] = m[i] * b1 + g * one_b1;
        v[i] = v[i] * b2 + one_b2 * g * g;
        float denom = sqrtf(v[i]) / bc2_sqrt + eps;
        param[i] = param[i] + neg_step * m[i] / denom;
    }
}

void mc_adam_update(mc_adam *a, float *param, const float *grad) {
    mc_adam_tick(a);
    mc_adam_update_slice(a, 0, a->n, param, grad);
}

void mc_train_chunk_share(int64_t batch, int64_t chunk_rows, int rank, int size, int64_t *c0,
                          int64_t *c1, int64_t *r0, int64_t *r1) {
    int64_t nchunks = (batch + chunk_rows - 1) / chunk_rows;
    mc_shard_range(nchunks, rank, size, c0, c1);
    *r0 = *c0 * chunk_rows;
    *r1 = *c1 * chunk_rows < batch ? *c1 * chunk_rows : batch;
    if (*r0 > batch) *r0 = batch;
}

void mc_train_curve_free(mc_train_curve *c) {
    if (!c) return;
    free(c->loss);
    free(c->loss_a);
    free(c->loss_b);
    free(c->extra);
    memset(c, 0, sizeof *c);
}

mc_status mc_train_curve_push(mc_train_curve *c, float a, float b, float cc, float d,
                              mc_error *err) {
    if (c->count == c->cap) {
        int64_t cap = c->cap ? 2 * c->cap : 256;
        float **arrs[4] = {&c->loss, &c->loss_a, &c->loss_b, &c->extra};
        for (int i = 0; i < 4; i++) {
            size_t bytes;
            if (!mc_size_mul((size_t)cap, sizeof(float), &bytes))
                return MC_FAIL(err, MC_ERR_NOMEM, "loss curve: too many steps");
            float *p = realloc(*arrs[i], bytes);
            if (!p)
                return MC_FAIL(err, MC_ERR_NOMEM, "loss curve: cannot grow to %lld steps",
                               (long long)cap);
            *arrs[i] = p;
        }
        c->cap = cap;
    }
    c->loss[c->count] = a;
    c->loss_a[c->count] = b;
    c->loss_b[c->count] = cc;
    c->extra[c->count] = d;
    c->count++;
    return MC_OK;
}
