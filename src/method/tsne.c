/* tsne.c - t-SNE, exact and Barnes-Hut, written from van der Maaten & Hinton (2008), van der
 * Maaten (2014) and scikit-learn's documented behaviour (see tsne.h for the steps). Determinism:
 * every parallel loop (mc_parallel_rows) writes only the rows it owns, and every reduction is a
 * serial sum over per-row partials afterwards. */
#include "method/tsne.h"

#include <float.h>
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/checked.h"
#include "miclip/train.h"
#include "nn/parallel.h"

#define TSNE_PERP_TOL 1e-5  /* sklearn's PERPLEXITY_TOLERANCE on the entropy (nats) */
#define TSNE_PERP_STEPS 100 /* sklearn's n_steps of the binary search */
#define TSNE_EPS_SUM 1e-8   /* sklearn's EPSILON_DBL: a row whose kernel underflows */
#define TSNE_ITER_CHECK 50  /* sklearn's _N_ITER_CHECK */
#define TSNE_MIN_GAIN 0.01
#define TSNE_MAX_DEPTH 48             /* tree cells below ~2^-48 of the box: points merged */
#define TSNE_RNG_STREAM 0x74736e65ull /* 'tsne': the random initialisation's stream */
#define TSNE_PCA_KEY 0x70636131ull    /* fixed start of the PCA subspace iteration */

mc_tsne_config mc_tsne_defaults(void) {
    return (mc_tsne_config){.dims = 2,
                            .perplexity = 30.0,
                            .max_iter = 1000,
                            .early_exaggeration = 12.0,
                            .exaggeration_iters = 250,
                            .learning_rate = 0.0,
                            .n_iter_without_progress = 300,
                            .min_grad_norm = 1e-7,
                            .init = MC_TSNE_INIT_PCA,
                            .seed = 0,
                            .method = MC_TSNE_BARNES_HUT,
                            .theta = 0.5};
}

/* Squared euclidean distance of two float rows in double, four partial sums in a fixed order. */
static double sqdist_f(const float *a, const float *b, int64_t d) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t k = 0;
    for (; k + 4 <= d; k += 4) {
        double t0 = (double)a[k] - b[k], t1 = (double)a[k + 1] - b[k + 1];
        double t2 = (double)a[k + 2] - b[k + 2], t3 = (double)a[k + 3] - b[k + 3];
        s0 += t0 * t0;
        s1 += t1 * t1;
        s2 += t2 * t2;
        s3 += t3 * t3;
    }
    for (; k < d; k++) {
        double t = (double)a[k] - b[k];
        s0 += t * t;
    }
    return (s0 + s1) + (s2 + s3);
}

/* The conditional distribution p_{j|i} over m candidates with squared distances d2, its
 * precision found by sklearn's binary search on the entropy (target log(perplexity)). */
static void perplexity_row(const double *d2, int64_t m, double target, double *p) {
    double beta = 1.0, beta_min = -INFINITY, beta_max = INFINITY;
    for (int step = 0; step < TSNE_PERP_STEPS; step++) {
        double sum = 0.0;
        for (int64_t j = 0; j < m; j++) {
            p[j] = exp(-d2[j] * beta);
            sum += p[j];
        }
        if (sum == 0.0) sum = TSNE_EPS_SUM;
        double sum_dp = 0.0;
        for (int64_t j = 0; j < m; j++) {
            p[j] /= sum;
            sum_dp += d2[j] * p[j];
        }
        double diff = log(sum) + beta * sum_dp - target;
        if (fabs(diff) <= TSNE_PERP_TOL) break;
        if (diff > 0) {
            beta_min = beta;
            beta = beta_max == INFINITY ? beta * 2.0 : (beta + beta_max) / 2.0;
        } else {
            beta_max = beta;
            beta = beta_min == -INFINITY ? beta / 2.0 : (beta + beta_min) / 2.0;
        }
    }
}

/* ---- input affinities -------------------------------------------------------------------- */

typedef struct {
    const float *x;
    int64_t n, d, k;
    double target;
    double *P;    /* exact: [n * n] conditional rows */
    int64_t *nbr; /* Barnes-Hut: [n * k] neighbour ids */
    double *pc;   /* Barnes-Hut: [n * k] conditional probabilities */
    atomic_int nomem;
} aff_ctx;

static void exact_rows(int64_t r0, int64_t r1, void *vc) {
    aff_ctx *c = vc;
    int64_t n = c->n;
    double *d2 = mc_alloc_array((size_t)n, sizeof *d2);
    double *p = mc_alloc_array((size_t)n, sizeof *p);
    if (!d2 || !p) {
        atomic_store(&c->nomem, 1);
    } else {
        for (int64_t i = r0; i < r1; i++) {
            int64_t m = 0;
            for (int64_t j = 0; j < n; j++)
                if (j != i) d2[m++] = sqdist_f(c->x + i * c->d, c->x + j * c->d, c->d);
            perplexity_row(d2, m, c->target, p);
            double *row = c->P + i * n;
            m = 0;
            for (int64_t j = 0; j < n; j++) row[j] = j == i ? 0.0 : p[m++];
        }
    }
    free(d2);
    free(p);
}

typedef struct {
    double d2;
    int64_t j;
} dist_idx;

static int cmp_dist_idx(const void *a, const void *b) {
    const dist_idx *u = a, *v = b;
    if (u->d2 < v->d2) return -1;
    if (u->d2 > v->d2) return 1;
    return (u->j > v->j) - (u->j < v->j);
}

static void knn_rows(int64_t r0, int64_t r1, void *vc) {
    aff_ctx *c = vc;
    int64_t n = c->n, k = c->k;
    dist_idx *all = mc_alloc_array((size_t)n, sizeof *all);
    double *d2 = mc_alloc_array((size_t)k, sizeof *d2);
    if (!all || !d2) {
        atomic_store(&c->nomem, 1);
    } else {
        for (int64_t i = r0; i < r1; i++) {
            int64_t m = 0;
            for (int64_t j = 0; j < n; j++)
                if (j != i)
                    all[m++] = (dist_idx){sqdist_f(c->x + i * c->d, c->x + j * c->d, c->d), j};
            qsort(all, (size_t)m, sizeof *all, cmp_dist_idx);
            for (int64_t t = 0; t < k; t++) {
                d2[t] = all[t].d2;
                c->nbr[i * k + t] = all[t].j;
            }
            perplexity_row(d2, k, c->target, c->pc + i * k);
        }
    }
    free(all);
    free(d2);
}

/* Symmetric sparse P in CSR: row i holds p_{j|i} + p_{i|j} for j in knn(i) or i in knn(j),
 * columns ascending, normalised to sum 1. */
typedef struct {
    int64_t *ptr; /* [n + 1] */
    int64_t *col;
    double *val;
} csr;

typedef struct {
    int64_t j;
    double v;
} col_val;

static int cmp_col_val(const void *a, const void *b) {
    const col_val *u = a, *v = b;
    return (u->j > v->j) - (u->j < v->j);
}

static mc_status sym_sparse(const int64_t *nbr, const double *pc, int64_t n, int64_t k, csr *out,
                            mc_error *err) {
    size_t nk = (size_t)n * (size_t)k;
    int64_t *cnt = mc_calloc_array((size_t)n + 1, sizeof *cnt);
    col_val *ent = mc_alloc_array(2 * nk, sizeof *ent);
    int64_t *fill = mc_alloc_array((size_t)n, sizeof *fill);
    mc_status st = MC_OK;
    if (!cnt || !ent || !fill) {
        st =
            MC_FAIL(err, MC_ERR_NOMEM, "t-SNE: cannot allocate the sparse affinities (%lld x %lld)",
                    (long long)n, (long long)k);
        goto done;
    }
    for (int64_t i = 0; i < n; i++) {
        cnt[i + 1] += k;
        for (int64_t t = 0; t < k; t++) cnt[nbr[i * k + t] + 1]++;
    }
    for (int64_t i = 0; i < n; i++) cnt[i + 1] += cnt[i];
    for (int64_t i = 0; i < n; i++) fill[i] = cnt[i];
    for (int64_t i = 0; i < n; i++)
        for (int64_t t = 0; t < k; t++) {
            int64_t j = nbr[i * k + t];
            double v = pc[i * k + t];
            ent[fill[i]++] = (col_val){j, v};
            ent[fill[j]++] = (col_val){i, v};
        }
    /* Sort each row by column and merge the (at most two) entries of a pair; a + b is
     * commutative in IEEE arithmetic, so P_ij and P_ji get the same bits. */
    int64_t w = 0;
    double total = 0.0;
    for (int64_t i = 0; i < n; i++) {
        int64_t a = cnt[i], b = cnt[i + 1];
        qsort(ent + a, (size_t)(b - a), sizeof *ent, cmp_col_val);
        cnt[i] = w;
        for (int64_t e = a; e < b; e++) {
            if (w > cnt[i] && ent[w - 1].j == ent[e].j)
                ent[w - 1].v += ent[e].v;
            else
                ent[w++] = ent[e];
        }
    }
    cnt[n] = w;
    for (int64_t e = 0; e < w; e++) total += ent[e].v;
    if (total < DBL_EPSILON) total = DBL_EPSILON;
    out->ptr = cnt;
    out->col = mc_alloc_array((size_t)w, sizeof *out->col);
    out->val = mc_alloc_array((size_t)w, sizeof *out->val);
    cnt = NULL;
    if (!out->col || !out->val) {
        st = MC_FAIL(err, MC_ERR_NOMEM, "t-SNE: cannot allocate the sparse affinities");
        goto done;
    }
    for (int64_t e = 0; e < w; e++) {
        out->col[e] = ent[e].j;
        out->val[e] = ent[e].v / total;
    }
done:
    free(cnt);
    free(ent);
    free(fill);
    return st;
}

/* ---- PCA initialisation ------------------------------------------------------------------ */

/* Cyclic Jacobi eigen-decomposition of the symmetric r x r matrix a (destroyed): eigenvalues in
 * ev, eigenvectors in the columns of q. */
static void jacobi_eigen(double *a, int r, double *ev, double *q) {
    for (int i = 0; i < r; i++)
        for (int j = 0; j < r; j++) q[i * r + j] = i == j;
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0.0, diag = 0.0;
        for (int i = 0; i < r; i++)
            for (int j = 0; j < r; j++) {
                if (i != j)
                    off += a[i * r + j] * a[i * r + j];
                else
                    diag += a[i * r + j] * a[i * r + j];
            }
        if (off <= 1e-30 * diag || off == 0.0) break;
        for (int p = 0; p < r; p++)
            for (int s = p + 1; s < r; s++) {
                double apq = a[p * r + s];
                if (apq == 0.0) continue;
                double theta = (a[s * r + s] - a[p * r + p]) / (2.0 * apq);
                double t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1.0));
                double cs = 1.0 / sqrt(t * t + 1.0), sn = t * cs;
                for (int k = 0; k < r; k++) { /* columns p, s */
                    double akp = a[k * r + p], aks = a[k * r + s];
                    a[k * r + p] = cs * akp - sn * aks;
                    a[k * r + s] = sn * akp + cs * aks;
                }
                for (int k = 0; k < r; k++) { /* rows p, s */
                    double apk = a[p * r + k], ask = a[s * r + k];
                    a[p * r + k] = cs * apk - sn * ask;
                    a[s * r + k] = sn * apk + cs * ask;
                }
                for (int k = 0; k < r; k++) {
                    double qkp = q[k * r + p], qks = q[k * r + s];
                    q[k * r + p] = cs * qkp - sn * qks;
                    q[k * r + s] = sn * qkp + cs * qks;
                }
            }
    }
    for (int i = 0; i < r; i++) ev[i] = a[i * r + i];
}

typedef struct {
    const double *A; /* [m * L] */
    int64_t m, L;
    double *S; /* [m * m] */
} gram_ctx;

static void gram_rows(int64_t r0, int64_t r1, void *vc) {
    gram_ctx *c = vc;
    for (int64_t a = r0; a < r1; a++)
        for (int64_t b = a; b < c->m; b++) {
            const double *u = c->A + a * c->L, *v = c->A + b * c->L;
            double s0 = 0, s1 = 0;
            int64_t t = 0;
            for (; t + 2 <= c->L; t += 2) {
                s0 += u[t] * v[t];
                s1 += u[t + 1] * v[t + 1];
            }
            if (t < c->L) s0 += u[t] * v[t];
            c->S[a * c->m + b] = c->S[b * c->m + a] = s0 + s1;
        }
}

/* Modified Gram-Schmidt on the r columns of V [m x r]; a column that vanishes is replaced by a
 * keyed random one and re-orthogonalised. */
static void orthonormalise(double *V, int64_t m, int r, int round) {
    for (int c = 0; c < r; c++) {
        for (int attempt = 0; attempt < 4; attempt++) {
            for (int p = 0; p < c; p++) {
                double dot = 0.0;
                for (int64_t i = 0; i < m; i++) dot += V[i * r + p] * V[i * r + c];
                for (int64_t i = 0; i < m; i++) V[i * r + c] -= dot * V[i * r + p];
            }
            double nrm = 0.0;
            for (int64_t i = 0; i < m; i++) nrm += V[i * r + c] * V[i * r + c];
            nrm = sqrt(nrm);
            if (nrm > 1e-300) {
                for (int64_t i = 0; i < m; i++) V[i * r + c] /= nrm;
                break;
            }
            for (int64_t i = 0; i < m; i++)
                V[i * r + c] = mc_rng_normal(
                    TSNE_PCA_KEY, (uint64_t)(round * 64 + c * 4 + attempt + 1), (uint64_t)i);
        }
    }
}

/* The first dims principal-component scores of x, u-based signs (sklearn 1.2's svd_flip: the
 * largest-magnitude score of each component is positive), scaled so the first has std 1e-4. */
static mc_status pca_init(const float *x, int64_t n, int64_t d, int dims, double *y,
                          mc_error *err) {
    int64_t m = n < d ? n : d, L = n < d ? d : n;
    if (dims > m)
        return MC_FAIL(err, MC_ERR_ARG,
                       "t-SNE: init 'pca' needs dims (%d) <= min(n, d) = %lld; use init 'random'",
                       dims, (long long)m);
    int r = (int)(m < dims + 10 ? m : dims + 10);
    mc_status st = MC_OK;
    double *mean = mc_calloc_array((size_t)d, sizeof *mean);
    double *A = mc_alloc_array((size_t)m * (size_t)L, sizeof *A);
    double *S = mc_alloc_array((size_t)m * (size_t)m, sizeof *S);
    double *V = mc_alloc_array((size_t)m * (size_t)r, sizeof *V);
    double *W = mc_alloc_array((size_t)m * (size_t)r, sizeof *W);
    double *T = mc_alloc_array((size_t)r * (size_t)r, sizeof *T);
    double *Q = mc_alloc_array((size_t)r * (size_t)r, sizeof *Q);
    double *ev = mc_alloc_array((size_t)r, sizeof *ev);
    int *order = mc_alloc_array((size_t)r, sizeof *order);
    double *vr = mc_alloc_array(2 * (size_t)r, sizeof *vr), *wr = vr ? vr + r : NULL;
    if (!mean || !A || !S || !V || !W || !T || !Q || !ev || !order || !vr) {
        st = MC_FAIL(err, MC_ERR_NOMEM,
                     "t-SNE: cannot allocate the PCA initialisation (%lld x %lld)", (long long)m,
                     (long long)L);
        goto done;
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < d; k++) mean[k] += x[i * d + k];
    for (int64_t k = 0; k < d; k++) mean[k] /= (double)n;
    /* A = centred X (n < d: rows are points) or its transpose (rows are features). */
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < d; k++) {
            double v = (double)x[i * d + k] - mean[k];
            if (n < d)
                A[i * d + k] = v;
            else
                A[k * n + i] = v;
        }
    gram_ctx g = {A, m, L, S};
    mc_parallel_rows(m, m * L / 2 + 1, gram_rows, &g);
    /* Subspace iteration with Rayleigh-Ritz every 10 rounds, until the top dims Ritz pairs'
     * residuals are below 1e-10 of the largest eigenvalue. */
    for (int64_t i = 0; i < m; i++)
        for (int c = 0; c < r; c++)
            V[i * r + c] = mc_rng_normal(TSNE_PCA_KEY, (uint64_t)c, (uint64_t)i);
    orthonormalise(V, m, r, 0);
    for (int round = 1; round <= 2000; round++) {
        for (int64_t i = 0; i < m; i++)
            for (int c = 0; c < r; c++) {
                double s = 0.0;
                for (int64_t j = 0; j < m; j++) s += S[i * m + j] * V[j * r + c];
                W[i * r + c] = s;
            }
        bool ritz = round % 10 == 0 || round == 2000;
        if (ritz) {
            /* T = V^T S V with V orthonormal; rotate V to the Ritz vectors, sorted descending. */
            for (int a = 0; a < r; a++)
                for (int b = 0; b < r; b++) {
                    double s = 0.0;
                    for (int64_t i = 0; i < m; i++) s += V[i * r + a] * W[i * r + b];
                    T[a * r + b] = s;
                }
            for (int a = 0; a < r; a++)
                for (int b = a + 1; b < r; b++)
                    T[a * r + b] = T[b * r + a] = 0.5 * (T[a * r + b] + T[b * r + a]);
            jacobi_eigen(T, r, ev, Q);
            for (int a = 0; a < r; a++) order[a] = a;
            for (int a = 1; a < r; a++) /* insertion sort, descending, stable */
                for (int b = a; b > 0 && ev[order[b]] > ev[order[b - 1]]; b--) {
                    int t = order[b];
                    order[b] = order[b - 1];
                    order[b - 1] = t;
                }
            double resid = 0.0, top = fabs(ev[order[0]]);
            for (int64_t i = 0; i < m; i++) { /* rotated V (in T's space) and W: rows at a time */
                for (int c = 0; c < r; c++) {
                    double sv = 0.0, sw = 0.0;
                    for (int a = 0; a < r; a++) {
                        sv += V[i * r + a] * Q[a * r + order[c]];
                        sw += W[i * r + a] * Q[a * r + order[c]];
                    }
                    vr[c] = sv;
                    wr[c] = sw;
                }
                for (int c = 0; c < r; c++) {
                    V[i * r + c] = vr[c];
                    W[i * r + c] = wr[c];
                }
            }
            for (int c = 0; c < dims; c++) {
                double s = 0.0;
                for (int64_t i = 0; i < m; i++) {
                    double t = W[i * r + c] - ev[order[c]] * V[i * r + c];
                    s += t * t;
                }
                if (sqrt(s) > resid) resid = sqrt(s);
            }
            if (resid <= 1e-10 * top || top == 0.0) break;
        }
        memcpy(V, W, (size_t)m * (size_t)r * sizeof *V);
        orthonormalise(V, m, r, round);
    }
    /* Scores: n >= d: Xc v (A holds Xc^T); n < d: S's eigenvector u times sqrt(eigenvalue). */
    for (int c = 0; c < dims; c++) {
        if (n < d) {
            double sv = sqrt(ev[order[c]] > 0 ? ev[order[c]] : 0.0);
            for (int64_t i = 0; i < n; i++) y[i * dims + c] = V[i * r + c] * sv;
        } else {
            for (int64_t i = 0; i < n; i++) {
                double s = 0.0;
                for (int64_t k = 0; k < d; k++) s += A[k * n + i] * V[k * r + c];
                y[i * dims + c] = s;
            }
        }
        int64_t arg = 0;
        for (int64_t i = 1; i < n; i++)
            if (fabs(y[i * dims + c]) > fabs(y[arg * dims + c])) arg = i;
        if (y[arg * dims + c] < 0)
            for (int64_t i = 0; i < n; i++) y[i * dims + c] = -y[i * dims + c];
    }
    double mu = 0.0, var = 0.0;
    for (int64_t i = 0; i < n; i++) mu += y[i * dims];
    mu /= (double)n;
    for (int64_t i = 0; i < n; i++) var += (y[i * dims] - mu) * (y[i * dims] - mu);
    double sd = sqrt(var / (double)n);
    if (!(sd > 0.0) || !isfinite(sd)) {
        st = MC_FAIL(err, MC_ERR_NUMERIC,
                     "t-SNE: init 'pca': the first principal component has zero variance (all %lld "
                     "points identical?); use init 'random'",
                     (long long)n);
        goto done;
    }
    for (int64_t i = 0; i < n * dims; i++) y[i] = y[i] / sd * 1e-4;
done:
    free(mean);
    free(A);
    free(S);
    free(V);
    free(W);
    free(T);
    free(Q);
    free(ev);
    free(order);
    free(vr);
    return st;
}

/* ---- the Barnes-Hut tree ----------------------------------------------------------------- */

typedef struct {
    double lo[3], hi[3], com[3];
    double w2; /* squared largest side */
    int64_t count;
    int64_t child; /* first of 2^dims consecutive children, -1 for a leaf */
    int64_t head;  /* a leaf's points (linked through next) */
    int depth;
} bh_cell;

typedef struct {
    int dims;
    bh_cell *cell;
    int64_t ncell, cap;
    int64_t *next, *leaf_of;
} bh_tree;

static int64_t bh_new_cells(bh_tree *t, int64_t count) {
    if (t->ncell + count > t->cap) {
        int64_t cap = t->cap * 2 > t->ncell + count ? t->cap * 2 : t->ncell + count;
        size_t bytes;
        if (!mc_size_mul((size_t)cap, sizeof(bh_cell), &bytes)) return -1;
        bh_cell *c = realloc(t->cell, bytes);
        if (!c) return -1;
        t->cell = c;
        t->cap = cap;
    }
    int64_t first = t->ncell;
    t->ncell += count;
    return first;
}

static void bh_init_cell(bh_cell *c, int dims, const double *lo, const double *hi, int depth) {
    memset(c, 0, sizeof *c);
    c->w2 = 0.0;
    for (int k = 0; k < dims; k++) {
        c->lo[k] = lo[k];
        c->hi[k] = hi[k];
        double w = hi[k] - lo[k];
        if (w * w > c->w2) c->w2 = w * w;
    }
    c->child = -1;
    c->head = -1;
    c->depth = depth;
}

static int bh_child_of(const bh_cell *c, int dims, const double *p) {
    int q = 0;
    for (int k = 0; k < dims; k++)
        if (p[k] > 0.5 * (c->lo[k] + c->hi[k])) q |= 1 << k;
    return q;
}

/* Builds the tree over y in index order; false when cells cannot be allocated. */
static bool bh_build(bh_tree *t, const double *y, int64_t n) {
    int dims = t->dims, nch = 1 << dims;
    t->ncell = 0;
    double lo[3], hi[3];
    for (int k = 0; k < dims; k++) {
        lo[k] = INFINITY;
        hi[k] = -INFINITY;
        for (int64_t i = 0; i < n; i++) {
            if (y[i * dims + k] < lo[k]) lo[k] = y[i * dims + k];
            if (y[i * dims + k] > hi[k]) hi[k] = y[i * dims + k];
        }
        /* sklearn's padding: every point strictly inside, for positive, negative and small. */
        double a = hi[k] * (1.0 + 1e-3 * (hi[k] > 0   ? 1.0
                                          : hi[k] < 0 ? -1.0
                                                      : 0.0)),
               b = hi[k] + 1e-3;
        hi[k] = a > b ? a : b;
    }
    if (bh_new_cells(t, 1) < 0) return false;
    bh_init_cell(&t->cell[0], dims, lo, hi, 0);
    for (int64_t p = 0; p < n; p++) {
        const double *yp = y + p * dims;
        int64_t ci = 0;
        for (;;) {
            bh_cell *c = &t->cell[ci];
            c->count++;
            for (int k = 0; k < dims; k++) c->com[k] += yp[k];
            if (c->child >= 0) {
                ci = c->child + bh_child_of(c, dims, yp);
                continue;
            }
            if (c->head < 0) {
                c->head = p;
                t->next[p] = -1;
                break;
            }
            const double *yq = y + c->head * dims;
            bool same = true;
            for (int k = 0; k < dims; k++) same = same && yq[k] == yp[k];
            if (same || c->depth >= TSNE_MAX_DEPTH) {
                t->next[p] = c->head;
                c->head = p;
                break;
            }
            /* Split: the leaf's points (all at yq) move to one child, then p goes on down. */
            int64_t first = bh_new_cells(t, nch);
            if (first < 0) return false;
            c = &t->cell[ci]; /* realloc may have moved it */
            for (int q = 0; q < nch; q++) {
                double clo[3], chi[3];
                for (int k = 0; k < dims; k++) {
                    double mid = 0.5 * (c->lo[k] + c->hi[k]);
                    clo[k] = (q >> k) & 1 ? mid : c->lo[k];
                    chi[k] = (q >> k) & 1 ? c->hi[k] : mid;
                }
                bh_init_cell(&t->cell[first + q], dims, clo, chi, c->depth + 1);
            }
            bh_cell *dst = &t->cell[first + bh_child_of(c, dims, yq)];
            dst->count = c->count - 1;
            for (int k = 0; k < dims; k++) dst->com[k] = c->com[k] - yp[k];
            dst->head = c->head;
            c->head = -1;
            c->child = first;
            ci = first + bh_child_of(c, dims, yp);
        }
    }
    for (int64_t ci = 0; ci < t->ncell; ci++) {
        bh_cell *c = &t->cell[ci];
        for (int k = 0; k < dims; k++) c->com[k] = c->count ? c->com[k] / (double)c->count : 0.0;
        if (c->child < 0)
            for (int64_t p = c->head; p >= 0; p = t->next[p]) t->leaf_of[p] = ci;
    }
    return true;
}

/* ---- gradients --------------------------------------------------------------------------- */

typedef struct {
    const double *y;
    int64_t n;
    int dims;
    double dof, expo; /* Student-t degrees of freedom and (dof + 1) / 2 */
    double exag;      /* the P multiplier of this phase */
    const double *P;  /* exact: [n * n] */
    const csr *sp;    /* Barnes-Hut */
    const bh_tree *tree;
    double theta2;
    double *attr, *rep; /* [n * dims] */
    double *rowz;       /* [n] */
    double Z;           /* set before the error pass */
    double *rowkl;      /* [n] */
} grad_ctx;

static inline double kernel(const grad_ctx *c, double d2) {
    return c->dof == 1.0 ? 1.0 / (1.0 + d2) : pow(c->dof / (c->dof + d2), c->expo);
}

static void exact_grad_rows(int64_t r0, int64_t r1, void *vc) {
    grad_ctx *c = vc;
    int dims = c->dims;
    for (int64_t i = r0; i < r1; i++) {
        double at[3] = {0}, rp[3] = {0}, z = 0.0;
        double *atv = dims <= 3 ? at : c->attr + i * dims,
               *rpv = dims <= 3 ? rp : c->rep + i * dims;
        if (dims > 3)
            for (int k = 0; k < dims; k++) atv[k] = rpv[k] = 0.0;
        const double *yi = c->y + i * dims, *Pi = c->P + i * c->n;
        for (int64_t j = 0; j < c->n; j++) {
            if (j == i) continue;
            const double *yj = c->y + j * dims;
            double d2 = 0.0;
            for (int k = 0; k < dims; k++) d2 += (yi[k] - yj[k]) * (yi[k] - yj[k]);
            double w = kernel(c, d2), pw = c->exag * Pi[j] * w, ww = w * w;
            z += w;
            for (int k = 0; k < dims; k++) {
                double df = yi[k] - yj[k];
                atv[k] += pw * df;
                rpv[k] += ww * df;
            }
        }
        if (dims <= 3)
            for (int k = 0; k < dims; k++) {
                c->attr[i * dims + k] = at[k];
                c->rep[i * dims + k] = rp[k];
            }
        c->rowz[i] = z;
    }
}

static void exact_kl_rows(int64_t r0, int64_t r1, void *vc) {
    grad_ctx *c = vc;
    int dims = c->dims;
    for (int64_t i = r0; i < r1; i++) {
        const double *yi = c->y + i * dims, *Pi = c->P + i * c->n;
        double s = 0.0;
        for (int64_t j = 0; j < c->n; j++) {
            if (j == i) continue;
            const double *yj = c->y + j * dims;
            double d2 = 0.0;
            for (int k = 0; k < dims; k++) d2 += (yi[k] - yj[k]) * (yi[k] - yj[k]);
            double p = c->exag * Pi[j], q = kernel(c, d2) / c->Z;
            s += p * log(fmax(p, DBL_EPSILON) / fmax(q, DBL_EPSILON));
        }
        c->rowkl[i] = s;
    }
}

static void bh_visit(const grad_ctx *c, int64_t ci, int64_t i, double *neg, double *z) {
    const bh_cell *cell = &c->tree->cell[ci];
    if (cell->count == 0) return;
    int dims = c->dims;
    const double *yi = c->y + i * dims;
    double delta[3], d2 = 0.0;
    for (int k = 0; k < dims; k++) {
        delta[k] = yi[k] - cell->com[k];
        d2 += delta[k] * delta[k];
    }
    double size;
    if (cell->child < 0) {
        size = (double)(cell->count - (c->tree->leaf_of[i] == ci)); /* never itself */
        if (size == 0.0) return;
    } else if (cell->w2 / d2 < c->theta2) {
        size = (double)cell->count;
    } else {
        int nch = 1 << dims;
        for (int q = 0; q < nch; q++) bh_visit(c, cell->child + q, i, neg, z);
        return;
    }
    double w = kernel(c, d2);
    *z += size * w;
    double mult = size * w * w;
    for (int k = 0; k < dims; k++) neg[k] += mult * delta[k];
}

static void bh_grad_rows(int64_t r0, int64_t r1, void *vc) {
    grad_ctx *c = vc;
    int dims = c->dims;
    for (int64_t i = r0; i < r1; i++) {
        double neg[3] = {0}, pos[3] = {0}, z = 0.0;
        bh_visit(c, 0, i, neg, &z);
        const double *yi = c->y + i * dims;
        for (int64_t e = c->sp->ptr[i]; e < c->sp->ptr[i + 1]; e++) {
            const double *yj = c->y + c->sp->col[e] * dims;
            double d2 = 0.0;
            for (int k = 0; k < dims; k++) d2 += (yi[k] - yj[k]) * (yi[k] - yj[k]);
            double pw = c->exag * c->sp->val[e] * kernel(c, d2);
            for (int k = 0; k < dims; k++) pos[k] += pw * (yi[k] - yj[k]);
        }
        for (int k = 0; k < dims; k++) {
            c->attr[i * dims + k] = pos[k];
            c->rep[i * dims + k] = neg[k];
        }
        c->rowz[i] = z;
    }
}

static void bh_kl_rows(int64_t r0, int64_t r1, void *vc) {
    grad_ctx *c = vc;
    int dims = c->dims;
    for (int64_t i = r0; i < r1; i++) {
        const double *yi = c->y + i * dims;
        double s = 0.0;
        for (int64_t e = c->sp->ptr[i]; e < c->sp->ptr[i + 1]; e++) {
            const double *yj = c->y + c->sp->col[e] * dims;
            double d2 = 0.0;
            for (int k = 0; k < dims; k++) d2 += (yi[k] - yj[k]) * (yi[k] - yj[k]);
            double p = c->exag * c->sp->val[e], q = kernel(c, d2) / c->Z;
            s += p * log(fmax(p, FLT_MIN) / fmax(q, FLT_MIN)); /* sklearn's FLOAT32_TINY */
        }
        c->rowkl[i] = s;
    }
}

/* The gradient (sklearn's scaling 2 (dof + 1) / dof) into grad and, when want_kl, the KL
 * divergence of this phase's (exaggerated) P. */
static bool objective(grad_ctx *c, bh_tree *tree, double *grad, bool want_kl, double *kl) {
    int64_t n = c->n;
    int dims = c->dims;
    int64_t cost = c->P ? n * (dims * 4 + 8) : 64 * (dims + 4);
    if (c->P) {
        mc_parallel_rows(n, cost, exact_grad_rows, c);
    } else {
        if (!bh_build(tree, c->y, n)) return false;
        c->tree = tree;
        mc_parallel_rows(n, cost, bh_grad_rows, c);
    }
    double Z = 0.0;
    for (int64_t i = 0; i < n; i++) Z += c->rowz[i];
    c->Z = Z;
    double scale = 2.0 * (c->dof + 1.0) / c->dof;
    for (int64_t i = 0; i < n * dims; i++) grad[i] = scale * (c->attr[i] - c->rep[i] / Z);
    if (want_kl) {
        mc_parallel_rows(n, cost, c->P ? exact_kl_rows : bh_kl_rows, c);
        double s = 0.0;
        for (int64_t i = 0; i < n; i++) s += c->rowkl[i];
        *kl = s;
    }
    return true;
}

/* ---- the driver -------------------------------------------------------------------------- */

mc_status mc_tsne(const float *x, int64_t n, int64_t d, const mc_tsne_config *cfg, double *y,
                  double *kl, int *n_iter, mc_error *err) {
    if (!x || !y || !cfg) return MC_FAIL(err, MC_ERR_ARG, "t-SNE: x, y and cfg must not be NULL");
    if (n < 2)
        return MC_FAIL(err, MC_ERR_ARG, "t-SNE needs at least 2 points, got %lld", (long long)n);
    if (d < 1)
        return MC_FAIL(err, MC_ERR_ARG, "t-SNE needs at least 1 input dimension, got %lld",
                       (long long)d);
    if (cfg->dims < 1)
        return MC_FAIL(err, MC_ERR_ARG, "t-SNE: dims must be >= 1, got %d", cfg->dims);
    if (!(cfg->perplexity > 0.0) || !(cfg->perplexity < (double)n))
        return MC_FAIL(
            err, MC_ERR_ARG,
            "t-SNE: perplexity must be > 0 and less than the number of points (%lld), got %g",
            (long long)n, cfg->perplexity);
    if (cfg->max_iter < 1 || cfg->exaggeration_iters < 0 || cfg->exaggeration_iters > cfg->max_iter)
        return MC_FAIL(
            err, MC_ERR_ARG,
            "t-SNE: need max_iter >= 1 and 0 <= exaggeration_iters <= max_iter, got %d and %d",
            cfg->max_iter, cfg->exaggeration_iters);
    if (!(cfg->early_exaggeration >= 1.0) || !isfinite(cfg->early_exaggeration))
        return MC_FAIL(err, MC_ERR_ARG, "t-SNE: early_exaggeration must be finite and >= 1, got %g",
                       cfg->early_exaggeration);
    if (!isfinite(cfg->learning_rate))
        return MC_FAIL(err, MC_ERR_ARG, "t-SNE: learning_rate must be finite (<= 0 for auto)");
    if (cfg->n_iter_without_progress < 1 || !(cfg->min_grad_norm >= 0.0))
        return MC_FAIL(err, MC_ERR_ARG,
                       "t-SNE: need n_iter_without_progress >= 1 and min_grad_norm >= 0");
    if (cfg->init != MC_TSNE_INIT_PCA && cfg->init != MC_TSNE_INIT_RANDOM)
        return MC_FAIL(err, MC_ERR_ARG, "t-SNE: unknown init %d", (int)cfg->init);
    if (cfg->method != MC_TSNE_EXACT && cfg->method != MC_TSNE_BARNES_HUT)
        return MC_FAIL(err, MC_ERR_ARG, "t-SNE: unknown method %d", (int)cfg->method);
    if (cfg->method == MC_TSNE_BARNES_HUT && cfg->dims > 3)
        return MC_FAIL(
            err, MC_ERR_ARG,
            "t-SNE: Barnes-Hut embeds in 1 to 3 dimensions, got %d; use the exact method",
            cfg->dims);
    if (cfg->method == MC_TSNE_BARNES_HUT && !(cfg->theta >= 0.0 && cfg->theta <= 1.0))
        return MC_FAIL(err, MC_ERR_ARG, "t-SNE: theta must be in [0, 1], got %g", cfg->theta);
    size_t nd, ny;
    if (!mc_size_mul((size_t)n, (size_t)d, &nd) || !mc_size_mul((size_t)n, (size_t)cfg->dims, &ny))
        return MC_FAIL(err, MC_ERR_NOMEM, "t-SNE: %lld x %lld points overflow a size", (long long)n,
                       (long long)d);
    for (size_t i = 0; i < nd; i++)
        if (!isfinite(x[i]))
            return MC_FAIL(err, MC_ERR_NUMERIC,
                           "t-SNE: input value of point %lld, dimension %lld is not finite",
                           (long long)(i / (size_t)d), (long long)(i % (size_t)d));

    int dims = cfg->dims;
    bool exact = cfg->method == MC_TSNE_EXACT;
    mc_status st = MC_OK;
    double *P = NULL, *upd = NULL, *gains = NULL, *grad = NULL, *attr = NULL, *rep = NULL;
    double *rowz = NULL, *rowkl = NULL;
    csr sp = {0};
    int64_t *nbr = NULL;
    double *pc = NULL;
    bh_tree tree = {.dims = dims};

    /* Input affinities. */
    aff_ctx a = {.x = x, .n = n, .d = d, .target = log(cfg->perplexity)};
    atomic_init(&a.nomem, 0);
    if (exact) {
        size_t nn;
        if (!mc_size_mul((size_t)n, (size_t)n, &nn) || !(P = mc_alloc_array(nn, sizeof *P))) {
            st = MC_FAIL(err, MC_ERR_NOMEM,
                         "t-SNE (exact): cannot allocate P for %lld points (%lld x %lld doubles); "
                         "use Barnes-Hut",
                         (long long)n, (long long)n, (long long)n);
            goto done;
        }
        a.P = P;
        mc_parallel_rows(n, n * (d + 40), exact_rows, &a);
    } else {
        int64_t k = (int64_t)(3.0 * cfg->perplexity + 1.0);
        if (k > n - 1) k = n - 1;
        a.k = k;
        nbr = mc_alloc_array((size_t)n * (size_t)k, sizeof *nbr);
        pc = mc_alloc_array((size_t)n * (size_t)k, sizeof *pc);
        if (!nbr || !pc) {
            st = MC_FAIL(err, MC_ERR_NOMEM,
                         "t-SNE: cannot allocate the %lld nearest neighbours of %lld points",
                         (long long)k, (long long)n);
            goto done;
        }
        a.nbr = nbr;
        a.pc = pc;
        mc_parallel_rows(n, n * (d + 12), knn_rows, &a);
    }
    if (atomic_load(&a.nomem)) {
        st = MC_FAIL(err, MC_ERR_NOMEM, "t-SNE: cannot allocate a row buffer of %lld points",
                     (long long)n);
        goto done;
    }
    if (exact) {
        /* (P + P^T) / sum, floored at DBL_EPSILON off the diagonal (as sklearn). */
        double total = 0.0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = i + 1; j < n; j++) {
                double v = P[i * n + j] + P[j * n + i];
                P[i * n + j] = P[j * n + i] = v;
                total += 2.0 * v;
            }
        if (total < DBL_EPSILON) total = DBL_EPSILON;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++)
                P[i * n + j] = i == j ? 0.0 : fmax(P[i * n + j] / total, DBL_EPSILON);
    } else {
        st = sym_sparse(nbr, pc, n, a.k, &sp, err);
        if (st != MC_OK) goto done;
        free(nbr);
        free(pc);
        nbr = NULL;
        pc = NULL;
        tree.next = mc_alloc_array((size_t)n, sizeof *tree.next);
        tree.leaf_of = mc_alloc_array((size_t)n, sizeof *tree.leaf_of);
        if (!tree.next || !tree.leaf_of) {
            st = MC_FAIL(err, MC_ERR_NOMEM, "t-SNE: cannot allocate the tree of %lld points",
                         (long long)n);
            goto done;
        }
    }

    /* Initial embedding. */
    if (cfg->init == MC_TSNE_INIT_PCA) {
        st = pca_init(x, n, d, dims, y, err);
        if (st != MC_OK) goto done;
    } else {
        for (size_t i = 0; i < ny; i++) y[i] = 1e-4 * mc_rng_normal(cfg->seed, TSNE_RNG_STREAM, i);
    }

    upd = mc_alloc_array(ny, sizeof *upd);
    gains = mc_alloc_array(ny, sizeof *gains);
    grad = mc_alloc_array(ny, sizeof *grad);
    attr = mc_alloc_array(ny, sizeof *attr);
    rep = mc_alloc_array(ny, sizeof *rep);
    rowz = mc_alloc_array((size_t)n, sizeof *rowz);
    rowkl = mc_alloc_array((size_t)n, sizeof *rowkl);
    if (!upd || !gains || !grad || !attr || !rep || !rowz || !rowkl) {
        st = MC_FAIL(err, MC_ERR_NOMEM, "t-SNE: cannot allocate the optimiser's arrays");
        goto done;
    }
    double lr = cfg->learning_rate;
    if (lr <= 0.0) lr = fmax((double)n / cfg->early_exaggeration / 4.0, 50.0);
    double dof = dims - 1 > 1 ? (double)(dims - 1) : 1.0;
    grad_ctx g = {.y = y,
                  .n = n,
                  .dims = dims,
                  .dof = dof,
                  .expo = (dof + 1.0) / 2.0,
                  .P = exact ? P : NULL,
                  .sp = exact ? NULL : &sp,
                  .theta2 = cfg->theta * cfg->theta,
                  .attr = attr,
                  .rep = rep,
                  .rowz = rowz,
                  .rowkl = rowkl};

    /* Two phases as sklearn: exaggerated at momentum 0.5, then plain at 0.8, each starting from
     * zero updates and unit gains; the second runs when the first stopped early or steps remain. */
    double error = NAN;
    int it = 0, start = 0;
    for (int phase = 0; phase < 2; phase++) {
        int end = phase == 0 ? cfg->exaggeration_iters : cfg->max_iter;
        if (start >= end) continue; /* nothing left in this phase: keep the last error */
        g.exag = phase == 0 ? cfg->early_exaggeration : 1.0;
        double momentum = phase == 0 ? 0.5 : 0.8;
        int niwp = phase == 0 ? cfg->exaggeration_iters : cfg->n_iter_without_progress;
        for (size_t i = 0; i < ny; i++) {
            upd[i] = 0.0;
            gains[i] = 1.0;
        }
        double best = DBL_MAX;
        int best_iter = start, i = start;
        for (; i < end; i++) {
            bool check = (i + 1) % TSNE_ITER_CHECK == 0;
            double e = NAN;
            if (!objective(&g, &tree, grad, check || i == end - 1, &e)) {
                st = MC_FAIL(err, MC_ERR_NOMEM, "t-SNE: cannot allocate the Barnes-Hut tree");
                goto done;
            }
            error = e;
            double norm2 = 0.0;
            for (size_t k = 0; k < ny; k++) {
                if (upd[k] * grad[k] < 0.0)
                    gains[k] += 0.2;
                else
                    gains[k] *= 0.8;
                if (gains[k] < TSNE_MIN_GAIN) gains[k] = TSNE_MIN_GAIN;
                grad[k] *= gains[k];
                upd[k] = momentum * upd[k] - lr * grad[k];
                y[k] += upd[k];
                norm2 += grad[k] * grad[k];
            }
            if (check) {
                if (error < best) {
                    best = error;
                    best_iter = i;
                } else if (i - best_iter > niwp) {
                    break;
                }
                if (sqrt(norm2) <= cfg->min_grad_norm) break;
            }
        }
        if (i == end) i--; /* the last step taken, as sklearn's returned it */
        it = i;
        start = i + 1;
    }
    for (size_t k = 0; k < ny; k++)
        if (!isfinite(y[k])) {
            st = MC_FAIL(
                err, MC_ERR_NUMERIC,
                "t-SNE: the embedding diverged (non-finite coordinate); lower the learning rate");
            goto done;
        }
    if (kl) *kl = error;
    if (n_iter) *n_iter = it + 1;
done:
    free(P);
    free(nbr);
    free(pc);
    free(sp.ptr);
    free(sp.col);
    free(sp.val);
    free(tree.cell);
    free(tree.next);
    free(tree.leaf_of);
    free(upd);
    free(gains);
    free(grad);
    free(attr);
    free(rep);
    free(rowz);
    free(rowkl);
    return st;
}

/* ---- trustworthiness --------------------------------------------------------------------- */

typedef struct {
    const float *x;
    const double *y;
    int64_t n, d;
    int dims, k;
    double *pen; /* [n] */
    atomic_int nomem;
} trust_ctx;

static void trust_rows(int64_t r0, int64_t r1, void *vc) {
    trust_ctx *c = vc;
    int64_t n = c->n;
    double *dx = mc_alloc_array((size_t)n, sizeof *dx);
    dist_idx *de = mc_alloc_array((size_t)n, sizeof *de);
    if (!dx || !de) {
        atomic_store(&c->nomem, 1);
    } else {
        for (int64_t i = r0; i < r1; i++) {
            int64_t m = 0;
            for (int64_t j = 0; j < n; j++) {
                dx[j] = j == i ? INFINITY : sqdist_f(c->x + i * c->d, c->x + j * c->d, c->d);
                if (j == i) continue;
                double s = 0.0;
                for (int t = 0; t < c->dims; t++) {
                    double df = c->y[i * c->dims + t] - c->y[j * c->dims + t];
                    s += df * df;
                }
                de[m++] = (dist_idx){s, j};
            }
            qsort(de, (size_t)m, sizeof *de, cmp_dist_idx);
            double pen = 0.0;
            for (int t = 0; t < c->k; t++) {
                int64_t j = de[t].j, rank = 1; /* 1-based rank of j among i's input neighbours */
                for (int64_t l = 0; l < n; l++)
                    if (l != i && (dx[l] < dx[j] || (dx[l] == dx[j] && l < j))) rank++;
                if (rank > c->k) pen += (double)(rank - c->k);
            }
            c->pen[i] = pen;
        }
    }
    free(dx);
    free(de);
}

double mc_trustworthiness(const float *x, const double *y, int64_t n, int64_t d, int dims, int k) {
    if (!x || !y || n < 2 || d < 1 || dims < 1 || k < 1 || (double)k >= (double)n / 2.0) return NAN;
    trust_ctx c = {.x = x, .y = y, .n = n, .d = d, .dims = dims, .k = k};
    atomic_init(&c.nomem, 0);
    c.pen = mc_alloc_array((size_t)n, sizeof *c.pen);
    if (!c.pen) return NAN;
    mc_parallel_rows(n, n * (d + dims + 16), trust_rows, &c);
    double t = NAN;
    if (!atomic_load(&c.nomem)) {
        double s = 0.0;
        for (int64_t i = 0; i < n; i++) s += c.pen[i];
        double nn = (double)n, kk = (double)k;
        t = 1.0 - s * (2.0 / (nn * kk * (2.0 * nn - 3.0 * kk - 1.0)));
    }
    free(c.pen);
    return t;
}
