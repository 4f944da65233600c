"""Summaries, results files and plots of training runs. Diverged runs are counted, never averaged: every summary
shows ``diverged k/n`` per method and the mean ± std over the runs that did not diverge."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

_RUN_FIELDS = ("model", "method", "seed", "lr", "alpha", "beta", "diverged_epoch")
_RUN_RESULTS = ("val_acc", "test_acc", "sparsity", "sign_flips", "train_time_s")


def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
  if not values:
    return None, None
  arr = np.asarray(values, dtype=np.float64)
  return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def _group(results: Sequence[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
  groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
  for r in results:
    groups.setdefault((r["config"]["model"], r["method"]), []).append(r)
  return groups


def summarize(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
  """One row per model and method (in order of first appearance): the diverged runs and, over the others, mean
  and sample std of the final validation and test accuracy, mean sparsity and sign flips (``None``: none); the
  epochs of runs halted before their last one read e.g. ``1 of 3 (halted)``."""
  rows = []
  for (model, method), runs in _group(results).items():
    ok = [r for r in runs if not r["diverged"]]
    c = runs[0]["config"]
    row = {"model": model, "method": method, "lr": c["learning_rate"]}
    row |= {k: c[k] if c["ham"] else None for k in ("alpha", "beta")}
    trained = ", ".join(map(str, sorted({len(r["history"]) for r in ok})))
    halted = any(not r.get("completed", True) for r in ok)
    epochs = f"{trained} of {c['epochs']} (halted)" if halted else c["epochs"]
    row |= {"epochs": epochs, "seeds": len(runs), "diverged": f"{len(runs) - len(ok)}/{len(runs)}"}
    for key in ("val_acc", "test_acc"):
      row[f"{key}_mean"], row[f"{key}_std"] = _mean_std([r[key] for r in ok])
    row |= {k: float(np.mean([r[k] for r in ok])) if ok else None for k in ("sparsity", "sign_flips")}
    rows.append(row)
  return rows


def _pct(mean: float | None, std: float | None) -> str:
  return "diverged" if mean is None else f"{100 * mean:.2f} ± {100 * std:.2f}"


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
  """The markdown table of :func:`summarize`'s rows (accuracies in %)."""
  lines = [
    "| model | method | lr | alpha | beta | epochs | test acc (%) | val acc (%) | sparsity | sign flips vs init "
    "| diverged |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    alpha = "-" if r["alpha"] is None else f"{r['alpha']:g}"
    beta = "-" if r["beta"] is None else f"{r['beta']:g}"
    sparsity = "-" if r["sparsity"] is None else f"{r['sparsity']:.3f}"
    flips = "-" if r["sign_flips"] is None else f"{100 * r['sign_flips']:.2f} %"
    lines.append(
      f"| {r['model']} | {r['method']} | {r['lr']:g} | {alpha} | {beta} | {r['epochs']} "
      f"| {_pct(r['test_acc_mean'], r['test_acc_std'])} | {_pct(r['val_acc_mean'], r['val_acc_std'])} "
      f"| {sparsity} | {flips} | {r['diverged']} |"
    )
  return "\n".join(lines)


def _run_row(r: dict[str, Any]) -> list[Any]:
  c, ham, diverged = r["config"], r["config"]["ham"], r["diverged"]
  hp = (c["alpha"], c["beta"]) if ham else ("", "")
  row = [c["model"], r["method"], c["seed"], c["learning_rate"], *hp]
  row.append(r.get("diverged_epoch", "") if diverged else "")
  return row + ["" if diverged or r[k] is None else r[k] for k in _RUN_RESULTS]


def save_results(results: Sequence[dict], out_dir: str | Path, *, extra: dict | None = None) -> dict:
  """Writes ``results.json`` (every run with its history), ``runs.csv`` (one line per run), ``summary.csv`` (one
  line per model and method), ``summary.md`` and ``curves.png`` under ``out_dir``. Returns the paths written."""
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  rows = summarize(results)
  runs = [{k: v for k, v in r.items() if k != "model"} for r in results]
  payload = {"summary": rows, "runs": runs, **(extra or {})}
  names = {"json": "results.json", "runs_csv": "runs.csv", "summary_csv": "summary.csv"}
  paths = {k: out / name for k, name in (names | {"markdown": "summary.md", "plot": "curves.png"}).items()}
  paths["json"].write_text(json.dumps(payload, indent=1))
  with paths["runs_csv"].open("w", newline="") as f:
    csv.writer(f).writerows([_RUN_FIELDS + _RUN_RESULTS, *(_run_row(r) for r in results)])
  with paths["summary_csv"].open("w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
  paths["markdown"].write_text(markdown_table(rows) + "\n")
  plot_curves(results, paths["plot"])
  return paths


def plot_curves(results: Sequence[dict[str, Any]], path: str | Path) -> Figure:
  """Validation and test accuracy per epoch and model (saved to ``path``): mean ± std over the finished runs,
  a colour per sparsifier, dashed baseline, solid HAM, dotted Sign-In; diverged runs end in an ``x``."""
  groups = _group(results)
  model_names = list(dict.fromkeys(model for model, _ in groups))
  bases = list(dict.fromkeys(method.split("+")[0] for _, method in groups))
  cmap = matplotlib.colormaps["tab10"]
  colors = {b: cmap(i % 10) for i, b in enumerate(bases)}
  fig = Figure(figsize=(11, 3.8 * len(model_names)))
  axes = np.atleast_2d(fig.subplots(len(model_names), 2, sharey=True, squeeze=False))
  for row, model in zip(axes, model_names, strict=True):
    for ax, key, title in zip(row, ("val_acc", "test_acc"), ("validation", "test"), strict=True):
      for (m, method), runs in groups.items():
        if m != model:
          continue
        base, _, variant = method.partition("+")
        style, color = {"": "--", "HAM": "-"}.get(variant, ":"), colors[base]
        finished = [r for r in runs if not r["diverged"] and r["history"]]
        diverged = [r for r in runs if r["diverged"]]
        label = f"{method} (diverged {len(diverged)}/{len(runs)})" if diverged else method
        if finished:
          n = max(len(r["history"]) for r in finished)
          curves = [np.array([h[key] for h in r["history"]]) * 100 for r in finished]
          padded = np.array([np.pad(c, (0, n - len(c)), constant_values=np.nan) for c in curves])
          epochs = np.arange(1, n + 1)
          mean, std = np.nanmean(padded, 0), np.nanstd(padded, 0)
          ax.plot(epochs, mean, style, color=color, label=label)
          ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.1)
          label = None
        for r in diverged:
          values = [h[key] * 100 for h in r["history"] if np.isfinite(h["train_loss"])]
          ax.plot(range(1, len(values) + 1), values, style, color=color, lw=0.8, alpha=0.6, label=label)
          at = r.get("diverged_epoch") or len(values) + 1
          ax.plot([at], [values[-1] if values else 10.0], "x", color=color, ms=8)
          label = None
      ax.set(title=f"{model}: {title} accuracy (x: diverged)", xlabel="epoch")
      ax.xaxis.set_major_locator(MaxNLocator(integer=True))
      ax.grid(alpha=0.3)
    row[0].set_ylabel("accuracy (%)")
    row[1].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  return fig
