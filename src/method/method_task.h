/* method_task.h - one localize or describe task (the train store, E_n, its unit sets and concept
 * sets, the task's key), its common end (provenance, attributes, completion), and the inputs
 * of the interactive queries.
 */
#ifndef MICLIP_METHOD_METHOD_TASK_H
#define MICLIP_METHOD_METHOD_TASK_H

#include <stdbool.h>
#include <stdint.h>

#include "method/concepts.h"
#include "method/units.h"
#include "miclip/stages.h"
#include "miclip/store.h"

/* One localize/describe task: the train store, E_n, the unit kinds and concept sets, the key. */
typedef struct {
    mc_train_data td;
    mc_encoder_weights w;
    mc_concepts *sets;
    int n_sets;
    int n_kinds;
    mc_unit_set kinds[2];
    int64_t tau;
    char key[MC_KEY_HEX];
    char store[MC_PATH_CAP];
    char tables[MC_PATH_CAP]; /* OUTPUT_DIR/tables */
} mc_method_task;
/* Collective; stage is MC_STAGE_LOCALIZE or MC_STAGE_DESCRIBE. Opening a task has two halves:
 * _find opens the train store and computes the key and store path from metadata alone (E_n's and
 * the SAE's keys, the concept sets' texts), so a complete task is skipped without loading
 * anything (issue 16); _load then reads E_n, computes the unit sets and reads the concept
 * embeddings. Either closes *mt on failure. */
mc_status mc_method_task_find(const mc_comm *c, const mc_config *cfg, const mc_task *task,
                              int stage, mc_method_task *mt, mc_error *err);
mc_status mc_method_task_load(const mc_comm *c, const mc_config *cfg, const mc_task *task,
                              mc_method_task *mt, mc_error *err);
void mc_method_task_close(mc_method_task *mt);
/* Collective. The registry's `complete` of localize and describe (stages.h): the tasks' keys
 * with each seed's train store and concept sets opened once; a complete describe task's index
 * entry is written as the stage writes it. */
mc_status mc_method_tasks_complete(const mc_comm *c, const mc_config *cfg, int stage,
                                   const mc_task *tasks, int n, bool *done, mc_error *err);
/* Collective: the common start of localize and describe. Finds the task (_find); a complete one
 * only (re)writes its task index entry, which the report's t-SNE and the report find it by, and
 * is closed: *done = true, as when _find or _load fails (*mt is then closed too). Otherwise the
 * task is loaded, OUTPUT_DIR/<stage name> made and *st opened fresh; an error there is returned
 * with *done = false and *mt open, for mc_method_task_finish to close and log. */
mc_status mc_method_task_begin(const mc_comm *c, const mc_config *cfg, const mc_task *task,
                               int stage, mc_method_task *mt, mc_store **st, bool *done,
                               mc_error *err);
/* Collective: the common end of localize and describe. When s is MC_OK, writes the provenance
 * and the task attributes (<stage>_key, align_store, layer, variant), marks the store complete;
 * always closes *st (keeping the first error) and logs the result. Returns the final status. */
mc_status mc_method_task_finish(const mc_config *cfg, const mc_task *task, const mc_method_task *mt,
                                const char *stage, mc_store **st, mc_status s, mc_error *err);

/* Collective. Resolves q's defaults into *r and loads the train store, E_n and the unit set. */
mc_status mc_query_open(const mc_comm *c, const mc_config *cfg, const mc_query *q, mc_query *r,
                        mc_train_data *td, mc_encoder_weights *w, mc_unit_set *u, mc_error *err);

#endif
