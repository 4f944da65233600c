"""Sparse training for JAX/optax, built to pair with HAM (Jacobs et al., ICLR 2026, arXiv:2506.02630).

Sparsifiers wrap any optax transform and keep binary masks in the optimizer state. In
``sparsifier(ham(inner_opt, ...))`` the inner optimizer and HAM's mirror step see the masked gradient
(``mask * g``) and the result is projected onto the mask (``params + updates = mask * x_half``), so pruned weights
are exactly zero after every step; RigL grows from the dense gradient. No selected layer is ever pruned away.

:func:`all_but` keeps named layers dense; :func:`get_masks` and :func:`apply_masks` read the masks from any (nested)
optimizer state and zero pruned weights; an inner optimizer's state follows :class:`ReparametrisedState` or
:class:`SparseMomentsState` so that the sparsifiers' state resets (AC/DC, RigL) zero its moments and nothing else.
"""

from typing import TYPE_CHECKING

from ham_optax._src.sparsity.core import (
  ReparametrisedState,
  SparseMomentsState,
  SparsifierState,
  all_but,
  apply_masks,
  get_masks,
)
from ham_optax._src.sparsity.distributions import erk_densities, layer_zero_counts
from ham_optax._src.sparsity.methods import (
  acdc,
  acdc_is_sparse,
  acdc_phases,
  gmp_schedule,
  magnitude_pruning,
  random_pruning,
  rigl,
  rigl_drop_fraction,
)

# The STR layers are Flax NNX modules; they are loaded on first access so that ``import ham_optax`` does not
# import ``flax.nnx`` (PEP 562 module ``__getattr__``).
_LAZY = {"STRConv", "STRDense", "str_sparse_weight"}
if TYPE_CHECKING:
  from ham_optax._src.sparsity.str_layers import STRConv, STRDense, str_sparse_weight


def __getattr__(name: str):
  if name in _LAZY:
    from ham_optax._src.sparsity import str_layers  # noqa: PLC0415 - deferred on purpose, see above

    return getattr(str_layers, name)
  raise AttributeError(f"module 'ham_optax.sparsity' has no attribute {name!r}")


__all__ = [
  "STRConv",
  "STRDense",
  "ReparametrisedState",
  "SparseMomentsState",
  "SparsifierState",
  "acdc",
  "all_but",
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
