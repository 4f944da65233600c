"""Running the examples as one of several JAX processes (multi-host data parallelism).

JAX's own multi-process runtime does all communication: :func:`initialize` calls
``jax.distributed.initialize`` (coordinator address, process count and index from arguments or the
environment variables JAX already reads), optionally with CPU collectives through gloo, so the same
code runs as N processes on one machine (loopback) or on N hosts. Every process builds the same global
mesh; each process feeds only its own rows of every batch (:func:`process_rows`,
:func:`global_batch`) and only process 0 writes reports.

If a peer dies, collectives cannot complete. JAX's coordination service notices the missing heartbeat
only after ``heartbeat_timeout_seconds``, and a process blocked inside a collective may wait longer, so
:class:`Watchdog` bounds the wait: when no step finishes within ``timeout`` seconds it prints one line
naming the likely cause and ends the process with exit code 75 (``os._exit``: a thread blocked in a
collective cannot be interrupted any other way). Restart all processes with the same arguments to
resume from the last checkpoint.

Example (two processes on one machine; run the second command with ``--process-id 1``)::

  XLA_FLAGS=--xla_force_host_platform_device_count=2 python -m ham_optax.training.cli train \\
    --coordinator 127.0.0.1:12355 --num-processes 2 --process-id 0
"""

from __future__ import annotations

import os
import sys
import threading
import time

import jax
import numpy as np
from jax.sharding import NamedSharding

__all__ = ["WATCHDOG_EXIT_CODE", "Watchdog", "global_batch", "initialize", "process_rows"]

WATCHDOG_EXIT_CODE = 75  # EX_TEMPFAIL: the run can be restarted and resumes from its last checkpoint


def initialize(
  coordinator: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
  *,
  cpu_collectives: str | None = "gloo",
  heartbeat_timeout_seconds: int = 30,
  initialization_timeout: int = 120,
) -> None:
  """Joins this process to a multi-process JAX run.

  Args:
    coordinator: ``host:port`` of process 0's coordination service (``None``: from the environment,
      e.g. ``JAX_COORDINATOR_ADDRESS`` or a cluster scheduler JAX detects).
    num_processes: total number of processes (``None``: from the environment).
    process_id: this process's index in ``[0, num_processes)`` (``None``: from the environment).
    cpu_collectives: CPU collectives implementation (``"gloo"`` makes CPU-only runs work across
      processes; ``None`` leaves JAX's default, e.g. on GPU/TPU).
    heartbeat_timeout_seconds: after this long without a heartbeat from a peer, JAX's coordination
      service declares it dead and fails the run.
    initialization_timeout: seconds to wait for all processes to join.
  """
  if num_processes is not None and (isinstance(num_processes, bool) or int(num_processes) < 1):
    raise ValueError(f"num_processes must be an integer >= 1, got {num_processes!r}.")
  if process_id is not None and num_processes is not None and not 0 <= int(process_id) < int(num_processes):
    raise ValueError(f"process_id must be in [0, {num_processes}), got {process_id!r}.")
  if cpu_collectives is not None:
    jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
  jax.distributed.initialize(
    coordinator_address=coordinator,
    num_processes=num_processes,
    process_id=process_id,
    heartbeat_timeout_seconds=heartbeat_timeout_seconds,
    initialization_timeout=initialization_timeout,
  )


def process_rows(sharding: NamedSharding, global_shape: tuple[int, ...]) -> slice:
  """The rows (leading axis) of a global array of ``global_shape`` that this process's devices hold.

  Raises ``ValueError`` if the devices of this process do not hold one contiguous block of rows (a
  mesh whose data axis interleaves processes), which :func:`global_batch` could not feed.
  """
  index_map = sharding.addressable_devices_indices_map(global_shape)
  starts, stops = [], []
  for index in index_map.values():
    rows = index[0] if index else slice(None)
    start, stop, _ = rows.indices(global_shape[0])
    starts.append(start)
    stops.append(stop)
  lo, hi = min(starts), max(stops)
  covered = np.zeros(global_shape[0], bool)
  for a, b in zip(starts, stops, strict=True):
    covered[a:b] = True
  if not covered[lo:hi].all():
    raise ValueError("this process's devices do not hold one contiguous block of rows of the batch.")
  return slice(lo, hi)


def global_batch(local_rows: np.ndarray, sharding: NamedSharding, global_shape: tuple[int, ...]) -> jax.Array:
  """A global array of ``global_shape`` from this process's rows only (see :func:`process_rows`)."""
  return jax.make_array_from_process_local_data(sharding, np.asarray(local_rows), global_shape)


class Watchdog:
  """Ends the process when no progress is reported for ``timeout`` seconds (a dead or stuck peer).

  Call :meth:`tick` after every finished step (or any other progress); use as a context manager. In a
  multi-process run, a ``JaxRuntimeError`` raised inside the block (what a collective raises when its peer
  has gone) ends the process the same way, with one line instead of JAX's shutdown-barrier abort.
  """

  def __init__(self, timeout: float, what: str = "training step"):
    if not timeout > 0:
      raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}.")
    self.timeout = float(timeout)
    self.what = what
    self._last = time.monotonic()
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True)

  def tick(self) -> None:
    self._last = time.monotonic()

  def _fail(self, reason: str) -> None:
    print(
      f"error: process {jax.process_index()} of {jax.process_count()}: {reason}; another process has probably "
      "died or is stuck. Exiting; restart all processes with the same arguments to resume from the last "
      "checkpoint.",
      file=sys.stderr,
      flush=True,
    )
    os._exit(WATCHDOG_EXIT_CODE)

  def _run(self) -> None:
    while not self._stop.wait(min(1.0, self.timeout / 4)):
      waited = time.monotonic() - self._last
      if waited > self.timeout:
        self._fail(f"no {self.what} finished in {waited:.0f} s")

  def __enter__(self) -> Watchdog:
    self.tick()
    self._thread.start()
    return self

  def __exit__(self, exc_type, exc, tb) -> None:
    self._stop.set()
    if exc is not None and jax.process_count() > 1 and isinstance(exc, jax.errors.JaxRuntimeError):
      # A collective whose peer vanished fails with a runtime error; exiting normally would then block in
      # JAX's shutdown barrier until the heartbeat timeout and abort with a long log. Say it in one line.
      first_line = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
      self._fail(f"a {self.what} failed ({first_line})")
