/* checkpoint.c - training state in safetensors files (format in train.h): weights, Adam
 * moments and step, dead-latent counters and the data position, so that a resumed run takes
 * exactly the steps an uninterrupted one would have. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "miclip/log.h"
#include "miclip/safetensors.h"
#include "train_internal.h"

#define CKPT_VERSION "1"

/* Parameters the encoder and SAE expose only through accessors. */
typedef struct {
    const char *kind;
    int64_t dims[3]; /* encoder: d, n, 0; sae: m, n, k */
} ckpt_sizes;

static mc_status add_meta_i64(mc_st_writer *w, const char *key, int64_t v, mc_error *err) {
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRId64, v);
    return mc_st_writer_add_metadata(w, key, buf, err);
}

static mc_status add_meta_u64(mc_st_writer *w, const char *key, uint64_t v, mc_error *err) {
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    return mc_st_writer_add_metadata(w, key, buf, err);
}

static mc_status write_common(mc_st_writer *w, const char *kind, const mc_train_pos *pos,
                              const mc_adam *a, const char *hash, uint64_t seed, mc_error *err) {
    MC_TRY(mc_st_writer_add_metadata(w, "miclip.kind", kind, err));
    MC_TRY(mc_st_writer_add_metadata(w, "miclip.checkpoint_version", CKPT_VERSION, err));
    MC_TRY(mc_st_writer_add_metadata(w, "config_hash", hash ? hash : "", err));
    MC_TRY(add_meta_i64(w, "epoch", pos->epoch, err));
    MC_TRY(add_meta_i64(w, "batch_in_epoch", pos->batch_in_epoch, err));
    MC_TRY(add_meta_i64(w, "global_step", pos->global_step, err));
    MC_TRY(add_meta_i64(w, "adam_step", a->step, err));
    MC_TRY(add_meta_u64(w, "seed", seed, err));
    int64_t shp[1] = {(int64_t)a->n};
    MC_TRY(mc_st_writer_add(w, "adam.m", MC_DTYPE_F32, 1, shp, a->m, err));
    MC_TRY(mc_st_writer_add(w, "adam.v", MC_DTYPE_F32, 1, shp, a->v, err));
    return MC_OK;
}

static mc_status meta_i64(const mc_st_file *f, const char *key, int64_t *out, mc_error *err) {
    const char *v = mc_st_metadata(f, key);
    char *end = NULL;
    long long x = v ? strtoll(v, &end, 10) : 0;
    if (!v || !*v || *end || x < 0)
        return MC_FAIL(err, MC_ERR_FORMAT,
                       "checkpoint %s: metadata '%s' is %s%s%s, expected a "
                       "non-negative integer",
                       mc_st_path(f), key, v ? "'" : "missing", v ? v : "", v ? "'" : "");
    *out = x;
    return MC_OK;
}

static mc_status meta_expect(const mc_st_file *f, const char *key, const char *want,
                             mc_error *err) {
    const char *v = mc_st_metadata(f, key);
    if (!v || strcmp(v, want))
        return MC_FAIL(err, MC_ERR_FORMAT, "checkpoint %s: '%s' is '%s', this run needs '%s'%s",
                       mc_st_path(f), key, v ? v : "(missing)", want,
                       !strcmp(key, "config_hash")
                           ? " (HINT: the checkpoint belongs to a different configuration; "
                             "remove it to start over)"
                           : "");
    return MC_OK;
}

static mc_status meta_expect_i64(const mc_st_file *f, const char *key, int64_t want,
                                 mc_error *err) {
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRId64, want);
    return meta_expect(f, key, buf, err);
}

/* Reads the common part into pos and the Adam state. */
static mc_status read_common(const mc_st_file *f, const char *kind, const char *hash, mc_adam *a,
                             mc_train_pos *pos, mc_error *err) {
    MC_TRY(meta_expect(f, "miclip.kind", kind, err));
    MC_TRY(meta_expect(f, "miclip.checkpoint_version", CKPT_VERSION, err));
    MC_TRY(meta_expect(f, "config_hash", hash ? hash : "", err));
    int64_t ep, bie, gs, as;
    MC_TRY(meta_i64(f, "epoch", &ep, err));
    MC_TRY(meta_i64(f, "batch_in_epoch", &bie, err));
    MC_TRY(meta_i64(f, "global_step", &gs, err));
    MC_TRY(meta_i64(f, "adam_step", &as, err));
    if (ep > INT32_MAX)
        return MC_FAIL(err, MC_ERR_FORMAT, "checkpoint %s: epoch %lld", mc_st_path(f),
                       (long long)ep);
    int64_t shp[1] = {(int64_t)a->n};
    MC_TRY(mc_st_read_f32(f, "adam.m", 1, shp, a->m, err));
    MC_TRY(mc_st_read_f32(f, "adam.v", 1, shp, a->v, err));
    a->step = as;
    pos->epoch = (int)ep;
    pos->batch_in_epoch = bie;
    pos->global_step = gs;
    return MC_OK;
}

mc_status mc_encoder_save(const mc_encoder *e, const mc_train_pos *pos, const char *config_hash,
                          const char *path, mc_error *err) {
    mc_encoder *me = (mc_encoder *)e; /* accessors are non-const; nothing is modified */
    const mc_align_config *cfg = mc_encoder_config(e);
    mc_st_writer *w = NULL;
    MC_TRY(mc_st_writer_create(&w, err));
    int64_t shw[2] = {cfg->d, cfg->n};
    float ls = mc_encoder_log_scale(e);
    mc_status s = mc_st_writer_add(w, "W", MC_DTYPE_F32, 2, shw, mc_encoder_weight(me), err);
    if (s == MC_OK) s = mc_st_writer_add(w, "log_logit_scale", MC_DTYPE_F32, 0, NULL, &ls, err);
    if (s == MC_OK)
        s = write_common(w, "encoder", pos, mc_encoder_adam(me), config_hash, cfg->seed, err);
    if (s == MC_OK)
        s = mc_st_writer_add_metadata(w, "variant", mc_align_variant_name(cfg->variant), err);
    if (s == MC_OK)
        s = mc_st_writer_add_metadata(w, "learn_scale", cfg->learn_scale ? "true" : "false", err);
    if (s == MC_OK) s = add_meta_i64(w, "n", cfg->n, err);
    if (s == MC_OK) s = add_meta_i64(w, "d", cfg->d, err);
    if (s == MC_OK) s = mc_st_writer_save(w, path, err);
    mc_st_writer_free(&w);
    return s;
}

mc_status mc_encoder_load(mc_encoder *e, mc_train_pos *pos, const char *config_hash,
                          const char *path, mc_error *err) {
    const mc_align_config *cfg = mc_encoder_config(e);
    mc_st_file *f = NULL;
    MC_TRY(mc_st_open(path, &f, err));
    int64_t shw[2] = {cfg->d, cfg->n};
    mc_status s = meta_expect_i64(f, "n", cfg->n, err);
    if (s == MC_OK) s = meta_expect_i64(f, "d", cfg->d, err);
    if (s == MC_OK) s = meta_expect(f, "variant", mc_align_variant_name(cfg->variant), err);
    if (s == MC_OK) s = mc_st_read_f32(f, "W", 2, shw, mc_encoder_weight(e), err);
    float ls = 0;
    if (s == MC_OK) s = mc_st_read_f32(f, "log_logit_scale", 0, NULL, &ls, err);
    if (s == MC_OK) s = read_common(f, "encoder", config_hash, mc_encoder_adam(e), pos, err);
    if (s == MC_OK) mc_encoder_set_log_scale(e, ls);
    mc_st_close(&f);
    return s;
}

mc_status mc_sae_save(const mc_sae *sc, const mc_train_pos *pos, const char *config_hash,
                      const char *path, mc_error *err) {
    mc_sae *s = (mc_sae *)sc; /* accessors are non-const; nothing is modified */
    const mc_sae_config *cfg = mc_sae_get_config(s);
    mc_st_writer *w = NULL;
    MC_TRY(mc_st_writer_create(&w, err));
    int64_t mn[2] = {cfg->m, cfg->n}, m1[1] = {cfg->m}, n1[1] = {cfg->n};
    mc_status st = mc_st_writer_add(w, "W_enc", MC_DTYPE_F32, 2, mn, mc_sae_w_enc(s), err);
    if (st == MC_OK) st = mc_st_writer_add(w, "b_enc", MC_DTYPE_F32, 1, m1, mc_sae_b_enc(s), err);
    if (st == MC_OK)
        st = mc_st_writer_add(w, "W_dec_T", MC_DTYPE_F32, 2, mn, mc_sae_w_dec_t(s), err);
    if (st == MC_OK) st = mc_st_writer_add(w, "b_pre", MC_DTYPE_F32, 1, n1, mc_sae_b_pre(s), err);
    if (st == MC_OK)
        st = mc_st_writer_add(w, "since_fire", MC_DTYPE_I64, 1, m1, mc_sae_since_fire(s), err);
    if (st == MC_OK) st = write_common(w, "sae", pos, mc_sae_adam(s), config_hash, cfg->seed, err);
    if (st == MC_OK) st = add_meta_i64(w, "n", cfg->n, err);
    if (st == MC_OK) st = add_meta_i64(w, "m", cfg->m, err);
    if (st == MC_OK) st = add_meta_i64(w, "k", cfg->k, err);
    if (st == MC_OK) st = mc_st_writer_save(w, path, err);
    mc_st_writer_free(&w);
    return st;
}

mc_status mc_sae_load(mc_sae *s, mc_train_pos *pos, const char *config_hash, const char *path,
                      mc_error *err) {
    const mc_sae_config *cfg = mc_sae_get_config(s);
    mc_st_file *f = NULL;
    MC_TRY(mc_st_open(path, &f, err));
    int64_t mn[2] = {cfg->m, cfg->n}, m1[1] = {cfg->m}, n1[1] = {cfg->n};
    mc_status st = meta_expect_i64(f, "n", cfg->n, err);
    if (st == MC_OK) st = meta_expect_i64(f, "m", cfg->m, err);
    if (st == MC_OK) st = meta_expect_i64(f, "k", cfg->k, err);
    if (st == MC_OK) st = mc_st_read_f32(f, "W_enc", 2, mn, mc_sae_w_enc(s), err);
    if (st == MC_OK) st = mc_st_read_f32(f, "b_enc", 1, m1, mc_sae_b_enc(s), err);
    if (st == MC_OK) st = mc_st_read_f32(f, "W_dec_T", 2, mn, mc_sae_w_dec_t(s), err);
    if (st == MC_OK) st = mc_st_read_f32(f, "b_pre", 1, n1, mc_sae_b_pre(s), err);
    const mc_st_tensor *t = NULL;
    if (st == MC_OK) st = mc_st_get(f, "since_fire", 1, m1, &t, err);
    if (st == MC_OK && t->dtype != MC_DTYPE_I64)
        st = MC_FAIL(err, MC_ERR_FORMAT, "checkpoint %s: 'since_fire' must be I64", path);
    if (st == MC_OK) memcpy(mc_sae_since_fire(s), t->data, (size_t)cfg->m * sizeof(int64_t));
    if (st == MC_OK) st = read_common(f, "sae", config_hash, mc_sae_adam(s), pos, err);
    mc_st_close(&f);
    return st;
}

mc_status mc_checkpoint_hook_fn(void *user, const mc_train_pos *pos, mc_error *err) {
    mc_checkpoint_hook *h = user;
    bool stop = mc_comm_stop_requested(h->comm);
    bool due = h->every > 0 && pos->global_step % h->every == 0;
    if (!stop && !due) return MC_OK;
    mc_status s = MC_OK;
    if (h->comm->rank == 0)
        s = h->enc ? mc_encoder_save(h->enc, pos, h->config_hash, h->path, err)
                   : mc_sae_save(h->sae, pos, h->config_hash, h->path, err);
    MC_TRY(mc_comm_agree(h->comm, s, err));
    if (stop) {
        mc_info0("stop requested: checkpoint written at step %lld (%s)",
                 (long long)pos->global_step, h->path);
        return MC_FAIL(err, MC_ERR_INTERRUPTED,
                       "training stopped by a signal after step %lld; "
                       "checkpoint %s",
                       (long long)pos->global_step, h->path);
    }
    return MC_OK;
}
