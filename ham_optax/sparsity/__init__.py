"""Sparse training for JAX/optax, built to pair with HAM (Jacobs et al., ICLR 2026, arXiv:2506.02630).

Sparsifiers wrap any optax transform and keep binary masks in the optimizer state. The documented order is
``sparsifier(ham(inner_opt, ...))``: the inner optimizer and HAM's mirror step propose new params from the dense
gradient, then the sparsifier projects them onto the mask (``params + updates = mask * x_half``), so pruned
weights are exactly zero after every step.

- :func:`random_pruning`: fixed random masks at init, uniform or ERK per-layer densities.
- :func:`magnitude_pruning`: gradual magnitude pruning with Zhu & Gupta's cubic schedule (global or per layer).
- :func:`acdc`: alternating compressed/decompressed training.
- :func:`rigl`: drop smallest-magnitude, grow largest-gradient weights every ``update_every`` steps.
- :class:`STRDense`, :class:`STRConv`: Soft Threshold Reparameterization layers (flax NNX), learned sparsity.
- :func:`get_masks`, :func:`apply_masks`: read the masks from any (nested) optimizer state; zero pruned weights.
"""

from ham_optax.sparsity._core import SparsifierState, apply_masks, get_masks
from ham_optax.sparsity._distributions import erk_densities, layer_zero_counts
from ham_optax.sparsity._methods import (
  acdc,
  acdc_is_sparse,
  acdc_phases,
  gmp_schedule,
  magnitude_pruning,
  random_pruning,
  rigl,
  rigl_drop_fraction,
)
from ham_optax.sparsity._str import STRConv, STRDense, str_sparse_weight

__all__ = [
  "STRConv",
  "STRDense",
  "SparsifierState",
  "acdc",
  "acdc_is_sparse",
  "acdc_phases",
  "apply_masks",
  "erk_densities",
  "get_masks",
  "gmp_schedule",
  "layer_zero_counts",
  "magnitude_pruning",
  "random_pruning",
  "rigl",
  "rigl_drop_fraction",
  "str_sparse_weight",
]
