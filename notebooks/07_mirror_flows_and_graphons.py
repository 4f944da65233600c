# %% [markdown]
# # Steepest mirror flows and graphons of pruning masks
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/ham-optax/ham_optax/blob/main/notebooks/07_mirror_flows_and_graphons.ipynb)
#
# Two questions about how an optimizer's geometry shapes sparse training (full studies and their reading:
# `docs/guides/mirror_flows_and_graphons.md`, scripts `benchmarks/mirror_flows.py` and `benchmarks/graphon.py`):
#
# 1. *Saddle escape.* A deep diagonal network `x = u^L - v^L` (`ham_optax.overparam.deep_diagonal`) started at
#    a small `u = v` sits at a saddle. How many steps do gradient descent, sign descent and Adam need to leave
#    it (`ham_optax.metrics.escape_step`), as a function of the learning rate and the depth?
# 2. *Graphons.* `ham_optax.metrics.empirical_graphon` turns a layer mask into a degree-sorted block-density
#    image. Random masks converge to a flat graphon as the width grows; RigL's masks keep a structure.

# %%
import importlib.util
import os
import subprocess
import sys

SMALL = os.environ.get("HAM_OPTAX_NOTEBOOK_SMALL") == "1"  # the quick size the tests and docs run
print(f"SMALL={SMALL}")
STEPS = 300 if SMALL else 1500  # training steps per run of the escape study
LRS = [1e-3, 1e-2, 1e-1] if SMALL else [3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1]
DEPTHS = (2, 3) if SMALL else (2, 3, 4)
WIDTHS = (64, 128) if SMALL else (64, 256, 1024)  # graphon study

# On Colab: install ham_optax without dependencies (the runtime's jax and optax stay).
REPO_URL = "https://github.com/ham-optax/ham_optax"  # <- the repository to install from
if importlib.util.find_spec("ham_optax") is None:
  subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", f"git+{REPO_URL}"], check=True)

import itertools

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from ham_optax import sparsity
from ham_optax.metrics import empirical_graphon, escape_step, graphon_distance
from ham_optax.overparam import deep_diagonal

rng = np.random.default_rng(0)
A = jnp.asarray(rng.standard_normal((50, 100)), jnp.float32)
x_star = np.zeros(100, np.float32)
x_star[rng.choice(100, 5, replace=False)] = rng.choice([-1.0, 1.0], 5)
y = A @ jnp.asarray(x_star)


def losses_for(make_inner, depth):
  """Loss curves (one per learning rate, vmapped) of x = u^L - v^L from u = v = 0.01."""

  def run(lr):
    tx = deep_diagonal(make_inner(lr), depth=depth, init_scale=1e-2)

    def loss_fn(x):
      return 0.5 * jnp.mean((A @ x - y) ** 2)

    def step(carry, _):
      x, s = carry
      loss, g = jax.value_and_grad(loss_fn)(x)
      u, s = tx.update(g, s, x)
      return (x + u, s), loss

    x0 = jnp.zeros(100)
    return jax.lax.scan(step, (x0, tx.init(x0)), None, length=STEPS)[1]

  return jax.jit(jax.vmap(run))(jnp.asarray(LRS, jnp.float32))


optimizers = {"GD": optax.sgd, "sign": optax.sign_sgd, "Adam": optax.adam}
print("escape step (-1: stalled or diverged within", STEPS, "steps)")
print("opt   L  " + " ".join(f"{lr:>7.0e}" for lr in LRS))
escape = {}
for name, make in optimizers.items():
  for depth in DEPTHS:
    curves = losses_for(make, depth)
    ok = jnp.all(jnp.isfinite(curves), axis=-1)
    escape[name, depth] = np.where(ok, np.asarray(escape_step(curves)), -1)
    print(f"{name:5s} {depth}  " + " ".join(f"{e:>7d}" for e in escape[name, depth]))

fig, axes = plt.subplots(1, len(DEPTHS), figsize=(4 * len(DEPTHS), 3.2), sharey=True)
for ax, depth in zip(axes, DEPTHS, strict=False):
  for name in optimizers:
    e = escape[name, depth].astype(float)
    e[e < 0] = np.nan
    ax.loglog(LRS, e, "o-", label=name)
  ax.set(title=f"L = {depth}", xlabel="learning rate")
axes[0].set_ylabel("escape step")
axes[0].legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# Sign descent and Adam leave the saddle at small learning rates at every depth; gradient descent's step on a
# factor is proportional to `u^(L-1)`, tiny at a small initialisation, so it needs much larger learning rates
# as the depth grows (in the benchmark's 2000-step run, no stable learning rate lets it escape at `L = 4`).
#
# **Graphons.** A random mask of density 0.1 (`random_pruning`) and a RigL mask after a short training of a
# `16 -> n -> n -> 1` ReLU network in which only the square `n x n` layer is pruned.

# %%
kx, kt = jax.random.split(jax.random.PRNGKey(0))
X = jax.random.normal(kx, (256, 16))
Y = jnp.tanh(X @ jax.random.normal(kt, (16, 32)) / 4.0).sum(1)
Y = (Y - Y.mean()) / Y.std()


def trained_mask(method, n, steps=60):
  shapes = {"w0": (16, n), "w1": (n, n), "w2": (n, 1)}  # weights N(0, 1 / fan_in)
  keys = jax.random.split(jax.random.PRNGKey(1), 3)
  p = {k: jax.random.normal(key, s) / np.sqrt(s[0]) for key, (k, s) in zip(keys, shapes.items(), strict=True)}
  prunable = {"w0": False, "w1": True, "w2": False}
  inner = optax.sgd(0.05 * min(1.0, 256 / n), momentum=0.9)
  if method == "random":
    tx = sparsity.random_pruning(inner, 0.9, prunable=prunable)
  else:
    tx = sparsity.rigl(inner, 0.9, update_every=5, end_step=45, prunable=prunable)
  s = tx.init(p)
  p = sparsity.apply_masks(p, s)

  def f(p):
    return 0.5 * jnp.mean(((jax.nn.relu(jax.nn.relu(X @ p["w0"]) @ p["w1"]) @ p["w2"])[:, 0] - Y) ** 2)

  def step(carry, _):
    p, s = carry
    u, s = tx.update(jax.grad(f)(p), s, p)
    return (optax.apply_updates(p, u), s), None

  _, s = jax.jit(lambda carry: jax.lax.scan(step, carry, None, length=steps)[0])((p, s))
  return sparsity.get_masks(s)["w1"]


graphons = {
  (m, n): np.asarray(empirical_graphon(trained_mask(m, n), 16)) for m in ("random", "rigl") for n in WIDTHS
}
fig, axes = plt.subplots(2, len(WIDTHS), figsize=(2.2 * len(WIDTHS), 4.4))
for ax, (m, n) in zip(axes.flat, graphons, strict=True):  # a row per method, a column per width
  ax.imshow(graphons[m, n], vmin=0, vmax=0.5)
  ax.set_title(f"{m}, n = {n}", fontsize=8)
  ax.axis("off")
plt.tight_layout()
plt.show()
for m in ("random", "rigl"):
  d = [float(graphon_distance(graphons[m, a], graphons[m, b])) for a, b in itertools.pairwise(WIDTHS)]
  print(m, "distance between successive widths:", np.round(d, 4))

# %% [markdown]
# Both distances shrink with the width; the random masks' images approach the constant 0.1, RigL's keep a few
# dense output neurons (its grow step picks the largest dense gradients). One seed and a short training: see
# the guide for the full study and its limits.
