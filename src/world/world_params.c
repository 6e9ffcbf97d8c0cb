/* world_params.c - reading a world's parameters back from DIR/world.json. Kept apart from
 * world.c so the generator itself builds without jansson (tools/world/world_gen.c). */
#include <string.h>

#include "miclip/fsutil.h"
#include "miclip/json.h"
#include "miclip/world.h"

mc_status mc_world_load_params(const char *dir, mc_world_params *p, mc_error *err) {
    char path[4096];
    if (!mc_path_join(path, sizeof path, dir, "world.json"))
        return MC_FAIL(err, MC_ERR_ARG, "world: path too long: %s", dir);
    json_t *j = NULL;
    MC_TRY(mc_json_load(path, false, &j, err));
    const char *gen = NULL;
    int64_t version = 0, seed = 0, size = 0, per = 0, val = 0, unseen = 0;
    mc_status st = mc_json_get_str(j, "generator", true, NULL, &gen, path, err);
    if (st == MC_OK) st = mc_json_get_int(j, "version", true, 0, &version, path, err);
    if (st == MC_OK) st = mc_json_get_int(j, "seed", true, 0, &seed, path, err);
    if (st == MC_OK) st = mc_json_get_int(j, "size", true, 0, &size, path, err);
    if (st == MC_OK) st = mc_json_get_int(j, "per_class", true, 0, &per, path, err);
    if (st == MC_OK) st = mc_json_get_int(j, "val_per_class", true, 0, &val, path, err);
    if (st == MC_OK) st = mc_json_get_int(j, "unseen_per_class", true, 0, &unseen, path, err);
    if (st == MC_OK &&
        (strcmp(gen, "miclip world make") != 0 || version != 1 || size != MC_WORLD_SIZE))
        st = MC_FAIL(err, MC_ERR_FORMAT,
                     "%s: not a world this miclip makes (generator '%s', version %lld, size %lld; "
                     "expected 'miclip world make', 1, %d)",
                     path, gen, (long long)version, (long long)size, MC_WORLD_SIZE);
    if (st == MC_OK && seed < 0)
        st = MC_FAIL(err, MC_ERR_FORMAT, "%s: field 'seed' is negative (%lld)", path,
                     (long long)seed);
    /* The hard split's fields (absent: no hard split). */
    int64_t hard = 0, distract = 0;
    double fade = 0, occ = 0;
    if (st == MC_OK) st = mc_json_get_int(j, "hard_per_class", false, 0, &hard, path, err);
    if (st == MC_OK) st = mc_json_get_num(j, "hard_fade", false, 0, &fade, path, err);
    if (st == MC_OK) st = mc_json_get_num(j, "hard_occlusion", false, 0, &occ, path, err);
    if (st == MC_OK) st = mc_json_get_int(j, "hard_distractors", false, 0, &distract, path, err);
    json_decref(j);
    if (st != MC_OK) return st;
    if (distract < 0 || distract > MC_WORLD_MAX_DISTRACTORS) distract = -1; /* params_check says */
    *p = (mc_world_params){.seed = (uint64_t)seed,
                           .per_class = per,
                           .val_per_class = val,
                           .unseen_per_class = unseen,
                           .hard_per_class = hard,
                           .hard_fade = fade,
                           .hard_occlusion = occ,
                           .hard_distractors = (int)distract};
    st = mc_world_params_check(p, err);
    if (st != MC_OK) mc_error_prefix(err, "%s", path);
    return st;
}
