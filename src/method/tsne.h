/* tsne.h - t-SNE (van der Maaten & Hinton 2008; Barnes-Hut: van der Maaten 2014) for Figure 3,
 * the SAE features localized for chosen classes embedded in 2-D, and sklearn's trustworthiness.
 *
 * The algorithm follows scikit-learn's TSNE (1.2) step by step: squared euclidean input
 * distances, a binary search of each point's precision to the perplexity (tolerance 1e-5 on the
 * entropy, 100 steps), P symmetrised and normalised to sum 1 ((P + P^T) / 2N); exact P over all
 * pairs (floored at DBL_EPSILON) or, for Barnes-Hut, over each point's min(n - 1, 3 perplexity + 1)
 * nearest neighbours; Student-t with max(dims - 1, 1) degrees of freedom; gradient descent with
 * early exaggeration for the first exaggeration_iters steps at momentum 0.5, then momentum 0.8
 * (update and gains restart between the two phases), gains +0.2 / x0.8 floored at min_gain 0.01,
 * the error checked every 50 steps, stopping after n_iter_without_progress steps without a better
 * error or when the gradient norm falls to min_grad_norm. Initialisation 'pca': the first dims
 * principal components, signs fixed so each component's largest-magnitude score is positive,
 * scaled so the first has standard deviation 1e-4; 'random': N(0, 1e-4^2) keyed by (seed, index).
 *
 * Everything is computed in double in a fixed order: every per-point quantity is written by the
 * one thread that owns the point and every sum is taken serially afterwards, so the same input,
 * config and seed give the same bits whatever the thread count (mc_set_threads).
 */
#ifndef MICLIP_METHOD_TSNE_H
#define MICLIP_METHOD_TSNE_H

#include <stdint.h>

#include "miclip/status.h"

typedef enum { MC_TSNE_EXACT = 0, MC_TSNE_BARNES_HUT = 1 } mc_tsne_method;
typedef enum { MC_TSNE_INIT_PCA = 0, MC_TSNE_INIT_RANDOM = 1 } mc_tsne_init;

typedef struct {
    int dims;                    /* embedding dimensions (sklearn n_components); Barnes-Hut: 1..3 */
    double perplexity;           /* > 0 and < n */
    int max_iter;                /* total gradient steps, exaggeration phase included */
    double early_exaggeration;   /* >= 1; P is multiplied by it for the first exaggeration_iters */
    int exaggeration_iters;      /* 0..max_iter (sklearn: 250) */
    double learning_rate;        /* <= 0: 'auto' = max(n / early_exaggeration / 4, 50) */
    int n_iter_without_progress; /* stop after this many steps without a lower error (sklearn 300) */
    double min_grad_norm;        /* stop when the gradient norm is at most this (sklearn 1e-7) */
    mc_tsne_init init;
    uint64_t seed; /* keys the random initialisation (unused by 'pca') */
    mc_tsne_method method;
    double theta; /* Barnes-Hut angle, 0..1 (sklearn angle 0.5) */
} mc_tsne_config;

/* sklearn's defaults: dims 2, perplexity 30, max_iter 1000, exaggeration 12 for 250 steps,
 * learning rate auto, 300 steps without progress, min_grad_norm 1e-7, init pca, seed 0,
 * Barnes-Hut with theta 0.5. */
mc_tsne_config mc_tsne_defaults(void);

/* Embeds the n rows of x [n * d] (row-major, finite) into y [n * cfg->dims] (caller-owned).
 * *kl (may be NULL) receives the KL divergence at the last step, computed as sklearn reports
 * kl_divergence_ (over the sparse P for Barnes-Hut); *n_iter (may be NULL) the steps taken.
 * MC_ERR_ARG for a bad config (n < 2, perplexity >= n, ...), MC_ERR_NUMERIC for a non-finite x,
 * MC_ERR_NOMEM when the work arrays do not fit. Exact needs 8 n^2 bytes for P; Barnes-Hut
 * O(n perplexity). */
mc_status mc_tsne(const float *x, int64_t n, int64_t d, const mc_tsne_config *cfg, double *y,
                  double *kl, int *n_iter, mc_error *err);

/* sklearn.manifold.trustworthiness(x, y, n_neighbors=k, metric='euclidean'): 1 minus the
 * normalised penalty of embedding neighbours that are not input neighbours, in [0, 1].
 * Ties in distance rank the lower index first. Returns NaN when k < 1, k >= n / 2 or an
 * allocation fails. O(n^2 (d + log n)) time, O(n) memory per point. */
double mc_trustworthiness(const float *x, const double *y, int64_t n, int64_t d, int dims, int k);

#endif
