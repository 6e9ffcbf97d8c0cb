/* cmd_classify.c - `miclip classify MODEL_DIR IMAGE...`: preprocesses each image as the
 * folder's preprocessor_config.json says, runs the classifier and prints the top-5 labels of
 * id2label with their softmax probabilities. Rank 0 does the work (a debugging command). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "miclip/checked.h"
#include "miclip/image.h"
#include "miclip/model.h"

static mc_status classify(const char *dir, char **paths, int n, mc_error *err) {
    mc_model *m = NULL;
    MC_TRY(mc_model_create(dir, &m, err));
    mc_status st = MC_OK;
    mc_preproc pp;
    int C, H, W;
    float *px = NULL, *logits = NULL;
    const int64_t K = mc_model_output_dim(m);
    if (!mc_model_label(m, 0)) {
        st =
            MC_FAIL(err, MC_ERR_UNSUPPORTED,
                    "%s: %s has no id2label classifier (a CLIP folder "
                    "classifies zero-shot through its text tower: use the extract/evaluate stages)",
                    dir, mc_model_architecture(m));
        goto done;
    }
    mc_model_input_size(m, &C, &H, &W);
    if ((st = mc_preproc_load(dir, &pp, err)) != MC_OK) goto done;
    if (!mc_preproc_fixed_size(&pp, &H, &W)) {
        st = MC_FAIL(err, MC_ERR_UNSUPPORTED,
                     "%s: the preprocessor's output size depends on the image", dir);
        goto done;
    }
    px = mc_alloc_array((size_t)(3 * H * W), sizeof(float));
    logits = mc_alloc_array((size_t)K, sizeof(float));
    if (!px || !logits) {
        st = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < n && st == MC_OK; i++) {
        if (mc_stop_signal()) { /* rank 0 alone classifies; the others wait in mc_cli_finish */
            st = mc_fail_stopped(err, 0,
                                 "classify: %d of %d images classified (printed above); "
                                 "rerun for the rest",
                                 i, n);
            break;
        }
        const char *p = paths[i];
        st = mc_preprocess_files(&pp, &p, 1, NULL, px, err);
        if (st == MC_OK) st = mc_model_forward(m, px, 1, H, W, NULL, logits, NULL, err);
        if (st != MC_OK) break;
        /* softmax, then the five largest (first index wins ties, as torch.topk on CPU) */
        double mx = -INFINITY, z = 0;
        for (int64_t k = 0; k < K; k++) mx = logits[k] > mx ? logits[k] : mx;
        for (int64_t k = 0; k < K; k++) z += exp(logits[k] - mx);
        printf("%s:\n", p);
        int64_t top[5];
        for (int r = 0; r < 5 && r < K; r++) {
            int64_t best = -1;
            for (int64_t k = 0; k < K; k++) {
                bool taken = false;
                for (int q = 0; q < r; q++) taken |= top[q] == k;
                if (!taken && (best < 0 || logits[k] > logits[best])) best = k;
            }
            top[r] = best;
            printf("  %6.2f%%  %5lld  %s\n", 100.0 * exp(logits[best] - mx) / z, (long long)best,
                   mc_model_label(m, best));
        }
    }
done:
    free(px), free(logits);
    mc_model_free(&m);
    return st;
}

const mc_cli_cmd mc_cmd_classify_cli = {
    .name = "classify",
    .usage = "miclip classify MODEL_DIR IMAGE...",
    .about = "Classifies each image (JPEG or PNG) with a ViT or ResNet folder: preprocessing\n"
             "from preprocessor_config.json, then the top-5 labels of config.json's id2label\n"
             "with softmax probabilities. Runs on rank 0 only.\n"};

int mc_cmd_classify(const mc_comm *c, int argc, char **argv) {
    mc_cli_parser p;
    int rc = mc_cli_begin(&p, c, &mc_cmd_classify_cli, argc, argv);
    if (rc >= 0) return rc;
    char **args = calloc((size_t)argc, sizeof *args);
    int n = 0;
    if (!args) return MC_EXIT_FAILURE;
    const char *v;
    for (int id; (id = mc_cli_next(&p, &v)) != MC_CLI_END;) {
        if (id == MC_CLI_ERROR) {
            free(args);
            return MC_EXIT_USAGE;
        }
        args[n++] = (char *)v;
    }
    if (n < 2) { /* as before: the help, exit 2 */
        if (c->rank == 0) mc_cli_help(stdout, &mc_cmd_classify_cli);
        free(args);
        return MC_EXIT_USAGE;
    }
    mc_error err = {0};
    mc_status st = c->rank == 0 ? classify(args[0], args + 1, n - 1, &err) : MC_OK;
    free(args);
    return mc_cli_finish(c, st, &err);
}
