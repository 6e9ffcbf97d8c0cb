/* config_internal.h - what the files of src/config share: the YAML node tree (yaml_load.c),
 * the schema table (schema.c) and the resolver's helpers (resolve.c). Not a public API. */
#ifndef MICLIP_CONFIG_INTERNAL_H
#define MICLIP_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "miclip/config.h"

/* ---- YAML node tree ----------------------------------------------------------------------- */
typedef enum { MC_Y_SCALAR, MC_Y_SEQ, MC_Y_MAP } mc_ykind;

typedef struct mc_ynode {
    mc_ykind kind;
    int line, col; /* 1-based position of the node's first character */
    bool plain;    /* scalar written without quotes or block style */
    char *str;     /* scalar bytes, NUL-terminated (may contain NUL: see len) */
    size_t len;
    int n, cap;              /* items (sequence) or key/value pairs (mapping) */
    struct mc_ynode **items; /* sequence items, or mapping values */
    struct mc_ynode **keys;  /* mapping keys (scalars), parallel to items */
} mc_ynode;

#define MC_YAML_MAX_MAP_KEYS 4096 /* keeps the duplicate-key check linear enough for fuzzing */

/* Parses one YAML document (at most MC_CONFIG_MAX_BYTES, nesting at most MC_CONFIG_MAX_DEPTH,
 * no aliases, no tags, scalar keys only, no duplicate keys). An empty document gives *root ==
 * NULL. source names the text in messages ("FILE:LINE:COL: ..."). The caller frees *root. */
mc_status mc_yaml_parse(const char *text, size_t len, const char *source, mc_ynode **root,
                        mc_error *err);
void mc_ynode_free(mc_ynode **n);
/* The value for key in a mapping node, or NULL. */
const mc_ynode *mc_ynode_get(const mc_ynode *map, const char *key);
/* True for a plain scalar that YAML reads as null: "", "~", "null", "Null", "NULL". */
bool mc_ynode_is_null(const mc_ynode *n);

/* ---- schema ------------------------------------------------------------------------------- */
typedef enum {
    MC_T_SECTION, /* a mapping of further keys */
    MC_T_SECLIST, /* a sequence of mappings, each with the keys below it */
    MC_T_INT,
    MC_T_FLOAT,
    MC_T_BOOL,
    MC_T_STRING,
    MC_T_PATH,
    MC_T_ENUM,
    MC_T_TEMP,
    MC_T_SAMPLE_SEED,
    MC_T_INT_LIST,
    MC_T_FLOAT_LIST,
    MC_T_STRING_LIST,
    MC_T_ENUM_LIST
} mc_type;

enum {
    MC_F_REQUIRED = 1 << 0,  /* no default: the key must be given */
    MC_F_NONEMPTY = 1 << 1,  /* lists: at least one item; strings: not "" */
    MC_F_UNIQUE = 1 << 2,    /* lists: no repeated item */
    MC_F_IDENT = 1 << 3,     /* strings: [A-Za-z0-9._-]+ */
    MC_F_MIN_OPEN = 1 << 4,  /* floats: value must be > min (not >=) */
    MC_F_SORTED = 1 << 5,    /* enum lists: canonical form sorts into enum order */
    MC_F_NAME_SUBST = 1 << 6 /* paths: "{name}" is replaced by the experiment name */
};

typedef struct {
    const char *key; /* full dotted path; keys of list items use the list's path as prefix */
    mc_type type;
    const char *def; /* default as YAML text; NULL for sections and required keys */
    unsigned flags;
    int64_t imin, imax;       /* MC_T_INT / MC_T_INT_LIST range (inclusive) */
    double fmin, fmax;        /* MC_T_FLOAT / MC_T_FLOAT_LIST range */
    const char *const *names; /* MC_T_ENUM / MC_T_ENUM_LIST: NULL-terminated spellings */
    size_t offset;            /* into mc_config, or into the list item for MC_T_SECLIST children */
    size_t elem_size;         /* MC_T_SECLIST: sizeof one item */
    const char *doc;
} mc_schema_entry;

extern const mc_schema_entry mc_schema[];
extern const int mc_schema_count;

/* The schema entry with this full dotted path, or NULL. */
const mc_schema_entry *mc_schema_find(const char *key);
/* The part of key after its last '.' (the whole key at top level). */
const char *mc_schema_leaf(const char *key);
/* True if entry e sits directly inside section (NULL or "" for the top level). */
bool mc_schema_is_child(const mc_schema_entry *e, const char *section);
/* "int", "list of enum", ... */
const char *mc_type_name(mc_type t);

/* Levenshtein distance, capped at cap + 1 (cheap early exit). */
int mc_edit_distance(const char *a, const char *b, int cap);

#endif
