/* yaml_load.c - libyaml events to a node tree that keeps line and column for every node.
 *
 * libyaml only tokenises; the limits are ours: the text size, the nesting depth (libyaml 0.2.5
 * has none, and a deep "[[[[..." would otherwise grow our stack of open nodes without bound),
 * aliases (refused: they could expand a small file into a huge tree), tags, complex keys,
 * duplicate keys and more than one document. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "config/config_internal.h"
#include "miclip/checked.h"

static mc_ynode *node_new(mc_ykind kind, yaml_mark_t mark) {
    mc_ynode *n = calloc(1, sizeof *n);
    if (!n) return NULL;
    n->kind = kind;
    n->line = (int)mark.line + 1;
    n->col = (int)mark.column + 1;
    return n;
}

void mc_ynode_free(mc_ynode **np) {
    if (!np || !*np) return;
    mc_ynode *n = *np;
    for (int i = 0; i < n->n; i++) {
        if (n->items) mc_ynode_free(&n->items[i]);
        if (n->keys) mc_ynode_free(&n->keys[i]);
    }
    free(n->items);
    free(n->keys);
    free(n->str);
    free(n);
    *np = NULL;
}

const mc_ynode *mc_ynode_get(const mc_ynode *map, const char *key) {
    if (!map || map->kind != MC_Y_MAP) return NULL;
    for (int i = 0; i < map->n; i++)
        if (map->keys[i]->len == strlen(key) && !memcmp(map->keys[i]->str, key, map->keys[i]->len))
            return map->items[i];
    return NULL;
}

bool mc_ynode_is_null(const mc_ynode *n) {
    if (!n || n->kind != MC_Y_SCALAR || !n->plain) return false;
    return !strcmp(n->str, "") || !strcmp(n->str, "~") || !strcmp(n->str, "null") ||
           !strcmp(n->str, "Null") || !strcmp(n->str, "NULL");
}

/* Appends child (and key for mappings) to parent, growing the arrays. */
static bool node_push(mc_ynode *parent, mc_ynode *key, mc_ynode *child) {
    if (parent->n == parent->cap) {
        int cap = parent->cap ? parent->cap * 2 : 4;
        mc_ynode **items = realloc(parent->items, (size_t)cap * sizeof *items);
        if (!items) return false;
        parent->items = items;
        if (parent->kind == MC_Y_MAP) {
            mc_ynode **keys = realloc(parent->keys, (size_t)cap * sizeof *keys);
            if (!keys) return false;
            parent->keys = keys;
        }
        parent->cap = cap;
    }
    if (parent->kind == MC_Y_MAP) parent->keys[parent->n] = key;
    parent->items[parent->n++] = child;
    return true;
}

typedef struct {
    mc_ynode *node;
    mc_ynode *pending_key; /* mappings: the key read, waiting for its value */
    char path[256];        /* display path of this container ("sae", "concepts[1]") */
} frame;

typedef struct {
    const char *source;
    mc_error *err;
    frame stack[MC_CONFIG_MAX_DEPTH + 1];
    int depth;
    mc_ynode *root;
    int documents;
} loader;

static mc_status fail_at(loader *L, yaml_mark_t m, const char *msg, const char *detail) {
    return MC_FAIL(L->err, MC_ERR_CONFIG, "%s:%d:%d: %s%s", L->source, (int)m.line + 1,
                   (int)m.column + 1, msg, detail ? detail : "");
}

/* Places a finished node (scalar, or a container at its start) into the open parent. The
 * node is owned by the tree afterwards (or freed here on failure). */
static mc_status place(loader *L, mc_ynode *n, yaml_mark_t mark) {
    if (L->depth == 0) {
        if (L->root) {
            mc_ynode_free(&n);
            return fail_at(L, mark, "malformed YAML: more than one root node", NULL);
        }
        L->root = n;
        return MC_OK;
    }
    frame *f = &L->stack[L->depth - 1];
    if (f->node->kind == MC_Y_SEQ) {
        if (!node_push(f->node, NULL, n)) {
            mc_ynode_free(&n);
            return MC_FAIL(L->err, MC_ERR_NOMEM, "%s: out of memory parsing YAML", L->source);
        }
        return MC_OK;
    }
    if (!f->pending_key) {
        if (n->kind != MC_Y_SCALAR) {
            mc_ynode_free(&n);
            return fail_at(L, mark, "malformed YAML: mapping keys must be scalars", NULL);
        }
        if (f->node->n >= MC_YAML_MAX_MAP_KEYS) {
            mc_ynode_free(&n);
            return fail_at(L, mark, "a mapping has too many keys (the limit is 4096)", NULL);
        }
        for (int i = 0; i < f->node->n; i++) {
            const mc_ynode *k = f->node->keys[i];
            if (k->len == n->len && !memcmp(k->str, n->str, n->len)) {
                char detail[160];
                snprintf(detail, sizeof detail, " (first given at line %d, column %d)", k->line,
                         k->col);
                const char *p = f->path;
                mc_status s =
                    MC_FAIL(L->err, MC_ERR_CONFIG, "%s:%d:%d: key '%s%s%.200s': duplicate key%s",
                            L->source, n->line, n->col, p, *p ? "." : "", n->str, detail);
                mc_ynode_free(&n);
                return s;
            }
        }
        f->pending_key = n;
        return MC_OK;
    }
    mc_ynode *key = f->pending_key;
    f->pending_key = NULL;
    if (!node_push(f->node, key, n)) {
        mc_ynode_free(&key);
        mc_ynode_free(&n);
        return MC_FAIL(L->err, MC_ERR_NOMEM, "%s: out of memory parsing YAML", L->source);
    }
    return MC_OK;
}

static mc_status handle(loader *L, const yaml_event_t *ev) {
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (++L->documents > 1)
            return fail_at(L, ev->start_mark, "malformed YAML: only one document is allowed", NULL);
        return MC_OK;
    case YAML_ALIAS_EVENT:
        return fail_at(L, ev->start_mark, "YAML aliases (*name) are not supported in configs",
                       NULL);
    case YAML_SCALAR_EVENT:
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        const yaml_char_t *tag = ev->type == YAML_SCALAR_EVENT ? ev->data.scalar.tag
                                 : ev->type == YAML_SEQUENCE_START_EVENT
                                     ? ev->data.sequence_start.tag
                                     : ev->data.mapping_start.tag;
        if (tag)
            return fail_at(L, ev->start_mark, "YAML tags (!tag) are not supported in configs",
                           NULL);
        mc_ykind kind = ev->type == YAML_SCALAR_EVENT           ? MC_Y_SCALAR
                        : ev->type == YAML_SEQUENCE_START_EVENT ? MC_Y_SEQ
                                                                : MC_Y_MAP;
        mc_ynode *n = node_new(kind, ev->start_mark);
        if (!n) return MC_FAIL(L->err, MC_ERR_NOMEM, "%s: out of memory parsing YAML", L->source);
        if (kind == MC_Y_SCALAR) {
            n->len = ev->data.scalar.length;
            n->str = malloc(n->len + 1);
            if (!n->str) {
                mc_ynode_free(&n);
                return MC_FAIL(L->err, MC_ERR_NOMEM, "%s: out of memory parsing YAML", L->source);
            }
            memcpy(n->str, ev->data.scalar.value, n->len);
            n->str[n->len] = '\0';
            n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
            return place(L, n, ev->start_mark);
        }
        if (L->depth >= MC_CONFIG_MAX_DEPTH) {
            mc_ynode_free(&n);
            return fail_at(L, ev->start_mark, "YAML nesting is deeper than 64 levels", NULL);
        }
        /* The container's display path, for duplicate-key messages: taken before place()
         * consumes the pending key. */
        frame *nf = &L->stack[L->depth];
        char path[sizeof nf->path] = "";
        if (L->depth > 0) {
            const frame *pf = &L->stack[L->depth - 1];
            if (pf->node->kind == MC_Y_SEQ)
                snprintf(path, sizeof path, "%.200s[%d]", pf->path, pf->node->n);
            else if (pf->pending_key)
                snprintf(path, sizeof path, "%.120s%s%.120s", pf->path, *pf->path ? "." : "",
                         pf->pending_key->str);
        }
        memcpy(nf->path, path, sizeof path);
        MC_TRY(place(L, n, ev->start_mark));
        nf->node = n; /* owned by the tree now */
        nf->pending_key = NULL;
        L->depth++;
        return MC_OK;
    }
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        MC_ASSERT(L->depth > 0);
        /* libyaml never ends a mapping between key and value, but stay safe. */
        mc_ynode_free(&L->stack[L->depth - 1].pending_key);
        L->depth--;
        return MC_OK;
    default: return MC_OK;
    }
}

mc_status mc_yaml_parse(const char *text, size_t len, const char *source, mc_ynode **root,
                        mc_error *err) {
    *root = NULL;
    if (len > MC_CONFIG_MAX_BYTES)
        return MC_FAIL(err, MC_ERR_CONFIG, "%s:1:1: config is %zu bytes, more than the limit of %u",
                       source, len, (unsigned)MC_CONFIG_MAX_BYTES);
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return MC_FAIL(err, MC_ERR_NOMEM, "%s: cannot initialise the YAML parser", source);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    loader *L = calloc(1, sizeof *L);
    if (!L) {
        yaml_parser_delete(&parser);
        return MC_FAIL(err, MC_ERR_NOMEM, "%s: out of memory parsing YAML", source);
    }
    L->source = source;
    L->err = err;
    mc_status s = MC_OK;
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            char detail[512];
            snprintf(detail, sizeof detail, "%s%s%s",
                     parser.problem ? parser.problem : "syntax error", parser.context ? " " : "",
                     parser.context ? parser.context : "");
            s = fail_at(L, parser.problem_mark, "malformed YAML: ", detail);
            break;
        }
        bool end = ev.type == YAML_STREAM_END_EVENT;
        s = handle(L, &ev);
        yaml_event_delete(&ev);
        if (s != MC_OK || end) break;
    }
    for (int i = 0; i < L->depth; i++) mc_ynode_free(&L->stack[i].pending_key);
    if (s == MC_OK)
        *root = L->root;
    else
        mc_ynode_free(&L->root);
    free(L);
    yaml_parser_delete(&parser);
    return s;
}
