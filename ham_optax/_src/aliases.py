"""HAM around optax's common optimizers with explicit signatures (the inner optimizer's arguments, then HAM's
keyword-only ones), so ``inspect.signature``, ``optax.inject_hyperparams`` and Sphinx see every argument.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

import numpy as np
import optax

from ham_optax._src import checks, hyperbolic, masking
from ham_optax._src.ham import ham

# HAM's arguments after `inner` and `learning_rate`, keyword-only in the aliases, with evaluated annotations (as
# optax's own; Sphinx reads them with typing.get_type_hints).
_HAM_HINTS = typing.get_type_hints(ham)
_MIRROR_PARAMS = [
  p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=_HAM_HINTS[p.name])
  for p in list(inspect.signature(ham).parameters.values())[2:]
]

# The bounds of the inner optimizers' numeric arguments (optax itself takes any value): a decay rate of 1 or more,
# a negative momentum, epsilon or weight decay would diverge or give NaN, so they fail at construction instead.
_UNIT = dict(lo=0.0, hi=1.0, hi_open=True)
_INNER_BOUNDS = {"momentum": _UNIT, "b1": _UNIT, "b2": _UNIT, "eps": dict(lo=0.0), "eps_root": dict(lo=0.0)}
_INNER_BOUNDS |= {"weight_decay": dict(lo=0.0, schedule_ok=True)}


def _check_inner_args(name: str, arguments: dict[str, Any]) -> None:
  """The inner optimizer's arguments of the alias ``name`` within :data:`_INNER_BOUNDS` (``None`` passes)."""
  for arg, bounds in _INNER_BOUNDS.items():
    if arguments.get(arg) is not None:
      checks.check_scalar(arguments[arg], arg, owner=name, **bounds)
  if "nesterov" in arguments:
    checks.check_bool(arguments["nesterov"], "nesterov", owner=name)
  eps = (arguments.get("eps"), arguments.get("eps_root"))
  if all(isinstance(v, (int, float, np.number)) and v == 0 for v in eps):  # concrete values only, not tracers
    raise ValueError(
      f"{name}: eps and eps_root are both 0, so a weight whose gradient is 0 gets 0 / 0 = NaN; "
      "make one of them > 0."
    )


_RULE_DOC = r"""HAM with <INNER> as the inner optimizer.

  The arguments up to ``alpha`` go to ``optax.<FACTORY>``, the rest to :func:`ham_optax.ham`: one learning rate
  (or schedule) drives both half-steps. Per step, with :math:`u_k` the <INNER> update and :math:`g_k` the raw
  gradient:

  .. math::
    x_{k+1} = (x_k + u_k) \odot \exp\big(\operatorname{clip}(-\eta_k(\alpha\operatorname{sign}(x_k + u_k)
      \odot g_k + \beta), -c, c)\big)

  on the masked leaves (the other leaves take :math:`x_k + u_k`).

  Args:
    learning_rate: float or optax schedule, shared by <INNER> and the mirror step."""

_COMMON_DOC = """
    {{mirror_args}}

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` requires ``params``.

  References:
    Jacobs, Gadhikar, Rubio-Madrigal, Burkholz. *Hyperbolic Aware Minimization: Implicit Bias for Sparsity*,
    ICLR 2026, arXiv:2506.02630.

  Example:
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> import optax
    >>> import ham_optax
    >>> params = {{"w": jnp.array([[1.0, -2.0]])}}
    >>> grads = {{"w": jnp.array([[0.5, 0.5]])}}
    >>> tx = ham_optax.{call}
    >>> updates, state = tx.update(grads, tx.init(params), params)
    >>> print(np.asarray(optax.apply_updates(params, updates)["w"]).round(4))
    {output}
"""


def _alias(
  name: str,
  inner_factory: Callable[..., optax.GradientTransformation],
  inner_name: str,
  args_doc: str,
  example: tuple[str, str],
  renamed: dict[str, tuple[str, Any]] | None = None,
) -> Callable[..., optax.GradientTransformationExtraArgs]:
  """``name(<inner_factory's arguments>, *, <HAM's>) = ham(inner_factory(...), learning_rate, <HAM's>)``.

  ``renamed`` maps an inner argument to its name and annotation in the alias; ``example`` is the doctest's
  ``(call, printed output)``."""
  renamed = renamed or {}
  inner_names, params = {}, []
  for n, p in inspect.signature(inner_factory).parameters.items():
    alias_name, annotation = renamed.get(n, (n, p.annotation))
    inner_names[alias_name] = n
    params.append(p.replace(name=alias_name, annotation=annotation))
  signature = inspect.Signature(params + _MIRROR_PARAMS, return_annotation=_HAM_HINTS["return"])

  def alias(*args, **kwargs):
    try:
      given = signature.bind(*args, **kwargs)
    except TypeError as e:  # named like Python's own message for a plain function
      raise TypeError(f"{name}() {e}") from None
    given.apply_defaults()
    _check_inner_args(name, given.arguments)
    inner = inner_factory(**{n: given.arguments[a] for a, n in inner_names.items()})
    mirror_args = {p.name: given.arguments[p.name] for p in _MIRROR_PARAMS}
    return ham(inner, given.arguments["learning_rate"], **mirror_args)

  alias.__name__ = alias.__qualname__ = name
  alias.__signature__ = signature
  alias.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
  alias.__annotations__["return"] = signature.return_annotation
  rule = _RULE_DOC.replace("<INNER>", inner_name).replace("<FACTORY>", inner_factory.__name__)
  alias.__doc__ = rule + args_doc + _COMMON_DOC.format(call=example[0], output=example[1])
  return hyperbolic.document_mirror_args(alias)


ham_sgd = _alias(
  "ham_sgd",
  optax.sgd,
  "SGD",
  """
    momentum: optional heavy-ball momentum, in ``[0, 1)`` (as in ``optax.sgd``).
    nesterov: Nesterov momentum (as in ``optax.sgd``).
    accumulator_dtype: dtype of the momentum accumulator (as in ``optax.sgd``).""",
  ("ham_sgd(0.1, momentum=0.9, alpha=2.0, beta=0.0)", "[[ 0.8596 -2.2656]]"),
)

_ADAM_ARGS = """
    b1: Adam's first-moment decay, in ``[0, 1)``.
    b2: Adam's second-moment decay, in ``[0, 1)``.
    eps: added to the root of the second moment, >= 0.
    eps_root: added to the second moment inside the root, >= 0.
    mu_dtype: dtype of the first moment."""

ham_adam = _alias(
  "ham_adam",
  optax.adam,
  "Adam",
  _ADAM_ARGS
  + """
    nesterov: Nesterov-style Adam (NAdam), as in ``optax.adam``.""",
  ("ham_adam(0.1, alpha=2.0, beta=0.0)", "[[ 0.8144 -2.3209]]"),
)

ham_adamw = _alias(
  "ham_adamw",
  optax.adamw,
  "AdamW",
  _ADAM_ARGS
  + """
    weight_decay: AdamW's decoupled weight decay, >= 0 (a float, or a schedule where the installed optax
      takes one).
    weight_decay_mask: which leaves AdamW decays (``optax.adamw``'s ``mask``; ``mask`` is the mirror step's).
    nesterov: Nesterov-style Adam, as in ``optax.adamw``.""",
  ("ham_adamw(0.1, weight_decay=0.0, alpha=2.0, beta=0.0)", "[[ 0.8144 -2.3209]]"),
  renamed={"mask": ("weight_decay_mask", masking.MaskOrFn)},
)
