"""Training diagnostics from the HAM paper (Jacobs et al., ICLR 2026, arXiv:2506.02630), jit-friendly.

Every function takes params and an optional ``prunable`` selection (as ``ham_optax.ham``'s ``mask``; ``None``:
floating-point leaves with ``ndim >= 2``) and returns JAX scalars, ``{"global": <over all selected entries,
weighted equally>, "per_layer": {jax.tree_util.keystr(path): <per leaf>}}`` (static keys; an empty selection
gives ``nan`` global fractions).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from ham_optax._src import checks, hyperbolic, masking


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

  A flip is ``sign(x) * sign(x_ref) < 0``: an entry that is exactly 0 in either tensor never counts (a pruned
  weight does not flip). Returns ``{"count", "fraction", "fraction_of_nonzero", "per_layer"}`` (per-layer
  counts); ``"fraction"`` divides by all selected entries, ``"fraction_of_nonzero"`` by those nonzero in both.

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
  if jax.tree.structure(reference) != jax.tree.structure(params):
    raise ValueError(
      f"reference has another tree structure than params ({len(ref_leaves)} and {len(jax.tree.leaves(params))} "
      "leaves; keys and containers must match too): pass a snapshot of the same params, e.g. "
      "jax.tree.map(np.asarray, params)."
    )
  flags = masking.resolve_mask(prunable, params, "`prunable`")
  refs = [jnp.asarray(r) for r, f in zip(ref_leaves, flags, strict=True) if f]
  per_layer, total, both_nonzero = {}, jnp.zeros([], jnp.int32), jnp.zeros([], jnp.int32)
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

  The average factor by which HAM's continuous limit :math:`\dot x = -(1 + \alpha|x|)\nabla f(x)` speeds up
  gradient flow.
  """
  checks.check_scalar(alpha, "alpha")
  sel = _selected(params, prunable)
  per_layer = {name: 1.0 + alpha * jnp.mean(jnp.abs(x).astype(jnp.float32)) for name, x in sel}
  size = sum(int(x.size) for _, x in sel)
  abs_sum = sum((jnp.sum(jnp.abs(x).astype(jnp.float32)) for _, x in sel), start=jnp.zeros([], jnp.float32))
  global_value = 1.0 + alpha * abs_sum / size if size else jnp.asarray(jnp.nan, jnp.float32)
  return {"global": global_value, "per_layer": per_layer}


def _exponent_sums(
  x: jax.Array, g: jax.Array, lr: Any, alpha: Any, beta: Any, c: float
) -> dict[str, jax.Array]:
  """Per-leaf sums behind :func:`ham_diagnostics`, in at least float32, with the step's saturated scalars."""
  cdtype = jnp.promote_types(jnp.result_type(x), jnp.float32)
  big = float(jnp.finfo(cdtype).max)
  x, g, size = jnp.asarray(x, cdtype), jnp.asarray(g, cdtype), int(jnp.size(x))
  if size == 0:  # a zero-size leaf: nothing moves, nothing is scaled
    zero, zero_n, one = jnp.zeros([], cdtype), jnp.zeros([], jnp.int32), jnp.ones([], cdtype)
    return dict(n=zero_n, sq=zero, max=zero, clipped=zero_n, inv_mean=one, inv_max=one, size=0)
  a = hyperbolic._finite_scalar(alpha, cdtype)  # noqa: SLF001 - the step's own saturation
  lr_c = hyperbolic._finite_scalar(lr, cdtype)  # noqa: SLF001
  lr_alpha = jnp.clip(lr_c * a, -big, big)
  lr_beta = jnp.clip(lr_c * hyperbolic._finite_scalar(beta, cdtype), -big, big)  # noqa: SLF001
  # As in the step: a finite product may be +-inf, the difference never inf - inf, the clip maps inf to +-c.
  e = jnp.clip(-(jnp.sign(x) * g) * lr_alpha - lr_beta, -c, c)
  moving = x != 0  # the step keeps exact zeros at zero: they do not count in the exponent statistics
  abs_e = jnp.where(moving, jnp.abs(e), 0.0)
  inv = jnp.clip(1.0 + a * jnp.abs(x), -big, big)
  return {
    "n": jnp.sum(moving, dtype=jnp.int32),
    "sq": jnp.sum(jnp.square(abs_e)),
    "max": jnp.max(abs_e, initial=0.0),
    "clipped": jnp.sum(moving & (jnp.abs(e) >= c), dtype=jnp.int32),
    "inv_mean": jnp.sum(inv / size),  # each term <= big / size: the mean cannot overflow
    "inv_max": jnp.max(inv),
    "size": size,
  }


def _exponent_stats(s: dict[str, Any]) -> dict[str, jax.Array]:
  n = jnp.maximum(s["n"], 1)
  return {
    "exponent_rms": jnp.sqrt(s["sq"] / n),
    "exponent_max": s["max"],
    "clip_fraction": s["clipped"] / n,
    "inverse_metric_mean": s["inv_mean"],
    "inverse_metric_max": s["inv_max"],
  }


def _global_sums(sums: list[dict[str, Any]]) -> dict[str, Any]:
  """Combines per-leaf sums; the inverse metric's mean is size-weighted (1 if every leaf is empty)."""
  total = sum(s["size"] for s in sums)
  nonempty = [s for s in sums if s["size"]] or sums
  weights = [s["size"] / total if total else 1.0 / len(nonempty) for s in nonempty]
  return {
    "n": sum(s["n"] for s in sums),
    "sq": sum(s["sq"] for s in sums),
    "max": jnp.max(jnp.stack([s["max"] for s in sums])),
    "clipped": sum(s["clipped"] for s in sums),
    "inv_mean": sum(s["inv_mean"] * w for s, w in zip(nonempty, weights, strict=True)),
    "inv_max": jnp.max(jnp.stack([s["inv_max"] for s in nonempty])),
    "size": total,
  }


def ham_diagnostics(
  params: Any,
  grads: Any,
  *,
  learning_rate: Any,
  alpha: Any,
  beta: Any = 0.0,
  max_exponent: float = 5.0,
  mask: masking.MaskOrFn = None,
) -> dict[str, Any]:
  r"""Stability diagnostics of HAM's mirror step: how hard the step pushes, per layer and overall.

  With :math:`\eta` = ``learning_rate`` and :math:`c` = ``max_exponent``, the mirror step multiplies each
  selected weight by :math:`e^{e}` with the exponent

  .. math::
    e = \operatorname{clip}\big(-\eta(\alpha\,\operatorname{sign}(x)\,g + \beta),\ -c,\ c\big),

  as :func:`ham_optax.hyperbolic_step` computes it (with ``params + inner_updates`` as ``params`` exactly; the
  params' own sign is a close stand-in). Per layer and global:

  - ``exponent_rms``, ``exponent_max``: RMS and maximum of :math:`|e|` (about :math:`\eta\alpha|g|`);
  - ``clip_fraction``: fraction of entries whose :math:`|e|` sits at the clip :math:`c`;
  - ``inverse_metric_mean``, ``inverse_metric_max``: mean and max of :math:`1 + \alpha|x|`.

  Exponent statistics count the nonzero entries only (the step keeps zeros at zero); the inverse metric counts
  every selected entry. Scalars are saturated as in the step; NaN in the gradients stays NaN. How to read them:
  "Reading the diagnostics" in the alpha guide (``docs/guides/choosing_alpha.md``).

  Args:
    params: the parameters (or ``x_half``).
    grads: the raw gradients, same structure and shapes as ``params``.
    learning_rate: the step's learning rate (a scalar, may be traced).
    alpha: HAM's alpha (may be traced): one scalar or a per-leaf pytree, as :func:`ham_optax.ham` takes it.
    beta: HAM's beta (a scalar, may be traced).
    max_exponent: the clip of the exponent, > 0 (as in :func:`ham_optax.ham`).
    mask: which leaves to report, resolved exactly like :func:`ham_optax.ham`'s ``mask``.

  Returns:
    ``{"global": {...}, "per_layer": {jax.tree_util.keystr(path): {...}}}`` of JAX scalars (static keys).

  Example:
    >>> import jax.numpy as jnp
    >>> from ham_optax import metrics
    >>> params = {"w": jnp.array([[0.5, -0.2], [0.0, 1.0]]), "b": jnp.zeros(2)}
    >>> grads = {"w": jnp.array([[0.1, 0.3], [0.2, -0.4]]), "b": jnp.ones(2)}
    >>> d = metrics.ham_diagnostics(params, grads, learning_rate=0.1, alpha=10.0)
    >>> round(float(d["global"]["exponent_max"]), 3), list(d["per_layer"])
    (0.4, ["['w']"])
  """
  checks.check_scalar(learning_rate, "learning_rate", lo=0.0)
  hyperbolic.check_alpha(alpha, schedule_ok=False, owner="ham_diagnostics: ")
  checks.check_scalar(beta, "beta")
  checks.check_scalar(max_exponent, "max_exponent", lo=0.0, lo_open=True)
  flat_p, treedef = jax.tree_util.tree_flatten_with_path(params)
  try:
    flat_g = jax.tree.structure(params).flatten_up_to(grads)
  except (ValueError, TypeError) as e:
    raise ValueError("ham_diagnostics: grads must have the structure of params.") from e
  selected = masking.resolve_mask(mask, params)
  sums = {}
  alphas = hyperbolic._alpha_per_leaf(alpha, params, treedef)  # noqa: SLF001 - the package's own helper
  for (path, x), g, a, on in zip(flat_p, flat_g, alphas, selected, strict=True):
    if not on:
      continue
    name = jax.tree_util.keystr(path)
    if jnp.shape(x) != jnp.shape(g):
      raise ValueError(f"ham_diagnostics: grads{name} has shape {jnp.shape(g)}, params{name} {jnp.shape(x)}.")
    sums[name] = _exponent_sums(x, g, learning_rate, a, beta, float(max_exponent))
  per_layer = {name: _exponent_stats(s) for name, s in sums.items()}
  if sums:
    global_stats = _exponent_stats(_global_sums(list(sums.values())))
  else:
    nan = jnp.asarray(jnp.nan, jnp.float32)
    global_stats = dict.fromkeys(
      ("exponent_rms", "exponent_max", "clip_fraction", "inverse_metric_mean", "inverse_metric_max"), nan
    )
  return {"global": global_stats, "per_layer": per_layer}


def escape_step(losses: jax.Array, fraction: float = 0.5) -> jax.Array:
  """Steps until the loss leaves its initial plateau: the first ``k`` with ``losses[k] <= fraction * losses[0]``.

  ``losses[k]`` is the loss after ``k`` steps. From a small initialisation the loss of a deep diagonal network
  (:func:`ham_optax.overparam.deep_diagonal`) stays near ``losses[0]`` (the saddle at ``x = 0``) and then drops;
  a relative threshold (our choice) does not depend on the loss' scale. Returns ``-1`` when this never happens
  (NaN losses never count as escaped). Jit- and vmap-friendly (works on the last axis of a batch of curves).

  Args:
    losses: array ``[..., T]`` of losses, ``losses[..., 0]`` at initialisation.
    fraction: threshold in ``(0, 1)``.

  Returns:
    int32 array ``[...]``: the escape step, or ``-1``.

  Example:
    >>> import jax.numpy as jnp
    >>> from ham_optax.metrics import escape_step
    >>> int(escape_step(jnp.array([1.0, 0.99, 0.98, 0.4, 0.1])))
    3
  """
  f = checks.check_fraction(fraction, "fraction", lo_open=True, hi_open=True, owner="escape_step")
  losses = jnp.asarray(losses)
  if losses.ndim < 1 or losses.shape[-1] < 1:
    raise ValueError(f"escape_step: `losses` must have a non-empty last axis, got shape {losses.shape}.")
  below = losses <= f * losses[..., :1]
  first = jnp.argmax(below, axis=-1).astype(jnp.int32)
  return jnp.where(jnp.any(below, axis=-1), first, jnp.int32(-1))
