"""The result tables of the README and the guides, generated from the committed results under `benchmarks/results/`.

A marked block of a Markdown page (``<!-- table:NAME -->`` ... ``<!-- /table:NAME -->``) holds a table, the
lines that compare its rows and the sentences that summarise them; ``TABLES[NAME](results_dir)`` writes it from
the JSON a benchmark saved, so that no number or claim is typed by hand. To add a block, write a ``@table``
function named like it and put its two markers, with an empty line between them, in a page (or list NAME in
``PENDING``). `layout` wraps every paragraph at the page's width, never at a `GLUE`: the line breaks inside the
prose templates below never reach a page. `tests/test_published_tables.py` runs the check.

  python benchmarks/tables.py                # rewrite every block of the READMEs and docs/guides/*.md
  python benchmarks/tables.py --check        # list the blocks that differ from their results (exit status 1)
  python benchmarks/tables.py --print NAME   # print one block's Markdown
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import inspect
import json
import re
import sys
import textwrap
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ham_optax_examples.report import markdown_table as job_table  # the table `ham-optax train` prints

import ham_optax

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, RESULTS, markdown_table, mean_val_acc, paired_test, welch_p  # noqa: E402

WIDTH = 110  # the line length of the Markdown pages
SIGNIFICANCE = 0.05
BLOCK = re.compile(
  r"^(?P<indent>[ \t]*)(?P<open><!-- table:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(?P<close>\n(?P=indent)<!-- /table:(?P=name) -->)",
  re.S | re.M,
)
GLUE = "\x00"  # a space that a line break must not replace ("p = 0.47", "+0.66 ± 1.86")
WORDS = dict(enumerate("zero one two three four five six seven eight nine ten".split()))
NAMES = {"mlp": "MLP", "resnet1d": "ResNet1D", "cnn1d": "CNN1D", "resnet18": "ResNet18", "gcn": "GCN"}
NAMES |= {"sage": "GraphSAGE", "sgd": "SGD", "adamw": "AdamW", "acdc": "AC/DC", "rigl": "RigL"}
SPARSIFIERS = NAMES | {"random": "random PaI", "magnitude": "gradual magnitude"}  # the sparse-training labels
TABLES: dict[str, Callable[[Path], str]] = {}  # block name -> generator(results directory) -> Markdown
PENDING: set[str] = set()  # blocks registered but not yet on a page


def table(fn: Callable[[Path], str]) -> Callable[[Path], str]:
  TABLES[fn.__name__] = fn
  return fn


def pages(root: Path = REPO) -> list[Path]:
  return [root / "README.md", root / "benchmarks" / "README.md", *sorted((root / "docs/guides").glob("*.md"))]


def render(text: str, results: Path = RESULTS) -> str:
  """``text`` with every marked block regenerated from ``results``; an unknown block name is an error."""

  def fill(m: re.Match) -> str:
    name, indent = m["name"], m["indent"]
    if name not in TABLES:
      raise KeyError(f"no generator for the block 'table:{name}' (known: {', '.join(sorted(TABLES))})")
    body = layout(TABLES[name](results), WIDTH - len(indent))
    return indent + m["open"] + "\n".join(indent + s if s else s for s in body.split("\n")) + m["close"]

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


# --- Formatting, tables, paired comparisons and verdicts --------------------------------------------------------


def glued(text: str) -> str:
  return text.replace(" ", GLUE)


P_SIGNIFICANT = glued(f"p < {SIGNIFICANCE}")


def word(n: int) -> str | int:
  return WORDS.get(n, n)


def fmt_p(p: float) -> str:
  if not np.isfinite(p):
    return f"p{GLUE}undefined"
  two = p >= 0.01 and round(p, 2) != SIGNIFICANCE  # 0.049 and 0.051 both read "0.05" with two digits
  return glued(f"p = {p:.2f}" if two else ("p < 0.001" if p < 0.001 else f"p = {p:.3f}"))


def fmt_diff(mean: float, std: float | None = None, digits: int = 2) -> str:
  """Points with an explicit sign (U+2212 for minus, as in the pages' prose), and `± std` if given."""
  text = f"{mean:+.{digits}f}".replace("-", "\u2212")
  return text if std is None else f"{text}{GLUE}±{GLUE}{std:.2f}"


def d1(mean: float) -> str:
  return fmt_diff(mean, digits=1)


def pm(mean: float, std: float, digits: int = 1) -> str:
  return f"{mean:.{digits}f}{GLUE}±{GLUE}{std:.{digits}f}"


def mean_std(values: Sequence[float], scale: float = 1.0, digits: int = 1) -> tuple[float, str]:
  """The mean of the finite values and ``"mean ± std"``."""
  x = scale * np.asarray(values, float)
  x = x[np.isfinite(x)]
  return float(x.mean()), pm(x.mean(), x.std(ddof=1), digits)


def sci(x: float, short: bool = False) -> str:
  """``7.7e-2``: two significant digits, the exponent without padding (``short``: ``1e-4``, not ``1.0e-4``)."""
  mantissa, exponent = f"{x:.1e}".split("e")
  return f"{mantissa}e{int(exponent)}".replace(".0e", "e" if short else ".0e")


def span(values: Iterable[float], fmt: str | Callable[[float], str] = ".2f", sep: str = "-") -> str:
  """``"lo-hi"``: the smallest and the largest of ``values``, formatted by ``fmt`` (a format spec or function)."""
  values, text = list(values), (lambda x: format(x, fmt)) if isinstance(fmt, str) else fmt
  return f"{text(min(values))}{sep}{text(max(values))}"


def listed(items: Sequence[str]) -> str:
  """``a``, ``a and b``, ``a, b and c``."""
  return " and ".join([", ".join(items[:-1]), items[-1]] if len(items) > 2 else items)


def md(header: str, rows: Iterable[str]) -> str:
  """A Markdown table from its header (any whitespace) and rows, each its cells joined by ``" | "``."""
  return markdown_table(" ".join(header.split()).split(" | "), [row.split(" | ") for row in rows])


def significant(t: dict[str, Any], sign: int = 1) -> bool:
  return sign * t["mean_diff"] > 0 and t["p_value"] < SIGNIFICANCE


def diverged(runs: Sequence[dict[str, Any]], method: str | None = None) -> int:
  return sum(bool(r["diverged"]) for r in runs if method is None or r["method"] == method)


def load(results: Path, study: str, file: str = "results.json") -> Any:
  return json.loads((results / study / file).read_text())


@functools.cache
def _script(name: str) -> Any:
  """A benchmark script of this folder as a module (by path: `transformers` is also a PyPI package's name)."""
  spec = importlib.util.spec_from_file_location(f"_{name}_study", REPO / "benchmarks" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _tables_of(results: Path, study: str) -> list[str]:
  """The Markdown tables the transformers script writes for the results in ``results/study``."""
  parts = _script("transformers").tables(load(results, study)).split("\n\n")
  return [part for part in parts if part.startswith("|")]


def _sweep(results: Path, fn: str, **kw: bool) -> str:
  return getattr(_script("sparse_training"), fn)(load(results, "sparse_sweep", "summary.json"), **kw)


# The blocks that a benchmark script formats itself.
TABLES.update(
  transformers_finetune=lambda results: _tables_of(results, "transformers")[1],
  transformers_finetune_wd=lambda results: _tables_of(results, "transformers_finetune_wd")[1],
  graphs=lambda results: _script("graphs").table(load(results, "graphs")["cells"]),
  sparse_sweep=lambda results: _sweep(results, "sweep_table"),
  sparse_sweep_dense=lambda results: _sweep(results, "sweep_table", dense=True),
  sparse_sweep_findings=lambda results: _sweep(results, "sweep_findings"),
  readme_sparse_sweep=lambda results: _sweep(results, "sweep_findings", readme=True),
)


# --- The main job (README) and sparse training (docs/guides/sparse_training.md) --------------------------------

COLLAPSE_POINTS = 10.0  # a finished seed this far below the baseline's worst seed is reported as collapsed


@table
def main_job(results: Path) -> str:
  data, acc, tests = load(results, "main_job"), defaultdict(dict), []
  for run in data["runs"]:
    acc[run["config"]["model"], run["method"]][run["config"]["seed"]] = run["test_acc"]
  for (model, method), ham in acc.items():
    if method.endswith("+HAM") and (base := acc.get((model, method.removesuffix("+HAM")))) is not None:
      a, b = (100 * np.array([x[s] for s in sorted(set(base) & set(ham))], float) for x in (base, ham))
      d = (b - a)[np.isfinite(a) & np.isfinite(b)]
      t = {**paired_test(a, b), "std_diff": float(d.std(ddof=1)) if d.size > 1 else float("nan")}
      tests.append((f"{NAMES.get(model, model)} {method.removesuffix('+HAM')}", t))
  n, lost = len(tests), diverged(data["runs"])
  ahead = [label for label, t in tests if t["mean_diff"] > 0]
  sig = [label for label, t in tests if t["p_value"] < SIGNIFICANCE]
  rows = f"all {word(n)} rows" if n > 2 else ("both rows" if n == 2 else "the one row")
  some = f"{len(ahead)} of {n} rows ({', '.join(ahead)})" if ahead else f"none of the {word(n)} rows"
  none = f" {'but' if ahead else 'and'} no difference is significant at these seed counts"
  verdict = f"HAM is ahead in {rows if len(ahead) == n else some}"
  verdict += f"; significant ({P_SIGNIFICANT}): {', '.join(sig)}" if sig else f"{none} (p{GLUE}>={GLUE}0.05)"
  diffs = [f"{k} {fmt_diff(t['mean_diff'], t['std_diff'])} ({fmt_p(t['p_value'])})" for k, t in tests]
  lost = f"{lost} of {len(data['runs'])} runs diverged" if lost else "no seed diverged"
  return f"""{job_table(data["summary"])}\n\nHAM − baseline, test accuracy paired over seeds (points, mean ±
    std, paired t-test): {", ".join(diffs)}. {verdict}; {lost}."""


def _label(method: str, labels: dict[str, str] = SPARSIFIERS) -> str:
  base, _, variant = method.partition("+")
  return labels.get(base, base) + (f" + {variant}" if variant else "")


@table
def sparse_training(results: Path) -> str:
  def pct(s: dict[str, Any], key: str) -> str:
    mean, std = s[key + "_mean"], s[key + "_std"]
    return "diverged" if mean is None else f"{100 * mean:.2f} ± {100 * std:.2f}"

  def opt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)

  rows = [
    f"{_label(s['method'])} | {s['lr']:g} | {opt(s['alpha'], '.2f' if s['method'].endswith('tuned') else 'g')} | "
    f"{opt(s['beta'], 'g')} | {pct(s, 'test_acc')} | {pct(s, 'val_acc')} | {s['sparsity']:.3f} | "
    f"{100 * s['sign_flips']:.2f} % | "
    + (s["diverged"] if s["diverged"].startswith("0/") else f"**{s['diverged']}**")
    for s in load(results, "sparse_training")["summary"]
  ]
  cols = "method | lr | alpha | beta | test acc (%) | val acc (%) | sparsity | sign flips vs init | diverged"
  return md(cols, rows)


def _welch(base: Sequence[dict[str, Any]], other: Sequence[dict[str, Any]]) -> tuple[str, float, float]:
  """``"+0.84 (p = 0.24)"`` (Welch, finished seeds; diverged or collapsed seeds noted), the difference, p."""
  a, b = ([100 * r["test_acc"] for r in runs if r["test_acc"] is not None] for runs in (base, other))
  diff, p, lost = float(np.mean(b) - np.mean(a)), welch_p(b, a), diverged(other)
  notes = [f"{word(lost)} seed{'s' * (lost > 1)} diverged"] if lost else []
  notes += [f"one seed collapsed to {x:.0f} %" for x in b if x < min(a) - COLLAPSE_POINTS]
  return f"{fmt_diff(diff)} ({fmt_p(p)}{''.join(f';{GLUE}{glued(n)}' for n in notes)})", diff, p


def _sparse(results: Path) -> tuple[dict[str, Any], dict[str, list], dict[tuple, tuple], list, list]:
  """Results, runs by method, ``_welch`` per (sparsifier, variant), significant gains, unstable grid HAM."""
  data, runs = load(results, "sparse_training"), defaultdict(list)
  for run in data["runs"]:
    runs[run["method"]].append(run)
  comparisons = {
    (sparsifier, variant): _welch(runs[sparsifier], runs[sparsifier + variant])
    for sparsifier in [s["method"] for s in data["summary"] if "+" not in s["method"]]
    for variant in ("+HAM", "+HAM tuned")
    if sparsifier + variant in runs
  }
  gains = [_label(s + v) for (s, v), (_, d, p) in comparisons.items() if d > 0 and p < SIGNIFICANCE]
  unstable = [s for (s, v), (text, _, _) in comparisons.items() if v == "+HAM" and "seed" in text]
  return data, runs, comparisons, gains, unstable


@table
def sparse_training_comparison(results: Path) -> str:
  data, runs, comparisons, gains, unstable = _sparse(results)
  by_sparsifier: dict[str, list[str]] = defaultdict(list)
  for (sparsifier, _), (text, _, _) in comparisons.items():
    by_sparsifier[sparsifier].append(text)
  parts = "; ".join(f"{SPARSIFIERS.get(s, s)} {' / '.join(texts)}" for s, texts in by_sparsifier.items())
  text = f"""HAM − baseline on test (points, two-sided Welch t-test over the {len(runs["dense"])} seeds), HAM
    at the baseline's lr / HAM tuned: {parts}."""
  if "random+Sign-In" in runs:
    text += f" Sign-In − baseline on random PaI: {_welch(runs['random'], runs['random+Sign-In'])[0]}."
  verdict = "At this scale HAM does not improve sparse training significantly for any sparsifier."
  verdict = f"HAM improves significantly ({P_SIGNIFICANT}): {', '.join(gains)}." if gains else verdict
  text += f" **{verdict}** "
  tuned_worst = [d for (_, v), (_, d, _) in comparisons.items() if v.endswith("tuned")]
  tuned_lost = sum(diverged(rs) for m, rs in runs.items() if m.endswith("HAM tuned"))
  if tuned_worst:
    text += f""""HAM tuned" (alpha from `suggest_alpha`, same budget as the baseline)
      {f"diverged on {tuned_lost} seeds" if tuned_lost else "never diverged"} and was at worst
      {fmt_diff(min(tuned_worst))} points from the baseline."""
  if unstable:
    alphas = "/".join(f"{a:g}" for a in sorted({runs[s + "+HAM"][0]["config"]["alpha"] for s in unstable}))
    text += f""" The grid-tuned "HAM at the baseline's lr" picked alpha{GLUE}={GLUE}{alphas} for
      {" and ".join(SPARSIFIERS.get(s, s) for s in unstable)}, where it diverged or collapsed on one test seed
      although it won on the {word(len(data["tuning_seeds"]))} validation seeds."""
  return text


@table
def readme_sparse_training(results: Path) -> str:
  _, _, comparisons, gains, unstable = _sparse(results)
  pair = lambda s: " / ".join(fmt_diff(comparisons[s, v][1]) for v in ("+HAM", "+HAM tuned"))  # noqa: E731
  p_min = np.floor(100 * min(p for _, _, p in comparisons.values())) / 100
  tuned_unstable = any("seed" in text for (_, v), (text, _, _) in comparisons.items() if v.endswith("tuned"))
  lead = f"HAM improves {', '.join(gains)} significantly ({P_SIGNIFICANT})"
  grid = f"diverged or collapsed on one seed each of {' and '.join(SPARSIFIERS.get(s, s) for s in unstable)}"
  return f"""{lead if gains else "HAM does not improve any sparsifier significantly"} (RigL + HAM
    {pair("rigl")} points with alpha grid-tuned at RigL's lr / alpha from `suggest_alpha` at HAM's own lr,
    random pruning {pair("random")}, all p{GLUE}>={GLUE}{p_min:.2f}); the grid-tuned alpha
    {grid if unstable else "never diverged or collapsed"},
    {"and so did the `suggest_alpha` rows" if tuned_unstable else "the `suggest_alpha` rows never did"}."""


# --- Transformers (docs/guides/transformers.md): `benchmarks/transformers.py` formats its own tables ----------


@table
def transformers_grokking(results: Path) -> str:
  res, labels = load(results, "transformers")["grokking"], _script("transformers").LABELS
  base = res.pop("adamw")["grok_step"]
  p = {labels[m]: paired_test(base, r["grok_step"])["p_value"] for m, r in res.items()}
  tests = "; ".join(f"{k} p{GLUE}={GLUE}{x:.3f}" for k, x in p.items() if np.isfinite(x))
  return f"""{_tables_of(results, "transformers")[0]}\n\nGrokking step, paired t-tests against AdamW (seeds
    that grokked under both): {tests}."""


def _grokking(results: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, list]]:
  """AdamW's and HAM's grokking runs, HAM − AdamW's paired tests, and HAM's and AdamW's mean_std."""
  res = load(results, "transformers")["grokking"]
  base, ham = res["adamw"], res["ham_adamw"]
  scales = {"grok_step": (1, 0), "final_test_acc": (100, 1), "fourier_top4": (1, 2), "near_zero": (100, 1)}
  test = {k: paired_test(base[k], ham[k]) for k in scales}
  return base, ham, test, {k: [mean_std(r[k], *scale) for r in (ham, base)] for k, scale in scales.items()}


@table
def transformers_findings(results: Path) -> str:
  base, ham, test, stats = _grokking(results)
  (g_ham, _), (g_base, _) = stats["grok_step"]
  (a_ham, acc_ham), (a_base, acc_base) = stats["final_test_acc"]
  (_, f_ham), (_, f_base) = stats["fourier_top4"]
  (z_ham, z_text), (z_base, z_base_text) = stats["near_zero"]
  grok, fourier, near = test["grok_step"], test["fourier_top4"], test["near_zero"]
  peak = np.asarray(ham["curves"]["val_acc"], float).max(axis=-1)
  dips = np.any(np.asarray(ham["final_val_acc"], float) < peak - 1e-9)
  tuned = zip(ham["grid"], ham["tuning"]["final_val_acc"], strict=True)
  dead = ", ".join(f"{a:g}" for a in sorted({s["alpha"] for s, v in tuned if max(v) < 0.05}))
  noise = " and noisier" if np.std(ham["final_test_acc"]) > np.std(base["final_test_acc"]) else ""
  dipping = ": after grokking, its validation accuracy keeps dipping (see the curves) where AdamW's settles"
  failed = f" With alpha{GLUE}={GLUE}{dead} (either beta) HAM(AdamW) did not learn at all on the tuning seed."
  dip = "; the final number catches some of them in a dip." if dips else "."
  sparser = ": the sparser, more structured solution HAM's geometry favours" * (fourier["mean_diff"] > 0)
  return f"""- **HAM(AdamW) groks {"earlier" if g_ham < g_base else "later"} on average ({g_ham:.0f} vs
    {g_base:.0f} steps){"" if grok["p_value"] < SIGNIFICANCE else " but not significantly"}** (paired
    {fmt_p(grok["p_value"])} over {len(base["final_test_acc"])} seeds), and **its final accuracy is
    {"lower" if a_ham < a_base else "higher"}{noise}** (test {acc_ham} % vs {acc_base} %,
    {fmt_p(test["final_test_acc"]["p_value"])}){dipping if noise else ""}. Every HAM(AdamW) run reached
    {100 * peak.min():.0f} % validation accuracy at some step{dip}{failed if dead else ""}\n- **The implicit
    bias is visible in the weights**: HAM(AdamW)'s number embedding is
    {"more" if fourier["mean_diff"] > 0 else "less"} concentrated in a few Fourier frequencies
    ({f_ham} vs {f_base}) and it has {z_ham / z_base:.1f}x as many near-zero weights ({z_text} % vs
    {z_base_text} %; paired {fmt_p(fourier["p_value"])} and {fmt_p(near["p_value"])}, `scipy.stats.ttest_rel`
    over the seeds){sparser * (near["mean_diff"] > 0)}."""


@table
def readme_transformers(results: Path) -> str:
  base, ham, test, stats = _grokking(results)
  ((g_ham, g_ham_text), (g_base, g_base_text)) = stats["grok_step"]
  (a_ham, acc_ham), (a_base, acc_base) = stats["final_test_acc"]
  p = test["grok_step"]["p_value"]
  words = {"near_zero": "sparser", "fourier_top4": "more Fourier-concentrated"}
  weights = [word for k, word in words.items() if stats[k][0][0] > stats[k][1][0]]
  weights = f" with a {' and '.join(weights)} embedding" if weights else ""
  noisier = ", noisier" if np.std(ham["final_test_acc"]) > np.std(base["final_test_acc"]) else ""
  ft = load(results, "transformers")["finetune"]
  old = paired_test(ft["adamw"]["old_test_acc"], ft["ham_adamw"]["old_test_acc"])
  return f"""HAM(AdamW) groks {"earlier" if g_ham < g_base else "later"} on average, at {g_ham_text} steps vs
    AdamW's {g_base_text} ({fmt_p(p)}, {"significant" if p < SIGNIFICANCE else "not significant"}){weights},
    and ends at {"lower" if a_ham < a_base else "higher"}{noisier} test accuracy ({acc_ham} % vs {acc_base}
    %); HAM {"reduces" if significant(old) else "does not reduce"} forgetting when fine-tuning addition ->
    subtraction."""


@table
def transformers_finetune_findings(results: Path) -> str:
  short, long = (load(results, s)["finetune"] for s in ("transformers", "transformers_finetune_wd"))
  first = np.concatenate([np.asarray(r["curves"]["old_val_acc"])[:, 0] for r in short.values()])
  new = [100 * np.mean(r["new_test_acc"]) for r in short.values()]
  old = [100 * np.mean(long[m]["old_test_acc"]) for m in ("adamw", "ham_adamw")]
  text = {m: {k: mean_std(r[k], 100)[1] for k in ("new_test_acc", "old_test_acc")} for m, r in long.items()}
  vs_adamw = lambda res, method, key: paired_test(res["adamw"][key], res[method][key])  # noqa: E731
  tasks = [(res, k) for res in (short, long) for k in ("new_test_acc", "old_test_acc")]
  ham_wins = sum(significant(vs_adamw(r, "ham_adamw", k)) for r, k in tasks)
  nano_old, nano_new = (vs_adamw(long, "nanoadam", k) for k in ("old_test_acc", "new_test_acc"))
  ham = f"significantly better than AdamW in {ham_wins} of the 4 comparisons"
  ham = ham if ham_wins else "not significantly better than AdamW on either task in either protocol"
  trade = ": a trade-off, not a win" if nano_old["mean_diff"] * nano_new["mean_diff"] < 0 else ""
  return f"""What we see: **this shift is catastrophic for every method, HAM included.** The subtraction map
    conflicts with the addition map on the same number embeddings, and within the first 25 full-batch steps
    the old task falls from ~100 % to {span(100 * first, ".0f")} % validation accuracy (300-step protocol),
    whatever the optimizer. Without weight decay no method learns subtraction in 300 steps ({span(new, ".0f")}
    % test); with weight decay and 1000 steps AdamW and HAM(AdamW) reach {text["adamw"]["new_test_acc"]} % and
    {text["ham_adamw"]["new_test_acc"]} % ({fmt_p(vs_adamw(long, "ham_adamw", "new_test_acc")["p_value"])})
    and forget addition almost completely ({span(old, ".0f")} %). **HAM(AdamW) is {ham}.** NanoAdam, which
    updates only the smallest 10 % of each tensor, forgets {"less" if nano_old["mean_diff"] > 0 else "more"}
    ({text["nanoadam"]["old_test_acc"]} % vs {text["adamw"]["old_test_acc"]} % on addition,
    {fmt_p(nano_old["p_value"])}) and learns the new task {"less" if nano_new["mean_diff"] < 0 else "more"}
    ({text["nanoadam"]["new_test_acc"]} % vs {text["adamw"]["new_test_acc"]} %,
    {fmt_p(nano_new["p_value"])}){trade}, and all fine-tuned models are far from useful on both tasks."""


# --- Graphs (docs/guides/graphs.md): `benchmarks/graphs.py` formats its own table -----------------------------


def _gain(c: dict[str, Any], key: str, against: str = "vs_alpha0") -> tuple[float, float]:
  return 100 * c[key][against]["mean_diff"], c[key][against]["p_value"]


def _significant(cells: Sequence[dict], key: str, against: str = "vs_alpha0", sign: int = 1) -> list[dict]:
  return [c for c in cells if significant(c[key][against], sign)]


def _where(c: dict[str, Any]) -> str:
  return f"{NAMES[c['model']]} + {NAMES[c['inner']]} at `h{GLUE}={GLUE}{c['h']:g}`"


@table
def graphs_answer(results: Path) -> str:
  cells = load(results, "graphs")["cells"]
  n, tests, hs, alpha0 = len(cells), 2 * len(cells), sorted({c["h"] for c in cells}), glued("`alpha = 0`")
  times = lambda k: {0: "never", 1: "once", 2: "twice"}.get(k, f"{k} times")  # noqa: E731
  h = lambda i: glued(f"`h = {hs[i]:g}`")  # noqa: E731

  def case(c: dict[str, Any], key: str = "ham_neg", note: str = "") -> str:
    diff, p = _gain(c, key, "vs_baseline" if key == "ham" else "vs_alpha0")
    alpha = "" if key == "ham" else f", alpha{GLUE}={GLUE}{c[key]['alpha']:g}"
    return f"{_where(c)}, {fmt_diff(diff)} points ({fmt_p(p)}{alpha}{note})"

  neg = _significant(cells, "ham_neg")
  first = f"Of the {n} settings, the best negative alpha beats {alpha0} significantly {times(len(neg))}"
  for c in neg:
    corrected = min(1.0, tests * _gain(c, "ham_neg")[1])
    note = f"; over the {tests} sign-restricted comparisons of the table a Bonferroni correction makes that "
    first += f": {case(c, note=f'{note}{corrected:.2f}')}"
    diff, p = _gain(c, "ham", "vs_baseline")
    if p >= SIGNIFICANCE or diff <= 0:
      first += f""". That gain is not a gain over the tuned baseline: tuning the weight decay gives the same
        accuracy (HAM − baseline {fmt_diff(diff)}, {fmt_p(p)})"""
  others = [c for c in cells if c["h"] <= hs[1] and (c["model"] == "gcn" or c["inner"] == "adamw")]
  keys = [("ham", "vs_baseline"), ("ham", "vs_alpha0"), ("ham_neg", "vs_alpha0"), ("ham_pos", "vs_alpha0")]
  spread = max(abs(_gain(c, k, a)[0]) for c in others for k, a in keys)
  any_sig = any(_gain(c, k, a)[1] < SIGNIFICANCE for c in others for k, a in keys)
  by_h = ", ".join(str(sum(c["ham"]["alpha"] < 0 for c in cells if c["h"] == x)) for x in hs)
  first += f""". With GCN, or with AdamW, every difference at {h(0)} and {h(1)} is within ±{spread:.1f} points
    and {"some are" if any_sig else "none is"} significant. The best alpha chosen on validation is negative in
    {sum(c["ham"]["alpha"] < 0 for c in cells)} of the {n} settings (by h = {", ".join(f"{x:g}" for x in hs)}:
    {by_h} of {n // len(hs)}; first panel)."""
  high = [c for c in cells if c["h"] >= hs[-2]]
  pos = _significant(high, "ham_pos")
  second = f"""at {h(-2)} and {h(-1)} the best positive alpha is within
    {fmt_diff(max(_gain(c, "ham_pos")[0] for c in high))} points of {alpha0} and
    {f"significant at {'; '.join(map(_where, pos))}" if pos else "never significant"}."""
  better, beats = len(_significant(cells, "ham", "vs_baseline")), "beats the tuned baseline significantly"
  third = f"""HAM with alpha tuned over the whole grid
    {f"{beats} {times(better)}" if better else f"never {beats}"}"""
  for c in _significant(cells, "ham", "vs_baseline", -1):
    third += f"""; it is significantly worse at {case(c, "ham")}, where the baseline tuned its weight decay to
      {c["wd_baseline"]:g} and HAM kept {c["alpha0"]["wd"]:g}"""
  worse = "; ".join(map(case, _significant(cells, "ham_neg", sign=-1)))
  third += f""". A negative alpha is significantly *worse* than {alpha0}
    {f"at {worse}" if worse else "nowhere"}."""
  yes = ["yes" if helps else "no" for helps in (10 * len(neg) > tests, pos)]
  answer = f"{yes[0]} for a negative, {yes[1]} for a positive alpha"
  answer = f"{yes[0]} on both counts" if yes[0] == yes[1] else answer
  return f"""**Answer, for this controlled setting: {answer}.**\n\n- *Does a negative alpha help on
    heterophilic graphs?* {"Often." if yes[0] == "yes" else "Not reliably."} {first}\n- *Does a positive alpha
    help on homophilic graphs?* {"Yes:" if pos else "No:"} {second}\n- {third}"""


@table
def graphs_mechanism(results: Path) -> str:
  data = load(results, "graphs")
  cells, seeds, t = data["cells"], data["args"]["tune_seeds"], [c["tuning"] for c in data["cells"]]
  pct = lambda x: f"{100 * x:.2g}{GLUE}%"  # noqa: E731
  cell = lambda *key: next(c for c in cells if (c["model"], c["inner"], c["h"]) == key)  # noqa: E731

  def tuning(inner: str, alpha: float, key: str) -> list:
    return [c["tuning"][key][c["tuning"]["alphas"].index(alpha)] for c in cells if c["inner"] == inner]

  beyond = lambda i, a: span([100 * x for x in tuning(i, a, "alpha_beyond_barrier")], ".0f")  # noqa: E731
  runs = lambda inner, alpha: sum(tuning(inner, alpha, "alpha_diverged"))  # noqa: E731
  n = {inner: seeds * sum(c["inner"] == inner for c in cells) for inner in ("sgd", "adamw")}
  # the spread by alpha, over the alphas without a diverged tuning run
  profiles = [[x for x, d in zip(c["alpha_spread"], c["alpha_diverged"], strict=True) if not d] for c in t]
  ends = sum(v[0] > v[-1] for v in profiles)
  falls = sum(all(a > b for a, b in zip(v, v[1:], strict=False)) for v in profiles)
  ex = cell("gcn", "sgd", 0.7)
  marks = {"ham_neg": f"alpha = {ex['ham_neg']['alpha']:g}", "alpha0": "0"}
  marks["ham_pos"] = f"+{ex['ham_pos']['alpha']:g}"
  profile = ", ".join(f"{ex[k]['spread']:.2f} at {a}" for k, a in marks.items())
  more = sum(c["ham_neg"]["sign_flips"] > c["alpha0"]["sign_flips"] for c in cells)
  flips = [
    f"{pct(c['ham_neg']['sign_flips'])} of the weights at alpha = {c['ham_neg']['alpha']:g} against "
    f"{pct(c['alpha0']['sign_flips'])} at 0"
    for c in (cell("sage", "sgd", 0.1), cell("sage", "sgd", 0.9))
  ]
  tried = [(a, d) for c in t for a, d in zip(c["alphas"], c["alpha_diverged"], strict=True)]
  signs = {s: sum(d for a, d in tried if s * a > 0) for s in (-1, 1)}
  total = {s: seeds * sum(s * a > 0 for a, _ in tried) for s in (-1, 1)}
  clip = max(c[k]["clip_hits"] for c in cells for k in ("ham", "ham_neg", "ham_pos"))
  clipped = f"Some selected runs hit the exponent clip (up to {pct(clip)} of the weights)."
  if not clip:
    clipped = """No selected run ever hit the exponent clip (`|lr alpha g| >= 5` for some weight at some
      step): the chosen alphas are far from it."""
  return f"""- *Magnitude profile.* `(|x|_1 / |x|_2)^2 / n` (1 for equal magnitudes, towards 0 for a few large
    weights) is lower at the largest positive alpha than at the most negative one in {ends} of the
    {len(cells)} settings, and falls monotonically in between in {falls} (tuning graphs, the alphas without a
    diverged run): a positive alpha concentrates the weight mass (its L1-like potential), a negative alpha
    flattens it (its potential penalises large weights more than L2). For GCN + SGD at `h = 0.7`: {profile}
    (test graphs).\n- *Sign flips.* The selected negative alpha gives more sign flips versus initialisation
    than alpha = 0 in {more} of the {len(cells)} settings, mostly slightly (GraphSAGE + SGD, `h = 0.1`:
    {flips[0]}; at `h = 0.9`: {flips[1]}). The mirror step itself never flips a sign, so the extra flips are
    made by the inner step; a likely reason is that a negative alpha slows large weights (effective learning
    rate below `lr`) while small ones keep moving at `lr`.\n- *The barrier.* With SGD, alpha = -10 puts
    {beyond("sgd", -10)}{GLUE}% of the weights at or beyond `|x| = 1/|alpha|` (where the effective learning
    rate `1 + alpha |x|` is zero or negative) and is where runs diverge: {runs("sgd", -10)} of the {n["sgd"]}
    SGD tuning runs at alpha = -10. With AdamW the picture differs (next section):
    {beyond("adamw", -3)}{GLUE}% of the weights lie beyond the barrier at alpha = -3 and
    {beyond("adamw", -10)}{GLUE}% at alpha = -10 without harm ({runs("adamw", -3) + runs("adamw", -10)}
    diverged runs), while alpha = -100 diverged in {runs("adamw", -100)} of {n["adamw"]} runs and alpha = -30
    in {runs("adamw", -30)}. In all, {signs[-1]} of the {total[-1]} negative-alpha tuning runs diverged and
    {signs[1] or "none"} of the {total[1]} positive-alpha runs.\n- *The clip.* {clipped} The divergent tuning
    runs all have a negative alpha and most of their weights beyond the barrier, consistent with the runaway
    described below, which the clip slows but does not stop."""


@table
def readme_graphs(results: Path) -> str:
  cells, found, parts = load(results, "graphs")["cells"], 0, []
  for sign in ("negative", "positive"):
    gains = _significant(cells, f"ham_{sign[:3]}")
    found += len(gains)
    where = lambda c: f"{NAMES[c['model']]} + {NAMES[c['inner']]}, h{GLUE}={GLUE}{c['h']:g}"  # noqa: E731
    cases = ", ".join(f"{_gain(c, f'ham_{sign[:3]}')[0]:+.1f} points, {where(c)}" for c in gains)
    count = "the one significant gain" if len(gains) == 1 else f"the {len(gains)} significant gains"
    matched = all(p >= SIGNIFICANCE or d <= 0 for d, p in (_gain(c, "ham", "vs_baseline") for c in gains))
    verb = "matches what tuning the weight decay gives" if matched else "beats the tuned baseline too"
    none = f"no {sign} alpha beats alpha{GLUE}={GLUE}0 significantly"
    parts.append(f"{count} of a {sign} alpha ({cases}) {verb}" if gains else none)
  count = f"a significant gain over alpha{GLUE}={GLUE}0 in {found} of the {2 * len(cells)} sign-restricted comparisons"
  reliably = 10 * found > 2 * len(cells)
  lead = count[0].upper() + count[1:] if reliably else f"Neither sign helps reliably ({count})"
  return f"{lead}; {'; '.join(parts)}."


# --- Implicit bias (docs/guides/implicit_bias.md) and the m * w family (docs/guides/mw_family.md) ---------------


def _order(slopes: Sequence[float]) -> str:
  return "of first order" if all(0.8 <= s <= 1.25 for s in slopes) else "not of first order"


def _power(x: float) -> str:
  """``1e4`` for a power of ten, else two significant digits."""
  return f"1e{round(np.log10(x))}" if np.isclose(x, 10.0 ** round(np.log10(x))) else f"{x:.2g}"


def _alpha_of(key: str) -> str:
  """``"HAM a=10 (HYP*)"`` -> ``"HAM alpha=10"``."""
  return f"HAM alpha={float(key.split('a=')[1].split()[0]):g}"


def _implicit_bias(results: Path) -> tuple[dict[str, Any], dict[str, dict], list[float]]:
  """The study, its table's rows and the log-log slopes of the gap against the learning rate."""
  res = load(results, "implicit_bias")
  return res, res["table"]["rows"], [g["loglog_slope"] for g in res["gap_vs_lr"].values()]


@table
def implicit_bias(results: Path) -> str:
  data = load(results, "implicit_bias")
  res, c = data["table"], data["config"]
  limits = {"GD": " (pseudo-inverse)", "HAM": " (Bregman projection)", "m * w": " (hyperbolic entropy)"}
  rows = []
  for label, r in res["rows"].items():
    if r["sign_from"] not in (None, "x_half") or not label.startswith(("GD", "HAM", "m*w g=")):
      continue  # the analysed variant: same limits, quoted in the text; the m * w family: its own table
    if label.startswith("m*w"):
      label = f"m * w, gamma = {sci(float(label.split('g=')[1]), True)}"
    label = label if r["alpha"] is None else f"HAM alpha={r['alpha']:g}"
    kind = next(k for k in limits if label.startswith(k))
    gap, limits[kind] = sci(r["rel_gap_to_limit"]) + limits[kind], ""
    cells = [label, sci(r["lr"]), f"{r['steps']:,}", f"{r['l1']:.3f}", gap, f"{r['rel_dist_to_truth']:.3f}"]
    rows.append(" | ".join(cells))
  truth = all(abs(r["rel_dist_to_bp"] - r["rel_dist_to_truth"]) < 1e-9 for r in res["rows"].values())
  rows.append(f"basis pursuit (LP) | – | – | {res['l1_basis_pursuit']:.3f} | – | {'0.000' if truth else '–'}")
  lead = f"""n = {c["n"]} features, d = {c["d"]} samples, {c["k"]}-sparse truth, `x0 =
    {sci(c["init_scale"], True)} N(0, I)`, the real optimizer `ham_optax.ham(optax.sgd(lr), lr, alpha,
    beta=0)` in float64, run until `||Zx - y|| <= 1e-10 ||y||` (seed {c["seed"]}):"""
  header = "method | lr | steps | L1 of limit | rel. gap to predicted limit | rel. distance to truth"
  return f"{lead}\n\n{md(header, rows)}"


@table
def implicit_bias_findings(results: Path) -> str:
  res, rows, slopes = _implicit_bias(results)
  pairs = [(r, rows[k.replace("(HYP*)", "(GD;HYP)")]) for k, r in rows.items() if k.endswith("(HYP*)")]
  spread = max(abs(a["l1"] - b["l1"]) / a["l1"] for a, b in pairs)
  alphas, l1 = np.asarray(res["l1_vs_alpha"]["alpha"]), np.asarray(res["l1_vs_alpha"]["l1"])
  low = int(l1.argmin())
  ham = max((r for r, _ in pairs), key=lambda r: r["alpha"])
  mw = next(r for k, r in rows.items() if k.startswith("m*w"))
  rise = f""" and **rises again** beyond ({l1[-1]:.2f} at {_power(alphas[-1])}), when `<grad R(x0), x>` starts
    rewarding the initial signs"""
  return f"""The analysed variant `sign_from="x"` (GD;HYP) ends within {100 * spread:.1f}{GLUE}% of the same
    L1 norms. The gap between discrete HAM and the Bregman projection is {_order(slopes)} in the learning rate
    (log-log slopes {span(slopes)}, `gap_vs_lr.png`). Honest caveats: the L1 bias needs `alpha * |x0|` small —
    the limit's L1 norm falls from {rows["GD"]["l1"]:.2f} to a minimum of {l1[low]:.2f} near
    alpha{GLUE}={GLUE}{_power(alphas[low])}{rise if low < len(l1) - 1 and l1[-1] > l1[low] else ""}; the
    approach to L1 is logarithmic, so HAM never reaches basis pursuit here. Stability ties lr to alpha, so in
    *steps* HAM at alpha{GLUE}={GLUE}{ham["alpha"]:g} takes {ham["steps"] / 1000:.0f}k against m * w's
    {mw["steps"] / 1000:.0f}k, though it is ~{(mw["steps"] * mw["lr"]) / (ham["steps"] * ham["lr"]):.0f}x
    faster in continuous time (steps x lr)."""


@table
def implicit_bias_recovery(results: Path) -> str:
  res = load(results, "implicit_bias")
  rec, d0 = res["recovery"], res["config"]["d"]
  i, trials = rec["d"].index(d0), rec["trials"]
  counts = {key: [round(f * trials) for f in fractions] for key, fractions in rec["fraction"].items()}
  names = {"GD": "GD", "basis pursuit (LP)": "basis pursuit"}
  label = lambda k: _alpha_of(k) if k[:3] == "HAM" else names.get(k, "m * w")  # noqa: E731
  first = ", ".join(f"{label(k)} {c[i]}/{trials}" for k, c in counts.items())
  return f"""Recovery of random {res["config"]["k"]}-sparse truths (`recovery.png`, {trials} problems per d,
    relative error at most {rec["tol"]:g}): at d = {d0}, {first}; at d = {rec["d"][i + 1]}:
    {", ".join(str(c[i + 1]) for c in counts.values())}."""


@table
def readme_implicit_bias(results: Path) -> str:
  res, rows, slopes = _implicit_bias(results)
  ham = max((r for r in rows.values() if r["sign_from"] == "x_half"), key=lambda r: r["alpha"])
  return f"""The L1 norm of HAM's limit falls from {rows["GD"]["l1"]:.2f} (gradient descent) to
    {ham["l1"]:.2f} at alpha{GLUE}={GLUE}{ham["alpha"]:g}, towards basis pursuit's
    {res["table"]["l1_basis_pursuit"]:.2f}, and its gap to the predicted Bregman projection is
    {_order(slopes)} in the learning rate (log-log slopes {span(slopes)})."""


@table
def mw_family_implicit_bias(results: Path) -> str:
  summary = load(results, "implicit_bias_family", "family_summary.json")
  rows, seeds = summary["rows"], ", ".join(map(str, summary["seeds"]))
  l1 = lambda key: pm(rows[key]["l1_over_bp_mean"], rows[key]["l1_over_bp_std"], 3)  # noqa: E731
  find = lambda prefix: next(k for k in rows if k.startswith(prefix))  # noqa: E731
  wrapper, reference, spred = find("m*w wrapper"), find("m*w g="), find("spred")
  same = np.allclose(rows[wrapper]["l1_over_bp"], rows[reference]["l1_over_bp"], rtol=1e-9, atol=0)
  mw = f"m * w (wrapper) {l1(wrapper)}, m * w (hand-written reference) {l1(reference)}"
  parts = [f"GD {l1('GD')}", *(f"{_alpha_of(k)} {l1(k)}" for k in rows if k.startswith("HAM"))]
  parts.append(f"m * w (wrapper, identical to the hand-written reference) {l1(wrapper)}" if same else mw)
  # spred's reference (ISTA) is approximate: publish a bound, not the last digits of the gap
  gap = _power(10.0 ** np.ceil(np.log10(max(rows[spred]["rel_gap_to_limit"]))))
  return f"""Seeds {seeds}: {", ".join(parts)}, spred {l1(spred)} (relative gap to the float64 LASSO solution
    below {gap} on every seed), PILoT {l1(find("PILoT l="))} (decay on, then off; with the linear decay of its
    arXiv text {l1(find("PILoT linear"))}), Sign-In {l1(find("Sign-In"))}."""


@table
def mw_family_memory(results: Path) -> str:
  res, mib = load(results, "overparam_memory", "memory.json"), 2**20
  b = res["bytes"]
  parts = [
    f"{label} state {b[key]['inner'] / mib:.1f} MiB, `ham` {b[key]['ham'] / mib:.1f} MiB "
    f"(+{b[key]['ham'] - b[key]['inner']} bytes), `spred` {b[key]['spred'] / mib:.1f} MiB "
    f"({b[key]['spred'] / b[key]['inner']:.1f}x)"
    for key, label in (("sgd momentum", "SGD+momentum"), ("adam", "Adam"))
  ]
  nano = b["nanoadam fraction=0.1"]
  return f"""{res["n_params"] / 1e6:.1f} M float32 parameters: {"; ".join(parts)}; NanoAdam (10 %, head and
    norms dense) {nano / mib:.1f} MiB ({b["adam"]["inner"] / nano:.1f}x less than Adam)."""


@table
def mw_family_nanoadam(results: Path) -> str:
  res = load(results, "nanoadam_finetune")
  s, tests, c = res["summary"], res["paired_t_test_vs_adam"], res["config"]
  acc = lambda m, task: pm(100 * s[m][task]["mean"], 100 * s[m][task]["std"]) + f"{GLUE}%"  # noqa: E731

  def test(task: str) -> str:
    p, won = tests["NanoAdam"][task], s["NanoAdam"][task]["mean"] > s["Adam"][task]["mean"]
    return fmt_p(p) if p >= SIGNIFICANCE else f"{fmt_p(p)}: {'NanoAdam' if won else 'Adam'} wins"

  other = next(m for m in s if m not in ("Adam", "NanoAdam"))
  ratio = s["Adam"]["state_bytes"] / s["NanoAdam"]["state_bytes"]
  first, last = c["seeds"][0], c["seeds"][-1]
  seeds = f"{first}-{last}" if c["seeds"] == list(range(first, last + 1)) else c["seeds"]
  return f"""{len(c["lr_grid"])} learning rates per method tuned on validation, then seeds {seeds}: NanoAdam
    with its paper defaults (head dense, 10 % -> 4 %) new task {acc("NanoAdam", "new_test")} vs Adam
    {acc("Adam", "new_test")} ({test("new_test")}), old task {acc("NanoAdam", "old_test")} vs
    {acc("Adam", "old_test")} ({test("old_test")}), {ratio:.1f}x less optimizer state; with every kernel
    sparsified at a constant 10 % {acc(other, "new_test")} / {acc(other, "old_test")}."""


# --- Choosing alpha (docs/guides/choosing_alpha.md) ---------------------------------------------------------

FAMILIES = {"mlp": "MLP", "mlp_ln": "MLP+LayerNorm", "cnn1d": "CNN", "resnet1d": "ResNet+BatchNorm"}
FAMILIES |= {"embed_mlp": "Embedding+MLP", "attention": "Attention"}
OPTIMIZERS = {"sgd": "SGD+m", "adamw": "AdamW"}
CLIP = 5.0  # the alpha-transfer benchmark's max_exponent (ham_optax's default)
WITHIN = 0.5  # points: "within reach of grid-best HAM"
SUG, LEAF, BEST = "HAM suggested", "HAM per-leaf", "HAM grid-best"  # the methods besides "baseline"


def _family(key: str) -> str:
  return FAMILIES[key.split("/")[0]]


def _setting(key: str) -> str:
  return f"{_family(key)}/{OPTIMIZERS[key.split('/')[1]]}"


def _final(results: Path, folder: str = "alpha_transfer") -> dict[str, Any]:
  return _script("alpha_transfer").load_final(results / folder)["results"]


def _grid(results: Path) -> dict[str, Any]:
  return load(results, "alpha_transfer", "grid.json")


def _ratio(results: Path, folder: str = "alpha_transfer") -> float:
  return float(load(results, folder, "final.json")["argv"]["target_ratio"])


def _count(runs: Sequence[dict[str, Any]] | dict[str, Any], method: str) -> tuple[int, int]:
  """How many runs of ``method`` diverged, and how many there are (``runs``: a list, or the fresh seeds)."""
  runs = [r for res in runs.values() for r in res["runs"]] if isinstance(runs, dict) else runs
  return diverged(runs, method), sum(r["method"] == method for r in runs)


def _bin(lo: float, hi: float, last: str) -> str:
  return f"below {hi:g}" if lo == 0 else (last if hi == np.inf else f"{lo:g} - {hi:g}")


def _transfer_tests(final: dict[str, Any]) -> dict[str, dict[tuple[str, str], dict[str, Any]]]:
  """Per setting, the paired test on test accuracy (points) of each pair ``(method, against)`` of the table."""
  out = {}
  for key, res in final.items():
    acc = defaultdict(list)
    for r in res["runs"]:
      acc[r["method"]].append(np.nan if r["diverged"] else 100 * r["test_acc"])
    out[key] = {(m, a): paired_test(acc[a], acc[m]) for m, a in _script("alpha_transfer").PAIRS}
  return out


def _cited(key: str, t: dict[str, Any], *notes: str) -> str:
  """``MLP/SGD+m (−1.7, p = 0.03)``: a setting with its paired difference."""
  return f"{_setting(key)} ({', '.join([d1(t['mean_diff']), fmt_p(t['p_value']), *notes])})"


def _within(tests: dict[str, dict], method: str) -> tuple[str, list[str]]:
  """``"9 of 12"`` settings where ``method`` came within `WITHIN` of grid-best HAM, and those it missed."""
  missed = [k for k, t in tests.items() if t[method, BEST]["mean_diff"] < -WITHIN]
  return f"{len(tests) - len(missed)} of {len(tests)}", missed


@table
def alpha_transfer_families(results: Path, folder: str = "alpha_transfer") -> str:
  study = _script("alpha_transfer")
  final = study.load_final(results / folder)
  header, rule, *rows = study.summarize(final).split("\n")
  cells = [r.split(" |", 1)[1] for r in rows]
  rows = [f"| {_setting(k).replace('/', ' / ')} |{c}" for k, c in zip(final["results"], cells, strict=True)]
  note = """(Means and stds over the non-diverged seeds; differences over the seeds where neither run
    diverged.)"""
  return "\n".join([header, rule, *rows, "", note])


@table
def alpha_transfer_adamw(results: Path) -> str:
  folder, default = "alpha_transfer_adamw", _ratio(results)
  ratio = _ratio(results, folder)
  now, before = (_transfer_tests(_final(results, f)) for f in (folder, "alpha_transfer"))
  gap = lambda tests, k, method=SUG: tests[k][method, BEST]["mean_diff"]  # noqa: E731
  ok = [k for k in now if gap(now, k) >= -WITHIN]
  lost = [k for k in now if k not in ok]
  text = f"""At {ratio:g} the single alpha came within {WITHIN:g} points of grid-best HAM or beat it on
    {listed([f"{_family(k)} ({d1(gap(now, k))})" for k in ok])}, where at {default:g} it was
    {span([gap(before, k) for k in ok], d1, " to ")}"""
  for k in lost:
    text += f"""; but **{_family(k)} lost {abs(now[k][SUG, "baseline"]["mean_diff"]):.0f} points** against its
      baseline at {ratio:g} ({d1(gap(before, k))} from grid-best at {default:g})"""
  text += f""". The per-leaf alphas at {ratio:g} stayed between
    {span([gap(now, k, LEAF) for k in now], d1, " and ")} points of grid-best HAM on all {word(len(now))}."""
  if lost:
    text += f""" So **the ratio does not depend on the optimizer in the library**: one default, {default:g},
      for both, because the larger AdamW ratio that helps {word(len(ok))} families wrecks {word(len(lost))}."""
  return alpha_transfer_families(results, folder) + "\n\n" + text


@table
def alpha_transfer_divergence(results: Path) -> str:
  final = _final(results)
  (suggested, _), (leaf, leaf_n), n = _count(final, SUG), _count(final, LEAF), _count(final, "baseline")[1]
  settings = f"{word(len(final))} family x optimizer settings"
  lead = f"**The suggested alpha diverged on {suggested} of {n} fresh seeds** over the {settings}."
  if suggested == 0:
    lead = f"**The suggested alpha never diverged**: 0 of {n} fresh seeds over the {settings}."
  lead += f" The per-leaf alphas diverged on {leaf} of {leaf_n}." if leaf_n else ""
  grid = []
  for key, res in final.items():
    if g := diverged(res["runs"], BEST):
      (base, seeds), lr = _count(res["runs"], "baseline"), res["choices"]["grid_best"][0]
      where = f"{_setting(key)} seeds (lr {lr:g})"
      grid.append(f"{g} of {seeds} {where}, where the baseline diverged on {base} of {seeds}")
  tail = f"diverged on {'; on '.join(grid)}." if grid else "never diverged either."
  return f"- {lead} Grid-best HAM {tail}"


@table
def alpha_transfer_rho(results: Path) -> str:
  grid, final, ratio = _grid(results), _final(results), _ratio(results)
  gain = lambda b: f"{b['gain']:+.2f}" if b["finite"] else "n/a"  # noqa: E731
  rows, bins = [], _script("alpha_transfer").rho_bins(grid)
  for b in bins:
    note = f" (the {b['finite']} runs that did not diverge)" if 0 < b["finite"] < b["runs"] / 2 else ""
    opt = [f"{gain(b[o])} ({b[o]['diverged']}/{b[o]['runs']})" if b[o]["runs"] else "-" for o in OPTIMIZERS]
    e = f"{CLIP:g} (the clip)" if b["exponent_max"] >= CLIP else f"{b['exponent_max']:.2g}"
    label = _bin(b["lo"], b["hi"], f"above {b['lo']:g}")
    rows.append(" | ".join([label, str(b["runs"]), str(b["diverged"]), gain(b) + note, *opt, e]))
  header = f"""rho = alpha / alpha_unit | HAM runs | diverged | val acc - baseline at the same lr (points,
    mean of non-diverged) | {" | ".join(f"{name}: gain (diverged/runs)" for name in OPTIMIZERS.values())} |
    largest `exponent_max` during training (median)"""
  bins = [b for b in bins if b["finite"]]
  best = max(bins, key=lambda b: b["gain"])
  common = next(b for b in bins if b["diverged"] >= b["runs"] / 4)
  rule = next(b for b in bins if b["diverged"] > b["runs"] / 2)
  quiet = ", ".join(d1(b["gain"]) for b in bins if b["hi"] <= best["lo"])
  both = ", with either optimizer" if all(common[o]["diverged"] for o in OPTIMIZERS) else ""
  text = f"""Below `rho = {best["lo"]:g}` HAM does nothing measurable (mean change {quiet} points);
    `{best["lo"]:g} - {best["hi"]:g}` is the bin with the best mean gain ({d1(best["gain"])}); above
    {common["lo"]:g} divergence becomes common ({common["diverged"]} of {common["runs"]} runs) and above
    {rule["lo"]:g} it is the rule ({rule["diverged"]} of {rule["runs"]}){both}."""
  low = defaultdict(int)
  for key, runs in grid["runs"].items():
    for r in runs:
      if r["alpha"] > 0 and r["rho"] < 1 and r["diverged"]:
        low[key, r["lr"]] += 1
  if len(low) == 1:
    (key, lr), n = next(iter(low.items()))
    lost, seeds = _count(final[key]["runs"], "baseline")
    edge = f""", a learning rate at which its baseline itself diverged on {word(lost)} of {word(seeds)} test
      seeds"""
    text += f""" The {word(n)} divergences below `rho = 1` are all {_setting(key)} at lr
      {lr:g}{edge if lost and final[key]["choices"]["baseline_lr"] == lr else ""}: on a model trained at its
      edge of stability, any increase of the effective learning rate tips it over, and no alpha rule measured
      at initialisation sees that edge."""
  return f"""{md(header, rows)}\n\n{text} `suggest_alpha` uses `rho = {ratio:g}`,
    {"in" if best["lo"] <= ratio < best["hi"] else "outside"} the bin with the best mean gain and a factor
    {common["lo"] / ratio:g} below the bin where divergence becomes common; selecting the learning rate on
    validation (as the benchmark does) avoids the edge-of-stability case."""


def _best_val(rows: list[dict], keys: Sequence[str]) -> tuple[float, int]:
  """The best setting of ``keys`` by mean val acc (diverged: -1): its finished seeds' mean (%), diverged."""
  groups = defaultdict(list)
  for r in rows:
    groups[tuple(r[k] for k in keys)].append(r)
  if not groups:
    return float("nan"), 0
  best = max(groups.values(), key=lambda rs: mean_val_acc(rs, diverged=-1.0))
  return 100 * mean_val_acc(best, diverged=None), diverged(best)


def _ratio_gains(results: Path) -> tuple[list[float], dict[str, tuple[float, list]], dict[tuple, list]]:
  """Validation gains over the baseline at each target ratio: ratios, cells per setting, family means."""
  grid, final = _grid(results)["runs"], _final(results)
  tuned = {k: [r for r in res["suggested_tuning_runs"] if "ratio" in r] for k, res in final.items()}
  ratios = sorted({r["ratio"] for runs in tuned.values() for r in runs})
  by_key, gains = {}, defaultdict(list)
  for key, tuning in ((k, t) for k, t in tuned.items() if t):
    base = _best_val([r for r in grid[key] if r["alpha"] == 0], ["lr"])[0]
    cells = [_best_val([r for r in grid[key] if r["alpha"] != 0], ["lr", "alpha"])]
    for m in (SUG, LEAF):
      cells += [_best_val([r for r in tuning if (r["method"], r["ratio"]) == (m, x)], ["lr"]) for x in ratios]
    cells = [(v - base, d) for v, d in cells]
    if not any(np.isnan(v) for v, _ in cells):  # the means: over the families measured at every ratio
      for i, (gain, _) in enumerate(cells):
        gains[key.split("/")[1], i].append(gain)
    by_key[key] = base, cells
  return ratios, by_key, gains


@table
def alpha_transfer_ratios(results: Path) -> str:
  ratios, by_key, gains = _ratio_gains(results)
  rows = []
  for key, (base, cells) in by_key.items():
    cells = ["n/a" if np.isnan(v) else f"{v:+.1f}" + (f" ({d} div.)" if d else "") for v, d in cells]
    rows.append(" | ".join([_setting(key).replace("/", " / "), f"{base:.1f}", *cells]))
  for o, name in OPTIMIZERS.items():
    if gains[o, 0]:
      means = " | ".join(f"{np.mean(gains[o, i]):+.2f}" for i in range(1 + 2 * len(ratios)))
      rows.append(f"mean over the {len(gains[o, 0])} families with every ratio ({name}) |  | {means}")
  kinds = [f"{kind} rho = {x:g}" for kind in ("one alpha,", "per leaf,") for x in ratios]
  header = " | ".join(["family / optimizer", "baseline val acc (%)", "grid-tuned HAM", *kinds])
  default, seeds = _ratio(results), _grid(results)["argv"]["grid_seeds"]
  mean = {(o, x): float(np.mean(gains[o, 1 + i])) for o in OPTIMIZERS for i, x in enumerate(ratios)}
  n = word(len(gains["sgd", 0]))
  at = lambda o, xs: ", ".join(f"{x:g}: {d1(mean[o, x])}" for x in xs)  # noqa: E731
  best = {o: max(ratios, key=lambda x: mean[o, x]) for o in OPTIMIZERS}
  grows = all(mean["adamw", a] < mean["adamw", b] for a, b in zip(ratios, ratios[1:], strict=False))
  nxt = min(x for x in ratios if x > default)
  partial = [k for k, (_, c) in by_key.items() if k.endswith("/adamw") and any(np.isnan(v) for v, _ in c)]
  moved = ", ".join(
    f"{_family(k)} from " + " to ".join(d1(by_key[k][1][1 + ratios.index(x)][0]) for x in (default, nxt))
    for k in partial
  )
  grew = "grew with the ratio" if grows else f"was largest at {best['adamw']:g}"
  end = f"; measured at {default:g} and {nxt:g} only, the {moved})." if partial else ")."
  return f"""{md(header, rows)}\n\n(Validation accuracy minus the baseline's, points, mean over the tuning
    seeds at each method's best lr; div.: diverged seeds there, left out of the mean.)\n\nPer family the
    validation gains are noisy ({seeds} seeds), but the means separate the optimizers. **With SGD + momentum,
    {best["sgd"]:g} had the best mean gain** ({d1(mean["sgd", best["sgd"]])} points over the {n} families with
    every ratio; {at("sgd", [x for x in ratios if x != best["sgd"]])}); above `rho = 1` SGD runs start to
    diverge in the grid. **With AdamW the gain {grew}** ({at("adamw", ratios)}, over the same {n}
    families{end}"""


@table
def alpha_transfer_findings(results: Path) -> str:
  final, grid, default = _final(results), _grid(results), _ratio(results)
  tests, (ratios, _, means) = _transfer_tests(final), _ratio_gains(results)
  count, missed = _within(tests, SUG)
  missed_on = f"; missed on {listed([_cited(k, tests[k][SUG, BEST]) for k in missed])}." if missed else "."
  item = f"""**Within {WITHIN:g} points of grid-best HAM** (tuned over the whole lr x alpha grid): the
    suggested alpha on {count} settings{missed_on}"""
  sgd_missed = [(k, *final[k]["choices"]["grid_best"][:2]) for k in missed if k.endswith("/sgd")]
  if sgd_missed:
    rho = [r["rho"] for k, lr, a in sgd_missed for r in grid["runs"][k] if (r["lr"], r["alpha"]) == (lr, a)]
    larger = [np.mean(means["sgd", 1 + i]) for i, x in enumerate(ratios) if x > default]
    helped = "and" if max(larger) > np.mean(means["sgd", 1 + ratios.index(default)]) else "yet"
    item += f""" On the SGD misses grid-best HAM used alpha
      {"/".join(sorted({f"{a:g}" for _, _, a in sgd_missed}))}, `rho` {span(rho)}, more than the rule's
      {default:g}, {helped} larger ratios {"" if helped == "and" else "did not "}help SGD on validation (next
      table)."""
  count, missed = _within(tests, LEAF)
  missed = f"; missed on {listed([_cited(k, tests[k][LEAF, BEST]) for k in missed])}" if missed else ""
  item += f" The per-leaf alphas were within {WITHIN:g} points on {count} settings{missed}."
  vs_base, vs_one = ({k: t[pair] for k, t in tests.items()} for pair in ((SUG, "baseline"), (LEAF, SUG)))
  items = [item, _raw_alpha(grid["runs"]), _against_baseline(vs_base), _per_leaf_finding(final, grid, vs_one)]
  return "\n".join(f"- {item}" for item in items)


def _raw_alpha(grid: dict[str, list]) -> str:
  """In raw alpha: the largest SGD lr at alpha 100, the smallest AdamW lr at the largest alpha, per family."""

  def cell(key: str, lr: float, alpha: float) -> tuple[int, int, float]:
    runs = {(r["lr"], r["alpha"], r["seed"]): r for r in grid[key]}
    sel = [r for r in grid[key] if (r["lr"], r["alpha"]) == (lr, alpha)]
    ok = [100 * (r["val_acc"] - runs[lr, 0.0, r["seed"]]["val_acc"]) for r in sel if not r["diverged"]]
    return diverged(sel), len(sel), float(np.mean(ok)) if ok else float("nan")

  keys = sorted(grid, key=lambda k: list(FAMILIES).index(k.split("/")[0]))
  sgd, adamw = ([k for k in keys if k.endswith(o)] for o in ("/sgd", "/adamw"))
  lr = max(r["lr"] for k in sgd for r in grid[k])
  lost = [k for k in sgd if cell(k, lr, 100.0)[0]]
  where = "in every family" if len(lost) == len(sgd) else f"on {listed([_family(k) for k in lost])}"
  a_lr, top = min(r["lr"] for k in adamw for r in grid[k]), max(r["alpha"] for k in adamw for r in grid[k])
  parts = []
  for k in adamw:
    if any(r["lr"] == a_lr for r in grid[k]):
      d, n, gain = cell(k, a_lr, top)
      parts.append(f"{d1(gain)} ({_family(k)}{f'; {d} of {n} seeds diverged' if d else ''})")
  return f"""In raw alpha, with SGD + momentum at lr {lr:g}, alpha = 100 diverged (on at least one of the
    seeds) {where}; AdamW at lr {a_lr:g} and alpha = {top:g} changed validation accuracy by {listed(parts)}
    points. The paper's 200 is far outside the stable region of these models with SGD."""


def _against_baseline(tests: dict[str, dict[str, Any]]) -> str:
  """HAM at the suggested alpha against the baseline: significant gains, significant losses, the rest."""
  up, down = ([k for k, t in tests.items() if significant(t, sign)] for sign in (1, -1))
  rest = sorted((t["p_value"], k) for k, t in tests.items() if k not in up + down)
  text = f"**HAM beats the baseline** significantly ({P_SIGNIFICANT}, suggested alpha) on "
  text += listed([_cited(k, tests[k]) for k in up]) if up else "no setting"
  hurts = f". It **hurts** {listed([_cited(k, tests[k]) for k in down])}."
  text += hurts if down else "; it never hurts significantly."
  if rest:
    text += f""" Elsewhere the differences are not significant at these seed counts (the closest is
      {_cited(rest[0][1], tests[rest[0][1]])})."""
  return text


def _per_leaf_finding(final: dict[str, Any], grid: dict[str, Any], tests: dict[str, dict[str, Any]]) -> str:
  """Per-leaf against one alpha: settings more than `WITHIN` apart, the rest, the unit alphas."""

  def notes(k: str) -> list[str]:
    ch, (lost, n) = final[k]["choices"], _count(final[k]["runs"], "baseline")
    out = ["at another learning rate"] if ch["per_leaf_lr"] != ch["suggested_lr"] else []
    out += [f"where the baseline diverged on {lost} of {n} seeds at lr {ch['baseline_lr']:g}"] * bool(lost)
    return out

  far = {k: t for k, t in tests.items() if abs(t["mean_diff"]) > WITHIN}
  kind = lambda t: (t["mean_diff"] > 0, t["p_value"] < SIGNIFICANCE)  # noqa: E731
  groups = {(True, True): "significantly better than the single alpha on"}
  groups |= {(True, False): "better, not significantly, on", (False, True): "significantly worse on"}
  groups[False, False] = "worse, not significantly, on"
  clauses = [
    f"{what} {listed([_cited(k, t, *notes(k)) for k, t in far.items() if kind(t) == g])}"
    for g, what in groups.items()
    if any(kind(t) == g for t in far.values())
  ]
  rest = [abs(t["mean_diff"]) for k, t in tests.items() if k not in far]
  clauses += [f"within {max(rest):.2f} points elsewhere"] if rest else []
  text = "**One alpha or one per leaf?** "
  text += "Neither wins everywhere. " if any(t["mean_diff"] < -WITHIN for t in far.values()) else ""
  text += f"On the fresh seeds the per-leaf alphas were {'; '.join(clauses)}."
  key, seed_lr = "embed_mlp/sgd", "1000/0.1"
  if key in tests and seed_lr in grid.get("alpha_unit_leaves", {}).get(key, {}):
    units = [u for u in grid["alpha_unit_leaves"][key][seed_lr] if u > 0]  # the kernels, not the biases
    text += f""" On the embedding + MLP the embedding did not dominate the single alpha (per-leaf unit alphas
      at the first tuning seed and lr 0.1 with SGD: {units[0]:.3g} for the embedding,
      {" and ".join(f"{u:.2g}" for u in units[1:-1])} for the hidden layers, {units[-1]:.2g} for the head;
      {grid["alpha_unit"][key][seed_lr]:.2g} for the whole), and per-leaf alphas changed
      {d1(tests[key]["mean_diff"])} points there."""
  return text + " The single alpha stays the default."


def _grid_facts(results: Path) -> dict[str, Any]:
  """From the grid: seeds, default alpha, largest never-diverged alpha, the next one's losses, alpha 100."""
  data = _grid(results)
  grid = data["runs"]
  alphas = sorted({r["alpha"] for rs in grid.values() for r in rs if r["alpha"] > 0})
  lost = {
    a: sorted({(k, r["lr"]) for k, rs in grid.items() for r in rs if r["alpha"] == a and r["diverged"]})
    for a in alphas
  }
  safe = alphas[min([i for i, a in enumerate(alphas) if lost[a]], default=len(alphas)) - 1]
  nxt, sgd = alphas[alphas.index(safe) + 1], [k for k in grid if k.endswith("/sgd")]
  lr = max(r["lr"] for k in sgd for r in grid[k])
  facts = dict(seeds=data["argv"]["grid_seeds"], safe=safe, next=nxt, sgd=len(sgd), lr=lr)
  facts["default"] = inspect.signature(ham_optax.ham).parameters["alpha"].default
  facts["next_lost"] = listed([f"{_setting(k)} at lr {x:g}" for k, x in lost[nxt]])
  return facts | {"lost_100": [k for k in sgd if (k, lr) in lost[100.0]]}


@table
def alpha_short_version(results: Path) -> str:
  g, (lost, n) = _grid_facts(results), _count(_final(results), SUG)
  never = f"its alpha {'never diverged (0' if not lost else f'diverged ({lost}'} of {n} fresh seeds)"
  place, safe = "the largest value of the grid below that never diverged", g["default"] == g["safe"]
  place = f"{place} on any model, optimizer and learning rate" if safe else f"not {place} ({g['safe']:g} is)"
  return f"""**Short version.** Call {{func}}`ham_optax.suggest_alpha` once, before training, with your loss,
    initial parameters, a few minibatches, the inner optimizer and the learning rate; pass the result to
    `ham_optax.ham`. It costs 20 gradient evaluations, is deterministic, and on every model and optimizer
    measured below {never}. The library default, `alpha={g["default"]:g}`, is {place}, and so weak that HAM
    does little with it (`alpha={g["next"]:g}` already diverged on {g["next_lost"]}). The paper's `alpha=200`
    is available as `ham_optax.PAPER_IMAGENET_ALPHA`: it was tuned for ResNet-50 on ImageNet and is far too
    large for small models."""


@table
def readme_alpha(results: Path) -> str:
  g = _grid_facts(results)
  where = "on all of them" if len(g["lost_100"]) == g["sgd"] else f"on {len(g['lost_100'])} of {g['sgd']}"
  never = "it never diverged on any model, optimizer and learning rate measured; "
  never *= g["default"] <= g["safe"]
  return f"""One alpha does not fit all models: what matters is the size of HAM's mirror step relative to the
    inner optimizer's step, and that depends on the model's width, initialisation and normalisation and on the
    optimizer. The paper's `alpha=200` (ResNet-50 on ImageNet, SGD lr 0.1; `ham_optax.PAPER_IMAGENET_ALPHA`)
    is far too large for the small MNIST-1D models measured here: with SGD + momentum at lr {g["lr"]:g},
    `alpha=100` diverged (on at least one of {word(g["seeds"])} seeds) {where}. The library default
    `alpha={g["default"]:g}` is mild ({never}`alpha={g["next"]:g}` already diverged on {g["next_lost"]}), so
    HAM does little with it: choose alpha for your model."""


@table
def readme_alpha_transfer(results: Path) -> str:
  final, ratio = _final(results), _ratio(results, "alpha_transfer_adamw")
  tests, now = _transfer_tests(final), _transfer_tests(_final(results, "alpha_transfer_adamw"))
  (lost, n), (count, _) = _count(final, SUG), _within(tests, SUG)
  leaf = [t[LEAF, SUG]["mean_diff"] for t in tests.values() if t[LEAF, SUG]["p_value"] < SIGNIFICANCE]
  ok = sum(t[SUG, BEST]["mean_diff"] >= -WITHIN for t in now.values())
  return f"""The alpha-transfer benchmark trains {word(len(final) // 2)} model families on MNIST-1D
    ({", ".join(_family(k) for k in final if k.endswith("/sgd"))}), each with SGD + momentum and with AdamW.
    The suggested alpha diverged on {lost} of {n} fresh seeds over the {len(final)} settings and came within
    {WITHIN:g} points of HAM with alpha and lr grid-tuned (a larger tuning budget) in {count}. One alpha per
    leaf and `target_ratio={ratio:g}` help on some models and hurt on others: per-leaf alphas were
    significantly better than one alpha in {sum(d > 0 for d in leaf)} settings and significantly worse in
    {sum(d < 0 for d in leaf)}; with AdamW, `target_ratio={ratio:g}` reached grid-tuned HAM on {ok} of
    {len(now)} families and fell short on the {"other" if len(now) - ok == 1 else "others"}. The measurements
    (the stable region, per family and optimizer, where HAM does not beat the baseline) are in [the alpha
    guide](docs/guides/choosing_alpha.md)."""


@table
def alpha_transfer_mainjob(results: Path) -> str:
  runs = defaultdict(list)
  for path in sorted((results / "alpha_transfer").glob("mainjob*.json")):
    for r in json.loads(path.read_text())["runs"]:
      runs[r["setting"]].append(r)
  rows = []
  for setting, rs in runs.items():
    model, sparsifier, lr, *epochs = setting.split(":")
    pruning = "dense" if sparsifier == "none" else f"90 % {sparsifier} (ERK)"
    v = {key: [r[key] for r in rs] for key in rs[0]}
    rows.append(
      f"{model}, {pruning}, {lr}, {epochs[0] if epochs else 30} | {len(rs)} | {min(v['alpha']):.2f} - "
      f"{max(v['alpha']):.2f} | {sum(v['diverged'])} | {100 * np.mean(v['val_acc']):.1f} | "
      f"{max(v['ham_exponent_max']):.3f} | {max(v['ham_clip_fraction_max']):g} | "
      f"{np.mean(v['ham_inverse_metric_mean_final']):.3f}"
    )
  header = """setting (model, pruning, lr, epochs) | seeds | suggested alpha | diverged | val acc (%) |
    largest `exponent_max` | `clip_fraction` | final `inverse_metric_mean`"""
  every = [r for rs in runs.values() for r in rs]
  lost, clip = sum(r["diverged"] for r in every), max(r["ham_clip_fraction_max"] for r in every)
  top = np.ceil(10 * max(r["ham_exponent_max"] for r in every)) / 10
  sparse = load(results, "sparse_training")
  bare = [t for t in sparse["tuning"] if t["alpha"] == t["sign_in"] == ""]
  ref = {(t["method"], t["lr"]): t["val_acc_mean"] for t in bare}
  pruned, cited = f"{100 * sparse['argv']['sparsity']:.0f} % random pruning", []
  for model, sparsifier, lr, *_ in (s.split(":") for s in runs):
    method = "dense" if sparsifier == "none" else sparsifier
    if model == sparse["argv"]["model"] and (method, float(lr)) in ref:
      kind = "dense" if method == "dense" else pruned
      cited.append(f"{100 * ref[method, float(lr)]:.1f} % ({kind}, lr {lr})")
  seeds = "-".join(str(s) for s in sparse["tuning_seeds"][:: max(1, len(sparse["tuning_seeds"]) - 1)])
  epochs = _grid(results)["argv"]["mainjob_epochs"]
  short = sorted({(s.split(":")[0], int(s.split(":")[3])) for s in runs if len(s.split(":")) > 3})
  text = f"""{"No seed diverged" if not lost else f"{lost} seeds diverged"},
    {"no entry reached the clip" if not clip else "some entries reached the clip"}, and the largest exponent
    stayed below {top:g}. For reference, the same loop without HAM reached {listed(cited)} mean validation
    accuracy on tuning seeds {seeds} (`benchmarks/results/sparse_training/results.json`)."""
  for model, n in short:
    text += f""" The {NAMES.get(model, model)} was checked over {n} of the job's {epochs} epochs (the learning
      rate is highest, and divergence likeliest, early in the cosine schedule)."""
  return md(header, rows) + "\n\n" + text


# How to read HAM's diagnostics, from the alpha-transfer runs (each HAM run logs `metrics.ham_diagnostics`' global
# `exponent_max` at its first step, its largest value and the largest `clip_fraction`): by `exponent_max`, how
# many runs failed (diverged, or collapsed: validation accuracy at most 20 %, the benchmark's definition) and how
# the others compare with the baseline of the same setting, learning rate and seed (alpha = 0, same init and data).

EDGES = (0.0, 0.01, 0.1, 0.5, 1.0, CLIP)  # the bins of `exponent_max`, then "at the clip"
LOST_POINTS = 3.0


def _outcome(run: dict[str, Any]) -> str:
  if not np.all(np.isfinite(np.asarray(run["epoch_loss"], float))):
    return "diverged"
  return "collapsed" if run["val_acc"] <= 0.2 else "healthy"


def _in_bin(value: float, lo: float, hi: float) -> bool:
  at_clip = value >= CLIP * (1 - 1e-6)
  return at_clip if lo >= CLIP else (lo <= value < hi and not at_clip)


def _by_exponent(runs: list[dict[str, Any]], key: Callable[[dict], float], what: str) -> tuple[str, float]:
  """HAM runs by bin of ``key(run)``: failures, paired change against the baseline; lowest bin's loss."""
  pair = lambda r: (r["setting"], r["source"], r["lr"], r["seed"])  # noqa: E731
  base, rows, quiet = {pair(r): r for r in runs if r["alpha"] == 0}, [], None
  for lo, hi in [*zip(EDGES[:-1], EDGES[1:], strict=True), (CLIP, np.inf)]:
    sel = [r for r in runs if r["alpha"] != 0 and np.isfinite(key(r)) and _in_bin(key(r), lo, hi)]
    diffs, loss = [], []
    for r, b in ((r, base.get(pair(r))) for r in sel):
      if b is not None and _outcome(r) == "healthy" and _outcome(b) == "healthy":
        diffs.append(100.0 * (r["val_acc"] - b["val_acc"]))
        loss.append(100.0 * abs(r["epoch_loss"][-1] - b["epoch_loss"][-1]) / b["epoch_loss"][-1])
    quiet = (float(np.median(loss)) if loss else float("nan")) if quiet is None else quiet
    lost = f"{int(np.sum(np.asarray(diffs) < -LOST_POINTS))} of {len(diffs)}"
    cells = [f"{np.median(diffs):+.2f}", lost, f"{np.median(loss):.2g} %"] if diffs else ["-"] * 3
    failed = sum(_outcome(r) != "healthy" for r in sel)
    label = _bin(lo, hi, f"at the clip ({CLIP:g})")
    rows += [" | ".join([label, str(len(sel)), str(failed), *cells])] * bool(sel)
  header = f"""{what} | HAM runs | failed (diverged or collapsed) | val acc - baseline, median (points) | lost
    more than {LOST_POINTS:g} points | final training loss vs baseline, median change"""
  return md(header, rows), quiet


@table
def alpha_diagnostics(results: Path) -> str:
  grid = _grid(results)["runs"]
  runs = [{**r, "setting": k, "source": "grid.json"} for k, rows in grid.items() for r in rows]
  for path in sorted((results / "alpha_transfer").glob("final*.json")):  # pairs stay within one file
    for k, v in json.loads(path.read_text())["results"].items():
      runs += [{**r, "setting": k, "source": path.name} for r in v["runs"]]
  ham = [r for r in runs if r["alpha"] != 0]
  first, _ = _by_exponent(runs, lambda r: r["step0"]["exponent_max"], "`exponent_max` at the first step")
  overall = lambda r: r["exponent_max_overall"]  # noqa: E731
  most, quiet = _by_exponent(runs, overall, "largest `exponent_max` during training")
  finite = [r for r in ham if np.isfinite(r["clip_fraction_max"])]
  t, b = ([_outcome(r) != "healthy" for r in finite if (r["clip_fraction_max"] > 0) == at] for at in (1, 0))
  low = defaultdict(list)  # the alphas of the runs that failed with a first-step exponent_max below 1
  for r in ham:
    if _outcome(r) != "healthy" and r["step0"]["exponent_max"] < 1.0:
      low[r["setting"], r["lr"]].append(r["alpha"])
  low = [
    f"{k} at lr {lr:g} ({len(a)} run{'s' * (len(a) > 1)}; alpha {', '.join(f'{x:g}' for x in sorted(set(a)))})"
    for (k, lr), a in sorted(low.items())
  ]
  intro = f"""{len(ham)} HAM runs of the alpha-transfer benchmark (grid and fresh seeds;
    {sum(_outcome(r) == "diverged" for r in ham)} diverged, so only their first step is logged), by the global
    `exponent_max` at the first step (all runs) and by its largest value during training (the runs that stayed
    finite); each run is compared with the baseline of the same setting, learning rate and seed."""
  facts = f"""Of the finite runs whose exponent reached the clip at some step (`clip_fraction > 0`), {sum(t)}
    of {len(t)} collapsed; of those that never did, {sum(b)} of {len(b)}. Every failed run below a first-step
    `exponent_max` of 1 was one of: {"; ".join(low)}. With the largest `exponent_max` below {EDGES[1]:g} the
    final training loss moved by a median {quiet:.2g} % from the baseline's."""
  return "\n\n".join([intro, first, most, facts])


# --- Cost (docs/guides/cost.md): the overhead benchmark, `benchmarks/results/overhead/overhead.json` ---------

INNER = {"sgdm": "SGD+momentum", "adamw": "AdamW"}
OVERHEAD = ("overhead", "overhead.json")  # the study and file under benchmarks/results


def _x(r: dict[str, Any], bold: bool = False, key: str = "ratio") -> str:
  """``1.64x [1.56, 1.71]``: the median ratio ``r[key + "_median"]`` and its interval ``r[key + "_ci95"]``."""
  median, ci = r[key + "_median"], r[key + "_ci95"]
  return f"{f'**{median:.2f}x**' if bold else f'{median:.2f}x'} [{ci[0]:.2f}, {ci[1]:.2f}]"


def _kept(reps: int, load: dict[str, Any]) -> str:
  return f"{reps}" + (f" ({load['skipped']} skipped)" if load.get("skipped") else "")


def _timing_row(label: str, r: dict[str, Any], digits: int, extra: str) -> str:
  """``label``, bare and HAM medians, HAM / bare's paired ratio [95 % CI], ``extra``, the repetitions kept."""
  ms = [f"{r['variants'][k]['median_ms']:.{digits}f} ms" for k in ("inner", "ham")]
  return " | ".join([label, *ms, _x(r["variants"]["ham"], bold=True), extra, _kept(r["reps"], r["load"])])


@table
def cost_per_weight(results: Path) -> str:
  update, metrics = load(results, *OVERHEAD)["update"], ("flops", "transcendentals", "bytes accessed")
  keys = {
    "inner": "bare",
    "paper": "+ the paper's step, unguarded",
    "ham": "+ HAM",
    "ham_extra": "HAM's extra",
  }
  rows = [
    f"{label}, {what} | " + " | ".join(f"{update[o]['per_weight'][key][m]:.2f}" for m in metrics)
    for o, label in INNER.items()
    for key, what in keys.items()
    if key in update[o]["per_weight"]
  ]
  return md(" | ".join(["per weight", *metrics]), rows)


ACCELERATORS = ("gpu", "tpu")  # the files of results/accelerator_kernels


def _accelerators(results: Path) -> tuple[dict[str, Any], dict[str, Any]]:
  """The compiles for each accelerator, and HAM against the bare optimizer there (over both optimizers and both
  accelerators): as many loops over the arrays, one per leaf, the extra scalar ops per accelerator, the largest
  extra bytes per weight, and whether every input array is read by one op."""
  res = {a: load(results, "accelerator_kernels", f"{a}.json") for a in ACCELERATORS}
  pairs = [(r[o]["ham"], r[o]["inner"], r["n_leaves"]) for r in res.values() for o in INNER]
  return res, {
    "same_loops": all(h["array_fusions"] == b["array_fusions"] for h, b, _ in pairs),
    "per_leaf": all(h["array_fusions"] == n for h, _, n in pairs),
    "scalars": {
      a: sorted({r[o]["ham"]["scalar_kernels"] - r[o]["inner"]["scalar_kernels"] for o in INNER})
      for a, r in res.items()
    },
    "more_bytes": max(abs(h["kernel_bytes_per_weight"] - b["kernel_bytes_per_weight"]) for h, b, _ in pairs),
    "single_pass": all(h["max_kernels_reading_an_input"] == 1 for h, _, _ in pairs),
  }


@table
def cost_accelerator_kernels(results: Path) -> str:
  res, ham = _accelerators(results)
  keys = {
    "inner": "bare",
    "paper": "+ the paper's step, unguarded",
    "ham": "+ HAM",
    "mw_spred": "m * w (spred)",
  }
  cell = lambda r: f"{r['array_fusions']} / {r['scalar_kernels']} / {r['kernel_bytes_per_weight']:.2f}"  # noqa: E731
  first = res[ACCELERATORS[0]]  # the `exp` count is the program's, the same on every accelerator
  rows = [
    f"{INNER[o]}, {what} | {' | '.join(cell(r[o][key]) for r in res.values())} | {first[o][key]['exponential_ops']}"
    for o in INNER
    for key, what in keys.items()
    if key in first[o]
  ]
  targets = " | ".join(
    f"{r['target']}: loops over arrays / scalar ops / bytes per weight" for r in res.values()
  )
  cols = f"update, compiled ({first['n_leaves']} leaves) | {targets} | `exp` ops"
  loops = (
    "as many loops over the arrays as the bare optimizer's (one per leaf)"
    if ham["same_loops"] and ham["per_leaf"]
    else "other loops over the arrays than the bare optimizer's"
  )
  scalars = " and ".join(f"{' / '.join(map(str, ham['scalars'][a]))} on the {res[a]['target']}" for a in res)
  more = ham["more_bytes"]
  verdict = f"""On both, with either optimizer, HAM's update has {loops},
    {"each reading every input array once" if ham["single_pass"] else "some reading an input array twice"},
    {"the same bytes per weight" if more < 5e-3 else f"up to {more:.2f} bytes per weight more"} and a few more
    scalar ops for its step count ({scalars})."""
  return f"{md(cols, rows)}\n\n{verdict}"


@table
def cost_update_reading(results: Path) -> str:
  res = load(results, *OVERHEAD)
  weights = [res["update"][o]["per_weight"] for o in INNER]
  ratios = [w["ham"]["bytes accessed"] / w["inner"]["bytes accessed"] for w in weights]
  extra = " / ".join(f"+{100 * (x - 1):.0f}{GLUE}%" for x in ratios)
  d = res["bf16_decay"]
  paper = " / ".join(f"{res['update'][o]['variants']['paper']['ratio_median']:.2f}x" for o in INNER)
  n, u = res["update"]["n_floats"], res["update"]["sgdm"]  # GB/s from XLA's byte count and the median time
  rate = {
    k: u["per_weight"][k]["bytes accessed"] * n / v["median_ms"] / 1e6 for k, v in u["variants"].items()
  }
  return f"""The update is a small part of a training step, so the train-step ratios stay near 1. What the
    update's ratio is made of: the extra memory traffic (re-reading `g`, {extra} bytes with
    {" / ".join(INNER.values())}) is at its floor; the rest is compute inside the fused pass, the one exact
    `exp` per weight (which XLA:CPU does not overlap with memory traffic) and the check on `p + update`. The
    paper's step as written, without the guards (the `paper_step` column), already costs {paper}: the clip of
    `x_half` and the check on `p + update` add the difference. With SGD+momentum the bare update moves
    {rate["inner"]:.0f}{GLUE}GB/s against the {res["roofline"]["stream_GBps"]:.0f}{GLUE}GB/s this machine streams,
    the paper's step {rate["paper"]:.0f}{GLUE}GB/s and HAM {rate["ham"]:.0f}{GLUE}GB/s: their pass is bound by
    compute, not by memory.
    `benchmarks/README.md` has the roofline (bytes per step, `exp` throughput), the memory figures, the bf16
    numbers and the published PyTorch wrapper's per-tensor loop measured on the same shapes. With bf16
    parameters the decay `exp(-lr * beta)` rounds away (after {d["steps"]} beta-only steps the factor is
    {d["bf16_params"]["median_factor_after_steps"]:.5f} instead of {d["exact_factor"]:.5f}; f32 master weights
    give {d["f32_master"]["median_factor_after_steps"]:.5f}): use f32 master weights."""


@table
def cost_update(results: Path) -> str:
  res = load(results, *OVERHEAD)
  u, tree = res["update"], "ResNet-50-shaped" if res["tree"] == "resnet50" else res["tree"]
  refs = {
    o: " | ".join(_x(v[k]) if k in (v := u[o]["variants"]) else "-" for k in ("paper", "mw_spred"))
    for o in INNER
  }
  rows = [_timing_row(label, u[o], 2, refs[o]) for o, label in INNER.items()]
  header = f"""update, {tree} tree ({u["n_floats"]:,} floats, {u["dtype"]}) | bare inner | + HAM | HAM / bare
    (median paired ratio [95 % CI]) | the paper's step, unguarded / bare | m * w (spred) / bare | repetitions
    kept"""
  return md(header, rows)


@table
def cost_train_step(results: Path) -> str:
  rows = []
  for model, m in load(results, *OVERHEAD)["train_step"].items():
    for o, label in INNER.items():
      if isinstance(m, dict) and o in m:
        ham = m[o]["variants"]["ham"]
        cpu = f"{ham['cpu_ratio_median']:.2f}x" if "cpu_ratio_median" in ham else "-"
        rows.append(_timing_row(f"{model} (batch {m['batch']}), {label}", m[o], 1, cpu))
  header = """train step | bare inner | + HAM | HAM / bare, wall (median paired ratio [95 % CI]) | HAM / bare,
    CPU time | repetitions kept"""
  return md(header, rows)


@table
def cost_vector_width(results: Path) -> str:
  vw, rows = load(results, *OVERHEAD)["vector_width"], []
  for o, label in INNER.items():
    r = vw[o]
    same = "yes" if all(r["bit_identical_to_default"].values()) else "**no**"
    ratios = [_x(r[k], key="paired_ratio") for k in ("inner_vw512_over_default", "ham_vw512_over_default")]
    ratios = [_x(r["variants"]["ham"]), _x(r["ham_over_inner_vw512"], key="paired_ratio"), *ratios]
    rows.append(" | ".join([label, *ratios, same, _kept(r["ham_over_inner_vw512"]["reps"], r["load"])]))
  header = """update | HAM / bare, default build | HAM / bare, 512-bit build | 512-bit / default, bare |
    512-bit / default, HAM | bit-identical to the default build | repetitions kept"""
  avx = {True: "yes", False: "no", None: "unknown"}[vw["cpu_flags_avx512f"]]
  return f"{md(header, rows)}\n\n(Median paired ratios [95 % CI]; the CPU has AVX-512: {avx}.)"


@table
def readme_cost(results: Path) -> str:
  res = load(results, *OVERHEAD)
  u, vw, torch = res["update"], res["vector_width"], res["torch_peer"]

  def both(ratio: Callable[[str], float], digits: int = 2) -> str:  # SGD+momentum / AdamW
    return " / ".join(f"{ratio(o):.{digits}f}x" for o in INNER)

  extra, (k, ham) = u["sgdm"]["per_weight"]["ham_extra"], _accelerators(results)
  fused = ham["same_loops"] and ham["per_leaf"] and ham["single_pass"] and ham["more_bytes"] < 5e-3
  gpu = f"""compiled for an {" and a ".join(r["target"] for r in k.values())} it {"is" if fused else "is not"}
    one loop per leaf, as the bare optimizer's, with no extra bytes: `benchmarks/accelerator_kernels.py`"""
  same = ", bit-identical," * all(v for o in INNER for v in vw[o]["bit_identical_to_default"].values())
  return f"""{u["sgdm"]["extra_state_bytes"]} bytes of optimizer state; per weight, {extra["flops"]:.0f}
    flops, {WORDS[round(extra["transcendentals"])]} `exp` and one more read of the gradient
    ({extra["bytes accessed"]:.0f} bytes) over the bare optimizer (XLA:CPU's count of the compiled update, held
    by a test; {gpu}). On a CPU the update is {both(lambda o: u[o]["variants"]["ham"]["ratio_median"])} (SGD+momentum /
    AdamW) the bare inner update on a ResNet-50-shaped tree
    ({both(lambda o: vw[o]["ham_over_inner_vw512"]["paired_ratio_median"])}{same} with the XLA:CPU option
    `xla_cpu_prefer_vector_width=512`), a ResNet-18 train step
    {both(lambda o: res["train_step"]["ResNet18"][o]["variants"]["ham"]["ratio_median"])}; the published
    wrapper's per-tensor semantics in PyTorch cost {both(lambda o: torch[o]["paired_ratio_median"], 0)} its
    bare step (`python benchmarks/overhead.py`):"""


@table
def overhead_protocol(results: Path) -> str:
  res = load(results, *OVERHEAD)
  steps = res["train_step"]
  reps = [res["update"]["sgdm"]["reps"], steps["MLP"]["sgdm"]["reps"], steps["ResNet18"]["sgdm"]["reps"]]
  reps += [res["update_bf16"]["sgdm"]["reps"], res["torch_peer"]["sgdm"]["reps"]]
  what = ("the update", "the small train steps", "ResNet-18", "bf16", "torch")
  return f"""with `inner` = `optax.sgd(0.1, momentum=0.9)` ("sgdm") and `optax.adamw(1e-3,
    weight_decay=1e-4)`, and `ham(inner, lr, alpha={res["alpha"]:g}, beta={res["beta"]:g})`. Every time is the
    median over repetitions ({", ".join(f"{n} for {w}" for n, w in zip(reps, what, strict=True))}); every
    ratio is the median (with its 25-75{GLUE}% range, and a 95{GLUE}% interval for the update and the train
    steps) of the **per-repetition paired ratio** to `inner`. Process CPU time is recorded next to wall time
    (`cpu` ratios). XLA's own accounting of each compiled program (`memory_analysis()`, `cost_analysis()`,
    fusion and op counts) is stored in the JSON. All figures are from a CPU (`jax.devices()` =
    `{res["devices"]}`, {res["cpu_count"]} cores); the script runs unchanged on GPU/TPU."""


@table
def sparsity_overhead(results: Path) -> str:
  res = load(results, "sparsity_overhead", "timings.json")
  a, t = res["args"], res["seconds_per_step"]
  x = {k: v / t["ham(sgd)"] for k, v in t.items()}
  between = [v for k, v in x.items() if k.endswith("(ham)")]
  rows = [f"{k} | {1e3 * v:.2f} | {x[k]:.2f}x" for k, v in t.items()]
  table = md("transform | ms / step | vs ham(sgd)", rows)
  return f"""`python benchmarks/sparsity_overhead.py` ({a["layers"]} layers of {a["width"]} x {a["width"]}
    kernels plus biases, {res["n_params"] / 1e6:.1f} M parameters; median over {a["repeats"]} timings of
    {a["steps"]} jitted updates; unpaired, so use `overhead.py` for HAM's own cost):\n\n{table}\n\nThese
    medians are unpaired. Between mask updates the sparsifiers cost {min(between):.2f}x-{max(between):.2f}x a
    `ham(sgd)` step here (the mask-update branch sits in a compiled `lax.cond`); a RigL drop-and-grow (top-k
    over each layer) costs ~{round(x["rigl(ham), every step a mask update"], -1):.0f} plain steps, paid once
    every `update_every` steps (100 by default)."""


# --- Steepest mirror flows and graphons (docs/guides/mirror_flows_and_graphons.md) ---------------------------

ESCAPE_LRS = (1e-4, 4.6e-4, 2.2e-3, 1e-2, 2.2e-2, 1e-1, 2.2e-1, 4.6e-1)  # the columns shown (the grid has 13)
ESCAPE_SHOWN = ("GD", "sign", "Adam", "HAM")  # AdamW's rows are compared with Adam's in the text


@table
def mirror_flows_escape(results: Path) -> str:
  res = load(results, "mirror_flows")
  lrs, fmt = res["settings"]["lrs"], _script("mirror_flows")._fmt_escape
  columns = [min(range(len(lrs)), key=lambda i, lr=lr: abs(np.log(lrs[i] / lr))) for lr in ESCAPE_LRS]
  rows = [[*key.split("/L"), *map(fmt, np.asarray(s)[:, columns].T)] for key, s in res["escape"].items()]
  header = ["optimizer", "L", *(("lr " if i == 0 else "") + sci(lrs[c], True) for i, c in enumerate(columns))]
  return markdown_table(header, [row for row in rows if row[0] in ESCAPE_SHOWN])


@table
def mirror_flows_adamw_note(results: Path) -> str:
  res = load(results, "mirror_flows")
  lrs, esc = res["settings"]["lrs"], {k: np.asarray(v) for k, v in res["escape"].items()}
  pair = {L: (esc[f"Adam/L{L}"], esc[f"AdamW/L{L}"]) for L in res["settings"]["depths"]}
  close, gap = [], 0  # the lrs before the first divergence of either, and the largest gap in steps there
  for i, lr in enumerate(lrs):
    if any((a[:, i] == -2).any() or (b[:, i] == -2).any() for a, b in pair.values()):
      break
    both = [np.abs(a[:, i] - b[:, i])[(a[:, i] >= 0) & (b[:, i] >= 0)] for a, b in pair.values()]
    gap = max(gap, *(int(d.max()) for d in both if d.size))
    close.append(lr)
  i = len(close)
  text = f"(AdamW's escape steps are within {gap} of Adam's in every seed up to lr {close[-1]:.2g}"
  if i < len(lrs):
    saved = [str(L) for L, (a, b) in pair.items() if (a[:, i] == -2).any() and (b[:, i] >= 0).all()]
    lost = [str(L) for L, (a, b) in pair.items() if (b[:, i] == -2).any() and (a[:, i] >= 0).all()]
    s = "s" * (len(saved) > 1)
    parts = [f"escapes in every seed at depth{s} {listed(saved)} where Adam diverged in some"]
    parts = parts * bool(saved) + [f"diverges at depth {listed(lost)} where Adam escaped"] * bool(lost)
    text += f"; at {lrs[i]:.2g} AdamW {' and '.join(parts) or 'differs from Adam'}"
  return f"""{text}; sign descent at large steps oscillates without halving the loss, which counts as
    "stalled".)"""


@table
def mirror_flows_escape_reading(results: Path) -> str:
  res = load(results, "mirror_flows")
  lrs, depths, steps = (res["settings"][k] for k in ("lrs", "depths", "steps"))
  first = {}  # per row: the smallest lr at which every seed escaped, and the smallest at which some diverged
  for k, a in ((k, np.asarray(v)) for k, v in res["escape"].items()):
    escaped = [lr for i, lr in enumerate(lrs) if (a[:, i] >= 0).all()]
    lost = [lr for i, lr in enumerate(lrs) if (a[:, i] == -2).any()]
    first[k] = next(iter(escaped), None), next(iter(lost), None)
  steep = [first[f"{m}/L{L}"][0] for m in ("sign", "Adam") for L in depths]
  holds = None not in steep and first[f"GD/L{depths[-1]}"][0] is None
  gd = []
  for L in depths:
    lr = first[f"GD/L{L}"][0]
    if lr is None:
      gd.append(f"at depth {L} it escapes at no stable learning rate in {steps} steps")
      continue
    x = [lr / first[f"{m}/L{L}"][0] for m in ("sign", "Adam")]
    times = span(x, ".0f") if round(min(x)) != round(max(x)) else f"{x[0]:.0f}"
    gd.append(f"about {times}x larger at depth {L} (first escape at {sci(lr, True)})")
  same = all(first[f"HAM/L{L}"][0] == first[f"GD/L{L}"][0] for L in depths)
  ham_div, gd_div = first[f"HAM/L{depths[0]}"][1], first[f"GD/L{depths[0]}"][1]
  ham = "escapes from the same learning rates as GD at every depth" if same else "escapes at other rates"
  ham += "" if same else " than GD"
  ham += f", at depth {depths[-1]} at none," if holds and same else ""
  return f"""**Reading: the first claim {"holds" if holds else "does not hold"} here.** Sign descent and Adam
    escape the saddle at every depth from learning rates between {sci(min(steep), True)} and
    {sci(max(steep), True)} (every seed), in a number of steps that scales like `1/lr` and barely depends on
    the depth. Gradient descent needs a learning rate {", ".join(gd[:-1])}, and {gd[-1]}: its step on a factor
    is proportional to `u^(L-1)`, which is tiny at a small initialisation, while a steepest (sign-like) step
    is not. HAM on the factors (its mirror step multiplies by `exp(-lr alpha ...)`, but the gradient it sees
    is GD's) {ham} and diverges earlier (at depth {depths[0]} from lr {ham_div:g}, GD from {gd_div:g}); it is
    not a steepest-descent method in this sense and should not be expected to escape like Adam."""


def _decay(results: Path) -> list[dict[str, Any]]:
  """The rows of the decay study: method, wd and the means of their measures over the seeds."""
  return [
    {k: float(np.mean([s[k] for s in r["seeds"]])) for k in r["seeds"][0] if not k.endswith("curve")}
    | {"method": r["method"], "wd": r["wd"]}
    for r in load(results, "mirror_flows")["decay"]
  ]


@table
def mirror_flows_decay(results: Path) -> str:
  rows = []
  for m in _decay(results):
    off, balance = m["off_support_final"], "0" if m["balance_final"] == 0 else sci(m["balance_final"])
    off = "0" if off == 0 else (f"{off:#.3g}" if abs(off) >= 0.01 else sci(off))
    rows.append(
      f"{m['method'].replace('+', ' + ')} | {sci(m['wd'], True)} | {sci(m['final_loss'])} | "
      f"{sci(m['late_loss_std'])} | {m['rel_error']:.3f} | {balance} | {off} | {m['n_support_1e-2']:.1f}"
    )
  header = """method | wd | final loss | std of late loss | relative error `‖x - x*‖/‖x*‖` | balance |
    off-support mass | entries with `abs(x_i) > 1e-2`"""
  return md(header, rows)


@table
def mirror_flows_decay_reading(results: Path) -> str:
  k, decay = load(results, "mirror_flows")["settings"]["k"], _decay(results)
  l2, w = ([m for m in decay if m["method"] == method] for method in ("Adam+L2", "AdamW"))
  over = lambda rows, key, f: span((r[key] for r in rows), f, " to ")  # noqa: E731
  bal = lambda x: "0" if x == 0 else sci(x)  # noqa: E731
  exact = [r for r in l2 if round(r["n_support_1e-2"], 6) == k]
  recovered = f"does not recover the {k}-sparse `x*` either"
  if exact:
    recovered = f"""recovers the {k}-sparse `x*` (relative error at most
      {sci(max(r["rel_error"] for r in exact))}, exactly {k} active coordinates at wd >=
      {sci(min(r["wd"] for r in exact), True)})"""
  return f"""**Reading: the second claim does not hold in this setting.** Both forms of decay shrink the
    balance (each coordinate ends up carried by one factor): at the end it is {over(l2, "balance_final", bal)}
    with Adam + L2 and {over(w, "balance_final", bal)} with AdamW. But Adam + L2 {recovered} with a late-loss
    std of {over(l2, "late_loss_std", sci)}, while AdamW settles on a dense interpolant (relative error
    {over(w, "rel_error", lambda x: f"{x:.2f}")}, {over(w, "n_support_1e-2", lambda x: f"{x:.0f}")} active
    coordinates) whose loss keeps oscillating (late-loss std {over(w, "late_loss_std", sci)})."""


def _graphon(results: Path) -> tuple[dict[str, Any], list[int], list[str], dict[str, dict]]:
  """The graphon study, its widths, the pairs of successive widths (``"64->128"``) and its rows by method."""
  res = load(results, "graphon")
  widths = res["settings"]["widths"]
  pairs = [f"{a}->{b}" for a, b in zip(widths, widths[1:], strict=False)]
  return res, widths, pairs, {r["method"]: r for r in res["rows"]}


def _graphon_label(method: str) -> str:
  return _label(method, {"acdc": "AC/DC", "rigl": "RigL"})


@table
def graphon(results: Path) -> str:
  res, _, pairs, _ = _graphon(results)
  n, steps = res["settings"]["ntk_width"], res["settings"]["steps"]
  rows = [
    " | ".join([_graphon_label(r["method"]), *(f"{r['distances'][p]:.3f}" for p in pairs)])
    + f" | {r['ntk_min_eig']:.2f} | {r['final_loss']:.4f}"
    for r in res["rows"]
  ]
  distances = " | ".join(f"distance {p.replace('->', ' -> ')}" for p in pairs)
  header = f"""method | {distances} | NTK smallest eigenvalue (n = {n}) | training loss after {steps} steps (n
    = {n})"""
  return md(header, rows)


@table
def graphon_reading(results: Path) -> str:
  from scipy import stats

  res, widths, pairs, by = _graphon(results)
  n, rows = res["settings"]["ntk_width"], res["rows"]
  rng = lambda xs, f="{:.2f}": "-".join(dict.fromkeys(f.format(x) for x in (min(xs), max(xs))))  # noqa: E731
  successive = list(zip(pairs, pairs[1:], strict=False))
  shrinks = all(r["distances"][a] > r["distances"][b] for r in rows for a, b in successive)
  steps = " to ".join(rng([r["distances"][p] for r in rows]) for p in pairs)
  flat = [m for m in ("random", "magnitude", "acdc") if m in by]
  dev = lambda m: ", ".join(f"{by[m]['flat_deviation'][str(w)]:.3f}" for w in widths)  # noqa: E731
  rigl, last = by["rigl"], str(widths[-1])
  cols = np.asarray(rigl["graphons"][last]).mean(axis=0)
  rho, p = stats.spearmanr([r["ntk_min_eig"] for r in rows], [r["final_loss"] for r in rows])
  ham = [(m, by[m]["final_loss"], by[m + "+HAM"]["final_loss"]) for m in by if m + "+HAM" in by]
  dense = [m for m in ("magnitude", "acdc") if m in by]
  return f"""- *Convergence:* for {"every method" if shrinks else "some methods"} the distance between
    successive widths shrinks ({steps} from {" to ".join(p.replace("->", " -> ") for p in pairs)}), as the
    hypothesis predicts. For {listed([_graphon_label(m) for m in flat])} masks the limit is the *constant*
    graphon {1 - res["settings"]["sparsity"]:g}: their images are flat up to noise that shrinks with the width
    (mean deviation from flat {dev("random")} at n = {", ".join(map(str, widths))} for random;
    {"; ".join(f"{dev(m)} for {_graphon_label(m)}" for m in flat[1:])}). So most of the shrinking distance is
    sampling noise vanishing, and with one seed and three widths this is consistent with the hypothesis, not a
    test of it.\n- *Magnitude and AC/DC look random here:* in 100 short steps the weights of the
    1/sqrt(n)-initialised layer barely move, so pruning by magnitude prunes the i.i.d. initialisation, whose
    mask is an i.i.d. random graph. A longer or larger-step training would be needed to see the structure
    these methods are reported to create.\n- *RigL converges to a non-constant graphon:* its grow step
    (largest dense-gradient magnitudes) concentrates the kept weights on a few output neurons (column block 0
    at density {cols[0]:.2f} at n = {last}, against {cols[-1]:.2f} for the last block); the pattern is nearly
    the same at {widths[-2]} and {last} (distance {rigl["distances"][pairs[-1]]:.3f},
    {by["rigl+HAM"]["distances"][pairs[-1]]:.3f} with HAM) while its deviation from flat stays about
    {rigl["flat_deviation"][last]:.2f}. HAM does not change the masks of the fixed-mask methods (random + HAM
    has the identical mask) and changes RigL's only slightly.\n- *Trainability:* across the {len(rows)} masks
    a larger NTK smallest eigenvalue goes with a {"lower" if rho < 0 else "higher"} training loss at
    {glued(f"n = {n}")}{", the direction the NTK view predicts" if rho < 0 else ", against the NTK view"}, but
    weakly (Spearman rank correlation {fmt_diff(rho)}, {fmt_p(p)}, one seed): it does not predict the loss.
    HAM gives the lower training loss in {sum(h < b for _, b, h in ham)} of the {len(ham)} pairs (e.g. RigL
    {by["rigl"]["final_loss"]:.4f} -> {by["rigl+HAM"]["final_loss"]:.4f}), on one seed and without tuning, so
    this is an observation, not a measured effect. {listed([_graphon_label(m).capitalize() for m in dense])}
    start dense, which makes their loss curves not comparable to those of the fixed-density methods (their
    loss halves at step {rng([by[m]["half_step"] for m in dense], "{}")} against
    {rng([r["half_step"] for m, r in by.items() if m.split("+")[0] not in dense], "{}")})."""


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--check", action="store_true", help="only list the blocks that differ (exit status 1)")
  parser.add_argument("--print", metavar="NAME", choices=sorted(TABLES), help="print one block's Markdown")
  parser.add_argument("--results", type=Path, default=RESULTS, help="results folder (default: %(default)s)")
  args, stale = parser.parse_args(argv), []
  if args.print:
    print(layout(TABLES[args.print](args.results), WIDTH))
    return 0
  for page in pages():
    text = page.read_text()
    fresh = render(text, args.results)
    pairs = zip(BLOCK.finditer(text), BLOCK.finditer(fresh), strict=True)
    stale += [f"{page.relative_to(REPO)}: {a['name']}" for a, b in pairs if a["body"] != b["body"]]
    if fresh != text and not args.check:
      page.write_text(fresh)
  verb = "differ from their results" if args.check else "rewritten"
  print(f"{len(stale)} page(s) with blocks {verb}" + "".join(f"\n  {s}" for s in stale))
  return 1 if args.check and stale else 0


if __name__ == "__main__":
  raise SystemExit(main())
