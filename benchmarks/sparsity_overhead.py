"""Cost of a sparsifier step relative to the optimizer it wraps (jitted update only, no model).

Params: ``--layers`` square ``--width x --width`` kernels plus biases. Each transform's ``update`` is jitted and
timed on steps where no mask changes (the schedules are pushed far away; the mask-update branch still sits in the
compiled ``lax.cond``), plus RigL with a drop-and-grow on every step (its worst case). Reports the median over
``--repeats`` timings of ``--steps`` steps.

  python benchmarks/sparsity_overhead.py --width 1024 --layers 4
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import ham_optax
from ham_optax import sparsity as sp


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--width", type=int, default=1024)
  parser.add_argument("--layers", type=int, default=4)
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--repeats", type=int, default=7)
  args = parser.parse_args(argv)
  keys = jax.random.split(jax.random.key(0), args.layers)
  params = {
    f"l{i}": {"w": 0.02 * jax.random.normal(k, (args.width, args.width)), "b": jnp.zeros(args.width)}
    for i, k in enumerate(keys)
  }
  grads = jax.tree.map(lambda p: 0.01 * jnp.ones_like(p), params)
  big = 10**9  # mask-update schedules pushed far away: measures the per-step cost of the wrapper only

  def ham():
    return ham_optax.ham(optax.sgd(0.1, momentum=0.9), 0.1)

  txs = {
    "sgd+momentum": optax.sgd(0.1, momentum=0.9),
    "ham(sgd)": ham(),
    "random_pruning(ham)": sp.random_pruning(ham(), 0.9),
    "magnitude_pruning(ham)": sp.magnitude_pruning(ham(), 0.9, begin_step=big - 1, end_step=big),
    "acdc(ham)": sp.acdc(ham(), 0.9, total_steps=big),
    "rigl(ham)": sp.rigl(ham(), 0.9, update_every=big - 1, end_step=big),
    "rigl(ham), every step a mask update": sp.rigl(ham(), 0.9, update_every=1, end_step=big),
  }
  results = {}
  for name, tx in txs.items():
    state = tx.init(params)
    update = jax.jit(tx.update)
    u, state = update(grads, state, params)
    jax.block_until_ready(u)
    times = []
    for _ in range(args.repeats):
      t0 = time.perf_counter()
      for _ in range(args.steps):
        u, state = update(grads, state, params)
      jax.block_until_ready(u)
      times.append((time.perf_counter() - t0) / args.steps)
    results[name] = float(np.median(times))
  n = sum(p.size for p in jax.tree.leaves(params))
  print(f"{n / 1e6:.1f}M params ({args.layers} x {args.width}^2), {jax.devices()[0].platform}")
  print("| transform | ms / step | vs ham(sgd) |")
  print("|---|---|---|")
  for name, t in results.items():
    print(f"| {name} | {1e3 * t:.2f} | {t / results['ham(sgd)']:.2f}x |")


if __name__ == "__main__":
  main()
