"""HAM on graphs: node classification on contextual stochastic block models, homophily h from 0.1 to 0.9.

Does a *negative* alpha help on heterophilic graphs, and a positive one on homophilic graphs? For every h, model
and inner optimizer (AdamW; SGD + momentum 0.9), tuned on separate tuning graphs with equal budgets: the
baseline's learning rate (shared), then its weight decay (``--wds``) against HAM's alpha (``--alphas``, beta = 0).
The choices, and the best negative and best positive alpha, run on ``--test-seeds`` fresh graphs, compared by
paired t-tests, with weight diagnostics (sign flips, ``1 + alpha |x| <= 0``, clipped exponents). One XLA call
trains all configs x seeds of a stage. Setup and readings: docs/guides/graphs.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from ham_optax_examples import data as data_lib
from ham_optax_examples import models

import ham_optax

import _common


def build_seeds(model: str, h: float, seeds: list[int], args: argparse.Namespace):
  """Per seed: a CSBM sample, its node split and a model initialisation; stacked along a leading axis."""
  sizes = dict(num_nodes=args.nodes, num_classes=args.classes, num_features=args.features)
  per_seed = []
  for s in seeds:
    ds = data_lib.load_csbm(**sizes, signal=args.signal, avg_degree=args.degree, homophily=h, seed=s)
    m = models.create_model(model, ds.input_shape, ds.num_classes, seed=s, width=args.width, graph=ds.graph)
    graphdef, p, r = nnx.split(m, nnx.Param, ...)
    split = (ds.x_train, ds.y_train, ds.x_val, ds.y_val, ds.x_test, ds.y_test)
    per_seed.append((nnx.as_pure(p), nnx.as_pure(r), split))
  return graphdef, *jax.tree.map(lambda *xs: jnp.stack(xs), *per_seed)  # params, rest, splits


def _kernels(tree: Any, mask: Any) -> list[jax.Array]:
  return [x for x, on in zip(jax.tree.leaves(tree), jax.tree.leaves(mask), strict=True) if on]


@functools.cache
def make_runner(graphdef, inner: str, steps: int, momentum: float, max_exponent: float):
  """``run(params[S], rest[S], splits[S], lr[K], alpha[K], wd[K]) -> metrics[K, S]``, jitted (cached per setting,
  so that every homophily value reuses the compiled code)."""

  def apply(params, rest, idx):
    return nnx.merge(graphdef, params, rest)(idx)

  def one(params, rest, split, lr, alpha, wd):
    tr_x, tr_y, va_x, va_y, te_x, te_y = split
    schedule = optax.cosine_decay_schedule(lr, steps)
    if inner == "adamw":
      base = optax.adamw(schedule, weight_decay=wd)
    else:
      base = optax.chain(optax.add_decayed_weights(wd), optax.sgd(schedule, momentum=momentum))
    tx = ham_optax.ham(base, schedule, alpha, 0.0, max_exponent=max_exponent)
    mask = ham_optax.default_mask(params)
    kernels0 = _kernels(params, mask)
    n = sum(x.size for x in kernels0)

    def loss_fn(p):
      return optax.softmax_cross_entropy_with_integer_labels(apply(p, rest, tr_x), tr_y).mean()

    train_step = _common.train_step(loss_fn, tx)

    def body(carry, k):
      p, st, beyond, clipped = carry
      p_new, st, loss, g = train_step(p, st)
      ks, gs = _kernels(p_new, mask), _kernels(g, mask)
      frac_beyond = sum(jnp.sum(1.0 + alpha * jnp.abs(x) <= 0.0) for x in ks) / n
      # exponent of the mirror step (up to the sign of x_half): |lr alpha g|; counts entries at the clip
      frac_clip = sum(jnp.sum(schedule(k) * jnp.abs(alpha * gg) >= max_exponent) for gg in gs) / n
      return (p_new, st, jnp.maximum(beyond, frac_beyond), jnp.maximum(clipped, frac_clip)), loss

    init = (params, tx.init(params), jnp.zeros(()), jnp.zeros(()))
    (p, _, beyond, clipped), losses = jax.lax.scan(body, init, jnp.arange(steps))
    kernels = _kernels(p, mask)
    leaves_finite = jnp.array([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(p)])
    finite = jnp.all(leaves_finite) & jnp.isfinite(losses[-1])
    flips = sum(jnp.sum(jnp.sign(x) * jnp.sign(x0) < 0) for x, x0 in zip(kernels, kernels0, strict=True)) / n
    l1 = sum(jnp.sum(jnp.abs(x)) for x in kernels)
    l2sq = sum(jnp.sum(jnp.square(x)) for x in kernels)
    hits = lambda x, y: jnp.mean(jnp.argmax(apply(p, rest, x), -1) == y)  # noqa: E731
    acc = lambda x, y: jnp.where(finite, hits(x, y), jnp.nan)  # noqa: E731
    max_abs = jnp.max(jnp.array([jnp.max(jnp.abs(x)) for x in kernels]))
    out = dict(finite=finite, val_acc=acc(va_x, va_y), test_acc=acc(te_x, te_y), train_loss=losses[-1])
    out |= dict(sign_flips=flips, beyond_barrier=beyond, clip_hits=clipped, max_abs_weight=max_abs)
    # spread: (||x||_1 / ||x||_2)^2 / n, 1 for equal magnitudes, -> 1/n for a single non-zero weight
    return out | {"spread": jnp.square(l1) / (l2sq * n)}

  over_seeds = jax.vmap(one, in_axes=(0, 0, 0, None, None, None))
  return jax.jit(jax.vmap(over_seeds, in_axes=(None, None, None, 0, 0, 0)))  # and over configs


def run_grid(runner, seeds_data, configs: list[tuple[float, float, float]]) -> dict[str, np.ndarray]:
  lr, alpha, wd = (jnp.asarray([c[i] for c in configs], jnp.float32) for i in range(3))
  out = runner(*seeds_data[1:], lr, alpha, wd)  # params, rest and splits of every seed
  return {k: np.asarray(v, np.float64) for k, v in out.items()}


def _val(metrics: dict[str, np.ndarray]) -> np.ndarray:
  """Mean validation accuracy of every config of the grid; diverged runs count as 0."""
  return np.nan_to_num(metrics["val_acc"], nan=0.0).mean(axis=1)


def _best(metrics: dict[str, np.ndarray], candidates: list[int] | None = None) -> int:
  """Index (into the grid) of the candidate (default: any) with the highest :func:`_val`."""
  val = _val(metrics)
  return max(range(len(val)) if candidates is None else candidates, key=lambda i: val[i])


def _summary(m: dict[str, np.ndarray], i: int) -> dict[str, Any]:
  test = m["test_acc"][i]
  fin = np.isfinite(test)
  out = {"test_acc": [float(t) if f else None for t, f in zip(test, fin, strict=True)]}
  out["test_mean"], out["test_std"] = (np.mean(test[fin]), np.std(test[fin])) if fin.any() else (np.nan,) * 2
  out["diverged"] = int((~fin).sum())
  keys = ("test_mean", "test_std", "sign_flips", "beyond_barrier", "clip_hits", "max_abs_weight", "spread")
  return out | {k: float(out[k] if k.startswith("test") else np.nanmean(m[k][i])) for k in keys}


def study_cell(model: str, h: float, inner: str, args, tune, test) -> dict[str, Any]:
  """Tunes (on the ``tune`` graphs of :func:`build_seeds`) and tests baseline and HAM for one (model, h, inner
  optimizer)."""
  runner = make_runner(tune[0], inner, args.steps, args.momentum, args.max_exponent)
  lrs, alphas = (args.lrs_adamw, args.alphas_adamw) if inner == "adamw" else (args.lrs_sgd, args.alphas_sgd)
  wd0, wds = args.wd_default, args.wds
  if len(wds) != len(alphas):
    raise ValueError("--wds and --alphas must have the same length (equal tuning budgets)")
  # stage 1: learning rate of the baseline (shared); stage 2: as many weight decays as alphas
  s1 = run_grid(runner, tune, [(lr, 0.0, wd0) for lr in lrs])
  lr = lrs[_best(s1)]
  s2_base = run_grid(runner, tune, [(lr, 0.0, wd) for wd in wds])
  s2_ham = run_grid(runner, tune, [(lr, a, wd0) for a in alphas])
  wd, ia = wds[_best(s2_base)], _best(s2_ham)
  ineg = _best(s2_ham, [i for i, a in enumerate(alphas) if a < 0])
  ipos = _best(s2_ham, [i for i, a in enumerate(alphas) if a > 0])
  # alpha0: what HAM modifies, the baseline at HAM's (default) weight decay
  finals = dict(baseline=(lr, 0.0, wd), alpha0=(lr, 0.0, wd0), ham=(lr, alphas[ia], wd0))
  finals.update(ham_neg=(lr, alphas[ineg], wd0), ham_pos=(lr, alphas[ipos], wd0))
  fm = run_grid(runner, test, list(finals.values()))
  res: dict[str, Any] = {"model": model, "h": h, "inner": inner, "lr": lr, "wd_baseline": wd}
  base, alpha0 = fm["test_acc"][0], fm["test_acc"][1]
  for j, (n, (lr_n, alpha, wd_n)) in enumerate(finals.items()):
    res[n] = {"lr": lr_n, "alpha": alpha, "wd": wd_n, **_summary(fm, j)}
    if j >= 2:  # the three HAM runs, paired with both references
      res[n]["vs_baseline"] = _common.paired_test(base, fm["test_acc"][j])
      res[n]["vs_alpha0"] = _common.paired_test(alpha0, fm["test_acc"][j])
  t = res["tuning"] = dict(lrs=list(lrs), lr_val=_val(s1).tolist(), wds=list(wds))
  t.update(wd_val=_val(s2_base).tolist(), alphas=list(alphas), alpha_val=_val(s2_ham).tolist())
  t.update(alpha_diverged=(~np.isfinite(s2_ham["val_acc"])).sum(1).tolist())
  t.update({f"alpha_{k}": s2_ham[k].mean(1).tolist() for k in ("beyond_barrier", "sign_flips")})
  t["alpha_spread"] = [  # over the finite runs; NaN when every run of that alpha diverged
    float(r[np.isfinite(r)].mean()) if np.isfinite(r).any() else float("nan") for r in s2_ham["spread"]
  ]
  return res


def _fmt(r: dict[str, Any]) -> str:
  diverged = f" ({r['diverged']} div.)" if r["diverged"] else ""
  return f"{100 * r['test_mean']:.1f} ± {100 * r['test_std']:.1f}{diverged}"


def _diff(v: dict[str, float]) -> str:
  p = "<0.01" if v["p_value"] < 0.005 else f"{v['p_value']:.2f}"
  return f"{100 * v['mean_diff']:+.1f} ({p if np.isfinite(v['p_value']) else 'n/a'})"  # n/a: identical seeds


def table(cells: list[dict[str, Any]]) -> str:
  """Test accuracy (%) mean ± std over the test seeds; differences in points with paired t-test p-values."""
  head = ["model", "inner", "h", "baseline (wd tuned)", "alpha = 0 (wd default)", "HAM (alpha tuned) [alpha]"]
  head += ["HAM - baseline (p)", "HAM - alpha=0 (p)"]
  head += [f"best alpha{s}0 - alpha=0 (p) [alpha]" for s in "<>"]
  rows = [
    [c["model"], c["inner"], f"{c['h']:.1f}", _fmt(c["baseline"]), _fmt(c["alpha0"])]
    + [f"{_fmt(c['ham'])} [{c['ham']['alpha']:g}]"]
    + [_diff(c["ham"][k]) for k in ("vs_baseline", "vs_alpha0")]
    + [f"{_diff(c[n]['vs_alpha0'])} [{c[n]['alpha']:g}]" for n in ("ham_neg", "ham_pos")]
    for c in cells
  ]
  return _common.markdown_table(head, rows)


def _groups(cells: list[dict[str, Any]]) -> list[tuple[tuple[str, str], list[dict[str, Any]]]]:
  """``((model, inner), its cells by increasing h)`` for every model and inner optimizer."""
  groups, by_h = sorted({(c["model"], c["inner"]) for c in cells}), sorted(cells, key=lambda c: c["h"])
  return [(g, [c for c in by_h if (c["model"], c["inner"]) == g]) for g in groups]


def figures(cells: list[dict[str, Any]], out: Path) -> None:
  """``graphs.png``: best alpha against h, and paired test-accuracy differences (mean ± std over the test seeds);
  ``mechanism.png``: per (model, inner), validation accuracy and weight diagnostics against alpha on the tuning
  graphs, one line per h."""
  plt, groups = _common.pyplot(), _groups(cells)
  panels = [
    ("ham", "baseline", "HAM (alpha tuned) - baseline (wd tuned)"),
    ("ham_neg", "alpha0", "best alpha < 0  -  alpha = 0"),
    ("ham_pos", "alpha0", "best alpha > 0  -  alpha = 0"),
  ]
  fig, axes = plt.subplots(1, 4, figsize=(19, 4))
  for k, (g, cs) in enumerate(groups):
    hs = np.array([c["h"] for c in cs]) + 0.01 * (k - 1.5)  # small offsets keep error bars apart
    label, color = f"{g[0]} / {g[1]}", f"C{k}"
    axes[0].plot(hs, [c["ham"]["alpha"] for c in cs], "o-", color=color, label=label)
    for ax, (method, ref, _) in zip(axes[1:], panels, strict=True):
      d = [100 * (np.array(c[method]["test_acc"], float) - np.array(c[ref]["test_acc"], float)) for c in cs]
      means = np.array([np.nanmean(x) for x in d])
      ax.errorbar(hs, means, yerr=[np.nanstd(x) for x in d], fmt="o-", color=color, capsize=3, label=label)
      sig = [c[method]["vs_alpha0" if ref == "alpha0" else "vs_baseline"]["p_value"] < 0.05 for c in cs]
      ax.plot(hs[sig], means[sig], "*", color=color, ms=14)
  axes[0].set_yscale("symlog", linthresh=1.0)
  axes[0].set(ylabel="alpha chosen on validation", title="best alpha (whole grid)")
  for ax, (_, _, title) in zip(axes[1:], panels, strict=True):
    ax.set(ylabel="test accuracy difference (points)", title=f"{title}\n(* p < 0.05)")
  for ax in axes:
    ax.axhline(0, color="gray", lw=0.8)
    ax.set_xlabel("edge homophily h")
    ax.legend(fontsize=7)
  _common.save_figure(fig, out / "graphs.png")
  cols = [
    ("alpha_val", "validation accuracy (%)", 100.0),
    ("alpha_beyond_barrier", "weights with 1 + alpha|x| <= 0 (max over training)", 1.0),
    ("alpha_sign_flips", "sign flips vs init", 1.0),
    ("alpha_spread", "(|x|_1 / |x|_2)^2 / n  (1 = flat, ->0 = sparse)", 1.0),
  ]
  size = (4.2 * len(cols), 3.0 * len(groups))
  fig, axes = plt.subplots(len(groups), len(cols), figsize=size, squeeze=False)
  for row, (g, cs) in zip(axes, groups, strict=True):
    for c in cs:
      t = c["tuning"]
      xs = np.arange(len(t["alphas"]))
      for ax, (key, label, scale) in zip(row, cols, strict=True):
        # an alpha with any diverged tuning run is not drawn (its diagnostics would mix in NaN weights)
        y = np.where(np.array(t["alpha_diverged"]) > 0, np.nan, scale * np.array(t[key], float))
        ax.plot(xs, y, "o-", ms=3, label=f"h = {c['h']:.1f}")
        ax.set_xticks(xs, [f"{a:g}" for a in t["alphas"]], fontsize=7)
        ax.set_title(f"{g[0]} / {g[1]}: {label}", fontsize=8)
        ax.set_xlabel("alpha", fontsize=8)
  axes[0, 0].legend(fontsize=7)
  _common.save_figure(fig, out / "mechanism.png")


def write_outputs(result: dict[str, Any], out: Path) -> str:
  """``table.md`` and the figures from a result (``results.json`` is saved by the run itself)."""
  cells = result["cells"]
  text = table(cells)
  (out / "table.md").write_text(f"`{result['command']}`\n\n{text}\n")
  figures(cells, out)
  return text


def build_parser() -> _common.Parser:
  fmt = argparse.ArgumentDefaultsHelpFormatter
  p = _common.Parser(description=__doc__.split("\n\n")[0], formatter_class=fmt)
  _common.add_options(p, kind=_common.number(float, 0, 1), homophily=[0.1, 0.3, 0.5, 0.7, 0.9])
  p.add_argument("--models", nargs="+", default=["gcn", "sage"], choices=list(models.GRAPH_MODELS))
  p.add_argument("--inners", nargs="+", default=["adamw", "sgd"], choices=["adamw", "sgd"])
  _common.add_options(p, nodes=500, features=32, degree=5.0, width=32, steps=150, max_exponent=5.0)
  _common.add_options(p, kind=_common.number(int, 2), classes=2)
  _common.add_options(p, kind=_common.nonnegative_float, signal=0.75, wd_default=5e-4)
  _common.add_options(p, kind=_common.number(float, 0, 1, hi_open=True), momentum=0.9)
  _common.add_options(p, tune_seeds=4, test_seeds=10, lrs_adamw=[0.003, 0.01, 0.03], lrs_sgd=[0.03, 0.1, 0.3])
  _common.add_options(p, kind=_common.nonnegative_float, wds=[0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1])
  _common.add_options(p, kind=_common.finite_float, alphas_adamw=[-100, -30, -10, -3, 3, 10, 30, 100])
  _common.add_options(p, kind=_common.finite_float, alphas_sgd=[-10, -3, -1, -0.3, 0.3, 1, 3, 10])
  fast = dict(homophily=[0.1, 0.9], models=["gcn"], inners=["adamw"], nodes=300, steps=50)
  p.add_fast("smoke run: 2 h values, 1 model/inner, tiny sizes", **fast, tune_seeds=2, test_seeds=3)
  p.add_argument("--out", type=_common.out_dir, default=_common.RESULTS / "graphs")
  p.add_argument("--replot", action="store_true", help="redraw table and figures from OUT/results.json")
  return p


def _check(p: _common.Parser, args: argparse.Namespace) -> None:
  """What the options' types cannot check alone (an argparse error naming the option)."""
  if args.nodes < 2 * args.classes:
    p.error(f"--nodes must be at least 2 x --classes ({2 * args.classes}), got {args.nodes}")
  for inner in args.inners:
    alphas = getattr(args, f"alphas_{inner}")
    if len(alphas) != len(args.wds):
      p.error(f"--wds and --alphas-{inner} must have the same length (equal tuning budgets)")
    if min(alphas) >= 0 or max(alphas) <= 0:
      p.error(f"--alphas-{inner} needs a negative and a positive alpha (the best of each is tested)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  p = build_parser()
  args = p.parse_args(argv)
  if not args.replot:
    _check(p, args)
  return args


def main(argv: list[str] | None = None) -> None:
  args = parse_args(argv)
  if args.replot:
    print(write_outputs(json.loads((args.out / "results.json").read_text()), args.out))
    return
  args.out.mkdir(parents=True, exist_ok=True)
  cells, t0 = [], time.perf_counter()
  for model in args.models:
    for h in args.homophily:
      tune = build_seeds(model, h, _common.tuning_seeds(args.tune_seeds), args)
      test = build_seeds(model, h, list(range(args.test_seeds)), args)
      for inner in args.inners:
        t = time.perf_counter()
        c = study_cell(model, h, inner, args, tune, test)
        c["time_s"] = time.perf_counter() - t
        cells.append(c)
        print(
          f"{model:4s} {inner:5s} h={h:.1f}: base {_fmt(c['baseline'])}  HAM {_fmt(c['ham'])} "
          f"(alpha {c['ham']['alpha']:g})  [{c['time_s']:.0f} s]",
          flush=True,
        )
  wall = time.perf_counter() - t0
  saved_args = {k: _common.display_path(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
  result = {**_common.provenance(_common.command(argv, __file__)), "args": saved_args, "wall_time_s": wall}
  result["cells"] = cells
  _common.write_json(args.out / "results.json", result)
  print(write_outputs(result, args.out))
  print(f"wrote {_common.display_path(args.out)}/ ({wall:.0f} s)")


if __name__ == "__main__":
  main()
