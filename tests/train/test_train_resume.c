/* test_train_resume.c - a checkpointed, interrupted and resumed training run equals an
 * uninterrupted one, bit for bit, for E_n and for the SAE; also when the resume runs on a
 * different number of ranks (rank 0 resumes alone on MPI_COMM_SELF). Run at 1, 2 and 4 ranks.
 * Also: a checkpoint with another config hash is refused. */
#include <stdlib.h>
#include <string.h>

#include "miclip/train.h"
#include "test_util.h"

enum { NA = 10, DE = 5, NC = 4, NS = 12 };

static mc_status fetch_align(void *user, const int64_t *idx, int64_t rows, float *acts, float *img,
                             int32_t *label, mc_error *err) {
    (void)user;
    (void)err;
    for (int64_t r = 0; r < rows; r++) {
        uint64_t s = (uint64_t)idx[r];
        label[r] = (int32_t)(s % NC);
        for (int k = 0; k < NA; k++) acts[r * NA + k] = (float)mc_rng_normal(31, 1, s * NA + k);
        for (int k = 0; k < DE; k++) img[r * DE + k] = (float)mc_rng_normal(31, 2, s * DE + k);
    }
    return MC_OK;
}

static mc_status fetch_sae(void *user, const int64_t *idx, int64_t rows, float *acts,
                           mc_error *err) {
    (void)user;
    (void)err;
    for (int64_t r = 0; r < rows; r++)
        for (int k = 0; k < NS; k++)
            acts[r * NS + k] = (float)mc_rng_normal(32, 1, (uint64_t)idx[r] * NS + k);
    return MC_OK;
}

/* Saves every 5 steps through the library hook; "dies" right after the save at step 5. */
typedef struct {
    mc_checkpoint_hook ck;
    int64_t die_at;
} kill_hook;
static mc_status hook(void *user, const mc_train_pos *pos, mc_error *err) {
    kill_hook *k = user;
    MC_TRY(mc_checkpoint_hook_fn(&k->ck, pos, err));
    if (pos->global_step == k->die_at) return MC_FAIL(err, MC_ERR_INTERRUPTED, "simulated kill");
    return MC_OK;
}

static float cls[NC * DE];

static mc_encoder *new_enc(void) {
    mc_align_config cfg = mc_align_defaults();
    cfg.n = NA;
    cfg.d = DE;
    cfg.n_classes = NC;
    cfg.batch_size = 48;
    cfg.chunk_rows = 8;
    cfg.epochs = 3;
    cfg.seed = 4;
    cfg.adam.lr = 1e-2;
    mc_encoder *e = NULL;
    mc_error err = {0};
    MC_ASSERT(mc_encoder_create(&cfg, cls, &e, &err) == MC_OK);
    return e;
}

static mc_sae *new_sae(void) {
    mc_sae_config cfg = mc_sae_defaults();
    cfg.n = NS;
    cfg.m = 96;
    cfg.k = 3;
    cfg.k_aux = 6;
    cfg.dead_samples = 60;
    cfg.batch_size = 40;
    cfg.chunk_rows = 8;
    cfg.epochs = 3;
    cfg.seed = 6;
    cfg.median_samples = 40;
    mc_sae *s = NULL;
    mc_error err = {0};
    MC_ASSERT(mc_sae_create(&cfg, &s, &err) == MC_OK);
    return s;
}

static bool same_curve_tail(const mc_train_curve *full, const mc_train_curve *part, int64_t from) {
    if (full->count != from + part->count) return false;
    size_t b = (size_t)part->count * sizeof(float);
    return !memcmp(full->loss + from, part->loss, b) &&
           !memcmp(full->loss_a + from, part->loss_a, b) &&
           !memcmp(full->loss_b + from, part->loss_b, b) &&
           !memcmp(full->extra + from, part->extra, b);
}

static void test_encoder(const mc_comm *w, const mc_comm *self, const char *path) {
    mc_error err = {0};
    const int64_t N = 200; /* 4 steps per epoch, 12 in all */
    mc_encoder *a = new_enc();
    mc_train_pos pa = {0};
    mc_train_curve ca = {0};
    CHECK(mc_encoder_train(w, a, N, fetch_align, NULL, &pa, &ca, NULL, NULL, &err) == MC_OK);

    mc_encoder *b = new_enc();
    mc_train_pos pb = {0};
    kill_hook kh = {{w, b, NULL, path, "hash-1", 5}, 5};
    CHECK(mc_encoder_train(w, b, N, fetch_align, NULL, &pb, NULL, hook, &kh, &err) ==
          MC_ERR_INTERRUPTED);
    mc_encoder_free(&b);

    mc_encoder *r = new_enc();
    mc_train_pos pr = {0};
    mc_train_curve cr = {0};
    CHECK(mc_encoder_load(r, &pr, "hash-1", path, &err) == MC_OK);
    CHECK(pr.global_step == 5 && pr.epoch == 1 && pr.batch_in_epoch == 1);
    CHECK(mc_encoder_train(w, r, N, fetch_align, NULL, &pr, &cr, NULL, NULL, &err) == MC_OK);
    size_t np = NA * DE + 1;
    CHECK_MSG(!memcmp(mc_encoder_weight(a), mc_encoder_weight(r), np * sizeof(float)),
              "E_n: resumed weights differ");
    CHECK(!memcmp(mc_encoder_adam(a)->m, mc_encoder_adam(r)->m, np * sizeof(float)));
    CHECK(!memcmp(mc_encoder_adam(a)->v, mc_encoder_adam(r)->v, np * sizeof(float)));
    CHECK(mc_encoder_adam(a)->step == mc_encoder_adam(r)->step);
    CHECK_MSG(same_curve_tail(&ca, &cr, 5), "E_n: resumed loss curve differs");

    if (w->rank == 0) { /* resume alone: a different rank count */
        mc_encoder *s = new_enc();
        mc_train_pos ps = {0};
        CHECK(mc_encoder_load(s, &ps, "hash-1", path, &err) == MC_OK);
        CHECK(mc_encoder_train(self, s, N, fetch_align, NULL, &ps, NULL, NULL, NULL, &err) ==
              MC_OK);
        CHECK_MSG(!memcmp(mc_encoder_weight(a), mc_encoder_weight(s), np * sizeof(float)),
                  "E_n: resumed on 1 rank differs");
        mc_encoder_free(&s);
        /* Another configuration's checkpoint is refused, naming the field. */
        mc_encoder *x = new_enc();
        mc_train_pos px = {0};
        mc_error e2 = {0};
        CHECK(mc_encoder_load(x, &px, "hash-2", path, &e2) == MC_ERR_FORMAT);
        CHECK(strstr(e2.msg, "config_hash") != NULL);
        mc_encoder_free(&x);
    }
    mc_encoder_free(&a);
    mc_encoder_free(&r);
    mc_train_curve_free(&ca);
    mc_train_curve_free(&cr);
}

static void test_sae(const mc_comm *w, const mc_comm *self, const char *path) {
    mc_error err = {0};
    const int64_t N = 160; /* 4 steps per epoch */
    mc_sae *a = new_sae();
    mc_train_pos pa = {0};
    mc_train_curve ca = {0};
    CHECK(mc_sae_train(w, a, N, fetch_sae, NULL, &pa, &ca, NULL, NULL, &err) == MC_OK);
    bool aux = false;
    for (int64_t i = 5; i < ca.count; i++) aux |= ca.loss_b[i] > 0;
    CHECK(aux); /* dead counters matter after the resume point */

    mc_sae *b = new_sae();
    mc_train_pos pb = {0};
    kill_hook kh = {{w, NULL, b, path, "h", 5}, 5};
    CHECK(mc_sae_train(w, b, N, fetch_sae, NULL, &pb, NULL, hook, &kh, &err) == MC_ERR_INTERRUPTED);
    mc_sae_free(&b);

    for (int pass = 0; pass < 2; pass++) {
        const mc_comm *c = pass == 0 ? w : self;
        if (pass == 1 && w->rank != 0) break;
        mc_sae *r = new_sae();
        mc_train_pos pr = {0};
        mc_train_curve cr = {0};
        CHECK(mc_sae_load(r, &pr, "h", path, &err) == MC_OK);
        CHECK(mc_sae_train(c, r, N, fetch_sae, NULL, &pr, &cr, NULL, NULL, &err) == MC_OK);
        size_t np, np2;
        float *pa_ = mc_sae_params(a, &np), *pr_ = mc_sae_params(r, &np2);
        CHECK_MSG(np == np2 && !memcmp(pa_, pr_, np * sizeof(float)),
                  "SAE: resumed weights differ (%s)", pass ? "1 rank" : "same ranks");
        CHECK(!memcmp(mc_sae_adam(a)->m, mc_sae_adam(r)->m, np * sizeof(float)));
        CHECK(!memcmp(mc_sae_since_fire(a), mc_sae_since_fire(r), 96 * sizeof(int64_t)));
        CHECK_MSG(same_curve_tail(&ca, &cr, 5), "SAE: resumed loss curve differs");
        mc_sae_free(&r);
        mc_train_curve_free(&cr);
    }
    mc_sae_free(&a);
    mc_train_curve_free(&ca);
}

int main(int argc, char **argv) {
    mc_comm w;
    mc_error err = {0};
    if (mc_comm_init(&argc, &argv, &w, &err) != MC_OK) return 1;
    mc_comm self = w;
    self.comm = MPI_COMM_SELF;
    self.rank = 0;
    self.size = 1;
    for (int i = 0; i < NC * DE; i++) cls[i] = (float)mc_rng_normal(31, 3, (uint64_t)i);
    char p1[64], p2[64];
    snprintf(p1, sizeof p1, "resume_np%d_enc.safetensors", w.size);
    snprintf(p2, sizeof p2, "resume_np%d_sae.safetensors", w.size);
    test_encoder(&w, &self, p1);
    test_sae(&w, &self, p2);
    int fails = mc_test_failures, total = 0;
    MPI_Allreduce(&fails, &total, 1, MPI_INT, MPI_SUM, w.comm);
    int rc = w.rank == 0 ? TEST_SUMMARY() : 0;
    mc_comm_finalize(&w);
    return total ? 1 : rc;
}
