"""Graphon limits of pruning masks: do masks converge as the width grows, and do their graphons predict trainability?

A small study of the Graphon Limit Hypothesis (NeurIPS 2025, "Understanding Neural Network Pruning via Infinite
Width Analysis"). Only the abstract was available; every concrete choice below is ours.

Task: regression on ``N = 256`` inputs ``x ~ N(0, I_16)`` with targets from a random teacher MLP ``16 -> 32 -> 1``
(tanh), targets standardised. Student: ``x -> relu(x W0 + b0) -> relu(. W1 + b1) -> . W2`` with hidden width ``n``;
only the square hidden-to-hidden kernel ``W1`` (``n x n``) is pruned, to sparsity 0.9 (so its mask is a bipartite
graph whose both sides grow with ``n``; the input and output layers stay dense). Standard initialisation
(N(0, 1/fan_in)), full-batch training, ``T`` steps, inner optimizer ``optax.sgd(lr, momentum=0.9)`` with
``lr = 0.05 * min(1, 256 / n)`` (a constant 0.05 made the dense phases at n = 1024 diverge); "+HAM"
wraps it as ``ham_optax.ham(inner, lr, alpha=10)`` (beta default) on the kernels (the default alpha = 200 gave NaN losses at every width here).

Methods (``ham_optax.sparsity``, prunable = ``W1`` only, so ERK and uniform densities coincide): ``random``
(``random_pruning``, ERK), ``magnitude`` (``magnitude_pruning``, cubic schedule over steps [0.1 T, 0.6 T]),
``acdc`` (``acdc``, total T) and ``rigl`` (``rigl``, update every T/15 until 0.75 T), each with and without HAM.

Measurements: the final mask's empirical graphon (:func:`ham_optax.metrics.empirical_graphon`, resolution 16),
the distance between the graphons of successive widths (:func:`ham_optax.metrics.graphon_distance`, mean absolute
difference; the hypothesis predicts it shrinks), and as the trainability indicator at one width the smallest
eigenvalue of the empirical NTK of the trained network restricted to the unpruned entries of ``W1`` (on 64 training
inputs) against the training speed (final training loss and the step at which the loss first halves).

Outputs (``benchmarks/results/graphon/``): ``results.json`` (with the command), ``graphons.png``,
``distances.png``, ``ntk_vs_speed.png``. ``python benchmarks/graphon.py`` (widths 64..1024) or ``--fast``.
"""

from __future__ import annotations

import argparse
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import ham_optax
from ham_optax import sparsity as sp
from ham_optax.metrics import empirical_graphon, escape_step, graphon_distance

import _common

RESULTS_DIR = pathlib.Path(__file__).resolve().parent / "results" / "graphon"
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


def init_params(width: int, d_in: int, seed: int):
  k0, k1, k2 = jax.random.split(jax.random.PRNGKey(seed + 1), 3)
  return {
    "w0": jax.random.normal(k0, (d_in, width)) / np.sqrt(d_in),
    "b0": jnp.zeros(width),
    "w1": jax.random.normal(k1, (width, width)) / np.sqrt(width),
    "b1": jnp.zeros(width),
    "w2": jax.random.normal(k2, (width, 1)) / np.sqrt(width),
  }


def forward(p, x):
  h = jax.nn.relu(x @ p["w0"] + p["b0"])
  z = jax.nn.relu(h @ p["w1"] + p["b1"])
  return (z @ p["w2"])[:, 0]


def lr_for(width: int) -> float:
  """``LR * min(1, 256 / width)``: a constant rate made the dense phases of width 1024 unstable."""
  return LR * min(1.0, 256 / width)


def make_tx(method: str, use_ham: bool, steps: int, seed: int, width: int):
  lr = lr_for(width)
  inner = optax.sgd(lr, momentum=0.9)
  if use_ham:
    inner = ham_optax.ham(inner, lr, alpha=HAM_ALPHA)
  prunable = {"w0": False, "b0": False, "w1": True, "b1": False, "w2": False}
  if method == "random":
    return sp.random_pruning(inner, SPARSITY, distribution="erk", seed=seed, prunable=prunable)
  if method == "magnitude":
    return sp.magnitude_pruning(
      inner,
      SPARSITY,
      begin_step=steps // 10,
      end_step=int(0.6 * steps),
      frequency=max(1, steps // 20),
      prunable=prunable,
    )
  if method == "acdc":
    return sp.acdc(inner, SPARSITY, total_steps=steps, prunable=prunable)
  if method == "rigl":
    return sp.rigl(
      inner,
      SPARSITY,
      update_every=max(1, steps // 15),
      end_step=int(0.75 * steps),
      seed=seed,
      prunable=prunable,
    )
  raise ValueError(method)


def train(method: str, use_ham: bool, width: int, steps: int, x, y, seed: int = 0):
  params = init_params(width, x.shape[1], seed)
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


def ntk_min_eig(params, mask, x) -> float:
  """Smallest eigenvalue of the NTK w.r.t. the unpruned entries of W1 (float64 eigen-solve)."""
  p = {k: np.asarray(v, np.float64) for k, v in params.items()}
  x = np.asarray(x, np.float64)
  h = np.maximum(x @ p["w0"] + p["b0"], 0.0)  # (N, n)
  s = (h @ p["w1"] + p["b1"] > 0).astype(np.float64)  # (N, n) relu'
  q = s * p["w2"][:, 0]  # d f / d z_j
  # J[x, i, j] = h[x, i] * q[x, j] * mask[i, j];  K = J J^T
  j = (h[:, :, None] * q[:, None, :] * np.asarray(mask, np.float64)[None]).reshape(x.shape[0], -1)
  k = j @ j.T
  if not np.isfinite(k).all():
    return None
  return float(np.linalg.eigvalsh(k)[0])


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--fast", action="store_true", help="smoke run: widths 64, 128; 60 steps")
  p.add_argument("--widths", type=int, nargs="+", default=[64, 256, 1024])
  p.add_argument("--steps", type=int, default=100)
  p.add_argument("--ntk-width", type=int, default=256)
  p.add_argument("--resolution", type=int, default=16)
  p.add_argument("--out", type=pathlib.Path, default=RESULTS_DIR)
  args = p.parse_args(argv)
  widths, steps, ntk_width = (
    ([64, 128], 60, 64) if args.fast else (sorted(args.widths), args.steps, args.ntk_width)
  )
  t0 = time.time()
  x, y = make_task()
  rows = []
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
      info["distances"] = {
        f"{a}->{b}": float(graphon_distance(graphons[a], graphons[b]))
        for a, b in zip(widths, widths[1:], strict=False)
      }
      info["flat_deviation"] = {w: float(np.abs(g - g.mean()).mean()) for w, g in graphons.items()}
      rows.append(info)

  print(f"\nGraphon distance between successive widths (resolution {args.resolution}, sparsity {SPARSITY})")
  pairs = [f"{a}->{b}" for a, b in zip(widths, widths[1:], strict=False)]
  print("method          " + " ".join(f"{c:>10s}" for c in pairs) + "   NTK lmin   loss(T)  half-step")
  for r in rows:
    print(
      f"{r['method']:14s}  "
      + " ".join(f"{r['distances'][c]:10.4f}" for c in pairs)
      + f"   {r.get('ntk_min_eig') or float('nan'):.2e}  {r.get('final_loss') or float('nan'):.4f}  {r.get('half_step')}"
    )

  args.out.mkdir(parents=True, exist_ok=True)
  plots(rows, widths, pairs, ntk_width, args.out)
  result = {
    "settings": {
      "widths": widths,
      "steps": steps,
      "ntk_width": ntk_width,
      "resolution": args.resolution,
      "sparsity": SPARSITY,
      "lr": LR,
      "ham_alpha": HAM_ALPHA,
      "n_samples": 256,
      "d_in": 16,
      "seed": 0,
    },
    "rows": rows,
    "seconds": time.time() - t0,
  }
  _common.save_json(args.out / "results.json", result, cmd=_common.command(argv, __file__))
  print(f"\nwrote {args.out} in {time.time() - t0:.0f}s")


def plots(rows, widths, pairs, ntk_width, out_dir):
  plt = _common.pyplot()

  fig, axes = plt.subplots(
    len(rows), len(widths), figsize=(1.6 * len(widths), 1.6 * len(rows)), squeeze=False
  )
  for i, r in enumerate(rows):
    for j, w in enumerate(widths):
      ax = axes[i, j]
      ax.imshow(np.asarray(r["graphons"][w]), vmin=0, vmax=0.5, cmap="viridis")
      ax.set_xticks([])
      ax.set_yticks([])
      if i == 0:
        ax.set_title(f"n = {w}", fontsize=8)
      if j == 0:
        ax.set_ylabel(r["method"], fontsize=7)
  fig.suptitle("Empirical graphons of the W1 mask (degree-sorted, color 0..0.5)", fontsize=9)
  fig.tight_layout()
  fig.savefig(out_dir / "graphons.png", dpi=110)
  plt.close(fig)

  fig, ax = plt.subplots(figsize=(5, 3.4))
  for r in rows:
    ax.semilogy(
      range(len(pairs)),
      [r["distances"][c] for c in pairs],
      "o-" if "HAM" in r["method"] else "s--",
      label=r["method"],
      ms=3,
    )
  ax.set_xticks(range(len(pairs)), pairs, fontsize=7)
  ax.set_ylabel("mean |W_n - W_2n|")
  ax.legend(fontsize=6, ncol=2)
  fig.tight_layout()
  fig.savefig(out_dir / "distances.png", dpi=110)
  plt.close(fig)

  fig, ax = plt.subplots(figsize=(4.6, 3.4))
  for r in rows:
    if r.get("final_loss") is not None and r.get("ntk_min_eig") is not None:
      ax.loglog(r["ntk_min_eig"], r["final_loss"], "o" if "HAM" in r["method"] else "s")
      ax.annotate(r["method"], (r["ntk_min_eig"], r["final_loss"]), fontsize=6)
  ax.set_xlabel(f"NTK smallest eigenvalue (W1 entries, n = {ntk_width})")
  ax.set_ylabel(f"training loss after T steps (n = {ntk_width})")
  fig.tight_layout()
  fig.savefig(out_dir / "ntk_vs_speed.png", dpi=110)
  plt.close(fig)


if __name__ == "__main__":
  main()
