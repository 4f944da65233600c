# %% [markdown]
# # HAM's implicit bias on underdetermined regression
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/ham-optax/ham_optax/blob/main/notebooks/02_implicit_bias.ipynb)
#
# With $\beta = 0$ and a small learning rate, HAM follows the mirror flow $\dot x = -(1+\alpha|x|)\nabla f(x)$
# of the potential $R_\alpha(x) = \sum_i [(1+\alpha|x_i|)\log(1+\alpha|x_i|) - \alpha|x_i|]/\alpha^2$. On
# $\min_x \frac12\|Zx-y\|^2$ with more unknowns than equations it converges to the Bregman projection
# $\arg\min_{Zx=y} D_{R_\alpha}(x, x_0)$ (Jacobs et al., ICLR 2026, arXiv:2506.02630, Sec. 4), which
# `ham_optax.geometry.bregman_projection` computes with an independent float64 solver. $R_\alpha$ is L2-like
# for small $\alpha$ and L1-like for large $\alpha$.

# %%
import importlib.util
import os
import subprocess
import sys

SMALL = os.environ.get("HAM_OPTAX_NOTEBOOK_SMALL") == "1"  # the quick size the tests and docs run
print(f"SMALL={SMALL}")
ALPHAS = (1.0, 100.0) if SMALL else (0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0)
SEEDS = (0,) if SMALL else (0, 1, 2)
T = 30.0  # continuous time each run covers (steps = T / lr)

# On Colab: install ham_optax without dependencies (the runtime's jax and optax stay).
REPO_URL = "https://github.com/ham-optax/ham_optax"  # <- the repository to install from
if importlib.util.find_spec("ham_optax") is None:
  subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", f"git+{REPO_URL}"], check=True)

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import ham_optax
from ham_optax import geometry

jax.config.update("jax_enable_x64", True)  # the comparison is against float64 references
plt.rcParams.update({"figure.dpi": 72, "figure.figsize": (11, 3.2)})


def problem(seed, n=100, d=40, k=5, init_scale=1e-3):
  rng = np.random.default_rng(seed)
  Z = rng.normal(size=(d, n)) / np.sqrt(d)
  x_star = np.zeros(n)
  x_star[rng.choice(n, k, replace=False)] = rng.normal(size=k)
  return Z, Z @ x_star, init_scale * rng.normal(size=n)


def run_ham(Z, y, x0, alpha, lr, steps):
  tx = ham_optax.ham(optax.sgd(lr), lr, alpha=alpha, beta=0.0, mask=True)

  def loss(x):
    return 0.5 * jnp.sum((Z @ x - y) ** 2)

  def step(carry, _):
    x, state = carry
    updates, state = tx.update(jax.grad(loss)(x), state, x)
    return (optax.apply_updates(x, updates), state), None

  x0 = jnp.asarray(x0)
  (x, _), _ = jax.lax.scan(step, (x0, tx.init(x0)), length=steps)
  return np.asarray(x)


# %% [markdown]
# ## The alpha sweep
#
# For each $\alpha$: HAM's end point, the Bregman projection it should approach, and their L1 norms, next to
# gradient descent's limit (minimum-L2 interpolant) and basis pursuit (minimum L1). The learning rate is set
# from the stability bound at the limit, $\eta = 0.5/(\|Z\|_2^2\,\max_i(1+\alpha|x_i|))$.

# %%
rows = []
for seed in SEEDS:
  Z, y, x0 = problem(seed)
  L = np.linalg.norm(Z, 2) ** 2
  x_l2 = geometry.min_norm_interpolant(Z, y, x0)
  x_l1 = geometry.basis_pursuit(Z, y)
  for alpha in ALPHAS:
    x_bp = geometry.bregman_projection(Z, y, x0, alpha).x
    lr = 0.5 / (L * (1 + alpha * np.abs(x_bp).max()))
    steps = int(T / lr) if not SMALL else min(int(T / lr), 3000)
    x_ham = run_ham(Z, y, x0, alpha, lr, steps)
    l1_norms = [np.abs(x).sum() for x in (x_ham, x_bp, x_l2, x_l1)]
    rows.append((seed, alpha, *l1_norms, np.linalg.norm(x_ham - x_bp) / np.linalg.norm(x_bp), steps))
rows = np.array(rows)
header = f"{'alpha':>7s} {'|x_HAM|_1':>10s} {'|x_Bregman|_1':>14s} {'rel. gap':>9s}"
print(f"{header}   (mean ± std over {len(SEEDS)} seeds)")
for alpha in ALPHAS:
  m, sd = rows[rows[:, 1] == alpha].mean(0), rows[rows[:, 1] == alpha].std(0)
  print(f"{alpha:7g} {m[2]:6.3f}±{sd[2]:.3f} {m[3]:9.3f}±{sd[3]:.3f} {m[6]:9.1e}")
print(f"GD limit (min L2): |x|_1 = {rows[:, 4].mean():.3f};  basis pursuit (min L1): {rows[:, 5].mean():.3f}")

fig, ax = plt.subplots(figsize=(6, 3.2))
means = np.array([rows[rows[:, 1] == a].mean(0) for a in ALPHAS])  # per alpha, over seeds
ax.semilogx(ALPHAS, means[:, 2], "o-", label="HAM (end point)")
ax.semilogx(ALPHAS, means[:, 3], "k+", ms=12, label="Bregman projection")
ax.axhline(rows[:, 4].mean(), color="C2", ls="--", label="GD limit (min L2)")
ax.axhline(rows[:, 5].mean(), color="C3", ls="--", label="basis pursuit (min L1)")
ax.set(xlabel="alpha", ylabel="||x||_1", title="implicit bias: L2 -> L1 as alpha grows")
ax.legend()
plt.show()

# %% [markdown]
# **What it shows.** HAM's end point sits on the Bregman projection for every $\alpha$ (the relative gap is
# the discretisation error, first order in $\eta$), and its L1 norm moves from gradient descent's
# minimum-L2 solution towards basis pursuit as $\alpha$ grows.
#
# ## The inverse metric
#
# Gradient descent has inverse metric 1; HAM $1+\alpha|x|\ge 1$; the $m\odot w$ overparameterisation
# $\sqrt{4x^2+\gamma^2}$, which vanishes near 0 for small $\gamma$: small weights get stuck (and cannot
# flip sign) there, the problem HAM's geometry avoids.

# %%
xs = jnp.linspace(-1.0, 1.0, 401)
fig, ax = plt.subplots(figsize=(6, 3.2))
ax.plot(xs, geometry.inverse_metric_gd(xs) * jnp.ones_like(xs), label="GD: 1")
for alpha in (1.0, 5.0):
  ax.plot(xs, geometry.inverse_metric_ham(xs, alpha), label=f"HAM: 1 + {alpha:g}|x|")
for gamma in (0.01, 0.1):
  ax.plot(xs, geometry.inverse_metric_mw(xs, gamma), "--", label=f"m*w: sqrt(4x^2 + {gamma:g}^2)")
ax.set(xlabel="x", ylabel="inverse metric", title="speed of the flow at x", ylim=(0, 6))
ax.legend(fontsize=8)
plt.show()
