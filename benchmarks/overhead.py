"""What HAM costs on top of its inner optimizer.

Measures, in one run and with A/B interleaved, ``inner`` (SGD+momentum, AdamW) against ``ham(inner)``:

1. ``update``: the jitted, donated update (``tx.update`` + ``optax.apply_updates``) on a ResNet-50-shaped tree
   (25.56 M floats, 161 leaves), beside the paper's mirror step without HAM's guards (``paper_step``, what the
   guards cost) and m*w (spred): the times, and XLA's own count of both compiled programs per weight (flops,
   transcendentals, bytes accessed; deterministic), their memory analysis and fusions, the optimizer-state bytes.
2. ``roofline``: this machine's best streaming bandwidth (a fused ``p + c*g`` pass) and ``exp`` throughput.
3. ``train_step``: a full train step of the Flax models of ``ham_optax_examples.models`` (MLP, CNN1D, ResNet18).
4. ``bf16``: the update with bf16 parameters, and HAM's ``exp(-lr*beta)`` decay in bf16 vs f32 master weights.
5. ``torch_peer`` (when ``torch`` imports): the published PyTorch wrapper's semantics vs a bare torch step on the
   same shapes (see ``torch_peer.py``).
6. ``vector_width``: the update built with XLA:CPU's option ``xla_cpu_prefer_vector_width=512`` (``jax.jit(f,
   compiler_options={"xla_cpu_prefer_vector_width": 512})``) beside the default build: the times, and whether the
   results are bit for bit those of the default build.

Run (with the CPUs otherwise idle; about 10 minutes on a 2-core CPU)::

    python benchmarks/overhead.py --out benchmarks/results/overhead

``--quick`` runs a few reps of everything (smoke test). Writes ``overhead.json`` and ``overhead.png`` to ``--out``.
Every time is a median over ``--reps`` interleaved repetitions (default 61); ratios are medians of per-repetition
paired ratios with their 25-75 % range and a distribution-free 95 % interval of the median. A repetition is taken
only while other processes use fewer than ``--max-other-cpu`` cores (:func:`quiet_interleaved`), and the load is
saved with each repetition.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from ham_optax_examples import models as tm
from optax.tree_utils import tree_size

import ham_optax
from ham_optax import overparam

import _common


def make_tree(shapes, dtype=jnp.float32, seed: int = 0) -> dict[str, jax.Array]:
  """A dict of random arrays with the given shapes (weights ~ N(0, 0.05^2))."""
  keys = jax.random.split(jax.random.key(seed), len(shapes))
  return {n: (0.05 * jax.random.normal(k, s)).astype(dtype) for (n, s), k in zip(shapes, keys, strict=True)}


LR, ALPHA, BETA = 0.1, 200.0, 1e-3
INNER_LR = {"sgdm": LR, "adamw": LR * 1e-2}


def paper_step(inner: optax.GradientTransformation, lr: float, max_exponent: float = 5.0):
  """``inner``, then the paper's mirror step as written, without HAM's saturation guards (a reference for what
  the guards cost): each kernel's update becomes ``u + x_half * (exp(clip(-lr (ALPHA sign(x_half) g + BETA), -c,
  c)) - 1)``, i.e. ``x_half * exp(...) - p`` written as ``ham_optax`` does; other leaves keep ``u``."""

  def update_fn(grads, state, params):
    updates, state = inner.update(grads, state, params)

    def leaf(u, g, p, selected):
      x_half = p + u
      e = jnp.clip(-lr * (ALPHA * jnp.sign(x_half) * g + BETA), -max_exponent, max_exponent)
      return u + x_half * (jnp.exp(e) - 1.0) if selected else u

    return jax.tree.map(leaf, updates, grads, params, ham_optax.default_mask(params)), state

  return optax.GradientTransformation(inner.init, update_fn)


def variants(name: str, references: bool = False) -> dict[str, optax.GradientTransformation]:
  """The bare inner optimizer ``name`` and HAM around it (the mirror step takes the inner learning rate, as the
  published wrapper does); with ``references``, also the paper's unguarded step (:func:`paper_step`) and m*w
  (spred)."""
  lr = INNER_LR[name]
  inner = optax.sgd(lr, momentum=0.9) if name == "sgdm" else optax.adamw(lr, weight_decay=1e-4)
  out = {"inner": inner, "ham": ham_optax.ham(inner, lr, alpha=ALPHA, beta=BETA)}
  return out | (
    {"paper": paper_step(inner, lr), "mw_spred": overparam.spred(inner, 1e-4)} if references else {}
  )


def _proc(name: str) -> str | None:
  """The text of ``/proc/<name>``; None where it does not exist."""
  try:
    return Path("/proc", name).read_text()
  except OSError:
    return None


def _other_cores() -> Callable[[], float]:
  """A probe whose every call returns the cores other processes used since its previous call: the CPU seconds all
  cores spent busy (``/proc/stat`` minus idle and iowait; NaN without it) minus this process's, per second."""

  def now() -> tuple[float, float, float]:
    stat, t = _proc("stat"), os.times()
    ticks = [int(v) for v in stat.split("\n")[0].split()[1:9]] if stat else [math.nan] * 8
    busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    return busy, t.user + t.system, time.perf_counter()

  last = [now()]

  def others() -> float:
    (busy, own, wall), (busy0, own0, wall0) = now(), last[0]
    last[0] = (busy, own, wall)
    return max(((busy - busy0) - (own - own0)) / max(wall - wall0, 1e-9), 0.0)

  return others


def quiet_interleaved(
  runners: dict[str, Callable], reps: int, number: int = 1, *, max_other_cpu=0.15, max_wait=60.0, probe=0.5
) -> dict[str, Any]:
  """:func:`_common.interleaved`, one repetition at a time, each taken while other processes leave the CPUs free.

  Before each repetition, other processes' CPU is measured over ``probe`` seconds; while it exceeds
  ``max_other_cpu`` cores the script waits (up to ``max_wait`` seconds per repetition, then skips it). Returns
  the times as ``_common.interleaved`` does, plus ``"load"``: per repetition taken, ``os.getloadavg()[0]`` and
  other processes' CPU before and during it, and the number of repetitions skipped.
  """
  times: dict[str, list[float]] = {}
  load: dict[str, Any] = {"loadavg_1m": [], "others_cpu_before": [], "others_cpu_during": [], "skipped": 0}
  others = _other_cores()
  for rep in range(reps):
    t_end = time.perf_counter() + max_wait
    while True:
      time.sleep(probe)
      before = others()
      if not before > max_other_cpu or time.perf_counter() > t_end:  # NaN (no /proc/stat) counts as quiet
        break
    if before > max_other_cpu:
      load["skipped"] += 1
      continue
    one = _common.interleaved(runners, 1, number, seed=rep)
    load["others_cpu_during"].append(others())
    load["others_cpu_before"].append(before)
    load["loadavg_1m"].append(os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan)
    for k, v in one.items():
      times.setdefault(k, []).extend(v)
  if not times:
    busy = f"other processes kept over {max_other_cpu} cores busy"
    raise RuntimeError(f"no quiet moment in {reps} tries: {busy}")
  return {**times, "load": load}


def median_ci(x: Any) -> list[float]:
  """Distribution-free 95 % interval for the median: the order statistics at ``n/2 -+ z sqrt(n)/2``, ``z = 1.96``
  (normal approximation of the binomial). For 61 values, the 23rd and the 39th smallest."""
  x, z = np.sort(np.asarray(x, np.float64)), 1.96
  n = len(x)
  lo = max(int(math.floor(n / 2 - z * math.sqrt(n) / 2)), 0)
  hi = min(int(math.ceil(n / 2 + z * math.sqrt(n) / 2)), n) - 1
  return [float(x[lo]), float(x[max(hi, lo)])]


def summarize_all(times: dict[str, list[float]], base: str = "inner") -> dict[str, Any]:
  """Per variant: median and IQR of seconds/call, the median (IQR, 95 % interval) of the per-repetition ratio to
  ``base``, and the same for process CPU time where measured."""
  med, q, out = lambda x: float(np.median(x)), _common.quartiles, {}
  for k in (k for k in times if not k.endswith(":cpu")):
    paired = np.asarray(times[k]) / np.asarray(times[base])
    out[k] = {"median_ms": 1e3 * med(times[k]), "iqr_ms": q(times[k], 1e3)}
    out[k] |= {"ratio_median": med(paired), "ratio_iqr": q(paired), "ratio_ci95": median_ci(paired)}
    if (c := times.get(f"{k}:cpu")) is not None:
      cpu = np.asarray(c) / np.asarray(times[f"{base}:cpu"])
      out[k] |= {"cpu_ms": 1e3 * med(c), "cpu_ratio_median": med(cpu), "cpu_ratio_iqr": q(cpu)}
  return out


COST_KEYS = ("flops", "transcendentals", "bytes accessed")
VECTOR_WIDTH_OPTIONS = {"xla_cpu_prefer_vector_width": 512}


def compiled_stats(compiled) -> dict[str, Any]:
  """XLA's own accounting of a compiled program: memory (peak = inputs + outputs not aliased to inputs +
  scratch), cost model and fusion counts."""
  out: dict[str, Any] = {}
  mem = compiled.memory_analysis()
  if mem is not None:
    m = {
      f"{k}_bytes": int(getattr(mem, f"{k}_size_in_bytes")) for k in ("argument", "output", "alias", "temp")
    }
    m["peak_bytes"] = m["argument_bytes"] + m["output_bytes"] - m["alias_bytes"] + m["temp_bytes"]
    out["memory"] = m
  cost = compiled.cost_analysis()
  cost = (cost[0] if cost else {}) if isinstance(cost, list) else cost  # older jax: one dict per program
  if cost:
    out["cost"] = {k: float(cost[k]) for k in COST_KEYS if k in cost}
  return out | {"hlo": hlo_stats(compiled.as_text())}


NOT_KERNELS = {"parameter", "constant", "tuple", "get-tuple-element", "bitcast"}  # no launch, no memory pass
_INSTRUCTION = re.compile(
  r"^\s*(?:ROOT )?%(?P<name>\S+) = (?P<type>\((?:[^()]|\([^()]*\))*\)|\S+) (?P<op>[\w-]+)\((?P<args>[^)]*)\)"
)


def _shape_bytes(hlo_type: str) -> int:
  """The bytes of an HLO type: an array (``f32[64,3]{1,0}``) or a tuple of them."""
  shapes = re.findall(r"\b(pred|[a-z]+\d+[a-z0-9]*)\[([\d,]*)\]", hlo_type)
  size = lambda dt: 1 if dt == "pred" else int(re.search(r"\d+", dt)[0]) // 8  # noqa: E731 (f8e4m3fn: 1)
  return sum(size(dt) * math.prod(int(d) for d in dims.split(",") if d) for dt, dims in shapes)


def hlo_stats(text: str) -> dict[str, Any]:
  """Counts in a compiled program's text (``compiled.as_text()``), whichever backend compiled it: the kernels (ops)
  its entry computation runs (every instruction but ``NOT_KERNELS``; a fusion is one loop over its arrays, on a TPU
  the rest are mostly copies between memories), how many of them have only scalar outputs and how many are fusions
  over arrays, the bytes they read and write (each op's operands and outputs, as XLA's cost model counts them), the
  most kernels that read one input (1: every input array is read in a single pass), the ``exp`` ops and the
  collectives."""
  entry, kinds, names, readers = text[text.find("\nENTRY") :], {}, {}, {}
  kernel_bytes = scalar_kernels = array_fusions = 0
  for m in filter(None, map(_INSTRUCTION.match, entry.splitlines()[1:])):
    names[m["name"]] = m["type"]
    if m["op"] == "parameter":
      readers[m["name"]] = 0
    if m["op"] in NOT_KERNELS:
      continue
    kinds[m["op"]] = kinds.get(m["op"], 0) + 1
    scalar = not re.search(r"\[\d", m["type"])  # every output a scalar (a step count)
    scalar_kernels += scalar
    array_fusions += m["op"] == "fusion" and not scalar
    args = re.findall(r"%([\w.-]+)", m["args"])
    kernel_bytes += _shape_bytes(m["type"]) + sum(_shape_bytes(names.get(a, "")) for a in args)
    for a in set(args) & set(readers):
      readers[a] += 1
  collective = r" (all-reduce|all-gather|reduce-scatter|collective-permute|all-to-all)(-start)?\("
  return {
    "fusions_in_entry": kinds.get("fusion", 0),
    "kernels_in_entry": sum(kinds.values()),
    "scalar_kernels": scalar_kernels,
    "array_fusions": array_fusions,
    "kernel_ops": kinds,
    "kernel_bytes": kernel_bytes,
    "max_kernels_reading_an_input": max(readers.values(), default=0),
    "exponential_ops": len(re.findall(r" exponential\(", text)),
    "collectives": len(re.findall(collective, text)),
  }


def make_update_step(tx: optax.GradientTransformation):
  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  return jax.jit(step, donate_argnums=(0, 1))


class _Loop:
  """Holds donated arguments and runs one compiled call per ``__call__``; warms up ``warmup`` calls."""

  def __init__(self, fn, carry, const, warmup: int = 2):
    self.fn, self.carry, self.const = fn, tuple(carry), tuple(const)
    for _ in range(warmup):
      self()

  def __call__(self):
    out = jax.block_until_ready(self.fn(*self.carry, *self.const))
    self.carry = out[: len(self.carry)]


def _compile_variants(name: str, step: Callable, carry: tuple, const: tuple, refs=False) -> tuple[dict, dict]:
  """Compiles ``step(tx)`` for every variant of :func:`variants` on a copy of ``carry`` (params first), the
  optimizer state and ``const``; returns per variant its :class:`_Loop`, and its state bytes and XLA's stats."""
  runners, stats = {}, {}
  for k, tx in variants(name, references=refs).items():
    copy = jax.tree.map(jnp.copy, carry)
    state = tx.init(copy[0])
    compiled = step(tx).lower(*copy, state, *const).compile()
    stats[k] = {"opt_state_bytes": sum(x.nbytes for x in jax.tree.leaves(state)), **compiled_stats(compiled)}
    runners[k] = _Loop(compiled, (*copy, state), const)
  return runners, stats


def _timed(runners, stats, reps: int, number: int, quiet: dict[str, Any]) -> dict[str, Any]:
  """Times ``runners`` (quiet, interleaved) and summarises them against ``"inner"``, HAM's ratio paired."""
  times = quiet_interleaved(runners, reps, number, **quiet)
  load = times.pop("load")
  res: dict[str, Any] = {"variants": summarize_all(times), "load": load}
  res |= _common.paired_ratio(times["inner"], times["ham"], names=("inner", "ham"))
  res["extra_state_bytes"] = stats["ham"]["opt_state_bytes"] - stats["inner"]["opt_state_bytes"]
  return res | {"compiled": stats, "times_s": times}


def _print_row(label: str, summ: dict[str, Any]) -> None:
  def one(k, v):
    extra = f" (x{v['ratio_median']:.3f}; cpu time x{v.get('cpu_ratio_median', math.nan):.3f})"
    return f"{k} {v['median_ms']:.2f} ms" + ("" if k == "inner" else extra)

  print(f"  {label}: " + ", ".join(one(k, v) for k, v in summ.items()), flush=True)


def _per_weight(stats: dict[str, Any], n: int) -> dict[str, float]:
  return {m: stats.get("cost", {}).get(m, 0.0) / n for m in COST_KEYS}


def _update_inputs(shapes, dtype=jnp.float32):
  params0 = make_tree(shapes, dtype, seed=0)
  grads = jax.tree.map(lambda x: (1e-3 * jnp.sign(x) + 1e-4 * x).astype(dtype), make_tree(shapes, dtype, 1))
  return params0, grads


def bench_update(shapes, reps: int, number: int, quiet: dict[str, Any], dtype=jnp.float32) -> dict[str, Any]:
  """The donated update (``tx.update`` + ``apply_updates``) of every variant and m*w, timed and counted; per
  weight, XLA's flops, transcendentals and bytes of each, and HAM's extra over the bare inner."""
  params0, grads = _update_inputs(shapes, dtype)
  n = tree_size(params0)
  results: dict[str, Any] = {"n_floats": n, "n_leaves": len(shapes), "dtype": str(np.dtype(dtype))}
  for name in INNER_LR:
    runners, stats = _compile_variants(name, make_update_step, (params0,), (grads,), refs=True)
    res = results[name] = _timed(runners, stats, reps, number, quiet)
    per = {k: _per_weight(v, n) for k, v in stats.items()}
    res["per_weight"] = per | {"ham_extra": {m: per["ham"][m] - per["inner"][m] for m in COST_KEYS}}
    _print_row(f"update {name} {np.dtype(dtype).name}", res["variants"])
    counts = (
      f"{k} {v['flops']:.2f} flops, {v['transcendentals']:.2f} transcendentals, {v['bytes accessed']:.2f} B"
      for k, v in res["per_weight"].items()
    )
    print("    per weight (XLA's count): " + "; ".join(counts), flush=True)
    state = ", ".join(f"{k} {v['opt_state_bytes']}" for k, v in stats.items())
    peak = ", ".join(f"{k} {v.get('memory', {}).get('peak_bytes')}" for k, v in stats.items())
    print(f"    state bytes: {state} | peak bytes: {peak}", flush=True)
  return results


def bench_vector_width(shapes, reps: int, number: int, quiet: dict[str, Any]) -> dict[str, Any]:
  """The update built with ``VECTOR_WIDTH_OPTIONS`` beside the default build: times, and whether both builds give
  bit-identical params and state after their 3 warm-up steps."""
  params0, grads = _update_inputs(shapes)
  avx512 = None if (cpuinfo := _proc("cpuinfo")) is None else " avx512f" in cpuinfo
  results: dict[str, Any] = {"compiler_options": VECTOR_WIDTH_OPTIONS, "cpu_flags_avx512f": avx512}
  for name in INNER_LR:
    runners, identical, per = {}, {}, {}
    for k, tx in variants(name).items():
      params = jax.tree.map(jnp.copy, params0)
      lowered = make_update_step(tx).lower(params, tx.init(params), grads)
      builds = {k: lowered.compile(), f"{k}_vw512": lowered.compile(compiler_options=VECTOR_WIDTH_OPTIONS)}
      for label, compiled in builds.items():
        per[label] = _per_weight(compiled_stats(compiled), tree_size(params0))
        p = jax.tree.map(jnp.copy, params0)
        runners[label] = _Loop(compiled, (p, tx.init(p)), (grads,), warmup=3)
      pairs = zip(*(jax.tree.leaves(runners[label].carry) for label in builds), strict=True)
      identical[k] = all(bool(jnp.array_equal(a, b, equal_nan=True)) for a, b in pairs)
    times = quiet_interleaved(runners, reps, number, **quiet)
    load = times.pop("load")
    res = {"bit_identical_to_default": identical, "per_weight": per, "variants": summarize_all(times)}
    # Paired ratios with their 95 % interval: HAM over the bare inner within the 512 build, and 512 over default.
    for key, base, other in [
      ("ham_over_inner_vw512", "inner_vw512", "ham_vw512"),
      ("inner_vw512_over_default", "inner", "inner_vw512"),
      ("ham_vw512_over_default", "ham", "ham_vw512"),
    ]:
      res[key] = _common.paired_ratio(times[base], times[other], names=("base", "other"))
      res[key]["paired_ratio_ci95"] = median_ci(np.asarray(times[other]) / np.asarray(times[base]))
    results[name] = res | {"load": load, "times_s": times}
    print(
      f"  vector width 512, {name}: ham/inner {res['variants']['ham']['ratio_median']:.3f}x (default build), "
      f"{res['ham_over_inner_vw512']['paired_ratio_median']:.3f}x (512 build); 512/default: inner "
      f"{res['inner_vw512_over_default']['paired_ratio_median']:.3f}x, "
      f"ham {res['ham_vw512_over_default']['paired_ratio_median']:.3f}x; bit-identical: {identical}",
      flush=True,
    )
  return results


def bench_roofline(shapes, reps: int, number: int, quiet: dict[str, Any]) -> dict[str, Any]:
  """What the machine does at best on the same floats: in-place (donated) elementwise passes (``p - c*g``
  reads 2 and writes 1 f32 array, 12 bytes a float; the others add a cheap ``1 + e``, ``exp`` or ``expm1``),
  and cache-resident throughput of 100 dependent ``exp`` / ``expm1`` / FMA over a 1 MiB vector."""
  p = make_tree(shapes, jnp.float32, 0)
  g = jax.tree.map(lambda x: 0.4 * x, make_tree(shapes, jnp.float32, 1))
  n = tree_size(p)
  kernels = {
    "axpy": lambda a, b: a - 0.1 * b,
    "x_times_1pe": lambda a, b: a * (1.0 + jnp.clip(b, -5.0, 5.0)),
    "x_times_exp": lambda a, b: a * jnp.exp(jnp.clip(b, -5.0, 5.0)),
    "x_plus_x_expm1": lambda a, b: a + a * jnp.expm1(jnp.clip(b, -5.0, 5.0)),
  }
  inplace = lambda f: jax.jit(lambda p, g: (jax.tree.map(f, p, g),), donate_argnums=(0,))  # noqa: E731
  runners = {k: _Loop(inplace(f), (jax.tree.map(jnp.copy, p),), (g,), warmup=1) for k, f in kernels.items()}
  times = quiet_interleaved(runners, reps, number, **quiet)
  load = times.pop("load")
  med = {k: float(np.median(v)) for k, v in times.items() if not k.endswith(":cpu")}
  x, k_iter = jax.random.normal(jax.random.key(0), (1 << 18,)) * 0.05, 100
  loops = {
    "exp": lambda x: jnp.exp(-0.5 * x),
    "expm1": lambda x: jnp.expm1(-0.5 * x),
    "fma": lambda x: 0.3 - 0.5 * x,
  }
  loop_t = {}
  for k, f in loops.items():
    f = jax.jit(lambda x, f=f: jax.lax.fori_loop(0, k_iter, lambda i, x: f(x), x))
    jax.block_until_ready(f(x))
    loop_t[k] = _common.median_time(lambda f=f: jax.block_until_ready(f(x)), max(5, reps // 3))
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


# ``ham_optax_examples.models`` at the sizes its configs use: (factory, input shape, batch).
TRAIN_MODELS: dict[str, tuple[Callable[[nnx.Rngs], nnx.Module], tuple[int, ...], int]] = {
  "MLP": (lambda r: tm.MLP(40, 10, rngs=r), (40,), 128),
  "CNN1D": (lambda r: tm.CNN1D(40, 10, rngs=r), (40,), 128),
  "ResNet18": (lambda r: tm.ResNet18(10, rngs=r), (32, 32, 3), 16),
}


def _train_step(tx, graphdef):
  def loss_fn(m, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()

  def step(params, rest, state, x, y):
    m = nnx.merge(graphdef, params, rest)
    m.train()
    loss, grads = nnx.value_and_grad(loss_fn)(m, x, y)
    params = nnx.state(m, nnx.Param)
    updates, state = tx.update(grads, state, params)
    _, _, rest = nnx.split(m, nnx.Param, ...)
    return optax.apply_updates(params, updates), rest, state, loss

  return jax.jit(step, donate_argnums=(0, 1, 2))


def bench_train_step(reps: int, number: int, only: list[str] | None, quiet: dict[str, Any]) -> dict[str, Any]:
  """A full train step (forward, backward, update) of each model with the bare inner optimizer and with HAM."""
  results: dict[str, Any] = {"models_source": "ham_optax_examples.models"}
  for mname, (factory, in_shape, batch) in TRAIN_MODELS.items():
    if only and mname not in only:
      continue
    graphdef, params0, rest0 = nnx.split(factory(nnx.Rngs(0)), nnx.Param, ...)
    kx, ky = jax.random.split(jax.random.key(1))
    x, y = jax.random.normal(kx, (batch, *in_shape)), jax.random.randint(ky, (batch,), 0, 10)
    mres: dict[str, Any] = {"n_params": tree_size(params0), "batch": batch, "input_shape": list(in_shape)}
    big = mres["n_params"] > 1_000_000  # ResNet-18: ~1 s a step on 2 cores, so fewer repetitions
    step = functools.partial(_train_step, graphdef=graphdef)
    for oname in INNER_LR:
      runners, stats = _compile_variants(oname, step, (params0, rest0), (x, y))
      reps_, number_ = (max(5, reps // 3), 1) if big else (reps, number)
      mres[oname] = _timed(runners, stats, reps_, number_, quiet)
      _print_row(f"train {mname} {oname}", mres[oname]["variants"])
    results[mname] = mres
  return results


def bench_bf16_decay(steps: int = 1000) -> dict[str, Any]:
  """``steps`` beta-only HAM steps (zero gradient, lr=0.1, beta=1e-3: factor exp(-1e-4) per step).

  Compares bf16 parameters updated in place with f32 master weights (cast to bf16 for use), against
  the exact decay ``exp(-steps*lr*beta)``.
  """
  out: dict[str, Any] = dict(steps=steps, lr=LR, beta=BETA, exact_factor=float(np.exp(-steps * LR * BETA)))
  tx = ham_optax.ham(optax.sgd(LR), LR, alpha=ALPHA, beta=BETA)

  def step(p, s):
    u, s = tx.update(jax.tree.map(jnp.zeros_like, p), s, p)
    return optax.apply_updates(p, u), s

  for label, dtype in [("bf16_params", jnp.bfloat16), ("f32_master", jnp.float32)]:
    p0 = make_tree([("w", (512, 512))], dtype, 0)
    p1 = jax.jit(lambda p: step(p, tx.init(p))[0])(p0)
    pk = jax.jit(lambda p: jax.lax.fori_loop(0, steps, lambda _, c: step(*c), (p, tx.init(p)))[0])(p0)
    w0 = np.asarray(p0["w"], np.float64)
    wk = np.asarray(pk["w"].astype(jnp.bfloat16).astype(jnp.float32), np.float64)  # what the model sees
    achieved = float(np.median(wk[w0 != 0] / w0[w0 != 0]))
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


def _rows(results: dict[str, Any]):
  """(label, section result) pairs in display order."""
  tree = "ResNet-50 tree" if results.get("tree", "resnet50") == "resnet50" else "small tree"
  for sec, what in [("update", f"update, {tree}, f32"), ("update_bf16", f"update, {tree}, bf16")]:
    yield from ((f"{what}, {o}", results[sec][o]) for o in INNER_LR if o in results.get(sec, {}))
  for m, mres in results.get("train_step", {}).items():
    if isinstance(mres, dict):
      yield from ((f"train step {m} (batch {mres['batch']}), {o}", mres[o]) for o in INNER_LR if o in mres)
  for o, r in results.get("vector_width", {}).items():
    if isinstance(r, dict) and "variants" in r:
      yield f"update, {tree}, f32, {o}, `xla_cpu_prefer_vector_width=512`", r


def plot(results: dict[str, Any], path: str) -> None:
  """Horizontal bars: HAM's median paired time ratio to the bare inner (IQR whiskers) per row of :func:`table`,
  and the published PyTorch wrapper's ratio to a bare torch step."""
  rows = [(lbl, r["variants"]) for lbl, r in _rows(results) if "vector_width" not in lbl]
  keys = [("ham", "", "C0"), ("paper", ", paper unguarded", "C7")]
  bars = [
    (lbl + s, v[k]["ratio_median"], v[k]["ratio_iqr"], c) for lbl, v in rows for k, s, c in keys if k in v
  ]
  peer = {o: r for o, r in results.get("torch_peer", {}).items() if o in INNER_LR}
  bars += [(f"torch published wrapper, {o}", r["paired_ratio_median"], None, "C3") for o, r in peer.items()]
  if not bars:
    return
  fig, ax = _common.pyplot().subplots(figsize=(8, 0.45 * len(bars) + 1.5))
  for y, (_, v, iqr, color) in enumerate(bars):
    err = None if iqr is None else [[v - iqr[0]], [iqr[1] - v]]
    ax.barh([y], [v], height=0.6, xerr=err, color=color)
    ax.text(v * 1.03, y, f"{v:.2f}x" if iqr else f"{v:.1f}x", va="center", fontsize=7)
  ax.set_yticks(np.arange(len(bars)), [b[0] for b in bars], fontsize=8)
  ax.set_xscale("log")
  ax.axvline(1.0, color="k", lw=0.8)
  ax.set_xlabel("time / bare inner optimizer's time (median paired ratio, bars: IQR)", fontsize=8)
  ax.set_xlim(0.5, 2.5 * max(b[1] for b in bars))
  where = f"{results.get('devices', ['?'])[0]} ({results.get('cpu_count')} CPUs)"
  ax.set_title(f"HAM overhead on {where}", fontsize=9)
  ax.invert_yaxis()
  _common.save_figure(fig, path, dpi=80)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  ap = _common.parser(__doc__, "overhead")
  add = ap.add_argument
  count = dict(type=_common.positive_int)
  add("--reps", **count, default=61, help="interleaved repetitions for the update benchmark")
  add("--number", **count, default=3, help="calls per repetition")
  add("--train-reps", **count, default=21)
  add("--models", nargs="*", choices=list(TRAIN_MODELS), help="subset of the models (default: all)")
  sections = ("update", "vector_width", "roofline", "train", "bf16", "torch")
  add("--skip", nargs="*", choices=sections, default=[], help="sections to skip")
  ap.add_fast("few reps of everything (smoke test)", flag="--quick", reps=3, number=1, train_reps=3)
  trees = ("resnet50", "small")
  add("--tree", choices=trees, default="resnet50", help="the parameter tree (small: smoke tests)")
  cores = "take a repetition only while others use at most this many cores"
  add("--max-other-cpu", type=_common.nonnegative_float, default=0.15, help=cores)
  wait = "seconds to wait for a quiet moment, then skip"
  add("--max-wait", type=_common.nonnegative_float, default=60.0, help=wait)
  probe = "seconds over which other processes' CPU is measured"
  add("--probe", type=_common.nonnegative_float, default=0.5, help=probe)
  return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
  args = parse_args(argv)
  quiet = {"max_other_cpu": args.max_other_cpu, "max_wait": args.max_wait, "probe": args.probe}
  small = [("conv", (3, 3, 16, 32)), ("fc", (256, 64))]
  shapes = _common.resnet50_shapes() if args.tree == "resnet50" else small
  results = {**_common.environment(), "alpha": ALPHA, "beta": BETA, "tree": args.tree, "quiet": quiet}
  print(f"devices: {results['devices']}", flush=True)
  half, train_number = max(3, args.reps // 2), 1 if args.quick else 2
  sections = {  # name for --skip: (key in the results, run)
    "update": ("update", lambda: bench_update(shapes, args.reps, args.number, quiet)),
    "vector_width": ("vector_width", lambda: bench_vector_width(shapes, args.reps, args.number, quiet)),
    "roofline": ("roofline", lambda: bench_roofline(shapes, half, args.number, quiet)),
    "train": ("train_step", lambda: bench_train_step(args.train_reps, train_number, args.models, quiet)),
    "bf16": ("update_bf16", lambda: bench_update(shapes, half, args.number, quiet, jnp.bfloat16)),
  }
  for name, (key, run) in sections.items():
    if name not in args.skip:
      results[key] = run()
  if "bf16" not in args.skip:
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

  def cell(v, note: str = ""):
    if v is None:
      return "-"
    ratio = v.get("ratio_median", v.get("paired_ratio_median"))
    iqr, ci = v.get("ratio_iqr", v.get("paired_ratio_iqr")), v.get("ratio_ci95", v.get("paired_ratio_ci95"))
    ci = f"; 95 % CI [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""
    cpu = f"; cpu {v['cpu_ratio_median']:.2f}x" if "cpu_ratio_median" in v else ""
    ms = v.get("median_ms", v.get("other_median_ms", v.get("ham_median_ms")))
    return f"{ms:.2f} ({ratio:.2f}x [{iqr[0]:.2f}, {iqr[1]:.2f}]{ci}{cpu}{note})"

  def cost(r):
    per = r.get("per_weight", {})
    counts = (f"{per['inner'][m]:.0f} -> {per['ham'][m]:.0f}" for m in COST_KEYS)
    return " / ".join(counts) if "ham" in per else "-"

  rows = []
  for label, r in _rows(results):
    if "ham_over_inner_vw512" in r:  # the 512 build: HAM over the bare inner within it
      vw = r["ham_over_inner_vw512"]
      same = f"; bit-identical to the default build: {all(r['bit_identical_to_default'].values())}"
      rows.append([f"JAX {label}", f"{vw['base_median_ms']:.2f}", cell(vw, same), "-", "-", 0, "-"])
      continue
    v = r["variants"]
    refs = [cell(v.get(k)) for k in ("ham", "paper", "mw_spred")]
    rows.append([f"JAX {label}", f"{v['inner']['median_ms']:.2f}", *refs, r["extra_state_bytes"], cost(r)])
  for o, r in ((o, r) for o, r in results.get("torch_peer", {}).items() if o in INNER_LR):
    label = f"torch, published-wrapper semantics, ResNet-50 tensors, {o}"
    rows.append([label, f"{r['inner_median_ms']:.2f}", cell(r), "-", "-", 0, "-"])
  header = ["what", "inner (ms)", "ham(inner)", "paper's step, unguarded", "m*w (spred)", "extra state (B)"]
  return _common.markdown_table([*header, "per weight: flops / transc. / bytes"], rows)


if __name__ == "__main__":
  main()
