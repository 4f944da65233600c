"""What HAM costs on top of its inner optimizer (issue 5).

Measures, in one run and with A/B interleaved:

1. ``update``: the jitted optimizer update (``tx.update`` + ``optax.apply_updates``, params and state
   donated) of ``inner`` vs ``ham(inner)`` on a ResNet-50-shaped parameter tree (25.56 M floats, 161
   leaves), for SGD+momentum and AdamW. Also XLA's cost and memory analysis of both compiled programs
   (bytes accessed, transcendentals, fusions, peak memory) and the optimizer-state bytes.
2. ``roofline``: what this machine can do at best: streaming bandwidth (a fused ``p + c*g`` pass) and
   ``exp`` throughput, both over the same 25.56 M floats.
3. ``train_step``: a full train step (forward, backward, update) of the Flax models of the training issue
   (``ham_optax.training.models`` when importable, otherwise the small NNX models defined here), with
   ``inner`` vs ``ham(inner)``.
4. ``bf16``: the same update with bf16 parameters (speed), and the accuracy of HAM's ``exp(-lr*beta)``
   decay in bf16 vs f32 master weights.
5. ``torch_peer`` (only when ``torch`` imports): the published PyTorch wrapper's semantics vs a bare torch
   step on the same shapes (see ``torch_peer.py``).

Run (2-core CPU, about 10 minutes)::

    PYTHONPATH=. python benchmarks/overhead.py --out benchmarks/results/overhead

``--quick`` runs a few reps of everything (smoke test). Results: ``overhead.json`` and ``overhead.png`` in
``--out``. Timings on a shared machine are noisy: every figure is a median over ``--reps`` interleaved
repetitions, and ratios are medians of per-repetition paired ratios with their 25-75 % range.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import ham_optax

# --------------------------------------------------------------------------------------------------
# Parameter trees
# --------------------------------------------------------------------------------------------------


def resnet50_shapes() -> list[tuple[str, tuple[int, ...]]]:
    """Parameter shapes of torchvision's ResNet-50 (25,557,032 floats, 161 tensors), in JAX layout.

    Conv kernels are HWIO, the classifier is (in, out); BatchNorm contributes a scale and a bias per
    layer (running statistics are not parameters).
    """
    shapes: list[tuple[str, tuple[int, ...]]] = [
        ("conv1", (7, 7, 3, 64)),
        ("bn1.s", (64,)),
        ("bn1.b", (64,)),
    ]
    cin = 64
    for li, (width, blocks) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)], start=1):
        for bi in range(blocks):
            p = f"layer{li}.{bi}"
            for ci, (k, a, b) in enumerate(
                [(1, cin, width), (3, width, width), (1, width, 4 * width)], 1
            ):
                shapes += [
                    (f"{p}.conv{ci}", (k, k, a, b)),
                    (f"{p}.bn{ci}.s", (b,)),
                    (f"{p}.bn{ci}.b", (b,)),
                ]
            if bi == 0:
                shapes += [
                    (f"{p}.down", (1, 1, cin, 4 * width)),
                    (f"{p}.down_bn.s", (4 * width,)),
                    (f"{p}.down_bn.b", (4 * width,)),
                ]
            cin = 4 * width
    shapes += [("fc.w", (2048, 1000)), ("fc.b", (1000,))]
    return shapes


def make_tree(shapes, dtype=jnp.float32, seed: int = 0) -> dict[str, jax.Array]:
    """A dict of random arrays with the given shapes (weights ~ N(0, 0.05^2))."""
    keys = jax.random.split(jax.random.key(seed), len(shapes))
    return {
        n: (0.05 * jax.random.normal(k, s)).astype(dtype)
        for (n, s), k in zip(shapes, keys, strict=True)
    }


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


# --------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------


def _block(x):
    jax.block_until_ready(x)
    return x


def interleaved(
    runners: dict[str, Callable[[], None]], reps: int, number: int, seed: int = 0
) -> dict[str, list[float]]:
    """Times each runner ``number`` times per repetition, in a shuffled order each repetition.

    Returns per-repetition seconds per call for each runner.
    """
    rng = np.random.default_rng(seed)
    names = list(runners)
    out: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(reps):
        for i in rng.permutation(len(names)):
            n = names[i]
            t0 = time.perf_counter()
            for _ in range(number):
                runners[n]()
            out[n].append((time.perf_counter() - t0) / number)
    return out


def summarize(times: dict[str, list[float]], base: str, other: str) -> dict[str, Any]:
    a, b = np.asarray(times[base]), np.asarray(times[other])
    paired = b / a
    return {
        f"{base}_median_ms": 1e3 * float(np.median(a)),
        f"{other}_median_ms": 1e3 * float(np.median(b)),
        f"{base}_iqr_ms": [1e3 * float(np.percentile(a, 25)), 1e3 * float(np.percentile(a, 75))],
        f"{other}_iqr_ms": [1e3 * float(np.percentile(b, 25)), 1e3 * float(np.percentile(b, 75))],
        "ratio_of_medians": float(np.median(b) / np.median(a)),
        "paired_ratio_median": float(np.median(paired)),
        "paired_ratio_iqr": [float(np.percentile(paired, 25)), float(np.percentile(paired, 75))],
        "reps": len(a),
    }


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
        out["cost"] = {
            k: float(cost[k]) for k in ("flops", "transcendentals", "bytes accessed") if k in cost
        }
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
    """Holds donated params/state and runs one step per call."""

    def __init__(self, step, params, state, grads):
        self.step, self.params, self.state, self.grads = step, params, state, grads

    def __call__(self):
        self.params, self.state = _block(self.step(self.params, self.state, self.grads))


def bench_update(shapes, reps: int, number: int, dtype=jnp.float32) -> dict[str, Any]:
    params0 = make_tree(shapes, dtype, seed=0)
    grads = jax.tree.map(
        lambda x: (1e-3 * jnp.sign(x) + 1e-4 * x).astype(dtype), make_tree(shapes, dtype, 1)
    )
    results: dict[str, Any] = {
        "n_floats": tree_size(params0),
        "n_leaves": len(shapes),
        "dtype": str(np.dtype(dtype)),
    }
    for name, inner in inner_optimizers().items():
        txs = {"inner": inner, "ham": with_ham(inner, inner_lr(name))}
        runners, stats = {}, {}
        for k, tx in txs.items():
            params = jax.tree.map(jnp.copy, params0)
            state = tx.init(params)
            stats[k] = {"opt_state_bytes": tree_bytes(state)}
            step = make_update_step(tx)
            stats[k].update(compiled_stats(step.lower(params, state, grads).compile()))
            runners[k] = _Loop(step, params, state, grads)
            for _ in range(2):
                runners[k]()  # warm-up
        times = interleaved(runners, reps, number)
        res = summarize(times, "inner", "ham")
        res["extra_state_bytes"] = (
            stats["ham"]["opt_state_bytes"] - stats["inner"]["opt_state_bytes"]
        )
        res["compiled"] = stats
        res["times_s"] = times
        results[name] = res
        print(
            f"  update {name:6s} {np.dtype(dtype).name}: inner {res['inner_median_ms']:.1f} ms, "
            f"ham {res['ham_median_ms']:.1f} ms, ratio {res['paired_ratio_median']:.3f} "
            f"[{res['paired_ratio_iqr'][0]:.3f}, {res['paired_ratio_iqr'][1]:.3f}], "
            f"+{res['extra_state_bytes']} B state",
            flush=True,
        )
    return results


# --------------------------------------------------------------------------------------------------
# 2. Roofline: streaming bandwidth and exp throughput on the same number of floats
# --------------------------------------------------------------------------------------------------


def bench_roofline(shapes, reps: int, number: int) -> dict[str, Any]:
    p = make_tree(shapes, jnp.float32, 0)
    g = make_tree(shapes, jnp.float32, 1)
    n = tree_size(p)

    axpy = jax.jit(lambda p, g: jax.tree.map(lambda a, b: a - 0.1 * b, p, g), donate_argnums=(0,))
    expf = jax.jit(
        lambda p, g: jax.tree.map(lambda a, b: jnp.exp(jnp.clip(b, -5.0, 5.0)), p, g),
        donate_argnums=(0,),
    )
    expm = jax.jit(
        lambda p, g: jax.tree.map(lambda a, b: a * jnp.exp(jnp.clip(b, -5.0, 5.0)), p, g),
        donate_argnums=(0,),
    )

    class R:
        def __init__(self, f):
            self.f, self.p = f, jax.tree.map(jnp.copy, p)

        def __call__(self):
            self.p = _block(self.f(self.p, g))

    runners = {"axpy": R(axpy), "exp": R(expf), "x_times_exp": R(expm)}
    for r in runners.values():
        r()
    times = interleaved(runners, reps, number)
    med = {k: float(np.median(v)) for k, v in times.items()}
    out = {
        "n_floats": n,
        "axpy_ms": 1e3 * med["axpy"],
        # a - c*b reads 2 and writes 1 array of f32.
        "stream_GBps": 12 * n / med["axpy"] / 1e9,
        "exp_ms": 1e3 * med["exp"],
        "exp_Gelem_per_s": n / med["exp"] / 1e9,
        "x_times_exp_ms": 1e3 * med["x_times_exp"],
    }
    print(
        f"  roofline: stream {out['stream_GBps']:.1f} GB/s (axpy {out['axpy_ms']:.1f} ms), "
        f"exp {out['exp_Gelem_per_s']:.2f} Gelem/s ({out['exp_ms']:.1f} ms), x*exp {out['x_times_exp_ms']:.1f} ms",
        flush=True,
    )
    return out


# --------------------------------------------------------------------------------------------------
# 3. Full train step of Flax models
# --------------------------------------------------------------------------------------------------


def _local_models():
    """Small NNX models used when ``ham_optax.training.models`` is not available."""
    from flax import nnx

    class MLP(nnx.Module):
        def __init__(self, din=40, width=256, depth=3, nout=10, *, rngs):
            dims = [din] + [width] * depth
            self.layers = nnx.List(
                [nnx.Linear(a, b, rngs=rngs) for a, b in zip(dims[:-1], dims[1:], strict=True)]
            )
            self.head = nnx.Linear(width, nout, rngs=rngs)

        def __call__(self, x):
            x = x.reshape(x.shape[0], -1)
            for lyr in self.layers:
                x = nnx.relu(lyr(x))
            return self.head(x)

    class CNN1D(nnx.Module):
        def __init__(self, channels=32, nout=10, *, rngs):
            self.c1 = nnx.Conv(1, channels, (5,), rngs=rngs)
            self.c2 = nnx.Conv(channels, channels, (3,), rngs=rngs)
            self.c3 = nnx.Conv(channels, channels, (3,), rngs=rngs)
            self.head = nnx.Linear(channels, nout, rngs=rngs)

        def __call__(self, x):
            x = x[..., None] if x.ndim == 2 else x
            x = nnx.relu(self.c1(x))
            x = nnx.relu(self.c2(x))
            x = nnx.relu(self.c3(x))
            return self.head(x.mean(axis=1))

    class Block(nnx.Module):
        def __init__(self, cin, cout, stride, *, rngs):
            self.conv1 = nnx.Conv(cin, cout, (3, 3), strides=stride, use_bias=False, rngs=rngs)
            self.bn1 = nnx.BatchNorm(cout, rngs=rngs)
            self.conv2 = nnx.Conv(cout, cout, (3, 3), use_bias=False, rngs=rngs)
            self.bn2 = nnx.BatchNorm(cout, rngs=rngs)
            self.proj = (
                nnx.Conv(cin, cout, (1, 1), strides=stride, use_bias=False, rngs=rngs)
                if stride != 1 or cin != cout
                else None
            )
            self.bnp = nnx.BatchNorm(cout, rngs=rngs) if self.proj is not None else None

        def __call__(self, x):
            y = nnx.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            s = x if self.proj is None else self.bnp(self.proj(x))
            return nnx.relu(y + s)

    class ResNet18(nnx.Module):
        """CIFAR-style ResNet-18 (3x3 stem, no max-pool), 11.2 M parameters."""

        def __init__(self, nout=10, *, rngs):
            self.stem = nnx.Conv(3, 64, (3, 3), use_bias=False, rngs=rngs)
            self.bn = nnx.BatchNorm(64, rngs=rngs)
            blocks, cin = [], 64
            for cout, stride in [
                (64, 1),
                (64, 1),
                (128, 2),
                (128, 1),
                (256, 2),
                (256, 1),
                (512, 2),
                (512, 1),
            ]:
                blocks.append(Block(cin, cout, stride, rngs=rngs))
                cin = cout
            self.blocks = nnx.List(blocks)
            self.head = nnx.Linear(512, nout, rngs=rngs)

        def __call__(self, x):
            x = nnx.relu(self.bn(self.stem(x)))
            for b in self.blocks:
                x = b(x)
            return self.head(x.mean(axis=(1, 2)))

    return {
        "MLP": (lambda r: MLP(rngs=r), (40,), 128),
        "CNN1D": (lambda r: CNN1D(rngs=r), (40,), 128),
        "ResNet18": (lambda r: ResNet18(rngs=r), (32, 32, 3), 32),
    }


def _training_models():
    """The training issue's models, if that module exists (``ham_optax.training.models``)."""
    try:
        from ham_optax.training import models as tm  # type: ignore[attr-defined]
    except ImportError:
        return None, "local NNX models (ham_optax.training.models not importable)"
    specs = {}
    try:
        from flax import nnx

        def mk(cls, *a, **kw):
            return lambda r: cls(*a, rngs=r, **kw)

        specs["MLP"] = (mk(tm.MLP), (40,), 128)
        specs["CNN1D"] = (mk(tm.CNN1D), (40,), 128)
        specs["ResNet18"] = (mk(tm.ResNet18), (32, 32, 3), 32)
        for name, (f, shp, bs) in specs.items():
            m = f(nnx.Rngs(0))
            m(jnp.zeros((2, *shp)))  # smoke-call
    except Exception as e:  # noqa: BLE001 -- fall back rather than fail the whole benchmark
        return (
            None,
            f"local NNX models (ham_optax.training.models unusable: {type(e).__name__}: {e})",
        )
    return specs, "ham_optax.training.models"


def bench_train_step(reps: int, number: int, only: list[str] | None = None) -> dict[str, Any]:
    from flax import nnx

    specs, source = _training_models()
    if specs is None:
        specs = _local_models()
    print(f"  train-step models: {source}", flush=True)
    results: dict[str, Any] = {"models_source": source}
    for mname, (factory, in_shape, batch) in specs.items():
        if only and mname not in only:
            continue
        model = factory(nnx.Rngs(0))
        graphdef, params0, rest0 = nnx.split(model, nnx.Param, ...)
        kx, ky = jax.random.split(jax.random.key(1))
        x = jax.random.normal(kx, (batch, *in_shape))
        y = jax.random.randint(ky, (batch,), 0, 10)

        def loss_fn(params, rest, x, y, graphdef=graphdef):
            m = nnx.merge(graphdef, params, rest)
            m.train()
            logits = m(x)
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
            _, _, new_rest = nnx.split(m, nnx.Param, ...)
            return loss, new_rest

        mres: dict[str, Any] = {
            "n_params": tree_size(params0),
            "batch": batch,
            "input_shape": list(in_shape),
        }
        for oname, inner in inner_optimizers().items():
            txs = {"inner": inner, "ham": with_ham(inner, inner_lr(oname))}
            runners, stats = {}, {}
            for k, tx in txs.items():

                def step(params, rest, state, x, y, tx=tx):
                    (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                        params, rest, x, y
                    )
                    updates, state = tx.update(grads, state, params)
                    return optax.apply_updates(params, updates), rest, state, loss

                jstep = jax.jit(step, donate_argnums=(0, 1, 2))
                params, rest = jax.tree.map(jnp.copy, params0), jax.tree.map(jnp.copy, rest0)
                state = tx.init(params)
                stats[k] = {"opt_state_bytes": tree_bytes(state)}
                stats[k].update(compiled_stats(jstep.lower(params, rest, state, x, y).compile()))

                class Run:
                    def __init__(self, f, p, r, s):
                        self.f, self.p, self.r, self.s = f, p, r, s

                    def __call__(self):
                        self.p, self.r, self.s, loss = _block(self.f(self.p, self.r, self.s, x, y))

                runners[k] = Run(jstep, params, rest, state)
                for _ in range(2):
                    runners[k]()
            times = interleaved(runners, reps, number)
            res = summarize(times, "inner", "ham")
            res["extra_state_bytes"] = (
                stats["ham"]["opt_state_bytes"] - stats["inner"]["opt_state_bytes"]
            )
            res["compiled"] = stats
            res["times_s"] = times
            mres[oname] = res
            print(
                f"  train {mname:8s} {oname:6s}: inner {res['inner_median_ms']:.2f} ms, "
                f"ham {res['ham_median_ms']:.2f} ms, ratio {res['paired_ratio_median']:.3f} "
                f"[{res['paired_ratio_iqr'][0]:.3f}, {res['paired_ratio_iqr'][1]:.3f}]",
                flush=True,
            )
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

        one = jax.jit(
            lambda p, tx=tx, zeros=zeros: optax.apply_updates(p, tx.update(zeros, tx.init(p), p)[0])
        )
        p1 = one(p0)
        pk = run(p0)
        w0 = np.asarray(p0["w"], np.float64)
        wk = np.asarray(
            pk["w"].astype(jnp.bfloat16).astype(jnp.float32), np.float64
        )  # what the model sees
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


def plot(results: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, ratios, lo, hi = [], [], [], []

    def add(label, r):
        labels.append(label)
        ratios.append(r["paired_ratio_median"])
        lo.append(r["paired_ratio_median"] - r["paired_ratio_iqr"][0])
        hi.append(r["paired_ratio_iqr"][1] - r["paired_ratio_median"])

    for o in ("sgdm", "adamw"):
        if o in results.get("update", {}):
            add(f"update R50 {o}", results["update"][o])
    for o in ("sgdm", "adamw"):
        if o in results.get("update_bf16", {}):
            add(f"update R50 bf16 {o}", results["update_bf16"][o])
    for m, mres in results.get("train_step", {}).items():
        if isinstance(mres, dict):
            for o in ("sgdm", "adamw"):
                if o in mres:
                    add(f"train {m} {o}", mres[o])
    peer = results.get("torch_peer", {})
    for o in ("sgdm", "adamw"):
        if o in peer:
            add(f"torch wrapper {o}", peer[o])
    if not labels:
        return
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(labels) + 1.2))
    y = np.arange(len(labels))
    ax.barh(y, ratios, xerr=[lo, hi], color=["C3" if "torch" in lbl else "C0" for lbl in labels])
    ax.set_yticks(y, labels)
    ax.set_xscale("log")
    ax.axvline(1.0, color="k", lw=0.8)
    for yi, r in zip(y, ratios, strict=True):
        ax.text(r * 1.05, yi, f"{r:.2f}x", va="center", fontsize=8)
    ax.set_xlabel("time with HAM / time without (median of paired ratios, bars: IQR)")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="benchmarks/results/overhead")
    ap.add_argument(
        "--reps", type=int, default=31, help="interleaved repetitions for the update benchmark"
    )
    ap.add_argument("--number", type=int, default=3, help="calls per repetition")
    ap.add_argument("--train-reps", type=int, default=21)
    ap.add_argument("--models", nargs="*", default=None, help="subset of MLP CNN1D ResNet18")
    ap.add_argument(
        "--skip", nargs="*", default=[], help="sections to skip: update roofline train bf16 torch"
    )
    ap.add_argument("--quick", action="store_true", help="few reps of everything (smoke test)")
    args = ap.parse_args(argv)
    if args.quick:
        args.reps, args.number, args.train_reps = 3, 1, 3

    shapes = resnet50_shapes()
    results: dict[str, Any] = {
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "devices": [str(d) for d in jax.devices()],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "optax": optax.__version__,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "alpha": ALPHA,
        "beta": BETA,
    }
    print(f"devices: {results['devices']}", flush=True)
    if "update" not in args.skip:
        results["update"] = bench_update(shapes, args.reps, args.number)
    if "roofline" not in args.skip:
        results["roofline"] = bench_roofline(shapes, args.reps, args.number)
    if "train" not in args.skip:
        results["train_step"] = bench_train_step(
            args.train_reps, 1 if args.quick else 2, args.models
        )
    if "bf16" not in args.skip:
        results["update_bf16"] = bench_update(
            shapes, max(3, args.reps // 2), args.number, jnp.bfloat16
        )
        results["bf16_decay"] = bench_bf16_decay()
    if "torch" not in args.skip:
        try:
            import torch_peer  # noqa: F401  (benchmarks/ is sys.path[0] when run as a script)
        except ImportError as e:
            print(f"  torch peer skipped: {e}", flush=True)
        else:
            results["torch_peer"] = torch_peer.bench(shapes, reps=max(3, args.reps // 3))

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "overhead.json"), "w") as f:
        json.dump(results, f, indent=1)
    plot(results, os.path.join(args.out, "overhead.png"))
    print(table(results))
    return results


def table(results: dict[str, Any]) -> str:
    """Markdown table of the headline ratios."""
    rows = [
        "| what | inner | inner (ms) | with HAM (ms) | ratio (median, IQR) |",
        "|---|---|---|---|---|",
    ]

    def row(what, o, r):
        rows.append(
            f"| {what} | {o} | {r['inner_median_ms']:.2f} | {r['ham_median_ms']:.2f} | "
            f"{r['paired_ratio_median']:.3f} [{r['paired_ratio_iqr'][0]:.3f}, {r['paired_ratio_iqr'][1]:.3f}] |"
        )

    for sec, what in [
        ("update", "JAX update, ResNet-50 tree f32"),
        ("update_bf16", "JAX update, ResNet-50 tree bf16"),
    ]:
        for o in ("sgdm", "adamw"):
            if o in results.get(sec, {}):
                row(what, o, results[sec][o])
    for m, mres in results.get("train_step", {}).items():
        if isinstance(mres, dict):
            for o in ("sgdm", "adamw"):
                if o in mres:
                    row(f"JAX train step {m} (batch {mres['batch']})", o, mres[o])
    for o in ("sgdm", "adamw"):
        if o in results.get("torch_peer", {}):
            row("torch published-wrapper semantics, ResNet-50 tensors", o, results["torch_peer"][o])
    return "\n".join(rows)


if __name__ == "__main__":
    main()
