"""The examples as one of N JAX processes, on one machine or N hosts (``docs/guides/multi_host.md``): joined by
``jax.distributed.initialize``, each feeding only its own rows of every batch. A lost peer is left to JAX's
coordination service (heartbeat timeout) and the launcher; rerun every process to resume from a checkpoint."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import ipaddress
import json
import math
import os
import socket
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P


def initialize(
  coordinator=None, num_processes=None, process_id=None, *, cpu_collectives="gloo", **kwargs
) -> None:
  """``jax.distributed.initialize`` (``None`` arguments: from the environment; ``kwargs`` passed on), its
  coordination service listening on loopback only for a loopback ``coordinator`` (unless
  ``JAX_COORDINATOR_BIND_ADDRESS`` is set). ``cpu_collectives``: ``"gloo"`` for CPU runs, ``None`` for GPU/TPU."""
  if cpu_collectives is not None:
    jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
  bind = _loopback_bind_address(coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS"))
  jax.distributed.initialize(coordinator, num_processes, process_id, coordinator_bind_address=bind, **kwargs)


def check_coordinator(address: str, *, bind: bool = False) -> tuple[str, int]:
  """``(host, port)`` of a ``HOST:PORT`` address (``ValueError`` if invalid); with ``bind``, checks that the port
  can be listened on here (else JAX would crash)."""
  host, sep, port = address.rpartition(":")
  if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
    raise ValueError(f"the coordinator address must be HOST:PORT with a port in 1-65535, got {address!r}")
  host = host.strip("[]")
  if bind:
    bind_host = host if _loopback_bind_address(address) else ""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
      try:
        probe.bind((bind_host, int(port)))
      except OSError as e:
        if e.errno == errno.EADDRINUSE:
          raise ValueError(
            f"the coordinator port {port} is already in use on this machine; choose another port"
          ) from None
        raise ValueError(f"cannot listen on the coordinator port {port} here ({e.strerror})") from None
  return host, int(port)


# How a Slurm job step (srun) and Open MPI (mpirun) announce the processes (read by jax.distributed.initialize).
_LAUNCHERS = {
  "slurm": (("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_LOCALID"), "SLURM_NTASKS", "SLURM_PROCID"),
  "openmpi": (("OMPI_MCA_orte_hnp_uri",), "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"),
}


def launched_processes() -> tuple[int, int] | None:
  """``(process_count, process_index)`` as ``srun`` (Slurm) or ``mpirun`` (Open MPI) announce them, else ``None``."""
  for required, count, index in _LAUNCHERS.values():
    if all(k in os.environ for k in (*required, count, index)):
      try:
        return int(os.environ[count]), int(os.environ[index])
      except ValueError:
        return None
  return None


def check_same_settings(settings: dict[str, Any]) -> None:
  """Raises ``ValueError`` in every process unless all were given the same ``settings`` (one collective)."""
  if jax.process_count() == 1:
    return
  text = json.dumps(settings, sort_keys=True, default=str).encode()
  digest = np.frombuffer(hashlib.sha256(text).digest(), np.uint8)
  try:
    multihost_utils.assert_equal(digest, "settings differ")
  except AssertionError:
    raise ValueError(
      "the processes were started with different settings; start every process with the same options"
    ) from None


def _loopback_bind_address(coordinator: str | None) -> str | None:
  """``coordinator`` when its host is a loopback address, else ``None`` (JAX's default bind address)."""
  if not coordinator or ":" not in coordinator or os.environ.get("JAX_COORDINATOR_BIND_ADDRESS"):
    return None
  host = coordinator.rsplit(":", 1)[0].strip("[]")
  if host == "localhost":
    return coordinator
  try:
    return coordinator if ipaddress.ip_address(host).is_loopback else None
  except ValueError:  # a host name
    return None


def process_rows(sharding: NamedSharding, global_shape: tuple[int, ...]) -> slice:
  """The rows (leading axis) of a global array of ``global_shape`` that this process's devices hold; raises
  ``ValueError`` unless they are one contiguous block."""
  covered = np.zeros(global_shape[0], bool)
  for index in sharding.addressable_devices_indices_map(global_shape).values():
    covered[(index[0] if index else slice(None))] = True
  lo, hi = (int(i) for i in np.flatnonzero(covered)[[0, -1]] + [0, 1])
  if not covered[lo:hi].all():
    raise ValueError("this process's devices do not hold one contiguous block of rows of the batch.")
  return slice(lo, hi)


def global_batch(local_rows: np.ndarray, sharding: NamedSharding, global_shape: tuple[int, ...]) -> jax.Array:
  """A global array of ``global_shape`` from this process's rows only (see :func:`process_rows`)."""
  return jax.make_array_from_process_local_data(sharding, np.asarray(local_rows), global_shape)


def process_shards(shards: int, process_index: int, process_count: int) -> range:
  """The contiguous block of ``shards // process_count`` data shards that process ``process_index`` holds."""
  if isinstance(shards, bool) or not isinstance(shards, int | np.integer) or shards < 1:
    raise ValueError(f"data_shards must be an integer >= 1, got {shards!r}.")
  if shards % process_count:
    raise ValueError(
      f"data_shards {shards} is not a multiple of the number of processes ({process_count}); each process "
      "must hold the same number of shards."
    )
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index must be in [0, {process_count}), got {process_index!r}.")
  per_process = shards // process_count
  return range(process_index * per_process, (process_index + 1) * per_process)


@dataclasses.dataclass(frozen=True)
class DataLayout:
  """Data parallelism over the processes and devices of a run: every split is cut into ``shards`` (``S``)
  contiguous blocks; process ``p`` of ``N`` holds blocks ``local_shards = [p S / N, (p + 1) S / N)`` only. A
  global batch of ``B`` rows takes ``B / S`` rows from every block, in block order, so its rows
  ``[p B / N, (p + 1) B / N)`` are process ``p``'s, on its devices of ``mesh`` (axis ``"data"``; ``None`` with one
  process unless ``all_devices``); parameters are replicated. ``S = N`` shards in one process compute what ``N``
  processes compute (to float rounding)."""

  shards: int
  local_shards: range
  mesh: Mesh | None

  @classmethod
  def create(cls, shards: int | None = None, all_devices: bool = False) -> DataLayout:
    """The layout for this process (``shards=None``: one per process; ``all_devices``: a mesh even with one
    process)."""
    count = jax.process_count()
    shards = count if shards is None else shards
    local = process_shards(shards, jax.process_index(), count)
    if count == 1 and not (all_devices and jax.device_count() > 1):
      return cls(shards, local, None)
    mesh = jax.make_mesh((jax.device_count(),), ("data",), axis_types=(AxisType.Auto,))
    rows = process_rows(NamedSharding(mesh, P("data")), (jax.device_count(),))
    per_process = jax.device_count() // count
    if rows != slice(jax.process_index() * per_process, (jax.process_index() + 1) * per_process):
      raise ValueError("this process's devices do not hold its block of the batch (unequal device counts?).")
    return cls(shards, local, mesh)

  @property
  def devices(self) -> int:
    return 1 if self.mesh is None else self.mesh.size

  def check_batch(self, batch_size: int) -> None:
    """Raises ``ValueError`` unless ``batch_size`` rows split evenly over the shards and the devices."""
    for parts, what in ((self.shards, "data shards"), (self.devices, "devices of the run")):
      if batch_size % parts:
        raise ValueError(
          f"batch size {batch_size} does not split evenly over the {parts} {what}; choose a batch size that is "
          f"a multiple of {math.lcm(self.shards, self.devices)}."
        )

  def put(self, local: np.ndarray, batch_axis: int = 0) -> jax.Array:
    """The global array whose rows along ``batch_axis`` are every process's ``local`` rows, in process order."""
    if self.mesh is None:
      return jnp.asarray(local)
    spec = P(*([None] * batch_axis), "data")
    shape = list(np.shape(local))
    shape[batch_axis] *= jax.process_count()
    return global_batch(local, NamedSharding(self.mesh, spec), tuple(shape))

  def replicate(self, tree: Any) -> Any:
    """``tree`` replicated on every device of the mesh (unchanged without one); every process passes the same."""
    if self.mesh is None:
      return tree
    sharding = NamedSharding(self.mesh, P())

    def put(a):
      if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
        impl = jax.random.key_impl(a)
        return jax.random.wrap_key_data(put(jax.random.key_data(a)), impl=impl)
      host = np.asarray(a)
      return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(put, tree)

  def replicated(self, tree: Any) -> Any:
    """Inside ``jit``: constrains ``tree`` to stay replicated (a no-op with one process)."""
    if self.mesh is None:
      return tree
    return jax.lax.with_sharding_constraint(tree, NamedSharding(self.mesh, P()))
