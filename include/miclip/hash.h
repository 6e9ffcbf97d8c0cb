/* hash.h - SHA-256 (FIPS 180-4): one-shot, incremental, hex output, and a streaming file hasher.
 *
 * Used for provenance: the config hash is the SHA-256 of the canonical resolved config text
 * (config.h), and cached artifacts are keyed by the hashes of everything that produced them
 * (model files included), never by a name alone.
 *
 * Written from the standard (FIPS 180-4, sections 4.1.2, 4.2.2, 5.1.1, 5.3.3, 6.2); tested
 * against the NIST example vectors and Python's hashlib on random inputs (tests/config).
 *
 * Ownership: mc_sha256 is a plain value (no heap); the caller owns every output buffer.
 */
#ifndef MICLIP_HASH_H
#define MICLIP_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "miclip/status.h"

#define MC_SHA256_BYTES 32
#define MC_SHA256_HEX_LEN 64 /* hex digits; buffers need MC_SHA256_HEX_LEN + 1 */

/* Incremental state. Initialise with mc_sha256_init, feed any number of updates, then final. */
typedef struct {
    uint32_t h[8];     /* chaining value */
    uint64_t nbytes;   /* message length so far, in bytes */
    uint8_t block[64]; /* pending partial block */
    size_t nblock;     /* bytes pending in block (0..63) */
} mc_sha256;

void mc_sha256_init(mc_sha256 *s);
/* Feeds n bytes (data may be NULL when n == 0). */
void mc_sha256_update(mc_sha256 *s, const void *data, size_t n);
/* Pads, writes the 32-byte digest to out and leaves s unusable until the next init. */
void mc_sha256_final(mc_sha256 *s, uint8_t out[MC_SHA256_BYTES]);

/* One-shot digest of n bytes. */
void mc_sha256_bytes(const void *data, size_t n, uint8_t out[MC_SHA256_BYTES]);
/* One-shot digest as 64 lower-case hex digits plus NUL in hex[65]. */
void mc_sha256_hex(const void *data, size_t n, char hex[MC_SHA256_HEX_LEN + 1]);

/* Lower-case hex of n bytes into out, which must hold 2n + 1 chars (NUL-terminated). */
void mc_hex_encode(const uint8_t *bytes, size_t n, char *out);

/* Streams the file at path through SHA-256 in 1 MiB reads (any size; nothing is mapped).
 * Fails with MC_ERR_IO naming the file when it cannot be opened or read. hex may be NULL when
 * only the raw digest is wanted, and out may be NULL when only hex is. */
mc_status mc_sha256_file(const char *path, uint8_t out[MC_SHA256_BYTES],
                         char hex[MC_SHA256_HEX_LEN + 1], mc_error *err);

#endif
