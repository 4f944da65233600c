"""HAM on a small transformer: grokking on modular addition, then fine-tuning to subtraction (forgetting).

Grokking (``a + b mod p``; Power et al., 2022): AdamW, HAM(AdamW), AdamW with its weight decay switched off at
``--switch-fraction``, HAM(SGD+momentum) and SGD+momentum, each with the same number of settings, tuned on the
validation grokking time (``--tune-seeds`` seeds from 100) and evaluated on ``--seeds`` seeds. Fine-tuning: the
AdamW models are fine-tuned to ``a - b mod p`` with AdamW, HAM(AdamW) and NanoAdam (three settings each, selected
on the mean of the new and old tasks' validation accuracy). Comparisons with AdamW are paired by seed
(``_common.paired_test``). Setup and readings: docs/guides/transformers.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np
from ham_optax_examples import data as data_lib
from ham_optax_examples import grokking

import _common

GROK_METHODS = ("adamw", "ham_adamw", "adamw_wd_off", "ham_sgdm", "sgdm")
FT_METHODS = ("adamw", "ham_adamw", "nanoadam")
_NAMES = ("AdamW", "HAM(AdamW)", "AdamW, wd switched off", "HAM(SGD+momentum)", "SGD+momentum", "NanoAdam")
LABELS = dict(zip((*GROK_METHODS, "nanoadam"), _NAMES, strict=True))


def build_parser() -> _common.Parser:
  p = _common.Parser(description=__doc__.split("\n\n")[0])
  # the task (p * p pairs split train / validation / rest test), the one-block transformer (4 heads), grokking
  _common.add_options(p, kind=_common.number(int, 2), p=23)
  _common.add_options(p, kind=_common.fraction, train_fraction=0.7, val_fraction=0.15)
  _common.add_options(p, width=32, steps=1000, eval_every=25, lr=3e-3)
  decays = dict(wd_grid=[1.0, 2.0, 3.0, 5.0], sgd_beta=0.03, ft_wd=0.0)
  _common.add_options(p, kind=_common.nonnegative_float, **decays)
  _common.add_options(p, kind=_common.number(float, 0, 1), switch_fraction=0.5)
  grids = {  # flat lists of pairs
    "ham": ([10.0, 0.0, 10.0, 1.0, 100.0, 0.0, 100.0, 1.0], "alpha beta ..."),
    "sgd": ([0.1, 1.0, 0.1, 10.0, 0.3, 1.0, 0.3, 10.0], "lr alpha ..."),
    "plain-sgd": ([0.1, 0.03, 0.1, 0.1, 0.3, 0.03, 0.3, 0.1], "lr wd ... of SGD + momentum (L2 decay)"),
  }
  for name, (default, text) in grids.items():
    p.add_argument(f"--{name}-grid", type=_common.finite_float, nargs="+", default=default, help=text)
  _common.add_options(p, ft_steps=300, ft_lr_grid=[1e-3, 3e-3, 1e-2])
  _common.add_options(p, kind=_common.finite_float, ft_alpha_grid=[10.0, 100.0, 1000.0])
  _common.add_options(p, kind=_common.number(float, 0, 1, lo_open=True), nano_fraction=0.1)
  _common.add_options(p, seeds=5, tune_seeds=1)  # evaluation seeds 0 .. N-1, tuning seeds from 100
  methods = dict(nargs="+", default=list(GROK_METHODS[:4]), choices=GROK_METHODS)
  p.add_argument("--grok-methods", **methods, help="must include adamw")
  p.add_argument("--skip-finetune", action="store_true", help="grokking study only")
  fast = dict(p=7, steps=60, ft_steps=20, seeds=2, width=16, eval_every=10)
  p.add_fast("smoke run: p=7, 60 steps, 2 seeds", **fast)
  p.add_argument("--replot", action="store_true", help="only redo tables and figures from OUT/results.json")
  p.add_argument("--out", type=_common.out_dir, default=_common.RESULTS / "transformers")
  return p


def _check(p: _common.Parser, args: argparse.Namespace) -> None:
  """What the options' types cannot check alone (an argparse error naming the option)."""
  if "adamw" not in args.grok_methods:
    p.error("--grok-methods must include adamw (its models are the fine-tuning starting points)")
  if args.train_fraction + args.val_fraction >= 1:
    p.error("--train-fraction + --val-fraction must be < 1 (the rest is the test split)")
  try:  # the p * p pairs (a few hundred): every split must get one
    data_lib.load_modular(p=args.p, train_fraction=args.train_fraction, val_fraction=args.val_fraction)
  except ValueError as e:
    p.error(f"--p: {e}")
  for name in ("steps", "ft_steps"):
    if getattr(args, name) % args.eval_every:
      p.error(f"--{name.replace('_', '-')} must be a multiple of --eval-every ({args.eval_every})")
  if args.width % 4:
    p.error(f"--width must be a multiple of the 4 attention heads, got {args.width}")
  pairs = {"ham": ("alpha", "beta"), "sgd": ("lr", "alpha"), "plain_sgd": ("lr", "wd")}
  for name, names in pairs.items():
    values, option = getattr(args, f"{name}_grid"), f"--{name.replace('_', '-')}-grid"
    if len(values) % 2:
      p.error(f"{option} takes ({names[0]}, {names[1]}) pairs: an even number of values, got {len(values)}")
    for pair in _pairs(values, names):
      if pair.get("lr", 1.0) <= 0 or min(pair.get("beta", 0.0), pair.get("wd", 0.0)) < 0:
        p.error(f"{option}: learning rates must be > 0, beta and wd >= 0, got {pair}")


def _pairs(values: list[float], names: tuple[str, str]) -> list[dict[str, float]]:
  if len(values) % 2:
    raise ValueError(f"grid of ({names[0]}, {names[1]}) pairs needs an even number of values, got {values}")
  return [{names[0]: values[i], names[1]: values[i + 1]} for i in range(0, len(values), 2)]


def _grid(method: str, args: argparse.Namespace, wd: float) -> list[dict[str, float]]:
  if method in ("adamw", "adamw_wd_off"):
    return [{"lr": args.lr, "wd": w} for w in args.wd_grid]
  if method == "ham_adamw":
    return [{"lr": args.lr, "wd": wd, **ab} for ab in _pairs(args.ham_grid, ("alpha", "beta"))]
  if method == "sgdm":
    return _pairs(args.plain_sgd_grid, ("lr", "wd"))
  return [{**la, "beta": args.sgd_beta} for la in _pairs(args.sgd_grid, ("lr", "alpha"))]


def _stack(settings: list[dict[str, float]], repeat: int) -> dict[str, list[float]]:
  """Hyperparameter rows: every setting ``repeat`` times (setting-major)."""
  keys = sorted({k for s in settings for k in s})
  return {k: [s.get(k, 0.0) for s in settings for _ in range(repeat)] for k in keys}


def _mean_std(x: np.ndarray, scale: float = 1.0, digits: int = 1) -> str:
  x = np.asarray(x, float)
  s = _common.mean_std(x[np.isfinite(x)]) if np.isfinite(x).any() else None  # diverged runs left out
  return "-" if s is None else f"{scale * s['mean']:.{digits}f} ± {scale * s['std']:.{digits}f}"


def _run(method, graphdef, params, hp, train, evals, steps, args, **kw):
  kw.update(eval_every=args.eval_every, switch_step=int(args.switch_fraction * args.steps))
  kw.update(nano_fraction=args.nano_fraction, nano_weight_decay=args.ft_wd)
  return grokking.train_runs(method, graphdef, params, hp, train, evals, steps=steps, **kw)


def _take(tree, idx):
  return jax.tree.map(lambda x: x[np.asarray(idx)], tree)


def _timed_run(method, graphdef, models, settings, data, steps, args):
  """Every setting trained from every model stacked in ``models`` (setting-major); the output, its seconds."""
  n = len(jax.tree.leaves(models)[0])
  init = _take(models, [i for _ in settings for i in range(n)])
  t0 = time.perf_counter()
  out = _run(method, graphdef, init, _stack(settings, n), *data, steps, args)
  return out, time.perf_counter() - t0


def grokking_study(args, add, log) -> tuple[dict, dict]:
  """Tunes and evaluates every method of ``--grok-methods``; returns results and the AdamW models."""
  data = grokking.run_dataset(add)
  tune_seeds = _common.tuning_seeds(args.tune_seeds, start=_common.SMALL_TUNING_SEED0)
  eval_seeds = list(range(args.seeds))
  graphdef, tune_init = grokking.init_params(tune_seeds, args.p, width=args.width)
  _, eval_init = grokking.init_params(eval_seeds, args.p, width=args.width)
  results, models_for_ft, wd_selected = {}, {}, args.wd_grid[0]
  for method in args.grok_methods:
    settings = _grid(method, args, wd_selected)
    tuned, tune_time = _timed_run(method, graphdef, tune_init, settings, data, args.steps, args)
    shape = (len(settings), len(tune_seeds))
    grok = grokking.grokking_step(tuned["steps"], tuned["val_acc"]).reshape(shape)
    final_val, finite = tuned["val_acc"][:, -1].reshape(shape), tuned["finite"].reshape(shape)
    # a run that never groks counts 2 * steps; a setting with a diverged run is never chosen
    score = np.where(np.isnan(grok), 2.0 * args.steps, grok).mean(1) + np.where(finite.all(1), 0.0, np.inf)
    best = int(np.lexsort((-final_val.mean(1), score))[0])
    chosen = settings[best]
    log(f"{method}: tuned in {tune_time:.0f} s, selected {chosen} (val grok {grok[best].tolist()})")
    out, eval_time = _timed_run(method, graphdef, eval_init, [chosen], data, args.steps, args)
    if method == "adamw":
      wd_selected = chosen["wd"]
      models_for_ft = {"tune": _take(tuned["params"], [best * len(tune_seeds)]), "eval": out["params"]}
    indicators = grokking.weight_indicators(graphdef, out["params"], args.p)
    results[method] = {
      "grid": settings,
      "tuning": dict(grok_step_val=grok.tolist(), final_val_acc=final_val.tolist(), finite=finite.tolist())
      | {"seconds": tune_time},
      "selected": chosen,
      "seeds": eval_seeds,
      "grok_step": grokking.grokking_step(out["steps"], out["val_acc"]).tolist(),
      "finite": out["finite"].tolist(),
      **{f"final_{k}_acc": out[f"{k}_acc"][:, -1].tolist() for k in ("train", "val", "test")},
      **{k: indicators[k].tolist() for k in ("fourier_top4", "near_zero")},
      "curves": {k: out[k].tolist() for k in ("steps", "train_acc", "val_acc")},
      "seconds": eval_time,
      "steps_per_s_per_run": args.steps * len(eval_seeds) / eval_time,
    }
    log(f"{method}: evaluated in {eval_time:.0f} s, grok steps {results[method]['grok_step']}")
  return results, models_for_ft


def finetune_study(args, add, sub, models_for_ft, log) -> dict:
  """Fine-tunes the AdamW models from addition to subtraction with every method of :data:`FT_METHODS`."""
  graphdef, _ = grokking.init_params([0], args.p, width=args.width)
  evals = {"new_val": sub.split("val"), "old_val": add.split("val"), "new_test": sub.split("test")}
  data = ((sub.x_train, sub.y_train), evals | {"old_test": add.split("test")})
  results, lr_selected = {}, args.ft_lr_grid[0]
  for method in FT_METHODS:
    if method == "ham_adamw":
      settings = [{"lr": lr_selected, "wd": args.ft_wd, "alpha": a, "beta": 0.0} for a in args.ft_alpha_grid]
    else:
      settings = [{"lr": lr, "wd": args.ft_wd} for lr in args.ft_lr_grid]
    out, tune_time = _timed_run(method, graphdef, models_for_ft["tune"], settings, data, args.ft_steps, args)
    crit = 0.5 * (out["new_val_acc"][:, -1] + out["old_val_acc"][:, -1])
    crit = np.where(out["finite"], crit, -np.inf).reshape(len(settings), -1).mean(1)
    chosen = settings[int(np.argmax(crit))]
    lr_selected = chosen["lr"] if method == "adamw" else lr_selected
    out, eval_time = _timed_run(method, graphdef, models_for_ft["eval"], [chosen], data, args.ft_steps, args)
    results[method] = {
      "grid": settings,
      "tuning": {"criterion": crit.tolist(), "seconds": tune_time},
      "selected": chosen,
      "finite": out["finite"].tolist(),
      **{k: out[k][:, -1].tolist() for k in ("new_test_acc", "old_test_acc", "new_val_acc", "old_val_acc")},
      "curves": {k: out[k].tolist() for k in ("steps", "new_val_acc", "old_val_acc")},
      "seconds": eval_time,
    }
    log(f"finetune {method}: selected {chosen}; new {results[method]['new_test_acc']}")
    log(f"  old {results[method]['old_test_acc']}")
  return results


def _p_vs(method: str, r: dict, base: dict, key: str) -> str:
  """The paired p-value of ``r[key]`` against AdamW's (``base``), empty for AdamW itself."""
  return "" if method == "adamw" else f"{_common.paired_p(np.asarray(r[key]), np.asarray(base[key])):.3f}"


def _selected(r: dict, drop_zero: tuple[str, ...] = ()) -> str:
  return ", ".join(f"{k}={v:g}" for k, v in r["selected"].items() if not (k in drop_zero and v == 0))


def tables(res: dict) -> str:
  g, f = res["grokking"], res["finetune"]
  base, rows = g["adamw"], []
  for m, r in g.items():
    grok = np.asarray(r["grok_step"], float)
    row = [LABELS[m], _selected(r), f"{int(np.isfinite(grok).sum())}/{grok.size}", _mean_std(grok, digits=0)]
    row += [_mean_std(r[k], 100) for k in ("final_val_acc", "final_test_acc")]
    row += [_mean_std(r["fourier_top4"], digits=3), _mean_std(r["near_zero"], 100, 2)]
    rows.append([*row, _p_vs(m, r, base, "final_test_acc")])
  head = ["method", "selected", "grokked", "grokking step", "final val acc (%)", "final test acc (%)"]
  head += ["Fourier top-4", "near-zero weights (%)", "p (test acc vs AdamW)"]
  lines = [_common.markdown_table(head, rows), ""]
  lines += ["Grokking step: mean ± std over the runs that reached 99 % validation accuracy.", ""]
  p_grok = {m: _common.paired_p(base["grok_step"], r["grok_step"]) for m, r in g.items() if m != "adamw"}
  pg = [f"{LABELS[m]} vs AdamW, grokking step: paired p = {p:.3f}" for m, p in p_grok.items()]
  if "sgdm" in g and "ham_sgdm" in g:
    p = _common.paired_p(g["sgdm"]["final_test_acc"], g["ham_sgdm"]["final_test_acc"])
    pg.append(f"HAM(SGD+momentum) vs SGD+momentum, final test acc: paired p = {p:.3f}")
  lines += ["; ".join(pg), ""]
  if f:
    keys = ("new_test_acc", "old_test_acc")
    rows = [
      [LABELS[m], _selected(r, ("wd", "beta")), *(_mean_std(r[k], 100) for k in keys)]
      + [_p_vs(m, r, f["adamw"], k) for k in keys]
      for m, r in f.items()
    ]
    head = ["method", "selected", "new task (sub) test acc (%)", "old task (add) test acc (%)"]
    lines.append(_common.markdown_table([*head, "p new vs AdamW", "p old vs AdamW"], rows))
  return "\n".join(lines)


def figures(res: dict, out: Path) -> list[str]:
  plt, g, f = _common.pyplot(), res["grokking"], res["finetune"]
  fig, axes = plt.subplots(1, len(g), figsize=(4 * len(g), 3.2), sharey=True, squeeze=False)
  for ax, (m, r) in zip(axes[0], g.items(), strict=True):
    steps = np.asarray(r["curves"]["steps"])
    for key, style, color in (("train_acc", "--", "C0"), ("val_acc", "-", "C1")):
      curves = np.asarray(r["curves"][key])
      ax.plot(steps, curves.T, style, color=color, alpha=0.35, lw=1)
      ax.plot(steps, curves.mean(0), style, color=color, lw=2, label=key)
    ax.set(title=LABELS[m], xlabel="step")
  axes[0, 0].set_ylabel("accuracy")
  axes[0, 0].legend(loc="lower right")
  paths = [_common.save_figure(fig, out / "grokking_curves.png")]
  if f:
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for i, (m, r) in enumerate(f.items()):
      steps, new, old = (np.asarray(r["curves"][k]) for k in ("steps", "new_val_acc", "old_val_acc"))
      ax.plot(steps, new.mean(0), "-", color=f"C{i}", label=f"{LABELS[m]} new (sub)")
      ax.plot(steps, old.mean(0), ":", color=f"C{i}", label=f"{LABELS[m]} old (add)")
    ax.set(xlabel="fine-tuning step", ylabel="validation accuracy")
    ax.legend(fontsize=7)
    paths.append(_common.save_figure(fig, out / "finetune_curves.png"))
  return [_common.display_path(p) for p in paths]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  p = build_parser()
  args = p.parse_args(argv)
  _check(p, args)
  return args


def main(argv: list[str] | None = None) -> dict:
  args = parse_args(argv)
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  if args.replot:
    return _finish(json.loads((out / "results.json").read_text()), out)
  t_start = time.perf_counter()

  def log(msg: str) -> None:
    print(f"[{time.perf_counter() - t_start:6.0f} s] {msg}", flush=True)

  kw = {"p": args.p, "train_fraction": args.train_fraction, "val_fraction": args.val_fraction}
  add, sub = (data_lib.load_modular(operation=op, **kw) for op in ("add", "sub"))
  log(f"p={args.p}: {len(add.x_train)} train / {len(add.x_val)} val / {len(add.x_test)} test pairs")
  grok, models_for_ft = grokking_study(args, add, log)
  ft = {} if args.skip_finetune else finetune_study(args, add, sub, models_for_ft, log)
  n_params = int(sum(np.prod(np.shape(x)[1:]) for x in jax.tree.leaves(models_for_ft["eval"])))
  sizes = dict(p=args.p, train=len(add.x_train), val=len(add.x_val), test=len(add.x_test), d_model=args.width)
  saved_args = vars(args) | {"out": _common.display_path(out)}
  res = {**_common.provenance(_common.command(argv, __file__)), "args": saved_args}
  res |= dict(sizes=sizes | dict(layers=1, heads=4, parameters=n_params), grokking=grok, finetune=ft)
  res["wall_time_s"] = time.perf_counter() - t_start
  _common.write_json(out / "results.json", res)
  log(f"done; results in {out}")
  return _finish(res, out)


def _finish(res: dict, out: Path) -> dict:
  """Tables (printed, ``tables.md``) and figures from the results; adds them to ``results.json``."""
  res["tables"] = tables(res)
  res["figures"] = figures(res, out)
  _common.write_json(out / "results.json", res)
  (out / "tables.md").write_text(f"Command: `{res['command']}`\n\n{res['tables']}\n")
  print(res["tables"])
  return res


if __name__ == "__main__":
  main()
