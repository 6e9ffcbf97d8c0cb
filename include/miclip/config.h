/* config.h - typed YAML experiment configs: load, validate, resolve, hash, sweep.
 *
 * An experiment is one YAML file (docs/config.md lists every key; it is generated from the
 * schema in src/config/schema.c, which also drives validation, so the two cannot drift).
 *
 * Loading: the file (at most MC_CONFIG_MAX_BYTES, nesting at most MC_CONFIG_MAX_DEPTH) is parsed
 * with libyaml into a node tree that keeps line and column per node; the schema checks every key
 * (unknown keys are errors with a "did you mean" hint), type and range, fills defaults, makes
 * paths absolute (relative paths are relative to the config file's directory) and writes the
 * canonical resolved text: YAML with every key present in schema order, fixed formatting and no
 * comments. The config hash is SHA-256 of that text, so it is stable under key order, whitespace
 * and comments, and changes with any value.
 *
 * Errors are one line, "FILE:LINE:COL: key 'a.b.c': message", code MC_ERR_CONFIG.
 *
 * Under MPI (mc_config_load) rank 0 reads and validates, the canonical text is broadcast, and
 * every rank parses that same text (style.md section 10); errors are agreed collectively, so a bad
 * config ends every rank with one message.
 *
 * Sweeps: mc_config_tasks expands seeds x layers x variants/methods x modes x betas of one stage
 * into a deterministic task list; task i of a stage is SLURM_ARRAY_TASK_ID i.
 *
 * Ownership: mc_config is created by the parse/load functions and freed with mc_config_free
 * (every string and list inside belongs to it). Task lists are freed with mc_tasks_free.
 */
#ifndef MICLIP_CONFIG_H
#define MICLIP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "miclip/comm.h"
#include "miclip/hash.h"
#include "miclip/status.h"

#define MC_CONFIG_MAX_BYTES (1u << 20) /* 1 MiB: an experiment file is a few KiB */
#define MC_CONFIG_MAX_DEPTH 64         /* libyaml 0.2.5 itself has no nesting limit */

/* --- value lists (n entries in v; v is NULL when n == 0) ----------------------------------- */
typedef struct {
    int n;
    char **v;
} mc_str_list;
typedef struct {
    int n;
    int64_t *v;
} mc_int_list;
typedef struct {
    int n;
    double *v;
} mc_f64_list;
typedef struct {
    int n;
    int *v;
} mc_enum_list; /* values of one of the enums below */

/* --- enumerations: the numeric values are the positions of the names in the schema --------- */
typedef enum {
    MC_STAGE_EXTRACT,
    MC_STAGE_SAE,
    MC_STAGE_ALIGN,
    MC_STAGE_LOCALIZE,
    MC_STAGE_DESCRIBE,
    MC_STAGE_BASELINES,
    MC_STAGE_INTERVENE,
    MC_STAGE_REPORT,
    MC_STAGE_COUNT
} mc_stage; /* extract sae align localize describe baselines intervene report */

typedef enum {
    MC_DS_NONE,
    MC_DS_IMAGEFOLDER,
    MC_DS_IMAGENET,
    MC_DS_DTD,
    MC_DS_FILELIST,
    MC_DS_WORLD
} mc_dataset_kind; /* none imagefolder imagenet dtd filelist world */

typedef enum {
    MC_CFG_POOL_AUTO,
    MC_CFG_POOL_CLS,
    MC_CFG_POOL_MEAN,
    MC_CFG_POOL_SPATIAL_MEAN,
    MC_CFG_POOL_ALL
} mc_cfg_pool; /* auto cls mean spatial_mean all (model.h has the tensor-level mc_pool) */

typedef enum { MC_STORE_F32, MC_STORE_F16 } mc_store_dtype;                   /* f32 f16 */
typedef enum { MC_BAD_IMAGE_FAIL, MC_BAD_IMAGE_SKIP } mc_bad_image;           /* fail skip */
typedef enum { MC_SAE_INPUT_POOLED, MC_SAE_INPUT_ALL } mc_sae_input;          /* pooled all */
typedef enum { MC_ALIGN_STOP_CONVERGED, MC_ALIGN_STOP_EPOCHS } mc_align_stop; /* converged epochs */
typedef enum { MC_VARIANT_INOUT, MC_VARIANT_IN, MC_VARIANT_OUT } mc_variant;
/* The paper's two readings of a unit's embedding (docs/stages.md): Algorithm 2 (SAE algorithm2,
 * neurons basis) and Section 3.2 (SAE atom, neurons activation). */
typedef enum { MC_READING_ALGORITHM2, MC_READING_SECTION32 } mc_reading; /* in+out in out */
typedef enum { MC_UNIT_NEURON, MC_UNIT_SAE } mc_unit_kind;               /* neuron sae */

typedef enum {
    MC_METHOD_MICLIP,
    MC_METHOD_ACT_VALUES,
    MC_METHOD_CLIP_DISSECT,
    MC_METHOD_NETDISSECT,
    MC_METHOD_VINTERP,
    MC_METHOD_RANDOM,
    MC_METHOD_ORACLE
} mc_method; /* miclip act_values clip_dissect netdissect vinterp random oracle */

typedef enum { MC_MODE_SCALE, MC_MODE_ADD } mc_mode;                         /* scale add */
typedef enum { MC_TOKENS_ALL, MC_TOKENS_CLS, MC_TOKENS_PATCHES } mc_tokens;  /* all cls patches */
typedef enum { MC_PREFIX_CACHE, MC_PREFIX_RECOMPUTE } mc_prefix_mode;        /* cache recompute */
typedef enum { MC_CONCEPTS_FILE, MC_CONCEPTS_CLASSES } mc_concept_source;    /* file classes */
typedef enum { MC_EVAL_SET_EVAL, MC_EVAL_SET_UNSEEN } mc_eval_set;           /* eval unseen */
typedef enum { MC_FORMAT_MD, MC_FORMAT_CSV, MC_FORMAT_TEX } mc_table_format; /* md csv tex */
typedef enum { MC_FIG_PNG, MC_FIG_SVG, MC_FIG_PDF } mc_figure_format;        /* png svg pdf */
typedef enum {
    MC_FIGURE_LOSS_CURVES,
    MC_FIGURE_SAE_CURVES,
    MC_FIGURE_TSNE,
    MC_FIGURE_ATTENTION_MAPS,
    MC_FIGURE_FLAWED_REASONING
} mc_figure; /* loss_curves sae_curves tsne attention_maps */

/* --- the typed experiment ------------------------------------------------------------------- */

/* datasets.*.sample_seed: per_seed. */
#define MC_SAMPLE_PER_SEED INT64_C(-1)

/* One image dataset. kind MC_DS_NONE means "not used" (then every other field is empty). */
typedef struct {
    int kind;          /* mc_dataset_kind */
    char *root;        /* absolute path ("" when kind is none) */
    char *split;       /* sub-folder / split name: world train|val|unseen, imagenet train|val */
    int64_t n_samples; /* images drawn per seed; 0 = all */
    int64_t
        sample_seed; /* the seed of the draw: MC_SAMPLE_PER_SEED (each run seed its own), or a fixed one */
    char *labels;      /* absolute path of a label file, or "" */
    char *class_names; /* absolute path of a class-name mapping file, or "" */
} mc_dataset_cfg;

/* One concept set: the vocabulary for descriptions and localization. */
typedef struct {
    char *name; /* identifier, referenced by localize.concepts / describe.concepts */
    int source; /* mc_concept_source */
    char *file; /* absolute path of the list (one concept per line), "" for classes */
} mc_concept_set_cfg;

typedef struct {
    bool learnable; /* true: the logit scale is learned (initialised from align.init_temperature) */
    double value;   /* the fixed temperature when !learnable; 0 when learnable */
} mc_temperature_cfg;

typedef struct {
    /* top level */
    char *name;          /* experiment name: [A-Za-z0-9._-]+ */
    char *output_dir;    /* absolute */
    mc_int_list seeds;   /* unique, non-empty */
    int64_t threads;     /* 0 = from --threads / MICLIP_THREADS */
    mc_enum_list stages; /* mc_stage, in pipeline order, unique */

    struct {
        char *target, *clip, *mpnet;
    } models; /* absolute paths; mpnet may be "" */
    struct {
        mc_dataset_cfg train, eval, unseen;
    } datasets;
    struct {
        int n;
        mc_concept_set_cfg *v;
    } concepts;

    struct {
        mc_str_list layers; /* hook names: "10", "logits", "stages.3.layers.1.shortcut" */
        int pool;           /* mc_cfg_pool */
        int64_t batch_size;
        int dtype;        /* mc_store_dtype */
        int on_bad_image; /* mc_bad_image */
    } extract;

    struct {
        char *layer; /* one of extract.layers (resolved: never "") */
        int input;   /* mc_sae_input */
        int64_t features, k, batch_size, epochs, steps, aux_k, dead_after, init_samples;
        int64_t checkpoint_every;
        int64_t tokens_per_image; /* input all: 0 every token, else a seeded sample */
        double lr, aux_coef, heldout;
    } sae;

    struct {
        mc_enum_list variants; /* mc_variant */
        double lr;
        int64_t batch_size, epochs, checkpoint_every;
        int stop;                                 /* mc_align_stop */
        int64_t max_epochs, patience, eval_every; /* stop: converged (docs/stages.md) */
        double heldout, min_delta;
        mc_temperature_cfg temperature;
        double init_temperature; /* start value of a learnable temperature (CLIP: 0.07) */
        char *prompt;            /* contains "{}" exactly once */
    } align;

    struct {
        int64_t tau;
        mc_str_list concepts;
        mc_enum_list units;
        int sae_unit;    /* 0 algorithm2, 1 atom */
        int neuron_unit; /* 0 basis, 1 activation */
        int sae_inputs;  /* 0 all, 1 class */
    } localize;
    struct {
        int64_t tau;
        mc_str_list concepts;
        mc_enum_list units;
    } describe;

    struct {
        mc_enum_list methods;                          /* mc_method, never miclip or random */
        char *netdissect_masks, *vinterp_descriptions; /* absolute paths or "" */
        char *vinterp_explainer;                       /* a shell command or "" */
        int64_t vinterp_timeout, vinterp_images;       /* seconds per unit; top images per unit */
    } baselines;

    struct {
        mc_enum_list methods;  /* mc_method */
        mc_enum_list variants; /* mc_variant: miclip's E_n variants (resolved: never empty) */
        mc_enum_list readings; /* mc_reading: miclip's unit readings; empty: localize.* only */
        mc_enum_list units;    /* mc_unit_kind */
        mc_enum_list modes;    /* mc_mode */
        mc_f64_list betas;
        int add_beta;          /* 0 value, 1 mu */
        mc_f64_list add_betas; /* betas of the add mode; empty: betas */
        int tokens;            /* mc_tokens */
        char *layer;           /* one of extract.layers (resolved: never "") */
        int64_t tau;
        mc_enum_list datasets; /* mc_eval_set */
        int64_t batch_size;
        int cache_dtype; /* 0 f32, 1 f16: the prefix cache's state (docs/intervene.md) */
        int prefix;      /* 0 cache, 1 recompute: where edited forwards start (MC_PREFIX_*) */
        int64_t
            oracle_candidates; /* oracle: ablate only each class's top-N units by mean activation; 0 = all */
    } intervene;

    struct {
        mc_enum_list formats;        /* mc_table_format */
        mc_enum_list figures;        /* mc_figure */
        mc_enum_list figure_formats; /* mc_figure_format */
        double alpha;                /* one-tailed paired t-test level */
        char *attention_class;       /* Figure 4's class; "" = the eval set's first class */
        int64_t attention_images;    /* Figure 4's images (the class's first N eval images) and
                                        Figure 6's (the feature's top N) */
        char *attention_concept;     /* Figure 6's low-level concept ("green") */
    } report;

    /* provenance, filled by the loader */
    char *source_path;                /* the file as given ("<text>" when parsed from memory) */
    char *canonical;                  /* the canonical resolved YAML text */
    char hash[MC_SHA256_HEX_LEN + 1]; /* SHA-256 of canonical, hex */
} mc_config;

/* --- loading -------------------------------------------------------------------------------- */

/* Single process: reads path (size-capped), validates and resolves. Relative paths resolve
 * against the directory of path. On failure *out stays NULL and err holds one line. */
mc_status mc_config_parse_file(const char *path, mc_config **out, mc_error *err);

/* Same from memory: source names the text in messages; base_dir resolves relative paths (NULL:
 * the current directory). text needs no NUL terminator; len is capped at MC_CONFIG_MAX_BYTES. */
mc_status mc_config_parse_text(const char *text, size_t len, const char *source,
                               const char *base_dir, mc_config **out, mc_error *err);

/* Collective: rank 0 parses path, the canonical text is broadcast, every rank parses it. Every
 * rank returns the same status and (on failure) the same message; rank 0 prints nothing. */
mc_status mc_config_load(const mc_comm *c, const char *path, mc_config **out, mc_error *err);

/* Frees everything; accepts NULL and *cfg == NULL; sets *cfg to NULL. */
void mc_config_free(mc_config **cfg);

/* --- names ---------------------------------------------------------------------------------- */

/* The YAML spelling of an enum value ("in+out", "spatial_mean"); "?" if out of range. */
const char *mc_stage_name(int v);
const char *mc_variant_name(int v);
/* The spellings task ids and file names use: "in+out" -> "inout" (others as mc_variant_name);
 * a layer name with every byte outside [A-Za-z0-9._-] replaced by '_'. */
const char *mc_variant_tag(int v);
const char *mc_reading_name(int v);
/* The reading localize.sae_unit / neuron_unit spell, or -1 when they mix the two. */
int mc_config_reading(const mc_config *cfg);
/* Sets localize.sae_unit and neuron_unit to reading r's (r < 0: unchanged). */
void mc_config_set_reading(mc_config *cfg, int r);
void mc_layer_tag(const char *layer, char *out, size_t cap);
const char *mc_method_name(int v);
const char *mc_mode_name(int v);
const char *mc_unit_kind_name(int v);
const char *mc_dataset_kind_name(int v);
const char *mc_pool_name(int v);

/* The stage named name ("align"), or -1. */
int mc_stage_from_name(const char *name);

/* True when stage s is listed in cfg->stages. */
bool mc_config_has_stage(const mc_config *cfg, mc_stage s);

/* --- sweeps --------------------------------------------------------------------------------- */

#define MC_TASK_ID_MAX 160

/* One independent unit of a stage's sweep. Fields a stage does not sweep are -1 / NULL / 0. */
typedef struct {
    int stage; /* mc_stage */
    int index; /* 0-based position within the stage's list: SLURM_ARRAY_TASK_ID */
    int64_t seed;
    const char *layer;       /* borrowed from the config; NULL when the stage has no layer axis */
    int variant;             /* mc_variant, or -1 (intervene: -1 is the first of align.variants) */
    int reading;             /* mc_reading, or -1: the localize.* settings (localize, intervene) */
    int method;              /* mc_method, or -1 */
    int mode;                /* mc_mode, or -1 */
    double beta;             /* intervene only */
    char id[MC_TASK_ID_MAX]; /* e.g. "align-s0-l10-inout"; [A-Za-z0-9._+-] only */
} mc_task;

/* Expands one stage's sweep. Order (outermost first): seed, layer, variant|method, mode, beta,
 * each in config order. The per-stage axes:
 *   extract    seeds
 *   sae        seeds (layer = sae.layer)
 *   align      seeds x extract.layers x align.variants
 *   localize   seeds x extract.layers x align.variants
 *   describe   seeds x extract.layers x align.variants
 *   baselines  seeds x extract.layers x baselines.methods
 *   intervene  seeds x intervene.methods (miclip: x intervene.variants) x intervene.modes x
 *              intervene.betas (layer = intervene.layer; a miclip task of the first of
 *              align.variants has variant -1, so its id and key are those without the axis)
 *   report     one task
 * A stage not in cfg->stages has no tasks. *tasks is malloc'd (free with mc_tasks_free); the
 * tasks borrow strings from cfg, which must outlive them. */
mc_status mc_config_tasks(const mc_config *cfg, mc_stage stage, mc_task **tasks, int *n,
                          mc_error *err);
/* All stages in pipeline order, concatenated (index stays per stage). */
mc_status mc_config_all_tasks(const mc_config *cfg, mc_task **tasks, int *n, mc_error *err);
void mc_tasks_free(mc_task **tasks);

/* Task `index` of one stage, copied to *out (its layer still borrows from cfg). index_text is
 * the index as text, e.g. getenv("SLURM_ARRAY_TASK_ID"); NULL or "" selects task 0 when the
 * stage has exactly one task and is an MC_ERR_ARG otherwise. A malformed or out-of-range index
 * is MC_ERR_ARG naming the stage and its task count. */
mc_status mc_config_task_select(const mc_config *cfg, mc_stage stage, const char *index_text,
                                mc_task *out, mc_error *err);

/* --- documentation -------------------------------------------------------------------------- */

/* Writes docs/config.md (the key reference generated from the schema, plus the prose on paths,
 * sweeps and hashes) to f. */
void mc_config_write_schema_md(FILE *f);

#endif
