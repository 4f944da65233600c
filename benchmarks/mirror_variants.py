"""Variants of the core's mirror step (``_mirror_leaf``), timed against the core on the ResNet-50 tree.

The variants are patched in with ``unittest.mock`` while the update is traced; ``ham_optax/_src`` is not edited.
``ham_select`` (bit-identical) is the select that the core adopted after this comparison (on the core of that
time it was a 4-6 % speed-up; on today's core it should time like the core itself); ``ham_direct`` changes
the rounding; ``abl_*`` are ablations (not the method) that split HAM's cost into the extra read of ``g``,
the elementwise chain and the ``exp``. Also: one-step accuracy vs a float64 rendering and HLO op counts.

    PYTHONPATH=. REPS=25 python benchmarks/mirror_variants.py benchmarks/results/overhead/mirror_variants.json
"""

import json
import os
import re
import sys
import time
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import overhead as ob  # benchmarks/ is sys.path[0] when run as a script

from ham_optax._src import hyperbolic as H

ORIG = H._mirror_leaf


def leaf_select(u, g, p, lr, alpha, beta, max_exponent, max_weight_norm, sign_from):
  """Change A: -(sign(x_half) * g) -> where(x_half < 0, g, -g) (exact for sign_from='x_half': where x_half == 0
  the factor multiplies x_half == 0, so the value of e does not matter; NaN x_half still propagates)."""
  if (
    sign_from != "x_half"
    or max_weight_norm is not None
    or jnp.finfo(p.dtype).max < jnp.finfo(jnp.float32).max
  ):
    return ORIG(u, g, p, lr, alpha, beta, max_exponent, max_weight_norm, sign_from)
  cdtype = jnp.promote_types(p.dtype, jnp.float32)
  lr_c = jnp.asarray(lr, cdtype)
  lr_alpha = lr_c * jnp.asarray(alpha, cdtype)
  lr_beta = lr_c * jnp.asarray(beta, cdtype)
  p_c, u_c, g_c = p.astype(cdtype), u.astype(cdtype), g.astype(cdtype)
  x_half = p_c + u_c
  e = jnp.clip(jnp.where(x_half < 0, g_c, -g_c) * lr_alpha - lr_beta, -max_exponent, max_exponent)
  delta = u_c + x_half * (jnp.exp(e) - 1.0)
  return delta.astype(p.dtype)


def leaf_direct(u, g, p, lr, alpha, beta, max_exponent, max_weight_norm, sign_from):
  """Change A + B: delta = x_half * exp(e) - p (drops the bit-for-bit return of u at e == 0)."""
  if (
    sign_from != "x_half"
    or max_weight_norm is not None
    or jnp.finfo(p.dtype).max < jnp.finfo(jnp.float32).max
  ):
    return ORIG(u, g, p, lr, alpha, beta, max_exponent, max_weight_norm, sign_from)
  cdtype = jnp.promote_types(p.dtype, jnp.float32)
  lr_c = jnp.asarray(lr, cdtype)
  lr_alpha = lr_c * jnp.asarray(alpha, cdtype)
  lr_beta = lr_c * jnp.asarray(beta, cdtype)
  p_c, u_c, g_c = p.astype(cdtype), u.astype(cdtype), g.astype(cdtype)
  x_half = p_c + u_c
  e = jnp.clip(jnp.where(x_half < 0, g_c, -g_c) * lr_alpha - lr_beta, -max_exponent, max_exponent)
  return (x_half * jnp.exp(e) - p_c).astype(p.dtype)


def leaf_noexp(u, g, p, lr, alpha, beta, max_exponent, max_weight_norm, sign_from):
  """Ablation (not the method): the core with exp(e) - 1 replaced by e, to isolate the exp's cost."""
  cdtype = jnp.float32
  lr_alpha, lr_beta = jnp.asarray(lr * alpha, cdtype), jnp.asarray(lr * beta, cdtype)
  x_half = p + u
  e = jnp.clip(-(jnp.sign(x_half) * g) * lr_alpha - lr_beta, -max_exponent, max_exponent)
  return u + x_half * e


def leaf_readg(u, g, p, lr, alpha, beta, max_exponent, max_weight_norm, sign_from):
  """Ablation (not the method): only the extra read of g, with the fewest ops (u + x_half * (g * c))."""
  return u + (p + u) * (g * jnp.asarray(lr * beta, jnp.float32))


PATCHES = {
  "ham": None,
  "ham_select": leaf_select,
  "ham_direct": leaf_direct,
  "abl_noexp": leaf_noexp,
  "abl_readg": leaf_readg,
}
REAL = ("ham", "ham_select", "ham_direct")


class _Spec:
  def __init__(self, inner, lr, leaf):
    self.inner, self.lr, self.leaf = inner, lr, leaf


def build(inner, lr, leaf):
  if leaf is None:
    return ob.with_ham(inner, lr)
  return _Spec(inner, lr, leaf)


def compile_step(tx_or_spec, params, state, grads):
  if isinstance(tx_or_spec, _Spec):
    inner, lr, leaf = tx_or_spec.inner, tx_or_spec.lr, tx_or_spec.leaf
    with mock.patch.object(H, "_mirror_leaf", leaf):
      tx = ob.with_ham(inner, lr)
      c = ob.make_update_step(tx).lower(params, state, grads).compile()
    return tx, c
  return tx_or_spec, ob.make_update_step(tx_or_spec).lower(params, state, grads).compile()


def count_ops(c):
  t = c.as_text()
  ops = re.findall(r"= \w+\[[^\]]*\]\{[^}]*\} (\w+)\(", t)
  from collections import Counter

  return dict(Counter(ops))


def main(reps=15, number=3):
  shapes = ob.resnet50_shapes()
  p0 = ob.make_tree(shapes, jnp.float32, 0)
  grads = jax.tree.map(lambda x: 1e-3 * jnp.sign(x) + 1e-4 * x, ob.make_tree(shapes, jnp.float32, 1))
  out = {"loadavg_start": os.getloadavg(), "time_utc": time.strftime("%H:%M:%SZ", time.gmtime())}
  for name, inner in ob.inner_optimizers().items():
    lr = ob.inner_lr(name)
    runners, res_params, ops = {}, {}, {}
    specs = {"inner": inner} | {k: build(inner, lr, v) for k, v in PATCHES.items()}
    for k, spec in specs.items():
      params = jax.tree.map(jnp.copy, p0)
      tx0 = spec if not isinstance(spec, _Spec) else ob.with_ham(inner, lr)
      state = tx0.init(params)
      tx, c = compile_step(spec, params, state, grads)
      ops[k] = count_ops(c)
      # one step from the same start, for the accuracy check
      pp = jax.tree.map(jnp.copy, p0)
      ss = tx0.init(pp)
      res_params[k] = jax.device_get(c(pp, ss, grads)[0])
      runners[k] = ob._Loop(c, (params, state), (grads,))
      for _ in range(2):
        runners[k]()
    # float64 reference of one step
    ref = {}
    for n, w in p0.items():
      w = np.asarray(w, np.float64)
      g = np.asarray(grads[n], np.float64)
      if name == "sgdm":
        u = -lr * g
      else:
        u = None
      ref[n] = (w, g, u)
    acc = {}
    if name == "sgdm":
      for k in REAL:
        errs = []
        for n, (w, g, u) in ref.items():
          if len(p0[n].shape) < 2:
            continue
          xh = w + u
          xn = xh * np.exp(np.clip(-lr * (200.0 * np.sign(xh) * g + 1e-3), -5, 5))
          got = np.asarray(res_params[k][n], np.float64)
          ulp = np.spacing(np.abs(xn).astype(np.float32)).astype(np.float64)
          errs.append(np.abs(got - xn) / ulp)
        e = np.concatenate([x.ravel() for x in errs])
        acc[k] = {"mean_ulp": float(e.mean()), "max_ulp": float(e.max())}
    same = {k: all(np.array_equal(res_params[k][n], res_params["ham"][n]) for n in p0) for k in REAL}
    times = ob.interleaved(runners, reps, number)
    summ = ob.summarize_all(times)
    t = {k: np.asarray(v) for k, v in times.items()}
    vs_core = {
      k: {
        "ratio_median": float(np.median(t[k] / t["ham"])),
        "ratio_iqr": [float(np.percentile(t[k] / t["ham"], q)) for q in (25, 75)],
        "cpu_ratio_median": float(np.median(t[k + ":cpu"] / t["ham:cpu"])),
      }
      for k in PATCHES
    }
    print(
      "   vs core:",
      {k: round(v["ratio_median"], 3) for k, v in vs_core.items()},
      {k: [round(x, 3) for x in v["ratio_iqr"]] for k, v in vs_core.items()},
    )
    out[name] = {
      "vs_core": vs_core,
      "times_s": times,
      "variants": summ,
      "ops": ops,
      "accuracy_vs_f64": acc,
      "bitwise_equal_to_core": same,
    }
    ob._print_row(f"update {name}", summ)
    print(
      "   ops:",
      {
        k: {
          o: v
          for o, v in d.items()
          if o
          in ("sign", "select", "compare", "exponential", "multiply", "add", "negate", "clamp", "subtract")
        }
        for k, d in ops.items()
        if k != "inner"
      },
    )
    print("   acc:", acc, "bitwise equal to core:", same, flush=True)
  out["loadavg_end"] = os.getloadavg()
  json.dump(out, open(sys.argv[1] if len(sys.argv) > 1 else "mirror_variants.json", "w"), indent=1)


if __name__ == "__main__":
  main(int(os.environ.get("REPS", 15)))
