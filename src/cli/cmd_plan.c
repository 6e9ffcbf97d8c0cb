/* cmd_plan.c - `miclip plan CONFIG`: what a config will cost, before anything runs (plan.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "miclip/checked.h"
#include "miclip/config.h"
#include "miclip/fsutil.h"
#include "miclip/log.h"
#include "miclip/plan.h"

enum {
    OPT_RANKS = 2,
    OPT_THREADS,
    OPT_JSON,
    OPT_CALIBRATION,
    OPT_TARGET,
    OPT_CLIP,
    OPT_CALIBRATE,
    OPT_OUT
};

static const mc_cli_opt opts[] = {
    {"ranks", MC_CLI_VALUE, OPT_RANKS, "N", "MPI ranks per task (default 1)"},
    {"threads", MC_CLI_VALUE, OPT_THREADS, "T", "threads per rank (default: the config's, else 1)"},
    {"json", MC_CLI_FLAG, OPT_JSON, NULL, "the plan as JSON instead of the table"},
    {"calibration", MC_CLI_VALUE, OPT_CALIBRATION, "FILE",
     "rates to use (default $MICLIP_CALIBRATION, else\n"
     "~/.cache/miclip/calibration.json; missing: conservative defaults)"},
    {"target", MC_CLI_VALUE, OPT_TARGET, "DIR",
     "read the target model's config.json from DIR instead of the config's"},
    {"clip", MC_CLI_VALUE, OPT_CLIP, "DIR",
     "read CLIP's config.json from DIR instead of the config's"},
    {"calibrate", MC_CLI_FLAG, OPT_CALIBRATE, NULL,
     "measure this machine (sgemm, memory, PNG decode + resize, and a\n"
     "forward of the target model when its weights are here; a few\n"
     "seconds) and write the calibration file. Run it inside a job on\n"
     "a compute node."},
    {"out", MC_CLI_VALUE, OPT_OUT, "FILE",
     "with --calibrate: where to write it (default as for --calibration)"},
    {0}};

const mc_cli_cmd mc_cmd_plan_cli = {
    .name = "plan",
    .usage = "miclip plan CONFIG [--ranks N] [--threads T] [--json]\n"
             "                   [--calibration FILE] [--target DIR] [--clip DIR]\n"
             "       miclip plan CONFIG --calibrate [--threads T] [--out FILE]",
    .about =
        "Prints per stage the work (images x GMAC/image, SAE and E_n steps, intervention\n"
        "forwards), the wall time of one task at N ranks x T threads, core-hours, peak memory\n"
        "per rank and the disk of every store. Sizes come from the models' config.json (the\n"
        "weights are not needed); rates from a calibration file measured on the compute nodes.\n",
    .opts = opts};

int mc_cmd_plan(const mc_comm *c, int argc, char **argv) {
    const char *cmd = argv[0];
    mc_cli_parser p;
    int rc0 = mc_cli_begin(&p, c, &mc_cmd_plan_cli, argc, argv);
    if (rc0 >= 0) return rc0;
    const char *path = NULL, *cal_path = NULL, *out = NULL, *tdir = NULL, *cdir = NULL, *v;
    long long ranks = 1, threads = 0;
    bool json = false, calibrate = false;
    for (int id; (id = mc_cli_next(&p, &v)) != MC_CLI_END;) {
        switch (id) {
        case MC_CLI_ERROR: return MC_EXIT_USAGE;
        case OPT_RANKS:
            if (!mc_cli_parse_int(v, 1, 1 << 20, &ranks))
                return mc_cli_usage_error(c, cmd, "--ranks takes 1..1048576");
            break;
        case OPT_THREADS:
            if (!mc_cli_parse_int(v, 1, 4096, &threads))
                return mc_cli_usage_error(c, cmd, "--threads takes 1..4096");
            break;
        case OPT_CALIBRATION: cal_path = v; break;
        case OPT_OUT: out = v; break;
        case OPT_TARGET: tdir = v; break;
        case OPT_CLIP: cdir = v; break;
        case OPT_JSON: json = true; break;
        case OPT_CALIBRATE: calibrate = true; break;
        case MC_CLI_ARG:
            if (path) return mc_cli_usage_error(c, cmd, "one CONFIG only");
            path = v;
            break;
        }
    }
    if (!path) return mc_cli_usage_error(c, cmd, "missing CONFIG");
    if (out && !calibrate) return mc_cli_usage_error(c, cmd, "--out goes with --calibrate");
    mc_error err = {0};
    mc_config *cfg = NULL;
    mc_status s = mc_config_load(c, path, &cfg, &err);
    char def[MC_PLAN_TEXT_MAX];
    mc_calibration_default_path(def, sizeof def);
    if (s == MC_OK && calibrate) {
        /* Rank 0 measures (one rank's rate is what the plan scales); the others wait. */
        mc_calibration cal;
        int th = threads > 0 ? (int)threads : (cfg->threads > 0 ? (int)cfg->threads : 1);
        if (c->rank == 0) {
            /* the write rate in the output folder when it exists, else the calibration's */
            char scratch[MC_PLAN_TEXT_MAX];
            mc_strlcpy(scratch, out ? out : def, sizeof scratch);
            char *slash = strrchr(scratch, '/');
            if (slash) *slash = '\0';
            s = slash && slash != scratch ? mc_mkdir_p(scratch, &err) : MC_OK;
            if (s == MC_OK)
                s = mc_calibration_measure(th, tdir ? tdir : cfg->models.target,
                                           mc_dir_exists(cfg->output_dir) ? cfg->output_dir
                                           : slash                        ? scratch
                                                                          : ".",
                                           &cal, &err);
            if (s == MC_OK) s = mc_calibration_write(out ? out : def, &cal, &err);
            if (s == MC_OK) {
                printf("calibration of %s at %d thread(s) -> %s\n  sgemm %.1f GFLOP/s, memory %.1f "
                       "GB/s, decode+resize %.0f images/s, CLIP-Dissect slot terms %.0f M/s and "
                       "factors %.0f M/s (1 thread)",
                       cal.host, cal.threads, out ? out : def, cal.sgemm_gflops, cal.mem_gbps,
                       cal.decode_ips, cal.log_terms_ps / 1e6, cal.product_terms_ps / 1e6);
                printf(", normal draws %.0f M/s (1 thread), fsync'd writes %.0f MB/s%s",
                       cal.normals_ps / 1e6, cal.write_mbps,
                       cal.fixed_defaults ? " (the default: no writable folder)" : "");
                if (cal.fwd_ips > 0)
                    printf(", forward of %s: %.2f images/s (batch %d)", cal.fwd_model, cal.fwd_ips,
                           cal.fwd_batch);
                else
                    printf(" (no forward: the target model's weights are not here)");
                printf("\n");
            }
        }
    } else if (s == MC_OK && c->rank == 0) {
        mc_calibration cal;
        mc_calibration_defaults(&cal);
        const char *cp = cal_path ? cal_path : def;
        if (cal_path || mc_file_exists(cp)) s = mc_calibration_read(cp, &cal, &err);
        mc_plan plan;
        if (s == MC_OK)
            s = mc_plan_make(cfg, (int)ranks, (int)threads, &cal, tdir, cdir, true, &plan, &err);
        if (s == MC_OK) {
            if (json)
                mc_plan_print_json(stdout, cfg, &plan);
            else
                mc_plan_print(stdout, cfg, &plan);
        }
    }
    int rc = mc_cli_finish(c, s, &err);
    mc_config_free(&cfg);
    return rc;
}
