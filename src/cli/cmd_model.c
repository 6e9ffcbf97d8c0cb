/* cmd_model.c - `miclip model random --arch A --seed S --out DIR [--dtype f32|f16|bf16]`:
 * writes a random-weight Hugging Face folder (config.json, preprocessor_config.json,
 * model.safetensors) in C, for benchmarks, tests and users without network access. Rank 0
 * writes; every rank agrees on the result. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "miclip/model.h"

enum { OPT_ARCH = 2, OPT_SEED, OPT_OUT, OPT_DTYPE };

static const mc_cli_opt opts[] = {
    {"arch", MC_CLI_VALUE, OPT_ARCH, "ARCH", "one of the architectures above (required)"},
    {"seed", MC_CLI_VALUE, OPT_SEED, "S",
     "the weights are a deterministic function of it (default 0)"},
    {"out", MC_CLI_VALUE, OPT_OUT, "DIR",
     "the folder to write (created if missing; files replaced atomically)"},
    {"dtype", MC_CLI_VALUE, OPT_DTYPE, "T",
     "storage type of the weights: f32 (default), f16 or bf16"},
    {0}};

static void archs(FILE *out, const mc_cli_cmd *cmd) {
    (void)cmd;
    fprintf(out,
            "\narchitectures: %s\n"
            "  (vit-b16: google/vit-base-patch16-224 layout; resnet50: microsoft/resnet-50;\n"
            "  clip-b16: openai/clip-vit-base-patch16 incl. the text tower; *-tiny: small\n"
            "  versions for tests)\n",
            mc_model_random_archs());
}

const mc_cli_cmd mc_cmd_model_cli = {
    .name = "model",
    .action = "random",
    .usage = "miclip model random --arch ARCH --seed S --out DIR [--dtype f32|f16|bf16]",
    .about = "Writes a Hugging Face model folder with random weights (no PyTorch needed):\n"
             "config.json, preprocessor_config.json and model.safetensors.\n",
    .about_more = archs,
    .opts = opts};

int mc_cmd_model(const mc_comm *c, int argc, char **argv) {
    mc_cli_parser p;
    int rc = mc_cli_begin(&p, c, &mc_cmd_model_cli, argc, argv);
    if (rc >= 0) return rc;
    const char *arch = NULL, *out = NULL, *v;
    long long seed = 0;
    mc_dtype dt = MC_DTYPE_F32;
    for (int id; (id = mc_cli_next(&p, &v)) != MC_CLI_END;) {
        switch (id) {
        case MC_CLI_ERROR: return MC_EXIT_USAGE;
        case MC_CLI_ARG: return mc_cli_usage_error(c, "model", "unexpected argument '%s'", v);
        case OPT_ARCH: arch = v; break;
        case OPT_OUT: out = v; break;
        case OPT_SEED:
            if (!mc_cli_parse_int(v, 0, (1ll << 62), &seed))
                return mc_cli_usage_error(c, "model",
                                          "--seed must be a non-negative integer, got '%s'", v);
            break;
        case OPT_DTYPE:
            if (!strcmp(v, "f32"))
                dt = MC_DTYPE_F32;
            else if (!strcmp(v, "f16"))
                dt = MC_DTYPE_F16;
            else if (!strcmp(v, "bf16"))
                dt = MC_DTYPE_BF16;
            else
                return mc_cli_usage_error(c, "model", "--dtype must be f32, f16 or bf16, got '%s'",
                                          v);
            break;
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
