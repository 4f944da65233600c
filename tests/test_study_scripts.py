"""The benchmarks' helper module (``benchmarks/_common.py``), and smoke runs of the mirror-flow and graphon study
scripts (slow: each compiles a few dozen small programs)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

import ham_optax

_REPO = pathlib.Path(__file__).resolve().parents[1]
_BENCH = _REPO / "benchmarks"


def _load(name: str):
  if str(_BENCH) not in sys.path:
    sys.path.insert(0, str(_BENCH))  # the scripts import their sibling `_common`, as a script run would
  spec = importlib.util.spec_from_file_location(f"{name}_benchmark", _BENCH / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module
  spec.loader.exec_module(module)
  return module


common = _load("_common")


# -- the paired test -------------------------------------------------------------------------------------------


def test_paired_test_is_scipys_paired_t_test_over_the_finite_pairs():
  rng = np.random.default_rng(0)
  base, other = rng.normal(size=8), rng.normal(0.5, 1.0, size=8)
  base[2], other[5] = np.nan, np.inf  # diverged runs: their pairs are dropped
  keep = np.ones(8, bool)
  keep[[2, 5]] = False
  got = common.paired_test(base, other)
  assert got["n"] == 6
  np.testing.assert_allclose(got["mean_diff"], np.mean(other[keep] - base[keep]), rtol=1e-12)
  np.testing.assert_allclose(got["p_value"], stats.ttest_rel(other[keep], base[keep]).pvalue, rtol=1e-12)
  assert common.paired_p(other, base) == pytest.approx(got["p_value"], rel=1e-12)  # two-sided: symmetric


@pytest.mark.parametrize(
  "base,other,mean_diff,n",
  [
    ([0.5, 0.6, 0.7], [0.5, 0.6, 0.7], 0.0, 3),  # identical on every seed
    ([0.5, 0.6, 0.7], [0.6, 0.7, 0.8], 0.1, 3),  # the same difference on every seed: zero variance
    ([0.5, np.nan, 0.7], [0.6, 0.9, np.nan], 0.1, 1),  # one finite pair
    ([np.nan], [0.5], np.nan, 0),
  ],
)
def test_paired_test_has_no_p_value_where_the_t_statistic_is_undefined(base, other, mean_diff, n):
  got = common.paired_test(base, other)
  assert np.isnan(got["p_value"]) and got["n"] == n
  np.testing.assert_allclose(got["mean_diff"], mean_diff, rtol=1e-9)


# -- saving with the command and the code --------------------------------------------------------------------


def _digest_by_walking() -> str:
  root = pathlib.Path(ham_optax.__file__).resolve().parent
  files = []
  for folder, _, names in os.walk(root):
    files += [pathlib.Path(folder, n) for n in names if n.endswith(".py")]
  h = hashlib.sha256()
  for rel in sorted(f.relative_to(root).as_posix() for f in files):
    h.update(rel.encode() + b"\0" + (root / rel).read_bytes() + b"\0")
  return h.hexdigest()


def test_save_json_records_the_command_and_the_code(tmp_path):
  path = common.save_json(
    tmp_path / "a" / "results.json", {"x": [1.5, 2]}, cmd="python benchmarks/x.py --fast"
  )
  saved = json.loads(path.read_text())
  assert saved["command"] == "python benchmarks/x.py --fast" and saved["x"] == [1.5, 2]
  code = saved["code_version"]
  assert code["ham_optax"] == ham_optax.__version__
  assert code["library_sha256"] == _digest_by_walking()
  if shutil.which("git") and (_REPO / ".git").exists():
    head = subprocess.run(["git", "-C", str(_REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert code["commit"] == head.stdout.strip()
    assert isinstance(code["library_modified"], bool)
  assert not list(tmp_path.rglob("*.tmp"))


def test_write_json_keeps_a_loaded_results_provenance(tmp_path):
  payload = {"command": "python benchmarks/old.py", "code_version": {"commit": "abc"}, "y": 1}
  saved = json.loads(common.write_json(tmp_path / "r.json", payload).read_text())
  assert saved == payload
  resaved = json.loads(common.save_json(tmp_path / "r.json", payload).read_text())
  assert resaved["code_version"] == {"commit": "abc"}  # keys of the payload win


def test_command_names_the_script_and_its_arguments():
  cmd = common.command(["--fast", "--out", "a b"], _BENCH / "graphs.py")
  assert cmd == "python benchmarks/graphs.py --fast --out 'a b'"


# -- the train step and the tuning loop ---------------------------------------------------------------------


def test_train_step_is_one_optax_step():
  def loss(p, x):
    return jnp.sum((p["w"] * x - 1.0) ** 2), p["w"]

  tx = optax.adam(0.1)
  params, x = {"w": jnp.array([0.3, -2.0])}, jnp.array([1.0, 2.0])
  state = tx.init(params)
  new, new_state, (value, aux), grads = jax.jit(common.train_step(loss, tx, has_aux=True))(params, state, x)
  want_grads = {"w": 2 * (params["w"] * x - 1.0) * x}
  updates, want_state = tx.update(want_grads, state, params)
  np.testing.assert_allclose(grads["w"], want_grads["w"], rtol=1e-6)
  np.testing.assert_allclose(new["w"], params["w"] + updates["w"], rtol=1e-6)
  np.testing.assert_allclose(value, jnp.sum((params["w"] * x - 1.0) ** 2), rtol=1e-6)
  np.testing.assert_allclose(aux, params["w"])
  np.testing.assert_allclose(new_state[0].mu["w"], want_state[0].mu["w"], rtol=1e-6)


class _Config:
  def __init__(self, lr, seed=None):
    self.lr, self.seed = lr, seed

  def replace(self, **kw):
    return _Config(kw.get("lr", self.lr), kw.get("seed", self.seed))


def test_tune_scores_the_mean_validation_accuracy_and_zero_for_a_diverged_run(monkeypatch):
  import ham_optax_examples.train

  table = {(0.1, 1000): 0.5, (0.1, 1001): 0.7, (0.2, 1000): 0.9, (0.2, 1001): None, (0.4, 1000): 0.55}
  table[(0.4, 1001)] = 0.6

  def fake(config, dataset):
    val = table[(config.lr, config.seed)]
    return {"val_acc": val, "diverged": val is None, "seed": config.seed}

  monkeypatch.setattr(ham_optax_examples.train, "train_and_evaluate", fake)
  seen = []
  best, scores, runs = common.tune(
    [_Config(0.1), _Config(0.2), _Config(0.4)],
    None,
    common.tuning_seeds(2),
    log=lambda c, r: seen.append(c.seed),
  )
  np.testing.assert_allclose(scores, [0.6, 0.45, 0.575])
  assert best == 0 and seen == [1000, 1001] * 3 and [r["seed"] for r in runs[1]] == [1000, 1001]
  assert common.mean_val_acc(runs[1], diverged=None) == pytest.approx(0.9)


# -- smoke runs ----------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
  "name,figures",
  [
    ("mirror_flows", ["escape_vs_lr.png", "loss_curves.png", "balance.png"]),
    ("graphon", ["graphons.png", "distances.png", "ntk_vs_speed.png"]),
  ],
)
def test_fast_run_writes_results(name, figures, tmp_path):
  _load(name).main(["--fast", "--out", str(tmp_path)])
  result = json.loads((tmp_path / "results.json").read_text())
  assert result["command"].startswith(f"python benchmarks/{name}.py --fast")
  assert result["code_version"]["library_sha256"] == _digest_by_walking()
  for fig in figures:
    assert (tmp_path / fig).stat().st_size > 0


# -- the sparse-training sweep (benchmarks/sparse_training.py --sweep) ----------------------------------------


@pytest.mark.slow
def test_sweep_baseline_is_ham_at_alpha_zero_exactly():
  sweep = _load("sparse_training")
  params = sweep._init("cnn", jax.random.key(0), 8, with_str=True)
  grads = jax.tree.map(lambda p: jnp.full_like(p, 0.3), params)
  for method in ("str", "gmp"):
    tx = {arm: sweep._sweep_tx(method, 0.9, arm, 0.2, 0.0, 1e-2, 20, 5) for arm in ("inner", "base")}
    p, states = {arm: params for arm in tx}, {arm: t.init(params) for arm, t in tx.items()}
    for _ in range(3):
      for arm, t in tx.items():
        updates, states[arm] = t.update(grads, states[arm], p[arm])
        p[arm] = optax.apply_updates(p[arm], updates)
    jax.tree.map(np.testing.assert_array_equal, p["inner"], p["base"])


def test_sweep_conv_matches_lax_and_masks_follow_erk():
  sweep = _load("sparse_training")
  h, w = jax.random.normal(jax.random.key(0), (3, 20, 4)), jax.random.normal(jax.random.key(1), (5, 4, 6))
  ref = jax.lax.conv_general_dilated(h, w, (2,), "SAME", dimension_numbers=("NWC", "WIO", "NWC"))
  np.testing.assert_allclose(sweep._conv(h, w), ref, atol=1e-5)
  masks = {"a": jnp.ones((40, 16), bool), "b": jnp.ones(16, bool), "c": jnp.ones((16, 10), bool)}
  one, two = (sweep._seed_masks(masks, 0.9, jax.random.key(k)) for k in (1, 2))
  zeros = ham_optax.sparsity.layer_zero_counts([(40, 16), (16, 10)], 0.9, "erk")
  assert [int((~one[k]).sum()) for k in ("a", "c")] == zeros and bool(one["b"].all())
  assert not np.array_equal(one["a"], two["a"])  # every seed draws its own positions


def test_sweep_power_and_holm_against_references():
  sweep = _load("sparse_training")
  np.testing.assert_allclose(sweep.holm([0.01, 0.04, 0.03, 0.5, np.nan]), [0.05, 0.12, 0.12, 1.0, 1.0])
  rng = np.random.default_rng(0)
  d = rng.normal(0.5, 1.0, size=(20000, 12))
  simulated = np.mean(stats.ttest_1samp(d, 0.0, axis=1).pvalue < 0.01)
  assert sweep._power(12, 1.0, 0.5, 0.01) == pytest.approx(simulated, abs=0.01)


def test_sweep_str_decay_interpolates_in_log_decay():
  sweep = _load("sparse_training")
  points = [(1e-2, 0.9), (1e-3, 0.5), (1e-1, 0.99), (1e-4, None)]  # unsorted; an all-diverged point
  assert sweep._decay_for(points, 0.7) == pytest.approx(np.sqrt(1e-3 * 1e-2), rel=1e-12)
  # A noisy point below an earlier one counts as the earlier sparsity (non-decreasing in the decay).
  noisy = [(1e-3, 0.6), (2e-3, 0.5), (1e-2, 0.9)]
  assert sweep._decay_for(noisy, 0.75) == pytest.approx(np.sqrt(2e-3 * 1e-2), rel=1e-12)
  assert sweep._decay_for(points, 0.999) == pytest.approx(1e-1)  # beyond the grid: its end


@pytest.mark.slow
def test_sweep_fast_run_writes_every_phase(tmp_path):
  sweep = _load("sparse_training")
  args = ["--sweep", "--fast", "--families", "mlp", "--sparsifiers", "random", "str", "--out", str(tmp_path)]
  sweep.main(args)
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["command"].startswith("python benchmarks/sparse_training.py --sweep --fast")
  assert [r["label"] for r in summary["rows"]][:2] == ["random", "str"] and summary["power"]["n_used"] >= 2
  assert all(r["n"] == summary["power"]["n_used"] for r in summary["rows"])
  assert (tmp_path / "ham_minus_baseline.png").stat().st_size > 0
  assert f"The study ran {summary['power']['n_used']}" in sweep.sweep_findings(summary)


# -- the alpha-transfer study (benchmarks/alpha_transfer.py) -------------------------------------------------------


@pytest.mark.slow
def test_alpha_transfer_fast_run_suggests_the_target_ratio_times_alpha_unit_and_resumes(tmp_path):
  from ham_optax_examples import data as data_lib

  study = _load("alpha_transfer")
  study.main(["--fast", "--out", str(tmp_path)])
  saved = (tmp_path / "final.json").read_bytes()
  final = json.loads(saved)
  assert list(final["results"]) == ["mlp/sgd", "mlp/adamw"]
  runs = final["results"]["mlp/sgd"]["runs"]
  assert sorted({r["method"] for r in runs}) == sorted(study.METHODS) and len(runs) == 4 * 2
  suggested = next(r for r in runs if r["method"] == "HAM suggested" and r["seed"] == 0)
  args = study.parse_args(["--fast"])
  family = study.Family("mlp", data_lib.load_dataset("mnist1d"), args.widths[0])
  unit = study.alpha_unit(family, "sgd", 0, suggested["lr"], args)[0]
  assert suggested["alpha"] == pytest.approx(args.target_ratio * unit, rel=1e-9)
  study.main(["--fast", "--phase", "final", "--out", str(tmp_path)])  # every cell is done: nothing retrains
  assert (tmp_path / "final.json").read_bytes() == saved
  assert "| mlp/sgd |" in (tmp_path / "summary.md").read_text()
