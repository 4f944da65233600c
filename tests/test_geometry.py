"""Tests for ham_optax.geometry: HAM's inverse metric, mirror map, potential, Bregman divergence/projection.

References are independent: jax.grad / jax.hessian of the potential, float64 NumPy closed forms, asymptotic
expansions of R_alpha, and scipy.optimize.minimize / linprog for the constrained problems.
"""

from decimal import Decimal, getcontext

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ham_optax import geometry

getcontext().prec = 60


@pytest.fixture
def x64():
  jax.config.update("jax_enable_x64", True)  # restored by the conftest fixture


def _vec(seed: int, n: int = 9, scale: float = 1.0) -> np.ndarray:
  x = scale * np.random.default_rng(seed).normal(size=n)
  x[0] = 0.0  # always include an exact zero
  return x


# -- inverse metrics ------------------------------------------------------------------------------------------


def test_inverse_metrics_closed_forms_and_order(x64):
  x = _vec(0)
  np.testing.assert_array_equal(geometry.inverse_metric_gd(x), np.ones_like(x))
  np.testing.assert_allclose(geometry.inverse_metric_ham(x, 3.0), 1 + 3.0 * np.abs(x), rtol=1e-15)
  np.testing.assert_allclose(geometry.inverse_metric_mw(x, 0.1), np.sqrt(4 * x**2 + 0.01), rtol=1e-15)
  # HAM's inverse metric is >= GD's everywhere; m*w's drops to gamma at 0 (the paper's Figure 1).
  assert np.all(np.asarray(geometry.inverse_metric_ham(x, 3.0)) >= 1.0)
  assert float(geometry.inverse_metric_mw(0.0, 0.01)) == pytest.approx(0.01)


def test_inverse_metric_is_inverse_hessian_of_potential(x64):
  x = jnp.asarray(_vec(1)[1:])  # the potential is not twice differentiable at an exact 0
  for alpha in (0.5, 20.0):
    hess = jax.jit(jax.hessian(geometry.potential))(x, alpha)
    np.testing.assert_allclose(np.diag(hess), 1 / geometry.inverse_metric_ham(x, alpha), rtol=1e-12)
    np.testing.assert_allclose(hess - np.diag(np.diag(hess)), 0.0, atol=1e-15)
  gamma = 0.3
  hess = jax.jit(jax.hessian(geometry.mw_potential))(x, gamma)
  np.testing.assert_allclose(np.diag(hess), 1 / geometry.inverse_metric_mw(x, gamma), rtol=1e-12)


def test_mw_inverse_metric_matches_gradient_descent_on_m_times_w(x64):
  # GD on (m, w) for f(m*w): the induced velocity of x = m*w is -(m^2 + w^2) f'(x) = -sqrt(4x^2 + gamma^2) f'(x).
  m, w = jnp.asarray([0.7, -0.2, 0.05]), jnp.asarray([0.3, 0.4, -0.01])
  fprime = jnp.asarray([0.3, -1.2, 2.0])
  dm, dw = -fprime * w, -fprime * m
  velocity = dm * w + m * dw
  gamma = m**2 - w**2
  x = m * w
  np.testing.assert_allclose(velocity, -geometry.inverse_metric_mw(x, jnp.abs(gamma)) * fprime, rtol=1e-12)


# -- mirror map, inverse, potential ---------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [1e-3, 1.0, 10.0, 1000.0])
def test_grad_of_potential_is_mirror_map(x64, alpha):
  x = jnp.asarray(_vec(2, scale=2.0))
  np.testing.assert_allclose(
    jax.jit(jax.grad(geometry.potential))(x, alpha), geometry.mirror_map(x, alpha), rtol=1e-12, atol=1e-300
  )
  # NumPy closed form of the mirror map.
  np.testing.assert_allclose(
    geometry.mirror_map(x, alpha), np.sign(x) * np.log1p(alpha * np.abs(x)) / alpha, rtol=1e-14
  )
  # and of the conjugate: grad R* is the inverse mirror map.
  u = geometry.mirror_map(x, alpha)
  np.testing.assert_allclose(
    jax.jit(jax.grad(geometry.conjugate_potential))(u, alpha),
    geometry.inverse_mirror_map(u, alpha),
    rtol=1e-12,
  )


@pytest.mark.parametrize("alpha", [1e-4, 0.3, 7.0, 500.0])
def test_mirror_map_round_trip(x64, alpha):
  x = jnp.asarray(_vec(3, n=50, scale=3.0))
  np.testing.assert_allclose(
    geometry.inverse_mirror_map(geometry.mirror_map(x, alpha), alpha), x, rtol=1e-12, atol=1e-15
  )
  u = jnp.asarray(_vec(4, n=50, scale=0.5 / max(1.0, alpha**0.5)))
  np.testing.assert_allclose(
    geometry.mirror_map(geometry.inverse_mirror_map(u, alpha), alpha), u, rtol=1e-12, atol=1e-15
  )
  gamma = alpha / 10
  np.testing.assert_allclose(
    geometry.mw_inverse_mirror_map(geometry.mw_mirror_map(x, gamma), gamma), x, rtol=1e-12, atol=1e-15
  )
  np.testing.assert_allclose(
    jax.jit(jax.grad(geometry.mw_potential))(x, gamma),
    geometry.mw_mirror_map(x, gamma),
    rtol=1e-12,
    atol=1e-15,
  )


def test_potential_matches_numpy_closed_form(x64):
  x = _vec(5, scale=2.0)
  for alpha in (0.05, 1.0, 30.0):
    t = alpha * np.abs(x)
    expected = np.sum((1 + t) * np.log1p(t) - t) / alpha**2
    assert float(geometry.potential(x, alpha)) == pytest.approx(expected, rel=1e-12)
  u = _vec(6, scale=0.2)
  s = 4.0 * np.abs(u)
  assert float(geometry.conjugate_potential(u, 4.0)) == pytest.approx(np.sum(np.expm1(s) - s) / 16, rel=1e-12)


def test_small_alpha_limit_is_half_squared_l2(x64):
  x = _vec(7, scale=2.0)
  for alpha in (1e-3, 1e-6, 1e-9):
    # R_alpha(x) = ||x||^2/2 - alpha ||x||_3^3 / 6 + O(alpha^2): the gap shrinks linearly in alpha.
    gap = float(geometry.potential(x, alpha)) - 0.5 * np.sum(x**2)
    assert gap == pytest.approx(-alpha * np.sum(np.abs(x) ** 3) / 6, rel=1e-2, abs=1e-15)
    np.testing.assert_allclose(geometry.mirror_map(x, alpha), x, rtol=3 * alpha * np.max(np.abs(x)))
  x0 = _vec(8, scale=2.0)
  assert float(geometry.bregman_divergence(x, x0, 1e-8)) == pytest.approx(
    0.5 * np.sum((x - x0) ** 2), rel=1e-6
  )


def test_large_alpha_limit_is_proportional_to_l1(x64):
  x = _vec(9, scale=2.0)
  l1 = np.sum(np.abs(x))
  errors = []
  for alpha in (1e2, 1e4, 1e8, 1e16, 1e64, 1e128):
    normalised = alpha * float(geometry.potential(x, alpha)) / np.log(alpha)
    errors.append(abs(normalised / l1 - 1))
    # Exact asymptotics: alpha R_alpha(x) = sum |x| (log(alpha |x|) - 1) + O(log(alpha) / alpha).
    nz = x[x != 0]
    expansion = np.sum(np.abs(nz) * (np.log(alpha * np.abs(nz)) - 1))
    assert alpha * float(geometry.potential(x, alpha)) == pytest.approx(
      expansion, abs=10 * (x.size * np.log(alpha) / alpha) + 1e-12 * abs(expansion)
    )
  assert all(b < a for a, b in zip(errors, errors[1:], strict=False)), errors
  assert errors[-1] < 5e-3


def test_potential_accurate_for_tiny_arguments(x64):
  # No cancellation: for alpha|x| << 1 the series branch must agree with the exact Taylor expansion.
  x = np.array([1e-12, -3e-9, 2e-6])
  expected = np.sum(x**2 / 2 - np.abs(x) ** 3 / 6)
  assert float(geometry.potential(x, 1.0)) == pytest.approx(expected, rel=1e-14)


def test_float32_and_jit():
  x = jnp.asarray(_vec(10), dtype=jnp.float32)
  for fn in (geometry.mirror_map, geometry.inverse_mirror_map, geometry.inverse_metric_ham):
    out = jax.jit(fn)(x, 2.0)
    assert out.dtype == jnp.float32 and out.shape == x.shape
  assert jax.jit(geometry.potential)(x, jnp.float32(2.0)).dtype == jnp.float32
  # A traced alpha is accepted (validation only applies to concrete values).
  np.testing.assert_allclose(
    jax.jit(geometry.mirror_map)(x, jnp.float32(2.0)), geometry.mirror_map(x, 2.0), rtol=1e-6
  )


# -- Bregman divergence ---------------------------------------------------------------------------------------


def test_bregman_divergence_properties(x64):
  rng = np.random.default_rng(11)
  for alpha in (0.1, 5.0, 200.0):
    for _ in range(5):
      x, x0 = rng.normal(size=8), rng.normal(size=8) * rng.choice([0.0, 1e-3, 1.0])
      d = float(geometry.bregman_divergence(x, x0, alpha))
      expected = (
        float(geometry.potential(x, alpha))
        - float(geometry.potential(x0, alpha))
        - float(np.dot(np.sign(x0) * np.log1p(alpha * np.abs(x0)) / alpha, x - x0))
      )
      assert d == pytest.approx(expected, rel=1e-10, abs=1e-14)
      assert d >= 0
    assert float(geometry.bregman_divergence(x, x, alpha)) == pytest.approx(0.0, abs=1e-14)
  with pytest.raises(ValueError, match="same shape"):
    geometry.bregman_divergence(np.ones(3), np.ones(4), 1.0)


# -- validation -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_invalid_alpha_raises(bad):
  with pytest.raises(ValueError, match="alpha"):
    geometry.mirror_map(np.ones(3), bad)
  with pytest.raises(ValueError, match="alpha"):
    geometry.potential(np.ones(3), bad)
  with pytest.raises(ValueError, match="gamma"):
    geometry.inverse_metric_mw(np.ones(3), bad)


def test_invalid_alpha_type_raises():
  with pytest.raises(TypeError, match="alpha"):
    geometry.mirror_map(np.ones(3), "10")


def test_solver_input_validation():
  Z, y, x0 = np.ones((2, 4)), np.ones(2), np.zeros(4)
  with pytest.raises(ValueError, match="exactly one"):
    geometry.bregman_projection(Z, y, x0)
  with pytest.raises(ValueError, match="exactly one"):
    geometry.bregman_projection(Z, y, x0, 1.0, gamma=1.0)
  with pytest.raises(ValueError, match="y must have shape"):
    geometry.bregman_projection(Z, np.ones(3), x0, 1.0)
  with pytest.raises(ValueError, match="x0 must have shape"):
    geometry.bregman_projection(Z, y, np.zeros(5), 1.0)
  with pytest.raises(ValueError, match="2-D"):
    geometry.min_norm_interpolant(np.ones(4), y)
  with pytest.raises(ValueError, match="alpha"):
    geometry.bregman_projection(Z, y, x0, -2.0)


# -- reference solvers ----------------------------------------------------------------------------------------


def _small_problem(seed: int, d: int = 5, n: int = 12):
  rng = np.random.default_rng(seed)
  Z = rng.normal(size=(d, n))
  x_star = np.zeros(n)
  x_star[rng.choice(n, 2, replace=False)] = rng.normal(size=2)
  return Z, Z @ x_star, 0.01 * rng.normal(size=n)


@pytest.mark.parametrize("alpha", [0.5, 10.0, 300.0])
def test_bregman_projection_matches_scipy_primal_solver(x64, alpha):
  from scipy.optimize import minimize

  Z, y, x0 = _small_problem(12)
  res = geometry.bregman_projection(Z, y, x0, alpha)
  assert res.residual <= 1e-10
  # KKT: Zx = y and grad R(x) - grad R(x0) = Z^T lambda.
  np.testing.assert_allclose(Z @ res.x, y, atol=1e-10)
  np.testing.assert_allclose(
    geometry.mirror_map(res.x, alpha) - geometry.mirror_map(x0, alpha), Z.T @ res.dual, atol=1e-10
  )

  # Independent solver: SLSQP on the primal, objective and gradient written here in NumPy.
  def objective(x):
    t, t0 = alpha * np.abs(x), alpha * np.abs(x0)
    r = np.sum((1 + t) * np.log1p(t) - t) / alpha**2
    r0 = np.sum((1 + t0) * np.log1p(t0) - t0) / alpha**2
    g0 = np.sign(x0) * np.log1p(t0) / alpha
    return r - r0 - g0 @ (x - x0)

  def gradient(x):
    return (
      np.sign(x) * np.log1p(alpha * np.abs(x)) / alpha - np.sign(x0) * np.log1p(alpha * np.abs(x0)) / alpha
    )

  ref = minimize(
    objective,
    geometry.min_norm_interpolant(Z, y),
    jac=gradient,
    constraints=[{"type": "eq", "fun": lambda x: Z @ x - y, "jac": lambda x: Z}],
    method="SLSQP",
    options={"ftol": 1e-14, "maxiter": 1000},
  )
  assert ref.success, ref.message
  np.testing.assert_allclose(res.x, ref.x, atol=1e-5 * np.max(np.abs(ref.x)))
  assert objective(res.x) <= objective(ref.x) + 1e-12


def test_bregman_projection_limits(x64):
  Z, y, x0 = _small_problem(13, d=6, n=20)
  # alpha -> 0: the Euclidean projection of x0 (GD's limit).
  np.testing.assert_allclose(
    geometry.bregman_projection(Z, y, x0, 1e-7).x, geometry.min_norm_interpolant(Z, y, x0), rtol=1e-5
  )
  # With alpha * |x0| small, the L1 norm falls as alpha grows and approaches basis pursuit's from above.
  x0_tiny = x0 * 1e-6
  l1_bp = np.abs(geometry.basis_pursuit(Z, y)).sum()
  l1 = [np.abs(geometry.bregman_projection(Z, y, x0_tiny, a).x).sum() for a in (0.1, 1, 10, 100, 1e3, 1e4)]
  assert all(b < a for a, b in zip(l1, l1[1:], strict=False)), l1
  assert min(l1) > l1_bp - 1e-9
  assert (l1[-1] - l1_bp) < 0.2 * (l1[0] - l1_bp)


def test_large_alpha_times_init_stops_the_l1_trend(x64):
  # The L1-like bias needs alpha * |x0| small: for alpha >> 1/|x0| the term <grad R(x0), x> (which rewards
  # keeping x0's signs) dominates, and the L1 norm of the limit grows again. Measured, not assumed monotone.
  Z, y, x0 = _small_problem(13, d=6, n=20)  # |x0| ~ 1e-2
  l1 = {a: np.abs(geometry.bregman_projection(Z, y, x0, a).x).sum() for a in (10.0, 100.0, 1e4, 1e8)}
  assert l1[100.0] < l1[10.0]
  assert l1[1e8] > l1[1e4] > l1[100.0]


def test_mw_bregman_projection_kkt(x64):
  Z, y, x0 = _small_problem(14)
  gamma = 0.01
  res = geometry.bregman_projection(Z, y, x0, gamma=gamma)
  np.testing.assert_allclose(Z @ res.x, y, atol=1e-10)
  np.testing.assert_allclose(
    geometry.mw_mirror_map(res.x, gamma) - geometry.mw_mirror_map(x0, gamma), Z.T @ res.dual, atol=1e-9
  )


def test_min_norm_interpolant_and_basis_pursuit(x64):
  Z, y, x0 = _small_problem(15)
  x_mn = geometry.min_norm_interpolant(Z, y)
  np.testing.assert_allclose(x_mn, np.linalg.pinv(Z) @ y, rtol=1e-10)
  x_proj = geometry.min_norm_interpolant(Z, y, x0)
  np.testing.assert_allclose(Z @ x_proj, y, atol=1e-12)
  np.testing.assert_allclose(x_proj - x0, np.linalg.pinv(Z) @ (y - Z @ x0), rtol=1e-10, atol=1e-14)

  x_bp = geometry.basis_pursuit(Z, y)
  np.testing.assert_allclose(Z @ x_bp, y, atol=1e-8)
  # No interpolant has a smaller L1 norm: try many random ones (min-norm plus null-space directions).
  null = np.linalg.svd(Z)[2][Z.shape[0] :]
  rng = np.random.default_rng(0)
  others = x_mn + rng.normal(size=(2000, null.shape[0])) @ null * rng.uniform(0, 2, size=(2000, 1))
  assert np.abs(x_bp).sum() <= np.abs(others).sum(axis=1).min() + 1e-9
  # A square invertible system has one interpolant.
  A = np.random.default_rng(1).normal(size=(4, 4))
  np.testing.assert_allclose(geometry.basis_pursuit(A, A @ np.arange(4.0)), np.arange(4.0), atol=1e-8)


# -- numerics at the edges ------------------------------------------------------------------------------------


def _h60(t: Decimal) -> Decimal:
  return (1 + t) * (1 + t).ln() - t


def _divergence60(x: np.ndarray, x0: np.ndarray, alpha: float) -> float:
  """D(x, x0) from its definition, in 60-digit decimal arithmetic (no cancellation at that precision)."""
  a, total = Decimal(alpha), Decimal(0)
  for xi, x0i in zip(map(Decimal, x.tolist()), map(Decimal, x0.tolist()), strict=True):
    slope = (1 + a * abs(x0i)).ln() / a * (1 if x0i >= 0 else -1)
    total += (_h60(a * abs(xi)) - _h60(a * abs(x0i))) / a**2 - slope * (xi - x0i)
  return float(total)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bregman_divergence_between_nearby_points_is_accurate_and_nonnegative(x64, dtype):
  rng = np.random.default_rng(3)
  for scale in (1e-3, 1.0, 1e3):
    x0 = (scale * rng.normal(size=6)).astype(dtype)
    for rel in (1e-6, 1e-4, 1e-2):
      x = (x0 * (1 + rel * rng.normal(size=6))).astype(dtype)
      ref = _divergence60(x.astype(np.float64), x0.astype(np.float64), 2.0)  # the points as given
      got = float(geometry.bregman_divergence(jnp.asarray(x), jnp.asarray(x0), 2.0))
      assert got >= 0
      np.testing.assert_allclose(got, ref, rtol=1e-5 if dtype == "float32" else 1e-12)


def test_bregman_divergence_across_zero_matches_the_definition(x64):
  x, x0 = np.array([0.7, -2.0, 0.0, 3.0]), np.array([-0.3, 1.5, 2.0, 0.0])
  direct = (
    geometry.potential(x, 3.0) - geometry.potential(x0, 3.0) - np.sum(geometry.mirror_map(x0, 3.0) * (x - x0))
  )
  np.testing.assert_allclose(geometry.bregman_divergence(x, x0, 3.0), direct, rtol=1e-12)


def test_per_entry_alpha_equals_entrywise_scalars(x64):
  x, x0, alpha = np.array([0.5, -1.5, 2.0]), np.array([0.1, 0.3, -0.2]), np.array([1.0, 2.0, 3.0])
  for fn, args in (
    (geometry.potential, (x,)),
    (geometry.conjugate_potential, (x,)),
    (geometry.bregman_divergence, (x, x0)),
  ):
    per_entry = sum(float(fn(*(a[i : i + 1] for a in args), alpha[i])) for i in range(3))
    np.testing.assert_allclose(fn(*args, alpha), per_entry, rtol=1e-12)
  with pytest.raises(ValueError, match=r"alpha must be a scalar or broadcast to \(3,\)"):
    geometry.potential(x, np.ones(2))
  with pytest.raises(ValueError, match="broadcast"):
    geometry.mirror_map(x, np.ones((3, 3)))  # would broadcast x to (3, 3)


def test_large_and_integer_inputs():
  big = jnp.float32(1e20)
  np.testing.assert_allclose(geometry.inverse_metric_mw(big, 1.0), 2e20, rtol=1e-6)
  np.testing.assert_allclose(geometry.mw_potential(big, 1.0), 1e20 / 2 * np.arcsinh(2e20) - 0.5e20, rtol=1e-5)
  assert geometry.potential(jnp.float32(3e38), 10.0) == np.inf  # inf, not inf - inf = NaN
  assert geometry.conjugate_potential(jnp.float32(np.inf), 1.0) == np.inf
  np.testing.assert_allclose(
    geometry.inverse_metric_mw(np.array([1, 2, 3]), 0.5), np.sqrt(4.0 * np.arange(1, 4) ** 2 + 0.25)
  )
  np.testing.assert_allclose(geometry.mirror_map(np.array([2]), 1.0), np.log(3.0), rtol=1e-6)


def test_series_and_closed_forms_agree_at_the_switch(x64):
  # Either side of the switch from the Taylor series to the closed form, against 60-digit decimal arithmetic.
  for t in (0.0999999, 0.1000001, 0.0099999, 1e-3, 0.5):
    d = Decimal(t)
    np.testing.assert_allclose(geometry.potential(np.array([t]), 1.0), float(_h60(d)), rtol=1e-14)
    np.testing.assert_allclose(
      geometry.conjugate_potential(np.array([t]), 1.0), float(d.exp() - 1 - d), rtol=1e-14
    )


def test_solvers_reject_what_they_cannot_solve(x64):
  Z, y, x0 = _small_problem(16)
  with pytest.raises(ValueError, match="must be finite"):
    geometry.bregman_projection(Z, y, np.where(np.arange(x0.size) == 1, np.nan, x0), 1.0)
  with pytest.raises(ValueError, match="must be finite"):
    geometry.min_norm_interpolant(Z, y, np.full_like(x0, np.inf))
  with pytest.raises(ValueError, match="full row rank, got rank"):
    geometry.bregman_projection(np.vstack([Z[:1], Z[:1]]), y[:2], x0, 1.0)
  with pytest.raises(ValueError, match=r"gamma must be a scalar or have shape"):
    geometry.bregman_projection(Z, y, x0, gamma=np.ones(3))
  with pytest.raises(ValueError, match="alpha must be a scalar"):
    geometry.bregman_projection(Z, y, x0, np.ones(x0.size))
