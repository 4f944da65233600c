"""Training diagnostics from the HAM paper (Jacobs et al., ICLR 2026, arXiv:2506.02630), jit-friendly.

Every function takes a params pytree and an optional ``prunable`` selection (``None``: floating-point leaves with
``ndim >= 2``, the same default as ``ham_optax.ham``'s mask and the sparsifiers; or a bool pytree / callable
``params -> bool pytree``) and returns a dict of JAX scalars::

  {"global": <over all selected entries>, "per_layer": {jax.tree_util.keystr(path): <per leaf>}}

The selection and the keys are static, so the functions trace once under ``jax.jit``. Global values weight every
entry equally (a large layer counts more than a small one). An empty selection gives ``nan`` global fractions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from ham_optax._src import checks, masking

__all__ = ["fraction_near_zero", "mean_inverse_metric", "sign_flips", "sparsity"]


def _selected(params: Any, prunable: masking.MaskOrFn) -> list[tuple[str, jax.Array]]:
  flags = masking.resolve_mask(prunable, params, "`prunable`")
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  return [(jax.tree_util.keystr(path), jnp.asarray(x)) for (path, x), f in zip(flat, flags, strict=True) if f]


def _fractions(
  leaves: list[tuple[str, jax.Array]], indicator: Callable[[jax.Array], jax.Array]
) -> tuple[jax.Array, dict[str, jax.Array], jax.Array]:
  counts = {name: jnp.sum(indicator(x), dtype=jnp.int32) for name, x in leaves}
  total = sum((c for c in counts.values()), start=jnp.zeros([], jnp.int32))
  size = sum(int(x.size) for _, x in leaves)
  per_layer = {name: counts[name] / max(int(x.size), 1) for name, x in leaves}
  global_frac = total / size if size else jnp.asarray(jnp.nan, jnp.float32)
  return jnp.asarray(global_frac, jnp.float32), per_layer, total


def sparsity(params: Any, prunable: masking.MaskOrFn = None) -> dict[str, Any]:
  """Fraction of entries exactly equal to zero: ``{"global", "per_layer", "num_zeros"}``.

  Example:
    >>> import jax.numpy as jnp
    >>> from ham_optax import metrics
    >>> params = {"w": jnp.array([[0.0, 1.0], [0.0, -2.0]]), "b": jnp.zeros(2)}
    >>> out = metrics.sparsity(params)  # the bias (ndim 1) is not selected by default
    >>> print(float(out["global"]), int(out["num_zeros"]), {k: float(v) for k, v in out["per_layer"].items()})
    0.5 2 {"['w']": 0.5}
  """
  global_frac, per_layer, total = _fractions(_selected(params, prunable), lambda x: x == 0)
  return {"global": global_frac, "per_layer": per_layer, "num_zeros": total}


def fraction_near_zero(params: Any, tol: float = 1e-3, prunable: masking.MaskOrFn = None) -> dict[str, Any]:
  """Fraction of entries with ``|x| <= tol`` (exact zeros included): ``{"global", "per_layer"}``."""
  checks.check_scalar(tol, "tol", lo=0.0)
  global_frac, per_layer, _ = _fractions(_selected(params, prunable), lambda x: jnp.abs(x) <= tol)
  return {"global": global_frac, "per_layer": per_layer}


def sign_flips(params: Any, reference: Any, prunable: masking.MaskOrFn = None) -> dict[str, Any]:
  """Entries whose sign differs from ``reference`` (the initial params, or the previous measurement).

  A flip is ``sign(x) * sign(x_ref) < 0``: both entries nonzero with opposite signs. Zeros are handled
  explicitly: an entry that is exactly 0 in either tensor has no sign and never counts as a flip (a pruned
  weight does not flip); ``"fraction"`` divides by all selected entries, ``"fraction_of_nonzero"`` only by the
  entries nonzero in both. Returns ``{"count", "fraction", "fraction_of_nonzero", "per_layer"}`` with per-layer
  flip counts.

  Raises:
    ValueError: if ``reference`` does not have the structure and shapes of ``params``.

  Example:
    >>> import jax.numpy as jnp
    >>> from ham_optax import metrics
    >>> before = {"w": jnp.array([[1.0, -2.0], [0.5, 0.0]])}
    >>> after = {"w": jnp.array([[-1.0, -2.0], [0.5, 3.0]])}
    >>> out = metrics.sign_flips(after, before)
    >>> print(int(out["count"]), float(out["fraction"]), round(float(out["fraction_of_nonzero"]), 4))
    1 0.25 0.3333
  """
  sel = _selected(params, prunable)
  ref_leaves = jax.tree.leaves(reference)
  if len(ref_leaves) != len(jax.tree.leaves(params)):
    raise ValueError(
      f"reference has {len(ref_leaves)} leaves but params have {len(jax.tree.leaves(params))}; "
      "pass a snapshot of the same params."
    )
  flags = masking.resolve_mask(prunable, params, "`prunable`")
  refs = [jnp.asarray(r) for r, f in zip(ref_leaves, flags, strict=True) if f]
  per_layer = {}
  both_nonzero = jnp.zeros([], jnp.int32)
  total = jnp.zeros([], jnp.int32)
  for (name, x), r in zip(sel, refs, strict=True):
    if x.shape != r.shape:
      raise ValueError(f"reference{name} has shape {r.shape}, params{name} has shape {x.shape}.")
    per_layer[name] = jnp.sum(jnp.sign(x) * jnp.sign(r) < 0, dtype=jnp.int32)
    total = total + per_layer[name]
    both_nonzero = both_nonzero + jnp.sum((x != 0) & (r != 0), dtype=jnp.int32)
  size = sum(int(x.size) for _, x in sel)
  nan = jnp.asarray(jnp.nan, jnp.float32)
  return {
    "count": total,
    "fraction": total / size if size else nan,
    "fraction_of_nonzero": jnp.where(both_nonzero > 0, total / jnp.maximum(both_nonzero, 1), nan),
    "per_layer": per_layer,
  }


def mean_inverse_metric(params: Any, alpha: float, prunable: masking.MaskOrFn = None) -> dict[str, Any]:
  r"""Mean of HAM's inverse metric :math:`1 + \alpha|x|` over the selected entries: ``{"global", "per_layer"}``.

  In the continuous limit HAM follows :math:`\dot x = -(1 + \alpha|x|)\nabla f(x)`, so this is the average
  factor by which HAM speeds up gradient flow (1 for plain GD; :math:`\ge 1` for :math:`\alpha \ge 0`).
  """
  checks.check_scalar(alpha, "alpha")
  sel = _selected(params, prunable)
  per_layer = {name: 1.0 + alpha * jnp.mean(jnp.abs(x).astype(jnp.float32)) for name, x in sel}
  size = sum(int(x.size) for _, x in sel)
  abs_sum = sum((jnp.sum(jnp.abs(x).astype(jnp.float32)) for _, x in sel), start=jnp.zeros([], jnp.float32))
  global_value = 1.0 + alpha * abs_sum / size if size else jnp.asarray(jnp.nan, jnp.float32)
  return {"global": global_value, "per_layer": per_layer}
