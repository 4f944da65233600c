"""HAM's geometry as jit-able ``jax.numpy`` code (the overview is :mod:`ham_optax.geometry`'s docstring)."""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from ham_optax._src import checks

# Below this value of t = alpha * |x| the closed forms of R_alpha and its conjugate lose digits to
# cancellation; a Taylor series is used instead.
_SERIES_THRESHOLD = 1e-2


def inverse_metric_gd(x: ArrayLike) -> Array:
  """Inverse metric of gradient descent: :math:`g^{-1}(x) = 1` (flat geometry)."""
  return jnp.ones_like(jnp.asarray(x))


def inverse_metric_ham(x: ArrayLike, alpha: ArrayLike) -> Array:
  """Inverse metric of HAM (beta = 0): :math:`g^{-1}(x) = 1 + \\alpha|x| \\ge 1` (paper, Eq. 4 / Fig. 1).

  Example:
    >>> import numpy as np
    >>> from ham_optax import geometry
    >>> print(np.asarray(geometry.inverse_metric_ham(np.array([0.0, -0.5, 2.0]), alpha=4.0)))
    [1. 3. 9.]
  """
  checks.check_finite_values(alpha, "alpha", positive=True)
  return 1 + alpha * jnp.abs(jnp.asarray(x))


def inverse_metric_mw(x: ArrayLike, gamma: ArrayLike) -> Array:
  """Inverse metric of gradient descent on :math:`x = m \\odot w`: :math:`\\sqrt{4x^2 + \\gamma^2} = m^2 + w^2`,
  with ``gamma = m**2 - w**2`` conserved by gradient flow on ``(m, w)``."""
  checks.check_finite_values(gamma, "gamma", positive=True)
  x = jnp.asarray(x)
  return jnp.sqrt(4 * x**2 + jnp.asarray(gamma, x.dtype) ** 2)


def mirror_map(x: ArrayLike, alpha: ArrayLike) -> Array:
  """HAM's mirror map :math:`\\nabla R_\\alpha(x) = \\operatorname{sign}(x)\\log(1 + \\alpha|x|)/\\alpha` (GD's, the
  identity, as ``alpha -> 0``).

  Example:
    >>> import numpy as np
    >>> from ham_optax import geometry
    >>> u = geometry.mirror_map(np.array([-1.0, 0.0, 2.0]), alpha=10.0)
    >>> print(np.asarray(u).round(4))
    [-0.2398  0.      0.3045]
    >>> print(np.asarray(geometry.inverse_mirror_map(u, alpha=10.0)).round(4))
    [-1.  0.  2.]
  """
  checks.check_finite_values(alpha, "alpha", positive=True)
  x = jnp.asarray(x)
  return jnp.sign(x) * jnp.log1p(alpha * jnp.abs(x)) / alpha


def inverse_mirror_map(u: ArrayLike, alpha: ArrayLike) -> Array:
  """Inverse of :func:`mirror_map`: :math:`(\\nabla R_\\alpha)^{-1}(u) = \\operatorname{sign}(u)(e^{\\alpha|u|} - 1)/\\alpha`.

  This is also the gradient of the convex conjugate :math:`R_\\alpha^*` (:func:`conjugate_potential`).
  """
  checks.check_finite_values(alpha, "alpha", positive=True)
  u = jnp.asarray(u)
  return jnp.sign(u) * jnp.expm1(alpha * jnp.abs(u)) / alpha


def _small_t(t: Array, series: Callable[[Array], Array], closed: Callable[[Array], Array]) -> Array:
  """``series(t)`` where ``0 <= t < _SERIES_THRESHOLD`` (five terms: < 1e-16 relative error), else ``closed(t)``."""
  small = t < _SERIES_THRESHOLD
  return jnp.where(small, series(jnp.where(small, t, 0.0)), closed(jnp.where(small, 1.0, t)))


def potential(x: ArrayLike, alpha: ArrayLike) -> Array:
  """HAM's Bregman potential (Legendre function), summed over all entries of ``x``.

  .. math::

      R_\\alpha(x) = \\sum_i \\frac{(1 + \\alpha|x_i|)\\log(1 + \\alpha|x_i|) - \\alpha|x_i|}{\\alpha^2}.

  Limits: :math:`R_\\alpha(x) \\to \\|x\\|_2^2/2` as :math:`\\alpha \\to 0`;
  :math:`\\alpha R_\\alpha(x)/\\log\\alpha \\to \\|x\\|_1` as :math:`\\alpha \\to \\infty`.
  ``jax.grad(potential)(x, alpha)`` equals :func:`mirror_map`.

  Example:
    >>> import numpy as np
    >>> from ham_optax import geometry
    >>> print(np.asarray(geometry.potential(np.array([0.5, -0.5]), alpha=1.0)).round(6))
    0.216395
  """
  checks.check_finite_values(alpha, "alpha", positive=True)
  # (1 + t) log(1 + t) - t = sum_{k>=2} (-1)^k t^k / (k (k - 1))
  series = lambda t: t**2 * (1 / 2 - t * (1 / 6 - t * (1 / 12 - t * (1 / 20 - t / 30))))  # noqa: E731
  h = _small_t(alpha * jnp.abs(jnp.asarray(x)), series, lambda t: (1 + t) * jnp.log1p(t) - t)
  return jnp.sum(h) / alpha**2


def conjugate_potential(u: ArrayLike, alpha: ArrayLike) -> Array:
  """Convex conjugate of :func:`potential`, summed over entries.

  .. math::

      R_\\alpha^*(u) = \\sum_i \\frac{e^{\\alpha|u_i|} - 1 - \\alpha|u_i|}{\\alpha^2},
      \\qquad \\nabla R_\\alpha^* = (\\nabla R_\\alpha)^{-1}.
  """
  checks.check_finite_values(alpha, "alpha", positive=True)
  series = lambda s: s**2 * (1 / 2 + s * (1 / 6 + s * (1 / 24 + s * (1 / 120 + s / 720))))  # noqa: E731
  return jnp.sum(_small_t(alpha * jnp.abs(jnp.asarray(u)), series, lambda s: jnp.expm1(s) - s)) / alpha**2


def bregman_divergence(x: ArrayLike, x0: ArrayLike, alpha: ArrayLike) -> Array:
  """Bregman divergence of HAM's potential.

  .. math::

      D_{R_\\alpha}(x, x_0) = R_\\alpha(x) - R_\\alpha(x_0) - \\langle \\nabla R_\\alpha(x_0), x - x_0 \\rangle
      \\;\\ge 0,

  zero iff ``x == x0``. For ``alpha -> 0`` it tends to :math:`\\|x - x_0\\|^2/2`.
  """
  x = jnp.asarray(x)
  x0 = jnp.asarray(x0)
  if x.shape != x0.shape:
    raise ValueError(f"x and x0 must have the same shape, got {x.shape} and {x0.shape}.")
  return potential(x, alpha) - potential(x0, alpha) - jnp.sum(mirror_map(x0, alpha) * (x - x0))


def mw_mirror_map(x: ArrayLike, gamma: ArrayLike) -> Array:
  """Mirror map of gradient descent on :math:`x = m \\odot w`: :math:`\\tfrac12\\operatorname{arcsinh}(2x/\\gamma)`.

  Its derivative is ``1 / inverse_metric_mw(x, gamma)``.
  """
  checks.check_finite_values(gamma, "gamma", positive=True)
  return 0.5 * jnp.arcsinh(2 * jnp.asarray(x) / gamma)


def mw_inverse_mirror_map(u: ArrayLike, gamma: ArrayLike) -> Array:
  """Inverse of :func:`mw_mirror_map`: :math:`x = \\tfrac{\\gamma}{2}\\sinh(2u)`."""
  checks.check_finite_values(gamma, "gamma", positive=True)
  return 0.5 * gamma * jnp.sinh(2 * jnp.asarray(u))


def mw_potential(x: ArrayLike, gamma: ArrayLike) -> Array:
  """Hyperbolic-entropy potential of :math:`m \\odot w`, summed over entries.

  .. math::

      R^{m\\odot w}_\\gamma(x) = \\sum_i \\Big[\\frac{x_i}{2}\\operatorname{arcsinh}\\frac{2x_i}{\\gamma}
      - \\frac{\\sqrt{4x_i^2 + \\gamma^2} - \\gamma}{4}\\Big].
  """
  checks.check_finite_values(gamma, "gamma", positive=True)
  x = jnp.asarray(x)
  return jnp.sum(0.5 * x * jnp.arcsinh(2 * x / gamma) - (jnp.sqrt(4 * x**2 + gamma**2) - gamma) / 4)
