"""Grokking and fine-tuning runs of the small transformer on modular arithmetic: the whole training (a scan over
full-batch steps) is one jitted function, ``vmap``-ed over runs, whose hyperparameters enter as traced constant
schedules, so one compilation serves a grid of seeds and settings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import ham_optax
from ham_optax import checks, metrics, schedules
from ham_optax_examples import models
from ham_optax_examples.data import Dataset

METHODS = ("adamw", "ham_adamw", "adamw_wd_off", "sgdm", "ham_sgdm", "nanoadam")


def _const(value: jax.Array) -> optax.Schedule:
  return lambda count: value  # a (possibly traced) constant: one compiled function serves a grid


def make_optimizer(
  method: str, hp: Mapping, *, switch_step=0, nano_fraction=0.1, nano_refresh=100, nano_weight_decay=0.0
) -> optax.GradientTransformation:
  """The optimizer ``method`` with hyperparameters ``hp`` (``lr``, ``wd``, ``alpha``, ``beta``), at a constant
  learning rate: AdamW (``b2=0.98``) or SGD with momentum 0.9, with HAM (``ham_*``), with the weight decay switched
  off at ``switch_step`` (``adamw_wd_off``), or :func:`ham_optax.nanoadam` (its settings fixed per call)."""
  checks.check_choice(method, "method", METHODS)
  lr = _const(hp["lr"])
  if method == "adamw":
    return optax.adamw(lr, b2=0.98, weight_decay=_const(hp["wd"]))
  if method == "ham_adamw":
    inner = optax.adamw(lr, b2=0.98, weight_decay=_const(hp["wd"]))
    return ham_optax.ham(inner, lr, _const(hp["alpha"]), _const(hp["beta"]))
  if method == "adamw_wd_off":
    return optax.inject_hyperparams(optax.adamw)(
      learning_rate=lr, b2=0.98, weight_decay=schedules.switch_off(_const(hp["wd"]), switch_step)
    )
  if method == "sgdm":
    return optax.chain(optax.add_decayed_weights(_const(hp["wd"])), optax.sgd(lr, momentum=0.9))
  if method == "ham_sgdm":
    return ham_optax.ham(optax.sgd(lr, momentum=0.9), lr, _const(hp["alpha"]), _const(hp["beta"]))
  return ham_optax.nanoadam(lr, nano_fraction, nano_refresh, b2=0.98, weight_decay=nano_weight_decay)


def init_params(seeds: Sequence[int], p: int, *, width: int = 64) -> tuple[nnx.GraphDef, Any]:
  """The transformer's graph definition and its parameters for every seed, stacked on a leading axis."""
  splits = [nnx.split(models.create_model("transformer", (4,), p, seed=int(s), width=width)) for s in seeds]
  return splits[0][0], jax.tree.map(lambda *xs: jnp.stack(xs), *(state for _, state in splits))


def fourier_concentration(embedding: jax.Array, p: int, top: int = 4) -> jax.Array:
  """Share of the number-token embedding's energy in its ``top`` strongest Fourier frequencies: ``embedding[:p]``
  is centred and transformed along the number axis; frequency ``k = 1 .. (p-1)/2`` has the energy
  ``|F_k|^2 + |F_{p-k}|^2`` summed over the dimensions. Networks that grok modular addition use a few frequencies
  (Nanda et al., 2023): a value near 1; a random embedding gives about ``top / ((p-1)/2)``."""
  e = embedding[:p] - embedding[:p].mean(axis=0)
  power = jnp.sum(jnp.abs(jnp.fft.fft(e, axis=0)) ** 2, axis=1)
  half = (p - 1) // 2
  energy = power[1 : half + 1] + power[p - 1 : p - half - 1 : -1]
  return jnp.sum(jax.lax.top_k(energy, min(top, half))[0]) / jnp.maximum(jnp.sum(energy), 1e-30)


def train_runs(
  method: str, graphdef, params, hparams, train, evals: Mapping, *, steps: int, eval_every: int = 10, **kwargs
) -> dict[str, np.ndarray]:
  """Trains ``R`` runs of :func:`make_optimizer` ``(method, **kwargs)`` at once, full batch on ``train``
  (``(x, y)``), from ``params`` (:func:`init_params`, ``R`` stacked) with ``hparams`` (name -> ``R`` values).

  Returns ``steps`` (the evaluation steps, ``(E,)``), ``train_loss`` / ``train_acc`` and ``<name>_acc`` for every
  ``(x, y)`` of ``evals`` (``(R, E)``), ``params`` (final, stacked) and ``finite`` (``(R,)``: no NaN/inf loss).
  """
  if steps % eval_every:
    raise ValueError(f"steps ({steps}) must be a multiple of eval_every ({eval_every})")
  x_tr, y_tr = jnp.asarray(train[0]), jnp.asarray(train[1])
  eval_sets = {k: (jnp.asarray(x), jnp.asarray(y)) for k, (x, y) in evals.items()}
  hp = {k: jnp.asarray(v, jnp.float32) for k, v in hparams.items()}

  def loss_fn(prm):
    logits = nnx.merge(graphdef, prm)(x_tr)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y_tr).mean()
    return loss, jnp.mean(jnp.argmax(logits, -1) == y_tr)

  def one_run(prm, h):
    tx = make_optimizer(method, h, **kwargs)

    def step(carry, _):
      prm, opt_state = carry
      (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(prm)
      updates, opt_state = tx.update(grads, opt_state, prm)
      return (optax.apply_updates(prm, updates), opt_state), (loss, acc)

    def chunk(carry, _):
      carry, (losses, accs) = jax.lax.scan(step, carry, None, length=eval_every)
      model = nnx.merge(graphdef, carry[0])
      accs_eval = {f"{k}_acc": jnp.mean(jnp.argmax(model(x), -1) == y) for k, (x, y) in eval_sets.items()}
      return carry, {"train_loss": losses[-1], "train_acc": accs[-1], **accs_eval}

    (prm, _), curves = jax.lax.scan(chunk, (prm, tx.init(prm)), None, length=steps // eval_every)
    return prm, curves

  final, curves = jax.jit(jax.vmap(one_run))(params, hp)
  out = {k: np.asarray(v) for k, v in curves.items()}
  out["steps"] = np.arange(1, steps // eval_every + 1) * eval_every
  out["params"] = final
  out["finite"] = np.all(np.isfinite(out["train_loss"]), axis=1)
  return out


def grokking_step(steps: np.ndarray, val_acc: np.ndarray, threshold: float = 0.99) -> np.ndarray:
  """First evaluation step at which ``val_acc`` (``(R, E)``) reaches ``threshold``; ``nan`` where never."""
  reached = val_acc >= threshold
  first = np.argmax(reached, axis=1)
  return np.where(reached.any(axis=1), steps[first], np.nan).astype(float)


def weight_indicators(graphdef: nnx.GraphDef, params: Any, p: int, tol: float = 1e-3) -> dict[str, Any]:
  """Per run: :func:`fourier_concentration` of the token embedding and the fraction of weights with ``|w| <= tol``."""
  del graphdef

  def one(prm):
    near_zero = metrics.fraction_near_zero(prm, tol)["global"]
    return fourier_concentration(prm["token_embed"]["embedding"], p), near_zero

  fourier, near_zero = jax.jit(jax.vmap(one))(params)
  return {"fourier_top4": np.asarray(fourier), "near_zero": np.asarray(near_zero)}


def run_dataset(dataset: Dataset) -> tuple[tuple[np.ndarray, np.ndarray], dict[str, Any]]:
  """``(train, {"val": ..., "test": ...})`` of a modular dataset, in the form :func:`train_runs` takes."""
  return (dataset.x_train, dataset.y_train), {"val": dataset.split("val"), "test": dataset.split("test")}
