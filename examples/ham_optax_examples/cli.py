"""Command-line entry point: ``ham-optax train [options]`` (or ``python -m ham_optax_examples.cli``).

The options are generated from the fields of :class:`~ham_optax_examples.configs.default.Config` (one run) and
:class:`Job` (the set of runs): each option's name, type, choices, default and help come from the field, so there
is one list of options. ``--model`` and ``--sparsifier`` take several values, ``--ham`` is ``off``, ``on`` or
``both``, and ``--seeds`` / ``--first-seed`` choose the seeds: the job is every combination.

As one of N processes (``--coordinator HOST:PORT --num-processes N --process-id I``, ``JAX_COORDINATOR_ADDRESS``,
or started by ``srun`` / ``mpirun``, whose environment ``jax.distributed.initialize`` reads), the runs are
data-parallel over every device of every process: each process keeps only its shard of the data
(``--data-shards``), and only process 0 prints the results and writes the reports; checkpoints (``--checkpoint``)
are written by every process into the same ``--out``, which must be on a file system they share. The processes
check at the start that they were given the same options. Each runs as the child of a
:mod:`~ham_optax_examples.supervisor`, so that a lost peer ends it with one line and status 75, never JAX's abort.

With no options it runs the main job (``MAIN_JOB`` in ``configs/default.py``): on MNIST-1D, for an MLP and a 1-D
ResNet with BatchNorm, baseline vs HAM, each dense and with 90 % random pruning at initialisation, with the
learning rate / alpha / beta chosen on the validation split (``TUNED``), and prints a table of test accuracy
(mean ± std over the seeds that did not diverge), the number of diverged seeds, weight sparsity and sign flips
versus initialisation. Results go to ``--out`` (default ``runs/<UTC timestamp>``): ``results.json``,
``runs.csv``, ``summary.csv``, ``summary.md`` and ``curves.png``.

Every check that can be made before training is made before any data loads; a user mistake ends in one
``error:`` line and exit status 2, never a traceback. If every run of the job diverges the command says so and
exits with status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import math
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import jax
from jax.experimental import multihost_utils
from tqdm.auto import tqdm

from ham_optax_examples import data as data_lib
from ham_optax_examples import distributed, report, supervisor, train
from ham_optax_examples.configs.default import (
  DEFAULT_EPOCHS,
  DEFAULT_SEEDS,
  FALLBACK,
  MAIN_JOB,
  MODEL_DEFAULTS,
  TUNED,
  Config,
  option,
  resolve,
)

__all__ = ["Job", "build_parser", "configs_from_args", "main"]


@dataclass(frozen=True)
class Job:
  """The options that describe a set of runs rather than one run (the rest are :class:`Config` fields)."""

  seeds: int | None = option(None, "number of seeds")
  first_seed: int = option(0, "first seed; the job uses FIRST_SEED, FIRST_SEED + 1, ...")
  out: str | None = option(
    None, "output directory, created and checked before training", default_help="runs/<UTC time>"
  )
  checkpoint: bool = option(False, "orbax checkpoints per run under OUT/checkpoints; a rerun resumes")
  restart: bool = option(False, "with --checkpoint: discard existing checkpoints and start over")
  data_dir: str | None = option(None, "TFDS data_dir for cifar10/cifar100", default_help="TFDS's own")
  # one of several JAX processes (ham_optax_examples.distributed)
  coordinator: str | None = option(
    None,
    "HOST:PORT of process 0's coordination service: run as one of --num-processes processes",
    default_help="$JAX_COORDINATOR_ADDRESS, else srun's / mpirun's, else one process",
    metavar="HOST:PORT",
  )
  num_processes: int | None = option(
    None, "number of processes of a multi-process run", default_help="from the cluster environment"
  )
  process_id: int | None = option(
    None, "this process's index in [0, NUM_PROCESSES)", default_help="from the cluster environment"
  )
  join_timeout: float = option(
    120.0,
    "multi-process: exit (status 75) when not every process has joined after this many seconds",
    metavar="S",
  )
  peer_timeout: float = option(
    600.0,
    "multi-process: exit (status 75) when no epoch finishes for this many seconds (a dead peer)",
    metavar="S",
  )


# Config fields that the job sweeps over (several values) or that the job sets per run.
_LIST_FIELDS = ("model", "sparsifier")
_JOB_SET_FIELDS = {"seed": "--seeds/--first-seed", "checkpoint_dir": "--checkpoint"}
_HAM_CHOICES = {"off": (False,), "on": (True,), "both": (False, True)}


def _finite_float(text: str) -> float:
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
  if not math.isfinite(value):
    raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
  return value


def _int(text: str) -> int:
  try:
    return int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _per_model(name: str, otherwise: str) -> str:
  listed = [f"{values[name]} for {model}" for model, values in MODEL_DEFAULTS.items() if name in values]
  return ", ".join([*listed, f"else {otherwise}"])


def _default_text(f: dataclasses.Field) -> str:
  """The default shown by ``--help``: the value, or how it is chosen when it depends on other options."""
  if f.name in FALLBACK["sgd"]:
    fallback = " / ".join(f"{values[f.name]:g} ({opt})" for opt, values in FALLBACK.items())
    return fallback if f.name == "weight_decay" else f"validation-tuned where listed below, else {fallback}"
  if f.name == "width":
    return _per_model("width", "the model's own")
  if f.name == "epochs":
    return _per_model("epochs", str(DEFAULT_EPOCHS))
  if f.name == "seeds":
    return _per_model("seeds", str(DEFAULT_SEEDS))
  if f.name == "model":
    return f"{' '.join(MAIN_JOB['models'])} on {MAIN_JOB['dataset']}, else {f.default}"
  if f.name == "sparsifier":
    return " ".join(MAIN_JOB["sparsifiers"])
  if "default_help" in f.metadata:
    return f.metadata["default_help"]
  if isinstance(f.default, bool):
    return "on" if f.default else "off"
  return str(f.default)


def _epilog() -> str:
  tuned: dict[tuple[str, str, str], list[str]] = {}
  for (dataset, model, optimizer, sparsifier), values in TUNED.items():
    tuned.setdefault((dataset, model, optimizer), []).append(
      f"{sparsifier} (lr {values.learning_rate:g}, alpha {values.alpha:g}, beta {values.beta:g})"
    )
  lines = ["learning rate, alpha and beta tuned on the validation split (configs/default.py TUNED):"]
  lines += [f"  {'/'.join(key)}: {', '.join(entries)}" for key, entries in tuned.items()]
  lines.append("every other combination uses the untuned per-optimizer fallbacks shown above.")
  return "\n".join(lines)


def _add_field(group: argparse._ArgumentGroup, f: dataclasses.Field) -> None:
  """Adds the option for dataclass field ``f``; its default is ``None`` so that what was given is known."""
  flag = "--" + f.metadata.get("flag", f.name).replace("_", "-")
  kwargs: dict[str, Any] = {"dest": f.name, "default": None}
  if "choices" in f.metadata:
    kwargs["choices"] = f.metadata["choices"]
  if f.name in _LIST_FIELDS:
    kwargs["nargs"] = "+"
  if "bool" in str(f.type):
    kwargs["action"] = argparse.BooleanOptionalAction
  elif "float" in str(f.type):
    kwargs["type"] = _finite_float
    kwargs["metavar"] = "X"
  elif "int" in str(f.type):
    kwargs["type"] = _int
    kwargs["metavar"] = "N"
  if "metavar" in f.metadata:
    kwargs["metavar"] = f.metadata["metavar"]
  group.add_argument(flag, help=f"{f.metadata['help']} (default: {_default_text(f)})", **kwargs)


def build_parser() -> argparse.ArgumentParser:
  """The ``ham-optax`` argument parser (subcommand ``train``, also the default), generated from the fields of
  :class:`Config` and :class:`Job`."""
  parser = argparse.ArgumentParser(
    prog="ham-optax",
    description="Train with and without HAM (Hyperbolic Aware Minimization, arXiv:2506.02630) and compare.",
    epilog=_epilog(),
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  parser.add_argument(
    "command", nargs="?", default="train", choices=["train"], help="what to do (default: train)"
  )
  group = parser.add_argument_group("run (Config)")
  for f in dataclasses.fields(Config):
    if f.name == "ham":
      group.add_argument(
        "--ham", default="both", choices=tuple(_HAM_CHOICES), help="baseline, HAM, or both (default: both)"
      )
    elif f.name not in _JOB_SET_FIELDS:
      _add_field(group, f)
  group = parser.add_argument_group("job")
  for f in dataclasses.fields(Job):
    _add_field(group, f)
  return parser


def _given(args: argparse.Namespace, cls: type) -> dict[str, Any]:
  return {
    f.name: getattr(args, f.name)
    for f in dataclasses.fields(cls)
    if getattr(args, f.name, None) is not None and f.name not in _LIST_FIELDS
  }


def configs_from_args(args: argparse.Namespace) -> list[Config]:
  """The runs to make: every model x sparsifier x variant (baseline / HAM / Sign-In) x seed, fully resolved.

  Fields not given on the command line take the defaults for the choices made (:func:`~ham_optax_examples.configs.default.resolve`): learning rate,
  alpha and beta from ``TUNED`` (chosen on the validation split) where the combination was tuned, else the
  optimizer's fallback; epochs, width and the number of seeds per model.
  Raises ``ValueError`` naming the first invalid field.
  """
  job = Job(**_given(args, Job))
  given = _given(args, Config)
  given.pop("ham", None)
  sign_in = given.pop("sign_in", False)
  dataset = given.get("dataset", Config.dataset)
  if args.model is not None:
    model_names = args.model
  else:
    model_names = list(MAIN_JOB["models"]) if dataset == MAIN_JOB["dataset"] else [Config.model]
  sparsifiers = args.sparsifier or list(MAIN_JOB["sparsifiers"])
  variants = [{"ham": ham} for ham in _HAM_CHOICES[args.ham]] + ([{"sign_in": True}] if sign_in else [])
  configs = []
  for model, sparsifier, variant in itertools.product(model_names, sparsifiers, variants):
    n_seeds = (
      job.seeds if job.seeds is not None else MODEL_DEFAULTS.get(model, {}).get("seeds", DEFAULT_SEEDS)
    )
    if n_seeds < 1:
      raise ValueError(f"seeds must be >= 1, got {n_seeds}")
    for seed in range(job.first_seed, job.first_seed + n_seeds):
      config, _ = resolve(Config(**given, model=model, sparsifier=sparsifier, seed=seed, **variant))
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


def _prepare_out(out: Path, process_index: int = 0) -> None:
  """Creates ``out`` and checks that a file can be written there; raises ``OSError`` otherwise."""
  out.mkdir(parents=True, exist_ok=True)
  probe = out / f".write_test.{process_index}"
  probe.write_text("")
  probe.unlink()


def _describe_defaults(configs: Sequence[Config], given: dict[str, Any]) -> list[str]:
  """One line per model / method: the values of the settings the user did not give, and where they came from."""
  lines, seen = [], set()
  for config in configs:
    key = (config.model, config.method)
    if key in seen:
      continue
    seen.add(key)
    unresolved = config.replace(**{name: None for name in ("learning_rate", "weight_decay", "alpha", "beta")})
    _, sources = resolve(unresolved)
    shown = ["learning_rate", "weight_decay"] + (["alpha", "beta"] if config.ham else [])
    parts = [f"{name} {getattr(config, name):g} ({sources[name]})" for name in shown if name not in given]
    if parts:
      lines.append(f"  {config.model} {config.method}: " + ", ".join(parts))
  return lines


def _fail(message: str) -> NoReturn:
  """Ends the command with one ``error:`` line and exit status 2 (a user mistake found after parsing)."""
  print(f"ham-optax: error: {message}", file=sys.stderr)
  raise SystemExit(2)


def _joins_processes(args: Job) -> bool:
  """Whether a multi-process run is asked for (flags, ``JAX_COORDINATOR_ADDRESS``, or a launcher's environment
  announcing more than one process, see :func:`~ham_optax_examples.distributed.launched_processes`); checks the
  flags if so."""
  given = (args.coordinator, args.num_processes, args.process_id)
  launched = distributed.launched_processes()
  if (
    all(v is None for v in given)
    and not os.environ.get("JAX_COORDINATOR_ADDRESS")
    and not (launched and launched[0] > 1)
  ):
    return False
  if args.coordinator is not None and not re.fullmatch(r"\[?[^\s]+\]?:\d{1,5}", args.coordinator):
    _fail(f"--coordinator must be HOST:PORT, got {args.coordinator!r}")
  if args.num_processes is not None and args.num_processes < 1:
    _fail(f"--num-processes must be >= 1, got {args.num_processes}")
  if args.process_id is not None and (
    args.process_id < 0 or (args.num_processes is not None and args.process_id >= args.num_processes)
  ):
    _fail(f"--process-id must be in [0, --num-processes), got {args.process_id}")
  for name in ("peer_timeout", "join_timeout"):
    if not getattr(args, name) > 0:
      _fail(f"--{name.replace('_', '-')} must be > 0 seconds, got {getattr(args, name)}")
  return True


def _who(args: Job) -> str:
  """This process as the error lines name it (from the flags, else from a launcher's environment)."""
  count, index = distributed.launched_processes() or (None, None)
  count = count if args.num_processes is None else args.num_processes
  index = index if args.process_id is None else args.process_id
  if index is None:
    return "this process"
  return f"process {index}" + ("" if count is None else f" of {count}")


def _join_processes(args: Job) -> None:
  """Joins the multi-process run; before anything else touches JAX, since the process count is fixed when JAX
  starts its backends."""
  try:
    distributed.initialize(
      args.coordinator, args.num_processes, args.process_id, initialization_timeout=args.join_timeout
    )
  except (RuntimeError, ValueError) as e:  # settings JAX could not complete from the environment
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    _fail(
      f"could not join the multi-process run ({first}); give --coordinator, --num-processes and --process-id "
      "(or run where jax.distributed.initialize detects them)"
    )


def _settings(configs: Sequence[Config], job: Job) -> dict[str, Any]:
  """What every process of a multi-process run must agree on, by option name: everything the runs compute and
  when they stop, whether they checkpoint and whether they start over (``--out`` and the progress bar may differ).
  A setting that varies over the runs (``--seed``) is the list of its values."""
  settings: dict[str, Any] = {
    "number of runs": len(configs),
    "--checkpoint": job.checkpoint,
    "--restart": job.restart,
  }
  runs = [dataclasses.asdict(config) for config in configs]
  for field in runs[0]:
    if field not in ("checkpoint_dir", "progress"):
      values = [run[field] for run in runs]
      settings[f"--{field.replace('_', '-')}"] = (
        values[0] if values.count(values[0]) == len(values) else values
      )
  return settings


def _load_dataset(name: str, data_dir: str | None) -> data_lib.Dataset:
  kwargs = {"data_dir": data_dir} if name.startswith("cifar") and data_dir else {}
  return data_lib.load_dataset(name, **kwargs)


def _run_all(
  configs: Sequence[Config], dataset: data_lib.Dataset, progress: bool, peer_timeout: float
) -> list[dict[str, Any]]:
  results = []
  lead = jax.process_index() == 0
  watchdog = distributed.Watchdog(peer_timeout, "epoch") if jax.process_count() > 1 else None
  with contextlib.ExitStack() as stack, tqdm(configs, desc="runs", disable=not (progress and lead)) as bar:
    if watchdog is not None:
      stack.enter_context(watchdog)
    for config in bar:
      bar.set_postfix(model=config.model, method=config.method, seed=config.seed)
      tick = None if watchdog is None else (lambda _record: watchdog.tick())
      r = train.train_and_evaluate(config if lead else config.replace(progress=False), dataset, on_epoch=tick)
      outcome = (
        f"diverged at epoch {r['diverged_epoch']}"
        if r["diverged"]
        else f"test acc {100 * r['test_acc']:.2f} %"
      )
      if lead:
        tqdm.write(
          f"{config.model} {config.method} seed {config.seed}: {outcome} ({r['train_time_s']:.0f} s)"
        )
      results.append(r)
  return results


def _say_layout(config: Config, dataset: data_lib.Dataset) -> None:
  """One line per process: which shards of the data it holds (multi-process runs only)."""
  layout = train.data_layout(config)
  per_shard = min(len(dataset.x_train), config.num_train or len(dataset.x_train)) // layout.shards
  first, last = layout.local_shards[0], layout.local_shards[-1]
  print(
    f"process {jax.process_index()} of {jax.process_count()} ({jax.local_device_count()} of {jax.device_count()} "
    f"devices): data shards {first}-{last} of {layout.shards}, {per_shard * len(layout.local_shards)} training "
    "examples",
    flush=True,
  )


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the job described by ``argv`` (default: ``sys.argv[1:]``).

  Returns 0, or 1 when every run diverged; exits with status 2 (argparse's usage error) on a user mistake.
  """
  argv = list(sys.argv[1:] if argv is None else argv)
  parser = build_parser()
  args = parser.parse_args(_subcommand_first(argv))
  job = Job(**_given(args, Job))
  if _joins_processes(job):
    if not supervisor.supervised():  # JAX aborts a process whose peer is lost: say so in one line instead
      return supervisor.run([sys.executable, "-m", "ham_optax_examples.cli", *argv], _who(job))
    _join_processes(job)
  lead = jax.process_index() == 0
  out = Path(args.out) if args.out else Path("runs") / time.strftime("%Y%m%d-%H%M%S", time.gmtime())
  try:
    configs = configs_from_args(args)
    for config in configs:
      train.data_layout(config)
  except ValueError as e:
    parser.error(str(e))
  if args.checkpoint:
    configs = [
      c.replace(checkpoint_dir=str((out / "checkpoints" / c.model / f"{c.method}_seed{c.seed}").resolve()))
      for c in configs
    ]
  try:
    distributed.check_same_settings(_settings(configs, job))
  except ValueError as e:
    _fail(str(e))
  try:
    _prepare_out(out, jax.process_index())
  except OSError as e:
    _fail(f"--out {out} is not a writable directory: {e}")
  if args.restart and lead:
    for config in configs:
      if config.checkpoint_dir is not None:
        train.discard_checkpoint(config.checkpoint_dir)
  if args.restart and jax.process_count() > 1:
    multihost_utils.sync_global_devices("ham-optax: checkpoints discarded")
  for config in configs:
    if config.checkpoint_dir is not None and not args.restart:
      try:
        train.check_checkpoint(config)
      except train.CheckpointMismatchError as e:
        _fail(str(e))
  try:
    dataset = _load_dataset(configs[0].dataset, args.data_dir)
  except ImportError as e:
    _fail(str(e))
  except (OSError, ValueError) as e:
    _fail(f"could not load dataset {configs[0].dataset!r}: {e}")

  given = _given(args, Config)
  if jax.process_count() > 1:
    _say_layout(configs[0], dataset)
  if lead:
    print(f"{len(configs)} runs on {configs[0].dataset}; settings not given on the command line:")
    print("\n".join(_describe_defaults(configs, given)))
  t0 = time.perf_counter()
  try:
    results = _run_all(configs, dataset, args.progress is not False, job.peer_timeout)
  except ValueError as e:  # e.g. a model that does not fit the dataset's input shape
    _fail(str(e))
  elapsed = time.perf_counter() - t0
  if not lead:  # only process 0 reports; the results are the same in every process
    return 0 if not all(r["diverged"] for r in results) else 1
  paths = report.save_results(results, out, extra={"argv": argv, "wall_time_s": elapsed})
  print(f"\n{configs[0].dataset} / {configs[0].optimizer}, {len(results)} runs ({elapsed:.0f} s)")
  print(report.markdown_table(report.summarize(results)))
  print(f"\nresults: {paths['json']}  {paths['summary_csv']}  plot: {paths['plot']}")
  if all(r["diverged"] for r in results):
    print(
      f"ham-optax: every run diverged ({len(results)}/{len(results)}): no result; lower --lr or --alpha",
      file=sys.stderr,
    )
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
