"""The hyperbolic mirror step of HAM (Jacobs, Gadhikar, Rubio-Madrigal, Burkholz, ICLR 2026, arXiv:2506.02630)."""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax
from optax._src import base as optax_base

from ham_optax._src import checks, masking

SignFrom = Literal["x_half", "x"]


class HyperbolicStepState(NamedTuple):
  """State of :func:`hyperbolic_step`: only the step count the learning-rate schedule is evaluated at."""

  count: chex.Array  # int32 scalar


def check_mirror_args(
  learning_rate: optax.ScalarOrSchedule,
  alpha: Any,
  beta: Any,
  max_exponent: float,
  max_weight_norm: float | None,
  sign_from: str,
) -> None:
  """Construction-time validation shared by :func:`hyperbolic_step` and :func:`ham_optax.ham`."""
  checks.check_scalar(learning_rate, "learning_rate", non_negative=True, schedule_ok=True)
  checks.check_scalar(alpha, "alpha", schedule_ok=True)
  checks.check_scalar(beta, "beta", schedule_ok=True)
  checks.check_scalar(max_exponent, "max_exponent", positive=True)
  if max_weight_norm is not None:
    checks.check_scalar(max_weight_norm, "max_weight_norm", positive=True)
  if sign_from not in ("x_half", "x"):
    raise ValueError(f"sign_from must be 'x_half' (HYP*) or 'x' (GD;HYP), got {sign_from!r}.")


def _mirror_leaf(
  u: jax.Array,
  g: jax.Array,
  p: jax.Array,
  lr: Any,
  alpha: Any,
  beta: Any,
  max_exponent: Any,
  max_weight_norm: Any,
  sign_from: str,
) -> jax.Array:
  """One tensor of the mirror step; returns ``x_new - p`` in ``p``'s dtype.

  Computed in at least float32. The delta is written as ``u + x_half * (exp(e) - 1)`` (algebraically
  ``x_half * exp(e) - p``) so that a zero exponent returns the inner update bit-for-bit.
  """
  cdtype = jnp.promote_types(p.dtype, jnp.float32)
  # Scalars in the compute dtype too: float64 params get a float64 step (XLA folds these per tensor for free).
  lr_c = jnp.asarray(lr, cdtype)
  lr_alpha = lr_c * jnp.asarray(alpha, cdtype)
  lr_beta = lr_c * jnp.asarray(beta, cdtype)
  p_c = p.astype(cdtype)
  u_c = u.astype(cdtype)
  x_half = p_c + u_c
  g_c = g.astype(cdtype)
  if sign_from == "x_half":
    # -sign(x_half) * g as a select (4-6 % faster on CPU, benchmarks/README.md). Where x_half == 0 this gives -g
    # instead of 0, which is harmless: the factor multiplies x_half = 0.
    neg_sg = jnp.where(x_half < 0, g_c, -g_c)
  else:
    neg_sg = -(jnp.sign(p_c) * g_c)  # GD;HYP: sign(x) == 0 must leave only the beta term
  # neg_sg is finite for finite g; scaling by lr*alpha may overflow to +-inf, which the clip maps to
  # +-max_exponent. Never inf - inf: lr*beta is a finite scalar.
  e = jnp.clip(neg_sg * lr_alpha - lr_beta, -max_exponent, max_exponent)
  # exp(e) - 1 rather than expm1(e): XLA:CPU lowers expm1 to a routine ~4x slower than exp, which made the
  # mirror step cost 2.4x a bare SGD-momentum update (benchmarks/README.md). The absolute error of
  # x_half * (exp(e) - 1) stays within an ulp of x_half, and e == 0 still gives exactly 0.
  growth = jnp.exp(e)
  if max_weight_norm is None:
    factor = growth - 1.0
  else:
    norm = jnp.sqrt(jnp.sum(jnp.square(x_half * growth)))
    scale = jnp.minimum(1.0, max_weight_norm / jnp.maximum(norm, jnp.finfo(cdtype).tiny))
    factor = jnp.where(scale < 1.0, growth * scale, growth) - 1.0
  delta = u_c + x_half * factor
  big = jnp.finfo(p.dtype).max
  if big < jnp.finfo(cdtype).max:
    # float16 (and smaller): x_half * e^c can exceed the dtype's range although every input is finite.
    # Saturate the new weight instead of returning inf (the sign is unchanged, zeros stay zero).
    delta = jnp.clip(p_c + delta, -big, big) - p_c
  return delta.astype(p.dtype)


def mirror_updates(
  updates: Any,
  grads: Any,
  params: Any,
  learning_rate: jax.Array,
  alpha: Any,
  beta: Any,
  *,
  mask: masking.MaskOrFn,
  max_exponent: Any,
  max_weight_norm: Any,
  sign_from: str,
) -> Any:
  """Applies the mirror step to the selected leaves of ``params + updates``; other leaves pass through."""
  chex.assert_trees_all_equal_structs(params, grads, updates)
  chex.assert_trees_all_equal_shapes(params, grads, updates)
  selected = masking.resolve_mask(mask, params)

  flat_u, treedef = jax.tree.flatten(updates)
  flat_g = treedef.flatten_up_to(grads)
  flat_p = treedef.flatten_up_to(params)
  out = [
    _mirror_leaf(u, g, p, learning_rate, alpha, beta, max_exponent, max_weight_norm, sign_from) if on else u
    for u, g, p, on in zip(flat_u, flat_g, flat_p, selected, strict=True)
  ]
  return jax.tree.unflatten(treedef, out)


def hyperbolic_step(
  learning_rate: optax.ScalarOrSchedule,
  alpha: optax.ScalarOrSchedule = 0.1,
  beta: optax.ScalarOrSchedule = 1e-3,
  *,
  mask: masking.MaskOrFn = None,
  max_exponent: float = 5.0,
  max_weight_norm: float | None = None,
  sign_from: SignFrom = "x_half",
) -> optax.GradientTransformationExtraArgs:
  r"""The hyperbolic mirror step of HAM on its own, for hand-built chains.

  Use it as the last link after any optimizer, passing the raw gradient as the ``grad`` extra argument::

    tx = optax.chain(optax.sgd(lr, momentum=0.9), ham_optax.hyperbolic_step(lr, alpha=20.0))
    updates, state = tx.update(grads, state, params, grad=grads)

  (:func:`ham_optax.ham` does exactly this for you and needs no extra argument.) With
  :math:`u_k` the incoming update (the inner optimizer's step), :math:`x_{k+1/2} = x_k + u_k`, :math:`g_k` the raw
  gradient at :math:`x_k` and :math:`\eta_k` the learning rate at step :math:`k`, each selected leaf becomes

  .. math::
    x_{k+1} = x_{k+1/2} \odot \exp\Big(\operatorname{clip}\big(-\eta_k(\alpha\,\operatorname{sign}(s)\odot g_k
      + \beta),\ -c,\ c\big)\Big),

  with :math:`s = x_{k+1/2}` (``sign_from="x_half"``, the deployed "HYP*" variant) or :math:`s = x_k`
  (``sign_from="x"``, the analysed "GD;HYP" variant) and :math:`c` = ``max_exponent``. The returned update is
  :math:`x_{k+1} - x_k` in the params' dtype. The step never changes a sign, keeps exact zeros at zero and
  costs no memory beyond a step counter. In the continuous limit (:math:`\beta=0`) HAM follows
  :math:`\dot x = -(1+\alpha|x|)\nabla f(x)`, mirror descent with potential
  :math:`R_\alpha(x) = \sum_i [(1+\alpha|x_i|)\log(1+\alpha|x_i|) - \alpha|x_i|]/\alpha^2`.

  Stability: keep :math:`\alpha\,\eta\,|g|` well below 1; the clip at :math:`\pm c` bounds the damage of a bad
  step (a factor of at most :math:`e^c`) but does not make a too-large :math:`\alpha\eta` sensible.
  :func:`ham_optax.suggest_alpha` picks alpha for a model and optimizer; :func:`ham_optax.metrics.ham_diagnostics`
  shows whether it is too large.

  Args:
    learning_rate: a float or an optax schedule; use the inner optimizer's learning rate so that both are
      evaluated at the same step count (this transform counts its own updates from 0).
    alpha: strength of the hyperbolic geometry (any finite value; negative values reverse the bias), or a
      schedule of the step count. The default 0.1 is mild: the largest grid value that never diverged on
      any model, optimizer and lr measured. Choose a stronger one with :func:`ham_optax.suggest_alpha`. The paper's 200 (ResNet-50 on ImageNet, SGD lr 0.1) is
      :data:`ham_optax.PAPER_IMAGENET_ALPHA`; it diverges on small models with larger gradients.
    beta: multiplicative decay, a factor :math:`e^{-\eta\beta}` per step, or a schedule (e.g. to switch it off).
    mask: which leaves the step applies to: ``None`` for floating-point leaves with ``ndim >= 2``; a pytree of
      bools (same structure as params, or a prefix) or a callable ``params -> pytree``. Other leaves pass their
      incoming update through unchanged.
    max_exponent: clip of the exponent, > 0 (the published PyTorch wrapper uses 5).
    max_weight_norm: if set, each selected tensor's L2 norm after the step is clipped to this value (the published
      wrapper uses 1000). Off by default.
    sign_from: ``"x_half"`` (HYP*, default) or ``"x"`` (GD;HYP).

  Returns:
    An ``optax.GradientTransformationExtraArgs`` whose ``update`` requires ``params`` and the ``grad`` extra arg.

  References:
    Jacobs et al., *Hyperbolic Aware Minimization: Implicit Bias for Sparsity*, ICLR 2026, arXiv:2506.02630.
  """
  check_mirror_args(learning_rate, alpha, beta, max_exponent, max_weight_norm, sign_from)

  def init_fn(params):
    del params
    return HyperbolicStepState(count=jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None, *, grad=None, **extra_args):
    del extra_args
    if params is None:
      raise ValueError(optax_base.NO_PARAMS_MSG)
    if grad is None:
      raise ValueError(
        "hyperbolic_step needs the raw gradient: call update(updates, state, params, grad=grads), "
        "or use ham_optax.ham(inner, ...), which passes it for you."
      )
    lr, a, b = (h(state.count) if callable(h) else h for h in (learning_rate, alpha, beta))
    new_updates = mirror_updates(
      updates,
      grad,
      params,
      lr,
      a,
      b,
      mask=mask,
      max_exponent=max_exponent,
      max_weight_norm=max_weight_norm,
      sign_from=sign_from,
    )
    return new_updates, HyperbolicStepState(count=optax.safe_increment(state.count))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
