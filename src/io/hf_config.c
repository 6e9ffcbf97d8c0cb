/* hf_config.c - the generic part of a Hugging Face config.json (hf.h). */
#include "miclip/hf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/json.h"

static const struct {
    const char *arch;
    mc_hf_family family;
} known_archs[] = {
    {"ViTForImageClassification", MC_HF_VIT},
    {"ResNetForImageClassification", MC_HF_RESNET},
    {"CLIPModel", MC_HF_CLIP},
    {"MPNetModel", MC_HF_MPNET},
    {"MPNetForMaskedLM", MC_HF_MPNET},
};

static const char *family_names[MC_HF_FAMILY_COUNT] = {"vit", "resnet", "clip", "mpnet"};

const char *mc_hf_family_name(mc_hf_family f) {
    return (unsigned)f < MC_HF_FAMILY_COUNT ? family_names[f] : "?";
}

bool mc_hf_file(const mc_hf_config *cfg, const char *name, char *buf, size_t cap) {
    return mc_path_join(buf, cap, cfg->dir, name);
}

void mc_hf_config_free(mc_hf_config **cp) {
    if (!cp || !*cp) return;
    mc_hf_config *c = *cp;
    if (c->labels)
        for (int64_t i = 0; i < c->num_labels; i++) free(c->labels[i]);
    free(c->labels);
    free(c->dir);
    free(c->path);
    free(c->architecture);
    free(c->model_type);
    json_decref(c->root);
    free(c);
    *cp = NULL;
}

/* Parses a canonical non-negative decimal id ("0", "17"; not "01", "+1", "-0", " 1"). */
static bool parse_id(const char *s, int64_t limit, int64_t *out) {
    if (!s[0] || (s[0] == '0' && s[1])) return false;
    int64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') return false;
        v = v * 10 + (*p - '0');
        if (v >= limit) return false;
    }
    *out = v;
    return true;
}

static mc_status read_labels(mc_hf_config *c, mc_error *err) {
    const char *file = c->path;
    json_t *id2label;
    MC_TRY(mc_json_get_obj(c->root, "id2label", false, &id2label, file, err));
    int64_t num = -1;
    json_t *jn = json_object_get(c->root, "num_labels");
    if (jn && !json_is_null(jn)) {
        MC_TRY(mc_json_get_int(c->root, "num_labels", true, 0, &num, file, err));
        if (num < 0 || num > 10000000)
            return MC_FAIL(err, MC_ERR_FORMAT, "%s: num_labels %lld is out of range [0, 10000000]",
                           file, (long long)num);
    }
    int64_t n = id2label ? (int64_t)json_object_size(id2label) : (num > 0 ? num : 0);
    if (id2label && num >= 0 && num != n)
        return MC_FAIL(err, MC_ERR_FORMAT, "%s: num_labels is %lld but id2label has %lld entries",
                       file, (long long)num, (long long)n);
    c->num_labels = n;
    if (n == 0) return MC_OK;
    c->labels = mc_calloc_array((size_t)n, sizeof(char *));
    if (!c->labels)
        return MC_FAIL(err, MC_ERR_NOMEM, "%s: out of memory for %lld labels", file, (long long)n);
    if (!id2label) {
        for (int64_t i = 0; i < n; i++) {
            char buf[32];
            snprintf(buf, sizeof buf, "LABEL_%lld", (long long)i);
            if (!(c->labels[i] = mc_strdup(buf)))
                return MC_FAIL(err, MC_ERR_NOMEM, "%s: out of memory", file);
        }
        return MC_OK;
    }
    const char *key;
    json_t *val;
    json_object_foreach(id2label, key, val) {
        int64_t id;
        if (!parse_id(key, n, &id))
            return MC_FAIL(err, MC_ERR_FORMAT,
                           "%s: id2label key '%s' is not an id in 0..%lld (the keys must be "
                           "exactly \"0\"..\"%lld\")",
                           file, key, (long long)(n - 1), (long long)(n - 1));
        if (!json_is_string(val))
            return MC_FAIL(err, MC_ERR_FORMAT, "%s: id2label[\"%s\"] must be a string", file, key);
        /* n distinct keys all in [0, n): a repeat is impossible once JSON rejected duplicate
         * keys, except for spellings like "1" vs "01", which parse_id refuses. */
        MC_ASSERT(c->labels[id] == NULL);
        if (!(c->labels[id] = mc_strdup(json_string_value(val))))
            return MC_FAIL(err, MC_ERR_NOMEM, "%s: out of memory", file);
    }
    return MC_OK;
}

static mc_status detect_family(mc_hf_config *c, mc_error *err) {
    const char *file = c->path;
    static const char *hint =
        "HINT: miclip supports ViTForImageClassification (vit), ResNetForImageClassification "
        "(resnet), CLIPModel (clip), and MPNetModel/MPNetForMaskedLM or a sentence-transformers "
        "MPNet folder (mpnet)";
    int found = -1;
    if (c->architecture)
        for (size_t i = 0; i < sizeof known_archs / sizeof known_archs[0]; i++)
            if (!strcmp(c->architecture, known_archs[i].arch)) found = (int)known_archs[i].family;
    if (found < 0 && c->model_type && !strcmp(c->model_type, "mpnet")) {
        /* sentence-transformers folders describe the module stack in modules.json */
        char p1[4096], p2[4096];
        bool st_folder = mc_path_join(p1, sizeof p1, c->dir, "modules.json") &&
                         mc_path_join(p2, sizeof p2, c->dir, "sentence_bert_config.json") &&
                         (mc_file_exists(p1) || mc_file_exists(p2));
        if (!c->architecture || st_folder) found = MC_HF_MPNET;
    }
    if (found < 0)
        return MC_FAIL(
            err, MC_ERR_UNSUPPORTED,
            "%s: unsupported model: architectures[0] is %s%s%s, model_type is %s%s%s. %s", file,
            c->architecture ? "'" : "", c->architecture ? c->architecture : "absent",
            c->architecture ? "'" : "", c->model_type ? "'" : "",
            c->model_type ? c->model_type : "absent", c->model_type ? "'" : "", hint);
    c->family = (mc_hf_family)found;
    if (c->model_type && strcmp(c->model_type, family_names[found]))
        return MC_FAIL(err, MC_ERR_FORMAT,
                       "%s: model_type '%s' contradicts architecture '%s' (expected model_type "
                       "'%s')",
                       file, c->model_type, c->architecture ? c->architecture : "?",
                       family_names[found]);
    return MC_OK;
}

mc_status mc_hf_config_loadb(const char *buf, size_t len, const char *label, const char *dir,
                             mc_hf_config **out, mc_error *err) {
    *out = NULL;
    mc_hf_config *c = calloc(1, sizeof *c);
    if (!c || !(c->dir = mc_strdup(dir)) || !(c->path = mc_strdup(label))) {
        mc_hf_config_free(&c);
        return MC_FAIL(err, MC_ERR_NOMEM, "out of memory reading %s", label);
    }
    const char *path = c->path;
    mc_status st =
        len > MC_HF_CONFIG_MAX_BYTES
            ? MC_FAIL(err, MC_ERR_FORMAT, "%s: %zu bytes, more than the %u allowed for a config",
                      path, len, MC_HF_CONFIG_MAX_BYTES)
            : mc_json_loadb(buf, len, path, false, &c->root, err);
    json_t *archs = NULL;
    if (st == MC_OK) st = mc_json_get_array(c->root, "architectures", false, &archs, path, err);
    if (st == MC_OK && archs) {
        json_t *a0 = json_array_get(archs, 0);
        if (!json_is_string(a0))
            st = MC_FAIL(err, MC_ERR_FORMAT,
                         "%s: architectures must be a non-empty list of strings", path);
        else if (!(c->architecture = mc_strdup(json_string_value(a0))))
            st = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    const char *mt = NULL;
    if (st == MC_OK) st = mc_json_get_str(c->root, "model_type", false, NULL, &mt, path, err);
    if (st == MC_OK && mt && !(c->model_type = mc_strdup(mt)))
        st = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    if (st == MC_OK) st = read_labels(c, err);
    if (st == MC_OK) st = detect_family(c, err);
    if (st != MC_OK) {
        mc_hf_config_free(&c);
        return st;
    }
    *out = c;
    return MC_OK;
}

mc_status mc_hf_config_load(const char *dir, mc_hf_config **out, mc_error *err) {
    *out = NULL;
    char path[4096];
    if (!mc_path_join(path, sizeof path, dir, "config.json"))
        return MC_FAIL(err, MC_ERR_ARG, "model folder path too long: %s", dir);
    if (!mc_dir_exists(dir))
        return MC_FAIL(err, MC_ERR_IO,
                       "%s is not a directory (expected a Hugging Face model folder)", dir);
    if (!mc_file_exists(path))
        return MC_FAIL(err, MC_ERR_IO,
                       "%s not found. HINT: a model folder holds config.json and "
                       "model.safetensors, as saved by save_pretrained()",
                       path);
    char *buf = NULL;
    size_t len = 0;
    MC_TRY(mc_read_file(path, MC_HF_CONFIG_MAX_BYTES, &buf, &len, err));
    mc_status st = mc_hf_config_loadb(buf, len, path, dir, out, err);
    free(buf);
    return st;
}
