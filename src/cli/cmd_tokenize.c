/* cmd_tokenize.c - `miclip tokenize MODEL_DIR TEXT...`: prints the token ids of each text on
 * one line (start and end tokens included, no padding). A folder with vocab.json and
 * merges.txt uses the CLIP BPE tokenizer; one with vocab.txt the MPNet WordPiece tokenizer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "miclip/fsutil.h"
#include "miclip/text.h"

enum { OPT_CLEAN = 2, OPT_UTF8 };

static const mc_cli_opt opts[] = {
    {"clean", MC_CLI_VALUE, OPT_CLEAN, "MODE",
     "CLIP clean-up: openai (default: NFC, html.unescape twice, whitespace,\n"
     "lowercase), hf_slow (Hugging Face's slow tokenizer without ftfy),\n"
     "hf_fast (CLIPTokenizerFast's normaliser). See docs/text.md."},
    {"utf8", MC_CLI_VALUE, OPT_UTF8, "MODE",
     "invalid UTF-8: replace (default; U+FFFD per maximal ill-formed\n"
     "subpart, as Python) or reject (an error naming the byte offset)."},
    {0}};

const mc_cli_cmd mc_cmd_tokenize_cli = {
    .name = "tokenize",
    .usage = "miclip tokenize MODEL_DIR [--clean openai|hf_slow|hf_fast] [--utf8 replace|reject] "
             "TEXT...",
    .about = "Prints the token ids of each TEXT on one line, start and end tokens included.\n"
             "MODEL_DIR holds vocab.json + merges.txt (CLIP byte-level BPE, context 77, longer\n"
             "texts truncated keeping the end token) or vocab.txt (MPNet WordPiece).\n",
    .opts = opts,
    .notes =
        "A TEXT that starts with '-' goes after \"--\": miclip tokenize DIR -- \"-5 degrees\".\n"};

static mc_status run(const char *dir, mc_clip_tok_opts o, char **texts, int n, FILE *out,
                     mc_error *err) {
    char p[4096];
    mc_status s = MC_OK;
    if (mc_path_join(p, sizeof p, dir, "merges.txt") && mc_file_exists(p)) {
        mc_clip_tok *t = NULL;
        MC_TRY(mc_clip_tok_load(dir, &o, &t, err));
        int ctx = mc_clip_tok_context(t);
        int32_t *ids = malloc((size_t)ctx * sizeof *ids);
        if (!ids) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        for (int i = 0; i < n && s == MC_OK; i++) {
            int cnt = 0;
            if ((s = mc_clip_tok_encode(t, texts[i], strlen(texts[i]), ids, &cnt, err)) != MC_OK) {
                mc_error_prefix(err, "text %d", i + 1);
                break;
            }
            for (int k = 0; out && k < cnt; k++) fprintf(out, k ? " %d" : "%d", ids[k]);
            if (out) fputc('\n', out);
        }
        free(ids);
        mc_clip_tok_free(&t);
        return s;
    }
    if (mc_path_join(p, sizeof p, dir, "vocab.txt") && mc_file_exists(p)) {
        mc_wordpiece *t = NULL;
        mc_wp_opts wo = {.utf8 = o.utf8, .lowercase = -1, .strip_accents = -1};
        MC_TRY(mc_wp_load(dir, &wo, &t, err));
        int cap = mc_wp_max_length(t);
        int32_t *ids = malloc((size_t)cap * sizeof *ids);
        if (!ids) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        for (int i = 0; i < n && s == MC_OK; i++) {
            int cnt = 0;
            if ((s = mc_wp_encode(t, texts[i], strlen(texts[i]), ids, cap, &cnt, err)) != MC_OK) {
                mc_error_prefix(err, "text %d", i + 1);
                break;
            }
            for (int k = 0; out && k < cnt; k++) fprintf(out, k ? " %d" : "%d", ids[k]);
            if (out) fputc('\n', out);
        }
        free(ids);
        mc_wp_free(&t);
        return s;
    }
    return MC_FAIL(err, MC_ERR_IO, "%s: no tokenizer files (vocab.json + merges.txt, or vocab.txt)",
                   dir);
}

int mc_cmd_tokenize(const mc_comm *c, int argc, char **argv) {
    mc_cli_parser p;
    int rc = mc_cli_begin(&p, c, &mc_cmd_tokenize_cli, argc, argv);
    if (rc >= 0) return rc;
    mc_clip_tok_opts o = {0};
    const char *dir = NULL, *v;
    char **texts = calloc((size_t)argc, sizeof *texts);
    int n = 0;
    if (!texts) return MC_EXIT_FAILURE;
    for (int id; rc < 0 && (id = mc_cli_next(&p, &v)) != MC_CLI_END;) {
        switch (id) {
        case MC_CLI_ERROR: rc = MC_EXIT_USAGE; break;
        case OPT_CLEAN:
            if (!strcmp(v, "openai"))
                o.clean = MC_CLIP_CLEAN_OPENAI;
            else if (!strcmp(v, "hf_slow"))
                o.clean = MC_CLIP_CLEAN_HF_SLOW;
            else if (!strcmp(v, "hf_fast"))
                o.clean = MC_CLIP_CLEAN_HF_FAST;
            else
                rc = mc_cli_usage_error(c, "tokenize", "bad value '%s' for --clean", v);
            break;
        case OPT_UTF8:
            if (!strcmp(v, "replace"))
                o.utf8 = MC_UTF8_REPLACE;
            else if (!strcmp(v, "reject"))
                o.utf8 = MC_UTF8_REJECT;
            else
                rc = mc_cli_usage_error(c, "tokenize", "bad value '%s' for --utf8", v);
            break;
        case MC_CLI_ARG:
            if (!dir)
                dir = v;
            else
                texts[n++] = (char *)v;
            break;
        }
    }
    if (rc >= 0) {
        free(texts);
        return rc;
    }
    if (!dir || n == 0) {
        free(texts);
        return mc_cli_usage_error(c, "tokenize", "need MODEL_DIR and at least one TEXT");
    }
    mc_error err = {0};
    /* every rank tokenizes (the same verdict everywhere); rank 0 prints */
    mc_status st = run(dir, o, texts, n, c->rank == 0 ? stdout : NULL, &err);
    free(texts);
    return mc_cli_finish(c, st, &err);
}
