#include "miclip/comm.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/log.h"

static MPI_Comm g_abort_comm = MPI_COMM_NULL; /* the one communicator the panic path aborts */

static void abort_all(int code) {
    int up = 0, down = 0;
    MPI_Initialized(&up);
    MPI_Finalized(&down);
    if (up && !down && g_abort_comm != MPI_COMM_NULL) MPI_Abort(g_abort_comm, code);
    exit(code);
}

mc_status mc_comm_init(int *argc, char ***argv, mc_comm *c, mc_error *err) {
    memset(c, 0, sizeof *c);
    int up = 0;
    MPI_Initialized(&up);
    if (!up) {
        int provided = 0;
        /* FUNNELED: only the main thread calls MPI; OpenBLAS/OpenMP threads never do. */
        if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
            return MC_FAIL(err, MC_ERR_MPI, "MPI_Init_thread failed");
        c->initialized_mpi = true;
    }
    c->comm = MPI_COMM_WORLD;
    MPI_Comm_rank(c->comm, &c->rank);
    MPI_Comm_size(c->comm, &c->size);
    MPI_Comm node;
    MPI_Comm_split_type(c->comm, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &c->node_rank);
    MPI_Comm_size(node, &c->node_size);
    MPI_Comm_free(&node);
    mc_log_set_rank(c->rank, c->size);
    g_abort_comm = c->comm;
    mc_set_abort_handler(abort_all);
    return MC_OK;
}

void mc_comm_finalize(mc_comm *c) {
    int down = 0;
    MPI_Finalized(&down);
    if (c->initialized_mpi && !down) MPI_Finalize();
    c->initialized_mpi = false;
    g_abort_comm = MPI_COMM_NULL;
}

mc_status mc_comm_agree(const mc_comm *c, mc_status local, mc_error *err) {
    int mine = local == MC_OK ? c->size : c->rank;
    int first = c->size;
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, c->comm);
    if (first == c->size) return MC_OK;
    /* Ship the first failing rank's record to everyone: status code + message. */
    struct {
        int code;
        char msg[MC_ERROR_MSG_MAX];
    } rec;
    memset(&rec, 0, sizeof rec);
    if (c->rank == first) {
        rec.code = (int)local;
        if (err) memcpy(rec.msg, err->msg, sizeof rec.msg);
    }
    MPI_Bcast(&rec, (int)sizeof rec, MPI_BYTE, first, c->comm);
    rec.msg[sizeof rec.msg - 1] = '\0';
    if (err) {
        if (c->rank != first) {
            err->code = (mc_status)rec.code;
            memcpy(err->msg, rec.msg, sizeof err->msg);
            err->src_file = NULL;
            err->src_line = 0;
        }
    }
    return (mc_status)rec.code;
}

_Noreturn void mc_comm_abort(const mc_comm *c, int exit_code, const char *fmt, ...) {
    char msg[MC_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "miclip[%d]: fatal: %s\n", c->rank, msg);
    fflush(stderr);
    MPI_Abort(c->comm, exit_code);
    exit(exit_code); /* not reached */
}

mc_status mc_comm_bcast_string(const mc_comm *c, int root, char **s, mc_error *err) {
    long long len = 0;
    if (c->rank == root) len = *s ? (long long)strlen(*s) : -1;
    MPI_Bcast(&len, 1, MPI_LONG_LONG, root, c->comm);
    if (len < 0) {
        if (c->rank != root) {
            free(*s);
            *s = NULL;
        }
        return MC_OK;
    }
    if (len > (long long)INT32_MAX - 1)
        return MC_FAIL(err, MC_ERR_ARG, "string too long to broadcast");
    char *buf = c->rank == root ? *s : malloc((size_t)len + 1);
    /* All ranks must enter the Bcast even when one malloc failed, so agree first. */
    int ok = buf != NULL, all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, c->comm);
    if (!all_ok) {
        if (c->rank != root) free(buf);
        return MC_FAIL(err, MC_ERR_NOMEM, "out of memory broadcasting %lld bytes", len);
    }
    MPI_Bcast(buf, (int)len + 1, MPI_CHAR, root, c->comm);
    if (c->rank != root) {
        free(*s);
        *s = buf;
    }
    return MC_OK;
}

void mc_shard_range(int64_t n, int r, int size, int64_t *begin, int64_t *end) {
    int64_t base = n / size, extra = n % size;
    *begin = (int64_t)r * base + (r < extra ? r : extra);
    *end = *begin + base + (r < extra ? 1 : 0);
}

bool mc_comm_stop_requested(const mc_comm *c) { return mc_comm_poll(c, false, NULL) != 0; }

int mc_comm_poll(const mc_comm *c, bool local_failed, bool *any_failed) {
    int mine[2] = {mc_stop_signal(), local_failed ? 1 : 0}, all[2] = {0, 0};
    MPI_Allreduce(mine, all, 2, MPI_INT, MPI_MAX, c->comm);
    if (any_failed) *any_failed = all[1] != 0;
    return all[0];
}
