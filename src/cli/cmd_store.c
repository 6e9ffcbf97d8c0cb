/* cmd_store.c - `miclip store show STORE`: lists a store's groups, datasets, attributes and
 * completion state; `miclip store verify STORE...`: recomputes every dataset's checksum and
 * compares it with the one recorded at completion. Both open read-only (no lock), collectively
 * on every rank; rank 0 prints. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "miclip/store.h"

const mc_cli_cmd mc_cmd_store_cli = {
    .name = "store",
    .usage = "miclip store show STORE\n"
             "       miclip store verify STORE...",
    .about =
        "Lists every group and dataset of a miclip HDF5 store (dtype, shape, chunking), their\n"
        "attributes (provenance), the completion records ('units done: k/n') and the groups\n"
        "marked complete. Refuses files miclip did not write. Takes no lock: a store being\n"
        "written shows its state as of the writer's last flush.\n\n"
        "verify recomputes the SHA-256 of every dataset (ranks share the datasets) and\n"
        "compares it with the checksum recorded when its stage completed. Prints one line\n"
        "per damaged dataset (mismatch, unreadable, or no checksum in a complete stage) and\n"
        "exits 1 if there is any; otherwise one 'ok' line per store and exit 0. Datasets of\n"
        "stages not yet complete have no checksum and are only counted.\n"};

static int verify(const mc_comm *c, int n, char **paths) {
    int64_t bad_stores = 0;
    mc_error err = {0};
    for (int i = 0; i < n; i++) {
        mc_store *s = NULL;
        mc_error e = {0};
        mc_store_verify_result r = {0};
        mc_status st = mc_store_open(c, paths[i], MC_STORE_READ, &s, &e);
        if (st == MC_OK) st = mc_store_verify(s, stdout, &r, &e);
        if (s) {
            mc_error ce = {0};
            mc_status cs = mc_store_close(&s, &ce);
            if (st == MC_OK && cs != MC_OK) st = cs, e = ce;
        }
        if (st != MC_OK) { /* not a store, or its structure unreadable: one line, go on */
            if (c->rank == 0) printf("%s: cannot verify: %s\n", paths[i], e.msg);
            bad_stores++;
        } else if (r.n_bad) {
            bad_stores++;
        } else if (c->rank == 0) {
            printf("%s: ok, %lld dataset(s) match their checksums", paths[i], (long long)r.n_ok);
            if (r.n_unsealed)
                printf(" (%lld in stages not complete, without checksums)",
                       (long long)r.n_unsealed);
            printf("\n");
        }
        fflush(stdout);
    }
    mc_status st = MC_OK;
    if (bad_stores)
        st = MC_FAIL(&err, MC_ERR_FORMAT,
                     "store verify: %lld of %d store(s) damaged or unverifiable (see above)",
                     (long long)bad_stores, n);
    return mc_cli_finish(c, st, &err);
}

int mc_cmd_store(const mc_comm *c, int argc, char **argv) {
    mc_cli_parser p;
    int rc = mc_cli_begin(&p, c, &mc_cmd_store_cli, argc, argv);
    if (rc >= 0) return rc;
    /* ACTION STORE...: no options, so the positionals are argv[1..] less a "--" */
    char **args = calloc((size_t)argc, sizeof *args);
    int n = 0;
    if (!args) return MC_EXIT_FAILURE;
    const char *v;
    for (int id; rc < 0 && (id = mc_cli_next(&p, &v)) != MC_CLI_END;) {
        if (id == MC_CLI_ERROR)
            rc = MC_EXIT_USAGE;
        else
            args[n++] = (char *)v;
    }
    if (rc < 0 && n < 1)
        rc = mc_cli_usage_error(c, "store", "missing action (show, verify)");
    else if (rc < 0 && !strcmp(args[0], "verify")) {
        rc = n < 2 ? mc_cli_usage_error(c, "store", "verify takes one or more STORE paths")
                   : verify(c, n - 1, args + 1);
    } else if (rc < 0 && strcmp(args[0], "show") != 0) {
        rc = mc_cli_usage_error(c, "store", "unknown action '%s' (show, verify)", args[0]);
    } else if (rc < 0 && n != 2) {
        rc = mc_cli_usage_error(c, "store", "show takes exactly one STORE path");
    }
    const char *path = rc < 0 ? args[1] : NULL;
    free(args);
    if (rc >= 0) return rc;
    mc_error err = {0};
    mc_store *s = NULL;
    mc_status st = mc_store_open(c, path, MC_STORE_READ, &s, &err);
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
