/* common.c - helpers shared by the stages: model-folder hashes, string lists in a store. */
#include "stages_internal.h"

#include <stdlib.h>
#include <string.h>

#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/hash.h"

const char *mc_split_name(mc_split s) {
    static const char *names[MC_SPLIT_COUNT] = {"train", "eval", "unseen"};
    return (unsigned)s < MC_SPLIT_COUNT ? names[s] : "?";
}

mc_status mc_model_dir_hash(const mc_comm *c, const char *dir, char hex[MC_SHA256_HEX_LEN + 1],
                            mc_error *err) {
    /* The files that determine a model's behaviour, hashed in a fixed order; absent optional
     * files contribute their name only. */
    static const char *files[] = {"config.json", "model.safetensors", "preprocessor_config.json",
                                  "vocab.json", "merges.txt", "vocab.txt", "tokenizer_config.json"};
    char *text = NULL;
    mc_status s = MC_OK;
    if (c->rank == 0) {
        mc_sha256 h;
        mc_sha256_init(&h);
        for (size_t i = 0; i < sizeof files / sizeof files[0] && s == MC_OK; i++) {
            char path[4096];
            if (!mc_path_join(path, sizeof path, dir, files[i])) {
                s = MC_FAIL(err, MC_ERR_ARG, "path too long: %s", dir);
                break;
            }
            mc_sha256_update(&h, files[i], strlen(files[i]) + 1);
            if (!mc_file_exists(path)) continue;
            uint8_t d[MC_SHA256_BYTES];
            s = mc_sha256_file(path, d, NULL, err);
            if (s == MC_OK) mc_sha256_update(&h, d, sizeof d);
        }
        uint8_t d[MC_SHA256_BYTES];
        mc_sha256_final(&h, d);
        mc_hex_encode(d, MC_SHA256_BYTES, hex);
        hex[MC_SHA256_HEX_LEN] = '\0';
        if (s == MC_OK && !(text = mc_strdup(hex))) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    MC_TRY(mc_comm_agree(c, s, err));
    MC_TRY(mc_comm_bcast_string(c, 0, &text, err));
    mc_strlcpy(hex, text, MC_SHA256_HEX_LEN + 1);
    free(text);
    return MC_OK;
}

mc_status mc_store_write_strings(mc_store *st, const char *base, const char *const *strs, int64_t n,
                                 bool rank0_writes, mc_error *err) {
    /* <base>_bytes: U8, every string followed by a NUL; <base>_offsets: I64 [n + 1]. */
    size_t total = 0;
    for (int64_t i = 0; i < n; i++) total += strlen(strs[i]) + 1;
    uint8_t *bytes = malloc(total ? total : 1);
    int64_t *offs = mc_alloc_array((size_t)n + 1, sizeof *offs);
    mc_status s = MC_OK;
    if (!bytes || !offs) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory writing %s", base);
    size_t at = 0;
    for (int64_t i = 0; s == MC_OK && i < n; i++) {
        offs[i] = (int64_t)at;
        size_t l = strlen(strs[i]) + 1;
        memcpy(bytes + at, strs[i], l);
        at += l;
    }
    if (s == MC_OK) offs[n] = (int64_t)at;
    char name[512];
    int64_t shape_b = (int64_t)total, shape_o = n + 1;
    if (s == MC_OK) {
        snprintf(name, sizeof name, "%s_bytes", base);
        s = mc_store_create_dataset(st, name, MC_DTYPE_U8, 1, &shape_b, 0, err);
        if (s == MC_OK)
            s = mc_store_write_rows(st, name, MC_DTYPE_U8, 0, rank0_writes ? shape_b : 0, bytes, err);
    }
    if (s == MC_OK) {
        snprintf(name, sizeof name, "%s_offsets", base);
        s = mc_store_create_dataset(st, name, MC_DTYPE_I64, 1, &shape_o, 0, err);
        if (s == MC_OK)
            s = mc_store_write_rows(st, name, MC_DTYPE_I64, 0, rank0_writes ? shape_o : 0, offs, err);
    }
    free(bytes);
    free(offs);
    return s;
}
