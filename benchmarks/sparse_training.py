"""Sparse training with and without HAM at small scale (MNIST-1D or sklearn digits, MLP, CPU).

Methods: {dense, random pruning at init (PaI, ERK), gradual magnitude pruning (GMP), AC/DC, RigL}
x {baseline, HAM}, plus random PaI + Sign-In (``ham_optax.overparam.sign_in``, as in the HAM paper's
Table 2), at ``--sparsity`` (default 0.9) of the weight tensors. Inner optimizer: SGD with
momentum 0.9, weight decay 5e-4, cosine learning-rate schedule (see
``ham_optax_examples.configs.default``).

Protocol (all selection on the fixed *validation* split, never on test):

1. baseline: for each sparsifier pick the learning rate from ``--lrs`` by mean final validation
   accuracy over the tuning seeds;
2. "HAM at the baseline's lr": at that learning rate, pick ``(alpha, beta)`` from ``--alphas`` x ``--betas``
   the same way (HAM gets the baseline's lr for free plus its own alpha x beta grid);
   "HAM tuned": HAM's own learning rate from ``--lrs``, tuned jointly with alpha, which at every lr (and seed)
   is ``ham_optax.suggest_alpha`` (``--target-ratio``; a 20-step calibration run), beta = 0: exactly the
   baseline's tuning budget (one run per lr and tuning seed);
   Sign-In (random PaI only): at that learning rate, pick the balance and reset period from
   ``--sign-in-balances`` x ``--sign-in-every``;
3. final: train every method on ``--seeds`` fresh seeds (0, 1, ...; the tuning seeds are 1000+) and
   report test accuracy mean ± std (sample std over seeds).

Writes ``results.json`` (every run, histories, the tuning grid and choices), ``runs.csv``,
``summary.csv``, ``summary.md``, ``tuning.csv`` and ``curves.png`` under ``--out`` and prints the
markdown table. ``--fast`` is a 2-minute smoke version (small grid, few epochs, 2 seeds).

  python benchmarks/sparse_training.py                      # full: mnist1d, 5 seeds
  python benchmarks/sparse_training.py --dataset digits --out benchmarks/results/sparse_training_digits
  python benchmarks/sparse_training.py --fast
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import time
from pathlib import Path

import numpy as np
from ham_optax_examples import data as data_lib
from ham_optax_examples import report
from ham_optax_examples.configs.default import Config
from ham_optax_examples.train import suggested_alpha

import ham_optax

import _common

SPARSIFIERS = ("none", "random", "magnitude", "acdc", "rigl")


def _parse(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--dataset", default="mnist1d", choices=["mnist1d", "digits"])
  p.add_argument("--model", default="mlp", choices=["mlp", "cnn1d"])
  p.add_argument("--sparsifiers", nargs="+", default=list(SPARSIFIERS), choices=SPARSIFIERS)
  p.add_argument("--sparsity", type=float, default=0.9)
  p.add_argument("--epochs", type=int, default=30)
  p.add_argument("--batch-size", type=int, default=128)
  p.add_argument("--seeds", type=int, default=5)
  p.add_argument("--tuning-seeds", type=int, default=2)
  p.add_argument("--lrs", type=float, nargs="+", default=[0.1, 0.2, 0.4, 0.8, 1.6])
  p.add_argument("--alphas", type=float, nargs="+", default=[0.3, 1.0, 3.0, 10.0, 30.0, 100.0])
  p.add_argument("--betas", type=float, nargs="+", default=[1e-3, 1e-2])
  p.add_argument(
    "--target-ratio",
    type=float,
    default=ham_optax.DEFAULT_TARGET_RATIO,
    help="suggest_alpha's target ratio for the 'HAM tuned' rows",
  )
  p.add_argument(
    "--no-ham-tuned", action="store_true", help="skip the 'HAM tuned' rows (HAM's own lr with suggest_alpha)"
  )
  p.add_argument(
    "--sign-in-balances",
    type=float,
    nargs="*",
    default=[0.1, 1.0],
    help="Sign-In rows (random PaI only): balances m^2 - w^2 to tune; give none to skip",
  )
  p.add_argument("--sign-in-every", type=int, nargs="+", default=[1, 5], help="Sign-In reset period, epochs")
  p.add_argument(
    "--fast", action="store_true", help="smoke version: 5 epochs, 1 tuning seed, 2 seeds, small grid"
  )
  p.add_argument("--from-json", default=None, help="only print the tables of an earlier results.json")
  p.add_argument("--out", default=None, help="default benchmarks/results/sparse_training[_DATASET][_fast]")
  args = p.parse_args(argv)
  if args.fast:
    args.epochs, args.seeds, args.tuning_seeds = 5, 2, 1
    args.lrs, args.alphas, args.betas = [0.1], [3.0, 30.0], [1e-3]
    args.sign_in_balances, args.sign_in_every = [1.0], [1]
  if args.out is None:
    suffix = ("" if args.dataset == "mnist1d" else f"_{args.dataset}") + ("_fast" if args.fast else "")
    args.out = str(Path(__file__).parent / "results" / f"sparse_training{suffix}")
  return args


def _print_summary(final, choices, sparsifiers, title) -> None:
  print(f"\n{title}")
  print(report.markdown_table(report.summarize(final)))
  print("\nHAM (at the baseline's lr) - baseline, test accuracy (points), Welch t-test over seeds:")

  def accs(method):
    return [r["test_acc"] for r in final if r["method"] == method and not r.get("diverged")]

  for sparsifier in sparsifiers:
    name, c = "dense" if sparsifier == "none" else sparsifier, choices[sparsifier]
    base = accs(name)
    if not base or not accs(f"{name}+HAM"):
      continue
    rows = {
      "+HAM": f"(lr {c['lr']:g}, alpha {c['alpha']:g}, beta {c['beta']:g})",
      "+HAM tuned": f"HAM tuned - baseline (own lr {c.get('tuned_lr', float('nan')):g}, alpha = suggest_alpha)",
      "+Sign-In": f"Sign-In - baseline (balance {c.get('sign_in_balance', float('nan')):g}, reset every "
      f"{c.get('sign_in_every')} epochs)",
    }
    for suffix, note in rows.items():
      other = accs(name + suffix)
      if other:
        print(
          f"  {name:10s} {100 * (np.mean(other) - np.mean(base)):+.2f}  p={_common.welch_p(other, base):.3f}  {note}"
        )


def main(argv=None) -> None:
  args = _parse(argv)
  if args.from_json:
    payload = json.loads(Path(args.from_json).read_text())
    sparsifiers = [s for s in SPARSIFIERS if s in payload["choices"]]
    _print_summary(payload["runs"], payload["choices"], sparsifiers, f"from {args.from_json}")
    extra = {k: v for k, v in payload.items() if k not in ("runs", "summary")}
    report.save_results(payload["runs"], Path(args.from_json).parent, extra=extra)  # refresh tables and plot
    return
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  dataset = data_lib.load_dataset(args.dataset)
  base = Config(
    dataset=args.dataset,
    model=args.model,
    epochs=args.epochs,
    batch_size=args.batch_size,
    sparsity=args.sparsity,
    progress=False,
  )
  tuning_seeds = _common.tuning_seeds(args.tuning_seeds)
  tuning_rows, choices, final = [], {}, []
  provenance = _common.provenance(_common.command(argv, __file__))
  t0 = time.perf_counter()

  def log(config, r):
    c = r["config"]  # resolved: defaults filled in
    outcome = (
      f"diverged at epoch {r['diverged_epoch']}"
      if r["diverged"]
      else f"val {r['val_acc']:.4f} test {r['test_acc']:.4f} sparsity {r['sparsity']:.3f}"
    )
    print(
      f"[{time.perf_counter() - t0:7.0f}s] {config.method:14s} lr={c['learning_rate']:g} "
      f"alpha={c['alpha']} beta={c['beta']:g} seed={config.seed}: {outcome}",  # alpha may be "auto"
      flush=True,
    )

  def suggest(config):  # "HAM tuned": alpha from suggest_alpha for this model, learning rate and seed
    return config.replace(alpha=suggested_alpha(config, dataset, args.target_ratio))

  def tune(configs, prepare=None):
    best, scores, _ = _common.tune(configs, dataset, tuning_seeds, prepare, log)
    for config, score in zip(configs, scores, strict=True):
      tuning_rows.append(
        {
          "method": config.method,
          "lr": config.learning_rate,
          "alpha": ("suggested" if prepare is suggest else config.alpha) if config.ham else "",
          "beta": config.beta if config.ham else "",
          "sign_in": f"c={config.sign_in_balance:g},every={config.sign_in_every}" if config.sign_in else "",
          "val_acc_mean": score,
        }
      )
    return configs[best]

  for sparsifier in args.sparsifiers:
    cfg = base.replace(sparsifier=sparsifier)
    best_base = tune([cfg.replace(learning_rate=lr) for lr in args.lrs])
    best_ham = tune(
      [best_base.replace(ham=True, alpha=a, beta=b) for a, b in itertools.product(args.alphas, args.betas)]
    )
    choices[sparsifier] = {
      "lr": best_base.learning_rate,
      "alpha": best_ham.alpha,
      "beta": best_ham.beta,
    }
    finals = [(best_base, None), (best_ham, None)]
    if not args.no_ham_tuned:
      # HAM's own lr, jointly with alpha = suggest_alpha(lr) at each seed.
      best_tuned = tune([cfg.replace(learning_rate=lr, ham=True, beta=0.0) for lr in args.lrs], suggest)
      choices[sparsifier]["tuned_lr"] = best_tuned.learning_rate
      finals.append((best_tuned, suggest))
    if sparsifier == "random" and args.sign_in_balances:
      # Sign-In + random PaI next to HAM + random PaI (HAM paper, Table 2), same protocol.
      best_sign_in = tune(
        [
          best_base.replace(sign_in=True, sign_in_balance=b, sign_in_every=e)
          for b, e in itertools.product(args.sign_in_balances, args.sign_in_every)
        ]
      )
      choices[sparsifier]["sign_in_balance"] = best_sign_in.sign_in_balance
      choices[sparsifier]["sign_in_every"] = best_sign_in.sign_in_every
      finals.append((best_sign_in, None))
    for config, prepare in finals:
      for r in _common.train_seeds(config, dataset, range(args.seeds), prepare, log):
        if prepare is suggest:
          r["method"] += " tuned"
        final.append(r)
    # Save after every sparsifier so a partial run still leaves results behind.
    with (out / "tuning.csv").open("w", newline="") as f:
      writer = csv.DictWriter(f, fieldnames=list(tuning_rows[0]))
      writer.writeheader()
      writer.writerows(tuning_rows)
    extra = {
      **provenance,
      "argv": {**vars(args), "out": _common.display_path(args.out)},
      "choices": choices,
      "tuning": tuning_rows,
      "tuning_seeds": tuning_seeds,
      "wall_time_s": time.perf_counter() - t0,
    }
    report.save_results(final, out, extra=extra)

  _print_summary(
    final,
    choices,
    args.sparsifiers,
    f"{args.dataset} / {args.model}, sparsity {args.sparsity}, {args.epochs} epochs, {args.seeds} seeds",
  )
  print(f"\nwall time {time.perf_counter() - t0:.0f} s; results in {out}")
  _common.save_json(out / "choices.json", choices, cmd=provenance["command"])


if __name__ == "__main__":
  main()
