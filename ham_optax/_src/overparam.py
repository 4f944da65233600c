"""Pointwise overparameterisation ``x = m * w``: spred, PILoT, Sign-In (overview: :mod:`ham_optax.overparam`)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ham_optax._src import checks, masking
from ham_optax._src.masking import MaskOrFn
from ham_optax._src.schedules import switch_off


class OverparamState(NamedTuple):
  """State of :func:`pointwise_overparam`.

  Attributes:
    count: number of updates applied so far (int32 scalar).
    m: first factor, same structure as params; ``optax.MaskedNode()`` at unmasked leaves.
    w: second factor, same structure as params; ``optax.MaskedNode()`` at unmasked leaves.
    inner_state: state of the inner optimizer, built for the pair ``(u, w)`` where ``u``
      is ``m`` at masked leaves and the parameter itself at unmasked leaves.
  """

  count: jax.Array
  m: optax.Params
  w: optax.Params
  inner_state: optax.OptState

  weight_fields = ("m", "w")  # the weights' factors: see ham_optax.sparsity.ReparametrisedState


def factorize(
  x: jax.Array, balance: float | jax.Array, sign_m: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
  """Splits ``x`` elementwise into ``(m, w)`` with ``m * w = x`` and ``m^2 - w^2 = balance``.

  For ``c = balance >= 0``: ``|m| = sqrt((c + sqrt(c^2 + 4 x^2)) / 2)``, ``|w| = |x| / |m|``; for ``c < 0`` the
  roles are swapped. ``m`` takes the sign ``sign_m`` (default +1; 0 is read as +1) and ``w`` the sign making
  ``m * w = x`` (+1 where ``x = 0``). ``balance = 0`` gives the balanced split ``|m| = |w| = sqrt(|x|)`` of the
  HAM paper's Theorem 3.1. ``balance`` is a scalar or broadcastable to ``x``; ``(m, w)`` have ``x``'s dtype (integers: JAX's default float).

  Example:
    >>> import numpy as np
    >>> from ham_optax import overparam
    >>> m, w = overparam.factorize(np.array([4.0, -1.0]), balance=0.0)
    >>> print(np.asarray(m), np.asarray(w))
    [2. 1.] [ 2. -1.]
  """
  checks.check_finite_values(balance, "balance", owner="factorize")
  x = checks.floating_array(x)
  checks.check_broadcasts(balance, "balance", x.shape, owner="factorize")
  return _factorize(x, balance, sign_m)


def _factorize(x: jax.Array, balance: Any, sign_m: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """:func:`factorize` without the check of ``balance``: inside the wrappers a NaN balance (from a NaN gradient
  carried by ``m`` and ``w``) must give NaN weights, as optax would, not an error."""
  x = checks.floating_array(x)
  c = jnp.asarray(balance, dtype=x.dtype)
  # sqrt(c^2 + 4 x^2) through hypot where the squares would overflow (elsewhere as written, so the split of
  # ordinary weights does not change in the last bit)
  large = jnp.maximum(jnp.abs(c), jnp.abs(x)) > math.sqrt(float(jnp.finfo(x.dtype).max)) / 4
  root = jnp.where(large, 2 * jnp.hypot(c / 2, x), jnp.sqrt(c * c + 4.0 * x * x))
  big = jnp.sqrt((jnp.abs(c) + root) / 2.0)
  small = jnp.where(big > 0, jnp.abs(x) / jnp.where(big > 0, big, 1.0), 0.0)
  abs_m, abs_w = jnp.where(c >= 0, big, small), jnp.where(c >= 0, small, big)
  s_m = jnp.ones_like(x) if sign_m is None else jnp.where(jnp.asarray(sign_m) < 0, -1.0, 1.0).astype(x.dtype)
  s_x = jnp.where(x < 0, -1.0, 1.0).astype(x.dtype)
  return (s_m * abs_m).astype(x.dtype), (s_m * s_x * abs_w).astype(x.dtype)


def pointwise_overparam(
  inner: optax.GradientTransformation,
  *,
  mask: MaskOrFn | None = None,
  weight_decay: optax.ScalarOrSchedule = 0.0,
  init: str | float = "balanced",
  rescale_every: int | None = None,
  rescale_balance: float = 1.0,
) -> optax.GradientTransformationExtraArgs:
  """Trains masked leaves as ``x = m * w`` with ``inner`` running on ``(m, w)``.

  Update rule (elementwise on masked leaves; ``g = dL/dx``, ``lam_k`` the weight decay at step ``k`` from 0)::

      g_m = g * w + lam_k * m;   g_w = g * m + lam_k * w     (chain rule of L(m w) + lam_k/2 (m^2 + w^2))
      (m, w) <- (m, w) + inner((g_m, g_w))
      if rescale_every and (k + 1) % rescale_every == 0:
          (m, w) <- factorize(m * w, rescale_balance, sign_m=m)   # Sign-In rescaling
      updates = m * w - x

  Unmasked leaves get ``inner``'s update for ``g`` (no weight decay here). The decay is coupled, an L2 penalty
  on the factors added before ``inner`` (decoupled: e.g. ``inner=optax.adamw(...)``, which decays every leaf).
  Geometry, memory cost and params edited outside the optimizer (re-factorised): :mod:`ham_optax.overparam`.

  References: Jacobs & Burkholz, "Mask in the Mirror" (ICLR 2025) and Jacobs et al., "Hyperbolic Aware
  Minimization" (ICLR 2026, arXiv 2506.02630).

  Args:
    inner: optimizer run on the factors (e.g. ``optax.sgd(0.1, momentum=0.9)``).
    mask: which leaves to factorise: ``None`` (floating leaves with ``ndim >= 2``), a pytree of bools (same
      structure as params or a prefix) or a callable ``params -> pytree``.
    weight_decay: ``lam`` (float >= 0 or an optax schedule of the step count).
    init: initial split: ``"balanced"`` (``|m| = |w| = sqrt|x|``, balance 0), ``"mask"`` (``m = 1``, ``w = x``,
      as in continuous sparsification) or a float balance ``c = m^2 - w^2`` (see :func:`factorize`).
    rescale_every: re-factorise every this many updates (int > 0; Sign-In), keeping signs and the inner state.
    rescale_balance: balance ``c`` the rescaling resets to.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` needs ``params``.
  """
  checks.check_inner(inner, "pointwise_overparam")
  init, rescale_every, balance = _check_overparam_args(weight_decay, init, rescale_every, rescale_balance)
  mask_init, init_balance = isinstance(init, str) and init == "mask", 0.0 if isinstance(init, str) else init
  inner = optax.with_extra_args_support(inner)
  mask_of = functools.partial(masking.resolve_mask_tree, mask, what="pointwise_overparam: mask")

  def init_fn(params: optax.Params) -> OverparamState:
    flags = mask_of(params)
    m, w = _map_pairs(
      flags, lambda p: (jnp.ones_like(p), p) if mask_init else _factorize(p, init_balance), params
    )
    # The inner optimizer's first slot holds m at masked leaves and the parameter itself elsewhere.
    inner_state = inner.init((masking.where_flags(flags, m, params), w))
    return OverparamState(count=jnp.zeros([], jnp.int32), m=m, w=w, inner_state=inner_state)

  def update_fn(updates, state: OverparamState, params=None, **extra_args):
    checks.check_given(
      params, "params", "pointwise_overparam", "pass it to update: the wrapper returns m * w - params"
    )
    checks.check_trees_match("pointwise_overparam", params=params, updates=updates)
    flags = mask_of(params)
    lam = weight_decay(state.count) if callable(weight_decay) else weight_decay
    m, w = _map_pairs(flags, _resync, params, state.m, state.w)
    u = masking.where_flags(flags, m, params)
    (d_u, d_w), inner_state = inner.update(
      _inner_grads(flags, updates, m, w, lam), state.inner_state, (u, w), **extra_args
    )
    m, w = _map_masked(flags, lambda x: x, optax.apply_updates(u, d_u)), optax.apply_updates(w, d_w)
    if rescale_every is not None:
      due = (state.count + 1) % rescale_every == 0
      m, w = _map_pairs(flags, functools.partial(_sign_in_rescale, due, balance), m, w)
    to_mw = lambda p, a, b: (a * b - p).astype(jnp.result_type(p))  # noqa: E731 - in the parameter's dtype
    new_updates = masking.where_flags(flags, _map_masked(flags, to_mw, params, m, w), d_u)
    return new_updates, OverparamState(optax.safe_increment(state.count), m, w, inner_state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _check_overparam_args(
  weight_decay: optax.ScalarOrSchedule, init: str | float, rescale_every: int | None, rescale_balance: float
) -> tuple[str | float, int | None, float]:
  """:func:`pointwise_overparam`'s arguments after ``inner``, checked: ``(init, rescale_every, balance)``."""
  checks.check_scalar(weight_decay, "weight_decay", lo=0.0, schedule_ok=True)
  if isinstance(init, str):
    checks.check_choice(init, "init ('balanced', 'mask' or a float balance m^2 - w^2)", ("balanced", "mask"))
  else:
    init = checks.check_scalar(init, "init")
  rescale_every = checks.check_int(rescale_every, "rescale_every", 1, none_ok=True)
  return init, rescale_every, checks.check_scalar(rescale_balance, "rescale_balance")


def _inner_grads(flags: Any, updates: Any, m: Any, w: Any, lam: Any) -> tuple[Any, Any]:
  """Gradients ``inner`` gets for ``(u, w)``: of ``L(m w) + lam/2 (m^2 + w^2)``, ``g`` at unmasked leaves."""
  factor_grad = lambda g, a, b: (g * b + lam * a).astype(a.dtype)  # noqa: E731 - d/da of L(a b) + lam/2 a^2
  g_m = _map_masked(flags, factor_grad, updates, m, w)
  g_w = _map_masked(flags, factor_grad, updates, w, m)
  return masking.where_flags(flags, g_m, updates), g_w


def _sign_in_rescale(
  due: jax.Array, balance: float, m: jax.Array, w: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """Sign-In's re-factorisation of ``(m, w)`` to ``balance`` where ``due``, keeping the sign of ``m``."""
  rm, rw = _factorize(m * w, balance, sign_m=m)
  return jnp.where(due, rm, m), jnp.where(due, rw, w)


def _map_masked(flags: Any, fn: Callable[..., Any], *trees: Any) -> Any:
  """``fn`` over the masked leaves of ``trees`` (``optax.MaskedNode()`` at the other leaves)."""
  return jax.tree.map(lambda f, *xs: fn(*xs) if f else masking.MASKED, flags, *trees)


def _map_pairs(flags: Any, fn: Callable[..., Any], *trees: Any) -> tuple[Any, Any]:
  """``fn`` (returning a pair) over the masked leaves of ``trees``, as two trees (``MaskedNode`` elsewhere)."""
  pairs = jax.tree.map(lambda f, *xs: fn(*xs) if f else (masking.MASKED,) * 2, flags, *trees)
  return masking.unzip(flags, pairs, 2)


def _resync(x: Any, m: jax.Array, w: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``(m, w)`` re-factorised (same balance and sign of ``m``) where ``x`` differs from ``m * w`` beyond rounding."""
  x = jnp.asarray(x)
  mw = m * w
  eps = jnp.finfo(x.dtype).eps
  off = jnp.abs(x - mw) > 8 * eps * (jnp.abs(x) + jnp.abs(mw)) + jnp.finfo(x.dtype).tiny
  m_new, w_new = _factorize(x, m * m - w * w, sign_m=m)
  # keep w's sign where x == 0 (factorize would pick +1)
  w_new = jnp.where(x == 0, jnp.where(w < 0, -jnp.abs(w_new), jnp.abs(w_new)), w_new)
  return jnp.where(off, m_new, m), jnp.where(off, w_new, w)


def spred(
  inner: optax.GradientTransformation,
  weight_decay: optax.ScalarOrSchedule,
  *,
  mask: MaskOrFn | None = None,
  init: str | float = "balanced",
) -> optax.GradientTransformationExtraArgs:
  """spred: ``x = m * w`` with constant weight decay on both factors (an implicit LASSO).

  Ziyin & Wang, "spred: Solving L1 Penalty with SGD", ICML 2023; the ``m * w`` baseline of the HAM paper. Since
  ``min_{m w = x} lam/2 (m^2 + w^2) = lam |x|``, minimisers of ``L(m * w) + lam/2 (||m||^2 + ||w||^2)`` are LASSO
  minimisers of ``L(x) + lam ||x||_1``. Update rule: :func:`pointwise_overparam` with constant
  ``weight_decay = lam``; ``mask`` and ``init`` as there.

  Example:
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> import optax
    >>> from ham_optax import overparam
    >>> params = {"w": jnp.array([[4.0, -1.0]])}
    >>> tx = overparam.spred(optax.sgd(0.1), weight_decay=0.0)
    >>> updates, state = tx.update({"w": jnp.array([[1.0, 1.0]])}, tx.init(params), params)
    >>> print(np.asarray(optax.apply_updates(params, updates)["w"]).round(4))  # x - 0.1 (m^2 + w^2) g + ...
    [[ 3.24 -1.21]]
  """
  checks.check_inner(inner, "spred")
  return pointwise_overparam(inner, mask=mask, weight_decay=weight_decay, init=init)


_PILOT_SHAPES = ("constant", "linear", "cosine")


def pilot_schedule(
  weight_decay: optax.ScalarOrSchedule, switch_step: int, shape: str = "constant"
) -> optax.Schedule:
  """PILoT's time-dependent weight decay: ``lam_k * s(k / T)`` for ``k < T = switch_step``, then 0.

  Shapes ``s(u)``: ``"constant"`` 1 (the default, as the ICLR text); ``"linear"`` ``1 - u`` and ``"cosine"``
  ``(1 + cos(pi u)) / 2`` (the arXiv text). ``lam_k`` is the float or optax schedule ``weight_decay``;
  ``switch_step`` (int > 0) is the first step (0-based) with zero decay.

  Example:
    >>> from ham_optax.overparam import pilot_schedule
    >>> sched = pilot_schedule(0.1, switch_step=4, shape="linear")
    >>> [round(float(sched(k)), 3) for k in range(6)]
    [0.1, 0.075, 0.05, 0.025, 0.0, 0.0]
  """
  checks.check_scalar(weight_decay, "weight_decay", lo=0.0, schedule_ok=True)
  switch_step = checks.check_int(switch_step, "switch_step", 1, owner="pilot")
  checks.check_choice(shape, "shape", _PILOT_SHAPES)

  def factor(count: optax.Numeric) -> jax.Array:
    u = jnp.asarray(count, jnp.float32) / switch_step
    if shape == "linear":
      return 1.0 - u
    if shape == "cosine":
      return 0.5 * (1.0 + jnp.cos(jnp.pi * u))
    return jnp.ones_like(u)

  def schedule(count: optax.Numeric) -> jax.Array:
    lam = weight_decay(count) if callable(weight_decay) else weight_decay
    return jnp.asarray(lam, jnp.float32) * factor(count)

  return switch_off(schedule, switch_step)


def pilot(
  inner: optax.GradientTransformation,
  weight_decay: optax.ScalarOrSchedule,
  switch_step: int,
  *,
  shape: str = "constant",
  init: str | float = 1.0,
  mask: MaskOrFn | None = None,
) -> optax.GradientTransformationExtraArgs:
  """PILoT: ``x = m * w`` with a time-dependent weight decay that is switched off, from an L2-regime start.

  Jacobs & Burkholz, "Mask in the Mirror: Implicit Sparsification", ICLR 2025 (arXiv 2408.09966). Weight decay
  turns the implicit L2 bias of ``m * w`` into an L1 bias (the balance ``m^2 - w^2`` shrinks); PILoT then switches
  the decay off, keeping the implicit L1 bias. Update rule: :func:`pointwise_overparam` with initial balance
  ``init`` and weight decay ``pilot_schedule(weight_decay, switch_step, shape)``, which is 0 from ``switch_step``
  on (required, e.g. half of training).

  Our choices: the default balance 1 (so signs can still flip) and the constant shape; the ICLR version's
  controller towards an L1 target is not implemented (pass any optax schedule as ``weight_decay``).

  Args:
    inner: optimizer run on the factors.
    weight_decay: ``lam`` (float >= 0, or a schedule).
    switch_step: ``T``, first step (0-based) at which the decay is 0 (int > 0).
    shape: ``"constant"``, ``"linear"`` or ``"cosine"`` (see :func:`pilot_schedule`).
    init: initial split (see :func:`pointwise_overparam`); default balance 1.0.
    mask: leaves to factorise (see :func:`pointwise_overparam`).
  """
  checks.check_inner(inner, "pilot")
  wd = pilot_schedule(weight_decay, switch_step, shape)
  return pointwise_overparam(inner, mask=mask, weight_decay=wd, init=init)


def sign_in(
  inner: optax.GradientTransformation,
  rescale_every: int,
  *,
  balance: float = 1.0,
  weight_decay: optax.ScalarOrSchedule = 0.0,
  mask: MaskOrFn | None = None,
) -> optax.GradientTransformationExtraArgs:
  """Sign-In: ``x = m * w`` with periodic rescaling that induces sign flips.

  Gadhikar, Jacobs, Zhou & Burkholz, "Sign-In to the Lottery: Reparameterizing Sparse Training", NeurIPS 2025;
  the Sign-In baseline of the HAM paper. Small weights get an inverse metric ``sqrt(c^2 + 4 x^2) ~ |c|`` set by
  the balance ``c = m^2 - w^2``, which training and weight decay drive towards zero, freezing signs. Every
  ``rescale_every`` updates (e.g. one epoch) the factors are reset to ``c = balance`` with ``x = m * w``
  unchanged, so weights near zero can move, and flip sign, again. Update rule: :func:`pointwise_overparam` with
  ``init=balance``, ``rescale_every``, ``rescale_balance=balance``. The rescale keeps the sign of ``m`` since
  the inner moments are kept (our choice). Weight decay goes either in ``weight_decay`` (an L2 penalty on the
  factors) or inside ``inner``, not both.

  Args:
    inner: optimizer run on the factors.
    rescale_every: number of updates between rescalings.
    balance: balance ``m^2 - w^2`` at init and after each rescaling.
    weight_decay: ``lam`` on the factors (float >= 0 or schedule).
    mask: leaves to factorise (for sparse training: the layers being pruned).
  """
  checks.check_given(rescale_every, "rescale_every", "sign_in", "int > 0")
  checks.check_inner(inner, "sign_in")
  balance = checks.check_scalar(balance, "balance")
  return pointwise_overparam(
    inner,
    mask=mask,
    weight_decay=weight_decay,
    init=balance,
    rescale_every=rescale_every,
    rescale_balance=balance,
  )


def state_nbytes(tx: optax.GradientTransformation, params: optax.Params) -> int:
  """Bytes of ``tx.init(params)``: ``sum(leaf.size * leaf.dtype.itemsize)`` via ``jax.eval_shape`` (no allocation)."""
  checks.check_inner(tx, "state_nbytes")
  shapes = jax.eval_shape(tx.init, params)
  return int(sum(math.prod(s.shape) * jnp.dtype(s.dtype).itemsize for s in jax.tree.leaves(shapes)))
