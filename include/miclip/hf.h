/* hf.h - the generic part of a Hugging Face model folder's config.json.
 *
 * mc_hf_config_load reads DIR/config.json (strict JSON, duplicate keys rejected) and fills the
 * fields every family needs: the architecture name (architectures[0]), model_type, the class
 * labels (id2label, ordered by id), and the model family miclip implements for it:
 *
 *   architectures[0]                       family
 *   ViTForImageClassification              MC_HF_VIT     (model_type "vit")
 *   ResNetForImageClassification           MC_HF_RESNET  (model_type "resnet")
 *   CLIPModel                              MC_HF_CLIP    (model_type "clip")
 *   MPNetModel, MPNetForMaskedLM           MC_HF_MPNET   (model_type "mpnet")
 *   (none or another, with model_type "mpnet" in a sentence-transformers folder) MC_HF_MPNET
 *
 * Anything else is MC_ERR_UNSUPPORTED with a HINT listing these. A model_type that contradicts
 * the architecture is MC_ERR_FORMAT. Each family then reads its own hyperparameters from
 * cfg->root with the json.h getters (pass cfg->path as the file label). preprocessor_config.json
 * is read by the image module (image.h), not here.
 *
 * Labels: id2label must have exactly the keys "0".."n-1" (decimal, no sign or leading zeros),
 * each with a string value; a num_labels key, if present, must equal n. Without id2label,
 * num_labels N (if present) gives Hugging Face's default names "LABEL_0".."LABEL_{N-1}".
 *
 * Ownership: the struct and everything in it (strings, labels, root) belong to the config;
 * mc_hf_config_free releases them all.
 */
#ifndef MICLIP_HF_H
#define MICLIP_HF_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "miclip/status.h"

typedef enum {
    MC_HF_VIT = 0,
    MC_HF_RESNET,
    MC_HF_CLIP,
    MC_HF_MPNET,
    MC_HF_FAMILY_COUNT
} mc_hf_family;

#define MC_HF_CONFIG_MAX_BYTES (16u << 20) /* ImageNet configs with id2label are ~70 kB */

typedef struct {
    char *dir;  /* the model folder as given */
    char *path; /* DIR/config.json: use it as the `file` label of json.h getters */
    mc_hf_family family;
    char *architecture; /* architectures[0], or NULL if the config has none */
    char *model_type;   /* or NULL if absent */
    int64_t num_labels; /* 0 when the config has no labels */
    char **labels;      /* labels[0..num_labels): id2label in id order, or NULL */
    json_t *root;       /* the whole parsed config.json (owned) */
} mc_hf_config;

/* Reads and validates DIR/config.json. On success *out is a new config for mc_hf_config_free.
 * Errors name the file and key. */
mc_status mc_hf_config_load(const char *dir, mc_hf_config **out, mc_error *err);
/* The same from config.json's bytes in memory (tests, fuzzing); label names it in messages and
 * dir is the folder used for family detection (modules.json) and mc_hf_file. */
mc_status mc_hf_config_loadb(const char *buf, size_t len, const char *label, const char *dir,
                             mc_hf_config **out, mc_error *err);
void mc_hf_config_free(mc_hf_config **cfg); /* NULL-safe; sets *cfg = NULL */

/* "vit", "resnet", "clip", "mpnet". */
const char *mc_hf_family_name(mc_hf_family f);

/* Joins cfg->dir and name (e.g. "model.safetensors") into buf; false on truncation. */
bool mc_hf_file(const mc_hf_config *cfg, const char *name, char *buf, size_t cap);

#endif
