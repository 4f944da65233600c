"""The ``ham-optax train [options]`` command (or ``python -m ham_optax_examples.main train``): every model x
sparsifier x variant x seed, a table and the results files; with no options the main job (``MAIN_JOB`` in
``configs/tuned.py``); as one of N processes only process 0 reports. tyro makes the options from :class:`~ham_optax_examples.configs.default.Config` and :class:`Train`: types,
choices, defaults and help have one source (``ml_collections`` flags would need them again, untyped). Every option
is checked before any data loads: a mistake ends in one ``error:`` line and exit status 2; status 1: every run
diverged."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import itertools
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

import jax
import numpy as np
import tyro
from jax.experimental import multihost_utils
from tqdm.auto import tqdm

from ham_optax import checks
from ham_optax_examples import data as data_lib
from ham_optax_examples import distributed, report, train
from ham_optax_examples.configs.default import Config, ModelName, SparsifierName, resolve, shown
from ham_optax_examples.configs.tuned import DEFAULT_SEEDS, MAIN_JOB, MODEL_DEFAULTS
from ham_optax_examples.provenance import code_version


@dataclasses.dataclass(frozen=True)
class Train:
  """Train with and without HAM (Hyperbolic Aware Minimization, arXiv:2506.02630) and compare."""

  config: Annotated[Config, tyro.conf.OmitArgPrefixes, tyro.conf.arg(help="the settings of every run")] = (
    Config()
  )
  model: Annotated[tuple[ModelName, ...], shown("mlp resnet1d on mnist1d, else mlp")] = ()  # models
  sparsifier: Annotated[tuple[SparsifierName, ...], shown("none random")] = ()  # sparsifiers
  ham: Literal["off", "on", "both"] = "both"  # baseline, HAM, or both
  seeds: Annotated[int | None, shown("3 for resnet1d, else 5", "N")] = None  # number of seeds
  first_seed: int = 0  # first seed; the job uses FIRST_SEED, FIRST_SEED + 1, ...
  out: Annotated[str | None, shown("runs/<UTC time>", "DIR")] = None  # output directory
  checkpoint: bool = False  # orbax checkpoints per run under OUT/checkpoints; a rerun resumes
  restart: bool = False  # discard the checkpoints and results in OUT and start over
  data_dir: Annotated[str | None, shown("TFDS's own", "DIR")] = None  # TFDS data_dir for cifar10/cifar100
  # HOST:PORT of process 0's coordination service: run as one of --num-processes processes
  coordinator: Annotated[
    str | None, shown("$JAX_COORDINATOR_ADDRESS, srun's / mpirun's, else one process", "HOST:PORT")
  ] = None
  num_processes: Annotated[int | None, shown("from the launcher", "N")] = None  # processes of the run
  process_id: Annotated[int | None, shown("from the launcher", "N")] = None  # this process's index
  join_timeout: int = 300  # seconds JAX waits for every process to join
  heartbeat_timeout: int = 100  # seconds without a heartbeat after which JAX declares a process dead


def _fail(message: str) -> NoReturn:
  print(f"ham-optax: error: {message}", file=sys.stderr)
  raise SystemExit(2)


def parse(argv: Sequence[str]) -> Train:
  """The :class:`Train` job of ``argv`` (``train`` may be left out); a usage error ends in one line."""
  captured = io.StringIO()
  try:
    with contextlib.redirect_stderr(captured):
      argv = list(argv)
      return tyro.cli(Train, prog="ham-optax train", args=argv[1:] if argv[:1] == ["train"] else argv)
  except SystemExit as e:
    if not e.code:
      raise
    rows = [re.sub(r"^[│|] ?|[│|]$", "", line).strip() for line in captured.getvalue().splitlines()]
    end = next((i for i, row in enumerate(rows[1:], 1) if not row.strip("─-")), len(rows))
    title, body = rows[0].strip("╭╮+─- "), rows[1:end]
    _fail(" ".join(body if body and body[0].startswith(title) else [f"{title}:", *body]))


def configs_from_args(args: Train) -> list[Config]:
  """The runs (every model x sparsifier x variant x seed), resolved and checked (``ValueError``)."""
  checks.check_int(args.seeds, "seeds", 1, none_ok=True)
  checks.check_int(args.first_seed, "first_seed", 0)
  for name in ("model", "sparsifier"):
    values = getattr(args, name)
    if repeated := sorted({v for v in values if values.count(v) > 1}):
      raise ValueError(
        f"--{name} lists {', '.join(repeated)} more than once (each would run again as more seeds)"
      )
  if args.config.halt_after_epochs is not None and not args.checkpoint:
    raise ValueError(
      "--halt-after-epochs needs --checkpoint: without checkpoints a halted run cannot be resumed"
    )
  base = args.config.replace(sign_in=False)
  models = args.model or (MAIN_JOB["models"] if base.dataset == MAIN_JOB["dataset"] else (Config.model,))
  ham = {"off": (False,), "on": (True,), "both": (False, True)}[args.ham]
  variants = [{"ham": h} for h in ham] + ([{"sign_in": True}] if args.config.sign_in else [])
  configs, sparsifiers = [], args.sparsifier or MAIN_JOB["sparsifiers"]
  for model, sparsifier, variant in itertools.product(models, sparsifiers, variants):
    n_seeds = args.seeds or MODEL_DEFAULTS.get(model, {}).get("seeds", DEFAULT_SEEDS)
    checks.check_int(args.first_seed + n_seeds - 1, "first_seed + seeds - 1 (the last seed)", 0)
    for seed in range(args.first_seed, args.first_seed + n_seeds):
      config, _ = resolve(base.replace(model=model, sparsifier=sparsifier, seed=seed, **variant))
      config.validate()
      configs.append(config)
  return configs


def _joins_processes(args: Train) -> bool:
  """Whether a multi-process run is asked for; raises ``ValueError`` for invalid process options."""
  for name in ("join_timeout", "heartbeat_timeout"):
    checks.check_int(getattr(args, name), f"--{name.replace('_', '-')}", 1)
  given = (args.coordinator, args.num_processes, args.process_id)
  launched = (distributed.launched_processes() or (1,))[0] > 1
  if all(v is None for v in given) and not os.environ.get("JAX_COORDINATOR_ADDRESS") and not launched:
    return False
  if args.coordinator is not None:
    try:
      distributed.check_coordinator(args.coordinator)
    except ValueError as e:
      raise ValueError(f"--coordinator: {e}") from None
  checks.check_int(args.num_processes, "--num-processes", 1, none_ok=True)
  if args.process_id is not None and not 0 <= args.process_id < (args.num_processes or sys.maxsize):
    raise ValueError(f"--process-id must be in [0, --num-processes), got {args.process_id}")
  return True


def _join_if_asked(args: Train) -> None:
  """Joins the multi-process run asked for, if any, before anything else touches JAX (process 0 first probes its
  port)."""
  if not _joins_processes(args):
    return
  index = args.process_id if args.process_id is not None else (distributed.launched_processes() or (0, 0))[1]
  address = args.coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS")
  try:
    if index == 0 and address:
      distributed.check_coordinator(address, bind=True)
    timeouts = dict(
      heartbeat_timeout_seconds=args.heartbeat_timeout, initialization_timeout=args.join_timeout
    )
    distributed.initialize(args.coordinator, args.num_processes, args.process_id, **timeouts)
  except (RuntimeError, ValueError) as e:
    _fail(f"could not join the multi-process run ({(str(e).strip().splitlines() or [type(e).__name__])[0]})")


def _settings(configs: Sequence[Config], args: Train) -> dict[str, Any]:
  """What defines the job, by option name (a setting that varies over the runs: the list of its values)."""
  settings: dict[str, Any] = {"number of runs": len(configs), "--checkpoint": args.checkpoint}
  settings["--restart"] = args.restart
  for field in dataclasses.fields(Config):
    if field.name not in ("checkpoint_dir", "progress"):
      values = [getattr(config, field.name) for config in configs]
      same = values.count(values[0]) == len(values)
      settings[f"--{field.name.replace('_', '-')}"] = values[0] if same else values
  return settings


# What a job writes into --out: its settings (``job.json``, written first) and ``report.save_results``'s files.
_OUTPUTS = ("job.json", "results.json", "runs.csv", "summary.csv", "summary.md", "curves.png")


def _out_dir(args: Train) -> Path:
  """``--out``, or ``runs/<UTC time>`` when not given; raises ``ValueError`` for an empty ``--out``."""
  if args.out is None:
    return Path("runs") / time.strftime("%Y%m%d-%H%M%S", time.gmtime())
  if not args.out.strip():
    raise ValueError("--out must name a directory, got an empty string")
  return Path(args.out)


def _read_job(out: Path) -> dict[str, Any] | None:
  """The settings in ``out/job.json`` (``None``: no such file); raises ``ValueError`` when it is damaged."""
  path = out / "job.json"
  if not path.exists():
    return None
  try:
    theirs = json.loads(path.read_text())
  except (OSError, ValueError):  # unreadable, not UTF-8 or not JSON
    theirs = None
  if not isinstance(theirs, dict):
    raise ValueError(
      f"--out {out}: {path} is damaged (not the settings a job writes); add --restart to replace the results in "
      "--out, or choose another --out"
    )
  return theirs


def _prepare_out(out: Path, settings: dict[str, Any], restart: bool) -> None:
  """Creates ``out``; raises ``ValueError`` unless it is writable and holds no results of other settings."""
  try:
    out.mkdir(parents=True, exist_ok=True)
    (out / f".write_test.{os.getpid()}").touch()
    (out / f".write_test.{os.getpid()}").unlink()
  except OSError as e:
    raise ValueError(f"--out {out} is not a writable directory: {e}") from None
  if blocked := [name for name in _OUTPUTS if (out / name).exists() and not (out / name).is_file()]:
    raise ValueError(f"--out {out}: {out / blocked[0]} is not a file, where the job writes one; remove it")
  if restart:
    return
  theirs = _read_job(out)
  if not (theirs or (out / "results.json").exists()):
    return
  ours = json.loads(json.dumps(settings, default=str))
  # A job halted by --halt-after-epochs (which needs --checkpoint) resumes where it stopped.
  keys = sorted((set(ours) | set(theirs or {})) - {"--halt-after-epochs", "--restart"})
  differing = [k for k in keys if ours.get(k) != (theirs or {}).get(k)]
  if theirs is None or differing:
    detail = "" if theirs is None else f" ({', '.join(f'{k}: {theirs.get(k)!r}' for k in differing[:3])})"
    raise ValueError(
      f"--out {out} holds results written with other settings{detail}; choose another --out, or add --restart to "
      "replace them"
    )


def _write_job(out: Path, settings: dict[str, Any]) -> None:
  """Writes ``out/job.json`` atomically (an interrupted write leaves the previous file whole)."""
  temporary = out / f".job.json.{os.getpid()}"
  try:
    temporary.write_text(json.dumps(settings, indent=1, default=str))
    os.replace(temporary, out / "job.json")
  finally:
    temporary.unlink(missing_ok=True)


def _prepare_checkpoints(configs: list[Config], args: Train, out: Path) -> list[Config]:
  """The runs with their checkpoint directories, each checked (``ValueError``: damaged or of other settings)."""
  if not args.checkpoint:
    return configs
  directory = (out / "checkpoints").resolve()
  configs = [c.replace(checkpoint_dir=str(directory / c.model / f"{c.method}_seed{c.seed}")) for c in configs]
  if args.restart:
    if jax.process_index() == 0:
      for config in configs:
        train.discard_checkpoint(config.checkpoint_dir)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices("ham-optax: checkpoints discarded")
  latest = [train.check_checkpoint(config) for config in configs]
  halt = args.config.halt_after_epochs
  if halt is not None and not args.restart and (out / "results.json").is_file():
    _check_no_epochs_lost(configs, latest, out / "results.json", halt)
  return configs


def _check_no_epochs_lost(
  configs: Sequence[Config], latest: Sequence[int | None], path: Path, halt: int
) -> None:
  """Raises ``ValueError`` when a job halting after ``halt`` epochs would replace a run of ``path`` (results.json)
  with fewer epochs than it holds (its checkpoint removed)."""
  try:
    runs = json.loads(path.read_text())["runs"]
    held = {(r["config"]["model"], r["method"], r["config"]["seed"]): len(r["history"]) for r in runs}
  except (OSError, ValueError, KeyError, TypeError):
    raise ValueError(
      f"--out {path.parent}: {path} is damaged; add --restart to replace it, or choose another --out"
    ) from None
  for config, resumed in zip(configs, latest, strict=True):
    reached = max(resumed or 0, min(halt, config.epochs))
    if reached < (before := held.get((config.model, config.method, config.seed), 0)):
      raise ValueError(
        f"--halt-after-epochs {halt}: {path} holds {before} epochs of {config.model} {config.method} seed "
        f"{config.seed}, this job would replace them with {reached} (its checkpoint holds {resumed or 0}); leave "
        "out --halt-after-epochs to train it to the end, or add --restart to start over"
      )


def _describe_defaults(configs: Sequence[Config], args: Train) -> list[str]:
  """One line per model / method: the settings left at their defaults, and where they came from."""
  lines = {}
  for c in configs:
    _, sources = resolve(args.config.replace(model=c.model, sparsifier=c.sparsifier, ham=c.ham))
    names = ["learning_rate", "weight_decay"] + (["alpha", "beta"] if c.ham else [])
    parts = [f"{name} {getattr(c, name)} ({sources[name]})" for name in names if name in sources]
    if parts:
      lines.setdefault((c.model, c.method), f"  {c.model} {c.method}: " + ", ".join(parts))
  return list(lines.values())


def _suggest_alphas(configs: Sequence[Config], dataset: Any) -> tuple[list[Config], list[bool]]:
  """The runs with ``alpha="auto"`` set by ``train.suggested_alpha`` (process 0's value), and which ones."""
  auto = [c.ham and c.alpha == "auto" for c in configs]
  try:
    alphas = [train.suggested_alpha(c, dataset) if a else 0.0 for c, a in zip(configs, auto, strict=True)]
  except ValueError as e:
    _fail(f"--alpha auto: {e}")
  if jax.process_count() > 1:
    alphas = multihost_utils.broadcast_one_to_all(np.asarray(alphas, np.float64)).tolist()
  return [c.replace(alpha=alpha) if a else c for c, a, alpha in zip(configs, auto, alphas, strict=True)], auto


def _run_all(configs: Sequence[Config], dataset: Any, progress: bool, auto: Sequence[bool]) -> list[dict]:
  """Trains every run; process 0 shows the progress and one line per finished run."""
  results, lead = [], jax.process_index() == 0
  with tqdm(configs, desc="runs", disable=not (progress and lead)) as bar:
    for config, suggested in zip(bar, auto, strict=True):
      bar.set_postfix(model=config.model, method=config.method, seed=config.seed)
      r = train.train_and_evaluate(config if lead else config.replace(progress=False), dataset)
      r["alpha_source"] = "suggest_alpha" if suggested else r["alpha_source"]
      diverged = f"diverged at epoch {r['diverged_epoch']}"
      outcome = diverged if r["diverged"] else f"test acc {100 * r['test_acc']:.2f} %"
      if not (r["diverged"] or r["completed"]):
        outcome = f"halted after epoch {len(r['history'])} of {config.epochs}, {outcome}"
      if suggested:
        outcome += f", alpha {r['config']['alpha']:.3g} (suggest_alpha)"
      if lead:
        run = f"{config.model} {config.method} seed {config.seed}"
        tqdm.write(f"{run}: {outcome} ({r['train_time_s']:.0f} s)")
      results.append(r)
  return results


def _load_and_check(configs: Sequence[Config], data_dir: str | None) -> Any:
  """The job's dataset, after checking that every run's model fits it (before any run trains)."""
  name = configs[0].dataset
  try:
    kwargs = {"data_dir": data_dir} if name.startswith("cifar") and data_dir else {}
    dataset = data_lib.load_dataset(name, **kwargs)
  except ImportError as e:
    _fail(str(e))
  except (OSError, ValueError) as e:
    _fail(f"could not load dataset {name!r}: {e}")
  try:
    for config in {c.model: c for c in configs}.values():
      train.check_fits(config, dataset)
  except ValueError as e:
    _fail(str(e))
  n = min(len(dataset.x_train), configs[0].num_train or len(dataset.x_train))
  if n < (shards := train.data_layout(configs[0]).shards):
    _fail(f"{n} training examples cannot be cut into {shards} data shards (--data-shards) of at least one")
  if (batch_size := configs[0].batch_size) > n and jax.process_index() == 0:
    print(f"--batch-size {batch_size} > {n} training examples: every step uses all {n} (batch_size_used)")
  if jax.process_count() > 1:
    layout = train.data_layout(configs[0])
    print(
      f"process {jax.process_index()} of {jax.process_count()} ({jax.local_device_count()} of {jax.device_count()} "
      f"devices): data shards {layout.local_shards[0]}-{layout.local_shards[-1]} of {layout.shards}, "
      f"{n // layout.shards * len(layout.local_shards)} training examples",
      flush=True,
    )
  return dataset


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the job of ``argv`` (default ``sys.argv[1:]``): 0, or 1 when every run diverged; 2 on a mistake."""
  argv = list(sys.argv[1:] if argv is None else argv)
  args = parse(argv)
  try:
    out = _out_dir(args)
    configs = configs_from_args(args)
    _join_if_asked(args)
    # The shard count each run uses (one per process unless given), so job.json records it, not None.
    configs = [config.replace(data_shards=train.data_layout(config).shards) for config in configs]
    settings = _settings(configs, args)
    distributed.check_same_settings(settings)
    _prepare_out(out, settings, args.restart)
    configs = _prepare_checkpoints(configs, args, out)
  except ValueError as e:
    _fail(str(e))
  dataset = _load_and_check(configs, args.data_dir)
  configs, auto = _suggest_alphas(configs, dataset)
  lead = jax.process_index() == 0
  if lead:
    print(f"{len(configs)} runs on {configs[0].dataset}; settings not given on the command line:")
    print("\n".join(_describe_defaults(configs, args)))
  t0 = time.perf_counter()
  try:
    results = _run_all(configs, dataset, args.config.progress, auto)
  except ValueError as e:  # e.g. fewer training examples than data shards
    _fail(str(e))
  elapsed = time.perf_counter() - t0
  every_run_diverged = all(r["diverged"] for r in results)
  if not lead:  # only process 0 reports; the results are the same in every process
    return int(every_run_diverged)
  extra = {"argv": argv, "code_version": code_version(), "wall_time_s": elapsed}
  _write_job(out, settings)  # first: results never lie in --out without the settings that made them
  paths = report.save_results(results, out, extra=extra)
  print(f"\n{configs[0].dataset} / {configs[0].optimizer}, {len(results)} runs ({elapsed:.0f} s)")
  print(report.markdown_table(report.summarize(results)))
  print(f"\nresults: {paths['json']}  {paths['summary_csv']}  plot: {paths['plot']}")
  if halted := sum(not (r["diverged"] or r["completed"]) for r in results):
    resume = f"rerun without --halt-after-epochs (or with a larger one) to resume from {out / 'checkpoints'}"
    print(f"{halted} of {len(results)} runs halted before their last epoch; {resume}")
  if every_run_diverged:
    n = len(results)
    print(f"ham-optax: every run diverged ({n}/{n}): no result; lower --lr or --alpha", file=sys.stderr)
  return int(every_run_diverged)


if __name__ == "__main__":
  sys.exit(main())
