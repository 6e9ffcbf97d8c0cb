/* wordpiece.c - the MPNet (BERT uncased) WordPiece tokenizer from vocab.txt, as the fast
 * tokenizer of sentence-transformers/all-mpnet-base-v2 runs it (text.h; specs 6.4). */
#include <stdlib.h>
#include <string.h>

#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/json.h"
#include "text_internal.h"

#define MC_WP_MAX_FILE (64u << 20)
#define MC_WP_MAX_WORD 100 /* code points; longer words are [UNK] */

static const char *const wp_specials[] = {"<s>", "</s>", "<pad>", "<mask>", "[UNK]"};
enum { WP_S, WP_SEP, WP_PAD, WP_MASK, WP_UNK, WP_NSPECIAL };

struct mc_wordpiece {
    mc_strmap vocab;
    int32_t n;
    int32_t special[WP_NSPECIAL]; /* ids, -1 when absent */
    uint32_t special_cp[WP_NSPECIAL][8];
    size_t special_len[WP_NSPECIAL];
    bool lowercase, strip_accents, chinese;
    int max_length;
    mc_utf8_policy utf8;
    mc_cpbuf cp, a, b;
    char *w; /* word buffer ("##" + UTF-8) */
    size_t w_cap;
};

void mc_wp_free(mc_wordpiece **tp) {
    if (!tp || !*tp) return;
    mc_wordpiece *t = *tp;
    mc_strmap_free(&t->vocab);
    mc_cpbuf_free(&t->cp);
    mc_cpbuf_free(&t->a);
    mc_cpbuf_free(&t->b);
    free(t->w);
    free(t);
    *tp = NULL;
}

int mc_wp_max_length(const mc_wordpiece *t) { return t->max_length; }
int32_t mc_wp_vocab_size(const mc_wordpiece *t) { return t->n; }

static mc_status read_json_opt(const char *dir, const char *name, json_t **out, mc_error *err) {
    char p[4096];
    *out = NULL;
    if (!mc_path_join(p, sizeof p, dir, name))
        return MC_FAIL(err, MC_ERR_ARG, "%s: path too long", dir);
    if (!mc_file_exists(p)) return MC_OK;
    return mc_json_load(p, false, out, err);
}

mc_status mc_wp_load(const char *dir, const mc_wp_opts *opts, mc_wordpiece **out, mc_error *err) {
    *out = NULL;
    mc_wp_opts o = {.lowercase = -1, .strip_accents = -1};
    if (opts) o = *opts;
    char path[4096];
    if (!mc_path_join(path, sizeof path, dir, "vocab.txt"))
        return MC_FAIL(err, MC_ERR_ARG, "%s: path too long", dir);
    mc_wordpiece *t = calloc(1, sizeof *t);
    if (!t) return MC_FAIL(err, MC_ERR_NOMEM, "tokenizer: out of memory");
    mc_strmap_init(&t->vocab);
    char *buf = NULL;
    size_t len = 0;
    json_t *tc = NULL, *sb = NULL;
    mc_status s = mc_read_file(path, MC_WP_MAX_FILE, &buf, &len, err);
    if (s != MC_OK) goto fail;
    /* readlines() + rstrip("\n"): id = line index; a final line without '\n' counts */
    for (size_t pos = 0; pos < len;) {
        size_t e = pos;
        while (e < len && buf[e] != '\n') e++;
        bool existing;
        if (!mc_strmap_put(&t->vocab, buf + pos, e - pos, t->n, &existing)) {
            s = MC_FAIL(err, MC_ERR_NOMEM, "%s: out of memory", path);
            goto fail;
        }
        if (existing) {
            s = MC_FAIL(err, MC_ERR_FORMAT, "%s line %d: token \"%.*s\" appears twice", path,
                        t->n + 1, (int)(e - pos > 40 ? 40 : e - pos), buf + pos);
            goto fail;
        }
        if (t->n == INT32_MAX - 1) {
            s = MC_FAIL(err, MC_ERR_FORMAT, "%s: too many lines", path);
            goto fail;
        }
        t->n++;
        pos = e + 1;
    }
    for (int k = 0; k < WP_NSPECIAL; k++) {
        const char *sp = wp_specials[k];
        if (!mc_strmap_get(&t->vocab, sp, strlen(sp), &t->special[k])) t->special[k] = -1;
        t->special_len[k] = strlen(sp);
        for (size_t q = 0; q < t->special_len[k]; q++) t->special_cp[k][q] = (unsigned char)sp[q];
    }
    if (t->special[WP_S] < 0 || t->special[WP_SEP] < 0 || t->special[WP_UNK] < 0) {
        s = MC_FAIL(err, MC_ERR_FORMAT,
                    "%s: \"<s>\", \"</s>\" or \"[UNK]\" is missing; HINT: miclip reads MPNet's "
                    "vocabulary (BERT uncased shifted by 4, with <s> <pad> </s> <unk> first)",
                    path);
        goto fail;
    }
    /* tokenizer_config.json and sentence_bert_config.json, both optional */
    if ((s = read_json_opt(dir, "tokenizer_config.json", &tc, err)) != MC_OK) goto fail;
    if ((s = read_json_opt(dir, "sentence_bert_config.json", &sb, err)) != MC_OK) goto fail;
    bool lower = true, chinese = true;
    int64_t mml = 512, msl = 0;
    int strip = -1;
    if (tc) {
        if ((s = mc_json_get_bool(tc, "do_lower_case", false, true, &lower, "tokenizer_config.json",
                                  err)) != MC_OK ||
            (s = mc_json_get_bool(tc, "tokenize_chinese_chars", false, true, &chinese,
                                  "tokenizer_config.json", err)) != MC_OK)
            goto fail;
        json_t *sa = json_object_get(tc, "strip_accents");
        if (sa && json_is_boolean(sa)) strip = json_is_true(sa);
        json_t *m = json_object_get(tc, "model_max_length");
        /* transformers writes a huge sentinel (1e30) when there is no limit */
        if (m && json_is_integer(m) && json_integer_value(m) > 0 && json_integer_value(m) < 1000000)
            mml = json_integer_value(m);
    }
    if (sb && (s = mc_json_get_int(sb, "max_seq_length", false, 0, &msl,
                                   "sentence_bert_config.json", err)) != MC_OK)
        goto fail;
    t->lowercase = o.lowercase >= 0 ? o.lowercase != 0 : lower;
    if (o.strip_accents >= 0) strip = o.strip_accents;
    t->strip_accents = strip >= 0 ? strip != 0 : t->lowercase;
    t->chinese = chinese;
    t->max_length = o.max_length > 0 ? o.max_length
                    : msl > 0        ? (int)(msl < mml ? msl : mml)
                                     : (int)mml;
    t->utf8 = o.utf8;
    if (t->max_length < 2 || t->max_length > 1000000) {
        s = MC_FAIL(err, MC_ERR_CONFIG, "%s: maximum length %d is out of range (2..1000000)", dir,
                    t->max_length);
        goto fail;
    }
    free(buf);
    json_decref(tc);
    json_decref(sb);
    *out = t;
    return MC_OK;
fail:
    free(buf);
    json_decref(tc);
    json_decref(sb);
    mc_wp_free(&t);
    return s;
}

static bool is_bert_punct(uint32_t c) {
    return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
           (c >= 123 && c <= 126) || mc_uc_is_punct(c);
}

static bool is_ws(uint32_t c) { return mc_uc_is_white_space(c); } /* \t\n\r are White_Space */

static bool push_id(int32_t *ids, int cap, int *n, int32_t id) {
    if (*n >= cap) return false;
    ids[(*n)++] = id;
    return true;
}

/* WordPiece of word cp[n]; appends ids while fewer than `room` exist. */
static mc_status wordpiece(mc_wordpiece *t, const uint32_t *cp, size_t n, int32_t *ids, int room,
                           int *nid, mc_error *err) {
    if (n > MC_WP_MAX_WORD) {
        push_id(ids, room, nid, t->special[WP_UNK]);
        return MC_OK;
    }
    size_t need = 2 + n * 4 + 1;
    if (need > t->w_cap) {
        char *p = realloc(t->w, need);
        if (!p) return MC_FAIL(err, MC_ERR_NOMEM, "tokenizer: out of memory");
        t->w = p;
        t->w_cap = need;
    }
    /* byte offset of each code point boundary, after the "##" prefix */
    size_t off[MC_WP_MAX_WORD + 1];
    t->w[0] = '#';
    t->w[1] = '#';
    off[0] = 2;
    for (size_t i = 0; i < n; i++)
        off[i + 1] = off[i] + (size_t)mc_utf8_encode(cp[i], t->w + off[i]);
    int32_t pieces[MC_WP_MAX_WORD];
    size_t np = 0, start = 0;
    while (start < n) {
        int32_t id = -1;
        size_t end = n;
        for (; end > start; end--) {
            const char *k = start ? t->w + off[start] - 2 : t->w + off[0];
            size_t kl = off[end] - off[start] + (start ? 2 : 0);
            if (start) { /* "##" + sub, built in place before the piece */
                char save0 = t->w[off[start] - 2], save1 = t->w[off[start] - 1];
                t->w[off[start] - 2] = '#';
                t->w[off[start] - 1] = '#';
                bool found = mc_strmap_get(&t->vocab, k, kl, &id);
                t->w[off[start] - 2] = save0;
                t->w[off[start] - 1] = save1;
                if (found) break;
            } else if (mc_strmap_get(&t->vocab, k, kl, &id)) {
                break;
            }
        }
        if (end == start) { /* no prefix matched: the whole word is unknown */
            push_id(ids, room, nid, t->special[WP_UNK]);
            return MC_OK;
        }
        pieces[np++] = id;
        start = end;
    }
    for (size_t i = 0; i < np; i++) push_id(ids, room, nid, pieces[i]);
    return MC_OK;
}

/* Normalises seg[n] (BertNormalizer) into t->b, then splits and word-pieces it. */
static mc_status encode_segment(mc_wordpiece *t, const uint32_t *seg, size_t n, int32_t *ids,
                                int room, int *nid, mc_error *err) {
    mc_cpbuf *a = &t->a, *b = &t->b;
    a->n = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = seg[i];
        bool keep_ctrl = c == '\t' || c == '\n' || c == '\r';
        if (c == 0 || c == 0xFFFD || (!keep_ctrl && mc_uc_is_other(c))) continue;
        if (is_ws(c)) c = ' ';
        bool ok = t->chinese && mc_uc_is_cjk(c)
                      ? mc_cpbuf_push(a, ' ') && mc_cpbuf_push(a, c) && mc_cpbuf_push(a, ' ')
                      : mc_cpbuf_push(a, c);
        if (!ok) return MC_FAIL(err, MC_ERR_NOMEM, "tokenizer: out of memory");
    }
    if (t->strip_accents) {
        MC_TRY(mc_unicode_normalize(a, true, err));
        size_t w = 0;
        for (size_t i = 0; i < a->n; i++)
            if (!mc_uc_is_mn(a->cp[i])) a->cp[w++] = a->cp[i];
        a->n = w;
    }
    b->n = 0;
    if (t->lowercase) {
        if (!mc_uc_lower(a->cp, a->n, false, b))
            return MC_FAIL(err, MC_ERR_NOMEM, "tokenizer: out of memory");
    } else {
        if (!mc_cpbuf_reserve(b, a->n))
            return MC_FAIL(err, MC_ERR_NOMEM, "tokenizer: out of memory");
        if (a->n) memcpy(b->cp, a->cp, a->n * sizeof *a->cp);
        b->n = a->n;
    }
    size_t i = 0;
    while (i < b->n && *nid < room) {
        uint32_t c = b->cp[i];
        if (is_ws(c)) {
            i++;
            continue;
        }
        size_t j = i + 1;
        if (!is_bert_punct(c))
            while (j < b->n && !is_ws(b->cp[j]) && !is_bert_punct(b->cp[j])) j++;
        MC_TRY(wordpiece(t, b->cp + i, j - i, ids, room, nid, err));
        i = j;
    }
    return MC_OK;
}

static bool py_isspace(uint32_t c) { return mc_uc_is_white_space(c) || (c >= 0x1C && c <= 0x1F); }

mc_status mc_wp_encode(mc_wordpiece *t, const char *text, size_t len, int32_t *ids, int cap,
                       int *n_out, mc_error *err) {
    if (cap < t->max_length)
        return MC_FAIL(err, MC_ERR_ARG, "mc_wp_encode: capacity %d < max length %d", cap,
                       t->max_length);
    t->cp.n = 0;
    MC_TRY(mc_utf8_decode(text, len, t->utf8, &t->cp, err));
    const uint32_t *cp = t->cp.cp;
    size_t b = 0, e = t->cp.n;
    while (b < e && py_isspace(cp[b])) b++; /* sentence-transformers strips each text */
    while (e > b && py_isspace(cp[e - 1])) e--;
    int n = 0;
    ids[n++] = t->special[WP_S];
    int room = t->max_length - 1; /* content ids go to ids[1 .. max_length-2] */
    size_t seg = b, i = b;
    while (i < e && n < room) {
        int hit = -1;
        size_t hit_len = 0;
        for (int k = 0; k < WP_NSPECIAL; k++) {
            size_t L = t->special_len[k];
            if (t->special[k] < 0 || L <= hit_len || i + L > e) continue;
            if (memcmp(cp + i, t->special_cp[k], L * sizeof *cp) == 0) {
                hit = k;
                hit_len = L;
            }
        }
        if (hit < 0) {
            i++;
            continue;
        }
        MC_TRY(encode_segment(t, cp + seg, i - seg, ids, room, &n, err));
        push_id(ids, room, &n, t->special[hit]);
        i += hit_len;
        seg = i;
    }
    if (n < room && e > seg) MC_TRY(encode_segment(t, cp + seg, e - seg, ids, room, &n, err));
    ids[n++] = t->special[WP_SEP];
    *n_out = n;
    return MC_OK;
}

mc_status mc_wp_decode(const mc_wordpiece *t, const int32_t *ids, size_t n, char **out,
                       mc_error *err) {
    /* id -> token by a scan of the map's entries (tests only) */
    size_t total = 1;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n)
            return MC_FAIL(err, MC_ERR_ARG, "decode: id %d out of range", ids[i]);
        size_t kl;
        mc_strmap_key(&t->vocab, (size_t)ids[i], &kl);
        total += kl + 1;
    }
    char *s = malloc(total);
    if (!s) return MC_FAIL(err, MC_ERR_NOMEM, "decode: out of memory");
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        size_t kl;
        const char *k = mc_strmap_key(&t->vocab, (size_t)ids[i], &kl); /* entry i is line i */
        if (i) s[w++] = ' ';
        memcpy(s + w, k, kl);
        w += kl;
    }
    s[w] = '\0';
    *out = s;
    return MC_OK;
}
