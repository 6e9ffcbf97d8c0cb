/* stages.h - the pipeline stages and the runner behind `miclip run`.
 *
 * Each stage is one function taking the MPI context, the resolved config and one task of the
 * stage's sweep (config.h: mc_config_tasks), returning an mc_status that every rank agrees on.
 * Stages are idempotent and resumable: outputs live in HDF5 stores (store.h) keyed by the hash
 * of everything that produced them; a complete store is skipped, a partial one resumes from
 * its completion records. A stop signal (SIGUSR1/SIGTERM) ends a stage after the unit of work in
 * flight with MC_ERR_INTERRUPTED (exit code 75).
 *
 * Store names (docs/store.md): OUTPUT_DIR/extract/<dataset>-<key16>.h5, where dataset is
 * train|eval|unseen and key16 the first 16 hex digits of the extraction key.
 */
#ifndef MICLIP_STAGES_H
#define MICLIP_STAGES_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "miclip/comm.h"
#include "miclip/config.h"
#include "miclip/status.h"

/* Which datasets a stage touches. */
typedef enum { MC_SPLIT_TRAIN = 0, MC_SPLIT_EVAL, MC_SPLIT_UNSEEN, MC_SPLIT_COUNT } mc_split;
const char *mc_split_name(mc_split s); /* "train", "eval", "unseen" */

/* Collective. Extraction for one task (one seed): every configured dataset (train, and eval /
 * unseen when the intervention stage needs them) is run through the target model and CLIP. */
mc_status mc_stage_extract(const mc_comm *c, const mc_config *cfg, const mc_task *task,
                           mc_error *err);

/* Collective. The path of the extraction store of split for task's seed, computing the key
 * (which lists and hashes the dataset and hashes the model files). */
mc_status mc_extract_store_path(const mc_comm *c, const mc_config *cfg, mc_split split,
                                int64_t seed, char *path, size_t cap, mc_error *err);

/* Collective. The method stages (docs/stages.md): the top-k SAE of task's seed on sae.layer; the
 * neuron encoder E_n of (seed, layer, variant); top-tau units per concept (localize) and
 * top-tau concepts per unit (describe, which also writes OUTPUT_DIR/report/descriptions.md). */
mc_status mc_stage_sae(const mc_comm *c, const mc_config *cfg, const mc_task *task, mc_error *err);
mc_status mc_stage_align(const mc_comm *c, const mc_config *cfg, const mc_task *task,
                         mc_error *err);
mc_status mc_stage_localize(const mc_comm *c, const mc_config *cfg, const mc_task *task,
                            mc_error *err);
mc_status mc_stage_describe(const mc_comm *c, const mc_config *cfg, const mc_task *task,
                            mc_error *err);

/* Interactive queries on trained encoders. Fields left at their mc_query_defaults value take
 * the config's: the first seed, the first variant, neurons, extract.layers[0] (sae.layer for
 * SAE features), localize.tau / describe.tau. */
typedef struct {
    int64_t seed;      /* -1: default */
    const char *layer; /* NULL: default (borrowed) */
    int variant;       /* mc_variant, -1: default */
    int units;         /* mc_unit_kind, -1: default */
    int64_t tau;       /* 0: default */
} mc_query;
void mc_query_defaults(mc_query *q);
/* Collective. Top-tau units for each text (embedded with align.prompt); rank 0 prints to out. */
mc_status mc_query_localize(const mc_comm *c, const mc_config *cfg, const char *const *texts, int n,
                            const mc_query *q, FILE *out, mc_error *err);
/* Collective. Top-tau concepts of each describe.concepts set for each unit; rank 0 prints. */
mc_status mc_query_describe(const mc_comm *c, const mc_config *cfg, const int64_t *units, int n,
                            const mc_query *q, FILE *out, mc_error *err);

/* The stage registry: one entry per stage, defined in the stage's own file and listed in
 * src/stages/registry.c. run, plan, slurm, the per-stage commands and the report read it. */
struct mc_plan;
struct mc_plan_stage;
struct mc_plan_inputs;
typedef struct {
    mc_stage stage;
    const char *summary; /* one line: what the stage computes */
    const char *outputs; /* where it writes, under OUTPUT_DIR */
    /* Pre-flight: everything that can be checked from the config before any work (NULL: none). */
    mc_status (*check)(const mc_config *cfg, mc_error *err);
    /* Collective. One task of the stage's sweep (mc_config_tasks). */
    mc_status (*run)(const mc_comm *c, const mc_config *cfg, const mc_task *task, mc_error *err);
    /* Collective, optional (NULL: none). Which of the n tasks are complete already (done[t]),
     * found from their keys with the metadata they share computed once (issue 16: a rerun of a
     * complete job is fast); it handles them as run would (logs the skip, writes the task
     * index). The runner then calls run only for the others. */
    mc_status (*complete)(const mc_comm *c, const mc_config *cfg, const mc_task *tasks, int n,
                          bool *done, mc_error *err);
    /* The cost model behind `miclip plan` (plan.h: mc_plan_cost_fn). */
    void (*cost)(const mc_config *cfg, const struct mc_plan_inputs *in, struct mc_plan *p,
                 struct mc_plan_stage *S, double *flop, double *core_s, double *mem_b);
} mc_stage_desc;

/* The registry entry of stage, or NULL when this build has no implementation of it. */
const mc_stage_desc *mc_stage_find(int stage);
/* True when the stage has an implementation in this build. */
bool mc_stage_implemented(int stage);

/* Collective. Pre-flight (issue 16, docs/preflight.md): rank 0 checks everything the stages of
 * cfg that will run (only_stage >= 0: that one) need before any work: the stages' own config
 * checks, model folders (config.json, model.safetensors' header, preprocessor and tokenizer
 * files), layer names against the target's config.json, the datasets to be listed, the concept
 * files, the output folder (created and probe-written when nothing else is wrong) and free disk
 * space against `miclip plan`'s estimate. Every problem is listed on rank 0 (at most 20 lines);
 * every rank returns the agreed error (the first problem, with the count of the others).
 * *n_checks (may be NULL) gets the number of checks made, -1 when MICLIP_PREFLIGHT=off. */
mc_status mc_preflight(const mc_comm *c, const mc_config *cfg, int only_stage, int *n_checks,
                       mc_error *err);
/* Collective. `miclip config FILE`'s pre-flight: rank 0 prints "pre-flight: ok (N checks)" on
 * stdout, or the problems and the error; returns the exit code. */
int mc_preflight_report(const mc_comm *c, const mc_config *cfg);

/* Collective. Runs cfg's stages in pipeline order. only_stage >= 0 restricts to that stage;
 * only_task >= 0 to that task index within each stage run (a Slurm array task). */
mc_status mc_run(const mc_comm *c, const mc_config *cfg, int only_stage, int only_task,
                 mc_error *err);

#endif
