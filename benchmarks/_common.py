"""Helpers shared by the benchmark scripts in this folder: seeds, tuning, the train step, paired statistics,
saving results with the code that made them, timing, tables, reference network shapes, and the command-line
options (checked while they are parsed, with a smoke-run flag that keeps the options given explicitly).

Every script imports it as ``import _common`` (a script's own folder is first on ``sys.path``). The training loop
(``ham_optax_examples.train``) and scipy are imported only by the functions that need them.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ham_optax_examples.provenance import code_version, library_digest  # noqa: F401 (re-exported)

import ham_optax
from ham_optax import checks

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"

# Hyperparameters are chosen on the validation split with the tuning seeds TUNING_SEED0, TUNING_SEED0 + 1, ...;
# reported numbers come from the seeds 0, 1, ... The grokking and NanoAdam studies tune from SMALL_TUNING_SEED0.
TUNING_SEED0 = 1000
SMALL_TUNING_SEED0 = 100


def tuning_seeds(count: int, start: int = TUNING_SEED0) -> list[int]:
  """The first ``count`` tuning seeds: ``start, start + 1, ...``."""
  return list(range(start, start + count))


# --- Saving, with the command and the code that made the result ----------------------------------------------


def command(argv: Sequence[str] | None = None, script: str | os.PathLike | None = None) -> str:
  """The command of this run, shell-quoted: ``python <script> <argv>`` for a script's ``__file__`` and what
  its ``main`` was given (default ``sys.argv[1:]``: a ``main([...])`` from a test records the command that
  repeats it), or without ``script`` this process's command line."""
  if script is None:
    return shlex.join([os.path.basename(sys.executable), *sys.argv])
  return shlex.join(["python", display_path(script), *(sys.argv[1:] if argv is None else argv)])


def display_path(path: str | os.PathLike) -> str:
  """``path`` relative to the repository when inside it (results carry no machine-specific paths)."""
  path = Path(path).resolve()
  return str(path.relative_to(REPO) if path.is_relative_to(REPO) else path)


def environment() -> dict[str, Any]:
  """What a timing depends on: the command, JAX's devices, library versions, the platform, the UTC time."""
  import jax
  import optax

  env = dict(command=command(), devices=[str(d) for d in jax.devices()], platform=platform.platform())
  env |= dict(cpu_count=os.cpu_count(), jax=jax.__version__, optax=optax.__version__)
  return env | {"time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def write_json(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
  """Writes ``payload`` as indented JSON to ``path`` through a temporary file (no half-written file), adding
  nothing: for rewriting a loaded result (e.g. a redraw)."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(json.dumps(payload, indent=1))
  tmp.replace(path)
  return path


def provenance(cmd: str | None = None) -> dict[str, Any]:
  """``{"command": cmd or command(), "code_version": code_version()}``: the keys every saved result carries."""
  return {"command": cmd or command(), "code_version": code_version()}


def save_json(path: str | os.PathLike, payload: dict[str, Any], *, cmd: str | None = None) -> Path:
  """Writes a fresh result: ``payload`` with :func:`provenance` (``"command"``: ``cmd``, default this process's
  command line; ``"code_version"``), keys already in ``payload`` kept. See :func:`write_json`."""
  return write_json(path, {**provenance(cmd), **payload})


# --- Timing and paired statistics ----------------------------------------------------------------------------


def interleaved(
  runners: dict[str, Callable[[], Any]], reps: int, number: int = 1, seed: int = 0
) -> dict[str, list[float]]:
  """Times each runner ``number`` times per repetition, in a freshly shuffled order every repetition (slow
  phases of the machine hit a repetition's runners alike: compare with :func:`paired_ratio`). Returns per
  runner the wall-clock seconds per call of every repetition, and under ``"<name>:cpu"`` the CPU seconds."""
  rng, names = np.random.default_rng(seed), list(runners)
  out: dict[str, list[float]] = {**{n: [] for n in names}, **{f"{n}:cpu": [] for n in names}}
  for _ in range(reps):
    for i in rng.permutation(len(names)):
      name = names[i]
      t0, c0 = time.perf_counter(), time.process_time()
      for _ in range(number):
        runners[name]()
      out[name].append((time.perf_counter() - t0) / number)
      out[f"{name}:cpu"].append((time.process_time() - c0) / number)
  return out


def median_time(fn: Callable[[], Any], repeats: int, number: int = 1) -> float:
  """Median over ``repeats`` of the seconds per call of ``number`` back-to-back calls of ``fn``."""
  return float(np.median(interleaved({"fn": fn}, repeats, number)["fn"]))


def quartiles(x: Sequence[float], scale: float = 1.0) -> list[float]:
  """``[25th, 75th]`` percentiles of ``x``, times ``scale``."""
  return [scale * float(np.percentile(x, 25)), scale * float(np.percentile(x, 75))]


def paired_ratio(base: Sequence[float], other: Sequence[float], names=("base", "other")) -> dict[str, Any]:
  """Medians (ms) of two paired series of seconds (keys starting with ``names``, e.g. ``"ham_median_ms"``) and
  the median and 25-75 % range of their per-pair ratio."""
  a, b = np.asarray(base, np.float64), np.asarray(other, np.float64)
  paired, series = b / a, tuple(zip(names, (a, b), strict=True))
  out = {f"{n}_median_ms": 1e3 * float(np.median(x)) for n, x in series}
  out |= {f"{n}_iqr_ms": quartiles(x, 1e3) for n, x in series}
  out |= dict(
    ratio_of_medians=float(np.median(b) / np.median(a)), paired_ratio_median=float(np.median(paired))
  )
  return out | dict(paired_ratio_iqr=quartiles(paired), reps=len(a))


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
  """Two-sided Welch t-test p-value (``scipy.stats.ttest_ind``); NaN when both groups are constant."""
  from scipy import stats

  return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def paired_test(base: Sequence[float], other: Sequence[float]) -> dict[str, Any]:
  """Two-sided paired t-test (``scipy.stats.ttest_rel``) of ``other - base`` over seeds, every study's rule.

  Pairs with a non-finite value (a diverged run, counted on its own) are dropped. Returns ``mean_diff`` (over
  the remaining pairs; NaN when none remain), ``n`` (the pairs compared) and ``p_value``: NaN when fewer than
  two pairs remain or every difference is the same (``np.allclose``: zero variance leaves t undefined).
  """
  from scipy import stats

  a, b = np.asarray(base, np.float64), np.asarray(other, np.float64)
  ok = np.isfinite(a) & np.isfinite(b)
  d = b[ok] - a[ok]
  undefined = d.size < 2 or np.allclose(d, d[0])
  p = float("nan") if undefined else float(stats.ttest_rel(b[ok], a[ok]).pvalue)
  return {"mean_diff": float(d.mean()) if d.size else float("nan"), "p_value": p, "n": int(d.size)}


def paired_p(base: Sequence[float], other: Sequence[float]) -> float:
  """The p-value of :func:`paired_test`."""
  return paired_test(base, other)["p_value"]


# --- The train step and the tuning loop ----------------------------------------------------------------------


def train_step(loss_fn: Callable[..., Any], tx: Any, *, has_aux: bool = False) -> Callable[..., tuple]:
  """One step of ``tx`` on ``loss_fn(params, *batch)``: ``step(params, opt_state, *batch) -> (params,
  opt_state, value, grads)``, ``grads`` at the incoming ``params``, ``tx.update``, ``optax.apply_updates``;
  ``value`` is the loss, or ``(loss, aux)`` with ``has_aux``. Pure (jit, scan, vmap)."""
  import jax
  import optax

  def step(params, opt_state, *batch):
    value, grads = jax.value_and_grad(loss_fn, has_aux=has_aux)(params, *batch)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value, grads

  return step


def mean_val_acc(runs: Sequence[dict[str, Any]], diverged: float | None = 0.0) -> float:
  """Mean final validation accuracy of ``train_and_evaluate`` results; a diverged run (no accuracy) counts as
  ``diverged``, or is left out with ``diverged=None`` (NaN when every run diverged)."""
  vals = [v for v in (diverged if r["diverged"] else r["val_acc"] for r in runs) if v is not None]
  return float(np.mean(vals)) if vals else float("nan")


def train_seeds(
  config: Any,
  dataset: Any,
  seeds: Sequence[int],
  prepare: Callable[[Any], Any] | None = None,
  log: Callable[[Any, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
  """``train_and_evaluate`` of ``config`` at every seed; ``prepare(config) -> config`` completes each seed's
  config (e.g. its alpha from ``suggest_alpha``), ``log(config, result)`` follows each run. A run whose
  ``prepare`` raises :class:`ham_optax.CalibrationDivergedError` (the inner optimizer alone diverges) is
  diverged at epoch 0."""
  from ham_optax_examples.train import train_and_evaluate

  runs = []
  for seed in seeds:
    run_config = config.replace(seed=seed)
    try:
      run_config = run_config if prepare is None else prepare(run_config)
      result = train_and_evaluate(run_config, dataset)
    except ham_optax.CalibrationDivergedError as e:  # e.g. suggest_alpha at a learning rate that diverges
      result = diverged_at_calibration(run_config, str(e))
    if log is not None:
      log(run_config, result)
    runs.append(result)
  return runs


def diverged_at_calibration(config: Any, reason: str) -> dict[str, Any]:
  """The record of a run whose alpha calibration diverged: ``train_and_evaluate``'s keys, diverged at epoch 0,
  no history, every result ``None`` (as for a run that diverges in training), and the ``reason``."""
  results = dict.fromkeys(("val_acc", "test_acc", "sparsity", "sign_flips"))
  record = dict(config=dataclasses.asdict(config), method=config.method, history=[], completed=False)
  return record | dict(diverged=True, diverged_epoch=0, **results, train_time_s=0.0, reason=reason)


def tune(
  configs: Sequence[Any],
  dataset: Any,
  seeds: Sequence[int],
  prepare: Callable[[Any], Any] | None = None,
  log: Callable[[Any, dict[str, Any]], None] | None = None,
  diverged: float | None = 0.0,
) -> tuple[int, list[float], list[list[dict[str, Any]]]]:
  """Validation tuning over ``configs``: trains each on the tuning ``seeds`` (:func:`train_seeds`) and scores it
  by :func:`mean_val_acc` (a diverged run scores ``diverged``: by default 0, so a setting that diverges is not
  chosen). Returns the index of the best config (the first on ties), every score, and every config's runs."""
  runs = [train_seeds(c, dataset, seeds, prepare, log) for c in configs]
  scores = [mean_val_acc(r, diverged) for r in runs]
  return int(np.nanargmax(scores)), scores, runs


# --- Tables and figures --------------------------------------------------------------------------------------


def pyplot():
  """``matplotlib.pyplot`` on the file-only ``Agg`` backend (imported when a study draws, not before)."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
  """A GitHub-flavoured Markdown table; cells are formatted with ``str``."""
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)


# --- Parameter shapes of reference networks ------------------------------------------------------------------


def resnet50_shapes() -> list[tuple[str, tuple[int, ...]]]:
  """Parameter shapes of torchvision's ResNet-50 (25,557,032 floats, 161 tensors) in JAX layout: HWIO kernels,
  an (in, out) classifier, a BatchNorm scale and bias per layer (running statistics are not parameters)."""
  shapes: list[tuple[str, tuple[int, ...]]] = [("conv1", (7, 7, 3, 64)), ("bn1.s", (64,)), ("bn1.b", (64,))]
  cin = 64
  for li, (width, blocks) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)], start=1):
    for bi in range(blocks):
      p = f"layer{li}.{bi}"
      for ci, (k, a, b) in enumerate([(1, cin, width), (3, width, width), (1, width, 4 * width)], 1):
        shapes += [(f"{p}.conv{ci}", (k, k, a, b)), (f"{p}.bn{ci}.s", (b,)), (f"{p}.bn{ci}.b", (b,))]
      if bi == 0:
        down = [(f"{p}.down", (1, 1, cin, 4 * width)), (f"{p}.down_bn.s", (4 * width,))]
        shapes += [*down, (f"{p}.down_bn.b", (4 * width,))]
      cin = 4 * width
  shapes += [("fc.w", (2048, 1000)), ("fc.b", (1000,))]
  return shapes


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 110) -> Path:
  """Lays out ``fig`` (``tight_layout``), writes it to ``path`` at ``dpi`` and closes it; returns ``path``."""
  fig.tight_layout()
  fig.savefig(path, dpi=dpi)
  pyplot().close(fig)
  return Path(path)


def all_true(tree: Any) -> Any:
  """The mask selecting every leaf of ``tree``."""
  import jax

  return jax.tree.map(lambda _: True, tree)


def mean_std(values: Sequence[float]) -> dict[str, float]:
  """``{"mean", "std"}`` of ``values`` (sample standard deviation; 0 for one value)."""
  return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0}


# --- Command-line options: validated where they are parsed ---------------------------------------------------

INT32_MAX = (
  checks.INT32_MAX
)  # the library's bound: steps, sizes and seeds beyond int32 wrap around inside JAX


def number(
  kind: type = float,
  lo: float | None = None,
  hi: float | None = None,
  *,
  lo_open: bool = False,
  hi_open: bool = False,
) -> Callable[[str], Any]:
  """An argparse ``type``: the text as a finite ``kind`` (``int`` or ``float``) in the interval from ``lo`` to
  ``hi`` (``*_open``: strict; an int at most ``INT32_MAX``). Anything else is an argparse error naming the
  option, the interval and the text, raised while the command line is parsed."""
  what = "an integer" if kind is int else "a finite number"
  if lo is not None and hi is not None:
    what += f" in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
  elif lo is not None:
    what += f" {'>' if lo_open else '>='} {lo:g}"
  elif hi is not None:
    what += f" {'<' if hi_open else '<='} {hi:g}"

  def parse(text: str) -> Any:
    try:
      value = kind(text)
    except ValueError:
      value = None
    ok = value is not None and math.isfinite(value) and (kind is float or value <= INT32_MAX)
    ok = ok and (lo is None or (value > lo if lo_open else value >= lo))
    if not (ok and (hi is None or (value < hi if hi_open else value <= hi))):
      raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value

  parse.__name__ = what  # argparse's name for the type in its own messages
  return parse


positive_int, nonnegative_int = number(int, 1), number(int, 0)
positive_float, nonnegative_float = number(float, 0, lo_open=True), number(float, 0)
finite_float = number(float)
fraction = number(float, 0, 1, lo_open=True, hi_open=True)  # e.g. a sparsity, a significance level


def out_dir(text: str) -> Path:
  """An argparse ``type`` for ``--out``, the folder a study writes to: new or an existing folder, not a file
  (nor anything under a file)."""
  path = Path(text)
  existing = next(p for p in (path, *path.parents) if p.exists() or p == p.parent)
  if existing.exists() and not existing.is_dir():
    raise argparse.ArgumentTypeError(f"{existing} is a file, not a folder")
  return path


def out_file(text: str) -> str:
  """An argparse ``type`` for an ``--out`` naming a file: not an existing folder, in a folder (see
  :func:`out_dir`)."""
  if Path(text).is_dir():
    raise argparse.ArgumentTypeError(f"{text} is a folder, not a file")
  out_dir(str(Path(text).parent))
  return text


class Parser(argparse.ArgumentParser):
  """The scripts' ``ArgumentParser``: its smoke-run flag (:meth:`add_fast`) sets only the options that the command
  line leaves out (an option given explicitly keeps its value)."""

  fast: tuple[str, dict[str, Any]] | None = None

  def add_fast(self, text: str, flag: str = "--fast", **values: Any) -> None:
    """Adds the flag ``flag`` (help: ``text``) that sets the options ``values`` (by name, e.g. ``epochs=5``) to
    these values unless the command line gives them."""
    kept = "; an option given on the command line keeps its value" if values else ""
    self.add_argument(flag, action="store_true", help=text + kept)
    self.fast = (flag.lstrip("-").replace("-", "_"), values)

  def parse_known_args(self, args=None, namespace=None):
    if self.fast is None or namespace is not None:
      return super().parse_known_args(args, namespace)
    (flag, values), unset = self.fast, object()
    parsed, rest = super().parse_known_args(args, argparse.Namespace(**dict.fromkeys(values, unset)))
    for name, value in values.items():
      if getattr(parsed, name) is unset:  # not on the command line
        setattr(parsed, name, copy.deepcopy(value) if getattr(parsed, flag) else self.get_default(name))
    return parsed, rest


def parser(doc: str, name: str, **defaults: Any) -> Parser:
  """A script's parser, described by its docstring's first paragraph: :func:`add_options` of ``defaults`` and
  ``--out`` (a folder, default ``results/<name>``). A smoke run is added with :meth:`Parser.add_fast`."""
  p = Parser(description=doc.split("\n\n")[0])
  add_options(p, **defaults)
  p.add_argument("--out", type=out_dir, default=RESULTS / name)
  return p


def add_options(parser: Any, *, kind: Callable[[str], Any] | None = None, **defaults: Any) -> None:
  """Adds ``--<name>`` (underscores written as dashes) for every keyword, with that default (a list takes
  ``nargs="+"``). Its type is ``kind``, by default from the default (a list's first element):
  :func:`positive_int` for an int, :func:`positive_float` for a float, else the default's type. Every default
  must pass its type (a ``ValueError`` here otherwise)."""
  for name, default in defaults.items():
    many = {"nargs": "+"} if isinstance(default, list) else {}
    first = default[0] if many else default
    arg_type = kind or (
      positive_int if isinstance(first, int) else positive_float if isinstance(first, float) else type(first)
    )
    for value in default if many else [default]:
      try:
        arg_type(str(value))
      except argparse.ArgumentTypeError as e:
        raise ValueError(f"--{name.replace('_', '-')}: its default {value!r} {e}") from None
    parser.add_argument("--" + name.replace("_", "-"), type=arg_type, default=default, **many)
