"""Optimizer-state memory: inner vs ham(inner) vs spred(inner) (m * w) vs NanoAdam.

Counts bytes of ``tx.init(params)`` abstractly (``jax.eval_shape``, nothing allocated) for the parameter
shapes of a CIFAR ResNet-18 (11.2M parameters, 100 classes).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import optax

import ham_optax
from ham_optax import nanoadam
from ham_optax.overparam import spred, state_nbytes

import _common


def resnet18_shapes(num_classes: int = 100) -> dict[str, jax.ShapeDtypeStruct]:
  """Parameter shapes of a CIFAR ResNet-18 (3x3 stem, 4 stages of 2 basic blocks, BN scales as 1-D)."""
  p = {"stem": (3, 3, 3, 64), "stem_bn": (64,)}
  cin = 64
  for s, cout in enumerate((64, 128, 256, 512)):
    for b in range(2):
      name = f"s{s}b{b}"
      p |= {f"{name}_c1": (3, 3, cin, cout), f"{name}_c2": (3, 3, cout, cout)}
      p |= {f"{name}_bn1": (cout,), f"{name}_bn2": (cout,)}
      if cin != cout:
        p[f"{name}_proj"] = (1, 1, cin, cout)
      cin = cout
  p |= {"fc": (512, num_classes), "fc_b": (num_classes,)}
  return {k: jax.ShapeDtypeStruct(v, jnp.float32) for k, v in p.items()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  return _common.parser(__doc__, "overparam_memory", num_classes=100).parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
  args = parse_args(argv)
  params = resnet18_shapes(args.num_classes)
  n = sum(x.size for x in jax.tree.leaves(params))
  mib = 2.0**20
  print(f"CIFAR ResNet-18 shapes: {n:,} parameters = {4 * n / mib:.1f} MiB (float32)\n")
  rows, payload = [], {"n_params": n, "bytes": {}}
  inners = {"sgd": optax.sgd(0.1), "sgd momentum": optax.sgd(0.1, momentum=0.9), "adam": optax.adam(1e-3)}
  for name, inner in inners.items():
    b, h, s = (state_nbytes(tx, params) for tx in (inner, ham_optax.ham(inner, 0.1), spred(inner, 1e-4)))
    payload["bytes"][name] = {"inner": b, "ham": h, "spred": s}
    ratio = f"{s / b:.2f}x" if b > 64 else "-"
    rows.append([name, *(f"{v / mib:.1f}" for v in (b, h, s)), ratio, f"{(s - h) / (4 * n):.2f}"])
  header = ["inner", *(f"{k} (MiB)" for k in ("inner", "ham(inner)", "spred(inner)"))]
  print(_common.markdown_table([*header, "spred/inner", "(spred-ham)/params"], rows) + "\n")
  a = state_nbytes(optax.adam(1e-4), params)
  for f in (0.05, 0.1, 0.2):
    nb = state_nbytes(nanoadam(1e-4, f, 100), params)
    payload["bytes"][f"nanoadam fraction={f}"] = nb
    print(f"nanoadam fraction={f:<5} {nb / mib:7.1f} MiB vs adam {a / mib:.1f} MiB ({a / nb:.1f}x smaller)")
  _common.save_json(args.out / "memory.json", payload, cmd=_common.command(argv, __file__))
  return payload


if __name__ == "__main__":
  main()
