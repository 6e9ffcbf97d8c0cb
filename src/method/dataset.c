#include "miclip/dataset.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/hash.h"
#include "miclip/log.h"
#include "miclip/text.h"
#include "miclip/train.h"

/* A growable list of strings (owned). */
typedef struct {
    char **v;
    int64_t n, cap;
} str_vec;

static bool vec_push(str_vec *s, const char *str) {
    if (s->n == s->cap) {
        int64_t cap = s->cap ? s->cap * 2 : 64;
        char **v = realloc(s->v, (size_t)cap * sizeof *v);
        if (!v) return false;
        s->v = v;
        s->cap = cap;
    }
    char *d = mc_strdup(str);
    if (!d) return false;
    s->v[s->n++] = d;
    return true;
}

static void vec_free(str_vec *s) {
    for (int64_t i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_image_name(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot) return false;
    return !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg") || !strcasecmp(dot, ".png");
}

/* Entries of dir (sorted); dirs_only selects sub-folders, else image files. Every other entry
 * is counted in skipped; an image that cannot be used is an error (fsutil.h, mc_list_dir). */
static mc_status list_dir(const char *dir, bool dirs_only, str_vec *out, mc_skip_log *skipped,
                          mc_error *err) {
    char **v = NULL;
    int64_t n = 0;
    MC_TRY(mc_list_dir(dir, dirs_only ? MC_LIST_DIRS : MC_LIST_FILES, is_image_name, skipped, &v,
                       &n, err));
    mc_status s = MC_OK;
    for (int64_t i = 0; s == MC_OK && i < n; i++)
        if (!vec_push(out, v[i])) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory listing %s", dir);
    mc_list_free(v, n);
    return s;
}

/* "red_circle" -> "red circle" (the world's and many ImageFolders' convention). */
static void folder_to_name(const char *folder, char *buf, size_t cap) {
    mc_strlcpy(buf, folder, cap);
    for (char *p = buf; *p; p++)
        if (*p == '_') *p = ' ';
}

/* Reads "key<TAB>value" lines into two vectors. */
static mc_status read_tsv(const char *path, str_vec *keys, str_vec *vals, mc_error *err) {
    char *text = NULL;
    size_t len = 0;
    MC_TRY(mc_read_file(path, 256u << 20, &text, &len, err));
    mc_status s = mc_text_check_lines(path, text, len, err); /* names end up in stores and CSV */
    if (s != MC_OK) text[0] = '\0';
    int64_t line_no = 0;
    for (char *line = text, *next; line && *line; line = next) {
        line_no++;
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        size_t l = strlen(line);
        if (l && line[l - 1] == '\r') line[--l] = '\0';
        if (l == 0 || line[0] == '#') continue;
        char *tab = strchr(line, '\t');
        if (!tab) {
            /* one value per line: the key is the line number (flat ImageNet val labels) */
            char key[32];
            snprintf(key, sizeof key, "%lld", (long long)(keys->n));
            if (!vec_push(keys, key) || !vec_push(vals, line)) s = MC_ERR_NOMEM;
        } else {
            *tab = '\0';
            if (!vec_push(keys, line) || !vec_push(vals, tab + 1)) s = MC_ERR_NOMEM;
        }
        if (s != MC_OK) {
            s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory reading %s", path);
            break;
        }
    }
    (void)line_no;
    free(text);
    return s;
}

/* Index of name in id2label (case-insensitive), or -1. */
static int find_label(const char *const *id2label, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (id2label[i] && !strcasecmp(id2label[i], name)) return i;
    return -1;
}

/* Given the dataset's class keys (folder names or wnids) and their human names, decides the
 * label space: id2label when it covers every class, else the folder order. map[i] receives
 * the label of class key i. */
static mc_status label_space(const str_vec *keys, const str_vec *names, const char *const *id2label,
                             int n_labels, mc_dataset *ds, int32_t *map, mc_error *err) {
    bool covered = id2label && n_labels > 0 && keys->n > 0;
    for (int64_t i = 0; covered && i < keys->n; i++) {
        int l = find_label(id2label, n_labels, names->v[i]);
        if (l < 0)
            covered = false;
        else
            map[i] = l;
    }
    /* ImageNet: the sorted wnid folders are the standard class order, which is id2label's
     * order for every ImageNet-1k checkpoint; map by position when the counts agree. */
    bool wnids = keys->n > 0;
    for (int64_t i = 0; wnids && i < keys->n; i++) {
        const char *k = keys->v[i];
        wnids = k[0] == 'n' && strlen(k) == 9 && strspn(k + 1, "0123456789") == 8;
    }
    if (!covered && wnids && id2label && n_labels == keys->n) {
        covered = true;
        for (int64_t i = 0; i < keys->n; i++) map[i] = (int32_t)i;
    }
    int nc = covered ? n_labels : (int)keys->n;
    ds->class_names = calloc((size_t)(nc > 0 ? nc : 1), sizeof *ds->class_names);
    if (!ds->class_names) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    ds->n_classes = nc;
    for (int i = 0; i < nc; i++) {
        ds->class_names[i] = mc_strdup(covered ? id2label[i] : names->v[i]);
        if (!ds->class_names[i]) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        if (!covered) map[i] = (int32_t)i;
    }
    return MC_OK;
}

static mc_status push_image(mc_dataset *ds, int64_t *cap, const char *path, int32_t label,
                            mc_error *err) {
    if (ds->n == *cap) {
        int64_t nc = *cap ? *cap * 2 : 1024;
        char **p = realloc(ds->paths, (size_t)nc * sizeof *p);
        if (!p) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory listing images");
        ds->paths = p;
        int32_t *l = realloc(ds->labels, (size_t)nc * sizeof *l);
        if (!l) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory listing images");
        ds->labels = l;
        *cap = nc;
    }
    ds->paths[ds->n] = mc_strdup(path);
    if (!ds->paths[ds->n]) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory listing images");
    ds->labels[ds->n++] = label;
    return MC_OK;
}

/* Class folders under dir, each holding images. */
static mc_status list_class_folders(const char *dir, const mc_dataset_cfg *cfg,
                                    const char *const *id2label, int n_labels, mc_dataset *ds,
                                    mc_error *err) {
    str_vec classes = {0}, names = {0}, map_keys = {0}, map_vals = {0};
    int32_t *map = NULL;
    int64_t cap = 0;
    mc_status s = list_dir(dir, true, &classes, &ds->skipped, err);
    if (s == MC_OK && classes.n == 0)
        s = MC_FAIL(err, MC_ERR_IO, "%s has no class folders (expected %s/<class>/<images>)", dir,
                    dir);
    if (s == MC_OK && cfg->class_names && cfg->class_names[0])
        s = read_tsv(cfg->class_names, &map_keys, &map_vals, err);
    for (int64_t i = 0; s == MC_OK && i < classes.n; i++) {
        char name[1024];
        folder_to_name(classes.v[i], name, sizeof name);
        for (int64_t k = 0; k < map_keys.n; k++)
            if (!strcmp(map_keys.v[k], classes.v[i])) mc_strlcpy(name, map_vals.v[k], sizeof name);
        if (!vec_push(&names, name)) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    if (s == MC_OK) {
        map = calloc((size_t)(classes.n > n_labels ? classes.n : n_labels) + 1, sizeof *map);
        if (!map) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    if (s == MC_OK) s = label_space(&classes, &names, id2label, n_labels, ds, map, err);
    for (int64_t i = 0; s == MC_OK && i < classes.n; i++) {
        char cdir[4096];
        if (!mc_path_join(cdir, sizeof cdir, dir, classes.v[i])) {
            s = MC_FAIL(err, MC_ERR_ARG, "path too long: %s/%s", dir, classes.v[i]);
            break;
        }
        str_vec files = {0};
        s = list_dir(cdir, false, &files, &ds->skipped, err);
        for (int64_t f = 0; s == MC_OK && f < files.n; f++) {
            char path[4096];
            if (!mc_path_join(path, sizeof path, cdir, files.v[f]))
                s = MC_FAIL(err, MC_ERR_ARG, "path too long in %s", cdir);
            else
                s = push_image(ds, &cap, path, map[i], err);
        }
        vec_free(&files);
    }
    vec_free(&classes);
    vec_free(&names);
    vec_free(&map_keys);
    vec_free(&map_vals);
    free(map);
    return s;
}

/* path<TAB>class lines (filelist), or a flat folder with file<TAB>wnid labels (imagenet val). */
static mc_status list_from_labels(const char *root, const mc_dataset_cfg *cfg, bool flat_folder,
                                  const char *const *id2label, int n_labels, mc_dataset *ds,
                                  mc_error *err) {
    str_vec files = {0}, labels = {0}, classes = {0}, names = {0};
    int32_t *map = NULL;
    int64_t cap = 0;
    mc_status s = read_tsv(cfg->labels, &files, &labels, err);
    if (s == MC_OK && flat_folder) {
        /* "one wnid per line": keys are line numbers; pair them with the sorted image files */
        bool numbered = files.n > 0 && !strcmp(files.v[0], "0");
        if (numbered) {
            str_vec imgs = {0};
            s = list_dir(root, false, &imgs, &ds->skipped, err);
            if (s == MC_OK && imgs.n != files.n)
                s = MC_FAIL(err, MC_ERR_FORMAT, "%s has %lld labels but %s has %lld images",
                            cfg->labels, (long long)files.n, root, (long long)imgs.n);
            for (int64_t i = 0; s == MC_OK && i < imgs.n; i++) {
                free(files.v[i]);
                files.v[i] = mc_strdup(imgs.v[i]);
            }
            vec_free(&imgs);
        }
    }
    if (s == MC_OK && files.n == 0)
        s = MC_FAIL(err, MC_ERR_FORMAT, "%s lists no images", cfg->labels);
    /* the class keys: distinct labels, sorted */
    for (int64_t i = 0; s == MC_OK && i < labels.n; i++) {
        bool seen = false;
        for (int64_t k = 0; k < classes.n && !seen; k++) seen = !strcmp(classes.v[k], labels.v[i]);
        if (!seen && !vec_push(&classes, labels.v[i]))
            s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    if (s == MC_OK) qsort(classes.v, (size_t)classes.n, sizeof *classes.v, cmp_str);
    str_vec mk = {0}, mv = {0};
    if (s == MC_OK && cfg->class_names && cfg->class_names[0])
        s = read_tsv(cfg->class_names, &mk, &mv, err);
    for (int64_t i = 0; s == MC_OK && i < classes.n; i++) {
        char name[1024];
        folder_to_name(classes.v[i], name, sizeof name);
        for (int64_t k = 0; k < mk.n; k++)
            if (!strcmp(mk.v[k], classes.v[i])) mc_strlcpy(name, mv.v[k], sizeof name);
        if (!vec_push(&names, name)) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    vec_free(&mk);
    vec_free(&mv);
    if (s == MC_OK) {
        map = calloc((size_t)(classes.n > n_labels ? classes.n : n_labels) + 1, sizeof *map);
        if (!map) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    if (s == MC_OK) s = label_space(&classes, &names, id2label, n_labels, ds, map, err);
    /* sort (path, label) pairs by path: build "path\tclassindex" strings and sort them */
    str_vec pairs = {0};
    for (int64_t i = 0; s == MC_OK && i < files.n; i++) {
        int64_t c = 0;
        while (c < classes.n && strcmp(classes.v[c], labels.v[i])) c++;
        char path[4096], pair[4200];
        if (files.v[i][0] == '/')
            mc_strlcpy(path, files.v[i], sizeof path);
        else if (!mc_path_join(path, sizeof path, root, files.v[i])) {
            s = MC_FAIL(err, MC_ERR_ARG, "path too long: %s", files.v[i]);
            break;
        }
        snprintf(pair, sizeof pair, "%s\t%d", path, map[c]);
        if (!vec_push(&pairs, pair)) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    if (s == MC_OK) qsort(pairs.v, (size_t)pairs.n, sizeof *pairs.v, cmp_str);
    for (int64_t i = 0; s == MC_OK && i < pairs.n; i++) {
        char *tab = strrchr(pairs.v[i], '\t');
        *tab = '\0';
        s = push_image(ds, &cap, pairs.v[i], (int32_t)atoi(tab + 1), err);
    }
    vec_free(&pairs);
    vec_free(&files);
    vec_free(&labels);
    vec_free(&classes);
    vec_free(&names);
    free(map);
    return s;
}

mc_status mc_dataset_list(const mc_dataset_cfg *cfg, const char *const *id2label, int n_labels,
                          mc_dataset *ds, mc_error *err) {
    memset(ds, 0, sizeof *ds);
    if (cfg->kind == MC_DS_NONE) return MC_FAIL(err, MC_ERR_CONFIG, "dataset kind is none");
    char dir[4096];
    bool has_split = cfg->split && cfg->split[0];
    if (cfg->kind == MC_DS_DTD) {
        if (!mc_path_join(dir, sizeof dir, cfg->root, "images"))
            return MC_FAIL(err, MC_ERR_ARG, "path too long: %s", cfg->root);
    } else if (has_split) {
        if (!mc_path_join(dir, sizeof dir, cfg->root, cfg->split))
            return MC_FAIL(err, MC_ERR_ARG, "path too long: %s", cfg->root);
    } else {
        mc_strlcpy(dir, cfg->root, sizeof dir);
    }
    ds->root = mc_strdup(dir);
    if (!ds->root) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    if (!mc_dir_exists(dir)) {
        mc_status s = MC_FAIL(err, MC_ERR_IO, "dataset folder %s does not exist (kind %s)", dir,
                              mc_dataset_kind_name(cfg->kind));
        mc_dataset_free(ds);
        return s;
    }
    bool labelled = cfg->labels && cfg->labels[0];
    mc_status s;
    if (cfg->kind == MC_DS_FILELIST) {
        if (!labelled)
            s = MC_FAIL(err, MC_ERR_CONFIG, "a filelist dataset needs 'labels' (the list)");
        else
            s = list_from_labels(dir, cfg, false, id2label, n_labels, ds, err);
    } else if (cfg->kind == MC_DS_IMAGENET && labelled) {
        s = list_from_labels(dir, cfg, true, id2label, n_labels, ds, err);
    } else {
        s = list_class_folders(dir, cfg, id2label, n_labels, ds, err);
    }
    if (s == MC_OK && ds->n == 0)
        s = MC_FAIL(err, MC_ERR_IO, "no images (.jpg/.jpeg/.png) under %s", dir);
    if (s != MC_OK) mc_dataset_free(ds);
    return s;
}

/* Serialises the list as text lines: n_classes, class names, n, then "label\tpath" lines. */
static char *serialise(const mc_dataset *ds) {
    size_t cap = 64 + strlen(ds->root);
    for (int i = 0; i < ds->n_classes; i++) cap += strlen(ds->class_names[i]) + 2;
    for (int64_t i = 0; i < ds->n; i++) cap += strlen(ds->paths[i]) + 16;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    size_t used = (size_t)snprintf(buf, cap, "%s\n%d\n", ds->root, ds->n_classes);
    for (int i = 0; i < ds->n_classes; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s\n", ds->class_names[i]);
    used += (size_t)snprintf(buf + used, cap - used, "%lld\n", (long long)ds->n);
    for (int64_t i = 0; i < ds->n; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%d\t%s\n", ds->labels[i], ds->paths[i]);
    return buf;
}

static mc_status deserialise(char *text, mc_dataset *ds, mc_error *err) {
    memset(ds, 0, sizeof *ds);
    char *save = NULL;
    char *line = strtok_r(text, "\n", &save);
    if (!line) return MC_FAIL(err, MC_ERR_INTERNAL, "empty dataset broadcast");
    ds->root = mc_strdup(line);
    line = strtok_r(NULL, "\n", &save);
    ds->n_classes = line ? atoi(line) : 0;
    ds->class_names = calloc((size_t)ds->n_classes + 1, sizeof *ds->class_names);
    for (int i = 0; i < ds->n_classes; i++) {
        line = strtok_r(NULL, "\n", &save);
        ds->class_names[i] = mc_strdup(line ? line : "");
    }
    line = strtok_r(NULL, "\n", &save);
    ds->n = line ? atoll(line) : 0;
    ds->paths = calloc((size_t)ds->n + 1, sizeof *ds->paths);
    ds->labels = calloc((size_t)ds->n + 1, sizeof *ds->labels);
    if (!ds->root || !ds->class_names || !ds->paths || !ds->labels)
        return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < ds->n; i++) {
        line = strtok_r(NULL, "\n", &save);
        char *tab = line ? strchr(line, '\t') : NULL;
        if (!tab) return MC_FAIL(err, MC_ERR_INTERNAL, "malformed dataset broadcast");
        *tab = '\0';
        ds->labels[i] = (int32_t)atoi(line);
        ds->paths[i] = mc_strdup(tab + 1);
        if (!ds->paths[i]) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    return MC_OK;
}

mc_status mc_dataset_load(const mc_comm *c, const mc_dataset_cfg *cfg, const char *const *id2label,
                          int n_labels, mc_dataset *out, mc_error *err) {
    memset(out, 0, sizeof *out);
    char *text = NULL;
    mc_status s = MC_OK;
    if (c->rank == 0) {
        s = mc_dataset_list(cfg, id2label, n_labels, out, err);
        if (s == MC_OK && !(text = serialise(out))) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    s = mc_comm_agree(c, s, err);
    if (s != MC_OK) {
        mc_dataset_free(out);
        free(text);
        return s;
    }
    int64_t n_skipped = c->rank == 0 ? out->skipped.n : 0;
    MPI_Bcast(&n_skipped, 1, MPI_INT64_T, 0, c->comm);
    if (c->rank == 0 && n_skipped) { /* once, on the rank that listed */
        char ex[2048];
        mc_skip_log_format(&out->skipped, ex, sizeof ex);
        /* every task lists its dataset again: once per run and folder, counted (log.h) */
        char key[160];
        snprintf(key, sizeof key, "dataset %s: skipped entries", out->root);
        mc_warn_once(key, "dataset %s: skipped %lld folder entr%s that %s not images: %s",
                     out->root, (long long)n_skipped, n_skipped == 1 ? "y" : "ies",
                     n_skipped == 1 ? "is" : "are", ex);
    }
    s = mc_comm_bcast_string(c, 0, &text, err);
    if (s == MC_OK && c->rank != 0) s = deserialise(text, out, err);
    out->skipped.n = n_skipped;
    free(text);
    s = mc_comm_agree(c, s, err);
    if (s != MC_OK) mc_dataset_free(out);
    return s;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

mc_status mc_dataset_sample(mc_dataset *ds, int64_t n, uint64_t seed, mc_error *err) {
    if (n <= 0 || n >= ds->n) return MC_OK;
    int64_t *perm = mc_alloc_array((size_t)ds->n, sizeof *perm);
    if (!perm)
        return MC_FAIL(err, MC_ERR_NOMEM, "out of memory sampling %lld images", (long long)n);
    mc_rng_permutation(seed, MC_RNG_STREAM_SUBSET, ds->n, perm);
    qsort(perm, (size_t)n, sizeof *perm, cmp_i64);
    char *keep_mark = calloc((size_t)ds->n, 1);
    if (!keep_mark) {
        free(perm);
        return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    for (int64_t i = 0; i < n; i++) keep_mark[perm[i]] = 1;
    int64_t w = 0;
    for (int64_t i = 0; i < ds->n; i++) {
        if (keep_mark[i]) {
            ds->paths[w] = ds->paths[i];
            ds->labels[w] = ds->labels[i];
            w++;
        } else {
            free(ds->paths[i]);
        }
    }
    ds->n = w;
    free(keep_mark);
    free(perm);
    return MC_OK;
}

void mc_dataset_hash(const mc_dataset *ds, char hex[65]) {
    mc_sha256 h;
    mc_sha256_init(&h);
    for (int i = 0; i < ds->n_classes; i++)
        mc_sha256_update(&h, ds->class_names[i], strlen(ds->class_names[i]) + 1);
    for (int64_t i = 0; i < ds->n; i++) {
        mc_sha256_update(&h, ds->paths[i], strlen(ds->paths[i]) + 1);
        mc_sha256_update(&h, &ds->labels[i], sizeof ds->labels[i]);
    }
    uint8_t d[MC_SHA256_BYTES];
    mc_sha256_final(&h, d);
    mc_hex_encode(d, MC_SHA256_BYTES, hex);
}

void mc_dataset_free(mc_dataset *ds) {
    if (!ds) return;
    for (int64_t i = 0; i < ds->n; i++) free(ds->paths ? ds->paths[i] : NULL);
    free(ds->paths);
    free(ds->labels);
    for (int i = 0; i < ds->n_classes; i++) free(ds->class_names ? ds->class_names[i] : NULL);
    free(ds->class_names);
    free(ds->root);
    memset(ds, 0, sizeof *ds);
}
