"""Geometry and implicit bias of HAM: inverse metrics, mirror maps, potentials, Bregman projections.

The pointwise functions are jit-able ``jax.numpy`` code; :func:`bregman_projection`,
:func:`min_norm_interpolant` and :func:`basis_pursuit` are float64 NumPy/SciPy reference solvers
(SciPy is imported only when :func:`basis_pursuit` runs).
"""

from ham_optax._src.geometry import (
  bregman_divergence,
  conjugate_potential,
  inverse_metric_gd,
  inverse_metric_ham,
  inverse_metric_mw,
  inverse_mirror_map,
  mirror_map,
  mw_inverse_mirror_map,
  mw_mirror_map,
  mw_potential,
  potential,
)
from ham_optax._src.geometry_reference import (
  BregmanProjectionResult,
  basis_pursuit,
  bregman_projection,
  min_norm_interpolant,
)

__all__ = [
  "BregmanProjectionResult",
  "basis_pursuit",
  "bregman_divergence",
  "bregman_projection",
  "conjugate_potential",
  "inverse_metric_gd",
  "inverse_metric_ham",
  "inverse_metric_mw",
  "inverse_mirror_map",
  "min_norm_interpolant",
  "mirror_map",
  "mw_inverse_mirror_map",
  "mw_mirror_map",
  "mw_potential",
  "potential",
]
