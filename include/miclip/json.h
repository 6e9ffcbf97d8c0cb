/* json.h - strict JSON loading (jansson) and typed field access with errors that name the file
 * and the field. Used for Hugging Face config.json / preprocessor_config.json, tokenizer
 * vocabularies and the JSON inputs of the CLI.
 *
 * Duplicate keys are rejected (JSON_REJECT_DUPLICATES); files are size-capped before parsing.
 * Ownership: mc_json_load returns a new reference the caller releases with json_decref.
 */
#ifndef MICLIP_JSON_H
#define MICLIP_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "miclip/status.h"

#define MC_JSON_MAX_BYTES (256u << 20) /* a vocab.json is ~1.5 MB; configs are tiny */

/* Loads path (must be a JSON object unless allow_any). Errors name the file, line, column. */
mc_status mc_json_load(const char *path, bool allow_any, json_t **out, mc_error *err);
mc_status mc_json_loadb(const char *buf, size_t len, const char *label, bool allow_any,
                        json_t **out, mc_error *err);

/* Typed getters: `file` labels the messages ("config.json"). A missing key gives dflt when
 * required is false, and MC_ERR_FORMAT otherwise; a wrong type is always an error. */
mc_status mc_json_get_int(const json_t *obj, const char *key, bool required, int64_t dflt,
                          int64_t *out, const char *file, mc_error *err);
mc_status mc_json_get_num(const json_t *obj, const char *key, bool required, double dflt,
                          double *out, const char *file, mc_error *err);
mc_status mc_json_get_bool(const json_t *obj, const char *key, bool required, bool dflt, bool *out,
                           const char *file, mc_error *err);
/* The string is borrowed from obj (valid while obj lives); dflt may be NULL. */
mc_status mc_json_get_str(const json_t *obj, const char *key, bool required, const char *dflt,
                          const char **out, const char *file, mc_error *err);
/* A nested object or array, borrowed from obj; *out = NULL when absent and not required. */
mc_status mc_json_get_obj(const json_t *obj, const char *key, bool required, json_t **out,
                          const char *file, mc_error *err);
mc_status mc_json_get_array(const json_t *obj, const char *key, bool required, json_t **out,
                            const char *file, mc_error *err);
/* An array of integers into out[0..n), which must have exactly n entries (n == -1: any length
 * up to cap, returned in *n_out). */
mc_status mc_json_get_int_array(const json_t *obj, const char *key, int64_t *out, int n, int cap,
                                int *n_out, const char *file, mc_error *err);

/* Notes: a JSON null counts as absent (Hugging Face writes null for "use the default"). An
 * integer is accepted where a number is asked for; a number with a fraction is never accepted
 * as an integer. */

#endif
