/* report_fragments.c - the Markdown fragments that describe, baselines and intervene tasks
 * write under OUTPUT_DIR/report/, gathered in sweep order (stages_internal.h). */
#include "stages_internal.h"

#include "method/keys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/log.h"
#include "miclip/miclip.h"

mc_status mc_report_gather(const mc_config *cfg, int stage, const char *dir, const char *tag, mc_buf *body,
                           mc_buf *records, int *found, mc_error *err) {
    mc_task *tasks = NULL;
    int n = 0;
    MC_TRY(mc_config_tasks(cfg, stage, &tasks, &n, err));
    char open_tag[64];
    mc_snprintf(open_tag, sizeof open_tag, "<!-- %s\t", tag);
    const size_t skip = strlen(open_tag);
    mc_status s = MC_OK;
    *found = 0;
    for (int t = 0; t < n && s == MC_OK; t++) {
        char path[MC_PATH_CAP];
        mc_snprintf(path, sizeof path, "%s/report/%s/%s.md", cfg->output_dir, dir, tasks[t].id);
        if (!mc_file_exists(path)) continue;
        char *text = NULL;
        size_t len = 0;
        s = mc_read_file(path, 64u << 20, &text, &len, err);
        if (s == MC_OK) {
            mc_buf_printf(body, "\n%s", text), (*found)++;
            for (char *q = strstr(text, open_tag); q; q = strstr(q + 1, open_tag)) {
                char *e = strstr(q, " -->");
                if (e) mc_buf_printf(records, "%.*s\n", (int)(e - q - skip), q + skip);
            }
        }
        free(text);
    }
    mc_tasks_free(&tasks);
    return s;
}
