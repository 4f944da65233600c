"""Offline datasets for the HAM training examples.

Everything here works without network access:

* ``mnist1d``: the 1-D digits of Greydanus (2020), generated procedurally with
  ``mnist1d.data.make_dataset(get_dataset_args())`` (never ``get_dataset``, which downloads)
  and cached as ``.npz`` under ``$HAM_OPTAX_CACHE`` (default ``~/.cache/ham_optax``).
* ``digits``: scikit-learn's bundled 8x8 handwritten digits.
* ``cifar10`` / ``cifar100``: optional ``tensorflow_datasets`` path for users who already
  have the data on disk (``data_dir``); nothing is downloaded unless ``download=True``.

Every loader returns a :class:`Dataset` with fixed train / validation / test splits: the
validation split is carved out of the training data with a fixed permutation, so
hyperparameters can be chosen on validation and the test split is only used for reporting.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
  "Dataset",
  "DATASETS",
  "batches",
  "cache_dir",
  "load_cifar",
  "load_dataset",
  "load_digits",
  "load_mnist1d",
]

DATASETS = ("mnist1d", "digits", "cifar10", "cifar100")
_SPLIT_SEED = 0  # fixed: the splits never depend on the training seed


@dataclass(frozen=True)
class Dataset:
  """Train / validation / test arrays (features float32, labels int32)."""

  name: str
  x_train: np.ndarray
  y_train: np.ndarray
  x_val: np.ndarray
  y_val: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int

  @property
  def input_shape(self) -> tuple[int, ...]:
    """Shape of one example (without the batch dimension)."""
    return tuple(self.x_train.shape[1:])

  def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Returns ``(x, y)`` for ``name`` in ``{"train", "val", "test"}``."""
    if name not in ("train", "val", "test"):
      raise ValueError(f"split must be 'train', 'val' or 'test', got {name!r}")
    return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")


def cache_dir() -> Path:
  """The cache directory: ``$HAM_OPTAX_CACHE`` or ``~/.cache/ham_optax``."""
  return Path(os.environ.get("HAM_OPTAX_CACHE", Path.home() / ".cache" / "ham_optax"))


def _check_fraction(name: str, value: float) -> None:
  if not 0.0 < value < 1.0:
    raise ValueError(f"{name} must be in (0, 1), got {value!r}")


def _carve_validation(
  x: np.ndarray, y: np.ndarray, val_fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Splits ``(x, y)`` into train and validation with a fixed permutation."""
  _check_fraction("val_fraction", val_fraction)
  perm = np.random.default_rng(_SPLIT_SEED).permutation(len(x))
  n_val = max(1, round(val_fraction * len(x)))
  val, train = perm[:n_val], perm[n_val:]
  return x[train], y[train], x[val], y[val]


def load_mnist1d(
  *,
  num_samples: int = 5000,
  val_fraction: float = 0.1,
  seed: int = 42,
  cache: str | os.PathLike | None = None,
) -> Dataset:
  """MNIST-1D generated procedurally (Greydanus, 2020) and cached as ``.npz``.

  Uses ``mnist1d.data.make_dataset(get_dataset_args())`` with ``num_samples`` and ``seed``
  overridden: 80 % train / 20 % test as in the package, then ``val_fraction`` of the training
  part held out for validation. The default (5000 samples, seed 42) is the standard MNIST-1D
  dataset: 3600 train / 400 validation / 1000 test sequences of length 40.

  Args:
    num_samples: total number of generated sequences (train + test).
    val_fraction: fraction of the training sequences held out for validation.
    seed: the generator's seed (the dataset's identity, not the training seed).
    cache: cache directory; defaults to :func:`cache_dir`.
  """
  if not isinstance(num_samples, int) or num_samples < 10:
    raise ValueError(f"num_samples must be an int >= 10, got {num_samples!r}")
  _check_fraction("val_fraction", val_fraction)
  directory = Path(cache) if cache is not None else cache_dir()
  key = hashlib.sha1(json.dumps([num_samples, seed]).encode()).hexdigest()[:12]
  path = directory / f"mnist1d_{num_samples}_{seed}_{key}.npz"
  if path.exists():
    with np.load(path) as f:
      x, y, x_test, y_test = f["x"], f["y"], f["x_test"], f["y_test"]
  else:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = num_samples
    args.seed = seed
    data = make_dataset(args)
    x, y, x_test, y_test = data["x"], data["y"], data["x_test"], data["y_test"]
    directory.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, x=x, y=y, x_test=x_test, y_test=y_test)
    os.replace(tmp, path)
  x_tr, y_tr, x_val, y_val = _carve_validation(x, y, val_fraction)
  return Dataset(
    "mnist1d",
    x_tr.astype(np.float32),
    y_tr.astype(np.int32),
    x_val.astype(np.float32),
    y_val.astype(np.int32),
    np.asarray(x_test, np.float32),
    np.asarray(y_test, np.int32),
    num_classes=10,
  )


def load_digits(*, val_fraction: float = 0.15, test_fraction: float = 0.2) -> Dataset:
  """scikit-learn's 8x8 digits (1797 images), scaled to [0, 1], shape ``(8, 8, 1)``.

  Fixed split: ``test_fraction`` for test, ``val_fraction`` (of the total) for validation.
  """
  from sklearn.datasets import load_digits as _sk_load_digits

  _check_fraction("val_fraction", val_fraction)
  _check_fraction("test_fraction", test_fraction)
  if val_fraction + test_fraction >= 1.0:
    raise ValueError("val_fraction + test_fraction must be < 1")
  bunch = _sk_load_digits()
  x = (bunch.images / 16.0).astype(np.float32)[..., None]
  y = bunch.target.astype(np.int32)
  perm = np.random.default_rng(_SPLIT_SEED).permutation(len(x))
  n_test = round(test_fraction * len(x))
  n_val = round(val_fraction * len(x))
  test, val, train = perm[:n_test], perm[n_test : n_test + n_val], perm[n_test + n_val :]
  return Dataset("digits", x[train], y[train], x[val], y[val], x[test], y[test], 10)


_CIFAR_MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32)
_CIFAR_STD = np.array([0.2470, 0.2435, 0.2616], np.float32)


def load_cifar(
  name: str = "cifar10",
  *,
  data_dir: str | os.PathLike | None = None,
  val_fraction: float = 0.1,
  download: bool = False,
) -> Dataset:
  """CIFAR-10/100 through ``tensorflow_datasets`` (optional dependency).

  For users who already have the TFDS data under ``data_dir``; set ``download=True`` to let
  TFDS fetch it. Images are scaled to [0, 1] and standardised per channel; the validation
  split is the last ``val_fraction`` of TFDS's ``train`` split (``train[:90%]`` /
  ``train[90%:]`` for the default).
  """
  if name not in ("cifar10", "cifar100"):
    raise ValueError(f"name must be 'cifar10' or 'cifar100', got {name!r}")
  _check_fraction("val_fraction", val_fraction)
  try:
    import tensorflow_datasets as tfds
  except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
      f"{name} needs tensorflow-datasets: pip install 'ham_optax[cifar]' (and the data prepared under data_dir)"
    ) from e
  pct = round(100 * (1.0 - val_fraction))
  splits = {"train": f"train[:{pct}%]", "val": f"train[{pct}%:]", "test": "test"}
  arrays = {}
  for key, split in splits.items():
    ds = tfds.load(
      name,
      split=split,
      batch_size=-1,
      as_supervised=True,
      data_dir=None if data_dir is None else str(data_dir),
      download=download,
    )
    images, labels = tfds.as_numpy(ds)
    x = (np.asarray(images, np.float32) / 255.0 - _CIFAR_MEAN) / _CIFAR_STD
    arrays[key] = (x, np.asarray(labels, np.int32))
  num_classes = 10 if name == "cifar10" else 100
  return Dataset(name, *arrays["train"], *arrays["val"], *arrays["test"], num_classes)


def load_dataset(name: str, **kwargs) -> Dataset:
  """Loads ``name`` in :data:`DATASETS` (keyword arguments go to the specific loader)."""
  if name == "mnist1d":
    return load_mnist1d(**kwargs)
  if name == "digits":
    return load_digits(**kwargs)
  if name in ("cifar10", "cifar100"):
    return load_cifar(name, **kwargs)
  raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")


def batches(
  x: np.ndarray, y: np.ndarray, batch_size: int, rng: np.random.Generator | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Yields minibatches; shuffled with ``rng`` when given. The last partial batch is dropped
  when shuffling (fixed shapes, one compilation) and kept otherwise (evaluation)."""
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  n = len(x)
  if rng is None:
    for i in range(0, n, batch_size):
      yield x[i : i + batch_size], y[i : i + batch_size]
    return
  batch_size = min(batch_size, n)
  perm = rng.permutation(n)
  for i in range(0, n - batch_size + 1, batch_size):
    idx = perm[i : i + batch_size]
    yield x[idx], y[idx]
