/* netdissect.c - Network Dissection (Bau et al. 2017) as NetDissect-Lite scores it, for the
 * baselines stage (baselines.c): the IoU of each unit's thresholded, upsampled activation map with
 * per-image concept masks, summed over the training images (docs/baselines.md).
 *
 *   T_u        the 0.995 quantile (exact, numpy's linear interpolation) of unit u's activations
 *              over every map position of every valid training image;
 *   M_u(x)     the unit's map on image x (ViT: the patch tokens on their sqrt(T-1) grid; CNN: the
 *              feature map) upsampled bilinearly to the mask size (align_corners=False, as
 *              torch.nn.functional.interpolate), thresholded > T_u (empty when the map's maximum
 *              is at most T_u: a bilinear value never exceeds the map's maximum);
 *   L_c(x)     the binary mask <masks>/<image stem>/<concept>.png (non-zero = the concept is
 *              there; no file = an all-zero mask);
 *   IoU(u, c)  sum_x |M_u & L_c| / (sum_x |M_u| + sum_x |L_c| - sum_x |M_u & L_c|) (0 when 0/0).
 *
 * Units are the layer's neurons, shared over ranks in the baselines stage's blocks; a unit's
 * values, threshold and counts are computed by the rank that owns it, in image order (integer
 * counts), so the scores do not depend on the rank count. Every rank reads every mask.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baselines_internal.h"
#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/image.h"
#include "miclip/log.h"
#include "miclip/miclip.h"
#include "miclip/tensor.h"

/* ---- where the masks are ------------------------------------------------------------------------ */

/* The image folder of the training dataset (as the dataset lister joins it). */
static bool train_dir(const mc_config *cfg, char *dir, size_t cap) {
    const mc_dataset_cfg *d = &cfg->datasets.train;
    if (d->kind == MC_DS_DTD) return mc_path_join(dir, cap, d->root, "images");
    if (d->split && d->split[0]) return mc_path_join(dir, cap, d->root, d->split);
    return mc_strlcpy(dir, d->root, cap);
}

bool mc_netdissect_masks_dir(const mc_config *cfg, char *dir, size_t cap) {
    if (cfg->baselines.netdissect_masks && cfg->baselines.netdissect_masks[0])
        return mc_strlcpy(dir, cfg->baselines.netdissect_masks, cap);
    const mc_dataset_cfg *d = &cfg->datasets.train;
    if (d->split && d->split[0]) return mc_snprintf(dir, cap, "%s/masks/%s", d->root, d->split);
    return mc_snprintf(dir, cap, "%s/masks", d->root);
}

mc_status mc_netdissect_check(const mc_config *cfg, mc_error *err) {
    if (cfg->extract.pool != MC_CFG_POOL_ALL)
        return MC_FAIL(
            err, MC_ERR_CONFIG,
            "%s: baselines.methods lists netdissect, which needs spatial activation maps: "
            "set extract.pool: all (it is '%s')",
            cfg->source_path, mc_pool_name(cfg->extract.pool));
    for (int i = 0; i < cfg->extract.layers.n; i++)
        if (!strcmp(cfg->extract.layers.v[i], "logits"))
            return MC_FAIL(
                err, MC_ERR_CONFIG,
                "%s: baselines.methods lists netdissect, which needs a spatial layer; "
                "extract.layers lists 'logits' (no map): list token/feature-map layers only",
                cfg->source_path);
    char dir[MC_PATH_CAP];
    if (!mc_netdissect_masks_dir(cfg, dir, sizeof dir))
        return MC_FAIL(err, MC_ERR_ARG, "%s: netdissect: masks path too long", cfg->source_path);
    if (!mc_dir_exists(dir))
        return MC_FAIL(
            err, MC_ERR_ARG,
            "%s: netdissect needs concept masks and %s does not exist (make the world with "
            "`miclip world make ... --masks`, or set baselines.netdissect_masks)",
            cfg->source_path, dir);
    return MC_OK;
}

/* ---- exact quantile ------------------------------------------------------------------------------- */

/* The q quantile of v[0..n) with numpy's default (linear) interpolation; v is reordered. */
static double quantile_linear(float *v, int64_t n, double q) {
    double h = (double)(n - 1) * q;
    int64_t lo = (int64_t)floor(h);
    double t = h - (double)lo;
    double a = mc_select_kth(v, n, lo);
    if (lo + 1 >= n || t == 0) return a;
    float b = v[lo + 1]; /* after selection every value right of lo is >= v[lo]: their minimum */
    for (int64_t i = lo + 2; i < n; i++) b = v[i] < b ? v[i] : b;
    return a + (double)(b - a) * t;
}

/* ---- bilinear upsampling (torch.nn.functional.interpolate, bilinear, align_corners=False) ------- */

typedef struct {
    int *i0, *i1;
    float *l0, *l1;
} axis_w;

static void axis_weights(int in, int out, axis_w *a) {
    float scale = (float)in / (float)out;
    for (int o = 0; o < out; o++) {
        float src = scale * ((float)o + 0.5f) - 0.5f;
        if (src < 0) src = 0;
        int i = (int)src;
        if (i > in - 1) i = in - 1;
        float l = src - (float)i;
        l = l < 0 ? 0 : l > 1 ? 1 : l;
        a->i0[o] = i, a->i1[o] = i + (i < in - 1 ? 1 : 0);
        a->l1[o] = l, a->l0[o] = 1.0f - l;
    }
}

/* ---- the scores ------------------------------------------------------------------------------------ */

typedef struct {
    int set;
    int64_t concept;
    const uint8_t *bits; /* [H * W] 0/1 */
} mask_ref;

static bool is_png(const char *name) {
    size_t n = strlen(name);
    return n > 4 && !strcmp(name + n - 4, ".png");
}

/* The masks of one image: refs[*n_refs] into bits (one bitmap per matching file), its size. */
static mc_status image_masks(const char *mdir, const char *img_path, const mc_concepts *sets,
                             const bool *use, int n_sets, uint8_t **bits, size_t *bits_cap,
                             mask_ref **refs, int64_t *refs_cap, int64_t *n_refs, int *H, int *W,
                             mc_error *err) {
    *n_refs = 0, *H = 0, *W = 0;
    char **names = NULL;
    int64_t n = 0;
    mc_status s = MC_OK;
    if (mc_dir_exists(mdir)) s = mc_list_dir(mdir, MC_LIST_FILES, is_png, NULL, &names, &n, err);
    int64_t n_maps = 0;
    for (int64_t f = 0; s == MC_OK && f < n; f++) {
        size_t len = strlen(names[f]) - 4;
        bool any = false;
        for (int si = 0; si < n_sets; si++) {
            if (!use[si]) continue;
            for (int64_t j = 0; j < sets[si].n; j++) {
                if (strlen(sets[si].texts[j]) != len || strncmp(sets[si].texts[j], names[f], len))
                    continue;
                if (*n_refs == *refs_cap) {
                    int64_t nc = *refs_cap ? *refs_cap * 2 : 16;
                    mask_ref *r = realloc(*refs, (size_t)nc * sizeof *r);
                    if (!r)
                        return mc_list_free(names, n), MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
                    *refs = r, *refs_cap = nc;
                }
                (*refs)[(*n_refs)++] =
                    (mask_ref){si, j, (const uint8_t *)(uintptr_t)n_maps}; /* offset, fixed below */
                any = true;
            }
        }
        if (!any) continue;
        char path[MC_PATH_CAP];
        mc_image im = {0};
        if (!mc_path_join(path, sizeof path, mdir, names[f]))
            s = MC_FAIL(err, MC_ERR_ARG, "path too long: %s", mdir);
        if (s == MC_OK) s = mc_image_load(path, NULL, &im, err);
        if (s == MC_OK && *H == 0) *H = im.h, *W = im.w;
        if (s == MC_OK && (im.h != *H || im.w != *W))
            s = MC_FAIL(err, MC_ERR_FORMAT,
                        "netdissect: %s is %dx%d, the image's other masks %dx%d", path, im.w, im.h,
                        *W, *H);
        size_t np = (size_t)im.w * (size_t)im.h;
        if (s == MC_OK && (size_t)(n_maps + 1) * np > *bits_cap) {
            size_t nc = (size_t)(n_maps + 1) * np * 2;
            uint8_t *b = realloc(*bits, nc);
            if (!b)
                s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
            else
                *bits = b, *bits_cap = nc;
        }
        if (s == MC_OK) {
            uint8_t *b = *bits + (size_t)n_maps * np;
            for (size_t p = 0; p < np; p++)
                b[p] = (im.data[3 * p] | im.data[3 * p + 1] | im.data[3 * p + 2]) != 0;
            n_maps++;
        }
        mc_image_free(&im);
    }
    mc_list_free(names, n);
    if (s != MC_OK) return s;
    size_t np = (size_t)*H * (size_t)*W;
    for (int64_t r = 0; r < *n_refs; r++)
        (*refs)[r].bits = *bits + (size_t)(uintptr_t)(*refs)[r].bits * np;
    if (*H == 0) { /* no mask: every concept absent; the map still counts at the image's size */
        mc_image im = {0};
        MC_TRY(mc_image_load(img_path, NULL, &im, err));
        *H = im.h, *W = im.w;
        mc_image_free(&im);
    }
    return MC_OK;
}

mc_status mc_netdissect_iou(const mc_comm *c, const mc_config *cfg, const mc_train_data *td,
                            mc_acts *acts, int64_t u0, int64_t rows, const mc_concepts *sets,
                            int n_sets, const bool *use, float **S, mc_error *err) {
    for (int si = 0; si < n_sets; si++) S[si] = NULL;
    int gh = 0, gw = 0;
    int64_t first = 0;
    mc_status s = MC_OK;
    if (acts->layout == MC_ACTS_SEQ) {
        int64_t g = (int64_t)llround(sqrt((double)(acts->tokens - 1)));
        if (acts->tokens < 2 || g * g != acts->tokens - 1)
            s = MC_FAIL(
                err, MC_ERR_SHAPE,
                "netdissect: %s has %lld tokens per image; expected a CLS token and a square "
                "grid of patch tokens",
                acts->name, (long long)acts->tokens);
        gh = gw = (int)g, first = 1;
    } else if (acts->layout == MC_ACTS_MAP) {
        gh = (int)acts->shape[2], gw = (int)acts->shape[3];
    } else {
        s = MC_FAIL(err, MC_ERR_CONFIG,
                    "netdissect: %s is one vector per image (no spatial map); extract with "
                    "extract.pool: all",
                    acts->name);
    }
    const int64_t P = (int64_t)gh * gw, D = acts->dim;
    int64_t NV = 0;
    for (int64_t i = 0; i < td->n_img; i++) NV += td->valid[i] != 0;
    char mroot[MC_PATH_CAP], droot[MC_PATH_CAP];
    if (s == MC_OK &&
        !(mc_netdissect_masks_dir(cfg, mroot, sizeof mroot) && train_dir(cfg, droot, sizeof droot)))
        s = MC_FAIL(err, MC_ERR_ARG, "netdissect: path too long");
    char **paths = NULL;
    int64_t n_paths = 0;
    if (s == MC_OK) s = mc_store_read_strings(td->st, "images/paths", &paths, &n_paths, err);
    if (s == MC_OK && n_paths != td->n_img)
        s = MC_FAIL(err, MC_ERR_FORMAT, "%s: images/paths has %lld entries, %lld images", td->path,
                    (long long)n_paths, (long long)td->n_img);
    float *vals = s == MC_OK ? mc_alloc_array((size_t)(rows * NV * P + 1), sizeof(float)) : NULL;
    float *tok = mc_alloc_array((size_t)D + 1, sizeof(float));
    double *thr = mc_alloc_array((size_t)rows + 1, sizeof(double));
    int64_t *sum_m = mc_calloc_array((size_t)rows + 1, sizeof(int64_t));
    int64_t **inter = calloc((size_t)n_sets + 1, sizeof *inter),
            **sum_l = calloc((size_t)n_sets + 1, sizeof *sum_l);
    if (s == MC_OK && (!vals || !tok || !thr || !sum_m || !inter || !sum_l))
        s = MC_FAIL(err, MC_ERR_NOMEM,
                    "netdissect: out of memory for %lld units x %lld images x %lld positions",
                    (long long)rows, (long long)NV, (long long)P);
    for (int si = 0; s == MC_OK && si < n_sets; si++) {
        if (!use[si]) continue;
        const int64_t Cn = sets[si].n;
        inter[si] = mc_calloc_array((size_t)(rows * Cn + 1), sizeof(int64_t));
        sum_l[si] = mc_calloc_array((size_t)Cn + 1, sizeof(int64_t));
        S[si] = mc_alloc_array((size_t)(rows * Cn + 1), sizeof(float));
        if (!inter[si] || !sum_l[si] || !S[si]) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    /* The maps of this rank's units: vals[u][v * P + p], v the valid image's rank in index order. */
    for (int64_t i = 0, v = 0; s == MC_OK && rows > 0 && i < td->n_img; i++) {
        if (!td->valid[i]) continue;
        for (int64_t p = 0; s == MC_OK && p < P; p++) {
            s = mc_acts_token(acts, i, first + p, tok, err);
            for (int64_t u = 0; s == MC_OK && u < rows; u++)
                vals[(u * NV + v) * P + p] = tok[u0 + u];
        }
        v++;
    }
    /* Thresholds: the exact top-0.5% quantile of each unit (settings.QUANTILE = 0.005). */
    float *scratch =
        s == MC_OK && rows > 0 ? mc_alloc_array((size_t)(NV * P + 1), sizeof(float)) : NULL;
    if (s == MC_OK && rows > 0 && !scratch) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    for (int64_t u = 0; s == MC_OK && u < rows && NV > 0; u++) {
        memcpy(scratch, vals + u * NV * P, (size_t)(NV * P) * sizeof(float));
        thr[u] = quantile_linear(scratch, NV * P, 1.0 - MC_NETDISSECT_QUANTILE);
    }
    free(scratch);
    /* IoU counts, image by image. */
    uint8_t *bits = NULL, *bin = NULL;
    size_t bits_cap = 0;
    mask_ref *refs = NULL;
    int64_t refs_cap = 0, n_refs = 0;
    float *up = NULL;
    axis_w ay = {0}, ax = {0};
    int cur_h = 0, cur_w = 0;
    const size_t droot_n = strlen(droot);
    for (int64_t i = 0, v = 0; s == MC_OK && rows > 0 && i < td->n_img; i++) {
        if (!td->valid[i]) continue;
        const char *path = paths[i];
        char stem[MC_PATH_CAP], mdir[MC_PATH_CAP];
        if (strncmp(path, droot, droot_n) || path[droot_n] != '/') {
            s = MC_FAIL(err, MC_ERR_FORMAT,
                        "netdissect: image %s is not under the training dataset's folder %s", path,
                        droot);
            break;
        }
        mc_strlcpy(stem, path + droot_n + 1, sizeof stem);
        char *dot = strrchr(stem, '.'), *slash = strrchr(stem, '/');
        if (dot && (!slash || dot > slash)) *dot = 0;
        if (!mc_path_join(mdir, sizeof mdir, mroot, stem)) {
            s = MC_FAIL(err, MC_ERR_ARG, "path too long: %s", mroot);
            break;
        }
        int H, W;
        s = image_masks(mdir, path, sets, use, n_sets, &bits, &bits_cap, &refs, &refs_cap, &n_refs,
                        &H, &W, err);
        if (s != MC_OK) break;
        if (H != cur_h || W != cur_w) {
            free(up), free(bin), free(ay.i0), free(ay.i1), free(ay.l0), free(ay.l1), free(ax.i0),
                free(ax.i1), free(ax.l0), free(ax.l1);
            up = mc_alloc_array((size_t)H * (size_t)W, sizeof(float));
            bin = mc_alloc_array((size_t)H * (size_t)W, 1);
            ay = (axis_w){
                mc_alloc_array((size_t)H, sizeof(int)), mc_alloc_array((size_t)H, sizeof(int)),
                mc_alloc_array((size_t)H, sizeof(float)), mc_alloc_array((size_t)H, sizeof(float))};
            ax = (axis_w){
                mc_alloc_array((size_t)W, sizeof(int)), mc_alloc_array((size_t)W, sizeof(int)),
                mc_alloc_array((size_t)W, sizeof(float)), mc_alloc_array((size_t)W, sizeof(float))};
            cur_h = H, cur_w = W;
            if (!up || !bin || !ay.i0 || !ay.i1 || !ay.l0 || !ay.l1 || !ax.i0 || !ax.i1 || !ax.l0 ||
                !ax.l1) {
                s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
                cur_h = cur_w = 0;
                break;
            }
            axis_weights(gh, H, &ay);
            axis_weights(gw, W, &ax);
        }
        const int64_t NP = (int64_t)H * W;
        for (int64_t r = 0; r < n_refs; r++) {
            int64_t cnt = 0;
            for (int64_t q = 0; q < NP; q++) cnt += refs[r].bits[q];
            sum_l[refs[r].set][refs[r].concept] += cnt;
        }
        for (int64_t u = 0; u < rows; u++) {
            const float *m = vals + (u * NV + v) * P;
            float mx = -INFINITY;
            for (int64_t p = 0; p < P; p++) mx = m[p] > mx ? m[p] : mx;
            if (!((double)mx > thr[u])) continue;
            int64_t cnt = 0;
            for (int y = 0; y < H; y++) {
                const float *r0 = m + (int64_t)ay.i0[y] * gw, *r1 = m + (int64_t)ay.i1[y] * gw;
                for (int x = 0; x < W; x++) {
                    float t = ay.l0[y] * (ax.l0[x] * r0[ax.i0[x]] + ax.l1[x] * r0[ax.i1[x]]) +
                              ay.l1[y] * (ax.l0[x] * r1[ax.i0[x]] + ax.l1[x] * r1[ax.i1[x]]);
                    uint8_t b = (double)t > thr[u];
                    bin[(int64_t)y * W + x] = b;
                    cnt += b;
                }
            }
            sum_m[u] += cnt;
            for (int64_t r = 0; r < n_refs; r++) {
                int64_t both = 0;
                for (int64_t q = 0; q < NP; q++) both += bin[q] & refs[r].bits[q];
                inter[refs[r].set][u * sets[refs[r].set].n + refs[r].concept] += both;
            }
        }
        v++;
    }
    for (int si = 0; s == MC_OK && si < n_sets; si++) {
        if (!use[si]) continue;
        const int64_t Cn = sets[si].n;
        for (int64_t u = 0; u < rows; u++)
            for (int64_t j = 0; j < Cn; j++) {
                int64_t b = inter[si][u * Cn + j], den = sum_m[u] + sum_l[si][j] - b;
                S[si][u * Cn + j] = den > 0 ? (float)((double)b / (double)den) : 0.0f;
            }
    }
    free(up), free(bin), free(ay.i0), free(ay.i1), free(ay.l0), free(ay.l1), free(ax.i0),
        free(ax.i1), free(ax.l0), free(ax.l1);
    free(bits), free(refs), free(vals), free(tok), free(thr), free(sum_m);
    for (int si = 0; si < n_sets; si++) free(inter[si]), free(sum_l[si]);
    free(inter), free(sum_l);
    if (paths) mc_strings_free(&paths, n_paths);
    s = mc_comm_agree(c, s, err);
    if (s != MC_OK)
        for (int si = 0; si < n_sets; si++) free(S[si]), S[si] = NULL;
    return s;
}
