"""Per-layer sparsity distributions: uniform and Erdős–Rényi-Kernel (ERK).

ERK (Evci et al., "Rigging the Lottery", ICML 2020, following Mocanu et al. 2018) gives each layer a density
proportional to ``sum(shape) / prod(shape)``, scaled to the global budget; layers whose density would exceed 1 are
kept dense and the budget redistributed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ham_optax._src import checks

DISTRIBUTIONS = ("erk", "uniform")


def erk_densities(shapes: Sequence[tuple[int, ...]], density: float) -> list[float]:
  """Real-valued ERK densities (each in (0, 1]) whose size-weighted mean is ``density`` (in ``(0, 1]``); zero-size
  layers get 1, a 0-d layer (a scalar) counts as the 1-entry layer of shape ``(1,)``."""
  shapes = [s or (1,) for s in checks.check_shapes(shapes, "erk_densities")]  # sum(()) / prod(()) would be 0
  checks.check_scalar(density, "density", lo=0.0, lo_open=True, hi=1.0, owner="erk_densities")
  sizes = np.array([float(np.prod(s)) for s in shapes])
  raw = np.array([float(np.sum(s)) / n if n else 0.0 for s, n in zip(shapes, sizes, strict=True)])
  dense = sizes == 0  # a zero-size layer has nothing to prune: density 1
  if density >= 1.0 or dense.all():
    return [1.0] * len(shapes)
  while True:
    budget = density * sizes.sum() - sizes[dense].sum()
    divisor = (raw[~dense] * sizes[~dense]).sum()
    eps = budget / divisor
    probs = eps * raw
    over = (~dense) & (probs > 1.0)
    if not over.any():
      return [1.0 if d else float(p) for d, p in zip(dense, probs, strict=True)]
    # Like RigL's reference code: make the layer(s) with the largest raw density dense, then rescale.
    dense |= (~dense) & (raw == raw[~dense].max())


def layer_zero_counts(shapes: Sequence[tuple[int, ...]], sparsity: float, distribution: str) -> list[int]:
  """Number of pruned weights per layer; no layer is ever pruned away.

  ``"uniform"``: ``min(round(sparsity * n_l), n_l - 1)`` in every layer. ``"erk"``: the ERK ideal
  ``(1 - d_l) * n_l`` (capped at ``n_l - 1``) rounded down or up (largest remainder) so that the total is exactly
  ``min(round(sparsity * N), N - L)`` (``N = sum_l n_l``, ``L`` layers with ``n_l >= 1``).

  Every sparsifier follows this cap (e.g. uniform 0.9 on a 2x2 layer prunes 3 weights, not 4); with ERK the zeros
  a capped layer cannot take go to the other layers. A 0-d shape (a scalar leaf) is a 1-entry layer: never pruned.

  Example:
    >>> from ham_optax import sparsity
    >>> print(sparsity.layer_zero_counts([(10, 10), (100, 100)], 0.9, "uniform"))
    [90, 9000]
  """
  shapes = checks.check_shapes(shapes, "layer_zero_counts")
  sparsity = checks.check_sparsity(sparsity)
  checks.check_choice(distribution, "distribution", DISTRIBUTIONS)
  sizes = [int(np.prod(s)) for s in shapes]
  caps = [max(n - 1, 0) for n in sizes]
  if distribution == "uniform":
    return [min(int(np.round(sparsity * n)), c) for n, c in zip(sizes, caps, strict=True)]
  if not sizes:
    return []
  ideal = np.array([(1.0 - d) * n for d, n in zip(erk_densities(shapes, 1.0 - sparsity), sizes, strict=True)])
  ideal = np.clip(ideal, 0.0, np.array(caps, float))
  counts = np.floor(ideal + 1e-9).astype(np.int64)
  target = min(int(np.round(sparsity * sum(sizes))), sum(caps))
  frac = ideal - counts
  # Hand out the remaining zeros to the largest fractional parts (never beyond a layer's cap), or take back.
  order = np.argsort(-frac, kind="stable")
  remaining = target - int(counts.sum())
  while remaining != 0:
    step = 1 if remaining > 0 else -1
    changed = False
    for i in order if step > 0 else order[::-1]:
      if remaining == 0:
        break
      if 0 <= counts[i] + step <= caps[i]:
        counts[i] += step
        remaining -= step
        changed = True
    if not changed:  # pragma: no cover - cannot happen for 0 <= target <= sum(caps).
      raise AssertionError("could not distribute the zero budget")
  return [int(c) for c in counts]
