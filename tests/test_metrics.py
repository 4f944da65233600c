"""Tests of ham_optax.metrics against float64 NumPy renderings."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ham_optax
from ham_optax import metrics
from ham_optax import sparsity as sp


def _params():
  rng = np.random.default_rng(0)
  w = rng.normal(size=(6, 5)).astype(np.float32)
  w[w < -0.5] = 0.0  # some exact zeros
  conv = rng.normal(scale=1e-3, size=(2, 2, 3, 4)).astype(np.float32)
  return {
    "w": jnp.asarray(w),
    "conv": jnp.asarray(conv),
    "b": jnp.asarray(rng.normal(size=(5,)), jnp.float32),
  }


def _np_selected(params):
  # Default selection: float leaves with ndim >= 2, in tree order ("conv" < "w").
  return {f"['{k}']": np.asarray(params[k], np.float64) for k in sorted(params) if np.ndim(params[k]) >= 2}


def test_sparsity_matches_numpy_and_jits():
  params = _params()
  got = jax.jit(metrics.sparsity)(params)
  sel = _np_selected(params)
  assert set(got["per_layer"]) == set(sel) == {"['w']", "['conv']"}
  for name, x in sel.items():
    assert float(got["per_layer"][name]) == pytest.approx(np.mean(x == 0), abs=1e-7)
  allx = np.concatenate([x.ravel() for x in sel.values()])
  assert float(got["global"]) == pytest.approx(np.mean(allx == 0), abs=1e-7)
  assert int(got["num_zeros"]) == int(np.sum(allx == 0)) > 0


def test_sparsity_agrees_with_sparsifier_target():
  params = _params()
  tx = sp.random_pruning(optax.sgd(0.1), 0.75, distribution="uniform")
  # Start from dense params so the only zeros are the pruned ones.
  dense = jax.tree.map(lambda x: x + 10.0, params)
  pruned = sp.apply_masks(dense, tx.init(dense))
  got = metrics.sparsity(pruned)
  assert float(got["per_layer"]["['w']"]) == pytest.approx(round(0.75 * 30) / 30)
  assert float(got["per_layer"]["['conv']"]) == pytest.approx(round(0.75 * 48) / 48)
  # A custom selection includes the bias (ndim 1).
  assert "['b']" in metrics.sparsity(pruned, prunable=lambda p: {k: True for k in p})["per_layer"]


def test_sign_flips_handles_zeros_explicitly():
  ref = {"w": jnp.array([[1.0, -1.0, 0.0, 2.0], [0.5, -0.5, 3.0, 0.0]]), "b": jnp.array([1.0, -1.0])}
  new = {"w": jnp.array([[-1.0, -2.0, -1.0, 0.0], [-0.5, 0.5, 3.0, 0.0]]), "b": jnp.array([-1.0, 1.0])}
  got = jax.jit(metrics.sign_flips)(new, ref)
  # Flips: (0,0) + -> -, (1,0) + -> -, (1,1) - -> +. Zero -> nonzero and nonzero -> zero are not flips.
  assert int(got["count"]) == 3
  assert int(got["per_layer"]["['w']"]) == 3
  assert float(got["fraction"]) == pytest.approx(3 / 8)
  both_nonzero = 5  # entries nonzero in both: (0,0), (0,1), (1,0), (1,1), (1,2)
  assert float(got["fraction_of_nonzero"]) == pytest.approx(3 / both_nonzero)
  assert "['b']" not in got["per_layer"]  # ndim 1: not selected by default


def test_sign_flips_random_vs_numpy():
  rng = np.random.default_rng(1)
  a = {"k": jnp.asarray(rng.normal(size=(40, 30)), jnp.float32)}
  b = {"k": jnp.asarray(np.where(rng.random((40, 30)) < 0.2, 0.0, rng.normal(size=(40, 30))), jnp.float32)}
  got = metrics.sign_flips(b, a)
  x, r = np.asarray(b["k"], np.float64), np.asarray(a["k"], np.float64)
  expected = np.sum(((x > 0) & (r < 0)) | ((x < 0) & (r > 0)))
  assert int(got["count"]) == expected
  assert float(got["fraction"]) == pytest.approx(expected / x.size)
  with pytest.raises(ValueError, match="shape"):
    metrics.sign_flips({"k": jnp.ones((40, 31))}, a)
  with pytest.raises(ValueError, match="another tree structure"):
    metrics.sign_flips(a, {"k": a["k"], "extra": a["k"]})
  for other in ({"j": a["k"]}, (a["k"],)):  # same leaves, other keys or container: not paired by position
    with pytest.raises(ValueError, match="another tree structure"):
      metrics.sign_flips(a, other)


def test_fraction_near_zero_and_inverse_metric():
  params = _params()
  sel = _np_selected(params)
  allx = np.concatenate([x.ravel() for x in sel.values()])
  for tol in (0.0, 1e-3, 0.1):
    got = jax.jit(metrics.fraction_near_zero, static_argnames="tol")(params, tol=tol)
    assert float(got["global"]) == pytest.approx(np.mean(np.abs(allx) <= tol), abs=1e-7)
    for name, x in sel.items():
      assert float(got["per_layer"][name]) == pytest.approx(np.mean(np.abs(x) <= tol), abs=1e-7)
  # conv has scale 1e-3: about 68% of it within 1e-3.
  assert 0.4 < float(metrics.fraction_near_zero(params)["per_layer"]["['conv']"]) < 0.95
  with pytest.raises(ValueError, match="tol"):
    metrics.fraction_near_zero(params, tol=-1.0)

  for alpha in (0.0, 1.0, 200.0):
    got = jax.jit(metrics.mean_inverse_metric)(params, alpha)  # alpha may be traced
    assert float(got["global"]) == pytest.approx(np.mean(1 + alpha * np.abs(allx)), rel=1e-6)
    for name, x in sel.items():
      assert float(got["per_layer"][name]) == pytest.approx(np.mean(1 + alpha * np.abs(x)), rel=1e-6)
  with pytest.raises(TypeError, match="alpha"):
    metrics.mean_inverse_metric(params, "200")


def test_metrics_track_ham_training():
  # During HAM training the mirror step never flips a sign (the new weight has the sign of x_half = p + the inner
  # step); flips versus initialisation come from the inner step, and the metrics count them as NumPy does.
  params = _params()
  target = jax.tree.map(lambda x: -x + 0.05, params)
  loss = lambda p: sum(0.5 * jnp.sum((p[k] - target[k]) ** 2) for k in p)  # noqa: E731
  tx = ham_optax.ham(optax.sgd(0.05), 0.05, alpha=5.0)
  step = jax.jit(lambda p, s: tx.update(jax.grad(loss)(p), s, p))
  p, s = params, tx.init(params)
  for _ in range(30):
    x_half = jax.tree.map(lambda x, g: x - 0.05 * g, p, jax.grad(loss)(p))
    u, s = step(p, s)
    p = optax.apply_updates(p, u)
    for k in ("w", "conv"):  # the leaves the mirror step applies to
      assert np.all(np.sign(np.asarray(p[k])) * np.sign(np.asarray(x_half[k])) >= 0), k
  plain = params
  for _ in range(30):
    plain = jax.tree.map(lambda x, g: x - 0.05 * g, plain, jax.grad(loss)(plain))
  assert not np.allclose(np.asarray(p["w"]), np.asarray(plain["w"]), atol=1e-3)  # the mirror step did act
  new, old = _np_selected(p), _np_selected(params)
  crossed = sum(int(np.sum(np.sign(new[k]) * np.sign(old[k]) < 0)) for k in new)
  assert crossed > 0  # the targets have opposite signs, so some weights crossed zero
  assert int(metrics.sign_flips(p, params)["count"]) == crossed
  expected = 1 + 5.0 * np.mean(np.concatenate([np.abs(x).ravel() for x in new.values()]))
  np.testing.assert_allclose(float(metrics.mean_inverse_metric(p, 5.0)["global"]), expected, rtol=1e-6)


def test_empty_selection_gives_nan():
  got = metrics.sparsity({"b": jnp.ones(3)})
  assert got["per_layer"] == {}
  assert np.isnan(float(got["global"]))


def _np_ham_diagnostics(params, grads, lr, alpha, beta, c):
  """float64 NumPy rendering of ham_diagnostics (default mask: float leaves with ndim >= 2)."""
  per_layer, es, invs = {}, [], []
  for k in sorted(params):
    x = np.asarray(params[k], np.float64)
    if x.ndim < 2:
      continue
    g = np.asarray(grads[k], np.float64)
    e = np.clip(-lr * (alpha * np.sign(x) * g + beta), -c, c)[x != 0]
    inv = 1.0 + alpha * np.abs(x)
    es.append(e)
    invs.append(inv.ravel())
    per_layer[f"['{k}']"] = (e, inv)

  def stats(e, inv):
    a = np.abs(e)
    return {
      "exponent_rms": np.sqrt(np.mean(a**2)) if a.size else 0.0,
      "exponent_max": a.max(initial=0.0),
      "clip_fraction": np.mean(a >= c) if a.size else 0.0,
      "inverse_metric_mean": inv.mean(),
      "inverse_metric_max": inv.max(),
    }

  return stats(np.concatenate(es), np.concatenate(invs)), {k: stats(*v) for k, v in per_layer.items()}


@pytest.mark.parametrize("lr,alpha,beta", [(0.1, 10.0, 0.0), (0.5, 200.0, 1e-3), (0.01, -3.0, 0.5)])
def test_ham_diagnostics_matches_numpy(lr, alpha, beta):
  params = _params()
  rng = np.random.default_rng(1)
  grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(scale=0.2, size=p.shape), jnp.float32), params)
  got = jax.jit(lambda p, g, a: metrics.ham_diagnostics(p, g, learning_rate=lr, alpha=a, beta=beta))(
    params, grads, alpha
  )
  want_global, want_layers = _np_ham_diagnostics(params, grads, lr, alpha, beta, 5.0)
  assert set(got["per_layer"]) == set(want_layers) == {"['w']", "['conv']"}
  for k, v in want_global.items():
    assert float(got["global"][k]) == pytest.approx(v, rel=1e-5, abs=1e-7), k
  for name, want in want_layers.items():
    for k, v in want.items():
      assert float(got["per_layer"][name][k]) == pytest.approx(v, rel=1e-5, abs=1e-7), (name, k)


def test_ham_diagnostics_clip_and_exponent_match_the_step():
  # With sign(params) = sign(x_half) (inner update 0), exp(exponent) is exactly the step's growth factor.
  params = {"w": jnp.array([[1.0, -2.0], [0.5, 0.0]]), "b": jnp.ones(2)}
  grads = {"w": jnp.array([[0.3, 40.0], [-0.01, 1.0]]), "b": jnp.ones(2)}
  tx = ham_optax.hyperbolic_step(0.1, alpha=5.0, beta=0.0)
  upd, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params, grad=grads)
  d = metrics.ham_diagnostics(params, grads, learning_rate=0.1, alpha=5.0)
  w_new = np.asarray(params["w"] + upd["w"])
  growth = np.abs(w_new[np.asarray(params["w"]) != 0] / np.asarray(params["w"])[np.asarray(params["w"]) != 0])
  assert float(d["global"]["exponent_max"]) == pytest.approx(np.abs(np.log(growth)).max(), rel=1e-5)
  assert float(d["global"]["exponent_max"]) == 5.0  # lr * alpha * 40 = 20, clipped
  assert float(d["global"]["clip_fraction"]) == pytest.approx(1 / 3)  # zero entries are not counted
  assert float(d["global"]["inverse_metric_max"]) == pytest.approx(11.0)
  assert list(d["per_layer"]) == ["['w']"]
  custom = metrics.ham_diagnostics(params, grads, learning_rate=0.1, alpha=5.0, mask={"w": False, "b": True})
  assert list(custom["per_layer"]) == ["['b']"]


def test_ham_diagnostics_rejects_bad_input():
  params = {"w": jnp.ones((2, 2))}
  with pytest.raises(ValueError, match="max_exponent"):
    metrics.ham_diagnostics(params, params, learning_rate=0.1, alpha=1.0, max_exponent=0.0)
  with pytest.raises(ValueError, match="shape"):
    metrics.ham_diagnostics(params, {"w": jnp.ones((2, 3))}, learning_rate=0.1, alpha=1.0)
  with pytest.raises(ValueError, match="learning_rate"):
    metrics.ham_diagnostics(params, params, learning_rate=-1.0, alpha=1.0)


@pytest.mark.parametrize("alpha", [1e39, -1e39, 3e38])
def test_ham_diagnostics_saturate_as_the_step_does(alpha):
  # alpha beyond float32's range acts as its largest value in the step; the statistics stay finite with it.
  params = {"w": jnp.array([[1.0, -2.0], [0.5, 0.0]]), "v": jnp.array([[3.0, 0.0]])}
  grads = {"w": jnp.array([[0.0, 1e-3], [-0.01, 1.0]]), "v": jnp.array([[0.0, 2.0]])}
  tx = ham_optax.hyperbolic_step(0.1, alpha=alpha, beta=0.0)
  upd, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params, grad=grads)
  assert all(np.all(np.isfinite(np.asarray(u))) for u in jax.tree.leaves(upd))
  d = metrics.ham_diagnostics(params, grads, learning_rate=0.1, alpha=alpha)
  for stats in [d["global"], *d["per_layer"].values()]:
    assert all(np.isfinite(float(v)) for v in stats.values()), stats
  g = d["global"]
  # Entries with a nonzero gradient are at the clip, those with a zero gradient have exponent 0 (not NaN).
  assert float(g["exponent_max"]) == 5.0
  assert float(g["clip_fraction"]) == pytest.approx(2 / 4)  # of the 4 nonzero weights, 2 have g != 0
  big = float(jnp.finfo(jnp.float32).max)
  # 1 + alpha |x| saturates at +-big; with alpha < 0 the largest value is that of a zero weight, 1.
  assert float(g["inverse_metric_max"]) == (big if alpha > 0 else 1.0)
  assert abs(float(g["inverse_metric_mean"])) <= big
  # Matches the step: the weight with g = 0 is unchanged, the others moved by the clipped factor e^-+5.
  w_new = np.asarray(params["w"] + upd["w"])
  assert w_new[0, 0] == 1.0
  assert abs(np.log(w_new[0, 1] / -2.0)) == pytest.approx(5.0, rel=1e-5)


def test_ham_diagnostics_zero_size_leaves():
  params = {"empty": jnp.zeros((0, 3)), "w": jnp.array([[1.0, -2.0]])}
  grads = {"empty": jnp.zeros((0, 3)), "w": jnp.array([[0.1, 0.1]])}
  d = jax.jit(lambda p, g: metrics.ham_diagnostics(p, g, learning_rate=0.1, alpha=2.0))(params, grads)
  assert set(d["per_layer"]) == {"['empty']", "['w']"}
  empty = {k: float(v) for k, v in d["per_layer"]["['empty']"].items()}
  assert empty == {
    "exponent_rms": 0.0,
    "exponent_max": 0.0,
    "clip_fraction": 0.0,
    "inverse_metric_mean": 1.0,
    "inverse_metric_max": 1.0,
  }
  # The empty leaf does not change the global statistics.
  alone = metrics.ham_diagnostics({"w": params["w"]}, {"w": grads["w"]}, learning_rate=0.1, alpha=2.0)
  for k, v in alone["global"].items():
    assert float(d["global"][k]) == pytest.approx(float(v), rel=1e-6), k
  assert float(d["global"]["inverse_metric_mean"]) == pytest.approx(1.0 + 2.0 * 1.5)
  only_empty = metrics.ham_diagnostics(
    {"e": params["empty"]}, {"e": grads["empty"]}, learning_rate=0.1, alpha=2.0
  )
  assert {k: float(v) for k, v in only_empty["global"].items()} == empty


def test_ham_diagnostics_per_leaf_alpha():
  # A pytree alpha (as ham takes it) gives each layer the statistics of its own scalar alpha.
  params = _params()
  rng = np.random.default_rng(2)
  grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(scale=0.2, size=p.shape), jnp.float32), params)
  alpha = jax.tree.map(lambda _: 0.0, params)
  alpha["w"], alpha["conv"] = 3.0, 40.0
  d = jax.jit(lambda a: metrics.ham_diagnostics(params, grads, learning_rate=0.1, alpha=a))(alpha)
  for name, value in (("w", 3.0), ("conv", 40.0)):
    single = metrics.ham_diagnostics(
      {name: params[name]}, {name: grads[name]}, learning_rate=0.1, alpha=value
    )
    for k, v in single["per_layer"][f"['{name}']"].items():
      assert float(d["per_layer"][f"['{name}']"][k]) == pytest.approx(float(v), rel=1e-6), (name, k)
  prefix = metrics.ham_diagnostics(params, grads, learning_rate=0.1, alpha={**alpha, "w": 40.0})
  full = metrics.ham_diagnostics(params, grads, learning_rate=0.1, alpha=40.0)
  assert float(prefix["global"]["exponent_max"]) == pytest.approx(
    float(full["global"]["exponent_max"]), rel=1e-6
  )
  with pytest.raises(ValueError, match=r"alpha\['w'\] must be finite"):
    metrics.ham_diagnostics(params, grads, learning_rate=0.1, alpha={**alpha, "w": float("nan")})
  with pytest.raises(ValueError, match="prefix"):
    metrics.ham_diagnostics(params, grads, learning_rate=0.1, alpha={"nope": 1.0})
