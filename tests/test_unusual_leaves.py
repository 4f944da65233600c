"""Every transform of the overparameterisation, NanoAdam and sparsity modules (and HAM's ``max_weight_norm``) over
a params tree with a zero-size kernel, a Python-float leaf and an integer leaf, as ``ham`` itself handles them."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ham_optax
from ham_optax import overparam
from ham_optax import sparsity as sp


def _floating(p):
  return jax.tree.map(lambda x: bool(jnp.issubdtype(jnp.result_type(x), jnp.floating)), p)


TRANSFORMS = {
  "nanoadam": lambda: ham_optax.nanoadam(0.1, 0.5, refresh_every=2),
  "nanoadam_every_float_leaf": lambda: ham_optax.nanoadam(0.1, 0.5, refresh_every=2, mask=_floating),
  "ham_max_weight_norm": lambda: ham_optax.ham(
    optax.sgd(0.1), 0.1, max_weight_norm=10.0, max_weight_norm_scope="all"
  ),
  "deep_diagonal": lambda: overparam.deep_diagonal(optax.sgd(0.1, momentum=0.9), depth=2, init_scale=0.5),
  "spred": lambda: overparam.spred(optax.sgd(0.1, momentum=0.9), 0.01),
  "pilot": lambda: overparam.pilot(optax.sgd(0.1), 0.01, switch_step=2),
  "sign_in": lambda: overparam.sign_in(optax.adam(0.1), rescale_every=2),
  "random_pruning": lambda: sp.random_pruning(optax.sgd(0.1), 0.5),
  "magnitude_pruning": lambda: sp.magnitude_pruning(
    optax.sgd(0.1), 0.5, begin_step=0, end_step=2, frequency=1
  ),
  "acdc": lambda: sp.acdc(optax.sgd(0.1, momentum=0.9), 0.5, total_steps=4, phase_steps=1),
  "rigl": lambda: sp.rigl(optax.adam(0.1), 0.5, update_every=1, end_step=3),
}


def _tree(float_leaf):
  return {
    "k": jnp.linspace(-2.0, 2.0, 12).reshape(4, 3),
    "z": jnp.zeros((0, 3)),
    "f": float_leaf,
    "i": jnp.arange(3, dtype=jnp.int32),
  }


def _grads():
  return {
    "k": jnp.linspace(1.0, -1.0, 12).reshape(4, 3),
    "z": jnp.zeros((0, 3)),
    "f": 0.5,
    "i": jnp.zeros(3, jnp.int32),
  }


def _run(tx, params, steps=4):
  state = tx.init(params)
  update = jax.jit(tx.update)
  for _ in range(steps):
    updates, state = update(_grads(), state, params)
    assert jax.tree.structure(updates) == jax.tree.structure(params)
    assert all(
      jnp.shape(u) == jnp.shape(p)
      for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params), strict=True)
    )
    params = optax.apply_updates(params, updates)
  return params


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_zero_size_python_float_and_integer_leaves(name):
  params = _run(TRANSFORMS[name](), _tree(1.5))
  assert params["z"].shape == (0, 3)
  assert params["i"].dtype == jnp.int32
  np.testing.assert_array_equal(params["i"], [0, 1, 2])  # zero gradient: the integer leaf keeps its values
  assert np.isfinite(np.asarray(params["k"])).all() and np.isfinite(float(params["f"]))
  assert float(params["f"]) < 1.5  # the Python-float leaf trained against its positive gradient
  assert not np.array_equal(np.asarray(params["k"]), np.asarray(_tree(1.5)["k"]))
  # a Python float behaves as the same value in a 0-d float32 array
  ref = _run(TRANSFORMS[name](), _tree(jnp.asarray(1.5, jnp.float32)))
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(ref), strict=True):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=1e-6)


# A selected scalar leaf (0-d array or Python float) is a 1-entry layer in every sparsifier: never pruned away.
SCALAR_METHODS = {
  "random_erk": lambda: sp.random_pruning(optax.sgd(0.1), 0.5, prunable=True),
  "random_uniform": lambda: sp.random_pruning(optax.sgd(0.1), 0.5, distribution="uniform", prunable=True),
  "rigl_erk": lambda: sp.rigl(optax.sgd(0.1), 0.5, update_every=1, end_step=4, prunable=True),
  "rigl_uniform": lambda: sp.rigl(
    optax.sgd(0.1), 0.5, update_every=1, end_step=4, distribution="uniform", prunable=True
  ),
  "gmp": lambda: sp.magnitude_pruning(
    optax.sgd(0.1), 0.5, begin_step=0, end_step=2, frequency=1, initial_sparsity=0.5, prunable=True
  ),
  "gmp_layer": lambda: sp.magnitude_pruning(
    optax.sgd(0.1),
    0.5,
    begin_step=0,
    end_step=2,
    frequency=1,
    initial_sparsity=0.5,
    scope="layer",
    prunable=True,
  ),
  "acdc": lambda: sp.acdc(optax.sgd(0.1), 0.5, sparse_phases=[(0, None)], prunable=True),
}


@pytest.mark.parametrize("scalar", [jnp.float32(0.7), 0.7], ids=["0d_array", "python_float"])
@pytest.mark.parametrize("method", sorted(SCALAR_METHODS))
def test_a_selected_scalar_leaf_is_a_one_entry_layer_in_every_method(method, scalar):
  params = {"s": scalar, "w": jnp.arange(1.0, 17.0).reshape(4, 4)}
  tx = SCALAR_METHODS[method]()
  state = tx.init(params)
  p = sp.apply_masks(params, state)
  for _ in range(3):
    g = jax.tree.map(lambda x: jnp.ones_like(jnp.asarray(x)), p)
    u, state = jax.jit(tx.update)(g, state, p)
    p = optax.apply_updates(p, u)
  masks = sp.get_masks(state)
  assert masks["s"].shape == () and bool(masks["s"])  # never pruned away, as any 1-entry layer
  assert int((~masks["w"]).sum()) == 8
  assert float(p["s"]) == pytest.approx(0.7 - 3 * 0.1)
