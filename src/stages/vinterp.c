/* vinterp.c - V-Interp (paper Appendix D.1, after Zhang et al. 2024) for the baselines stage:
 * each unit's top-activating training images go into a grid PNG and a JSON manifest; an explainer
 * the user provides (their LMM, a shell command) turns each grid into one line of text, or a JSON
 * file of descriptions made elsewhere is read instead; the descriptions are embedded with the CLIP
 * text tower and scored against each concept by cosine (baselines.c ranks the units with it).
 *
 * Determinism: rank 0 gathers every unit's top list, writes the grids, runs the explainer once per
 * unit in unit order and embeds the descriptions; the texts and their embeddings are broadcast, so
 * the outputs do not depend on the rank count. docs/baselines.md describes the protocol.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <mpi.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "baselines_internal.h"
#include "miclip/buf.h"
#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/image.h"
#include "miclip/json.h"
#include "miclip/log.h"
#include "miclip/plot.h"
#include "miclip/text.h"

#define VI_COLS 3
#define VI_TILE 128
#define VI_OUT_MAX (64 << 10) /* bytes of the explainer's stdout kept (the first line is used) */
#define VI_DESC_MAX 1000      /* bytes of one description */

mc_status mc_vinterp_check(const mc_config *cfg, mc_error *err) {
    const char *f = cfg->baselines.vinterp_descriptions;
    struct stat sb;
    if (f[0] && (stat(f, &sb) != 0 || !S_ISREG(sb.st_mode)))
        return MC_FAIL(err, MC_ERR_CONFIG, "%s: baselines.vinterp.descriptions: no such file: %s",
                       cfg->source_path, f);
    if (!f[0] && !cfg->baselines.vinterp_explainer[0])
        return MC_FAIL(err, MC_ERR_CONFIG, "%s: baselines.vinterp: set explainer or descriptions",
                       cfg->source_path);
    return MC_OK;
}

/* The first line of out, trimmed, into a malloc'd string (NULL when empty). */
static char *first_line(const char *out, size_t n) {
    size_t a = 0, b = 0;
    while (b < n && out[b] != '\n' && out[b]) b++;
    while (a < b && (out[a] == ' ' || out[a] == '\t' || out[a] == '\r')) a++;
    while (b > a && (out[b - 1] == ' ' || out[b - 1] == '\t' || out[b - 1] == '\r')) b--;
    if (b == a) return NULL;
    if (b - a > VI_DESC_MAX) b = a + VI_DESC_MAX;
    char *s = malloc(b - a + 1);
    if (s) memcpy(s, out + a, b - a), s[b - a] = 0;
    return s;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Runs `sh -c 'CMD "$@"' sh GRID MANIFEST` with stdin from /dev/null and reads its stdout; the
 * child gets its own process group so a timeout kills whatever it started. *desc: the first
 * line. Errors name the unit and the command. */
static mc_status run_explainer(const char *cmd, const char *grid, const char *manifest,
                               int64_t timeout, const char *unit, char **desc, mc_error *err) {
    *desc = NULL;
    char *script = NULL;
    size_t sl = strlen(cmd) + 16;
    script = malloc(sl);
    if (!script) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    snprintf(script, sl, "%s \"$@\"", cmd);
    int fd[2];
    if (pipe(fd) != 0) {
        free(script);
        return MC_FAIL(err, MC_ERR_IO, "V-Interp %s: pipe: %s", unit, strerror(errno));
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        free(script), close(fd[0]), close(fd[1]);
        return MC_FAIL(err, MC_ERR_IO, "V-Interp %s: fork: %s", unit, strerror(errno));
    }
    if (pid == 0) {
        setpgid(0, 0);
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0) dup2(nul, 0);
        dup2(fd[1], 1);
        close(fd[0]), close(fd[1]);
        execl("/bin/sh", "sh", "-c", script, "sh", grid, manifest, (char *)NULL);
        _exit(127);
    }
    free(script);
    setpgid(pid, pid); /* also here: no race with the child's own call */
    close(fd[1]);
    char *out = malloc(VI_OUT_MAX + 1);
    size_t n = 0;
    bool timed_out = false;
    const double end = now_s() + (double)timeout;
    for (;;) {
        double left = end - now_s();
        if (left <= 0) {
            timed_out = true;
            break;
        }
        struct pollfd p = {.fd = fd[0], .events = POLLIN};
        int r = poll(&p, 1, left > 1.0 ? 1000 : (int)(left * 1000) + 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) continue;
        char tmp[4096];
        ssize_t got = read(fd[0], tmp, sizeof tmp);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break; /* EOF (or an error: treated as the end of the output) */
        size_t keep = out && n < VI_OUT_MAX
                          ? (VI_OUT_MAX - n < (size_t)got ? VI_OUT_MAX - n : (size_t)got)
                          : 0;
        if (keep) memcpy(out + n, tmp, keep), n += keep;
    }
    close(fd[0]);
    if (timed_out) kill(-pid, SIGKILL);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    if (timed_out) {
        free(out);
        return MC_FAIL(err, MC_ERR_IO,
                       "V-Interp %s: the explainer '%s' took more than baselines.vinterp.timeout "
                       "(%lld s) and was stopped",
                       unit, cmd, (long long)timeout);
    }
    if (!out) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        free(out);
        if (WIFSIGNALED(st))
            return MC_FAIL(err, MC_ERR_IO,
                           "V-Interp %s: the explainer '%s' was killed by signal %d", unit, cmd,
                           WTERMSIG(st));
        return MC_FAIL(err, MC_ERR_IO, "V-Interp %s: the explainer '%s' exited with status %d",
                       unit, cmd, WEXITSTATUS(st));
    }
    *desc = first_line(out, n);
    free(out);
    if (!*desc)
        return MC_FAIL(err, MC_ERR_FORMAT,
                       "V-Interp %s: the explainer '%s' printed no description (its first "
                       "line of output is empty)",
                       unit, cmd);
    return MC_OK;
}

/* Rank 0: the grid PNG of one unit's top images. */
static mc_status write_grid(const char *path, const char *title, char *const *paths,
                            int64_t n_paths, const mc_train_data *td, const mc_scored *top,
                            int64_t k, mc_error *err) {
    mc_grid_tile *tiles = mc_calloc_array((size_t)k, sizeof *tiles);
    mc_image *img = mc_calloc_array((size_t)k, sizeof *img);
    mc_status s = tiles && img ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    for (int64_t j = 0; s == MC_OK && j < k; j++) {
        int32_t im = top[j].index;
        if (im < 0 || im >= n_paths) {
            s = MC_FAIL(err, MC_ERR_FORMAT, "%s: images/paths has no image %d", td->path, im);
            break;
        }
        s = mc_image_load(paths[im], NULL, &img[j], err);
        if (s != MC_OK) break;
        mc_grid_tile *t = &tiles[j];
        t->rgb = img[j].data, t->w = img[j].w, t->h = img[j].h;
        int32_t p = td->pred[im];
        mc_snprintf(t->caption, sizeof t->caption, "#%d %s", im,
                    p >= 0 && p < td->n_classes ? td->class_names[p] : "?");
        mc_snprintf(t->caption2, sizeof t->caption2, "act %.4g", top[j].score);
    }
    mc_grid g = {
        .n_tiles = (int)k, .cols = VI_COLS, .tile = VI_TILE, .tiles = tiles, .heat_max = 0};
    mc_strlcpy(g.title, title, sizeof g.title);
    uint8_t *png = NULL;
    size_t len = 0;
    if (s == MC_OK) s = mc_grid_render_png(&g, &png, &len, err);
    if (s == MC_OK) s = mc_write_file_atomic(path, png, len, err);
    free(png);
    for (int64_t j = 0; img && j < k; j++) mc_image_free(&img[j]);
    free(img), free(tiles);
    return s;
}

static mc_status json_write(const char *path, json_t *j, mc_error *err) {
    char *txt = j ? json_dumps(j, JSON_INDENT(1) | JSON_SORT_KEYS) : NULL;
    mc_status s = txt ? mc_write_text_file(path, txt, strlen(txt), err)
                      : MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    free(txt);
    return s;
}

/* Rank 0: grids, manifests and descriptions of every unit, in unit order. */
static mc_status describe_all(const mc_config *cfg, const mc_task *task, const mc_train_data *td,
                              int kind, int64_t U, const mc_scored *top, int64_t k,
                              char *const *paths, int64_t n_paths, const char *dir, json_t *index,
                              json_t *descs, char **out, mc_error *err) {
    const char *kn = mc_unit_kind_name(kind), *cmd = cfg->baselines.vinterp_explainer;
    json_t *file = NULL;
    mc_status s = MC_OK;
    if (!cmd[0]) s = mc_json_load(cfg->baselines.vinterp_descriptions, false, &file, err);
    char gdir[MC_PATH_CAP];
    if (s == MC_OK && !mc_snprintf(gdir, sizeof gdir, "%s/grids", dir))
        s = MC_FAIL(err, MC_ERR_ARG, "path too long: %s", dir);
    if (s == MC_OK) s = mc_mkdir_p(gdir, err);
    for (int64_t u = 0; s == MC_OK && u < U; u++) {
        char name[64], grid[MC_PATH_CAP], man[MC_PATH_CAP], title[200];
        snprintf(name, sizeof name, "%s-%lld", kn, (long long)u);
        if (!mc_snprintf(grid, sizeof grid, "%s/%s.png", gdir, name) ||
            !mc_snprintf(man, sizeof man, "%s/%s.json", gdir, name)) {
            s = MC_FAIL(err, MC_ERR_ARG, "path too long: %s", gdir);
            break;
        }
        snprintf(title, sizeof title, "%s %lld, layer %s, seed %lld: top %lld training images",
                 kind == MC_UNIT_SAE ? "SAE feature" : "neuron", (long long)u, task->layer,
                 (long long)task->seed, (long long)k);
        const mc_scored *t = top + u * k;
        s = write_grid(grid, title, paths, n_paths, td, t, k, err);
        json_t *m = json_object(), *imgs = json_array();
        if (s == MC_OK && (!m || !imgs)) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        for (int64_t j = 0; s == MC_OK && j < k; j++) {
            int32_t p = td->pred[t[j].index];
            json_t *e = json_pack("{s:i, s:s, s:f, s:s}", "index", (json_int_t)t[j].index, "path",
                                  paths[t[j].index], "activation", (double)t[j].score, "prediction",
                                  p >= 0 && p < td->n_classes ? td->class_names[p] : "");
            if (!e || json_array_append_new(imgs, e))
                s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        }
        if (s == MC_OK) {
            json_object_set_new(m, "unit", json_integer(u));
            json_object_set_new(m, "kind", json_string(kn));
            json_object_set_new(m, "name", json_string(name));
            json_object_set_new(m, "layer", json_string(task->layer));
            json_object_set_new(m, "seed", json_integer(task->seed));
            json_object_set_new(m, "grid", json_string(grid));
            json_object_set_new(m, "images", json_incref(imgs));
            s = json_write(man, m, err);
        }
        if (s == MC_OK && cmd[0]) {
            s = run_explainer(cmd, grid, man, cfg->baselines.vinterp_timeout, name, &out[u], err);
        } else if (s == MC_OK) {
            const char *fp = cfg->baselines.vinterp_descriptions;
            json_t *v = json_object_get(file, name);
            if (!v)
                s = MC_FAIL(err, MC_ERR_FORMAT,
                            "%s: baselines.vinterp.descriptions: no description for '%s' (every "
                            "unit of layer '%s' needs one)",
                            fp, name, task->layer);
            else if (!json_is_string(v))
                s = MC_FAIL(err, MC_ERR_FORMAT,
                            "%s: baselines.vinterp.descriptions: '%s' is not a string", fp, name);
            else if (strchr(json_string_value(v), '\n'))
                s = MC_FAIL(err, MC_ERR_FORMAT,
                            "%s: baselines.vinterp.descriptions: '%s' is more than one line", fp,
                            name);
            else if (!(out[u] = first_line(json_string_value(v), strlen(json_string_value(v)))))
                s = MC_FAIL(err, MC_ERR_FORMAT, "%s: baselines.vinterp.descriptions: '%s' is empty",
                            fp, name);
        }
        if (s == MC_OK) {
            json_object_set_new(m, "manifest", json_string(man));
            json_object_set_new(m, "description", json_string(out[u]));
            json_array_append(index, m);
            json_object_set_new(descs, name, json_string(out[u]));
        }
        json_decref(imgs);
        json_decref(m);
    }
    json_decref(file);
    return s;
}

mc_status mc_vinterp_describe(const mc_comm *c, const mc_config *cfg, const mc_task *task,
                              const mc_train_data *td, int kind, int64_t U, int64_t u0,
                              int64_t rows, const mc_scored *top, int64_t k, const char *dir,
                              json_t *index, json_t *descs, char ***desc_out, float **emb_out,
                              int64_t dim, mc_error *err) {
    *desc_out = NULL, *emb_out = NULL;
    /* Every unit's top list on rank 0, in unit order. */
    mc_scored *all = c->rank == 0 ? mc_alloc_array((size_t)(U * k + 1), sizeof(mc_scored)) : NULL;
    int *cnt = calloc((size_t)c->size, sizeof(int)), *dsp = calloc((size_t)c->size, sizeof(int));
    mc_status s =
        cnt && dsp && (c->rank || all) ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    if ((double)U * (double)k * sizeof(mc_scored) > 2147483647.0)
        s = MC_FAIL(err, MC_ERR_UNSUPPORTED, "V-Interp: too many units x images");
    MC_TRY(mc_comm_agree(c, s, err));
    (void)u0;
    int64_t off = 0;
    for (int q = 0; q < c->size; q++) {
        /* the ranks own contiguous row ranges in rank order (baselines.c's unit_rows) */
        int64_t a0 = 0, a1 = 0;
        mc_baselines_unit_rows(U, q, c->size, &a0, &a1);
        cnt[q] = (int)((a1 - a0) * k * (int64_t)sizeof(mc_scored)), dsp[q] = (int)off;
        off += cnt[q];
    }
    int rc = MPI_Gatherv(top, (int)(rows * k * (int64_t)sizeof(mc_scored)), MPI_BYTE, all, cnt, dsp,
                         MPI_BYTE, 0, c->comm);
    free(cnt), free(dsp);
    s = rc == MPI_SUCCESS
            ? MC_OK
            : MC_FAIL(err, MC_ERR_MPI, "MPI_Gatherv of the V-Interp top images failed");
    char **paths = NULL;
    int64_t n_paths = 0;
    if (s == MC_OK) s = mc_store_read_strings(td->st, "images/paths", &paths, &n_paths, err);
    s = mc_comm_agree(c, s, err);
    char **desc = mc_calloc_array((size_t)U + 1, sizeof(char *));
    float *emb = mc_alloc_array((size_t)(U * dim + 1), sizeof(float));
    if (s == MC_OK && (!desc || !emb))
        s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory for %lld descriptions", (long long)U);
    mc_buf joined = {0};
    if (s == MC_OK && c->rank == 0) {
        s = describe_all(cfg, task, td, kind, U, all, k, paths, n_paths, dir, index, descs, desc,
                         err);
        mc_text_encoder *enc = NULL;
        if (s == MC_OK) s = mc_text_encoder_load(cfg->models.clip, NULL, &enc, err);
        if (s == MC_OK && mc_text_encoder_dim(enc) != dim)
            s = MC_FAIL(err, MC_ERR_SHAPE,
                        "%s: text embeddings have width %d, the concept embeddings %lld",
                        cfg->models.clip, mc_text_encoder_dim(enc), (long long)dim);
        /* The descriptions are free text: embedded as they are (no prompt), L2-normalised. */
        if (s == MC_OK)
            s = mc_text_embed(enc, (const char *const *)desc, (size_t)U, NULL, true, emb, err);
        mc_text_encoder_free(&enc);
        for (int64_t u = 0; s == MC_OK && u < U; u++)
            mc_buf_printf(&joined, "%s%s", u ? "\n" : "", desc[u]);
        if (s == MC_OK && joined.oom) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    mc_strings_free(&paths, n_paths);
    free(all);
    s = mc_comm_agree(c, s, err);
    /* The texts (one line each) and their embeddings to every rank. */
    char *txt = c->rank == 0 ? joined.p : NULL;
    if (s == MC_OK && c->rank == 0 && !txt) txt = strdup("");
    if (s == MC_OK) s = mc_comm_bcast_string(c, 0, &txt, err);
    if (c->rank == 0) joined.p = NULL;
    mc_buf_free(&joined);
    if (s == MC_OK && MPI_Bcast(emb, (int)(U * dim), MPI_FLOAT, 0, c->comm) != MPI_SUCCESS)
        s = MC_FAIL(err, MC_ERR_MPI, "MPI_Bcast of the V-Interp embeddings failed");
    if (s == MC_OK && c->rank != 0) {
        char *p = txt;
        for (int64_t u = 0; u < U && p; u++) {
            char *nl = strchr(p, '\n');
            size_t n = nl ? (size_t)(nl - p) : strlen(p);
            desc[u] = malloc(n + 1);
            if (desc[u])
                memcpy(desc[u], p, n), desc[u][n] = 0;
            else
                s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
            p = nl ? nl + 1 : NULL;
        }
    }
    free(txt);
    s = mc_comm_agree(c, s, err);
    if (s != MC_OK) {
        mc_strings_free(&desc, U);
        free(emb);
        return s;
    }
    *desc_out = desc, *emb_out = emb;
    return MC_OK;
}

void mc_vinterp_scores(const float *emb, int64_t dim, int64_t u0, int64_t rows,
                       const mc_concepts *cs, float *S) {
    for (int64_t j = 0; j < cs->n; j++) {
        const float *e = cs->emb + j * cs->dim;
        double nn = 0;
        for (int64_t d = 0; d < dim; d++) nn += (double)e[d] * e[d];
        const double inv = nn > 0 ? 1.0 / sqrt(nn) : 0.0;
        for (int64_t u = 0; u < rows; u++) {
            const float *x = emb + (u0 + u) * dim;
            double dot = 0;
            for (int64_t d = 0; d < dim; d++) dot += (double)x[d] * e[d];
            S[u * cs->n + j] = (float)(dot * inv);
        }
    }
}
