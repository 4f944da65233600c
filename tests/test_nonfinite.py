"""Non-finite input: NaN stays NaN exactly where plain optax gives NaN, an infinite weight stays infinite."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ham_optax

INNERS = {
  "sgd": lambda lr: optax.sgd(lr),
  "momentum": lambda lr: optax.sgd(lr, momentum=0.9),
  "adam": lambda lr: optax.adam(lr),
  "adamw": lambda lr: optax.adamw(lr, weight_decay=1e-2),
}


def _params():
  rng = np.random.default_rng(0)
  return {
    "w": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32),
    "b": jnp.asarray(rng.normal(size=4), jnp.float32),
  }


def _grads(step, bad=None):
  """Finite gradients; at step 0 the entries in ``bad`` (leaf name -> index) hold NaN."""
  rng = np.random.default_rng(step + 1)
  g = {"w": rng.normal(size=(3, 4)), "b": rng.normal(size=4)}
  if step == 0 and bad:
    for name, idx in bad.items():
      g[name][idx] = np.nan
  return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), g)


def _trajectory(tx, steps=4, bad=None):
  params = _params()
  state = tx.init(params)
  update = jax.jit(tx.update)
  out = []
  for k in range(steps):
    u, state = update(_grads(k, bad), state, params)
    params = optax.apply_updates(params, u)
    out.append(params)
  return out


@pytest.mark.parametrize("inner", list(INNERS))
def test_nan_gradient_entry_gives_nan_exactly_where_optax_does(inner):
  bad = {"w": (1, 2), "b": (3,)}
  plain = _trajectory(INNERS[inner](0.1), bad=bad)
  ham = _trajectory(ham_optax.ham(INNERS[inner](0.1), 0.1, alpha=1.0), bad=bad)
  for k, (want, got) in enumerate(zip(plain, ham, strict=True)):
    for name in ("w", "b"):
      nan_want, nan_got = np.isnan(np.asarray(want[name])), np.isnan(np.asarray(got[name]))
      assert nan_want[bad[name]], (inner, k, name)  # the injected NaN reaches optax's weights
      np.testing.assert_array_equal(nan_got, nan_want, err_msg=f"{inner}, step {k}, {name}")


@pytest.mark.parametrize("inner", list(INNERS))
def test_nan_learning_rate_schedule_gives_nan_where_optax_does(inner):
  lr = lambda k: jnp.where(k == 1, jnp.nan, 0.1)  # noqa: E731
  plain = _trajectory(INNERS[inner](lr), steps=2)[-1]
  ham = _trajectory(ham_optax.ham(INNERS[inner](lr), lr, alpha=1.0), steps=2)[-1]
  for name in ("w", "b"):
    nan_want = np.isnan(np.asarray(plain[name]))
    assert nan_want.all()
    np.testing.assert_array_equal(np.isnan(np.asarray(ham[name])), nan_want)


@pytest.mark.parametrize("name", ["alpha", "beta"])
def test_nan_alpha_or_beta_schedule_makes_the_mirror_step_nan(name):
  sched = lambda k: jnp.where(k == 1, jnp.nan, 0.5)  # noqa: E731
  tx = ham_optax.ham(optax.sgd(0.1), 0.1, **{name: sched})
  new = _trajectory(tx, steps=2)
  assert np.isfinite(np.asarray(new[0]["w"])).all()
  assert np.isnan(np.asarray(new[1]["w"])).all()  # the kernel takes the mirror step: visibly broken
  assert np.isfinite(np.asarray(new[1]["b"])).all()  # the bias takes SGD's step alone


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_inner_update_is_not_turned_into_a_zero_update(bad):
  # The hand-built chain: an inner update that is NaN gives NaN, one that is infinite gives a non-finite or
  # saturated weight; never the old weight.
  p = {"w": jnp.array([[1.0, -2.0, 0.5]])}
  g = {"w": jnp.array([[0.1, 0.2, 0.3]])}
  u = {"w": jnp.array([[bad, 0.0, 0.0]])}
  step = ham_optax.hyperbolic_step(0.1, alpha=1.0)
  out, _ = step.update(u, step.init(p), p, grad=g)
  new = np.asarray(optax.apply_updates(p, out)["w"])
  if np.isnan(bad):
    assert np.isnan(new[0, 0])
  else:
    assert not np.isfinite(new[0, 0]) or abs(new[0, 0]) > 1e38
    assert np.sign(new[0, 0]) == np.sign(bad)
  assert np.isfinite(new[0, 1:]).all()


@pytest.mark.parametrize("max_weight_norm,scope", [(None, "masked"), (1000.0, "masked"), (1000.0, "all")])
@pytest.mark.parametrize("sign_from", ["x_half", "x"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_an_infinite_weight_stays_infinite(max_weight_norm, scope, sign_from, dtype):
  # "w" takes the mirror step; the 1-D "b" only the inner step (and, with scope "all", the norm cap).
  p = {
    "w": jnp.array([[jnp.inf, 1.0], [-jnp.inf, 3.0]], dtype),
    "b": jnp.array([jnp.inf, -jnp.inf, 2.0], dtype),
  }
  tx = ham_optax.ham(
    optax.sgd(0.1, momentum=0.9),
    0.1,
    alpha=200.0,
    beta=1e-3,
    max_weight_norm=max_weight_norm,
    max_weight_norm_scope=scope,
    sign_from=sign_from,
  )
  state = tx.init(p)
  for g in (1.0, -1.0, 0.0):  # the exponent at +c, at -c and zero (where inf * 0 could give NaN)
    grads = {k: jnp.full(v.shape, g, dtype) for k, v in p.items()}
    u, state = tx.update(grads, state, p)
    p = optax.apply_updates(p, u)
    w, b = (np.asarray(p[k], np.float32) for k in ("w", "b"))
    assert w[0, 0] == np.inf and w[1, 0] == -np.inf and b[0] == np.inf and b[1] == -np.inf, (g, w, b)
    assert np.isfinite(w[:, 1]).all() and np.isfinite(b[2]), (g, w, b)


WRAPPERS = {
  "nanoadam": lambda: ham_optax.nanoadam(0.1, fraction=0.5),
  "magnitude": lambda: ham_optax.sparsity.magnitude_pruning(
    optax.sgd(0.1, 0.9), 0.5, begin_step=0, end_step=2, frequency=1
  ),
  "acdc": lambda: ham_optax.sparsity.acdc(optax.sgd(0.1, 0.9), 0.5, total_steps=4),
  "spred": lambda: ham_optax.overparam.spred(optax.sgd(0.1, 0.9), 1e-4),
  "sign_in": lambda: ham_optax.overparam.sign_in(optax.sgd(0.1, 0.9), 1),
  "pilot": lambda: ham_optax.overparam.pilot(optax.sgd(0.1, 0.9), 1e-4, 2),
  "deep_diagonal": lambda: ham_optax.overparam.deep_diagonal(optax.sgd(0.1, 0.9), 2),
}


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("name", list(WRAPPERS))
def test_a_nan_gradient_on_a_kept_weight_stays_visible_in_every_wrapper(name, jit):
  """NaN in the gradient of the largest weight (kept by every magnitude rule) gives NaN params, eager or jitted:
  never an error from a check on internal values, never a weight pruned out of sight."""
  tx = WRAPPERS[name]()
  update = jax.jit(tx.update) if jit else tx.update
  p = {"w": jnp.arange(1.0, 13.0).reshape(3, 4), "b": jnp.zeros(4)}
  state = tx.init(p)
  for step in range(3):
    g = jax.tree.map(lambda x: 0.01 * jnp.ones_like(x), p)
    if step == 1:
      g["w"] = g["w"].at[2, 3].set(jnp.nan)
    u, state = update(g, state, p)
    p = optax.apply_updates(p, u)
  assert bool(jnp.isnan(p["w"]).any())


def test_top_k_mask_ranks_nan_first():
  from ham_optax._src.sparsity import core

  keep = core.top_k_mask(jnp.array([0.5, jnp.nan, 2.0, 1.0]), 2)
  np.testing.assert_array_equal(keep, [False, True, True, False])


@pytest.mark.parametrize("method", ["magnitude", "acdc"])
@pytest.mark.parametrize(("sparsity", "active_a"), [(0.75, 1), (0.5, 3)])
def test_nan_scores_do_not_take_the_entries_kept_per_layer(method, sparsity, active_a):
  """Global magnitude masks keep each layer's largest entry above every score, NaN included: an all-NaN layer does
  not prune another layer away, and NaN still ranks above every finite magnitude where the budget allows."""
  make = {
    "magnitude": lambda: ham_optax.sparsity.magnitude_pruning(
      optax.sgd(0.0), sparsity, begin_step=0, end_step=1, frequency=1, initial_sparsity=sparsity
    ),
    "acdc": lambda: ham_optax.sparsity.acdc(optax.sgd(0.0), sparsity, sparse_phases=[(0, None)]),
  }
  p = {"a": jnp.full((2, 2), jnp.nan), "b": jnp.array([[1.0, 2.0], [3.0, 4.0]])}
  tx = make[method]()
  _, state = tx.update(jax.tree.map(jnp.zeros_like, p), tx.init(p), p)
  masks = ham_optax.sparsity.get_masks(state)
  assert int(masks["a"].sum()) == active_a  # the NaN weights stay visible
  np.testing.assert_array_equal(masks["b"], [[False, False], [False, True]])  # b keeps its largest weight
