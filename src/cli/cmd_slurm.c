/* cmd_slurm.c - `miclip slurm CONFIG --out DIR [...] [--submit]`: one sbatch script per stage.
 *
 * Each script is a job array over the stage's sweep (task i = SLURM_ARRAY_TASK_ID = task i of
 * mc_config_tasks), with --time and --mem from the plan times a margin, and the preemption
 * protocol docs/slurm.md describes: Slurm sends USR1 to the batch shell 120 s before the limit
 * (--signal=B:USR1@120); the shell, which runs the launcher in the background, forwards it;
 * miclip checkpoints and exits 75; the shell then requeues its own job, because Slurm does not
 * requeue a job that ends by itself after the warning. A requeued task resumes from its
 * store; a task whose store is complete exits 0 at once. Stages are chained at submission with
 * --dependency=afterok:<previous array>, and --kill-on-invalid-dep=yes cancels the rest of the
 * chain when a stage fails.
 */
#include <errno.h>
#include <spawn.h>
#include <sys/wait.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "miclip/checked.h"
#include "miclip/config.h"
#include "miclip/fsutil.h"
#include "miclip/log.h"
#include "miclip/plan.h"
#include "miclip/stages.h"

#define MIN_TIME_S 600.0 /* never ask for less than 10 minutes: start-up, queues, the signal lead */
#define SIGNAL_LEAD_S 120 /* --signal=B:USR1@120 */

typedef struct {
    const char *out, *partition, *account, *launcher, *cal_path, *tdir, *cdir, *miclip, *after;
    long long nodes, ntasks, cpus;
    double time_margin, mem_margin;
    bool submit;
} slurm_opts;

enum {
    OPT_OUT = 2,
    OPT_PARTITION,
    OPT_ACCOUNT,
    OPT_NODES,
    OPT_NTASKS,
    OPT_CPUS,
    OPT_TIME_MARGIN,
    OPT_MEM_MARGIN,
    OPT_LAUNCHER,
    OPT_CALIBRATION,
    OPT_TARGET,
    OPT_CLIP,
    OPT_MICLIP,
    OPT_SUBMIT,
    OPT_AFTER
};

static const mc_cli_opt slurm_cli_opts[] = {
    {"out", MC_CLI_VALUE, OPT_OUT, "DIR", "where the scripts go (required)"},
    {"partition", MC_CLI_VALUE, OPT_PARTITION, "P", "#SBATCH --partition (default: the cluster's)"},
    {"account", MC_CLI_VALUE, OPT_ACCOUNT, "A", "#SBATCH --account (default: the cluster's)"},
    {"nodes", MC_CLI_VALUE, OPT_NODES, "N",
     "nodes per task (default 1); one task runs N*T MPI ranks of C threads"},
    {"ntasks-per-node", MC_CLI_VALUE, OPT_NTASKS, "T", "MPI ranks per node (default 1)"},
    {"cpus-per-task", MC_CLI_VALUE, OPT_CPUS, "C", "threads per rank (default 1)"},
    {"time-margin", MC_CLI_VALUE, OPT_TIME_MARGIN, "F",
     "--time = max(10 min, F x planned wall time + 2 min) (default 1.5)"},
    {"mem-margin", MC_CLI_VALUE, OPT_MEM_MARGIN, "F",
     "--mem = F x planned memory per rank x T (default 1.25)"},
    {"launcher", MC_CLI_VALUE, OPT_LAUNCHER, "L",
     "srun (srun --mpi=pmix, default) or mpirun (Open MPI inside the job)"},
    {"calibration", MC_CLI_VALUE, OPT_CALIBRATION, "FILE", "as for 'miclip plan'"},
    {"target", MC_CLI_VALUE, OPT_TARGET, "DIR", "as for 'miclip plan'"},
    {"clip", MC_CLI_VALUE, OPT_CLIP, "DIR", "as for 'miclip plan'"},
    {"miclip", MC_CLI_VALUE, OPT_MICLIP, "PATH",
     "the miclip binary the jobs run (default: this one; $MICLIP at run\n"
     "time overrides it)"},
    {"submit", MC_CLI_FLAG, OPT_SUBMIT, NULL,
     "submit the scripts with 'sbatch --parsable' and print the job ids"},
    {"after", MC_CLI_VALUE, OPT_AFTER, "JOBID",
     "with --submit: the first stage also waits for JOBID (afterok)"},
    {0}};

const mc_cli_cmd mc_cmd_slurm_cli = {
    .name = "slurm",
    .usage = "miclip slurm CONFIG --out DIR [--partition P] [--account A] [--nodes N]\n"
             "                    [--ntasks-per-node T] [--cpus-per-task C] [--time-margin F]\n"
             "                    [--mem-margin F] [--launcher srun|mpirun] [--calibration FILE]\n"
             "                    [--target DIR] [--clip DIR] [--miclip PATH] [--submit] [--after "
             "JOBID]",
    .about =
        "Writes DIR/NN-STAGE.sbatch for every stage of CONFIG (job arrays over the stage's tasks,\n"
        "--time and --mem from 'miclip plan' times the margins, --signal=B:USR1@120, --requeue,\n"
        "--open-mode=append, --kill-on-invalid-dep=yes, logs DIR/logs/STAGE-%A_%a.out) and\n"
        "DIR/submit.sh, which submits them in order chained with --dependency=afterok.\n",
    .opts = slurm_cli_opts};

/* Slurm's [D-]HH:MM:SS, rounded up to whole minutes. */
static void fmt_slurm_time(double s, char *buf, size_t cap) {
    long long m = (long long)ceil(s / 60.0);
    long long d = m / (24 * 60), h = (m / 60) % 24, mm = m % 60;
    if (d > 0)
        snprintf(buf, cap, "%lld-%02lld:%02lld:00", d, h, mm);
    else
        snprintf(buf, cap, "%02lld:%02lld:00", h, mm);
}

/* 'x' quoted for a POSIX shell. */
static bool shq(const char *s, char *buf, size_t cap) {
    size_t n = 0;
    if (cap < 3) return false;
    buf[n++] = '\'';
    for (; *s; s++) {
        if (*s == '\'') {
            if (n + 4 >= cap) return false;
            memcpy(buf + n, "'\\''", 4);
            n += 4;
        } else {
            if (n + 1 >= cap) return false;
            buf[n++] = *s;
        }
    }
    if (n + 2 > cap) return false;
    buf[n++] = '\'';
    buf[n] = '\0';
    return true;
}

/* Values that enter a generated script are checked against what Slurm and the script accept
 * (docs/slurm.md): a newline in a '#SBATCH' value would end the directive and run the rest as a
 * command, and sbatch stops reading directives at the first command. */
#define NAME_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-."
/* Partition and account names: Slurm's own names are letters, digits, '_', '-' and '.'; a
 * partition may be a list separated by ','. */
#define PARTITION_CHARS NAME_CHARS ","
/* A path on a '#SBATCH' line: sbatch splits it at white space and treats quotes, '\' and '#'
 * itself, and Slurm expands '%' in --output; everything else passes through unchanged. */
#define SBATCH_PATH_BAD " \t\"'\\#%"

/* The first character of v that may not enter a script, described in words into desc; false
 * when v is fine. allowed: the only characters accepted (NULL: any printable); refused: more
 * characters refused besides control characters. */
static bool bad_char(const char *v, const char *allowed, const char *refused, char *desc,
                     size_t cap) {
    for (size_t i = 0; v[i]; i++) {
        unsigned char ch = (unsigned char)v[i];
        bool bad = ch < 0x20 || ch == 0x7f || (allowed && !strchr(allowed, ch)) ||
                   (refused && strchr(refused, ch));
        if (!bad) continue;
        if (ch == '\n')
            snprintf(desc, cap, "a newline at offset %zu", i);
        else if (ch == ' ')
            snprintf(desc, cap, "a space at offset %zu", i);
        else if (ch < 0x20 || ch == 0x7f || ch >= 0x80)
            snprintf(desc, cap, "byte 0x%02x at offset %zu", ch, i);
        else
            snprintf(desc, cap, "'%c' at offset %zu", ch, i);
        return true;
    }
    return false;
}

/* Checks one option's value; the message names the option, the character and what is accepted. */
static mc_status check_value(const char *opt, const char *v, const char *allowed,
                             const char *refused, const char *accepted, mc_error *err) {
    char desc[64], shown[128];
    if (!*v) return MC_FAIL(err, MC_ERR_ARG, "%s: empty value (%s)", opt, accepted);
    if (!bad_char(v, allowed, refused, desc, sizeof desc)) return MC_OK;
    size_t n = 0; /* the value on one line: control characters shown as '?' */
    for (; v[n] && n + 1 < sizeof shown; n++)
        shown[n] = (unsigned char)v[n] < 0x20 || v[n] == 0x7f ? '?' : v[n];
    shown[n] = '\0';
    return MC_FAIL(err, MC_ERR_ARG, "%s '%s%s': %s is not accepted in a Slurm script (%s)", opt,
                   shown, v[n] ? "..." : "", desc, accepted);
}

#define ACCEPT_NAME "letters, digits, '_', '-' and '.'"
#define ACCEPT_PARTITION "letters, digits, '_', '-' and '.', several partitions separated by ','"
#define ACCEPT_SBATCH_PATH "no control characters, spaces, quotes, '\\', '#' or '%'"
#define ACCEPT_SHELL_PATH "no control characters; anything else is quoted"

/* Every option value that enters a script, before anything is written. */
static mc_status check_opts(const slurm_opts *o, const char *cfg_path, mc_error *err) {
    if (o->partition)
        MC_TRY(
            check_value("--partition", o->partition, PARTITION_CHARS, NULL, ACCEPT_PARTITION, err));
    if (o->account)
        MC_TRY(check_value("--account", o->account, NAME_CHARS, NULL, ACCEPT_NAME, err));
    MC_TRY(check_value("--out", o->out, NULL, SBATCH_PATH_BAD, ACCEPT_SBATCH_PATH, err));
    MC_TRY(check_value("--miclip", o->miclip, NULL, NULL, ACCEPT_SHELL_PATH, err));
    MC_TRY(check_value("CONFIG", cfg_path, NULL, NULL, ACCEPT_SHELL_PATH, err));
    return MC_OK;
}

static mc_status write_script(const mc_config *cfg, const char *cfg_abs, const slurm_opts *o,
                              const mc_plan *plan, const mc_plan_stage *S, int idx, char *path,
                              size_t cap, mc_error *err) {
    const char *stage = mc_stage_name(S->stage);
    if (!mc_snprintf(path, cap, "%s/%02d-%s.sbatch", o->out, idx + 1, stage))
        return MC_FAIL(err, MC_ERR_ARG, "--out: path too long");
    double wall = S->wall_s_task * o->time_margin + SIGNAL_LEAD_S;
    if (wall < MIN_TIME_S) wall = MIN_TIME_S;
    char tbuf[32], wbuf[64], mbuf[64];
    fmt_slurm_time(wall, tbuf, sizeof tbuf);
    long long mem_mib =
        (long long)ceil(S->mem_rank * o->mem_margin * (double)o->ntasks / 1048576.0);
    mc_plan_fmt_time(S->wall_s_task, wbuf, sizeof wbuf);
    mc_plan_fmt_bytes(S->mem_rank, mbuf, sizeof mbuf);
    char q_miclip[4200], q_cfg[4200], logdir[4200];
    if (!shq(o->miclip, q_miclip, sizeof q_miclip) || !shq(cfg_abs, q_cfg, sizeof q_cfg) ||
        !mc_snprintf(logdir, sizeof logdir, "%s/logs", o->out))
        return MC_FAIL(err, MC_ERR_ARG, "paths too long for the script");
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    fprintf(
        f,
        "#!/bin/bash\n"
        "# Generated by `miclip slurm` - stage '%s' of experiment '%s' (config %.16s).\n"
        "# %d task(s) = array indices 0-%d (task i is `miclip config CONFIG --tasks` entry i).\n"
        "# Plan at %d rank(s) x %d thread(s): %.0f %s per task, %s per task, %s per rank%s.\n"
        "# --time = max(10 min, %.2f x plan + %d s signal lead); --mem = %.2f x plan x %lld "
        "rank(s) per node.\n"
        "# Preemption / time limit: Slurm sends USR1 %d s before the end; this shell forwards it "
        "to\n"
        "# miclip, which checkpoints and exits 75; the shell then requeues the job (Slurm does "
        "not\n"
        "# requeue a job that ends by itself). A requeued task resumes; a finished one exits 0 at "
        "once.\n",
        stage, cfg->name, cfg->hash, S->n_tasks, S->n_tasks - 1, plan->ranks, plan->threads,
        S->items, S->item_name, wbuf, mbuf, plan->cal.from_file ? "" : " (uncalibrated defaults)",
        o->time_margin, SIGNAL_LEAD_S, o->mem_margin, o->ntasks, SIGNAL_LEAD_S);
    fprintf(f, "#SBATCH --job-name=miclip-%s-%s\n", cfg->name, stage);
    if (S->n_tasks > 1)
        fprintf(f, "#SBATCH --array=0-%d\n", S->n_tasks - 1);
    else
        fprintf(f, "#SBATCH --array=0\n");
    if (o->partition) fprintf(f, "#SBATCH --partition=%s\n", o->partition);
    if (o->account) fprintf(f, "#SBATCH --account=%s\n", o->account);
    fprintf(f,
            "#SBATCH --nodes=%lld\n#SBATCH --ntasks-per-node=%lld\n#SBATCH --cpus-per-task=%lld\n",
            o->nodes, o->ntasks, o->cpus);
    fprintf(f, "#SBATCH --time=%s\n#SBATCH --mem=%lldM\n", tbuf, mem_mib);
    fprintf(f,
            "#SBATCH --signal=B:USR1@%d\n#SBATCH --requeue\n#SBATCH --open-mode=append\n"
            "#SBATCH --kill-on-invalid-dep=yes\n#SBATCH --output=%s/%s-%%A_%%a.out\n\n",
            SIGNAL_LEAD_S, logdir, stage);
    fprintf(
        f,
        "MICLIP=${MICLIP:-%s}\nCONFIG=%s\nSTAGE=%s\nTASK=${SLURM_ARRAY_TASK_ID:-0}\n"
        "export MICLIP_THREADS=${SLURM_CPUS_PER_TASK:-1}\n"
        "# Open MPI refuses to run as root without these (harmless otherwise).\n"
        "[ \"$(id -u)\" = 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1\n"
        "# Variables an MPI launcher set in the submitting process break this job's launcher.\n"
        "unset $(compgen -e | grep -E "
        "'^(PMIX_|ORTE_|OMPI_MCA_(ess|orte_|pmix)|OMPI_COMM_WORLD_|OMPI_ARGV|OMPI_COMMAND)')\n\n",
        q_miclip, q_cfg, stage);
    fprintf(
        f,
        "echo \"[miclip-slurm] $(date -u +%%FT%%TZ) job ${SLURM_JOB_ID} array "
        "${SLURM_ARRAY_JOB_ID:-none}_${TASK}"
        " restart ${SLURM_RESTART_COUNT:-0} on $(hostname): $STAGE task $TASK\"\n"
        "P=\n"
        "GOT_TERM=0\n"
        "# Every stop signal reaches the launcher as USR1, the one both launchers forward to the\n"
        "# ranks and let them act on: srun kills its tasks at once on TERM (exit 137) and needs "
        "two\n"
        "# INTs within a second (then kills them); mpirun SIGKILLs the ranks ~1 s after "
        "forwarding\n"
        "# TERM/INT and exits 1 (docs/errors.md). On USR1 miclip checkpoints and exits 75.\n"
        "forward() {\n"
        "    echo \"[miclip-slurm] $(date -u +%%FT%%TZ) got SIG$1, sending SIGUSR1 to the "
        "launcher\"\n"
        "    [ \"$1\" != USR1 ] && GOT_TERM=1\n"
        "    [ -n \"$P\" ] && kill -USR1 \"$P\" 2>/dev/null\n"
        "}\n"
        "trap 'forward USR1' USR1\n"
        "trap 'forward TERM' TERM\n"
        "trap 'forward INT' INT\n\n");
    if (!strcmp(o->launcher, "mpirun"))
        fprintf(f, "# mpirun takes its slots from the allocation and forwards USR1 to the ranks.\n"
                   "mpirun -n \"$SLURM_NTASKS\" --bind-to none \"$MICLIP\" run \"$CONFIG\" --stage "
                   "\"$STAGE\" --task \"$TASK\" &\n");
    else
        fprintf(
            f,
            "# srun --mpi=pmix: the only PMI Debian's Open MPI understands; srun forwards USR1.\n"
            "srun --mpi=pmix --cpus-per-task=\"${SLURM_CPUS_PER_TASK:-1}\" --kill-on-bad-exit=1 "
            "\\\n"
            "    \"$MICLIP\" run \"$CONFIG\" --stage \"$STAGE\" --task \"$TASK\" &\n");
    fprintf(f, "P=$!\n"
               "# A trap interrupts 'wait'; keep waiting until the launcher has really ended.\n"
               "while :; do wait \"$P\"; kill -0 \"$P\" 2>/dev/null || break; done\n"
               "wait \"$P\"; rc=$?\n"
               "echo \"[miclip-slurm] $(date -u +%%FT%%TZ) miclip exited $rc\"\n"
               "# 75 = stopped on a signal after a checkpoint; srun and mpirun both pass the "
               "ranks' 75 through\n"
               "# unchanged (measured). After USR1 (time limit, preemption warning) run again "
               "later, resuming;\n"
               "# after TERM/INT (scancel, the hard limit) stay cancelled: the store resumes on a "
               "resubmit.\n"
               "if [ \"$rc\" -eq 75 ] && [ \"$GOT_TERM\" = 0 ]; then\n"
               "    echo \"[miclip-slurm] requeueing job ${SLURM_JOB_ID}\"\n"
               "    scontrol requeue \"$SLURM_JOB_ID\" && exit 0\n"
               "    echo \"[miclip-slurm] requeue failed; resubmit this script to resume\"\n"
               "fi\n"
               "exit \"$rc\"\n");
    if (fclose(f) != 0 || !text) {
        free(text);
        return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    mc_status s = mc_write_file_atomic(path, text, len, err);
    free(text);
    return s;
}

/* True for a variable an MPI launcher or MPI_Init sets in this process (not the user): Open
 * MPI's singleton MPI_Init adds PMIX_ and OMPI_MCA_ess, orte_ and pmix variables, OMPI_ARGV ... to the
 * environment, and sbatch exports the environment into the job, where the stale values make
 * mpirun exit 1 and concurrent srun-launched array tasks share one set of Open MPI
 * shared-memory segments (a segfault in the vader BTL). Measured here; docs/slurm.md. */
static bool launcher_var(const char *kv) {
    static const char *const prefixes[] = {"PMIX_",
                                           "PMI_",
                                           "ORTE_",
                                           "OPAL_",
                                           "OMPI_MCA_ess",
                                           "OMPI_MCA_orte_",
                                           "OMPI_MCA_pmix",
                                           "OMPI_MCA_initial_wdir",
                                           "OMPI_MCA_shmem_RUNTIME_QUERY",
                                           "OMPI_APP_CTX_",
                                           "OMPI_ARGV=",
                                           "OMPI_COMMAND=",
                                           "OMPI_COMM_WORLD_",
                                           "OMPI_UNIVERSE_SIZE=",
                                           "OMPI_FIRST_RANKS=",
                                           "OMPI_NUM_APP_CTX=",
                                           "OMPI_FILE_LOCATION=",
                                           "HFI_NO_BACKTRACE=",
                                           "IPATH_NO_BACKTRACE="};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (!strncmp(kv, prefixes[i], strlen(prefixes[i]))) return true;
    return false;
}

/* The environment for sbatch: this process's, less the launcher's variables. The array is
 * malloc'd (the strings are borrowed from environ). */
static char **clean_env(void) {
    extern char **environ;
    size_t n = 0;
    while (environ[n]) n++;
    char **env = calloc(n + 1, sizeof *env);
    if (!env) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!launcher_var(environ[i])) env[k++] = environ[i];
    env[k] = NULL;
    return env;
}

/* Runs `sbatch --parsable [--dependency=afterok:DEP] FILE` with the start-up environment,
 * returning the job id. */
static mc_status sbatch(const char *file, const char *dep, char *id, size_t cap, mc_error *err) {
    extern char **environ;
    char depopt[128];
    const char *argv[5];
    int a = 0;
    argv[a++] = "sbatch";
    argv[a++] = "--parsable";
    if (dep && dep[0]) {
        snprintf(depopt, sizeof depopt, "--dependency=afterok:%s", dep);
        argv[a++] = depopt;
    }
    argv[a++] = file;
    argv[a] = NULL;
    int fd[2];
    if (pipe(fd) != 0) return MC_FAIL(err, MC_ERR_IO, "pipe: %s", strerror(errno));
    char **env = clean_env();
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd[1], 1);
    posix_spawn_file_actions_addclose(&fa, fd[0]);
    pid_t pid;
    int rc = posix_spawnp(&pid, "sbatch", &fa, NULL, (char *const *)argv, env ? env : environ);
    posix_spawn_file_actions_destroy(&fa);
    free(env);
    close(fd[1]);
    if (rc != 0) {
        close(fd[0]);
        return MC_FAIL(err, MC_ERR_IO, "cannot run sbatch: %s (is Slurm installed and on PATH?)",
                       strerror(rc));
    }
    char line[256] = "";
    size_t got = 0;
    ssize_t r;
    /* Signal handlers have no SA_RESTART (signals.h): retry reads a signal interrupted. */
    while (got < sizeof line - 1) {
        r = read(fd[0], line + got, sizeof line - 1 - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    line[got] = '\0';
    char sink[256];
    while ((r = read(fd[0], sink, sizeof sink)) > 0 || (r < 0 && errno == EINTR)) {}
    close(fd[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    line[strcspn(line, ";\r\n")] = '\0'; /* "ID" or "ID;cluster" */
    size_t n = strlen(line);
    bool digits = n > 0;
    for (size_t i = 0; i < n; i++) digits = digits && line[i] >= '0' && line[i] <= '9';
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || !digits)
        return MC_FAIL(
            err, MC_ERR_IO,
            "sbatch %s failed (exit %d, output '%s'); is SLURM_CONF set and the cluster up?", file,
            WIFEXITED(st) ? WEXITSTATUS(st) : -1, line);
    mc_strlcpy(id, line, cap);
    return MC_OK;
}

static mc_status make_scripts(const mc_config *cfg, const char *cfg_path, const slurm_opts *opts,
                              mc_error *err) {
    /* The scripts name their log folder: make --out absolute, it may be submitted from anywhere. */
    slurm_opts abs = *opts, *o = &abs;
    char out_abs[4096];
    MC_TRY(mc_mkdir_p(opts->out, err));
    if (!realpath(opts->out, out_abs))
        return MC_FAIL(err, MC_ERR_IO, "%s: %s", opts->out, strerror(errno));
    abs.out = out_abs;
    mc_calibration cal;
    mc_calibration_defaults(&cal);
    char def[MC_PLAN_TEXT_MAX];
    mc_calibration_default_path(def, sizeof def);
    const char *cp = o->cal_path ? o->cal_path : def;
    if (o->cal_path || mc_file_exists(cp)) MC_TRY(mc_calibration_read(cp, &cal, err));
    mc_plan plan;
    MC_TRY(mc_plan_make(cfg, (int)(o->nodes * o->ntasks), (int)o->cpus, &cal, o->tdir, o->cdir,
                        true, &plan, err));
    char cfg_abs[4096];
    if (!realpath(cfg_path, cfg_abs))
        return MC_FAIL(err, MC_ERR_IO, "%s: %s", cfg_path, strerror(errno));
    /* The absolute forms add the working folder, which the command-line check did not see. */
    MC_TRY(check_value("--out (absolute)", o->out, NULL, SBATCH_PATH_BAD, ACCEPT_SBATCH_PATH, err));
    MC_TRY(check_value("CONFIG (absolute)", cfg_abs, NULL, NULL, ACCEPT_SHELL_PATH, err));
    if (check_value("the job name", cfg->name, NAME_CHARS, NULL, ACCEPT_NAME, err) != MC_OK) {
        mc_error_prefix(err, "%s: key 'name'",
                        cfg_path); /* unreachable: the config checks it too */
        return err->code;
    }
    char logdir[4200];
    if (!mc_snprintf(logdir, sizeof logdir, "%s/logs", o->out))
        return MC_FAIL(err, MC_ERR_ARG, "--out: path too long");
    MC_TRY(mc_mkdir_p(logdir, err));
    char qlog[4300];
    if (!shq(logdir, qlog, sizeof qlog)) return MC_FAIL(err, MC_ERR_ARG, "--out: path too long");
    char paths[MC_STAGE_COUNT][4200];
    char *sub = NULL;
    size_t sublen = 0;
    FILE *sf = open_memstream(&sub, &sublen);
    if (!sf) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    fprintf(sf,
            "#!/bin/bash\n# Generated by `miclip slurm`: submits the stages of '%s' in order, each "
            "held until the\n"
            "# previous one has finished successfully (afterok). Prints 'STAGE JOBID' lines.\n"
            "set -euo pipefail\ncd \"$(dirname \"$0\")\"\nmkdir -p %s  # sbatch does not create "
            "the log folder\nprev=\n",
            cfg->name, qlog);
    mc_status s = MC_OK;
    char unimpl[256] = "";
    for (int i = 0; s == MC_OK && i < plan.n_stages; i++) {
        s = write_script(cfg, cfg_abs, o, &plan, &plan.st[i], i, paths[i], sizeof paths[i], err);
        const char *base = strrchr(paths[i], '/');
        base = base ? base + 1 : paths[i];
        fprintf(sf,
                "j=$(sbatch --parsable ${prev:+--dependency=afterok:$prev} %s); prev=${j%%%%;*}; "
                "echo \"%s $prev\"\n",
                base, mc_stage_name(plan.st[i].stage));
        if (!plan.st[i].implemented) {
            size_t u = strlen(unimpl);
            snprintf(unimpl + u, sizeof unimpl - u, "%s%s", u ? ", " : "",
                     mc_stage_name(plan.st[i].stage));
        }
        if (s == MC_OK) mc_info("wrote %s (%d task(s))", paths[i], plan.st[i].n_tasks);
    }
    fclose(sf);
    if (s == MC_OK) {
        char sp[4200];
        if (!mc_snprintf(sp, sizeof sp, "%s/submit.sh", o->out))
            s = MC_FAIL(err, MC_ERR_ARG, "--out: path too long");
        if (s == MC_OK) s = mc_write_file_atomic(sp, sub, sublen, err);
    }
    free(sub);
    if (s != MC_OK) return s;
    if (unimpl[0])
        mc_warn("stages not implemented in this build: %s (their jobs would fail)", unimpl);
    if (!o->submit) return MC_OK;
    if (unimpl[0])
        return MC_FAIL(err, MC_ERR_UNSUPPORTED,
                       "not submitting: stage(s) %s are not implemented in this build; "
                       "remove them from 'stages' in %s",
                       unimpl, cfg_path);
    char prev[64] = "";
    if (o->after) mc_strlcpy(prev, o->after, sizeof prev);
    for (int i = 0; i < plan.n_stages; i++) {
        char id[64];
        MC_TRY(sbatch(paths[i], prev, id, sizeof id, err));
        printf("%s %s\n", mc_stage_name(plan.st[i].stage), id);
        fflush(stdout);
        mc_strlcpy(prev, id, sizeof prev);
    }
    return MC_OK;
}

int mc_cmd_slurm(const mc_comm *c, int argc, char **argv) {
    const char *cmd = argv[0];
    mc_cli_parser p;
    int rc0 = mc_cli_begin(&p, c, &mc_cmd_slurm_cli, argc, argv);
    if (rc0 >= 0) return rc0;
    slurm_opts o = {.launcher = "srun",
                    .nodes = 1,
                    .ntasks = 1,
                    .cpus = 1,
                    .time_margin = 1.5,
                    .mem_margin = 1.25};
    const char *path = NULL, *v;
    for (int id; (id = mc_cli_next(&p, &v)) != MC_CLI_END;) {
        switch (id) {
        case MC_CLI_ERROR: return MC_EXIT_USAGE;
        case OPT_OUT: o.out = v; break;
        case OPT_PARTITION: o.partition = v; break;
        case OPT_ACCOUNT: o.account = v; break;
        case OPT_LAUNCHER:
            o.launcher = v;
            if (strcmp(o.launcher, "srun") && strcmp(o.launcher, "mpirun"))
                return mc_cli_usage_error(c, cmd, "--launcher takes srun or mpirun");
            break;
        case OPT_CALIBRATION: o.cal_path = v; break;
        case OPT_TARGET: o.tdir = v; break;
        case OPT_CLIP: o.cdir = v; break;
        case OPT_MICLIP: o.miclip = v; break;
        case OPT_NODES:
            if (!mc_cli_parse_int(v, 1, 100000, &o.nodes))
                return mc_cli_usage_error(c, cmd, "--nodes takes 1..100000");
            break;
        case OPT_NTASKS:
            if (!mc_cli_parse_int(v, 1, 4096, &o.ntasks))
                return mc_cli_usage_error(c, cmd, "--ntasks-per-node takes 1..4096");
            break;
        case OPT_CPUS:
            if (!mc_cli_parse_int(v, 1, 4096, &o.cpus))
                return mc_cli_usage_error(c, cmd, "--cpus-per-task takes 1..4096");
            break;
        case OPT_TIME_MARGIN:
        case OPT_MEM_MARGIN: {
            char *end = NULL;
            double x = strtod(v, &end);
            if (!end || *end || !(x >= 1.0 && x <= 100.0))
                return mc_cli_usage_error(c, cmd, "%s takes a number from 1 to 100",
                                          id == OPT_TIME_MARGIN ? "--time-margin" : "--mem-margin");
            if (id == OPT_TIME_MARGIN)
                o.time_margin = x;
            else
                o.mem_margin = x;
            break;
        }
        case OPT_AFTER:
            o.after = v;
            if (!*o.after || strspn(o.after, "0123456789_") != strlen(o.after))
                return mc_cli_usage_error(c, cmd, "--after takes a job id");
            break;
        case OPT_SUBMIT: o.submit = true; break;
        case MC_CLI_ARG:
            if (path) return mc_cli_usage_error(c, cmd, "one CONFIG only");
            path = v;
            break;
        }
    }
    if (!path) return mc_cli_usage_error(c, cmd, "missing CONFIG");
    if (o.after && !o.submit) return mc_cli_usage_error(c, cmd, "--after goes with --submit");
    if (!o.out) return mc_cli_usage_error(c, cmd, "missing --out DIR");
    char self[4096];
    if (!o.miclip) {
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        self[n > 0 ? n : 0] = '\0';
        o.miclip = n > 0 ? self : "miclip";
    }
    mc_error err = {0};
    if (check_opts(&o, path, &err) != MC_OK) return mc_cli_usage_error(c, cmd, "%s", err.msg);
    mc_config *cfg = NULL;
    mc_status s = mc_config_load(c, path, &cfg, &err);
    if (s == MC_OK && c->rank == 0) s = make_scripts(cfg, path, &o, &err);
    int rc = mc_cli_finish(c, s, &err);
    mc_config_free(&cfg);
    return rc;
}
