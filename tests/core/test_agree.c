/* test_agree - the collective error protocol under MPI.
 *
 *   test_agree ok              every rank succeeds: exit 0
 *   test_agree fail-last       the last rank fails before a collective: all ranks must agree,
 *                              rank 0 prints the last rank's message once, everyone exits 1
 *   test_agree abort-last      the last rank hits a one-rank failure mid-work: MPI_Abort ends
 *                              every rank (the others are blocked in a collective meanwhile)
 *   test_agree shard N         prints each rank's shard of N items (checked by check_agree.sh)
 */
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>

#include "miclip/comm.h"
#include "miclip/log.h"

int main(int argc, char **argv) {
    mc_comm c;
    mc_error err = {0};
    if (mc_comm_init(&argc, &argv, &c, &err) != MC_OK) return 1;
    const char *mode = argc > 1 ? argv[1] : "ok";
    int rc = 0;
    if (!strcmp(mode, "ok") || !strcmp(mode, "fail-last")) {
        mc_status s = MC_OK;
        if (!strcmp(mode, "fail-last") && c.rank == c.size - 1)
            s = MC_FAIL(&err, MC_ERR_FORMAT, "rank %d found a bad tensor 'x' in /tmp/y", c.rank);
        mc_status agreed = mc_comm_agree(&c, s, &err);
        if (agreed != MC_OK) {
            if (c.rank == 0) mc_log_error_record(&err);
            /* every rank must hold the same message */
            char expect[64];
            snprintf(expect, sizeof expect, "rank %d found", c.size - 1);
            if (!strstr(err.msg, expect)) {
                fprintf(stderr, "rank %d: wrong agreed message '%s'\n", c.rank, err.msg);
                rc = 3;
            } else {
                rc = mc_status_exit_code(agreed);
            }
        }
    } else if (!strcmp(mode, "abort-last")) {
        if (c.rank == c.size - 1) mc_comm_abort(&c, 1, "disk full writing shard %d", c.rank);
        /* Everybody else waits in a collective that the failing rank never enters. */
        int x = 0, y = 0;
        MPI_Allreduce(&x, &y, 1, MPI_INT, MPI_SUM, c.comm);
        if (c.size == 1) rc = 4; /* unreachable: rank 0 is the last rank */
    } else if (!strcmp(mode, "shard") && argc > 2) {
        long long n = atoll(argv[2]);
        int64_t b, e;
        mc_shard_range(n, c.rank, c.size, &b, &e);
        printf("shard %d %lld %lld\n", c.rank, (long long)b, (long long)e);
    }
    mc_comm_finalize(&c);
    return rc;
}
