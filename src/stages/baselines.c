/* baselines.c - the `baselines` stage (paper Appendix D.1): the comparison methods Act-Values
 * and CLIP-Dissect, run on the same training-store activations E_n is trained on.
 *
 * Units are the layer's neurons (the per-image vectors of mc_acts_vectors: the row, the CLS
 * token or the spatial mean) and, on sae.layer, the SAE's top-k codes of those vectors. Unit
 * rows are shared over ranks in fixed blocks of MC_UNIT_BLOCK; every per-unit quantity is
 * computed by the rank that owns the unit in a fixed order (images in index order), and the one
 * cross-unit term (CLIP-Dissect's log p(concept)) is reduced from fixed per-block partials in
 * block order, so the outputs are bitwise identical at any rank count.
 *
 *   act_values    score[u, c] = mean activation of u over the valid training images the target
 *                 predicts as class c (-inf for a class it never predicts). Only the concept set
 *                 of the class names (`source: classes`) is scored.
 *   clip_dissect  soft-WPMI (Oikarinen & Weng 2023): P = softmax over concepts of a x the
 *                 cosines of the images' CLIP embeddings with the prompted concept texts; for
 *                 unit u, its top-K images by activation e_1..e_K with weights p_i falling
 *                 linearly from p_start to p_end; score[u, d] = sum_i log(1 + p_i (P[e_i, d] - 1)
 *                 + min_prob) - lambda log p(d), log p(d) = logmeanexp over units of the first
 *                 term.
 *
 * Output: OUTPUT_DIR/baselines/<task>-<key16>.h5 with the localize layout under localize/ and
 * the describe layout under describe/, the CSV tables, report/baselines/<task>.md fragments
 * and report/baselines.md (docs/baselines.md).
 */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "miclip/plan.h" /* before cblas.h, whose complex.h defines I (a field name in plan.h) */
#include <cblas.h>

#include "baselines_internal.h"
#include "miclip/buf.h"
#include "method/acts.h"
#include "method/concepts.h"
#include "method/extract_key.h"
#include "method/keys.h"
#include "method/method_task.h"
#include "method/similarity.h"
#include "method/task_index.h"
#include "method/train_data.h"
#include "method/training.h"
#include "method/unit_tables.h"
#include "method/units.h"
#include "miclip/checked.h"
#include "miclip/fixsum.h"
#include "miclip/fsutil.h"
#include "miclip/log.h"
#include "miclip/miclip.h"
#include "stages_internal.h"

#define KEY_VERSION "miclip-baselines/3" /* 3: CLIP-Dissect cut totals (cut_totals) */
#define VI_KEY_VERSION "vinterp/1"       /* V-Interp's part of the key (grid, explainer protocol) */
#define BASELINE_PROMPT "{}"     /* concept texts embedded bare (the CLIP-Dissect authors' code) */
#define KEEP_SIM_MAX (1ll << 24) /* the full score matrix is stored up to this size (as describe) */
#define IMG_CHUNK 256            /* images per activation pass */

/* CLIP-Dissect's published defaults (similarity.soft_wpmi of the authors' code, used for all of
 * the paper's results; docs/baselines.md). */
#define CD_TOP_K 100
#define CD_A 10.0
#define CD_LAMBDA 1.0
#define CD_MIN_PROB 1e-7
#define CD_P_START 0.998
#define CD_P_END 0.97

static const mc_scored EMPTY = {-INFINITY, INT32_MAX};

/* ---- one task: inputs and key ------------------------------------------------------------------ */

typedef struct {
    int kind; /* mc_unit_kind */
    int64_t n_units;
    char sae_key[MC_KEY_HEX], sae_path[MC_PATH_CAP];
    bool loc, desc; /* listed in localize.units / describe.units */
} bl_kind;

typedef struct {
    mc_train_data td;
    mc_concepts *sets;
    int n_sets;
    bool *set_loc, *set_desc; /* [n_sets]: listed in localize.concepts / describe.concepts */
    int n_kinds;
    bl_kind kinds[2];
    int64_t dim;     /* the layer's vector width */
    bool sae_tokens; /* the SAE is token-level (sae.input: all): mc_sae_unit_values' mean */
    char key[MC_KEY_HEX];
    char store[MC_PATH_CAP];
    char tables[MC_PATH_CAP];
} bl_task;

static void bl_task_close(bl_task *bt) {
    mc_concepts_free(&bt->sets, bt->n_sets);
    free(bt->set_loc);
    free(bt->set_desc);
    mc_train_data_close(&bt->td);
    memset(bt, 0, sizeof *bt);
}

static bool list_has_str(const mc_str_list *l, const char *s) {
    if (l->n == 0) return true; /* an empty list means every set */
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->v[i], s)) return true;
    return false;
}

static bool list_has_enum(const mc_enum_list *l, int v) {
    for (int i = 0; i < l->n; i++)
        if (l->v[i] == v) return true;
    return false;
}

/* Whether concept set `name` is the class names (`source: classes`, or the implicit set). */
static bool is_class_set(const mc_config *cfg, const char *name) {
    if (cfg->concepts.n == 0) return !strcmp(name, "classes");
    for (int i = 0; i < cfg->concepts.n; i++)
        if (!strcmp(cfg->concepts.v[i].name, name))
            return cfg->concepts.v[i].source == MC_CONCEPTS_CLASSES;
    return false;
}

/* Collective. Opens the train store, the unit kinds and the concept sets of task and computes
 * the key and the output paths. */
static mc_status bl_task_open(const mc_comm *c, const mc_config *cfg, const mc_task *task,
                              bl_task *bt, mc_error *err) {
    memset(bt, 0, sizeof *bt);
    MC_TRY(mc_train_data_open(c, cfg, task->seed, &bt->td, err));
    /* The layer's width, from the dataset's shape (no data read). */
    char name[512];
    mc_store_dataset_info di;
    mc_status s = MC_OK;
    if (!mc_snprintf(name, sizeof name, "acts/%s", task->layer))
        s = MC_FAIL(err, MC_ERR_ARG, "layer name too long: %s", task->layer);
    else if (!mc_store_exists(bt->td.st, name))
        s = MC_FAIL(err, MC_ERR_ARG,
                    "%s: no %s (is layer '%s' in extract.layers of the extract run?)", bt->td.path,
                    name, task->layer);
    if (s == MC_OK) s = mc_store_dataset_info_get(bt->td.st, name, &di, err);
    if (s == MC_OK) bt->dim = di.ndim == 4 ? di.shape[1] : di.shape[di.ndim - 1];
    bt->sae_tokens = cfg->sae.input == MC_SAE_INPUT_ALL;
    s = mc_comm_agree(c, s, err);
    /* Unit kinds: the union of localize.units and describe.units, neurons first. */
    for (int kind = MC_UNIT_NEURON; s == MC_OK && kind <= MC_UNIT_SAE; kind++) {
        bool loc = list_has_enum(&cfg->localize.units, kind),
             desc = list_has_enum(&cfg->describe.units, kind);
        if (!loc && !desc) continue;
        bl_kind *k = &bt->kinds[bt->n_kinds];
        k->kind = kind, k->loc = loc, k->desc = desc;
        if (kind == MC_UNIT_NEURON) {
            k->n_units = bt->dim;
            bt->n_kinds++;
            continue;
        }
        if (task->method == MC_METHOD_NETDISSECT) {
            mc_info0("baselines %s: netdissect scores the layer's neurons only (no SAE features)",
                     task->id);
            continue;
        }
        if (!mc_sae_applies(cfg, task->layer)) {
            mc_info0("baselines %s: no SAE on layer '%s' (sae.layer is '%s'%s); neurons only",
                     task->id, task->layer, cfg->sae.layer,
                     mc_config_has_stage(cfg, MC_STAGE_SAE) ? "" : ", sae stage not listed");
            continue;
        }
        mc_run_paths p;
        s = mc_sae_paths(cfg, bt->td.extract_key, task->seed, &p, err);
        bool complete = false;
        if (s == MC_OK) s = mc_store_peek_complete(c, p.store, &complete, err);
        if (s == MC_OK && !complete)
            s = MC_FAIL(err, MC_ERR_ARG,
                        "no trained SAE for seed %lld on layer '%s' (%s); run the sae stage first",
                        (long long)task->seed, cfg->sae.layer, p.store);
        if (s == MC_OK) {
            mc_strlcpy(k->sae_key, p.key, sizeof k->sae_key);
            mc_strlcpy(k->sae_path, p.store, sizeof k->sae_path);
            k->n_units = cfg->sae.features;
            bt->n_kinds++;
        }
    }
    /* Concept sets: localize.concepts then the describe.concepts not in it. */
    mc_str_list names = {0};
    char **v = calloc((size_t)(cfg->localize.concepts.n + cfg->describe.concepts.n) + 1, sizeof *v);
    if (s == MC_OK && !v) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    if (s == MC_OK && cfg->localize.concepts.n > 0 && cfg->describe.concepts.n > 0) {
        const mc_str_list *ls[2] = {&cfg->localize.concepts, &cfg->describe.concepts};
        for (int l = 0; l < 2; l++)
            for (int i = 0; i < ls[l]->n; i++) {
                bool dup = false;
                for (int j = 0; j < names.n; j++) dup |= !strcmp(v[j], ls[l]->v[i]);
                if (!dup) v[names.n++] = ls[l]->v[i];
            }
        names.v = v;
    }
    /* The concepts are embedded as the bare texts, as the CLIP-Dissect authors embed their concept
     * sets (utils.save_activations tokenizes "{}".format(word)); Act-Values reads only the texts. */
    mc_config bare = *cfg;
    /* V-Interp compares its descriptions with the concepts as MiCLIP embeds them (align.prompt). */
    if (task->method != MC_METHOD_VINTERP) bare.align.prompt = (char *)BASELINE_PROMPT;
    /* texts and keys only: the embeddings are read once the task is known to be incomplete */
    if (s == MC_OK) s = mc_concepts_open(c, &bare, &bt->td, &names, &bt->sets, &bt->n_sets, err);
    free(v);
    if (s == MC_OK) {
        bt->set_loc = calloc((size_t)bt->n_sets + 1, sizeof(bool));
        bt->set_desc = calloc((size_t)bt->n_sets + 1, sizeof(bool));
        if (!bt->set_loc || !bt->set_desc) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        for (int i = 0; s == MC_OK && i < bt->n_sets; i++) {
            bt->set_loc[i] = list_has_str(&cfg->localize.concepts, bt->sets[i].name);
            bt->set_desc[i] = list_has_str(&cfg->describe.concepts, bt->sets[i].name);
        }
    }
    s = mc_comm_agree(c, s, err);
    if (s == MC_OK) {
        mc_buf b = {0};
        mc_buf_printf(
            &b, "%s\ncode=%s\nmethod=%s\nextract=%s\nlayer=%s\nloc_tau=%lld\ndesc_tau=%lld\n",
            KEY_VERSION, MICLIP_CACHE_VERSION, mc_method_name(task->method), bt->td.extract_key,
            task->layer, (long long)cfg->localize.tau, (long long)cfg->describe.tau);
        if (task->method == MC_METHOD_CLIP_DISSECT)
            mc_buf_printf(
                &b, "soft_wpmi=%d:%.17g:%.17g:%.17g:%.17g:%.17g\nties=expected\nprompt=%s\n",
                CD_TOP_K, CD_A, CD_LAMBDA, CD_MIN_PROB, CD_P_START, CD_P_END, BASELINE_PROMPT);
        if (task->method == MC_METHOD_NETDISSECT) {
            char md[MC_PATH_CAP];
            if (!mc_netdissect_masks_dir(cfg, md, sizeof md)) md[0] = 0;
            mc_buf_printf(
                &b,
                "netdissect=quantile:%.17g:exact-linear:bilinear-align_corners-false\nmasks=%s\n",
                MC_NETDISSECT_QUANTILE, md);
        }
        if (task->method == MC_METHOD_VINTERP) {
            /* The explainer's command, or the descriptions file's contents: a new file or command
             * gives a new store. */
            char fh[MC_KEY_HEX] = "";
            const char *df = cfg->baselines.vinterp_descriptions;
            if (df[0]) {
                char *txt = NULL;
                size_t n = 0;
                s = mc_read_file(df, 256u << 20, &txt, &n, err);
                if (s == MC_OK) mc_key_of(txt, fh); /* NUL-terminated by mc_read_file */
                free(txt);
            }
            mc_buf_printf(&b, "%s\nimages=%lld\nexplainer=%s\ndescriptions=%s:%s\nprompt=%s\n",
                          VI_KEY_VERSION, (long long)cfg->baselines.vinterp_images,
                          cfg->baselines.vinterp_explainer, df, fh, cfg->align.prompt);
        }
        for (int k = 0; k < bt->n_kinds; k++)
            mc_buf_printf(&b, "units=%s:%s:%d%d\n", mc_unit_kind_name(bt->kinds[k].kind),
                          bt->kinds[k].sae_key, bt->kinds[k].loc, bt->kinds[k].desc);
        for (int k = 0; k < bt->n_sets; k++)
            mc_buf_printf(&b, "set=%s:%s:%d%d\n", bt->sets[k].name, bt->sets[k].key, bt->set_loc[k],
                          bt->set_desc[k]);
        if (b.oom)
            s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        else
            mc_key_of(b.p, bt->key);
        mc_buf_free(&b);
    }
    s = mc_comm_agree(c, s, err); /* the descriptions file is read by every rank */
    if (s == MC_OK && !(mc_snprintf(bt->store, sizeof bt->store, "%s/baselines/%s-%.16s.h5",
                                    cfg->output_dir, task->id, bt->key) &&
                        mc_snprintf(bt->tables, sizeof bt->tables, "%s/tables", cfg->output_dir)))
        s = MC_FAIL(err, MC_ERR_ARG, "output path too long under %s", cfg->output_dir);
    if (s != MC_OK) bl_task_close(bt);
    return s;
}

/* ---- activation statistics of this rank's units ------------------------------------------------ */

typedef struct {
    int64_t n_units, u0, u1, rows;
    int64_t n_classes;
    double *class_sum; /* [rows * C]: activation summed over the images predicted as each class */
    int64_t *class_n;  /* [C] */
    int64_t top_k;     /* CLIP-Dissect's probe images per unit (0: not needed) */
    mc_scored *top;    /* [rows * top_k]: (activation, image), best first */
    float *lo;         /* [rows]: the lowest activation over the valid images (top_k > 0) */
} unit_stats;

static void unit_stats_free(unit_stats *us) {
    free(us->class_sum);
    free(us->class_n);
    free(us->top);
    free(us->lo);
    memset(us, 0, sizeof *us);
}

/* The rows [u0, u1) a rank owns: whole blocks of MC_UNIT_BLOCK (as mc_similarity). */
static void unit_rows(int64_t U, int rank, int size, int64_t *u0, int64_t *u1) {
    int64_t nb = (U + MC_UNIT_BLOCK - 1) / MC_UNIT_BLOCK, b0, b1;
    mc_shard_range(nb, rank, size, &b0, &b1);
    *u0 = b0 * MC_UNIT_BLOCK < U ? b0 * MC_UNIT_BLOCK : U;
    *u1 = b1 * MC_UNIT_BLOCK < U ? b1 * MC_UNIT_BLOCK : U;
}

void mc_baselines_unit_rows(int64_t U, int rank, int size, int64_t *u0, int64_t *u1) {
    unit_rows(U, rank, size, u0, u1);
}

/* The valid training images in index order: *n of them, into a new array *img. */
static mc_status valid_images(const mc_train_data *td, int64_t **img, int64_t *n, mc_error *err) {
    *n = 0;
    for (int64_t i = 0; i < td->n_img; i++) *n += td->valid[i] != 0;
    *img = mc_alloc_array((size_t)*n + 1, sizeof(int64_t));
    if (!*img)
        return MC_FAIL(err, MC_ERR_NOMEM, "out of memory for %lld image indices", (long long)*n);
    for (int64_t i = 0, j = 0; i < td->n_img; i++)
        if (td->valid[i]) (*img)[j++] = i;
    return MC_OK;
}

/* The SAE codes of every valid training image, valid images in index order, k (index, value)
 * pairs each. */
typedef struct {
    int64_t n;
    int k;
    int32_t *idx;
    float *val;
    mc_sae *token_sae; /* a token-level SAE (sae.input: all): no shared codes; each pass takes
                        * a feature's per-image value, the mean over tokens, chunk by chunk */
} sae_codes;

static void sae_codes_free(sae_codes *sc) {
    free(sc->idx), free(sc->val);
    memset(sc, 0, sizeof *sc);
}

/* Collective. Encodes every valid training image once: the images are cut into the chunks of
 * IMG_CHUNK an activation pass walks, chunk q is encoded by rank q mod P and broadcast. Each
 * code is the float mc_sae_encode gives for the same chunk on any rank, so the activations are
 * those of every rank encoding every image (the stage's first versions), at 1/P of the work and
 * once per unit kind instead of once per pass. */
static mc_status sae_codes_compute(const mc_comm *c, const bl_task *bt, mc_acts *acts, mc_sae *sae,
                                   sae_codes *sc, mc_error *err) {
    memset(sc, 0, sizeof *sc);
    if (bt->sae_tokens) { /* k codes per token, not per image: nothing to share */
        sc->token_sae = sae;
        return MC_OK;
    }
    const mc_train_data *td = &bt->td;
    const int k = mc_sae_get_config(sae)->k;
    int64_t n = 0, *img = NULL;
    mc_status s = valid_images(td, &img, &n, err);
    float *x = mc_alloc_array(IMG_CHUNK, (size_t)acts->dim * sizeof(float));
    sc->n = n, sc->k = k;
    sc->idx = mc_alloc_array((size_t)(n * k + 1), sizeof(int32_t));
    sc->val = mc_alloc_array((size_t)(n * k + 1), sizeof(float));
    if (s == MC_OK && !(x && sc->idx && sc->val))
        s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory for the SAE codes of %lld images",
                    (long long)n);
    if ((double)IMG_CHUNK * k > 2147483647.0)
        s = MC_FAIL(err, MC_ERR_UNSUPPORTED, "SAE k %d too large", k);
    const int64_t nchunk = (n + IMG_CHUNK - 1) / IMG_CHUNK;
    for (int64_t q = c->rank; s == MC_OK && q < nchunk; q += c->size) {
        int64_t r0 = q * IMG_CHUNK, len = n - r0 < IMG_CHUNK ? n - r0 : IMG_CHUNK;
        s = mc_acts_vectors(acts, img + r0, len, x, err);
        if (s == MC_OK) mc_sae_encode(sae, x, len, sc->idx + r0 * k, sc->val + r0 * k);
    }
    s = mc_comm_agree(c, s, err);
    for (int64_t q = 0; s == MC_OK && q < nchunk; q++) {
        int64_t r0 = q * IMG_CHUNK, len = n - r0 < IMG_CHUNK ? n - r0 : IMG_CHUNK;
        int root = (int)(q % c->size);
        if (MPI_Bcast(sc->idx + r0 * k, (int)(len * k), MPI_INT32_T, root, c->comm) !=
                MPI_SUCCESS ||
            MPI_Bcast(sc->val + r0 * k, (int)(len * k), MPI_FLOAT, root, c->comm) != MPI_SUCCESS)
            s = MC_FAIL(err, MC_ERR_MPI, "MPI_Bcast of SAE codes failed");
    }
    free(img), free(x);
    if (s != MC_OK) sae_codes_free(sc);
    return s;
}

/* One pass over the valid training images in index order, IMG_CHUNK at a time: the activations
 * a[n * rows] of the units [u0, u0 + rows) on the chunk's images img[n] (neurons: every rank
 * reads every image's vector; SAE units: the shared codes of sae_codes_compute). Both passes of
 * CLIP-Dissect chunk the images alike, so a unit's activation on an image is the same float in
 * each. */
typedef struct {
    const bl_task *bt;
    mc_acts *acts;
    const sae_codes *codes; /* SAE units: the codes of every valid image (NULL: neurons) */
    int kk;
    int64_t u0, rows, D, next, pos; /* pos: valid images passed so far */
    int64_t *img;
    float *x, *a;
} act_pass;

static void act_pass_close(act_pass *p) {
    free(p->img), free(p->x), free(p->a);
    memset(p, 0, sizeof *p);
}

static mc_status act_pass_open(const bl_task *bt, mc_acts *acts, const sae_codes *codes, int64_t u0,
                               int64_t rows, act_pass *p, mc_error *err) {
    memset(p, 0, sizeof *p);
    p->bt = bt, p->acts = acts, p->codes = codes, p->u0 = u0, p->rows = rows, p->D = acts->dim;
    p->kk = codes ? codes->k : 0;
    /* x: a chunk's vectors (neurons), or every feature's values (m per image, a token SAE) */
    const bool dense = !codes || codes->token_sae;
    const int64_t w = codes && codes->token_sae ? mc_sae_get_config(codes->token_sae)->m : p->D;
    p->img = mc_alloc_array(IMG_CHUNK, sizeof(int64_t));
    p->x = dense ? mc_alloc_array(IMG_CHUNK, (size_t)w * sizeof(float)) : NULL;
    p->a = mc_alloc_array(IMG_CHUNK, (size_t)(rows + 1) * sizeof(float));
    if (!p->img || (dense && !p->x) || !p->a) {
        act_pass_close(p);
        return MC_FAIL(err, MC_ERR_NOMEM, "out of memory for an activation pass");
    }
    return MC_OK;
}

/* The next chunk: *n images (0 at the end). */
static mc_status act_pass_next(act_pass *p, int64_t *n_out, mc_error *err) {
    const mc_train_data *td = &p->bt->td;
    const int64_t rows = p->rows, D = p->D;
    int64_t n = 0;
    for (; p->next < td->n_img && n < IMG_CHUNK; p->next++)
        if (td->valid[p->next]) p->img[n++] = p->next;
    *n_out = n;
    if (n == 0) return MC_OK;
    if (p->codes && p->codes->token_sae) {
        /* Every feature's per-image value: the mean of its codes over the image's tokens. */
        mc_sae *sae = p->codes->token_sae;
        MC_TRY(mc_sae_unit_values(p->acts, sae, true, p->img, n, p->x, NULL, NULL, err));
        const int64_t m = mc_sae_get_config(sae)->m;
        for (int64_t r = 0; r < n; r++)
            memcpy(p->a + r * rows, p->x + r * m + p->u0, (size_t)rows * sizeof(float));
    } else if (p->codes) {
        const int32_t *idx = p->codes->idx + p->pos * p->kk;
        const float *val = p->codes->val + p->pos * p->kk;
        p->pos += n;
        memset(p->a, 0, (size_t)(n * rows) * sizeof(float));
        for (int64_t r = 0; r < n; r++)
            for (int q = 0; q < p->kk; q++) {
                int64_t u = idx[r * p->kk + q];
                if (u >= p->u0 && u < p->u0 + rows)
                    p->a[r * rows + (u - p->u0)] = val[r * p->kk + q];
            }
    } else {
        MC_TRY(mc_acts_vectors(p->acts, p->img, n, p->x, err));
        for (int64_t r = 0; r < n; r++)
            for (int64_t u = 0; u < rows; u++) p->a[r * rows + u] = p->x[r * D + p->u0 + u];
    }
    return MC_OK;
}

/* Collective. One pass over the valid training images in index order: every rank reads every
 * image's vector (or its shared SAE code) and accumulates its own units. */
static mc_status unit_stats_compute(const mc_comm *c, const bl_task *bt, mc_acts *acts,
                                    const bl_kind *k, const sae_codes *codes, int64_t top_k,
                                    unit_stats *us, mc_error *err) {
    memset(us, 0, sizeof *us);
    const int64_t U = k->n_units, C = bt->td.n_classes;
    us->n_units = U, us->n_classes = C, us->top_k = top_k;
    unit_rows(U, c->rank, c->size, &us->u0, &us->u1);
    const int64_t rows = us->rows = us->u1 - us->u0;
    us->class_sum = mc_calloc_array((size_t)(rows * C + 1), sizeof(double));
    us->class_n = mc_calloc_array((size_t)C + 1, sizeof(int64_t));
    if (top_k > 0) us->top = mc_alloc_array((size_t)(rows * top_k + 1), sizeof(mc_scored));
    if (top_k > 0) us->lo = mc_alloc_array((size_t)rows + 1, sizeof(float));
    int64_t *cnt = mc_calloc_array((size_t)rows + 1, sizeof(int64_t));
    mc_status s = MC_OK;
    if (!us->class_sum || !us->class_n || (top_k > 0 && (!us->top || !us->lo)) || !cnt)
        s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory for the statistics of %lld units",
                    (long long)U);
    act_pass p;
    memset(&p, 0, sizeof p);
    if (s == MC_OK) s = act_pass_open(bt, acts, codes, us->u0, rows, &p, err);
    s = mc_comm_agree(c, s, err);
    for (int64_t i = 0; s == MC_OK && i < rows * top_k; i++) us->top[i] = EMPTY;
    for (int64_t u = 0; s == MC_OK && top_k > 0 && u < rows; u++) us->lo[u] = INFINITY;
    /* A rank without units has nothing to accumulate (the pass has no collective inside). */
    for (int64_t n = 1; s == MC_OK && rows > 0 && n > 0;) {
        s = act_pass_next(&p, &n, err);
        for (int64_t r = 0; s == MC_OK && r < n; r++) {
            int32_t cl = bt->td.pred[p.img[r]];
            bool in = cl >= 0 && cl < C;
            if (in) us->class_n[cl]++;
            for (int64_t u = 0; u < rows; u++) {
                float v = p.a[r * rows + u];
                if (in) us->class_sum[u * C + cl] += v;
                if (top_k > 0) {
                    mc_top_insert(us->top + u * top_k, &cnt[u], top_k, v, (int32_t)p.img[r]);
                    if (v < us->lo[u]) us->lo[u] = v;
                }
            }
        }
    }
    act_pass_close(&p);
    free(cnt);
    s = mc_comm_agree(c, s, err);
    if (s != MC_OK) unit_stats_free(us);
    return s;
}

/* ---- scores of this rank's units for one concept set ------------------------------------------- */

/* Index of the class named text (case-insensitive), or -1. */
static int64_t class_index(const mc_train_data *td, const char *text) {
    for (int64_t j = 0; j < td->n_classes; j++)
        if (!strcasecmp(td->class_names[j], text)) return j;
    return -1;
}

/* act_values: S[rows x Cn] = the mean activation of the class each concept names. */
static mc_status act_values_scores(const bl_task *bt, const mc_concepts *cs, const unit_stats *us,
                                   float *S, mc_error *err) {
    const int64_t C = us->n_classes;
    for (int64_t j = 0; j < cs->n; j++) {
        int64_t cl = class_index(&bt->td, cs->texts[j]);
        if (cl < 0)
            return MC_FAIL(err, MC_ERR_FORMAT,
                           "concept set '%s': '%s' is no class of the target (%s)", cs->name,
                           cs->texts[j], bt->td.path);
        for (int64_t u = 0; u < us->rows; u++)
            S[u * cs->n + j] = us->class_n[cl]
                                   ? (float)(us->class_sum[u * C + cl] / (double)us->class_n[cl])
                                   : -INFINITY;
    }
    return MC_OK;
}

/* MPI reduction helper: the block partials (max, sum of exp(x - max)) of log p(d | u) combined
 * in block order. Collective. */
static mc_status log_p_concept(const mc_comm *c, const unit_stats *us, const double *lpde,
                               int64_t Cn, double *lpd, mc_error *err) {
    const int64_t U = us->n_units, nb = (U + MC_UNIT_BLOCK - 1) / MC_UNIT_BLOCK;
    const int64_t my_b0 = us->u0 / MC_UNIT_BLOCK,
                  my_nb = (us->rows + MC_UNIT_BLOCK - 1) / MC_UNIT_BLOCK;
    double *part = mc_alloc_array((size_t)(nb * Cn * 2 + 1), sizeof(double));
    int *cnt = calloc((size_t)c->size, sizeof(int)), *dsp = calloc((size_t)c->size, sizeof(int));
    mc_status s = part && cnt && dsp ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    if ((double)nb * (double)Cn * 2.0 > 2147483647.0)
        s = MC_FAIL(err, MC_ERR_UNSUPPORTED, "too many units x concepts");
    s = mc_comm_agree(c, s, err);
    if (s == MC_OK) {
        for (int64_t b = 0; b < my_nb; b++) {
            int64_t r0 = b * MC_UNIT_BLOCK,
                    r1 = r0 + MC_UNIT_BLOCK < us->rows ? r0 + MC_UNIT_BLOCK : us->rows;
            double *m = part + (my_b0 + b) * Cn * 2, *z = m + Cn;
            for (int64_t j = 0; j < Cn; j++) {
                double mx = -INFINITY, sum = 0;
                for (int64_t r = r0; r < r1; r++) mx = fmax(mx, lpde[r * Cn + j]);
                for (int64_t r = r0; r < r1; r++) sum += exp(lpde[r * Cn + j] - mx);
                m[j] = mx, z[j] = sum;
            }
        }
        for (int q = 0; q < c->size; q++) {
            int64_t a0, a1;
            unit_rows(U, q, c->size, &a0, &a1);
            int64_t qb0 = a0 / MC_UNIT_BLOCK, qnb = (a1 - a0 + MC_UNIT_BLOCK - 1) / MC_UNIT_BLOCK;
            cnt[q] = (int)(qnb * Cn * 2), dsp[q] = (int)(qb0 * Cn * 2);
        }
        if (MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, part, cnt, dsp, MPI_DOUBLE,
                           c->comm) != MPI_SUCCESS)
            s = MC_FAIL(err, MC_ERR_MPI, "MPI_Allgatherv of the log p(concept) partials failed");
    }
    for (int64_t j = 0; s == MC_OK && j < Cn; j++) {
        double mx = -INFINITY, sum = 0;
        for (int64_t b = 0; b < nb; b++) mx = fmax(mx, part[b * Cn * 2 + j]);
        for (int64_t b = 0; b < nb; b++)
            sum += part[b * Cn * 2 + Cn + j] * exp(part[b * Cn * 2 + j] - mx);
        lpd[j] = mx + log(sum) - log((double)U);
    }
    free(part), free(cnt), free(dsp);
    return s;
}

/* The softmax over concepts of a x the cosines q[Cn] (float32, as the authors' code computes the
 * cosines), in double: P[Cn]. */
static void concept_softmax(const float *q, int64_t Cn, double *P) {
    double mx = -INFINITY, z = 0;
    for (int64_t j = 0; j < Cn; j++) mx = fmax(mx, CD_A * (double)q[j]);
    for (int64_t j = 0; j < Cn; j++) z += P[j] = exp(CD_A * (double)q[j] - mx);
    for (int64_t j = 0; j < Cn; j++) P[j] /= z;
}

/* The term of an image with concept probabilities P in probe slot i of weight wi. */
static inline double slot_term(double wi, double p) {
    return log(1.0 + wi * (p - 1.0) + CD_MIN_PROB);
}

/* Collective. The cut totals Z[(i - a0) * Cn + j] = sum over every valid training image x of
 * R_x[i, j], R_x[i, j] = sum over slots s >= i of slot_term(w_s, P[x, j]), for i in [a0, K).
 * A unit whose cut value is its lowest activation has every image outside its top list in its
 * cut group (an SAE feature firing on fewer than K images: all its zeros), so its cut sum is
 * Z minus its top images' terms instead of a sum over ~all images per unit: the units x images
 * x concepts product becomes images x slots x concepts, once per task, split over the ranks.
 * The images go in the chunks of an activation pass (the same cosines as its sgemm), chunk q on
 * rank q mod P; each chunk is summed in double in image order and added in fixed point
 * (fixsum.h), so Z is the same bits at any rank count. */
static mc_status cut_totals(const mc_comm *c, const bl_task *bt, mc_acts *emb, const float *T,
                            int64_t Cn, int64_t K, int64_t a0, const double *w, double *Z,
                            mc_error *err) {
    const int64_t D = emb->dim, na = K - a0;
    int64_t n = 0, *img = NULL;
    mc_status s = valid_images(&bt->td, &img, &n, err);
    float *E = mc_alloc_array(IMG_CHUNK, (size_t)D * sizeof(float));
    float *Q = mc_alloc_array(IMG_CHUNK, (size_t)Cn * sizeof(float));
    double *g = mc_alloc_array((size_t)Cn, sizeof(double));
    double *R = mc_alloc_array((size_t)(na + 1), (size_t)Cn * sizeof(double));
    double *part = mc_alloc_array((size_t)na, (size_t)Cn * sizeof(double));
    mc_fix *acc = mc_calloc_array((size_t)na, (size_t)Cn * sizeof(mc_fix));
    if (s == MC_OK && !(E && Q && g && R && part && acc))
        s = MC_FAIL(err, MC_ERR_NOMEM,
                    "out of memory for the cut totals (%lld slots x %lld concepts)", (long long)na,
                    (long long)Cn);
    s = mc_comm_agree(c, s, err);
    const int64_t nchunk = (n + IMG_CHUNK - 1) / IMG_CHUNK;
    for (int64_t q = c->rank; s == MC_OK && q < nchunk; q += c->size) {
        const int64_t r0 = q * IMG_CHUNK, len = n - r0 < IMG_CHUNK ? n - r0 : IMG_CHUNK;
        s = mc_acts_vectors(emb, img + r0, len, E, err);
        if (s != MC_OK) break;
        mc_normalize_rows_f(E, len, D);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)len, (int)Cn, (int)D, 1.0f, E,
                    (int)D, T, (int)D, 0.0f, Q, (int)Cn);
        memset(part, 0, (size_t)(na * Cn) * sizeof(double));
        memset(R + na * Cn, 0, (size_t)Cn * sizeof(double));
        for (int64_t r = 0; r < len; r++) {
            concept_softmax(Q + r * Cn, Cn, g);
            for (int64_t i = na - 1; i >= 0; i--)
                for (int64_t j = 0; j < Cn; j++) {
                    R[i * Cn + j] = R[(i + 1) * Cn + j] + slot_term(w[a0 + i], g[j]);
                    part[i * Cn + j] += R[i * Cn + j];
                }
        }
        for (int64_t i = 0; i < na * Cn; i++) {
            mc_fix f;
            if (!mc_fix_from_double(part[i], &f)) {
                s = MC_FAIL(err, MC_ERR_INTERNAL, "clip_dissect: cut total %g out of range",
                            part[i]);
                break;
            }
            acc[i] += f;
        }
    }
    s = mc_comm_agree(c, s, err);
    if (s == MC_OK) s = mc_comm_agree(c, mc_fix_allreduce(c, acc, na * Cn, err), err);
    for (int64_t i = 0; s == MC_OK && i < na * Cn; i++) Z[i] = mc_fix_to_double(acc[i]);
    free(img), free(E), free(Q), free(g), free(R), free(part), free(acc);
    return s;
}

/* prod[j] = the product over slots i in [a, K) of 1 + w_i (p[j] - 1) + min_prob, so that log(prod)
 * is the suffix sum of slot_term at a with one log instead of K - a. Each factor lies in
 * [1 - p_start + min_prob, 1 + min_prob] = [0.0020001, 1.0000001] and there are at most
 * CD_TOP_K = 100 of them: the product stays above 0.002^100 ~ 1e-270, a normal double. */
_Static_assert(CD_TOP_K <= 100, "slot_product: more than 100 factors of 0.002 may underflow");
static void slot_product(const double *w, int64_t a, int64_t K, const double *p, int64_t Cn,
                         double *prod) {
    for (int64_t j = 0; j < Cn; j++) prod[j] = 1.0;
    for (int64_t i = K - 1; i >= a; i--) {
        const double wi = w[i];
        for (int64_t j = 0; j < Cn; j++) prod[j] *= 1.0 + wi * (p[j] - 1.0) + CD_MIN_PROB;
    }
}

/* clip_dissect: soft-WPMI of this rank's units with the concepts of cs. Collective.
 *
 * The authors' soft_wpmi takes each unit's top_k images with torch.topk, which leaves the order
 * of equal activations unspecified: a unit that fires on fewer than top_k images gets whichever
 * non-firing images the sort leaves first (for a class-sorted store, the first classes). Here
 * every group of equal activations that reaches into the top_k slots enters at its expected
 * value over a uniformly random order of the probe images: slot i, held by a group G, adds the
 * mean over x in G of log(1 + p_i (P[x, d] - 1) + min_prob). A unit without ties gets exactly the
 * authors' sum; the result does not depend on the order of the store. The group at the cut (the
 * value of the top_k-th image, from slot a on) can reach beyond the top list: its members'
 * suffix sums R_x[a] = sum_{i >= a} of their slot terms are summed and counted. When the cut
 * value is the unit's lowest, the group is every image outside the slots [0, a), and its sum is
 * the cut total of cut_totals minus those images' suffix sums; otherwise (a neuron: one image,
 * or a few, at the cut) a second pass over the images sums the group's members directly. */
static mc_status clip_dissect_scores(const mc_comm *c, const bl_task *bt, const mc_concepts *cs,
                                     mc_acts *emb, mc_acts *acts, const sae_codes *codes,
                                     const unit_stats *us, float *S, mc_error *err) {
    const int64_t Cn = cs->n, P = emb->dim, K = us->top_k, rows = us->rows;
    const int64_t NE = K > IMG_CHUNK ? K : IMG_CHUNK;
    int64_t n_valid = 0;
    for (int64_t i = 0; i < bt->td.n_img; i++) n_valid += bt->td.valid[i] != 0;
    float *T = mc_alloc_array((size_t)Cn, (size_t)P * sizeof(float));
    float *E = mc_alloc_array((size_t)NE, (size_t)P * sizeof(float));
    float *Q = mc_alloc_array((size_t)NE, (size_t)Cn * sizeof(float));
    double *Pr = mc_alloc_array((size_t)K, (size_t)Cn * sizeof(double));
    double *R = mc_alloc_array((size_t)(K + 1), (size_t)Cn * sizeof(double));
    double *g = mc_alloc_array((size_t)Cn, sizeof(double));
    double *lpde = mc_alloc_array((size_t)(rows * Cn + 1), sizeof(double));
    int64_t *dix = mc_alloc_array((size_t)rows + 1, sizeof(int64_t)); /* row of cut, or -1 */
    double *cut = NULL; /* [direct units x Cn]: the cut sums of the second pass */
    int64_t *cut_n = mc_calloc_array((size_t)rows + 1, sizeof(int64_t));
    int64_t *cut_a = mc_alloc_array((size_t)rows + 1, sizeof(int64_t));
    float *cut_v = mc_alloc_array((size_t)rows + 1, sizeof(float));
    bool *whole = mc_alloc_array((size_t)rows + 1, sizeof(bool)); /* cut group = all but top */
    double *lpd = mc_alloc_array((size_t)Cn, sizeof(double));
    double *w = mc_alloc_array((size_t)K, sizeof(double));
    int64_t *img = mc_alloc_array((size_t)K, sizeof(int64_t));
    double *Z = NULL;
    mc_status s = T && E && Q && Pr && R && g && lpde && dix && cut_n && cut_a && cut_v && whole &&
                          lpd && w && img
                      ? MC_OK
                      : MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    if (s == MC_OK && cs->dim != P)
        s = MC_FAIL(err, MC_ERR_SHAPE,
                    "concept set '%s': text embeddings of width %lld, image embeddings %lld",
                    cs->name, (long long)cs->dim, (long long)P);
    act_pass ap;
    memset(&ap, 0, sizeof ap);
    if (s == MC_OK) s = act_pass_open(bt, acts, codes, us->u0, rows, &ap, err);
    s = mc_comm_agree(c, s, err);
    /* Each unit's cut: its first slot a and value; the lowest a of the whole-group units. */
    int64_t a0 = K, n_direct = 0;
    if (s == MC_OK) {
        memcpy(T, cs->emb, (size_t)(Cn * P) * sizeof(float));
        mc_normalize_rows_f(T, Cn, P);
        for (int64_t i = 0; i < K; i++)
            w[i] = CD_P_START - (double)i / (double)K * (CD_P_START - CD_P_END);
        for (int64_t u = 0; u < rows; u++) {
            const mc_scored *top = us->top + u * K;
            int64_t a = K - 1;
            while (a > 0 && top[a - 1].score == top[K - 1].score) a--;
            cut_a[u] = a, cut_v[u] = top[K - 1].score;
            whole[u] = cut_v[u] == us->lo[u];
            dix[u] = whole[u] ? -1 : n_direct++;
            if (whole[u] && a < a0) a0 = a;
        }
        cut = mc_calloc_array((size_t)(n_direct * Cn + 1), sizeof(double));
        if (!cut) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        long long l = a0, m = K;
        if (MPI_Allreduce(&l, &m, 1, MPI_LONG_LONG, MPI_MIN, c->comm) != MPI_SUCCESS)
            s = MC_FAIL(err, MC_ERR_MPI, "MPI_Allreduce of the cut slots failed");
        a0 = m;
    }
    s = mc_comm_agree(c, s, err);
    if (s == MC_OK && a0 < K) {
        Z = mc_alloc_array((size_t)(K - a0), (size_t)Cn * sizeof(double));
        s = mc_comm_agree(c, Z ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory"), err);
        if (s == MC_OK) s = cut_totals(c, bt, emb, T, Cn, K, a0, w, Z, err);
    }
    /* Slots [0, cut_a): the groups of equal activations wholly inside the top list. */
    for (int64_t u = 0; s == MC_OK && u < rows; u++) {
        const mc_scored *top = us->top + u * K;
        const int64_t a = cut_a[u];
        double *l = lpde + u * Cn;
        for (int64_t j = 0; j < Cn; j++) l[j] = 0;
        if (a > 0) {
            for (int64_t i = 0; i < a; i++) img[i] = top[i].index;
            s = mc_acts_vectors(emb, img, a, E, err);
            if (s != MC_OK) break;
            mc_normalize_rows_f(E, a, P);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)a, (int)Cn, (int)P, 1.0f, E,
                        (int)P, T, (int)P, 0.0f, Q, (int)Cn);
            for (int64_t i = 0; i < a; i++) concept_softmax(Q + i * Cn, Cn, Pr + i * Cn);
        }
        for (int64_t g0 = 0, g1; g0 < a; g0 = g1) {
            for (g1 = g0 + 1; g1 < a && top[g1].score == top[g0].score;) g1++;
            if (g1 == g0 + 1) { /* one image in its slot: the authors' term */
                for (int64_t j = 0; j < Cn; j++) l[j] += slot_term(w[g0], Pr[g0 * Cn + j]);
                continue;
            }
            for (int64_t j = 0; j < Cn; j++) g[j] = 0;
            for (int64_t x = g0; x < g1; x++)
                for (int64_t i = g0; i < g1; i++)
                    for (int64_t j = 0; j < Cn; j++) g[j] += slot_term(w[i], Pr[x * Cn + j]);
            for (int64_t j = 0; j < Cn; j++) l[j] += g[j] / (double)(g1 - g0);
        }
        if (!whole[u]) continue;
        /* The cut group is every other image: the cut total less the top images' suffix sums,
         * each the log of a product (slot_product), one log per image and concept. */
        for (int64_t j = 0; j < Cn; j++) g[j] = 0;
        for (int64_t x = 0; x < a; x++) {
            slot_product(w, a, K, Pr + x * Cn, Cn, R);
            for (int64_t j = 0; j < Cn; j++) g[j] += log(R[j]);
        }
        cut_n[u] = n_valid - a;
        for (int64_t j = 0; j < Cn; j++) l[j] += (Z[(a - a0) * Cn + j] - g[j]) / (double)cut_n[u];
    }
    s = mc_comm_agree(c, s, err);
    /* Slots [cut_a, K) of the other units: every image whose activation equals the cut value. */
    for (int64_t n = 1; s == MC_OK && rows > 0 && n > 0;) {
        s = act_pass_next(&ap, &n, err);
        if (s != MC_OK || n == 0) break;
        bool any = false;
        for (int64_t r = 0; r < n && !any; r++)
            for (int64_t u = 0; u < rows && !any; u++)
                any = !whole[u] && ap.a[r * rows + u] == cut_v[u];
        if (!any) continue; /* no image of this chunk is at a direct unit's cut */
        s = mc_acts_vectors(emb, ap.img, n, E, err);
        if (s != MC_OK) break;
        mc_normalize_rows_f(E, n, P);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)Cn, (int)P, 1.0f, E,
                    (int)P, T, (int)P, 0.0f, Q, (int)Cn);
        for (int64_t r = 0; r < n; r++) {
            int64_t amin = K;
            for (int64_t u = 0; u < rows; u++)
                if (!whole[u] && ap.a[r * rows + u] == cut_v[u] && cut_a[u] < amin) amin = cut_a[u];
            if (amin == K) continue;
            concept_softmax(Q + r * Cn, Cn, g);
            for (int64_t j = 0; j < Cn; j++) R[K * Cn + j] = 0;
            for (int64_t i = K - 1; i >= amin; i--)
                for (int64_t j = 0; j < Cn; j++)
                    R[i * Cn + j] = R[(i + 1) * Cn + j] + slot_term(w[i], g[j]);
            for (int64_t u = 0; u < rows; u++) {
                if (whole[u] || ap.a[r * rows + u] != cut_v[u]) continue;
                cut_n[u]++;
                for (int64_t j = 0; j < Cn; j++) cut[dix[u] * Cn + j] += R[cut_a[u] * Cn + j];
            }
        }
    }
    for (int64_t u = 0; s == MC_OK && u < rows; u++) {
        if (cut_n[u] < K - cut_a[u]) {
            s = MC_FAIL(err, MC_ERR_INTERNAL,
                        "clip_dissect: unit %lld: %lld images at the cut, %lld slots",
                        (long long)(us->u0 + u), (long long)cut_n[u], (long long)(K - cut_a[u]));
            break;
        }
        if (whole[u]) continue; /* added above */
        for (int64_t j = 0; j < Cn; j++)
            lpde[u * Cn + j] += cut[dix[u] * Cn + j] / (double)cut_n[u];
    }
    act_pass_close(&ap);
    s = mc_comm_agree(c, s, err);
    if (s == MC_OK) s = log_p_concept(c, us, lpde, Cn, lpd, err);
    for (int64_t u = 0; s == MC_OK && u < rows; u++)
        for (int64_t j = 0; j < Cn; j++)
            S[u * Cn + j] = (float)(lpde[u * Cn + j] - CD_LAMBDA * lpd[j]);
    free(T), free(E), free(Q), free(Pr), free(R), free(g), free(lpde), free(cut), free(cut_n),
        free(cut_a), free(cut_v), free(whole), free(dix);
    free(lpd), free(w), free(img), free(Z);
    return s;
}

/* ---- outputs -------------------------------------------------------------------------------------- */

/* localize/<set>/<kind>: the top tau units of every concept, merged over ranks (every rank
 * contributes its own units' candidates; the merge is exact in the (score, index) order). */
static mc_status write_localize(const mc_comm *c, const mc_task *task, const bl_task *bt,
                                mc_store *st, const mc_concepts *cs, const bl_kind *k,
                                const unit_stats *us, const float *S, int64_t tau, mc_error *err) {
    const int64_t Cn = cs->n;
    const char *kind = mc_unit_kind_name(k->kind);
    mc_scored *mine = mc_alloc_array((size_t)(Cn * tau), sizeof(mc_scored));
    mc_scored *all = mc_alloc_array((size_t)c->size, (size_t)(Cn * tau) * sizeof(mc_scored));
    int64_t *cnt = mc_calloc_array((size_t)Cn, sizeof(int64_t));
    int32_t *idx = mc_alloc_array((size_t)(Cn * tau), sizeof(int32_t));
    float *sc = mc_alloc_array((size_t)(Cn * tau), sizeof(float));
    mc_status s =
        mine && all && cnt && idx && sc ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    if ((double)Cn * (double)tau * sizeof(mc_scored) > 2147483647.0)
        s = MC_FAIL(err, MC_ERR_UNSUPPORTED, "too many concepts");
    s = mc_comm_agree(c, s, err);
    if (s == MC_OK) {
        for (int64_t i = 0; i < Cn * tau; i++) mine[i] = EMPTY;
        for (int64_t u = 0; u < us->rows; u++)
            for (int64_t j = 0; j < Cn; j++)
                mc_top_insert(mine + j * tau, &cnt[j], tau, S[u * Cn + j], (int32_t)(us->u0 + u));
        int bytes = (int)(Cn * tau * (int64_t)sizeof(mc_scored));
        if (MPI_Allgather(mine, bytes, MPI_BYTE, all, bytes, MPI_BYTE, c->comm) != MPI_SUCCESS)
            s = MC_FAIL(err, MC_ERR_MPI, "MPI_Allgather of the top-unit lists failed");
    }
    for (int64_t j = 0; s == MC_OK && j < Cn; j++) {
        int64_t n = 0;
        mc_scored *top = mine + j * tau;
        for (int q = 0; q < c->size; q++)
            for (int64_t t = 0; t < tau; t++) {
                const mc_scored *e = &all[(int64_t)q * Cn * tau + j * tau + t];
                if (e->index != INT32_MAX) mc_top_insert(top, &n, tau, e->score, e->index);
            }
        for (int64_t t = 0; t < tau; t++)
            idx[j * tau + t] = top[t].index, sc[j * tau + t] = top[t].score;
    }
    char g[512], csv[MC_PATH_CAP];
    mc_snprintf(g, sizeof g, "localize/%s/%s", cs->name, kind);
    mc_snprintf(csv, sizeof csv, "%s/%s-localize-%s-%s.csv", bt->tables, task->id, cs->name, kind);
    if (s == MC_OK)
        s = mc_localize_write(c, st, g, cs, tau, idx, sc, k->n_units, k->kind, k->sae_path, csv,
                              err);
    free(mine), free(all), free(cnt), free(idx), free(sc);
    return s;
}

/* The report section of one (set, kind) on rank 0 (as describe's). Returns the description
 * accuracy on logit neurons (NAN when not applicable). */
static double report_table(mc_buf *b, const mc_task *task, const bl_task *bt, const mc_concepts *cs,
                           const bl_kind *k, const mc_scored *all, int64_t tau) {
    const bool logits = !strcmp(task->layer, "logits") && k->kind == MC_UNIT_NEURON &&
                        k->n_units == bt->td.n_classes;
    const char *score = task->method == MC_METHOD_ACT_VALUES   ? "mean activation"
                        : task->method == MC_METHOD_NETDISSECT ? "IoU"
                        : task->method == MC_METHOD_VINTERP ? "cosine with the unit's description"
                                                            : "soft-WPMI";
    int64_t known = 0, hits = 0;
    double acc =
        logits ? mc_describe_accuracy(cs, bt->td.class_names, k->n_units, all, tau, &known, &hits)
               : NAN;
    mc_buf_printf(b, "\n### %s, concept set `%s` (%lld concepts)\n\n",
                  k->kind == MC_UNIT_SAE ? "SAE features" : "neurons", cs->name, (long long)cs->n);
    if (known) {
        mc_buf_printf(
            b,
            "Description accuracy (top concept = the neuron's own class): %lld / %lld = %.1f%%\n\n",
            (long long)hits, (long long)known, 100.0 * acc);
    }
    const int64_t max_shown = 16;
    int64_t shown = k->n_units < max_shown || logits ? k->n_units : max_shown;
    mc_buf_printf(b, "| unit | top concepts (%s) |\n|---|---|\n", score);
    for (int64_t i = 0; i < shown; i++) {
        mc_buf_printf(b, "| %lld |", (long long)i);
        for (int64_t q = 0; q < tau; q++)
            mc_buf_printf(b, "%s %s (%.3f)", q ? "," : "", cs->texts[all[i * tau + q].index],
                          all[i * tau + q].score);
        mc_buf_printf(b, " |\n");
    }
    if (shown < k->n_units)
        mc_buf_printf(b,
                      "\n(first %lld of %lld units; all of them in tables/%s-describe-%s-%s.csv)\n",
                      (long long)shown, (long long)k->n_units, task->id, cs->name,
                      mc_unit_kind_name(k->kind));
    return acc;
}

/* describe/<set>/<kind>: the top tau concepts of every unit (this rank's rows), the scores, the
 * CSV table and the report section (rank 0). */
static mc_status write_describe(const mc_comm *c, const mc_task *task, const bl_task *bt,
                                mc_store *st, const mc_concepts *cs, const bl_kind *k,
                                const unit_stats *us, const float *S, int64_t tau, mc_buf *report,
                                mc_error *err) {
    const int64_t Cn = cs->n, U = k->n_units, rows = us->rows;
    const bool keep = U * Cn <= KEEP_SIM_MAX;
    const char *kind = mc_unit_kind_name(k->kind);
    mc_sim_result r = {.n_units = U, .n_concepts = Cn, .u0 = us->u0, .u1 = us->u1, .tau_c = tau};
    r.desc = mc_alloc_array((size_t)(rows * tau + 1), sizeof(mc_scored));
    mc_status s =
        mc_comm_agree(c, r.desc ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory"), err);
    for (int64_t u = 0; s == MC_OK && u < rows; u++) {
        int64_t n = 0;
        for (int64_t j = 0; j < Cn; j++)
            mc_top_insert(r.desc + u * tau, &n, tau, S[u * Cn + j], (int32_t)j);
    }
    char g[512], csv[MC_PATH_CAP];
    mc_snprintf(g, sizeof g, "describe/%s/%s", cs->name, kind);
    mc_snprintf(csv, sizeof csv, "%s/%s-describe-%s-%s.csv", bt->tables, task->id, cs->name, kind);
    mc_scored *all = NULL;
    if (s == MC_OK)
        s = mc_describe_write(c, st, g, &r, keep ? S : NULL, cs, k->kind, k->sae_path, csv, &all,
                              err);
    double acc = NAN;
    if (s == MC_OK && c->rank == 0) acc = report_table(report, task, bt, cs, k, all, tau);
    free(all);
    if (s == MC_OK) s = mc_describe_set_accuracy(c, st, g, acc, err);
    free(r.desc);
    return s;
}

/* ---- the stage ------------------------------------------------------------------------------------- */

mc_status mc_baselines_check(const mc_config *cfg, mc_error *err) {
    for (int i = 0; i < cfg->baselines.methods.n; i++) {
        int m = cfg->baselines.methods.v[i];
        if (m == MC_METHOD_NETDISSECT) MC_TRY(mc_netdissect_check(cfg, err));
        if (m == MC_METHOD_VINTERP) MC_TRY(mc_vinterp_check(cfg, err));
        if (m != MC_METHOD_ACT_VALUES && m != MC_METHOD_CLIP_DISSECT && m != MC_METHOD_NETDISSECT &&
            m != MC_METHOD_VINTERP)
            return MC_FAIL(err, MC_ERR_CONFIG, "%s: baselines.methods: '%s' is no baseline",
                           cfg->source_path, mc_method_name(m));
    }
    return MC_OK;
}

mc_status mc_stage_baselines(const mc_comm *c, const mc_config *cfg, const mc_task *task,
                             mc_error *err) {
    MC_TRY(mc_baselines_check(cfg, err));
    bl_task bt;
    MC_TRY(bl_task_open(c, cfg, task, &bt, err));
    bool complete = false;
    mc_status s = mc_store_peek_complete(c, bt.store, &complete, err);
    if (s != MC_OK || complete) {
        if (complete) {
            mc_info0("baselines %s: complete, skipping (%s)", task->id, bt.store);
            s = mc_task_index_write(c, cfg, MC_STAGE_BASELINES, task, bt.store, bt.key, err);
        }
        bl_task_close(&bt);
        return s;
    }
    mc_config bare = *cfg; /* the embeddings bl_task_open keyed: bare texts, V-Interp's prompted */
    if (task->method != MC_METHOD_VINTERP) bare.align.prompt = (char *)BASELINE_PROMPT;
    s = mc_concepts_embed(c, &bare, &bt.td, bt.sets, bt.n_sets, err);
    if (s != MC_OK) {
        bl_task_close(&bt);
        return s;
    }
    const bool cd = task->method == MC_METHOD_CLIP_DISSECT,
               nd = task->method == MC_METHOD_NETDISSECT;
    const bool vi = task->method == MC_METHOD_VINTERP;
    const bool all_sets = cd || nd || vi; /* act_values scores the class names only */
    int64_t n_valid = 0;
    for (int64_t i = 0; i < bt.td.n_img; i++) n_valid += bt.td.valid[i] != 0;
    if (n_valid == 0) s = MC_FAIL(err, MC_ERR_ARG, "%s: no valid training image", bt.td.path);
    const int64_t want_k = cd ? CD_TOP_K : vi ? cfg->baselines.vinterp_images : 0;
    const int64_t top_k = want_k < n_valid ? want_k : n_valid;
    /* V-Interp's grids and manifests: beside the store, named like it. */
    char vdir[MC_PATH_CAP];
    mc_snprintf(vdir, sizeof vdir, "%.*s", (int)(strlen(bt.store) - 3), bt.store);
    json_t *vindex = vi && c->rank == 0 ? json_array() : NULL,
           *vdescs = vi && c->rank == 0 ? json_object() : NULL;
    const char *vsrc = cfg->baselines.vinterp_explainer[0] ? cfg->baselines.vinterp_explainer
                                                           : cfg->baselines.vinterp_descriptions;
    const char *vsrc_kind = cfg->baselines.vinterp_explainer[0] ? "explainer" : "descriptions file";
    char dir[MC_PATH_CAP];
    mc_snprintf(dir, sizeof dir, "%s/baselines", cfg->output_dir);
    if (s == MC_OK) s = mc_comm_agree(c, c->rank == 0 ? mc_mkdir_p(dir, err) : MC_OK, err);
    mc_acts acts, emb;
    memset(&acts, 0, sizeof acts);
    memset(&emb, 0, sizeof emb);
    if (s == MC_OK) s = mc_acts_open(c, bt.td.st, task->layer, &acts, err);
    if (s == MC_OK && cd) s = mc_acts_open_dataset(c, bt.td.st, "clip/image_embeds", &emb, err);
    mc_store *st = NULL;
    if (s == MC_OK) s = mc_store_fresh(c, bt.store, &st, err);
    mc_buf report = {0};
    mc_buf_printf(&report, "## seed %lld, layer `%s`, method %s\n\n%s\n", (long long)task->seed,
                  task->layer, mc_method_name(task->method),
                  cd   ? "CLIP-Dissect soft-WPMI over each unit's top images of the training set "
                         "(docs/baselines.md)."
                  : vi ? "V-Interp: each unit's description (from its top training images) scored "
                         "against each "
                         "concept by the cosine of their CLIP text embeddings (docs/baselines.md)."
                  : nd ? "Network Dissection: IoU of each unit's map above its top-0.5% quantile, "
                         "upsampled to the "
                         "masks, with the concept masks of the training images (docs/baselines.md)."
                       : "Act-Values: mean activation over the training images the target predicts "
                         "as each class.");
    if (vi)
        mc_buf_printf(
            &report,
            "\nDescriptions by the %s `%s`; grids and manifests in `%s/grids/` of the output "
            "folder.\n",
            vsrc_kind, vsrc, vdir + strlen(cfg->output_dir) + 1);
    /* The concept lists once, under both layouts (the readers of each find them). */
    for (int i = 0; s == MC_OK && i < bt.n_sets; i++) {
        if (!all_sets && !is_class_set(cfg, bt.sets[i].name)) continue;
        for (int l = 0; s == MC_OK && l < 2; l++) {
            if (!(l ? bt.set_desc[i] : bt.set_loc[i])) continue;
            char g[300];
            mc_snprintf(g, sizeof g, "%s/%s/concepts", l ? "describe" : "localize",
                        bt.sets[i].name);
            s = mc_store_write_strings(st, g, (const char *const *)bt.sets[i].texts, bt.sets[i].n,
                                       true, err);
        }
    }
    if (s == MC_OK && !all_sets)
        for (int i = 0; i < bt.n_sets; i++)
            if (!is_class_set(cfg, bt.sets[i].name))
                mc_info0("baselines %s: act_values scores classes only; concept set '%s' left out",
                         task->id, bt.sets[i].name);
    for (int ki = 0; s == MC_OK && ki < bt.n_kinds; ki++) {
        const bl_kind *k = &bt.kinds[ki];
        mc_sae *sae = NULL;
        if (k->kind == MC_UNIT_SAE)
            s = mc_sae_load_store(c, cfg, k->sae_path, acts.dim, task->seed, &sae, err);
        /* SAE units: every valid image encoded once, shared over the ranks; the passes read the
         * codes, and the weights are not needed after that (a token-level SAE keeps them: each
         * pass encodes its chunk's tokens). */
        sae_codes codes;
        memset(&codes, 0, sizeof codes);
        const sae_codes *kc = sae ? &codes : NULL;
        if (s == MC_OK && sae) s = sae_codes_compute(c, &bt, &acts, sae, &codes, err);
        if (!codes.token_sae) mc_sae_free(&sae);
        unit_stats us;
        memset(&us, 0, sizeof us);
        /* netdissect: every set's IoU in one pass over the maps and masks. */
        float **ndS = NULL;
        bool *use = NULL;
        if (s == MC_OK && nd) {
            us.n_units = k->n_units;
            unit_rows(k->n_units, c->rank, c->size, &us.u0, &us.u1);
            us.rows = us.u1 - us.u0;
            ndS = calloc((size_t)bt.n_sets + 1, sizeof *ndS);
            use = calloc((size_t)bt.n_sets + 1, sizeof *use);
            s = mc_comm_agree(c, ndS && use ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory"),
                              err);
            for (int i = 0; s == MC_OK && i < bt.n_sets; i++)
                use[i] = (bt.set_loc[i] && k->loc) || (bt.set_desc[i] && k->desc);
            if (s == MC_OK)
                s = mc_netdissect_iou(c, cfg, &bt.td, &acts, us.u0, us.rows, bt.sets, bt.n_sets,
                                      use, ndS, err);
        } else if (s == MC_OK) {
            s = unit_stats_compute(c, &bt, &acts, k, kc, top_k, &us, err);
        }
        char **vdesc = NULL;
        float *vemb = NULL;
        const int64_t vdim = bt.n_sets ? bt.sets[0].dim : 0;
        if (s == MC_OK && vi)
            s = mc_vinterp_describe(c, cfg, task, &bt.td, k->kind, k->n_units, us.u0, us.rows,
                                    us.top, top_k, vdir, vindex, vdescs, &vdesc, &vemb, vdim, err);
        if (s == MC_OK && vi) {
            char g[300];
            mc_snprintf(g, sizeof g, "vinterp/%s/descriptions", mc_unit_kind_name(k->kind));
            s = mc_comm_agree(
                c, mc_store_write_strings(st, g, (const char *const *)vdesc, k->n_units, true, err),
                err);
            mc_buf_printf(&report, "\n### %s: descriptions\n\n| unit | description |\n|---|---|\n",
                          k->kind == MC_UNIT_SAE ? "SAE features" : "neurons");
            const int64_t shown = k->n_units < 16 ? k->n_units : 16;
            for (int64_t u = 0; u < shown; u++)
                mc_buf_printf(&report, "| %lld | %s |\n", (long long)u, vdesc[u]);
            if (shown < k->n_units)
                mc_buf_printf(
                    &report,
                    "\n(first %lld of %lld units; all of them in `vinterp/%s/descriptions` of the "
                    "store and `%s/descriptions.json`)\n",
                    (long long)shown, (long long)k->n_units, mc_unit_kind_name(k->kind),
                    vdir + strlen(cfg->output_dir) + 1);
        }
        for (int i = 0; s == MC_OK && i < bt.n_sets; i++) {
            const mc_concepts *cs = &bt.sets[i];
            if (!all_sets && !is_class_set(cfg, cs->name)) continue;
            if (!(bt.set_loc[i] && k->loc) && !(bt.set_desc[i] && k->desc)) continue;
            float *S = nd ? ndS[i] : mc_alloc_array((size_t)(us.rows * cs->n + 1), sizeof(float));
            if (nd) ndS[i] = NULL;
            s = mc_comm_agree(c, S ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory"), err);
            if (s == MC_OK && vi)
                mc_vinterp_scores(vemb, vdim, us.u0, us.rows, cs, S);
            else if (s == MC_OK && !nd)
                s = cd ? clip_dissect_scores(c, &bt, cs, &emb, &acts, kc, &us, S, err)
                       : mc_comm_agree(c, act_values_scores(&bt, cs, &us, S, err), err);
            if (s == MC_OK && bt.set_loc[i] && k->loc)
                s = write_localize(c, task, &bt, st, cs, k, &us, S,
                                   cfg->localize.tau < k->n_units ? cfg->localize.tau : k->n_units,
                                   err);
            if (s == MC_OK && bt.set_desc[i] && k->desc)
                s = write_describe(c, task, &bt, st, cs, k, &us, S,
                                   cfg->describe.tau < cs->n ? cfg->describe.tau : cs->n, &report,
                                   err);
            free(S);
        }
        mc_strings_free(&vdesc, k->n_units);
        free(vemb);
        for (int i = 0; ndS && i < bt.n_sets; i++) free(ndS[i]);
        free(ndS), free(use);
        unit_stats_free(&us);
        sae_codes_free(&codes);
        mc_sae_free(&sae); /* a token-level SAE's, kept for the passes (NULL otherwise) */
    }
    /* V-Interp's index of every unit (grid, manifest, images, description) and the descriptions in
     * the format baselines.vinterp.descriptions reads. */
    if (s == MC_OK && vi) {
        mc_status ws = MC_OK;
        if (c->rank == 0) {
            char path[MC_PATH_CAP];
            json_t *m = json_pack("{s:s, s:s, s:s, s:i, s:O}", "method", "vinterp",
                                  vsrc_kind[0] == 'e' ? "explainer" : "descriptions", vsrc, "layer",
                                  task->layer, "seed", (json_int_t)task->seed, "units", vindex);
            char *txt = m ? json_dumps(m, JSON_INDENT(1) | JSON_SORT_KEYS) : NULL;
            mc_snprintf(path, sizeof path, "%s/manifest.json", vdir);
            ws = txt ? mc_write_text_file(path, txt, strlen(txt), err)
                     : MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
            free(txt);
            json_decref(m);
            txt = ws == MC_OK ? json_dumps(vdescs, JSON_INDENT(1) | JSON_SORT_KEYS) : NULL;
            mc_snprintf(path, sizeof path, "%s/descriptions.json", vdir);
            if (ws == MC_OK)
                ws = txt ? mc_write_text_file(path, txt, strlen(txt), err)
                         : MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
            free(txt);
        }
        s = mc_comm_agree(c, ws, err);
    }
    json_decref(vindex);
    json_decref(vdescs);
    /* The task's section of report/baselines.md (the report stage assembles the file), before the
     * store is marked complete. */
    if (s == MC_OK) {
        mc_status ws = MC_OK;
        if (c->rank == 0) {
            char path[MC_PATH_CAP];
            mc_snprintf(path, sizeof path, "%s/report/baselines/%s.md", cfg->output_dir, task->id);
            ws = report.oom ? MC_FAIL(err, MC_ERR_NOMEM, "out of memory")
                            : mc_write_text_file(path, report.p, report.n, err);
        }
        s = mc_comm_agree(c, ws, err);
    }
    mc_buf_free(&report);
    mc_store_provenance prov = {.stage = "baselines",
                                .config_hash = cfg->hash,
                                .model = bt.td.extract_key,
                                .dataset = bt.td.path,
                                .seed = task->seed,
                                .has_seed = true};
    if (s == MC_OK) s = mc_store_write_provenance(st, "/", &prov, err);
    const mc_store_attr_str attrs[] = {{"baselines_key", bt.key},
                                       {"method", mc_method_name(task->method)},
                                       {"layer", task->layer},
                                       {"extract_store", bt.td.path},
                                       {"class_of_image", "target prediction"}};
    if (s == MC_OK) s = mc_store_set_attrs_str(st, "/", MC_STORE_ATTRS(attrs), err);
    if (s == MC_OK && cd) {
        s = mc_store_set_attr_i64(st, "/", "clip_dissect_top_k", top_k, err);
        const mc_store_attr_f64 hp[] = {{"clip_dissect_a", CD_A},
                                        {"clip_dissect_lambda", CD_LAMBDA},
                                        {"clip_dissect_min_prob", CD_MIN_PROB},
                                        {"clip_dissect_p_start", CD_P_START},
                                        {"clip_dissect_p_end", CD_P_END}};
        if (s == MC_OK) s = mc_store_set_attrs_f64(st, "/", MC_STORE_ATTRS(hp), err);
    }
    if (s == MC_OK && vi) {
        s = mc_store_set_attr_str(st, "/",
                                  cfg->baselines.vinterp_explainer[0] ? "vinterp_explainer"
                                                                      : "vinterp_descriptions",
                                  vsrc, err);
        if (s == MC_OK) s = mc_store_set_attr_str(st, "/", "vinterp_dir", vdir, err);
        if (s == MC_OK) s = mc_store_set_attr_i64(st, "/", "vinterp_images", top_k, err);
        if (s == MC_OK)
            s = mc_store_set_attr_str(st, "/", "vinterp_prompt", cfg->align.prompt, err);
    }
    if (s == MC_OK && nd) {
        char md[MC_PATH_CAP];
        if (!mc_netdissect_masks_dir(cfg, md, sizeof md)) md[0] = 0;
        s = mc_store_set_attr_f64(st, "/", "netdissect_quantile", MC_NETDISSECT_QUANTILE, err);
        if (s == MC_OK) s = mc_store_set_attr_str(st, "/", "netdissect_masks", md, err);
    }
    if (s == MC_OK) s = mc_store_set_complete(st, "/", err);
    if (st) {
        mc_error ce = {0};
        mc_status cs = mc_store_close(&st, &ce);
        if (s == MC_OK && cs != MC_OK) *err = ce, s = cs;
    }
    if (s == MC_OK)
        mc_info0("baselines %s: %d concept set(s) x %d unit kind(s) -> %s", task->id, bt.n_sets,
                 bt.n_kinds, bt.store);
    if (s == MC_OK)
        s = mc_task_index_write(c, cfg, MC_STAGE_BASELINES, task, bt.store, bt.key, err);
    mc_acts_close(&emb);
    mc_acts_close(&acts);
    bl_task_close(&bt);
    return s;
}

mc_status mc_baselines_store(const mc_comm *c, const mc_config *cfg, int64_t seed,
                             const char *layer, int method, char *path, size_t path_cap, char *key,
                             size_t key_cap, mc_error *err) {
    mc_task *tasks = NULL;
    int n = 0, found = -1;
    MC_TRY(mc_config_tasks(cfg, MC_STAGE_BASELINES, &tasks, &n, err));
    for (int t = 0; t < n && found < 0; t++)
        if (tasks[t].seed == seed && !strcmp(tasks[t].layer, layer) && tasks[t].method == method)
            found = t;
    mc_status s = MC_OK;
    if (found < 0)
        s = MC_FAIL(err, MC_ERR_CONFIG,
                    "%s: %s needs the baselines output of seed %lld, layer '%s'; add baselines to "
                    "'stages' and %s to baselines.methods",
                    cfg->source_path, mc_method_name(method), (long long)seed, layer,
                    mc_method_name(method));
    bl_task bt;
    memset(&bt, 0, sizeof bt);
    if (s == MC_OK) s = bl_task_open(c, cfg, &tasks[found], &bt, err);
    bool complete = false;
    if (s == MC_OK) s = mc_store_peek_complete(c, bt.store, &complete, err);
    if (s == MC_OK && !complete)
        s = MC_FAIL(
            err, MC_ERR_ARG,
            "the baselines output of task %s is missing (%s); run the baselines stage first "
            "(miclip baselines CONFIG)",
            tasks[found].id, bt.store);
    if (s == MC_OK && !(mc_strlcpy(path, bt.store, path_cap) && mc_strlcpy(key, bt.key, key_cap)))
        s = MC_FAIL(err, MC_ERR_INTERNAL, "path too long");
    if (found >= 0) bl_task_close(&bt);
    mc_tasks_free(&tasks);
    return s;
}

/* ---- the plan's cost model (plan.h) -------------------------------------------------------- */

/* Per task (seed x layer x method): the SAE codes of every training image (split over the ranks
 * and threads) where SAE features are units, and for clip_dissect the work of
 * clip_dissect_scores over all concept sets (Cn in all), U = neurons + SAE features, N training
 * images, K = min(100, N) probe slots, e = CLIP's embedding width, P ranks:
 *   slot terms (a double log each, on one thread per rank):
 *     top lists   U K Cn / P (unit rows),
 *     cut totals  N K Cn / P (image chunks),
 *     whole-group units' top images  U_sae K Cn / P (a per unit, at most K);
 *   their slot products (a (K - a) factors per unit and concept, at most K^2 / 4, one thread):
 *     U_sae K^2/4 Cn / P;
 *   cosines (sgemm): e Cn (U K + N) / P, and e Cn N on every rank (the direct units' pass).
 * The units x images x concepts cut product it used to do is gone (cut_totals). Act-Values and
 * V-Interp cost the table of mc_plan_unit_table_cost; V-Interp's explainer is the user's. */
static void baselines_cost(const mc_config *cfg, const mc_plan_inputs *in, mc_plan *p,
                           mc_plan_stage *S, double *flop, double *core_s, double *mem_b) {
    mc_plan_unit_table_cost(cfg, in, p, S, flop, core_s, mem_b); /* texts, tables, the store */
    const double N = (double)p->n_train, K = N < CD_TOP_K ? N : CD_TOP_K, e = (double)in->proj,
                 Cn = (double)in->n_concepts, P = p->ranks, T = p->threads;
    const bool sae_units = list_has_enum(&cfg->localize.units, MC_UNIT_SAE) ||
                           list_has_enum(&cfg->describe.units, MC_UNIT_SAE);
    const double text_s = *core_s; /* the unit tables and texts, per task */
    double all_s = 0, max_s = 0, max_flop = 0, max_mem = 0;
    for (int l = 0; l < cfg->extract.layers.n; l++) {
        double pre = 0;
        int64_t el = 0;
        mc_error e2 = {0};
        if (mc_plan_layer(&p->target, cfg->extract.layers.v[l], cfg->extract.pool, &pre, &el,
                          &e2) != MC_OK)
            continue; /* plan_make has refused such a layer already */
        for (int m = 0; m < cfg->baselines.methods.n; m++) {
            const int method = cfg->baselines.methods.v[m];
            const double Us = sae_units && method != MC_METHOD_NETDISSECT &&
                                      !strcmp(cfg->extract.layers.v[l], cfg->sae.layer)
                                  ? (double)cfg->sae.features
                                  : 0,
                         U = (double)el + Us;
            double fl = 0, wall = 0, mem = 0;
            if (Us > 0) { /* the codes: every image through the SAE encoder once */
                const double f = 2.0 * N * (double)in->sae_dim * Us;
                fl += f, wall += f / (in->gemm * in->cores);
                mem += N * (double)cfg->sae.k * 8 + Us * (double)in->sae_dim * 8;
            }
            if (method == MC_METHOD_CLIP_DISSECT) {
                const double terms = (U * K * Cn + N * K * Cn + Us * K * Cn) / P,
                             factors = Us * K * K / 4 * Cn / P;
                const double cos = 2 * e * Cn * ((U * K + N) / P + N);
                fl += cos, wall += terms / in->logs + factors / in->products + cos / (in->gemm * T);
                mem += U / P * Cn * 20 + K * Cn * 40;
            }
            const double cs = wall * in->cores + text_s;
            all_s += cs * (double)in->seeds;
            if (cs > max_s) max_s = cs, max_flop = fl;
            if (mem > max_mem) max_mem = mem;
        }
    }
    *flop += max_flop; /* the longest task's */
    *core_s = max_s;
    S->core_s_all = all_s;
    *mem_b += max_mem;
}

/* ---- the registry entry ----------------------------------------------------------------------- */

const mc_stage_desc mc_baselines_stage = {
    .stage = MC_STAGE_BASELINES,
    .summary =
        "Act-Values, CLIP-Dissect and Network Dissection in the localize and describe layouts",
    .outputs = "baselines/<task>-<key16>.h5, tables/, report/baselines.md",
    .check = mc_baselines_check,
    .run = mc_stage_baselines,
    .cost = baselines_cost,
};
