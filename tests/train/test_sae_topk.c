/* test_sae_topk.c - mc_sae_encode's top-k equals a full sort by (value desc, index asc).
 *
 * W_enc = 0, b_pre = 0 and zero inputs make the pre-activations exactly b_enc, so the expected
 * codes come from sorting b_enc, with no floating-point question. Rows mix distinct values with
 * heavy ties (a handful of integers) and negatives (cut to 0 by the ReLU after selection); widths
 * 2048 and 300 (not a multiple of the selection's 16-value blocks), k 1, 8 and 32: the block
 * path (topk_wide) and, where the blocks are too few, the plain heap. */
#include <stdlib.h>
#include <string.h>

#include "miclip/train.h"
#include "test_util.h"

static const float *g_row;
static int by_value_then_index(const void *a, const void *b) {
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    float vi = g_row[i], vj = g_row[j];
    return vi > vj ? -1 : vi < vj ? 1 : (i > j) - (i < j);
}

static void one_case(int64_t m, int k, int pattern) {
    mc_sae_config cfg = mc_sae_defaults();
    cfg.n = 4, cfg.m = m, cfg.k = k, cfg.k_aux = 0, cfg.seed = 3;
    mc_sae *s = NULL;
    mc_error err = {0};
    CHECK(mc_sae_create(&cfg, &s, &err) == MC_OK);
    if (!s) return;
    memset(mc_sae_w_enc(s), 0, (size_t)(m * cfg.n) * sizeof(float));
    memset(mc_sae_b_pre(s), 0, (size_t)cfg.n * sizeof(float));
    float *b = mc_sae_b_enc(s);
    for (int64_t j = 0; j < m; j++) {
        double u = mc_rng_uniform(9, (uint64_t)pattern, (uint64_t)j);
        b[j] = pattern == 0   ? (float)(u - 0.3)                  /* distinct, some negative */
               : pattern == 1 ? (float)(int)(u * 5.0) - 1.0f      /* five values: ties everywhere */
                              : (float)j * 1e-4f - (j % 97 == 0); /* rising, a dip every 97 */
    }
    float x[2 * 4] = {0};
    int32_t idx[2 * 32];
    float val[2 * 32];
    mc_sae_encode(s, x, 2, idx, val);
    int32_t *order = malloc((size_t)m * sizeof *order);
    for (int64_t j = 0; j < m; j++) order[j] = (int32_t)j;
    g_row = b;
    qsort(order, (size_t)m, sizeof *order, by_value_then_index);
    int bad = 0;
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < k; t++) {
            float want = b[order[t]] > 0 ? b[order[t]] : 0;
            bad += idx[r * k + t] != order[t] || val[r * k + t] != want;
        }
    CHECK_MSG(bad == 0, "m %lld k %d pattern %d: %d of %d codes differ from the sort", (long long)m,
              k, pattern, bad, 2 * k);
    free(order);
    mc_sae_free(&s);
}

int main(void) {
    const int64_t widths[] = {2048, 300};
    const int ks[] = {1, 8, 32};
    for (int w = 0; w < 2; w++)
        for (int q = 0; q < 3; q++)
            for (int p = 0; p < 3; p++) one_case(widths[w], ks[q], p);
    return TEST_SUMMARY();
}
