"""One process of a multi-process HAM training run (driven by tests/test_multihost.py).

Every process runs this same script with its own ``--process-id``; with ``--num-processes 1`` it is the
single-process reference on the same global batches. Each process feeds only its own rows of every global
batch. Process 0 writes the final (gathered) params and the HLO collective counts as ``.npz`` / JSON.

  python tests/multihost_worker.py --process-id 0 --num-processes 2 --port 12355 --local-devices 2 \
    --mesh dp --steps 30 --out /tmp/run
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import re
import sys
from pathlib import Path


def _parse(argv=None):
  p = argparse.ArgumentParser()
  p.add_argument("--process-id", type=int, default=0)
  p.add_argument("--num-processes", type=int, default=1)
  p.add_argument("--port", type=int, default=0)
  p.add_argument("--local-devices", type=int, default=2)
  p.add_argument("--mesh", choices=["dp", "dp_mp"], default="dp")
  p.add_argument("--sparsifier", choices=["none", "random"], default="none")
  p.add_argument("--steps", type=int, default=30)
  p.add_argument("--out", type=Path, required=True)
  p.add_argument("--save-at", type=int, default=-1, help="save a checkpoint after this many steps")
  p.add_argument("--restore", type=Path, default=None, help="restore this checkpoint, then continue")
  return p.parse_args(argv)


args = _parse()
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.local_devices}"
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402  (after XLA_FLAGS: the device count is read when JAX starts)
import numpy as np  # noqa: E402
import optax  # noqa: E402
import orbax.checkpoint as ocp  # noqa: E402
from ham_optax_examples import distributed  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402
from jax.sharding import AxisType, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import ham_optax  # noqa: E402

COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "collective-permute", "all-to-all")
D_IN, HIDDEN, CLASSES, GLOBAL_BATCH = 16, 32, 4, 16


def count_collectives(compiled) -> dict[str, int]:
  text = compiled.as_text()
  return {op: len(re.findall(rf"\b{op}(-start)?\(", text)) for op in COLLECTIVES}


def listening_addresses() -> list[str]:
  """``host:port`` of every TCP socket this process listens on (Linux: /proc), e.g. the coordination service's
  and gloo's."""
  inodes = set()
  for fd in os.listdir("/proc/self/fd"):
    with contextlib.suppress(OSError):
      target = os.readlink(f"/proc/self/fd/{fd}")
      if target.startswith("socket:["):
        inodes.add(target[8:-1])
  found = []
  for table, size in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
    with contextlib.suppress(OSError), open(table) as f:
      for row in list(f)[1:]:
        cols = row.split()
        if cols[3] != "0A" or cols[9] not in inodes:  # 0A: LISTEN
          continue
        host_hex, port_hex = cols[1].split(":")
        raw = b"".join(bytes.fromhex(host_hex[i : i + 8])[::-1] for i in range(0, len(host_hex), 8))
        host = ipaddress.ip_address(raw[:size])
        host = getattr(host, "ipv4_mapped", None) or host  # ::ffff:127.0.0.1 is 127.0.0.1
        found.append(f"[{host}]:{int(port_hex, 16)}" if host.version == 6 else f"{host}:{int(port_hex, 16)}")
  return sorted(found)


def main() -> None:
  if args.num_processes > 1:
    distributed.initialize(f"127.0.0.1:{args.port}", args.num_processes, args.process_id)
  n_dev = jax.device_count()
  if args.mesh == "dp":
    mesh = jax.make_mesh((n_dev,), ("data",), axis_types=(AxisType.Auto,))
    specs = {"w1": P(), "b1": P(), "w2": P(), "b2": P()}
  else:
    mesh = jax.make_mesh((n_dev // 2, 2), ("data", "model"), axis_types=(AxisType.Auto,) * 2)
    specs = {"w1": P(None, "model"), "b1": P("model"), "w2": P("model", None), "b2": P()}
  shard = {k: NamedSharding(mesh, s) for k, s in specs.items()}
  batch_x = NamedSharding(mesh, P("data", None))
  batch_y = NamedSharding(mesh, P("data"))

  rng = np.random.default_rng(0)  # the same global data and init in every process
  init = {
    "w1": rng.normal(size=(D_IN, HIDDEN)).astype(np.float32) / np.sqrt(D_IN),
    "b1": np.zeros(HIDDEN, np.float32),
    "w2": rng.normal(size=(HIDDEN, CLASSES)).astype(np.float32) / np.sqrt(HIDDEN),
    "b2": np.zeros(CLASSES, np.float32),
  }
  params = {k: jax.make_array_from_callback(v.shape, shard[k], lambda i, v=v: v[i]) for k, v in init.items()}
  xs = rng.normal(size=(args.steps, GLOBAL_BATCH, D_IN)).astype(np.float32)
  ys = rng.integers(0, CLASSES, size=(args.steps, GLOBAL_BATCH)).astype(np.int32)

  def loss_fn(p, x, y):
    h = jax.nn.relu(x @ p["w1"] + p["b1"])
    return optax.softmax_cross_entropy_with_integer_labels(h @ p["w2"] + p["b2"], y).mean()

  lr = optax.cosine_decay_schedule(0.2, args.steps)
  tx = ham_optax.ham(optax.sgd(lr, momentum=0.9), learning_rate=lr, alpha=5.0, beta=1e-3)
  plain = optax.sgd(lr, momentum=0.9)
  if args.sparsifier == "random":
    tx = ham_optax.sparsity.random_pruning(tx, 0.5, seed=3)
    plain = ham_optax.sparsity.random_pruning(plain, 0.5, seed=3)

  def make_step(opt):
    @jax.jit
    def step(p, s, x, y):
      loss, g = jax.value_and_grad(loss_fn)(p, x, y)
      u, s = opt.update(g, s, p)
      return optax.apply_updates(p, u), s, loss

    return step

  state = jax.jit(tx.init)(params)
  if args.sparsifier != "none":
    params = jax.jit(ham_optax.sparsity.apply_masks)(params, state)
  step = make_step(tx)
  first = 0
  if args.restore is not None:
    # Restore onto this run's mesh: the params' own shardings; scalars (step counts) replicated over the mesh
    # (a freshly initialised count is uncommitted, a restored one would otherwise be pinned to one device).
    def target(a):
      sharding = a.sharding if isinstance(a.sharding, NamedSharding) else NamedSharding(mesh, P())
      return jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding)

    abstract = jax.tree.map(target, (params, state))
    params, state = ocp.StandardCheckpointer().restore(args.restore.resolve(), abstract)
    first = args.save_at
  rows = distributed.process_rows(batch_x, (GLOBAL_BATCH, D_IN))

  # Collectives: the update alone must add none; the full step only the gradient reduction's.
  x0 = distributed.global_batch(xs[0][rows], batch_x, (GLOBAL_BATCH, D_IN))
  y0 = distributed.global_batch(ys[0][rows], batch_y, (GLOBAL_BATCH,))
  grads = jax.jit(jax.grad(loss_fn))(params, x0, y0)
  counts = {
    "update": count_collectives(jax.jit(tx.update).lower(grads, state, params).compile()),
    "step_ham": count_collectives(step.lower(params, state, x0, y0).compile()),
    "step_plain": count_collectives(
      make_step(plain).lower(params, jax.jit(plain.init)(params), x0, y0).compile()
    ),
  }

  losses = []
  ckptr = ocp.StandardCheckpointer()
  for t in range(first, args.steps):
    x = distributed.global_batch(xs[t][rows], batch_x, (GLOBAL_BATCH, D_IN))
    y = distributed.global_batch(ys[t][rows], batch_y, (GLOBAL_BATCH,))
    params, state, loss = step(params, state, x, y)
    losses.append(float(loss))
    if t + 1 == args.save_at and args.restore is None:
      ckptr.save((args.out / "ckpt").resolve(), (params, state))
      ckptr.wait_until_finished()

  final = {k: np.asarray(multihost_utils.process_allgather(v, tiled=True)) for k, v in params.items()}
  if jax.process_index() == 0:
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(args.out / "params.npz", **final)
    info = {
      "devices": n_dev,
      "processes": jax.process_count(),
      "losses": losses,
      "collectives": counts,
      "port": args.port,
      "listening": listening_addresses() if os.path.isdir("/proc/self/fd") else None,
    }
    (args.out / "info.json").write_text(json.dumps(info))
  print(f"process {jax.process_index()} done", file=sys.stderr)


if __name__ == "__main__":
  main()
