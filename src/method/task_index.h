/* task_index.h - where each task's results are: OUTPUT_DIR/<stage>/<task id>.json names the store a
 * finished task wrote and its key. The report stage reads results through it (the store holds the
 * numbers; the index only points at them), so it never recomputes a task's key, which for an
 * intervention would mean loading the target model and its prefix cache.
 *
 * A task writes its entry after marking its store complete, and again when a rerun finds the store
 * complete (an unchanged entry is not rewritten). Each task has its own file: tasks running at
 * once under a Slurm array never write the same file.
 */
#ifndef MICLIP_METHOD_TASK_INDEX_H
#define MICLIP_METHOD_TASK_INDEX_H

#include <stddef.h>

#include "method/keys.h"
#include "miclip/comm.h"
#include "miclip/config.h"

/* Collective (rank 0 writes). Records that task of stage has its complete results in store, whose
 * root attribute <stage>_key is key. */
mc_status mc_task_index_write(const mc_comm *c, const mc_config *cfg, int stage,
                              const mc_task *task, const char *store, const char *key,
                              mc_error *err);
/* Local. The store and key recorded for task; MC_ERR_ARG naming the stage to run when the task has
 * no entry, MC_ERR_FORMAT when the entry does not parse. */
mc_status mc_task_index_find(const mc_config *cfg, int stage, const mc_task *task, char *store,
                             size_t cap, char key[MC_KEY_HEX], mc_error *err);

#endif
