"""The supervisor of one process of a multi-process run: JAX's abort on a lost peer becomes one line and status 75.

The children here are small Python programs that write what JAX's C++ runtime writes (absl log lines, a check
failure and its stack trace, SIGABRT), so these tests need no second process of a real run; the real case (one
process of ``ham-optax train`` killed) is in ``tests/test_multihost.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ham_optax_examples import supervisor

ROOT = Path(__file__).resolve().parents[1]

# What a process prints when JAX's distributed runtime ends it (abridged from a real run).
JAX_ABORT = textwrap.dedent(
  """\
  W1203 07:40:08.378860    3843 preemption_sync_manager.cc:147] Failed to retrieve preemption notice from coordination service: UNAVAILABLE: Socket closed
  E1203 07:40:08.379024    3843 coordination_service_agent.cc:289] Polled an error from coordination service (this can be an error from this or another task).
  F1203 07:40:08.379043    3843 client.h:80] Terminating process because the JAX distributed service detected fatal errors. This most likely indicates that another task died; see the other task logs for more details. absl::Status: UNAVAILABLE: The following tasks are unhealthy (stopped sending heartbeats):
  1
  The tasks have crashed. Check the task logs for an earlier error.

  RPC: /xla.coordination.CoordinationService/PollForError
  *** Check failure stack trace: ***
      @     0x7f7248e40634  absl::lts_20260107::log_internal::LogMessage::SendToLog()
      @     0x7f7248e405b6  absl::lts_20260107::log_internal::LogMessage::Flush()
  """
)


def _supervise(child_code: str, *options: str, text: bool = True) -> subprocess.CompletedProcess:
  """Runs ``python -m ham_optax_examples.supervisor OPTIONS -- python -c CHILD_CODE`` (``text=False``: bytes, with
  carriage returns as written)."""
  cmd = [
    sys.executable,
    "-m",
    "ham_optax_examples.supervisor",
    *options,
    "--",
    sys.executable,
    "-c",
    child_code,
  ]
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  env.pop(supervisor.SUPERVISED_ENV, None)
  return subprocess.run(cmd, env=env, capture_output=True, text=text, timeout=60)


def _child(body: str) -> str:
  return "import os, signal, sys, time\n" + textwrap.dedent(body)


def test_jax_abort_becomes_one_line_and_status_75():
  child = _child(f"""
    print("training", flush=True)
    sys.stderr.write("epoch 1 of 2\\n"); sys.stderr.flush()
    sys.stderr.write({JAX_ABORT!r}); sys.stderr.flush()
    os.abort()
  """)
  r = _supervise(child, "--who", "process 1 of 2")
  assert r.returncode == supervisor.PEER_LOST_EXIT_CODE == 75
  assert r.stdout == "training\n"
  lines = r.stderr.splitlines()
  assert lines[0] == "epoch 1 of 2"  # what came before the abort is passed on
  assert len(lines) == 2, r.stderr  # ...and the abort is one line
  assert lines[1].startswith(
    "error: process 1 of 2: JAX's distributed runtime stopped this process (UNAVAILABLE: The following tasks "
    "are unhealthy (stopped sending heartbeats): 1 The tasks have crashed); another process has probably died"
  ), lines[1]
  assert "Check failure" not in r.stderr
  log = Path(lines[1].rsplit(supervisor.LOG_NOTE, 1)[1])
  try:
    assert log.read_text() == JAX_ABORT  # nothing of JAX's own log is lost
  finally:
    log.unlink()


def test_a_child_that_stops_itself_while_jax_logs_the_loss_keeps_its_own_line():
  """The child's watchdog ends it (one line, status 75) while JAX's runtime is logging the same lost peer."""
  own = "error: process 0 of 2: an epoch failed (Gloo all-reduce failed); another process has probably died"
  child = _child(f"""
    sys.stderr.write({JAX_ABORT.split("*** Check")[0]!r}); sys.stderr.flush()
    sys.stderr.write({own + chr(10)!r}); sys.stderr.flush()
    os._exit(75)
  """)
  r = _supervise(child)
  assert r.returncode == 75
  (line,) = r.stderr.splitlines()
  assert line.startswith(own + " " + supervisor.LOG_NOTE), line
  log = Path(line.rsplit(supervisor.LOG_NOTE, 1)[1])
  try:
    assert "Terminating process because the JAX distributed service" in log.read_text()
  finally:
    log.unlink()


def test_log_lines_of_a_child_that_goes_on_are_passed_on_in_order():
  child = _child("""
    sys.stderr.write("before\\n"); sys.stderr.flush()
    sys.stderr.write("W1203 07:40:08.378860    3843 some_file.cc:147] a warning from C++\\n"); sys.stderr.flush()
    time.sleep(1.0)
    sys.stderr.write("\\r 50%|#####     |\\r100%|##########|\\n"); sys.stderr.flush()
  """)
  r = _supervise(child, "--hold", "0.3", text=False)
  assert r.returncode == 0, r.stderr
  assert r.stderr == (
    b"before\nW1203 07:40:08.378860    3843 some_file.cc:147] a warning from C++\n\r 50%|#####     |\r100%|##########|\n"
  )


def test_a_held_block_is_passed_on_when_the_child_exits_normally():
  child = _child(f"""
    sys.stderr.write({JAX_ABORT!r}); sys.stderr.flush()
    sys.exit(3)
  """)
  r = _supervise(child)
  assert r.returncode == 3
  assert r.stderr == JAX_ABORT


def test_other_aborts_keep_their_output_and_status():
  child = _child("""
    sys.stderr.write("F1203 07:40:08.379043    3843 other.cc:80] Check failed: something else\\n"); sys.stderr.flush()
    os.abort()
  """)
  r = _supervise(child)
  assert r.returncode == 128 + signal.SIGABRT
  assert "Check failed: something else" in r.stderr and "error:" not in r.stderr


def test_a_partial_line_that_looks_like_a_log_prefix_is_not_lost():
  child = _child("""
    sys.stderr.write("E12"); sys.stderr.flush()
    time.sleep(0.6)
    sys.stderr.write("3 is not a log line\\n")
  """)
  r = _supervise(child)
  assert r.returncode == 0 and r.stderr == "E123 is not a log line\n"


def test_the_child_knows_it_is_supervised():
  r = _supervise(_child(f"print(os.environ.get({supervisor.SUPERVISED_ENV!r}))"))
  assert r.returncode == 0 and r.stdout == "1\n"


def test_sigterm_reaches_the_child():
  child = _child("""
    signal.signal(signal.SIGTERM, lambda *a: (print("child got SIGTERM", flush=True), sys.exit(0)))
    print("ready", flush=True)
    time.sleep(30)
    sys.exit(1)
  """)
  cmd = [sys.executable, "-m", "ham_optax_examples.supervisor", "--", sys.executable, "-c", child]
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    assert p.stdout.readline() == "ready\n"
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=20)
  finally:
    p.kill()
  assert p.returncode == 0, err
  assert out == "child got SIGTERM\n"


def _alive(pid: int) -> bool:
  """Whether process ``pid`` runs (a zombie waiting to be reaped does not)."""
  try:
    return "zombie" not in Path(f"/proc/{pid}/status").read_text()
  except FileNotFoundError:
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_killed_supervisor_takes_its_child_with_it(tmp_path):
  pid_file = tmp_path / "child.pid"
  child = _child(f"""
    open({str(pid_file)!r}, "w").write(str(os.getpid()))
    time.sleep(60)
  """)
  cmd = [sys.executable, "-m", "ham_optax_examples.supervisor", "--", sys.executable, "-c", child]
  p = subprocess.Popen(cmd, env=dict(os.environ, PYTHONPATH=str(ROOT)))
  try:
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
      time.sleep(0.05)
    child_pid = int(pid_file.read_text())
    p.kill()
    p.wait(timeout=10)
    deadline = time.monotonic() + 10
    while _alive(child_pid) and time.monotonic() < deadline:
      time.sleep(0.05)
    assert not _alive(child_pid), "the child outlived its supervisor"
  finally:
    p.kill()


def test_a_shell_between_the_supervisor_and_the_program_changes_nothing(tmp_path):
  """A shell reports the program's abort as status 134 instead of a signal: still one line and 75."""
  script = tmp_path / "child.py"
  script.write_text(_child(f"sys.stderr.write({JAX_ABORT!r}); sys.stderr.flush(); os.abort()"))
  cmd = [
    sys.executable,
    "-m",
    "ham_optax_examples.supervisor",
    "--",
    "sh",
    "-c",
    f"{sys.executable} {script}",
  ]
  r = subprocess.run(
    cmd, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=60
  )
  assert r.returncode == 75, r.stderr
  (line,) = [x for x in r.stderr.splitlines() if x.strip()]
  assert line.startswith("error: this process: JAX's distributed runtime stopped this process"), line
  Path(line.rsplit(supervisor.LOG_NOTE, 1)[1]).unlink()


def test_a_command_that_cannot_start_is_one_line():
  cmd = [sys.executable, "-m", "ham_optax_examples.supervisor", "--", "/nonexistent/program", "--flag"]
  r = subprocess.run(
    cmd, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=60
  )
  assert r.returncode == 127
  assert r.stderr == "error: cannot run '/nonexistent/program': No such file or directory\n"


@pytest.mark.parametrize(
  ("argv", "message"),
  [(["--"], "give the command to run after --"), (["--hold", "0", "--", "true"], "--hold must be > 0")],
)
def test_usage_errors(argv, message, capsys):
  with pytest.raises(SystemExit) as e:
    supervisor.main(argv)
  assert e.value.code == 2 and message in capsys.readouterr().err


def test_the_message_is_the_watchdogs():
  """One wording for a lost peer, whichever part of the program notices it."""
  text = supervisor.peer_lost_message("process 0 of 2", "no epoch finished in 30 s")
  assert text.startswith(
    "error: process 0 of 2: no epoch finished in 30 s; another process has probably died"
  )
  assert "restart all processes with the same arguments" in text
