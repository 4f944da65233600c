"""Optax's bar for contributed optimizers, over every public transformation of ham_optax.

Optax runs its contributed optimizers through ``optax/contrib/_common_test.py`` and ``optax/_src/sharding_test.py``:
jit without recompiling on the second update, ``optax.tree.map_params`` over the state, ``MultiSteps`` and
``lax.cond`` state stability in float16/bfloat16/float32/float64, ``init`` from abstract params
(``jax.ShapeDtypeStruct``), the state's type under explicit sharding, ``inject_hyperparams`` and extra arguments;
here also a donated state and params. ``BAR`` lists every public transformation once (a new one is one line);
float16 and float64 run with the slow tests. The tests after the bar are HAM's own (convergence, SAM, MultiSteps).
"""

import dataclasses
from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ham_optax
from ham_optax import overparam as op
from ham_optax import sparsity as sp

ALL = lambda p: jax.tree.map(lambda _: True, p)  # noqa: E731 - the toy problems use 1-D params


@dataclasses.dataclass(frozen=True)
class Entry:
  """A transformation under the bar: ``make()`` builds it; ``raw_grad``: its update takes ``grad=`` (the raw
  gradient, as ``hyperbolic_step`` in a chain does); ``inject``: ``(factory, kwargs, static_args)`` for
  ``optax.inject_hyperparams`` where the factory has numeric hyperparameters."""

  make: Callable[[], optax.GradientTransformation]
  raw_grad: bool = False
  inject: tuple | None = None
  xfail: tuple[tuple[str, str], ...] = ()  # (check, reason): known failures, strict (a fix makes them fail)


def _ham():
  return ham_optax.ham_sgd(0.05, momentum=0.9, alpha=2.0)


def _adam():
  return optax.adam(1e-2)


def _sparsifiers(name, inner):
  return {
    f"random_pruning({name})": Entry(lambda: sp.random_pruning(inner(), 0.5)),
    f"magnitude_pruning({name})": Entry(
      lambda: sp.magnitude_pruning(inner(), 0.5, begin_step=0, end_step=4, frequency=1),
    ),
    f"acdc({name})": Entry(lambda: sp.acdc(inner(), 0.5, total_steps=8, phase_steps=2)),
    f"rigl({name})": Entry(lambda: sp.rigl(inner(), 0.5, update_every=1, end_step=8)),
  }


_SGD = optax.sgd(0.05, momentum=0.9)
BAR = {
  "ham": Entry(
    lambda: ham_optax.ham(optax.sgd(0.05, momentum=0.9), 0.05, alpha=2.0),
    inject=(ham_optax.ham, {"inner": _SGD, "learning_rate": 0.05, "alpha": 2.0, "beta": 1e-3}, ("inner",)),
  ),
  "hyperbolic_step": Entry(
    lambda: optax.chain(optax.sgd(0.05), ham_optax.hyperbolic_step(0.05, 2.0)),
    raw_grad=True,
    inject=(ham_optax.hyperbolic_step, {"learning_rate": 0.05, "alpha": 2.0, "beta": 1e-3}, ()),
  ),
  "ham_sgd": Entry(
    _ham, inject=(ham_optax.ham_sgd, {"learning_rate": 0.05, "momentum": 0.9, "alpha": 2.0}, ())
  ),
  "ham_adam": Entry(
    lambda: ham_optax.ham_adam(1e-2, alpha=2.0),
    inject=(ham_optax.ham_adam, {"learning_rate": 1e-2, "alpha": 2.0}, ()),
  ),
  "ham_adamw": Entry(
    lambda: ham_optax.ham_adamw(1e-2, alpha=2.0),
    inject=(ham_optax.ham_adamw, {"learning_rate": 1e-2, "alpha": 2.0, "weight_decay": 1e-4}, ()),
  ),
  **_sparsifiers("ham", _ham),
  **_sparsifiers("adam", _adam),
  "nanoadam": Entry(
    lambda: ham_optax.nanoadam(1e-2, fraction=0.5, refresh_every=2),
    inject=(
      ham_optax.nanoadam,
      {"learning_rate": 1e-2, "fraction": 0.5, "refresh_every": 2},
      ("fraction", "refresh_every"),  # used on the host (array sizes)
    ),
  ),
  "spred": Entry(
    lambda: op.spred(optax.sgd(0.05), 1e-3),
    inject=(op.spred, {"inner": _SGD, "weight_decay": 1e-3}, ("inner",)),
  ),
  "pilot": Entry(
    lambda: op.pilot(optax.sgd(0.05), 1e-3, switch_step=2),
    inject=(op.pilot, {"inner": _SGD, "weight_decay": 1e-3, "switch_step": 2}, ("inner", "switch_step")),
  ),
  "sign_in": Entry(lambda: op.sign_in(optax.sgd(0.05), rescale_every=2)),
  "deep_diagonal": Entry(lambda: op.deep_diagonal(optax.sgd(0.05), depth=3)),
}
NAMES = list(BAR)


def _cases(check, names=NAMES):
  """``names`` as pytest params, with the strict xfail marks that ``BAR`` records for ``check``."""
  out = []
  for name in names:
    marks = [pytest.mark.xfail(strict=True, reason=r) for c, r in BAR[name].xfail if c == check]
    out.append(pytest.param(name, marks=marks, id=name))
  return out


def _params(dtype=jnp.float32):
  w = np.array([[0.5, -1.0, 0.3], [2.0, 0.25, -0.7], [0.1, -0.4, 1.2], [-0.9, 0.6, 0.05]])
  return {"w": jnp.asarray(w, dtype), "b": jnp.asarray([0.1, -0.2, 0.3], dtype)}


def _loss(p):
  # 0.37 is none of the parameters: no gradient is exactly 0 (Adam's eps=1e-8 is 0 in float16, so a zero
  # gradient would give 0/0 there, in optax.adam itself)
  return sum(jnp.sum(jnp.square(x.astype(jnp.float32) - 0.37)) for x in jax.tree.leaves(p))


def _update(name, tx, g, state, params, **extra):
  if BAR[name].raw_grad:
    extra["grad"] = g
  return tx.update(g, state, params, **extra)


@pytest.mark.parametrize("name", NAMES)
def test_bar_jit_extra_args_donation_and_no_recompilation(name):
  tx, traces = BAR[name].make(), []

  def step(params, state, value):
    traces.append(None)
    g = jax.grad(_loss)(params)
    u, state = _update(name, tx, g, state, params, value=value, unexpected_extra_arg_the_optimizer_ignores=1)
    return optax.apply_updates(params, u), state

  step = jax.jit(step, donate_argnums=(0, 1))
  params = _params()
  state = tx.init(params)
  losses = [float(_loss(params))]
  for _ in range(4):
    params, state = step(params, state, jnp.asarray(losses[-1]))
    losses.append(float(_loss(params)))
  assert len(traces) == 1, f"{name}: update traced {len(traces)} times (the state changes type between steps)"
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], (name, losses)


@pytest.mark.parametrize("name", _cases("map_params"))
def test_bar_tree_map_params(name):
  map_params = getattr(getattr(optax, "tree", None), "map_params", None) or optax.tree_utils.tree_map_params
  tx, params = BAR[name].make(), _params()
  state = tx.init(params)
  seen = []
  mapped = map_params(tx, lambda v: seen.append(v.shape) or jnp.zeros_like(v), state)
  assert jax.tree.structure(mapped) == jax.tree.structure(state)
  # every parameter-shaped tree found was mapped; the leaves it did not touch are unchanged
  assert set(seen) <= {x.shape for x in jax.tree.leaves(params)}
  for before, after in zip(jax.tree.leaves(state), jax.tree.leaves(mapped), strict=True):
    assert after.shape == before.shape
  _update(name, tx, jax.grad(_loss)(params), mapped, params)  # the mapped state still updates


@pytest.mark.parametrize("name", NAMES)
def test_bar_init_from_abstract_params(name):
  tx, params = BAR[name].make(), _params()
  abstract = jax.eval_shape(lambda: params)
  assert all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(abstract))
  state = jax.eval_shape(tx.init, abstract)
  chex.assert_trees_all_equal_shapes_and_dtypes(state, tx.init(params))


def _stability_case(name, dtype):
  """dtype and state stability through ``lax.cond`` (optax's check) and through ``MultiSteps``."""
  jax.config.update("jax_enable_x64", dtype == jnp.float64)  # restored by the conftest fixture
  tx = BAR[name].make()
  multi = optax.MultiSteps(tx, every_k_schedule=2)
  params = _params(dtype)

  @jax.jit
  def step(params, state, ms_state, pred):
    g = jax.grad(_loss)(params)
    u, new = jax.lax.cond(pred, lambda: _update(name, tx, g, state, params), lambda: (params, state))
    mu, ms_new = _update(name, multi, g, ms_state, params)
    return optax.apply_updates(params, u), new, mu, ms_new

  state, ms_state = tx.init(params), multi.init(params)
  for i in range(3):
    new_params, new_state, mu, new_ms = step(params, state, ms_state, jnp.asarray(i % 2 == 0))
    for tree in (new_params, mu):
      assert all(x.dtype == dtype for x in jax.tree.leaves(tree)), (name, dtype, tree)
    chex.assert_trees_all_equal_shapes_and_dtypes(new_state, state)
    chex.assert_trees_all_equal_shapes_and_dtypes(new_ms, ms_state)
    if i == 0:  # MultiSteps emits zeros on the steps it only accumulates
      chex.assert_trees_all_equal(mu, jax.tree.map(jnp.zeros_like, params))
    params, state, ms_state = new_params, new_state, new_ms
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(params)), (name, dtype)


# float32 in the default run; bfloat16 (with float16 and float64 below) in the slow step.
@pytest.mark.parametrize(
  "dtype",
  [
    pytest.param(jnp.bfloat16, marks=pytest.mark.slow, id="bfloat16"),
    pytest.param(jnp.float32, id="float32"),
  ],
)
@pytest.mark.parametrize("name", NAMES)
def test_bar_state_stable_under_lax_cond_and_multisteps(name, dtype):
  _stability_case(name, dtype)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [jnp.float16, jnp.float64], ids=["float16", "float64"])
@pytest.mark.parametrize("name", NAMES)
def test_bar_state_stable_under_lax_cond_and_multisteps_f16_f64(name, dtype):
  _stability_case(name, dtype)


# The sparsifiers around Adam repeat those around HAM here: in the slow step.
@pytest.mark.parametrize(
  "name",
  [
    pytest.param(*c.values, marks=[*c.marks, *([pytest.mark.slow] if "(adam)" in c.id else [])], id=c.id)
    for c in _cases("explicit_sharding")
  ],
)
def test_bar_state_type_under_explicit_sharding(name):
  axis_type = getattr(getattr(jax.sharding, "AxisType", None), "Explicit", None)
  if axis_type is None or not all(hasattr(jax, a) for a in ("set_mesh", "typeof", "make_mesh")):
    pytest.skip(
      "this jax has no sharding in types (jax.sharding.AxisType.Explicit, jax.set_mesh, jax.typeof)"
    )
  mesh = jax.make_mesh((1,), ("x",), axis_types=(axis_type,))
  tx = BAR[name].make()
  with jax.set_mesh(mesh):
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, "x"))
    params = _params()
    params["w"] = jax.device_put(params["w"], sharding)
    state0 = tx.init(params)
    _, state1 = _update(name, tx, params, state0, params)
    _, state2 = jax.jit(lambda s: _update(name, tx, params, s, params))(state0)
    types = [jax.tree.map(jax.typeof, s) for s in (state0, jax.jit(tx.init)(params), state1, state2)]
  for t in types[1:]:
    chex.assert_trees_all_equal(types[0], t)


@pytest.mark.parametrize("name", [n for n in NAMES if BAR[n].inject is not None])
def test_bar_inject_hyperparams(name):
  factory, kwargs, static = BAR[name].inject
  tx, injected = factory(**kwargs), optax.inject_hyperparams(factory, static_args=static)(**kwargs)
  params = _params()
  g = jax.grad(_loss)(params)
  u, s = jax.jit(lambda s: _update(name, tx, g, s, params))(tx.init(params))
  ui, si = jax.jit(lambda s: _update(name, injected, g, s, params))(injected.init(params))
  numeric = {k for k, v in kwargs.items() if k not in static and isinstance(v, float)}
  assert numeric <= set(si.hyperparams), (name, sorted(si.hyperparams))
  chex.assert_trees_all_close(ui, u, rtol=1e-5)
  chex.assert_trees_all_close(si.inner_state, s, rtol=1e-5, atol=1e-6)


FACTORIES = {
  "ham_sgd": lambda lr: ham_optax.ham_sgd(lr, momentum=0.9, alpha=2.0, beta=0.0, mask=ALL),
  "ham_adam": lambda lr: ham_optax.ham_adam(lr, alpha=2.0, beta=0.0, mask=ALL),
  "ham_adamw": lambda lr: ham_optax.ham_adamw(lr, weight_decay=0.0, alpha=2.0, beta=0.0, mask=ALL),
  # SAM composes with HAM as the *outer* optimizer: HAM's mirror step then sees the gradient at the adversarial
  # point on each synchronising step, and the adversarial ascent steps stay plain.
  "sam(ham)": lambda lr: optax.contrib.sam(
    ham_optax.ham_sgd(lr, momentum=0.9, alpha=2.0, beta=0.0, mask=ALL),
    optax.chain(optax.contrib.normalize(), optax.sgd(0.01)),
    sync_period=2,
  ),
}


def _minimize(tx, loss, x0, steps):
  @jax.jit
  def step(carry, _):
    x, s = carry
    g = jax.grad(loss)(x)
    u, s = tx.update(g, s, x)
    return (optax.apply_updates(x, u), s), None

  (x, _), _ = jax.lax.scan(step, (x0, tx.init(x0)), None, length=steps)
  return x


@pytest.mark.parametrize("name", list(FACTORIES))
def test_converges_on_a_parabola(name):
  target = jnp.array([1.0, -1.5, 0.5])
  x0 = jnp.array([-0.5, 0.7, 2.0])  # signs must flip on two coordinates
  lr = 0.02 if "adam" in name else 0.05
  x = _minimize(FACTORIES[name](lr), lambda x: jnp.sum((x - target) ** 2), x0, 1500)
  np.testing.assert_allclose(x, target, atol=2e-2)


@pytest.mark.parametrize("name", ["ham_sgd", "ham_adam", "ham_adamw"])
def test_converges_on_rosenbrock(name):
  def rosenbrock(x):
    return (1.0 - x[0]) ** 2 + 100.0 * (x[1] - x[0] ** 2) ** 2

  # With Adam the inner step is normalised but the mirror step is not (it scales with lr*alpha*|g|, and |g| reaches
  # hundreds in Rosenbrock's valley), so HAM needs a smaller lr than bare Adam here (3e-3 stalls, bare Adam converges).
  lr = 3e-4 if name == "ham_sgd" else 1e-3
  x = _minimize(FACTORIES[name](lr), rosenbrock, jnp.array([-1.2, 1.0]), 10000)
  np.testing.assert_allclose(x, [1.0, 1.0], atol=5e-2)


def test_accepts_and_forwards_extra_args():
  seen = {}

  def spy_update(updates, state, params=None, **extra):
    seen.update(extra)
    return updates, state

  spy = optax.GradientTransformationExtraArgs(lambda p: optax.EmptyState(), spy_update)
  tx = ham_optax.ham(optax.chain(spy, optax.sgd(0.1)), 0.1)
  p = {"w": jnp.ones((2, 2))}
  tx.update(p, tx.init(p), p, value=jnp.array(3.0), key="k")
  assert set(seen) == {"value", "key"}
  # A plain GradientTransformation (no extra-args support) as inner also accepts extra args.
  plain = optax.GradientTransformation(lambda p: optax.EmptyState(), lambda u, s, p=None: (u, s))
  tx = ham_optax.ham(plain, 0.1)
  tx.update(p, tx.init(p), p, value=jnp.array(3.0))


def test_inject_hyperparams_learning_rate_alpha_beta():
  p = {"w": jnp.array([[0.5, -1.0], [2.0, 0.25]])}
  g = {"w": jnp.array([[1.0, 1.0], [-1.0, 0.5]])}
  tx = optax.inject_hyperparams(ham_optax.ham_sgd, static_args=("mask",))(
    learning_rate=0.1, alpha=3.0, beta=0.01, momentum=0.9
  )
  state = tx.init(p)
  assert set(state.hyperparams) >= {"learning_rate", "alpha", "beta"}
  u, state = jax.jit(tx.update)(g, state, p)
  ref = ham_optax.ham_sgd(0.1, momentum=0.9, alpha=3.0, beta=0.01)
  u_ref, _ = ref.update(g, ref.init(p), p)
  chex.assert_trees_all_close(u, u_ref, rtol=1e-6)

  # Changing the injected values changes the step exactly as constructing with them would.
  state.hyperparams["alpha"] = jnp.asarray(7.0)
  state.hyperparams["beta"] = jnp.asarray(0.5)
  state.hyperparams["learning_rate"] = jnp.asarray(0.05)
  u2, _ = jax.jit(tx.update)(g, state, p)
  ref2 = ham_optax.ham_sgd(0.05, momentum=0.9, alpha=7.0, beta=0.5)
  s_ref2 = ref2.init(p)
  _, s_ref2 = ref2.update(g, s_ref2, p)  # same momentum history as the injected run
  u_ref2, _ = ref2.update(g, s_ref2, p)
  chex.assert_trees_all_close(u2, u_ref2, rtol=1e-6)

  # ham itself (inner passed through as a static, non-numeric argument) and schedules for beta.
  tx = optax.inject_hyperparams(ham_optax.ham)(
    inner=optax.sgd(0.1), learning_rate=0.1, alpha=3.0, beta=optax.linear_schedule(0.1, 0.0, 5)
  )
  s = tx.init(p)
  u, s = jax.jit(tx.update)(g, s, p)
  assert np.isclose(float(s.hyperparams["beta"]), 0.1)


def test_bf16_params_with_f32_hyperparams_under_inject():
  p = {"w": jnp.ones((3, 2), jnp.bfloat16)}
  tx = optax.inject_hyperparams(ham_optax.ham_sgd, hyperparam_dtype=jnp.float32)(learning_rate=0.1, beta=1e-3)
  s = tx.init(p)
  assert s.hyperparams["beta"].dtype == jnp.float32
  assert float(s.hyperparams["beta"]) == pytest.approx(1e-3, rel=1e-6)


def test_multisteps_k4():
  p = {"w": jnp.array([[0.5, -1.0], [2.0, 0.25]])}
  tx = optax.MultiSteps(ham_optax.ham_sgd(0.1, momentum=0.9, alpha=5.0, beta=0.01), every_k_schedule=4)
  s = tx.init(p)
  gs = [jax.tree.map(lambda x, i=i: x * (i + 1), p) for i in range(4)]
  x = p
  for i, g in enumerate(gs):
    u, s = jax.jit(tx.update)(g, s, x)
    if i < 3:
      chex.assert_trees_all_equal(u, jax.tree.map(jnp.zeros_like, p))  # zero update on non-emitting steps
    x = optax.apply_updates(x, u)
  # The emitted step is HAM applied once to the mean gradient.
  ref = ham_optax.ham_sgd(0.1, momentum=0.9, alpha=5.0, beta=0.01)
  mean_g = jax.tree.map(lambda *a: sum(a) / 4, *gs)
  u_ref, _ = ref.update(mean_g, ref.init(p), p)
  chex.assert_trees_all_close(x, optax.apply_updates(p, u_ref), rtol=1e-6)
