"""Property tests (hypothesis): zeros stay zero, signs are kept, finite in -> finite out, jit == no-jit."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import ham_optax

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
# A few fixed shapes: every new shape recompiles, which dominates the run time otherwise.
shapes = st.sampled_from([(1, 1), (2, 3), (3, 1, 4)])


def _arrays(shape, bound, zeros=True):
  elems = st.floats(-bound, bound, allow_nan=False, allow_infinity=False, width=32)
  if zeros:
    elems = st.one_of(st.just(0.0), elems)
  return hnp.arrays(np.float32, shape, elements=elems)


# The draws of a HAM step: params and gradients (from `data`), their shape, the learning rate and beta.
step_draws = {"data": st.data(), "shape": shapes, "lr": st.floats(1e-4, 1.0), "beta": st.floats(0.0, 10.0)}


@given(**step_draws, alpha=st.floats(-500.0, 500.0))
def test_zeros_with_zero_gradient_stay_zero(data, shape, lr, alpha, beta):
  p = data.draw(_arrays(shape, 10.0))
  g = data.draw(_arrays(shape, 10.0))
  g = np.where(p == 0, 0.0, g).astype(np.float32)
  for inner in (optax.sgd(lr, momentum=0.9), optax.adam(lr)):
    tx = ham_optax.ham(inner, lr, alpha, beta)
    u, _ = tx.update({"w": jnp.asarray(g)}, tx.init({"w": jnp.asarray(p)}), {"w": jnp.asarray(p)})
    new = np.asarray(optax.apply_updates({"w": jnp.asarray(p)}, u)["w"])
    assert np.all(new[p == 0] == 0.0)


@given(**step_draws, alpha=st.floats(-1000.0, 1000.0), dtype=st.sampled_from(list(DTYPES)))
def test_mirror_step_preserves_signs(data, shape, lr, alpha, beta, dtype):
  dt = DTYPES[dtype]
  p = jnp.asarray(data.draw(_arrays(shape, 100.0)), dt)
  u = jnp.asarray(data.draw(_arrays(shape, 1.0)), dt)
  g = jnp.asarray(data.draw(_arrays(shape, 1e4)), dt)
  step = ham_optax.hyperbolic_step(lr, alpha, beta)
  out, _ = step.update({"w": u}, step.init({"w": p}), {"w": p}, grad={"w": g})
  x_half = np.asarray(p, np.float32) + np.asarray(u, np.float32)
  new_exact = np.asarray(p, np.float32) + np.asarray(out["w"], np.float32)
  assert out["w"].dtype == dt
  # Never the opposite sign. (A result may round to 0 when x_half * exp(e) underflows the dtype - e.g. float16
  # subnormals, or float32 subnormals, which XLA:CPU flushes to zero - but it never crosses zero.) Where x_half
  # is tiny compared with p, rounding the delta into p's dtype may lose it; compare where resolvable.
  resolvable = np.abs(x_half) > 8 * float(jnp.finfo(dt).eps) * np.abs(np.asarray(p, np.float32))
  assert np.all(np.sign(new_exact[resolvable]) * np.sign(x_half[resolvable]) >= 0)
  # Exact zeros stay exactly zero.
  assert np.all(new_exact[x_half == 0] == 0)


@given(
  data=st.data(),
  shape=shapes,
  dtype=st.sampled_from(list(DTYPES)),
  alpha=st.floats(-1e4, 1e4),
  lr=st.floats(1e-6, 1.0),
)
def test_finite_in_finite_out_for_huge_gradients(data, shape, dtype, alpha, lr):
  dt = DTYPES[dtype]
  gmax = min(1e30, float(jnp.finfo(dt).max))
  p = jnp.asarray(data.draw(_arrays(shape, 100.0)), dt)
  g_unit = data.draw(_arrays(shape, 1.0))
  scale = data.draw(st.sampled_from([1.0, 1e4, 1e15, gmax]))
  g = jnp.asarray(np.clip(g_unit.astype(np.float64) * scale, -gmax, gmax), dt)
  assert bool(jnp.all(jnp.isfinite(g)))
  # The inner half-step is kept finite (SGD scaled by 1/scale; Adam's step is bounded by lr), so what is tested is
  # the mirror step's handling of alpha * lr * |g| far beyond the clip. Adam is left out for float16: its own
  # second moment underflows there (g**2 -> 0, eps -> 0) and gives 0/0 before HAM is involved.
  inners = [optax.sgd(lr / scale)] + ([optax.adam(lr)] if dtype != "float16" else [])
  for inner in inners:
    tx = ham_optax.ham(inner, lr, alpha, 1e-3)
    u, _ = tx.update({"w": g}, tx.init({"w": p}), {"w": p})
    new = optax.apply_updates({"w": p}, u)["w"]
    assert new.dtype == dt
    assert bool(jnp.all(jnp.isfinite(new))), (dtype, scale)


@pytest.mark.slow
@given(data=st.data(), shape=shapes, lr=st.floats(1e-4, 0.5), alpha=st.floats(0.0, 50.0))
def test_jit_and_no_jit_agree(data, shape, lr, alpha):
  p = {"w": jnp.asarray(data.draw(_arrays(shape, 3.0)))}
  g = {"w": jnp.asarray(data.draw(_arrays(shape, 3.0)))}
  tx = ham_optax.ham_adamw(optax.cosine_decay_schedule(lr, 10), alpha=alpha, beta=1e-2)
  s0 = tx.init(p)
  u1, s1 = tx.update(g, s0, p)
  u2, s2 = jax.jit(tx.update)(g, s0, p)
  # jit may round AdamW's update differently by an ulp (fused multiply-adds); the step multiplies such an error
  # of x_half = p + u by its factor exp(lr alpha |g|) (at most e^5): the tolerance scales with it.
  growth = np.exp(np.minimum(lr * alpha * np.abs(np.asarray(g["w"])), 5.0))
  atol = 4 * np.finfo(np.float32).eps * growth * (np.abs(np.asarray(p["w"])) + lr) + 1e-7
  assert np.all(
    np.abs(np.asarray(u1["w"]) - np.asarray(u2["w"])) <= atol + 1e-6 * np.abs(np.asarray(u2["w"]))
  )
  assert jax.tree.structure(s1) == jax.tree.structure(s2)


_SCALES = ["1", "1e4", "1e15", "max/4", "max"]


def _scaled(unit, scale, dt):
  big = float(jnp.finfo(dt).max)
  factor = {"1": 1.0, "1e4": 1e4, "1e15": 1e15, "max/4": big / 4, "max": big}[scale]
  return jnp.asarray(np.clip(unit.astype(np.float64) * min(factor, big), -big, big), dt)


@functools.partial(jax.jit, static_argnames="cap")
def _mirror_new_weights(p, u, g, lr, alpha, beta, cap):
  step = ham_optax.hyperbolic_step(
    lr, alpha, beta, max_weight_norm=cap
  )  # traced hyperparameters: one compile
  out, _ = step.update({"w": u}, step.init({"w": p}), {"w": p}, grad={"w": g})
  return optax.apply_updates({"w": p}, out)["w"]


@given(
  data=st.data(),
  shape=st.just((2, 3)),
  dtype=st.sampled_from([*DTYPES, "float64"]),
  alpha=st.floats(-1e4, 1e4),
  lr=st.floats(1e-6, 1.0),
  beta=st.floats(0.0, 10.0),
  scales=st.tuples(*[st.sampled_from(_SCALES)] * 3),
  cap=st.sampled_from([None, 1e3]),
)
def test_finite_in_finite_out_for_large_inner_steps_and_weights(
  data, shape, dtype, alpha, lr, beta, scales, cap
):
  # Params, inner steps and gradients each up to the dtype's largest finite value: the new weights are finite,
  # keep the sign of x_half (or underflow to 0), and zeros stay zero.
  if dtype == "float64":
    jax.config.update("jax_enable_x64", True)
  dt = jnp.dtype(dtype)
  p, u, g = (_scaled(data.draw(_arrays(shape, 1.0)), s, dt) for s in scales)
  new = _mirror_new_weights(p, u, g, lr, alpha, beta, cap)
  assert new.dtype == dt
  assert bool(jnp.all(jnp.isfinite(new))), (dtype, scales, cap)
  x_half = np.asarray(p, np.float64) + np.asarray(u, np.float64)
  new64 = np.asarray(new, np.float64)
  big = float(jnp.finfo(dt).max)
  # Where x_half is resolvable against p's rounding and not beyond the range, the sign is x_half's.
  resolvable = (np.abs(x_half) > 8 * float(jnp.finfo(dt).eps) * np.abs(np.asarray(p, np.float64))) & (
    np.abs(x_half) <= big
  )
  assert np.all(np.sign(new64[resolvable]) * np.sign(x_half[resolvable]) >= 0)
  assert np.all(new64[x_half == 0] == 0)
