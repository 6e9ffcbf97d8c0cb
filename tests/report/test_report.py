#!/usr/bin/python3
"""The report stage end to end.

  test_report.py tables   synthetic describe, baselines and intervene results (stores with their task
                          index entries and report sections; 4 seeds, miclip's
                          three E_n variants, act_values, clip_dissect, random; scale and add
                          edits; a zero-variance column, a column with one seed, an identity edit):
                          `miclip run CONFIG --stage report` at 1, 2 and 4 ranks writes the same
                          bytes; every CSV number equals numpy (mean, std ddof=1) and
                          scipy.stats.ttest_rel(alternative=greater/less) recomputed from the
                          records (1e-12 relative on means/std/t, 1e-9 on p), Table 4 (the
                          ablation: miclip's intervene.variants in, out, in+out on the seen and
                          unseen datasets) in the paper's rows and columns; the n/a cases carry
                          their footnote and no p; the md and tex cells are the CSV values
                          formatted; figures: [] draws nothing; descriptions.md, baselines.md and
                          interventions.md hold each task's section and no records
  test_report.py bad      an accuracy outside [0, 1], a store whose key is not its index entry's, a
                          missing task index entry or section: one error line naming the file,
                          non-zero exit at 1 and 2 ranks
  test_report.py figures  extract -> sae -> align on a generated tiny world with the trained tiny
                          models (2 seeds), then the report's loss_curves and sae_curves in png,
                          svg and pdf: PNGs decode (PIL) at twice the SVG's size, are not blank and
                          show every seed's colour; the SVGs parse as XML with one data path per
                          seed and panel and name the legend and axis labels; pdftotext finds the
                          title in the PDFs; 1 and 2 ranks give the same bytes
Prints 'N passed, N failed'; exit 0 only when all pass."""
import csv
import glob
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import h5py
import hashlib
import json
import numpy as np
from scipy import stats

SRC = os.environ.get("MICLIP_SOURCE_DIR", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(SRC, "tests", "stages"))
import fixture  # noqa: E402
from fixture import check  # noqa: E402

ALPHA = 0.05
SEEDS = [0, 1, 2, 3]
T1 = "Description accuracy on `logits`"


def run(np_, args):
    return fixture.mpirun(np_, ["--quiet"] + args, capture_output=True, text=True)


def write_config(path, out, extra="", stages="[extract, sae, align, localize, describe, baselines, intervene, report]",
                 variants="[in+out, in, out]"):
    with open(path, "w") as f:
        f.write(f"""name: rep
output_dir: {out}
seeds: {SEEDS}
models: {{target: /nonexistent/vit, clip: /nonexistent/clip}}
datasets:
  train: {{kind: world, root: /nonexistent/world, split: train}}
  eval: {{kind: world, root: /nonexistent/world, split: val}}
  unseen: {{kind: world, root: /nonexistent/world, split: unseen}}
concepts:
  - {{name: classes, source: classes}}
  - {{name: world, file: /nonexistent/world/concepts.txt}}
extract: {{layers: ["3", logits]}}
align: {{variants: [in+out, in, out]}}
baselines: {{methods: [act_values, clip_dissect]}}
intervene: {{layer: "3", units: [neuron, sae], methods: [miclip, random, act_values], modes: [scale, add], betas: [0.0, 2.0],
             datasets: [eval, unseen], variants: {variants}}}
stages: {stages}
{extra}""")


def task_ids(cfg):
    r = subprocess.run([fixture.MICLIP, "config", cfg, "--tasks"], capture_output=True, text=True, check=True)
    ids = {}
    for line in r.stdout.splitlines():
        f = line.split()
        if len(f) == 3 and f[1].isdigit():
            ids.setdefault(f[0], []).append(f[2])
    return ids


def make_records(cfg, out):
    """Writes each task's results as the stages do: a complete store holding the numbers, its task
    index entry (OUTPUT_DIR/<stage>/<task>.json) and its report section (text only). Returns the
    expected cells {(table, unit, method, column): {seed: v}} and the directions
    {(table, column): +1/-1/0}."""
    rng = np.random.default_rng(5)
    ids = task_ids(cfg)
    exp, dirs = {}, {}

    def put(table, section, method, col, seed, v, d):
        exp.setdefault((table, section, method, col), {})[seed] = v
        dirs[(table, col)] = d

    def frag(stage, dir_, tid, groups):
        p = os.path.join(out, "report", dir_, tid + ".md")
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write("## %s\n\nsome text | with a table |\n" % tid)
        key = hashlib.sha256(tid.encode()).hexdigest()
        path = os.path.join(out, stage, "%s-%s.h5" % (tid, key[:16]))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with h5py.File(path, "w") as f:
            f.attrs["miclip_store"] = "miclip-store/1"
            f.attrs["%s_key" % stage] = key
            for g, attrs in groups:
                grp = f.require_group(g)
                for k, v in attrs.items():
                    grp.attrs[k] = np.float64(v)
            f.attrs["complete"] = np.int64(1)
        with open(os.path.join(out, stage, tid + ".json"), "w") as f:
            json.dump({"format": "miclip-task/1", "task": tid, "store": path, "key": key}, f)

    # describe: seeds x layers ["3", logits] x variants, in the sweep's order.
    zero = {0: 6 / 8, 1: 4 / 8, 2: 5 / 8, 3: 7 / 8}  # exact in binary: differences of 12.5 pp exactly
    k = 0
    for seed in SEEDS:
        for layer in ["3", "logits"]:
            for var in ["in+out", "in", "out"]:
                tid = ids["describe"][k]
                k += 1
                lines = []
                for cs in ["classes", "world"]:
                    v = zero[seed] if (var == "in+out" and cs == "classes") else int(rng.integers(18, 37)) / 36
                    lines.append(("%s/neuron" % cs, {"description_accuracy": v}))
                    if layer == "logits":
                        put("table1_descriptions", T1, "miclip (%s)" % var, cs, seed, 100 * v, +1)
                frag("describe", "descriptions", tid, lines)
    # baselines: seeds x layers x methods; act_values on classes is miclip's minus 1/8 (zero
    # variance of the differences); clip_dissect has a `world` record for seed 0 only.
    k = 0
    for seed in SEEDS:
        for layer in ["3", "logits"]:
            for m in ["act_values", "clip_dissect"]:
                tid = ids["baselines"][k]
                k += 1
                lines = []
                for cs in ["classes", "world"]:
                    if m == "clip_dissect" and cs == "world" and seed != 0:
                        continue
                    v = zero[seed] - 1 / 8 if (m == "act_values" and cs == "classes") else int(rng.integers(10, 37)) / 36
                    lines.append(("describe/%s/neuron" % cs, {"description_accuracy": v}))
                    if layer == "logits":
                        put("table1_descriptions", T1, m, cs, seed, 100 * v, +1)
                frag("baselines", "baselines", tid, lines)
    # intervene: seeds x methods (miclip: x variants, in+out first) x modes x betas; units x
    # datasets per task, unseen for seed 0 only (miclip: seeds 0-2, so Table 4 has unseen tests).
    k, bad_ids = 0, []
    for seed in SEEDS:
        for m, var in [("miclip", v) for v in ["in+out", "in", "out"]] + [("random", None), ("act_values", None)]:
            for mode in ["scale", "add"]:
                for beta in [0.0, 2.0]:
                    tid = ids["intervene"][k]
                    k += 1
                    if not (tid.endswith("-%s-%s-b%g" % (m, mode, beta)) and
                            ("-%s-miclip-" % var in tid) == (var in ("in", "out"))):
                        bad_ids.append(tid)
                    lines = []
                    for ds in ["eval", "unseen"]:
                        if ds == "unseen" and seed != 0 and not (m == "miclip" and seed < 3):
                            continue
                        for units in ["neuron", "sae"]:
                            dacc, dp, spec = rng.normal(-3 if m == "miclip" else -1, 2, 3)
                            lines.append(("%s/%s" % (ds, units), {"delta_acc": dacc, "delta_prob": dp,
                                                                   "specificity": spec, "clean_acc": 92.5}))
                            d = (1 if beta > 0 else -1 if beta < 0 else 0) if mode == "add" else \
                                (-1 if beta < 1 else 1 if beta > 1 else 0)
                            if var is not None and mode == "scale":  # Table 4: the paper's Delta-Acc columns
                                col = "%s: %s (scale x%g)" % ("Unseen" if ds == "unseen" else "Seen",
                                                              "Enhancement" if beta == 2 else "Removal", beta)
                                sec = "Neurons, Delta-Acc" if units == "neuron" else "SAE features, Delta-Acc"
                                put("table4_ablation", sec, "miclip (%s)" % var, col, seed, dacc, d)
                            if var in ("in", "out"):  # the other variants are in Table 4 only
                                continue
                            if ds == "unseen":  # Table 3: the paper's layout, one section per unit kind
                                what = {1: "Enhancement", -1: "Removal", 0: "Identity"}[d]
                                col = "%s (%s)" % (what, "scale x%g" % beta if mode == "scale" else "add %+g" % beta)
                                sec = "(a) Intervention on neurons" if units == "neuron" else \
                                    "(b) Intervention on SAE features"
                                put("table3_unseen", sec + ", Delta-Acc", m, col, seed, dacc, d)
                                put("table3_unseen", sec + ", Delta-P", m, col, seed, dp, d)
                                continue
                            col = "%s, %s %g, %s" % (units, mode, beta, ds)
                            put("table2_interventions", "Delta-Acc", m, col, seed, dacc, d)
                            put("table2_interventions", "Delta-P", m, col, seed, dp, d)
                    frag("intervene", "interventions", tid, lines)
    check(not bad_ids and k == len(ids["intervene"]), "the %d intervene tasks are seeds x methods (miclip x variants, "
          "in+out without the variant in its id) x modes x betas: %s" % (k, bad_ids[:3]))
    return exp, dirs


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-300)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def expected_row(exp, dirs, table, unit, method, col, ref):
    vals = exp[(table, unit, method, col)]
    x = np.array([vals[s] for s in sorted(vals)])
    row = {"n": len(x), "mean": np.mean(x), "std": np.std(x, ddof=1) if len(x) > 1 else None}
    if method == ref:
        return row
    rv = exp.get((table, unit, ref, col), {})
    seeds = sorted(set(vals) & set(rv))
    a = np.array([rv[s] for s in seeds])
    b = np.array([vals[s] for s in seeds])
    d = dirs[(table, col)]
    row["pairs"] = len(seeds)
    row["h1"] = {1: "greater", -1: "less", 0: "none"}[d]
    if d == 0:
        row["note"] = "no direction"
    elif len(seeds) < 2:
        row["note"] = "fewer than 2"
    elif np.all(a - b == (a - b)[0]):
        row["note"] = "zero variance"
    else:
        r = stats.ttest_rel(a, b, alternative="greater" if d > 0 else "less")
        row["t"], row["p"] = float(r.statistic), float(r.pvalue)
    return row


TABLES = ["table1_descriptions", "table2_interventions", "table3_unseen", "table4_ablation"]
REF = {"table1_descriptions": "miclip (in+out)", "table4_ablation": "miclip (in+out)"}


# The paper's baseline rows a config does not run (intervene.methods here lists neither): every
# cell n/a with its reason, Network Dissection in Table 2 only, V-Interp in Tables 2 and 3.
ABSENT = {"netdissect": ("f", "Network Dissection is not run by this config"),
          "vinterp": ("e", "V-Interp is not run by this config")}
ABSENT_IN = {"table2_interventions": ["netdissect", "vinterp"], "table3_unseen": ["vinterp"]}


def check_absent(tdir, rows):
    """Checks the absent rows of every section (CSV, md, tex) and returns the other rows."""
    absent = [r for r in rows if r["method"] in ABSENT]
    bad = 0
    sections = {}
    for r in rows:
        if r["method"] not in ABSENT:
            sections.setdefault((r["table"], r["section"]), set()).add(r["column"])
    want = {(t, sec, m, c) for (t, sec), cols in sections.items() for m in ABSENT_IN.get(t, [])
            for c in cols}
    got = {(r["table"], r["section"], r["method"], r["column"]) for r in absent}
    for r in absent:
        ok = (r["n"] == "0" and r["mean"] == r["std"] == r["t"] == r["p"] == r["significant"] == ""
              and ABSENT[r["method"]][1] in r["note"])
        if not ok:
            bad += 1
            print("absent row", r)
    check(bad == 0 and got == want and len(absent) == len(want),
          "CSV: the paper's rows this config does not run (%d cells: netdissect in Table 2, vinterp in "
          "Tables 2 and 3) are n/a with their reason, and no other row is" % len(want))
    for fmt in ["md", "tex"]:
        missing = 0
        for t, methods in ABSENT_IN.items():
            text = open(os.path.join(tdir, t + "." + fmt)).read()
            for (tt, sec), cols in sections.items():
                if tt != t:
                    continue
                for m in methods:
                    letter = ABSENT[m][0]
                    cell = "n/a$^{%s}$" % letter if fmt == "tex" else "n/a (%s)" % letter
                    line = (m + " & " + " & ".join([cell] * len(cols)) + " \\\\") if fmt == "tex" \
                        else "| %s | %s |" % (m, " | ".join([cell] * len(cols)))
                    note = ("$^{%s}$ n/a: %s" if fmt == "tex" else "(%s) n/a: %s") % (letter, ABSENT[m][1])
                    # a row in the means and in the t-test table of the section, and the footnote
                    if text.count(line) < 2 or note not in text:
                        missing += 1
                        print("%s %s: missing %s or its footnote" % (fmt, t, line))
        check(missing == 0, "%s: the absent rows are printed (means and t-tests) with their footnotes" % fmt)
    return [r for r in rows if r["method"] not in ABSENT]


def check_tables(out, exp, dirs):
    tdir = os.path.join(out, "report", "tables")
    rows = [r for t in TABLES for r in read_csv(os.path.join(tdir, t + ".csv"))]
    rows = check_absent(tdir, rows)
    seen = set()
    bad = 0
    notes = {"no direction": 0, "fewer than 2": 0, "zero variance": 0}
    n_tests = 0
    sections = {}
    for r in rows:
        table, unit = r["table"], r["section"]
        key = (table, unit, r["method"], r["column"])
        seen.add(key)
        sections.setdefault((table, unit), []).append(r)
        if key not in exp:
            bad += 1
            print("unexpected row", key)
            continue
        e = expected_row(exp, dirs, *key, REF.get(table, "miclip"))
        ok = int(r["n"]) == e["n"] and rel(float(r["mean"]), e["mean"]) <= 1e-12
        ok = ok and (e["std"] is None and r["std"] == "" or e["std"] is not None and abs(float(r["std"]) - e["std"]) <= 1e-12 * max(1, e["std"]))
        if "h1" in e:
            ok = ok and r["h1"] == e["h1"] and int(r["pairs"]) == e["pairs"]
            if "note" in e:
                ok = ok and e["note"] in r["note"] and r["p"] == "" and r["t"] == "" and r["significant"] == ""
                notes[e["note"]] += 1
            else:
                n_tests += 1
                ok = ok and rel(float(r["t"]), e["t"]) <= 1e-12 and rel(float(r["p"]), e["p"]) <= 1e-9
                ok = ok and r["significant"] == ("yes" if e["p"] < ALPHA else "no") and r["note"] == ""
        else:
            ok = ok and r["note"] == "reference"
        if not ok:
            bad += 1
            print("mismatch", key, r, e)
    check(bad == 0 and len(seen) == len(exp), "CSV: %d cells equal numpy/scipy recomputed from the records "
          "(%d t-tests; %d expected cells)" % (len(seen), n_tests, len(exp)))
    check(all(v > 0 for v in notes.values()), "CSV: every n/a reason occurs and has no p: %s" % notes)
    check(any(r["significant"] == "yes" for r in rows) and any(r["significant"] == "no" for r in rows),
          "CSV: both significant and non-significant tests occur")
    # md and tex: each section's rows are the CSV values formatted.
    for fmt in ["md", "tex"]:
        text = {t: open(os.path.join(tdir, t + "." + fmt)).read() for t in TABLES}
        missing = 0
        for (table, unit), rs in sections.items():
            methods = list(dict.fromkeys(r["method"] for r in rs))
            cols = list(dict.fromkeys(r["column"] for r in rs))
            cell = {(r["method"], r["column"]): r for r in rs}
            pm = " $\\pm$ " if fmt == "tex" else " ± "
            for m in methods:
                means, tests = [], []
                for c in cols:
                    r = cell.get((m, c))
                    if r is None:
                        means.append("--"), tests.append("--")
                        continue
                    means.append("%.2f%s%s" % (float(r["mean"]), pm, "%.2f" % float(r["std"]) if r["std"] else "n/a"))
                    if r["note"] and r["note"] != "reference":
                        letter = "a" if "fewer" in r["note"] else "b" if "zero" in r["note"] else "c"
                        tests.append("n/a$^{%s}$" % letter if fmt == "tex" else "n/a (%s)" % letter)
                    elif r["t"]:
                        s = "t = %.3f, df = %.0f, p = %.3g" % (float(r["t"]), float(r["df"]), float(r["p"]))
                        sig = r["significant"] == "yes"
                        tests.append(("\\textbf{%s}" if fmt == "tex" else "**%s**") % s if sig else s)
                name = m.replace("_", "\\_") if fmt == "tex" else m
                lines = [(name, means)] + ([(name, tests)] if not (cell.get((m, cols[0])) or {}).get("note") == "reference" else [])
                for nm, cells in lines:
                    want = ("%s & %s \\\\" % (nm, " & ".join(cells))) if fmt == "tex" else ("| %s | %s |" % (nm, " | ".join(cells)))
                    if want not in text[table]:
                        missing += 1
                        print("%s: not found: %s" % (fmt, want))
        check(missing == 0, "%s: every mean ± std and t-test cell is the CSV value formatted" % fmt)
    readme = open(os.path.join(out, "report", "README.md")).read()
    check("Table 1" in readme and "Table 2" in readme and "## Table 3: interventions on unseen concepts" in readme
          and "## Table 4: ablation of the input and output grounding" in readme
          and "(a) n/a" in readme and "## Figures" not in readme,
          "README.md holds the four tables and the footnotes, and no figures (figures: [])")
    # Table 4 in the paper's layout: rows Input-Only, Output-Only, MiCLIP; columns enhancement then
    # removal, seen then unseen; a t-test in every ablation cell (3 or 4 seeds).
    t4 = [r for r in rows if r["table"] == "table4_ablation"]
    order = list(dict.fromkeys(r["method"] for r in t4))
    cols4 = list(dict.fromkeys(r["column"] for r in t4))
    check(order == ["miclip (in)", "miclip (out)", "miclip (in+out)"] and
          cols4 == ["Seen: Enhancement (scale x2)", "Seen: Removal (scale x0)", "Unseen: Enhancement (scale x2)",
                    "Unseen: Removal (scale x0)"] and len(t4) == 2 * 3 * 4 and
          all(r["p"] for r in t4 if r["method"] != "miclip (in+out)"),
          "Table 4: the paper's rows %s and columns %s, %d cells, every ablation cell tested" % (order, cols4, len(t4)))


def snapshot(out):
    res = {}
    for p in sorted(glob.glob(os.path.join(out, "report", "tables", "*")) + [os.path.join(out, "report", "README.md")]):
        res[os.path.relpath(p, out)] = open(p, "rb").read()
    return res


def test_tables(tmp):
    out = os.path.join(tmp, "out")
    cfg = os.path.join(tmp, "rep.yaml")
    write_config(cfg, out, "report: {figures: [], alpha: %g}\n" % ALPHA)
    exp, dirs = make_records(cfg, out)
    snaps = {}
    for np_ in [1, 2, 4]:
        shutil.rmtree(os.path.join(out, "report", "tables"), ignore_errors=True)
        r = run(np_, ["run", cfg, "--stage", "report"])
        check(r.returncode == 0, "report at %d rank(s) exits 0%s" % (np_, "" if r.returncode == 0 else ": " + r.stderr))
        snaps[np_] = snapshot(out)
    check(len(snaps[1]) == 13 and snaps[1] == snaps[2] == snaps[4],
          "tables and README identical at 1, 2 and 4 ranks (%d files)" % len(snaps[1]))
    r = run(1, ["run", cfg, "--stage", "report"])
    check(r.returncode == 0 and snapshot(out) == snaps[1], "a rerun rewrites the same bytes")
    r = run(2, ["report", cfg])
    check(r.returncode == 0 and snapshot(out) == snaps[1], "`miclip report CONFIG` writes the same bytes")
    check_tables(out, exp, dirs)
    check(not os.path.exists(os.path.join(out, "report", "figures")), "figures: [] writes no figures")
    # "What the tables show": the count of Delta-Acc columns where miclip is best (in the column's
    # direction, random and oracle left out) equals the count from the synthetic records.
    readme = open(os.path.join(out, "report", "README.md")).read()
    wins = cols = 0
    for col in sorted({c for (t, sec, m, c) in exp if t == "table2_interventions" and sec == "Delta-Acc"}):
        d = dirs[("table2_interventions", col)]
        if d == 0:
            continue
        means = {m: np.mean(list(v.values())) for (t, sec, m, c), v in exp.items()
                 if t == "table2_interventions" and sec == "Delta-Acc" and c == col and m not in ("random", "oracle")}
        if "miclip" not in means:
            continue
        cols += 1
        best = max(means.values()) if d > 0 else min(means.values())
        wins += means["miclip"] == best
    check("## What the tables show" in readme and
          "Delta-Acc (pp; removal: lower is better; enhancement: higher): miclip is best in %d of %d column(s)" %
          (wins, cols) in readme, "README opens with what the tables show: miclip best in %d of %d Delta-Acc columns"
          % (wins, cols))
    # The stage summaries: every task's section, in sweep order, and no machine records.
    ids = task_ids(cfg)
    for stage, md in [("describe", "descriptions.md"), ("baselines", "baselines.md"), ("intervene", "interventions.md")]:
        text = open(os.path.join(out, "report", md)).read()
        at = [text.find("## %s\n" % t) for t in ids[stage]]
        check(all(a >= 0 for a in at) and at == sorted(at) and "<!--" not in text,
              "report/%s holds the %d sections of the %s tasks in sweep order and no records" % (md, len(at), stage))
    # Only md: one format written.
    write_config(cfg, out, "report: {figures: [], formats: [md]}\n")
    shutil.rmtree(os.path.join(out, "report", "tables"))
    r = run(1, ["run", cfg, "--stage", "report"])
    got = sorted(os.listdir(os.path.join(out, "report", "tables")))
    check(r.returncode == 0 and got == ["table1_descriptions.md", "table2_interventions.md", "table3_unseen.md",
                                        "table4_ablation.md"], "formats: [md] writes only md: %s" % got)
    # One E_n variant in intervene.variants: no Table 4, with an info line; Tables 1-3 as before
    # (the other variants' records never reach them).
    before = {t: open(os.path.join(out, "report", "tables", t + ".md")).read() for t in TABLES[:3]}
    write_config(cfg, out, "report: {figures: [], formats: [md]}\n", variants="[]")
    shutil.rmtree(os.path.join(out, "report", "tables"))
    r = fixture.mpirun(1, ["run", cfg, "--stage", "report"], capture_output=True, text=True)
    got = sorted(os.listdir(os.path.join(out, "report", "tables")))
    check(r.returncode == 0 and "Table 4 (ablation) omitted" in r.stderr + r.stdout and "table4_ablation.md" not in got
          and all(open(os.path.join(out, "report", "tables", t + ".md")).read() == before[t] for t in TABLES[:3]),
          "intervene.variants: [] (one variant): Table 4 omitted with an info line, Tables 1-3 unchanged")
    # No intervene in stages: Table 2 omitted with an info line.
    write_config(cfg, out, "report: {figures: []}\n", stages="[describe, baselines, report]")
    shutil.rmtree(os.path.join(out, "report", "tables"))
    r = fixture.mpirun(1, ["run", cfg, "--stage", "report"], capture_output=True, text=True)
    got = sorted(os.listdir(os.path.join(out, "report", "tables")))
    check(r.returncode == 0 and "Table 2 omitted" in r.stderr + r.stdout and not any(g.startswith("table2") for g in got),
          "intervene not in stages: Table 2 omitted with an info line")


def bad_run(np_, args):
    """Runs every rank under sh to see each rank's exit code; returns (error lines, exit codes)."""
    cmd = "%s --quiet %s; echo rank-exit=$? >&2" % (fixture.MICLIP, " ".join(args))
    r = subprocess.run([fixture.MPIEXEC, "--oversubscribe", "-n", str(np_), "sh", "-c", cmd],
                       capture_output=True, text=True)
    errs = [l for l in (r.stderr + r.stdout).splitlines() if "error" in l]
    codes = [l for l in r.stderr.splitlines() if l.startswith("rank-exit=")]
    return errs, codes


def failed(errs, codes, np_, want):
    return len(errs) == 1 and all(w in errs[0] for w in want) and len(codes) == np_ and \
        all(c != "rank-exit=0" for c in codes)


def test_bad(tmp):
    out = os.path.join(tmp, "out")
    cfg = os.path.join(tmp, "rep.yaml")
    write_config(cfg, out, "report: {figures: []}\n")
    make_records(cfg, out)
    ids = task_ids(cfg)
    tid = ids["describe"][3]  # seed 0, logits, in+out
    index = os.path.join(out, "describe", tid + ".json")
    store = json.load(open(index))["store"]
    name = os.path.basename(store)
    # An accuracy outside [0, 1], then a store that is not the one its index entry records.
    for what, attr, value in [("an accuracy outside [0, 1]", "classes/neuron", 1.5),
                              ("a store whose key is not its index entry's", "/", "0" * 64)]:
        with h5py.File(store, "r+") as f:
            old = f[attr].attrs["description_accuracy" if attr != "/" else "describe_key"]
            f[attr].attrs["description_accuracy" if attr != "/" else "describe_key"] = value
        for np_ in [1, 2]:
            errs, codes = bad_run(np_, ["run", cfg, "--stage", "report"])
            check(failed(errs, codes, np_, [name]),
                  "%s at %d rank(s): one error line naming the store, non-zero exit on every rank: %s %s" %
                  (what, np_, errs, codes))
        with h5py.File(store, "r+") as f:
            f[attr].attrs["description_accuracy" if attr != "/" else "describe_key"] = old
    errs, codes = bad_run(1, ["run", cfg, "--stage", "report"])
    check(not errs and codes == ["rank-exit=0"], "restored results: the report runs again %s" % errs)
    # A task without its index entry, then without its report section.
    for missing, shown in [(os.path.join(out, "intervene", ids["intervene"][3] + ".json"), ids["intervene"][3] + ".json"),
                           (os.path.join(out, "report", "interventions", ids["intervene"][3] + ".md"),
                            ids["intervene"][3] + ".md")]:
        kept = open(missing, "rb").read()
        os.unlink(missing)
        for np_ in [1, 2]:
            errs, codes = bad_run(np_, ["run", cfg, "--stage", "report"])
            check(failed(errs, codes, np_, [shown, "intervene stage"]),
                  "a missing %s at %d rank(s): one error line naming the file and the stage, non-zero exit on every "
                  "rank: %s %s" % (shown, np_, errs, codes))
        open(missing, "wb").write(kept)


def test_figures(tmp):
    from PIL import Image
    world = os.path.join(tmp, "world")
    if not os.path.exists(os.path.join(world, "classes.txt")):
        subprocess.run([fixture.MICLIP, "--quiet", "world", "make", "--out", world, "--seed", "1", "--per-class", "8",
                        "--val-per-class", "1", "--unseen-per-class", "1"], check=True)
    vit, clip = (os.path.join(SRC, "experiments", "world", d) for d in ("vit", "clip"))
    snaps = {}
    for np_ in [1, 2]:
        out = os.path.join(tmp, "out%d" % np_)
        shutil.rmtree(out, ignore_errors=True)  # the world is kept between runs, the stages are not
        cfg = os.path.join(tmp, "fig%d.yaml" % np_)
        with open(cfg, "w") as f:
            f.write(f"""name: fig
output_dir: {out}
seeds: [0, 1]
models: {{target: {vit}, clip: {clip}}}
datasets:
  train: {{kind: world, root: {world}, split: train}}
concepts:
  - {{name: classes, source: classes}}
extract: {{layers: ["3"], batch_size: 64}}
sae: {{layer: "3", features: 64, k: 4, batch_size: 32, epochs: 3}}
align: {{batch_size: 64, stop: epochs, epochs: 3, lr: 0.15, variants: [in+out, out]}}
stages: [extract, sae, align, report]
report: {{figures: [loss_curves, sae_curves], figure_formats: [png, svg, pdf]}}
""")
        r = run(np_, ["run", cfg])
        check(r.returncode == 0, "extract/sae/align/report at %d rank(s) exits 0%s" % (np_, "" if r.returncode == 0 else ": " + r.stderr[-500:]))
        figs = sorted(glob.glob(os.path.join(out, "report", "figures", "*")))
        snaps[np_] = {os.path.basename(p): open(p, "rb").read() for p in figs}
    names = sorted(snaps[1])
    want = sorted("%s.%s" % (stem, ext) for stem in ["loss_curves-l3-inout", "loss_curves-l3-out", "sae_curves-l3"]
                  for ext in ["png", "svg", "pdf"])
    check(names == want, "figure files: %s" % names)
    check(snaps[1] == snaps[2], "figures identical at 1 and 2 ranks")
    out = os.path.join(tmp, "out1")
    # The data lines are stroked 1.75 wide in the palette's colours (src/plot/plot.c).
    seed_rgb = ["rgb(12.156863%,46.666667%,70.588235%)", "rgb(100%,49.803922%,5.490196%)"]
    for n in names:
        p = os.path.join(out, "report", "figures", n)
        panels = 2 if n.startswith("sae") else 1
        if n.endswith(".svg"):
            try:
                root = ET.parse(p).getroot()
                ok = True
            except ET.ParseError as e:
                ok, root = False, None
                print(e)
            ns = "{http://www.w3.org/2000/svg}"
            styles = [q.get("style", "") for q in root.iter(ns + "path")] if ok else []
            lines = [sum(1 for st in styles if "stroke-width:1.75;" in st and c in st) for c in seed_rgb]
            desc = root.find(ns + "desc") if ok else None
            desc = desc.text.splitlines() if desc is not None and desc.text else []
            check(ok and lines == [panels, panels] and "series: seed 0" in desc and "series: seed 1" in desc
                  and "x: step" in desc, "%s parses as XML: data paths per seed %s, legend and axis labels" % (n, lines))
            svg_w, svg_h = int(root.get("width")), int(root.get("height"))
            im = Image.open(p[:-4] + ".png")
            im.load()
            a = np.asarray(im.convert("RGB")).astype(int)
            colours = {tuple(c) for c in a.reshape(-1, 3)}
            # The first two palette colours (seed 0, seed 1; the legend's swatches are exact) and
            # dark text and axes on white.
            ok = im.size == (2 * svg_w, 2 * svg_h) and (31, 119, 180) in colours and (255, 127, 14) in colours
            ok = ok and (a.max(axis=2) < 60).any() and (a == 255).all(axis=2).mean() > 0.5 and (a < 255).any(axis=2).mean() > 0.01
            check(ok, "%s decodes (%dx%d, twice the SVG), not blank, both seeds' colours drawn" % (n[:-4] + ".png", *im.size))
        elif n.endswith(".pdf"):
            head = open(p, "rb").read(5)
            text = subprocess.run(["pdftotext", "-enc", "UTF-8", p, "-"], capture_output=True, text=True).stdout
            title = "SAE training: layer 3" if panels == 2 else "E_n training loss: layer 3"
            check(head == b"%PDF-" and title in text and "seed 1" in text and "step" in text,
                  "%s is a PDF whose text holds the title, legend and axis label" % n)
    readme = open(os.path.join(out, "report", "README.md")).read()
    check("## Figures" in readme and "figures/sae_curves-l3.png" in readme and "Table 1" not in readme,
          "README lists the figures; no tables without describe/intervene")


# ---- Table 1's CLIP and MPNet scores --------------------------------------------------------------

def write_mpnet(d, words, seed=3):
    """A random tiny MPNet in the all-mpnet-base-v2 layout (sentence-transformers folder); returns
    its weights and sizes for the PyTorch reference."""
    import struct
    import torch
    torch.manual_seed(seed)
    D, I, L, H, MP = 32, 64, 2, 4, 66
    toks = ["<s>", "<pad>", "</s>", "<unk>"] + ["[unused%d]" % i for i in range(100)] + ["[UNK]"]
    for w in sorted(set(words)) + list("abcdefghijklmnopqrstuvwxyz0123456789.,") + ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"]:
        if w not in toks:
            toks.append(w)
    toks.append("<mask>")
    V = len(toks)
    os.makedirs(os.path.join(d, "1_Pooling"), exist_ok=True)
    open(os.path.join(d, "vocab.txt"), "w").write("\n".join(toks) + "\n")
    json.dump({"architectures": ["MPNetForMaskedLM"], "model_type": "mpnet", "vocab_size": V, "hidden_size": D,
               "num_hidden_layers": L, "num_attention_heads": H, "intermediate_size": I, "hidden_act": "gelu",
               "max_position_embeddings": MP, "layer_norm_eps": 1e-5, "relative_attention_num_buckets": 32,
               "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2}, open(os.path.join(d, "config.json"), "w"))
    json.dump({"max_seq_length": 64, "do_lower_case": False}, open(os.path.join(d, "sentence_bert_config.json"), "w"))
    json.dump({"do_lower_case": True, "model_max_length": 512, "strip_accents": None, "tokenize_chinese_chars": True},
              open(os.path.join(d, "tokenizer_config.json"), "w"))
    json.dump([{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
               {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}],
              open(os.path.join(d, "modules.json"), "w"))
    json.dump({"word_embedding_dimension": D, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
               "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False},
              open(os.path.join(d, "1_Pooling", "config.json"), "w"))
    r = lambda *sh, std=0.5: torch.randn(*sh) * std  # noqa: E731
    M = {"embeddings.word_embeddings.weight": r(V, D), "embeddings.position_embeddings.weight": r(MP, D, std=0.1),
         "embeddings.LayerNorm.weight": 1 + r(D, std=0.1), "embeddings.LayerNorm.bias": r(D, std=0.02),
         "encoder.relative_attention_bias.weight": r(32, H)}
    for i in range(L):
        p = "encoder.layer.%d." % i
        for n in "qkvo":
            M[p + "attention.attn.%s.weight" % n] = r(D, D, std=D ** -0.5)
            M[p + "attention.attn.%s.bias" % n] = r(D, std=0.02)
        M[p + "attention.LayerNorm.weight"], M[p + "attention.LayerNorm.bias"] = 1 + r(D, std=0.1), r(D, std=0.02)
        M[p + "intermediate.dense.weight"], M[p + "intermediate.dense.bias"] = r(I, D, std=D ** -0.5), r(I, std=0.02)
        M[p + "output.dense.weight"], M[p + "output.dense.bias"] = r(D, I, std=I ** -0.5), r(D, std=0.02)
        M[p + "output.LayerNorm.weight"], M[p + "output.LayerNorm.bias"] = 1 + r(D, std=0.1), r(D, std=0.02)
    header, off, blobs = {}, 0, []
    for name, t in M.items():
        b = t.contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    return M, (D, L, H)


def mpnet_ref(d, M, dims, texts):
    """PyTorch all-mpnet-base-v2 forward (tests/text/test_text_models_ref.py, specs 6.3) of each
    text alone, ids from the Python WordPiece reference: the normalised sentence embeddings."""
    import math
    import torch
    sys.path.insert(0, os.path.join(SRC, "tests", "text"))
    import ref_tokenizers as R
    D, L, H = dims
    wp = R.WordPieceRef(d, max_length=64)
    ln = torch.nn.functional.layer_norm

    def bucket(rel):
        n = -rel
        ret = (n < 0).long() * 16
        n = n.abs()
        large = 8 + (torch.log(n.float() / 8) / math.log(128 / 8) * 8).long()
        return ret + torch.where(n < 8, n, torch.min(large, torch.full_like(large, 15)))

    out = []
    for t in texts:
        ids = torch.tensor([wp.encode(t)])
        T = ids.shape[1]
        pos = torch.arange(2, T + 2)[None]
        x = ln(M["embeddings.word_embeddings.weight"][ids] + M["embeddings.position_embeddings.weight"][pos], (D,),
               M["embeddings.LayerNorm.weight"], M["embeddings.LayerNorm.bias"], 1e-5)
        bias = M["encoder.relative_attention_bias.weight"][bucket(torch.arange(T)[None] - torch.arange(T)[:, None])]
        bias = bias.permute(2, 0, 1)[None]
        for i in range(L):
            p = "encoder.layer.%d." % i
            q, k, v = (x @ M[p + "attention.attn.%s.weight" % n].T + M[p + "attention.attn.%s.bias" % n] for n in "qkv")
            q, k, v = (y.view(1, T, H, D // H).transpose(1, 2) for y in (q, k, v))
            c = (torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D // H) + bias, dim=-1) @ v).transpose(1, 2).reshape(1, T, D)
            a = ln(c @ M[p + "attention.attn.o.weight"].T + M[p + "attention.attn.o.bias"] + x, (D,),
                   M[p + "attention.LayerNorm.weight"], M[p + "attention.LayerNorm.bias"], 1e-5)
            hh = torch.nn.functional.gelu(a @ M[p + "intermediate.dense.weight"].T + M[p + "intermediate.dense.bias"])
            x = ln(hh @ M[p + "output.dense.weight"].T + M[p + "output.dense.bias"] + a, (D,),
                   M[p + "output.LayerNorm.weight"], M[p + "output.LayerNorm.bias"], 1e-5)
        out.append(torch.nn.functional.normalize(x.mean(1), dim=1)[0].double().numpy())
    return np.array(out)


def test_scores(tmp):
    world = os.path.join(tmp, "world")
    subprocess.run([fixture.MICLIP, "--quiet", "world", "make", "--out", world, "--seed", "1", "--per-class", "6",
                    "--val-per-class", "1", "--unseen-per-class", "1"], check=True)
    vit, clip = (os.path.join(SRC, "experiments", "world", d) for d in ("vit", "clip"))
    classes = [v for _, v in sorted(json.load(open(os.path.join(vit, "config.json")))["id2label"].items(),
                                    key=lambda kv: int(kv[0]))]
    concepts = [l.strip() for l in open(os.path.join(world, "concepts.txt")) if l.strip() and not l.startswith("#")]
    mp = os.path.join(tmp, "mpnet")
    M, dims = write_mpnet(mp, [w for t in classes + concepts for w in t.lower().split()])
    out = os.path.join(tmp, "out")

    def config(path, mpnet):
        with open(path, "w") as f:
            f.write(f"""name: sc
output_dir: {out}
seeds: [0, 1, 2]
models: {{target: {vit}, clip: {clip}{", mpnet: " + mp if mpnet else ""}}}
datasets:
  train: {{kind: world, root: {world}, split: train}}
concepts:
  - {{name: classes, source: classes}}
  - {{name: world, file: {world}/concepts.txt}}
extract: {{layers: [logits], batch_size: 64}}
align: {{batch_size: 72, stop: epochs, epochs: 2, lr: 0.15, variants: [in+out, out]}}
baselines: {{methods: [act_values, clip_dissect]}}
stages: [extract, align, describe, baselines, report]
report: {{formats: [md, csv, tex], figures: []}}
""")
        return path

    cfg = config(os.path.join(tmp, "sc.yaml"), True)
    r = run(2, ["run", cfg])
    check(r.returncode == 0, "extract/align/describe/baselines/report at 2 ranks exits 0%s" % ("" if r.returncode == 0 else ": " + r.stderr[-800:]))
    cache = os.path.join(out, "concepts", "text_cache.h5")
    tables = {}
    for np_ in [1, 2, 4]:
        if os.path.exists(cache):
            os.remove(cache)
        r = run(np_, ["run", cfg, "--stage", "report"])
        check(r.returncode == 0, "report at %d rank(s) exits 0%s" % (np_, "" if r.returncode == 0 else ": " + r.stderr[-800:]))
        tables[np_] = {e: open(os.path.join(out, "report", "tables", "table1_descriptions." + e), "rb").read()
                       for e in ["md", "csv", "tex"]}
    check(tables[1] == tables[2] == tables[4], "Table 1 (md, csv, tex) identical at 1, 2 and 4 ranks, cache rebuilt each time")
    r = run(2, ["run", cfg, "--stage", "report"])
    again = {e: open(os.path.join(out, "report", "tables", "table1_descriptions." + e), "rb").read() for e in ["md", "csv", "tex"]}
    check(r.returncode == 0 and again == tables[1], "a rerun from the cache gives the same bytes")
    rows = read_csv(os.path.join(out, "report", "tables", "table1_descriptions.csv"))

    # The reference: each logits task's top description per neuron from its store, embedded by
    # `miclip embed-text` (CLIP, the concept prompt) and by PyTorch (MPNet), cosines in numpy.
    ids = task_ids(cfg)
    items = []
    for stage, pre in [("describe", ""), ("baselines", "describe/")]:
        for tid in ids[stage]:
            if "-llogits-" not in tid:
                continue
            idx = json.load(open(os.path.join(out, stage, tid + ".json")))
            with h5py.File(idx["store"], "r") as f:
                for cs in ["classes", "world"]:
                    if pre + cs + "/neuron/top_concepts" not in f:
                        continue  # Act-Values describes only the class set
                    g = f[pre + cs]
                    names = bytes(g["concepts_bytes"][()]).split(b"\0")
                    top = g["neuron/top_concepts"][:, 0]
                    desc = [names[j].decode() for j in top]
                    seed = int(tid.split("-s")[1].split("-")[0])
                    m = tid.split("-llogits-")[1]
                    method = "miclip (%s)" % m.replace("inout", "in+out") if stage == "describe" else m
                    items.append((method, cs, seed, desc))
    texts = sorted(set(classes) | {t for it in items for t in it[3]})
    tj = os.path.join(tmp, "texts.json")
    json.dump(texts, open(tj, "w"))
    eo = os.path.join(tmp, "clip_emb.h5")
    subprocess.run([fixture.MICLIP, "--quiet", "embed-text", clip, "--texts", tj, "--template", "a photo of a {}.",
                    "--out", eo], check=True)
    with h5py.File(eo, "r") as f:
        ec = f["text_embeds"][()].astype(np.float64)
    ec /= np.linalg.norm(ec, axis=1, keepdims=True)
    em = mpnet_ref(mp, M, dims, texts)
    pos = {t: i for i, t in enumerate(texts)}
    vals = {}
    for method, cs, seed, desc in items:
        a = [pos[t] for t in desc]
        b = [pos[t] for t in classes]
        vals.setdefault(("CLIP score on `logits`", method, cs), {})[seed] = float(np.mean(np.sum(ec[a] * ec[b], 1)))
        vals.setdefault(("MPNet score on `logits`", method, cs), {})[seed] = float(np.mean(np.sum(em[a] * em[b], 1)))
    bad = []
    for (sec, method, cs), v in vals.items():
        row = [x for x in rows if x["section"] == sec and x["method"] == method and x["column"] == cs]
        x = np.array([v[s] for s in sorted(v)])
        if len(row) != 1:
            bad.append((sec, method, cs, "no row"))
            continue
        row = row[0]
        ok = abs(float(row["mean"]) - x.mean()) <= 2e-5 and abs(float(row["std"]) - x.std(ddof=1)) <= 2e-5
        if method != "miclip (in+out)":
            ref = vals[(sec, "miclip (in+out)", cs)]
            d = np.array([ref[s] for s in sorted(v)]) - x
            if d.std(ddof=1) > 1e-4:
                t = d.mean() / (d.std(ddof=1) / np.sqrt(len(d)))
                p = stats.t.sf(t, len(d) - 1)
                ok = ok and abs(float(row["t"]) - t) <= 1e-3 * max(1, abs(t)) and abs(float(row["p"]) - p) <= 1e-3
        if not ok:
            bad.append((sec, method, cs, row["mean"], x.mean(), row["std"], x.std(ddof=1), row["t"]))
    n_rows = sum(1 for x in rows if x["section"] in ("CLIP score on `logits`", "MPNet score on `logits`"))
    check(len(vals) == n_rows == 2 * 7 and not bad, "CLIP and MPNet scores (%d cells: mean, std, t, p) equal the numpy/PyTorch "
          "recomputation: %s" % (len(vals), bad[:3]))
    md = tables[1]["md"].decode()
    check("CLIP score on `logits`" in md and "MPNet score on `logits`" in md and "0." in md, "md has both score sections")

    # Without models.mpnet: the MPNet column is n/a with its reason.
    cfg2 = config(os.path.join(tmp, "sc2.yaml"), False)
    r = run(2, ["run", cfg2, "--stage", "report"])
    check(r.returncode == 0, "report without models.mpnet exits 0%s" % ("" if r.returncode == 0 else ": " + r.stderr[-800:]))
    md = open(os.path.join(out, "report", "tables", "table1_descriptions.md")).read()
    tex = open(os.path.join(out, "report", "tables", "table1_descriptions.tex")).read()
    rows2 = read_csv(os.path.join(out, "report", "tables", "table1_descriptions.csv"))
    mp_rows = [x for x in rows2 if x["section"] == "MPNet score on `logits`"]
    clip_same = [x for x in rows2 if x["section"] == "CLIP score on `logits`"] == \
        [x for x in rows if x["section"] == "CLIP score on `logits`"]
    check(len(mp_rows) == 8 and all(x["n"] == "0" and x["mean"] == "" and "models.mpnet" in x["note"] for x in mp_rows)
          and "n/a (d)" in md and "(d) n/a: no MPNet model" in md and "n/a$^{d}$" in tex and clip_same,
          "without models.mpnet: every MPNet cell n/a (d) with the reason, CLIP scores unchanged")


def main():
    part = sys.argv[1]
    tmp = os.path.join(os.getcwd(), "report_" + part)
    if part != "figures":
        shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp, exist_ok=True)
    {"tables": test_tables, "bad": test_bad, "figures": test_figures, "scores": test_scores}[part](tmp)
    return fixture.summary()


if __name__ == "__main__":
    sys.exit(main())
