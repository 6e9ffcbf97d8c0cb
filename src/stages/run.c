/* run.c - the stage runner: stages in pipeline order, each over its sweep's tasks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/fsutil.h"
#include "miclip/log.h"
#include "miclip/miclip.h"
#include "miclip/plan.h"
#include "stages_internal.h"

/* The run-level estimate (rank 0): per-stage wall time of all tasks from `miclip plan`'s model
 * and the calibration file, when there is one (the plan's defaults are too rough to print). */
static bool run_estimate(const mc_config *cfg, int ranks, double *stage_s, char *cal_path,
                         size_t cap) {
    mc_calibration_default_path(cal_path, cap);
    if (!mc_file_exists(cal_path)) return false;
    mc_calibration cal;
    mc_error e = {0};
    static mc_plan plan; /* large; rank 0 only, once per run */
    if (mc_calibration_read(cal_path, &cal, &e) != MC_OK ||
        mc_plan_make(cfg, ranks, mc_get_threads(), &cal, NULL, NULL, false, &plan, &e) != MC_OK) {
        mc_debug("run: no estimate: %s", e.msg);
        return false;
    }
    /* One process runs every task: the plan's per-task start-up (a job's) is paid once, and
     * where tasks differ (extract's shared stores) the sum of the tasks, not n x the longest. */
    for (int i = 0; i < plan.n_stages && i < cfg->stages.n; i++) stage_s[i] = plan.st[i].run_s;
    return true;
}

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

mc_status mc_run(const mc_comm *c, const mc_config *cfg, int only_stage, int only_task,
                 mc_error *err) {
    if (cfg->threads > 0) mc_set_threads_from((int)cfg->threads, "the config's 'threads'");
    /* Refuse unimplemented stages before doing anything (every rank sees the same config). */
    for (int i = 0; i < cfg->stages.n; i++) {
        int st = cfg->stages.v[i];
        if (only_stage >= 0 && st != only_stage) continue;
        if (!mc_stage_implemented(st)) {
            char have[256];
            implemented_list(have, sizeof have);
            return MC_FAIL(err, MC_ERR_UNSUPPORTED,
                           "%s: stage '%s' is not implemented in this build (implemented: %s); "
                           "remove it from 'stages'",
                           cfg->source_path, mc_stage_name(st), have);
        }
    }
    MC_TRY(mc_preflight(c, cfg, only_stage, NULL,
                        err)); /* issue 16: everything a run needs (preflight.c) */
    /* Pre-flight: every listed stage's own checks, before any work. */
    for (int i = 0; i < cfg->stages.n; i++) {
        const mc_stage_desc *d = mc_stage_find(cfg->stages.v[i]);
        if ((only_stage < 0 || (int)cfg->stages.v[i] == only_stage) && d->check)
            MC_TRY(d->check(cfg, err));
    }
    if (only_stage >= 0 && !mc_config_has_stage(cfg, (mc_stage)only_stage))
        return MC_FAIL(err, MC_ERR_ARG, "%s: stage '%s' is not in the config's 'stages'",
                       cfg->source_path, mc_stage_name(only_stage));
    mc_info0("run %s: config %.16s, %d rank(s) x %d thread(s), output %s", cfg->name, cfg->hash,
             c->size, mc_get_threads(), cfg->output_dir);
    int n_run = 0;
    for (int i = 0; i < cfg->stages.n; i++)
        if (only_stage < 0 || (int)cfg->stages.v[i] == only_stage) n_run++;
    double est[MC_STAGE_COUNT] = {0}, left = 0;
    char cal[MC_PLAN_TEXT_MAX] = "";
    bool have_est =
        c->rank == 0 && only_task < 0 && run_estimate(cfg, c->size, est, cal, sizeof cal);
    for (int i = 0, first = 1; have_est && i < cfg->stages.n; i++)
        if (only_stage < 0 || (int)cfg->stages.v[i] == only_stage) {
            if (first) est[i] += MC_PLAN_TASK_START_S, first = 0; /* once, with the first stage */
            left += est[i];
        }
    if (have_est) {
        char t[64];
        mc_plan_fmt_time(left, t, sizeof t);
        mc_info0("run: %d stage(s), estimated %s (calibration %s; complete stages take less)",
                 n_run, t, cal);
    } else if (only_task < 0) {
        mc_info0("run: %d stage(s) (no run estimate: 'miclip plan CONFIG --calibrate' writes a "
                 "calibration)",
                 n_run);
    }
    const double t_run = mc_now();
    int k = 0;
    for (int i = 0; i < cfg->stages.n; i++) {
        int st = cfg->stages.v[i];
        if (only_stage >= 0 && st != only_stage) continue;
        k++;
        mc_task *tasks = NULL;
        int n = 0;
        MC_TRY(mc_config_tasks(cfg, (mc_stage)st, &tasks, &n, err));
        if (only_task >= n) {
            mc_tasks_free(&tasks);
            return MC_FAIL(err, MC_ERR_ARG, "stage '%s' has %d task(s); task %d does not exist",
                           mc_stage_name(st), n, only_task);
        }
        int n_do = only_task >= 0 ? 1 : n;
        if (have_est) {
            char t[64];
            mc_plan_fmt_time(left, t, sizeof t);
            mc_info0("stage %d/%d %s: %d task(s) (run ETA %s)", k, n_run, mc_stage_name(st), n_do,
                     t);
        } else {
            mc_info0("stage %d/%d %s: %d task(s)", k, n_run, mc_stage_name(st), n_do);
        }
        /* A stage of several tasks logs its tasks' info lines at debug level and one summary
         * line here (log.h, task scope); one task (a Slurm array task) keeps them. */
        mc_log_set_task_scope(n_do > 1);
        const double t_stage = mc_now();
        mc_status s = MC_OK;
        /* The stage's complete tasks at once, when it can tell (stages.h: complete). */
        const mc_stage_desc *d = mc_stage_find(st);
        bool *done = d->complete && only_task < 0 ? calloc((size_t)n + 1, sizeof *done) : NULL;
        if (d->complete && only_task < 0) {
            s = mc_comm_agree(c, done ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory"), err);
            if (s == MC_OK) s = d->complete(c, cfg, tasks, n, done, err);
        }
        for (int t = 0; t < n && s == MC_OK; t++) {
            if ((only_task >= 0 && t != only_task) || (done && done[t])) continue;
            double t0 = mc_now();
            mc_info0("stage %s: task %d/%d %s", mc_stage_name(st), t + 1, n, tasks[t].id);
            s = mc_stage_find(st)->run(c, cfg, &tasks[t], err);
            if (s == MC_OK)
                mc_info0("stage %s: task %s done in %.1f s", mc_stage_name(st), tasks[t].id,
                         mc_now() - t0);
        }
        mc_log_set_task_scope(false);
        free(done);
        mc_tasks_free(&tasks);
        if (s != MC_OK) return s;
        left -= est[i];
        if (left < 0) left = 0;
        if (n_do > 1)
            mc_info0("stage %d/%d %s: %d task(s) done in %.1f s (run %.1f s)", k, n_run,
                     mc_stage_name(st), n_do, mc_now() - t_stage, mc_now() - t_run);
    }
    return MC_OK;
}
