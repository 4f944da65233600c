"""Deep diagonal reparameterisation ``x = u^L - v^L`` as an optax wrapper, and a saddle-escape measurement.

Steepest mirror flows (Jacobs, Zhou & Burkholz, "Never Saddle for Reparameterized Steepest Descent as Mirror
Flow", ICLR 2026) study steepest descent (gradient descent, sign descent, Adam-like methods) on deep diagonal
linear reparameterisations. This implementation follows the paper's abstract; the concrete form
below (``x = u^L - v^L`` with positive factors, elementwise) is our choice among the "deep diagonal linear
reparameterizations" it names.

The model keeps ordinary parameters ``x``; the wrapper state owns, for every floating leaf, two factors
``u, v >= 0`` (in exact arithmetic; a large step may push a factor below zero, which the formula tolerates) and
the inner optimizer runs on the pair ``(u, v)``. One step, with ``g = dL/dx`` the gradient the user passes in::

    g_u = L u^(L-1) g,   g_v = -L v^(L-1) g           (chain rule of L(u^L - v^L))
    (u, v) <- (u, v) + inner((g_u, g_v), params=(u, v))
    updates = u^L - v^L - x

Because ``inner`` receives ``(u, v)`` as its ``params``, decoupled weight decay (``optax.adamw``) decays the
factors, while an L2 penalty (``optax.chain(optax.add_decayed_weights(wd), optax.adam(lr))``) is added to the
factors' gradients before Adam's normalisation: the two differ exactly in the balance they enforce (see
:func:`deep_diagonal`). Under gradient flow without decay the quantity ``log u + log v`` (``L = 2``) or
``u^(2-L) + v^(2-L)`` (``L != 2``) is conserved; weight decay drives ``min(u, v) -> 0`` (the sparse balance).

Small initialisation puts ``x = 0`` at a saddle of ``u, v -> L(u^L - v^L)`` (degenerate for ``L >= 3``), so the
loss stays on a plateau before it drops; :func:`escape_step` measures how long.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from ham_optax._src import checks

__all__ = ["DeepDiagonalState", "deep_diagonal", "escape_step"]


class DeepDiagonalState(NamedTuple):
  """State of :func:`deep_diagonal`.

  Attributes:
    u: first factor, same structure as params (``x = u^L - v^L``).
    v: second factor, same structure as params.
    inner_state: state of the inner optimizer, built for the pair ``(u, v)``.
  """

  u: optax.Params
  v: optax.Params
  inner_state: optax.OptState

  weight_fields = ("u", "v")  # the weights' factors, not optimizer memory (kept by the sparsifiers' resets)


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
  (``x <- x + inner(g) - inner(-g)``, e.g. SGD moves ``x`` by ``-2 lr g``).

  The wrapper owns the factors: ``updates`` always lands on ``u^L - v^L``, so an edit of the params outside
  the optimizer is undone at the next step (unlike :func:`ham_optax.overparam.pointwise_overparam`, which
  re-factorises; deep factors have no unique re-factorisation worth the cost in this study tool).
  Memory: two copies of every leaf plus the inner state of both (about 3x Adam's state).

  Weight decay and balance: with ``inner = optax.adamw(lr, weight_decay=wd)`` the factors shrink by
  ``lr wd (u, v)`` each step independently of the gradient scale (decoupled), which drives ``min(u, v)`` to 0
  (the "balance" ``u^L + v^L - |x| = 2 min(u, v)^L`` vanishes); with ``optax.chain(add_decayed_weights(wd),
  adam(lr))`` the decay is normalised together with the loss gradient, so where ``|g|`` is small the decay
  dominates the sign and acts at full step size on *both* factors. Which balance each enforces is measured by
  ``benchmarks/mirror_flows.py``; the paper's balance equations are not reproduced here.

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

  def power(t):
    return t**depth

  def init_fn(params):
    s_l = jnp.asarray(init_scale) ** depth
    u = jax.tree.map(lambda x: (jnp.maximum(x, 0) + s_l.astype(x.dtype)) ** (1.0 / depth), params)
    v = jax.tree.map(lambda x: (jnp.maximum(-x, 0) + s_l.astype(x.dtype)) ** (1.0 / depth), params)
    return DeepDiagonalState(u=u, v=v, inner_state=inner.init((u, v)))

  def update_fn(updates, state, params=None, **extra_args):
    if params is None:
      raise ValueError("deep_diagonal: `update` needs `params` (it returns u^L - v^L - params).")
    g_u = jax.tree.map(lambda g, u: depth * u ** (depth - 1) * g, updates, state.u)
    g_v = jax.tree.map(lambda g, v: -depth * v ** (depth - 1) * g, updates, state.v)
    du_dv, inner_state = inner.update((g_u, g_v), state.inner_state, (state.u, state.v), **extra_args)
    u, v = optax.apply_updates((state.u, state.v), du_dv)
    new_updates = jax.tree.map(lambda a, b, x: (power(a) - power(b) - x).astype(x.dtype), u, v, params)
    return new_updates, DeepDiagonalState(u=u, v=v, inner_state=inner_state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def escape_step(losses: jax.Array, fraction: float = 0.5) -> jax.Array:
  """Steps until the loss leaves its initial plateau: the first ``k`` with ``losses[k] <= fraction * losses[0]``.

  ``losses[k]`` is the loss after ``k`` steps (``losses[0]`` at initialisation). From a small initialisation
  the loss of a deep diagonal network stays near ``losses[0]`` (the saddle at ``x = 0``) and then drops; the
  escape step is the first index at which it has fallen to ``fraction`` of its initial value (our choice of
  definition: a relative threshold, so it does not depend on the loss' scale). Returns ``-1`` when this never
  happens within ``len(losses)`` (a stalled or diverged run; NaN losses never count as escaped). Jit- and
  vmap-friendly (works on the last axis of a batch of curves).

  Closed form (used in the tests): GD with learning rate ``eta`` on ``f(x) = a/2 (x - x*)^2`` from ``x = 0`` has
  ``losses[k] = (1 - eta a)^(2k) losses[0]``, hence ``escape_step = ceil(log(fraction) / (2 log|1 - eta a|))``.

  Args:
    losses: array ``[..., T]`` of losses, ``losses[..., 0]`` at initialisation.
    fraction: threshold in ``(0, 1)``.

  Returns:
    int32 array ``[...]``: the escape step, or ``-1``.

  Example:
    >>> import jax.numpy as jnp
    >>> from ham_optax.overparam import escape_step
    >>> int(escape_step(jnp.array([1.0, 0.99, 0.98, 0.4, 0.1])))
    3
  """
  f = float(fraction)
  if not 0.0 < f < 1.0:
    raise ValueError(f"escape_step: `fraction` must be in (0, 1), got {fraction}.")
  losses = jnp.asarray(losses)
  if losses.ndim < 1 or losses.shape[-1] < 1:
    raise ValueError(f"escape_step: `losses` must have a non-empty last axis, got shape {losses.shape}.")
  below = losses <= f * losses[..., :1]
  first = jnp.argmax(below, axis=-1).astype(jnp.int32)
  return jnp.where(jnp.any(below, axis=-1), first, jnp.int32(-1))
