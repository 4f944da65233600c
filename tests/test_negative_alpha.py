"""HAM with a negative alpha: what the mirror step does at and beyond |x| = 1 / |alpha|.

For alpha < 0 the continuous limit dx/dt = -(1 + alpha |x|) grad f(x) has an inverse metric that vanishes at
|x| = 1/|alpha| and is negative beyond it. These tests pin down the documented behaviour of the discrete step
(docs/guides/graphs.md, "Negative alpha"): no sign flips, a per-step factor within [e^-c, e^c], a barrier at
1/|alpha| that weights starting inside approach but do not cross, ascent beyond it, and finiteness under
max_weight_norm. References are float64 NumPy renderings of the update rule (tests/reference.py) and closed forms.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import optimize

import ham_optax
from tests import reference


@pytest.fixture(autouse=True)
def _x64():
  jax.config.update("jax_enable_x64", True)  # conftest restores the flag after each test
  yield


def _ham_step(x, g, lr, alpha, *, max_exponent=5.0, max_weight_norm=None):
  tx = ham_optax.ham(
    optax.sgd(lr), lr, alpha, 0.0, max_exponent=max_exponent, max_weight_norm=max_weight_norm
  )
  params = {"w": jnp.atleast_2d(x)}  # a matrix: the default mask selects ndim >= 2
  updates, _ = tx.update({"w": jnp.atleast_2d(g)}, tx.init(params), params)
  return np.asarray(optax.apply_updates(params, updates)["w"]).reshape(np.shape(x))


@pytest.mark.parametrize("alpha", [-0.5, -10.0, -1e4])
def test_negative_alpha_matches_reference_never_flips_and_stays_bounded(alpha):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(64, 8)) * rng.choice([1e-3, 1.0, 30.0], size=(64, 8))
  x[0, :4] = 0.0
  g = rng.normal(size=(64, 8)) * 10.0
  lr, c = 0.1, 5.0
  new = _ham_step(x, g, lr, alpha, max_exponent=c)
  x_half = x - lr * g
  np.testing.assert_allclose(new, reference.mirror(x_half, x, g, lr, alpha, 0.0, c), rtol=1e-12, atol=1e-300)
  assert np.all(np.isfinite(new))
  assert np.all(np.sign(new) == np.sign(x_half))  # the mirror step keeps the sign of x_half; 0 stays 0
  ratio = np.abs(new[x_half != 0]) / np.abs(x_half[x_half != 0])
  assert np.all(ratio <= np.exp(c) * (1 + 1e-12)) and np.all(ratio >= np.exp(-c) * (1 - 1e-12))


def test_negative_alpha_effective_learning_rate_is_one_plus_alpha_abs_x():
  """First order in lr: x_new - x = -lr (1 + alpha |x|) g, also where 1 + alpha |x| <= 0 (ascent)."""
  alpha, lr = -2.0, 1e-6
  x = np.array([0.1, 0.3, 0.5, 0.7, 1.5, -0.2, -0.5, -1.0])  # 1/|alpha| = 0.5
  g = np.ones_like(x)
  step = _ham_step(x, g, lr, alpha) - x
  np.testing.assert_allclose(step / (-lr * g), 1 + alpha * np.abs(x), atol=1e-5)
  assert step[2] == pytest.approx(0.0, abs=1e-11) and step[6] == pytest.approx(0.0, abs=1e-11)  # frozen
  assert np.all(step[[4, 7]] > 0) == np.all(g[[4, 7]] > 0)  # beyond: moves along +g, up the loss


def _run_1d(x0, alpha, lr, steps, target=2.0, **kw):
  """SGD + HAM on f(x) = (x - target)^2 / 2 in float64; returns the trajectory."""
  tx = ham_optax.ham(optax.sgd(lr), lr, alpha, 0.0, **kw)

  @jax.jit
  def run(x):
    def body(carry, _):
      p, st = carry
      g = {"w": p["w"] - target}
      u, st = tx.update(g, st, p)
      p = optax.apply_updates(p, u)
      return (p, st), p["w"]

    p = {"w": x}
    return jax.lax.scan(body, (p, tx.init(p)), None, length=steps)[1]

  return np.asarray(run(jnp.full((1, 1), x0, jnp.float64)))[:, 0, 0]


def test_negative_alpha_barrier_holds_weights_inside():
  """Optimum beyond the barrier: a weight that starts inside stops at the discrete fixed point next to 1/|alpha|
  (plain SGD reaches the optimum 2); one that starts between the barrier and the optimum comes back to it."""
  alpha, lr = -1.0, 0.01
  # fixed point of x -> (x - lr (x - 2)) exp(lr |alpha| (x - 2)), closed form in the limit lr -> 0: 1/|alpha|
  fp = optimize.brentq(lambda x: (x - lr * (x - 2)) * np.exp(lr * abs(alpha) * (x - 2)) - x, 0.5, 1.5)
  assert fp == pytest.approx(1 / abs(alpha), abs=lr)
  inside = _run_1d(0.1, alpha, lr, 3000)
  assert np.all(inside <= fp + 1e-12)  # never crosses
  assert inside[-1] == pytest.approx(fp, abs=1e-6)
  between = _run_1d(1.6, alpha, lr, 3000)
  assert between[-1] == pytest.approx(fp, abs=1e-6)
  assert _run_1d(0.1, 0.0, lr, 3000)[-1] == pytest.approx(2.0, abs=1e-6)  # alpha = 0: plain SGD


def test_negative_alpha_beyond_the_optimum_runs_away_by_at_most_e_to_the_c_per_step():
  """Beyond both the barrier and the optimum the step ascends: |x| grows, by at most a factor e^c (+ the inner
  step) per step; with max_weight_norm the tensor stays at the cap, finite."""
  alpha, lr, c = -1.0, 0.1, 1.0
  traj = _run_1d(3.0, alpha, lr, 40, max_exponent=c)
  finite = traj[np.isfinite(traj)]
  assert np.all(np.diff(finite) > 0) and finite[-1] > 1e6  # runaway
  growth = finite[1:] / finite[:-1]
  assert np.all(growth <= np.exp(c) + 1e-9)
  capped = _run_1d(3.0, alpha, lr, 200, max_exponent=c, max_weight_norm=50.0)
  assert np.all(np.isfinite(capped)) and np.all(np.abs(capped) <= 50.0 + 1e-9)


def test_positive_alpha_has_no_barrier():
  """For alpha > 0 the inverse metric 1 + alpha |x| >= 1: the same problem converges to the optimum."""
  assert _run_1d(0.1, 1.0, 0.01, 3000)[-1] == pytest.approx(2.0, abs=1e-6)
  assert _run_1d(3.0, 1.0, 0.01, 3000)[-1] == pytest.approx(2.0, abs=1e-6)
