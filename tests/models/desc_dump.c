/* desc_dump.c - the C side of check_model_desc.py: builds the model description of a
 * config.json (no weights) and prints it as JSON.
 *
 * usage: desc_dump CONFIG.json FAMILY   (FAMILY: vit, resnet, clip_vision, clip_text, mpnet)
 * prints {"family", "params", "mac", "arena_floats_b1", "arena_floats_b8",
 *         "layers": [[name, [shape], mac, mac_cum], ...], "tensors": [[name, [shape]], ...]} */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "miclip/json.h"
#include "miclip/model_desc.h"

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: desc_dump CONFIG.json FAMILY\n");
        return 2;
    }
    int fam = -1;
    for (int f = 0; f < MC_DESC_FAMILY_COUNT; f++)
        if (strcmp(argv[2], mc_desc_family_name((mc_desc_family)f)) == 0) fam = f;
    json_t *cfg = NULL;
    mc_model_desc *d = NULL;
    mc_error err = {0};
    if (fam < 0) {
        fprintf(stderr, "desc_dump: unknown family %s\n", argv[2]);
        return 2;
    }
    if (mc_json_load(argv[1], false, &cfg, &err) != MC_OK ||
        mc_model_desc_build(cfg, argv[1], (mc_desc_family)fam, &d, &err) != MC_OK) {
        fprintf(stderr, "desc_dump: %s\n", err.msg);
        json_decref(cfg);
        return 1;
    }
    json_t *o = json_object(), *layers = json_array(), *tensors = json_array();
    json_object_set_new(o, "family", json_string(mc_desc_family_name(d->family)));
    json_object_set_new(o, "params", json_integer(d->params));
    json_object_set_new(o, "mac", json_real(d->mac));
    const json_int_t a1 = (json_int_t)mc_model_desc_arena_floats(d, 1, 224, 224);
    const json_int_t a8 = (json_int_t)mc_model_desc_arena_floats(d, 8, 224, 224);
    json_object_set_new(o, "arena_floats_b1", json_integer(a1));
    json_object_set_new(o, "arena_floats_b8", json_integer(a8));
    for (int i = 0; i < d->n_layers; i++) {
        const mc_desc_layer *l = &d->layers[i];
        json_t *sh = json_array();
        for (int k = 0; k < l->ndim; k++) json_array_append_new(sh, json_integer(l->shape[k]));
        json_array_append_new(layers, json_pack("[s o f f]", l->name, sh, l->mac, l->mac_cum));
    }
    for (int i = 0; i < d->n_tensors; i++) {
        const mc_desc_tensor *t = &d->tensors[i];
        json_t *sh = json_array();
        for (int k = 0; k < t->ndim; k++) json_array_append_new(sh, json_integer(t->shape[k]));
        json_array_append_new(tensors, json_pack("[s o]", t->name, sh));
    }
    json_object_set_new(o, "layers", layers);
    json_object_set_new(o, "tensors", tensors);
    json_dumpf(o, stdout, JSON_COMPACT);
    putchar('\n');
    json_decref(o);
    json_decref(cfg);
    mc_model_desc_free(&d);
    return 0;
}
