"""One short epoch of the training example, end to end (as Flax's examples test themselves)."""

import numpy as np

from ham_optax_examples import data as data_lib
from ham_optax_examples import train
from ham_optax_examples.configs import default


def test_train_and_evaluate_one_short_epoch():
  dataset = data_lib.load_digits()
  config = default.get_config(
    dataset="digits", width=16, epochs=1, num_train=256, batch_size=32, progress=False
  )
  results = train.train_and_evaluate(config.replace(ham=True, alpha=1.0), dataset)
  assert results["completed"] and not results["diverged"]
  (record,) = results["history"]
  assert results["test_acc"] > 1.5 / dataset.num_classes  # above chance after one epoch of 8 steps
  assert results["config"]["learning_rate"] == 0.1 and results["alpha_source"] == "given"
  d = record["diagnostics"]  # HAM's stability diagnostics, logged every epoch
  assert all(np.isfinite(v) for v in d.values()) and len(d) == 5
  assert 0.0 < d["ham_exponent_rms"] <= d["ham_exponent_max"] <= 5.0
  assert 1.0 < d["ham_inverse_metric_mean"] <= d["ham_inverse_metric_max"]
