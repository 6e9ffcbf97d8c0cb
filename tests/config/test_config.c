/* test_config.c - typed YAML configs: values of good configs, one test per error class (each
 * message must name file:line:col and the key), hash stability, canonical idempotence, paths,
 * and the sweep order. Runs in the build tree (writes a few small files there). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "miclip/config.h"
#include "miclip/fsutil.h"
#include "test_util.h"

#define BASE                                                                                       \
    "name: t\n"                                          /* 1 */                                   \
    "models: {target: m/target, clip: /abs/clip}\n"      /* 2 */                                   \
    "datasets:\n"                                        /* 3 */                                   \
    "  train: {kind: world, root: data, split: train}\n" /* 4 */                                   \
    "  eval: {kind: world, root: data, split: val}\n"    /* 5 */                                   \
    "extract: {layers: [\"10\", logits]}\n"              /* 6 */

static mc_config *parse(const char *text, mc_error *err) {
    mc_config *cfg = NULL;
    memset(err, 0, sizeof *err);
    mc_config_parse_text(text, strlen(text), "t.yaml", "/base/dir", &cfg, err);
    return cfg;
}

static mc_config *parse_ok(const char *text) {
    mc_error err;
    mc_config *cfg = parse(text, &err);
    CHECK_MSG(cfg != NULL, "expected success, got: %s", err.msg);
    return cfg;
}

/* Expects failure with MC_ERR_CONFIG, a message starting with prefix and containing sub. */
static void expect_error(const char *text, const char *prefix, const char *sub) {
    mc_error err;
    mc_config *cfg = parse(text, &err);
    CHECK_MSG(cfg == NULL, "expected an error starting '%s'", prefix);
    CHECK_MSG(err.code == MC_ERR_CONFIG, "code %d for '%s'", (int)err.code, err.msg);
    CHECK_MSG(!strncmp(err.msg, prefix, strlen(prefix)), "\n  got:  %s\n  want: %s...", err.msg,
              prefix);
    CHECK_MSG(!sub || strstr(err.msg, sub), "\n  got:  %s\n  want it to contain: %s", err.msg, sub);
    CHECK_MSG(!strchr(err.msg, '\n'), "message is not one line: %s", err.msg);
    mc_config_free(&cfg);
}

static void test_defaults(void) {
    mc_config *c = parse_ok(BASE);
    if (!c) return;
    CHECK(!strcmp(c->name, "t"));
    CHECK(!strcmp(c->output_dir, "/base/dir/results/t"));
    CHECK(c->seeds.n == 1 && c->seeds.v[0] == 0);
    CHECK(c->threads == 0);
    CHECK(c->stages.n == MC_STAGE_COUNT);
    for (int i = 0; i < c->stages.n; i++) CHECK(c->stages.v[i] == i);
    CHECK(!strcmp(c->models.target, "/base/dir/m/target"));
    CHECK(!strcmp(c->models.clip, "/abs/clip"));
    CHECK(!strcmp(c->models.mpnet, ""));
    CHECK(c->datasets.train.kind == MC_DS_WORLD);
    CHECK(!strcmp(c->datasets.train.root, "/base/dir/data"));
    CHECK(!strcmp(c->datasets.train.split, "train"));
    CHECK(c->datasets.train.n_samples == 0);
    CHECK(!strcmp(c->datasets.eval.split, "val"));
    CHECK(c->datasets.unseen.kind == MC_DS_NONE && !strcmp(c->datasets.unseen.root, ""));
    CHECK(c->concepts.n == 1 && !strcmp(c->concepts.v[0].name, "classes") &&
          c->concepts.v[0].source == MC_CONCEPTS_CLASSES);
    CHECK(c->extract.layers.n == 2 && !strcmp(c->extract.layers.v[0], "10") &&
          !strcmp(c->extract.layers.v[1], "logits"));
    CHECK(c->extract.pool == MC_CFG_POOL_AUTO && c->extract.batch_size == 32);
    CHECK(c->extract.dtype == MC_STORE_F32 && c->extract.on_bad_image == MC_BAD_IMAGE_FAIL);
    /* Paper Appendix C.2 and the design's defaults. */
    CHECK(!strcmp(c->sae.layer, "10"));
    CHECK(c->sae.features == 24576 && c->sae.k == 32 && c->sae.batch_size == 32);
    CHECK(c->sae.lr == 1e-3 && c->sae.aux_k == 256 && c->sae.aux_coef == 1.0 / 32);
    CHECK(c->align.variants.n == 1 && c->align.variants.v[0] == MC_VARIANT_INOUT);
    CHECK(c->align.lr == 1e-4 && c->align.batch_size == 1024 && c->align.epochs == 1);
    CHECK(c->align.temperature.learnable && c->align.init_temperature == 0.07);
    CHECK(!strcmp(c->align.prompt, "a photo of a {}."));
    CHECK(c->localize.tau == 5 && c->localize.concepts.n == 1 &&
          !strcmp(c->localize.concepts.v[0], "classes"));
    CHECK(c->localize.units.n == 2);
    CHECK(c->intervene.methods.n == 1 && c->intervene.methods.v[0] == MC_METHOD_MICLIP);
    CHECK(c->intervene.betas.n == 2 && c->intervene.betas.v[0] == 0.0 &&
          c->intervene.betas.v[1] == 2.0);
    CHECK(c->intervene.tokens == MC_TOKENS_ALL && !strcmp(c->intervene.layer, "10"));
    CHECK(c->report.formats.n == 3 && c->report.alpha == 0.05);
    CHECK(strlen(c->hash) == 64);
    CHECK(!strcmp(c->source_path, "t.yaml"));
    mc_config_free(&c);
    CHECK(c == NULL);
    mc_config_free(&c); /* NULL is fine */
}

static void test_explicit_values(void) {
    mc_config *c =
        parse_ok("name: t2\n"
                 "output_dir: \"{name}-out/./x/../y\"\n"
                 "seeds: [3, 1]\n"
                 "stages: [report, align, extract]\n"
                 "models: {target: m/target, clip: /abs/clip}\n"
                 "datasets:\n"
                 "  train: {kind: imagenet, root: data, split: train, n_samples: 100000}\n"
                 "  unseen: {kind: dtd, root: ../dtd//set/}\n"
                 "concepts:\n"
                 "  - name: words\n"
                 "    file: concepts/words.txt\n"
                 "  - {name: cls, source: classes}\n"
                 "extract: {layers: [\"10\", logits], pool: cls, dtype: f16, on_bad_image: skip}\n"
                 "sae: {layer: logits, k: 7, features: 100, lr: 5e-4}\n"
                 "align: {temperature: 1.0, variants: [out, in], prompt: 'itap of a {}'}\n"
                 "describe: {concepts: [cls], units: [sae, neuron]}\n"
                 "baselines: {methods: [clip_dissect]}\n"
                 "intervene: {methods: [clip_dissect, random], modes: [add], betas: [-1.5, 3], "
                 "tokens: cls,\n"
                 "            datasets: [unseen]}\n");
    if (!c) return;
    CHECK(!strcmp(c->output_dir, "/base/dir/t2-out/y"));
    CHECK(c->seeds.n == 2 && c->seeds.v[0] == 3 && c->seeds.v[1] == 1); /* config order kept */
    CHECK(c->stages.n == 3 && c->stages.v[0] == MC_STAGE_EXTRACT &&
          c->stages.v[1] == MC_STAGE_ALIGN &&
          c->stages.v[2] == MC_STAGE_REPORT); /* sorted into pipeline order */
    CHECK(c->datasets.train.n_samples == 100000 && c->datasets.train.kind == MC_DS_IMAGENET);
    CHECK(!strcmp(c->datasets.unseen.root, "/base/dtd/set"));
    CHECK(c->concepts.n == 2 && !strcmp(c->concepts.v[0].file, "/base/dir/concepts/words.txt") &&
          c->concepts.v[0].source == MC_CONCEPTS_FILE && !strcmp(c->concepts.v[1].file, ""));
    CHECK(c->extract.pool == MC_CFG_POOL_CLS && c->extract.dtype == MC_STORE_F16 &&
          c->extract.on_bad_image == MC_BAD_IMAGE_SKIP);
    CHECK(!strcmp(c->sae.layer, "logits") && c->sae.k == 7 && c->sae.lr == 5e-4);
    CHECK(!strcmp(c->intervene.layer, "logits")); /* follows sae.layer */
    CHECK(!c->align.temperature.learnable && c->align.temperature.value == 1.0);
    CHECK(c->align.variants.v[0] == MC_VARIANT_OUT && c->align.variants.v[1] == MC_VARIANT_IN);
    CHECK(!strcmp(c->align.prompt, "itap of a {}"));
    CHECK(c->localize.concepts.n == 2); /* empty = every set */
    CHECK(c->describe.concepts.n == 1 && !strcmp(c->describe.concepts.v[0], "cls"));
    CHECK(c->describe.units.v[0] == MC_UNIT_NEURON && c->describe.units.v[1] == MC_UNIT_SAE);
    CHECK(c->intervene.betas.v[0] == -1.5 && c->intervene.betas.v[1] == 3.0);
    CHECK(c->intervene.modes.n == 1 && c->intervene.modes.v[0] == MC_MODE_ADD);
    CHECK(c->intervene.tokens == MC_TOKENS_CLS);
    /* The canonical text parses back to itself (and so to the same hash). */
    mc_error err = {0};
    mc_config *again = NULL;
    CHECK(mc_config_parse_text(c->canonical, strlen(c->canonical), "canon", "/", &again, &err) ==
          MC_OK);
    if (again) {
        CHECK(!strcmp(again->canonical, c->canonical));
        CHECK(!strcmp(again->hash, c->hash));
        mc_config_free(&again);
    }
    char hex[65];
    mc_sha256_hex(c->canonical, strlen(c->canonical), hex);
    CHECK(!strcmp(hex, c->hash));
    mc_config_free(&c);
}

/* Strings holding characters YAML reads as line breaks (NEL, LS, PS, CR) or forbids unescaped
 * (C0/C1 controls, U+FFFE) keep their exact bytes through the canonical text: a quoted scalar
 * would fold a raw break into a space (a fuzzer found NEL doing that). */
static void test_canonical_escapes(void) {
    mc_config *c = parse_ok(BASE "align: {prompt: \"a\\Nb\\Lc\\Pd\\re\\x81f\\x01g\\uFFFEh {}\"}\n");
    if (!c) return;
    const char *want = "a\xc2\x85"
                       "b\xe2\x80\xa8"
                       "c\xe2\x80\xa9"
                       "d\re\xc2\x81"
                       "f\x01g\xef\xbf\xbe"
                       "h {}";
    CHECK_MSG(!strcmp(c->align.prompt, want), "prompt parsed as '%s'", c->align.prompt);
    mc_error err = {0};
    mc_config *again = NULL;
    CHECK(mc_config_parse_text(c->canonical, strlen(c->canonical), "canon", "/", &again, &err) ==
          MC_OK);
    if (again) {
        CHECK_MSG(!strcmp(again->align.prompt, want), "canonical prompt read back as '%s'",
                  again->align.prompt);
        CHECK(!strcmp(again->canonical, c->canonical));
        mc_config_free(&again);
    }
    mc_config_free(&c);
}

static void test_errors(void) {
    /* Malformed YAML. */
    expect_error("name: [unclosed\n", "t.yaml:2:1: malformed YAML", NULL);
    expect_error("name: t\n  bad indent: 1\n", "t.yaml:2:", "malformed YAML");
    /* Unknown key, with suggestions. */
    expect_error(BASE "sae:\n  featurs: 10\n", "t.yaml:8:3: key 'sae.featurs': unknown key",
                 "did you mean 'features'?");
    expect_error(BASE "k: 3\n", "t.yaml:7:1: key 'k': unknown key", "did you mean 'sae.k'?");
    expect_error(BASE "zzzzzzzz: 3\n", "t.yaml:7:1: key 'zzzzzzzz': unknown key",
                 "known keys here:");
    expect_error(BASE "concepts:\n  - {name: a, fiel: x}\n",
                 "t.yaml:8:15: key 'concepts[0].fiel': unknown key", "did you mean 'file'?");
    /* Wrong type. */
    expect_error(BASE "sae:\n  k: many\n", "t.yaml:8:6: key 'sae.k': expected an integer", NULL);
    expect_error(BASE "sae:\n  k: \"32\"\n", "t.yaml:8:6: key 'sae.k': expected an integer",
                 "quoted");
    expect_error(BASE "sae:\n  k: 3.5\n", "t.yaml:8:6: key 'sae.k': expected an integer", NULL);
    expect_error(BASE "seeds: 3\n", "t.yaml:7:8: key 'seeds': expected a list", NULL);
    expect_error(BASE "sae: [1]\n", "t.yaml:7:6: key 'sae': expected a mapping", NULL);
    expect_error(BASE "sae:\n  lr: fast\n", "t.yaml:8:7: key 'sae.lr': expected a finite number",
                 NULL);
    expect_error(BASE "sae:\n  lr: .inf\n", "t.yaml:8:7: key 'sae.lr': expected a finite number",
                 NULL);
    expect_error(BASE "align:\n  temperature: hot\n",
                 "t.yaml:8:16: key 'align.temperature': expected 'learnable'", NULL);
    expect_error(BASE "seeds:\n", "t.yaml:7:7: key 'seeds': expected a list", NULL);
    expect_error(BASE "align:\n  variants: [in+uot]\n",
                 "t.yaml:8:14: key 'align.variants[0]': unknown value 'in+uot'",
                 "did you mean 'in+out'?");
    expect_error(BASE "extract:\n", "t.yaml:7:1: key 'extract': duplicate key",
                 "first given at line 6");
    expect_error(BASE "output_dir: \"a\\0b\"\n",
                 "t.yaml:7:13: key 'output_dir': contains a NUL byte", NULL);
    expect_error(BASE "\"a\\tb\\x1b\": 1\n", "t.yaml:7:1: key 'a?b?': unknown key", NULL);
    expect_error("name: \"bad name\"\n", "t.yaml:1:7: key 'name': 'bad name' is not a name", NULL);
    /* Out of range. */
    expect_error(BASE "sae:\n  k: 0\n", "t.yaml:8:6: key 'sae.k': 0 is out of range [1, 65536]",
                 NULL);
    expect_error(BASE "sae:\n  lr: 0\n", "t.yaml:8:7: key 'sae.lr': 0 is out of range (0, 1]",
                 NULL);
    expect_error(BASE "seeds: [1, -2]\n", "t.yaml:7:12: key 'seeds[1]': -2 is out of range", NULL);
    expect_error(BASE "threads: 99999999999999999999999\n",
                 "t.yaml:7:10: key 'threads':", "out of range");
    expect_error(BASE "align:\n  temperature: 0\n",
                 "t.yaml:8:16: key 'align.temperature': 0 is out of range", NULL);
    expect_error(BASE "seeds: [1, 2, 1]\n", "t.yaml:7:15: key 'seeds[2]': repeats item 0", NULL);
    expect_error(BASE "seeds: []\n", "t.yaml:7:8: key 'seeds': must list at least one value", NULL);
    /* Missing required keys: blamed on the enclosing mapping. */
    expect_error("name: t\nmodels: {target: a}\nextract: {layers: [x]}\n",
                 "t.yaml:2:9: key 'models.clip': missing required key", NULL);
    expect_error("models: {target: a, clip: b}\nextract: {layers: [x]}\n",
                 "t.yaml:1:1: key 'name': missing required key", NULL);
    expect_error(BASE "concepts:\n  - {file: x}\n",
                 "t.yaml:8:5: key 'concepts[0].name': missing required key", NULL);
    expect_error("name: t\nmodels: {target: a, clip: b}\nstages: [align]\n",
                 "t.yaml:1:1: key 'extract.layers': missing required key", NULL);
    /* Keys that contradict each other. */
    expect_error(BASE "sae: {features: 16, k: 32}\n",
                 "t.yaml:7:24: key 'sae.k': 32 is larger than sae.features", NULL);
    expect_error(BASE "sae: {layer: \"11\"}\n",
                 "t.yaml:7:14: key 'sae.layer': '11' is not one of extract.layers", NULL);
    expect_error(BASE "align: {prompt: a photo}\n",
                 "t.yaml:7:17: key 'align.prompt': must contain '{}'", NULL);
    expect_error(BASE "concepts: [{name: a}]\n",
                 "t.yaml:7:12: key 'concepts[0].file': missing required key", NULL);
    expect_error(BASE "describe: {concepts: [nope]}\n",
                 "t.yaml:7:23: key 'describe.concepts[0]': no concept set", NULL);
    expect_error(BASE "intervene: {methods: [clip_dissect]}\n",
                 "t.yaml:7:23: key 'intervene.methods[0]':", "not in baselines.methods");
    expect_error(BASE "concepts: [{name: w, file: w.txt}]\n",
                 "t.yaml:7:11: key 'concepts': no set with 'source: classes'", "'miclip'");
    /* ... which random units, or no intervene stage, do not need. */
    mc_config *ok =
        parse_ok(BASE "concepts: [{name: w, file: w.txt}]\nintervene: {methods: [random]}\n");
    CHECK(ok != NULL);
    mc_config_free(&ok);
    ok = parse_ok(BASE "concepts: [{name: w, file: w.txt}]\nstages: [extract, align, localize]\n");
    CHECK(ok != NULL);
    mc_config_free(&ok);
    expect_error(BASE "align: {variants: [in+out]}\nintervene: {variants: [out]}\n",
                 "t.yaml:8:24: key 'intervene.variants[0]': 'out' is not in align.variants", NULL);
    expect_error(BASE "baselines: {methods: [miclip]}\n",
                 "t.yaml:7:23: key 'baselines.methods[0]':", "not a baseline");
    expect_error(BASE "intervene: {datasets: [unseen]}\n",
                 "t.yaml:4:3: key 'datasets.unseen': missing required dataset", NULL);
    expect_error(BASE "sae: {input: all}\n",
                 "t.yaml:7:14: key 'sae.input': 'all' needs extract.pool: all", NULL);
    /* Things the loader refuses. */
    expect_error(BASE "seeds: &s [1]\nthreads: *s\n", "t.yaml:8:10: YAML aliases", NULL);
    expect_error(BASE "threads: !!int 3\n", "t.yaml:7:10: YAML tags", NULL);
    expect_error(BASE "---\nname: u\n", "t.yaml:7:1: malformed YAML: only one document", NULL);
    expect_error("", "t.yaml:1:1: the config is empty", NULL);
    expect_error("# only a comment\n", "t.yaml:1:1: the config is empty", NULL);
    expect_error("- a\n- b\n", "t.yaml:1:1: expected a mapping of keys at the top level", NULL);
    expect_error(BASE "? [a, b]\n: 1\n", "t.yaml:7:3: malformed YAML: mapping keys must be scalars",
                 NULL);

    /* Nesting deeper than 64 (libyaml itself has no limit). */
    char deep[400];
    int o = snprintf(deep, sizeof deep, "name: ");
    for (int i = 0; i < 70; i++) deep[o++] = '[';
    for (int i = 0; i < 70; i++) deep[o++] = ']';
    deep[o++] = '\n';
    deep[o] = '\0';
    expect_error(deep, "t.yaml:1:70: YAML nesting is deeper than 64 levels", NULL);
    /* 64 levels (the top-level mapping is the first) are fine for the loader (the schema then refuses the value). */
    o = snprintf(deep, sizeof deep, "name: ");
    for (int i = 0; i < 63; i++) deep[o++] = '[';
    for (int i = 0; i < 63; i++) deep[o++] = ']';
    deep[o++] = '\n';
    deep[o] = '\0';
    expect_error(deep, "t.yaml:1:7: key 'name': expected a string, found a list", NULL);

    /* A text over 1 MiB. */
    size_t big = MC_CONFIG_MAX_BYTES + 1;
    char *text = malloc(big);
    if (text) {
        memset(text, '#', big);
        mc_error err = {0};
        mc_config *cfg = NULL;
        CHECK(mc_config_parse_text(text, big, "t.yaml", "/", &cfg, &err) == MC_ERR_CONFIG);
        CHECK_MSG(!strncmp(err.msg, "t.yaml:1:1: config is 1048577 bytes", 35), "%s", err.msg);
        /* The same through a file. */
        CHECK(mc_write_file_atomic("big.yaml", text, big, &err) == MC_OK);
        CHECK(mc_config_parse_file("big.yaml", &cfg, &err) == MC_ERR_CONFIG);
        CHECK_MSG(!strncmp(err.msg, "big.yaml:1:1: the config is larger than the limit", 49), "%s",
                  err.msg);
        free(text);
    }
    mc_error err = {0};
    mc_config *cfg = NULL;
    CHECK(mc_config_parse_file("no-such-config.yaml", &cfg, &err) == MC_ERR_IO);
    CHECK(strstr(err.msg, "no-such-config.yaml") != NULL);
}

static void hash_of(const char *text, char out[65]) {
    mc_config *c = parse_ok(text);
    strcpy(out, c ? c->hash : "");
    mc_config_free(&c);
}

static void test_hash_stability(void) {
    char h0[65], h1[65], h2[65], h3[65], h4[65];
    hash_of(BASE, h0);
    /* Same values: other key order, block style, comments, quoting, defaults spelled out. */
    hash_of("# an experiment\n"
            "extract:\n"
            "  layers:\n"
            "    - '10'      # the residual stream\n"
            "    - \"logits\"\n"
            "datasets:\n"
            "  eval:  {split: val, root: ./data, kind: world}\n"
            "  train:\n"
            "    root: data/\n"
            "    kind: world\n"
            "    split: \"train\"\n"
            "models:\n"
            "    clip:   /abs//clip\n"
            "    target: m/../m/target\n"
            "sae: {k: 32, lr: 1e-3}\n"
            "seeds: [0]\n"
            "stages: [report, intervene, baselines, describe, localize, align, sae, extract]\n"
            "name: \"t\"\n",
            h1);
    CHECK_MSG(h0[0] && !strcmp(h0, h1), "%s vs %s", h0, h1);
    /* Any value change changes it. */
    hash_of(BASE "sae: {k: 33}\n", h2);
    CHECK(h2[0] && strcmp(h0, h2) != 0);
    hash_of(BASE "seeds: [1]\n", h3);
    CHECK(h3[0] && strcmp(h0, h3) != 0);
    hash_of(BASE "align: {prompt: \"a photo of a {}\"}\n", h4);
    CHECK(h4[0] && strcmp(h0, h4) != 0);
    /* Layer order is meaningful (it is the sweep order). */
    char h5[65];
    hash_of("name: t\nmodels: {target: m/target, clip: /abs/clip}\ndatasets:\n  train: {kind: "
            "world, root: data, "
            "split: train}\n  eval: {kind: world, root: data, split: val}\nextract: {layers: "
            "[logits, \"10\"]}\n"
            "sae: {layer: \"10\"}\n",
            h5);
    CHECK(h5[0] && strcmp(h0, h5) != 0);
}

static void test_paths_from_file(void) {
    /* Relative paths resolve against the config file's directory, not the current one. */
    mc_error err = {0};
    CHECK(mc_mkdir_p("cfgdir/sub", &err) == MC_OK);
    const char *text =
        BASE "concepts: [{name: w, file: ../words.txt}, {name: c, source: classes}]\n";
    CHECK(mc_write_file_atomic("cfgdir/sub/x.yaml", text, strlen(text), &err) == MC_OK);
    mc_config *c = NULL;
    CHECK_MSG(mc_config_parse_file("cfgdir/sub/x.yaml", &c, &err) == MC_OK, "%s", err.msg);
    char cwd[PATH_MAX], want[PATH_MAX + 64];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    if (c) {
        snprintf(want, sizeof want, "%s/cfgdir/sub/m/target", cwd);
        CHECK_MSG(!strcmp(c->models.target, want), "%s vs %s", c->models.target, want);
        snprintf(want, sizeof want, "%s/cfgdir/words.txt", cwd);
        CHECK_MSG(!strcmp(c->concepts.v[0].file, want), "%s vs %s", c->concepts.v[0].file, want);
        CHECK(!strcmp(c->source_path, "cfgdir/sub/x.yaml"));
        mc_config_free(&c);
    }
    /* Errors in a file name the file as given. */
    const char *bad = BASE "sae: {k: -1}\n";
    CHECK(mc_write_file_atomic("cfgdir/bad.yaml", bad, strlen(bad), &err) == MC_OK);
    CHECK(mc_config_parse_file("cfgdir/bad.yaml", &c, &err) == MC_ERR_CONFIG);
    CHECK_MSG(!strncmp(err.msg, "cfgdir/bad.yaml:7:10: key 'sae.k': -1 is out of range", 53), "%s",
              err.msg);
}

static void test_sweep(void) {
    mc_config *c =
        parse_ok("name: s\nseeds: [5, 1]\n"
                 "models: {target: a, clip: b}\n"
                 "datasets:\n  train: {kind: world, root: d}\n  eval: {kind: world, root: d}\n"
                 "extract: {layers: [\"3\", stages.3.layers.1.shortcut]}\n"
                 "align: {variants: [in, in+out]}\n"
                 "baselines: {methods: [act_values]}\n"
                 "intervene: {methods: [miclip, random], modes: [add, scale], betas: [2, 0.5]}\n");
    if (!c) return;
    mc_error err = {0};
    mc_task *t = NULL;
    int n = 0;
    CHECK(mc_config_tasks(c, MC_STAGE_ALIGN, &t, &n, &err) == MC_OK);
    CHECK(n == 8);
    /* seed outermost, then layer, then variant, each in config order */
    const char *want[8] = {"align-s5-l3-in",
                           "align-s5-l3-inout",
                           "align-s5-lstages.3.layers.1.shortcut-in",
                           "align-s5-lstages.3.layers.1.shortcut-inout",
                           "align-s1-l3-in",
                           "align-s1-l3-inout",
                           "align-s1-lstages.3.layers.1.shortcut-in",
                           "align-s1-lstages.3.layers.1.shortcut-inout"};
    for (int i = 0; i < n && i < 8; i++) {
        CHECK(t[i].index == i && t[i].stage == MC_STAGE_ALIGN);
        CHECK_MSG(!strcmp(t[i].id, want[i]), "task %d: %s (want %s)", i, t[i].id, want[i]);
    }
    if (n == 8)
        CHECK(t[4].seed == 1 && !strcmp(t[4].layer, "3") && t[4].variant == MC_VARIANT_IN &&
              t[4].method == -1);
    mc_tasks_free(&t);
    CHECK(t == NULL);

    CHECK(mc_config_tasks(c, MC_STAGE_INTERVENE, &t, &n, &err) == MC_OK);
    CHECK(n == 2 * 2 * 2 * 2);
    const char *want_i[4] = {"intervene-s5-l3-miclip-add-b2", "intervene-s5-l3-miclip-add-b0.5",
                             "intervene-s5-l3-miclip-scale-b2",
                             "intervene-s5-l3-miclip-scale-b0.5"};
    for (int i = 0; i < 4 && i < n; i++) CHECK_MSG(!strcmp(t[i].id, want_i[i]), "%s", t[i].id);
    if (n == 16) {
        CHECK(t[4].method == MC_METHOD_RANDOM && t[4].mode == MC_MODE_ADD && t[4].beta == 2.0 &&
              t[4].seed == 5);
        CHECK(t[8].seed == 1 && t[15].index == 15 && t[15].beta == 0.5 &&
              t[15].mode == MC_MODE_SCALE);
        /* ids are unique */
        for (int i = 0; i < n; i++)
            for (int j = 0; j < i; j++) CHECK(strcmp(t[i].id, t[j].id) != 0);
    }
    mc_tasks_free(&t);

    CHECK(mc_config_tasks(c, MC_STAGE_BASELINES, &t, &n, &err) == MC_OK);
    CHECK(n == 4 && n > 0 && !strcmp(t[0].id, "baselines-s5-l3-act_values"));
    mc_tasks_free(&t);
    CHECK(mc_config_tasks(c, MC_STAGE_SAE, &t, &n, &err) == MC_OK);
    CHECK(n == 2 && n > 0 && !strcmp(t[0].id, "sae-s5-l3") && !strcmp(t[1].id, "sae-s1-l3"));
    mc_tasks_free(&t);
    CHECK(mc_config_tasks(c, MC_STAGE_REPORT, &t, &n, &err) == MC_OK);
    CHECK(n == 1 && n > 0 && !strcmp(t[0].id, "report"));
    mc_tasks_free(&t);

    /* All stages: 2 extract + 2 sae + 8 align + 8 localize + 8 describe + 4 baselines + 16 + 1. */
    CHECK(mc_config_all_tasks(c, &t, &n, &err) == MC_OK);
    CHECK_MSG(n == 49, "%d tasks", n);
    for (int i = 1; i < n; i++)
        CHECK(t[i].stage > t[i - 1].stage || t[i].index == t[i - 1].index + 1);
    mc_tasks_free(&t);

    /* The same config twice gives the same list (no hidden state). */
    mc_task *t2 = NULL;
    int n2 = 0;
    CHECK(mc_config_all_tasks(c, &t, &n, &err) == MC_OK);
    CHECK(mc_config_all_tasks(c, &t2, &n2, &err) == MC_OK);
    CHECK(n == n2);
    for (int i = 0; i < n && i < n2; i++) CHECK(!strcmp(t[i].id, t2[i].id));
    mc_tasks_free(&t);
    mc_tasks_free(&t2);

    /* Selecting one task, as a Slurm array job does. */
    mc_task one;
    CHECK(mc_config_task_select(c, MC_STAGE_ALIGN, "5", &one, &err) == MC_OK);
    CHECK(one.index == 5 && !strcmp(one.id, "align-s1-l3-inout"));
    CHECK(mc_config_task_select(c, MC_STAGE_ALIGN, "8", &one, &err) == MC_ERR_ARG);
    CHECK_MSG(strstr(err.msg, "not one of the 8 tasks of stage align") != NULL, "%s", err.msg);
    CHECK(mc_config_task_select(c, MC_STAGE_ALIGN, "x1", &one, &err) == MC_ERR_ARG);
    CHECK(mc_config_task_select(c, MC_STAGE_ALIGN, "-1", &one, &err) == MC_ERR_ARG);
    CHECK(mc_config_task_select(c, MC_STAGE_ALIGN, NULL, &one, &err) == MC_ERR_ARG);
    CHECK(mc_config_task_select(c, MC_STAGE_REPORT, NULL, &one, &err) == MC_OK &&
          !strcmp(one.id, "report"));
    mc_config_free(&c);
    c = parse_ok(
        "name: s\nmodels: {target: a, clip: b}\ndatasets: {train: {kind: world, root: d}}\n"
        "extract: {layers: [x]}\nstages: [extract, align]\n");
    if (c) {
        CHECK(mc_config_task_select(c, MC_STAGE_ALIGN, "", &one, &err) == MC_OK &&
              !strcmp(one.id, "align-s0-lx-inout"));
        mc_config_free(&c);
    }

    /* miclip sweeps intervene.variants; the first align variant keeps the id without the axis
     * (variant -1), so its results keep their files; empty means the first align variant. */
    for (int def = 0; def < 2; def++) {
        char text[600];
        snprintf(text, sizeof text,
                 BASE "align: {variants: [in, in+out]}\nstages: [intervene]\n"
                      "intervene: {methods: [miclip, random], betas: [2.0], layer: \"10\"%s}\n",
                 def ? "" : ", variants: [in+out, in]");
        c = parse_ok(text);
        if (!c) continue;
        CHECK(c->intervene.variants.n == (def ? 1 : 2) &&
              c->intervene.variants.v[0] == (def ? MC_VARIANT_IN : MC_VARIANT_INOUT));
        CHECK(mc_config_tasks(c, MC_STAGE_INTERVENE, &t, &n, &err) == MC_OK);
        const char *want_v[3] = {"intervene-s0-l10-inout-miclip-scale-b2",
                                 "intervene-s0-l10-miclip-scale-b2",
                                 "intervene-s0-l10-random-scale-b2"};
        CHECK_MSG(n == (def ? 2 : 3), "%d tasks", n);
        for (int i = 0; i < n && n == (def ? 2 : 3); i++) {
            CHECK_MSG(!strcmp(t[i].id, want_v[i + def]), "%s", t[i].id);
            CHECK(t[i].variant == (!def && i == 0 ? MC_VARIANT_INOUT : -1));
        }
        mc_tasks_free(&t);
        mc_config_free(&c);
    }

    /* A stage that is not run has no tasks. */
    c = parse_ok(
        "name: s\nmodels: {target: a, clip: b}\ndatasets: {train: {kind: world, root: d}}\n"
        "extract: {layers: [x]}\nstages: [extract, align]\n");
    if (c) {
        CHECK(mc_config_tasks(c, MC_STAGE_INTERVENE, &t, &n, &err) == MC_OK);
        CHECK(n == 0 && t == NULL);
        mc_config_free(&c);
    }
}

static void test_names(void) {
    CHECK(!strcmp(mc_stage_name(MC_STAGE_INTERVENE), "intervene"));
    CHECK(!strcmp(mc_variant_name(MC_VARIANT_INOUT), "in+out"));
    CHECK(!strcmp(mc_method_name(MC_METHOD_CLIP_DISSECT), "clip_dissect"));
    CHECK(!strcmp(mc_pool_name(MC_CFG_POOL_SPATIAL_MEAN), "spatial_mean"));
    CHECK(!strcmp(mc_dataset_kind_name(MC_DS_FILELIST), "filelist"));
    CHECK(!strcmp(mc_mode_name(MC_MODE_ADD), "add"));
    CHECK(!strcmp(mc_unit_kind_name(MC_UNIT_SAE), "sae"));
    CHECK(!strcmp(mc_stage_name(99), "?"));
    for (int i = 0; i < MC_STAGE_COUNT; i++) CHECK(mc_stage_from_name(mc_stage_name(i)) == i);
    CHECK(mc_stage_from_name("nope") == -1 && mc_stage_from_name(NULL) == -1);
}

int main(int argc, char **argv) {
    /* `test_config --schema-md` prints the generated reference without the full binary. */
    if (argc > 1 && !strcmp(argv[1], "--schema-md")) {
        mc_config_write_schema_md(stdout);
        return 0;
    }
    test_defaults();
    test_explicit_values();
    test_canonical_escapes();
    test_errors();
    test_hash_stability();
    test_paths_from_file();
    test_sweep();
    test_names();
    return TEST_SUMMARY();
}
