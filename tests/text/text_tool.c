/* text_tool.c - a line-oriented driver of the tokenizers for the Python reference tests.
 * Reads hex-encoded UTF-8 (or arbitrary bytes) one text per stdin line and prints one line
 * per text:
 *   text_tool clip DIR MODE UTF8   -> "<content ids>|<encoded 77 ids>" or "ERR <status>"
 *   text_tool wp DIR               -> "<ids>" or "ERR <status>"
 *   text_tool clip-decode DIR      -> stdin lines of ids; prints the hex of the decoded text
 *   text_tool embed DIR [TEMPLATE] -> per text "I <ids>" and "E <embedding>" (%.9g) lines
 * MODE: openai | hf_slow | hf_fast; UTF8: replace | reject. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/text.h"

static size_t unhex(const char *line, char *out) {
    size_t n = 0;
    for (size_t i = 0; line[i] && line[i + 1] && line[i] != '\n'; i += 2) {
        unsigned v;
        sscanf(line + i, "%2x", &v);
        out[n++] = (char)v;
    }
    return n;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    static char line[1 << 22], text[1 << 21];
    mc_error err = {0};
    if (strcmp(argv[1], "clip") == 0 || strcmp(argv[1], "clip-decode") == 0) {
        mc_clip_tok_opts o = {0};
        if (argc > 3)
            o.clean = strcmp(argv[3], "hf_slow") == 0   ? MC_CLIP_CLEAN_HF_SLOW
                      : strcmp(argv[3], "hf_fast") == 0 ? MC_CLIP_CLEAN_HF_FAST
                                                        : MC_CLIP_CLEAN_OPENAI;
        if (argc > 4 && strcmp(argv[4], "reject") == 0) o.utf8 = MC_UTF8_REJECT;
        mc_clip_tok *t = NULL;
        if (mc_clip_tok_load(argv[2], &o, &t, &err) != MC_OK) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        while (fgets(line, sizeof line, stdin)) {
            if (strcmp(argv[1], "clip-decode") == 0) {
                int32_t ids[4096];
                size_t n = 0;
                for (char *p = strtok(line, " \n"); p && n < 4096; p = strtok(NULL, " \n"))
                    ids[n++] = atoi(p);
                char *s = NULL;
                if (mc_clip_tok_decode(t, ids, n, &s, &err) != MC_OK) {
                    printf("ERR %s\n", mc_status_name(err.code));
                    continue;
                }
                for (char *p = s; *p; p++) printf("%02x", (unsigned char)*p);
                printf("\n");
                free(s);
                continue;
            }
            size_t len = unhex(line, text);
            int32_t *ids = NULL;
            size_t n = 0;
            int32_t enc[77];
            int ne = 0;
            if (mc_clip_tok_tokenize(t, text, len, &ids, &n, &err) != MC_OK ||
                mc_clip_tok_encode(t, text, len, enc, &ne, &err) != MC_OK) {
                printf("ERR %s\n", mc_status_name(err.code));
                free(ids);
                continue;
            }
            for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
            printf("|");
            for (int i = 0; i < 77; i++) printf(i ? " %d" : "%d", enc[i]);
            printf("\n");
            free(ids);
        }
        mc_clip_tok_free(&t);
        return 0;
    }
    if (strcmp(argv[1], "embed") == 0) {
        mc_text_encoder *e = NULL;
        if (mc_text_encoder_load(argv[2], NULL, &e, &err) != MC_OK) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        size_t n = 0, cap = 16;
        char **texts = malloc(cap * sizeof *texts);
        while (fgets(line, sizeof line, stdin)) {
            size_t len = unhex(line, text);
            text[len] = '\0';
            if (n == cap) texts = realloc(texts, (cap *= 2) * sizeof *texts);
            char *filled = NULL;
            if (mc_text_apply_template(argc > 3 ? argv[3] : NULL, text, &filled, &err) != MC_OK) {
                fprintf(stderr, "%s\n", err.msg);
                return 1;
            }
            texts[n++] = filled;
        }
        int ctx = mc_text_encoder_context(e), dim = mc_text_encoder_dim(e);
        int32_t *ids = malloc(n * (size_t)ctx * sizeof *ids);
        float *emb = malloc(n * (size_t)dim * sizeof *emb);
        if (mc_text_encoder_tokenize(e, (const char *const *)texts, n, ids, NULL, &err) != MC_OK ||
            mc_text_embed(e, (const char *const *)texts, n, NULL, false, emb, &err) != MC_OK) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        for (size_t i = 0; i < n; i++) {
            printf("I");
            for (int k = 0; k < ctx; k++) printf(" %d", ids[i * (size_t)ctx + (size_t)k]);
            printf("\nE");
            for (int k = 0; k < dim; k++) printf(" %.9g", emb[i * (size_t)dim + (size_t)k]);
            printf("\n");
            free(texts[i]);
        }
        free(texts);
        free(ids);
        free(emb);
        mc_text_encoder_free(&e);
        return 0;
    }
    if (strcmp(argv[1], "wp") == 0) {
        mc_wordpiece *t = NULL;
        if (mc_wp_load(argv[2], NULL, &t, &err) != MC_OK) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        int cap = mc_wp_max_length(t);
        int32_t *ids = malloc((size_t)cap * sizeof *ids);
        while (fgets(line, sizeof line, stdin)) {
            size_t len = unhex(line, text);
            int n = 0;
            if (mc_wp_encode(t, text, len, ids, cap, &n, &err) != MC_OK) {
                printf("ERR %s\n", mc_status_name(err.code));
                continue;
            }
            for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
            printf("\n");
        }
        free(ids);
        mc_wp_free(&t);
        return 0;
    }
    return 2;
}
