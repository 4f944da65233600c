"""Shared machinery of the sparsifiers: state, the projecting wrapper (:func:`sparsifier`), top-k masks, mask look-up."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, NamedTuple, Protocol, runtime_checkable

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ham_optax._src import checks, masking


class SparsifierState(NamedTuple):
  """State of every sparsifier in :mod:`ham_optax.sparsity`.

  Attributes:
    count: int32 scalar, the number of ``update`` calls so far (the step the next update belongs to).
    masks: one ``bool`` array per params leaf, of the leaf's shape and sharding (``True`` = weight is active);
      all ``True`` outside ``prunable``, so the masks are a parameter-shaped tree for ``optax.tree.map_params``.
    inner_state: the wrapped optimizer's state.
  """

  count: chex.Array
  masks: Any
  inner_state: optax.OptState


def all_but(*layers: str) -> Callable[[Any], Any]:
  """A ``prunable`` selection: the default leaves (floating point, ``ndim >= 2``) except the named layers.

  Each name is a path prefix in ``'/'``-joined key form, e.g. ``"layers/0"`` (first hidden layer of a Flax NNX
  ``nnx.List``) or ``"head"``; every leaf whose path equals the prefix or starts with ``prefix + "/"`` stays dense.
  A name that matches no selected leaf of the params passed to ``init`` raises a ``ValueError``. rigl keeps the
  first layer dense (so use ``prunable=all_but(<first layer>)`` for RigL); AC/DC and STR prune every layer.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from ham_optax import sparsity as sp
    >>> params = {"layers": [{"kernel": jnp.ones((40, 8))}, {"kernel": jnp.ones((8, 8))}],
    ...           "head": {"kernel": jnp.ones((8, 10))}}
    >>> tx = sp.rigl(optax.sgd(0.1), 0.9, end_step=100, prunable=sp.all_but("layers/0"))
    >>> masks = sp.get_masks(tx.init(params))
    >>> bool(masks["layers"][0]["kernel"].all()), masks["head"]["kernel"].shape
    (True, (8, 10))
  """
  for name in layers:
    if not isinstance(name, str) or not name.strip("/"):
      raise TypeError(f"all_but takes layer path prefixes such as 'layers/0' or 'head', got {name!r}.")
  prefixes = tuple(name.strip("/") for name in layers)

  def select(params: Any) -> Any:
    default = masking.resolve_mask(None, params)
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    paths = ["/".join(masking.key_name(k) for k in p) for p, _ in flat]  # e.g. 'layers/0/kernel'
    hit = lambda path, pre: path == pre or path.startswith(pre + "/")  # noqa: E731
    for pre in prefixes:
      if not any(hit(path, pre) and f for path, f in zip(paths, default, strict=True)):
        selected = [path for path, f in zip(paths, default, strict=True) if f]
        raise ValueError(f"all_but({pre!r}) matches no prunable leaf; the prunable leaves are {selected}.")
    flags = [
      f and not any(hit(path, pre) for pre in prefixes) for path, f in zip(paths, default, strict=True)
    ]
    return jax.tree.unflatten(jax.tree.structure(params), flags)

  return select


def n_zeros(sparsity: float, n: int) -> int:
  """``round(sparsity * n)`` in float64 on the host (round half to even, as ``numpy.round``)."""
  return int(np.round(float(sparsity) * n))


def _explicit_sharding(x: Any) -> Any:
  """``x``'s sharding where it is part of its type (a mesh with ``Explicit`` axes), else None."""
  explicit = getattr(getattr(jax.sharding, "AxisType", None), "Explicit", None)
  supported = hasattr(jax, "typeof") and hasattr(jax.sharding, "reshard")  # JAX with explicit sharding
  if explicit is None or not (supported and isinstance(x, jax.Array)):
    return None
  sharding = getattr(jax.typeof(x), "sharding", None)
  return sharding if explicit in tuple(getattr(getattr(sharding, "mesh", None), "axis_types", ())) else None


def like_sharding(x: jax.Array, ref: Any) -> jax.Array:
  """``x`` resharded to ``ref``'s explicit sharding; ``x`` itself without explicit sharding (values unchanged)."""
  sharding = _explicit_sharding(ref)
  if sharding is None or _explicit_sharding(x) == sharding:
    return x
  return jax.sharding.reshard(x, sharding)


def all_active(p: Any) -> jax.Array:
  """The all-``True`` mask of parameter ``p``: its shape, and its sharding where that is explicit."""
  return like_sharding(jnp.ones(jnp.shape(p), bool), p)


def _replicated(x: jax.Array) -> jax.Array:
  """``x`` replicated over its explicit mesh (so that it can be flattened), ``x`` itself otherwise."""
  sharding = _explicit_sharding(x)
  if sharding is None:
    return x
  return jax.sharding.reshard(x, jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec()))


def magnitudes(x: Any) -> jax.Array:
  """``|x|`` in the dtype it is ranked in: float32, or ``x``'s own dtype where that is wider (float64), so that
  distinct magnitudes stay distinct (a float64 weight is never ranked in float32)."""
  return jnp.abs(x).astype(jnp.promote_types(jnp.result_type(x), jnp.float32))


def _ordered_key(x: jax.Array) -> jax.Array:
  """Maps float32 (float64) to uint32 (uint64) preserving order (NaN -> +inf, -0.0 -> +0.0), so thresholds can be
  bisected; narrower floats are ranked as float32."""
  dtype = jnp.promote_types(x.dtype, jnp.float32)
  signed, unsigned = (jnp.int64, jnp.uint64) if dtype == jnp.float64 else (jnp.int32, jnp.uint32)
  x = x.astype(dtype)
  x = jnp.where(jnp.isnan(x), jnp.inf, jnp.where(x == 0, jnp.zeros((), dtype), x))
  bits = jax.lax.bitcast_convert_type(x, signed)
  key = jnp.where(bits >= 0, bits, bits ^ jnp.asarray(jnp.iinfo(signed).max, signed))
  return jax.lax.bitcast_convert_type(key, unsigned) ^ jnp.asarray(jnp.iinfo(unsigned).max // 2 + 1, unsigned)


def top_k_mask(scores: jax.Array, n_keep: jax.Array | int, first: jax.Array | None = None) -> jax.Array:
  """Bool mask of ``scores``' shape with exactly ``n_keep`` True entries at the largest scores.

  Ties are broken by position (C order), so the count is exact; ``n_keep`` (maybe traced) is clipped to
  ``[0, size]``; NaN scores count as ``+inf``: a NaN weight or gradient is kept (and shows in training), never
  pruned out of sight. Entries where the bools ``first`` (``scores``' shape) are True rank above every score, NaN
  and ``+inf`` included. Scores are ranked in float32, or float64 if they are float64. No sort: the threshold is
  bisected over the 32-bit (64-bit) ordered keys, one counting pass per bit (32 passes are ~30x faster than an
  argsort on CPU for a million entries).
  """
  flat = _replicated(scores).reshape(-1)
  k = jnp.clip(jnp.asarray(n_keep, jnp.int32), 0, flat.size)
  key = _ordered_key(flat)
  top = jnp.asarray(jnp.iinfo(key.dtype).max, key.dtype)
  if first is not None:
    key = jnp.where(_replicated(first).reshape(-1), top, key)

  def bisect(_, lo_hi):
    lo, hi = lo_hi  # invariant: at least k keys are >= lo, and the answer lies in [lo, hi]
    d = hi - lo
    mid = lo + d // 2 + (d & 1)
    ok = jnp.sum(key >= mid, dtype=jnp.int32) >= k
    return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid - 1)

  bits = 8 * key.dtype.itemsize
  threshold, _ = jax.lax.fori_loop(0, bits, bisect, (jnp.zeros((), key.dtype), top))
  greater = key > threshold
  at = key == threshold
  take_at = at & (jnp.cumsum(at, dtype=jnp.int32) <= k - jnp.sum(greater, dtype=jnp.int32))
  return like_sharding(((greater | take_at) & (k > 0)).reshape(scores.shape), scores)


def magnitude_masks(
  values: Sequence[jax.Array],
  old_masks: Sequence[jax.Array],
  zeros: jax.Array | int | Sequence[jax.Array | int],
  scope: str,
) -> list[jax.Array]:
  """Top-|value| masks with ``zeros`` (maybe traced) pruned entries over all layers (``scope="global"``, one
  count) or per layer (``scope="layer"``, a count per layer).

  No layer is pruned away: per layer at most ``n_l - 1``; globally ``N - L``, each layer's largest entry kept (ranked
  above every other score, NaN included). Weights outside ``old_masks`` rank below every active weight, so a growing
  sparsity gives nested masks. Magnitudes are ranked as :func:`magnitudes` gives them.
  """
  scores = [jnp.where(m, magnitudes(v), -1.0) for v, m in zip(values, old_masks, strict=True)]
  if scope == "global":
    if not scores:
      return []
    total = sum(int(v.size) for v in scores)
    n_layers = sum(int(v.size > 0) for v in scores)
    zeros = jnp.minimum(jnp.asarray(zeros, jnp.int32), total - n_layers)
    largest = [top_k_mask(s, 1) if s.size else jnp.zeros(s.shape, bool) for s in scores]
    flat = lambda xs: jnp.concatenate([_replicated(x).reshape(-1) for x in xs])  # noqa: E731
    # top_k_mask over the concatenated scores, split back to the layers' shapes
    mask = top_k_mask(flat(scores), total - zeros, first=flat(largest))
    sizes = np.cumsum([s.size for s in scores])[:-1]
    return [like_sharding(m.reshape(s.shape), s) for m, s in zip(jnp.split(mask, sizes), scores, strict=True)]
  return [
    top_k_mask(s, s.size - jnp.minimum(jnp.asarray(z, jnp.int32), max(s.size - 1, 0)))
    for s, z in zip(scores, zeros, strict=True)
  ]


# A mask rule: (count, params, grads, proposal_fn, old_masks) -> (new_masks, zero_new), lists over prunable leaves;
# ``proposal_fn()`` gives params + inner_updates (call it inside the mask-update branch); with ``zero_new`` weights
# that become active start at exactly 0 (RigL).
MaskRule = Callable[
  [jax.Array, list[jax.Array], list[jax.Array], Callable[[], list[jax.Array]], list[jax.Array]],
  tuple[list[jax.Array], bool],
]
InitRule = Callable[[list[jax.Array]], list[jax.Array]]
# A reset rule: count -> traced bool, True where the inner state's moments are zeroed before the step (AC/DC).
ResetRule = Callable[[jax.Array], jax.Array]


@runtime_checkable
class ReparametrisedState(Protocol):
  """An optimizer state that stores the weights themselves, as the factors of a reparametrisation.

  ``weight_fields`` (a class attribute) names its params-shaped fields that are weights, not optimizer memory
  (``m``, ``w`` of :func:`~ham_optax.overparam.pointwise_overparam`, ``u``, ``v`` of
  :func:`~ham_optax.overparam.deep_diagonal`); a sparsifier's state reset never touches them.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from ham_optax import overparam, sparsity
    >>> state = overparam.sign_in(optax.sgd(0.1), rescale_every=10).init({"w": jnp.ones((2, 2))})
    >>> isinstance(state, sparsity.ReparametrisedState), state.weight_fields
    (True, ('m', 'w'))
  """

  weight_fields: ClassVar[tuple[str, ...]]


@runtime_checkable
class SparseMomentsState(Protocol):
  """An optimizer state whose moments are stored for selected entries only, not in the params' shapes.

  E.g. :class:`ham_optax.NanoAdamState`. ``reset_moments(keep)`` returns the state with the floating-point moments
  zeroed wherever ``keep`` (params-structured bools, leaves broadcastable) is False, every integer field kept.
  """

  def reset_moments(self, keep: Any) -> Any:
    """The state with its floating-point moments zeroed where ``keep`` is False."""
    ...


def _zero_moment(x: Any, keep: Any) -> Any:
  """``x`` zeroed where ``keep`` is False, if ``x`` is a floating-point array of the parameter's shape."""
  if masking.is_masked(x) or not jnp.issubdtype(jnp.result_type(x), jnp.inexact):
    return x  # integer fields (counts, indices) are not moments
  if jnp.ndim(keep) and jnp.shape(keep) != jnp.shape(x):
    return x  # a compact field (SparseMomentsState), reset by its state below
  return jnp.where(keep, x, jnp.zeros_like(x))


def _weight_copy_fields(state: Any) -> tuple[str, ...]:
  """The params-shaped fields of an optax state that hold a copy of the weights rather than moments:
  ``z`` of ``optax.contrib.schedule_free`` (its params are an average of ``z`` and the implicit ``x``)."""
  schedule_free = getattr(getattr(optax, "contrib", None), "ScheduleFreeState", None)
  return ("z",) if schedule_free is not None and isinstance(state, schedule_free) else ()


def _zero_dead(x: Any, alive: Any) -> Any:
  """A params-structured weight copy ``x`` zeroed where ``alive`` is False (``optax.MaskedNode`` kept)."""
  zero = lambda v, a: v if masking.is_masked(v) else jnp.where(a, v, jnp.zeros_like(v))  # noqa: E731
  return jax.tree.map(zero, x, alive, is_leaf=masking.is_masked)


def reset_param_state(
  inner: optax.GradientTransformation, inner_state: Any, keep: Any, alive: Any = None
) -> Any:
  """Zeroes the floating-point moments of ``inner_state`` (its params-shaped leaves, found with
  ``optax.tree_utils.tree_map_params``) wherever the params-shaped bools ``keep`` are False.

  A :class:`ReparametrisedState`'s weight fields are kept, a :class:`SparseMomentsState` resets itself. A copy of the
  weights (schedule-free's ``z``) is kept where the params-shaped bools ``alive`` (default ``keep``) are True and
  zeroed where they are False: there the weight restarts from 0.
  """
  alive = keep if alive is None else alive

  def restore(new: Any, old: Any) -> Any:
    if isinstance(old, SparseMomentsState):
      return old.reset_moments(keep)
    if isinstance(old, ReparametrisedState):
      return new._replace(**{f: getattr(old, f) for f in old.weight_fields})
    return new

  def copies(new: Any, old: Any) -> Any:
    fields = _weight_copy_fields(old)
    return new._replace(**{f: _zero_dead(getattr(old, f), alive) for f in fields}) if fields else new

  try:
    reset = optax.tree_utils.tree_map_params(
      inner, _zero_moment, inner_state, keep, is_leaf=masking.is_masked
    )
    special = lambda x: isinstance(x, tuple) and isinstance(x, (ReparametrisedState, SparseMomentsState))  # noqa: E731
    reset = jax.tree.map(restore, reset, inner_state, is_leaf=special)
    has_copy = lambda x: bool(_weight_copy_fields(x))  # noqa: E731
    return jax.tree.map(copies, reset, inner_state, is_leaf=has_copy)
  except Exception as e:  # noqa: BLE001 - re-raised with the option that avoids it
    raise ValueError(
      "Could not find the parameter-shaped leaves of the inner optimizer's state (optax.tree_utils."
      f"tree_map_params failed: {e}). Pass reset_state=False / reset_momentum=False to keep the state as is."
    ) from e


def _prunable_flags(prunable: masking.MaskOrFn, params: optax.Params) -> Any:
  """The static bool tree of prunable leaves; a selection without any weight is an error."""
  flags = masking.resolve_mask_tree(prunable, params, "`prunable`")
  leaves = jax.tree.leaves(params)  # none for optax.tree.map_params's placeholder: nothing to check
  if leaves and not any(f and jnp.size(p) for f, p in zip(jax.tree.leaves(flags), leaves, strict=True)):
    raise ValueError(
      "`prunable` selects no parameter with entries, so the sparsifier would train densely. Select at least one "
      "floating-point leaf (the default selects those with ndim >= 2)."
    )
  return flags


def _pick(flags: Any, tree: Any) -> list[Any]:
  """The leaves of ``tree`` at the prunable positions, in tree order."""
  return [x for f, x in zip(jax.tree.leaves(flags), jax.tree.leaves(tree), strict=True) if f]


def _place(flags: Any, tree: Any, values: list[Any]) -> Any:
  """``tree`` with its prunable leaves replaced by ``values`` (in tree order)."""
  it = iter(values)
  return jax.tree.map(lambda f, x: next(it) if f else x, flags, tree)


def _check_masks(masks: Any, params: optax.Params, updates: optax.Updates, flags: Any) -> Any:
  """The state's masks in the params' structure, after checking that they and the updates fit ``params``."""
  p_leaves, m_leaves = jax.tree.leaves(params), jax.tree.leaves(masks)
  if len(m_leaves) != len(p_leaves) or jax.tree.structure(updates) != jax.tree.structure(params):
    raise ValueError(
      f"Sparsifier masks do not match the params: {len(m_leaves)} mask leaves, {len(p_leaves)} params, "
      f"{len(jax.tree.leaves(updates))} updates (updates and params must have the same structure). "
      "Re-initialise the optimizer state for these params."
    )
  for i, (p, m, f) in enumerate(zip(p_leaves, m_leaves, jax.tree.leaves(flags), strict=True)):
    # a non-prunable leaf may also hold the scalar True (a compact layout, read as all True)
    if jnp.shape(m) != jnp.shape(p) and (f or jnp.shape(m) != ()):
      raise ValueError(
        f"Sparsifier mask for parameter leaf {i} has shape {jnp.shape(m)}, expected {jnp.shape(p)} "
        f"(param shape {jnp.shape(p)}, prunable={f})."
      )
    if jnp.result_type(m) != jnp.bool_:
      raise TypeError(
        f"Sparsifier mask for parameter leaf {i} has dtype {jnp.result_type(m)}, expected bool (True = active): "
        "convert a custom mask with `.astype(bool)` before placing it in the state."
      )
  m_leaves = [like_sharding(m, p) if jnp.ndim(m) else m for m, p in zip(m_leaves, p_leaves, strict=True)]
  return jax.tree.unflatten(jax.tree.structure(params), m_leaves)


def _project(flags: Any, inner_updates: Any, params: Any, masks: Any, old: Any, zero_new: bool) -> Any:
  """``where(m', u, -p)`` on prunable leaves (``m' & m`` where grown weights restart at 0), so ``params + updates``
  is ``x_half`` on active entries and exactly 0.0 on pruned ones: in the dtype of ``u`` and ``p`` promoted (not
  ``u``'s alone), which holds ``-p`` exactly, e.g. for bfloat16 updates of float32 params."""

  def project(f, u, p, new, m):
    return jnp.where(new & m if zero_new else new, u, -p) if f else u

  return jax.tree.map(project, flags, inner_updates, params, masks, old)


def sparsifier(
  inner: optax.GradientTransformation,
  prunable: masking.MaskOrFn,
  init_rule: InitRule,
  mask_rule: MaskRule | None,
  *,
  reset_rule: ResetRule | None = None,
  reset_grown_state: bool = False,
) -> optax.GradientTransformationExtraArgs:
  """Builds a sparsifier: mask the gradient, run ``inner``, update the masks with ``mask_rule``, project.

  With ``m`` the mask in force when the gradient was computed and ``m'`` the mask after ``mask_rule``:

  1. ``inner`` receives the masked gradient ``where(m, g, 0)`` on prunable leaves (so ``clip_by_global_norm`` or
     a HAM mirror step see only active weights); ``mask_rule`` the dense gradient ``g`` (RigL's growth);
  2. ``updates = where(m', inner_updates, -params)`` on prunable leaves, so ``params + updates`` equals
     ``m' * (params + inner_updates)`` with pruned entries exactly 0.0 (:func:`_project`).

  ``reset_rule(count)`` zeroes the inner state's moments before the step (weight copies where ``m`` is False); with
  ``reset_grown_state`` the moments of weights that become active are zeroed after it (:func:`reset_param_state`).
  """
  inner = optax.with_extra_args_support(inner)

  def init_fn(params: optax.Params) -> SparsifierState:
    flags = _prunable_flags(prunable, params)
    picked = _pick(flags, params)
    initial = [like_sharding(m, p) for m, p in zip(init_rule(picked), picked, strict=True)]
    masks = _place(flags, jax.tree.map(all_active, params), initial)
    return SparsifierState(count=jnp.zeros([], jnp.int32), masks=masks, inner_state=inner.init(params))

  def new_masks(count, flags, params, grads, inner_updates, old):
    """(masks after this step's rule, whether grown weights restart at 0)."""
    if mask_rule is None:
      return old, False

    def proposal_fn():
      return _pick(flags, jax.tree.map(lambda p, u: p + u, params, inner_updates))

    picked = _pick(flags, params)
    new, zero_new = mask_rule(count, picked, _pick(flags, grads), proposal_fn, _pick(flags, old))
    return _place(flags, old, [like_sharding(m, p) for m, p in zip(new, picked, strict=True)]), zero_new

  def reset_if(pred, inner_state, keep, alive=None):
    return jax.lax.cond(pred, lambda s: reset_param_state(inner, s, keep, alive), lambda s: s, inner_state)

  def update_fn(updates, state, params=None, **extra_args):
    hint = "the masks read the current parameters: call `tx.update(grads, opt_state, params)`"
    checks.check_given(params, "params", "sparsifier", hint)
    checks.check_trees_match("sparsifier", params=params, updates=updates)
    flags = _prunable_flags(prunable, params)
    old = _check_masks(state.masks, params, updates, flags)
    inner_state = state.inner_state
    if reset_rule is not None:
      none_kept = jax.tree.map(lambda _: jnp.zeros((), bool), flags)
      inner_state = reset_if(reset_rule(state.count), inner_state, none_kept, alive=old)
    masked_g = jax.tree.map(
      lambda f, g, m: jnp.where(m, g, jnp.zeros((), g.dtype)) if f else g, flags, updates, old
    )
    inner_updates, inner_state = inner.update(masked_g, inner_state, params, **extra_args)
    masks, zero_new = new_masks(state.count, flags, params, updates, inner_updates, old)
    out = _project(flags, inner_updates, params, masks, old, zero_new)
    if zero_new and reset_grown_state:
      # Only steps that grew a weight touch the state (a reduction over the bool masks decides).
      keep = jax.tree.map(lambda f, new, m: ~new | m if f else jnp.ones((), bool), flags, masks, old)
      grew = ~jnp.all(jnp.stack([jnp.all(k) for k in _pick(flags, keep)]))
      inner_state = reset_if(grew, inner_state, keep)
    masks = jax.tree.unflatten(jax.tree.structure(state.masks), jax.tree.leaves(masks))
    return out, SparsifierState(count=optax.safe_increment(state.count), masks=masks, inner_state=inner_state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _unwrap(tree: Any) -> Any:
  """Strips flax NNX ``Variable`` wrappers (e.g. ``nnx.Optimizer``'s ``OptArray``) if flax is installed."""
  try:
    from flax import nnx
  except ImportError:  # flax is an optional extra: without it there is nothing to strip
    return tree
  if isinstance(tree, nnx.State):
    return nnx.as_pure(tree)
  is_variable = lambda v: isinstance(v, nnx.Variable)  # noqa: E731
  return jax.tree.map(lambda v: v.get_value() if is_variable(v) else v, tree, is_leaf=is_variable)


def get_masks(opt_state: Any) -> Any:
  """Returns the mask pytree (``True`` = active) of the single sparsifier anywhere inside ``opt_state``.

  Any nested optax state (``optax.chain``, ``inject_hyperparams``, ``MultiSteps``, ...) or a
  ``flax.nnx.Optimizer`` (NNX variable wrappers are stripped) works.

  Raises:
    ValueError: if ``opt_state`` holds no sparsifier state, or more than one.
  """
  if hasattr(opt_state, "opt_state") and not isinstance(opt_state, tuple):
    opt_state = opt_state.opt_state
  is_state = lambda x: isinstance(x, SparsifierState)  # noqa: E731
  found = [x for x in jax.tree.leaves(opt_state, is_leaf=is_state) if is_state(x)]
  if not found:
    raise ValueError(
      "No sparsifier state found in opt_state: build the optimizer with a ham_optax.sparsity sparsifier "
      "(random_pruning, magnitude_pruning, acdc or rigl). An nnx.state(optimizer) no longer holds the optax "
      "state's types: pass the nnx.Optimizer itself or its .opt_state."
    )
  if len(found) > 1:
    raise ValueError(f"opt_state holds {len(found)} sparsifier states; get_masks needs exactly one.")
  return _unwrap(found[0].masks)


def _mask_per_leaf(masks: Any, params: Any) -> list[Any]:
  """The mask leaves, one per leaf of ``params``: an ``optax.MaskedNode`` (the sparsifier inside ``optax.masked``)
  stands for every leaf of the params subtree it replaces."""
  leaves = jax.tree.leaves(masks, is_leaf=masking.is_masked)
  if not any(masking.is_masked(m) for m in leaves):
    return leaves
  try:
    subtrees = jax.tree.structure(masks, is_leaf=masking.is_masked).flatten_up_to(_unwrap(params))
  except (ValueError, TypeError):
    return leaves  # the structures differ: the leaf count check names the problem
  return [m for m, sub in zip(leaves, subtrees, strict=True) for _ in jax.tree.leaves(sub)]


def apply_masks(params: Any, opt_state: Any) -> Any:
  """Returns ``params`` with every pruned weight set to exactly zero.

  Call it once after ``tx.init(params)`` so that a mask drawn at init (random pruning, RigL) is in force from
  step 0; the updates keep pruned weights at zero. Accepts plain pytrees and NNX states; leaves that the
  sparsifier does not see (``optax.masked``'s masked-out leaves) are returned unchanged.

  Raises:
    ValueError: if the masks do not match ``params`` (number of leaves or shapes).
  """
  p_leaves, treedef = jax.tree.flatten(params)
  mask_leaves = _mask_per_leaf(get_masks(opt_state), params)
  if len(mask_leaves) != len(p_leaves):
    raise ValueError(f"Masks have {len(mask_leaves)} leaves but params have {len(p_leaves)}.")
  out = []
  for i, (m, p) in enumerate(zip(mask_leaves, p_leaves, strict=True)):
    if masking.is_masked(m):
      out.append(p)
      continue
    if m.shape not in ((), jnp.shape(p)):
      raise ValueError(
        f"Mask leaf {i} has shape {m.shape}, which does not match parameter shape {jnp.shape(p)}."
      )
    out.append(jnp.where(m, p, jnp.zeros_like(p)))
  return jax.tree.unflatten(treedef, out)
