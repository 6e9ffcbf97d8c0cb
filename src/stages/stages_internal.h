/* stages_internal.h - helpers shared by the files of src/stages/. */
#ifndef MICLIP_STAGES_INTERNAL_H
#define MICLIP_STAGES_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "miclip/comm.h"
#include "miclip/hash.h"
#include "miclip/stages.h"
#include "miclip/store.h"

/* Collective: SHA-256 over a model folder's behaviour-defining files (rank 0 hashes and
 * broadcasts). */
mc_status mc_model_dir_hash(const mc_comm *c, const char *dir, char hex[MC_SHA256_HEX_LEN + 1],
                            mc_error *err);

/* Collective: writes n strings as <base>_bytes (U8, NUL-separated) and <base>_offsets
 * (I64 [n+1]). Only rank 0's data is written when rank0_writes (every rank passes the same
 * strings). */
mc_status mc_store_write_strings(mc_store *st, const char *base, const char *const *strs, int64_t n,
                                 bool rank0_writes, mc_error *err);

#endif
