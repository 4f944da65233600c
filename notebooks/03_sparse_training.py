# %% [markdown]
# # Sparse training with and without HAM
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/ham-optax/ham_optax/blob/main/notebooks/03_sparse_training.ipynb)
#
# HAM biases towards sparse solutions but does not prune by itself; the paper pairs it with sparsifiers. Here:
# SGD with momentum vs HAM under (a) random pruning at initialisation (fixed ERK masks, 90 % sparsity) and
# (b) AC/DC (dense/sparse phases by magnitude, ending 90 % sparse), on mnist1d with an MLP. The sparsifiers
# (`ham_optax.sparsity`) wrap the optimizer: `random_pruning(ham(...), 0.9)`.

# %%
import importlib.util
import os
import subprocess
import sys

SMALL = os.environ.get("HAM_OPTAX_NOTEBOOK_SMALL") == "1"  # the quick size the tests and docs run
print(f"SMALL={SMALL}")
NUM_SAMPLES = 1000 if SMALL else 5000
EPOCHS = 3 if SMALL else 30
SEEDS = (0,) if SMALL else (0, 1)
SPARSITY, LR, ALPHA, BATCH = 0.9, 0.05, 20.0, 100

# On Colab: install ham_optax and its examples without dependencies (the runtime's jax, optax, flax stay).
REPO_URL = "https://github.com/ham-optax/ham_optax"  # <- the repository to install from
if importlib.util.find_spec("ham_optax_examples") is None:
  packages = [f"git+{REPO_URL}", f"ham_optax_examples @ git+{REPO_URL}#subdirectory=examples", "mnist1d"]
  subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", *packages], check=True)
  subprocess.run([sys.executable, "-m", "pip", "install", "-q", "tyro"], check=True)  # the examples' configs

import matplotlib.pyplot as plt
import numpy as np
from ham_optax_examples import data, train
from ham_optax_examples.configs.default import Config

plt.rcParams.update({"figure.dpi": 72, "figure.figsize": (11, 3.2)})
dataset = data.load_mnist1d(num_samples=NUM_SAMPLES)  # generated procedurally, nothing is downloaded

# %% [markdown]
# The examples' `train.train_and_evaluate` trains the examples' MLP (40 -> 256 -> 256 -> 10) with the optimizer
# `sparsifier(ham(inner))` of `train.make_optimizer`: here `random_pruning(ham(sgd), 0.9)` (pruned at
# initialisation) or `acdc(ham(sgd), 0.9, total_steps)`, one epoch per XLA call, and records per epoch the
# kernels' sparsity, their sign flips versus initialisation and the validation accuracy.

# %%
settings = dict(learning_rate=LR, momentum=0.9, weight_decay=0.0, schedule="constant", alpha=ALPHA, beta=1e-3)
base = Config(model="mlp", epochs=EPOCHS, batch_size=BATCH, sparsity=SPARSITY, progress=False, **settings)
results = {}
for sparsifier in ("random", "acdc"):
  for use_ham in (False, True):
    name = f"{sparsifier} + {'HAM' if use_ham else 'SGD'}"
    configs = [base.replace(sparsifier=sparsifier, ham=use_ham, seed=seed) for seed in SEEDS]
    runs = [train.train_and_evaluate(config, dataset) for config in configs]
    results[name] = [r["history"] for r in runs]
    val, test = (np.array([r[key] for r in runs]) for key in ("val_acc", "test_acc"))
    stats = f"validation {val.mean():.3f} ± {val.std():.3f}  test {test.mean():.3f} ± {test.std():.3f}"
    print(f"{name:14s} sparsity {runs[0]['sparsity']:.3f}  {stats}")

# %%
fig, axes = plt.subplots(1, 3)
for name, histories in results.items():
  style = "-" if "HAM" in name else "--"
  for ax, key in zip(axes, ("sparsity", "sign_flips", "val_acc"), strict=True):
    curve = np.mean([[epoch[key] for epoch in history] for history in histories], 0)
    ax.plot(np.arange(1, EPOCHS + 1), curve, style, label=name)
axes[0].set(xlabel="epoch", title="sparsity of the kernels")
axes[1].set(xlabel="epoch", title="sign flips versus initialisation (fraction)")
axes[2].set(xlabel="epoch", title="validation accuracy")
axes[2].legend(fontsize=8)
plt.show()

# %% [markdown]
# **Reading it.** Random pruning keeps a fixed 90 % of the kernel entries at exactly 0 from the start; AC/DC
# alternates between dense and 90 %-sparse phases and ends sparse. The learning rate and $\alpha = 20$ are
# fixed, not tuned per method, and the seeds are few: treat differences of a point or two as noise.
