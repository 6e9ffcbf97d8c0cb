/* sae.c - the `sae` stage: a top-k sparse autoencoder (train.h) on one layer's activations of
 * a seed's training store, streamed row by row through the trainer's fetch callback.
 *
 * Inputs are the valid images' pooled vectors (sae.input: pooled) or every token/position
 * (all). A fraction sae.heldout of the images (drawn by the seed) is held out; FVU, L0 and the
 * dead fraction are measured on it and on the start of the training rows at the end. The
 * trainer checkpoints every sae.checkpoint_every steps (and on SIGUSR1/SIGTERM, then exits 75);
 * a rerun resumes from the checkpoint and ends bitwise equal to an uninterrupted run. The
 * result is one store, OUTPUT_DIR/sae/sae-s<seed>-l<layer>-<key16>.h5 (docs/stages.md).
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

#define HELDOUT_STREAM 0x48454c44u /* "HELD": the held-out draw, apart from train.h's streams */
#define TOKENS_STREAM 0x544f4b53u  /* "TOKS": sae.tokens_per_image's draw */
#define EVAL_BLOCK 256             /* rows per evaluation block (fixed: rank-count invariant) */
#define EVAL_MAX_ROWS 65536        /* rows evaluated per split */

/* Sample j is token j % tokens of image imgs[j / tokens], or tok[j] when tok is set (a sample
 * of each image's tokens: sae.tokens_per_image). */
typedef struct {
    mc_acts *a;
    const int64_t *imgs;
    int64_t tokens;
    const int64_t *tok; /* [n_imgs * tokens] or NULL */
    int64_t *tmp;       /* image list for pooled reads */
    int64_t tmp_cap;
} sae_source;

static mc_status sae_fetch(void *user, const int64_t *idx, int64_t rows, float *out,
                           mc_error *err) {
    sae_source *src = user;
    const int64_t D = src->a->dim;
    if (src->tokens == 1) {
        if (rows > src->tmp_cap) {
            free(src->tmp);
            src->tmp = mc_alloc_array((size_t)rows, sizeof(int64_t));
            src->tmp_cap = src->tmp ? rows : 0;
            if (!src->tmp) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        }
        for (int64_t r = 0; r < rows; r++) src->tmp[r] = src->imgs[idx[r]];
        return mc_acts_vectors(src->a, src->tmp, rows, out, err);
    }
    for (int64_t r = 0; r < rows; r++)
        MC_TRY(mc_acts_token(src->a, src->imgs[idx[r] / src->tokens],
                             src->tok ? src->tok[idx[r]] : idx[r] % src->tokens, out + r * D, err));
    return MC_OK;
}

typedef struct {
    double fvu, l0, never_fired;
    int64_t rows;
} eval_stats;

/* Metrics of the SAE on samples 0..n_rows-1 of src: FVU = sum |x - x_hat|^2 / sum |x - mean|^2
 * (mean over these rows), L0 = mean count of non-zero codes, never_fired = fraction of latents
 * with no non-zero code on any row. Blocks of EVAL_BLOCK rows are shared over ranks; per-row
 * numbers are gathered and summed in row order, so the result does not depend on the ranks. */
static mc_status sae_eval(const mc_comm *c, mc_sae *sae, sae_source *src, int64_t n_rows,
                          eval_stats *out, mc_error *err) {
    memset(out, 0, sizeof *out);
    out->rows = n_rows;
    if (n_rows <= 0) {
        out->fvu = out->l0 = out->never_fired = NAN;
        return MC_OK;
    }
    const mc_sae_config *sc = mc_sae_get_config(sae);
    const int64_t n = sc->n, m = sc->m, k = sc->k;
    int64_t nb = (n_rows + EVAL_BLOCK - 1) / EVAL_BLOCK, b0, b1;
    mc_shard_range(nb, c->rank, c->size, &b0, &b1);
    float *x = mc_alloc_array(EVAL_BLOCK, (size_t)n * sizeof(float));
    float *val = mc_alloc_array(EVAL_BLOCK, (size_t)k * sizeof(float));
    int32_t *idx = mc_alloc_array(EVAL_BLOCK, (size_t)k * sizeof(int32_t));
    int64_t *ids = mc_alloc_array(EVAL_BLOCK, sizeof(int64_t));
    double *xh = mc_alloc_array((size_t)n, sizeof(double));
    double *row3 = mc_alloc_array((size_t)n_rows * 3, sizeof(double)); /* sse, |x|^2, l0 */
    double *bsum = mc_calloc_array((size_t)nb, (size_t)n * sizeof(double));
    uint8_t *fired = mc_calloc_array((size_t)m, 1);
    mc_status s = MC_OK;
    if (!x || !val || !idx || !ids || !xh || !row3 || !bsum || !fired)
        s = MC_FAIL(err, MC_ERR_NOMEM, "sae: out of memory for the evaluation");
    const float *wd = mc_sae_w_dec_t(sae), *bp = mc_sae_b_pre(sae);
    for (int64_t b = b0; s == MC_OK && b < b1; b++) {
        int64_t a0 = b * EVAL_BLOCK, len = a0 + EVAL_BLOCK < n_rows ? EVAL_BLOCK : n_rows - a0;
        for (int64_t r = 0; r < len; r++) ids[r] = a0 + r;
        s = sae_fetch(src, ids, len, x, err);
        if (s != MC_OK) break;
        mc_sae_encode(sae, x, len, idx, val);
        double *bs = bsum + b * n;
        for (int64_t r = 0; r < len; r++) {
            const float *xr = x + r * n;
            for (int64_t j = 0; j < n; j++) xh[j] = bp[j];
            double l0 = 0;
            for (int64_t q = 0; q < k; q++) {
                float v = val[r * k + q];
                if (v == 0.0f) continue;
                int32_t lat = idx[r * k + q];
                fired[lat] = 1;
                l0 += 1;
                const float *atom = wd + (int64_t)lat * n;
                for (int64_t j = 0; j < n; j++) xh[j] += (double)v * atom[j];
            }
            double sse = 0, sq = 0;
            for (int64_t j = 0; j < n; j++) {
                double e = (double)xr[j] - xh[j];
                sse += e * e;
                sq += (double)xr[j] * xr[j];
                bs[j] += xr[j];
            }
            double *o = row3 + (a0 + r) * 3;
            o[0] = sse, o[1] = sq, o[2] = l0;
        }
    }
    s = mc_comm_agree(c, s, err);
    if (s == MC_OK) {
        int *cnt = calloc((size_t)c->size, sizeof(int)),
            *dsp = calloc((size_t)c->size, sizeof(int));
        int *cnt2 = calloc((size_t)c->size, sizeof(int)),
            *dsp2 = calloc((size_t)c->size, sizeof(int));
        if (!cnt || !dsp || !cnt2 || !dsp2) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        for (int r = 0; s == MC_OK && r < c->size; r++) {
            int64_t q0, q1;
            mc_shard_range(nb, r, c->size, &q0, &q1);
            int64_t s0 = q0 * EVAL_BLOCK < n_rows ? q0 * EVAL_BLOCK : n_rows;
            int64_t s1 = q1 * EVAL_BLOCK < n_rows ? q1 * EVAL_BLOCK : n_rows;
            cnt[r] = (int)((s1 - s0) * 3), dsp[r] = (int)(s0 * 3);
            cnt2[r] = (int)((q1 - q0) * n), dsp2[r] = (int)(q0 * n);
        }
        if (s == MC_OK && (MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DOUBLE, row3, cnt, dsp, MPI_DOUBLE,
                                          c->comm) != MPI_SUCCESS ||
                           MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DOUBLE, bsum, cnt2, dsp2, MPI_DOUBLE,
                                          c->comm) != MPI_SUCCESS ||
                           MPI_Allreduce(MPI_IN_PLACE, fired, (int)m, MPI_UNSIGNED_CHAR, MPI_MAX,
                                         c->comm) != MPI_SUCCESS))
            s = MC_FAIL(err, MC_ERR_MPI, "sae: gathering the evaluation failed");
        free(cnt), free(dsp), free(cnt2), free(dsp2);
    }
    if (s == MC_OK) {
        double sse = 0, sq = 0, l0 = 0, mean2 = 0;
        for (int64_t r = 0; r < n_rows; r++)
            sse += row3[r * 3], sq += row3[r * 3 + 1], l0 += row3[r * 3 + 2];
        for (int64_t j = 0; j < n; j++) {
            double t = 0;
            for (int64_t b = 0; b < nb; b++) t += bsum[b * n + j];
            t /= (double)n_rows;
            mean2 += t * t;
        }
        double sst = sq - (double)n_rows * mean2;
        int64_t never = 0;
        for (int64_t j = 0; j < m; j++) never += !fired[j];
        out->fvu = sst > 0 ? sse / sst : NAN;
        out->l0 = l0 / (double)n_rows;
        out->never_fired = (double)never / (double)m;
    }
    free(x), free(val), free(idx), free(ids), free(xh), free(row3), free(bsum), free(fired);
    return s;
}

/* The valid images split into training and held-out lists (both ascending). */
static mc_status split_images(const mc_train_data *td, double heldout, int64_t seed,
                              int64_t **train, int64_t *n_train, int64_t **ho, int64_t *n_ho,
                              mc_error *err) {
    int64_t nv = 0;
    for (int64_t i = 0; i < td->n_img; i++) nv += td->valid[i] != 0;
    int64_t *valid = mc_alloc_array((size_t)nv + 1, sizeof(int64_t));
    if (!valid) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    nv = 0;
    for (int64_t i = 0; i < td->n_img; i++)
        if (td->valid[i]) valid[nv++] = i;
    int64_t nh = (int64_t)floor(heldout * (double)nv);
    if (heldout > 0 && nh == 0 && nv >= 2) nh = 1;
    mc_status s =
        mc_heldout_split(valid, nv, nh, seed, HELDOUT_STREAM, train, n_train, ho, n_ho, err);
    if (s == MC_OK && *n_train < 1)
        s = MC_FAIL(err, MC_ERR_ARG, "sae: no valid training images in %s", td->path);
    free(valid);
    return s;
}

static mc_status write_sae_store(const mc_comm *c, const mc_config *cfg, const mc_task *task,
                                 const mc_train_data *td, const mc_run_paths *p, mc_sae *sae,
                                 const mc_train_curve *curve, const mc_train_pos *pos,
                                 const int64_t *ho, int64_t n_ho, int64_t n_train,
                                 int64_t n_samples, const eval_stats *tr, const eval_stats *he,
                                 mc_error *err) {
    const mc_sae_config *sc = mc_sae_get_config(sae);
    const int64_t m = sc->m, n = sc->n;
    bool root = c->rank == 0;
    mc_store *st = NULL;
    MC_TRY(mc_store_fresh(c, p->store, &st, err));
    int64_t sh[2] = {m, n}, sh1[1];
    mc_status s = mc_store_create_dataset(st, "W_enc", MC_DTYPE_F32, 2, sh, 0, err);
    if (s == MC_OK)
        s = mc_store_write_rows(st, "W_enc", MC_DTYPE_F32, 0, root ? m : 0, mc_sae_w_enc(sae), err);
    if (s == MC_OK) s = mc_store_create_dataset(st, "W_dec_T", MC_DTYPE_F32, 2, sh, 0, err);
    if (s == MC_OK)
        s = mc_store_write_rows(st, "W_dec_T", MC_DTYPE_F32, 0, root ? m : 0, mc_sae_w_dec_t(sae),
                                err);
    sh1[0] = m;
    if (s == MC_OK) s = mc_store_create_dataset(st, "b_enc", MC_DTYPE_F32, 1, sh1, 0, err);
    if (s == MC_OK)
        s = mc_store_write_rows(st, "b_enc", MC_DTYPE_F32, 0, root ? m : 0, mc_sae_b_enc(sae), err);
    if (s == MC_OK) s = mc_store_create_dataset(st, "since_fire", MC_DTYPE_I64, 1, sh1, 0, err);
    if (s == MC_OK)
        s = mc_store_write_rows(st, "since_fire", MC_DTYPE_I64, 0, root ? m : 0,
                                mc_sae_since_fire(sae), err);
    sh1[0] = n;
    if (s == MC_OK) s = mc_store_create_dataset(st, "b_pre", MC_DTYPE_F32, 1, sh1, 0, err);
    if (s == MC_OK)
        s = mc_store_write_rows(st, "b_pre", MC_DTYPE_F32, 0, root ? n : 0, mc_sae_b_pre(sae), err);
    sh1[0] = n_ho;
    if (s == MC_OK) s = mc_store_create_dataset(st, "heldout/images", MC_DTYPE_I64, 1, sh1, 0, err);
    if (s == MC_OK)
        s = mc_store_write_rows(st, "heldout/images", MC_DTYPE_I64, 0, root ? n_ho : 0, ho, err);
    const char *const cn[4] = {"curves/loss", "curves/fvu", "curves/auxk", "curves/dead_frac"};
    if (s == MC_OK) s = mc_train_store_common(st, root, curve, cn, "sae", cfg, td, task->seed, err);
    int64_t dead = 0;
    const int64_t *since = mc_sae_since_fire(sae);
    for (int64_t j = 0; j < m; j++) dead += since[j] >= sc->dead_samples;
    const mc_store_attr_str sa[] = {
        {"sae_key", p->key},
        {"extract_key", td->extract_key},
        {"extract_store", td->path},
        {"layer", cfg->sae.layer},
        {"input", cfg->sae.input == MC_SAE_INPUT_ALL ? "all" : "pooled"},
        {"config", cfg->canonical}};
    if (s == MC_OK) s = mc_store_set_attrs_str(st, "/", MC_STORE_ATTRS(sa), err);
    const mc_store_attr_i64 ia[] = {{"n_train_images", n_train},
                                    {"n_heldout_images", n_ho},
                                    {"n_train_samples", n_samples},
                                    {"steps", pos->global_step},
                                    {"features", m},
                                    {"k", sc->k},
                                    {"n", n},
                                    {"dead_latents", dead},
                                    {"train_eval_rows", tr->rows},
                                    {"heldout_eval_rows", he->rows}};
    if (s == MC_OK) s = mc_store_set_attrs_i64(st, "/", MC_STORE_ATTRS(ia), err);
    int64_t last = curve->count - 1;
    const mc_store_attr_f64 fa[] = {{"train_fvu", tr->fvu},
                                    {"train_l0", tr->l0},
                                    {"train_never_fired_frac", tr->never_fired},
                                    {"dead_frac", (double)dead / (double)m},
                                    {"heldout_fvu", he->fvu},
                                    {"heldout_l0", he->l0},
                                    {"heldout_never_fired_frac", he->never_fired},
                                    {"final_loss", last >= 0 ? curve->loss[last] : NAN},
                                    {"final_fvu", last >= 0 ? curve->loss_a[last] : NAN},
                                    {"final_auxk", last >= 0 ? curve->loss_b[last] : NAN}};
    if (s == MC_OK) s = mc_store_set_attrs_f64(st, "/", MC_STORE_ATTRS(fa), err);
    s = mc_store_finish(&st, s, err);
    return s;
}

mc_status mc_stage_sae(const mc_comm *c, const mc_config *cfg, const mc_task *task, mc_error *err) {
    mc_train_data td;
    MC_TRY(mc_train_data_open(c, cfg, task->seed, &td, err));
    mc_run_paths p;
    bool complete = false;
    mc_status s = mc_sae_paths(cfg, td.extract_key, task->seed, &p, err);
    if (s == MC_OK) s = mc_store_peek_complete(c, p.store, &complete, err);
    if (s != MC_OK || complete) {
        if (complete) mc_info0("sae: complete, skipping (%s)", p.store);
        mc_train_data_close(&td);
        return s;
    }
    s = mc_comm_agree(c, c->rank == 0 ? mc_mkdir_p(p.dir, err) : MC_OK, err);
    mc_acts a = {0};
    if (s == MC_OK) s = mc_acts_open(c, td.st, cfg->sae.layer, &a, err);
    int64_t *train = NULL, *ho = NULL, n_train = 0, n_ho = 0;
    if (s == MC_OK)
        s = mc_comm_agree(
            c, split_images(&td, cfg->sae.heldout, task->seed, &train, &n_train, &ho, &n_ho, err),
            err);
    const int64_t all_tokens = cfg->sae.input == MC_SAE_INPUT_ALL ? a.tokens : 1;
    const int64_t per = cfg->sae.tokens_per_image;
    const int64_t tokens = all_tokens > 1 && per > 0 && per < all_tokens ? per : all_tokens;
    const int64_t n_samples = n_train * tokens;
    /* sae.tokens_per_image: training image r keeps the first `tokens` entries of a permutation of
     * its token indices drawn from (seed, TOKENS_STREAM, its image index): fixed for the run. */
    int64_t *tok = NULL;
    if (s == MC_OK && tokens < all_tokens) {
        tok = mc_alloc_array((size_t)n_samples, sizeof(int64_t));
        int64_t *perm = mc_alloc_array((size_t)all_tokens, sizeof(int64_t));
        if (!tok || !perm) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory for the token sample");
        for (int64_t r = 0; s == MC_OK && r < n_train; r++) {
            mc_rng_permutation((uint64_t)task->seed, ((uint64_t)train[r] << 32) | TOKENS_STREAM,
                               all_tokens, perm);
            memcpy(tok + r * tokens, perm, (size_t)tokens * sizeof(int64_t));
        }
        free(perm);
        s = mc_comm_agree(c, s, err);
    }
    mc_sae *sae = NULL;
    mc_sae_config sc = mc_sae_config_of(cfg, a.dim, task->seed);
    if (s == MC_OK) s = mc_comm_agree(c, mc_sae_create(&sc, &sae, err), err);
    mc_train_pos pos = {0};
    mc_train_curve curve = {0};
    if (s == MC_OK) s = mc_stage_resume_checkpoint(c, &p, NULL, sae, &pos, &curve, "sae", err);
    sae_source src = {.a = &a, .imgs = train, .tokens = tokens, .tok = tok};
    mc_stage_hook hook = {.comm = c,
                          .sae = sae,
                          .curve = &curve,
                          .ckpt = p.ckpt,
                          .curve_path = p.curve,
                          .key = p.key,
                          .every = cfg->sae.checkpoint_every,
                          .max_steps = cfg->sae.steps,
                          .what = "sae"};
    bool done = pos.epoch >= sc.epochs || (cfg->sae.steps > 0 && pos.global_step >= cfg->sae.steps);
    if (s == MC_OK && !done) {
        mc_info0("sae: layer %s, %lld training samples (%lld images x %lld), %lld held-out images, "
                 "%lld -> %lld, k %d",
                 cfg->sae.layer, (long long)n_samples, (long long)n_train, (long long)tokens,
                 (long long)n_ho, (long long)sc.n, (long long)sc.m, sc.k);
        double t0 = mc_now();
        s = mc_sae_train(c, sae, n_samples, sae_fetch, &src, &pos, &curve, mc_stage_hook_fn, &hook,
                         err);
        if (s == MC_ERR_INTERRUPTED && hook.limit_hit) s = MC_OK;
        if (s == MC_OK) s = mc_stage_save(&hook, &pos, err);
        if (s == MC_OK)
            mc_info0("sae: %lld steps in %.1f s", (long long)pos.global_step, mc_now() - t0);
    }
    /* Metrics: the held-out images, and as many training rows. */
    eval_stats tr = {0}, he = {0};
    sae_source hsrc = {.a = &a, .imgs = ho, .tokens = all_tokens};
    if (s == MC_OK)
        s = sae_eval(c, sae, &src, n_samples < EVAL_MAX_ROWS ? n_samples : EVAL_MAX_ROWS, &tr, err);
    if (s == MC_OK)
        s = sae_eval(c, sae, &hsrc,
                     n_ho * all_tokens < EVAL_MAX_ROWS ? n_ho * all_tokens : EVAL_MAX_ROWS, &he,
                     err);
    if (s == MC_OK)
        s = write_sae_store(c, cfg, task, &td, &p, sae, &curve, &pos, ho, n_ho, n_train, n_samples,
                            &tr, &he, err);
    if (s == MC_OK) {
        mc_info0("sae: FVU %.4f (held-out %.4f), L0 %.1f, dead %.3f -> %s", tr.fvu, he.fvu, tr.l0,
                 curve.count ? curve.extra[curve.count - 1] : 0.0f, p.store);
        if (c->rank == 0) {
            unlink(p.ckpt);
            unlink(p.curve);
        }
    }
    free(src.tmp);
    free(tok);
    free(hsrc.tmp);
    mc_train_curve_free(&curve);
    mc_sae_free(&sae);
    free(train);
    free(ho);
    mc_acts_close(&a);
    mc_train_data_close(&td);
    return s;
}

/* ---- the registry entry ----------------------------------------------------------------------- */

static void sae_cost(const mc_config *cfg, const mc_plan_inputs *in, mc_plan *p, mc_plan_stage *S,
                     double *flop, double *core_s, double *mem_b) {
    int64_t per = cfg->sae.input == MC_SAE_INPUT_ALL ? p->target.T : 1;
    if (per > 1 && cfg->sae.tokens_per_image > 0 && cfg->sae.tokens_per_image < per)
        per = cfg->sae.tokens_per_image;
    int64_t rows = p->n_train * per;
    int64_t B = cfg->sae.batch_size, m = cfg->sae.features, k = cfg->sae.k, ka = cfg->sae.aux_k;
    int64_t train_rows = rows - (int64_t)((double)rows * cfg->sae.heldout);
    int64_t per_epoch =
        train_rows / B > 0 ? train_rows / B : 1; /* full batches only, as the stage does */
    int64_t steps = cfg->sae.steps > 0 ? cfg->sae.steps : cfg->sae.epochs * per_epoch;
    double n = (double)in->sae_dim, np = 2.0 * (double)m * n + (double)m + n;
    S->items = (double)steps;
    mc_strlcpy(S->item_name, "steps", sizeof S->item_name);
    /* dense encoder (split over ranks) + sparse decode/backward (every rank) */
    double enc = 2.0 * (double)B * (double)m * n; /* encoder forward + the W_enc gradient */
    double sparse = 4.0 * (double)B * (double)(k + ka) * n;
    S->gmac_per_item = (enc + sparse) / 1e9;
    /* Adam reads/writes params, grads, m, v (16 bytes each way per parameter), every rank */
    double adam_s = np * 32.0 / (in->mem * p->threads);
    double wall_step =
        2.0 * enc / (in->gemm * in->cores) + 2.0 * sparse / (in->gemm * p->threads) + adam_s;
    /* Beside the steps, what every task does once (mc_stage_sae): the initialisation, one normal
     * draw per encoder weight on every rank; each checkpoint (every sae.checkpoint_every steps
     * and the last: the weights and Adam's two moments, fsync'd) and the store's weights, written
     * by rank 0; the two evaluations, up to EVAL_MAX_ROWS rows each through the dense encoder,
     * split over the ranks. */
    const int64_t n_ho = (int64_t)((double)p->n_train * cfg->sae.heldout);
    const int64_t all_tok = cfg->sae.input == MC_SAE_INPUT_ALL ? p->target.T : 1;
    const double eval_rows =
        (double)(train_rows < EVAL_MAX_ROWS ? train_rows : EVAL_MAX_ROWS) +
        (double)(n_ho * all_tok < EVAL_MAX_ROWS ? n_ho * all_tok : EVAL_MAX_ROWS);
    const double ckpts =
        1.0 + (cfg->sae.checkpoint_every > 0 ? (double)(steps / cfg->sae.checkpoint_every) : 0.0);
    const double once = (double)m * n / in->normals + (ckpts * 3.0 + 1.0) * np * 4.0 / in->write +
                        2.0 * eval_rows * (double)m * n / (in->gemm * in->cores);
    S->wall_s_task = (double)steps * wall_step + once;
    *core_s = S->wall_s_task * in->cores;
    *flop = 2.0 * (enc + sparse) * (double)steps + 2.0 * eval_rows * (double)m * n;
    *mem_b += np * 4.0 * 4 + (double)m * 8 + (double)B * (double)m * 4 +
              (double)rows * n * 4 / p->ranks + (double)B * n * 8;
    /* the store keeps the weights and the curves; the checkpoint (weights + Adam state,
     * 3x the weights) exists only while the task trains */
    mc_plan_add_store(
        p, S->stage, "sae/sae-s<seed>-l<layer>-<key>.h5 (weights, curves; +2x while training)",
        (int)S->n_tasks, np * 4.0 + (double)steps * 16 + MC_PLAN_SMALL_STORE_OVERHEAD_BYTES);
}

const mc_stage_desc mc_sae_stage = {
    .stage = MC_STAGE_SAE,
    .summary = "the top-k SAE of a seed on sae.layer",
    .outputs = "sae/sae-s<seed>-l<layer>-<key16>.h5 (+ checkpoint, curve)",
    .check = NULL,
    .run = mc_stage_sae,
    .cost = sae_cost,
};
