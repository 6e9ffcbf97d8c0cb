/* test_train_dist.c - data-parallel training equals single-process training, bit for bit.
 *
 * Run under mpiexec with 1, 2 and 4 ranks. Every rank trains E_n (in+out, learnable scale;
 * then out-only with a fixed scale and a batch that is not a multiple of the chunk size) and
 * the top-k SAE (with AuxK active) on synthetic data through the batch-provider callbacks.
 * Rank 0 then trains the same models again on MPI_COMM_SELF, a true 1-rank run, and the
 * final parameters, the Adam moments and every point of the loss curves must be identical
 * (memcmp). Every rank also checks it holds the same parameters as rank 0. */
#include <stdlib.h>
#include <string.h>

#include "miclip/train.h"
#include "test_util.h"

enum { N_ACT = 12, D_EMB = 6, N_CLS = 5 };

static mc_status fetch_align(void *user, const int64_t *idx, int64_t rows, float *acts, float *img,
                             int32_t *label, mc_error *err) {
    (void)user;
    (void)err;
    for (int64_t r = 0; r < rows; r++) {
        uint64_t s = (uint64_t)idx[r];
        label[r] = (int32_t)(s % N_CLS);
        for (int k = 0; k < N_ACT; k++)
            acts[r * N_ACT + k] =
                (float)mc_rng_normal(77, 1, s * N_ACT + k) + (k == label[r] ? 2.0f : 0.0f);
        for (int k = 0; k < D_EMB; k++)
            img[r * D_EMB + k] = (float)mc_rng_normal(77, 2, s * D_EMB + k);
    }
    return MC_OK;
}

enum { SAE_N = 16 };
static mc_status fetch_sae(void *user, const int64_t *idx, int64_t rows, float *acts,
                           mc_error *err) {
    (void)user;
    (void)err;
    for (int64_t r = 0; r < rows; r++)
        for (int k = 0; k < SAE_N; k++)
            acts[r * SAE_N + k] = (float)mc_rng_normal(78, 1, (uint64_t)idx[r] * SAE_N + k) + 0.5f;
    return MC_OK;
}

/* A store read that fails on the last rank at its 3rd call; a label out of range. */
typedef struct {
    int calls, fail_rank, rank;
    bool bad_label;
} faulty;
static mc_status fetch_faulty(void *user, const int64_t *idx, int64_t rows, float *acts, float *img,
                              int32_t *label, mc_error *err) {
    faulty *f = user;
    fetch_align(NULL, idx, rows, acts, img, label, err);
    if (f->bad_label) label[0] = N_CLS + 3;
    if (f->rank == f->fail_rank && ++f->calls == 3)
        return MC_FAIL(err, MC_ERR_IO, "store.h5: read of activations failed (simulated)");
    return MC_OK;
}

/* Both failures end training on every rank with the same status, and nobody hangs. */
static void check_errors(const mc_comm *c) {
    float cls[N_CLS * D_EMB] = {0};
    cls[0] = 1;
    mc_align_config cfg = mc_align_defaults();
    cfg.n = N_ACT;
    cfg.d = D_EMB;
    cfg.n_classes = N_CLS;
    cfg.batch_size = 32;
    cfg.chunk_rows = 8;
    for (int mode = 0; mode < 2; mode++) {
        mc_encoder *e = NULL;
        mc_error err = {0};
        MC_ASSERT(mc_encoder_create(&cfg, cls, &e, &err) == MC_OK);
        faulty f = {0, mode == 0 ? c->size - 1 : -1, c->rank, mode == 1};
        mc_train_pos pos = {0};
        mc_status st = mc_encoder_train(c, e, 300, fetch_faulty, &f, &pos, NULL, NULL, NULL, &err);
        CHECK_MSG(st == (mode == 0 ? MC_ERR_IO : MC_ERR_FORMAT), "rank %d: status %d (%s)", c->rank,
                  (int)st, err.msg);
        if (mode == 0)
            CHECK(pos.global_step == 2 && strstr(err.msg, "simulated") != NULL);
        else
            CHECK(strstr(err.msg, "label") != NULL);
        mc_encoder_free(&e);
    }
}

typedef struct {
    float *params;
    size_t np;
    float *m, *v;
    mc_train_curve curve;
} result;

static void free_result(result *r) {
    free(r->params);
    mc_train_curve_free(&r->curve);
    free(r->m);
    free(r->v);
}

static float *dup(const float *x, size_t n) {
    float *y = malloc(n * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    return y;
}

static result run_align(const mc_comm *c, mc_align_variant v, bool learn, int64_t batch) {
    result res = {0};
    float cls[N_CLS * D_EMB];
    for (int i = 0; i < N_CLS * D_EMB; i++) cls[i] = (float)mc_rng_normal(77, 3, (uint64_t)i);
    mc_align_config cfg = mc_align_defaults();
    cfg.n = N_ACT;
    cfg.d = D_EMB;
    cfg.n_classes = N_CLS;
    cfg.variant = v;
    cfg.learn_scale = learn;
    cfg.batch_size = batch;
    cfg.chunk_rows = 8;
    cfg.epochs = 2;
    cfg.seed = 5;
    cfg.adam.lr = 1e-2;
    mc_encoder *e = NULL;
    mc_error err = {0};
    MC_ASSERT(mc_encoder_create(&cfg, cls, &e, &err) == MC_OK);
    mc_train_pos pos = {0};
    mc_status st =
        mc_encoder_train(c, e, 300, fetch_align, NULL, &pos, &res.curve, NULL, NULL, &err);
    if (st != MC_OK) fprintf(stderr, "align: %s\n", err.msg);
    CHECK(st == MC_OK);
    CHECK(pos.epoch == 2 && pos.global_step == 2 * (300 / batch));
    res.np = (size_t)(N_ACT * D_EMB) + 1;
    res.params = dup(mc_encoder_weight(e), res.np);
    res.m = dup(mc_encoder_adam(e)->m, res.np);
    res.v = dup(mc_encoder_adam(e)->v, res.np);
    mc_encoder_free(&e);
    return res;
}

static result run_sae(const mc_comm *c) {
    result res = {0};
    mc_sae_config cfg = mc_sae_defaults();
    cfg.n = SAE_N;
    cfg.m = 128;
    cfg.k = 4;
    cfg.k_aux = 8;
    cfg.dead_samples = 100;
    cfg.batch_size = 100; /* 7 chunks of 16, the last one short */
    cfg.chunk_rows = 16;
    cfg.epochs = 2;
    cfg.seed = 9;
    cfg.median_samples = 50;
    mc_sae *s = NULL;
    mc_error err = {0};
    MC_ASSERT(mc_sae_create(&cfg, &s, &err) == MC_OK);
    mc_train_pos pos = {0};
    mc_status st = mc_sae_train(c, s, 600, fetch_sae, NULL, &pos, &res.curve, NULL, NULL, &err);
    if (st != MC_OK) fprintf(stderr, "sae: %s\n", err.msg);
    CHECK(st == MC_OK);
    bool aux_seen = false;
    for (int64_t i = 0; i < res.curve.count; i++) aux_seen |= res.curve.loss_b[i] > 0;
    CHECK(aux_seen); /* the test covers the AuxK path */
    float *p = mc_sae_params(s, &res.np);
    res.params = dup(p, res.np);
    res.m = dup(mc_sae_adam(s)->m, res.np);
    res.v = dup(mc_sae_adam(s)->v, res.np);
    mc_sae_free(&s);
    return res;
}

static void compare(const char *what, const mc_comm *world, result *dist, result *single) {
    if (world->rank == 0) {
        CHECK_MSG(!memcmp(dist->params, single->params, dist->np * sizeof(float)),
                  "%s: parameters differ from the 1-rank run", what);
        CHECK_MSG(!memcmp(dist->m, single->m, dist->np * sizeof(float)) &&
                      !memcmp(dist->v, single->v, dist->np * sizeof(float)),
                  "%s: Adam moments differ from the 1-rank run", what);
        CHECK(dist->curve.count == single->curve.count);
        if (dist->curve.count == single->curve.count)
            CHECK_MSG(
                !memcmp(dist->curve.loss, single->curve.loss, (size_t)dist->curve.count * 4) &&
                    !memcmp(dist->curve.loss_a, single->curve.loss_a,
                            (size_t)dist->curve.count * 4) &&
                    !memcmp(dist->curve.loss_b, single->curve.loss_b,
                            (size_t)dist->curve.count * 4),
                "%s: loss curves differ from the 1-rank run", what);
        printf("%s: %lld steps, first loss %.6f, last loss %.6f\n", what,
               (long long)dist->curve.count, dist->curve.loss[0],
               dist->curve.loss[dist->curve.count - 1]);
        CHECK(dist->curve.loss[dist->curve.count - 1] < dist->curve.loss[0]); /* it trains */
    }
    /* Every rank holds rank 0's parameters. */
    float *r0 = dup(dist->params, dist->np);
    MPI_Bcast(r0, (int)dist->np, MPI_FLOAT, 0, world->comm);
    CHECK_MSG(!memcmp(r0, dist->params, dist->np * sizeof(float)),
              "%s: rank %d differs from rank 0", what, world->rank);
    free(r0);
}

int main(int argc, char **argv) {
    mc_comm world;
    mc_error err = {0};
    if (mc_comm_init(&argc, &argv, &world, &err) != MC_OK) return 1;
    mc_comm self = world;
    self.comm = MPI_COMM_SELF;
    self.rank = 0;
    self.size = 1;

    struct {
        mc_align_variant v;
        bool learn;
        int64_t batch;
        const char *name;
    } cases[] = {
        {MC_ALIGN_IN_OUT, true, 64, "E_n in+out learnable, batch 64"},
        {MC_ALIGN_OUT, false, 60, "E_n out fixed, batch 60"},
        {MC_ALIGN_IN, true, 30, "E_n in learnable, batch 30"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        result d = run_align(&world, cases[i].v, cases[i].learn, cases[i].batch);
        result s = {0};
        if (world.rank == 0) s = run_align(&self, cases[i].v, cases[i].learn, cases[i].batch);
        compare(cases[i].name, &world, &d, &s);
        free_result(&d);
        free_result(&s);
    }
    {
        result d = run_sae(&world);
        result s = {0};
        if (world.rank == 0) s = run_sae(&self);
        compare("top-k SAE with AuxK", &world, &d, &s);
        free_result(&d);
        free_result(&s);
    }
    check_errors(&world);
    int fails = mc_test_failures, total = 0;
    MPI_Allreduce(&fails, &total, 1, MPI_INT, MPI_SUM, world.comm);
    if (world.rank == 0) printf("ranks %d: ", world.size);
    int rc = world.rank == 0 ? TEST_SUMMARY() : 0;
    mc_comm_finalize(&world);
    return total ? 1 : rc;
}
