"""What HAM costs on top of its inner optimizer.

Measures, in one run and with A/B interleaved:

1. ``update``: the jitted optimizer update (``tx.update`` + ``optax.apply_updates``, params and state
   donated) of ``inner`` vs ``ham(inner)`` on a ResNet-50-shaped parameter tree (25.56 M floats, 161
   leaves), for SGD+momentum and AdamW. Beside the timed ratio, XLA's own count of both compiled programs
   per weight (flops, transcendentals, bytes accessed; deterministic), their memory analysis and fusions,
   and the optimizer-state bytes.
2. ``roofline``: what this machine can do at best: streaming bandwidth (a fused ``p + c*g`` pass) and
   ``exp`` throughput, both over the same 25.56 M floats.
3. ``train_step``: a full train step (forward, backward, update) of the Flax models of
   ``ham_optax_examples.models`` (MLP, CNN1D, ResNet18), with ``inner`` vs ``ham(inner)``.
4. ``bf16``: the same update with bf16 parameters (speed), and the accuracy of HAM's ``exp(-lr*beta)``
   decay in bf16 vs f32 master weights.
5. ``torch_peer`` (only when ``torch`` imports): the published PyTorch wrapper's semantics vs a bare torch
   step on the same shapes (see ``torch_peer.py``).
6. ``vector_width``: the update compiled with XLA:CPU's option ``xla_cpu_prefer_vector_width=512`` beside the
   default, for one ``jax.jit`` at a time (``jax.jit(f, compiler_options={"xla_cpu_prefer_vector_width": 512})``,
   or ``jax.jit(f).lower(...).compile(compiler_options=...)``): the times, and whether the results are bit for
   bit those of the default build.

Run (with the CPUs otherwise idle; about 10 minutes on a 2-core CPU)::

    python benchmarks/overhead.py --out benchmarks/results/overhead

``--quick`` runs a few reps of everything (smoke test). Results: ``overhead.json`` and ``overhead.png`` in
``--out``. Every figure is a median over ``--reps`` interleaved repetitions (default 61), and ratios are medians
of per-repetition paired ratios with their 25-75 % range and a distribution-free 95 % interval of the median.
Before each repetition the script measures the CPU time that other processes use (``/proc/stat`` minus this
process) and waits, up to ``--max-wait`` seconds, until it is below ``--max-other-cpu`` cores; a repetition that
finds no quiet moment is skipped. The 1-minute ``os.getloadavg()`` and the other processes' CPU, before and
during every repetition taken, are saved beside the times.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from ham_optax_examples import models as tm

import ham_optax
from ham_optax import overparam

import _common

# --------------------------------------------------------------------------------------------------
# Parameter trees
# --------------------------------------------------------------------------------------------------


def make_tree(shapes, dtype=jnp.float32, seed: int = 0) -> dict[str, jax.Array]:
  """A dict of random arrays with the given shapes (weights ~ N(0, 0.05^2))."""
  keys = jax.random.split(jax.random.key(seed), len(shapes))
  return {n: (0.05 * jax.random.normal(k, s)).astype(dtype) for (n, s), k in zip(shapes, keys, strict=True)}


def tree_bytes(tree) -> int:
  return int(sum(x.nbytes for x in jax.tree.leaves(tree)))


def tree_size(tree) -> int:
  return int(sum(x.size for x in jax.tree.leaves(tree)))


# --------------------------------------------------------------------------------------------------
# Optimizers under test
# --------------------------------------------------------------------------------------------------

LR = 0.1
ALPHA = 200.0
BETA = 1e-3


def inner_optimizers(lr: float = LR) -> dict[str, optax.GradientTransformation]:
  return {
    "sgdm": optax.sgd(lr, momentum=0.9),
    "adamw": optax.adamw(lr * 1e-2, weight_decay=1e-4),
  }


def with_ham(inner: optax.GradientTransformation, lr: float) -> optax.GradientTransformation:
  # The mirror step uses the inner optimizer's learning rate (as the published wrapper does).
  return ham_optax.ham(inner, lr, alpha=ALPHA, beta=BETA)


def inner_lr(name: str) -> float:
  return LR if name == "sgdm" else LR * 1e-2


def variants(name: str, inner: optax.GradientTransformation, mw: bool = False) -> dict[str, Any]:
  """inner, ham(inner) and optionally m*w (spred)."""
  out = {"inner": inner, "ham": with_ham(inner, inner_lr(name))}
  if mw:
    out["mw_spred"] = overparam.spred(inner, 1e-4)
  return out


# --------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------


def _block(x):
  jax.block_until_ready(x)
  return x


def _busy_seconds() -> float:
  """CPU seconds all cores have spent busy since boot (``/proc/stat``; NaN where it does not exist)."""
  try:
    with open("/proc/stat") as f:
      ticks = [int(v) for v in f.readline().split()[1:9]]
  except OSError:
    return math.nan
  return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait


def _own_seconds() -> float:
  t = os.times()
  return t.user + t.system


class _Machine:
  """Measures how many cores other processes use (``/proc/stat`` minus this process's CPU time)."""

  def __init__(self):
    self.busy, self.own, self.wall = _busy_seconds(), _own_seconds(), time.perf_counter()

  def others(self) -> float:
    """Cores used by other processes since the last call (all CPU time minus this process's, per second)."""
    busy, own, wall = _busy_seconds(), _own_seconds(), time.perf_counter()
    used = ((busy - self.busy) - (own - self.own)) / max(wall - self.wall, 1e-9)
    self.busy, self.own, self.wall = busy, own, wall
    return max(used, 0.0)


def quiet_interleaved(
  runners: dict[str, Callable[[], Any]],
  reps: int,
  number: int = 1,
  *,
  max_other_cpu: float = 0.15,
  max_wait: float = 60.0,
  probe: float = 0.5,
) -> dict[str, Any]:
  """:func:`_common.interleaved`, one repetition at a time, each taken while other processes leave the CPUs free.

  Before each repetition, other processes' CPU is measured over ``probe`` seconds; while it exceeds
  ``max_other_cpu`` cores the script waits (up to ``max_wait`` seconds per repetition, then skips it). Returns
  the times as ``_common.interleaved`` does, plus ``"load"``: per repetition taken, ``os.getloadavg()[0]`` and
  other processes' CPU before and during it, and the number of repetitions skipped.
  """
  times: dict[str, list[float]] = {}
  load: dict[str, Any] = {"loadavg_1m": [], "others_cpu_before": [], "others_cpu_during": [], "skipped": 0}
  machine = _Machine()
  for rep in range(reps):
    t_end = time.perf_counter() + max_wait
    while True:
      time.sleep(probe)
      before = machine.others()
      if not before > max_other_cpu or time.perf_counter() > t_end:  # NaN (no /proc/stat) counts as quiet
        break
    if before > max_other_cpu:
      load["skipped"] += 1
      continue
    one = _common.interleaved(runners, 1, number, seed=rep)
    load["others_cpu_during"].append(machine.others())
    load["others_cpu_before"].append(before)
    load["loadavg_1m"].append(os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan)
    for k, v in one.items():
      times.setdefault(k, []).extend(v)
  if not times:
    raise RuntimeError(
      f"no quiet moment in {reps} tries: other processes kept over {max_other_cpu} cores busy"
    )
  return {**times, "load": load}


def median_ci(x: Any, level: float = 0.95) -> list[float]:
  """Distribution-free interval for the median: the order statistics at ``n/2 -+ z sqrt(n)/2`` (normal
  approximation of the binomial). For 61 values at 95 %, the 23rd and the 39th smallest."""
  x = np.sort(np.asarray(x, np.float64))
  n = len(x)
  z = {0.9: 1.645, 0.95: 1.96, 0.99: 2.576}[level]
  lo = max(int(math.floor(n / 2 - z * math.sqrt(n) / 2)), 0)
  hi = min(int(math.ceil(n / 2 + z * math.sqrt(n) / 2)), n) - 1
  return [float(x[lo]), float(x[max(hi, lo)])]


def summarize_all(times: dict[str, list[float]], base: str = "inner") -> dict[str, Any]:
  """Per variant: median and IQR of seconds/call, and the median (IQR) of the per-repetition ratio to base."""
  a = np.asarray(times[base])
  out: dict[str, Any] = {}
  for k, v in times.items():
    if k.endswith(":cpu") or k == "load":
      continue
    b = np.asarray(v)
    paired = b / a
    out[k] = {
      "median_ms": 1e3 * float(np.median(b)),
      "iqr_ms": [1e3 * float(np.percentile(b, 25)), 1e3 * float(np.percentile(b, 75))],
      "ratio_median": float(np.median(paired)),
      "ratio_iqr": [float(np.percentile(paired, 25)), float(np.percentile(paired, 75))],
      "ratio_ci95": median_ci(paired),
    }
    if f"{k}:cpu" in times:
      cpu = np.asarray(times[f"{k}:cpu"]) / np.asarray(times[f"{base}:cpu"])
      out[k]["cpu_ms"] = 1e3 * float(np.median(times[f"{k}:cpu"]))
      out[k]["cpu_ratio_median"] = float(np.median(cpu))
      out[k]["cpu_ratio_iqr"] = [float(np.percentile(cpu, 25)), float(np.percentile(cpu, 75))]
  return out


def summarize(times: dict[str, list[float]], base: str, other: str) -> dict[str, Any]:
  return _common.paired_ratio(times[base], times[other], names=(base, other))


# --------------------------------------------------------------------------------------------------
# Compiled-program analysis
# --------------------------------------------------------------------------------------------------


def compiled_stats(compiled) -> dict[str, Any]:
  """XLA's own accounting of a compiled program: memory, cost model and fusion counts."""
  out: dict[str, Any] = {}
  mem = compiled.memory_analysis()
  if mem is not None:
    arg, res = int(mem.argument_size_in_bytes), int(mem.output_size_in_bytes)
    alias, temp = int(mem.alias_size_in_bytes), int(mem.temp_size_in_bytes)
    out["memory"] = {
      "argument_bytes": arg,
      "output_bytes": res,
      "alias_bytes": alias,
      "temp_bytes": temp,
      # Live at once: inputs + outputs not aliased to inputs + scratch.
      "peak_bytes": arg + res - alias + temp,
    }
  cost = compiled.cost_analysis()
  if isinstance(cost, list):  # older jax returns one dict per program
    cost = cost[0] if cost else {}
  if cost:
    out["cost"] = {k: float(cost[k]) for k in ("flops", "transcendentals", "bytes accessed") if k in cost}
  text = compiled.as_text()
  entry = text[text.find("ENTRY") :]
  out["hlo"] = {
    "fusions_in_entry": len(re.findall(r"= [^ ]+ fusion\(", entry)),
    "exponential_ops": len(re.findall(r" exponential\(", text)),
    "collectives": len(
      re.findall(
        r" (all-reduce|all-gather|reduce-scatter|collective-permute|all-to-all)(-start)?\(",
        text,
      )
    ),
  }
  return out


# --------------------------------------------------------------------------------------------------
# 1. Update-only benchmark
# --------------------------------------------------------------------------------------------------


def make_update_step(tx: optax.GradientTransformation):
  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  return jax.jit(step, donate_argnums=(0, 1))


class _Loop:
  """Holds donated arguments and runs one compiled call per ``__call__``."""

  def __init__(self, fn, carry, const):
    self.fn, self.carry, self.const = fn, tuple(carry), tuple(const)

  def __call__(self):
    out = _block(self.fn(*self.carry, *self.const))
    self.carry = out[: len(self.carry)]


def _print_row(label: str, summ: dict[str, Any]) -> None:
  parts = [
    f"{k} {v['median_ms']:.2f} ms"
    + (
      ""
      if k == "inner"
      else f" (x{v['ratio_median']:.3f}; cpu time x{v.get('cpu_ratio_median', float('nan')):.3f})"
    )
    for k, v in summ.items()
  ]
  print(f"  {label}: " + ", ".join(parts), flush=True)


COST_KEYS = ("flops", "transcendentals", "bytes accessed")
VECTOR_WIDTH_OPTIONS = {"xla_cpu_prefer_vector_width": 512}


def per_weight_cost(stats: dict[str, Any], n: int) -> dict[str, Any]:
  """XLA's flops, transcendentals and bytes per weight of every variant, and HAM's extra over the bare inner."""
  per = {k: {m: v.get("cost", {}).get(m, 0.0) / n for m in COST_KEYS} for k, v in stats.items()}
  return {**per, "ham_extra": {m: per["ham"][m] - per["inner"][m] for m in COST_KEYS}}


def _print_cost(per: dict[str, Any]) -> None:
  print(
    "    per weight (XLA's count): "
    + "; ".join(
      f"{k} {v['flops']:.2f} flops, {v['transcendentals']:.2f} transcendentals, {v['bytes accessed']:.2f} B"
      for k, v in per.items()
    ),
    flush=True,
  )


def _update_inputs(shapes, dtype=jnp.float32):
  params0 = make_tree(shapes, dtype, seed=0)
  grads = jax.tree.map(lambda x: (1e-3 * jnp.sign(x) + 1e-4 * x).astype(dtype), make_tree(shapes, dtype, 1))
  return params0, grads


def bench_update(
  shapes, reps: int, number: int, dtype=jnp.float32, mw: bool = True, quiet: dict[str, Any] | None = None
) -> dict[str, Any]:
  params0, grads = _update_inputs(shapes, dtype)
  results: dict[str, Any] = {
    "n_floats": tree_size(params0),
    "n_leaves": len(shapes),
    "dtype": str(np.dtype(dtype)),
  }
  for name, inner in inner_optimizers().items():
    txs = variants(name, inner, mw=mw)
    runners, stats = {}, {}
    for k, tx in txs.items():
      params = jax.tree.map(jnp.copy, params0)
      state = tx.init(params)
      compiled = make_update_step(tx).lower(params, state, grads).compile()
      stats[k] = {"opt_state_bytes": tree_bytes(state), **compiled_stats(compiled)}
      runners[k] = _Loop(compiled, (params, state), (grads,))
      for _ in range(2):
        runners[k]()  # warm-up
    times = quiet_interleaved(runners, reps, number, **(quiet or {}))
    res: dict[str, Any] = {"variants": summarize_all(times)}
    res.update(summarize(times, "inner", "ham"))
    res["extra_state_bytes"] = stats["ham"]["opt_state_bytes"] - stats["inner"]["opt_state_bytes"]
    res["per_weight"] = per_weight_cost(stats, results["n_floats"])
    res["compiled"] = stats
    res["load"] = times.pop("load")
    res["times_s"] = times
    results[name] = res
    _print_row(f"update {name} {np.dtype(dtype).name}", res["variants"])
    _print_cost(res["per_weight"])
    print(
      "    state bytes: "
      + ", ".join(f"{k} {v['opt_state_bytes']}" for k, v in stats.items())
      + " | peak bytes: "
      + ", ".join(f"{k} {v.get('memory', {}).get('peak_bytes')}" for k, v in stats.items()),
      flush=True,
    )
  return results


def _same_results(tx, compiled_a, compiled_b, params0, grads, steps: int = 3) -> bool:
  """Whether two builds of the update give bit-identical params and state over ``steps`` steps."""
  outs = []
  for compiled in (compiled_a, compiled_b):
    params = jax.tree.map(jnp.copy, params0)
    state = tx.init(params)
    for _ in range(steps):
      params, state = compiled(params, state, grads)
    outs.append(jax.tree.leaves((params, state)))
  return all(bool(jnp.array_equal(a, b, equal_nan=True)) for a, b in zip(*outs, strict=True))


def bench_vector_width(shapes, reps: int, number: int, quiet: dict[str, Any] | None = None) -> dict[str, Any]:
  """The update built with ``VECTOR_WIDTH_OPTIONS`` beside the default build: times and bit-identity."""
  params0, grads = _update_inputs(shapes)
  results: dict[str, Any] = {"compiler_options": VECTOR_WIDTH_OPTIONS, "cpu_flags_avx512f": _has_avx512()}
  for name, inner in inner_optimizers().items():
    txs = {"inner": inner, "ham": with_ham(inner, inner_lr(name))}
    runners: dict[str, _Loop] = {}
    identical, per = {}, {}
    for k, tx in txs.items():
      params = jax.tree.map(jnp.copy, params0)
      lowered = make_update_step(tx).lower(params, tx.init(params), grads)
      builds = {k: lowered.compile(), f"{k}_vw512": lowered.compile(compiler_options=VECTOR_WIDTH_OPTIONS)}
      identical[k] = _same_results(tx, *builds.values(), params0, grads)
      for label, compiled in builds.items():
        per[label] = {
          m: compiled_stats(compiled).get("cost", {}).get(m, 0.0) / tree_size(params0) for m in COST_KEYS
        }
        p = jax.tree.map(jnp.copy, params0)
        runners[label] = _Loop(compiled, (p, tx.init(p)), (grads,))
        for _ in range(2):
          runners[label]()  # warm-up
    times = quiet_interleaved(runners, reps, number, **(quiet or {}))
    load = times.pop("load")
    res: dict[str, Any] = {
      "bit_identical_to_default": identical,
      "per_weight": per,
      "variants": summarize_all(times),
    }
    # Paired ratios with their 95 % interval: HAM over the bare inner within the 512 build, and 512 over default.
    for key, base, other in [
      ("ham_over_inner_vw512", "inner_vw512", "ham_vw512"),
      ("inner_vw512_over_default", "inner", "inner_vw512"),
      ("ham_vw512_over_default", "ham", "ham_vw512"),
    ]:
      res[key] = _common.paired_ratio(times[base], times[other], names=("base", "other"))
      res[key]["paired_ratio_ci95"] = median_ci(np.asarray(times[other]) / np.asarray(times[base]))
    res.update(load=load, times_s=times)
    results[name] = res
    print(
      f"  vector width 512, {name}: ham/inner {res['variants']['ham']['ratio_median']:.3f}x (default build), "
      f"{res['ham_over_inner_vw512']['paired_ratio_median']:.3f}x (512 build); 512/default: inner "
      f"{res['inner_vw512_over_default']['paired_ratio_median']:.3f}x, "
      f"ham {res['ham_vw512_over_default']['paired_ratio_median']:.3f}x; bit-identical: {identical}",
      flush=True,
    )
  return results


def _has_avx512() -> bool | None:
  """Whether the CPU reports AVX-512F (``/proc/cpuinfo``); None where that file does not exist."""
  try:
    with open("/proc/cpuinfo") as f:
      return " avx512f" in f.read()
  except OSError:
    return None


# --------------------------------------------------------------------------------------------------
# 2. Roofline: streaming bandwidth and exp throughput on the same number of floats
# --------------------------------------------------------------------------------------------------


def bench_roofline(shapes, reps: int, number: int, quiet: dict[str, Any] | None = None) -> dict[str, Any]:
  """In-place (donated) elementwise passes over the ResNet-50 tree, plus cache-resident exp throughput."""
  p = make_tree(shapes, jnp.float32, 0)
  g = jax.tree.map(lambda x: 0.4 * x, make_tree(shapes, jnp.float32, 1))
  n = tree_size(p)

  def inplace(fn):
    return jax.jit(lambda p, g: jax.tree.map(fn, p, g), donate_argnums=(0,))

  kernels = {
    # p <- p - c*g: reads 2, writes 1 f32 array (12 bytes / element).
    "axpy": lambda a, b: a - 0.1 * b,
    # same traffic, plus a cheap (1 + e) / exp(e) / expm1(e) per element
    "x_times_1pe": lambda a, b: a * (1.0 + jnp.clip(b, -5.0, 5.0)),
    "x_times_exp": lambda a, b: a * jnp.exp(jnp.clip(b, -5.0, 5.0)),
    "x_plus_x_expm1": lambda a, b: a + a * jnp.expm1(jnp.clip(b, -5.0, 5.0)),
  }

  runners = {k: _Loop(inplace(f), (jax.tree.map(jnp.copy, p),), (g,)) for k, f in kernels.items()}
  for r in runners.values():
    r.fn = (lambda f: lambda a, b: (f(a, b),))(r.fn)
    r()
  times = quiet_interleaved(runners, reps, number, **(quiet or {}))
  load = times.pop("load")
  med = {k: float(np.median(v)) for k, v in times.items() if not k.endswith(":cpu")}

  # Compute-bound exp throughput: 100 dependent exps over a cache-resident 1 MiB vector (both cores).
  x = jax.random.normal(jax.random.key(0), (1 << 18,)) * 0.05
  k_iter = 100
  loops = {
    "exp": jax.jit(lambda x: jax.lax.fori_loop(0, k_iter, lambda i, x: jnp.exp(-0.5 * x), x)),
    "expm1": jax.jit(lambda x: jax.lax.fori_loop(0, k_iter, lambda i, x: jnp.expm1(-0.5 * x), x)),
    "fma": jax.jit(lambda x: jax.lax.fori_loop(0, k_iter, lambda i, x: 0.3 - 0.5 * x, x)),
  }
  loop_t = {}
  for k, f in loops.items():
    _block(f(x))
    loop_t[k] = _common.median_time(lambda f=f: _block(f(x)), max(5, reps // 3))
  out = {
    "n_floats": n,
    "ms": {k: 1e3 * v for k, v in med.items()},
    "stream_GBps": 12 * n / med["axpy"] / 1e9,
    "exp_extra_ns_per_elem_streaming": 1e9 * (med["x_times_exp"] - med["x_times_1pe"]) / n,
    "expm1_extra_ns_per_elem_streaming": 1e9 * (med["x_plus_x_expm1"] - med["x_times_1pe"]) / n,
    "cache_resident_Gelem_per_s": {k: x.size * k_iter / v / 1e9 for k, v in loop_t.items()},
    "load": load,
  }
  print(
    f"  roofline: stream {out['stream_GBps']:.1f} GB/s; "
    + ", ".join(f"{k} {v:.1f} ms" for k, v in out["ms"].items())
    + f"; extra per element: exp {out['exp_extra_ns_per_elem_streaming']:.2f} ns, "
    f"expm1 {out['expm1_extra_ns_per_elem_streaming']:.2f} ns; cache-resident Gelem/s: "
    + ", ".join(f"{k} {v:.2f}" for k, v in out["cache_resident_Gelem_per_s"].items()),
    flush=True,
  )
  return out


# --------------------------------------------------------------------------------------------------
# 3. Full train step of Flax models
# --------------------------------------------------------------------------------------------------


def _training_models() -> dict[str, tuple[Callable[[nnx.Rngs], nnx.Module], tuple[int, ...], int]]:
  """``ham_optax_examples.models`` at the sizes its configs use: (factory, input shape, batch)."""
  return {
    "MLP": (lambda r: tm.MLP(40, 10, rngs=r), (40,), 128),
    "CNN1D": (lambda r: tm.CNN1D(40, 10, rngs=r), (40,), 128),
    "ResNet18": (lambda r: tm.ResNet18(10, rngs=r), (32, 32, 3), 16),
  }


def bench_train_step(
  reps: int, number: int, only: list[str] | None = None, quiet: dict[str, Any] | None = None
) -> dict[str, Any]:
  specs = _training_models()
  results: dict[str, Any] = {"models_source": "ham_optax_examples.models"}
  for mname, (factory, in_shape, batch) in specs.items():
    if only and mname not in only:
      continue
    model = factory(nnx.Rngs(0))
    graphdef, params0, rest0 = nnx.split(model, nnx.Param, ...)
    kx, ky = jax.random.split(jax.random.key(1))
    x = jax.random.normal(kx, (batch, *in_shape))
    y = jax.random.randint(ky, (batch,), 0, 10)

    def loss_fn(m, x, y):
      logits = m(x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    mres: dict[str, Any] = {"n_params": tree_size(params0), "batch": batch, "input_shape": list(in_shape)}
    for oname, inner in inner_optimizers().items():
      txs = variants(oname, inner)
      runners, stats = {}, {}
      for k, tx in txs.items():

        def step(params, rest, state, x, y, tx=tx, graphdef=graphdef):
          m = nnx.merge(graphdef, params, rest)
          m.train()
          loss, grads = nnx.value_and_grad(loss_fn)(m, x, y)
          params = nnx.state(m, nnx.Param)
          updates, state = tx.update(grads, state, params)
          _, _, rest = nnx.split(m, nnx.Param, ...)
          return optax.apply_updates(params, updates), rest, state, loss

        params, rest = jax.tree.map(jnp.copy, params0), jax.tree.map(jnp.copy, rest0)
        state = tx.init(params)
        compiled = jax.jit(step, donate_argnums=(0, 1, 2)).lower(params, rest, state, x, y).compile()
        stats[k] = {"opt_state_bytes": tree_bytes(state), **compiled_stats(compiled)}
        runners[k] = _Loop(compiled, (params, rest, state), (x, y))
        for _ in range(2):
          runners[k]()
      big = mres["n_params"] > 1_000_000  # ResNet-18: ~1 s a step on 2 cores, so fewer repetitions
      times = quiet_interleaved(
        runners, max(5, reps // 3) if big else reps, 1 if big else number, **(quiet or {})
      )
      res: dict[str, Any] = {"variants": summarize_all(times), "load": times.pop("load")}
      res.update(summarize(times, "inner", "ham"))
      res["extra_state_bytes"] = stats["ham"]["opt_state_bytes"] - stats["inner"]["opt_state_bytes"]
      res["compiled"] = stats
      res["times_s"] = times
      mres[oname] = res
      _print_row(f"train {mname} {oname}", res["variants"])
    results[mname] = mres
  return results


# --------------------------------------------------------------------------------------------------
# 4. bf16: speed and the accuracy of the decay
# --------------------------------------------------------------------------------------------------


def bench_bf16_decay(steps: int = 1000) -> dict[str, Any]:
  """``steps`` beta-only HAM steps (zero gradient, lr=0.1, beta=1e-3: factor exp(-1e-4) per step).

  Compares bf16 parameters updated in place with f32 master weights (cast to bf16 for use), against
  the exact decay ``exp(-steps*lr*beta)``.
  """
  shapes = [("w", (512, 512))]
  out: dict[str, Any] = {
    "steps": steps,
    "lr": LR,
    "beta": BETA,
    "exact_factor": float(np.exp(-steps * LR * BETA)),
  }
  for label, dtype in [("bf16_params", jnp.bfloat16), ("f32_master", jnp.float32)]:
    p0 = make_tree(shapes, dtype, 0)
    tx = ham_optax.ham(optax.sgd(LR), LR, alpha=ALPHA, beta=BETA)
    zeros = jax.tree.map(jnp.zeros_like, p0)

    @jax.jit
    def run(p, tx=tx, zeros=zeros):
      def body(_, c):
        p, s = c
        u, s = tx.update(zeros, s, p)
        return optax.apply_updates(p, u), s

      return jax.lax.fori_loop(0, steps, body, (p, tx.init(p)))[0]

    one = jax.jit(lambda p, tx=tx, zeros=zeros: optax.apply_updates(p, tx.update(zeros, tx.init(p), p)[0]))
    p1 = one(p0)
    pk = run(p0)
    w0 = np.asarray(p0["w"], np.float64)
    wk = np.asarray(pk["w"].astype(jnp.bfloat16).astype(jnp.float32), np.float64)  # what the model sees
    nz = w0 != 0
    achieved = float(np.median(wk[nz] / w0[nz]))
    out[label] = {
      "frac_changed_after_1_step": float(np.mean(np.asarray(p1["w"] != p0["w"]))),
      "median_factor_after_steps": achieved,
      "decay_achieved_fraction": float((1 - achieved) / (1 - out["exact_factor"])),
    }
    print(
      f"  bf16 decay [{label}]: changed after 1 step {out[label]['frac_changed_after_1_step']:.3f}, "
      f"factor after {steps} steps {achieved:.5f} (exact {out['exact_factor']:.5f})",
      flush=True,
    )
  return out


# --------------------------------------------------------------------------------------------------
# Plot + main
# --------------------------------------------------------------------------------------------------


def _tree_label(results: dict[str, Any]) -> str:
  return "ResNet-50 tree" if results.get("tree", "resnet50") == "resnet50" else "small tree"


def _rows(results: dict[str, Any]):
  """(label, section result) pairs in display order."""
  tree = _tree_label(results)
  for sec, what in [
    ("update", f"update, {tree}, f32"),
    ("update_bf16", f"update, {tree}, bf16"),
  ]:
    for o in ("sgdm", "adamw"):
      if o in results.get(sec, {}):
        yield f"{what}, {o}", results[sec][o]
  for m, mres in results.get("train_step", {}).items():
    if isinstance(mres, dict):
      for o in ("sgdm", "adamw"):
        if o in mres:
          yield f"train step {m} (batch {mres['batch']}), {o}", mres[o]


def plot(results: dict[str, Any], path: str) -> None:
  import matplotlib.pyplot as plt  # here, not at the top: matplotlib is only needed for the figure

  series = {"ham": ("ham(inner)", "C0")}
  rows = list(_rows(results))
  peer = results.get("torch_peer", {})
  labels = [lbl for lbl, _ in rows] + [
    f"torch published wrapper, {o}" for o in ("sgdm", "adamw") if o in peer
  ]
  if not labels:
    return
  fig, ax = plt.subplots(figsize=(8, 0.45 * len(labels) + 1.5))
  y = np.arange(len(labels))
  h = 0.6
  for si, (key, (name, color)) in enumerate(series.items()):
    vals, lo, hi, ys = [], [], [], []
    for yi, (_, r) in enumerate(rows):
      v = r.get("variants", {}).get(key)
      if v:
        vals.append(v["ratio_median"])
        lo.append(v["ratio_median"] - v["ratio_iqr"][0])
        hi.append(v["ratio_iqr"][1] - v["ratio_median"])
        ys.append(yi + (si - (len(series) - 1) / 2) * h)
    if vals:
      ax.barh(ys, vals, height=h, xerr=[lo, hi], color=color, label=name)
      for yy, v in zip(ys, vals, strict=True):
        ax.text(v * 1.03, yy, f"{v:.2f}x", va="center", fontsize=7)
  for k, o in enumerate(o for o in ("sgdm", "adamw") if o in peer):
    r = peer[o]
    yy = len(rows) + k
    ax.barh(
      [yy],
      [r["paired_ratio_median"]],
      height=h,
      color="C3",
      label="torch wrapper semantics" if k == 0 else None,
    )
    ax.text(r["paired_ratio_median"] * 1.03, yy, f"{r['paired_ratio_median']:.1f}x", va="center", fontsize=7)
  ax.set_yticks(y, labels, fontsize=8)
  ax.set_xscale("log")
  ax.axvline(1.0, color="k", lw=0.8)
  ax.set_xlabel("time / bare inner optimizer's time (median paired ratio, bars: IQR)", fontsize=8)
  ax.set_xlim(
    0.5, 2.5 * max([1.0] + [p["paired_ratio_median"] for p in peer.values() if isinstance(p, dict)])
  )
  ax.set_title(
    f"HAM overhead on {results.get('devices', ['?'])[0]} ({results.get('cpu_count')} CPUs)", fontsize=9
  )
  ax.legend(fontsize=7, loc="lower right")
  ax.invert_yaxis()
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--out", default="benchmarks/results/overhead")
  ap.add_argument("--reps", type=int, default=61, help="interleaved repetitions for the update benchmark")
  ap.add_argument("--number", type=int, default=3, help="calls per repetition")
  ap.add_argument("--train-reps", type=int, default=21)
  ap.add_argument("--models", nargs="*", default=None, help="subset of MLP CNN1D ResNet18")
  ap.add_argument(
    "--skip", nargs="*", default=[], help="sections to skip: update vector_width roofline train bf16 torch"
  )
  ap.add_argument("--quick", action="store_true", help="few reps of everything (smoke test)")
  ap.add_argument(
    "--tree",
    choices=("resnet50", "small"),
    default="resnet50",
    help="the parameter tree (small: smoke tests)",
  )
  ap.add_argument(
    "--max-other-cpu",
    type=float,
    default=0.15,
    help="take a repetition only while other processes use fewer cores",
  )
  ap.add_argument(
    "--max-wait", type=float, default=60.0, help="seconds to wait for a quiet moment, then skip"
  )
  ap.add_argument(
    "--probe", type=float, default=0.5, help="seconds over which other processes' CPU is measured"
  )
  args = ap.parse_args(argv)
  if args.quick:
    args.reps, args.number, args.train_reps = 3, 1, 3
  quiet = {"max_other_cpu": args.max_other_cpu, "max_wait": args.max_wait, "probe": args.probe}

  shapes = (
    _common.resnet50_shapes() if args.tree == "resnet50" else [("conv", (3, 3, 16, 32)), ("fc", (256, 64))]
  )
  results: dict[str, Any] = {
    **_common.environment(),
    "alpha": ALPHA,
    "beta": BETA,
    "tree": args.tree,
    "quiet": quiet,
  }
  print(f"devices: {results['devices']}", flush=True)
  if "update" not in args.skip:
    results["update"] = bench_update(shapes, args.reps, args.number, quiet=quiet)
  if "vector_width" not in args.skip:
    results["vector_width"] = bench_vector_width(shapes, args.reps, args.number, quiet)
  if "roofline" not in args.skip:
    results["roofline"] = bench_roofline(shapes, max(3, args.reps // 2), args.number, quiet)
  if "train" not in args.skip:
    results["train_step"] = bench_train_step(args.train_reps, 1 if args.quick else 2, args.models, quiet)
  if "bf16" not in args.skip:
    results["update_bf16"] = bench_update(
      shapes, max(3, args.reps // 2), args.number, jnp.bfloat16, quiet=quiet
    )
    results["bf16_decay"] = bench_bf16_decay()
  if "torch" not in args.skip:
    try:
      import torch_peer  # optional: needs torch (the `benchmark` extra)
    except ImportError as e:
      print(f"  torch peer skipped: {e}", flush=True)
    else:
      results["torch_peer"] = torch_peer.bench(shapes, reps=max(3, args.reps // 4), number=1)

  _common.save_json(os.path.join(args.out, "overhead.json"), results)
  plot(results, os.path.join(args.out, "overhead.png"))
  print(table(results))
  return results


def table(results: dict[str, Any]) -> str:
  """Markdown table of the headline times and ratios (median over interleaved repetitions, ratio IQR)."""

  def cell(v):
    if v is None:
      return "-"
    cpu = f"; cpu {v['cpu_ratio_median']:.2f}x" if "cpu_ratio_median" in v else ""
    ci = f"; 95 % CI [{v['ratio_ci95'][0]:.2f}, {v['ratio_ci95'][1]:.2f}]" if "ratio_ci95" in v else ""
    return f"{v['median_ms']:.2f} ({v['ratio_median']:.2f}x [{v['ratio_iqr'][0]:.2f}, {v['ratio_iqr'][1]:.2f}]{ci}{cpu})"

  def cost(r):
    per = r.get("per_weight")
    if not per:
      return "-"
    return " / ".join(
      f"{per['inner'][m]:.0f} -> {per['ham'][m]:.0f}" for m in ("flops", "transcendentals", "bytes accessed")
    )

  rows = [
    "| what | inner (ms) | ham(inner) | m*w (spred) | extra state (B) | per weight: flops / transc. / bytes |",
    "|---|---|---|---|---|---|",
  ]
  for label, r in _rows(results):
    v = r["variants"]
    rows.append(
      f"| JAX {label} | {v['inner']['median_ms']:.2f} | {cell(v.get('ham'))} | "
      f"{cell(v.get('mw_spred'))} | {r['extra_state_bytes']} | {cost(r)} |"
    )
  for o, r in results.get("vector_width", {}).items():
    if isinstance(r, dict) and "variants" in r:
      vw = r["ham_over_inner_vw512"]
      rows.append(
        f"| JAX update, {_tree_label(results)}, f32, {o}, `xla_cpu_prefer_vector_width=512` | "
        f"{vw['base_median_ms']:.2f} | {vw['other_median_ms']:.2f} ({vw['paired_ratio_median']:.2f}x "
        f"[{vw['paired_ratio_iqr'][0]:.2f}, {vw['paired_ratio_iqr'][1]:.2f}]; 95 % CI "
        f"[{vw['paired_ratio_ci95'][0]:.2f}, {vw['paired_ratio_ci95'][1]:.2f}]; bit-identical to the default "
        f"build: {all(r['bit_identical_to_default'].values())}) | - | 0 | - |"
      )
  for o in ("sgdm", "adamw"):
    r = results.get("torch_peer", {}).get(o)
    if r:
      rows.append(
        f"| torch, published-wrapper semantics, ResNet-50 tensors, {o} | {r['inner_median_ms']:.2f} | "
        f"{r['ham_median_ms']:.2f} ({r['paired_ratio_median']:.2f}x [{r['paired_ratio_iqr'][0]:.2f}, "
        f"{r['paired_ratio_iqr'][1]:.2f}]) | - | 0 | - |"
      )
  return "\n".join(rows)


if __name__ == "__main__":
  main()
