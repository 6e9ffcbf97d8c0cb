/* plan.h - what an experiment will cost before it runs: work, core-hours, wall time, memory
 * per rank and disk, per stage (`miclip plan`, and the --time/--mem of `miclip slurm`).
 *
 * Work is counted from the models' own sizes, read from each folder's config.json (the weights
 * are not needed, so a plan can be made on a login node): one function per family counts the
 * multiply-adds of a forward pass (ViT / CLIP vision: patch embedding, per block QKV, scores,
 * attention x V, output projection and MLP, head; ResNet: every convolution of the stem and the
 * bottleneck layers, and the classifier; CLIP text: the same blocks over the prompt tokens).
 * Units: "GMAC" = 1e9 multiply-adds, the unit model cards call "GFLOP" (ViT-B/16: 17.6,
 * ResNet-50: 4.1); time is computed with 2 floating-point operations per multiply-add.
 * LayerNorm, softmax, activations and pooling are left out (under 1% for these models).
 *
 * Time comes from a throughput calibration measured on the machine that will run the work
 * (`miclip plan --calibrate`: sgemm rate, memory bandwidth, image decode rate and a forward of
 * the configured target model at a small batch), stored as a small JSON file:
 *   {"format": "miclip-calibration/1", "host": ..., "created_utc": ..., "threads": T,
 *    "sgemm_gflops": G, "mem_gbps": B, "decode_images_per_s": D,
 *    "forward": {"model": DIR, "gmac_per_image": g, "batch": b, "images_per_s": r}}
 * All rates are per rank at T threads; the plan scales them per core. Without a file the
 * documented conservative defaults below are used, and the plan says so.
 *
 * Memory per rank: weights (parameters x 4 bytes, as loaded) + the activation arena for a batch
 * + stage buffers + MC_PLAN_RUNTIME_BYTES for the MPI/HDF5/BLAS runtime. Disk: every store's
 * datasets from the image counts, layer sizes and dtype, plus per-store overhead.
 *
 * Ownership: mc_plan is a plain struct filled by mc_plan_make; mc_plan_free releases nothing
 * but is kept for symmetry (there are no pointers inside). Strings are copied in.
 */
#ifndef MICLIP_PLAN_H
#define MICLIP_PLAN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "miclip/config.h"
#include "miclip/status.h"

/* Conservative defaults without a calibration file (one rank, one thread): far below what
 * a current server core does, so an uncalibrated plan over-estimates time. */
#define MC_PLAN_DEFAULT_SGEMM_GFLOPS 10.0 /* per core; AVX2 cores reach 50-100 */
#define MC_PLAN_DEFAULT_MEM_GBPS 4.0      /* per core, streaming */
#define MC_PLAN_DEFAULT_DECODE_IPS 40.0   /* ImageNet-size JPEG decode + resize, per core */
#define MC_PLAN_DEFAULT_FORWARD_EFF 0.4   /* fraction of the sgemm rate a forward reaches */
#define MC_PLAN_DEFAULT_LOG_TERMS_PS                                                               \
    1e8 /* CLIP-Dissect slot terms (a double log each) per second, \
                                           * one thread; glibc's log does ~2e8 on a current core */
#define MC_PLAN_DEFAULT_PRODUCT_TERMS_PS 5e8 /* its slot-product factors per second, one thread */
#define MC_PLAN_DEFAULT_NORMALS_PS 2e7   /* normal draws (mc_rng_normal) per second, one thread */
#define MC_PLAN_DEFAULT_WRITE_MBPS 200.0 /* MB/s written to a file and fsync'd */
#define MC_PLAN_RUNTIME_BYTES                                                                      \
    (64.0 * 1024 * 1024) /* MPI + HDF5 + BLAS + code, per rank (a tiny
                                                      * extraction peaks at ~31 MB RSS here) */
#define MC_PLAN_STORE_OVERHEAD_BYTES                                                               \
    (48.0 * 1024) /* HDF5 metadata, attributes, records of an
                                                     * extraction store (~14 datasets) */
#define MC_PLAN_SMALL_STORE_OVERHEAD_BYTES                                                         \
    (16.0 * 1024) /* the same for a store of a few datasets */

#define MC_PLAN_TASK_START_S                                                                       \
    10.0 /* per task as its own job (MPI start, model load, store open);
                                    * `miclip run` pays it once for all tasks (run.c) */

#define MC_PLAN_TEXT_MAX 1024

typedef struct {
    bool from_file;              /* false: the defaults above */
    char path[MC_PLAN_TEXT_MAX]; /* the file read, or "" */
    char host[256];
    int threads;         /* threads per rank the rates were measured with */
    double sgemm_gflops; /* per rank at `threads` (2 flops per multiply-add) */
    double mem_gbps;     /* per rank at `threads` */
    double decode_ips;   /* images decoded + resized per second, per rank */
    /* forward of a model (0 when not measured) */
    char fwd_model[MC_PLAN_TEXT_MAX];
    double fwd_gmac; /* GMAC per image of that model */
    double fwd_ips;  /* images per second per rank at `threads` */
    int fwd_batch;
    double log_terms_ps;     /* CLIP-Dissect's slot terms log(1 + w (p - 1) + 1e-7) per second, one
                          * thread (the stage computes them on one thread per rank) */
    double product_terms_ps; /* its slot-product factors (1 + w (p - 1) + 1e-7) per second */
    bool cd_defaults;        /* the two rates above are the defaults (a file without them) */
    double normals_ps;       /* standard normal draws (mc_rng_normal, the SAE's initialisation) per
                        * second, one thread */
    double write_mbps;   /* MB/s written to a file in the output folder and fsync'd (checkpoints) */
    bool fixed_defaults; /* the two rates above are the defaults (a file without them) */
} mc_calibration;

/* Sizes of one model read from config.json (no weights). */
typedef struct {
    char dir[MC_PLAN_TEXT_MAX];
    int family;          /* mc_hf_family: vit, resnet, clip */
    int64_t params;      /* vision side (CLIP: vision tower + projection) */
    int64_t text_params; /* CLIP text tower + projection, 0 otherwise */
    double gmac;         /* per image, full forward to the output */
    int64_t out_dim;     /* labels, or the projection size */
    int image;           /* input size */
    /* transformers */
    int64_t L, T, D, H, I, patch;
    /* CLIP text tower */
    int64_t tL, tD, tI, tctx;
    /* From the loaded model when its weights are present (mc_plan_make): the model's own
     * mc_model_param_count and mc_model_arena_bytes at extract.batch_size; else estimates. */
    bool exact;
    int64_t loaded_params;
    double arena_bytes;
} mc_plan_model;

/* One store (or a family of identical ones, count times). */
typedef struct {
    int stage;
    char what[160]; /* e.g. "extract/train-s<seed>-*.h5" */
    int count;
    double bytes_each;
} mc_plan_store;

typedef struct mc_plan_stage {
    int stage;        /* mc_stage */
    bool implemented; /* in this build */
    int n_tasks;
    double
        items; /* per task (the longest where tasks differ): images (extract, intervene), steps, ... */
    char item_name[32];
    double gmac_per_item;
    double tflop;       /* floating-point operations of one task, 1e12 (2 per multiply-add) */
    double core_s_task; /* core-seconds of one task */
    double
        wall_s_task; /* one task at ranks x threads (the longest, where tasks differ: Slurm's --time) */
    double core_s_all; /* where tasks differ (extract: shared stores), the core-seconds of all tasks
                         * together; 0: core_s_task x n_tasks */
    double core_hours; /* all tasks */
    double run_s;      /* the stage's wall time inside one `miclip run` at ranks x threads: all
                        * tasks in sequence, the job's start-up not counted (run.c pays it once) */
    double mem_rank;   /* peak bytes per rank */
    double disk;       /* bytes of all the stage's stores */
    char note[256];
} mc_plan_stage;

#define MC_PLAN_MAX_STORES 32

typedef struct mc_plan {
    int ranks, threads;
    mc_calibration cal;
    mc_plan_model target, clip;
    bool clip_is_target;
    int64_t n_train, n_eval, n_unseen; /* images per seed */
    int64_t n_classes, n_concepts;     /* class prompts per store; concepts over all sets */
    int64_t n_intervened;              /* eval + unseen images intervene edits */
    char images_note[1024];
    int n_stages;
    mc_plan_stage st[MC_STAGE_COUNT];
    int n_stores;
    mc_plan_store stores[MC_PLAN_MAX_STORES];
    double total_core_hours, total_disk, max_mem_rank;
} mc_plan;

/* What every stage's cost model reads: the plan's models, image counts and calibration
 * (mc_plan), and these sizes derived once from the config (mc_plan_make). Rates are per core. */
typedef struct mc_plan_inputs {
    int64_t seeds;
    int64_t n_classes, n_concepts;
    double text_gmac;           /* one prompt through the CLIP text tower */
    double act_bytes;           /* one image's activations in the extraction store */
    int dtype_bytes;            /* 2 (F16) or 4 */
    int64_t sae_dim, align_dim; /* sae.layer's width; the widest extracted vector */
    int64_t int_T;              /* intervene.layer's state, floats per image */
    int64_t int_images;         /* eval + unseen images intervene edits: those of a class the
                                 * target has (all, for a CLIP target); see mc_plan_make */
    double int_prefix;          /* GMAC up to intervene.layer */
    int64_t proj;               /* CLIP embedding size */
    double cores;               /* ranks x threads */
    double fwd, gemm, mem, dec; /* flop/s in forwards and in sgemm, bytes/s, images/s */
    double logs;                /* CLIP-Dissect slot terms per second on one thread */
    double products;            /* CLIP-Dissect slot-product factors per second on one thread */
    double normals;             /* normal draws per second on one thread */
    double write;               /* bytes per second written and fsync'd */
    double tgt_w, clip_w,
        text_w; /* weight bytes of the target, the CLIP vision side, its text tower */
    int64_t eb; /* extract.batch_size */
} mc_plan_inputs;

/* One stage's cost model (a stage registry entry, stages.h). It fills S's items, item_name and
 * gmac_per_item (and wall_s_task when it knows better than core_s / cores), adds the flops of
 * one task to *flop, its core-seconds to *core_s and its peak bytes per rank to *mem_b, and
 * lists its stores with mc_plan_add_store. */
typedef void (*mc_plan_cost_fn)(const mc_config *cfg, const mc_plan_inputs *in, mc_plan *p,
                                mc_plan_stage *S, double *flop, double *core_s, double *mem_b);

/* Lists count stores of bytes each for the stage being costed (the last of p->st). */
void mc_plan_add_store(mc_plan *p, int stage, const char *what, int count, double bytes);
/* The cost model of a stage that scores units against concepts (localize, describe, baselines). */
void mc_plan_unit_table_cost(const mc_config *cfg, const mc_plan_inputs *in, mc_plan *p,
                             mc_plan_stage *S, double *flop, double *core_s, double *mem_b);

/* Reads a model folder's config.json and takes its sizes from the model description
 * (model_desc.h; CLIP: both towers). Errors name the file. */
mc_status mc_plan_model_read(const char *dir, mc_plan_model *m, mc_error *err);

/* Multiply-adds per image of a forward that stops after the named layer (the description's
 * mac_cum; the same names and aliases as model.h), and the elements per image stored for it
 * under pool (MC_CFG_POOL_*). Returns MC_ERR_ARG for an unknown layer. */
mc_status mc_plan_layer(const mc_plan_model *m, const char *layer, int pool, double *prefix_gmac,
                        int64_t *elems, mc_error *err);

/* Bytes of the activation arena of a batch of B images: the one the loader allocates, from the
 * model description (model_desc.h) of config.json. */
double mc_plan_arena_bytes(const mc_plan_model *m, int64_t B);

/* Calibration: defaults, file I/O, and the measurement (local, on the calling process). */
void mc_calibration_defaults(mc_calibration *cal);
mc_status mc_calibration_read(const char *path, mc_calibration *cal, mc_error *err);
mc_status mc_calibration_write(const char *path, const mc_calibration *cal, mc_error *err);
/* Measures with `threads` threads; model_dir (may be NULL) is forwarded at a small batch when
 * its weights are present; the write rate is measured with a temporary file in scratch_dir (the
 * output folder; NULL or unwritable: the default rate stays, flagged). Takes a few seconds. */
mc_status mc_calibration_measure(int threads, const char *model_dir, const char *scratch_dir,
                                 mc_calibration *cal, mc_error *err);
/* The default file: $MICLIP_CALIBRATION, else ~/.cache/miclip/calibration.json. */
void mc_calibration_default_path(char *buf, size_t cap);

/* The plan of cfg at ranks x threads. With load_weights, when a model folder holds
 * model.safetensors, the model is loaded to take its parameter count and arena size from model.h
 * (exact; `miclip plan`, `miclip slurm`); otherwise they are estimated from config.json (the
 * pre-flight's disk check and the run's estimate, which must not load a model). target_dir / clip_dir override the config's model folders
 * (NULL: the config's), for planning where only config.json copies are at hand. */
mc_status mc_plan_make(const mc_config *cfg, int ranks, int threads, const mc_calibration *cal,
                       const char *target_dir, const char *clip_dir, bool load_weights,
                       mc_plan *plan, mc_error *err);

/* The readable table, and the same as JSON. */
void mc_plan_print(FILE *f, const mc_config *cfg, const mc_plan *plan);
void mc_plan_print_json(FILE *f, const mc_config *cfg, const mc_plan *plan);

/* "1.2 GiB", "350 MiB" ... into buf; "12 h 03 min" for seconds. */
void mc_plan_fmt_bytes(double bytes, char *buf, size_t cap);
void mc_plan_fmt_time(double seconds, char *buf, size_t cap);

#endif
