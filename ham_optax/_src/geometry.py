"""HAM's geometry as jit-able ``jax.numpy`` code (the overview is :mod:`ham_optax.geometry`'s docstring)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from ham_optax._src import checks

# Below this value of |t| (t = alpha * |x|) the closed forms of R_alpha, its conjugate and its Bregman divergence
# lose digits to cancellation (about 2 eps / |t| relative); a Taylor series is used instead. Twenty terms from t^2
# on: the first one left out is below 1e-20 of the sum there.
_SERIES_THRESHOLD = 1e-1
_H = [(-1) ** k / (k * (k - 1)) for k in range(2, 22)]  # (1 + t) log(1 + t) - t = sum_k _H[k - 2] t^k
_G = [(-1) ** k / k for k in range(2, 22)]  # t - log(1 + t)
_E = [1 / math.factorial(k) for k in range(2, 22)]  # e^t - 1 - t


def _floating(x: ArrayLike, value: ArrayLike, name: str) -> Array:
  """``x`` as a floating array (integers in JAX's default float dtype), with ``value`` (alpha or gamma) checked:
  finite, > 0, and a scalar or per-entry values that broadcast to ``x``'s shape."""
  checks.check_finite_values(value, name, positive=True)
  x = checks.floating_array(x)
  checks.check_broadcasts(value, name, x.shape)
  return x


def _series(t: Array, coefficients: Sequence[float]) -> Array:
  """``sum_k coefficients[k - 2] * t**k`` over ``k >= 2`` (Horner)."""
  acc = jnp.zeros_like(t)
  for c in reversed(coefficients):
    acc = acc * t + c
  return t * t * acc


def _small_t(t: Array, coefficients: Sequence[float], closed: Callable[[Array], Array]) -> Array:
  """The series of ``coefficients`` where ``|t| < _SERIES_THRESHOLD``, else ``closed(t)``."""
  small = jnp.abs(t) < _SERIES_THRESHOLD
  return jnp.where(small, _series(jnp.where(small, t, 0.0), coefficients), closed(jnp.where(small, 1.0, t)))


def _h(t: Array) -> Array:
  """``(1 + t) log(1 + t) - t`` for ``t > -1``, written ``L + t (L - 1)`` with ``L = log1p(t)`` (inf at inf)."""
  return _small_t(t, _H, lambda t: jnp.log1p(t) + t * (jnp.log1p(t) - 1))


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
  return 1 + alpha * jnp.abs(_floating(x, alpha, "alpha"))


def inverse_metric_mw(x: ArrayLike, gamma: ArrayLike) -> Array:
  """Inverse metric of gradient descent on :math:`x = m \\odot w`: :math:`\\sqrt{4x^2 + \\gamma^2} = m^2 + w^2`,
  with ``gamma = m**2 - w**2`` conserved by gradient flow on ``(m, w)``."""
  x = _floating(x, gamma, "gamma")
  return 2 * jnp.hypot(x, jnp.asarray(gamma, x.dtype) / 2)  # hypot: no overflow in 4 x^2


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
  x = _floating(x, alpha, "alpha")
  return jnp.sign(x) * jnp.log1p(alpha * jnp.abs(x)) / alpha


def inverse_mirror_map(u: ArrayLike, alpha: ArrayLike) -> Array:
  """Inverse of :func:`mirror_map`: :math:`(\\nabla R_\\alpha)^{-1}(u) = \\operatorname{sign}(u)(e^{\\alpha|u|} - 1)/\\alpha`.

  This is also the gradient of the convex conjugate :math:`R_\\alpha^*` (:func:`conjugate_potential`).
  """
  u = _floating(u, alpha, "alpha")
  return jnp.sign(u) * jnp.expm1(alpha * jnp.abs(u)) / alpha


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
  return jnp.sum(_h(alpha * jnp.abs(_floating(x, alpha, "alpha"))) / alpha**2)


def conjugate_potential(u: ArrayLike, alpha: ArrayLike) -> Array:
  """Convex conjugate of :func:`potential`, summed over entries.

  .. math::

      R_\\alpha^*(u) = \\sum_i \\frac{e^{\\alpha|u_i|} - 1 - \\alpha|u_i|}{\\alpha^2},
      \\qquad \\nabla R_\\alpha^* = (\\nabla R_\\alpha)^{-1}.
  """
  s = alpha * jnp.abs(_floating(u, alpha, "alpha"))
  closed = lambda s: jnp.where(s < jnp.inf, jnp.expm1(s) - s, s)  # noqa: E731 - inf, not inf - inf
  return jnp.sum(_small_t(s, _E, closed) / alpha**2)


def bregman_divergence(x: ArrayLike, x0: ArrayLike, alpha: ArrayLike) -> Array:
  """Bregman divergence of HAM's potential.

  .. math::

      D_{R_\\alpha}(x, x_0) = R_\\alpha(x) - R_\\alpha(x_0) - \\langle \\nabla R_\\alpha(x_0), x - x_0 \\rangle
      \\;\\ge 0,

  zero iff ``x == x0``. For ``alpha -> 0`` it tends to :math:`\\|x - x_0\\|^2/2`.

  Computed per entry without the cancellation of the three sums (which can make a divergence between nearby
  points negative): with :math:`a = \\alpha|x_i|`, :math:`b = \\alpha|x_{0,i}|` and
  :math:`h(t) = (1 + t)\\log(1 + t) - t`, an entry is :math:`(1 + b)\\,h\\big((a - b)/(1 + b)\\big)/\\alpha^2` where the signs agree and
  :math:`\\big(h(a) + b - \\log(1 + b) + a\\log(1 + b)\\big)/\\alpha^2` where they differ, every term >= 0.
  """
  x = _floating(x, alpha, "alpha")
  x0 = _floating(x0, alpha, "alpha")
  if x.shape != x0.shape:
    raise ValueError(f"x and x0 must have the same shape, got {x.shape} and {x0.shape}.")
  a, b = alpha * jnp.abs(x), alpha * jnp.abs(x0)
  same = (1 + b) * _h(alpha * (jnp.abs(x) - jnp.abs(x0)) / (1 + b))
  apart = _h(a) + _small_t(b, _G, lambda b: b - jnp.log1p(b)) + a * jnp.log1p(b)
  return jnp.sum(jnp.where(x * x0 >= 0, same, apart) / alpha**2)


def mw_mirror_map(x: ArrayLike, gamma: ArrayLike) -> Array:
  """Mirror map of gradient descent on :math:`x = m \\odot w`: :math:`\\tfrac12\\operatorname{arcsinh}(2x/\\gamma)`.

  Its derivative is ``1 / inverse_metric_mw(x, gamma)``.
  """
  return 0.5 * jnp.arcsinh(2 * _floating(x, gamma, "gamma") / gamma)


def mw_inverse_mirror_map(u: ArrayLike, gamma: ArrayLike) -> Array:
  """Inverse of :func:`mw_mirror_map`: :math:`x = \\tfrac{\\gamma}{2}\\sinh(2u)`."""
  return 0.5 * gamma * jnp.sinh(2 * _floating(u, gamma, "gamma"))


def mw_potential(x: ArrayLike, gamma: ArrayLike) -> Array:
  """Hyperbolic-entropy potential of :math:`m \\odot w`, summed over entries.

  .. math::

      R^{m\\odot w}_\\gamma(x) = \\sum_i \\Big[\\frac{x_i}{2}\\operatorname{arcsinh}\\frac{2x_i}{\\gamma}
      - \\frac{\\sqrt{4x_i^2 + \\gamma^2} - \\gamma}{4}\\Big].
  """
  x = _floating(x, gamma, "gamma")
  g = jnp.asarray(gamma, x.dtype)
  # (sqrt(4x^2 + gamma^2) - gamma) / 4 written x * x / (sqrt(4x^2 + gamma^2) + gamma): no cancellation near 0
  # and, with hypot and x * (x / ...), no overflow of x^2 for large x.
  return jnp.sum(0.5 * x * jnp.arcsinh(2 * x / g) - x * (x / (2 * jnp.hypot(x, g / 2) + g)))
