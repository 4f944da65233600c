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
import json
import re
import sys
import textwrap
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, paired_test  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
WIDTH = 110  # the line length of the Markdown pages
SIGNIFICANCE = 0.05
BLOCK = re.compile(r"(<!-- table:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(\n<!-- /table:(?P=name) -->)", re.S)

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
    name = m["name"]
    if name not in TABLES:
      raise KeyError(f"no generator for the block 'table:{name}' (known: {', '.join(sorted(TABLES))})")
    return m.group(1) + TABLES[name](results).strip("\n") + m.group(4)

  return BLOCK.sub(fill, text)


def block_names(text: str) -> list[str]:
  return [m["name"] for m in BLOCK.finditer(text)]


# ------------------------------------------------------------------------------------------------------------
# Formatting and the derived sentences
# ------------------------------------------------------------------------------------------------------------

NUMBER_WORDS = {
  2: "two",
  3: "three",
  4: "four",
  5: "five",
  6: "six",
  7: "seven",
  8: "eight",
  9: "nine",
  10: "ten",
}


GLUE = "\x00"  # a space that a line break must not replace ("p = 0.47", "+0.66 ± 1.86")


def paragraph(text: str) -> str:
  """One paragraph wrapped at the pages' line length, never inside a number with its sign, spread or p-value."""
  text = textwrap.fill(" ".join(text.split()), WIDTH, break_on_hyphens=False, break_long_words=False)
  return text.replace(GLUE, " ")


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


def main_job_rows(summary: Sequence[dict[str, Any]]) -> list[list[str]]:
  """The rows of the table `ham-optax train` prints (its `summary.md`), from the `summary` of `results.json`."""
  return [
    [
      s["model"],
      s["method"],
      f"{s['lr']:g}",
      _opt(s["alpha"]),
      _opt(s["beta"]),
      str(s["epochs"]),
      _pct(s["test_acc_mean"], s["test_acc_std"]),
      _pct(s["val_acc_mean"], s["val_acc_std"]),
      f"{s['sparsity']:.3f}",
      f"{100 * s['sign_flips']:.2f} %",
      s["diverged"],
    ]
    for s in summary
  ]


MAIN_JOB_HEADER = [
  "model",
  "method",
  "lr",
  "alpha",
  "beta",
  "epochs",
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
  return markdown_table(MAIN_JOB_HEADER, main_job_rows(data["summary"])) + "\n\n" + paragraph(text)


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
      stale += [f"{page.relative_to(REPO)}: {name}" for name in block_names(text)]
      if not args.check:
        page.write_text(fresh)
  verb = "differ from their results" if args.check else "rewritten"
  print(f"{len(stale)} page(s) with blocks {verb}" + "".join(f"\n  {s}" for s in stale))
  return 1 if args.check and stale else 0


if __name__ == "__main__":
  raise SystemExit(main())
