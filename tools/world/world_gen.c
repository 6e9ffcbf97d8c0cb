/* world_gen.c - the tiny world without MPI and without the miclip build:
 *
 *   world_gen OUT SEED PER_CLASS VAL_PER_CLASS UNSEEN_PER_CLASS [PART PARTS] [--masks]
 *
 * writes the world `miclip world make --out OUT --seed SEED --per-class PER_CLASS ...` writes,
 * byte for byte: the generator (src/world/world.c) is a pure function of (seed, split, index)
 * and has no MPI in it. With PART PARTS, this process writes the images g with g % PARTS == PART
 * (and part 0 also the lists), so PARTS independent processes write the whole world; it is
 * complete once all of them have exited 0. tools/world/gpu_train.sh builds it with one gcc line
 * on a machine without MPI. Not part of the miclip build. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/world.h"

/* A whole number in [lo, hi] from text, or false. */
static int parse_ll(const char *s, long long lo, long long hi, long long *out) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

int main(int argc, char **argv) {
    int masks = argc > 1 && !strcmp(argv[argc - 1], "--masks");
    int n = argc - masks;
    if (n != 6 && n != 8) {
        fprintf(stderr, "usage: world_gen OUT SEED PER_CLASS VAL_PER_CLASS UNSEEN_PER_CLASS "
                        "[PART PARTS] [--masks]\n");
        return 2;
    }
    static const char *const what[] = {
        NULL, NULL, "SEED", "PER_CLASS", "VAL_PER_CLASS", "UNSEEN_PER_CLASS", "PART", "PARTS"};
    long long v[8] = {0, 0, 0, 0, 0, 0, 0, 1};
    for (int i = 2; i < n; i++) {
        long long hi = i == 2 ? 0x7fffffffffffffffLL : i < 6 ? MC_WORLD_MAX_PER_CLASS : 1 << 20;
        if (!parse_ll(argv[i], 0, hi, &v[i])) {
            fprintf(stderr, "world_gen: %s must be a whole number from 0 to %lld, got '%s'\n",
                    what[i], hi, argv[i]);
            return 2;
        }
    }
    if (v[7] < 1 || v[6] >= v[7]) {
        fprintf(stderr, "world_gen: PART must be in 0..PARTS-1 and PARTS >= 1, got %lld of %lld\n",
                v[6], v[7]);
        return 2;
    }
    const char *out = argv[1];
    mc_world_params p = {.seed = (uint64_t)v[2],
                         .per_class = v[3],
                         .val_per_class = v[4],
                         .unseen_per_class = v[5],
                         .masks = masks};
    mc_error err = {0};
    mc_status s = mc_world_params_check(&p, &err);
    if (s == MC_OK) s = mc_world_make_dirs(out, &p, &err);
    const int64_t total = mc_world_total(&p);
    for (int64_t g = v[6]; s == MC_OK && g < total; g += v[7]) {
        int split;
        int64_t i;
        mc_world_locate(&p, g, &split, &i);
        s = mc_world_write_item(out, &p, split, i, &err);
    }
    if (s == MC_OK && v[6] == 0) s = mc_world_write_lists(out, &p, &err);
    if (s != MC_OK) {
        fprintf(stderr, "world_gen: %s\n", err.msg);
        return 1;
    }
    return 0;
}
