"""Tests for the graph task: the CSBM generator, the GCN / GraphSAGE models and a short full-batch run."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from flax import nnx
from ham_optax_examples import data as data_lib
from ham_optax_examples import models
from ham_optax_examples.configs.default import Config
from ham_optax_examples.main import main
from ham_optax_examples.train import train_and_evaluate

import ham_optax

# ------------------------------------------------------------------------------------ generator


@pytest.mark.parametrize("h", [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0])
def test_csbm_edge_homophily_matches_h(h):
  g = data_lib.make_csbm(num_nodes=600, num_classes=3, avg_degree=8.0, homophily=h, seed=3)
  m = len(g.senders) // 2
  assert m == 600 * 8 // 2  # exactly the requested number of undirected edges
  sigma = np.sqrt(h * (1 - h) / m)  # binomial sampling error of the fraction of same-label edges
  assert abs(data_lib.edge_homophily(g) - h) <= 4 * sigma + 1e-12


def test_csbm_graph_is_simple_and_undirected():
  g = data_lib.make_csbm(num_nodes=300, avg_degree=6.0, homophily=0.4, seed=1)
  s, r = g.senders, g.receivers
  assert np.all(s != r)  # no self-loops
  pairs = set(zip(s.tolist(), r.tolist(), strict=True))
  assert len(pairs) == len(s)  # no duplicate edges
  assert pairs == set(zip(r.tolist(), s.tolist(), strict=True))  # each edge in both directions
  assert np.bincount(g.y).tolist() == [100, 100, 100]  # balanced classes


def test_csbm_signal_separates_the_class_means():
  g = data_lib.make_csbm(num_nodes=600, num_classes=2, num_features=16, signal=2.0, seed=0)
  means = np.stack([g.x[g.y == c].mean(0) for c in range(2)])
  # each class mean is signal * (a unit vector) up to the noise of 300 samples
  np.testing.assert_allclose(np.linalg.norm(means, axis=1), 2.0, atol=0.3)
  flat = data_lib.make_csbm(num_nodes=600, num_classes=2, num_features=16, signal=0.0, seed=0)
  assert np.linalg.norm(flat.x[flat.y == 0].mean(0)) < 0.5


def test_csbm_deterministic_and_seeded():
  a, b = data_lib.load_csbm(homophily=0.2, seed=5), data_lib.load_csbm(homophily=0.2, seed=5)
  for name in ("x_train", "x_val", "x_test", "y_train"):
    np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
  np.testing.assert_array_equal(a.graph.x, b.graph.x)
  np.testing.assert_array_equal(a.graph.senders, b.graph.senders)
  c = data_lib.load_csbm(homophily=0.2, seed=6)
  assert not np.array_equal(a.graph.senders, c.graph.senders)
  assert not np.array_equal(a.x_train, c.x_train)


def test_csbm_splits_disjoint_and_cover_the_nodes():
  ds = data_lib.load_csbm(num_nodes=500, train_fraction=0.3, val_fraction=0.2, seed=2)
  tr, va, te = (set(a.tolist()) for a in (ds.x_train, ds.x_val, ds.x_test))
  assert not (tr & va or tr & te or va & te)
  assert tr | va | te == set(range(500))
  assert (len(tr), len(va), len(te)) == (150, 100, 250)
  np.testing.assert_array_equal(ds.y_test, ds.graph.y[ds.x_test])
  assert ds.input_shape == () and ds.x_train.dtype == np.int32


def test_csbm_bad_inputs_raise_early():
  with pytest.raises(ValueError, match="homophily"):
    data_lib.make_csbm(homophily=1.5)
  with pytest.raises(ValueError, match="num_classes"):
    data_lib.make_csbm(num_classes=1)
  with pytest.raises(ValueError, match="avg_degree"):
    data_lib.make_csbm(num_nodes=20, num_classes=2, avg_degree=15.0)
  with pytest.raises(ValueError, match="train_fraction"):
    data_lib.load_csbm(train_fraction=0.7, val_fraction=0.4)
  with pytest.raises(ValueError, match="graph model"):
    models.create_model("gcn", (), 2)
  with pytest.raises(ValueError, match="not a graph model"):
    models.create_model("mlp", (), 2, graph=data_lib.make_csbm(num_nodes=20, avg_degree=2.0))


# ----------------------------------------------------------------------------------------- models


@pytest.fixture(scope="module")
def small_graph():
  return data_lib.make_csbm(num_nodes=40, num_classes=2, num_features=5, avg_degree=3.0, seed=0)


def _dense_adjacency(g):
  a = np.zeros((g.num_nodes, g.num_nodes))
  a[g.receivers, g.senders] = 1.0
  return a


def test_gcn_matches_a_dense_numpy_reference(small_graph):
  g = small_graph
  model = models.create_model("gcn", (), 2, seed=0, width=7, graph=g)
  a = _dense_adjacency(g) + np.eye(g.num_nodes)
  d = a.sum(1) ** -0.5
  a_hat = d[:, None] * a * d[None, :]
  (w1, b1), (w2, b2) = (
    (np.asarray(lin.kernel[...], np.float64), np.asarray(lin.bias[...])) for lin in model.layers
  )
  ref = a_hat @ np.maximum(a_hat @ g.x @ w1 + b1, 0.0) @ w2 + b2
  np.testing.assert_allclose(np.asarray(model()), ref, rtol=1e-4, atol=1e-5)
  idx = np.array([3, 0, 17])
  np.testing.assert_allclose(np.asarray(model(idx)), ref[idx], rtol=1e-4, atol=1e-5)


def test_sage_matches_a_dense_numpy_reference(small_graph):
  g = small_graph
  model = models.create_model("sage", (), 2, seed=0, width=7, graph=g)
  a = _dense_adjacency(g)
  deg = a.sum(1)
  mean = np.where(deg[:, None] > 0, a / np.maximum(deg, 1)[:, None], 0.0)

  def layer(h, i):
    own, neigh = model.self_layers[i], model.neigh_layers[i]
    return (
      h @ np.asarray(own.kernel[...]) + np.asarray(own.bias[...]) + mean @ h @ np.asarray(neigh.kernel[...])
    )

  ref = layer(np.maximum(layer(g.x.astype(np.float64), 0), 0.0), 1)
  np.testing.assert_allclose(np.asarray(model()), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["gcn", "sage"])
def test_graph_models_default_mask_selects_weight_matrices_only(name, small_graph):
  model = models.create_model(name, (), 2, seed=0, width=8, graph=small_graph)
  params = nnx.as_pure(nnx.state(model, nnx.Param))
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  masked = jax.tree.leaves(ham_optax.default_mask(params))
  kinds = {jax.tree_util.keystr(p): m for (p, _), m in zip(flat, masked, strict=True)}
  assert sum(kinds.values()) == (2 if name == "gcn" else 4)
  for key, m in kinds.items():
    assert m == key.endswith("['kernel']"), key  # kernels only, never a bias
  # The graph (features, edge lists, edge weights) is GraphData, not a parameter: the optimizer and the mask
  # never see it, although the features are a float matrix that the default mask would otherwise select.
  graph_state = nnx.as_pure(nnx.state(model, models.GraphData))
  assert {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(graph_state)[0]} == {
    "['features']",
    "['receivers']",
    "['senders']",
    "['weights']",
  }
  assert not any("features" in k for k in kinds)


@pytest.mark.parametrize("name,h", [pytest.param("gcn", 0.9, marks=pytest.mark.slow), ("sage", 0.1)])
def test_short_full_batch_run_learns(name, h):
  ds = data_lib.load_csbm(num_nodes=300, num_classes=2, signal=0.5, avg_degree=6.0, homophily=h, seed=0)
  config = Config(
    dataset="csbm",
    model=name,
    width=16,
    optimizer="adamw",
    learning_rate=0.05,
    weight_decay=5e-4,
    epochs=20,
    batch_size=10_000,  # full batch: one step per epoch
    ham=True,
    alpha=-3.0 if h < 0.5 else 3.0,
    beta=0.0,
    progress=False,
  )
  results = train_and_evaluate(config, ds)
  first, last = results["history"][0], results["history"][-1]
  assert last["step"] == 20 and results["completed"]
  assert last["train_loss"] < 0.6 * first["train_loss"]
  assert results["val_acc"] > 0.75 and results["test_acc"] > 0.75  # the features alone give about 0.65


@pytest.mark.slow
def test_cli_trains_a_gcn_on_csbm(tmp_path, capsys):
  out = tmp_path / "run"
  argv = ["train", "--dataset", "csbm", "--model", "gcn", "--width", "8", "--epochs", "2", "--seeds", "1"]
  argv += ["--optimizer", "adamw", "--lr", "0.01", "--alpha", "-5", "--beta", "0", "--batch-size", "100000"]
  argv += ["--sparsifier", "none", "--out", str(out), "--no-progress"]
  assert main(argv) == 0
  assert "| dense+HAM |" in capsys.readouterr().out
  payload = json.loads((out / "results.json").read_text())
  runs = payload["runs"]
  assert [r["method"] for r in runs] == ["dense", "dense+HAM"]
  assert all(r["history"][-1]["step"] == 2 for r in runs)  # full batch: one step per epoch
  assert runs[0]["history"][-1]["train_loss"] != runs[1]["history"][-1]["train_loss"]
