"""Sparse training with and without HAM at small scale (MNIST-1D or sklearn digits, MLP, CPU).

Methods: {dense, random pruning at init (PaI, ERK), gradual magnitude pruning (GMP), AC/DC, RigL} x {baseline, HAM},
plus random PaI + Sign-In (``ham_optax.overparam.sign_in``, the HAM paper's Table 2), at ``--sparsity`` of the
weight tensors; SGD + momentum 0.9, weight decay 5e-4, cosine schedule. Selection on the *validation* split only:
the baseline's lr from ``--lrs``; "HAM" at that lr with ``(alpha, beta)`` from ``--alphas`` x ``--betas``; "HAM
tuned" with its own lr from ``--lrs`` and alpha = ``suggest_alpha`` (``--target-ratio``) per lr and seed, beta = 0
(the baseline's budget); Sign-In (random PaI only) at the baseline's lr with ``--sign-in-balances`` x
``--sign-in-every``. Then every method on ``--seeds`` fresh seeds (0, 1, ...; tuning seeds are 1000+), on test.
Writes ``results.json``, ``runs.csv``, ``summary.csv``, ``summary.md``, ``tuning.csv``, ``choices.json`` and
``curves.png`` under ``--out``. ``--fast``: a 2-minute smoke version.

  python benchmarks/sparse_training.py                      # full: mnist1d, 5 seeds
  python benchmarks/sparse_training.py --dataset digits --out benchmarks/results/sparse_training_digits

``--sweep``: every sparsifier (random PaI with ERK, GMP, AC/DC, RigL, STR) at sparsity 0.8 / 0.9 / 0.95 / 0.98
with and without HAM, on an MLP and a 1-D CNN, plus dense HAM / SAM / SAM + HAM; the seeds of a setting train
together (``jax.vmap`` of the whole training loop). Phases ``tune`` (lr per cell and arm on validation, alpha from
``suggest_alpha``), ``pilot`` (16 seeds), ``final`` (the seed count the pilot's spread asks for, see
:meth:`_Sweep.plan`) and ``report``; every cell is saved under ``--out`` as it finishes and a rerun skips it.

  python benchmarks/sparse_training.py --sweep             # ~1 h on 2 cores, benchmarks/results/sparse_sweep
  python benchmarks/sparse_training.py --sweep --fast      # smoke version, minutes
"""

from __future__ import annotations

import argparse
import csv
import functools
import itertools
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from ham_optax_examples import data as data_lib
from ham_optax_examples import report
from ham_optax_examples.configs.default import Config
from ham_optax_examples.train import suggested_alpha
from tqdm.auto import tqdm

import ham_optax
from ham_optax import sparsity

import _common

SPARSIFIERS = ("none", "random", "magnitude", "acdc", "rigl")


def _main_parse(argv=None) -> argparse.Namespace:
  p = _common.Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--dataset", default="mnist1d", choices=["mnist1d", "digits"])
  p.add_argument("--model", default="mlp", choices=["mlp", "cnn1d"])
  p.add_argument("--sparsifiers", nargs="+", default=list(SPARSIFIERS), choices=SPARSIFIERS)
  _common.add_options(p, kind=_common.fraction, sparsity=0.9)
  _common.add_options(p, epochs=30, batch_size=128, seeds=5, tuning_seeds=2)
  _common.add_options(p, lrs=[0.1, 0.2, 0.4, 0.8, 1.6], target_ratio=ham_optax.DEFAULT_TARGET_RATIO)
  _common.add_options(p, kind=_common.finite_float, alphas=[0.3, 1.0, 3.0, 10.0, 30.0, 100.0])
  _common.add_options(p, kind=_common.nonnegative_float, betas=[1e-3, 1e-2])
  p.add_argument("--no-ham-tuned", action="store_true", help="skip the 'HAM tuned' rows")
  balances = "Sign-In rows (random PaI only): balances m^2 - w^2 to tune; give none to skip"
  balance = _common.positive_float
  p.add_argument("--sign-in-balances", type=balance, nargs="*", default=[0.1, 1.0], help=balances)
  every = "Sign-In reset period, epochs"
  p.add_argument("--sign-in-every", type=_common.positive_int, nargs="+", default=[1, 5], help=every)
  fast = dict(epochs=5, seeds=2, tuning_seeds=1, lrs=[0.1], alphas=[3.0, 30.0], betas=[1e-3])
  fast |= dict(sign_in_balances=[1.0], sign_in_every=[1])
  p.add_fast("smoke version: 5 epochs, 1 tuning seed, 2 seeds, one lr, 2 alphas", **fast)
  out = "default benchmarks/results/sparse_training[_DATASET][_fast]"
  p.add_argument("--out", type=_common.out_dir, help=out)
  args = p.parse_args(argv)
  if args.out is None:
    suffix = ("" if args.dataset == "mnist1d" else f"_{args.dataset}") + ("_fast" if args.fast else "")
    args.out = Path(__file__).parent / "results" / f"sparse_training{suffix}"
  return args


def _print_summary(final, choices, sparsifiers, title) -> None:
  print(f"\n{title}\n{report.markdown_table(report.summarize(final))}")
  print("\nHAM (at the baseline's lr) - baseline, test accuracy (points), Welch t-test over seeds:")
  accs = lambda m: [r["test_acc"] for r in final if r["method"] == m and not r.get("diverged")]  # noqa: E731
  for sparsifier in sparsifiers:
    name, c = "dense" if sparsifier == "none" else sparsifier, choices[sparsifier]
    base = accs(name)
    if not base or not accs(f"{name}+HAM"):
      continue
    notes = {
      "+HAM": f"(lr {c['lr']:g}, alpha {c['alpha']:g}, beta {c['beta']:g})",
      "+HAM tuned": f"HAM tuned - baseline (own lr {c.get('tuned_lr', float('nan')):g}, alpha = suggest_alpha)",
      "+Sign-In": f"Sign-In - baseline (balance {c.get('sign_in_balance', float('nan')):g}, reset every "
      f"{c.get('sign_in_every')} epochs)",
    }
    for suffix, note in notes.items():
      if other := accs(name + suffix):
        diff, p = 100 * (np.mean(other) - np.mean(base)), _common.welch_p(other, base)
        print(f"  {name:10s} {diff:+.2f}  p={p:.3f}  {note}")


def _log(t0: float, config: Config, r: dict) -> None:
  """Prints a finished run of ``config``: its setting and accuracies, or the epoch where it diverged (a diverged
  run has no accuracies: they are ``None``); ``t0``: the study's start (``time.perf_counter``)."""
  c = r["config"]  # resolved: defaults filled in; alpha may be "auto"
  if r["diverged"]:
    outcome = f"diverged at epoch {r['diverged_epoch']}"
  else:
    outcome = f"val {r['val_acc']:.4f} test {r['test_acc']:.4f} sparsity {r['sparsity']:.3f}"
  print(
    f"[{time.perf_counter() - t0:7.0f}s] {config.method:14s} lr={c['learning_rate']:g} "
    f"alpha={c['alpha']} beta={c['beta']:g} seed={config.seed}: {outcome}",
    flush=True,
  )


def parse_args(argv=None) -> argparse.Namespace:
  """The options of the sweep (``--sweep`` on the command line) or of the main study."""
  sweep = "--sweep" in (sys.argv[1:] if argv is None else argv)
  return _sweep_parse(argv) if sweep else _main_parse(argv)


def main(argv=None) -> None:
  args = parse_args(argv)
  if getattr(args, "sweep", False):  # only the sweep's options have --sweep
    return sweep_main(args, argv)
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  dataset = data_lib.load_dataset(args.dataset)
  base = Config(dataset=args.dataset, model=args.model, epochs=args.epochs, batch_size=args.batch_size)
  base = base.replace(sparsity=args.sparsity, progress=False)
  tuning_seeds = _common.tuning_seeds(args.tuning_seeds)
  tuning_rows, choices, final = [], {}, []
  provenance = _common.provenance(_common.command(argv, __file__))
  t0 = time.perf_counter()
  log = functools.partial(_log, t0)

  def suggest(config):  # "HAM tuned": alpha from suggest_alpha for this model, learning rate and seed
    return config.replace(alpha=suggested_alpha(config, dataset, args.target_ratio))

  def tune(configs, prepare=None):
    best, scores, _ = _common.tune(configs, dataset, tuning_seeds, prepare, log)
    for c, score in zip(configs, scores, strict=True):
      alpha = ("suggested" if prepare is suggest else c.alpha) if c.ham else ""
      sign_in = f"c={c.sign_in_balance:g},every={c.sign_in_every}" if c.sign_in else ""
      row = dict(method=c.method, lr=c.learning_rate, alpha=alpha, beta=c.beta if c.ham else "")
      tuning_rows.append(row | dict(sign_in=sign_in, val_acc_mean=score))
    return configs[best]

  for sparsifier in args.sparsifiers:
    cfg = base.replace(sparsifier=sparsifier)
    best_base = tune([cfg.replace(learning_rate=lr) for lr in args.lrs])
    grid = itertools.product(args.alphas, args.betas)
    best_ham = tune([best_base.replace(ham=True, alpha=a, beta=b) for a, b in grid])
    choices[sparsifier] = dict(lr=best_base.learning_rate, alpha=best_ham.alpha, beta=best_ham.beta)
    finals = [(best_base, None), (best_ham, None)]
    if not args.no_ham_tuned:  # HAM's own lr, jointly with alpha = suggest_alpha(lr) at each seed
      best = tune([cfg.replace(learning_rate=lr, ham=True, beta=0.0) for lr in args.lrs], suggest)
      choices[sparsifier]["tuned_lr"] = best.learning_rate
      finals.append((best, suggest))
    if sparsifier == "random" and args.sign_in_balances:  # next to HAM + random PaI (HAM paper, Table 2)
      grid = itertools.product(args.sign_in_balances, args.sign_in_every)
      best = tune([best_base.replace(sign_in=True, sign_in_balance=b, sign_in_every=e) for b, e in grid])
      choices[sparsifier].update(sign_in_balance=best.sign_in_balance, sign_in_every=best.sign_in_every)
      finals.append((best, None))
    for config, prepare in finals:
      for r in _common.train_seeds(config, dataset, range(args.seeds), prepare, log):
        r["method"] += " tuned" if prepare is suggest else ""
        final.append(r)
    # Saved after every sparsifier, so a partial run still leaves results behind.
    with (out / "tuning.csv").open("w", newline="") as f:
      writer = csv.DictWriter(f, fieldnames=list(tuning_rows[0]))
      writer.writeheader()
      writer.writerows(tuning_rows)
    argv_ = {**vars(args), "out": _common.display_path(args.out)}
    extra = dict(argv=argv_, choices=choices, tuning=tuning_rows, tuning_seeds=tuning_seeds)
    report.save_results(final, out, extra={**provenance, **extra, "wall_time_s": time.perf_counter() - t0})

  title = f"{args.dataset} / {args.model}, sparsity {args.sparsity}, {args.epochs} epochs, {args.seeds} seeds"
  _print_summary(final, choices, args.sparsifiers, title)
  print(f"\nwall time {time.perf_counter() - t0:.0f} s; results in {out}")
  _common.save_json(out / "choices.json", choices, cmd=provenance["command"])


# --- The sweep over sparsity (``--sweep``): all seeds of a setting in one XLA program (``jax.vmap`` of init and the
# whole training loop under ``jax.lax.scan``).

SWEEP_SPARSIFIERS = ("random", "gmp", "acdc", "rigl", "str")
SWEEP_SPARSITIES = (0.8, 0.9, 0.95, 0.98)
DENSE_ARMS = ("base", "ham", "sam", "sam+ham")
LANE_DTYPES = (jnp.int32, jnp.float32, jnp.float32, jnp.float32)  # seed, lr, alpha, decay
DENSE_PAIRS = (("base", "ham"), ("base", "sam"), ("base", "sam+ham"), ("sam", "sam+ham"), ("ham", "sam+ham"))
SWEEP_LABELS = {"random": "random PaI (ERK)", "gmp": "GMP", "acdc": "AC/DC", "rigl": "RigL", "str": "STR"}
ARM_LABELS = {"sam+ham": "SAM + HAM", "sam": "SAM", "ham": "HAM", "base": "baseline"}
WEIGHT_DECAY, SAM_RHO, STR_INIT = 5e-4, 0.05, -5.0
LIMIT, YLABEL = " (the compute budget's limit)", "HAM − baseline, test acc (points)"
MATCHED = 0.02  # two arms whose mean sparsity differs by more are not compared (STR sets its own sparsity)


def _sweep_parse(argv) -> argparse.Namespace:
  p = _common.Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--sweep", action="store_true")
  p.add_argument("--phase", default="all", choices=["tune", "pilot", "final", "report", "all"])
  p.add_argument("--families", nargs="+", default=["mlp", "cnn"], choices=["mlp", "cnn"])
  p.add_argument("--sparsifiers", nargs="+", default=list(SWEEP_SPARSIFIERS), choices=SWEEP_SPARSIFIERS)
  p.add_argument("--no-dense", action="store_true", help="skip the dense HAM / SAM / SAM + HAM comparison")
  decays = list(np.geomspace(1e-5, 1e-1, 8))
  _common.add_options(p, kind=_common.fraction, sparsities=list(SWEEP_SPARSITIES), power=0.8, level=0.05)
  _common.add_options(p, lrs=[0.1, 0.2, 0.4, 0.8], str_decays=decays, effect=0.5)
  _common.add_options(p, epochs=15, batch_size=128, width=128, tuning_seeds=2, lanes=16, max_seeds=512)
  _common.add_options(p, str_seeds=8)
  _common.add_options(p, kind=_common.number(int, 2), pilot_seeds=16)  # a spread needs two seeds
  _common.add_options(p, kind=_common.nonnegative_int, str_rounds=2)
  fast = dict(epochs=2, sparsities=[0.9], lrs=[0.1, 0.4], tuning_seeds=1, lanes=4, pilot_seeds=2, max_seeds=4)
  fast |= dict(str_decays=[1e-3, 1e-1], width=32, str_seeds=2, str_rounds=1)
  p.add_fast("smoke version: 2 epochs, 1 sparsity, 2 lrs, few seeds", **fast)
  p.add_argument("--out", type=_common.out_dir, default=Path(__file__).parent / "results" / "sparse_sweep")
  return p.parse_args(argv)


def _init(family: str, key, width: int, with_str: bool) -> dict:
  """Kernels ``N(0, 1 / fan_in)``, zero biases; with STR one threshold per kernel (``thr``). The CNN: two stride-2
  convs (kernel 5) on the length-40 signal, a dense layer, the head."""
  keys = iter(jax.random.split(key, 4))
  shapes = {
    "mlp": {"h0": (40, width), "h1": (width, width), "out": (width, 10)},
    "cnn": {"c0": (5, 1, 16), "c1": (5, 16, 32), "h0": (320, 64), "out": (64, 10)},
  }[family]
  params = {
    k: {"w": jax.random.normal(next(keys), s) / np.sqrt(np.prod(s[:-1])), "b": jnp.zeros(s[-1])}
    for k, s in shapes.items()
  }
  return params | ({"thr": {k: jnp.asarray(STR_INIT) for k in params}} if with_str else {})


def _conv(h, w):
  """Stride-2 "SAME" 1-D convolution of ``h`` (batch, length, in) with ``w`` (width, in, out), as a sum of strided
  slices times matrices (vectorises over lanes far better on CPU than a batched convolution)."""
  width, out = w.shape[0], -(-h.shape[1] // 2)
  pad = max(2 * (out - 1) + width - h.shape[1], 0)
  h = jnp.pad(h, ((0, 0), (pad // 2, pad - pad // 2), (0, 0)))
  return sum(h[:, k : k + 2 * out - 1 : 2] @ w[k] for k in range(width))


def _weights(params: dict) -> dict:
  """The effective kernels (after STR's soft threshold when ``params`` has thresholds)."""
  thr, kernels = params.get("thr"), {k: v["w"] for k, v in params.items() if k != "thr"}
  return {k: sparsity.str_sparse_weight(w, thr[k]) for k, w in kernels.items()} if thr else kernels


def _logits(params: dict, x):
  w, h = _weights(params), x[..., None]
  for k in [k for k in ("c0", "c1") if k in params]:
    h = jax.nn.relu(_conv(h, w[k]) + params[k]["b"])
  h = h.reshape(h.shape[0], -1)
  for k in [k for k in ("h0", "h1") if k in params]:
    h = jax.nn.relu(h @ w[k] + params[k]["b"])
  return h @ w["out"] + params["out"]["b"]


def _xent(params: dict, x, y):
  return optax.softmax_cross_entropy_with_integer_labels(_logits(params, x), y).mean()


def _seed_masks(masks, level: float, key):
  """ERK masks at random positions drawn from ``key`` (the library's masks take a static seed; here every vmapped
  seed draws its own)."""
  leaves, treedef = jax.tree.flatten(masks)
  sel = [i for i, m in enumerate(leaves) if m.ndim >= 2]
  zeros = sparsity.layer_zero_counts([leaves[i].shape for i in sel], level, "erk")
  for j, (i, z) in enumerate(zip(sel, zeros, strict=True)):
    n = leaves[i].size
    perm = jax.random.permutation(jax.random.fold_in(key, j), n)
    leaves[i] = jnp.zeros(n, bool).at[perm[: n - z]].set(True).reshape(leaves[i].shape)
  return treedef.unflatten(leaves)


def _sweep_tx(method: str, level: float, arm: str, lr, alpha, decay, total: int, per_epoch: int):
  """``sparsifier(ham(inner))`` / ``sam(ham(inner))``: SGD + momentum 0.9, weight decay 5e-4, cosine schedule
  (the same schedule for HAM's mirror step, beta = 0); STR's thresholds decay by ``decay / lr`` instead."""
  schedule = lambda t: lr * 0.5 * (1 + jnp.cos(jnp.pi * jnp.minimum(t, total) / total))  # noqa: E731
  is_thr = lambda p: jax.tree_util.tree_map_with_path(lambda path, _: path[0].key == "thr", p)  # noqa: E731
  not_thr = lambda p: jax.tree_util.tree_map_with_path(lambda path, _: path[0].key != "thr", p)  # noqa: E731
  inner = optax.chain(
    optax.add_decayed_weights(WEIGHT_DECAY, mask=not_thr if method == "str" else None),
    optax.add_decayed_weights(decay / lr, mask=is_thr) if method == "str" else optax.identity(),
    optax.sgd(schedule, momentum=0.9),
  )
  tx = inner if arm == "inner" else ham_optax.ham(inner, schedule, alpha, 0.0)  # alpha = 0: inner exactly
  if "sam" in arm:
    return optax.contrib.sam(tx, optax.chain(optax.contrib.normalize(), optax.sgd(SAM_RHO)), opaque_mode=True)
  end = max(int(0.75 * total), 1)
  wrap = {
    "random": lambda: sparsity.random_pruning(tx, level),
    "rigl": lambda: sparsity.rigl(tx, level, update_every=per_epoch, end_step=end),
    "gmp": lambda: sparsity.magnitude_pruning(
      tx, level, begin_step=int(0.1 * total), end_step=end, frequency=per_epoch
    ),
    "acdc": lambda: sparsity.acdc(tx, level, total_steps=total),
  }
  return wrap[method]() if method in wrap else tx


def make_sweep_runner(cell: tuple, dataset, epochs: int, batch: int, width: int):
  """Jitted ``(seeds, lrs, alphas, decays) -> dict of arrays`` training ``cell = (family, method, level, arm)`` on
  every lane (one seed and setting each): final validation / test accuracy, weight sparsity, last-epoch training
  loss and ``finite`` (False: the run diverged)."""
  family, method, level, arm = cell
  xtr, ytr = jnp.asarray(dataset.x_train), jnp.asarray(dataset.y_train)
  n, per_epoch = len(xtr), len(xtr) // batch
  total = per_epoch * epochs

  def one(seed, lr, alpha, decay):
    k_init, k_data, k_mask = jax.random.split(jax.random.key(seed), 3)
    params = _init(family, k_init, width, method == "str")
    tx = _sweep_tx(method, level, arm, lr, alpha, decay, total, per_epoch)
    state = tx.init(params)
    if method in ("random", "rigl"):
      state = state._replace(masks=_seed_masks(state.masks, level, k_mask))
    if method in ("random", "rigl", "gmp", "acdc"):
      params = sparsity.apply_masks(params, state)
    epoch_order = lambda e: jax.random.permutation(jax.random.fold_in(k_data, e), n)[: per_epoch * batch]  # noqa: E731
    order = jax.vmap(epoch_order)(jnp.arange(epochs)).reshape(total, batch)

    def step(carry, idx):
      p, s = carry
      value, grads = jax.value_and_grad(_xent)(p, xtr[idx], ytr[idx])
      extra = {"grad_fn": lambda q, _: jax.grad(_xent)(q, xtr[idx], ytr[idx])} if "sam" in arm else {}
      updates, s = tx.update(grads, s, p, **extra)
      return (optax.apply_updates(p, updates), s), value

    (params, _), losses = jax.lax.scan(step, (params, state), order)
    acc = lambda x, y: jnp.mean(jnp.argmax(_logits(params, jnp.asarray(x)), -1) == jnp.asarray(y))  # noqa: E731
    leaves_finite = jnp.array([jnp.isfinite(v).all() for v in jax.tree.leaves(params)])
    weights = list(_weights(params).values())
    return {
      "val": acc(dataset.x_val, dataset.y_val),
      "test": acc(dataset.x_test, dataset.y_test),
      "sparsity": sum((w == 0).sum() for w in weights) / sum(w.size for w in weights),
      "loss": losses[-per_epoch:].mean(),
      "finite": jnp.isfinite(losses).all() & jnp.all(leaves_finite),
    }

  return jax.jit(jax.vmap(one))


def _cell_file(cell: tuple) -> str:
  return "cells/{}-{}-{:g}-{}.json".format(*cell)


class _Sweep:
  """The sweep's state on disk: ``alphas.json``, ``str_decay.json`` and one ``cells/<cell>.json`` per family x
  sparsifier x sparsity x arm (tuning scores, the choice, every finished seed), written as each part finishes, so a
  rerun skips finished work."""

  def __init__(self, args, dataset, argv=None):
    self.args, self.dataset, self.out = args, dataset, Path(args.out)
    self.cmd, self.runners = _common.command(argv, __file__), {}

  def groups(self):
    """Lists of cells that train in one program: the two arms of a setting (the baseline is HAM at alpha = 0,
    which is the inner optimizer exactly: HAM's factor is ``exp(0) = 1``); dense: base / HAM, SAM / SAM + HAM."""
    a = self.args
    for f in a.families:
      yield from ([(f, m, lv, arm) for arm in ("base", "ham")] for m in a.sparsifiers for lv in a.sparsities)
      if not a.no_dense:
        yield from ([(f, "dense", 0.0, arm) for arm in arms] for arms in (DENSE_ARMS[:2], DENSE_ARMS[2:]))

  def _load(self, name: str) -> dict:
    path = self.out / name
    return json.loads(path.read_text()) if path.exists() else {}

  def _save(self, name: str, payload: dict) -> None:
    _common.save_json(self.out / name, payload, cmd=self.cmd)

  def cell(self, cell: tuple) -> dict:
    """What is saved of ``cell`` (empty before its tuning)."""
    return self._load(_cell_file(cell))

  def run(self, cell: tuple, settings: list[tuple]) -> list[dict]:
    """Trains ``cell``'s program at every ``(seed, lr, alpha, decay)``, ``--lanes`` lanes per call (the last call
    padded). STR's level is set by its decay and the arms differ in alpha only: they share a program."""
    a, rows, arm = self.args, [], cell[3].replace("+ham", "").replace("base", "ham")
    key = (*cell[:2], 0.0 if cell[1] == "str" else cell[2], arm)
    if key not in self.runners:
      self.runners[key] = make_sweep_runner(key, self.dataset, a.epochs, a.batch_size, a.width)
    for i in range(0, len(settings), a.lanes):
      chunk = settings[i : i + a.lanes]
      cols = zip(*chunk, *[chunk[-1]] * (a.lanes - len(chunk)), strict=True)  # padded to the lanes
      res = jax.device_get(self.runners[key](*map(jnp.asarray, cols, LANE_DTYPES)))
      rows += [{k: v[j].item() for k, v in res.items()} for j in range(len(chunk))]  # floats, finite: bool
    return rows

  def run_group(self, jobs: list[tuple[tuple, list[tuple]]]) -> list[tuple[tuple, list[dict]]]:
    """``[(cell, settings), ...]`` of one program in one batch of calls: ``(cell, rows)`` per job."""
    rows = iter(self.run(jobs[0][0], [s for _, settings in jobs for s in settings]) if jobs else [])
    return [(cell, list(itertools.islice(rows, len(settings)))) for cell, settings in jobs]

  def alpha(self, family: str, lr: float) -> float:
    """``suggest_alpha`` for the dense model of ``family`` at ``lr`` (first tuning seed, its first 20 minibatches,
    the schedule of the run)."""
    alphas, key, a = self._load("alphas.json"), f"{family}@{lr:g}", self.args
    if key not in alphas:
      params = _init(family, jax.random.split(jax.random.key(_common.TUNING_SEED0), 3)[0], a.width, False)
      x, y, b = self.dataset.x_train, self.dataset.y_train, a.batch_size
      batches = [(x[i : i + b], y[i : i + b]) for i in range(0, 20 * b, b)]
      inner = _sweep_tx("dense", 0.0, "inner", lr, 0.0, 0.0, a.epochs * (len(x) // b), 1)
      alphas[key] = ham_optax.suggest_alpha(lambda p, batch: _xent(p, *batch), params, batches, inner, lr)
      self._save("alphas.json", alphas)
    return alphas[key]

  def decay(self, family: str, level: float, arm: str, lr: float) -> float:
    """STR: the threshold decay (times lr) at which ``arm`` reaches sparsity ``level`` at ``lr``, from
    ``str_decay.json`` (:meth:`calibrate` fills it for every arm, learning rate and sparsity of ``family``)."""
    cal = self._load("str_decay.json")
    if f"{family}/{arm}@{lr:g}" not in cal:
      cal = self.calibrate(family)
    return cal[f"{family}/{arm}@{lr:g}"]["chosen"][f"{level:g}"]

  def calibrate(self, family: str) -> dict:
    """STR's decay per arm, learning rate and target sparsity, on ``--str-seeds`` calibration seeds (tuning seeds,
    never the test seeds): the mean sparsity reached over the grid ``--str-decays``, then ``--str-rounds`` times
    per target the decay interpolated (in log decay, :func:`_decay_for`) from the points so far, run and added as
    a point. The chosen decay is the last interpolation."""
    a, seeds = self.args, _common.tuning_seeds(self.args.str_seeds)
    cells = {arm: (family, "str", 0.0, arm) for arm in ("base", "ham")}
    points = {(arm, lr): [] for arm in cells for lr in a.lrs}

    def measure(requests: list[tuple]) -> None:  # [(arm, lr, decay), ...], every seed of each
      alphas = [self.setting(cells[arm], lr)[0] for arm, lr, _ in requests]  # level 0: no decay asked for
      jobs = [
        (cells[r[0]], [(s, r[1], al, r[2]) for s in seeds]) for r, al in zip(requests, alphas, strict=True)
      ]
      for r, (_, rows) in zip(requests, self.run_group(jobs), strict=True):
        finite = [row["sparsity"] for row in rows if row["finite"]]
        points[r[:2]].append((r[2], float(np.mean(finite)) if finite else None))

    measure([(*key, d) for key in points for d in a.str_decays])
    for _ in range(a.str_rounds):
      measure([(*key, _decay_for(points[key], lv)) for key in points for lv in a.sparsities])
    cal = self._load("str_decay.json") | {"seeds": seeds}
    for (arm, lr), pts in points.items():
      chosen = {f"{lv:g}": _decay_for(pts, lv) for lv in a.sparsities}
      cal[f"{family}/{arm}@{lr:g}"] = dict(points=[list(pt) for pt in pts], chosen=chosen)
    self._save("str_decay.json", cal)
    return cal

  def setting(self, cell: tuple, lr: float) -> tuple[float, float]:
    """``(alpha, decay)`` of ``cell`` at ``lr``: alpha from ``suggest_alpha`` with HAM (else 0), STR's decay."""
    family, method, level, arm = cell
    alpha = self.alpha(family, lr) if "ham" in arm else 0.0
    return alpha, self.decay(family, level, arm, lr) if method == "str" and level else 0.0

  def tune(self, group: list[tuple]) -> None:
    """Per cell, the lr with the best mean validation accuracy over the tuning seeds (a diverged run scores 0):
    the same budget (one run per lr and tuning seed) for every arm."""
    seeds, lrs = _common.tuning_seeds(self.args.tuning_seeds), self.args.lrs
    todo = [c for c in group if not self.cell(c)]
    jobs = [(c, [(s, lr, *self.setting(c, lr)) for lr in lrs for s in seeds]) for c in todo]
    for cell, rows in self.run_group(jobs):
      per_lr = [rows[i * len(seeds) : (i + 1) * len(seeds)] for i in range(len(lrs))]
      scores = [float(np.mean([r["val"] if r["finite"] else 0.0 for r in lr_rows])) for lr_rows in per_lr]
      lr = lrs[int(np.argmax(scores))]
      alpha, decay = self.setting(cell, lr)
      choice = dict(lr=lr, alpha=alpha, decay=decay, seeds={})
      self._save(_cell_file(cell), dict(cell=list(cell), lrs=lrs, scores=scores, tuning=rows, **choice))

  def final(self, group: list[tuple], count: int) -> None:
    """Seeds ``0 .. count - 1`` of every cell of ``group`` at its tuned setting (the missing ones only)."""
    self.tune(group)
    cells = {c: self.cell(c) for c in group}
    todo = {c: [s for s in range(count) if str(s) not in d["seeds"]] for c, d in cells.items()}
    jobs = [(c, [(s, d["lr"], d["alpha"], d["decay"]) for s in todo[c]]) for c, d in cells.items() if todo[c]]
    for cell, rows in self.run_group(jobs):
      cells[cell]["seeds"].update({str(s): r for s, r in zip(todo[cell], rows, strict=True)})
      self._save(_cell_file(cell), cells[cell])

  def pairs(self, study: bool = False) -> list[tuple]:
    """``(family, label, base cell, other cell)`` of every comparison: HAM against its baseline per sparsifier and
    sparsity, then (dense) HAM, SAM and SAM + HAM against the baseline, SAM + HAM against SAM and against HAM.
    Of the families and sparsifiers chosen on the command line, or with ``study`` of the whole study's."""
    out, a = [], self.args
    for f in ("mlp", "cnn") if study else a.families:
      methods = SWEEP_SPARSIFIERS if study else a.sparsifiers
      out += [(f, m, (f, m, lv, "base"), (f, m, lv, "ham")) for m in methods for lv in a.sparsities]
      if not a.no_dense:
        out += [(f, f"{o} − {b}", (f, "dense", 0.0, b), (f, "dense", 0.0, o)) for b, o in DENSE_PAIRS]
    return out

  def plan(self) -> dict:
    """The seed count: the smallest n whose paired t-test at level / m (Bonferroni, the first and strictest step of
    Holm's procedure over the m sparse comparisons) detects ``--effect`` points with ``--power``, given the median
    spread of the paired differences over the pilot seeds; capped at ``--max-seeds``. Over every sparse
    comparison of the study that has its pilot, whichever part of it a command runs."""
    a, sds = self.args, []
    for _, method, base, other in self.pairs(study=True):
      if method in SWEEP_SPARSIFIERS:
        b, o = (self.cell(c).get("seeds", {}) for c in (base, other))
        pilot = [s for s in map(str, range(a.pilot_seeds)) if s in b and s in o]
        d = [100 * (o[s]["test"] - b[s]["test"]) for s in pilot if b[s]["finite"] and o[s]["finite"]]
        if len(pilot) == a.pilot_seeds:
          sds.append(float(np.std(d, ddof=1)))
    m, sd = len(sds), float(np.median(sds))
    needed = next(n for n in range(3, 100000) if _power(n, sd, a.effect, a.level / m) >= a.power)
    used = min(-(-needed // a.lanes) * a.lanes, max(a.max_seeds, a.pilot_seeds))
    quartiles = list(np.percentile(sds, [25, 75]))
    plan = dict(comparisons=m, pilot_seeds=a.pilot_seeds, sd_median=sd, sd_quartiles=quartiles)
    plan |= dict(effect=a.effect, level=a.level, power_target=a.power, n_needed=needed, n_used=used)
    plan["power_at_n_used"] = _power(used, sd, a.effect, a.level / m)
    self._save("power.json", plan)
    return plan


def _power(n: int, sd: float, effect: float, level: float) -> float:
  """Power of a two-sided paired t-test at ``level`` with ``n`` pairs to detect a mean difference ``effect`` when the
  differences have standard deviation ``sd`` (noncentral t, noncentrality ``effect * sqrt(n) / sd``)."""
  from scipy import stats

  t, nc = stats.t.ppf(1 - level / 2, n - 1), effect * np.sqrt(n) / sd
  return float(stats.nct.sf(t, n - 1, nc) + stats.nct.cdf(-t, n - 1, nc))


def _decay_for(points: list[tuple], level: float) -> float:
  """The decay whose sparsity is ``level``, interpolated in log decay between the ``(decay, mean sparsity)``
  points around it (points whose runs all diverged left out; the sparsity taken as non-decreasing in the decay)."""
  ok = sorted((d, s) for d, s in points if s is not None)
  reached = np.maximum.accumulate([s for _, s in ok])
  return float(np.exp(np.interp(level, reached, np.log([d for d, _ in ok]))))


def holm(p_values) -> list[float]:
  """Holm's step-down adjusted p-values (a NaN p counts as 1)."""
  p = np.nan_to_num(np.asarray(p_values, float), nan=1.0)
  adjusted, running = np.empty_like(p), 0.0
  for k, i in enumerate(np.argsort(p)):
    running = max(running, min(1.0, (len(p) - k) * p[i]))
    adjusted[i] = running
  return adjusted.tolist()


def _compare(family, label, base, other) -> dict:
  """The paired comparison of two cells' finished seeds: test accuracy in points, mean difference with its 95 %
  t-interval, the paired t-test, diverged seeds and the sparsity reached."""
  from scipy import stats

  b, o = base["seeds"], other["seeds"]
  seeds = sorted(set(b) & set(o), key=int)
  tests = [[100 * c[s]["test"] if c[s]["finite"] else np.nan for s in seeds] for c in (b, o)]
  stat = _common.paired_test(*tests)
  d = [100 * (o[s]["test"] - b[s]["test"]) for s in seeds if b[s]["finite"] and o[s]["finite"]]
  half = float(stats.t.ppf(0.975, len(d) - 1) * np.std(d, ddof=1) / np.sqrt(len(d))) if len(d) > 1 else np.nan
  mean = lambda c, k, x=1: float(np.mean([x * c[s][k] for s in seeds if c[s]["finite"]]))  # noqa: E731
  reached, diff = [mean(c, "sparsity") for c in (b, o)], stat["mean_diff"]
  diverged = [sum(not c[s]["finite"] for s in seeds) for c in (b, o)]
  row = dict(family=family, label=label, sparsity=base["cell"][2], n=stat["n"], diff=diff)
  row |= dict(ci=[diff - half, diff + half], p=stat["p_value"], base_acc=mean(b, "test", 100))
  row |= dict(other_acc=mean(o, "test", 100), diverged=diverged, reached=reached)
  row |= dict(matched=abs(reached[1] - reached[0]) <= MATCHED, seeds=len(seeds), lr=[base["lr"], other["lr"]])
  return row | {"alpha": other["alpha"]}


def sweep_report(sweep: _Sweep) -> dict:
  """Every comparison with Holm-adjusted p-values (separately over the sparse and the dense comparisons), the
  figure, ``summary.json`` and ``summary.md``."""
  rows = [_compare(f, label, sweep.cell(b), sweep.cell(o)) for f, label, b, o in sweep.pairs()]
  for sparse in (True, False):
    chosen = [r for r in rows if (r["label"] in SWEEP_SPARSIFIERS) == sparse]
    for r, p in zip(chosen, holm([r["p"] for r in chosen]), strict=True):
      r["p_holm"] = p
  args = {**vars(sweep.args), "out": _common.display_path(sweep.args.out)}
  power = sweep._load("power.json") or None
  summary = {**_common.provenance(sweep.cmd), "args": args, "power": power, "rows": rows}
  _common.write_json(sweep.out / "summary.json", summary)
  (sweep.out / "summary.md").write_text(sweep_table(summary) + "\n")
  plot_sweep(rows, sweep.out / "ham_minus_baseline.png")
  return summary


def _diff(r: dict) -> str:
  return f"{r['diff']:+.2f} [{r['ci'][0]:+.2f}, {r['ci'][1]:+.2f}]"


def sweep_table(summary: dict, dense: bool = False) -> str:
  """The sparse comparisons (or, with ``dense``, the dense HAM / SAM ones: B − A) as a Markdown table. Sparsity of
  STR: the target, then the mean reached by baseline / HAM."""
  rows = []
  for r in summary["rows"]:
    if (r["label"] in SWEEP_SPARSIFIERS) == dense:
      continue
    reached = f" ({r['reached'][0]:.3f} / {r['reached'][1]:.3f})" if r["label"] == "str" else ""
    level = [] if dense else [f"{r['sparsity']:g}{reached}" + ("" if r["matched"] else " **not matched**")]
    p = f"{r['p_holm']:.3f}" if r["p_holm"] >= 0.001 else "<0.001"
    p = f"**{p}**" if r["p_holm"] < 0.05 else p
    accs = [f"{r['base_acc']:.2f}", f"{r['other_acc']:.2f}", _diff(r), p]
    label = SWEEP_LABELS.get(r["label"]) or _arms(r["label"])
    rows.append([r["family"].upper(), label, *level, *accs, r["n"], "{} / {}".format(*r["diverged"])])
  arms = ["A (%)", "B (%)"] if dense else ["baseline (%)", "HAM (%)"]
  header = ["model", *(["B − A"] if dense else ["sparsifier", "sparsity"]), *arms, "difference [95 % CI]"]
  return _common.markdown_table([*header, "p (Holm)", "pairs", "diverged"], rows)


def _p(p: float) -> str:
  return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _arms(label: str) -> str:
  """``"sam+ham − base"`` -> ``"SAM + HAM − baseline"``."""
  return " − ".join(ARM_LABELS[arm] for arm in label.split(" − "))


def _growth(cells: list[dict]) -> list[tuple[str, float, float]]:
  """Per model × sparsifier line whose arms reached matched sparsities: the change of HAM − baseline from the lowest
  to the highest sparsity and its Holm-adjusted p (two-sided z-test of the two cells' independent estimates)."""
  from scipy import stats

  lines, out = {}, []
  for r in cells:
    lines.setdefault((r["family"], r["label"]), []).append(r)
  matched = {k: v for k, v in lines.items() if all(r["matched"] for r in v)}
  for (family, method), line in sorted(matched.items(), key=lambda kv: kv[0][0] != "mlp"):
    lo, hi = (f(line, key=lambda r: r["sparsity"]) for f in (min, max))  # one sparsity: the same cell
    se = [(r["ci"][1] - r["diff"]) / stats.t.ppf(0.975, r["n"] - 1) for r in (lo, hi)]
    change = hi["diff"] - lo["diff"]
    p = 2 * stats.norm.sf(abs(change) / np.hypot(*se))
    out.append((f"{family.upper()} {SWEEP_LABELS[method]}", change, p))
  return [(name, change, q) for (name, change, _), q in zip(out, holm([p for *_, p in out]), strict=True)]


def sweep_findings(summary: dict, readme: bool = False) -> str:
  """What the sweep shows, from its numbers: the significant cells (Holm), whether the gain grows from the lowest
  to the highest sparsity (:func:`_growth`), the dense HAM / SAM rows and the seed count against the power plan.
  Cells whose arms reached sparsities more than ``MATCHED`` apart are named, not compared. ``readme``: one
  sentence."""
  rows, plan = summary["rows"], summary["power"]
  every = [r for r in rows if r["label"] in SWEEP_SPARSIFIERS]
  sparse, unmatched = [r for r in every if r["matched"]], [r for r in every if not r["matched"]]
  name = lambda r: f"{r['family'].upper()} {SWEEP_LABELS[r['label']]} {r['sparsity']:g}"  # noqa: E731
  diff = lambda r: _diff(r).replace("-", "−")  # noqa: E731
  up = [f"{name(r)} {diff(r)}" for r in sparse if r["p_holm"] < 0.05 and r["diff"] > 0]
  down = [f"{name(r)} {diff(r)}" for r in sparse if r["p_holm"] < 0.05 and r["diff"] < 0]
  lines = _growth(every)
  grows, seeds = [g for g in lines if g[1] > 0], min(r["seeds"] for r in rows)
  if readme:
    return (
      f"HAM is significantly ahead in {len(up)} and behind in {len(down)} of {len(sparse)} sparse settings "
      f"({seeds} seeds each, Holm-corrected); its gain grows with sparsity in {len(grows)} of {len(lines)} "
      "model × sparsifier lines."
    )
  text = [
    f"HAM − baseline, test accuracy in points with 95 % intervals, {seeds} seeds per cell, paired t-test, Holm-"
    f"corrected over the {len(every)} sparse cells. "
    + (f"**Significantly ahead:** {'; '.join(up)}. " if up else "**HAM is significantly ahead in no cell.** ")
    + (f"**Significantly behind:** {'; '.join(down)}." if down else "It is significantly behind in none.")
  ]
  if unmatched:
    text[0] += (
      f" Not compared (the arms' sparsities differ by more than {MATCHED:g}): "
      + ", ".join(f"{name(r)} ({r['reached'][0]:.3f} / {r['reached'][1]:.3f})" for r in unmatched)
      + "."
    )
  moved = {
    sign: ", ".join(f"{k} ({c:+.2f})".replace("-", "−") for k, c, q in lines if q < 0.05 and c * sign > 0)
    for sign in (1, -1)
  }
  text.append(
    f"From sparsity {min(r['sparsity'] for r in every):g} to {max(r['sparsity'] for r in every):g} HAM's "
    f"difference grows in {len(grows)} of {len(lines)} model × sparsifier lines; significantly (z-test, Holm over "
    f"the lines) it grows in {moved[1] or 'none'} and shrinks in {moved[-1] or 'none'}."
  )
  if dense := [r for r in rows if r["label"] not in SWEEP_SPARSIFIERS]:
    text.append(
      f"Dense (Holm over the {len(dense)} dense comparisons): "
      + "; ".join(f"{r['family'].upper()} {_arms(r['label'])} {diff(r)} ({_p(r['p_holm'])})" for r in dense)
      + "."
    )
  return "\n\n".join(text + ([_seed_count(plan, seeds)] if plan else []))


def _seed_count(plan: dict, seeds: int) -> str:
  """The pilot's spread, the seed count it asks for, and the power of the ``seeds`` run."""
  level = plan["level"] / plan["comparisons"]
  power = lambda effect: _power(seeds, plan["sd_median"], effect, level)  # noqa: E731
  detectable = next(d for d in np.arange(0.01, 20, 0.01) if power(d) >= plan["power_target"])
  return (
    f"Seed count: the pilot's {plan['pilot_seeds']} seeds gave a median standard deviation of the paired "
    f"differences of {plan['sd_median']:.2f} points (quartiles {plan['sd_quartiles'][0]:.2f}–"
    f"{plan['sd_quartiles'][1]:.2f}) over the {plan['comparisons']} sparse cells; detecting "
    f"+{plan['effect']:g} points with {100 * plan['power_target']:.0f} % power at {plan['level']:g} / "
    f"{plan['comparisons']} needs n = {plan['n_needed']} seeds per cell. The study ran {seeds}"
    f"{LIMIT if seeds < plan['n_needed'] else ''}: power "
    f"{100 * power(plan['effect']):.1f} % for +{plan['effect']:g} at the median spread; at that spread {seeds} "
    f"seeds detect +{detectable:.2f} points with {100 * plan['power_target']:.0f} % power."
  )


def plot_sweep(rows: list[dict], path: Path) -> None:
  """HAM − baseline against sparsity, one line per sparsifier, one panel per model, 95 % intervals as error bars;
  cells whose arms reached unmatched sparsities are left out."""
  plt = _common.pyplot()
  families = sorted({r["family"] for r in rows}, key=["mlp", "cnn"].index)
  fig, axes = plt.subplots(1, len(families), figsize=(5.2 * len(families), 3.8), squeeze=False)
  for ax, family in zip(axes[0], families, strict=False):
    for k, method in enumerate(SWEEP_SPARSIFIERS):
      if rs := [r for r in rows if r["family"] == family and r["label"] == method]:
        y = np.array([r["diff"] if r["matched"] else np.nan for r in rs])  # unmatched: not a comparison
        ci, x = np.array([r["ci"] for r in rs]).T, np.arange(len(rs)) + 0.06 * (k - 2)
        ax.errorbar(x, y, yerr=[y - ci[0], ci[1] - y], marker="o", capsize=3, label=SWEEP_LABELS[method])
        ax.set_xticks(np.arange(len(rs)), [f"{r['sparsity']:g}" for r in rs])
    ax.axhline(0, color="gray", lw=0.8)
    ax.set(title=f"{family.upper()} (MNIST-1D)", xlabel="sparsity", ylabel=YLABEL)
  axes[0][0].legend(fontsize=8)
  _common.save_figure(fig, path)


def sweep_main(args: argparse.Namespace, argv=None) -> None:
  sweep = _Sweep(args, data_lib.load_dataset("mnist1d"), argv)
  groups, t0 = list(sweep.groups()), time.perf_counter()
  if args.phase in ("tune", "all"):
    for group in tqdm(groups, desc="tune"):
      sweep.tune(group)
  if args.phase in ("pilot", "all"):
    for group in tqdm(groups, desc=f"pilot: {args.pilot_seeds} seeds"):
      sweep.final(group, args.pilot_seeds)
  if args.phase in ("final", "all"):
    n = sweep.plan()["n_used"]
    for count in [*range(2 * args.pilot_seeds, n, args.pilot_seeds), n]:  # rounds: a stop leaves equal counts
      for group in tqdm(groups, desc=f"final: {count} seeds"):
        sweep.final(group, count)
  if args.phase in ("report", "final", "all"):
    summary = sweep_report(sweep)
    print(sweep_table(summary), "\n", sweep_table(summary, dense=True), sep="\n")
  print(f"wall time {time.perf_counter() - t0:.0f} s; results in {args.out}")


if __name__ == "__main__":
  main()
