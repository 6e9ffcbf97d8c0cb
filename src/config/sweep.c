/* sweep.c - expansion of a config's sweep axes into a deterministic task list per stage.
 * The order is part of the interface: Slurm array task i runs task i, so it depends only on the
 * config (never on the rank count or on the environment). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/checked.h"
#include "miclip/config.h"

/* Short id spellings: filename- and job-name-safe. */
const char *mc_variant_tag(int v) { return v == MC_VARIANT_INOUT ? "inout" : mc_variant_name(v); }

void mc_layer_tag(const char *layer, char *out, size_t cap) {
    size_t o = 0;
    for (const char *p = layer; *p && o + 1 < cap; p++) {
        char ch = *p;
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
        out[o++] = ok ? ch : '_';
    }
    out[o] = '\0';
}

typedef struct {
    mc_task *v;
    int n, cap;
    mc_error *err;
} tlist;

static mc_status push(tlist *t, mc_task task) {
    if (t->n == t->cap) {
        if (t->cap > (1 << 24))
            return MC_FAIL(t->err, MC_ERR_CONFIG, "the sweep has more than 16M tasks");
        int cap = t->cap ? t->cap * 2 : 16;
        mc_task *v = realloc(t->v, (size_t)cap * sizeof *v);
        if (!v) return MC_FAIL(t->err, MC_ERR_NOMEM, "out of memory expanding the sweep");
        t->v = v;
        t->cap = cap;
    }
    task.index = t->n;
    t->v[t->n++] = task;
    return MC_OK;
}

static mc_task base_task(mc_stage stage, int64_t seed) {
    mc_task t;
    memset(&t, 0, sizeof t);
    t.stage = stage;
    t.seed = seed;
    t.variant = t.reading = t.method = t.mode = -1;
    return t;
}

static void set_id(mc_task *t) {
    char lid[96] = "", part[MC_TASK_ID_MAX];
    size_t o = (size_t)snprintf(t->id, sizeof t->id, "%s", mc_stage_name(t->stage));
    if (t->stage == MC_STAGE_REPORT) return;
    o += (size_t)snprintf(t->id + o, sizeof t->id - o, "-s%lld", (long long)t->seed);
    if (t->layer && o < sizeof t->id) {
        mc_layer_tag(t->layer, lid, sizeof lid);
        o += (size_t)snprintf(t->id + o, sizeof t->id - o, "-l%s", lid);
    }
    if (t->variant >= 0 && o < sizeof t->id)
        o += (size_t)snprintf(t->id + o, sizeof t->id - o, "-%s", mc_variant_tag(t->variant));
    if (t->reading >= 0 && o < sizeof t->id)
        o += (size_t)snprintf(t->id + o, sizeof t->id - o, "-%s", mc_reading_name(t->reading));
    if (t->method >= 0 && o < sizeof t->id)
        o += (size_t)snprintf(t->id + o, sizeof t->id - o, "-%s", mc_method_name(t->method));
    if (t->mode >= 0 && o < sizeof t->id) {
        /* The shortest spelling that reads back as the same beta, so distinct betas get
         * distinct ids. */
        char num[40];
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(num, sizeof num, "%.*g", prec, t->beta);
            if (strtod(num, NULL) == t->beta) break;
        }
        snprintf(part, sizeof part, "-%s-b%s", mc_mode_name(t->mode), num);
        snprintf(t->id + o, sizeof t->id - o, "%s", part);
    }
}

mc_status mc_config_tasks(const mc_config *cfg, mc_stage stage, mc_task **tasks, int *n,
                          mc_error *err) {
    *tasks = NULL;
    *n = 0;
    if ((int)stage < 0 || stage >= MC_STAGE_COUNT)
        return MC_FAIL(err, MC_ERR_ARG, "unknown stage %d", (int)stage);
    if (!mc_config_has_stage(cfg, stage)) return MC_OK;
    tlist t = {.err = err};
    mc_status s = MC_OK;
    if (stage == MC_STAGE_REPORT) {
        mc_task k = base_task(stage, 0);
        set_id(&k);
        s = push(&t, k);
    }
    for (int si = 0; si < cfg->seeds.n && s == MC_OK && stage != MC_STAGE_REPORT; si++) {
        int64_t seed = cfg->seeds.v[si];
        switch (stage) {
        case MC_STAGE_EXTRACT: {
            mc_task k = base_task(stage, seed);
            set_id(&k);
            s = push(&t, k);
            break;
        }
        case MC_STAGE_SAE: {
            mc_task k = base_task(stage, seed);
            k.layer = cfg->sae.layer;
            set_id(&k);
            s = push(&t, k);
            break;
        }
        case MC_STAGE_ALIGN:
        case MC_STAGE_LOCALIZE:
        case MC_STAGE_DESCRIBE:
            for (int li = 0; li < cfg->extract.layers.n && s == MC_OK; li++)
                for (int vi = 0; vi < cfg->align.variants.n && s == MC_OK; vi++) {
                    mc_task k = base_task(stage, seed);
                    k.layer = cfg->extract.layers.v[li];
                    k.variant = cfg->align.variants.v[vi];
                    set_id(&k);
                    s = push(&t, k);
                }
            /* miclip's other readings (intervene.readings): only what intervene reads, the
             * intervene.layer stores of its E_n variants, after the unchanged tasks above. */
            for (int ri = 0; stage == MC_STAGE_LOCALIZE && cfg->intervene.layer &&
                             ri < cfg->intervene.readings.n;
                 ri++) {
                const int r = cfg->intervene.readings.v[ri];
                if (r == mc_config_reading(cfg)) continue;
                for (int vi = 0; vi < cfg->intervene.variants.n && s == MC_OK; vi++) {
                    mc_task k = base_task(stage, seed);
                    k.layer = cfg->intervene.layer;
                    k.variant = cfg->intervene.variants.v[vi];
                    k.reading = r;
                    set_id(&k);
                    s = push(&t, k);
                }
            }
            break;
        case MC_STAGE_BASELINES:
            for (int li = 0; li < cfg->extract.layers.n && s == MC_OK; li++)
                for (int mi = 0; mi < cfg->baselines.methods.n && s == MC_OK; mi++) {
                    mc_task k = base_task(stage, seed);
                    k.layer = cfg->extract.layers.v[li];
                    k.method = cfg->baselines.methods.v[mi];
                    set_id(&k);
                    s = push(&t, k);
                }
            break;
        case MC_STAGE_INTERVENE:
            for (int mi = 0; mi < cfg->intervene.methods.n && s == MC_OK; mi++) {
                const int method = cfg->intervene.methods.v[mi];
                /* miclip sweeps its E_n variants; the first align variant keeps variant -1, so
                 * its tasks keep the ids (and keys) they had before the axis. */
                const int nv = method == MC_METHOD_MICLIP ? cfg->intervene.variants.n : 1;
                /* ... and its readings; the localize.* reading keeps reading -1 (the same ids). */
                const int nr = method == MC_METHOD_MICLIP && cfg->intervene.readings.n > 0
                                   ? cfg->intervene.readings.n
                                   : 1;
                for (int vi = 0; vi < nv && s == MC_OK; vi++)
                    for (int ri = 0; ri < nr && s == MC_OK; ri++)
                        for (int oi = 0; oi < cfg->intervene.modes.n && s == MC_OK; oi++) {
                            /* The add mode has its own betas when intervene.add_betas is given. */
                            const mc_f64_list *bl = cfg->intervene.modes.v[oi] == MC_MODE_ADD &&
                                                            cfg->intervene.add_betas.n > 0
                                                        ? &cfg->intervene.add_betas
                                                        : &cfg->intervene.betas;
                            for (int bi = 0; bi < bl->n && s == MC_OK; bi++) {
                                mc_task k = base_task(stage, seed);
                                k.layer = cfg->intervene.layer;
                                k.method = method;
                                const int v = cfg->intervene.variants.v[vi];
                                if (method == MC_METHOD_MICLIP && v != cfg->align.variants.v[0])
                                    k.variant = v;
                                if (method == MC_METHOD_MICLIP && cfg->intervene.readings.n > 0 &&
                                    cfg->intervene.readings.v[ri] != mc_config_reading(cfg))
                                    k.reading = cfg->intervene.readings.v[ri];
                                k.mode = cfg->intervene.modes.v[oi];
                                k.beta = bl->v[bi];
                                set_id(&k);
                                s = push(&t, k);
                            }
                        }
            }
            break;
        default: break;
        }
    }
    if (s != MC_OK) {
        free(t.v);
        return s;
    }
    *tasks = t.v;
    *n = t.n;
    return MC_OK;
}

mc_status mc_config_all_tasks(const mc_config *cfg, mc_task **tasks, int *n, mc_error *err) {
    *tasks = NULL;
    *n = 0;
    mc_task *all = NULL;
    int total = 0;
    for (int st = 0; st < MC_STAGE_COUNT; st++) {
        mc_task *part = NULL;
        int np = 0;
        mc_status s = mc_config_tasks(cfg, (mc_stage)st, &part, &np, err);
        if (s == MC_OK && np > 0) {
            size_t bytes;
            if (!mc_size_mul((size_t)(total + np), sizeof *all, &bytes))
                s = MC_FAIL(err, MC_ERR_NOMEM, "sweep too large");
            mc_task *grown = s == MC_OK ? realloc(all, bytes) : NULL;
            if (s == MC_OK && !grown)
                s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory expanding the sweep");
            if (s == MC_OK) {
                all = grown;
                memcpy(all + total, part, (size_t)np * sizeof *part);
                total += np;
            }
        }
        free(part);
        if (s != MC_OK) {
            free(all);
            return s;
        }
    }
    *tasks = all;
    *n = total;
    return MC_OK;
}

void mc_tasks_free(mc_task **tasks) {
    if (!tasks) return;
    free(*tasks);
    *tasks = NULL;
}

mc_status mc_config_task_select(const mc_config *cfg, mc_stage stage, const char *index_text,
                                mc_task *out, mc_error *err) {
    mc_task *all = NULL;
    int n = 0;
    MC_TRY(mc_config_tasks(cfg, stage, &all, &n, err));
    mc_status s = MC_OK;
    long long idx = 0;
    if (!index_text || !*index_text) {
        if (n != 1)
            s = MC_FAIL(err, MC_ERR_ARG,
                        "stage %s has %d tasks: choose one with SLURM_ARRAY_TASK_ID "
                        "(0..%d; `miclip config --tasks` lists them)",
                        mc_stage_name(stage), n, n - 1);
    } else {
        char *end = NULL;
        idx = strtoll(index_text, &end, 10);
        if (*end || end == index_text || idx < 0 || idx >= n)
            s = MC_FAIL(err, MC_ERR_ARG,
                        "task index '%.40s' is not one of the %d tasks of stage %s (0..%d)",
                        index_text, n, mc_stage_name(stage), n - 1);
    }
    if (s == MC_OK) *out = all[idx];
    free(all);
    return s;
}
