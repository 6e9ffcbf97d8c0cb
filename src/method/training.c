/* training.c - settings, curves, checkpoints and SAE loading for the training stages
 * (training.h). */
#include "method/training.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/log.h"
#include "miclip/miclip.h"
#include "miclip/safetensors.h"
#include "miclip/store.h"

mc_sae_config mc_sae_config_of(const mc_config *cfg, int64_t n, int64_t seed) {
    mc_sae_config s = mc_sae_defaults();
    s.n = n;
    s.m = cfg->sae.features;
    s.k = (int)cfg->sae.k;
    s.k_aux = (int)cfg->sae.aux_k;
    s.aux_coef = cfg->sae.aux_coef;
    s.dead_samples = cfg->sae.dead_after;
    s.adam.lr = cfg->sae.lr;
    s.batch_size = cfg->sae.batch_size;
    s.epochs = (int)cfg->sae.epochs;
    s.seed = (uint64_t)seed;
    s.median_samples = cfg->sae.init_samples;
    s.shuffle_block = 1;
    return s;
}

mc_align_config mc_align_config_of(const mc_config *cfg, int64_t n, int64_t d, int64_t n_classes,
                                   int variant, int64_t seed) {
    mc_align_config a = mc_align_defaults();
    a.n = n;
    a.d = d;
    a.n_classes = n_classes;
    a.variant = variant == MC_VARIANT_IN    ? MC_ALIGN_IN
                : variant == MC_VARIANT_OUT ? MC_ALIGN_OUT
                                            : MC_ALIGN_IN_OUT;
    a.learn_scale = cfg->align.temperature.learnable;
    a.logit_scale =
        a.learn_scale ? 1.0 / cfg->align.init_temperature : 1.0 / cfg->align.temperature.value;
    a.adam.lr = cfg->align.lr;
    a.batch_size = cfg->align.batch_size;
    /* stop: converged trains epoch by epoch up to max_epochs (align.c) */
    a.epochs =
        (int)(cfg->align.stop == MC_ALIGN_STOP_EPOCHS ? cfg->align.epochs : cfg->align.max_epochs);
    a.seed = (uint64_t)seed;
    a.shuffle_block = 1;
    return a;
}

mc_status mc_curve_save(const mc_train_curve *curve, const char *path, mc_error *err) {
    mc_st_writer *w = NULL;
    MC_TRY(mc_st_writer_create(&w, err));
    char cnt[32];
    snprintf(cnt, sizeof cnt, "%lld", (long long)curve->count);
    mc_status s = mc_st_writer_add_metadata(w, "count", cnt, err);
    const float *arr[4] = {curve->loss, curve->loss_a, curve->loss_b, curve->extra};
    const char *names[4] = {"loss", "a", "b", "c"};
    int64_t shape[1] = {curve->count};
    for (int i = 0; s == MC_OK && curve->count > 0 && i < 4; i++)
        s = mc_st_writer_add(w, names[i], MC_DTYPE_F32, 1, shape, arr[i], err);
    if (s == MC_OK) s = mc_st_writer_save(w, path, err);
    mc_st_writer_free(&w);
    return s;
}

mc_status mc_curve_load(mc_train_curve *curve, const char *path, int64_t keep, mc_error *err) {
    mc_train_curve_free(curve);
    if (!mc_file_exists(path)) {
        if (keep == 0) return MC_OK;
        return MC_FAIL(err, MC_ERR_IO, "%s: missing (the checkpoint is at step %lld)", path,
                       (long long)keep);
    }
    mc_st_file *f = NULL;
    MC_TRY(mc_st_open(path, &f, err));
    const char *cnt = mc_st_metadata(f, "count");
    long long count = cnt ? atoll(cnt) : -1;
    mc_status s = MC_OK;
    if (count < keep)
        s = MC_FAIL(err, MC_ERR_FORMAT, "%s: %lld curve entries, the checkpoint needs %lld", path,
                    count, (long long)keep);
    float *v[4] = {0};
    const char *names[4] = {"loss", "a", "b", "c"};
    for (int i = 0; s == MC_OK && keep > 0 && i < 4; i++) {
        int64_t shape[1] = {count};
        v[i] = mc_alloc_array((size_t)count, sizeof(float));
        s = v[i] ? mc_st_read_f32(f, names[i], 1, shape, v[i], err)
                 : MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    for (int64_t j = 0; s == MC_OK && j < keep; j++)
        s = mc_train_curve_push(curve, v[0][j], v[1][j], v[2][j], v[3][j], err);
    for (int i = 0; i < 4; i++) free(v[i]);
    mc_st_close(&f);
    return s;
}

mc_status mc_stage_resume_checkpoint(const mc_comm *c, const mc_run_paths *p, mc_encoder *enc,
                                     mc_sae *sae, mc_train_pos *pos, mc_train_curve *curve,
                                     const char *what, mc_error *err) {
    int exists = c->rank == 0 ? mc_file_exists(p->ckpt) : 0;
    MPI_Bcast(&exists, 1, MPI_INT, 0, c->comm);
    if (!exists) return MC_OK;
    mc_status s = enc ? mc_encoder_load(enc, pos, p->key, p->ckpt, err)
                      : mc_sae_load(sae, pos, p->key, p->ckpt, err);
    if (s == MC_OK) s = mc_curve_load(curve, p->curve, pos->global_step, err);
    MC_TRY(mc_comm_agree(c, s, err));
    mc_info0("%s: resuming from the checkpoint at step %lld (%s)", what,
             (long long)pos->global_step, p->ckpt);
    return MC_OK;
}

mc_status mc_stage_save(mc_stage_hook *h, const mc_train_pos *pos, mc_error *err) {
    mc_status s = MC_OK;
    if (h->comm->rank == 0) {
        if (h->save_extra) s = h->save_extra(h->extra_user, err);
        if (s == MC_OK) s = mc_curve_save(h->curve, h->curve_path, err);
        if (s == MC_OK)
            s = h->enc ? mc_encoder_save(h->enc, pos, h->key, h->ckpt, err)
                       : mc_sae_save(h->sae, pos, h->key, h->ckpt, err);
    }
    return mc_comm_agree(h->comm, s, err);
}

mc_status mc_stage_hook_fn(void *user, const mc_train_pos *pos, mc_error *err) {
    mc_stage_hook *h = user;
    if (h->max_steps > 0 && pos->global_step >= h->max_steps) {
        h->limit_hit = true;
        return MC_FAIL(err, MC_ERR_INTERRUPTED, "%s: step limit %lld reached", h->what,
                       (long long)h->max_steps);
    }
    bool stop = mc_comm_stop_requested(h->comm);
    bool due = h->every > 0 && pos->global_step % h->every == 0;
    if (!stop && !due) return MC_OK;
    MC_TRY(mc_stage_save(h, pos, err));
    if (stop)
        return MC_FAIL(err, MC_ERR_INTERRUPTED,
                       "%s: stopped by a signal after step %lld; checkpoint %s; "
                       "rerun to resume",
                       h->what, (long long)pos->global_step, h->ckpt);
    return MC_OK;
}

bool mc_sae_applies(const mc_config *cfg, const char *layer) {
    return mc_config_has_stage(cfg, MC_STAGE_SAE) && !strcmp(cfg->sae.layer, layer);
}

mc_status mc_sae_load_store(const mc_comm *c, const mc_config *cfg, const char *path, int64_t dim,
                            int64_t seed, mc_sae **out, mc_error *err) {
    *out = NULL;
    mc_sae_config sc = mc_sae_config_of(cfg, dim, seed);
    mc_sae *sae = NULL;
    mc_status s = mc_comm_agree(c, mc_sae_create(&sc, &sae, err), err);
    if (s != MC_OK) return s;
    mc_store *st = NULL;
    s = mc_store_open(c, path, MC_STORE_READ, &st, err);
    const char *names[4] = {"W_enc", "b_enc", "W_dec_T", "b_pre"};
    float *dst[4] = {mc_sae_w_enc(sae), mc_sae_b_enc(sae), mc_sae_w_dec_t(sae), mc_sae_b_pre(sae)};
    const int64_t want[4][2] = {{sc.m, dim}, {sc.m, 0}, {sc.m, dim}, {dim, 0}};
    for (int i = 0; s == MC_OK && i < 4; i++) {
        mc_store_dataset_info di;
        s = mc_store_dataset_info_get(st, names[i], &di, err);
        if (s == MC_OK && (di.shape[0] != want[i][0] || di.ndim != (want[i][1] ? 2 : 1) ||
                           (want[i][1] && di.shape[1] != want[i][1])))
            s = MC_FAIL(err, MC_ERR_SHAPE,
                        "%s: %s does not match the SAE of the config on a %lld-wide layer", path,
                        names[i], (long long)dim);
        if (s == MC_OK)
            s = mc_store_read_rows(st, names[i], MC_DTYPE_F32, 0, want[i][0], dst[i], err);
    }
    if (st) mc_store_close(&st, NULL);
    s = mc_comm_agree(c, s, err);
    if (s == MC_OK)
        *out = sae;
    else
        mc_sae_free(&sae);
    return s;
}

mc_status mc_train_store_common(mc_store *st, bool root, const mc_train_curve *curve,
                                const char *const names[4], const char *stage, const mc_config *cfg,
                                const mc_train_data *td, int64_t seed, mc_error *err) {
    const float *v[4] = {curve->loss, curve->loss_a, curve->loss_b, curve->extra};
    const int64_t sh[1] = {curve->count};
    mc_status s = MC_OK;
    for (int i = 0; s == MC_OK && i < 4; i++) {
        s = mc_store_create_dataset(st, names[i], MC_DTYPE_F32, 1, sh, 0, err);
        if (s == MC_OK)
            s = mc_store_write_rows(st, names[i], MC_DTYPE_F32, 0, root ? curve->count : 0, v[i],
                                    err);
    }
    mc_store_provenance prov = {.stage = stage,
                                .config_hash = cfg->hash,
                                .model = td->extract_key,
                                .dataset = td->path,
                                .seed = seed,
                                .has_seed = true};
    if (s == MC_OK) s = mc_store_write_provenance(st, "/", &prov, err);
    return s;
}

mc_status mc_heldout_split(const int64_t *imgs, int64_t n, int64_t nh, int64_t seed,
                           uint64_t stream, int64_t **train, int64_t *n_train, int64_t **ho,
                           int64_t *n_ho, mc_error *err) {
    int64_t *perm = mc_alloc_array((size_t)n + 1, sizeof(int64_t));
    uint8_t *is_ho = mc_calloc_array((size_t)n + 1, 1);
    *train = mc_alloc_array((size_t)n + 1, sizeof(int64_t));
    *ho = mc_alloc_array((size_t)n + 1, sizeof(int64_t));
    *n_train = *n_ho = 0;
    mc_status s = MC_OK;
    if (!perm || !is_ho || !*train || !*ho) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    if (s == MC_OK) {
        mc_rng_permutation((uint64_t)seed, stream, n, perm);
        for (int64_t j = 0; j < nh; j++) is_ho[perm[j]] = 1;
        for (int64_t j = 0; j < n; j++) {
            if (is_ho[j])
                (*ho)[(*n_ho)++] = imgs[j];
            else
                (*train)[(*n_train)++] = imgs[j];
        }
    }
    free(perm), free(is_ho);
    return s;
}
