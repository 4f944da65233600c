"""Tests for ham_optax.training: data loaders, one short epoch per model, CLI smoke, resume."""

from __future__ import annotations

import dataclasses
import json
import sys
import types

import jax
import numpy as np
import pytest
from flax import nnx

import ham_optax
from ham_optax.training import data as data_lib
from ham_optax.training import models
from ham_optax.training.cli import main
from ham_optax.training.configs.default import Config
from ham_optax.training.train import train_and_evaluate


@pytest.fixture(scope="module")
def tiny_mnist1d(tmp_path_factory):
  return data_lib.load_mnist1d(num_samples=300, cache=tmp_path_factory.mktemp("cache"))


def _params(model):
  return jax.tree.map(np.asarray, nnx.as_pure(nnx.state(model, nnx.Param)))


# ----------------------------------------------------------------------------------------- data


def test_mnist1d_cache_roundtrip(tmp_path, monkeypatch):
  first = data_lib.load_mnist1d(num_samples=120, cache=tmp_path)
  files = list(tmp_path.glob("mnist1d_120_*.npz"))
  assert len(files) == 1
  # 80/20 train/test from mnist1d, then 10 % of train for validation.
  assert first.x_train.shape == (86, 40) and first.x_val.shape == (10, 40) and first.x_test.shape == (24, 40)
  assert first.x_train.dtype == np.float32 and first.y_train.dtype == np.int32
  import mnist1d.data

  def boom(*args, **kwargs):
    raise AssertionError("the cache was not used")

  monkeypatch.setattr(mnist1d.data, "make_dataset", boom)
  second = data_lib.load_mnist1d(num_samples=120, cache=tmp_path)
  for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
    np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
  # $HAM_OPTAX_CACHE is the default location.
  monkeypatch.setenv("HAM_OPTAX_CACHE", str(tmp_path))
  assert data_lib.cache_dir() == tmp_path
  np.testing.assert_array_equal(data_lib.load_mnist1d(num_samples=120).x_val, first.x_val)


def test_digits_fixed_disjoint_splits():
  ds = data_lib.load_digits()
  assert ds.input_shape == (8, 8, 1) and ds.num_classes == 10
  assert len(ds.x_train) + len(ds.x_val) + len(ds.x_test) == 1797
  assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
  rows = lambda x: {r.tobytes() for r in x.reshape(len(x), -1)}  # noqa: E731
  assert not rows(ds.x_test) & rows(ds.x_val)
  np.testing.assert_array_equal(ds.x_test, data_lib.load_digits().x_test)


def test_tfds_cifar_path_on_fake_data(monkeypatch, tmp_path):
  calls = []
  rng = np.random.default_rng(0)
  fake_train = (rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8), rng.integers(0, 100, 20))
  fake_test = (rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8), rng.integers(0, 100, 6))

  def load(name, *, split, batch_size, as_supervised, data_dir, download):
    calls.append((name, split, data_dir, download))
    assert batch_size == -1 and as_supervised
    if split == "test":
      return fake_test
    images, labels = fake_train
    return (images[:18], labels[:18]) if split == "train[:90%]" else (images[18:], labels[18:])

  fake = types.SimpleNamespace(load=load, as_numpy=lambda ds: ds)
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
  ds = data_lib.load_dataset("cifar100", data_dir=tmp_path)
  assert [c[1] for c in calls] == ["train[:90%]", "train[90%:]", "test"]
  assert all(c[0] == "cifar100" and c[2] == str(tmp_path) and c[3] is False for c in calls)
  assert ds.num_classes == 100 and ds.input_shape == (32, 32, 3)
  assert ds.x_train.shape[0] == 18 and ds.x_val.shape[0] == 2 and ds.x_test.shape[0] == 6
  expected = (fake_test[0][0, 0, 0] / 255.0 - data_lib._CIFAR_MEAN) / data_lib._CIFAR_STD
  np.testing.assert_allclose(ds.x_test[0, 0, 0], expected, rtol=1e-6)


def test_bad_inputs_raise_early():
  with pytest.raises(ValueError, match="unknown dataset"):
    data_lib.load_dataset("imagenet")
  with pytest.raises(ValueError, match="val_fraction"):
    data_lib.load_digits(val_fraction=1.5)
  with pytest.raises(ValueError, match="name must be"):
    data_lib.load_cifar("svhn")
  with pytest.raises(ValueError, match="unknown model"):
    models.create_model("vit", (40,), 10)
  with pytest.raises(ValueError, match="resnet18 needs"):
    models.create_model("resnet18", (40,), 10)
  for bad in ({"optimizer": "lion"}, {"sparsity": 1.0}, {"sparsifier": "str"}, {"epochs": 0}, {"beta": -1.0}):
    with pytest.raises(ValueError, match=next(iter(bad))):
      Config(**bad).validate()


# ------------------------------------------------------------------------------ one short epoch


def test_resnet18_is_the_cifar_resnet18():
  model = nnx.eval_shape(lambda: models.create_model("resnet18", (32, 32, 3), 10))  # shapes only
  n = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
  assert n == 11_173_962  # the standard CIFAR ResNet-18 parameter count


@pytest.mark.parametrize("name", ["mlp_ln", "resnet1d"])
def test_default_mask_skips_norm_layers(name):
  model = models.create_model(name, (40,), 10, seed=0, width=8)
  params = nnx.as_pure(nnx.state(model, nnx.Param))
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  masked = jax.tree.leaves(ham_optax.default_mask(params))
  kinds = {jax.tree_util.keystr(p): m for (p, _), m in zip(flat, masked, strict=True)}
  assert any("norm" in k or "bn" in k for k in kinds)
  for key, m in kinds.items():
    is_kernel = key.endswith("['kernel']")
    assert m == is_kernel, key  # kernels only: no norm scale, norm bias or dense bias


@pytest.mark.parametrize(
  "model,dataset,width",
  [
    ("mlp", "mnist1d", 32),
    ("cnn1d", "mnist1d", 8),
    ("mlp_ln", "mnist1d", 16),
    ("resnet1d", "mnist1d", 4),
    # Initialising and compiling ResNet-18 (even at width 4 on 8x8 inputs) takes 20-60 s on a busy
    # 2-core CPU: both ResNet-18 runs are in the slow set; its shapes are checked in the default run.
    pytest.param("resnet18", "digits", 4, marks=pytest.mark.slow),
  ],
)
def test_one_short_epoch(model, dataset, width, tiny_mnist1d):
  ds = tiny_mnist1d if dataset == "mnist1d" else data_lib.load_digits()
  ds = dataclasses.replace(
    ds, x_val=ds.x_val[:32], y_val=ds.y_val[:32], x_test=ds.x_test[:32], y_test=ds.y_test[:32]
  )
  config = Config(
    dataset=dataset,
    model=model,
    width=width,
    epochs=1,
    batch_size=8,
    max_steps=2,
    num_train=64,
    progress=False,
  )
  init = models.create_model(model, ds.input_shape, ds.num_classes, seed=0, width=width)
  results = train_and_evaluate(config, ds, return_model=True)
  (record,) = results["history"]
  assert record["step"] == 2 and np.isfinite(record["train_loss"])
  assert 0.0 <= record["val_acc"] <= 1.0 and 0.0 <= record["test_acc"] <= 1.0
  before, after = jax.tree.leaves(_params(init)), jax.tree.leaves(_params(results["model"]))
  assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))
  assert 0.0 < record["sign_flips"] < 0.5 and record["sparsity"] == 0.0
  json.dumps({k: v for k, v in results.items() if k != "model"})  # results are JSON-serialisable
  if model in ("resnet18", "resnet1d"):  # BatchNorm running statistics were updated in training mode
    stats = nnx.as_pure(nnx.state(results["model"], nnx.BatchStat))
    assert any(np.any(np.asarray(x) != 0) for x in jax.tree.leaves(stats))


@pytest.mark.slow
def test_resnet18_batchnorm_modes():
  model = models.create_model("resnet18", (8, 8, 1), 10, width=4)
  x = np.random.default_rng(0).normal(size=(6, 8, 8, 1)).astype(np.float32)
  forward = nnx.jit(lambda m, x: m(x))
  model.eval()
  eval_logits = np.asarray(forward(model, x))
  stats_before = jax.tree.map(np.asarray, nnx.as_pure(nnx.state(model, nnx.BatchStat)))
  model.train()
  train_logits = np.asarray(forward(model, x))  # batch statistics; updates running averages
  stats_after = jax.tree.map(np.asarray, nnx.as_pure(nnx.state(model, nnx.BatchStat)))
  assert eval_logits.shape == train_logits.shape == (6, 10)
  assert not np.allclose(eval_logits, train_logits)
  changed = [
    not np.array_equal(a, b)
    for a, b in zip(jax.tree.leaves(stats_before), jax.tree.leaves(stats_after), strict=True)
  ]
  assert len(changed) == 2 * 20 and all(
    changed
  )  # mean and var of 20 BatchNorms (stem, 16 convs, 3 shortcuts)


# ------------------------------------------------------------------------------ CLI and resume


def test_cli_smoke(tmp_path, monkeypatch, capsys):
  monkeypatch.setenv("HAM_OPTAX_CACHE", str(tmp_path / "cache"))
  out = tmp_path / "run"
  argv = ["train", "--dataset", "digits", "--width", "16", "--epochs", "2", "--seeds", "1"]
  argv += [
    "--max-steps",
    "2",
    "--batch-size",
    "32",
    "--sparsifier",
    "none",
    "--out",
    str(out),
    "--no-progress",
  ]
  assert main(argv) == 0
  printed = capsys.readouterr().out
  assert "| dense |" in printed and "| dense+HAM |" in printed
  payload = json.loads((out / "results.json").read_text())
  assert [r["method"] for r in payload["runs"]] == ["dense", "dense+HAM"]
  assert all(len(r["history"]) == 2 for r in payload["runs"])
  plain, ham = ([h["train_loss"] for h in r["history"]] for r in payload["runs"])
  assert plain != ham  # HAM changed the training trajectory
  assert [row["method"] for row in payload["summary"]] == ["dense", "dense+HAM"]
  for name in ("runs.csv", "summary.csv", "summary.md", "curves.png"):
    assert (out / name).stat().st_size > 0
  with pytest.raises(SystemExit):
    main(["train", "--sparsity", "1.5", "--out", str(tmp_path / "bad")])


def test_checkpoint_resume_is_identical(tmp_path, tiny_mnist1d):
  config = Config(
    width=32, epochs=3, batch_size=16, max_steps=3, num_train=64, ham=True, sparsifier="rigl", progress=False
  )
  straight = train_and_evaluate(config, tiny_mnist1d, return_model=True)
  ckpt = str(tmp_path / "ckpt")
  halted = train_and_evaluate(config.replace(checkpoint_dir=ckpt, halt_after_epochs=1), tiny_mnist1d)
  assert len(halted["history"]) == 1 and not halted["completed"]
  resumed = train_and_evaluate(config.replace(checkpoint_dir=ckpt), tiny_mnist1d, return_model=True)
  assert resumed["completed"] and [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
  for a, b in zip(
    jax.tree.leaves(_params(straight["model"])), jax.tree.leaves(_params(resumed["model"])), strict=True
  ):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
  for key in ("train_loss", "val_acc", "test_acc", "sign_flips"):
    assert [h[key] for h in straight["history"]] == pytest.approx(
      [h[key] for h in resumed["history"]], abs=1e-6
    )


def test_cli_defaults_use_validation_tuned_hyperparameters():
  from ham_optax.training.cli import build_parser, configs_from_args
  from ham_optax.training.configs.default import tuned_hyperparameters

  configs = configs_from_args(build_parser().parse_args([]))  # `ham-optax` with no arguments
  assert [c.method for c in configs] == ["dense"] * 5 + ["dense+HAM"] * 5 + ["random"] * 5 + [
    "random+HAM"
  ] * 5
  assert all(c.dataset == "mnist1d" and c.model == "mlp" and c.sparsity == 0.9 for c in configs)
  for c in configs:
    expected = tuned_hyperparameters("mnist1d", "mlp", "sgd", c.sparsifier)
    assert (c.learning_rate, c.alpha, c.beta) == (
      expected["learning_rate"],
      expected["alpha"],
      expected["beta"],
    )
  overridden = configs_from_args(
    build_parser().parse_args(["--lr", "0.3", "--alpha", "2", "--dataset", "digits"])
  )
  assert {(c.learning_rate, c.alpha, c.beta) for c in overridden} == {(0.3, 2.0, Config().beta)}


def test_cli_accepts_train_after_the_options():
  from ham_optax.training.cli import _subcommand_first, build_parser

  argv = _subcommand_first(["--sparsifier", "none", "random", "train", "--seeds", "2"])
  args = build_parser().parse_args(argv)
  assert args.sparsifier == ["none", "random"] and args.seeds == 2
  assert _subcommand_first(["--out", "train"]) == ["--out", "train"]  # a directory called "train"
  assert _subcommand_first(["train", "--seeds", "2"]) == ["train", "--seeds", "2"]


def test_history_logs_ham_diagnostics(tiny_mnist1d):
  config = Config(
    model="mlp",
    width=16,
    epochs=1,
    batch_size=8,
    max_steps=2,
    num_train=64,
    ham=True,
    alpha=3.0,
    progress=False,
  )
  (record,) = train_and_evaluate(config, tiny_mnist1d)["history"]
  keys = ("exponent_rms", "exponent_max", "clip_fraction", "inverse_metric_mean", "inverse_metric_max")
  for k in keys:
    assert np.isfinite(record[f"ham_{k}"]), k
  assert 0.0 < record["ham_exponent_rms"] <= record["ham_exponent_max"] <= 5.0
  assert 1.0 < record["ham_inverse_metric_mean"] <= record["ham_inverse_metric_max"]
