/* extract.c - the first stage: images -> target-model activations, predictions, CLIP image
 * embeddings and prompted class text embeddings, in one parallel HDF5 store per dataset.
 *
 * Work is cut into units of extract.batch_size consecutive images (the last may be shorter).
 * Units are the same whatever the rank count, so every image is always computed in the same
 * batch and the store is bitwise identical at 1, 2 or 4 ranks. Pending units (those without a
 * completion record) are dealt round-robin: in round r, rank k takes pending unit r*size + k.
 * Each round ends with a collective error agreement, collective row writes and the store's
 * flush-mark-flush protocol (store.h), then a collective check for stop signals.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/checked.h"
#include "miclip/dataset.h"
#include "miclip/fsutil.h"
#include "miclip/image.h"
#include "miclip/log.h"
#include "miclip/plan.h"
#include "miclip/miclip.h"
#include "miclip/model.h"
#include "miclip/text.h"
#include "method/extract_key.h"
#include "stages_internal.h"

/* One hooked layer being captured. */
typedef struct {
    const char *name; /* as configured */
    mc_pool pool;
    int ndim;         /* per image, in the store (1 when pooled) */
    int64_t shape[4]; /* per image */
    int64_t per;      /* floats per image */
    float *buf;       /* [batch, per] */
} capture;

static bool capture_fn(const mc_hook_view *v, void *user) {
    capture *cap = user;
    mc_pool_apply(v, cap->pool, cap->buf);
    return true;
}

/* The model-level pool for the configured one on a layer of this shape. */
static mc_status choose_pool(const mc_config *cfg, const mc_layer_info *li, mc_pool *pool,
                             mc_error *err) {
    bool map = li->ndim == 3, seq = li->ndim == 2;
    switch (cfg->extract.pool) {
    case MC_CFG_POOL_ALL: *pool = MC_POOL_ALL; return MC_OK;
    case MC_CFG_POOL_AUTO:
        *pool = (map || seq) ? (map ? MC_POOL_MEAN : MC_POOL_CLS) : MC_POOL_ALL;
        return MC_OK;
    case MC_CFG_POOL_CLS:
        if (map)
            return MC_FAIL(
                err, MC_ERR_CONFIG,
                "extract.pool: cls does not apply to layer '%s' (a feature map; use spatial_mean)",
                li->name);
        *pool = MC_POOL_CLS;
        return MC_OK;
    case MC_CFG_POOL_SPATIAL_MEAN:
        if (seq)
            return MC_FAIL(err, MC_ERR_CONFIG,
                           "extract.pool: spatial_mean does not apply to layer '%s' (a token "
                           "sequence; use cls or mean)",
                           li->name);
        *pool = MC_POOL_MEAN;
        return MC_OK;
    default: *pool = MC_POOL_MEAN; return MC_OK;
    }
}

/* Seconds spent per phase on this rank (reported at the end; bench/extract.sh reads them). */
typedef struct {
    double decode, forward, io;
} phase_times;

/* Everything loaded once per task. */
typedef struct {
    mc_model *target, *clip; /* clip == target when the target is the CLIP model itself */
    mc_preproc pp_target, pp_clip;
    int th, tw, ch, cw; /* input sizes after preprocessing */
    mc_text_encoder *text;
    int n_cap;
    capture *caps;
    mc_hook *hooks;
    int64_t out_dim, clip_dim;
    char target_hash[MC_SHA256_HEX_LEN + 1], clip_hash[MC_SHA256_HEX_LEN + 1];
    phase_times t;
} extractor;

static void extractor_free(extractor *x) {
    if (x->clip != x->target) mc_model_free(&x->clip);
    mc_model_free(&x->target);
    mc_text_encoder_free(&x->text);
    for (int i = 0; i < x->n_cap; i++) free(x->caps[i].buf);
    free(x->caps);
    free(x->hooks);
    memset(x, 0, sizeof *x);
}

static mc_status extractor_init(const mc_comm *c, const mc_config *cfg, extractor *x,
                                mc_error *err) {
    memset(x, 0, sizeof *x);
    mc_status s = mc_model_create(cfg->models.target, &x->target, err);
    bool same = strcmp(cfg->models.target, cfg->models.clip) == 0;
    if (s == MC_OK) {
        if (same) {
            x->clip = x->target;
            if (mc_model_family(x->target) != MC_FAMILY_CLIP_VISION)
                s = MC_FAIL(err, MC_ERR_CONFIG, "models.clip (%s) is not a CLIP model",
                            cfg->models.clip);
        } else {
            s = mc_model_create(cfg->models.clip, &x->clip, err);
            if (s == MC_OK && mc_model_family(x->clip) != MC_FAMILY_CLIP_VISION)
                s = MC_FAIL(err, MC_ERR_CONFIG, "models.clip (%s) is a %s model, not CLIP",
                            cfg->models.clip, mc_family_name(mc_model_family(x->clip)));
        }
    }
    if (s == MC_OK) s = mc_preproc_load(cfg->models.target, &x->pp_target, err);
    if (s == MC_OK) s = mc_preproc_load(cfg->models.clip, &x->pp_clip, err);
    if (s == MC_OK && !mc_preproc_fixed_size(&x->pp_target, &x->th, &x->tw))
        s = MC_FAIL(err, MC_ERR_UNSUPPORTED,
                    "%s/preprocessor_config.json: the output size depends on the image (no crop); "
                    "batching needs a fixed size",
                    cfg->models.target);
    if (s == MC_OK && !mc_preproc_fixed_size(&x->pp_clip, &x->ch, &x->cw))
        s = MC_FAIL(err, MC_ERR_UNSUPPORTED,
                    "%s/preprocessor_config.json: the output size depends on the image (no crop)",
                    cfg->models.clip);
    if (s == MC_OK) s = mc_text_encoder_load(cfg->models.clip, NULL, &x->text, err);
    /* Every rank loaded the same files: a failure anywhere is a failure everywhere. */
    s = mc_comm_agree(c, s, err);
    if (s != MC_OK) return s;

    x->out_dim = mc_model_output_dim(x->target);
    x->clip_dim = mc_model_output_dim(x->clip);
    x->n_cap = cfg->extract.layers.n;
    x->caps = calloc((size_t)x->n_cap, sizeof *x->caps);
    x->hooks = calloc((size_t)x->n_cap, sizeof *x->hooks);
    if (!x->caps || !x->hooks) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    for (int i = 0; s == MC_OK && i < x->n_cap; i++) {
        capture *cp = &x->caps[i];
        cp->name = cfg->extract.layers.v[i];
        int idx;
        s = mc_model_find_layer(x->target, cp->name, &idx, err);
        if (s != MC_OK) {
            /* A layer the model lacks is a config error (exit 1), not a usage error. */
            mc_error_prefix(err, "%s: extract.layers: %s", cfg->source_path, cfg->models.target);
            err->code = s = MC_ERR_CONFIG;
            break;
        }
        const mc_layer_info *li = mc_model_layer(x->target, idx);
        s = choose_pool(cfg, li, &cp->pool, err);
        if (s != MC_OK) break;
        if (cp->pool == MC_POOL_ALL || li->ndim == 1) {
            cp->ndim = li->ndim;
            cp->per = 1;
            for (int d = 0; d < li->ndim; d++) cp->shape[d] = li->shape[d], cp->per *= li->shape[d];
        } else {
            cp->ndim = 1;
            cp->per = li->ndim == 2 ? li->shape[1] : li->shape[0]; /* [T, D] -> D; [C, H, W] -> C */
            cp->shape[0] = cp->per;
        }
        cp->buf = mc_alloc_array((size_t)cfg->extract.batch_size, (size_t)cp->per * sizeof(float));
        if (!cp->buf) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory for layer %s", cp->name);
        x->hooks[i] =
            (mc_hook){.name = cp->name, .mode = MC_HOOK_READ, .fn = capture_fn, .user = cp};
    }
    if (s == MC_OK)
        s = mc_model_dir_hash(c, cfg->models.target, x->target_hash, err);
    else
        (void)mc_comm_agree(c, s, err);
    if (s == MC_OK)
        s = same ? (mc_strlcpy(x->clip_hash, x->target_hash, sizeof x->clip_hash), MC_OK)
                 : mc_model_dir_hash(c, cfg->models.clip, x->clip_hash, err);
    return s;
}

/* Names of the per-image datasets. */
static void acts_name(const char *layer, char *buf, size_t cap) {
    snprintf(buf, cap, "acts/%s", layer);
}

static mc_status create_layout(const mc_comm *c, mc_store *st, const mc_config *cfg,
                               const extractor *x, const mc_extract_plan *p, int64_t seed,
                               int64_t n_units, float *class_emb, mc_error *err) {
    int64_t N = p->ds.n, C = p->ds.n_classes;
    bool root = c->rank == 0; /* whole-dataset facts: rank 0 writes, the others join empty */
    mc_dtype act_dtype = cfg->extract.dtype == MC_STORE_F16 ? MC_DTYPE_F16 : MC_DTYPE_F32;
    int64_t chunk = cfg->extract.batch_size;
    int64_t sh[5];
    sh[0] = N;
    MC_TRY(mc_store_create_dataset(st, "images/labels", MC_DTYPE_I32, 1, sh, 0, err));
    MC_TRY(mc_store_create_dataset(st, "images/valid", MC_DTYPE_U8, 1, sh, 0, err));
    MC_TRY(mc_store_create_dataset(st, "target/predictions", MC_DTYPE_I32, 1, sh, 0, err));
    sh[1] = x->out_dim;
    MC_TRY(mc_store_create_dataset(st, "target/output", MC_DTYPE_F32, 2, sh, chunk, err));
    sh[1] = x->clip_dim;
    MC_TRY(mc_store_create_dataset(st, "clip/image_embeds", MC_DTYPE_F32, 2, sh, chunk, err));
    for (int i = 0; i < x->n_cap; i++) {
        const capture *cp = &x->caps[i];
        for (int d = 0; d < cp->ndim; d++) sh[1 + d] = cp->shape[d];
        char name[512];
        acts_name(cp->name, name, sizeof name);
        MC_TRY(mc_store_create_dataset(st, name, act_dtype, 1 + cp->ndim, sh, chunk, err));
        MC_TRY(mc_store_set_attr_str(st, name, "pool",
                                     cp->pool == MC_POOL_ALL   ? "all"
                                     : cp->pool == MC_POOL_CLS ? "cls"
                                                               : "mean",
                                     err));
    }
    /* Whole-dataset facts, written once (rank 0's rows; every rank holds the same). */
    MC_TRY(
        mc_store_write_strings(st, "images/paths", (const char *const *)p->ds.paths, N, true, err));
    MC_TRY(mc_store_write_strings(st, "classes/names", (const char *const *)p->ds.class_names, C,
                                  true, err));
    sh[0] = C;
    sh[1] = x->clip_dim;
    MC_TRY(mc_store_create_dataset(st, "text/class_embeds", MC_DTYPE_F32, 2, sh, 0, err));
    MC_TRY(mc_store_write_rows(st, "text/class_embeds", MC_DTYPE_F32, 0, root ? C : 0, class_emb,
                               err));
    MC_TRY(mc_store_set_attr_str(st, "text/class_embeds", "prompt", cfg->align.prompt, err));
    MC_TRY(
        mc_store_write_rows(st, "images/labels", MC_DTYPE_I32, 0, root ? N : 0, p->ds.labels, err));
    /* The seed that drew the sample (none for a whole split): whichever task writes a shared store,
     * it records the same. */
    (void)seed;
    mc_store_provenance prov = {.stage = "extract",
                                .config_hash = cfg->hash,
                                .model = x->target_hash,
                                .dataset = p->ds.root,
                                .seed = p->sample_seed,
                                .has_seed = p->sample_seed >= 0};
    MC_TRY(mc_store_write_provenance(st, "/", &prov, err));
    MC_TRY(mc_store_set_attr_str(st, "/", "extract_key", p->key, err));
    MC_TRY(mc_store_set_attr_str(st, "/", "target_model", cfg->models.target, err));
    MC_TRY(mc_store_set_attr_str(st, "/", "clip_model", cfg->models.clip, err));
    MC_TRY(mc_store_set_attr_str(st, "/", "clip_hash", x->clip_hash, err));
    MC_TRY(mc_store_set_attr_str(st, "/", "split", mc_split_name(p->split), err));
    MC_TRY(
        mc_store_set_attr_i64(st, "/", "dataset_n_skipped", p->ds.skipped.n, err)); /* not images */
    MC_TRY(mc_store_set_attr_str(st, "/", "config", cfg->canonical, err));
    MC_TRY(mc_store_set_attr_i64(st, "/", "batch_size", cfg->extract.batch_size, err));
    MC_TRY(mc_store_units_init(st, "/", n_units, err));
    return mc_store_mark_layout(st, err); /* from here on a killed run resumes from the marks */
}

/* Computes one unit's rows [b, e) into the extractor's buffers. Bad images (skip mode) give a
 * zero row and valid = 0. Returns the first error (fail mode) naming the file. */
static mc_status compute_unit(const mc_config *cfg, extractor *x, const mc_extract_plan *p,
                              int64_t b, int64_t e, float *pix_t, float *pix_c, float *out,
                              float *clip_emb, int32_t *pred, uint8_t *valid,
                              const float *class_emb, int64_t *n_bad, mc_error *err) {
    int64_t B = e - b;
    size_t per_t = (size_t)3 * x->th * x->tw, per_c = (size_t)3 * x->ch * x->cw;
    bool same = x->clip == x->target;
    double t0 = mc_now();
    for (int64_t i = 0; i < B; i++) {
        mc_image img = {0};
        mc_error ie = {0};
        mc_status s = mc_image_load(p->ds.paths[b + i], NULL, &img, &ie);
        if (s == MC_OK) s = mc_preprocess(&x->pp_target, &img, pix_t + i * per_t, NULL, &ie);
        if (s == MC_OK && !same) s = mc_preprocess(&x->pp_clip, &img, pix_c + i * per_c, NULL, &ie);
        mc_image_free(&img);
        valid[i] = s == MC_OK;
        if (s != MC_OK) {
            if (cfg->extract.on_bad_image == MC_BAD_IMAGE_FAIL) {
                *err = ie;
                mc_error_prefix(err, "image %lld of %s (extract.on_bad_image: fail)",
                                (long long)(b + i), mc_split_name(p->split));
                return s;
            }
            mc_warn("skipping bad image %s: %s", p->ds.paths[b + i], ie.msg);
            (*n_bad)++;
            memset(pix_t + i * per_t, 0, per_t * sizeof(float));
            if (!same) memset(pix_c + i * per_c, 0, per_c * sizeof(float));
        }
    }
    double t1 = mc_now();
    x->t.decode += t1 - t0;
    mc_forward_opts opts = {.hooks = x->hooks, .n_hooks = x->n_cap};
    MC_TRY(mc_model_forward(x->target, pix_t, B, x->th, x->tw, &opts, out, NULL, err));
    if (same)
        memcpy(clip_emb, out, (size_t)B * (size_t)x->clip_dim * sizeof(float));
    else
        MC_TRY(mc_model_forward(x->clip, pix_c, B, x->ch, x->cw, NULL, clip_emb, NULL, err));
    x->t.forward += mc_now() - t1;
    if (same) {
        mc_zeroshot_classify(class_emb, p->ds.n_classes, out, B, x->out_dim, pred, NULL);
    } else {
        for (int64_t i = 0; i < B; i++) {
            const float *row = out + i * x->out_dim;
            int32_t best = 0;
            for (int64_t k = 1; k < x->out_dim; k++)
                if (row[k] > row[best]) best = (int32_t)k; /* first index of the max, as torch */
            pred[i] = best;
        }
    }
    /* Zero the rows of bad images everywhere, and refuse non-finite activations. */
    for (int64_t i = 0; i < B; i++) {
        for (int k = 0; k < x->n_cap; k++) {
            float *r = x->caps[k].buf + i * x->caps[k].per;
            if (!valid[i]) {
                memset(r, 0, (size_t)x->caps[k].per * sizeof(float));
                continue;
            }
        }
        if (!valid[i]) {
            memset(out + i * x->out_dim, 0, (size_t)x->out_dim * sizeof(float));
            memset(clip_emb + i * x->clip_dim, 0, (size_t)x->clip_dim * sizeof(float));
            pred[i] = -1;
        }
    }
    for (int k = 0; k < x->n_cap; k++) /* one vectorised scan per layer (tensor.h) */
        MC_TRY(mc_check_finite_rows(x->caps[k].buf, (size_t)B, (size_t)x->caps[k].per,
                                    (const char *const *)p->ds.paths + b, err,
                                    "non-finite activation at layer '%s'", x->caps[k].name));
    return mc_check_finite_rows(out, (size_t)B, (size_t)x->out_dim,
                                (const char *const *)p->ds.paths + b, err,
                                "non-finite target model output");
}

static mc_status write_unit(mc_store *st, const mc_config *cfg, extractor *x, int64_t b, int64_t e,
                            const float *out, const float *clip_emb, const int32_t *pred,
                            const uint8_t *valid, uint16_t *half, mc_error *err) {
    MC_TRY(mc_store_write_rows(st, "target/output", MC_DTYPE_F32, b, e, out, err));
    MC_TRY(mc_store_write_rows(st, "target/predictions", MC_DTYPE_I32, b, e, pred, err));
    MC_TRY(mc_store_write_rows(st, "images/valid", MC_DTYPE_U8, b, e, valid, err));
    MC_TRY(mc_store_write_rows(st, "clip/image_embeds", MC_DTYPE_F32, b, e, clip_emb, err));
    for (int k = 0; k < x->n_cap; k++) {
        char name[512];
        acts_name(x->caps[k].name, name, sizeof name);
        if (cfg->extract.dtype == MC_STORE_F16) {
            size_t n = (size_t)(e - b) * (size_t)x->caps[k].per;
            for (size_t j = 0; j < n; j++) half[j] = mc_f32_to_f16(x->caps[k].buf[j]);
            MC_TRY(mc_store_write_rows(st, name, MC_DTYPE_F16, b, e, half, err));
        } else {
            MC_TRY(mc_store_write_rows(st, name, MC_DTYPE_F32, b, e, x->caps[k].buf, err));
        }
    }
    return MC_OK;
}

/* A store shared by several seeds (a whole split, or a shared sample) that another task is
 * writing: it is that task's. Under a Slurm array the next stage starts after every task of this
 * one (afterok), so nothing reads it before its writer completes it; a reader that comes early
 * finds it incomplete and says so. */
static mc_status left_to_writer(const mc_extract_plan *p, mc_error *err) {
    mc_info0("extract %s: another task is writing this store (%s); left to it",
             mc_split_name(p->split), err->msg);
    *err = (mc_error){0};
    return MC_OK;
}

/* Runs (or resumes, or skips) one split. */
static mc_status extract_split(const mc_comm *c, const mc_config *cfg, extractor *x,
                               mc_extract_plan *p, int64_t seed, mc_error *err) {
    const int64_t bs = cfg->extract.batch_size, N = p->ds.n;
    const int64_t n_units = (N + bs - 1) / bs;
    x->t = (phase_times){0};
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/extract", cfg->output_dir);
    mc_status s = c->rank == 0 ? mc_mkdir_p(dir, err) : MC_OK;
    MC_TRY(mc_comm_agree(c, s, err));

    /* A complete store is left untouched (a requeued finished job exits at once). */
    mc_store_state state;
    s = mc_store_probe(c, p->path, &state, err);
    if (s == MC_ERR_LOCKED) return left_to_writer(p, err);
    MC_TRY(s);
    if (state == MC_STORE_COMPLETE) {
        mc_info0("extract %s: complete, skipping (%s)", mc_split_name(p->split), p->path);
        return MC_OK;
    }

    /* Class text embeddings: every rank computes them (cheap; a CLIP target needs them). */
    float *class_emb = mc_alloc_array((size_t)p->ds.n_classes, (size_t)x->clip_dim * sizeof(float));
    s = class_emb ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    if (s == MC_OK)
        s = mc_text_embed(x->text, (const char *const *)p->ds.class_names, (size_t)p->ds.n_classes,
                          cfg->align.prompt, false, class_emb, err);
    s = mc_comm_agree(c, s, err);
    if (s != MC_OK) {
        free(class_emb);
        return s;
    }
    if (x->clip == x->target && x->out_dim != x->clip_dim) {
        free(class_emb);
        return MC_FAIL(err, MC_ERR_INTERNAL, "CLIP output width mismatch");
    }

    mc_store *st = NULL;
    bool created = false;
    s = mc_store_resume(c, p->path, &st, &created, err); /* rebuilds an unusable store */
    if (s == MC_ERR_LOCKED) {
        free(class_emb);
        return left_to_writer(p, err);
    }
    if (s != MC_OK) {
        free(class_emb);
        return s;
    }
    if (created)
        s = create_layout(c, st, cfg, x, p, seed, n_units, class_emb, err);
    else
        s = mc_store_units_init(st, "/", n_units, err); /* checks the unit count */
    s = mc_comm_agree(c, s, err);

    uint8_t *done = calloc((size_t)n_units, 1);
    int64_t *pending = mc_alloc_array((size_t)n_units, sizeof *pending);
    size_t per_t = (size_t)3 * x->th * x->tw, per_c = (size_t)3 * x->ch * x->cw;
    size_t max_per = 1;
    for (int k = 0; k < x->n_cap; k++)
        max_per = (size_t)x->caps[k].per > max_per ? (size_t)x->caps[k].per : max_per;
    float *pix_t = mc_alloc_array((size_t)bs, per_t * sizeof(float));
    float *pix_c = mc_alloc_array((size_t)bs, per_c * sizeof(float));
    float *out = mc_alloc_array((size_t)bs, (size_t)x->out_dim * sizeof(float));
    float *clip_emb = mc_alloc_array((size_t)bs, (size_t)x->clip_dim * sizeof(float));
    int32_t *pred = mc_alloc_array((size_t)bs, sizeof *pred);
    uint8_t *valid = mc_alloc_array((size_t)bs, 1);
    uint16_t *half =
        cfg->extract.dtype == MC_STORE_F16 ? mc_alloc_array((size_t)bs, max_per * 2) : NULL;
    if (s == MC_OK && (!done || !pending || !pix_t || !pix_c || !out || !clip_emb || !pred ||
                       !valid || (cfg->extract.dtype == MC_STORE_F16 && !half)))
        s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory for a batch of %lld images", (long long)bs);
    s = mc_comm_agree(c, s, err);

    int64_t n_done = 0, n_pending = 0;
    if (s == MC_OK) s = mc_store_units_read(st, "/", n_units, done, &n_done, err);
    for (int64_t u = 0; s == MC_OK && u < n_units; u++)
        if (!done[u]) pending[n_pending++] = u;
    if (s == MC_OK && n_done > 0)
        mc_info0("extract %s: resuming, %lld of %lld batches already done", mc_split_name(p->split),
                 (long long)n_done, (long long)n_units);

    int64_t n_bad = 0;
    mc_progress prog;
    mc_progress_start(&prog, "extract", n_pending * bs < N ? n_pending * bs : N, "img");
    int64_t rounds = (n_pending + c->size - 1) / c->size;
    for (int64_t r = 0; s == MC_OK && r < rounds; r++) {
        int64_t slot = r * c->size + c->rank;
        int64_t b = 0, e = 0, unit = -1;
        mc_status ls = MC_OK;
        if (slot < n_pending) {
            unit = pending[slot];
            b = unit * bs;
            e = b + bs < N ? b + bs : N;
            ls = compute_unit(cfg, x, p, b, e, pix_t, pix_c, out, clip_emb, pred, valid, class_emb,
                              &n_bad, err);
        }
        s = mc_comm_agree(c, ls, err);
        if (s != MC_OK) break;
        double tw = mc_now();
        s = write_unit(st, cfg, x, b, e, out, clip_emb, pred, valid, half, err);
        if (s == MC_OK) s = mc_store_units_mark(st, "/", &unit, unit >= 0 ? 1 : 0, err);
        x->t.io += mc_now() - tw;
        int64_t upto = (r + 1) * c->size * bs;
        mc_progress_update(&prog, upto < prog.total ? upto : prog.total);
        if (s == MC_OK && mc_comm_stop_requested(c)) {
            s = MC_FAIL(
                err, MC_ERR_INTERRUPTED,
                "extract %s: stopped by signal after %lld of %lld pending batches; the store is "
                "consistent, rerun to resume (%s)",
                mc_split_name(p->split),
                (long long)((r + 1) * c->size < n_pending ? (r + 1) * c->size : n_pending),
                (long long)n_pending, p->path);
        }
    }
    mc_progress_finish(&prog);
    if (s == MC_OK) {
        long long total_bad = 0, mine = (long long)n_bad;
        MPI_Allreduce(&mine, &total_bad, 1, MPI_LONG_LONG, MPI_SUM, c->comm);
        /* Bad images of earlier (interrupted) runs are counted from the valid flags. */
        uint8_t *v = mc_alloc_array((size_t)N, 1);
        int64_t invalid = 0;
        s = v ? mc_store_read_rows(st, "images/valid", MC_DTYPE_U8, 0, c->rank == 0 ? N : 0, v, err)
              : MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        if (s == MC_OK && c->rank == 0)
            for (int64_t i = 0; i < N; i++) invalid += v[i] == 0;
        free(v);
        if (s == MC_OK) s = mc_store_set_attr_i64(st, "/", "n_bad_images", invalid, err);
        if (s == MC_OK) s = mc_store_set_complete(st, "/", err);
        if (s == MC_OK)
            mc_info0("extract %s: %lld images, %d layers -> %s%s", mc_split_name(p->split),
                     (long long)N, x->n_cap, p->path,
                     invalid ? " (some images skipped: see n_bad_images)" : "");
        /* Where the time went, summed over ranks (wall seconds per phase). */
        double spent[3] = {x->t.decode, x->t.forward, x->t.io}, sum[3];
        MPI_Reduce(spent, sum, 3, MPI_DOUBLE, MPI_SUM, 0, c->comm);
        double all = sum[0] + sum[1] + sum[2];
        if (all > 0)
            mc_info0("extract %s: time per rank: decode+preprocess %.1f%%, forward %.1f%%, "
                     "write+flush %.1f%% "
                     "(%.2f s total over %d rank(s))",
                     mc_split_name(p->split), 100 * sum[0] / all, 100 * sum[1] / all,
                     100 * sum[2] / all, all, c->size);
        (void)total_bad;
    }
    mc_error close_err = {0};
    mc_status cs = mc_store_close(&st, &close_err);
    if (s == MC_OK && cs != MC_OK) {
        *err = close_err;
        s = cs;
    }
    free(class_emb);
    free(done);
    free(pending);
    free(pix_t);
    free(pix_c);
    free(out);
    free(clip_emb);
    free(pred);
    free(valid);
    free(half);
    return s;
}

/* The splits this configuration extracts: train always; eval and unseen when the intervention
 * stage will use them, eval also for the report's flawed_reasoning and attention_maps figures. */
static bool split_wanted(const mc_config *cfg, mc_split s) {
    if (mc_split_dataset_cfg(cfg, s)->kind == MC_DS_NONE) return false;
    if (s == MC_SPLIT_TRAIN) return true;
    /* The report's flawed_reasoning and attention_maps figures read the eval images' activations. */
    if (s == MC_SPLIT_EVAL && mc_config_has_stage(cfg, MC_STAGE_REPORT))
        for (int i = 0; i < cfg->report.figures.n; i++)
            if (cfg->report.figures.v[i] == MC_FIGURE_FLAWED_REASONING ||
                cfg->report.figures.v[i] == MC_FIGURE_ATTENTION_MAPS)
                return true;
    if (!mc_config_has_stage(cfg, MC_STAGE_INTERVENE)) return false;
    for (int i = 0; i < cfg->intervene.datasets.n; i++)
        if ((cfg->intervene.datasets.v[i] == MC_EVAL_SET_EVAL && s == MC_SPLIT_EVAL) ||
            (cfg->intervene.datasets.v[i] == MC_EVAL_SET_UNSEEN && s == MC_SPLIT_UNSEEN))
            return true;
    return false;
}

/* Collective. The plan of every wanted split (key and path from the model hashes, which the file-hash
 * cache makes cheap, and the target's config.json). *all_complete tells whether each store is
 * complete already. */
static mc_status plan_splits(const mc_comm *c, const mc_config *cfg, int64_t seed,
                             const mc_labels *labels, const char *th, const char *chh,
                             mc_extract_plan *plans, bool *all_complete, mc_error *err) {
    *all_complete = true;
    mc_status s = MC_OK;
    for (int sp = 0; s == MC_OK && sp < MC_SPLIT_COUNT; sp++) {
        if (!split_wanted(cfg, (mc_split)sp)) continue;
        s = mc_extract_plan_split(c, cfg, (mc_split)sp, seed, (const char *const *)labels->v,
                                  labels->n, th, chh, &plans[sp], err);
        bool complete = false;
        if (s == MC_OK) s = mc_store_peek_complete(c, plans[sp].path, &complete, err);
        *all_complete = *all_complete && complete;
    }
    return s;
}

mc_status mc_stage_extract(const mc_comm *c, const mc_config *cfg, const mc_task *task,
                           mc_error *err) {
    /* A rerun whose stores are all complete loads no model: the keys need only the model hashes and
     * the target's labels. Any error here is met again, and reported as before, on the full path. */
    char th[MC_SHA256_HEX_LEN + 1], chh[MC_SHA256_HEX_LEN + 1];
    mc_labels labels = {0};
    mc_extract_plan plans[MC_SPLIT_COUNT];
    memset(plans, 0, sizeof plans);
    bool all_complete = false;
    mc_error quiet = {0};
    mc_status s = mc_model_dir_hash(c, cfg->models.target, th, &quiet);
    if (s == MC_OK) s = mc_model_dir_hash(c, cfg->models.clip, chh, &quiet);
    if (s == MC_OK) s = mc_target_labels(c, cfg, &labels, &quiet);
    if (s == MC_OK)
        s = plan_splits(c, cfg, task->seed, &labels, th, chh, plans, &all_complete, &quiet);
    if (s != MC_OK || !all_complete) {
        bool have_labels = labels.v || s == MC_OK;
        extractor x;
        s = extractor_init(c, cfg, &x, err);
        if (s == MC_OK && !have_labels) s = mc_target_labels(c, cfg, &labels, err);
        /* Its own (per-seed sample) stores first, then the shared ones starting at this seed's place in
         * `seeds`: tasks that run at once under a Slurm array start on different shared stores. */
        int order[MC_SPLIT_COUNT], n_order = 0, first = 0;
        for (int i = 0; i < cfg->seeds.n; i++)
            if (cfg->seeds.v[i] == task->seed) first = i;
        for (int pass = 0; pass < 2; pass++)
            for (int k = 0; k < MC_SPLIT_COUNT; k++) {
                int sp = pass ? (first + k) % MC_SPLIT_COUNT : k;
                if (!split_wanted(cfg, (mc_split)sp)) continue;
                bool own =
                    mc_split_sample_seed(mc_split_dataset_cfg(cfg, (mc_split)sp), task->seed) >=
                        0 &&
                    mc_split_dataset_cfg(cfg, (mc_split)sp)->sample_seed == MC_SAMPLE_PER_SEED;
                if (own == (pass == 0)) order[n_order++] = sp;
            }
        for (int i = 0; s == MC_OK && i < n_order; i++) {
            int sp = order[i];
            if (!plans[sp].path[0]) mc_dataset_free(&plans[sp].ds);
            if (!plans[sp].path[0])
                s = mc_extract_plan_split(c, cfg, (mc_split)sp, task->seed,
                                          (const char *const *)labels.v, labels.n, x.target_hash,
                                          x.clip_hash, &plans[sp], err);
            if (s == MC_OK) s = extract_split(c, cfg, &x, &plans[sp], task->seed, err);
        }
        extractor_free(&x);
    } else {
        for (int sp = 0; sp < MC_SPLIT_COUNT; sp++)
            if (plans[sp].path[0])
                mc_info0("extract %s: complete, skipping (%s)", mc_split_name(sp), plans[sp].path);
    }
    /* The run manifest, so later stages find the stores without listing the datasets: one per
     * (split, seed), naming the store that seed uses (shared by several seeds where the contents do
     * not depend on the seed). */
    for (int sp = 0; s == MC_OK && sp < MC_SPLIT_COUNT; sp++)
        if (plans[sp].path[0])
            s = mc_extract_manifest_write(c, cfg, &plans[sp], task->seed, th, chh, err);
    for (int sp = 0; sp < MC_SPLIT_COUNT; sp++) mc_dataset_free(&plans[sp].ds);
    mc_labels_free(&labels);
    return s;
}

/* ---- the registry entry ----------------------------------------------------------------------- */

/* Work done once: a store whose contents do not depend on the seed (a whole split, or a sample with
 * a fixed datasets.*.sample_seed) is extracted by one task for every seed; a per-seed sample by
 * each task. Tasks do not wait for a shared store another task writes, so the longest task does its
 * own stores and the largest shared one (or its share of them all), and the core-hours count every
 * image once. */
static void extract_cost(const mc_config *cfg, const mc_plan_inputs *in, mc_plan *p,
                         mc_plan_stage *S, double *flop, double *core_s, double *mem_b) {
    const mc_dataset_cfg *ds[3] = {&cfg->datasets.train, &cfg->datasets.eval,
                                   &cfg->datasets.unseen};
    const int64_t cnt[3] = {p->n_train, p->n_eval, p->n_unseen};
    const char *nm[3] = {"train", "eval", "unseen"};
    const double nt = in->seeds > 0 ? (double)in->seeds : 1;
    double own = 0, shared = 0, largest = 0; /* images */
    int n_own = 0, n_shared = 0;             /* stores */
    bool per_seed[3];
    for (int k = 0; k < 3; k++) {
        /* count_images gives n_samples when it is below the folder's size (or the size is unknown) */
        per_seed[k] = cnt[k] > 0 && ds[k]->n_samples > 0 && cnt[k] == ds[k]->n_samples &&
                      ds[k]->sample_seed == MC_SAMPLE_PER_SEED;
        if (cnt[k] <= 0) continue;
        if (per_seed[k])
            own += (double)cnt[k], n_own++;
        else
            shared += (double)cnt[k], n_shared++,
                largest = (double)cnt[k] > largest ? (double)cnt[k] : largest;
    }
    const double longest = own + (largest > shared / nt ? largest : shared / nt),
                 all = own * nt + shared;
    double g = p->target.gmac + (p->clip_is_target ? 0 : p->clip.gmac);
    S->items = longest;
    mc_strlcpy(S->item_name, "images", sizeof S->item_name);
    S->gmac_per_item = g;
    /* Every store holds the class prompts' text embeddings, which every rank computes in full
     * (extract.c: class_emb); the longest task writes its own stores and one shared store. */
    const double text_flop = 2e9 * in->text_gmac * (double)in->n_classes;
    const double sh_each = n_shared / nt, /* the stores as the images: own + largest or share */
        st_longest = n_own + (n_shared > 0 && sh_each < 1 ? 1 : sh_each),
                 st_all = n_own * nt + n_shared;
    const double text_s = text_flop / (in->fwd * p->threads); /* wall, one store */
    const double dec_s = (p->clip_is_target ? 1.0 : 1.3) / in->dec;
    *flop = 2e9 * g * longest + text_flop * st_longest;
    S->wall_s_task =
        (2e9 * g * longest / in->fwd + longest * dec_s) / in->cores + text_s * st_longest;
    *core_s = S->wall_s_task * in->cores;
    S->core_s_all = 2e9 * g * all / in->fwd + all * dec_s + text_s * st_all * in->cores;
    *mem_b += in->tgt_w + in->clip_w + in->text_w + p->target.arena_bytes +
              (p->clip_is_target ? 0 : p->clip.arena_bytes) +
              (double)in->eb *
                  (in->act_bytes / in->dtype_bytes * 4 +
                   3.0 * 4 * (p->target.image * p->target.image + p->clip.image * p->clip.image));
    for (int k = 0; k < 3; k++) {
        if (cnt[k] <= 0) continue;
        double per_img = in->act_bytes + 4.0 * (double)p->target.out_dim + 4.0 * (double)in->proj +
                         4 + 4 + 1 + (double)strlen(ds[k]->root) + 40 /* path string + offset */;
        double bytes = (double)cnt[k] * per_img + (double)in->n_classes * (4.0 * in->proj + 24) +
                       MC_PLAN_STORE_OVERHEAD_BYTES + (double)strlen(cfg->canonical);
        char what[160];
        if (per_seed[k])
            snprintf(what, sizeof what,
                     "extract/%s-s<seed>-<key>.h5 (%lld images, one sample per seed)", nm[k],
                     (long long)cnt[k]);
        else if (ds[k]->n_samples > 0 && cnt[k] == ds[k]->n_samples)
            snprintf(what, sizeof what,
                     "extract/%s-s%lld-<key>.h5 (%lld images, one sample for every seed)", nm[k],
                     (long long)ds[k]->sample_seed, (long long)cnt[k]);
        else
            snprintf(what, sizeof what,
                     "extract/%s-<key>.h5 (%lld images, the whole split, for every seed)", nm[k],
                     (long long)cnt[k]);
        mc_plan_add_store(p, S->stage, what, per_seed[k] ? (int)in->seeds : 1, bytes);
    }
}

const mc_stage_desc mc_extract_stage = {
    .stage = MC_STAGE_EXTRACT,
    .summary = "images -> target activations, predictions, CLIP image and class text embeddings",
    .outputs = "extract/<split>[-s<sample seed>]-<key16>.h5",
    .check = NULL,
    .run = mc_stage_extract,
    .cost = extract_cost,
};
