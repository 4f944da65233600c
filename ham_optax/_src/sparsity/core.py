"""Shared machinery of the sparsifiers: state, the projecting wrapper, top-k masks, mask look-up.

Every sparsifier wraps an inner optax transform (typically ``ham_optax.ham(...)``). The inner chain proposes new
parameters ``x_half = params + inner_updates``; the wrapper then projects them onto the current binary mask, so
that ``params + updates = mask * x_half`` and pruned weights are exactly zero after every step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ham_optax._src import masking

_NO_PARAMS_MSG = (
  "You are using a sparsifier that needs the current parameters, but `params` was not passed to "
  "`update`. Call `tx.update(grads, opt_state, params)`."
)


class SparsifierState(NamedTuple):
  """State of every sparsifier in :mod:`ham_optax.sparsity`.

  Attributes:
    count: int32 scalar, the number of ``update`` calls so far (the step the next update belongs to).
    masks: a pytree with the structure of the params. A prunable leaf holds a ``bool`` array of the leaf's
      shape (``True`` = weight is active); a non-prunable leaf holds the scalar ``True`` (cheap, and it
      broadcasts, so ``jnp.where(mask, x, 0)`` works on every leaf).
    inner_state: the wrapped optimizer's state.
  """

  count: chex.Array
  masks: Any
  inner_state: optax.OptState


def n_zeros(sparsity: float, n: int) -> int:
  """``round(sparsity * n)`` in float64 on the host (round half to even, as ``numpy.round``)."""
  return int(np.round(float(sparsity) * n))


def _ordered_key(x: jax.Array) -> jax.Array:
  """Maps float32 to uint32 preserving order (NaN -> -inf, -0.0 -> +0.0), so thresholds can be bisected."""
  x = x.astype(jnp.float32)
  x = jnp.where(jnp.isnan(x), -jnp.inf, jnp.where(x == 0, jnp.float32(0.0), x))
  bits = jax.lax.bitcast_convert_type(x, jnp.int32)
  key = jnp.where(bits >= 0, bits, bits ^ jnp.int32(0x7FFFFFFF))
  return jax.lax.bitcast_convert_type(key, jnp.uint32) ^ jnp.uint32(0x80000000)


def top_k_mask(scores: jax.Array, n_keep: jax.Array | int) -> jax.Array:
  """Bool mask of ``scores``' shape with exactly ``n_keep`` True entries at the largest scores.

  Ties at the threshold are broken by position (earlier entries first, in C order), so the count is exact even
  when many scores are equal (e.g. the zeros of already-pruned weights). ``n_keep`` may be traced; it is clipped
  to ``[0, size]``. NaN scores count as ``-inf``. No sort: the threshold is found by bisection over the 32-bit
  ordered representation of the scores (32 counting passes), which on CPU is ~30x faster than an argsort for
  a million entries; ties are then resolved with one cumulative sum.
  """
  flat = scores.reshape(-1)
  k = jnp.clip(jnp.asarray(n_keep, jnp.int32), 0, flat.size)
  key = _ordered_key(flat)

  def bisect(_, lo_hi):
    lo, hi = lo_hi  # invariant: at least k keys are >= lo, and the answer lies in [lo, hi]
    d = hi - lo
    mid = lo + d // 2 + (d & 1)
    ok = jnp.sum(key >= mid, dtype=jnp.int32) >= k
    return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid - 1)

  threshold, _ = jax.lax.fori_loop(0, 32, bisect, (jnp.uint32(0), jnp.uint32(0xFFFFFFFF)))
  greater = key > threshold
  at = key == threshold
  take_at = at & (jnp.cumsum(at, dtype=jnp.int32) <= k - jnp.sum(greater, dtype=jnp.int32))
  return ((greater | take_at) & (k > 0)).reshape(scores.shape)


def global_top_k_masks(scores: Sequence[jax.Array], n_keep: jax.Array | int) -> list[jax.Array]:
  """:func:`top_k_mask` over the concatenation of several tensors, split back to their shapes."""
  if not scores:
    return []
  flat = jnp.concatenate([s.reshape(-1).astype(jnp.float32) for s in scores])
  mask = top_k_mask(flat, n_keep)
  sizes = np.cumsum([s.size for s in scores])[:-1]
  return [m.reshape(s.shape) for m, s in zip(jnp.split(mask, sizes), scores, strict=True)]


def magnitude_masks(
  values: Sequence[jax.Array],
  old_masks: Sequence[jax.Array],
  zeros: jax.Array | int | Sequence[jax.Array | int],
  scope: str,
) -> list[jax.Array]:
  """Top-|value| masks with exactly ``zeros`` pruned entries over all layers (``scope="global"``, one count)
  or per layer (``scope="layer"``, one count per layer). Counts may be traced.

  Weights outside ``old_masks`` rank below every active weight (score -1 < |x|), so when the sparsity grows
  the new mask is a subset of the old one (gradual magnitude pruning never revives a pruned weight).
  """
  scores = [
    jnp.where(m, jnp.abs(v).astype(jnp.float32), -1.0) for v, m in zip(values, old_masks, strict=True)
  ]
  if scope == "global":
    total = sum(int(v.size) for v in values)
    return global_top_k_masks(scores, total - zeros)
  return [top_k_mask(s, s.size - z) for s, z in zip(scores, zeros, strict=True)]


# A mask rule: (count, params, grads, proposal_fn, old_masks) -> (new_masks, zero_new), lists over prunable leaves
# (``proposal_fn()`` returns params + inner_updates; call it inside the mask-update branch so that steps without
# a mask update do not materialise it)
# only. ``zero_new`` says whether weights that become active in this step start at exactly 0 (RigL).
MaskRule = Callable[
  [jax.Array, list[jax.Array], list[jax.Array], Callable[[], list[jax.Array]], list[jax.Array]],
  tuple[list[jax.Array], bool],
]
InitRule = Callable[[list[jax.Array]], list[jax.Array]]


def sparsifier(
  inner: optax.GradientTransformation,
  prunable: masking.MaskOrFn,
  init_rule: InitRule,
  mask_rule: MaskRule | None,
) -> optax.GradientTransformationExtraArgs:
  """Builds a sparsifier: run ``inner``, update the masks with ``mask_rule``, project onto the masks.

  ``updates = where(mask, inner_updates, -params)`` on prunable leaves (so ``params + updates`` equals
  ``mask * (params + inner_updates)`` and pruned entries are exactly 0.0), ``inner_updates`` unchanged elsewhere.
  """
  inner = optax.with_extra_args_support(inner)

  def init_fn(params: optax.Params) -> SparsifierState:
    flags = masking.resolve_mask(prunable, params, "`prunable`")
    leaves, treedef = jax.tree.flatten(params)
    pruned = [p for p, f in zip(leaves, flags, strict=True) if f]
    new = iter(init_rule(pruned))
    masks = [next(new) if f else jnp.ones((), bool) for f in flags]
    return SparsifierState(
      count=jnp.zeros([], jnp.int32),
      masks=jax.tree.unflatten(treedef, masks),
      inner_state=inner.init(params),
    )

  def update_fn(
    updates: optax.Updates,
    state: SparsifierState,
    params: optax.Params | None = None,
    **extra_args: Any,
  ) -> tuple[optax.Updates, SparsifierState]:
    if params is None:
      raise ValueError(_NO_PARAMS_MSG)
    flags = masking.resolve_mask(prunable, params, "`prunable`")
    p_leaves = jax.tree.leaves(params)
    g_leaves = jax.tree.leaves(updates)
    m_leaves, m_treedef = jax.tree.flatten(state.masks)
    if not (len(p_leaves) == len(g_leaves) == len(m_leaves)):
      raise ValueError(
        f"Sparsifier masks do not match the params: {len(m_leaves)} mask leaves, {len(p_leaves)} params, "
        f"{len(g_leaves)} updates. Re-initialise the optimizer state for these params."
      )
    for i, (p, m, f) in enumerate(zip(p_leaves, m_leaves, flags, strict=True)):
      expected = p.shape if f else ()
      if m.shape != expected:
        raise ValueError(
          f"Sparsifier mask for parameter leaf {i} has shape {m.shape}, expected {expected} "
          f"(param shape {p.shape}, prunable={f})."
        )

    inner_updates, inner_state = inner.update(updates, state.inner_state, params, **extra_args)
    u_leaves, u_treedef = jax.tree.flatten(inner_updates)

    idx = [i for i, f in enumerate(flags) if f]
    old = [m_leaves[i] for i in idx]
    if mask_rule is None or not idx:
      new, zero_new = old, False
    else:
      pruned_p = [p_leaves[i] for i in idx]

      def proposal_fn():
        return [p_leaves[i] + u_leaves[i] for i in idx]

      new, zero_new = mask_rule(state.count, pruned_p, [g_leaves[i] for i in idx], proposal_fn, old)
    out_u = list(u_leaves)
    out_m = list(m_leaves)
    for j, i in enumerate(idx):
      active = new[j] & old[j] if zero_new else new[j]
      out_u[i] = jnp.where(active, u_leaves[i], -p_leaves[i]).astype(u_leaves[i].dtype)
      out_m[i] = new[j]
    new_state = SparsifierState(
      count=optax.safe_increment(state.count),
      masks=jax.tree.unflatten(m_treedef, out_m),
      inner_state=inner_state,
    )
    return jax.tree.unflatten(u_treedef, out_u), new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _unwrap(tree: Any) -> Any:
  """Strips flax NNX ``Variable`` wrappers (e.g. ``nnx.Optimizer``'s ``OptArray``) if flax is installed."""
  try:
    from flax import nnx
  except ImportError:  # pragma: no cover - flax is a dependency, but keep the core optax-only.
    return tree
  return (
    nnx.as_pure(tree)
    if isinstance(tree, nnx.State)
    else jax.tree.map(
      lambda v: v.get_value() if isinstance(v, nnx.Variable) else v,
      tree,
      is_leaf=lambda v: isinstance(v, nnx.Variable),
    )
  )


def get_masks(opt_state: Any) -> Any:
  """Returns the mask pytree of the (single) sparsifier inside ``opt_state``.

  The sparsifier state is found anywhere in a nested optax state (``optax.chain``, ``inject_hyperparams``,
  ``MultiSteps``, ...). A ``flax.nnx.Optimizer`` (or its ``opt_state``) is accepted too; NNX variable wrappers
  are stripped. Prunable leaves hold bool arrays (``True`` = active), the others the scalar ``True``.

  Raises:
    ValueError: if ``opt_state`` holds no sparsifier state, or more than one.
  """
  if hasattr(opt_state, "opt_state") and not isinstance(opt_state, tuple):
    opt_state = opt_state.opt_state
  found = [
    x
    for x in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, SparsifierState))
    if isinstance(x, SparsifierState)
  ]
  if not found:
    raise ValueError(
      "No sparsifier state found in opt_state: build the optimizer with a ham_optax.sparsity sparsifier "
      "(random_pruning, magnitude_pruning, acdc or rigl)."
    )
  if len(found) > 1:
    raise ValueError(f"opt_state holds {len(found)} sparsifier states; get_masks needs exactly one.")
  return _unwrap(found[0].masks)


def apply_masks(params: Any, opt_state: Any) -> Any:
  """Returns ``params`` with every pruned weight set to exactly zero.

  Call it once after ``tx.init(params)`` so that a mask drawn at init (random pruning, RigL) is in force from
  step 0; afterwards every sparsifier update keeps pruned weights at zero by itself. Accepts plain pytrees and
  NNX states (``nnx.state(model, nnx.Param)``; the result can be passed to ``nnx.update(model, ...)``).

  Raises:
    ValueError: if the masks do not match ``params`` (number of leaves or shapes).
  """
  mask_leaves = jax.tree.leaves(get_masks(opt_state))
  p_leaves, treedef = jax.tree.flatten(params)
  if len(mask_leaves) != len(p_leaves):
    raise ValueError(f"Masks have {len(mask_leaves)} leaves but params have {len(p_leaves)}.")
  out = []
  for i, (m, p) in enumerate(zip(mask_leaves, p_leaves, strict=True)):
    if m.shape not in ((), jnp.shape(p)):
      raise ValueError(
        f"Mask leaf {i} has shape {m.shape}, which does not match parameter shape {jnp.shape(p)}."
      )
    out.append(jnp.where(m, p, jnp.zeros_like(p)))
  return jax.tree.unflatten(treedef, out)
