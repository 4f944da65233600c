"""Does an alpha transfer between models and optimizers? HAM's stable region on MNIST-1D, and suggest_alpha.

Families (``ham_optax_examples.models``): ``mlp``, ``mlp_ln`` (MLP with LayerNorm), ``cnn1d`` and ``resnet1d``
(1-D ResNet with BatchNorm, the paper's setting in miniature), each with SGD + momentum 0.9 and with AdamW
(weight decay 5e-4 in both, cosine learning-rate schedule, batch 128, beta = 0 so that alpha alone is studied).

Phase ``grid`` (validation, tuning seeds): every lr x alpha in ``--alphas`` (alpha = 0 is the inner optimizer
exactly), plus ``alpha_unit`` = ``suggest_alpha(..., target_ratio=1)`` per seed and lr, so every point has the
ratio ``rho = alpha / alpha_unit``. Phase ``final``: the baseline (best lr), HAM grid-best (best lr, alpha) and
HAM suggested (``suggest_alpha`` at the lr chosen on validation), retrained on ``--final-seeds`` and reported on
test. A run *diverged* when its final training loss is not finite or its validation accuracy is at most 20 %.
All runs of a family x optimizer train together in one XLA program.

Writes ``grid.json``, ``final*.json``, ``summary.md``, ``stability.png`` and ``command.txt`` under ``--out``.

  python benchmarks/alpha_transfer.py                    # both phases (see --help for the sizes)
  python benchmarks/alpha_transfer.py --fast             # smoke run, a minute
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from ham_optax_examples import data as data_lib
from ham_optax_examples import models

import ham_optax
from ham_optax import metrics

import _common

FAMILIES = ("mlp", "mlp_ln", "cnn1d", "resnet1d")
CONV_FAMILIES = ("cnn1d", "resnet1d")
OPTIMIZERS = ("sgd", "adamw")
WEIGHT_DECAY = 5e-4
CALIBRATION_STEPS = 20


def _parse(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--phase", default="all", choices=["grid", "final", "all", "report", "mainjob"])
  p.add_argument(
    "--mainjob",
    nargs="+",
    default=["mlp:none:0.4", "mlp:random:0.8", "resnet1d:none:0.4", "resnet1d:random:0.4"],
    help="phase mainjob: MODEL:SPARSIFIER:LR[:EPOCHS] settings of the default training job to check (validation seeds)",
  )
  _common.add_options(p, mainjob_epochs=30)
  p.add_argument("--mainjob-file", default="mainjob.json", help="phase mainjob writes here")
  p.add_argument("--mainjob-baseline", action="store_true", help="phase mainjob: also train the baselines")
  p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
  p.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS), choices=OPTIMIZERS)
  _common.add_options(p, epochs=6)
  p.add_argument(
    "--widths",
    type=int,
    nargs=4,
    default=[128, 128, 8, 8],
    help="width of mlp, mlp_ln (hidden units), cnn1d (channels), resnet1d (base channels)",
  )
  _common.add_options(p, batch_size=128, grid_seeds=3, final_seeds=5, sgd_lrs=[0.1, 0.3])
  _common.add_options(p, adamw_lrs=[3e-3, 1e-2], alphas=[0.0, 0.1, 1.0, 10.0, 100.0, 1000.0])
  p.add_argument(
    "--final-file",
    default="final.json",
    help="phase final writes here (run phases for different families in parallel into different files); "
    "the report merges every final*.json",
  )
  _common.add_options(p, kind=float, target_ratio=ham_optax.DEFAULT_TARGET_RATIO)
  p.add_argument("--fast", action="store_true", help="smoke run: 2 epochs, 2 seeds, tiny grid, mlp only")
  p.add_argument("--out", default=None, help="default benchmarks/results/alpha_transfer[_fast]")
  args = p.parse_args(argv)
  if args.fast:
    args.epochs, args.grid_seeds, args.final_seeds = 2, 2, 2
    args.families, args.sgd_lrs, args.adamw_lrs = ["mlp"], [0.1], [3e-3]
    args.alphas = [0.0, 1.0, 100.0]
  if args.out is None:
    args.out = str(
      Path(__file__).parent / "results" / ("alpha_transfer_fast" if args.fast else "alpha_transfer")
    )
  return args


class Family:
  """One model family on one dataset: pure init / train / eval functions over (params, rest) states."""

  def __init__(self, name: str, dataset: data_lib.Dataset, width: int):
    self.name, self.data, self.width = name, dataset, width
    model = self._model(0)
    model.train()
    self.gd_train = nnx.split(model, nnx.Param, ...)[0]
    model.eval()
    self.gd_eval = nnx.split(model, nnx.Param, ...)[0]

  def _model(self, seed: int) -> nnx.Module:
    return models.create_model(
      self.name, self.data.input_shape, self.data.num_classes, seed=seed, width=self.width
    )

  def init(self, seed: int):
    model = self._model(seed)
    model.train()
    _, params, rest = nnx.split(model, nnx.Param, ...)
    return params, rest

  def loss(self, params, rest, x, y):
    model = nnx.merge(self.gd_train, params, rest, copy=True)
    logits = model(x)
    new_rest = nnx.split(model, nnx.Param, ...)[2]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new_rest

  def accuracy(self, params, rest, x, y):
    logits = nnx.merge(self.gd_eval, params, rest)(x)
    return jnp.mean(jnp.argmax(logits, -1) == y)


def _inner(optimizer: str, schedule) -> optax.GradientTransformation:
  if optimizer == "sgd":
    return optax.chain(optax.add_decayed_weights(WEIGHT_DECAY), optax.sgd(schedule, momentum=0.9))
  return optax.adamw(schedule, weight_decay=WEIGHT_DECAY)


def _orders(seed: int, epochs: int, n: int, batch: int) -> np.ndarray:
  steps = n // batch
  rows = [np.random.default_rng([seed, e]).permutation(n)[: steps * batch] for e in range(epochs)]
  return np.stack(rows).reshape(epochs * steps, batch).astype(np.int32)


def make_runner(fam: Family, optimizer: str, epochs: int, batch: int):
  """A jitted ``(params, rest, lr, alpha, order) -> stats`` vmapped over a leading config axis."""
  d = fam.data
  xtr, ytr = jnp.asarray(d.x_train), jnp.asarray(d.y_train)
  xv, yv, xt, yt = (jnp.asarray(a) for a in (d.x_val, d.y_val, d.x_test, d.y_test))
  total = epochs * (len(d.x_train) // batch)

  def one(params, rest, lr, alpha, order):
    schedule = optax.cosine_decay_schedule(lr, total)
    tx = ham_optax.ham(_inner(optimizer, schedule), schedule, alpha, 0.0)
    opt_state = tx.init(params)

    train_step = _common.train_step(fam.loss, tx, has_aux=True)

    def step(carry, inputs):
      params, rest, opt_state = carry
      k, idx = inputs
      new_params, opt_state, (loss, rest), g = train_step(params, opt_state, rest, xtr[idx], ytr[idx])
      diag = metrics.ham_diagnostics(params, g, learning_rate=schedule(k), alpha=alpha)["global"]
      keys = ("exponent_rms", "exponent_max", "clip_fraction", "inverse_metric_mean")
      return (new_params, rest, opt_state), {"loss": loss, **{k: diag[k] for k in keys}}

    (params, rest, _), per_step = jax.lax.scan(step, (params, rest, opt_state), (jnp.arange(total), order))
    accuracy = {"val_acc": fam.accuracy(params, rest, xv, yv), "test_acc": fam.accuracy(params, rest, xt, yt)}
    return {**per_step, **accuracy}

  if fam.name in CONV_FAMILIES:
    # XLA:CPU lowers a vmapped convolution (one kernel per config) to a slow grouped convolution: loop instead.
    return jax.jit(lambda *a: jax.lax.map(lambda t: one(*t), a))
  return jax.jit(jax.vmap(one))


def alpha_unit(fam: Family, optimizer: str, seed: int, lr: float, epochs: int, batch: int) -> float:
  """``suggest_alpha(target_ratio=1)``: the alpha at which HAM's mirror step equals the inner step."""
  params, rest = fam.init(seed)
  order = _orders(seed, epochs, len(fam.data.x_train), batch)[:CALIBRATION_STEPS]
  batches = [(fam.data.x_train[i], fam.data.y_train[i]) for i in order]
  total = epochs * (len(fam.data.x_train) // batch)
  schedule = optax.cosine_decay_schedule(lr, total)

  def loss_fn(p, b):
    return fam.loss(p, rest, jnp.asarray(b[0]), jnp.asarray(b[1]))[0]

  inner = _inner(optimizer, schedule)
  return ham_optax.suggest_alpha(
    loss_fn, params, batches, inner, schedule, target_ratio=1.0, num_steps=CALIBRATION_STEPS
  )


def train_configs(fam, optimizer, configs, args) -> list[dict]:
  """Trains ``configs`` (dicts with seed, lr, alpha) together; returns them with their results."""
  seeds = sorted({c["seed"] for c in configs})
  inits = {s: fam.init(s) for s in seeds}
  n = len(fam.data.x_train)
  orders = {s: _orders(s, args.epochs, n, args.batch_size) for s in seeds}
  stack = lambda trees: jax.tree.map(lambda *xs: jnp.stack(xs), *trees)  # noqa: E731
  params = stack([inits[c["seed"]][0] for c in configs])
  rest = stack([inits[c["seed"]][1] for c in configs])
  lr = jnp.asarray([c["lr"] for c in configs], jnp.float32)
  alpha = jnp.asarray([c["alpha"] for c in configs], jnp.float32)
  order = jnp.asarray(np.stack([orders[c["seed"]] for c in configs]))
  out = jax.device_get(
    make_runner(fam, optimizer, args.epochs, args.batch_size)(params, rest, lr, alpha, order)
  )
  steps = n // args.batch_size
  rows = []
  for i, c in enumerate(configs):
    loss = np.asarray(out["loss"][i], np.float64).reshape(args.epochs, steps).mean(1)
    val, test = float(out["val_acc"][i]), float(out["test_acc"][i])
    finite = bool(np.all(np.isfinite(loss)))
    diverged = (not finite) or val <= 0.2
    first = {k: float(out[k][i][0]) for k in ("exponent_rms", "exponent_max", "inverse_metric_mean")}
    nanmax = {
      k: float(np.nanmax(out[k][i])) if finite else float("nan") for k in ("exponent_max", "clip_fraction")
    }
    row = dict(c, val_acc=val, test_acc=test, diverged=diverged, epoch_loss=[float(v) for v in loss])
    row.update(exponent_max_overall=nanmax["exponent_max"], clip_fraction_max=nanmax["clip_fraction"])
    rows.append(row | dict(inverse_metric_mean_final=float(out["inverse_metric_mean"][i][-1]), step0=first))
  return rows


def _lrs(args, optimizer):
  return args.sgd_lrs if optimizer == "sgd" else args.adamw_lrs


def _save(path: Path, payload: dict, key: str, made_by: dict) -> None:
  """Saves ``payload`` (its phases may have run separately): ``made_by[key]`` names the command and code of the
  entry ``key``, the top-level ``command`` / ``code_version`` those of the latest invocation."""
  payload.setdefault("made_by", {})[key] = made_by
  _common.write_json(path, {**payload, **made_by})


def _cells(args, dataset, done: dict):
  """``(family, optimizer, "family/optimizer")`` for every requested cell not in ``done``."""
  for family in args.families:
    fam = Family(family, dataset, args.widths[FAMILIES.index(family)])
    for optimizer in args.optimizers:
      if f"{family}/{optimizer}" not in done:
        yield fam, optimizer, f"{family}/{optimizer}"


def phase_grid(args, dataset, out: Path, made_by: dict) -> dict:
  path = out / "grid.json"
  grid = json.loads(path.read_text()) if path.exists() else {"runs": {}, "alpha_unit": {}}
  grid["argv"] = vars(args)
  for fam, optimizer, key in _cells(args, dataset, grid["runs"]):
    t0 = time.perf_counter()
    seeds = _common.tuning_seeds(args.grid_seeds)
    units = {
      f"{s}/{lr:g}": alpha_unit(fam, optimizer, s, lr, args.epochs, args.batch_size)
      for s in seeds
      for lr in _lrs(args, optimizer)
    }
    configs = [
      {"seed": s, "lr": lr, "alpha": a} for lr in _lrs(args, optimizer) for a in args.alphas for s in seeds
    ]
    rows = train_configs(fam, optimizer, configs, args)
    for r in rows:
      r["alpha_unit"] = units[f"{r['seed']}/{r['lr']:g}"]
      r["rho"] = r["alpha"] / r["alpha_unit"]
    grid["runs"][key] = rows
    grid["alpha_unit"][key] = units
    grid.setdefault("wall_s", {})[key] = time.perf_counter() - t0
    _save(path, grid, key, made_by)
    print(f"[grid] {key}: {len(rows)} runs in {time.perf_counter() - t0:.0f} s", flush=True)
  return grid


def _mean_val(rows, **match) -> float:
  sel = [r for r in rows if all(r[k] == v for k, v in match.items())]
  vals = [(-1.0 if r["diverged"] else r["val_acc"]) for r in sel]
  return float(np.mean(vals))


def phase_final(args, dataset, out: Path, grid: dict, made_by: dict) -> dict:
  path = out / args.final_file
  final = json.loads(path.read_text()) if path.exists() else {"results": {}}
  final["argv"] = vars(args)
  for fam, optimizer, key in _cells(args, dataset, final["results"]):
    if key not in grid["runs"]:
      continue
    t0 = time.perf_counter()
    rows = grid["runs"][key]
    lrs = _lrs(args, optimizer)
    base_lr = max(lrs, key=lambda lr: _mean_val(rows, lr=lr, alpha=0.0))
    ham_pts = [(lr, a) for lr in lrs for a in args.alphas if a != 0.0]
    best_lr, best_alpha = max(ham_pts, key=lambda p: _mean_val(rows, lr=p[0], alpha=p[1]))
    # suggested alpha at each lr (per tuning seed, as a user would call it on their model), lr chosen on val
    tuning = _common.tuning_seeds(args.grid_seeds)
    units = grid["alpha_unit"][key]
    sugg_cfgs = [
      {"seed": s, "lr": lr, "alpha": args.target_ratio * units[f"{s}/{lr:g}"]} for lr in lrs for s in tuning
    ]
    sugg_rows = train_configs(fam, optimizer, sugg_cfgs, args)
    sugg_lr = max(lrs, key=lambda lr: _mean_val(sugg_rows, lr=lr))
    finals = range(args.final_seeds)
    final_units = {s: alpha_unit(fam, optimizer, s, sugg_lr, args.epochs, args.batch_size) for s in finals}
    cfgs = [{"method": "baseline", "seed": s, "lr": base_lr, "alpha": 0.0} for s in finals]
    cfgs += [{"method": "HAM grid-best", "seed": s, "lr": best_lr, "alpha": best_alpha} for s in finals]
    sugg_alpha = {s: args.target_ratio * final_units[s] for s in finals}
    cfgs += [{"method": "HAM suggested", "seed": s, "lr": sugg_lr, "alpha": sugg_alpha[s]} for s in finals]
    res = train_configs(fam, optimizer, cfgs, args)
    choices = dict(baseline_lr=base_lr, grid_best=[best_lr, best_alpha], suggested_lr=sugg_lr)
    choices["suggested_val_by_lr"] = {f"{lr:g}": _mean_val(sugg_rows, lr=lr) for lr in lrs}
    final["results"][key] = {"choices": choices, "suggested_tuning_runs": sugg_rows, "runs": res}
    final.setdefault("wall_s", {})[key] = time.perf_counter() - t0
    _save(path, final, key, made_by)
    print(f"[final] {key}: {time.perf_counter() - t0:.0f} s", flush=True)
  return final


def load_final(out: Path) -> dict:
  """The final phase's results of every ``final*.json`` under ``out``, merged, in the order family x optimizer."""
  results = {}
  for path in sorted(out.glob("final*.json")):
    results.update(json.loads(path.read_text())["results"])
  order = [f"{f}/{o}" for f in FAMILIES for o in OPTIMIZERS]
  return {"results": {k: results[k] for k in order if k in results}}


def summarize(final: dict) -> str:
  lines = [
    "| family / optimizer | baseline (lr) | HAM grid-best (lr, alpha) | HAM suggested (lr, alpha) "
    "| suggested - baseline (paired p) | suggested - grid-best | diverged b/g/s |",
    "|---|---|---|---|---|---|---|",
  ]
  for key, res in final["results"].items():
    methods = ("baseline", "HAM grid-best", "HAM suggested")
    by = {m: [r for r in res["runs"] if r["method"] == m] for m in methods}

    def cell(rows):
      ok = [100 * r["test_acc"] for r in rows if not r["diverged"]]
      return f"{np.mean(ok):.2f} ± {np.std(ok, ddof=1):.2f}" if len(ok) > 1 else "n/a"

    def acc(rows):
      return [100 * r["test_acc"] if not r["diverged"] else np.nan for r in rows]

    b, g, s = (acc(by[m]) for m in methods)
    ch = res["choices"]
    sa = np.mean([r["alpha"] for r in by["HAM suggested"]])
    div = "/".join(str(sum(r["diverged"] for r in by[m])) for m in by)
    lines.append(
      f"| {key} | {cell(by['baseline'])} ({ch['baseline_lr']:g}) | {cell(by['HAM grid-best'])} "
      f"({ch['grid_best'][0]:g}, {ch['grid_best'][1]:g}) | {cell(by['HAM suggested'])} ({ch['suggested_lr']:g}, "
      f"{sa:.3g}) | {np.nanmean(np.subtract(s, b)):+.2f} ({_common.paired_p(b, s):.2f}) | "
      f"{np.nanmean(np.subtract(s, g)):+.2f} | {div} |"
    )
  return "\n".join(lines)


RHO_BINS = (0.0, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, np.inf)


def rho_bins(grid: dict) -> list[dict]:
  """Grid runs binned by rho (the non-empty bins of `RHO_BINS`): ``lo``, ``hi``, ``runs``, ``diverged``,
  ``finite`` (the runs that did not diverge), ``gain`` (their mean val gain over the same-lr baseline, points; nan
  if none), ``exponent_max`` (median over the bin of the largest exponent_max over training) and
  ``inverse_metric`` (median over the finite runs of inverse_metric_mean at the end)."""
  rows = []
  for runs in grid["runs"].values():
    base = {}
    for r in runs:
      if r["alpha"] == 0.0:
        base.setdefault((r["lr"], r["seed"]), r["val_acc"])
    rows += [dict(r, gain=100 * (r["val_acc"] - base[(r["lr"], r["seed"])])) for r in runs if r["alpha"] > 0]
  bins = []
  for lo, hi in zip(RHO_BINS[:-1], RHO_BINS[1:], strict=True):
    sel = [r for r in rows if lo <= r["rho"] < hi]
    if not sel:
      continue
    ok = [r for r in sel if not r["diverged"]]
    bins.append(
      dict(lo=lo, hi=hi, runs=len(sel), diverged=sum(r["diverged"] for r in sel), finite=len(ok))
      | dict(
        gain=float(np.mean([r["gain"] for r in ok])) if ok else float("nan"),
        exponent_max=float(np.nanmedian([r["exponent_max_overall"] for r in sel])) if ok else float("nan"),
        inverse_metric=float(np.nanmedian([r["inverse_metric_mean_final"] for r in ok]))
        if ok
        else float("nan"),
      )
    )
  return bins


def stable_region(grid: dict) -> str:
  """Grid runs binned by rho: runs, diverged, mean val gain over the same-lr baseline, and the diagnostics."""
  lines = [
    "| rho = alpha / alpha_unit | runs | diverged | val acc - baseline (points, non-diverged) "
    "| max exponent_max over training (median) | inverse_metric_mean at the end (median) |",
    "|---|---|---|---|---|---|",
  ]
  for b in rho_bins(grid):
    gain = f"{b['gain']:+.2f}" if b["finite"] else "n/a"
    lines.append(
      f"| [{b['lo']:g}, {b['hi']:g}) | {b['runs']} | {b['diverged']} | {gain} | {b['exponent_max']:.3g} "
      f"| {b['inverse_metric']:.3g} |"
    )
  return "\n".join(lines)


def plot(grid: dict, out: Path, target_ratio: float) -> None:
  """Gain over the same-lr baseline (mean over seeds) vs raw alpha and vs rho; one line per family/opt/lr."""
  plt = _common.pyplot()
  from matplotlib.lines import Line2D

  floor = -14.0  # diverged points (any seed) are drawn here
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
  colors = dict(zip(FAMILIES, ("C0", "C1", "C2", "C3"), strict=True))
  styles = {"sgd": ("o", "-"), "adamw": ("s", "--")}
  for key, rows in grid["runs"].items():
    family, optimizer = key.split("/")
    marker, line = styles[optimizer]
    for lr in sorted({r["lr"] for r in rows}):
      base = np.mean([r["val_acc"] for r in rows if r["lr"] == lr and r["alpha"] == 0.0])
      pts = []
      for a in sorted({r["alpha"] for r in rows if r["alpha"] > 0}):
        sel = [r for r in rows if r["lr"] == lr and r["alpha"] == a]
        div = any(r["diverged"] for r in sel)
        gain = floor if div else max(floor + 1, 100 * (np.mean([r["val_acc"] for r in sel]) - base))
        pts.append((a, float(np.mean([r["rho"] for r in sel])), gain, div))
      for ax, col in ((axes[0], 0), (axes[1], 1)):
        xs = [p[col] for p in pts]
        ax.plot(xs, [p[2] for p in pts], line, color=colors[family], alpha=0.5, lw=1)
        for p in pts:
          ax.scatter(p[col], p[2], color=colors[family], marker="x" if p[3] else marker, s=28, zorder=3)
  for ax, label in ((axes[0], "alpha"), (axes[1], "rho = alpha / alpha_unit  (mirror step / inner step)")):
    ax.set_xscale("log")
    ax.axhline(0, color="k", lw=0.8)
    ax.axhline(floor + 0.5, color="grey", lw=0.5, ls=":")
    ax.set_xlabel(label)
    ax.set_ylim(floor - 1, 8)
    ax.grid(alpha=0.3)
  axes[1].axvline(target_ratio, color="k", ls="--", lw=1)
  axes[1].text(target_ratio * 1.1, 6.5, f"suggest_alpha\n(rho = {target_ratio:g})", fontsize=8)
  axes[0].set_ylabel("val acc - baseline at the same lr (points)\n(x at the bottom: diverged)")
  handles = [Line2D([], [], color=c, lw=2, label=f) for f, c in colors.items()] + [
    Line2D([], [], color="k", marker=m, ls=ls, label=o) for o, (m, ls) in styles.items()
  ]
  axes[0].legend(handles=handles, fontsize=8, loc="lower left")
  title = (
    "HAM on MNIST-1D, 4 families x {SGD+momentum, AdamW} x 2 lrs: gain vs raw alpha (left) and vs rho (right)"
  )
  fig.suptitle(title, fontsize=10)
  _common.save_figure(fig, out / "stability.png", dpi=120)


def phase_mainjob(args, dataset, out: Path, made_by: dict) -> None:
  """The training app's own loop (``train_and_evaluate``, default widths, SGD + momentum, cosine, 90 % random
  pruning with ERK) at ``suggest_alpha``'s alpha, on the tuning seeds: does any seed diverge?"""
  from ham_optax_examples.configs.default import Config
  from ham_optax_examples.train import suggested_alpha, train_and_evaluate

  path = out / args.mainjob_file
  done = json.loads(path.read_text()) if path.exists() else {"runs": []}
  for setting in args.mainjob:
    model, sparsifier, lr, *epochs = setting.split(":")
    fixed = dict(model=model, sparsifier=sparsifier, learning_rate=float(lr), beta=1e-3, progress=False)
    fixed["epochs"] = int(epochs[0]) if epochs else args.mainjob_epochs
    for seed in _common.tuning_seeds(args.grid_seeds):
      base = Config(**fixed, seed=seed)
      for ham in (False, True) if args.mainjob_baseline else (True,):
        if any(r["setting"] == setting and r["seed"] == seed and r["ham"] == ham for r in done["runs"]):
          continue
        t0 = time.perf_counter()
        config = base.replace(
          ham=ham, alpha=suggested_alpha(base, dataset, args.target_ratio) if ham else 0.0
        )
        r = train_and_evaluate(config, dataset)
        h = [e["diagnostics"] for e in r["history"]]  # HAM's per-epoch diagnostics
        diverged = (
          not r["completed"] or not np.isfinite(r["history"][-1]["train_loss"]) or r["val_acc"] <= 0.2
        )
        row = dict(
          setting=setting, seed=seed, ham=ham, alpha=config.alpha, val_acc=r["val_acc"], diverged=diverged
        )
        row["ham_exponent_max"] = max((e.get("ham_exponent_max", 0.0) for e in h), default=0.0)
        row["ham_clip_fraction_max"] = max((e.get("ham_clip_fraction", 0.0) for e in h), default=0.0)
        row["ham_inverse_metric_mean_final"] = (
          h[-1].get("ham_inverse_metric_mean", 1.0) if h else float("nan")
        )
        row["wall_s"] = time.perf_counter() - t0
        done["runs"].append(row)
        _save(path, done, f"{setting}/{seed}/{'ham' if ham else 'baseline'}", made_by)
        print(f"[mainjob] {row}", flush=True)


def main(argv=None) -> None:
  args = _parse(argv)
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  made_by = _common.provenance(_common.command(argv, __file__))
  command = made_by["command"]
  log = out / "command.txt"  # one line per invocation (the phases may run separately)
  if command not in (log.read_text().splitlines() if log.exists() else []):
    with log.open("a") as f:
      f.write(command + "\n")
  dataset = data_lib.load_dataset("mnist1d")
  if args.phase == "mainjob":
    phase_mainjob(args, dataset, out, made_by)
    return
  grid_path = out / "grid.json"
  if args.phase in ("grid", "all"):
    grid = phase_grid(args, dataset, out, made_by)
  else:
    grid = json.loads(grid_path.read_text())
  if args.phase in ("final", "all"):
    phase_final(args, dataset, out, grid, made_by)
  final = load_final(out)
  plot(grid, out, args.target_ratio)
  table = (
    summarize(final)
    + "\n\nStable region (grid, validation, all families and optimizers):\n\n"
    + stable_region(grid)
  )
  (out / "summary.md").write_text(table + "\n")
  print(table)


if __name__ == "__main__":
  main()
