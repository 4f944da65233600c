"""ham_optax: Hyperbolic Aware Minimization (HAM) for JAX and optax.

HAM (Jacobs, Gadhikar, Rubio-Madrigal, Burkholz, ICLR 2026, arXiv:2506.02630) alternates any optimizer's step with
a multiplicative hyperbolic mirror step ``x <- x_half * exp(-lr * (alpha * sign(x_half) * g + beta))``.
"""

from ham_optax._src.aliases import ham_adam, ham_adamw, ham_sgd
from ham_optax._src.ham import HamState, ham
from ham_optax._src.hyperbolic import HyperbolicStepState, hyperbolic_step
from ham_optax._src.masking import default_mask

__version__ = "0.1.0"

__all__ = [
  "HamState",
  "HyperbolicStepState",
  "default_mask",
  "ham",
  "ham_adam",
  "ham_adamw",
  "ham_sgd",
  "hyperbolic_step",
]
