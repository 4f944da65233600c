# %% [markdown]
# # HAM on graphs: negative alpha on heterophilic graphs
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/ham-optax/ham_optax/blob/main/notebooks/06_graphs.ipynb)
#
# HAM (Jacobs, Gadhikar, Rubio-Madrigal, Burkholz, ICLR 2026, [arXiv:2506.02630](https://arxiv.org/abs/2506.02630))
# reports that a *negative* alpha helped on heterophilic graphs. Here the question is studied where the truth is
# controlled: node classification on contextual stochastic block models (CSBM), whose edge homophily `h` (the
# fraction of edges joining two nodes of the same class) is a parameter. We
#
# 1. generate CSBM graphs and check their homophily,
# 2. train a GCN and a GraphSAGE-style network full batch with AdamW + HAM over positive and negative alpha,
# 3. look at what a negative alpha does to a single weight: the inverse metric `1 + alpha |x|` vanishes at
#    `|x| = 1/|alpha|`.
#
# The full study (tuning on validation graphs, test seeds, paired tests) is `benchmarks/graphs.py`.

# %%
import importlib.util
import os
import subprocess
import sys

SMALL = os.environ.get("HAM_OPTAX_NOTEBOOK_SMALL") == "1"  # the quick size the tests and docs run
NODES = 300 if SMALL else 500
STEPS = 60 if SMALL else 150
HS = (0.1, 0.9) if SMALL else (0.1, 0.3, 0.5, 0.7, 0.9)
ALPHAS = (-30.0, 0.0, 30.0) if SMALL else (-100.0, -30.0, -10.0, -3.0, 0.0, 3.0, 10.0, 30.0, 100.0)
SEEDS = (0,) if SMALL else (0, 1, 2)
CSBM = dict(num_nodes=NODES, num_classes=2, num_features=32, signal=0.75, avg_degree=5.0)
print(f"SMALL={SMALL}: {NODES} nodes, {STEPS} steps, h in {HS}, alpha in {ALPHAS}, seeds {SEEDS}")

# On Colab: install ham_optax and its examples without dependencies (the runtime's jax, optax, flax stay).
REPO_URL = "https://github.com/ham-optax/ham_optax"  # <- the repository to install from
if importlib.util.find_spec("ham_optax_examples") is None:
  packages = [f"git+{REPO_URL}", f"ham_optax_examples @ git+{REPO_URL}#subdirectory=examples", "mnist1d"]
  subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", *packages], check=True)

import functools
import pathlib

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import nnx
from ham_optax_examples import data as data_lib
from ham_optax_examples import models

import ham_optax

# %% [markdown]
# ## 1. The CSBM generator
#
# Labels are balanced; features are `signal * mu_y + N(0, I)`; every edge joins two nodes of the same class with
# probability `h`. The measured edge homophily matches `h` up to the binomial sampling error.

# %%
for h in HS:
  g = data_lib.make_csbm(**CSBM, homophily=h, seed=0)
  m = len(g.senders) // 2
  error = np.sqrt(h * (1 - h) / m)  # binomial standard error
  print(f"h = {h:.1f}: measured {data_lib.edge_homophily(g):.3f} (± {error:.3f}), {m} edges")
ds = data_lib.load_csbm(**CSBM, homophily=0.1, seed=0)
print("train / val / test nodes:", len(ds.x_train), len(ds.x_val), len(ds.x_test))

# %% [markdown]
# ## 2. GCN and GraphSAGE with AdamW + HAM, alpha from negative to positive
#
# One XLA call trains every alpha for one seed: `jax.vmap` over alpha, `jax.lax.scan` over full-batch steps.
# `alpha = 0` is plain AdamW (the mirror step is then the identity). We report validation accuracy (these
# graphs are for exploration; the benchmark tests on separate graphs).


# %%
@functools.partial(jax.jit, static_argnums=0)  # one compilation per model: every graph has the same shapes
@functools.partial(jax.vmap, in_axes=(None, None, None, None, 0))
def run_one(graphdef, params, rest, data, alpha, lr=0.01, wd=5e-4):
  """Trains from `params` for STEPS full-batch steps; returns the validation accuracy (NaN if diverged)."""
  tr_x, tr_y, va_x, va_y = data
  schedule = optax.cosine_decay_schedule(lr, STEPS)
  tx = ham_optax.ham(optax.adamw(schedule, weight_decay=wd), schedule, alpha, 0.0)

  def loss_fn(p):
    logits = nnx.merge(graphdef, p, rest)(tr_x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, tr_y).mean()

  def step(carry, _):
    p, st = carry
    u, st = tx.update(jax.grad(loss_fn)(p), st, p)
    return (optax.apply_updates(p, u), st), None

  (p, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=STEPS)
  acc = jnp.mean(jnp.argmax(nnx.merge(graphdef, p, rest)(va_x), -1) == va_y)
  return jnp.where(jnp.isfinite(loss_fn(p)), acc, jnp.nan)


def train_over_alphas(name, h, seed, alphas):
  ds = data_lib.load_csbm(**CSBM, homophily=h, seed=seed)
  model = models.create_model(name, (), 2, seed=seed, width=32, graph=ds.graph)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  data = tuple(map(jnp.asarray, (ds.x_train, ds.y_train, ds.x_val, ds.y_val)))
  alphas = jnp.asarray(alphas, jnp.float32)
  return np.asarray(run_one(graphdef, nnx.as_pure(params), nnx.as_pure(rest), data, alphas))


runs = [(name, h) for name in ("gcn", "sage") for h in HS]
val = {(name, h): np.mean([train_over_alphas(name, h, s, ALPHAS) for s in SEEDS], axis=0) for name, h in runs}
for (name, h), v in val.items():
  print(f"{name:4s} h={h:.1f} ", "  ".join(f"a={a:g}: {100 * x:.1f}" for a, x in zip(ALPHAS, v, strict=True)))

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
for ax, name in zip(axes, ("gcn", "sage"), strict=True):
  for h in HS:
    ax.plot(range(len(ALPHAS)), 100 * val[(name, h)], "o-", label=f"h = {h}")
  ax.set_xticks(range(len(ALPHAS)), [f"{a:g}" for a in ALPHAS])
  ax.set(xlabel="alpha (0 = AdamW)", title=f"{name}: validation accuracy (%)")
  ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 3. What a negative alpha does to one weight
#
# In the continuous limit HAM is gradient flow with a per-weight learning rate `lr (1 + alpha |x|)`. For
# `alpha < 0` this factor vanishes at `|x| = 1/|alpha|` and is negative beyond it, where the weight moves *up* the
# loss. A weight that starts inside the barrier approaches it and stops there (a box constraint
# `|x| <= 1/|alpha|`); one that starts beyond both the barrier and the optimum runs away, by at most a factor
# `e^c` per step (`c = max_exponent`), unless `max_weight_norm` caps it. The mirror step itself never changes
# the sign of a weight. Below: SGD + HAM on `f(x) = (x - 2)^2 / 2`, `lr = 0.05`.


# %%
def trajectory(x0, alpha, steps=200, lr=0.05, **kw):
  tx = ham_optax.ham(optax.sgd(lr), lr, alpha, 0.0, **kw)
  p = {"w": jnp.full((1, 1), x0)}
  st, xs = tx.init(p), []
  for _ in range(steps):
    u, st = tx.update({"w": p["w"] - 2.0}, st, p)  # the gradient of (x - 2)^2 / 2
    p = optax.apply_updates(p, u)
    xs.append(float(p["w"][0, 0]))
  return np.array(xs)


fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
for alpha in (1.0, 0.0, -0.5, -1.0):
  axes[0].plot(trajectory(0.1, alpha), label=f"alpha = {alpha:g}")
axes[0].axhline(2.0, color="gray", ls=":", lw=0.8)
axes[0].set(xlabel="step", ylabel="x", title="start inside: alpha < 0 stops at 1/|alpha|")
axes[0].legend(fontsize=8)
run_away = trajectory(3.0, -1.0, steps=30, max_exponent=1.0)
capped = trajectory(3.0, -1.0, steps=30, max_exponent=1.0, max_weight_norm=100.0)
axes[1].semilogy(run_away, label="alpha = -1, c = 1")
axes[1].semilogy(capped, "--", label="... with max_weight_norm = 100")
axes[1].set(xlabel="step", ylabel="x", title="start at 3 (> 2 > 1/|alpha|): ascent, e^c per step at most")
axes[1].legend(fontsize=8)
fig.tight_layout()
plt.show()
assert abs(trajectory(0.1, -1.0)[-1] - 1.0) < 0.05 and abs(trajectory(0.1, 0.0)[-1] - 2.0) < 1e-3

# %% [markdown]
# ## 4. The benchmark
#
# `benchmarks/graphs.py` tunes the learning rate, then alpha (HAM) or weight decay (baseline) with equal budgets
# on validation graphs, and tests on fresh graphs with a paired test. Its table (test accuracy %, mean ± std over
# 10 test graphs), where this notebook runs inside a checkout; the figures are
# `benchmarks/results/graphs/graphs.png` and `mechanism.png`, discussed in `docs/guides/graphs.md`.

# %%
from IPython.display import Markdown, display

here = pathlib.Path.cwd().resolve()  # the notebook's folder in a checkout (or below it)
tables = [t for d in (here, *here.parents) if (t := d / "benchmarks/results/graphs/table.md").exists()]
if tables:
  display(Markdown(tables[0].read_text()))
else:
  print("benchmarks/results/graphs/table.md not found (run benchmarks/graphs.py in a checkout)")
