"""Tuned values of the training examples: data only, each entry beside the command that chose it. :data:`TUNED`
was chosen on the MNIST-1D *validation* split (tuning seeds 1000+; the test split was never read); every other
combination uses :data:`FALLBACK` and ``alpha="auto"`` (:func:`ham_optax.suggest_alpha`)."""

from __future__ import annotations

from typing import Any, NamedTuple


class Tuned(NamedTuple):
  """Hyperparameters chosen on the validation split, and the command that chose them."""

  learning_rate: float
  alpha: float
  beta: float
  source: str


SPARSE_TRAINING = (
  "python benchmarks/sparse_training.py (MLP 256-256, SGD + momentum 0.9, weight decay 5e-4, cosine, 30 epochs, "
  "batch 128, sparsity 0.9, 2 tuning seeds; lr {0.1, 0.2, 0.4, 0.8, 1.6}, alpha {0.3, 1, 3, 10, 30, 100}, "
  "beta {1e-3, 1e-2}; HAM tuned at the baseline's lr)"
)
MAIN_JOB_MLP = (
  "python benchmarks/main_job_tuning.py --models mlp --lrs 0.2 0.4 0.8 --tuning-seeds 3 "
  "--out benchmarks/results/main_job_tuning/mlp (dense and random; 30 epochs, 3 tuning seeds, lr {0.2, 0.4, 0.8}, "
  "alpha {1, 3, 10, 30} x beta {1e-3, 1e-2} at the baseline's lr; the stability margin excludes an alpha whose "
  "next grid value diverged on a tuning seed)"
)
MAIN_JOB_RESNET1D = (
  "python benchmarks/main_job_tuning.py --models resnet1d --sparsifiers {none,random} --lrs 0.1 --alphas 1 3 10 30 "
  "--betas 1e-3 --tuning-seeds 1 --out benchmarks/results/main_job_tuning/resnet1d_{none,random} (width 16, "
  "5 epochs, 1 tuning seed, lr fixed at 0.1, the usual rate for BatchNorm ResNets; HAM at that lr; alpha 30 was "
  "stable too, and the largest alpha of the grid is never chosen)"
)

# (dataset, model, optimizer, sparsifier) -> Tuned.
TUNED: dict[tuple[str, str, str, str], Tuned] = {
  ("mnist1d", "mlp", "sgd", "none"): Tuned(0.4, 3.0, 1e-2, MAIN_JOB_MLP),
  ("mnist1d", "mlp", "sgd", "random"): Tuned(0.8, 1.0, 1e-3, MAIN_JOB_MLP),
  ("mnist1d", "mlp", "sgd", "magnitude"): Tuned(0.4, 10.0, 1e-2, SPARSE_TRAINING),
  ("mnist1d", "mlp", "sgd", "acdc"): Tuned(0.4, 10.0, 1e-2, SPARSE_TRAINING),
  ("mnist1d", "mlp", "sgd", "rigl"): Tuned(0.8, 3.0, 1e-3, SPARSE_TRAINING),
  ("mnist1d", "resnet1d", "sgd", "none"): Tuned(0.1, 10.0, 1e-3, MAIN_JOB_RESNET1D),
  ("mnist1d", "resnet1d", "sgd", "random"): Tuned(0.1, 10.0, 1e-3, MAIN_JOB_RESNET1D),
}

# Untuned per-optimizer starting points for every other combination (SGD + momentum at 0.1, AdamW at 1e-3).
FALLBACK: dict[str, dict[str, float]] = {
  "sgd": {"learning_rate": 0.1, "weight_decay": 5e-4, "beta": 1e-3},
  "adamw": {"learning_rate": 1e-3, "weight_decay": 1e-4, "beta": 1e-3},
}

# Per-model defaults (the 1-D ResNet runs narrower and shorter to keep the main job within minutes on a CPU).
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {"resnet1d": {"width": 16, "epochs": 5, "seeds": 3}}
DEFAULT_EPOCHS = 30
DEFAULT_SEEDS = 5

# The main job, `ham-optax train` with no options: baseline vs HAM, dense and 90 % random pruning at init, on
# MNIST-1D for an MLP and a 1-D ResNet with BatchNorm.
MAIN_JOB: dict[str, Any] = {
  "dataset": "mnist1d",
  "models": ("mlp", "resnet1d"),
  "sparsifiers": ("none", "random"),
  "sparsity": 0.9,
  "per_model": {
    "mlp": {"width": None, "epochs": DEFAULT_EPOCHS, "seeds": DEFAULT_SEEDS},
    "resnet1d": MODEL_DEFAULTS["resnet1d"],
  },
}
