"""``benchmarks/overhead.py``: its statistics, and a smoke run of the update and vector-width sections."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sys

import numpy as np
import pytest

_BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


def _overhead():
  if str(_BENCH) not in sys.path:
    sys.path.insert(0, str(_BENCH))  # the script imports its sibling `_common`, as a script run would
  spec = importlib.util.spec_from_file_location("overhead_benchmark", _BENCH / "overhead.py")
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module
  spec.loader.exec_module(module)
  return module


def test_median_interval_is_the_binomial_order_statistics():
  overhead = _overhead()
  x = np.random.default_rng(0).permutation(np.arange(61.0))
  assert overhead.median_ci(x) == [22.0, 38.0]  # the 23rd and 39th smallest of 61
  # It covers the true median of a symmetric distribution in about 95 % of samples.
  rng = np.random.default_rng(1)
  hits = [lo <= 0.0 <= hi for lo, hi in (overhead.median_ci(rng.normal(size=61)) for _ in range(2000))]
  assert 0.93 <= np.mean(hits) <= 0.98


def test_busy_machine_repetitions_are_skipped_not_timed():
  overhead = _overhead()
  calls = []
  runners = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
  out = overhead.quiet_interleaved(runners, 4, max_other_cpu=1e9, max_wait=0.0, probe=0.0)
  assert len(out["a"]) == len(out["b"]) == 4 and len(out["load"]["loadavg_1m"]) == 4
  assert sorted(calls) == ["a"] * 4 + ["b"] * 4
  with pytest.raises(RuntimeError, match="no quiet moment"):
    overhead.quiet_interleaved(runners, 2, max_other_cpu=-1.0, max_wait=0.0, probe=0.0)


@pytest.mark.slow
def test_smoke_run_counts_and_vector_width(tmp_path):
  overhead = _overhead()
  argv = ["--quick", "--tree", "small", "--skip", "roofline", "train", "bf16", "torch"]
  overhead.main([*argv, "--max-other-cpu", "1e9", "--probe", "0", "--out", str(tmp_path)])
  res = json.loads((tmp_path / "overhead.json").read_text())
  for o in ("sgdm", "adamw"):
    extra = res["update"][o]["per_weight"]["ham_extra"]
    assert extra["flops"] <= 17 and extra["bytes accessed"] <= 4.1 and extra["transcendentals"] == 1
    assert res["vector_width"][o]["bit_identical_to_default"] == {"inner": True, "ham": True}
    assert len(res["update"][o]["load"]["others_cpu_during"]) == 3


def test_kernel_count_and_bytes_agree_with_xlas_own_count():
  """`hlo_stats` (what `accelerator_kernels.py` reports for a GPU or TPU) against XLA:CPU's `cost_analysis()` of the same program."""
  import jax.numpy as jnp
  import optax

  import ham_optax

  overhead = _overhead()
  shapes = [("w", (64, 32)), ("b", (32,))]
  params = {n: jnp.ones(s, jnp.float32) for n, s in shapes}
  for tx in (optax.sgd(0.1, momentum=0.9), ham_optax.ham(optax.adamw(1e-3), 1e-3, alpha=1.0)):
    compiled = overhead.make_update_step(tx).lower(params, tx.init(params), params).compile()
    stats = overhead.hlo_stats(compiled.as_text())
    # XLA's count adds the scalar constants inside the fused computations (a few bytes per kernel).
    extra = compiled.cost_analysis()["bytes accessed"] - stats["kernel_bytes"]
    assert 0 <= extra <= 8 * stats["kernels_in_entry"] < 1e-2 * stats["kernel_bytes"]
    assert stats["kernels_in_entry"] >= stats["fusions_in_entry"] >= len(shapes)
    assert stats["max_kernels_reading_an_input"] >= 1
  text = """ENTRY %main (p: f32[4], g: f32[4], n: s32[]) -> (f32[4], f32[4], s32[]) {
  %p = f32[4]{0} parameter(0)
  %g = f32[4]{0} parameter(1)
  %n = s32[] parameter(2)
  %f = (f32[4]{0}, f32[4]{0}) fusion(%p, %g, %g), kind=kLoop, calls=%c
  %e = bf16[2,2]{1,0} fusion(%g), kind=kLoop, calls=%d
  %k = s32[] fusion(%n), kind=kLoop, calls=%i
  ROOT %t = (f32[4]{0}, f32[4]{0}, s32[]) tuple(%f, %k)
}"""
  stats = overhead.hlo_stats("\n" + text)
  assert stats["kernels_in_entry"] == stats["fusions_in_entry"] == 3 and stats["scalar_kernels"] == 1
  assert stats["array_fusions"] == 2
  # f: a tuple output and three operands (g twice); e: a bf16 output (2 bytes per entry) and one operand; k: 4 + 4.
  assert stats["kernel_bytes"] == (16 + 16) + 3 * 16 + (8 + 16) + 8
  assert stats["max_kernels_reading_an_input"] == 2  # g: by both fusions (once each)
  tiled = "f32[8]{0:T(256)}"  # a layout with parentheses inside a tuple type, as TPU programs print it
  text = f"""ENTRY %m (a: f32[8]) -> ({tiled}, {tiled}) {{
  %a = {tiled} parameter(0)
  %f = ({tiled}, {tiled}) fusion(%a), kind=kLoop, calls=%c
  ROOT %t = ({tiled}, {tiled}) tuple(%f)
}}"""
  assert overhead.hlo_stats("\n" + text)["kernel_bytes"] == 2 * 32 + 32


def test_accelerator_kernels_says_what_is_missing(tmp_path):
  """Without the accelerator's plugin (as in CI) or an attached device, the script stops with what to do."""
  import importlib.util

  import jax

  _overhead()
  spec = importlib.util.spec_from_file_location("accelerator_kernels", _BENCH / "accelerator_kernels.py")
  script = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(script)
  out = ["--out", str(tmp_path)]
  if jax.default_backend() == "cpu":
    with pytest.raises(SystemExit, match="no gpu is attached"):
      script.main(["--attached", *out])
  with pytest.raises(SystemExit):  # argparse: exit status 2, the message on stderr
    script.main(["--target-config", str(tmp_path / "missing.txtpb"), *out])
  if importlib.util.find_spec("jax_plugins") is None:  # no CUDA or TPU plugin installed
    with pytest.raises(SystemExit, match="install JAX's plugin"):
      script.main(out)
  assert not list(tmp_path.iterdir())  # nothing written
