"""HAM: any optax optimizer followed by the hyperbolic mirror step (arXiv:2506.02630, Algorithm 1, HYP*)."""

from __future__ import annotations

from typing import NamedTuple

import chex
import optax

from ham_optax._src import checks, hyperbolic, masking


class HamState(NamedTuple):
  """State of :func:`ham`.

  Attributes:
    mirror_state: the mirror step's :class:`HyperbolicStepState` (the step count of the schedules).
    inner_state: the inner optimizer's state.
  """

  mirror_state: hyperbolic.HyperbolicStepState
  inner_state: optax.OptState

  @property
  def count(self) -> chex.Array:
    """The number of updates so far (the mirror step's count)."""
    return self.mirror_state.count


@hyperbolic.document_mirror_args
def ham(
  inner: optax.GradientTransformation,
  learning_rate: optax.ScalarOrSchedule,
  alpha: hyperbolic.AlphaOrTree = 0.1,
  beta: optax.ScalarOrSchedule = 1e-3,
  *,
  mask: masking.MaskOrFn = None,
  max_exponent: float = 5.0,
  max_weight_norm: float | None = None,
  sign_from: hyperbolic.SignFrom = "x_half",
  max_weight_norm_scope: hyperbolic.NormScope = "masked",
) -> optax.GradientTransformationExtraArgs:
  r"""Hyperbolic Aware Minimization around any optax optimizer.

  For every step :math:`k` with raw gradient :math:`g_k` at :math:`x_k` and learning rate :math:`\eta_k`:

  .. math::
    x_{k+1/2} &= x_k + \mathrm{inner}(g_k) \\
    x_{k+1} &= x_{k+1/2} \odot \exp\Big(\operatorname{clip}\big(-\eta_k(\alpha\,\operatorname{sign}(x_{k+1/2})
      \odot g_k + \beta),\ -c,\ c\big)\Big)

  on the selected (``mask``) leaves; other leaves take the inner update alone. The mirror step reuses the raw
  gradient (no second backward pass). Returns ``updates = x_{k+1} - x_k`` in the params' dtype, so it composes
  like any optax transform.

  {mirror_notes}

  Order matters: put gradient clipping or other gradient preprocessing *inside* ``inner`` (the mirror step
  always sees the raw gradient ``ham`` receives) and nothing after ``ham`` in a chain. Do not wrap ``ham`` in
  ``optax.masked`` (masked-out leaves would receive the raw gradient as an update); use ``mask=`` instead.

  Args:
    inner: the optimizer taking the first half-step (SGD, momentum, Adam, AdamW, a chain, SAM, ...).
    learning_rate: float or optax schedule for the mirror step: the one ``inner`` uses (both count from step 0).
    {mirror_args}

  Returns:
    An ``optax.GradientTransformationExtraArgs``: ``update`` needs ``params``, forwards extra args to ``inner``.

  Example:
    >>> import jax.numpy as jnp, optax, ham_optax
    >>> params = {"w": jnp.array([[1.0, -2.0], [0.5, 0.0]]), "b": jnp.array([0.5, 0.25])}
    >>> grads = {"w": jnp.array([[0.5, 0.5], [-1.0, 1.0]]), "b": jnp.array([1.25, -2.5])}
    >>> tx = ham_optax.ham(optax.sgd(0.1), learning_rate=0.1, alpha=2.0, beta=0.0)
    >>> updates, state = tx.update(grads, tx.init(params), params)
    >>> new = optax.apply_updates(params, updates)
    >>> print(new["w"].round(4))  # mirror step on the kernel (ndim >= 2)
    [[ 0.8596 -2.2656]
     [ 0.7328 -0.1221]]
    >>> print(new["b"].round(4))  # plain SGD on the bias
    [0.375 0.5  ]

  References:
    Jacobs et al., *Hyperbolic Aware Minimization: Implicit Bias for Sparsity*, ICLR 2026, arXiv:2506.02630.
  """
  checks.check_inner(inner, "ham")
  mirror = hyperbolic.hyperbolic_step(
    learning_rate,
    alpha,
    beta,
    mask=mask,
    max_exponent=max_exponent,
    max_weight_norm=max_weight_norm,
    sign_from=sign_from,
    max_weight_norm_scope=max_weight_norm_scope,
  )
  inner = optax.with_extra_args_support(inner)

  def init_fn(params):
    return HamState(mirror_state=mirror.init(params), inner_state=inner.init(params))

  def update_fn(updates, state, params=None, **extra_args):
    if params is None:
      raise ValueError(checks.NO_PARAMS_MSG)
    checks.check_trees_match("ham", params=params, grad=updates)  # before the inner optimizer runs
    inner_updates, inner_state = inner.update(updates, state.inner_state, params, **extra_args)
    new_updates, mirror_state = mirror.update(inner_updates, state.mirror_state, params, grad=updates)
    return new_updates, HamState(mirror_state=mirror_state, inner_state=inner_state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
