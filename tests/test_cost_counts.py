"""HAM's update stays near its cost floor, counted by XLA (deterministic, not a timing).

The compiled update (``tx.update`` + ``optax.apply_updates``, params and state donated) of ``ham(inner)`` may add
to the bare inner optimizer's at most one extra read of the gradient (4 bytes per float32 weight), one ``exp`` and
``FLOP_BUDGET`` elementwise operations per weight. A change that adds a pass over memory or a dozen operations per
weight fails here. The tree is large enough (1 M weights) that per-leaf scalar work does not show.
"""

import jax
import jax.numpy as jnp
import optax
import pytest

import ham_optax

FLOP_BUDGET = (
  17  # extra XLA flops per weight over the bare optimizer (the saturation and NaN guards included)
)

pytestmark = pytest.mark.skipif(
  jax.default_backend() != "cpu", reason="the counts are XLA:CPU's (other backends fuse differently)"
)


def _per_weight(tx, params):
  state = tx.init(params)

  def step(p, s, g):
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s

  cost = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, params).compile().cost_analysis()
  if isinstance(cost, list):  # older jax: one dict per program
    cost = cost[0]
  n = sum(x.size for x in jax.tree.leaves(params))
  return {k: float(cost.get(k, 0.0)) / n for k in ("flops", "transcendentals", "bytes accessed")}


@pytest.mark.parametrize(
  ("make", "lr"),
  [(lambda: optax.sgd(0.1, momentum=0.9), 0.1), (lambda: optax.adamw(1e-3, weight_decay=1e-4), 1e-3)],
  ids=["sgd-momentum", "adamw"],
)
def test_update_adds_one_gradient_read_one_exp_and_at_most_the_flop_budget(make, lr):
  params = {f"w{i}": jnp.full((512, 512), 0.01, jnp.float32) for i in range(4)}
  bare = _per_weight(make(), params)
  ham = _per_weight(ham_optax.ham(make(), lr, alpha=200.0, beta=1e-3), params)
  extra = {k: ham[k] - bare[k] for k in bare}
  assert bare["bytes accessed"] >= 20.0, bare  # the counts are real (params, grads, state read and written)
  assert extra["bytes accessed"] <= 4.0 + 1e-3, extra
  assert extra["transcendentals"] <= 1.0 + 1e-3, extra
  assert extra["flops"] <= FLOP_BUDGET + 1e-3, extra
