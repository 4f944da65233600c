r"""Soft Threshold Reparameterization (STR) layers for flax NNX (Kusupati et al., ICML 2020, arXiv:2002.03231).

The layer stores a dense kernel :math:`W` and one learnable scalar threshold :math:`s` and computes with the
effective weight :math:`\operatorname{sign}(W)\odot\operatorname{relu}(|W| - \sigma(s))`, which is exactly zero
wherever :math:`|W| \le \sigma(s)`. Weight decay on ``threshold`` raises it, the loss gradient lowers it. With
``ham_optax.ham``'s default mask the mirror step acts on the kernel only (STR + HAM: Jacobs et al., ICLR 2026).

The default ``threshold_init=-5`` differs on purpose from STR's ResNet-50 config (``-3200``, where
:math:`\sigma(s)` and its gradient are exactly 0 in float32, so only weight decay moves :math:`s`, too slowly for a
short run); pass ``threshold_init=-3200.0`` to reproduce it.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

try:
  from flax import nnx
except ModuleNotFoundError as e:  # flax is an optional dependency: only these layers need it
  raise ImportError(
    "ham_optax.sparsity's STR layers (STRDense, STRConv, str_sparse_weight) need flax: "
    "pip install 'ham_optax[flax]'"
  ) from e

_DEFAULT_KERNEL_INIT = nnx.initializers.lecun_normal()


def str_sparse_weight(weight: jax.Array, threshold: jax.Array) -> jax.Array:
  r"""STR's effective weight :math:`\operatorname{sign}(W)\odot\operatorname{relu}(|W| - \sigma(s))`."""
  try:
    jnp.broadcast_shapes(jnp.shape(weight), jnp.shape(threshold))
  except ValueError:
    raise ValueError(
      f"str_sparse_weight: threshold of shape {jnp.shape(threshold)} does not broadcast to the weight's "
      f"{jnp.shape(weight)} (one threshold per layer is a scalar)."
    ) from None
  return jnp.sign(weight) * jax.nn.relu(jnp.abs(weight) - jax.nn.sigmoid(threshold).astype(weight.dtype))


class STRDense(nnx.Module):
  r"""Dense layer ``y = x @ sparse_kernel + bias`` with an STR kernel (one learnable threshold per layer).

  Attributes:
    kernel: dense ``(in_features, out_features)`` parameter :math:`W`.
    threshold: scalar parameter :math:`s` (initialised to ``threshold_init``; :math:`\sigma(-5) \approx 0.0067`).
    bias: ``(out_features,)`` parameter, or ``None``.
  """

  def __init__(
    self,
    in_features: int,
    out_features: int,
    *,
    use_bias: bool = True,
    threshold_init: float = -5.0,
    kernel_init: nnx.Initializer = _DEFAULT_KERNEL_INIT,
    rngs: nnx.Rngs,
  ):
    self.kernel = nnx.Param(kernel_init(rngs.params(), (in_features, out_features)))
    self.threshold = nnx.Param(jnp.asarray(threshold_init, jnp.float32))
    self.bias = nnx.Param(jnp.zeros((out_features,))) if use_bias else None

  def sparse_kernel(self) -> jax.Array:
    """The effective (sparse) kernel used in the forward pass."""
    return str_sparse_weight(self.kernel[...], self.threshold[...])

  def __call__(self, x: jax.Array) -> jax.Array:
    y = x @ self.sparse_kernel()
    return y + self.bias[...] if self.bias is not None else y


def _pair(value: Sequence[int] | int, name: str) -> tuple[int, int]:
  """A 2-D convolution's ``kernel_size`` or ``strides``: two positive ints, or one int ``k`` meaning ``(k, k)``."""
  is_int = lambda d: isinstance(d, (int, np.integer)) and not isinstance(d, bool)  # noqa: E731
  try:
    pair = (value, value) if is_int(value) else tuple(value)
  except TypeError:
    pair = ()
  if len(pair) != 2 or not all(is_int(d) and d >= 1 for d in pair):
    raise ValueError(f"STRConv is 2-D: {name} must be a positive int or 2 positive ints, got {value!r}.")
  return int(pair[0]), int(pair[1])


class STRConv(nnx.Module):
  r"""2-D convolution (NHWC input, HWIO kernel) with an STR kernel and one learnable threshold.

  ``kernel_size`` and ``strides`` are two positive ints, or one int ``k`` for ``(k, k)``.

  Attributes:
    kernel: ``(*kernel_size, in_features, out_features)`` parameter :math:`W`.
    threshold: scalar parameter :math:`s`.
    bias: ``(out_features,)`` parameter, or ``None``.
  """

  def __init__(
    self,
    in_features: int,
    out_features: int,
    kernel_size: Sequence[int] | int,
    *,
    strides: Sequence[int] | int = 1,
    padding: str = "SAME",
    use_bias: bool = True,
    threshold_init: float = -5.0,
    kernel_init: nnx.Initializer = _DEFAULT_KERNEL_INIT,
    rngs: nnx.Rngs,
  ):
    kernel_size = _pair(kernel_size, "kernel_size")
    self.strides = _pair(strides, "strides")
    self.padding = padding
    self.kernel = nnx.Param(kernel_init(rngs.params(), (*kernel_size, in_features, out_features)))
    self.threshold = nnx.Param(jnp.asarray(threshold_init, jnp.float32))
    self.bias = nnx.Param(jnp.zeros((out_features,))) if use_bias else None

  def sparse_kernel(self) -> jax.Array:
    """The effective (sparse) kernel used in the forward pass."""
    return str_sparse_weight(self.kernel[...], self.threshold[...])

  def __call__(self, x: jax.Array) -> jax.Array:
    y = jax.lax.conv_general_dilated(
      x,
      self.sparse_kernel(),
      window_strides=self.strides,
      padding=self.padding,
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    return y + self.bias[...] if self.bias is not None else y
