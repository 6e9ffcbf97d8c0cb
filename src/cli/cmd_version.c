#include <stdio.h>

#include "cli.h"
#include "miclip/miclip.h"

int mc_cmd_version(const mc_comm *c, int argc, char **argv) {
    if (mc_cli_wants_help(argc, argv)) {
        if (c->rank == 0) printf("usage: miclip version\n\nPrints the version and build facts.\n");
        return 0;
    }
    if (c->rank == 0) {
        printf("miclip %s\n", MICLIP_VERSION_STRING);
        printf("built with: %s\n", MICLIP_BUILD_INFO);
        printf("ranks: %d, threads per rank: %d (%s)\n", c->size, mc_get_threads(), mc_threads_source());
    }
    return 0;
}
