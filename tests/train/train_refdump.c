/* train_refdump.c - runs one loss/gradient evaluation (or Adam steps) of src/train on inputs
 * written by ref_train.py and writes the results as float64 for the comparison with PyTorch.
 *
 *   train_refdump align VARIANT LEARN n d C B in.bin out.bin
 *     in : W[d*n] logs labels[B] acts[B*n] img[B*d] class[C*d]       (float32)
 *     out: loss loss_out loss_in dlogs gW[d*n]                        (float64)
 *   train_refdump sae n m k kaux B in.bin out.bin
 *     in : W_enc[m*n] b_enc[m] W_dec^T[m*n] b_pre[n] dead[m] acts[B*n] (float32)
 *     out: loss fvu auxk l0 g_enc g_benc g_dec g_bpre                   (float64)
 *   train_refdump adam N STEPS lr b1 b2 eps wd in.bin out.bin
 *     in : p[N] g[STEPS*N];  out: p after each step [STEPS*N]
 * Runs on one process (MPI singleton). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/train.h"

static float *read_f32(const char *path, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    float *b = malloc(n * sizeof(float));
    size_t got = b ? fread(b, sizeof(float), n, f) : 0;
    int extra = fgetc(f);
    fclose(f);
    if (got != n || extra != EOF) {
        fprintf(stderr, "%s: expected %zu floats\n", path, n);
        free(b);
        return NULL;
    }
    return b;
}

static int write_f64(FILE *f, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double v = x[i];
        if (fwrite(&v, sizeof v, 1, f) != 1) return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    mc_comm c;
    mc_error e = {0};
    if (mc_comm_init(&argc, &argv, &c, &e) != MC_OK) return 1;
    int rc = 1;
    if (argc == 10 && !strcmp(argv[1], "align")) {
        mc_align_config cfg = mc_align_defaults();
        if (!mc_align_variant_parse(argv[2], &cfg.variant)) goto done;
        cfg.learn_scale = atoi(argv[3]) != 0;
        cfg.n = atoll(argv[4]);
        cfg.d = atoll(argv[5]);
        cfg.n_classes = atoll(argv[6]);
        int64_t B = atoll(argv[7]);
        cfg.batch_size = B;
        cfg.chunk_rows = 8;
        size_t dn = (size_t)(cfg.d * cfg.n);
        size_t tot = dn + 1 + (size_t)B * (1 + cfg.n + cfg.d) + (size_t)(cfg.n_classes * cfg.d);
        float *in = read_f32(argv[8], tot);
        if (!in) goto done;
        float *lab_f = in + dn + 1, *acts = lab_f + B, *img = acts + B * cfg.n,
              *cls = img + B * cfg.d;
        int32_t *lab = malloc((size_t)B * sizeof(int32_t));
        for (int64_t i = 0; i < B; i++) lab[i] = (int32_t)lab_f[i];
        mc_encoder *enc = NULL;
        if (mc_encoder_create(&cfg, cls, &enc, &e) != MC_OK) goto fail_a;
        memcpy(mc_encoder_weight(enc), in, dn * sizeof(float));
        mc_encoder_set_log_scale(enc, in[dn]);
        mc_align_stats st;
        if (mc_encoder_loss_grad(&c, enc, B, acts, img, lab, &st, &e) != MC_OK) goto fail_a;
        FILE *f = fopen(argv[9], "wb");
        if (!f) goto fail_a;
        float head[4] = {st.loss, st.loss_out, st.loss_in, mc_encoder_log_scale_grad(enc)};
        rc = write_f64(f, head, 4) | write_f64(f, mc_encoder_weight_grad(enc), dn);
        rc |= fclose(f) != 0;
    fail_a:
        mc_encoder_free(&enc);
        free(lab);
        free(in);
    } else if (argc == 9 && !strcmp(argv[1], "sae")) {
        mc_sae_config cfg = mc_sae_defaults();
        cfg.n = atoll(argv[2]);
        cfg.m = atoll(argv[3]);
        cfg.k = atoi(argv[4]);
        cfg.k_aux = atoi(argv[5]);
        int64_t B = atoll(argv[6]);
        cfg.batch_size = B;
        cfg.chunk_rows = 8;
        cfg.dead_samples = 1000;
        mc_sae *s = NULL;
        size_t np = 0;
        if (mc_sae_create(&cfg, &s, &e) != MC_OK) goto done;
        float *p = mc_sae_params(s, &np);
        float *in = read_f32(argv[7], np + (size_t)cfg.m + (size_t)(B * cfg.n));
        if (in) {
            memcpy(p, in, np * sizeof(float));
            for (int64_t j = 0; j < cfg.m; j++)
                mc_sae_since_fire(s)[j] = in[np + j] > 0.5f ? 1000 : 0;
            mc_sae_stats st;
            if (mc_sae_loss_grad(&c, s, B, in + np + cfg.m, false, &st, &e) == MC_OK) {
                FILE *f = fopen(argv[8], "wb");
                if (f) {
                    float head[4] = {st.loss, st.fvu, st.auxk, st.l0};
                    rc = write_f64(f, head, 4) | write_f64(f, mc_sae_grad_w_enc(s), np);
                    rc |= fclose(f) != 0;
                }
            }
            free(in);
        }
        mc_sae_free(&s);
    } else if (argc == 11 && !strcmp(argv[1], "adam")) {
        size_t n = (size_t)atoll(argv[2]);
        int steps = atoi(argv[3]);
        mc_adam_config ac = {atof(argv[4]), atof(argv[5]), atof(argv[6]), atof(argv[7]),
                             atof(argv[8])};
        float *in = read_f32(argv[9], n * (size_t)(steps + 1));
        mc_adam a;
        if (in && mc_adam_init(&a, n, &ac, &e) == MC_OK) {
            FILE *f = fopen(argv[10], "wb");
            rc = !f;
            for (int t = 0; f && t < steps; t++) {
                mc_adam_update(&a, in, in + n * (size_t)(t + 1));
                rc |= write_f64(f, in, n);
            }
            if (f) rc |= fclose(f) != 0;
            mc_adam_free(&a);
        }
        free(in);
    } else {
        fprintf(stderr, "usage: see the top of train_refdump.c\n");
    }
done:
    if (e.code != MC_OK) fprintf(stderr, "error: %s\n", e.msg);
    mc_comm_finalize(&c);
    return rc;
}
