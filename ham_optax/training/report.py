"""Aggregating, saving and plotting training results (JSON, CSV, PNG, markdown table)."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["markdown_table", "plot_curves", "save_results", "summarize"]

_RUN_FIELDS = (
  "method",
  "seed",
  "alpha",
  "beta",
  "val_acc",
  "test_acc",
  "sparsity",
  "sign_flips",
  "train_time_s",
)


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
  arr = np.asarray(values, dtype=np.float64)
  return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def summarize(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
  """One row per method (in order of first appearance): mean and sample std over seeds of the
  final validation and test accuracy, mean sparsity and sign-flip fraction of the weights."""
  methods: dict[str, list[dict[str, Any]]] = {}
  for r in results:
    methods.setdefault(r["method"], []).append(r)
  rows = []
  for method, runs in methods.items():
    val_m, val_s = _mean_std([r["val_acc"] for r in runs])
    test_m, test_s = _mean_std([r["test_acc"] for r in runs])
    rows.append(
      {
        "method": method,
        "seeds": len(runs),
        "lr": runs[0]["config"]["learning_rate"],
        "alpha": runs[0]["config"]["alpha"] if runs[0]["config"]["ham"] else None,
        "beta": runs[0]["config"]["beta"] if runs[0]["config"]["ham"] else None,
        "val_acc_mean": val_m,
        "val_acc_std": val_s,
        "test_acc_mean": test_m,
        "test_acc_std": test_s,
        "sparsity": float(np.mean([r["sparsity"] for r in runs])),
        "sign_flips": float(np.mean([r["sign_flips"] for r in runs])),
        "diverged": sum(not math.isfinite(r["history"][-1]["train_loss"]) for r in runs if r["history"]),
      }
    )
  return rows


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
  """A markdown table: method, test accuracy (%) mean ± std, val accuracy, sparsity, sign flips."""
  lines = [
    "| method | lr | alpha | beta | test acc (%) | val acc (%) | sparsity | sign flips vs init | seeds |",
    "|---|---|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    alpha = "-" if r["alpha"] is None else f"{r['alpha']:g}"
    beta = "-" if r["beta"] is None else f"{r['beta']:g}"
    lines.append(
      f"| {r['method']} | {r['lr']:g} | {alpha} | {beta} | {100 * r['test_acc_mean']:.2f} ± {100 * r['test_acc_std']:.2f} "
      f"| {100 * r['val_acc_mean']:.2f} ± {100 * r['val_acc_std']:.2f} | {r['sparsity']:.3f} "
      f"| {100 * r['sign_flips']:.2f} % | {r['seeds']} |"
    )
  return "\n".join(lines)


def save_results(
  results: Sequence[dict[str, Any]], out_dir: str | Path, *, extra: dict | None = None
) -> dict:
  """Writes ``results.json`` (every run with its history), ``runs.csv`` (one line per run),
  ``summary.csv`` (one line per method), ``summary.md`` and ``curves.png`` under ``out_dir``.
  Returns the paths written."""
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  rows = summarize(results)
  payload = {"summary": rows, "runs": [{k: v for k, v in r.items() if k != "model"} for r in results]}
  if extra:
    payload.update(extra)
  paths = {
    "json": out / "results.json",
    "runs_csv": out / "runs.csv",
    "summary_csv": out / "summary.csv",
    "markdown": out / "summary.md",
    "plot": out / "curves.png",
  }
  paths["json"].write_text(json.dumps(payload, indent=1))
  with paths["runs_csv"].open("w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(_RUN_FIELDS)
    for r in results:
      c = r["config"]
      writer.writerow(
        [r["method"], c["seed"], c["alpha"] if c["ham"] else "", c["beta"] if c["ham"] else ""]
        + [r[k] for k in _RUN_FIELDS[4:]]
      )
  with paths["summary_csv"].open("w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  paths["markdown"].write_text(markdown_table(rows) + "\n")
  plot_curves(results, paths["plot"])
  return paths


def plot_curves(results: Sequence[dict[str, Any]], path: str | Path) -> None:
  """Validation and test accuracy per epoch, mean ± std over seeds: one colour per sparsifier,
  dashed for the baseline, solid with HAM."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  methods: dict[str, list[dict[str, Any]]] = {}
  for r in results:
    methods.setdefault(r["method"], []).append(r)
  bases = list(dict.fromkeys(m.removesuffix("+HAM") for m in methods))
  colors = {b: plt.get_cmap("tab10")(i % 10) for i, b in enumerate(bases)}
  fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
  for ax, key, title in zip(axes, ("val_acc", "test_acc"), ("validation", "test"), strict=True):
    for method, runs in methods.items():
      n = min(len(r["history"]) for r in runs)
      if n == 0:
        continue
      curves = np.array([[h[key] for h in r["history"][:n]] for r in runs]) * 100
      epochs = np.arange(1, n + 1)
      mean, std = curves.mean(0), curves.std(0)
      style = "-" if method.endswith("+HAM") else "--"
      color = colors[method.removesuffix("+HAM")]
      ax.plot(epochs, mean, style, color=color, label=method)
      ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.1)
    ax.set_title(f"{title} accuracy")
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)
  axes[0].set_ylabel("accuracy (%)")
  axes[1].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
