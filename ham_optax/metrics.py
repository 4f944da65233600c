"""Training diagnostics for HAM and sparse training, jit-friendly (sparsity, sign flips, inverse metric, HAM stability)."""

from ham_optax._src.graphon import empirical_graphon, graphon_distance
from ham_optax._src.metrics import (
  escape_step,
  fraction_near_zero,
  ham_diagnostics,
  mean_inverse_metric,
  sign_flips,
  sparsity,
)

__all__ = [
  "empirical_graphon",
  "escape_step",
  "fraction_near_zero",
  "graphon_distance",
  "ham_diagnostics",
  "mean_inverse_metric",
  "sign_flips",
  "sparsity",
]
