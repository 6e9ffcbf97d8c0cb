/* cmd_model.c - `miclip model random --arch A --seed S --out DIR [--dtype f32|f16|bf16]`:
 * writes a random-weight Hugging Face folder (config.json, preprocessor_config.json,
 * model.safetensors) in C, for benchmarks, tests and users without network access. Rank 0
 * writes; every rank agrees on the result. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "miclip/model.h"

static void usage(void) {
    printf("usage: miclip model random --arch ARCH --seed S --out DIR [--dtype f32|f16|bf16]\n\n"
           "Writes a Hugging Face model folder with random weights (no PyTorch needed):\n"
           "config.json, preprocessor_config.json and model.safetensors.\n\n"
           "  --arch   %s\n"
           "           (vit-b16: google/vit-base-patch16-224 layout; resnet50: microsoft/resnet-50;\n"
           "           clip-b16: openai/clip-vit-base-patch16 incl. the text tower; *-tiny: small\n"
           "           versions for tests)\n"
           "  --seed   the weights are a deterministic function of it (default 0)\n"
           "  --out    the folder to write (created if missing; files replaced atomically)\n"
           "  --dtype  storage type of the weights (default f32)\n",
           mc_model_random_archs());
}

int mc_cmd_model(const mc_comm *c, int argc, char **argv) {
    if (mc_cli_wants_help(argc, argv) || argc < 2) {
        if (c->rank == 0) usage();
        return argc < 2 ? MC_EXIT_USAGE : 0;
    }
    if (strcmp(argv[1], "random") != 0)
        return mc_cli_usage_error(c, "model", "unknown action '%s' (expected 'random')", argv[1]);
    const char *arch = NULL, *out = NULL;
    long long seed = 0;
    mc_dtype dt = MC_DTYPE_F32;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) return mc_cli_usage_error(c, "model", "option %s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--arch")) arch = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--seed")) {
            if (!mc_cli_parse_int(v, 0, (1ll << 62), &seed))
                return mc_cli_usage_error(c, "model", "--seed must be a non-negative integer, got '%s'", v);
        } else if (!strcmp(a, "--dtype")) {
            if (!strcmp(v, "f32")) dt = MC_DTYPE_F32;
            else if (!strcmp(v, "f16")) dt = MC_DTYPE_F16;
            else if (!strcmp(v, "bf16")) dt = MC_DTYPE_BF16;
            else return mc_cli_usage_error(c, "model", "--dtype must be f32, f16 or bf16, got '%s'", v);
        } else {
            return mc_cli_usage_error(c, "model", "unknown option %s", a);
        }
    }
    if (!arch || !out) return mc_cli_usage_error(c, "model", "--arch and --out are required");
    mc_error err = {0};
    mc_status st = MC_OK;
    if (c->rank == 0) {
        st = mc_model_write_random(arch, (uint64_t)seed, dt, out, &err);
        if (st == MC_OK) printf("wrote %s (%s, seed %lld)\n", out, arch, seed);
    }
    return mc_cli_finish(c, st, &err);
}
