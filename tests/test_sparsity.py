"""Tests of ham_optax.sparsity: exact sparsity, pruned weights stay zero, schedules vs NumPy renderings, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ham_optax
from ham_optax import sparsity as sp
from ham_optax._src.sparsity import methods as sparsity_methods

SHAPES = {"conv": (3, 3, 4, 8), "dense": (72, 16), "bias": (16,), "out": (16, 10)}
PRUNABLE = ("conv", "dense", "out")  # ndim >= 2 (the default selection); "bias" is dense.
N_TOTAL = sum(int(np.prod(SHAPES[k])) for k in PRUNABLE)


def _params(seed: int = 0) -> dict[str, jax.Array]:
  keys = jax.random.split(jax.random.key(seed), len(SHAPES))
  return {
    k: 0.5 * jax.random.normal(key, s) for key, (k, s) in zip(keys, sorted(SHAPES.items()), strict=True)
  }


TARGETS = _params(seed=1)


def _loss(p: dict[str, jax.Array]) -> jax.Array:
  # Separable quadratic: the gradient p - target is dense everywhere (also at pruned weights).
  return sum(0.5 * jnp.sum((p[k] - TARGETS[k]) ** 2) for k in p)


def _run(tx, steps: int, seed: int = 0, apply_first: bool = True):
  """Runs `steps` jitted steps; returns the per-step (params, masks) after each step."""
  params = _params(seed)
  state = tx.init(params)
  if apply_first:
    params = sp.apply_masks(params, state)

  @jax.jit
  def step(p, s):
    g = jax.grad(_loss)(p)
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s

  history = []
  for _ in range(steps):
    params, state = step(params, state)
    history.append((params, sp.get_masks(state)))
  return params, state, history


def _zeros(p) -> dict[str, int]:
  return {k: int(np.sum(np.asarray(p[k]) == 0)) for k in PRUNABLE}


def _assert_pruned_zero(params, masks):
  for k in SHAPES:
    m = np.asarray(masks[k])
    if k in PRUNABLE:
      assert m.shape == SHAPES[k] and m.dtype == np.bool_
      np.testing.assert_array_equal(np.asarray(params[k])[~m], 0.0)
    else:
      assert m.shape == SHAPES[k] and m.dtype == np.bool_ and m.all()


INNERS = {
  "sgd": lambda: optax.sgd(0.05, momentum=0.9),
  "adamw": lambda: optax.adamw(0.05, weight_decay=0.1),
  "ham": lambda: ham_optax.ham(optax.sgd(0.05, momentum=0.9), 0.05, alpha=2.0, beta=1e-3),
}

METHODS = {
  "random_erk": lambda inner: sp.random_pruning(inner, 0.8, distribution="erk", seed=3),
  "random_uniform": lambda inner: sp.random_pruning(inner, 0.8, distribution="uniform"),
  "gmp_global": lambda inner: sp.magnitude_pruning(inner, 0.8, begin_step=2, end_step=14, frequency=4),
  "gmp_layer": lambda inner: sp.magnitude_pruning(
    inner, 0.8, begin_step=0, end_step=10, frequency=3, initial_sparsity=0.2, scope="layer"
  ),
  "acdc": lambda inner: sp.acdc(inner, 0.8, total_steps=24, phase_steps=3),
  "rigl": lambda inner: sp.rigl(inner, 0.8, update_every=3, end_step=18, drop_fraction=0.5),
}


# The full method x optimizer matrix. The default run keeps every method with HAM (the pairing this library is
# for) and AdamW (decoupled weight decay must not revive pruned weights) for RigL;
# the rest is marked slow to keep the default run short on a 2-core machine.
_DEFAULT = {("rigl", "adamw")}
MATRIX = [
  pytest.param(m, i, marks=[] if i == "ham" or (m, i) in _DEFAULT else [pytest.mark.slow], id=f"{m}-{i}")
  for m in sorted(METHODS)
  for i in sorted(INNERS)
]


@pytest.mark.parametrize(("method", "inner"), MATRIX)
def test_pruned_weights_stay_zero_and_training_progresses(method, inner):
  tx = METHODS[method](INNERS[inner]())
  params, _, history = _run(tx, steps=24)
  for p, m in history:
    _assert_pruned_zero(p, m)
  # Every method ends at exactly round(0.8 * n) zeros (globally; per layer for uniform/layer scope).
  zeros = _zeros(params)
  assert sum(zeros.values()) == pytest.approx(0.8 * N_TOTAL, abs=len(PRUNABLE))
  if method in ("random_erk", "gmp_global", "acdc", "rigl"):
    assert sum(zeros.values()) == round(0.8 * N_TOTAL)
  if method in ("random_uniform", "gmp_layer"):
    assert zeros == {k: round(0.8 * np.prod(SHAPES[k])) for k in PRUNABLE}
  # The surviving weights trained: the loss restricted to them went down.
  masks = history[-1][1]
  init = sp.apply_masks(_params(), sp.random_pruning(optax.sgd(0.0), 0.0).init(_params()))
  masked_loss = lambda p: sum(  # noqa: E731
    0.5 * jnp.sum(jnp.where(masks[k], p[k] - TARGETS[k], 0.0) ** 2) for k in SHAPES
  )
  assert float(masked_loss(params)) < 0.5 * float(masked_loss(init))
  assert all(bool(jnp.all(jnp.isfinite(v))) for v in params.values())


@pytest.mark.parametrize(
  ("distribution", "s"), [("erk", 0.0), ("erk", 0.9), ("erk", 0.99), ("uniform", 0.5), ("uniform", 0.99)]
)
def test_random_pruning_exact_counts(distribution, s):
  tx = sp.random_pruning(optax.sgd(0.1), s, distribution=distribution, seed=7)
  params = _params()
  state = jax.jit(tx.init)(params)
  masks = sp.get_masks(state)
  zeros = {k: int(np.sum(~np.asarray(masks[k]))) for k in PRUNABLE}
  expected = sp.layer_zero_counts([SHAPES[k] for k in PRUNABLE], s, distribution)
  assert [zeros[k] for k in PRUNABLE] == expected
  if distribution == "uniform":
    assert expected == [round(s * np.prod(SHAPES[k])) for k in PRUNABLE]
  else:
    assert sum(expected) == round(s * N_TOTAL)
    # Each layer's count is the ERK ideal (1 - d_l) * n_l rounded down or up.
    dens = _erk_reference([SHAPES[k] for k in PRUNABLE], 1 - s) if s > 0 else [1.0] * len(PRUNABLE)
    ideal = [(1 - d) * np.prod(SHAPES[k]) for d, k in zip(dens, PRUNABLE, strict=True)]
    assert all(np.floor(i) - 1e-9 <= z <= np.ceil(i) + 1e-9 for i, z in zip(ideal, expected, strict=True))
  assert masks["bias"].shape == SHAPES["bias"] and bool(masks["bias"].all())  # non-prunable leaf: all True
  pruned = sp.apply_masks(params, state)
  assert _zeros(pruned) == zeros
  np.testing.assert_array_equal(pruned["bias"], params["bias"])


def test_random_masks_depend_on_seed_and_are_spread():
  params = _params()
  m0 = sp.get_masks(sp.random_pruning(optax.sgd(0.1), 0.5, seed=0).init(params))["dense"]
  m1 = sp.get_masks(sp.random_pruning(optax.sgd(0.1), 0.5, seed=1).init(params))["dense"]
  assert not np.array_equal(m0, m1)
  # Uniformly random positions: every row of a 72x16 kernel keeps some weights, none keeps all.
  rows = np.asarray(m0).sum(axis=1)
  assert rows.min() > 0 and rows.max() < 16


def _erk_reference(shapes, density):
  """Independent float64 rendering of ERK: solve for eps, then cap layers one by one at density 1."""
  sizes = np.array([np.prod(s) for s in shapes], float)
  raw = np.array([np.sum(s) / np.prod(s) for s in shapes], float)
  dense = set()
  while True:
    free = [i for i in range(len(shapes)) if i not in dense]
    eps = (density * sizes.sum() - sum(sizes[i] for i in dense)) / sum(raw[i] * sizes[i] for i in free)
    worst = max(free, key=lambda i: raw[i])
    if eps * raw[worst] <= 1:
      return [1.0 if i in dense else eps * raw[i] for i in range(len(shapes))]
    dense.add(worst)


@pytest.mark.parametrize("density", [0.02, 0.1, 0.5, 0.9])
def test_erk_densities_match_reference(density):
  shapes = [(3, 3, 3, 16), (3, 3, 16, 32), (512, 256), (256, 10), (4, 2)]
  got = np.array(sp.erk_densities(shapes, density))
  ref = np.array(_erk_reference(shapes, density))
  np.testing.assert_allclose(got, ref, rtol=1e-12)
  sizes = np.array([np.prod(s) for s in shapes])
  assert np.all(got <= 1.0) and np.all(got > 0)
  np.testing.assert_allclose((got * sizes).sum(), density * sizes.sum(), rtol=1e-12)
  # Uncapped layers have densities proportional to sum(shape)/prod(shape).
  free = got < 1.0
  raw = np.array([np.sum(s) / np.prod(s) for s in shapes])
  ratio = got[free] / raw[free]
  np.testing.assert_allclose(ratio, ratio[0], rtol=1e-12)
  if density >= 0.5:
    assert not free.all()  # the tiny (4, 2) layer is capped at density 1


@pytest.mark.parametrize(
  ("shapes", "density", "exc", "match"),
  [
    ({"w": (3, 4)}, 0.5, TypeError, r"erk_densities: shapes must be a sequence of shapes"),
    ([3, 4], 0.5, ValueError, r"erk_densities: shapes\[0\] must be a shape"),
    ([(3, -4)], 0.5, ValueError, r"erk_densities: shapes\[0\] must be a shape"),
    ([(3, 4)], 0.0, ValueError, r"erk_densities: density must be in \(0, 1\]"),
    ([(3, 4)], float("nan"), ValueError, "erk_densities: density must be finite"),
  ],
)
def test_erk_densities_reject_bad_input(shapes, density, exc, match):
  with pytest.raises(exc, match=match):
    sp.erk_densities(shapes, density)


def test_layer_zero_counts_rejects_a_negative_dimension():
  with pytest.raises(ValueError, match=r"layer_zero_counts: shapes\[1\] must be a shape"):
    sp.layer_zero_counts([(3, 4), (2, -1)], 0.5, "erk")


def _gmp_reference(steps, n, s_f, s_i, t0, t_end, freq):
  """NumPy rendering of the number of zeros after each step (float64 cubic schedule)."""
  out = []
  last = None
  for t in range(steps):
    if t0 <= t <= t_end and ((t - t0) % freq == 0 or t == t_end):
      last = t
    if last is None:
      out.append(0)
    else:
      frac = (last - t0) / (t_end - t0)
      s_t = s_f + (s_i - s_f) * (1.0 - frac) ** 3
      out.append(int(np.round(s_t * n)))
  return out


@pytest.mark.parametrize(
  ("scope", "table"),
  [("global", True), ("layer", True), pytest.param("global", False, marks=pytest.mark.slow)],
)
def test_gmp_follows_cubic_schedule(scope, table, monkeypatch):
  if not table:  # force the on-device float32 path used for schedules with more than 4096 mask updates
    monkeypatch.setattr(sparsity_methods, "_MAX_TABLE", 1)
  s_f, s_i, t0, t_end, freq = 0.9, 0.1, 3, 20, 4
  tx = sp.magnitude_pruning(
    optax.sgd(0.05), s_f, begin_step=t0, end_step=t_end, frequency=freq, initial_sparsity=s_i, scope=scope
  )
  _, _, history = _run(tx, steps=26)
  if scope == "global":
    expected = _gmp_reference(26, N_TOTAL, s_f, s_i, t0, t_end, freq)
    got = [sum(int(np.sum(~np.asarray(m[k]))) for k in PRUNABLE) for _, m in history]
    assert got == expected
  else:
    for k in PRUNABLE:
      expected = _gmp_reference(26, int(np.prod(SHAPES[k])), s_f, s_i, t0, t_end, freq)
      assert [int(np.sum(~np.asarray(m[k]))) for _, m in history] == expected
  # Masks are nested: once pruned, a weight stays pruned.
  for (_, m_prev), (_, m_next) in zip(history[:-1], history[1:], strict=True):
    for k in PRUNABLE:
      assert not np.any(np.asarray(m_next[k]) & ~np.asarray(m_prev[k]))
  # The cubic schedule itself, against the closed form.
  sched = sp.gmp_schedule(s_f, begin_step=t0, end_step=t_end, initial_sparsity=s_i)
  for t in [0, 3, 7, 11, 20, 30]:
    frac = min(max(t - t0, 0), t_end - t0) / (t_end - t0)
    assert float(sched(t)) == pytest.approx(s_f + (s_i - s_f) * (1 - frac) ** 3, abs=1e-6)


def test_gmp_prunes_smallest_magnitudes():
  tx = sp.magnitude_pruning(optax.sgd(0.0), 0.5, begin_step=0, end_step=1, frequency=1, initial_sparsity=0.5)
  params = _params()
  _, _, history = _run(tx, steps=1)
  p, m = history[0]
  allw = np.concatenate([np.abs(np.asarray(params[k])).ravel() for k in PRUNABLE])
  kept = np.concatenate([np.asarray(m[k]).ravel() for k in PRUNABLE])
  assert kept.sum() == N_TOTAL - round(0.5 * N_TOTAL)
  assert allw[kept].min() >= allw[~kept].max()


def test_acdc_phases_are_where_they_should_be():
  total, phase, s = 50, 4, 0.7
  tx = sp.acdc(optax.sgd(0.05), s, total_steps=total, phase_steps=phase, dense_warmup_fraction=0.2)
  _, _, history = _run(tx, steps=total + 3)
  # Reference schedule by walking the phases: dense [0,10), then S D S D ... of 4 steps, sparse from 45 on.
  warmup, final_start = 10, 45
  ref, t, sparse = ["D"] * warmup, warmup, True
  while t < final_start:
    ref += ["S" if sparse else "D"] * phase
    t += phase
    sparse = not sparse
  ref = ref[:final_start] + ["S"] * (total + 3 - final_start)
  got = []
  for _, m in history:
    zeros = sum(int(np.sum(~np.asarray(m[k]))) for k in PRUNABLE)
    assert zeros in (0, round(s * N_TOTAL))
    got.append("S" if zeros else "D")
  assert "".join(got) == "".join(ref)
  # Within a sparse phase the mask is fixed; a new sparse phase recomputes it.
  for t in range(1, len(history)):
    if ref[t] == "S" and ref[t - 1] == "S":
      for k in PRUNABLE:
        np.testing.assert_array_equal(history[t][1][k], history[t - 1][1][k])
  assert sp.acdc_phases(total, dense_warmup_fraction=0.2, phase_steps=phase) == (warmup, phase, final_start)


def _rigl_reference(params, grads, masks, zeta):
  """NumPy rendering of one drop-and-grow step (stable ties)."""
  out = {}
  for k, m in masks.items():
    p, g, m = (
      np.abs(np.asarray(params[k])).ravel(),
      np.abs(np.asarray(grads[k])).ravel(),
      np.asarray(m).ravel(),
    )
    a = int(m.sum())
    n_drop = int(np.round(np.float32(zeta) * np.float32(a)))
    keep_order = np.argsort(-np.where(m, p, -np.inf), kind="stable")
    keep = np.zeros_like(m)
    keep[keep_order[: a - n_drop]] = True
    grow_order = np.argsort(-np.where(keep, -np.inf, g), kind="stable")
    grow = np.zeros_like(m)
    grow[grow_order[:n_drop]] = True
    out[k] = (keep | grow).reshape(np.asarray(masks[k]).shape)
  return out


@pytest.mark.parametrize("begin", [0, pytest.param(4, marks=pytest.mark.slow)])
def test_rigl_drop_and_grow_matches_reference(begin):
  s, every, end, zeta = 0.8, 3, 15, 0.4
  tx = sp.rigl(
    optax.sgd(0.05, momentum=0.9), s, update_every=every, end_step=end, begin_step=begin, drop_fraction=zeta
  )
  params = _params()
  state = tx.init(params)
  params = sp.apply_masks(params, state)
  step = jax.jit(tx.update)
  grad_fn = jax.jit(jax.grad(_loss))
  apply = jax.jit(optax.apply_updates)
  n_active = {k: int(np.sum(np.asarray(sp.get_masks(state)[k]))) for k in PRUNABLE}
  changed_steps = []
  for t in range(21):
    old = {k: np.asarray(sp.get_masks(state)[k]) for k in PRUNABLE}
    g = grad_fn(params)
    u, state = step(g, state, params)
    new_params = apply(params, u)
    new = {k: np.asarray(sp.get_masks(state)[k]) for k in PRUNABLE}
    # Reference schedule (rigl's begin/end/frequency, cosine over end - begin; growth from the dense gradient).
    is_update = begin < t < end and (t - begin) % every == 0
    if is_update:
      zt = 0.5 * zeta * (1 + np.cos(np.pi * (t - begin) / (end - begin)))
      ref = _rigl_reference(params, g, {k: old[k] for k in PRUNABLE}, zt)
      for k in PRUNABLE:
        np.testing.assert_array_equal(new[k], ref[k])
    for k in PRUNABLE:
      assert int(new[k].sum()) == n_active[k]  # active count preserved
      grown = new[k] & ~old[k]
      np.testing.assert_array_equal(np.asarray(new_params[k])[grown], 0.0)  # regrown weights start at 0
      np.testing.assert_array_equal(np.asarray(new_params[k])[~new[k]], 0.0)
      if not is_update:
        np.testing.assert_array_equal(new[k], old[k])
    if any(not np.array_equal(new[k], old[k]) for k in PRUNABLE):
      changed_steps.append(t)
    params = new_params
  assert changed_steps == ([3, 6, 9, 12] if begin == 0 else [7, 10, 13])
  assert float(sp.rigl_drop_fraction(begin, zeta, end, begin)) == pytest.approx(zeta)
  assert float(sp.rigl_drop_fraction(end, zeta, end, begin)) == pytest.approx(0.0, abs=1e-7)


def test_nested_states_and_get_masks():
  params = _params()
  tx = optax.MultiSteps(sp.random_pruning(optax.inject_hyperparams(optax.sgd)(learning_rate=0.1), 0.5), 2)
  state = tx.init(params)
  masks = sp.get_masks(state)
  assert sum(int((~masks[k]).sum()) for k in PRUNABLE) == round(0.5 * N_TOTAL)
  with pytest.raises(ValueError, match="No sparsifier state"):
    sp.get_masks(optax.sgd(0.1).init(params))
  two = optax.chain(sp.random_pruning(optax.sgd(0.1), 0.5), sp.random_pruning(optax.sgd(0.1), 0.5))
  with pytest.raises(ValueError, match="2 sparsifier states"):
    sp.get_masks(two.init(params))
  # MultiSteps: the mask still holds on the emitting mini-steps.
  params = sp.apply_masks(params, state)

  @jax.jit
  def step(p, s):
    u, s = tx.update(jax.grad(_loss)(p), s, p)
    return optax.apply_updates(p, u), s

  for _ in range(4):
    params, state = step(params, state)
    _assert_pruned_zero(params, sp.get_masks(state))


def test_custom_prunable_selection():
  params = _params()
  tx = sp.random_pruning(
    optax.sgd(0.1),
    0.5,
    distribution="uniform",
    prunable={"conv": False, "dense": True, "bias": True, "out": False},
  )
  masks = sp.get_masks(tx.init(params))
  for k in ("conv", "out"):  # not prunable: all True, in the parameter's shape
    assert masks[k].shape == params[k].shape and bool(masks[k].all())
  assert int((~masks["bias"]).sum()) == 8
  tx2 = sp.random_pruning(optax.sgd(0.1), 0.5, prunable=lambda p: {k: k == "dense" for k in p})
  conv_mask = sp.get_masks(tx2.init(params))["conv"]
  assert conv_mask.shape == SHAPES["conv"] and bool(conv_mask.all())


def test_bad_input_errors():
  sgd = optax.sgd(0.1)
  params = _params()
  for bad in (1.0, -0.1, 1.5):
    with pytest.raises(ValueError, match=r"sparsity must lie in \[0, 1\)"):
      sp.random_pruning(sgd, bad)
  with pytest.raises(TypeError, match="sparsity must be a Python float"):
    sp.rigl(sgd, "0.5", end_step=10)
  with pytest.raises(ValueError, match="distribution must be one of"):
    sp.random_pruning(sgd, 0.5, distribution="gaussian")
  with pytest.raises(ValueError, match="end_step .* must be greater than begin_step"):
    sp.magnitude_pruning(sgd, 0.5, begin_step=10, end_step=5)
  with pytest.raises(ValueError, match="end_step .* must be greater than begin_step"):
    sp.magnitude_pruning(sgd, 0.5, begin_step=10, end_step=10)
  with pytest.raises(ValueError, match="initial_sparsity"):
    sp.magnitude_pruning(sgd, 0.5, begin_step=0, end_step=10, initial_sparsity=0.6)
  with pytest.raises(ValueError, match="frequency must be >= 1"):
    sp.magnitude_pruning(sgd, 0.5, begin_step=0, end_step=10, frequency=0)
  with pytest.raises(ValueError, match="scope must be one of"):
    sp.magnitude_pruning(sgd, 0.5, begin_step=0, end_step=10, scope="tensor")
  with pytest.raises(ValueError, match="schedule would end before it begins"):
    sp.acdc(sgd, 0.5, total_steps=100, dense_warmup_fraction=0.6, final_sparse_fraction=0.5)
  with pytest.raises(ValueError, match="total_steps must be >= 1"):
    sp.acdc(sgd, 0.5, total_steps=0)
  with pytest.raises(ValueError, match="drop_fraction"):
    sp.rigl(sgd, 0.5, end_step=10, drop_fraction=1.5)
  with pytest.raises(ValueError, match="update_every must be >= 1"):
    sp.rigl(sgd, 0.5, end_step=10, update_every=0)
  with pytest.raises(TypeError, match="reset_state must be a bool"):
    sp.rigl(sgd, 0.5, end_step=10, reset_state="yes")
  with pytest.raises(TypeError, match="reset_momentum must be a bool"):
    sp.acdc(sgd, 0.5, total_steps=10, reset_momentum=1)
  with pytest.raises(TypeError, match="layer path prefixes"):
    sp.all_but(0)
  # Masks / selections that do not match the params.
  tx = sp.random_pruning(sgd, 0.5, prunable={"conv": True, "dense": True})
  with pytest.raises(ValueError, match="`prunable` does not match"):
    tx.init(params)
  with pytest.raises(TypeError, match="must be a bool"):
    sp.random_pruning(sgd, 0.5, prunable={k: 1 for k in SHAPES}).init(params)
  tx = sp.random_pruning(sgd, 0.5)
  state = tx.init(params)
  with pytest.raises(ValueError, match="params"):
    tx.update(params, state, None)
  other = {k: jnp.zeros((5, 5)) for k in SHAPES}
  with pytest.raises(ValueError, match="mask for parameter leaf"):
    tx.update(other, state, other)
  with pytest.raises(ValueError, match="does not match parameter shape"):
    sp.apply_masks(other, state)
  with pytest.raises(ValueError, match="leaves"):
    sp.apply_masks({"a": jnp.ones((2, 2))}, state)


@pytest.mark.slow
def test_str_layers():
  nnx = pytest.importorskip("flax.nnx")

  w = np.array([[0.5, -0.02], [-0.3, 0.001]], np.float32)
  s = -3.0
  thr = 1.0 / (1.0 + np.exp(-s))
  expected = np.sign(w) * np.maximum(np.abs(w) - thr, 0.0)
  np.testing.assert_allclose(sp.str_sparse_weight(jnp.asarray(w), jnp.asarray(s)), expected, rtol=1e-6)

  rngs = nnx.Rngs(0)
  dense = sp.STRDense(8, 4, threshold_init=-2.0, rngs=rngs)
  conv = sp.STRConv(3, 5, (3, 3), strides=2, rngs=rngs)
  x = jax.random.normal(jax.random.key(0), (2, 8))
  ref = np.asarray(x) @ np.asarray(sp.str_sparse_weight(dense.kernel[...], dense.threshold[...]))
  np.testing.assert_allclose(dense(x), ref, rtol=1e-5, atol=1e-6)
  assert conv(jnp.ones((2, 8, 8, 3))).shape == (2, 4, 4, 5)
  with pytest.raises(ValueError, match="kernel_size"):
    sp.STRConv(3, 5, (3,), rngs=rngs)

  # The threshold is learned: its gradient is nonzero, and weight decay on it (towards sigma(0) = 1/2) sparsifies.
  model = nnx.Sequential(sp.STRDense(8, 16, rngs=rngs), jax.nn.relu, sp.STRDense(16, 1, rngs=rngs))
  y = jnp.sum(x, axis=1, keepdims=True)

  def loss_fn(m):
    return jnp.mean((m(x) - y) ** 2)

  grads = nnx.jit(nnx.grad(loss_fn))(model)
  assert float(jnp.abs(grads.layers[0].threshold[...])) > 0
  tx = ham_optax.ham(optax.adamw(0.05, weight_decay=0.5), 0.05, alpha=1.0)
  opt = nnx.Optimizer(model, tx, wrt=nnx.Param)

  graphdef, state = nnx.split((model, opt))

  @jax.jit
  def run(state):
    def body(state, _):
      model, opt = nnx.merge(graphdef, state)
      opt.update(model, nnx.grad(loss_fn)(model))
      return nnx.state((model, opt)), None

    return jax.lax.scan(body, state, length=30)[0]

  before = float(jnp.mean(model.layers[0].sparse_kernel() == 0))
  nnx.update((model, opt), run(state))
  after = float(jnp.mean(model.layers[0].sparse_kernel() == 0))
  assert float(model.layers[0].threshold[...]) > -5.0
  assert after > before


@pytest.mark.parametrize("k", [0, 1, 5, 37, 99, 100])
def test_top_k_mask_exact_with_ties_matches_stable_argsort(k):
  from ham_optax._src.sparsity import core as _core

  rng = np.random.default_rng(k)
  scores = np.round(rng.normal(size=(10, 10)) * 2).astype(np.float32)  # many ties
  scores[0, :3] = -np.inf
  scores[1, :2] = np.inf
  order = np.argsort(-scores.ravel(), kind="stable")
  expected = np.zeros(100, bool)
  expected[order[:k]] = True
  got = jax.jit(_core.top_k_mask)(jnp.asarray(scores), k)
  np.testing.assert_array_equal(np.asarray(got).ravel(), expected)
  # Tiny and huge magnitudes, negative values: the bisection covers the whole float32 range.
  wide = jnp.asarray([3e38, -3e38, 1e-30, -1e-30, 0.0, 1.0, -1.0, 7.5], jnp.float32)
  ref = np.argsort(-np.asarray(wide), kind="stable")[: k % 9]
  want = np.zeros(8, bool)
  want[ref] = True
  np.testing.assert_array_equal(_core.top_k_mask(wide, k % 9), want)


@pytest.mark.parametrize("dtype", [pytest.param(jnp.bfloat16, marks=pytest.mark.slow), jnp.float32])
def test_dtype_and_state_structure_are_stable(dtype):
  params = jax.tree.map(lambda p: p.astype(dtype), _params())
  tx = sp.magnitude_pruning(
    ham_optax.ham(optax.sgd(0.05), 0.05, alpha=1.0), 0.5, begin_step=0, end_step=2, initial_sparsity=0.5
  )
  state = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)

  @jax.jit
  def two_branches(pred, state):
    # optax's bar: the state keeps its shapes/dtypes, so update works inside lax.cond.
    return jax.lax.cond(
      pred, lambda s: tx.update(grads, s, params), lambda s: tx.update(grads, s, params), state
    )

  updates, new_state = two_branches(True, state)
  assert jax.tree.structure(new_state) == jax.tree.structure(state)
  for a, b in zip(jax.tree.leaves(new_state), jax.tree.leaves(state), strict=True):
    assert a.shape == b.shape and a.dtype == b.dtype
  for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params), strict=True):
    assert u.dtype == p.dtype
  new_params = optax.apply_updates(params, updates)
  masks = sp.get_masks(new_state)
  assert sum(int((~masks[k]).sum()) for k in PRUNABLE) == round(0.5 * N_TOTAL)
  for k in PRUNABLE:
    assert new_params[k].dtype == dtype
    np.testing.assert_array_equal(np.asarray(new_params[k].astype(jnp.float32))[~np.asarray(masks[k])], 0.0)


# ---------------------------------------------------------------------------------------------------------------
# Behaviour around the masks, each against a NumPy (float64) rendering of the reference rule.

SMALL = {"b": (5,), "w": (6, 5)}  # "w" is pruned, "b" is not


def _small_grads(steps: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
  """A fixed sequence of dense 'gradients' (independent of the params, so the reference needs no autodiff)."""
  rng = np.random.default_rng(seed)
  return [{k: rng.normal(size=s).astype(np.float32) for k, s in SMALL.items()} for _ in range(steps)]


def _small_params(seed: int = 1) -> dict[str, jax.Array]:
  rng = np.random.default_rng(seed)
  return {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in SMALL.items()}


def _np_opt(name: str, lr: float):
  """NumPy float64 renderings of optax.sgd(lr, momentum=0.9) and optax.adam(lr): (init, update) on dicts."""
  if name == "sgd":

    def init(p):
      return {"trace": {k: np.zeros_like(v, np.float64) for k, v in p.items()}}

    def update(g, st):
      trace = {k: g[k] + 0.9 * st["trace"][k] for k in g}
      return {k: -lr * trace[k] for k in g}, {"trace": trace}

    return init, update

  def init(p):
    zeros = {k: np.zeros_like(v, np.float64) for k, v in p.items()}
    return {"mu": zeros, "nu": dict(zeros), "count": 0}

  def update(g, st):
    c = st["count"] + 1
    mu = {k: 0.9 * st["mu"][k] + 0.1 * g[k] for k in g}
    nu = {k: 0.999 * st["nu"][k] + 0.001 * g[k] ** 2 for k in g}
    u = {k: -lr * (mu[k] / (1 - 0.9**c)) / (np.sqrt(nu[k] / (1 - 0.999**c)) + 1e-8) for k in g}
    return u, {"mu": mu, "nu": nu, "count": c}

  return init, update


def _param_state(name: str, inner_state) -> dict[str, dict[str, np.ndarray]]:
  """The parameter-shaped leaves of optax.sgd(momentum)/optax.adam state, as NumPy dicts."""
  if name == "sgd":
    return {"trace": {k: np.asarray(v) for k, v in inner_state[0].trace.items()}}
  return {f: {k: np.asarray(v) for k, v in getattr(inner_state[0], f).items()} for f in ("mu", "nu")}


@pytest.mark.parametrize("opt", ["sgd", pytest.param("adam", marks=pytest.mark.slow)])
def test_rigl_resets_inner_state_of_regrown_weights(opt):
  # Reference (rigl SparseRigLOptimizer.reset_momentum, jaxpruner restart_inner_state): after the optimizer step,
  # drop/grow; new connections start at 0 and every optimizer slot (momentum; Adam's mu and nu, not its count) is
  # zeroed there. The inner optimizer sees the masked gradient, growth the dense one.
  lr, every, end, zeta, steps = 0.05, 2, 8, 0.5, 8
  make = {"sgd": lambda: optax.sgd(lr, momentum=0.9), "adam": lambda: optax.adam(lr)}[opt]
  grads = _small_grads(steps)

  def run_ours(reset):
    tx = sp.rigl(
      make(),
      0.5,
      update_every=every,
      end_step=end,
      drop_fraction=zeta,
      distribution="uniform",
      reset_state=reset,
    )
    params = _small_params()
    state = tx.init(params)
    params = sp.apply_masks(params, state)
    mask0 = np.asarray(sp.get_masks(state)["w"])
    step = jax.jit(tx.update)
    out = []
    for g in grads:
      u, state = step(jax.tree.map(jnp.asarray, g), state, params)
      params = optax.apply_updates(params, u)
      out.append(({k: np.asarray(v) for k, v in params.items()}, _param_state(opt, state.inner_state)))
    return mask0, out

  mask0, ours = run_ours(True)
  init, update = _np_opt(opt, lr)
  x = {k: np.asarray(v, np.float64) for k, v in _small_params().items()}
  x["w"] = np.where(mask0, x["w"], 0.0)
  m, st = mask0, init(x)
  for t, g in enumerate(grads):
    g = {k: v.astype(np.float64) for k, v in g.items()}
    u, st = update({"b": g["b"], "w": np.where(m, g["w"], 0.0)}, st)
    new = m
    if 0 < t < end and t % every == 0:
      zt = 0.5 * zeta * (1 + np.cos(np.pi * t / end))
      new = _rigl_reference({"w": x["w"]}, {"w": g["w"]}, {"w": m}, zt)["w"]
      grown = new & ~m
      assert grown.any()
      for field in ("trace", "mu", "nu"):
        if field in st:
          st[field]["w"] = np.where(grown, 0.0, st[field]["w"])
    x = {"b": x["b"] + u["b"], "w": np.where(new & m, x["w"] + u["w"], 0.0)}
    m = new
    got_x, got_st = ours[t]
    for k in SMALL:
      np.testing.assert_allclose(got_x[k], x[k], rtol=2e-5, atol=1e-5, err_msg=f"step {t} param {k}")
      for field, tree in got_st.items():
        np.testing.assert_allclose(tree[k], st[field][k], rtol=2e-5, atol=1e-5, err_msg=f"step {t} {field}")
  # Without the reset the trajectory differs (the test can fail).
  _, no_reset = run_ours(False)
  assert not np.allclose(no_reset[-1][0]["w"], ours[-1][0]["w"])


def test_acdc_resets_momentum_at_each_dense_switch():
  # Reference (IST-DASLab/ACDC, --reset_momentum_after_recycling): before the first step of each dense phase that
  # follows a sparse one, every momentum buffer is zeroed. Sparse phases here: [2, 4), [6, 8), [10, end).
  lr, s, steps = 0.05, 0.6, 12
  phases = [(2, 4), (6, 8), (10, None)]
  grads = _small_grads(steps, seed=3)

  def run_ours(reset):
    tx = sp.acdc(optax.sgd(lr, momentum=0.9), s, sparse_phases=phases, scope="layer", reset_momentum=reset)
    params = _small_params()
    state = tx.init(params)
    step = jax.jit(tx.update)
    out = []
    for g in grads:
      u, state = step(jax.tree.map(jnp.asarray, g), state, params)
      params = optax.apply_updates(params, u)
      out.append(({k: np.asarray(v) for k, v in params.items()}, np.asarray(state.inner_state[0].trace["w"])))
    return out

  ours = run_ours(True)
  sparse = lambda t: any(a <= t < (b if b is not None else 10**9) for a, b in phases)  # noqa: E731
  init, update = _np_opt("sgd", lr)
  x = {k: np.asarray(v, np.float64) for k, v in _small_params().items()}
  m, st, resets = np.ones(SMALL["w"], bool), init(x), []
  for t, g in enumerate(grads):
    g = {k: v.astype(np.float64) for k, v in g.items()}
    if t > 0 and sparse(t - 1) and not sparse(t):
      st = {"trace": {k: np.zeros_like(v) for k, v in st["trace"].items()}}
      resets.append(t)
    u, st = update({"b": g["b"], "w": np.where(m, g["w"], 0.0)}, st)
    if sparse(t) and not (t > 0 and sparse(t - 1)):  # new sparse phase: top-|x_half| per layer
      proposal = np.abs(x["w"] + u["w"]).ravel()
      keep = np.argsort(-proposal, kind="stable")[: proposal.size - round(s * proposal.size)]
      m = np.zeros(proposal.size, bool)
      m[keep] = True
      m = m.reshape(SMALL["w"])
    elif not sparse(t):
      m = np.ones(SMALL["w"], bool)
    x = {"b": x["b"] + u["b"], "w": np.where(m, x["w"] + u["w"], 0.0)}
    np.testing.assert_allclose(ours[t][0]["w"], x["w"], rtol=2e-5, atol=1e-6, err_msg=f"step {t}")
    np.testing.assert_allclose(ours[t][0]["b"], x["b"], rtol=2e-5, atol=1e-6, err_msg=f"step {t}")
    np.testing.assert_allclose(ours[t][1], st["trace"]["w"], rtol=2e-5, atol=1e-6, err_msg=f"step {t}")
  assert resets == [4, 8]
  no_reset = run_ours(False)
  assert not np.allclose(no_reset[4][0]["w"], ours[4][0]["w"])


def test_inner_chain_sees_masked_gradients():
  # Reference (rigl, jaxpruner is_sparse_gradients, ACDC): the optimizer sees the gradient masked by the current
  # mask, so a global-norm clip inside the chain is computed over the active weights only; HAM's mirror step reads
  # the gradient ham receives (masked, before the clip).
  lr, c, alpha, beta, s = 0.1, 0.5, 3.0, 1e-3, 0.9
  params = _params()
  g = jax.grad(_loss)(params)
  for use_ham in (False, True):
    inner = optax.chain(optax.clip_by_global_norm(c), optax.sgd(lr))
    tx = sp.random_pruning(ham_optax.ham(inner, lr, alpha, beta) if use_ham else inner, s, seed=1)
    state = tx.init(params)
    p = sp.apply_masks(params, state)
    masks = sp.get_masks(state)
    u, _ = jax.jit(tx.update)(g, state, p)
    got = optax.apply_updates(p, u)
    gm = {k: np.where(np.asarray(masks[k]), np.asarray(g[k], np.float64), 0.0) for k in SHAPES}
    norm = np.sqrt(sum(np.sum(v**2) for v in gm.values()))
    scale = min(1.0, c / norm)
    for k in SHAPES:
      x = np.asarray(p[k], np.float64)
      x_half = x - lr * scale * gm[k]
      if use_ham and k in PRUNABLE:
        x_half = x_half * np.exp(np.clip(-lr * (alpha * np.sign(x_half) * gm[k] + beta), -5.0, 5.0))
      want = np.where(np.asarray(masks[k]), x_half, 0.0)
      np.testing.assert_allclose(np.asarray(got[k]), want, rtol=1e-5, atol=1e-7, err_msg=f"ham={use_ham} {k}")
    # With dense gradients the clip would have scaled by the full norm: the masked update is larger here.
    dense_norm = np.sqrt(sum(np.sum(np.asarray(v, np.float64) ** 2) for v in g.values()))
    assert dense_norm > 1.5 * norm


def test_acdc_explicit_phases_reproduce_the_imagenet_schedule():
  # Published ResNet-50 schedule (100 epochs): dense 0-10, sparse/dense alternating every 5 epochs up to 75,
  # dense 75-85, sparse 85-100. One step per epoch here.
  phases = [(e, e + 5) for e in range(10, 75, 10)] + [(85, None)]
  tx = sp.acdc(optax.sgd(0.01), 0.7, sparse_phases=phases)
  _, _, history = _run(tx, steps=100)
  got = "".join("S" if any((~np.asarray(m[k])).any() for k in PRUNABLE) else "D" for _, m in history)
  want = "D" * 10 + ("S" * 5 + "D" * 5) * 6 + "S" * 5 + "D" * 10 + "S" * 15
  assert got == want
  for bad, match in (
    ([(5, 3)], "end must be >= 6"),
    ([(0, 5), (5, 8)], "separated by at least one dense step"),
    ([(0, None), (8, 9)], "only the last interval"),
    ([], "at least one"),
  ):
    with pytest.raises(ValueError, match=match):
      sp.acdc(optax.sgd(0.1), 0.5, sparse_phases=bad)
  with pytest.raises(ValueError, match="exactly one of total_steps"):
    sp.acdc(optax.sgd(0.1), 0.5, total_steps=10, sparse_phases=phases)
  with pytest.raises(ValueError, match="begin_step"):
    sp.rigl(optax.sgd(0.1), 0.5, end_step=10, begin_step=10)


def test_all_but_keeps_named_layers_dense():
  params = {
    "layers": [{"kernel": jnp.ones((6, 4)), "bias": jnp.ones(4)}, {"kernel": jnp.ones((4, 4))}],
    "head": {"kernel": jnp.ones((4, 3))},
  }
  masks = sp.get_masks(
    sp.random_pruning(optax.sgd(0.1), 0.5, prunable=sp.all_but("layers/0", "head")).init(params)
  )
  for m, p in ((masks["layers"][0]["kernel"], (6, 4)), (masks["head"]["kernel"], (4, 3))):
    assert m.shape == p and bool(m.all())
  assert masks["layers"][1]["kernel"].shape == (4, 4)
  with pytest.raises(ValueError, match="matches no prunable leaf"):
    sp.random_pruning(optax.sgd(0.1), 0.5, prunable=sp.all_but("layer/0")).init(params)


def test_str_reference_threshold_init_starts_dense():
  pytest.importorskip("flax")  # the STR layers
  # STR's ResNet-50 config starts at s = -3200: sigmoid(s) is exactly 0 in float32, so no weight is zero at step 0
  # and the loss gradient w.r.t. s vanishes (only weight decay moves s). The default -5 starts learning at once.
  w = jnp.asarray(np.random.default_rng(0).normal(size=(8, 8)) * 0.01, jnp.float32)
  np.testing.assert_array_equal(sp.str_sparse_weight(w, jnp.float32(-3200.0)), w)
  assert float(jax.grad(lambda t: jnp.sum(sp.str_sparse_weight(w, t)))(jnp.float32(-3200.0))) == 0.0
  assert float(jax.grad(lambda t: jnp.sum(jnp.abs(sp.str_sparse_weight(w, t))))(jnp.float32(-5.0))) != 0.0


NO_LAYER_AWAY = {
  "random_uniform": lambda s: sp.random_pruning(optax.sgd(0.1), s, distribution="uniform"),
  "random_erk": lambda s: sp.random_pruning(optax.sgd(0.1), s, distribution="erk"),
  "gmp_global": lambda s: sp.magnitude_pruning(
    optax.sgd(0.1), s, begin_step=0, end_step=2, initial_sparsity=s
  ),
  "gmp_layer": lambda s: sp.magnitude_pruning(
    optax.sgd(0.1), s, begin_step=0, end_step=2, initial_sparsity=s, scope="layer"
  ),
  "acdc_global": lambda s: sp.acdc(optax.sgd(0.1), s, sparse_phases=[(0, None)]),
  "acdc_layer": lambda s: sp.acdc(optax.sgd(0.1), s, sparse_phases=[(0, None)], scope="layer"),
  "rigl_uniform": lambda s: sp.rigl(
    optax.sgd(0.1), s, update_every=1, end_step=3, drop_fraction=1.0, distribution="uniform"
  ),
  "rigl_erk": lambda s: sp.rigl(optax.sgd(0.1), s, update_every=1, end_step=3, drop_fraction=1.0),
}
_PER_LAYER = {"random_uniform", "gmp_layer", "acdc_layer", "rigl_uniform"}


@pytest.mark.parametrize(
  "method",
  [
    pytest.param(m, marks=[pytest.mark.slow] if m not in ("random_erk", "gmp_global") else [])
    for m in sorted(NO_LAYER_AWAY)
  ],
)
def test_no_layer_is_pruned_away(method):
  # One rule for every sparsifier: each selected layer keeps >= 1 active weight. Uniform 0.9 on 2x2, 3x3 and
  # 10x10 prunes min(round(0.9 n), n - 1) = 3, 8, 90 per layer; pooled methods (ERK, global) prune
  # min(round(0.9 * 113), 113 - 3) = 102 in total.
  rng = np.random.default_rng(0)
  params = {
    k: jnp.asarray(rng.normal(size=sh), jnp.float32)
    for k, sh in (("a", (2, 2)), ("b", (3, 3)), ("c", (10, 10)))
  }
  grads = {k: jnp.asarray(rng.normal(size=v.shape), jnp.float32) for k, v in params.items()}
  for prm, s, expect_layer, expect_total in (
    (params, 0.9, {"a": 3, "b": 8, "c": 90}, 102),
    ({"w": jnp.full((1, 1), 0.3)}, 0.6, {"w": 0}, 0),
    ({"w": jnp.full((1, 1), 0.3)}, 0.999, {"w": 0}, 0),
  ):
    tx = NO_LAYER_AWAY[method](s)
    state = tx.init(prm)
    p = sp.apply_masks(prm, state)
    g = {k: grads.get(k, jnp.ones_like(v)) for k, v in prm.items()}
    step = jax.jit(tx.update)
    for _ in range(3 if method.startswith("rigl") else 1):  # RigL updates its masks at steps 1 and 2
      u, state = step(g, state, p)
      p = optax.apply_updates(p, u)
      zeros = {k: int((~np.asarray(m)).sum()) for k, m in sp.get_masks(state).items()}
      if method in _PER_LAYER:
        assert zeros == expect_layer, (method, s)
      else:
        assert sum(zeros.values()) == expect_total, (method, s)
      assert all(int(np.asarray(m).sum()) >= 1 for m in sp.get_masks(state).values())


@pytest.mark.parametrize(
  "make_inner",
  [
    lambda: ham_optax.overparam.sign_in(optax.sgd(0.1, momentum=0.9), rescale_every=3),
    lambda: ham_optax.overparam.deep_diagonal(optax.sgd(0.1, momentum=0.9), depth=2),
    lambda: optax.masked(optax.sgd(0.1, momentum=0.9), {"w": True, "b": False}),
  ],
  ids=["sign_in", "deep_diagonal", "masked"],
)
def test_state_resets_keep_reparametrised_weights_and_masked_nodes(make_inner):
  from ham_optax._src.sparsity.core import reset_param_state

  inner = make_inner()
  params = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": jnp.full((4,), 0.5)}
  grads = jax.tree.map(lambda p: 0.3 * jnp.cos(3 * p) + 0.1, params)
  state = inner.init(params)
  for _ in range(2):
    updates, state = inner.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  keep = jax.tree.map(lambda p: jnp.zeros(p.shape, bool), params)
  reset = reset_param_state(inner, state, keep)
  assert jax.tree.structure(reset) == jax.tree.structure(state)

  def factors(s):
    found = jax.tree.leaves(s, is_leaf=lambda x: hasattr(type(x), "weight_fields"))
    return [getattr(x, f) for x in found if hasattr(type(x), "weight_fields") for f in x.weight_fields]

  for before, after in zip(factors(state), factors(reset), strict=True):  # the weights' factors: untouched
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True):
      np.testing.assert_array_equal(a, b)
  if not factors(state):  # plain momentum (masked inner): zeroed where not masked
    traces = [x for x in jax.tree.leaves(reset) if x.shape == (3, 4)]
    assert traces and all(np.all(np.asarray(t) == 0) for t in traces)
  # and a sparsifier with resets runs around it, finite
  tx = sp.acdc(make_inner(), 0.5, total_steps=20)
  p = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": jnp.full((4,), 0.5)}
  s = tx.init(p)
  for _ in range(20):
    u, s = jax.jit(tx.update)(grads, s, p)
    p = optax.apply_updates(p, u)
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(p))
  assert float(jnp.abs(p["w"]).sum()) > 0  # the weights did not collapse at the dense switches


# ------------------------------------------------------------------ every sparsifier around every inner optimizer
COMPOSE_INNERS = {
  "sgd_momentum": lambda: optax.sgd(0.05, momentum=0.9),
  "adamw": lambda: optax.adamw(0.05, weight_decay=0.1),
  "ham": lambda: ham_optax.ham(optax.sgd(0.05, momentum=0.9), 0.05, alpha=1.0),
  "nanoadam": lambda: ham_optax.nanoadam(0.05, 0.5, refresh_every=50, mask={"b": False, "w": True}),
  "multisteps": lambda: optax.MultiSteps(optax.adam(0.05), 2).gradient_transformation(),
}
COMPOSE_METHODS = {
  "random": lambda inner, **kw: sp.random_pruning(inner, 0.5, **kw),
  "gmp": lambda inner, **kw: sp.magnitude_pruning(inner, 0.5, begin_step=0, end_step=6, frequency=2, **kw),
  "acdc": lambda inner, **kw: sp.acdc(inner, 0.5, sparse_phases=[(2, 4), (6, None)], **kw),
  "rigl": lambda inner, **kw: sp.rigl(inner, 0.5, update_every=2, end_step=8, **kw),
}


def _nanoadam_states(state) -> list:
  is_nano = lambda x: isinstance(x, ham_optax.NanoAdamState)  # noqa: E731
  return [x for x in jax.tree.leaves(state, is_leaf=is_nano) if is_nano(x)]


# SGD with momentum and AdamW around every method also run in the matrix above; here they are slow-marked.
@pytest.mark.parametrize(
  "inner",
  [
    pytest.param(i, marks=[pytest.mark.slow] if i in ("adamw", "sgd_momentum") else [])
    for i in sorted(COMPOSE_INNERS)
  ],
)
@pytest.mark.parametrize("method", sorted(COMPOSE_METHODS))
def test_every_sparsifier_around_every_inner_optimizer(method, inner):
  """Default options (AC/DC's momentum reset, RigL's regrowth reset): pruned weights stay exactly zero, the
  surviving weights train, NanoAdam's selection (integer indices, ages) survives every reset."""
  tx = COMPOSE_METHODS[method](COMPOSE_INNERS[inner]())
  target = _small_params(seed=5)
  params = _small_params()
  state = tx.init(params)
  params = sp.apply_masks(params, state)
  step = jax.jit(lambda p, s: tx.update(jax.tree.map(lambda a, b: a - b, p, target), s, p))
  k = ham_optax.selected_count(30, 0.5)
  for t in range(10):
    updates, state = step(params, state)
    params = optax.apply_updates(params, updates)
    masks = sp.get_masks(state)
    np.testing.assert_array_equal(np.asarray(params["w"])[~np.asarray(masks["w"])], 0.0)
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(params))
    for nano in _nanoadam_states(state):  # a zeroed selection would repeat index 0 in every slot
      idx = np.asarray(nano.idx["w"])
      assert len(np.unique(idx)) == idx.size == k, (t, idx)
      assert int(np.asarray(nano.age["w"]).min()) >= 1
    if inner == "nanoadam" and method == "acdc" and t == 5:  # the dense step after the reset (at step 4)
      assert int(np.count_nonzero(np.asarray(updates["w"]))) == k
  # the active weights and the dense bias trained (NanoAdam's bottom-k |x| selection is mostly the pruned zeros)
  masked = lambda p: float(  # noqa: E731
    jnp.sum(jnp.where(masks["w"], p["w"] - target["w"], 0.0) ** 2) + jnp.sum((p["b"] - target["b"]) ** 2)
  )
  assert masked(params) < masked(_small_params())


@pytest.mark.parametrize("inner", sorted(COMPOSE_INNERS))
def test_state_reset_zeroes_floating_moments_only(inner):
  """``reset_param_state`` against a NumPy rendering: every integer leaf (counts, NanoAdam's indices and ages)
  unchanged, every moment of ``w`` zeroed exactly at the entries not kept (through ``idx`` for NanoAdam)."""
  from ham_optax._src.sparsity.core import reset_param_state

  tx = COMPOSE_INNERS[inner]()
  params = _small_params()
  state = tx.init(params)
  for g in _small_grads(3):
    updates, state = tx.update(jax.tree.map(jnp.asarray, g), state, params)
    params = optax.apply_updates(params, updates)
  keep_w = np.random.default_rng(0).random(SMALL["w"]) < 0.5
  reset = reset_param_state(tx, state, {"b": jnp.ones((), bool), "w": jnp.asarray(keep_w)})
  assert jax.tree.structure(reset) == jax.tree.structure(state)
  nano_before, nano_after = _nanoadam_states(state), _nanoadam_states(reset)
  compact = {id(x) for s in nano_after for x in (s.mu["w"], s.nu["w"])}
  changed = 0
  for before, after in zip(jax.tree.leaves(state), jax.tree.leaves(reset), strict=True):
    before, after_np = np.asarray(before), np.asarray(after)
    if not np.issubdtype(before.dtype, np.inexact) or id(after) in compact:
      continue
    expected = np.where(keep_w, before, 0.0) if before.shape == SMALL["w"] else before
    np.testing.assert_array_equal(after_np, expected)
    changed += int(not np.array_equal(after_np, before))
  for b, a in zip(nano_before, nano_after, strict=True):
    np.testing.assert_array_equal(a.idx["w"], b.idx["w"])
    np.testing.assert_array_equal(a.age["w"], b.age["w"])
    kept = np.append(keep_w.reshape(-1), True)[np.asarray(b.idx["w"])]
    for field in ("mu", "nu"):
      np.testing.assert_array_equal(getattr(a, field)["w"], np.where(kept, getattr(b, field)["w"], 0.0))
      changed += int(not np.array_equal(getattr(a, field)["w"], getattr(b, field)["w"]))
  for before, after in zip(jax.tree.leaves(state), jax.tree.leaves(reset), strict=True):
    if not np.issubdtype(np.asarray(before).dtype, np.inexact):
      np.testing.assert_array_equal(after, before)
  assert changed > 0  # the reset did zero something


@pytest.mark.parametrize("method", sorted(COMPOSE_METHODS))
def test_multisteps_object_and_empty_selection_are_clear_errors(method):
  with pytest.raises(TypeError, match=r"MultiSteps object.*wrap the whole optimizer: optax.MultiSteps\("):
    COMPOSE_METHODS[method](optax.MultiSteps(optax.sgd(0.1), 2))
  params = _small_params()
  for prunable in ({"b": False, "w": False}, lambda p: jax.tree.map(lambda _: False, p)):
    with pytest.raises(ValueError, match="`prunable` selects no parameter"):
      COMPOSE_METHODS[method](optax.sgd(0.1), prunable=prunable).init(params)
  with pytest.raises(ValueError, match="`prunable` selects no parameter"):  # the default: no ndim >= 2 leaf
    COMPOSE_METHODS[method](optax.sgd(0.1)).init({"b": jnp.ones(3)})


@pytest.mark.parametrize(
  "method",
  ["acdc", pytest.param("gmp", marks=pytest.mark.slow), pytest.param("rigl", marks=pytest.mark.slow)],
)
@pytest.mark.slow
def test_scalar_mask_of_a_dense_leaf_is_still_read(method):
  # A state whose non-prunable leaf holds the scalar True (the compact layout) updates exactly like the full one
  # and keeps its layout (no retrace from a changing state type).
  tx = COMPOSE_METHODS[method](optax.sgd(0.05, momentum=0.9))
  params = _params()
  full = tx.init(params)
  compact = full._replace(masks={**full.masks, "bias": jnp.ones((), bool)})
  g = jax.tree.map(lambda p: jnp.cos(p) + 0.1, params)
  for _ in range(3):
    u_full, full = tx.update(g, full, params)
    u_compact, compact = tx.update(g, compact, params)
    jax.tree.map(np.testing.assert_array_equal, u_compact, u_full)
  assert compact.masks["bias"].shape == () and full.masks["bias"].shape == SHAPES["bias"]
  for k in PRUNABLE:
    np.testing.assert_array_equal(compact.masks[k], full.masks[k])


_SHARDED_SCRIPT = """
import os
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
import jax, jax.numpy as jnp, numpy as np, optax
from jax.sharding import NamedSharding, PartitionSpec as P
from ham_optax import sparsity as sp
mesh = jax.make_mesh((2,), ("x",), axis_types=(jax.sharding.AxisType.Explicit,))
rng = np.random.default_rng(0)
p0 = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in {"w": (6, 4), "v": (4, 6), "b": (4,)}.items()}
specs = {"w": P("x", None), "v": P(None, "x"), "b": P("x")}
loss = lambda p: sum(jnp.sum(jnp.sin(x) ** 2) for x in jax.tree.leaves(p))
makers = {
  "rigl": lambda: sp.rigl(optax.sgd(0.05, momentum=0.9), 0.5, update_every=1, end_step=8),
  "gmp_global": lambda: sp.magnitude_pruning(optax.adam(1e-2), 0.5, begin_step=0, end_step=4, frequency=1),
  "gmp_layer": lambda: sp.magnitude_pruning(
    optax.adam(1e-2), 0.5, begin_step=0, end_step=4, frequency=1, scope="layer"),
  "acdc": lambda: sp.acdc(optax.adam(1e-2), 0.5, total_steps=8, phase_steps=2),
  "random": lambda: sp.random_pruning(optax.adam(1e-2), 0.5),
}
for name, make in makers.items():
  tx = make()
  def run(params):
    state = tx.init(params)
    params = sp.apply_masks(params, state)
    step = jax.jit(lambda p, s: tx.update(jax.grad(loss)(p), s, p))
    for _ in range(6):
      u, state = step(params, state)
      params = optax.apply_updates(params, u)
    return params, state
  ref = run(p0)
  with jax.set_mesh(mesh):
    out = run({k: jax.device_put(v, NamedSharding(mesh, specs[k])) for k, v in p0.items()})
    for k, m in sp.get_masks(out[1]).items():
      assert jax.typeof(m).sharding.spec == specs[k], (name, k, jax.typeof(m))
  for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(out), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
print("sharded ok")
"""


@pytest.mark.slow
def test_masks_follow_explicit_sharding_on_two_devices():
  # Optax's bar checks a one-device mesh; two devices make the flattening in the top-k masks a real reshard.
  import subprocess
  import sys

  if not all(hasattr(jax, a) for a in ("set_mesh", "typeof")) or not hasattr(jax.sharding, "AxisType"):
    pytest.skip("this jax has no sharding in types")
  run = subprocess.run([sys.executable, "-c", _SHARDED_SCRIPT], capture_output=True, text=True, timeout=300)
  assert run.returncode == 0 and "sharded ok" in run.stdout, run.stderr[-3000:]
