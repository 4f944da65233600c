"""Validation grid behind the main job's defaults (``ham-optax train`` with no options).

For each model and sparsifier of the main job (MNIST-1D; ``mlp`` and ``resnet1d``; dense and 90 % random
pruning at init; SGD + momentum 0.9, weight decay 5e-4, cosine schedule, the model's epochs and width from
``ham_optax_examples.configs.tuned.MAIN_JOB``):

1. baseline: the learning rate from ``--lrs`` with the best mean final *validation* accuracy over the tuning seeds;
2. HAM at that learning rate: ``(alpha, beta)`` from ``--alphas`` x ``--betas``, best mean validation accuracy
   among the *stable* settings: no diverged tuning seed, and a verified margin of one grid step against the
   edge of stability: the next larger alpha of the grid (same beta) ran without a diverged tuning seed too (so
   the largest alpha of the grid is never chosen).

Tuning seeds start at 1000 (the test split is never read). Writes ``results.json`` under ``--out`` and prints the
choices as the ``TUNED`` entries of ``configs/tuned.py``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
from ham_optax_examples import data as data_lib
from ham_optax_examples.configs.default import Config
from ham_optax_examples.configs.tuned import MAIN_JOB

import _common


def choose(rows: list[dict], model: str, method: str, alphas: list[float]) -> dict | None:
  """The stable ``(alpha, beta)`` with the best mean validation accuracy among the HAM rows of ``model`` /
  ``method`` (see the module docstring), or ``None`` when no setting is stable."""
  by_setting: dict[tuple[float, float], list[dict]] = {}
  for r in rows:
    if r["model"] == model and r["method"] == method:
      by_setting.setdefault((r["alpha"], r["beta"]), []).append(r)
  diverged = {key: any(r["diverged"] for r in runs) for key, runs in by_setting.items()}
  stable = []
  for (alpha, beta), runs in by_setting.items():
    larger = [a for a in sorted(alphas) if a > alpha]
    if not (diverged[(alpha, beta)] or not larger or diverged.get((larger[0], beta), True)):
      mean = float(np.mean([r["val_acc"] for r in runs]))
      stable.append({"lr": runs[0]["lr"], "alpha": alpha, "beta": beta, "val_acc": mean})
  return max(stable, key=lambda c: c["val_acc"], default=None)  # the first of equals


def parse_args(argv=None) -> argparse.Namespace:
  p = _common.Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  for name, choices in (("models", sorted(MAIN_JOB["per_model"])), ("sparsifiers", ["none", "random"])):
    p.add_argument(f"--{name}", nargs="+", default=list(MAIN_JOB[name]), choices=choices)
  _common.add_options(p, tuning_seeds=3, lrs=[0.1, 0.2, 0.4, 0.8])
  _common.add_options(p, kind=_common.finite_float, alphas=[1.0, 3.0, 10.0, 30.0])
  _common.add_options(p, kind=_common.nonnegative_float, betas=[1e-3, 1e-2])
  p.add_argument("--epochs", type=_common.positive_int, help="default: the model's main-job epochs")
  p.add_fast("smoke version: 2 epochs, 1 tuning seed", epochs=2, tuning_seeds=1)
  p.add_argument("--from-json", default=None, help="only recompute the choices from an earlier results.json")
  p.add_argument("--out", type=_common.out_dir, default=_common.RESULTS / "main_job_tuning")
  return p.parse_args(argv)


def main(argv=None) -> None:
  args = parse_args(argv)
  if args.from_json:
    payload = json.loads(Path(args.from_json).read_text())
    for model, sparsifier in itertools.product(args.models, args.sparsifiers):
      method = "dense+HAM" if sparsifier == "none" else f"{sparsifier}+HAM"
      print(f"{model}/{sparsifier}:", choose(payload["runs"], model, method, args.alphas))
    return
  out = Path(args.out)
  dataset = data_lib.load_dataset(MAIN_JOB["dataset"])
  seeds = _common.tuning_seeds(args.tuning_seeds)
  rows, choices = [], {}
  t0 = time.perf_counter()

  def score(config: Config) -> tuple[float, int]:
    runs = _common.train_seeds(config, dataset, seeds)
    diverged = sum(bool(r["diverged"]) for r in runs)
    alpha, beta = (config.alpha, config.beta) if config.ham else (None, None)
    setting = dict(model=config.model, method=config.method, lr=config.learning_rate, alpha=alpha, beta=beta)
    for s, r in zip(seeds, runs, strict=True):
      rows.append(dict(setting, seed=s, val_acc=r["val_acc"], diverged=r["diverged"]))
    mean = _common.mean_val_acc(runs, diverged=None)
    tag = f"{config.model:9s} {config.method:11s} lr={config.learning_rate:g}"
    tag += f" alpha={config.alpha:g} beta={config.beta:g}" if config.ham else ""
    elapsed = time.perf_counter() - t0
    print(f"[{elapsed:6.0f}s] {tag}: val {mean:.4f}, diverged {diverged}/{len(seeds)}", flush=True)
    return mean, diverged

  for model, sparsifier in itertools.product(args.models, args.sparsifiers):
    per_model = MAIN_JOB["per_model"][model]
    epochs = args.epochs or per_model["epochs"]
    fixed = dict(dataset=MAIN_JOB["dataset"], model=model, width=per_model["width"], epochs=epochs)
    fixed.update(sparsifier=sparsifier, sparsity=MAIN_JOB["sparsity"], learning_rate=args.lrs[0])
    base = Config(**fixed, progress=False)
    baselines = [(score(base.replace(learning_rate=lr)), lr) for lr in args.lrs]
    stable = [((m, -d), lr) for (m, d), lr in baselines if d == 0]
    if not stable:
      raise SystemExit(f"{model}/{sparsifier}: every baseline learning rate on the grid diverged")
    (_, _), lr = max(stable)
    for alpha, beta in itertools.product(args.alphas, args.betas):
      score(base.replace(learning_rate=lr, ham=True, alpha=alpha, beta=beta))
    choice = choose(rows, model, base.replace(ham=True).method, args.alphas)
    if choice is None:
      raise SystemExit(f"{model}/{sparsifier}: no stable HAM setting on the grid")
    choices[f"{model}/{sparsifier}"] = choice
    payload = dict(args=vars(args) | {"out": _common.display_path(out)}, tuning_seeds=seeds, choices=choices)
    payload.update(runs=rows, wall_time_s=time.perf_counter() - t0)
    _common.save_json(out / "results.json", payload, cmd=_common.command(argv, __file__))
  print("\nchoices (validation accuracy, no diverged tuning seed):")
  for key, c in choices.items():
    print(f"  {key}: lr {c['lr']:g}, alpha {c['alpha']:g}, beta {c['beta']:g}")
  print(f"wall time {time.perf_counter() - t0:.0f} s; results in {out}")


if __name__ == "__main__":
  main()
