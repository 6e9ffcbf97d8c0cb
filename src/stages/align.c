/* align.c - the `align` stage: the neuron encoder E_n of one (seed, layer, variant), trained
 * with the symmetric InfoNCE of train.h on the training store's activations (the per-image
 * vector: the pooled row, the CLS token or a feature map's spatial mean), against the prompted
 * text embedding of the target's predicted class (text/class_embeds[predictions]) and the
 * CLIP image embedding. Images flagged invalid by extraction are skipped.
 *
 * align.stop: converged (the default, Algorithm 1's "until theta_n converges") holds out a seeded
 * fraction of the images, evaluates the same loss on them every eval_every epochs, stops after
 * `patience` evaluations without a relative improvement of min_delta (or at max_epochs) and keeps
 * the parameters of the best held-out loss; stop: epochs trains a fixed number of passes. Either
 * way the store records the retrieval accuracy: how often E_n(a) is nearest to the text of the
 * image's predicted class.
 *
 * Checkpoints every align.checkpoint_every steps and on SIGUSR1/SIGTERM (exit 75); a rerun
 * resumes and ends bitwise equal to an uninterrupted run (the held-out history and the best
 * parameters are saved beside each checkpoint). Output:
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
#include "miclip/safetensors.h"
#include "miclip/miclip.h"
#include "stages_internal.h"

#include <cblas.h> /* after plan.h: OpenBLAS may define complex.h's I */

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

/* ---- the held-out split, its loss and the retrieval accuracy ------------------------------ */

#define HELDOUT_STREAM                                                                             \
    0x48454c41u /* "HELA": E_n's held-out draw, apart from train.h's and the SAE's */

/* Splits the usable images imgs[0..n) (ascending) into held-out and training rows, both
 * ascending: the first floor(frac n) (at least 2) of the seed's permutation are held out. The same
 * on every rank and at any rank count (a pure function of seed and n). */
static mc_status split_heldout(const int64_t *imgs, int64_t n, double frac, int64_t seed,
                               int64_t **train, int64_t *n_train, int64_t **ho, int64_t *n_ho,
                               mc_error *err) {
    int64_t nh = (int64_t)floor(frac * (double)n);
    if (nh < 2) nh = 2;
    if (n - nh < 2)
        return MC_FAIL(
            err, MC_ERR_ARG,
            "align: %lld usable training images are too few to hold out %lld "
            "(align.heldout %g) and train on at least 2; HINT: more images or align.stop: epochs",
            (long long)n, (long long)nh, frac);
    return mc_heldout_split(imgs, n, nh, seed, HELDOUT_STREAM, train, n_train, ho, n_ho, err);
}

/* The held-out loss: the training loss (same variant, scale and targets) over the held-out rows
 * in ascending order, cut into ceil(n / B) batches of near-equal size (batch k: rows
 * [k n / nb, (k+1) n / nb)), averaged weighted by rows. No update is made (the gradient buffer is
 * overwritten, which the next step recomputes anyway). Collective; the same on every rank. */
static mc_status heldout_loss(const mc_comm *c, mc_encoder *enc, align_source *src, int64_t n,
                              double *out, mc_error *err) {
    const mc_align_config *ac = mc_encoder_config(enc);
    const int64_t B = ac->batch_size < n ? ac->batch_size : n, nb = (n + B - 1) / B,
                  maxb = (n + nb - 1) / nb;
    float *acts = mc_alloc_array((size_t)maxb, (size_t)ac->n * sizeof(float));
    float *img = mc_alloc_array((size_t)maxb, (size_t)ac->d * sizeof(float));
    int32_t *lab = mc_alloc_array((size_t)maxb, sizeof(int32_t));
    int64_t *idx = mc_alloc_array((size_t)maxb, sizeof(int64_t));
    mc_status s = (acts && img && lab && idx) ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    s = mc_comm_agree(c, s, err);
    double total = 0;
    for (int64_t k = 0; s == MC_OK && k < nb; k++) {
        const int64_t a = k * n / nb, bs = (k + 1) * n / nb - a;
        int64_t c0, c1, r0, r1;
        mc_train_chunk_share(bs, ac->chunk_rows, c->rank, c->size, &c0, &c1, &r0, &r1);
        for (int64_t r = r0; r < r1; r++) idx[r - r0] = a + r;
        s = mc_comm_agree(c, r1 > r0 ? align_fetch(src, idx, r1 - r0, acts, img, lab, err) : MC_OK,
                          err);
        mc_align_stats st;
        if (s == MC_OK) s = mc_encoder_loss_grad(c, enc, bs, acts, img, lab, &st, err);
        if (s == MC_OK) total += (double)st.loss * (double)bs;
    }
    *out = total / (double)n;
    free(acts);
    free(img);
    free(lab);
    free(idx);
    return s;
}

/* Retrieval accuracy: the fraction of the n rows of src whose embedding E_n(a) has the highest
 * cosine with the text embedding of their own predicted class among the n_classes class texts
 * (cls_n: the class embeddings, unit rows; the first maximum wins a tie). Each rank scores a
 * contiguous share; the integer counts are summed, so every rank gets the same exact result. */
static mc_status retrieval(const mc_comm *c, const mc_encoder *enc, align_source *src, int64_t n,
                           const float *cls_n, int64_t n_classes, double *out, mc_error *err) {
    const mc_align_config *ac = mc_encoder_config(enc);
    enum { BLK = 256 };
    const int64_t lo = n * c->rank / c->size, hi = n * (c->rank + 1) / c->size;
    float *acts = mc_alloc_array(BLK, (size_t)ac->n * sizeof(float));
    float *img = mc_alloc_array(BLK, (size_t)ac->d * sizeof(float));
    float *z = mc_alloc_array(BLK, (size_t)ac->d * sizeof(float));
    float *sc = mc_alloc_array(BLK, (size_t)n_classes * sizeof(float));
    int32_t *lab = mc_alloc_array(BLK, sizeof(int32_t));
    int64_t idx[BLK];
    mc_status s =
        (acts && img && z && sc && lab) ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    long long hits = 0;
    for (int64_t a = lo; s == MC_OK && a < hi; a += BLK) {
        const int64_t rows = hi - a < BLK ? hi - a : BLK;
        for (int64_t r = 0; r < rows; r++) idx[r] = a + r;
        s = align_fetch(src, idx, rows, acts, img, lab, err);
        if (s != MC_OK) break;
        mc_encoder_embed(enc, acts, rows, z);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)n_classes, (int)ac->d,
                    1.0f, z, (int)ac->d, cls_n, (int)ac->d, 0.0f, sc, (int)n_classes);
        for (int64_t r = 0; r < rows; r++) {
            const float *row = sc + r * n_classes;
            int64_t best = 0;
            for (int64_t j = 1; j < n_classes; j++)
                if (row[j] > row[best]) best = j;
            hits += best == lab[r];
        }
    }
    s = mc_comm_agree(c, s, err);
    if (s == MC_OK &&
        MPI_Allreduce(MPI_IN_PLACE, &hits, 1, MPI_LONG_LONG, MPI_SUM, c->comm) != MPI_SUCCESS)
        s = MC_FAIL(err, MC_ERR_MPI, "align: MPI_Allreduce of the retrieval counts failed");
    *out = n > 0 ? (double)hits / (double)n : NAN;
    free(acts);
    free(img);
    free(z);
    free(sc);
    free(lab);
    return s;
}

/* ---- the convergence rule ------------------------------------------------------------------- */

/* The held-out history and the early-stopping state. best/bad are a pure function of the loss
 * history (conv_push replays it), so only the history and the best parameters are saved. */
typedef struct {
    int64_t count, cap;
    float *loss, *acc;   /* per evaluation: held-out loss, held-out retrieval accuracy */
    int64_t *epoch;      /* epochs completed at the evaluation */
    int64_t best_i, bad; /* index of the best evaluation (-1: none), evaluations since */
    double min_delta;
    float *best; /* d*n weights then the log logit scale, at best_i */
    size_t n_params;
    char path[MC_PATH_CAP]; /* saved beside the checkpoint */
} conv_state;

static void conv_free(conv_state *cs) {
    free(cs->loss);
    free(cs->acc);
    free(cs->epoch);
    free(cs->best);
    memset(cs, 0, sizeof *cs);
}

/* Appends one evaluation; true when it improved on the best (loss < best (1 - min_delta)). */
static mc_status conv_push(conv_state *cs, float loss, float acc, int64_t epoch, bool *improved,
                           mc_error *err) {
    if (cs->count == cs->cap) {
        int64_t cap = cs->cap ? 2 * cs->cap : 64;
        float *l = realloc(cs->loss, (size_t)cap * sizeof(float)),
              *a = l ? realloc(cs->acc, (size_t)cap * sizeof(float)) : NULL;
        if (l) cs->loss = l;
        if (a) cs->acc = a;
        int64_t *e = a ? realloc(cs->epoch, (size_t)cap * sizeof(int64_t)) : NULL;
        if (!e) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        cs->epoch = e;
        cs->cap = cap;
    }
    cs->loss[cs->count] = loss;
    cs->acc[cs->count] = acc;
    cs->epoch[cs->count] = epoch;
    *improved =
        cs->best_i < 0 || (double)loss < (double)cs->loss[cs->best_i] * (1.0 - cs->min_delta);
    if (*improved) {
        cs->best_i = cs->count;
        cs->bad = 0;
    } else {
        cs->bad++;
    }
    cs->count++;
    return MC_OK;
}

static mc_status conv_save(void *user, mc_error *err) {
    const conv_state *cs = user;
    mc_st_writer *w = NULL;
    MC_TRY(mc_st_writer_create(&w, err));
    char cnt[32];
    snprintf(cnt, sizeof cnt, "%lld", (long long)cs->count);
    mc_status s = mc_st_writer_add_metadata(w, "count", cnt, err);
    int64_t sh[1] = {cs->count}, shp[1] = {(int64_t)cs->n_params};
    if (s == MC_OK && cs->count > 0)
        s = mc_st_writer_add(w, "loss", MC_DTYPE_F32, 1, sh, cs->loss, err);
    if (s == MC_OK && cs->count > 0)
        s = mc_st_writer_add(w, "acc", MC_DTYPE_F32, 1, sh, cs->acc, err);
    if (s == MC_OK && cs->count > 0)
        s = mc_st_writer_add(w, "epoch", MC_DTYPE_I64, 1, sh, cs->epoch, err);
    if (s == MC_OK) s = mc_st_writer_add(w, "best", MC_DTYPE_F32, 1, shp, cs->best, err);
    if (s == MC_OK) s = mc_st_writer_save(w, cs->path, err);
    mc_st_writer_free(&w);
    return s;
}

/* Loads the history saved with the checkpoint, keeping the evaluations made by epoch `epochs`
 * (a kill between this file and the checkpoint can leave later ones: they are replayed, and
 * bitwise equal, because training is deterministic). */
static mc_status conv_load(conv_state *cs, int64_t epochs, mc_error *err) {
    mc_st_file *f = NULL;
    MC_TRY(mc_st_open(cs->path, &f, err));
    const char *cnt = mc_st_metadata(f, "count");
    long long count = cnt ? atoll(cnt) : -1;
    mc_status s = count < 0 ? MC_FAIL(err, MC_ERR_FORMAT, "%s: no 'count'", cs->path) : MC_OK;
    int64_t shp[1] = {(int64_t)cs->n_params}, sh[1] = {count};
    if (s == MC_OK) s = mc_st_read_f32(f, "best", 1, shp, cs->best, err);
    float *l = count > 0 ? mc_alloc_array((size_t)count, sizeof(float)) : NULL;
    float *a = count > 0 ? mc_alloc_array((size_t)count, sizeof(float)) : NULL;
    if (s == MC_OK && count > 0 && (!l || !a)) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    if (s == MC_OK && count > 0) s = mc_st_read_f32(f, "loss", 1, sh, l, err);
    if (s == MC_OK && count > 0) s = mc_st_read_f32(f, "acc", 1, sh, a, err);
    const mc_st_tensor *t = NULL;
    if (s == MC_OK && count > 0) s = mc_st_get(f, "epoch", 1, sh, &t, err);
    if (s == MC_OK && count > 0 && t->dtype != MC_DTYPE_I64)
        s = MC_FAIL(err, MC_ERR_FORMAT, "%s: 'epoch' must be I64", cs->path);
    for (int64_t i = 0; s == MC_OK && i < count; i++) {
        int64_t ep;
        memcpy(&ep, (const char *)t->data + i * (int64_t)sizeof ep, sizeof ep);
        if (ep > epochs) break;
        bool imp;
        s = conv_push(cs, l[i], a[i], ep, &imp, err);
    }
    free(l);
    free(a);
    mc_st_close(&f);
    return s;
}

/* How training ended, for the store (docs/stages.md, "E_n convergence"). */
typedef struct {
    const char *stop_reason; /* "converged", "max_epochs" or "epochs" (align.stop: epochs) */
    const conv_state *cs;    /* NULL with stop: epochs */
    const int64_t *ho;       /* held-out image rows (n_ho) */
    int64_t n_ho;
    double train_acc; /* retrieval accuracy on the training rows, final parameters */
} conv_record;

static mc_status write_conv(mc_store *st, bool root, const conv_record *r, mc_error *err) {
    mc_status s = mc_store_set_attr_str(st, "/", "stop_reason", r->stop_reason, err);
    if (s == MC_OK) s = mc_store_set_attr_f64(st, "/", "train_retrieval", r->train_acc, err);
    const conv_state *cs = r->cs;
    if (s != MC_OK || !cs) return s;
    int64_t n = cs->count, sh[1] = {n}, shh[1] = {r->n_ho};
    const char *fn[2] = {"convergence/heldout_loss", "convergence/heldout_retrieval"};
    const float *fv[2] = {cs->loss, cs->acc};
    for (int i = 0; s == MC_OK && i < 2; i++) {
        s = mc_store_create_dataset(st, fn[i], MC_DTYPE_F32, 1, sh, 0, err);
        if (s == MC_OK)
            s = mc_store_write_rows(st, fn[i], MC_DTYPE_F32, 0, root ? n : 0, fv[i], err);
    }
    if (s == MC_OK)
        s = mc_store_create_dataset(st, "convergence/epoch", MC_DTYPE_I64, 1, sh, 0, err);
    if (s == MC_OK)
        s = mc_store_write_rows(st, "convergence/epoch", MC_DTYPE_I64, 0, root ? n : 0, cs->epoch,
                                err);
    if (s == MC_OK)
        s = mc_store_create_dataset(st, "convergence/heldout_images", MC_DTYPE_I64, 1, shh, 0, err);
    if (s == MC_OK)
        s = mc_store_write_rows(st, "convergence/heldout_images", MC_DTYPE_I64, 0,
                                root ? r->n_ho : 0, r->ho, err);
    const int64_t b = cs->best_i;
    int64_t iv[4] = {n > 0 ? cs->epoch[n - 1] : 0, b >= 0 ? cs->epoch[b] : 0, r->n_ho, n};
    const char *ik[4] = {"epochs_run", "best_epoch", "n_heldout_images", "evaluations"};
    for (int i = 0; s == MC_OK && i < 4; i++) s = mc_store_set_attr_i64(st, "/", ik[i], iv[i], err);
    if (s == MC_OK)
        s = mc_store_set_attr_f64(st, "/", "heldout_loss", b >= 0 ? cs->loss[b] : NAN, err);
    if (s == MC_OK)
        s = mc_store_set_attr_f64(st, "/", "heldout_retrieval", b >= 0 ? cs->acc[b] : NAN, err);
    return s;
}

static mc_status write_align_store(const mc_comm *c, const mc_config *cfg, const mc_task *task,
                                   const mc_train_data *td, const mc_run_paths *p, mc_encoder *enc,
                                   const mc_train_curve *curve, const mc_train_pos *pos,
                                   int64_t n_samples, int64_t n_skipped, const conv_record *rec,
                                   mc_error *err) {
    const mc_align_config *ac = mc_encoder_config(enc);
    bool root = c->rank == 0;
    mc_store *st = NULL;
    MC_TRY(mc_store_fresh(c, p->store, &st, err));
    int64_t sh[2] = {ac->d, ac->n};
    mc_status s = mc_store_create_dataset(st, "W", MC_DTYPE_F32, 2, sh, 0, err);
    if (s == MC_OK)
        s = mc_store_write_rows(st, "W", MC_DTYPE_F32, 0, root ? ac->d : 0, mc_encoder_weight(enc),
                                err);
    const char *const cn[4] = {"curves/loss", "curves/loss_out", "curves/loss_in",
                               "curves/logit_scale"};
    if (s == MC_OK)
        s = mc_train_store_common(st, root, curve, cn, "align", cfg, td, task->seed, err);
    const mc_store_attr_str sa[] = {{"align_key", p->key},
                                    {"extract_key", td->extract_key},
                                    {"extract_store", td->path},
                                    {"layer", task->layer},
                                    {"variant", mc_variant_name(task->variant)},
                                    {"config", cfg->canonical}};
    if (s == MC_OK) s = mc_store_set_attrs_str(st, "/", MC_STORE_ATTRS(sa), err);
    float ls = mc_encoder_log_scale(enc);
    const mc_store_attr_i64 ia[] = {{"n_samples", n_samples},
                                    {"n_skipped_images", n_skipped},
                                    {"steps", pos->global_step},
                                    {"n", ac->n},
                                    {"d", ac->d},
                                    {"learn_scale", ac->learn_scale}};
    if (s == MC_OK) s = mc_store_set_attrs_i64(st, "/", MC_STORE_ATTRS(ia), err);
    int64_t last = curve->count - 1;
    const mc_store_attr_f64 fa[] = {{"log_logit_scale", ls},
                                    {"logit_scale", expf(ls)},
                                    {"final_loss", last >= 0 ? curve->loss[last] : NAN},
                                    {"final_loss_out", last >= 0 ? curve->loss_a[last] : NAN},
                                    {"final_loss_in", last >= 0 ? curve->loss_b[last] : NAN}};
    if (s == MC_OK) s = mc_store_set_attrs_f64(st, "/", MC_STORE_ATTRS(fa), err);
    if (s == MC_OK) s = write_conv(st, root, rec, err);
    s = mc_store_finish(&st, s, err);
    return s;
}

mc_status mc_stage_align(const mc_comm *c, const mc_config *cfg, const mc_task *task,
                         mc_error *err) {
    mc_train_data td;
    MC_TRY(mc_train_data_open(c, cfg, task->seed, &td, err));
    mc_run_paths p;
    bool complete = false;
    mc_status s =
        mc_align_paths(cfg, td.extract_key, task->seed, task->layer, task->variant, &p, err);
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
        s = MC_FAIL(err, MC_ERR_FORMAT, "%s: clip/image_embeds is not [N, %lld]", td.path,
                    (long long)td.clip_dim);
    /* Samples: valid images with a prediction (in the class table when the variant uses it). */
    const bool uses_out = task->variant != MC_VARIANT_IN;
    int64_t *imgs = mc_alloc_array((size_t)td.n_img + 1, sizeof(int64_t)), n_samples = 0;
    if (s == MC_OK && !imgs) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; s == MC_OK && i < td.n_img; i++) {
        if (!td.valid[i] || td.pred[i] < 0) continue;
        if (uses_out && td.pred[i] >= td.n_classes) {
            s = MC_FAIL(err, MC_ERR_UNSUPPORTED,
                        "%s: image %lld is predicted as label %d, but the class text "
                        "embeddings cover %lld classes (the dataset's classes are not the target's "
                        "id2label); "
                        "HINT: give datasets.train.class_names so the classes map to the target's "
                        "labels, or "
                        "use align.variants: [in]",
                        td.path, (long long)i, (int)td.pred[i], (long long)td.n_classes);
            break;
        }
        imgs[n_samples++] = i;
    }
    if (s == MC_OK && n_samples < 2)
        s = MC_FAIL(err, MC_ERR_ARG, "align: %lld usable training images in %s; need at least 2",
                    (long long)n_samples, td.path);
    float *class_emb = mc_alloc_array((size_t)td.n_classes, (size_t)td.clip_dim * sizeof(float));
    if (s == MC_OK && !class_emb) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    s = mc_comm_agree(c, s, err);
    if (s == MC_OK)
        s = mc_store_read_rows(td.st, "text/class_embeds", MC_DTYPE_F32, 0, td.n_classes, class_emb,
                               err);
    mc_align_config ac =
        mc_align_config_of(cfg, a.dim, td.clip_dim, td.n_classes, task->variant, task->seed);
    mc_encoder *enc = NULL;
    if (s == MC_OK) s = mc_comm_agree(c, mc_encoder_create(&ac, class_emb, &enc, err), err);
    /* stop: converged trains on the rows not held out; epochs on all of them */
    const bool conv = cfg->align.stop == MC_ALIGN_STOP_CONVERGED;
    int64_t *train = NULL, *ho = NULL, n_train = n_samples, n_ho = 0;
    if (s == MC_OK && conv)
        s = mc_comm_agree(c,
                          split_heldout(imgs, n_samples, cfg->align.heldout, task->seed, &train,
                                        &n_train, &ho, &n_ho, err),
                          err);
    conv_state cs = {
        .best_i = -1, .min_delta = cfg->align.min_delta, .n_params = (size_t)(ac.d * ac.n) + 1};
    if (s == MC_OK && conv) {
        size_t len = strlen(p.curve), sfx = strlen(".curve.safetensors");
        cs.best = mc_alloc_array(cs.n_params, sizeof(float));
        if (len < sfx || len - sfx + 21 > sizeof cs.path)
            s = MC_FAIL(err, MC_ERR_INTERNAL, "align: unexpected curve path %s", p.curve);
        else if (!cs.best)
            s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        else
            snprintf(cs.path, sizeof cs.path, "%.*s.heldout.safetensors", (int)(len - sfx),
                     p.curve);
        s = mc_comm_agree(c, s, err);
    }
    mc_train_pos pos = {0};
    mc_train_curve curve = {0};
    if (s == MC_OK) s = mc_stage_resume_checkpoint(c, &p, enc, NULL, &pos, &curve, "align", err);
    if (s == MC_OK && conv && pos.global_step > 0)
        s = mc_comm_agree(c, conv_load(&cs, pos.epoch, err), err);
    align_source src = {.acts = &a, .img = &im, .imgs = conv ? train : imgs, .pred = td.pred};
    align_source hsrc = {.acts = &a, .img = &im, .imgs = ho, .pred = td.pred};
    mc_stage_hook hook = {.comm = c,
                          .enc = enc,
                          .curve = &curve,
                          .ckpt = p.ckpt,
                          .curve_path = p.curve,
                          .key = p.key,
                          .every = cfg->align.checkpoint_every,
                          .what = "align",
                          .save_extra = conv ? conv_save : NULL,
                          .extra_user = &cs};
    /* class texts as unit rows, for the retrieval accuracy */
    float *cls_n = mc_alloc_array((size_t)td.n_classes, (size_t)td.clip_dim * sizeof(float));
    if (s == MC_OK && !cls_n) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    s = mc_comm_agree(c, s, err);
    for (int64_t k = 0; s == MC_OK && k < td.n_classes; k++) {
        const float *e = class_emb + k * td.clip_dim;
        double q = 0;
        for (int64_t j = 0; j < td.clip_dim; j++) q += (double)e[j] * e[j];
        const float inv = q > 0 ? (float)(1.0 / sqrt(q)) : 0.0f;
        for (int64_t j = 0; j < td.clip_dim; j++) cls_n[k * td.clip_dim + j] = e[j] * inv;
    }
    const char *stop_reason = "epochs";
    double t0 = mc_now();
    if (s == MC_OK && !conv && pos.epoch < ac.epochs) {
        mc_info0("align %s: %lld samples of %lld -> %lld, batch %lld, %d epoch(s)", task->id,
                 (long long)n_samples, (long long)ac.n, (long long)ac.d, (long long)ac.batch_size,
                 ac.epochs);
        s = mc_encoder_train(c, enc, n_samples, align_fetch, &src, &pos, &curve, mc_stage_hook_fn,
                             &hook, err);
        if (s == MC_OK) s = mc_stage_save(&hook, &pos, err);
    }
    if (s == MC_OK && conv) {
        const int64_t every = cfg->align.eval_every, maxe = cfg->align.max_epochs;
        mc_info0("align %s: %lld training + %lld held-out samples of %lld -> %lld, batch %lld, "
                 "until the "
                 "held-out loss converges (patience %lld, min_delta %g, at most %lld epochs)",
                 task->id, (long long)n_train, (long long)n_ho, (long long)ac.n, (long long)ac.d,
                 (long long)ac.batch_size, (long long)cfg->align.patience, cfg->align.min_delta,
                 (long long)maxe);
        while (s == MC_OK && cs.bad < cfg->align.patience && pos.epoch < maxe) {
            int64_t target = (pos.epoch / every + 1) * every;
            if (target > maxe) target = maxe;
            s = mc_encoder_train_to(c, enc, n_train, align_fetch, &src, &pos, &curve,
                                    mc_stage_hook_fn, &hook, (int)target, err);
            if (s != MC_OK || (cs.count > 0 && cs.epoch[cs.count - 1] == pos.epoch)) continue;
            double hl = NAN, ha = NAN;
            s = heldout_loss(c, enc, &hsrc, n_ho, &hl, err);
            if (s == MC_OK) s = retrieval(c, enc, &hsrc, n_ho, cls_n, td.n_classes, &ha, err);
            bool imp = false;
            if (s == MC_OK) s = conv_push(&cs, (float)hl, (float)ha, pos.epoch, &imp, err);
            if (s == MC_OK && imp) {
                memcpy(cs.best, mc_encoder_weight(enc), (cs.n_params - 1) * sizeof(float));
                cs.best[cs.n_params - 1] = mc_encoder_log_scale(enc);
            }
            mc_log0(MC_LOG_DEBUG, "align %s: epoch %d, held-out loss %.5f, retrieval %.3f%s",
                    task->id, pos.epoch, hl, ha, imp ? " (best)" : "");
        }
        if (s == MC_OK) s = mc_stage_save(&hook, &pos, err);
        stop_reason = cs.bad >= cfg->align.patience ? "converged" : "max_epochs";
        /* keep the parameters of the best held-out loss */
        if (s == MC_OK && cs.best_i >= 0) {
            memcpy(mc_encoder_weight(enc), cs.best, (cs.n_params - 1) * sizeof(float));
            mc_encoder_set_log_scale(enc, cs.best[cs.n_params - 1]);
        }
        if (s == MC_OK && cs.best_i >= 0)
            mc_info0("align %s: %s after %lld epoch(s); best held-out loss %.5f at epoch %lld, "
                     "retrieval %.3f",
                     task->id, stop_reason, (long long)pos.epoch, cs.loss[cs.best_i],
                     (long long)cs.epoch[cs.best_i], cs.acc[cs.best_i]);
    }
    if (s == MC_OK)
        mc_info0("align %s: %lld steps in %.1f s", task->id, (long long)pos.global_step,
                 mc_now() - t0);
    conv_record rec = {.stop_reason = stop_reason, .cs = conv ? &cs : NULL, .ho = ho, .n_ho = n_ho};
    if (s == MC_OK) s = retrieval(c, enc, &src, n_train, cls_n, td.n_classes, &rec.train_acc, err);
    if (s == MC_OK)
        s = write_align_store(c, cfg, task, &td, &p, enc, &curve, &pos, n_train,
                              td.n_img - n_samples, &rec, err);
    if (s == MC_OK) {
        mc_info0("align %s: loss %.4f, logit scale %.2f, training retrieval %.3f -> %s", task->id,
                 curve.count ? curve.loss[curve.count - 1] : NAN, expf(mc_encoder_log_scale(enc)),
                 rec.train_acc, p.store);
        if (c->rank == 0) {
            unlink(p.ckpt);
            unlink(p.curve);
            if (conv) unlink(cs.path);
        }
    }
    conv_free(&cs);
    free(cls_n);
    free(train);
    free(ho);
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

static void align_cost(const mc_config *cfg, const mc_plan_inputs *in, mc_plan *p, mc_plan_stage *S,
                       double *flop, double *core_s, double *mem_b) {
    int64_t B = cfg->align.batch_size;
    /* stop: converged is costed at its cap, max_epochs (an upper bound: the rule stops earlier) */
    const bool conv = cfg->align.stop == MC_ALIGN_STOP_CONVERGED;
    int64_t steps = (conv ? cfg->align.max_epochs : cfg->align.epochs) * ceil_div(p->n_train, B);
    double d = (double)in->align_dim, e = (double)in->proj;
    if (p->n_train > 0 && p->n_train < B) B = p->n_train; /* a step is at most the whole set */
    S->items = (double)steps;
    mc_strlcpy(S->item_name, "steps", sizeof S->item_name);
    /* E_n forward + backward (3 B d e), InfoNCE logits for two targets (forward + backward) */
    double mac = 3.0 * (double)B * d * e + 2.0 * 3.0 * (double)B * (double)B * e;
    S->gmac_per_item = mac / 1e9;
    *flop = 2.0 * mac * (double)steps;
    double adam_s = d * e * 32.0 / (in->mem * p->threads);
    S->wall_s_task = (double)steps * (2.0 * mac / (in->gemm * in->cores) + adam_s);
    *core_s = S->wall_s_task * in->cores;
    *mem_b += (double)p->n_train * (d + e) * 4 / p->ranks + d * e * 4 * 4 +
              (double)B * (d + 2 * e) * 4 * 2 + (double)B * (double)B * 4 * 2;
    mc_plan_add_store(p, S->stage, "align/<task>-<key>.h5 (E_n, curves)", S->n_tasks,
                      d * e * 4 + (double)steps * 16 + MC_PLAN_SMALL_STORE_OVERHEAD_BYTES);
}

/* The complete tasks at once (stages.h: complete): each seed's train store opened once for its
 * extraction key, then one store peek per task (issue 16). */
static mc_status align_complete(const mc_comm *c, const mc_config *cfg, const mc_task *tasks, int n,
                                bool *done, mc_error *err) {
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
        s = mc_align_paths(cfg, td.extract_key, tasks[t].seed, tasks[t].layer, tasks[t].variant, &p,
                           err);
        if (s == MC_OK) s = mc_store_peek_complete(c, p.store, &done[t], err);
        if (s == MC_OK && done[t])
            mc_info0("align %s: complete, skipping (%s)", tasks[t].id, p.store);
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
