"""Does an alpha transfer between models and optimizers? HAM's stable region on MNIST-1D, and suggest_alpha.

Families (``ham_optax_examples.models``): ``mlp``, ``mlp_ln`` (MLP with LayerNorm), ``cnn1d`` and ``resnet1d``
(1-D ResNet with BatchNorm, the paper's setting in miniature) on the sequences; on the sequences quantised into
``VOCAB`` tokens (quantiles of the training values), ``embed_mlp`` (a token embedding of ``EMBED`` dimensions per
position, concatenated, feeding an MLP) and ``attention`` (the one-block transformer, classifying from the last
position). Each with SGD + momentum 0.9 and with AdamW (weight decay 5e-4 in both, cosine learning-rate schedule,
batch 128, beta = 0 so that alpha alone is studied).

Phase ``grid`` (validation, tuning seeds): every lr x alpha in ``--alphas`` (alpha = 0 is the inner optimizer
exactly), plus ``alpha_unit`` = ``suggest_alpha(..., target_ratio=1)`` per seed and lr, so every point has the
ratio ``rho = alpha / alpha_unit``. Phase ``final``: the baseline (best lr), HAM grid-best (best lr, alpha),
HAM suggested (``suggest_alpha``) and HAM per-leaf (``suggest_alpha(..., per_leaf=True)``), each suggestion at the
lr chosen on validation with the tuning seeds, retrained on ``--final-seeds`` and reported on test (the suggestions
are also validated at the ``--ratios``, for the choice of the rule). A run *diverged* when its final training loss
is not finite or its validation accuracy is at most 20 %. All runs of a family x optimizer train together in one
XLA program. Phase ``mainjob``: the training app's own loop at ``suggest_alpha``'s alpha; ``report``: the tables.

Writes ``grid.json``, ``final*.json``, ``mainjob.json``, ``summary.md``, ``stability.png`` and ``command.txt``
under ``--out``.

  python benchmarks/alpha_transfer.py                    # both phases (see --help for the sizes)
  python benchmarks/alpha_transfer.py --fast             # smoke run, a minute
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
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

FAMILIES = ("mlp", "mlp_ln", "cnn1d", "resnet1d", "embed_mlp", "attention")
CONV_FAMILIES, TOKEN_FAMILIES = ("cnn1d", "resnet1d"), ("embed_mlp", "attention")
VOCAB, EMBED = 16, 16
METHODS = ("baseline", "HAM grid-best", "HAM suggested", "HAM per-leaf")
PAIRS = [("HAM suggested", "HAM grid-best"), ("HAM per-leaf", "HAM grid-best")]
# the paired differences of the summary:
PAIRS += [("HAM per-leaf", "HAM suggested"), ("HAM suggested", "baseline")]
OPTIMIZERS, WEIGHT_DECAY = ("sgd", "adamw"), 5e-4
RHO_BINS = (0.0, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, np.inf)


def _mainjob_setting(text: str) -> str:
  """An argparse ``type`` for ``--mainjob``: ``MODEL:SPARSIFIER:LR[:EPOCHS]``, a positive lr and epoch count."""
  parts = text.split(":")
  if len(parts) not in (3, 4):
    raise argparse.ArgumentTypeError(f"must be MODEL:SPARSIFIER:LR[:EPOCHS], got {text!r}")
  for part, check, name in zip(
    parts[2:], (_common.positive_float, _common.positive_int), ("LR", "EPOCHS"), strict=False
  ):
    try:
      check(part)
    except argparse.ArgumentTypeError as e:
      raise argparse.ArgumentTypeError(f"{text!r}: {name} {e}") from None
  return text


def parse_args(argv=None) -> argparse.Namespace:
  p = _common.Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--phase", default="all", choices=["grid", "final", "all", "report", "mainjob"])
  p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
  p.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS), choices=OPTIMIZERS)
  # widths (in FAMILIES' order): hidden units of the MLPs, channels of cnn1d, base channels of resnet1d, d_model
  _common.add_options(p, epochs=6, widths=[128, 128, 8, 8, 128, 32], batch_size=128, grid_seeds=3)
  _common.add_options(p, final_seeds=5, sgd_lrs=[0.1, 0.3], adamw_lrs=[3e-3, 1e-2])
  # alpha = 0: the baseline (the inner optimizer exactly), which every grid needs
  _common.add_options(p, kind=_common.nonnegative_float, alphas=[0.0, 0.1, 1.0, 10.0, 100.0, 1000.0])
  _common.add_options(p, kind=_common.positive_float, target_ratio=ham_optax.DEFAULT_TARGET_RATIO)
  _common.add_options(p, kind=_common.positive_float, ratios=[0.1, 0.5, 1.0])
  # the report merges every final*.json; phase mainjob checks the training app's job, MODEL:SPARSIFIER:LR[:EPOCHS]
  mainjob = ["mlp:none:0.4", "mlp:random:0.8", "resnet1d:none:0.4", "resnet1d:random:0.4"]
  _common.add_options(p, final_file="final.json", mainjob_file="mainjob.json")
  _common.add_options(p, mainjob_epochs=30)
  _common.add_options(p, kind=_mainjob_setting, mainjob=mainjob)
  p.add_argument("--mainjob-baseline", action="store_true", help="phase mainjob: also train the baselines")
  fast = dict(epochs=2, grid_seeds=2, final_seeds=2, families=["mlp"], sgd_lrs=[0.1], adamw_lrs=[3e-3])
  p.add_fast("smoke run: 2 epochs, 2 seeds, tiny grid, mlp only", **fast, alphas=[0.0, 1.0, 100.0])
  p.add_argument("--out", type=_common.out_dir, help="default benchmarks/results/alpha_transfer[_fast]")
  args = p.parse_args(argv)
  if len(args.widths) != len(FAMILIES):
    p.error(f"--widths needs one width per family ({', '.join(FAMILIES)}), got {len(args.widths)}")
  if 0.0 not in args.alphas or max(args.alphas) == 0.0:
    p.error("--alphas needs 0 (the baseline) and at least one alpha > 0")
  args.out = str(args.out or Path(__file__).parent / "results" / f"alpha_transfer{'_fast' * args.fast}")
  return args


class Family:
  """One model family on one dataset: pure init / train / eval functions over (params, rest) states."""

  def __init__(self, name: str, dataset: data_lib.Dataset, width: int):
    if name in TOKEN_FAMILIES:
      edges = np.quantile(dataset.x_train, np.linspace(0, 1, VOCAB + 1)[1:-1])
      splits = ("x_train", "x_val", "x_test")
      tokens = {k: np.digitize(getattr(dataset, k), edges).astype(np.int32) for k in splits}
      dataset = dataclasses.replace(dataset, name=f"{dataset.name}_tokens", **tokens)
    self.name, self.data, self.width = name, dataset, width
    model = self._model(0)
    model.train()
    self.gd_train = nnx.split(model, nnx.Param, ...)[0]
    model.eval()
    self.gd_eval = nnx.split(model, nnx.Param, ...)[0]
    self.calibration_loss = lambda p, b: self.loss(p, b[2], jnp.asarray(b[0]), jnp.asarray(b[1]))[0]

  def _model(self, seed: int) -> nnx.Module:
    shape, classes = self.data.input_shape, self.data.num_classes
    if self.name == "embed_mlp":
      rngs = nnx.Rngs(seed)
      mlp = models.MLP(shape[0] * EMBED, classes, (self.width, self.width), rngs=rngs)
      return nnx.Sequential(nnx.Embed(VOCAB, EMBED, rngs=rngs), mlp)
    name, vocab = ("transformer", VOCAB) if self.name == "attention" else (self.name, None)
    return models.create_model(name, shape, classes, seed=seed, width=self.width, vocab_size=vocab)

  def init(self, seed: int):
    """``(params, rest)`` of a fresh model (the modes are static attributes, kept in the graph definitions)."""
    return nnx.split(self._model(seed), nnx.Param, ...)[1:]

  def loss(self, params, rest, x, y):
    model = nnx.merge(self.gd_train, params, rest, copy=True)
    loss = optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()
    return loss, nnx.split(model, nnx.Param, ...)[2]

  def accuracy(self, params, rest, x, y):
    return jnp.mean(jnp.argmax(nnx.merge(self.gd_eval, params, rest)(x), -1) == y)


def _inner(optimizer: str, schedule) -> optax.GradientTransformation:
  if optimizer == "sgd":
    return optax.chain(optax.add_decayed_weights(WEIGHT_DECAY), optax.sgd(schedule, momentum=0.9))
  return optax.adamw(schedule, weight_decay=WEIGHT_DECAY)


def _orders(seed: int, epochs: int, n: int, batch: int) -> np.ndarray:
  steps = n // batch
  rows = [np.random.default_rng([seed, e]).permutation(n)[: steps * batch] for e in range(epochs)]
  return np.stack(rows).reshape(epochs * steps, batch).astype(np.int32)


def make_runner(fam: Family, optimizer: str, epochs: int, batch: int):
  """A jitted ``(params, rest, lr, alphas, order) -> stats`` vmapped over a leading config axis (``alphas``: one
  alpha per leaf of ``params``)."""
  d = fam.data
  xtr, ytr, xv, yv, xt, yt = map(jnp.asarray, (d.x_train, d.y_train, d.x_val, d.y_val, d.x_test, d.y_test))
  total = epochs * (len(d.x_train) // batch)

  def one(params, rest, lr, alphas, order):
    alpha = jax.tree.unflatten(jax.tree.structure(params), list(alphas))
    schedule = optax.cosine_decay_schedule(lr, total)
    tx = ham_optax.ham(_inner(optimizer, schedule), schedule, alpha, 0.0)
    train_step = _common.train_step(fam.loss, tx, has_aux=True)

    def step(carry, inputs):
      (params, rest, opt_state), (k, idx) = carry, inputs
      new_params, opt_state, (loss, rest), g = train_step(params, opt_state, rest, xtr[idx], ytr[idx])
      diag = metrics.ham_diagnostics(params, g, learning_rate=schedule(k), alpha=alpha)["global"]
      keys = ("exponent_rms", "exponent_max", "clip_fraction", "inverse_metric_mean")
      return (new_params, rest, opt_state), {"loss": loss, **{k: diag[k] for k in keys}}

    carry = (params, rest, tx.init(params))
    (params, rest, _), per_step = jax.lax.scan(step, carry, (jnp.arange(total), order))
    accuracy = {"val_acc": fam.accuracy(params, rest, xv, yv), "test_acc": fam.accuracy(params, rest, xt, yt)}
    return {**per_step, **accuracy}

  if fam.name in CONV_FAMILIES:
    # XLA:CPU lowers a vmapped convolution (one kernel per config) to a slow grouped convolution: loop instead.
    return jax.jit(lambda *a: jax.lax.map(lambda t: one(*t), a))
  return jax.jit(jax.vmap(one))


@functools.cache
def _calibration(optimizer: str, lr: float, total: int) -> tuple:
  """The inner optimizer and its schedule, one object per setting (suggest_alpha compiles once per object)."""
  schedule = optax.cosine_decay_schedule(lr, total)
  return _inner(optimizer, schedule), schedule


def alpha_unit(fam: Family, optimizer: str, seed: int, lr: float, args) -> list:
  """``suggest_alpha(target_ratio=1)``, the alpha at which HAM's mirror step equals the inner step, then the same
  with ``per_leaf=True`` (a list over the params' leaves); NaN if the calibration run diverges."""
  (params, rest), n = fam.init(seed), len(fam.data.x_train)
  order = _orders(seed, args.epochs, n, args.batch_size)[:20]
  batches = [(fam.data.x_train[i], fam.data.y_train[i], rest) for i in order]
  inner = _calibration(optimizer, lr, args.epochs * (n // args.batch_size))
  call = (fam.calibration_loss, params, batches, *inner)
  try:
    scalar, leaves = (ham_optax.suggest_alpha(*call, target_ratio=1.0, per_leaf=p) for p in (False, True))
  except ham_optax.CalibrationDivergedError:
    return [np.nan, [np.nan] * len(jax.tree.leaves(params))]
  return [scalar, jax.tree.leaves(leaves)]


def train_configs(fam, optimizer, configs, args) -> list[dict]:
  """Trains ``configs`` (dicts with seed, lr, alpha; ``alpha_leaves``, one per leaf, replaces alpha in the update
  if present) together; returns them with their results."""
  n, seeds = len(fam.data.x_train), sorted({c["seed"] for c in configs})
  inits = {s: fam.init(s) for s in seeds}
  orders = {s: _orders(s, args.epochs, n, args.batch_size) for s in seeds}
  stack = lambda trees: jax.tree.map(lambda *xs: jnp.stack(xs), *trees)  # noqa: E731
  params, rest = (stack([inits[c["seed"]][i] for c in configs]) for i in (0, 1))
  lr = jnp.asarray([c["lr"] for c in configs], jnp.float32)
  leaves = len(jax.tree.leaves(params))
  alpha = jnp.asarray([c.get("alpha_leaves", [c["alpha"]] * leaves) for c in configs], jnp.float32)
  order = jnp.asarray(np.stack([orders[c["seed"]] for c in configs]))
  run = make_runner(fam, optimizer, args.epochs, args.batch_size)
  out, rows = jax.device_get(run(params, rest, lr, alpha, order)), []
  for i, c in enumerate(configs):
    loss = np.asarray(out["loss"][i], np.float64).reshape(args.epochs, n // args.batch_size).mean(1)
    val, finite = float(out["val_acc"][i]), bool(np.all(np.isfinite(loss)))
    nanmax = {k: float(np.nanmax(out[k][i])) if finite else np.nan for k in ("exponent_max", "clip_fraction")}
    row = dict(c, val_acc=val, test_acc=float(out["test_acc"][i]), diverged=(not finite) or val <= 0.2)
    row |= dict(epoch_loss=[float(v) for v in loss], exponent_max_overall=nanmax["exponent_max"])
    row |= dict(clip_fraction_max=nanmax["clip_fraction"])
    row |= dict(inverse_metric_mean_final=float(out["inverse_metric_mean"][i][-1]))
    step0 = {k: float(out[k][i][0]) for k in ("exponent_rms", "exponent_max", "inverse_metric_mean")}
    rows.append(row | dict(step0=step0))
  return rows


def _load(path: Path, default: dict) -> dict:
  return json.loads(path.read_text()) if path.exists() else default


def _save(path: Path, payload: dict, key: str, made_by: dict) -> None:
  """Saves ``payload`` (its phases may have run separately): ``made_by[key]`` names the command and code of the
  entry ``key``, the top-level ``command`` / ``code_version`` those of the latest invocation."""
  payload.setdefault("made_by", {})[key] = made_by
  _common.write_json(path, {**payload, **made_by})


def _cells(args, dataset, done: dict):
  """``(family, optimizer, "family/optimizer")`` for every requested cell not in ``done``."""
  for family in args.families:
    fam = Family(family, dataset, args.widths[FAMILIES.index(family)])
    yield from ((fam, o, f"{family}/{o}") for o in args.optimizers if f"{family}/{o}" not in done)


def _units(fam, optimizer, seeds, lrs, args) -> dict:
  """``alpha_unit`` (scalar and per leaf) per ``"seed/lr"``."""
  return {f"{s}/{lr:g}": alpha_unit(fam, optimizer, s, lr, args) for s in seeds for lr in lrs}


def phase_grid(args, dataset, out: Path, made_by: dict) -> dict:
  path = out / "grid.json"
  grid = _load(path, {"runs": {}, "alpha_unit": {}})
  grid["argv"] = vars(args)
  for fam, optimizer, key in _cells(args, dataset, grid["runs"]):
    t0 = time.perf_counter()
    seeds, lrs = _common.tuning_seeds(args.grid_seeds), getattr(args, f"{optimizer}_lrs")
    units = _units(fam, optimizer, seeds, lrs, args)
    configs = [dict(seed=s, lr=lr, alpha=a) for lr in lrs for a in args.alphas for s in seeds]
    rows = train_configs(fam, optimizer, configs, args)
    for r in rows:
      r["alpha_unit"] = units[f"{r['seed']}/{r['lr']:g}"][0]
      r["rho"] = r["alpha"] / r["alpha_unit"]
    grid["runs"][key] = rows
    grid["alpha_unit"][key] = {k: u[0] for k, u in units.items()}
    grid.setdefault("alpha_unit_leaves", {})[key] = {k: u[1] for k, u in units.items()}
    grid.setdefault("wall_s", {})[key] = time.perf_counter() - t0
    _save(path, grid, key, made_by)
    print(f"[grid] {key}: {len(rows)} runs in {time.perf_counter() - t0:.0f} s", flush=True)
  return grid


def _mean_val(rows, **match) -> float:
  sel = [r for r in rows if all(r[k] == v for k, v in match.items())]
  return float(np.mean([-1.0 if r["diverged"] else r["val_acc"] for r in sel]))


def _suggested(method: str, seed: int, lr: float, units: dict, ratio: float) -> dict:
  """The config of ``method`` (HAM suggested or per-leaf) from ``units`` (of :func:`_units`); a per-leaf config's
  ``alpha`` is the mean of its nonzero leaves' (for the tables)."""
  scalar, per_leaf = units[f"{seed}/{lr:g}"]
  if method == "HAM suggested":
    return dict(method=method, seed=seed, lr=lr, alpha=ratio * scalar, ratio=ratio)
  leaves = [ratio * a for a in per_leaf]
  mean = float(np.mean([a for a in leaves if a]))
  return dict(method=method, seed=seed, lr=lr, alpha=mean, alpha_leaves=leaves, ratio=ratio)


def phase_final(args, dataset, out: Path, grid: dict, made_by: dict) -> dict:
  """Per cell: the grid's choices, the suggestions' lr chosen on the tuning seeds, all retrained on fresh seeds."""
  path = out / args.final_file
  final = _load(path, {"results": {}})
  final["argv"] = vars(args)
  for fam, optimizer, key in _cells(args, dataset, final["results"]):
    if key not in grid["runs"]:
      continue
    t0, rows = time.perf_counter(), grid["runs"][key]
    lrs, tuning = sorted({r["lr"] for r in rows}), sorted({r["seed"] for r in rows})
    base_lr = max(lrs, key=lambda lr: _mean_val(rows, lr=lr, alpha=0.0))
    ham_pts = sorted({(r["lr"], r["alpha"]) for r in rows if r["alpha"] != 0.0})
    best_lr, best_alpha = max(ham_pts, key=lambda p: _mean_val(rows, lr=p[0], alpha=p[1]))
    # the suggestions at each lr (per tuning seed, as a user would call it on their model), lr chosen on val
    units, sugg = _units(fam, optimizer, tuning, lrs, args), ("HAM suggested", "HAM per-leaf")
    ratios = sorted({args.target_ratio, *args.ratios})  # the others: validation only, to choose the rule
    cfgs = [_suggested(m, s, lr, units, r) for m in sugg for lr in lrs for s in tuning for r in ratios]
    sugg_rows, at = train_configs(fam, optimizer, cfgs, args), dict(ratio=args.target_ratio)
    val = {m: {lr: _mean_val(sugg_rows, method=m, lr=lr, **at) for lr in lrs} for m in sugg}
    chosen = {m: max(lrs, key=val[m].get) for m in sugg}
    finals = range(args.final_seeds)
    cfgs = [dict(method="baseline", seed=s, lr=base_lr, alpha=0.0) for s in finals]
    cfgs += [dict(method="HAM grid-best", seed=s, lr=best_lr, alpha=best_alpha) for s in finals]
    for m, lr in chosen.items():
      fresh = _units(fam, optimizer, finals, [lr], args)
      cfgs += [_suggested(m, s, lr, fresh, args.target_ratio) for s in finals]
    choices = dict(baseline_lr=base_lr, grid_best=[best_lr, best_alpha], suggested_lr=chosen["HAM suggested"])
    choices["per_leaf_lr"] = chosen["HAM per-leaf"]
    choices["val_by_lr"] = {m: {f"{lr:g}": v for lr, v in val[m].items()} for m in sugg}
    res = train_configs(fam, optimizer, cfgs, args)
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


def _summary_row(key: str, res: dict) -> list[str]:
  by = {m: [r for r in res["runs"] if r["method"] == m] for m in METHODS}
  acc = {m: [np.nan if r["diverged"] else 100 * r["test_acc"] for r in rows] for m, rows in by.items()}
  ch, cells = res["choices"], [key]
  lrs = (ch["baseline_lr"], ch["grid_best"][0], ch["suggested_lr"], ch.get("per_leaf_lr"))
  for m, lr in zip(METHODS, lrs, strict=True):
    ok = [a for a in acc[m] if np.isfinite(a)]
    alpha = "" if m == "baseline" else f", {np.mean([r['alpha'] for r in by[m]]):.3g}"
    cells.append(f"{np.mean(ok):.2f} ± {np.std(ok, ddof=1):.2f} ({lr:g}{alpha})" if len(ok) > 1 else "n/a")
  for m, against in PAIRS:
    t = _common.paired_test(acc[against], acc[m]) if acc[m] else {"n": 0}
    cells.append(f"{t['mean_diff']:+.2f} ({t['p_value']:.2f})" if t["n"] else "n/a")
  return [*cells, "/".join(str(sum(r["diverged"] for r in by[m])) if by[m] else "-" for m in METHODS)]


def summarize(final: dict) -> str:
  """Test accuracy per method (mean ± std over the non-diverged seeds, with its lr and mean alpha), paired
  differences (mean over the seeds where neither run diverged, paired p), and the diverged seeds per method."""
  header = "family / optimizer|baseline (lr)|HAM grid-best (lr, alpha)|HAM suggested (lr, mean alpha)|"
  header += "HAM per-leaf (lr, mean alpha)|suggested - grid-best (p)|per-leaf - grid-best (p)|"
  header += "per-leaf - suggested (p)|suggested - baseline (p)|diverged b/g/s/l"
  rows = [_summary_row(k, res) for k, res in final["results"].items()]
  return _common.markdown_table(header.split("|"), rows)


def _bin_stats(sel: list[dict]) -> dict:
  ok = [r for r in sel if not r["diverged"]]
  return dict(runs=len(sel), diverged=sum(r["diverged"] for r in sel), finite=len(ok)) | dict(
    gain=float(np.mean([r["gain"] for r in ok])) if ok else np.nan,
    exponent_max=float(np.nanmedian([r["exponent_max_overall"] for r in sel])) if ok else np.nan,
    inverse_metric=float(np.nanmedian([r["inverse_metric_mean_final"] for r in ok])) if ok else np.nan,
  )


def rho_bins(grid: dict) -> list[dict]:
  """Grid runs binned by rho (the non-empty bins of `RHO_BINS`): ``lo``, ``hi``, ``runs``, ``diverged``,
  ``finite`` (the runs that did not diverge), ``gain`` (their mean val gain over the same-lr baseline, points; nan
  if none), ``exponent_max`` (median over the bin of the largest exponent_max over training),
  ``inverse_metric`` (median over the finite runs of inverse_metric_mean at the end), and the same statistics
  of each optimizer's runs under its name (``"sgd"``, ``"adamw"``)."""
  rows, bins = [], []
  for key, runs in grid["runs"].items():
    base = {(r["lr"], r["seed"]): r["val_acc"] for r in runs if r["alpha"] == 0.0}
    gains = [(r, 100 * (r["val_acc"] - base[r["lr"], r["seed"]])) for r in runs if r["alpha"] > 0]
    rows += [dict(r, gain=gain, optimizer=key.split("/")[1]) for r, gain in gains]
  for lo, hi in zip(RHO_BINS[:-1], RHO_BINS[1:], strict=True):
    if sel := [r for r in rows if lo <= r["rho"] < hi]:
      per_opt = {o: _bin_stats([r for r in sel if r["optimizer"] == o]) for o in OPTIMIZERS}
      bins.append(dict(lo=lo, hi=hi, **_bin_stats(sel), **per_opt))
  return bins


def stable_region(grid: dict) -> str:
  """Grid runs binned by rho, per optimizer: runs, diverged, mean val gain over the same-lr baseline (points,
  non-diverged runs); then the diagnostics of the whole bin."""
  header = ["rho = alpha / alpha_unit", *(f"{o}: runs, diverged, gain" for o in OPTIMIZERS)]
  header += ["max exponent_max over training (median)", "inverse_metric_mean at the end (median)"]
  cell = lambda b: f"{b['runs']}, {b['diverged']}, " + (f"{b['gain']:+.2f}" if b["finite"] else "-")  # noqa: E731
  rows = [
    [f"[{b['lo']:g}, {b['hi']:g})", *(cell(b[o]) for o in OPTIMIZERS), f"{b['exponent_max']:.3g}"]
    + [f"{b['inverse_metric']:.3g}"]
    for b in rho_bins(grid)
  ]
  return _common.markdown_table(header, rows)


def plot(grid: dict, out: Path, target_ratio: float) -> None:
  """Gain over the same-lr baseline (mean over seeds) vs raw alpha and vs rho; one line per family/opt/lr."""
  plt = _common.pyplot()
  from matplotlib.lines import Line2D

  floor = -14.0  # diverged points (any seed) are drawn here
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
  colors, styles = {f: f"C{i}" for i, f in enumerate(FAMILIES)}, {"sgd": ("o", "-"), "adamw": ("s", "--")}
  for key, rows in grid["runs"].items():
    family, optimizer = key.split("/")
    for lr in sorted({r["lr"] for r in rows}):
      base = np.mean([r["val_acc"] for r in rows if r["lr"] == lr and r["alpha"] == 0.0])
      pts = []
      for a in sorted({r["alpha"] for r in rows if r["alpha"] > 0}):
        sel = [r for r in rows if r["lr"] == lr and r["alpha"] == a]
        div = any(r["diverged"] for r in sel)
        gain = floor if div else max(floor + 1, 100 * (np.mean([r["val_acc"] for r in sel]) - base))
        pts.append((a, float(np.mean([r["rho"] for r in sel])), gain, div))
      for col, ax in enumerate(axes):
        ax.plot([p[col] for p in pts], [p[2] for p in pts], styles[optimizer][1], color=colors[family], lw=1)
        for p in pts:
          marker = "x" if p[3] else styles[optimizer][0]
          ax.scatter(p[col], p[2], color=colors[family], marker=marker, s=28, zorder=3)
  for ax, label in zip(axes, ("alpha", "rho = alpha / alpha_unit  (mirror step / inner step)"), strict=True):
    ax.set(xscale="log", xlabel=label, ylim=(floor - 1, 8))
    ax.axhline(0, color="k", lw=0.8)
    ax.axhline(floor + 0.5, color="grey", lw=0.5, ls=":")
    ax.grid(alpha=0.3)
  axes[1].axvline(target_ratio, color="k", ls="--", lw=1)
  axes[1].text(target_ratio * 1.1, 6.5, f"suggest_alpha\n(rho = {target_ratio:g})", fontsize=8)
  axes[0].set_ylabel("val acc - baseline at the same lr (points)\n(x at the bottom: diverged)")
  handles = [Line2D([], [], color=c, lw=2, label=f) for f, c in colors.items()]
  handles += [Line2D([], [], color="k", marker=m, ls=ls, label=o) for o, (m, ls) in styles.items()]
  axes[0].legend(handles=handles, fontsize=8, loc="lower left")
  families = f"{len({k.split('/')[0] for k in grid['runs']})} families x {{SGD+momentum, AdamW}} x 2 lrs"
  fig.suptitle(f"HAM on MNIST-1D, {families}: gain vs raw alpha and vs rho", fontsize=10)
  _common.save_figure(fig, out / "stability.png", dpi=120)


def phase_mainjob(args, dataset, out: Path, made_by: dict) -> None:
  """The training app's own loop (``train_and_evaluate``, default widths, SGD + momentum, cosine, 90 % random
  pruning with ERK) at ``suggest_alpha``'s alpha, on the tuning seeds: does any seed diverge?"""
  from ham_optax_examples.configs.default import Config
  from ham_optax_examples.train import suggested_alpha, train_and_evaluate

  path = out / args.mainjob_file
  done = _load(path, {"runs": []})
  for setting in args.mainjob:
    model, sparsifier, lr, *epochs = setting.split(":")
    fixed = dict(model=model, sparsifier=sparsifier, learning_rate=float(lr), beta=1e-3, progress=False)
    fixed["epochs"] = int(epochs[0]) if epochs else args.mainjob_epochs
    finished = {(r["setting"], r["seed"], r["ham"]) for r in done["runs"]}
    for seed, ham in ((s, h) for s in _common.tuning_seeds(args.grid_seeds) for h in (False, True)):
      if (not ham and not args.mainjob_baseline) or (setting, seed, ham) in finished:
        continue
      t0, base = time.perf_counter(), Config(**fixed, seed=seed)
      try:
        alpha = suggested_alpha(base, dataset, args.target_ratio) if ham else 0.0
        r = train_and_evaluate(config := base.replace(ham=ham, alpha=alpha), dataset)
      except ham_optax.CalibrationDivergedError as e:  # the inner optimizer alone diverges at this lr
        config = base.replace(ham=ham, alpha=None)
        r = _common.diverged_at_calibration(config, str(e))
      h = [e["diagnostics"] for e in r["history"]]  # HAM's per-epoch diagnostics
      diverged = not r["completed"] or not np.isfinite(r["history"][-1]["train_loss"]) or r["val_acc"] <= 0.2
      row = dict(setting=setting, seed=seed, ham=ham, alpha=config.alpha, val_acc=r["val_acc"])
      row["diverged"] = diverged
      row["ham_exponent_max"] = max((e.get("ham_exponent_max", 0.0) for e in h), default=0.0)
      row["ham_clip_fraction_max"] = max((e.get("ham_clip_fraction", 0.0) for e in h), default=0.0)
      row["ham_inverse_metric_mean_final"] = h[-1].get("ham_inverse_metric_mean", 1.0) if h else float("nan")
      done["runs"].append(row | dict(wall_s=time.perf_counter() - t0))
      _save(path, done, f"{setting}/{seed}/{'ham' if ham else 'baseline'}", made_by)
      print(f"[mainjob] {row}", flush=True)


def main(argv=None) -> None:
  args = parse_args(argv)
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  made_by = _common.provenance(_common.command(argv, __file__))
  log = out / "command.txt"  # one line per invocation (the phases may run separately)
  if made_by["command"] not in (log.read_text().splitlines() if log.exists() else []):
    with log.open("a") as f:
      f.write(made_by["command"] + "\n")
  dataset = data_lib.load_dataset("mnist1d")
  if args.phase == "mainjob":
    return phase_mainjob(args, dataset, out, made_by)
  grid = phase_grid(args, dataset, out, made_by) if args.phase in ("grid", "all") else None
  grid = grid or json.loads((out / "grid.json").read_text())
  if args.phase in ("final", "all"):
    phase_final(args, dataset, out, grid, made_by)
  plot(grid, out, args.target_ratio)
  table = f"{summarize(load_final(out))}\n\nStable region (grid, validation):\n\n{stable_region(grid)}\n"
  (out / "summary.md").write_text(table)
  print(table)


if __name__ == "__main__":
  main()
