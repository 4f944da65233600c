"""How to read HAM's diagnostics, from the alpha-transfer runs: which values separated failed runs from healthy ones.

Reads the runs that ``benchmarks/alpha_transfer.py`` logged (``grid.json`` and ``final*.json`` under
``results/alpha_transfer``; every HAM run records ``metrics.ham_diagnostics``' global ``exponent_max`` at its first
step and its largest value and largest ``clip_fraction`` over training) and tabulates, by ``exponent_max``:

- how many runs *failed*: diverged (non-finite training loss) or collapsed (validation accuracy at most 20 %),
  the benchmark's definition;
- how the others compare with the baseline of the same family, optimizer, learning rate and seed (alpha = 0,
  same initialisation and batch order): validation accuracy difference, runs that lost more than 3 points, and the
  change of the final training loss (a run that HAM does not change has the baseline's loss).

Nothing is trained: the script reads the committed JSON. ``benchmarks/tables.py`` publishes its output in the alpha
guide (block ``alpha_diagnostics``); after rerunning the alpha-transfer benchmark, rerun ``tables.py``.

  python benchmarks/alpha_diagnostics.py                 # print the tables
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from _common import markdown_table

RESULTS = Path(__file__).resolve().parent / "results" / "alpha_transfer"
CLIP = 5.0  # the benchmark's max_exponent (ham_optax's default)
EDGES = (0.0, 0.01, 0.1, 0.5, 1.0, CLIP)
LOST_POINTS = 3.0


def load_runs(results: Path = RESULTS) -> list[dict[str, Any]]:
  """Every run of ``grid.json`` and ``final*.json``, tagged with its setting and file (pairing stays within one)."""
  runs = []
  grid = json.loads((results / "grid.json").read_text())
  for setting, rows in grid["runs"].items():
    runs += [{**r, "setting": setting, "source": "grid.json"} for r in rows]
  for path in sorted(results.glob("final*.json")):
    for setting, v in json.loads(path.read_text())["results"].items():
      runs += [{**r, "setting": setting, "source": path.name} for r in v["runs"]]
  return runs


def outcome(run: dict[str, Any]) -> str:
  if not np.all(np.isfinite(np.asarray(run["epoch_loss"], float))):
    return "diverged"
  return "collapsed" if run["val_acc"] <= 0.2 else "healthy"


def _bin_label(lo: float, hi: float) -> str:
  if lo >= CLIP:
    return f"at the clip ({CLIP:g})"
  return f"below {hi:g}" if lo == 0 else f"{lo:g} - {hi:g}"


def _in_bin(value: float, lo: float, hi: float) -> bool:
  at_clip = value >= CLIP * (1 - 1e-6)
  return at_clip if lo >= CLIP else (lo <= value < hi and not at_clip)


def summarise(runs: list[dict[str, Any]], key: Callable[[dict[str, Any]], float]) -> list[dict[str, Any]]:
  """Per bin of ``key(run)`` (HAM runs with a finite key): counts, failures and the paired comparison."""
  base = {(r["setting"], r["source"], r["lr"], r["seed"]): r for r in runs if r["alpha"] == 0}
  rows = []
  for lo, hi in [*zip(EDGES[:-1], EDGES[1:], strict=True), (CLIP, np.inf)]:
    sel = [r for r in runs if r["alpha"] != 0 and np.isfinite(key(r)) and _in_bin(key(r), lo, hi)]
    diffs, loss_change = [], []
    for r in sel:
      b = base.get((r["setting"], r["source"], r["lr"], r["seed"]))
      if b is None or outcome(r) != "healthy" or outcome(b) != "healthy":
        continue
      diffs.append(100.0 * (r["val_acc"] - b["val_acc"]))
      loss_change.append(100.0 * abs(r["epoch_loss"][-1] - b["epoch_loss"][-1]) / b["epoch_loss"][-1])
    rows.append(
      {
        "bin": _bin_label(lo, hi),
        "runs": len(sel),
        "failed": sum(outcome(r) != "healthy" for r in sel),
        "paired": len(diffs),
        "lost": int(np.sum(np.asarray(diffs) < -LOST_POINTS)),
        "median_diff": float(np.median(diffs)) if diffs else float("nan"),
        "median_loss_change": float(np.median(loss_change)) if loss_change else float("nan"),
      }
    )
  return rows


def _table(rows: list[dict[str, Any]], what: str) -> str:
  header = [what, "HAM runs", "failed (diverged or collapsed)", "val acc - baseline, median (points)"]
  header += [f"lost more than {LOST_POINTS:g} points", "final training loss vs baseline, median change"]
  cells = []
  for r in rows:
    if r["runs"]:
      paired = [
        f"{r['median_diff']:+.2f}",
        f"{r['lost']} of {r['paired']}",
        f"{r['median_loss_change']:.2g} %",
      ]
      cells.append([r["bin"], r["runs"], r["failed"], *(paired if r["paired"] else ["-"] * 3)])
  return markdown_table(header, cells)


def first_step(run: dict[str, Any]) -> float:
  return float(run["step0"]["exponent_max"])


def largest(run: dict[str, Any]) -> float:
  """NaN for a run that diverged (its later diagnostics are not finite)."""
  return float(run["exponent_max_overall"])


def _low_failures(runs: list[dict[str, Any]]) -> list[str]:
  """The settings (family/optimizer at lr, with the alphas) of the runs that failed with a first-step
  exponent_max below 1."""
  alphas: dict[tuple[str, float], list[float]] = {}
  for r in runs:
    if r["alpha"] != 0 and outcome(r) != "healthy" and first_step(r) < 1.0:
      alphas.setdefault((r["setting"], r["lr"]), []).append(r["alpha"])
  out = []
  for (setting, lr), values in sorted(alphas.items()):
    listed = ", ".join(f"{a:g}" for a in sorted(set(values)))
    out.append(f"{setting} at lr {lr:g} ({len(values)} run{'s' * (len(values) > 1)}; alpha {listed})")
  return out


def reading_tables(results: Path = RESULTS) -> str:
  """The Markdown published in the alpha guide: two tables and the sentences derived from them."""
  runs = load_runs(results)
  n_ham = sum(r["alpha"] != 0 for r in runs)
  n_div = sum(r["alpha"] != 0 and outcome(r) == "diverged" for r in runs)
  first, most = summarise(runs, first_step), summarise(runs, largest)
  finite = [r for r in runs if r["alpha"] != 0 and np.isfinite(r["clip_fraction_max"])]
  t, b = (
    [outcome(r) != "healthy" for r in finite if (r["clip_fraction_max"] > 0) == at] for at in (True, False)
  )
  quiet = most[0]
  intro = (
    f"{n_ham} HAM runs of the alpha-transfer benchmark (grid and fresh seeds; {n_div} diverged, so only their "
    "first step is logged), by the global `exponent_max` at the first step (all runs) and by its largest value "
    "during training (the runs that stayed finite); each run is compared with the baseline of the same setting, "
    "learning rate and seed."
  )
  facts = (
    f"Of the finite runs whose exponent reached the clip at some step (`clip_fraction > 0`), {sum(t)} of {len(t)} "
    f"collapsed; of those that never did, {sum(b)} of {len(b)}. Every failed run below a first-step `exponent_max` "
    f"of 1 was one of: {'; '.join(_low_failures(runs))}. With the largest `exponent_max` below "
    f"{EDGES[1]:g} the final training loss moved by a median {quiet['median_loss_change']:.2g} % from the "
    "baseline's."
  )
  tables = [
    _table(first, "`exponent_max` at the first step"),
    _table(most, "largest `exponent_max` during training"),
  ]
  return "\n\n".join([intro, *tables, facts])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--results", type=Path, default=RESULTS, help="the alpha-transfer results folder")
  print(reading_tables(parser.parse_args().results))


if __name__ == "__main__":
  main()
