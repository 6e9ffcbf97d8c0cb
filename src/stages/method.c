/* method.c - helpers shared by the method stages: the train store of a seed, activation rows,
 * keys and paths, curves beside checkpoints, concept sets, unit embeddings (method_internal.h). */
#include <math.h>
#include <mpi.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>

#include "method_internal.h"
#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/log.h"
#include "miclip/safetensors.h"
#include "miclip/text.h"
#include "miclip/miclip.h"
#include "stages_internal.h"

/* ---- small utilities ---------------------------------------------------------------------- */

void mc_buf_printf(mc_buf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->n;
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? room : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = true;
            return;
        }
        if (b->p && (size_t)k < room) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->n + (size_t)k + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

void mc_buf_free(mc_buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

mc_status mc_report_gather(const mc_config *cfg, int stage, const char *dir, const char *tag, mc_buf *body,
                           mc_buf *records, int *found, mc_error *err) {
    mc_task *tasks = NULL;
    int n = 0;
    MC_TRY(mc_config_tasks(cfg, stage, &tasks, &n, err));
    char open_tag[64];
    mc_snprintf(open_tag, sizeof open_tag, "<!-- %s\t", tag);
    const size_t skip = strlen(open_tag);
    mc_status s = MC_OK;
    *found = 0;
    for (int t = 0; t < n && s == MC_OK; t++) {
        char path[MC_PATH_CAP];
        mc_snprintf(path, sizeof path, "%s/report/%s/%s.md", cfg->output_dir, dir, tasks[t].id);
        if (!mc_file_exists(path)) continue;
        char *text = NULL;
        size_t len = 0;
        s = mc_read_file(path, 64u << 20, &text, &len, err);
        if (s == MC_OK) {
            mc_buf_printf(body, "\n%s", text), (*found)++;
            for (char *q = strstr(text, open_tag); q; q = strstr(q + 1, open_tag)) {
                char *e = strstr(q, " -->");
                if (e) mc_buf_printf(records, "%.*s\n", (int)(e - q - skip), q + skip);
            }
        }
        free(text);
    }
    mc_tasks_free(&tasks);
    return s;
}

void mc_buf_csv(mc_buf *b, const char *s) {
    if (!strpbrk(s, ",\"\n\r")) {
        mc_buf_printf(b, "%s", s);
        return;
    }
    mc_buf_printf(b, "\"");
    for (const char *p = s; *p; p++) mc_buf_printf(b, *p == '"' ? "\"\"" : "%c", *p);
    mc_buf_printf(b, "\"");
}

mc_status mc_write_text_file(const char *path, const char *text, size_t n, mc_error *err) {
    char dir[MC_PATH_CAP];
    mc_strlcpy(dir, path, sizeof dir);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = '\0';
        MC_TRY(mc_mkdir_p(dir, err));
    }
    return mc_write_file_atomic(path, text, n, err);
}

void mc_key_of(const char *text, char hex[MC_KEY_HEX]) { mc_sha256_hex(text, strlen(text), hex); }

void mc_layer_tag(const char *layer, char *out, size_t cap) {
    size_t o = 0;
    for (const char *p = layer; *p && o + 1 < cap; p++) {
        char ch = *p;
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                  ch == '.' || ch == '_' || ch == '-';
        out[o++] = ok ? ch : '_';
    }
    out[o] = '\0';
}

const char *mc_variant_tag(int variant) {
    return variant == MC_VARIANT_INOUT ? "inout" : mc_variant_name(variant);
}

mc_status mc_store_read_strings(mc_store *st, const char *base, char ***out, int64_t *n,
                                mc_error *err) {
    char bn[512], on[512];
    snprintf(bn, sizeof bn, "%s_bytes", base);
    snprintf(on, sizeof on, "%s_offsets", base);
    mc_store_dataset_info ib, io;
    *out = NULL;
    *n = 0;
    MC_TRY(mc_store_dataset_info_get(st, bn, &ib, err));
    MC_TRY(mc_store_dataset_info_get(st, on, &io, err));
    if (ib.ndim != 1 || io.ndim != 1 || io.shape[0] < 1)
        return MC_FAIL(err, MC_ERR_FORMAT, "%s: %s is not a string list", mc_store_path(st), base);
    int64_t nb = ib.shape[0], cnt = io.shape[0] - 1;
    char *bytes = mc_alloc_array((size_t)nb + 1, 1);
    int64_t *offs = mc_alloc_array((size_t)cnt + 1, sizeof *offs);
    char **v = calloc((size_t)cnt + 1, sizeof *v);
    mc_status s = bytes && offs && v ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory reading %s", base);
    if (s == MC_OK) s = mc_store_read_rows(st, bn, MC_DTYPE_U8, 0, nb, bytes, err);
    if (s == MC_OK) s = mc_store_read_rows(st, on, MC_DTYPE_I64, 0, cnt + 1, offs, err);
    if (s == MC_OK) bytes[nb] = '\0';
    for (int64_t i = 0; s == MC_OK && i < cnt; i++) {
        if (offs[i] < 0 || offs[i] > nb || offs[i + 1] < offs[i] || offs[i + 1] > nb) {
            s = MC_FAIL(err, MC_ERR_FORMAT, "%s: %s offset %lld out of range", mc_store_path(st), on, (long long)i);
            break;
        }
        if (!(v[i] = mc_strdup(bytes + offs[i]))) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    free(bytes);
    free(offs);
    if (s != MC_OK) {
        mc_strings_free(&v, cnt);
        return s;
    }
    *out = v;
    *n = cnt;
    return MC_OK;
}

void mc_strings_free(char ***v, int64_t n) {
    if (!v || !*v) return;
    for (int64_t i = 0; i < n; i++) free((*v)[i]);
    free(*v);
    *v = NULL;
}

mc_status mc_store_peek_complete(const mc_comm *c, const char *path, bool *complete, mc_error *err) {
    *complete = false;
    int exists = c->rank == 0 ? mc_file_exists(path) : 0;
    MPI_Bcast(&exists, 1, MPI_INT, 0, c->comm);
    if (!exists) return MC_OK;
    mc_store *st = NULL;
    MC_TRY(mc_store_open(c, path, MC_STORE_READ, &st, err));
    *complete = mc_store_is_complete(st, "/");
    return mc_store_close(&st, err);
}

mc_status mc_store_fresh(const mc_comm *c, const char *path, mc_store **st, mc_error *err) {
    return mc_store_create(c, path, MC_STORE_OVERWRITE, st, err);
}

/* ---- the train store ---------------------------------------------------------------------- */

void mc_train_data_close(mc_train_data *td) {
    if (td->st) mc_store_close(&td->st, NULL);
    mc_strings_free(&td->class_names, td->n_classes);
    free(td->valid);
    free(td->pred);
    memset(td, 0, sizeof *td);
}

mc_status mc_train_data_open(const mc_comm *c, const mc_config *cfg, int64_t seed,
                             mc_train_data *td, mc_error *err) {
    memset(td, 0, sizeof *td);
    MC_TRY(mc_extract_store_path(c, cfg, MC_SPLIT_TRAIN, seed, td->path, sizeof td->path, err));
    bool complete = false;
    MC_TRY(mc_store_peek_complete(c, td->path, &complete, err));
    if (!complete)
        return MC_FAIL(err, MC_ERR_ARG, "the training activations of seed %lld are missing or incomplete "
                       "(%s); run the extract stage first (miclip extract CONFIG)", (long long)seed, td->path);
    MC_TRY(mc_store_open(c, td->path, MC_STORE_READ, &td->st, err));
    char *key = NULL, *clip = NULL;
    mc_store_dataset_info vi, ci;
    mc_status s = mc_store_get_attr_str(td->st, "/", "extract_key", &key, err);
    if (s == MC_OK) s = mc_store_get_attr_str(td->st, "/", "clip_hash", &clip, err);
    if (s == MC_OK) s = mc_store_dataset_info_get(td->st, "images/valid", &vi, err);
    if (s == MC_OK) s = mc_store_dataset_info_get(td->st, "text/class_embeds", &ci, err);
    if (s == MC_OK && (vi.ndim != 1 || ci.ndim != 2))
        s = MC_FAIL(err, MC_ERR_FORMAT, "%s: unexpected images/valid or text/class_embeds shape", td->path);
    if (s == MC_OK) {
        mc_strlcpy(td->extract_key, key, sizeof td->extract_key);
        mc_strlcpy(td->clip_hash, clip, sizeof td->clip_hash);
        td->n_img = vi.shape[0];
        td->n_classes = ci.shape[0];
        td->clip_dim = ci.shape[1];
    }
    free(key);
    free(clip);
    s = mc_comm_agree(c, s, err);
    int64_t nc = 0;
    if (s == MC_OK) s = mc_store_read_strings(td->st, "classes/names", &td->class_names, &nc, err);
    if (s == MC_OK && nc != td->n_classes)
        s = MC_FAIL(err, MC_ERR_FORMAT, "%s: %lld class names for %lld class embeddings", td->path,
                    (long long)nc, (long long)td->n_classes);
    if (s == MC_OK) {
        td->valid = mc_alloc_array((size_t)td->n_img + 1, 1);
        td->pred = mc_alloc_array((size_t)td->n_img + 1, sizeof(int32_t));
        if (!td->valid || !td->pred) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    s = mc_comm_agree(c, s, err);
    if (s == MC_OK) s = mc_store_read_rows(td->st, "images/valid", MC_DTYPE_U8, 0, td->n_img, td->valid, err);
    if (s == MC_OK) s = mc_store_read_rows(td->st, "target/predictions", MC_DTYPE_I32, 0, td->n_img, td->pred, err);
    if (s != MC_OK) {
        td->n_classes = nc;
        mc_train_data_close(td);
    }
    return s;
}

/* ---- activations ---------------------------------------------------------------------------- */

void mc_acts_close(mc_acts *a) {
    free(a->cache);
    free(a->img_buf);
    memset(a, 0, sizeof *a);
}

mc_status mc_acts_open(const mc_comm *c, mc_store *st, const char *layer, mc_acts *a, mc_error *err) {
    char name[512];
    if (!mc_snprintf(name, sizeof name, "acts/%s", layer))
        return MC_FAIL(err, MC_ERR_ARG, "layer name too long: %s", layer);
    mc_status s = mc_acts_open_dataset(c, st, name, a, err);
    if (s != MC_OK) mc_error_prefix(err, "layer '%s' (is it in extract.layers?)", layer);
    return s;
}

mc_status mc_acts_open_dataset(const mc_comm *c, mc_store *st, const char *name, mc_acts *a, mc_error *err) {
    memset(a, 0, sizeof *a);
    a->st = st;
    if (!mc_strlcpy(a->name, name, sizeof a->name)) return MC_FAIL(err, MC_ERR_ARG, "dataset name too long: %s", name);
    mc_store_dataset_info in;
    mc_status s = mc_store_dataset_info_get(st, a->name, &in, err);
    if (s == MC_OK) {
        a->ndim = in.ndim;
        for (int d = 0; d < in.ndim && d < 4; d++) a->shape[d] = in.shape[d];
        a->n_img = in.shape[0];
        if (in.ndim == 2) a->layout = MC_ACTS_VEC, a->tokens = 1, a->dim = in.shape[1];
        else if (in.ndim == 3) a->layout = MC_ACTS_SEQ, a->tokens = in.shape[1], a->dim = in.shape[2];
        else if (in.ndim == 4) a->layout = MC_ACTS_MAP, a->tokens = in.shape[2] * in.shape[3], a->dim = in.shape[1];
        else s = MC_FAIL(err, MC_ERR_UNSUPPORTED, "%s: %s has %d dimensions; expected [N, D], [N, T, D] or [N, C, H, W]",
                         mc_store_path(st), a->name, in.ndim);
        a->per_img = a->tokens * a->dim;
        if (s == MC_OK && (a->dim < 1 || a->tokens < 1))
            s = MC_FAIL(err, MC_ERR_FORMAT, "%s: %s is empty", mc_store_path(st), a->name);
    }
    if (s == MC_OK && !(a->img_buf = mc_alloc_array((size_t)a->per_img, sizeof(float))))
        s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    s = mc_comm_agree(c, s, err);
    if (s != MC_OK) {
        mc_acts_close(a);
        return s;
    }
    /* Preload when small: the same values as reading on demand, only faster. */
    const char *env = getenv("MICLIP_PRELOAD_MB");
    double limit_mb = env && *env ? atof(env) : 1024.0;
    double mb = (double)a->n_img * (double)a->per_img * 4.0 / (1024.0 * 1024.0);
    int fits = mb <= limit_mb, all = 0;
    MPI_Allreduce(&fits, &all, 1, MPI_INT, MPI_MIN, c->comm);
    if (c->rank == 0)
        mc_debug("%s: %.1f MiB, %s (MICLIP_PRELOAD_MB %.0f)", a->name, mb, all ? "preloaded" : "streamed", limit_mb);
    if (all) {
        a->cache = mc_alloc_array((size_t)a->n_img * (size_t)a->per_img, sizeof(float));
        s = a->cache ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory preloading %s (%.0f MiB)", a->name, mb);
        s = mc_comm_agree(c, s, err);
        if (s == MC_OK) s = mc_store_read_rows(st, a->name, MC_DTYPE_F32, 0, a->n_img, a->cache, err);
        if (s != MC_OK) mc_acts_close(a);
    }
    return s;
}

/* One whole image (per_img floats) into a->img_buf; returns the pointer. */
static mc_status image_rows(mc_acts *a, int64_t img, const float **out, mc_error *err) {
    if (img < 0 || img >= a->n_img) return MC_FAIL(err, MC_ERR_INTERNAL, "image %lld out of range", (long long)img);
    if (a->cache) {
        *out = a->cache + img * a->per_img;
        return MC_OK;
    }
    int64_t start[4] = {img, 0, 0, 0}, count[4];
    count[0] = 1;
    for (int d = 1; d < a->ndim; d++) count[d] = a->shape[d];
    MC_TRY(mc_store_read_slice(a->st, a->name, MC_DTYPE_F32, start, count, a->img_buf, false, err));
    *out = a->img_buf;
    return MC_OK;
}

mc_status mc_acts_vectors(mc_acts *a, const int64_t *img, int64_t n, float *out, mc_error *err) {
    const int64_t D = a->dim;
    for (int64_t i = 0; i < n;) {
        if (img[i] < 0 || img[i] >= a->n_img)
            return MC_FAIL(err, MC_ERR_INTERNAL, "image %lld out of range", (long long)img[i]);
        if (a->layout == MC_ACTS_VEC && !a->cache) {
            /* Consecutive images in one read. */
            int64_t run = 1;
            while (i + run < n && img[i + run] == img[i] + run) run++;
            int64_t start[2] = {img[i], 0}, count[2] = {run, D};
            MC_TRY(mc_store_read_slice(a->st, a->name, MC_DTYPE_F32, start, count, out + i * D, false, err));
            i += run;
            continue;
        }
        float *o = out + i * D;
        if (a->layout == MC_ACTS_VEC) {
            memcpy(o, a->cache + img[i] * D, (size_t)D * sizeof(float));
        } else if (a->layout == MC_ACTS_SEQ) {
            /* The CLS token (token 0), as extract.pool: cls would have stored. */
            if (a->cache) memcpy(o, a->cache + img[i] * a->per_img, (size_t)D * sizeof(float));
            else {
                int64_t start[3] = {img[i], 0, 0}, count[3] = {1, 1, D};
                MC_TRY(mc_store_read_slice(a->st, a->name, MC_DTYPE_F32, start, count, o, false, err));
            }
        } else {
            /* Spatial mean of a feature map, in double over positions in order. */
            const float *x;
            MC_TRY(image_rows(a, img[i], &x, err));
            const int64_t HW = a->tokens;
            for (int64_t ch = 0; ch < D; ch++) {
                double sum = 0;
                for (int64_t p = 0; p < HW; p++) sum += x[ch * HW + p];
                o[ch] = (float)(sum / (double)HW);
            }
        }
        i++;
    }
    return MC_OK;
}

mc_status mc_acts_token(mc_acts *a, int64_t img, int64_t t, float *out, mc_error *err) {
    const int64_t D = a->dim;
    if (img < 0 || img >= a->n_img || t < 0 || t >= a->tokens)
        return MC_FAIL(err, MC_ERR_INTERNAL, "token (%lld, %lld) out of range", (long long)img, (long long)t);
    if (a->layout != MC_ACTS_MAP) {
        if (a->cache) {
            memcpy(out, a->cache + img * a->per_img + t * D, (size_t)D * sizeof(float));
            return MC_OK;
        }
        int64_t start[3] = {img, t, 0}, count[3] = {1, 1, D};
        if (a->layout == MC_ACTS_VEC) start[1] = 0, count[1] = D;
        return mc_store_read_slice(a->st, a->name, MC_DTYPE_F32, start, count, out, false, err);
    }
    const int64_t HW = a->tokens, W = a->shape[3];
    if (a->cache) {
        const float *x = a->cache + img * a->per_img;
        for (int64_t ch = 0; ch < D; ch++) out[ch] = x[ch * HW + t];
        return MC_OK;
    }
    int64_t start[4] = {img, 0, t / W, t % W}, count[4] = {1, D, 1, 1};
    return mc_store_read_slice(a->st, a->name, MC_DTYPE_F32, start, count, out, false, err);
}

/* ---- keys and paths --------------------------------------------------------------------------- */

static mc_status make_paths(const mc_config *cfg, const char *sub, const char *tag, const char *key_text,
                            mc_run_paths *p, mc_error *err) {
    memset(p, 0, sizeof *p);
    mc_key_of(key_text, p->key);
    mc_strlcpy(p->tag, tag, sizeof p->tag);
    bool ok = mc_snprintf(p->dir, sizeof p->dir, "%s/%s", cfg->output_dir, sub) &&
              mc_snprintf(p->store, sizeof p->store, "%s/%s-%.16s.h5", p->dir, tag, p->key) &&
              mc_snprintf(p->ckpt, sizeof p->ckpt, "%s/%s-%.16s.ckpt.safetensors", p->dir, tag, p->key) &&
              mc_snprintf(p->curve, sizeof p->curve, "%s/%s-%.16s.curve.safetensors", p->dir, tag, p->key);
    return ok ? MC_OK : MC_FAIL(err, MC_ERR_ARG, "output path too long under %s", cfg->output_dir);
}

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

mc_status mc_sae_paths(const mc_config *cfg, const char *extract_key, int64_t seed, mc_run_paths *p,
                       mc_error *err) {
    mc_sae_config s = mc_sae_config_of(cfg, 0, seed);
    char text[4096], lt[200], tag[256];
    snprintf(text, sizeof text,
             "miclip-sae/1\ncode=%s\nextract=%s\nlayer=%s\ninput=%d\nfeatures=%lld\nk=%d\nlr=%.17g\n"
             "batch=%lld\nepochs=%d\nsteps=%lld\naux_k=%d\naux_coef=%.17g\ndead_after=%lld\n"
             "init_samples=%lld\nmedian_iters=%d\nheldout=%.17g\nseed=%lld\nchunk=%lld\nshuffle=%lld\n"
             "adam=%.17g,%.17g,%.17g,%.17g\n",
             MICLIP_CACHE_VERSION, extract_key, cfg->sae.layer, cfg->sae.input, (long long)s.m, s.k,
             s.adam.lr, (long long)s.batch_size, s.epochs, (long long)cfg->sae.steps, s.k_aux, s.aux_coef,
             (long long)s.dead_samples, (long long)s.median_samples, s.median_iters, cfg->sae.heldout,
             (long long)seed, (long long)s.chunk_rows, (long long)s.shuffle_block, s.adam.beta1,
             s.adam.beta2, s.adam.eps, s.adam.weight_decay);
    mc_layer_tag(cfg->sae.layer, lt, sizeof lt);
    snprintf(tag, sizeof tag, "sae-s%lld-l%s", (long long)seed, lt);
    return make_paths(cfg, "sae", tag, text, p, err);
}

mc_align_config mc_align_config_of(const mc_config *cfg, int64_t n, int64_t d, int64_t n_classes,
                                   int variant, int64_t seed) {
    mc_align_config a = mc_align_defaults();
    a.n = n;
    a.d = d;
    a.n_classes = n_classes;
    a.variant = variant == MC_VARIANT_IN ? MC_ALIGN_IN : variant == MC_VARIANT_OUT ? MC_ALIGN_OUT
                                                                                 : MC_ALIGN_IN_OUT;
    a.learn_scale = cfg->align.temperature.learnable;
    a.logit_scale = a.learn_scale ? 1.0 / cfg->align.init_temperature : 1.0 / cfg->align.temperature.value;
    a.adam.lr = cfg->align.lr;
    a.batch_size = cfg->align.batch_size;
    a.epochs = (int)cfg->align.epochs;
    a.seed = (uint64_t)seed;
    a.shuffle_block = 1;
    return a;
}

mc_status mc_align_paths(const mc_config *cfg, const char *extract_key, int64_t seed, const char *layer,
                         int variant, mc_run_paths *p, mc_error *err) {
    mc_align_config a = mc_align_config_of(cfg, 0, 0, 0, variant, seed);
    char text[4096], lt[200], tag[256];
    snprintf(text, sizeof text,
             "miclip-align/1\ncode=%s\nextract=%s\nlayer=%s\nvariant=%s\nlr=%.17g\nbatch=%lld\nepochs=%d\n"
             "learn_scale=%d\nlogit_scale=%.17g\nseed=%lld\nchunk=%lld\nshuffle=%lld\n"
             "adam=%.17g,%.17g,%.17g,%.17g\n",
             MICLIP_CACHE_VERSION, extract_key, layer, mc_variant_name(variant), a.adam.lr,
             (long long)a.batch_size, a.epochs, (int)a.learn_scale, a.logit_scale, (long long)seed,
             (long long)a.chunk_rows, (long long)a.shuffle_block, a.adam.beta1, a.adam.beta2, a.adam.eps,
             a.adam.weight_decay);
    mc_layer_tag(layer, lt, sizeof lt);
    snprintf(tag, sizeof tag, "align-s%lld-l%s-%s", (long long)seed, lt, mc_variant_tag(variant));
    return make_paths(cfg, "align", tag, text, p, err);
}

/* ---- curves and the step hook ------------------------------------------------------------ */

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
        return MC_FAIL(err, MC_ERR_IO, "%s: missing (the checkpoint is at step %lld)", path, (long long)keep);
    }
    mc_st_file *f = NULL;
    MC_TRY(mc_st_open(path, &f, err));
    const char *cnt = mc_st_metadata(f, "count");
    long long count = cnt ? atoll(cnt) : -1;
    mc_status s = MC_OK;
    if (count < keep)
        s = MC_FAIL(err, MC_ERR_FORMAT, "%s: %lld curve entries, the checkpoint needs %lld", path, count, (long long)keep);
    float *v[4] = {0};
    const char *names[4] = {"loss", "a", "b", "c"};
    for (int i = 0; s == MC_OK && keep > 0 && i < 4; i++) {
        int64_t shape[1] = {count};
        v[i] = mc_alloc_array((size_t)count, sizeof(float));
        s = v[i] ? mc_st_read_f32(f, names[i], 1, shape, v[i], err) : MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    for (int64_t j = 0; s == MC_OK && j < keep; j++)
        s = mc_train_curve_push(curve, v[0][j], v[1][j], v[2][j], v[3][j], err);
    for (int i = 0; i < 4; i++) free(v[i]);
    mc_st_close(&f);
    return s;
}

mc_status mc_stage_resume_checkpoint(const mc_comm *c, const mc_run_paths *p, mc_encoder *enc, mc_sae *sae,
                                     mc_train_pos *pos, mc_train_curve *curve, const char *what, mc_error *err) {
    int exists = c->rank == 0 ? mc_file_exists(p->ckpt) : 0;
    MPI_Bcast(&exists, 1, MPI_INT, 0, c->comm);
    if (!exists) return MC_OK;
    mc_status s = enc ? mc_encoder_load(enc, pos, p->key, p->ckpt, err) : mc_sae_load(sae, pos, p->key, p->ckpt, err);
    if (s == MC_OK) s = mc_curve_load(curve, p->curve, pos->global_step, err);
    MC_TRY(mc_comm_agree(c, s, err));
    mc_info0("%s: resuming from the checkpoint at step %lld (%s)", what, (long long)pos->global_step, p->ckpt);
    return MC_OK;
}

mc_status mc_stage_save(mc_stage_hook *h, const mc_train_pos *pos, mc_error *err) {
    mc_status s = MC_OK;
    if (h->comm->rank == 0) {
        s = mc_curve_save(h->curve, h->curve_path, err);
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
        return MC_FAIL(err, MC_ERR_INTERRUPTED, "%s: step limit %lld reached", h->what, (long long)h->max_steps);
    }
    bool stop = mc_comm_stop_requested(h->comm);
    bool due = h->every > 0 && pos->global_step % h->every == 0;
    if (!stop && !due) return MC_OK;
    MC_TRY(mc_stage_save(h, pos, err));
    if (stop)
        return MC_FAIL(err, MC_ERR_INTERRUPTED, "%s: stopped by a signal after step %lld; checkpoint %s; "
                       "rerun to resume", h->what, (long long)pos->global_step, h->ckpt);
    return MC_OK;
}

/* ---- concept sets ----------------------------------------------------------------------------- */

void mc_concepts_free(mc_concepts **sets, int n_sets) {
    if (!sets || !*sets) return;
    for (int i = 0; i < n_sets; i++) {
        mc_strings_free(&(*sets)[i].texts, (*sets)[i].n);
        free((*sets)[i].emb);
    }
    free(*sets);
    *sets = NULL;
}

/* The lines of a concept file (rank 0 reads, every rank parses the same bytes). */
static mc_status read_concept_file(const mc_comm *c, const char *path, mc_concepts *cs, mc_error *err) {
    char *text = NULL;
    size_t len = 0;
    mc_status s = c->rank == 0 ? mc_read_file(path, 256u << 20, &text, &len, err) : MC_OK;
    if (s == MC_OK && c->rank == 0 && (s = mc_text_check_lines(path, text, len, err)) != MC_OK) free(text);
    MC_TRY(mc_comm_agree(c, s, err));
    MC_TRY(mc_comm_bcast_string(c, 0, &text, err));
    int64_t cap = 1;
    for (char *p = text; *p; p++) cap += *p == '\n';
    cs->texts = calloc((size_t)cap, sizeof(char *));
    if (!cs->texts) {
        free(text);
        return MC_FAIL(err, MC_ERR_NOMEM, "out of memory reading %s", path);
    }
    int64_t lineno = 0;
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        lineno++;
        char *b = line, *e = line + strlen(line);
        while (*b == ' ' || *b == '\t' || *b == '\r') b++;
        while (e > b && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) e--;
        *e = '\0';
        if (*b && *b != '#') {
            if (!(cs->texts[cs->n++] = mc_strdup(b))) {
                free(text);
                return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
            }
        }
        line = nl ? nl + 1 : NULL;
    }
    free(text);
    if (cs->n == 0) return MC_FAIL(err, MC_ERR_CONFIG, "%s: the concept list is empty", path);
    return MC_OK;
}

#define TEXT_BLOCK 64 /* texts per embedding call: fixed, so results do not depend on ranks */

static mc_status embed_concepts(const mc_comm *c, const mc_config *cfg, mc_text_encoder **enc,
                                mc_concepts *cs, mc_error *err) {
    mc_status s = MC_OK;
    if (!*enc) s = mc_text_encoder_load(cfg->models.clip, NULL, enc, err);
    MC_TRY(mc_comm_agree(c, s, err));
    int64_t P = cs->dim;
    if (mc_text_encoder_dim(*enc) != P)
        return MC_FAIL(err, MC_ERR_SHAPE, "%s: text embeddings have width %d, the CLIP image embeddings %lld",
                       cfg->models.clip, mc_text_encoder_dim(*enc), (long long)P);
    int64_t nb = (cs->n + TEXT_BLOCK - 1) / TEXT_BLOCK, b0, b1;
    mc_shard_range(nb, c->rank, c->size, &b0, &b1);
    for (int64_t b = b0; s == MC_OK && b < b1; b++) {
        int64_t i0 = b * TEXT_BLOCK, i1 = i0 + TEXT_BLOCK < cs->n ? i0 + TEXT_BLOCK : cs->n;
        s = mc_text_embed(*enc, (const char *const *)cs->texts + i0, (size_t)(i1 - i0), cfg->align.prompt,
                          false, cs->emb + i0 * P, err);
    }
    MC_TRY(mc_comm_agree(c, s, err));
    /* Every rank gets every row (floats counted per rank; sizes fit int for concept sets). */
    int *counts = calloc((size_t)c->size, sizeof(int)), *displs = calloc((size_t)c->size, sizeof(int));
    if (!counts || !displs) {
        free(counts);
        free(displs);
        return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    for (int r = 0; r < c->size; r++) {
        int64_t r0, r1;
        mc_shard_range(nb, r, c->size, &r0, &r1);
        int64_t i0 = r0 * TEXT_BLOCK < cs->n ? r0 * TEXT_BLOCK : cs->n;
        int64_t i1 = r1 * TEXT_BLOCK < cs->n ? r1 * TEXT_BLOCK : cs->n;
        counts[r] = (int)((i1 - i0) * P);
        displs[r] = (int)(i0 * P);
    }
    int rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, cs->emb, counts, displs, MPI_FLOAT, c->comm);
    free(counts);
    free(displs);
    return rc == MPI_SUCCESS ? MC_OK : MC_FAIL(err, MC_ERR_MPI, "MPI_Allgatherv of concept embeddings failed");
}

static mc_status write_concept_store(const mc_comm *c, const mc_config *cfg, const mc_concepts *cs,
                                     const mc_train_data *td, mc_error *err) {
    mc_store *st = NULL;
    MC_TRY(mc_store_fresh(c, cs->path, &st, err));
    bool root = c->rank == 0;
    int64_t sh[2] = {cs->n, cs->dim};
    mc_status s = mc_store_write_strings(st, "names", (const char *const *)cs->texts, cs->n, true, err);
    if (s == MC_OK) s = mc_store_create_dataset(st, "embeds", MC_DTYPE_F32, 2, sh, 0, err);
    if (s == MC_OK) s = mc_store_write_rows(st, "embeds", MC_DTYPE_F32, 0, root ? cs->n : 0, cs->emb, err);
    mc_store_provenance prov = {.stage = "concepts", .config_hash = cfg->hash, .model = td->clip_hash};
    if (s == MC_OK) s = mc_store_write_provenance(st, "/", &prov, err);
    if (s == MC_OK) s = mc_store_set_attr_str(st, "/", "concepts_key", cs->key, err);
    if (s == MC_OK) s = mc_store_set_attr_str(st, "/", "set", cs->name, err);
    if (s == MC_OK) s = mc_store_set_attr_str(st, "/", "prompt", cfg->align.prompt, err);
    if (s == MC_OK) s = mc_store_set_attr_str(st, "/", "clip_model", cfg->models.clip, err);
    if (s == MC_OK) s = mc_store_set_attr_str(st, "/", "clip_hash", td->clip_hash, err);
    if (s == MC_OK) s = mc_store_set_complete(st, "/", err);
    mc_error ce = {0};
    mc_status cs2 = mc_store_close(&st, &ce);
    if (s == MC_OK && cs2 != MC_OK) *err = ce, s = cs2;
    return s;
}

static mc_status read_concept_store(const mc_comm *c, mc_concepts *cs, mc_error *err) {
    mc_store *st = NULL;
    MC_TRY(mc_store_open(c, cs->path, MC_STORE_READ, &st, err));
    mc_store_dataset_info in;
    mc_status s = mc_store_dataset_info_get(st, "embeds", &in, err);
    if (s == MC_OK && (in.ndim != 2 || in.shape[0] != cs->n || in.shape[1] != cs->dim))
        s = MC_FAIL(err, MC_ERR_SHAPE, "%s: embeds is not [%lld, %lld]", cs->path, (long long)cs->n, (long long)cs->dim);
    s = mc_comm_agree(c, s, err);
    if (s == MC_OK) s = mc_store_read_rows(st, "embeds", MC_DTYPE_F32, 0, cs->n, cs->emb, err);
    mc_error ce = {0};
    mc_store_close(&st, &ce);
    return s;
}

mc_status mc_concepts_load(const mc_comm *c, const mc_config *cfg, const mc_train_data *td,
                           const mc_str_list *names, mc_concepts **sets, int *n_sets, mc_error *err) {
    *sets = NULL;
    *n_sets = 0;
    int n = names->n > 0 ? names->n : cfg->concepts.n > 0 ? cfg->concepts.n : 1;
    mc_concepts *v = calloc((size_t)n, sizeof *v);
    if (!v) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    mc_text_encoder *enc = NULL;
    mc_status s = MC_OK;
    for (int i = 0; s == MC_OK && i < n; i++) {
        mc_concepts *cs = &v[i];
        const mc_concept_set_cfg *sc = NULL;
        if (names->n > 0) {
            for (int j = 0; j < cfg->concepts.n; j++)
                if (!strcmp(cfg->concepts.v[j].name, names->v[i])) sc = &cfg->concepts.v[j];
            if (!sc) {
                s = MC_FAIL(err, MC_ERR_CONFIG, "concept set '%s' is not in 'concepts'", names->v[i]);
                break;
            }
        } else if (cfg->concepts.n > 0) {
            sc = &cfg->concepts.v[i];
        }
        mc_strlcpy(cs->name, sc ? sc->name : "classes", sizeof cs->name);
        cs->dim = td->clip_dim;
        if (!sc || sc->source == MC_CONCEPTS_CLASSES) {
            cs->texts = calloc((size_t)td->n_classes + 1, sizeof(char *));
            if (!cs->texts) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
            for (int64_t k = 0; s == MC_OK && k < td->n_classes; k++, cs->n++)
                if (!(cs->texts[k] = mc_strdup(td->class_names[k]))) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        } else {
            s = read_concept_file(c, sc->file, cs, err);
        }
        s = mc_comm_agree(c, s, err);
        if (s != MC_OK) break;
        /* Key: CLIP files, prompt, every text. */
        mc_sha256 h;
        mc_sha256_init(&h);
        char head[4096];
        snprintf(head, sizeof head, "miclip-concepts/1\nclip=%s\nprompt=%s\n", td->clip_hash, cfg->align.prompt);
        mc_sha256_update(&h, head, strlen(head));
        for (int64_t k = 0; k < cs->n; k++) mc_sha256_update(&h, cs->texts[k], strlen(cs->texts[k]) + 1);
        uint8_t d[MC_SHA256_BYTES];
        mc_sha256_final(&h, d);
        mc_hex_encode(d, MC_SHA256_BYTES, cs->key);
        cs->key[MC_SHA256_HEX_LEN] = '\0';
        if (!mc_snprintf(cs->path, sizeof cs->path, "%s/concepts/%s-%.16s.h5", cfg->output_dir, cs->name, cs->key)) {
            s = MC_FAIL(err, MC_ERR_ARG, "output path too long under %s", cfg->output_dir);
            break;
        }
        cs->emb = mc_alloc_array((size_t)cs->n, (size_t)cs->dim * sizeof(float));
        s = mc_comm_agree(c, cs->emb ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory for %lld concept embeddings",
                                                        (long long)cs->n), err);
        if (s != MC_OK) break;
        /* Stored already (perhaps by a parallel task)? Another task writing it holds its lock:
         * wait for it rather than embedding twice. */
        for (int attempt = 0; s == MC_OK; attempt++) {
            bool complete = false;
            s = mc_store_peek_complete(c, cs->path, &complete, err);
            if (s != MC_OK) break;
            if (complete) {
                s = read_concept_store(c, cs, err);
                break;
            }
            if (attempt == 0) {
                char dir[MC_PATH_CAP];
                mc_snprintf(dir, sizeof dir, "%s/concepts", cfg->output_dir);
                s = mc_comm_agree(c, c->rank == 0 ? mc_mkdir_p(dir, err) : MC_OK, err);
                if (s == MC_OK) s = embed_concepts(c, cfg, &enc, cs, err);
                if (s != MC_OK) break;
                mc_info0("concepts %s: embedded %lld texts", cs->name, (long long)cs->n);
            }
            s = write_concept_store(c, cfg, cs, td, err);
            if (s == MC_ERR_LOCKED && attempt < 300) {
                mc_info0("concepts %s: another run is writing %s; waiting", cs->name, cs->path);
                sleep(2);
                s = MC_OK;
                continue;
            }
            break;
        }
    }
    mc_text_encoder_free(&enc);
    if (s != MC_OK) {
        mc_concepts_free(&v, n);
        return s;
    }
    *sets = v;
    *n_sets = n;
    return MC_OK;
}

/* ---- units ----------------------------------------------------------------------------------- */

void mc_encoder_weights_free(mc_encoder_weights *w) {
    free(w->w);
    memset(w, 0, sizeof *w);
}

mc_status mc_encoder_weights_load(const mc_comm *c, const mc_config *cfg, const mc_train_data *td,
                                  int64_t seed, const char *layer, int variant, mc_encoder_weights *w,
                                  mc_error *err) {
    memset(w, 0, sizeof *w);
    mc_run_paths p;
    MC_TRY(mc_align_paths(cfg, td->extract_key, seed, layer, variant, &p, err));
    mc_strlcpy(w->key, p.key, sizeof w->key);
    mc_strlcpy(w->path, p.store, sizeof w->path);
    bool complete = false;
    MC_TRY(mc_store_peek_complete(c, p.store, &complete, err));
    if (!complete)
        return MC_FAIL(err, MC_ERR_ARG, "no trained E_n for seed %lld, layer '%s', variant %s (%s); run the "
                       "align stage first", (long long)seed, layer, mc_variant_name(variant), p.store);
    mc_store *st = NULL;
    MC_TRY(mc_store_open(c, p.store, MC_STORE_READ, &st, err));
    mc_store_dataset_info in;
    double scale = 0;
    mc_status s = mc_store_dataset_info_get(st, "W", &in, err);
    if (s == MC_OK && in.ndim != 2) s = MC_FAIL(err, MC_ERR_FORMAT, "%s: W is not a matrix", p.store);
    if (s == MC_OK) s = mc_store_get_attr_f64(st, "/", "logit_scale", &scale, err);
    if (s == MC_OK) {
        w->d = in.shape[0];
        w->n = in.shape[1];
        w->logit_scale = (float)scale;
        if (!(w->w = mc_alloc_array((size_t)(w->d * w->n), sizeof(float)))) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    s = mc_comm_agree(c, s, err);
    if (s == MC_OK) s = mc_store_read_rows(st, "W", MC_DTYPE_F32, 0, w->d, w->w, err);
    mc_store_close(&st, NULL);
    if (s != MC_OK) mc_encoder_weights_free(w);
    return s;
}

bool mc_sae_applies(const mc_config *cfg, const char *layer) {
    return mc_config_has_stage(cfg, MC_STAGE_SAE) && !strcmp(cfg->sae.layer, layer);
}

mc_status mc_unit_set_open(const mc_comm *c, const mc_config *cfg, const mc_train_data *td, int64_t seed,
                           const mc_encoder_weights *w, int kind, mc_unit_set *u, mc_error *err) {
    memset(u, 0, sizeof *u);
    u->kind = kind;
    if (kind == MC_UNIT_NEURON) {
        u->n_units = w->n;
        return MC_OK;
    }
    mc_run_paths p;
    MC_TRY(mc_sae_paths(cfg, td->extract_key, seed, &p, err));
    mc_strlcpy(u->sae_key, p.key, sizeof u->sae_key);
    mc_strlcpy(u->sae_path, p.store, sizeof u->sae_path);
    bool complete = false;
    MC_TRY(mc_store_peek_complete(c, p.store, &complete, err));
    if (!complete)
        return MC_FAIL(err, MC_ERR_ARG, "no trained SAE for seed %lld on layer '%s' (%s); run the sae stage first",
                       (long long)seed, cfg->sae.layer, p.store);
    mc_store *st = NULL;
    MC_TRY(mc_store_open(c, p.store, MC_STORE_READ, &st, err));
    mc_store_dataset_info in;
    mc_status s = mc_store_dataset_info_get(st, "W_dec_T", &in, err);
    if (s == MC_OK && (in.ndim != 2 || in.shape[1] != w->n))
        s = MC_FAIL(err, MC_ERR_SHAPE, "%s: W_dec_T is not [m, %lld] (E_n's input width)", p.store, (long long)w->n);
    if (s == MC_OK) u->n_units = in.shape[0];
    s = mc_comm_agree(c, s, err);
    mc_store_close(&st, NULL);
    return s;
}

void mc_normalize_rows_f(float *x, int64_t rows, int64_t d) {
    for (int64_t i = 0; i < rows; i++) {
        float *r = x + i * d;
        double ss = 0;
        for (int64_t k = 0; k < d; k++) ss += (double)r[k] * r[k];
        double nrm = sqrt(ss);
        if (nrm < 1e-12) nrm = 1e-12;
        for (int64_t k = 0; k < d; k++) r[k] = (float)(r[k] / nrm);
    }
}

mc_status mc_unit_embed(const mc_comm *c, const mc_unit_set *u, const mc_encoder_weights *w, int64_t u0,
                        int64_t u1, float *out, mc_error *err) {
    const int64_t n = w->n, d = w->d, rows = u1 - u0;
    if (u->kind == MC_UNIT_NEURON) {
        for (int64_t i = 0; i < rows; i++)
            for (int64_t k = 0; k < d; k++) out[i * d + k] = w->w[k * n + u0 + i];
        mc_normalize_rows_f(out, rows, d);
        return MC_OK;
    }
    mc_store *st = NULL;
    MC_TRY(mc_store_open(c, u->sae_path, MC_STORE_READ, &st, err));
    float *dec = mc_alloc_array((size_t)(rows > 0 ? rows : 1), (size_t)n * sizeof(float));
    mc_status s = mc_comm_agree(c, dec ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory"), err);
    if (s == MC_OK) s = mc_store_read_rows(st, "W_dec_T", MC_DTYPE_F32, u0, u1, dec, err);
    mc_store_close(&st, NULL);
    /* E_n W_dec[:, i] for fixed blocks of units: the same product whatever the rank count. */
    for (int64_t b = 0; s == MC_OK && b < rows; b += MC_UNIT_BLOCK) {
        int64_t len = rows - b < MC_UNIT_BLOCK ? rows - b : MC_UNIT_BLOCK;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)len, (int)d, (int)n, 1.0f, dec + b * n,
                    (int)n, w->w, (int)n, 0.0f, out + b * d, (int)d);
    }
    free(dec);
    if (s == MC_OK) mc_normalize_rows_f(out, rows, d);
    return s;
}

bool mc_scored_before(const mc_scored *a, const mc_scored *b) {
    return a->score > b->score || (a->score == b->score && a->index < b->index);
}

void mc_top_insert(mc_scored *top, int64_t *n, int64_t cap, float score, int32_t index) {
    mc_scored x = {score, index};
    if (*n == cap && !mc_scored_before(&x, &top[cap - 1])) return;
    int64_t i = *n < cap ? (*n)++ : cap - 1;
    while (i > 0 && mc_scored_before(&x, &top[i - 1])) {
        top[i] = top[i - 1];
        i--;
    }
    top[i] = x;
}

mc_status mc_method_task_finish(const mc_config *cfg, const mc_task *task, const mc_method_task *mt,
                                const char *stage, mc_store **st, mc_status s, mc_error *err) {
    mc_store_provenance prov = {.stage = stage, .config_hash = cfg->hash, .model = mt->w.key,
                                .dataset = mt->td.path, .seed = task->seed, .has_seed = true};
    char key_attr[64];
    snprintf(key_attr, sizeof key_attr, "%s_key", stage);
    if (s == MC_OK) s = mc_store_write_provenance(*st, "/", &prov, err);
    if (s == MC_OK) s = mc_store_set_attr_str(*st, "/", key_attr, mt->key, err);
    if (s == MC_OK) s = mc_store_set_attr_str(*st, "/", "align_store", mt->w.path, err);
    if (s == MC_OK) s = mc_store_set_attr_str(*st, "/", "layer", task->layer, err);
    if (s == MC_OK) s = mc_store_set_attr_str(*st, "/", "variant", mc_variant_name(task->variant), err);
    if (s == MC_OK) s = mc_store_set_complete(*st, "/", err);
    if (*st) {
        mc_error ce = {0};
        mc_status cs = mc_store_close(st, &ce);
        if (s == MC_OK && cs != MC_OK) *err = ce, s = cs;
    }
    if (s == MC_OK)
        mc_info0("%s %s: %d concept set(s) x %d unit kind(s) -> %s", stage, task->id, mt->n_sets,
                 mt->n_kinds, mt->store);
    return s;
}

mc_status mc_sae_load_store(const mc_comm *c, const mc_config *cfg, const char *path, int64_t dim, int64_t seed,
                            mc_sae **out, mc_error *err) {
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
            s = MC_FAIL(err, MC_ERR_SHAPE, "%s: %s does not match the SAE of the config on a %lld-wide layer", path,
                        names[i], (long long)dim);
        if (s == MC_OK) s = mc_store_read_rows(st, names[i], MC_DTYPE_F32, 0, want[i][0], dst[i], err);
    }
    if (st) mc_store_close(&st, NULL);
    s = mc_comm_agree(c, s, err);
    if (s == MC_OK) *out = sae;
    else mc_sae_free(&sae);
    return s;
}
