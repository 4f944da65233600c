"""Steepest mirror flows on deep diagonal linear networks: saddle escape and the balance weight decay enforces.

Two claims of Jacobs, Zhou & Burkholz, "Never Saddle for Reparameterized Steepest Descent as Mirror Flow"
(ICLR 2026), on sparse regression through ``x = u^L - v^L`` (:func:`ham_optax.overparam.deep_diagonal`) from
``u = v = s`` (a saddle): the escape step (loss <= 0.5 x initial; ``-1`` stalled, ``-2`` diverged) of GD, sign
descent, Adam, AdamW and HAM over depths and learning rates, and Adam + L2 against AdamW at matched ``lr * wd``
(balance ``sum min(u, v)^L``, off-support mass, recovery error, late-loss std). Setup and readings:
docs/guides/mirror_flows_and_graphons.md.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import ham_optax
from ham_optax.metrics import escape_step
from ham_optax.overparam import deep_diagonal

import _common

OPTIMIZERS = ("GD", "sign", "Adam", "AdamW", "HAM")
DEPTHS, FAST_DEPTHS = (2, 3, 4), (2, 3)


def make_problem(seed: int, n: int = 50, d: int = 100, k: int = 5):
  """Sparse regression instance: (A, y, x*)."""
  rng = np.random.default_rng(seed)
  a = rng.standard_normal((n, d)).astype(np.float32)
  x_star = np.zeros(d, np.float32)
  support = rng.choice(d, k, replace=False)
  x_star[support] = rng.choice([-1.0, 1.0], k)
  return jnp.asarray(a), jnp.asarray(a @ x_star), jnp.asarray(x_star)


def make_inner(name: str, lr, wd: float = 1e-2) -> optax.GradientTransformation:
  """The optimizer run on the factors (lr may be traced: the grid is vmapped)."""
  return {
    "GD": lambda: optax.sgd(lr),
    "sign": lambda: optax.sign_sgd(lr),
    "Adam": lambda: optax.adam(lr),
    "AdamW": lambda: optax.adamw(lr, weight_decay=wd),
    "HAM": lambda: ham_optax.ham(optax.sgd(lr), lr, alpha=10.0, beta=0.0, mask=_common.all_true),
    "Adam+L2": lambda: optax.chain(optax.add_decayed_weights(wd), optax.adam(lr)),
  }[name]()


def train(inner, depth: int, init_scale: float, a, y, steps: int, x_star=None):
  """Runs ``steps`` steps; returns the loss curve (steps + 1,) and per-step diagnostics."""
  tx = deep_diagonal(inner, depth=depth, init_scale=init_scale)

  def loss_fn(x):
    return 0.5 * jnp.mean((a @ x - y) ** 2)

  train_step = _common.train_step(loss_fn, tx)
  x0 = jnp.zeros(a.shape[1])
  off = jnp.zeros_like(x0) if x_star is None else (x_star == 0)

  def step(carry, _):
    x, state, loss, _ = train_step(*carry)
    bal = jnp.sum(jnp.minimum(jnp.abs(state.u), jnp.abs(state.v)) ** depth)
    diag = {"loss": loss, "balance": bal, "off_support": jnp.sum(jnp.abs(x) * off)}
    return (x, state), diag

  (x, _), diag = jax.lax.scan(step, (x0, tx.init(x0)), None, length=steps)
  return jnp.concatenate([diag["loss"], loss_fn(x)[None]]), diag, x


def escape_grid(lrs, depths, seeds, steps, init_scale, optimizers=OPTIMIZERS):
  """Escape step per optimizer x depth x seed x lr, plus divergence flags and loss curves."""
  out = {}
  for name in optimizers:
    for depth in depths:
      per_seed, curves = [], []
      for seed in seeds:
        a, y, _ = make_problem(seed)

        @jax.jit
        @jax.vmap
        def run(lr, a=a, y=y, depth=depth, name=name):
          return train(make_inner(name, lr), depth, init_scale, a, y, steps)[0]  # the loss curve

        losses = np.asarray(run(jnp.asarray(lrs, jnp.float32)))
        diverged = np.nan_to_num(losses, nan=np.inf).max(-1) > 1e3 * losses[:, 0]  # NaN or grown 1000-fold
        esc = np.where(diverged, -2, np.asarray(escape_step(jnp.asarray(losses))))  # -2 diverged, -1 stalled
        per_seed.append(esc.tolist())
        curves.append(losses[:, :: max(1, steps // 200)])
      out[(name, depth)] = {"escape": per_seed, "curves": np.mean(curves, 0)}
  return out


def decay_study(wds, lr, steps, seeds, init_scale, depth=2):
  """Adam + L2 vs AdamW at matched per-step decay strength."""
  rows = []
  for wd in wds:
    for name in ("Adam+L2", "AdamW"):
      stats = []
      for seed in seeds:
        a, y, x_star = make_problem(seed)
        inner = make_inner(name, lr, wd if name == "Adam+L2" else wd / lr)
        losses, diag, x = jax.jit(
          lambda inner=inner, a=a, y=y, xs=x_star: train(inner, depth, init_scale, a, y, steps, xs)
        )()
        late = np.asarray(losses[-steps // 4 :])
        rel_error = float(jnp.linalg.norm(x - x_star) / jnp.linalg.norm(x_star))
        r = dict(final_loss=float(losses[-1]), late_loss_std=float(np.std(late)), rel_error=rel_error)
        r.update(balance_final=float(diag["balance"][-1]), off_support_final=float(diag["off_support"][-1]))
        r["n_support_1e-2"] = int(jnp.sum(jnp.abs(x) > 1e-2))
        every = max(1, steps // 200)
        curves = {"balance_curve": diag["balance"][::every], "loss_curve": losses[::every]}
        stats.append(r | {k: np.asarray(v).tolist() for k, v in curves.items()})
      rows.append({"method": name, "wd": wd, "seeds": stats})
  return rows


def _fmt_escape(col: np.ndarray) -> str:
  """A table cell from the escape steps of the seeds at one learning rate."""
  diverged, stalled = int((col == -2).sum()), int((col == -1).sum())
  if diverged:
    return f"div{diverged}"
  if stalled:
    return f"st{stalled}" if stalled == col.size else f"~{int(np.median(col[col >= 0]))}"
  return str(int(np.median(col)))


def plots(lrs, depths, grid, steps, decay, decay_steps, out_dir):
  """Per depth: the median escape step against the learning rate, and the loss curves at the middle one; per
  weight decay of the decay study (``decay_steps`` long): its balance and loss curves."""
  plt, mid = _common.pyplot(), len(lrs) // 2
  kw = dict(figsize=(4.2 * len(depths), 3.4), sharey=True, squeeze=False)
  (fig_e, ax_e), (fig_l, ax_l) = (plt.subplots(1, len(depths), **kw) for _ in "el")
  for j, depth in enumerate(depths):
    for name in OPTIMIZERS:
      esc = np.asarray(grid[(name, depth)]["escape"], float)
      esc[esc < 0] = np.nan  # stalled or diverged: not drawn
      ax_e[0, j].loglog(lrs, np.median(esc, axis=0), "o-", label=name, ms=3)
      c = grid[(name, depth)]["curves"][mid]
      ax_l[0, j].semilogy(np.linspace(0, steps, len(c)), c, label=name)
    ax_e[0, j].set(title=f"depth L = {depth}", xlabel="learning rate")
    ax_e[0, j].axhline(steps, color="gray", ls=":", lw=1)
    ax_l[0, j].set(title=f"L = {depth}, lr = {lrs[mid]:.2g}", xlabel="step")
  ax_e[0, 0].set_ylabel("escape step (median over seeds)")
  ax_l[0, 0].set_ylabel("loss (mean over seeds)")
  fig_e.suptitle(
    "Saddle escape from u = v = s (missing points: stalled within budget or diverged)", fontsize=9
  )
  for fig, axes, name in ((fig_e, ax_e, "escape_vs_lr"), (fig_l, ax_l, "loss_curves")):
    axes[0, 0].legend(fontsize=7)
    _common.save_figure(fig, out_dir / f"{name}.png")
  wds = sorted({r["wd"] for r in decay})
  fig, axes = plt.subplots(2, len(wds), figsize=(3.8 * len(wds), 5.6), squeeze=False)
  for j, wd in enumerate(wds):
    for r in (r for r in decay if r["wd"] == wd):
      for ax, key in zip(axes[:, j], ("balance_curve", "loss_curve"), strict=True):
        c = np.mean([s[key] for s in r["seeds"]], 0)
        ax.semilogy(np.linspace(0, decay_steps, len(c)), c, label=r["method"])
    axes[0, j].set_title(f"wd = {wd:g}")
    axes[1, j].set_xlabel("step")
  axes[0, 0].set_ylabel("balance sum min(u,v)^2")
  axes[1, 0].set_ylabel("loss")
  axes[0, 0].legend(fontsize=7)
  _common.save_figure(fig, out_dir / "balance.png")


def parse_args(argv=None) -> argparse.Namespace:
  p = _common.parser(__doc__, "mirror_flows", steps=2000, seeds=3, init_scale=1e-2)
  p.add_fast("smoke run: 2 depths, 5 learning rates, 1 seed, 300 steps, 1 weight decay", steps=300, seeds=1)
  args = p.parse_args(argv)
  depth = max(FAST_DEPTHS if args.fast else DEPTHS)
  if args.init_scale**depth < np.finfo(np.float32).tiny:  # u = v = 0 would never move
    p.error(f"--init-scale {args.init_scale:g} underflows float32 at depth {depth}")
  return args


def main(argv=None) -> None:
  args = parse_args(argv)
  t0 = time.time()
  seeds, steps = list(range(args.seeds)), args.steps
  if args.fast:
    depths, lrs, wds, decay_steps = FAST_DEPTHS, np.logspace(-3, -1, 5), (1e-3,), steps
  else:
    depths, lrs, wds, decay_steps = DEPTHS, np.logspace(-4, 0, 13), (1e-4, 1e-3, 1e-2), 3 * steps
  grid = escape_grid(lrs, depths, seeds, steps, args.init_scale)
  decay = decay_study(wds, 1e-2, decay_steps, seeds, args.init_scale)
  args.out.mkdir(parents=True, exist_ok=True)
  print(
    f"Escape step (median over {len(seeds)} seeds; stN = stalled in N seeds, divN = diverged in N seeds, "
    f"~m = median of the seeds that escaped), budget {steps} steps"
  )
  rows = [[name, depth, *map(_fmt_escape, np.asarray(r["escape"]).T)] for (name, depth), r in grid.items()]
  print(_common.markdown_table(["optimizer", "L", *(f"{lr:.1e}" for lr in lrs)], rows))
  print("\nAdam + L2 vs AdamW (depth 2, lr 1e-2, matched lr * wd): mean over seeds")
  keys = ["final_loss", "late_loss_std", "rel_error", "balance_final", "off_support_final", "n_support_1e-2"]
  rows = [
    [r["method"], f"{r['wd']:.0e}", *(f"{np.mean([s[k] for s in r['seeds']]):.3g}" for k in keys)]
    for r in decay
  ]
  print(_common.markdown_table(["method", "wd", *keys], rows))
  plots(lrs, depths, grid, steps, decay, decay_steps, args.out)
  settings = dict(depths=list(depths), lrs=lrs.tolist(), seeds=seeds, steps=steps, init_scale=args.init_scale)
  settings.update(n=50, d=100, k=5, escape_fraction=0.5, decay_lr=1e-2, decay_steps=decay_steps)
  settings.update(ham_alpha=10.0, adamw_wd_escape=1e-2)
  escape = {f"{n}/L{d}": r["escape"] for (n, d), r in grid.items()}
  result = {"settings": settings, "escape": escape, "decay": decay, "seconds": time.time() - t0}
  _common.save_json(args.out / "results.json", result, cmd=_common.command(argv, __file__))
  print(f"\nwrote {args.out} in {time.time() - t0:.0f}s")


if __name__ == "__main__":
  main()
