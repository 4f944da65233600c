"""Tests for the deep diagonal reparameterisation and the saddle-escape measurement (closed forms, jax.grad)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ham_optax.metrics import escape_step
from ham_optax.overparam import deep_diagonal


def _run(tx, loss, x0, steps):
  state = tx.init(x0)
  x, losses = x0, [float(loss(x0))]
  for _ in range(steps):
    upd, state = tx.update(jax.grad(loss)(x), state, x)
    x = optax.apply_updates(x, upd)
    losses.append(float(loss(x)))
  return x, np.array(losses), state


@pytest.mark.parametrize("eta,fraction", [(0.05, 0.5), (0.01, 0.1), (0.2, 0.3)])
def test_escape_step_closed_form_depth_one(eta, fraction):
  # L = 1: x = u - v, SGD on (u, v) moves x by -2 eta g; f = a/2 (x - t)^2 from x = 0 gives
  # losses[k] = (1 - 2 eta a)^(2k) losses[0], so the escape step is ceil(log(fraction) / (2 log|1 - 2 eta a|)).
  a, t = 1.5, jnp.array([2.0])
  loss = lambda x: 0.5 * a * jnp.sum((x - t) ** 2)  # noqa: E731
  x0 = jnp.zeros(1)
  _, losses, _ = _run(deep_diagonal(optax.sgd(eta), depth=1, init_scale=0.5), loss, x0, 200)
  rho = abs(1 - 2 * eta * a)
  np.testing.assert_allclose(
    losses, losses[0] * rho ** (2 * np.arange(201)), rtol=1e-3, atol=1e-5 * losses[0]
  )
  expected = math.ceil(math.log(fraction) / (2 * math.log(rho)))
  assert int(escape_step(jnp.asarray(losses), fraction)) == expected


def test_escape_step_never_and_batched():
  curves = jnp.array([[1.0, 0.9, 0.8], [1.0, 0.4, 0.1], [1.0, jnp.nan, jnp.nan]])
  np.testing.assert_array_equal(escape_step(curves, 0.5), [-1, 1, -1])
  with pytest.raises(ValueError, match="fraction"):
    escape_step(curves, 1.5)


@pytest.mark.parametrize("depth", [2, 3])
def test_factor_gradients_match_autodiff(depth):
  # One SGD step of the wrapper equals one SGD step on (u, v) of L(u^L - v^L) computed by jax.grad.
  key = jax.random.PRNGKey(0)
  x0 = jax.random.normal(key, (5,))
  target = jnp.arange(5.0)
  loss = lambda x: 0.5 * jnp.sum((x - target) ** 2)  # noqa: E731
  tx = deep_diagonal(optax.sgd(0.01), depth=depth, init_scale=0.3)
  state = tx.init(x0)
  np.testing.assert_allclose(state.u**depth - state.v**depth, x0, rtol=1e-5, atol=1e-6)
  gu, gv = jax.grad(lambda u, v: loss(u**depth - v**depth), argnums=(0, 1))(state.u, state.v)
  upd, new = tx.update(jax.grad(loss)(x0), state, x0)
  np.testing.assert_allclose(new.u, state.u - 0.01 * gu, rtol=1e-6)
  np.testing.assert_allclose(new.v, state.v - 0.01 * gv, rtol=1e-6)
  np.testing.assert_allclose(x0 + upd, new.u**depth - new.v**depth, rtol=1e-5, atol=1e-6)


def test_adamw_decays_factors_not_x():
  # Decoupled decay acts on (u, v): at g = 0 both factors shrink by (1 - lr wd) per step, x = u^2 - v^2 follows.
  tx = deep_diagonal(optax.adamw(0.1, weight_decay=0.5), depth=2, init_scale=1.0)
  x0 = jnp.array([3.0])
  state = tx.init(x0)
  upd, new = tx.update(jnp.zeros(1), state, x0)
  np.testing.assert_allclose(new.u, state.u * 0.95, rtol=1e-6)
  np.testing.assert_allclose(x0 + upd, 0.95**2 * x0, rtol=1e-5)


def test_bad_arguments():
  with pytest.raises(ValueError, match="depth"):
    deep_diagonal(optax.sgd(0.1), depth=0)
  with pytest.raises(ValueError, match="init_scale"):
    deep_diagonal(optax.sgd(0.1), depth=2, init_scale=0.0)
  with pytest.raises(TypeError, match="inner"):
    deep_diagonal("sgd", depth=2)
  tx = deep_diagonal(optax.sgd(0.1), depth=2)
  with pytest.raises(ValueError, match="params"):
    tx.update(jnp.zeros(2), tx.init(jnp.zeros(2)))


def test_float16_init_is_exact_and_an_underflowing_init_is_refused():
  tx = deep_diagonal(optax.sgd(1.0), depth=3, init_scale=1e-3)
  state = tx.init(jnp.zeros(3, jnp.float16))  # u = (0 + 1e-9)^(1/3): 1e-9 underflows float16
  np.testing.assert_allclose(np.asarray(state.u, np.float32), 1e-3, rtol=1e-3)
  x = jnp.zeros(3, jnp.float16)
  for _ in range(300):
    u, state = tx.update(jnp.array([-1.0, 1.0, 0.0], jnp.float16), state, x)
    x = optax.apply_updates(x, u)
  u0, v0 = np.asarray(state.u, np.float32), np.asarray(state.v, np.float32)
  assert u0[0] > 1.05e-3 > v0[0] and v0[1] > 1.05e-3 > u0[1]  # the factors move (x = u^3 - v^3 is still tiny)
  with pytest.raises(ValueError, match=r"init_scale \*\* depth = 0.001 \*\* 13 underflows"):
    deep_diagonal(optax.sgd(0.1), depth=13, init_scale=1e-3).init(jnp.zeros(3))
