"""Flax NNX models of the examples, mapping a batch of examples (graph models: node indices) to logits. Weight
tensors (``kernel``/``embedding``, ndim >= 2) are what HAM and the sparsifiers act on by default; biases, BatchNorm
and LayerNorm scales are 1-D."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ham_optax_examples.data import Graph

MODELS = ("mlp", "mlp_ln", "cnn1d", "resnet1d", "resnet18", "transformer", "gcn", "sage")
GRAPH_MODELS = ("gcn", "sage")


def _linears(sizes: Sequence[int], rngs: nnx.Rngs, **kwargs) -> nnx.List:
  return nnx.List([nnx.Linear(a, b, rngs=rngs, **kwargs) for a, b in zip(sizes[:-1], sizes[1:], strict=True)])


class MLP(nnx.Module):
  """Fully connected ReLU network on the flattened input; with ``layernorm=True`` every hidden layer is
  ``relu(LayerNorm(Linear(x)))``."""

  def __init__(
    self, in_features: int, num_classes: int, hidden=(256, 256), *, layernorm=False, rngs: nnx.Rngs
  ):
    self.layers = _linears([in_features, *hidden], rngs)
    self.norms = nnx.List([nnx.LayerNorm(b, rngs=rngs) for b in hidden]) if layernorm else None
    self.head = nnx.Linear([in_features, *hidden][-1], num_classes, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = x.reshape(x.shape[0], -1)
    for i, layer in enumerate(self.layers):
      x = jax.nn.relu(layer(x) if self.norms is None else self.norms[i](layer(x)))
    return self.head(x)


class CNN1D(nnx.Module):
  """1-D CNN: conv/ReLU stack (stride 2 after the first), then a dense head. Input ``(batch, length)`` or
  ``(batch, length, channels)``."""

  def __init__(
    self, length, num_classes, channels=(32, 32, 32), kernel_size=5, in_channels=1, hidden=128, *, rngs
  ):
    chans = [in_channels, *channels]
    pairs = enumerate(zip(chans[:-1], chans[1:], strict=True))
    self.convs = nnx.List(
      [nnx.Conv(a, b, (kernel_size,), strides=(2 if i else 1,), rngs=rngs) for i, (a, b) in pairs]
    )
    out_len = -(-length // 2 ** (len(channels) - 1))  # SAME padding, stride 2 after the first conv
    self.dense = nnx.Linear(out_len * chans[-1], hidden, rngs=rngs)
    self.head = nnx.Linear(hidden, num_classes, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = x[..., None] if x.ndim == 2 else x
    for conv in self.convs:
      x = jax.nn.relu(conv(x))
    return self.head(jax.nn.relu(self.dense(x.reshape(x.shape[0], -1))))


class _BasicBlock(nnx.Module):
  """ResNet basic block: two convs with BatchNorm, and a 1x1 conv with BatchNorm on the shortcut when the stride
  or the width changes."""

  def __init__(self, cin: int, cout: int, stride: int, kernel: tuple[int, ...], padding, *, rngs: nnx.Rngs):
    strides = (stride,) * len(kernel)
    self.conv1 = nnx.Conv(cin, cout, kernel, strides=strides, padding=padding, use_bias=False, rngs=rngs)
    self.bn1 = nnx.BatchNorm(cout, momentum=0.9, rngs=rngs)
    self.conv2 = nnx.Conv(cout, cout, kernel, padding=padding, use_bias=False, rngs=rngs)
    self.bn2 = nnx.BatchNorm(cout, momentum=0.9, rngs=rngs)
    if stride != 1 or cin != cout:
      self.shortcut_conv = nnx.Conv(cin, cout, (1,) * len(kernel), strides=strides, use_bias=False, rngs=rngs)
      self.shortcut_bn = nnx.BatchNorm(cout, momentum=0.9, rngs=rngs)
    else:
      self.shortcut_conv = self.shortcut_bn = None

  def __call__(self, x: jax.Array) -> jax.Array:
    y = self.bn2(self.conv2(jax.nn.relu(self.bn1(self.conv1(x)))))
    if self.shortcut_conv is not None:
      x = self.shortcut_bn(self.shortcut_conv(x))
    return jax.nn.relu(x + y)


class _ResNet(nnx.Module):
  """A conv stem with BatchNorm, stages of ``blocks`` basic blocks of widths ``widths`` (stride 2 at the first
  block of every stage but the first), global average pooling and a linear head."""

  def __init__(self, in_channels, widths, blocks, kernel, padding, num_classes, *, rngs: nnx.Rngs):
    self.stem = nnx.Conv(in_channels, widths[0], kernel, padding=padding, use_bias=False, rngs=rngs)
    self.stem_bn = nnx.BatchNorm(widths[0], momentum=0.9, rngs=rngs)
    layers, cin = [], widths[0]
    for stage, cout in enumerate(widths):
      for b in range(blocks):
        layers.append(_BasicBlock(cin, cout, 2 if stage and not b else 1, kernel, padding, rngs=rngs))
        cin = cout
    self.blocks = nnx.List(layers)
    self.head = nnx.Linear(cin, num_classes, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = jax.nn.relu(self.stem_bn(self.stem(x[..., None] if x.ndim == 2 else x)))  # (batch, length): 1 channel
    for block in self.blocks:
      x = block(x)
    return self.head(jnp.mean(x, axis=tuple(range(1, x.ndim - 1))))


class ResNet1D(_ResNet):
  """A small 1-D ResNet with BatchNorm (the paper's setting in miniature): one basic block of two ``kernel_size``
  convs per stage, widths ``channels``. Input ``(batch, length)`` or ``(batch, length, channels)``."""

  def __init__(
    self, num_classes: int, channels=(32, 64, 64), kernel_size=5, in_channels=1, *, rngs: nnx.Rngs
  ):
    super().__init__(in_channels, channels, 1, (kernel_size,), "SAME", num_classes, rngs=rngs)


class ResNet18(_ResNet):
  """CIFAR-style ResNet-18 (He et al., 2016): 3x3 stem without max-pooling, four stages of two basic blocks
  with widths ``width * (1, 2, 4, 8)`` (``width=64``: the standard 11.2 M parameters). Input ``(batch, height,
  width, in_channels)``."""

  def __init__(self, num_classes: int, width: int = 64, in_channels: int = 3, *, rngs: nnx.Rngs):
    super().__init__(in_channels, [width * m for m in (1, 2, 4, 8)], 2, (3, 3), 1, num_classes, rngs=rngs)


class GraphData(nnx.Variable):
  """A constant of a graph model (node features, edge lists, edge weights): not an ``nnx.Param``, so neither
  the optimizer (``wrt=nnx.Param``) nor HAM's mask ever sees it."""


class _GraphModel(nnx.Module):
  """Stores the graph as :class:`GraphData`; ``model(idx)`` returns the logits of nodes ``idx`` (all if None)."""

  def _store_graph(self, graph: Graph, *, self_loops: bool, symmetric: bool) -> None:
    senders, receivers = graph.senders, graph.receivers
    deg = np.bincount(receivers, minlength=graph.num_nodes).astype(np.float32)
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
    """The normalised adjacency times ``h``: ``out_i = sum_{edges j -> i} w_ji h_j``, a gather and a
    ``segment_sum`` over the fixed edge list (O(edges), not the O(N^2) of a dense adjacency)."""
    messages = h[self.senders[...]] * self.weights[...][:, None]
    return jax.ops.segment_sum(messages, self.receivers[...], num_segments=h.shape[0])

  def __call__(self, idx: jax.Array | None = None) -> jax.Array:
    h = self.features[...]
    for i in range(self.num_layers):
      h = self.layer(i, h)
      h = jax.nn.relu(h) if i < self.num_layers - 1 else h
    return h if idx is None else h[jnp.asarray(idx, jnp.int32)]


class GCN(_GraphModel):
  """Graph convolutional network (Kipf and Welling, ICLR 2017), full batch: each layer is
  ``H' = A_hat H W + b`` with ``A_hat = D^-1/2 (A + I) D^-1/2``, ReLU between layers (suits homophilic graphs)."""

  def __init__(self, graph: Graph, num_classes: int, hidden: Sequence[int] = (64,), *, rngs: nnx.Rngs):
    self._store_graph(graph, self_loops=True, symmetric=True)
    self.layers = _linears([graph.x.shape[1], *hidden, num_classes], rngs)
    self.num_layers = len(self.layers)

  def layer(self, i: int, h: jax.Array) -> jax.Array:
    return self.propagate(h @ self.layers[i].kernel[...]) + self.layers[i].bias[...]


class GraphSAGE(_GraphModel):
  """GraphSAGE-style network (Hamilton et al., NeurIPS 2017) with mean aggregation, full batch: each layer is
  ``H' = H W_self + (D^-1 A) H W_neigh + b``; its separate ego weights help on heterophilic graphs (Zhu et al.,
  NeurIPS 2020)."""

  def __init__(self, graph: Graph, num_classes: int, hidden: Sequence[int] = (64,), *, rngs: nnx.Rngs):
    self._store_graph(graph, self_loops=False, symmetric=False)
    sizes = [graph.x.shape[1], *hidden, num_classes]
    self.self_layers = _linears(sizes, rngs)
    self.neigh_layers = _linears(sizes, rngs, use_bias=False)
    self.num_layers = len(sizes) - 1

  def layer(self, i: int, h: jax.Array) -> jax.Array:
    return self.self_layers[i](h) + self.propagate(self.neigh_layers[i](h))


class _DecoderBlock(nnx.Module):
  """Pre-LayerNorm block: ``x + attn(LN(x))``, then ``x + MLP(LN(x))`` (ReLU MLP, hidden ``mlp_ratio * d``)."""

  def __init__(self, d_model: int, num_heads: int, mlp_ratio: int, rngs: nnx.Rngs):
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
  """A small decoder-only (GPT-style) transformer classifying a token sequence ``(batch, seq_len)`` from its last
  position: token and position embeddings, ``num_layers`` pre-LayerNorm blocks, a final LayerNorm and a linear
  head (the grokking studies' model: Power et al., 2022; Nanda et al., 2023). The attention has no biases: NNX's
  are 2-D, ``(heads, head_dim)``, and HAM's default mask (``ndim >= 2``) would select them."""

  def __init__(
    self, vocab_size, seq_len, num_classes, d_model=64, num_heads=4, num_layers=1, mlp_ratio=4, *, rngs
  ):
    if d_model % num_heads:
      raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
    self.token_embed = nnx.Embed(vocab_size, d_model, rngs=rngs)
    self.pos_embed = nnx.Param(nnx.initializers.normal(0.02)(rngs.params(), (seq_len, d_model)))
    self.blocks = nnx.List([_DecoderBlock(d_model, num_heads, mlp_ratio, rngs) for _ in range(num_layers)])
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
  seed=0,
  width=None,
  graph=None,
  vocab_size=None,
) -> nnx.Module:
  """Builds ``name`` in :data:`MODELS` for inputs of ``input_shape`` (one example; graph models: node indices of
  ``graph``). ``width`` (``None``: the model's default): hidden size of the MLPs and graph models, channels of the
  CNN1D, base width of the ResNets, ``d_model`` of the transformer, whose ``vocab_size`` is ``num_classes + 3``
  (:func:`~ham_optax_examples.data.load_modular`) unless given."""
  rngs, w = nnx.Rngs(seed), (lambda default: default if width is None else width)
  if name in GRAPH_MODELS:
    if graph is None:
      raise ValueError(f"{name} is a graph model: pass graph= (a node-classification dataset such as 'csbm')")
    return (GCN if name == "gcn" else GraphSAGE)(graph, num_classes, (w(64),), rngs=rngs)
  if graph is not None:
    raise ValueError(f"{name} is not a graph model; use one of {GRAPH_MODELS} for a graph dataset")
  if name in ("mlp", "mlp_ln"):
    return MLP(int(np.prod(input_shape)), num_classes, (w(256),) * 2, layernorm=name == "mlp_ln", rngs=rngs)
  if name in ("cnn1d", "resnet1d"):
    if len(input_shape) not in (1, 2):
      raise ValueError(f"{name} needs (length,) or (length, channels) inputs, got {input_shape}")
    in_ch = 1 if len(input_shape) == 1 else input_shape[1]
    if name == "resnet1d":
      channels = (32, 64, 64) if width is None else (width, 2 * width, 2 * width)
      return ResNet1D(num_classes, channels, in_channels=in_ch, rngs=rngs)
    return CNN1D(input_shape[0], num_classes, (w(32),) * 3, in_channels=in_ch, rngs=rngs)
  if name == "resnet18":
    if len(input_shape) != 3:
      raise ValueError(f"resnet18 needs (height, width, channels) inputs, got {input_shape}")
    return ResNet18(num_classes, width=w(64), in_channels=input_shape[2], rngs=rngs)
  if name == "transformer":
    if len(input_shape) != 1:
      raise ValueError(f"transformer needs (seq_len,) token inputs, got {input_shape}")
    vocab = num_classes + 3 if vocab_size is None else vocab_size
    return Transformer(vocab, input_shape[0], num_classes, d_model=w(64), rngs=rngs)
  raise ValueError(f"unknown model {name!r}; expected one of {MODELS}")
