"""Weight-decay switch-off schedules (Jacobs, Zhou & Burkholz, "Mirror, Mirror of the Flow", ICML 2025).

Explicit regularisation leaves a lasting change in the implicit bias even after it is removed, so decay can be
switched off partway through training (as PILoT does); the same holds for HAM's multiplicative decay ``beta``.
The helpers return ordinary :data:`optax.Schedule` callables, e.g. for ``ham_optax.ham(inner, lr, beta=sched)``.
"""

from __future__ import annotations

import jax.numpy as jnp
import optax

from ham_optax._src import checks


def switch_off(value: optax.ScalarOrSchedule, switch_step: int) -> optax.Schedule:
  """Returns a schedule equal to ``value`` before ``switch_step`` and 0 from then on.

  .. math::

    s(k) = \\begin{cases} v(k) & k < k_\\text{off} \\\\ 0 & k \\ge k_\\text{off} \\end{cases}

  The step count ``k`` starts at 0 (optax convention), so ``switch_step=T`` keeps ``value`` for exactly the first
  ``T`` updates.

  Args:
    value: the regularisation strength (float) or an optax schedule of it.
    switch_step: first step (0-based) at which the schedule returns 0.

  Example:
    >>> from ham_optax import schedules
    >>> beta = schedules.switch_off(0.5, switch_step=2)
    >>> print([float(beta(k)) for k in range(4)])
    [0.5, 0.5, 0.0, 0.0]
  """
  checks.check_scalar(value, "value", schedule_ok=True, owner="switch_off")
  switch_step = checks.check_int(switch_step, "switch_step", 0, owner="switch_off")

  def schedule(count: optax.Numeric) -> optax.Numeric:
    v = jnp.asarray(value(count) if callable(value) else jnp.asarray(value, dtype=jnp.float32))
    return jnp.where(jnp.asarray(count) < switch_step, v, jnp.zeros_like(v))

  return schedule


def switch_off_fraction(value: optax.ScalarOrSchedule, total_steps: int, fraction: float) -> optax.Schedule:
  """Returns :func:`switch_off` with ``switch_step = round(fraction * total_steps)``.

  Args:
    value: the regularisation strength (float) or an optax schedule of it.
    total_steps: total number of optimizer updates in the run (> 0).
    fraction: fraction of training (in ``[0, 1]``) during which ``value`` is applied.

  Example:
    >>> from ham_optax import schedules
    >>> sched = schedules.switch_off_fraction(0.5, total_steps=10, fraction=0.3)
    >>> print([float(sched(k)) for k in (0, 2, 3, 9)])
    [0.5, 0.5, 0.0, 0.0]
  """
  total_steps = checks.check_int(total_steps, "total_steps", 1, owner="switch_off_fraction")
  fraction = checks.check_scalar(fraction, "fraction", lo=0.0, hi=1.0, owner="switch_off_fraction")
  return switch_off(value, int(round(float(fraction) * int(total_steps))))
