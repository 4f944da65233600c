"""The training command's data-parallel layout in one process: shards, batch order, sharded evaluation, and the
multi-process options' usage errors. The runs across real processes are in ``test_multihost.py`` (slow)."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import numpy as np
import pytest
from flax import nnx
from ham_optax_examples import data as data_lib
from ham_optax_examples import models
from ham_optax_examples import train as train_lib
from ham_optax_examples.configs.default import Config
from ham_optax_examples.distributed import DataLayout, process_shards
from ham_optax_examples.main import Train, main


@pytest.fixture(scope="module")
def tiny_mnist1d(tmp_path_factory):
  return data_lib.load_mnist1d(num_samples=300, cache=tmp_path_factory.mktemp("cache"))


def _toy_dataset(n_train: int = 10, n_val: int = 7, n_test: int = 5) -> data_lib.Dataset:
  def split(n, offset):
    return np.arange(offset, offset + n, dtype=np.float32)[:, None], np.arange(n, dtype=np.int32) % 3

  return data_lib.Dataset("toy", *split(n_train, 0), *split(n_val, 100), *split(n_test, 200), num_classes=3)


def test_process_shards_are_contiguous_equal_blocks():
  assert [process_shards(4, p, 2) for p in range(2)] == [range(0, 2), range(2, 4)]
  assert [process_shards(3, p, 3) for p in range(3)] == [range(0, 1), range(1, 2), range(2, 3)]
  assert process_shards(5, 0, 1) == range(0, 5)


@pytest.mark.parametrize(
  ("shards", "index", "count", "match"),
  [(3, 0, 2, "not a multiple of the number of processes"), (0, 0, 1, ">= 1"), (True, 0, 1, ">= 1"),
   (2, 2, 2, r"process_index must be in \[0, 2\)")],
)  # fmt: skip
def test_process_shards_reject_bad_layouts(shards, index, count, match):
  with pytest.raises(ValueError, match=match):
    process_shards(shards, index, count)


def test_dataset_shards_hold_every_evaluation_example_once_and_equal_training_blocks():
  ds = _toy_dataset()
  shards = [ds.shard(k, 3) for k in range(3)]
  assert [len(s.x_train) for s in shards] == [3, 3, 3]  # 10 // 3; the last example is left out
  np.testing.assert_array_equal(np.concatenate([s.x_train for s in shards]), ds.x_train[:9])
  for name in ("val", "test"):
    x = np.concatenate([s.split(name)[0] for s in shards])
    y = np.concatenate([s.split(name)[1] for s in shards])
    np.testing.assert_array_equal(x, ds.split(name)[0])
    np.testing.assert_array_equal(y, ds.split(name)[1])
  assert ds.shard(0, 1) is ds
  with pytest.raises(ValueError, match=r"shard index must be in \[0, 3\)"):
    ds.shard(3, 3)


def _float64_reference(model, x, y):
  model.eval()
  logits = np.asarray(model(x), np.float64)
  model.train()
  shifted = logits - logits.max(-1, keepdims=True)
  log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
  return -log_probs[np.arange(len(y)), y].mean(), np.mean(logits.argmax(-1) == y)


@pytest.mark.parametrize(("shards", "batch_size"), [(1, 1000), (1, 7), (3, 7), (4, 1000)])
def test_sharded_evaluation_counts_every_example_once(tiny_mnist1d, shards, batch_size):
  ds = tiny_mnist1d
  model = models.create_model("mlp", ds.input_shape, ds.num_classes, seed=0)
  blocks = [ds.shard(k, shards).split("test") for k in range(shards)]
  rows = -(-len(ds.x_test) // shards)
  got = train_lib._evaluate_blocks(model, blocks, rows, DataLayout(shards, range(shards), None), batch_size)
  loss, acc = _float64_reference(model, ds.x_test, ds.y_test)
  assert got["acc"] == pytest.approx(acc, abs=1e-12)
  assert got["loss"] == pytest.approx(loss, rel=1e-5)
  assert train_lib.evaluate(model, ds.x_test, ds.y_test, batch_size)["acc"] == pytest.approx(acc, abs=1e-12)


def _epoch_batches(
  config: Config, dataset: data_lib.Dataset, epoch: int = 0
) -> tuple[np.ndarray, np.ndarray]:
  """The global batches ``train_epoch`` feeds, recorded instead of trained on."""
  ts = train_lib.create_train_state(config, dataset)
  seen = {}

  def record(state, xs, ys):
    seen["xs"], seen["ys"] = np.asarray(xs), np.asarray(ys)
    return state, (np.zeros(len(xs)), np.zeros(len(xs)))

  ts.run_epoch = record
  train_lib.train_epoch(ts, config.seed, epoch)
  return seen["xs"], seen["ys"]


def test_one_shard_keeps_the_single_device_order(tiny_mnist1d):
  config = Config(model="mlp", epochs=1, batch_size=32, seed=3)
  xs, ys = _epoch_batches(config, tiny_mnist1d, epoch=2)
  n, steps = len(tiny_mnist1d.x_train), len(tiny_mnist1d.x_train) // 32
  perm = np.random.default_rng([3, 2]).permutation(n)[: steps * 32]
  np.testing.assert_array_equal(xs, tiny_mnist1d.x_train[perm].reshape(steps, 32, -1))
  np.testing.assert_array_equal(ys, tiny_mnist1d.y_train[perm].reshape(steps, 32))


def test_n_shards_take_the_same_rows_of_every_shard_block_after_block(tiny_mnist1d):
  config = Config(model="mlp", epochs=1, batch_size=30, seed=1, data_shards=3)
  xs, ys = _epoch_batches(config, tiny_mnist1d, epoch=1)
  block = len(tiny_mnist1d.x_train) // 3
  steps = block // 10
  order = np.random.default_rng([1, 1]).permutation(block)[: steps * 10].reshape(steps, 10)
  expected = np.concatenate(
    [tiny_mnist1d.x_train[k * block : (k + 1) * block][order] for k in range(3)], axis=1
  )
  assert xs.shape == (steps, 30, 40)
  np.testing.assert_array_equal(xs, expected)
  np.testing.assert_array_equal(ys[:, 10:20], tiny_mnist1d.y_train[block : 2 * block][order])


def test_a_process_keeps_only_its_shards(tiny_mnist1d):
  ts = train_lib.create_train_state(Config(model="mlp", epochs=1, batch_size=32, data_shards=4), tiny_mnist1d)
  assert len(ts.data) == 4 and ts.layout.local_shards == range(4)  # one process holds all four
  assert sum(len(d.x_val) for d in ts.data) == len(tiny_mnist1d.x_val)
  assert ts.eval_rows == {"val": -(-len(tiny_mnist1d.x_val) // 4), "test": -(-len(tiny_mnist1d.x_test) // 4)}
  assert isinstance(ts.model, nnx.Module)


def test_data_shards_must_split_the_batch():
  with pytest.raises(ValueError, match="batch_size 128 does not split evenly into 3 data shards"):
    Config(data_shards=3).validate()
  with pytest.raises(ValueError, match="multiple of 12"):
    DataLayout(12, range(12), None).check_batch(130)


@pytest.mark.parametrize(
  ("argv", "message"),
  [
    (["--data-shards", "3"], "batch_size 128 does not split evenly into 3 data shards"),
    (["--data-shards", "0"], "data_shards must be >= 1"),
    (["--coordinator", "localhost"], "--coordinator: the coordinator address must be HOST:PORT"),
    (["--coordinator", "127.0.0.1:0"], "with a port in 1-65535, got '127.0.0.1:0'"),
    (["--coordinator", "127.0.0.1:65536"], "with a port in 1-65535, got '127.0.0.1:65536'"),
    (["--coordinator", "127.0.0.1:1", "--num-processes", "0"], "--num-processes must be >= 1"),
    (
      ["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "2"],
      "--process-id must be in",
    ),
    (["--coordinator", "127.0.0.1:1", "--heartbeat-timeout", "0"], "--heartbeat-timeout must be >= 1"),
    (["--coordinator", "127.0.0.1:1", "--join-timeout", "-1"], "--join-timeout must be >= 1"),
  ],
)
def test_bad_multi_process_options_are_usage_errors(tmp_path, capsys, monkeypatch, argv, message):
  def no_data(*args, **kwargs):
    raise AssertionError("data was loaded before the options were checked")

  monkeypatch.setattr(data_lib, "load_dataset", no_data)
  with pytest.raises(SystemExit) as exit_info:
    main(["train", "--model", "mlp", "--out", str(tmp_path / "out"), *argv])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and message in err[0]


def test_a_taken_coordinator_port_is_one_line_from_process_0(tmp_path, capfd, monkeypatch):
  monkeypatch.setattr(data_lib, "load_dataset", lambda *a, **k: pytest.fail("loaded"))
  with socket.socket() as holder:
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    with pytest.raises(SystemExit) as exit_info:
      main(
        ["train", "--model", "mlp", "--out", str(tmp_path), "--coordinator", f"127.0.0.1:{port}"]
        + ["--num-processes", "2", "--process-id", "0"]
      )
  assert exit_info.value.code == 2
  err = capfd.readouterr().err.strip().splitlines()
  assert len(err) == 1 and f"the coordinator port {port} is already in use" in err[0], err


def test_the_multi_host_guide_shows_the_commands_the_tests_run():
  from tests.test_multihost import CLI_ARGS

  guide = (Path(__file__).resolve().parents[1] / "docs" / "guides" / "multi_host.md").read_text()
  commands = re.findall(r"ham-optax (train .*?)(?:&\n|\n```)", guide.replace("\\\n", " "), flags=re.S)
  assert len(commands) == 2
  for i, command in enumerate(commands):
    tokens = command.split()
    process = tokens[tokens.index("--process-id") + 1]
    assert process == str(i)
    for flag in ("--out", "--coordinator", "--num-processes", "--process-id"):
      at = tokens.index(flag)
      del tokens[at : at + 2]
    assert tokens == [t for t in CLI_ARGS if t != "--no-progress"]
  assert "heartbeat_timeout_seconds" in guide and "--heartbeat-timeout" in guide  # how a lost peer is bounded


@pytest.mark.parametrize(
  ("coordinator", "bind"),
  [
    ("127.0.0.1:12355", "127.0.0.1:12355"),
    ("localhost:12355", "localhost:12355"),
    ("[::1]:12355", "[::1]:12355"),
    ("10.0.0.1:12355", None),  # another host: JAX's default (every interface)
    ("node-0.cluster:12355", None),
    (None, None),
  ],
)
def test_a_loopback_coordinator_listens_on_loopback_only(monkeypatch, coordinator, bind):
  from ham_optax_examples.distributed import _loopback_bind_address

  monkeypatch.delenv("JAX_COORDINATOR_BIND_ADDRESS", raising=False)
  assert _loopback_bind_address(coordinator) == bind
  monkeypatch.setenv("JAX_COORDINATOR_BIND_ADDRESS", "0.0.0.0:12355")  # the user's choice wins
  assert _loopback_bind_address(coordinator) is None


SLURM_STEP = {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "node[01-02]", "SLURM_LOCALID": "0"}
LAUNCHER_VARIABLES = [
  *SLURM_STEP,
  "SLURM_NTASKS",
  "SLURM_PROCID",
  "OMPI_MCA_orte_hnp_uri",
  "OMPI_COMM_WORLD_SIZE",
  "OMPI_COMM_WORLD_RANK",
]


@pytest.mark.parametrize(
  ("environ", "expected"),
  [
    ({}, None),
    ({**SLURM_STEP, "SLURM_NTASKS": "4", "SLURM_PROCID": "3"}, (4, 3)),  # an srun step
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4", "SLURM_PROCID": "0"}, None),  # a batch script, not a step
    (
      {
        "OMPI_MCA_orte_hnp_uri": "1.0;tcp://10.0.0.1:1",
        "OMPI_COMM_WORLD_SIZE": "2",
        "OMPI_COMM_WORLD_RANK": "1",
      },
      (2, 1),
    ),
    ({**SLURM_STEP, "SLURM_NTASKS": "two", "SLURM_PROCID": "0"}, None),
  ],
)
def test_launched_processes_reads_what_srun_and_mpirun_set(monkeypatch, environ, expected):
  from ham_optax_examples.distributed import launched_processes
  from ham_optax_examples.main import _joins_processes

  for name in LAUNCHER_VARIABLES:
    monkeypatch.delenv(name, raising=False)
  for name, value in environ.items():
    monkeypatch.setenv(name, value)
  assert launched_processes() == expected
  monkeypatch.delenv("JAX_COORDINATOR_ADDRESS", raising=False)
  assert _joins_processes(Train()) == (expected is not None and expected[0] > 1)


def test_settings_every_process_must_share():
  from ham_optax_examples.main import _settings

  configs = [Config(model="mlp", seed=s, checkpoint_dir=f"/out{s}", progress=s == 0) for s in (0, 1)]
  settings = _settings(configs, Train(checkpoint=True))
  assert settings["--seed"] == [0, 1] and settings["--model"] == "mlp" and settings["number of runs"] == 2
  assert settings["--checkpoint"] is True and settings["--restart"] is False
  assert "--checkpoint-dir" not in settings and "--progress" not in settings  # may differ between processes
  assert (
    settings["--halt-after-epochs"] is None
  )  # must not: a process halting early would leave the others waiting
