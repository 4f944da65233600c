"""Tests of ham_optax.suggest_alpha: determinism, bounded cost, and no divergence on two small models."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ham_optax


def _least_squares():
  # The 64 x 32 least-squares problem on which the paper's alpha = 200 gives NaN at lr 0.1 while SGD converges.
  rng = np.random.default_rng(0)
  z = jnp.asarray(rng.normal(size=(64, 32)) / np.sqrt(32), jnp.float32)
  y = jnp.asarray(rng.normal(size=(64,)), jnp.float32)
  params = {"w": jnp.asarray(rng.normal(scale=0.5, size=(32, 1)), jnp.float32)}

  def loss(p, batch):
    zb, yb = batch
    return 0.5 * jnp.mean((zb @ p["w"][:, 0] - yb) ** 2)

  return loss, params, [(z, y)] * 200


def _mlp():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(512, 20)).astype(np.float32)
  labels = (x[:, :3].sum(1) > 0).astype(np.int32) + (x[:, 3] > 0.5).astype(np.int32)
  k1, k2 = jax.random.split(jax.random.key(0))
  params = {
    "w1": jax.random.normal(k1, (20, 64)) / np.sqrt(20),
    "b1": jnp.zeros(64),
    "w2": jax.random.normal(k2, (64, 3)) / 8.0,
    "b2": jnp.zeros(3),
  }

  def loss(p, batch):
    xb, yb = batch
    h = jax.nn.relu(xb @ p["w1"] + p["b1"])
    return optax.softmax_cross_entropy_with_integer_labels(h @ p["w2"] + p["b2"], yb).mean()

  batches = [(jnp.asarray(x[i : i + 64]), jnp.asarray(labels[i : i + 64])) for i in range(0, 512, 64)] * 25
  return loss, params, batches


def _train(loss, params, batches, tx):
  state = tx.init(params)

  @jax.jit
  def step(p, s, b):
    v, g = jax.value_and_grad(loss)(p, b)
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s, v

  losses = []
  for b in batches:
    params, state, v = step(params, state, b)
    losses.append(float(v))
  return np.asarray(losses)


def test_suggest_alpha_is_deterministic_and_a_float():
  loss, params, batches = _mlp()
  inner = optax.sgd(0.1, momentum=0.9)
  a1 = ham_optax.suggest_alpha(loss, params, batches, inner, 0.1)
  a2 = ham_optax.suggest_alpha(loss, params, batches, inner, 0.1)
  assert isinstance(a1, float) and a1 == a2 and a1 > 0
  # It scales linearly with target_ratio (the formula's rho).
  a3 = ham_optax.suggest_alpha(
    loss, params, batches, inner, 0.1, target_ratio=2 * ham_optax.DEFAULT_TARGET_RATIO
  )
  assert a3 == pytest.approx(2 * a1, rel=1e-12)


def test_suggest_alpha_cost_is_num_steps_gradient_evaluations():
  loss, params, batches = _mlp()
  pulled = []

  def counting():
    for b in batches:
      pulled.append(1)
      yield b

  calls = []

  def counted_loss(p, b):
    calls.append(1)  # runs at trace time only: the calibration step is compiled once
    return loss(p, b)

  ham_optax.suggest_alpha(counted_loss, params, counting(), optax.adam(1e-2), 1e-2)
  assert len(pulled) == 20  # 20 gradient evaluations: < 5 % of a 30-epoch run of >= 14 steps per epoch
  assert len(calls) == 1
  with pytest.raises(ValueError, match="ran out"):
    ham_optax.suggest_alpha(loss, params, batches[:3], optax.adam(1e-2), 1e-2)


def test_suggest_alpha_matches_formula_for_plain_sgd():
  # Plain SGD: u = -lr g, so alpha = rho * ||g|| / ||x * g|| on the first step's quantities (constant problem).
  loss, params, batches = _least_squares()
  p = params
  ratios = []
  for b in batches[:20]:
    g = jax.grad(loss)(p, b)
    ratios.append(float(jnp.linalg.norm(g["w"]) / jnp.linalg.norm(jnp.abs(p["w"]) * g["w"])))
    p = jax.tree.map(lambda x, gi: x - 0.1 * gi, p, g)
  got = ham_optax.suggest_alpha(loss, params, batches, optax.sgd(0.1), 0.1, target_ratio=0.5)
  assert got == pytest.approx(0.5 * np.median(ratios[10:]), rel=1e-4)


@pytest.mark.parametrize("name", ["least_squares", "mlp"])
@pytest.mark.parametrize("inner_name,lr", [("sgd_momentum", 0.1), ("adamw", 1e-2)])
def test_suggested_alpha_does_not_diverge(name, inner_name, lr):
  loss, params, batches = _least_squares() if name == "least_squares" else _mlp()
  inner = optax.sgd(lr, momentum=0.9) if inner_name == "sgd_momentum" else optax.adamw(lr, weight_decay=1e-4)
  alpha = ham_optax.suggest_alpha(loss, params, batches, inner, lr)
  ham_losses = _train(loss, params, batches, ham_optax.ham(inner, lr, alpha=alpha, beta=0.0))
  base_losses = _train(loss, params, batches, inner)
  assert np.all(np.isfinite(ham_losses))
  assert ham_losses[-8:].mean() < 0.5 * ham_losses[0]
  assert ham_losses[-8:].mean() < 1.5 * base_losses[-8:].mean() + 1e-3


def test_suggest_alpha_rejects_bad_arguments():
  loss, params, batches = _mlp()
  with pytest.raises(ValueError, match="target_ratio"):
    ham_optax.suggest_alpha(loss, params, batches, optax.sgd(0.1), 0.1, target_ratio=0.0)
  with pytest.raises(ValueError, match="num_steps"):
    ham_optax.suggest_alpha(loss, params, batches, optax.sgd(0.1), 0.1, num_steps=1)
  with pytest.raises(TypeError, match="inner"):
    ham_optax.suggest_alpha(loss, params, batches, "sgd", 0.1)
  with pytest.raises(ValueError, match="selects no parameter"):
    ham_optax.suggest_alpha(
      loss, params, batches, optax.sgd(0.1), 0.1, mask=lambda p: jax.tree.map(lambda _: False, p)
    )
