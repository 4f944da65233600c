"""Behaviour of ham / hyperbolic_step / aliases: reductions, decay, clamp, masks and bad input."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ham_optax


def _params():
  return {
    "dense": {
      "kernel": jnp.array([[0.5, -1.0, 0.0], [2.0, -0.25, 1e-3]]),
      "bias": jnp.array([0.1, -0.2, 0.3]),
    },
    "norm": {"scale": jnp.ones(3)},
  }


def _grads(params, seed=0):
  keys = jax.random.split(jax.random.PRNGKey(seed), len(jax.tree.leaves(params)))
  leaves, treedef = jax.tree.flatten(params)
  return jax.tree.unflatten(
    treedef, [jax.random.normal(k, p.shape) for k, p in zip(keys, leaves, strict=True)]
  )


def _run(tx, params, steps=10):
  state = tx.init(params)
  update = jax.jit(tx.update)
  for k in range(steps):
    u, state = update(_grads(params, k), state, params)
    params = optax.apply_updates(params, u)
  return params


@pytest.mark.parametrize(
  "make",
  [
    lambda: optax.sgd(0.1),
    lambda: optax.sgd(0.1, momentum=0.9),
    lambda: optax.adam(1e-2),
    lambda: optax.adamw(1e-2),
  ],
  ids=["sgd", "momentum", "adam", "adamw"],
)
def test_alpha_beta_zero_is_the_inner_optimizer_bit_for_bit(make):
  params = _params()
  got = _run(ham_optax.ham(make(), 0.1, alpha=0.0, beta=0.0), params)
  want = _run(make(), params)
  chex.assert_trees_all_equal(got, want)


def test_beta_alone_is_multiplicative_decay_on_masked_leaves():
  params = _params()
  lr, beta, steps = 0.1, 0.5, 7
  tx = ham_optax.ham(optax.sgd(lr), lr, alpha=0.0, beta=beta)
  state = tx.init(params)
  x = params
  zero = jax.tree.map(jnp.zeros_like, params)
  for _ in range(steps):
    u, state = tx.update(zero, state, x)
    x = optax.apply_updates(x, u)
  np.testing.assert_allclose(
    x["dense"]["kernel"], params["dense"]["kernel"] * np.exp(-lr * beta * steps), rtol=1e-6
  )
  chex.assert_trees_all_equal(x["dense"]["bias"], params["dense"]["bias"])  # rank 1: not in the default mask
  chex.assert_trees_all_equal(x["norm"]["scale"], params["norm"]["scale"])


def test_hand_built_chain_equals_ham():
  params = _params()
  lr = optax.cosine_decay_schedule(0.1, 20)
  ham_tx = ham_optax.ham(optax.sgd(lr, momentum=0.9), lr, alpha=5.0, beta=0.01)
  chain = optax.chain(optax.sgd(lr, momentum=0.9), ham_optax.hyperbolic_step(lr, alpha=5.0, beta=0.01))
  s1, s2 = ham_tx.init(params), chain.init(params)
  p1 = p2 = params
  for k in range(5):
    g = _grads(params, k)
    u1, s1 = ham_tx.update(g, s1, p1)
    u2, s2 = chain.update(g, s2, p2, grad=g)
    p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
  chex.assert_trees_all_close(p1, p2, rtol=0, atol=0)


def test_aliases_share_the_learning_rate():
  params = _params()
  lr = optax.linear_schedule(0.1, 0.01, 10)
  pairs = [
    (ham_optax.ham_sgd(lr, 0.9, alpha=3.0), ham_optax.ham(optax.sgd(lr, 0.9), lr, 3.0)),
    (ham_optax.ham_adam(lr, alpha=3.0), ham_optax.ham(optax.adam(lr), lr, 3.0)),
    (
      ham_optax.ham_adamw(lr, weight_decay=0.1, alpha=3.0),
      ham_optax.ham(optax.adamw(lr, weight_decay=0.1), lr, 3.0),
    ),
  ]
  for a, b in pairs:
    chex.assert_trees_all_equal(_run(a, params, 4), _run(b, params, 4))


def test_exponent_is_clamped_for_huge_gradients():
  p = {"w": jnp.array([[1.0, -1.0, 2.0]])}
  g = {"w": jnp.array([[-1e30, -1e30, 1e30]])}
  step = ham_optax.hyperbolic_step(0.1, alpha=200.0, beta=0.0, max_exponent=3.0)
  u, _ = step.update(jax.tree.map(jnp.zeros_like, p), step.init(p), p, grad=g)
  new = p["w"] + u["w"]
  # sign(x)*g = -1e30 for the first entry (grows by e^3), +1e30 for the others (shrink by e^-3).
  np.testing.assert_allclose(new, [[np.exp(3.0), -np.exp(-3.0), 2 * np.exp(-3.0)]], rtol=1e-6)


def test_zeros_stay_zero_and_signs_are_kept():
  p = {"w": jnp.array([[0.0, 1e-30, -1e-30, 3.0, -3.0]])}
  g = {"w": jnp.array([[5.0, -7.0, 7.0, -2.0, 2.0]])}
  step = ham_optax.hyperbolic_step(0.5, alpha=50.0)
  u, _ = step.update(jax.tree.map(jnp.zeros_like, p), step.init(p), p, grad=g)
  new = p["w"] + u["w"]
  assert new[0, 0] == 0.0
  np.testing.assert_array_equal(np.sign(new), np.sign(p["w"]))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16", "float64"])
def test_a_strong_shrink_never_flips_the_sign_of_x_half(dtype):
  # Exponents far below -16 (max_exponent 80): the rounding of x_half = p + u must not decide the new sign.
  jax.config.update("jax_enable_x64", dtype == "float64")  # restored by the conftest fixture
  rng = np.random.default_rng(7)
  flips = 0
  for _ in range(40):
    p, u = (
      jnp.asarray(rng.normal(size=(8, 8)) * 10.0 ** rng.uniform(-8, 3, (8, 8)), dtype) for _ in range(2)
    )
    g = jnp.asarray(rng.normal(size=(8, 8)) * 10.0 ** rng.uniform(-1, 3), dtype)
    step = ham_optax.hyperbolic_step(
      float(10 ** rng.uniform(-1, 1)), alpha=300.0, beta=0.0, max_exponent=80.0
    )
    d, _ = step.update(u, step.init(p), p, grad=g)
    x_half = np.asarray(p, np.float64) + np.asarray(u, np.float64)
    flips += int(np.sum(np.sign(np.asarray(optax.apply_updates(p, d), np.float64)) * np.sign(x_half) < 0))
  assert flips == 0


def test_max_weight_norm_clips_each_tensor():
  p = {"a": jnp.full((4, 4), 10.0), "b": jnp.full((2, 2), 0.1)}
  g = jax.tree.map(jnp.zeros_like, p)
  tx = ham_optax.ham(optax.sgd(0.1), 0.1, alpha=1.0, beta=0.0, max_weight_norm=5.0)
  u, _ = tx.update(g, tx.init(p), p)
  new = optax.apply_updates(p, u)
  np.testing.assert_allclose(jnp.linalg.norm(new["a"]), 5.0, rtol=1e-6)
  chex.assert_trees_all_close(new["b"], p["b"])  # already under the cap: untouched


def test_float16_saturates_instead_of_overflowing():
  p = {"w": jnp.array([[60000.0, -60000.0, 1.0]], jnp.float16)}
  g = {"w": jnp.array([[-1.0, 1.0, 0.0]], jnp.float16)}
  step = ham_optax.hyperbolic_step(1.0, alpha=100.0, beta=0.0)
  u, _ = step.update(jax.tree.map(jnp.zeros_like, p), step.init(p), p, grad=g)
  new = optax.apply_updates(p, u)
  assert new["w"].dtype == jnp.float16
  assert bool(jnp.all(jnp.isfinite(new["w"])))
  np.testing.assert_array_equal(np.sign(new["w"]), np.sign(p["w"]))


def test_sign_from_variants_differ_only_when_the_inner_step_flips_a_sign():
  p = {"w": jnp.array([[0.05, 1.0]])}
  g = {"w": jnp.array([[1.0, 1.0]])}  # sgd(0.1) moves 0.05 -> -0.05 (a flip) and 1.0 -> 0.9 (no flip)
  a = ham_optax.ham(optax.sgd(0.1), 0.1, alpha=2.0, beta=0.0)
  b = ham_optax.ham(optax.sgd(0.1), 0.1, alpha=2.0, beta=0.0, sign_from="x")
  ua, _ = a.update(g, a.init(p), p)
  ub, _ = b.update(g, b.init(p), p)
  xa, xb = p["w"] + ua["w"], p["w"] + ub["w"]
  np.testing.assert_allclose(xa[0, 1], xb[0, 1], rtol=1e-7)
  np.testing.assert_allclose(
    xa[0, 0], -0.05 * np.exp(-0.1 * 2.0 * -1.0), rtol=1e-6
  )  # HYP*: sign(x_half) = -1
  np.testing.assert_allclose(xb[0, 0], -0.05 * np.exp(-0.1 * 2.0 * 1.0), rtol=1e-6)  # GD;HYP: sign(x) = +1


# ----------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
  ("kwargs", "exc", "match"),
  [
    ({"learning_rate": -0.1}, ValueError, "learning_rate must be >= 0"),
    ({"learning_rate": float("nan")}, ValueError, "learning_rate must be finite"),
    ({"learning_rate": float("inf")}, ValueError, "learning_rate must be finite"),
    ({"learning_rate": True}, TypeError, "learning_rate must be a number"),
    ({"learning_rate": "0.1"}, TypeError, "learning_rate must be a number"),
    ({"alpha": float("inf")}, ValueError, "alpha must be finite"),
    ({"beta": float("nan")}, ValueError, "beta must be finite"),
    ({"max_exponent": 0.0}, ValueError, "max_exponent must be > 0"),
    ({"max_exponent": -1.0}, ValueError, "max_exponent must be > 0"),
    ({"max_weight_norm": 0.0}, ValueError, "max_weight_norm must be > 0"),
    ({"sign_from": "before"}, ValueError, "sign_from must be"),
    ({"alpha": jnp.ones(3)}, ValueError, "alpha must be a scalar"),
  ],
)
def test_bad_hyperparameters_fail_at_construction(kwargs, exc, match):
  args = {"learning_rate": 0.1, **kwargs}
  with pytest.raises(exc, match=match):
    ham_optax.ham(optax.sgd(0.1), **args)
  with pytest.raises(exc, match=match):
    ham_optax.hyperbolic_step(**args)


@pytest.mark.parametrize(
  ("factory", "kwargs", "exc", "match"),
  [
    (ham_optax.ham_sgd, {"momentum": -0.5}, ValueError, r"ham_sgd: momentum must be in \[0, 1\)"),
    (ham_optax.ham_sgd, {"momentum": 1.0}, ValueError, r"ham_sgd: momentum must be in \[0, 1\)"),
    (ham_optax.ham_sgd, {"momentum": 0.9, "nesterov": "yes"}, TypeError, "ham_sgd: nesterov must be a bool"),
    (ham_optax.ham_adam, {"b1": 1.5}, ValueError, r"ham_adam: b1 must be in \[0, 1\)"),
    (ham_optax.ham_adam, {"b2": float("nan")}, ValueError, "ham_adam: b2 must be finite"),
    (ham_optax.ham_adam, {"eps": -1e-8}, ValueError, "ham_adam: eps must be >= 0"),
    (ham_optax.ham_adam, {"eps": 0.0, "eps_root": 0.0}, ValueError, "ham_adam: eps and eps_root are both 0"),
    (ham_optax.ham_adamw, {"eps_root": -1.0}, ValueError, "ham_adamw: eps_root must be >= 0"),
    (ham_optax.ham_adamw, {"weight_decay": -1e-4}, ValueError, "ham_adamw: weight_decay must be >= 0"),
    (ham_optax.ham_adamw, {"weight_decay": "0.1"}, TypeError, "ham_adamw: weight_decay must be a number"),
  ],
)
def test_aliases_check_the_inner_optimizers_arguments_at_construction(factory, kwargs, exc, match):
  with pytest.raises(exc, match=match):
    factory(0.1, **kwargs)


def test_aliases_accept_the_inner_optimizers_edge_values():
  for tx in (
    ham_optax.ham_sgd(0.1, momentum=None),
    ham_optax.ham_sgd(0.1, momentum=0.0, nesterov=True),
    ham_optax.ham_adam(0.1, b1=0.0, b2=0.0, eps=0.0, eps_root=1e-8),
    ham_optax.ham_adamw(0.1, weight_decay=0.0),
  ):
    p = {"w": jnp.ones((2, 2))}
    u, _ = tx.update(p, tx.init(p), p)
    assert np.all(np.isfinite(u["w"]))


def test_negative_alpha_reverses_the_bias():
  # The paper uses negative alpha on heterophilic graphs. With alpha < 0 the mirror step multiplies by
  # exp(+lr |alpha| sign(x_half) g): it grows a weight exactly where a positive alpha shrinks it, and vice versa.
  p = {"w": jnp.array([[1.0, -2.0, 0.5, -0.25]])}
  g = {"w": jnp.array([[0.5, 0.5, -1.0, -0.75]])}
  x_half = np.asarray(p["w"], np.float64) - 0.1 * np.asarray(g["w"], np.float64)
  change = {}
  for alpha in (5.0, -5.0):
    tx = ham_optax.ham(optax.sgd(0.1), 0.1, alpha=alpha, beta=0.0)
    u, _ = tx.update(g, tx.init(p), p)
    new = np.asarray(optax.apply_updates(p, u)["w"], np.float64)
    want = x_half * np.exp(-0.1 * alpha * np.sign(x_half) * np.asarray(g["w"], np.float64))
    np.testing.assert_allclose(new, want, rtol=1e-6)
    change[alpha] = np.sign(np.abs(new) - np.abs(x_half))
  assert np.all(change[5.0] != 0)
  np.testing.assert_array_equal(change[-5.0], -change[5.0])
  np.testing.assert_array_equal(change[5.0], [[-1, 1, 1, -1]])  # sign(x_half) * g > 0 shrinks for alpha > 0


@pytest.mark.parametrize("bad", [None, 0.1, optax.sgd, lambda g: g, (1, 2)])
def test_inner_must_be_a_gradient_transformation(bad):
  with pytest.raises(TypeError, match="GradientTransformation"):
    ham_optax.ham(bad, 0.1)


def test_params_none_is_rejected():
  tx = ham_optax.ham(optax.sgd(0.1), 0.1)
  p = _params()
  with pytest.raises(ValueError, match="not passing `params`"):
    tx.update(p, tx.init(p))
  step = ham_optax.hyperbolic_step(0.1)
  with pytest.raises(ValueError, match="not passing `params`"):
    step.update(p, step.init(p), grad=p)


def test_hyperbolic_step_without_grad_says_how_to_fix_it():
  step = ham_optax.hyperbolic_step(0.1)
  p = _params()
  with pytest.raises(ValueError, match="needs the raw gradient"):
    step.update(p, step.init(p), p)


def test_mask_structure_mismatch_names_the_path():
  p = _params()
  tx = ham_optax.ham(optax.sgd(0.1), 0.1, mask={"dense": {"kernel": True, "bias": False}})
  with pytest.raises(ValueError, match=r"parameter \"?\['norm'\]"):
    tx.update(p, tx.init(p), p)
  tx = ham_optax.ham(optax.sgd(0.1), 0.1, mask={"dense": True, "norm": True, "extra": True})
  with pytest.raises(ValueError, match=r"mask entry \"?\['extra'\]"):
    tx.update(p, tx.init(p), p)


def test_mask_prefix_and_callable_forms():
  p = _params()
  prefix = ham_optax.ham(optax.sgd(0.1), 0.1, alpha=5.0, mask={"dense": True, "norm": False})
  full = ham_optax.ham(
    optax.sgd(0.1),
    0.1,
    alpha=5.0,
    mask=lambda params: {"dense": {"kernel": True, "bias": True}, "norm": {"scale": False}},
  )
  chex.assert_trees_all_equal(_run(prefix, p, 3), _run(full, p, 3))
  base = _run(optax.sgd(0.1), p, 3)
  got = _run(prefix, p, 3)
  chex.assert_trees_all_equal(got["norm"], base["norm"])  # masked out: plain inner update
  assert not np.allclose(got["dense"]["bias"], base["dense"]["bias"])  # masked in: mirror step applied


def test_mask_selecting_an_integer_leaf_is_a_type_error():
  p = {"w": jnp.ones((2, 2)), "steps": jnp.zeros((2, 2), jnp.int32)}
  tx = ham_optax.hyperbolic_step(0.1, mask={"w": True, "steps": True})
  with pytest.raises(TypeError, match=r"\['steps'\].*int32"):
    tx.update(p, tx.init(p), p, grad=p)
  # The default mask skips non-float leaves silently.
  default = ham_optax.hyperbolic_step(0.1)
  default.update(p, default.init(p), p, grad=jax.tree.map(jnp.zeros_like, p))


def test_mask_entries_must_be_bools():
  p = {"w": jnp.ones((2, 2))}
  tx = ham_optax.hyperbolic_step(0.1, mask={"w": "yes"})
  with pytest.raises(TypeError, match="must be a bool"):
    tx.update(p, tx.init(p), p, grad=p)
  tx = ham_optax.hyperbolic_step(
    0.1, mask={"w": lambda x: True}
  )  # one function per leaf: not a mask function
  with pytest.raises(TypeError, match=r"entry at \"\['w'\]\" is a function; give one function for the whole"):
    tx.update(p, tx.init(p), p, grad=p)


def test_grad_with_wrong_structure_or_shape_fails_at_trace_time():
  p = _params()
  step = ham_optax.hyperbolic_step(0.1)
  bad_shape = jax.tree.map(lambda x: jnp.zeros((*x.shape, 1)), p)
  names = r"hyperbolic_step: params \(tree 0\), grad \(tree 1\) and updates \(tree 2\) must have the same"
  with pytest.raises(AssertionError, match=r"differ in leaves(.|\n)*" + names):
    jax.jit(step.update)(jax.tree.map(jnp.zeros_like, p), step.init(p), p, grad=bad_shape)
  with pytest.raises(AssertionError, match=names):
    step.update(jax.tree.map(jnp.zeros_like, p), step.init(p), p, grad={"dense": p["dense"]})


@pytest.mark.parametrize(
  "make", [lambda: optax.sgd(0.1, momentum=0.9), lambda: optax.adamw(1e-3)], ids=["momentum", "adamw"]
)
def test_ham_checks_the_gradient_before_a_stateful_inner_optimizer(make):
  p = _params()
  tx = ham_optax.ham(make(), 0.1)
  names = r"ham: params \(tree 0\) and grad \(tree 1\) must have the same"
  with pytest.raises(AssertionError, match=names):  # not an `add got incompatible shapes` from the inner step
    jax.jit(tx.update)(jax.tree.map(lambda x: jnp.zeros((*x.shape, 1)), p), tx.init(p), p)
  with pytest.raises(AssertionError, match=names):
    tx.update({"dense": p["dense"]}, tx.init(p), p)


def test_state_holds_only_the_mirror_state_and_the_inner_state():
  p = _params()
  tx = ham_optax.ham(optax.adam(1e-3), 1e-3)
  state = tx.init(p)
  assert isinstance(state, ham_optax.HamState)
  assert state._fields == ("mirror_state", "inner_state")
  assert isinstance(state.mirror_state, ham_optax.HyperbolicStepState)
  _, state = tx.update(p, state, p)
  assert int(state.count) == int(state.mirror_state.count) == 1
  extra = sum(x.nbytes for x in jax.tree.leaves(state)) - sum(
    x.nbytes for x in jax.tree.leaves(optax.adam(1e-3).init(p))
  )
  assert extra == 4  # one int32 counter


def test_alpha_and_beta_accept_schedules():
  p = _params()
  beta = optax.piecewise_constant_schedule(0.5, {3: 0.0})  # decay switched off from step 3
  tx = ham_optax.ham(optax.sgd(0.1), 0.1, alpha=optax.constant_schedule(0.0), beta=beta)
  s = tx.init(p)
  zero = jax.tree.map(jnp.zeros_like, p)
  x = p
  for _ in range(6):
    u, s = jax.jit(tx.update)(zero, s, x)
    x = optax.apply_updates(x, u)
  np.testing.assert_allclose(x["dense"]["kernel"], p["dense"]["kernel"] * np.exp(-0.1 * 0.5 * 3), rtol=1e-6)


# ------------------------------------------------------------------------------- finite in, finite out


def _mirror_once(p, g, u=None, **kw):
  step = ham_optax.hyperbolic_step(kw.pop("lr", 1.0), **{"alpha": 100.0, "beta": 0.0, **kw})
  params = {"w": p}
  u = jnp.zeros_like(p) if u is None else u
  out, _ = step.update({"w": u}, step.init(params), params, grad={"w": g})
  return optax.apply_updates(params, out)["w"]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16", "float64"])
def test_growth_beyond_the_dtype_range_saturates(dtype):
  if dtype == "float64":
    jax.config.update("jax_enable_x64", True)
  dt = jnp.dtype(dtype)
  big = float(jnp.finfo(dt).max)
  # x * e^5 overflows for the first two entries; the gradient itself is finite (half the dtype's max).
  p = jnp.array([[big / 4, -big / 4, 1.0, 0.0]], dt)
  g = jnp.array([[-big / 2, big / 2, 0.0, -big / 2]], dt)
  new = _mirror_once(p, g)
  assert new.dtype == dt
  assert bool(jnp.all(jnp.isfinite(new)))
  # saturated one ulp short of the maximum (so that p + update cannot round past it), give or take one rounding
  zero = np.zeros((), dt)  # NumPy 1.x would take a Python 0 (and the 0-d max) to float64
  two_ulps_short = float(np.nextafter(np.nextafter(np.asarray(big, dt), zero), zero).astype(np.float64))
  top = np.abs(np.asarray(new, np.float64)[0, :2])
  assert np.all((top >= two_ulps_short) & (top < big)), top
  assert np.sign(np.asarray(new, np.float64)[0, :2]).tolist() == [1.0, -1.0]
  assert float(new[0, 2]) == 1.0 and float(new[0, 3]) == 0.0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_inner_step_overflowing_the_range_stays_finite(dtype):
  if dtype == "float64":
    jax.config.update("jax_enable_x64", True)
  dt = jnp.dtype(dtype)
  big = float(jnp.finfo(dt).max)
  p = jnp.array([[0.75 * big, -0.75 * big]], dt)
  u = jnp.array([[0.75 * big, -0.75 * big]], dt)  # p + u overflows before the mirror step
  new = _mirror_once(p, jnp.zeros_like(p), u=u)
  assert bool(jnp.all(jnp.isfinite(new)))
  np.testing.assert_array_equal(np.sign(new), np.sign(p))


# ------------------------------------------------------------------ hyperparameters in the dtype used


@pytest.mark.parametrize(
  ("lr", "alpha", "beta"),
  [(0.1, 1e39, 0.0), (1e20, 1e20, 0.0), (1.0, 0.0, 1e39), (1e39 / 1e38, 1e39, 1e39)],
  ids=["alpha-overflows-f32", "lr-times-alpha-overflows", "beta-overflows", "all-huge"],
)
def test_hyperparameters_beyond_float32_give_no_nan(lr, alpha, beta):
  # A dead unit (zero gradient) next to a live one: 0 * inf must never appear.
  p = {"w": jnp.array([[1.0, -2.0, 0.5]])}
  g = {"w": jnp.array([[0.0, 1.0, -1.0]])}
  tx = ham_optax.ham(optax.sgd(1e-3), lr, alpha=alpha, beta=beta)
  u, _ = tx.update(g, tx.init(p), p)
  new = optax.apply_updates(p, u)["w"]
  assert bool(jnp.all(jnp.isfinite(new))), new
  # float64 reference, with the saturated float32 scalars (exponent clipped at 5 either way).
  big = float(np.finfo(np.float32).max)
  x_half = np.asarray(p["w"], np.float64) - 1e-3 * np.asarray(g["w"], np.float64)
  lr_a = min(min(lr, big) * min(alpha, big), big)
  lr_b = min(min(lr, big) * min(beta, big), big)
  e = np.clip(-(lr_a * np.sign(x_half) * np.asarray(g["w"], np.float64)) - lr_b, -5, 5)
  # (atol: the float32 update p + (x_new - p) rounds to an ulp of p.)
  np.testing.assert_allclose(new, x_half * np.exp(e), rtol=1e-6, atol=4e-7)


def test_schedules_beyond_float32_give_no_nan():
  # A schedule whose value is not finite in float32 (1e39 -> inf) acts as float32's largest value.
  p = {"w": jnp.array([[1.0, -2.0]])}
  g = {"w": jnp.array([[0.0, 1.0]])}
  tx = ham_optax.ham(optax.sgd(1e-3), 0.1, alpha=lambda k: jnp.full([], jnp.inf), beta=0.0)
  u, _ = jax.jit(tx.update)(g, tx.init(p), p)
  new = optax.apply_updates(p, u)["w"]
  assert bool(jnp.all(jnp.isfinite(new)))
  np.testing.assert_allclose(new, [[1.0, -2.001 * np.exp(5.0)]], rtol=1e-6)  # sign(x_half) * g < 0: grows


@pytest.mark.parametrize("beta", [-1e-3, -1.0])
def test_negative_beta_is_rejected(beta):
  with pytest.raises(ValueError, match="beta must be >= 0"):
    ham_optax.ham(optax.sgd(0.1), 0.1, beta=beta)
  with pytest.raises(ValueError, match="beta must be >= 0"):
    ham_optax.hyperbolic_step(0.1, beta=beta)


@pytest.mark.parametrize("name", ["learning_rate", "alpha", "beta", "max_exponent", "max_weight_norm"])
@pytest.mark.parametrize("bad", [1 + 2j, np.complex64(1.0), jnp.asarray(1.0 + 0j)], ids=["py", "np", "jnp"])
def test_complex_hyperparameters_are_rejected_by_name(name, bad):
  args = {"learning_rate": 0.1, name: bad}
  with pytest.raises(TypeError, match=f"{name} must be a real number"):
    ham_optax.hyperbolic_step(**args)


@pytest.mark.parametrize("name", ["learning_rate", "alpha", "beta"])
def test_complex_schedules_are_rejected_by_name(name):
  args = {"learning_rate": 0.1, name: lambda k: jnp.asarray(0.1 + 0j)}
  tx = ham_optax.ham(optax.sgd(0.1), **args)
  p = _params()
  with pytest.raises(TypeError, match=f"{name} must evaluate to a real number"):
    tx.update(p, tx.init(p), p)


def test_max_exponent_must_keep_the_growth_finite():
  with pytest.raises(ValueError, match=r"max_exponent must be <= 80"):
    ham_optax.ham(optax.sgd(0.1), 0.1, max_exponent=100.0)


# ------------------------------------------------------------------------------------- max_weight_norm


def _norm_clip_reference(new, cap):
  new = np.asarray(new, np.float64)
  m = np.max(np.abs(new))
  n = m * np.linalg.norm(new / m) if m > 0 else 0.0  # scaled: no overflow for norms near the dtype's max
  return new * min(1.0, cap / n)


@pytest.mark.parametrize(("scale", "cap"), [(1e12, 1000.0), (2e10, 1000.0), (1e300, 3.0)])
def test_max_weight_norm_lands_on_the_cap_in_float64(scale, cap):
  # The inner step proposes a tensor of norm `scale`; the rescaled new weight has norm `cap`.
  jax.config.update("jax_enable_x64", True)
  rng = np.random.default_rng(0)
  direction = rng.normal(size=(4, 5))
  p = {"w": jnp.asarray(rng.normal(size=(4, 5)))}
  g = {"w": jnp.asarray(-direction / np.linalg.norm(direction) * scale)}
  tx = ham_optax.ham(optax.sgd(1.0), 1e-3 / scale, alpha=2.0, beta=0.0, max_weight_norm=cap)
  u, _ = tx.update(g, tx.init(p), p)
  new = optax.apply_updates(p, u)["w"]
  np.testing.assert_allclose(np.linalg.norm(np.asarray(new)), cap, rtol=1e-12)
  x_half = np.asarray(p["w"]) - np.asarray(g["w"])
  e = np.clip(-(1e-3 / scale) * 2.0 * np.sign(x_half) * np.asarray(g["w"]), -5, 5)
  np.testing.assert_allclose(new, _norm_clip_reference(x_half * np.exp(e), cap), rtol=1e-12, atol=1e-14 * cap)


def test_max_weight_norm_on_huge_weights_is_exact_to_the_params_rounding():
  # A weight tensor that is itself of norm 1e12: the update x_new - x is exact to an ulp of x, so the result is
  # on the cap to that accuracy (and never all zeros as long as the cap exceeds that ulp).
  jax.config.update("jax_enable_x64", True)
  rng = np.random.default_rng(2)
  w = rng.normal(size=(4, 5))
  p = {"w": jnp.asarray(w / np.linalg.norm(w) * 1e12)}
  tx = ham_optax.ham(optax.sgd(0.01), 0.01, alpha=2.0, beta=0.0, max_weight_norm=1000.0)
  u, _ = tx.update(jax.tree.map(jnp.zeros_like, p), tx.init(p), p)
  new = np.asarray(optax.apply_updates(p, u)["w"])
  ulp = np.spacing(np.max(np.abs(np.asarray(p["w"]))))
  assert abs(np.linalg.norm(new) - 1000.0) <= 4 * ulp * np.sqrt(new.size)
  np.testing.assert_allclose(new, np.asarray(p["w"]) * (1000.0 / 1e12), atol=4 * ulp)


def test_max_weight_norm_clips_a_huge_inner_step_in_float32():
  # |p| is moderate, the inner step takes the tensor to norm ~2e10: the result is on the cap (not 0, not 2048).
  p = {"w": jnp.full((2, 2), 0.5)}
  g = {"w": jnp.full((2, 2), -1e10)}
  tx = ham_optax.ham(optax.sgd(1.0), 1e-12, alpha=1.0, beta=0.0, max_weight_norm=1000.0)
  u, _ = tx.update(g, tx.init(p), p)
  new = optax.apply_updates(p, u)["w"]
  np.testing.assert_allclose(jnp.linalg.norm(new), 1000.0, rtol=1e-6)
  np.testing.assert_allclose(new, np.full((2, 2), 500.0), rtol=1e-6)


def test_max_weight_norm_with_an_overflowing_entry_gives_no_nan():
  # The inner step proposes 1e38 and the mirror step grows it by e^5 (overflows float32): that entry counts as
  # float32's max, and the tensor is rescaled onto the cap (the small entries underflow to 0, keeping no sign).
  p = {"w": jnp.array([[1.0, 1.0], [-2.0, 0.0]])}
  u = {"w": jnp.array([[1e38, 0.0], [0.0, 0.0]])}
  g = {"w": jnp.array([[-1e38, 0.0], [0.0, 0.0]])}
  tx = ham_optax.hyperbolic_step(1.0, alpha=1.0, beta=0.0, max_weight_norm=1000.0)
  out, _ = tx.update(u, tx.init(p), p, grad=g)
  new = optax.apply_updates(p, out)["w"]
  assert bool(jnp.all(jnp.isfinite(new)))
  np.testing.assert_allclose(jnp.linalg.norm(new), 1000.0, rtol=1e-6)
  np.testing.assert_allclose(new[0, 0], 1000.0, rtol=1e-6)


def test_max_weight_norm_with_an_infinite_weight_gives_no_nan():
  # A weight that is already +inf cannot be moved by a finite update: it stays +inf, nothing becomes NaN.
  p = {"w": jnp.array([[jnp.inf, 1.0], [-2.0, 3.0]])}
  g = {"w": jnp.ones((2, 2))}
  tx = ham_optax.ham(optax.sgd(0.1), 0.1, alpha=1.0, beta=0.0, max_weight_norm=1000.0)
  u, _ = tx.update(g, tx.init(p), p)
  new = optax.apply_updates(p, u)["w"]
  assert not bool(jnp.any(jnp.isnan(new)))
  assert float(new[0, 0]) == np.inf


def test_max_weight_norm_scope_all_matches_the_published_wrapper_in_float64():
  jax.config.update("jax_enable_x64", True)
  rng = np.random.default_rng(1)
  params = {
    "kernel": jnp.asarray(rng.normal(size=(3, 4)) * 20),
    "bias": jnp.asarray(rng.normal(size=(4,)) * 30),
  }
  lr, alpha, cap, steps = 0.05, 3.0, 25.0, 4
  results = {}
  for scope in ("masked", "all"):
    tx = ham_optax.ham(
      optax.sgd(lr, momentum=0.9), lr, alpha, 0.0, max_weight_norm=cap, max_weight_norm_scope=scope
    )
    state, x = tx.init(params), params
    for k in range(steps):
      u, state = tx.update(_grads(x, k), state, x)
      x = optax.apply_updates(x, u)
    results[scope] = x
  # float64 NumPy rendering: momentum SGD, mirror step on the kernel, norm clip on the kernel (and the bias).
  for scope in ("masked", "all"):
    xs = {k: np.asarray(v, np.float64) for k, v in params.items()}
    mom = {k: np.zeros_like(v) for k, v in xs.items()}
    for k in range(steps):
      gs = {n: np.asarray(v, np.float64) for n, v in _grads(jax.tree.map(jnp.asarray, xs), k).items()}
      for n in xs:
        mom[n] = gs[n] + 0.9 * mom[n]
        x_half = xs[n] - lr * mom[n]
        if n == "kernel":
          new = x_half * np.exp(np.clip(-lr * alpha * np.sign(x_half) * gs[n], -5, 5))
          xs[n] = _norm_clip_reference(new, cap)
        else:
          xs[n] = _norm_clip_reference(x_half, cap) if scope == "all" else x_half
    for n in xs:
      np.testing.assert_allclose(results[scope][n], xs[n], rtol=1e-12, atol=1e-12)
  assert np.linalg.norm(np.asarray(results["masked"]["bias"])) > cap  # the default leaves biases alone
  np.testing.assert_allclose(np.linalg.norm(np.asarray(results["all"]["bias"])), cap, rtol=1e-12)


def test_max_weight_norm_scope_is_checked():
  with pytest.raises(ValueError, match="max_weight_norm_scope must be one of"):
    ham_optax.ham(optax.sgd(0.1), 0.1, max_weight_norm=1.0, max_weight_norm_scope="every")


# ------------------------------------------------------------------------------ Python scalars as params


def test_python_scalar_params_work_like_optax():
  params = {"a": 1.0, "w": jnp.array([[0.5, -1.0]])}
  grads = {"a": 0.5, "w": jnp.array([[1.0, 1.0]])}
  tx = ham_optax.ham(optax.sgd(0.1), 0.1, alpha=2.0, beta=0.0)
  u, state = tx.update(grads, tx.init(params), params)
  new = optax.apply_updates(params, u)
  want, _ = optax.sgd(0.1).update(grads, optax.sgd(0.1).init(params), params)
  np.testing.assert_allclose(new["a"], optax.apply_updates(params, want)["a"])  # rank 0: inner step only
  u, _ = jax.jit(tx.update)(grads, state, params)
  assert bool(jnp.all(jnp.isfinite(u["w"])))


def test_python_scalar_param_selected_by_the_mask():
  tx = ham_optax.ham(optax.sgd(0.1), 0.1, alpha=2.0, beta=0.0, mask={"a": True})
  u, _ = tx.update({"a": 1.0}, tx.init({"a": 2.0}), {"a": 2.0})
  np.testing.assert_allclose(2.0 + u["a"], 1.9 * np.exp(-0.1 * 2.0 * 1.0), rtol=1e-6)


# ------------------------------------------------------------------- inner optimizer passed uncalled

_INNER_FACTORIES = {
  "ham": lambda inner: ham_optax.ham(inner, 0.1),
  "random_pruning": lambda inner: ham_optax.sparsity.random_pruning(inner, 0.5),
  "magnitude_pruning": lambda inner: ham_optax.sparsity.magnitude_pruning(
    inner, 0.5, begin_step=0, end_step=10
  ),
  "acdc": lambda inner: ham_optax.sparsity.acdc(inner, 0.5, total_steps=100),
  "rigl": lambda inner: ham_optax.sparsity.rigl(inner, 0.5, end_step=100),
  "pointwise_overparam": lambda inner: ham_optax.overparam.pointwise_overparam(inner),
  "spred": lambda inner: ham_optax.overparam.spred(inner, 1e-4),
  "pilot": lambda inner: ham_optax.overparam.pilot(inner, 1e-4, 10),
  "sign_in": lambda inner: ham_optax.overparam.sign_in(inner, 10),
}


@pytest.mark.parametrize("factory", list(_INNER_FACTORIES), ids=list(_INNER_FACTORIES))
@pytest.mark.parametrize("bad", [optax.sgd, optax.adam, None, 0.1], ids=["sgd", "adam", "none", "float"])
def test_every_factory_rejects_an_inner_that_is_not_a_transformation(factory, bad):
  with pytest.raises(TypeError, match=rf"{factory}\(inner=\.\.\.\) needs an optax GradientTransformation"):
    _INNER_FACTORIES[factory](bad)
  _INNER_FACTORIES[factory](optax.sgd(0.1))  # the same call with a built optimizer is fine


def test_uncalled_factory_error_says_to_call_it():
  with pytest.raises(TypeError, match=r"optax.sgd\(0.1\) not optax.sgd"):
    ham_optax.sparsity.rigl(optax.sgd, 0.5, end_step=10)


@pytest.mark.parametrize(
  "factory",
  [ham_optax.ham, ham_optax.hyperbolic_step, ham_optax.ham_sgd, ham_optax.ham_adam, ham_optax.ham_adamw],
  ids=lambda f: f.__name__,
)
def test_every_argument_is_documented_and_the_shared_ones_alike(factory):
  import inspect

  doc = inspect.getdoc(factory)
  args = doc[doc.index("Args:") : doc.index("Returns:")]
  for name in inspect.signature(factory).parameters:
    assert f"\n  {name}: " in args, (factory.__name__, name)
  shared = inspect.getdoc(ham_optax.ham)
  for name in (
    "alpha",
    "beta",
    "mask",
    "max_exponent",
    "max_weight_norm",
    "sign_from",
    "max_weight_norm_scope",
  ):
    entry = shared[shared.index(f"\n  {name}: ") :].split("\n  ", 2)[1]
    assert entry in args, (factory.__name__, name)


# ------------------------------------------------------------------------------------------ per-leaf alpha


def _two_layer_params():
  return {
    "enc": {"kernel": jnp.array([[0.5, -1.0], [2.0, 0.25]]), "bias": jnp.array([0.1, -0.2])},
    "head": {"kernel": jnp.array([[1.5, -0.5, 0.75]])},
  }


def test_per_leaf_alpha_prefix_is_each_layer_with_its_own_scalar():
  p = _two_layer_params()
  got = _run(ham_optax.ham_sgd(0.1, 0.9, alpha={"enc": 2.0, "head": optax.constant_schedule(30.0)}), p)
  enc = _run(ham_optax.ham_sgd(0.1, 0.9, alpha=2.0), p)
  head = _run(ham_optax.ham_sgd(0.1, 0.9, alpha=30.0), p)
  chex.assert_trees_all_equal(got["enc"], enc["enc"])
  chex.assert_trees_all_equal(got["head"], head["head"])
  assert not np.allclose(enc["head"]["kernel"], head["head"]["kernel"])  # the two alphas do differ


def test_per_leaf_alpha_with_the_params_structure_and_zeros_off_the_mask():
  # The shape suggest_alpha(per_leaf=True) returns: a float per selected leaf, 0.0 for the others.
  p = _two_layer_params()
  tree = {"enc": {"kernel": 7.0, "bias": 0.0}, "head": {"kernel": 7.0}}
  chex.assert_trees_all_equal(
    _run(ham_optax.ham(optax.adam(1e-2), 1e-2, alpha=tree), p),
    _run(ham_optax.ham(optax.adam(1e-2), 1e-2, alpha=7.0), p),
  )
  tx = ham_optax.hyperbolic_step(0.1, alpha=tree)
  g = _grads(p)
  u, _ = jax.jit(tx.update)(g, tx.init(p), p, grad=g)
  assert jax.tree.structure(u) == jax.tree.structure(p)


def test_per_leaf_alpha_errors_name_the_entry():
  with pytest.raises(ValueError, match=r"alpha\['head'\] must be finite"):
    ham_optax.ham(optax.sgd(0.1), 0.1, alpha={"enc": 1.0, "head": float("nan")})
  with pytest.raises(TypeError, match=r"alpha\['enc'\] must be a number"):
    ham_optax.ham_sgd(0.1, alpha={"enc": "big"})
  with pytest.raises(ValueError, match="alpha as a pytree needs at least one value"):
    ham_optax.ham_sgd(0.1, alpha={})
  p = _two_layer_params()
  for alpha, where in [({"enc": 1.0, "decoder": 2.0}, "'decoder'"), ({"enc": 1.0}, "head")]:
    tx = ham_optax.ham_sgd(0.1, alpha=alpha)
    with pytest.raises(ValueError, match=f"alpha as a pytree must have the params' structure.*{where}"):
      tx.update(p, tx.init(p), p)


def test_per_leaf_alpha_under_inject_hyperparams_and_jit():
  p = _two_layer_params()
  alpha = {"enc": 2.0, "head": 30.0}
  tx = optax.inject_hyperparams(ham_optax.ham_sgd)(learning_rate=0.1, alpha=alpha, momentum=0.9)
  chex.assert_trees_all_close(_run(tx, p), _run(ham_optax.ham_sgd(0.1, 0.9, alpha=alpha), p), rtol=1e-6)


@pytest.mark.parametrize(
  ("owner", "factory"),
  [
    ("ham", lambda: ham_optax.ham(optax.sgd(0.1), 0.1)),
    ("nanoadam", lambda: ham_optax.nanoadam(0.1)),
    ("sparsifier", lambda: ham_optax.sparsity.rigl(optax.sgd(0.1), 0.5, end_step=10)),
    (
      "sparsifier",
      lambda: ham_optax.sparsity.magnitude_pruning(optax.sgd(0.1), 0.5, begin_step=0, end_step=5),
    ),
    ("pointwise_overparam", lambda: ham_optax.overparam.spred(optax.sgd(0.1), 1e-4)),
    ("deep_diagonal", lambda: ham_optax.overparam.deep_diagonal(optax.sgd(0.1), 2)),
  ],
  ids=["ham", "nanoadam", "rigl", "magnitude", "spred", "deep_diagonal"],
)
def test_a_gradient_that_does_not_match_params_is_named(owner, factory):
  tx, p = factory(), {"w": jnp.ones((3, 4)), "v": jnp.ones((4, 2)), "b": jnp.zeros(4)}
  state = tx.init(p)
  with pytest.raises(AssertionError, match=rf"differ in leaves(.|\n)*{owner}: params \(tree 0\)"):
    tx.update({"w": jnp.ones((4, 3)), "v": jnp.ones((4, 2)), "b": jnp.zeros(4)}, state, p)
  with pytest.raises(AssertionError, match=rf"{owner}: params \(tree 0\)"):
    tx.update({"w": jnp.ones((3, 4)), "v": jnp.ones((4, 2))}, state, p)


def test_helpers_reject_bad_arguments_by_name():
  sp, op = ham_optax.sparsity, ham_optax.overparam
  with pytest.raises(ValueError, match="factorize: balance must be finite"):
    op.factorize(jnp.ones(3), float("nan"))
  with pytest.raises(TypeError, match=r"state_nbytes\(inner=...\) needs an optax GradientTransformation"):
    op.state_nbytes(None, {"w": jnp.ones(2)})
  with pytest.raises(ValueError, match="sparsity must lie in"):
    sp.gmp_schedule(1.0, begin_step=0, end_step=10)
  with pytest.raises(ValueError, match=r"sparsity \(0.5\) must be at least initial_sparsity \(0.9\)"):
    sp.gmp_schedule(0.5, begin_step=0, end_step=10, initial_sparsity=0.9)
  with pytest.raises(ValueError, match=r"rigl_drop_fraction: drop_fraction must be in \[0, 1\]"):
    sp.rigl_drop_fraction(5, 2.0, 10)
  with pytest.raises(ValueError, match=r"rigl_drop_fraction: end_step \(5\) must be greater than begin_step"):
    sp.rigl_drop_fraction(5, 0.3, 5, begin_step=5)


def test_str_threshold_that_does_not_broadcast_is_named():
  pytest.importorskip("flax")
  with pytest.raises(ValueError, match=r"str_sparse_weight: threshold of shape \(5,\) does not broadcast"):
    ham_optax.sparsity.str_sparse_weight(jnp.ones((3, 4)), jnp.ones(5))


def test_bfloat16_scalars_are_numbers_eagerly_as_under_jit():
  p = {"w": jnp.ones((2, 2), jnp.bfloat16)}
  tx = optax.inject_hyperparams(ham_optax.ham_sgd)(
    0.1, alpha=2.0
  )  # bfloat16 hyperparameters, like the params
  u_eager, _ = tx.update(p, tx.init(p), p)
  u_jit, _ = jax.jit(tx.update)(p, jax.jit(tx.init)(p), p)
  np.testing.assert_array_equal(np.asarray(u_eager["w"], np.float32), np.asarray(u_jit["w"], np.float32))
  tx = ham_optax.ham(optax.sgd(0.1), jnp.bfloat16(0.1), alpha=jnp.bfloat16(2.0))
  np.testing.assert_array_equal(
    np.asarray(tx.update(p, tx.init(p), p)[0]["w"], np.float32), np.asarray(u_eager["w"], np.float32)
  )
  with pytest.raises(ValueError, match="learning_rate must be finite"):
    ham_optax.ham(optax.sgd(0.1), jnp.bfloat16(float("nan")))


def test_a_mask_of_another_container_type_names_both_types():
  nnx = pytest.importorskip("flax.nnx")

  model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
  params = nnx.state(model, nnx.Param)
  tx = ham_optax.ham(optax.sgd(0.1), 0.1, mask={"kernel": True, "bias": False})
  with pytest.raises(
    ValueError, match=r"container types of mask and params differ \(dict and State\); with flax.nnx"
  ):
    tx.update(params, tx.init(params), params)
