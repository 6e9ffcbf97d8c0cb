/* sae_codes.h - the SAE's top-k code of a prefix cache's edited tokens, computed once
 * (docs/intervene.md, "Code store").
 *
 * An SAE-feature edit in scale mode needs the top-k code of every edited token it scales. That
 * code depends on the clean cached state and the SAE only, not on the method, beta, reading,
 * variant or class edit, so it is encoded once per (prefix cache, SAE, edited tokens) into
 * OUTPUT_DIR/intervene/codes-<split>-l<layer>-<key16>.h5 and every task reads it from there:
 * `idx` [n, tokens, k] int32 and `val` [n, tokens, k] float32, rows as the prefix cache's.
 *
 * The codes are encoded in the prefix cache's fixed per-class batches of intervene.batch_size
 * images (mc_class_batches), one mc_sae_encode call per batch on exactly the rows the edit
 * gathered from the same batch, so a code read from the store is bit for bit the code the edit
 * computed for itself before (mc_sae_encode's sgemm may round a row differently with another
 * row count). Batches are dealt round-robin over ranks and marked done (resumable; identical at
 * any rank count). The first task that needs the store writes it under the store's writer lock;
 * tasks that start meanwhile wait for that writer and read the complete store.
 *
 * Ownership: mc_sae_codes_open fills a caller-owned struct released by mc_sae_codes_close
 * (NULL-safe, zeroes it).
 */
#ifndef MICLIP_METHOD_SAE_CODES_H
#define MICLIP_METHOD_SAE_CODES_H

#include <stdint.h>

#include "method/keys.h"
#include "method/prefix_cache.h"
#include "miclip/train.h"

typedef struct {
    char path[MC_PATH_CAP];
    char key[MC_KEY_HEX];
    int64_t n;      /* rows: the prefix cache's */
    int64_t t0, t1; /* the edited tokens [t0, t1) */
    int k;          /* code width (the SAE's k) */
    mc_store *st;   /* open read-only */
} mc_sae_codes;

/* The SAE to encode with: the sae stage's model, its store and key. */
typedef struct {
    mc_sae *sae;
    const char *path;
    const char *key;
} mc_sae_codes_sae;

/* Local. The store's key and path for the prefix p, the SAE's key and the edited tokens. */
mc_status mc_sae_codes_key(const mc_config *cfg, const mc_prefix_set *p, const char *sae_key,
                           int64_t t0, int64_t t1, char key[MC_KEY_HEX], char *path, size_t cap,
                           mc_error *err);

/* Collective. Opens the complete code store of (p, sae, tokens [t0, t1)), building or resuming
 * it first when needed, or waiting for the run that is writing it. p must be open (its state is
 * read); R gives the state's shape. */
mc_status mc_sae_codes_open(const mc_comm *c, const mc_config *cfg, const mc_runner *R,
                            mc_prefix_set *p, const mc_sae_codes_sae *sae, int64_t t0, int64_t t1,
                            mc_sae_codes *out, mc_error *err);

/* Local. The codes of rows [b, e): idx and val receive (e - b) * (t1 - t0) * k entries. */
mc_status mc_sae_codes_read(mc_sae_codes *sc, int64_t b, int64_t e, int32_t *idx, float *val,
                            mc_error *err);

void mc_sae_codes_close(mc_sae_codes *sc);

#endif
