/* cmd_store.c - `miclip store show STORE`: lists a store's groups, datasets, attributes and
 * completion state. Opens read-only (no lock), collectively on every rank; rank 0 prints. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "miclip/store.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: miclip store show STORE\n\n"
            "Lists every group and dataset of a miclip HDF5 store (dtype, shape, chunking), their\n"
            "attributes (provenance), the completion records ('units done: k/n') and the groups\n"
            "marked complete. Refuses files miclip did not write. Takes no lock: a store being\n"
            "written shows its state as of the writer's last flush.\n");
}

int mc_cmd_store(const mc_comm *c, int argc, char **argv) {
    if (mc_cli_wants_help(argc, argv)) {
        if (c->rank == 0) usage(stdout);
        return MC_EXIT_OK;
    }
    if (argc < 2) return mc_cli_usage_error(c, "store", "missing action (show)");
    if (strcmp(argv[1], "show") != 0)
        return mc_cli_usage_error(c, "store", "unknown action '%s' (show)", argv[1]);
    if (argc != 3) return mc_cli_usage_error(c, "store", "show takes exactly one STORE path");
    mc_error err = {0};
    mc_store *s = NULL;
    mc_status st = mc_store_open(c, argv[2], MC_STORE_READ, &s, &err);
    if (st == MC_OK) {
        if (c->rank == 0) st = mc_store_print(s, stdout, &err);
        fflush(stdout);
        mc_error cerr = {0};
        mc_status cs = mc_store_close(&s, &cerr);
        if (st == MC_OK && cs != MC_OK) {
            st = cs;
            err = cerr;
        }
    }
    return mc_cli_finish(c, st, &err);
}
