"""Smoke runs of the mirror-flow and graphon study scripts (slow: each compiles a few dozen small programs)."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sys

import pytest

_BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
  spec = importlib.util.spec_from_file_location(f"{name}_benchmark", _BENCH / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module
  spec.loader.exec_module(module)
  return module


@pytest.mark.slow
@pytest.mark.parametrize(
  "name,figures",
  [
    ("mirror_flows", ["escape_vs_lr.png", "loss_curves.png", "balance.png"]),
    ("graphon", ["graphons.png", "distances.png", "ntk_vs_speed.png"]),
  ],
)
def test_fast_run_writes_results(name, figures, tmp_path):
  _load(name).main(["--fast", "--out", str(tmp_path)])
  result = json.loads((tmp_path / "results.json").read_text())
  assert result["command"].startswith(f"python benchmarks/{name}.py --fast")
  for fig in figures:
    assert (tmp_path / fig).stat().st_size > 0
