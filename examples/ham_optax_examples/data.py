"""Offline datasets for the HAM training examples (nothing is downloaded unless asked for):

* ``mnist1d``: the 1-D digits of Greydanus (2020), generated with ``mnist1d.data.make_dataset`` (never
  ``get_dataset``, which downloads) and cached as ``.npz`` under ``$HAM_OPTAX_CACHE`` (default
  ``~/.cache/ham_optax``);
* ``digits``: scikit-learn's bundled 8x8 handwritten digits;
* ``csbm``: node classification on a contextual stochastic block model (:func:`make_csbm`);
* ``modular`` / ``modular_sub``: ``a + b mod p`` / ``a - b mod p`` as token sequences (grokking);
* ``cifar10`` / ``cifar100``: through ``tensorflow_datasets`` for data already on disk (``data_dir``).

Every loader returns a :class:`Dataset` with fixed train / validation / test splits: hyperparameters are chosen on
validation, and the test split is only used for reporting.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

DATASETS = ("mnist1d", "digits", "csbm", "cifar10", "cifar100", "modular", "modular_sub")
_SPLIT_SEED = 0  # fixed: the splits never depend on the training seed


@dataclass(frozen=True)
class Graph:
  """An undirected graph with node features and labels, for full-batch node classification.

  Attributes:
    x: node features, float32 ``(num_nodes, num_features)``.
    y: node labels, int32 ``(num_nodes,)``.
    senders: int32 ``(num_edges,)``; every undirected edge ``{i, j}`` appears twice, as ``i -> j`` and ``j -> i``.
    receivers: int32 ``(num_edges,)``, aligned with ``senders``. No self-loops, no duplicate edges.
    num_classes: number of classes.
  """

  x: np.ndarray
  y: np.ndarray
  senders: np.ndarray
  receivers: np.ndarray
  num_classes: int

  @property
  def num_nodes(self) -> int:
    """Number of nodes."""
    return int(self.x.shape[0])

  def degrees(self) -> np.ndarray:
    """Number of neighbours of each node (float32)."""
    return np.bincount(self.receivers, minlength=self.num_nodes).astype(np.float32)


def edge_homophily(graph: Graph) -> float:
  """Fraction of edges whose two endpoints share a label (Zhu et al., 2020)."""
  return float(np.mean(graph.y[graph.senders] == graph.y[graph.receivers]))


@dataclass(frozen=True)
class Dataset:
  """Train / validation / test arrays (features float32, or int32 tokens for ``modular``; labels int32).

  For node classification (``graph`` set) the examples are node indices (int32), and a graph model maps them to
  logits using the whole graph (full batch).
  """

  name: str
  x_train: np.ndarray
  y_train: np.ndarray
  x_val: np.ndarray
  y_val: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int
  graph: Graph | None = None

  @property
  def input_shape(self) -> tuple[int, ...]:
    """Shape of one example (without the batch dimension)."""
    return tuple(self.x_train.shape[1:])

  def shard(self, index: int, count: int) -> Dataset:
    """Block ``index`` of ``count`` contiguous blocks of every split (what one process of a data-parallel run
    holds; the graph is kept whole). The training blocks all have ``len(x_train) // count`` examples (the rest is
    left out, so that every shard gives the same number of steps); validation and test are cut with
    ``numpy.array_split`` (every example is in exactly one block)."""
    if not 0 <= index < count:
      raise ValueError(f"shard index must be in [0, {count}), got {index!r}")
    if count == 1:
      return self
    n = len(self.x_train) // count
    parts = {"train": slice(index * n, (index + 1) * n)}
    for name in ("val", "test"):
      parts[name] = np.array_split(np.arange(len(getattr(self, f"x_{name}"))), count)[index]
    arrays = {f"{a}_{name}": getattr(self, f"{a}_{name}")[rows] for name, rows in parts.items() for a in "xy"}
    return replace(self, **arrays)

  def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Returns ``(x, y)`` for ``name`` in ``{"train", "val", "test"}``."""
    if name not in ("train", "val", "test"):
      raise ValueError(f"split must be 'train', 'val' or 'test', got {name!r}")
    return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")


def cache_dir() -> Path:
  """The cache directory: ``$HAM_OPTAX_CACHE`` or ``~/.cache/ham_optax``."""
  return Path(os.environ.get("HAM_OPTAX_CACHE", Path.home() / ".cache" / "ham_optax"))


def _check_fractions(**fractions: float) -> None:
  for name, value in fractions.items():
    if not 0.0 < value < 1.0:
      raise ValueError(f"{name} must be in (0, 1), got {value!r}")
  if sum(fractions.values()) >= 1.0:
    raise ValueError(f"{' + '.join(fractions)} must be < 1")


def _three_splits(x, y, perm, n_first: int, n_second: int) -> tuple[np.ndarray, ...]:
  """``x, y`` of ``perm[:n_first]``, ``perm[n_first:n_first + n_second]`` and the rest."""
  parts = perm[:n_first], perm[n_first : n_first + n_second], perm[n_first + n_second :]
  return tuple(a for part in parts for a in (x[part], y[part]))


def load_mnist1d(
  *,
  num_samples: int = 5000,
  val_fraction: float = 0.1,
  seed: int = 42,
  cache: str | os.PathLike | None = None,
) -> Dataset:
  """MNIST-1D (Greydanus, 2020), generated by ``mnist1d.data.make_dataset`` with ``num_samples`` and ``seed``
  (the dataset's identity, not the training seed) and cached as ``.npz`` in ``cache`` (default
  :func:`cache_dir`): 80 % train / 20 % test as in the package, then ``val_fraction`` of the training part held
  out for validation. The default is the standard MNIST-1D: 3600 train / 400 validation / 1000 test sequences
  of length 40."""
  if not isinstance(num_samples, int) or num_samples < 10:
    raise ValueError(f"num_samples must be an int >= 10, got {num_samples!r}")
  _check_fractions(val_fraction=val_fraction)
  directory = Path(cache) if cache is not None else cache_dir()
  key = hashlib.sha1(json.dumps([num_samples, seed]).encode()).hexdigest()[:12]
  path = directory / f"mnist1d_{num_samples}_{seed}_{key}.npz"
  if not path.exists():
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed = num_samples, seed
    data = make_dataset(args)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")  # one per process: parallel test workers
    np.savez_compressed(tmp, **{k: data[k] for k in ("x", "y", "x_test", "y_test")})
    os.replace(tmp, path)
  with np.load(path) as f:
    x, y, x_test, y_test = f["x"].astype(np.float32), f["y"].astype(np.int32), f["x_test"], f["y_test"]
  perm = np.random.default_rng(_SPLIT_SEED).permutation(len(x))
  n_val = max(1, round(val_fraction * len(x)))
  x_val, y_val, x_train, y_train, _, _ = _three_splits(x, y, perm, n_val, len(x))
  test = np.asarray(x_test, np.float32), np.asarray(y_test, np.int32)
  return Dataset("mnist1d", x_train, y_train, x_val, y_val, *test, num_classes=10)


def load_digits(*, val_fraction: float = 0.15, test_fraction: float = 0.2) -> Dataset:
  """scikit-learn's 8x8 digits (1797 images), scaled to [0, 1], shape ``(8, 8, 1)``; fixed split:
  ``test_fraction`` for test, ``val_fraction`` (of the total) for validation."""
  from sklearn.datasets import load_digits as _sk_load_digits

  _check_fractions(val_fraction=val_fraction, test_fraction=test_fraction)
  bunch = _sk_load_digits()
  x, y = (bunch.images / 16.0).astype(np.float32)[..., None], bunch.target.astype(np.int32)
  perm = np.random.default_rng(_SPLIT_SEED).permutation(len(x))
  x_test, y_test, x_val, y_val, x_train, y_train = _three_splits(
    x, y, perm, round(test_fraction * len(x)), round(val_fraction * len(x))
  )
  return Dataset("digits", x_train, y_train, x_val, y_val, x_test, y_test, 10)


MODULAR_OPS = {"add": 0, "sub": 1}  # operator token = p + index; the "=" token is p + 2


def modular_tokens(p: int, operation: str = "add") -> tuple[np.ndarray, np.ndarray]:
  """All ``p * p`` examples of ``a op b mod p`` in row-major ``(a, b)`` order.

  Returns ``x`` of shape ``(p * p, 4)``: int32 tokens ``[a, p + op_index, b, p + 2]`` (numbers are their own
  tokens, ``+`` is ``p``, ``-`` is ``p + 1``, ``=`` is ``p + 2``; vocabulary ``p + 3``), and labels ``y``:
  ``(a + b) mod p`` or ``(a - b) mod p``.
  """
  if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or p < 2:
    raise ValueError(f"p must be an int >= 2, got {p!r}")
  if operation not in MODULAR_OPS:
    raise ValueError(f"operation must be one of {tuple(MODULAR_OPS)}, got {operation!r}")
  a, b = (g.ravel() for g in np.meshgrid(np.arange(p), np.arange(p), indexing="ij"))
  x = np.stack([a, np.full_like(a, p + MODULAR_OPS[operation]), b, np.full_like(a, p + 2)], axis=1)
  y = (a + b) % p if operation == "add" else (a - b) % p
  return x.astype(np.int32), y.astype(np.int32)


def load_modular(
  *,
  p: int = 31,
  operation: str = "add",
  train_fraction: float = 0.5,
  val_fraction: float = 0.25,
  seed: int = 0,
) -> Dataset:
  """Modular arithmetic ``a op b mod p`` (Power et al., 2022, "Grokking"), all ``p * p`` pairs as
  :func:`modular_tokens`; ``num_classes`` is ``p``.

  A permutation of the pairs drawn from ``(seed, p)`` (the split's identity, independent of the training seed and
  of ``operation``: ``add`` and ``sub`` share their splits' pairs) gives ``train_fraction`` of them for training,
  the next ``val_fraction`` for validation and the rest for test.
  """
  _check_fractions(train_fraction=train_fraction, val_fraction=val_fraction)
  x, y = modular_tokens(p, operation)
  perm = np.random.default_rng([seed, p]).permutation(len(x))
  n_train, n_val = round(train_fraction * len(x)), round(val_fraction * len(x))
  if min(n_train, n_val, len(x) - n_train - n_val) < 1:
    raise ValueError(f"p = {p} is too small for these fractions (an empty split)")
  name = "modular" if operation == "add" else f"modular_{operation}"
  return Dataset(name, *_three_splits(x, y, perm, n_train, n_val), num_classes=p)


_CIFAR_MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32)
_CIFAR_STD = np.array([0.2470, 0.2435, 0.2616], np.float32)


def load_cifar(
  name: str = "cifar10",
  *,
  data_dir: str | os.PathLike | None = None,
  val_fraction: float = 0.1,
  download: bool = False,
) -> Dataset:
  """CIFAR-10/100 through ``tensorflow_datasets`` (optional dependency), for data already under ``data_dir``
  (``download=True`` lets TFDS fetch it). Images are scaled to [0, 1] and standardised per channel; validation is
  the last ``val_fraction`` of TFDS's ``train`` split (``train[90%:]`` for the default)."""
  if name not in ("cifar10", "cifar100"):
    raise ValueError(f"name must be 'cifar10' or 'cifar100', got {name!r}")
  _check_fractions(val_fraction=val_fraction)
  try:
    import tensorflow_datasets as tfds
  except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
      f"{name} needs tensorflow-datasets: pip install 'ham_optax[cifar]' (and the data prepared under data_dir)"
    ) from e
  pct = round(100 * (1.0 - val_fraction))
  arrays, data_dir = [], None if data_dir is None else str(data_dir)
  for split in (f"train[:{pct}%]", f"train[{pct}%:]", "test"):
    ds = tfds.load(name, split=split, batch_size=-1, as_supervised=True, data_dir=data_dir, download=download)
    images, labels = tfds.as_numpy(ds)
    arrays += [
      (np.asarray(images, np.float32) / 255.0 - _CIFAR_MEAN) / _CIFAR_STD,
      np.asarray(labels, np.int32),
    ]
  return Dataset(name, *arrays, 10 if name == "cifar10" else 100)


def make_csbm(
  num_nodes: int = 1000,
  num_classes: int = 3,
  num_features: int = 32,
  *,
  signal: float = 1.0,
  avg_degree: float = 10.0,
  homophily: float = 0.5,
  seed: int = 0,
) -> Graph:
  """A contextual stochastic block model (Deshpande et al., NeurIPS 2018), seeded and offline.

  Labels are balanced (``y_i = perm(i) mod num_classes``); features ``x_i = signal * mu_{y_i} + z_i`` with
  random unit class means ``mu_c`` and ``z_i ~ N(0, I)``. Exactly ``round(num_nodes * avg_degree / 2)``
  distinct undirected edges, no self-loops: each picks a node ``i`` uniformly and, with probability
  ``homophily``, a partner uniformly from ``i``'s class, else from the other classes (duplicates are redrawn),
  so the edge homophily is ``homophily`` in expectation, with std ``sqrt(h (1 - h) / num_edges)``.

  Args:
    num_nodes: number of nodes (>= 2 * num_classes).
    num_classes: number of classes (>= 2).
    num_features: feature dimension (>= 1).
    signal: distance of the class means from the origin in units of the noise std (>= 0).
    avg_degree: mean number of neighbours (> 0).
    homophily: edge homophily ``h`` in ``[0, 1]``.
    seed: the generator's seed; the same arguments always give the same graph.
  """
  if not isinstance(num_classes, int) or num_classes < 2:
    raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
  if not isinstance(num_nodes, int) or num_nodes < 2 * num_classes:
    raise ValueError(f"num_nodes must be an int >= 2 * num_classes, got {num_nodes!r}")
  if not isinstance(num_features, int) or num_features < 1:
    raise ValueError(f"num_features must be an int >= 1, got {num_features!r}")
  if not signal >= 0:
    raise ValueError(f"signal must be >= 0, got {signal!r}")
  if not 0.0 <= homophily <= 1.0:
    raise ValueError(f"homophily must be in [0, 1], got {homophily!r}")
  num_edges = round(num_nodes * avg_degree / 2)
  if not avg_degree > 0 or num_edges < 1:
    raise ValueError(f"avg_degree must be > 0 and give at least one edge, got {avg_degree!r}")
  if num_edges > num_nodes * (num_nodes - 1) / (4 * num_classes):  # distinct pairs stay plentiful
    raise ValueError(f"avg_degree={avg_degree} is too dense for {num_nodes} nodes and {num_classes} classes")
  rng = np.random.default_rng(seed)
  y = (rng.permutation(num_nodes) % num_classes).astype(np.int32)
  mu = rng.normal(size=(num_classes, num_features))
  mu /= np.linalg.norm(mu, axis=1, keepdims=True)
  x = (signal * mu[y] + rng.normal(size=(num_nodes, num_features))).astype(np.float32)
  # Nodes sorted by class: a node's own class is the block [start, start + count) of `order`.
  order = np.argsort(y, kind="stable")
  count_c = np.bincount(y, minlength=num_classes)
  start, count = np.concatenate([[0], np.cumsum(count_c)[:-1]])[y], count_c[y]
  keys = np.zeros(0, np.int64)
  while len(keys) < num_edges:
    k = 2 * (num_edges - len(keys)) + 16
    src = rng.integers(num_nodes, size=k)
    same = rng.random(k) < homophily
    r_same = start[src] + (rng.random(k) * count[src]).astype(np.int64)
    r_other = (rng.random(k) * (num_nodes - count[src])).astype(np.int64)
    r_other = np.where(r_other < start[src], r_other, r_other + count[src])  # skip the own class's block
    dst = order[np.where(same, r_same, r_other)]
    ok = src != dst
    lo, hi = np.minimum(src, dst)[ok], np.maximum(src, dst)[ok]
    keys = np.concatenate([keys, lo.astype(np.int64) * num_nodes + hi])
    _, first = np.unique(keys, return_index=True)
    keys = keys[np.sort(first)][:num_edges]  # first occurrences, in the order drawn
  lo, hi = (keys // num_nodes).astype(np.int32), (keys % num_nodes).astype(np.int32)
  return Graph(
    x, y, senders=np.concatenate([lo, hi]), receivers=np.concatenate([hi, lo]), num_classes=num_classes
  )


def load_csbm(*, train_fraction: float = 0.3, val_fraction: float = 0.2, **csbm_kwargs) -> Dataset:
  """Node classification on :func:`make_csbm` (``csbm_kwargs``) with disjoint random node splits, a permutation
  seeded by the graph's ``seed``: ``train_fraction`` of the nodes for training, ``val_fraction`` for validation,
  the rest for testing. The examples are node indices (``input_shape`` is ``()``); the graph is
  ``dataset.graph``."""
  _check_fractions(train_fraction=train_fraction, val_fraction=val_fraction)
  graph = make_csbm(**csbm_kwargs)
  n = graph.num_nodes
  perm = np.random.default_rng([csbm_kwargs.get("seed", 0), 1]).permutation(n).astype(np.int32)
  n_train, n_val = round(train_fraction * n), round(val_fraction * n)
  train, val, test = perm[:n_train], perm[n_train : n_train + n_val], perm[n_train + n_val :]
  y = graph.y
  return Dataset("csbm", train, y[train], val, y[val], test, y[test], graph.num_classes, graph=graph)


def load_dataset(name: str, **kwargs) -> Dataset:
  """Loads ``name`` in :data:`DATASETS` (keyword arguments go to the specific loader)."""
  if name in ("cifar10", "cifar100"):
    return load_cifar(name, **kwargs)
  if name in ("modular", "modular_sub"):
    return load_modular(operation="add" if name == "modular" else "sub", **kwargs)
  loaders = {"mnist1d": load_mnist1d, "digits": load_digits, "csbm": load_csbm}
  if name not in loaders:
    raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")
  return loaders[name](**kwargs)
