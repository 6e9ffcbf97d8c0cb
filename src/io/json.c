/* json.c - strict JSON loading and typed getters (json.h). */
#include "miclip/json.h"

#include <stdlib.h>
#include <string.h>

#include "miclip/fsutil.h"

mc_status mc_json_loadb(const char *buf, size_t len, const char *label, bool allow_any,
                        json_t **out, mc_error *err) {
    *out = NULL;
    if (len > MC_JSON_MAX_BYTES)
        return MC_FAIL(err, MC_ERR_FORMAT, "%s: %zu bytes of JSON, more than the %u allowed", label,
                       len, MC_JSON_MAX_BYTES);
    json_error_t jerr;
    size_t flags = JSON_REJECT_DUPLICATES | (allow_any ? JSON_DECODE_ANY : 0);
    json_t *root = json_loadb(buf, len, flags, &jerr);
    if (!root)
        return MC_FAIL(err, MC_ERR_FORMAT, "%s: invalid JSON at line %d column %d: %s", label,
                       jerr.line, jerr.column, jerr.text);
    if (!allow_any && !json_is_object(root)) {
        json_decref(root);
        return MC_FAIL(err, MC_ERR_FORMAT, "%s: expected a JSON object at the top level", label);
    }
    *out = root;
    return MC_OK;
}

mc_status mc_json_load(const char *path, bool allow_any, json_t **out, mc_error *err) {
    *out = NULL;
    char *buf;
    size_t len;
    MC_TRY(mc_read_file(path, MC_JSON_MAX_BYTES, &buf, &len, err));
    mc_status st = mc_json_loadb(buf, len, path, allow_any, out, err);
    free(buf);
    return st;
}

/* The value of key, or NULL when absent or null. */
static json_t *get(const json_t *obj, const char *key) {
    json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    return json_is_null(v) ? NULL : v;
}

static mc_status missing(const char *key, const char *want, const char *file, mc_error *err) {
    return MC_FAIL(err, MC_ERR_FORMAT, "%s: required key '%s' (%s) is missing", file, key, want);
}

static const char *type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "a list";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

static mc_status wrong(const char *key, const char *want, const json_t *v, const char *file,
                       mc_error *err) {
    return MC_FAIL(err, MC_ERR_FORMAT, "%s: key '%s' must be %s, found %s", file, key, want,
                   type_name(v));
}

mc_status mc_json_get_int(const json_t *obj, const char *key, bool required, int64_t dflt,
                          int64_t *out, const char *file, mc_error *err) {
    json_t *v = get(obj, key);
    if (!v) {
        if (required) return missing(key, "an integer", file, err);
        *out = dflt;
        return MC_OK;
    }
    if (!json_is_integer(v)) return wrong(key, "an integer", v, file, err);
    *out = json_integer_value(v);
    return MC_OK;
}

mc_status mc_json_get_num(const json_t *obj, const char *key, bool required, double dflt,
                          double *out, const char *file, mc_error *err) {
    json_t *v = get(obj, key);
    if (!v) {
        if (required) return missing(key, "a number", file, err);
        *out = dflt;
        return MC_OK;
    }
    if (!json_is_number(v)) return wrong(key, "a number", v, file, err);
    *out = json_number_value(v);
    return MC_OK;
}

mc_status mc_json_get_bool(const json_t *obj, const char *key, bool required, bool dflt, bool *out,
                           const char *file, mc_error *err) {
    json_t *v = get(obj, key);
    if (!v) {
        if (required) return missing(key, "true or false", file, err);
        *out = dflt;
        return MC_OK;
    }
    if (!json_is_boolean(v)) return wrong(key, "true or false", v, file, err);
    *out = json_is_true(v);
    return MC_OK;
}

mc_status mc_json_get_str(const json_t *obj, const char *key, bool required, const char *dflt,
                          const char **out, const char *file, mc_error *err) {
    json_t *v = get(obj, key);
    if (!v) {
        if (required) return missing(key, "a string", file, err);
        *out = dflt;
        return MC_OK;
    }
    if (!json_is_string(v)) return wrong(key, "a string", v, file, err);
    *out = json_string_value(v);
    return MC_OK;
}

mc_status mc_json_get_obj(const json_t *obj, const char *key, bool required, json_t **out,
                          const char *file, mc_error *err) {
    *out = NULL;
    json_t *v = get(obj, key);
    if (!v) return required ? missing(key, "an object", file, err) : MC_OK;
    if (!json_is_object(v)) return wrong(key, "an object", v, file, err);
    *out = v;
    return MC_OK;
}

mc_status mc_json_get_array(const json_t *obj, const char *key, bool required, json_t **out,
                            const char *file, mc_error *err) {
    *out = NULL;
    json_t *v = get(obj, key);
    if (!v) return required ? missing(key, "a list", file, err) : MC_OK;
    if (!json_is_array(v)) return wrong(key, "a list", v, file, err);
    *out = v;
    return MC_OK;
}

mc_status mc_json_get_int_array(const json_t *obj, const char *key, int64_t *out, int n, int cap,
                                int *n_out, const char *file, mc_error *err) {
    json_t *a;
    MC_TRY(mc_json_get_array(obj, key, true, &a, file, err));
    size_t len = json_array_size(a);
    if (n >= 0 && len != (size_t)n)
        return MC_FAIL(err, MC_ERR_FORMAT, "%s: key '%s' must list %d integers, found %zu", file,
                       key, n, len);
    if (n < 0 && len > (size_t)cap)
        return MC_FAIL(err, MC_ERR_FORMAT, "%s: key '%s' lists %zu integers, at most %d allowed",
                       file, key, len, cap);
    for (size_t i = 0; i < len; i++) {
        json_t *v = json_array_get(a, i);
        if (!json_is_integer(v))
            return MC_FAIL(err, MC_ERR_FORMAT, "%s: key '%s'[%zu] must be an integer, found %s",
                           file, key, i, type_name(v));
        out[i] = json_integer_value(v);
    }
    if (n_out) *n_out = (int)len;
    return MC_OK;
}
