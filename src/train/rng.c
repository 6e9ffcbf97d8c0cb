/* rng.c - the counter-based RNG of train.h: every number is a pure function of
 * (seed, stream, index), so any rank can draw any sample's numbers without a shared state and
 * results do not depend on how work is split over ranks. The mixer is the splitmix64
 * finaliser (Steele, Lea, Flood 2014), applied three times to chain the three keys. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/train.h"

static uint64_t mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t mc_rng_u64(uint64_t seed, uint64_t stream, uint64_t index) {
    uint64_t h = mix64(seed);
    h = mix64(h ^ (stream * 0xd1b54a32d192ed03ull));
    return mix64(h ^ (index * 0xaef17502108ef2d9ull));
}

double mc_rng_uniform(uint64_t seed, uint64_t stream, uint64_t index) {
    return (double)(mc_rng_u64(seed, stream, index) >> 11) * 0x1.0p-53;
}

double mc_rng_normal(uint64_t seed, uint64_t stream, uint64_t index) {
    /* 1 - u is in (0, 1], so the log is finite. */
    double u1 = 1.0 - mc_rng_uniform(seed, stream, 2 * index);
    double u2 = mc_rng_uniform(seed, stream, 2 * index + 1);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

uint64_t mc_rng_below(uint64_t seed, uint64_t stream, uint64_t index, uint64_t bound) {
    /* Lemire's nearly-divisionless method; a rejected draw retries on a sub-stream. */
    uint64_t x = mc_rng_u64(seed, stream, index);
    unsigned __int128 p = (unsigned __int128)x * bound;
    uint64_t lo = (uint64_t)p;
    if (lo < bound) {
        uint64_t t = (0 - bound) % bound;
        uint64_t attempt = 1;
        while (lo < t) {
            x = mc_rng_u64(seed, stream ^ (attempt << 48), index);
            p = (unsigned __int128)x * bound;
            lo = (uint64_t)p;
            attempt++;
        }
    }
    return (uint64_t)(p >> 64);
}

void mc_rng_permutation(uint64_t seed, uint64_t stream, int64_t n, int64_t *perm) {
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    /* Fisher-Yates from the top; the draw for position i is keyed by i. */
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)mc_rng_below(seed, stream, (uint64_t)i, (uint64_t)i + 1);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

void mc_train_epoch_order(uint64_t seed, int epoch, int64_t n, int64_t block, int64_t *order) {
    if (block < 1) block = 1;
    int64_t nb = (n + block - 1) / block;
    /* The permuted block ids live in the tail of order; expanding from the front never
     * overwrites an unread id: after i+1 blocks at most (i+1)*block slots are written, and
     * n >= (nb-1)*block + 1 puts block id i+1 at or beyond that. */
    int64_t *blk = order + (n - nb);
    mc_rng_permutation(seed, MC_RNG_STREAM_ORDER + 16u * (uint64_t)epoch, nb, blk);
    int64_t pos = 0;
    for (int64_t i = 0; i < nb; i++) {
        int64_t b = blk[i];
        int64_t s0 = b * block, s1 = s0 + block < n ? s0 + block : n;
        for (int64_t s = s0; s < s1; s++) order[pos++] = s;
    }
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

void mc_train_subset(uint64_t seed, int64_t n_total, int64_t n_pick, int64_t *scratch,
                     int64_t *out) {
    mc_rng_permutation(seed, MC_RNG_STREAM_SUBSET, n_total, scratch);
    memcpy(out, scratch, (size_t)n_pick * sizeof(int64_t));
    qsort(out, (size_t)n_pick, sizeof(int64_t), cmp_i64);
}
