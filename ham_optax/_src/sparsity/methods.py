"""The sparsifiers (random pruning at init, GMP, AC/DC, RigL): :func:`.core.sparsifier` with their mask rules."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from ham_optax._src import checks, masking
from ham_optax._src.sparsity import core as _core
from ham_optax._src.sparsity import distributions as _distributions

_SCOPES = ("global", "layer")
_MAX_TABLE = 4096  # longest GMP schedule (in mask updates) whose zero counts are tabulated on the host


def _random_masks(leaves: list[jax.Array], sparsity: float, distribution: str, seed: int) -> list[jax.Array]:
  """Masks with exactly the distribution's number of zeros per layer, at uniformly random positions."""
  shapes = [tuple(jnp.shape(p)) for p in leaves]  # a Python-float leaf is a 1-entry layer of shape ()
  zeros = _distributions.layer_zero_counts(shapes, sparsity, distribution)
  key = jax.random.key(seed)
  masks = []
  for i, (shape, z) in enumerate(zip(shapes, zeros, strict=True)):
    n = math.prod(shape)
    perm = jax.random.permutation(jax.random.fold_in(key, i), n)
    flat = jnp.zeros(n, bool).at[perm[: n - z]].set(True)
    masks.append(flat.reshape(shape))
  return masks


def random_pruning(
  inner: optax.GradientTransformation,
  sparsity: float,
  *,
  distribution: str = "erk",
  seed: int = 0,
  prunable: masking.MaskOrFn = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Random pruning at initialisation (PaI): a fixed random mask per layer, drawn once in ``init``.

  Layer :math:`l` with :math:`n_l` weights gets :math:`z_l` zeros at uniformly random positions:
  ``"uniform"``: :math:`z_l = \mathrm{round}(s\,n_l)`; ``"erk"``: Erdős–Rényi-Kernel densities
  :math:`d_l \propto \sum_i k_i / \prod_i k_i` over the layer's shape :math:`k` (Evci et al. 2020), with
  :math:`\sum_l z_l = \mathrm{round}(s\sum_l n_l)` and :math:`z_l \le n_l - 1`
  (:func:`~ham_optax.sparsity.layer_zero_counts`). Each step gives ``params + updates = mask * (params +
  inner(mask * g))``.

  Call :func:`~ham_optax.sparsity.apply_masks` once after ``init`` so training starts sparse. HAM's paper
  (Jacobs et al., ICLR 2026, arXiv:2506.02630, Table 2) pairs HAM with this baseline:
  ``random_pruning(ham(optax.sgd(lr, 0.9), lr), 0.9)``.

  Args:
    inner: the optimizer proposing new params (e.g. ``ham_optax.ham(optax.sgd(0.1, 0.9), 0.1)``).
    sparsity: target fraction of pruned weights among prunable leaves, in ``[0, 1)``.
    distribution: ``"erk"`` or ``"uniform"``.
    seed: seed of the random masks (static int).
    prunable: which leaves are pruned: ``None`` (floating leaves with ``ndim >= 2``), a bool pytree or a
      callable ``params -> bool pytree``.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` with :class:`SparsifierState`.

  Example:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import ham_optax
    >>> from ham_optax import sparsity
    >>> params = {"w": jnp.ones((4, 5)), "b": jnp.ones(5)}
    >>> tx = sparsity.random_pruning(ham_optax.ham(optax.sgd(0.1), 0.1), 0.8, distribution="uniform")
    >>> state = tx.init(params)
    >>> params = sparsity.apply_masks(params, state)  # sparse from step 0
    >>> print(int((params["w"] == 0).sum()), int((params["b"] == 0).sum()))
    16 0
    >>> print(sparsity.get_masks(state)["w"].shape)
    (4, 5)
  """
  checks.check_inner(inner, "random_pruning")
  sparsity = checks.check_sparsity(sparsity)
  checks.check_choice(distribution, "distribution", _distributions.DISTRIBUTIONS)
  seed = checks.check_int(seed, "seed", 0)
  init_rule = functools.partial(_random_masks, sparsity=sparsity, distribution=distribution, seed=seed)
  return _core.sparsifier(inner, prunable, init_rule, None)


def magnitude_pruning(
  inner: optax.GradientTransformation,
  sparsity: float,
  *,
  begin_step: int,
  end_step: int,
  frequency: int = 100,
  initial_sparsity: float = 0.0,
  scope: str = "global",
  prunable: masking.MaskOrFn = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Gradual magnitude pruning (GMP) with Zhu & Gupta's cubic schedule (arXiv:1710.01878).

  The target sparsity at step :math:`t` is

  .. math::
    s_t = s_f + (s_i - s_f)\Big(1 - \frac{\min(\max(t - t_0, 0), T)}{T}\Big)^3,\qquad T = t_{end} - t_0

  (``optax.polynomial_schedule`` with power 3). At steps :math:`t_0, t_0 + \Delta t, \dots` and at
  :math:`t_{end}`, the mask keeps the largest-magnitude entries of the proposed params
  :math:`x_{1/2} = x + \mathrm{inner}(m \odot g)`, with exactly :math:`\mathrm{round}(s_t n)` zeros per layer
  (``scope="layer"``) or over all prunable weights (``scope="global"``), no layer pruned away (at most
  :math:`n_l - 1` per layer; globally :math:`N - L`). Pruned weights never come back (masks are nested).
  Before :math:`t_0` training is dense; after :math:`t_{end}` the final mask stays fixed.

  Args:
    inner: the optimizer proposing new params (e.g. ``ham_optax.ham(...)``).
    sparsity: final sparsity :math:`s_f` in ``[0, 1)``.
    begin_step: :math:`t_0`, first pruning step (``>= 0``).
    end_step: :math:`t_{end} > t_0`, the step at which :math:`s_f` is reached.
    frequency: :math:`\Delta t >= 1`, steps between mask updates.
    initial_sparsity: :math:`s_i \in [0, s_f]`, the sparsity applied at :math:`t_0`.
    scope: ``"global"`` (one magnitude threshold for all prunable leaves) or ``"layer"``.
    prunable: which leaves are pruned (see :func:`random_pruning`).

  Returns:
    An ``optax.GradientTransformationExtraArgs`` with :class:`SparsifierState`.
  """
  checks.check_inner(inner, "magnitude_pruning")
  sparsity, initial_sparsity, begin_step, end_step = _check_gmp_args(
    sparsity, initial_sparsity, begin_step, end_step
  )
  frequency = checks.check_int(frequency, "frequency", 1)
  checks.check_choice(scope, "scope", _SCOPES)

  zero_count = _gmp_zero_count(sparsity, initial_sparsity, begin_step, end_step, frequency)

  def mask_rule(t, params, grads, proposal_fn, old):
    del grads
    is_update = (t >= begin_step) & (t <= end_step) & (((t - begin_step) % frequency == 0) | (t == end_step))
    zeros = _zero_counts(params, scope, lambda n: zero_count(t, n))
    prune = lambda: _core.magnitude_masks(proposal_fn(), old, zeros, scope)  # noqa: E731
    return jax.lax.cond(is_update, prune, lambda: list(old)), False

  return _core.sparsifier(inner, prunable, _all_active, mask_rule)


def _check_gmp_args(sparsity: Any, initial_sparsity: Any, begin_step: Any, end_step: Any) -> tuple:
  """The cubic schedule's arguments, checked: ``0 <= s_i <= s_f < 1`` and ``0 <= t_0 < t_end``."""
  sparsity = checks.check_sparsity(sparsity)
  initial_sparsity = checks.check_sparsity(initial_sparsity, "initial_sparsity")
  checks.check_order(initial_sparsity, "initial_sparsity", sparsity, "sparsity", strict=False)
  begin_step = checks.check_int(begin_step, "begin_step", 0)
  end_step = checks.check_int(end_step, "end_step", 0)
  checks.check_order(begin_step, "begin_step", end_step, "end_step", strict=True)
  return sparsity, initial_sparsity, begin_step, end_step


def _all_active(leaves: list[jax.Array]) -> list[jax.Array]:
  """Initial masks with every weight active."""
  return [_core.all_active(p) for p in leaves]


def _zero_counts(params: list[jax.Array], scope: str, count: Callable[[int], Any]) -> Any:
  """``count(n)`` of all prunable weights together (``scope="global"``) or a list of it per layer."""
  if scope == "global":
    return count(sum(int(p.size) for p in params))
  return [count(int(p.size)) for p in params]


def _gmp_zero_count(
  sparsity: float, initial_sparsity: float, begin_step: int, end_step: int, frequency: int
) -> Callable[[jax.Array, int], jax.Array]:
  """``(t, n) -> round(s_t * n)``, GMP's number of zeros at update step ``t`` in ``n`` weights: tabulated on the
  host in float64 for at most ``_MAX_TABLE`` update steps, else on device in float32 (maybe off by one)."""
  n_updates = (end_step - begin_step) // frequency + 1 + int((end_step - begin_step) % frequency != 0)
  if n_updates > _MAX_TABLE:
    schedule = gmp_schedule(
      sparsity, begin_step=begin_step, end_step=end_step, initial_sparsity=initial_sparsity
    )
    return lambda t, n: jnp.round(schedule(t).astype(jnp.float32) * n).astype(jnp.int32)
  update_steps = sorted({*range(begin_step, end_step + 1, frequency), end_step})
  s_table = [
    sparsity + (initial_sparsity - sparsity) * (1 - (t - begin_step) / (end_step - begin_step)) ** 3
    for t in update_steps
  ]

  def zero_count(t: jax.Array, n: int) -> jax.Array:
    idx = jnp.where(t == end_step, n_updates - 1, jnp.clip((t - begin_step) // frequency, 0, n_updates - 1))
    return jnp.asarray([_core.n_zeros(s_t, n) for s_t in s_table], jnp.int32)[idx]

  return zero_count


def gmp_schedule(
  sparsity: float, *, begin_step: int, end_step: int, initial_sparsity: float = 0.0
) -> optax.Schedule:
  """The cubic sparsity schedule of :func:`magnitude_pruning` as an optax schedule ``step -> s_t``."""
  _check_gmp_args(sparsity, initial_sparsity, begin_step, end_step)
  return optax.polynomial_schedule(
    init_value=initial_sparsity,
    end_value=sparsity,
    power=3,
    transition_steps=end_step - begin_step,
    transition_begin=begin_step,
  )


def acdc_phases(
  total_steps: int,
  *,
  dense_warmup_fraction: float = 0.1,
  phase_steps: int | None = None,
  final_sparse_fraction: float = 0.1,
) -> tuple[int, int, int]:
  """Validated AC/DC schedule constants ``(warmup_steps, phase_steps, final_start)`` (see :func:`acdc`)."""
  total_steps = checks.check_int(total_steps, "total_steps", 1)
  dense_warmup_fraction = checks.check_fraction(dense_warmup_fraction, "dense_warmup_fraction", hi_open=True)
  final_sparse_fraction = checks.check_fraction(final_sparse_fraction, "final_sparse_fraction", hi_open=True)
  # w + f is checked itself (the tolerance absorbs its float rounding), not the rounded step counts
  if dense_warmup_fraction + final_sparse_fraction > 1.0 + 1e-9:
    raise ValueError(
      f"dense_warmup_fraction + final_sparse_fraction ({dense_warmup_fraction} + {final_sparse_fraction}) "
      "must not exceed 1: the schedule would end before it begins."
    )
  # Each part is rounded on its own (half to even), the final phase then shortened to fit: with w + f = 1 the two
  # rounded parts could otherwise overlap by a step (w = f = 0.5 of 3 steps: 2 + 2).
  warmup = round(dense_warmup_fraction * total_steps)
  final_start = total_steps - min(round(final_sparse_fraction * total_steps), total_steps - warmup)
  if phase_steps is None:
    phase_steps = max(1, round(0.05 * total_steps))
  phase_steps = checks.check_int(phase_steps, "phase_steps", 1)
  return warmup, phase_steps, final_start


def acdc_is_sparse(step: Any, warmup: int, phase_steps: int, final_start: int) -> Any:
  """Whether step ``step`` of AC/DC is in a sparse (compressed) phase; works on ints and traced arrays."""
  alternating = (step >= warmup) & (((step - warmup) // phase_steps) % 2 == 0)
  return (step >= final_start) | alternating


def acdc_sparse_phases(sparse_phases: Any) -> tuple[tuple[int, int | None], ...]:
  """Validated explicit AC/DC phases: sorted, disjoint, non-touching ``(start, end)`` step intervals that are
  sparse (``end`` exclusive; ``None`` only for the last one, meaning "to the end of training")."""
  try:
    phases = tuple((a, b) for a, b in sparse_phases)
  except (TypeError, ValueError) as e:
    raise TypeError(
      f"sparse_phases must be a sequence of (start, end) step pairs, got {sparse_phases!r}."
    ) from e
  if not phases:
    raise ValueError("sparse_phases must name at least one (start, end) sparse interval.")
  out, prev_end = [], -1
  for i, (a, b) in enumerate(phases):
    a = checks.check_int(a, f"sparse_phases[{i}] start", 0)
    if b is None and i != len(phases) - 1:
      raise ValueError(f"sparse_phases[{i}]: only the last interval may be open-ended (end=None).")
    if b is not None:
      b = checks.check_int(b, f"sparse_phases[{i}] end", a + 1)
    if a <= prev_end:
      raise ValueError(
        f"sparse_phases[{i}] starts at step {a}, not after the previous interval's end ({prev_end}): intervals "
        "must be sorted and separated by at least one dense step."
      )
    out.append((a, b))
    prev_end = b if b is not None else a
  return tuple(out)


def acdc(
  inner: optax.GradientTransformation,
  sparsity: float,
  *,
  total_steps: int | None = None,
  dense_warmup_fraction: float | None = None,
  phase_steps: int | None = None,
  final_sparse_fraction: float | None = None,
  sparse_phases: Any = None,
  reset_momentum: bool = True,
  scope: str = "global",
  prunable: masking.MaskOrFn = None,
) -> optax.GradientTransformationExtraArgs:
  r"""AC/DC: alternating compressed / decompressed training (Peste et al., NeurIPS 2021, arXiv:2106.12379).

  The schedule is given either by ``total_steps`` (fractions) or by explicit ``sparse_phases``:

  - ``total_steps`` :math:`T`: steps :math:`[0, W)` are dense (warm-up, :math:`W = \mathrm{round}(w\,T)`); from
    :math:`W` the schedule alternates sparse and dense phases of ``phase_steps`` steps each, starting sparse; steps
    :math:`[T - \min(\mathrm{round}(f\,T), T - W), \infty)` are sparse (final fine-tuning), so training ends sparse.
  - ``sparse_phases``: a list of ``(start, end)`` step intervals (``end`` exclusive, ``None`` for the last one
    means "until the end") that are sparse; every other step is dense. The example gives the published
    ImageNet schedule (100 epochs: dense 0-10, sparse/dense every 5 epochs, dense 75-85, sparse 85-100).

  On the first step of each sparse phase the mask keeps the largest-magnitude entries of the proposed params
  :math:`x_{1/2} = x + \mathrm{inner}(m \odot g)` with exactly :math:`\mathrm{round}(s\,n)` zeros (as
  :func:`magnitude_pruning`) and stays fixed through the phase. In dense phases the mask is all ``True`` and
  pruned weights restart from 0. A sparse phase that runs into the final phase keeps its mask. With
  ``reset_momentum`` (default, as every published AC/DC run) the floating-point moments of the inner state are
  zeroed before the first step of each dense phase after a sparse one.

  Reference: ``IST-DASLab/ACDC``. Deliberate differences: the mask is computed from the proposed params of the
  phase's first step rather than from the params before it, and the schedule is in steps, not epochs.

  Args:
    inner: the optimizer proposing new params (e.g. ``ham_optax.ham(...)``).
    sparsity: sparsity of the sparse phases, in ``[0, 1)``.
    total_steps: :math:`T`, the length of training (``>= 1``); give this or ``sparse_phases``.
    dense_warmup_fraction: :math:`w \in [0, 1)`, default 0.1 (with ``total_steps`` only).
    phase_steps: length of each alternating phase, default ``max(1, round(0.05 T))`` (with ``total_steps`` only).
    final_sparse_fraction: :math:`f \in [0, 1)`, with :math:`w + f \le 1`, default 0.1 (with ``total_steps`` only).
    sparse_phases: explicit sparse ``(start, end)`` step intervals, sorted and separated by dense steps; the three
      options above are then refused (the intervals are the whole schedule).
    reset_momentum: zero the inner optimizer's moments at each switch back to a dense phase (a copy of the weights
      in the state, schedule-free's ``z``, is kept, and zeroed only where pruned weights restart from 0).
    scope: ``"global"`` (one magnitude threshold for all prunable leaves) or ``"layer"``.
    prunable: which leaves are pruned (see :func:`random_pruning`).

  Returns:
    An ``optax.GradientTransformationExtraArgs`` with :class:`SparsifierState`.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from ham_optax import sparsity as sp
    >>> E = 2  # steps per epoch
    >>> phases = [(e * E, (e + 5) * E) for e in range(10, 75, 10)] + [(85 * E, None)]
    >>> tx = sp.acdc(optax.sgd(0.1, momentum=0.875), 0.9, sparse_phases=phases)
    >>> state = tx.init({"w": jnp.ones((10, 10))})
  """
  checks.check_inner(inner, "acdc")
  sparsity = checks.check_sparsity(sparsity)
  options = {
    "dense_warmup_fraction": dense_warmup_fraction,
    "phase_steps": phase_steps,
    "final_sparse_fraction": final_sparse_fraction,
  }
  is_sparse = _acdc_schedule(total_steps, sparse_phases, options)
  checks.check_choice(scope, "scope", _SCOPES)
  reset_momentum = checks.check_bool(reset_momentum, "reset_momentum")
  mask_rule, reset_rule = _acdc_rules(is_sparse, sparsity, scope)
  reset = reset_rule if reset_momentum else None
  return _core.sparsifier(inner, prunable, _all_active, mask_rule, reset_rule=reset)


def _acdc_schedule(total_steps: Any, sparse_phases: Any, options: dict[str, Any]) -> Callable[[Any], Any]:
  """``is_sparse(step)`` of :func:`acdc`'s schedule: the explicit ``sparse_phases``, or the phases of
  :func:`acdc_phases` from ``total_steps`` and ``options`` (its keyword arguments; ``None`` = its default)."""
  checks.check_exactly_one({"total_steps": total_steps, "sparse_phases": sparse_phases}, "acdc")
  given = {name: value for name, value in options.items() if value is not None}
  if sparse_phases is None:
    warmup, phase, final_start = acdc_phases(total_steps, **given)
    return functools.partial(acdc_is_sparse, warmup=warmup, phase_steps=phase, final_start=final_start)
  if given:
    raise ValueError(
      f"acdc: sparse_phases gives the whole schedule, so {', '.join(given)} (options of the schedule built from "
      "total_steps) would be ignored. Give total_steps with them, or sparse_phases alone."
    )
  return functools.partial(_in_sparse_phases, phases=acdc_sparse_phases(sparse_phases))


def _in_sparse_phases(t: Any, phases: tuple[tuple[int, int | None], ...]) -> Any:
  """Whether step ``t`` (an int or a traced array) lies in one of the ``(start, end)`` intervals ``phases``."""
  out = jnp.zeros(jnp.shape(t), bool)
  for a, b in phases:
    out = out | ((t >= a) & (t < b) if b is not None else t >= a)
  return out


def _acdc_rules(
  is_sparse: Callable[[Any], Any], sparsity: float, scope: str
) -> tuple[_core.MaskRule, _core.ResetRule]:
  """AC/DC's mask rule and momentum-reset rule for the schedule ``is_sparse(step)`` (see :func:`acdc`)."""

  def reset_rule(count):  # the first dense step after a sparse one
    return (count > 0) & ~is_sparse(count) & is_sparse(count - 1)

  def mask_rule(count, params, grads, proposal_fn, old):
    """Magnitude masks at the first step of each sparse phase, kept through it, all-True when dense."""
    del grads
    sparse_now, sparse_before = is_sparse(count), (count > 0) & is_sparse(count - 1)
    ones = _all_active(params)
    zeros = _zero_counts(params, scope, lambda n: _core.n_zeros(sparsity, n))
    prune = lambda: _core.magnitude_masks(proposal_fn(), ones, zeros, scope)  # noqa: E731
    keep_or_clear = lambda: jax.lax.cond(sparse_now, lambda: list(old), lambda: ones)  # noqa: E731
    return jax.lax.cond(sparse_now & ~sparse_before, prune, keep_or_clear), False

  return mask_rule, reset_rule


def rigl_drop_fraction(step: Any, drop_fraction: float, end_step: int, begin_step: int = 0) -> Any:
  r""":math:`\zeta_t = \frac{\zeta}{2}\big(1 + \cos\big(\pi \frac{t - T_0}{T_{end} - T_0}\big)\big)`, the cosine
  decay of RigL's drop fraction from :math:`\zeta` at :math:`T_0` (``begin_step``) to 0 at :math:`T_{end}`; the step
  is clipped to :math:`[T_0, T_{end}]` (as ``optax.cosine_decay_schedule``): :math:`\zeta` before, 0 after."""
  checks.check_scalar(drop_fraction, "drop_fraction", lo=0.0, hi=1.0, owner="rigl_drop_fraction")
  begin_step = checks.check_int(begin_step, "begin_step", 0, owner="rigl_drop_fraction")
  end_step = checks.check_int(end_step, "end_step", 0, owner="rigl_drop_fraction")
  checks.check_order(begin_step, "begin_step", end_step, "end_step", strict=True, owner="rigl_drop_fraction")
  t = jnp.clip(jnp.asarray(step, jnp.float32) - begin_step, 0.0, float(end_step - begin_step))
  return 0.5 * drop_fraction * (1.0 + jnp.cos(jnp.pi * t / (end_step - begin_step)))


def rigl(
  inner: optax.GradientTransformation,
  sparsity: float,
  *,
  update_every: int = 100,
  end_step: int,
  begin_step: int = 0,
  drop_fraction: float = 0.3,
  distribution: str = "erk",
  seed: int = 0,
  reset_state: bool = True,
  prunable: masking.MaskOrFn = None,
) -> optax.GradientTransformationExtraArgs:
  r"""RigL: sparse training with periodic drop-and-grow (Evci et al., "Rigging the Lottery", ICML 2020).

  The initial mask is random with per-layer sparsities from ``distribution`` (as :func:`random_pruning`). At
  every step :math:`t` with :math:`T_0 < t < T_{end}` and :math:`t - T_0 \equiv 0 \pmod{\Delta T}`, in each layer
  with :math:`a` active weights:

  1. drop the :math:`k = \mathrm{round}(\zeta_t a)` active weights of smallest :math:`|x_t|`, with
     :math:`\zeta_t = \frac{\zeta}{2}(1 + \cos(\pi (t - T_0) / (T_{end} - T_0)))`;
  2. grow :math:`k` weights outside the kept set with the largest dense-gradient magnitude :math:`|g_t|`;
  3. newly grown weights start at exactly 0 and, with ``reset_state`` (default, as both references), the
     floating-point moments of the inner state are zeroed at the grown positions. A weight dropped and regrown
     in the same step keeps its value and state (the number of active weights per layer never changes).

  References: ``google-research/rigl`` and ``google-research/jaxpruner``. Deliberate differences: the cosine is
  taken over :math:`t - T_0` (rigl's code evaluates it at :math:`t`, the same only for :math:`T_0 = 0`); drop
  scores are :math:`|x_t|` before this step's update; ties are broken by position instead of by noise.

  Args:
    inner: the optimizer proposing new params (e.g. ``ham_optax.ham(...)``).
    sparsity: fraction of pruned prunable weights, in ``[0, 1)``.
    update_every: :math:`\Delta T \ge 1`.
    end_step: :math:`T_{end} > T_0`; no mask updates from this step on (RigL uses ~75% of training).
    begin_step: :math:`T_0 \ge 0`; the first mask update is at :math:`T_0 + \Delta T`.
    drop_fraction: :math:`\zeta \in [0, 1]`.
    distribution: ``"erk"`` or ``"uniform"`` per-layer sparsities.
    seed: seed of the initial random masks.
    reset_state: zero the inner optimizer's moments at regrown positions (and schedule-free's copy ``z`` of the
      weights there, so that they restart from 0).
    prunable: which leaves are pruned (see :func:`random_pruning`; rigl's default: :func:`all_but` the first).

  Returns:
    An ``optax.GradientTransformationExtraArgs`` with :class:`SparsifierState`.
  """
  checks.check_inner(inner, "rigl")
  sparsity = checks.check_sparsity(sparsity)
  update_every = checks.check_int(update_every, "update_every", 1)
  end_step = checks.check_int(end_step, "end_step", 1)
  begin_step = checks.check_int(begin_step, "begin_step", 0)
  checks.check_order(begin_step, "begin_step", end_step, "end_step", strict=True)
  drop_fraction = checks.check_fraction(drop_fraction, "drop_fraction")
  checks.check_choice(distribution, "distribution", _distributions.DISTRIBUTIONS)
  seed = checks.check_int(seed, "seed", 0)
  reset_state = checks.check_bool(reset_state, "reset_state")
  init_rule = functools.partial(_random_masks, sparsity=sparsity, distribution=distribution, seed=seed)

  def mask_rule(count, params, grads, proposal_fn, old):
    del proposal_fn
    is_update = (count > begin_step) & (count < end_step) & ((count - begin_step) % update_every == 0)
    zeta = rigl_drop_fraction(count, drop_fraction, end_step, begin_step)
    return jax.lax.cond(is_update, lambda: _drop_and_grow(zeta, params, grads, old), lambda: list(old)), True

  return _core.sparsifier(inner, prunable, init_rule, mask_rule, reset_grown_state=reset_state)


def _drop_and_grow(
  zeta: jax.Array, params: list[jax.Array], grads: list[jax.Array], old: list[jax.Array]
) -> list[jax.Array]:
  """RigL's drop and grow (steps 1-2 of :func:`rigl`) per layer; ``k`` is computed in float32, ``a`` exactly; the
  magnitudes are ranked as :func:`.core.magnitudes` gives them (float64 stays float64)."""
  new = []
  for p, g, m in zip(params, grads, old, strict=True):
    n_active = jnp.sum(m, dtype=jnp.int32)
    k = jnp.round(zeta * n_active.astype(jnp.float32)).astype(jnp.int32)
    keep = _core.top_k_mask(jnp.where(m, _core.magnitudes(p), -jnp.inf), n_active - k)
    grow = _core.top_k_mask(jnp.where(keep, -jnp.inf, _core.magnitudes(g)), k)
    new.append(keep | grow)
  return new
