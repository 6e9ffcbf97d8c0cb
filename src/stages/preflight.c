/* preflight.c - pre-flight (issue 16): everything a run will need, checked before any work.
 *
 * `miclip run` (and every per-stage command, through mc_run) and `miclip config FILE` call
 * mc_preflight first. Rank 0 checks, for the stages that will run (the config's `stages`, or
 * the one stage of `miclip run --stage X` / `miclip X`), without loading any weights:
 *   - each stage's own config check (the registry's `check`);
 *   - every model folder a stage reads: the folder, config.json through the Hugging Face config
 *     reader, model.safetensors' header, preprocessor_config.json (vision models), the tokenizer
 *     (CLIP: vocab.json + merges.txt, MPNet: vocab.txt), and that models.clip is a CLIP model;
 *   - every layer name (extract.layers, sae.layer, intervene.layer) against the target model's
 *     config.json (plan.h: mc_plan_model_read, mc_plan_layer: the model description's layers and
 *     aliases, model_desc.h, the same the loader resolves);
 *   - every dataset that will be listed (extract's train set; eval / unseen when the intervene
 *     stage measures them): root, split folder, label and class-name files, then the listing
 *     itself (class folders, images);
 *   - every concept file the localize, describe and baselines stages read;
 *   - the output folder: writable (when nothing else is wrong it is created and a probe file is
 *     written with the atomic write helper and removed, so a failing pre-flight creates nothing);
 *   - free disk space against `miclip plan`'s disk estimate (default calibration), less what the
 *     output folder already holds: under the estimate is an error, under 1.2x a warning.
 *     MICLIP_DISK_CHECK=warn turns the error into a warning, MICLIP_DISK_CHECK=off skips it.
 * Every problem is collected (not just the first); rank 0 lists them (at most
 * MC_PREFLIGHT_SHOWN lines) and every rank gets the agreed error (mc_comm_agree): the first
 * problem, with the count of the others. MICLIP_PREFLIGHT=off skips all of this (the stages'
 * own config checks still run in mc_run). docs/preflight.md describes it for users.
 */
#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "miclip/checked.h"
#include "miclip/dataset.h"
#include "miclip/fsutil.h"
#include "miclip/hf.h"
#include "miclip/image.h"
#include "miclip/json.h"
#include "miclip/log.h"
#include "miclip/plan.h"
#include "miclip/safetensors.h"
#include "stages_internal.h"

#define MC_PREFLIGHT_SHOWN 20
#define PF_LINE 1024

typedef struct {
    const mc_config *cfg;
    int n_checks;
    int n_problems;
    mc_status first_code;
    char lines[MC_PREFLIGHT_SHOWN][PF_LINE];
} pf;

/* A problem: one line naming the config key. A leading "CONFIG: " (the stages' own checks say
 * where) is dropped, as the final message adds it back once. */
static void problem_code(pf *p, mc_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void problem_code(pf *p, mc_status code, const char *fmt, ...) {
    char line[PF_LINE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    const char *src = p->cfg->source_path;
    size_t ls = src ? strlen(src) : 0;
    const char *text = line;
    if (ls && !strncmp(line, src, ls) && !strncmp(line + ls, ": ", 2)) text = line + ls + 2;
    if (p->n_problems == 0) p->first_code = code;
    if (p->n_problems < MC_PREFLIGHT_SHOWN) mc_strlcpy(p->lines[p->n_problems], text, PF_LINE);
    p->n_problems++;
}
#define problem(p, ...) problem_code((p), MC_ERR_CONFIG, __VA_ARGS__)

/* ---- what the stages to run need ------------------------------------------------------------ */

typedef struct {
    bool stage[MC_STAGE_COUNT];
    bool models, mpnet, extract_layers, sae_layer, int_layer, train, eval, unseen, concepts;
} needs;

static bool lists_eval_set(const mc_config *cfg, int set) {
    for (int i = 0; i < cfg->intervene.datasets.n; i++)
        if (cfg->intervene.datasets.v[i] == set) return true;
    return false;
}

static int needs_of(const mc_config *cfg, int only_stage, needs *n) {
    memset(n, 0, sizeof *n);
    int count = 0;
    for (int i = 0; i < cfg->stages.n; i++) {
        int st = cfg->stages.v[i];
        if (only_stage >= 0 && st != only_stage) continue;
        n->stage[st] = true;
        count++;
    }
    const bool *s = n->stage;
    const bool inter_listed = mc_config_has_stage(cfg, MC_STAGE_INTERVENE);
    n->models = s[MC_STAGE_EXTRACT] || s[MC_STAGE_SAE] || s[MC_STAGE_ALIGN] ||
                s[MC_STAGE_LOCALIZE] || s[MC_STAGE_DESCRIBE] || s[MC_STAGE_BASELINES] ||
                s[MC_STAGE_INTERVENE];
    n->mpnet = s[MC_STAGE_DESCRIBE] && cfg->models.mpnet && cfg->models.mpnet[0];
    n->extract_layers = s[MC_STAGE_EXTRACT] || s[MC_STAGE_ALIGN] || s[MC_STAGE_LOCALIZE] ||
                        s[MC_STAGE_DESCRIBE] || s[MC_STAGE_BASELINES];
    /* the config guarantees sae.layer and intervene.layer are extracted layers: checked on their
     * own only when extract.layers is not */
    n->sae_layer = s[MC_STAGE_SAE] && !n->extract_layers;
    n->int_layer = s[MC_STAGE_INTERVENE] && !n->extract_layers;
    n->train = s[MC_STAGE_EXTRACT] && cfg->datasets.train.kind != MC_DS_NONE;
    /* extraction also extracts the intervention sets when the intervene stage is listed */
    n->eval = cfg->datasets.eval.kind != MC_DS_NONE && lists_eval_set(cfg, MC_EVAL_SET_EVAL) &&
              (s[MC_STAGE_INTERVENE] || (s[MC_STAGE_EXTRACT] && inter_listed));
    n->unseen = cfg->datasets.unseen.kind != MC_DS_NONE &&
                lists_eval_set(cfg, MC_EVAL_SET_UNSEEN) &&
                (s[MC_STAGE_INTERVENE] || (s[MC_STAGE_EXTRACT] && inter_listed));
    n->concepts = s[MC_STAGE_LOCALIZE] || s[MC_STAGE_DESCRIBE] || s[MC_STAGE_BASELINES];
    return count;
}

/* ---- files ------------------------------------------------------------------------------------ */

/* A readable file (regular or FIFO); false with a problem naming key otherwise. missing (may be
 * NULL: "PATH: no such file") is what a missing file is called. */
static bool check_file(pf *p, const char *key, const char *path, const char *missing) {
    p->n_checks++;
    struct stat sb;
    if (stat(path, &sb) != 0) {
        if (errno == ENOENT && missing)
            problem(p, "%s: %s", key, missing);
        else if (errno == ENOENT)
            problem(p, "%s: %s: no such file", key, path);
        else
            problem_code(p, MC_ERR_IO, "%s: %s: cannot stat: %s", key, path, strerror(errno));
        return false;
    }
    if (S_ISDIR(sb.st_mode)) {
        problem(p, "%s: %s: is a folder, not a file", key, path);
        return false;
    }
    if (S_ISFIFO(sb.st_mode)) return true; /* read like a file (`<(cmd)`); opening it would block */
    if (!S_ISREG(sb.st_mode)) {
        problem(p, "%s: %s: not a regular file", key, path);
        return false;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        problem_code(p, MC_ERR_IO, "%s: %s: cannot be read: %s", key, path, strerror(errno));
        return false;
    }
    fclose(f);
    return true;
}

static bool check_folder(pf *p, const char *key, const char *path) {
    p->n_checks++;
    struct stat sb;
    if (stat(path, &sb) != 0) {
        if (errno == ENOENT)
            problem(p, "%s: %s: no such folder", key, path);
        else
            problem_code(p, MC_ERR_IO, "%s: %s: cannot stat: %s", key, path, strerror(errno));
        return false;
    }
    if (!S_ISDIR(sb.st_mode)) {
        problem(p, "%s: %s: not a folder", key, path);
        return false;
    }
    return true;
}

/* ---- models ------------------------------------------------------------------------------------ */

/* One model folder: config.json (parsed), model.safetensors (header), preprocessor_config.json
 * (vision families) and the tokenizer files. Returns the parsed config (caller frees) or NULL. */
static mc_hf_config *check_model(pf *p, const char *key, const char *dir) {
    if (!check_folder(p, key, dir)) return NULL;
    char path[4096], what[4200];
    mc_hf_config *hc = NULL;
    mc_error e = {0};
    if (!mc_path_join(path, sizeof path, dir, "config.json")) {
        problem(p, "%s: %s: path too long", key, dir);
        return NULL;
    }
    p->n_checks++;
    if (!mc_file_exists(path))
        problem(p, "%s: %s: no config.json", key, dir);
    else if (mc_hf_config_load(dir, &hc, &e) != MC_OK)
        problem_code(p, e.code, "%s: %s", key, e.msg);
    if (mc_path_join(path, sizeof path, dir, "model.safetensors")) {
        p->n_checks++;
        mc_st_file *st = NULL;
        if (!mc_file_exists(path))
            problem(p, "%s: %s: no model.safetensors", key, dir);
        else if (mc_st_open(path, &st, &e) != MC_OK)
            problem_code(p, e.code, "%s: %s", key, e.msg);
        mc_st_close(&st);
    }
    if (!hc) return NULL;
    if (hc->family != MC_HF_MPNET &&
        mc_path_join(path, sizeof path, dir, "preprocessor_config.json")) {
        p->n_checks++;
        mc_preproc pp;
        int h, w;
        if (!mc_file_exists(path))
            problem(p, "%s: %s: no preprocessor_config.json", key, dir);
        else if (mc_preproc_load(dir, &pp, &e) != MC_OK)
            problem_code(p, e.code, "%s: %s", key, e.msg);
        else if (!mc_preproc_fixed_size(&pp, &h, &w))
            problem_code(p, MC_ERR_UNSUPPORTED,
                         "%s: %s: the output size depends on the image (no crop); batching "
                         "needs a fixed size",
                         key, path);
    }
    if (hc->family == MC_HF_CLIP) {
        snprintf(what, sizeof what, "%s: no vocab.json (CLIP tokenizer)", dir);
        if (mc_path_join(path, sizeof path, dir, "vocab.json") && check_file(p, key, path, what)) {
            json_t *o = NULL;
            if (mc_json_load(path, false, &o, &e) != MC_OK)
                problem_code(p, e.code, "%s: %s", key, e.msg);
            json_decref(o);
        }
        snprintf(what, sizeof what, "%s: no merges.txt (CLIP tokenizer)", dir);
        if (mc_path_join(path, sizeof path, dir, "merges.txt")) check_file(p, key, path, what);
    } else if (hc->family == MC_HF_MPNET) {
        snprintf(what, sizeof what, "%s: no vocab.txt (MPNet tokenizer)", dir);
        if (mc_path_join(path, sizeof path, dir, "vocab.txt")) check_file(p, key, path, what);
    }
    return hc;
}

/* ---- layers ------------------------------------------------------------------------------------ */

static void check_layer(pf *p, const mc_plan_model *m, const char *key, const char *layer,
                        int pool) {
    p->n_checks++;
    double pre;
    int64_t el;
    mc_error e = {0};
    if (mc_plan_layer(m, layer, pool, &pre, &el, &e) == MC_OK) return;
    if (m->family == MC_HF_RESNET)
        problem(p,
                "%s: '%s': not a layer of %s (it has e.g. stages.3, stages.3.layers.1.shortcut, "
                "pooler, logits; "
                "`miclip info %s` lists them)",
                key, layer, m->dir, m->dir);
    else
        problem(p, "%s: '%s': not a layer of %s (it has 0..%lld, %s)", key, layer, m->dir,
                (long long)m->L,
                m->family == MC_HF_CLIP ? "post_layernorm, image_embeds" : "layernorm, logits");
}

/* ---- datasets ---------------------------------------------------------------------------------- */

static void check_dataset(pf *p, const char *key, const mc_dataset_cfg *d,
                          const mc_hf_config *target) {
    char k[96], dir[4096];
    snprintf(k, sizeof k, "%s.root", key);
    if (!check_folder(p, k, d->root)) return;
    bool ok = true;
    if (d->kind == MC_DS_DTD) {
        if (!mc_path_join(dir, sizeof dir, d->root, "images") || !check_folder(p, k, dir))
            ok = false;
    } else if (d->split && d->split[0]) {
        snprintf(k, sizeof k, "%s.split", key);
        if (!mc_path_join(dir, sizeof dir, d->root, d->split) || !check_folder(p, k, dir))
            ok = false;
    }
    if (d->kind == MC_DS_FILELIST && !(d->labels && d->labels[0])) {
        problem(p, "%s.labels: a filelist dataset needs its list", key);
        ok = false;
    }
    if (d->labels && d->labels[0]) {
        snprintf(k, sizeof k, "%s.labels", key);
        ok = check_file(p, k, d->labels, NULL) && ok;
    }
    if (d->class_names && d->class_names[0]) {
        snprintf(k, sizeof k, "%s.class_names", key);
        ok = check_file(p, k, d->class_names, NULL) && ok;
    }
    if (!ok) return;
    /* the listing itself: class folders, images, unusable entries (as extraction lists it) */
    p->n_checks++;
    mc_dataset ds = {0};
    mc_error e = {0};
    const char *const *labels = target ? (const char *const *)target->labels : NULL;
    int n_labels = target && target->labels ? (int)target->num_labels : 0;
    if (mc_dataset_list(d, labels, n_labels, &ds, &e) != MC_OK)
        problem_code(p, e.code, "%s: %s", key, e.msg);
    mc_dataset_free(&ds);
}

/* ---- concepts ---------------------------------------------------------------------------------- */

static bool named_in(const mc_str_list *l, const char *name) {
    if (l->n == 0) return true; /* empty: every set */
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->v[i], name)) return true;
    return false;
}

static void check_concepts(pf *p, const mc_config *cfg, const needs *n) {
    for (int i = 0; i < cfg->concepts.n; i++) {
        const mc_concept_set_cfg *sc = &cfg->concepts.v[i];
        if (sc->source != MC_CONCEPTS_FILE) continue;
        bool used = n->stage[MC_STAGE_BASELINES] ||
                    (n->stage[MC_STAGE_LOCALIZE] && named_in(&cfg->localize.concepts, sc->name)) ||
                    (n->stage[MC_STAGE_DESCRIBE] && named_in(&cfg->describe.concepts, sc->name));
        if (!used) continue;
        char k[96];
        snprintf(k, sizeof k, "concepts[%d].file", i);
        if (!sc->file || !sc->file[0]) {
            problem(p, "%s: concept set '%s' (source: file) names no file", k, sc->name);
            continue;
        }
        check_file(p, k, sc->file, NULL);
    }
}

/* ---- output folder and disk -------------------------------------------------------------------- */

/* Before anything is created: the output folder, or its nearest existing parent, is a writable
 * folder. */
static bool check_output_access(pf *p, const char *out) {
    p->n_checks++;
    char dir[4096];
    if (!mc_strlcpy(dir, out, sizeof dir)) {
        problem(p, "output_dir: %s: path too long", out);
        return false;
    }
    for (;;) {
        struct stat sb;
        if (stat(dir, &sb) == 0) {
            if (!S_ISDIR(sb.st_mode)) {
                problem(p, "output_dir: %s: %s is not a folder", out, dir);
                return false;
            }
            if (access(dir, W_OK | X_OK) != 0) {
                if (!strcmp(dir, out))
                    problem_code(p, MC_ERR_IO, "output_dir: %s: not writable: %s", out,
                                 strerror(errno));
                else
                    problem_code(p, MC_ERR_IO,
                                 "output_dir: %s: cannot be created: %s is not writable (%s)", out,
                                 dir, strerror(errno));
                return false;
            }
            return true;
        }
        if (errno != ENOENT && errno != ENOTDIR) { /* ENOTDIR: a file above it, found next */
            problem_code(p, MC_ERR_IO, "output_dir: %s: cannot stat %s: %s", out, dir,
                         strerror(errno));
            return false;
        }
        char *slash = strrchr(dir, '/');
        if (!slash) return true; /* relative, nothing above exists: the current folder */
        if (slash == dir)
            slash[1] = '\0';
        else
            *slash = '\0';
    }
}

/* Creates the output folder and writes and removes a probe file through the atomic writer. */
static bool probe_output(pf *p, const char *out) {
    p->n_checks++;
    mc_error e = {0};
    char path[4096];
    if (mc_mkdir_p(out, &e) != MC_OK) {
        problem_code(p, e.code, "output_dir: %s", e.msg);
        return false;
    }
    if (!mc_snprintf(path, sizeof path, "%s/.miclip-preflight-%ld", out, (long)getpid())) {
        problem(p, "output_dir: %s: path too long", out);
        return false;
    }
    static const char probe[] = "miclip pre-flight write probe\n";
    if (mc_write_file_atomic(path, probe, sizeof probe - 1, &e) != MC_OK) {
        problem_code(p, e.code, "output_dir: %s: not writable: %s", out, e.msg);
        return false;
    }
    if (unlink(path) != 0) {
        problem_code(p, MC_ERR_IO, "output_dir: %s: cannot remove the probe file %s: %s", out, path,
                     strerror(errno));
        return false;
    }
    return true;
}

static double g_du; /* nftw has no user pointer */
static int du_visit(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)path, (void)ftw;
    if (flag == FTW_F && S_ISREG(sb->st_mode)) g_du += (double)sb->st_size;
    return 0;
}

static void check_disk(pf *p, const mc_comm *c, const mc_config *cfg, const needs *n) {
    const char *mode = getenv("MICLIP_DISK_CHECK");
    if (mode && !strcasecmp(mode, "off")) return;
    bool warn_only = mode && !strcasecmp(mode, "warn");
    p->n_checks++;
    mc_calibration cal;
    mc_calibration_defaults(&cal);
    mc_plan *plan = calloc(1, sizeof *plan);
    mc_error e = {0};
    if (!plan) {
        problem_code(p, MC_ERR_NOMEM, "out of memory");
        return;
    }
    if (mc_plan_make(cfg, c->size, 0, &cal, NULL, NULL, false, plan, &e) != MC_OK) {
        mc_warn("pre-flight: the disk space needed cannot be estimated (%s); not checked", e.msg);
        free(plan);
        return;
    }
    double need = 0;
    for (int i = 0; i < plan->n_stages; i++)
        if (n->stage[plan->st[i].stage]) need += plan->st[i].disk;
    free(plan);
    g_du = 0;
    nftw(cfg->output_dir, du_visit, 16, FTW_PHYS);
    double have = g_du, todo = need > have ? need - have : 0;
    double free_b = -1;
    const char *fake = getenv("MICLIP_PREFLIGHT_FREE_BYTES"); /* tests: pretend this much is free */
    if (fake && *fake)
        free_b = strtod(fake, NULL);
    else {
        struct statvfs sv;
        if (statvfs(cfg->output_dir, &sv) != 0) {
            mc_warn("pre-flight: statvfs %s: %s; free space not checked", cfg->output_dir,
                    strerror(errno));
            return;
        }
        free_b = (double)sv.f_bavail * (double)sv.f_frsize;
    }
    char fb[64], nb[64], hb[64];
    mc_plan_fmt_bytes(free_b, fb, sizeof fb);
    mc_plan_fmt_bytes(todo, nb, sizeof nb);
    mc_plan_fmt_bytes(have, hb, sizeof hb);
    if (free_b < todo) {
        if (warn_only)
            mc_warn("pre-flight: output_dir: %s: %s free, the run needs about %s "
                    "(MICLIP_DISK_CHECK=warn)",
                    cfg->output_dir, fb, nb);
        else
            problem_code(
                p, MC_ERR_IO,
                "output_dir: %s: %s free, the run needs about %s (`miclip plan`'s estimate, less "
                "the %s already there); free some space, or set MICLIP_DISK_CHECK=warn to go on",
                cfg->output_dir, fb, nb, hb);
    } else if (free_b < 1.2 * todo) {
        mc_warn("pre-flight: output_dir: %s: only %s free, the run needs about %s (less than 20%% "
                "to spare)",
                cfg->output_dir, fb, nb);
    }
}

/* ---- the pre-flight ------------------------------------------------------------------------------ */

static void preflight_local(const mc_comm *c, const mc_config *cfg, const needs *n, pf *p) {
    /* the stages' own checks (what the config alone tells) */
    for (int st = 0; st < MC_STAGE_COUNT; st++) {
        const mc_stage_desc *d = n->stage[st] ? mc_stage_find(st) : NULL;
        if (!d || !d->check) continue;
        p->n_checks++;
        mc_error e = {0};
        if (d->check(cfg, &e) != MC_OK) problem_code(p, e.code, "%s", e.msg);
    }
    mc_hf_config *target = NULL;
    bool models_ok = true;
    if (n->models) {
        int before = p->n_problems;
        target = check_model(p, "models.target", cfg->models.target);
        mc_hf_config *clip = NULL;
        bool same = !strcmp(cfg->models.target, cfg->models.clip);
        if (!same) clip = check_model(p, "models.clip", cfg->models.clip);
        const mc_hf_config *cl = same ? target : clip;
        if (cl && cl->family != MC_HF_CLIP)
            problem(p, "models.clip: %s is a %s model, not CLIP", cfg->models.clip,
                    mc_hf_family_name(cl->family));
        mc_hf_config_free(&clip);
        if (n->mpnet) {
            mc_hf_config *mp = check_model(p, "models.mpnet", cfg->models.mpnet);
            if (mp && mp->family != MC_HF_MPNET)
                problem(p, "models.mpnet: %s is a %s model, not MPNet", cfg->models.mpnet,
                        mc_hf_family_name(mp->family));
            mc_hf_config_free(&mp);
        }
        models_ok = p->n_problems == before;
    }
    /* layers, from the target's config.json alone */
    if (target && (n->extract_layers || n->sae_layer || n->int_layer)) {
        mc_plan_model *m = calloc(1, sizeof *m);
        mc_error e = {0};
        if (!m)
            problem_code(p, MC_ERR_NOMEM, "out of memory");
        else if (mc_plan_model_read(cfg->models.target, m, &e) != MC_OK)
            problem_code(p, e.code, "models.target: %s", e.msg);
        else {
            char k[64];
            for (int i = 0; n->extract_layers && i < cfg->extract.layers.n; i++) {
                snprintf(k, sizeof k, "extract.layers[%d]", i);
                check_layer(p, m, k, cfg->extract.layers.v[i], cfg->extract.pool);
            }
            if (n->sae_layer) check_layer(p, m, "sae.layer", cfg->sae.layer, cfg->extract.pool);
            if (n->int_layer)
                check_layer(p, m, "intervene.layer", cfg->intervene.layer, MC_CFG_POOL_ALL);
        }
        free(m);
    }
    if (n->train) check_dataset(p, "datasets.train", &cfg->datasets.train, target);
    if (n->eval) check_dataset(p, "datasets.eval", &cfg->datasets.eval, target);
    if (n->unseen) check_dataset(p, "datasets.unseen", &cfg->datasets.unseen, target);
    mc_hf_config_free(&target);
    if (n->concepts) check_concepts(p, cfg, n);
    /* the output folder last: created (and probed) only when nothing else is wrong */
    if (check_output_access(p, cfg->output_dir) && p->n_problems == 0 &&
        probe_output(p, cfg->output_dir) && n->models && models_ok)
        check_disk(p, c, cfg, n);
}

mc_status mc_preflight(const mc_comm *c, const mc_config *cfg, int only_stage, int *n_checks,
                       mc_error *err) {
    if (n_checks) *n_checks = 0;
    const char *env = getenv("MICLIP_PREFLIGHT");
    if (env && !strcasecmp(env, "off")) {
        mc_info0("pre-flight skipped (MICLIP_PREFLIGHT=off)");
        if (n_checks) *n_checks = -1;
        return MC_OK;
    }
    needs n;
    if (needs_of(cfg, only_stage, &n) == 0) return MC_OK; /* nothing to run: the caller says so */
    mc_status s = MC_OK;
    int counts[2] = {0, 0};
    if (c->rank == 0) {
        pf *p = calloc(1, sizeof *p);
        if (!p)
            s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        else {
            p->cfg = cfg;
            double t0 = mc_now();
            preflight_local(c, cfg, &n, p);
            counts[0] = p->n_checks, counts[1] = p->n_problems;
            if (p->n_problems > 1) {
                /* the list, in one write; the agreed error line (the first) follows */
                size_t cap = (size_t)MC_PREFLIGHT_SHOWN * (PF_LINE + 8) + 512, u = 0;
                char *buf = malloc(cap);
                if (buf) {
                    u += (size_t)snprintf(buf + u, cap - u,
                                          "miclip: pre-flight of %s found %d problems:\n",
                                          cfg->source_path, p->n_problems);
                    for (int i = 0; i < p->n_problems && i < MC_PREFLIGHT_SHOWN && u < cap; i++)
                        u += (size_t)snprintf(buf + u, cap - u, "  %s\n", p->lines[i]);
                    if (p->n_problems > MC_PREFLIGHT_SHOWN && u < cap)
                        snprintf(buf + u, cap - u, "  ... and %d more\n",
                                 p->n_problems - MC_PREFLIGHT_SHOWN);
                    fputs(buf, stderr);
                    fflush(stderr);
                    free(buf);
                }
            }
            if (p->n_problems == 1)
                s = MC_FAIL(err, p->first_code, "%s: %s", cfg->source_path, p->lines[0]);
            else if (p->n_problems > 1)
                s = MC_FAIL(
                    err, p->first_code, "%s: %s (and %d more pre-flight problem%s, listed above)",
                    cfg->source_path, p->lines[0], p->n_problems - 1, p->n_problems > 2 ? "s" : "");
            else
                mc_debug("pre-flight: %d checks passed in %.2f s", p->n_checks, mc_now() - t0);
            free(p);
        }
    }
    s = mc_comm_agree(c, s, err);
    MPI_Bcast(counts, 2, MPI_INT, 0, c->comm);
    if (n_checks) *n_checks = counts[0];
    return s;
}

int mc_preflight_report(const mc_comm *c, const mc_config *cfg) {
    mc_error err = {0};
    int n = 0;
    mc_status s = mc_preflight(c, cfg, -1, &n, &err);
    if (s != MC_OK) {
        if (c->rank == 0) mc_log_error_record(&err);
        return mc_status_exit_code(s);
    }
    if (c->rank == 0) {
        if (n < 0)
            printf("pre-flight: skipped (MICLIP_PREFLIGHT=off)\n");
        else
            printf("pre-flight: ok (%d checks)\n", n);
        fflush(stdout);
    }
    return MC_EXIT_OK;
}
