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

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
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


# Every process a test here starts carries this token in its environment, so that a test can tell whether any of
# them outlived it.
TOKEN = f"HAM_OPTAX_MULTIHOST_TEST={uuid.uuid4().hex}"


def _env() -> dict[str, str]:
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  name, value = TOKEN.split("=")
  env[name] = value
  return env


def _our_processes() -> list[int]:
  """The processes (not zombies) started by these tests that still run (Linux: /proc; else none known)."""
  found = []
  for pid in filter(str.isdigit, os.listdir("/proc") if os.path.isdir("/proc") else []):
    try:
      environ = Path(f"/proc/{pid}/environ").read_bytes()
      state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
      continue
    if TOKEN.encode() in environ.split(b"\0") and state != "Z":
      found.append(int(pid))
  return found


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test():
  """Each test cleans up after itself: no process it started still runs a few seconds after it ends."""
  yield
  deadline = time.monotonic() + 10
  while _our_processes() and time.monotonic() < deadline:
    time.sleep(0.1)
  left = _our_processes()
  for pid in left:
    with contextlib.suppress(OSError):
      os.kill(pid, signal.SIGKILL)
  assert not left, f"processes left running: {left}"


def _launch(
  cmds: list[list[str]], env: dict[str, str] | list[dict[str, str]], while_running=None
) -> list[subprocess.CompletedProcess]:
  """Starts one process per command (with ``env``, or ``env[i]`` for command ``i``), calls
  ``while_running(procs)`` if given, and waits for all of them within ``TIMEOUT``; always reaps them (no process
  outlives the call)."""
  envs = env if isinstance(env, list) else [env] * len(cmds)
  procs = [
    subprocess.Popen(
      cmd,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
      start_new_session=True,
      cwd=ROOT,
    )
    for cmd, env in zip(cmds, envs, strict=True)
  ]
  results = []
  try:
    deadline = time.monotonic() + TIMEOUT
    if while_running is not None:
      while_running(procs)
    for p in procs:
      stdout, stderr = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
      results.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
  finally:
    for p in procs:
      if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
  return results


def _run(out: Path, *extra: str, processes: int = 2) -> list[subprocess.CompletedProcess]:
  """Runs the worker as ``processes`` processes."""
  port = str(_free_port())
  common = ["--num-processes", str(processes), "--port", port, "--out", str(out), *extra]
  if processes == 1 and "--local-devices" not in extra:
    common += ["--local-devices", "4"]
  cmds = []
  for i in range(processes):
    cmds.append([sys.executable, str(WORKER), "--process-id", str(i), *common])
  return _launch(cmds, _env())


def _ok(results):
  for r in results:
    assert r.returncode == 0, r.stderr[-3000:]


def _params(out: Path) -> dict[str, np.ndarray]:
  with np.load(out / "params.npz") as f:
    return {k: f[k] for k in f}


def _info(out: Path) -> dict:
  return json.loads((out / "info.json").read_text())


def _assert_loopback_only(info: dict) -> None:
  """Process 0's coordination service listens on loopback only (its address is 127.0.0.1), and so does every
  other socket it listens on (gloo's) where this host's name resolves to a loopback address, as gloo binds there."""
  listening = info["listening"]
  if listening is None:  # no /proc to read them from
    return

  def loopback(address: str) -> bool:
    return ipaddress.ip_address(address.rsplit(":", 1)[0].strip("[]")).is_loopback

  coordinator = [a for a in listening if a.endswith(f":{info['port']}")]
  assert coordinator and all(map(loopback, coordinator)), listening  # JAX's default would be [::]:PORT
  if loopback(socket.gethostbyname(socket.gethostname()) + ":0"):
    assert all(map(loopback, listening)), listening


@pytest.mark.parametrize(
  ("mesh", "sparsifier", "bitwise"),
  [("dp_mp", "none", True), ("dp", "none", False), ("dp_mp", "random", True), ("dp", "random", False)],
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
  _assert_loopback_only(info)
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


# ------------------------------------------------------------------- the training command as N processes

CLI_ARGS = [
  "train", "--dataset", "mnist1d", "--model", "resnet1d", "--ham", "on", "--sparsifier", "random",
  "--seeds", "1", "--epochs", "2", "--num-train", "1024", "--no-progress",
]  # fmt: skip


def _cli(
  outs: list[Path],
  *extra: str,
  local_devices: int = 2,
  while_running=None,
  per_process: list[list[str]] | None = None,
) -> list[subprocess.CompletedProcess]:
  """``ham-optax train`` as ``len(outs)`` processes (process ``i`` writing to ``outs[i]``, with ``extra`` and
  ``per_process[i]``), or as one process without the multi-process options; always reaps them.
  ``while_running(procs)`` is called once all are started (see :func:`_launch`)."""
  port = _free_port()
  env = dict(_env(), XLA_FLAGS=f"--xla_force_host_platform_device_count={local_devices}")
  env["HAM_OPTAX_CACHE"] = str(outs[0].parent / "cache")
  cmds = []
  for i, out in enumerate(outs):
    cmd = [sys.executable, "-m", "ham_optax_examples.main", *CLI_ARGS, "--out", str(out), *extra]
    cmd += per_process[i] if per_process else []
    if len(outs) > 1:
      cmd += ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(len(outs)), "--process-id", str(i)]
    cmds.append(cmd)
  return _launch(cmds, env, while_running)


def _history(out: Path) -> list[dict]:
  (run,) = json.loads((out / "results.json").read_text())["runs"]
  assert run["completed"], run
  return run["history"]


def _assert_same_history(a: list[dict], b: list[dict], exact: bool) -> None:
  assert len(a) == len(b)
  for ra, rb in zip(a, b, strict=True):
    for key in ("train_loss", "val_loss", "test_loss", "val_acc", "test_acc", "sparsity", "sign_flips"):
      if exact:
        assert ra[key] == rb[key], (key, ra, rb)
      else:
        assert ra[key] == pytest.approx(rb[key], rel=1e-5, abs=1e-6), (key, ra, rb)


@pytest.fixture(scope="module")
def cli_two_processes(tmp_path_factory):
  """The reference two-process run: 2 processes x 2 CPU devices, process 1 writing to its own --out."""
  base = tmp_path_factory.mktemp("cli")
  results = _cli([base / "two", base / "two_p1"])
  _ok(results)
  return base, results


def test_cli_as_two_processes_matches_one_process_with_two_shards(cli_two_processes):
  base, (p0, p1) = cli_two_processes
  assert "data shards 0-0 of 2, 512 training examples" in p0.stdout
  assert "data shards 1-1 of 2, 512 training examples" in p1.stdout
  # only process 0 reports: process 1 prints no table and writes nothing
  assert "| model |" in p0.stdout and "| model |" not in p1.stdout
  assert sorted(f.name for f in (base / "two_p1").iterdir()) == []
  assert {"results.json", "summary.md", "summary.csv", "runs.csv", "curves.png"} <= {
    f.name for f in (base / "two").iterdir()
  }
  (one,) = _cli([base / "one"], "--data-shards", "2", local_devices=1)
  assert one.returncode == 0, one.stderr[-3000:]
  two_history = _history(base / "two")
  assert all(r["sparsity"] > 0.85 for r in two_history)  # random pruning held in both processes
  # 4-way gradient and BatchNorm reductions across processes vs one device: equal to float32 rounding
  _assert_same_history(two_history, _history(base / "one"), exact=False)


def test_cli_joins_from_the_environment_srun_sets(cli_two_processes):
  """Started as ``srun --ntasks 2 ham-optax train ...`` starts it: no multi-process flags, only Slurm's environment
  variables (which jax.distributed.initialize reads); the same run as the one given the flags, bit for bit."""
  base, _ = cli_two_processes
  port = _free_port()
  out = base / "srun"
  common = dict(
    _env(),
    XLA_FLAGS="--xla_force_host_platform_device_count=2",
    HAM_OPTAX_CACHE=str(base / "cache"),
    SLURM_JOB_ID="4242",
    SLURM_STEP_NODELIST="127.0.0.1",
    SLURM_NTASKS="2",
    JAX_COORDINATOR_PORT=str(port),  # else a port derived from the job id
    JAX_COORDINATOR_BIND_ADDRESS=f"127.0.0.1:{port}",
  )
  cmd = [sys.executable, "-m", "ham_optax_examples.main", *CLI_ARGS, "--out", str(out)]
  envs = [dict(common, SLURM_PROCID=str(i), SLURM_LOCALID=str(i)) for i in range(2)]
  p0, p1 = _launch([cmd, cmd], envs)
  _ok([p0, p1])
  assert "process 0 of 2 (2 of 4 devices): data shards 0-0 of 2" in p0.stdout
  assert "process 1 of 2 (2 of 4 devices): data shards 1-1 of 2" in p1.stdout
  _assert_same_history(_history(out), _history(base / "two"), exact=True)


def test_cli_checkpoints_resume_across_processes_and_onto_one(cli_two_processes):
  base, _ = cli_two_processes
  halted = base / "halted"
  _ok(_cli([halted, halted], "--checkpoint", "--halt-after-epochs", "1"))
  single = base / "single"  # the halted two-process checkpoint, to be finished by one process
  shutil.copytree(halted / "checkpoints", single / "checkpoints")
  resumed = _cli([halted, halted], "--checkpoint")
  _ok(resumed)
  assert "resuming from epoch 1 of 2" in resumed[0].stdout
  _assert_same_history(_history(halted), _history(base / "two"), exact=True)
  (r,) = _cli([single], "--checkpoint", "--data-shards", "2", local_devices=1)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "resuming from epoch 1 of 2" in r.stdout
  _assert_same_history(_history(single), _history(base / "two"), exact=False)


def test_cli_processes_with_different_settings_stop_at_once_naming_them(tmp_path):
  """Processes given different options would wait for each other in collectives that never match; one collective
  check at the start stops them instead, each with one line (status 2): that check's message, not a timeout of the
  coordination service's, which would come only after minutes (and the launch's own timeout fails a hang)."""
  out = tmp_path / "out"
  for r in _cli([out, out], per_process=[["--epochs", "2"], ["--epochs", "3"]]):
    assert r.returncode == 2, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    (line,) = [x for x in r.stderr.splitlines() if "error:" in x]
    assert line == (
      "ham-optax: error: the processes were started with different settings; start every process with the same "
      "options"
    )
  assert not (out / "results.json").exists()


def test_cli_one_process_on_all_its_devices_matches_one_device(tmp_path):
  """``--all-devices``: one process splits every batch over its 4 devices; the same history as on one device to
  float32 rounding (4-way gradient and BatchNorm reductions). A batch that does not split is a usage error."""
  # alpha given, not the tuned value: the float32 differences of the 4-way reductions grow with alpha, and the
  # tolerance of _assert_same_history is for this one.
  (four,) = _cli([tmp_path / "four"], "--all-devices", "--alpha", "3", local_devices=4)
  assert four.returncode == 0, four.stderr[-3000:]
  (one,) = _cli([tmp_path / "one"], "--alpha", "3", local_devices=4)
  assert one.returncode == 0, one.stderr[-3000:]
  _assert_same_history(_history(tmp_path / "four"), _history(tmp_path / "one"), exact=False)
  (bad,) = _cli([tmp_path / "bad"], "--all-devices", "--batch-size", "130", local_devices=4)
  assert bad.returncode == 2 and "multiple of 4" in bad.stderr and "Traceback" not in bad.stderr
