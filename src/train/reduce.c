/* reduce.c - the collective pieces of the rank-count-invariant training scheme: all-gathering
 * the rows of a chunk-sharded batch, and the chain fold that sums per-chunk partial gradients
 * in global chunk order (docs/training.md, "Distributed scheme"). */
#include <limits.h>
#include <string.h>

#include "train_internal.h"

mc_status mc_train_gather_rows(const mc_comm *c, int64_t batch, int64_t chunk_rows,
                               const void *local, void *all, size_t row_bytes, mc_error *err) {
    if (c->size == 1) {
        if (local != all) memmove(all, local, (size_t)batch * row_bytes);
        return MC_OK;
    }
    if (batch > INT_MAX || row_bytes > INT_MAX)
        return MC_FAIL(err, MC_ERR_ARG, "gather: batch %lld of %zu-byte rows is too large",
                       (long long)batch, row_bytes);
    int *counts = mc_alloc_array((size_t)c->size, sizeof(int));
    int *displs = mc_alloc_array((size_t)c->size, sizeof(int));
    if (!counts || !displs) {
        free(counts);
        free(displs);
        return MC_FAIL(err, MC_ERR_NOMEM, "gather: out of memory");
    }
    for (int r = 0; r < c->size; r++) {
        int64_t c0, c1, r0, r1;
        mc_train_chunk_share(batch, chunk_rows, r, c->size, &c0, &c1, &r0, &r1);
        counts[r] = (int)(r1 - r0);
        displs[r] = (int)r0;
    }
    /* One row is one element of a contiguous datatype, so counts stay small. */
    MPI_Datatype row;
    int rc = MPI_Type_contiguous((int)row_bytes, MPI_BYTE, &row);
    if (rc == MPI_SUCCESS) rc = MPI_Type_commit(&row);
    if (rc == MPI_SUCCESS) {
        int me = counts[c->rank];
        const void *send = local;
        /* In-place when the caller already put its rows at their global position. */
        if ((const char *)local == (const char *)all + (size_t)displs[c->rank] * row_bytes)
            send = MPI_IN_PLACE;
        rc = MPI_Allgatherv(send, me, row, all, counts, displs, row, c->comm);
        MPI_Type_free(&row);
    }
    free(counts);
    free(displs);
    if (rc != MPI_SUCCESS)
        return MC_FAIL(err, MC_ERR_MPI, "gather: MPI_Allgatherv failed (%d)", rc);
    return MC_OK;
}

/* Large float buffers go in pieces that fit an int count. */
#define PIECE ((size_t)1 << 28)

mc_status mc_train_chain_begin(const mc_comm *c, float *acc, size_t n, mc_error *err) {
    if (c->rank == 0) return MC_OK;
    for (size_t off = 0; off < n; off += PIECE) {
        int cnt = (int)(n - off < PIECE ? n - off : PIECE);
        int rc = MPI_Recv(acc + off, cnt, MPI_FLOAT, c->rank - 1, 71, c->comm, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS)
            return MC_FAIL(err, MC_ERR_MPI, "chain sum: MPI_Recv failed (%d)", rc);
    }
    return MC_OK;
}

mc_status mc_train_chain_end(const mc_comm *c, float *acc, size_t n, mc_error *err) {
    if (c->size == 1) return MC_OK;
    for (size_t off = 0; off < n; off += PIECE) {
        int cnt = (int)(n - off < PIECE ? n - off : PIECE);
        int rc = MPI_SUCCESS;
        if (c->rank < c->size - 1)
            rc = MPI_Send(acc + off, cnt, MPI_FLOAT, c->rank + 1, 71, c->comm);
        if (rc != MPI_SUCCESS)
            return MC_FAIL(err, MC_ERR_MPI, "chain sum: MPI_Send failed (%d)", rc);
    }
    for (size_t off = 0; off < n; off += PIECE) {
        int cnt = (int)(n - off < PIECE ? n - off : PIECE);
        int rc = MPI_Bcast(acc + off, cnt, MPI_FLOAT, c->size - 1, c->comm);
        if (rc != MPI_SUCCESS)
            return MC_FAIL(err, MC_ERR_MPI, "chain sum: MPI_Bcast failed (%d)", rc);
    }
    return MC_OK;
}

mc_status mc_train_bcast_f32(const mc_comm *c, float *buf, size_t n, int root, mc_error *err) {
    if (c->size == 1) return MC_OK;
    for (size_t off = 0; off < n; off += PIECE) {
        int cnt = (int)(n - off < PIECE ? n - off : PIECE);
        int rc = MPI_Bcast(buf + off, cnt, MPI_FLOAT, root, c->comm);
        if (rc != MPI_SUCCESS) return MC_FAIL(err, MC_ERR_MPI, "MPI_Bcast failed (%d)", rc);
    }
    return MC_OK;
}
