/* keys.h - cache keys and output paths: the SHA-256 key of everything that produced an artifact,
 * the paths of a seed's SAE and of an E_n, and the hash of a model folder (docs/store.md).
 */
#ifndef MICLIP_METHOD_KEYS_H
#define MICLIP_METHOD_KEYS_H

#include <stdbool.h>
#include <stdint.h>

#include "miclip/comm.h"
#include "miclip/config.h"
#include "miclip/hash.h"

#define MC_KEY_HEX (MC_SHA256_HEX_LEN + 1)
#define MC_PATH_CAP 4096

/* SHA-256 hex of text. */
void mc_key_of(const char *text, char hex[MC_KEY_HEX]);

/* Key and paths of one trained artifact: dir OUTPUT_DIR/<sub>, store <tag>-<key16>.h5,
 * checkpoint <tag>-<key16>.ckpt.safetensors, curve <tag>-<key16>.curve.safetensors. */
typedef struct {
    char key[MC_KEY_HEX];
    char dir[MC_PATH_CAP], store[MC_PATH_CAP], ckpt[MC_PATH_CAP], curve[MC_PATH_CAP];
    char tag[256];
} mc_run_paths;
/* The SAE of seed on sae.layer (under OUTPUT_DIR/sae). */
mc_status mc_sae_paths(const mc_config *cfg, const char *extract_key, int64_t seed, mc_run_paths *p,
                       mc_error *err);
/* E_n of (seed, layer, variant) (under OUTPUT_DIR/align). */
mc_status mc_align_paths(const mc_config *cfg, const char *extract_key, int64_t seed,
                         const char *layer, int variant, mc_run_paths *p, mc_error *err);

/* Collective: SHA-256 over a model folder's behaviour-defining files (rank 0 hashes and
 * broadcasts). */
mc_status mc_model_dir_hash(const mc_comm *c, const char *dir, char hex[MC_SHA256_HEX_LEN + 1],
                            mc_error *err);

#endif
