/* test_json.c - strict JSON loading (duplicates, malformed, size cap, top-level type), the
 * typed getters' errors (naming file and key), and config.json reading: family detection for
 * every supported architecture, the unsupported-model hint, id2label order and completeness,
 * num_labels consistency, and sentence-transformers MPNet folders. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "miclip/fsutil.h"
#include "miclip/hf.h"
#include "miclip/json.h"
#include "test_util.h"

static mc_status loadb(const char *text, bool any, json_t **out, mc_error *err) {
    memset(err, 0, sizeof *err);
    return mc_json_loadb(text, strlen(text), "t.json", any, out, err);
}

static void test_loader(void) {
    mc_error err;
    json_t *j = NULL;
    CHECK(loadb("{\"a\": 1, \"a\": 2}", false, &j, &err) == MC_ERR_FORMAT && !j);
    CHECK(strstr(err.msg, "t.json") && strstr(err.msg, "duplicate"));
    CHECK(loadb("{\"a\": [1, 2,}", false, &j, &err) == MC_ERR_FORMAT);
    CHECK(strstr(err.msg, "t.json") && strstr(err.msg, "line 1"));
    CHECK(loadb("[1, 2]", false, &j, &err) == MC_ERR_FORMAT);
    CHECK(strstr(err.msg, "object"));
    CHECK(loadb("[1, 2]", true, &j, &err) == MC_OK && json_is_array(j));
    json_decref(j);
    CHECK(loadb("3", true, &j, &err) == MC_OK && json_is_integer(j));
    json_decref(j);
    CHECK(loadb("", true, &j, &err) == MC_ERR_FORMAT);
    CHECK(loadb("{\"n\": 123456789012345678901234567890}", false, &j, &err) == MC_ERR_FORMAT);
    /* size cap, without allocating the bytes: the check precedes parsing */
    CHECK(mc_json_loadb("{}", (size_t)MC_JSON_MAX_BYTES + 1, "big.json", false, &j, &err) ==
          MC_ERR_FORMAT);
    CHECK(strstr(err.msg, "big.json") != NULL);
    CHECK(mc_json_load("/nonexistent/x.json", false, &j, &err) == MC_ERR_IO);
    CHECK(strstr(err.msg, "/nonexistent/x.json") != NULL);
}

static void test_getters(void) {
    mc_error err = {0};
    json_t *j = NULL;
    CHECK(loadb("{\"i\": 3, \"r\": 1e-12, \"b\": true, \"s\": \"x\", \"n\": null, "
                "\"o\": {\"k\": 1}, \"a\": [1, 2, 3], \"fa\": [1, 2.5], \"ri\": 2.0}",
                false, &j, &err) == MC_OK);
    int64_t i = 0;
    double d = 0;
    bool b = false;
    const char *s = NULL;
    json_t *o = NULL;
    CHECK(mc_json_get_int(j, "i", true, 0, &i, "c.json", &err) == MC_OK && i == 3);
    CHECK(mc_json_get_int(j, "zz", false, 7, &i, "c.json", &err) == MC_OK && i == 7);
    CHECK(mc_json_get_int(j, "n", false, 9, &i, "c.json", &err) == MC_OK && i == 9); /* null */
    CHECK(mc_json_get_int(j, "zz", true, 0, &i, "c.json", &err) == MC_ERR_FORMAT);
    CHECK(strstr(err.msg, "c.json") && strstr(err.msg, "'zz'") && strstr(err.msg, "missing"));
    CHECK(mc_json_get_int(j, "s", true, 0, &i, "c.json", &err) == MC_ERR_FORMAT);
    CHECK(strstr(err.msg, "c.json") && strstr(err.msg, "'s'") && strstr(err.msg, "a string"));
    CHECK(mc_json_get_int(j, "ri", true, 0, &i, "c.json", &err) == MC_ERR_FORMAT);
    CHECK(mc_json_get_num(j, "r", true, 0, &d, "c.json", &err) == MC_OK && d == 1e-12);
    CHECK(mc_json_get_num(j, "i", true, 0, &d, "c.json", &err) == MC_OK && d == 3.0);
    CHECK(mc_json_get_num(j, "b", true, 0, &d, "c.json", &err) == MC_ERR_FORMAT);
    CHECK(mc_json_get_bool(j, "b", true, false, &b, "c.json", &err) == MC_OK && b);
    CHECK(mc_json_get_bool(j, "i", true, false, &b, "c.json", &err) == MC_ERR_FORMAT);
    CHECK(mc_json_get_str(j, "s", true, NULL, &s, "c.json", &err) == MC_OK && !strcmp(s, "x"));
    CHECK(mc_json_get_str(j, "zz", false, NULL, &s, "c.json", &err) == MC_OK && s == NULL);
    CHECK(mc_json_get_obj(j, "o", true, &o, "c.json", &err) == MC_OK && json_is_object(o));
    CHECK(mc_json_get_obj(j, "a", true, &o, "c.json", &err) == MC_ERR_FORMAT && !o);
    CHECK(mc_json_get_array(j, "a", true, &o, "c.json", &err) == MC_OK && json_is_array(o));
    int64_t arr[4];
    int n = 0;
    CHECK(mc_json_get_int_array(j, "a", arr, 3, 3, &n, "c.json", &err) == MC_OK && n == 3 &&
          arr[2] == 3);
    CHECK(mc_json_get_int_array(j, "a", arr, 4, 4, &n, "c.json", &err) == MC_ERR_FORMAT);
    CHECK(mc_json_get_int_array(j, "a", arr, -1, 2, &n, "c.json", &err) == MC_ERR_FORMAT);
    CHECK(mc_json_get_int_array(j, "fa", arr, -1, 4, &n, "c.json", &err) == MC_ERR_FORMAT);
    CHECK(strstr(err.msg, "'fa'[1]") != NULL);
    json_decref(j);
}

static mc_status hf(const char *text, mc_hf_config **c, mc_error *err) {
    memset(err, 0, sizeof *err);
    return mc_hf_config_loadb(text, strlen(text), "m/config.json", "/nonexistent-dir", c, err);
}

static void test_hf(const char *tmpdir) {
    mc_error err;
    mc_hf_config *c = NULL;
    static const struct {
        const char *arch, *type;
        mc_hf_family fam;
    } ok[] = {{"ViTForImageClassification", "vit", MC_HF_VIT},
              {"ResNetForImageClassification", "resnet", MC_HF_RESNET},
              {"CLIPModel", "clip", MC_HF_CLIP},
              {"MPNetModel", "mpnet", MC_HF_MPNET},
              {"MPNetForMaskedLM", "mpnet", MC_HF_MPNET}};
    for (size_t k = 0; k < sizeof ok / sizeof ok[0]; k++) {
        char text[256];
        snprintf(text, sizeof text, "{\"architectures\": [\"%s\"], \"model_type\": \"%s\"}",
                 ok[k].arch, ok[k].type);
        CHECK_MSG(hf(text, &c, &err) == MC_OK, "%s: %s", ok[k].arch, err.msg);
        if (!c) continue;
        CHECK(c->family == ok[k].fam && !strcmp(c->architecture, ok[k].arch));
        CHECK(!strcmp(c->model_type, ok[k].type) && c->num_labels == 0 && !c->labels);
        CHECK(!strcmp(mc_hf_family_name(c->family), ok[k].type));
        mc_hf_config_free(&c);
        CHECK(c == NULL);
    }
    /* unsupported: names the architecture and lists the supported ones */
    CHECK(hf("{\"architectures\": [\"BertModel\"], \"model_type\": \"bert\"}", &c, &err) ==
              MC_ERR_UNSUPPORTED &&
          !c);
    CHECK(strstr(err.msg, "m/config.json") && strstr(err.msg, "BertModel") &&
          strstr(err.msg, "HINT") && strstr(err.msg, "CLIPModel"));
    CHECK(hf("{}", &c, &err) == MC_ERR_UNSUPPORTED);
    CHECK(hf("{\"architectures\": [\"CLIPModel\"], \"model_type\": \"vit\"}", &c, &err) ==
          MC_ERR_FORMAT);
    CHECK(strstr(err.msg, "model_type") != NULL);
    CHECK(hf("{\"architectures\": []}", &c, &err) == MC_ERR_FORMAT);
    CHECK(hf("{\"architectures\": \"CLIPModel\"}", &c, &err) == MC_ERR_FORMAT);
    CHECK(strstr(err.msg, "architectures") != NULL);
    /* mpnet without architectures: model_type suffices */
    CHECK(hf("{\"model_type\": \"mpnet\"}", &c, &err) == MC_OK && c && c->family == MC_HF_MPNET);
    mc_hf_config_free(&c);
    /* labels: order by id, not by key order in the file */
    CHECK(hf("{\"architectures\": [\"ViTForImageClassification\"], \"id2label\": {\"1\": \"dog\", "
             "\"0\": \"cat\", \"2\": \"eel\"}, \"num_labels\": 3}",
             &c, &err) == MC_OK);
    if (c) {
        CHECK(c->num_labels == 3 && !strcmp(c->labels[0], "cat") && !strcmp(c->labels[1], "dog") &&
              !strcmp(c->labels[2], "eel"));
        CHECK(c->model_type == NULL);
        mc_hf_config_free(&c);
    }
    const char *bad_labels[] = {
        "{\"architectures\": [\"ViTForImageClassification\"], \"id2label\": {\"0\": \"a\", \"2\": "
        "\"c\"}}",
        "{\"architectures\": [\"ViTForImageClassification\"], \"id2label\": {\"0\": \"a\", \"01\": "
        "\"b\"}}",
        "{\"architectures\": [\"ViTForImageClassification\"], \"id2label\": {\"0\": \"a\", \"-1\": "
        "\"b\"}}",
        "{\"architectures\": [\"ViTForImageClassification\"], \"id2label\": {\"0\": 5}}",
        "{\"architectures\": [\"ViTForImageClassification\"], \"id2label\": [\"a\"]}",
        "{\"architectures\": [\"ViTForImageClassification\"], \"id2label\": {\"0\": \"a\"}, "
        "\"num_labels\": 2}",
        "{\"architectures\": [\"ViTForImageClassification\"], \"num_labels\": -1}",
    };
    for (size_t k = 0; k < sizeof bad_labels / sizeof bad_labels[0]; k++) {
        CHECK_MSG(hf(bad_labels[k], &c, &err) == MC_ERR_FORMAT && !c, "accepted: %s",
                  bad_labels[k]);
        CHECK_MSG(strstr(err.msg, "m/config.json") &&
                      (strstr(err.msg, "id2label") || strstr(err.msg, "num_labels")),
                  "%s", err.msg);
    }
    /* num_labels without id2label gives Hugging Face's default names */
    CHECK(hf("{\"architectures\": [\"ResNetForImageClassification\"], \"num_labels\": 2}", &c,
             &err) == MC_OK);
    if (c) {
        CHECK(c->num_labels == 2 && !strcmp(c->labels[1], "LABEL_1"));
        mc_hf_config_free(&c);
    }

    /* folders on disk: missing folder, missing config, sentence-transformers detection */
    char dir[512], path[600];
    CHECK(mc_hf_config_load("/nonexistent-model-dir", &c, &err) == MC_ERR_IO);
    snprintf(dir, sizeof dir, "%s/st_model", tmpdir);
    CHECK(mc_mkdir_p(dir, &err) == MC_OK);
    CHECK(mc_hf_config_load(dir, &c, &err) == MC_ERR_IO && strstr(err.msg, "config.json"));
    snprintf(path, sizeof path, "%s/config.json", dir);
    const char *st_cfg = "{\"architectures\": [\"MPNetForSequenceClassification\"], "
                         "\"model_type\": \"mpnet\"}";
    CHECK(mc_write_file_atomic(path, st_cfg, strlen(st_cfg), &err) == MC_OK);
    CHECK(mc_hf_config_load(dir, &c, &err) == MC_ERR_UNSUPPORTED); /* not a s-t folder yet */
    snprintf(path, sizeof path, "%s/modules.json", dir);
    CHECK(mc_write_file_atomic(path, "[]", 2, &err) == MC_OK);
    CHECK(mc_hf_config_load(dir, &c, &err) == MC_OK && c && c->family == MC_HF_MPNET);
    if (c) {
        char w[700];
        CHECK(mc_hf_file(c, "model.safetensors", w, sizeof w) &&
              strstr(w, "st_model/model.safetensors"));
        CHECK(strstr(c->path, "st_model/config.json") != NULL);
        mc_hf_config_free(&c);
    }
    snprintf(path, sizeof path, "%s/config.json", dir);
    CHECK(mc_write_file_atomic(path, "{\"a\":1,\"a\":1}", 13, &err) == MC_OK);
    CHECK(mc_hf_config_load(dir, &c, &err) == MC_ERR_FORMAT && strstr(err.msg, path));
    unlink(path);
    snprintf(path, sizeof path, "%s/modules.json", dir);
    unlink(path);
    rmdir(dir);
}

int main(void) {
    char tmp[64];
    snprintf(tmp, sizeof tmp, "json_test_%ld", (long)getpid());
    mc_error err = {0};
    if (mc_mkdir_p(tmp, &err) != MC_OK) return 1;
    test_loader();
    test_getters();
    test_hf(tmp);
    rmdir(tmp);
    return TEST_SUMMARY();
}
