"""The result tables of the README and the guides, generated from the committed results under `benchmarks/results/`.

Each published table sits in a marked block of a Markdown page::

  <!-- table:main_job -->
  | model | method | ... |
  ...
  <!-- /table:main_job -->

and is written here from the JSON a benchmark saved, together with the lines that compare its rows ("HAM −
baseline", paired over seeds) and the sentence that summarises them ("ahead in all four rows", "no difference is
significant"), so that no number or claim about a result is typed by hand. Nothing outside the markers is touched.

  python benchmarks/tables.py            # rewrite every block of README.md and docs/guides/*.md
  python benchmarks/tables.py --check    # list the blocks that differ from their results (exit status 1)

`tests/test_published_tables.py` runs the check. After rerunning a benchmark, run this script and commit the pages.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import re
import sys
import textwrap
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ham_optax_examples.report import markdown_table as job_table  # the table `ham-optax train` prints

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, paired_test, welch_p  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
WIDTH = 110  # the line length of the Markdown pages
SIGNIFICANCE = 0.05
BLOCK = re.compile(
  r"^(?P<indent>[ \t]*)(?P<open><!-- table:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(?P<close>\n(?P=indent)<!-- /table:(?P=name) -->)",
  re.S | re.M,
)

TABLES: dict[str, Callable[[Path], str]] = {}


def table(name: str) -> Callable[[Callable[[Path], str]], Callable[[Path], str]]:
  """Registers ``fn(results_dir) -> markdown`` as the generator of the blocks called ``name``."""

  def register(fn: Callable[[Path], str]) -> Callable[[Path], str]:
    TABLES[name] = fn
    return fn

  return register


def pages(root: Path = REPO) -> list[Path]:
  """The Markdown pages whose blocks are generated: the README and the guides."""
  return [root / "README.md", *sorted((root / "docs" / "guides").glob("*.md"))]


def render(text: str, results: Path = RESULTS) -> str:
  """``text`` with every marked block regenerated from ``results``; an unknown block name is an error."""

  def fill(m: re.Match) -> str:
    name, indent = m["name"], m["indent"]
    if name not in TABLES:
      raise KeyError(f"no generator for the block 'table:{name}' (known: {', '.join(sorted(TABLES))})")
    body = layout(TABLES[name](results), WIDTH - len(indent))
    body = "\n".join(indent + line if line else line for line in body.split("\n"))
    return indent + m["open"] + body + m["close"]

  return BLOCK.sub(fill, text)


def block_names(text: str) -> list[str]:
  return [m["name"] for m in BLOCK.finditer(text)]


# ------------------------------------------------------------------------------------------------------------
# Formatting and the derived sentences
# ------------------------------------------------------------------------------------------------------------

NUMBER_WORDS = dict(enumerate("zero one two three four five six seven eight nine ten".split()))


GLUE = "\x00"  # a space that a line break must not replace ("p = 0.47", "+0.66 ± 1.86")


def paragraph(text: str) -> str:
  """One paragraph on one line (``render`` wraps it to the page)."""
  return " ".join(text.split())


def layout(markdown: str, width: int) -> str:
  """Tables as they are; every other paragraph wrapped at ``width``, never inside a number with its sign, spread
  or p-value."""
  wrap = dict(width=width, break_on_hyphens=False, break_long_words=False)

  def fill(part: str) -> str:
    if part.startswith("|"):
      return part
    if part.startswith("- "):  # a list: one item per line, continuation lines indented under the item
      items = [" ".join(item.split()) for item in part[2:].split("\n- ")]
      return "\n".join(
        textwrap.fill(item, initial_indent="- ", subsequent_indent="  ", **wrap) for item in items
      )
    return textwrap.fill(" ".join(part.split()), **wrap)

  return "\n\n".join(fill(part) for part in markdown.strip("\n").split("\n\n")).replace(GLUE, " ")


def fmt_p(p: float) -> str:
  if not np.isfinite(p):
    return f"p{GLUE}undefined"
  text = f"p = {p:.2f}" if p >= 0.01 else ("p < 0.001" if p < 0.001 else f"p = {p:.3f}")
  return text.replace(" ", GLUE)


def fmt_diff(mean: float, std: float | None = None) -> str:
  """Points with an explicit sign (U+2212 for minus, as in the pages' prose)."""
  text = f"{mean:+.2f}".replace("-", "\u2212")
  return text if std is None else f"{text}{GLUE}±{GLUE}{std:.2f}"


def paired(base: Sequence[float | None], other: Sequence[float | None]) -> dict[str, Any]:
  """``other − base`` in points over the pairs where both finished (the shared paired t-test of `_common`)."""
  a = np.array([np.nan if v is None else v for v in base], np.float64) * 100
  b = np.array([np.nan if v is None else v for v in other], np.float64) * 100
  test = paired_test(a, b)
  ok = np.isfinite(a) & np.isfinite(b)
  d = b[ok] - a[ok]
  return {**test, "std_diff": float(d.std(ddof=1)) if d.size > 1 else float("nan")}


def verdict(comparisons: Sequence[tuple[str, dict[str, Any]]], who: str = "HAM") -> str:
  """The sentence that summarises paired comparisons: how many rows ``who`` is ahead in, which are significant."""
  n = len(comparisons)
  ahead = [label for label, c in comparisons if c["mean_diff"] > 0]
  significant = [label for label, c in comparisons if c["p_value"] < SIGNIFICANCE]
  rows = f"all {NUMBER_WORDS.get(n, n)} rows" if n > 2 else ("both rows" if n == 2 else "the one row")
  if len(ahead) == n:
    lead = f"{who} is ahead in {rows}"
  elif not ahead:
    lead = f"{who} is ahead in none of the {NUMBER_WORDS.get(n, n)} rows"
  else:
    lead = f"{who} is ahead in {len(ahead)} of {n} rows ({', '.join(ahead)})"
  if not significant:
    joint = "but" if ahead else "and"
    return f"{lead} {joint} no difference is significant at these seed counts (p{GLUE}>={GLUE}{SIGNIFICANCE})"
  return f"{lead}; significant (p{GLUE}<{GLUE}{SIGNIFICANCE}): {', '.join(significant)}"


def _load(results: Path, *parts: str) -> Any:
  return json.loads(results.joinpath(*parts).read_text())


# ------------------------------------------------------------------------------------------------------------
# The main job (README): `ham-optax train` with its defaults
# ------------------------------------------------------------------------------------------------------------

MODEL_LABELS = {"mlp": "MLP", "resnet1d": "ResNet1D", "cnn1d": "CNN1D", "resnet18": "ResNet18"}


def _pct(mean: float | None, std: float | None) -> str:
  return "diverged" if mean is None else f"{100 * mean:.2f} ± {100 * std:.2f}"


def _opt(value: Any) -> str:
  return "-" if value is None else f"{value:g}"


ACCURACY_COLUMNS = [
  "lr",
  "alpha",
  "beta",
  "test acc (%)",
  "val acc (%)",
  "sparsity",
  "sign flips vs init",
  "diverged",
]


@table("main_job")
def main_job(results: Path) -> str:
  """The main job's table, then HAM − baseline paired over seeds per model and sparsifier, and the verdict."""
  data = _load(results, "main_job", "results.json")
  by_seed: dict[tuple[str, str], dict[int, float | None]] = defaultdict(dict)
  diverged = 0
  for run in data["runs"]:
    by_seed[run["config"]["model"], run["method"]][run["config"]["seed"]] = run["test_acc"]
    diverged += bool(run["diverged"])
  comparisons = []
  for (model, method), ham in by_seed.items():
    if not method.endswith("+HAM") or (model, method[: -len("+HAM")]) not in by_seed:
      continue
    base = by_seed[model, method[: -len("+HAM")]]
    seeds = sorted(set(base) & set(ham))
    comparisons.append(
      (
        f"{MODEL_LABELS.get(model, model)} {method[: -len('+HAM')]}",
        paired([base[s] for s in seeds], [ham[s] for s in seeds]),
      )
    )
  diffs = ", ".join(
    f"{label} {fmt_diff(c['mean_diff'], c['std_diff'])} ({fmt_p(c['p_value'])})" for label, c in comparisons
  )
  runs = "no seed diverged" if not diverged else f"{diverged} of {len(data['runs'])} runs diverged"
  text = (
    "HAM − baseline, test accuracy paired over seeds (points, mean ± std, paired t-test): "
    f"{diffs}. {verdict(comparisons)}; {runs}."
  )
  return job_table(data["summary"]) + "\n\n" + paragraph(text)


# ------------------------------------------------------------------------------------------------------------
# Sparse training (docs/guides/sparse_training.md): `benchmarks/sparse_training.py`
# ------------------------------------------------------------------------------------------------------------

SPARSIFIER_LABELS = {
  "dense": "dense",
  "random": "random PaI",
  "magnitude": "gradual magnitude",
  "acdc": "AC/DC",
  "rigl": "RigL",
}
COLLAPSE_POINTS = 10.0  # a finished seed this far below the baseline's worst seed is reported as collapsed


def _method_label(method: str, labels: dict[str, str] = SPARSIFIER_LABELS) -> str:
  base, _, variant = method.partition("+")
  return labels.get(base, base) + (f" + {variant}" if variant else "")


def _alpha_text(method: str, alpha: float | None) -> str:
  """Grid values as written on the grid; `suggest_alpha`'s values (the "tuned" rows) to two decimals."""
  return "-" if alpha is None else (f"{alpha:.2f}" if method.endswith("tuned") else f"{alpha:g}")


def _welch(base: Sequence[float | None], other: Sequence[float | None]) -> tuple[float, float]:
  """Difference of the means in points over the finished seeds, and the two-sided Welch t-test's p."""
  a = [100 * v for v in base if v is not None]
  b = [100 * v for v in other if v is not None]
  return float(np.mean(b) - np.mean(a)), welch_p(b, a)


def _sparse_comparison(
  base: Sequence[dict[str, Any]], other: Sequence[dict[str, Any]]
) -> tuple[str, float, float]:
  """``"+0.84 (p = 0.24)"`` with a note on diverged or collapsed seeds; also the difference and p."""
  diff, p = _welch([r["test_acc"] for r in base], [r["test_acc"] for r in other])
  notes = []
  diverged = sum(bool(r["diverged"]) for r in other)
  if diverged:
    notes.append(f"{NUMBER_WORDS.get(diverged, diverged)} seed{'s' * (diverged > 1)} diverged")
  floor = min(100 * r["test_acc"] for r in base if r["test_acc"] is not None) - COLLAPSE_POINTS
  for r in other:
    if r["test_acc"] is not None and 100 * r["test_acc"] < floor:
      notes.append(f"one seed collapsed to {100 * r['test_acc']:.0f} %")
  inner = fmt_p(p) + "".join(f";{GLUE}{n.replace(' ', GLUE)}" for n in notes)
  return f"{fmt_diff(diff)} ({inner})", diff, p


@table("sparse_training")
def sparse_training(results: Path) -> str:
  """The tuned comparison's table: every sparsifier with and without HAM (both protocols) and Sign-In."""
  data = _load(results, "sparse_training", "results.json")
  rows = [
    [
      _method_label(s["method"]),
      f"{s['lr']:g}",
      _alpha_text(s["method"], s["alpha"]),
      _opt(s["beta"]),
      _pct(s["test_acc_mean"], s["test_acc_std"]),
      _pct(s["val_acc_mean"], s["val_acc_std"]),
      f"{s['sparsity']:.3f}",
      f"{100 * s['sign_flips']:.2f} %",
      s["diverged"] if s["diverged"].startswith("0/") else f"**{s['diverged']}**",
    ]
    for s in data["summary"]
  ]
  return markdown_table(["method", *ACCURACY_COLUMNS], rows)


def _sparse_comparisons(
  results: Path,
) -> tuple[dict[str, list[dict[str, Any]]], dict[tuple[str, str], tuple]]:
  """The runs by method, and ``(sparsifier, variant) -> (text, difference, p)`` for every HAM variant."""
  data = _load(results, "sparse_training", "results.json")
  runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
  for run in data["runs"]:
    runs[run["method"]].append(run)
  comparisons = {
    (sparsifier, variant): _sparse_comparison(runs[sparsifier], runs[sparsifier + variant])
    for sparsifier in [s["method"] for s in data["summary"] if "+" not in s["method"]]
    for variant in ("+HAM", "+HAM tuned")
    if sparsifier + variant in runs
  }
  return runs, comparisons


def _sparse_significant(comparisons: dict[tuple[str, str], tuple]) -> list[str]:
  return [
    f"{SPARSIFIER_LABELS.get(s, s)} + HAM{v[4:]}"
    for (s, v), (_, d, p) in comparisons.items()
    if d > 0 and p < SIGNIFICANCE
  ]


@table("sparse_training_comparison")
def sparse_training_comparison(results: Path) -> str:
  """HAM − baseline per sparsifier (both HAM protocols), Sign-In − baseline, and the verdict."""
  runs, comparisons = _sparse_comparisons(results)
  seeds = len(runs["dense"])
  by_sparsifier: dict[str, list[str]] = defaultdict(list)
  for (sparsifier, _), (text, _, _) in comparisons.items():
    by_sparsifier[sparsifier].append(text)
  parts = [f"{SPARSIFIER_LABELS.get(s, s)} {' / '.join(texts)}" for s, texts in by_sparsifier.items()]
  sign_in = ""
  if "random+Sign-In" in runs:
    sign_in = (
      f" Sign-In − baseline on random PaI: {_sparse_comparison(runs['random'], runs['random+Sign-In'])[0]}."
    )
  significant = _sparse_significant(comparisons)
  verdict_text = (
    "**At this scale HAM does not improve sparse training significantly for any sparsifier.**"
    if not significant
    else f"**HAM improves significantly (p{GLUE}<{GLUE}{SIGNIFICANCE}): {', '.join(significant)}.**"
  )
  tuned_worst = [d for (_, v), (_, d, _) in comparisons.items() if v.endswith("tuned")]
  tuned_diverged = sum(bool(r["diverged"]) for m, rs in runs.items() if m.endswith("HAM tuned") for r in rs)
  tuned = (
    f'"HAM tuned" (alpha from `suggest_alpha`, same budget as the baseline) '
    f"{'never diverged' if not tuned_diverged else f'diverged on {tuned_diverged} seeds'} and was at worst "
    f"{fmt_diff(min(tuned_worst))} points from the baseline."
    if tuned_worst
    else ""
  )
  unstable = [s for (s, v), (text, _, _) in comparisons.items() if v == "+HAM" and "seed" in text]
  picked = ""
  if unstable:
    alphas = {runs[s + "+HAM"][0]["config"]["alpha"] for s in unstable}
    names = " and ".join(SPARSIFIER_LABELS.get(s, s) for s in unstable)
    picked = (
      f'The grid-tuned "HAM at the baseline\'s lr" picked alpha{GLUE}={GLUE}{"/".join(f"{a:g}" for a in sorted(alphas))} '
      f"for {names}, where it diverged or collapsed on one test seed although it won on the "
      f"{NUMBER_WORDS.get(len(_tuning_seeds(results)), len(_tuning_seeds(results)))} validation seeds."
    )
  text = (
    f"HAM − baseline on test (points, two-sided Welch t-test over the {seeds} seeds), HAM at the baseline's lr / "
    f"HAM tuned: {'; '.join(parts)}.{sign_in} {verdict_text} {tuned} {picked}"
  )
  return paragraph(text)


def _tuning_seeds(results: Path) -> list[int]:
  """The tuning seeds of the sparse-training benchmark (selection on validation)."""
  return list(_load(results, "sparse_training", "results.json")["tuning_seeds"])


@table("readme_sparse_training")
def readme_sparse_training(results: Path) -> str:
  """The README's summary of the sparse-training benchmark."""
  runs, comparisons = _sparse_comparisons(results)
  significant = _sparse_significant(comparisons)
  lead = (
    "HAM does not improve any sparsifier significantly"
    if not significant
    else f"HAM improves {', '.join(significant)} significantly (p{GLUE}<{GLUE}{SIGNIFICANCE})"
  )
  pair = lambda s: " / ".join(fmt_diff(comparisons[s, v][1]) for v in ("+HAM", "+HAM tuned"))  # noqa: E731
  p_min = np.floor(100 * min(p for _, _, p in comparisons.values())) / 100
  unstable = [
    SPARSIFIER_LABELS.get(s, s)
    for (s, v), (text, _, _) in comparisons.items()
    if v == "+HAM" and "seed" in text
  ]
  tuned_unstable = any("seed" in text for (_, v), (text, _, _) in comparisons.items() if v.endswith("tuned"))
  stability = (
    f"the grid-tuned alpha diverged or collapsed on one seed each of {' and '.join(unstable)}"
    if unstable
    else "the grid-tuned alpha never diverged or collapsed"
  ) + (
    ", the `suggest_alpha` rows never did" if not tuned_unstable else ", and so did the `suggest_alpha` rows"
  )
  return paragraph(
    f"{lead} (RigL + HAM {pair('rigl')} points with alpha grid-tuned at RigL's lr / alpha from `suggest_alpha` "
    f"at HAM's own lr, random pruning {pair('random')}, all p{GLUE}>={GLUE}{p_min:.2f}); {stability}."
  )


# ------------------------------------------------------------------------------------------------------------
# Transformers (docs/guides/transformers.md): `benchmarks/transformers.py` formats its own tables
# ------------------------------------------------------------------------------------------------------------


@functools.cache
def _script(name: str) -> Any:
  """A benchmark script of this folder as a module (by path: `transformers` is also a PyPI package's name)."""
  spec = importlib.util.spec_from_file_location(
    f"_{name}_study", Path(__file__).resolve().parent / f"{name}.py"
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _tables_of(results: Path, study: str) -> list[str]:
  """The Markdown tables the transformers script writes for the results in ``results/study``."""
  script = _script("transformers")
  text = script.tables(_load(results, study, "results.json"))
  return [part for part in text.split("\n\n") if part.startswith("|")]


@table("transformers_grokking")
def transformers_grokking(results: Path) -> str:
  """The grokking table and the paired tests of the grokking step against AdamW."""
  res = _load(results, "transformers", "results.json")
  labels = _script("transformers").LABELS
  base = np.asarray(res["grokking"]["adamw"]["grok_step"], float)
  tests = []
  for method, r in res["grokking"].items():
    p = paired_test(base, np.asarray(r["grok_step"], float))["p_value"] if method != "adamw" else float("nan")
    if np.isfinite(p):
      tests.append(f"{labels[method]} p{GLUE}={GLUE}{p:.3f}")
  text = (
    "Grokking step, paired t-tests against AdamW (seeds that grokked under both): " + "; ".join(tests) + "."
  )
  return _tables_of(results, "transformers")[0] + "\n\n" + paragraph(text)


@table("transformers_findings")
def transformers_findings(results: Path) -> str:
  """HAM(AdamW) against AdamW in the grokking study: grokking time, final accuracy, and the weights."""
  res = _load(results, "transformers", "results.json")
  base, ham = res["grokking"]["adamw"], res["grokking"]["ham_adamw"]
  seeds = len(base["final_test_acc"])

  def test(key: str) -> dict[str, Any]:
    return paired_test(np.asarray(base[key], float), np.asarray(ham[key], float))

  grok, acc = test("grok_step"), test("final_test_acc")
  g_ham, g_base = (
    np.nanmean(np.asarray(ham["grok_step"], float)),
    np.nanmean(np.asarray(base["grok_step"], float)),
  )
  when = ("earlier" if g_ham < g_base else "later") + " on average"
  sig = "" if grok["p_value"] < SIGNIFICANCE else " but not significantly"
  level = "lower" if np.mean(ham["final_test_acc"]) < np.mean(base["final_test_acc"]) else "higher"
  noise = " and noisier" if np.std(ham["final_test_acc"]) > np.std(base["final_test_acc"]) else ""
  peak = np.asarray(ham["curves"]["val_acc"], float).max(axis=-1)
  dips = np.any(np.asarray(ham["final_val_acc"], float) < peak - 1e-9)
  reached = f"Every HAM(AdamW) run reached {100 * peak.min():.0f} % validation accuracy at some step" + (
    "; the final number catches some of them in a dip." if dips else "."
  )
  dead = [s for s, v in zip(ham["grid"], ham["tuning"]["final_val_acc"], strict=True) if np.max(v) < 0.05]
  dead_alphas = sorted({s["alpha"] for s in dead})
  failed = (
    f" With alpha{GLUE}={GLUE}{', '.join(f'{a:g}' for a in dead_alphas)} (either beta) HAM(AdamW) did not learn at "
    "all on the tuning seed."
    if dead
    else ""
  )
  fourier, near = test("fourier_top4"), test("near_zero")
  _, f_ham = _mean_std(ham["fourier_top4"], digits=2)
  _, f_base = _mean_std(base["fourier_top4"], digits=2)
  _, z_ham = _mean_std(ham["near_zero"], 100)
  _, z_base = _mean_std(base["near_zero"], 100)
  ratio = np.mean(ham["near_zero"]) / np.mean(base["near_zero"])
  first = (
    f"**HAM(AdamW) groks {when} ({g_ham:.0f} vs {g_base:.0f} steps){sig}** (paired {fmt_p(grok['p_value'])} over "
    f"{seeds} seeds), and **its final accuracy is {level}{noise}** (test {_mean_std(ham['final_test_acc'], 100)[1]} "
    f"% vs {_mean_std(base['final_test_acc'], 100)[1]} %, {fmt_p(acc['p_value'])})"
    + (
      ": after grokking, its validation accuracy keeps dipping (see the curves) where AdamW's settles"
      if noise
      else ""
    )
    + f". {reached}{failed}"
  )
  second = (
    f"**The implicit bias is visible in the weights**: HAM(AdamW)'s number embedding is "
    f"{'more' if fourier['mean_diff'] > 0 else 'less'} concentrated in a few Fourier frequencies ({f_ham} vs "
    f"{f_base}) and it has {ratio:.1f}x as many near-zero weights ({z_ham} % vs {z_base} %; paired "
    f"{fmt_p(fourier['p_value'])} and {fmt_p(near['p_value'])}, `scipy.stats.ttest_rel` over the seeds)"
  )
  if fourier["mean_diff"] > 0 and near["mean_diff"] > 0:
    second += ": the sparser, more structured solution HAM's geometry favours"
  return f"- {first}\n- {second}."


@table("transformers_finetune")
def transformers_finetune(results: Path) -> str:
  return _tables_of(results, "transformers")[1]


@table("transformers_finetune_wd")
def transformers_finetune_wd(results: Path) -> str:
  return _tables_of(results, "transformers_finetune_wd")[1]


# ------------------------------------------------------------------------------------------------------------
# Graphs (docs/guides/graphs.md): `benchmarks/graphs.py` formats its own table
# ------------------------------------------------------------------------------------------------------------


@table("graphs")
def graphs(results: Path) -> str:
  return _script("graphs").table(_load(results, "graphs", "results.json")["cells"])


GRAPH_LABELS = {"gcn": "GCN", "sage": "GraphSAGE", "sgd": "SGD", "adamw": "AdamW"}


def _cell(c: dict[str, Any]) -> str:
  return f"{GRAPH_LABELS[c['model']]} + {GRAPH_LABELS[c['inner']]} at `h{GLUE}={GLUE}{c['h']:g}`"


def _gain(c: dict[str, Any], key: str, against: str) -> tuple[float, float]:
  test = c[key][against]
  return 100 * test["mean_diff"], test["p_value"]


def _significant(cells: Sequence[dict[str, Any]], key: str, against: str, sign: int) -> list[dict[str, Any]]:
  return [
    c for c in cells if sign * _gain(c, key, against)[0] > 0 and _gain(c, key, against)[1] < SIGNIFICANCE
  ]


def _code(text: str) -> str:
  """A code span that a line break never splits."""
  return f"`{text.replace(' ', GLUE)}`"


def _times(k: int) -> str:
  return {0: "never", 1: "once", 2: "twice"}.get(k, f"{k} times")


@table("graphs_answer")
def graphs_answer(results: Path) -> str:
  """The answers to the study's two questions, and HAM tuned against the tuned baseline, from the cells."""
  cells = _load(results, "graphs", "results.json")["cells"]
  n, tests = len(cells), 2 * len(cells)
  hs = sorted({c["h"] for c in cells})
  alpha0 = _code("alpha = 0")

  def case(c: dict[str, Any], key: str, against: str, note: str = "") -> str:
    diff, p = _gain(c, key, against)
    return f"{_cell(c)}, {fmt_diff(diff)} points ({fmt_p(p)}, alpha{GLUE}={GLUE}{c[key]['alpha']:g}{note})"

  neg = _significant(cells, "ham_neg", "vs_alpha0", +1)
  first = f"Of the {n} settings, the best negative alpha beats {alpha0} significantly {_times(len(neg))}"
  for c in neg:
    corrected = min(1.0, tests * _gain(c, "ham_neg", "vs_alpha0")[1])
    note = f"; over the {tests} sign-restricted comparisons of the table a Bonferroni correction makes that {corrected:.2f}"
    first += f": {case(c, 'ham_neg', 'vs_alpha0', note)}"
    diff, p = _gain(c, "ham", "vs_baseline")
    if p >= SIGNIFICANCE or diff <= 0:
      first += (
        ". That gain is not a gain over the tuned baseline: tuning the weight decay gives the same accuracy "
        f"(HAM − baseline {fmt_diff(diff)}, {fmt_p(p)})"
      )
  others = [c for c in cells if c["h"] <= hs[1] and (c["model"] == "gcn" or c["inner"] == "adamw")]
  keys = [("ham", "vs_baseline"), ("ham", "vs_alpha0"), ("ham_neg", "vs_alpha0"), ("ham_pos", "vs_alpha0")]
  spread = max(abs(_gain(c, k, a)[0]) for c in others for k, a in keys)
  any_sig = any(_gain(c, k, a)[1] < SIGNIFICANCE for c in others for k, a in keys)
  by_h = ", ".join(str(sum(c["ham"]["alpha"] < 0 for c in cells if c["h"] == h)) for h in hs)
  first += (
    f". With GCN, or with AdamW, every difference at {_code(f'h = {hs[0]:g}')} and {_code(f'h = {hs[1]:g}')} is "
    f"within ±{spread:.1f} points and {'some are' if any_sig else 'none is'} significant. The best alpha chosen on "
    f"validation is negative in {sum(c['ham']['alpha'] < 0 for c in cells)} of the {n} settings (by h = "
    f"{', '.join(f'{h:g}' for h in hs)}: {by_h} of {n // len(hs)}; first panel)."
  )
  high = [c for c in cells if c["h"] >= hs[-2]]
  pos = _significant(high, "ham_pos", "vs_alpha0", +1)
  best = max(_gain(c, "ham_pos", "vs_alpha0")[0] for c in high)
  second = (
    f"at {_code(f'h = {hs[-2]:g}')} and {_code(f'h = {hs[-1]:g}')} the best positive alpha is within "
    f"{fmt_diff(best)} points of {alpha0} and "
    + ("never significant." if not pos else f"significant at {'; '.join(map(_cell, pos))}.")
  )
  better, worse = _significant(cells, "ham", "vs_baseline", +1), _significant(cells, "ham", "vs_baseline", -1)
  third = "HAM with alpha tuned over the whole grid " + (
    "never beats the tuned baseline significantly"
    if not better
    else f"beats the tuned baseline significantly {_times(len(better))}"
  )
  for c in worse:
    diff, p = _gain(c, "ham", "vs_baseline")
    third += (
      f"; it is significantly worse at {_cell(c)}, {fmt_diff(diff)} points ({fmt_p(p)}), where the baseline "
      f"tuned its weight decay to {c['wd_baseline']:g} and HAM kept {c['alpha0']['wd']:g}"
    )
  neg_worse = _significant(cells, "ham_neg", "vs_alpha0", -1)
  third += f". A negative alpha is significantly *worse* than {alpha0} " + (
    "nowhere." if not neg_worse else f"at {'; '.join(case(c, 'ham_neg', 'vs_alpha0') for c in neg_worse)}."
  )
  helps_neg, helps_pos = 10 * len(neg) > tests, bool(pos)
  answer = {(False, False): "no on both counts", (True, True): "yes on both counts"}.get(
    (helps_neg, helps_pos),
    f"{'yes' if helps_neg else 'no'} for a negative, {'yes' if helps_pos else 'no'} for a positive alpha",
  )
  return (
    f"**Answer, for this controlled setting: {answer}.**\n\n"
    f"- *Does a negative alpha help on heterophilic graphs?* {'Often.' if helps_neg else 'Not reliably.'} {first}\n"
    f"- *Does a positive alpha help on homophilic graphs?* {'Yes:' if helps_pos else 'No:'} {second}\n- {third}"
  )


# ------------------------------------------------------------------------------------------------------------
# Implicit bias (docs/guides/implicit_bias.md): `benchmarks/implicit_bias.py`
# ------------------------------------------------------------------------------------------------------------


def _sci(x: float) -> str:
  """``7.7e-2``: two significant digits, the exponent without padding."""
  mantissa, exponent = f"{x:.1e}".split("e")
  return f"{mantissa}e{int(exponent)}"


def _implicit_bias_label(label: str, row: dict[str, Any]) -> str:
  if row["alpha"] is not None:
    return f"HAM alpha={row['alpha']:g}"
  return (
    f"m * w, gamma = {_sci(float(label.split('g=')[1])).replace('.0e', 'e')}"
    if label.startswith("m*w")
    else label
  )


@table("implicit_bias")
def implicit_bias(results: Path) -> str:
  """The limits of GD, HAM (the default ``sign_from``) and m * w against their predicted limits and the truth."""
  res = _load(results, "implicit_bias", "results.json")["table"]
  rows, named = [], set()
  for label, r in res["rows"].items():
    if r["sign_from"] not in (None, "x_half"):
      continue  # the analysed variant: same limits, quoted in the text
    limit = {"GD": "pseudo-inverse", "HAM": "Bregman projection", "m * w": "hyperbolic entropy"}
    kind = next(k for k in limit if _implicit_bias_label(label, r).startswith(k))
    gap = _sci(r["rel_gap_to_limit"]) + ("" if kind in named else f" ({limit[kind]})")
    named.add(kind)
    rows.append(
      [
        _implicit_bias_label(label, r),
        _sci(r["lr"]),
        f"{r['steps']:,}",
        f"{r['l1']:.3f}",
        gap,
        f"{r['rel_dist_to_truth']:.3f}",
      ]
    )
  bp_is_truth = all(abs(r["rel_dist_to_bp"] - r["rel_dist_to_truth"]) < 1e-9 for r in res["rows"].values())
  rows.append(
    ["basis pursuit (LP)", "–", "–", f"{res['l1_basis_pursuit']:.3f}", "–", "0.000" if bp_is_truth else "–"]
  )
  header = ["method", "lr", "steps", "L1 of limit", "rel. gap to predicted limit", "rel. distance to truth"]
  return markdown_table(header, rows)


def _order(slopes: Sequence[float]) -> str:
  """How the gap to the predicted limit shrinks with the learning rate, from the log-log slopes."""
  return "of first order" if all(0.8 <= s <= 1.25 for s in slopes) else "not of first order"


def _power(x: float) -> str:
  return f"1e{round(np.log10(x))}" if np.isclose(x, 10.0 ** round(np.log10(x))) else f"{x:.2g}"


@table("implicit_bias_findings")
def implicit_bias_findings(results: Path) -> str:
  """The analysed variant, the first-order gap, where the L1 bias stops, and the cost in steps."""
  res = _load(results, "implicit_bias", "results.json")
  rows = res["table"]["rows"]
  pairs = [(r, rows[k.replace("(HYP*)", "(GD;HYP)")]) for k, r in rows.items() if k.endswith("(HYP*)")]
  spread = max(abs(a["l1"] - b["l1"]) / a["l1"] for a, b in pairs)
  slopes = [g["loglog_slope"] for g in res["gap_vs_lr"].values()]
  alphas, l1 = np.asarray(res["l1_vs_alpha"]["alpha"]), np.asarray(res["l1_vs_alpha"]["l1"])
  low = int(l1.argmin())
  rises = low < len(l1) - 1 and l1[-1] > l1[low]
  ham = max((r for r, _ in pairs), key=lambda r: r["alpha"])
  mw = next(r for k, r in rows.items() if k.startswith("m*w"))
  speed = (mw["steps"] * mw["lr"]) / (ham["steps"] * ham["lr"])
  text = (
    f'The analysed variant `sign_from="x"` (GD;HYP) ends within {100 * spread:.1f}{GLUE}% of the same L1 norms. '
    f"The gap between discrete HAM and the Bregman projection is {_order(slopes)} in the learning rate (log-log "
    f"slopes {min(slopes):.2f}-{max(slopes):.2f}, `gap_vs_lr.png`). Honest caveats: the L1 bias needs `alpha * |x0|` "
    f"small — the limit's L1 norm falls from {rows['GD']['l1']:.2f} to a minimum of {l1[low]:.2f} near "
    f"alpha{GLUE}={GLUE}{_power(alphas[low])}"
    + (
      f" and **rises again** beyond ({l1[-1]:.2f} at {_power(alphas[-1])}), when `<grad R(x0), x>` starts rewarding "
      "the initial signs"
      if rises
      else ""
    )
    + "; the approach to L1 is logarithmic, so HAM never reaches basis pursuit here. Stability ties lr to alpha, so "
    f"in *steps* HAM at alpha{GLUE}={GLUE}{ham['alpha']:g} takes {ham['steps'] / 1000:.0f}k against m * w's "
    f"{mw['steps'] / 1000:.0f}k, though it is ~{speed:.0f}x faster in continuous time (steps x lr)."
  )
  return paragraph(text)


def _recovery_label(key: str) -> str:
  if key.startswith("HAM"):
    return f"HAM alpha={float(key.split('a=')[1].split()[0]):g}"
  return {"GD": "GD", "basis pursuit (LP)": "basis pursuit"}.get(key, "m * w")


@table("implicit_bias_recovery")
def implicit_bias_recovery(results: Path) -> str:
  """How many random sparse truths each method recovers, at the study's d and the next larger one."""
  res = _load(results, "implicit_bias", "results.json")
  rec, d0 = res["recovery"], res["config"]["d"]
  i = rec["d"].index(d0)
  counts = {key: [round(f * rec["trials"]) for f in fractions] for key, fractions in rec["fraction"].items()}
  first = ", ".join(f"{_recovery_label(k)} {c[i]}/{rec['trials']}" for k, c in counts.items())
  second = ", ".join(str(c[i + 1]) for c in counts.values())
  return paragraph(
    f"Recovery of random {res['config']['k']}-sparse truths (`recovery.png`, {rec['trials']} problems per d, "
    f"relative error at most {rec['tol']:g}): at d = {d0}, {first}; at d = {rec['d'][i + 1]}: {second}."
  )


# ------------------------------------------------------------------------------------------------------------
# Steepest mirror flows (docs/guides/mirror_flows_and_graphons.md): `benchmarks/mirror_flows.py`
# ------------------------------------------------------------------------------------------------------------

ESCAPE_LRS = (1e-4, 4.6e-4, 2.2e-3, 1e-2, 2.2e-2, 1e-1, 2.2e-1, 4.6e-1)  # the columns shown (the grid has 13)
ESCAPE_SHOWN = ("GD", "sign", "Adam", "HAM")  # AdamW's rows are compared with Adam's in the text


def _short(x: float) -> str:
  """``1e-4``, ``4.6e-4``: a grid value with two significant digits."""
  return _sci(x).replace(".0e", "e")


def _three(x: float) -> str:
  """Three significant digits, in scientific notation below 0.01; 0 as ``0``."""
  return "0" if x == 0 else (f"{x:#.3g}" if abs(x) >= 0.01 else _sci(x))


@table("mirror_flows_escape")
def mirror_flows_escape(results: Path) -> str:
  """Median escape step over the seeds per optimizer, depth and learning rate (a subset of the grid)."""
  res = _load(results, "mirror_flows", "results.json")
  lrs = res["settings"]["lrs"]
  columns = [min(range(len(lrs)), key=lambda i, lr=lr: abs(np.log(lrs[i] / lr))) for lr in ESCAPE_LRS]
  fmt = _script("mirror_flows")._fmt_escape
  rows = []
  for key, seeds in res["escape"].items():
    name, depth = key.split("/L")
    if name in ESCAPE_SHOWN:
      cells = fmt(seeds)
      rows.append([name, depth, *(cells[i] for i in columns)])
  header = ["optimizer", "L", *(("lr " if i == 0 else "") + _short(lrs[c]) for i, c in enumerate(columns))]
  return markdown_table(header, rows)


@table("mirror_flows_decay")
def mirror_flows_decay(results: Path) -> str:
  """Adam + L2 against AdamW at matched decay: means over the seeds."""
  res = _load(results, "mirror_flows", "results.json")
  rows = []
  for row in res["decay"]:
    mean = {
      k: float(np.mean([s[k] for s in row["seeds"]])) for k in row["seeds"][0] if not k.endswith("curve")
    }
    rows.append(
      [
        row["method"].replace("+", " + "),
        _short(row["wd"]),
        _sci(mean["final_loss"]),
        _sci(mean["late_loss_std"]),
        f"{mean['rel_error']:.3f}",
        "0" if mean["balance_final"] == 0 else _sci(mean["balance_final"]),
        _three(mean["off_support_final"]),
        f"{mean['n_support_1e-2']:.1f}",
      ]
    )
  header = [
    "method",
    "wd",
    "final loss",
    "std of late loss",
    "relative error `‖x - x*‖/‖x*‖`",
    "balance",
    "off-support mass",
    "entries with `abs(x_i) > 1e-2`",
  ]
  return markdown_table(header, rows)


@table("graphon")
def graphon(results: Path) -> str:
  """Graphon distance of the pruning masks between successive widths, and trainability at the NTK width."""
  res = _load(results, "graphon", "results.json")
  widths, n = res["settings"]["widths"], res["settings"]["ntk_width"]
  pairs = [f"{a}->{b}" for a, b in zip(widths, widths[1:], strict=False)]
  rows = [
    [
      _method_label(r["method"], {"acdc": "AC/DC", "rigl": "RigL"}),
      *(f"{r['distances'][pair]:.3f}" for pair in pairs),
      f"{r['ntk_min_eig']:.2f}",
      f"{r['final_loss']:.4f}",
    ]
    for r in res["rows"]
  ]
  header = [
    "method",
    *(f"distance {pair.replace('->', ' -> ')}" for pair in pairs),
    f"NTK smallest eigenvalue (n = {n})",
    f"training loss after {res['settings']['steps']} steps (n = {n})",
  ]
  return markdown_table(header, rows)


# ------------------------------------------------------------------------------------------------------------
# The m * w family (docs/guides/mw_family.md)
# ------------------------------------------------------------------------------------------------------------


@table("mw_family_implicit_bias")
def mw_family_implicit_bias(results: Path) -> str:
  """The L1 norm of each method's limit relative to basis pursuit, over the family study's seeds."""
  rows = _load(results, "implicit_bias_family", "family_summary.json")["rows"]

  def l1(key: str) -> str:
    return f"{rows[key]['l1_over_bp_mean']:.3f}{GLUE}±{GLUE}{rows[key]['l1_over_bp_std']:.3f}"

  def find(prefix: str) -> str:
    return next(k for k in rows if k.startswith(prefix))

  wrapper, reference = find("m*w wrapper"), find("m*w g=")
  same = np.allclose(rows[wrapper]["l1_over_bp"], rows[reference]["l1_over_bp"], rtol=1e-9, atol=0)
  spred = find("spred")
  mw = (
    f"m * w (wrapper, identical to the hand-written reference) {l1(wrapper)}"
    if same
    else f"m * w (wrapper) {l1(wrapper)}, m * w (hand-written reference) {l1(reference)}"
  )
  parts = [
    f"GD {l1('GD')}",
    *(f"HAM alpha={float(k.split('a=')[1].split()[0]):g} {l1(k)}" for k in rows if k.startswith("HAM")),
    mw,
    f"spred {l1(spred)} (gap to the float64 LASSO solution {_sci(float(np.mean(rows[spred]['rel_gap_to_limit'])))})",
    f"PILoT {l1(find('PILoT l='))} (decay on, then off; with the linear decay of its arXiv text "
    f"{l1(find('PILoT linear'))})",
    f"Sign-In {l1(find('Sign-In'))}",
  ]
  return paragraph(", ".join(parts) + ".")


@table("mw_family_memory")
def mw_family_memory(results: Path) -> str:
  """Optimizer state on ResNet-18 shapes: inner, ham(inner), spred(inner), NanoAdam."""
  res = _load(results, "overparam_memory", "memory.json")
  b, mib = res["bytes"], 2**20
  parts = []
  for key, label in (("sgd momentum", "SGD+momentum"), ("adam", "Adam")):
    extra = b[key]["ham"] - b[key]["inner"]
    parts.append(
      f"{label} state {b[key]['inner'] / mib:.1f} MiB, `ham` {b[key]['ham'] / mib:.1f} MiB (+{extra} bytes), "
      f"`spred` {b[key]['spred'] / mib:.1f} MiB ({b[key]['spred'] / b[key]['inner']:.1f}x)"
    )
  nano = b["nanoadam fraction=0.1"]
  return paragraph(
    "; ".join(parts) + f"; NanoAdam (10 %, head and norms dense) {nano / mib:.1f} MiB "
    f"({b['adam']['inner'] / nano:.1f}x less than Adam)."
  )


@table("mw_family_nanoadam")
def mw_family_nanoadam(results: Path) -> str:
  """NanoAdam against Adam on the fine-tuning task: both tasks, paired tests, optimizer state."""
  res = _load(results, "nanoadam_finetune", "results.json")
  s, tests = res["summary"], res["paired_t_test_vs_adam"]

  def acc(method: str, task: str) -> str:
    return f"{100 * s[method][task]['mean']:.1f}{GLUE}±{GLUE}{100 * s[method][task]['std']:.1f}{GLUE}%"

  def verdict(method: str, task: str) -> str:
    p = tests[method][task]
    if p >= SIGNIFICANCE:
      return fmt_p(p)
    winner = method if s[method][task]["mean"] > s["Adam"][task]["mean"] else "Adam"
    return f"{fmt_p(p)}: {winner} wins"

  other = next(m for m in s if m not in ("Adam", "NanoAdam"))
  ratio = s["Adam"]["state_bytes"] / s["NanoAdam"]["state_bytes"]
  return paragraph(
    f"NanoAdam with its paper defaults (head dense, 10 % -> 4 %) new task {acc('NanoAdam', 'new_test')} vs Adam "
    f"{acc('Adam', 'new_test')} ({verdict('NanoAdam', 'new_test')}), old task {acc('NanoAdam', 'old_test')} vs "
    f"{acc('Adam', 'old_test')} ({verdict('NanoAdam', 'old_test')}), {ratio:.1f}x less optimizer state; with every "
    f"kernel sparsified at a constant 10 % {acc(other, 'new_test')} / {acc(other, 'old_test')}."
  )


# ------------------------------------------------------------------------------------------------------------
# The README's summaries of the guides' studies
# ------------------------------------------------------------------------------------------------------------


@table("readme_implicit_bias")
def readme_implicit_bias(results: Path) -> str:
  res = _load(results, "implicit_bias", "results.json")
  rows = res["table"]["rows"]
  ham = max((r for r in rows.values() if r["sign_from"] == "x_half"), key=lambda r: r["alpha"])
  slopes = [g["loglog_slope"] for g in res["gap_vs_lr"].values()]
  return paragraph(
    f"The L1 norm of HAM's limit falls from {rows['GD']['l1']:.2f} (gradient descent) to {ham['l1']:.2f} at "
    f"alpha{GLUE}={GLUE}{ham['alpha']:g}, towards basis pursuit's {res['table']['l1_basis_pursuit']:.2f}, and "
    f"its gap to the predicted Bregman projection is {_order(slopes)} in the learning rate (log-log slopes "
    f"{min(slopes):.2f}-{max(slopes):.2f})."
  )


def _mean_std(values: Sequence[float], scale: float = 1.0, digits: int = 1) -> tuple[float, str]:
  x = scale * np.asarray(values, float)
  x = x[np.isfinite(x)]
  return float(x.mean()), f"{x.mean():.{digits}f}{GLUE}±{GLUE}{x.std(ddof=1):.{digits}f}"


@table("readme_transformers")
def readme_transformers(results: Path) -> str:
  res = _load(results, "transformers", "results.json")
  base, ham = res["grokking"]["adamw"], res["grokking"]["ham_adamw"]
  grok_p = paired_test(np.asarray(base["grok_step"], float), np.asarray(ham["grok_step"], float))["p_value"]
  (g_ham, g_ham_text), (g_base, g_base_text) = (
    _mean_std(ham["grok_step"], digits=0),
    _mean_std(base["grok_step"], digits=0),
  )
  when = "earlier" if g_ham < g_base else "later"
  sig = "significant" if grok_p < SIGNIFICANCE else "not significant"
  weights = []
  if np.mean(ham["near_zero"]) > np.mean(base["near_zero"]):
    weights.append("sparser")
  if np.mean(ham["fourier_top4"]) > np.mean(base["fourier_top4"]):
    weights.append("more Fourier-concentrated")
  (a_ham, acc_ham), (a_base, acc_base) = (
    _mean_std(ham["final_test_acc"], 100),
    _mean_std(base["final_test_acc"], 100),
  )
  accuracy = "lower" if a_ham < a_base else "higher"
  if np.std(ham["final_test_acc"]) > np.std(base["final_test_acc"]):
    accuracy += ", noisier"
  ft_base, ft_ham = res["finetune"]["adamw"], res["finetune"]["ham_adamw"]
  old = paired_test(ft_base["old_test_acc"], ft_ham["old_test_acc"])
  forgetting = (
    "reduces forgetting"
    if old["mean_diff"] > 0 and old["p_value"] < SIGNIFICANCE
    else "does not reduce forgetting"
  )
  return paragraph(
    f"HAM(AdamW) groks {when} on average, at {g_ham_text} steps vs AdamW's {g_base_text} ({fmt_p(grok_p)}, {sig})"
    + (f" with a {' and '.join(weights)} embedding" if weights else "")
    + f", and ends at {accuracy} test accuracy ({acc_ham} % vs {acc_base} %); HAM {forgetting} when fine-tuning "
    "addition -> subtraction."
  )


@table("readme_graphs")
def readme_graphs(results: Path) -> str:
  cells = _load(results, "graphs", "results.json")["cells"]
  labels = {"gcn": "GCN", "sage": "GraphSAGE", "sgd": "SGD", "adamw": "AdamW"}

  def gains(key: str) -> list[dict[str, Any]]:
    return [
      c
      for c in cells
      if c[key]["vs_alpha0"]["mean_diff"] > 0 and c[key]["vs_alpha0"]["p_value"] < SIGNIFICANCE
    ]

  negative, positive = gains("ham_neg"), gains("ham_pos")
  parts = []
  for sign, found in (("negative", negative), ("positive", positive)):
    if not found:
      parts.append(f"no {sign} alpha beats alpha{GLUE}={GLUE}0 significantly")
      continue
    cases = ", ".join(
      f"{100 * c[f'ham_{sign[:3]}']['vs_alpha0']['mean_diff']:+.1f} points, {labels[c['model']]} + {labels[c['inner']]}, "
      f"h{GLUE}={GLUE}{c['h']:g}"
      for c in found
    )
    matched = all(
      c["ham"]["vs_baseline"]["p_value"] >= SIGNIFICANCE or c["ham"]["vs_baseline"]["mean_diff"] <= 0
      for c in found
    )
    count = "the one significant gain" if len(found) == 1 else f"the {len(found)} significant gains"
    parts.append(
      f"{count} of a {sign} alpha ({cases}) "
      + ("matches what tuning the weight decay gives" if matched else "beats the tuned baseline too")
    )
  found, comparisons = len(negative) + len(positive), 2 * len(cells)
  count = (
    f"a significant gain over alpha{GLUE}={GLUE}0 in {found} of the {comparisons} sign-restricted comparisons"
  )
  lead = (
    f"Neither sign helps reliably ({count})" if 10 * found <= comparisons else count[0].upper() + count[1:]
  )
  return paragraph(lead + "; " + "; ".join(parts) + ".")


@table("alpha_diagnostics")
def alpha_diagnostics(results: Path) -> str:
  """The alpha guide's reading of the diagnostics, from the alpha-transfer runs (`alpha_diagnostics.py`)."""
  return _script("alpha_diagnostics").reading_tables(results / "alpha_transfer")


# ------------------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--check", action="store_true", help="only list the blocks that differ (exit status 1)")
  parser.add_argument(
    "--results", type=Path, default=RESULTS, help="the results directory (default: %(default)s)"
  )
  args = parser.parse_args(argv)
  stale = []
  for page in pages():
    text = page.read_text()
    fresh = render(text, args.results)
    if fresh != text:
      pairs = zip(BLOCK.finditer(text), BLOCK.finditer(fresh), strict=True)
      stale += [
        f"{page.relative_to(REPO)}: {old['name']}" for old, new in pairs if old["body"] != new["body"]
      ]
      if not args.check:
        page.write_text(fresh)
  verb = "differ from their results" if args.check else "rewritten"
  print(f"{len(stale)} page(s) with blocks {verb}" + "".join(f"\n  {s}" for s in stale))
  return 1 if args.check and stale else 0


if __name__ == "__main__":
  raise SystemExit(main())
