"""HAM's implicit bias on underdetermined regression (paper arXiv:2506.02630, Sec. 4 and App. D.1).

Problem: ``min_x 0.5 * ||Z x - y||^2`` with ``Z`` of shape ``(d, n) = (40, 100)`` (entries N(0, 1/d)),
``y = Z x*`` for a ``k = 5``-sparse ground truth ``x*`` (N(0, 1) entries on a random support) and a small
random initialisation ``x0 = init_scale * N(0, I)`` (``init_scale = 1e-3``). Every method interpolates in
the limit; *which* interpolant it picks is its implicit bias.

Methods (rows of a dict): ``GD`` (limit: the min-L2 interpolant), ``HAM a=.. (HYP*)`` / ``(GD;HYP)``
(``ham_optax.ham(optax.sgd(lr), lr, alpha, beta=0, sign_from="x_half" | "x")``; limit as ``lr -> 0``: the Bregman
projection of ``x0`` under ``R_alpha``), ``m*w`` (plain GD on ``x = m * w`` with ``m0**2 - w0**2 = gamma``; limit:
the hyperbolic-entropy Bregman projection) and the m*w family of ``ham_optax.overparam``. Learning rates come
from the linearised stability bound ``lr = c / (||Z||_2^2 * max_i g^{-1}(x)_i)`` (``c = 0.5``); each method runs
until ``||Zx - y|| <= 1e-10 ||y||`` (or ``max_steps``).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import pathlib
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import ham_optax
from ham_optax import geometry

import _common

INIT_SCALE, C, RECORD_TIME, REC_TOL = 1e-3, 0.5, 0.25, 0.1
_FAST = dict(alphas=(1.0, 10.0), max_steps=200_000, gap_alphas=(10.0,), gap_cs=(0.2, 0.1))
_FAST.update(rec_ds=(20, 40), rec_trials=4, rec_alphas=(10.0,))
_FULL = dict(alphas=(1.0, 10.0, 100.0, 1000.0), max_steps=3_000_000, gap_alphas=(1.0, 10.0, 100.0))
_FULL.update(gap_cs=(0.4, 0.2, 0.1, 0.05, 0.025), rec_ds=(10, 20, 30, 40, 50, 60, 80), rec_trials=20)
_FULL.update(rec_alphas=(100.0, 1000.0))


class Problem(NamedTuple):
  """An underdetermined sparse regression instance (float64 NumPy arrays)."""

  Z: np.ndarray  # (d, n)
  y: np.ndarray  # (d,)
  x_star: np.ndarray  # (n,), k-sparse
  x0: np.ndarray  # (n,), small random init


def make_problem(seed: int, n: int = 100, d: int = 40, k: int = 5, init_scale: float = 1e-3) -> Problem:
  """Draws ``Z ~ N(0, 1/d)``, a ``k``-sparse ``x*`` with N(0, 1) entries, ``y = Z x*``, ``x0 ~ init_scale N(0, 1)``."""
  rng = np.random.default_rng(seed)
  Z = rng.normal(size=(d, n)) / math.sqrt(d)
  x_star = np.zeros(n)
  x_star[rng.choice(n, size=k, replace=False)] = rng.normal(size=k)
  x0 = init_scale * rng.normal(size=n)
  return Problem(Z, Z @ x_star, x_star, x0)


@dataclasses.dataclass(frozen=True)
class Method:
  """One optimizer row of the study.

  Attributes:
    label: name printed in tables and legends.
    tx: ``lr -> optax transformation`` acting on the params pytree.
    limit: ``problem -> x`` the predicted ``lr -> 0`` limit (a float64 reference solution).
    inverse_metric: ``x -> g^{-1}(x)`` (NumPy), used to pick a stable learning rate.
    init: ``x0 -> params`` (jnp, float64; default: the params are ``x`` itself).
    to_x: ``params -> x`` (the regression vector; default: the params).
    alpha: HAM's alpha (``None`` for non-HAM rows), for plots.
    sign_from: HAM's ``sign_from`` (``None`` for non-HAM rows).
  """

  label: str
  tx: Callable[[float], optax.GradientTransformation]
  limit: Callable[[Problem], np.ndarray]
  inverse_metric: Callable[[np.ndarray], np.ndarray]
  init: Callable[[jax.Array], Any] = lambda x: x
  to_x: Callable[[Any], jax.Array] = lambda params: params
  alpha: float | None = None
  sign_from: str | None = None


def gd_method() -> Method:
  limit = lambda pb: geometry.min_norm_interpolant(pb.Z, pb.y, pb.x0)  # noqa: E731
  return Method(label="GD", tx=optax.sgd, limit=limit, inverse_metric=np.ones_like)


def ham_method(alpha: float, sign_from: str = "x_half") -> Method:
  return Method(
    label=f"HAM a={alpha:g} ({'HYP*' if sign_from == 'x_half' else 'GD;HYP'})",
    tx=lambda lr: ham_optax.ham(optax.sgd(lr), lr, alpha, 0.0, mask=_common.all_true, sign_from=sign_from),
    limit=lambda pb: geometry.bregman_projection(pb.Z, pb.y, pb.x0, alpha).x,
    inverse_metric=lambda x: 1 + alpha * np.abs(x),
    alpha=alpha,
    sign_from=sign_from,
  )


def mw_init(x0: jax.Array, gamma: float) -> dict[str, jax.Array]:
  """``(m0, w0)`` with ``m0 * w0 = x0`` and ``m0**2 - w0**2 = gamma``."""
  m0 = jnp.sqrt((gamma + jnp.sqrt(gamma**2 + 4 * x0**2)) / 2)
  return {"m": m0, "w": x0 / m0}


def mw_method(gamma: float) -> Method:
  return Method(
    label=f"m*w g={gamma:g}",
    tx=optax.sgd,
    init=functools.partial(mw_init, gamma=gamma),
    to_x=lambda p: p["m"] * p["w"],
    limit=lambda pb: geometry.bregman_projection(pb.Z, pb.y, pb.x0, gamma=gamma).x,
    inverse_metric=lambda x: np.sqrt(4 * x**2 + gamma**2),
  )


def lasso_ista(Z: np.ndarray, y: np.ndarray, lam: float, iters: int = 100_000) -> np.ndarray:
  """float64 ISTA for ``argmin_x 0.5 ||Z x - y||^2 + lam ||x||_1`` (spred's minimiser)."""
  L = float(np.linalg.norm(Z, 2) ** 2)
  x = np.zeros(Z.shape[1])
  for _ in range(iters):
    z = x - Z.T @ (Z @ x - y) / L
    x = np.sign(z) * np.maximum(np.abs(z) - lam / L, 0.0)
  return x


def family_methods(gamma: float) -> dict[str, Method]:
  """Rows for ham_optax.overparam (the m*w family HAM is compared against), all on ``x`` directly.

  ``m*w wrapper`` (``pointwise_overparam``; the m*w limit), ``spred`` (decay ``lam``; limit: the LASSO solution,
  which does not interpolate, so the row runs to ``max_steps``), ``PILoT`` (balance 1, decay ``lam`` until
  ``exp(-2 lam T) = gamma``, then off; reference: the m*w limit, approximate) and its ``linear`` shape (``T``
  doubled, same integrated decay), ``Sign-In`` (balance reset to ``gamma`` every ``rescale_time / lr`` steps;
  the m*w limit). Details: docs/guides/mw_family.md.
  """
  from ham_optax import overparam

  mw, sgd, every = mw_method(gamma), optax.sgd, _common.all_true
  lam_spred, lam_pilot, rescale_time = 1e-3, 0.5, 5.0
  t_off = math.log(1.0 / gamma) / (2 * lam_pilot)
  balance_one = lambda x: np.sqrt(4 * x**2 + 1.0)  # noqa: E731  (PILoT starts at balance 1)

  def pilot(shape: str, t: float) -> Callable[[float], optax.GradientTransformation]:
    return lambda lr: overparam.pilot(sgd(lr), lam_pilot, round(t / lr), shape=shape, init=1.0, mask=every)

  def sign_in(lr: float) -> optax.GradientTransformation:
    steps = max(1, round(rescale_time / lr))
    return overparam.sign_in(sgd(lr), rescale_every=steps, balance=gamma, mask=every)

  wrapper = lambda lr: overparam.pointwise_overparam(sgd(lr), mask=every, init=gamma)  # noqa: E731
  spred = lambda lr: overparam.spred(sgd(lr), lam_spred, mask=every)  # noqa: E731
  rows = {
    f"m*w wrapper g={gamma:g}": (wrapper, mw.inverse_metric),
    f"spred l={lam_spred:g}": (spred, lambda x: 2 * np.abs(x) + gamma),
    f"PILoT l={lam_pilot:g} T={t_off:.2g}": (pilot("constant", t_off), balance_one),
    f"PILoT linear l={lam_pilot:g} T={2 * t_off:.2g}": (pilot("linear", 2 * t_off), balance_one),
    f"Sign-In g={gamma:g}": (sign_in, mw.inverse_metric),
  }
  lasso = lambda pb: lasso_ista(pb.Z, pb.y, lam_spred)  # noqa: E731
  return {
    label: Method(label, tx, lasso if label.startswith("spred") else mw.limit, metric)
    for label, (tx, metric) in rows.items()
  }


def default_methods(alphas: tuple[float, ...], gamma: float) -> dict[str, Method]:
  """GD, HAM (both sign variants) for each alpha, and m*w."""
  methods = [gd_method(), *(ham_method(a, s) for s in ("x_half", "x") for a in alphas), mw_method(gamma)]
  return {m.label: m for m in methods}


def _loss(method: Method, Z: jax.Array, y: jax.Array, params: Any) -> jax.Array:
  r = Z @ method.to_x(params) - y
  return 0.5 * jnp.dot(r, r)


@functools.partial(jax.jit, static_argnames=("method", "lr"))
def _init(method: Method, x0: jax.Array, lr: float) -> Any:
  params = method.init(x0)
  return params, method.tx(lr).init(params)


@functools.partial(jax.jit, static_argnames=("method", "lr", "steps_per_record", "n_records"))
def _advance(
  method: Method, Z: jax.Array, y: jax.Array, carry: Any, lr: float, steps_per_record: int, n_records: int
) -> tuple[Any, jax.Array]:
  """``n_records * steps_per_record`` optimizer steps under ``lax.scan``; returns x every ``steps_per_record``."""
  train_step = _common.train_step(functools.partial(_loss, method, Z, y), method.tx(lr))

  def step(carry, _):
    params, state, _, _ = train_step(*carry)
    return (params, state), None

  def chunk(carry, _):
    carry, _ = jax.lax.scan(step, carry, None, length=steps_per_record)
    return carry, method.to_x(carry[0])

  return jax.lax.scan(chunk, carry, None, length=n_records)


class Trajectory(NamedTuple):
  xs: np.ndarray  # (records, n)
  steps: np.ndarray  # (records,) step count of each record
  converged_at: int | None  # first recorded step with ||Zx - y|| <= tol * ||y||


def run(
  method: Method, pb: Problem, lr: float, max_steps: int, record_every: int, tol: float = 1e-10
) -> Trajectory:
  """Runs until ``||Zx - y|| <= tol ||y||`` (checked every ``record_every`` steps, 50 records per compiled call)
  or ``max_steps``."""
  Z, y = jnp.asarray(pb.Z), jnp.asarray(pb.y)
  carry = _init(method, jnp.asarray(pb.x0), float(lr))
  xs: list[np.ndarray] = []
  converged_at = None
  while len(xs) * record_every < max_steps and converged_at is None:
    carry, chunk = _advance(method, Z, y, carry, float(lr), int(record_every), 50)
    for x in np.asarray(chunk):
      xs.append(x)
      if np.linalg.norm(pb.Z @ x - pb.y) <= tol * np.linalg.norm(pb.y):
        converged_at = len(xs) * record_every
        break
  return Trajectory(np.stack(xs), record_every * np.arange(1, len(xs) + 1), converged_at)


def run_batch(
  method: Method, problems: list[Problem], lr: float, max_steps: int, chunk_steps: int, tol: float = 1e-10
) -> tuple[np.ndarray, int]:
  """Final iterates ``(B, n)`` of a batch of same-shaped problems (vmapped) and the steps taken: chunks of
  ``chunk_steps`` until every problem has ``||Zx - y|| <= tol ||y||`` or ``max_steps``."""
  Z, y, x0 = (jnp.asarray(np.stack(a)) for a in zip(*[(p.Z, p.y, p.x0) for p in problems], strict=True))
  carry = jax.vmap(lambda x: _init(method, x, float(lr)))(x0)
  advance = jax.jit(jax.vmap(lambda Z, y, c: _advance(method, Z, y, c, float(lr), int(chunk_steps), 1)))
  steps = 0
  while steps < max_steps:
    carry, xs = advance(Z, y, carry)
    steps += chunk_steps
    xs = np.asarray(xs[:, -1])
    res = np.linalg.norm(np.einsum("bdn,bn->bd", np.asarray(Z), xs) - np.asarray(y), axis=1)
    if np.all(res <= tol * np.linalg.norm(np.asarray(y), axis=1)):
      break
  return xs, steps


def stable_lr(method: Method, pb: Problem, x_lim: np.ndarray, c: float) -> float:
  """``c / (||Z||_2^2 * max g^{-1}(x))`` over the initial point and the limit (linearised stability)."""
  scale = max(np.max(method.inverse_metric(x_lim)), np.max(method.inverse_metric(pb.x0)))
  return c / (float(np.linalg.norm(pb.Z, 2) ** 2) * scale)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
  return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _run_to_limit(m: Method, pb: Problem, c: float, max_steps: int) -> tuple[np.ndarray, float, Trajectory]:
  """The predicted limit, the stable learning rate at ``c`` and the trajectory run at it."""
  x_lim = m.limit(pb)
  lr = stable_lr(m, pb, x_lim, c)
  return x_lim, lr, run(m, pb, lr, max_steps, record_every=max(1, math.ceil(RECORD_TIME / lr)))


def _l1(x: np.ndarray) -> float:
  return float(np.abs(x).sum())


def main_table(pb: Problem, methods: dict[str, Method], c: float, max_steps: int) -> dict[str, Any]:
  """Runs every method to convergence (or ``max_steps``) and compares its limit with the references."""
  x_l2, x_bp = geometry.min_norm_interpolant(pb.Z, pb.y, pb.x0), geometry.basis_pursuit(pb.Z, pb.y)
  rows = {}
  for label, m in methods.items():
    t0 = time.perf_counter()
    x_lim, lr, traj = _run_to_limit(m, pb, c, max_steps)
    seconds, x = time.perf_counter() - t0, traj.xs[-1]
    row = dict(alpha=m.alpha, sign_from=m.sign_from, lr=lr, steps=int(traj.steps[-1]))
    residual = float(np.linalg.norm(pb.Z @ x - pb.y))
    row |= dict(converged_at=traj.converged_at, seconds=seconds, residual=residual)
    row |= dict(l1=_l1(x), l1_limit=_l1(x_lim), rel_gap_to_limit=_rel(x, x_lim))
    row |= {f"rel_dist_to_{k}": _rel(x, ref) for k, ref in (("l2", x_l2), ("bp", x_bp), ("truth", pb.x_star))}
    idx = np.unique(np.round(np.geomspace(1, len(traj.steps), 150)).astype(int) - 1)  # ~150 log-spaced
    row["dist_to_truth_curve"] = [_rel(traj.xs[i], pb.x_star) for i in idx]
    rows[label] = row | {"record_steps": [int(traj.steps[i]) for i in idx]}
  return dict(l1_l2_interpolant=_l1(x_l2), l1_basis_pursuit=_l1(x_bp), l1_truth=_l1(pb.x_star), rows=rows)


def summarize_family(out: pathlib.Path, cmd: str | None = None) -> dict[str, Any]:
  """Mean ± std over the ``results_family_seed*.json`` in ``out`` of L1 / basis-pursuit L1 and the gap to the
  predicted limit, written to ``family_summary.json`` (the published numbers) and printed."""
  runs = [json.loads(p.read_text()) for p in sorted(out.glob("results_family_seed*.json"))]
  rows: dict[str, dict[str, list[float]]] = {}
  for run in runs:
    for label, r in run["table"]["rows"].items():
      d = rows.setdefault(label, {"l1_over_bp": [], "rel_gap_to_limit": [], "steps": []})
      d["l1_over_bp"].append(r["l1"] / run["table"]["l1_basis_pursuit"])
      d["rel_gap_to_limit"].append(r["rel_gap_to_limit"])
      d["steps"].append(r["steps"])
  for d in rows.values():
    d |= {f"l1_over_bp_{k}": v for k, v in _common.mean_std(d["l1_over_bp"]).items()}
  summary = dict(seeds=[r["seed"] for r in runs], commands=[r.get("command") for r in runs], rows=rows)
  _common.save_json(out / "family_summary.json", summary, cmd=cmd)
  print(f"\nL1 / basis pursuit over seeds {summary['seeds']} (mean ± std):")
  for label, r in rows.items():
    print(f"  {label:<30}{r['l1_over_bp_mean']:.4f} ± {r['l1_over_bp_std']:.4f}")
  return summary


_COLUMNS = dict(lr=".2e", steps="d", residual=".1e", l1=".3f", l1_limit=".3f", rel_gap_to_limit=".2e")
_COLUMNS.update(rel_dist_to_l2=".3f", rel_dist_to_bp=".3f", rel_dist_to_truth=".3f", seconds=".1f")


def print_table(table: dict[str, Any]) -> None:
  print(
    f"\nL1 norms: truth {table['l1_truth']:.4f}, basis pursuit {table['l1_basis_pursuit']:.4f}, "
    f"min-L2 interpolant {table['l1_l2_interpolant']:.4f}"
  )
  rows = [[label, *(format(r[k], f) for k, f in _COLUMNS.items())] for label, r in table["rows"].items()]
  print(_common.markdown_table(["method", *_COLUMNS], rows))
  print(
    "(steps: until ||Zx - y|| <= 1e-10 ||y||; rel_gap_to_limit: ||x - x_lim|| / ||x_lim|| with x_lim the "
    "predicted lr -> 0 limit: pseudo-inverse for GD, Bregman projection for HAM and m*w; rel_dist_to_l2/bp/"
    "truth: relative distance to the min-L2 interpolant, basis pursuit, ground truth)"
  )


def gap_vs_lr(pb: Problem, cfg: dict[str, Any]) -> dict[str, Any]:
  """Relative gap between HAM's limit and the Bregman projection for decreasing learning rates (``cfg["gap_cs"]``)."""
  out = {}
  for m in (ham_method(a, sign_from) for sign_from in ("x_half", "x") for a in cfg["gap_alphas"]):
    lrs, gaps = [], []
    for c in cfg["gap_cs"]:
      x_lim, lr, traj = _run_to_limit(m, pb, c, cfg["max_steps"])
      lrs.append(lr)
      gaps.append(_rel(traj.xs[-1], x_lim))
    slope = float(np.polyfit(np.log(lrs), np.log(gaps), 1)[0])
    out[m.label] = {"alpha": m.alpha, "sign_from": m.sign_from, "lr": lrs, "gap": gaps, "loglog_slope": slope}
  return out


def recovery(methods: dict[str, Method], cfg: dict[str, Any]) -> dict[str, Any]:
  """Fraction of random 5-sparse ground truths recovered (``||x - x*|| <= REC_TOL ||x*||``) against ``d``, for
  ``cfg["rec_ds"]`` and ``cfg["rec_trials"]`` problems per ``d``; basis pursuit (LP) as the reference row."""
  labels = [*methods, "basis pursuit (LP)"]
  out: dict[str, Any] = {"d": list(cfg["rec_ds"]), "tol": REC_TOL, "trials": cfg["rec_trials"]}
  out |= {"fraction": {k: [] for k in labels}, "median_rel_err": {k: [] for k in labels}}
  for d in cfg["rec_ds"]:
    trials = range(cfg["rec_trials"])
    problems = [make_problem(10_000 + 97 * d + t, d=d, init_scale=INIT_SCALE) for t in trials]
    for label in labels:
      if label in methods:  # one learning rate per batch: the most conservative over its problems
        m = methods[label]
        lr = min(stable_lr(m, pb, m.limit(pb), C) for pb in problems)
        xs = run_batch(m, problems, lr, cfg["max_steps"], max(1, math.ceil(20 * RECORD_TIME / lr)))[0]
      else:
        xs = [geometry.basis_pursuit(pb.Z, pb.y) for pb in problems]
      errs = np.array([_rel(x, pb.x_star) for x, pb in zip(xs, problems, strict=True)])
      out["fraction"][label].append(float(np.mean(errs <= REC_TOL)))
      out["median_rel_err"][label].append(float(np.median(errs)))
    print(f"  recovery d={d}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in out["fraction"].items()))
  return out


def _finish(fig: Any, ax: Any, legend: Any = None, fontsize: int = 7, **labels: str) -> Any:
  """Sets ``labels`` (``xlabel``, ``ylabel``, ``title``) on ``ax`` and the legend on ``legend`` or ``ax``."""
  ax.set(**labels)
  (legend or ax).legend(fontsize=fontsize)
  return fig


def _plot_l1(plt, results: dict[str, Any]) -> Any:
  """L1 norm of the limits against alpha."""
  table, rows, curve = results["table"], results["table"]["rows"], results["l1_vs_alpha"]
  fig, ax = plt.subplots(figsize=(5.5, 3.8))
  ax.semilogx(curve["alpha"], curve["l1"], "k-", lw=1, label="Bregman projection (lr -> 0 limit)")
  for sign_from, marker, variant in (("x_half", "o", "HYP*"), ("x", "s", "GD;HYP")):
    if pts := [(r["alpha"], r["l1"]) for r in rows.values() if r["sign_from"] == sign_from]:
      ax.semilogx(*zip(*pts, strict=True), marker, ls="none", mfc="none", label=f"HAM {variant}")
  ax.axhline(table["l1_l2_interpolant"], color="C2", ls="--", label="GD / min-L2 interpolant")
  ax.axhline(table["l1_basis_pursuit"], color="C3", ls=":", label="basis pursuit (min L1)")
  for label in (k for k in rows if k.startswith("m*w")):
    ax.axhline(rows[label]["l1"], color="C4", ls="-.", label=label)
  scale = results["config"]["init_scale"]
  ax.axvline(1 / scale, color="0.6", lw=0.8)
  ax.text(1.1 / scale, ax.get_ylim()[1], " alpha = 1/init scale", fontsize=7, va="top", color="0.4")
  title = "L1 norm of HAM's limit: falls with alpha while alpha|x0| is small"
  return _finish(fig, ax, xlabel="alpha", ylabel="||x_limit||_1", title=title)


def _plot_distance(plt, results: dict[str, Any]) -> Any:
  """Distance to the ground truth against steps and against continuous time ``lr * steps``."""
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
  for i, (label, r) in enumerate(results["table"]["rows"].items()):
    if r["sign_from"] != "x":  # GD;HYP overlaps HYP* here; both are in results.json
      steps = np.array(r["record_steps"])
      axes[0].loglog(steps, r["dist_to_truth_curve"], label=label, color=f"C{i % 10}")
      axes[1].loglog(steps * r["lr"], r["dist_to_truth_curve"], label=label, color=f"C{i % 10}")
  ylabel = "||x - x*|| / ||x*||"
  axes[1].set(xlabel="continuous time t = lr * steps", ylabel=ylabel)
  title = "distance to the sparse ground truth"
  return _finish(fig, axes[0], axes[1], xlabel="steps", ylabel=ylabel, title=title)


def _plot_gap(plt, results: dict[str, Any]) -> Any:
  """Gap to the Bregman projection against the learning rate."""
  fig, ax = plt.subplots(figsize=(5.5, 3.8))
  gap_alphas = sorted({r["alpha"] for r in results["gap_vs_lr"].values()})
  for label, r in results["gap_vs_lr"].items():
    style = dict(ls="-" if r["sign_from"] == "x_half" else "--", color=f"C{gap_alphas.index(r['alpha'])}")
    ax.loglog(r["lr"], r["gap"], marker="o", label=f"{label} (slope {r['loglog_slope']:.2f})", **style)
  labels = dict(xlabel="learning rate", ylabel="||x_lr - x_Bregman|| / ||x_Bregman||")
  return _finish(fig, ax, fontsize=6, title="discrete HAM -> Bregman projection, first order in lr", **labels)


def _plot_metrics(plt, results: dict[str, Any]) -> Any:
  """The inverse metrics (the paper's Figure 1)."""
  x = np.linspace(-1, 1, 401)
  fig, ax = plt.subplots(figsize=(5.5, 3.8))
  ax.plot(x, np.asarray(geometry.inverse_metric_gd(x)), "k-", label="GD: 1")
  for a in (1.0, 3.0):
    ax.plot(x, np.asarray(geometry.inverse_metric_ham(x, a)), label=f"HAM: 1 + {a:g}|x|")
  for g in (0.1, 0.01):
    ax.plot(x, np.asarray(geometry.inverse_metric_mw(x, g)), ls="--", label=f"m*w: sqrt(4x^2 + {g:g}^2)")
  title = "HAM's inverse metric stays >= 1; m*w's vanishes at 0"
  return _finish(fig, ax, xlabel="x", ylabel="inverse metric g^{-1}(x)", title=title)


def _plot_recovery(plt, results: dict[str, Any]) -> Any:
  """Fraction of recovered ground truths and median error against the number of samples."""
  rec = results["recovery"]
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
  for label, frac in rec["fraction"].items():
    axes[0].plot(rec["d"], frac, marker="o", label=label)
    axes[1].semilogy(rec["d"], np.maximum(rec["median_rel_err"][label], 1e-12), marker="o", label=label)
  xlabel = "number of samples d (n = 100 features, 5-sparse truth)"
  axes[1].set(xlabel=xlabel, ylabel="median ||x - x*|| / ||x*||")
  ylabel = f"fraction with ||x - x*|| <= {rec['tol']:g} ||x*||"
  title = f"sparse recovery, {rec['trials']} random problems per d"
  return _finish(fig, axes[0], axes[1], xlabel=xlabel, ylabel=ylabel, title=title)


def plot_all(results: dict[str, Any], out_dir: pathlib.Path) -> None:
  figures = dict(l1_vs_alpha=_plot_l1, distance_vs_steps=_plot_distance, gap_vs_lr=_plot_gap)
  figures |= dict(inverse_metrics=_plot_metrics, recovery=_plot_recovery)
  plt = _common.pyplot()
  for name, draw in figures.items():
    path = _common.save_figure(draw(plt, results), out_dir / f"{name}.png", dpi=90)
    print(f"saved {path} ({path.stat().st_size / 1024:.0f} KB)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  p = _common.parser(__doc__, "implicit_bias")
  _common.add_options(p, kind=_common.nonnegative_int, seed=0)
  p.add_fast("small settings for tests / CI smoke (seconds)")
  p.add_argument("--family-only", action="store_true", help="only the m*w family table (GD, HAM a=10, m*w)")
  return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
  args, cmd = parse_args(argv), _common.command(argv, __file__)
  jax.config.update("jax_enable_x64", True)
  cfg = _FAST if args.fast else _FULL
  base, pb = default_methods(cfg["alphas"], gamma=INIT_SCALE), make_problem(args.seed, init_scale=INIT_SCALE)
  if args.family_only:  # the m*w family beside GD, HAM a=10 (HYP*) and the hand-written m*w row, per seed
    keep = {"GD", "HAM a=10 (HYP*)", f"m*w g={INIT_SCALE:g}"}
    methods = {k: v for k, v in base.items() if k in keep} | family_methods(gamma=INIT_SCALE)
    print_table(table := main_table(pb, methods, C, cfg["max_steps"]))
    payload = {"fast": args.fast, "seed": args.seed, "table": table}
    _common.save_json(args.out / f"results_family_seed{args.seed}.json", payload, cmd=cmd)
    summarize_family(args.out, cmd)
    return {"table": table}
  t0 = time.perf_counter()
  table = main_table(pb, base | family_methods(gamma=INIT_SCALE), C, cfg["max_steps"])
  print_table(table)
  gaps = gap_vs_lr(pb, cfg)
  print("\nGap to the Bregman projection against learning rate (relative):")
  for label, r in gaps.items():
    cells = "  ".join(f"lr={lr:.1e}: {g:.2e}" for lr, g in zip(r["lr"], r["gap"], strict=True))
    print(f"  {label:<22} {cells}  (log-log slope {r['loglog_slope']:.2f})")
  alphas = np.logspace(-2, 8, 41)
  l1 = [_l1(geometry.bregman_projection(pb.Z, pb.y, pb.x0, a).x) for a in alphas]
  curve = {"alpha": alphas.tolist(), "l1": l1}
  keep = lambda m: m.alpha is None or (m.sign_from == "x_half" and m.alpha in cfg["rec_alphas"])  # noqa: E731
  print(f"\nRecovery (fraction of random 5-sparse truths with ||x - x*|| <= {REC_TOL:g} ||x*||):")
  rec = recovery({k: m for k, m in base.items() if keep(m)}, cfg)
  config = {"fast": args.fast, "seed": args.seed, "n": 100, "d": 40, "k": 5, "init_scale": INIT_SCALE}
  config |= dict(gamma_mw=INIT_SCALE, c=C, max_steps=cfg["max_steps"], record_time=RECORD_TIME)
  config |= dict(jax=jax.__version__, optax=optax.__version__)
  results = {"config": config, "table": table, "gap_vs_lr": gaps, "l1_vs_alpha": curve, "recovery": rec}
  results["seconds"] = time.perf_counter() - t0
  _common.save_json(args.out / "results.json", results, cmd=cmd)
  plot_all(results, args.out)
  print(f"saved {args.out / 'results.json'}; total {results['seconds']:.1f} s")
  return results


if __name__ == "__main__":
  main()
