"""Reparameterisations as optax wrappers: pointwise ``x = m * w`` (spred, PILoT, Sign-In) and deep diagonal.

These are the baselines HAM (Jacobs, Gadhikar, Rubio-Madrigal & Burkholz, "Hyperbolic Aware Minimization:
Implicit Bias for Sparsity", ICLR 2026, arXiv 2506.02630) is measured against: HAM reproduces the hyperbolic
geometry of ``m * w`` with a multiplicative mirror step and no extra memory, while these wrappers implement the
overparameterisation itself. The model keeps ordinary parameters ``x``; for every masked leaf the wrapper state
owns the factors ``m, w`` and the inner optimizer runs on them (update rule: :func:`pointwise_overparam`).

Geometry (gradient flow, no decay): ``dx/dt = -(m^2 + w^2) g = -sqrt(c^2 + 4 x^2) g`` with the balance
``c = m^2 - w^2`` conserved: large ``|c|`` behaves like plain GD (L2), ``c -> 0`` gives the hyperbolic/L1 bias
with an inverse metric ``2|x|`` that vanishes at zero (the "small inverse metric" HAM fixes). Weight decay
``lam`` shrinks the balance, ``c_{k+1} = ((1 - eta lam)^2 - eta^2 g^2) c_k`` under SGD: the L2 -> L1 transition
of "Mask in the Mirror".

Memory: the state stores ``m``, ``w`` and the inner state built for both, ``(2 + 2 s) * P`` numbers instead of
``s * P`` (``s`` slots per parameter: SGD 0, momentum 1, Adam 2): 3x for Adam, 4x for momentum SGD; HAM adds
nothing. :func:`state_nbytes` measures it for a given model.

Params must equal ``m * w``: entries changed outside the optimizer (a sparsifier, an edited checkpoint) are
re-factorised at the next update, keeping each entry's balance and the sign of ``m``. A pruned entry
(``x = 0``) thus gets ``w = 0`` and ``|m| = sqrt(c)`` (for ``c >= 0``): it can regrow if its gradient is not
masked.

Deep diagonal ``x = u^L - v^L`` (:func:`deep_diagonal`): steepest mirror flows (Jacobs, Zhou & Burkholz, "Never
Saddle for Reparameterized Steepest Descent as Mirror Flow", ICLR 2026), with positive elementwise factors (our
choice). Small initialisation puts ``x = 0`` at a saddle, so the loss stays on a plateau before it drops;
:func:`ham_optax.metrics.escape_step` measures how long.
"""

from ham_optax._src.deep_diagonal import DeepDiagonalState, deep_diagonal
from ham_optax._src.overparam import (
  OverparamState,
  factorize,
  pilot,
  pilot_schedule,
  pointwise_overparam,
  sign_in,
  spred,
  state_nbytes,
)

__all__ = [
  "DeepDiagonalState",
  "deep_diagonal",
  "OverparamState",
  "factorize",
  "pilot",
  "pilot_schedule",
  "pointwise_overparam",
  "sign_in",
  "spred",
  "state_nbytes",
]
