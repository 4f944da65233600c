"""HAM around optax's common optimizers, sharing one learning rate (or schedule) between both half-steps.

Signatures mirror `optax.sgd`, `optax.adam` and `optax.adamw`, plus HAM's ``alpha``, ``beta`` and ``mask``.
"""

from __future__ import annotations

from typing import Any

import optax

from ham_optax._src import hyperbolic, masking
from ham_optax._src.ham import ham

_DOC_TAIL = """
  HAM arguments (see :func:`ham_optax.ham`): ``alpha`` (hyperbolic strength, default 0.1; see
  :func:`ham_optax.suggest_alpha`), ``beta``
  (multiplicative decay, default 1e-3), ``mask`` (leaves the mirror step applies to; default: floating-point
  leaves with ndim >= 2), ``max_exponent``, ``max_weight_norm``, ``sign_from``.

  References: Jacobs et al., ICLR 2026, arXiv:2506.02630.
"""


def ham_sgd(
  learning_rate: optax.ScalarOrSchedule,
  momentum: float | None = None,
  nesterov: bool = False,
  accumulator_dtype: Any | None = None,
  *,
  alpha: float = 0.1,
  beta: float = 1e-3,
  mask: masking.MaskOrFn = None,
  max_exponent: float = 5.0,
  max_weight_norm: float | None = None,
  sign_from: hyperbolic.SignFrom = "x_half",
) -> optax.GradientTransformationExtraArgs:
  """HAM with SGD (optionally heavy-ball or Nesterov momentum) as the inner optimizer."""
  return ham(
    optax.sgd(learning_rate, momentum, nesterov, accumulator_dtype),
    learning_rate,
    alpha,
    beta,
    mask=mask,
    max_exponent=max_exponent,
    max_weight_norm=max_weight_norm,
    sign_from=sign_from,
  )


def ham_adam(
  learning_rate: optax.ScalarOrSchedule,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-8,
  eps_root: float = 0.0,
  mu_dtype: Any | None = None,
  *,
  nesterov: bool = False,
  alpha: float = 0.1,
  beta: float = 1e-3,
  mask: masking.MaskOrFn = None,
  max_exponent: float = 5.0,
  max_weight_norm: float | None = None,
  sign_from: hyperbolic.SignFrom = "x_half",
) -> optax.GradientTransformationExtraArgs:
  """HAM with Adam as the inner optimizer."""
  return ham(
    optax.adam(learning_rate, b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
    learning_rate,
    alpha,
    beta,
    mask=mask,
    max_exponent=max_exponent,
    max_weight_norm=max_weight_norm,
    sign_from=sign_from,
  )


def ham_adamw(
  learning_rate: optax.ScalarOrSchedule,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-8,
  eps_root: float = 0.0,
  mu_dtype: Any | None = None,
  weight_decay: optax.ScalarOrSchedule = 1e-4,
  weight_decay_mask: masking.MaskOrFn = None,
  *,
  nesterov: bool = False,
  alpha: float = 0.1,
  beta: float = 1e-3,
  mask: masking.MaskOrFn = None,
  max_exponent: float = 5.0,
  max_weight_norm: float | None = None,
  sign_from: hyperbolic.SignFrom = "x_half",
) -> optax.GradientTransformationExtraArgs:
  """HAM with AdamW as the inner optimizer.

  ``optax.adamw``'s own ``mask`` (which leaves get weight decay) is called ``weight_decay_mask`` here, since
  ``mask`` selects the leaves of HAM's mirror step, as in every other ham_optax factory.
  """
  return ham(
    optax.adamw(
      learning_rate,
      b1,
      b2,
      eps,
      eps_root,
      mu_dtype,
      weight_decay=weight_decay,
      mask=weight_decay_mask,
      nesterov=nesterov,
    ),
    learning_rate,
    alpha,
    beta,
    mask=mask,
    max_exponent=max_exponent,
    max_weight_norm=max_weight_norm,
    sign_from=sign_from,
  )


for _f in (ham_sgd, ham_adam, ham_adamw):
  _f.__doc__ = (_f.__doc__ or "") + "\n" + _DOC_TAIL
del _f
