"""ham_optax: Hyperbolic Aware Minimization (HAM) for JAX and optax.

HAM (Jacobs, Gadhikar, Rubio-Madrigal, Burkholz, ICLR 2026, arXiv:2506.02630) alternates any optimizer's step with
a multiplicative hyperbolic mirror step ``x <- x_half * exp(-lr * (alpha * sign(x_half) * g + beta))``.

Public API:

- the core: :func:`ham`, :func:`hyperbolic_step`, :func:`ham_sgd`, :func:`ham_adam`, :func:`ham_adamw`;
- :func:`suggest_alpha`: an alpha for your model, optimizer and learning rate from a short calibration run;
- :mod:`ham_optax.geometry`: HAM's inverse metric, mirror map, potential, Bregman divergence and projection;
- :mod:`ham_optax.sparsity`: random pruning at init, gradual magnitude pruning, AC/DC, RigL, STR layers;
- :mod:`ham_optax.metrics`: sparsity, sign flips, weights near zero, mean inverse metric, HAM stability, graphons;
- :mod:`ham_optax.overparam`: the m * w family (spred, PILoT, Sign-In, deep diagonal); :func:`nanoadam`;
- :mod:`ham_optax.schedules`: weight-decay (or beta) switch-off;
- beside the library, ``examples/ham_optax_examples``: Flax models, data, the train loop, the ``ham-optax`` command.
"""

from ham_optax import geometry, metrics, overparam, schedules, sparsity
from ham_optax._src.aliases import ham_adam, ham_adamw, ham_sgd
from ham_optax._src.alpha import (
  DEFAULT_TARGET_RATIO,
  PAPER_IMAGENET_ALPHA,
  CalibrationDivergedError,
  suggest_alpha,
)
from ham_optax._src.ham import HamState, ham
from ham_optax._src.hyperbolic import HyperbolicStepState, hyperbolic_step
from ham_optax._src.masking import default_mask
from ham_optax._src.nanoadam import NanoAdamState, nanoadam, nanoadam_default_mask, selected_count

__version__ = "0.1.0"

__all__ = [
  "CalibrationDivergedError",
  "DEFAULT_TARGET_RATIO",
  "HamState",
  "HyperbolicStepState",
  "NanoAdamState",
  "PAPER_IMAGENET_ALPHA",
  "default_mask",
  "geometry",
  "ham",
  "ham_adam",
  "ham_adamw",
  "ham_sgd",
  "hyperbolic_step",
  "metrics",
  "nanoadam",
  "nanoadam_default_mask",
  "overparam",
  "schedules",
  "selected_count",
  "sparsity",
  "suggest_alpha",
]
