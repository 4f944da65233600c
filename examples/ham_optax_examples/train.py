"""Training loop of the examples (Flax NNX + optax), modelled on Flax's ``examples/mnist``: one XLA call per
epoch, orbax checkpoints, data order depending only on ``(seed, epoch)`` (a resumed run continues exactly as an
uninterrupted one). A run whose training or validation loss becomes non-finite stops there, marked diverged."""

from __future__ import annotations

import dataclasses
import math
import shutil
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx
from tqdm.auto import tqdm

import ham_optax
from ham_optax import metrics
from ham_optax import sparsity as sp
from ham_optax.overparam import sign_in
from ham_optax_examples import data as data_lib
from ham_optax_examples import models
from ham_optax_examples.configs.default import Config, resolve
from ham_optax_examples.distributed import DataLayout


def _learning_rate(config: Config, total_steps: int, steps_per_epoch: int) -> optax.ScalarOrSchedule:
  """The schedule: a linear warm-up from 0 over ``warmup_epochs``, then the peak rate constant or cosine-decayed."""
  warmup = config.warmup_epochs * steps_per_epoch
  if config.schedule == "constant":
    return optax.linear_schedule(0.0, config.learning_rate, warmup) if warmup else config.learning_rate
  if warmup:
    return optax.warmup_cosine_decay_schedule(0.0, config.learning_rate, warmup, total_steps)
  return optax.cosine_decay_schedule(config.learning_rate, total_steps)


def make_optimizer(config: Config, total_steps: int, steps_per_epoch: int) -> optax.GradientTransformation:
  """``sparsifier(ham(inner))`` or ``sparsifier(sign_in(inner))`` as configured. Magnitude pruning runs from 10 %
  to 75 % of training, RigL updates its masks until 75 %, both once per epoch; AC/DC spans ``total_steps``."""
  lr = _learning_rate(config, total_steps, steps_per_epoch)
  if config.optimizer == "sgd":
    sgd = optax.sgd(lr, momentum=config.momentum or None)
    inner = optax.chain(optax.add_decayed_weights(config.weight_decay), sgd)
  else:
    inner = optax.adamw(lr, weight_decay=config.weight_decay)
  if config.sign_in:
    tx = sign_in(inner, rescale_every=config.sign_in_every * steps_per_epoch, balance=config.sign_in_balance)
  else:
    tx = ham_optax.ham(inner, lr, config.alpha, config.beta) if config.ham else inner
  s, every, kw = config.sparsity, steps_per_epoch, {"distribution": config.distribution, "seed": config.seed}
  begin, end = int(0.1 * total_steps), max(int(0.75 * total_steps), int(0.1 * total_steps) + 1)
  sparsifiers = {
    "none": lambda: tx,
    "random": lambda: sp.random_pruning(tx, s, **kw),
    "magnitude": lambda: sp.magnitude_pruning(tx, s, begin_step=begin, end_step=end, frequency=every),
    "acdc": lambda: sp.acdc(tx, s, total_steps=total_steps),
    "rigl": lambda: sp.rigl(tx, s, update_every=every, end_step=end, **kw),
  }
  return sparsifiers[config.sparsifier]()


def _resolve(config: Config) -> Config:
  """``config`` with its defaults filled in, and one data shard per process unless set."""
  config, _ = resolve(config)
  return config.replace(data_shards=config.data_shards or jax.process_count())


def _build_model(config: Config, dataset: data_lib.Dataset) -> nnx.Module:
  """``config``'s model for ``dataset``, in training mode; raises ``ValueError`` when it does not fit."""
  tokens = np.issubdtype(dataset.x_train.dtype, np.integer) and dataset.graph is None
  if (config.model == "transformer") != tokens:
    raise ValueError(
      "the transformer reads token sequences (datasets modular, modular_sub) and every other model features or "
      "graph nodes"
    )
  kwargs = {"seed": config.seed, "width": config.width, "graph": dataset.graph}
  model = models.create_model(config.model, dataset.input_shape, dataset.num_classes, **kwargs)
  model.train()
  return model


def _training_subset(config: Config, dataset: data_lib.Dataset) -> data_lib.Dataset:
  """``dataset`` with only the first ``config.num_train`` training examples (all when ``None``)."""
  n = config.num_train
  return dataclasses.replace(dataset, x_train=dataset.x_train[:n], y_train=dataset.y_train[:n])


def suggested_alpha(
  config: Config, dataset: data_lib.Dataset, target_ratio: float = ham_optax.DEFAULT_TARGET_RATIO
) -> float:
  """:func:`ham_optax.suggest_alpha` for ``config``'s (resolved) dense model, inner optimizer and learning rate on
  the first 20 minibatches of its epoch-0 order (this process, default device). A schedule shorter than 40 steps
  is stretched to 40, so that the 20-step window sees a non-zero learning rate."""
  config = _resolve(config)
  train = _training_subset(config, dataset)
  batch_size = min(config.batch_size, len(train.x_train))
  steps_per_epoch = len(train.x_train) // batch_size
  graphdef, params, rest = nnx.split(_build_model(config, dataset), nnx.Param, ...)

  def loss_fn(p, batch):
    return _loss_fn(nnx.merge(graphdef, p, rest, copy=True), *batch)[0]

  idx = np.resize(np.random.default_rng([config.seed, 0]).permutation(len(train.x_train)), 20 * batch_size)
  batches = [(jnp.asarray(train.x_train[i]), jnp.asarray(train.y_train[i])) for i in idx.reshape(20, -1)]
  total = max(steps_per_epoch * config.epochs, 40)
  inner = make_optimizer(config.replace(ham=False, sign_in=False, sparsifier="none"), total, steps_per_epoch)
  lr = _learning_rate(config, total, steps_per_epoch)
  return ham_optax.suggest_alpha(loss_fn, params, batches, inner, lr, target_ratio=target_ratio)


def _loss_fn(model: nnx.Module, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
  logits = model(x)
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits


@nnx.jit
def _eval_batch(model: nnx.Module, x: jax.Array, y: jax.Array, weight: jax.Array):
  """Sums of loss, hits and weight over the rows of weight 1 (padding rows have weight 0)."""
  logits = model(x)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
  real, hits = weight > 0, jnp.argmax(logits, -1) == y
  return jnp.sum(jnp.where(real, losses, 0.0)), jnp.sum(jnp.where(real, hits, 0)), jnp.sum(real)


def _stack_blocks(blocks: list[np.ndarray], length: int, rows: int) -> np.ndarray:
  """``(steps, len(blocks) * rows, ...)``: step ``j`` holds rows ``[j rows, (j + 1) rows)`` of every block (each
  zero-padded to ``length``), block after block."""
  padded = np.stack([np.concatenate([b, np.zeros((length - len(b), *b.shape[1:]), b.dtype)]) for b in blocks])
  stacked = padded.reshape(len(blocks), length // rows, rows, *padded.shape[2:]).swapaxes(0, 1)
  return stacked.reshape(length // rows, len(blocks) * rows, *padded.shape[2:])


def _evaluate_blocks(model: nnx.Module, blocks: list, block_rows: int, layout: DataLayout, batch_size: int):
  """Mean loss and accuracy over every process's ``blocks`` (its ``(x, y)`` shards of a split, at most
  ``block_rows`` long each), ``ceil(batch_size / shards)`` rows of every shard per step, padded with weight 0."""
  rows = -(-batch_size // layout.shards)
  while (rows * layout.shards) % layout.devices:
    rows += 1
  length = -(-block_rows // rows) * rows
  xs, ys = zip(*blocks, strict=True)
  ws = [np.ones(len(y), np.float32) for y in ys]
  stacked = [_stack_blocks(list(b), length, rows) for b in (xs, ys, ws)]
  model.eval()
  total_loss, correct, count = 0.0, 0, 0
  for x, y, w in zip(*stacked, strict=True):
    loss, hits, n = _eval_batch(model, layout.put(x), layout.put(y), layout.put(w))
    total_loss, correct, count = total_loss + float(loss), correct + int(hits), count + int(n)
  model.train()
  return {"loss": total_loss / count, "acc": correct / count}


def evaluate(model: nnx.Module, x: np.ndarray, y: np.ndarray, batch_size: int = 1000) -> dict[str, float]:
  """Mean loss and accuracy of ``model`` (in eval mode) on ``(x, y)``, on the default device."""
  return _evaluate_blocks(model, [(x, y)], len(x), DataLayout(1, range(1), None), batch_size)


# Config fields that do not change what a run computes: a checkpoint written with other values still matches.
_RUN_INDEPENDENT_FIELDS = ("checkpoint_dir", "halt_after_epochs", "progress")
_RESTART_HINT = "--restart (train.discard_checkpoint) starts over, or choose another --out"


class CheckpointError(ValueError):
  """A checkpoint directory holds a run with a different config, or a damaged checkpoint."""


def _run_fields(config: Config) -> dict[str, Any]:
  return {k: v for k, v in dataclasses.asdict(config).items() if k not in _RUN_INDEPENDENT_FIELDS}


def _checkpoint_manager(directory: str) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True)
  return ocp.CheckpointManager(Path(directory).resolve(), options=options)


def _host_restore(path: Path) -> Any:
  """The arrays saved at ``path`` as NumPy arrays on this host."""
  tree = ocp.PyTreeCheckpointHandler().metadata(path).tree
  restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
  return ocp.PyTreeCheckpointer().restore(path, args=ocp.args.PyTreeRestore(restore_args=restore_args))


def _restore(manager: ocp.CheckpointManager, step: int, state: Any = None, reference: Any = None) -> dict:
  """Every item of checkpoint ``step``, into the ``state`` / ``reference`` templates (without them: as NumPy
  arrays on this host); raises :class:`CheckpointError` when any item is damaged or missing."""
  items = {"history": ocp.args.JsonRestore(), "config": ocp.args.JsonRestore()}
  if state is not None:
    items |= {"state": ocp.args.StandardRestore(state), "reference": ocp.args.StandardRestore(reference)}
  try:
    restored = dict(manager.restore(step, args=ocp.args.Composite(**items)))
    if state is None:
      restored |= {k: _host_restore(Path(manager.directory) / str(step) / k) for k in ("state", "reference")}
    if not isinstance(restored["history"], list) or not isinstance(restored["config"], dict):
      raise TypeError("history or config is not what a run writes")
  except Exception as e:  # orbax and TensorStore raise many types for damaged files
    raise CheckpointError(
      f"checkpoint {manager.directory} (epoch {step}) is damaged or incomplete ({type(e).__name__}); "
      f"{_RESTART_HINT}"
    ) from None
  return restored


def check_checkpoint(config: Config) -> int | None:
  """The epoch ``config.checkpoint_dir`` can resume from (``None``: none), after reading all of it; raises
  :class:`CheckpointError` when it is damaged or of another config (``alpha="auto"`` matches any alpha)."""
  if config.checkpoint_dir is None or not Path(config.checkpoint_dir).exists():
    return None
  config = _resolve(config)
  manager = _checkpoint_manager(config.checkpoint_dir)
  try:
    latest = manager.latest_step()
    stored = None if latest is None else _restore(manager, latest)["config"]
  finally:
    manager.close()
  if latest is None:
    return None
  differing = [
    f"{k} {stored.get(k)!r} -> {v!r}"
    for k, v in _run_fields(config).items()
    if stored.get(k) != v and not (k == "alpha" and v == "auto")
  ]
  if differing:
    raise CheckpointError(
      f"checkpoint {config.checkpoint_dir} (epoch {latest}) was written with other settings: "
      f"{', '.join(differing)}; {_RESTART_HINT}"
    )
  return int(latest)


def discard_checkpoint(directory: str) -> None:
  """Deletes the checkpoints under ``directory`` (a fresh start)."""
  shutil.rmtree(directory, ignore_errors=True)


@dataclasses.dataclass
class TrainState:
  """What a run carries from epoch to epoch: ``reference`` holds the weights at initialisation (after pruning
  at init) for the sign flips, ``batch_size`` the global batch, ``run_epoch`` the jitted ``(state, xs, ys) ->
  (state, (losses, accs))``, ``data`` this process's shards of the dataset only, and ``eval_rows`` the longest
  shard of each evaluation split (the same in every process)."""

  model: nnx.Module
  optimizer: nnx.Optimizer
  reference: Any
  steps_per_epoch: int
  batch_size: int
  run_epoch: Any
  layout: DataLayout
  data: list[data_lib.Dataset]
  eval_rows: dict[str, int]


def data_layout(config: Config) -> DataLayout:
  """The data-parallel layout of a run; raises ``ValueError`` when it does not fit the processes or the batch."""
  config = _resolve(config)
  layout = DataLayout.create(config.data_shards, config.all_devices)
  layout.check_batch(config.batch_size)
  if config.num_train is not None and config.num_train < layout.shards:
    raise ValueError(
      f"num_train {config.num_train} is fewer than the {layout.shards} data shards, each of which needs a training "
      "example"
    )
  return layout


def create_train_state(config: Config, dataset: data_lib.Dataset) -> TrainState:
  """The model (pruned at init) and optimizer of a resolved ``config`` and this process's shards of ``dataset``."""
  layout = data_layout(config)
  full = _training_subset(config, dataset)
  data = [full.shard(k, layout.shards) for k in layout.local_shards]
  shard_rows = len(data[0].x_train)
  if shard_rows == 0:
    raise ValueError(
      f"{len(full.x_train)} training examples cannot be cut into {layout.shards} data shards of at least one"
    )
  batch_size = min(config.batch_size, shard_rows * layout.shards)  # recorded as ``batch_size_used``
  layout.check_batch(batch_size)
  steps = min(shard_rows // (batch_size // layout.shards), config.max_steps or math.inf)
  model = _build_model(config, dataset)
  tx = make_optimizer(config, steps * config.epochs, steps)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  if config.sparsifier != "none":  # pruning at init: the model is sparse before the first step
    params = nnx.as_pure(nnx.state(model, nnx.Param))
    nnx.update(model, sp.apply_masks(params, nnx.as_pure(optimizer.opt_state)))
  if layout.mesh is not None:
    nnx.update((model, optimizer), layout.replicate(nnx.state((model, optimizer))))
  reference = jax.tree.map(jnp.copy, nnx.as_pure(nnx.state(model, nnx.Param)))
  graphdef, _ = nnx.split((model, optimizer))

  @jax.jit
  def run_epoch(state, xs, ys):
    def body(state, batch):  # one optimizer step on a minibatch
      model, optimizer = nnx.merge(graphdef, state)
      (loss, logits), grads = nnx.value_and_grad(_loss_fn, has_aux=True)(model, *batch)
      optimizer.update(model, grads)
      acc = jnp.mean(jnp.argmax(logits, -1) == batch[1])
      return layout.replicated(nnx.state((model, optimizer))), (loss, acc)

    return jax.lax.scan(body, state, (xs, ys))

  eval_rows = {name: -(-len(getattr(full, f"x_{name}")) // layout.shards) for name in ("val", "test")}
  return TrainState(model, optimizer, reference, steps, batch_size, run_epoch, layout, data, eval_rows)


def train_epoch(ts: TrainState, seed: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
  """One epoch as one XLA call; returns the per-step losses and accuracies. Every shard is shuffled by the same
  ``(seed, epoch)`` permutation; step ``j`` takes rows ``[j b, (j + 1) b)`` of every shard (``b = batch_size /
  shards``)."""
  rows = ts.batch_size // ts.layout.shards
  perm = np.random.default_rng([seed, epoch]).permutation(len(ts.data[0].x_train))
  order = perm[: ts.steps_per_epoch * rows].reshape(ts.steps_per_epoch, rows)
  xs = np.concatenate([d.x_train[order] for d in ts.data], axis=1)
  ys = np.concatenate([d.y_train[order] for d in ts.data], axis=1)
  _, state = nnx.split((ts.model, ts.optimizer))
  state, (losses, accs) = ts.run_epoch(state, ts.layout.put(xs, 1), ts.layout.put(ys, 1))
  nnx.update((ts.model, ts.optimizer), state)
  return np.asarray(losses), np.asarray(accs)


@jax.jit
def _weight_stats(params: Any, reference: Any) -> tuple[jax.Array, jax.Array]:
  """Sparsity and sign-flip fraction versus ``reference`` of the weight tensors (ndim >= 2)."""
  return metrics.sparsity(params)["global"], metrics.sign_flips(params, reference)["fraction"]


@nnx.jit
def _minibatch_grads(model: nnx.Module, x: jax.Array, y: jax.Array):
  """Raw gradients of the weights on one minibatch, from a clone (BatchNorm statistics stay untouched)."""
  model = nnx.clone(model)
  grads = nnx.grad(lambda m: _loss_fn(m, x, y)[0])(model)
  return nnx.as_pure(nnx.state(model, nnx.Param)), nnx.as_pure(grads)


def _ham_diagnostics(config: Config, ts: TrainState, epoch: int) -> dict[str, float]:
  """With HAM, the global :func:`ham_optax.metrics.ham_diagnostics` of the weights and raw gradient on a fixed
  minibatch (the first rows of every shard) at the epoch's last learning rate; without HAM, nothing."""
  if not config.ham:
    return {}
  rows = ts.batch_size // ts.layout.shards
  x = ts.layout.put(np.concatenate([d.x_train[:rows] for d in ts.data]))
  y = ts.layout.put(np.concatenate([d.y_train[:rows] for d in ts.data]))
  lr = _learning_rate(config, ts.steps_per_epoch * config.epochs, ts.steps_per_epoch)
  lr_now = float(lr((epoch + 1) * ts.steps_per_epoch - 1)) if callable(lr) else float(lr)
  params, grads = _minibatch_grads(ts.model, x, y)
  d = metrics.ham_diagnostics(params, grads, learning_rate=lr_now, alpha=config.alpha, beta=config.beta)
  return {f"ham_{k}": float(v) for k, v in d["global"].items()}


def epoch_record(config: Config, ts: TrainState, epoch: int, losses: np.ndarray, accs: np.ndarray) -> dict:
  """Train, validation and test loss and accuracy, weight sparsity, sign flips and HAM's diagnostics."""
  weight_sparsity, flips = _weight_stats(nnx.as_pure(nnx.state(ts.model, nnx.Param)), ts.reference)
  record = {"epoch": epoch + 1, "step": (epoch + 1) * ts.steps_per_epoch}
  record |= {"train_loss": float(np.mean(losses)), "train_acc": float(np.mean(accs))}
  for name in ("val", "test"):
    split = _evaluate_blocks(ts.model, [d.split(name) for d in ts.data], ts.eval_rows[name], ts.layout, 1000)
    record |= {f"{name}_loss": split["loss"], f"{name}_acc": split["acc"]}
  record |= {"sparsity": float(weight_sparsity), "sign_flips": float(flips)}
  return record | {"diagnostics": _ham_diagnostics(config, ts, epoch)}


def check_fits(config: Config, dataset: data_lib.Dataset) -> None:
  """Raises ``ValueError`` when ``config``'s model does not fit ``dataset`` (builds only the model's shapes)."""
  config = _resolve(config)
  try:
    nnx.eval_shape(lambda: _build_model(config, dataset))
  except ValueError as e:
    raise ValueError(f"model {config.model!r} does not fit dataset {dataset.name!r}: {e}") from None


def _train_epochs(config: Config, ts: TrainState, history: list, manager) -> int | None:
  """Trains from epoch ``len(history)``, checkpointing each epoch; returns the epoch that diverged, if any."""
  desc, t0 = f"{config.model} {config.method} seed {config.seed}", time.perf_counter()
  bar = tqdm(total=config.epochs, initial=len(history), desc=desc, leave=False, disable=not config.progress)
  with bar:
    for epoch in range(len(history), min(config.epochs, config.halt_after_epochs or config.epochs)):
      record = epoch_record(config, ts, epoch, *train_epoch(ts, config.seed, epoch))
      if not (math.isfinite(record["train_loss"]) and math.isfinite(record["val_loss"])):
        return epoch + 1
      history.append(record | {"time_s": time.perf_counter() - t0})
      bar.update(1)
      bar.set_postfix(loss=f"{record['train_loss']:.3f}", val=f"{record['val_acc']:.3f}")
      if manager is not None:
        args = {"state": nnx.state((ts.model, ts.optimizer)), "reference": ts.reference}
        items = {k: ocp.args.StandardSave(v) for k, v in args.items()}
        items |= {"history": ocp.args.JsonSave(history), "config": ocp.args.JsonSave(_run_fields(config))}
        manager.save(epoch + 1, args=ocp.args.Composite(**items))
        manager.wait_until_finished()
  return None


def train_and_evaluate(
  config: Config, dataset: data_lib.Dataset | None = None, *, return_model: bool = False
) -> dict[str, Any]:
  """Trains one model as configured (``dataset``: default ``config.dataset``, loaded) and returns a
  JSON-serialisable dict: ``config`` (resolved, ``alpha="auto"`` replaced by :func:`suggested_alpha`), ``method``,
  ``alpha_source``, ``history`` (:func:`epoch_record` and ``time_s`` per finished epoch), ``completed``,
  ``diverged``, ``diverged_epoch``, the final ``val_acc``, ``test_acc``, ``sparsity``, ``sign_flips`` (``None`` if
  diverged), ``train_time_s``, ``batch_size_used``, and with ``return_model`` the ``model``."""
  alpha_source = resolve(config)[1].get("alpha", "suggest_alpha" if config.alpha == "auto" else "given")
  config = _resolve(config)
  config.validate()
  dataset = data_lib.load_dataset(config.dataset) if dataset is None else dataset
  if config.ham and config.alpha == "auto":
    config = config.replace(alpha=suggested_alpha(config, dataset))
  ts = create_train_state(config, dataset)
  del dataset  # from here on, only this process's shards
  history, manager = [], None
  if config.checkpoint_dir is not None:
    manager = _checkpoint_manager(config.checkpoint_dir)
    latest = check_checkpoint(config)
    if latest is not None:
      restored = _restore(manager, latest, nnx.state((ts.model, ts.optimizer)), ts.reference)
      nnx.update((ts.model, ts.optimizer), restored["state"])
      ts.reference, history = restored["reference"], list(restored["history"])
      if jax.process_index() == 0:
        run = f"{config.model} {config.method} seed {config.seed}"
        print(f"{run}: resuming from epoch {latest} of {config.epochs} ({config.checkpoint_dir})")
  diverged_epoch = _train_epochs(config, ts, history, manager)
  if manager is not None:
    manager.close()
  final = history[-1] if history and diverged_epoch is None else {}
  results = {
    "config": dataclasses.asdict(config),
    "method": config.method,
    "history": history,
    "completed": diverged_epoch is None and bool(history) and history[-1]["epoch"] == config.epochs,
    "diverged": diverged_epoch is not None,
    "diverged_epoch": diverged_epoch,
    **{k: final.get(k) for k in ("val_acc", "test_acc", "sparsity", "sign_flips")},
    "train_time_s": history[-1]["time_s"] if history else 0.0,
    "batch_size_used": ts.batch_size,
    "alpha_source": alpha_source if config.ham else None,
  }
  return results | {"model": ts.model} if return_model else results
