"""Tests for the empirical graphon of a mask (NumPy reference, sampling error, known block patterns)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ham_optax.metrics import empirical_graphon, graphon_distance


def _np_graphon(m, r):
  m = np.asarray(m, np.float64)
  m = m[np.argsort(-m.sum(1), kind="stable")][:, np.argsort(-m.sum(0), kind="stable")]
  rb = np.arange(m.shape[0]) * r // m.shape[0]
  cb = np.arange(m.shape[1]) * r // m.shape[1]
  return np.array([[m[rb == a][:, cb == b].mean() for b in range(r)] for a in range(r)])


def test_uniform_random_mask_is_flat():
  p, n_in, n_out, r = 0.3, 512, 384, 8
  m = jax.random.bernoulli(jax.random.PRNGKey(0), p, (n_in, n_out))
  w = np.asarray(jax.jit(empirical_graphon, static_argnums=1)(m, r))
  # Degree sorting spreads block densities by about the degree std; 4 sigma of the smaller side bounds it.
  tol = 4 * np.sqrt(p * (1 - p) / min(n_in, n_out))
  assert np.abs(w - p).max() < tol
  assert abs(w.mean() - float(m.mean())) < 1e-5


def test_block_pattern_recovered_after_shuffling():
  # Two-community mask: hubs (first quarter of rows / half of columns) connect to everything, the rest only
  # to hubs, then rows and columns are shuffled; the graphon at resolution 4 recovers the pattern.
  n_in, n_out = 64, 48
  m = np.zeros((n_in, n_out))
  m[: n_in // 4, :] = 1
  m[:, : n_out // 2] = 1
  rng = np.random.default_rng(0)
  shuffled = m[rng.permutation(n_in)][:, rng.permutation(n_out)]
  w = np.asarray(empirical_graphon(jnp.asarray(shuffled), 4))
  expected = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0]], float)
  np.testing.assert_allclose(w, expected)


@pytest.mark.parametrize("shape,r", [((37, 23), 5), ((16, 16), 16), ((20, 50), 3)])
def test_matches_numpy_reference(shape, r):
  m = jax.random.bernoulli(jax.random.PRNGKey(1), 0.4, shape)
  np.testing.assert_allclose(empirical_graphon(m, r), _np_graphon(m, r), atol=1e-6)


def test_distance_and_errors():
  assert float(graphon_distance(jnp.full((3, 3), 0.2), jnp.full((3, 3), 0.5))) == pytest.approx(0.3)
  with pytest.raises(ValueError, match="resolution"):
    empirical_graphon(jnp.ones((4, 4)), 8)
  with pytest.raises(ValueError, match="2-D"):
    empirical_graphon(jnp.ones((4, 4, 4)), 2)
  with pytest.raises(ValueError, match="shapes"):
    graphon_distance(jnp.ones((2, 2)), jnp.ones((3, 3)))
