/* bpe_clip.c - the CLIP byte-level BPE tokenizer (vocab.json + merges.txt).
 *
 * Pipeline per text (text.h and docs/text.md give the reference behaviour):
 *   UTF-8 decode (policy) -> clean-up (OPENAI / HF_SLOW / HF_FAST) -> the CLIP regex, by hand
 *   on utf8proc categories -> each piece's UTF-8 bytes -> BPE over symbols -> vocab ids.
 *
 * BPE works on symbol indices, not strings: every string that can occur as a symbol (vocab
 * tokens, both halves and the result of every merge, every byte character with and without
 * "</w>") gets an index at load, and a pair table maps (left, right) to (rank, merged
 * symbol). A symbol that is not in vocab.json maps to the unknown token (<|endoftext|>, as
 * Hugging Face's encoder.get(token, unk) does). The merge loop is the reference's: take the
 * lowest-ranked adjacent pair, merge all its non-overlapping occurrences left to right,
 * repeat. It runs in O(n log n) with a heap of (rank, position) entries, processing each
 * rank's occurrences as one round, which gives exactly the reference's order.
 */
#include <stdlib.h>
#include <string.h>

#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/json.h"
#include "text_internal.h"

#define MC_CLIP_MAX_MERGES (49152 - 256 - 2) /* lines 1..48894 of merges.txt, as the reference */
#define MC_CLIP_CACHE_MAX_PIECE 128          /* pieces longer than this (bytes) are not cached */
#define MC_CLIP_CACHE_MAX_IDS (1u << 22)     /* the cache is cleared when it holds more ids */
#define MC_CLIP_MAX_FILE (64u << 20)

typedef struct {
    uint64_t key; /* (left << 32) | right, +1 so 0 means empty */
    int32_t rank, merged;
} pair_slot;

typedef struct {
    int32_t rank, pos;
} heap_ent;

struct mc_clip_tok {
    mc_clip_tok_opts opts;
    mc_strmap syms;  /* symbol string (bytes_to_unicode form, UTF-8) -> symbol index */
    int32_t *sym_id; /* symbol index -> vocab id, or -1 */
    size_t n_syms, sym_cap;
    int32_t vocab_size;
    int32_t *id_sym; /* vocab id -> symbol index (-1 for gaps) */
    pair_slot *pairs;
    size_t pair_cap, n_pairs;
    int32_t byte_sym[256], byte_sym_eow[256];
    uint32_t byte_char[256]; /* bytes_to_unicode */
    int16_t char_byte[512];  /* its inverse for code points < 512, -1 elsewhere */
    int32_t bos, eos, unk;
    /* BPE cache: piece bytes -> offset into cache_ids, where [count, ids...] live */
    mc_strmap cache;
    int32_t *cache_ids;
    size_t cache_len, cache_cap;
    /* per-call workspaces */
    int32_t *w_sym, *w_next, *w_prev;
    heap_ent *w_heap, *w_round;
    size_t w_cap;
    mc_cpbuf cp, tmp;
};

/* ---- symbols and pairs ----------------------------------------------------------------- */

static bool sym_get_or_add(mc_clip_tok *t, const char *s, size_t len, int32_t *out) {
    bool existing;
    if (!mc_strmap_put(&t->syms, s, len, (int32_t)t->n_syms, &existing)) return false;
    if (existing) return mc_strmap_get(&t->syms, s, len, out);
    if (t->n_syms == t->sym_cap) {
        size_t cap = t->sym_cap ? t->sym_cap * 2 : 1024;
        int32_t *p = realloc(t->sym_id, cap * sizeof *p);
        if (!p) return false;
        t->sym_id = p;
        t->sym_cap = cap;
    }
    t->sym_id[t->n_syms] = -1;
    *out = (int32_t)t->n_syms++;
    return true;
}

static uint64_t pair_hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return k;
}

static bool pair_put(mc_clip_tok *t, int32_t a, int32_t b, int32_t rank, int32_t merged) {
    if ((t->n_pairs + 1) * 2 > t->pair_cap) {
        size_t cap = t->pair_cap ? t->pair_cap * 2 : 1 << 16;
        pair_slot *p = calloc(cap, sizeof *p);
        if (!p) return false;
        for (size_t i = 0; i < t->pair_cap; i++) {
            if (!t->pairs[i].key) continue;
            size_t k = pair_hash(t->pairs[i].key) & (cap - 1);
            while (p[k].key) k = (k + 1) & (cap - 1);
            p[k] = t->pairs[i];
        }
        free(t->pairs);
        t->pairs = p;
        t->pair_cap = cap;
    }
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    size_t k = pair_hash(key) & (t->pair_cap - 1);
    while (t->pairs[k].key && t->pairs[k].key != key) k = (k + 1) & (t->pair_cap - 1);
    if (!t->pairs[k].key) t->n_pairs++;
    /* A repeated merge line takes its later rank: the reference builds dict(zip(merges, ranks)). */
    t->pairs[k] = (pair_slot){key, rank, merged};
    return true;
}

static const pair_slot *pair_get(const mc_clip_tok *t, int32_t a, int32_t b) {
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    size_t k = pair_hash(key) & (t->pair_cap - 1);
    while (t->pairs[k].key) {
        if (t->pairs[k].key == key) return &t->pairs[k];
        k = (k + 1) & (t->pair_cap - 1);
    }
    return NULL;
}

/* ---- loading --------------------------------------------------------------------------- */

static void bytes_to_unicode(uint32_t *map) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        bool printable =
            (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        map[b] = printable ? (uint32_t)b : (uint32_t)(256 + n++);
    }
}

static mc_status load_vocab(mc_clip_tok *t, const char *path, mc_error *err) {
    json_t *root = NULL;
    MC_TRY(mc_json_load(path, false, &root, err));
    mc_status s = MC_OK;
    int64_t max_id = -1;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 ||
            json_integer_value(val) > INT32_MAX - 1) {
            s = MC_FAIL(err, MC_ERR_FORMAT,
                        "%s: token \"%.40s\" has no valid id (a non-negative integer)", path, key);
            goto done;
        }
        int32_t sym;
        /* jansson keys are NUL-terminated; a token with an embedded NUL cannot occur (no byte
         * maps to U+0000 under bytes_to_unicode). */
        if (!sym_get_or_add(t, key, strlen(key), &sym)) {
            s = MC_FAIL(err, MC_ERR_NOMEM, "%s: out of memory", path);
            goto done;
        }
        t->sym_id[sym] = (int32_t)json_integer_value(val);
        if (json_integer_value(val) > max_id) max_id = json_integer_value(val);
    }
    if (max_id < 0) {
        s = MC_FAIL(err, MC_ERR_FORMAT, "%s: the vocabulary is empty", path);
        goto done;
    }
    t->vocab_size = (int32_t)(max_id + 1);
    t->id_sym = mc_alloc_array((size_t)t->vocab_size, sizeof *t->id_sym);
    if (!t->id_sym) {
        s = MC_FAIL(err, MC_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    for (int32_t i = 0; i < t->vocab_size; i++) t->id_sym[i] = -1;
    for (size_t i = 0; i < t->n_syms; i++) {
        int32_t id = t->sym_id[i];
        if (t->id_sym[id] >= 0) {
            size_t l1, l2;
            const char *k1 = mc_strmap_key(&t->syms, (size_t)t->id_sym[id], &l1);
            const char *k2 = mc_strmap_key(&t->syms, i, &l2);
            s = MC_FAIL(err, MC_ERR_FORMAT, "%s: id %d is used twice (\"%.*s\" and \"%.*s\")", path,
                        id, (int)(l1 > 40 ? 40 : l1), k1, (int)(l2 > 40 ? 40 : l2), k2);
            goto done;
        }
        t->id_sym[id] = (int32_t)i;
    }
    if (!mc_strmap_get(&t->syms, "<|startoftext|>", 15, &t->bos) ||
        !mc_strmap_get(&t->syms, "<|endoftext|>", 13, &t->eos)) {
        s = MC_FAIL(err, MC_ERR_FORMAT,
                    "%s: \"<|startoftext|>\" or \"<|endoftext|>\" is missing; HINT: is this a CLIP "
                    "vocab.json?",
                    path);
        goto done;
    }
    t->bos = t->sym_id[t->bos];
    t->eos = t->sym_id[t->eos];
    t->unk = t->eos;
done:
    json_decref(root);
    return s;
}

static mc_status load_merges(mc_clip_tok *t, const char *path, mc_error *err) {
    char *buf = NULL;
    size_t len = 0;
    MC_TRY(mc_read_file(path, MC_CLIP_MAX_FILE, &buf, &len, err));
    mc_status s = MC_OK;
    /* The reference: read().strip().split("\n")[1 : 48895]. */
    size_t b = 0, e = len;
    while (b < e && (buf[b] == ' ' || (buf[b] >= '\t' && buf[b] <= '\r'))) b++;
    while (e > b && (buf[e - 1] == ' ' || (buf[e - 1] >= '\t' && buf[e - 1] <= '\r'))) e--;
    size_t line_no = 0, pos = b;
    char *cat = NULL;
    size_t cat_cap = 0;
    while (pos < e && line_no <= MC_CLIP_MAX_MERGES) {
        size_t end = pos;
        while (end < e && buf[end] != '\n') end++;
        if (line_no > 0) {
            /* merge.split(): two fields separated by ASCII whitespace */
            const char *f[3];
            size_t fl[3];
            int nf = 0;
            size_t i = pos;
            while (i < end) {
                while (i < end && (buf[i] == ' ' || (buf[i] >= '\t' && buf[i] <= '\r'))) i++;
                if (i >= end) break;
                size_t j = i;
                while (j < end && !(buf[j] == ' ' || (buf[j] >= '\t' && buf[j] <= '\r'))) j++;
                if (nf < 3) {
                    f[nf] = buf + i;
                    fl[nf] = j - i;
                }
                nf++;
                i = j;
            }
            if (nf != 2) {
                s = MC_FAIL(
                    err, MC_ERR_FORMAT,
                    "%s line %zu: expected two symbols separated by a space, found %d fields", path,
                    line_no + 1, nf);
                goto done;
            }
            if (fl[0] + fl[1] + 1 > cat_cap) {
                cat_cap = (fl[0] + fl[1] + 1) * 2;
                char *p = realloc(cat, cat_cap);
                if (!p) {
                    s = MC_FAIL(err, MC_ERR_NOMEM, "%s: out of memory", path);
                    goto done;
                }
                cat = p;
            }
            memcpy(cat, f[0], fl[0]);
            memcpy(cat + fl[0], f[1], fl[1]);
            int32_t a, c, m;
            if (!sym_get_or_add(t, f[0], fl[0], &a) || !sym_get_or_add(t, f[1], fl[1], &c) ||
                !sym_get_or_add(t, cat, fl[0] + fl[1], &m) ||
                !pair_put(t, a, c, (int32_t)(line_no - 1), m)) {
                s = MC_FAIL(err, MC_ERR_NOMEM, "%s: out of memory", path);
                goto done;
            }
        }
        line_no++;
        pos = end + 1;
    }
    if (line_no == 0)
        s = MC_FAIL(err, MC_ERR_FORMAT, "%s: empty (expected a '#version' header line and merges)",
                    path);
done:
    free(cat);
    free(buf);
    return s;
}

mc_status mc_clip_tok_load_files(const char *vocab_json, const char *merges_txt,
                                 const mc_clip_tok_opts *opts, mc_clip_tok **out, mc_error *err) {
    *out = NULL;
    mc_clip_tok *t = calloc(1, sizeof *t);
    if (!t) return MC_FAIL(err, MC_ERR_NOMEM, "tokenizer: out of memory");
    if (opts) t->opts = *opts;
    if (t->opts.context == 0) t->opts.context = 77;
    mc_status s = MC_OK;
    if (t->opts.context < 2 || t->opts.context > 1 << 20 ||
        (unsigned)t->opts.clean > MC_CLIP_CLEAN_HF_FAST ||
        (unsigned)t->opts.utf8 > MC_UTF8_REJECT) {
        s = MC_FAIL(err, MC_ERR_ARG,
                    "CLIP tokenizer options: context %d (need 2..1048576), clean %d, utf8 %d",
                    t->opts.context, (int)t->opts.clean, (int)t->opts.utf8);
        goto fail;
    }
    mc_strmap_init(&t->syms);
    mc_strmap_init(&t->cache);
    if ((s = load_vocab(t, vocab_json, err)) != MC_OK) goto fail;
    if ((s = load_merges(t, merges_txt, err)) != MC_OK) goto fail;
    bytes_to_unicode(t->byte_char);
    for (int i = 0; i < 512; i++) t->char_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        t->char_byte[t->byte_char[b]] = (int16_t)b;
        char tmp[12];
        int n = mc_utf8_encode(t->byte_char[b], tmp);
        memcpy(tmp + n, "</w>", 4);
        if (!sym_get_or_add(t, tmp, (size_t)n, &t->byte_sym[b]) ||
            !sym_get_or_add(t, tmp, (size_t)n + 4, &t->byte_sym_eow[b])) {
            s = MC_FAIL(err, MC_ERR_NOMEM, "tokenizer: out of memory");
            goto fail;
        }
    }
    if (!t->pairs && !pair_put(t, 0, 0, 0, 0)) { /* an empty merges file: keep the table valid */
        s = MC_FAIL(err, MC_ERR_NOMEM, "tokenizer: out of memory");
        goto fail;
    }
    *out = t;
    return MC_OK;
fail:
    mc_clip_tok_free(&t);
    return s;
}

mc_status mc_clip_tok_load(const char *dir, const mc_clip_tok_opts *opts, mc_clip_tok **out,
                           mc_error *err) {
    char v[4096], m[4096];
    if (!mc_path_join(v, sizeof v, dir, "vocab.json") ||
        !mc_path_join(m, sizeof m, dir, "merges.txt"))
        return MC_FAIL(err, MC_ERR_ARG, "%s: path too long", dir);
    return mc_clip_tok_load_files(v, m, opts, out, err);
}

void mc_clip_tok_free(mc_clip_tok **tp) {
    if (!tp || !*tp) return;
    mc_clip_tok *t = *tp;
    mc_strmap_free(&t->syms);
    mc_strmap_free(&t->cache);
    free(t->sym_id);
    free(t->id_sym);
    free(t->pairs);
    free(t->cache_ids);
    free(t->w_sym);
    free(t->w_next);
    free(t->w_prev);
    free(t->w_heap);
    free(t->w_round);
    mc_cpbuf_free(&t->cp);
    mc_cpbuf_free(&t->tmp);
    free(t);
    *tp = NULL;
}

int32_t mc_clip_tok_vocab_size(const mc_clip_tok *t) { return t->vocab_size; }
int32_t mc_clip_tok_bos(const mc_clip_tok *t) { return t->bos; }
int32_t mc_clip_tok_eos(const mc_clip_tok *t) { return t->eos; }
int mc_clip_tok_context(const mc_clip_tok *t) { return t->opts.context; }
mc_clip_clean mc_clip_tok_clean(const mc_clip_tok *t) { return t->opts.clean; }

/* ---- clean-up -------------------------------------------------------------------------- */

#include "html_entities.inc"

static int entity_cmp(const void *k, const void *e) {
    return strcmp((const char *)k, ((const struct mc_html_entity *)e)->name);
}

static const struct mc_html_entity *entity_find(const char *name) {
    return bsearch(name, mc_html5, sizeof mc_html5 / sizeof mc_html5[0], sizeof mc_html5[0],
                   entity_cmp);
}

static bool is_ascii_digit(uint32_t c) { return c >= '0' && c <= '9'; }
static bool is_ascii_hex(uint32_t c) {
    return is_ascii_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Python's html.unescape on in[n], appended to out: the pattern
 * &(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?) and its replacement rules. */
static bool html_unescape(const uint32_t *in, size_t n, mc_cpbuf *out) {
    if (!mc_cpbuf_reserve(out, n)) return false;
    size_t i = 0;
    while (i < n) {
        uint32_t c = in[i];
        if (c != '&') {
            if (!mc_cpbuf_push(out, c)) return false;
            i++;
            continue;
        }
        size_t j = i + 1;
        if (j < n && in[j] == '#') {
            bool hex = j + 1 < n && (in[j + 1] == 'x' || in[j + 1] == 'X');
            size_t d0 = j + 1 + (hex ? 1 : 0), d = d0;
            /* #[0-9]+ is tried first: "&#x" only takes the hex branch when no decimal digit
             * follows '#', which is always the case since 'x' is not a digit. */
            while (d < n && (hex ? is_ascii_hex(in[d]) : is_ascii_digit(in[d]))) d++;
            if (d == d0) { /* no digits: no match at this '&' */
                if (!mc_cpbuf_push(out, c)) return false;
                i++;
                continue;
            }
            size_t end = d < n && in[d] == ';' ? d + 1 : d;
            /* int(...) of arbitrarily many digits: saturate above 0x10FFFF. */
            uint64_t num = 0;
            for (size_t k = d0; k < d; k++) {
                uint32_t v = is_ascii_digit(in[k]) ? in[k] - '0' : (in[k] | 0x20) - 'a' + 10;
                num = num * (hex ? 16 : 10) + v;
                if (num > 0x10FFFF) num = 0x110000;
            }
            i = end;
            bool done = false;
            for (size_t k = 0;
                 k < sizeof mc_html_invalid_charrefs / sizeof mc_html_invalid_charrefs[0]; k++) {
                if (mc_html_invalid_charrefs[k][0] == num) {
                    if (!mc_cpbuf_push(out, mc_html_invalid_charrefs[k][1])) return false;
                    done = true;
                    break;
                }
            }
            if (done) continue;
            if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) {
                if (!mc_cpbuf_push(out, 0xFFFD)) return false;
                continue;
            }
            for (size_t k = 0;
                 k < sizeof mc_html_invalid_codepoints / sizeof mc_html_invalid_codepoints[0]; k++)
                if (mc_html_invalid_codepoints[k] == num) done = true;
            if (!done && !mc_cpbuf_push(out, (uint32_t)num)) return false;
            continue;
        }
        /* named: [^\t\n\f <&#;]{1,32};? */
        size_t k = j;
        while (k < n && k - j < 32 && in[k] != '\t' && in[k] != '\n' && in[k] != '\f' &&
               in[k] != ' ' && in[k] != '<' && in[k] != '&' && in[k] != '#' && in[k] != ';')
            k++;
        if (k == j) {
            if (!mc_cpbuf_push(out, c)) return false;
            i++;
            continue;
        }
        size_t end = k < n && in[k] == ';' ? k + 1 : k;
        /* s = in[j, end); the table's names are ASCII, so a non-ASCII s never matches whole,
         * but a prefix of it still can. */
        char name[40];
        size_t sl = end - j, ascii = 0;
        while (ascii < sl && in[j + ascii] < 0x80) {
            name[ascii] = (char)in[j + ascii];
            ascii++;
        }
        const struct mc_html_entity *ent = NULL;
        size_t used = 0;
        if (ascii == sl) {
            name[sl] = '\0';
            ent = entity_find(name);
            used = sl;
        }
        /* for x in range(len(s)-1, 1, -1): if s[:x] in html5: longest prefix of length >= 2 */
        for (size_t x = sl - 1; !ent && x >= 2 && sl >= 3; x--) {
            if (x > ascii) continue;
            name[x] = '\0';
            ent = entity_find(name);
            used = x;
        }
        if (!ent) { /* '&' + s unchanged */
            for (size_t q = i; q < end; q++)
                if (!mc_cpbuf_push(out, in[q])) return false;
            i = end;
            continue;
        }
        if (!mc_cpbuf_push(out, ent->cp[0])) return false;
        if (ent->cp[1] && !mc_cpbuf_push(out, ent->cp[1])) return false;
        for (size_t q = j + used; q < end; q++)
            if (!mc_cpbuf_push(out, in[q])) return false;
        i = end;
    }
    return true;
}

static bool py_isspace(uint32_t c) { return mc_uc_is_white_space(c) || (c >= 0x1C && c <= 0x1F); }

/* Collapses runs of White_Space to one ' ' (regex \s+), then strips str.isspace characters. */
static bool whitespace_clean(const uint32_t *in, size_t n, mc_cpbuf *out) {
    size_t b = 0, e = n;
    while (b < e && py_isspace(in[b])) b++;
    while (e > b && py_isspace(in[e - 1])) e--;
    size_t start = out->n;
    for (size_t i = b; i < e; i++) {
        if (mc_uc_is_white_space(in[i])) {
            if (out->n == start || out->cp[out->n - 1] != ' ' || !mc_uc_is_white_space(in[i - 1]))
                if (!mc_cpbuf_push(out, ' ')) return false;
            while (i + 1 < e && mc_uc_is_white_space(in[i + 1])) i++;
        } else if (!mc_cpbuf_push(out, in[i])) {
            return false;
        }
    }
    /* strip again after collapsing (a U+001C next to a collapsed space, say) */
    size_t k = start;
    while (k < out->n && py_isspace(out->cp[k])) k++;
    if (k > start) {
        memmove(out->cp + start, out->cp + k, (out->n - k) * sizeof *out->cp);
        out->n -= k - start;
    }
    while (out->n > start && py_isspace(out->cp[out->n - 1])) out->n--;
    return true;
}

/* The clean-up of opts.clean on t->cp, leaving the result in t->cp. */
static mc_status clean_text(mc_clip_tok *t, mc_error *err) {
    mc_cpbuf *a = &t->cp, *b = &t->tmp;
    mc_status s;
    b->n = 0;
    switch (t->opts.clean) {
    case MC_CLIP_CLEAN_OPENAI:
        if ((s = mc_unicode_normalize(a, false, err)) != MC_OK) return s;
        if (!html_unescape(a->cp, a->n, b)) goto nomem;
        a->n = 0;
        if (!html_unescape(b->cp, b->n, a)) goto nomem;
        /* .strip() then whitespace_clean: whitespace_clean strips too, so one pass does both */
        b->n = 0;
        if (!whitespace_clean(a->cp, a->n, b)) goto nomem;
        a->n = 0;
        if (!mc_uc_lower(b->cp, b->n, true, a)) goto nomem;
        return MC_OK;
    case MC_CLIP_CLEAN_HF_FAST:
        if ((s = mc_unicode_normalize(a, false, err)) != MC_OK) return s;
        for (size_t i = 0; i < a->n; i++) {
            if (mc_uc_is_white_space(a->cp[i])) {
                if (!mc_cpbuf_push(b, ' ')) goto nomem;
                while (i + 1 < a->n && mc_uc_is_white_space(a->cp[i + 1])) i++;
            } else if (!mc_cpbuf_push(b, a->cp[i])) {
                goto nomem;
            }
        }
        a->n = 0;
        if (!mc_uc_lower(b->cp, b->n, false, a)) goto nomem;
        return MC_OK;
    case MC_CLIP_CLEAN_HF_SLOW:
        /* BasicTokenizer._clean_text and _tokenize_chinese_chars */
        for (size_t i = 0; i < a->n; i++) {
            uint32_t c = a->cp[i];
            bool ws = c == ' ' || c == '\t' || c == '\n' || c == '\r' || mc_uc_is_zs(c);
            if (c == 0 || c == 0xFFFD || (!ws && mc_uc_is_other(c))) continue;
            if (ws) c = ' ';
            if (mc_uc_is_cjk(c)) {
                if (!mc_cpbuf_push(b, ' ') || !mc_cpbuf_push(b, c) || !mc_cpbuf_push(b, ' '))
                    goto nomem;
            } else if (!mc_cpbuf_push(b, c)) {
                goto nomem;
            }
        }
        if ((s = mc_unicode_normalize(b, false, err)) != MC_OK) return s;
        /* whitespace_tokenize (str.split), lower each token, " ".join */
        a->n = 0;
        for (size_t i = 0; i < b->n;) {
            while (i < b->n && py_isspace(b->cp[i])) i++;
            size_t j = i;
            while (j < b->n && !py_isspace(b->cp[j])) j++;
            if (j > i) {
                if (a->n && !mc_cpbuf_push(a, ' ')) goto nomem;
                if (!mc_uc_lower(b->cp + i, j - i, true, a)) goto nomem;
            }
            i = j;
        }
        return MC_OK;
    }
    return MC_FAIL(err, MC_ERR_INTERNAL, "unknown clean-up mode %d", (int)t->opts.clean);
nomem:
    return MC_FAIL(err, MC_ERR_NOMEM, "text clean-up: out of memory");
}

/* ---- BPE ------------------------------------------------------------------------------- */

static bool heap_less(heap_ent a, heap_ent b) {
    return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos);
}

static void heap_push(heap_ent *h, size_t *n, heap_ent e) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(e, h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
}

static heap_ent heap_pop(heap_ent *h, size_t *n) {
    heap_ent top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        heap_ent best = last;
        if (l < *n && heap_less(h[l], best)) {
            m = l;
            best = h[l];
        }
        if (r < *n && heap_less(h[r], best)) {
            m = r;
        }
        if (m == i) break;
        h[i] = h[m];
        i = m;
    }
    if (*n) h[i] = last;
    return top;
}

static bool ws_reserve(mc_clip_tok *t, size_t n) {
    if (n <= t->w_cap) return true;
    size_t cap = n < 64 ? 64 : n * 2, hcap;
    if (!mc_size_mul(cap, 3, &hcap)) return false; /* heap: initial pairs + 2 per merge */
    int32_t *a = realloc(t->w_sym, cap * sizeof *a);
    if (a) t->w_sym = a;
    int32_t *b = realloc(t->w_next, cap * sizeof *b);
    if (b) t->w_next = b;
    int32_t *c = realloc(t->w_prev, cap * sizeof *c);
    if (c) t->w_prev = c;
    heap_ent *h = mc_alloc_array(hcap, sizeof *h), *r = mc_alloc_array(hcap, sizeof *r);
    if (!a || !b || !c || !h || !r) {
        free(h);
        free(r);
        return false;
    }
    free(t->w_heap);
    free(t->w_round);
    t->w_heap = h;
    t->w_round = r;
    t->w_cap = cap;
    return true;
}

/* BPE of one piece's bytes; appends vocab ids to ids (growable). */
static bool bpe_piece(mc_clip_tok *t, const unsigned char *p, size_t n, int32_t **ids, size_t *nids,
                      size_t *cap) {
    if (n == 0) return true;
    if (!ws_reserve(t, n)) return false;
    int32_t *sym = t->w_sym, *next = t->w_next, *prev = t->w_prev;
    heap_ent *heap = t->w_heap;
    size_t nh = 0;
    for (size_t i = 0; i < n; i++) {
        sym[i] = i + 1 == n ? t->byte_sym_eow[p[i]] : t->byte_sym[p[i]];
        next[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
        prev[i] = (int32_t)i - 1;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        const pair_slot *ps = pair_get(t, sym[i], sym[i + 1]);
        if (ps) heap_push(heap, &nh, (heap_ent){ps->rank, (int32_t)i});
    }
    /* Merged-away positions have sym -1. An entry is current when its position is alive, has
     * a right neighbour, and the pair there still has the entry's rank (symbols only grow, so
     * a changed pair can never come back with the same rank at the same place). Each round
     * takes every entry of the lowest rank at once, in position order, before any pair the
     * round creates is looked at: the reference finishes all occurrences of one pair before
     * it recomputes the minimum. No round creates a new occurrence of its own pair. */
    heap_ent *round = t->w_round;
    while (nh) {
        size_t nr = 0;
        int32_t rank = heap[0].rank;
        while (nh && heap[0].rank == rank) round[nr++] = heap_pop(heap, &nh);
        for (size_t r = 0; r < nr; r++) {
            int32_t i = round[r].pos;
            if (sym[i] < 0 || next[i] < 0) continue;
            const pair_slot *ps = pair_get(t, sym[i], sym[next[i]]);
            if (!ps || ps->rank != rank) continue;
            int32_t j = next[i];
            sym[i] = ps->merged;
            next[i] = next[j];
            if (next[j] >= 0) prev[next[j]] = i;
            sym[j] = -1;
            if (prev[i] >= 0) {
                const pair_slot *q = pair_get(t, sym[prev[i]], sym[i]);
                if (q) heap_push(heap, &nh, (heap_ent){q->rank, prev[i]});
            }
            if (next[i] >= 0) {
                const pair_slot *q = pair_get(t, sym[i], sym[next[i]]);
                if (q) heap_push(heap, &nh, (heap_ent){q->rank, i});
            }
        }
    }
    for (int32_t i = 0; i >= 0; i = next[i]) {
        if (*nids == *cap) {
            size_t c2 = *cap ? *cap * 2 : 64;
            int32_t *q = realloc(*ids, c2 * sizeof *q);
            if (!q) return false;
            *ids = q;
            *cap = c2;
        }
        int32_t id = t->sym_id[sym[i]];
        (*ids)[(*nids)++] = id >= 0 ? id : t->unk;
    }
    return true;
}

/* BPE through the cache. */
static bool bpe_cached(mc_clip_tok *t, const unsigned char *p, size_t n, int32_t **ids,
                       size_t *nids, size_t *cap) {
    int32_t off;
    if (n <= MC_CLIP_CACHE_MAX_PIECE && mc_strmap_get(&t->cache, (const char *)p, n, &off)) {
        int32_t cnt = t->cache_ids[off];
        size_t need;
        if (!mc_size_add(*nids, (size_t)cnt, &need)) return false;
        if (need > *cap) {
            size_t c2 = need * 2;
            int32_t *q = realloc(*ids, c2 * sizeof *q);
            if (!q) return false;
            *ids = q;
            *cap = c2;
        }
        memcpy(*ids + *nids, t->cache_ids + off + 1, (size_t)cnt * sizeof(int32_t));
        *nids += (size_t)cnt;
        return true;
    }
    size_t before = *nids;
    if (!bpe_piece(t, p, n, ids, nids, cap)) return false;
    if (n > MC_CLIP_CACHE_MAX_PIECE) return true;
    size_t cnt = *nids - before;
    if (t->cache_len + cnt + 1 > MC_CLIP_CACHE_MAX_IDS) { /* full: start over */
        mc_strmap_clear(&t->cache);
        t->cache_len = 0;
    }
    if (t->cache_len + cnt + 1 > t->cache_cap) {
        size_t c2 = (t->cache_len + cnt + 1) * 2;
        int32_t *q = realloc(t->cache_ids, c2 * sizeof *q);
        if (!q) return true; /* the cache is an optimisation only */
        t->cache_ids = q;
        t->cache_cap = c2;
    }
    if (!mc_strmap_put(&t->cache, (const char *)p, n, (int32_t)t->cache_len, NULL)) return true;
    t->cache_ids[t->cache_len] = (int32_t)cnt;
    memcpy(t->cache_ids + t->cache_len + 1, *ids + before, cnt * sizeof(int32_t));
    t->cache_len += cnt + 1;
    return true;
}

/* ---- the pre-tokenisation regex ------------------------------------------------------- */

/* Simple case folding of the characters the literal alternatives use (IGNORECASE). */
static uint32_t fold(uint32_t c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c == 0x17F) return 's'; /* LATIN SMALL LETTER LONG S folds to 's' */
    return c;
}

static bool match_lit(const uint32_t *cp, size_t n, size_t i, const char *lit) {
    size_t k = 0;
    for (; lit[k]; k++)
        if (i + k >= n || fold(cp[i + k]) != (unsigned char)lit[k]) return false;
    return true;
}

/* U+0345 COMBINING GREEK YPOGEGRAMMENI matches no alternative under IGNORECASE in the `regex`
 * module (its case partner U+03B9 is a letter, so the negated class rejects it, yet the
 * letter class does not accept it): it is skipped like whitespace. */
static bool is_skipped(uint32_t c) { return mc_uc_is_white_space(c) || c == 0x345; }

/* Runs the tokenizer on text, appending content ids; stops early once more than `limit`
 * ids exist (SIZE_MAX: no limit). */
static mc_status tokenize_into(mc_clip_tok *t, const char *text, size_t len, size_t limit,
                               int32_t **ids, size_t *nids, size_t *cap, mc_error *err) {
    t->cp.n = 0;
    MC_TRY(mc_utf8_decode(text, len, t->opts.utf8, &t->cp, err));
    MC_TRY(clean_text(t, err));
    const uint32_t *cp = t->cp.cp;
    size_t n = t->cp.n;
    unsigned char *bytes = NULL;
    size_t bcap = 0;
    mc_status s = MC_OK;
    static const char *const contractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    size_t i = 0;
    while (i < n && *nids <= limit) {
        uint32_t c = cp[i];
        size_t j;
        int32_t special = -1;
        if (c == '<' && match_lit(cp, n, i, "<|startoftext|>")) {
            special = t->bos;
            j = i + 15;
        } else if (c == '<' && match_lit(cp, n, i, "<|endoftext|>")) {
            special = t->eos;
            j = i + 13;
        } else if (c == '\'') {
            j = i;
            for (size_t k = 0; k < 7; k++) {
                if (match_lit(cp, n, i, contractions[k])) {
                    j = i + strlen(contractions[k]);
                    break;
                }
            }
            if (j == i) { /* an apostrophe that starts a run of other characters */
                j = i + 1;
                while (j < n && !is_skipped(cp[j]) && !mc_uc_is_letter(cp[j]) &&
                       !mc_uc_is_number(cp[j]))
                    j++;
            }
        } else if (mc_uc_is_letter(c)) {
            j = i + 1;
            while (j < n && mc_uc_is_letter(cp[j])) j++;
        } else if (mc_uc_is_number(c)) {
            j = i + 1; /* [\p{N}]: one digit per piece */
        } else if (is_skipped(c)) {
            i++;
            continue;
        } else {
            j = i + 1;
            while (j < n && !is_skipped(cp[j]) && !mc_uc_is_letter(cp[j]) &&
                   !mc_uc_is_number(cp[j]))
                j++;
        }
        if (special >= 0) {
            if (*nids == *cap) {
                size_t c2 = *cap ? *cap * 2 : 64;
                int32_t *q = realloc(*ids, c2 * sizeof *q);
                if (!q) {
                    s = MC_FAIL(err, MC_ERR_NOMEM, "tokenizer: out of memory");
                    break;
                }
                *ids = q;
                *cap = c2;
            }
            (*ids)[(*nids)++] = special;
        } else {
            size_t need = (j - i) * 4;
            if (need > bcap) {
                unsigned char *q = realloc(bytes, need);
                if (!q) {
                    s = MC_FAIL(err, MC_ERR_NOMEM, "tokenizer: out of memory");
                    break;
                }
                bytes = q;
                bcap = need;
            }
            size_t nb = 0;
            for (size_t k = i; k < j; k++) nb += (size_t)mc_utf8_encode(cp[k], (char *)bytes + nb);
            if (!bpe_cached(t, bytes, nb, ids, nids, cap)) {
                s = MC_FAIL(err, MC_ERR_NOMEM, "tokenizer: out of memory");
                break;
            }
        }
        i = j;
    }
    free(bytes);
    return s;
}

mc_status mc_clip_tok_tokenize(mc_clip_tok *t, const char *text, size_t len, int32_t **ids,
                               size_t *n, mc_error *err) {
    *ids = NULL;
    *n = 0;
    size_t cap = 0;
    mc_status s = tokenize_into(t, text, len, SIZE_MAX, ids, n, &cap, err);
    if (s != MC_OK) {
        free(*ids);
        *ids = NULL;
        *n = 0;
    }
    return s;
}

mc_status mc_clip_tok_encode(mc_clip_tok *t, const char *text, size_t len, int32_t *out, int *n_out,
                             mc_error *err) {
    int ctx = t->opts.context;
    size_t room = (size_t)ctx - 2, n = 0, cap = 0;
    int32_t *ids = NULL;
    /* Only the first ctx-2 content ids are kept, so stop once there are more. */
    mc_status s = tokenize_into(t, text, len, room, &ids, &n, &cap, err);
    if (s != MC_OK) {
        free(ids);
        return s;
    }
    if (n > room && t->opts.no_truncate) {
        free(ids);
        return MC_FAIL(
            err, MC_ERR_ARG,
            "text is longer than the context length %d (more than %zu tokens): \"%.60s%s\"", ctx,
            room, text, len > 60 ? "..." : "");
    }
    size_t keep = n < room ? n : room;
    out[0] = t->bos;
    if (keep) memcpy(out + 1, ids, keep * sizeof *ids);
    out[keep + 1] = t->eos;
    for (size_t k = keep + 2; k < (size_t)ctx; k++) out[k] = 0;
    if (n_out) *n_out = (int)keep + 2;
    free(ids);
    return MC_OK;
}

mc_status mc_clip_tok_decode(const mc_clip_tok *t, const int32_t *ids, size_t n, char **out,
                             mc_error *err) {
    *out = NULL;
    size_t cap = 64, len = 0;
    unsigned char *raw = malloc(cap);
    if (!raw) return MC_FAIL(err, MC_ERR_NOMEM, "decode: out of memory");
    mc_cpbuf cps = {0};
    mc_status s = MC_OK;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->vocab_size || t->id_sym[ids[i]] < 0) {
            s = MC_FAIL(err, MC_ERR_ARG, "decode: id %d is not in the vocabulary (0..%d)", ids[i],
                        t->vocab_size - 1);
            goto done;
        }
        size_t kl;
        const char *k = mc_strmap_key(&t->syms, (size_t)t->id_sym[ids[i]], &kl);
        cps.n = 0;
        if ((s = mc_utf8_decode(k, kl, MC_UTF8_REPLACE, &cps, err)) != MC_OK) goto done;
        for (size_t q = 0; q < cps.n; q++) {
            uint32_t c = cps.cp[q];
            if (c >= 512 || t->char_byte[c] < 0) {
                s = MC_FAIL(
                    err, MC_ERR_FORMAT,
                    "decode: token %d holds U+%04X, which is not a bytes_to_unicode character",
                    ids[i], c);
                goto done;
            }
            if (len == cap) {
                unsigned char *r2 = realloc(raw, cap * 2);
                if (!r2) {
                    s = MC_FAIL(err, MC_ERR_NOMEM, "decode: out of memory");
                    goto done;
                }
                raw = r2;
                cap *= 2;
            }
            raw[len++] = (unsigned char)t->char_byte[c];
        }
    }
    /* bytes.decode("utf-8", "replace"), then .replace("</w>", " ") */
    cps.n = 0;
    if ((s = mc_utf8_decode((const char *)raw, len, MC_UTF8_REPLACE, &cps, err)) != MC_OK)
        goto done;
    size_t w = 0;
    for (size_t i = 0; i < cps.n; i++) {
        if (i + 3 < cps.n && cps.cp[i] == '<' && cps.cp[i + 1] == '/' && cps.cp[i + 2] == 'w' &&
            cps.cp[i + 3] == '>') {
            cps.cp[w++] = ' ';
            i += 3;
        } else {
            cps.cp[w++] = cps.cp[i];
        }
    }
    *out = mc_utf8_encode_all(cps.cp, w, NULL);
    if (!*out) s = MC_FAIL(err, MC_ERR_NOMEM, "decode: out of memory");
done:
    free(raw);
    mc_cpbuf_free(&cps);
    return s;
}
