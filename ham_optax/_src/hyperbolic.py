"""The hyperbolic mirror step of HAM (Jacobs, Gadhikar, Rubio-Madrigal, Burkholz, ICLR 2026, arXiv:2506.02630)."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable
from typing import Any, Literal, NamedTuple, TypeVar

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ham_optax._src import checks, masking

SignFrom = Literal["x_half", "x"]
NormScope = Literal["masked", "all"]
# ``alpha``: a float or schedule for every selected leaf, or a pytree of them (the params' structure or a prefix).
AlphaOrTree = Any

# Largest exponent bound accepted: exp(80) ~ 5.5e34 is finite in float32, the narrowest compute dtype, so the growth
# factor is always finite and 0 * growth stays 0.
MAX_EXPONENT_LIMIT = 80.0

# The Args entries of the keyword arguments that hyperbolic_step, ham and the ham_* aliases share, written once and
# put into each docstring by `document_mirror_args` (the signatures stay explicit, for inspection and
# optax.inject_hyperparams).
MIRROR_ARGS_DOC = r"""
alpha: strength of the hyperbolic geometry: a float or an optax schedule of the step count. The default
  0.1 is mild (the largest grid value that never diverged on any model, optimizer and learning rate
  measured); :func:`ham_optax.suggest_alpha` picks one from a short calibration run; the paper's 200 is
  :data:`ham_optax.PAPER_IMAGENET_ALPHA`. Any finite real value: a negative ``alpha`` reverses the bias
  (weights grow where a positive ``alpha`` shrinks them). Per layer: a pytree of such values with the params'
  structure or a prefix of it, e.g. ``{"embed": 2.7, "mlp": 14.0}`` or ``suggest_alpha(..., per_leaf=True)``;
  leaf :math:`l` then takes the step with its own :math:`\alpha_l` (leaves outside ``mask`` ignore theirs).
beta: multiplicative weight decay, a factor :math:`e^{-\eta\beta}` per step, ``>= 0`` (default 1e-3), or
  a schedule (e.g. to switch the decay off late in training).
mask: the leaves the mirror step applies to: ``None`` for floating-point leaves with ``ndim >= 2``; a
  pytree of bools (same structure as params, or a prefix) or a callable ``params -> pytree``. The other
  leaves take the inner update unchanged.
max_exponent: clip :math:`c` of the exponent, in ``(0, 80]`` (default 5, as in the published wrapper; 80
  keeps :math:`e^c` finite in float32). A shrink never goes below :math:`4\epsilon` of the compute dtype
  (:math:`e^{-14.6}` in float32, :math:`e^{-34.7}` in float64), whatever :math:`c`: a smaller factor is
  below the rounding of :math:`x_{k+1/2}` and could flip the weight's sign.
max_weight_norm: if set, each selected tensor is rescaled after the step so that its L2 norm is at most
  this value, :math:`x_{k+1} \leftarrow x_{k+1} \min(1, \text{cap} / \|x_{k+1}\|_2)` (the published
  wrapper uses 1000; off by default). The rescale acts on the new weight itself (an overflowing entry counts
  as the dtype's largest finite value), so a tensor of any finite norm lands on the cap; a weight that is
  already ``+-inf`` keeps its value.
sign_from: whose sign the step uses: ``"x_half"`` (HYP*, the deployed variant, default) the sign of
  :math:`x_{k+1/2}`; ``"x"`` (GD;HYP, the analysed variant) the sign of :math:`x_k`.
max_weight_norm_scope: which tensors ``max_weight_norm`` clips: ``"masked"`` (default) the leaves the
  mirror step applies to; ``"all"`` every floating-point leaf, biases and normalisation scales included,
  as the published PyTorch wrapper does (there the other leaves are clipped after their inner update).
"""

# What ham and hyperbolic_step say about the step itself (its limit, stability and numerics), written once and put
# into both docstrings in place of their line ``{mirror_notes}``.
MIRROR_NOTES_DOC = r"""
The step never changes a sign, keeps exact zeros at zero and costs no memory beyond a step counter. In the
continuous limit (:math:`\beta=0`) HAM follows :math:`\dot x = -(1+\alpha|x|)\nabla f(x)`, mirror descent with
potential :math:`R_\alpha(x) = \sum_i [(1+\alpha|x_i|)\log(1+\alpha|x_i|) - \alpha|x_i|]/\alpha^2`.

Stability: keep :math:`\alpha\,\eta\,|g|` well below 1; the clip at :math:`\pm c` bounds the damage of a bad
step (a factor of at most :math:`e^c`) but does not make a too-large :math:`\alpha\eta` sensible.
:func:`ham_optax.suggest_alpha` picks alpha for a model and optimizer; :func:`ham_optax.metrics.ham_diagnostics`
shows whether it is too large.

Finite in, finite out, in every float dtype: :math:`\eta`, :math:`\eta\alpha`, :math:`\eta\beta` are saturated
to the compute dtype's finite range (``alpha=1e39`` acts as float32's largest value, so ``0 * alpha`` stays 0),
a new weight that would overflow (also from an infinite incoming update) is saturated just below the params
dtype's largest value, and a weight that is already ``+-inf`` keeps its value. NaN in, NaN out: a NaN gradient,
update or schedule value gives NaN in the new weights wherever plain optax would, never a silent zero update. An
infinite gradient entry meets ``alpha = 0`` as :math:`\infty \cdot 0` = NaN, as it meets a zero learning rate in
optax.
"""
SHARED_DOCS = {"{mirror_args}": MIRROR_ARGS_DOC, "{mirror_notes}": MIRROR_NOTES_DOC}

_F = TypeVar("_F", bound=Callable[..., Any])


def document_mirror_args(fn: _F) -> _F:
  """Puts :data:`MIRROR_ARGS_DOC` into ``fn``'s docstring in place of its line ``{mirror_args}`` (required), and
  :data:`MIRROR_NOTES_DOC` in place of a line ``{mirror_notes}``."""
  lines = (fn.__doc__ or "").splitlines(keepends=True)
  if "{mirror_args}" not in [line.strip() for line in lines]:
    raise ValueError(f"The docstring of {fn.__name__} has no line {{mirror_args}}.")
  for i, line in enumerate(lines):
    if line.strip() in SHARED_DOCS:
      text = SHARED_DOCS[line.strip()].lstrip("\n")
      lines[i] = textwrap.indent(text, line[: len(line) - len(line.lstrip())])
  fn.__doc__ = "".join(lines)
  return fn


class HyperbolicStepState(NamedTuple):
  """State of :func:`hyperbolic_step`.

  Attributes:
    count: int32 scalar, the number of updates so far; the learning rate, ``alpha`` and ``beta`` schedules are
      evaluated at it (0 at the first update, as in optax).
  """

  count: chex.Array


def is_alpha_tree(alpha: Any) -> bool:
  """Whether ``alpha`` is a pytree of per-leaf values (not one float, array, tracer or schedule)."""
  one_value = (int, float, complex, np.number, np.ndarray, jax.Array)
  if alpha is None or callable(alpha) or isinstance(alpha, one_value):
    return False
  treedef = jax.tree.structure(alpha)
  return not (treedef.num_nodes == 1 and treedef.num_leaves == 1)  # a container, even an empty one


def check_alpha(alpha: Any, *, schedule_ok: bool = True, owner: str = "") -> None:
  """Checks ``alpha``: a finite real float (or a schedule, with ``schedule_ok``), or a non-empty pytree of them
  (each named by its path); ``owner`` prefixes the empty-tree message."""
  leaves = jax.tree_util.tree_flatten_with_path(alpha)[0] if is_alpha_tree(alpha) else [((), alpha)]
  if not leaves:
    raise ValueError(f"{owner}alpha as a pytree needs at least one value, got an empty tree.")
  for path, value in leaves:
    checks.check_scalar(value, f"alpha{jax.tree_util.keystr(path)}", schedule_ok=schedule_ok)


def _alpha_per_leaf(alpha: Any, params: Any, treedef: Any) -> list[Any]:
  """``alpha`` (one value or a pytree prefix of ``params``) as one value per leaf of ``treedef``."""
  if not is_alpha_tree(alpha):
    return [alpha] * treedef.num_leaves
  try:
    full = jax.tree.map(lambda a, sub: jax.tree.map(lambda _: a, sub), alpha, params)
  except (ValueError, TypeError) as e:
    raise ValueError(
      "alpha as a pytree must have the params' structure or a prefix of it: "
      f"{masking._explain_mismatch(alpha, params, 'alpha')}."  # noqa: SLF001 - the package's own helper
    ) from e
  return treedef.flatten_up_to(full)


def _finite_scalar(x: Any, dtype: Any) -> jax.Array:
  """``x`` in ``dtype``, saturated to the dtype's finite range (1e39 in float32 is its max, not inf)."""
  big = float(jnp.finfo(dtype).max)
  if isinstance(x, (int, float, np.number, np.ndarray)):
    return jnp.asarray(min(max(float(x), -big), big), dtype)
  return jnp.clip(jnp.asarray(x).astype(dtype), -big, big)


def _clip_norm(new: jax.Array, p_c: jax.Array, delta: jax.Array, cap: Any, big: float) -> jax.Array:
  """The update that takes ``p_c`` to ``new`` rescaled to L2 norm ``cap`` when its norm exceeds ``cap``.

  ``new`` (saturated to +-``big``) is rescaled directly, not through a factor applied to ``delta``, so a huge
  weight lands on the cap instead of cancelling to zero. The norm is taken as ``2^k * ||new / 2^k||`` with
  ``2^k`` the binary exponent of ``max|new|``, which cannot overflow (the power-of-two scaling is exact; a
  division by ``max|new|`` would go through a reciprocal that CPUs flush to zero for values near the dtype's max).
  Returns ``delta`` unchanged where no clip is needed.
  """
  if new.size == 0:  # a zero-size tensor has norm 0: nothing to clip
    return delta
  new = jnp.clip(new, -big, big)
  m = jnp.max(jnp.abs(new))
  _, k = jnp.frexp(m)
  r = jnp.ldexp(new, -k)
  root = jnp.sqrt(jnp.sum(jnp.square(r)))
  cap_c = _finite_scalar(cap, new.dtype)
  over = (m > 0) & (jnp.ldexp(root, k) > cap_c)  # the norm is ldexp(root, k); m == 0 gives root == 0
  clipped = r * (cap_c / jnp.maximum(root, 0.5))
  return jnp.where(over, clipped - _clamp(p_c, big), delta)  # clamp: an infinite weight gets a finite update


# The smallest exponent of the step: exp(-floor) = 4 eps of the compute dtype (float32: e^-14.6; float64: e^-34.7).
_SHRINK_FLOOR = {jnp.dtype(t): -math.log(4 * float(jnp.finfo(t).eps)) for t in (jnp.float32, jnp.float64)}


def _clamp(x: jax.Array, bound: Any) -> jax.Array:
  """``x`` clipped to ``[-bound, bound]`` in one operation per entry (``jnp.clip`` takes two); NaN stays NaN."""
  b = jnp.asarray(bound, x.dtype)
  return jax.lax.clamp(-b, x, b)


def _saturate(delta: jax.Array, p: jax.Array, dtype: Any) -> jax.Array:
  """``delta`` in ``dtype``, such that ``p + delta`` computed in ``dtype`` (as ``optax.apply_updates`` does) is
  finite wherever the inputs are: finite in, finite out; NaN in, NaN out.

  One check, on exactly that sum ``s``: where ``|s|`` is at most ``safe``, the largest finite value *below* the
  dtype's maximum, ``delta`` is returned as it is. Elsewhere (an overflow, or NaN) the update is
  ``clip(clip(s, safe) - p, max)``:

  - finite inputs that overflow give the new weight ``+-safe`` with the sign of ``s``: aiming one ulp short means
    that the rounding of ``safe - p`` and of ``p + (safe - p)`` cannot carry the sum past the maximum (the outer
    clip only acts where ``delta`` itself overflowed against a weight of the other sign, and keeps that finite);
  - a weight that is already +-inf gets a finite update, so it keeps its value (``safe - inf`` is clipped),
    unless ``delta`` is itself infinite the other way (an inner update beyond about ``1e-2 * max`` against
    the infinite weight, at an exponent near ``-max_exponent``): there the sum is NaN;
  - a NaN in ``p`` or ``delta`` gives NaN at that entry (clipping keeps NaN).
  """
  big = float(jnp.finfo(dtype).max)
  safe = float(np.nextafter(np.asarray(big, dtype), np.asarray(0.0, dtype)))
  # In a narrower params dtype the cast itself could overflow: clip first (free for float32 and float64 params).
  d = delta.astype(dtype) if delta.dtype == dtype else _clamp(delta, big).astype(dtype)
  s = p.astype(dtype) + d
  target = _clamp(s, safe)
  return _clamp(jnp.where(target == s, d, target - p.astype(dtype)), big)


def _mirror_leaf(
  u: jax.Array,
  g: jax.Array,
  p: Any,
  lr: Any,
  alpha: Any,
  beta: Any,
  max_exponent: Any,
  max_weight_norm: Any,
  sign_from: str,
) -> jax.Array:
  """One tensor of the mirror step; returns ``x_new - p`` in ``p``'s dtype.

  Computed in at least float32. The delta is written as ``u + x_half * (exp(e) - 1)`` (algebraically
  ``x_half * exp(e) - p``) so that a zero exponent returns the inner update bit-for-bit. Every scalar is
  saturated to the compute dtype's finite range (so ``alpha = 1e39`` in float32 acts as float32's max, never as
  ``inf``, and ``0 * alpha`` stays 0); the sign of ``x_half`` is folded into the scalar ``lr * alpha`` (one
  select per weight), and the new weight is saturated to the params dtype's range by :func:`_saturate`.
  """
  p = jnp.asarray(p)
  cdtype = jnp.promote_types(p.dtype, jnp.float32)
  big_c = float(jnp.finfo(cdtype).max)
  # Scalars in the compute dtype too: float64 params get a float64 step (XLA folds these per tensor for free).
  lr_c = _finite_scalar(lr, cdtype)
  lr_alpha = jnp.clip(lr_c * _finite_scalar(alpha, cdtype), -big_c, big_c)
  lr_beta = jnp.clip(lr_c * _finite_scalar(beta, cdtype), -big_c, big_c)
  p_c = p.astype(cdtype)
  u_c = jnp.asarray(u).astype(cdtype)
  # Clipped so that an inner step overflowing the range cannot give inf * 0 below (clipping keeps NaN).
  x_half = _clamp(p_c + u_c, big_c)
  g_c = jnp.asarray(g).astype(cdtype)
  if sign_from == "x_half":
    # -sign(x_half) * lr * alpha as a select between two scalars. Where x_half == 0 this gives -lr * alpha
    # instead of 0, which is harmless: the factor multiplies x_half = 0.
    neg_s_lr_alpha = jnp.where(x_half < 0, lr_alpha, -lr_alpha)
  else:
    neg_s_lr_alpha = jnp.sign(p_c) * -lr_alpha  # GD;HYP: sign(x) == 0 must leave only the beta term
  # The scalars are finite, so the product may be +-inf but the difference is never inf - inf; the clip maps
  # +-inf to +-max_exponent (<= 80, so exp(e) is finite in float32) and keeps NaN. Below, the factor is kept
  # >= exp(-_SHRINK_FLOOR[cdtype]): smaller factors drown in the rounding of x_half (about 2 eps |x_half|), so
  # that the new weight could take the opposite sign.
  floor = _SHRINK_FLOOR[jnp.dtype(cdtype)]
  concrete = isinstance(max_exponent, (int, float, np.number))
  low = -min(float(max_exponent), floor) if concrete else -jnp.minimum(max_exponent, floor)
  e = jax.lax.clamp(
    jnp.asarray(low, cdtype), g_c * neg_s_lr_alpha - lr_beta, jnp.asarray(max_exponent, cdtype)
  )
  # exp(e) - 1 rather than expm1(e): XLA:CPU lowers expm1 to a routine ~4x slower than exp, which made the
  # mirror step cost 2.4x a bare SGD-momentum update (benchmarks/README.md). The absolute error of
  # x_half * (exp(e) - 1) stays within an ulp of x_half, and e == 0 still gives exactly 0.
  growth = jnp.exp(e)
  delta = u_c + x_half * (growth - 1.0)
  if max_weight_norm is not None:
    delta = _clip_norm(x_half * growth, p_c, delta, max_weight_norm, float(jnp.finfo(p.dtype).max))
  return _saturate(delta, p, p.dtype)


def _norm_clip_leaf(u: jax.Array, p: Any, max_weight_norm: Any) -> jax.Array:
  """``max_weight_norm_scope="all"`` on a leaf outside the mask: the inner update, then the norm clip."""
  p = jnp.asarray(p)
  if not jnp.issubdtype(p.dtype, jnp.floating):
    return u
  cdtype = jnp.promote_types(p.dtype, jnp.float32)
  big = float(jnp.finfo(p.dtype).max)
  p_c, u_c = p.astype(cdtype), jnp.asarray(u).astype(cdtype)
  delta = _clip_norm(p_c + u_c, p_c, u_c, max_weight_norm, big)
  return _saturate(delta, p, p.dtype)


def _evaluate(hyperparam: Any, name: str, count: jax.Array) -> Any:
  """A hyperparameter's value at step ``count``: a schedule evaluated (and checked), a number as it is."""
  return checks.check_real_dtype(hyperparam(count), name) if callable(hyperparam) else hyperparam


@document_mirror_args
def hyperbolic_step(
  learning_rate: optax.ScalarOrSchedule,
  alpha: AlphaOrTree = 0.1,
  beta: optax.ScalarOrSchedule = 1e-3,
  *,
  mask: masking.MaskOrFn = None,
  max_exponent: float = 5.0,
  max_weight_norm: float | None = None,
  sign_from: SignFrom = "x_half",
  max_weight_norm_scope: NormScope = "masked",
) -> optax.GradientTransformationExtraArgs:
  r"""The hyperbolic mirror step of HAM on its own, for hand-built chains.

  Use it as the last link after any optimizer, passing the raw gradient as the ``grad`` extra argument::

    tx = optax.chain(optax.sgd(lr, momentum=0.9), ham_optax.hyperbolic_step(lr, alpha=20.0))
    updates, state = tx.update(grads, state, params, grad=grads)

  (:func:`ham_optax.ham` does exactly this for you and needs no extra argument.) With
  :math:`u_k` the incoming update (the inner optimizer's step), :math:`x_{k+1/2} = x_k + u_k`, :math:`g_k` the raw
  gradient at :math:`x_k` and :math:`\eta_k` the learning rate at step :math:`k`, each selected leaf becomes

  .. math::
    x_{k+1} = x_{k+1/2} \odot \exp\Big(\operatorname{clip}\big(-\eta_k(\alpha\,\operatorname{sign}(s)\odot g_k
      + \beta),\ -c,\ c\big)\Big),

  with :math:`s = x_{k+1/2}` (``sign_from="x_half"``, the deployed "HYP*" variant) or :math:`s = x_k`
  (``sign_from="x"``, the analysed "GD;HYP" variant) and :math:`c` = ``max_exponent`` (a per-layer ``alpha``
  puts :math:`\alpha_l` in place of :math:`\alpha` for leaf :math:`l`). The returned update is
  :math:`x_{k+1} - x_k` in the params' dtype.

  {mirror_notes}

  Args:
    learning_rate: a float or an optax schedule; use the inner optimizer's learning rate so that both are
      evaluated at the same step count (this transform counts its own updates from 0).
    {mirror_args}

  Returns:
    An ``optax.GradientTransformationExtraArgs`` whose ``update`` requires ``params`` and the ``grad`` extra arg.

  Example:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import ham_optax
    >>> params = {"w": jnp.array([[1.0, -2.0]])}
    >>> grads = {"w": jnp.array([[0.5, 0.5]])}
    >>> tx = optax.chain(optax.sgd(0.1), ham_optax.hyperbolic_step(0.1, alpha=2.0, beta=0.0))
    >>> state = tx.init(params)
    >>> updates, state = tx.update(grads, state, params, grad=grads)
    >>> print(optax.apply_updates(params, updates)["w"].round(4))
    [[ 0.8596 -2.2656]]

  References:
    Jacobs et al., *Hyperbolic Aware Minimization: Implicit Bias for Sparsity*, ICLR 2026, arXiv:2506.02630.
  """
  _check_mirror_args(
    learning_rate, alpha, beta, max_exponent, max_weight_norm, sign_from, max_weight_norm_scope
  )
  # With max_weight_norm_scope="all" the leaves outside the mask are norm-clipped after their inner update too.
  clip_rest = max_weight_norm is not None and max_weight_norm_scope == "all"
  options = (max_exponent, max_weight_norm, sign_from, clip_rest)

  def init_fn(params):
    del params
    return HyperbolicStepState(count=jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None, *, grad=None, **extra_args):
    del extra_args
    _check_update_args(updates, params, grad)
    lr, b = (_evaluate(h, n, state.count) for h, n in ((learning_rate, "learning_rate"), (beta, "beta")))
    a = jax.tree.map(lambda h: _evaluate(h, "alpha", state.count), alpha)
    selected = masking.resolve_mask(mask, params)
    flat_u, treedef = jax.tree.flatten(updates)
    leaves = (treedef.flatten_up_to(grad), treedef.flatten_up_to(params), _alpha_per_leaf(a, params, treedef))
    out = [_leaf(*xs, lr, b, *options) for xs in zip(flat_u, *leaves, selected, strict=True)]
    return jax.tree.unflatten(treedef, out), HyperbolicStepState(count=optax.safe_increment(state.count))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _check_mirror_args(
  learning_rate, alpha, beta, max_exponent, max_weight_norm, sign_from, norm_scope
) -> None:
  """Checks the arguments of :func:`hyperbolic_step` (and so of :func:`ham` and its aliases)."""
  checks.check_scalar(learning_rate, "learning_rate", lo=0.0, schedule_ok=True)
  check_alpha(alpha)
  checks.check_scalar(beta, "beta", lo=0.0, schedule_ok=True)
  checks.check_scalar(max_exponent, "max_exponent", lo=0.0, lo_open=True)
  checks.check_scalar(max_exponent, "max_exponent", hi=MAX_EXPONENT_LIMIT)
  if max_weight_norm is not None:
    checks.check_scalar(max_weight_norm, "max_weight_norm", lo=0.0, lo_open=True)
  checks.check_choice(sign_from, "sign_from", ("x_half", "x"))
  checks.check_choice(norm_scope, "max_weight_norm_scope", ("masked", "all"))


def _check_update_args(updates: Any, params: Any, grad: Any) -> None:
  """``params`` and ``grad`` are given, and ``params``, ``grad`` and ``updates`` have the same structure and shapes."""
  if params is None:
    raise ValueError(checks.NO_PARAMS_MSG)
  if grad is None:
    raise ValueError(
      "hyperbolic_step needs the raw gradient: call update(updates, state, params, grad=grads), "
      "or use ham_optax.ham(inner, ...), which passes it for you."
    )
  checks.check_trees_match("hyperbolic_step", params=params, grad=grad, updates=updates)


def _leaf(u, g, p, alpha, on, lr, beta, max_exponent, max_weight_norm, sign_from, clip_rest) -> Any:
  """One leaf's update: the mirror step where ``on``, else the inner update (norm-clipped with ``clip_rest``)."""
  if on:
    return _mirror_leaf(u, g, p, lr, alpha, beta, max_exponent, max_weight_norm, sign_from)
  return _norm_clip_leaf(u, p, max_weight_norm) if clip_rest else u
