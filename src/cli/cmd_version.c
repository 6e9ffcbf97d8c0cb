#include <stdio.h>

#include "cli.h"
#include "miclip/miclip.h"

const mc_cli_cmd mc_cmd_version_cli = {
    .name = "version", .usage = "miclip version", .about = "Prints the version and build facts.\n"};

int mc_cmd_version(const mc_comm *c, int argc, char **argv) {
    mc_cli_parser p;
    int rc = mc_cli_begin(&p, c, &mc_cmd_version_cli, argc, argv);
    if (rc >= 0) return rc;
    const char *v;
    for (int id; (id = mc_cli_next(&p, &v)) != MC_CLI_END;) /* arguments are ignored, as before */
        if (id == MC_CLI_ERROR) return MC_EXIT_USAGE;
    if (c->rank == 0) {
        printf("miclip %s\n", MICLIP_VERSION_STRING);
        printf("built with: %s\n", MICLIP_BUILD_INFO);
        printf("ranks: %d, threads per rank: %d (%s)\n", c->size, mc_get_threads(),
               mc_threads_source());
    }
    return 0;
}
