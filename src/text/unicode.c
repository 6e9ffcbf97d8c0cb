/* unicode.c - UTF-8 decoding with a stated policy, utf8proc normalisation, code point classes
 * and full lowercasing for the tokenizers (see text_internal.h for the semantics of each). */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "miclip/checked.h"
#include "text_internal.h"

bool mc_cpbuf_reserve(mc_cpbuf *b, size_t extra) {
    size_t need;
    if (!mc_size_add(b->n, extra, &need)) return false;
    if (need <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) {
        if (!mc_size_mul(cap, 2, &cap)) return false;
    }
    uint32_t *p = realloc(b->cp, cap * sizeof *p);
    if (!p) return false;
    b->cp = p;
    b->cap = cap;
    return true;
}

bool mc_cpbuf_push(mc_cpbuf *b, uint32_t c) {
    if (b->n == b->cap && !mc_cpbuf_reserve(b, 1)) return false;
    b->cp[b->n++] = c;
    return true;
}

void mc_cpbuf_free(mc_cpbuf *b) {
    free(b->cp);
    b->cp = NULL;
    b->n = b->cap = 0;
}

/* ---- UTF-8 ----------------------------------------------------------------------------- */

mc_status mc_utf8_decode(const char *text, size_t len, mc_utf8_policy policy, mc_cpbuf *out,
                         mc_error *err) {
    const unsigned char *s = (const unsigned char *)text;
    if (!mc_cpbuf_reserve(out, len))
        return MC_FAIL(err, MC_ERR_NOMEM, "text of %zu bytes: out of memory", len);
    size_t i = 0;
    while (i < len) {
        unsigned b0 = s[i];
        if (b0 < 0x80) {
            out->cp[out->n++] = b0;
            i++;
            continue;
        }
        /* Table 3-7 of the Unicode standard: the lead byte fixes the length and the range of
         * the second byte; later bytes are 80..BF. */
        int need;
        unsigned lo = 0x80, hi = 0xBF;
        uint32_t c;
        if (b0 >= 0xC2 && b0 <= 0xDF) {
            need = 1;
            c = b0 & 0x1F;
        } else if (b0 == 0xE0) {
            need = 2;
            lo = 0xA0;
            c = b0 & 0x0F;
        } else if (b0 >= 0xE1 && b0 <= 0xEC) {
            need = 2;
            c = b0 & 0x0F;
        } else if (b0 == 0xED) {
            need = 2;
            hi = 0x9F;
            c = b0 & 0x0F;
        } else if (b0 >= 0xEE && b0 <= 0xEF) {
            need = 2;
            c = b0 & 0x0F;
        } else if (b0 == 0xF0) {
            need = 3;
            lo = 0x90;
            c = b0 & 0x07;
        } else if (b0 >= 0xF1 && b0 <= 0xF3) {
            need = 3;
            c = b0 & 0x07;
        } else if (b0 == 0xF4) {
            need = 3;
            hi = 0x8F;
            c = b0 & 0x07;
        } else {
            need = -1;
            c = 0;
        }
        size_t j = i + 1;
        bool ok = need > 0;
        for (int k = 0; ok && k < need; k++, j++) {
            if (j >= len || s[j] < lo || s[j] > hi) {
                ok = false;
                break;
            }
            c = (c << 6) | (s[j] & 0x3F);
            lo = 0x80;
            hi = 0xBF;
        }
        if (ok) {
            out->cp[out->n++] = c;
            i = j;
            continue;
        }
        if (policy == MC_UTF8_REJECT) {
            if (need > 0 && j >= len)
                return MC_FAIL(
                    err, MC_ERR_FORMAT,
                    "text is not valid UTF-8: the sequence at byte offset %zu is cut off "
                    "by the end of the text",
                    i);
            size_t at = need > 0 ? j : i;
            return MC_FAIL(err, MC_ERR_FORMAT,
                           "text is not valid UTF-8: ill-formed byte 0x%02X at offset %zu", s[at],
                           at);
        }
        /* One U+FFFD for the maximal subpart: the lead byte plus the valid continuation bytes
         * seen so far (at least one byte). */
        out->cp[out->n++] = 0xFFFD;
        i = need > 0 ? j : i + 1;
    }
    return MC_OK;
}

mc_status mc_text_check_lines(const char *path, const char *text, size_t len, mc_error *err) {
    const utf8proc_uint8_t *s = (const utf8proc_uint8_t *)text;
    size_t line = 1, line_start = 0;
    for (size_t i = 0; i < len;) {
        if (s[i] == '\n') {
            line++;
            line_start = ++i;
            continue;
        }
        if (s[i] == 0)
            return MC_FAIL(err, MC_ERR_FORMAT, "%s:%zu: NUL byte at byte %zu", path, line,
                           i - line_start + 1);
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(s + i, (utf8proc_ssize_t)(len - i), &cp);
        if (k <= 0 || cp < 0)
            return MC_FAIL(err, MC_ERR_FORMAT, "%s:%zu: invalid UTF-8 at byte %zu (0x%02X)", path,
                           line, i - line_start + 1, s[i]);
        i += (size_t)k;
    }
    return MC_OK;
}

int mc_utf8_encode(uint32_t c, char *buf) {
    unsigned char *b = (unsigned char *)buf;
    if (c < 0x80) {
        b[0] = (unsigned char)c;
        return 1;
    }
    if (c < 0x800) {
        b[0] = (unsigned char)(0xC0 | (c >> 6));
        b[1] = (unsigned char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        b[0] = (unsigned char)(0xE0 | (c >> 12));
        b[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
        b[2] = (unsigned char)(0x80 | (c & 0x3F));
        return 3;
    }
    b[0] = (unsigned char)(0xF0 | (c >> 18));
    b[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3F));
    b[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
    b[3] = (unsigned char)(0x80 | (c & 0x3F));
    return 4;
}

char *mc_utf8_encode_all(const uint32_t *cp, size_t n, size_t *out_len) {
    size_t cap;
    if (!mc_size_mul(n, 4, &cap) || !mc_size_add(cap, 1, &cap)) return NULL;
    char *s = malloc(cap);
    if (!s) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += (size_t)mc_utf8_encode(cp[i], s + k);
    s[k] = '\0';
    if (out_len) *out_len = k;
    return s;
}

/* ---- normalisation --------------------------------------------------------------------- */

mc_status mc_unicode_normalize(mc_cpbuf *b, bool nfd, mc_error *err) {
    if (b->n == 0) return MC_OK;
    /* utf8proc_decompose works on code points directly: decompose into a buffer, then
     * recompose for NFC. */
    utf8proc_option_t opt = UTF8PROC_STABLE | (nfd ? UTF8PROC_DECOMPOSE : UTF8PROC_COMPOSE);
    size_t len;
    char *s = mc_utf8_encode_all(b->cp, b->n, &len);
    if (!s) return MC_FAIL(err, MC_ERR_NOMEM, "normalising %zu code points: out of memory", b->n);
    utf8proc_int32_t *buf = NULL;
    utf8proc_ssize_t r =
        utf8proc_decompose((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, NULL, 0, opt);
    if (r >= 0) {
        buf = mc_alloc_array((size_t)r + 1, sizeof *buf);
        if (!buf) {
            free(s);
            return MC_FAIL(err, MC_ERR_NOMEM, "normalising %zu code points: out of memory", b->n);
        }
        r = utf8proc_decompose((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, buf, r, opt);
    }
    free(s);
    if (r >= 0 && !nfd) r = utf8proc_normalize_utf32(buf, r, opt);
    if (r < 0) {
        free(buf);
        return MC_FAIL(err, MC_ERR_INTERNAL, "utf8proc normalisation failed: %s",
                       utf8proc_errmsg(r));
    }
    b->n = 0;
    if (!mc_cpbuf_reserve(b, (size_t)r)) {
        free(buf);
        return MC_FAIL(err, MC_ERR_NOMEM, "normalising: out of memory");
    }
    for (utf8proc_ssize_t i = 0; i < r; i++) b->cp[b->n++] = (uint32_t)buf[i];
    free(buf);
    return MC_OK;
}

/* ---- classes --------------------------------------------------------------------------- */

static utf8proc_category_t cat(uint32_t c) { return utf8proc_category((utf8proc_int32_t)c); }

bool mc_uc_is_letter(uint32_t c) {
    switch (cat(c)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: return true;
    default: return false;
    }
}

bool mc_uc_is_number(uint32_t c) {
    switch (cat(c)) {
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO: return true;
    default: return false;
    }
}

bool mc_uc_is_white_space(uint32_t c) {
    /* PropList.txt White_Space: exactly these 25 code points. */
    if (c >= 0x09 && c <= 0x0D) return true;
    if (c >= 0x2000 && c <= 0x200A) return true;
    switch (c) {
    case 0x20:
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000: return true;
    default: return false;
    }
}

bool mc_uc_is_mn(uint32_t c) { return cat(c) == UTF8PROC_CATEGORY_MN; }
bool mc_uc_is_zs(uint32_t c) { return cat(c) == UTF8PROC_CATEGORY_ZS; }

bool mc_uc_is_other(uint32_t c) {
    switch (cat(c)) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CS: return true;
    default: return false;
    }
}

bool mc_uc_is_cc_cf(uint32_t c) {
    utf8proc_category_t k = cat(c);
    return k == UTF8PROC_CATEGORY_CC || k == UTF8PROC_CATEGORY_CF;
}

bool mc_uc_is_punct(uint32_t c) {
    switch (cat(c)) {
    case UTF8PROC_CATEGORY_PC:
    case UTF8PROC_CATEGORY_PD:
    case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI:
    case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO: return true;
    default: return false;
    }
}

bool mc_uc_is_cjk(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* Cased and Case_Ignorable (DerivedCoreProperties), as CPython's final-sigma rule uses them.
 * Cased is approximated by the case categories plus "has a case mapping", which covers
 * Other_Lowercase/Other_Uppercase characters such as circled letters and Roman numerals. */
static bool is_cased(uint32_t c) {
    utf8proc_category_t k = cat(c);
    if (k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT)
        return true;
    return utf8proc_tolower((utf8proc_int32_t)c) != (utf8proc_int32_t)c ||
           utf8proc_toupper((utf8proc_int32_t)c) != (utf8proc_int32_t)c;
}

static bool is_case_ignorable(uint32_t c) {
    switch (cat(c)) {
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_SK: return true;
    default: break;
    }
    /* Word_Break MidLetter, MidNumLet and Single_Quote. */
    switch (c) {
    case 0x27:
    case 0x2E:
    case 0x3A:
    case 0xB7:
    case 0x387:
    case 0x55F:
    case 0x5F4:
    case 0x2018:
    case 0x2019:
    case 0x2024:
    case 0x2027:
    case 0xFE13:
    case 0xFE52:
    case 0xFE55:
    case 0xFF07:
    case 0xFF0E:
    case 0xFF1A: return true;
    default: return false;
    }
}

bool mc_uc_lower(const uint32_t *cp, size_t n, bool final_sigma, mc_cpbuf *out) {
    if (!mc_cpbuf_reserve(out, n)) return false;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = cp[i];
        if (c == 0x130) { /* SpecialCasing: LATIN CAPITAL LETTER I WITH DOT ABOVE */
            if (!mc_cpbuf_push(out, 0x69) || !mc_cpbuf_push(out, 0x307)) return false;
            continue;
        }
        if (c == 0x3A3 && final_sigma) {
            /* \p{cased} \p{case-ignorable}* SIGMA !(\p{case-ignorable}* \p{cased}) */
            size_t j = i;
            while (j > 0 && is_case_ignorable(cp[j - 1])) j--;
            bool fs = j > 0 && is_cased(cp[j - 1]);
            if (fs) {
                size_t k = i + 1;
                while (k < n && is_case_ignorable(cp[k])) k++;
                fs = k == n || !is_cased(cp[k]);
            }
            if (!mc_cpbuf_push(out, fs ? 0x3C2 : 0x3C3)) return false;
            continue;
        }
        if (!mc_cpbuf_push(out, (uint32_t)utf8proc_tolower((utf8proc_int32_t)c))) return false;
    }
    return true;
}
