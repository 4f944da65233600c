"""Cost of a sparsifier step relative to the optimizer it wraps (jitted update only, no model).

Params: ``--layers`` square ``--width x --width`` kernels plus biases. Each transform's ``update`` is jitted and
timed on steps where no mask changes (the schedules are pushed far away; the mask-update branch still sits in the
compiled ``lax.cond``), plus RigL with a drop-and-grow on every step (its worst case): the median over
``--repeats`` timings of ``--steps`` steps.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import optax

import ham_optax
from ham_optax import sparsity as sp

import _common


def parse_args(argv=None) -> argparse.Namespace:
  p = _common.parser(__doc__, "sparsity_overhead", width=1024, layers=4, steps=20, repeats=7)
  return p.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  keys = jax.random.split(jax.random.key(0), args.layers)
  params = {
    f"l{i}": {"w": 0.02 * jax.random.normal(k, (args.width, args.width)), "b": jnp.zeros(args.width)}
    for i, k in enumerate(keys)
  }
  grads = jax.tree.map(lambda p: 0.01 * jnp.ones_like(p), params)
  big = 10**9  # mask-update schedules pushed far away: measures the per-step cost of the wrapper only
  sgdm = optax.sgd(0.1, momentum=0.9)
  ham = ham_optax.ham(sgdm, 0.1)  # transformations are pure: one instance serves every wrapper
  txs = {
    "sgd+momentum": sgdm,
    "ham(sgd)": ham,
    "random_pruning(ham)": sp.random_pruning(ham, 0.9),
    "magnitude_pruning(ham)": sp.magnitude_pruning(ham, 0.9, begin_step=big - 1, end_step=big),
    "acdc(ham)": sp.acdc(ham, 0.9, total_steps=big),
    "rigl(ham)": sp.rigl(ham, 0.9, update_every=big - 1, end_step=big),
    "rigl(ham), every step a mask update": sp.rigl(ham, 0.9, update_every=1, end_step=big),
  }
  results = {}
  for name, tx in txs.items():
    update = jax.jit(tx.update)
    carry = [jax.block_until_ready(update(grads, tx.init(params), params)[1])]  # compiled, one step run

    def steps(update=update, carry=carry):  # --steps dispatches, one sync at the end
      for _ in range(args.steps):
        u, carry[0] = update(grads, carry[0], params)
      jax.block_until_ready(u)

    results[name] = _common.median_time(steps, args.repeats) / args.steps
  n = sum(p.size for p in jax.tree.leaves(params))
  print(f"{n / 1e6:.1f}M params ({args.layers} x {args.width}^2), {jax.devices()[0].platform}")
  rows = [[name, f"{1e3 * t:.2f}", f"{t / results['ham(sgd)']:.2f}x"] for name, t in results.items()]
  print(_common.markdown_table(["transform", "ms / step", "vs ham(sgd)"], rows))
  args_saved = {k: v for k, v in vars(args).items() if k != "out"}
  payload = {**_common.environment(), "args": args_saved, "n_params": n, "seconds_per_step": results}
  _common.save_json(args.out / "timings.json", payload, cmd=_common.command(argv, __file__))
  return payload


if __name__ == "__main__":
  main()
