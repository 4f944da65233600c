"""HAM's implicit bias on underdetermined regression, run through the real optimizer (ham_optax.ham).

Fast settings (a 40 x 100 problem, float64). The references are independent float64 solvers from
ham_optax.geometry: the pseudo-inverse, basis pursuit (scipy linprog) and the Bregman projection (Newton on the
dual), plus a NumPy rendering of one HAM step for the sign-variant test.
"""

import importlib.util
import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ham_optax
from ham_optax import geometry

_BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "implicit_bias.py"


def _load_benchmark():
  if str(_BENCH.parent) not in sys.path:
    sys.path.insert(0, str(_BENCH.parent))  # the benchmark imports its sibling `_common`, as a script would
  spec = importlib.util.spec_from_file_location("implicit_bias_benchmark", _BENCH)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # dataclasses needs the module registered
  spec.loader.exec_module(module)
  return module


ib = _load_benchmark()


@pytest.fixture
def x64():
  jax.config.update("jax_enable_x64", True)  # restored by the conftest fixture


@pytest.fixture(scope="module")
def problem():
  return ib.make_problem(0)


def _limit(method, pb, c, max_steps=400_000):
  lr = ib.stable_lr(method, pb, method.limit(pb), c)
  traj = ib.run(method, pb, lr, max_steps, record_every=max(1, int(0.5 / lr)))
  assert traj.converged_at is not None, f"{method.label} did not converge in {max_steps} steps"
  return traj.xs[-1], lr


# -- the two sign variants ------------------------------------------------------------------------------------


def _numpy_ham_step(x, g, lr, alpha, sign_source):
  x = np.asarray(x, np.float64)
  x_half = x - lr * g
  s = np.sign(x_half if sign_source == "x_half" else x)
  return x_half * np.exp(np.clip(-lr * alpha * s * g, -5, 5))


def _ham_step(params, grads, lr, alpha, sign_from):
  tx = ham_optax.ham(
    optax.sgd(lr),
    lr,
    alpha=alpha,
    beta=0.0,
    mask=lambda p: jax.tree.map(lambda _: True, p),
    sign_from=sign_from,
  )
  updates, _ = tx.update(grads, tx.init(params), params)
  return optax.apply_updates(params, updates)


# The core forms lr * alpha in float32 even for float64 params (ham_optax/_src/hyperbolic.py), so a float64
# step agrees with the float64 NumPy rendering to ~1e-7 relative, not to machine precision.
_RTOL = 1e-6


def test_sign_variants_differ_only_by_sign_source(x64):
  lr, alpha = 0.1, 3.0
  # No entry changes sign in the inner step: HYP* and GD;HYP are identical.
  x = jnp.asarray([0.5, -1.0, 2.0, -0.3])
  g = jnp.asarray([1.0, 0.5, -2.0, -1.0])
  a = _ham_step(x, g, lr, alpha, "x_half")
  b = _ham_step(x, g, lr, alpha, "x")
  np.testing.assert_array_equal(a, b)
  np.testing.assert_allclose(a, _numpy_ham_step(x, g, lr, alpha, "x_half"), rtol=_RTOL)

  # Entries 0 and 3 cross zero in the inner step (0.05 - 0.1 * 1.0 < 0, -0.01 + 0.1 * 0.2 > 0).
  x = jnp.asarray([0.05, -1.0, 2.0, -0.01])
  g = jnp.asarray([1.0, 0.5, -2.0, -0.2])
  a = _ham_step(x, g, lr, alpha, "x_half")
  b = _ham_step(x, g, lr, alpha, "x")
  np.testing.assert_allclose(a, _numpy_ham_step(x, g, lr, alpha, "x_half"), rtol=_RTOL)
  np.testing.assert_allclose(b, _numpy_ham_step(x, g, lr, alpha, "x"), rtol=_RTOL)
  np.testing.assert_array_equal(a[1:3], b[1:3])
  flipped = np.array([0, 3])
  assert np.all(np.abs(np.asarray(a)[flipped] - np.asarray(b)[flipped]) > 1e-3)
  # After a flip, HYP* (sign(x_half) * g < 0) amplifies the new sign; GD;HYP (sign(x) * g > 0) damps it
  # back towards zero. This is why the deployed HYP* makes sign flips stick.
  assert np.all(np.abs(np.asarray(a)[flipped]) > np.abs(np.asarray(b)[flipped]))


# -- limits of the optimizers ---------------------------------------------------------------------------------


def test_gd_limit_is_the_pseudo_inverse_interpolant(x64, problem):
  x, _ = _limit(ib.gd_method(), problem, c=0.9)
  x_ref = geometry.min_norm_interpolant(problem.Z, problem.y, problem.x0)
  np.testing.assert_allclose(x, x_ref, rtol=0, atol=1e-8 * np.max(np.abs(x_ref)))
  assert np.linalg.norm(x - x_ref) <= 1e-8 * np.linalg.norm(x_ref)
  # The reference really is the pseudo-inverse solution (x0 is tiny, so it is close to pinv(Z) y too).
  np.testing.assert_allclose(
    x_ref - problem.x0, np.linalg.pinv(problem.Z) @ (problem.y - problem.Z @ problem.x0)
  )


@pytest.mark.parametrize("sign_from", ["x_half", "x"])
def test_ham_limit_is_the_bregman_projection_and_gap_shrinks_with_lr(x64, problem, sign_from):
  alpha = 10.0
  method = ib.ham_method(alpha, sign_from)
  x_bregman = geometry.bregman_projection(problem.Z, problem.y, problem.x0, alpha).x
  gaps, lrs = [], []
  for c in (0.2, 0.1):
    x, lr = _limit(method, problem, c)
    gaps.append(np.linalg.norm(x - x_bregman) / np.linalg.norm(x_bregman))
    lrs.append(lr)
  assert gaps[-1] <= 3e-3, gaps
  assert gaps[1] < gaps[0]
  # First order in the learning rate: halving lr halves the gap (measured ratio ~2.0).
  assert 1.6 < gaps[0] / gaps[1] < 2.5, gaps
  # And the limit is not just any interpolant: it is far from GD's and from basis pursuit's.
  x_l2 = geometry.min_norm_interpolant(problem.Z, problem.y, problem.x0)
  assert np.linalg.norm(x - x_l2) > 100 * np.linalg.norm(x - x_bregman)


def test_l1_of_ham_limit_falls_with_alpha_and_stays_above_basis_pursuit(x64, problem):
  l1_bp = np.abs(geometry.basis_pursuit(problem.Z, problem.y)).sum()
  l1_gd = np.abs(_limit(ib.gd_method(), problem, c=0.9)[0]).sum()
  l1 = [np.abs(_limit(ib.ham_method(a), problem, c=0.5)[0]).sum() for a in (0.1, 1.0, 10.0, 100.0)]
  assert l1_gd > l1[0]
  assert all(b < a for a, b in zip(l1, l1[1:], strict=False)), l1
  assert l1[-1] > l1_bp
  # HAM at alpha = 100 has moved most of the way from GD's L1 norm towards basis pursuit's.
  assert (l1[-1] - l1_bp) < 0.5 * (l1_gd - l1_bp)


def test_mw_init_conserves_product_and_gamma(x64):
  x0 = jnp.asarray([1e-3, -2e-3, 0.0, 0.5])
  p = ib.mw_init(x0, 1e-3)
  np.testing.assert_allclose(p["m"] * p["w"], x0, rtol=1e-14, atol=1e-20)
  np.testing.assert_allclose(p["m"] ** 2 - p["w"] ** 2, 1e-3, rtol=1e-10)


@pytest.mark.slow
def test_mw_limit_is_the_hyperbolic_entropy_bregman_projection(x64, problem):
  gamma = 1e-3
  method = ib.mw_method(gamma)
  x_ref = geometry.bregman_projection(problem.Z, problem.y, problem.x0, gamma=gamma).x
  gaps = [
    np.linalg.norm(_limit(method, problem, c, 2_000_000)[0] - x_ref) / np.linalg.norm(x_ref)
    for c in (0.5, 0.25)
  ]
  assert gaps[1] < gaps[0] and gaps[1] < 3e-3, gaps


@pytest.mark.slow
def test_benchmark_fast_end_to_end(tmp_path):
  previous = jax.config.jax_enable_x64
  try:
    results = ib.main(["--fast", "--out", str(tmp_path)])
  finally:
    jax.config.update("jax_enable_x64", previous)
  saved = json.loads((tmp_path / "results.json").read_text())
  assert saved["table"]["rows"].keys() == results["table"]["rows"].keys()
  for name in ("l1_vs_alpha", "distance_vs_steps", "gap_vs_lr", "inverse_metrics", "recovery"):
    path = tmp_path / f"{name}.png"
    assert path.exists() and 0 < path.stat().st_size < 200_000
  rows = saved["table"]["rows"]
  assert rows["GD"]["rel_gap_to_limit"] < 1e-8
  assert rows["HAM a=10 (HYP*)"]["l1"] < rows["HAM a=1 (HYP*)"]["l1"] < rows["GD"]["l1"]
