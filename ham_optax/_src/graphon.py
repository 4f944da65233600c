"""Empirical graphons of pruning masks (jit-friendly).

The graphon limit hypothesis ("Understanding Neural Network Pruning via Infinite Width Analysis", NeurIPS 2025)
asks whether, as the width grows, a pruning method's masks (bipartite graphs between input and output neurons)
converge to a graphon ``W: [0, 1]^2 -> [0, 1]``. Following the paper's abstract; the degree-sorted step-function
estimator and the distance are our choices.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ham_optax._src import checks


def empirical_graphon(mask: jax.Array, resolution: int = 16) -> jax.Array:
  """The degree-sorted step-function graphon of a layer's mask, as a ``resolution x resolution`` density image.

  For a mask ``M`` of shape ``(n_in, n_out)`` (a Flax ``Dense`` kernel's layout; for a convolution pass
  ``mask.reshape(-1, n_out)``), rows and columns are sorted by decreasing degree (ties by index). Position ``p``
  of ``n`` ordered neurons lies in block ``floor(p r / n)`` (``r`` = resolution), and

  .. math::
    W[a, b] = \\frac{1}{|I_a| |J_b|} \\sum_{i \\in I_a, j \\in J_b} M_{\\pi(i) \\sigma(j)},

  the fraction of kept weights between row block ``a`` and column block ``b``: a step function on ``[0, 1]^2``
  comparable across widths (a uniform random mask of density ``p`` gives ``W ~ p``). Works for any float or
  bool mask with entries in [0, 1].

  Args:
    mask: array of shape ``(n_in, n_out)`` with ``n_in, n_out >= resolution``.
    resolution: number of blocks per side (static int >= 1).

  Returns:
    float32 array ``(resolution, resolution)`` of block densities.

  Example:
    >>> import jax.numpy as jnp
    >>> from ham_optax.metrics import empirical_graphon
    >>> m = jnp.zeros((4, 4)).at[:2, :].set(1).at[:, :2].set(1)   # rows/cols 0-1 are hubs
    >>> empirical_graphon(m, 2).tolist()
    [[1.0, 1.0], [1.0, 0.0]]
  """
  owner = "empirical_graphon"
  resolution = checks.check_int(resolution, "resolution", 1, owner=owner)
  checks.check_ndim(mask, "mask", 2, owner=owner, layout=" (n_in, n_out)")
  n_in, n_out = jnp.shape(mask)
  checks.check_order(
    resolution, "`resolution`", min(n_in, n_out), "the neuron count of `mask`", strict=False, owner=owner
  )
  m = jnp.asarray(mask, jnp.float32)
  m = m[jnp.argsort(-m.sum(1), stable=True)]  # rows by degree
  m = m[:, jnp.argsort(-m.sum(0), stable=True)]  # columns by degree
  row_oh, col_oh = (
    jax.nn.one_hot(jnp.arange(n) * resolution // n, resolution, dtype=jnp.float32) for n in (n_in, n_out)
  )
  return (row_oh.T @ m @ col_oh) / jnp.outer(row_oh.sum(0), col_oh.sum(0))


def graphon_distance(w1: jax.Array, w2: jax.Array) -> jax.Array:
  """Mean absolute difference ``mean |W1 - W2|`` of two graphon images of the same resolution.

  The L1 distance of the two step functions on ``[0, 1]^2``, an upper bound of their cut distance for the given
  ordering (the cut distance itself needs an optimisation over orderings), e.g. of :func:`empirical_graphon`'s.

  Example:
    >>> import jax.numpy as jnp
    >>> from ham_optax.metrics import graphon_distance
    >>> float(graphon_distance(jnp.ones((2, 2)), jnp.zeros((2, 2))))
    1.0
  """
  checks.check_same_shape(w1, w2, owner="graphon_distance")
  return jnp.mean(jnp.abs(jnp.asarray(w1) - jnp.asarray(w2)))
