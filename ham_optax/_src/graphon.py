"""Empirical graphons of pruning masks (jit-friendly).

The graphon limit hypothesis (Graphon Limit Hypothesis paper, NeurIPS 2025: "Understanding Neural Network
Pruning via Infinite Width Analysis") views a layer's binary mask as a bipartite graph between input and
output neurons and asks whether, as the width grows, the masks a pruning method produces converge to a graphon
``W: [0, 1]^2 -> [0, 1]``. This implementation follows the paper's abstract; the estimator below (neurons
ordered by degree, block densities on a regular grid) is the standard degree-sorted step-function estimate of
a graphon and is our choice, as is the distance used to compare widths.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ham_optax._src import checks


def empirical_graphon(mask: jax.Array, resolution: int = 16) -> jax.Array:
  """The degree-sorted step-function graphon of a layer's mask, as a ``resolution x resolution`` density image.

  For a mask ``M`` of shape ``(n_in, n_out)`` (rows: input neurons, columns: output neurons; a Flax ``Dense``
  kernel's layout; any trailing kernel dimensions of a convolution are folded into the rows' count first: pass
  ``mask.reshape(-1, n_out)`` or sum over the spatial axes yourself), rows are sorted by decreasing degree
  ``sum_j M_ij`` and columns by decreasing degree ``sum_i M_ij`` (ties by index, stable). Position ``p`` of
  ``n`` ordered neurons lies in block ``floor(p r / n)`` (``r`` = resolution; requires ``n >= r`` for every
  block to be non-empty), and

  .. math::
    W[a, b] = \\frac{1}{|I_a| |J_b|} \\sum_{i \\in I_a, j \\in J_b} M_{\\pi(i) \\sigma(j)},

  the fraction of kept weights between row block ``a`` and column block ``b``. The result is a step function
  on ``[0, 1]^2`` comparable across widths. A uniform random mask of density ``p`` gives ``W ~ p`` everywhere up
  to sampling error (of order the degree spread, ``sqrt(p (1 - p) / n)``); structured masks give their block
  pattern. Jit-friendly (``resolution`` static); works for any float or bool mask (entries in [0, 1]).

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
  resolution = checks.check_int(resolution, "resolution", 1, owner="empirical_graphon")
  checks.check_ndim(mask, "mask", 2, owner="empirical_graphon", layout=" (n_in, n_out)")
  n_in, n_out = jnp.shape(mask)
  owner = "empirical_graphon"
  checks.check_order(
    resolution, "`resolution`", min(n_in, n_out), "the neuron count of `mask`", strict=False, owner=owner
  )
  m = jnp.asarray(mask, jnp.float32)
  m = m[jnp.argsort(-m.sum(1), stable=True)][
    :, jnp.argsort(-m.sum(0), stable=True)
  ]  # rows, columns by degree
  # Position p of n ordered neurons lies in block floor(p r / n): one-hot (n, r) block memberships.
  row_oh, col_oh = (
    jax.nn.one_hot(jnp.arange(n) * resolution // n, resolution, dtype=jnp.float32) for n in (n_in, n_out)
  )
  return (row_oh.T @ m @ col_oh) / jnp.outer(row_oh.sum(0), col_oh.sum(0))


def graphon_distance(w1: jax.Array, w2: jax.Array) -> jax.Array:
  """Mean absolute difference ``mean |W1 - W2|`` of two graphon images of the same resolution.

  This is the L1 distance of the two step functions on ``[0, 1]^2`` (an upper bound of their cut distance for
  the given ordering). Our choice for comparing masks across widths: computing the cut distance itself would
  need an optimisation over orderings.

  Args:
    w1: ``(r, r)`` graphon image, e.g. from :func:`empirical_graphon`.
    w2: ``(r, r)`` graphon image of the same shape.

  Returns:
    A scalar.

  Example:
    >>> import jax.numpy as jnp
    >>> from ham_optax.metrics import graphon_distance
    >>> float(graphon_distance(jnp.ones((2, 2)), jnp.zeros((2, 2))))
    1.0
  """
  checks.check_same_shape(w1, w2, owner="graphon_distance")
  return jnp.mean(jnp.abs(jnp.asarray(w1) - jnp.asarray(w2)))
