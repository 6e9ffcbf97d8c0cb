/* fuzz_safetensors.c - libFuzzer entry for the safetensors parser (mc_st_open_buffer). On a
 * file that validates, every view is read, looked up by name and converted, so a view that
 * points outside the buffer is caught by ASan. */
#include <stdint.h>
#include <stdlib.h>

#include "miclip/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mc_error err = {0};
    mc_st_file *f = NULL;
    if (mc_st_open_buffer(data, size, "fuzz", &f, &err) != MC_OK) {
        MC_ASSERT(f == NULL && err.code != MC_OK && err.msg[0]);
        return 0;
    }
    volatile unsigned sum = 0;
    for (int i = 0; i < mc_st_count(f); i++) {
        const mc_st_tensor *t = mc_st_at(f, i);
        MC_ASSERT(mc_st_find(f, t->name) == t);
        MC_ASSERT((const uint8_t *)t->data >= data && t->nbytes <= size &&
                  (const uint8_t *)t->data - data <= (ptrdiff_t)(size - t->nbytes));
        for (size_t b = 0; b < t->nbytes; b++) sum += ((const uint8_t *)t->data)[b];
        if (t->dtype == MC_DTYPE_F32 || t->dtype == MC_DTYPE_F16 || t->dtype == MC_DTYPE_BF16 ||
            t->dtype == MC_DTYPE_F64) {
            float *dst = malloc(t->numel ? t->numel * sizeof(float) : 1);
            if (dst) {
                MC_ASSERT(mc_st_read_f32(f, t->name, t->ndim, t->shape, dst, &err) == MC_OK);
                free(dst);
            }
        }
    }
    for (int i = 0; i < mc_st_metadata_count(f); i++) {
        const char *k, *v;
        mc_st_metadata_at(f, i, &k, &v);
        MC_ASSERT(mc_st_metadata(f, k) != NULL);
    }
    (void)sum;
    mc_st_close(&f);
    return 0;
}
