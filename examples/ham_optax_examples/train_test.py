"""One short epoch of the training example, end to end (as Flax's examples test themselves)."""

import math

from ham_optax_examples import data as data_lib
from ham_optax_examples import main, train
from ham_optax_examples.configs import default


def test_train_and_evaluate_one_short_epoch():
  dataset = data_lib.load_digits()
  config = default.get_config(
    dataset="digits",
    model="mlp",
    width=16,
    epochs=1,
    num_train=256,
    batch_size=32,
    ham=True,
    alpha=1.0,
    progress=False,
  )
  results = train.train_and_evaluate(config, dataset)
  assert results["completed"] and not results["diverged"]
  assert len(results["history"]) == 1 and math.isfinite(results["history"][0]["train_loss"])
  assert results["test_acc"] > 1.5 / dataset.num_classes  # above chance after one epoch of 8 steps
  assert results["config"]["learning_rate"] == 0.1 and results["alpha_source"] == "given"


def test_main_writes_the_reports(tmp_path, capsys):
  argv = [
    "train",
    "--dataset",
    "digits",
    "--model",
    "mlp",
    "--sparsifier",
    "none",
    "--ham",
    "on",
    "--seeds",
    "1",
  ]
  argv += ["--epochs", "1", "--num-train", "256", "--width", "16", "--no-progress", "--out", str(tmp_path)]
  assert main.main(argv) == 0
  printed = capsys.readouterr().out
  assert "| model | method |" in printed and "| diverged |" in printed and "| mlp | dense+HAM |" in printed
  assert "(suggest_alpha)" in printed  # digits / mlp is not tuned: alpha auto
  for name in ("job.json", "results.json", "runs.csv", "summary.csv", "summary.md", "curves.png"):
    assert (tmp_path / name).stat().st_size > 0
