"""Tests of ham_optax.sparsity on less common input: mixed and float64 dtypes, 0-d layers, schedule edge cases,
sparsifiers inside optax wrappers or around schedule-free, and bad masks or options."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ham_optax import sparsity as sp

METHODS = {
  "gmp": lambda inner: sp.magnitude_pruning(
    inner, 0.5, begin_step=0, end_step=2, frequency=1, initial_sparsity=0.5
  ),
  "acdc": lambda inner: sp.acdc(inner, 0.5, sparse_phases=[(0, None)]),
  "rigl": lambda inner: sp.rigl(inner, 0.5, update_every=1, end_step=10),
  "random": lambda inner: sp.random_pruning(inner, 0.5),
}


@pytest.mark.parametrize(("params_dtype", "grads_dtype"), [("float32", "bfloat16"), ("bfloat16", "float32")])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_pruned_weights_are_exactly_zero_whatever_the_dtypes(method, params_dtype, grads_dtype):
  # bfloat16 updates cannot hold -params of float32 params: the updates of pruned leaves are in the promoted dtype.
  rng = np.random.default_rng(0)
  p = {"w": jnp.asarray(rng.normal(size=(8, 8)), params_dtype)}
  tx = METHODS[method](optax.sgd(0.1))
  state = tx.init(p)
  p = sp.apply_masks(p, state)
  for t in range(3):
    g = {"w": jnp.asarray(rng.normal(size=(8, 8)), grads_dtype)}
    u, state = jax.jit(tx.update)(g, state, p)
    p = optax.apply_updates(p, u)
    masks = np.asarray(sp.get_masks(state)["w"])
    assert p["w"].dtype == params_dtype and (~masks).sum() == 32
    np.testing.assert_array_equal(np.asarray(p["w"], np.float32)[~masks], 0.0, err_msg=f"step {t}")


@pytest.mark.parametrize(
  "w",
  [[1.0, 1.0 + 1e-12, 1.0 + 2e-12, 1.0 + 3e-12], [1e39, 1e50, 1e100, 1e300], [1e-80, 1e-70, 1e-60, 1e-50]],
  ids=["close", "huge", "tiny"],
)
@pytest.mark.parametrize("method", ["gmp", "acdc"])
def test_float64_weights_are_ranked_in_float64_by_magnitude_pruning(method, w):
  # in float32 these are ties, inf or 0: the mask would keep the first entries instead of the largest
  jax.config.update("jax_enable_x64", True)  # restored by the conftest fixture
  w = jnp.asarray(w, jnp.float64).reshape(2, 2)
  for scope in ("global", "layer"):
    tx = sp.magnitude_pruning(
      optax.sgd(0.0), 0.5, begin_step=0, end_step=1, frequency=1, initial_sparsity=0.5, scope=scope
    )
    if method == "acdc":
      tx = sp.acdc(optax.sgd(0.0), 0.5, sparse_phases=[(0, None)], scope=scope)
    _, state = tx.update({"w": jnp.zeros_like(w)}, tx.init({"w": w}), {"w": w})
    np.testing.assert_array_equal(np.asarray(sp.get_masks(state)["w"]).ravel(), [False, False, True, True])


def test_float64_weights_and_gradients_are_ranked_in_float64_by_rigl():
  from ham_optax._src.sparsity import methods

  jax.config.update("jax_enable_x64", True)  # restored by the conftest fixture
  w = jnp.asarray([1.0, 1.0 + 1e-12, 1.0 + 2e-12, 1.0 + 3e-12, 0.0, 0.0], jnp.float64)
  g = jnp.asarray([1.0, 1.0, 9.0, 9.0, 1.0 + 1e-12, 1.0 + 2e-12], jnp.float64)
  active = jnp.asarray([True, True, True, True, False, False])
  # drop round(0.5 * 4) = 2 of the 4 active weights (the two smallest |w|), grow the two largest |g| outside the kept
  new = methods._drop_and_grow(jnp.float32(0.5), [w], [g], [active])[0]
  np.testing.assert_array_equal(new, [False, False, True, True, True, True])


def test_erk_treats_a_scalar_layer_as_a_one_entry_layer():
  assert sp.erk_densities([()], 0.5) == sp.erk_densities([(1,)], 0.5) == [0.5]
  assert sp.erk_densities([(), (10, 10)], 0.5) == sp.erk_densities([(1,), (10, 10)], 0.5)
  for density in (0.01, 0.5, 0.9):
    assert all(0 < d <= 1 for d in sp.erk_densities([(), (3, 3), (10, 10)], density))
  assert sp.layer_zero_counts([()], 0.5, "erk") == [0]
  assert sp.layer_zero_counts([(), (10, 10)], 0.5, "erk") == sp.layer_zero_counts(
    [(1,), (10, 10)], 0.5, "erk"
  )
  params = {"s": jnp.float32(0.3), "w": jnp.ones((10, 10))}
  for distribution in ("erk", "uniform"):  # the scalar as the only selected leaf
    tx = sp.random_pruning(optax.sgd(0.1), 0.5, distribution=distribution, prunable={"s": True, "w": False})
    assert bool(sp.get_masks(tx.init(params))["s"])


@pytest.mark.parametrize("total", range(1, 41))
def test_acdc_phases_accept_every_warmup_and_final_fraction_summing_to_at_most_one(total):
  for w, f in [(0.5, 0.5), (0.25, 0.75), (0.3, 0.7), (0.1, 0.9), (0.9, 0.1), (0.45, 0.55), (0.5, 0.25)]:
    warmup, _, final_start = sp.acdc_phases(total, dense_warmup_fraction=w, final_sparse_fraction=f)
    assert 0 <= warmup <= final_start <= total, (w, f)
    assert warmup == round(w * total) and total - final_start <= round(f * total)
    sp.acdc(optax.sgd(0.1), 0.5, total_steps=total, dense_warmup_fraction=w, final_sparse_fraction=f)
  with pytest.raises(ValueError, match=r"\(0.55 \+ 0.5\) must not exceed 1"):
    sp.acdc_phases(total, dense_warmup_fraction=0.55, final_sparse_fraction=0.5)


def test_acdc_phases_keep_the_default_schedule():
  # the rounding fix changes no schedule that was accepted before (w + f < 1)
  for total in (20, 37, 100, 39100):
    assert sp.acdc_phases(total) == (
      round(0.1 * total),
      max(1, round(0.05 * total)),
      total - round(0.1 * total),
    )


def test_rigl_drop_fraction_is_clipped_to_begin_and_end_step():
  # as optax.cosine_decay_schedule: zeta before begin_step, 0 from end_step on (not rising again)
  steps = jnp.arange(0, 40)
  got = np.asarray(sp.rigl_drop_fraction(steps, 0.3, 20, begin_step=5))
  want = np.asarray(jax.vmap(optax.cosine_decay_schedule(0.3, 15))(jnp.maximum(steps - 5, 0)))
  np.testing.assert_allclose(got, want, atol=1e-7)
  assert float(sp.rigl_drop_fraction(30, 0.3, 10)) == 0.0
  assert float(sp.rigl_drop_fraction(0, 0.3, 20, begin_step=5)) == pytest.approx(0.3)


@pytest.mark.parametrize("mask", [{"w": True, "b": False}, {"enc": {"w": True, "b": False}, "head": False}])
def test_apply_masks_with_the_sparsifier_inside_optax_masked(mask):
  # a leaf mask gives MaskedNode leaves, a prefix mask a MaskedNode for the whole masked-out subtree
  params = {"w": jnp.ones((4, 4)), "b": jnp.ones(4)}
  if "enc" in mask:
    params = {"enc": params, "head": {"w": jnp.ones((4, 2)), "b": jnp.ones(2)}}
  tx = optax.masked(sp.random_pruning(optax.sgd(0.1), 0.5), mask)
  state = tx.init(params)
  out = sp.apply_masks(params, state)
  enc = out["enc"] if "enc" in mask else out
  assert int((enc["w"] == 0).sum()) == 8
  np.testing.assert_array_equal(enc["b"], 1.0)
  if "enc" in mask:
    jax.tree.map(np.testing.assert_array_equal, out["head"], params["head"])
  u, _ = tx.update(jax.tree.map(jnp.zeros_like, out), state, out)
  jax.tree.map(np.testing.assert_array_equal, optax.apply_updates(out, u), out)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.int32, jnp.uint8])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_masks_that_are_not_bool_are_refused(method, dtype):
  params = {"w": jnp.ones((4, 4)), "b": jnp.ones(4)}
  tx = METHODS[method](optax.sgd(0.1))
  state = tx.init(params)
  state = state._replace(masks={**state.masks, "w": state.masks["w"].astype(dtype)})
  with pytest.raises(TypeError, match=r"mask for parameter leaf 1 has dtype .*, expected bool"):
    jax.jit(tx.update)(params, state, params)


@pytest.mark.parametrize(
  "option", [{"phase_steps": 3}, {"dense_warmup_fraction": 0.9}, {"final_sparse_fraction": 0.1}]
)
def test_acdc_refuses_total_steps_options_with_sparse_phases(option):
  with pytest.raises(
    ValueError, match=f"acdc: sparse_phases gives the whole schedule, so {next(iter(option))} "
  ):
    sp.acdc(optax.sgd(0.1), 0.5, sparse_phases=[(0, None)], **option)
  sp.acdc(optax.sgd(0.1), 0.5, total_steps=100, **option)  # fine with total_steps


def test_str_conv_takes_an_int_kernel_size_and_checks_strides():
  nnx = pytest.importorskip("flax.nnx")
  rngs = nnx.Rngs(0)
  conv = sp.STRConv(3, 5, 3, strides=2, rngs=rngs)
  assert conv.kernel.shape == (3, 3, 3, 5) and conv(jnp.ones((1, 8, 8, 3))).shape == (1, 4, 4, 5)
  for kwargs in (
    {"kernel_size": (3, 3), "strides": (1, 1, 1)},
    {"kernel_size": (3, 0)},
    {"kernel_size": 2.5},
  ):
    name = "strides" if "strides" in kwargs else "kernel_size"
    with pytest.raises(ValueError, match=f"STRConv is 2-D: {name} must be a positive int or 2 positive ints"):
      sp.STRConv(3, 5, **kwargs, rngs=rngs)


def test_acdc_around_schedule_free_keeps_its_weight_sequence():
  # schedule-free's z is a copy of the weights, not a moment: the reset at the switch back to dense keeps it where
  # the weights are active and zeroes it where pruned weights restart from 0. With a zero gradient nothing moves.
  rng = np.random.default_rng(0)
  p = {"w": jnp.asarray(rng.normal(size=(6, 6)) + 3.0, jnp.float32)}
  tx = sp.acdc(optax.contrib.schedule_free_sgd(0.01), 0.5, sparse_phases=[(1, 3), (5, None)])
  state = tx.init(p)
  for t in range(6):
    u, state = tx.update(jax.tree.map(jnp.zeros_like, p), state, p)
    new = optax.apply_updates(p, u)
    if t != 1:  # step 1 prunes
      np.testing.assert_allclose(new["w"], p["w"], atol=1e-6, err_msg=f"step {t}")
    p = new
  assert int((p["w"] == 0).sum()) == 18
  np.testing.assert_array_equal(state.inner_state.z["w"] == 0, p["w"] == 0)
