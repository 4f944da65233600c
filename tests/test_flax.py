"""HAM in Flax: nnx.Optimizer and linen TrainState on models with BatchNorm/LayerNorm; orbax checkpoint resume."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen, nnx
from flax.training import train_state

import ham_optax


def _data(n=64, d=8, classes=3, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d)).astype(np.float32)
  w = rng.normal(size=(d, classes))
  return jnp.asarray(x), jnp.asarray(np.argmax(x @ w, axis=1))


class NnxNet(nnx.Module):
  def __init__(self, rngs: nnx.Rngs):
    self.dense1 = nnx.Linear(8, 32, rngs=rngs)
    self.bn = nnx.BatchNorm(32, rngs=rngs)
    self.ln = nnx.LayerNorm(32, rngs=rngs)
    self.dense2 = nnx.Linear(32, 3, rngs=rngs)

  def __call__(self, x):
    return self.dense2(self.ln(nnx.relu(self.bn(self.dense1(x)))))


def _nnx_loss(model, x, y):
  return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()


def _nnx_train(tx, steps=30):
  model = NnxNet(nnx.Rngs(0))
  opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
  x, y = _data()

  @nnx.jit
  def step(model, opt, x, y):
    loss, grads = nnx.value_and_grad(_nnx_loss)(model, x, y)
    opt.update(model, grads)
    return loss

  losses = [float(step(model, opt, x, y)) for _ in range(steps)]
  return model, losses


def test_nnx_optimizer_trains_and_default_mask_leaves_norms_and_biases_alone():
  inner = optax.sgd(0.1, momentum=0.9)
  _, losses = _nnx_train(ham_optax.ham(inner, 0.1, alpha=5.0, beta=1e-3))
  assert losses[-1] < 0.5 * losses[0]
  # One step from the same init and batch: kernels differ (mirror step), biases/scales are plain SGD.
  model_a, _ = _nnx_train(ham_optax.ham(inner, 0.1, alpha=5.0, beta=1e-3), steps=1)
  model_b, _ = _nnx_train(inner, steps=1)
  a, b = nnx.state(model_a, nnx.Param), nnx.state(model_b, nnx.Param)
  for mod in ("bn", "ln"):
    for name in ("scale", "bias"):
      chex.assert_trees_all_equal(a[mod][name][...], b[mod][name][...])
  chex.assert_trees_all_equal(a["dense1"]["bias"][...], b["dense1"]["bias"][...])
  assert not np.allclose(a["dense1"]["kernel"][...], b["dense1"]["kernel"][...])


def test_nnx_optimizer_with_callable_mask_and_extra_args():
  tx = ham_optax.ham(
    optax.adamw(1e-2), 1e-2, alpha=2.0, mask=lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)
  )
  _, losses = _nnx_train(tx)
  assert losses[-1] < losses[0]


class LinenNet(linen.Module):
  @linen.compact
  def __call__(self, x, train: bool):
    x = linen.Dense(32)(x)
    x = linen.BatchNorm(use_running_average=not train)(x)
    x = linen.LayerNorm()(linen.relu(x))
    return linen.Dense(3)(x)


class _TrainState(train_state.TrainState):
  batch_stats: dict


def test_linen_train_state():
  model = LinenNet()
  x, y = _data()
  variables = model.init(jax.random.PRNGKey(0), x, train=False)
  state = _TrainState.create(
    apply_fn=model.apply,
    params=variables["params"],
    tx=ham_optax.ham_sgd(0.1, momentum=0.9, alpha=5.0),
    batch_stats=variables["batch_stats"],
  )

  @jax.jit
  def step(state):
    def loss_fn(params):
      logits, upd = state.apply_fn(
        {"params": params, "batch_stats": state.batch_stats}, x, train=True, mutable=["batch_stats"]
      )
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), upd

    (loss, upd), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    return state.apply_gradients(grads=grads, batch_stats=upd["batch_stats"]), loss

  losses = []
  for _ in range(30):
    state, loss = step(state)
    losses.append(float(loss))
  assert losses[-1] < 0.5 * losses[0]
  mask = ham_optax.default_mask(state.params)
  assert mask["Dense_0"]["kernel"] and not mask["Dense_0"]["bias"]
  assert not mask["BatchNorm_0"]["scale"] and not mask["LayerNorm_0"]["scale"]


def test_orbax_checkpoint_resume_continues_identically(tmp_path):
  ocp = pytest.importorskip("orbax.checkpoint")
  x, y = _data()
  params = {"w1": jax.random.normal(jax.random.PRNGKey(1), (8, 16)) * 0.3, "w2": jnp.zeros((16, 3)) + 0.01}

  def loss(p):
    return optax.softmax_cross_entropy_with_integer_labels(jnp.tanh(x @ p["w1"]) @ p["w2"], y).mean()

  tx = ham_optax.ham_adamw(optax.cosine_decay_schedule(1e-2, 40), alpha=20.0, beta=1e-2)

  @jax.jit
  def step(p, s):
    u, s = tx.update(jax.grad(loss)(p), s, p)
    return optax.apply_updates(p, u), s

  p, s = params, tx.init(params)
  for _ in range(10):
    p, s = step(p, s)
  ckpt = ocp.StandardCheckpointer()
  ckpt.save(tmp_path / "ckpt", {"params": p, "opt_state": s})
  ckpt.wait_until_finished()
  p_ref, s_ref = p, s
  for _ in range(10):
    p_ref, s_ref = step(p_ref, s_ref)

  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, {"params": p, "opt_state": s})
  restored = ckpt.restore(tmp_path / "ckpt", abstract)
  p2, s2 = restored["params"], restored["opt_state"]
  assert isinstance(s2, ham_optax.HamState)
  for _ in range(10):
    p2, s2 = step(p2, s2)
  chex.assert_trees_all_equal(p2, p_ref)
  chex.assert_trees_all_equal(s2, s_ref)
