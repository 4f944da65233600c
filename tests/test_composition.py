"""HAM inside and around optax's wrappers: which compositions work, and the one that does not (optax.masked)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ham_optax


def _params():
  return {"w": jnp.array([[0.5, -1.0], [2.0, 0.25]]), "b": jnp.array([0.1, -0.2])}


def _grads(scale=1.0):
  return {"w": jnp.array([[1.0, -2.0], [0.5, 3.0]]) * scale, "b": jnp.array([1.0, -1.0]) * scale}


def test_apply_if_finite_skips_nan_steps_and_otherwise_is_ham():
  p = _params()
  tx = optax.apply_if_finite(ham_optax.ham_sgd(0.1, 0.9, alpha=5.0), max_consecutive_errors=3)
  s = tx.init(p)
  nan_g = jax.tree.map(lambda g: g.at[(0,) * g.ndim].set(jnp.nan), _grads())
  u, s = jax.jit(tx.update)(nan_g, s, p)
  chex.assert_trees_all_equal(optax.apply_updates(p, u), p)
  u, s = jax.jit(tx.update)(_grads(), s, p)
  ref = ham_optax.ham_sgd(0.1, 0.9, alpha=5.0)
  u_ref, _ = ref.update(_grads(), ref.init(p), p)
  chex.assert_trees_all_close(u, u_ref, rtol=1e-5)  # (Adam's injected b1, b2 round its bias correction)


def test_sam_with_ham_as_outer_optimizer_is_finite_and_descends():
  def loss(p):
    return jnp.sum((p["w"] - 1.0) ** 2) + jnp.sum((p["b"] + 0.5) ** 2)

  tx = optax.contrib.sam(
    ham_optax.ham_sgd(0.05, momentum=0.9, alpha=2.0),
    optax.chain(optax.contrib.normalize(), optax.sgd(0.05)),
    sync_period=2,
  )
  p = _params()
  s = tx.init(p)
  first = float(loss(p))
  for _ in range(200):
    u, s = jax.jit(tx.update)(jax.grad(loss)(p), s, p)
    p = optax.apply_updates(p, u)
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(p))
  assert float(loss(p)) < 0.05 * first


def test_lookahead_around_ham():
  def loss(p):
    return jnp.sum((p["w"] - 1.0) ** 2) + jnp.sum((p["b"] + 0.5) ** 2)

  tx = optax.lookahead(ham_optax.ham_sgd(0.05, alpha=2.0), sync_period=5, slow_step_size=0.5)
  p = optax.LookaheadParams.init_synced(_params())
  s = tx.init(p)
  for _ in range(300):
    g = jax.grad(loss)(p.fast)
    u, s = jax.jit(tx.update)(g, s, p)
    p = optax.apply_updates(p, u)
  chex.assert_trees_all_close(p.slow, {"w": jnp.ones((2, 2)), "b": jnp.full((2,), -0.5)}, atol=1e-3)


def test_gradient_clipping_belongs_inside_inner():
  """Clipping inside `inner` clips the first half-step only; the mirror step still reads the raw gradient."""
  p = _params()
  g = _grads(scale=10.0)
  lr, alpha = 0.01, 3.0
  tx = ham_optax.ham(optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(lr)), lr, alpha, beta=0.0)
  u, _ = tx.update(g, tx.init(p), p)
  clipped, _ = optax.clip_by_global_norm(1.0).update(g, optax.EmptyState())
  x_half = p["w"] - lr * clipped["w"]
  want_w = x_half * jnp.exp(-lr * alpha * jnp.sign(x_half) * g["w"])  # raw g in the exponent
  np.testing.assert_allclose(p["w"] + u["w"], want_w, rtol=1e-6)
  np.testing.assert_allclose(p["b"] + u["b"], p["b"] - lr * clipped["b"], rtol=1e-6)


def test_optax_masked_around_ham_is_wrong_and_mask_argument_is_right():
  """Why `optax.masked(ham(...), mask)` must not be used, shown on the bias it masks out."""
  p = _params()
  g = _grads()
  wrong = optax.masked(ham_optax.ham_sgd(0.1, alpha=5.0), {"w": True, "b": False})
  u, _ = wrong.update(g, wrong.init(p), p)
  # optax.masked passes the raw gradient through as the "update" of masked-out leaves: apply_updates ASCENDS.
  chex.assert_trees_all_close(optax.apply_updates(p, u)["b"], p["b"] + g["b"])

  # Recommended: HAM's own mask (the bias still gets the inner SGD step, without the mirror step)...
  right = ham_optax.ham_sgd(0.1, alpha=5.0, mask={"w": True, "b": False})
  u, _ = right.update(g, right.init(p), p)
  chex.assert_trees_all_close(optax.apply_updates(p, u)["b"], p["b"] - 0.1 * g["b"])
  # ... or optax.partition with an explicit optimizer for each group.
  part = optax.partition(
    {
      "ham": ham_optax.ham_sgd(0.1, alpha=5.0, mask=lambda q: jax.tree.map(lambda _: True, q)),
      "sgd": optax.sgd(0.1),
    },
    {"w": "ham", "b": "sgd"},
  )
  u2, _ = part.update(g, part.init(p), p)
  chex.assert_trees_all_close(optax.apply_updates(p, u2)["b"], p["b"] - 0.1 * g["b"])
  chex.assert_trees_all_close(u2["w"], u["w"], rtol=1e-6)


@pytest.mark.parametrize(
  "factory", [ham_optax.ham_sgd, ham_optax.ham_adam, ham_optax.ham_adamw], ids=lambda f: f.__name__
)
def test_inject_hyperparams_sees_the_aliases_shared_arguments(factory):
  # The shared keyword arguments stay in each alias's own signature, so inject_hyperparams finds them.
  p = _params()
  tx = optax.inject_hyperparams(factory)(learning_rate=0.1, alpha=3.0, beta=0.01, max_exponent=4.0)
  state = tx.init(p)
  assert {"learning_rate", "alpha", "beta", "max_exponent"} <= set(state.hyperparams)
  state.hyperparams["alpha"] = jnp.asarray(7.0)
  u, _ = jax.jit(tx.update)(_grads(), state, p)
  ref = factory(0.1, alpha=7.0, beta=0.01, max_exponent=4.0)
  u_ref, _ = ref.update(_grads(), ref.init(p), p)
  chex.assert_trees_all_close(u, u_ref, rtol=1e-5)  # (Adam's injected b1, b2 round its bias correction)
