/* hash.h - SHA-256 (FIPS 180-4): one-shot, incremental, hex output, and a streaming file hasher.
 *
 * Used for provenance: the config hash is the SHA-256 of the canonical resolved config text
 * (config.h), and cached artifacts are keyed by the hashes of everything that produced them
 * (model files included), never by a name alone.
 *
 * The digest is libcrypto's (OpenSSL EVP); tested against the NIST example vectors and Python's
 * hashlib on random inputs (tests/config).
 *
 * Ownership: mc_sha256_init allocates the state and mc_sha256_final releases it, so every init
 * is paired with one final; the caller owns every output buffer.
 */
#ifndef MICLIP_HASH_H
#define MICLIP_HASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "miclip/status.h"

#define MC_SHA256_BYTES 32
#define MC_SHA256_HEX_LEN 64 /* hex digits; buffers need MC_SHA256_HEX_LEN + 1 */

/* Incremental state. Initialise with mc_sha256_init, feed any number of updates, then final. */
typedef struct {
    void *ctx; /* libcrypto's EVP_MD_CTX, from init to final */
} mc_sha256;

void mc_sha256_init(mc_sha256 *s);
/* Feeds n bytes (data may be NULL when n == 0). */
void mc_sha256_update(mc_sha256 *s, const void *data, size_t n);
/* Writes the 32-byte digest to out and releases the state (s is unusable until the next init). */
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

/* Like mc_sha256_file, but an unchanged file is read once: its digest is remembered under its
 * absolute path and identity (device, inode, size, mtime and ctime to the nanosecond, so any
 * write or replacement changes it) in $MICLIP_CACHE_DIR/file-hashes.tsv (else
 * $XDG_CACHE_HOME/miclip/, else ~/.cache/miclip/; at most 4096 files, oldest dropped). A cache
 * that cannot be read or written is ignored. *hashed (may be NULL) tells whether the bytes were
 * read. Local. */
mc_status mc_sha256_file_cached(const char *path, uint8_t out[MC_SHA256_BYTES], bool *hashed,
                                mc_error *err);

#endif
