# %% [markdown]
# # HAM on a transformer: grokking modular addition
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/ham-optax/ham_optax/blob/main/notebooks/05_transformers.ipynb)
#
# A one-block decoder-only transformer (Flax NNX: token + position embeddings, pre-LayerNorm causal multi-head
# attention and a ReLU MLP, a linear head) learns `a + b mod p` from a fraction of the `p * p` pairs. With
# weight decay it first memorises the training pairs and only later generalises: *grokking* (Power et al.,
# 2022). The solution it finds depends on implicit and explicit regularisation, which is what HAM (Jacobs et al.,
# ICLR 2026, [arXiv:2506.02630](https://arxiv.org/abs/2506.02630)) changes.
#
# We train four optimizers at the hyperparameters `benchmarks/transformers.py` selected on the validation
# split and plot train and validation accuracy against the step; the benchmark has the 5-seed tables.

# %%
import importlib.util
import os
import subprocess
import sys

SMALL = os.environ.get("HAM_OPTAX_NOTEBOOK_SMALL") == "1"  # the quick size the tests and docs run
P = 7 if SMALL else 23  # modulus
WIDTH = 16 if SMALL else 32  # d_model (one block, 4 heads)
STEPS = 60 if SMALL else 1000  # full-batch steps
EVAL_EVERY = 10 if SMALL else 25
print(f"SMALL={SMALL}: p={P}, d_model={WIDTH}, {STEPS} steps")

# On Colab: install ham_optax and its examples without dependencies (the runtime's jax, optax, flax stay).
REPO_URL = "https://github.com/ham-optax/ham_optax"  # <- the repository to install from
if importlib.util.find_spec("ham_optax_examples") is None:
  packages = [f"git+{REPO_URL}", f"ham_optax_examples @ git+{REPO_URL}#subdirectory=examples", "mnist1d"]
  subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", *packages], check=True)

import time

import matplotlib.pyplot as plt
import numpy as np
from ham_optax_examples import data, grokking

# %% [markdown]
# ## The data: `[a, +, b, =] -> (a + b) mod p`
#
# Every pair is one example; a seeded permutation splits the pairs into disjoint train (70 %), validation (15 %)
# and test (15 %) sets.

# %%
ds = data.load_modular(p=P, train_fraction=0.7, val_fraction=0.15)
print(f"{len(ds.x_train)} train / {len(ds.x_val)} val / {len(ds.x_test)} test pairs; first example:")
print(ds.x_train[0], "->", ds.y_train[0])

# %% [markdown]
# ## Four optimizers, one seed each
#
# `grokking.train_runs` runs the whole training as one XLA call (`lax.scan` over steps, validation accuracy every
# `EVAL_EVERY` steps). The settings are the ones the benchmark selected on validation:
#
# - AdamW (learning rate 3e-3, weight decay tuned);
# - HAM around that AdamW (`alpha`, `beta` tuned);
# - AdamW with its weight decay switched off half-way (`ham_optax.schedules.switch_off` under
#   `optax.inject_hyperparams`);
# - HAM around SGD + momentum 0.9.

# %%
SETTINGS = {
  "adamw": {"lr": 3e-3, "wd": 3.0},
  "ham_adamw": {"lr": 3e-3, "wd": 3.0, "alpha": 10.0, "beta": 1.0},
  "adamw_wd_off": {"lr": 3e-3, "wd": 3.0},
  "ham_sgdm": {"lr": 0.1, "alpha": 10.0, "beta": 0.03},
}
train, evals = grokking.run_dataset(ds)
graphdef, params = grokking.init_params([0], P, width=WIDTH)
runs = {}
for method, hp in SETTINGS.items():
  t0 = time.perf_counter()
  hparams = {k: [v] for k, v in hp.items()}  # one run per method (lists: a grid trains vmapped)
  kwargs = {"steps": STEPS, "eval_every": EVAL_EVERY, "switch_step": STEPS // 2}
  runs[method] = grokking.train_runs(method, graphdef, params, hparams, train, evals, **kwargs)
  print(f"{method:13s} {time.perf_counter() - t0:5.1f} s (with compilation)")

# %% [markdown]
# ## Accuracy against step
#
# Dashed: training accuracy; solid: validation accuracy. Grokking is the late rise of the solid curve.

# %%
fig, axes = plt.subplots(1, 4, figsize=(15, 3.2), sharey=True)
for ax, (method, out) in zip(axes, runs.items(), strict=True):
  ax.plot(out["steps"], out["train_acc"][0], "--", label="train")
  ax.plot(out["steps"], out["val_acc"][0], "-", label="validation")
  ax.set(title=method, xlabel="step")
axes[0].set_ylabel("accuracy")
axes[0].legend(loc="lower right")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Grokking times and the implicit-bias indicator
#
# The grokking step is the first evaluation at which validation accuracy reaches 99 % ("never" if it does not
# within the run). The Fourier indicator is the share of the number embedding's energy in its 4 strongest
# frequencies: a network that has grokked addition uses a few frequencies (Nanda et al., 2023).

# %%
print(f"{'method':13s} {'grokking step':>14s} {'final val':>10s} {'final test':>11s} {'Fourier top-4':>14s}")
for method, out in runs.items():
  step = grokking.grokking_step(out["steps"], out["val_acc"])[0]
  fourier = grokking.weight_indicators(graphdef, out["params"], P)["fourier_top4"][0]
  shown = "never" if np.isnan(step) else f"{step:.0f}"
  finals = f"{out['val_acc'][0, -1]:10.3f} {out['test_acc'][0, -1]:11.3f} {fourier:14.3f}"
  print(f"{method:13s} {shown:>14s} {finals}")
  assert out["finite"].all()
