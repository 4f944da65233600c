"""Tests for ham_optax.schedules (weight-decay switch-off)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ham_optax
from ham_optax.schedules import switch_off, switch_off_fraction


def test_values_and_jit():
  s = switch_off(0.5, 3)
  got = [float(s(k)) for k in range(6)]
  assert got == [0.5, 0.5, 0.5, 0.0, 0.0, 0.0]
  assert float(jax.jit(s)(jnp.asarray(2))) == 0.5
  assert float(jax.jit(s)(jnp.asarray(3))) == 0.0
  inner = optax.linear_schedule(1.0, 0.0, 10)
  s2 = switch_off(inner, 4)
  np.testing.assert_allclose([float(s2(k)) for k in (0, 3, 4, 9)], [1.0, 0.7, 0.0, 0.0], rtol=1e-6)
  f = switch_off_fraction(0.1, total_steps=100, fraction=0.25)
  assert float(f(24)) == pytest.approx(0.1) and float(f(25)) == 0.0


def test_adamw_weight_decay_switches_off_float64_reference():
  """inject_hyperparams(adamw) with the schedule vs a NumPy AdamW whose decay stops at step 3."""
  lr, wd, b1, b2, eps = 0.1, 0.5, 0.9, 0.999, 1e-8
  rng = np.random.default_rng(0)
  x0 = rng.normal(size=(3, 2))
  grads = [rng.normal(size=(3, 2)) for _ in range(6)]
  tx = optax.inject_hyperparams(optax.adamw)(learning_rate=lr, weight_decay=switch_off(wd, 3))
  p = jnp.asarray(x0, jnp.float32)
  s = tx.init(p)
  x, m, v = x0.copy(), np.zeros_like(x0), np.zeros_like(x0)
  for k, g in enumerate(grads):
    u, s = tx.update(jnp.asarray(g, jnp.float32), s, p)
    p = optax.apply_updates(p, u)
    t = k + 1
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    lam = wd if k < 3 else 0.0
    x = x - lr * ((m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps) + lam * x)
    np.testing.assert_allclose(np.asarray(p), x, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("how", ["direct", "inject_hyperparams"])
def test_ham_beta_switch_off(how):
  """HAM with alpha=0: x <- x * exp(-lr * beta_k); beta_k switched off after 2 steps."""
  if how == "direct":
    tx = ham_optax.ham(optax.sgd(0.0), 0.1, alpha=0.0, beta=switch_off(2.0, 2))
  else:
    tx = optax.inject_hyperparams(ham_optax.ham, static_args=("mask",))(
      optax.sgd(0.0), 0.1, alpha=0.0, beta=switch_off(2.0, 2)
    )
  p = {"k": jnp.ones((2, 2))}
  s = tx.init(p)
  update = jax.jit(tx.update)
  vals = []
  for _ in range(4):
    u, s = update({"k": jnp.zeros((2, 2))}, s, p)
    p = optax.apply_updates(p, u)
    vals.append(float(p["k"][0, 0]))
  np.testing.assert_allclose(vals, [np.exp(-0.2), np.exp(-0.4), np.exp(-0.4), np.exp(-0.4)], rtol=1e-6)


def test_bad_arguments_raise():
  with pytest.raises(ValueError, match="switch_step"):
    switch_off(0.1, -1)
  with pytest.raises(TypeError, match="switch_step"):
    switch_off(0.1, 2.5)
  with pytest.raises(TypeError, match="value"):
    switch_off("0.1", 2)
  with pytest.raises(ValueError, match="value"):
    switch_off(float("inf"), 2)
  with pytest.raises(ValueError, match="fraction"):
    switch_off_fraction(0.1, 100, 1.5)
  with pytest.raises(ValueError, match="total_steps"):
    switch_off_fraction(0.1, 0, 0.5)
  with pytest.raises(ValueError, match=r"switch_off: switch_step must be <= 2147483647 \(an int32\)"):
    switch_off(0.1, 2**31)  # optax counts steps in int32: a later step is never reached
