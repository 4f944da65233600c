"""Flax NNX models for the HAM examples: an MLP (optionally with LayerNorm), a 1-D CNN, a 1-D ResNet with
BatchNorm, a CIFAR-style ResNet-18, a small decoder-only transformer, and two graph networks for node
classification (GCN, GraphSAGE-style).

All models map a batch of examples to logits (the graph models: a batch of node indices). Weight tensors
(``kernel``/``embedding``, ndim >= 2) are the ones HAM and the sparsifiers act on by default; biases, BatchNorm
and LayerNorm scales are 1-D.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ham_optax_examples.data import Graph

__all__ = [
  "MLP",
  "CNN1D",
  "ResNet1D",
  "ResNet18",
  "Transformer",
  "GCN",
  "GraphSAGE",
  "GraphData",
  "MODELS",
  "create_model",
]

MODELS = ("mlp", "mlp_ln", "cnn1d", "resnet1d", "resnet18", "transformer", "gcn", "sage")
GRAPH_MODELS = ("gcn", "sage")


class MLP(nnx.Module):
  """Fully connected ReLU network; flattens its input.

  With ``layernorm=True`` every hidden layer is ``relu(LayerNorm(Linear(x)))`` (pre-activation
  normalisation); the LayerNorm scales and biases are 1-D, so HAM's default mask leaves them alone.
  """

  def __init__(
    self,
    in_features: int,
    num_classes: int,
    hidden: Sequence[int] = (256, 256),
    *,
    layernorm: bool = False,
    rngs: nnx.Rngs,
  ):
    sizes = [in_features, *hidden]
    self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:], strict=True)])
    self.norms = nnx.List([nnx.LayerNorm(b, rngs=rngs) for b in hidden]) if layernorm else None
    self.head = nnx.Linear(sizes[-1], num_classes, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = x.reshape(x.shape[0], -1)
    for i, layer in enumerate(self.layers):
      x = layer(x)
      if self.norms is not None:
        x = self.norms[i](x)
      x = jax.nn.relu(x)
    return self.head(x)


class CNN1D(nnx.Module):
  """1-D CNN for sequences such as MNIST-1D: conv/ReLU stack, then a dense head.

  Input ``(batch, length)`` or ``(batch, length, channels)``.
  """

  def __init__(
    self,
    length: int,
    num_classes: int,
    channels: Sequence[int] = (32, 32, 32),
    kernel_size: int = 5,
    in_channels: int = 1,
    hidden: int = 128,
    *,
    rngs: nnx.Rngs,
  ):
    chans = [in_channels, *channels]
    self.convs = nnx.List(
      [
        nnx.Conv(a, b, kernel_size=(kernel_size,), strides=(2,) if i else (1,), rngs=rngs)
        for i, (a, b) in enumerate(zip(chans[:-1], chans[1:], strict=True))
      ]
    )
    out_len = length
    for _ in range(1, len(channels)):
      out_len = -(-out_len // 2)  # SAME padding, stride 2
    self.dense = nnx.Linear(out_len * chans[-1], hidden, rngs=rngs)
    self.head = nnx.Linear(hidden, num_classes, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    if x.ndim == 2:
      x = x[..., None]
    for conv in self.convs:
      x = jax.nn.relu(conv(x))
    x = jax.nn.relu(self.dense(x.reshape(x.shape[0], -1)))
    return self.head(x)


class _BasicBlock1D(nnx.Module):
  def __init__(self, cin: int, cout: int, stride: int, kernel_size: int, *, rngs: nnx.Rngs):
    k = (kernel_size,)
    self.conv1 = nnx.Conv(cin, cout, k, strides=(stride,), use_bias=False, rngs=rngs)
    self.bn1 = nnx.BatchNorm(cout, momentum=0.9, rngs=rngs)
    self.conv2 = nnx.Conv(cout, cout, k, use_bias=False, rngs=rngs)
    self.bn2 = nnx.BatchNorm(cout, momentum=0.9, rngs=rngs)
    if stride != 1 or cin != cout:
      self.shortcut_conv = nnx.Conv(cin, cout, (1,), strides=(stride,), use_bias=False, rngs=rngs)
      self.shortcut_bn = nnx.BatchNorm(cout, momentum=0.9, rngs=rngs)
    else:
      self.shortcut_conv = None
      self.shortcut_bn = None

  def __call__(self, x: jax.Array) -> jax.Array:
    y = jax.nn.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    if self.shortcut_conv is not None:
      x = self.shortcut_bn(self.shortcut_conv(x))
    return jax.nn.relu(x + y)


class ResNet1D(nnx.Module):
  """A small 1-D residual conv net with BatchNorm for sequences such as MNIST-1D.

  The paper's setting (ResNet with BatchNorm) in miniature: a conv stem with BatchNorm, then stages of
  one BasicBlock each (two ``kernel_size`` convs with BatchNorm and a shortcut), widths ``channels``,
  stride 2 from the second stage on, global average pooling and a linear head. Input
  ``(batch, length)`` or ``(batch, length, channels)``. Call ``model.train()`` / ``model.eval()`` to
  switch BatchNorm between batch statistics and running averages.
  """

  def __init__(
    self,
    num_classes: int,
    channels: Sequence[int] = (32, 64, 64),
    kernel_size: int = 5,
    in_channels: int = 1,
    *,
    rngs: nnx.Rngs,
  ):
    self.stem = nnx.Conv(in_channels, channels[0], (kernel_size,), use_bias=False, rngs=rngs)
    self.stem_bn = nnx.BatchNorm(channels[0], momentum=0.9, rngs=rngs)
    blocks, cin = [], channels[0]
    for i, cout in enumerate(channels):
      blocks.append(_BasicBlock1D(cin, cout, 2 if i else 1, kernel_size, rngs=rngs))
      cin = cout
    self.blocks = nnx.List(blocks)
    self.head = nnx.Linear(cin, num_classes, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    if x.ndim == 2:
      x = x[..., None]
    x = jax.nn.relu(self.stem_bn(self.stem(x)))
    for block in self.blocks:
      x = block(x)
    return self.head(jnp.mean(x, axis=1))


class _BasicBlock(nnx.Module):
  def __init__(self, cin: int, cout: int, stride: int, *, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(cin, cout, (3, 3), strides=(stride, stride), padding=1, use_bias=False, rngs=rngs)
    self.bn1 = nnx.BatchNorm(cout, momentum=0.9, rngs=rngs)
    self.conv2 = nnx.Conv(cout, cout, (3, 3), padding=1, use_bias=False, rngs=rngs)
    self.bn2 = nnx.BatchNorm(cout, momentum=0.9, rngs=rngs)
    if stride != 1 or cin != cout:
      self.shortcut_conv = nnx.Conv(cin, cout, (1, 1), strides=(stride, stride), use_bias=False, rngs=rngs)
      self.shortcut_bn = nnx.BatchNorm(cout, momentum=0.9, rngs=rngs)
    else:
      self.shortcut_conv = None
      self.shortcut_bn = None

  def __call__(self, x: jax.Array) -> jax.Array:
    y = jax.nn.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    if self.shortcut_conv is not None:
      x = self.shortcut_bn(self.shortcut_conv(x))
    return jax.nn.relu(x + y)


class ResNet18(nnx.Module):
  """CIFAR-style ResNet-18 (He et al., 2016): 3x3 stem without max-pooling, four stages of two
  BasicBlocks with widths ``width * (1, 2, 4, 8)``, BatchNorm, global average pooling.

  ``width=64`` is the standard model (11.2 M parameters); small widths are for tests.
  Input ``(batch, height, width, in_channels)``. Call ``model.train()`` / ``model.eval()`` to
  switch BatchNorm between batch statistics and running averages.
  """

  def __init__(
    self,
    num_classes: int,
    width: int = 64,
    in_channels: int = 3,
    *,
    rngs: nnx.Rngs,
  ):
    self.stem = nnx.Conv(in_channels, width, (3, 3), padding=1, use_bias=False, rngs=rngs)
    self.stem_bn = nnx.BatchNorm(width, momentum=0.9, rngs=rngs)
    blocks = []
    cin = width
    for stage, mult in enumerate((1, 2, 4, 8)):
      cout = width * mult
      for b in range(2):
        stride = 2 if (stage > 0 and b == 0) else 1
        blocks.append(_BasicBlock(cin, cout, stride, rngs=rngs))
        cin = cout
    self.blocks = nnx.List(blocks)
    self.head = nnx.Linear(cin, num_classes, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = jax.nn.relu(self.stem_bn(self.stem(x)))
    for block in self.blocks:
      x = block(x)
    return self.head(jnp.mean(x, axis=(1, 2)))


class GraphData(nnx.Variable):
  """A constant of a graph model (node features, edge lists, edge weights): not an ``nnx.Param``, so neither
  the optimizer (``wrt=nnx.Param``) nor HAM's mask ever sees it."""


# Message passing is a gather + `jax.ops.segment_sum` over a fixed edge list. For full-batch training on one
# graph this is all a GCN needs, it jits and vmaps (fixed shapes) and has no dependency; `jraph` would add only
# batching of many small graphs (not needed here) and has had no release since 2022. A dense normalised
# adjacency would cost O(N^2) memory and flops; `jax.experimental.sparse` BCOO works too but is experimental.
def _propagate(h: jax.Array, senders: jax.Array, receivers: jax.Array, weights: jax.Array) -> jax.Array:
  """``out_i = sum_{edges j -> i} w_ji h_j`` (a sparse normalised adjacency times ``h``)."""
  return jax.ops.segment_sum(h[senders] * weights[:, None], receivers, num_segments=h.shape[0])


class _GraphModel(nnx.Module):
  """Stores the graph as :class:`GraphData`; ``model(idx)`` returns the logits of nodes ``idx`` (all if None)."""

  def _store_graph(self, graph: Graph, *, self_loops: bool, symmetric: bool) -> None:
    senders, receivers = graph.senders, graph.receivers
    deg = graph.degrees()
    if self_loops:
      loops = np.arange(graph.num_nodes, dtype=np.int32)
      senders, receivers = np.concatenate([senders, loops]), np.concatenate([receivers, loops])
      deg = deg + 1.0
    inv = np.where(deg > 0, 1.0 / np.maximum(deg, 1.0), 0.0)
    # symmetric: D^-1/2 A D^-1/2 (GCN); else the neighbour mean D^-1 A (rows of isolated nodes are zero)
    weights = np.sqrt(inv[senders] * inv[receivers]) if symmetric else inv[receivers]
    self.features = GraphData(jnp.asarray(graph.x, jnp.float32))
    self.senders = GraphData(jnp.asarray(senders, jnp.int32))
    self.receivers = GraphData(jnp.asarray(receivers, jnp.int32))
    self.weights = GraphData(jnp.asarray(weights, jnp.float32))

  def propagate(self, h: jax.Array) -> jax.Array:
    """The normalised adjacency times ``h``."""
    return _propagate(h, self.senders[...], self.receivers[...], self.weights[...])

  def logits(self) -> jax.Array:
    raise NotImplementedError

  def __call__(self, idx: jax.Array | None = None) -> jax.Array:
    out = self.logits()
    return out if idx is None else out[jnp.asarray(idx, jnp.int32)]


class GCN(_GraphModel):
  """Graph convolutional network (Kipf and Welling, ICLR 2017), full batch.

  Each layer is ``H' = A_hat H W + b`` with ``A_hat = D^-1/2 (A + I) D^-1/2``, ReLU between layers. The
  propagation averages a node with its neighbours, which suits homophilic graphs.
  """

  def __init__(self, graph: Graph, num_classes: int, hidden: Sequence[int] = (64,), *, rngs: nnx.Rngs):
    self._store_graph(graph, self_loops=True, symmetric=True)
    sizes = [graph.x.shape[1], *hidden, num_classes]
    self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:], strict=True)])

  def logits(self) -> jax.Array:
    h = self.features[...]
    for i, layer in enumerate(self.layers):
      h = self.propagate(h @ layer.kernel[...]) + layer.bias[...]
      if i < len(self.layers) - 1:
        h = jax.nn.relu(h)
    return h


class GraphSAGE(_GraphModel):
  """GraphSAGE-style network (Hamilton et al., NeurIPS 2017) with mean aggregation, full batch.

  Each layer is ``H' = H W_self + (D^-1 A) H W_neigh + b``: separate weights for a node's own features and for
  the mean of its neighbours', so a layer can keep the ego features and weigh (even subtract) the neighbours,
  which helps on heterophilic graphs (Zhu et al., NeurIPS 2020).
  """

  def __init__(self, graph: Graph, num_classes: int, hidden: Sequence[int] = (64,), *, rngs: nnx.Rngs):
    self._store_graph(graph, self_loops=False, symmetric=False)
    sizes = [graph.x.shape[1], *hidden, num_classes]
    pairs = list(zip(sizes[:-1], sizes[1:], strict=True))
    self.self_layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in pairs])
    self.neigh_layers = nnx.List([nnx.Linear(a, b, use_bias=False, rngs=rngs) for a, b in pairs])

  def logits(self) -> jax.Array:
    h = self.features[...]
    for i, (own, neigh) in enumerate(zip(self.self_layers, self.neigh_layers, strict=True)):
      h = own(h) + self.propagate(neigh(h))
      if i < len(self.self_layers) - 1:
        h = jax.nn.relu(h)
    return h


class _DecoderBlock(nnx.Module):
  """Pre-LayerNorm block: ``x + attn(LN(x))``, then ``x + MLP(LN(x))`` (ReLU MLP, hidden ``mlp_ratio * d``)."""

  def __init__(self, d_model: int, num_heads: int, mlp_ratio: int, *, rngs: nnx.Rngs):
    self.ln1 = nnx.LayerNorm(d_model, rngs=rngs)
    self.attn = nnx.MultiHeadAttention(
      num_heads=num_heads, in_features=d_model, use_bias=False, decode=False, deterministic=True, rngs=rngs
    )
    self.ln2 = nnx.LayerNorm(d_model, rngs=rngs)
    self.fc1 = nnx.Linear(d_model, mlp_ratio * d_model, rngs=rngs)
    self.fc2 = nnx.Linear(mlp_ratio * d_model, d_model, rngs=rngs)

  def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
    x = x + self.attn(self.ln1(x), mask=mask)
    return x + self.fc2(jax.nn.relu(self.fc1(self.ln2(x))))


class Transformer(nnx.Module):
  """A small decoder-only (GPT-style) transformer that classifies a token sequence from its last position.

  Token and learned position embeddings, ``num_layers`` pre-LayerNorm blocks (causal multi-head
  self-attention, ``nnx.MultiHeadAttention``, and a ReLU MLP), a final LayerNorm and a linear head on the
  last position. Input: int tokens ``(batch, seq_len)`` in ``[0, vocab_size)``; output ``(batch, num_classes)``.
  This is the model of the grokking studies (Power et al., 2022; Nanda et al., 2023) on
  :func:`ham_optax_examples.data.load_modular`.

  HAM's default mask (float leaves with ``ndim >= 2``) selects the token and position embeddings, the
  attention kernels (3-D: ``(d_model, heads, head_dim)`` for query/key/value, ``(heads, head_dim, d_model)``
  for the output), the MLP kernels and the head; LayerNorm scales and all biases are 1-D and take the
  inner optimizer's update alone. The attention has no biases (NNX's query/key/value biases are 2-D,
  ``(heads, head_dim)``, and the default mask would select them, as it does not know they are biases).
  """

  def __init__(
    self,
    vocab_size: int,
    seq_len: int,
    num_classes: int,
    d_model: int = 64,
    num_heads: int = 4,
    num_layers: int = 1,
    mlp_ratio: int = 4,
    *,
    rngs: nnx.Rngs,
  ):
    if d_model % num_heads:
      raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
    self.seq_len = seq_len
    self.vocab_size = vocab_size
    self.token_embed = nnx.Embed(vocab_size, d_model, rngs=rngs)
    self.pos_embed = nnx.Param(nnx.initializers.normal(0.02)(rngs.params(), (seq_len, d_model)))
    self.blocks = nnx.List(
      [_DecoderBlock(d_model, num_heads, mlp_ratio, rngs=rngs) for _ in range(num_layers)]
    )
    self.ln_f = nnx.LayerNorm(d_model, rngs=rngs)
    self.head = nnx.Linear(d_model, num_classes, rngs=rngs)

  def __call__(self, tokens: jax.Array) -> jax.Array:
    tokens = tokens.astype(jnp.int32)
    x = self.token_embed(tokens) + self.pos_embed[...][: tokens.shape[-1]]
    mask = nnx.make_causal_mask(tokens)
    for block in self.blocks:
      x = block(x, mask)
    return self.head(self.ln_f(x[:, -1]))


def create_model(
  name: str,
  input_shape: tuple[int, ...],
  num_classes: int,
  *,
  seed: int = 0,
  width: int | None = None,
  graph: Graph | None = None,
  vocab_size: int | None = None,
) -> nnx.Module:
  """Builds ``name`` in :data:`MODELS` for inputs of ``input_shape`` (one example).

  ``width``: hidden size of the MLPs (two layers), channels of the CNN1D, base width of the
  ResNet1D (stages ``width, 2 width, 2 width``) and the ResNet-18, ``d_model`` of the transformer (one block,
  4 heads), hidden size of the graph models (one hidden layer); ``None`` picks each model's default.
  ``vocab_size`` (transformer only; ``input_shape`` is ``(seq_len,)``) defaults to ``num_classes + 3``: the
  numbers ``0 .. p-1`` and the symbols ``+ - =`` of :func:`ham_optax_examples.data.load_modular`. ``graph``: the
  graph of the node-classification models ``gcn`` / ``sage`` (``dataset.graph``), whose inputs are node indices.
  """
  rngs = nnx.Rngs(seed)
  if name in GRAPH_MODELS:
    if graph is None:
      raise ValueError(f"{name} is a graph model: pass graph= (a node-classification dataset such as 'csbm')")
    cls = GCN if name == "gcn" else GraphSAGE
    return cls(graph, num_classes, (64,) if width is None else (width,), rngs=rngs)
  if graph is not None:
    raise ValueError(f"{name} is not a graph model; use one of {GRAPH_MODELS} for a graph dataset")
  if name in ("mlp", "mlp_ln"):
    in_features = 1
    for d in input_shape:
      in_features *= d
    hidden = (256, 256) if width is None else (width, width)
    return MLP(in_features, num_classes, hidden, layernorm=name == "mlp_ln", rngs=rngs)
  if name in ("cnn1d", "resnet1d"):
    if len(input_shape) not in (1, 2):
      raise ValueError(f"{name} needs (length,) or (length, channels) inputs, got {input_shape}")
    in_ch = 1 if len(input_shape) == 1 else input_shape[1]
    if name == "resnet1d":
      channels = (32, 64, 64) if width is None else (width, 2 * width, 2 * width)
      return ResNet1D(num_classes, channels, in_channels=in_ch, rngs=rngs)
    channels = (32, 32, 32) if width is None else (width, width, width)
    return CNN1D(input_shape[0], num_classes, channels, in_channels=in_ch, rngs=rngs)
  if name == "resnet18":
    if len(input_shape) != 3:
      raise ValueError(f"resnet18 needs (height, width, channels) inputs, got {input_shape}")
    return ResNet18(num_classes, width=64 if width is None else width, in_channels=input_shape[2], rngs=rngs)
  if name == "transformer":
    if len(input_shape) != 1:
      raise ValueError(f"transformer needs (seq_len,) token inputs, got {input_shape}")
    vocab = num_classes + 3 if vocab_size is None else vocab_size
    return Transformer(vocab, input_shape[0], num_classes, d_model=64 if width is None else width, rngs=rngs)
  raise ValueError(f"unknown model {name!r}; expected one of {MODELS}")
