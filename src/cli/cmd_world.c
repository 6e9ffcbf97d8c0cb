/* cmd_world.c - `miclip world make`: writes the tiny world (include/miclip/world.h). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "miclip/world.h"

static void usage(void) {
    printf("usage: miclip world make --out DIR --seed S [--per-class N] [--val-per-class N]\n"
           "                         [--unseen-per-class N] [--masks]\n\n"
           "Writes the tiny world: 64x64 PNG images of one coloured shape on a textured\n"
           "background, as ImageFolder splits DIR/train/<colour>_<shape>/, DIR/val/...,\n"
           "DIR/unseen/<texture>/, with attributes.jsonl per split and classes.txt,\n"
           "textures.txt, colours.txt, shapes.txt, concepts.txt and world.json.\n"
           "The same seed gives the same bytes, for any number of MPI ranks (images are\n"
           "split over ranks by index).\n\n"
           "  --out DIR              output folder (created)\n"
           "  --seed S               seed (0 .. 2^63-1)\n"
           "  --per-class N          train images per class (default 100)\n"
           "  --val-per-class N      val images per class (default 20)\n"
           "  --unseen-per-class N   unseen images per texture (default 20)\n"
           "  --masks                also write the shapes' ground-truth masks as 8-bit grey\n"
           "                         PNGs (255 = covered) under DIR/masks/<split>/...\n");
}

int mc_cmd_world(const mc_comm *c, int argc, char **argv) {
    if (argc < 2 || mc_cli_wants_help(argc, argv)) {
        if (c->rank == 0) usage();
        return argc < 2 ? MC_EXIT_USAGE : 0;
    }
    if (strcmp(argv[1], "make") != 0)
        return mc_cli_usage_error(c, "world", "unknown action '%s' (expected 'make')", argv[1]);
    mc_world_params p = {.seed = 0, .per_class = 100, .val_per_class = 20, .unseen_per_class = 20};
    const char *out = NULL;
    int have_seed = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--masks")) {
            p.masks = 1;
            continue;
        }
        if (i + 1 >= argc)
            return mc_cli_usage_error(c, "world", "option '%s' needs a value or is unknown", a);
        const char *v = argv[++i];
        long long n = 0;
        if (!strcmp(a, "--out")) {
            out = v;
        } else if (!strcmp(a, "--seed")) {
            if (!mc_cli_parse_int(v, 0, 0x7fffffffffffffffLL, &n))
                return mc_cli_usage_error(c, "world", "--seed takes a whole number >= 0");
            p.seed = (uint64_t)n;
            have_seed = 1;
        } else if (!strcmp(a, "--per-class") || !strcmp(a, "--val-per-class") ||
                   !strcmp(a, "--unseen-per-class")) {
            long long lo = !strcmp(a, "--per-class") ? 1 : 0;
            if (!mc_cli_parse_int(v, lo, MC_WORLD_MAX_PER_CLASS, &n))
                return mc_cli_usage_error(c, "world", "%s takes a whole number from %lld to %d", a,
                                          lo, MC_WORLD_MAX_PER_CLASS);
            if (!strcmp(a, "--per-class")) p.per_class = n;
            else if (!strcmp(a, "--val-per-class")) p.val_per_class = n;
            else p.unseen_per_class = n;
        } else {
            return mc_cli_usage_error(c, "world", "unknown option '%s'", a);
        }
    }
    if (!out) return mc_cli_usage_error(c, "world", "--out DIR is required");
    if (!have_seed) return mc_cli_usage_error(c, "world", "--seed S is required");
    mc_error err = {0};
    mc_status s = mc_world_make(c, out, &p, &err);
    return mc_cli_finish(c, s, &err);
}
