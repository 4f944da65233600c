"""The benchmark scripts' command-line options (``benchmarks/_common.py``'s types and ``Parser``): a bad value is
an argparse error naming the option, before any work; the smoke-run flag sets only the options the command line
leaves out; the commands of the committed results and of the benchmarks' README still parse. And a diverged run
is reported as diverged (its accuracies are ``None``), not a crash."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import pathlib
import re
import shlex

import numpy as np
import pytest

import ham_optax
from tests.test_study_scripts import _load

_REPO = pathlib.Path(__file__).resolve().parents[1]
_BENCH = _REPO / "benchmarks"


_script = functools.cache(_load)  # each script loaded once, as test_study_scripts loads it


# -- the shared types ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
  "kind,good,bad",
  [
    ("positive_int", {"1": 1, "2147483647": 2147483647}, ["0", "-5", "1.5", "1e3", "x", "2147483648"]),
    ("nonnegative_int", {"0": 0, "7": 7}, ["-1", "0.0"]),
    ("positive_float", {"1e-9": 1e-9, "3": 3.0}, ["0", "-0.1", "nan", "inf", "x"]),
    ("nonnegative_float", {"0": 0.0, "0.5": 0.5}, ["-1e-9", "nan"]),
    ("finite_float", {"-1e6": -1e6, "0": 0.0}, ["nan", "-inf"]),
    ("fraction", {"0.5": 0.5, "0.999": 0.999}, ["0", "1", "1.5"]),
  ],
)
def test_number_types_take_their_interval_and_name_it(kind, good, bad):
  check = getattr(_script("_common"), kind)
  for text, value in good.items():
    got = check(text)
    assert type(got) is type(value) and got == value, (text, got)
  for text in bad:
    with pytest.raises(argparse.ArgumentTypeError, match=f"must be .*got '{re.escape(text)}'"):
      check(text)


def test_out_types_refuse_a_file_for_a_folder_and_a_folder_for_a_file(tmp_path):
  common = _script("_common")
  (tmp_path / "f").write_text("")
  assert common.out_dir(str(tmp_path)) == tmp_path and common.out_dir(str(tmp_path / "new" / "x"))
  for text in (tmp_path / "f", tmp_path / "f" / "sub"):
    with pytest.raises(argparse.ArgumentTypeError, match="is a file, not a folder"):
      common.out_dir(str(text))
  assert common.out_file(str(tmp_path / "f")) == str(tmp_path / "f")
  with pytest.raises(argparse.ArgumentTypeError, match="is a folder, not a file"):
    common.out_file(str(tmp_path))


def test_add_options_refuses_a_default_outside_its_type():
  common = _script("_common")
  with pytest.raises(ValueError, match="--tuning-seeds: its default 0"):
    common.add_options(argparse.ArgumentParser(), tuning_seeds=0)
  with pytest.raises(ValueError, match="--rate: its default -1.0"):
    common.add_options(argparse.ArgumentParser(), rate=[0.1, -1.0])


# -- every script: a bad option is an argparse error naming it -------------------------------------------------

_BAD = {
  "sparse_training": [
    ["--epochs", "0"],
    ["--batch-size", "-5"],
    ["--sparsity", "1.5"],
    ["--lrs", "-0.1"],
    ["--tuning-seeds", "-1"],
    ["--seeds", "0"],
    ["--betas", "-1e-3"],
    ["--alphas", "nan"],
    ["--target-ratio", "0"],
    ["--sign-in-balances", "0"],
    ["--sign-in-every", "0"],
    ["--sweep", "--pilot-seeds", "1"],
    ["--sweep", "--level", "0"],
    ["--sweep", "--power", "1"],
    ["--sweep", "--str-rounds", "-1"],
    ["--sweep", "--lanes", "0"],
    ["--sweep", "--str-decays", "0"],
  ],
  "main_job_tuning": [["--tuning-seeds", "0"], ["--epochs", "0"], ["--lrs", "0"], ["--betas", "-1"]],
  "sparsity_overhead": [["--steps", "0"], ["--repeats", "0"], ["--width", "-1"], ["--layers", "0"]],
  "overparam_memory": [["--num-classes", "-3"], ["--num-classes", "0"]],
  "implicit_bias": [["--fast", "--seed", "-1"]],
  "mirror_flows": [
    ["--fast", "--init-scale", "-1"],
    ["--init-scale", "1e-12"],
    ["--steps", "0"],
    ["--seeds", "0"],
  ],
  "graphon": [
    ["--fast", "--widths", "0"],
    ["--steps", "1"],
    ["--resolution", "0"],
    ["--ntk-width", "100"],
    ["--widths", "8", "--ntk-width", "8"],  # below --resolution 16
  ],
  "alpha_transfer": [
    ["--epochs", "0"],
    ["--final-seeds", "0"],
    ["--widths", "8", "8"],
    ["--alphas", "1", "10"],  # no baseline (alpha = 0)
    ["--alphas", "-1", "0", "1"],
    ["--ratios", "0"],
    ["--mainjob", "mlp:none:-1"],
    ["--mainjob", "mlp:none:0.4:0"],
  ],
  "graphs": [
    ["--classes", "1"],
    ["--nodes", "3"],
    ["--homophily", "1.5"],
    ["--momentum", "1"],
    ["--degree", "0"],
    ["--test-seeds", "0"],
    ["--wds", "0", "1e-3"],  # fewer than the alphas
    ["--inners", "sgd", "--alphas-sgd", *"1 2 3 4 5 6 7 8".split()],  # no negative alpha
  ],
  "transformers": [
    ["--p", "1"],
    ["--p", "2"],  # an empty split
    ["--train-fraction", "0.9"],  # + the validation fraction >= 1
    ["--eval-every", "7"],  # not a divisor of --steps
    ["--width", "30"],  # 4 heads
    ["--ham-grid", "10"],
    ["--plain-sgd-grid", "-0.1", "0.1"],
    ["--nano-fraction", "0"],
    ["--switch-fraction", "1.5"],
    ["--seeds", "0"],
    ["--ft-wd", "-1"],
  ],
  "nanoadam_finetune": [["--epochs", "0"], ["--pretrain-epochs", "0"], ["--seeds", "-1"]],
  "overhead": [
    ["--reps", "0"],
    ["--number", "0"],
    ["--train-reps", "-1"],
    ["--max-wait", "-1"],
    ["--probe", "nan"],
    ["--skip", "everything"],
    ["--models", "VGG"],
  ],
}


@pytest.mark.parametrize("name,argv", [(name, argv) for name, cases in _BAD.items() for argv in cases])
def test_a_bad_option_is_refused_while_parsing_and_named(name, argv, capsys):
  option = next(a for a in reversed(argv) if a.startswith("--") and a not in ("--fast", "--sweep"))
  with pytest.raises(SystemExit) as exit_info:
    _script(name).parse_args(argv)
  assert exit_info.value.code == 2  # argparse's usage error
  assert option in capsys.readouterr().err


@pytest.mark.parametrize(
  "name", ["sparse_training", "alpha_transfer", "graphon", "overhead", "accelerator_kernels"]
)
def test_an_existing_file_is_no_out_folder(name, tmp_path, capsys):
  (tmp_path / "file").write_text("")
  with pytest.raises(SystemExit):
    _script(name).parse_args(["--out", str(tmp_path / "file")])
  assert "argument --out" in capsys.readouterr().err


# -- the smoke-run flag keeps what the command line gives --------------------------------------------------------

_FAST = [
  (
    "sparse_training",
    "--fast --epochs 1 --lrs 0.4 --alphas 1 --seeds 1",
    dict(epochs=1, lrs=[0.4], alphas=[1.0]),
  ),
  (
    "sparse_training",
    "--fast --epochs 1 --lrs 0.4 --alphas 1 --seeds 1",
    dict(seeds=1, tuning_seeds=1, betas=[1e-3]),
  ),
  ("sparse_training", "--sweep --fast --epochs 3", dict(epochs=3, lanes=4, sparsities=[0.9])),
  (
    "graphon",
    "--fast --widths 128 64 --steps 10",
    dict(widths=[128, 64], steps=10, ntk_width=64, resolution=16),
  ),
  ("graphon", "--fast --widths 32 64 --ntk-width 32", dict(widths=[32, 64], steps=60, ntk_width=32)),
  ("mirror_flows", "--fast --steps 10 --seeds 2", dict(steps=10, seeds=2, init_scale=1e-2)),
  ("mirror_flows", "--fast", dict(steps=300, seeds=1)),
  ("main_job_tuning", "--fast --tuning-seeds 2", dict(tuning_seeds=2, epochs=2)),
  ("nanoadam_finetune", "--fast --seeds 3 4", dict(seeds=[3, 4], epochs=2, pretrain_epochs=2)),
  ("transformers", "--fast --p 11", dict(p=11, steps=60, width=16)),
  ("alpha_transfer", "--fast --epochs 3", dict(epochs=3, families=["mlp"], final_seeds=2)),
  ("graphs", "--fast --nodes 400", dict(nodes=400, steps=50, models=["gcn"])),
  ("overhead", "--quick --reps 5", dict(reps=5, number=1, train_reps=3)),
]


@pytest.mark.parametrize("name,argv,expected", _FAST)
def test_the_smoke_run_sets_only_the_options_left_out(name, argv, expected):
  args = _script(name).parse_args(argv.split())
  assert {k: getattr(args, k) for k in expected} == expected


@pytest.mark.parametrize(
  "name", ["sparse_training", "graphon", "mirror_flows", "overhead", "main_job_tuning"]
)
def test_without_the_smoke_run_every_option_keeps_its_default(name):
  defaults = {
    "sparse_training": dict(epochs=30, seeds=5, lrs=[0.1, 0.2, 0.4, 0.8, 1.6]),
    "graphon": {"steps": 100},
  }
  defaults |= {"mirror_flows": {"steps": 2000, "seeds": 3}, "overhead": {"reps": 61, "number": 3}}
  defaults |= {"main_job_tuning": {"epochs": None, "tuning_seeds": 3}}
  args = _script(name).parse_args([])
  assert {k: getattr(args, k) for k in defaults[name]} == defaults[name]


def _commands() -> list[tuple[str, list[str]]]:
  """``(script, argv)`` of every ``python benchmarks/<script>.py ...`` in the committed results (their
  ``command`` keys and ``command.txt`` files), the benchmarks' README and the scripts' docstrings."""
  texts = [
    json.loads(f'"{c}"') for p in _BENCH.glob("results/**/*.json") for c in _COMMAND.findall(p.read_text())
  ]
  texts += [line for p in _BENCH.glob("results/**/command.txt") for line in p.read_text().splitlines()]
  texts += re.findall(r"`([^`]*python benchmarks/[^`]*)`", (_BENCH / "README.md").read_text())
  texts += [
    m for p in _BENCH.glob("*.py") for m in re.findall(r"(?m)^ +(python benchmarks/.*)$", p.read_text())
  ]
  out = set()
  for text in texts:
    words = shlex.split(text, comments=True)
    words = words[next((i for i, w in enumerate(words) if w == "python"), len(words)) :]
    if len(words) > 1 and (m := re.fullmatch(r"benchmarks/(\w+)\.py", words[1])) and m[1] != "tables":
      out.add((m[1], tuple(words[2:])))
  return sorted((name, list(argv)) for name, argv in out)


_COMMAND = re.compile(r'"command": "((?:[^"\\]|\\.)*)"')


def test_the_committed_commands_still_parse(monkeypatch):
  monkeypatch.chdir(_REPO)  # their --out folders are relative to the repository
  commands = _commands()
  assert len({name for name, _ in commands}) >= 12 and ("sparse_training", ["--sweep", "--fast"]) in commands
  for name, argv in commands:
    if name != "torch_peer":  # needs torch, which the tests never import
      _script(name).parse_args(argv)


# -- a diverged run is reported as diverged ------------------------------------------------------------------------


def _diverged(config) -> dict:
  """What ``train_and_evaluate`` returns for a run that diverged in its first epoch."""
  from ham_optax_examples.configs.default import resolve

  c = resolve(config)[0]
  record = dict(config=dataclasses.asdict(c), method=c.method, history=[], completed=False, diverged=True)
  return record | dict(diverged_epoch=1, val_acc=None, test_acc=None, sparsity=None, sign_flips=None)


def test_sparse_training_reports_diverged_runs(tmp_path, monkeypatch, capsys):
  import ham_optax_examples.train

  study = _script("sparse_training")

  def calibration_diverges(*args, **kwargs):
    raise ham_optax.CalibrationDivergedError("the inner optimizer alone diverged")

  monkeypatch.setattr(study.data_lib, "load_dataset", lambda name: None)
  monkeypatch.setattr(
    ham_optax_examples.train, "train_and_evaluate", lambda config, dataset: _diverged(config)
  )
  monkeypatch.setattr(study, "suggested_alpha", calibration_diverges)
  argv = (
    "--sparsifiers none --sign-in-balances --epochs 1 --tuning-seeds 1 --lrs 0.4 --betas 1e-3 --alphas 1e6"
  )
  study.main([*argv.split(), "--seeds", "1", "--out", str(tmp_path)])
  log = capsys.readouterr().out
  assert log.count("diverged at epoch 1") == 4 and log.count("diverged at epoch 0") == 2  # tuning and final
  runs = json.loads((tmp_path / "results.json").read_text())["runs"]
  assert [r["method"] for r in runs] == ["dense", "dense+HAM", "dense+HAM tuned"]
  assert all(r["diverged"] and r["test_acc"] is None for r in runs)


def test_main_job_tuning_stops_cleanly_when_every_baseline_diverges(tmp_path, monkeypatch):
  import ham_optax_examples.train

  study = _script("main_job_tuning")
  monkeypatch.setattr(study.data_lib, "load_dataset", lambda name: None)
  monkeypatch.setattr(
    ham_optax_examples.train, "train_and_evaluate", lambda config, dataset: _diverged(config)
  )
  argv = "--fast --models mlp --sparsifiers none --lrs 1e6 --alphas 1 --betas 1e-3"
  with pytest.raises(SystemExit, match="mlp/none: every baseline learning rate on the grid diverged"):
    study.main([*argv.split(), "--out", str(tmp_path)])


def test_nanoadam_stops_cleanly_when_every_learning_rate_diverges(tmp_path, monkeypatch):
  study = _script("nanoadam_finetune")
  data = (np.zeros((4, 40), np.float32), np.zeros(4, np.int32)) * 2
  params = {"w0": np.zeros((40, 10), np.float32), "b0": np.zeros(10, np.float32)}

  class Task(study.Task):
    def finetune(self, tx, epochs, seed):
      return {"diverged": True, "val": 0.1, "new_test": 0.1, "old_test": 0.1}

  monkeypatch.setattr(study, "Task", Task)
  monkeypatch.setattr(Task, "create", classmethod(lambda cls, epochs: cls(data, data, params)))
  with pytest.raises(SystemExit, match="Adam: every learning rate of the grid diverged"):
    study.main(["--fast", "--out", str(tmp_path)])


def test_alpha_transfer_mainjob_records_a_diverged_calibration(tmp_path, monkeypatch):
  import ham_optax_examples.train

  def calibration_diverges(*args, **kwargs):
    raise ham_optax.CalibrationDivergedError("the inner optimizer alone diverged")

  study = _script("alpha_transfer")
  monkeypatch.setattr(ham_optax_examples.train, "suggested_alpha", calibration_diverges)
  args = study.parse_args(["--phase", "mainjob", "--mainjob", "mlp:none:100:1", "--grid-seeds", "1"])
  study.phase_mainjob(args, None, tmp_path, {"command": "python benchmarks/alpha_transfer.py"})
  (row,) = json.loads((tmp_path / "mainjob.json").read_text())["runs"]
  assert row["diverged"] and row["alpha"] is None and row["val_acc"] is None
