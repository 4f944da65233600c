"""Runs one process of a multi-process JAX program so that a lost peer ends it with one line, not an abort.

When a process of a multi-process JAX run dies (or stops sending heartbeats), JAX's distributed runtime ends every
other process from one of its C++ threads: ``LOG(FATAL)``, a C++ stack trace and ``SIGABRT`` (status 134). Within
the process nothing can intercept this: the abort happens outside Python, and jaxlib's own hook for it
(``missed_heartbeat_callback``) cannot be given a Python function, since its status argument has no Python
conversion. So the process runs as a child of a small supervisor that uses the standard library only:

- the child's standard output is the supervisor's own; its standard error is passed on as it arrives, except that
  a block of lines in JAX's C++ log format (``E1203 07:40:08.378975 3843 file.cc:289] ...``) is held back for up
  to ``hold`` seconds;
- if the child then dies of ``SIGABRT`` and the held block says that JAX's distributed service stopped it, the
  supervisor prints one line (the reason JAX gave, and where JAX's full log was saved) and exits with
  ``PEER_LOST_EXIT_CODE`` (75): restart all processes with the same arguments to resume from the last
  checkpoint. If the child got there first (its own one line, e.g. from
  :class:`~ham_optax_examples.distributed.Watchdog`, and status 75), that line is the one printed. Otherwise the
  held lines are passed on and the child's exit status is the supervisor's;
- ``SIGTERM`` and ``SIGHUP`` sent to the supervisor are passed to the child; ``SIGINT`` (Ctrl-C reaches both
  through the terminal) is left to the child; on Linux the child is killed when the supervisor dies.

``ham-optax train`` runs itself this way whenever it joins a multi-process run. For a script of your own::

  python -m ham_optax_examples.supervisor --who "process 1 of 2" -- python train.py --process-id 1

An environment with ``HAM_OPTAX_SUPERVISED=1`` (which the supervisor sets for its child) runs without one.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

__all__ = [
  "LOG_NOTE",
  "PEER_LOST_EXIT_CODE",
  "SUPERVISED_ENV",
  "main",
  "peer_lost_message",
  "run",
  "supervised",
]

PEER_LOST_EXIT_CODE = 75  # EX_TEMPFAIL: the run can be restarted and resumes from its last checkpoint
SUPERVISED_ENV = "HAM_OPTAX_SUPERVISED"
LOG_NOTE = "JAX's log of the stop: "  # ends the one line; the path of the file with JAX's own log follows

# One line of absl's log format, as JAX's C++ runtime writes it: severity, date, time, thread, file:line.
_CPP_LOG_LINE = re.compile(rb"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ [^\s:]+:\d+\] ")
_CPP_LOG_START = re.compile(rb"^[IWEF]\d{0,4}( [\d:.]*)?$")  # a fragment that may still become such a line
# What JAX's runtime says when it ends a process because the distributed service failed (client.h).
_STOPPED_BY_JAX = b"JAX distributed service detected fatal errors"
_REASON = re.compile(rb"absl::Status: (.*?)(?:\n\n|\nRPC:|\n\*\*\*|$)", re.DOTALL)


def peer_lost_message(who: str, reason: str) -> str:
  """The one line a process prints when it stops because another process of the run is gone."""
  return (
    f"error: {who}: {reason}; another process has probably died or is stuck. Exiting; restart all processes "
    "with the same arguments to resume from the last checkpoint."
  )


def supervised() -> bool:
  """Whether this process already runs under a supervisor (or was told not to use one)."""
  return os.environ.get(SUPERVISED_ENV) == "1"


def _die_with(parent: int):
  """Linux: a ``preexec_fn`` after which the child gets SIGKILL when the supervisor ``parent`` dies, so that no
  process outlives a killed supervisor."""

  def preexec() -> None:  # runs in the child, between fork and exec
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
      ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the supervisor died before the line above
      os._exit(1)

  return preexec


class _Stderr:
  """Passes the child's standard error on, holding back blocks of C++ log lines (see the module docstring)."""

  def __init__(self, out, hold: float):
    self.out = out
    self.hold = hold
    self.partial = b""  # the end of the stream that may still become a C++ log line
    self.partial_since = 0.0
    self.held: list[bytes] = []
    self.held_since: float | None = None

  def feed(self, chunk: bytes) -> None:
    data = self.partial + chunk
    self.partial = b""
    lines = re.split(rb"(?<=[\r\n])", data)  # keeps the terminators; tqdm ends its updates with \r
    if lines and not lines[-1].endswith((b"\n", b"\r")):
      tail = lines.pop()
      if self.held_since is None and _CPP_LOG_START.match(tail):
        self.partial, self.partial_since = tail, time.monotonic()  # decide when the rest arrives
      else:
        lines.append(tail)
    for line in lines:
      if self.held_since is None and _CPP_LOG_LINE.match(line):
        self.held_since = time.monotonic()
      if self.held_since is not None:
        self.held.append(line)
      else:
        self.out.write(line)
    self.out.flush()

  def tick(self, child_alive: bool) -> None:
    """Releases a held block once the child has outlived it by ``hold`` seconds, and a stale fragment."""
    if child_alive and self.held_since is not None and time.monotonic() - self.held_since > self.hold:
      self.release()
    if self.partial and (not child_alive or time.monotonic() - self.partial_since > 0.25):
      self.out.write(self.partial)
      self.partial = b""
      self.out.flush()

  def release(self) -> None:
    self.out.write(b"".join(self.held))
    self.out.flush()
    self.held, self.held_since = [], None

  def stopped_by_jax(self) -> str | None:
    """JAX's reason, if the held block is JAX's distributed runtime ending the process; else ``None``."""
    text = b"".join(self.held)
    if _STOPPED_BY_JAX not in text:
      return None
    found = _REASON.search(text)
    if not found:
      return "no reason given"
    status = " ".join(found.group(1).decode(errors="replace").split())  # JAX's status, on one line
    return status.split(". ")[0].rstrip(".")[:200]  # its first sentence


def run(cmd: Sequence[str], who: str = "this process", hold: float = 5.0) -> int:
  """Runs ``cmd`` as a supervised child (see the module docstring) and returns the status to exit with.

  Args:
    cmd: the child's command line.
    who: how the one-line error names this process, e.g. ``"process 1 of 2"``.
    hold: seconds a block of C++ log lines is held back while the child keeps running.

  Returns:
    ``PEER_LOST_EXIT_CODE`` when JAX's distributed runtime ended the child; else the child's exit status
    (``128 + N`` when signal ``N`` ended it), or 127 when ``cmd`` cannot be started.
  """
  if os.name != "posix":  # select() on pipes and PR_SET_PDEATHSIG are POSIX/Linux; run unsupervised elsewhere
    return subprocess.call(list(cmd))
  env = dict(os.environ, **{SUPERVISED_ENV: "1"})
  preexec = _die_with(os.getpid()) if sys.platform.startswith("linux") else None
  try:
    child = subprocess.Popen(list(cmd), env=env, stderr=subprocess.PIPE, preexec_fn=preexec)
  except OSError as e:  # no such program, not executable, ...
    print(f"error: cannot run {cmd[0]!r}: {e.strerror or e}", file=sys.stderr, flush=True)
    return 127
  forwarded = {signal.SIGTERM, signal.SIGHUP}
  previous = {s: signal.signal(s, lambda signum, _frame: child.send_signal(signum)) for s in forwarded}
  previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)
  stderr = _Stderr(sys.stderr.buffer, hold)
  fd = child.stderr.fileno()
  try:
    closed_at = None
    while True:
      ready, _, _ = select.select([fd], [], [], 0.25)
      chunk = os.read(fd, 65536) if ready else None
      if chunk:
        stderr.feed(chunk)
      alive = child.poll() is None
      stderr.tick(alive)
      if chunk == b"":  # the child closed its standard error
        break
      if not alive:  # a descendant may keep the pipe open: do not wait for it for long
        closed_at = closed_at or time.monotonic()
        if time.monotonic() - closed_at > 2.0:
          break
    status = child.wait()
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)
    if child.poll() is None:  # the supervisor itself is failing: take the child with it
      child.kill()
      child.wait()
    child.stderr.close()
  aborted = status in (
    -signal.SIGABRT,
    128 + signal.SIGABRT,
  )  # the second: a shell between us and the program
  reason = stderr.stopped_by_jax()
  if reason is None or not (aborted or status == PEER_LOST_EXIT_CODE):
    stderr.release()
    return 128 - status if status < 0 else status
  # JAX's runtime stopped the child, or the child stopped itself (its own one line, status 75) while JAX's runtime
  # was logging the same loss: keep JAX's log in a file and say it in one line.
  with tempfile.NamedTemporaryFile("wb", prefix="ham-optax-jax-", suffix=".log", delete=False) as log:
    log.write(b"".join(stderr.held))
  own = [line.decode(errors="replace").rstrip() for line in stderr.held if line.startswith(b"error: ")]
  if aborted or not own:
    own = [peer_lost_message(who, f"JAX's distributed runtime stopped this process ({reason})")]
  for line in own:
    print(f"{line} {LOG_NOTE}{log.name}", file=sys.stderr, flush=True)
  return PEER_LOST_EXIT_CODE


def main(argv: Sequence[str] | None = None) -> int:
  """``python -m ham_optax_examples.supervisor [--who WHO] [--hold S] -- COMMAND ...``"""
  parser = argparse.ArgumentParser(
    prog="python -m ham_optax_examples.supervisor",
    description="Run one process of a multi-process JAX program; a lost peer ends it with one line and "
    f"status {PEER_LOST_EXIT_CODE} instead of JAX's abort.",
  )
  parser.add_argument(
    "--who", default="this process", help='how the error line names it, e.g. "process 1 of 2"'
  )
  parser.add_argument(
    "--hold", type=float, default=5.0, help="seconds C++ log lines are held back (default 5)"
  )
  parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")
  args = parser.parse_args(argv)
  command = args.command[1:] if args.command[:1] == ["--"] else args.command
  if not command:
    parser.error("give the command to run after --")
  if not args.hold > 0:
    parser.error(f"--hold must be > 0 seconds, got {args.hold}")
  return run(command, args.who, args.hold)


if __name__ == "__main__":
  sys.exit(main())
