"""The configuration of one training run: :class:`Config` (each field's comment is its ``--help`` text), its
checks, and :func:`resolve`, which fills the fields left at ``None`` from :mod:`ham_optax_examples.configs.tuned`."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal, get_args, get_origin, get_type_hints

import tyro

from ham_optax import checks
from ham_optax_examples.configs.tuned import DEFAULT_EPOCHS, FALLBACK, MODEL_DEFAULTS, TUNED

DatasetName = Literal["mnist1d", "digits", "csbm", "cifar10", "cifar100", "modular", "modular_sub"]
ModelName = Literal["mlp", "mlp_ln", "cnn1d", "resnet1d", "resnet18", "transformer", "gcn", "sage"]
SparsifierName = Literal["none", "random", "magnitude", "acdc", "rigl"]
OptimizerName = Literal["sgd", "adamw"]
ScheduleName = Literal["cosine", "constant"]
DistributionName = Literal["erk", "uniform"]
# Set per run by the job (``--model``, ``--sparsifier``, ``--ham``, ``--seeds``, ``--checkpoint``): not options.
PerRun = tyro.conf.Suppress


def shown(default: str, metavar: str | None = None, name: str | None = None) -> Any:
  """tyro metadata for an option whose default depends on other choices: how ``--help`` states it."""
  return tyro.conf.arg(name=name, metavar=metavar, help_behavior_hint=f"(default: {default})")


def _fallback(name: str) -> str:
  return " / ".join(f"{values[name]:g} ({opt})" for opt, values in FALLBACK.items())


def _tuned(fallback: str) -> str:
  return f"validation-tuned where listed in configs/tuned.py, else {fallback}"


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything one training run depends on (``None``: the default for the choices made, see :func:`resolve`).

  HAM's per-step change of a weight is ``exp(-lr * (alpha * sign(x) * g + beta))``: stability needs
  ``alpha * lr * |g|`` well below 1.
  """

  dataset: DatasetName = "mnist1d"  # dataset
  model: Annotated[ModelName, PerRun] = "mlp"
  width: Annotated[int | None, shown("the model's own; 16 for resnet1d", "N")] = None  # model width
  optimizer: OptimizerName = "sgd"  # inner optimizer: SGD + momentum with weight decay, or AdamW
  # peak learning rate
  learning_rate: Annotated[float | None, shown(_tuned(_fallback("learning_rate")), "X", "lr")] = None
  momentum: float = 0.9  # SGD momentum (sgd only)
  weight_decay: Annotated[float | None, shown(_fallback("weight_decay"), "X")] = None  # weight decay
  schedule: ScheduleName = "cosine"  # learning-rate schedule
  warmup_epochs: int = 0  # linear warm-up epochs from 0 to the peak learning rate, with either schedule
  epochs: Annotated[int | None, shown("5 for resnet1d, else 30", "N")] = None  # epochs
  batch_size: int = 128  # batch size (at most the number of training examples)
  ham: Annotated[bool, PerRun] = False
  # HAM alpha; auto: ham_optax.suggest_alpha on 20 minibatches, logged in the results
  alpha: Annotated[float | Literal["auto"] | None, shown(_tuned("auto"), "X|auto")] = None
  beta: Annotated[float | None, shown(_tuned(_fallback("beta")), "X")] = None  # HAM multiplicative decay
  sign_in: bool = False  # add Sign-In runs (ham_optax.overparam.sign_in: m * w with periodic rescaling)
  sign_in_every: int = 1  # Sign-In: reset the balance every N epochs
  sign_in_balance: float = 1.0  # Sign-In: the balance m^2 - w^2 after a reset
  sparsifier: Annotated[SparsifierName, PerRun] = "none"
  sparsity: float = 0.9  # fraction of weights pruned
  distribution: DistributionName = "erk"  # layer-wise densities for random pruning / RigL
  seed: Annotated[int, PerRun] = 0
  max_steps: Annotated[int | None, shown("no cap", "N")] = None  # cap on steps per epoch (smoke runs)
  num_train: Annotated[int | None, shown("all", "N")] = None  # use only the first N training examples
  checkpoint_dir: Annotated[str | None, PerRun] = None
  # stop after N epochs (needs --checkpoint; a rerun resumes)
  halt_after_epochs: Annotated[int | None, shown("run to the end", "N")] = None
  progress: bool = True  # tqdm progress bars
  # cut the data into N shards, each process holding its own (a multiple of the processes); one process given
  # N shards repeats the data order of an N-process run
  data_shards: Annotated[int | None, shown("one per process", "N")] = None
  all_devices: bool = False  # one process: split every batch over all of its devices

  def replace(self, **changes: Any) -> Config:
    """A copy with ``changes`` applied."""
    return dataclasses.replace(self, **changes)

  @property
  def method(self) -> str:
    """Short label such as ``random+HAM`` or ``dense``."""
    base = "dense" if self.sparsifier == "none" else self.sparsifier
    return f"{base}+Sign-In" if self.sign_in else f"{base}+HAM" if self.ham else base

  def validate(self) -> None:
    """Raises ``ValueError`` naming the first invalid field (``None`` fields are checked once resolved)."""
    for name, choices in _CHOICES.items():
      checks.check_choice(getattr(self, name), name, choices)
    if self.alpha is not None and not (self.alpha == "auto" or isinstance(self.alpha, int | float)):
      raise ValueError(f"alpha must be a number or 'auto', got {self.alpha!r}")
    for name, bounds in _BOUNDS.items():
      if getattr(self, name) not in (None, "auto"):
        checks.check_scalar(getattr(self, name), name, **bounds)
    for name, minimum in _INT_MINIMUM.items():
      checks.check_int(getattr(self, name), name, minimum, none_ok=True)
    if self.epochs is not None and self.warmup_epochs >= self.epochs:
      raise ValueError(f"warmup_epochs must be < epochs, got {self.warmup_epochs} >= {self.epochs}")
    if self.ham and self.sign_in:
      raise ValueError("ham and sign_in are alternatives; set at most one")
    if self.data_shards is not None and self.batch_size % self.data_shards:
      raise ValueError(
        f"batch_size {self.batch_size} does not split evenly into {self.data_shards} data shards"
      )


_POSITIVE, _FRACTION = {"lo": 0.0, "lo_open": True}, {"lo": 0.0, "hi": 1.0, "hi_open": True}
_BOUNDS = {"learning_rate": _POSITIVE, "momentum": _FRACTION, "weight_decay": {"lo": 0.0}, "alpha": {}}
_BOUNDS |= {"beta": {"lo": 0.0}, "sign_in_balance": _POSITIVE, "sparsity": {**_FRACTION, "lo_open": True}}
_INT_MINIMUM = dict.fromkeys(("epochs", "batch_size", "width", "sign_in_every", "max_steps", "num_train"), 1)
_INT_MINIMUM |= {"warmup_epochs": 0, "halt_after_epochs": 1, "data_shards": 1}
_CHOICES = {name: get_args(t) for name, t in get_type_hints(Config).items() if get_origin(t) is Literal}


def resolve(config: Config) -> tuple[Config, dict[str, str]]:
  """Fills the ``None`` fields of ``config`` (but ``data_shards``) with the defaults for its choices; returns the
  completed config and, for each filled field, where its value came from."""
  changes, sources = {}, {}
  tuned = TUNED.get((config.dataset, config.model, config.optimizer, config.sparsifier))
  for name in ("learning_rate", "weight_decay", "alpha", "beta"):
    if getattr(config, name) is not None:
      continue
    if tuned is not None and name != "weight_decay":
      changes[name], sources[name] = getattr(tuned, name), "validation-tuned"
    elif name == "alpha":
      changes[name], sources[name] = "auto", "suggest_alpha"
    else:
      changes[name], sources[name] = FALLBACK[config.optimizer][name], f"fallback for {config.optimizer}"
  model_defaults = MODEL_DEFAULTS.get(config.model, {})
  if config.width is None and "width" in model_defaults:
    changes["width"], sources["width"] = model_defaults["width"], f"default for {config.model}"
  if config.epochs is None:
    changes["epochs"] = model_defaults.get("epochs", DEFAULT_EPOCHS)
    sources["epochs"] = f"default for {config.model}"
  return config.replace(**changes), sources


def get_config(**changes: Any) -> Config:
  """The default configuration, with ``changes`` applied."""
  return Config(**changes)
