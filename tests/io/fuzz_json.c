/* fuzz_json.c - libFuzzer entry for the strict JSON loader (mc_json_loadb, any top-level value)
 * and the Hugging Face config.json reader (mc_hf_config_loadb) on the same bytes. */
#include <stdint.h>

#include "miclip/hf.h"
#include "miclip/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mc_error err = {0};
    json_t *root = NULL;
    if (mc_json_loadb((const char *)data, size, "fuzz.json", true, &root, &err) == MC_OK) {
        int64_t i;
        double d;
        bool b;
        const char *s;
        json_t *o;
        int64_t arr[8];
        int n;
        (void)mc_json_get_int(root, "hidden_size", false, 0, &i, "fuzz.json", &err);
        (void)mc_json_get_num(root, "layer_norm_eps", false, 0, &d, "fuzz.json", &err);
        (void)mc_json_get_bool(root, "do_lower_case", false, false, &b, "fuzz.json", &err);
        (void)mc_json_get_str(root, "model_type", false, NULL, &s, "fuzz.json", &err);
        (void)mc_json_get_obj(root, "vision_config", false, &o, "fuzz.json", &err);
        (void)mc_json_get_int_array(root, "depths", arr, -1, 8, &n, "fuzz.json", &err);
        json_decref(root);
    } else {
        MC_ASSERT(root == NULL && err.msg[0]);
    }
    mc_hf_config *cfg = NULL;
    if (mc_hf_config_loadb((const char *)data, size, "fuzz/config.json", "/nonexistent-fuzz-dir",
                           &cfg, &err) == MC_OK) {
        for (int64_t k = 0; k < cfg->num_labels; k++) MC_ASSERT(cfg->labels[k] != NULL);
        mc_hf_config_free(&cfg);
    }
    MC_ASSERT(cfg == NULL);
    return 0;
}
