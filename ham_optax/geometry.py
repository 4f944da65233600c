r"""Geometry and implicit bias of HAM: inverse metrics, mirror maps, potentials, Bregman divergence.

The geometry behind Hyperbolic Aware Minimization (HAM; Jacobs, Gadhikar, Rubio-Madrigal & Burkholz, ICLR 2026,
arXiv:2506.02630, Section 4). With ``beta = 0`` and a vanishing learning rate, HAM follows the Riemannian gradient
flow :math:`\dot x = -(1 + \alpha |x|) \odot \nabla f(x)`, i.e. the mirror flow
:math:`\frac{d}{dt} \nabla R_\alpha(x) = -\nabla f(x)` with the separable Legendre potential :math:`R_\alpha`
of :func:`potential` (Lemma 4.4; limits: Theorem 4.6). On an underdetermined least-squares problem
:math:`\min_x \tfrac12\|Zx - y\|^2` the flow started at :math:`x_0` converges to the Bregman projection
:math:`\arg\min_{Zx = y} D_{R_\alpha}(x, x_0)`, which :func:`bregman_projection` computes with an
independent float64 convex solver.

For comparison, plain gradient descent on the pointwise overparameterisation :math:`x = m \odot w` conserves
:math:`\gamma = m^2 - w^2` per coordinate and follows :math:`\dot x = -\sqrt{4x^2 + \gamma^2} \odot \nabla f(x)`
(the paper writes :math:`\sqrt{x^2 + \gamma^2}` after rescaling time by 2 and :math:`\gamma` by 1/2); its
potential is the hyperbolic entropy (:func:`mw_potential`). Its inverse metric vanishes at 0 as
:math:`\gamma \to 0`, the "small inverse metric" that HAM's :math:`1 + \alpha|x| \ge 1` avoids (Figure 1).

The pointwise functions are jit-able ``jax.numpy`` code that keeps the input dtype; :func:`bregman_projection`,
:func:`min_norm_interpolant` and :func:`basis_pursuit` are float64 NumPy/SciPy reference solvers.
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
