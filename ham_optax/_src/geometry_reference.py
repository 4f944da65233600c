"""Float64 NumPy/SciPy reference solvers for the limits of HAM's flow, independent of JAX and its precision."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from jax.typing import ArrayLike

from ham_optax._src import checks


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


def _as_problem(
  Z: ArrayLike, y: ArrayLike, x0: ArrayLike | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """``(Z, y, x0)`` as float64 arrays, checked (``x0 = None``: zeros)."""
  Z, y = np.asarray(Z, dtype=np.float64), np.asarray(y, dtype=np.float64)
  if Z.ndim != 2:
    raise ValueError(f"Z must be a 2-D (samples x features) matrix, got shape {Z.shape}.")
  if y.shape != (Z.shape[0],):
    raise ValueError(f"y must have shape ({Z.shape[0]},) to match Z {Z.shape}, got {y.shape}.")
  x0 = np.zeros(Z.shape[1]) if x0 is None else np.asarray(x0, dtype=np.float64)
  if x0.shape != (Z.shape[1],):
    raise ValueError(f"x0 must have shape ({Z.shape[1]},) to match Z {Z.shape}, got {x0.shape}.")
  if not (np.all(np.isfinite(Z)) and np.all(np.isfinite(y)) and np.all(np.isfinite(x0))):
    raise ValueError("Z, y and x0 must be finite.")
  return Z, y, x0


def _mirror(alpha: float | None, gamma: ArrayLike | None, n: int) -> _Mirror:
  """The mirror map of HAM (``alpha``, a scalar) or of m ⊙ w (``gamma``, a scalar or ``n`` values): exactly one
  of them, with values > 0."""
  owner = "bregman_projection"
  checks.check_exactly_one({"alpha": alpha, "gamma": gamma}, owner)
  if alpha is not None:
    return _ham_mirror(float(checks.check_scalar(alpha, "alpha", lo=0.0, lo_open=True, owner=owner)))
  checks.check_finite_values(gamma, "gamma", owner, positive=True)
  if np.shape(gamma) not in ((), (n,)):
    raise ValueError(f"{owner}: gamma must be a scalar or have shape ({n},) like x0, got {np.shape(gamma)}.")
  return _mw_mirror(np.asarray(gamma, dtype=np.float64))


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

  Solves :math:`x^\\star = \\arg\\min_{Zx = y} D_R(x, x_0)` with :math:`R = R_\\alpha` (HAM, pass ``alpha``) or
  the hyperbolic entropy of :math:`m \\odot w` (pass ``gamma = m0**2 - w0**2``). The KKT conditions are
  :math:`\\nabla R(x) = \\nabla R(x_0) + Z^\\top\\lambda`, :math:`Zx = y`. The dual

  .. math::

      \\max_\\lambda\\; \\lambda^\\top y - R^*(\\nabla R(x_0) + Z^\\top\\lambda)

  is smooth and strictly concave (for ``Z`` of full row rank); it is maximised by Newton's method
  with Armijo backtracking, whose step solves :math:`(Z\\,\\mathrm{diag}(\\nabla^2R^*(u))Z^\\top)\\,
  \\Delta\\lambda = y - Zx(\\lambda)` with :math:`x(\\lambda) = \\nabla R^*(u)`.

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
  Z, y, x0 = _as_problem(Z, y, x0)
  mirror = _mirror(alpha, gamma, Z.shape[1])
  if (rank := np.linalg.matrix_rank(Z)) < Z.shape[0]:
    raise ValueError(f"bregman_projection: Z {Z.shape} must have full row rank, got rank {rank}.")
  checks.check_scalar(tol, "tol", lo=0.0, lo_open=True, owner="bregman_projection")
  checks.check_int(max_iter, "max_iter", 1, owner="bregman_projection")
  return _newton_dual(mirror, Z, y, mirror.grad(x0), tol, max_iter)


def _newton_dual(
  mirror: _Mirror, Z: np.ndarray, y: np.ndarray, u0: np.ndarray, tol: float, max_iter: int
) -> BregmanProjectionResult:
  """:func:`bregman_projection`'s Newton ascent on the dual from ``lambda = 0``, with ``u0 = grad R(x0)``."""
  lam = np.zeros(Z.shape[0])
  threshold = tol * max(1.0, float(np.linalg.norm(y)))

  def dual(lam_: np.ndarray) -> float:
    with np.errstate(over="ignore", invalid="ignore"):
      value = float(lam_ @ y) - mirror.conj(u0 + Z.T @ lam_)
    return value if np.isfinite(value) else -np.inf

  def residual(lam_: np.ndarray) -> float:
    with np.errstate(over="ignore", invalid="ignore"):
      return float(np.linalg.norm(y - Z @ mirror.conj_grad(u0 + Z.T @ lam_)))

  value = dual(lam)
  for it in range(max_iter):
    u = u0 + Z.T @ lam
    grad = y - Z @ mirror.conj_grad(u)
    res = float(np.linalg.norm(grad))
    if res <= threshold:
      return BregmanProjectionResult(mirror.conj_grad(u), lam, res, it)
    step = np.linalg.solve((Z * mirror.conj_hess(u)) @ Z.T, grad)
    slope = float(grad @ step)  # > 0: ascent direction
    for t in 0.5 ** np.arange(40):  # backtracking down to 2^-39
      candidate = lam + t * step
      new_value = dual(candidate)
      if new_value >= value + 1e-4 * t * slope:  # Armijo ascent
        break
      # Near the optimum the dual's increase drowns in round-off; accept a full Newton step that reduces the
      # primal residual (local quadratic convergence).
      if t == 1.0 and np.isfinite(new_value) and residual(candidate) < 0.5 * res:
        break
    else:
      break  # no progress possible in floating point
    lam, value = candidate, new_value
  x = mirror.conj_grad(u0 + Z.T @ lam)
  res = float(np.linalg.norm(Z @ x - y))
  if not res <= threshold:  # NaN too
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
  Z, y, x0 = _as_problem(Z, y, x0)
  return x0 + np.linalg.lstsq(Z, y - Z @ x0, rcond=None)[0]


def basis_pursuit(Z: ArrayLike, y: ArrayLike) -> np.ndarray:
  """Minimum-L1-norm interpolant :math:`\\arg\\min_{Zx = y}\\|x\\|_1` (basis pursuit), float64.

  Solved as the linear program :math:`\\min \\mathbf 1^\\top(p + q)` s.t. :math:`Z(p - q) = y`,
  :math:`p, q \\ge 0` with ``scipy.optimize.linprog`` (HiGHS). This is the :math:`\\alpha \\to \\infty`
  limit of HAM's implicit bias from a vanishing initialisation.
  """
  Z, y, _ = _as_problem(Z, y, None)
  try:
    from scipy.optimize import linprog
  except ImportError as e:  # pragma: no cover - scipy is a dev/examples dependency
    raise ImportError("basis_pursuit needs scipy (pip install scipy).") from e
  n = Z.shape[1]
  result = linprog(c=np.ones(2 * n), A_eq=np.hstack([Z, -Z]), b_eq=y, bounds=(0, None), method="highs")
  if result.status != 0:
    raise ValueError(f"basis_pursuit: linprog failed ({result.message}).")
  return result.x[:n] - result.x[n:]
