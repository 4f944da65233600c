"""Graphon limits of pruning masks: do masks converge as the width grows, and do their graphons predict trainability?

A small study of the Graphon Limit Hypothesis (NeurIPS 2025, "Understanding Neural Network Pruning via Infinite
Width Analysis"; only the abstract was available, every concrete choice is ours): only the hidden ``n x n`` kernel
``W1`` of a ReLU MLP regressing a random teacher is pruned, to sparsity 0.9, by four sparsifiers with and without
HAM. Measured: the empirical graphons of the final masks and their distances between successive widths, and at
one width the smallest eigenvalue of the empirical NTK on the unpruned ``W1`` entries against the training speed.
Setup and readings: docs/guides/mirror_flows_and_graphons.md.
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
from ham_optax.metrics import empirical_graphon, escape_step, graphon_distance

import _common

METHODS = ("random", "magnitude", "acdc", "rigl")
SPARSITY = 0.9
LR = 0.05
HAM_ALPHA = 10.0  # the default alpha = 200 diverged (NaN) at lr 0.05 in this regression task at every width


def make_task(n_samples: int = 256, d_in: int = 16, seed: int = 0):
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
  x = jax.random.normal(k1, (n_samples, d_in))
  t1 = jax.random.normal(k2, (d_in, 32)) / np.sqrt(d_in)
  t2 = jax.random.normal(k3, (32, 1)) / np.sqrt(32)
  y = (jnp.tanh(x @ t1) @ t2)[:, 0]
  return x, (y - y.mean()) / y.std()


def forward(p, x):
  h = jax.nn.relu(x @ p["w0"] + p["b0"])
  z = jax.nn.relu(h @ p["w1"] + p["b1"])
  return (z @ p["w2"])[:, 0]


def make_tx(method: str, use_ham: bool, steps: int, seed: int, width: int):
  lr = LR * min(1.0, 256 / width)  # a constant rate made the dense phases of width 1024 unstable
  inner = optax.sgd(lr, momentum=0.9)
  inner = ham_optax.ham(inner, lr, alpha=HAM_ALPHA) if use_ham else inner
  fn, kwargs = {
    "random": (sp.random_pruning, dict(distribution="erk", seed=seed)),
    "magnitude": (sp.magnitude_pruning, dict(begin_step=steps // 10, end_step=int(0.6 * steps))),
    "acdc": (sp.acdc, dict(total_steps=steps)),
    "rigl": (sp.rigl, dict(update_every=max(1, steps // 15), end_step=int(0.75 * steps), seed=seed)),
  }[method]
  kwargs |= {"frequency": max(1, steps // 20)} if method == "magnitude" else {}
  return fn(inner, SPARSITY, prunable=lambda p: {k: k == "w1" for k in p}, **kwargs)


def train(method: str, use_ham: bool, width: int, steps: int, x, y, seed: int = 0):
  k0, k1, k2 = jax.random.split(jax.random.PRNGKey(seed + 1), 3)
  layers = [(k0, x.shape[1], width), (k1, width, width), (k2, width, 1)]
  params = {f"w{i}": jax.random.normal(k, (a, b)) / np.sqrt(a) for i, (k, a, b) in enumerate(layers)}
  params |= {"b0": jnp.zeros(width), "b1": jnp.zeros(width)}
  tx = make_tx(method, use_ham, steps, seed, width)
  state = tx.init(params)
  params = sp.apply_masks(params, state)

  def loss_fn(p):
    return 0.5 * jnp.mean((forward(p, x) - y) ** 2)

  train_step = _common.train_step(loss_fn, tx)

  @jax.jit
  def run(params, state):
    def step(carry, _):
      p, s, loss, _ = train_step(*carry)
      return (p, s), loss

    (p, s), losses = jax.lax.scan(step, (params, state), None, length=steps)
    return p, s, jnp.concatenate([losses, loss_fn(p)[None]])

  params, state, losses = run(params, state)
  return params, sp.get_masks(state)["w1"], np.asarray(losses)


def ntk_min_eig(params, mask, x) -> float | None:
  """Smallest eigenvalue of the NTK w.r.t. the unpruned entries of W1 (float64 eigen-solve)."""
  p = {k: np.asarray(v, np.float64) for k, v in params.items()}
  x = np.asarray(x, np.float64)
  h = np.maximum(x @ p["w0"] + p["b0"], 0.0)  # (N, n)
  s = (h @ p["w1"] + p["b1"] > 0).astype(np.float64)  # (N, n) relu'
  q = s * p["w2"][:, 0]  # d f / d z_j
  # J[x, i, j] = h[x, i] * q[x, j] * mask[i, j];  K = J J^T
  j = (h[:, :, None] * q[:, None, :] * np.asarray(mask, np.float64)[None]).reshape(x.shape[0], -1)
  k = j @ j.T
  return float(np.linalg.eigvalsh(k)[0]) if np.isfinite(k).all() else None


def parse_args(argv=None) -> argparse.Namespace:
  p = _common.parser(__doc__, "graphon", widths=[64, 256, 1024], ntk_width=256, resolution=16)
  _common.add_options(p, kind=_common.number(int, 2), steps=100)  # a pruning schedule ends after its start
  p.add_fast("smoke run: widths 64, 128; 60 steps", widths=[64, 128], steps=60, ntk_width=64)
  args = p.parse_args(argv)
  if min(args.widths) < args.resolution:
    p.error(f"--resolution {args.resolution} exceeds the smallest of --widths ({min(args.widths)})")
  if args.ntk_width not in args.widths:
    p.error(f"--ntk-width {args.ntk_width} must be one of --widths {args.widths}")
  return args


def main(argv=None) -> None:
  args = parse_args(argv)
  widths, steps, ntk_width = sorted(args.widths), args.steps, args.ntk_width
  t0, (x, y), rows = time.time(), make_task(), []
  pairs = [f"{a}->{b}" for a, b in zip(widths, widths[1:], strict=False)]
  for method in METHODS:
    for use_ham in (False, True):
      name = method + ("+HAM" if use_ham else "")
      graphons, info = {}, {"method": name}
      for width in widths:
        t1 = time.time()
        params, mask, losses = train(method, use_ham, width, steps, x, y)
        graphons[width] = np.asarray(empirical_graphon(mask, args.resolution))
        if width == ntk_width:
          info["ntk_min_eig"] = ntk_min_eig(params, mask, x[:64])
          info["final_loss"] = float(losses[-1]) if np.isfinite(losses[-1]) else None
          info["half_step"] = int(escape_step(jnp.asarray(losses), 0.5))
          info["diverged"] = bool(not np.isfinite(losses).all())
        info.setdefault("density", {})[width] = float(np.mean(np.asarray(mask)))
        info.setdefault("final_loss_by_width", {})[width] = float(losses[-1])
        print(f"{name:14s} width {width:5d}: loss {losses[-1]:.4f}  ({time.time() - t1:.1f}s)", flush=True)
      info["graphons"] = {w: g.tolist() for w, g in graphons.items()}
      successive = zip(pairs, widths, widths[1:], strict=False)
      info["distances"] = {c: float(graphon_distance(graphons[a], graphons[b])) for c, a, b in successive}
      info["flat_deviation"] = {w: float(np.abs(g - g.mean()).mean()) for w, g in graphons.items()}
      rows.append(info)
  print(f"\nGraphon distance between successive widths (resolution {args.resolution}, sparsity {SPARSITY})")
  table = [
    [r["method"], *(f"{r['distances'][c]:.4f}" for c in pairs), f"{r.get('ntk_min_eig') or np.nan:.2e}"]
    + [f"{r.get('final_loss') or np.nan:.4f}", r.get("half_step")]
    for r in rows
  ]
  print(_common.markdown_table(["method", *pairs, "NTK lmin", "loss(T)", "half-step"], table))
  args.out.mkdir(parents=True, exist_ok=True)
  plots(rows, widths, pairs, ntk_width, args.out)
  settings = dict(widths=widths, steps=steps, ntk_width=ntk_width, resolution=args.resolution)
  settings.update(sparsity=SPARSITY, lr=LR, ham_alpha=HAM_ALPHA, n_samples=256, d_in=16, seed=0)
  result = {"settings": settings, "rows": rows, "seconds": time.time() - t0}
  _common.save_json(args.out / "results.json", result, cmd=_common.command(argv, __file__))
  print(f"\nwrote {args.out} in {time.time() - t0:.0f}s")


def plots(rows, widths, pairs, ntk_width, out_dir):
  """The graphons (method x width), the distances between successive widths, NTK eigenvalue vs loss."""
  plt = _common.pyplot()
  size = (1.6 * len(widths), 1.6 * len(rows))
  fig, axes = plt.subplots(len(rows), len(widths), figsize=size, squeeze=False)
  for i, r in enumerate(rows):
    for j, w in enumerate(widths):
      axes[i, j].imshow(np.asarray(r["graphons"][w]), vmin=0, vmax=0.5, cmap="viridis")
      axes[i, j].set(xticks=[], yticks=[])
    axes[i, 0].set_ylabel(r["method"], fontsize=7)
  for j, w in enumerate(widths):
    axes[0, j].set_title(f"n = {w}", fontsize=8)
  fig.suptitle("Empirical graphons of the W1 mask (degree-sorted, color 0..0.5)", fontsize=9)
  _common.save_figure(fig, out_dir / "graphons.png")
  fig, ax = plt.subplots(figsize=(5, 3.4))
  for r in rows:
    style = "o-" if "HAM" in r["method"] else "s--"
    ax.semilogy(range(len(pairs)), [r["distances"][c] for c in pairs], style, label=r["method"], ms=3)
  ax.set_xticks(range(len(pairs)), pairs, fontsize=7)
  ax.set_ylabel("mean |W_n - W_2n|")
  ax.legend(fontsize=6, ncol=2)
  _common.save_figure(fig, out_dir / "distances.png")
  fig, ax = plt.subplots(figsize=(4.6, 3.4))
  for r in rows:
    if r.get("final_loss") is not None and r.get("ntk_min_eig") is not None:
      ax.loglog(r["ntk_min_eig"], r["final_loss"], "o" if "HAM" in r["method"] else "s")
      ax.annotate(r["method"], (r["ntk_min_eig"], r["final_loss"]), fontsize=6)
  ax.set_xlabel(f"NTK smallest eigenvalue (W1 entries, n = {ntk_width})")
  ax.set_ylabel(f"training loss after T steps (n = {ntk_width})")
  _common.save_figure(fig, out_dir / "ntk_vs_speed.png")


if __name__ == "__main__":
  main()
