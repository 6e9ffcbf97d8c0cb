/* cmd_embed_text.c - `miclip embed-text MODEL_DIR --texts FILE.json [--template T]
 * [--templates FILE.json] [--cache STORE.h5] --out FILE.h5`: embeds a JSON list of strings
 * with a CLIP text tower or an MPNet sentence encoder and writes an HDF5 store:
 *   CLIP:  /input_ids [N, 77] int32 (zero-padded after the end token), /text_embeds [N, proj]
 *          float32 before normalisation (get_text_features);
 *   MPNet: /sentence_embeds [N, hidden] float32, L2-normalised (sentence-transformers);
 *   with --templates: /ensemble_embeds [N, dim], CLIP's prompt ensembling (each template's
 *          embedding normalised, averaged, normalised again).
 * Texts are split over the ranks in contiguous blocks and written collectively, so the file
 * does not depend on the rank count. --cache keeps every (model, template, text) embedding in
 * a store and computes only the texts it has not seen. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "miclip/checked.h"
#include "miclip/json.h"
#include "miclip/log.h"
#include "miclip/store.h"
#include "miclip/text.h"

enum { OPT_TEXTS = 2, OPT_TEMPLATE, OPT_TEMPLATES, OPT_CACHE, OPT_OUT };

static const mc_cli_opt opts[] = {
    {"texts", MC_CLI_VALUE, OPT_TEXTS, "FILE.json",
     "a JSON list of the strings to embed (required)"},
    {"template", MC_CLI_VALUE, OPT_TEMPLATE, "T",
     "a prompt with {} for the text, e.g. \"a photo of a {}.\""},
    {"templates", MC_CLI_VALUE, OPT_TEMPLATES, "FILE.json",
     "a JSON list of templates: also writes /ensemble_embeds, the\n"
     "normalised mean of the normalised per-template embeddings"},
    {"cache", MC_CLI_VALUE, OPT_CACHE, "STORE.h5",
     "an HDF5 store that keeps embeddings per (model, template, text);\n"
     "only texts not in it are computed"},
    {"out", MC_CLI_VALUE, OPT_OUT, "FILE.h5", "the store to write (required)"},
    {0}};

const mc_cli_cmd mc_cmd_embed_text_cli = {
    .name = "embed-text",
    .usage =
        "miclip embed-text MODEL_DIR --texts FILE.json [--template T] [--templates FILE.json]\n"
        "                          [--cache STORE.h5] --out FILE.h5",
    .about = "Embeds a JSON list of strings with a CLIP folder's text tower or an MPNet\n"
             "sentence-transformers folder and writes an HDF5 store:\n"
             "  CLIP:  /input_ids [N,77] (int32, zero-padded), /text_embeds [N,proj] before\n"
             "         normalisation\n"
             "  MPNet: /sentence_embeds [N,hidden], L2-normalised\n",
    .opts = opts,
    .notes = "Texts are split over MPI ranks; the output does not depend on the rank count.\n"};

static mc_status load_strings(const char *path, char ***out, size_t *n, mc_error *err) {
    json_t *j = NULL;
    *out = NULL;
    *n = 0;
    MC_TRY(mc_json_load(path, true, &j, err));
    mc_status s = MC_OK;
    if (!json_is_array(j)) {
        s = MC_FAIL(err, MC_ERR_FORMAT, "%s: expected a JSON list of strings", path);
        goto done;
    }
    size_t m = json_array_size(j);
    char **v = calloc(m ? m : 1, sizeof *v);
    if (!v) {
        s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < m; i++) {
        json_t *x = json_array_get(j, i);
        if (!json_is_string(x)) {
            s = MC_FAIL(err, MC_ERR_FORMAT, "%s: item %zu is not a string", path, i);
        } else if (!(v[i] = mc_strdup(json_string_value(x)))) {
            s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory");
        }
        if (s != MC_OK) {
            for (size_t k = 0; k <= i; k++) free(v[k]);
            free(v);
            goto done;
        }
    }
    *out = v;
    *n = m;
done:
    json_decref(j);
    return s;
}

static void free_strings(char **v, size_t n) {
    for (size_t i = 0; v && i < n; i++) free(v[i]);
    free(v);
}

static mc_status run(const mc_comm *c, const char *dir, const char *texts_path, const char *tmpl,
                     const char *templates_path, const char *cache_path, const char *out_path,
                     mc_error *err) {
    char **texts = NULL, **tmpls = NULL;
    size_t n = 0, nt = 0;
    mc_text_encoder *e = NULL;
    mc_store *st = NULL, *cache = NULL;
    float *emb = NULL, *ens = NULL;
    int32_t *ids = NULL;
    mc_status s = load_strings(texts_path, &texts, &n, err);
    if (s == MC_OK && templates_path) s = load_strings(templates_path, &tmpls, &nt, err);
    if (s == MC_OK && templates_path && nt == 0)
        s = MC_FAIL(err, MC_ERR_ARG, "%s: no templates", templates_path);
    if (s == MC_OK) s = mc_text_encoder_load(dir, NULL, &e, err);
    s = mc_comm_agree(c, s, err);
    if (s != MC_OK) goto done;
    const bool clip = mc_text_encoder_family(e) == MC_TEXT_CLIP;
    const int64_t dim = mc_text_encoder_dim(e), ctx = mc_text_encoder_context(e);
    int64_t b0, b1;
    mc_shard_range((int64_t)n, c->rank, c->size, &b0, &b1);
    const int64_t m = b1 - b0;
    emb = mc_alloc_array(cache_path ? n * (size_t)dim + 1 : (size_t)(m * dim) + 1, sizeof *emb);
    ids = mc_alloc_array((size_t)(m * ctx) + 1, sizeof *ids);
    if (tmpls) ens = mc_alloc_array((size_t)(m * dim) + 1, sizeof *ens);
    if (!emb || !ids || (tmpls && !ens))
        s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory for %zu texts", n);
    s = mc_comm_agree(c, s, err);
    if (s != MC_OK) goto done;
    /* token ids of this rank's texts (CLIP: after the template, zero-padded) */
    mc_status ls = MC_OK;
    if (clip) {
        for (int64_t i = 0; i < m && ls == MC_OK; i++) {
            char *f = NULL;
            ls = mc_text_apply_template(tmpl, texts[b0 + i], &f, err);
            if (ls == MC_OK)
                ls = mc_text_encoder_tokenize(e, (const char *const *)&f, 1, ids + i * ctx, NULL,
                                              err);
            if (ls != MC_OK) mc_error_prefix(err, "%s item %lld", texts_path, (long long)(b0 + i));
            free(f);
        }
    }
    s = mc_comm_agree(c, ls, err);
    if (s != MC_OK) goto done;
    const float *mine = emb;
    if (cache_path) { /* collective: every rank gets all n rows */
        size_t computed = 0;
        s = mc_store_open_or_create(c, cache_path, &cache, NULL, err);
        if (s == MC_OK)
            s = mc_text_embed_cached(c, cache, e, (const char *const *)texts, n, tmpl, emb,
                                     &computed, err);
        if (s == MC_OK)
            mc_info0("embed-text: %zu of %zu texts computed, %zu from the cache", computed, n,
                     n - computed);
        if (s != MC_OK) goto done;
        mine = emb + b0 * dim;
    } else {
        ls = mc_text_embed(e, (const char *const *)texts + b0, (size_t)m, tmpl, false, emb, err);
        s = mc_comm_agree(c, ls, err);
        if (s != MC_OK) goto done;
    }
    /* Stop signals are polled between the phases (tokenize, embed, ensemble, write): the cache
     * (--cache) keeps what was embedded, the output is written only when everything is. */
    int sig = mc_comm_poll(c, false, NULL);
    if (sig) {
        s = mc_fail_stopped(err, sig, "embed-text: %s not written%s; rerun the command", out_path,
                            cache_path ? " (the embeddings computed so far are in the cache)" : "");
        goto done;
    }
    if (tmpls) {
        ls = mc_text_embed_ensemble(e, (const char *const *)texts + b0, (size_t)m,
                                    (const char *const *)tmpls, nt, ens, err);
        s = mc_comm_agree(c, ls, err);
        if (s != MC_OK) goto done;
    }
    if ((sig = mc_comm_poll(c, false, NULL)) != 0) {
        s = mc_fail_stopped(err, sig, "embed-text: %s not written; rerun the command", out_path);
        goto done;
    }
    /* the output store */
    const char *name = clip ? "text_embeds" : "sentence_embeds";
    const int64_t se[2] = {(int64_t)n, dim}, si[2] = {(int64_t)n, ctx};
    s = mc_store_create(c, out_path, MC_STORE_OVERWRITE, &st, err);
    if (s == MC_OK) s = mc_store_create_dataset(st, name, MC_DTYPE_F32, 2, se, 0, err);
    if (s == MC_OK && clip)
        s = mc_store_create_dataset(st, "input_ids", MC_DTYPE_I32, 2, si, 0, err);
    if (s == MC_OK && tmpls)
        s = mc_store_create_dataset(st, "ensemble_embeds", MC_DTYPE_F32, 2, se, 0, err);
    if (s == MC_OK) s = mc_store_write_rows(st, name, MC_DTYPE_F32, b0, b1, mine, err);
    if (s == MC_OK && clip)
        s = mc_store_write_rows(st, "input_ids", MC_DTYPE_I32, b0, b1, ids, err);
    if (s == MC_OK && tmpls)
        s = mc_store_write_rows(st, "ensemble_embeds", MC_DTYPE_F32, b0, b1, ens, err);
    if (s == MC_OK) s = mc_store_set_attr_str(st, "/", "model", dir, err);
    if (s == MC_OK) s = mc_store_set_attr_str(st, "/", "family", clip ? "clip" : "mpnet", err);
    if (s == MC_OK) s = mc_store_set_attr_str(st, "/", "template", tmpl ? tmpl : "", err);
    if (s == MC_OK)
        s = mc_store_set_attr_str(st, name, "normalized", clip ? "no" : "yes (L2)", err);
done:
    if (st) {
        mc_error e2 = {0};
        mc_status cs = mc_store_close(&st, &e2);
        if (s == MC_OK && cs != MC_OK) s = cs, *err = e2;
    }
    if (cache) {
        mc_error e2 = {0};
        mc_status cs = mc_store_close(&cache, &e2);
        if (s == MC_OK && cs != MC_OK) s = cs, *err = e2;
    }
    free(emb);
    free(ens);
    free(ids);
    mc_text_encoder_free(&e);
    free_strings(texts, n);
    free_strings(tmpls, nt);
    return s;
}

int mc_cmd_embed_text(const mc_comm *c, int argc, char **argv) {
    mc_cli_parser p;
    int rc = mc_cli_begin(&p, c, &mc_cmd_embed_text_cli, argc, argv);
    if (rc >= 0) return rc;
    const char *dir = NULL, *texts = NULL, *tmpl = NULL, *tmpls = NULL, *cache = NULL, *out = NULL,
               *v;
    for (int id; (id = mc_cli_next(&p, &v)) != MC_CLI_END;) {
        switch (id) {
        case MC_CLI_ERROR: return MC_EXIT_USAGE;
        case OPT_TEXTS: texts = v; break;
        case OPT_TEMPLATE: tmpl = v; break;
        case OPT_TEMPLATES: tmpls = v; break;
        case OPT_CACHE: cache = v; break;
        case OPT_OUT: out = v; break;
        case MC_CLI_ARG:
            if (dir) return mc_cli_usage_error(c, "embed-text", "unexpected argument '%s'", v);
            dir = v;
            break;
        }
    }
    if (!dir || !texts || !out)
        return mc_cli_usage_error(c, "embed-text",
                                  "need MODEL_DIR, --texts FILE.json and --out FILE.h5");
    mc_error err = {0};
    mc_status s = run(c, dir, texts, tmpl, tmpls, cache, out, &err);
    return mc_cli_finish(c, s, &err);
}
