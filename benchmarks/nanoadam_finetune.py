"""NanoAdam vs Adam fine-tuning on a shifted MNIST-1D (pretrain on the standard data, fine-tune on a
small, noisier, more sheared version). Reports new-task and old-task (forgetting) test accuracy.

Usage: python benchmarks/nanoadam_finetune.py tune
       python benchmarks/nanoadam_finetune.py final 1e-4 1e-3 0.1   # LR_ADAM LR_NANO FRACTION (seeds 0-2)
"""

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from mnist1d.data import get_dataset_args, make_dataset

from ham_optax import nanoadam


def data(seed, n, **over):
  a = get_dataset_args()
  a.num_samples = n
  a.seed = seed
  for k, v in over.items():
    setattr(a, k, v)
  d = make_dataset(a)
  return (
    d["x"].astype(np.float32),
    d["y"].astype(np.int32),
    d["x_test"].astype(np.float32),
    d["y_test"].astype(np.int32),
  )


def init_mlp(key, sizes=(40, 256, 256, 10)):
  ps = {}
  for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
    key, k = jax.random.split(key)
    ps[f"w{i}"] = jax.random.normal(k, (a, b)) * np.sqrt(2.0 / a)
    ps[f"b{i}"] = jnp.zeros((b,))
  return ps


def apply(ps, x):
  n = len(ps) // 2
  for i in range(n):
    x = x @ ps[f"w{i}"] + ps[f"b{i}"]
    if i < n - 1:
      x = jax.nn.relu(x)
  return x


def loss(ps, x, y):
  return optax.softmax_cross_entropy_with_integer_labels(apply(ps, x), y).mean()


acc = jax.jit(lambda ps, x, y: jnp.mean(jnp.argmax(apply(ps, x), -1) == y))


def train(ps, tx, x, y, epochs, bs, seed):
  st = tx.init(ps)

  @jax.jit
  def step(ps, st, xb, yb):
    g = jax.grad(loss)(ps, xb, yb)
    u, st = tx.update(g, st, ps)
    return optax.apply_updates(ps, u), st

  rng = np.random.default_rng(seed)
  for _ in range(epochs):
    perm = rng.permutation(len(x))
    for i in range(0, len(x) - bs + 1, bs):
      j = perm[i : i + bs]
      ps, st = step(ps, st, x[j], y[j])
  return ps


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("mode", choices=["tune", "final"])
  parser.add_argument("lrs", nargs="*", type=float, help="final: LR_ADAM LR_NANO FRACTION")
  args = parser.parse_args(argv)
  mode = args.mode
  old = data(42, 5000)
  shift = dict(corr_noise_scale=0.4, iid_noise_scale=0.05, shear_scale=1.0)
  new = data(7, 2500, **shift)  # 2000 train (1600 fit + 400 val) / 500 test
  newx, newy = new[0][:1600], new[1][:1600]
  valx, valy = new[0][1600:], new[1][1600:]
  t0 = time.time()
  pre = train(init_mlp(jax.random.PRNGKey(0)), optax.adam(1e-3), old[0], old[1], 40, 128, 0)
  print(
    json.dumps(
      dict(
        pretrained_old_test=float(acc(pre, old[2], old[3])),
        new_test_before=float(acc(pre, new[2], new[3])),
        s=time.time() - t0,
      )
    ),
    flush=True,
  )

  def ft(tx, seed, epochs=20):
    ps = train(pre, tx, newx, newy, epochs, 32, seed)
    return dict(
      val=float(acc(ps, valx, valy)),
      new_test=float(acc(ps, new[2], new[3])),
      old_test=float(acc(ps, old[2], old[3])),
    )

  steps_per_epoch = 1600 // 32
  if mode == "tune":
    for lr in (1e-4, 3e-4, 1e-3, 3e-3):
      print(json.dumps(dict(m="adam", lr=lr, **ft(optax.adam(lr), 100))), flush=True)
    for f in (0.1,):
      for lr in (3e-4, 1e-3, 3e-3, 1e-2):
        print(
          json.dumps(dict(m="nanoadam", f=f, lr=lr, **ft(nanoadam(lr, f, steps_per_epoch), 100))), flush=True
        )
  else:
    la, ln, f = args.lrs
    for seed in (0, 1, 2):
      print(json.dumps(dict(m="adam", lr=la, seed=seed, **ft(optax.adam(la), seed))), flush=True)
      print(
        json.dumps(dict(m="nanoadam", f=f, lr=ln, seed=seed, **ft(nanoadam(ln, f, steps_per_epoch), seed))),
        flush=True,
      )


if __name__ == "__main__":
  main()
