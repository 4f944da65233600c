"""Committed benchmark results against a rerun of their smallest cheap unit with the code as it is (slow; one cheap
test of the check itself runs by default).

For the main job and every benchmark whose numbers the README or a guide quotes, one seed of one HAM row (or the
benchmark's smallest unit) is trained again for a few epochs or steps and compared with the per-epoch (or
per-step) values in the committed results. When the library's update changes, these checks fail and name the
results to regenerate, with the command that made them and what the results record about the code that made
them (``code_version``, written by ``benchmarks/_common.py``; results made before it was recorded say so).

Tolerances: exact (``==``) unless a value is listed with a relative tolerance below, with the reason. A run is
deterministic on one machine (same XLA program, same inputs); across processors the last bits of a float32 matmul
may differ, so run these checks on the kind of machine that made the results (a 2-core x86 CPU).

Not checked: timings (``overhead.py``, ``sparsity_overhead.py``, ``torch_peer.py``) are measurements, not
reproducible numbers; ``main_job_tuning.py``'s grid chose the main job's defaults, whose effect the main-job
check covers; ``alpha_transfer``'s ``final*.json`` come from the same training function as its grid (checked).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.util
import json
import math
import pathlib
import sys
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

_REPO = pathlib.Path(__file__).resolve().parents[1]
_BENCH = _REPO / "benchmarks"
_RESULTS = _BENCH / "results"
EPOCHS = 3  # epochs rerun of a train_and_evaluate run (the first EPOCHS of its schedule)

# The evaluation sums float32 per-example losses batch by batch; cutting a split into other batches moves its
# loss in the 7th significant digit (observed: 1e-7 relative), while accuracies count examples exactly.
EVAL_LOSS_RTOL = 1e-6
# The regression study runs in float64, but its learning rates and distances come through NumPy (norms, reference
# solves), whose results move by an ulp from run to run with BLAS's threads; a changed update moves them by far
# more (1e-9 relative after a few thousand steps, observed).
IMPLICIT_BIAS_RTOL = 1e-12


@functools.cache
def _benchmark(name: str):
  """The benchmark script ``benchmarks/<name>.py`` as a module (it imports its sibling ``_common``)."""
  if str(_BENCH) not in sys.path:
    sys.path.insert(0, str(_BENCH))
  spec = importlib.util.spec_from_file_location(f"{name}_benchmark", _BENCH / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # dataclasses need the module registered
  spec.loader.exec_module(module)
  return module


def _load(relative: str) -> dict[str, Any]:
  return json.loads((_RESULTS / relative).read_text())


def code_note(relative: str) -> str:
  """What a committed results file records about the code that made it, against the current library."""
  common = _benchmark("_common")
  made = _load(relative).get("code_version")
  if made is None:
    return "it records no code version (made before results recorded their code)"
  if made.get("library_sha256") == common.library_digest():
    return f"it was made with the current library source (commit {made.get('commit')})"
  return f"it was made with another library source (commit {made.get('commit')})"


@dataclasses.dataclass
class Drift:
  """Differences between a rerun and the committed values of one results file."""

  results: str  # path under benchmarks/results
  unit: str  # what was rerun
  regenerate: str  # the command that makes the results
  problems: list[str] = dataclasses.field(default_factory=list)

  def compare(self, name: str, got: Any, want: Any, rtol: float = 0.0) -> None:
    """Records a difference between ``got`` and ``want`` (nested lists / dicts of numbers)."""
    if isinstance(want, dict):
      for key in want:
        self.compare(f"{name}.{key}", got.get(key) if isinstance(got, dict) else None, want[key], rtol)
      return
    if isinstance(want, list | tuple):
      got = list(got) if isinstance(got, list | tuple | np.ndarray) else []
      if len(got) != len(want):
        self.problems.append(f"{name}: {len(got)} values rerun, {len(want)} committed")
      for i, (g, w) in enumerate(zip(got, want, strict=False)):
        self.compare(f"{name}[{i}]", g, w, rtol)
      return
    if isinstance(want, float) and got is not None and not isinstance(got, str):
      got = float(got)
      same = (math.isnan(got) and math.isnan(want)) or abs(got - want) <= rtol * abs(want)
    else:
      same = got == want
    if not same:
      self.problems.append(f"{name}: rerun {got!r}, committed {want!r}")

  def check(self) -> None:
    if self.problems:
      shown = "\n  ".join(self.problems[:8]) + ("\n  ..." if len(self.problems) > 8 else "")
      pytest.fail(
        f"benchmarks/results/{self.results} is stale: {self.unit} rerun with the current code differs from the "
        f"committed values ({len(self.problems)} differences):\n  {shown}\n"
        f"Regenerate it: {self.regenerate}\n(About this file: {code_note(self.results)}.)",
        pytrace=False,
      )


# -------------------------------------------------------------------------------- train_and_evaluate runs


def _config(committed: dict[str, Any]):
  from ham_optax_examples.configs.default import Config

  fields = {f.name for f in dataclasses.fields(Config)}
  return Config(**{k: v for k, v in committed.items() if k in fields})


def _history_drift(drift: Drift, run: dict[str, Any], epochs: int = EPOCHS) -> Drift:
  """Reruns the first ``epochs`` epochs of a committed ``train_and_evaluate`` run and compares its history."""
  from ham_optax_examples.train import train_and_evaluate

  config = _config(run["config"]).replace(halt_after_epochs=epochs, progress=False, checkpoint_dir=None)
  history = train_and_evaluate(config)["history"]
  for got, want in zip(history, run["history"][:epochs], strict=False):
    for key, value in want.items():
      if key == "time_s" or (key == "diagnostics" and not value):  # older runs recorded no diagnostics
        continue
      rtol = EVAL_LOSS_RTOL if key in ("val_loss", "test_loss") else 0.0
      drift.compare(f"epoch {want['epoch']} {key}", got.get(key), value, rtol)
  if len(history) < min(epochs, len(run["history"])):
    drift.problems.append(f"the rerun stopped after {len(history)} epochs (diverged: {not history})")
  return drift


def _run(results: dict[str, Any], model: str, method: str, seed: int = 0) -> dict[str, Any]:
  return next(
    r
    for r in results["runs"]
    if r["config"]["model"] == model and r["method"] == method and r["config"]["seed"] == seed
  )


MAIN_JOB = "ham-optax train --no-progress --out benchmarks/results/main_job"


def main_job(method: str) -> Drift:
  run = _run(_load("main_job/results.json"), "mlp", method)
  return _history_drift(
    Drift("main_job/results.json", f"mlp {method} seed 0, {EPOCHS} epochs", MAIN_JOB), run
  )


def sparse_training(folder: str, regenerate: str) -> Drift:
  run = _run(_load(f"{folder}/results.json"), "mlp", "random+HAM")
  unit = f"mlp random+HAM seed 0, {EPOCHS} epochs"
  return _history_drift(Drift(f"{folder}/results.json", unit, regenerate), run)


# -------------------------------------------------------------------------------- the studies' own loops


def alpha_transfer() -> Drift:
  """The MLP / SGD grid (every configuration: they were trained vmapped together, and a vmapped matmul's batch
  size changes its last bits), 6 epochs; compares the HAM configuration seed 1000, lr 0.1, alpha 10."""
  bench = _benchmark("alpha_transfer")
  from ham_optax_examples import data as data_lib

  rows = _load("alpha_transfer/grid.json")["runs"]["mlp/sgd"]
  configs = [{k: r[k] for k in ("seed", "lr", "alpha")} for r in rows]
  i = configs.index({"seed": 1000, "lr": 0.1, "alpha": 10.0})
  unit = "the mlp / sgd grid (6 epochs), at seed 1000, lr 0.1, alpha 10"
  drift = Drift("alpha_transfer/grid.json", unit, "python benchmarks/alpha_transfer.py --phase grid")
  fam = bench.Family("mlp", data_lib.load_dataset("mnist1d"), 128)
  got = bench.train_configs(fam, "sgd", configs, argparse.Namespace(epochs=6, batch_size=128))[i]
  for key in ("epoch_loss", "val_acc", "test_acc", "diverged"):
    drift.compare(key, got[key], rows[i][key])
  return drift


def alpha_transfer_per_leaf() -> Drift:
  """The embedding + MLP / SGD final runs (every configuration, trained together as committed), 6 epochs: the
  per-leaf alphas of ``suggest_alpha(..., per_leaf=True)`` at seed 0, and that seed's per-leaf HAM run."""
  bench = _benchmark("alpha_transfer")
  from ham_optax_examples import data as data_lib

  committed = _load("alpha_transfer/final.json")
  runs = committed["results"]["embed_mlp/sgd"]["runs"]
  configs = [{k: r[k] for k in ("method", "seed", "lr", "alpha", "alpha_leaves") if k in r} for r in runs]
  i = next(j for j, c in enumerate(configs) if (c["method"], c["seed"]) == ("HAM per-leaf", 0))
  unit = "the embed_mlp / sgd final runs (6 epochs), per-leaf HAM at seed 0"
  drift = Drift("alpha_transfer/final.json", unit, committed["made_by"]["embed_mlp/sgd"]["command"])
  fam = bench.Family("embed_mlp", data_lib.load_dataset("mnist1d"), 128)
  args = argparse.Namespace(**committed["argv"])  # epochs, batch size, target ratio
  leaves = bench.alpha_unit(fam, "sgd", 0, configs[i]["lr"], args)[1]
  drift.compare("alpha_leaves", [args.target_ratio * a for a in leaves], configs[i]["alpha_leaves"])
  got = bench.train_configs(fam, "sgd", configs, args)[i]
  for key in ("epoch_loss", "val_acc", "test_acc", "diverged"):
    drift.compare(key, got[key], runs[i][key])
  return drift


def graphs() -> Drift:
  """GCN / AdamW at homophily 0.1: the five final configurations on the 10 test graphs (trained vmapped
  together, as committed), 150 full-batch steps; compares HAM's test accuracies."""
  bench = _benchmark("graphs")
  committed = _load("graphs/results.json")
  args = argparse.Namespace(**committed["args"])
  cell = next(c for c in committed["cells"] if (c["model"], c["h"], c["inner"]) == ("gcn", 0.1, "adamw"))
  names = ("baseline", "alpha0", "ham", "ham_neg", "ham_pos")
  test = bench.build_seeds("gcn", 0.1, list(range(args.test_seeds)), args)
  runner = bench.make_runner(test[0], "adamw", args.steps, args.momentum, args.max_exponent)
  got = bench.run_grid(runner, test, [(cell[n]["lr"], cell[n]["alpha"], cell[n]["wd"]) for n in names])
  drift = Drift("graphs/results.json", "gcn / adamw, h = 0.1, the final runs", "python benchmarks/graphs.py")
  drift.compare(
    "ham test_acc", [float(x) for x in got["test_acc"][names.index("ham")]], cell["ham"]["test_acc"]
  )
  return drift


def implicit_bias(folder: str, label: str, regenerate: str, results: str = "results.json") -> Drift:
  """One row of the regression table (seed 0), run to convergence (a few thousand float64 steps): its learning
  rate, step count and distance-to-truth curve."""
  import jax

  bench = _benchmark("implicit_bias")
  committed = _load(f"{folder}/{results}")
  want = committed["table"]["rows"][label]
  methods = {
    **bench.default_methods((1.0, 10.0), gamma=1e-3),
    **bench.family_methods(gamma=1e-3),
  }
  previous = jax.config.jax_enable_x64
  jax.config.update("jax_enable_x64", True)
  try:
    got = bench.main_table(bench.make_problem(0, init_scale=1e-3), {label: methods[label]}, 0.5, 3_000_000)
  finally:
    jax.config.update("jax_enable_x64", previous)
  drift = Drift(f"{folder}/{results}", f"the row {label!r} (seed 0)", regenerate)
  row = got["rows"][label]
  for key in ("lr", "steps", "l1", "dist_to_truth_curve", "record_steps"):
    drift.compare(key, row[key], want[key], IMPLICIT_BIAS_RTOL)
  return drift


def mirror_flows() -> Drift:
  """HAM's escape steps at depth 2 over the 13 learning rates and 3 seeds (2000 steps each)."""
  bench = _benchmark("mirror_flows")
  settings = _load("mirror_flows/results.json")["settings"]
  grid = bench.escape_grid(
    np.asarray(settings["lrs"]), [2], settings["seeds"], settings["steps"], settings["init_scale"], ["HAM"]
  )
  drift = Drift("mirror_flows/results.json", "HAM at depth 2", "python benchmarks/mirror_flows.py")
  drift.compare(
    "escape HAM/L2", grid[("HAM", 2)]["escape"], _load("mirror_flows/results.json")["escape"]["HAM/L2"]
  )
  return drift


def graphon() -> Drift:
  """Random pruning + HAM and RigL + HAM (whose mask follows the training) at width 64, 100 steps each: the final
  training loss, the mask's density and its graphon."""
  from ham_optax.metrics import empirical_graphon

  bench = _benchmark("graphon")
  committed = _load("graphon/results.json")
  rows = {r["method"]: r for r in committed["rows"]}
  x, y = bench.make_task()
  drift = Drift("graphon/results.json", "random+HAM and rigl+HAM at width 64", "python benchmarks/graphon.py")
  for method in ("random", "rigl"):
    _, mask, losses = bench.train(method, True, 64, 100, x, y)
    want = rows[f"{method}+HAM"]
    drift.compare(f"{method}+HAM final loss", float(losses[-1]), want["final_loss_by_width"]["64"])
    drift.compare(f"{method}+HAM density", float(np.mean(np.asarray(mask))), want["density"]["64"])
    got = np.asarray(empirical_graphon(mask, committed["settings"]["resolution"])).tolist()
    drift.compare(f"{method}+HAM graphon", got, want["graphons"]["64"])
  return drift


def nanoadam_finetune() -> Drift:
  """Pre-training (40 epochs of Adam), then NanoAdam at its selected learning rate on seed 0 (20 epochs)."""
  bench = _benchmark("nanoadam_finetune")
  committed = _load("nanoadam_finetune/results.json")
  config = committed["config"]
  task = bench.Task.create(config["pretrain_epochs"])
  steps = config["steps_per_epoch"]
  make = bench.methods(steps, steps * config["epochs"])["NanoAdam"]
  got = task.finetune(make(committed["summary"]["NanoAdam"]["lr"]), config["epochs"], 0)
  drift = Drift(
    "nanoadam_finetune/results.json", "NanoAdam, seed 0", "python benchmarks/nanoadam_finetune.py"
  )
  drift.compare("final NanoAdam seed 0", {"seed": 0, **got}, committed["final"]["NanoAdam"][0])
  return drift


def transformers(folder: str, method: str, regenerate: str, steps: int = 200) -> Drift:
  """The evaluation runs of ``method`` (every evaluation seed, trained vmapped together as committed) for the
  first ``steps`` of their constant-rate schedule: training and validation accuracy at every evaluation."""
  bench = _benchmark("transformers")
  from ham_optax_examples import data as data_lib
  from ham_optax_examples import grokking

  committed = _load(f"{folder}/results.json")
  args = bench.build_parser().parse_args([])  # options added since the run keep their defaults
  vars(args).update(committed["args"])
  r = committed["grokking"][method]
  add = data_lib.load_modular(
    operation="add", p=args.p, train_fraction=args.train_fraction, val_fraction=args.val_fraction
  )
  train, evals = grokking.run_dataset(add)
  graphdef, init = grokking.init_params(r["seeds"], args.p, width=args.width)
  out = bench._run(
    method, graphdef, init, bench._stack([r["selected"]], len(r["seeds"])), train, evals, steps, args
  )
  evaluations = steps // args.eval_every
  drift = Drift(f"{folder}/results.json", f"{method}, {steps} steps", regenerate)
  for key in ("train_acc", "val_acc"):
    want = [row[:evaluations] for row in r["curves"][key]]
    drift.compare(key, [[float(v) for v in row] for row in out[key]], want)
  return drift


@functools.cache
def _grokked_adamw(folder: str):
  """The AdamW models the fine-tuning of ``folder`` starts from: every evaluation seed trained for the whole
  grokking run (vmapped together, as committed), with the drift of their validation curves."""
  bench = _benchmark("transformers")
  from ham_optax_examples import data as data_lib
  from ham_optax_examples import grokking

  committed = _load(f"{folder}/results.json")
  args = bench.build_parser().parse_args([])
  vars(args).update(committed["args"])
  kw = dict(p=args.p, train_fraction=args.train_fraction, val_fraction=args.val_fraction)
  add, sub = (data_lib.load_modular(operation=op, **kw) for op in ("add", "sub"))
  r = committed["grokking"]["adamw"]
  graphdef, init = grokking.init_params(r["seeds"], args.p, width=args.width)
  hp = bench._stack([r["selected"]], len(r["seeds"]))
  out = bench._run("adamw", graphdef, init, hp, *grokking.run_dataset(add), args.steps, args)
  return args, add, sub, graphdef, out


def transformers_finetune(folder: str, regenerate: str, steps: int = 150) -> Drift:
  """Fine-tuning with HAM(AdamW) and with NanoAdam (past its first re-selection, at step 100) at their selected
  settings, from the AdamW models of the grokking study (every evaluation seed; trained to the end first,
  minutes), for the first ``steps``: both tasks' validation accuracy at every evaluation, and the AdamW models'
  grokking curves."""
  bench = _benchmark("transformers")
  committed = _load(f"{folder}/results.json")
  args, add, sub, graphdef, grokked = _grokked_adamw(folder)
  unit = f"the adamw grokking runs, then ham_adamw and nanoadam fine-tuning ({steps} steps)"
  drift = Drift(f"{folder}/results.json", unit, regenerate)
  for key in ("train_acc", "val_acc"):
    got = [[float(v) for v in row] for row in grokked[key]]
    drift.compare(f"grokking adamw {key}", got, committed["grokking"]["adamw"]["curves"][key])
  evals = {"new_val": sub.split("val"), "old_val": add.split("val"), "new_test": sub.split("test")}
  evals["old_test"] = add.split("test")
  train, evaluations = (sub.x_train, sub.y_train), steps // args.eval_every
  for method in ("ham_adamw", "nanoadam"):
    r = committed["finetune"][method]
    hp = bench._stack([r["selected"]], len(r["finite"]))
    out = bench._run(method, graphdef, grokked["params"], hp, train, evals, steps, args)
    for key in ("new_val_acc", "old_val_acc"):
      want = [row[:evaluations] for row in r["curves"][key]]
      drift.compare(f"finetune {method} {key}", [[float(v) for v in row] for row in out[key]], want)
  return drift


def overparam_memory(tmp_path: pathlib.Path) -> Drift:
  """The whole benchmark (abstract shapes: seconds): every optimizer-state byte count."""
  got = _benchmark("overparam_memory").main(["--out", str(tmp_path)])
  drift = Drift("overparam_memory/memory.json", "every count", "python benchmarks/overparam_memory.py")
  drift.compare("bytes", got["bytes"], _load("overparam_memory/memory.json")["bytes"])
  return drift


def sparse_sweep() -> Drift:
  """One call of the sweep's program as committed: the MLP random-PaI 0.9 + HAM cell at its first 16 seeds (the
  pilot's first call for that arm), 15 epochs; every seed's accuracies, sparsity, loss and finiteness."""
  from ham_optax_examples import data as data_lib

  summary, cell = _load("sparse_sweep/summary.json"), _load("sparse_sweep/cells/mlp-random-0.9-ham.json")
  args, seeds = argparse.Namespace(**summary["args"]), range(summary["args"]["lanes"])
  unit = f"mlp random PaI 0.9 + HAM, seeds 0-{seeds[-1]}"
  drift = Drift("sparse_sweep/cells/mlp-random-0.9-ham.json", unit, summary["command"])
  sweep = _benchmark("sparse_training")._Sweep(args, data_lib.load_dataset("mnist1d"))
  got = sweep.run(tuple(cell["cell"]), [(s, cell["lr"], cell["alpha"], cell["decay"]) for s in seeds])
  want = {str(s): cell["seeds"][str(s)] for s in seeds}
  drift.compare("seeds", {str(s): r for s, r in zip(seeds, got, strict=True)}, want)
  return drift


# -------------------------------------------------------------------------------- the checks

CHECKS: dict[str, Callable[..., Drift]] = {
  "main_job-baseline": lambda: main_job("dense"),
  "main_job-HAM": lambda: main_job("dense+HAM"),
  "sparse_training": lambda: sparse_training("sparse_training", "python benchmarks/sparse_training.py"),
  "sparse_training_digits": lambda: sparse_training(
    "sparse_training_digits",
    "python benchmarks/sparse_training.py --dataset digits --out benchmarks/results/sparse_training_digits",
  ),
  "sparse_sweep": sparse_sweep,
  "alpha_transfer": alpha_transfer,
  "alpha_transfer_per_leaf": alpha_transfer_per_leaf,
  "graphs": graphs,
  "implicit_bias": lambda: implicit_bias(
    "implicit_bias", "HAM a=10 (HYP*)", "python benchmarks/implicit_bias.py"
  ),
  "implicit_bias_family": lambda: implicit_bias(
    "implicit_bias_family",
    "m*w wrapper g=0.001",
    "python benchmarks/implicit_bias.py --family-only --seed 0 --out benchmarks/results/implicit_bias_family",
    "results_family_seed0.json",
  ),
  "mirror_flows": mirror_flows,
  "graphon": graphon,
  "nanoadam_finetune": nanoadam_finetune,
  "transformers": lambda: transformers("transformers", "ham_adamw", "python benchmarks/transformers.py"),
  "transformers_finetune": lambda: transformers_finetune("transformers", "python benchmarks/transformers.py"),
  "transformers_finetune_wd": lambda: transformers_finetune(
    "transformers_finetune_wd",
    "python benchmarks/transformers.py --grok-methods adamw --ft-steps 1000 --ft-wd 3 "
    "--out benchmarks/results/transformers_finetune_wd",
  ),
  "transformers_sgd": lambda: transformers(
    "transformers_sgd",
    "ham_sgdm",
    "python benchmarks/transformers.py --grok-methods adamw ham_sgdm sgdm --skip-finetune "
    "--out benchmarks/results/transformers_sgd",
  ),
}


@pytest.mark.slow
@pytest.mark.usefixtures("_say_which_results_record_other_code")
@pytest.mark.parametrize("name", list(CHECKS))
def test_committed_results_match_a_rerun(name):
  CHECKS[name]().check()


@pytest.mark.slow
def test_committed_memory_counts_match_a_rerun(tmp_path):
  overparam_memory(tmp_path).check()


def test_a_changed_update_fails_the_cheapest_check(monkeypatch):
  """Test of the test, in the default run: one row of the regression study (a few thousand float64 steps, seconds)
  rerun with HAM's alpha 0.1 % larger inside the update differs from its committed values, and the failure names
  the results and the command that regenerates them (the slow checks above pass on the update as it is)."""
  import ham_optax

  ham = ham_optax.ham
  monkeypatch.setattr(
    ham_optax, "ham", lambda inner, lr, alpha, *a, **k: ham(inner, lr, 1.001 * alpha, *a, **k)
  )
  drift = CHECKS["implicit_bias"]()
  assert any(p.startswith(("l1", "dist_to_truth_curve")) for p in drift.problems), drift.problems
  with pytest.raises(
    pytest.fail.Exception,
    match=r"implicit_bias/results\.json is stale(.|\n)*python benchmarks/implicit_bias\.py",
  ):
    drift.check()


@pytest.mark.slow
def test_a_changed_update_fails_the_check(monkeypatch):
  """Test of the test: the main job's baseline row matches its committed values (above), but no longer once the
  update changes slightly (1 % more weight decay), and the failure names the results and the command."""
  import optax

  decay = optax.add_decayed_weights
  monkeypatch.setattr(
    optax, "add_decayed_weights", lambda weight_decay, *a, **k: decay(1.01 * weight_decay, *a, **k)
  )
  drift = main_job("dense")
  assert drift.problems
  with pytest.raises(
    pytest.fail.Exception, match=r"main_job/results\.json is stale(.|\n)*ham-optax train --no-progress"
  ):
    drift.check()


@pytest.fixture(scope="module")
def _say_which_results_record_other_code():
  """Warns (in pytest's summary) about every committed results file that records no code version or another
  library source than the current one: candidates for regeneration even where no check above covers them."""
  yield
  notes = {str(path.relative_to(_RESULTS)): "" for path in sorted(_RESULTS.rglob("*.json"))}
  notes = {name: code_note(name) for name in notes}
  other = [f"{name}: {note}" for name, note in notes.items() if "made with the current library" not in note]
  if other:
    warnings.warn("results not made with the current library source:\n" + "\n".join(other), stacklevel=1)
