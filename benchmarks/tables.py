"""The result tables of the README and the guides, generated from the committed results under `benchmarks/results/`.

Each published table sits in a marked block of a Markdown page (``<!-- table:main_job -->`` ... ``<!-- /table:main_job
-->``) and is written here from the JSON a benchmark saved, together with the lines that compare its rows ("HAM −
baseline", paired over seeds) and the sentence that summarises them, so that no number or claim about a result is
typed by hand. Nothing outside the markers is touched.

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
GLUE = "\x00"  # a space that a line break must not replace ("p = 0.47", "+0.66 ± 1.86")
WORDS = dict(enumerate("zero one two three four five six seven eight nine ten".split()))
NAMES = {"mlp": "MLP", "resnet1d": "ResNet1D", "cnn1d": "CNN1D", "resnet18": "ResNet18", "gcn": "GCN"}
NAMES |= {"sage": "GraphSAGE", "sgd": "SGD", "adamw": "AdamW"}
SPARSIFIERS = {"dense": "dense", "random": "random PaI", "magnitude": "gradual magnitude", "acdc": "AC/DC"}
SPARSIFIERS |= {"rigl": "RigL"}
COLLAPSE_POINTS = 10.0  # a finished seed this far below the baseline's worst seed is reported as collapsed
ESCAPE_LRS = (1e-4, 4.6e-4, 2.2e-3, 1e-2, 2.2e-2, 1e-1, 2.2e-1, 4.6e-1)  # the columns shown (the grid has 13)
ESCAPE_SHOWN = ("GD", "sign", "Adam", "HAM")  # AdamW's rows are compared with Adam's in the text
TABLES: dict[str, Callable[[Path], str]] = {}


def table(fn: Callable[[Path], str]) -> Callable[[Path], str]:
  """Registers ``fn(results_dir) -> markdown`` as the generator of the blocks named like the function."""
  TABLES[fn.__name__] = fn
  return fn


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


def layout(markdown: str, width: int) -> str:
  """Tables as they are; lists one item per line; every paragraph wrapped at ``width``, never at a `GLUE`."""
  wrap = dict(width=width, break_on_hyphens=False, break_long_words=False)

  def fill(part: str) -> str:
    if part.startswith("|"):
      return part
    if part.startswith("- "):
      items = [" ".join(item.split()) for item in part[2:].split("\n- ")]
      return "\n".join(textwrap.fill(i, initial_indent="- ", subsequent_indent="  ", **wrap) for i in items)
    return textwrap.fill(" ".join(part.split()), **wrap)

  return "\n\n".join(fill(part) for part in markdown.strip("\n").split("\n\n")).replace(GLUE, " ")


# --- Formatting ------------------------------------------------------------------------------------------------


def glued(text: str) -> str:
  return text.replace(" ", GLUE)


def fmt_p(p: float) -> str:
  if not np.isfinite(p):
    return f"p{GLUE}undefined"
  return glued(f"p = {p:.2f}" if p >= 0.01 else ("p < 0.001" if p < 0.001 else f"p = {p:.3f}"))


def fmt_diff(mean: float, std: float | None = None) -> str:
  """Points with an explicit sign (U+2212 for minus, as in the pages' prose), and `± std` if given."""
  text = f"{mean:+.2f}".replace("-", "\u2212")
  return text if std is None else f"{text}{GLUE}±{GLUE}{std:.2f}"


def pm(mean: float, std: float, digits: int) -> str:
  return f"{mean:.{digits}f}{GLUE}±{GLUE}{std:.{digits}f}"


def _mean_std(values: Sequence[float], scale: float = 1.0, digits: int = 1) -> tuple[float, str]:
  """The mean of the finite values and ``"mean ± std"``."""
  x = scale * np.asarray(values, float)
  x = x[np.isfinite(x)]
  return float(x.mean()), pm(x.mean(), x.std(ddof=1), digits)


def _pct(mean: float | None, std: float | None) -> str:
  return "diverged" if mean is None else f"{100 * mean:.2f} ± {100 * std:.2f}"


def _sci(x: float) -> str:
  """``7.7e-2``: two significant digits, the exponent without padding."""
  mantissa, exponent = f"{x:.1e}".split("e")
  return f"{mantissa}e{int(exponent)}"


def _alpha_of(key: str) -> str:
  """``"HAM a=10 (HYP*)"`` -> ``"HAM alpha=10"``."""
  return f"HAM alpha={float(key.split('a=')[1].split()[0]):g}"


def _code(text: str) -> str:
  """A code span that a line break never splits."""
  return f"`{glued(text)}`"


def _load(results: Path, study: str, file: str = "results.json") -> Any:
  return json.loads((results / study / file).read_text())


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
  text = _script("transformers").tables(_load(results, study))
  return [part for part in text.split("\n\n") if part.startswith("|")]


# Blocks that a benchmark script formats itself.
TABLES.update(
  transformers_finetune=lambda results: _tables_of(results, "transformers")[1],
  transformers_finetune_wd=lambda results: _tables_of(results, "transformers_finetune_wd")[1],
  graphs=lambda results: _script("graphs").table(_load(results, "graphs")["cells"]),
  alpha_diagnostics=lambda results: _script("alpha_diagnostics").reading_tables(results / "alpha_transfer"),
)


# --- Paired comparisons and verdicts ---------------------------------------------------------------------------


def paired(base: Sequence[float | None], other: Sequence[float | None]) -> dict[str, Any]:
  """``other − base`` in points over the pairs where both finished (the shared paired t-test of `_common`)."""
  a, b = (np.array([np.nan if v is None else v for v in x], np.float64) * 100 for x in (base, other))
  ok = np.isfinite(a) & np.isfinite(b)
  d = b[ok] - a[ok]
  return {**paired_test(a, b), "std_diff": float(d.std(ddof=1)) if d.size > 1 else float("nan")}


def verdict(comparisons: Sequence[tuple[str, dict[str, Any]]], who: str = "HAM") -> str:
  """The sentence that summarises paired comparisons: how many rows ``who`` is ahead in, which are significant."""
  n, word = len(comparisons), WORDS.get(len(comparisons), len(comparisons))
  ahead = [label for label, c in comparisons if c["mean_diff"] > 0]
  significant = [label for label, c in comparisons if c["p_value"] < SIGNIFICANCE]
  rows = f"all {word} rows" if n > 2 else ("both rows" if n == 2 else "the one row")
  if len(ahead) == n:
    lead = f"{who} is ahead in {rows}"
  elif not ahead:
    lead = f"{who} is ahead in none of the {word} rows"
  else:
    lead = f"{who} is ahead in {len(ahead)} of {n} rows ({', '.join(ahead)})"
  if not significant:
    joint = "but" if ahead else "and"
    return f"{lead} {joint} no difference is significant at these seed counts (p{GLUE}>={GLUE}{SIGNIFICANCE})"
  return f"{lead}; significant (p{GLUE}<{GLUE}{SIGNIFICANCE}): {', '.join(significant)}"


# --- The main job (README): `ham-optax train` with its defaults ------------------------------------------------


@table
def main_job(results: Path) -> str:
  """The main job's table, then HAM − baseline paired over seeds per model and sparsifier, and the verdict."""
  data = _load(results, "main_job")
  by_seed: dict[tuple[str, str], dict[int, float | None]] = defaultdict(dict)
  for run in data["runs"]:
    by_seed[run["config"]["model"], run["method"]][run["config"]["seed"]] = run["test_acc"]
  comparisons = []
  for (model, method), ham in by_seed.items():
    base = by_seed.get((model, method.removesuffix("+HAM")))
    if method.endswith("+HAM") and base is not None:
      seeds = sorted(set(base) & set(ham))
      label = f"{NAMES.get(model, model)} {method.removesuffix('+HAM')}"
      comparisons.append((label, paired([base[s] for s in seeds], [ham[s] for s in seeds])))
  diffs = ", ".join(
    f"{label} {fmt_diff(c['mean_diff'], c['std_diff'])} ({fmt_p(c['p_value'])})" for label, c in comparisons
  )
  diverged = sum(bool(run["diverged"]) for run in data["runs"])
  runs = "no seed diverged" if not diverged else f"{diverged} of {len(data['runs'])} runs diverged"
  return job_table(data["summary"]) + (
    "\n\nHAM − baseline, test accuracy paired over seeds (points, mean ± std, paired t-test): "
    f"{diffs}. {verdict(comparisons)}; {runs}."
  )


# --- Sparse training (docs/guides/sparse_training.md): `benchmarks/sparse_training.py` -------------------------


def _label(method: str, labels: dict[str, str] = SPARSIFIERS) -> str:
  base, _, variant = method.partition("+")
  return labels.get(base, base) + (f" + {variant}" if variant else "")


@table
def sparse_training(results: Path) -> str:
  """The tuned comparison's table: every sparsifier with and without HAM (both protocols) and Sign-In."""
  rows = [
    [
      _label(s["method"]),
      f"{s['lr']:g}",
      "-"
      if s["alpha"] is None
      else (f"{s['alpha']:.2f}" if s["method"].endswith("tuned") else f"{s['alpha']:g}"),
      "-" if s["beta"] is None else f"{s['beta']:g}",
      _pct(s["test_acc_mean"], s["test_acc_std"]),
      _pct(s["val_acc_mean"], s["val_acc_std"]),
      f"{s['sparsity']:.3f}",
      f"{100 * s['sign_flips']:.2f} %",
      s["diverged"] if s["diverged"].startswith("0/") else f"**{s['diverged']}**",
    ]
    for s in _load(results, "sparse_training")["summary"]
  ]
  header = ["method", "lr", "alpha", "beta", "test acc (%)", "val acc (%)", "sparsity", "sign flips vs init"]
  return markdown_table([*header, "diverged"], rows)


def _welch_text(base: Sequence[dict[str, Any]], other: Sequence[dict[str, Any]]) -> tuple[str, float, float]:
  """``"+0.84 (p = 0.24)"`` (Welch t-test over the finished seeds) with a note on diverged or collapsed seeds;
  also the difference and p."""
  a, b = ([100 * r["test_acc"] for r in runs if r["test_acc"] is not None] for runs in (base, other))
  diff, p = float(np.mean(b) - np.mean(a)), welch_p(b, a)
  diverged = sum(bool(r["diverged"]) for r in other)
  notes = [f"{WORDS.get(diverged, diverged)} seed{'s' * (diverged > 1)} diverged"] if diverged else []
  notes += [f"one seed collapsed to {x:.0f} %" for x in b if x < min(a) - COLLAPSE_POINTS]
  return f"{fmt_diff(diff)} ({fmt_p(p)}{''.join(f';{GLUE}{glued(n)}' for n in notes)})", diff, p


def _sparse(results: Path) -> tuple[dict[str, Any], dict[str, list], dict[tuple[str, str], tuple], list[str]]:
  """The results, the runs by method, ``(sparsifier, variant) -> (text, difference, p)`` for every HAM variant,
  and the variants significantly better than their baseline."""
  data = _load(results, "sparse_training")
  runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
  for run in data["runs"]:
    runs[run["method"]].append(run)
  comparisons = {
    (sparsifier, variant): _welch_text(runs[sparsifier], runs[sparsifier + variant])
    for sparsifier in [s["method"] for s in data["summary"] if "+" not in s["method"]]
    for variant in ("+HAM", "+HAM tuned")
    if sparsifier + variant in runs
  }
  significant = [_label(s + v) for (s, v), (_, d, p) in comparisons.items() if d > 0 and p < SIGNIFICANCE]
  return data, runs, comparisons, significant


def _unstable(comparisons: dict[tuple[str, str], tuple], tuned: bool) -> list[str]:
  """The sparsifiers whose HAM variant (grid-tuned or `suggest_alpha`) diverged or collapsed on some seed."""
  return [
    s for (s, v), (text, _, _) in comparisons.items() if v.endswith("tuned") == tuned and "seed" in text
  ]


@table
def sparse_training_comparison(results: Path) -> str:
  """HAM − baseline per sparsifier (both HAM protocols), Sign-In − baseline, and the verdict."""
  data, runs, comparisons, significant = _sparse(results)
  by_sparsifier: dict[str, list[str]] = defaultdict(list)
  for (sparsifier, _), (text, _, _) in comparisons.items():
    by_sparsifier[sparsifier].append(text)
  parts = "; ".join(f"{SPARSIFIERS.get(s, s)} {' / '.join(texts)}" for s, texts in by_sparsifier.items())
  text = (
    f"HAM − baseline on test (points, two-sided Welch t-test over the {len(runs['dense'])} seeds), HAM at the "
    f"baseline's lr / HAM tuned: {parts}."
  )
  if "random+Sign-In" in runs:
    text += f" Sign-In − baseline on random PaI: {_welch_text(runs['random'], runs['random+Sign-In'])[0]}."
  text += (
    " **At this scale HAM does not improve sparse training significantly for any sparsifier.** "
    if not significant
    else f" **HAM improves significantly (p{GLUE}<{GLUE}{SIGNIFICANCE}): {', '.join(significant)}.** "
  )
  tuned_worst = [d for (_, v), (_, d, _) in comparisons.items() if v.endswith("tuned")]
  tuned_diverged = sum(bool(r["diverged"]) for m, rs in runs.items() if m.endswith("HAM tuned") for r in rs)
  if tuned_worst:
    text += (
      f'"HAM tuned" (alpha from `suggest_alpha`, same budget as the baseline) '
      f"{'never diverged' if not tuned_diverged else f'diverged on {tuned_diverged} seeds'} and was at worst "
      f"{fmt_diff(min(tuned_worst))} points from the baseline."
    )
  if unstable := _unstable(comparisons, tuned=False):
    alphas = "/".join(f"{a:g}" for a in sorted({runs[s + "+HAM"][0]["config"]["alpha"] for s in unstable}))
    seeds = len(data["tuning_seeds"])
    text += (
      f' The grid-tuned "HAM at the baseline\'s lr" picked alpha{GLUE}={GLUE}{alphas} for '
      f"{' and '.join(SPARSIFIERS.get(s, s) for s in unstable)}, where it diverged or collapsed on one test "
      f"seed although it won on the {WORDS.get(seeds, seeds)} validation seeds."
    )
  return text


@table
def readme_sparse_training(results: Path) -> str:
  """The README's summary of the sparse-training benchmark."""
  _, _, comparisons, significant = _sparse(results)
  lead = (
    "HAM does not improve any sparsifier significantly"
    if not significant
    else f"HAM improves {', '.join(significant)} significantly (p{GLUE}<{GLUE}{SIGNIFICANCE})"
  )
  pair = lambda s: " / ".join(fmt_diff(comparisons[s, v][1]) for v in ("+HAM", "+HAM tuned"))  # noqa: E731
  p_min = np.floor(100 * min(p for _, _, p in comparisons.values())) / 100
  unstable = [SPARSIFIERS.get(s, s) for s in _unstable(comparisons, tuned=False)]
  stability = (
    f"the grid-tuned alpha diverged or collapsed on one seed each of {' and '.join(unstable)}"
    if unstable
    else "the grid-tuned alpha never diverged or collapsed"
  ) + (
    ", and so did the `suggest_alpha` rows"
    if _unstable(comparisons, tuned=True)
    else ", the `suggest_alpha` rows never did"
  )
  return (
    f"{lead} (RigL + HAM {pair('rigl')} points with alpha grid-tuned at RigL's lr / alpha from `suggest_alpha` "
    f"at HAM's own lr, random pruning {pair('random')}, all p{GLUE}>={GLUE}{p_min:.2f}); {stability}."
  )


# --- Transformers (docs/guides/transformers.md): `benchmarks/transformers.py` formats its own tables ----------


@table
def transformers_grokking(results: Path) -> str:
  """The grokking table and the paired tests of the grokking step against AdamW."""
  res, labels = _load(results, "transformers")["grokking"], _script("transformers").LABELS
  base = np.asarray(res["adamw"]["grok_step"], float)
  tests = [
    (labels[m], paired_test(base, np.asarray(r["grok_step"], float))["p_value"])
    for m, r in res.items()
    if m != "adamw"
  ]
  tests = "; ".join(f"{label} p{GLUE}={GLUE}{p:.3f}" for label, p in tests if np.isfinite(p))
  return (
    f"{_tables_of(results, 'transformers')[0]}\n\n"
    f"Grokking step, paired t-tests against AdamW (seeds that grokked under both): {tests}."
  )


def _grokking(results: Path) -> tuple[dict[str, Any], dict[str, Any], Callable[[str], dict[str, Any]]]:
  """AdamW's and HAM(AdamW)'s grokking runs, and ``test(key)``: the paired test of HAM − AdamW on ``key``."""
  res = _load(results, "transformers")["grokking"]
  base, ham = res["adamw"], res["ham_adamw"]
  return base, ham, lambda key: paired_test(np.asarray(base[key], float), np.asarray(ham[key], float))


@table
def transformers_findings(results: Path) -> str:
  """HAM(AdamW) against AdamW in the grokking study: grokking time, final accuracy, and the weights."""
  base, ham, test = _grokking(results)
  grok, acc, fourier, near = (test(k) for k in ("grok_step", "final_test_acc", "fourier_top4", "near_zero"))
  g_ham, g_base = (np.nanmean(np.asarray(r["grok_step"], float)) for r in (ham, base))
  when = ("earlier" if g_ham < g_base else "later") + " on average"
  sig = "" if grok["p_value"] < SIGNIFICANCE else " but not significantly"
  level = "lower" if np.mean(ham["final_test_acc"]) < np.mean(base["final_test_acc"]) else "higher"
  noise = " and noisier" if np.std(ham["final_test_acc"]) > np.std(base["final_test_acc"]) else ""
  peak = np.asarray(ham["curves"]["val_acc"], float).max(axis=-1)
  dips = np.any(np.asarray(ham["final_val_acc"], float) < peak - 1e-9)
  dead = [s for s, v in zip(ham["grid"], ham["tuning"]["final_val_acc"], strict=True) if np.max(v) < 0.05]
  dead_alphas = ", ".join(f"{a:g}" for a in sorted({s["alpha"] for s in dead}))
  first = (
    f"**HAM(AdamW) groks {when} ({g_ham:.0f} vs {g_base:.0f} steps){sig}** (paired {fmt_p(grok['p_value'])} over "
    f"{len(base['final_test_acc'])} seeds), and **its final accuracy is {level}{noise}** (test "
    f"{_mean_std(ham['final_test_acc'], 100)[1]} % vs {_mean_std(base['final_test_acc'], 100)[1]} %, "
    f"{fmt_p(acc['p_value'])})"
    + (
      ": after grokking, its validation accuracy keeps dipping (see the curves) where AdamW's settles"
      if noise
      else ""
    )
    + f". Every HAM(AdamW) run reached {100 * peak.min():.0f} % validation accuracy at some step"
    + ("; the final number catches some of them in a dip." if dips else ".")
    + (
      f" With alpha{GLUE}={GLUE}{dead_alphas} (either beta) HAM(AdamW) did not learn at all on the tuning seed."
      if dead
      else ""
    )
  )
  (f_ham, f_base), (z_ham, z_base) = (
    [_mean_std(r[key], scale, digits)[1] for r in (ham, base)]
    for key, scale, digits in (("fourier_top4", 1, 2), ("near_zero", 100, 1))
  )
  second = (
    f"**The implicit bias is visible in the weights**: HAM(AdamW)'s number embedding is "
    f"{'more' if fourier['mean_diff'] > 0 else 'less'} concentrated in a few Fourier frequencies ({f_ham} vs "
    f"{f_base}) and it has {np.mean(ham['near_zero']) / np.mean(base['near_zero']):.1f}x as many near-zero weights "
    f"({z_ham} % vs {z_base} %; paired {fmt_p(fourier['p_value'])} and {fmt_p(near['p_value'])}, "
    "`scipy.stats.ttest_rel` over the seeds)"
  )
  if fourier["mean_diff"] > 0 and near["mean_diff"] > 0:
    second += ": the sparser, more structured solution HAM's geometry favours"
  return f"- {first}\n- {second}."


@table
def readme_transformers(results: Path) -> str:
  base, ham, test = _grokking(results)
  (g_ham, g_ham_text), (g_base, g_base_text) = (_mean_std(r["grok_step"], digits=0) for r in (ham, base))
  grok_p = test("grok_step")["p_value"]
  sig = "significant" if grok_p < SIGNIFICANCE else "not significant"
  weights = [
    word
    for key, word in (("near_zero", "sparser"), ("fourier_top4", "more Fourier-concentrated"))
    if np.mean(ham[key]) > np.mean(base[key])
  ]
  (a_ham, acc_ham), (a_base, acc_base) = (_mean_std(r["final_test_acc"], 100) for r in (ham, base))
  accuracy = ("lower" if a_ham < a_base else "higher") + (
    ", noisier" if np.std(ham["final_test_acc"]) > np.std(base["final_test_acc"]) else ""
  )
  ft = _load(results, "transformers")["finetune"]
  old = paired_test(ft["adamw"]["old_test_acc"], ft["ham_adamw"]["old_test_acc"])
  forgetting = "reduces" if old["mean_diff"] > 0 and old["p_value"] < SIGNIFICANCE else "does not reduce"
  return (
    f"HAM(AdamW) groks {'earlier' if g_ham < g_base else 'later'} on average, at {g_ham_text} steps vs AdamW's "
    f"{g_base_text} ({fmt_p(grok_p)}, {sig})"
    + (f" with a {' and '.join(weights)} embedding" if weights else "")
    + f", and ends at {accuracy} test accuracy ({acc_ham} % vs {acc_base} %); HAM {forgetting} forgetting when "
    "fine-tuning addition -> subtraction."
  )


# --- Graphs (docs/guides/graphs.md): `benchmarks/graphs.py` formats its own table -----------------------------


def _cell(c: dict[str, Any]) -> str:
  return f"{NAMES[c['model']]} + {NAMES[c['inner']]} at `h{GLUE}={GLUE}{c['h']:g}`"


def _gain(c: dict[str, Any], key: str, against: str) -> tuple[float, float]:
  return 100 * c[key][against]["mean_diff"], c[key][against]["p_value"]


def _significant(cells: Sequence[dict[str, Any]], key: str, against: str, sign: int) -> list[dict[str, Any]]:
  return [
    c for c in cells if sign * _gain(c, key, against)[0] > 0 and _gain(c, key, against)[1] < SIGNIFICANCE
  ]


def _times(k: int) -> str:
  return {0: "never", 1: "once", 2: "twice"}.get(k, f"{k} times")


@table
def graphs_answer(results: Path) -> str:
  """The answers to the study's two questions, and HAM tuned against the tuned baseline, from the cells."""
  cells = _load(results, "graphs")["cells"]
  n, tests, hs, alpha0 = len(cells), 2 * len(cells), sorted({c["h"] for c in cells}), _code("alpha = 0")

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
  second = (
    f"at {_code(f'h = {hs[-2]:g}')} and {_code(f'h = {hs[-1]:g}')} the best positive alpha is within "
    f"{fmt_diff(max(_gain(c, 'ham_pos', 'vs_alpha0')[0] for c in high))} points of {alpha0} and "
    + ("never significant." if not pos else f"significant at {'; '.join(map(_cell, pos))}.")
  )
  better = _significant(cells, "ham", "vs_baseline", +1)
  third = "HAM with alpha tuned over the whole grid " + (
    f"beats the tuned baseline significantly {_times(len(better))}"
    if better
    else "never beats the tuned baseline significantly"
  )
  for c in _significant(cells, "ham", "vs_baseline", -1):
    diff, p = _gain(c, "ham", "vs_baseline")
    third += (
      f"; it is significantly worse at {_cell(c)}, {fmt_diff(diff)} points ({fmt_p(p)}), where the baseline "
      f"tuned its weight decay to {c['wd_baseline']:g} and HAM kept {c['alpha0']['wd']:g}"
    )
  neg_worse = _significant(cells, "ham_neg", "vs_alpha0", -1)
  third += f". A negative alpha is significantly *worse* than {alpha0} " + (
    f"at {'; '.join(case(c, 'ham_neg', 'vs_alpha0') for c in neg_worse)}." if neg_worse else "nowhere."
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


@table
def readme_graphs(results: Path) -> str:
  cells = _load(results, "graphs")["cells"]
  found, parts = 0, []
  for sign in ("negative", "positive"):
    gains = _significant(cells, f"ham_{sign[:3]}", "vs_alpha0", +1)
    found += len(gains)
    if not gains:
      parts.append(f"no {sign} alpha beats alpha{GLUE}={GLUE}0 significantly")
      continue
    cases = ", ".join(
      f"{_gain(c, f'ham_{sign[:3]}', 'vs_alpha0')[0]:+.1f} points, {NAMES[c['model']]} + {NAMES[c['inner']]}, "
      f"h{GLUE}={GLUE}{c['h']:g}"
      for c in gains
    )
    matched = all(
      _gain(c, "ham", "vs_baseline")[1] >= SIGNIFICANCE or _gain(c, "ham", "vs_baseline")[0] <= 0
      for c in gains
    )
    count = "the one significant gain" if len(gains) == 1 else f"the {len(gains)} significant gains"
    parts.append(
      f"{count} of a {sign} alpha ({cases}) "
      + ("matches what tuning the weight decay gives" if matched else "beats the tuned baseline too")
    )
  count = f"a significant gain over alpha{GLUE}={GLUE}0 in {found} of the {2 * len(cells)} sign-restricted comparisons"
  lead = (
    f"Neither sign helps reliably ({count})" if 10 * found <= 2 * len(cells) else count[0].upper() + count[1:]
  )
  return lead + "; " + "; ".join(parts) + "."


# --- Implicit bias (docs/guides/implicit_bias.md): `benchmarks/implicit_bias.py` -----------------------------


def _short(x: float) -> str:
  """``1e-4``, ``4.6e-4``: a grid value with two significant digits."""
  return _sci(x).replace(".0e", "e")


def _order(slopes: Sequence[float]) -> str:
  """How the gap to the predicted limit shrinks with the learning rate, from the log-log slopes."""
  return "of first order" if all(0.8 <= s <= 1.25 for s in slopes) else "not of first order"


def _power(x: float) -> str:
  return f"1e{round(np.log10(x))}" if np.isclose(x, 10.0 ** round(np.log10(x))) else f"{x:.2g}"


@table
def implicit_bias(results: Path) -> str:
  """The limits of GD, HAM (the default ``sign_from``) and m * w against their predicted limits and the truth."""
  res = _load(results, "implicit_bias")["table"]
  limits = {"GD": "pseudo-inverse", "HAM": "Bregman projection", "m * w": "hyperbolic entropy"}
  rows, named = [], set()
  for label, r in res["rows"].items():
    if r["sign_from"] not in (None, "x_half"):
      continue  # the analysed variant: same limits, quoted in the text
    if r["alpha"] is not None:
      label = f"HAM alpha={r['alpha']:g}"
    elif label.startswith("m*w"):
      label = f"m * w, gamma = {_short(float(label.split('g=')[1]))}"
    kind = next(k for k in limits if label.startswith(k))
    gap = _sci(r["rel_gap_to_limit"]) + ("" if kind in named else f" ({limits[kind]})")
    named.add(kind)
    rows.append(
      [label, _sci(r["lr"]), f"{r['steps']:,}", f"{r['l1']:.3f}", gap, f"{r['rel_dist_to_truth']:.3f}"]
    )
  bp_is_truth = all(abs(r["rel_dist_to_bp"] - r["rel_dist_to_truth"]) < 1e-9 for r in res["rows"].values())
  rows.append(
    ["basis pursuit (LP)", "–", "–", f"{res['l1_basis_pursuit']:.3f}", "–", "0.000" if bp_is_truth else "–"]
  )
  header = ["method", "lr", "steps", "L1 of limit", "rel. gap to predicted limit", "rel. distance to truth"]
  return markdown_table(header, rows)


@table
def implicit_bias_findings(results: Path) -> str:
  """The analysed variant, the first-order gap, where the L1 bias stops, and the cost in steps."""
  res = _load(results, "implicit_bias")
  rows = res["table"]["rows"]
  pairs = [(r, rows[k.replace("(HYP*)", "(GD;HYP)")]) for k, r in rows.items() if k.endswith("(HYP*)")]
  spread = max(abs(a["l1"] - b["l1"]) / a["l1"] for a, b in pairs)
  slopes = [g["loglog_slope"] for g in res["gap_vs_lr"].values()]
  alphas, l1 = np.asarray(res["l1_vs_alpha"]["alpha"]), np.asarray(res["l1_vs_alpha"]["l1"])
  low = int(l1.argmin())
  ham = max((r for r, _ in pairs), key=lambda r: r["alpha"])
  mw = next(r for k, r in rows.items() if k.startswith("m*w"))
  rise = (
    f" and **rises again** beyond ({l1[-1]:.2f} at {_power(alphas[-1])}), when `<grad R(x0), x>` starts rewarding "
    "the initial signs"
  )
  return (
    f'The analysed variant `sign_from="x"` (GD;HYP) ends within {100 * spread:.1f}{GLUE}% of the same L1 norms. '
    f"The gap between discrete HAM and the Bregman projection is {_order(slopes)} in the learning rate (log-log "
    f"slopes {min(slopes):.2f}-{max(slopes):.2f}, `gap_vs_lr.png`). Honest caveats: the L1 bias needs `alpha * |x0|` "
    f"small — the limit's L1 norm falls from {rows['GD']['l1']:.2f} to a minimum of {l1[low]:.2f} near "
    f"alpha{GLUE}={GLUE}{_power(alphas[low])}"
    + (rise if low < len(l1) - 1 and l1[-1] > l1[low] else "")
    + "; the approach to L1 is logarithmic, so HAM never reaches basis pursuit here. Stability ties lr to alpha, so "
    f"in *steps* HAM at alpha{GLUE}={GLUE}{ham['alpha']:g} takes {ham['steps'] / 1000:.0f}k against m * w's "
    f"{mw['steps'] / 1000:.0f}k, though it is ~{(mw['steps'] * mw['lr']) / (ham['steps'] * ham['lr']):.0f}x faster "
    "in continuous time (steps x lr)."
  )


@table
def implicit_bias_recovery(results: Path) -> str:
  """How many random sparse truths each method recovers, at the study's d and the next larger one."""
  res = _load(results, "implicit_bias")
  rec, d0 = res["recovery"], res["config"]["d"]
  i = rec["d"].index(d0)
  counts = {key: [round(f * rec["trials"]) for f in fractions] for key, fractions in rec["fraction"].items()}
  names = {"GD": "GD", "basis pursuit (LP)": "basis pursuit"}
  first = ", ".join(
    f"{_alpha_of(k) if k.startswith('HAM') else names.get(k, 'm * w')} {c[i]}/{rec['trials']}"
    for k, c in counts.items()
  )
  second = ", ".join(str(c[i + 1]) for c in counts.values())
  return (
    f"Recovery of random {res['config']['k']}-sparse truths (`recovery.png`, {rec['trials']} problems per d, "
    f"relative error at most {rec['tol']:g}): at d = {d0}, {first}; at d = {rec['d'][i + 1]}: {second}."
  )


@table
def readme_implicit_bias(results: Path) -> str:
  res = _load(results, "implicit_bias")
  rows = res["table"]["rows"]
  ham = max((r for r in rows.values() if r["sign_from"] == "x_half"), key=lambda r: r["alpha"])
  slopes = [g["loglog_slope"] for g in res["gap_vs_lr"].values()]
  return (
    f"The L1 norm of HAM's limit falls from {rows['GD']['l1']:.2f} (gradient descent) to {ham['l1']:.2f} at "
    f"alpha{GLUE}={GLUE}{ham['alpha']:g}, towards basis pursuit's {res['table']['l1_basis_pursuit']:.2f}, and "
    f"its gap to the predicted Bregman projection is {_order(slopes)} in the learning rate (log-log slopes "
    f"{min(slopes):.2f}-{max(slopes):.2f})."
  )


# --- Steepest mirror flows and graphons (docs/guides/mirror_flows_and_graphons.md) ---------------------------


@table
def mirror_flows_escape(results: Path) -> str:
  """Median escape step over the seeds per optimizer, depth and learning rate (a subset of the grid)."""
  res = _load(results, "mirror_flows")
  lrs = res["settings"]["lrs"]
  columns = [min(range(len(lrs)), key=lambda i, lr=lr: abs(np.log(lrs[i] / lr))) for lr in ESCAPE_LRS]
  fmt = _script("mirror_flows")._fmt_escape
  rows = []
  for key, seeds in res["escape"].items():
    name, depth = key.split("/L")
    if name in ESCAPE_SHOWN:
      rows.append([name, depth, *(fmt(seeds)[i] for i in columns)])
  header = ["optimizer", "L", *(("lr " if i == 0 else "") + _short(lrs[c]) for i, c in enumerate(columns))]
  return markdown_table(header, rows)


@table
def mirror_flows_decay(results: Path) -> str:
  """Adam + L2 against AdamW at matched decay: means over the seeds."""
  rows = []
  for row in _load(results, "mirror_flows")["decay"]:
    mean = {
      k: float(np.mean([s[k] for s in row["seeds"]])) for k in row["seeds"][0] if not k.endswith("curve")
    }
    off = mean["off_support_final"]
    rows.append(
      [
        row["method"].replace("+", " + "),
        _short(row["wd"]),
        _sci(mean["final_loss"]),
        _sci(mean["late_loss_std"]),
        f"{mean['rel_error']:.3f}",
        "0" if mean["balance_final"] == 0 else _sci(mean["balance_final"]),
        "0" if off == 0 else (f"{off:#.3g}" if abs(off) >= 0.01 else _sci(off)),
        f"{mean['n_support_1e-2']:.1f}",
      ]
    )
  header = ["method", "wd", "final loss", "std of late loss", "relative error `‖x - x*‖/‖x*‖`", "balance"]
  return markdown_table([*header, "off-support mass", "entries with `abs(x_i) > 1e-2`"], rows)


@table
def graphon(results: Path) -> str:
  """Graphon distance of the pruning masks between successive widths, and trainability at the NTK width."""
  res = _load(results, "graphon")
  widths, n = res["settings"]["widths"], res["settings"]["ntk_width"]
  pairs = [f"{a}->{b}" for a, b in zip(widths, widths[1:], strict=False)]
  rows = [
    [
      _label(r["method"], {"acdc": "AC/DC", "rigl": "RigL"}),
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


# --- The m * w family (docs/guides/mw_family.md) ---------------------------------------------------------------


@table
def mw_family_implicit_bias(results: Path) -> str:
  """The L1 norm of each method's limit relative to basis pursuit, over the family study's seeds."""
  rows = _load(results, "implicit_bias_family", "family_summary.json")["rows"]
  l1 = lambda key: pm(rows[key]["l1_over_bp_mean"], rows[key]["l1_over_bp_std"], 3)  # noqa: E731
  find = lambda prefix: next(k for k in rows if k.startswith(prefix))  # noqa: E731
  wrapper, reference, spred = find("m*w wrapper"), find("m*w g="), find("spred")
  same = np.allclose(rows[wrapper]["l1_over_bp"], rows[reference]["l1_over_bp"], rtol=1e-9, atol=0)
  parts = [
    f"GD {l1('GD')}",
    *(f"{_alpha_of(k)} {l1(k)}" for k in rows if k.startswith("HAM")),
    f"m * w (wrapper, identical to the hand-written reference) {l1(wrapper)}"
    if same
    else f"m * w (wrapper) {l1(wrapper)}, m * w (hand-written reference) {l1(reference)}",
    f"spred {l1(spred)} (gap to the float64 LASSO solution {_sci(float(np.mean(rows[spred]['rel_gap_to_limit'])))})",
    f"PILoT {l1(find('PILoT l='))} (decay on, then off; with the linear decay of its arXiv text "
    f"{l1(find('PILoT linear'))})",
    f"Sign-In {l1(find('Sign-In'))}",
  ]
  return ", ".join(parts) + "."


@table
def mw_family_memory(results: Path) -> str:
  """Optimizer state on ResNet-18 shapes: inner, ham(inner), spred(inner), NanoAdam."""
  b, mib = _load(results, "overparam_memory", "memory.json")["bytes"], 2**20
  parts = [
    f"{label} state {b[key]['inner'] / mib:.1f} MiB, `ham` {b[key]['ham'] / mib:.1f} MiB "
    f"(+{b[key]['ham'] - b[key]['inner']} bytes), `spred` {b[key]['spred'] / mib:.1f} MiB "
    f"({b[key]['spred'] / b[key]['inner']:.1f}x)"
    for key, label in (("sgd momentum", "SGD+momentum"), ("adam", "Adam"))
  ]
  nano = b["nanoadam fraction=0.1"]
  return (
    "; ".join(parts) + f"; NanoAdam (10 %, head and norms dense) {nano / mib:.1f} MiB "
    f"({b['adam']['inner'] / nano:.1f}x less than Adam)."
  )


@table
def mw_family_nanoadam(results: Path) -> str:
  """NanoAdam against Adam on the fine-tuning task: both tasks, paired tests, optimizer state."""
  res = _load(results, "nanoadam_finetune")
  s, tests = res["summary"], res["paired_t_test_vs_adam"]

  def acc(method: str, task: str) -> str:
    return pm(100 * s[method][task]["mean"], 100 * s[method][task]["std"], 1) + f"{GLUE}%"

  def test(method: str, task: str) -> str:
    p = tests[method][task]
    if p >= SIGNIFICANCE:
      return fmt_p(p)
    return f"{fmt_p(p)}: {method if s[method][task]['mean'] > s['Adam'][task]['mean'] else 'Adam'} wins"

  other = next(m for m in s if m not in ("Adam", "NanoAdam"))
  ratio = s["Adam"]["state_bytes"] / s["NanoAdam"]["state_bytes"]
  return (
    f"NanoAdam with its paper defaults (head dense, 10 % -> 4 %) new task {acc('NanoAdam', 'new_test')} vs Adam "
    f"{acc('Adam', 'new_test')} ({test('NanoAdam', 'new_test')}), old task {acc('NanoAdam', 'old_test')} vs "
    f"{acc('Adam', 'old_test')} ({test('NanoAdam', 'old_test')}), {ratio:.1f}x less optimizer state; with every "
    f"kernel sparsified at a constant 10 % {acc(other, 'new_test')} / {acc(other, 'old_test')}."
  )


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
