"""HAM across real JAX processes: 2 processes x 2 CPU devices on loopback, gloo collectives.

Every run is ``tests/multihost_worker.py`` (one process each); the single-process reference runs the same
script with 4 local devices on the same global batches. Equality, as measured:

- data x model mesh (2 x 2): bit-identical to the single-process run (every reduction has two terms);
- data-parallel mesh (4): equal to float32 rounding (the 4-way gradient all-reduce sums in a different
  order across processes than inside one process).

The compiled update adds no collective; the whole train step has exactly the collectives of the same step
with the bare inner optimizer (the gradient reduction, and the model-axis contraction on the 2-D mesh).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "multihost_worker.py"
TIMEOUT = 240  # seconds for any one run of the worker, startup and compilation included


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env() -> dict[str, str]:
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  return env


def _run(out: Path, *extra: str, processes: int = 2) -> list[subprocess.CompletedProcess]:
  """Runs the worker as ``processes`` processes; always reaps them (no process outlives the call)."""
  port = str(_free_port())
  common = ["--num-processes", str(processes), "--port", port, "--out", str(out), *extra]
  if processes == 1 and "--local-devices" not in extra:
    common += ["--local-devices", "4"]
  procs = [
    subprocess.Popen(
      [sys.executable, str(WORKER), "--process-id", str(i), *common],
      env=_env(),
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
      start_new_session=True,
    )
    for i in range(processes)
  ]
  results = []
  try:
    deadline = time.monotonic() + TIMEOUT
    for p in procs:
      stdout, stderr = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
      results.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
  finally:
    for p in procs:
      if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
  return results


def _ok(results):
  for r in results:
    assert r.returncode == 0, r.stderr[-3000:]


def _params(out: Path) -> dict[str, np.ndarray]:
  with np.load(out / "params.npz") as f:
    return {k: f[k] for k in f}


def _info(out: Path) -> dict:
  return json.loads((out / "info.json").read_text())


@pytest.mark.parametrize(
  ("mesh", "sparsifier", "bitwise"),
  [("dp_mp", "none", True), ("dp", "none", False), ("dp_mp", "random", True)],
)
def test_two_processes_match_one(tmp_path, mesh, sparsifier, bitwise):
  args = ["--mesh", mesh, "--sparsifier", sparsifier, "--steps", "30"]
  _ok(_run(tmp_path / "one", *args, processes=1))
  _ok(_run(tmp_path / "two", *args))
  one, two = _params(tmp_path / "one"), _params(tmp_path / "two")
  info = _info(tmp_path / "two")
  assert info["processes"] == 2 and info["devices"] == 4
  for k in one:
    if bitwise:
      np.testing.assert_array_equal(two[k], one[k], err_msg=k)
    else:
      np.testing.assert_allclose(two[k], one[k], rtol=1e-5, atol=1e-6, err_msg=k)
  if sparsifier == "random":  # pruned weights are exactly zero in both
    assert np.mean(two["w1"] == 0) > 0.3
  counts = info["collectives"]
  assert sum(counts["update"].values()) == 0, counts
  assert counts["step_ham"] == counts["step_plain"], counts
  assert counts["step_ham"]["all-reduce"] >= 1  # the gradient reduction is really there


def test_checkpoint_across_processes_and_onto_one(tmp_path):
  args = ["--mesh", "dp_mp", "--steps", "30", "--save-at", "15"]
  _ok(_run(tmp_path / "full", *args))  # saves after 15 steps from both processes, runs to 30
  ckpt = tmp_path / "full" / "ckpt"
  assert (ckpt / "ocdbt.process_0").exists() and (ckpt / "ocdbt.process_1").exists()
  _ok(_run(tmp_path / "resumed", *args, "--restore", str(ckpt)))
  full, resumed = _params(tmp_path / "full"), _params(tmp_path / "resumed")
  for k in full:
    np.testing.assert_array_equal(resumed[k], full[k], err_msg=k)
  # onto one process with 2 devices: resharded, same values to float32 rounding
  out = tmp_path / "single"
  (r,) = _run(out, *args, "--restore", str(ckpt), "--local-devices", "2", processes=1)
  assert r.returncode == 0, r.stderr[-3000:]
  single = _params(out)
  assert _info(out)["devices"] == 2
  for k in full:
    np.testing.assert_allclose(single[k], full[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_dead_peer_ends_the_run_and_a_restart_resumes(tmp_path):
  args = ["--mesh", "dp_mp", "--steps", "30", "--save-at", "15", "--watchdog", "15"]
  _ok(_run(tmp_path / "full", *args))
  t0 = time.monotonic()
  p0, p1 = _run(tmp_path / "crash", *args, "--die-at", "20")
  assert p1.returncode == 3  # the process that crashed
  assert p0.returncode == 75, p0.stderr[-3000:]  # the survivor stopped itself...
  assert "another process has probably died" in p0.stderr  # ...with one clear line
  assert time.monotonic() - t0 < TIMEOUT
  assert not (tmp_path / "crash" / "params.npz").exists()
  _ok(_run(tmp_path / "restart", *args, "--restore", str(tmp_path / "crash" / "ckpt")))
  full, restart = _params(tmp_path / "full"), _params(tmp_path / "restart")
  for k in full:
    np.testing.assert_array_equal(restart[k], full[k], err_msg=k)
