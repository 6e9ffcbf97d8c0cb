/* resolve.c - from a YAML node tree to a typed mc_config: schema-driven conversion and
 * validation, defaults, absolute paths, cross-key checks, the canonical text and its hash, and
 * the collective load (rank 0 reads, the canonical text is broadcast, every rank parses it). */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config_internal.h"
#include "miclip/checked.h"
#include "miclip/fsutil.h"

/* Every list in mc_config starts with (int n; T *v): the generic code sees them this way. */
typedef struct {
    int n;
    void *v;
} gen_list;
_Static_assert(offsetof(mc_str_list, v) == offsetof(gen_list, v), "list layout");
_Static_assert(offsetof(mc_int_list, v) == offsetof(gen_list, v), "list layout");
_Static_assert(offsetof(mc_f64_list, v) == offsetof(gen_list, v), "list layout");
_Static_assert(offsetof(mc_enum_list, v) == offsetof(gen_list, v), "list layout");

#define MC_KEY_MAX 256

typedef struct {
    const char *source;   /* file name for messages */
    const char *base_dir; /* absolute directory that relative paths resolve against */
    mc_config *cfg;
    mc_error *err;
} ctx;

/* ---- error messages --------------------------------------------------------------------- */

static mc_status failv(ctx *C, const mc_ynode *at, const char *key, const char *fmt, va_list ap) {
    char msg[MC_ERROR_MSG_MAX];
    vsnprintf(msg, sizeof msg, fmt, ap);
    int line = at ? at->line : 1, col = at ? at->col : 1;
    mc_status s;
    if (key && *key)
        s = MC_FAIL(C->err, MC_ERR_CONFIG, "%s:%d:%d: key '%s': %s", C->source, line, col, key,
                    msg);
    else
        s = MC_FAIL(C->err, MC_ERR_CONFIG, "%s:%d:%d: %s", C->source, line, col, msg);
    /* Keys come from the file: keep control bytes (tabs, escapes) out of the one-line message. */
    if (C->err)
        for (char *p = C->err->msg; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
    return s;
}

static mc_status __attribute__((format(printf, 4, 5)))
fail(ctx *C, const mc_ynode *at, const char *key, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    mc_status s = failv(C, at, key, fmt, ap);
    va_end(ap);
    return s;
}

static const char *kind_word(const mc_ynode *n) {
    if (!n) return "nothing";
    if (n->kind == MC_Y_MAP) return "a mapping";
    if (n->kind == MC_Y_SEQ) return "a list";
    if (mc_ynode_is_null(n)) return "an empty value";
    return n->plain ? "a plain scalar" : "a quoted string";
}

/* Shows a scalar in a message: at most 60 bytes, control bytes as '?'. */
static const char *shown(const mc_ynode *n, char buf[72]) {
    size_t i = 0;
    for (; i < n->len && i < 60; i++) {
        unsigned char ch = (unsigned char)n->str[i];
        buf[i] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
    }
    buf[i] = '\0';
    if (n->len > 60) strcpy(buf + 60, "...");
    return buf;
}

/* ---- scalar conversion ------------------------------------------------------------------ */

static mc_status need_scalar(ctx *C, const mc_ynode *n, const char *key, const char *what) {
    if (!n || n->kind != MC_Y_SCALAR || mc_ynode_is_null(n))
        return fail(C, n, key, "expected %s, found %s", what, kind_word(n));
    if (strlen(n->str) != n->len) return fail(C, n, key, "contains a NUL byte");
    return MC_OK;
}

static mc_status conv_int(ctx *C, const mc_schema_entry *e, const mc_ynode *n, const char *key,
                          int64_t *out) {
    MC_TRY(need_scalar(C, n, key, "an integer"));
    char b[72];
    const char *s = n->str;
    bool ok = n->plain && *s;
    size_t i = (*s == '-' || *s == '+') ? 1 : 0;
    if (!s[i]) ok = false;
    for (; ok && s[i]; i++)
        if (s[i] < '0' || s[i] > '9') ok = false;
    if (!ok && !n->plain)
        return fail(C, n, key,
                    "expected an integer, found the quoted string \"%s\" (drop the quotes)",
                    shown(n, b));
    if (!ok) return fail(C, n, key, "expected an integer, found '%s'", shown(n, b));
    errno = 0;
    long long v = strtoll(s, NULL, 10);
    if (errno == ERANGE || v < e->imin || v > e->imax)
        return fail(C, n, key, "%s is out of range [%lld, %lld]", shown(n, b), (long long)e->imin,
                    (long long)e->imax);
    *out = v;
    return MC_OK;
}

static bool parse_double(const mc_ynode *n, double *out) {
    if (!n->plain || !*n->str) return false;
    const char *s = n->str;
    /* Only decimal notation: strtod would also take "inf", "nan" and hex floats. */
    for (const char *p = s; *p; p++)
        if (!strchr("0123456789+-.eE", *p)) return false;
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || errno == ERANGE || !isfinite(v)) return false;
    *out = v;
    return true;
}

static mc_status check_float_range(ctx *C, const mc_schema_entry *e, const mc_ynode *n,
                                   const char *key, double v) {
    bool low = (e->flags & MC_F_MIN_OPEN) ? v <= e->fmin : v < e->fmin;
    if (low || v > e->fmax)
        return fail(C, n, key, "%.17g is out of range %s%g, %g]", v,
                    (e->flags & MC_F_MIN_OPEN) ? "(" : "[", e->fmin, e->fmax);
    return MC_OK;
}

static mc_status conv_float(ctx *C, const mc_schema_entry *e, const mc_ynode *n, const char *key,
                            double *out) {
    MC_TRY(need_scalar(C, n, key, "a number"));
    char b[72];
    double v;
    if (!parse_double(n, &v) && !n->plain)
        return fail(C, n, key,
                    "expected a number, found the quoted string \"%s\" (drop the quotes)",
                    shown(n, b));
    if (!parse_double(n, &v))
        return fail(C, n, key, "expected a finite number, found '%s'", shown(n, b));
    MC_TRY(check_float_range(C, e, n, key, v));
    *out = v;
    return MC_OK;
}

static bool is_ident(const char *s) {
    if (!*s) return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '-'))
            return false;
    return true;
}

static mc_status conv_string(ctx *C, const mc_schema_entry *e, const mc_ynode *n, const char *key,
                             char **out) {
    /* A quoted "" is an empty string; a plain empty value is null (a missing value). */
    if (n && n->kind == MC_Y_SCALAR && !n->plain && n->len == 0) {
        if (e->flags & (MC_F_NONEMPTY | MC_F_IDENT | MC_F_REQUIRED))
            return fail(C, n, key, "must not be empty");
    } else {
        MC_TRY(need_scalar(C, n, key, "a string"));
    }
    if ((e->flags & MC_F_IDENT) && !is_ident(n->str)) {
        char b[72];
        return fail(C, n, key, "'%s' is not a name: use letters, digits, '.', '_' and '-'",
                    shown(n, b));
    }
    *out = mc_strdup(n->str);
    if (!*out) return MC_FAIL(C->err, MC_ERR_NOMEM, "out of memory");
    return MC_OK;
}

static const char *nearest(const char *word, const char *const *cands, int count,
                           int stride_ignored) {
    (void)stride_ignored;
    const char *best = NULL;
    int best_d = INT_MAX;
    int cap = (int)strlen(word) / 3 > 2 ? (int)strlen(word) / 3 : 2;
    for (int i = 0; i < count; i++) {
        int d = mc_edit_distance(word, cands[i], cap);
        if (d <= cap && d < best_d) {
            best_d = d;
            best = cands[i];
        }
    }
    return best;
}

static mc_status conv_enum(ctx *C, const mc_schema_entry *e, const mc_ynode *n, const char *key,
                           int *out) {
    MC_TRY(need_scalar(C, n, key, "a name"));
    int count = 0;
    for (; e->names[count]; count++)
        if (!strcmp(e->names[count], n->str)) {
            *out = count;
            return MC_OK;
        }
    char list[512] = "", b[72];
    for (int i = 0; i < count; i++) {
        strncat(list, i ? "|" : "", sizeof list - strlen(list) - 1);
        strncat(list, e->names[i], sizeof list - strlen(list) - 1);
    }
    const char *near = nearest(n->str, e->names, count, 0);
    if (near)
        return fail(C, n, key, "unknown value '%s' (did you mean '%s'?); expected one of %s",
                    shown(n, b), near, list);
    return fail(C, n, key, "unknown value '%s'; expected one of %s", shown(n, b), list);
}

/* Lexically normalises an absolute path: collapses "//", "." and "..". */
static void normalize_path(char *p) {
    char *segs[PATH_MAX / 2];
    int ns = 0;
    char tmp[PATH_MAX];
    mc_strlcpy(tmp, p, sizeof tmp);
    for (char *save = NULL, *tok = strtok_r(tmp, "/", &save); tok;
         tok = strtok_r(NULL, "/", &save)) {
        if (!strcmp(tok, ".")) continue;
        if (!strcmp(tok, "..")) {
            if (ns > 0) ns--;
            continue;
        }
        segs[ns++] = tok;
    }
    char out[PATH_MAX] = "";
    size_t o = 0;
    for (int i = 0; i < ns; i++) {
        size_t l = strlen(segs[i]);
        out[o++] = '/';
        memcpy(out + o, segs[i], l);
        o += l;
    }
    if (o == 0) out[o++] = '/';
    out[o] = '\0';
    strcpy(p, out);
}

static mc_status conv_path(ctx *C, const mc_schema_entry *e, const mc_ynode *n, const char *key,
                           char **out) {
    char *s = NULL;
    MC_TRY(conv_string(C, e, n, key, &s));
    if (!*s) {
        *out = s;
        return MC_OK;
    }
    char sub[PATH_MAX];
    const char *src = s;
    if ((e->flags & MC_F_NAME_SUBST) && strstr(s, "{name}")) {
        /* Replace every "{name}" by the experiment name (converted before, schema order). */
        size_t o = 0;
        bool ok = true;
        for (const char *p = s; *p && ok;) {
            if (!strncmp(p, "{name}", 6)) {
                const char *nm = C->cfg->name ? C->cfg->name : "";
                size_t l = strlen(nm);
                if (o + l >= sizeof sub)
                    ok = false;
                else
                    memcpy(sub + o, nm, l), o += l;
                p += 6;
            } else if (o + 1 >= sizeof sub)
                ok = false;
            else
                sub[o++] = *p++;
        }
        sub[o] = '\0';
        if (!ok) {
            free(s);
            return fail(C, n, key, "path is too long");
        }
        src = sub;
    }
    char full[PATH_MAX];
    bool fits = src[0] == '/' ? mc_strlcpy(full, src, sizeof full)
                              : mc_path_join(full, sizeof full, C->base_dir, src);
    free(s);
    if (!fits) return fail(C, n, key, "path is too long");
    normalize_path(full);
    *out = mc_strdup(full);
    if (!*out) return MC_FAIL(C->err, MC_ERR_NOMEM, "out of memory");
    return MC_OK;
}

static mc_status conv_temp(ctx *C, const mc_schema_entry *e, const mc_ynode *n, const char *key,
                           mc_temperature_cfg *out) {
    MC_TRY(need_scalar(C, n, key, "'learnable' or a number"));
    if (!strcmp(n->str, "learnable")) {
        out->learnable = true;
        out->value = 0;
        return MC_OK;
    }
    double v;
    char b[72];
    if (!parse_double(n, &v))
        return fail(C, n, key, "expected 'learnable' or a positive number, found '%s'",
                    shown(n, b));
    if (v <= e->fmin || v > e->fmax)
        return fail(C, n, key, "%.17g is out of range (%g, %g]", v, e->fmin, e->fmax);
    out->learnable = false;
    out->value = v;
    return MC_OK;
}

/* `per_seed` (MC_SAMPLE_PER_SEED) or an integer in [imin, imax]. */
static mc_status conv_sample_seed(ctx *C, const mc_schema_entry *e, const mc_ynode *n,
                                  const char *key, int64_t *out) {
    MC_TRY(need_scalar(C, n, key, "'per_seed' or an integer"));
    if (n->plain && !strcmp(n->str, "per_seed")) {
        *out = MC_SAMPLE_PER_SEED;
        return MC_OK;
    }
    char b[72];
    const char *s = n->str;
    bool ok = n->plain && *s;
    for (size_t i = 0; ok && s[i]; i++)
        if (s[i] < '0' || s[i] > '9') ok = false;
    if (!ok)
        return fail(C, n, key, "expected 'per_seed' or a non-negative integer, found '%s'",
                    shown(n, b));
    return conv_int(C, e, n, key, out);
}

/* ---- lists ------------------------------------------------------------------------------ */

static mc_status conv_list(ctx *C, const mc_schema_entry *e, const mc_ynode *n, const char *key,
                           void *field) {
    gen_list *L = field;
    if (!n || n->kind != MC_Y_SEQ)
        return fail(C, n, key, "expected a list (e.g. [a, b]), found %s", kind_word(n));
    size_t esz = e->type == MC_T_INT_LIST     ? sizeof(int64_t)
                 : e->type == MC_T_FLOAT_LIST ? sizeof(double)
                 : e->type == MC_T_ENUM_LIST  ? sizeof(int)
                                              : sizeof(char *);
    if ((e->flags & MC_F_NONEMPTY) && n->n == 0)
        return fail(C, n, key, "must list at least one value");
    L->n = 0;
    L->v = n->n ? mc_calloc_array((size_t)n->n, esz) : NULL;
    if (n->n && !L->v) return MC_FAIL(C->err, MC_ERR_NOMEM, "out of memory");
    mc_schema_entry item = *e; /* the element type, same ranges */
    item.flags &= ~(unsigned)MC_F_REQUIRED;
    for (int i = 0; i < n->n; i++) {
        char ikey[MC_KEY_MAX];
        snprintf(ikey, sizeof ikey, "%s[%d]", key, i);
        const mc_ynode *it = n->items[i];
        switch (e->type) {
        case MC_T_INT_LIST: MC_TRY(conv_int(C, &item, it, ikey, (int64_t *)L->v + i)); break;
        case MC_T_FLOAT_LIST: MC_TRY(conv_float(C, &item, it, ikey, (double *)L->v + i)); break;
        case MC_T_ENUM_LIST: MC_TRY(conv_enum(C, &item, it, ikey, (int *)L->v + i)); break;
        default:
            item.flags |= MC_F_NONEMPTY;
            MC_TRY(conv_string(C, &item, it, ikey, (char **)L->v + i));
            break;
        }
        L->n = i + 1;
        if (e->flags & MC_F_UNIQUE) {
            for (int j = 0; j < i; j++) {
                bool same =
                    e->type == MC_T_INT_LIST     ? ((int64_t *)L->v)[j] == ((int64_t *)L->v)[i]
                    : e->type == MC_T_FLOAT_LIST ? ((double *)L->v)[j] == ((double *)L->v)[i]
                    : e->type == MC_T_ENUM_LIST  ? ((int *)L->v)[j] == ((int *)L->v)[i]
                                                 : !strcmp(((char **)L->v)[j], ((char **)L->v)[i]);
                if (same) return fail(C, it, ikey, "repeats item %d of the list", j);
            }
        }
    }
    if ((e->flags & MC_F_SORTED) && e->type == MC_T_ENUM_LIST) {
        int *v = L->v; /* insertion sort: lists are short */
        for (int i = 1; i < L->n; i++)
            for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
                int t = v[j];
                v[j] = v[j - 1];
                v[j - 1] = t;
            }
    }
    return MC_OK;
}

/* ---- sections --------------------------------------------------------------------------- */

static mc_status conv_section(ctx *C, const char *section, const char *path, const mc_ynode *map,
                              const mc_ynode *where, void *base);

/* Suggests a key for an unknown one: a close sibling, or the same name in another section. */
static void suggest_key(const char *section, const char *word, char *out, size_t cap) {
    out[0] = '\0';
    /* Zeroed: gcc -O2 -g (RelWithDebInfo) cannot see that nearest() reads only the first nc. */
    const char *cands[128] = {0};
    int nc = 0;
    for (int i = 0; i < mc_schema_count && nc < 128; i++)
        if (mc_schema_is_child(&mc_schema[i], section))
            cands[nc++] = mc_schema_leaf(mc_schema[i].key);
    const char *near = nearest(word, cands, nc, 0);
    if (near) {
        snprintf(out, cap, " (did you mean '%s'?)", near);
        return;
    }
    for (int i = 0; i < mc_schema_count; i++)
        if (!strcmp(mc_schema_leaf(mc_schema[i].key), word)) {
            snprintf(out, cap, " (did you mean '%s'? it belongs in a different section)",
                     mc_schema[i].key);
            return;
        }
    size_t o = (size_t)snprintf(out, cap, "; known keys here:");
    for (int i = 0; i < nc && o < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, " %s", cands[i]);
}

static void *field_at(void *base, const mc_schema_entry *e) { return (char *)base + e->offset; }

static mc_status conv_value(ctx *C, const mc_schema_entry *e, const mc_ynode *n, const char *key,
                            const mc_ynode *where, void *base) {
    void *f = field_at(base, e);
    switch (e->type) {
    case MC_T_SECTION:
        if (n && !mc_ynode_is_null(n) && n->kind != MC_Y_MAP)
            return fail(C, n, key, "expected a mapping of keys, found %s", kind_word(n));
        return conv_section(C, e->key, key, n && n->kind == MC_Y_MAP ? n : NULL, n ? n : where,
                            base);
    case MC_T_SECLIST: {
        gen_list *L = f;
        if (!n || n->kind != MC_Y_SEQ)
            return fail(C, n, key, "expected a list of mappings, found %s", kind_word(n));
        L->n = 0;
        L->v = n->n ? mc_calloc_array((size_t)n->n, e->elem_size) : NULL;
        if (n->n && !L->v) return MC_FAIL(C->err, MC_ERR_NOMEM, "out of memory");
        for (int i = 0; i < n->n; i++) {
            char ikey[MC_KEY_MAX];
            snprintf(ikey, sizeof ikey, "%s[%d]", key, i);
            L->n = i + 1; /* counted before filling, so a partial item is freed too */
            const mc_ynode *it = n->items[i];
            if (it->kind != MC_Y_MAP)
                return fail(C, it, ikey, "expected a mapping of keys, found %s", kind_word(it));
            MC_TRY(conv_section(C, e->key, ikey, it, it, (char *)L->v + (size_t)i * e->elem_size));
        }
        return MC_OK;
    }
    case MC_T_INT: return conv_int(C, e, n, key, f);
    case MC_T_FLOAT: return conv_float(C, e, n, key, f);
    case MC_T_BOOL: {
        MC_TRY(need_scalar(C, n, key, "true or false"));
        char b[72];
        if (n->plain && !strcmp(n->str, "true"))
            *(bool *)f = true;
        else if (n->plain && !strcmp(n->str, "false"))
            *(bool *)f = false;
        else
            return fail(C, n, key, "expected true or false, found '%s'", shown(n, b));
        return MC_OK;
    }
    case MC_T_STRING: return conv_string(C, e, n, key, f);
    case MC_T_PATH: return conv_path(C, e, n, key, f);
    case MC_T_ENUM: return conv_enum(C, e, n, key, f);
    case MC_T_TEMP: return conv_temp(C, e, n, key, f);
    case MC_T_SAMPLE_SEED: return conv_sample_seed(C, e, n, key, f);
    default: return conv_list(C, e, n, key, f);
    }
}

/* Converts the keys of `section` (schema path) found in map (may be NULL: all defaults);
 * path is the display path ("concepts[1]"), where the node to blame for missing keys. */
static mc_status conv_section(ctx *C, const char *section, const char *path, const mc_ynode *map,
                              const mc_ynode *where, void *base) {
    char key[MC_KEY_MAX];
    if (map) {
        for (int i = 0; i < map->n; i++) {
            const mc_ynode *k = map->keys[i];
            char full[MC_KEY_MAX];
            snprintf(full, sizeof full, "%s%s%s", section, *section ? "." : "", k->str);
            snprintf(key, sizeof key, "%s%s%s", path, *path ? "." : "", k->str);
            const mc_schema_entry *e = mc_schema_find(full);
            if (!e || !mc_schema_is_child(e, section) || strlen(k->str) != k->len) {
                char hint[600];
                suggest_key(section, k->str, hint, sizeof hint);
                return fail(C, k, key, "unknown key%s", hint);
            }
        }
    }
    for (int i = 0; i < mc_schema_count; i++) {
        const mc_schema_entry *e = &mc_schema[i];
        if (!mc_schema_is_child(e, section)) continue;
        snprintf(key, sizeof key, "%s%s%s", path, *path ? "." : "", mc_schema_leaf(e->key));
        const mc_ynode *n = mc_ynode_get(map, mc_schema_leaf(e->key));
        if (n) {
            MC_TRY(conv_value(C, e, n, key, where, base));
            continue;
        }
        if (e->type == MC_T_SECTION) {
            MC_TRY(conv_value(C, e, NULL, key, where, base));
            continue;
        }
        if (!e->def) {
            return fail(C, where, key, "missing required key");
        }
        /* The default is YAML text, converted by the same code as a user's value. */
        mc_ynode *d = NULL;
        mc_error derr = {0};
        if (mc_yaml_parse(e->def, strlen(e->def), "<default>", &d, &derr) != MC_OK || !d)
            MC_PANIC("schema default of %s does not parse: %s", e->key, derr.msg);
        mc_status s = conv_value(C, e, d, key, where, base);
        mc_ynode_free(&d);
        if (s != MC_OK) {
            /* Only a default that depends on other keys can fail ({name} too long). */
            mc_error_prefix(C->err, "(default value)");
            return s;
        }
    }
    return MC_OK;
}

/* ---- free ------------------------------------------------------------------------------- */

static void free_section(const char *section, void *base) {
    for (int i = 0; i < mc_schema_count; i++) {
        const mc_schema_entry *e = &mc_schema[i];
        if (!mc_schema_is_child(e, section)) continue;
        void *f = field_at(base, e);
        switch (e->type) {
        case MC_T_SECTION: free_section(e->key, base); break;
        case MC_T_SECLIST: {
            gen_list *L = f;
            for (int j = 0; j < L->n; j++)
                free_section(e->key, (char *)L->v + (size_t)j * e->elem_size);
            free(L->v);
            L->v = NULL;
            L->n = 0;
            break;
        }
        case MC_T_STRING:
        case MC_T_PATH:
            free(*(char **)f);
            *(char **)f = NULL;
            break;
        case MC_T_STRING_LIST: {
            mc_str_list *L = f;
            for (int j = 0; j < L->n; j++) free(L->v[j]);
            free(L->v);
            L->v = NULL;
            L->n = 0;
            break;
        }
        case MC_T_INT_LIST:
        case MC_T_FLOAT_LIST:
        case MC_T_ENUM_LIST: {
            gen_list *L = f;
            free(L->v);
            L->v = NULL;
            L->n = 0;
            break;
        }
        default: break;
        }
    }
}

void mc_config_free(mc_config **cfg) {
    if (!cfg || !*cfg) return;
    free_section("", *cfg);
    free((*cfg)->source_path);
    free((*cfg)->canonical);
    free(*cfg);
    *cfg = NULL;
}

/* ---- cross-key checks ------------------------------------------------------------------- */

/* The node of a dotted path ("sae.k", "concepts.1.file") for messages; falls back to the
 * deepest existing ancestor, so a defaulted key is blamed on its section. */
static const mc_ynode *node_at(const mc_ynode *root, const char *path) {
    const mc_ynode *cur = root, *best = root;
    char buf[MC_KEY_MAX];
    mc_strlcpy(buf, path, sizeof buf);
    for (char *save = NULL, *tok = strtok_r(buf, ".", &save); tok && cur;
         tok = strtok_r(NULL, ".", &save)) {
        if (cur->kind == MC_Y_SEQ) {
            long i = strtol(tok, NULL, 10);
            cur = i >= 0 && i < cur->n ? cur->items[i] : NULL;
        } else {
            cur = mc_ynode_get(cur, tok);
        }
        if (cur) best = cur;
    }
    return best;
}

static int str_index(const mc_str_list *L, const char *s) {
    for (int i = 0; i < L->n; i++)
        if (!strcmp(L->v[i], s)) return i;
    return -1;
}

static mc_status set_str(ctx *C, char **dst, const char *src) {
    char *s = mc_strdup(src);
    if (!s) return MC_FAIL(C->err, MC_ERR_NOMEM, "out of memory");
    free(*dst);
    *dst = s;
    return MC_OK;
}

static mc_status check_dataset(ctx *C, const mc_ynode *root, const char *name, mc_dataset_cfg *d) {
    char key[64];
    if (d->kind == MC_DS_NONE) {
        if (d->root[0] || d->split[0] || d->labels[0] || d->class_names[0] || d->n_samples ||
            d->sample_seed != MC_SAMPLE_PER_SEED) {
            snprintf(key, sizeof key, "datasets.%s.kind", name);
            return fail(C, node_at(root, key), key,
                        "is none (the default) but other keys of "
                        "datasets.%s are set: give the dataset's kind",
                        name);
        }
        return MC_OK;
    }
    if (!d->root[0]) {
        snprintf(key, sizeof key, "datasets.%s.root", name);
        return fail(C, node_at(root, key), key, "missing required key (datasets.%s.kind is %s)",
                    name, mc_dataset_kind_name(d->kind));
    }
    if (d->kind == MC_DS_FILELIST && !d->labels[0]) {
        snprintf(key, sizeof key, "datasets.%s.labels", name);
        return fail(C, node_at(root, key), key,
                    "missing required key (kind filelist reads its list from it)");
    }
    return MC_OK;
}

static mc_status resolve_concept_refs(ctx *C, const mc_ynode *root, const char *key,
                                      mc_str_list *refs) {
    mc_config *cfg = C->cfg;
    if (refs->n == 0 && cfg->concepts.n > 0) {
        /* Empty means every concept set: written out, so the canonical text says what ran. */
        refs->v = mc_calloc_array((size_t)cfg->concepts.n, sizeof(char *));
        if (!refs->v) return MC_FAIL(C->err, MC_ERR_NOMEM, "out of memory");
        for (int i = 0; i < cfg->concepts.n; i++) {
            refs->v[i] = mc_strdup(cfg->concepts.v[i].name);
            if (!refs->v[i]) return MC_FAIL(C->err, MC_ERR_NOMEM, "out of memory");
            refs->n = i + 1;
        }
        return MC_OK;
    }
    for (int i = 0; i < refs->n; i++) {
        bool found = false;
        for (int j = 0; j < cfg->concepts.n; j++)
            found |= !strcmp(cfg->concepts.v[j].name, refs->v[i]);
        if (!found) {
            char k[MC_KEY_MAX], p[MC_KEY_MAX];
            snprintf(k, sizeof k, "%s[%d]", key, i);
            snprintf(p, sizeof p, "%s.%d", key, i);
            return fail(C, node_at(root, p), k, "no concept set is named '%s' (see 'concepts')",
                        refs->v[i]);
        }
    }
    return MC_OK;
}

static bool has_enum(const mc_enum_list *L, int v) {
    for (int i = 0; i < L->n; i++)
        if (L->v[i] == v) return true;
    return false;
}

static mc_status cross_checks(ctx *C, const mc_ynode *root) {
    mc_config *cfg = C->cfg;
    MC_TRY(check_dataset(C, root, "train", &cfg->datasets.train));
    MC_TRY(check_dataset(C, root, "eval", &cfg->datasets.eval));
    MC_TRY(check_dataset(C, root, "unseen", &cfg->datasets.unseen));
    if (cfg->datasets.train.kind == MC_DS_NONE &&
        (mc_config_has_stage(cfg, MC_STAGE_EXTRACT) || mc_config_has_stage(cfg, MC_STAGE_ALIGN)))
        return fail(C, node_at(root, "datasets.train"), "datasets.train",
                    "missing required dataset (stages extract and align read it)");
    if (mc_config_has_stage(cfg, MC_STAGE_INTERVENE))
        for (int i = 0; i < cfg->intervene.datasets.n; i++) {
            int which = cfg->intervene.datasets.v[i];
            const mc_dataset_cfg *d =
                which == MC_EVAL_SET_EVAL ? &cfg->datasets.eval : &cfg->datasets.unseen;
            const char *nm = which == MC_EVAL_SET_EVAL ? "eval" : "unseen";
            if (d->kind == MC_DS_NONE) {
                char k[64];
                snprintf(k, sizeof k, "datasets.%s", nm);
                return fail(C, node_at(root, k), k,
                            "missing required dataset (intervene.datasets lists "
                            "'%s'; or drop intervene from 'stages')",
                            nm);
            }
        }

    /* Concept sets: unique names, a file for file sets. */
    for (int i = 0; i < cfg->concepts.n; i++) {
        mc_concept_set_cfg *cs = &cfg->concepts.v[i];
        char k[MC_KEY_MAX], p[MC_KEY_MAX];
        for (int j = 0; j < i; j++)
            if (!strcmp(cfg->concepts.v[j].name, cs->name)) {
                snprintf(k, sizeof k, "concepts[%d].name", i);
                snprintf(p, sizeof p, "concepts.%d.name", i);
                return fail(C, node_at(root, p), k,
                            "concept set '%s' is defined twice (also concepts[%d])", cs->name, j);
            }
        if (cs->source == MC_CONCEPTS_FILE && !cs->file[0]) {
            snprintf(k, sizeof k, "concepts[%d].file", i);
            snprintf(p, sizeof p, "concepts.%d", i);
            return fail(C, node_at(root, p), k, "missing required key (source is file)");
        }
        if (cs->source == MC_CONCEPTS_CLASSES && cs->file[0]) {
            snprintf(k, sizeof k, "concepts[%d].file", i);
            snprintf(p, sizeof p, "concepts.%d.file", i);
            return fail(C, node_at(root, p), k, "is set, but source is classes (set source: file)");
        }
    }
    MC_TRY(resolve_concept_refs(C, root, "localize.concepts", &cfg->localize.concepts));
    MC_TRY(resolve_concept_refs(C, root, "describe.concepts", &cfg->describe.concepts));

    /* Layers. */
    if (!cfg->sae.layer[0])
        MC_TRY(set_str(C, &cfg->sae.layer, cfg->extract.layers.v[0]));
    else if (str_index(&cfg->extract.layers, cfg->sae.layer) < 0)
        return fail(C, node_at(root, "sae.layer"), "sae.layer", "'%s' is not one of extract.layers",
                    cfg->sae.layer);
    if (!cfg->intervene.layer[0])
        MC_TRY(set_str(C, &cfg->intervene.layer, cfg->sae.layer));
    else if (str_index(&cfg->extract.layers, cfg->intervene.layer) < 0)
        return fail(C, node_at(root, "intervene.layer"), "intervene.layer",
                    "'%s' is not one of extract.layers", cfg->intervene.layer);

    /* SAE. */
    if (cfg->sae.k > cfg->sae.features)
        return fail(C, node_at(root, "sae.k"), "sae.k", "%lld is larger than sae.features (%lld)",
                    (long long)cfg->sae.k, (long long)cfg->sae.features);
    if (cfg->sae.input == MC_SAE_INPUT_ALL && cfg->extract.pool != MC_CFG_POOL_ALL)
        return fail(C, node_at(root, "sae.input"), "sae.input",
                    "'all' needs extract.pool: all (every "
                    "token/position stored)");

    /* Align. */
    const char *ph = strstr(cfg->align.prompt, "{}");
    if (!ph || strstr(ph + 2, "{}"))
        return fail(C, node_at(root, "align.prompt"), "align.prompt",
                    "must contain '{}' exactly once (where the class name goes)");

    /* Baselines. */
    for (int i = 0; i < cfg->baselines.methods.n; i++) {
        int m = cfg->baselines.methods.v[i];
        char k[64], p[64];
        snprintf(k, sizeof k, "baselines.methods[%d]", i);
        snprintf(p, sizeof p, "baselines.methods.%d", i);
        if (m == MC_METHOD_MICLIP || m == MC_METHOD_RANDOM || m == MC_METHOD_ORACLE)
            return fail(C, node_at(root, p), k,
                        "'%s' is not a baseline; expected one of "
                        "act_values|clip_dissect|netdissect|vinterp",
                        mc_method_name(m));
        if (m == MC_METHOD_VINTERP && !cfg->baselines.vinterp_descriptions[0] &&
            !cfg->baselines.vinterp_explainer[0])
            return fail(C, node_at(root, "baselines"), "baselines.vinterp.explainer",
                        "missing required key (baselines.methods lists vinterp): set "
                        "baselines.vinterp.explainer "
                        "or baselines.vinterp.descriptions");
        if (m == MC_METHOD_VINTERP && cfg->baselines.vinterp_descriptions[0] &&
            cfg->baselines.vinterp_explainer[0])
            return fail(C, node_at(root, "baselines.vinterp"), "baselines.vinterp",
                        "set one of explainer and descriptions, not both");
    }
    for (int i = 0; i < cfg->intervene.methods.n; i++) {
        int m = cfg->intervene.methods.v[i];
        if (m != MC_METHOD_MICLIP && m != MC_METHOD_RANDOM && m != MC_METHOD_ORACLE &&
            !has_enum(&cfg->baselines.methods, m)) {
            char k[64], p[64];
            snprintf(k, sizeof k, "intervene.methods[%d]", i);
            snprintf(p, sizeof p, "intervene.methods.%d", i);
            return fail(C, node_at(root, p), k,
                        "'%s' is not in baselines.methods, so it localizes no units",
                        mc_method_name(m));
        }
    }
    /* Interventions look each class up in the `source: classes` set (intervene.c, miclip_units):
     * without one, every method but random and oracle would fail only when intervene runs, after
     * the stages before it (no concepts at all means the implicit class set). */
    if (mc_config_has_stage(cfg, MC_STAGE_INTERVENE) && cfg->concepts.n > 0) {
        bool classes = false;
        for (int i = 0; i < cfg->concepts.n; i++)
            classes = classes || cfg->concepts.v[i].source == MC_CONCEPTS_CLASSES;
        for (int i = 0; i < cfg->intervene.methods.n && !classes; i++) {
            int m = cfg->intervene.methods.v[i];
            if (m == MC_METHOD_RANDOM || m == MC_METHOD_ORACLE) continue;
            return fail(C, node_at(root, "concepts"), "concepts",
                        "no set with 'source: classes', which intervene.methods' '%s' needs (a "
                        "class's units are those of its name in that set)",
                        mc_method_name(m));
        }
    }
    /* miclip's E_n variants: each one that align trains; none listed means the first. */
    mc_enum_list *iv = &cfg->intervene.variants;
    for (int i = 0; i < iv->n; i++)
        if (!has_enum(&cfg->align.variants, iv->v[i])) {
            char k[64], p[64];
            snprintf(k, sizeof k, "intervene.variants[%d]", i);
            snprintf(p, sizeof p, "intervene.variants.%d", i);
            return fail(C, node_at(root, p), k,
                        "'%s' is not in align.variants, so no E_n of it is trained",
                        mc_variant_name(iv->v[i]));
        }
    if (iv->n == 0) {
        int *v = realloc(iv->v, sizeof *v);
        if (!v) return MC_FAIL(C->err, MC_ERR_NOMEM, "out of memory");
        iv->v = v, iv->v[0] = cfg->align.variants.v[0], iv->n = 1;
    }
    return MC_OK;
}

bool mc_config_has_stage(const mc_config *cfg, mc_stage s) {
    return has_enum(&cfg->stages, (int)s);
}

/* ---- canonical text --------------------------------------------------------------------- */

typedef struct {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf;

static void __attribute__((format(printf, 2, 3))) sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int w = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (w < 0) {
            b->oom = true;
            return;
        }
        if (b->p && b->n + (size_t)w < b->cap) {
            b->n += (size_t)w;
            return;
        }
        size_t cap = (b->cap ? b->cap * 2 : 4096) + (size_t)w;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
}

static void put_string(sbuf *b, const char *s) {
    sb_printf(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            sb_printf(b, "\\%c", *p);
        else if (*p == '\n')
            sb_printf(b, "\\n");
        else if (*p == '\t')
            sb_printf(b, "\\t");
        else if (*p < 0x20 || *p == 0x7f)
            sb_printf(b, "\\x%02x", *p);
        /* YAML forbids C1 controls (U+0080..U+009F) and U+FFFE/U+FFFF unescaped in a stream,
         * and reads NEL (U+0085), LS (U+2028) and PS (U+2029) as line breaks, which a quoted
         * scalar folds into a space: escape them all so the canonical text always parses back
         * to the same string (the input was valid UTF-8, checked by libyaml, so the
         * continuation bytes are there). */
        else if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)
            sb_printf(b, "\\x%02x", *++p);
        else if (p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)) {
            sb_printf(b, "\\u%04X", 0x2000u | (p[2] - 0x80u));
            p += 2;
        } else if (p[0] == 0xef && p[1] == 0xbf && (p[2] == 0xbe || p[2] == 0xbf)) {
            sb_printf(b, "\\u%04X", 0xFF00u | (p[2] == 0xbe ? 0xFEu : 0xFFu));
            p += 2;
        } else
            sb_printf(b, "%c", *p);
    }
    sb_printf(b, "\"");
}

/* The shortest decimal that reads back as the same double, always with a '.' or an exponent. */
static void put_double(sbuf *b, double v) {
    char s[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(s, sizeof s, "%.*g", prec, v);
        if (strtod(s, NULL) == v) break;
    }
    if (!strpbrk(s, ".e")) strncat(s, ".0", sizeof s - strlen(s) - 1);
    sb_printf(b, "%s", s);
}

static void put_scalar(sbuf *b, const mc_schema_entry *e, const void *f) {
    switch (e->type) {
    case MC_T_INT: sb_printf(b, "%lld", (long long)*(const int64_t *)f); break;
    case MC_T_FLOAT: put_double(b, *(const double *)f); break;
    case MC_T_BOOL: sb_printf(b, "%s", *(const bool *)f ? "true" : "false"); break;
    case MC_T_STRING:
    case MC_T_PATH: put_string(b, *(char *const *)f); break;
    case MC_T_ENUM: sb_printf(b, "%s", e->names[*(const int *)f]); break;
    case MC_T_SAMPLE_SEED: {
        int64_t v = *(const int64_t *)f;
        if (v == MC_SAMPLE_PER_SEED)
            sb_printf(b, "per_seed");
        else
            sb_printf(b, "%lld", (long long)v);
        break;
    }
    case MC_T_TEMP: {
        const mc_temperature_cfg *t = f;
        if (t->learnable)
            sb_printf(b, "learnable");
        else
            put_double(b, t->value);
        break;
    }
    default: {
        const gen_list *L = f;
        sb_printf(b, "[");
        for (int i = 0; i < L->n; i++) {
            if (i) sb_printf(b, ", ");
            if (e->type == MC_T_INT_LIST)
                sb_printf(b, "%lld", (long long)((const int64_t *)L->v)[i]);
            else if (e->type == MC_T_FLOAT_LIST)
                put_double(b, ((const double *)L->v)[i]);
            else if (e->type == MC_T_ENUM_LIST)
                sb_printf(b, "%s", e->names[((const int *)L->v)[i]]);
            else
                put_string(b, ((char *const *)L->v)[i]);
        }
        sb_printf(b, "]");
    }
    }
}

static void dump_section(sbuf *b, const char *section, const void *base, int indent,
                         bool first_dash) {
    bool first = true;
    for (int i = 0; i < mc_schema_count; i++) {
        const mc_schema_entry *e = &mc_schema[i];
        if (!mc_schema_is_child(e, section)) continue;
        const void *f = (const char *)base + e->offset;
        int pad = indent;
        if (first && first_dash)
            sb_printf(b, "%*s- ", indent - 2, "");
        else
            sb_printf(b, "%*s", pad, "");
        first = false;
        sb_printf(b, "%s:", mc_schema_leaf(e->key));
        if (e->type == MC_T_SECTION) {
            sb_printf(b, "\n");
            dump_section(b, e->key, base, indent + 2, false);
        } else if (e->type == MC_T_SECLIST) {
            const gen_list *L = f;
            if (L->n == 0)
                sb_printf(b, " []\n");
            else
                sb_printf(b, "\n");
            for (int j = 0; j < L->n; j++)
                dump_section(b, e->key, (const char *)L->v + (size_t)j * e->elem_size, indent + 4,
                             true);
        } else {
            sb_printf(b, " ");
            put_scalar(b, e, f);
            sb_printf(b, "\n");
        }
    }
}

static mc_status make_canonical(ctx *C) {
    sbuf b = {0};
    dump_section(&b, "", C->cfg, 0, false);
    if (b.oom || !b.p) {
        free(b.p);
        return MC_FAIL(C->err, MC_ERR_NOMEM, "out of memory writing the resolved config");
    }
    C->cfg->canonical = b.p;
    mc_sha256_hex(b.p, b.n, C->cfg->hash);
    return MC_OK;
}

/* ---- entry points ----------------------------------------------------------------------- */

mc_status mc_config_parse_text(const char *text, size_t len, const char *source,
                               const char *base_dir, mc_config **out, mc_error *err) {
    *out = NULL;
    char cwd[PATH_MAX];
    if (!base_dir) {
        if (!getcwd(cwd, sizeof cwd))
            return MC_FAIL(err, MC_ERR_IO, "cannot read the current directory: %s",
                           strerror(errno));
        base_dir = cwd;
    }
    if (base_dir[0] != '/')
        return MC_FAIL(err, MC_ERR_ARG, "%s: base directory '%s' is not absolute", source,
                       base_dir);
    mc_ynode *root = NULL;
    MC_TRY(mc_yaml_parse(text, len, source, &root, err));
    ctx C = {.source = source, .base_dir = base_dir, .err = err};
    mc_status s = MC_OK;
    if (!root) {
        s = MC_FAIL(err, MC_ERR_CONFIG,
                    "%s:1:1: the config is empty (it needs at least name, models "
                    "and extract.layers)",
                    source);
        goto done;
    }
    if (root->kind != MC_Y_MAP) {
        s = fail(&C, root, NULL, "expected a mapping of keys at the top level, found %s",
                 kind_word(root));
        goto done;
    }
    C.cfg = calloc(1, sizeof *C.cfg);
    if (!C.cfg) {
        s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        goto done;
    }
    s = conv_section(&C, "", "", root, root, C.cfg);
    if (s == MC_OK) s = cross_checks(&C, root);
    if (s == MC_OK) s = make_canonical(&C);
    if (s == MC_OK) {
        C.cfg->source_path = mc_strdup(source);
        if (!C.cfg->source_path) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
done:
    mc_ynode_free(&root);
    if (s != MC_OK) mc_config_free(&C.cfg);
    *out = C.cfg;
    return s;
}

mc_status mc_config_parse_file(const char *path, mc_config **out, mc_error *err) {
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    mc_status s = mc_read_file(path, MC_CONFIG_MAX_BYTES, &text, &len, err);
    if (s != MC_OK) {
        /* A too-large file is a config error with a location, like every other. */
        if (s == MC_ERR_FORMAT)
            return MC_FAIL(err, MC_ERR_CONFIG,
                           "%s:1:1: the config is larger than the limit of %u bytes "
                           "(1 MiB)",
                           path, (unsigned)MC_CONFIG_MAX_BYTES);
        return s;
    }
    char dir[PATH_MAX], abs[PATH_MAX];
    mc_strlcpy(dir, path, sizeof dir);
    if (!realpath(dirname(dir), abs)) {
        free(text);
        return MC_FAIL(err, MC_ERR_IO, "%s: cannot resolve its directory: %s", path,
                       strerror(errno));
    }
    s = mc_config_parse_text(text, len, path, abs, out, err);
    free(text);
    return s;
}

mc_status mc_config_load(const mc_comm *c, const char *path, mc_config **out, mc_error *err) {
    *out = NULL;
    mc_config *cfg = NULL;
    mc_status s = MC_OK;
    if (c->rank == 0) s = mc_config_parse_file(path, &cfg, err);
    s = mc_comm_agree(c, s, err);
    if (s != MC_OK) {
        mc_config_free(&cfg);
        return s;
    }
    char *text = c->rank == 0 ? cfg->canonical : NULL;
    s = mc_comm_bcast_string(c, 0, &text, err);
    if (s == MC_OK && c->rank != 0) {
        /* Every rank parses the same canonical text; it must reproduce itself exactly. */
        s = mc_config_parse_text(text, strlen(text), path, "/", &cfg, err);
        if (s == MC_OK && strcmp(cfg->canonical, text) != 0)
            s = MC_FAIL(err, MC_ERR_INTERNAL, "%s: the canonical config does not reproduce itself",
                        path);
    }
    if (c->rank != 0) free(text);
    s = mc_comm_agree(c, s, err);
    if (s != MC_OK) {
        mc_config_free(&cfg);
        return s;
    }
    *out = cfg;
    return MC_OK;
}
