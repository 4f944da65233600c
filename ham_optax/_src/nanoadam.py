"""NanoAdam: Adam on the smallest-magnitude weights only, for fine-tuning.

Zhou, Jacobs, Gadhikar & Burkholz, "Pay Attention to Small Weights", NeurIPS 2025. During
fine-tuning, large gradients concentrate on small-magnitude weights; NanoAdam updates only the
``fraction`` of each weight tensor with the smallest ``|x|`` and leaves the large weights
(which carry what pre-training learned) exactly unchanged. The selection needs no gradient
and is refreshed every ``refresh_every`` steps.

Update rule for a selected tensor ``x`` with ``n`` entries, ``k = round(fraction * n)``
(at least 1), step ``t = count + 1``, gradient ``g``:

.. math::

  S &\\leftarrow \\operatorname{argsmallest}_k |x| \\quad \\text{if } \\mathrm{count} \\bmod N = 0 \\\\
  \\mu_S &\\leftarrow \\beta_1 \\mu_S + (1 - \\beta_1) g_S, \\qquad
  \\nu_S \\leftarrow \\beta_2 \\nu_S + (1 - \\beta_2) g_S^2 \\\\
  \\Delta x_S &= -\\eta_t \\Big(\\frac{\\mu_S / (1 - \\beta_1^t)}
      {\\sqrt{\\nu_S / (1 - \\beta_2^t)} + \\epsilon} + \\lambda x_S\\Big),
  \\qquad \\Delta x_{\\bar S} = 0 .

The state stores, per selected tensor, the ``k`` flat indices (int32) and ``k`` first and
second moments: ``3k`` numbers instead of Adam's ``2n`` (``fraction = 0.1``: 0.3n, about 6.7x
less). Choices made here (not fixed by the paper's summary): on a refresh,
entries that stay selected keep their moments, newly selected entries start from zero moments,
and bias correction uses the global step count ``t`` (as ``optax.adam`` does); ties in ``|x|``
go to the lower flat index. Leaves not in ``mask`` (default: floating leaves with
``ndim < 2``, i.e. biases and norm scales) get a plain dense Adam update; pass
``mask=lambda p: jax.tree.map(lambda _: True, p)`` to sparsify every leaf.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ham_optax._src import masking

__all__ = ["NanoAdamState", "nanoadam", "selected_count"]


class NanoAdamState(NamedTuple):
  """State of :func:`nanoadam`.

  Attributes:
    count: number of updates so far (int32 scalar).
    idx: per masked leaf, the ``k`` selected flat indices (int32); ``MaskedNode`` elsewhere.
    mu: first moments: shape ``(k,)`` for masked leaves, the leaf's shape otherwise.
    nu: second moments, same layout as ``mu``.
  """

  count: jax.Array
  idx: optax.Params
  mu: optax.Params
  nu: optax.Params


def selected_count(size: int, fraction: float) -> int:
  """Number of entries NanoAdam updates in a tensor of ``size`` entries: ``round(fraction * size)``, at least 1."""
  return int(min(size, max(1, round(fraction * size))))


def _check_float(name: str, value: Any, lo: float, hi: float, lo_open: bool, hi_open: bool) -> None:
  if isinstance(value, (jax.Array, np.ndarray)) and jnp.ndim(value) == 0:
    if isinstance(value, jax.core.Tracer):
      return
    value = float(value)
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    raise TypeError(f"nanoadam: `{name}` must be a real number, got {type(value).__name__}.")
  ok_lo = value > lo if lo_open else value >= lo
  ok_hi = value < hi if hi_open else value <= hi
  if not (math.isfinite(value) and ok_lo and ok_hi):
    lb, rb = ("(" if lo_open else "["), (")" if hi_open else "]")
    raise ValueError(f"nanoadam: `{name}` must be in {lb}{lo}, {hi}{rb}, got {value}.")


def _resolve_mask(mask: Any, params: optax.Params) -> optax.Params:
  """A pytree of static bools with the structure of ``params`` (same rules and checks as HAM's ``mask``)."""
  return masking.resolve_mask_tree(mask, params, "nanoadam")


def _smallest(x: jax.Array, k: int) -> jax.Array:
  """Flat indices of the ``k`` smallest ``|x|`` (ties: lower index first)."""
  return jax.lax.top_k(-jnp.abs(x.reshape(-1)), k)[1].astype(jnp.int32)


def nanoadam(
  learning_rate: optax.ScalarOrSchedule,
  fraction: float = 0.1,
  refresh_every: int = 100,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-8,
  weight_decay: float = 0.0,
  *,
  mask: Any = None,
) -> optax.GradientTransformationExtraArgs:
  """NanoAdam (Zhou, Jacobs, Gadhikar & Burkholz, "Pay Attention to Small Weights", NeurIPS 2025).

  Adam restricted to the ``fraction`` smallest-magnitude entries of each masked tensor; the
  selected set ``S`` is recomputed from the current parameters every ``refresh_every`` steps
  (at steps ``0, N, 2N, ...``); all other entries get an update of exactly zero::

      S = argsmallest_k |x|                     (k = round(fraction * x.size), every N steps)
      mu_S = b1 mu_S + (1 - b1) g_S;   nu_S = b2 nu_S + (1 - b2) g_S^2
      x_S -= lr_t * (mu_S / (1 - b1^t) / (sqrt(nu_S / (1 - b2^t)) + eps) + weight_decay * x_S)

  See the module docstring for memory (``3k`` numbers per tensor instead of Adam's ``2n``)
  and the choices made on refresh. Under ``optax.inject_hyperparams`` list
  ``static_args=("fraction", "refresh_every")`` (they fix array shapes).

  Args:
    learning_rate: float or optax schedule (evaluated at the step count, from 0).
    fraction: fraction of each masked tensor updated, in ``(0, 1]``.
    refresh_every: number of steps between re-selections (int > 0).
    b1: first-moment decay, in ``[0, 1)``.
    b2: second-moment decay, in ``[0, 1)``.
    eps: added to the root of the second moment, > 0.
    weight_decay: decoupled (AdamW-style) decay applied to the selected entries of masked
      tensors only (unmasked leaves get plain Adam without decay), >= 0.
    mask: tensors subject to the selection: ``None`` (floating leaves with ``ndim >= 2``), a
      pytree of bools (or a prefix) or a callable ``params -> pytree``. Others get dense Adam.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` (``update`` requires ``params``).
  """
  if not callable(learning_rate):
    _check_float("learning_rate", learning_rate, 0.0, math.inf, False, True)
  _check_float("fraction", fraction, 0.0, 1.0, True, False)
  if isinstance(refresh_every, bool) or not isinstance(refresh_every, numbers.Integral):
    raise TypeError(f"nanoadam: `refresh_every` must be an int, got {type(refresh_every).__name__}.")
  if refresh_every <= 0:
    raise ValueError(f"nanoadam: `refresh_every` must be > 0, got {refresh_every}.")
  _check_float("b1", b1, 0.0, 1.0, False, True)
  _check_float("b2", b2, 0.0, 1.0, False, True)
  _check_float("eps", eps, 0.0, math.inf, True, True)
  _check_float("weight_decay", weight_decay, 0.0, math.inf, False, True)
  fraction = float(fraction)
  refresh_every = int(refresh_every)
  masked_node = optax.MaskedNode()

  def init_fn(params: optax.Params) -> NanoAdamState:
    mask_tree = _resolve_mask(mask, params)

    def idx0(b, p):
      return _smallest(p, selected_count(p.size, fraction)) if b else masked_node

    def mom0(b, p):
      return jnp.zeros((selected_count(p.size, fraction),), p.dtype) if b else jnp.zeros_like(p)

    return NanoAdamState(
      count=jnp.zeros([], jnp.int32),
      idx=jax.tree.map(idx0, mask_tree, params),
      mu=jax.tree.map(mom0, mask_tree, params),
      nu=jax.tree.map(mom0, mask_tree, params),
    )

  def update_fn(updates, state: NanoAdamState, params=None, **extra_args):
    del extra_args
    if params is None:
      raise ValueError("nanoadam: `params` must be passed to update (the selection reads |x|).")
    mask_tree = _resolve_mask(mask, params)
    count = state.count
    t = optax.safe_increment(count).astype(jnp.float32)
    lr = learning_rate(count) if callable(learning_rate) else learning_rate
    refresh = count % refresh_every == 0
    bc1 = 1.0 - jnp.asarray(b1, jnp.float32) ** t
    bc2 = 1.0 - jnp.asarray(b2, jnp.float32) ** t

    def leaf(flag, g, p, idx, mu, nu):
      if flag:
        k = mu.shape[0]

        def reselect(args):
          idx, mu, nu = args
          new_idx = _smallest(p, k)
          dense_mu = jnp.zeros((p.size,), mu.dtype).at[idx].set(mu)
          dense_nu = jnp.zeros((p.size,), nu.dtype).at[idx].set(nu)
          return new_idx, dense_mu[new_idx], dense_nu[new_idx]

        idx, mu, nu = jax.lax.cond(refresh, reselect, lambda a: a, (idx, mu, nu))
        g_s = g.reshape(-1)[idx].astype(mu.dtype)
        x_s = p.reshape(-1)[idx]
      else:
        g_s = g.astype(mu.dtype)
      mu = b1 * mu + (1.0 - b1) * g_s
      nu = b2 * nu + (1.0 - b2) * g_s * g_s
      direction = (mu / bc1) / (jnp.sqrt(nu / bc2) + eps)
      if flag:  # decoupled decay on the selected entries only (not on dense biases/scales)
        direction = direction + weight_decay * x_s
      step = -lr * direction
      if flag:
        step = jnp.zeros((p.size,), p.dtype).at[idx].set(step.astype(p.dtype)).reshape(p.shape)
      return step.astype(p.dtype), idx, mu, nu

    out = jax.tree.map(
      leaf,
      mask_tree,
      updates,
      params,
      state.idx,
      state.mu,
      state.nu,
      is_leaf=lambda x: isinstance(x, optax.MaskedNode),
    )
    is_tuple = lambda x: isinstance(x, tuple)  # noqa: E731
    pick = lambda i: jax.tree.map(lambda b, o: o[i], mask_tree, out, is_leaf=is_tuple)  # noqa: E731
    new_state = NanoAdamState(count=optax.safe_increment(count), idx=pick(1), mu=pick(2), nu=pick(3))
    return pick(0), new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
