"""Small sparse-training comparison on sklearn's 8x8 digits: each sparsifier with and without HAM.

An MLP 64-256-256-10 (ReLU) is trained with SGD + momentum at a fixed learning rate; every sparsifier is run with
``optax.sgd`` alone and with ``ham_optax.ham(optax.sgd(...))`` for each ``--alphas`` value. HAM's alpha is picked
per sparsifier by mean *validation* accuracy; the table reports test accuracy (mean ± std over seeds) at that
alpha. Data: 1797 digits, split 60/20/20 once (fixed); seeds change the init, the batch order and the masks.

  python benchmarks/sparsity_digits.py --sparsity 0.9 --seeds 5 --epochs 30 --alphas 1 5 20
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits

import ham_optax
from ham_optax import metrics
from ham_optax import sparsity as sp

WIDTH = (64, 256, 256, 10)
BATCH = 64


def _data():
  x, y = load_digits(return_X_y=True)
  x = (x / 16.0).astype(np.float32)
  perm = np.random.default_rng(0).permutation(len(x))
  x, y = x[perm], y[perm].astype(np.int32)
  n_tr, n_va = int(0.6 * len(x)), int(0.2 * len(x))
  return (
    (x[:n_tr], y[:n_tr]),
    (x[n_tr : n_tr + n_va], y[n_tr : n_tr + n_va]),
    (x[n_tr + n_va :], y[n_tr + n_va :]),
  )


def _init(key):
  params = {}
  for i, (a, b) in enumerate(zip(WIDTH[:-1], WIDTH[1:], strict=True)):
    key, sub = jax.random.split(key)
    params[f"l{i}"] = {"w": jax.random.normal(sub, (a, b)) * jnp.sqrt(2.0 / a), "b": jnp.zeros(b)}
  return params


def _logits(params, x):
  for i in range(len(WIDTH) - 1):
    x = x @ params[f"l{i}"]["w"] + params[f"l{i}"]["b"]
    if i < len(WIDTH) - 2:
      x = jax.nn.relu(x)
  return x


def _loss(params, x, y):
  return optax.softmax_cross_entropy_with_integer_labels(_logits(params, x), y).mean()


def _accuracy(params, x, y):
  return float(jnp.mean(jnp.argmax(_logits(params, x), -1) == y))


def _make_tx(method, alpha, lr, sparsity, total, seed):
  inner = optax.sgd(lr, momentum=0.9)
  if alpha is not None:
    inner = ham_optax.ham(inner, lr, alpha=alpha, beta=1e-3)
  if method == "dense":
    return inner
  if method == "random_erk":
    return sp.random_pruning(inner, sparsity, distribution="erk", seed=seed)
  if method == "gmp":
    return sp.magnitude_pruning(
      inner, sparsity, begin_step=total // 10, end_step=6 * total // 10, frequency=max(1, total // 50)
    )
  if method == "acdc":
    return sp.acdc(inner, sparsity, total_steps=total)
  if method == "rigl":
    return sp.rigl(inner, sparsity, update_every=max(1, total // 20), end_step=3 * total // 4, seed=seed)
  raise ValueError(method)


def run_one(method, alpha, seed, args, data):
  (xtr, ytr), (xva, yva), (xte, yte) = data
  steps_per_epoch = len(xtr) // BATCH
  total = args.epochs * steps_per_epoch
  tx = _make_tx(method, alpha, args.lr, args.sparsity, total, seed)
  params = _init(jax.random.key(seed))
  state = tx.init(params)
  if method in ("random_erk", "rigl"):
    params = sp.apply_masks(params, state)
  init_params = params
  rng = np.random.default_rng(seed)
  order = np.concatenate([rng.permutation(len(xtr))[: steps_per_epoch * BATCH] for _ in range(args.epochs)])
  xb = jnp.asarray(xtr[order].reshape(total, BATCH, -1))
  yb = jnp.asarray(ytr[order].reshape(total, BATCH))

  @jax.jit
  def train(params, state):
    def body(carry, batch):
      p, s = carry
      g = jax.grad(_loss)(p, *batch)
      u, s = tx.update(g, s, p)
      return (optax.apply_updates(p, u), s), None

    return jax.lax.scan(body, (params, state), (xb, yb))[0]

  params, state = train(params, state)
  return {
    "val": _accuracy(params, xva, yva),
    "test": _accuracy(params, xte, yte),
    "sparsity": float(metrics.sparsity(params)["global"]),
    "sign_flips": float(metrics.sign_flips(params, init_params)["fraction"]),
  }


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--sparsity", type=float, default=0.9)
  parser.add_argument("--seeds", type=int, default=5)
  parser.add_argument("--epochs", type=int, default=30)
  parser.add_argument("--lr", type=float, default=0.05)
  parser.add_argument("--alphas", type=float, nargs="+", default=[1.0, 5.0, 20.0])
  parser.add_argument("--methods", nargs="+", default=["dense", "random_erk", "gmp", "acdc", "rigl"])
  parser.add_argument("--json", default=None, help="optional path for the raw results")
  args = parser.parse_args(argv)
  data = _data()
  start = time.time()
  raw = {}
  rows = []
  for method in args.methods:
    res = {}
    for alpha in [None, *args.alphas]:
      res[alpha] = [run_one(method, alpha, seed, args, data) for seed in range(args.seeds)]
    raw[method] = {str(a): r for a, r in res.items()}
    best = max(args.alphas, key=lambda a: np.mean([r["val"] for r in res[a]]))

    def fmt(rs, key):
      v = 100 * np.array([r[key] for r in rs])
      return f"{v.mean():.2f} ± {v.std():.2f}"

    rows.append(
      f"| {method} | {fmt(res[None], 'test')} | {fmt(res[best], 'test')} | {best:g} "
      f"| {fmt(res[None], 'val')} | {fmt(res[best], 'val')} | {np.mean([r['sparsity'] for r in res[best]]):.3f} "
      f"| {fmt(res[None], 'sign_flips')} | {fmt(res[best], 'sign_flips')} |"
    )
    print(rows[-1], flush=True)
  print(
    f"\ndigits MLP 64-256-256-10, sparsity {args.sparsity}, {args.seeds} seeds, {args.epochs} epochs, lr {args.lr}"
  )
  print(
    "| sparsifier | SGD test % | +HAM test % | alpha (val) | SGD val % | +HAM val % | final sparsity "
    "| SGD sign flips % | +HAM sign flips % |"
  )
  print("|---|---|---|---|---|---|---|---|---|")
  print("\n".join(rows))
  print(f"\nwall time {time.time() - start:.0f} s")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(raw, f, indent=1)


if __name__ == "__main__":
  main()
