/* text_internal.h - helpers shared by the tokenizers in src/text/ (not a public API).
 *
 * - mc_strmap: an open-addressing hash map from byte strings to int32 (vocabularies, the BPE
 *   cache). Keys are copied into the map's own pool.
 * - UTF-8 decoding with the documented invalid-input policy (text.h: mc_utf8_policy), and
 *   encoding of code points.
 * - Code point classes and case mappings with the exact semantics the references use
 *   (Python's str.lower, the `regex` module's \s, Rust's char classes in HF tokenizers).
 * - A growable code point buffer.
 */
#ifndef MICLIP_TEXT_INTERNAL_H
#define MICLIP_TEXT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "miclip/status.h"
#include "miclip/text.h"

/* ---- string -> int32 map ---- */
typedef struct {
    uint32_t *slots; /* index+1 into entries, 0 = empty */
    size_t cap;      /* power of two */
    size_t count;
    struct mc_strmap_entry {
        size_t off; /* into pool */
        uint32_t len;
        uint32_t hash;
        int32_t value;
    } * entries;
    size_t entries_cap;
    char *pool;
    size_t pool_len, pool_cap;
} mc_strmap;

void mc_strmap_init(mc_strmap *m);
void mc_strmap_free(mc_strmap *m);
void mc_strmap_clear(mc_strmap *m);
/* Inserts or finds key. *existing (may be NULL) tells whether it was present; the value is
 * only set when the key is new. Returns false on allocation failure. */
bool mc_strmap_put(mc_strmap *m, const char *key, size_t len, int32_t value, bool *existing);
/* Looks up key; false if absent. */
bool mc_strmap_get(const mc_strmap *m, const char *key, size_t len, int32_t *value);
const char *mc_strmap_key(const mc_strmap *m, size_t i, size_t *len); /* i-th inserted entry */

/* ---- growable code point buffer ---- */
typedef struct {
    uint32_t *cp;
    size_t n, cap;
} mc_cpbuf;
bool mc_cpbuf_push(mc_cpbuf *b, uint32_t c);
bool mc_cpbuf_reserve(mc_cpbuf *b, size_t extra);
void mc_cpbuf_free(mc_cpbuf *b);

/* ---- UTF-8 ---- */
/* Decodes text[len] into out (appended). Invalid sequences: MC_UTF8_REPLACE replaces each
 * maximal ill-formed subpart with U+FFFD (Unicode 15 section 3.9, what Python's
 * bytes.decode("utf-8", "replace") does); MC_UTF8_REJECT fails with MC_ERR_FORMAT naming the
 * byte offset. Surrogates and overlong forms are ill-formed. */
mc_status mc_utf8_decode(const char *text, size_t len, mc_utf8_policy policy, mc_cpbuf *out,
                         mc_error *err);
/* Encodes c (a Unicode scalar value) into buf[4]; returns the byte count. */
int mc_utf8_encode(uint32_t c, char *buf);
/* Encodes cp[n] as a malloc'd NUL-terminated string (*out_len bytes); NULL on failure. */
char *mc_utf8_encode_all(const uint32_t *cp, size_t n, size_t *out_len);

/* ---- normalisation (utf8proc) ---- */
/* Replaces b's contents with their NFC (nfd=false) or NFD (nfd=true) form. */
mc_status mc_unicode_normalize(mc_cpbuf *b, bool nfd, mc_error *err);

/* ---- classes ---- */
bool mc_uc_is_letter(uint32_t c);      /* category L* */
bool mc_uc_is_number(uint32_t c);      /* category N* */
bool mc_uc_is_white_space(uint32_t c); /* the 25 White_Space code points (regex \s, Rust) */
bool mc_uc_is_mn(uint32_t c);          /* category Mn */
bool mc_uc_is_other(uint32_t c);       /* category Cc, Cf, Cn, Co, Cs (Rust is_other) */
bool mc_uc_is_punct(uint32_t c);       /* category P* */
bool mc_uc_is_cjk(uint32_t c);         /* the CJK ideograph ranges of BERT */
/* Python str.isspace (HF slow BasicTokenizer's _is_whitespace uses category Zs plus \t\n\r). */
bool mc_uc_is_zs(uint32_t c);
/* Category Cc or Cf (HF slow BasicTokenizer's _is_control, before its \t\n\r exception). */
bool mc_uc_is_cc_cf(uint32_t c);

/* Full lowercase of cp[n] appended to out. final_sigma applies Python's Final_Sigma context
 * rule (str.lower); without it, U+03A3 maps to U+03C3 always (Rust char::to_lowercase).
 * U+0130 maps to "i" U+0307 in both (SpecialCasing). */
bool mc_uc_lower(const uint32_t *cp, size_t n, bool final_sigma, mc_cpbuf *out);

#endif
