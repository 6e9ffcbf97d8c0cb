/* cmd_inspect.c - `miclip inspect FILE.safetensors|MODEL_DIR`: validates a safetensors file
 * (every check of safetensors.h) or a Hugging Face model folder (config.json + model.safetensors)
 * and lists what it holds. Every rank validates the same input, so every rank reaches the same
 * verdict; rank 0 prints. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "miclip/fsutil.h"
#include "miclip/hf.h"
#include "miclip/safetensors.h"

enum { OPT_SUMMARY = 2 };

static const mc_cli_opt opts[] = {
    {"summary", MC_CLI_FLAG, OPT_SUMMARY, NULL, "totals only, no per-tensor lines"}, {0}};

const mc_cli_cmd mc_cmd_inspect_cli = {
    .name = "inspect",
    .usage = "miclip inspect [--summary] FILE.safetensors|MODEL_DIR",
    .about =
        "Validates a safetensors file (header bounds, JSON, dtypes, shapes, offsets tiling the\n"
        "data section; see docs/formats.md) and lists its tensors (name, dtype, shape, bytes),\n"
        "its metadata and the total parameter count. For a Hugging Face model folder it also\n"
        "reads config.json (architecture, model_type, family, number of labels) and inspects\n"
        "DIR/model.safetensors.\n",
    .opts = opts,
    .notes = "Exit status: 0 when valid, 1 with one error line naming the file and field.\n"};

static void print_config(const mc_hf_config *cfg) {
    printf("config: %s\n", cfg->path);
    printf("  architecture: %s\n", cfg->architecture ? cfg->architecture : "(none)");
    printf("  model_type:   %s\n", cfg->model_type ? cfg->model_type : "(none)");
    printf("  family:       %s\n", mc_hf_family_name(cfg->family));
    printf("  labels:       %lld", (long long)cfg->num_labels);
    if (cfg->num_labels > 0)
        printf(" (0: \"%s\" ... %lld: \"%s\")", cfg->labels[0], (long long)(cfg->num_labels - 1),
               cfg->labels[cfg->num_labels - 1]);
    printf("\n");
}

static void print_file(const mc_st_file *f, bool summary) {
    int n = mc_st_count(f);
    size_t bytes = 0;
    int width = 4;
    for (int i = 0; i < n; i++) {
        const mc_st_tensor *t = mc_st_at(f, i);
        bytes += t->nbytes;
        int len = (int)strlen(t->name);
        if (len > width) width = len < 80 ? len : 80;
    }
    printf("file: %s\n", mc_st_path(f));
    printf("  header: %zu bytes, tensors: %d, parameters: %zu, data: %zu bytes\n",
           mc_st_header_bytes(f), n, mc_st_total_numel(f), bytes);
    int nm = mc_st_metadata_count(f);
    if (nm > 0) {
        printf("metadata:\n");
        for (int i = 0; i < nm; i++) {
            const char *k, *v;
            mc_st_metadata_at(f, i, &k, &v);
            printf("  %s = %s\n", k, v);
        }
    }
    if (summary || n == 0) return;
    printf("tensors (in file order):\n");
    printf("  %-*s  %-5s  %-24s  %s\n", width, "name", "dtype", "shape", "bytes");
    for (int i = 0; i < n; i++) {
        const mc_st_tensor *t = mc_st_at(f, i);
        char shape[256];
        mc_shape_str(t->shape, t->ndim, shape, sizeof shape);
        printf("  %-*s  %-5s  %-24s  %zu\n", width, t->name, mc_dtype_name(t->dtype), shape,
               t->nbytes);
    }
}

static mc_status inspect(const mc_comm *c, const char *target, bool summary, mc_error *err) {
    mc_hf_config *cfg = NULL;
    char weights[4096];
    const char *st_path = target;
    if (mc_dir_exists(target)) {
        MC_TRY(mc_hf_config_load(target, &cfg, err));
        char index[4096];
        if (!mc_hf_file(cfg, "model.safetensors", weights, sizeof weights) ||
            !mc_hf_file(cfg, "model.safetensors.index.json", index, sizeof index)) {
            mc_hf_config_free(&cfg);
            return MC_FAIL(err, MC_ERR_ARG, "path too long: %s", target);
        }
        if (!mc_file_exists(weights)) {
            mc_status s =
                mc_file_exists(index)
                    ? MC_FAIL(err, MC_ERR_UNSUPPORTED,
                              "%s: sharded checkpoints are not supported. HINT: re-save the model "
                              "with save_pretrained(..., max_shard_size=\"100GB\") to get one "
                              "model.safetensors",
                              index)
                    : MC_FAIL(err, MC_ERR_IO,
                              "%s not found. HINT: the folder must hold the weights as "
                              "model.safetensors (save_pretrained(..., safe_serialization=True))",
                              weights);
            mc_hf_config_free(&cfg);
            return s;
        }
        st_path = weights;
    }
    mc_st_file *f = NULL;
    mc_status s = mc_st_open(st_path, &f, err);
    if (s == MC_OK && c->rank == 0) {
        if (cfg) print_config(cfg);
        print_file(f, summary);
        fflush(stdout);
    }
    mc_st_close(&f);
    mc_hf_config_free(&cfg);
    return s;
}

int mc_cmd_inspect(const mc_comm *c, int argc, char **argv) {
    mc_cli_parser p;
    int rc = mc_cli_begin(&p, c, &mc_cmd_inspect_cli, argc, argv);
    if (rc >= 0) return rc;
    bool summary = false;
    const char *target = NULL, *v;
    for (int id; (id = mc_cli_next(&p, &v)) != MC_CLI_END;) {
        switch (id) {
        case MC_CLI_ERROR: return MC_EXIT_USAGE;
        case OPT_SUMMARY: summary = true; break;
        case MC_CLI_ARG:
            if (target)
                return mc_cli_usage_error(c, "inspect", "one FILE or MODEL_DIR, got '%s' and '%s'",
                                          target, v);
            target = v;
            break;
        }
    }
    if (!target) return mc_cli_usage_error(c, "inspect", "missing FILE.safetensors or MODEL_DIR");
    mc_error err = {0};
    mc_status s = inspect(c, target, summary, &err);
    return mc_cli_finish(c, s, &err);
}
