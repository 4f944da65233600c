"""Tests for the transformer example: the model, the modular-arithmetic data and the grokking runner."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from ham_optax_examples import data as data_lib
from ham_optax_examples import grokking, models
from ham_optax_examples.configs.default import Config
from ham_optax_examples.train import train_and_evaluate

import ham_optax
from ham_optax import sparsity

P = 7  # tiny modulus for fast tests


def _flat_params(model):
  params = nnx.as_pure(nnx.state(model, nnx.Param))
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  return params, [(jax.tree_util.keystr(path), leaf) for path, leaf in flat]


def _is_weight(key: str) -> bool:
  """Which leaves are weights, decided from their names (independently of their ndim)."""
  return key.endswith(("['kernel']", "['embedding']", "['pos_embed']"))


# -------------------------------------------------------------------------------------- model


@pytest.mark.slow
def test_transformer_shapes_and_parameter_count():
  d, heads, layers, vocab, seq, classes = 16, 4, 2, 10, 4, 7
  model = models.Transformer(
    vocab, seq, classes, d_model=d, num_heads=heads, num_layers=layers, rngs=nnx.Rngs(0)
  )
  tokens = jnp.asarray(np.random.default_rng(0).integers(0, vocab, size=(5, seq)), jnp.int32)
  assert model(tokens).shape == (5, classes)
  _, flat = _flat_params(model)
  shapes = dict((k, v.shape) for k, v in flat)
  assert shapes["['blocks'][0]['attn']['query']['kernel']"] == (d, heads, d // heads)
  assert shapes["['blocks'][1]['attn']['out']['kernel']"] == (heads, d // heads, d)
  # closed form: embeddings + per block (4 d^2 attention, 2 LayerNorms, MLP d -> 4d -> d) + final LN + head
  per_block = 4 * d * d + 2 * 2 * d + (d * 4 * d + 4 * d) + (4 * d * d + d)
  expected = vocab * d + seq * d + layers * per_block + 2 * d + d * classes + classes
  assert sum(v.size for _, v in flat) == expected


def test_transformer_is_causal():
  model = models.create_model("transformer", (4,), P, seed=0, width=16)
  x = np.array([[1, P, 2, P + 2]], np.int32)
  y = x.copy()
  y[0, -1] = 3  # only the last token changes: the output (read at the last position) may change
  z = x.copy()
  z[0, 0] = 5  # an earlier token: the output must change too (it attends to every earlier position)
  out = [np.asarray(model(jnp.asarray(v))) for v in (x, y, z)]
  assert not np.allclose(out[0], out[2])
  block = model.blocks[0]
  h = model.token_embed(jnp.asarray(x)) + model.pos_embed[...]
  h2 = model.token_embed(jnp.asarray(y)) + model.pos_embed[...]
  a1 = block(h, nnx.make_causal_mask(jnp.asarray(x)))
  a2 = block(h2, nnx.make_causal_mask(jnp.asarray(y)))
  np.testing.assert_allclose(a1[:, :-1], a2[:, :-1], rtol=1e-6, atol=1e-6)  # earlier positions do not see it


def test_default_mask_selects_embeddings_attention_and_mlp_kernels():
  model = models.create_model("transformer", (4,), P, seed=0, width=16)
  params, flat = _flat_params(model)
  masked = jax.tree.leaves(ham_optax.default_mask(params))
  selected = {k for (k, _), m in zip(flat, masked, strict=True) if m}
  assert selected == {k for k, _ in flat if _is_weight(k)}
  assert any("attn" in k and np.ndim(v) == 3 for k, v in flat if k in selected)  # 3-D attention kernels
  assert {"['token_embed']['embedding']", "['pos_embed']", "['blocks'][0]['fc1']['kernel']"} <= selected
  left = {k for k, _ in flat} - selected
  assert left and all(k.endswith(("['scale']", "['bias']")) for k in left)  # LayerNorms and biases


@pytest.mark.parametrize(
  "make",
  [
    lambda tx: sparsity.random_pruning(tx, 0.5, distribution="uniform", seed=0),
    pytest.param(
      lambda tx: sparsity.magnitude_pruning(tx, 0.5, begin_step=0, end_step=1, frequency=1, scope="layer"),
      marks=pytest.mark.slow,  # a second compilation; random pruning covers the mask in the default run
    ),
  ],
  ids=["random", "magnitude"],
)
@pytest.mark.slow
def test_sparsifiers_prune_the_same_leaves(make):
  model = models.create_model("transformer", (4,), P, seed=0, width=16)
  params, flat = _flat_params(model)
  tx = make(ham_optax.ham(optax.adamw(1e-3), 1e-3, 1.0, 0.0))
  state = tx.init(params)
  x, y = data_lib.modular_tokens(P)
  graphdef, _ = nnx.split(model)

  def loss(prm):
    logits = nnx.merge(graphdef, prm)(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  @jax.jit
  def step(params, state):
    updates, state = tx.update(jax.grad(loss)(params), state, params)
    return optax.apply_updates(params, updates), state

  params = sparsity.apply_masks(params, state)
  for _ in range(2):
    params, state = step(params, state)
  masks = jax.tree.leaves(sparsity.get_masks(state))
  leaves = jax.tree.leaves(params)
  for (key, _), m, leaf in zip(flat, masks, leaves, strict=True):
    zeros = float(np.mean(np.asarray(leaf) == 0))
    if _is_weight(key):
      assert np.shape(m) == np.shape(leaf), key
      assert zeros == pytest.approx(0.5, abs=0.1), key
    else:
      assert np.shape(m) == np.shape(leaf) and bool(np.all(m)), key  # all-active mask
      assert zeros < 0.5, key  # LayerNorm scales / biases are not pruned


@pytest.mark.slow
def test_transformer_learns_the_training_set():
  ds = data_lib.load_modular(p=P, train_fraction=0.6, val_fraction=0.2)
  graphdef, params = grokking.init_params([0], P, width=16)
  train, evals = grokking.run_dataset(ds)
  out = grokking.train_runs(
    "adamw", graphdef, params, {"lr": [1e-2], "wd": [0.0]}, train, evals, steps=150, eval_every=50
  )
  assert out["finite"].all()
  assert out["train_acc"][0, -1] == 1.0
  assert out["train_loss"][0, -1] < out["train_loss"][0, 0]


@pytest.mark.slow  # one compilation per method
@pytest.mark.parametrize("method", ["ham_adamw", "adamw_wd_off", "sgdm", "ham_sgdm", "nanoadam"])
def test_every_method_trains(method):
  ds = data_lib.load_modular(p=5, train_fraction=0.6, val_fraction=0.2)
  graphdef, params = grokking.init_params([0, 1], 5, width=8)
  hp = {"lr": [1e-2, 1e-2], "wd": [0.1, 0.1], "alpha": [1.0, 10.0], "beta": [0.0, 0.1]}
  train, evals = grokking.run_dataset(ds)
  out = grokking.train_runs(
    method, graphdef, params, hp, train, evals, steps=4, eval_every=2, switch_step=2, nano_refresh=2
  )
  assert out["finite"].all() and out["val_acc"].shape == (2, 2)
  before = jax.tree.leaves(params)
  assert any(not np.array_equal(a, b) for a, b in zip(before, jax.tree.leaves(out["params"]), strict=True))


@pytest.mark.slow  # the trainer compiles its epoch and evaluation functions
def test_cli_trainer_runs_modular_transformer():
  ds = data_lib.load_modular(p=P)
  config = Config(
    dataset="modular", model="transformer", width=16, optimizer="adamw", learning_rate=1e-2, weight_decay=0.1,
    epochs=2, batch_size=len(ds.x_train), progress=False, ham=True, alpha=1.0, beta=1e-3,
  )  # fmt: skip
  results = train_and_evaluate(config, ds)
  assert [r["step"] for r in results["history"]] == [1, 2]
  assert np.isfinite(results["history"][-1]["train_loss"]) and 0.0 <= results["val_acc"] <= 1.0


# --------------------------------------------------------------------------------------- data


def test_modular_tokens_match_a_reference():
  for op, f in (("add", lambda a, b: (a + b) % P), ("sub", lambda a, b: (a - b) % P)):
    x, y = data_lib.modular_tokens(P, op)
    assert x.shape == (P * P, 4) and x.dtype == np.int32
    ref = [([a, P + (op == "sub"), b, P + 2], f(a, b)) for a in range(P) for b in range(P)]
    np.testing.assert_array_equal(x, [r[0] for r in ref])
    np.testing.assert_array_equal(y, [r[1] for r in ref])


def test_modular_splits_deterministic_disjoint_and_covering():
  a = data_lib.load_modular(p=11, train_fraction=0.4, val_fraction=0.3, seed=3)
  b = data_lib.load_dataset("modular", p=11, train_fraction=0.4, val_fraction=0.3, seed=3)
  for split in ("train", "val", "test"):
    for u, v in zip(a.split(split), b.split(split), strict=True):
      np.testing.assert_array_equal(u, v)
  pairs = {s: {(int(r[0]), int(r[2])) for r in a.split(s)[0]} for s in ("train", "val", "test")}
  assert len(pairs["train"]) == round(0.4 * 121) == len(a.x_train)
  assert len(pairs["val"]) == round(0.3 * 121)
  assert not (pairs["train"] & pairs["val"]) and not (pairs["train"] & pairs["test"])
  assert not (pairs["val"] & pairs["test"])
  assert len(pairs["train"] | pairs["val"] | pairs["test"]) == 121
  other = data_lib.load_modular(p=11, train_fraction=0.4, val_fraction=0.3, seed=4)
  assert not np.array_equal(other.x_train, a.x_train)  # the seed changes the split
  sub = data_lib.load_dataset("modular_sub", p=11, train_fraction=0.4, val_fraction=0.3, seed=3)
  np.testing.assert_array_equal(sub.x_train[:, [0, 2]], a.x_train[:, [0, 2]])  # same pairs, other task
  assert sub.num_classes == 11 and sub.input_shape == (4,)


@pytest.mark.parametrize(
  "kwargs",
  [{"p": 1}, {"operation": "mul"}, {"train_fraction": 0.0}, {"train_fraction": 0.6, "val_fraction": 0.4}],
)
def test_modular_bad_inputs_raise(kwargs):
  with pytest.raises(ValueError, match=next(iter(kwargs))):
    data_lib.load_modular(**kwargs)


# ---------------------------------------------------------------------------------- indicators


def test_fourier_concentration_reference():
  p, d = 13, 6
  n = np.arange(p)[:, None]
  single = np.cos(2 * np.pi * 3 * n / p + np.arange(d)) + 0.5  # one frequency (plus a constant)
  assert float(grokking.fourier_concentration(jnp.asarray(single), p, top=1)) == pytest.approx(1.0, abs=1e-5)
  rng = np.random.default_rng(0)
  e = rng.normal(size=(p, d))
  f = np.fft.fft(e - e.mean(0), axis=0)
  energy = np.array([np.sum(np.abs(f[k]) ** 2 + np.abs(f[p - k]) ** 2) for k in range(1, 7)])
  ref = np.sort(energy)[-4:].sum() / energy.sum()
  assert float(grokking.fourier_concentration(jnp.asarray(e), p)) == pytest.approx(ref, rel=1e-5)


def test_grokking_step():
  steps = np.array([10, 20, 30])
  acc = np.array([[0.5, 0.995, 0.9], [0.1, 0.2, 0.3]])
  out = grokking.grokking_step(steps, acc)
  assert out[0] == 20 and np.isnan(out[1])
