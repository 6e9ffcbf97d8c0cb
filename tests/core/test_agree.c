/* test_agree - the collective error protocol under MPI.
 *
 *   test_agree ok              every rank succeeds: exit 0
 *   test_agree fail-last       the last rank fails before a collective: all ranks must agree,
 *                              rank 0 prints the last rank's message once, everyone exits 1
 *   test_agree abort-last      the last rank hits a one-rank failure mid-work: MPI_Abort ends
 *                              every rank (the others are blocked in a collective meanwhile)
 *   test_agree shard N         prints each rank's shard of N items (checked by check_agree.sh)
 *   test_agree fixsum          fixed-point sums (fixsum.h): every rank adds its share of 100,000
 *                              terms of mixed sign and size (1e-15 .. 1e6), in reverse order on
 *                              odd ranks; the reduced total must be the bits of rank 0's serial
 *                              sum of all terms, within 1e-12 of a long double sum, and NaN and
 *                              2^62 refused; prints the total's bits ("fixsum HEX")
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>

#include "miclip/comm.h"
#include "miclip/fixsum.h"
#include "miclip/log.h"

/* Term i of the fixsum mode: a fixed sequence of mixed signs and magnitudes. */
static double fix_term(int64_t i) {
    uint64_t x = (uint64_t)i * 0x9E3779B97F4A7C15ull;
    x ^= x >> 29, x *= 0xBF58476D1CE4E5B9ull, x ^= x >> 32;
    double m = (double)(x >> 11) / 9007199254740992.0; /* [0, 1) */
    return (x & 1 ? -1.0 : 1.0) * m * pow(10.0, (double)(int)(x % 22) - 15.0);
}

static int fixsum_mode(const mc_comm *c) {
    enum { N = 100000 };
    mc_fix mine = 0, all = 0;
    long double ref = 0;
    for (int64_t k = 0; k < N; k++) {
        int64_t i = c->rank % 2 ? N - 1 - k : k;
        mc_fix f;
        if (!mc_fix_from_double(fix_term(i), &f)) return 5;
        if (i % c->size == c->rank) mine += f;
    }
    for (int64_t i = 0; i < N; i++) {
        mc_fix f;
        mc_fix_from_double(fix_term(i), &f);
        all += f;
        ref += fix_term(i);
    }
    mc_error err = {0};
    if (mc_fix_allreduce(c, &mine, 1, &err) != MC_OK) return 6;
    double got = mc_fix_to_double(mine), want = mc_fix_to_double(all);
    mc_fix dummy;
    int rc = 0;
    if (memcmp(&got, &want, sizeof got)) rc = 7; /* not the serial sum's bits */
    if (fabsl((long double)got - ref) > 1e-12L * fabsl(ref)) rc = 8;
    if (mc_fix_from_double(NAN, &dummy) || mc_fix_from_double(ldexp(1.0, 62), &dummy)) rc = 9;
    uint64_t bits;
    memcpy(&bits, &got, sizeof bits);
    if (c->rank == 0) printf("fixsum %016llx %.17g\n", (unsigned long long)bits, got);
    return rc;
}

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
    } else if (!strcmp(mode, "fixsum")) {
        rc = fixsum_mode(&c);
    } else if (!strcmp(mode, "shard") && argc > 2) {
        long long n = atoll(argv[2]);
        int64_t b, e;
        mc_shard_range(n, c.rank, c.size, &b, &e);
        printf("shard %d %lld %lld\n", c.rank, (long long)b, (long long)e);
    }
    mc_comm_finalize(&c);
    return rc;
}
