"""HAM around optax's common optimizers, sharing one learning rate (or schedule) between both half-steps.

Signatures mirror `optax.sgd`, `optax.adam` and `optax.adamw`, plus HAM's ``alpha``, ``beta`` and ``mask``.
"""

from __future__ import annotations

from typing import Any

import optax

from ham_optax._src import hyperbolic, masking
from ham_optax._src.ham import ham


@hyperbolic.document_mirror_args
def ham_sgd(
  learning_rate: optax.ScalarOrSchedule,
  momentum: float | None = None,
  nesterov: bool = False,
  accumulator_dtype: Any | None = None,
  *,
  alpha: hyperbolic.AlphaOrTree = 0.1,
  beta: optax.ScalarOrSchedule = 1e-3,
  mask: masking.MaskOrFn = None,
  max_exponent: float = 5.0,
  max_weight_norm: float | None = None,
  sign_from: hyperbolic.SignFrom = "x_half",
  max_weight_norm_scope: hyperbolic.NormScope = "masked",
) -> optax.GradientTransformationExtraArgs:
  r"""HAM with SGD (optionally heavy-ball or Nesterov momentum) as the inner optimizer.

  ``ham(optax.sgd(learning_rate, momentum, nesterov, accumulator_dtype), learning_rate, alpha, beta, ...)``: one
  learning rate (or schedule) drives both half-steps. Per step, with :math:`u_k` SGD's update:

  .. math::
    x_{k+1} = (x_k + u_k) \odot \exp\big(\operatorname{clip}(-\eta_k(\alpha\operatorname{sign}(x_k + u_k)
      \odot g_k + \beta), -c, c)\big)

  on the masked leaves (the other leaves take :math:`x_k + u_k`).

  Args:
    learning_rate: float or optax schedule, shared by SGD and the mirror step.
    momentum: optional momentum (as in ``optax.sgd``).
    nesterov: Nesterov momentum (as in ``optax.sgd``).
    accumulator_dtype: dtype of the momentum accumulator (as in ``optax.sgd``).
    {mirror_args}

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` requires ``params``.

  References:
    Jacobs, Gadhikar, Rubio-Madrigal, Burkholz. *Hyperbolic Aware Minimization: Implicit Bias for Sparsity*,
    ICLR 2026, arXiv:2506.02630.

  Example:
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> import optax
    >>> import ham_optax
    >>> params = {"w": jnp.array([[1.0, -2.0]])}
    >>> grads = {"w": jnp.array([[0.5, 0.5]])}
    >>> tx = ham_optax.ham_sgd(0.1, momentum=0.9, alpha=2.0, beta=0.0)
    >>> updates, state = tx.update(grads, tx.init(params), params)
    >>> print(np.asarray(optax.apply_updates(params, updates)["w"]).round(4))
    [[ 0.8596 -2.2656]]
  """
  return ham(
    optax.sgd(learning_rate, momentum, nesterov, accumulator_dtype),
    learning_rate,
    alpha,
    beta,
    mask=mask,
    max_exponent=max_exponent,
    max_weight_norm=max_weight_norm,
    sign_from=sign_from,
    max_weight_norm_scope=max_weight_norm_scope,
  )


@hyperbolic.document_mirror_args
def ham_adam(
  learning_rate: optax.ScalarOrSchedule,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-8,
  eps_root: float = 0.0,
  mu_dtype: Any | None = None,
  *,
  nesterov: bool = False,
  alpha: hyperbolic.AlphaOrTree = 0.1,
  beta: optax.ScalarOrSchedule = 1e-3,
  mask: masking.MaskOrFn = None,
  max_exponent: float = 5.0,
  max_weight_norm: float | None = None,
  sign_from: hyperbolic.SignFrom = "x_half",
  max_weight_norm_scope: hyperbolic.NormScope = "masked",
) -> optax.GradientTransformationExtraArgs:
  r"""HAM with Adam as the inner optimizer.

  ``ham(optax.adam(learning_rate, b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov), learning_rate, alpha,
  beta, ...)``: one learning rate (or schedule) drives both half-steps; the mirror step multiplies the Adam
  proposal :math:`x_{k+1/2}` by :math:`\exp(\operatorname{clip}(-\eta_k(\alpha\operatorname{sign}(x_{k+1/2})
  \odot g_k + \beta), -c, c))` on the masked leaves, using the raw gradient :math:`g_k`.

  Args:
    learning_rate: float or optax schedule, shared by Adam and the mirror step.
    b1: Adam's first-moment decay.
    b2: Adam's second-moment decay.
    eps: added to the root of the second moment.
    eps_root: added to the second moment inside the root.
    mu_dtype: dtype of the first moment.
    nesterov: Nesterov-style Adam (NAdam), as in ``optax.adam``.
    {mirror_args}

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` requires ``params``.

  References:
    Jacobs, Gadhikar, Rubio-Madrigal, Burkholz. *Hyperbolic Aware Minimization: Implicit Bias for Sparsity*,
    ICLR 2026, arXiv:2506.02630.

  Example:
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> import optax
    >>> import ham_optax
    >>> params = {"w": jnp.array([[1.0, -2.0]])}
    >>> grads = {"w": jnp.array([[0.5, 0.5]])}
    >>> tx = ham_optax.ham_adam(0.1, alpha=2.0, beta=0.0)
    >>> updates, state = tx.update(grads, tx.init(params), params)
    >>> print(np.asarray(optax.apply_updates(params, updates)["w"]).round(4))
    [[ 0.8144 -2.3209]]
  """
  return ham(
    optax.adam(learning_rate, b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
    learning_rate,
    alpha,
    beta,
    mask=mask,
    max_exponent=max_exponent,
    max_weight_norm=max_weight_norm,
    sign_from=sign_from,
    max_weight_norm_scope=max_weight_norm_scope,
  )


@hyperbolic.document_mirror_args
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
  alpha: hyperbolic.AlphaOrTree = 0.1,
  beta: optax.ScalarOrSchedule = 1e-3,
  mask: masking.MaskOrFn = None,
  max_exponent: float = 5.0,
  max_weight_norm: float | None = None,
  sign_from: hyperbolic.SignFrom = "x_half",
  max_weight_norm_scope: hyperbolic.NormScope = "masked",
) -> optax.GradientTransformationExtraArgs:
  r"""HAM with AdamW as the inner optimizer.

  ``ham(optax.adamw(learning_rate, b1, b2, eps, eps_root, mu_dtype, weight_decay=weight_decay,
  mask=weight_decay_mask, nesterov=nesterov), learning_rate, alpha, beta, ...)``: one learning rate (or
  schedule) drives both half-steps; the mirror step multiplies the AdamW proposal :math:`x_{k+1/2}` by
  :math:`\exp(\operatorname{clip}(-\eta_k(\alpha\operatorname{sign}(x_{k+1/2}) \odot g_k + \beta), -c, c))` on
  the masked leaves. ``optax.adamw``'s own ``mask`` (which leaves get weight decay) is called
  ``weight_decay_mask`` here, since ``mask`` selects the leaves of HAM's mirror step, as in every other
  ham_optax factory.

  Args:
    learning_rate: float or optax schedule, shared by AdamW and the mirror step.
    b1: Adam's first-moment decay.
    b2: Adam's second-moment decay.
    eps: added to the root of the second moment.
    eps_root: added to the second moment inside the root.
    mu_dtype: dtype of the first moment.
    weight_decay: AdamW's decoupled weight decay (float or schedule).
    weight_decay_mask: which leaves AdamW decays (``optax.adamw``'s ``mask``).
    nesterov: Nesterov-style Adam, as in ``optax.adamw``.
    {mirror_args}

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` requires ``params``.

  References:
    Jacobs, Gadhikar, Rubio-Madrigal, Burkholz. *Hyperbolic Aware Minimization: Implicit Bias for Sparsity*,
    ICLR 2026, arXiv:2506.02630.

  Example:
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> import optax
    >>> import ham_optax
    >>> params = {"w": jnp.array([[1.0, -2.0]])}
    >>> grads = {"w": jnp.array([[0.5, 0.5]])}
    >>> tx = ham_optax.ham_adamw(0.1, weight_decay=0.0, alpha=2.0, beta=0.0)
    >>> updates, state = tx.update(grads, tx.init(params), params)
    >>> print(np.asarray(optax.apply_updates(params, updates)["w"]).round(4))
    [[ 0.8144 -2.3209]]
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
    max_weight_norm_scope=max_weight_norm_scope,
  )
