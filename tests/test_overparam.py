"""Tests for ham_optax.overparam against float64 NumPy references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ham_optax import overparam as op
from ham_optax.schedules import switch_off

# ---------------------------------------------------------------------------- references


def _np_factorize(x, c):
  """m^2 is the positive root of t^2 - c t - x^2 = 0 (m >= 0); w = x / m."""
  t = (c + np.sqrt(c * c + 4 * x * x)) / 2.0
  m = np.sqrt(t)
  with np.errstate(divide="ignore", invalid="ignore"):
    w = np.where(m > 0, x / np.where(m > 0, m, 1.0), 0.0)
  if c < 0:  # w dominant: |w|^2 = (-c + sqrt(c^2 + 4x^2)) / 2, m = |x| / |w|
    tw = (-c + np.sqrt(c * c + 4 * x * x)) / 2.0
    aw = np.sqrt(tw)
    m = np.where(aw > 0, np.abs(x) / aw, 0.0)
    w = np.where(x < 0, -aw, aw)
  return m, w


class _NpInner:
  """float64 NumPy renderings of optax.sgd / sgd(momentum) / adam on a list of arrays."""

  def __init__(self, kind, lr):
    self.kind, self.lr, self.t, self.s1, self.s2 = kind, lr, 0, None, None

  def step(self, grads):
    if self.s1 is None:
      self.s1 = [np.zeros_like(g) for g in grads]
      self.s2 = [np.zeros_like(g) for g in grads]
    self.t += 1
    out = []
    for i, g in enumerate(grads):
      if self.kind == "sgd":
        out.append(-self.lr * g)
      elif self.kind == "momentum":
        self.s1[i] = g + 0.9 * self.s1[i]
        out.append(-self.lr * self.s1[i])
      else:  # adam, optax defaults b1=0.9, b2=0.999, eps=1e-8
        self.s1[i] = 0.9 * self.s1[i] + 0.1 * g
        self.s2[i] = 0.999 * self.s2[i] + 0.001 * g * g
        mh = self.s1[i] / (1 - 0.9**self.t)
        vh = self.s2[i] / (1 - 0.999**self.t)
        out.append(-self.lr * mh / (np.sqrt(vh) + 1e-8))
    return out


def _np_rescale(m, w, c):
  """Sign-In's rescale in NumPy: balance c, x = m * w kept, sign of m kept."""
  am, _ = _np_factorize(m * w, c)
  am = np.abs(am)
  s = np.where(m < 0, -1.0, 1.0)
  m_new = s * am
  with np.errstate(divide="ignore", invalid="ignore"):
    w_new = np.where(am > 0, (m * w) / np.where(am > 0, m_new, 1.0), 0.0)
  return m_new, w_new


def _np_overparam_run(x0, b0, grad_fn, kind, lr, wd_fn, init, rescale_every, rescale_c, steps):
  """Reference: kernel x = m * w, bias b unfactorised; returns list of (x, b) per step."""
  if init == "mask":
    m, w = np.ones_like(x0), x0.copy()
  else:
    m, w = _np_factorize(x0, 0.0 if init == "balanced" else init)
  b = b0.copy()
  inner = _NpInner(kind, lr)
  traj = []
  for k in range(steps):
    gx, gb = grad_fn(m * w, b)
    lam = wd_fn(k)
    dm, dw, db = inner.step([gx * w + lam * m, gx * m + lam * w, gb])
    m, w, b = m + dm, w + dw, b + db
    if rescale_every and (k + 1) % rescale_every == 0:
      m, w = _np_rescale(m, w, rescale_c)
    traj.append((m * w, b.copy()))
  return traj


# ---------------------------------------------------------------------------- tests


@pytest.mark.parametrize("c", [0.0, 0.5, 2.0, -0.3])
def test_factorize_matches_numpy(c):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(50,)).astype(np.float32)
  x[:5] = 0.0
  m, w = op.factorize(jnp.asarray(x), c)
  m_ref, w_ref = _np_factorize(x.astype(np.float64), c)
  np.testing.assert_allclose(np.asarray(m), m_ref, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(w), w_ref, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(m * w), x, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(m * m - w * w), c, atol=1e-5)


def _quadratic(h, tx_, tb):
  def grad_np(x, b):
    return h * (x - tx_), b - tb

  def loss(p):
    return 0.5 * jnp.sum(h * (p["k"] - tx_) ** 2) + 0.5 * jnp.sum((p["b"] - tb) ** 2)

  return grad_np, loss


@pytest.mark.parametrize(
  "kind,wd,init,rescale",
  [
    ("sgd", 0.05, "balanced", None),
    ("momentum", "switch", "mask", None),
    ("adam", 0.0, 0.5, 3),
    ("adam", 0.01, "balanced", 4),
  ],
)
def test_trajectory_matches_float64_reference(kind, wd, init, rescale):
  rng = np.random.default_rng(1)
  x0 = rng.normal(size=(4, 3))
  b0 = rng.normal(size=(3,))
  h = rng.uniform(0.5, 2.0, size=(4, 3))
  tx_, tb = rng.normal(size=(4, 3)), rng.normal(size=(3,))
  grad_np, loss = _quadratic(h, tx_, tb)
  lr = {"sgd": 0.05, "momentum": 0.02, "adam": 0.01}[kind]
  inner = {
    "sgd": optax.sgd(lr),
    "momentum": optax.sgd(lr, momentum=0.9),
    "adam": optax.adam(lr),
  }[kind]
  if wd == "switch":
    wd_jax, wd_np = switch_off(0.1, 5), (lambda k: 0.1 if k < 5 else 0.0)
  else:
    wd_jax, wd_np = wd, (lambda k, v=wd: v)
  tx = op.pointwise_overparam(
    inner, weight_decay=wd_jax, init=init, rescale_every=rescale, rescale_balance=0.7
  )
  steps = 12
  ref = _np_overparam_run(x0, b0, grad_np, kind, lr, wd_np, init, rescale, 0.7, steps)

  params = {"k": jnp.asarray(x0, jnp.float32), "b": jnp.asarray(b0, jnp.float32)}
  state = tx.init(params)

  @jax.jit
  def step(params, state):
    g = jax.grad(loss)(params)
    u, state = tx.update(g, state, params)
    return optax.apply_updates(params, u), state

  for k in range(steps):
    params, state = step(params, state)
    np.testing.assert_allclose(np.asarray(params["k"]), ref[k][0], rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(np.asarray(params["b"]), ref[k][1], rtol=2e-4, atol=2e-5)
  # the wrapper owns the factorisation: params == m * w
  np.testing.assert_allclose(
    np.asarray(state.m["k"] * state.w["k"]), np.asarray(params["k"]), rtol=1e-5, atol=1e-6
  )


def _ista_lasso(Z, y, lam, iters=20000):
  n = Z.shape[0]
  L = np.linalg.norm(Z, 2) ** 2 / n
  x = np.zeros(Z.shape[1])
  for _ in range(iters):
    z = x - Z.T @ (Z @ x - y) / (n * L)
    x = np.sign(z) * np.maximum(np.abs(z) - lam / L, 0.0)
  return x


def test_spred_converges_to_lasso_solution():
  """spred: min L(m*w) + lam/2(|m|^2+|w|^2) has the minimisers of L(x) + lam |x|_1."""
  rng = np.random.default_rng(3)
  n, d, lam = 15, 30, 0.05
  Z = rng.normal(size=(n, d))
  xs = np.zeros(d)
  xs[:4] = [1.5, -2.0, 1.0, 0.8]
  y = Z @ xs
  x_ref = _ista_lasso(Z, y, lam)

  Zj, yj = jnp.asarray(Z, jnp.float32), jnp.asarray(y, jnp.float32)

  def loss(p):
    r = Zj @ p["x"][:, 0] - yj
    return 0.5 * jnp.mean(r * r)

  # init balance 1 (L2 start): with balance 0 an entry whose initial sign is wrong sits at
  # the saddle x = 0 for thousands of steps (the small inverse metric HAM addresses).
  tx = op.spred(optax.sgd(0.1), lam, init=1.0)
  params = {"x": jnp.asarray(rng.normal(size=(d, 1)) * 0.3, jnp.float32)}
  state = tx.init(params)

  def body(_, carry):
    p, s = carry
    u, s = tx.update(jax.grad(loss)(p), s, p)
    return optax.apply_updates(p, u), s

  params, state = jax.jit(lambda c: jax.lax.fori_loop(0, 12000, body, c))((params, state))
  x = np.asarray(params["x"][:, 0])
  np.testing.assert_allclose(x, x_ref, atol=2e-3)
  assert set(np.flatnonzero(np.abs(x) > 1e-2)) == set(np.flatnonzero(np.abs(x_ref) > 1e-2))


def test_external_change_is_refactorised_keeping_balance():
  rng = np.random.default_rng(4)
  params = {"k": jnp.asarray(rng.normal(size=(5, 4)), jnp.float32)}
  tx = op.pointwise_overparam(optax.sgd(0.1), init=0.3)
  state = tx.init(params)
  zero = np.zeros((5, 4), bool)
  zero[0] = True
  pruned = {"k": jnp.where(jnp.asarray(zero), 0.0, params["k"])}
  grads = {"k": jnp.zeros((5, 4))}
  update = jax.jit(tx.update)
  u, state = update(grads, state, pruned)
  m, w = np.asarray(state.m["k"]), np.asarray(state.w["k"])
  np.testing.assert_allclose(m * w, np.asarray(pruned["k"]), atol=1e-6)
  np.testing.assert_allclose(m * m - w * w, 0.3, atol=1e-5)  # balance kept everywhere
  assert np.all(w[0] == 0) and np.allclose(m[0], np.sqrt(0.3))
  np.testing.assert_allclose(np.asarray(u["k"]), 0.0, atol=1e-6)
  # a pruned entry regrows when its gradient is non-zero (w = 0, m != 0 -> dL/dw = g * m)
  u2, _ = update({"k": jnp.ones((5, 4))}, state, pruned)
  assert np.all(np.asarray(u2["k"])[0] < 0)


def test_sign_in_rescale_resets_balance_and_keeps_x():
  rng = np.random.default_rng(5)
  params = {"k": jnp.asarray(rng.normal(size=(6, 3)) * 0.1, jnp.float32)}
  tx = op.sign_in(optax.sgd(0.05), rescale_every=2, balance=1.0, weight_decay=0.5)
  state = tx.init(params)
  update = jax.jit(tx.update)
  for k in range(4):
    g = {"k": jnp.asarray(rng.normal(size=(6, 3)), jnp.float32)}
    u, state = update(g, state, params)
    params = optax.apply_updates(params, u)
    m, w = np.asarray(state.m["k"]), np.asarray(state.w["k"])
    np.testing.assert_allclose(m * w, np.asarray(params["k"]), rtol=1e-5, atol=1e-7)
    bal = m * m - w * w
    if (k + 1) % 2 == 0:
      np.testing.assert_allclose(bal, 1.0, atol=1e-5)
    else:  # weight decay shrank the balance in between
      assert np.all(bal < 1.0 - 1e-3)


def test_sign_in_flips_sign_where_balanced_overparam_cannot():
  """A weight at ~0 with a sign-flipping gradient: balance 0 stalls, Sign-In's reset moves it."""
  params = {"k": jnp.full((2, 2), 1e-4, jnp.float32)}
  g = {"k": jnp.ones((2, 2))}  # pushes x negative
  for tx, flips in [
    (op.pointwise_overparam(optax.sgd(0.1), init="balanced"), False),
    (op.sign_in(optax.sgd(0.1), rescale_every=1), True),
  ]:
    p, s = params, tx.init(params)
    update = jax.jit(tx.update)
    for _ in range(20):
      u, s = update(g, s, p)
      p = optax.apply_updates(p, u)
    assert bool(jnp.all(p["k"] < 0)) == flips


def test_state_memory_doubles_parameters():
  params = {"k1": jnp.zeros((64, 32)), "k2": jnp.zeros((32, 10)), "b": jnp.zeros((10,))}
  P = 64 * 32 + 32 * 10
  for inner, slots in [
    (optax.sgd(0.1), 0),
    (optax.sgd(0.1, momentum=0.9), 1),
    (optax.adam(1e-3), 2),
  ]:
    base = op.state_nbytes(inner, params)
    over = op.state_nbytes(op.spred(inner, 1e-4), params)
    # m and w (2P) + inner slots for both factors (2 * slots * P) + our int32 count
    assert over - base == 4 * (2 * P + slots * P) + 4
  adam_base = op.state_nbytes(optax.adam(1e-3), params)
  adam_over = op.state_nbytes(op.spred(optax.adam(1e-3), 1e-4), params)
  assert 2.9 < adam_over / adam_base < 3.1


def test_multisteps_and_jit_cond_stable():
  params = {"k": jnp.ones((3, 2))}
  tx = optax.MultiSteps(op.spred(optax.sgd(0.1), 0.01), every_k_schedule=2)
  state = tx.init(params)
  g = {"k": jnp.full((3, 2), 0.5)}
  update = jax.jit(tx.update)
  u, state = update(g, state, params)
  np.testing.assert_array_equal(np.asarray(u["k"]), 0.0)
  u, state = update(g, state, params)
  # balanced m = w = 1: m' = w' = 1 - 0.1 (0.5 + 0.01) = 0.949
  np.testing.assert_allclose(np.asarray(u["k"]), 0.949**2 - 1.0, rtol=1e-5)
  inner = op.pointwise_overparam(optax.adam(1e-2), weight_decay=1e-3)
  s0 = inner.init(params)
  s1 = jax.jit(lambda s: jax.lax.cond(True, lambda s: inner.update(g, s, params)[1], lambda s: s, s))(s0)
  chex_ok = jax.tree.map(lambda a, b: (a.shape, a.dtype) == (b.shape, b.dtype), s0, s1)
  assert all(jax.tree.leaves(chex_ok))


def test_inject_hyperparams_weight_decay():
  tx = optax.inject_hyperparams(op.pointwise_overparam, static_args=("mask",))(
    optax.sgd(0.1), weight_decay=switch_off(0.2, 1)
  )
  params = {"k": jnp.ones((2, 2))}
  s = tx.init(params)
  g = {"k": jnp.zeros((2, 2))}
  u, s = tx.update(g, s, params)
  np.testing.assert_allclose(np.asarray(u["k"]), (1 - 0.1 * 0.2) ** 2 - 1, rtol=1e-5)
  u, s = tx.update(g, s, optax.apply_updates(params, u))
  np.testing.assert_allclose(np.asarray(u["k"]), 0.0, atol=1e-7)


def test_bad_hyperparameters_raise():
  sgd = optax.sgd(0.1)
  with pytest.raises(ValueError, match="weight_decay"):
    op.pointwise_overparam(sgd, weight_decay=-1.0)
  with pytest.raises(TypeError, match="weight_decay"):
    op.spred(sgd, "0.1")
  with pytest.raises(ValueError, match="rescale_every"):
    op.pointwise_overparam(sgd, rescale_every=0)
  with pytest.raises(TypeError, match="rescale_every"):
    op.pointwise_overparam(sgd, rescale_every=2.5)
  with pytest.raises(ValueError, match="init"):
    op.pointwise_overparam(sgd, init="random")
  with pytest.raises(ValueError, match="init"):
    op.pointwise_overparam(sgd, init=float("nan"))
  with pytest.raises(TypeError, match="inner"):
    op.pointwise_overparam(lambda g: g)
  with pytest.raises(ValueError, match="rescale_every"):
    op.sign_in(sgd, None)
  params = {"k": jnp.ones((2, 2)), "i": jnp.ones((2, 2), jnp.int32)}
  tx = op.pointwise_overparam(sgd, mask={"k": True, "i": True})
  with pytest.raises(TypeError, match="pointwise_overparam: .*floating-point"):
    tx.init(params)
  with pytest.raises(TypeError, match="must be a bool"):
    op.pointwise_overparam(sgd, mask={"k": 1, "i": 0}).init(params)
  with pytest.raises(ValueError, match="'extra'"):
    op.pointwise_overparam(sgd, mask={"k": True, "i": False, "extra": True}).init(params)
  tx = op.spred(sgd, 0.1)
  with pytest.raises(ValueError):
    tx.update({"k": jnp.ones((2, 2))}, tx.init({"k": jnp.ones((2, 2))}), None)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_dtypes_preserved(dtype):
  params = {"k": jnp.ones((3, 2), dtype), "b": jnp.zeros((2,), dtype)}
  for tx in (op.spred(optax.adam(1e-2), 1e-3), op.sign_in(optax.sgd(0.1), 2)):
    s = tx.init(params)
    u, s = jax.jit(tx.update)(jax.tree.map(jnp.ones_like, params), s, params)
    assert all(a.dtype == dtype for a in jax.tree.leaves(u))
    assert s.m["k"].dtype == dtype and s.w["k"].dtype == dtype


def test_factorize_property():
  from hypothesis import given
  from hypothesis import strategies as st

  floats = st.floats(-1e3, 1e3, allow_nan=False, width=32)

  @given(st.lists(floats, min_size=8, max_size=8), st.floats(-10, 10, allow_nan=False), st.booleans())
  def check(xs, c, neg_m):
    x = np.asarray(xs, np.float64)
    m, w = op.factorize(jnp.asarray(x), c, sign_m=-jnp.ones_like(x) if neg_m else None)
    m, w = np.asarray(m), np.asarray(w)
    np.testing.assert_allclose(m * w, x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(m * m - w * w, c, atol=1e-9 * (1 + np.abs(x).max()))
    big = np.abs(m) if c >= 0 else np.abs(w)
    assert np.all(big >= np.abs(m if c < 0 else w) - 1e-12)  # the dominant factor carries the balance
    if neg_m:
      assert np.all(m <= 0)

  jax.config.update("jax_enable_x64", True)  # restored by the conftest fixture
  check()


@pytest.mark.slow  # ~25 s on a 2-core CPU (data generation + compiling the training loop)
def test_training_sign_in_with_random_pruning_stays_sparse(tmp_path):
  """The sparse-training row: random PaI (90 %) around sign_in keeps exactly the pruned weights at 0."""
  import dataclasses

  from ham_optax_examples import data as data_lib
  from ham_optax_examples.configs.default import Config
  from ham_optax_examples.train import train_and_evaluate

  ds = data_lib.load_mnist1d(num_samples=300, cache=tmp_path)
  ds = dataclasses.replace(
    ds, x_val=ds.x_val[:32], y_val=ds.y_val[:32], x_test=ds.x_test[:32], y_test=ds.y_test[:32]
  )
  config = Config(
    width=16,
    epochs=2,
    batch_size=8,
    max_steps=3,
    num_train=64,
    sparsifier="random",
    sparsity=0.9,
    sign_in=True,
    sign_in_every=1,
    progress=False,
  )
  assert config.method == "random+Sign-In"
  r = train_and_evaluate(config, ds)
  assert [h["step"] for h in r["history"]] == [3, 6] and np.isfinite(r["history"][-1]["train_loss"])
  assert abs(r["sparsity"] - 0.9) < 0.01
  with pytest.raises(ValueError, match="sign_in"):
    Config(ham=True, sign_in=True).validate()


def test_wrapper_matches_hand_written_mw_gd_in_float64():
  """pointwise_overparam(sgd) == plain GD on (m, w) with x = m * w (the implicit-bias benchmark's m*w row)."""
  jax.config.update("jax_enable_x64", True)  # restored by the conftest fixture
  rng = np.random.default_rng(7)
  Z = rng.normal(size=(6, 15)) / np.sqrt(6)
  y = Z @ np.where(rng.random(15) < 0.3, rng.normal(size=15), 0.0)
  x0 = 1e-2 * rng.normal(size=15)
  gamma, lr, steps = 0.05, 0.05, 300
  Zj, yj = jnp.asarray(Z), jnp.asarray(y)

  def loss_x(x):
    r = Zj @ x - yj
    return 0.5 * jnp.dot(r, r)

  tx = op.pointwise_overparam(optax.sgd(lr), mask=lambda p: jax.tree.map(lambda _: True, p), init=gamma)

  def body(_, carry):
    x, s, mw = carry
    u, s = tx.update(jax.grad(loss_x)(x), s, x)
    gm, gw = jax.grad(lambda q: loss_x(q[0] * q[1]))(mw)
    return optax.apply_updates(x, u), s, (mw[0] - lr * gm, mw[1] - lr * gw)

  x = jnp.asarray(x0)
  m0 = np.sqrt((gamma + np.sqrt(gamma**2 + 4 * x0**2)) / 2)  # the benchmark's mw_init, in NumPy
  carry = (x, tx.init(x), (jnp.asarray(m0), jnp.asarray(x0 / m0)))
  x, _, (m, w) = jax.jit(lambda c: jax.lax.fori_loop(0, steps, body, c))(carry)
  assert x.dtype == jnp.float64
  np.testing.assert_allclose(np.asarray(x), np.asarray(m * w), rtol=1e-10, atol=1e-13)
  assert np.abs(np.asarray(x) - x0).max() > 1e-3  # it moved


# ---------------------------------------------------------------------------- PILoT and Sign-In as described


def _np_pilot_decay(k, lam, T, shape):
  if k >= T:
    return 0.0
  u = k / T
  return lam * {"constant": 1.0, "linear": 1.0 - u, "cosine": 0.5 * (1.0 + np.cos(np.pi * u))}[shape]


@pytest.mark.parametrize("shape", ["constant", "linear", "cosine"])
def test_pilot_schedule_matches_numpy(shape):
  sched = op.pilot_schedule(0.3, 7, shape)
  got = [float(sched(k)) for k in range(10)]
  np.testing.assert_allclose(
    got, [_np_pilot_decay(k, 0.3, 7, shape) for k in range(10)], rtol=1e-6, atol=1e-7
  )
  # a schedule as the strength: lam_k * s(k / T)
  sched = op.pilot_schedule(lambda k: 0.1 * (k + 1), 4, shape)
  np.testing.assert_allclose(
    [float(sched(k)) for k in range(6)],
    [_np_pilot_decay(k, 0.1 * (k + 1), 4, shape) for k in range(6)],
    rtol=1e-6,
    atol=1e-7,
  )


@pytest.mark.parametrize("shape", ["constant", "linear"])
def test_pilot_trajectory_switches_off_and_is_not_spred(shape):
  """pilot(inner, lam, T) with defaults: balance-1 start, decay s(k/T) then off; differs from spred(init=1)."""
  rng = np.random.default_rng(11)
  x0, b0 = rng.normal(size=(4, 3)), rng.normal(size=(3,))
  h = rng.uniform(0.5, 2.0, size=(4, 3))
  grad_np, loss = _quadratic(h, rng.normal(size=(4, 3)), rng.normal(size=(3,)))
  lam, T, lr, steps = 0.2, 6, 0.05, 12
  ref = _np_overparam_run(
    x0, b0, grad_np, "sgd", lr, lambda k: _np_pilot_decay(k, lam, T, shape), 1.0, None, 0.0, steps
  )
  tx = op.pilot(optax.sgd(lr), lam, T, shape=shape)
  params = {"k": jnp.asarray(x0, jnp.float32), "b": jnp.asarray(b0, jnp.float32)}
  state = tx.init(params)
  step = jax.jit(lambda p, s: tx.update(jax.grad(loss)(p), s, p))
  for k in range(steps):
    u, state = step(params, state)
    params = optax.apply_updates(params, u)
    np.testing.assert_allclose(np.asarray(params["k"]), ref[k][0], rtol=2e-4, atol=2e-5)
  # after the switch, a zero gradient leaves PILoT's weights alone while spred keeps shrinking them
  zero = jax.tree.map(jnp.zeros_like, params)
  u, _ = tx.update(zero, state, params)
  np.testing.assert_allclose(np.asarray(u["k"]), 0.0, atol=1e-7)
  spred = op.spred(optax.sgd(lr), lam, init=1.0)
  s2 = spred.init(params)
  for _ in range(T + 1):
    u2, s2 = spred.update(zero, s2, params)
  assert np.abs(np.asarray(u2["k"])).max() > 1e-3
  with pytest.raises(TypeError):
    op.pilot(optax.sgd(lr), lam)  # the switch-off step is required
  with pytest.raises(ValueError, match="shape"):
    op.pilot(optax.sgd(lr), lam, T, shape="step")
  with pytest.raises(ValueError, match="switch_step"):
    op.pilot(optax.sgd(lr), lam, 0)


def test_sign_in_rescale_keeps_m_sign_and_direction():
  """One entry with m < 0 before a rescale: x's velocity keeps its direction (momentum kept)."""
  lr, c_reset, g = 0.1, 0.1, 1.0
  m0, w0 = -1.2, 0.5  # x = -0.6; the gradient pushes x further down
  tx = op.sign_in(optax.sgd(lr, momentum=0.9), rescale_every=2, balance=c_reset)
  params = {"k": jnp.full((1, 1), m0 * w0, jnp.float32)}
  state = tx.init(params)
  state = state._replace(
    m={"k": jnp.full((1, 1), m0, jnp.float32)}, w={"k": jnp.full((1, 1), w0, jnp.float32)}
  )
  update = jax.jit(tx.update)
  dx = []
  for _ in range(3):
    u, state = update({"k": jnp.full((1, 1), g, jnp.float32)}, state, params)
    params = optax.apply_updates(params, u)
    dx.append(float(u["k"][0, 0]))
  assert float(state.m["k"][0, 0]) < 0  # the rescale at step 2 kept m's sign

  def np_run(keep_sign):
    m, w, vm, vw, out = m0, w0, 0.0, 0.0, []
    for k in range(3):
      vm, vw = g * w + 0.9 * vm, g * m + 0.9 * vw
      x_old = m * w
      m, w = m - lr * vm, w - lr * vw
      if (k + 1) % 2 == 0:
        if keep_sign:
          mm, ww = _np_rescale(np.array(m), np.array(w), c_reset)
        else:  # the previous rule: m forced positive
          mm, ww = _np_factorize(np.array(m * w), c_reset)
        m, w = float(mm), float(ww)
      out.append(m * w - x_old)
    return out

  np.testing.assert_allclose(dx, np_run(True), rtol=1e-5, atol=1e-7)
  assert all(d < 0 for d in dx)  # same direction before and after the rescale
  assert np_run(False)[2] > 0  # forcing m > 0 reverses x's velocity after the rescale


def test_sign_in_decay_in_inner_shrinks_balance_like_weight_decay():
  """Sign-In's decay: in ``inner`` or as ``weight_decay`` (the same for SGD), shrinking c between rescales."""
  rng = np.random.default_rng(12)
  x0 = rng.normal(size=(4, 3)) * 0.3
  h = rng.uniform(0.5, 2.0, size=(4, 3))
  grad_np, loss = _quadratic(h, rng.normal(size=(4, 3)), np.zeros(3))
  lam, lr, steps, every = 0.05, 0.05, 9, 4
  ref = _np_overparam_run(x0, np.zeros(3), grad_np, "sgd", lr, lambda k: lam, 1.0, every, 1.0, steps)
  params = {"k": jnp.asarray(x0, jnp.float32), "b": jnp.zeros(3)}
  for tx in (
    op.sign_in(
      optax.chain(optax.add_decayed_weights(lam), optax.sgd(lr)), every, mask={"k": True, "b": False}
    ),
    op.sign_in(optax.sgd(lr), every, weight_decay=lam, mask={"k": True, "b": False}),
  ):
    p, s = params, tx.init(params)
    step = jax.jit(lambda p, s, tx=tx: tx.update(jax.grad(loss)(p), s, p))
    for k in range(steps):
      u, s = step(p, s)
      p = optax.apply_updates(p, u)
      np.testing.assert_allclose(np.asarray(p["k"]), ref[k][0], rtol=2e-4, atol=2e-5)
      bal = np.asarray(s.m["k"] ** 2 - s.w["k"] ** 2)
      if (k + 1) % every:
        assert np.all(bal < 1.0 - 1e-4)  # decay shrank the balance
      else:
        np.testing.assert_allclose(bal, 1.0, atol=1e-5)


def test_factorize_large_integer_and_broadcast_inputs():
  m, w = op.factorize(jnp.array([1e20, -1e30], jnp.float32), 0.0)  # x^2 overflows float32
  np.testing.assert_allclose(np.asarray(m), [1e10, 1e15], rtol=1e-6)
  np.testing.assert_allclose(np.asarray(m * w), [1e20, -1e30], rtol=1e-6)
  m, w = op.factorize(np.array([2, -3, 5]), 0.5)  # integers: factored as real numbers
  np.testing.assert_allclose(np.asarray(m * w), [2, -3, 5], rtol=1e-6)
  np.testing.assert_allclose(np.asarray(m**2 - w**2), 0.5, rtol=1e-5)
  with pytest.raises(ValueError, match=r"factorize: balance must be a scalar or broadcast to \(3,\)"):
    op.factorize(jnp.ones(3), jnp.ones(2))
