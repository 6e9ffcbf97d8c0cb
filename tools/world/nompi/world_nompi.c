/* world_nompi.c - `world_nompi OUT SEED PER_CLASS VAL_PER_CLASS UNSEEN_PER_CLASS RANK SIZE`:
 * runs mc_world_make as rank RANK of SIZE without MPI, so a machine without MPI (the GPU
 * machine that trained the committed models, tools/world/gpu_train.sh) can make the same world
 * bytes with SIZE independent processes. The agreement is local: run SIZE processes, check all
 * exit 0. Not part of the miclip build. */
#include <stdio.h>
#include <stdlib.h>

#include "miclip/comm.h"
#include "miclip/world.h"

mc_status mc_comm_agree(const mc_comm *c, mc_status local, mc_error *err) {
    (void)c;
    (void)err;
    return local;
}

void mc_shard_range(int64_t n, int r, int size, int64_t *begin, int64_t *end) {
    int64_t q = n / size, rem = n % size;
    *begin = r * q + (r < rem ? r : rem);
    *end = *begin + q + (r < rem ? 1 : 0);
}

int main(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: world_nompi OUT SEED PER_CLASS VAL UNSEEN RANK SIZE\n");
        return 2;
    }
    mc_comm c = {0};
    c.rank = atoi(argv[6]);
    c.size = atoi(argv[7]);
    mc_world_params p = {.seed = strtoull(argv[2], NULL, 10), .per_class = atoll(argv[3]),
                         .val_per_class = atoll(argv[4]), .unseen_per_class = atoll(argv[5])};
    mc_error e = {0};
    mc_status s = mc_world_make(&c, argv[1], &p, &e);
    if (s != MC_OK) fprintf(stderr, "world_nompi: %s\n", e.msg);
    return s == MC_OK ? 0 : 1;
}
