"""The notebooks: jupytext percent sources paired with committed .ipynb files, Colab-ready, runnable at small size.

``notebooks/NN_name.py`` (jupytext percent format without a header, paired by ``notebooks/jupytext.toml``, linted
by ruff) is the source; ``notebooks/NN_name.ipynb`` carries the same cells without outputs (the documentation
build executes the notebooks, so no output of an earlier state of the code is ever published). Edit the ``.py``
and run ``jupytext --sync notebooks/NN_name.py``.
The execution test runs each notebook in a fresh ``python3`` kernel with ``HAM_OPTAX_NOTEBOOK_SMALL=1`` (the
small-size switch); any cell error (including a failed ``assert`` inside a notebook) fails it.
"""

from __future__ import annotations

import os
import pathlib
import re

import jupytext
import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
SOURCES = sorted(NB_DIR.glob("[0-9][0-9]_*.py"))
NOTEBOOKS = [p.with_suffix(".ipynb") for p in SOURCES]
CELL_TIMEOUT_S = 600


def _code(nb) -> list[str]:
  return [c.source for c in nb.cells if c.cell_type == "code"]


def test_every_notebook_has_its_source():
  assert len(SOURCES) >= 2
  assert {p.stem for p in NB_DIR.glob("[0-9][0-9]_*.ipynb")} == {p.stem for p in SOURCES}, (
    "every notebooks/NN_name.py needs its NN_name.ipynb and vice versa: `jupytext --sync notebooks/NN_name.py`"
  )


@pytest.mark.parametrize("source", SOURCES, ids=[p.stem for p in SOURCES])
def test_notebook_matches_its_source(source):
  """The committed cells are exactly the percent source's (outputs aside), and the pair is declared."""
  fresh = jupytext.read(source)
  committed = nbformat.read(source.with_suffix(".ipynb"), as_version=4)
  assert [(c.cell_type, c.source) for c in committed.cells] == [
    (c.cell_type, c.source) for c in fresh.cells
  ], f"{source.name} and its .ipynb differ: `jupytext --sync {source.relative_to(ROOT)}`"
  assert committed.metadata.get("jupytext", {}).get("formats") == "ipynb,py:percent"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_colab_ready(path):
  nb = nbformat.read(path, as_version=4)
  code = _code(nb)
  (install,) = [cell for cell in code[:2] if "pip" in cell]  # the setup cell (sizes and install) comes first
  assert "--no-deps" in install and 'f"git+{REPO_URL}"' in install
  lines = [line for cell in code for line in cell.splitlines()]
  if any("ham_optax_examples" in line and "git+" not in line and "find_spec" not in line for line in lines):
    # The examples are a project of their own in the repository's `examples/` directory: installed next to it.
    assert 'find_spec("ham_optax_examples") is None' in install
    assert 'f"ham_optax_examples @ git+{REPO_URL}#subdirectory=examples"' in install
  else:
    assert 'find_spec("ham_optax") is None' in install
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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(path):
  """Outputs are made by executing the current code (the docs build does), never committed: none can go stale."""
  nb = nbformat.read(path, as_version=4)
  stale = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
  assert not stale, (
    f"{path.name}: code cells {stale} carry outputs; commit the notebook without them "
    f"(`jupytext --to ipynb {path.with_suffix('.py').relative_to(ROOT)}` writes it from its source)"
  )


@pytest.mark.slow
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
