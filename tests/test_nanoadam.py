"""Tests for ham_optax.nanoadam (the optimizer) against a float64 NumPy reference."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ham_optax import default_mask, nanoadam, nanoadam_default_mask, selected_count
from ham_optax.overparam import state_nbytes

KERNEL_ONLY = {"k": True, "b": False}


def _np_density(t, fraction, d, total, final):
  td = (t // d) * d
  if total is None:
    return fraction
  return fraction + (final - fraction) * min(td / total, 1.0)


def _np_nanoadam(
  x0,
  b0,
  grad_fn,
  lr,
  fraction,
  refresh,
  steps,
  b1=0.9,
  b2=0.999,
  eps=1e-8,
  wd=0.0,
  total=None,
  final=None,
  d=None,
  chunk=None,
  per_entry=True,
):
  """float64 rendering of NanoAdam: kernel x sparsely updated (per-entry bias correction), bias b dense Adam.

  ``per_entry=False`` renders the rule with the global step count in the bias correction instead.
  Returns the trajectory and, per step, the sorted list of selected flat indices.
  """
  d = refresh if d is None else d
  final = 0.4 * fraction if final is None else final
  x, b = x0.copy(), b0.copy()
  n = x.size
  c = n if chunk is None else min(chunk, n)
  rows = -(-n // c)
  k_max = selected_count(c, fraction)

  def k_at(t):
    return int(np.clip(round(_np_density(t, fraction, d, total, final) * c), 1, k_max))

  mu, nu, age = np.zeros(n), np.zeros(n), np.zeros(n, int)
  mb, vb = np.zeros_like(b), np.zeros_like(b)
  sel = None
  traj, selected = [], []
  for t in range(steps):
    k = k_at(t)
    if t % refresh == 0 or k != k_at(max(t - 1, 0)):
      flat = np.abs(x.reshape(-1))
      new = np.concatenate(
        [r * c + np.argsort(flat[r * c : (r + 1) * c], kind="stable")[:k] for r in range(rows)]
      )
      keep = np.zeros(n, bool)
      keep[new] = True
      mu[~keep], nu[~keep], age[~keep] = 0.0, 0.0, 0  # dropped entries forget their moments
      sel = new
    gx, gb = grad_fn(x, b)
    g = gx.reshape(-1)[sel]
    age[sel] += 1
    a = age[sel] if per_entry else t + 1
    mu[sel] = b1 * mu[sel] + (1 - b1) * g
    nu[sel] = b2 * nu[sel] + (1 - b2) * g * g
    xf = x.reshape(-1).copy()
    xf[sel] -= lr * ((mu[sel] / (1 - b1**a)) / (np.sqrt(nu[sel] / (1 - b2**a)) + eps) + wd * xf[sel])
    x = xf.reshape(x.shape)
    mb = b1 * mb + (1 - b1) * gb
    vb = b2 * vb + (1 - b2) * gb * gb
    b = b - lr * ((mb / (1 - b1 ** (t + 1))) / (np.sqrt(vb / (1 - b2 ** (t + 1))) + eps))
    traj.append((x.copy(), b.copy()))
    selected.append(sorted(sel.tolist()))
  return traj, selected


def _quadratic(seed, shape=(6, 5)):
  rng = np.random.default_rng(seed)
  x0, b0 = rng.normal(size=shape), rng.normal(size=shape[-1:])
  h = rng.uniform(0.5, 2.0, size=shape)
  tx_, tb = rng.normal(size=shape), rng.normal(size=shape[-1:])

  def grad_np(x, b):
    return h * (x - tx_), b - tb

  def loss(p):
    return 0.5 * jnp.sum(h * (p["k"] - tx_) ** 2) + 0.5 * jnp.sum((p["b"] - tb) ** 2)

  return x0, b0, grad_np, loss


def _run(tx, params, loss, steps):
  state = tx.init(params)

  @jax.jit
  def step(p, s):
    u, s = tx.update(jax.grad(loss)(p), s, p)
    return optax.apply_updates(p, u), s, u

  out = []
  for _ in range(steps):
    params, state, u = step(params, state)
    out.append((params, u))
  return out, state


@pytest.mark.parametrize(
  "kw",
  [
    dict(fraction=0.3, refresh=3, wd=0.0),
    dict(fraction=0.1, refresh=1, wd=0.05),
    dict(fraction=1.0, refresh=5, wd=0.0),
    # density schedule: 0.5 -> 0.2 over 13 steps, evaluated every 2 steps, refresh every 5
    dict(fraction=0.5, refresh=5, wd=0.0, total=13, final=0.2, d=2),
    # per-chunk selection (chunks of 8, the last one 6 long) with the default 0.4x decay
    dict(fraction=0.5, refresh=4, wd=0.01, total=10, chunk=8),
  ],
)
def test_matches_float64_reference(kw):
  x0, b0, grad_np, loss = _quadratic(0)
  steps, lr = 14, 0.05
  ref, ref_sel = _np_nanoadam(
    x0,
    b0,
    grad_np,
    lr,
    kw["fraction"],
    kw["refresh"],
    steps,
    wd=kw["wd"],
    total=kw.get("total"),
    final=kw.get("final"),
    d=kw.get("d"),
    chunk=kw.get("chunk"),
  )
  tx = nanoadam(
    lr,
    kw["fraction"],
    kw["refresh"],
    weight_decay=kw["wd"],
    total_steps=kw.get("total"),
    final_fraction=kw.get("final"),
    density_every=kw.get("d"),
    chunk_size=kw.get("chunk"),
    mask=KERNEL_ONLY,
  )
  params = {"k": jnp.asarray(x0, jnp.float32), "b": jnp.asarray(b0, jnp.float32)}
  out, _ = _run(tx, params, loss, steps)
  for c, (p, u) in enumerate(out):
    assert sorted(np.flatnonzero(np.asarray(u["k"]).ravel()).tolist()) == ref_sel[c], c
    np.testing.assert_allclose(np.asarray(p["k"]), ref[c][0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(p["b"]), ref[c][1], rtol=1e-4, atol=1e-5)


def test_density_schedule_default_linear_decay_and_refresh_on_change():
  """Default with total_steps: density 10 % -> 4 % linearly; re-selection at every m steps or count change."""
  n_rows = 50  # 50 x 20 = 1000 entries: k = 100 at step 0, 40 at the end
  x0 = np.random.default_rng(1).normal(size=(n_rows, 20))
  total, refresh, d = 100, 50, 10
  tx = nanoadam(1e-3, 0.1, refresh, total_steps=total, density_every=d, mask=lambda p: True)
  p = jnp.asarray(x0, jnp.float32)
  s = tx.init(p)
  update = jax.jit(tx.update)
  counts = []
  for _ in range(total + 5):
    u, s = update(jnp.ones_like(p), s, p)
    counts.append(int((np.asarray(u) != 0).sum()))
  expected = [round((0.1 + (0.04 - 0.1) * min((t // d) * d / total, 1.0)) * 1000) for t in range(total + 5)]
  assert counts == expected
  assert counts[0] == 100 and counts[-1] == 40
  # the selection follows |x| at each density change (here at every 10 steps), not only every 50
  ref = _np_nanoadam(
    x0, np.zeros(1), lambda x, b: (np.ones_like(x), b), 1e-3, 0.1, refresh, total, total=total, d=d
  )[1]
  assert [len(r) for r in ref] == expected[:total]


def test_chunked_selection_picks_per_chunk():
  x = jnp.asarray([[5.0, 4.0, 3.0, 2.0], [1.0, 0.5, 9.0, 8.0], [0.1, 7.0, 6.0, 0.2]])
  tx = nanoadam(0.1, 0.25, 10, chunk_size=4, mask=lambda p: True)
  u, s = jax.jit(tx.update)(jnp.ones_like(x), tx.init(x), x)
  # one entry per row-chunk of 4: the smallest |x| in each (global smallest three would be 0.1, 0.2, 0.5)
  assert np.flatnonzero(np.asarray(u).ravel()).tolist() == [3, 5, 8]
  whole = nanoadam(0.1, 0.25, 10, mask=lambda p: True)
  u, _ = jax.jit(whole.update)(jnp.ones_like(x), whole.init(x), x)
  assert np.flatnonzero(np.asarray(u).ravel()).tolist() == [5, 8, 11]


def test_new_entry_first_step_is_at_most_lr():
  """An entry selected late starts like a fresh Adam: its first step is <= lr.

  With the global step count in the bias correction (the previous rule, rendered in NumPy here) the same
  entry's first step is ~2.5x lr after 1000 steps.
  """
  lr, refresh, steps = 0.01, 1000, 1002
  x0 = np.array([[0.0, 9.0], [11.0, 12.0]])
  g = -np.ones_like(x0)  # grows the selected entry by ~lr per step: 0 -> ~10 > 9 after 1000 steps
  tx = nanoadam(lr, 0.25, refresh, mask=lambda p: True)
  p = jnp.asarray(x0, jnp.float32)

  def body(carry, _):
    p, s = carry
    u, s = tx.update(jnp.asarray(g, jnp.float32), s, p)
    return (optax.apply_updates(p, u), s), u

  _, us = jax.jit(lambda p: jax.lax.scan(body, (p, tx.init(p)), None, length=steps))(p)
  us = np.asarray(us).reshape(steps, -1)
  ref, sel = _np_nanoadam(x0, np.zeros(1), lambda x, b: (g, b), lr, 0.25, refresh, steps)
  ref_global, _ = _np_nanoadam(
    x0, np.zeros(1), lambda x, b: (g, b), lr, 0.25, refresh, steps, per_entry=False
  )
  assert sel[refresh - 1] == [0] and sel[refresh] == [1]  # entry 1 is new at step 1000
  first = us[refresh, 1]
  np.testing.assert_allclose(first, ref[refresh][0].ravel()[1] - ref[refresh - 1][0].ravel()[1], rtol=1e-4)
  np.testing.assert_allclose(
    us[refresh + 1, 1], ref[refresh + 1][0].ravel()[1] - ref[refresh][0].ravel()[1], rtol=1e-4
  )
  assert 0 < first <= lr * (1 + 1e-5)
  assert ref_global[refresh][0].ravel()[1] - ref_global[refresh - 1][0].ravel()[1] > 2.4 * lr  # the old rule


def test_default_mask_updates_head_and_norms_densely():
  rng = np.random.default_rng(3)
  params = {
    "w0": jnp.asarray(rng.normal(size=(8, 16)), jnp.float32),
    "w1": jnp.asarray(rng.normal(size=(16, 4)), jnp.float32),  # the head of a plain stack: last kernel
    "ln": {"scale": jnp.ones((1, 16)), "bias": jnp.zeros((1, 16))},
    "b0": jnp.zeros((16,)),
  }
  assert nanoadam_default_mask(params) == {
    "w0": True,
    "w1": False,
    "ln": {"scale": False, "bias": False},
    "b0": False,
  }
  grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
  tx = nanoadam(1e-2, 0.1, 10)
  u, _ = jax.jit(tx.update)(grads, tx.init(params), params)
  ua, _ = jax.jit(optax.adam(1e-2).update)(grads, optax.adam(1e-2).init(params), params)
  for name in ("w1", "b0"):
    np.testing.assert_allclose(np.asarray(u[name]), np.asarray(ua[name]), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(u["ln"]["scale"]), np.asarray(ua["ln"]["scale"]), rtol=1e-6)
  assert int((np.asarray(u["w0"]) != 0).sum()) == selected_count(128, 0.1) == 13
  # named heads and layer norms (as in the authors' configuration), natural order of numbered layers
  named = {
    "layers_2": {"kernel": jnp.ones((3, 3))},
    "layers_10": {"kernel": jnp.ones((3, 3))},
    "lm_head": {"kernel": jnp.ones((3, 3))},
    "layernorm": {"kernel": jnp.ones((3, 3))},
  }
  assert nanoadam_default_mask(named) == {
    "layers_2": {"kernel": True},
    "layers_10": {"kernel": True},
    "lm_head": {"kernel": False},
    "layernorm": {"kernel": False},
  }
  del named["lm_head"]
  assert nanoadam_default_mask(named)["layers_10"] == {"kernel": False}  # last in natural order
  resnet = {"stem": jnp.ones((3, 3, 3, 8)), "fc": jnp.ones((8, 10)), "bn1": {"scale": jnp.ones((1, 8))}}
  assert nanoadam_default_mask(resnet) == {"stem": True, "fc": False, "bn1": {"scale": False}}
  # a documented way to choose: every kernel (the previous default) or other exclusions
  assert nanoadam(1e-2, mask=default_mask).init(params).idx["w1"].shape == (1, selected_count(64, 0.1))
  custom = functools.partial(nanoadam_default_mask, exclude=("w0",), exclude_head=False)
  assert custom(params)["w1"] and not custom(params)["w0"]


def test_fraction_one_is_adam():
  rng = np.random.default_rng(1)
  params = {"k": jnp.asarray(rng.normal(size=(4, 4)), jnp.float32)}
  a, b = nanoadam(1e-2, 1.0, 3, mask=lambda p: True), optax.adam(1e-2)
  sa, sb = a.init(params), b.init(params)
  pa = pb = params
  upa, upb = jax.jit(a.update), jax.jit(b.update)
  for _ in range(7):
    g = {"k": jnp.asarray(rng.normal(size=(4, 4)), jnp.float32)}
    ua, sa = upa(g, sa, pa)
    ub, sb = upb(g, sb, pb)
    pa, pb = optax.apply_updates(pa, ua), optax.apply_updates(pb, ub)
  np.testing.assert_allclose(np.asarray(pa["k"]), np.asarray(pb["k"]), rtol=1e-5, atol=1e-6)


def test_float64_fraction_one_is_adam_to_float64_precision():
  jax.config.update("jax_enable_x64", True)  # restored by the conftest fixture
  rng = np.random.default_rng(4)
  params = {"k": jnp.asarray(1 + 1e-9 * rng.normal(size=(4, 4)))}  # distinct only in float64
  a, b = nanoadam(1e-2, 1.0, 3, mask=lambda p: True), optax.adam(1e-2)
  sa, sb, pa, pb = a.init(params), b.init(params), params, params
  for _ in range(7):
    g = {"k": jnp.asarray(rng.normal(size=(4, 4)))}
    (ua, sa), (ub, sb) = a.update(g, sa, pa), b.update(g, sb, pb)
    pa, pb = optax.apply_updates(pa, ua), optax.apply_updates(pb, ub)
  np.testing.assert_allclose(np.asarray(pa["k"]), np.asarray(pb["k"]), rtol=1e-13)
  # The smallest weight of a float64 tensor is chosen by its float64 magnitude (not a float32 tie).
  w = {"k": jnp.array([[1.0 + 1e-9, 1.0], [1.0 + 2e-9, 1.0 + 3e-9]])}
  tx = nanoadam(1e-2, 0.25, 1, mask=lambda p: True)
  u, _ = tx.update({"k": jnp.ones((2, 2))}, tx.init(w), w)
  assert np.flatnonzero(np.asarray(u["k"])).tolist() == [1]


def test_large_weights_frozen_exactly_and_memory():
  rng = np.random.default_rng(2)
  params = {"k": jnp.asarray(rng.normal(size=(40, 25)), jnp.float32), "b": jnp.zeros((25,))}
  tx = nanoadam(1e-2, 0.1, 1000, mask=KERNEL_ONLY)
  s = tx.init(params)
  g = jax.tree.map(jnp.ones_like, params)
  u, s = jax.jit(tx.update)(g, s, params)
  changed = np.asarray(u["k"]) != 0
  assert changed.sum() == selected_count(1000, 0.1) == 100
  thresh = np.sort(np.abs(np.asarray(params["k"])).ravel())[99]
  assert np.all(np.abs(np.asarray(params["k"]))[changed] <= thresh)
  # memory: 4k numbers for the kernel (int32 idx, int32 age, f32 mu, f32 nu) vs Adam's 2n
  adam_bytes, nano_bytes = state_nbytes(optax.adam(1e-2), params), state_nbytes(tx, params)
  assert nano_bytes == 4 + 4 * 100 * 4 + 2 * 25 * 4
  assert adam_bytes == 4 + 2 * (1000 + 25) * 4


def test_refresh_moves_selection_and_inject_hyperparams():
  params = {"k": jnp.asarray([[0.01, 1.0], [2.0, 3.0]])}
  tx = optax.inject_hyperparams(nanoadam, static_args=("fraction", "refresh_every", "mask"))(
    learning_rate=0.5, fraction=0.25, refresh_every=2, mask=KERNEL_ONLY["k"]
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


@pytest.mark.parametrize(
  "kwargs,error,match",
  [
    (dict(fraction=0.0), ValueError, "fraction"),
    (dict(fraction=1.5), ValueError, "fraction"),
    (dict(refresh_every=0), ValueError, "refresh_every"),
    (dict(refresh_every=1.5), TypeError, "refresh_every"),
    (dict(b2=1.0), ValueError, "b2"),
    (dict(eps=0.0), ValueError, "eps"),
    (dict(learning_rate=-1e-3), ValueError, "learning_rate"),
    (dict(learning_rate="1e-3"), TypeError, "learning_rate"),
    (dict(total_steps=10, final_fraction=0.2), ValueError, "final_fraction"),
    (dict(total_steps=0), ValueError, "total_steps"),
    (dict(chunk_size=0), ValueError, "chunk_size"),
    (dict(density_every=2.0), TypeError, "density_every"),
    (dict(fraction_schedule=0.1), TypeError, "fraction_schedule"),
  ],
)
def test_bad_hyperparameters_raise(kwargs, error, match):
  kwargs = {"learning_rate": 1e-3, **kwargs}
  with pytest.raises(error, match=match):
    nanoadam(**kwargs)


def test_bad_inputs_raise():
  tx = nanoadam(1e-3)
  with pytest.raises(ValueError, match="params"):
    tx.update({"k": jnp.ones((2, 2))}, tx.init({"k": jnp.ones((2, 2))}), None)
  with pytest.raises(TypeError, match="nanoadam: .*floating-point"):
    nanoadam(1e-3, mask={"i": True}).init({"i": jnp.ones((2, 2), jnp.int32)})


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_dtypes_preserved(dtype):
  params = {"k": jnp.ones((4, 4), dtype), "b": jnp.zeros((4,), dtype)}
  tx = nanoadam(1e-2, 0.25, 2, mask=KERNEL_ONLY)
  s = tx.init(params)
  u, s = jax.jit(tx.update)(jax.tree.map(jnp.ones_like, params), s, params)
  assert all(a.dtype == dtype for a in jax.tree.leaves(u))
  assert int((np.asarray(u["k"], np.float32) != 0).sum()) == 4
