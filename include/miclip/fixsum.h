/* fixsum.h - sums of doubles that do not depend on their order: fixed-point accumulators.
 *
 * A sum spread over ranks (each adds its share of the terms, then a reduction adds the shares)
 * rounds differently at every rank count when it is done in floating point. Here each term is
 * turned into a 128-bit integer count of 2^-64 (exact for |x| >= 2^-11, truncated toward zero
 * below that, an error under 5.5e-20), and integers add exactly, so a sum is the same bits
 * whatever the order of its terms or the number of ranks that made it; it is read back as the
 * double nearest the exact fixed-point total. Terms and totals must stay below 2^62 in magnitude
 * (mc_fix_from_double refuses larger terms; a caller sums at most 2^62 / max |term| of them). */
#ifndef MICLIP_FIXSUM_H
#define MICLIP_FIXSUM_H

#include <stdbool.h>
#include <stdint.h>

#include "miclip/comm.h"
#include "miclip/status.h"

__extension__ typedef __int128 mc_fix;

#define MC_FIX_MAX_TERM 4.6e18 /* just under 2^62 */

/* x in fixed point; false (and *out untouched) for NaN, infinities and |x| >= MC_FIX_MAX_TERM. */
bool mc_fix_from_double(double x, mc_fix *out);

/* The double nearest v (round to nearest, as any integer-to-double conversion). */
double mc_fix_to_double(mc_fix v);

/* Collective. v[n] <- the sum of every rank's v[n], exact. */
mc_status mc_fix_allreduce(const mc_comm *c, mc_fix *v, int64_t n, mc_error *err);

#endif
