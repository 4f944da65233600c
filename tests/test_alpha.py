"""Tests of ham_optax.suggest_alpha: determinism, bounded cost, and no divergence on two small models."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ham_optax


def _least_squares():
  # The 64 x 32 least-squares problem on which the paper's alpha = 200 gives NaN at lr 0.1 while SGD converges.
  rng = np.random.default_rng(0)
  z = jnp.asarray(rng.normal(size=(64, 32)) / np.sqrt(32), jnp.float32)
  y = jnp.asarray(rng.normal(size=(64,)), jnp.float32)
  params = {"w": jnp.asarray(rng.normal(scale=0.5, size=(32, 1)), jnp.float32)}

  def loss(p, batch):
    zb, yb = batch
    return 0.5 * jnp.mean((zb @ p["w"][:, 0] - yb) ** 2)

  return loss, params, [(z, y)] * 200


def _mlp():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(512, 20)).astype(np.float32)
  labels = (x[:, :3].sum(1) > 0).astype(np.int32) + (x[:, 3] > 0.5).astype(np.int32)
  k1, k2 = jax.random.split(jax.random.key(0))
  params = {
    "w1": jax.random.normal(k1, (20, 64)) / np.sqrt(20),
    "b1": jnp.zeros(64),
    "w2": jax.random.normal(k2, (64, 3)) / 8.0,
    "b2": jnp.zeros(3),
  }

  def loss(p, batch):
    xb, yb = batch
    h = jax.nn.relu(xb @ p["w1"] + p["b1"])
    return optax.softmax_cross_entropy_with_integer_labels(h @ p["w2"] + p["b2"], yb).mean()

  batches = [(jnp.asarray(x[i : i + 64]), jnp.asarray(labels[i : i + 64])) for i in range(0, 512, 64)] * 25
  return loss, params, batches


def _train(loss, params, batches, tx):
  state = tx.init(params)

  @jax.jit
  def step(p, s, b):
    v, g = jax.value_and_grad(loss)(p, b)
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s, v

  losses = []
  for b in batches:
    params, state, v = step(params, state, b)
    losses.append(float(v))
  return np.asarray(losses)


def test_suggest_alpha_is_deterministic_and_a_float():
  loss, params, batches = _mlp()
  inner = optax.sgd(0.1, momentum=0.9)
  a1 = ham_optax.suggest_alpha(loss, params, batches, inner, 0.1)
  a2 = ham_optax.suggest_alpha(loss, params, batches, inner, 0.1)
  assert isinstance(a1, float) and a1 == a2 and a1 > 0
  # It scales linearly with target_ratio (the formula's rho).
  a3 = ham_optax.suggest_alpha(
    loss, params, batches, inner, 0.1, target_ratio=2 * ham_optax.DEFAULT_TARGET_RATIO
  )
  assert a3 == pytest.approx(2 * a1, rel=1e-12)


class _CountingSequence(Sequence):
  """A sequence that records which indices were read."""

  def __init__(self, items):
    self.items, self.read = items, []

  def __len__(self):
    return len(self.items)

  def __getitem__(self, i):
    self.read.append(i)
    return self.items[i]


def test_suggest_alpha_cost_is_num_steps_gradient_evaluations():
  loss, params, batches = _mlp()
  seq = _CountingSequence(batches)
  ham_optax.suggest_alpha(loss, params, seq, optax.adam(1e-2), 1e-2)
  # 20 gradient evaluations (< 5 % of a 30-epoch run of >= 14 steps per epoch), on batches 0..19, each once.
  assert seq.read == list(range(20))
  with pytest.raises(ValueError, match="holds 3 batches"):
    ham_optax.suggest_alpha(loss, params, batches[:3], optax.adam(1e-2), 1e-2)


def test_suggest_alpha_refuses_an_iterator_without_consuming_it():
  loss, params, batches = _mlp()
  pulled = []

  def generator():
    for b in batches:
      pulled.append(1)
      yield b

  gen = generator()
  with pytest.raises(TypeError, match=r"generator.*itertools.islice"):
    ham_optax.suggest_alpha(loss, params, gen, optax.adam(1e-2), 1e-2)
  assert pulled == []  # nothing was taken from the user's stream
  with pytest.raises(TypeError, match="would be consumed"):
    ham_optax.suggest_alpha(loss, params, iter(batches), optax.adam(1e-2), 1e-2)
  # The documented way: a list of the first num_steps batches.
  inner = optax.adam(1e-2)
  a = ham_optax.suggest_alpha(loss, params, list(itertools.islice(generator(), 20)), inner, 1e-2)
  assert a == ham_optax.suggest_alpha(loss, params, tuple(batches[:20]), inner, 1e-2)


def test_suggest_alpha_compiles_once_per_model_and_optimizer():
  loss, params, batches = _mlp()
  traces = []

  def counted_loss(p, b):
    traces.append(1)  # runs at trace time only
    return loss(p, b)

  inner = optax.sgd(0.1, momentum=0.9)
  a1 = ham_optax.suggest_alpha(counted_loss, params, batches, inner, 0.1)
  assert len(traces) == 1
  a2 = ham_optax.suggest_alpha(counted_loss, params, batches[5:], inner, 0.1, target_ratio=0.4)
  a3 = ham_optax.suggest_alpha(counted_loss, params, batches, inner, 0.1, per_leaf=True)
  assert len(traces) == 1  # the same loss_fn and inner objects: no new trace, hence no new compilation
  assert a2 > 0 and a3["w1"] > 0 and a1 > 0
  ham_optax.suggest_alpha(counted_loss, params, batches, optax.sgd(0.1, momentum=0.9), 0.1)
  assert len(traces) == 2  # a new optimizer object is a new step


def test_suggest_alpha_matches_formula_for_plain_sgd():
  # Plain SGD: u = -lr g, so alpha = rho * ||g|| / ||x * g|| on the first step's quantities (constant problem).
  loss, params, batches = _least_squares()
  p = params
  ratios = []
  for b in batches[:20]:
    g = jax.grad(loss)(p, b)
    ratios.append(float(jnp.linalg.norm(g["w"]) / jnp.linalg.norm(jnp.abs(p["w"]) * g["w"])))
    p = jax.tree.map(lambda x, gi: x - 0.1 * gi, p, g)
  got = ham_optax.suggest_alpha(loss, params, batches, optax.sgd(0.1), 0.1, target_ratio=0.5)
  assert got == pytest.approx(0.5 * np.median(ratios[10:]), rel=1e-4)


@pytest.mark.parametrize("name", ["least_squares", pytest.param("mlp", marks=pytest.mark.slow)])
@pytest.mark.parametrize("inner_name,lr", [("sgd_momentum", 0.1), ("adamw", 1e-2)])
def test_suggested_alpha_does_not_diverge(name, inner_name, lr):
  loss, params, batches = _least_squares() if name == "least_squares" else _mlp()
  inner = optax.sgd(lr, momentum=0.9) if inner_name == "sgd_momentum" else optax.adamw(lr, weight_decay=1e-4)
  alpha = ham_optax.suggest_alpha(loss, params, batches, inner, lr)
  ham_losses = _train(loss, params, batches, ham_optax.ham(inner, lr, alpha=alpha, beta=0.0))
  base_losses = _train(loss, params, batches, inner)
  assert np.all(np.isfinite(ham_losses))
  assert ham_losses[-8:].mean() < 0.5 * ham_losses[0]
  assert ham_losses[-8:].mean() < 1.5 * base_losses[-8:].mean() + 1e-3


def test_suggest_alpha_rejects_bad_arguments():
  loss, params, batches = _mlp()
  with pytest.raises(ValueError, match="target_ratio"):
    ham_optax.suggest_alpha(loss, params, batches, optax.sgd(0.1), 0.1, target_ratio=0.0)
  with pytest.raises(ValueError, match="num_steps"):
    ham_optax.suggest_alpha(loss, params, batches, optax.sgd(0.1), 0.1, num_steps=1)
  with pytest.raises(TypeError, match="inner"):
    ham_optax.suggest_alpha(loss, params, batches, "sgd", 0.1)
  with pytest.raises(ValueError, match="selects no parameter"):
    ham_optax.suggest_alpha(
      loss, params, batches, optax.sgd(0.1), 0.1, mask=lambda p: jax.tree.map(lambda _: False, p)
    )


def _docstring_problem():
  kx, ky = jax.random.split(jax.random.key(0))
  x = jax.random.normal(kx, (64, 8))
  y = x @ jnp.arange(8.0)
  params = {"w": 0.1 * jax.random.normal(ky, (8, 1))}

  def loss(p, b):
    return jnp.mean((b[0] @ p["w"] - b[1][:, None]) ** 2)

  return loss, params, x, y


@pytest.mark.parametrize("lr", [1.0, 3.0])
def test_suggest_alpha_raises_on_a_diverging_calibration_run(lr):
  # Plain SGD on this least-squares problem is stable up to lr ~ 0.5; above, the loss grows geometrically.
  loss, params, x, y = _docstring_problem()
  with pytest.raises(ham_optax.CalibrationDivergedError, match="diverged"):
    ham_optax.suggest_alpha(loss, params, [(x, y)] * 20, optax.sgd(lr), lr)
  assert ham_optax.suggest_alpha(loss, params, [(x, y)] * 20, optax.sgd(0.3), 0.3) > 0


def test_suggest_alpha_raises_on_overflow_and_nan():
  loss, params, x, y = _docstring_problem()
  # |x| * g overflows float32 (1e30 * 1e15) while every weight and gradient is finite.
  big = {"w": jnp.full((8, 1), 1e30)}
  with pytest.raises(ValueError, match="overflows"):
    ham_optax.suggest_alpha(
      lambda p, b: 1e15 * jnp.sum(jnp.sin(p["w"])), big, [(x, y)] * 20, optax.sgd(1e-30), 1e-30
    )
  with pytest.raises(ValueError, match="non-finite"):
    ham_optax.suggest_alpha(lambda p, b: loss(p, b) * jnp.nan, params, [(x, y)] * 20, optax.sgd(0.1), 0.1)


def test_suggest_alpha_skips_non_float_leaves():
  loss, params, x, y = _docstring_problem()
  inner = optax.sgd(0.01, momentum=0.9)
  ref = ham_optax.suggest_alpha(loss, params, [(x, y)] * 20, inner, 0.01)
  extra = {**params, "step": jnp.int32(3), "flag": jnp.array([True, False]), "key": jax.random.key(1)}

  def loss_using_extra(p, b):  # the integer leaf enters the loss; it is held fixed, not differentiated
    return loss(p, b) * (p["step"] - 2)

  got = ham_optax.suggest_alpha(loss_using_extra, extra, [(x, y)] * 20, inner, 0.01, per_leaf=True)
  assert got == {"w": pytest.approx(ref, rel=1e-6), "step": 0.0, "flag": 0.0, "key": 0.0}
  with pytest.raises(TypeError, match=r"selects parameter \"\['step'\]\""):
    ham_optax.suggest_alpha(
      loss_using_extra,
      extra,
      [(x, y)] * 20,
      inner,
      0.01,
      mask={"w": True, "step": True, "flag": False, "key": False},
    )


def test_suggest_alpha_has_aux():
  loss, params, x, y = _docstring_problem()
  inner = optax.sgd(0.01, momentum=0.9)
  ref = ham_optax.suggest_alpha(loss, params, [(x, y)] * 20, inner, 0.01)

  def with_aux(p, b):
    return loss(p, b), {"batch_stats": jnp.ones(3)}

  assert ham_optax.suggest_alpha(with_aux, params, [(x, y)] * 20, inner, 0.01, has_aux=True) == ref
  with pytest.raises(ValueError, match="pass has_aux=True"):
    ham_optax.suggest_alpha(with_aux, params, [(x, y)] * 20, inner, 0.01)
  with pytest.raises(ValueError, match=r"has_aux=True needs loss_fn to return a pair"):
    ham_optax.suggest_alpha(loss, params, [(x, y)] * 20, inner, 0.01, has_aux=True)
  with pytest.raises(ValueError, match="scalar loss, got shape"):
    ham_optax.suggest_alpha(lambda p, b: (b[0] @ p["w"])[:, 0], params, [(x, y)] * 20, inner, 0.01)


def test_suggest_alpha_checks_the_first_batch():
  loss, params, x, y = _docstring_problem()
  inner = optax.sgd(0.01)
  # One batch (x, y) instead of a sequence of batches: said so, not a failure inside dot_general.
  with pytest.raises(ValueError, match=r"batches looks like one batch.*\[batch\] \* 20"):
    ham_optax.suggest_alpha(loss, params, (x, y), inner, 0.01)
  with pytest.raises(ValueError, match=r"batches looks like one batch"):
    ham_optax.suggest_alpha(loss, params, (x, y), inner, 0.01, num_steps=2)
  # A batch loss_fn rejects is named as such.
  with pytest.raises(ValueError, match=r"loss_fn\(params, batches\[0\]\) fails \(TypeError"):
    ham_optax.suggest_alpha(loss, params, [(x[:, :3], y)] * 20, inner, 0.01)
  with pytest.raises(TypeError, match="A dict is one batch"):
    ham_optax.suggest_alpha(loss, params, {"x": x, "y": y}, inner, 0.01)
  # An error inside the inner optimizer is not blamed on the batch.
  bad_inner = optax.GradientTransformation(optax.sgd(0.1).init, lambda u, s, p=None: 1 / 0)
  with pytest.raises(ZeroDivisionError):
    ham_optax.suggest_alpha(loss, params, [(x, y)] * 20, bad_inner, 0.01)


@pytest.mark.slow
def test_suggest_alpha_detects_a_learning_rate_mismatch():
  # A warmup inside the inner optimizer while its peak value is passed: the calibration would see steps far
  # smaller than the ones HAM meets after the warmup.
  loss, params, batches = _mlp()
  schedule = optax.warmup_cosine_decay_schedule(0.0, 0.1, warmup_steps=100, decay_steps=1000)
  inner = optax.sgd(schedule, momentum=0.9)
  with pytest.raises(ValueError, match=r"learning_rate does not follow.*factor 1\.9"):
    ham_optax.suggest_alpha(loss, params, batches, inner, 0.1)
  # The same object: accepted. The opposite mistake (a schedule passed, a constant inside) is caught too.
  assert ham_optax.suggest_alpha(loss, params, batches, inner, schedule) > 0
  with pytest.raises(ValueError, match="learning_rate does not follow"):
    ham_optax.suggest_alpha(loss, params, batches, optax.sgd(0.1, momentum=0.9), schedule)
  assert ham_optax.suggest_alpha(loss, params, batches, inner, 0.1, check_learning_rate=False) > 0
  # An optimizer that skips steps is named as such, not as a learning-rate mismatch.
  accumulating = optax.MultiSteps(optax.sgd(0.1), 2).gradient_transformation()
  with pytest.raises(ValueError, match=r"makes no update at step\(s\) 10, 14.*MultiSteps"):
    ham_optax.suggest_alpha(loss, params, batches, accumulating, 0.1)


@pytest.mark.parametrize(
  "inner,lr",
  [
    (optax.adam(1e-2), 1e-2),
    (optax.adamw(1e-2, weight_decay=1e-2), 1e-2),
    (optax.adam(1e-2, b1=0.95, b2=0.99), 1e-2),
    (optax.lion(1e-3), 1e-3),
    (optax.rmsprop(1e-2), 1e-2),
    (optax.sgd(1e-2, momentum=0.99, nesterov=True), 1e-2),
  ],
  ids=["adam", "adamw", "adam_b95", "lion", "rmsprop", "nesterov"],
)
def test_learning_rate_check_accepts_matching_optimizers(inner, lr):
  loss, params, x, y = _docstring_problem()
  assert ham_optax.suggest_alpha(loss, params, [(x, y)] * 20, inner, lr) > 0


def _two_kernel_regression():
  rng = np.random.default_rng(3)
  z1, z2 = rng.normal(size=(20, 16, 6)), 3.0 * rng.normal(size=(20, 16, 4))
  y = rng.normal(size=(20, 16))
  params = {
    "w1": rng.normal(scale=0.5, size=(6, 1)),
    "w2": rng.normal(scale=0.05, size=(4, 1)),
    "b": np.zeros(1),
  }
  return z1, z2, y, params


def _per_leaf_reference(z1, z2, y, params, lr, momentum, rho):
  """float64 NumPy rendering of the rule: SGD + momentum (optax's trace), norms per kernel, median of the window."""
  p = {k: v.copy() for k, v in params.items()}
  trace = {k: np.zeros_like(v) for k, v in p.items()}
  ratios = {"w1": [], "w2": [], "all": []}
  for k in range(20):
    r = z1[k] @ p["w1"][:, 0] + z2[k] @ p["w2"][:, 0] + p["b"][0] - y[k]
    g = {"w1": (z1[k].T @ r / 16)[:, None], "w2": (z2[k].T @ r / 16)[:, None], "b": np.array([r.mean()])}
    trace = {n: g[n] + momentum * trace[n] for n in p}
    u = {n: -lr * trace[n] for n in p}
    mirror = {n: lr * np.linalg.norm(np.abs(p[n]) * g[n]) for n in ("w1", "w2")}
    for n in ("w1", "w2"):
      ratios[n].append(np.linalg.norm(u[n]) / mirror[n])
    u_all = np.sqrt(np.linalg.norm(u["w1"]) ** 2 + np.linalg.norm(u["w2"]) ** 2)
    ratios["all"].append(u_all / np.sqrt(mirror["w1"] ** 2 + mirror["w2"] ** 2))
    p = {n: p[n] + u[n] for n in p}
  return {n: rho * np.median(v[10:]) for n, v in ratios.items()}


def test_per_leaf_alpha_matches_a_float64_reference():
  z1, z2, y, params = _two_kernel_regression()
  batches = [
    (jnp.asarray(z1[k], jnp.float32), jnp.asarray(z2[k], jnp.float32), jnp.asarray(y[k], jnp.float32))
    for k in range(20)
  ]

  def loss(p, b):
    pred = b[0] @ p["w1"][:, 0] + b[1] @ p["w2"][:, 0] + p["b"][0]
    return 0.5 * jnp.mean((pred - b[2]) ** 2)

  ref = _per_leaf_reference(z1, z2, y, params, 0.05, 0.9, 0.3)
  p32 = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), params)
  inner = optax.sgd(0.05, momentum=0.9)
  got = ham_optax.suggest_alpha(loss, p32, batches, inner, 0.05, target_ratio=0.3, per_leaf=True)
  assert set(got) == {"w1", "w2", "b"} and got["b"] == 0.0  # the bias is not selected
  assert got["w1"] == pytest.approx(ref["w1"], rel=1e-4)
  assert got["w2"] == pytest.approx(ref["w2"], rel=1e-4)
  assert ref["w2"] != pytest.approx(ref["w1"], rel=0.2)  # the layers differ: one scalar cannot fit both
  scalar = ham_optax.suggest_alpha(loss, p32, batches, inner, 0.05, target_ratio=0.3)
  assert scalar == pytest.approx(ref["all"], rel=1e-4)
  # A leaf with no measurable ratio (zero gradient throughout) gets the global alpha.
  frozen = ham_optax.suggest_alpha(
    lambda p, b: loss({**p, "w2": jax.lax.stop_gradient(p["w2"])}, b),
    p32,
    batches,
    inner,
    0.05,
    per_leaf=True,
  )
  assert frozen["w2"] == ham_optax.suggest_alpha(
    lambda p, b: loss({**p, "w2": jax.lax.stop_gradient(p["w2"])}, b), p32, batches, inner, 0.05
  )


def test_per_leaf_alpha_runs_in_ham():
  loss, params, batches = _mlp()
  inner = optax.sgd(0.1, momentum=0.9)
  alpha = ham_optax.suggest_alpha(loss, params, batches, inner, 0.1, per_leaf=True)
  losses = _train(loss, params, batches[:40], ham_optax.ham(inner, 0.1, alpha=alpha, beta=0.0))
  assert np.all(np.isfinite(losses)) and losses[-8:].mean() < losses[0]


def test_nnx_example_of_the_alpha_guide_runs():
  nnx = pytest.importorskip("flax.nnx")
  guide = (Path(__file__).resolve().parents[1] / "docs" / "guides" / "choosing_alpha.md").read_text()
  code = next(b for b in re.findall(r"```python\n(.*?)```", guide, flags=re.S) if "from flax import nnx" in b)
  env = {}
  exec(code, env)
  assert isinstance(env["alpha"], float) and env["alpha"] > 0
  assert isinstance(env["params"], nnx.State)
