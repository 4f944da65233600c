"""Default configuration: an MLP on MNIST-1D with SGD + momentum and a cosine schedule.

A plain dataclass (``ml_collections`` is not a dependency). Override fields with
``dataclasses.replace(get_config(), ham=True, sparsifier="random")`` or from the CLI.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

OPTIMIZERS = ("sgd", "adamw")
SPARSIFIERS = ("none", "random", "magnitude", "acdc", "rigl")
SCHEDULES = ("cosine", "constant")


@dataclass(frozen=True)
class Config:
  """Everything one training run depends on.

  HAM hyperparameters: ``alpha`` scales the hyperbolic (mirror) step and ``beta`` is its
  multiplicative decay. Stability needs ``alpha * learning_rate * |g|`` well below 1; the
  defaults were chosen on the MNIST-1D *validation* split (see ``benchmarks/sparse_training.py``).
  """

  # data / model
  dataset: str = "mnist1d"
  model: str = "mlp"
  width: int | None = None  # None: the model's default width
  # optimisation
  optimizer: str = "sgd"
  learning_rate: float = 0.4
  momentum: float = 0.9
  weight_decay: float = 5e-4
  schedule: str = "cosine"
  warmup_epochs: int = 0
  epochs: int = 30
  batch_size: int = 128
  # HAM
  ham: bool = False
  alpha: float = 10.0
  beta: float = 1e-2
  # Sign-In (ham_optax.overparam.sign_in): m * w with the balance reset every `sign_in_every` epochs
  sign_in: bool = False
  sign_in_every: int = 1
  sign_in_balance: float = 1.0
  # sparsity
  sparsifier: str = "none"
  sparsity: float = 0.9
  distribution: str = "erk"  # layer-wise densities for random pruning / RigL
  # bookkeeping
  seed: int = 0
  max_steps: int | None = None  # cap on steps per epoch (tests, smoke runs)
  num_train: int | None = None  # use only the first N training examples (tests)
  checkpoint_dir: str | None = None  # orbax checkpoints at the end of every epoch; resumes if present
  halt_after_epochs: int | None = None  # stop early (simulates a preempted job); resume later
  progress: bool = True  # tqdm progress bar

  def replace(self, **changes) -> Config:
    """A copy with ``changes`` applied."""
    return dataclasses.replace(self, **changes)

  @property
  def method(self) -> str:
    """Short label such as ``random+HAM`` or ``dense``."""
    base = "dense" if self.sparsifier == "none" else self.sparsifier
    if self.sign_in:
      return f"{base}+Sign-In"
    return f"{base}+HAM" if self.ham else base

  def validate(self) -> None:
    """Raises ``ValueError`` naming the first invalid field."""
    from ham_optax.training.data import DATASETS
    from ham_optax.training.models import MODELS

    checks = [
      (self.dataset in DATASETS, f"dataset must be one of {DATASETS}, got {self.dataset!r}"),
      (self.model in MODELS, f"model must be one of {MODELS}, got {self.model!r}"),
      (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}"),
      (self.sparsifier in SPARSIFIERS, f"sparsifier must be one of {SPARSIFIERS}, got {self.sparsifier!r}"),
      (self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}, got {self.schedule!r}"),
      (self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}"),
      (0.0 <= self.momentum < 1.0, f"momentum must be in [0, 1), got {self.momentum}"),
      (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
      (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
      (0 <= self.warmup_epochs < self.epochs, "warmup_epochs must be in [0, epochs)"),
      (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
      (0.0 < self.sparsity < 1.0, f"sparsity must be in (0, 1), got {self.sparsity}"),
      (
        self.distribution in ("erk", "uniform"),
        f"distribution must be 'erk' or 'uniform', got {self.distribution!r}",
      ),
      (self.beta >= 0, f"beta must be >= 0, got {self.beta}"),
      (not (self.ham and self.sign_in), "ham and sign_in are alternatives; set at most one"),
      (self.sign_in_every >= 1, f"sign_in_every must be >= 1 (epochs), got {self.sign_in_every}"),
      (self.sign_in_balance > 0, f"sign_in_balance must be > 0, got {self.sign_in_balance}"),
      (self.max_steps is None or self.max_steps >= 1, "max_steps must be None or >= 1"),
      (self.num_train is None or self.num_train >= 1, "num_train must be None or >= 1"),
      (
        self.halt_after_epochs is None or self.halt_after_epochs >= 1,
        "halt_after_epochs must be None or >= 1",
      ),
    ]
    for ok, message in checks:
      if not ok:
        raise ValueError(message)


# (learning rate, HAM alpha, HAM beta) per sparsifier, chosen on the MNIST-1D *validation* split by
# ``benchmarks/sparse_training.py`` (MLP 256-256, SGD + momentum 0.9, weight decay 5e-4, cosine schedule,
# 30 epochs, batch 128, sparsity 0.9, 2 tuning seeds; grids lr {0.1, 0.2, 0.4, 0.8, 1.6},
# alpha {0.3, 1, 3, 10, 30, 100}, beta {1e-3, 1e-2}; the baseline's lr is tuned first and HAM is tuned at it).
TUNED: dict[tuple[str, str, str], dict[str, tuple[float, float, float]]] = {
  ("mnist1d", "mlp", "sgd"): {
    "none": (0.4, 10.0, 1e-2),
    "random": (0.8, 3.0, 1e-3),
    "magnitude": (0.4, 10.0, 1e-2),
    "acdc": (0.4, 10.0, 1e-2),
    "rigl": (0.8, 3.0, 1e-3),
  },
}


def tuned_hyperparameters(
  dataset: str, model: str, optimizer: str, sparsifier: str
) -> dict[str, float] | None:
  """``{"learning_rate", "alpha", "beta"}`` from :data:`TUNED`, or ``None`` if that setting was not tuned."""
  values = TUNED.get((dataset, model, optimizer), {}).get(sparsifier)
  if values is None:
    return None
  return dict(zip(("learning_rate", "alpha", "beta"), values, strict=True))


def get_config() -> Config:
  """The default configuration."""
  return Config()
