# %% [markdown]
# # Sparse training with and without HAM
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/ham-optax/ham_optax/blob/main/notebooks/03_sparse_training.ipynb)
#
# HAM biases towards sparse solutions but does not prune by itself; the paper pairs it with sparsifiers. Here:
# SGD with momentum vs HAM under (a) random pruning at initialisation (fixed ERK masks, 90 % sparsity) and
# (b) AC/DC (dense/sparse phases by magnitude, ending 90 % sparse), on mnist1d with an MLP. The sparsifiers
# (`ham_optax.sparsity`) wrap the optimizer: `random_pruning(ham(...), 0.9)`; `ham_optax.metrics` gives
# sparsity and sign flips.

# %%
import os

SMALL = os.environ.get("HAM_OPTAX_NOTEBOOK_SMALL") == "1"  # the quick size the tests and docs run
print(f"SMALL={SMALL}")
NUM_SAMPLES = 1000 if SMALL else 5000
EPOCHS = 3 if SMALL else 30
SEEDS = (0,) if SMALL else (0, 1)
SPARSITY, LR, ALPHA, BATCH = 0.9, 0.05, 20.0, 100

# %%
# On Colab (or any runtime without them): install ham_optax and its examples from the repository, without
# dependencies, so that the runtime's own jax, optax and flax stay. A no-op in a checkout.
import importlib.util
import subprocess
import sys

REPO_URL = "https://github.com/ham-optax/ham_optax"  # <- the repository to install from
if importlib.util.find_spec("ham_optax_examples") is None:
  packages = [f"git+{REPO_URL}", f"ham_optax_examples @ git+{REPO_URL}#subdirectory=examples", "mnist1d"]
  subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", *packages], check=True)

# %%
import jax
import matplotlib.pyplot as plt
import mnist1d.data
import numpy as np
import optax
from flax import nnx
from ham_optax_examples.models import MLP  # 40 -> 256 -> 256 -> 10, ReLU

import ham_optax
from ham_optax import metrics, sparsity

plt.rcParams.update({"figure.dpi": 72, "figure.figsize": (11, 3.2)})
args = mnist1d.data.get_dataset_args()
args.num_samples = NUM_SAMPLES
data = mnist1d.data.make_dataset(args)  # procedural; nothing is downloaded
mean, std = data["x"].mean(), data["x"].std()
x_all, y_all = ((data["x"] - mean) / std).astype(np.float32), data["y"].astype(np.int32)
n_val = len(x_all) // 5
x_val, y_val, x_train, y_train = x_all[:n_val], y_all[:n_val], x_all[n_val:], y_all[n_val:]
x_test, y_test = ((data["x_test"] - mean) / std).astype(np.float32), data["y_test"].astype(np.int32)


# %%
def make_tx(method, use_ham, steps):
  inner = ham_optax.ham_sgd(LR, momentum=0.9, alpha=ALPHA) if use_ham else optax.sgd(LR, momentum=0.9)
  if method == "random pruning":
    return sparsity.random_pruning(inner, SPARSITY, distribution="erk")
  return sparsity.acdc(inner, SPARSITY, total_steps=steps)


def train(method, use_ham, seed):
  steps_per_epoch = len(x_train) // BATCH
  tx = make_tx(method, use_ham, EPOCHS * steps_per_epoch)
  graphdef, params = nnx.split(MLP(40, 10, hidden=(256, 256), rngs=nnx.Rngs(seed)))
  opt_state = tx.init(params)
  params = sparsity.apply_masks(params, opt_state)  # start sparse (a no-op for AC/DC's dense warm-up)

  def loss_fn(p, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(nnx.merge(graphdef, p)(x), y).mean()

  @jax.jit
  def step(p, s, x, y):
    loss, g = jax.value_and_grad(loss_fn)(p, x, y)
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s, loss

  acc = jax.jit(lambda p, x, y: (nnx.merge(graphdef, p)(x).argmax(-1) == y).mean())
  order = np.random.default_rng(seed)
  hist = {"sparsity": [], "sign_flips": [], "val_acc": []}
  prev = params
  for _ in range(EPOCHS):
    perm = order.permutation(len(x_train))
    for i in range(steps_per_epoch):
      idx = perm[i * BATCH : (i + 1) * BATCH]
      params, opt_state, _ = step(params, opt_state, x_train[idx], y_train[idx])
    hist["sparsity"].append(float(metrics.sparsity(params)["global"]))
    hist["sign_flips"].append(float(metrics.sign_flips(params, prev)["fraction"]))
    hist["val_acc"].append(float(acc(params, x_val, y_val)))
    prev = params
  hist["test_acc"] = float(acc(params, x_test, y_test))
  return hist


results = {}
for method in ("random pruning", "AC/DC"):
  for use_ham in (False, True):
    name = f"{method} + {'HAM' if use_ham else 'SGD'}"
    results[name] = [train(method, use_ham, seed) for seed in SEEDS]
    val = np.array([h["val_acc"][-1] for h in results[name]])
    test = np.array([h["test_acc"] for h in results[name]])
    print(
      f"{name:24s} sparsity {results[name][0]['sparsity'][-1]:.3f}  validation {val.mean():.3f} ± {val.std():.3f}"
      f"  test {test.mean():.3f} ± {test.std():.3f}"
    )

# %%
fig, axes = plt.subplots(1, 3)
for name, hs in results.items():
  style = "-" if "HAM" in name else "--"
  for ax, key in zip(axes, ("sparsity", "sign_flips", "val_acc"), strict=True):
    ax.plot(np.arange(1, EPOCHS + 1), np.mean([h[key] for h in hs], 0), style, label=name)
axes[0].set(xlabel="epoch", title="sparsity of the kernels")
axes[1].set(xlabel="epoch", yscale="log", title="sign flips per epoch (fraction)")
axes[2].set(xlabel="epoch", title="validation accuracy")
axes[2].legend(fontsize=8)
plt.show()

# %% [markdown]
# **Reading it.** Random pruning keeps a fixed 90 % of the kernel entries at exactly 0 from the start; AC/DC
# alternates between dense and 90 %-sparse phases and ends sparse. The learning rate and $\alpha = 20$ are
# fixed, not tuned per method, and the seeds are few: treat differences of a point or two as noise.
