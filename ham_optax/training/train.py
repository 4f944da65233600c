"""Training loop for the HAM examples (Flax NNX + optax), modelled on Flax's ``examples/mnist``.

``train_and_evaluate(config)`` builds the data, the model and the optimizer
``sparsifier(ham(inner))`` (each part optional), trains with a cosine learning-rate schedule and
returns a history of loss / accuracy / weight sparsity / sign flips per epoch. One epoch is one
XLA call: the NNX train step is run under ``jax.lax.scan`` over the epoch's minibatches on the
``nnx.split`` state (per-step ``nnx.jit`` dispatch dominated the run time of these small models).
Checkpoints (orbax) are written at every epoch end when ``config.checkpoint_dir`` is set, and a
run resumes from the latest one: data order depends only on ``(seed, epoch)``, so a resumed run
continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import ham_optax
from ham_optax.training import data as data_lib
from ham_optax.training import models
from ham_optax.training.configs.default import Config

__all__ = ["evaluate", "make_optimizer", "suggested_alpha", "train_and_evaluate", "train_step"]


@jax.jit
def _weight_stats(params: Any, reference: Any) -> tuple[jax.Array, jax.Array]:
  """Sparsity and sign-flip fraction versus ``reference`` of the weight tensors (ndim >= 2: the
  leaves HAM and the sparsifiers act on), via :mod:`ham_optax.metrics`."""
  from ham_optax import metrics

  return metrics.sparsity(params)["global"], metrics.sign_flips(params, reference)["fraction"]


@nnx.jit
def _minibatch_grads(model: nnx.Module, x: jax.Array, y: jax.Array):
  """Raw gradients of the weights on one minibatch, from a clone (BatchNorm statistics stay untouched)."""
  model = nnx.clone(model)
  grads = nnx.grad(lambda m: _loss_fn(m, x, y)[0])(model)
  return nnx.as_pure(nnx.state(model, nnx.Param)), nnx.as_pure(grads)


def _ham_diagnostics(model: nnx.Module, x: np.ndarray, y: np.ndarray, lr: float, config: Config) -> dict:
  """Global HAM stability diagnostics (:func:`ham_optax.metrics.ham_diagnostics`) on one minibatch."""
  from ham_optax import metrics

  params, grads = _minibatch_grads(model, jnp.asarray(x), jnp.asarray(y))
  d = metrics.ham_diagnostics(params, grads, learning_rate=lr, alpha=config.alpha, beta=config.beta)
  return {f"ham_{k}": float(v) for k, v in d["global"].items()}


def _learning_rate(config: Config, total_steps: int, steps_per_epoch: int) -> optax.ScalarOrSchedule:
  if config.schedule == "constant":
    return config.learning_rate
  warmup = config.warmup_epochs * steps_per_epoch
  if warmup:
    return optax.warmup_cosine_decay_schedule(0.0, config.learning_rate, warmup, total_steps)
  return optax.cosine_decay_schedule(config.learning_rate, total_steps)


def make_optimizer(config: Config, total_steps: int, steps_per_epoch: int) -> optax.GradientTransformation:
  """``sparsifier(ham(inner))`` (or ``sparsifier(sign_in(inner))``) as configured; ``inner`` is SGD +
  momentum with weight decay, or AdamW.

  HAM (Jacobs et al., ICLR 2026, arXiv:2506.02630) reuses the inner optimizer's learning-rate
  schedule. Sparsifier schedules are expressed in steps: gradual magnitude pruning runs from 10 %
  to 75 % of training with one pruning step per epoch; RigL updates its masks once per epoch until
  75 % of training; AC/DC spans ``total_steps``.
  """
  lr = _learning_rate(config, total_steps, steps_per_epoch)
  if config.optimizer == "sgd":
    inner = optax.chain(
      optax.add_decayed_weights(config.weight_decay),
      optax.sgd(lr, momentum=config.momentum or None),
    )
  else:
    inner = optax.adamw(lr, weight_decay=config.weight_decay)
  if config.sign_in:
    # Sign-In (Gadhikar, Jacobs et al., NeurIPS 2025): x = m * w, balance reset every few epochs.
    from ham_optax.overparam import sign_in

    tx = sign_in(inner, rescale_every=config.sign_in_every * steps_per_epoch, balance=config.sign_in_balance)
  else:
    tx = ham_optax.ham(inner, lr, config.alpha, config.beta) if config.ham else inner
  if config.sparsifier == "none":
    return tx
  from ham_optax import sparsity as sp

  s = config.sparsity
  if config.sparsifier == "random":
    return sp.random_pruning(tx, s, distribution=config.distribution, seed=config.seed)
  if config.sparsifier == "magnitude":
    begin, end = int(0.1 * total_steps), max(int(0.75 * total_steps), int(0.1 * total_steps) + 1)
    return sp.magnitude_pruning(tx, s, begin_step=begin, end_step=end, frequency=steps_per_epoch)
  if config.sparsifier == "acdc":
    return sp.acdc(tx, s, total_steps=total_steps)
  if config.sparsifier == "rigl":
    return sp.rigl(
      tx,
      s,
      update_every=steps_per_epoch,
      end_step=max(1, int(0.75 * total_steps)),
      distribution=config.distribution,
      seed=config.seed,
    )
  raise ValueError(f"unknown sparsifier {config.sparsifier!r}")


def suggested_alpha(
  config: Config, dataset: data_lib.Dataset, target_ratio: float = ham_optax.DEFAULT_TARGET_RATIO
) -> float:
  """:func:`ham_optax.suggest_alpha` for ``config``'s model (dense, at ``config.seed``), inner optimizer and
  learning rate, on the first 20 minibatches of its epoch-0 order: 20 gradient evaluations."""
  x_train, y_train = dataset.x_train, dataset.y_train
  if config.num_train is not None:
    x_train, y_train = x_train[: config.num_train], y_train[: config.num_train]
  batch_size = min(config.batch_size, len(x_train))
  steps_per_epoch = len(x_train) // batch_size
  model = models.create_model(
    config.model, dataset.input_shape, dataset.num_classes, seed=config.seed, width=config.width
  )
  model.train()
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def loss_fn(p, batch):
    return _loss_fn(nnx.merge(graphdef, p, rest, copy=True), *batch)[0]

  idx = np.resize(np.random.default_rng([config.seed, 0]).permutation(len(x_train)), 20 * batch_size)
  batches = [(jnp.asarray(x_train[i]), jnp.asarray(y_train[i])) for i in idx.reshape(20, batch_size)]
  inner = make_optimizer(
    config.replace(ham=False, sign_in=False, sparsifier="none"),
    steps_per_epoch * config.epochs,
    steps_per_epoch,
  )
  lr = _learning_rate(config, steps_per_epoch * config.epochs, steps_per_epoch)
  return ham_optax.suggest_alpha(loss_fn, params, batches, inner, lr, target_ratio=target_ratio)


def _loss_fn(model: nnx.Module, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
  logits = model(x)
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits


def train_step(model: nnx.Module, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array):
  """One optimizer step on a minibatch; returns ``(loss, accuracy)``. Mutates model/optimizer."""
  (loss, logits), grads = nnx.value_and_grad(_loss_fn, has_aux=True)(model, x, y)
  optimizer.update(model, grads)
  return loss, jnp.mean(jnp.argmax(logits, -1) == y)


def _make_epoch_fn(graphdef):
  """Jitted ``(state, xs, ys) -> (state, (losses, accs))`` scanning ``train_step`` over an epoch."""

  @jax.jit
  def run_epoch(state, xs, ys):
    def body(state, batch):
      model, optimizer = nnx.merge(graphdef, state)
      loss, acc = train_step(model, optimizer, *batch)
      return nnx.state((model, optimizer)), (loss, acc)

    return jax.lax.scan(body, state, (xs, ys))

  return run_epoch


@nnx.jit
def _eval_batch(model: nnx.Module, x: jax.Array, y: jax.Array):
  loss, logits = _loss_fn(model, x, y)
  return loss * x.shape[0], jnp.sum(jnp.argmax(logits, -1) == y)


def evaluate(model: nnx.Module, x: np.ndarray, y: np.ndarray, batch_size: int = 1000) -> dict[str, float]:
  """Mean loss and accuracy of ``model`` (in eval mode) on ``(x, y)``."""
  model.eval()
  total_loss, correct = 0.0, 0
  for xb, yb in data_lib.batches(x, y, batch_size):
    loss, hits = _eval_batch(model, jnp.asarray(xb), jnp.asarray(yb))
    total_loss += float(loss)
    correct += int(hits)
  model.train()
  return {"loss": total_loss / len(x), "acc": correct / len(x)}


def _checkpoint_manager(directory: str):
  import orbax.checkpoint as ocp

  return ocp.CheckpointManager(
    directory,
    options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True),
  )


def _save(manager, epoch: int, state, reference, history) -> None:
  import orbax.checkpoint as ocp

  manager.save(
    epoch,
    args=ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      reference=ocp.args.StandardSave(reference),
      history=ocp.args.JsonSave(history),
    ),
  )
  manager.wait_until_finished()


def _restore(manager, epoch: int, state, reference):
  import orbax.checkpoint as ocp

  restored = manager.restore(
    epoch,
    args=ocp.args.Composite(
      state=ocp.args.StandardRestore(state),
      reference=ocp.args.StandardRestore(reference),
      history=ocp.args.JsonRestore(),
    ),
  )
  return restored["state"], restored["reference"], restored["history"]


def train_and_evaluate(
  config: Config, dataset: data_lib.Dataset | None = None, *, return_model: bool = False
) -> dict[str, Any]:
  """Trains one model as configured and returns its results.

  Args:
    config: the run's :class:`~ham_optax.training.configs.default.Config`.
    dataset: an already loaded dataset (saves reloading across runs); default: load
      ``config.dataset``.
    return_model: also return the trained ``model`` (not JSON-serialisable) under ``"model"``.

  Returns:
    A JSON-serialisable dict: ``config``, ``method``, ``history`` (one dict per epoch with
    ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc``, ``test_acc``, ``sparsity`` and
    ``sign_flips`` of the weight tensors versus their values at initialisation, ``time_s``; with HAM
    also ``ham_exponent_rms``, ``ham_exponent_max``, ``ham_clip_fraction``, ``ham_inverse_metric_mean``
    and ``ham_inverse_metric_max`` from :func:`ham_optax.metrics.ham_diagnostics` on the epoch's last
    minibatch),
    and the final ``val_acc``, ``test_acc``, ``sparsity``, ``sign_flips``, ``train_time_s``.
    The model is tuned on ``val_acc``; ``test_acc`` is for reporting only.
  """
  config.validate()
  if dataset is None:
    dataset = data_lib.load_dataset(config.dataset)
  x_train, y_train = dataset.x_train, dataset.y_train
  if config.num_train is not None:
    x_train, y_train = x_train[: config.num_train], y_train[: config.num_train]
  batch_size = min(config.batch_size, len(x_train))
  steps_per_epoch = len(x_train) // batch_size
  if config.max_steps is not None:
    steps_per_epoch = min(steps_per_epoch, config.max_steps)
  total_steps = steps_per_epoch * config.epochs

  model = models.create_model(
    config.model, dataset.input_shape, dataset.num_classes, seed=config.seed, width=config.width
  )
  model.train()
  tx = make_optimizer(config, total_steps, steps_per_epoch)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  if config.sparsifier != "none":
    # Pruning at init: make the model sparse before the first step.
    from ham_optax import sparsity as sp

    params = nnx.as_pure(nnx.state(model, nnx.Param))
    nnx.update(model, sp.apply_masks(params, nnx.as_pure(optimizer.opt_state)))
  reference = jax.tree.map(jnp.copy, nnx.as_pure(nnx.state(model, nnx.Param)))

  history: list[dict[str, Any]] = []
  start_epoch = 0
  manager = None
  if config.checkpoint_dir is not None:
    manager = _checkpoint_manager(config.checkpoint_dir)
    latest = manager.latest_step()
    if latest is not None:
      state, reference, history = _restore(manager, latest, nnx.state((model, optimizer)), reference)
      nnx.update((model, optimizer), state)
      history = list(history)
      start_epoch = int(latest)

  graphdef, state = nnx.split((model, optimizer))
  run_epoch = _make_epoch_fn(graphdef)
  last_epoch = config.epochs
  if config.halt_after_epochs is not None:
    last_epoch = min(last_epoch, config.halt_after_epochs)

  bar = None
  if config.progress:
    from tqdm.auto import tqdm

    bar = tqdm(
      total=config.epochs, initial=start_epoch, desc=f"{config.method} seed {config.seed}", leave=False
    )
  t0 = time.perf_counter()
  for epoch in range(start_epoch, last_epoch):
    rng = np.random.default_rng([config.seed, epoch])
    perm = rng.permutation(len(x_train))[: steps_per_epoch * batch_size]
    xs = x_train[perm].reshape(steps_per_epoch, batch_size, *x_train.shape[1:])
    ys = y_train[perm].reshape(steps_per_epoch, batch_size)
    state, (losses, accs) = run_epoch(state, jnp.asarray(xs), jnp.asarray(ys))
    nnx.update((model, optimizer), state)
    params = nnx.as_pure(nnx.state(model, nnx.Param))
    weight_sparsity, flips = _weight_stats(params, reference)
    val = evaluate(model, dataset.x_val, dataset.y_val)
    test = evaluate(model, dataset.x_test, dataset.y_test)
    record = {
      "epoch": epoch + 1,
      "step": (epoch + 1) * steps_per_epoch,
      "train_loss": float(jnp.mean(losses)),
      "train_acc": float(jnp.mean(accs)),
      "val_loss": val["loss"],
      "val_acc": val["acc"],
      "test_loss": test["loss"],
      "test_acc": test["acc"],
      "sparsity": float(weight_sparsity),
      "sign_flips": float(flips),
      "time_s": time.perf_counter() - t0,
    }
    if config.ham:  # the mirror step's stability on the epoch's last minibatch, at its learning rate
      lr_now = _learning_rate(config, total_steps, steps_per_epoch)
      lr_now = float(lr_now(record["step"] - 1)) if callable(lr_now) else lr_now
      record.update(_ham_diagnostics(model, xs[-1], ys[-1], lr_now, config))
    history.append(record)
    if not math.isfinite(record["train_loss"]):
      if bar is not None:
        bar.close()
      break
    if bar is not None:
      bar.update(1)
      bar.set_postfix(loss=f"{record['train_loss']:.3f}", val=f"{record['val_acc']:.3f}")
    if manager is not None:
      _save(manager, epoch + 1, nnx.state((model, optimizer)), reference, history)
      graphdef, state = nnx.split((model, optimizer))
  if bar is not None:
    bar.close()
  if manager is not None:
    manager.close()

  final = history[-1] if history else {}
  results = {
    "config": dataclasses.asdict(config),
    "method": config.method,
    "history": history,
    "completed": bool(history) and history[-1]["epoch"] == config.epochs,
    "val_acc": final.get("val_acc", float("nan")),
    "test_acc": final.get("test_acc", float("nan")),
    "sparsity": final.get("sparsity", float("nan")),
    "sign_flips": final.get("sign_flips", float("nan")),
    "train_time_s": final.get("time_s", 0.0),
  }
  if return_model:
    results["model"] = model
  return results
