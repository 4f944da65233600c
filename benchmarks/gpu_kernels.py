"""HAM's update as XLA compiles it for a GPU: the kernels it launches and the bytes they move, against the bare
inner optimizer's.

Compiles the donated update of ``overhead.py`` (``tx.update`` + ``optax.apply_updates``, ResNet-50-shaped tree,
float32) of every variant of :func:`overhead.variants` for the GPU that an XLA target description names (no GPU
needed: XLA compiles for the described device; nothing runs), or for the attached GPU with ``--attached``, and
counts the compiled programs with :func:`overhead.hlo_stats`. Needs JAX's CUDA plugin, in an environment of its
own: ``pip install "jax[cuda12]==<the installed jax version>"``. Without a GPU::

    JAX_PLATFORMS=cpu JAX_SKIP_CUDA_CONSTRAINTS_CHECK=1 python benchmarks/gpu_kernels.py

(``JAX_PLATFORMS=cpu``: JAX runs on the CPU and does not look for a GPU; the plugin still compiles for the target.)
Writes ``gpu_kernels.json`` to ``--out``; takes about a minute.
"""

from __future__ import annotations

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

SPECS = Path(__file__).resolve().parent / "gpu_specs"


def target_device(target_config: Path, attached: bool) -> jax.Device:
  """The attached GPU, or a compile-only device for the GPU that ``target_config`` describes."""
  if attached:
    try:
      return jax.devices("gpu")[0]
    except RuntimeError as e:
      raise SystemExit(f"--attached: no GPU is attached ({e})") from e
  from jax.experimental import topologies

  try:
    spec = target_config.read_text()
    topo = topologies.get_topology_desc("target", "cuda", target_config=spec, topology="1x1x1")
  except (NotImplementedError, RuntimeError) as e:
    raise SystemExit(
      f"cannot compile for a described GPU ({e}): install JAX's CUDA plugin (pip install "
      f'"jax[cuda12]=={jax.__version__}") and run with JAX_PLATFORMS=cpu JAX_SKIP_CUDA_CONSTRAINTS_CHECK=1'
    ) from e
  return topo.devices[0]


def compile_update(tx, shapes, device: jax.Device) -> Any:
  """``overhead.make_update_step(tx)`` compiled for ``device`` on abstract float32 arrays of ``shapes``."""
  on = jax.sharding.SingleDeviceSharding(device)
  abstract = lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=on)  # noqa: E731
  params = {n: jax.ShapeDtypeStruct(s, jnp.float32, sharding=on) for n, s in shapes}
  state = jax.tree.map(abstract, jax.eval_shape(tx.init, params))
  return overhead.make_update_step(tx).lower(params, state, params).compile()


def main(argv: list[str] | None = None) -> dict[str, Any]:
  ap = _common.parser(__doc__, "gpu_kernels")
  spec = SPECS / "h100_sxm.txtpb"
  ap.add_argument("--target-config", type=Path, default=spec, help="XLA's description of the GPU")
  ap.add_argument("--attached", action="store_true", help="compile for the attached GPU instead")
  args = ap.parse_args(argv)
  if not (args.attached or args.target_config.is_file()):
    ap.error(f"--target-config {args.target_config}: no such file")
  device, shapes = target_device(args.target_config, args.attached), _common.resnet50_shapes()
  n = sum(math.prod(s) for _, s in shapes)
  described = None if args.attached else re.search(r'description_str: "(.+)"', args.target_config.read_text())
  target = device.device_kind if args.attached else described[1] if described else args.target_config.stem
  results = {**_common.environment(), "target": target}
  results |= {"target_config": None if args.attached else _common.display_path(args.target_config)}
  plugins = {d.name: d.version for d in metadata.distributions() if d.name.startswith("jax-cuda")}
  results |= {"cuda_plugins": plugins, "n_floats": n, "n_leaves": len(shapes)}
  for name in overhead.INNER_LR:
    results[name] = {}
    for k, tx in overhead.variants(name, references=True).items():
      stats = overhead.hlo_stats(compile_update(tx, shapes, device).as_text())
      results[name][k] = stats | {"kernel_bytes_per_weight": stats["kernel_bytes"] / n}
      print(
        f"{results['target']}, {name}, {k}: {stats['kernels_in_entry']} kernels ({len(shapes)} leaves), "
        f"{stats['kernel_bytes'] / n:.2f} B per weight, at most {stats['max_kernels_reading_an_input']} "
        f"kernel(s) reading one input array, {stats['exponential_ops']} exp ops",
        flush=True,
      )
  if not args.attached:  # the command that repeats this run
    results["command"] = f"JAX_PLATFORMS=cpu JAX_SKIP_CUDA_CONSTRAINTS_CHECK=1 {results['command']}"
  _common.save_json(os.path.join(args.out, "gpu_kernels.json"), results)
  return results


if __name__ == "__main__":
  main()
