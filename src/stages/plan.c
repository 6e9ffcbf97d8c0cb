/* plan.c - the cost model behind `miclip plan` and `miclip slurm` (plan.h).
 *
 * Every number is derived from the config and the models' config.json sizes; the only measured
 * inputs are the calibration rates. Multiply-adds (MAC) are counted per layer from first
 * principles by the model description (model_desc.h), the one the loader uses; time =
 * 2 * MAC / (rate per core * cores).
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "miclip/checked.h"
#include "miclip/dataset.h"
#include "miclip/fsutil.h"
#include "miclip/hf.h"
#include "miclip/image.h"
#include "miclip/image_write.h"
#include "miclip/log.h"
#include "miclip/miclip.h"
#include "miclip/model.h"
#include "miclip/model_desc.h"
#include "miclip/nn.h"
#include "miclip/json.h"
#include "miclip/plan.h"
#include "miclip/stages.h"
#include "miclip/train.h"
#include "miclip/world.h"

#define TEXT_TOKENS 16 /* average prompt length in tokens ("a photo of a {}." + BOS/EOS) */

/* --- model sizes from config.json ----------------------------------------------------------- */

/* Every size, MAC and layer below comes from the model description (model_desc.h), the one the
 * loader builds its weight table and layer list from. */

/* The description of m's vision network (CLIP: its vision tower), read again from config.json:
 * mc_plan_model is copied by value, so it keeps the numbers, not the description. */
static mc_status vision_desc(const mc_plan_model *m, mc_model_desc **d, mc_error *err) {
    mc_hf_config *hc = NULL;
    MC_TRY(mc_hf_config_load(m->dir, &hc, err));
    const mc_desc_family f = m->family == MC_HF_RESNET ? MC_DESC_RESNET
                             : m->family == MC_HF_CLIP ? MC_DESC_CLIP_VISION
                                                       : MC_DESC_VIT;
    mc_status s = mc_model_desc_build(hc->root, hc->path, f, d, err);
    mc_hf_config_free(&hc);
    return s;
}

mc_status mc_plan_model_read(const char *dir, mc_plan_model *m, mc_error *err) {
    memset(m, 0, sizeof *m);
    mc_strlcpy(m->dir, dir, sizeof m->dir);
    mc_hf_config *hc = NULL;
    MC_TRY(mc_hf_config_load(dir, &hc, err));
    m->family = hc->family;
    if (hc->family != MC_HF_VIT && hc->family != MC_HF_CLIP && hc->family != MC_HF_RESNET) {
        mc_status s =
            MC_FAIL(err, MC_ERR_UNSUPPORTED, "%s: a %s model is not a vision model miclip plans",
                    hc->path, mc_hf_family_name(hc->family));
        mc_hf_config_free(&hc);
        return s;
    }
    mc_model_desc *d = NULL, *t = NULL;
    mc_status s = vision_desc(m, &d, err);
    if (s == MC_OK && hc->family == MC_HF_CLIP)
        s = mc_model_desc_build(hc->root, hc->path, MC_DESC_CLIP_TEXT, &t, err);
    mc_hf_config_free(&hc);
    if (s == MC_OK) {
        m->params = d->params;
        m->gmac = d->mac / 1e9;
        m->out_dim = d->out_dim;
        m->image = (int)d->in_h;
        m->L = d->L, m->T = d->T, m->D = d->D, m->H = d->H, m->I = d->I, m->patch = d->patch;
        if (t) m->tL = t->L, m->tD = t->D, m->tI = t->I, m->tctx = t->T, m->text_params = t->params;
    }
    mc_model_desc_free(&d);
    mc_model_desc_free(&t);
    return s;
}

/* Elements per image stored for a [T, D] or [C, H, W] layer under pool: all of them, or one
 * vector of D / C (a CLS token or a mean). */
static int64_t pooled(int64_t C, int64_t rest, int pool) {
    return pool == MC_CFG_POOL_ALL ? C * rest : C;
}

mc_status mc_plan_layer(const mc_plan_model *m, const char *layer, int pool, double *prefix_gmac,
                        int64_t *elems, mc_error *err) {
    mc_model_desc *d = NULL;
    MC_TRY(vision_desc(m, &d, err));
    const int i = mc_model_desc_find_layer(d, layer);
    mc_status s = MC_OK;
    if (i < 0) {
        s = m->family == MC_HF_RESNET
                ? MC_FAIL(err, MC_ERR_ARG,
                          "%s: no layer '%s' in this ResNet (e.g. 'stages.3', "
                          "'stages.3.layers.1.shortcut', 'pooler', 'logits')",
                          m->dir, layer)
                : MC_FAIL(err, MC_ERR_ARG, "%s: no layer '%s' (transformer layers: 0..%lld, %s)",
                          m->dir, layer, (long long)m->L,
                          m->family == MC_HF_VIT ? "layernorm, logits"
                                                 : "post_layernorm, image_embeds");
    } else {
        const mc_desc_layer *l = &d->layers[i];
        *prefix_gmac = l->mac_cum / 1e9;
        *elems = l->ndim == 1   ? l->shape[0]
                 : l->ndim == 2 ? pooled(l->shape[1], l->shape[0], pool)
                                : pooled(l->shape[0], l->shape[1] * l->shape[2], pool);
    }
    mc_model_desc_free(&d);
    return s;
}

double mc_plan_arena_bytes(const mc_plan_model *m, int64_t B) {
    mc_model_desc *d = NULL;
    mc_error e = {0};
    /* m was read from this config.json already; a failure here means it changed since */
    if (vision_desc(m, &d, &e) != MC_OK) return 0;
    const double bytes =
        (double)mc_model_desc_arena_floats(d, B, m->image, m->image) * sizeof(float);
    mc_model_desc_free(&d);
    return bytes;
}

/* --- calibration ---------------------------------------------------------------------------- */

void mc_calibration_defaults(mc_calibration *cal) {
    memset(cal, 0, sizeof *cal);
    cal->threads = 1;
    cal->sgemm_gflops = MC_PLAN_DEFAULT_SGEMM_GFLOPS;
    cal->mem_gbps = MC_PLAN_DEFAULT_MEM_GBPS;
    cal->decode_ips = MC_PLAN_DEFAULT_DECODE_IPS;
    cal->log_terms_ps = MC_PLAN_DEFAULT_LOG_TERMS_PS;
    cal->product_terms_ps = MC_PLAN_DEFAULT_PRODUCT_TERMS_PS;
    cal->normals_ps = MC_PLAN_DEFAULT_NORMALS_PS;
    cal->write_mbps = MC_PLAN_DEFAULT_WRITE_MBPS;
    cal->cd_defaults = cal->fixed_defaults = true;
    mc_strlcpy(cal->host, "(defaults)", sizeof cal->host);
}

void mc_calibration_default_path(char *buf, size_t cap) {
    const char *e = getenv("MICLIP_CALIBRATION");
    if (e && *e) {
        mc_strlcpy(buf, e, cap);
        return;
    }
    const char *home = getenv("HOME");
    snprintf(buf, cap, "%s/.cache/miclip/calibration.json", home && *home ? home : ".");
}

#define CAL_FORMAT "miclip-calibration/1"

mc_status mc_calibration_read(const char *path, mc_calibration *cal, mc_error *err) {
    mc_calibration_defaults(cal);
    json_t *j = NULL;
    MC_TRY(mc_json_load(path, false, &j, err));
    const char *fmt = NULL, *host = NULL;
    int64_t threads = 1;
    json_t *fw = NULL;
    mc_status s;
    if ((s = mc_json_get_str(j, "format", true, NULL, &fmt, path, err)) == MC_OK &&
        strcmp(fmt, CAL_FORMAT) != 0)
        s = MC_FAIL(err, MC_ERR_FORMAT, "%s: format '%s', expected '%s'", path, fmt, CAL_FORMAT);
    if (s == MC_OK &&
        !((s = mc_json_get_str(j, "host", false, "?", &host, path, err)) ||
          (s = mc_json_get_int(j, "threads", true, 1, &threads, path, err)) ||
          (s = mc_json_get_num(j, "sgemm_gflops", true, 0, &cal->sgemm_gflops, path, err)) ||
          (s = mc_json_get_num(j, "mem_gbps", true, 0, &cal->mem_gbps, path, err)) ||
          (s = mc_json_get_num(j, "decode_images_per_s", true, 0, &cal->decode_ips, path, err)) ||
          /* optional: calibrations written before it was measured plan with the default */
          (s = mc_json_get_num(j, "log_terms_per_s", false, MC_PLAN_DEFAULT_LOG_TERMS_PS,
                               &cal->log_terms_ps, path, err)) ||
          (s = mc_json_get_num(j, "product_terms_per_s", false, MC_PLAN_DEFAULT_PRODUCT_TERMS_PS,
                               &cal->product_terms_ps, path, err)) ||
          (s = mc_json_get_num(j, "normal_draws_per_s", false, MC_PLAN_DEFAULT_NORMALS_PS,
                               &cal->normals_ps, path, err)) ||
          (s = mc_json_get_num(j, "write_mb_per_s", false, MC_PLAN_DEFAULT_WRITE_MBPS,
                               &cal->write_mbps, path, err)) ||
          (s = mc_json_get_obj(j, "forward", false, &fw, path, err)))) {
        if (threads < 1 || threads > 4096 || !(cal->sgemm_gflops > 0) || !(cal->mem_gbps > 0) ||
            !(cal->decode_ips > 0) || !isfinite(cal->sgemm_gflops) || !isfinite(cal->mem_gbps) ||
            !isfinite(cal->decode_ips) || !(cal->log_terms_ps > 0) ||
            !isfinite(cal->log_terms_ps) || !(cal->product_terms_ps > 0) ||
            !isfinite(cal->product_terms_ps) || !(cal->normals_ps > 0) ||
            !isfinite(cal->normals_ps) || !(cal->write_mbps > 0) || !isfinite(cal->write_mbps))
            s = MC_FAIL(err, MC_ERR_FORMAT, "%s: rates must be positive and threads 1..4096", path);
    }
    if (s == MC_OK && fw) {
        const char *model = NULL;
        int64_t b = 0;
        if (!((s = mc_json_get_str(fw, "model", true, NULL, &model, path, err)) ||
              (s = mc_json_get_num(fw, "gmac_per_image", true, 0, &cal->fwd_gmac, path, err)) ||
              (s = mc_json_get_num(fw, "images_per_s", true, 0, &cal->fwd_ips, path, err)) ||
              (s = mc_json_get_int(fw, "batch", false, 1, &b, path, err)))) {
            if (!(cal->fwd_gmac > 0) || !(cal->fwd_ips > 0) || !isfinite(cal->fwd_ips) ||
                !isfinite(cal->fwd_gmac))
                s = MC_FAIL(err, MC_ERR_FORMAT, "%s: forward rates must be positive", path);
            mc_strlcpy(cal->fwd_model, model, sizeof cal->fwd_model);
            cal->fwd_batch = (int)b;
        }
    }
    if (s == MC_OK) {
        cal->cd_defaults = !json_object_get(j, "log_terms_per_s");
        cal->fixed_defaults = !json_object_get(j, "normal_draws_per_s");
        cal->threads = (int)threads;
        cal->from_file = true;
        mc_strlcpy(cal->path, path, sizeof cal->path);
        mc_strlcpy(cal->host, host, sizeof cal->host);
    } else {
        mc_calibration_defaults(cal);
    }
    json_decref(j);
    return s;
}

mc_status mc_calibration_write(const char *path, const mc_calibration *cal, mc_error *err) {
    char when[32] = "unknown";
    time_t t = time(NULL);
    struct tm tm;
    if (gmtime_r(&t, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_t *j = json_object();
    json_object_set_new(j, "format", json_string(CAL_FORMAT));
    json_object_set_new(j, "host", json_string(cal->host));
    json_object_set_new(j, "created_utc", json_string(when));
    json_object_set_new(j, "threads", json_integer(cal->threads));
    json_object_set_new(j, "sgemm_gflops", json_real(cal->sgemm_gflops));
    json_object_set_new(j, "mem_gbps", json_real(cal->mem_gbps));
    json_object_set_new(j, "decode_images_per_s", json_real(cal->decode_ips));
    json_object_set_new(j, "log_terms_per_s", json_real(cal->log_terms_ps));
    json_object_set_new(j, "product_terms_per_s", json_real(cal->product_terms_ps));
    if (!cal->fixed_defaults) {
        json_object_set_new(j, "normal_draws_per_s", json_real(cal->normals_ps));
        json_object_set_new(j, "write_mb_per_s", json_real(cal->write_mbps));
    }
    if (cal->fwd_ips > 0) {
        json_t *fw = json_object();
        json_object_set_new(fw, "model", json_string(cal->fwd_model));
        json_object_set_new(fw, "gmac_per_image", json_real(cal->fwd_gmac));
        json_object_set_new(fw, "batch", json_integer(cal->fwd_batch));
        json_object_set_new(fw, "images_per_s", json_real(cal->fwd_ips));
        json_object_set_new(j, "forward", fw);
    }
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    json_decref(j);
    if (!text) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory writing %s", path);
    char dir[MC_PLAN_TEXT_MAX];
    mc_strlcpy(dir, path, sizeof dir);
    char *slash = strrchr(dir, '/');
    mc_status s = MC_OK;
    if (slash && slash != dir) {
        *slash = '\0';
        s = mc_mkdir_p(dir, err);
    }
    if (s == MC_OK) {
        size_t n = strlen(text);
        text[n] = '\n'; /* json_dumps leaves room for the NUL, which we replace */
        s = mc_write_file_atomic(path, text, n + 1, err);
    }
    free(text);
    return s;
}

/* Repeats fn until at least min_s seconds have passed; returns calls per second. */
static double rate_of(void (*fn)(void *), void *u, double min_s) {
    fn(u); /* warm-up: page faults, BLAS thread start */
    double t0 = mc_now(), t;
    long n = 0;
    do {
        fn(u);
        n++;
        t = mc_now() - t0;
    } while (t < min_s);
    return (double)n / t;
}

typedef struct {
    int64_t n;
    float *a, *b, *c;
} gemm_job;
static void gemm_once(void *u) {
    gemm_job *g = u;
    mc_sgemm(false, true, g->n, g->n, g->n, 1.0f, g->a, g->n, g->b, g->n, 0.0f, g->c, g->n);
}
typedef struct {
    size_t n;
    char *a, *b;
} copy_job;
static void copy_once(void *u) {
    copy_job *c = u;
    memcpy(c->b, c->a, c->n);
    c->a[c->n / 2]++; /* keep the copy from being elided */
}
typedef struct {
    const uint8_t *png;
    size_t len;
    mc_status s;
    mc_error err;
} decode_job;
static void decode_once(void *u) {
    decode_job *d = u;
    mc_image img = {0}, out = {0};
    if (d->s == MC_OK)
        d->s = mc_image_decode(d->png, d->len, "calibration image", NULL, &img, &d->err);
    if (d->s == MC_OK) d->s = mc_image_resize(&img, 224, 224, MC_RESAMPLE_BICUBIC, &out, &d->err);
    mc_image_free(&img);
    mc_image_free(&out);
}
/* CLIP-Dissect's slot terms as baselines.c computes them: one double log per (slot, concept). */
typedef struct {
    int64_t n;
    double *p, *acc;
} log_job;
static void logs_once(void *u) {
    log_job *l = u;
    for (int i = 0; i < 100; i++) {
        const double w = 0.998 - (double)i / 100.0 * (0.998 - 0.97);
        for (int64_t j = 0; j < l->n; j++) l->acc[j] += log(1.0 + w * (l->p[j] - 1.0) + 1e-7);
    }
}
/* ... and its slot products: the same factors multiplied (baselines.c, slot_product) */
static void products_once(void *u) {
    log_job *l = u;
    for (int64_t j = 0; j < l->n; j++) l->acc[j] = 1.0;
    for (int i = 0; i < 100; i++) {
        const double w = 0.998 - (double)i / 100.0 * (0.998 - 0.97);
        for (int64_t j = 0; j < l->n; j++) l->acc[j] *= 1.0 + w * (l->p[j] - 1.0) + 1e-7;
    }
}
/* The SAE's initialisation: one normal draw per encoder weight (sae_topk.c). */
static void normals_once(void *u) {
    double *acc = u;
    for (uint64_t i = 0; i < 100000; i++) *acc += mc_rng_normal(1, 2, i);
}
/* A checkpoint's write: 64 MiB into a file, then fsync (fsutil.c, mc_write_file_atomic). */
typedef struct {
    int fd;
    size_t n;
    char *buf;
    bool failed;
} write_job;
static void write_once(void *u) {
    write_job *w = u;
    if (w->failed || lseek(w->fd, 0, SEEK_SET) != 0) {
        w->failed = true;
        return;
    }
    for (size_t o = 0; o < w->n;) {
        ssize_t k = write(w->fd, w->buf + o, w->n - o);
        if (k <= 0) {
            w->failed = true;
            return;
        }
        o += (size_t)k;
    }
    if (fsync(w->fd) != 0) w->failed = true;
}
typedef struct {
    mc_model *m;
    float *pix, *out;
    int64_t B;
    int h, w;
    mc_status s;
    mc_error err;
} fwd_job;
static void forward_once(void *u) {
    fwd_job *f = u;
    if (f->s == MC_OK)
        f->s = mc_model_forward(f->m, f->pix, f->B, f->h, f->w, NULL, f->out, NULL, &f->err);
}

mc_status mc_calibration_measure(int threads, const char *model_dir, const char *scratch_dir,
                                 mc_calibration *cal, mc_error *err) {
    mc_calibration_defaults(cal);
    if (threads < 1) threads = 1;
    mc_set_threads(threads);
    cal->threads = threads;
    gethostname(cal->host, sizeof cal->host - 1);
    /* sgemm 768^3: the shape class of a ViT-B projection over a batch of tokens */
    gemm_job g = {.n = 768};
    size_t nn = (size_t)g.n * (size_t)g.n;
    g.a = malloc(nn * 4), g.b = malloc(nn * 4), g.c = malloc(nn * 4);
    if (!g.a || !g.b || !g.c) {
        free(g.a), free(g.b), free(g.c);
        return MC_FAIL(err, MC_ERR_NOMEM, "calibration: out of memory");
    }
    for (size_t i = 0; i < nn; i++)
        g.a[i] = (float)(i % 17) * 0.01f, g.b[i] = (float)(i % 13) * 0.02f;
    cal->sgemm_gflops = rate_of(gemm_once, &g, 1.0) * 2.0 * (double)g.n * g.n * g.n / 1e9;
    free(g.a), free(g.b), free(g.c);
    /* memory: 64 MiB copies, 2 bytes moved per byte copied */
    copy_job c = {.n = (size_t)64 << 20};
    c.a = malloc(c.n), c.b = malloc(c.n);
    if (!c.a || !c.b) {
        free(c.a), free(c.b);
        return MC_FAIL(err, MC_ERR_NOMEM, "calibration: out of memory");
    }
    memset(c.a, 1, c.n);
    memset(c.b, 2, c.n);
    cal->mem_gbps = rate_of(copy_once, &c, 0.5) * 2.0 * (double)c.n / 1e9;
    free(c.a), free(c.b);
    /* slot terms over 4096 concepts of softmax-like probabilities (one thread: as the stage) */
    log_job lj = {.n = 4096};
    lj.p = malloc((size_t)lj.n * sizeof(double)), lj.acc = calloc((size_t)lj.n, sizeof(double));
    if (!lj.p || !lj.acc) {
        free(lj.p), free(lj.acc);
        return MC_FAIL(err, MC_ERR_NOMEM, "calibration: out of memory");
    }
    for (int64_t j = 0; j < lj.n; j++) lj.p[j] = (double)(j % 97 + 1) / (97.0 * (double)lj.n);
    cal->log_terms_ps = rate_of(logs_once, &lj, 0.5) * 100.0 * (double)lj.n;
    cal->product_terms_ps = rate_of(products_once, &lj, 0.5) * 100.0 * (double)lj.n;
    free(lj.p), free(lj.acc);
    double acc = 0;
    cal->normals_ps = rate_of(normals_once, &acc, 0.5) * 100000.0;
    /* fsync'd writes in the output folder (skipped, default kept, where it cannot be written) */
    char tmp[MC_PLAN_TEXT_MAX + 32];
    write_job wj = {.fd = -1, .n = (size_t)64 << 20};
    if (scratch_dir &&
        snprintf(tmp, sizeof tmp, "%s/.miclip-calibrate-XXXXXX", scratch_dir) < (int)sizeof tmp &&
        (wj.buf = malloc(wj.n)) != NULL && (wj.fd = mkstemp(tmp)) >= 0) {
        memset(wj.buf, 7, wj.n);
        const double r = rate_of(write_once, &wj, 1.0) * (double)wj.n / 1e6;
        close(wj.fd);
        unlink(tmp);
        if (!wj.failed) cal->write_mbps = r;
    }
    free(wj.buf);
    cal->fixed_defaults = wj.fd < 0 || wj.failed;
    cal->cd_defaults = false;
    /* decode + bicubic resize of a 500x375 PNG of smooth noise (ImageNet's typical size) */
    int W = 500, H = 375;
    uint8_t *px = malloc((size_t)W * H * 3);
    if (!px) return MC_FAIL(err, MC_ERR_NOMEM, "calibration: out of memory");
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int k = 0; k < 3; k++)
                px[((size_t)y * W + x) * 3 + k] =
                    (uint8_t)((x * (k + 1) + y * 3 + ((x * 7919 + y * 104729 + k) % 23)) & 255);
    decode_job d = {0};
    uint8_t *png = NULL;
    mc_status s = mc_image_encode_png(px, W, H, 3, &png, &d.len, err);
    free(px);
    if (s != MC_OK) return s;
    d.png = png;
    cal->decode_ips = rate_of(decode_once, &d, 0.5);
    free(png);
    if (d.s != MC_OK) {
        *err = d.err;
        return d.s;
    }
    /* a forward of the configured model, when its weights are here */
    char wpath[MC_PLAN_TEXT_MAX + 32];
    if (model_dir &&
        snprintf(wpath, sizeof wpath, "%s/model.safetensors", model_dir) < (int)sizeof wpath &&
        mc_file_exists(wpath)) {
        mc_plan_model pm;
        MC_TRY(mc_plan_model_read(model_dir, &pm, err));
        fwd_job f = {.B = 4};
        MC_TRY(mc_model_create(model_dir, &f.m, err));
        int ch;
        mc_model_input_size(f.m, &ch, &f.h, &f.w);
        size_t n = (size_t)f.B * (size_t)ch * (size_t)f.h * (size_t)f.w;
        f.pix = malloc(n * sizeof(float));
        f.out = malloc((size_t)f.B * (size_t)mc_model_output_dim(f.m) * sizeof(float));
        if (!f.pix || !f.out) s = MC_FAIL(err, MC_ERR_NOMEM, "calibration: out of memory");
        for (size_t i = 0; s == MC_OK && i < n; i++)
            f.pix[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
        if (s == MC_OK) {
            double r = rate_of(forward_once, &f, 2.0);
            s = f.s;
            if (s != MC_OK) *err = f.err;
            cal->fwd_ips = r * (double)f.B;
            cal->fwd_gmac = pm.gmac;
            cal->fwd_batch = (int)f.B;
            mc_strlcpy(cal->fwd_model, model_dir, sizeof cal->fwd_model);
        }
        free(f.pix);
        free(f.out);
        mc_model_free(&f.m);
        if (s != MC_OK) return s;
    }
    return MC_OK;
}

/* --- image counts --------------------------------------------------------------------------- */

static int64_t known_size(const mc_dataset_cfg *d) {
    if (d->kind == MC_DS_IMAGENET) {
        if (strstr(d->split, "val")) return 50000;
        if (strstr(d->split, "train")) return 1281167;
    }
    if (d->kind == MC_DS_DTD) return 5640;
    /* the tiny world as `miclip world make` writes it by default (100, 20, 20 per class) */
    if (d->kind == MC_DS_WORLD && d->split) {
        if (!strcmp(d->split, "train")) return 100 * MC_WORLD_NUM_CLASSES;
        if (!strcmp(d->split, "val")) return 20 * MC_WORLD_NUM_CLASSES;
        if (!strcmp(d->split, "unseen")) return 20 * MC_WORLD_NUM_TEXTURES;
        if (!strcmp(d->split, "hard")) return 20 * MC_WORLD_NUM_CLASSES; /* the main job's */
    }
    return 0;
}

/* Images one task reads from d: n_samples, else the folder's listing, else the published size. */
static int64_t count_images(const mc_dataset_cfg *d, const char *what, char *note, size_t cap) {
    if (d->kind == MC_DS_NONE) return 0;
    int64_t full = -1;
    if (mc_dir_exists(d->root)) {
        mc_dataset ds = {0};
        mc_error e = {0};
        if (mc_dataset_list(d, NULL, 0, &ds, &e) == MC_OK) full = ds.n;
        mc_dataset_free(&ds);
    }
    if (full < 0) {
        full = known_size(d);
        if (full > 0 && d->n_samples == 0) {
            size_t u = strlen(note);
            snprintf(note + u, cap - u, "%s%s: %s not found, using the %s size %lld", u ? "; " : "",
                     what, d->root,
                     d->kind == MC_DS_WORLD ? "'miclip world make' default" : "published",
                     (long long)full);
        }
    }
    if (d->n_samples > 0) return full > 0 && full < d->n_samples ? full : d->n_samples;
    if (full <= 0) {
        size_t u = strlen(note);
        snprintf(note + u, cap - u, "%s%s: image count unknown (folder absent; set n_samples)",
                 u ? "; " : "", what);
        return 0;
    }
    return full;
}

/* Lines of a concept file (the concept count), or a guess when it is absent. */
static int64_t count_lines(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int64_t n = 0;
    char buf[4096];
    while (fgets(buf, sizeof buf, f)) {
        char *p = buf;
        while (isspace((unsigned char)*p)) p++;
        if (*p && *p != '#') n++;
    }
    fclose(f);
    return n;
}

/* Images of d (n of them, count_images) that intervene edits: a classifier target keeps the
 * images of the classes whose names are its labels and skips a split with none (prefix_cache.c);
 * a CLIP target classifies every class zero-shot. With the folder absent, a DTD split or the
 * world's unseen split under a classifier counts as none (textures are not its labels); any other
 * split as all. */
static int64_t intervened_images(const mc_dataset_cfg *d, int64_t n, const mc_plan_model *target,
                                 char *note, size_t cap) {
    if (n <= 0 || target->family == MC_HF_CLIP) return n;
    mc_hf_config *hc = NULL;
    mc_error e = {0};
    if (mc_hf_config_load(target->dir, &hc, &e) != MC_OK || hc->num_labels <= 0) {
        mc_hf_config_free(&hc);
        return n;
    }
    int64_t keep = n;
    if (!mc_dir_exists(d->root)) {
        /* textures: DTD's, and the tiny world's unseen split, whose classes are its textures */
        if (d->kind == MC_DS_DTD ||
            (d->kind == MC_DS_WORLD && d->split && !strcmp(d->split, "unseen")))
            keep = 0;
    } else {
        mc_dataset ds = {0};
        if (mc_dataset_list(d, (const char *const *)hc->labels, (int)hc->num_labels, &ds, &e) ==
            MC_OK) {
            int64_t hit = 0;
            for (int64_t i = 0; i < ds.n; i++) {
                const char *name = ds.class_names[ds.labels[i]];
                for (int64_t j = 0; j < hc->num_labels; j++)
                    if (hc->labels[j] && !strcasecmp(hc->labels[j], name)) {
                        hit++;
                        break;
                    }
            }
            /* the listing's share, applied to n (n_samples or the whole split) */
            keep = ds.n > 0 ? (int64_t)((double)n * (double)hit / (double)ds.n + 0.5) : n;
        }
        mc_dataset_free(&ds);
    }
    mc_hf_config_free(&hc);
    if (keep == 0) {
        size_t u = strlen(note);
        snprintf(note + u, cap - u,
                 "%sintervene: no %s class is a class of the target, the split is skipped",
                 u ? "; " : "", mc_dataset_kind_name(d->kind));
    }
    return keep;
}

/* --- the plan ------------------------------------------------------------------------------- */

static double per_core(double rate_per_rank, const mc_calibration *cal) {
    return rate_per_rank / (cal->threads > 0 ? cal->threads : 1);
}

/* GFLOP/s per core a model forward reaches. */
static double forward_rate(const mc_calibration *cal) {
    if (cal->fwd_ips > 0 && cal->fwd_gmac > 0)
        return per_core(2.0 * cal->fwd_ips * cal->fwd_gmac, cal);
    return per_core(cal->sgemm_gflops, cal) * MC_PLAN_DEFAULT_FORWARD_EFF;
}

void mc_plan_add_store(mc_plan *p, int stage, const char *what, int count, double bytes) {
    if (p->n_stores >= MC_PLAN_MAX_STORES || count <= 0) return;
    mc_plan_store *s = &p->stores[p->n_stores++];
    s->stage = stage;
    mc_strlcpy(s->what, what, sizeof s->what);
    s->count = count;
    s->bytes_each = bytes;
    p->st[p->n_stages - 1].disk += bytes * count;
}

/* The model's own sizes (model.h) when its weights are here; the estimates otherwise. */
static mc_status exact_sizes(mc_plan_model *m, int64_t B, mc_error *err) {
    char w[MC_PLAN_TEXT_MAX + 32];
    m->arena_bytes = mc_plan_arena_bytes(m, B);
    m->loaded_params = m->params;
    if (snprintf(w, sizeof w, "%s/model.safetensors", m->dir) >= (int)sizeof w ||
        !mc_file_exists(w))
        return MC_OK;
    mc_model *mm = NULL;
    MC_TRY(mc_model_create(m->dir, &mm, err));
    m->exact = true;
    m->arena_bytes = (double)mc_model_arena_bytes(mm, B);
    m->loaded_params = mc_model_param_count(mm);
    mc_model_free(&mm);
    return MC_OK;
}

void mc_plan_unit_table_cost(const mc_config *cfg, const mc_plan_inputs *in, mc_plan *p,
                             mc_plan_stage *S, double *flop, double *core_s, double *mem_b) {
    /* the unit kinds this stage covers: neurons of the widest layer, SAE features */
    const mc_enum_list *uk =
        S->stage == MC_STAGE_DESCRIBE ? &cfg->describe.units : &cfg->localize.units;
    double units = 0, e = (double)in->proj;
    for (int u = 0; u < uk->n; u++)
        units += uk->v[u] == MC_UNIT_SAE ? (double)cfg->sae.features : (double)in->align_dim;
    if (units < 1) units = 1;
    double mac = units * (double)in->n_concepts * e;
    S->items = units;
    mc_strlcpy(S->item_name, "units", sizeof S->item_name);
    S->gmac_per_item = mac / units / 1e9;
    *flop = 2.0 * mac;
    *core_s = *flop / in->gemm;
    if (S->stage == MC_STAGE_LOCALIZE || S->stage == MC_STAGE_DESCRIBE) {
        /* What the E_n methods add to the scores (units.c, similarity.c), counted for the
         * config's reading: an SAE feature's direction E_n W_dec[:, i] (m n e MAC, W_dec read);
         * the INPUTS reading (algorithm2 for SAE features, activation for neurons) loads the
         * whole SAE for q and finishes every (unit, concept) score in double with a square root
         * and a division, costed as one CLIP-Dissect slot term each (a log: the calibrated
         * scalar rate nearest to it); and its per-unit means, once per seed for all tasks from
         * the unit-stats store, cost one SAE encode of every training vector on every rank. */
        const double m = (double)cfg->sae.features, n = (double)in->sae_dim;
        for (int u = 0; u < uk->n; u++) {
            const bool sae = uk->v[u] == MC_UNIT_SAE;
            const bool inputs = sae ? cfg->localize.sae_unit == 0 : cfg->localize.neuron_unit == 1;
            const double nu = sae ? m : (double)in->align_dim;
            if (sae) {
                *flop += 2.0 * m * n * e;
                *core_s += 2.0 * m * n * e / in->gemm + m * n * 4 / in->mem;
            }
            if (inputs) *core_s += nu * (double)in->n_concepts / in->logs;
            if (inputs && sae) {
                *core_s += 2.0 * m * n * 4 / in->mem;
                if (S->n_tasks > 0)
                    *core_s += 2.0 * (double)p->n_train * n * m / in->gemm * p->ranks *
                               (double)in->seeds / S->n_tasks;
            }
        }
    }
    /* The concept sets' CLIP text embeddings, once for the run (method/concepts.c keeps them in
     * a store the later tasks read): billed to the first stage of the three that runs. */
    int first = -1;
    for (int i = 0; i < cfg->stages.n && first < 0; i++)
        if (cfg->stages.v[i] == MC_STAGE_LOCALIZE || cfg->stages.v[i] == MC_STAGE_DESCRIBE ||
            cfg->stages.v[i] == MC_STAGE_BASELINES)
            first = cfg->stages.v[i];
    if (first == S->stage && S->n_tasks > 0)
        *core_s += 2e9 * in->text_gmac * (double)in->n_concepts / in->fwd / S->n_tasks;
    *mem_b +=
        (units + (double)in->n_concepts) * e * 4 + units * (double)in->n_concepts * 4 / p->ranks;
    int64_t tau = S->stage == MC_STAGE_DESCRIBE ? cfg->describe.tau : cfg->localize.tau;
    mc_plan_add_store(p, S->stage,
                      S->stage == MC_STAGE_DESCRIBE   ? "describe/<task>.h5"
                      : S->stage == MC_STAGE_LOCALIZE ? "localize/<task>.h5"
                                                      : "baselines/<task>.h5",
                      S->n_tasks,
                      (units + (double)in->n_concepts) * (double)tau * 8 +
                          MC_PLAN_SMALL_STORE_OVERHEAD_BYTES);
}

mc_status mc_plan_make(const mc_config *cfg, int ranks, int threads, const mc_calibration *cal,
                       const char *target_dir, const char *clip_dir, bool load_weights, mc_plan *p,
                       mc_error *err) {
    memset(p, 0, sizeof *p);
    p->ranks = ranks > 0 ? ranks : 1;
    p->threads = threads > 0 ? threads : (cfg->threads > 0 ? (int)cfg->threads : 1);
    p->cal = *cal;
    MC_TRY(mc_plan_model_read(target_dir ? target_dir : cfg->models.target, &p->target, err));
    const char *td = target_dir ? target_dir : cfg->models.target;
    const char *cd = clip_dir ? clip_dir : cfg->models.clip;
    p->clip_is_target = !strcmp(td, cd);
    if (p->clip_is_target)
        p->clip = p->target;
    else
        MC_TRY(mc_plan_model_read(cd, &p->clip, err));
    if (p->clip.family != MC_HF_CLIP)
        return MC_FAIL(err, MC_ERR_CONFIG, "models.clip (%s) is not a CLIP model", cd);
    if (load_weights)
        MC_TRY(exact_sizes(&p->target, cfg->extract.batch_size, err));
    else
        p->target.arena_bytes = mc_plan_arena_bytes(&p->target, cfg->extract.batch_size),
        p->target.loaded_params = p->target.params;
    if (p->clip_is_target)
        p->clip = p->target;
    else if (load_weights)
        MC_TRY(exact_sizes(&p->clip, cfg->extract.batch_size, err));
    else
        p->clip.arena_bytes = mc_plan_arena_bytes(&p->clip, cfg->extract.batch_size),
        p->clip.loaded_params = p->clip.params;

    const int64_t seeds = cfg->seeds.n;
    p->n_train =
        count_images(&cfg->datasets.train, "datasets.train", p->images_note, sizeof p->images_note);
    bool inter = mc_config_has_stage(cfg, MC_STAGE_INTERVENE);
    bool want_eval = false, want_unseen = false;
    for (int i = 0; inter && i < cfg->intervene.datasets.n; i++) {
        if (cfg->intervene.datasets.v[i] == MC_EVAL_SET_EVAL) want_eval = true;
        if (cfg->intervene.datasets.v[i] == MC_EVAL_SET_UNSEEN) want_unseen = true;
    }
    const bool int_eval = want_eval, int_unseen = want_unseen; /* intervene's own splits */
    /* The report's flawed_reasoning and attention_maps figures read the eval images too (extract.c:
     * split_wanted). */
    for (int i = 0; mc_config_has_stage(cfg, MC_STAGE_REPORT) && i < cfg->report.figures.n; i++)
        if ((cfg->report.figures.v[i] == MC_FIGURE_FLAWED_REASONING ||
             cfg->report.figures.v[i] == MC_FIGURE_ATTENTION_MAPS) &&
            cfg->datasets.eval.kind != MC_DS_NONE)
            want_eval = true;
    if (want_eval)
        p->n_eval = count_images(&cfg->datasets.eval, "datasets.eval", p->images_note,
                                 sizeof p->images_note);
    if (want_unseen)
        p->n_unseen = count_images(&cfg->datasets.unseen, "datasets.unseen", p->images_note,
                                   sizeof p->images_note);

    const double cores = (double)p->ranks * p->threads;
    const double fwd = forward_rate(cal) * 1e9;                 /* flop/s per core in forwards */
    const double gemm = per_core(cal->sgemm_gflops, cal) * 1e9; /* flop/s per core in sgemm */
    const double mem = per_core(cal->mem_gbps, cal) * 1e9;      /* bytes/s per core */
    const double dec = per_core(cal->decode_ips, cal);          /* images/s per core */
    const double tgt_w = 4.0 * (double)p->target.loaded_params;
    const double clip_w = p->clip_is_target ? 0 : 4.0 * (double)(p->clip.loaded_params);
    const double text_w = 4.0 * (double)p->clip.text_params;
    const int64_t eb = cfg->extract.batch_size;

    /* class and concept counts, for the text embeddings and the similarity tables */
    int64_t n_classes = p->target.family == MC_HF_CLIP ? 0 : p->target.out_dim;
    if (cfg->datasets.train.kind != MC_DS_NONE && mc_dir_exists(cfg->datasets.train.root)) {
        /* listed against the target's id2label, as extraction lists it: ImageNet's wnid folders
         * (or class_names) map onto all of the target's labels, and every label is a class
         * prompt, not only the folders present */
        mc_hf_config *hc = NULL;
        mc_dataset ds = {0};
        mc_error e = {0};
        if (mc_hf_config_load(p->target.dir, &hc, &e) == MC_OK &&
            mc_dataset_list(&cfg->datasets.train, (const char *const *)hc->labels,
                            (int)hc->num_labels, &ds, &e) == MC_OK)
            n_classes = ds.n_classes;
        mc_dataset_free(&ds);
        mc_hf_config_free(&hc);
    }
    if (n_classes <= 0) n_classes = 1000;
    int64_t n_concepts = 0;
    for (int i = 0; i < cfg->concepts.n; i++) {
        int64_t k = cfg->concepts.v[i].source == MC_CONCEPTS_CLASSES
                        ? n_classes
                        : count_lines(cfg->concepts.v[i].file);
        if (k < 0) {
            k = 20000; /* absent here: the paper's largest set */
            size_t u = strlen(p->images_note);
            snprintf(p->images_note + u, sizeof p->images_note - u,
                     "%sconcepts %s: file absent, counted as 20000", u ? "; " : "",
                     cfg->concepts.v[i].name);
        }
        n_concepts += k;
    }
    const double text_gmac =
        (double)p->clip.tL *
        mc_desc_block_mac(TEXT_TOKENS, (double)p->clip.tD, (double)p->clip.tI) / 1e9;

    /* per-layer sizes of the extraction store */
    double act_bytes = 0;
    int64_t sae_dim = 0, int_T = 0;
    double int_prefix = 0;
    const int dt = cfg->extract.dtype == MC_STORE_F16 ? 2 : 4;
    for (int i = 0; i < cfg->extract.layers.n; i++) {
        double pre;
        int64_t el;
        MC_TRY(
            mc_plan_layer(&p->target, cfg->extract.layers.v[i], cfg->extract.pool, &pre, &el, err));
        act_bytes += (double)el * dt;
        if (!strcmp(cfg->extract.layers.v[i], cfg->sae.layer)) sae_dim = el;
    }
    int64_t align_dim = 0; /* widest extracted vector (E_n's input) */
    for (int i = 0; i < cfg->extract.layers.n; i++) {
        double pre;
        int64_t el;
        MC_TRY(
            mc_plan_layer(&p->target, cfg->extract.layers.v[i], cfg->extract.pool, &pre, &el, err));
        if (el > align_dim) align_dim = el;
    }
    if (inter) {
        int64_t el;
        MC_TRY(mc_plan_layer(&p->target, cfg->intervene.layer, MC_CFG_POOL_ALL, &int_prefix, &el,
                             err));
        int_T = el;
    }
    const int64_t proj = p->clip.out_dim;
    p->n_classes = n_classes, p->n_concepts = n_concepts;
    p->n_intervened =
        (int_eval ? intervened_images(&cfg->datasets.eval, p->n_eval, &p->target, p->images_note,
                                      sizeof p->images_note)
                  : 0) +
        (int_unseen ? intervened_images(&cfg->datasets.unseen, p->n_unseen, &p->target,
                                        p->images_note, sizeof p->images_note)
                    : 0);
    const mc_plan_inputs in = {
        .seeds = seeds,
        .n_classes = n_classes,
        .n_concepts = n_concepts,
        .text_gmac = text_gmac,
        .act_bytes = act_bytes,
        .dtype_bytes = dt,
        .sae_dim = sae_dim,
        .align_dim = align_dim,
        .int_T = int_T,
        .int_images = p->n_intervened,
        .int_prefix = int_prefix,
        .proj = proj,
        .cores = cores,
        .fwd = fwd,
        .gemm = gemm,
        .mem = mem,
        .dec = dec,
        .logs = cal->log_terms_ps,
        .products = cal->product_terms_ps,
        .normals = cal->normals_ps,
        .write = cal->write_mbps * 1e6,
        .tgt_w = tgt_w,
        .clip_w = clip_w,
        .text_w = text_w,
        .eb = eb,
    };

    for (int i = 0; i < cfg->stages.n; i++) {
        int st = cfg->stages.v[i];
        mc_plan_stage *S = &p->st[p->n_stages++];
        S->stage = st;
        S->implemented = mc_stage_implemented(st);
        mc_task *tasks = NULL;
        int nt = 0;
        MC_TRY(mc_config_tasks(cfg, (mc_stage)st, &tasks, &nt, err));
        mc_tasks_free(&tasks);
        S->n_tasks = nt;
        double flop = 0, core_s = 0, mem_b = MC_PLAN_RUNTIME_BYTES;
        const mc_stage_desc *desc = mc_stage_find(st);
        if (desc) desc->cost(cfg, &in, p, S, &flop, &core_s, &mem_b);
        S->tflop = flop / 1e12;
        S->core_s_task = core_s;
        if (S->wall_s_task <= 0) S->wall_s_task = core_s / cores;
        S->wall_s_task += MC_PLAN_TASK_START_S; /* start-up: MPI, model load, store open */
        S->core_hours = S->core_s_all > 0 ? (S->core_s_all + MC_PLAN_TASK_START_S * cores * nt) /
                                                3600.0 /* tasks differ */
                                          : S->wall_s_task * cores * nt / 3600.0;
        S->run_s = S->core_s_all > 0 ? S->core_s_all / cores
                                     : (S->wall_s_task - MC_PLAN_TASK_START_S) * nt;
        S->mem_rank = mem_b;
        p->total_core_hours += S->core_hours;
        p->total_disk += S->disk;
        if (mem_b > p->max_mem_rank) p->max_mem_rank = mem_b;
        if (!S->implemented) snprintf(S->note, sizeof S->note, "not implemented in this build");
    }
    return MC_OK;
}

/* --- output --------------------------------------------------------------------------------- */

void mc_plan_fmt_bytes(double b, char *buf, size_t cap) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    int i = 0;
    while (b >= 1024 && i < 5) b /= 1024, i++;
    snprintf(buf, cap, i == 0 ? "%.0f %s" : "%.1f %s", b, u[i]);
}

void mc_plan_fmt_time(double s, char *buf, size_t cap) {
    /* Round once to whole seconds, then split: rounding each part alone printed 359.6 s as
     * "5 min 60 s". */
    long long t = s > 0 ? (s < 1e15 ? llround(s) : 1000000000000000LL) : 0;
    if (t < 60)
        snprintf(buf, cap, "%lld s", t);
    else if (t < 3600)
        snprintf(buf, cap, "%lld min %02lld s", t / 60, t % 60);
    else
        snprintf(buf, cap, "%lld h %02lld min", t / 3600, t % 3600 / 60);
}

static const char *fam(int f) { return mc_hf_family_name((mc_hf_family)f); }

void mc_plan_print(FILE *f, const mc_config *cfg, const mc_plan *p) {
    char a[64], b[64], c[64];
    fprintf(f, "plan for %s (config %.16s) at %d rank(s) x %d thread(s)\n", cfg->name, cfg->hash,
            p->ranks, p->threads);
    if (p->cal.from_file)
        fprintf(f,
                "calibration: %s (host %s, %d thread(s)): sgemm %.1f GFLOP/s, memory %.1f GB/s, "
                "decode %.0f img/s, slot terms %.0f M/s, factors %.0f M/s%s, normal draws %.0f "
                "M/s, writes %.0f MB/s%s",
                p->cal.path, p->cal.host, p->cal.threads, p->cal.sgemm_gflops, p->cal.mem_gbps,
                p->cal.decode_ips, p->cal.log_terms_ps / 1e6, p->cal.product_terms_ps / 1e6,
                p->cal.cd_defaults ? " (defaults: not in the file)" : "", p->cal.normals_ps / 1e6,
                p->cal.write_mbps, p->cal.fixed_defaults ? " (defaults: not in the file)" : "");
    else
        fprintf(f,
                "calibration: NONE - conservative defaults per core (sgemm %.0f GFLOP/s, memory "
                "%.0f GB/s, decode %.0f img/s,\n"
                "  forwards at %.0f%% of sgemm); run 'miclip plan CONFIG --calibrate' on a compute "
                "node for real numbers",
                p->cal.sgemm_gflops, p->cal.mem_gbps, p->cal.decode_ips,
                100 * MC_PLAN_DEFAULT_FORWARD_EFF);
    if (p->cal.fwd_ips > 0)
        fprintf(f, ", forward %.1f img/s of a %.2f GMAC model", p->cal.fwd_ips, p->cal.fwd_gmac);
    fprintf(f, "\n");
    char ab[64];
    mc_plan_fmt_bytes(p->target.arena_bytes, ab, sizeof ab);
    fprintf(f,
            "target: %s, %s, %.1f M parameters, %.2f GMAC/image (1 GMAC = 1e9 multiply-adds, the "
            "model cards' \"GFLOP\")\n"
            "        arena %s at batch %lld (%s)\n",
            p->target.dir, fam(p->target.family), p->target.params / 1e6, p->target.gmac, ab,
            (long long)cfg->extract.batch_size,
            p->target.exact ? "the loaded model's own size"
                            : "estimated from config.json; weights absent");
    if (!p->clip_is_target)
        fprintf(f, "clip:   %s, %.1f M vision + %.1f M text parameters, %.2f GMAC/image\n",
                p->clip.dir, p->clip.params / 1e6, p->clip.text_params / 1e6, p->clip.gmac);
    fprintf(f, "images per seed: train %lld, eval %lld, unseen %lld; seeds %d\n",
            (long long)p->n_train, (long long)p->n_eval, (long long)p->n_unseen, cfg->seeds.n);
    if (p->images_note[0]) fprintf(f, "note: %s\n", p->images_note);
    fprintf(f, "\n%-10s %6s %14s %12s %14s %12s %12s %12s\n", "stage", "tasks", "work/task",
            "GMAC/item", "wall/task", "core-hours", "mem/rank", "disk");
    for (int i = 0; i < p->n_stages; i++) {
        const mc_plan_stage *S = &p->st[i];
        char work[64];
        snprintf(work, sizeof work, "%.0f %s", S->items, S->item_name);
        mc_plan_fmt_time(S->wall_s_task, a, sizeof a);
        mc_plan_fmt_bytes(S->mem_rank, b, sizeof b);
        mc_plan_fmt_bytes(S->disk, c, sizeof c);
        fprintf(f, "%-10s %6d %14s %12.4g %14s %12.2f %12s %12s%s%s\n", mc_stage_name(S->stage),
                S->n_tasks, work, S->gmac_per_item, a, S->core_hours, b, c, S->note[0] ? "  " : "",
                S->note);
    }
    mc_plan_fmt_bytes(p->max_mem_rank, b, sizeof b);
    mc_plan_fmt_bytes(p->total_disk, c, sizeof c);
    fprintf(f, "%-10s %6s %14s %12s %14s %12.2f %12s %12s\n", "total", "", "", "", "",
            p->total_core_hours, b, c);
    fprintf(f, "\nstores:\n");
    for (int i = 0; i < p->n_stores; i++) {
        mc_plan_fmt_bytes(p->stores[i].bytes_each, a, sizeof a);
        fprintf(f, "  %-10s %3d x %-12s %s\n", mc_stage_name(p->stores[i].stage),
                p->stores[i].count, a, p->stores[i].what);
    }
    fprintf(f,
            "\nmemory per rank = weights + activation arena + stage buffers + %.0f MiB runtime;\n"
            "wall time assumes the tasks of a stage run as parallel array jobs, each with these "
            "ranks x threads.\n",
            MC_PLAN_RUNTIME_BYTES / 1048576.0);
}

void mc_plan_print_json(FILE *f, const mc_config *cfg, const mc_plan *p) {
    json_t *j = json_object();
    json_object_set_new(j, "name", json_string(cfg->name));
    json_object_set_new(j, "config_hash", json_string(cfg->hash));
    json_object_set_new(j, "ranks", json_integer(p->ranks));
    json_object_set_new(j, "threads", json_integer(p->threads));
    json_object_set_new(j, "calibration", json_string(p->cal.from_file ? p->cal.path : "defaults"));
    json_t *m = json_object();
    json_object_set_new(m, "family", json_string(fam(p->target.family)));
    json_object_set_new(m, "params", json_integer(p->target.params));
    json_object_set_new(m, "gmac_per_image", json_real(p->target.gmac));
    json_object_set_new(m, "sizes_from_weights", json_boolean(p->target.exact));
    json_object_set_new(m, "loaded_params", json_integer(p->target.loaded_params));
    json_object_set_new(m, "arena_bytes", json_real(p->target.arena_bytes));
    json_object_set_new(m, "arena_bytes_estimate",
                        json_real(mc_plan_arena_bytes(&p->target, cfg->extract.batch_size)));
    json_object_set_new(j, "target", m);
    m = json_object();
    json_object_set_new(m, "params", json_integer(p->clip.params));
    json_object_set_new(m, "text_params", json_integer(p->clip.text_params));
    json_object_set_new(m, "gmac_per_image", json_real(p->clip.gmac));
    json_object_set_new(j, "clip", m);
    json_object_set_new(j, "images",
                        json_pack("{sIsIsI}", "train", (json_int_t)p->n_train, "eval",
                                  (json_int_t)p->n_eval, "unseen", (json_int_t)p->n_unseen));
    json_object_set_new(j, "classes", json_integer(p->n_classes));
    json_object_set_new(j, "concepts", json_integer(p->n_concepts));
    json_object_set_new(j, "intervened_images", json_integer(p->n_intervened));
    json_t *arr = json_array();
    for (int i = 0; i < p->n_stages; i++) {
        const mc_plan_stage *S = &p->st[i];
        json_array_append_new(
            arr, json_pack("{sssbsisfsssfsfsfsfsfsfsfsf}", "stage", mc_stage_name(S->stage),
                           "implemented", S->implemented, "tasks", S->n_tasks, "items_per_task",
                           S->items, "item", S->item_name, "gmac_per_item", S->gmac_per_item,
                           "tflop_per_task", S->tflop, "core_seconds_per_task", S->core_s_task,
                           "wall_seconds_per_task", S->wall_s_task, "run_seconds", S->run_s,
                           "core_hours", S->core_hours, "mem_bytes_per_rank", S->mem_rank,
                           "disk_bytes", S->disk));
    }
    json_object_set_new(j, "stages", arr);
    arr = json_array();
    for (int i = 0; i < p->n_stores; i++)
        json_array_append_new(arr,
                              json_pack("{sssssisf}", "stage", mc_stage_name(p->stores[i].stage),
                                        "what", p->stores[i].what, "count", p->stores[i].count,
                                        "bytes_each", p->stores[i].bytes_each));
    json_object_set_new(j, "stores", arr);
    json_object_set_new(j, "total_core_hours", json_real(p->total_core_hours));
    json_object_set_new(j, "total_disk_bytes", json_real(p->total_disk));
    json_object_set_new(j, "max_mem_bytes_per_rank", json_real(p->max_mem_rank));
    json_dumpf(j, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', f);
    json_decref(j);
}
