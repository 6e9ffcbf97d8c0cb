/* schema.c - every config key: type, default, range, documentation.
 *
 * This table is the single source of truth: resolve.c validates against it and fills defaults
 * from it, and `miclip config --schema-md` prints docs/config.md from it (a test keeps the
 * committed file in sync). Add a key here, to mc_config in config.h, and nowhere else.
 * Defaults are YAML text, converted by the same code as user values. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "config/config_internal.h"

static const char *const stage_names[] = {
    "extract", "sae", "align", "localize", "describe", "baselines", "intervene", "report", NULL};
static const char *const ds_names[] = {"none",     "imagefolder", "imagenet", "dtd",
                                       "filelist", "world",       NULL};
static const char *const pool_names[] = {"auto", "cls", "mean", "spatial_mean", "all", NULL};
static const char *const dtype_names[] = {"f32", "f16", NULL};
static const char *const prefix_names[] = {"cache", "recompute", NULL};
static const char *const bad_image_names[] = {"fail", "skip", NULL};
static const char *const sae_input_names[] = {"pooled", "all", NULL};
static const char *const variant_names[] = {"in+out", "in", "out", NULL};
static const char *const reading_names[] = {"algorithm2", "section3.2", NULL};
static const char *const align_stop_names[] = {"converged", "epochs", NULL};
static const char *const unit_names[] = {"neuron", "sae", NULL};
static const char *const method_names[] = {"miclip",  "act_values", "clip_dissect", "netdissect",
                                           "vinterp", "random",     "oracle",       NULL};
static const char *const mode_names[] = {"scale", "add", NULL};
static const char *const sae_unit_names[] = {"algorithm2", "atom", NULL};
static const char *const neuron_unit_names[] = {"basis", "activation", NULL};
static const char *const unit_inputs_names[] = {"all", "class", NULL};
static const char *const add_beta_names[] = {"value", "mu", NULL};
static const char *const tokens_names[] = {"all", "cls", "patches", NULL};
static const char *const source_names[] = {"file", "classes", NULL};
static const char *const eval_set_names[] = {"eval", "unseen", NULL};
static const char *const format_names[] = {"md", "csv", "tex", NULL};
static const char *const fig_format_names[] = {"png", "svg", "pdf", NULL};
static const char *const figure_names[] = {"loss_curves",    "sae_curves",       "tsne",
                                           "attention_maps", "flawed_reasoning", NULL};

static const char *enum_name(const char *const *names, int count, int v) {
    return v >= 0 && v < count ? names[v] : "?";
}
const char *mc_stage_name(int v) { return enum_name(stage_names, MC_STAGE_COUNT, v); }
const char *mc_variant_name(int v) { return enum_name(variant_names, 3, v); }
const char *mc_reading_name(int v) { return enum_name(reading_names, 2, v); }

int mc_config_reading(const mc_config *cfg) {
    if (cfg->localize.sae_unit == 0 && cfg->localize.neuron_unit == 0) return MC_READING_ALGORITHM2;
    if (cfg->localize.sae_unit == 1 && cfg->localize.neuron_unit == 1) return MC_READING_SECTION32;
    return -1;
}

void mc_config_set_reading(mc_config *cfg, int r) {
    if (r < 0) return;
    cfg->localize.sae_unit = r == MC_READING_SECTION32;    /* atom : algorithm2 */
    cfg->localize.neuron_unit = r == MC_READING_SECTION32; /* activation : basis */
}
const char *mc_method_name(int v) { return enum_name(method_names, 7, v); }
const char *mc_mode_name(int v) { return enum_name(mode_names, 2, v); }
const char *mc_unit_kind_name(int v) { return enum_name(unit_names, 2, v); }
const char *mc_dataset_kind_name(int v) { return enum_name(ds_names, 6, v); }
const char *mc_pool_name(int v) { return enum_name(pool_names, 5, v); }

#define OFF(f) offsetof(mc_config, f)
#define BIG INT64_C(2147483647)
#define SEC(k, d)                                                                                  \
    { .key = k, .type = MC_T_SECTION, .doc = d }
#define INT(k, def_, lo, hi, f, d)                                                                 \
    { .key = k, .type = MC_T_INT, .def = def_, .imin = lo, .imax = hi, .offset = OFF(f), .doc = d }
#define FLT(k, def_, fl, lo, hi, f, d)                                                             \
    {                                                                                              \
        .key = k, .type = MC_T_FLOAT, .def = def_, .flags = fl, .fmin = lo, .fmax = hi,            \
        .offset = OFF(f), .doc = d                                                                 \
    }
#define STR(k, def_, fl, f, d)                                                                     \
    { .key = k, .type = MC_T_STRING, .def = def_, .flags = fl, .offset = OFF(f), .doc = d }
#define PATH(k, def_, fl, f, d)                                                                    \
    { .key = k, .type = MC_T_PATH, .def = def_, .flags = fl, .offset = OFF(f), .doc = d }
#define ENUM(k, def_, nm, f, d)                                                                    \
    { .key = k, .type = MC_T_ENUM, .def = def_, .names = nm, .offset = OFF(f), .doc = d }
#define ELIST(k, def_, fl, nm, f, d)                                                               \
    {                                                                                              \
        .key = k, .type = MC_T_ENUM_LIST, .def = def_, .flags = fl, .names = nm, .offset = OFF(f), \
        .doc = d                                                                                   \
    }
#define SLIST(k, def_, fl, f, d)                                                                   \
    { .key = k, .type = MC_T_STRING_LIST, .def = def_, .flags = fl, .offset = OFF(f), .doc = d }

#define DATASET(p, f, what)                                                                        \
    SEC("datasets." p, what),                                                                      \
        ENUM("datasets." p ".kind", "none", ds_names, datasets.f.kind,                             \
             "Layout of the images: `imagefolder` (ROOT/<class>/*), `imagenet` "                   \
             "(train/<wnid>/*.JPEG; "                                                              \
             "val in class folders or flat with `labels`), `dtd` (ROOT/images/<class>/*), "        \
             "`filelist` "                                                                         \
             "(`labels` lists `path<TAB>class` lines, paths relative to ROOT), `world` (the tiny " \
             "world's splits), or `none` (not used)."),                                            \
        PATH("datasets." p ".root", "\"\"", 0, datasets.f.root,                                    \
             "Dataset folder. Required unless kind is `none`."),                                   \
        STR("datasets." p ".split", "\"\"", 0, datasets.f.split,                                   \
            "Sub-folder of ROOT to read (e.g. `train`, `val`, `unseen`); empty reads ROOT "        \
            "itself."),                                                                            \
        INT("datasets." p ".n_samples", "0", 0, BIG, datasets.f.n_samples,                         \
            "Images drawn without replacement, deterministically from `sample_seed`; 0 takes "     \
            "every "                                                                               \
            "image (the split then does not depend on the seed: one extraction serves every "      \
            "seed)."),                                                                             \
        {.key = "datasets." p ".sample_seed",                                                      \
         .type = MC_T_SAMPLE_SEED,                                                                 \
         .def = "per_seed",                                                                        \
         .imin = 0,                                                                                \
         .imax = BIG,                                                                              \
         .offset = OFF(datasets.f.sample_seed),                                                    \
         .doc = "Which seed draws the `n_samples` images: `per_seed` (the default, the paper's "   \
                "protocol: each seed its own sample, so one extraction per seed) or a fixed seed " \
                "(e.g. 0: one sample shared by every seed, extracted once; the seeds then differ " \
                "only in initialisation and batch order, which changes results). Ignored when "    \
                "`n_samples` is 0."},                                                              \
        PATH("datasets." p ".labels", "\"\"", 0, datasets.f.labels,                                \
             "Label file (flat ImageNet val: `file<TAB>wnid` or one wnid per line in file order; " \
             "`filelist`: the list itself); empty when the layout carries the labels."),           \
        PATH("datasets." p ".class_names", "\"\"", 0, datasets.f.class_names,                      \
             "Class-name mapping (`wnid<TAB>name` per line); empty uses the target model's "       \
             "`id2label` order, or the folder names.")

const mc_schema_entry mc_schema[] = {
    STR("name", NULL, MC_F_REQUIRED | MC_F_IDENT, name,
        "Experiment name ([A-Za-z0-9._-]+); names the outputs and the Slurm jobs."),
    PATH("output_dir", "\"results/{name}\"", MC_F_NAME_SUBST | MC_F_NONEMPTY, output_dir,
         "Where stores, tables, figures and logs go. `{name}` is replaced by the experiment name."),
    {.key = "seeds",
     .type = MC_T_INT_LIST,
     .def = "[0]",
     .flags = MC_F_NONEMPTY | MC_F_UNIQUE,
     .imin = 0,
     .imax = BIG,
     .offset = OFF(seeds),
     .doc = "Random seeds; each one drives the training subset, E_n's initialisation and the batch "
            "order. Results are reported as mean ± std over them. Swept (see Sweeps)."},
    INT("threads", "0", 0, 4096, threads,
        "Compute threads per rank; overrides `--threads` and MICLIP_THREADS. 0: those, else the "
        "CPUs the rank may use (affinity mask shared among the node's ranks, at most "
        "SLURM_CPUS_PER_TASK and OMP_NUM_THREADS; docs/performance.md)."),
    ELIST("stages", "[extract, sae, align, localize, describe, baselines, intervene, report]",
          MC_F_NONEMPTY | MC_F_UNIQUE | MC_F_SORTED, stage_names, stages,
          "Stages `miclip run` executes, always in pipeline order (the list is sorted into it)."),

    SEC("models", "Hugging Face model folders (config.json, model.safetensors, processor and "
                  "tokenizer files)."),
    PATH("models.target", NULL, MC_F_REQUIRED | MC_F_NONEMPTY, models.target,
         "The vision model under study: ViTForImageClassification, ResNetForImageClassification "
         "or CLIPModel (then it classifies zero-shot with prompted class names)."),
    PATH("models.clip", NULL, MC_F_REQUIRED | MC_F_NONEMPTY, models.clip,
         "The CLIP model whose frozen image and text encoders define the embedding space "
         "(CLIPModel)."),
    PATH(
        "models.mpnet", "\"\"", 0, models.mpnet,
        "Sentence encoder for the MPNet score (all-mpnet-base-v2 layout); empty skips that score."),

    SEC("datasets", "Image sets. `train` feeds extraction, SAE and alignment; `eval` and "
                    "`unseen` are the intervention sets (ImageNet val and DTD in the paper)."),
    DATASET("train", train, "Training images (the paper: 100,000 ImageNet-1k training images)."),
    DATASET("eval", eval, "Evaluation images of the seen classes (ImageNet-1k val)."),
    DATASET("unseen", unseen, "Images of unseen concepts for CLIP zero-shot (DTD textures)."),

    {.key = "concepts",
     .type = MC_T_SECLIST,
     .def = "[{name: classes, source: classes}]",
     .offset = OFF(concepts),
     .elem_size = sizeof(mc_concept_set_cfg),
     .doc = "Concept sets (vocabularies) for localization and description: a list of entries "
            "with the keys below."},
    {.key = "concepts.name",
     .type = MC_T_STRING,
     .flags = MC_F_REQUIRED | MC_F_IDENT,
     .offset = offsetof(mc_concept_set_cfg, name),
     .doc = "Identifier of the set, unique, used by `localize.concepts` and `describe.concepts`."},
    {.key = "concepts.source",
     .type = MC_T_ENUM,
     .def = "file",
     .names = source_names,
     .offset = offsetof(mc_concept_set_cfg, source),
     .doc =
         "`file`: one concept per line in `file`; `classes`: the class names of the target model."},
    {.key = "concepts.file",
     .type = MC_T_PATH,
     .def = "\"\"",
     .offset = offsetof(mc_concept_set_cfg, file),
     .doc = "The concept list (UTF-8, one per line, blank lines and `#` lines skipped); required "
            "when source is `file`."},

    SEC("extract", "Forward passes of the target model over `datasets.train` (and the "
                   "intervention sets), storing activations, predictions and CLIP embeddings."),
    SLIST("extract.layers", NULL, MC_F_REQUIRED | MC_F_NONEMPTY | MC_F_UNIQUE, extract.layers,
          "Hook names: a transformer block number (`10` = the residual stream after block 10, "
          "Hugging Face `hidden_states[10]`), a ResNet module name (`stages.3.layers.1.shortcut`), "
          "or `logits`. Swept by align, localize, describe and baselines."),
    ENUM(
        "extract.pool", "auto", pool_names, extract.pool,
        "The vector a_i stored per image: `cls` token, `mean` of patch tokens, `spatial_mean` of a "
        "feature map, `all` tokens/positions (needed by `sae.input: all`), or `auto` (cls for "
        "ViT/CLIP, spatial_mean for ResNet)."),
    INT("extract.batch_size", "32", 1, 65536, extract.batch_size, "Images per forward pass."),
    ENUM("extract.dtype", "f32", dtype_names, extract.dtype, "Storage type of activations."),
    ENUM("extract.on_bad_image", "fail", bad_image_names, extract.on_bad_image,
         "An undecodable image stops the run (`fail`) or is logged with its path, counted in the "
         "provenance and skipped (`skip`)."),

    SEC("sae", "The top-k sparse autoencoder (Gao et al. recipe: b_pre from the geometric median, "
               "unit-norm decoder columns, AuxK for dead latents)."),
    STR("sae.layer", "\"\"", 0, sae.layer,
        "Layer the SAE is trained on, one of `extract.layers`; empty takes the first."),
    ENUM("sae.input", "pooled", sae_input_names, sae.input,
         "Train on the pooled vectors or on every token/position (`all` needs `extract.pool: "
         "all`)."),
    INT("sae.features", "24576", 1, 16777216, sae.features, "Number of latents m."),
    INT("sae.k", "32", 1, 65536, sae.k, "Active latents per input (at most `sae.features`)."),
    FLT("sae.lr", "0.001", MC_F_MIN_OPEN, 0.0, 1.0, sae.lr, "Adam learning rate (paper: 1e-3)."),
    INT("sae.batch_size", "32", 1, 1048576, sae.batch_size, "Inputs per step (paper: 32)."),
    INT("sae.epochs", "1", 1, 100000, sae.epochs, "Passes over the training activations."),
    INT("sae.steps", "0", 0, INT64_C(1000000000000), sae.steps,
        "Stop after this many steps; 0 runs `sae.epochs` full epochs."),
    INT("sae.aux_k", "256", 0, 65536, sae.aux_k,
        "Dead latents used by the AuxK loss (at most the number of dead ones); 0 disables it."),
    FLT("sae.aux_coef", "0.03125", 0, 0.0, 100.0, sae.aux_coef,
        "Weight of the AuxK loss (1/32), applied to the residual normalised by its variance."),
    INT("sae.dead_after", "10000000", 1, INT64_C(1000000000000), sae.dead_after,
        "A latent that has not fired for this many inputs is dead."),
    INT("sae.tokens_per_image", "0", 0, 1000000, sae.tokens_per_image,
        "With `sae.input: all`: 0 trains on every token/position of every training image; N > 0 "
        "on N distinct tokens per image (all when it has at most N), drawn once from the seed on "
        "their own random stream (the same at any rank count): a documented cut of the SAE's "
        "training cost, the held-out statistics still use every token."),
    INT("sae.init_samples", "4096", 1, 16777216, sae.init_samples,
        "Inputs used for the geometric-median initialisation of b_pre."),
    FLT("sae.heldout", "0.05", 0, 0.0, 0.5, sae.heldout,
        "Fraction of inputs held out for FVU / L0 / dead-fraction statistics."),
    INT("sae.checkpoint_every", "1000", 1, BIG, sae.checkpoint_every, "Steps between checkpoints."),

    SEC("align", "Training the linear neuron encoder E_n with symmetric InfoNCE (Algorithm 1)."),
    ELIST("align.variants", "[in+out]", MC_F_NONEMPTY | MC_F_UNIQUE, variant_names, align.variants,
          "`in+out` (MiCLIP: image and predicted-class targets), `in` (image only), `out` "
          "(predicted class only). Swept."),
    FLT("align.lr", "0.0001", MC_F_MIN_OPEN, 0.0, 1.0, align.lr,
        "Adam learning rate (paper: 1e-4)."),
    INT("align.batch_size", "1024", 2, 1048576, align.batch_size,
        "Global batch (paper: 1024), split over ranks; the loss equals the single-process one."),
    ENUM("align.stop", "converged", align_stop_names, align.stop,
         "When E_n's training ends. `converged` (Algorithm 1: \"until theta_n converges\"): a "
         "fraction `heldout` of the usable training images is held out, the alignment loss on "
         "them is evaluated every `eval_every` epochs, training stops when it has not improved "
         "by the relative `min_delta` for `patience` evaluations (or at `max_epochs`), and the "
         "parameters of the best held-out loss are kept. `epochs`: exactly `epochs` passes over "
         "all usable images, nothing held out (Appendix C.2: one pass over 100,000 images)."),
    INT("align.epochs", "1", 1, 100000, align.epochs,
        "Passes over the training set with `stop: epochs` (paper C.2: 1); unused otherwise."),
    INT("align.max_epochs", "1000", 1, 1000000, align.max_epochs,
        "`stop: converged`: cap on the passes over the training rows (the store says when it was "
        "reached: `stop_reason` max_epochs)."),
    FLT("align.heldout", "0.1", MC_F_MIN_OPEN, 0.0, 0.5, align.heldout,
        "`stop: converged`: fraction of the usable training images held out (floor, at least 2), "
        "drawn from the seed on its own random stream, so the split is the same at any rank "
        "count. The paper states no split; 10% is a common choice."),
    INT("align.eval_every", "1", 1, 1000000, align.eval_every,
        "`stop: converged`: epochs between held-out evaluations."),
    INT("align.patience", "10", 1, 1000000, align.patience,
        "`stop: converged`: evaluations without improvement before stopping (the paper is "
        "silent; 10 is PyTorch ReduceLROnPlateau's default)."),
    FLT("align.min_delta", "0.0001", 0, 0.0, 0.5, align.min_delta,
        "`stop: converged`: an evaluation improves when its held-out loss is below best x (1 - "
        "min_delta) (the paper is silent; 1e-4 relative is ReduceLROnPlateau's default "
        "threshold)."),
    {.key = "align.temperature",
     .type = MC_T_TEMP,
     .def = "learnable",
     .fmin = 0.0,
     .fmax = 100.0,
     .offset = OFF(align.temperature),
     .doc = "`learnable` (CLIP's learned logit scale, starting at 1/`init_temperature`) or a fixed "
            "positive number (`1.0` reproduces Algorithm 1 literally)."},
    FLT("align.init_temperature", "0.07", MC_F_MIN_OPEN, 0.0, 100.0, align.init_temperature,
        "Starting temperature of a learnable logit scale."),
    STR("align.prompt", "\"a photo of a {}.\"", MC_F_NONEMPTY, align.prompt,
        "Text template for class names; `{}` (exactly once) is replaced by the name."),
    INT("align.checkpoint_every", "100", 1, BIG, align.checkpoint_every,
        "Steps between checkpoints."),

    SEC("localize", "Top-tau units per concept (Equation 3), for every trained E_n."),
    INT("localize.tau", "5", 1, 1000000, localize.tau, "Units kept per concept."),
    SLIST("localize.concepts", "[]", MC_F_UNIQUE, localize.concepts,
          "Names of concept sets to localize; empty (the default) means all of `concepts`."),
    ELIST("localize.units", "[neuron, sae]", MC_F_NONEMPTY | MC_F_UNIQUE | MC_F_SORTED, unit_names,
          localize.units,
          "Unit kinds: neurons (columns of E_n) and SAE features (E_n of W_dec columns)."),
    ENUM("localize.sae_unit", "algorithm2", sae_unit_names, localize.sae_unit,
         "How an SAE feature i is embedded (localize and describe): `algorithm2` (the paper's "
         "Algorithm 2, "
         "lines 5/14: the mean over the input set of E_n(W_dec (f(x) * e_i) + b_pre), f(x) the SAE "
         "code of "
         "input x) or `atom` (Section 3.2's E_n(f_i) read as the bare decoder column E_n(W_dec[:, "
         "i]))."),
    ENUM("localize.neuron_unit", "basis", neuron_unit_names, localize.neuron_unit,
         "How neuron i is embedded: `basis` (Algorithm 2 line 7: E_n(e_i)) or `activation` "
         "(Section 3.2: "
         "the mean over the input set of E_n(a_i(x) e_i), which keeps the sign of the mean "
         "activation)."),
    ENUM("localize.sae_inputs", "all", unit_inputs_names, localize.sae_inputs,
         "The input set of `algorithm2` and `activation`: `all` valid training images, or `class`: "
         "for a "
         "concept that names a class, that class's own training images (labels); other concepts "
         "use all."),

    SEC("describe", "Top-tau concepts per unit (Equation 4)."),
    INT("describe.tau", "5", 1, 1000000, describe.tau, "Concepts kept per unit."),
    SLIST("describe.concepts", "[]", MC_F_UNIQUE, describe.concepts,
          "Names of concept sets to describe with; empty means all of `concepts`."),
    ELIST("describe.units", "[neuron, sae]", MC_F_NONEMPTY | MC_F_UNIQUE | MC_F_SORTED, unit_names,
          describe.units, "Unit kinds to describe."),

    SEC("baselines", "The comparison methods, run on the same activations and concept sets."),
    ELIST("baselines.methods", "[]", MC_F_UNIQUE, method_names, baselines.methods,
          "Any of `act_values`, `clip_dissect`, `netdissect`, `vinterp`. Swept."),
    PATH("baselines.netdissect_masks", "\"\"", 0, baselines.netdissect_masks,
         "Concept masks for `netdissect`, <folder>/<image stem>/<concept>.png; \"\": "
         "<root>/masks/<split> of the training dataset."),
    SEC("baselines.vinterp",
        "V-Interp: an explainer (the user's LMM) describes each unit's top-image grid; "
        "one of `explainer` and `descriptions` is required by `vinterp` (docs/baselines.md)."),
    STR("baselines.vinterp.explainer", "\"\"", 0, baselines.vinterp_explainer,
        "Shell command run once per unit as `COMMAND GRID.png MANIFEST.json` (on rank 0); the "
        "first line "
        "of its stdout is the unit's description."),
    PATH("baselines.vinterp.descriptions", "\"\"", 0, baselines.vinterp_descriptions,
         "Instead of `explainer`: a JSON file {\"<kind>-<unit>\": \"text\"} (e.g. `neuron-3`, "
         "`sae-17`) "
         "with every unit's description, produced elsewhere."),
    INT("baselines.vinterp.timeout", "120", 1, 86400, baselines.vinterp_timeout,
        "Seconds the explainer may take for one unit before the stage fails naming the unit."),
    INT("baselines.vinterp.images", "9", 1, 64, baselines.vinterp_images,
        "Top-activating training images per unit in its grid (3 per row)."),

    SEC("intervene", "Scaling or adding on the top-tau units of each class's concept and "
                     "measuring the per-class accuracy change (Delta-Acc)."),
    ELIST("intervene.methods", "[miclip]", MC_F_NONEMPTY | MC_F_UNIQUE, method_names,
          intervene.methods,
          "Whose localization picks the units: `miclip`, a baseline, `random` units, or the "
          "`oracle` (the tau "
          "units whose single x0 removal lowers the class's mean probability most on the same "
          "images: a reference "
          "row, docs/intervene.md). Swept."),
    ELIST("intervene.variants", "[]", MC_F_UNIQUE, variant_names, intervene.variants,
          "E_n variants (of `align.variants`) whose units miclip edits; empty (the default): the "
          "first of "
          "`align.variants`. More than one fills the ablation (report Table 4). Swept (miclip "
          "only)."),
    ELIST("intervene.readings", "[]", MC_F_UNIQUE, reading_names, intervene.readings,
          "The paper's unit readings whose units miclip edits: `algorithm2` (SAE `algorithm2`, "
          "neurons `basis`) and `section3.2` (SAE `atom`, neurons `activation`); empty (the "
          "default): the `localize.sae_unit` / `neuron_unit` settings only. Each other reading "
          "adds localize tasks at `intervene.layer` and a report row per reading. Swept (miclip "
          "only)."),
    ELIST("intervene.units", "[neuron]", MC_F_NONEMPTY | MC_F_UNIQUE | MC_F_SORTED, unit_names,
          intervene.units, "Intervene on neurons, SAE features, or both."),
    ELIST("intervene.modes", "[scale]", MC_F_NONEMPTY | MC_F_UNIQUE, mode_names, intervene.modes,
          "`scale`: a_i <- beta*a_i; `add`: a_i <- a_i + beta (SAE features: through the decoder, "
          "keeping the reconstruction error). Swept."),
    {.key = "intervene.betas",
     .type = MC_T_FLOAT_LIST,
     .def = "[0.0, 2.0]",
     .flags = MC_F_NONEMPTY | MC_F_UNIQUE,
     .fmin = -1e6,
     .fmax = 1e6,
     .offset = OFF(intervene.betas),
     .doc = "Values of beta (paper: 0 = removal, 2 = enhancement). Swept."},
    ENUM("intervene.add_beta", "value", add_beta_names, intervene.add_beta,
         "What beta means in the `add` mode: `value` (a_i <- a_i + beta) or `mu` (a_i <- a_i + "
         "beta * mu_i, "
         "mu_i the unit's mean value over the training images where it is > 0: its E_n input "
         "vector's "
         "entry for a neuron, its SAE code for a feature; so betas -1 and 1 add -mu and +mu)."),
    {.key = "intervene.add_betas",
     .type = MC_T_FLOAT_LIST,
     .def = "[]",
     .flags = MC_F_UNIQUE,
     .fmin = -1e6,
     .fmax = 1e6,
     .offset = OFF(intervene.add_betas),
     .doc = "Betas of the `add` mode; empty (the default) uses `intervene.betas`. Swept."},
    ENUM("intervene.tokens", "all", tokens_names, intervene.tokens,
         "Which tokens/positions are edited: `all`, the `cls` token, or the `patches`."),
    STR("intervene.layer", "\"\"", 0, intervene.layer,
        "Layer intervened on, one of `extract.layers`; empty means `sae.layer`."),
    INT("intervene.tau", "5", 1, 1000000, intervene.tau, "Units edited per class (paper: 5)."),
    ELIST("intervene.datasets", "[eval]", MC_F_NONEMPTY | MC_F_UNIQUE | MC_F_SORTED, eval_set_names,
          intervene.datasets, "Image sets whose per-class accuracy is measured: `eval`, `unseen`."),
    INT("intervene.batch_size", "32", 1, 65536, intervene.batch_size, "Images per forward pass."),
    ENUM("intervene.cache_dtype", "f32", dtype_names, intervene.cache_dtype,
         "Storage type of the prefix cache's state: `f16` halves its size; the clean and edited "
         "runs both start from the rounded state (docs/intervene.md, \"Float16 cache\")."),
    ENUM("intervene.prefix", "cache", prefix_names, intervene.prefix,
         "Where the edited forwards start: `cache` stores the state at intervene.layer once and "
         "runs every edit from it; `recompute` stores no state and runs the layers before it "
         "again for every edited batch (same results; `miclip plan` prints both costs, "
         "docs/intervene.md, \"Cache or recompute\")."),
    INT("intervene.oracle_candidates", "0", 0, 100000000, intervene.oracle_candidates,
        "The `oracle` measures single-unit removal only on each class's top-N units by mean "
        "absolute activation "
        "on the class's images (N >= intervene.tau); 0 (the default) measures every unit."),

    SEC("report", "Tables (mean ± std over seeds, one-tailed paired t-tests) and figures."),
    ELIST("report.formats", "[md, csv, tex]", MC_F_NONEMPTY | MC_F_UNIQUE | MC_F_SORTED,
          format_names, report.formats, "Table formats."),
    ELIST("report.figures", "[loss_curves, sae_curves]", MC_F_UNIQUE | MC_F_SORTED, figure_names,
          report.figures,
          "Figures to draw: `loss_curves`, `sae_curves`, `tsne` (Figure 3), `attention_maps` "
          "(Figures 4 and 6), `flawed_reasoning` (Figure 5); docs/report.md."),
    ELIST("report.figure_formats", "[png, svg]", MC_F_NONEMPTY | MC_F_UNIQUE | MC_F_SORTED,
          fig_format_names, report.figure_formats, "Figure file formats."),
    FLT("report.alpha", "0.05", MC_F_MIN_OPEN, 0.0, 0.5, report.alpha,
        "Significance level of the one-tailed paired t-tests."),
    STR("report.attention_class", "\"\"", 0, report.attention_class,
        "Figure 4 (`attention_maps`): the class whose localized SAE features are kept; empty (the "
        "default) means the first class of the `classes` concept set, the target's label order "
        "(the paper's first ImageNet class, \"kit fox\")."),
    INT("report.attention_images", "6", 1, 64, report.attention_images,
        "`attention_maps`: images per figure: Figure 4's first N eval images of the class, "
        "Figure 6's top N eval images of the feature (paper: 6)."),
    STR("report.attention_concept", "\"green\"", 0, report.attention_concept,
        "Figure 6 (`attention_maps`): the low-level concept; its feature is the SAE feature whose "
        "top description (describe stage) is this concept, best score first (paper: green); "
        "empty: no Figure 6."),
};
const int mc_schema_count = (int)(sizeof mc_schema / sizeof mc_schema[0]);

const mc_schema_entry *mc_schema_find(const char *key) {
    for (int i = 0; i < mc_schema_count; i++)
        if (!strcmp(mc_schema[i].key, key)) return &mc_schema[i];
    return NULL;
}

const char *mc_schema_leaf(const char *key) {
    const char *dot = strrchr(key, '.');
    return dot ? dot + 1 : key;
}

int mc_stage_from_name(const char *name) {
    for (int i = 0; i < MC_STAGE_COUNT; i++)
        if (name && !strcmp(stage_names[i], name)) return i;
    return -1;
}

bool mc_schema_is_child(const mc_schema_entry *e, const char *section) {
    const char *leaf = mc_schema_leaf(e->key);
    size_t plen = (size_t)(leaf - e->key); /* includes the '.' when there is a parent */
    if (!section || !*section) return plen == 0;
    size_t slen = strlen(section);
    return plen == slen + 1 && !strncmp(e->key, section, slen);
}

const char *mc_type_name(mc_type t) {
    switch (t) {
    case MC_T_SECTION: return "section";
    case MC_T_SECLIST: return "list of sections";
    case MC_T_INT: return "int";
    case MC_T_FLOAT: return "float";
    case MC_T_BOOL: return "bool";
    case MC_T_STRING: return "string";
    case MC_T_PATH: return "path";
    case MC_T_ENUM: return "enum";
    case MC_T_TEMP: return "`learnable` or float";
    case MC_T_SAMPLE_SEED: return "`per_seed` or int";
    case MC_T_INT_LIST: return "list of int";
    case MC_T_FLOAT_LIST: return "list of float";
    case MC_T_STRING_LIST: return "list of string";
    case MC_T_ENUM_LIST: return "list of enum";
    }
    return "?";
}

int mc_edit_distance(const char *a, const char *b, int cap) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) return cap + 1;
    int prev[65], cur[65];
    for (size_t j = 0; j <= lb; j++) prev[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (int)i;
        int best = cur[0];
        for (size_t j = 1; j <= lb; j++) {
            int sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            int del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
            if (cur[j] < best) best = cur[j];
        }
        if (best > cap) return cap + 1;
        memcpy(prev, cur, (lb + 1) * sizeof *prev);
    }
    return prev[lb];
}
