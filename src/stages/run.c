/* run.c - the stage runner: stages in pipeline order, each over its sweep's tasks. */
#include <stdio.h>
#include <string.h>

#include "miclip/log.h"
#include "miclip/miclip.h"
#include "stages_internal.h"

static void implemented_list(char *buf, size_t cap) {
    buf[0] = '\0';
    size_t used = 0;
    for (int s = 0; s < MC_STAGE_COUNT; s++)
        if (mc_stage_implemented(s)) {
            int n = snprintf(buf + used, cap - used, "%s%s", used ? ", " : "", mc_stage_name(s));
            if (n < 0 || (size_t)n >= cap - used) break;
            used += (size_t)n;
        }
}

mc_status mc_run(const mc_comm *c, const mc_config *cfg, int only_stage, int only_task, mc_error *err) {
    if (cfg->threads > 0) mc_set_threads((int)cfg->threads);
    /* Refuse unimplemented stages before doing anything (every rank sees the same config). */
    for (int i = 0; i < cfg->stages.n; i++) {
        int st = cfg->stages.v[i];
        if (only_stage >= 0 && st != only_stage) continue;
        if (!mc_stage_implemented(st)) {
            char have[256];
            implemented_list(have, sizeof have);
            return MC_FAIL(err, MC_ERR_UNSUPPORTED,
                           "%s: stage '%s' is not implemented in this build (implemented: %s); "
                           "remove it from 'stages'", cfg->source_path, mc_stage_name(st), have);
        }
    }
    MC_TRY(mc_preflight(c, cfg, only_stage, NULL, err)); /* issue 16: everything a run needs (preflight.c) */
    /* Pre-flight: every listed stage's own checks, before any work. */
    for (int i = 0; i < cfg->stages.n; i++) {
        const mc_stage_desc *d = mc_stage_find(cfg->stages.v[i]);
        if ((only_stage < 0 || (int)cfg->stages.v[i] == only_stage) && d->check) MC_TRY(d->check(cfg, err));
    }
    if (only_stage >= 0 && !mc_config_has_stage(cfg, (mc_stage)only_stage))
        return MC_FAIL(err, MC_ERR_ARG, "%s: stage '%s' is not in the config's 'stages'",
                       cfg->source_path, mc_stage_name(only_stage));
    mc_info0("run %s: config %.16s, %d rank(s) x %d thread(s), output %s", cfg->name, cfg->hash,
             c->size, mc_get_threads(), cfg->output_dir);
    for (int i = 0; i < cfg->stages.n; i++) {
        int st = cfg->stages.v[i];
        if (only_stage >= 0 && st != only_stage) continue;
        mc_task *tasks = NULL;
        int n = 0;
        MC_TRY(mc_config_tasks(cfg, (mc_stage)st, &tasks, &n, err));
        if (only_task >= n) {
            mc_tasks_free(&tasks);
            return MC_FAIL(err, MC_ERR_ARG, "stage '%s' has %d task(s); task %d does not exist",
                           mc_stage_name(st), n, only_task);
        }
        mc_status s = MC_OK;
        for (int t = 0; t < n && s == MC_OK; t++) {
            if (only_task >= 0 && t != only_task) continue;
            double t0 = mc_now();
            mc_info0("stage %s: task %d/%d %s", mc_stage_name(st), t + 1, n, tasks[t].id);
            s = mc_stage_find(st)->run(c, cfg, &tasks[t], err);
            if (s == MC_OK) mc_info0("stage %s: task %s done in %.1f s", mc_stage_name(st), tasks[t].id, mc_now() - t0);
        }
        mc_tasks_free(&tasks);
        if (s != MC_OK) return s;
    }
    return MC_OK;
}
