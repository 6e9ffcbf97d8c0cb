/* cmd_info.c - `miclip info MODEL_DIR`: loads a model folder and prints its architecture,
 * parameter count, input and output, and every layer name usable in configs and hooks. */
#include <stdio.h>

#include "cli.h"
#include "miclip/model.h"

const mc_cli_cmd mc_cmd_info_cli = {
    .name = "info",
    .usage = "miclip info MODEL_DIR",
    .about = "Loads a Hugging Face model folder (config.json + model.safetensors), checking\n"
             "every tensor, and prints the architecture, parameter count, input and output,\n"
             "and every layer name usable in configs (`layer:`) and hooks, with its\n"
             "per-image shape (docs/hooks.md).\n"};

int mc_cmd_info(const mc_comm *c, int argc, char **argv) {
    mc_cli_parser p;
    int rc = mc_cli_begin(&p, c, &mc_cmd_info_cli, argc, argv);
    if (rc >= 0) return rc;
    const char *dir = NULL, *v;
    int n = 0;
    for (int id; (id = mc_cli_next(&p, &v)) != MC_CLI_END;) {
        if (id == MC_CLI_ERROR) return MC_EXIT_USAGE;
        if (n++ == 0) dir = v;
    }
    if (n != 1) { /* as before: the help, exit 2 */
        if (c->rank == 0) mc_cli_help(stdout, &mc_cmd_info_cli);
        return MC_EXIT_USAGE;
    }
    mc_error err = {0};
    mc_model *m = NULL;
    mc_status st = mc_model_create(dir, &m, &err);
    if (st == MC_OK && c->rank == 0) {
        int ch, h, w, L, T, D, H;
        mc_model_input_size(m, &ch, &h, &w);
        mc_model_transformer_dims(m, &L, &T, &D, &H);
        printf("model:        %s\n", dir);
        printf("architecture: %s (family %s)\n", mc_model_architecture(m),
               mc_family_name(mc_model_family(m)));
        printf("parameters:   %lld\n", (long long)mc_model_param_count(m));
        printf("input:        [%d, %d, %d]%s\n", ch, h, w,
               mc_model_family(m) == MC_FAMILY_RESNET ? " (any size >= 32)" : "");
        printf("output:       %s [%lld]\n", mc_model_output_name(m),
               (long long)mc_model_output_dim(m));
        if (L > 0) printf("transformer:  %d blocks, %d tokens, width %d, %d heads\n", L, T, D, H);
        if (mc_model_label(m, 0))
            printf("labels:       %lld (0: %s)\n", (long long)mc_model_output_dim(m),
                   mc_model_label(m, 0));
        printf("layers (%d):\n", mc_model_layer_count(m));
        for (int i = 0; i < mc_model_layer_count(m); i++) {
            const mc_layer_info *l = mc_model_layer(m, i);
            printf("  %-32s [", l->name);
            for (int d = 0; d < l->ndim; d++)
                printf("%s%lld", d ? ", " : "", (long long)l->shape[d]);
            printf("]%s%s\n", l->has_attention ? "  attention" : "", l->can_start ? "  start" : "");
        }
    }
    mc_model_free(&m);
    return mc_cli_finish(c, st, &err);
}
