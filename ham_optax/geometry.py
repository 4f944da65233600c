"""Geometry and implicit bias of HAM: inverse metrics, mirror maps, potentials, Bregman projections.

This module states, as runnable code, the geometry behind Hyperbolic Aware Minimization
(HAM; Jacobs, Gadhikar, Rubio-Madrigal & Burkholz, "HAM: A Hyperbolic Step to Regulate Implicit
Bias", ICLR 2026, arXiv:2506.02630, Section 4).

With ``beta = 0`` and a vanishing learning rate, HAM (an inner gradient step followed by the
hyperbolic step ``x <- x * exp(-eta * alpha * sign(x) * g)``) follows the Riemannian gradient flow

.. math::

    \\dot x = -(1 + \\alpha |x|) \\odot \\nabla f(x),

i.e. the mirror flow :math:`\\frac{d}{dt} \\nabla R_\\alpha(x) = -\\nabla f(x)` with the separable
Legendre potential (Lemma 4.4 of the paper)

.. math::

    R_\\alpha(x) = \\sum_i \\frac{(1 + \\alpha|x_i|)\\log(1 + \\alpha|x_i|) - \\alpha|x_i|}{\\alpha^2},
    \\qquad
    \\nabla R_\\alpha(x) = \\operatorname{sign}(x)\\,\\frac{\\log(1 + \\alpha|x|)}{\\alpha},
    \\qquad
    \\nabla^2 R_\\alpha(x) = \\operatorname{diag}\\Big(\\frac{1}{1 + \\alpha|x|}\\Big).

:math:`R_\\alpha \\to \\tfrac12\\|x\\|_2^2` as :math:`\\alpha \\to 0` (plain gradient descent) and
:math:`\\alpha R_\\alpha(x) / \\log\\alpha \\to \\|x\\|_1` as :math:`\\alpha \\to \\infty` (Theorem 4.6).
On an underdetermined least-squares problem :math:`\\min_x \\tfrac12\\|Zx - y\\|^2` the flow started at
:math:`x_0` converges to the Bregman projection
:math:`\\arg\\min_{Zx = y} D_{R_\\alpha}(x, x_0)`, which :func:`bregman_projection` computes with an
independent convex solver (damped Newton on the dual).

For comparison, plain gradient descent on the pointwise overparameterisation :math:`x = m \\odot w`
conserves :math:`\\gamma = m^2 - w^2` per coordinate and follows
:math:`\\dot x = -\\sqrt{4x^2 + \\gamma^2} \\odot \\nabla f(x)` (the paper writes
:math:`\\sqrt{x^2 + \\gamma^2}` after rescaling time by 2 and :math:`\\gamma` by 1/2); its potential is
the hyperbolic entropy with :math:`\\nabla R^{m\\odot w}_\\gamma(x) = \\tfrac12\\operatorname{arcsinh}(2x/\\gamma)`.
Its inverse metric vanishes at 0 as :math:`\\gamma \\to 0`, the "small inverse metric" that HAM's
:math:`1 + \\alpha|x| \\ge 1` avoids (the paper's Figure 1).

The pointwise functions are written with ``jax.numpy``: they are jit-able, differentiable and keep
the input dtype. :func:`bregman_projection`, :func:`min_norm_interpolant` and :func:`basis_pursuit`
are float64 NumPy/SciPy reference solvers meant to check optimizers against, independent of
JAX's precision settings; SciPy is imported lazily (it is a development/examples dependency).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

__all__ = [
  "BregmanProjectionResult",
  "basis_pursuit",
  "bregman_divergence",
  "bregman_projection",
  "conjugate_potential",
  "inverse_metric_gd",
  "inverse_metric_ham",
  "inverse_metric_mw",
  "inverse_mirror_map",
  "min_norm_interpolant",
  "mirror_map",
  "mw_inverse_mirror_map",
  "mw_mirror_map",
  "mw_potential",
  "potential",
]

# Below this value of t = alpha * |x| the closed forms of R_alpha and its conjugate lose digits to
# cancellation; a Taylor series is used instead.
_SERIES_THRESHOLD = 1e-2


def _check_positive(value: Any, name: str) -> None:
  """Raises ValueError if a concrete scalar ``value`` is not > 0 (tracers are not checked)."""
  try:
    concrete = np.asarray(value)
  except Exception:  # a tracer under jit: cannot be checked without a host sync
    return
  if concrete.dtype == object or not np.issubdtype(concrete.dtype, np.number):
    raise TypeError(f"{name} must be a real number, got {value!r}.")
  if not np.all(np.isfinite(concrete)) or np.any(concrete <= 0):
    raise ValueError(f"{name} must be finite and > 0, got {value!r}.")


# ---------------------------------------------------------------------------------------------
# Inverse metrics (the factor in front of the gradient in the continuous-time flow).
# ---------------------------------------------------------------------------------------------


def inverse_metric_gd(x: ArrayLike) -> Array:
  """Inverse metric of gradient descent: :math:`g^{-1}(x) = 1` (flat geometry)."""
  x = jnp.asarray(x)
  return jnp.ones_like(x)


def inverse_metric_ham(x: ArrayLike, alpha: ArrayLike) -> Array:
  """Inverse metric of HAM (beta = 0): :math:`g^{-1}(x) = 1 + \\alpha|x|` (paper, Eq. 4 / Fig. 1).

  It is never below gradient descent's inverse metric 1, so parameters near zero keep moving.
  """
  _check_positive(alpha, "alpha")
  x = jnp.asarray(x)
  return 1 + alpha * jnp.abs(x)


def inverse_metric_mw(x: ArrayLike, gamma: ArrayLike) -> Array:
  """Inverse metric of gradient descent on :math:`x = m \\odot w`: :math:`\\sqrt{4x^2 + \\gamma^2}`.

  ``gamma = m**2 - w**2`` is conserved by gradient flow on ``(m, w)``; the inverse metric equals
  ``m**2 + w**2``. It tends to ``gamma`` (small for a small initialisation) at ``x = 0``.
  """
  _check_positive(gamma, "gamma")
  x = jnp.asarray(x)
  return jnp.sqrt(4 * x**2 + jnp.asarray(gamma, x.dtype) ** 2)


# ---------------------------------------------------------------------------------------------
# HAM's mirror map, potential, conjugate and Bregman divergence.
# ---------------------------------------------------------------------------------------------


def mirror_map(x: ArrayLike, alpha: ArrayLike) -> Array:
  """HAM's mirror map :math:`\\nabla R_\\alpha(x) = \\operatorname{sign}(x)\\log(1 + \\alpha|x|)/\\alpha`.

  Tends to the identity (GD's mirror map) as ``alpha -> 0``.
  """
  _check_positive(alpha, "alpha")
  x = jnp.asarray(x)
  return jnp.sign(x) * jnp.log1p(alpha * jnp.abs(x)) / alpha


def inverse_mirror_map(u: ArrayLike, alpha: ArrayLike) -> Array:
  """Inverse of :func:`mirror_map`: :math:`(\\nabla R_\\alpha)^{-1}(u) = \\operatorname{sign}(u)(e^{\\alpha|u|} - 1)/\\alpha`.

  This is also the gradient of the convex conjugate :math:`R_\\alpha^*` (:func:`conjugate_potential`).
  """
  _check_positive(alpha, "alpha")
  u = jnp.asarray(u)
  return jnp.sign(u) * jnp.expm1(alpha * jnp.abs(u)) / alpha


def _xlogx_term(t: Array) -> Array:
  """:math:`h(t) = (1 + t)\\log(1 + t) - t` for t >= 0, accurate for small t (series)."""
  small = t < _SERIES_THRESHOLD
  ts = jnp.where(small, t, 0.0)
  # h(t) = sum_{k>=2} (-1)^k t^k / (k (k - 1)); five terms give < 1e-16 relative error for t < 1e-2.
  series = ts**2 * (1 / 2 - ts * (1 / 6 - ts * (1 / 12 - ts * (1 / 20 - ts / 30))))
  tl = jnp.where(small, 1.0, t)
  direct = (1 + tl) * jnp.log1p(tl) - tl
  return jnp.where(small, series, direct)


def _expm1_term(s: Array) -> Array:
  """:math:`e^s - 1 - s` for s >= 0, accurate for small s (series)."""
  small = s < _SERIES_THRESHOLD
  ss = jnp.where(small, s, 0.0)
  series = ss**2 * (1 / 2 + ss * (1 / 6 + ss * (1 / 24 + ss * (1 / 120 + ss / 720))))
  sl = jnp.where(small, 1.0, s)
  direct = jnp.expm1(sl) - sl
  return jnp.where(small, series, direct)


def potential(x: ArrayLike, alpha: ArrayLike) -> Array:
  """HAM's Bregman potential (Legendre function), summed over all entries of ``x``.

  .. math::

      R_\\alpha(x) = \\sum_i \\frac{(1 + \\alpha|x_i|)\\log(1 + \\alpha|x_i|) - \\alpha|x_i|}{\\alpha^2}.

  Limits: :math:`R_\\alpha(x) \\to \\|x\\|_2^2/2` as :math:`\\alpha \\to 0`;
  :math:`\\alpha R_\\alpha(x)/\\log\\alpha \\to \\|x\\|_1` as :math:`\\alpha \\to \\infty`.
  ``jax.grad(potential)(x, alpha)`` equals :func:`mirror_map`.
  """
  _check_positive(alpha, "alpha")
  x = jnp.asarray(x)
  return jnp.sum(_xlogx_term(alpha * jnp.abs(x))) / alpha**2


def conjugate_potential(u: ArrayLike, alpha: ArrayLike) -> Array:
  """Convex conjugate of :func:`potential`, summed over entries.

  .. math::

      R_\\alpha^*(u) = \\sum_i \\frac{e^{\\alpha|u_i|} - 1 - \\alpha|u_i|}{\\alpha^2},
      \\qquad \\nabla R_\\alpha^* = (\\nabla R_\\alpha)^{-1}.
  """
  _check_positive(alpha, "alpha")
  u = jnp.asarray(u)
  return jnp.sum(_expm1_term(alpha * jnp.abs(u))) / alpha**2


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


# ---------------------------------------------------------------------------------------------
# The m ⊙ w comparison geometry (hyperbolic entropy).
# ---------------------------------------------------------------------------------------------


def mw_mirror_map(x: ArrayLike, gamma: ArrayLike) -> Array:
  """Mirror map of gradient descent on :math:`x = m \\odot w`: :math:`\\tfrac12\\operatorname{arcsinh}(2x/\\gamma)`.

  Its derivative is ``1 / inverse_metric_mw(x, gamma)``.
  """
  _check_positive(gamma, "gamma")
  x = jnp.asarray(x)
  return 0.5 * jnp.arcsinh(2 * x / gamma)


def mw_inverse_mirror_map(u: ArrayLike, gamma: ArrayLike) -> Array:
  """Inverse of :func:`mw_mirror_map`: :math:`x = \\tfrac{\\gamma}{2}\\sinh(2u)`."""
  _check_positive(gamma, "gamma")
  u = jnp.asarray(u)
  return 0.5 * gamma * jnp.sinh(2 * u)


def mw_potential(x: ArrayLike, gamma: ArrayLike) -> Array:
  """Hyperbolic-entropy potential of :math:`m \\odot w`, summed over entries.

  .. math::

      R^{m\\odot w}_\\gamma(x) = \\sum_i \\Big[\\frac{x_i}{2}\\operatorname{arcsinh}\\frac{2x_i}{\\gamma}
      - \\frac{\\sqrt{4x_i^2 + \\gamma^2} - \\gamma}{4}\\Big].
  """
  _check_positive(gamma, "gamma")
  x = jnp.asarray(x)
  return jnp.sum(0.5 * x * jnp.arcsinh(2 * x / gamma) - (jnp.sqrt(4 * x**2 + gamma**2) - gamma) / 4)


# ---------------------------------------------------------------------------------------------
# Reference solvers (float64 NumPy / SciPy).
# ---------------------------------------------------------------------------------------------


class BregmanProjectionResult(NamedTuple):
  """Result of :func:`bregman_projection`.

  Attributes:
    x: the projection, float64 array of shape ``(n,)``.
    dual: the Lagrange multiplier ``lambda`` (shape ``(d,)``) with
      ``grad R(x) = grad R(x0) + Z^T lambda``.
    residual: ``||Z x - y||_2`` at the returned point.
    iterations: Newton iterations used.
  """

  x: np.ndarray
  dual: np.ndarray
  residual: float
  iterations: int


class _Mirror(NamedTuple):
  grad: Callable[[np.ndarray], np.ndarray]  # grad R
  conj_grad: Callable[[np.ndarray], np.ndarray]  # grad R* = (grad R)^{-1}
  conj_hess: Callable[[np.ndarray], np.ndarray]  # diag of hess R*
  conj: Callable[[np.ndarray], float]  # R*


def _ham_mirror(alpha: float) -> _Mirror:
  def conj(u: np.ndarray) -> float:
    s = alpha * np.abs(u)
    with np.errstate(over="ignore"):
      return float(np.sum(np.where(s < 1e-5, s**2 / 2 + s**3 / 6, np.expm1(s) - s))) / alpha**2

  return _Mirror(
    grad=lambda x: np.sign(x) * np.log1p(alpha * np.abs(x)) / alpha,
    conj_grad=lambda u: np.sign(u) * np.expm1(alpha * np.abs(u)) / alpha,
    conj_hess=lambda u: np.exp(alpha * np.abs(u)),
    conj=conj,
  )


def _mw_mirror(gamma: float) -> _Mirror:
  return _Mirror(
    grad=lambda x: 0.5 * np.arcsinh(2 * x / gamma),
    conj_grad=lambda u: 0.5 * gamma * np.sinh(2 * u),
    conj_hess=lambda u: gamma * np.cosh(2 * u),
    conj=lambda u: float(np.sum(gamma * (np.cosh(2 * u) - 1) / 4)),
  )


def _as_problem(Z: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
  Z = np.asarray(Z, dtype=np.float64)
  y = np.asarray(y, dtype=np.float64)
  if Z.ndim != 2:
    raise ValueError(f"Z must be a 2-D (samples x features) matrix, got shape {Z.shape}.")
  if y.shape != (Z.shape[0],):
    raise ValueError(f"y must have shape ({Z.shape[0]},) to match Z {Z.shape}, got {y.shape}.")
  if not (np.all(np.isfinite(Z)) and np.all(np.isfinite(y))):
    raise ValueError("Z and y must be finite.")
  return Z, y


def bregman_projection(
  Z: ArrayLike,
  y: ArrayLike,
  x0: ArrayLike,
  alpha: float | None = None,
  *,
  gamma: float | None = None,
  tol: float = 1e-11,
  max_iter: int = 200,
) -> BregmanProjectionResult:
  """Bregman projection of ``x0`` onto ``{x : Z x = y}``, the limit of HAM's (or m ⊙ w's) flow.

  Solves

  .. math::

      x^\\star = \\arg\\min_{Zx = y} D_R(x, x_0)

  with :math:`R = R_\\alpha` (HAM, pass ``alpha``) or the hyperbolic entropy of :math:`m \\odot w`
  (pass ``gamma = m0**2 - w0**2``). The KKT conditions are
  :math:`\\nabla R(x) = \\nabla R(x_0) + Z^\\top\\lambda`, :math:`Zx = y`. The dual

  .. math::

      \\max_\\lambda\\; \\lambda^\\top y - R^*(\\nabla R(x_0) + Z^\\top\\lambda)

  is smooth and strictly concave (for ``Z`` of full row rank); it is maximised by Newton's method
  with Armijo backtracking, whose step solves :math:`(Z\\,\\mathrm{diag}(\\nabla^2R^*(u))Z^\\top)\\,
  \\Delta\\lambda = y - Zx(\\lambda)` with :math:`x(\\lambda) = \\nabla R^*(u)`. Everything is float64
  NumPy, independent of the JAX optimizers it is used to check.

  Args:
    Z: ``(d, n)`` matrix with ``d < n`` and full row rank.
    y: ``(d,)`` targets.
    x0: ``(n,)`` starting point of the flow (the initialisation).
    alpha: HAM's ``alpha > 0``. Give exactly one of ``alpha`` and ``gamma``.
    gamma: per-coordinate (or scalar) conserved ``m**2 - w**2 > 0`` of the m ⊙ w flow.
    tol: stop when ``||Z x - y|| <= tol * max(1, ||y||)``.
    max_iter: maximum Newton iterations.

  Returns:
    A :class:`BregmanProjectionResult`.

  Raises:
    ValueError: on malformed input, or if Newton's method does not reach ``tol``.
  """
  Z, y = _as_problem(Z, y)
  x0 = np.asarray(x0, dtype=np.float64)
  if x0.shape != (Z.shape[1],):
    raise ValueError(f"x0 must have shape ({Z.shape[1]},) to match Z {Z.shape}, got {x0.shape}.")
  if (alpha is None) == (gamma is None):
    raise ValueError("Give exactly one of alpha (HAM) and gamma (m ⊙ w).")
  if alpha is not None:
    _check_positive(alpha, "alpha")
    mirror = _ham_mirror(float(alpha))
  else:
    _check_positive(gamma, "gamma")
    mirror = _mw_mirror(np.asarray(gamma, dtype=np.float64))
  if tol <= 0 or max_iter < 1:
    raise ValueError(f"tol must be > 0 and max_iter >= 1, got tol={tol}, max_iter={max_iter}.")

  u0 = mirror.grad(x0)
  lam = np.zeros(Z.shape[0])
  threshold = tol * max(1.0, float(np.linalg.norm(y)))

  def dual(lam_: np.ndarray) -> float:
    with np.errstate(over="ignore", invalid="ignore"):
      value = float(lam_ @ y) - mirror.conj(u0 + Z.T @ lam_)
    return value if np.isfinite(value) else -np.inf

  value = dual(lam)
  for it in range(1, max_iter + 1):
    u = u0 + Z.T @ lam
    x = mirror.conj_grad(u)
    grad = y - Z @ x
    res = float(np.linalg.norm(grad))
    if res <= threshold:
      return BregmanProjectionResult(x, lam, res, it - 1)
    hess = (Z * mirror.conj_hess(u)) @ Z.T
    step = np.linalg.solve(hess, grad)
    slope = float(grad @ step)  # > 0: ascent direction
    t = 1.0
    while True:
      candidate = lam + t * step
      new_value = dual(candidate)
      if new_value >= value + 1e-4 * t * slope:  # Armijo ascent
        break
      if np.isfinite(new_value) and t == 1.0:
        # Near the optimum the dual's increase drowns in round-off; accept a full Newton step that
        # reduces the primal residual (local quadratic convergence).
        with np.errstate(over="ignore", invalid="ignore"):
          cand_res = float(np.linalg.norm(y - Z @ mirror.conj_grad(u0 + Z.T @ candidate)))
        if cand_res < 0.5 * res:
          break
      t *= 0.5
      if t < 1e-12:
        break
    if t < 1e-12:
      break  # no progress possible in floating point
    lam, value = candidate, new_value
  x = mirror.conj_grad(u0 + Z.T @ lam)
  res = float(np.linalg.norm(Z @ x - y))
  if res > threshold:
    raise ValueError(
      f"bregman_projection did not converge: ||Zx - y|| = {res:.3e} > {threshold:.3e} "
      f"after {max_iter} Newton iterations (is Z of full row rank?)."
    )
  return BregmanProjectionResult(x, lam, res, max_iter)


def min_norm_interpolant(Z: ArrayLike, y: ArrayLike, x0: ArrayLike | None = None) -> np.ndarray:
  """Euclidean projection of ``x0`` onto ``{x : Zx = y}``: :math:`x_0 + Z^+(y - Zx_0)` (float64).

  This is the limit of gradient descent on :math:`\\tfrac12\\|Zx - y\\|^2` started at ``x0``
  (``x0 = None`` means 0, giving the minimum-L2-norm interpolant :math:`Z^+ y`); equivalently the
  Bregman projection for :math:`R = \\tfrac12\\|x\\|^2`, the :math:`\\alpha \\to 0` limit of HAM.
  """
  Z, y = _as_problem(Z, y)
  x0 = np.zeros(Z.shape[1]) if x0 is None else np.asarray(x0, dtype=np.float64)
  if x0.shape != (Z.shape[1],):
    raise ValueError(f"x0 must have shape ({Z.shape[1]},) to match Z {Z.shape}, got {x0.shape}.")
  return x0 + np.linalg.lstsq(Z, y - Z @ x0, rcond=None)[0]


def basis_pursuit(Z: ArrayLike, y: ArrayLike) -> np.ndarray:
  """Minimum-L1-norm interpolant :math:`\\arg\\min_{Zx = y}\\|x\\|_1` (basis pursuit), float64.

  Solved as the linear program :math:`\\min \\mathbf 1^\\top(p + q)` s.t. :math:`Z(p - q) = y`,
  :math:`p, q \\ge 0` with ``scipy.optimize.linprog`` (HiGHS). This is the :math:`\\alpha \\to \\infty`
  limit of HAM's implicit bias from a vanishing initialisation.
  """
  Z, y = _as_problem(Z, y)
  try:
    from scipy.optimize import linprog
  except ImportError as e:  # pragma: no cover - scipy is a dev/examples dependency
    raise ImportError("basis_pursuit needs scipy (pip install scipy).") from e
  n = Z.shape[1]
  result = linprog(
    c=np.ones(2 * n),
    A_eq=np.hstack([Z, -Z]),
    b_eq=y,
    bounds=(0, None),
    method="highs",
  )
  if result.status != 0:
    raise ValueError(f"basis_pursuit: linprog failed ({result.message}).")
  return result.x[:n] - result.x[n:]
