/* cmd_world.c - `miclip world make`: writes the tiny world (include/miclip/world.h). The
 * generator is MPI-free; this command splits its images over the ranks and agrees on errors and
 * stop signals. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "miclip/log.h"
#include "miclip/world.h"

enum {
    OPT_OUT = 2,
    OPT_SEED,
    OPT_PER_CLASS,
    OPT_VAL_PER_CLASS,
    OPT_UNSEEN_PER_CLASS,
    OPT_HARD_PER_CLASS,
    OPT_MASKS,
    OPT_HARD_FADE,
    OPT_HARD_OCCLUSION,
    OPT_HARD_DISTRACTORS
};

static const mc_cli_opt opts[] = {
    {"out", MC_CLI_VALUE, OPT_OUT, "DIR", "output folder (created)"},
    {"seed", MC_CLI_VALUE, OPT_SEED, "S", "seed (0 .. 2^63-1)"},
    {"per-class", MC_CLI_VALUE, OPT_PER_CLASS, "N", "train images per class (default 100)"},
    {"val-per-class", MC_CLI_VALUE, OPT_VAL_PER_CLASS, "N", "val images per class (default 20)"},
    {"unseen-per-class", MC_CLI_VALUE, OPT_UNSEEN_PER_CLASS, "N",
     "unseen images per texture (default 20)"},
    {"hard-per-class", MC_CLI_VALUE, OPT_HARD_PER_CLASS, "N",
     "hard images per class (default 0: no DIR/hard/); val's\n"
     "recipe made harder by the three knobs below"},
    {"hard-fade", MC_CLI_VALUE, OPT_HARD_FADE, "F",
     "low contrast: each hard image's shape colours move\n"
     "towards the background's mean by U(0, F) (default 0)"},
    {"hard-occlusion", MC_CLI_VALUE, OPT_HARD_OCCLUSION, "F",
     "occlusion: a grey bar of width U(0, F) x the shape's\n"
     "diameter across the shape, on top (default 0)"},
    {"hard-distractors", MC_CLI_VALUE, OPT_HARD_DISTRACTORS, "N",
     "clutter: up to N (uniform 0..N per image) smaller\n"
     "shapes (0.35-0.6 x its size) of another colour and\n"
     "another shape behind the shape (0..8, default 0)"},
    {"masks", MC_CLI_FLAG, OPT_MASKS, NULL,
     "also write the shapes' ground-truth masks as 8-bit grey\n"
     "PNGs (255 = covered) under DIR/masks/<split>/..."},
    {0}};

const mc_cli_cmd mc_cmd_world_cli = {
    .name = "world",
    .action = "make",
    .usage = "miclip world make --out DIR --seed S [--per-class N] [--val-per-class N]\n"
             "                         [--unseen-per-class N] [--masks] [--hard-per-class N\n"
             "                         --hard-fade F --hard-occlusion F --hard-distractors N]",
    .about = "Writes the tiny world: 64x64 PNG images of one coloured shape on a textured\n"
             "background, as ImageFolder splits DIR/train/<colour>_<shape>/, DIR/val/...,\n"
             "DIR/unseen/<texture>/, with attributes.jsonl per split and classes.txt,\n"
             "textures.txt, colours.txt, shapes.txt, concepts.txt and world.json.\n"
             "The same seed gives the same bytes, for any number of MPI ranks (images are\n"
             "split over ranks by index). --hard-per-class adds DIR/hard/<colour>_<shape>/: an\n"
             "evaluation split with low contrast, occlusion and clutter; the ground truth\n"
             "(attributes, masks) stays exact and the other splits keep their bytes.\n",
    .opts = opts};

/* Collective: writes the whole world under out_dir. Images are rendered by index shard on every
 * rank; rank 0 writes the lists and attributes. Same params, same bytes, for any rank count. */
static mc_status world_make(const mc_comm *c, const char *out_dir, const mc_world_params *p,
                            mc_error *err) {
    mc_status s = mc_world_params_check(p, err);
    /* Every rank makes the folders (mkdir -p is idempotent), so no rank writes before its
     * folder exists whatever the order. */
    if (s == MC_OK) s = mc_world_make_dirs(out_dir, p, err);
    s = mc_comm_agree(c, s, err);
    if (s != MC_OK) return s;

    const int64_t total = mc_world_total(p);
    int64_t begin, end;
    mc_shard_range(total, c->rank, c->size, &begin, &end);
    mc_progress bar;
    mc_progress_start(&bar, "world", end - begin, "img");
    /* Blocks of STOP_BLOCK images, the same number of blocks on every rank, each followed by a
     * collective poll for a stop signal or a failed rank. Every image is written atomically and
     * the same seed gives the same bytes, so a stopped run leaves only whole images and a rerun
     * writes the same world; the lists are written only once all images are done. */
    enum { STOP_BLOCK = 32 };
    const int64_t most = (total + c->size - 1) / c->size;
    int stop = 0;
    int64_t done = 0, written = 0;
    bool failed = false;
    for (int64_t off = 0; off < most; off += STOP_BLOCK) {
        for (int64_t g = begin + off; g < end && g < begin + off + STOP_BLOCK && s == MC_OK; g++) {
            int split;
            int64_t i;
            mc_world_locate(p, g, &split, &i);
            s = mc_world_write_item(out_dir, p, split, i, err);
            if (s == MC_OK) written++;
            if (((g - begin) & 63) == 0) mc_progress_update(&bar, g - begin);
        }
        stop = mc_comm_poll(c, s != MC_OK, &failed);
        if (failed) break;
        done = off + STOP_BLOCK;
        if (stop) break;
    }
    mc_progress_update(&bar, written);
    mc_progress_finish(&bar);
    if (s == MC_OK && stop) {
        int64_t all = done * c->size < total ? done * c->size : total;
        s = mc_fail_stopped(err, stop,
                            "world: about %lld of %lld images written, the lists not yet; "
                            "rerun the same command to finish (it writes the same bytes)",
                            (long long)all, (long long)total);
    }
    if (s == MC_OK && !failed && c->rank == 0) s = mc_world_write_lists(out_dir, p, err);
    s = mc_comm_agree(c, s, err);
    if (s == MC_OK)
        mc_info0("world: wrote %lld train, %lld val, %lld unseen, %lld hard images to %s",
                 (long long)mc_world_split_count(p, MC_WORLD_TRAIN),
                 (long long)mc_world_split_count(p, MC_WORLD_VAL),
                 (long long)mc_world_split_count(p, MC_WORLD_UNSEEN),
                 (long long)mc_world_split_count(p, MC_WORLD_HARD), out_dir);
    return s;
}

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
        case OPT_HARD_FADE:
        case OPT_HARD_OCCLUSION: {
            char *end = NULL;
            double x = strtod(v, &end);
            if (end == v || *end || !(x >= 0 && x <= 1))
                return mc_cli_usage_error(c, "world", "%s takes a number from 0 to 1",
                                          id == OPT_HARD_FADE ? "--hard-fade" : "--hard-occlusion");
            *(id == OPT_HARD_FADE ? &p.hard_fade : &p.hard_occlusion) = x;
            break;
        }
        case OPT_HARD_DISTRACTORS:
            if (!mc_cli_parse_int(v, 0, MC_WORLD_MAX_DISTRACTORS, &n))
                return mc_cli_usage_error(c, "world",
                                          "--hard-distractors takes a whole number "
                                          "from 0 to %d",
                                          MC_WORLD_MAX_DISTRACTORS);
            p.hard_distractors = (int)n;
            break;
        case OPT_SEED:
            if (!mc_cli_parse_int(v, 0, 0x7fffffffffffffffLL, &n))
                return mc_cli_usage_error(c, "world", "--seed takes a whole number >= 0");
            p.seed = (uint64_t)n;
            have_seed = 1;
            break;
        default: {
            const char *a = id == OPT_PER_CLASS        ? "--per-class"
                            : id == OPT_VAL_PER_CLASS  ? "--val-per-class"
                            : id == OPT_HARD_PER_CLASS ? "--hard-per-class"
                                                       : "--unseen-per-class";
            long long lo = id == OPT_PER_CLASS ? 1 : 0;
            if (!mc_cli_parse_int(v, lo, MC_WORLD_MAX_PER_CLASS, &n))
                return mc_cli_usage_error(c, "world", "%s takes a whole number from %lld to %d", a,
                                          lo, MC_WORLD_MAX_PER_CLASS);
            if (id == OPT_PER_CLASS)
                p.per_class = n;
            else if (id == OPT_VAL_PER_CLASS)
                p.val_per_class = n;
            else if (id == OPT_HARD_PER_CLASS)
                p.hard_per_class = n;
            else
                p.unseen_per_class = n;
        }
        }
    }
    if (!out) return mc_cli_usage_error(c, "world", "--out DIR is required");
    if (!have_seed) return mc_cli_usage_error(c, "world", "--seed S is required");
    mc_error err = {0};
    mc_status s = world_make(c, out, &p, &err);
    return mc_cli_finish(c, s, &err);
}
