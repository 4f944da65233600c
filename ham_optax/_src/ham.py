"""HAM: any optax optimizer followed by the hyperbolic mirror step (arXiv:2506.02630, Algorithm 1, HYP*)."""

from __future__ import annotations

from typing import NamedTuple

import chex
import optax
from optax._src import base as optax_base

from ham_optax._src import hyperbolic, masking


class HamState(NamedTuple):
  """State of :func:`ham`: the step count (for the learning-rate schedule) and the inner optimizer's state."""

  count: chex.Array  # int32 scalar
  inner_state: optax.OptState


def ham(
  inner: optax.GradientTransformation,
  learning_rate: optax.ScalarOrSchedule,
  alpha: optax.ScalarOrSchedule = 0.1,
  beta: optax.ScalarOrSchedule = 1e-3,
  *,
  mask: masking.MaskOrFn = None,
  max_exponent: float = 5.0,
  max_weight_norm: float | None = None,
  sign_from: hyperbolic.SignFrom = "x_half",
) -> optax.GradientTransformationExtraArgs:
  r"""Hyperbolic Aware Minimization around any optax optimizer.

  For every step :math:`k` with raw gradient :math:`g_k` at :math:`x_k` and learning rate :math:`\eta_k`:

  .. math::
    x_{k+1/2} &= x_k + \mathrm{inner}(g_k) \\
    x_{k+1} &= x_{k+1/2} \odot \exp\Big(\operatorname{clip}\big(-\eta_k(\alpha\,\operatorname{sign}(x_{k+1/2})
      \odot g_k + \beta),\ -c,\ c\big)\Big)

  on the selected (``mask``) leaves; other leaves take the inner update alone. The mirror step reuses the raw
  gradient (no second backward pass) and adds no state beyond a step counter. Returns
  ``updates = x_{k+1} - x_k`` in the params' dtype, so it composes like any optax transform::

    tx = ham_optax.ham(optax.sgd(0.1, momentum=0.9), learning_rate=0.1, alpha=10.0, beta=1e-3)

  The continuous limit is :math:`\dot x = -(1 + \alpha|x|)\nabla f(x)`: the inverse metric is at least 1 (plain
  gradient flow's), so HAM moves and flips signs near zero at least as fast as GD while biasing towards sparse
  solutions (mirror potential :math:`R_\alpha`, L2 for :math:`\alpha\to 0`, L1-like for :math:`\alpha\to\infty`).

  Order matters: put gradient clipping or other gradient preprocessing *inside* ``inner`` (the mirror step
  always sees the raw gradient ``ham`` receives) and nothing after ``ham`` in a chain. Do not wrap ``ham`` in
  ``optax.masked`` (masked-out leaves would receive the raw gradient as an update); use ``mask=`` instead.

  Args:
    inner: the optimizer taking the first half-step (SGD, momentum, Adam, AdamW, a chain, SAM, ...).
    learning_rate: float or optax schedule for the mirror step; pass the same value/schedule as ``inner`` uses.
      Both count steps from 0, so a schedule is evaluated at the same step count.
    alpha: strength of the hyperbolic geometry. The default 0.1 is mild: the largest grid value that never diverged
      on any model, optimizer and lr measured; :func:`ham_optax.suggest_alpha` picks one for your model, optimizer and lr from a 20-step calibration
      run (``benchmarks/alpha_transfer.py``). The paper's and published wrapper's 200 (ResNet-50 on ImageNet,
      SGD lr 0.1) is :data:`ham_optax.PAPER_IMAGENET_ALPHA`; it diverges on small models with larger gradients.
    beta: multiplicative weight decay, a factor :math:`e^{-\eta\beta}` per step (default 1e-3). ``alpha`` and
      ``beta`` may also be optax schedules of the step count (e.g. to switch the decay off late in training).
    mask: ``None`` (floating-point leaves with ``ndim >= 2``), a pytree of bools, or a callable ``params -> pytree``.
    max_exponent: clip of the exponent (> 0); the published wrapper uses 5.
    max_weight_norm: optional per-tensor L2 norm cap after the step (published wrapper: 1000); off by default.
    sign_from: ``"x_half"`` (HYP*, deployed, default) or ``"x"`` (GD;HYP, the analysed variant).

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` requires ``params`` and forwards extra args to
    ``inner``.

  References:
    Jacobs, Gadhikar, Rubio-Madrigal, Burkholz. *Hyperbolic Aware Minimization: Implicit Bias for Sparsity*,
    ICLR 2026, arXiv:2506.02630.
  """
  if not isinstance(inner, optax.GradientTransformation) or not (
    callable(getattr(inner, "init", None)) and callable(getattr(inner, "update", None))
  ):
    raise TypeError(
      f"ham(inner=...) needs an optax GradientTransformation (e.g. optax.sgd(0.1)), got {type(inner).__name__}."
    )
  mirror = hyperbolic.hyperbolic_step(
    learning_rate,
    alpha,
    beta,
    mask=mask,
    max_exponent=max_exponent,
    max_weight_norm=max_weight_norm,
    sign_from=sign_from,
  )
  inner = optax.with_extra_args_support(inner)

  def init_fn(params):
    return HamState(count=mirror.init(params).count, inner_state=inner.init(params))

  def update_fn(updates, state, params=None, **extra_args):
    if params is None:
      raise ValueError(optax_base.NO_PARAMS_MSG)
    grads = updates
    inner_updates, inner_state = inner.update(updates, state.inner_state, params, **extra_args)
    new_updates, mirror_state = mirror.update(
      inner_updates, hyperbolic.HyperbolicStepState(state.count), params, grad=grads
    )
    return new_updates, HamState(count=mirror_state.count, inner_state=inner_state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
