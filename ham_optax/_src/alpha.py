"""Choosing HAM's alpha for a given model, optimizer and learning rate (a short calibration run).

HAM's mirror step changes a weight by ``x_half * (exp(e) - 1) ~ -lr * alpha * |x| * g`` per step, next to the
inner optimizer's step ``u``. How much HAM changes training, and whether it stays stable, depends on the ratio
of the two, which in turn depends on the model's width, initialisation, normalisation and on the optimizer
(SGD's step scales with ``|g|``, Adam's does not). :func:`suggest_alpha` measures that ratio on a few steps of
the inner optimizer and returns the alpha at which the mirror step is a fixed fraction of the inner step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ham_optax._src import checks, masking

__all__ = ["DEFAULT_TARGET_RATIO", "PAPER_IMAGENET_ALPHA", "suggest_alpha"]

PAPER_IMAGENET_ALPHA = 200.0
"""The paper's (and the authors' PyTorch wrapper's) alpha, tuned for ResNet-50 on ImageNet with BatchNorm and
SGD + momentum at lr 0.1. It diverges on small models with larger per-weight gradients; see
:func:`suggest_alpha`."""

DEFAULT_TARGET_RATIO = 0.2
"""Default ``target_ratio`` of :func:`suggest_alpha`: the mirror step's norm as a fraction of the inner step's."""


def _masked_sq_norm(tree: Any, selected: tuple[bool, ...]) -> jax.Array:
  leaves = [
    jnp.sum(jnp.square(x.astype(jnp.float32)))
    for x, on in zip(jax.tree.leaves(tree), selected, strict=True)
    if on
  ]
  return sum(leaves, start=jnp.zeros([], jnp.float32))


def suggest_alpha(
  loss_fn: Callable[[Any, Any], jax.Array],
  params: Any,
  batches: Iterable[Any],
  inner: optax.GradientTransformation,
  learning_rate: optax.ScalarOrSchedule,
  *,
  target_ratio: float = DEFAULT_TARGET_RATIO,
  num_steps: int = 20,
  mask: masking.MaskOrFn = None,
) -> float:
  r"""An alpha for HAM from a short run of the inner optimizer: the mirror step is ``target_ratio`` of its step.

  Runs ``num_steps`` steps of ``inner`` alone (plain training, no HAM) from ``params`` on the first ``num_steps``
  of ``batches`` and records, over the ``mask``-selected leaves (HAM's default: kernels), the norm of the inner
  update :math:`\|u_k\|` and of :math:`\eta_k\,|x_k| \odot g_k`, the size of HAM's mirror step per unit alpha
  (the mirror step is :math:`x_{k+1/2}(e^{e_k} - 1) \approx -\eta_k\alpha\,|x_k| \odot \operatorname{sign}(x)g_k`).
  Then

  .. math::
    \alpha = \rho \cdot \operatorname{median}_{k \ge K/2}
      \frac{\|u_k\|_2}{\eta_k\,\big\|\,|x_k| \odot g_k\big\|_2},

  with :math:`\rho` = ``target_ratio`` (the median is over the second half of the steps, once momentum or Adam's
  moments have warmed up). The result is an ordinary scalar alpha for :func:`ham_optax.ham`: the update rule is
  the paper's HAM unchanged. For SGD without momentum :math:`u = -\eta g` and the rule reads
  :math:`\alpha \approx \rho / \overline{|x|}` (the inverse metric :math:`1 + \alpha|x|` stays near
  :math:`1 + \rho`); for momentum SGD and Adam it accounts for their larger or gradient-normalised steps, so the
  same :math:`\rho` transfers between models and optimizers (``benchmarks/alpha_transfer.py`` measures it).

  The cost is ``num_steps`` gradient evaluations (20 by default: under 5 % of a 30-epoch run with 28 or more
  steps per epoch), and the result is deterministic given ``params`` and ``batches``.

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar loss`` (differentiable in ``params``).
    params: the initial parameters (a pytree).
    batches: an iterable of at least ``num_steps`` batches, passed to ``loss_fn`` as is.
    inner: the optimizer HAM will wrap (e.g. ``optax.sgd(lr, momentum=0.9)``).
    learning_rate: the learning rate (or schedule) HAM will use; a schedule is evaluated at steps
      ``0 .. num_steps - 1``.
    target_ratio: :math:`\rho > 0`, the mirror step's norm as a fraction of the inner step's.
    num_steps: number of calibration steps, >= 2.
    mask: the leaves HAM's mirror step applies to, as for :func:`ham_optax.ham` (``None``: kernels).

  Returns:
    alpha as a Python float.

  Raises:
    ValueError: on a bad argument, too few batches, or a calibration run that produced no finite ratio.

  Example:
    >>> import jax, jax.numpy as jnp, optax, ham_optax
    >>> kx, ky = jax.random.split(jax.random.key(0))
    >>> x = jax.random.normal(kx, (64, 8)); y = x @ jnp.arange(8.0)
    >>> params = {"w": 0.1 * jax.random.normal(ky, (8, 1))}
    >>> loss = lambda p, b: jnp.mean((b[0] @ p["w"] - b[1][:, None]) ** 2)
    >>> inner = optax.sgd(0.01, momentum=0.9)
    >>> alpha = ham_optax.suggest_alpha(loss, params, [(x, y)] * 20, inner, 0.01)
    >>> tx = ham_optax.ham(inner, 0.01, alpha=alpha, beta=0.0)
    >>> alpha > 0
    True
  """
  checks.check_scalar(target_ratio, "target_ratio", lo=0.0, lo_open=True)
  checks.check_scalar(learning_rate, "learning_rate", lo=0.0, lo_open=True, schedule_ok=True)
  checks.check_int(num_steps, "num_steps", 2, owner="suggest_alpha")
  checks.check_inner(inner, "suggest_alpha")
  selected = masking.resolve_mask(mask, params)
  if not any(selected):
    raise ValueError("suggest_alpha: the mask selects no parameter; HAM would do nothing.")

  @jax.jit
  def step(p, state, batch, lr):
    g = jax.grad(loss_fn)(p, batch)
    u, state = inner.update(g, state, p)
    mirror = lr * jnp.sqrt(_masked_sq_norm(jax.tree.map(lambda x, gi: jnp.abs(x) * gi, p, g), selected))
    return optax.apply_updates(p, u), state, jnp.sqrt(_masked_sq_norm(u, selected)), mirror

  state = inner.init(params)
  p = params
  ratios = []
  it = iter(batches)
  for k in range(num_steps):
    try:
      batch = next(it)
    except StopIteration:
      raise ValueError(f"suggest_alpha: batches ran out after {k} of num_steps={num_steps}.") from None
    lr = learning_rate(k) if callable(learning_rate) else learning_rate
    p, state, u_norm, mirror_norm = step(p, state, batch, jnp.asarray(lr, jnp.float32))
    ratios.append(float(u_norm) / float(mirror_norm) if float(mirror_norm) > 0 else float("nan"))
  tail = np.asarray(ratios[num_steps // 2 :])
  tail = tail[np.isfinite(tail)]
  if tail.size == 0:
    raise ValueError(
      "suggest_alpha: the calibration run gave no finite step ratio (zero gradients or a diverging inner "
      "optimizer); check loss_fn and the learning rate."
    )
  return float(target_ratio * np.median(tail))
