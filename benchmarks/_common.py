"""Helpers shared by the benchmark scripts in this folder: timing, paired statistics, saving, tables, shapes.

Every script imports it as ``import _common`` (Python puts the script's own folder first on ``sys.path`` when a
script is run as ``python benchmarks/<name>.py``). Nothing here runs at import time beyond defining functions.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


# --------------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------------


def command() -> str:
  """The command line that started this process, as one shell-quoted string (saved next to every result)."""
  return shlex.join([os.path.basename(sys.executable), *sys.argv])


def environment() -> dict[str, Any]:
  """What a timing depends on: the command, JAX's devices, library versions, the platform, the UTC time."""
  import jax
  import optax

  return {
    "command": command(),
    "devices": [str(d) for d in jax.devices()],
    "platform": platform.platform(),
    "cpu_count": os.cpu_count(),
    "jax": jax.__version__,
    "optax": optax.__version__,
    "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
  }


def save_json(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
  """Writes ``payload`` as indented JSON to ``path`` (parents created), adding ``"command"`` if missing."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps({"command": command(), **payload}, indent=1))
  return path


# --------------------------------------------------------------------------------------------------
# Timing and paired statistics
# --------------------------------------------------------------------------------------------------


def interleaved(
  runners: dict[str, Callable[[], Any]], reps: int, number: int = 1, seed: int = 0
) -> dict[str, list[float]]:
  """Times each runner ``number`` times per repetition, in a freshly shuffled order every repetition.

  Returns, per runner, the wall-clock seconds per call of every repetition, and under ``"<name>:cpu"`` the
  process CPU seconds per call (all threads). Shuffling pairs the runners of one repetition in time, so slow
  phases of the machine hit every runner of that repetition alike; compare them with :func:`paired_ratio`.
  """
  rng = np.random.default_rng(seed)
  names = list(runners)
  out: dict[str, list[float]] = {n: [] for n in names}
  out.update({f"{n}:cpu": [] for n in names})
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
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    for _ in range(number):
      fn()
    times.append((time.perf_counter() - t0) / number)
  return float(np.median(times))


def _iqr(x: np.ndarray, scale: float = 1.0) -> list[float]:
  return [scale * float(np.percentile(x, 25)), scale * float(np.percentile(x, 75))]


def paired_ratio(
  base: Sequence[float], other: Sequence[float], names: tuple[str, str] = ("base", "other")
) -> dict[str, Any]:
  """Medians (ms) of two paired series of seconds and the median and 25-75 % range of their per-pair ratio.

  The keys of the medians start with ``names`` (e.g. ``"inner_median_ms"``, ``"ham_median_ms"``).
  """
  a, b = np.asarray(base, np.float64), np.asarray(other, np.float64)
  paired = b / a
  return {
    f"{names[0]}_median_ms": 1e3 * float(np.median(a)),
    f"{names[1]}_median_ms": 1e3 * float(np.median(b)),
    f"{names[0]}_iqr_ms": _iqr(a, 1e3),
    f"{names[1]}_iqr_ms": _iqr(b, 1e3),
    "ratio_of_medians": float(np.median(b) / np.median(a)),
    "paired_ratio_median": float(np.median(paired)),
    "paired_ratio_iqr": _iqr(paired),
    "reps": len(a),
  }


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
  """Two-sided Welch t-test p-value (scipy); nan when scipy is missing or both groups are constant."""
  try:
    from scipy import stats
  except ImportError:  # pragma: no cover
    return float("nan")
  return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def paired_t_p(a: Sequence[float], b: Sequence[float]) -> float:
  """Two-sided paired t-test p-value (scipy) for per-seed pairs; nan when scipy is missing."""
  try:
    from scipy import stats
  except ImportError:  # pragma: no cover
    return float("nan")
  return float(stats.ttest_rel(a, b).pvalue)


# --------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
  """A GitHub-flavoured Markdown table; cells are formatted with ``str``."""
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Parameter shapes of reference networks
# --------------------------------------------------------------------------------------------------


def resnet50_shapes() -> list[tuple[str, tuple[int, ...]]]:
  """Parameter shapes of torchvision's ResNet-50 (25,557,032 floats, 161 tensors), in JAX layout.

  Conv kernels are HWIO, the classifier is (in, out); BatchNorm contributes a scale and a bias per layer
  (running statistics are not parameters).
  """
  shapes: list[tuple[str, tuple[int, ...]]] = [("conv1", (7, 7, 3, 64)), ("bn1.s", (64,)), ("bn1.b", (64,))]
  cin = 64
  for li, (width, blocks) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)], start=1):
    for bi in range(blocks):
      p = f"layer{li}.{bi}"
      for ci, (k, a, b) in enumerate([(1, cin, width), (3, width, width), (1, width, 4 * width)], 1):
        shapes += [(f"{p}.conv{ci}", (k, k, a, b)), (f"{p}.bn{ci}.s", (b,)), (f"{p}.bn{ci}.b", (b,))]
      if bi == 0:
        shapes += [
          (f"{p}.down", (1, 1, cin, 4 * width)),
          (f"{p}.down_bn.s", (4 * width,)),
          (f"{p}.down_bn.b", (4 * width,)),
        ]
      cin = 4 * width
  shapes += [("fc.w", (2048, 1000)), ("fc.b", (1000,))]
  return shapes
