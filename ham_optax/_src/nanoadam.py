"""NanoAdam: Adam on the smallest-magnitude weights only, for fine-tuning (update rule: :func:`nanoadam`)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ham_optax._src import checks, masking

_NORM_RE = re.compile(r"norm|(^|_)(ln|bn)(_|\d|$)")


class NanoAdamState(NamedTuple):
  """State of :func:`nanoadam`, a :class:`ham_optax.sparsity.SparseMomentsState` (its moments are compact).

  Attributes:
    count: number of updates so far (int32 scalar).
    idx: per selected leaf, the flat indices of the selected entries, shape ``(chunks, k_max)``
      (int32; ``x.size`` marks an unused slot); ``MaskedNode`` elsewhere.
    age: per selected leaf, updates each selected entry received since it was selected (int32,
      shape of ``idx``; the exponent of its bias correction); ``MaskedNode`` elsewhere.
    mu: first moments: shape of ``idx`` for selected leaves, the leaf's shape otherwise.
    nu: second moments, same layout as ``mu``.
  """

  count: jax.Array
  idx: optax.Params
  age: optax.Params
  mu: optax.Params
  nu: optax.Params

  def reset_moments(self, keep: Any) -> NanoAdamState:
    """The state with ``mu`` and ``nu`` zeroed where ``keep`` (params-shaped bools, leaves broadcastable) is False;
    for a selected leaf, the parameter's entry ``idx[j]`` decides slot ``j``."""

    def moment(idx: Any, m: Any, k: Any) -> Any:
      if masking.is_masked(m):
        return m
      k = jnp.asarray(k, bool)
      if not masking.is_masked(idx) and k.ndim:
        k = jnp.append(k.reshape(-1), True)[idx]  # slot x.size (unused) keeps its zero
      return jnp.where(k, m, jnp.zeros_like(m))

    reset = lambda tree: jax.tree.map(moment, self.idx, tree, keep, is_leaf=masking.is_masked)  # noqa: E731
    return self._replace(mu=reset(self.mu), nu=reset(self.nu))


def selected_count(size: int, fraction: float) -> int:
  """Number of entries NanoAdam updates in a tensor of ``size`` entries: ``round(fraction * size)``, at least 1.

  Example:
    >>> import ham_optax
    >>> print(ham_optax.selected_count(1000, 0.1), ham_optax.selected_count(3, 0.1))
    100 1
  """
  return int(min(size, max(1, round(fraction * size))))


def _natural(path: tuple) -> tuple:
  """Sort key of a key path: names compared with their digit runs as numbers (``layer_10`` after ``layer_2``)."""
  parts = []
  for k in path:
    for tok in re.split(r"(\d+)", masking.key_name(k).lower()):
      parts.append((0, int(tok), "") if tok.isdigit() else (1, 0, tok))
  return tuple(parts)


def nanoadam_default_mask(
  params: optax.Params,
  exclude: Sequence[str] = ("norm",),
  exclude_head: bool = True,
) -> optax.Params:
  """NanoAdam's default small-weight selection: kernels, without the head and the normalisation layers.

  A leaf is selected when it is a floating-point tensor with ``ndim >= 2``, no name on its key path contains one
  of ``exclude`` (case-insensitive; ``"norm"`` also matches ``ln``/``bn`` names such as ``ln_f`` or ``bn1``) and,
  with ``exclude_head``, it is not the head: a key name containing ``head`` or ``classifier`` or equal to ``fc``
  or ``logits`` or, when none is so named, the last such tensor in natural path order (``layers_10`` after
  ``layers_2``): our stand-in for the paper's excluded ``head`` and ``layernorm`` in models named otherwise.
  Other selections: ``functools.partial(nanoadam_default_mask, exclude=("norm", "embed"))`` or
  ``ham_optax.default_mask``.

  Args:
    params: the parameters (or anything with their structure).
    exclude: substrings of key names whose leaves stay dense.
    exclude_head: leave the classifier head dense (see above).

  Returns:
    A pytree of Python bools with the structure of ``params``.

  Example:
    >>> import jax.numpy as jnp
    >>> from ham_optax import nanoadam_default_mask
    >>> p = {"w0": jnp.ones((4, 8)), "w1": jnp.ones((8, 3)), "b1": jnp.ones(3)}
    >>> nanoadam_default_mask(p)
    {'b1': False, 'w0': True, 'w1': False}
  """
  flat, treedef = jax.tree_util.tree_flatten_with_path(params)
  words = tuple(e.lower() for e in exclude)
  flags, heads = [], []
  for kernel, (path, _) in zip(jax.tree.leaves(masking.default_mask(params)), flat, strict=True):
    names = [masking.key_name(k).lower() for k in path]
    flags.append(
      kernel and not any(_NORM_RE.search(n) if w == "norm" else w in n for w in words for n in names)
    )
    heads.append(kernel and any("head" in n or "classifier" in n or n in ("fc", "logits") for n in names))
  if exclude_head:
    if any(heads):
      flags = [f and not h for f, h in zip(flags, heads, strict=True)]
    elif any(flags):
      last = max((i for i in range(len(flat)) if flags[i]), key=lambda i: _natural(flat[i][0]))
      flags[last] = False
  return jax.tree_util.tree_unflatten(treedef, flags)


def _bottom_k(x: jax.Array, chunk: int, k: int) -> jax.Array:
  """Per chunk of the flattened ``x``, the flat indices of the ``k`` smallest ``|x|``, in ascending order.

  Shape ``(chunks, k)``; ties go to the lower index; padding slots of a short last chunk hold ``x.size``.
  """
  n = x.size
  if n == 0:
    return jnp.zeros((0, k), jnp.int32)
  rows = -(-n // chunk)
  magnitude = jnp.abs(x.reshape(-1)).astype(
    jnp.promote_types(x.dtype, jnp.float32)
  )  # float64 ranks in float64
  a = jnp.pad(magnitude, (0, rows * chunk - n), constant_values=jnp.inf)
  local = jax.lax.top_k(-a.reshape(rows, chunk), k)[1]
  flat = local + (jnp.arange(rows) * chunk)[:, None]
  return jnp.where(flat < n, flat, n).astype(jnp.int32)


class _Selection(NamedTuple):
  """Static settings of NanoAdam's small-weight selection."""

  fraction: float  # the largest density: it fixes the number of slots per chunk
  refresh_every: int
  chunk_size: int | None
  total_steps: int | None  # length of the linear decay from fraction to final_fraction; None: constant
  final_fraction: float
  density_every: int
  fraction_schedule: optax.Schedule | None  # replaces the linear decay

  def density(self, t: jax.Array) -> jax.Array:
    """The density in effect at step ``t``, in ``[0, fraction]``: the schedule evaluated at its last update."""
    td = (t // self.density_every) * self.density_every
    if self.fraction_schedule is not None:
      rho = jnp.asarray(self.fraction_schedule(td), jnp.float32)
    elif self.total_steps is not None:
      decayed = jnp.minimum(td.astype(jnp.float32) / self.total_steps, 1.0)
      rho = self.fraction + (self.final_fraction - self.fraction) * decayed
    else:
      rho = jnp.asarray(self.fraction, jnp.float32)
    return jnp.clip(rho, 0.0, self.fraction)

  def chunk(self, size: int) -> int:
    """The chunk length of a flattened tensor of ``size`` entries (0 when empty)."""
    return size if self.chunk_size is None else min(self.chunk_size, size)

  def count_at(self, t: jax.Array, chunk: int, k_max: int) -> jax.Array:
    """Entries selected per chunk at step ``t``: ``round(density * chunk)`` within ``[1, k_max]``."""
    return jnp.clip(jnp.round(self.density(t) * chunk), 1, k_max).astype(jnp.int32)

  def init_leaf(self, p: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """``(idx, age, mu, nu)`` of a selected leaf at step 0: its bottom-``k_max`` entries, zero moments."""
    c = self.chunk(p.size)
    idx = _bottom_k(p, c, selected_count(c, self.fraction) if c else 0)
    zeros = lambda dtype: jnp.zeros(idx.shape, dtype)  # noqa: E731 - distinct buffers (donatable state)
    return idx, zeros(jnp.int32), zeros(p.dtype), zeros(p.dtype)

  def refresh(self, count: jax.Array, p: jax.Array, slots: tuple) -> tuple:
    """``slots = (idx, age, mu, nu)`` after step ``count``'s re-selection of the bottom-``k`` entries, if due."""
    n, c, k_max = p.size, self.chunk(p.size), slots[0].shape[1]
    due = (count % self.refresh_every == 0) | (
      self.count_at(count, c, k_max) != self.count_at(jnp.maximum(count - 1, 0), c, k_max)
    )

    def reselect(slots):
      idx, age, mu, nu = slots
      new_idx = _bottom_k(p, c, k_max)

      def carry(v):  # entries kept keep their value; slot n collects unused slots
        return jnp.zeros((n + 1,), v.dtype).at[idx.reshape(-1)].set(v.reshape(-1))[new_idx]

      return new_idx, carry(age), carry(mu), carry(nu)

    return jax.lax.cond(due, reselect, lambda s: s, slots)


def _selected_adam(g, p, count, slots, selection: _Selection, b1, b2, eps, weight_decay) -> tuple:
  """One leaf under selection: ``(direction, idx, age, mu, nu)``, the direction exactly 0 off the selection."""
  p = jnp.asarray(p)
  if p.size == 0:
    return jnp.zeros_like(p), *slots
  n = p.size
  idx, age, mu, nu = selection.refresh(count, p, slots)
  k_max = mu.shape[1]
  valid = (jnp.arange(k_max)[None, :] < selection.count_at(count, selection.chunk(n), k_max)) & (idx < n)
  g_s = jnp.append(jnp.reshape(g, -1), 0).astype(mu.dtype)[idx]
  x_s = jnp.append(p.reshape(-1), 0)[idx]
  age = jnp.where(valid, age + 1, 0)
  mu = jnp.where(valid, b1 * mu + (1.0 - b1) * g_s, 0)
  nu = jnp.where(valid, b2 * nu + (1.0 - b2) * g_s * g_s, 0)
  cdtype = jnp.promote_types(mu.dtype, jnp.float32)  # float64 moments get float64 bias corrections
  a = jnp.maximum(age, 1).astype(cdtype)
  e1, e2 = 1.0 - jnp.asarray(b1, cdtype) ** a, 1.0 - jnp.asarray(b2, cdtype) ** a
  direction = jnp.where(valid, (mu / e1) / (jnp.sqrt(nu / e2) + eps) + weight_decay * x_s, 0).astype(p.dtype)
  out = jnp.zeros((n + 1,), p.dtype).at[idx.reshape(-1)].set(direction.reshape(-1))
  return out[:n].reshape(p.shape), idx, age, mu, nu


def scale_by_nanoadam(
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-8,
  weight_decay: float = 0.0,
  *,
  selection: _Selection,
  mask: Any = None,
) -> optax.GradientTransformationExtraArgs:
  """NanoAdam's direction before the learning rate (:func:`nanoadam` is this followed by ``-learning_rate``).

  Other floating-point leaves than ``mask``'s get ``optax.scale_by_adam(b1, b2, eps)``; non-floating leaves 0.
  """
  for name, value in (("b1", b1), ("b2", b2)):
    checks.check_scalar(value, name, lo=0.0, hi=1.0, hi_open=True, owner="nanoadam")
  checks.check_scalar(eps, "eps", lo=0.0, lo_open=True, owner="nanoadam")
  checks.check_scalar(weight_decay, "weight_decay", lo=0.0, owner="nanoadam")
  dense_adam = optax.scale_by_adam(b1, b2, eps)
  mask_tree_of = functools.partial(
    masking.resolve_mask_tree, nanoadam_default_mask if mask is None else mask, what="nanoadam: mask"
  )

  def init_fn(params: optax.Params) -> NanoAdamState:
    mask_tree = mask_tree_of(params)
    dense_slots = lambda p: (masking.MASKED, masking.MASKED, jnp.zeros_like(p), jnp.zeros_like(p))  # noqa: E731
    slots = jax.tree.map(
      lambda b, p: selection.init_leaf(jnp.asarray(p)) if b else dense_slots(p), mask_tree, params
    )
    return NanoAdamState(jnp.zeros([], jnp.int32), *masking.unzip(mask_tree, slots, 4))

  def update_fn(updates, state: NanoAdamState, params=None, **extra_args):
    del extra_args
    checks.check_given(params, "params", "nanoadam", "pass it to update: the selection reads |x|")
    checks.check_trees_match("nanoadam", params=params, updates=updates)
    mask_tree = mask_tree_of(params)
    dense = jax.tree.map(lambda b, p: not b and masking.is_float(p), mask_tree, params)
    pick = lambda flags, tree: jax.tree.map(lambda f, x: x if f else masking.MASKED, flags, tree)  # noqa: E731
    d_dense, adam_state = dense_adam.update(
      pick(dense, updates), optax.ScaleByAdamState(state.count, pick(dense, state.mu), pick(dense, state.nu))
    )

    def leaf(flag, is_dense, g, p, d, idx, age, mu, nu):
      if flag:
        return _selected_adam(g, p, state.count, (idx, age, mu, nu), selection, b1, b2, eps, weight_decay)
      if is_dense:
        return d.astype(jnp.result_type(p)), idx, age, mu, nu
      return jnp.zeros_like(p), idx, age, mu, nu

    out = jax.tree.map(
      leaf, mask_tree, dense, updates, params, d_dense, *state[1:], is_leaf=masking.is_masked
    )
    direction, idx, age, mu, nu = masking.unzip(mask_tree, out, 5)
    mu, nu = masking.where_flags(dense, adam_state.mu, mu), masking.where_flags(dense, adam_state.nu, nu)
    return direction, NanoAdamState(optax.safe_increment(state.count), idx, age, mu, nu)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _check_selection_args(
  fraction: float,
  refresh_every: int,
  total_steps: int | None,
  final_fraction: float | None,
  density_every: int | None,
  fraction_schedule: optax.Schedule | None,
  chunk_size: int | None,
) -> _Selection:
  """:func:`nanoadam`'s selection arguments, checked and with their defaults filled in."""
  fraction = checks.check_fraction(fraction, "fraction", lo_open=True, owner="nanoadam")
  refresh_every = checks.check_int(refresh_every, "refresh_every", 1, owner="nanoadam")
  total_steps = checks.check_int(total_steps, "total_steps", 1, owner="nanoadam", none_ok=True)
  if final_fraction is not None:
    checks.check_scalar(final_fraction, "final_fraction", lo=0.0, lo_open=True, hi=fraction, owner="nanoadam")
  density_every = checks.check_int(density_every, "density_every", 1, owner="nanoadam", none_ok=True)
  if fraction_schedule is not None:
    checks.check_callable(fraction_schedule, "fraction_schedule", owner="nanoadam")
  chunk_size = checks.check_int(chunk_size, "chunk_size", 1, owner="nanoadam", none_ok=True)
  density_every = refresh_every if density_every is None else density_every
  final_fraction = 0.4 * fraction if final_fraction is None else float(final_fraction)
  return _Selection(
    fraction, refresh_every, chunk_size, total_steps, final_fraction, density_every, fraction_schedule
  )


def _times_learning_rate(
  direction: optax.GradientTransformationExtraArgs, learning_rate: optax.ScalarOrSchedule
) -> optax.GradientTransformationExtraArgs:
  """``direction`` followed by ``-learning_rate`` (a schedule is evaluated at the state's step count)."""

  def update_fn(updates, state: NanoAdamState, params=None, **extra_args):
    d, new_state = direction.update(updates, state, params, **extra_args)
    lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
    return jax.tree.map(lambda x: (-lr * x).astype(x.dtype), d), new_state

  return optax.GradientTransformationExtraArgs(direction.init, update_fn)


def nanoadam(
  learning_rate: optax.ScalarOrSchedule,
  fraction: float = 0.1,
  refresh_every: int = 100,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-8,
  weight_decay: float = 0.0,
  *,
  total_steps: int | None = None,
  final_fraction: float | None = None,
  density_every: int | None = None,
  fraction_schedule: Callable[[jax.Array], jax.Array] | None = None,
  chunk_size: int | None = None,
  mask: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""NanoAdam (Zhou, Jacobs, Gadhikar & Burkholz, "Pay Attention to Small Weights", NeurIPS 2025, arXiv 2506.21374).

  Adam on only the smallest-magnitude entries of each selected tensor; its other entries get exactly zero
  updates. Leaves outside ``mask`` (by default the classifier head, norm layers and biases:
  :func:`nanoadam_default_mask`) get dense Adam with the global step count. Per step :math:`t` (0-based), for
  a selected tensor of :math:`n` entries in chunks of :math:`c` (``chunk_size``; default :math:`n`), gradient
  :math:`g`, ``density_every`` :math:`d`, ``refresh_every`` :math:`m`, ``weight_decay`` :math:`\lambda`:

  .. math::

    \rho_t &= \mathrm{density}(d \lfloor t / d \rfloor), \qquad k_t = \max(1, \mathrm{round}(\rho_t c)) \\
    S &\leftarrow \operatorname{bottom}_{k_t} |x| \text{ in every chunk}
       \quad \text{if } t \bmod m = 0 \text{ or } k_t \ne k_{t-1} \ \text{(kept entries keep } \mu, \nu, a) \\
    a_i &\leftarrow a_i + 1, \quad \mu_i \leftarrow \beta_1 \mu_i + (1 - \beta_1) g_i, \quad
       \nu_i \leftarrow \beta_2 \nu_i + (1 - \beta_2) g_i^2 \qquad (i \in S) \\
    \Delta x_i &= -\eta_t \Big(\frac{\mu_i/(1 - \beta_1^{a_i})}{\sqrt{\nu_i/(1 - \beta_2^{a_i})} + \epsilon}
       + \lambda x_i\Big) \quad (i \in S), \qquad \Delta x_i = 0 \quad (i \notin S).

  Sources: the paper's Algorithm 1 (re-selection every :math:`m` steps or on a density change, here of the
  selected count) and its first author's setup (linear density decay, 10 % -> 4 % on GLUE hence the default
  ``final_fraction``; dense head and norms; chunks). Our choices: per-entry bias correction (:math:`a_i`
  counts updates since :math:`i` was selected: a new entry starts as a fresh Adam); dropped entries forget
  their moments; ties in ``|x|`` go to the lower flat index. State: ``4 k`` numbers per selected tensor, not
  Adam's ``2 n``. Built as ``scale_by_nanoadam`` then the learning rate, like ``optax.adamw``. Under
  ``optax.inject_hyperparams`` list the shape-fixing arguments as ``static_args=("fraction", "refresh_every",
  "total_steps", "final_fraction", "density_every", "fraction_schedule", "chunk_size", "mask")``.

  Args:
    learning_rate: float or optax schedule (evaluated at the step count, from 0).
    fraction: initial (and largest) density: fraction of each chunk updated, in ``(0, 1]``.
    refresh_every: ``m``, steps between re-selections (int > 0).
    b1: first-moment decay, in ``[0, 1)``.
    b2: second-moment decay, in ``[0, 1)``.
    eps: added to the root of the second moment, > 0.
    weight_decay: decoupled (AdamW-style) decay of the selected entries only, >= 0.
    total_steps: length of the linear density decay from ``fraction`` (int > 0); ``None``: constant density.
    final_fraction: density reached at ``total_steps``, in ``(0, fraction]``; default ``0.4 * fraction``.
    density_every: ``d``, steps between density schedule evaluations (int > 0); default ``refresh_every``.
    fraction_schedule: jittable ``step -> density``, clipped to ``(0, fraction]``; replaces the linear decay.
    chunk_size: select per chunk of this many entries of the flattened tensor (int > 0); ``None``: one chunk.
    mask: ``None`` (:func:`nanoadam_default_mask`), a pytree of bools (or a prefix) or ``params -> pytree``.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` (``update`` requires ``params``).

  Example:
    >>> import jax, jax.numpy as jnp, ham_optax
    >>> params = {"w0": jnp.arange(1.0, 11.0).reshape(2, 5), "w1": jnp.ones((5, 2))}
    >>> tx = ham_optax.nanoadam(0.1, fraction=0.2, total_steps=100)
    >>> updates, state = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
    >>> print(int(jnp.count_nonzero(updates["w0"])), round(float(updates["w0"][0, 0]), 3))  # 2 smallest |x|: -lr
    2 -0.1
    >>> bool((updates["w1"] != 0).all())  # the last layer (head) is dense
    True
  """
  checks.check_scalar(learning_rate, "learning_rate", lo=0.0, schedule_ok=True, owner="nanoadam")
  selection = _check_selection_args(
    fraction, refresh_every, total_steps, final_fraction, density_every, fraction_schedule, chunk_size
  )
  direction = scale_by_nanoadam(b1, b2, eps, weight_decay, selection=selection, mask=mask)
  return _times_learning_rate(direction, learning_rate)
