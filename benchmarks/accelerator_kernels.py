"""HAM's update as XLA compiles it for a GPU or a TPU: its loops over the arrays, its scalar ops and the bytes
they move, against the bare inner optimizer's.

Compiles the donated update of ``overhead.py`` (``tx.update`` + ``optax.apply_updates``, ResNet-50-shaped tree,
float32) of every variant of :func:`overhead.variants` for an accelerator that XLA is given a description of (no
accelerator needed: XLA compiles for the described device and nothing runs), or for the attached one with
``--attached``, and counts the compiled programs with :func:`overhead.hlo_stats`. Needs JAX's plugin for the
platform, in an environment of its own (``pip install "jax[cuda12]==<the installed jax version>"``, or
``"jax[tpu]==..."``); ``JAX_PLATFORMS=cpu`` keeps JAX from looking for the device to run on::

    JAX_PLATFORMS=cpu JAX_SKIP_CUDA_CONSTRAINTS_CHECK=1 python benchmarks/accelerator_kernels.py  # an H100
    JAX_PLATFORMS=cpu python benchmarks/accelerator_kernels.py --platform tpu                     # a TPU v5e

Writes ``<platform>.json`` to ``--out``; takes about a minute.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from importlib import metadata
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import overhead

import _common

SPECS = Path(__file__).resolve().parent / "accelerator_specs"
ENV = {"gpu": "JAX_PLATFORMS=cpu JAX_SKIP_CUDA_CONSTRAINTS_CHECK=1", "tpu": "JAX_PLATFORMS=cpu"}
PLUGIN = {"gpu": "cuda12", "tpu": "tpu"}


def described_device(platform: str, target_config: Path, topology: str) -> jax.Device:
  """A compile-only device: the GPU that ``target_config`` describes, or the first chip of a TPU ``topology``."""
  from jax.experimental import topologies

  try:
    if platform == "gpu":
      spec = target_config.read_text()
      return topologies.get_topology_desc("target", "cuda", target_config=spec, topology="1x1x1").devices[0]
    tpu = dict(chip_config_name="default", chips_per_host_bounds=(2, 2, 1), num_slices=1, wrap=(False,) * 3)
    return topologies.get_topology_desc(topology, "tpu", **tpu).devices[0]
  except (NotImplementedError, RuntimeError) as e:
    raise SystemExit(
      f"cannot compile for a described {platform} ({e}): install JAX's plugin (pip install "
      f'"jax[{PLUGIN[platform]}]=={jax.__version__}") and run with {ENV[platform]}'
    ) from e


def compile_update(tx, shapes, device: jax.Device) -> Any:
  """``overhead.make_update_step(tx)`` compiled for ``device`` on abstract float32 arrays of ``shapes``."""
  on = jax.sharding.SingleDeviceSharding(device)
  abstract = lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=on)  # noqa: E731
  params = {n: jax.ShapeDtypeStruct(s, jnp.float32, sharding=on) for n, s in shapes}
  state = jax.tree.map(abstract, jax.eval_shape(tx.init, params))
  return overhead.make_update_step(tx).lower(params, state, params).compile()


def target(args: Any) -> tuple[jax.Device, dict[str, Any]]:
  """The device to compile for, and what the results record of it: its name, the description or topology it
  comes from, and the environment variables that repeat the run."""
  if args.attached:
    try:
      device = jax.devices(args.platform)[0]
    except RuntimeError as e:
      raise SystemExit(f"--attached: no {args.platform} is attached ({e})") from e
    return device, {"target": device.device_kind, "env": ""}
  device = described_device(args.platform, args.target_config, args.topology)
  if args.platform == "tpu":
    return device, {"target": device.device_kind, "topology": args.topology, "env": ENV["tpu"]}
  named = re.search(r'description_str: "(.+)"', args.target_config.read_text())
  config = _common.display_path(args.target_config)
  return device, {
    "target": named[1] if named else device.device_kind,
    "target_config": config,
    "env": ENV["gpu"],
  }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  ap = _common.parser(__doc__, "accelerator_kernels")
  ap.add_argument("--platform", choices=("gpu", "tpu"), default="gpu")
  spec = SPECS / "h100_sxm.txtpb"
  ap.add_argument("--target-config", type=Path, default=spec, help="gpu: XLA's description of the GPU")
  ap.add_argument("--topology", default="v5e:2x2", help="tpu: the TPU slice (compiled for its first chip)")
  ap.add_argument("--attached", action="store_true", help="compile for the attached accelerator instead")
  args = ap.parse_args(argv)
  if args.platform == "gpu" and not (args.attached or args.target_config.is_file()):
    ap.error(f"--target-config {args.target_config}: no such file")
  return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
  args = parse_args(argv)
  device, described = target(args)
  results = {**_common.environment(), "platform": args.platform, **described}
  env = results.pop("env")  # the environment variables that the command repeating this run needs
  results["command"] = f"{env} {results['command']}".strip()
  shapes = _common.resnet50_shapes()
  plugins = {d.name: d.version for d in metadata.distributions() if re.match(r"jax-cuda|libtpu", d.name)}
  n = sum(math.prod(s) for _, s in shapes)
  results |= {"plugins": plugins, "n_floats": n, "n_leaves": len(shapes)}
  for name in overhead.INNER_LR:
    results[name] = {}
    for k, tx in overhead.variants(name, references=True).items():
      stats = overhead.hlo_stats(compile_update(tx, shapes, device).as_text())
      results[name][k] = stats | {"kernel_bytes_per_weight": stats["kernel_bytes"] / n}
      print(
        f"{results['target']}, {name}, {k}: {stats['array_fusions']} loops over arrays ({len(shapes)} leaves), "
        f"{stats['scalar_kernels']} scalar ops, {stats['kernels_in_entry']} ops in all, "
        f"{stats['kernel_bytes'] / n:.2f} B per weight, at most {stats['max_kernels_reading_an_input']} "
        f"op(s) reading one input array, {stats['exponential_ops']} exp ops",
        flush=True,
      )
  _common.save_json(os.path.join(args.out, f"{args.platform}.json"), results)
  return results


if __name__ == "__main__":
  main()
