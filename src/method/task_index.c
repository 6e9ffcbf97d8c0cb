/* task_index.c - OUTPUT_DIR/<stage>/<task id>.json: the store of each finished task (task_index.h). */
#include "method/task_index.h"

#include <stdlib.h>
#include <string.h>

#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/json.h"

static bool index_path(const mc_config *cfg, int stage, const mc_task *task, char *buf,
                       size_t cap) {
    return mc_snprintf(buf, cap, "%s/%s/%s.json", cfg->output_dir, mc_stage_name(stage), task->id);
}

mc_status mc_task_index_write(const mc_comm *c, const mc_config *cfg, int stage,
                              const mc_task *task, const char *store, const char *key,
                              mc_error *err) {
    mc_status s = MC_OK;
    if (c->rank == 0) {
        char path[MC_PATH_CAP];
        json_t *e = json_pack("{s:s, s:s, s:s, s:s}", "format", "miclip-task/1", "task", task->id,
                              "store", store, "key", key);
        char *text = e ? json_dumps(e, JSON_INDENT(1) | JSON_PRESERVE_ORDER) : NULL;
        if (!text)
            s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory writing a task index entry");
        else if (!index_path(cfg, stage, task, path, sizeof path))
            s = MC_FAIL(err, MC_ERR_ARG, "output path too long under %s", cfg->output_dir);
        else
            s = mc_write_text_file_if_changed(path, text, strlen(text),
                                              err); /* a rerun touches nothing */
        free(text);
        json_decref(e);
    }
    return mc_comm_agree(c, s, err);
}

mc_status mc_task_index_find(const mc_config *cfg, int stage, const mc_task *task, char *store,
                             size_t cap, char key[MC_KEY_HEX], mc_error *err) {
    char path[MC_PATH_CAP];
    if (!index_path(cfg, stage, task, path, sizeof path))
        return MC_FAIL(err, MC_ERR_ARG, "output path too long under %s", cfg->output_dir);
    if (!mc_file_exists(path))
        return MC_FAIL(err, MC_ERR_ARG,
                       "%s is missing: the %s stage has not finished task %s (run it first)", path,
                       mc_stage_name(stage), task->id);
    json_t *e = NULL;
    MC_TRY(mc_json_load(path, false, &e, err));
    const char *st = NULL, *k = NULL;
    mc_status s = mc_json_get_str(e, "store", true, NULL, &st, path, err);
    if (s == MC_OK) s = mc_json_get_str(e, "key", true, NULL, &k, path, err);
    if (s == MC_OK && strlen(k) != MC_SHA256_HEX_LEN)
        s = MC_FAIL(err, MC_ERR_FORMAT, "%s: field 'key' is not a SHA-256 hex digest", path);
    if (s == MC_OK && !mc_strlcpy(store, st, cap))
        s = MC_FAIL(err, MC_ERR_FORMAT, "%s: field 'store' is too long", path);
    if (s == MC_OK) mc_strlcpy(key, k, MC_KEY_HEX);
    json_decref(e);
    return s;
}
