"""ham_optax against an independent float64 NumPy rendering of the algorithm (30+ steps, leaves of rank 0-4)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ham_optax
from tests import reference

SHAPES = [(), (3,), (4, 3), (2, 3, 4), (2, 2, 3, 3)]
STEPS = 35
ALPHA, BETA = 3.0, 0.05


def _problem(seed=0, feedback=False):
  rng = np.random.default_rng(seed)
  params = [rng.normal(size=s) * 0.5 for s in SHAPES]
  targets = [rng.normal(size=s) for s in SHAPES]
  noise = [[rng.normal(size=s) * 0.3 for s in SHAPES] for _ in range(STEPS)]

  def grad_fn(k, ps):
    if feedback:  # gradient of 0.5*||p - t||^2 plus a fixed noise sequence: feedback through the params
      return [p - t + n for p, t, n in zip(ps, targets, noise[k], strict=True)]
    # A fixed gradient sequence: float32 rounding cannot be amplified through the loss (Adam's normalisation is
    # ill-conditioned where the gradient crosses zero), so the comparison isolates the update rule itself.
    return [0.3 * t + n for t, n in zip(targets, noise[k], strict=True)]

  return params, grad_fn


def _assert_float32_close(got, want, msg):
  """Float32 precision after 35 steps: relative 2e-5 of each entry, or of the leaf's scale for entries near 0."""
  scale = max(float(np.max(np.abs(want))), 1e-3)
  np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=2e-5, atol=2e-5 * scale, err_msg=msg)


def _lr_const(k):
  return 0.05


_cosine = optax.warmup_cosine_decay_schedule(0.0, 0.08, warmup_steps=5, decay_steps=STEPS, end_value=0.01)


def _lr_sched(k):
  return float(_cosine(k))


def _expected(params, grad_fn, kind, lr, hp, selected=None, alpha=ALPHA, **kwargs):
  """The float64 reference's trajectory (every leaf selected unless ``selected`` says otherwise)."""
  opt = reference.NumpyOptimizer(kind, lr, **hp)
  selected = [True] * len(SHAPES) if selected is None else selected
  return reference.run_ham(params, grad_fn, opt, lr, alpha, BETA, STEPS, selected, **kwargs)


INNERS = {
  "sgd": (lambda lr: optax.sgd(lr), {}),
  "momentum": (lambda lr: optax.sgd(lr, momentum=0.9), {"momentum": 0.9}),
  "nesterov": (lambda lr: optax.sgd(lr, momentum=0.9, nesterov=True), {"momentum": 0.9}),
  "adam": (lambda lr: optax.adam(lr), {}),
  "adamw": (lambda lr: optax.adamw(lr, weight_decay=0.1), {"weight_decay": 0.1}),
}


@pytest.mark.parametrize("kind", list(INNERS))
@pytest.mark.parametrize("scheduled", [False, True], ids=["const", "schedule"])
@pytest.mark.parametrize("sign_from", ["x_half", "x"])
def test_matches_float64_numpy(kind, scheduled, sign_from):
  params, grad_fn = _problem()
  lr_np = _lr_sched if scheduled else _lr_const
  lr_jax = _cosine if scheduled else 0.05
  make, hp = INNERS[kind]
  tx = ham_optax.ham(make(lr_jax), lr_jax, ALPHA, BETA, mask=lambda p: [True] * len(p), sign_from=sign_from)

  # Every leaf (rank 0..4) takes the mirror step here; the default mask is tested elsewhere.
  expected = _expected(params, grad_fn, kind, lr_np, hp, sign_of=sign_from)

  x = [jnp.asarray(p, jnp.float32) for p in params]
  state = tx.init(x)
  step = jax.jit(tx.update)
  for k in range(STEPS):
    g = [jnp.asarray(a, jnp.float32) for a in grad_fn(k, [np.asarray(v, np.float64) for v in x])]
    u, state = step(g, state, x)
    x = optax.apply_updates(x, u)
    for got, want in zip(x, expected[k + 1], strict=True):
      _assert_float32_close(got, want, f"{kind} step {k}")
  assert all(a.dtype == jnp.float32 for a in x)


def test_default_mask_only_touches_rank_ge_2():
  params, grad_fn = _problem(1, feedback=True)
  selected = [len(s) >= 2 for s in SHAPES]
  expected = _expected(params, grad_fn, "momentum", _lr_const, {"momentum": 0.9}, selected)
  tx = ham_optax.ham(optax.sgd(0.05, momentum=0.9), 0.05, ALPHA, BETA)
  x = [jnp.asarray(p, jnp.float32) for p in params]
  state = tx.init(x)
  for k in range(STEPS):
    g = [jnp.asarray(a, jnp.float32) for a in grad_fn(k, [np.asarray(v, np.float64) for v in x])]
    u, state = jax.jit(tx.update)(g, state, x)
    x = optax.apply_updates(x, u)
  for got, want in zip(x, expected[-1], strict=True):
    _assert_float32_close(got, want, "momentum, default mask")


def test_float64_params_agree_to_float64_precision():
  jax.config.update("jax_enable_x64", True)
  params, grad_fn = _problem(2, feedback=True)
  expected = _expected(params, grad_fn, "adamw", _lr_const, {"weight_decay": 0.1})
  # A constant lr: optax's schedules evaluate in float32 even under x64, which would dominate the comparison.
  tx = ham_optax.ham(optax.adamw(0.05, weight_decay=0.1), 0.05, ALPHA, BETA, mask=lambda p: [True] * len(p))
  x = [jnp.asarray(p, jnp.float64) for p in params]
  state = tx.init(x)
  for k in range(STEPS):
    g = [jnp.asarray(a) for a in grad_fn(k, [np.asarray(v) for v in x])]
    u, state = jax.jit(tx.update)(g, state, x)
    x = optax.apply_updates(x, u)
  for got, want in zip(x, expected[-1], strict=True):
    assert got.dtype == jnp.float64
    scale = float(np.max(np.abs(want)))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12, atol=1e-12 * scale)


PER_LEAF_ALPHA = [0.0, -2.0, 3.0, 12.0, 0.5]  # one per leaf of SHAPES, ranks 0..4


@pytest.mark.parametrize("kind", ["momentum", "adamw"])
def test_per_leaf_alpha_matches_float64_numpy(kind):
  # alpha as a pytree with the params' structure (a list here): leaf i takes the mirror step with its own alpha,
  # one of them a schedule evaluated at the step count.
  params, grad_fn = _problem()
  make, hp = INNERS[kind]
  alpha_sched = optax.linear_schedule(12.0, 2.0, STEPS)
  alpha_np = [lambda k, a=a: a for a in PER_LEAF_ALPHA]
  alpha_np[3] = lambda k: float(alpha_sched(k))
  alpha_jax = [*PER_LEAF_ALPHA[:3], alpha_sched, PER_LEAF_ALPHA[4]]
  tx = ham_optax.ham(make(0.05), 0.05, alpha_jax, BETA, mask=lambda p: [True] * len(p))
  opt = reference.NumpyOptimizer(kind, _lr_const, **hp)

  ref = [np.asarray(p, np.float64) for p in params]
  x = [jnp.asarray(p, jnp.float32) for p in params]
  state = tx.init(x)
  step = jax.jit(tx.update)
  for k in range(STEPS):
    g = grad_fn(k, ref)
    ref = [
      reference.mirror(p + opt.step(k, i, gi, p), p, gi, 0.05, alpha_np[i](k), BETA)
      for i, (p, gi) in enumerate(zip(ref, g, strict=True))
    ]
    u, state = step([jnp.asarray(a, jnp.float32) for a in g], state, x)
    x = optax.apply_updates(x, u)
    for i, (got, want) in enumerate(zip(x, ref, strict=True)):
      _assert_float32_close(got, want, f"{kind} step {k} leaf {i}")
  # The alphas differ enough that one scalar alpha gives another result on the rank-3 leaf.
  assert not np.allclose(
    np.asarray(x[3]),
    _expected(params, grad_fn, kind, _lr_const, hp, alpha=3.0)[-1][3],
    rtol=1e-3,
  )
