"""Command-line entry point: ``ham-optax train [options]`` (or ``python -m ham_optax.training.cli``).

With no arguments it runs the default comparison on MNIST-1D (MLP, SGD + momentum, 30 epochs):
baseline vs HAM, each dense and with 90 % random pruning at initialisation, over 5 seeds, with the
learning rate / alpha / beta chosen on the validation split by ``benchmarks/sparse_training.py``, and prints a table of test accuracy
(mean ± std over seeds), weight sparsity and sign flips versus initialisation. Results go to
``--out`` (default ``runs/<UTC timestamp>``): ``results.json``, ``runs.csv``, ``summary.csv``,
``summary.md`` and ``curves.png``.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ham_optax.training.configs.default import (
  OPTIMIZERS,
  SCHEDULES,
  SPARSIFIERS,
  Config,
  tuned_hyperparameters,
)

__all__ = ["build_parser", "configs_from_args", "main"]


def _positive_int(text: str) -> int:
  value = int(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
  return value


def build_parser() -> argparse.ArgumentParser:
  """The ``ham-optax`` argument parser (subcommand ``train``, also the default)."""
  from ham_optax.training.data import DATASETS
  from ham_optax.training.models import MODELS

  d = Config()
  parser = argparse.ArgumentParser(
    prog="ham-optax",
    description="Train with and without HAM (Hyperbolic Aware Minimization, arXiv:2506.02630) and compare.",
    formatter_class=argparse.ArgumentDefaultsHelpFormatter,
  )
  parser.add_argument("command", nargs="?", default="train", choices=["train"], help="what to do")
  g = parser.add_argument_group("data and model")
  g.add_argument("--dataset", default=d.dataset, choices=DATASETS)
  g.add_argument("--model", default=d.model, choices=MODELS)
  g.add_argument("--width", type=_positive_int, default=None, help="model width (default: the model's own)")
  g.add_argument("--data-dir", default=None, help="TFDS data_dir for cifar10/cifar100")
  g = parser.add_argument_group("optimizer")
  g.add_argument("--optimizer", default=d.optimizer, choices=OPTIMIZERS)
  g.add_argument(
    "--lr",
    type=float,
    default=None,
    help=f"peak learning rate (default: tuned value, else {d.learning_rate})",
  )
  g.add_argument("--momentum", type=float, default=d.momentum)
  g.add_argument("--weight-decay", type=float, default=d.weight_decay)
  g.add_argument("--schedule", default=d.schedule, choices=SCHEDULES)
  g.add_argument("--warmup-epochs", type=int, default=d.warmup_epochs)
  g.add_argument("--epochs", type=_positive_int, default=d.epochs)
  g.add_argument("--batch-size", type=_positive_int, default=d.batch_size)
  g = parser.add_argument_group("HAM")
  g.add_argument("--ham", default="both", choices=["off", "on", "both"], help="baseline, HAM, or both")
  g.add_argument(
    "--alpha",
    type=float,
    default=None,
    help=f"HAM alpha, keep alpha*lr*|g| << 1 (default: tuned, else {d.alpha})",
  )
  g.add_argument(
    "--beta", type=float, default=None, help=f"HAM multiplicative decay (default: tuned, else {d.beta})"
  )
  g = parser.add_argument_group("sparsity")
  g.add_argument(
    "--sparsifier", nargs="+", default=["none", "random"], choices=SPARSIFIERS, help="one or more sparsifiers"
  )
  g.add_argument("--sparsity", type=float, default=d.sparsity)
  g.add_argument("--distribution", default=d.distribution, choices=["erk", "uniform"])
  g = parser.add_argument_group("runs")
  g.add_argument("--seeds", type=_positive_int, default=5, help="number of seeds (0, 1, ...)")
  g.add_argument("--first-seed", type=int, default=0)
  g.add_argument("--out", default=None, help="output directory (default runs/<timestamp>)")
  g.add_argument("--checkpoint", action="store_true", help="orbax checkpoints per run under OUT/checkpoints")
  g.add_argument("--max-steps", type=_positive_int, default=None, help="cap on steps per epoch (smoke runs)")
  g.add_argument("--num-train", type=_positive_int, default=None, help="use only N training examples")
  g.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
  return parser


def configs_from_args(args: argparse.Namespace) -> list[Config]:
  """The runs to make: every sparsifier x {baseline, HAM} x seed.

  Learning rate, alpha and beta not given on the command line come from
  :data:`~ham_optax.training.configs.default.TUNED` (chosen on the validation split) when the
  dataset / model / optimizer / sparsifier combination was tuned, else from :class:`Config`.
  """
  default = Config()
  hams = {"off": [False], "on": [True], "both": [False, True]}[args.ham]
  seeds = range(args.first_seed, args.first_seed + args.seeds)
  configs = []
  for sparsifier, ham, seed in itertools.product(args.sparsifier, hams, seeds):
    tuned = tuned_hyperparameters(args.dataset, args.model, args.optimizer, sparsifier) or {}
    hp = {
      key: getattr(args, arg) if getattr(args, arg) is not None else tuned.get(key, getattr(default, key))
      for key, arg in (("learning_rate", "lr"), ("alpha", "alpha"), ("beta", "beta"))
    }
    config = Config(
      dataset=args.dataset,
      model=args.model,
      width=args.width,
      optimizer=args.optimizer,
      learning_rate=hp["learning_rate"],
      momentum=args.momentum,
      weight_decay=args.weight_decay,
      schedule=args.schedule,
      warmup_epochs=args.warmup_epochs,
      epochs=args.epochs,
      batch_size=args.batch_size,
      ham=ham,
      alpha=hp["alpha"],
      beta=hp["beta"],
      sparsifier=sparsifier,
      sparsity=args.sparsity,
      distribution=args.distribution,
      seed=seed,
      max_steps=args.max_steps,
      num_train=args.num_train,
      progress=False,
    )
    config.validate()
    configs.append(config)
  return configs


_FREE_TEXT_OPTIONS = ("--out", "--data-dir")


def _subcommand_first(argv: list[str]) -> list[str]:
  """Moves a ``train`` given after the options to the front.

  Otherwise a multi-value option before it (``--sparsifier none random train``) would swallow it as a value.
  A ``train`` that is the value of a free-text option (``--out train``) is left where it is.
  """
  for i, token in enumerate(argv):
    if token == "train" and i > 0 and argv[i - 1] not in _FREE_TEXT_OPTIONS:
      return ["train", *argv[:i], *argv[i + 1 :]]
  return argv


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the comparison described by ``argv`` (default: ``sys.argv[1:]``); returns 0."""
  parser = build_parser()
  args = parser.parse_args(_subcommand_first(list(sys.argv[1:] if argv is None else argv)))
  try:
    configs = configs_from_args(args)
  except ValueError as e:
    parser.error(str(e))

  from tqdm.auto import tqdm

  from ham_optax.training import data as data_lib
  from ham_optax.training import report
  from ham_optax.training.train import train_and_evaluate

  out = Path(args.out) if args.out else Path("runs") / time.strftime("%Y%m%d-%H%M%S", time.gmtime())
  kwargs = {"data_dir": args.data_dir} if args.dataset.startswith("cifar") and args.data_dir else {}
  dataset = data_lib.load_dataset(args.dataset, **kwargs)
  results = []
  t0 = time.perf_counter()
  with tqdm(configs, desc="runs", disable=args.no_progress) as bar:
    for config in bar:
      bar.set_postfix(method=config.method, seed=config.seed)
      if args.checkpoint:
        config = config.replace(
          checkpoint_dir=str((out / "checkpoints" / f"{config.method}_seed{config.seed}").resolve())
        )
      config = config.replace(progress=not args.no_progress)
      results.append(train_and_evaluate(config, dataset))
  elapsed = time.perf_counter() - t0
  paths = report.save_results(
    results, out, extra={"argv": list(sys.argv[1:] if argv is None else argv), "wall_time_s": elapsed}
  )
  print(
    f"\n{args.dataset} / {args.model} / {args.optimizer}, {args.epochs} epochs, {args.seeds} seeds ({elapsed:.0f} s)"
  )
  print(report.markdown_table(report.summarize(results)))
  print(f"\nresults: {paths['json']}  {paths['summary_csv']}  plot: {paths['plot']}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
