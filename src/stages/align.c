/* align.c - the `align` stage: the neuron encoder E_n of one (seed, layer, variant), trained
 * with the symmetric InfoNCE of train.h on the training store's activations (the per-image
 * vector: the pooled row, the CLS token or a feature map's spatial mean), against the prompted
 * text embedding of the target's predicted class (text/class_embeds[predictions]) and the
 * CLIP image embedding. Images flagged invalid by extraction are skipped.
 *
 * Checkpoints every align.checkpoint_every steps and on SIGUSR1/SIGTERM (exit 75); a rerun
 * resumes and ends bitwise equal to an uninterrupted run. Output:
 * OUTPUT_DIR/align/align-s<seed>-l<layer>-<variant>-<key16>.h5 (docs/stages.md).
 */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "miclip/buf.h"
#include "method/acts.h"
#include "method/concepts.h"
#include "method/extract_key.h"
#include "method/keys.h"
#include "method/method_task.h"
#include "method/similarity.h"
#include "method/train_data.h"
#include "method/training.h"
#include "method/unit_tables.h"
#include "method/units.h"
#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/log.h"
#include "miclip/plan.h"
#include "miclip/miclip.h"
#include "stages_internal.h"

typedef struct {
    mc_acts *acts, *img;
    const int64_t *imgs; /* sample -> image row */
    const int32_t *pred;
    int64_t *tmp;
    int64_t tmp_cap;
} align_source;

static mc_status align_fetch(void *user, const int64_t *idx, int64_t rows, float *acts, float *img,
                             int32_t *label, mc_error *err) {
    align_source *src = user;
    if (rows > src->tmp_cap) {
        free(src->tmp);
        src->tmp = mc_alloc_array((size_t)rows, sizeof(int64_t));
        src->tmp_cap = src->tmp ? rows : 0;
        if (!src->tmp) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    for (int64_t r = 0; r < rows; r++) {
        src->tmp[r] = src->imgs[idx[r]];
        label[r] = src->pred[src->tmp[r]];
    }
    MC_TRY(mc_acts_vectors(src->acts, src->tmp, rows, acts, err));
    return mc_acts_vectors(src->img, src->tmp, rows, img, err);
}

static mc_status write_align_store(const mc_comm *c, const mc_config *cfg, const mc_task *task,
                                   const mc_train_data *td, const mc_run_paths *p, mc_encoder *enc,
                                   const mc_train_curve *curve, const mc_train_pos *pos, int64_t n_samples,
                                   int64_t n_skipped, mc_error *err) {
    const mc_align_config *ac = mc_encoder_config(enc);
    bool root = c->rank == 0;
    mc_store *st = NULL;
    MC_TRY(mc_store_fresh(c, p->store, &st, err));
    int64_t sh[2] = {ac->d, ac->n}, sh1[1] = {curve->count};
    mc_status s = mc_store_create_dataset(st, "W", MC_DTYPE_F32, 2, sh, 0, err);
    if (s == MC_OK) s = mc_store_write_rows(st, "W", MC_DTYPE_F32, 0, root ? ac->d : 0, mc_encoder_weight(enc), err);
    const char *cn[4] = {"curves/loss", "curves/loss_out", "curves/loss_in", "curves/logit_scale"};
    const float *cv[4] = {curve->loss, curve->loss_a, curve->loss_b, curve->extra};
    for (int i = 0; s == MC_OK && i < 4; i++) {
        s = mc_store_create_dataset(st, cn[i], MC_DTYPE_F32, 1, sh1, 0, err);
        if (s == MC_OK) s = mc_store_write_rows(st, cn[i], MC_DTYPE_F32, 0, root ? curve->count : 0, cv[i], err);
    }
    mc_store_provenance prov = {.stage = "align", .config_hash = cfg->hash, .model = td->extract_key,
                                .dataset = td->path, .seed = task->seed, .has_seed = true};
    if (s == MC_OK) s = mc_store_write_provenance(st, "/", &prov, err);
    struct { const char *k; const char *v; } sa[] = {
        {"align_key", p->key}, {"extract_key", td->extract_key}, {"extract_store", td->path},
        {"layer", task->layer}, {"variant", mc_variant_name(task->variant)}, {"config", cfg->canonical}};
    for (size_t i = 0; s == MC_OK && i < sizeof sa / sizeof sa[0]; i++) s = mc_store_set_attr_str(st, "/", sa[i].k, sa[i].v, err);
    float ls = mc_encoder_log_scale(enc);
    struct { const char *k; int64_t v; } ia[] = {
        {"n_samples", n_samples}, {"n_skipped_images", n_skipped}, {"steps", pos->global_step},
        {"n", ac->n}, {"d", ac->d}, {"learn_scale", ac->learn_scale}};
    for (size_t i = 0; s == MC_OK && i < sizeof ia / sizeof ia[0]; i++) s = mc_store_set_attr_i64(st, "/", ia[i].k, ia[i].v, err);
    int64_t last = curve->count - 1;
    struct { const char *k; double v; } fa[] = {
        {"log_logit_scale", ls}, {"logit_scale", expf(ls)},
        {"final_loss", last >= 0 ? curve->loss[last] : NAN}, {"final_loss_out", last >= 0 ? curve->loss_a[last] : NAN},
        {"final_loss_in", last >= 0 ? curve->loss_b[last] : NAN}};
    for (size_t i = 0; s == MC_OK && i < sizeof fa / sizeof fa[0]; i++) s = mc_store_set_attr_f64(st, "/", fa[i].k, fa[i].v, err);
    s = mc_store_finish(&st, s, err);
    return s;
}

mc_status mc_stage_align(const mc_comm *c, const mc_config *cfg, const mc_task *task, mc_error *err) {
    mc_train_data td;
    MC_TRY(mc_train_data_open(c, cfg, task->seed, &td, err));
    mc_run_paths p;
    bool complete = false;
    mc_status s = mc_align_paths(cfg, td.extract_key, task->seed, task->layer, task->variant, &p, err);
    if (s == MC_OK) s = mc_store_peek_complete(c, p.store, &complete, err);
    if (s != MC_OK || complete) {
        if (complete) mc_info0("align %s: complete, skipping (%s)", task->id, p.store);
        mc_train_data_close(&td);
        return s;
    }
    s = mc_comm_agree(c, c->rank == 0 ? mc_mkdir_p(p.dir, err) : MC_OK, err);
    mc_acts a = {0}, im = {0};
    if (s == MC_OK) s = mc_acts_open(c, td.st, task->layer, &a, err);
    if (s == MC_OK) s = mc_acts_open_dataset(c, td.st, "clip/image_embeds", &im, err);
    if (s == MC_OK && (im.layout != MC_ACTS_VEC || im.dim != td.clip_dim))
        s = MC_FAIL(err, MC_ERR_FORMAT, "%s: clip/image_embeds is not [N, %lld]", td.path, (long long)td.clip_dim);
    /* Samples: valid images with a prediction (in the class table when the variant uses it). */
    const bool uses_out = task->variant != MC_VARIANT_IN;
    int64_t *imgs = mc_alloc_array((size_t)td.n_img + 1, sizeof(int64_t)), n_samples = 0;
    if (s == MC_OK && !imgs) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; s == MC_OK && i < td.n_img; i++) {
        if (!td.valid[i] || td.pred[i] < 0) continue;
        if (uses_out && td.pred[i] >= td.n_classes) {
            s = MC_FAIL(err, MC_ERR_UNSUPPORTED, "%s: image %lld is predicted as label %d, but the class text "
                        "embeddings cover %lld classes (the dataset's classes are not the target's id2label); "
                        "HINT: give datasets.train.class_names so the classes map to the target's labels, or "
                        "use align.variants: [in]", td.path, (long long)i, (int)td.pred[i], (long long)td.n_classes);
            break;
        }
        imgs[n_samples++] = i;
    }
    if (s == MC_OK && n_samples < 2)
        s = MC_FAIL(err, MC_ERR_ARG, "align: %lld usable training images in %s; need at least 2", (long long)n_samples, td.path);
    float *class_emb = mc_alloc_array((size_t)td.n_classes, (size_t)td.clip_dim * sizeof(float));
    if (s == MC_OK && !class_emb) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    s = mc_comm_agree(c, s, err);
    if (s == MC_OK) s = mc_store_read_rows(td.st, "text/class_embeds", MC_DTYPE_F32, 0, td.n_classes, class_emb, err);
    mc_align_config ac = mc_align_config_of(cfg, a.dim, td.clip_dim, td.n_classes, task->variant, task->seed);
    mc_encoder *enc = NULL;
    if (s == MC_OK) s = mc_comm_agree(c, mc_encoder_create(&ac, class_emb, &enc, err), err);
    mc_train_pos pos = {0};
    mc_train_curve curve = {0};
    if (s == MC_OK) s = mc_stage_resume_checkpoint(c, &p, enc, NULL, &pos, &curve, "align", err);
    align_source src = {.acts = &a, .img = &im, .imgs = imgs, .pred = td.pred};
    mc_stage_hook hook = {.comm = c, .enc = enc, .curve = &curve, .ckpt = p.ckpt, .curve_path = p.curve,
                          .key = p.key, .every = cfg->align.checkpoint_every, .what = "align"};
    if (s == MC_OK && pos.epoch < ac.epochs) {
        mc_info0("align %s: %lld samples of %lld -> %lld, batch %lld, %d epoch(s)", task->id, (long long)n_samples,
                 (long long)ac.n, (long long)ac.d, (long long)ac.batch_size, ac.epochs);
        double t0 = mc_now();
        s = mc_encoder_train(c, enc, n_samples, align_fetch, &src, &pos, &curve, mc_stage_hook_fn, &hook, err);
        if (s == MC_OK) s = mc_stage_save(&hook, &pos, err);
        if (s == MC_OK) mc_info0("align %s: %lld steps in %.1f s", task->id, (long long)pos.global_step, mc_now() - t0);
    }
    if (s == MC_OK)
        s = write_align_store(c, cfg, task, &td, &p, enc, &curve, &pos, n_samples, td.n_img - n_samples, err);
    if (s == MC_OK) {
        mc_info0("align %s: loss %.4f, logit scale %.2f -> %s", task->id,
                 curve.count ? curve.loss[curve.count - 1] : NAN, expf(mc_encoder_log_scale(enc)), p.store);
        if (c->rank == 0) {
            unlink(p.ckpt);
            unlink(p.curve);
        }
    }
    free(src.tmp);
    mc_train_curve_free(&curve);
    mc_encoder_free(&enc);
    free(class_emb);
    free(imgs);
    mc_acts_close(&im);
    mc_acts_close(&a);
    mc_train_data_close(&td);
    return s;
}

/* ---- the registry entry ----------------------------------------------------------------------- */

static int64_t ceil_div(int64_t a, int64_t b) { return b > 0 ? (a + b - 1) / b : 0; }

static void align_cost(const mc_config *cfg, const mc_plan_inputs *in, mc_plan *p, mc_plan_stage *S, double *flop,
                       double *core_s, double *mem_b) {
    int64_t B = cfg->align.batch_size;
    int64_t steps = cfg->align.epochs * ceil_div(p->n_train, B);
    double d = (double)in->align_dim, e = (double)in->proj;
    S->items = (double)steps;
    mc_strlcpy(S->item_name, "steps", sizeof S->item_name);
    /* E_n forward + backward (3 B d e), InfoNCE logits for two targets (forward + backward) */
    double mac = 3.0 * (double)B * d * e + 2.0 * 3.0 * (double)B * (double)B * e;
    S->gmac_per_item = mac / 1e9;
    *flop = 2.0 * mac * (double)steps;
    double adam_s = d * e * 32.0 / (in->mem * p->threads);
    S->wall_s_task = (double)steps * (2.0 * mac / (in->gemm * in->cores) + adam_s);
    *core_s = S->wall_s_task * in->cores;
    *mem_b += (double)p->n_train * (d + e) * 4 / p->ranks + d * e * 4 * 4 + (double)B * (d + 2 * e) * 4 * 2 +
             (double)B * (double)B * 4 * 2;
    mc_plan_add_store(p, S->stage, "align/<task>-<key>.h5 (E_n, curves)", S->n_tasks,
              d * e * 4 + (double)steps * 16 + MC_PLAN_SMALL_STORE_OVERHEAD_BYTES);
}

/* The complete tasks at once (stages.h: complete): each seed's train store opened once for its
 * extraction key, then one store peek per task (issue 16). */
static mc_status align_complete(const mc_comm *c, const mc_config *cfg, const mc_task *tasks, int n, bool *done,
                                mc_error *err) {
    mc_train_data td;
    memset(&td, 0, sizeof td);
    bool have_seed = false;
    int64_t seed = 0;
    mc_status s = MC_OK;
    for (int t = 0; t < n && s == MC_OK; t++) {
        if (!have_seed || tasks[t].seed != seed) {
            if (have_seed) mc_train_data_close(&td);
            have_seed = false;
            s = mc_train_data_open(c, cfg, tasks[t].seed, &td, err);
            if (s != MC_OK) break;
            have_seed = true, seed = tasks[t].seed;
        }
        mc_run_paths p;
        s = mc_align_paths(cfg, td.extract_key, tasks[t].seed, tasks[t].layer, tasks[t].variant, &p, err);
        if (s == MC_OK) s = mc_store_peek_complete(c, p.store, &done[t], err);
        if (s == MC_OK && done[t]) mc_info0("align %s: complete, skipping (%s)", tasks[t].id, p.store);
    }
    if (have_seed) mc_train_data_close(&td);
    return s;
}

const mc_stage_desc mc_align_stage = {
    .stage = MC_STAGE_ALIGN,
    .summary = "the neuron encoder E_n of (seed, layer, variant)",
    .outputs = "align/align-s<seed>-l<layer>-<variant>-<key16>.h5 (+ checkpoint, curve)",
    .check = NULL,
    .run = mc_stage_align,
    .complete = align_complete,
    .cost = align_cost,
};
