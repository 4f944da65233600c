"""The pointwise overparameterisation ``x = m * w`` as an optax wrapper: spred, PILoT, Sign-In."""

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
