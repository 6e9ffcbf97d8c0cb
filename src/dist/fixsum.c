/* fixsum.c - fixed-point sums that do not depend on order or rank count (fixsum.h). */
#include "miclip/fixsum.h"

#include <math.h>
#include <mpi.h>
#include <string.h>

bool mc_fix_from_double(double x, mc_fix *out) {
    if (!(fabs(x) < MC_FIX_MAX_TERM)) return false; /* NaN fails this too */
    *out = (mc_fix)ldexp(x, 64);                    /* |x| 2^64 < 2^126: in range */
    return true;
}

double mc_fix_to_double(mc_fix v) { return ldexp((double)v, -64); }

/* MPI's user operation: inout += in, element by element (memcpy: MPI buffers need not be
 * 16-byte aligned). */
static void fix_add(void *in, void *inout, int *len, MPI_Datatype *type) {
    (void)type;
    const char *a = in;
    char *b = inout;
    for (int i = 0; i < *len; i++) {
        mc_fix x, y;
        memcpy(&x, a + (size_t)i * sizeof x, sizeof x);
        memcpy(&y, b + (size_t)i * sizeof y, sizeof y);
        y += x;
        memcpy(b + (size_t)i * sizeof y, &y, sizeof y);
    }
}

mc_status mc_fix_allreduce(const mc_comm *c, mc_fix *v, int64_t n, mc_error *err) {
    if (c->size == 1 || n == 0) return MC_OK;
    if (n > 2147483647)
        return MC_FAIL(err, MC_ERR_UNSUPPORTED, "fixed-point sum of %lld values: too many for MPI",
                       (long long)n);
    MPI_Datatype t = MPI_DATATYPE_NULL;
    MPI_Op op = MPI_OP_NULL;
    int rc = MPI_Type_contiguous((int)sizeof(mc_fix), MPI_BYTE, &t);
    if (rc == MPI_SUCCESS) rc = MPI_Type_commit(&t);
    if (rc == MPI_SUCCESS) rc = MPI_Op_create(fix_add, 1, &op);
    if (rc == MPI_SUCCESS) rc = MPI_Allreduce(MPI_IN_PLACE, v, (int)n, t, op, c->comm);
    if (op != MPI_OP_NULL) MPI_Op_free(&op);
    if (t != MPI_DATATYPE_NULL) MPI_Type_free(&t);
    return rc == MPI_SUCCESS
               ? MC_OK
               : MC_FAIL(err, MC_ERR_MPI, "MPI_Allreduce of a fixed-point sum failed");
}
