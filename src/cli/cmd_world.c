/* cmd_world.c - `miclip world make`: writes the tiny world (include/miclip/world.h). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "miclip/world.h"

enum { OPT_OUT = 2, OPT_SEED, OPT_PER_CLASS, OPT_VAL_PER_CLASS, OPT_UNSEEN_PER_CLASS, OPT_MASKS };

static const mc_cli_opt opts[] = {
    {"out", MC_CLI_VALUE, OPT_OUT, "DIR", "output folder (created)"},
    {"seed", MC_CLI_VALUE, OPT_SEED, "S", "seed (0 .. 2^63-1)"},
    {"per-class", MC_CLI_VALUE, OPT_PER_CLASS, "N", "train images per class (default 100)"},
    {"val-per-class", MC_CLI_VALUE, OPT_VAL_PER_CLASS, "N", "val images per class (default 20)"},
    {"unseen-per-class", MC_CLI_VALUE, OPT_UNSEEN_PER_CLASS, "N", "unseen images per texture (default 20)"},
    {"masks", MC_CLI_FLAG, OPT_MASKS, NULL, "also write the shapes' ground-truth masks as 8-bit grey\n"
                                            "PNGs (255 = covered) under DIR/masks/<split>/..."},
    {0}};

const mc_cli_cmd mc_cmd_world_cli = {
    .name = "world",
    .action = "make",
    .usage = "miclip world make --out DIR --seed S [--per-class N] [--val-per-class N]\n"
             "                         [--unseen-per-class N] [--masks]",
    .about = "Writes the tiny world: 64x64 PNG images of one coloured shape on a textured\n"
             "background, as ImageFolder splits DIR/train/<colour>_<shape>/, DIR/val/...,\n"
             "DIR/unseen/<texture>/, with attributes.jsonl per split and classes.txt,\n"
             "textures.txt, colours.txt, shapes.txt, concepts.txt and world.json.\n"
             "The same seed gives the same bytes, for any number of MPI ranks (images are\n"
             "split over ranks by index).\n",
    .opts = opts};

int mc_cmd_world(const mc_comm *c, int argc, char **argv) {
    mc_cli_parser pr;
    int rc = mc_cli_begin(&pr, c, &mc_cmd_world_cli, argc, argv);
    if (rc >= 0) return rc;
    mc_world_params p = {.seed = 0, .per_class = 100, .val_per_class = 20, .unseen_per_class = 20};
    const char *out = NULL, *v;
    int have_seed = 0;
    for (int id; (id = mc_cli_next(&pr, &v)) != MC_CLI_END;) {
        long long n = 0;
        switch (id) {
        case MC_CLI_ERROR: return MC_EXIT_USAGE;
        case MC_CLI_ARG: return mc_cli_usage_error(c, "world", "unexpected argument '%s'", v);
        case OPT_MASKS: p.masks = 1; break;
        case OPT_OUT: out = v; break;
        case OPT_SEED:
            if (!mc_cli_parse_int(v, 0, 0x7fffffffffffffffLL, &n))
                return mc_cli_usage_error(c, "world", "--seed takes a whole number >= 0");
            p.seed = (uint64_t)n;
            have_seed = 1;
            break;
        default: {
            const char *a = id == OPT_PER_CLASS ? "--per-class" : id == OPT_VAL_PER_CLASS ? "--val-per-class"
                                                                                          : "--unseen-per-class";
            long long lo = id == OPT_PER_CLASS ? 1 : 0;
            if (!mc_cli_parse_int(v, lo, MC_WORLD_MAX_PER_CLASS, &n))
                return mc_cli_usage_error(c, "world", "%s takes a whole number from %lld to %d", a, lo,
                                          MC_WORLD_MAX_PER_CLASS);
            if (id == OPT_PER_CLASS) p.per_class = n;
            else if (id == OPT_VAL_PER_CLASS) p.val_per_class = n;
            else p.unseen_per_class = n;
        }
        }
    }
    if (!out) return mc_cli_usage_error(c, "world", "--out DIR is required");
    if (!have_seed) return mc_cli_usage_error(c, "world", "--seed S is required");
    mc_error err = {0};
    mc_status s = mc_world_make(c, out, &p, &err);
    return mc_cli_finish(c, s, &err);
}
