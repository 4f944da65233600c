"""NanoAdam vs Adam fine-tuning on a shifted MNIST-1D: new-task accuracy and forgetting of the old task.

Setup: an MLP 40-256-256-10 is pre-trained with Adam on standard MNIST-1D (5000 samples, 40 epochs), then
fine-tuned on a small, noisier, more sheared version (1600 fit + 400 validation samples; 500 test) for
``--epochs`` epochs (batch 32). Reported: new-task and old-task (forgetting) test accuracy.

Methods, each tuned over the same 5 learning rates on the new task's validation split (tuning seed), then run on
``--seeds``: ``Adam``; ``NanoAdam`` (``ham_optax.nanoadam(lr, 0.1, steps_per_epoch, total_steps=T)``, the defaults
of "Pay Attention to Small Weights", NeurIPS 2025); ``NanoAdam all kernels, 10 %`` (``mask=ham_optax.default_mask``,
constant density). Results: per seed, mean ± std, paired t-tests against Adam, optimizer-state bytes.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import ham_optax
from ham_optax.overparam import state_nbytes

import _common

SHIFT = dict(corr_noise_scale=0.4, iid_noise_scale=0.05, shear_scale=1.0)
TUNE_SEED = _common.SMALL_TUNING_SEED0
BATCH = 32
FIT = 1600  # the new task's first FIT training samples are fitted, the other 400 validate


def make_data(seed: int, n: int, **over: float) -> tuple[np.ndarray, ...]:
  from mnist1d.data import get_dataset_args, make_dataset

  a = get_dataset_args()
  for k, v in {"num_samples": n, "seed": seed, **over}.items():
    setattr(a, k, v)
  d = make_dataset(a)
  return tuple(d[k].astype(np.float32 if k[0] == "x" else np.int32) for k in ("x", "y", "x_test", "y_test"))


def apply(ps: dict[str, jax.Array], x: jax.Array) -> jax.Array:
  n = len(ps) // 2
  for i in range(n):
    x = x @ ps[f"w{i}"] + ps[f"b{i}"]
    if i < n - 1:
      x = jax.nn.relu(x)
  return x


def loss(ps: dict[str, jax.Array], x: jax.Array, y: jax.Array) -> jax.Array:
  return optax.softmax_cross_entropy_with_integer_labels(apply(ps, x), y).mean()


@jax.jit
def accuracy(ps: dict[str, jax.Array], x: jax.Array, y: jax.Array) -> jax.Array:
  return jnp.mean(jnp.argmax(apply(ps, x), -1) == y)


def train(ps, tx, x, y, epochs: int, bs: int, seed: int):
  st = tx.init(ps)
  full_step = _common.train_step(loss, tx)
  step = jax.jit(lambda *a: full_step(*a)[:2])  # params and state (the loss and gradients are not kept)
  rng = np.random.default_rng(seed)
  for _ in range(epochs):
    perm = rng.permutation(len(x))
    for i in range(0, len(x) - bs + 1, bs):
      j = perm[i : i + bs]
      ps, st = step(ps, st, x[j], y[j])
  return ps


class Task(NamedTuple):
  """The two tasks (``(x, y, x_test, y_test)`` each) and the model pre-trained on the old task."""

  old: tuple[np.ndarray, ...]
  new: tuple[np.ndarray, ...]
  pretrained: dict[str, jax.Array]

  @classmethod
  def create(cls, pretrain_epochs: int) -> Task:
    """The tasks, and the MLP pre-trained with Adam (lr 1e-3, batch 128, seed 0) for ``pretrain_epochs``."""
    old = make_data(42, 5000)
    new = make_data(7, 2500, **SHIFT)  # 2000 train (1600 fit + 400 validation) / 500 test
    key, init, sizes = jax.random.PRNGKey(0), {}, (40, 256, 256, 10)  # the MLP, He-initialised
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
      key, k = jax.random.split(key)
      init |= {f"w{i}": jax.random.normal(k, (a, b)) * np.sqrt(2.0 / a), f"b{i}": jnp.zeros((b,))}
    pre = train(init, optax.adam(1e-3), old[0], old[1], pretrain_epochs, 128, 0)
    return cls(old, new, pre)

  def finetune(self, tx: optax.GradientTransformation, epochs: int, seed: int) -> dict[str, Any]:
    """Fine-tunes the pre-trained model with ``tx`` on the fit split; validation and both test accuracies."""
    x, y = self.new[:2]
    ps = train(self.pretrained, tx, x[:FIT], y[:FIT], epochs, BATCH, seed)
    finite = all(bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(ps))
    return {
      "diverged": not finite,
      "val": float(accuracy(ps, x[FIT:], y[FIT:])),
      "new_test": float(accuracy(ps, self.new[2], self.new[3])),
      "old_test": float(accuracy(ps, self.old[2], self.old[3])),
    }


LR_GRID = (3e-5, 1e-4, 3e-4, 1e-3, 3e-3)  # the same 5 values for every method


def methods(steps_per_epoch: int, total: int) -> dict[str, Callable[[float], optax.GradientTransformation]]:
  """name -> (learning rate -> optimizer)."""
  return {
    "Adam": optax.adam,
    "NanoAdam": lambda lr: ham_optax.nanoadam(lr, 0.1, steps_per_epoch, total_steps=total),
    "NanoAdam all kernels, 10 %": lambda lr: ham_optax.nanoadam(
      lr, 0.1, steps_per_epoch, mask=ham_optax.default_mask
    ),
  }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  p = _common.parser(__doc__, "nanoadam_finetune", epochs=20, pretrain_epochs=40)  # --epochs: of fine-tuning
  _common.add_options(p, kind=_common.nonnegative_int, seeds=[0, 1, 2])
  p.add_fast("smoke run: 2 epochs, 1 seed, 2 learning rates", seeds=[0], epochs=2, pretrain_epochs=2)
  return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
  args = parse_args(argv)
  t0 = time.perf_counter()
  task = Task.create(args.pretrain_epochs)
  pre, old, new = task.pretrained, task.old, task.new
  before = {key: float(accuracy(pre, d[2], d[3])) for key, d in (("old_test", old), ("new_test", new))}
  print(f"pre-trained: old task {100 * before['old_test']:.1f} %, new task {100 * before['new_test']:.1f} %")
  steps_per_epoch = FIT // BATCH
  table = methods(steps_per_epoch, steps_per_epoch * args.epochs)
  tuning, best = {}, {}
  for name, make in table.items():
    grid = LR_GRID[1:3] if args.fast else LR_GRID
    tuning[name] = [{"lr": lr, **task.finetune(make(lr), args.epochs, TUNE_SEED)} for lr in grid]
    ok = [r for r in tuning[name] if not r["diverged"]]
    if not ok:
      raise SystemExit(f"{name}: every learning rate of the grid diverged on the tuning seed")
    best[name] = max(ok, key=lambda r: r["val"])["lr"]
    print(f"tuned {name}: " + ", ".join(f"lr={r['lr']:g} val={100 * r['val']:.1f}" for r in tuning[name]))
  final = {
    n: [{"seed": s, **task.finetune(table[n](best[n]), args.epochs, s)} for s in args.seeds] for n in table
  }
  keys, summary, tests, rows = ("new_test", "old_test"), {}, {}, []
  for name, runs in final.items():
    ok = [r for r in runs if not r["diverged"]]
    sm = summary[name] = {"lr": best[name], "diverged": len(runs) - len(ok)}
    sm |= {key: _common.mean_std([r[key] for r in ok]) for key in keys}
    sm["state_bytes"] = state_nbytes(table[name](best[name]), pre)
    if name != "Adam" and len(args.seeds) > 1:
      adam = final["Adam"]
      tests[name] = {key: _common.paired_p([r[key] for r in adam], [r[key] for r in runs]) for key in keys}
    cells = [f"{100 * sm[k]['mean']:.1f} ± {100 * sm[k]['std']:.1f}" for k in keys]
    cells += [f"{tests.get(name, {}).get(k, np.nan):.2f}" for k in keys]
    rows.append([name, f"{sm['lr']:g}", *cells, f"{sm['state_bytes'] / 1024:.1f}", sm["diverged"]])
  config = dict(seeds=args.seeds, tune_seed=TUNE_SEED, epochs=args.epochs)
  config.update(pretrain_epochs=args.pretrain_epochs, batch=BATCH, lr_grid=LR_GRID)
  config.update(steps_per_epoch=steps_per_epoch, shift=SHIFT, jax=jax.__version__, optax=optax.__version__)
  results = {"config": config, "pretrained": before, "tuning": tuning, "final": final, "summary": summary}
  results.update(paired_t_test_vs_adam=tests, seconds=time.perf_counter() - t0)
  head = ["method", "lr", "new task (%)", "old task (%)", "p new", "p old", "state (KiB)", "diverged"]
  print(_common.markdown_table(head, rows))
  _common.save_json(args.out / "results.json", results, cmd=_common.command(argv, __file__))
  fig, ax = _common.pyplot().subplots(figsize=(6.4, 3.2))
  for j, (key, label) in enumerate(zip(keys, ("new task", "old task"), strict=True)):
    means, stds = ([100 * r[key][k] for r in summary.values()] for k in ("mean", "std"))
    ax.bar(np.arange(len(summary)) + (j - 0.5) * 0.38, means, 0.36, yerr=stds, capsize=3, label=label)
  ax.set_xticks(np.arange(len(summary)), list(summary), fontsize=7)
  ax.set(ylabel="test accuracy (%)", ylim=(0, 100))
  ax.legend(fontsize=7)
  ax.set_title(f"Fine-tuning on shifted MNIST-1D, mean ± std over {len(args.seeds)} seeds", fontsize=8)
  figure = _common.save_figure(fig, args.out / "accuracy.png", dpi=120)
  print(f"saved {args.out / 'results.json'} and {figure}; {results['seconds']:.0f} s")
  return results


if __name__ == "__main__":
  main()
