/* hash.c - SHA-256 through libcrypto. See include/miclip/hash.h. */
#include "miclip/hash.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/evp.h>

#include "miclip/buf.h"
#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/log.h"
#include "miclip/status.h"

/* The digest is OpenSSL's (libcrypto's EVP interface picks the fastest implementation the CPU
 * has: SHA-NI or AVX2, ~6x the portable C this file held before). */

void mc_sha256_init(mc_sha256 *s) {
    s->ctx = EVP_MD_CTX_new();
    MC_ASSERT(s->ctx && EVP_DigestInit_ex(s->ctx, EVP_sha256(), NULL) == 1);
}

void mc_sha256_update(mc_sha256 *s, const void *data, size_t n) {
    if (n > 0) MC_ASSERT(EVP_DigestUpdate(s->ctx, data, n) == 1);
}

void mc_sha256_final(mc_sha256 *s, uint8_t out[MC_SHA256_BYTES]) {
    unsigned len = 0;
    MC_ASSERT(EVP_DigestFinal_ex(s->ctx, out, &len) == 1 && len == MC_SHA256_BYTES);
    EVP_MD_CTX_free(s->ctx);
    s->ctx = NULL;
}

void mc_sha256_bytes(const void *data, size_t n, uint8_t out[MC_SHA256_BYTES]) {
    mc_sha256 s;
    mc_sha256_init(&s);
    mc_sha256_update(&s, data, n);
    mc_sha256_final(&s, out);
}

void mc_hex_encode(const uint8_t *bytes, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}

void mc_sha256_hex(const void *data, size_t n, char hex[MC_SHA256_HEX_LEN + 1]) {
    uint8_t d[MC_SHA256_BYTES];
    mc_sha256_bytes(data, n, d);
    mc_hex_encode(d, sizeof d, hex);
}

mc_status mc_sha256_file(const char *path, uint8_t out[MC_SHA256_BYTES],
                         char hex[MC_SHA256_HEX_LEN + 1], mc_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return MC_FAIL(err, MC_ERR_IO, "%s: cannot open for hashing: %s", path, strerror(errno));
    enum { CHUNK = 1 << 20 };
    uint8_t *buf = malloc(CHUNK);
    if (!buf) {
        fclose(f);
        return MC_FAIL(err, MC_ERR_NOMEM, "%s: no memory for the hash buffer", path);
    }
    mc_sha256 s;
    mc_sha256_init(&s);
    size_t got;
    while ((got = fread(buf, 1, CHUNK, f)) > 0) mc_sha256_update(&s, buf, got);
    int bad = ferror(f);
    int saved = errno;
    free(buf);
    fclose(f);
    if (bad)
        return MC_FAIL(err, MC_ERR_IO, "%s: read error while hashing: %s", path, strerror(saved));
    uint8_t d[MC_SHA256_BYTES];
    mc_sha256_final(&s, d);
    if (out) memcpy(out, d, sizeof d);
    if (hex) mc_hex_encode(d, sizeof d, hex);
    return MC_OK;
}

/* ---- the file-hash cache ------------------------------------------------------------------- */

#define CACHE_MAX_LINES 4096
#define CACHE_MAX_BYTES (8u << 20)

static int hex_value(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Lower-case hex of 2n digits into n bytes; false on any other character. */
static bool hex_decode(const char *hex, size_t digits, uint8_t *out) {
    for (size_t i = 0; i < digits / 2; i++) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

static bool cache_path(char *buf, size_t cap) {
    const char *dir = getenv("MICLIP_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME"),
               *home = getenv("HOME");
    if (dir && *dir) return mc_snprintf(buf, cap, "%s/file-hashes.tsv", dir);
    if (xdg && *xdg) return mc_snprintf(buf, cap, "%s/miclip/file-hashes.tsv", xdg);
    if (home && *home) return mc_snprintf(buf, cap, "%s/.cache/miclip/file-hashes.tsv", home);
    return false;
}

/* The identity of a file's bytes as the kernel sees it, without reading them: any write changes
 * mtime and ctime (to the nanosecond), a replaced file has another inode. */
static bool file_identity(const char *abs, char *buf, size_t cap) {
    struct stat st;
    if (stat(abs, &st) != 0 || !S_ISREG(st.st_mode)) return false;
    return mc_snprintf(buf, cap, "%llu\t%llu\t%lld\t%lld.%09ld\t%lld.%09ld",
                       (unsigned long long)st.st_dev, (unsigned long long)st.st_ino,
                       (long long)st.st_size, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
                       (long long)st.st_ctim.tv_sec, st.st_ctim.tv_nsec);
}

mc_status mc_sha256_file_cached(const char *path, uint8_t out[MC_SHA256_BYTES], bool *hashed,
                                mc_error *err) {
    if (hashed) *hashed = true;
    char cpath[4096], ident[256], abs[PATH_MAX];
    /* Uncacheable (no cache folder, a path with a tab or newline): hash the bytes. */
    if (!cache_path(cpath, sizeof cpath) || !realpath(path, abs) || strpbrk(abs, "\t\n") ||
        !file_identity(abs, ident, sizeof ident)) {
        mc_trace_load("hash %s", path);
        return mc_sha256_file(path, out, NULL, err);
    }
    char *text = NULL;
    size_t len = 0;
    mc_error ignored = {0};
    if (mc_file_exists(cpath) &&
        mc_read_file(cpath, CACHE_MAX_BYTES, &text, &len, &ignored) != MC_OK)
        text = NULL;
    /* A line: <hex digest>\t<identity (5 fields)>\t<absolute path>\n. */
    char tail[PATH_MAX + 300];
    mc_snprintf(tail, sizeof tail, "\t%s\t%s\n", ident, abs);
    const size_t tl = strlen(tail);
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        size_t ll = nl ? (size_t)(nl - line) + 1 : strlen(line);
        if (ll == MC_SHA256_HEX_LEN + tl && !memcmp(line + MC_SHA256_HEX_LEN, tail, tl) &&
            hex_decode(line, MC_SHA256_HEX_LEN, out)) {
            free(text);
            if (hashed) *hashed = false;
            return MC_OK;
        }
        line += ll;
    }
    char hex[MC_SHA256_HEX_LEN + 1];
    mc_trace_load("hash %s", abs);
    mc_status s = mc_sha256_file(path, out, hex, err);
    if (s == MC_OK) {
        /* Keep the newest CACHE_MAX_LINES - 1 other lines, drop this path's stale ones, append. */
        mc_buf b = {0};
        int64_t n_lines = 0;
        for (char *p = text; p && *p; p++) n_lines += *p == '\n';
        int64_t skip = n_lines - (CACHE_MAX_LINES - 1), at = 0;
        char self[PATH_MAX + 3];
        mc_snprintf(self, sizeof self, "\t%s\n", abs);
        for (char *line = text; line && *line; at++) {
            char *nl = strchr(line, '\n');
            if (!nl) break;
            size_t ll = (size_t)(nl - line) + 1, sl = strlen(self);
            bool same_path = ll >= sl && !memcmp(nl + 1 - sl, self, sl);
            if (at >= skip && !same_path) mc_buf_printf(&b, "%.*s", (int)ll, line);
            line = nl + 1;
        }
        mc_buf_printf(&b, "%s%s", hex, tail);
        /* The cache is an optimisation: failing to write it is not an error. */
        if (!b.oom && mc_write_text_file(cpath, b.p, b.n, &ignored) != MC_OK)
            mc_debug("file-hash cache %s not written: %s", cpath, ignored.msg);
        mc_buf_free(&b);
    }
    free(text);
    return s;
}
