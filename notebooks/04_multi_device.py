# %% [markdown]
# # HAM on every device of the runtime with `jax.sharding`
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/ham-optax/ham_optax/blob/main/notebooks/04_multi_device.ipynb)
#
# The same training code runs on one device or on all of them: the 8 TPU cores of a Colab TPU runtime, the
# GPU(s) of a GPU runtime, or, on a CPU-only machine, 8 simulated CPU devices. There is no TPU-only code path:
# we build a `jax.sharding.Mesh` over `jax.devices()`, shard the batch over it (data parallelism), place the
# parameters with `NamedSharding`, and let `jax.jit` insert the gradient all-reduce.
#
# HAM's mirror step is elementwise, so it needs no communication of its own: whatever sharding the parameters
# have, the update has the same one.

# %%
import importlib.util
import os
import subprocess
import sys

SMALL = os.environ.get("HAM_OPTAX_NOTEBOOK_SMALL") == "1"  # the quick size the tests and docs run
print(f"SMALL={SMALL}")
NUM_SAMPLES = 1000 if SMALL else 5000
EPOCHS = 2 if SMALL else 20
GLOBAL_BATCH = 128  # split evenly over the devices (rounded up to a multiple of their number)

# Before jax is imported: 8 simulated CPU devices (harmless on TPU/GPU; restart if jax was imported already).
flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in flags:
  os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count=8".strip()

# On Colab: install ham_optax and its examples without dependencies (the runtime's jax, optax, flax stay).
REPO_URL = "https://github.com/ham-optax/ham_optax"  # <- the repository to install from
if importlib.util.find_spec("ham_optax_examples") is None:
  packages = [f"git+{REPO_URL}", f"ham_optax_examples @ git+{REPO_URL}#subdirectory=examples", "mnist1d"]
  subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", *packages], check=True)

import time

import jax
import matplotlib.pyplot as plt
import mnist1d.data
import numpy as np
import optax
from flax import nnx
from ham_optax_examples.models import MLP  # 40 -> 256 -> 256 -> 10, ReLU
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import ham_optax

plt.rcParams.update({"figure.dpi": 72, "figure.figsize": (11, 3.2)})
devices = jax.devices()
print(f"backend: {jax.default_backend()}, {len(devices)} device(s): {devices}")
mesh_all = Mesh(np.array(devices), ("data",))  # every device of the runtime
mesh_one = Mesh(np.array(devices[:1]), ("data",))  # the same code on a single device, for comparison
batch = -(-GLOBAL_BATCH // len(devices)) * len(devices)
print(f"global batch {batch} = {len(devices)} x {batch // len(devices)} per device")

# %%
args = mnist1d.data.get_dataset_args()
args.num_samples = NUM_SAMPLES
data = mnist1d.data.make_dataset(args)  # procedural; nothing is downloaded
mean, std = data["x"].mean(), data["x"].std()
x_train, y_train = ((data["x"] - mean) / std).astype(np.float32), data["y"].astype(np.int32)
x_test, y_test = ((data["x_test"] - mean) / std).astype(np.float32), data["y_test"].astype(np.int32)
print("train", x_train.shape, "test", x_test.shape)

# %% [markdown]
# ## One train step for any mesh
#
# A functional step over the parameter pytree (`nnx.split` turns the NNX model into a graph definition and a
# pytree of arrays). Nothing in it mentions devices: `jax.jit` compiles it for the shardings of its inputs.

# %%
graphdef, init_params = nnx.split(MLP(40, 10, hidden=(256, 256), rngs=nnx.Rngs(0)))
LR = 0.05
tx = ham_optax.ham_sgd(LR, momentum=0.9, alpha=20.0)


def loss_fn(params, x, y):
  return optax.softmax_cross_entropy_with_integer_labels(nnx.merge(graphdef, params)(x), y).mean()


def train_step(params, opt_state, x, y):
  loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, loss


@jax.jit
def accuracy(params, x, y):
  return (nnx.merge(graphdef, params)(x).argmax(-1) == y).mean()


def replicated(mesh, p):
  return NamedSharding(mesh, P())


def sharded_last_axis(mesh, p):
  """FSDP-style: a kernel's last axis split over the devices when it divides evenly; the rest replicated."""
  split = p.ndim >= 2 and p.shape[-1] % mesh.devices.size == 0
  return NamedSharding(mesh, P(*[None] * (p.ndim - 1), "data") if split else P())


def run(mesh, placement, epochs=EPOCHS):
  def layout(tree):  # where each leaf lives; optimizer state follows the parameters it belongs to
    return jax.tree.map(lambda p: placement(mesh, p), tree)

  params = jax.device_put(init_params, layout(init_params))
  opt_state = jax.device_put(tx.init(init_params), layout(tx.init(init_params)))
  # The same train_step for every mesh; out_shardings keeps the chosen layout from step to step.
  step = jax.jit(train_step, out_shardings=(layout(params), layout(opt_state), NamedSharding(mesh, P())))
  batch_sharding = NamedSharding(mesh, P("data"))  # split the batch axis over the devices
  order = np.random.default_rng(0)
  losses, times = [], []
  for _ in range(epochs):
    perm = order.permutation(len(x_train))
    for idx in perm[: len(perm) // batch * batch].reshape(-1, batch):
      xb, yb = jax.device_put((x_train[idx], y_train[idx]), batch_sharding)
      t0 = time.perf_counter()
      params, opt_state, loss = step(params, opt_state, xb, yb)
      losses.append(float(loss))  # float() waits for the step: honest per-step times
      times.append(time.perf_counter() - t0)
  n_test = len(x_test) // batch * batch
  test = jax.device_put((x_test[:n_test], y_test[:n_test]), batch_sharding)
  acc = float(accuracy(params, *test))
  return dict(params=params, loss=np.array(losses), ms_per_step=1e3 * np.median(times[10:]), test_acc=acc)


# %% [markdown]
# ## Run it: 1 device, all devices (parameters replicated), all devices (kernels sharded)

# %%
runs = {
  "1 device": run(mesh_one, replicated),
  f"{len(devices)} devices, params replicated": run(mesh_all, replicated),
  f"{len(devices)} devices, kernels sharded": run(mesh_all, sharded_last_axis),
}
for name, r in runs.items():
  stats = f"final loss {r['loss'][-1]:.4f}  test acc {r['test_acc']:.3f}  {r['ms_per_step']:.2f} ms/step"
  print(f"{name:36s} {stats}")

p = runs[f"{len(devices)} devices, kernels sharded"]["params"]
print("\nwhere the HAM-trained parameters live (kernels sharded):")
for path, leaf in jax.tree_util.tree_flatten_with_path(p)[0]:
  print(f"  {jax.tree_util.keystr(path):28s} {str(leaf.shape):12s} {leaf.sharding.spec}")
  assert leaf.sharding.is_equivalent_to(sharded_last_axis(mesh_all, leaf), leaf.ndim)  # kept by training

# %% [markdown]
# **Same numbers on 1 and N devices.** Data parallelism only changes the order of floating-point sums (the
# per-device partial gradients are all-reduced), so the loss curves agree up to rounding. The check below
# fails loudly if they do not.

# %%
ref = runs["1 device"]["loss"]
n_check = min(len(ref), 50)  # early steps: later ones amplify rounding differences chaotically
tolerance = 1e-4 if jax.default_backend() == "cpu" else 2e-2
for name, r in list(runs.items())[1:]:
  diff = np.max(np.abs(r["loss"][:n_check] - ref[:n_check]))
  print(f"{name:36s} max |loss - loss(1 device)| over the first {n_check} steps: {diff:.2e}")
  assert diff < tolerance, "sharded run diverged from the 1-device run"

fig, ax = plt.subplots()
for name, r in runs.items():
  ax.plot(np.convolve(r["loss"], np.ones(10) / 10, "valid"), label=name, lw=1)
ax.set(yscale="log", xlabel="step", ylabel="training loss (10-step mean)", title="same code, 1 or N devices")
ax.legend()
plt.show()

# %% [markdown]
# **Timings.** On simulated CPU devices all "devices" share the same cores, so more devices is not faster
# (the all-reduce only adds work); on a TPU runtime the per-device batch shrinks with the device count. This
# MLP is far too small for either to matter: the point is that the code is the same.
