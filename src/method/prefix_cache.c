/* prefix_cache.c - the target model run from a cached prefix, and the prefix cache of one
 * dataset (prefix_cache.h). */
#include "method/prefix_cache.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "miclip/buf.h"
#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/image.h"
#include "miclip/log.h"
#include "miclip/miclip.h"
#include "miclip/safetensors.h"
#include "miclip/tensor.h"
#include "miclip/text.h"
#include "method/extract_key.h"

#define PREFIX_KEY_VERSION "miclip-intervene-prefix/1"
#define CLIP_LOGIT_SCALE                                                                           \
    100.0 /* OpenAI CLIP's trained (clamped) scale: a folder without logit_scale */

/* ---- the target model, run from the prefix ------------------------------------------------ */

void mc_runner_free(mc_runner *R) {
    mc_model_free(&R->m);
    memset(R, 0, sizeof *R);
}

/* A CLIP target's zero-shot probabilities are softmax(scale x cosines) with the model's own
 * trained scale, exp(logit_scale) as CLIPModel computes it (tiny world: 25.3; ViT-B/16: 100). */
static mc_status clip_logit_scale(const char *dir, double *scale, mc_error *err) {
    char path[MC_PATH_CAP];
    if (!mc_snprintf(path, sizeof path, "%s/model.safetensors", dir))
        return MC_FAIL(err, MC_ERR_ARG, "path too long: %s/model.safetensors", dir);
    mc_st_file *f = NULL;
    MC_TRY(mc_st_open(path, &f, err));
    mc_status s = MC_OK;
    *scale = CLIP_LOGIT_SCALE;
    if (mc_st_find(f, "logit_scale")) {
        float ls = 0;
        s = mc_st_read_f32_finite(f, "logit_scale", 0, NULL, &ls, err);
        if (s == MC_OK && !(ls > -20 && ls < 20))
            s = MC_FAIL(err, MC_ERR_FORMAT, "%s: tensor 'logit_scale': %g is not a log scale", path,
                        (double)ls);
        if (s == MC_OK) *scale = exp((double)ls);
    }
    mc_st_close(&f);
    return s;
}

mc_status mc_runner_find(const mc_comm *c, const mc_config *cfg, mc_runner *R, mc_error *err) {
    memset(R, 0, sizeof *R);
    R->layer = cfg->intervene.layer;
    mc_status s = mc_model_declare_dir(cfg->models.target, &R->m, err); /* config.json alone */
    if (s == MC_OK) {
        R->out_dim = mc_model_output_dim(R->m);
        R->zeroshot = mc_model_family(R->m) == MC_FAMILY_CLIP_VISION;
        R->logit_scale = 1.0; /* in the prefix key: one scalar tensor read, not the weights */
        if (R->zeroshot) s = clip_logit_scale(cfg->models.target, &R->logit_scale, err);
    }
    s = mc_comm_agree(c, s, err);
    if (s == MC_OK) s = mc_model_dir_hash(c, cfg->models.target, R->hash, err);
    if (s != MC_OK) mc_runner_free(R);
    return s;
}

mc_status mc_runner_init(const mc_comm *c, const mc_config *cfg, mc_runner *R, mc_error *err) {
    memset(R, 0, sizeof *R);
    R->layer = cfg->intervene.layer;
    mc_status s = mc_model_create(cfg->models.target, &R->m, err);
    if (s == MC_OK) s = mc_preproc_load(cfg->models.target, &R->pp, err);
    if (s == MC_OK && !mc_preproc_fixed_size(&R->pp, &R->th, &R->tw))
        s = MC_FAIL(err, MC_ERR_UNSUPPORTED,
                    "%s/preprocessor_config.json: the output size depends on the image (no crop)",
                    cfg->models.target);
    if (s == MC_OK) s = mc_model_plan(R->m, cfg->intervene.batch_size, R->th, R->tw, err);
    int idx = -1;
    if (s == MC_OK && mc_model_find_layer(R->m, R->layer, &idx, err) != MC_OK) {
        mc_error_prefix(err, "%s: intervene.layer: %s", cfg->source_path, cfg->models.target);
        s = err->code = MC_ERR_CONFIG;
    }
    if (s == MC_OK) {
        const mc_layer_info *li = mc_model_layer(R->m, idx);
        if (!li->can_start || li->ndim < 2)
            s = MC_FAIL(err, MC_ERR_CONFIG,
                        "%s: intervene.layer: '%s' of %s is not a point a forward can start from "
                        "(a transformer block \"0\"..\"L\" or a ResNet stage/layer)",
                        cfg->source_path, R->layer, cfg->models.target);
        else {
            R->map = li->ndim == 3;
            R->ndim = li->ndim;
            R->per = 1;
            for (int d = 0; d < li->ndim; d++) R->shape[d] = li->shape[d], R->per *= li->shape[d];
            /* [T, D]: T tokens of width D; [C, H, W]: H*W positions of C channels. */
            R->tokens = R->map ? li->shape[1] * li->shape[2] : li->shape[0];
            R->dim = R->map ? li->shape[0] : li->shape[1];
        }
    }
    if (s == MC_OK) {
        R->out_dim = mc_model_output_dim(R->m);
        R->zeroshot = mc_model_family(R->m) == MC_FAMILY_CLIP_VISION;
        R->logit_scale = 1.0;
        if (R->zeroshot) s = clip_logit_scale(cfg->models.target, &R->logit_scale, err);
        if (!R->zeroshot && !mc_model_label(R->m, 0))
            s = MC_FAIL(err, MC_ERR_CONFIG,
                        "%s: models.target %s has no id2label; intervene measures per-class "
                        "accuracy",
                        cfg->source_path, cfg->models.target);
    }
    s = mc_comm_agree(c, s, err);
    if (s == MC_OK) s = mc_model_dir_hash(c, cfg->models.target, R->hash, err);
    if (s != MC_OK) mc_runner_free(R);
    return s;
}

static int32_t argmax_row(const float *row, int64_t n) {
    int32_t best = 0;
    for (int64_t k = 1; k < n; k++)
        if (row[k] > row[best]) best = (int32_t)k; /* first index of the max, as torch */
    return best;
}

/* Predictions in the dataset's class space: a classifier's argmax mapped to the dataset class of
 * that label (-1: a target class outside the dataset); a CLIP target classifies zero-shot. prob
 * receives the probability of dataset class k (softmax of the logits, or of 100 x the cosines).
 * scores: [B * C] scratch for a CLIP target. */
void mc_runner_predict(const mc_runner *R, const int32_t *class_of_target, const float *class_emb,
                       int64_t C, int64_t k, const float *out, int64_t B, int32_t *pred,
                       float *prob, float *scores) {
    if (R->zeroshot) mc_zeroshot_classify(class_emb, C, out, B, R->out_dim, pred, scores);
    for (int64_t i = 0; i < B; i++) {
        const float *row = R->zeroshot ? scores + i * C : out + i * R->out_dim;
        const int64_t n = R->zeroshot ? C : R->out_dim;
        const double scale = R->logit_scale;
        int32_t best = argmax_row(row, n);
        if (!R->zeroshot) pred[i] = class_of_target[best];
        double sum = 0, mine = 0;
        for (int64_t j = 0; j < n; j++) {
            double e = exp(scale * ((double)row[j] - (double)row[best]));
            sum += e;
            if (R->zeroshot ? j == k : class_of_target[j] == k) mine += e;
        }
        prob[i] = (float)(mine / sum);
    }
}

/* ---- the prefix cache of one dataset ----------------------------------------------------- */

enum { PREFIX_WAIT_TRIES = 600 }; /* 2 s apart: a concurrent writer gets 20 minutes */

void mc_prefix_close(mc_prefix_set *p) {
    if (p->st) mc_store_close(&p->st, NULL);
    mc_strings_free(&p->class_names, p->C);
    free(p->class_of_target);
    free(p->class_emb);
    free(p->first);
    free(p->labels);
    free(p->clean_pred);
    free(p->clean_prob);
    mc_strings_free(&p->paths, p->n_paths);
    free(p->image);
    free(p->pix);
    free(p->batch);
    memset(p, 0, sizeof *p);
}

/* The fixed batches: each class's rows cut in pieces of at most bs. */
mc_row_unit *mc_class_batches(const int64_t *first, int64_t C, int64_t bs, int64_t *n_out) {
    int64_t n = 0;
    for (int64_t c = 0; c < C; c++) n += (first[c + 1] - first[c] + bs - 1) / bs;
    mc_row_unit *u = mc_alloc_array((size_t)(n > 0 ? n : 1), sizeof *u);
    if (!u) return NULL;
    int64_t k = 0;
    for (int64_t c = 0; c < C; c++)
        for (int64_t b = first[c]; b < first[c + 1]; b += bs)
            u[k++] = (mc_row_unit){c, b, b + bs < first[c + 1] ? b + bs : first[c + 1]};
    *n_out = n;
    return u;
}

static bool capture_fn(const mc_hook_view *v, void *user) {
    memcpy(user, v->data,
           (size_t)(v->shape[0]) * (size_t)mc_pool_dim(v, MC_POOL_ALL) * sizeof(float));
    return true;
}

/* The state at the layer of rows [b, e) (one fixed batch): decode, preprocess and the forward up
 * to the layer. */
static mc_status batch_state(const mc_runner *R, char **paths, const int64_t *image, int64_t b,
                             int64_t e, float *pix, float *state, mc_error *err) {
    const int64_t B = e - b;
    const size_t per_px = (size_t)3 * (size_t)R->th * (size_t)R->tw;
    for (int64_t i = 0; i < B; i++) {
        mc_image img = {0};
        mc_status s = mc_image_load(paths[image[b + i]], NULL, &img, err);
        if (s == MC_OK) s = mc_preprocess(&R->pp, &img, pix + (size_t)i * per_px, NULL, err);
        mc_image_free(&img);
        if (s != MC_OK) {
            mc_error_prefix(err, "intervene: image %lld (valid at extraction)",
                            (long long)image[b + i]);
            return s;
        }
    }
    mc_hook cap = {.name = R->layer, .mode = MC_HOOK_READ, .fn = capture_fn, .user = state};
    mc_forward_opts o1 = {.hooks = &cap, .n_hooks = 1};
    MC_TRY(mc_model_forward(R->m, pix, B, R->th, R->tw, &o1, NULL, NULL, err));
    for (int64_t j = 0; j < B * R->per; j++)
        if (!isfinite(state[j]))
            return MC_FAIL(err, MC_ERR_NUMERIC, "non-finite state at layer '%s' for image %s",
                           R->layer, paths[image[b + j / R->per]]);
    return MC_OK;
}

mc_status mc_prefix_provenance(mc_store *st, const mc_config *cfg, const mc_runner *R,
                               const mc_prefix_set *p, mc_error *err) {
    mc_store_provenance prov = {.stage = "intervene",
                                .config_hash = cfg->hash,
                                .model = R->hash,
                                .dataset = mc_split_name(p->split),
                                .has_seed = false};
    return mc_store_write_provenance(st, "/", &prov, err);
}

mc_status mc_prefix_state(const mc_runner *R, mc_prefix_set *p, int64_t b, int64_t e, float *state,
                          mc_error *err) {
    if (!p->recompute) {
        int64_t start[4] = {b, 0, 0, 0}, count[4] = {e - b, R->shape[0], R->shape[1], R->shape[2]};
        return mc_store_read_slice(p->st, "state", MC_DTYPE_F32, start, count, state, false, err);
    }
    /* The batches that hold rows [b, e): class c's rows [first[c], first[c+1]) in pieces of bs
     * from first[c] (mc_class_batches). */
    for (int64_t r = b; r < e;) {
        const int64_t c = p->labels[r], f = p->first[c];
        const int64_t u0 = f + (r - f) / p->bs * p->bs;
        const int64_t u1 = u0 + p->bs < p->first[c + 1] ? u0 + p->bs : p->first[c + 1];
        /* reads that are not batch-aligned (the precision's) meet a batch twice: keep the last */
        if (p->batch_b != u0 || p->batch_e != u1) {
            p->batch_b = p->batch_e = 0;
            MC_TRY(batch_state(R, p->paths, p->image, u0, u1, p->pix, p->batch, err));
            p->batch_b = u0, p->batch_e = u1;
        }
        const int64_t to = u1 < e ? u1 : e;
        memcpy(state + (r - b) * R->per, p->batch + (r - u0) * R->per,
               (size_t)((to - r) * R->per) * sizeof(float));
        r = to;
    }
    return MC_OK;
}

/* Rows [b, e) of the prefix: images, state, clean logits and predictions. half != NULL
 * (intervene.cache_dtype f16): the state is rounded to float16 (stored in half) and the clean
 * suffix runs from the rounded state, the one every edited run reads back. */
static mc_status prefix_unit(mc_runner *R, const mc_prefix_set *p, char **paths,
                             const int64_t *image, int64_t b, int64_t e, float *pix, float *state,
                             uint16_t *half, float *logits, int32_t *pred, float *prob,
                             float *scores, mc_error *err) {
    const int64_t B = e - b;
    MC_TRY(batch_state(R, paths, image, b, e, pix, state, err));
    for (int64_t j = 0; half && j < B * R->per; j++) {
        const float x = state[j];
        half[j] = mc_f32_to_f16(x);
        state[j] = mc_f16_to_f32(half[j]);
        if (!isfinite(state[j]))
            return MC_FAIL(err, MC_ERR_NUMERIC,
                           "state %g at layer '%s' for image %s is beyond float16's range; set "
                           "intervene.cache_dtype: f32",
                           (double)x, R->layer, paths[image[b + j / R->per]]);
    }
    mc_forward_opts o2 = {.start_at = R->layer, .start_state = state};
    MC_TRY(mc_model_forward(R->m, pix, B, R->th, R->tw, &o2, logits, NULL, err));
    mc_runner_predict(R, p->class_of_target, p->class_emb, p->C, p->labels[b], logits, B, pred,
                      prob, scores);
    return MC_OK;
}

static mc_status prefix_build(const mc_comm *c, const mc_config *cfg, mc_runner *R,
                              mc_prefix_set *p, char **paths, const int64_t *image, mc_error *err) {
    const int64_t C = p->C, bs = cfg->intervene.batch_size;
    const bool f16 = cfg->intervene.cache_dtype == 1;
    int64_t n_units = 0;
    mc_row_unit *units = mc_class_batches(p->first, C, bs, &n_units);
    mc_status s = units ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    MC_TRY(mc_comm_agree(c, s, err));
    mc_store *st = NULL;
    bool created = false;
    s = mc_store_resume(c, p->path, &st, &created, err);
    /* Another task finished it between our peek and our lock: leave a complete store as it is
     * (the Slurm array's other tasks may be reading it). */
    if (s == MC_OK && !created && mc_store_is_complete(st, "/")) {
        free(units);
        return mc_store_close(&st, err);
    }
    if (s != MC_OK) {
        free(units);
        return s;
    }
    bool root = c->rank == 0;
    const int64_t N = p->n;
    const bool keep_state = !p->recompute;
    if (created) {
        int64_t sh[4] = {N, R->shape[0], R->shape[1], R->shape[2]};
        if (keep_state)
            s = mc_store_create_dataset(st, "state", f16 ? MC_DTYPE_F16 : MC_DTYPE_F32, 1 + R->ndim,
                                        sh, bs, err);
        if (s == MC_OK && keep_state)
            s = mc_store_set_attr_str(st, "state", "layer", R->layer, err);
        if (s == MC_OK) s = mc_store_create_dataset(st, "labels", MC_DTYPE_I32, 1, sh, 0, err);
        if (s == MC_OK)
            s = mc_store_write_rows(st, "labels", MC_DTYPE_I32, 0, root ? N : 0, p->labels, err);
        if (s == MC_OK) s = mc_store_create_dataset(st, "image_index", MC_DTYPE_I64, 1, sh, 0, err);
        if (s == MC_OK)
            s = mc_store_write_rows(st, "image_index", MC_DTYPE_I64, 0, root ? N : 0, image, err);
        if (s == MC_OK) s = mc_store_create_dataset(st, "clean_pred", MC_DTYPE_I32, 1, sh, 0, err);
        if (s == MC_OK) s = mc_store_create_dataset(st, "clean_prob", MC_DTYPE_F32, 1, sh, 0, err);
        sh[1] = R->out_dim;
        if (s == MC_OK)
            s = mc_store_create_dataset(st, "clean_logits", MC_DTYPE_F32, 2, sh, bs, err);
        sh[0] = C;
        if (s == MC_OK)
            s = mc_store_create_dataset(st, "clean_class_acc", MC_DTYPE_F64, 1, sh, 0, err);
        sh[0] = C + 1;
        if (s == MC_OK)
            s = mc_store_create_dataset(st, "class_first_row", MC_DTYPE_I64, 1, sh, 0, err);
        if (s == MC_OK)
            s = mc_store_write_rows(st, "class_first_row", MC_DTYPE_I64, 0, root ? C + 1 : 0,
                                    p->first, err);
        if (s == MC_OK) s = mc_prefix_provenance(st, cfg, R, p, err);
        if (s == MC_OK) s = mc_store_set_attr_str(st, "/", "prefix_key", p->key, err);
        if (s == MC_OK) s = mc_store_set_attr_str(st, "/", "split", mc_split_name(p->split), err);
        if (s == MC_OK) s = mc_store_set_attr_str(st, "/", "layer", R->layer, err);
        if (s == MC_OK) s = mc_store_set_attr_i64(st, "/", "batch_size", bs, err);
    }
    if (s == MC_OK) s = mc_store_units_init(st, "/", n_units > 0 ? n_units : 1, err);
    if (s == MC_OK && created) s = mc_store_mark_layout(st, err);
    s = mc_comm_agree(c, s, err);

    uint8_t *done = calloc((size_t)(n_units > 0 ? n_units : 1), 1);
    int64_t *pending = mc_alloc_array((size_t)(n_units > 0 ? n_units : 1), sizeof *pending);
    float *pix = mc_alloc_array((size_t)bs, (size_t)3 * R->th * R->tw * sizeof(float));
    float *state = mc_alloc_array((size_t)bs, (size_t)R->per * sizeof(float));
    uint16_t *half = f16 ? mc_alloc_array((size_t)bs, (size_t)R->per * sizeof(uint16_t)) : NULL;
    float *logits = mc_alloc_array((size_t)bs, (size_t)R->out_dim * sizeof(float));
    int32_t *pred = mc_alloc_array((size_t)bs, sizeof *pred);
    float *prob = mc_alloc_array((size_t)bs, sizeof *prob);
    float *scores = mc_alloc_array((size_t)bs, (size_t)C * sizeof *scores);
    if (s == MC_OK && (!done || !pending || !pix || !state || !logits || !pred || !prob ||
                       !scores || (f16 && !half)))
        s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory for a batch of %lld images", (long long)bs);
    s = mc_comm_agree(c, s, err);
    int64_t n_pending = 0, n_done = 0;
    if (s == MC_OK) s = mc_store_units_read(st, "/", n_units > 0 ? n_units : 1, done, &n_done, err);
    for (int64_t u = 0; s == MC_OK && u < n_units; u++)
        if (!done[u]) pending[n_pending++] = u;
    if (s == MC_OK && n_done > 0)
        mc_info0("intervene: prefix of %s resuming, %lld of %lld batches done",
                 mc_split_name(p->split), (long long)n_done, (long long)n_units);
    mc_progress prog;
    mc_progress_start(&prog, "prefix", n_pending, "batch");
    int64_t rounds = (n_pending + c->size - 1) / c->size;
    for (int64_t r = 0; s == MC_OK && r < rounds; r++) {
        int64_t slot = r * c->size + c->rank, unit = -1, b = 0, e = 0;
        mc_status ls = MC_OK;
        if (slot < n_pending) {
            unit = pending[slot];
            b = units[unit].b, e = units[unit].e;
            ls = prefix_unit(R, p, paths, image, b, e, pix, state, half, logits, pred, prob, scores,
                             err);
        }
        s = mc_comm_agree(c, ls, err);
        if (s == MC_OK && keep_state)
            s = f16 ? mc_store_write_rows(st, "state", MC_DTYPE_F16, b, e, half, err)
                    : mc_store_write_rows(st, "state", MC_DTYPE_F32, b, e, state, err);
        if (s == MC_OK)
            s = mc_store_write_rows(st, "clean_logits", MC_DTYPE_F32, b, e, logits, err);
        if (s == MC_OK) s = mc_store_write_rows(st, "clean_pred", MC_DTYPE_I32, b, e, pred, err);
        if (s == MC_OK) s = mc_store_write_rows(st, "clean_prob", MC_DTYPE_F32, b, e, prob, err);
        if (s == MC_OK) s = mc_store_units_mark(st, "/", &unit, unit >= 0 ? 1 : 0, err);
        mc_progress_update(&prog, (r + 1) * c->size < n_pending ? (r + 1) * c->size : n_pending);
        if (s == MC_OK && mc_comm_stop_requested(c))
            s = MC_FAIL(err, MC_ERR_INTERRUPTED,
                        "intervene: prefix of %s stopped by signal; the store is consistent, "
                        "rerun to resume (%s)",
                        mc_split_name(p->split), p->path);
    }
    mc_progress_finish(&prog);
    /* The clean per-class accuracy, from the stored predictions (rank 0 writes). */
    int32_t *cp = mc_alloc_array((size_t)(N > 0 ? N : 1), sizeof *cp);
    double *acc = mc_alloc_array((size_t)C, sizeof *acc);
    if (s == MC_OK)
        s = mc_comm_agree(c, cp && acc ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory"), err);
    if (s == MC_OK) s = mc_store_read_rows(st, "clean_pred", MC_DTYPE_I32, 0, N, cp, err);
    if (s == MC_OK) {
        for (int64_t k = 0; k < C; k++) {
            int64_t hit = 0, n = p->first[k + 1] - p->first[k];
            for (int64_t i = p->first[k]; i < p->first[k + 1]; i++) hit += cp[i] == k;
            acc[k] = n ? (double)hit / (double)n : NAN;
        }
        s = mc_store_write_rows(st, "clean_class_acc", MC_DTYPE_F64, 0, root ? C : 0, acc, err);
    }
    s = mc_store_finish(&st, s, err);
    if (s == MC_OK)
        mc_info0("intervene: prefix of %s: %lld images at layer %s -> %s", mc_split_name(p->split),
                 (long long)N, R->layer, p->path);
    free(cp), free(acc), free(units), free(done), free(pending), free(pix), free(state), free(half),
        free(logits), free(pred);
    free(prob), free(scores);
    return s;
}

/* Finds the split's extraction store, lists its valid images by class, and builds (or resumes,
 * or opens) the prefix cache. Collective. */
static mc_status prefix_open(const mc_comm *c, const mc_config *cfg, mc_runner *R, mc_split split,
                             int64_t seed, bool find_only, mc_prefix_set *p, mc_error *err) {
    memset(p, 0, sizeof *p);
    p->split = split;
    p->recompute = cfg->intervene.prefix == MC_PREFIX_RECOMPUTE;
    p->bs = cfg->intervene.batch_size;
    char xpath[MC_PATH_CAP];
    MC_TRY(mc_extract_store_path(c, cfg, split, seed, xpath, sizeof xpath, err));
    bool complete = false;
    MC_TRY(mc_store_peek_complete(c, xpath, &complete, err));
    if (!complete)
        return MC_FAIL(
            err, MC_ERR_ARG,
            "the %s images of seed %lld are not extracted (%s missing or incomplete); run "
            "the extract stage first (miclip extract CONFIG)",
            mc_split_name(split), (long long)seed, xpath);
    mc_store *x = NULL;
    MC_TRY(mc_store_open(c, xpath, MC_STORE_READ, &x, err));
    char *xkey = NULL, **paths = NULL;
    int64_t N = 0;
    mc_store_dataset_info li;
    mc_status s = mc_store_get_attr_str(x, "/", "extract_key", &xkey, err);
    if (s == MC_OK) s = mc_store_read_strings(x, "images/paths", &paths, &N, err);
    if (s == MC_OK) s = mc_store_read_strings(x, "classes/names", &p->class_names, &p->C, err);
    if (s == MC_OK && p->C < 1) s = MC_FAIL(err, MC_ERR_FORMAT, "%s: no classes", xpath);
    if (s == MC_OK) s = mc_store_dataset_info_get(x, "images/labels", &li, err);
    if (s == MC_OK && (li.ndim != 1 || li.shape[0] != N))
        s = MC_FAIL(err, MC_ERR_FORMAT, "%s: images/labels has %lld entries for %lld paths", xpath,
                    (long long)li.shape[0], (long long)N);
    int32_t *lab = s == MC_OK ? mc_alloc_array((size_t)(N > 0 ? N : 1), sizeof *lab) : NULL;
    uint8_t *valid = s == MC_OK ? mc_alloc_array((size_t)(N > 0 ? N : 1), 1) : NULL;
    int64_t *image = s == MC_OK ? mc_alloc_array((size_t)(N > 0 ? N : 1), sizeof *image) : NULL;
    const int64_t C = p->C;
    p->first = calloc((size_t)C + 1, sizeof *p->first);
    p->labels = mc_alloc_array((size_t)(N > 0 ? N : 1), sizeof *p->labels);
    p->class_of_target = mc_alloc_array((size_t)R->out_dim, sizeof *p->class_of_target);
    if (R->zeroshot) p->class_emb = mc_alloc_array((size_t)C, (size_t)R->out_dim * sizeof(float));
    if (s == MC_OK && (!lab || !valid || !image || !p->first || !p->labels || !p->class_of_target ||
                       (R->zeroshot && !p->class_emb)))
        s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    s = mc_comm_agree(c, s, err);
    if (s == MC_OK) s = mc_store_read_rows(x, "images/labels", MC_DTYPE_I32, 0, N, lab, err);
    if (s == MC_OK) s = mc_store_read_rows(x, "images/valid", MC_DTYPE_U8, 0, N, valid, err);
    if (s == MC_OK && R->zeroshot) {
        mc_store_dataset_info ei;
        s = mc_store_dataset_info_get(x, "text/class_embeds", &ei, err);
        if (s == MC_OK && (ei.ndim != 2 || ei.shape[0] != C || ei.shape[1] != R->out_dim))
            s = MC_FAIL(err, MC_ERR_FORMAT, "%s: text/class_embeds is not [%lld, %lld]", xpath,
                        (long long)C, (long long)R->out_dim);
        if (s == MC_OK)
            s = mc_store_read_rows(x, "text/class_embeds", MC_DTYPE_F32, 0, C, p->class_emb, err);
    }
    mc_store_close(&x, NULL);
    /* A classifier's label j counts for dataset class k when their names agree. */
    bool any = R->zeroshot;
    bool *mapped = s == MC_OK ? calloc((size_t)C, sizeof *mapped) : NULL;
    if (s == MC_OK && !mapped) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    for (int64_t j = 0; s == MC_OK && j < R->out_dim; j++) {
        p->class_of_target[j] = -1;
        for (int64_t k = 0; !R->zeroshot && k < C && p->class_of_target[j] < 0; k++)
            if (!strcasecmp(mc_model_label(R->m, j), p->class_names[k]))
                p->class_of_target[j] = (int32_t)k, mapped[k] = any = true;
    }
    if (s == MC_OK && R->zeroshot)
        for (int64_t k = 0; k < C; k++) mapped[k] = true;
    if (s == MC_OK && !any) {
        p->skip = true;
        mc_info0("intervene: none of the %lld %s classes ('%s', ...) is a class of the target %s; "
                 "%s skipped (a CLIP "
                 "target classifies such classes zero-shot)",
                 (long long)C, mc_split_name(split), p->class_names[0], cfg->models.target,
                 mc_split_name(split));
    }
    if (s == MC_OK && !p->skip) {
        /* Rows sorted by (class, index): every class is one contiguous block. */
        int64_t n = 0;
        for (int64_t k = 0; k < C; k++) {
            p->first[k] = n;
            for (int64_t i = 0; mapped[k] && i < N; i++)
                if (valid[i] && lab[i] == k) image[n] = i, p->labels[n++] = (int32_t)k;
        }
        p->first[C] = p->n = n;
        mc_buf b = {0};
        mc_buf_printf(&b, "%s\ncode=%s\nextract=%s\ntarget=%s\nlayer=%s\nbatch=%lld\n",
                      PREFIX_KEY_VERSION, MICLIP_CACHE_VERSION, xkey, R->hash, R->layer,
                      (long long)cfg->intervene.batch_size);
        /* A CLIP target's probabilities changed from a fixed 100 to the model's own scale. */
        if (R->zeroshot) mc_buf_printf(&b, "logit_scale=%.17g\n", R->logit_scale);
        /* Only f16 names its dtype: the float32 caches keep the keys they had. */
        if (cfg->intervene.cache_dtype == 1) mc_buf_printf(&b, "state_dtype=f16\n");
        /* A store without the state is another store: a cache run must not take it. */
        if (cfg->intervene.prefix == MC_PREFIX_RECOMPUTE) mc_buf_printf(&b, "state=recompute\n");
        char tag[256];
        mc_layer_tag(R->layer, tag, sizeof tag);
        if (b.oom)
            s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        else
            mc_key_of(b.p, p->key);
        mc_buf_free(&b);
        /* No seed in the name: the key (the extraction store's among others) says what the prefix
         * holds, so seeds that share an extraction store share its prefix too. */
        if (s == MC_OK &&
            !mc_snprintf(p->path, sizeof p->path, "%s/intervene/prefix-%s-l%s-%.16s.h5",
                         cfg->output_dir, mc_split_name(split), tag, p->key))
            s = MC_FAIL(err, MC_ERR_ARG, "output path too long under %s", cfg->output_dir);
        if (s == MC_OK && n == 0)
            s = MC_FAIL(err, MC_ERR_ARG,
                        "%s: no valid %s image has one of the target's %lld classes as its label",
                        xpath, mc_split_name(split), (long long)C);
    }
    free(mapped);
    if (s != MC_OK || p->skip || find_only) {
        free(xkey), free(lab), free(valid), free(image);
        mc_strings_free(&paths, N);
        if (s != MC_OK) mc_prefix_close(p);
        return s;
    }
    /* Tasks of one seed share the prefix: under a Slurm array they run at once, and all but one
     * find the store locked. They wait for the writer (its store is then complete) instead of
     * failing; a writer that died leaves no lock, and the next attempt resumes its store. */
    for (int attempt = 0; s == MC_OK; attempt++) {
        s = mc_store_peek_complete(c, p->path, &complete, err);
        if (s != MC_OK) break;
        if (complete) {
            mc_info0("intervene: prefix of %s complete, reusing (%s)", mc_split_name(split),
                     p->path);
            break;
        }
        char dir[MC_PATH_CAP];
        mc_snprintf(dir, sizeof dir, "%s/intervene", cfg->output_dir);
        s = mc_comm_agree(c, c->rank == 0 ? mc_mkdir_p(dir, err) : MC_OK, err);
        if (s == MC_OK) s = prefix_build(c, cfg, R, p, paths, image, err);
        if (s == MC_ERR_LOCKED && attempt < PREFIX_WAIT_TRIES) {
            if (attempt == 0) mc_info0("intervene: another run is writing %s; waiting", p->path);
            sleep(2);
            s = MC_OK;
            continue;
        }
        break;
    }
    if (s == MC_OK) s = mc_store_open(c, p->path, MC_STORE_READ, &p->st, err);
    p->clean_pred = s == MC_OK ? mc_alloc_array((size_t)p->n, sizeof *p->clean_pred) : NULL;
    p->clean_prob = s == MC_OK ? mc_alloc_array((size_t)p->n, sizeof *p->clean_prob) : NULL;
    if (s == MC_OK && (!p->clean_pred || !p->clean_prob))
        s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    s = mc_comm_agree(c, s, err);
    if (s == MC_OK)
        s = mc_store_read_rows(p->st, "clean_pred", MC_DTYPE_I32, 0, p->n, p->clean_pred, err);
    if (s == MC_OK)
        s = mc_store_read_rows(p->st, "clean_prob", MC_DTYPE_F32, 0, p->n, p->clean_prob, err);
    if (s == MC_OK && p->recompute) { /* the images stay, for mc_prefix_state */
        p->paths = paths, p->n_paths = N, p->image = image;
        paths = NULL, image = NULL, N = 0;
        p->pix = mc_alloc_array((size_t)p->bs, (size_t)3 * R->th * R->tw * sizeof(float));
        p->batch = mc_alloc_array((size_t)p->bs, (size_t)R->per * sizeof(float));
        if (!p->pix || !p->batch) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    s = mc_comm_agree(c, s, err);
    free(xkey), free(lab), free(valid), free(image);
    mc_strings_free(&paths, N);
    if (s != MC_OK) mc_prefix_close(p);
    return s;
}

mc_status mc_prefix_find(const mc_comm *c, const mc_config *cfg, mc_runner *R, mc_split split,
                         int64_t seed, mc_prefix_set *p, mc_error *err) {
    return prefix_open(c, cfg, R, split, seed, true, p, err);
}

mc_status mc_prefix_open(const mc_comm *c, const mc_config *cfg, mc_runner *R, mc_split split,
                         int64_t seed, mc_prefix_set *p, mc_error *err) {
    return prefix_open(c, cfg, R, split, seed, false, p, err);
}
