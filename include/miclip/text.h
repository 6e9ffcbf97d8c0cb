/* text.h - the text side of miclip: the CLIP byte-level BPE tokenizer, the MPNet WordPiece
 * tokenizer, the CLIP text tower (with its projection) and the MPNet sentence encoder, a
 * text-embedding API with prompt templates and template ensembles, CLIP zero-shot
 * classification, and the HDF5 embedding cache. docs/text.md has the details and the exact
 * reference behaviour each part reproduces; specs/hf-models.md sections 3.4-3.6, 4 and 6 are
 * the facts.
 *
 * Input text is UTF-8 bytes with an explicit length (NUL bytes are ordinary characters).
 * Invalid UTF-8 follows mc_utf8_policy: REPLACE (the default) turns each maximal ill-formed
 * subpart into U+FFFD exactly as Python's bytes.decode("utf-8", "replace"); REJECT fails with
 * MC_ERR_FORMAT naming the byte offset.
 *
 * Ownership: tokenizers and encoders are opaque, created by *_load and released by *_free,
 * which take the handle's address, accept NULL and set it to NULL. Pointer arguments are
 * borrowed for the call. A tokenizer keeps a BPE cache, so one tokenizer (and one encoder)
 * must not be used by two threads at once; separate objects are independent.
 */
#ifndef MICLIP_TEXT_H
#define MICLIP_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "miclip/comm.h"
#include "miclip/status.h"
#include "miclip/store.h"

typedef enum {
    MC_UTF8_REPLACE = 0, /* maximal ill-formed subpart -> U+FFFD (Python "replace") */
    MC_UTF8_REJECT = 1   /* MC_ERR_FORMAT with the byte offset */
} mc_utf8_policy;

/* ---- line-oriented text files (concept lists, label files) -------------------------------
 * Checks that a text file's bytes are valid UTF-8 (Unicode Table 3-7: no overlong forms,
 * surrogates or code points past U+10FFFF; utf8proc) and hold no NUL byte. path labels the
 * message, which names the 1-based line and the 1-based byte within that line:
 *   "concepts.txt:12: invalid UTF-8 at byte 7 (0xFF)"
 *   "concepts.txt:3: NUL byte at byte 1"
 * MC_ERR_FORMAT. A sequence cut off by a newline or by the end of the file is invalid. */
mc_status mc_text_check_lines(const char *path, const char *text, size_t len, mc_error *err);

/* ---- CLIP byte-level BPE ----------------------------------------------------------------
 * Text clean-up before the pre-tokenisation regex (ftfy is not available; see docs/text.md):
 *   OPENAI   (default): NFC (what ftfy.fix_text does to text without mojibake, curly quotes,
 *            ligatures or full-width forms), html.unescape twice, strip, collapse every run of
 *            White_Space to one space, Python's full lowercase (U+0130, final sigma).
 *            This is OpenAI's clip.tokenize with fix_text replaced by NFC.
 *   HF_SLOW: Hugging Face's slow CLIPTokenizer when ftfy is not installed: BERT
 *            BasicTokenizer clean-up (drop NUL, U+FFFD, Cc/Cf controls; whitespace -> space),
 *            spaces around CJK ideographs, NFC, lowercase, whitespace split and rejoin.
 *   HF_FAST: CLIPTokenizerFast's normaliser: NFC, White_Space runs -> " ", lowercase.
 * Then the regex
 *   <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
 * (IGNORECASE) implemented by hand on utf8proc categories, UTF-8 bytes mapped through
 * bytes_to_unicode, BPE with "</w>" on the last symbol, ids from vocab.json. A literal
 * "<|startoftext|>" or "<|endoftext|>" in the text maps to its special id (as OpenAI's). */
typedef enum {
    MC_CLIP_CLEAN_OPENAI = 0,
    MC_CLIP_CLEAN_HF_SLOW = 1,
    MC_CLIP_CLEAN_HF_FAST = 2
} mc_clip_clean;

typedef struct {
    mc_clip_clean clean;
    mc_utf8_policy utf8;
    int context;      /* total length with start and end tokens; 0 = 77 */
    bool no_truncate; /* false (default): keep the first context-1 ids and end with
                       * <|endoftext|> (OpenAI truncate=True, HF truncation=True);
                       * true: a longer text is MC_ERR_ARG (OpenAI's default) */
} mc_clip_tok_opts;

typedef struct mc_clip_tok mc_clip_tok;

/* Loads DIR/vocab.json and DIR/merges.txt. opts may be NULL (defaults). Merges are read as
 * the reference does: line 0 is the header, lines 1..48894 at most are used, rank = line - 1.
 * Errors name the file and line. */
mc_status mc_clip_tok_load(const char *dir, const mc_clip_tok_opts *opts, mc_clip_tok **out,
                           mc_error *err);
mc_status mc_clip_tok_load_files(const char *vocab_json, const char *merges_txt,
                                 const mc_clip_tok_opts *opts, mc_clip_tok **out, mc_error *err);
void mc_clip_tok_free(mc_clip_tok **t);

int32_t mc_clip_tok_vocab_size(const mc_clip_tok *t);
int32_t mc_clip_tok_bos(const mc_clip_tok *t); /* <|startoftext|> (49406 in OpenAI's vocab) */
int32_t mc_clip_tok_eos(const mc_clip_tok *t); /* <|endoftext|> (49407) */
int mc_clip_tok_context(const mc_clip_tok *t);
mc_clip_clean mc_clip_tok_clean(const mc_clip_tok *t);

/* Content ids of text (no start/end tokens, no truncation): *ids is malloc'd (caller frees),
 * *n its length. */
mc_status mc_clip_tok_tokenize(mc_clip_tok *t, const char *text, size_t len, int32_t **ids,
                               size_t *n, mc_error *err);
/* [bos] + ids + [eos], truncated per opts, into ids[context], zero-padded after the end token
 * (OpenAI's padding; the pad never changes the pooled output). *n (may be NULL) receives the
 * count before padding. */
mc_status mc_clip_tok_encode(mc_clip_tok *t, const char *text, size_t len, int32_t *ids, int *n,
                             mc_error *err);
/* The reference's decode: tokens concatenated, bytes_to_unicode reversed, "</w>" -> " ",
 * special tokens written as their text; invalid UTF-8 from partial tokens is replaced.
 * Result malloc'd, NUL-terminated. */
mc_status mc_clip_tok_decode(const mc_clip_tok *t, const int32_t *ids, size_t n, char **out,
                             mc_error *err);

/* ---- MPNet WordPiece (BERT uncased normalisation) ----------------------------------------
 * The fast tokenizer sentence-transformers uses: special-token strings ("<s>", "</s>",
 * "<pad>", "<mask>", "[UNK]") matched in the raw text first; then per segment: drop NUL,
 * U+FFFD and Cc/Cf/Cn/Co/Cs except \t\n\r, whitespace -> space, spaces around CJK ideographs,
 * NFD and drop Mn (strip accents), lowercase; split on White_Space and around punctuation
 * (ASCII punctuation or P*); greedy longest-match WordPiece with "##", a word over 100 code
 * points or with an unmatched position -> [UNK]. Output <s> ids </s>, truncated to max_length
 * including both specials. */
typedef struct {
    mc_utf8_policy utf8;
    int max_length;    /* 0 = sentence_bert_config.json max_seq_length, else tokenizer_config's
                     * model_max_length, else 512 */
    int lowercase;     /* -1 = tokenizer_config do_lower_case (default true), 0/1 force */
    int strip_accents; /* -1 = tokenizer_config strip_accents (null: follow lowercase) */
} mc_wp_opts;

typedef struct mc_wordpiece mc_wordpiece;

/* Loads DIR/vocab.txt (one token per line, id = line index; duplicates rejected) and the
 * optional DIR/tokenizer_config.json and DIR/sentence_bert_config.json. opts may be NULL. */
mc_status mc_wp_load(const char *dir, const mc_wp_opts *opts, mc_wordpiece **out, mc_error *err);
void mc_wp_free(mc_wordpiece **t);
int mc_wp_max_length(const mc_wordpiece *t);
int32_t mc_wp_vocab_size(const mc_wordpiece *t);
/* Ids with specials, at most max_length, into ids[cap] (cap >= max_length); *n the count. */
mc_status mc_wp_encode(mc_wordpiece *t, const char *text, size_t len, int32_t *ids, int cap, int *n,
                       mc_error *err);
/* Word pieces joined with spaces ("##" kept), specials included; malloc'd. For tests. */
mc_status mc_wp_decode(const mc_wordpiece *t, const int32_t *ids, size_t n, char **out,
                       mc_error *err);

/* ---- text encoders ----------------------------------------------------------------------
 * A text encoder is a model folder with its tokenizer:
 *   CLIP  (config.json architectures CLIPModel / model_type clip): text_config (with the
 *         legacy text_config_dict precedence) and class defaults; text_projection; output
 *         = text_embeds [proj] BEFORE normalisation (get_text_features).
 *   MPNet (sentence-transformers layout): post-norm encoder with relative position bias,
 *         mean pooling under the attention mask, L2 normalisation; output = sentence
 *         embedding [hidden], normalised.
 * Sequences of a batch are packed without padding (CLIP: up to the first end token, which
 * the causal mask makes exact; MPNet: each sequence attends only to its own tokens, which is
 * exactly what the padding mask does), so the results do not depend on how texts are
 * batched. */
typedef enum { MC_TEXT_CLIP = 0, MC_TEXT_MPNET = 1 } mc_text_family;

typedef struct mc_text_encoder mc_text_encoder;

/* Loads DIR (config.json, model.safetensors, tokenizer files). Weights are checked by name
 * and shape; F16/BF16 converted to F32. clip_opts may be NULL. */
mc_status mc_text_encoder_load(const char *dir, const mc_clip_tok_opts *clip_opts,
                               mc_text_encoder **out, mc_error *err);
void mc_text_encoder_free(mc_text_encoder **e);

mc_text_family mc_text_encoder_family(const mc_text_encoder *e);
int mc_text_encoder_dim(const mc_text_encoder *e);     /* output width */
int mc_text_encoder_context(const mc_text_encoder *e); /* CLIP 77, MPNet max_length */
/* SHA-256 hex of config.json, model.safetensors and the tokenizer files (the cache key). */
const char *mc_text_encoder_hash(mc_text_encoder *e);        /* NULL if a file cannot be read */
mc_clip_tok *mc_text_encoder_clip_tok(mc_text_encoder *e);   /* NULL for MPNet; borrowed */
mc_wordpiece *mc_text_encoder_wordpiece(mc_text_encoder *e); /* NULL for CLIP; borrowed */

/* Tokenizes n texts into ids[n * context] (CLIP: zero-padded; MPNet: <pad>-padded) and
 * lens[n] (tokens before padding). */
mc_status mc_text_encoder_tokenize(mc_text_encoder *e, const char *const *texts, size_t n,
                                   int32_t *ids, int32_t *lens, mc_error *err);
/* Forward of n tokenized rows ids[n * context] (lens as above) into out[n * dim].
 * CLIP pools at the first <|endoftext|> of each row (the reference's argmax for OpenAI's
 * vocabulary) and fails if a row has none. */
mc_status mc_text_encoder_forward(mc_text_encoder *e, const int32_t *ids, const int32_t *lens,
                                  size_t n, float *out, mc_error *err);

/* Embeds n texts, each put into template tmpl first (NULL = the text itself). A template
 * holds "{}" where the text goes (every "{}" is replaced; "{{" and "}}" are literal braces;
 * any other brace is MC_ERR_ARG, as Python's str.format). Output out[n * dim] as the
 * encoder gives it (CLIP unnormalised, MPNet normalised); normalize = true L2-normalises
 * each row. Batches of 256 texts; a progress bar on rank 0 (a TTY) above 2000 texts. */
mc_status mc_text_embed(mc_text_encoder *e, const char *const *texts, size_t n, const char *tmpl,
                        bool normalize, float *out, mc_error *err);
/* CLIP's ImageNet prompt ensembling: for each text, embed it under every template,
 * L2-normalise each, average, L2-normalise the mean. out[n * dim] (unit rows). */
mc_status mc_text_embed_ensemble(mc_text_encoder *e, const char *const *texts, size_t n,
                                 const char *const *templates, size_t n_templates, float *out,
                                 mc_error *err);
/* Fills a template: *out malloc'd. */
mc_status mc_text_apply_template(const char *tmpl, const char *text, char **out, mc_error *err);

/* Zero-shot classification: for each image row, cosine similarity with every class row
 * (both sides L2-normalised here; zero rows give 0), argmax with the first index on ties.
 * class_emb[n_classes * dim], img_emb[n_img * dim]; pred[n_img]; scores (may be NULL)
 * [n_img * n_classes] receives the cosines. */
void mc_zeroshot_classify(const float *class_emb, int64_t n_classes, const float *img_emb,
                          int64_t n_img, int64_t dim, int32_t *pred, float *scores);

/* ---- embedding cache ----------------------------------------------------------------------
 * Concept sets of tens of thousands of strings are embedded once per (model, template, text)
 * and kept in an HDF5 store (store.h) under
 *   /text_cache/<key>/                  key = SHA-256 of (model hash, template, output width);
 *                                       attributes model_hash, template, dim, n_parts
 *   /text_cache/<key>/part_<k>/sha256   U8  [m, 32]  SHA-256 of each text (before the template)
 *   /text_cache/<key>/part_<k>/embeds   F32 [m, dim] the encoder's output (mc_text_embed with
 *                                       normalize = false)
 * Each call that meets new texts appends one part. The model hash is mc_text_encoder_hash
 * (config, weights and tokenizer files, the CLIP clean-up mode and the context length), so a
 * changed file never reuses old rows.
 *
 * Collective over the store's communicator: every rank passes the same texts and gets every
 * embedding in out[n * dim]. The missing texts are split over the ranks, embedded, gathered
 * and written collectively. *n_computed (may be NULL) receives how many were missing.
 * The store must be open for writing (mc_store_open_or_create). */
mc_status mc_text_embed_cached(const mc_comm *c, mc_store *store, mc_text_encoder *e,
                               const char *const *texts, size_t n, const char *tmpl, float *out,
                               size_t *n_computed, mc_error *err);
/* The same with one_by_one = true: each missing text is embedded in a forward of its own, so
 * its floats depend only on (model, template, text), never on the batch it was computed in,
 * the rank count or which texts an earlier run cached (the GEMMs round differently when their
 * row count changes). Such rows are kept under their own key. For small sets whose numbers
 * are printed to 17 digits (the report's CLIP and MPNet scores). */
mc_status mc_text_embed_cached_ex(const mc_comm *c, mc_store *store, mc_text_encoder *e,
                                  const char *const *texts, size_t n, const char *tmpl,
                                  bool one_by_one, float *out, size_t *n_computed, mc_error *err);

/* Collective. How many of the n texts the cache store (open for reading or writing) lacks for
 * (e, tmpl, one_by_one): 0 means mc_text_embed_cached_ex would write nothing, so a caller can open
 * the store read-only and leave the file untouched. */
mc_status mc_text_cache_missing(const mc_comm *c, mc_store *store, mc_text_encoder *e,
                                const char *const *texts, size_t n, const char *tmpl,
                                bool one_by_one, size_t *missing, mc_error *err);

/* L2-normalises rows in place: x / max(||x||, 1e-12) (torch F.normalize). */
void mc_l2_normalize_rows(float *x, int64_t rows, int64_t dim);

#endif
