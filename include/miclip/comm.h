/* comm.h - the MPI context, collective error agreement, sharding and stop signals.
 *
 * The mc_comm struct is created once in main and passed explicitly to every stage. miclip runs
 * the same under one process (MPI singleton), mpirun and srun.
 *
 * Error protocol (docs/errors.md): a failure every rank can reach is agreed on with
 * mc_comm_agree at a stage boundary: every rank passes its local status, all get the status and
 * message of the lowest failing rank, rank 0 prints it once, every rank exits non-zero. A failure
 * one rank meets in the middle of collective work that the others cannot skip ends the job with
 * mc_comm_abort (message prefixed with the rank, then MPI_Abort), so no rank is left blocked.
 */
#ifndef MICLIP_COMM_H
#define MICLIP_COMM_H

#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "miclip/signals.h"
#include "miclip/status.h"

typedef struct {
    MPI_Comm comm; /* MPI_COMM_WORLD unless a sub-communicator was made */
    int rank, size;
    int node_rank, node_size; /* position among the ranks sharing this node */
    bool initialized_mpi;     /* true when mc_comm_init called MPI_Init (and finalize must close) */
} mc_comm;

/* Initialises MPI (if not yet), fills c, tells the logger the rank, installs the panic handler. */
mc_status mc_comm_init(int *argc, char ***argv, mc_comm *c, mc_error *err);
void mc_comm_finalize(mc_comm *c);

/* The default thread count of this rank: the CPUs its affinity mask allows (sched_getaffinity),
 * divided among the ranks on the same node whose masks overlap it (MPI_COMM_TYPE_SHARED; ranks
 * bound to their own cores share nothing), capped by SLURM_CPUS_PER_TASK and OMP_NUM_THREADS
 * when set, at least 1, and then the minimum over all ranks, so every rank runs the same
 * count. Collective over c (NULL: this process alone). WHY receives the reasoning in words.
 * Precedence (main.c, run.c): the config's `threads` > --threads > MICLIP_THREADS > this. */
int mc_threads_default(const mc_comm *c, char *why, size_t cap);

/* Collective. Every rank passes its local status and error record; returns the status of the
 * lowest failing rank (MC_OK if none failed), and copies that rank's message into err on
 * every rank. */
mc_status mc_comm_agree(const mc_comm *c, mc_status local, mc_error *err);

/* Ends every rank now: prints "rank R: message" and calls MPI_Abort with the exit code. */
_Noreturn void mc_comm_abort(const mc_comm *c, int exit_code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Broadcasts a NUL-terminated string from root. On non-root ranks *s is replaced by a newly
 * malloc'd copy (the old pointer is freed). Collective. */
mc_status mc_comm_bcast_string(const mc_comm *c, int root, char **s, mc_error *err);

/* The contiguous block [begin, end) of n items that rank r of size owns: items are split as
 * evenly as possible, lower ranks taking one extra. Depends only on (n, r, size). */
void mc_shard_range(int64_t n, int r, int size, int64_t *begin, int64_t *end);

/* --- Stop signals ---------------------------------------------------------------------------
 * The local flag and its handlers are in signals.h (MPI-free); these are the collective polls.
 * Long loops poll between units of work, finish and checkpoint the unit in flight, and return
 * MC_ERR_INTERRUPTED (exit code 75, one message). */

/* Collective: true on every rank when any rank has received a stop signal. Call it between
 * units of work; finish the unit, flush, then return MC_ERR_INTERRUPTED. */
bool mc_comm_stop_requested(const mc_comm *c);
/* Collective poll for loops that also stop on a local error: returns the stop signal any rank
 * received (0 if none) and sets *any_failed (may be NULL) when any rank passed local_failed.
 * One MPI_Allreduce of two ints; every rank must call it the same number of times. */
int mc_comm_poll(const mc_comm *c, bool local_failed, bool *any_failed);

#endif
