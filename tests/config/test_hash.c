/* test_hash.c - SHA-256 against the NIST FIPS 180-4 example vectors (one-shot, incremental with
 * every split point, byte-at-a-time), and the streaming file hasher.
 *   test_hash              the unit checks
 *   test_hash FILE...      prints "HEX<TAB>HEX<TAB>FILE": the file hasher and the in-memory
 *                          hash with pseudo-random chunking (check_hash_python.py compares both
 *                          with Python's hashlib) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/fsutil.h"
#include "miclip/hash.h"
#include "test_util.h"

typedef struct {
    const char *msg;
    const char *hex;
} vector;

/* NIST CSRC "Examples with intermediate values" for SHA-256, plus the empty message. */
static const vector vectors[] = {
    {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
    {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
    {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnop"
     "qrsmnopqrstnopqrstu",
     "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
};

static void hex_of(const void *d, size_t n, char out[65]) { mc_sha256_hex(d, n, out); }

/* xorshift: deterministic chunk sizes for the incremental path. */
static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int print_files(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        char a[65], b[65];
        mc_error err = {0};
        if (mc_sha256_file(argv[i], NULL, a, &err) != MC_OK) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        char *data = NULL;
        size_t len = 0;
        if (mc_read_file(argv[i], (size_t)1 << 30, &data, &len, &err) != MC_OK) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        mc_sha256 s;
        mc_sha256_init(&s);
        for (size_t off = 0; off < len;) {
            size_t take = (size_t)(next_rand() % 200);
            if (take > len - off) take = len - off;
            mc_sha256_update(&s, data + off, take);
            off += take;
        }
        uint8_t d[32];
        mc_sha256_final(&s, d);
        mc_hex_encode(d, 32, b);
        free(data);
        printf("%s\t%s\t%s\n", a, b, argv[i]);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1) return print_files(argc, argv);
    char hex[65];
    for (size_t v = 0; v < sizeof vectors / sizeof vectors[0]; v++) {
        const char *m = vectors[v].msg;
        size_t n = strlen(m);
        hex_of(m, n, hex);
        CHECK_MSG(!strcmp(hex, vectors[v].hex), "one-shot '%s': %s", m, hex);
        /* Every split point into two updates, and byte at a time. */
        for (size_t cut = 0; cut <= n; cut++) {
            mc_sha256 s;
            uint8_t d[32];
            mc_sha256_init(&s);
            mc_sha256_update(&s, m, cut);
            mc_sha256_update(&s, m + cut, n - cut);
            mc_sha256_final(&s, d);
            mc_hex_encode(d, 32, hex);
            CHECK_MSG(!strcmp(hex, vectors[v].hex), "split at %zu of '%s'", cut, m);
        }
        mc_sha256 s;
        uint8_t d[32];
        mc_sha256_init(&s);
        for (size_t i = 0; i < n; i++) mc_sha256_update(&s, m + i, 1);
        mc_sha256_final(&s, d);
        mc_hex_encode(d, 32, hex);
        CHECK_MSG(!strcmp(hex, vectors[v].hex), "bytewise '%s'", m);
    }
    /* One million 'a' (NIST long-message vector), fed in uneven chunks. */
    size_t n = 1000000;
    char *a = malloc(n);
    CHECK(a != NULL);
    if (a) {
        memset(a, 'a', n);
        mc_sha256 s;
        uint8_t d[32];
        mc_sha256_init(&s);
        for (size_t off = 0; off < n;) {
            size_t take = 1 + (size_t)(next_rand() % 1000);
            if (take > n - off) take = n - off;
            mc_sha256_update(&s, a + off, take);
            off += take;
        }
        mc_sha256_final(&s, d);
        mc_hex_encode(d, 32, hex);
        CHECK_MSG(!strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
                  "million a: %s", hex);
        /* The file hasher on the same bytes. */
        mc_error err = {0};
        CHECK(mc_write_file_atomic("hash_million_a.bin", a, n, &err) == MC_OK);
        char fhex[65];
        uint8_t raw[32];
        CHECK(mc_sha256_file("hash_million_a.bin", raw, fhex, &err) == MC_OK);
        CHECK(!strcmp(fhex, hex));
        CHECK(!memcmp(raw, d, 32));
        free(a);
    }
    /* A missing file is an MC_ERR_IO naming it. */
    mc_error err = {0};
    CHECK(mc_sha256_file("no/such/file.bin", NULL, hex, &err) == MC_ERR_IO);
    CHECK(strstr(err.msg, "no/such/file.bin") != NULL);
    /* Hex encoding. */
    const uint8_t bytes[3] = {0x00, 0xab, 0xff};
    char h6[7];
    mc_hex_encode(bytes, 3, h6);
    CHECK(!strcmp(h6, "00abff"));
    return TEST_SUMMARY();
}
