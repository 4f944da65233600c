"""Deep diagonal reparameterisation ``x = u^L - v^L`` as an optax wrapper (overview: :mod:`ham_optax.overparam`)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from ham_optax._src import checks, masking


class DeepDiagonalState(NamedTuple):
  """State of :func:`deep_diagonal`.

  Attributes:
    u: first factor, same structure as params (``x = u^L - v^L``); ``optax.MaskedNode()`` at non-floating
      leaves, which are not trained.
    v: second factor, same layout as ``u``.
    inner_state: state of the inner optimizer, built for the pair ``(u, v)``.
  """

  u: optax.Params
  v: optax.Params
  inner_state: optax.OptState

  weight_fields = ("u", "v")  # the weights' factors: see ham_optax.sparsity.ReparametrisedState


def deep_diagonal(
  inner: optax.GradientTransformation, depth: int, init_scale: float = 1e-3
) -> optax.GradientTransformationExtraArgs:
  """Trains every floating leaf ``x`` as ``x = u^L - v^L`` (elementwise) with ``inner`` running on ``(u, v)``.

  Update rule (``g`` the gradient w.r.t. ``x``, ``L = depth``)::

      g_u = L u^(L-1) g;   g_v = -L v^(L-1) g
      (u, v) <- (u, v) + inner((g_u, g_v), state, params=(u, v))
      updates = u^L - v^L - x

  Initialisation (from the params passed to ``init``): ``u = (max(x, 0) + s^L)^(1/L)``,
  ``v = (max(-x, 0) + s^L)^(1/L)`` with ``s = init_scale``, so ``u^L - v^L = x`` exactly and ``min(u, v) = s``.
  ``x = 0`` with a small ``s`` is the small-initialisation saddle of the steepest-mirror-flow paper (Jacobs,
  Zhou & Burkholz, ICLR 2026); ``depth = 1`` is plain training of ``x`` with the step doubled
  (``x <- x + inner(g) - inner(-g)``).

  The wrapper owns the factors: an edit of the params outside the optimizer is undone at the next step.
  Non-floating leaves (integer counters) are not trained. Weight decay belongs in ``inner`` (e.g.
  ``optax.adamw(lr, weight_decay=wd)``, which drives ``min(u, v)`` to 0).

  Args:
    inner: optimizer run on the factors (e.g. ``optax.sgd(0.1)``, ``optax.sign_sgd(0.01)``,
      ``optax.adamw(1e-2, weight_decay=1e-2)``, ``ham_optax.ham(optax.sgd(0.1), 0.1, mask=...)``).
    depth: ``L >= 1``.
    init_scale: ``s > 0``, the initial size of the smaller factor.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` whose ``update`` needs ``params``.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from ham_optax.overparam import deep_diagonal
    >>> tx = deep_diagonal(optax.sgd(0.1), depth=2, init_scale=0.1)
    >>> x = jnp.zeros(3)
    >>> state = tx.init(x)
    >>> g = jnp.array([1.0, -1.0, 0.0])
    >>> updates, state = tx.update(g, state, x)
    >>> [round(float(t), 4) for t in x + updates]  # u = 0.1 - 0.1 * 0.2, v = 0.1 + 0.1 * 0.2
    [-0.008, 0.008, 0.0]
  """
  checks.check_inner(inner, "deep_diagonal")
  depth = checks.check_int(depth, "depth", 1, owner="deep_diagonal")
  checks.check_scalar(init_scale, "init_scale", lo=0.0, lo_open=True, owner="deep_diagonal")
  inner = optax.with_extra_args_support(inner)

  def init_fn(params):
    u, v = masking.unzip(params, jax.tree.map(lambda x: _factors(x, depth, init_scale), params), 2)
    return DeepDiagonalState(u=u, v=v, inner_state=inner.init((u, v)))

  def update_fn(updates, state, params=None, **extra_args):
    checks.check_given(params, "params", "deep_diagonal", "pass it to update: it returns u^L - v^L - params")
    checks.check_trees_match("deep_diagonal", params=params, updates=updates)
    grad = lambda g, t, sign: t if masking.is_masked(t) else sign * depth * t ** (depth - 1) * g  # noqa: E731
    g_u = jax.tree.map(lambda g, t: grad(g, t, 1), updates, state.u)
    g_v = jax.tree.map(lambda g, t: grad(g, t, -1), updates, state.v)
    du_dv, inner_state = inner.update((g_u, g_v), state.inner_state, (state.u, state.v), **extra_args)
    u, v = optax.apply_updates((state.u, state.v), du_dv)
    new_updates = jax.tree.map(lambda x, a, b: _updates_to(x, a, b, depth), params, u, v)
    return new_updates, DeepDiagonalState(u=u, v=v, inner_state=inner_state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _factors(x, depth: int, init_scale: float) -> tuple:
  """``(u, v)`` of a floating leaf at init; ``optax.MaskedNode()`` for other leaves (not trained)."""
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    return masking.MASKED, masking.MASKED
  cdtype = jnp.promote_types(x.dtype, jnp.float32)  # u^L and v^L of a float16 leaf would underflow
  if init_scale**depth < jnp.finfo(cdtype).tiny or init_scale < jnp.finfo(x.dtype).tiny:
    raise ValueError(
      f"deep_diagonal: init_scale ** depth = {init_scale:g} ** {depth} underflows ({cdtype} for u^L, "
      f"{x.dtype} for u): u = v = 0 would never move. Use a larger init_scale or a smaller depth."
    )
  s_l, x_c = (jnp.asarray(init_scale) ** depth).astype(cdtype), x.astype(cdtype)
  root = lambda t: ((jnp.maximum(t, 0) + s_l) ** (1.0 / depth)).astype(x.dtype)  # noqa: E731
  return root(x_c), root(-x_c)


def _updates_to(x, u, v, depth: int) -> jax.Array:
  """The update taking the parameter ``x`` to ``u^L - v^L`` in ``x``'s dtype (0 for an untrained leaf)."""
  if masking.is_masked(u):
    return jnp.zeros_like(x)
  dtype = jnp.result_type(x)
  u, v, x = (jnp.asarray(t).astype(jnp.promote_types(dtype, jnp.float32)) for t in (u, v, x))
  return (u**depth - v**depth - x).astype(dtype)
