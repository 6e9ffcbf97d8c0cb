/* plan.c - the cost model behind `miclip plan` and `miclip slurm` (plan.h).
 *
 * Every number is derived from the config and the models' config.json sizes; the only measured
 * inputs are the calibration rates. Multiply-adds (MAC) are counted per layer from first
 * principles; time = 2 * MAC / (rate per core * cores).
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
#include "miclip/nn.h"
#include "miclip/json.h"
#include "miclip/plan.h"
#include "miclip/stages.h"
#include "miclip/world.h"

#define TEXT_TOKENS 16 /* average prompt length in tokens ("a photo of a {}." + BOS/EOS) */

/* --- model sizes from config.json ----------------------------------------------------------- */

/* MACs of one pre-/post-norm transformer block over T tokens of width D, MLP width I. */
static double block_mac(double T, double D, double I) {
    return 4.0 * T * D * D      /* Q, K, V and output projections */
           + 2.0 * T * T * D    /* scores Q K^T and probabilities x V, all heads */
           + 2.0 * T * D * I;   /* MLP fc1 and fc2 */
}

/* Parameters of one block: 4 projections with bias, MLP with bias, two LayerNorms. */
static double block_params(double D, double I) {
    return 4.0 * (D * D + D) + (D * I + I) + (I * D + D) + 4.0 * D;
}

static mc_status read_tower(const json_t *o, const char *file, int64_t dD, int64_t dL, int64_t dH,
                            int64_t dI, int64_t *D, int64_t *L, int64_t *H, int64_t *I,
                            mc_error *err) {
    MC_TRY(mc_json_get_int(o, "hidden_size", false, dD, D, file, err));
    MC_TRY(mc_json_get_int(o, "num_hidden_layers", false, dL, L, file, err));
    MC_TRY(mc_json_get_int(o, "num_attention_heads", false, dH, H, file, err));
    MC_TRY(mc_json_get_int(o, "intermediate_size", false, dI, I, file, err));
    if (*D < 1 || *D > 65536 || *L < 0 || *L > 1024 || *H < 1 || *I < 1 || *I > 1 << 20)
        return MC_FAIL(err, MC_ERR_FORMAT, "%s: transformer sizes out of range (hidden_size %lld, layers %lld, heads %lld, intermediate %lld)",
                       file, (long long)*D, (long long)*L, (long long)*H, (long long)*I);
    return MC_OK;
}

/* ResNet walk: calls visit for every named point in forward order with its map shape and the
 * MACs so far. visit returns true to stop. */
typedef bool (*resnet_visit)(void *u, const char *name, int64_t C, int64_t H, int64_t W, double mac);

static double conv_mac(int64_t cin, int64_t cout, int64_t k, int64_t Ho, int64_t Wo) {
    return (double)cin * (double)cout * (double)(k * k) * (double)Ho * (double)Wo;
}
static int64_t conv_out(int64_t H, int64_t k, int64_t s) { return (H + 2 * (k / 2) - k) / s + 1; }

static double resnet_walk(const mc_plan_model *m, int64_t img, resnet_visit visit, void *u,
                          double *params) {
    double mac = 0, p = 0;
    int64_t C = 3, H = img, W = img;
    /* stem: conv 7x7 stride 2 (no bias) + BN, then max pool 3x3 stride 2 */
    int64_t Ho = conv_out(H, 7, 2), Wo = conv_out(W, 7, 2);
    mac += conv_mac(C, m->E, 7, Ho, Wo);
    p += (double)C * m->E * 49 + 4.0 * m->E;
    C = m->E, H = Ho, W = Wo;
    if (visit && visit(u, "embedder.embedder", C, H, W, mac)) return mac;
    H = conv_out(H, 3, 2), W = conv_out(W, 3, 2);
    if (visit && visit(u, "embedder", C, H, W, mac)) return mac;
    char name[96];
    for (int s = 0; s < m->n_stages; s++) {
        int64_t out = m->hs[s], red = out / 4;
        for (int l = 0; l < m->depth[s]; l++) {
            int64_t stride = (l == 0 && (s > 0 || m->ds_first)) ? 2 : 1;
            int64_t s1 = m->ds_bneck ? stride : 1, s2 = m->ds_bneck ? 1 : stride;
            int64_t H1 = conv_out(H, 1, s1), W1 = conv_out(W, 1, s1);
            int64_t H2 = conv_out(H1, 3, s2), W2 = conv_out(W1, 3, s2);
            mac += conv_mac(C, red, 1, H1, W1);
            p += (double)C * red + 4.0 * red;
            snprintf(name, sizeof name, "stages.%d.layers.%d.layer.0", s, l);
            if (visit && visit(u, name, red, H1, W1, mac)) return mac;
            mac += conv_mac(red, red, 3, H2, W2);
            p += (double)red * red * 9 + 4.0 * red;
            snprintf(name, sizeof name, "stages.%d.layers.%d.layer.1", s, l);
            if (visit && visit(u, name, red, H2, W2, mac)) return mac;
            mac += conv_mac(red, out, 1, H2, W2);
            p += (double)red * out + 4.0 * out;
            snprintf(name, sizeof name, "stages.%d.layers.%d.layer.2", s, l);
            if (visit && visit(u, name, out, H2, W2, mac)) return mac;
            if (C != out || stride != 1) {
                mac += conv_mac(C, out, 1, H2, W2);
                p += (double)C * out + 4.0 * out;
            }
            snprintf(name, sizeof name, "stages.%d.layers.%d.shortcut", s, l);
            if (visit && visit(u, name, out, H2, W2, mac)) return mac;
            C = out, H = H2, W = W2;
            snprintf(name, sizeof name, "stages.%d.layers.%d", s, l);
            if (visit && visit(u, name, C, H, W, mac)) return mac;
        }
        snprintf(name, sizeof name, "stages.%d", s);
        if (visit && visit(u, name, C, H, W, mac)) return mac;
    }
    if (visit && visit(u, "pooler", C, 1, 1, mac)) return mac;
    mac += (double)C * (double)m->out_dim;
    p += (double)C * m->out_dim + m->out_dim;
    if (visit && visit(u, "logits", m->out_dim, 0, 0, mac)) return mac;
    if (params) *params = p;
    return mac;
}

mc_status mc_plan_model_read(const char *dir, mc_plan_model *m, mc_error *err) {
    memset(m, 0, sizeof *m);
    mc_strlcpy(m->dir, dir, sizeof m->dir);
    mc_hf_config *hc = NULL;
    MC_TRY(mc_hf_config_load(dir, &hc, err));
    mc_status s = MC_OK;
    const char *f = hc->path;
    const json_t *root = hc->root;
    m->family = hc->family;
    switch (hc->family) {
    case MC_HF_VIT: {
        int64_t img, P, C;
        if ((s = read_tower(root, f, 768, 12, 12, 3072, &m->D, &m->L, &m->H, &m->I, err)) ||
            (s = mc_json_get_int(root, "image_size", false, 224, &img, f, err)) ||
            (s = mc_json_get_int(root, "patch_size", false, 16, &P, f, err)) ||
            (s = mc_json_get_int(root, "num_channels", false, 3, &C, f, err)))
            break;
        if (P < 1 || img < P || img > 8192 || C < 1 || C > 64) {
            s = MC_FAIL(err, MC_ERR_FORMAT, "%s: image_size %lld / patch_size %lld / num_channels %lld out of range", f, (long long)img, (long long)P, (long long)C);
            break;
        }
        m->image = (int)img, m->patch = P;
        int64_t np = (img / P) * (img / P);
        m->T = np + 1;
        m->out_dim = hc->num_labels > 0 ? hc->num_labels : 2;
        double D = (double)m->D;
        m->gmac = ((double)np * D * (double)(C * P * P) + (double)m->L * block_mac((double)m->T, D, (double)m->I) +
                   D * (double)m->out_dim) / 1e9;
        m->params = (int64_t)((double)C * P * P * D + D /* patch conv */ + D /* cls */ + (double)m->T * D +
                              (double)m->L * block_params(D, (double)m->I) + 2 * D /* final LN */ +
                              D * (double)m->out_dim + (double)m->out_dim);
        break;
    }
    case MC_HF_CLIP: {
        json_t *vc = NULL, *tc = NULL;
        int64_t img, P, proj;
        if ((s = mc_json_get_obj(root, "vision_config", false, &vc, f, err)) ||
            (s = mc_json_get_obj(root, "text_config", false, &tc, f, err)) ||
            (s = mc_json_get_int(root, "projection_dim", false, 512, &proj, f, err)))
            break;
        const json_t *vo = vc ? vc : root;
        if ((s = read_tower(vo, f, 768, 12, 12, 3072, &m->D, &m->L, &m->H, &m->I, err)) ||
            (s = mc_json_get_int(vo, "image_size", false, 224, &img, f, err)) ||
            (s = mc_json_get_int(vo, "patch_size", false, 32, &P, f, err)))
            break;
        if (P < 1 || img < P || img > 8192 || proj < 1 || proj > 65536) {
            s = MC_FAIL(err, MC_ERR_FORMAT, "%s: vision image_size %lld / patch_size %lld / projection_dim %lld out of range", f, (long long)img, (long long)P, (long long)proj);
            break;
        }
        int64_t tH = 8, vocab = 49408;
        if (tc) {
            if ((s = read_tower(tc, f, 512, 12, 8, 2048, &m->tD, &m->tL, &tH, &m->tI, err)) ||
                (s = mc_json_get_int(tc, "max_position_embeddings", false, 77, &m->tctx, f, err)) ||
                (s = mc_json_get_int(tc, "vocab_size", false, 49408, &vocab, f, err)))
                break;
        } else {
            m->tD = 512, m->tL = 12, m->tI = 2048, m->tctx = 77;
        }
        m->image = (int)img, m->patch = P;
        int64_t np = (img / P) * (img / P);
        m->T = np + 1;
        m->out_dim = proj;
        double D = (double)m->D;
        m->gmac = ((double)np * D * 3.0 * (double)(P * P) + (double)m->L * block_mac((double)m->T, D, (double)m->I) +
                   D * (double)proj) / 1e9;
        m->params = (int64_t)(3.0 * P * P * D + D + (double)m->T * D + 2 * D /* pre LN */ +
                              (double)m->L * block_params(D, (double)m->I) + 2 * D + D * (double)proj);
        double tD = (double)m->tD;
        m->text_params = (int64_t)((double)vocab * tD + (double)m->tctx * tD +
                                   (double)m->tL * block_params(tD, (double)m->tI) + 2 * tD + tD * (double)proj);
        break;
    }
    case MC_HF_RESNET: {
        const char *lt = NULL;
        int n1 = 0, n2 = 0;
        if ((s = mc_json_get_int(root, "embedding_size", false, 64, &m->E, f, err)) ||
            (s = mc_json_get_str(root, "layer_type", false, "bottleneck", &lt, f, err)) ||
            (s = mc_json_get_bool(root, "downsample_in_first_stage", false, false, &m->ds_first, f, err)) ||
            (s = mc_json_get_bool(root, "downsample_in_bottleneck", false, false, &m->ds_bneck, f, err)) ||
            (s = mc_json_get_int_array(root, "hidden_sizes", m->hs, -1, 8, &n1, f, err)) ||
            (s = mc_json_get_int_array(root, "depths", m->depth, -1, 8, &n2, f, err)))
            break;
        if (strcmp(lt, "bottleneck") != 0) {
            s = MC_FAIL(err, MC_ERR_UNSUPPORTED, "%s: layer_type '%s': only bottleneck ResNets are planned", f, lt);
            break;
        }
        if (n1 != n2 || n1 < 1) {
            s = MC_FAIL(err, MC_ERR_FORMAT, "%s: hidden_sizes (%d) and depths (%d) differ in length", f, n1, n2);
            break;
        }
        for (int i = 0; i < n1; i++)
            if (m->hs[i] < 4 || m->hs[i] > 65536 || m->depth[i] < 1 || m->depth[i] > 1024) {
                s = MC_FAIL(err, MC_ERR_FORMAT, "%s: stage %d size %lld / depth %lld out of range", f, i, (long long)m->hs[i], (long long)m->depth[i]);
                break;
            }
        if (s) break;
        m->n_stages = n1;
        m->image = 224;
        m->out_dim = hc->num_labels > 0 ? hc->num_labels : 2;
        double p = 0;
        m->gmac = resnet_walk(m, m->image, NULL, NULL, &p) / 1e9;
        m->params = (int64_t)p;
        break;
    }
    default:
        s = MC_FAIL(err, MC_ERR_UNSUPPORTED, "%s: a %s model is not a vision model miclip plans", f,
                    mc_hf_family_name(hc->family));
    }
    mc_hf_config_free(&hc);
    return s;
}

typedef struct {
    const char *want;
    bool found;
    int64_t C, H, W;
    double mac;
} find_ctx;

static bool find_visit(void *u, const char *name, int64_t C, int64_t H, int64_t W, double mac) {
    find_ctx *f = u;
    if (strcmp(name, f->want) != 0) return false;
    f->found = true, f->C = C, f->H = H, f->W = W, f->mac = mac;
    return true;
}

static int64_t pooled(int64_t C, int64_t rest, int pool) { return pool == MC_CFG_POOL_ALL ? C * rest : C; }

mc_status mc_plan_layer(const mc_plan_model *m, const char *layer, int pool, double *prefix_gmac,
                        int64_t *elems, mc_error *err) {
    if (m->family == MC_HF_RESNET) {
        const char *n = layer;
        if (!strncmp(n, "resnet.encoder.", 15)) n += 15;
        else if (!strncmp(n, "resnet.", 7)) n += 7;
        find_ctx f = {.want = n};
        resnet_walk(m, m->image, find_visit, &f, NULL);
        if (!f.found)
            return MC_FAIL(err, MC_ERR_ARG, "%s: no layer '%s' in this ResNet (e.g. 'stages.3', 'stages.3.layers.1.shortcut', 'pooler', 'logits')", m->dir, layer);
        *prefix_gmac = f.mac / 1e9;
        *elems = f.H == 0 ? f.C : pooled(f.C, f.H * f.W, pool);
        return MC_OK;
    }
    /* transformers */
    double D = (double)m->D, patch = (double)(m->T - 1) * D * 3.0 * (double)(m->patch * m->patch);
    char *end = NULL;
    long k = -1;
    if (!strcmp(layer, "embeddings")) k = 0;
    else if (isdigit((unsigned char)layer[0])) {
        k = strtol(layer, &end, 10);
        if (*end || k > m->L) k = -2;
    }
    if (k >= 0) {
        *prefix_gmac = (patch + (double)k * block_mac((double)m->T, D, (double)m->I)) / 1e9;
        *elems = pooled(m->D, m->T, pool);
        return MC_OK;
    }
    double full = (patch + (double)m->L * block_mac((double)m->T, D, (double)m->I)) / 1e9;
    if (m->family == MC_HF_VIT && !strcmp(layer, "layernorm")) {
        *prefix_gmac = full, *elems = pooled(m->D, m->T, pool);
        return MC_OK;
    }
    if (m->family == MC_HF_CLIP && !strcmp(layer, "post_layernorm")) {
        *prefix_gmac = full, *elems = m->D;
        return MC_OK;
    }
    if ((m->family == MC_HF_VIT && !strcmp(layer, "logits")) ||
        (m->family == MC_HF_CLIP && !strcmp(layer, "image_embeds"))) {
        *prefix_gmac = m->gmac, *elems = m->out_dim;
        return MC_OK;
    }
    return MC_FAIL(err, MC_ERR_ARG, "%s: no layer '%s' (transformer layers: 0..%lld, %s)", m->dir, layer,
                   (long long)m->L, m->family == MC_HF_VIT ? "layernorm, logits" : "post_layernorm, image_embeds");
}

typedef struct {
    double max_map, max_col;
} arena_ctx;

static bool arena_visit(void *u, const char *name, int64_t C, int64_t H, int64_t W, double mac) {
    (void)name, (void)mac;
    arena_ctx *a = u;
    double e = (double)C * (double)(H ? H * W : 1);
    if (e > a->max_map) a->max_map = e;
    if (H && 9.0 * e > a->max_col) a->max_col = 9.0 * e; /* im2col of a 3x3 over this map */
    return false;
}

double mc_plan_arena_bytes(const mc_plan_model *m, int64_t B) {
    if (m->family == MC_HF_RESNET) {
        arena_ctx a = {0};
        resnet_walk(m, m->image, arena_visit, &a, NULL);
        /* a few live maps (input, residual, bottleneck temporaries) + one im2col workspace */
        return (double)B * (4.0 * a.max_map + a.max_col) * 4.0;
    }
    double T = (double)m->T, D = (double)m->D;
    /* residual stream, normalised copy, q/k/v, context, MLP hidden, attention probabilities */
    return (double)B * (7.0 * T * D + T * (double)m->I + (double)m->H * T * T) * 4.0;
}

/* --- calibration ---------------------------------------------------------------------------- */

void mc_calibration_defaults(mc_calibration *cal) {
    memset(cal, 0, sizeof *cal);
    cal->threads = 1;
    cal->sgemm_gflops = MC_PLAN_DEFAULT_SGEMM_GFLOPS;
    cal->mem_gbps = MC_PLAN_DEFAULT_MEM_GBPS;
    cal->decode_ips = MC_PLAN_DEFAULT_DECODE_IPS;
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
    if ((s = mc_json_get_str(j, "format", true, NULL, &fmt, path, err)) == MC_OK && strcmp(fmt, CAL_FORMAT) != 0)
        s = MC_FAIL(err, MC_ERR_FORMAT, "%s: format '%s', expected '%s'", path, fmt, CAL_FORMAT);
    if (s == MC_OK &&
        !((s = mc_json_get_str(j, "host", false, "?", &host, path, err)) ||
          (s = mc_json_get_int(j, "threads", true, 1, &threads, path, err)) ||
          (s = mc_json_get_num(j, "sgemm_gflops", true, 0, &cal->sgemm_gflops, path, err)) ||
          (s = mc_json_get_num(j, "mem_gbps", true, 0, &cal->mem_gbps, path, err)) ||
          (s = mc_json_get_num(j, "decode_images_per_s", true, 0, &cal->decode_ips, path, err)) ||
          (s = mc_json_get_obj(j, "forward", false, &fw, path, err)))) {
        if (threads < 1 || threads > 4096 || !(cal->sgemm_gflops > 0) || !(cal->mem_gbps > 0) || !(cal->decode_ips > 0) ||
            !isfinite(cal->sgemm_gflops) || !isfinite(cal->mem_gbps) || !isfinite(cal->decode_ips))
            s = MC_FAIL(err, MC_ERR_FORMAT, "%s: rates must be positive and threads 1..4096", path);
    }
    if (s == MC_OK && fw) {
        const char *model = NULL;
        int64_t b = 0;
        if (!((s = mc_json_get_str(fw, "model", true, NULL, &model, path, err)) ||
              (s = mc_json_get_num(fw, "gmac_per_image", true, 0, &cal->fwd_gmac, path, err)) ||
              (s = mc_json_get_num(fw, "images_per_s", true, 0, &cal->fwd_ips, path, err)) ||
              (s = mc_json_get_int(fw, "batch", false, 1, &b, path, err)))) {
            if (!(cal->fwd_gmac > 0) || !(cal->fwd_ips > 0) || !isfinite(cal->fwd_ips) || !isfinite(cal->fwd_gmac))
                s = MC_FAIL(err, MC_ERR_FORMAT, "%s: forward rates must be positive", path);
            mc_strlcpy(cal->fwd_model, model, sizeof cal->fwd_model);
            cal->fwd_batch = (int)b;
        }
    }
    if (s == MC_OK) {
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

typedef struct { int64_t n; float *a, *b, *c; } gemm_job;
static void gemm_once(void *u) {
    gemm_job *g = u;
    mc_sgemm(false, true, g->n, g->n, g->n, 1.0f, g->a, g->n, g->b, g->n, 0.0f, g->c, g->n);
}
typedef struct { size_t n; char *a, *b; } copy_job;
static void copy_once(void *u) {
    copy_job *c = u;
    memcpy(c->b, c->a, c->n);
    c->a[c->n / 2]++; /* keep the copy from being elided */
}
typedef struct { const uint8_t *png; size_t len; mc_status s; mc_error err; } decode_job;
static void decode_once(void *u) {
    decode_job *d = u;
    mc_image img = {0}, out = {0};
    if (d->s == MC_OK) d->s = mc_image_decode(d->png, d->len, "calibration image", NULL, &img, &d->err);
    if (d->s == MC_OK) d->s = mc_image_resize(&img, 224, 224, MC_RESAMPLE_BICUBIC, &out, &d->err);
    mc_image_free(&img);
    mc_image_free(&out);
}
typedef struct { mc_model *m; float *pix, *out; int64_t B; int h, w; mc_status s; mc_error err; } fwd_job;
static void forward_once(void *u) {
    fwd_job *f = u;
    if (f->s == MC_OK) f->s = mc_model_forward(f->m, f->pix, f->B, f->h, f->w, NULL, f->out, NULL, &f->err);
}

mc_status mc_calibration_measure(int threads, const char *model_dir, mc_calibration *cal, mc_error *err) {
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
    for (size_t i = 0; i < nn; i++) g.a[i] = (float)(i % 17) * 0.01f, g.b[i] = (float)(i % 13) * 0.02f;
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
    /* decode + bicubic resize of a 500x375 PNG of smooth noise (ImageNet's typical size) */
    int W = 500, H = 375;
    uint8_t *px = malloc((size_t)W * H * 3);
    if (!px) return MC_FAIL(err, MC_ERR_NOMEM, "calibration: out of memory");
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int k = 0; k < 3; k++)
                px[((size_t)y * W + x) * 3 + k] = (uint8_t)((x * (k + 1) + y * 3 + ((x * 7919 + y * 104729 + k) % 23)) & 255);
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
    if (model_dir && snprintf(wpath, sizeof wpath, "%s/model.safetensors", model_dir) < (int)sizeof wpath &&
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
        for (size_t i = 0; s == MC_OK && i < n; i++) f.pix[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
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
                     what, d->root, d->kind == MC_DS_WORLD ? "'miclip world make' default" : "published",
                     (long long)full);
        }
    }
    if (d->n_samples > 0) return full > 0 && full < d->n_samples ? full : d->n_samples;
    if (full <= 0) {
        size_t u = strlen(note);
        snprintf(note + u, cap - u, "%s%s: image count unknown (folder absent; set n_samples)", u ? "; " : "", what);
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

/* --- the plan ------------------------------------------------------------------------------- */

static double per_core(double rate_per_rank, const mc_calibration *cal) {
    return rate_per_rank / (cal->threads > 0 ? cal->threads : 1);
}

/* GFLOP/s per core a model forward reaches. */
static double forward_rate(const mc_calibration *cal) {
    if (cal->fwd_ips > 0 && cal->fwd_gmac > 0) return per_core(2.0 * cal->fwd_ips * cal->fwd_gmac, cal);
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
    if (snprintf(w, sizeof w, "%s/model.safetensors", m->dir) >= (int)sizeof w || !mc_file_exists(w)) return MC_OK;
    mc_model *mm = NULL;
    MC_TRY(mc_model_create(m->dir, &mm, err));
    m->exact = true;
    m->arena_bytes = (double)mc_model_arena_bytes(mm, B);
    m->loaded_params = mc_model_param_count(mm);
    mc_model_free(&mm);
    return MC_OK;
}

void mc_plan_unit_table_cost(const mc_config *cfg, const mc_plan_inputs *in, mc_plan *p, mc_plan_stage *S, double *flop,
                             double *core_s, double *mem_b) {
    /* the unit kinds this stage covers: neurons of the widest layer, SAE features */
    const mc_enum_list *uk = S->stage == MC_STAGE_DESCRIBE ? &cfg->describe.units : &cfg->localize.units;
    double units = 0, e = (double)in->proj;
    for (int u = 0; u < uk->n; u++)
        units += uk->v[u] == MC_UNIT_SAE ? (double)cfg->sae.features : (double)in->align_dim;
    if (S->stage == MC_STAGE_BASELINES) units = (double)in->align_dim; /* baselines rank neurons */
    if (units < 1) units = 1;
    double mac = units * (double)in->n_concepts * e;
    if (S->stage == MC_STAGE_BASELINES) mac = units * (double)in->n_concepts * (double)p->n_train / 64.0 + units * e * 100;
    S->items = units;
    mc_strlcpy(S->item_name, "units", sizeof S->item_name);
    S->gmac_per_item = mac / units / 1e9;
    *flop = 2.0 * mac;
    *core_s = *flop / in->gemm;
    *mem_b += (units + (double)in->n_concepts) * e * 4 + units * (double)in->n_concepts * 4 / p->ranks;
    int64_t tau = S->stage == MC_STAGE_DESCRIBE ? cfg->describe.tau : cfg->localize.tau;
    mc_plan_add_store(p, S->stage, S->stage == MC_STAGE_DESCRIBE ? "describe/<task>.h5" : S->stage == MC_STAGE_LOCALIZE ? "localize/<task>.h5" : "baselines/<task>.h5",
              S->n_tasks, (units + (double)in->n_concepts) * (double)tau * 8 + MC_PLAN_SMALL_STORE_OVERHEAD_BYTES);
}

mc_status mc_plan_make(const mc_config *cfg, int ranks, int threads, const mc_calibration *cal,
                       const char *target_dir, const char *clip_dir, bool load_weights, mc_plan *p, mc_error *err) {
    memset(p, 0, sizeof *p);
    p->ranks = ranks > 0 ? ranks : 1;
    p->threads = threads > 0 ? threads : (cfg->threads > 0 ? (int)cfg->threads : 1);
    p->cal = *cal;
    MC_TRY(mc_plan_model_read(target_dir ? target_dir : cfg->models.target, &p->target, err));
    const char *td = target_dir ? target_dir : cfg->models.target;
    const char *cd = clip_dir ? clip_dir : cfg->models.clip;
    p->clip_is_target = !strcmp(td, cd);
    if (p->clip_is_target) p->clip = p->target;
    else MC_TRY(mc_plan_model_read(cd, &p->clip, err));
    if (p->clip.family != MC_HF_CLIP)
        return MC_FAIL(err, MC_ERR_CONFIG, "models.clip (%s) is not a CLIP model", cd);
    if (load_weights) MC_TRY(exact_sizes(&p->target, cfg->extract.batch_size, err));
    else p->target.arena_bytes = mc_plan_arena_bytes(&p->target, cfg->extract.batch_size), p->target.loaded_params = p->target.params;
    if (p->clip_is_target) p->clip = p->target;
    else if (load_weights) MC_TRY(exact_sizes(&p->clip, cfg->extract.batch_size, err));
    else p->clip.arena_bytes = mc_plan_arena_bytes(&p->clip, cfg->extract.batch_size), p->clip.loaded_params = p->clip.params;

    const int64_t seeds = cfg->seeds.n;
    p->n_train = count_images(&cfg->datasets.train, "datasets.train", p->images_note, sizeof p->images_note);
    bool inter = mc_config_has_stage(cfg, MC_STAGE_INTERVENE);
    bool want_eval = false, want_unseen = false;
    for (int i = 0; inter && i < cfg->intervene.datasets.n; i++) {
        if (cfg->intervene.datasets.v[i] == MC_EVAL_SET_EVAL) want_eval = true;
        if (cfg->intervene.datasets.v[i] == MC_EVAL_SET_UNSEEN) want_unseen = true;
    }
    if (want_eval) p->n_eval = count_images(&cfg->datasets.eval, "datasets.eval", p->images_note, sizeof p->images_note);
    if (want_unseen) p->n_unseen = count_images(&cfg->datasets.unseen, "datasets.unseen", p->images_note, sizeof p->images_note);

    const double cores = (double)p->ranks * p->threads;
    const double fwd = forward_rate(cal) * 1e9;                /* flop/s per core in forwards */
    const double gemm = per_core(cal->sgemm_gflops, cal) * 1e9; /* flop/s per core in sgemm */
    const double mem = per_core(cal->mem_gbps, cal) * 1e9;     /* bytes/s per core */
    const double dec = per_core(cal->decode_ips, cal);          /* images/s per core */
    const double tgt_w = 4.0 * (double)p->target.loaded_params;
    const double clip_w = p->clip_is_target ? 0 : 4.0 * (double)(p->clip.loaded_params);
    const double text_w = 4.0 * (double)p->clip.text_params;
    const int64_t eb = cfg->extract.batch_size;

    /* class and concept counts, for the text embeddings and the similarity tables */
    int64_t n_classes = p->target.family == MC_HF_CLIP ? 0 : p->target.out_dim;
    if (cfg->datasets.train.kind != MC_DS_NONE && mc_dir_exists(cfg->datasets.train.root)) {
        mc_dataset ds = {0};
        mc_error e = {0};
        if (mc_dataset_list(&cfg->datasets.train, NULL, 0, &ds, &e) == MC_OK) n_classes = ds.n_classes;
        mc_dataset_free(&ds);
    }
    if (n_classes <= 0) n_classes = 1000;
    int64_t n_concepts = 0;
    for (int i = 0; i < cfg->concepts.n; i++) {
        int64_t k = cfg->concepts.v[i].source == MC_CONCEPTS_CLASSES ? n_classes : count_lines(cfg->concepts.v[i].file);
        if (k < 0) {
            k = 20000; /* absent here: the paper's largest set */
            size_t u = strlen(p->images_note);
            snprintf(p->images_note + u, sizeof p->images_note - u, "%sconcepts %s: file absent, counted as 20000",
                     u ? "; " : "", cfg->concepts.v[i].name);
        }
        n_concepts += k;
    }
    const double text_gmac = (double)p->clip.tL * block_mac(TEXT_TOKENS, (double)p->clip.tD, (double)p->clip.tI) / 1e9;

    /* per-layer sizes of the extraction store */
    double act_bytes = 0;
    int64_t sae_dim = 0, int_T = 0;
    double int_prefix = 0;
    const int dt = cfg->extract.dtype == MC_STORE_F16 ? 2 : 4;
    for (int i = 0; i < cfg->extract.layers.n; i++) {
        double pre;
        int64_t el;
        MC_TRY(mc_plan_layer(&p->target, cfg->extract.layers.v[i], cfg->extract.pool, &pre, &el, err));
        act_bytes += (double)el * dt;
        if (!strcmp(cfg->extract.layers.v[i], cfg->sae.layer)) sae_dim = el;
    }
    int64_t align_dim = 0; /* widest extracted vector (E_n's input) */
    for (int i = 0; i < cfg->extract.layers.n; i++) {
        double pre;
        int64_t el;
        MC_TRY(mc_plan_layer(&p->target, cfg->extract.layers.v[i], cfg->extract.pool, &pre, &el, err));
        if (el > align_dim) align_dim = el;
    }
    if (inter) {
        int64_t el;
        MC_TRY(mc_plan_layer(&p->target, cfg->intervene.layer, MC_CFG_POOL_ALL, &int_prefix, &el, err));
        int_T = el;
    }
    const int64_t proj = p->clip.out_dim;
    const mc_plan_inputs in = {
        .seeds = seeds, .n_classes = n_classes, .n_concepts = n_concepts, .text_gmac = text_gmac,
        .act_bytes = act_bytes, .dtype_bytes = dt, .sae_dim = sae_dim, .align_dim = align_dim,
        .int_T = int_T, .int_prefix = int_prefix, .proj = proj, .cores = cores, .fwd = fwd,
        .gemm = gemm, .mem = mem, .dec = dec, .tgt_w = tgt_w, .clip_w = clip_w, .text_w = text_w,
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
        S->core_hours = S->core_s_all > 0 ? (S->core_s_all + MC_PLAN_TASK_START_S * cores * nt) / 3600.0 /* tasks differ */
                                           : S->wall_s_task * cores * nt / 3600.0;
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
    if (s < 60) snprintf(buf, cap, "%.0f s", s);
    else if (s < 3600) snprintf(buf, cap, "%.0f min %02.0f s", floor(s / 60), fmod(s, 60));
    else snprintf(buf, cap, "%.0f h %02.0f min", floor(s / 3600), floor(fmod(s, 3600) / 60));
}

static const char *fam(int f) { return mc_hf_family_name((mc_hf_family)f); }

void mc_plan_print(FILE *f, const mc_config *cfg, const mc_plan *p) {
    char a[64], b[64], c[64];
    fprintf(f, "plan for %s (config %.16s) at %d rank(s) x %d thread(s)\n", cfg->name, cfg->hash, p->ranks, p->threads);
    if (p->cal.from_file)
        fprintf(f, "calibration: %s (host %s, %d thread(s)): sgemm %.1f GFLOP/s, memory %.1f GB/s, decode %.0f img/s",
                p->cal.path, p->cal.host, p->cal.threads, p->cal.sgemm_gflops, p->cal.mem_gbps, p->cal.decode_ips);
    else
        fprintf(f, "calibration: NONE - conservative defaults per core (sgemm %.0f GFLOP/s, memory %.0f GB/s, decode %.0f img/s,\n"
                   "  forwards at %.0f%% of sgemm); run 'miclip plan CONFIG --calibrate' on a compute node for real numbers",
                p->cal.sgemm_gflops, p->cal.mem_gbps, p->cal.decode_ips, 100 * MC_PLAN_DEFAULT_FORWARD_EFF);
    if (p->cal.fwd_ips > 0) fprintf(f, ", forward %.1f img/s of a %.2f GMAC model", p->cal.fwd_ips, p->cal.fwd_gmac);
    fprintf(f, "\n");
    char ab[64];
    mc_plan_fmt_bytes(p->target.arena_bytes, ab, sizeof ab);
    fprintf(f, "target: %s, %s, %.1f M parameters, %.2f GMAC/image (1 GMAC = 1e9 multiply-adds, the model cards' \"GFLOP\")\n"
               "        arena %s at batch %lld (%s)\n",
            p->target.dir, fam(p->target.family), p->target.params / 1e6, p->target.gmac, ab,
            (long long)cfg->extract.batch_size, p->target.exact ? "the loaded model's own size" : "estimated from config.json; weights absent");
    if (!p->clip_is_target)
        fprintf(f, "clip:   %s, %.1f M vision + %.1f M text parameters, %.2f GMAC/image\n", p->clip.dir,
                p->clip.params / 1e6, p->clip.text_params / 1e6, p->clip.gmac);
    fprintf(f, "images per seed: train %lld, eval %lld, unseen %lld; seeds %d\n", (long long)p->n_train,
            (long long)p->n_eval, (long long)p->n_unseen, cfg->seeds.n);
    if (p->images_note[0]) fprintf(f, "note: %s\n", p->images_note);
    fprintf(f, "\n%-10s %6s %14s %12s %14s %12s %12s %12s\n", "stage", "tasks", "work/task", "GMAC/item",
            "wall/task", "core-hours", "mem/rank", "disk");
    for (int i = 0; i < p->n_stages; i++) {
        const mc_plan_stage *S = &p->st[i];
        char work[64];
        snprintf(work, sizeof work, "%.0f %s", S->items, S->item_name);
        mc_plan_fmt_time(S->wall_s_task, a, sizeof a);
        mc_plan_fmt_bytes(S->mem_rank, b, sizeof b);
        mc_plan_fmt_bytes(S->disk, c, sizeof c);
        fprintf(f, "%-10s %6d %14s %12.4g %14s %12.2f %12s %12s%s%s\n", mc_stage_name(S->stage), S->n_tasks, work,
                S->gmac_per_item, a, S->core_hours, b, c, S->note[0] ? "  " : "", S->note);
    }
    mc_plan_fmt_bytes(p->max_mem_rank, b, sizeof b);
    mc_plan_fmt_bytes(p->total_disk, c, sizeof c);
    fprintf(f, "%-10s %6s %14s %12s %14s %12.2f %12s %12s\n", "total", "", "", "", "", p->total_core_hours, b, c);
    fprintf(f, "\nstores:\n");
    for (int i = 0; i < p->n_stores; i++) {
        mc_plan_fmt_bytes(p->stores[i].bytes_each, a, sizeof a);
        fprintf(f, "  %-10s %3d x %-12s %s\n", mc_stage_name(p->stores[i].stage), p->stores[i].count, a, p->stores[i].what);
    }
    fprintf(f, "\nmemory per rank = weights + activation arena + stage buffers + %.0f MiB runtime;\n"
               "wall time assumes the tasks of a stage run as parallel array jobs, each with these ranks x threads.\n",
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
    json_object_set_new(m, "arena_bytes_estimate", json_real(mc_plan_arena_bytes(&p->target, cfg->extract.batch_size)));
    json_object_set_new(j, "target", m);
    m = json_object();
    json_object_set_new(m, "params", json_integer(p->clip.params));
    json_object_set_new(m, "text_params", json_integer(p->clip.text_params));
    json_object_set_new(m, "gmac_per_image", json_real(p->clip.gmac));
    json_object_set_new(j, "clip", m);
    json_object_set_new(j, "images", json_pack("{sIsIsI}", "train", (json_int_t)p->n_train, "eval",
                                               (json_int_t)p->n_eval, "unseen", (json_int_t)p->n_unseen));
    json_t *arr = json_array();
    for (int i = 0; i < p->n_stages; i++) {
        const mc_plan_stage *S = &p->st[i];
        json_array_append_new(arr, json_pack("{sssbsisfsssfsfsfsfsfsfsf}", "stage", mc_stage_name(S->stage), "implemented",
                                             S->implemented, "tasks", S->n_tasks, "items_per_task", S->items, "item",
                                             S->item_name, "gmac_per_item", S->gmac_per_item, "tflop_per_task", S->tflop, "core_seconds_per_task",
                                             S->core_s_task, "wall_seconds_per_task", S->wall_s_task, "core_hours",
                                             S->core_hours, "mem_bytes_per_rank", S->mem_rank, "disk_bytes", S->disk));
    }
    json_object_set_new(j, "stages", arr);
    arr = json_array();
    for (int i = 0; i < p->n_stores; i++)
        json_array_append_new(arr, json_pack("{sssssisf}", "stage", mc_stage_name(p->stores[i].stage), "what",
                                             p->stores[i].what, "count", p->stores[i].count, "bytes_each",
                                             p->stores[i].bytes_each));
    json_object_set_new(j, "stores", arr);
    json_object_set_new(j, "total_core_hours", json_real(p->total_core_hours));
    json_object_set_new(j, "total_disk_bytes", json_real(p->total_disk));
    json_object_set_new(j, "max_mem_bytes_per_rank", json_real(p->max_mem_rank));
    json_dumpf(j, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', f);
    json_decref(j);
}
