/* fuzz_tokenizer.c - libFuzzer entry for the CLIP BPE (three clean-up modes, both UTF-8
 * policies) and the WordPiece tokenizer on arbitrary bytes. Invariants checked on every input:
 * REPLACE never fails; encode gives <start> ... <end> within the context; every id is in the
 * vocabulary; decode of the ids succeeds; WordPiece gives <s> ... </s> within max_length. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "miclip/fsutil.h"
#include "miclip/text.h"

static mc_clip_tok *clip[3][2];
static mc_wordpiece *wp;

static void put(const char *dir, const char *name, const char *text) {
    char p[512];
    mc_path_join(p, sizeof p, dir, name);
    FILE *f = fopen(p, "wb");
    if (!f) abort();
    fputs(text, f);
    fclose(f);
}

static void setup(void) {
    char dir[128];
    snprintf(dir, sizeof dir, "/tmp/miclip_fuzz_tok_%d", (int)getpid());
    mc_error err = {0};
    mc_mkdir_p(dir, &err);
    put(dir, "vocab.json",
        "{\"a\": 0, \"b\": 1, \"a</w>\": 2, \"b</w>\": 3, \"ab</w>\": 4, \"ab\": 5, "
        "\"<|startoftext|>\": 6,"
        " \"<|endoftext|>\": 7, \"\\u00c3\": 8, \"'s</w>\": 9, \"1</w>\": 10}");
    put(dir, "merges.txt", "#version: 0.2\na b</w>\na b\n' s</w>\nab ab\n");
    put(dir, "vocab.txt", "<s>\n<pad>\n</s>\n<unk>\n[UNK]\na\n##b\nb\n,\n<mask>\n");
    put(dir, "sentence_bert_config.json", "{\"max_seq_length\": 16}");
    for (int m = 0; m < 3; m++)
        for (int u = 0; u < 2; u++) {
            mc_clip_tok_opts o = {
                .clean = (mc_clip_clean)m, .utf8 = (mc_utf8_policy)u, .context = 77};
            if (mc_clip_tok_load(dir, &o, &clip[m][u], &err) != MC_OK) abort();
        }
    if (mc_wp_load(dir, NULL, &wp, &err) != MC_OK) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!wp) setup();
    const char *text = (const char *)data;
    mc_error err = {0};
    for (int m = 0; m < 3; m++)
        for (int u = 0; u < 2; u++) {
            mc_clip_tok *t = clip[m][u];
            int32_t ids[77];
            int n = 0;
            mc_status s = mc_clip_tok_encode(t, text, size, ids, &n, &err);
            if (u == 0 && s != MC_OK) abort();
            if (s != MC_OK) {
                if (s != MC_ERR_FORMAT) abort();
                continue;
            }
            if (n < 2 || n > 77 || ids[0] != mc_clip_tok_bos(t) || ids[n - 1] != mc_clip_tok_eos(t))
                abort();
            for (int i = 0; i < n; i++)
                if (ids[i] < 0 || ids[i] >= mc_clip_tok_vocab_size(t)) abort();
            char *dec = NULL;
            if (mc_clip_tok_decode(t, ids, (size_t)n, &dec, &err) != MC_OK) abort();
            free(dec);
        }
    int32_t ids[16];
    int n = 0;
    if (mc_wp_encode(wp, text, size, ids, 16, &n, &err) != MC_OK) abort();
    if (n < 2 || n > 16 || ids[0] != 0 || ids[n - 1] != 2) abort();
    return 0;
}
