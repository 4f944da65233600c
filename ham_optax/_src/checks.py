"""Construction-time argument checks shared by every factory: the same mistake gets the same message everywhere.

JAX tracers (e.g. hyperparameters injected by ``optax.inject_hyperparams``) pass unchecked; schedules pass where
allowed and are checked when evaluated (:func:`check_real_dtype`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

NO_PARAMS_MSG = (
  "You are using a transformation that requires the current value of parameters, but you are not passing "
  "`params` when calling `update`."
)


def _prefix(owner: str | None) -> str:
  return f"{owner}: " if owner else ""


def _fmt(bound: float) -> str:
  return str(int(bound)) if float(bound).is_integer() else repr(float(bound))


def check_inner(inner: Any, owner: str) -> None:
  """Raises a TypeError unless ``inner`` is an optax ``GradientTransformation`` (not a factory, not MultiSteps)."""
  if isinstance(inner, optax.GradientTransformation) and callable(inner.init) and callable(inner.update):
    return
  if isinstance(inner, optax.MultiSteps):
    raise TypeError(
      f"{owner}(inner=...) got an optax.MultiSteps object, which is not a GradientTransformation. To accumulate "
      f"gradients over k steps, wrap the whole optimizer: optax.MultiSteps({owner}(inner, ...), k) (inside, "
      f"{owner}'s own step would still run on every micro-batch)."
    )
  hint = ""
  if callable(inner):
    name = getattr(inner, "__name__", type(inner).__name__)
    hint = f" `{name}` is a function: call it to build the transformation, e.g. optax.sgd(0.1) not optax.sgd."
  raise TypeError(
    f"{owner}(inner=...) needs an optax GradientTransformation (e.g. optax.sgd(0.1)), "
    f"got {type(inner).__name__}.{hint}"
  )


def _concrete(value: Any, name: str, owner: str | None, scalar: bool = True) -> np.ndarray | None:
  """``value`` as a NumPy array when it is a concrete real number (a scalar, with ``scalar``); None for tracers."""
  p = _prefix(owner)
  if isinstance(value, bool):
    raise TypeError(f"{p}{name} must be a number, got the bool {value!r}.")
  if isinstance(value, jax.core.Tracer):
    return None
  try:
    arr = np.asarray(value)
  except Exception as e:  # noqa: BLE001 - re-raised with a clear message
    raise TypeError(f"{p}{name} must be a number, got {type(value).__name__}.") from e
  if scalar and arr.shape != ():
    raise ValueError(f"{p}{name} must be a scalar, got shape {arr.shape}.")
  if jnp.issubdtype(arr.dtype, jnp.complexfloating):
    raise TypeError(f"{p}{name} must be a real number, got the complex {value!r}.")
  if arr.dtype == np.bool_ or not jnp.issubdtype(arr.dtype, jnp.number):  # jnp: bfloat16 is a number too
    raise TypeError(f"{p}{name} must be a number, got {arr.dtype}.")
  return arr


def check_scalar(
  value: Any,
  name: str,
  *,
  lo: float | None = None,
  hi: float | None = None,
  lo_open: bool = False,
  hi_open: bool = False,
  schedule_ok: bool = False,
  owner: str | None = None,
) -> Any:
  """Checks a real, finite scalar within ``lo``/``hi`` (``*_open``: strict), or a schedule with ``schedule_ok``.

  Returns ``value`` itself for tracers, schedules and arrays, a Python ``float`` for Python/NumPy numbers;
  ``owner`` (a factory name) prefixes the messages.
  """
  p = _prefix(owner)
  if callable(value):
    if schedule_ok:
      return value
    raise TypeError(f"{p}{name} must be a number, not a callable.")
  arr = _concrete(value, name, owner)
  if arr is None:
    return value
  v = float(arr)
  if not math.isfinite(v):
    raise ValueError(f"{p}{name} must be finite, got {v}.")
  ok_lo = lo is None or (v > lo if lo_open else v >= lo)
  ok_hi = hi is None or (v < hi if hi_open else v <= hi)
  if not (ok_lo and ok_hi):
    if lo is not None and hi is not None:
      cond = f"in {'(' if lo_open else '['}{_fmt(lo)}, {_fmt(hi)}{')' if hi_open else ']'}"
    elif lo is not None:
      cond = f"{'>' if lo_open else '>='} {_fmt(lo)}"
    else:
      cond = f"{'<' if hi_open else '<='} {_fmt(hi)}"
    raise ValueError(f"{p}{name} must be {cond}, got {v}.")
  return value if isinstance(value, (jax.Array, np.ndarray)) else v


def check_real_dtype(value: Any, name: str) -> Any:
  """Trace-time check of an evaluated hyperparameter (e.g. a schedule's output): a real scalar. Returns it."""
  dtype = jnp.result_type(value)
  if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
    raise TypeError(f"{name} must evaluate to a real number, got dtype {dtype}.")
  if jnp.ndim(value) != 0:
    raise ValueError(f"{name} must evaluate to a scalar, got shape {jnp.shape(value)}.")
  return value


INT32_MAX = 2**31 - 1
"""The largest step, size or seed :func:`check_int` accepts: optax counts steps in int32, and JAX keys and sizes
are int32 unless x64 is on, so a larger value would wrap around."""


def check_int(
  value: Any, name: str, minimum: int, owner: str | None = None, none_ok: bool = False
) -> int | None:
  """Checks an int in ``[minimum, INT32_MAX]`` (not a bool; ``None`` passes with ``none_ok``); returns a Python
  ``int``. Steps, sizes and seeds beyond int32 would wrap around inside JAX, so they are refused here."""
  if value is None and none_ok:
    return None
  p = _prefix(owner)
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise TypeError(f"{p}{name} must be an int, got {type(value).__name__}.")
  if value < minimum:
    raise ValueError(f"{p}{name} must be >= {minimum}, got {value}.")
  if value > INT32_MAX:
    raise ValueError(f"{p}{name} must be <= {INT32_MAX} (an int32), got {value}.")
  return int(value)


def check_choice(value: Any, name: str, choices: Sequence[Any]) -> Any:
  """Checks that ``value`` is one of ``choices``; returns it."""
  if value not in choices:
    raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}.")
  return value


def check_sparsity(sparsity: Any, name: str = "sparsity") -> float:
  """Checks a target sparsity: a real number in ``[0, 1)`` (1 would prune every weight); returns a float."""
  if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float, np.integer, np.floating)):
    raise TypeError(f"{name} must be a Python float in [0, 1), got {type(sparsity).__name__}.")
  s = float(sparsity)
  if not (0.0 <= s < 1.0):
    raise ValueError(f"{name} must lie in [0, 1) (1 would prune every weight), got {s}.")
  return s


def check_bool(value: Any, name: str, owner: str | None = None) -> bool:
  """Checks a flag: a Python or NumPy bool (not ``0``/``1``, not a string); returns it as a Python ``bool``."""
  if not isinstance(value, (bool, np.bool_)):
    raise TypeError(f"{_prefix(owner)}{name} must be a bool, got {type(value).__name__}.")
  return bool(value)


def check_fraction(
  value: Any,
  name: str,
  *,
  lo_open: bool = False,
  hi_open: bool = False,
  owner: str | None = None,
) -> float:
  """Checks a concrete (not traced: used on the host) number in ``[0, 1]``, either end open; returns a float."""
  checked = check_scalar(value, name, lo=0.0, hi=1.0, lo_open=lo_open, hi_open=hi_open, owner=owner)
  if isinstance(checked, jax.core.Tracer):
    raise TypeError(
      f"{_prefix(owner)}{name} must be a concrete number (it is used on the host), got a tracer."
    )
  return float(checked)


def check_order(
  first: float, first_name: str, second: float, second_name: str, *, strict: bool, owner: str | None = None
) -> None:
  """Checks ``first < second`` (``strict``) or ``first <= second`` for two already checked arguments."""
  if second > first if strict else second >= first:
    return
  relation = "greater than" if strict else "at least"
  raise ValueError(f"{_prefix(owner)}{second_name} ({second}) must be {relation} {first_name} ({first}).")


def check_callable(value: Any, name: str, owner: str | None = None) -> Any:
  """Checks that ``value`` is callable (a schedule, a hook); returns it."""
  if not callable(value):
    raise TypeError(f"{_prefix(owner)}`{name}` must be callable, got {type(value).__name__}.")
  return value


def check_exactly_one(values: dict[str, Any], owner: str) -> None:
  """Checks that exactly one of the named alternatives is given (not ``None``)."""
  given = [name for name, v in values.items() if v is not None]
  if len(given) != 1:
    state = "neither is given" if not given else f"{' and '.join(given)} are given"
    raise ValueError(f"{owner} needs exactly one of {' or '.join(values)}; {state}.")


def check_given(value: Any, name: str, owner: str, hint: str) -> Any:
  """Checks that a required value (an argument, or ``params`` in ``update``) is not ``None``; returns it."""
  if value is None:
    raise ValueError(f"{owner}: `{name}` is required ({hint}).")
  return value


def check_ndim(value: Any, name: str, ndim: int, owner: str | None = None, layout: str = "") -> None:
  """Checks that an array argument has ``ndim`` dimensions (``layout`` names them in the message)."""
  if jnp.ndim(value) != ndim:
    raise ValueError(f"{_prefix(owner)}`{name}` must be {ndim}-D{layout}, got shape {jnp.shape(value)}.")


def check_same_shape(a: Any, b: Any, owner: str | None = None) -> None:
  """Checks that two array arguments have the same shape."""
  if jnp.shape(a) != jnp.shape(b):
    raise ValueError(f"{_prefix(owner)}shapes differ: {jnp.shape(a)} vs {jnp.shape(b)}.")


def check_shapes(shapes: Any, owner: str, name: str = "shapes") -> list[tuple[int, ...]]:
  """Checks a sequence of array shapes (each a tuple or list of non-negative ints); returns them as tuples."""
  if isinstance(shapes, (str, bytes, dict)) or not isinstance(shapes, Sequence):
    raise TypeError(
      f"{owner}: {name} must be a sequence of shapes (tuples of ints), got {type(shapes).__name__}."
    )
  for i, s in enumerate(shapes):
    dims_ok = isinstance(s, (tuple, list)) and all(
      isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0 for d in s
    )
    if not dims_ok:
      raise ValueError(f"{owner}: {name}[{i}] must be a shape (a tuple of non-negative ints), got {s!r}.")
  return [tuple(int(d) for d in s) for s in shapes]


def check_trees_match(owner: str, **trees: Any) -> None:
  """Checks (chex) that the named pytrees have one structure and, leaf by leaf, one shape; the message names them
  (e.g. ``params (tree 0) and updates (tree 1)``). Python scalars count as shape ``()``."""
  names = [f"{name} (tree {i})" for i, name in enumerate(trees)]
  message = f"{owner}: {', '.join(names[:-1])} and {names[-1]} must have the same structure and shapes"
  chex.assert_trees_all_equal_structs(*trees.values(), custom_message=message)
  shapes = [
    jax.tree.map(lambda x: jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)), t) for t in trees.values()
  ]
  chex.assert_trees_all_equal_shapes(*shapes, custom_message=message)


def check_finite_values(value: Any, name: str, owner: str | None = None, *, positive: bool = False) -> None:
  """Checks that every entry of a concrete scalar or array is finite, and with ``positive`` also > 0 (tracers pass
  unchecked)."""
  concrete = _concrete(value, name, owner, scalar=False)
  if concrete is not None and (not np.all(np.isfinite(concrete)) or (positive and np.any(concrete <= 0))):
    raise ValueError(f"{_prefix(owner)}{name} must be finite{' and > 0' * positive}, got {value!r}.")


def floating_array(x: Any) -> jax.Array:
  """``x`` as a JAX array of an inexact dtype: integer or bool input becomes JAX's default float dtype, so that
  math meant for real numbers is never done in integer arithmetic (which would silently truncate)."""
  x = jnp.asarray(x)
  return x if jnp.issubdtype(x.dtype, jnp.inexact) else x.astype(jnp.result_type(float))


def check_broadcasts(value: Any, name: str, shape: tuple[int, ...], owner: str | None = None) -> None:
  """Checks that ``value`` is a scalar or per-entry values whose shape broadcasts to ``shape`` (not beyond it)."""
  try:
    fits = np.broadcast_shapes(np.shape(value), shape) == tuple(shape)
  except ValueError:
    fits = False
  if not fits:
    raise ValueError(
      f"{_prefix(owner)}{name} must be a scalar or broadcast to {tuple(shape)}, got {np.shape(value)}."
    )
