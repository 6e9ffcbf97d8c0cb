/* test_tokenizers.c - the CLIP BPE and WordPiece tokenizers on small hand-built vocabularies,
 * with every expected id derived by hand in the comments (the rules: specs/hf-models.md 4 and
 * 6.4), plus properties: empty text, truncation keeping the end token, the merge-round order,
 * invalid UTF-8 under both policies, very long input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "miclip/fsutil.h"
#include "miclip/text.h"
#include "test_util.h"

static char dir[256];

static void put_file(const char *name, const char *text) {
    char p[512];
    mc_path_join(p, sizeof p, dir, name);
    FILE *f = fopen(p, "wb");
    fputs(text, f);
    fclose(f);
}

/* ids of text (content only) compared with want[n] */
static void expect_tok(mc_clip_tok *t, const char *text, const int32_t *want, size_t n) {
    int32_t *ids = NULL;
    size_t got = 0;
    mc_error err = {0};
    CHECK_MSG(mc_clip_tok_tokenize(t, text, strlen(text), &ids, &got, &err) == MC_OK, "%s",
              err.msg);
    bool same = got == n && (n == 0 || memcmp(ids, want, n * sizeof *ids) == 0);
    CHECK_MSG(same, "\"%s\": got %zu ids (first %d), want %zu (first %d)", text, got,
              got ? ids[0] : -1, n, n ? want[0] : -1);
    free(ids);
}

#define TOK(text, ...)                                                                             \
    do {                                                                                           \
        const int32_t w_[] = {__VA_ARGS__};                                                        \
        expect_tok(t, text, w_, sizeof w_ / sizeof w_[0]);                                         \
    } while (0)

static void test_clip(void) {
    /* bytes_to_unicode maps printable ASCII to itself and 0xC3 0xA9 (e-acute) to "Ã©". */
    put_file("vocab.json", "{\"c\": 0, \"a\": 1, \"t\": 2, \"t</w>\": 3, \"a</w>\": 4, \"ca\": 5, "
                           "\"cat</w>\": 6, \"at</w>\": 7,"
                           " \".</w>\": 8, \"s</w>\": 9, \"'s</w>\": 10, \"<|startoftext|>\": 11, "
                           "\"<|endoftext|>\": 12,"
                           " \"'\": 13, \"1</w>\": 14, \"\u00c3\u00a9</w>\": 15, \"aa\": 16, "
                           "\"x\": 17, \"y\": 18, \"z</w>\": 19,"
                           " \"xy\": 20, \"xyx\": 21, \"\u00c3\": 22, \"\u00a9</w>\": 23}");
    put_file("merges.txt", "#version: 0.2\n"
                           "a t</w>\n"           /* rank 0 */
                           "c a\n"               /* rank 1 */
                           "ca t</w>\n"          /* rank 2 */
                           "' s</w>\n"           /* rank 3 */
                           "\u00c3 \u00a9</w>\n" /* rank 4 */
                           "c at</w>\n"          /* rank 5 */
                           "a a\n"               /* rank 6 */
                           "xy x\n"  /* rank 7: lower than (x, y), which it can only follow */
                           "x y\n"); /* rank 8 */
    mc_error err = {0};
    mc_clip_tok *t = NULL;
    CHECK_MSG(mc_clip_tok_load(dir, NULL, &t, &err) == MC_OK, "%s", err.msg);
    if (!t) return;
    CHECK(mc_clip_tok_bos(t) == 11 && mc_clip_tok_eos(t) == 12 && mc_clip_tok_vocab_size(t) == 24);
    /* "cat": c a t</w>; lowest rank is (a, t</w>) 0 -> c at</w>; then (c, at</w>) 5 -> cat</w>.
     * (ca, t</w>) rank 2 never applies because (c, a) rank 1 loses to rank 0. */
    TOK("cat", 6);
    /* "CAT." lowercases; "." is its own piece: .</w> */
    TOK("CAT.", 6, 8);
    /* "cats": c a t s</w>; only (c, a) has a rank -> ca t s</w> */
    TOK("cats", 5, 2, 9);
    /* "ta": t a</w>: no pair ranked */
    TOK("ta", 2, 4);
    /* "it's": pieces "it" and "'s"; i is not in the vocabulary -> the unknown id, which is
     * <|endoftext|> (12) as in Hugging Face; "'s" -> ' s</w> -> 's</w> */
    TOK("it's", 12, 3, 10);
    /* e-acute and its capital (lowercased), composed or decomposed (NFC) */
    TOK("\xc3\xa9", 15);
    TOK("\xc3\x89", 15);
    TOK("e\xcc\x81", 15);
    /* [\p{N}] takes one digit per piece */
    TOK("11", 14, 14);
    /* whitespace and HTML entities: "&amp;" unescapes to "&", a piece of its own whose
     * symbol &</w> is not in the vocabulary (12); each "a" is a piece: a</w> */
    TOK("  a \t\n a  ", 4, 4);
    TOK("a&amp;a", 4, 12, 4);
    /* literal special-token strings map to their ids */
    TOK("<|endoftext|>", 12);
    /* "aaaa": a a a a</w>; (a, a) rank 6 merges its non-overlapping occurrences left to
     * right: aa a a</w> -> ids 16 1 4 */
    TOK("aaaa", 16, 1, 4);
    /* "xyxyz": x y x y z</w>. The reference merges every (x, y) in one round: xy xy z</w>.
     * Merging only the first and then the new lower-ranked (xy, x) would give xyx y z</w>. */
    TOK("xyxyz", 20, 20, 19);
    TOK("", );
    /* encode: <start> ids <end>, zero-padded to 77 */
    int32_t ids[77];
    int n = 0;
    CHECK(mc_clip_tok_encode(t, "cat", 3, ids, &n, &err) == MC_OK);
    CHECK(n == 3 && ids[0] == 11 && ids[1] == 6 && ids[2] == 12 && ids[3] == 0 && ids[76] == 0);
    CHECK(mc_clip_tok_encode(t, "", 0, ids, &n, &err) == MC_OK && n == 2 && ids[0] == 11 &&
          ids[1] == 12);
    /* truncation keeps 75 content ids and ends with <|endoftext|> */
    char *big = malloc(200001);
    for (int i = 0; i < 100000; i++) memcpy(big + 2 * i, "a ", 2);
    big[200000] = '\0';
    CHECK(mc_clip_tok_encode(t, big, 200000, ids, &n, &err) == MC_OK);
    CHECK(n == 77 && ids[0] == 11 && ids[1] == 4 && ids[75] == 4 && ids[76] == 12);
    /* a single 200000-letter piece, BPE in O(n log n): a x 199999 then a</w>; (a, a) merges
     * positions 0-1, 2-3, ..., 199996-199997: 99999 x aa, then a, a</w> */
    memset(big, 'a', 200000);
    int32_t *many = NULL;
    size_t nm = 0;
    CHECK(mc_clip_tok_tokenize(t, big, 200000, &many, &nm, &err) == MC_OK && nm == 100001 &&
          many[0] == 16 && many[99998] == 16 && many[99999] == 1 && many[100000] == 4);
    free(many);
    free(big);
    /* invalid UTF-8: replaced by U+FFFD (bytes EF BF BD: no vocab entry -> 12 12 12 per piece
     * character... "a\xff" -> pieces "a" and U+FFFD) */
    TOK("a\xff", 4, 12, 12, 12);
    mc_clip_tok_free(&t);
    CHECK(t == NULL);
    mc_clip_tok_opts o = {.utf8 = MC_UTF8_REJECT, .context = 5};
    CHECK(mc_clip_tok_load(dir, &o, &t, &err) == MC_OK);
    CHECK(mc_clip_tok_encode(t, "a\xff", 2, ids, &n, &err) == MC_ERR_FORMAT &&
          strstr(err.msg, "offset 1"));
    CHECK(mc_clip_tok_encode(t, "a a a a", 7, ids, &n, &err) == MC_OK && n == 5 && ids[3] == 4 &&
          ids[4] == 12);
    /* decode: "</w>" becomes a space */
    const int32_t d[] = {11, 6, 9, 12};
    char *s = NULL;
    CHECK(mc_clip_tok_decode(t, d, 4, &s, &err) == MC_OK && s &&
          strcmp(s, "<|startoftext|>cat s <|endoftext|>") == 0);
    free(s);
    mc_clip_tok_free(&t);
    o.no_truncate = true;
    CHECK(mc_clip_tok_load(dir, &o, &t, &err) == MC_OK);
    CHECK(mc_clip_tok_encode(t, "a a a a", 7, ids, &n, &err) == MC_ERR_ARG);
    mc_clip_tok_free(&t);
    /* malformed files */
    put_file("merges.txt", "#version: 0.2\na b c\n");
    CHECK(mc_clip_tok_load(dir, NULL, &t, &err) == MC_ERR_FORMAT && strstr(err.msg, "line 2"));
    put_file("vocab.json", "{\"a\": 0, \"b\": 0, \"<|startoftext|>\": 1, \"<|endoftext|>\": 2}");
    CHECK(mc_clip_tok_load(dir, NULL, &t, &err) == MC_ERR_FORMAT);
    CHECK(t == NULL);
}

static void expect_wp(mc_wordpiece *t, const char *text, const int32_t *want, int n) {
    int32_t ids[64];
    int got = 0;
    mc_error err = {0};
    CHECK_MSG(mc_wp_encode(t, text, strlen(text), ids, 64, &got, &err) == MC_OK, "%s", err.msg);
    CHECK_MSG(got == n && memcmp(ids, want, (size_t)n * sizeof *ids) == 0,
              "\"%s\": got %d ids (second %d)", text, got, got > 1 ? ids[1] : -1);
}
#define WP(text, ...)                                                                              \
    do {                                                                                           \
        const int32_t w_[] = {__VA_ARGS__};                                                        \
        expect_wp(t, text, w_, (int)(sizeof w_ / sizeof w_[0]));                                   \
    } while (0)

static void test_wordpiece(void) {
    /* id = line: <s>0 <pad>1 </s>2 <unk>3 [UNK]4 un5 ##aff6 ##able7 cafe8 ,9 東10 京11 ##s12 a13 <mask>14 */
    put_file("vocab.txt", "<s>\n<pad>\n</"
                          "s>\n<unk>\n[UNK]\nun\n##aff\n##able\ncafe\n,"
                          "\n\xe6\x9d\xb1\n\xe4\xba\xac\n##s\na\n<mask>\n");
    put_file("sentence_bert_config.json", "{\"max_seq_length\": 8}");
    mc_error err = {0};
    mc_wordpiece *t = NULL;
    CHECK_MSG(mc_wp_load(dir, NULL, &t, &err) == MC_OK, "%s", err.msg);
    if (!t) return;
    CHECK(mc_wp_max_length(t) == 8);
    /* greedy longest match: un ##aff ##able */
    WP("unaffable", 0, 5, 6, 7, 2);
    /* lowercase + accent strip (NFD, drop Mn): "Café," -> cafe , */
    WP("Caf\xc3\xa9,", 0, 8, 9, 2);
    /* CJK ideographs are split apart even without spaces */
    WP("\xe6\x9d\xb1\xe4\xba\xac", 0, 10, 11, 2);
    /* a word with an unmatched position is [UNK] as a whole: "unx" */
    WP("unx a", 0, 4, 13, 2);
    /* specials in the text keep their ids; empty text is <s> </s> */
    WP("a<mask>a", 0, 13, 14, 13, 2);
    WP("", 0, 2);
    /* truncation: max 8 = <s> + 6 + </s> */
    WP("a a a a a a a a a a", 0, 13, 13, 13, 13, 13, 13, 2);
    /* a word of 101 characters is [UNK] */
    char w[102];
    memset(w, 'a', 101);
    w[101] = '\0';
    WP(w, 0, 4, 2);
    mc_wp_free(&t);
    CHECK(t == NULL);
}

/* Templates, normalisation and the zero-shot argmax (first index on ties), by hand. */
static void test_api(void) {
    mc_error err = {0};
    char *s = NULL;
    CHECK(mc_text_apply_template("a photo of a {}.", "cat", &s, &err) == MC_OK &&
          strcmp(s, "a photo of a cat.") == 0);
    free(s);
    CHECK(mc_text_apply_template("{} and {} {{x}}", "dog", &s, &err) == MC_OK &&
          strcmp(s, "dog and dog {x}") == 0);
    free(s);
    CHECK(mc_text_apply_template("no hole", "x", &s, &err) == MC_ERR_ARG && s == NULL);
    CHECK(mc_text_apply_template("bad {0}", "x", &s, &err) == MC_ERR_ARG);
    CHECK(mc_text_apply_template(NULL, "as is", &s, &err) == MC_OK && strcmp(s, "as is") == 0);
    free(s);
    float v[4] = {3, 4, 0, 0};
    mc_l2_normalize_rows(v, 2, 2); /* (0.6, 0.8) and the zero row stays zero (norm clamped) */
    CHECK_NEAR(v[0], 0.6, 1e-7);
    CHECK_NEAR(v[1], 0.8, 1e-7);
    CHECK(v[2] == 0 && v[3] == 0);
    /* classes: e0, e1, e0 again (a tie with class 0), and 2*e1 (same cosine as class 1) */
    const float cls[8] = {1, 0, 0, 1, 1, 0, 0, 2};
    const float img[6] = {5, 1, 1, 5, -1, 0};
    int32_t pred[3];
    float sc[12];
    mc_zeroshot_classify(cls, 4, img, 3, 2, pred, sc);
    CHECK(pred[0] == 0 && pred[1] == 1); /* first index among equal cosines */
    CHECK(pred[2] == 1);                 /* (-1, 0): cos 0 with classes 1 and 3, -1 with 0 and 2 */
    CHECK_NEAR(sc[0], 5 / sqrt(26.0), 1e-6);
    CHECK_NEAR(sc[3], 1 / sqrt(26.0), 1e-6);
}

/* issue 16: text files (concept lists, label files) must be UTF-8 without NUL bytes */
static void check_lines(const char *text, size_t len, mc_status want, const char *msg) {
    mc_error e = {0};
    mc_status st = mc_text_check_lines("c.txt", text, len, &e);
    CHECK_MSG(st == want && (!msg || !strcmp(e.msg, msg)), "%s: got %d '%s', want '%s'", text,
              (int)st, e.msg, msg ? msg : "");
}

static void test_check_lines(void) {
    const char ok[] = "red circle\r\nna\xc3\xafve caf\xc3\xa9\n\xe2\x82\xac \xf0\x9f\x99\x82 "
                      "\xf4\x8f\xbf\xbf\n\nlast";
    check_lines(ok, sizeof ok - 1, MC_OK, NULL);
    check_lines("", 0, MC_OK, NULL);
    check_lines("a\nb\xff"
                "c\n",
                6, MC_ERR_FORMAT, "c.txt:2: invalid UTF-8 at byte 2 (0xFF)");
    check_lines("ab\xc0\x80", 4, MC_ERR_FORMAT,
                "c.txt:1: invalid UTF-8 at byte 3 (0xC0)"); /* overlong */
    check_lines("x\n\xed\xa0\x80", 5, MC_ERR_FORMAT,
                "c.txt:2: invalid UTF-8 at byte 1 (0xED)"); /* surrogate */
    check_lines("\xf4\x90\x80\x80", 4, MC_ERR_FORMAT,
                "c.txt:1: invalid UTF-8 at byte 1 (0xF4)"); /* > U+10FFFF */
    check_lines("caf\xc3\nx", 6, MC_ERR_FORMAT,
                "c.txt:1: invalid UTF-8 at byte 4 (0xC3)"); /* cut by \n */
    check_lines("caf\xc3", 4, MC_ERR_FORMAT,
                "c.txt:1: invalid UTF-8 at byte 4 (0xC3)"); /* cut by EOF */
    check_lines("a\nb\nc\0d\n", 8, MC_ERR_FORMAT, "c.txt:3: NUL byte at byte 2");
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/miclip_test_tok_%d", (int)getpid());
    test_check_lines();
    mc_error err = {0};
    mc_mkdir_p(dir, &err);
    test_clip();
    test_wordpiece();
    test_api();
    return TEST_SUMMARY();
}
