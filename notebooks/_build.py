"""Builds the notebooks in this folder from the cell sources below, so they stay small and reviewable.

  python notebooks/_build.py                    # (re)write every .ipynb, without outputs
  python notebooks/_build.py --execute          # ... then run them top to bottom and embed the outputs
  python notebooks/_build.py --execute 01 04    # only the notebooks whose name starts with 01 or 04

Execution is full size unless ``HAM_OPTAX_NOTEBOOK_SMALL=1`` is set (the switch CI uses). Edit this file, not the
.ipynb files: `tests/test_notebooks.py` checks that the committed notebooks carry exactly these sources.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import textwrap
import time

import nbformat

HERE = pathlib.Path(__file__).resolve().parent
REPO_URL = "https://github.com/ham-optax/ham_optax"
COLAB = "https://colab.research.google.com/github/ham-optax/ham_optax/blob/main/notebooks/"


def _md(text: str) -> nbformat.NotebookNode:
  return nbformat.v4.new_markdown_cell(textwrap.dedent(text).strip())


def _code(text: str) -> nbformat.NotebookNode:
  return nbformat.v4.new_code_cell(textwrap.dedent(text).strip())


def _title(name: str, title: str, intro: str) -> nbformat.NotebookNode:
  badge = f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({COLAB}{name}.ipynb)"
  return _md(f"# {title}\n\n{badge}\n\n{textwrap.dedent(intro).strip()}")


def _install(extra: str = "mnist1d", prelude: str = "") -> nbformat.NotebookNode:
  """The first code cell: nothing to do where ham_optax imports (CI, a local checkout); on Colab, install it.

  `--no-deps` keeps Colab's own jax/jaxlib (and its TPU/GPU build), optax, flax and chex untouched; `extra` lists
  the pure-Python packages Colab lacks (their own dependencies, numpy/scipy/matplotlib/requests, are on Colab).
  """
  return _code(
    prelude
    + f'''
    # Install: a no-op where ham_optax is importable (a local checkout, CI); on Colab it installs this repository
    # WITHOUT touching Colab's own jax/jaxlib (TPU/GPU builds), optax, flax and chex.
    REPO_URL = "{REPO_URL}"  # <- the repository to install from
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("ham_optax") is None:
      subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", f"git+{{REPO_URL}}", "{extra}"], check=True)
    '''
  )


_SMALL_NOTE = """
**Sizes.** `SMALL = True` (set `HAM_OPTAX_NOTEBOOK_SMALL=1`) is the quick setting CI runs on every change; the
default is the full size the committed outputs come from.
"""

# --------------------------------------------------------------------------------------------------------------
# 01: quickstart
# --------------------------------------------------------------------------------------------------------------

NB01 = [
  _title(
    "01_quickstart",
    "HAM quickstart: optax and Flax NNX",
    """
    Hyperbolic Aware Minimization (HAM; Jacobs, Gadhikar, Rubio-Madrigal, Burkholz, ICLR 2026,
    [arXiv:2506.02630](https://arxiv.org/abs/2506.02630)) follows any optimizer's step with a multiplicative
    *hyperbolic mirror step* on the weights:

    $$x_{k+1/2} = x_k + \\mathrm{inner}(g_k), \\qquad
      x_{k+1} = x_{k+1/2} \\odot \\exp\\big(-\\eta_k(\\alpha\\,\\mathrm{sign}(x_{k+1/2}) \\odot g_k + \\beta)\\big)$$

    with the raw gradient $g_k$ (no second backward pass, no extra optimizer state). Its continuous limit
    $\\dot x = -(1+\\alpha|x|)\\nabla f(x)$ moves small weights at least as fast as gradient descent while its
    implicit bias goes from L2 ($\\alpha\\to 0$) towards L1 (large $\\alpha$).

    This notebook shows (1) `ham_optax.ham` as an optax transformation on a toy sparse-regression problem and
    (2) HAM inside a Flax NNX training loop on [mnist1d](https://github.com/greydanus/mnist1d), with loss, accuracy
    and sign-flip curves. Runs on CPU, GPU or TPU runtimes.
    """,
  ),
  _install(),
  _md(_SMALL_NOTE),
  _code(
    """
    import os

    SMALL = os.environ.get("HAM_OPTAX_NOTEBOOK_SMALL") == "1"  # CI's quick setting; full size by default
    TOY_STEPS = 300 if SMALL else 3000  # optax toy problem
    NUM_SAMPLES = 1000 if SMALL else 5000  # mnist1d samples (80 % train+validation, 20 % test)
    EPOCHS = 3 if SMALL else 40
    ALPHAS = (20.0,) if SMALL else (5.0, 20.0, 50.0, 100.0)  # HAM strengths tried on the validation split
    SEEDS = (0,) if SMALL else (0, 1, 2)
    print(f"SMALL={SMALL}")
    """
  ),
  _code(
    """
    import time

    import jax
    import jax.numpy as jnp
    import matplotlib.pyplot as plt
    import numpy as np
    import optax

    import ham_optax

    plt.rcParams.update({"figure.dpi": 72, "figure.figsize": (11, 3.2)})
    print("jax", jax.__version__, "optax", optax.__version__, "| devices:", jax.devices())
    """
  ),
  _md(
    """
    ## 1. HAM as an optax transformation

    An underdetermined least-squares problem $Zx = y$ (20 equations, 100 unknowns) whose right-hand side comes
    from a 5-sparse $x^\\star$. Every method below fits the data exactly; they differ in *which* of the infinitely
    many solutions they reach. Started near zero, gradient descent finds the minimum-L2-norm solution; HAM's
    implicit bias moves it towards the minimum-L1-norm solution (basis pursuit, computed here with `scipy`'s
    linear-programming solver as the reference) as $\\alpha$ grows.

    `ham_optax.ham(inner, learning_rate, alpha, beta, mask=...)` wraps any optax optimizer. By default the mirror
    step applies to leaves with `ndim >= 2` (weight matrices, not biases); the parameter here is a vector, so we
    select it with `mask=True`.
    """
  ),
  _code(
    """
    from scipy.optimize import linprog

    rng = np.random.default_rng(0)
    n, d = 20, 100
    Z = rng.normal(size=(n, d)) / np.sqrt(n)
    x_star = np.zeros(d)
    x_star[:5] = rng.choice([-1.0, 1.0], 5) * rng.uniform(1.0, 2.0, 5)
    y = Z @ x_star
    x0 = jnp.asarray(1e-3 * rng.normal(size=d), jnp.float32)  # small init: the bias is relative to x0


    def loss(x):
      return 0.5 * jnp.sum((Z @ x - y) ** 2)


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
    results = {name: jax.jit(fit, static_argnums=(0, 1))(tx, TOY_STEPS) for name, tx in runs.items()}

    bp = linprog(np.ones(2 * d), A_eq=np.hstack([Z, -Z]), b_eq=y, bounds=(0, None))  # min ||x||_1 s.t. Zx = y
    x_bp = bp.x[:d] - bp.x[d:]
    print(f"{'':18s} {'final loss':>10s} {'||x||_1':>8s} {'|x|>0.01':>8s}")
    for name, (x, losses) in results.items():
      print(f"{name:18s} {float(losses[-1]):10.1e} {float(jnp.abs(x).sum()):8.3f} {int((jnp.abs(x) > 1e-2).sum()):8d}")
    print(f"{'basis pursuit':18s} {'':10s} {np.abs(x_bp).sum():8.3f} {int((np.abs(x_bp) > 1e-2).sum()):8d}")
    """
  ),
  _code(
    """
    fig, (ax0, ax1) = plt.subplots(1, 2)
    for name, (x, losses) in results.items():
      ax0.semilogy(np.asarray(losses), label=name)
      ax1.plot(np.sort(np.abs(np.asarray(x)))[::-1], label=name)
    ax1.plot(np.sort(np.abs(x_bp))[::-1], "k--", label="basis pursuit (min L1)")
    ax0.set(xlabel="step", ylabel="loss", title="training loss")
    ax1.set(xlabel="entries, sorted", ylabel="|x_i|", title="solution reached", xlim=(0, 40))
    ax1.legend()
    plt.show()
    """
  ),
  _md(
    """
    **Stability.** Each step multiplies a weight by up to $e^{\\eta\\alpha|g|}$. Keep $\\eta\\,\\alpha\\,|g|$ well below
    1; otherwise the weights grow geometrically (the exponent is clipped to $[-5, 5]$ per step, which bounds the
    damage per step but not over many steps). Here is the same problem with a 5x larger learning rate and
    $\\alpha = 100$:
    """
  ),
  _code(
    """
    x_bad, losses_bad = jax.jit(fit, static_argnums=(0, 1))(ham_optax.ham(optax.sgd(0.01), 0.01, alpha=100.0, mask=True), 200)
    print("loss after 1, 10, 200 steps:", [float(losses_bad[i]) for i in (0, 9, 199)])
    """
  ),
  _md(
    """
    ## 2. HAM in a Flax NNX training loop (mnist1d)

    [mnist1d](https://github.com/greydanus/mnist1d) generates 1-D versions of the ten digits procedurally
    (`make_dataset`; nothing is downloaded). We hold out 20 % of the training set for validation: $\\alpha$ is
    chosen there, and the test set is used once at the end.
    """
  ),
  _code(
    """
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
    """
  ),
  _md(
    """
    A 3-layer MLP and the usual NNX loop. The only HAM-specific line is the optimizer:
    `ham_optax.ham_sgd(lr, momentum=0.9, alpha=...)` is SGD with momentum plus the mirror step, with one shared
    learning rate. The mirror step touches the three kernels (ndim 2), not the biases.

    We also record the fraction of kernel entries whose sign changed during each epoch ("sign flips"): the
    mirror step itself never flips a sign, but by keeping the inverse metric $1+\\alpha|x|\\ge 1$ it lets the
    inner optimizer flip small weights as easily as gradient descent does.
    """
  ),
  _code(
    """
    import inspect

    from flax import nnx


    class MLP(nnx.Module):
      def __init__(self, din, hidden, dout, *, rngs):
        self.l1 = nnx.Linear(din, hidden, rngs=rngs)
        self.l2 = nnx.Linear(hidden, hidden, rngs=rngs)
        self.l3 = nnx.Linear(hidden, dout, rngs=rngs)

      def __call__(self, x):
        return self.l3(nnx.relu(self.l2(nnx.relu(self.l1(x)))))


    # flax >= 0.11 passes the model to Optimizer.update; older flax (some Colab images) does not.
    _UPDATE_TAKES_MODEL = "model" in inspect.signature(nnx.Optimizer.update).parameters


    @nnx.jit
    def train_step(model, optimizer, x, y):
      def loss_fn(m):
        return optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()

      loss, grads = nnx.value_and_grad(loss_fn)(model)
      if _UPDATE_TAKES_MODEL:
        optimizer.update(model, grads)
      else:
        optimizer.update(grads)
      return loss


    @nnx.jit
    def accuracy(model, x, y):
      return (model(x).argmax(-1) == y).mean()


    def kernel_signs(model):
      return [np.sign(np.asarray(p)) for p in jax.tree.leaves(nnx.state(model, nnx.Param)) if p.ndim >= 2]


    def train(tx, seed, epochs=EPOCHS, batch_size=100):
      model = MLP(40, 256, 10, rngs=nnx.Rngs(seed))
      optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
      order = np.random.default_rng(seed)
      hist = {"loss": [], "val_acc": [], "sign_flips": []}
      signs = kernel_signs(model)
      for _ in range(epochs):
        perm = order.permutation(len(x_train))
        losses = [
          train_step(model, optimizer, x_train[idx], y_train[idx])
          for idx in np.split(perm[: len(perm) // batch_size * batch_size], len(perm) // batch_size)
        ]
        new_signs = kernel_signs(model)
        hist["loss"].append(float(np.mean(losses)))
        hist["val_acc"].append(float(accuracy(model, x_val, y_val)))
        hist["sign_flips"].append(sum(int((a != b).sum()) for a, b in zip(signs, new_signs)) / sum(a.size for a in signs))
        signs = new_signs
      hist["test_acc"] = float(accuracy(model, x_test, y_test))
      return hist
    """
  ),
  _md(
    """
    **Choosing $\\alpha$ on the validation split** (one seed; the learning rate 0.05 and momentum 0.9 are the
    same for the baseline and HAM, and `beta` stays at its default 1e-3):
    """
  ),
  _code(
    """
    LR = 0.05
    t0 = time.perf_counter()
    sweep = {alpha: train(ham_optax.ham_sgd(LR, momentum=0.9, alpha=alpha), seed=0) for alpha in ALPHAS}
    for alpha, h in sweep.items():
      print(f"alpha={alpha:5g}: best validation accuracy {max(h['val_acc']):.3f}, final {h['val_acc'][-1]:.3f}")
    ALPHA = max(sweep, key=lambda a: sweep[a]["val_acc"][-1])
    print(f"chosen alpha = {ALPHA:g} (final validation accuracy); {time.perf_counter() - t0:.0f} s")
    """
  ),
  _code(
    """
    t0 = time.perf_counter()
    optimizers = {
      "SGD+momentum": lambda: optax.sgd(LR, momentum=0.9),
      f"HAM (alpha={ALPHA:g})": lambda: ham_optax.ham_sgd(LR, momentum=0.9, alpha=ALPHA),
    }
    hists = {name: [train(make(), seed) for seed in SEEDS] for name, make in optimizers.items()}
    print(f"{len(SEEDS)} seed(s), {EPOCHS} epochs, {time.perf_counter() - t0:.0f} s")
    for name, hs in hists.items():
      val = np.array([h["val_acc"][-1] for h in hs])
      test = np.array([h["test_acc"] for h in hs])
      print(f"{name:20s} validation {val.mean():.3f} ± {val.std():.3f}   test {test.mean():.3f} ± {test.std():.3f}")
    """
  ),
  _code(
    """
    fig, axes = plt.subplots(1, 3)
    for name, hs in hists.items():
      for ax, key in zip(axes, ("loss", "val_acc", "sign_flips")):
        curves = np.array([h[key] for h in hs])
        epochs = np.arange(1, curves.shape[1] + 1)
        ax.plot(epochs, curves.mean(0), label=name)
        ax.fill_between(epochs, curves.min(0), curves.max(0), alpha=0.2)
    axes[0].set(yscale="log", xlabel="epoch", title="training loss")
    axes[1].set(xlabel="epoch", title="validation accuracy")
    axes[2].set(yscale="log", xlabel="epoch", title="kernel sign flips per epoch (fraction)")
    axes[1].legend()
    plt.show()
    """
  ),
  _md(
    """
    **Reading the curves.** Means over seeds, shaded min-max. This small MLP overfits mnist1d (the training
    loss goes towards 0 for both optimizers), so test accuracy is low for any optimizer; the gap between them
    is a few points at most and, with three seeds and one learning rate, should not be over-read. With a large
    $\\alpha$ the loss can show a transient spike where $\\eta\\,\\alpha\\,|g|$ gets large; sign flips die out
    as the weights settle. HAM is a one-line change of the optimizer; `03_sparse_training.ipynb` shows where
    its bias matters most: combined with a sparsifier.
    """
  ),
]

# --------------------------------------------------------------------------------------------------------------
# 04: multi-device
# --------------------------------------------------------------------------------------------------------------

NB04 = [
  _title(
    "04_multi_device",
    "HAM on every device of the runtime with `jax.sharding`",
    """
    The same training code runs on one device or on all of them: the 8 TPU cores of a Colab TPU runtime, the
    GPU(s) of a GPU runtime, or, on a CPU-only machine, 8 simulated CPU devices. There is no TPU-only code path:
    we build a `jax.sharding.Mesh` over `jax.devices()`, shard the batch over it (data parallelism), place the
    parameters with `NamedSharding`, and let `jax.jit` insert the gradient all-reduce.

    HAM's mirror step is elementwise, so it needs no communication of its own: whatever sharding the parameters
    have, the update has the same one.
    """,
  ),
  _install(
    prelude="""
    # Must run before jax is imported: on a CPU-only runtime, simulate 8 devices. The flag only affects the host
    # (CPU) platform, so it is harmless on TPU/GPU runtimes. (Restart the runtime if jax was imported already.)
    import os

    if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
      os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
    """
  ),
  _md(_SMALL_NOTE),
  _code(
    """
    SMALL = os.environ.get("HAM_OPTAX_NOTEBOOK_SMALL") == "1"  # CI's quick setting; full size by default
    NUM_SAMPLES = 1000 if SMALL else 5000
    EPOCHS = 2 if SMALL else 20
    GLOBAL_BATCH = 128  # split evenly over the devices (rounded up to a multiple of their number)
    print(f"SMALL={SMALL}")
    """
  ),
  _code(
    """
    import time

    import jax
    import jax.numpy as jnp
    import matplotlib.pyplot as plt
    import mnist1d.data
    import numpy as np
    import optax
    from flax import nnx
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
    """
  ),
  _code(
    """
    args = mnist1d.data.get_dataset_args()
    args.num_samples = NUM_SAMPLES
    data = mnist1d.data.make_dataset(args)  # procedural; nothing is downloaded
    mean, std = data["x"].mean(), data["x"].std()
    x_train, y_train = ((data["x"] - mean) / std).astype(np.float32), data["y"].astype(np.int32)
    x_test, y_test = ((data["x_test"] - mean) / std).astype(np.float32), data["y_test"].astype(np.int32)
    print("train", x_train.shape, "test", x_test.shape)
    """
  ),
  _md(
    """
    ## One train step for any mesh

    A functional step over the parameter pytree (`nnx.split` turns the NNX model into a graph definition and a
    pytree of arrays). Nothing in it mentions devices: `jax.jit` compiles it for the shardings of its inputs.
    """
  ),
  _code(
    """
    class MLP(nnx.Module):
      def __init__(self, din, hidden, dout, *, rngs):
        self.l1 = nnx.Linear(din, hidden, rngs=rngs)
        self.l2 = nnx.Linear(hidden, hidden, rngs=rngs)
        self.l3 = nnx.Linear(hidden, dout, rngs=rngs)

      def __call__(self, x):
        return self.l3(nnx.relu(self.l2(nnx.relu(self.l1(x)))))


    graphdef, init_params = nnx.split(MLP(40, 256, 10, rngs=nnx.Rngs(0)))
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
      # FSDP-style: split each kernel's last axis over the devices when it divides evenly; replicate the rest.
      n = mesh.devices.size
      if p.ndim >= 2 and p.shape[-1] % n == 0:
        return NamedSharding(mesh, P(*([None] * (p.ndim - 1)), "data"))
      return NamedSharding(mesh, P())


    def run(mesh, placement, epochs=EPOCHS):
      def layout(tree):  # where each leaf lives; optimizer state follows the parameters it belongs to
        return jax.tree.map(lambda p: placement(mesh, p), tree)

      params = jax.device_put(init_params, layout(init_params))
      opt_state = jax.device_put(tx.init(init_params), layout(tx.init(init_params)))
      # The same train_step for every mesh; out_shardings keeps the chosen layout from step to step.
      step = jax.jit(train_step, out_shardings=(layout(params), layout(opt_state), NamedSharding(mesh, P())))
      batch_sharding = NamedSharding(mesh, P("data"))  # split the batch axis over the devices
      order = np.random.default_rng(0)
      losses, step_times = [], []
      for _ in range(epochs):
        perm = order.permutation(len(x_train))
        for i in range(len(perm) // batch):
          idx = perm[i * batch : (i + 1) * batch]
          xb, yb = jax.device_put((x_train[idx], y_train[idx]), batch_sharding)
          t0 = time.perf_counter()
          params, opt_state, loss = step(params, opt_state, xb, yb)
          losses.append(float(loss))  # float() waits for the step: honest per-step times
          step_times.append(time.perf_counter() - t0)
      test = jax.device_put((x_test[: len(x_test) // batch * batch], y_test[: len(y_test) // batch * batch]), batch_sharding)
      return {
        "params": params,
        "loss": np.array(losses),
        "ms_per_step": 1e3 * np.median(step_times[10:]),
        "test_acc": float(accuracy(params, *test)),
      }
    """
  ),
  _md(
    """
    ## Run it: 1 device, all devices (parameters replicated), all devices (kernels sharded)
    """
  ),
  _code(
    """
    runs = {
      "1 device": run(mesh_one, replicated),
      f"{len(devices)} devices, params replicated": run(mesh_all, replicated),
      f"{len(devices)} devices, kernels sharded": run(mesh_all, sharded_last_axis),
    }
    for name, r in runs.items():
      print(f"{name:36s} final loss {r['loss'][-1]:.4f}  test acc {r['test_acc']:.3f}  {r['ms_per_step']:.2f} ms/step")

    p = runs[f"{len(devices)} devices, kernels sharded"]["params"]
    print("\\nwhere the HAM-trained parameters live (kernels sharded):")
    for path, leaf in jax.tree_util.tree_flatten_with_path(p)[0]:
      print(f"  {jax.tree_util.keystr(path):28s} {str(leaf.shape):12s} {leaf.sharding.spec}")
      assert leaf.sharding.is_equivalent_to(sharded_last_axis(mesh_all, leaf), leaf.ndim)  # layout kept by training
    """
  ),
  _md(
    """
    **Same numbers on 1 and N devices.** Data parallelism only changes the order of floating-point sums (the
    per-device partial gradients are all-reduced), so the loss curves agree up to rounding. The check below
    fails loudly if they do not.
    """
  ),
  _code(
    """
    ref = runs["1 device"]["loss"]
    for name, r in list(runs.items())[1:]:
      n_check = min(len(ref), 50)  # early steps: later ones amplify rounding differences chaotically
      diff = np.max(np.abs(r["loss"][:n_check] - ref[:n_check]))
      print(f"{name:36s} max |loss - loss(1 device)| over the first {n_check} steps: {diff:.2e}")
      assert diff < (1e-4 if jax.default_backend() == "cpu" else 2e-2), "sharded run diverged from the 1-device run"

    fig, ax = plt.subplots()
    for name, r in runs.items():
      ax.plot(np.convolve(r["loss"], np.ones(10) / 10, "valid"), label=name, lw=1)
    ax.set(yscale="log", xlabel="step", ylabel="training loss (10-step average)", title="same code, 1 or N devices")
    ax.legend()
    plt.show()
    """
  ),
  _md(
    """
    **Timings.** On simulated CPU devices all "devices" share the same cores, so more devices is not faster
    (the all-reduce only adds work); on a TPU runtime the per-device batch shrinks with the device count. This
    MLP is far too small for either to matter: the point is that the code is the same.
    """
  ),
]

# --------------------------------------------------------------------------------------------------------------
# 02: implicit bias (uses ham_optax.geometry from the theory branch)
# --------------------------------------------------------------------------------------------------------------

NB02 = [
  _title(
    "02_implicit_bias",
    "HAM's implicit bias on underdetermined regression",
    """
    With $\\beta = 0$ and a small learning rate, HAM follows the mirror flow $\\dot x = -(1+\\alpha|x|)\\nabla f(x)$
    of the potential $R_\\alpha(x) = \\sum_i [(1+\\alpha|x_i|)\\log(1+\\alpha|x_i|) - \\alpha|x_i|]/\\alpha^2$. On
    $\\min_x \\frac12\\|Zx-y\\|^2$ with more unknowns than equations it converges to the Bregman projection
    $\\arg\\min_{Zx=y} D_{R_\\alpha}(x, x_0)$ (Jacobs et al., ICLR 2026, arXiv:2506.02630, Sec. 4), which
    `ham_optax.geometry.bregman_projection` computes with an independent float64 solver. $R_\\alpha$ is L2-like
    for small $\\alpha$ and L1-like for large $\\alpha$.
    """,
  ),
  _install(),
  _md(_SMALL_NOTE),
  _code(
    """
    import os

    SMALL = os.environ.get("HAM_OPTAX_NOTEBOOK_SMALL") == "1"  # CI's quick setting; full size by default
    ALPHAS = (1.0, 100.0) if SMALL else (0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0)
    SEEDS = (0,) if SMALL else (0, 1, 2)
    T = 30.0  # continuous time each run covers (steps = T / lr)
    print(f"SMALL={SMALL}")
    """
  ),
  _code(
    """
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
      tx = ham_optax.ham(optax.sgd(lr), lr, alpha=alpha, beta=0.0, mask=True) if alpha else optax.sgd(lr)
      loss = lambda x: 0.5 * jnp.sum((Z @ x - y) ** 2)

      def step(carry, _):
        x, state = carry
        updates, state = tx.update(jax.grad(loss)(x), state, x)
        return (optax.apply_updates(x, updates), state), None

      x0 = jnp.asarray(x0)
      (x, _), _ = jax.lax.scan(step, (x0, tx.init(x0)), length=steps)
      return np.asarray(x)
    """
  ),
  _md(
    """
    ## The alpha sweep

    For each $\\alpha$: HAM's end point, the Bregman projection it should approach, and their L1 norms, next to
    gradient descent's limit (minimum-L2 interpolant) and basis pursuit (minimum L1). The learning rate is set
    from the stability bound at the limit, $\\eta = 0.5/(\\|Z\\|_2^2\\,\\max_i(1+\\alpha|x_i|))$.
    """
  ),
  _code(
    """
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
        rows.append((seed, alpha, np.abs(x_ham).sum(), np.abs(x_bp).sum(), np.abs(x_l2).sum(), np.abs(x_l1).sum(),
                     np.linalg.norm(x_ham - x_bp) / np.linalg.norm(x_bp), steps))
    rows = np.array(rows)
    print(f"{'alpha':>7s} {'|x_HAM|_1':>10s} {'|x_Bregman|_1':>14s} {'rel. gap':>9s}   (mean ± std over {len(SEEDS)} seeds)")
    for alpha in ALPHAS:
      r = rows[rows[:, 1] == alpha]
      print(f"{alpha:7g} {r[:, 2].mean():6.3f}±{r[:, 2].std():.3f} {r[:, 3].mean():9.3f}±{r[:, 3].std():.3f} "
            f"{r[:, 6].mean():9.1e}")
    print(f"GD limit (min L2): |x|_1 = {rows[:, 4].mean():.3f};  basis pursuit (min L1): {rows[:, 5].mean():.3f}")
    """
  ),
  _code(
    """
    fig, ax = plt.subplots(figsize=(6, 3.2))
    means = [rows[rows[:, 1] == a][:, 2].mean() for a in ALPHAS]
    ax.semilogx(ALPHAS, means, "o-", label="HAM (end point)")
    ax.semilogx(ALPHAS, [rows[rows[:, 1] == a][:, 3].mean() for a in ALPHAS], "k+", ms=12, label="Bregman projection")
    ax.axhline(rows[:, 4].mean(), color="C2", ls="--", label="GD limit (min L2)")
    ax.axhline(rows[:, 5].mean(), color="C3", ls="--", label="basis pursuit (min L1)")
    ax.set(xlabel="alpha", ylabel="||x||_1", title="implicit bias: L2 -> L1 as alpha grows")
    ax.legend()
    plt.show()
    """
  ),
  _md(
    """
    **What it shows.** HAM's end point sits on the Bregman projection for every $\\alpha$ (the relative gap is
    the discretisation error, first order in $\\eta$), and its L1 norm moves from gradient descent's
    minimum-L2 solution towards basis pursuit as $\\alpha$ grows.

    ## The inverse metric

    Gradient descent has inverse metric 1; HAM $1+\\alpha|x|\\ge 1$; the $m\\odot w$ overparameterisation
    $\\sqrt{4x^2+\\gamma^2}$, which vanishes near 0 for small $\\gamma$: small weights get stuck (and cannot
    flip sign) there, the problem HAM's geometry avoids.
    """
  ),
  _code(
    """
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
    """
  ),
]

# --------------------------------------------------------------------------------------------------------------
# 03: sparse training (uses ham_optax.sparsity and ham_optax.metrics)
# --------------------------------------------------------------------------------------------------------------

NB03 = [
  _title(
    "03_sparse_training",
    "Sparse training with and without HAM",
    """
    HAM biases towards sparse solutions but does not prune by itself; the paper pairs it with sparsifiers. Here:
    SGD with momentum vs HAM under (a) random pruning at initialisation (fixed ERK masks, 90 % sparsity) and
    (b) AC/DC (dense/sparse phases by magnitude, ending 90 % sparse), on mnist1d with an MLP. The sparsifiers
    (`ham_optax.sparsity`) wrap the optimizer: `random_pruning(ham(...), 0.9)`; `ham_optax.metrics` gives
    sparsity and sign flips.
    """,
  ),
  _install(),
  _md(_SMALL_NOTE),
  _code(
    """
    import os

    SMALL = os.environ.get("HAM_OPTAX_NOTEBOOK_SMALL") == "1"  # CI's quick setting; full size by default
    NUM_SAMPLES = 1000 if SMALL else 5000
    EPOCHS = 3 if SMALL else 30
    SEEDS = (0,) if SMALL else (0, 1)
    SPARSITY, LR, ALPHA, BATCH = 0.9, 0.05, 20.0, 100
    print(f"SMALL={SMALL}")
    """
  ),
  _code(
    """
    import jax
    import jax.numpy as jnp
    import matplotlib.pyplot as plt
    import mnist1d.data
    import numpy as np
    import optax
    from flax import nnx

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


    class MLP(nnx.Module):
      def __init__(self, din, hidden, dout, *, rngs):
        self.l1 = nnx.Linear(din, hidden, rngs=rngs)
        self.l2 = nnx.Linear(hidden, hidden, rngs=rngs)
        self.l3 = nnx.Linear(hidden, dout, rngs=rngs)

      def __call__(self, x):
        return self.l3(nnx.relu(self.l2(nnx.relu(self.l1(x)))))
    """
  ),
  _code(
    """
    def make_tx(method, use_ham, steps):
      inner = ham_optax.ham_sgd(LR, momentum=0.9, alpha=ALPHA) if use_ham else optax.sgd(LR, momentum=0.9)
      if method == "random pruning":
        return sparsity.random_pruning(inner, SPARSITY, distribution="erk")
      return sparsity.acdc(inner, SPARSITY, total_steps=steps)


    def train(method, use_ham, seed):
      steps_per_epoch = len(x_train) // BATCH
      tx = make_tx(method, use_ham, EPOCHS * steps_per_epoch)
      graphdef, params = nnx.split(MLP(40, 256, 10, rngs=nnx.Rngs(seed)))
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
        print(f"{name:24s} sparsity {results[name][0]['sparsity'][-1]:.3f}  validation {val.mean():.3f} ± {val.std():.3f}"
              f"  test {test.mean():.3f} ± {test.std():.3f}")
    """
  ),
  _code(
    """
    fig, axes = plt.subplots(1, 3)
    for name, hs in results.items():
      style = "-" if "HAM" in name else "--"
      for ax, key in zip(axes, ("sparsity", "sign_flips", "val_acc")):
        ax.plot(np.arange(1, EPOCHS + 1), np.mean([h[key] for h in hs], 0), style, label=name)
    axes[0].set(xlabel="epoch", title="sparsity of the kernels")
    axes[1].set(xlabel="epoch", yscale="log", title="sign flips per epoch (fraction)")
    axes[2].set(xlabel="epoch", title="validation accuracy")
    axes[2].legend(fontsize=8)
    plt.show()
    """
  ),
  _md(
    """
    **Reading it.** Random pruning keeps a fixed 90 % of the kernel entries at exactly 0 from the start; AC/DC
    alternates between dense and 90 %-sparse phases and ends sparse. The learning rate and $\\alpha = 20$ are
    fixed, not tuned per method, and the seeds are few: treat differences of a point or two as noise.
    """
  ),
]

# --------------------------------------------------------------------------------------------------------------
# 07: steepest mirror flows and graphons
# --------------------------------------------------------------------------------------------------------------

NB07 = [
  _title(
    "07_mirror_flows_and_graphons",
    "Steepest mirror flows and graphons of pruning masks",
    """
    Two questions about how an optimizer's geometry shapes sparse training (full studies and their reading:
    `docs/guides/mirror_flows_and_graphons.md`, scripts `benchmarks/mirror_flows.py` and `benchmarks/graphon.py`):

    1. *Saddle escape.* A deep diagonal network `x = u^L - v^L` (`ham_optax.overparam.deep_diagonal`) started at
       a small `u = v` sits at a saddle. How many steps do gradient descent, sign descent and Adam need to leave
       it (`ham_optax.overparam.escape_step`), as a function of the learning rate and the depth?
    2. *Graphons.* `ham_optax.metrics.empirical_graphon` turns a layer mask into a degree-sorted block-density
       image. Random masks converge to a flat graphon as the width grows; RigL's masks keep a structure.
    """,
  ),
  _install(extra="matplotlib"),
  _md(_SMALL_NOTE),
  _code(
    """
    import os

    SMALL = os.environ.get("HAM_OPTAX_NOTEBOOK_SMALL") == "1"  # CI's quick setting; full size by default
    STEPS = 300 if SMALL else 1500  # training steps per run of the escape study
    LRS = [1e-3, 1e-2, 1e-1] if SMALL else [3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1]
    DEPTHS = (2, 3) if SMALL else (2, 3, 4)
    WIDTHS = (64, 128) if SMALL else (64, 256, 1024)  # graphon study
    print(f"SMALL={SMALL}")
    """
  ),
  _code(
    """
    import jax
    import jax.numpy as jnp
    import matplotlib.pyplot as plt
    import numpy as np
    import optax

    from ham_optax import sparsity
    from ham_optax.metrics import empirical_graphon, graphon_distance
    from ham_optax.overparam import deep_diagonal, escape_step

    rng = np.random.default_rng(0)
    A = jnp.asarray(rng.standard_normal((50, 100)), jnp.float32)
    x_star = np.zeros(100, np.float32)
    x_star[rng.choice(100, 5, replace=False)] = rng.choice([-1.0, 1.0], 5)
    y = A @ jnp.asarray(x_star)


    def losses_for(make_inner, depth):
      \"\"\"Loss curves (one per learning rate, vmapped) of x = u^L - v^L from u = v = 0.01.\"\"\"

      def run(lr):
        tx = deep_diagonal(make_inner(lr), depth=depth, init_scale=1e-2)
        loss_fn = lambda x: 0.5 * jnp.mean((A @ x - y) ** 2)

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
    """
  ),
  _code(
    """
    fig, axes = plt.subplots(1, len(DEPTHS), figsize=(4 * len(DEPTHS), 3.2), sharey=True)
    for ax, depth in zip(axes, DEPTHS):
      for name in optimizers:
        e = escape[name, depth].astype(float)
        e[e < 0] = np.nan
        ax.loglog(LRS, e, "o-", label=name)
      ax.set_title(f"L = {depth}")
      ax.set_xlabel("learning rate")
    axes[0].set_ylabel("escape step")
    axes[0].legend()
    plt.tight_layout()
    plt.show()
    """
  ),
  _md(
    """
    Sign descent and Adam leave the saddle at small learning rates at every depth; gradient descent's step on a
    factor is proportional to `u^(L-1)`, tiny at a small initialisation, so it needs much larger learning rates
    as the depth grows (in the benchmark's 2000-step run, no stable learning rate lets it escape at `L = 4`).

    **Graphons.** A random mask of density 0.1 (`random_pruning`) and a RigL mask after a short training of a
    `16 -> n -> n -> 1` ReLU network in which only the square `n x n` layer is pruned.
    """
  ),
  _code(
    """
    kx, kt = jax.random.split(jax.random.PRNGKey(0))
    X = jax.random.normal(kx, (256, 16))
    Y = jnp.tanh(X @ jax.random.normal(kt, (16, 32)) / 4.0).sum(1)
    Y = (Y - Y.mean()) / Y.std()


    def trained_mask(method, n, steps=60):
      ks = jax.random.split(jax.random.PRNGKey(1), 3)
      p = {"w0": jax.random.normal(ks[0], (16, n)) / 4.0, "w1": jax.random.normal(ks[1], (n, n)) / np.sqrt(n),
           "w2": jax.random.normal(ks[2], (n, 1)) / np.sqrt(n)}
      prunable = {"w0": False, "w1": True, "w2": False}
      inner = optax.sgd(0.05 * min(1.0, 256 / n), momentum=0.9)
      if method == "random":
        tx = sparsity.random_pruning(inner, 0.9, prunable=prunable)
      else:
        tx = sparsity.rigl(inner, 0.9, update_every=5, end_step=45, prunable=prunable)
      s = tx.init(p)
      p = sparsity.apply_masks(p, s)
      f = lambda p: 0.5 * jnp.mean(((jax.nn.relu(jax.nn.relu(X @ p["w0"]) @ p["w1"]) @ p["w2"])[:, 0] - Y) ** 2)

      @jax.jit
      def run(p, s):
        def step(c, _):
          g = jax.grad(f)(c[0])
          u, s2 = tx.update(g, c[1], c[0])
          return (optax.apply_updates(c[0], u), s2), None

        return jax.lax.scan(step, (p, s), None, length=steps)[0]

      return sparsity.get_masks(run(p, s)[1])["w1"]


    graphons = {(m, n): np.asarray(empirical_graphon(trained_mask(m, n), 16)) for m in ("random", "rigl") for n in WIDTHS}
    fig, axes = plt.subplots(2, len(WIDTHS), figsize=(2.2 * len(WIDTHS), 4.4))
    for i, m in enumerate(("random", "rigl")):
      for j, n in enumerate(WIDTHS):
        axes[i, j].imshow(graphons[m, n], vmin=0, vmax=0.5)
        axes[i, j].set_title(f"{m}, n = {n}", fontsize=8)
        axes[i, j].axis("off")
    plt.tight_layout()
    plt.show()
    for m in ("random", "rigl"):
      d = [float(graphon_distance(graphons[m, a], graphons[m, b])) for a, b in zip(WIDTHS, WIDTHS[1:])]
      print(m, "distance between successive widths:", np.round(d, 4))
    """
  ),
  _md(
    """
    Both distances shrink with the width; the random masks' images approach the constant 0.1, RigL's keep a few
    dense output neurons (its grow step picks the largest dense gradients). One seed and a short training: see
    the guide for the full study and its limits.
    """
  ),
]

NOTEBOOKS: dict[str, list[nbformat.NotebookNode]] = {
  "01_quickstart": NB01,
  "02_implicit_bias": NB02,
  "03_sparse_training": NB03,
  "04_multi_device": NB04,
  "07_mirror_flows_and_graphons": NB07,
}


def build(name: str) -> nbformat.NotebookNode:
  """The notebook `name` with fresh cells and no outputs."""
  nb = nbformat.v4.new_notebook()
  nb.cells = [nbformat.from_dict(dict(c)) for c in NOTEBOOKS[name]]
  for i, cell in enumerate(nb.cells):
    cell["id"] = f"{name[:2]}-{i:02d}"
  nb.metadata = {
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
    "colab": {"provenance": []},
  }
  return nb


def execute(nb: nbformat.NotebookNode, timeout: int = 1200) -> nbformat.NotebookNode:
  """Runs `nb` top to bottom in a fresh `python3` kernel (cwd = this folder); raises on the first error."""
  import nbclient

  env_path = os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
  os.environ["PYTHONPATH"] = env_path  # the kernel imports this checkout's ham_optax
  client = nbclient.NotebookClient(
    nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}
  )
  client.execute()
  return nb


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--execute", action="store_true", help="run the notebooks and embed their outputs")
  parser.add_argument("only", nargs="*", help="name prefixes to build (default: all)")
  args = parser.parse_args(argv)
  for name in NOTEBOOKS:
    if args.only and not any(name.startswith(p) for p in args.only):
      continue
    nb = build(name)
    if args.execute:
      t0 = time.perf_counter()
      execute(nb)
      print(f"{name}: executed in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    path = HERE / f"{name}.ipynb"
    nbformat.write(nb, path)
    print(f"wrote {path.relative_to(HERE.parent)} ({path.stat().st_size / 1e3:.0f} kB)", file=sys.stderr)


if __name__ == "__main__":
  main()
