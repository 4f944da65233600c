"""Leaf selection (which tensors are "weights"), resolved once per trace into static Python bools.

Not `optax.masked`: unselected leaves must still receive the inner update (not an `optax.MaskedNode`), and a
mismatch must name the offending path instead of failing deep inside `jax.tree.map`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

MaskOrFn = Any | Callable[[Any], Any] | None
# The placeholder of unselected leaves in the states of the wrappers that keep per-leaf slots for selected leaves only.
MASKED = optax.MaskedNode()


def default_mask(params: Any) -> Any:
  """The default selection: floating-point leaves with ``ndim >= 2`` (kernels, not biases or scales).

  The paper applies the mirror step to weight tensors only. Returns a pytree of Python bools shaped like
  ``params`` (arrays, or anything with their shapes and dtypes).

  Example:
    >>> import jax.numpy as jnp
    >>> import ham_optax
    >>> params = {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(2), "step": jnp.zeros((2, 2), jnp.int32)}
    >>> ham_optax.default_mask(params)
    {'bias': False, 'kernel': True, 'step': False}
  """
  return jax.tree.map(lambda p: bool(jnp.ndim(p) >= 2 and is_float(p)), params)


def is_float(x: Any) -> bool:
  """Whether ``x`` (an array, a scalar or a ``jax.ShapeDtypeStruct``) has a floating-point dtype."""
  return jnp.issubdtype(jnp.result_type(x), jnp.floating)


def is_masked(x: Any) -> bool:
  """Whether ``x`` is an ``optax.MaskedNode`` (the placeholder of an unselected leaf)."""
  return isinstance(x, optax.MaskedNode)


def where_flags(flags: Any, a: Any, b: Any) -> Any:
  """The leaf of ``a`` where ``flags`` (a static bool tree) is True, else the leaf of ``b``."""
  return jax.tree.map(lambda f, x, y: x if f else y, flags, a, b)


def unzip(structure: Any, tree_of_tuples: Any, n: int) -> tuple[Any, ...]:
  """``n`` trees from a tree (with ``structure``'s leaves) of ``n``-tuples."""
  return tuple(jax.tree.map(lambda _, t, i=i: t[i], structure, tree_of_tuples) for i in range(n))


def _explain_mismatch(mask_tree: Any, params: Any, what: str = "mask") -> str:
  """Names the first path where `mask_tree` (called `what` in the message) is not a prefix of `params`."""
  mask_paths = [path for path, _ in jax.tree_util.tree_flatten_with_path(mask_tree)[0]]
  param_paths = [path for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
  for mp in mask_paths:
    if not any(pp[: len(mp)] == mp for pp in param_paths):
      return f"{what} entry {jax.tree_util.keystr(mp)!r} has no matching parameter"
  for pp in param_paths:
    if not any(pp[: len(mp)] == mp for mp in mask_paths):
      return f"parameter {jax.tree_util.keystr(pp)!r} has no entry in the {what}"
  kinds = f"{type(mask_tree).__name__} and {type(params).__name__}"
  return (
    f"the container types of {what} and params differ ({kinds}); with flax.nnx, whose optimizer passes an "
    f"nnx.State, give the {what} as a function of the params or build it from the same nnx.State"
  )


def _to_static_bool(value: Any, path: str, what: str) -> bool:
  try:
    arr = np.asarray(value)
  except jax.errors.TracerArrayConversionError as e:
    raise TypeError(
      f"{what} entry at {path!r} is a traced array; mask entries must be Python bools "
      "(decide the selection from shapes/dtypes/names, not from parameter values)."
    ) from e
  if callable(value):
    raise TypeError(
      f"{what} entry at {path!r} is a function; give one function for the whole mask (params -> pytree of bools) "
      "or bools in the tree."
    )
  if arr.shape != () or arr.dtype != np.bool_:
    raise TypeError(
      f"{what} entry at {path!r} must be a bool, got {type(value).__name__} "
      f"with dtype {arr.dtype} and shape {arr.shape}."
    )
  return bool(arr)


def resolve_mask(mask: MaskOrFn, params: Any, what: str = "HAM mask") -> tuple[bool, ...]:
  """Resolves `mask` against `params` into a tuple of static bools aligned with ``jax.tree.leaves(params)``.

  ``mask``: ``None`` (:func:`default_mask`), a pytree of bools with the structure of ``params`` or a prefix of it
  (as in `optax.masked`), or a callable ``params -> such a pytree``; ``what`` names it in the messages. Raises a
  ValueError naming the path where the structures differ, a TypeError for a non-bool entry or a selected
  non-floating-point leaf.
  """
  if not jax.tree.leaves(params):
    return ()  # nothing to select (also the placeholder optax.tree_utils.tree_map_params passes to init)
  if mask is None:
    mask_tree = default_mask(params)
  else:  # a function of the params, or their tree of bools: the rule of optax.masked
    mask_tree = mask(params) if callable(mask) else mask
  try:  # a bool at an inner node applies to its whole subtree
    full = jax.tree.map(lambda m, sub: jax.tree.map(lambda _: m, sub), mask_tree, params)
  except (ValueError, TypeError) as e:
    raise ValueError(
      f"{what} does not match the params' structure: {_explain_mismatch(mask_tree, params)}."
    ) from e
  selected = []
  for (path, m), p in zip(
    jax.tree_util.tree_flatten_with_path(full)[0], jax.tree.leaves(params), strict=True
  ):
    name = jax.tree_util.keystr(path)
    on = _to_static_bool(m, name, what)
    if on and not is_float(p):
      raise TypeError(
        f"{what} selects parameter {name!r} of dtype {jnp.result_type(p)}; only floating-point leaves "
        "can be selected. Exclude it from the mask."
      )
    selected.append(on)
  return tuple(selected)


def resolve_mask_tree(mask: MaskOrFn, params: Any, what: str = "HAM mask") -> Any:
  """:func:`resolve_mask` as a pytree of static bools shaped like ``params``."""
  return jax.tree.unflatten(jax.tree.structure(params), resolve_mask(mask, params, what))


def key_name(k: Any) -> str:
  """The name of one ``jax.tree_util`` key-path entry: a dict key, an attribute name or a sequence index."""
  for attr in ("key", "name", "idx"):
    if hasattr(k, attr):
      return str(getattr(k, attr))
  return str(k)
