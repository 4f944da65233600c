"""Construction-time validation of hyperparameters (clear errors before anything is traced)."""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np


def _concrete_float(value: Any, name: str) -> float | None:
  """Returns `value` as a float when it is a concrete scalar; None for tracers (e.g. inside inject_hyperparams)."""
  if isinstance(value, bool):
    raise TypeError(f"{name} must be a number, got the bool {value!r}.")
  if isinstance(value, jax.core.Tracer):
    return None
  try:
    arr = np.asarray(value)
  except Exception as e:  # noqa: BLE001 - re-raised with a clear message
    raise TypeError(f"{name} must be a number, got {type(value).__name__}.") from e
  if arr.shape != ():
    raise ValueError(f"{name} must be a scalar, got shape {arr.shape}.")
  if not np.issubdtype(arr.dtype, np.number):
    raise TypeError(f"{name} must be a number, got {arr.dtype}.")
  return float(arr)


def check_scalar(
  value: Any,
  name: str,
  *,
  positive: bool = False,
  non_negative: bool = False,
  schedule_ok: bool = False,
) -> None:
  """Raises a ValueError/TypeError naming `name` when a constant hyperparameter is unusable.

  Schedules (callables) are accepted when `schedule_ok`; they can only be checked when evaluated.
  """
  if callable(value):
    if schedule_ok:
      return
    raise TypeError(f"{name} must be a number, not a callable.")
  v = _concrete_float(value, name)
  if v is None:
    return
  if not math.isfinite(v):
    raise ValueError(f"{name} must be finite, got {v}.")
  if positive and v <= 0:
    raise ValueError(f"{name} must be > 0, got {v}.")
  if non_negative and v < 0:
    raise ValueError(f"{name} must be >= 0, got {v}.")
