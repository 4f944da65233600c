# %% [markdown]
# # HAM quickstart: optax and Flax NNX
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/ham-optax/ham_optax/blob/main/notebooks/01_quickstart.ipynb)
#
# Hyperbolic Aware Minimization (HAM; Jacobs, Gadhikar, Rubio-Madrigal, Burkholz, ICLR 2026,
# [arXiv:2506.02630](https://arxiv.org/abs/2506.02630)) follows any optimizer's step with a multiplicative
# *hyperbolic mirror step* on the weights:
#
# $$x_{k+1/2} = x_k + \mathrm{inner}(g_k), \qquad
#   x_{k+1} = x_{k+1/2} \odot \exp\big(-\eta_k(\alpha\,\mathrm{sign}(x_{k+1/2}) \odot g_k + \beta)\big)$$
#
# with the raw gradient $g_k$ (no second backward pass, no extra optimizer state). Its continuous limit
# $\dot x = -(1+\alpha|x|)\nabla f(x)$ moves small weights at least as fast as gradient descent while its
# implicit bias goes from L2 ($\alpha\to 0$) towards L1 (large $\alpha$).
#
# This notebook shows (1) `ham_optax.ham` as an optax transformation on a toy sparse-regression problem and
# (2) HAM inside a Flax NNX training loop on [mnist1d](https://github.com/greydanus/mnist1d), with loss, accuracy
# and sign-flip curves. Runs on CPU, GPU or TPU runtimes.

# %%
import importlib.util
import os
import subprocess
import sys

SMALL = os.environ.get("HAM_OPTAX_NOTEBOOK_SMALL") == "1"  # the quick size the tests and docs run
print(f"SMALL={SMALL}")
TOY_STEPS = 300 if SMALL else 3000  # optax toy problem
NUM_SAMPLES = 1000 if SMALL else 5000  # mnist1d samples (80 % train+validation, 20 % test)
EPOCHS = 3 if SMALL else 40
ALPHAS = (20.0,) if SMALL else (5.0, 20.0, 50.0, 100.0)  # HAM strengths tried on the validation split
SEEDS = (0,) if SMALL else (0, 1, 2)

# On Colab: install ham_optax and its examples without dependencies (the runtime's jax, optax, flax stay).
REPO_URL = "https://github.com/ham-optax/ham_optax"  # <- the repository to install from
if importlib.util.find_spec("ham_optax_examples") is None:
  packages = [f"git+{REPO_URL}", f"ham_optax_examples @ git+{REPO_URL}#subdirectory=examples", "mnist1d"]
  subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", *packages], check=True)

import functools
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import ham_optax

plt.rcParams.update({"figure.dpi": 72, "figure.figsize": (11, 3.2)})
print("jax", jax.__version__, "optax", optax.__version__, "| devices:", jax.devices())

# %% [markdown]
# ## 1. HAM as an optax transformation
#
# An underdetermined least-squares problem $Zx = y$ (20 equations, 100 unknowns) whose right-hand side comes
# from a 5-sparse $x^\star$. Every method below fits the data exactly; they differ in *which* of the infinitely
# many solutions they reach. Started near zero, gradient descent finds the minimum-L2-norm solution; HAM's
# bias moves it towards the minimum-L1-norm one (basis pursuit, `geometry.basis_pursuit`) as $\alpha$ grows.
#
# `ham_optax.ham(inner, learning_rate, alpha, beta, mask=...)` wraps any optax optimizer. By default the mirror
# step applies to leaves with `ndim >= 2` (weight matrices, not biases); the parameter here is a vector, so we
# select it with `mask=True`.

# %%
rng = np.random.default_rng(0)
n, d = 20, 100
Z = rng.normal(size=(n, d)) / np.sqrt(n)
x_star = np.zeros(d)
x_star[:5] = rng.choice([-1.0, 1.0], 5) * rng.uniform(1.0, 2.0, 5)
y = Z @ x_star
x0 = jnp.asarray(1e-3 * rng.normal(size=d), jnp.float32)  # small init: the bias is relative to x0


def loss(x):
  return 0.5 * jnp.sum((Z @ x - y) ** 2)


@functools.partial(jax.jit, static_argnums=(0, 1))
def fit(tx, steps):
  def step(carry, _):
    x, state = carry
    value, g = jax.value_and_grad(loss)(x)
    updates, state = tx.update(g, state, x)  # HAM needs params
    return (optax.apply_updates(x, updates), state), value

  (x, _), losses = jax.lax.scan(step, (x0, tx.init(x0)), length=steps)
  return x, losses


lr = 0.002  # stable: lr * alpha * |g| stays well below 1 for these alphas
runs = {"GD": optax.sgd(lr)}
for alpha in (10.0, 100.0, 300.0):
  runs[f"HAM alpha={alpha:g}"] = ham_optax.ham(optax.sgd(lr), lr, alpha=alpha, beta=0.0, mask=True)
results = {name: fit(tx, TOY_STEPS) for name, tx in runs.items()}

x_bp = ham_optax.geometry.basis_pursuit(Z, y)  # min ||x||_1 s.t. Zx = y
print(f"{'':18s} {'final loss':>10s} {'||x||_1':>8s} {'|x|>0.01':>8s}")
for name, (x, losses) in [*results.items(), ("basis pursuit", (x_bp, None))]:
  final = "" if losses is None else f"{float(losses[-1]):.1e}"
  print(f"{name:18s} {final:>10s} {float(abs(x).sum()):8.3f} {int((abs(x) > 1e-2).sum()):8d}")

fig, (ax0, ax1) = plt.subplots(1, 2)
for name, (x, losses) in results.items():
  ax0.semilogy(np.asarray(losses), label=name)
  ax1.plot(np.sort(np.abs(np.asarray(x)))[::-1], label=name)
ax1.plot(np.sort(np.abs(x_bp))[::-1], "k--", label="basis pursuit (min L1)")
ax0.set(xlabel="step", ylabel="loss", title="training loss")
ax1.set(xlabel="entries, sorted", ylabel="|x_i|", title="solution reached", xlim=(0, 40))
ax1.legend()
plt.show()

# %% [markdown]
# **Stability.** Each step multiplies a weight by up to $e^{\eta\alpha|g|}$. Keep $\eta\,\alpha\,|g|$ well below
# 1; otherwise the weights grow geometrically (the exponent is clipped to $[-5, 5]$ per step, which bounds the
# damage per step but not over many steps). Here is the same problem with a 5x larger learning rate and
# $\alpha = 100$:

# %%
x_bad, losses_bad = fit(ham_optax.ham(optax.sgd(0.01), 0.01, alpha=100.0, mask=True), 200)
print("loss after 1, 10, 200 steps:", [float(losses_bad[i]) for i in (0, 9, 199)])

# %% [markdown]
# ## 2. HAM in a Flax NNX training loop (mnist1d)
#
# [mnist1d](https://github.com/greydanus/mnist1d) generates 1-D versions of the ten digits procedurally
# (`make_dataset`; nothing is downloaded). We hold out 20 % of the training set for validation: $\alpha$ is
# chosen there, and the test set is used once at the end.

# %%
import mnist1d.data

args = mnist1d.data.get_dataset_args()
args.num_samples = NUM_SAMPLES
data = mnist1d.data.make_dataset(args)  # procedural; `get_dataset` would download instead

x_all, y_all = data["x"].astype(np.float32), data["y"].astype(np.int32)
mean, std = x_all.mean(), x_all.std()
n_val = len(x_all) // 5
x_val, y_val = (x_all[:n_val] - mean) / std, y_all[:n_val]
x_train, y_train = (x_all[n_val:] - mean) / std, y_all[n_val:]
x_test, y_test = (data["x_test"].astype(np.float32) - mean) / std, data["y_test"].astype(np.int32)
print("train", x_train.shape, "validation", x_val.shape, "test", x_test.shape)

# %% [markdown]
# The examples' 3-layer MLP (`ham_optax_examples.models.MLP`) and the usual NNX loop. The only HAM-specific
# line is the optimizer: `ham_optax.ham_sgd(lr, momentum=0.9, alpha=...)` is SGD with momentum plus the mirror
# step, with one shared learning rate; the mirror step touches the three kernels (ndim 2), not the biases.
#
# We also record the fraction of kernel entries whose sign changed during each epoch (`metrics.sign_flips`):
# the mirror step itself never flips a sign, but by keeping the inverse metric $1+\alpha|x|\ge 1$ it lets the
# inner optimizer flip small weights as easily as gradient descent does.

# %%
from flax import nnx
from ham_optax_examples.models import MLP  # 40 -> 256 -> 256 -> 10, ReLU


@nnx.jit
def train_step(model, optimizer, x, y):
  def loss_fn(m):
    return optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()

  loss, grads = nnx.value_and_grad(loss_fn)(model)
  optimizer.update(model, grads)
  return loss


@nnx.jit
def accuracy(model, x, y):
  return (model(x).argmax(-1) == y).mean()


def train(tx, seed, epochs=EPOCHS, batch_size=100):
  model = MLP(40, 10, hidden=(256, 256), rngs=nnx.Rngs(seed))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  order = np.random.default_rng(seed)
  hist = {"loss": [], "val_acc": [], "sign_flips": []}
  for _ in range(epochs):
    before = jax.tree.map(np.asarray, nnx.state(model, nnx.Param))  # a copy: the model changes in place
    n = len(x_train) // batch_size * batch_size  # whole batches only
    batches = order.permutation(len(x_train))[:n].reshape(-1, batch_size)
    losses = [train_step(model, optimizer, x_train[idx], y_train[idx]) for idx in batches]
    hist["loss"].append(float(np.mean(losses)))
    hist["val_acc"].append(float(accuracy(model, x_val, y_val)))
    flips = ham_optax.metrics.sign_flips(nnx.state(model, nnx.Param), before)
    hist["sign_flips"].append(float(flips["fraction"]))
  hist["test_acc"] = float(accuracy(model, x_test, y_test))
  return hist


# %% [markdown]
# **Choosing $\alpha$ on the validation split** (one seed; the learning rate 0.05 and momentum 0.9 are the
# same for the baseline and HAM, and `beta` stays at its default 1e-3):

# %%
LR = 0.05
t0 = time.perf_counter()
sweep = {alpha: train(ham_optax.ham_sgd(LR, momentum=0.9, alpha=alpha), seed=0) for alpha in ALPHAS}
for alpha, h in sweep.items():
  print(f"alpha={alpha:5g}: best validation accuracy {max(h['val_acc']):.3f}, final {h['val_acc'][-1]:.3f}")
ALPHA = max(sweep, key=lambda a: sweep[a]["val_acc"][-1])
print(f"chosen alpha = {ALPHA:g} (final validation accuracy); {time.perf_counter() - t0:.0f} s")

# %%
t0 = time.perf_counter()
optimizers = {
  "SGD+momentum": lambda: optax.sgd(LR, momentum=0.9),
  f"HAM (alpha={ALPHA:g})": lambda: ham_optax.ham_sgd(LR, momentum=0.9, alpha=ALPHA),
}
hists = {name: [train(make(), seed) for seed in SEEDS] for name, make in optimizers.items()}
print(f"{len(SEEDS)} seed(s), {EPOCHS} epochs, {time.perf_counter() - t0:.0f} s")
for name, hs in hists.items():
  val, test = np.array([h["val_acc"][-1] for h in hs]), np.array([h["test_acc"] for h in hs])
  print(
    f"{name:20s} validation {val.mean():.3f} ± {val.std():.3f}   test {test.mean():.3f} ± {test.std():.3f}"
  )

# %%
fig, axes = plt.subplots(1, 3)
for name, hs in hists.items():
  for ax, key in zip(axes, ("loss", "val_acc", "sign_flips"), strict=True):
    curves = np.array([h[key] for h in hs])
    epochs = np.arange(1, curves.shape[1] + 1)
    ax.plot(epochs, curves.mean(0), label=name)
    ax.fill_between(epochs, curves.min(0), curves.max(0), alpha=0.2)
axes[0].set(yscale="log", xlabel="epoch", title="training loss")
axes[1].set(xlabel="epoch", title="validation accuracy")
axes[2].set(yscale="log", xlabel="epoch", title="kernel sign flips per epoch (fraction)")
axes[1].legend()
plt.show()

# %% [markdown]
# **Reading the curves.** Means over seeds, shaded min-max. This small MLP overfits mnist1d (the training loss
# goes towards 0 for both optimizers), so test accuracy is low for any optimizer; the gap between them is a few
# points at most and, with few seeds and one learning rate, should not be over-read. With a large $\alpha$
# the loss can show a transient spike where $\eta\,\alpha\,|g|$ gets large; sign flips die out as the
# weights settle. `03_sparse_training.ipynb` shows where HAM's bias matters most: with a sparsifier.
