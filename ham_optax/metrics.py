"""Training diagnostics for HAM and sparse training, jit-friendly (sparsity, sign flips, inverse metric)."""

from ham_optax._src.metrics import fraction_near_zero, mean_inverse_metric, sign_flips, sparsity

__all__ = ["fraction_near_zero", "mean_inverse_metric", "sign_flips", "sparsity"]
