"""Tests for ham_optax.nanoadam (the optimizer) against a float64 NumPy reference."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ham_optax import nanoadam, selected_count
from ham_optax.overparam import state_nbytes


def _np_nanoadam(x0, b0, grad_fn, lr, fraction, refresh, steps, b1=0.9, b2=0.999, eps=1e-8, wd=0.0):
  """float64 reference: kernel x sparsely updated, bias b dense Adam."""
  x, b = x0.copy(), b0.copy()
  n = x.size
  k = max(1, round(fraction * n))
  mu, nu = np.zeros(n), np.zeros(n)  # dense bookkeeping; only entries in S are ever non-zero
  mb, vb = np.zeros_like(b), np.zeros_like(b)
  S = None
  traj = []
  for c in range(steps):
    t = c + 1
    if c % refresh == 0:
      new_S = np.argsort(np.abs(x.reshape(-1)), kind="stable")[:k]
      keep = np.zeros(n, bool)
      keep[new_S] = True
      mu[~keep], nu[~keep] = 0.0, 0.0  # moments of dropped entries are forgotten
      S = new_S
    gx, gb = grad_fn(x, b)
    g = gx.reshape(-1)[S]
    mu[S] = b1 * mu[S] + (1 - b1) * g
    nu[S] = b2 * nu[S] + (1 - b2) * g * g
    step = -lr * ((mu[S] / (1 - b1**t)) / (np.sqrt(nu[S] / (1 - b2**t)) + eps) + wd * x.reshape(-1)[S])
    xf = x.reshape(-1).copy()
    xf[S] += step
    x = xf.reshape(x.shape)
    mb = b1 * mb + (1 - b1) * gb
    vb = b2 * vb + (1 - b2) * gb * gb
    b = b - lr * ((mb / (1 - b1**t)) / (np.sqrt(vb / (1 - b2**t)) + eps))
    traj.append((x.copy(), b.copy()))
  return traj


@pytest.mark.parametrize("fraction,refresh,wd", [(0.3, 3, 0.0), (0.1, 1, 0.05), (1.0, 5, 0.0)])
def test_matches_float64_reference(fraction, refresh, wd):
  rng = np.random.default_rng(0)
  x0, b0 = rng.normal(size=(6, 5)), rng.normal(size=(5,))
  h = rng.uniform(0.5, 2.0, size=(6, 5))
  tx_, tb = rng.normal(size=(6, 5)), rng.normal(size=(5,))

  def grad_np(x, b):
    return h * (x - tx_), b - tb

  def loss(p):
    return 0.5 * jnp.sum(h * (p["k"] - tx_) ** 2) + 0.5 * jnp.sum((p["b"] - tb) ** 2)

  steps, lr = 10, 0.05
  ref = _np_nanoadam(x0, b0, grad_np, lr, fraction, refresh, steps, wd=wd)
  tx = nanoadam(lr, fraction, refresh, weight_decay=wd)
  params = {"k": jnp.asarray(x0, jnp.float32), "b": jnp.asarray(b0, jnp.float32)}
  state = tx.init(params)

  @jax.jit
  def step(p, s):
    u, s = tx.update(jax.grad(loss)(p), s, p)
    return optax.apply_updates(p, u), s

  for c in range(steps):
    params, state = step(params, state)
    np.testing.assert_allclose(np.asarray(params["k"]), ref[c][0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(params["b"]), ref[c][1], rtol=1e-4, atol=1e-5)


def test_fraction_one_is_adam():
  rng = np.random.default_rng(1)
  params = {"k": jnp.asarray(rng.normal(size=(4, 4)), jnp.float32)}
  a, b = nanoadam(1e-2, 1.0, 3), optax.adam(1e-2)
  sa, sb = a.init(params), b.init(params)
  pa = pb = params
  upa, upb = jax.jit(a.update), jax.jit(b.update)
  for _ in range(7):
    g = {"k": jnp.asarray(rng.normal(size=(4, 4)), jnp.float32)}
    ua, sa = upa(g, sa, pa)
    ub, sb = upb(g, sb, pb)
    pa, pb = optax.apply_updates(pa, ua), optax.apply_updates(pb, ub)
  np.testing.assert_allclose(np.asarray(pa["k"]), np.asarray(pb["k"]), rtol=1e-5, atol=1e-6)


def test_large_weights_frozen_exactly_and_memory():
  rng = np.random.default_rng(2)
  params = {"k": jnp.asarray(rng.normal(size=(40, 25)), jnp.float32), "b": jnp.zeros((25,))}
  tx = nanoadam(1e-2, 0.1, 1000)
  s = tx.init(params)
  g = jax.tree.map(jnp.ones_like, params)
  u, s = jax.jit(tx.update)(g, s, params)
  changed = np.asarray(u["k"]) != 0
  assert changed.sum() == selected_count(1000, 0.1) == 100
  thresh = np.sort(np.abs(np.asarray(params["k"])).ravel())[99]
  assert np.all(np.abs(np.asarray(params["k"]))[changed] <= thresh)
  # memory: 3k numbers for the kernel (int32 idx, f32 mu, f32 nu) vs Adam's 2n
  adam_bytes, nano_bytes = state_nbytes(optax.adam(1e-2), params), state_nbytes(tx, params)
  assert nano_bytes == 4 + 3 * 100 * 4 + 2 * 25 * 4
  assert adam_bytes == 4 + 2 * (1000 + 25) * 4


def test_refresh_moves_selection_and_inject_hyperparams():
  params = {"k": jnp.asarray([[0.01, 1.0], [2.0, 3.0]])}
  tx = optax.inject_hyperparams(nanoadam, static_args=("fraction", "refresh_every"))(
    learning_rate=0.5, fraction=0.25, refresh_every=2
  )
  s = tx.init(params)
  g = {"k": -jnp.ones((2, 2))}  # grows the selected weight
  p = params
  sel = []
  update = jax.jit(tx.update)
  for _ in range(4):
    u, s = update(g, s, p)
    sel.append(np.flatnonzero(np.asarray(u["k"]).ravel()).tolist())
    p = optax.apply_updates(p, u)
  # step 0 and 1 update entry 0 (0.01 -> ~1.01); at step 2 entry 1 (1.0) is smallest
  assert sel == [[0], [0], [1], [1]]


def test_bad_hyperparameters_raise():
  with pytest.raises(ValueError, match="fraction"):
    nanoadam(1e-3, fraction=0.0)
  with pytest.raises(ValueError, match="fraction"):
    nanoadam(1e-3, fraction=1.5)
  with pytest.raises(ValueError, match="refresh_every"):
    nanoadam(1e-3, refresh_every=0)
  with pytest.raises(TypeError, match="refresh_every"):
    nanoadam(1e-3, refresh_every=1.5)
  with pytest.raises(ValueError, match="b2"):
    nanoadam(1e-3, b2=1.0)
  with pytest.raises(ValueError, match="eps"):
    nanoadam(1e-3, eps=0.0)
  with pytest.raises(ValueError, match="learning_rate"):
    nanoadam(-1e-3)
  with pytest.raises(TypeError, match="learning_rate"):
    nanoadam("1e-3")
  tx = nanoadam(1e-3)
  with pytest.raises(ValueError, match="params"):
    tx.update({"k": jnp.ones((2, 2))}, tx.init({"k": jnp.ones((2, 2))}), None)
  with pytest.raises(TypeError, match="nanoadam: .*floating-point"):
    nanoadam(1e-3, mask={"i": True}).init({"i": jnp.ones((2, 2), jnp.int32)})


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_dtypes_preserved(dtype):
  params = {"k": jnp.ones((4, 4), dtype), "b": jnp.zeros((4,), dtype)}
  tx = nanoadam(1e-2, 0.25, 2)
  s = tx.init(params)
  u, s = jax.jit(tx.update)(jax.tree.map(jnp.ones_like, params), s, params)
  assert all(a.dtype == dtype for a in jax.tree.leaves(u))
  assert int((np.asarray(u["k"], np.float32) != 0).sum()) == 4
