/* similarity.c - unit x concept similarity (Algorithm 2) and its top lists (similarity.h).
 *
 * A unit's embedding is a column of E_n (a neuron) or E_n W_dec[:, i] (an SAE feature); a
 * concept's is the CLIP text embedding of align.prompt filled with the concept. Similarity is
 * the cosine. Unit rows are shared over ranks in fixed blocks, the per-concept top lists are
 * merged with an exact, order-independent reduction (score descending, then index), so the
 * results are identical at any rank count. Output: OUTPUT_DIR/localize/<task>-<key16>.h5 and
 * OUTPUT_DIR/tables/<task>-<set>-<units>.csv (docs/stages.md).
 */
#include "method/similarity.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cblas.h>

#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/log.h"
#include "miclip/miclip.h"

static const mc_scored EMPTY = {-INFINITY, INT32_MAX};

void mc_sim_result_free(mc_sim_result *r) {
    free(r->loc);
    free(r->desc);
    free(r->sim);
    memset(r, 0, sizeof *r);
}

/* MPI reduction: two top lists (one per element of the contiguous type) -> the top of both. */
static void merge_tops(void *in, void *inout, int *len, MPI_Datatype *dt) {
    int bytes = 0;
    MPI_Type_size(*dt, &bytes);
    int64_t tau = bytes / (int64_t)sizeof(mc_scored);
    mc_scored *a = in, *b = inout;
    mc_scored *t = mc_alloc_array((size_t)tau, sizeof *t);
    if (!t) {
        fprintf(stderr, "miclip: out of memory merging top-unit lists\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    for (int e = 0; e < *len; e++, a += tau, b += tau) {
        int64_t i = 0, j = 0;
        for (int64_t k = 0; k < tau; k++) t[k] = mc_scored_before(&a[i], &b[j]) ? a[i++] : b[j++];
        memcpy(b, t, (size_t)tau * sizeof *t);
    }
    free(t);
}

void mc_concept_classes(const mc_unit_set *u, const char *const *texts, int64_t n, int64_t *cls) {
    for (int64_t j = 0; j < n; j++) {
        cls[j] = -1;
        if (u->reading != MC_READ_INPUTS || u->inputs != MC_INPUTS_CLASS || !texts || !u->g_class)
            continue;
        for (int64_t k = 0; k < u->n_classes; k++)
            if (!strcasecmp(u->class_names[k], texts[j])) {
                cls[j] = k;
                break;
            }
    }
}

void mc_concept_qdots(const mc_unit_set *u, const float *cn, int64_t Cn, int64_t d, double *qc) {
    for (int64_t j = 0; j < Cn; j++) {
        double v = 0;
        for (int64_t k = 0; u->q && k < d; k++) v += (double)u->q[k] * cn[j * d + k];
        qc[j] = v;
    }
}

void mc_unit_scores_block(const mc_unit_set *u, int64_t d, float *p, int64_t len, int64_t unit0,
                          const float *cn, const int64_t *cls, const double *qc, int64_t Cn,
                          float *S) {
    if (u->reading == MC_READ_PLAIN) {
        /* cos(p_i, c): normalised directions, one sgemm (the stage's numbers since 0.x). */
        mc_normalize_rows_f(p, len, d);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)len, (int)Cn, (int)d, 1.0f, p,
                    (int)d, cn, (int)d, 0.0f, S, (int)Cn);
        return;
    }
    /* The INPUTS reading: the unit's embedding for concept j is g p_i + q with g the unit's mean
     * value over j's input set, so
     *   cos = (g <p_i, c_j> + <q, c_j>) / max(sqrt(g^2 |p_i|^2 + 2 g <p_i, q> + |q|^2), 1e-12)
     * (c_j unit length). <p_i, c_j> is one sgemm per block; the rest in double. */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)len, (int)Cn, (int)d, 1.0f, p, (int)d,
                cn, (int)d, 0.0f, S, (int)Cn);
    const int64_t U = u->n_units;
    double qq = 0;
    for (int64_t k = 0; u->q && k < d; k++) qq += (double)u->q[k] * u->q[k];
    for (int64_t i = 0; i < len; i++) {
        const float *pi = p + i * d;
        double pp = 0, pq = 0;
        for (int64_t k = 0; k < d; k++) {
            pp += (double)pi[k] * pi[k];
            if (u->q) pq += (double)pi[k] * u->q[k];
        }
        for (int64_t j = 0; j < Cn; j++) {
            double g = cls[j] >= 0 ? u->g_class[cls[j] * U + unit0 + i] : u->g_all[unit0 + i];
            if (isnan(g)) g = u->g_all[unit0 + i]; /* a class without training images */
            double nrm = sqrt(fmax(g * g * pp + 2 * g * pq + qq, 0.0));
            if (nrm < 1e-12) nrm = 1e-12;
            S[i * Cn + j] = (float)((g * S[i * Cn + j] + qc[j]) / nrm);
        }
    }
}

mc_status mc_similarity(const mc_comm *c, const mc_unit_set *u, const mc_encoder_weights *w,
                        const float *concept_emb, const char *const *concept_texts,
                        int64_t n_concepts, int64_t tau_u, int64_t tau_c, bool keep_sim,
                        mc_sim_result *r, mc_error *err) {
    memset(r, 0, sizeof *r);
    const int64_t U = u->n_units, Cn = n_concepts, d = w->d;
    int64_t nb = (U + MC_UNIT_BLOCK - 1) / MC_UNIT_BLOCK, b0, b1;
    mc_shard_range(nb, c->rank, c->size, &b0, &b1);
    r->n_units = U, r->n_concepts = Cn, r->tau_u = tau_u, r->tau_c = tau_c;
    r->u0 = b0 * MC_UNIT_BLOCK < U ? b0 * MC_UNIT_BLOCK : U;
    r->u1 = b1 * MC_UNIT_BLOCK < U ? b1 * MC_UNIT_BLOCK : U;
    const int64_t rows = r->u1 - r->u0;
    float *emb = mc_alloc_array((size_t)(rows > 0 ? rows : 1), (size_t)d * sizeof(float));
    float *cn = mc_alloc_array((size_t)Cn, (size_t)d * sizeof(float));
    float *S = mc_alloc_array(MC_UNIT_BLOCK, (size_t)Cn * sizeof(float));
    int64_t *cnt = mc_calloc_array((size_t)Cn + 1, sizeof(int64_t));
    int64_t *cls = mc_alloc_array((size_t)Cn + 1, sizeof(int64_t));
    double *qc = mc_alloc_array((size_t)Cn + 1, sizeof(double));
    if (tau_u > 0) r->loc = mc_alloc_array((size_t)Cn, (size_t)tau_u * sizeof(mc_scored));
    if (tau_c > 0)
        r->desc = mc_alloc_array((size_t)(rows > 0 ? rows : 1), (size_t)tau_c * sizeof(mc_scored));
    if (keep_sim)
        r->sim = mc_alloc_array((size_t)(rows > 0 ? rows : 1), (size_t)Cn * sizeof(float));
    mc_status s = MC_OK;
    if (!emb || !cn || !S || !cnt || !cls || !qc || (tau_u > 0 && !r->loc) ||
        (tau_c > 0 && !r->desc) || (keep_sim && !r->sim))
        s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory for %lld units x %lld concepts", (long long)U,
                    (long long)Cn);
    s = mc_comm_agree(c, s, err);
    if (s == MC_OK) s = mc_unit_embed(c, u, w, r->u0, r->u1, false, emb, err);
    if (s == MC_OK) {
        memcpy(cn, concept_emb, (size_t)(Cn * d) * sizeof(float));
        mc_normalize_rows_f(cn, Cn, d);
        mc_concept_classes(u, concept_texts, Cn, cls);
        mc_concept_qdots(u, cn, Cn, d, qc);
        for (int64_t i = 0; tau_u > 0 && i < Cn * tau_u; i++) r->loc[i] = EMPTY;
        for (int64_t b = 0; b < rows; b += MC_UNIT_BLOCK) {
            int64_t len = rows - b < MC_UNIT_BLOCK ? rows - b : MC_UNIT_BLOCK;
            mc_unit_scores_block(u, d, emb + b * d, len, r->u0 + b, cn, cls, qc, Cn, S);
            if (keep_sim) memcpy(r->sim + b * Cn, S, (size_t)(len * Cn) * sizeof(float));
            for (int64_t i = 0; i < len; i++) {
                const float *row = S + i * Cn;
                int32_t unit = (int32_t)(r->u0 + b + i);
                if (tau_c > 0) {
                    mc_scored *top = r->desc + (b + i) * tau_c;
                    int64_t n = 0;
                    for (int64_t j = 0; j < Cn; j++)
                        mc_top_insert(top, &n, tau_c, row[j], (int32_t)j);
                }
                for (int64_t j = 0; tau_u > 0 && j < Cn; j++)
                    mc_top_insert(r->loc + j * tau_u, &cnt[j], tau_u, row[j], unit);
            }
        }
        /* Ranks without rows keep EMPTY lists; the merge is exact and commutative. */
        if (tau_u > 0 && c->size > 1) {
            MPI_Datatype dt;
            MPI_Op op;
            MPI_Type_contiguous((int)(tau_u * (int64_t)sizeof(mc_scored)), MPI_BYTE, &dt);
            MPI_Type_commit(&dt);
            MPI_Op_create(merge_tops, 1, &op);
            int rc = MPI_Allreduce(MPI_IN_PLACE, r->loc, (int)Cn, dt, op, c->comm);
            MPI_Op_free(&op);
            MPI_Type_free(&dt);
            if (rc != MPI_SUCCESS)
                s = MC_FAIL(err, MC_ERR_MPI, "MPI_Allreduce of the top-unit lists failed");
        }
    }
    free(emb), free(cn), free(S), free(cnt), free(cls), free(qc);
    if (s != MC_OK) mc_sim_result_free(r);
    return s;
}

mc_status mc_sim_gather_desc(const mc_comm *c, const mc_sim_result *r, mc_scored **all,
                             mc_error *err) {
    *all = NULL;
    int *cnt = calloc((size_t)c->size, sizeof(int)), *dsp = calloc((size_t)c->size, sizeof(int));
    mc_scored *buf = c->rank == 0 ? mc_alloc_array((size_t)(r->n_units > 0 ? r->n_units : 1),
                                                   (size_t)r->tau_c * sizeof(mc_scored))
                                  : NULL;
    mc_status s =
        cnt && dsp && (c->rank != 0 || buf) ? MC_OK : MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    s = mc_comm_agree(c, s, err);
    if (s == MC_OK) {
        int64_t nb = (r->n_units + MC_UNIT_BLOCK - 1) / MC_UNIT_BLOCK;
        for (int q = 0; q < c->size; q++) {
            int64_t b0, b1;
            mc_shard_range(nb, q, c->size, &b0, &b1);
            int64_t u0 = b0 * MC_UNIT_BLOCK < r->n_units ? b0 * MC_UNIT_BLOCK : r->n_units;
            int64_t u1 = b1 * MC_UNIT_BLOCK < r->n_units ? b1 * MC_UNIT_BLOCK : r->n_units;
            cnt[q] = (int)((u1 - u0) * r->tau_c * (int64_t)sizeof(mc_scored));
            dsp[q] = (int)(u0 * r->tau_c * (int64_t)sizeof(mc_scored));
        }
        int mine = (int)((r->u1 - r->u0) * r->tau_c * (int64_t)sizeof(mc_scored));
        if (MPI_Gatherv(r->desc, mine, MPI_BYTE, buf, cnt, dsp, MPI_BYTE, 0, c->comm) !=
            MPI_SUCCESS)
            s = MC_FAIL(err, MC_ERR_MPI, "MPI_Gatherv of descriptions failed");
    }
    free(cnt), free(dsp);
    if (s == MC_OK)
        *all = buf;
    else
        free(buf);
    return s;
}
