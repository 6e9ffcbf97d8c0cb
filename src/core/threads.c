/* threads.c - the per-rank compute thread count (miclip.h): its setting and its default. */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "miclip/comm.h"
#include "miclip/log.h"
#include "miclip/miclip.h"

/* OpenBLAS's own setter; declared here so this file needs no cblas.h. */
void openblas_set_num_threads(int num_threads);

static int g_threads = 1; /* process-wide, set once by main before any work */
static char g_source[256] = "default";

void mc_set_threads(int n) {
    g_threads = n > 0 ? n : 1;
    openblas_set_num_threads(g_threads);
}

int mc_get_threads(void) { return g_threads; }

void mc_set_threads_from(int n, const char *source) {
    mc_set_threads(n);
    snprintf(g_source, sizeof g_source, "%s", source ? source : "");
}

const char *mc_threads_source(void) { return g_source; }

/* A positive whole number from an environment variable (OMP_NUM_THREADS may be a list "4,2":
 * the first level counts), else 0. */
static int env_count(const char *name) {
    const char *v = getenv(name);
    if (!v || !*v) return 0;
    char *end = NULL;
    long n = strtol(v, &end, 10);
    if (end == v || (*end != '\0' && *end != ',') || n < 1 || n > 4096) return 0;
    return (int)n;
}

int mc_threads_default(const mc_comm *c, char *why, size_t cap) {
    cpu_set_t mine;
    CPU_ZERO(&mine);
    int cpus = 0;
    bool have_mask = sched_getaffinity(0, sizeof mine, &mine) == 0;
    if (have_mask) cpus = CPU_COUNT(&mine);
    if (cpus < 1) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cpus = n > 0 ? (int)n : 1;
        have_mask = false;
    }
    /* Ranks on this node whose masks overlap this one's share its CPUs (no binding: all of
     * them; one core each: none). Collective over c->comm. */
    int local = 1, sharers = 1;
    if (c && c->size > 1) {
        MPI_Comm node;
        MPI_Comm_split_type(c->comm, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &node);
        MPI_Comm_size(node, &local);
        cpu_set_t *all = calloc((size_t)local, sizeof *all);
        if (all) {
            if (!have_mask) CPU_ZERO(&mine);
            MPI_Allgather(&mine, (int)sizeof mine, MPI_BYTE, all, (int)sizeof mine, MPI_BYTE, node);
            sharers = 0;
            for (int r = 0; r < local; r++) {
                cpu_set_t both;
                CPU_AND(&both, &mine, &all[r]);
                /* without a mask (sysconf) every local rank shares every CPU */
                if (!have_mask || CPU_COUNT(&both) > 0) sharers++;
            }
            if (sharers < 1) sharers = 1;
            free(all);
        } else {
            sharers = local;
        }
        MPI_Comm_free(&node);
    }
    int n = cpus / sharers;
    if (n < 1) n = 1;
    int used =
        snprintf(why, cap, "%d CPU(s) in the affinity mask shared by %d rank(s) of %d on this node",
                 cpus, sharers, local);
    int slurm = env_count("SLURM_CPUS_PER_TASK"), omp = env_count("OMP_NUM_THREADS");
    if (slurm > 0 && slurm < n) {
        n = slurm;
        if (used >= 0 && (size_t)used < cap)
            used += snprintf(why + used, cap - (size_t)used, ", SLURM_CPUS_PER_TASK=%d", slurm);
    }
    if (omp > 0 && omp < n) {
        n = omp;
        if (used >= 0 && (size_t)used < cap)
            used += snprintf(why + used, cap - (size_t)used, ", OMP_NUM_THREADS=%d", omp);
    }
    if (n > 4096) n = 4096;
    /* Every rank runs the same count, the fewest any rank may use: OpenBLAS's results are
     * deterministic for a given thread count (docs/training.md). */
    if (c && c->size > 1) {
        int mn = n;
        MPI_Allreduce(&n, &mn, 1, MPI_INT, MPI_MIN, c->comm);
        if (mn < n && used >= 0 && (size_t)used < cap)
            snprintf(why + used, cap - (size_t)used, ", the fewest of any rank");
        n = mn;
    }
    return n;
}
