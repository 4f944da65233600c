"""Choosing HAM's alpha for a given model, optimizer and learning rate from a short calibration run."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ham_optax._src import checks, masking

PAPER_IMAGENET_ALPHA = 200.0
"""The paper's (and its PyTorch wrapper's) alpha, tuned for ResNet-50 on ImageNet with SGD + momentum at lr 0.1;
it diverges on small models with larger per-weight gradients (see :func:`suggest_alpha`)."""

DEFAULT_TARGET_RATIO = 0.2
"""Default ``target_ratio`` of :func:`suggest_alpha`: the mirror step's norm as a fraction of the inner step's."""

LR_TOLERANCE = 1.25
"""Largest change over the calibration window of the inner step size relative to ``learning_rate`` that
``check_learning_rate`` accepts: Adam's bias correction drifts by at most 1.13 (``b1 <= 0.95``), SGD by 1; a linear
warmup from 0 over ``num_steps`` or more steps by ``(num_steps - 1) / (num_steps // 2)`` (1.9 for 20 steps)."""

DIVERGENCE_FACTOR = 10.0
"""A calibration run whose loss median over its second half exceeds this factor times the first half's has
diverged. In the tests, geometrically growing runs had this ratio above 8e4, stable ones below 0.9; a run that
degrades without geometric growth (an MLP with SGD + momentum at lr 3: 3.8) is not caught."""


class LossFnError(ValueError):
  """``loss_fn`` returned something that is not a scalar loss (or ``(loss, aux)`` with ``has_aux=True``)."""


class CalibrationDivergedError(ValueError):
  """:func:`suggest_alpha`'s calibration run diverged (the inner optimizer alone is unstable at this learning
  rate); catch this class to tell it from a usage error, e.g. to record a grid's learning rate as diverged."""


def _scalar_loss(out: Any, has_aux: bool) -> jax.Array:
  """The loss in ``loss_fn``'s output, checked at trace time (a real scalar; a pair when ``has_aux``)."""
  if has_aux:
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
      raise LossFnError(
        f"suggest_alpha: has_aux=True needs loss_fn to return a pair (loss, aux), got {type(out).__name__}."
      )
    out = out[0]
  elif isinstance(out, (tuple, list)):
    raise LossFnError(
      f"suggest_alpha: loss_fn returned a {type(out).__name__} of length {len(out)}, not a scalar loss; "
      "if it returns (loss, aux), pass has_aux=True."
    )
  if not hasattr(out, "shape") or jnp.shape(out) != () or not masking.is_float(out):
    shape, dtype = getattr(out, "shape", None), getattr(out, "dtype", type(out).__name__)
    raise LossFnError(
      f"suggest_alpha: loss_fn must return a floating-point scalar loss, got shape {shape} and dtype {dtype}."
    )
  return out


def _scaled_sq_norms(leaves: list[Any]) -> tuple[jax.Array, jax.Array]:
  """Per leaf ``(k, s)`` with ``||v||^2 = 4^k * s`` (``v`` scaled exactly by ``2^-k``, its max's binade), so the
  squares cannot overflow float32; the host recombines them in float64."""
  ks, ss = [], []
  for v in leaves:
    v = _at_least_f32(v)
    _, k = jnp.frexp(jnp.max(jnp.abs(v), initial=0.0))
    ks.append(k.astype(jnp.int32))
    ss.append(jnp.sum(jnp.square(jnp.ldexp(v, -k))).astype(jnp.float32))
  return jnp.stack(ks), jnp.stack(ss)


def _host_norms(k: Any, s: Any) -> np.ndarray:
  """Per-leaf L2 norms in float64 from :func:`_scaled_sq_norms` (``inf``/``nan`` where ``v`` was not finite)."""
  return np.ldexp(np.sqrt(np.asarray(s, np.float64)), np.asarray(k, np.int64))


def _at_least_f32(x: Any) -> jax.Array:
  return jnp.asarray(x, jnp.promote_types(jnp.result_type(x), jnp.float32))


def _float_view(leaves: list[Any], is_float: tuple[bool, ...]) -> list[Any]:
  """The leaves the inner optimizer sees: non-float leaves (integers, PRNG keys) as float32 zeros."""
  return [x if f else jnp.zeros(jnp.shape(x), jnp.float32) for x, f in zip(leaves, is_float, strict=True)]


def _make_step(loss_fn, inner, treedef, is_float, selected, has_aux):
  """The jitted calibration step: one step of ``inner`` (on the floating-point leaves) and the rule's norms."""

  def step(p, state, batch):
    leaves = treedef.flatten_up_to(p)

    def loss_of(float_leaves):
      it = iter(float_leaves)
      full = [next(it) if f else x for x, f in zip(leaves, is_float, strict=True)]
      return _scalar_loss(loss_fn(jax.tree.unflatten(treedef, full), batch), has_aux)

    loss, g_float = jax.value_and_grad(loss_of)([x for x, f in zip(leaves, is_float, strict=True) if f])
    it = iter(g_float)
    g = [next(it) if f else x for x, f in zip(_float_view(leaves, is_float), is_float, strict=True)]
    u, state = inner.update(
      jax.tree.unflatten(treedef, g), state, jax.tree.unflatten(treedef, _float_view(leaves, is_float))
    )
    u = treedef.flatten_up_to(u)
    new = [optax.apply_updates(x, ui) if f else x for x, ui, f in zip(leaves, u, is_float, strict=True)]
    fl = [v for vs in (g, u, new) for v, f in zip(vs, is_float, strict=True) if f]
    finite = jnp.all(jnp.stack([jnp.isfinite(loss), *[jnp.all(jnp.isfinite(v)) for v in fl]]))
    sel = [i for i, on in enumerate(selected) if on]
    u_norms = _scaled_sq_norms([u[i] for i in sel])
    mirror_norms = _scaled_sq_norms([jnp.abs(_at_least_f32(leaves[i])) * g[i] for i in sel])
    return jax.tree.unflatten(treedef, new), state, loss, finite, u_norms, mirror_norms

  return jax.jit(step)


def _make_lr_probe(inner, treedef, is_float, selected):
  """Jitted ``(params, j) -> ||u_j||``: the inner step for a gradient of ones after ``j`` zero-gradient steps,
  ``lr_inner(j)`` times a fixed step for SGD (any momentum), Lion and RMSProp, and nearly so for Adam."""

  def probe(p, j):
    view = _float_view(treedef.flatten_up_to(p), is_float)
    params = jax.tree.unflatten(treedef, view)
    zeros = jax.tree.unflatten(treedef, [jnp.zeros_like(x) for x in view])
    ones = jax.tree.unflatten(
      treedef, [jnp.ones_like(x) if f else x for x, f in zip(view, is_float, strict=True)]
    )
    state = jax.lax.fori_loop(0, j, lambda _, s: inner.update(zeros, s, params)[1], inner.init(params))
    u = treedef.flatten_up_to(inner.update(ones, state, params)[0])
    return _scaled_sq_norms([u[i] for i, on in enumerate(selected) if on])

  return jax.jit(probe)


_cached = {make: functools.lru_cache(maxsize=32)(make) for make in (_make_step, _make_lr_probe)}


def _get(make: Callable[..., Any], *key: Any) -> Callable[..., Any]:
  """``make(*key)``, cached on ``key`` (same ``loss_fn`` and ``inner`` objects: no new trace or compilation)."""
  try:
    return _cached[make](*key)
  except TypeError:  # an unhashable loss_fn or inner: no cache
    return make(*key)


def _check_batches(batches: Any, num_steps: int) -> Sequence[Any]:
  """``batches`` must be a sequence (read by index, never consumed) of at least ``num_steps`` batches."""
  if hasattr(batches, "__len__") and hasattr(batches, "__getitem__") and not isinstance(batches, dict):
    return batches  # a list or tuple, or e.g. an array of stacked batches
  if isinstance(batches, dict):
    hint = " A dict is one batch: pass [batch] * num_steps."
  elif hasattr(batches, "__next__") or hasattr(batches, "__iter__"):
    hint = (
      " An iterator or generator would be consumed: pass a list, e.g. "
      f"list(itertools.islice(iterator, {num_steps})), and train on the same iterator afterwards if you like."
    )
  else:
    hint = ""
  raise TypeError(
    f"suggest_alpha: batches must be a sequence (list or tuple) of at least num_steps={num_steps} batches, "
    f"got {type(batches).__name__}.{hint}"
  )


def _refuse_one_batch(loss_fn: Callable, params: Any, batches: Any, has_aux: bool, num_steps: int) -> None:
  """Raises if ``batches`` is itself one batch (``loss_fn(params, batches)`` works)."""
  try:
    _scalar_loss(jax.eval_shape(loss_fn, params, batches), has_aux)
  except Exception:  # noqa: BLE001 - only probing whether `batches` is itself one batch
    return
  raise ValueError(
    "suggest_alpha: batches looks like one batch (loss_fn(params, batches) works, on batches itself); pass a "
    f"sequence of batches, e.g. [batch] * {num_steps} or a list of minibatches."
  )


def _batch_error(loss_fn, params, batches, k: int, has_aux, num_steps, error: Exception) -> Exception:
  """The error to raise when calibration step ``k`` failed: a clear one if ``loss_fn`` rejects ``batches[k]``."""
  try:
    jax.eval_shape(loss_fn, params, batches[k])
  except Exception as e:  # noqa: BLE001 - re-raised with a clear message
    _refuse_one_batch(loss_fn, params, batches, has_aux, num_steps)
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return ValueError(
      f"suggest_alpha: loss_fn(params, batches[{k}]) fails ({type(e).__name__}: {first[:300]}); each entry "
      "of batches is passed to loss_fn as is: check that it is one batch loss_fn accepts, and that loss_fn "
      "can be traced by jax.grad and jax.jit."
    )
  return error  # loss_fn is fine on this batch: the failure is elsewhere (e.g. in inner)


def _check_learning_rate(probe, params, learning_rate, num_steps: int) -> None:
  """Raises if ``learning_rate`` does not follow the inner optimizer's own step size over the window."""
  scaled = []
  for j in sorted({num_steps // 2, (num_steps // 2 + num_steps - 1) // 2, num_steps - 1}):
    norm = float(np.sqrt(np.sum(np.square(_host_norms(*probe(params, j))))))
    lr = _lr_at(learning_rate, j)
    if not math.isfinite(norm) or (norm == 0 and lr == 0):
      continue
    scaled.append((j, norm / lr if lr > 0 else math.inf))
  values = [s for _, s in scaled]
  if not values or max(values) == 0:
    return
  if min(values) == 0:
    skipped = ", ".join(str(j) for j, v in scaled if v == 0)
    raise ValueError(
      f"suggest_alpha: the inner optimizer makes no update at step(s) {skipped} of the calibration window while "
      "learning_rate is nonzero (e.g. optax.MultiSteps accumulating gradients): pass the optimizer that makes "
      "every step (the one MultiSteps wraps), or check_learning_rate=False."
    )
  drift = max(values) / min(values)
  if drift > LR_TOLERANCE:
    detail = ", ".join(f"step {j}: {s:.3g}" for j, s in scaled)
    raise ValueError(
      "suggest_alpha: learning_rate does not follow the inner optimizer's own step size: over the calibration "
      f"window the inner step divided by learning_rate changes by a factor {drift:.3g} ({detail}), e.g. a "
      "warmup schedule inside inner with its peak value passed as learning_rate. Pass the inner optimizer's "
      "own learning rate or schedule (the same object) here and to ham_optax.ham; or check_learning_rate=False "
      "for an optimizer whose step size changes on its own over the first steps."
    )


def _diverged(how: str) -> CalibrationDivergedError:
  return CalibrationDivergedError(
    f"suggest_alpha: the calibration run diverged {how}: the inner optimizer is unstable at this learning rate "
    "on its own, so no alpha can be derived from it; lower the learning rate (or check loss_fn)."
  )


def _lr_at(learning_rate: optax.ScalarOrSchedule, k: int) -> float:
  lr = float(
    checks.check_real_dtype(learning_rate(k), "learning_rate") if callable(learning_rate) else learning_rate
  )
  if not (math.isfinite(lr) and lr >= 0):
    raise ValueError(f"suggest_alpha: learning_rate at step {k} is {lr}; it must be finite and >= 0.")
  return lr


def _window_ratios(lrs, u_norms, mirror_norms) -> tuple[np.ndarray, np.ndarray]:
  """Per step: the global ratio ``||u|| / (lr ||x g||)`` and the per-leaf ratios (rows: steps; nan: undefined)."""
  u, m = np.stack(u_norms), np.stack(mirror_norms)  # (steps, selected leaves), float64
  lrs = np.asarray(lrs, np.float64)[:, None]
  with np.errstate(divide="ignore", invalid="ignore"):
    per_leaf = np.where(m > 0, u / (lrs * m), np.nan)
    den = lrs[:, 0] * np.sqrt(np.sum(np.square(m), 1))
    total = np.where(den > 0, np.sqrt(np.sum(np.square(u), 1)) / den, np.nan)
  return total, per_leaf


def _median_finite(values: np.ndarray) -> float:
  values = values[np.isfinite(values)]
  return float(np.median(values)) if values.size else math.nan


def suggest_alpha(
  loss_fn: Callable[[Any, Any], Any],
  params: Any,
  batches: Sequence[Any],
  inner: optax.GradientTransformation,
  learning_rate: optax.ScalarOrSchedule,
  *,
  target_ratio: float = DEFAULT_TARGET_RATIO,
  num_steps: int = 20,
  mask: masking.MaskOrFn = None,
  has_aux: bool = False,
  per_leaf: bool = False,
  check_learning_rate: bool = True,
) -> float | Any:
  r"""An alpha for HAM from a short run of the inner optimizer: the mirror step is ``target_ratio`` of its step.

  Runs ``num_steps`` steps of ``inner`` alone (no HAM) on ``batches[0]``, ``batches[1]``, ... and records, over
  the ``mask``-selected leaves, the norms of the inner update :math:`u_k` and of :math:`\eta_k\,|x_k| \odot g_k`,
  HAM's mirror step per unit alpha. Then

  .. math::
    \alpha = \rho \cdot \operatorname{median}_{k \ge K/2}
      \frac{\|u_k\|_2}{\eta_k\,\big\|\,|x_k| \odot g_k\big\|_2},

  with :math:`\rho` = ``target_ratio`` (over the second half of the steps, once the moments have warmed up): an
  ordinary alpha for :func:`ham_optax.ham` (for SGD without momentum :math:`\alpha \approx \rho / \overline{|x|}`).

  ``batches`` is read by index, never consumed; only floating-point leaves are differentiated and updated. The
  jitted step is cached on the ``loss_fn`` and ``inner`` objects, ``has_aux``, the mask and the params' structure;
  the result is deterministic and costs ``num_steps`` gradient evaluations. To check alpha during training:
  :func:`ham_optax.metrics.ham_diagnostics`; for Flax NNX and the measurements: the alpha guide
  (``docs/guides/choosing_alpha.md``).

  Args:
    loss_fn: ``loss_fn(params, batch) -> loss``, a scalar (``(loss, aux)`` with ``has_aux=True``; ``aux`` unused).
    params: the initial parameters (a pytree; an ``nnx.State`` works).
    batches: a sequence of at least ``num_steps`` batches, each passed to ``loss_fn`` as is.
    inner: the optimizer HAM will wrap (e.g. ``optax.sgd(lr, momentum=0.9)``).
    learning_rate: the inner optimizer's learning rate (or schedule, evaluated at ``0 .. num_steps - 1``).
    target_ratio: :math:`\rho > 0`, the mirror step's norm as a fraction of the inner step's.
    num_steps: number of calibration steps, >= 2.
    mask: the leaves HAM's mirror step applies to, as for :func:`ham_optax.ham` (``None``: kernels).
    has_aux: whether ``loss_fn`` returns ``(loss, aux)``.
    per_leaf: apply the rule to each selected leaf on its own (same run): one alpha per leaf (0.0 for unselected
      leaves, the global alpha where the ratio is never defined) for :func:`ham_optax.ham` (NNX: ``nnx.pure``).
    check_learning_rate: raise a ValueError where the inner step size divided by ``learning_rate`` changes by
      more than a factor 1.25 over the window (e.g. a warmup inside ``inner``).

  Returns:
    alpha as a Python float, or with ``per_leaf=True`` a pytree of Python floats shaped like ``params``.

  Raises:
    TypeError: ``batches`` is not a sequence, ``inner`` is not a transformation, or a mask entry is invalid.
    CalibrationDivergedError: the run diverged (non-finite values, or a loss median over the second half above
      10 times the first half's); a ValueError.
    ValueError: a bad argument or batch (naming the entry), a ``loss_fn`` output that is not a scalar loss, a
      learning-rate mismatch, or no finite step ratio.

  Example:
    >>> import jax, jax.numpy as jnp, optax, ham_optax
    >>> kx, ky = jax.random.split(jax.random.key(0))
    >>> x = jax.random.normal(kx, (64, 8)); y = x @ jnp.arange(8.0)
    >>> params = {"w": 0.1 * jax.random.normal(ky, (8, 1))}
    >>> loss = lambda p, b: jnp.mean((b[0] @ p["w"] - b[1][:, None]) ** 2)
    >>> inner = optax.sgd(0.01, momentum=0.9)
    >>> alpha = ham_optax.suggest_alpha(loss, params, [(x, y)] * 20, inner, 0.01)
    >>> tx = ham_optax.ham(inner, 0.01, alpha=alpha, beta=0.0)
    >>> alpha > 0
    True
  """
  batches, selected = _check_args(
    loss_fn, params, batches, inner, learning_rate, target_ratio, num_steps, mask, has_aux
  )
  leaves, treedef = jax.tree.flatten(params)
  key = (treedef, tuple(bool(masking.is_float(x)) for x in leaves), selected)
  run = _calibrate(loss_fn, params, batches, inner, learning_rate, num_steps, has_aux, key)
  if check_learning_rate:
    _check_learning_rate(_get(_make_lr_probe, inner, *key), params, learning_rate, num_steps)
  return _alpha_from_ratios(*_window_ratios(*run), target_ratio, selected, treedef, per_leaf)


def _check_args(
  loss_fn, params, batches, inner, learning_rate, target_ratio, num_steps, mask, has_aux
) -> tuple[Sequence, tuple]:
  """Checks :func:`suggest_alpha`'s arguments; returns ``batches`` and the mask's flags per leaf."""
  checks.check_scalar(target_ratio, "target_ratio", lo=0.0, lo_open=True)
  checks.check_scalar(learning_rate, "learning_rate", lo=0.0, lo_open=True, schedule_ok=True)
  checks.check_int(num_steps, "num_steps", 2, owner="suggest_alpha")
  checks.check_inner(inner, "suggest_alpha")
  batches = _check_batches(batches, num_steps)
  selected = masking.resolve_mask(mask, params)
  if not any(selected):
    raise ValueError("suggest_alpha: the mask selects no parameter; HAM would do nothing.")
  if len(batches) < num_steps:
    _refuse_one_batch(loss_fn, params, batches, has_aux, num_steps)
    raise ValueError(
      f"suggest_alpha: batches holds {len(batches)} batches, num_steps={num_steps} needs as many."
    )
  return batches, selected


def _calibrate(
  loss_fn, params, batches, inner, learning_rate, num_steps, has_aux, key
) -> tuple[list, list, list]:
  """Runs ``inner`` alone for ``num_steps`` steps; returns the learning rates and, per step, the per-leaf norms of
  the inner update and of ``|x| * g``. Raises :class:`CalibrationDivergedError` if the run diverges."""
  treedef, is_float, _ = key
  step = _get(_make_step, loss_fn, inner, *key, bool(has_aux))
  p, state = (
    params,
    inner.init(jax.tree.unflatten(treedef, _float_view(treedef.flatten_up_to(params), is_float))),
  )
  lrs, losses, u_norms, mirror_norms = [], [], [], []
  for k in range(num_steps):
    lrs.append(_lr_at(learning_rate, k))
    try:
      p, state, loss, finite, u_sq, m_sq = step(p, state, batches[k])
    except LossFnError:
      raise
    except Exception as e:
      raise _batch_error(loss_fn, params, batches, k, has_aux, num_steps, e) from e
    if not bool(finite):
      raise _diverged(f"at step {k} of {num_steps} (non-finite loss, gradient, update or parameters)")
    losses.append(float(loss))
    u_norms.append(_host_norms(*u_sq))
    mirror_norms.append(_host_norms(*m_sq))
    if not (np.all(np.isfinite(u_norms[-1])) and np.all(np.isfinite(mirror_norms[-1]))):
      raise _diverged(f"at step {k} of {num_steps} (the update or |x| * g overflows)")
  first, second = np.median(losses[: num_steps // 2]), np.median(losses[num_steps // 2 :])
  if first > 0 and second > DIVERGENCE_FACTOR * first:
    raise _diverged(f"(the loss's median grew from {first:.3g} to {second:.3g} between its two halves)")
  return lrs, u_norms, mirror_norms


def _alpha_from_ratios(total, per_leaf_ratios, target_ratio, selected, treedef, per_leaf) -> float | Any:
  """``target_ratio`` times the median ratio over the window's second half: one alpha, or one per leaf (0.0 for
  unselected leaves, the global alpha where a leaf's ratio is never defined)."""
  half = len(total) // 2
  alpha = target_ratio * _median_finite(total[half:])
  if not math.isfinite(alpha):
    raise ValueError(
      "suggest_alpha: the calibration run gave no finite step ratio (zero gradients on the selected weights, "
      "a zero learning rate or inner step throughout the window); check loss_fn, the mask and the learning rate."
    )
  if not per_leaf:
    return float(alpha)
  window = per_leaf_ratios[half:]
  per = iter([target_ratio * _median_finite(window[:, i]) for i in range(window.shape[1])])
  out = [next(per) if on else 0.0 for on in selected]
  return jax.tree.unflatten(treedef, [float(a) if math.isfinite(a) else float(alpha) for a in out])
