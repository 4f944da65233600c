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

from ham_optax_examples.supervisor import LOG_NOTE

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
  env.pop("HAM_OPTAX_SUPERVISED", None)
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


def _run(
  out: Path, *extra: str, processes: int = 2, supervised: bool = False
) -> list[subprocess.CompletedProcess]:
  """Runs the worker as ``processes`` processes (``supervised``: each under ``ham_optax_examples.supervisor``)."""
  port = str(_free_port())
  common = ["--num-processes", str(processes), "--port", port, "--out", str(out), *extra]
  if processes == 1 and "--local-devices" not in extra:
    common += ["--local-devices", "4"]
  cmds = []
  for i in range(processes):
    cmd = [sys.executable, str(WORKER), "--process-id", str(i), *common]
    if supervised:
      who = f"process {i} of {processes}"
      cmd = [sys.executable, "-m", "ham_optax_examples.supervisor", "--who", who, "--", *cmd]
    cmds.append(cmd)
  return _launch(cmds, _env())


def _remove_jax_log(line: str) -> None:
  """Deletes the file of JAX's log that the supervisor's one line names, if it names one."""
  if LOG_NOTE in line:
    Path(line.rsplit(LOG_NOTE, 1)[1]).unlink()


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


@pytest.mark.parametrize("victim", [0, 1])
def test_dead_peer_ends_the_run_and_a_restart_resumes(tmp_path, victim):
  """Either process dies at step 20; the survivor (run under the supervisor, as a user's own script would be)
  ends with status 75 and one line: through the watchdog or a failed collective, or, when process 0 and with it
  JAX's coordination service is gone, through JAX's abort turned into one line by the supervisor."""
  args = ["--mesh", "dp_mp", "--steps", "30", "--save-at", "15", "--watchdog", "15"]
  _ok(_run(tmp_path / "full", *args))
  t0 = time.monotonic()
  results = _run(tmp_path / "crash", *args, "--die-at", "20", "--dying-process", str(victim), supervised=True)
  dead, survivor = results[victim], results[1 - victim]
  assert dead.returncode == 3  # the process that crashed
  assert survivor.returncode == 75, survivor.stderr[-3000:]  # the survivor stopped itself...
  errors = [line for line in survivor.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and "another process has probably died" in errors[0], survivor.stderr[-3000:]
  assert "Check failure" not in survivor.stderr and "Traceback" not in survivor.stderr
  assert time.monotonic() - t0 < TIMEOUT
  _remove_jax_log(errors[0])
  assert not (tmp_path / "crash" / "params.npz").exists()
  _ok(_run(tmp_path / "restart", *args, "--restore", str(tmp_path / "crash" / "ckpt")))
  full, restart = _params(tmp_path / "full"), _params(tmp_path / "restart")
  for k in full:
    np.testing.assert_array_equal(restart[k], full[k], err_msg=k)


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
    cmd = [sys.executable, "-m", "ham_optax_examples.cli", *CLI_ARGS, "--out", str(out), *extra]
    cmd += per_process[i] if per_process else []
    if len(outs) > 1:
      cmd += ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(len(outs)), "--process-id", str(i)]
    cmds.append(cmd)
  return _launch(cmds, env, while_running)


def _kill_after_shard_line(victim: int, seconds: float):
  """A ``while_running`` that kills process ``victim`` (SIGKILL, its whole process group) ``seconds`` after it
  said which shards it holds."""

  def kill(procs):
    # "process 1 of 2 (...): data shards 1-1 of 2, ...", after whatever gloo prints first ("[Gloo] Rank 1 is ...")
    seen = []
    while not (seen and f"data shards {victim}-{victim} of 2" in seen[-1]):
      seen.append(procs[victim].stdout.readline())
      assert seen[-1], f"process {victim} ended before it said which shards it holds: {seen}"
    time.sleep(seconds)
    os.killpg(procs[victim].pid, signal.SIGKILL)

  return kill


def _kill_after_checkpoint(victim: int, out: Path, epoch: int):
  """A ``while_running`` that kills process ``victim`` (SIGKILL) as soon as the checkpoint of ``epoch`` is
  complete (orbax renames the step's directory into place when every process has written its part)."""

  def kill(procs):
    deadline = time.monotonic() + TIMEOUT
    while not list(out.glob(f"checkpoints/*/*/{epoch}")):
      assert all(p.poll() is None for p in procs), "a process ended before the checkpoint was written"
      assert time.monotonic() < deadline, "no checkpoint was written"
      time.sleep(0.1)
    os.killpg(procs[victim].pid, signal.SIGKILL)

  return kill


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
  cmd = [sys.executable, "-m", "ham_optax_examples.cli", *CLI_ARGS, "--out", str(out)]
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


def test_cli_dead_peer_ends_the_run_with_one_line(tmp_path):
  t0 = time.monotonic()
  p0, p1 = _cli(
    [tmp_path / "a", tmp_path / "a"],
    "--epochs",
    "200",
    "--peer-timeout",
    "20",
    while_running=_kill_after_shard_line(1, 3.0),
  )
  assert p1.returncode == -signal.SIGKILL
  assert p0.returncode == 75, p0.stderr[-3000:]
  assert "another process has probably died" in p0.stderr
  assert "Traceback" not in p0.stderr
  assert time.monotonic() - t0 < TIMEOUT
  assert not (tmp_path / "a" / "results.json").exists()


@pytest.mark.parametrize("victim", [0, 1])
def test_cli_either_process_killed_ends_the_other_with_one_line_and_a_restart_resumes(tmp_path, victim):
  """Process 0 hosts JAX's coordination service: when it dies, JAX's runtime aborts process 1 at once. When process
  1 dies, the runtime aborts process 0 after the heartbeat timeout (30 s), before the default --peer-timeout.
  Either way the survivor's supervisor turns the abort into one line and status 75; the restarted pair resumes
  from the last checkpoint."""
  out = tmp_path / "run"
  args = ["--epochs", "200", "--checkpoint"]
  t0 = time.monotonic()
  results = _cli([out, out], *args, while_running=_kill_after_checkpoint(victim, out, epoch=1))
  survivor = results[1 - victim]
  assert results[victim].returncode == -signal.SIGKILL
  assert survivor.returncode == 75, survivor.stderr[-3000:]
  # whichever noticed first (a failed collective or JAX's runtime) said it in one line
  (line,) = [x for x in survivor.stderr.splitlines() if x.startswith("error:")]
  assert "Check failure" not in survivor.stderr and "Traceback" not in survivor.stderr
  assert line.startswith(f"error: process {1 - victim} of 2: "), line
  assert "another process has probably died" in line
  assert time.monotonic() - t0 < TIMEOUT
  _remove_jax_log(line)
  restarted = _cli([out, out], *args, "--halt-after-epochs", "3")
  _ok(restarted)
  resumed_from = int(restarted[0].stdout.split("resuming from epoch ", 1)[1].split()[0])
  assert resumed_from >= 1
  (run,) = json.loads((out / "results.json").read_text())["runs"]
  assert [r["epoch"] for r in run["history"]] == [1, 2, 3]


def test_cli_processes_with_different_settings_stop_at_once_naming_them(tmp_path):
  """Processes given different options would wait for each other in collectives that never match, until a timeout;
  they stop at the start instead, each with one line naming the difference (status 2)."""
  t0 = time.monotonic()
  out = tmp_path / "out"
  for r in _cli([out, out], per_process=[["--epochs", "2"], ["--epochs", "3"]]):
    assert r.returncode == 2, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    (line,) = [x for x in r.stderr.splitlines() if "error:" in x]
    assert line == (
      "ham-optax: error: the processes were started with different settings (process 0 vs. process 1: --epochs: "
      "2 vs. 3); start every process with the same options"
    )
  assert time.monotonic() - t0 < 60
  assert not (out / "results.json").exists()


@pytest.mark.parametrize("process_id", ["0", "1"])
def test_cli_a_process_alone_says_so_instead_of_aborting(tmp_path, process_id):
  """One process of two started (the other never comes): it exits with status 75 and one line, not JAX's abort
  with a C++ stack trace."""
  cmd = [
    sys.executable, "-m", "ham_optax_examples.cli", *CLI_ARGS, "--out", str(tmp_path / "out"),
    "--coordinator", f"127.0.0.1:{_free_port()}", "--num-processes", "2", "--process-id", process_id,
    "--join-timeout", "5",
  ]  # fmt: skip
  t0 = time.monotonic()
  (r,) = _launch([cmd], _env())
  assert r.returncode == 75, r.stderr[-3000:]
  assert f"process {process_id} of 2: not every process joined the run" in r.stderr
  assert "Check failure" not in r.stderr and "Traceback" not in r.stderr
  assert time.monotonic() - t0 < 60


def test_cli_one_process_on_all_its_devices_matches_one_device(tmp_path):
  """``--all-devices``: one process splits every batch over its 4 devices; the same history as on one device to
  float32 rounding (4-way gradient and BatchNorm reductions). A batch that does not split is a usage error."""
  (four,) = _cli([tmp_path / "four"], "--all-devices", local_devices=4)
  assert four.returncode == 0, four.stderr[-3000:]
  (one,) = _cli([tmp_path / "one"], local_devices=4)
  assert one.returncode == 0, one.stderr[-3000:]
  _assert_same_history(_history(tmp_path / "four"), _history(tmp_path / "one"), exact=False)
  (bad,) = _cli([tmp_path / "bad"], "--all-devices", "--batch-size", "130", local_devices=4)
  assert bad.returncode == 2 and "multiple of 4" in bad.stderr and "Traceback" not in bad.stderr
