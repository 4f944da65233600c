"""The notebooks run top to bottom (small size) and match their generator, `notebooks/_build.py`.

Each notebook is executed in a fresh `python3` kernel with ``HAM_OPTAX_NOTEBOOK_SMALL=1`` (the small-size switch);
any cell error (including a failed ``assert`` inside a notebook) fails the test.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import re

import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))
CELL_TIMEOUT_S = 600


def _load_builder():
  spec = importlib.util.spec_from_file_location("_nb_build", NB_DIR / "_build.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _code(nb) -> list[str]:
  return [c.source for c in nb.cells if c.cell_type == "code"]


def test_every_generated_notebook_is_committed():
  built = set(_load_builder().NOTEBOOKS)
  assert built == {p.stem for p in NOTEBOOKS}, (
    "run `python notebooks/_build.py --execute` and commit the result"
  )
  assert len(built) >= 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_matches_generator(path):
  """The committed cells are exactly the generator's (outputs aside), so edits go through `_build.py`."""
  committed = nbformat.read(path, as_version=4)
  fresh = _load_builder().build(path.stem)
  assert [(c.cell_type, c.source) for c in committed.cells] == [(c.cell_type, c.source) for c in fresh.cells]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_colab_ready(path):
  nb = nbformat.read(path, as_version=4)
  code = _code(nb)
  install = code[0]
  assert "--no-deps" in install and 'find_spec("ham_optax") is None' in install
  # Never reinstall or upgrade Colab's own jax/jaxlib (TPU/GPU builds).
  for cell in code:
    for line in cell.splitlines():
      if "pip" in line and "install" in line:
        assert not re.search(r"\bjax(lib)?\b", line), line
  assert 'SMALL = os.environ.get("HAM_OPTAX_NOTEBOOK_SMALL") == "1"' in "\n".join(code[:3])
  assert (
    f"colab.research.google.com/github/ham-optax/ham_optax/blob/main/notebooks/{path.name}"
    in nb.cells[0].source
  )
  assert path.stat().st_size < 1_000_000, "keep committed notebooks under 1 MB"
  # Committed with outputs from a real run, so they read well on GitHub.
  assert all(c.get("outputs") for c in nb.cells if c.cell_type == "code" and "plt.show()" in c.source)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_small(path, monkeypatch, tmp_path):
  nbclient = pytest.importorskip("nbclient")
  monkeypatch.setenv("HAM_OPTAX_NOTEBOOK_SMALL", "1")
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  nb = nbformat.read(path, as_version=4)
  client = nbclient.NotebookClient(
    nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
  )
  client.execute()  # raises CellExecutionError on the first failing cell
  streams = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
  assert "SMALL=True" in streams
