"""Tests for ham_optax_examples: data loaders, one short epoch per model, the CLI, divergence, checks before
training, choice-dependent defaults, checkpoints that know their config."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import re
import shutil
import sys
import types
import typing
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx
from ham_optax_examples import data as data_lib
from ham_optax_examples import models, report
from ham_optax_examples import train as train_lib
from ham_optax_examples.configs.default import Config, DatasetName, ModelName, resolve
from ham_optax_examples.configs.tuned import FALLBACK, MAIN_JOB, MODEL_DEFAULTS, TUNED
from ham_optax_examples.main import configs_from_args, main, parse
from ham_optax_examples.train import CheckpointError, train_and_evaluate

import ham_optax

_REPO = Path(__file__).resolve().parents[1]


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


# ResNet1D (BatchNorm) takes ~10 s of CPU to build; norm layers stay in the default run through mlp_ln here and
# the NNX BatchNorm/LayerNorm model of tests/test_flax.py.
@pytest.mark.parametrize("name", ["mlp_ln", pytest.param("resnet1d", marks=pytest.mark.slow)])
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
    # The MLP's short epoch (with HAM) is examples/ham_optax_examples/train_test.py, in the default run.
    pytest.param("cnn1d", "mnist1d", 8, marks=pytest.mark.slow),
    pytest.param("mlp_ln", "mnist1d", 16, marks=pytest.mark.slow),
    pytest.param("resnet1d", "mnist1d", 4, marks=pytest.mark.slow),  # ~10 s of CPU to compile
    # Initialising and compiling ResNet-18 (even at width 4 on 8x8 inputs) takes 20-60 s on a 2-core CPU:
    # both ResNet-18 runs are in the slow set; its shapes are checked in the default run.
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


# ------------------------------------------------------------------------------------------ the CLI

# A tiny job: one small MLP, two steps per epoch on 64 examples.
_TINY = ["--model", "mlp", "--width", "8", "--num-train", "64", "--batch-size", "16", "--max-steps", "2"]
_TINY += ["--seeds", "1", "--no-progress"]


@pytest.fixture
def tiny_cache(tmp_path, monkeypatch, tiny_mnist1d):
  """The CLI loads `tiny_mnist1d` whatever dataset it asks for (no generation, no download)."""
  monkeypatch.setattr(data_lib, "load_dataset", lambda name, **kwargs: tiny_mnist1d)
  return tmp_path


@pytest.mark.slow
def test_cli_writes_consistent_outputs(tmp_path, tiny_cache, capsys):
  out = tmp_path / "run"
  argv = ["train", *_TINY, "--epochs", "2", "--sparsifier", "none", "--alpha", "auto", "--out", str(out)]
  assert main(argv) == 0
  printed = capsys.readouterr().out
  assert "dense+HAM seed 0: test acc" in printed and "(suggest_alpha)" in printed
  payload = json.loads((out / "results.json").read_text())
  runs = payload["runs"]
  assert [r["method"] for r in runs] == ["dense", "dense+HAM"]
  assert all(len(r["history"]) == 2 and r["completed"] and not r["diverged"] for r in runs)
  plain, ham = ([h["train_loss"] for h in r["history"]] for r in runs)
  assert plain != ham  # HAM changed the training trajectory
  # The summary files agree with each other, with the printed table and with the runs themselves.
  table = (out / "summary.md").read_text().strip()
  assert table in printed and "| diverged |" in table.splitlines()[0]
  with (out / "summary.csv").open() as f:
    rows = list(csv.DictReader(f))
  assert [row["method"] for row in rows] == ["dense", "dense+HAM"]
  for row, run in zip(rows, runs, strict=True):
    assert row["diverged"] == "0/1" and row["model"] == "mlp"
    assert float(row["test_acc_mean"]) == pytest.approx(run["history"][-1]["test_acc"])
    assert f"| mlp | {run['method']} |" in table
    assert f"{100 * run['test_acc']:.2f} ± 0.00" in table
  with (out / "runs.csv").open() as f:
    assert len(list(csv.DictReader(f))) == 2
  assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert payload["argv"] == argv


def _help(capsys) -> str:
  with pytest.raises(SystemExit) as exit_info:
    parse(["train", "--help"])
  assert exit_info.value.code == 0
  return capsys.readouterr().out


def test_cli_train_is_the_default_command_and_takes_lists():
  assert parse([]) == parse(["train"])
  args = parse(["train", "--sparsifier", "none", "random", "--seeds", "2", "--lr", "0.3", "--alpha", "auto"])
  assert args.sparsifier == ("none", "random") and args.seeds == 2
  assert args.config.learning_rate == 0.3 and args.config.alpha == "auto"


def test_cli_reaches_every_config_field(capsys):
  """Every Config field is an option, or set by the job (model, sparsifier, ham, seed, checkpoint_dir)."""
  help_text = _help(capsys)
  for f in dataclasses.fields(Config):
    if f.name not in ("model", "sparsifier", "ham", "seed", "checkpoint_dir"):
      flag = "--" + {"learning_rate": "lr"}.get(f.name, f.name).replace("_", "-")
      assert re.search(f"{flag}[ ,]", help_text), flag
  assert "--seed " not in help_text and "--checkpoint-dir" not in help_text
  configs = configs_from_args(
    parse(["--sign-in", "--sign-in-every", "2", "--sparsifier", "random", "--ham", "off"])
  )
  assert {c.method for c in configs} == {"random", "random+Sign-In"}
  assert all(c.sign_in_every == 2 for c in configs if c.sign_in)


def test_cli_choices_come_from_the_registries():
  assert typing.get_args(DatasetName) == data_lib.DATASETS
  assert typing.get_args(ModelName) == models.MODELS


# ------------------------------------------------------------------------ divergence is never silent


def test_divergence_stops_the_run_and_marks_the_epoch(tiny_mnist1d):
  config = Config(
    width=8, epochs=4, batch_size=16, max_steps=2, num_train=64, learning_rate=1e8, progress=False
  )
  r = train_and_evaluate(config, tiny_mnist1d)
  assert r["diverged"] and not r["completed"]
  assert r["diverged_epoch"] == len(r["history"]) + 1 and r["diverged_epoch"] < 4
  assert r["test_acc"] is None and r["val_acc"] is None  # no accuracy reported for a diverged run
  assert all(math.isfinite(h["train_loss"]) and math.isfinite(h["val_loss"]) for h in r["history"])
  json.dumps(r, allow_nan=False)


def _fake_run(method: str, seed: int, accs: list[float] | None, diverged_epoch: int | None = None) -> dict:
  """A result as train_and_evaluate returns it: per-epoch accuracies `accs` (None: diverged at once)."""
  history = [
    {"epoch": i + 1, "train_loss": 1.0, "val_loss": 1.0, "val_acc": a, "test_acc": a}
    for i, a in enumerate(accs or [])
  ]
  final = history[-1]["test_acc"] if history and diverged_epoch is None else None
  config = dataclasses.asdict(resolve(Config(ham=method.endswith("+HAM"), seed=seed))[0])
  return {
    "config": config,
    "method": method,
    "history": history,
    "diverged": diverged_epoch is not None,
    "diverged_epoch": diverged_epoch,
    "completed": diverged_epoch is None,
    "val_acc": final,
    "test_acc": final,
    "sparsity": None if final is None else 0.0,
    "sign_flips": None if final is None else 0.25,
    "train_time_s": 1.0,
  }


def test_summary_counts_diverged_runs_and_averages_the_others(tmp_path):
  runs = [
    _fake_run("dense+HAM", 0, [0.5, 0.7, 0.8]),
    _fake_run("dense+HAM", 1, [0.4, 0.6]),  # stopped after 2 epochs: diverged at epoch 3
    _fake_run("dense+HAM", 2, [0.5, 0.55, 0.6]),
  ]
  runs[1].update(diverged=True, diverged_epoch=3, completed=False, val_acc=None, test_acc=None)
  (row,) = report.summarize(runs)
  assert row["diverged"] == "1/3"
  assert row["test_acc_mean"] == pytest.approx(np.mean([0.8, 0.6]))
  assert row["test_acc_std"] == pytest.approx(np.std([0.8, 0.6], ddof=1))
  paths = report.save_results(runs, tmp_path)
  table = paths["markdown"].read_text()
  assert "| 70.00 ± 14.14 |" in table and table.strip().endswith("| 1/3 |")
  with paths["summary_csv"].open() as f:
    assert next(csv.DictReader(f))["diverged"] == "1/3"
  with paths["runs_csv"].open() as f:
    diverged_row = list(csv.DictReader(f))[1]
  assert diverged_row["diverged_epoch"] == "3" and diverged_row["test_acc"] == ""
  every = [_fake_run("dense", s, [0.1], diverged_epoch=2) for s in range(2)]
  assert "| diverged | diverged |" in report.markdown_table(report.summarize(every))


def test_curves_draw_finished_runs_fully_and_mark_diverged_ones(tmp_path):
  runs = [_fake_run("dense+HAM", 0, [0.5, 0.7, 0.8, 0.9]), _fake_run("dense+HAM", 1, [0.4, 0.6, 0.7, 0.8])]
  runs.append(_fake_run("dense+HAM", 2, [0.3], diverged_epoch=2))
  fig = report.plot_curves(runs, tmp_path / "curves.png")
  ax = fig.axes[1]  # test accuracy
  lines = ax.get_lines()
  mean = next(line for line in lines if line.get_label().startswith("dense+HAM"))
  np.testing.assert_array_equal(mean.get_xdata(), [1, 2, 3, 4])  # not cut to the diverged run's length
  np.testing.assert_allclose(mean.get_ydata(), [45, 65, 75, 85])
  assert "diverged 1/3" in mean.get_label()
  marks = [line for line in lines if line.get_marker() == "x"]
  assert len(marks) == 1 and list(marks[0].get_xdata()) == [2]


def test_cli_every_run_diverged_says_so_and_fails(tmp_path, tiny_cache, capsys):
  argv = [
    *_TINY,
    "--epochs",
    "3",
    "--lr",
    "1e8",
    "--ham",
    "off",
    "--sparsifier",
    "none",
    "--out",
    str(tmp_path / "o"),
  ]
  assert main(argv) == 1
  captured = capsys.readouterr()
  assert "| 0/1 |" not in captured.out and "| 1/1 |" in captured.out
  assert [line for line in captured.err.splitlines() if "diverged" in line] == [
    "ham-optax: every run diverged (1/1): no result; lower --lr or --alpha"
  ]


# --------------------------------------------------------------------------- checks before training


@pytest.mark.parametrize(
  "bad", [["--lr", "inf"], ["--weight-decay", "inf"], ["--alpha", "nan"], ["--lr", "-1"], ["--beta", "-1"]]
)
def test_bad_values_are_usage_errors_before_data_loads(bad, tmp_path, monkeypatch, capsys):
  def no_data(*args, **kwargs):
    raise AssertionError("data was loaded")

  monkeypatch.setattr(data_lib, "load_dataset", no_data)
  with pytest.raises(SystemExit) as exit_info:
    main([*bad, "--out", str(tmp_path / "o")])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  name = bad[0].lstrip("-").replace("-", "_").replace("lr", "learning_rate")
  assert "Traceback" not in err and (bad[0] in err or name in err)
  with pytest.raises(ValueError, match=name):
    Config(**{name: float(bad[1])}).validate()


def test_out_must_be_writable_before_training(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(train_lib, "train_and_evaluate", lambda *a, **k: pytest.fail("trained"))
  blocker = tmp_path / "a_file"
  blocker.write_text("")
  with pytest.raises(SystemExit) as exit_info:
    main([*_TINY, "--out", str(blocker / "sub")])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("ham-optax: error: --out")
  main_out = tmp_path / "new" / "dir"
  monkeypatch.setattr(data_lib, "load_dataset", lambda *a, **k: pytest.fail("loaded"))
  monkeypatch.setattr(train_lib, "check_checkpoint", lambda config: None)
  with pytest.raises(pytest.fail.Exception, match="loaded"):
    main([*_TINY, "--out", str(main_out)])
  assert main_out.is_dir()  # created before the data loads


def test_missing_tensorflow_datasets_is_one_line_with_the_install_command(tmp_path, monkeypatch, capsys):
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
  with pytest.raises(SystemExit) as exit_info:
    main(["--dataset", "cifar10", "--model", "resnet18", "--seeds", "1", "--out", str(tmp_path / "o")])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "pip install -e './examples[cifar]' from the repository root" in err[0]
  # The extra is the examples' (the library has none of that name), and the README gives the same command.
  assert re.search(r"^cifar = \[", (_REPO / "examples" / "pyproject.toml").read_text(), re.M)
  assert "[cifar]" not in (_REPO / "pyproject.toml").read_text()
  assert 'pip install -e "./examples[cifar]"' in (_REPO / "README.md").read_text()


# ------------------------------------------------------------------------ defaults that fit the choice


def test_main_job_defaults():
  configs = configs_from_args(parse([]))  # `ham-optax train` with no options
  assert {c.model for c in configs} == set(MAIN_JOB["models"]) == {"mlp", "resnet1d"}
  for model in MAIN_JOB["models"]:
    mine = [c for c in configs if c.model == model]
    seeds = MAIN_JOB["per_model"][model]["seeds"]
    assert [c.method for c in mine] == [
      m for m in ("dense", "dense+HAM", "random", "random+HAM") for _ in range(seeds)
    ]
    assert {c.epochs for c in mine} == {MAIN_JOB["per_model"][model]["epochs"]}
    for c in mine:
      tuned = TUNED.get(("mnist1d", model, "sgd", c.sparsifier))
      assert tuned is not None and "benchmarks/" in tuned.source
      assert (c.learning_rate, c.alpha, c.beta) == (tuned.learning_rate, tuned.alpha, tuned.beta)
  assert {c.width for c in configs if c.model == "resnet1d"} == {MODEL_DEFAULTS["resnet1d"]["width"]}
  overridden = configs_from_args(parse(["--lr", "0.3", "--alpha", "2", "--dataset", "digits"]))
  assert {(c.model, c.learning_rate, c.alpha, c.beta) for c in overridden} == {
    ("mlp", 0.3, 2.0, FALLBACK["sgd"]["beta"])
  }


def test_adamw_defaults_are_adamw_defaults():
  (config,) = configs_from_args(
    parse(["--optimizer", "adamw", "--ham", "on", "--seeds", "1", "--sparsifier", "none", "--model", "mlp"])
  )
  assert config.learning_rate == FALLBACK["adamw"]["learning_rate"] == 1e-3  # not SGD's 0.4
  assert config.weight_decay == FALLBACK["adamw"]["weight_decay"]
  _, sources = resolve(Config(optimizer="adamw"))
  assert sources["learning_rate"] == "fallback for adamw"
  _, sources = resolve(Config())
  assert sources["learning_rate"] == sources["alpha"] == "validation-tuned"
  assert sources["weight_decay"] == "fallback for sgd"


def test_warmup_applies_to_either_schedule():
  for schedule in ("cosine", "constant"):
    lr = train_lib._learning_rate(Config(schedule=schedule, warmup_epochs=2, learning_rate=0.4), 100, 10)
    assert [float(lr(step)) for step in (0, 10, 20)] == pytest.approx([0.0, 0.2, 0.4])
    assert float(lr(99)) == (pytest.approx(0.4) if schedule == "constant" else pytest.approx(0.0, abs=1e-3))
  assert train_lib._learning_rate(Config(schedule="constant", learning_rate=0.4), 100, 10) == 0.4


def test_help_shows_each_default_once(capsys):
  text = _help(capsys)
  options = [line for line in text.splitlines() if re.match(r"[│| ]*--[a-z]", line)]
  assert len(options) >= len(dataclasses.fields(Config)) and text.count("(default:") == len(options)
  assert "validation-tuned where listed in configs/tuned.py" in text


# ----------------------------------------------------------------------- checkpoints know their config


def _ckpt_config(tmp_path, **changes) -> Config:
  base = Config(width=8, epochs=3, batch_size=16, max_steps=2, num_train=64, ham=True, progress=False)
  return base.replace(checkpoint_dir=str(tmp_path / "ckpt"), **changes)


@pytest.mark.slow  # three trainings end to end; orbax resume itself is checked fast in tests/test_flax.py
def test_checkpoint_resume_is_identical(tmp_path, tiny_mnist1d, capsys):
  config = Config(
    width=32, epochs=3, batch_size=16, max_steps=3, num_train=64, ham=True, sparsifier="rigl", progress=False
  )
  straight = train_and_evaluate(config, tiny_mnist1d, return_model=True)
  ckpt = str(tmp_path / "ckpt")
  halted = train_and_evaluate(config.replace(checkpoint_dir=ckpt, halt_after_epochs=1), tiny_mnist1d)
  assert len(halted["history"]) == 1 and not halted["completed"]
  capsys.readouterr()
  resumed = train_and_evaluate(config.replace(checkpoint_dir=ckpt), tiny_mnist1d, return_model=True)
  assert "resuming from epoch 1 of 3" in capsys.readouterr().out
  assert resumed["completed"] and [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
  for a, b in zip(
    jax.tree.leaves(_params(straight["model"])), jax.tree.leaves(_params(resumed["model"])), strict=True
  ):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
  for key in ("train_loss", "val_acc", "test_acc", "sign_flips"):
    assert [h[key] for h in straight["history"]] == pytest.approx(
      [h[key] for h in resumed["history"]], abs=1e-6
    )


@pytest.mark.slow  # two training runs (a checkpoint, then a resume with other settings)
def test_resuming_with_other_settings_refuses_naming_the_fields(tmp_path, tiny_mnist1d):
  config = _ckpt_config(tmp_path)
  train_and_evaluate(config.replace(halt_after_epochs=1), tiny_mnist1d)
  assert train_lib.check_checkpoint(config) == 1
  for changes, fields in (
    ({"learning_rate": 0.2}, ["learning_rate"]),
    ({"alpha": 5.0, "beta": 0.0}, ["alpha", "beta"]),
    ({"epochs": 2}, ["epochs"]),
    ({"width": 16}, ["width"]),
  ):
    with pytest.raises(CheckpointError) as info:
      train_and_evaluate(config.replace(**changes), tiny_mnist1d)
    message = str(info.value)
    assert all(f in message for f in fields) and "momentum" not in message and "--restart" in message
  # Settings that do not change the run (progress bars, where to halt) still resume.
  assert train_lib.check_checkpoint(config.replace(progress=True, halt_after_epochs=2)) == 1


@pytest.mark.slow
def test_cli_refuses_a_changed_config_before_loading_and_restart_starts_over(tmp_path, tiny_cache, capsys):
  out = str(tmp_path / "o")
  argv = [*_TINY, "--epochs", "2", "--sparsifier", "none", "--ham", "on", "--checkpoint", "--out", out]
  assert main([*argv, "--halt-after-epochs", "1"]) == 0
  capsys.readouterr()
  with pytest.raises(SystemExit) as exit_info:
    main([*argv, "--alpha", "2"])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "alpha" in err[0] and "--restart" in err[0]
  assert main([*argv, "--alpha", "2", "--restart"]) == 0
  printed = capsys.readouterr().out
  assert "resuming" not in printed
  runs = json.loads((tmp_path / "o" / "results.json").read_text())["runs"]
  assert runs[0]["config"]["alpha"] == 2.0 and [h["epoch"] for h in runs[0]["history"]] == [1, 2]


@pytest.mark.slow
def test_suggested_alpha_resolves_the_config_and_is_deterministic(tiny_mnist1d):
  from ham_optax_examples.train import suggested_alpha

  config = Config(model="mlp", width=16, batch_size=8, num_train=64)  # lr, alpha, ... left to the defaults
  a = suggested_alpha(config, tiny_mnist1d)
  assert a == suggested_alpha(config, tiny_mnist1d) and np.isfinite(a) and a > 0


# ------------------------------------------------------ a job never loses or silently replaces results


@pytest.mark.parametrize(
  "extra, message",
  [
    (["--model", "mlp", "gcn"], "model 'gcn' does not fit dataset 'mnist1d'"),
    (["--model", "transformer"], "the transformer reads token sequences"),
    (["--first-seed", "-3"], "first_seed must be >= 0, got -3"),
    (["--seeds", "0"], "seeds must be >= 1, got 0"),
    (["--join-timeout", "0"], "--join-timeout must be >= 1, got 0"),
    # Known only once the data is loaded (216 training examples), still before suggest_alpha and any run.
    (
      ["--data-shards", "256", "--batch-size", "256", "--num-train", "512"],
      "216 training examples cannot be cut into 256 data shards (--data-shards)",
    ),
  ],
)
def test_model_data_and_batch_checks_come_before_any_training(
  extra, message, tmp_path, tiny_cache, monkeypatch, capfd
):
  monkeypatch.setattr(train_lib, "train_and_evaluate", lambda *a, **k: pytest.fail("trained"))
  monkeypatch.setattr(train_lib, "suggested_alpha", lambda *a, **k: pytest.fail("calibrated"))
  argv = [*_TINY[2:], "--model", "mlp", *extra, "--out", str(tmp_path / "o")]
  with pytest.raises(SystemExit) as exit_info:
    main(argv)
  assert exit_info.value.code == 2
  err = capfd.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("ham-optax: error: ") and message in err[0], err


@pytest.mark.parametrize(
  "extra, message",
  [
    (
      ["--first-seed", "2147483646", "--seeds", "3"],
      "first_seed + seeds - 1 (the last seed) must be <= 2147483647",
    ),
    (["--model", "mlp", "cnn1d", "mlp"], "--model lists mlp more than once"),
    (["--sparsifier", "none", "random", "none"], "--sparsifier lists none more than once"),
    (["--halt-after-epochs", "1"], "--halt-after-epochs needs --checkpoint"),
    (["--out", ""], "--out must name a directory, got an empty string"),
    (
      ["--data-shards", "2", "--num-train", "1", "--batch-size", "2"],
      "num_train 1 is fewer than the 2 data shards",
    ),
  ],
)
def test_job_options_are_checked_before_data_loads(extra, message, tmp_path, monkeypatch, capfd):
  monkeypatch.setattr(data_lib, "load_dataset", lambda *a, **k: pytest.fail("loaded"))
  monkeypatch.chdir(tmp_path)  # an --out that fell back to runs/<time> would land here
  with pytest.raises(SystemExit) as exit_info:
    main(["--out", str(tmp_path / "o"), *_TINY, "--sparsifier", "none", *extra])
  assert exit_info.value.code == 2
  err = capfd.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("ham-optax: error: ") and message in err[0], err
  assert sorted(p.name for p in tmp_path.iterdir()) == []  # no --out created, no runs/


@pytest.mark.parametrize(
  "damage",
  [
    lambda path: path.write_text(""),
    lambda path: path.write_text("[1, 2]"),
    lambda path: path.write_bytes(b"\xff\xfe"),
    lambda path: path.mkdir(),
  ],
  ids=["empty", "list", "binary", "directory"],
)
def test_a_damaged_job_json_is_one_line_and_restart_replaces_it(damage, tmp_path, monkeypatch, capfd):
  monkeypatch.setattr(data_lib, "load_dataset", lambda *a, **k: pytest.fail("loaded"))
  out = tmp_path / "o"
  out.mkdir()
  damage(out / "job.json")
  argv = [*_TINY, "--sparsifier", "none", "--ham", "off", "--out", str(out)]
  with pytest.raises(SystemExit) as exit_info:
    main(argv)
  assert exit_info.value.code == 2
  err = capfd.readouterr().err.strip().splitlines()
  assert len(err) == 1 and f"{out / 'job.json'} is " in err[0], err
  if (
    out / "job.json"
  ).is_dir():  # --restart could not write the job's settings there: refused before data loads
    with pytest.raises(SystemExit):
      main([*argv, "--restart"])
    assert "remove it" in capfd.readouterr().err
  else:
    assert "--restart" in err[0]
    with pytest.raises(pytest.fail.Exception, match="loaded"):  # --restart goes past it to the data
      main([*argv, "--restart"])


def test_job_json_is_written_atomically(tmp_path, monkeypatch):
  from ham_optax_examples import main as main_module

  (tmp_path / "job.json").write_text('{"--epochs": 3}')

  def interrupted(*args):
    raise OSError("interrupted")

  monkeypatch.setattr(main_module.os, "replace", interrupted)
  with pytest.raises(OSError, match="interrupted"):
    main_module._write_job(tmp_path, {"--epochs": 5})
  assert json.loads((tmp_path / "job.json").read_text()) == {"--epochs": 3}  # the old file, whole
  assert [p.name for p in tmp_path.iterdir()] == ["job.json"]
  monkeypatch.undo()
  main_module._write_job(tmp_path, {"--epochs": 5})
  assert json.loads((tmp_path / "job.json").read_text()) == {"--epochs": 5}
  assert [p.name for p in tmp_path.iterdir()] == ["job.json"]  # no temporary file left behind


@pytest.mark.slow
def test_a_batch_larger_than_the_data_is_recorded_as_the_size_used(tmp_path, tiny_cache, capsys):
  argv = [
    *_TINY,
    "--batch-size",
    "128",
    "--epochs",
    "1",
    "--sparsifier",
    "none",
    "--ham",
    "off",
    "--out",
    str(tmp_path),
  ]
  assert main(argv) == 0
  assert "--batch-size 128 > 64 training examples: every step uses all 64" in capsys.readouterr().out
  (run,) = json.loads((tmp_path / "results.json").read_text())["runs"]
  assert run["batch_size_used"] == 64 and run["config"]["batch_size"] == 128


@pytest.mark.parametrize(
  "argv", [["--lr", "x"], ["--bogus"], ["--ham", "maybe"], ["--coordinator", "h:70000"]]
)
def test_usage_errors_are_one_line(argv, monkeypatch, capfd):
  monkeypatch.setattr(data_lib, "load_dataset", lambda *a, **k: pytest.fail("loaded"))
  with pytest.raises(SystemExit) as exit_info:
    main(["train", *argv])
  assert exit_info.value.code == 2
  err = capfd.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("ham-optax: error: ") and argv[0] in err[0], err


@pytest.mark.slow
def test_a_second_job_into_the_same_out_is_refused(tmp_path, tiny_cache, capsys):
  out = str(tmp_path / "o")
  argv = [*_TINY, "--epochs", "1", "--sparsifier", "none", "--ham", "off", "--out", out]
  assert main(argv) == 0
  first = (tmp_path / "o" / "results.json").read_text()
  assert main(argv) == 0  # the same job again: its own results, rewritten
  capsys.readouterr()
  with pytest.raises(SystemExit) as exit_info:
    main([*argv, "--lr", "0.05"])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert (
    len(err) == 1 and "holds results written with other settings" in err[0] and "--learning-rate" in err[0]
  )
  assert json.loads((tmp_path / "o" / "results.json").read_text())["summary"] == json.loads(first)["summary"]
  assert main([*argv, "--lr", "0.05", "--restart"]) == 0
  assert json.loads((tmp_path / "o" / "results.json").read_text())["summary"][0]["lr"] == 0.05


def test_summary_marks_halted_runs(tmp_path):
  runs = [_fake_run("dense", 0, [0.5]), _fake_run("dense", 1, [0.4, 0.6]), _fake_run("dense+HAM", 0, [0.7])]
  runs[0]["completed"] = runs[1]["completed"] = False  # halted after 1 and 2 of the 30 epochs
  rows = report.summarize(runs)
  assert [row["epochs"] for row in rows] == ["1, 2 of 30 (halted)", 30]
  table = report.markdown_table(rows)
  assert "| 1, 2 of 30 (halted) |" in table and "| 30 |" in table


def test_a_halted_job_says_so_and_never_replaces_more_epochs(tmp_path, tiny_cache, capsys):
  out = tmp_path / "o"
  argv = [*_TINY, "--epochs", "2", "--sparsifier", "none", "--ham", "off", "--checkpoint", "--out", str(out)]
  assert main([*argv, "--halt-after-epochs", "1"]) == 0
  printed = capsys.readouterr().out
  assert "mlp dense seed 0: halted after epoch 1 of 2, test acc" in printed
  assert "| 1 of 2 (halted) |" in printed and "1 of 1 runs halted before their last epoch" in printed
  with (out / "summary.csv").open() as f:
    assert next(csv.DictReader(f))["epochs"] == "1 of 2 (halted)"
  assert main(argv) == 0  # resumes to the end
  finished = (out / "results.json").read_text()
  assert json.loads(finished)["summary"][0]["epochs"] == 2
  assert main([*argv, "--halt-after-epochs", "1"]) == 0  # resumes at epoch 2: nothing to train, nothing lost
  assert json.loads((out / "results.json").read_text())["summary"] == json.loads(finished)["summary"]
  shutil.rmtree(out / "checkpoints")  # now a halted job could only write fewer epochs: refused
  capsys.readouterr()
  with pytest.raises(SystemExit) as exit_info:
    main([*argv, "--halt-after-epochs", "1"])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "holds 2 epochs of mlp dense seed 0" in err[0] and "--restart" in err[0], err
  assert json.loads((out / "results.json").read_text())["summary"] == json.loads(finished)["summary"]


def test_job_json_records_the_shards_used_and_comes_before_the_results(tmp_path, tiny_cache, monkeypatch):
  from ham_optax_examples import main as main_module

  out = tmp_path / "o"
  argv = [*_TINY, "--epochs", "1", "--sparsifier", "none", "--ham", "off", "--out", str(out)]

  def killed(*args, **kwargs):
    raise KeyboardInterrupt  # a kill while the results are written

  monkeypatch.setattr(main_module.report, "save_results", killed)
  with pytest.raises(KeyboardInterrupt):
    main(argv)
  monkeypatch.undo()
  assert json.loads((out / "job.json").read_text())["--data-shards"] == 1  # one process: one shard, not None
  assert main(argv) == 0  # the same job again: accepted, not "other settings"
  assert main([*argv, "--data-shards", "1"]) == 0  # the shard count given explicitly is the same job


def _damage_random(path):
  path.write_bytes(np.random.default_rng(0).bytes(max(path.stat().st_size, 16)))


@pytest.mark.parametrize(
  "part, damage",
  [
    ("state", _damage_random),
    ("state", lambda path: path.write_bytes(path.read_bytes()[:3])),
    ("history", lambda path: path.write_text("{not json")),
  ],
  ids=["random-bytes", "truncated", "broken-history"],
)
def test_a_damaged_checkpoint_is_one_line(part, damage, tmp_path, tiny_cache, capfd):
  argv = [
    *_TINY,
    "--epochs",
    "2",
    "--sparsifier",
    "none",
    "--ham",
    "off",
    "--checkpoint",
    "--out",
    str(tmp_path),
  ]
  assert main([*argv, "--halt-after-epochs", "1"]) == 0
  ckpt = tmp_path / "checkpoints" / "mlp" / "dense_seed0"
  for path in (ckpt / "1" / part).rglob("*"):
    if path.is_file() and path.name != "commit_success.txt":
      damage(path)
  capfd.readouterr()
  with pytest.raises(SystemExit) as exit_info:
    main(argv)
  assert exit_info.value.code == 2
  err = capfd.readouterr().err.strip().splitlines()
  assert len(err) == 1 and str(ckpt) in err[0] and "damaged" in err[0] and "--restart" in err[0], err


@pytest.mark.slow  # a calibration run and a training run through the command line
def test_alpha_auto_is_suggest_alpha_and_recorded(tiny_mnist1d):
  from ham_optax_examples.train import suggested_alpha

  config = Config(
    model="cnn1d", width=4, epochs=1, batch_size=16, max_steps=1, num_train=64, ham=True, progress=False
  )
  assert resolve(config)[0].alpha == "auto"  # cnn1d is not tuned
  r = train_and_evaluate(config, tiny_mnist1d)
  assert r["alpha_source"] == "suggest_alpha" and r["config"]["alpha"] == suggested_alpha(
    config, tiny_mnist1d
  )
  tuned = train_and_evaluate(config.replace(model="mlp", width=8), tiny_mnist1d)
  assert tuned["alpha_source"] == "validation-tuned" and tuned["config"]["alpha"] == 3.0
