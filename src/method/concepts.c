/* concepts.c - concept sets and their text embeddings (concepts.h). */
#include "method/concepts.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/log.h"
#include "miclip/miclip.h"
#include "miclip/buf.h"
#include "miclip/text.h"

void mc_concepts_free(mc_concepts **sets, int n_sets) {
    if (!sets || !*sets) return;
    for (int i = 0; i < n_sets; i++) {
        mc_strings_free(&(*sets)[i].texts, (*sets)[i].n);
        free((*sets)[i].emb);
    }
    free(*sets);
    *sets = NULL;
}

/* The lines of a concept file (rank 0 reads, every rank parses the same bytes). */
static mc_status read_concept_file(const mc_comm *c, const char *path, mc_concepts *cs,
                                   mc_error *err) {
    char *text = NULL;
    size_t len = 0;
    mc_status s = c->rank == 0 ? mc_read_file(path, 256u << 20, &text, &len, err) : MC_OK;
    if (s == MC_OK && c->rank == 0 && (s = mc_text_check_lines(path, text, len, err)) != MC_OK)
        free(text);
    MC_TRY(mc_comm_agree(c, s, err));
    MC_TRY(mc_comm_bcast_string(c, 0, &text, err));
    int64_t cap = 1;
    for (char *p = text; *p; p++) cap += *p == '\n';
    cs->texts = calloc((size_t)cap, sizeof(char *));
    if (!cs->texts) {
        free(text);
        return MC_FAIL(err, MC_ERR_NOMEM, "out of memory reading %s", path);
    }
    int64_t lineno = 0;
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        lineno++;
        char *b = line, *e = line + strlen(line);
        while (*b == ' ' || *b == '\t' || *b == '\r') b++;
        while (e > b && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) e--;
        *e = '\0';
        if (*b && *b != '#') {
            if (!(cs->texts[cs->n++] = mc_strdup(b))) {
                free(text);
                return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
            }
        }
        line = nl ? nl + 1 : NULL;
    }
    free(text);
    if (cs->n == 0) return MC_FAIL(err, MC_ERR_CONFIG, "%s: the concept list is empty", path);
    return MC_OK;
}

#define TEXT_BLOCK 64 /* texts per embedding call: fixed, so results do not depend on ranks */

static mc_status embed_concepts(const mc_comm *c, const mc_config *cfg, mc_text_encoder **enc,
                                mc_concepts *cs, mc_error *err) {
    mc_status s = MC_OK;
    if (!*enc) s = mc_text_encoder_load(cfg->models.clip, NULL, enc, err);
    MC_TRY(mc_comm_agree(c, s, err));
    int64_t P = cs->dim;
    if (mc_text_encoder_dim(*enc) != P)
        return MC_FAIL(err, MC_ERR_SHAPE,
                       "%s: text embeddings have width %d, the CLIP image embeddings %lld",
                       cfg->models.clip, mc_text_encoder_dim(*enc), (long long)P);
    int64_t nb = (cs->n + TEXT_BLOCK - 1) / TEXT_BLOCK, b0, b1;
    mc_shard_range(nb, c->rank, c->size, &b0, &b1);
    for (int64_t b = b0; s == MC_OK && b < b1; b++) {
        int64_t i0 = b * TEXT_BLOCK, i1 = i0 + TEXT_BLOCK < cs->n ? i0 + TEXT_BLOCK : cs->n;
        s = mc_text_embed(*enc, (const char *const *)cs->texts + i0, (size_t)(i1 - i0),
                          cfg->align.prompt, false, cs->emb + i0 * P, err);
    }
    MC_TRY(mc_comm_agree(c, s, err));
    /* Every rank gets every row (floats counted per rank; sizes fit int for concept sets). */
    int *counts = calloc((size_t)c->size, sizeof(int)),
        *displs = calloc((size_t)c->size, sizeof(int));
    if (!counts || !displs) {
        free(counts);
        free(displs);
        return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    }
    for (int r = 0; r < c->size; r++) {
        int64_t r0, r1;
        mc_shard_range(nb, r, c->size, &r0, &r1);
        int64_t i0 = r0 * TEXT_BLOCK < cs->n ? r0 * TEXT_BLOCK : cs->n;
        int64_t i1 = r1 * TEXT_BLOCK < cs->n ? r1 * TEXT_BLOCK : cs->n;
        counts[r] = (int)((i1 - i0) * P);
        displs[r] = (int)(i0 * P);
    }
    int rc =
        MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, cs->emb, counts, displs, MPI_FLOAT, c->comm);
    free(counts);
    free(displs);
    return rc == MPI_SUCCESS
               ? MC_OK
               : MC_FAIL(err, MC_ERR_MPI, "MPI_Allgatherv of concept embeddings failed");
}

static mc_status write_concept_store(const mc_comm *c, const mc_config *cfg, const mc_concepts *cs,
                                     const mc_train_data *td, mc_error *err) {
    mc_store *st = NULL;
    MC_TRY(mc_store_fresh(c, cs->path, &st, err));
    bool root = c->rank == 0;
    int64_t sh[2] = {cs->n, cs->dim};
    mc_status s =
        mc_store_write_strings(st, "names", (const char *const *)cs->texts, cs->n, true, err);
    if (s == MC_OK) s = mc_store_create_dataset(st, "embeds", MC_DTYPE_F32, 2, sh, 0, err);
    if (s == MC_OK)
        s = mc_store_write_rows(st, "embeds", MC_DTYPE_F32, 0, root ? cs->n : 0, cs->emb, err);
    mc_store_provenance prov = {
        .stage = "concepts", .config_hash = cfg->hash, .model = td->clip_hash};
    if (s == MC_OK) s = mc_store_write_provenance(st, "/", &prov, err);
    if (s == MC_OK) s = mc_store_set_attr_str(st, "/", "concepts_key", cs->key, err);
    if (s == MC_OK) s = mc_store_set_attr_str(st, "/", "set", cs->name, err);
    if (s == MC_OK) s = mc_store_set_attr_str(st, "/", "prompt", cfg->align.prompt, err);
    if (s == MC_OK) s = mc_store_set_attr_str(st, "/", "clip_model", cfg->models.clip, err);
    if (s == MC_OK) s = mc_store_set_attr_str(st, "/", "clip_hash", td->clip_hash, err);
    s = mc_store_finish(&st, s, err);
    return s;
}

static mc_status read_concept_store(const mc_comm *c, mc_concepts *cs, mc_error *err) {
    mc_store *st = NULL;
    MC_TRY(mc_store_open(c, cs->path, MC_STORE_READ, &st, err));
    mc_store_dataset_info in;
    mc_status s = mc_store_dataset_info_get(st, "embeds", &in, err);
    if (s == MC_OK && (in.ndim != 2 || in.shape[0] != cs->n || in.shape[1] != cs->dim))
        s = MC_FAIL(err, MC_ERR_SHAPE, "%s: embeds is not [%lld, %lld]", cs->path, (long long)cs->n,
                    (long long)cs->dim);
    s = mc_comm_agree(c, s, err);
    if (s == MC_OK) s = mc_store_read_rows(st, "embeds", MC_DTYPE_F32, 0, cs->n, cs->emb, err);
    mc_error ce = {0};
    mc_store_close(&st, &ce);
    return s;
}

mc_status mc_concepts_open(const mc_comm *c, const mc_config *cfg, const mc_train_data *td,
                           const mc_str_list *names, mc_concepts **sets, int *n_sets,
                           mc_error *err) {
    *sets = NULL;
    *n_sets = 0;
    int n = names->n > 0 ? names->n : cfg->concepts.n > 0 ? cfg->concepts.n : 1;
    mc_concepts *v = calloc((size_t)n, sizeof *v);
    if (!v) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
    mc_status s = MC_OK;
    for (int i = 0; s == MC_OK && i < n; i++) {
        mc_concepts *cs = &v[i];
        const mc_concept_set_cfg *sc = NULL;
        if (names->n > 0) {
            for (int j = 0; j < cfg->concepts.n; j++)
                if (!strcmp(cfg->concepts.v[j].name, names->v[i])) sc = &cfg->concepts.v[j];
            if (!sc) {
                s = MC_FAIL(err, MC_ERR_CONFIG, "concept set '%s' is not in 'concepts'",
                            names->v[i]);
                break;
            }
        } else if (cfg->concepts.n > 0) {
            sc = &cfg->concepts.v[i];
        }
        mc_strlcpy(cs->name, sc ? sc->name : "classes", sizeof cs->name);
        cs->dim = td->clip_dim;
        if (!sc || sc->source == MC_CONCEPTS_CLASSES) {
            cs->texts = calloc((size_t)td->n_classes + 1, sizeof(char *));
            if (!cs->texts) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
            for (int64_t k = 0; s == MC_OK && k < td->n_classes; k++, cs->n++)
                if (!(cs->texts[k] = mc_strdup(td->class_names[k])))
                    s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        } else {
            s = read_concept_file(c, sc->file, cs, err);
        }
        s = mc_comm_agree(c, s, err);
        if (s != MC_OK) break;
        /* Key: CLIP files, prompt, every text. */
        mc_sha256 h;
        mc_sha256_init(&h);
        char head[4096];
        snprintf(head, sizeof head, "miclip-concepts/1\nclip=%s\nprompt=%s\n", td->clip_hash,
                 cfg->align.prompt);
        mc_sha256_update(&h, head, strlen(head));
        for (int64_t k = 0; k < cs->n; k++)
            mc_sha256_update(&h, cs->texts[k], strlen(cs->texts[k]) + 1);
        uint8_t d[MC_SHA256_BYTES];
        mc_sha256_final(&h, d);
        mc_hex_encode(d, MC_SHA256_BYTES, cs->key);
        cs->key[MC_SHA256_HEX_LEN] = '\0';
        if (!mc_snprintf(cs->path, sizeof cs->path, "%s/concepts/%s-%.16s.h5", cfg->output_dir,
                         cs->name, cs->key)) {
            s = MC_FAIL(err, MC_ERR_ARG, "output path too long under %s", cfg->output_dir);
            break;
        }
    }
    if (s != MC_OK) {
        mc_concepts_free(&v, n);
        return s;
    }
    *sets = v;
    *n_sets = n;
    return MC_OK;
}

mc_status mc_concepts_embed(const mc_comm *c, const mc_config *cfg, const mc_train_data *td,
                            mc_concepts *sets, int n_sets, mc_error *err) {
    mc_text_encoder *enc = NULL;
    mc_status s = MC_OK;
    for (int i = 0; s == MC_OK && i < n_sets; i++) {
        mc_concepts *cs = &sets[i];
        if (cs->emb) continue;
        cs->emb = mc_alloc_array((size_t)cs->n, (size_t)cs->dim * sizeof(float));
        s = mc_comm_agree(c,
                          cs->emb ? MC_OK
                                  : MC_FAIL(err, MC_ERR_NOMEM,
                                            "out of memory for %lld concept embeddings",
                                            (long long)cs->n),
                          err);
        if (s != MC_OK) break;
        /* Stored already (perhaps by a parallel task)? Another task writing it holds its lock:
         * wait for it rather than embedding twice. */
        for (int attempt = 0; s == MC_OK; attempt++) {
            bool complete = false;
            s = mc_store_peek_complete(c, cs->path, &complete, err);
            if (s != MC_OK) break;
            if (complete) {
                s = read_concept_store(c, cs, err);
                break;
            }
            if (attempt == 0) {
                char dir[MC_PATH_CAP];
                mc_snprintf(dir, sizeof dir, "%s/concepts", cfg->output_dir);
                s = mc_comm_agree(c, c->rank == 0 ? mc_mkdir_p(dir, err) : MC_OK, err);
                if (s == MC_OK) s = embed_concepts(c, cfg, &enc, cs, err);
                if (s != MC_OK) break;
                mc_info0("concepts %s: embedded %lld texts", cs->name, (long long)cs->n);
            }
            s = write_concept_store(c, cfg, cs, td, err);
            if (s == MC_ERR_LOCKED && attempt < 300) {
                mc_info0("concepts %s: another run is writing %s; waiting", cs->name, cs->path);
                sleep(2);
                s = MC_OK;
                continue;
            }
            break;
        }
    }
    mc_text_encoder_free(&enc);
    return s;
}

mc_status mc_concepts_load(const mc_comm *c, const mc_config *cfg, const mc_train_data *td,
                           const mc_str_list *names, mc_concepts **sets, int *n_sets,
                           mc_error *err) {
    MC_TRY(mc_concepts_open(c, cfg, td, names, sets, n_sets, err));
    mc_status s = mc_concepts_embed(c, cfg, td, *sets, *n_sets, err);
    if (s != MC_OK) mc_concepts_free(sets, *n_sets), *n_sets = 0;
    return s;
}
