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
from ham_optax import overparam
from ham_optax import sparsity as sp


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


class TwoLayer(nnx.Module):
  def __init__(self, n_in, n_hidden, n_out, rngs: nnx.Rngs):
    self.l1 = nnx.Linear(n_in, n_hidden, rngs=rngs)
    self.l2 = nnx.Linear(n_hidden, n_out, rngs=rngs)

  def __call__(self, x):
    return self.l2(nnx.relu(self.l1(x)))


@nnx.jit
def _step(model, opt, x, y):
  loss_fn = lambda m: optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()  # noqa: E731
  loss, grads = nnx.value_and_grad(loss_fn)(model)
  opt.update(model, grads)
  return loss


def _fit(model, opt, x, y, steps):
  """The losses of ``steps`` cross-entropy steps of ``opt`` (an ``nnx.Optimizer`` of ``model``) on ``(x, y)``."""
  return [float(_step(model, opt, x, y)) for _ in range(steps)]


def _nnx_train(tx, steps=30):
  model = NnxNet(nnx.Rngs(0))
  return model, _fit(model, nnx.Optimizer(model, tx, wrt=nnx.Param), *_data(), steps)


@pytest.mark.slow
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


@pytest.mark.slow
def test_sign_in_inside_nnx_optimizer_keeps_params_equal_to_m_times_w():
  model = TwoLayer(4, 8, 2, nnx.Rngs(0))
  opt = nnx.Optimizer(model, overparam.sign_in(optax.sgd(0.05, momentum=0.9), rescale_every=3), wrt=nnx.Param)
  x = jax.random.normal(jax.random.PRNGKey(1), (32, 4))
  losses = _fit(model, opt, x, (x[:, 0] > 0).astype(jnp.int32), 40)
  assert losses[-1] < 0.7 * losses[0]
  st = opt.opt_state
  np.testing.assert_allclose(
    np.asarray(st.m["l1"]["kernel"][...] * st.w["l1"]["kernel"][...]),
    np.asarray(model.l1.kernel[...]),
    rtol=1e-5,
    atol=1e-6,
  )


@pytest.mark.slow
def test_rigl_inside_nnx_optimizer():
  model = TwoLayer(8, 32, 3, nnx.Rngs(0))
  tx = sp.rigl(ham_optax.ham(optax.adam(1e-2), 1e-2, alpha=1.0), 0.75, update_every=2, end_step=8)
  opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
  nnx.update(model, sp.apply_masks(nnx.state(model, nnx.Param), opt))
  x = jax.random.normal(jax.random.key(1), (64, 8))
  losses = _fit(model, opt, x, jax.random.randint(jax.random.key(2), (64,), 0, 3), 9)
  assert losses[-1] < losses[0]
  masks = sp.get_masks(opt)
  n = 8 * 32 + 32 * 3
  kernels = [model.l1.kernel[...], model.l2.kernel[...]]
  mks = [np.asarray(masks["l1"]["kernel"]), np.asarray(masks["l2"]["kernel"])]
  assert sum(int((~m).sum()) for m in mks) == round(0.75 * n)
  for w, m in zip(kernels, mks, strict=True):
    np.testing.assert_array_equal(np.asarray(w)[~m], 0.0)
  bias_mask = sp.get_masks(opt.opt_state)["l1"]["bias"]
  assert bias_mask.shape == (32,) and bool(bias_mask.all())


def test_get_masks_of_an_nnx_state_says_what_to_pass():
  model = TwoLayer(8, 32, 3, nnx.Rngs(0))
  opt = nnx.Optimizer(
    model, sp.magnitude_pruning(optax.sgd(0.1), 0.5, begin_step=0, end_step=4), wrt=nnx.Param
  )
  assert sp.get_masks(opt)["l1"]["kernel"].shape == (8, 32)
  with pytest.raises(ValueError, match=r"nnx.state\(optimizer\) no longer holds the optax state's types"):
    sp.get_masks(nnx.state(opt))


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
