"""Optax's bar for contributed optimizers (optax/contrib/_common_test.py), applied to HAM."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ham_optax

ALL = lambda p: jax.tree.map(lambda _: True, p)  # noqa: E731 - the toy problems use 1-D params

FACTORIES = {
  "ham_sgd": lambda lr: ham_optax.ham_sgd(lr, momentum=0.9, alpha=2.0, beta=0.0, mask=ALL),
  "ham_adam": lambda lr: ham_optax.ham_adam(lr, alpha=2.0, beta=0.0, mask=ALL),
  "ham_adamw": lambda lr: ham_optax.ham_adamw(lr, weight_decay=0.0, alpha=2.0, beta=0.0, mask=ALL),
  # SAM composes with HAM as the *outer* optimizer: HAM's mirror step then sees the gradient at the adversarial
  # point on each synchronising step, and the adversarial ascent steps stay plain.
  "sam(ham)": lambda lr: optax.contrib.sam(
    ham_optax.ham_sgd(lr, momentum=0.9, alpha=2.0, beta=0.0, mask=ALL),
    optax.chain(optax.contrib.normalize(), optax.sgd(0.01)),
    sync_period=2,
  ),
}


def _minimize(tx, loss, x0, steps):
  @jax.jit
  def step(carry, _):
    x, s = carry
    g = jax.grad(loss)(x)
    u, s = tx.update(g, s, x)
    return (optax.apply_updates(x, u), s), None

  (x, _), _ = jax.lax.scan(step, (x0, tx.init(x0)), None, length=steps)
  return x


@pytest.mark.parametrize("name", list(FACTORIES))
def test_converges_on_a_parabola(name):
  target = jnp.array([1.0, -1.5, 0.5])
  x0 = jnp.array([-0.5, 0.7, 2.0])  # signs must flip on two coordinates
  lr = 0.02 if "adam" in name else 0.05
  x = _minimize(FACTORIES[name](lr), lambda x: jnp.sum((x - target) ** 2), x0, 1500)
  np.testing.assert_allclose(x, target, atol=2e-2)


@pytest.mark.parametrize("name", ["ham_sgd", "ham_adam", "ham_adamw"])
def test_converges_on_rosenbrock(name):
  def rosenbrock(x):
    return (1.0 - x[0]) ** 2 + 100.0 * (x[1] - x[0] ** 2) ** 2

  # With Adam the inner step is normalised but the mirror step is not (it scales with lr*alpha*|g|, and |g| reaches
  # hundreds in Rosenbrock's valley), so HAM needs a smaller lr than bare Adam here (3e-3 stalls, bare Adam converges).
  lr = 3e-4 if name == "ham_sgd" else 1e-3
  x = _minimize(FACTORIES[name](lr), rosenbrock, jnp.array([-1.2, 1.0]), 10000)
  np.testing.assert_allclose(x, [1.0, 1.0], atol=5e-2)


def test_accepts_and_forwards_extra_args():
  seen = {}

  def spy_update(updates, state, params=None, **extra):
    seen.update(extra)
    return updates, state

  spy = optax.GradientTransformationExtraArgs(lambda p: optax.EmptyState(), spy_update)
  tx = ham_optax.ham(optax.chain(spy, optax.sgd(0.1)), 0.1)
  p = {"w": jnp.ones((2, 2))}
  tx.update(p, tx.init(p), p, value=jnp.array(3.0), key="k")
  assert set(seen) == {"value", "key"}
  # A plain GradientTransformation (no extra-args support) as inner also accepts extra args.
  plain = optax.GradientTransformation(lambda p: optax.EmptyState(), lambda u, s, p=None: (u, s))
  tx = ham_optax.ham(plain, 0.1)
  tx.update(p, tx.init(p), p, value=jnp.array(3.0))


def test_inject_hyperparams_learning_rate_alpha_beta():
  p = {"w": jnp.array([[0.5, -1.0], [2.0, 0.25]])}
  g = {"w": jnp.array([[1.0, 1.0], [-1.0, 0.5]])}
  tx = optax.inject_hyperparams(ham_optax.ham_sgd, static_args=("mask",))(
    learning_rate=0.1, alpha=3.0, beta=0.01, momentum=0.9
  )
  state = tx.init(p)
  assert set(state.hyperparams) >= {"learning_rate", "alpha", "beta"}
  u, state = jax.jit(tx.update)(g, state, p)
  ref = ham_optax.ham_sgd(0.1, momentum=0.9, alpha=3.0, beta=0.01)
  u_ref, _ = ref.update(g, ref.init(p), p)
  chex.assert_trees_all_close(u, u_ref, rtol=1e-6)

  # Changing the injected values changes the step exactly as constructing with them would.
  state.hyperparams["alpha"] = jnp.asarray(7.0)
  state.hyperparams["beta"] = jnp.asarray(0.5)
  state.hyperparams["learning_rate"] = jnp.asarray(0.05)
  u2, _ = jax.jit(tx.update)(g, state, p)
  ref2 = ham_optax.ham_sgd(0.05, momentum=0.9, alpha=7.0, beta=0.5)
  s_ref2 = ref2.init(p)
  _, s_ref2 = ref2.update(g, s_ref2, p)  # same momentum history as the injected run
  u_ref2, _ = ref2.update(g, s_ref2, p)
  chex.assert_trees_all_close(u2, u_ref2, rtol=1e-6)

  # ham itself (inner passed through as a static, non-numeric argument) and schedules for beta.
  tx = optax.inject_hyperparams(ham_optax.ham)(
    inner=optax.sgd(0.1), learning_rate=0.1, alpha=3.0, beta=optax.linear_schedule(0.1, 0.0, 5)
  )
  s = tx.init(p)
  u, s = jax.jit(tx.update)(g, s, p)
  assert np.isclose(float(s.hyperparams["beta"]), 0.1)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_preserves_dtypes(dtype):
  p = {"w": jnp.ones((3, 2), dtype), "b": jnp.ones((2,), dtype)}
  g = jax.tree.map(lambda x: jnp.full_like(x, 0.5), p)
  for tx in (ham_optax.ham_sgd(0.1, 0.9, alpha=5.0), ham_optax.ham_adamw(0.1, alpha=5.0)):
    u, s = jax.jit(tx.update)(g, tx.init(p), p)
    assert all(a.dtype == dtype for a in jax.tree.leaves(u))
    assert all(a.dtype == dtype for a in jax.tree.leaves(optax.apply_updates(p, u)))


def test_bf16_params_with_f32_hyperparams_under_inject():
  p = {"w": jnp.ones((3, 2), jnp.bfloat16)}
  tx = optax.inject_hyperparams(ham_optax.ham_sgd, hyperparam_dtype=jnp.float32)(learning_rate=0.1, beta=1e-3)
  s = tx.init(p)
  assert s.hyperparams["beta"].dtype == jnp.float32
  assert float(s.hyperparams["beta"]) == pytest.approx(1e-3, rel=1e-6)


def test_multisteps_k4():
  p = {"w": jnp.array([[0.5, -1.0], [2.0, 0.25]])}
  tx = optax.MultiSteps(ham_optax.ham_sgd(0.1, momentum=0.9, alpha=5.0, beta=0.01), every_k_schedule=4)
  s = tx.init(p)
  gs = [jax.tree.map(lambda x, i=i: x * (i + 1), p) for i in range(4)]
  x = p
  for i, g in enumerate(gs):
    u, s = jax.jit(tx.update)(g, s, x)
    if i < 3:
      chex.assert_trees_all_equal(u, jax.tree.map(jnp.zeros_like, p))  # zero update on non-emitting steps
    x = optax.apply_updates(x, u)
  # The emitted step is HAM applied once to the mean gradient.
  ref = ham_optax.ham_sgd(0.1, momentum=0.9, alpha=5.0, beta=0.01)
  mean_g = jax.tree.map(lambda *a: sum(a) / 4, *gs)
  u_ref, _ = ref.update(mean_g, ref.init(p), p)
  chex.assert_trees_all_close(x, optax.apply_updates(p, u_ref), rtol=1e-6)


def test_state_shape_and_dtype_stable_through_lax_cond():
  p = {"w": jnp.ones((3, 2)), "b": jnp.ones((2,))}
  tx = ham_optax.ham_adamw(optax.cosine_decay_schedule(0.1, 10), alpha=5.0)
  s0 = tx.init(p)

  @jax.jit
  def maybe_step(pred, s):
    return jax.lax.cond(pred, lambda s: tx.update(p, s, p)[1], lambda s: s, s)

  s1 = maybe_step(True, s0)
  chex.assert_trees_all_equal_shapes_and_dtypes(s0, s1)
  assert int(s1.count) == 1
