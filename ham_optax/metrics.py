"""Training diagnostics for HAM and sparse training, jit-friendly (sparsity, sign flips, inverse metric)."""

from ham_optax._src.graphon import empirical_graphon, graphon_distance
from ham_optax._src.metrics import fraction_near_zero, mean_inverse_metric, sign_flips, sparsity

__all__ = [
  "empirical_graphon",
  "graphon_distance",
  "fraction_near_zero",
  "mean_inverse_metric",
  "sign_flips",
  "sparsity",
]
