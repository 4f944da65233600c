"""Release metadata: one version source, the license shipped, floors that CI installs equal to the declared ones;
the library's functions short enough to read at once."""

from __future__ import annotations

import ast
import importlib.metadata
import pathlib
import re

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

import ham_optax

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
  tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
  return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _pins(name: str) -> dict[str, str]:
  """``package==version`` lines of a constraints file under ``.ci/``."""
  pins = {}
  for line in (ROOT / ".ci" / name).read_text().splitlines():
    line = line.split("#", 1)[0].strip()
    if line:
      req = Requirement(line)
      (spec,) = req.specifier
      assert spec.operator == "==", f"{name}: {line!r} is not an exact pin"
      pins[req.name] = spec.version
  return pins


def _lower_bounds(requirements: list[str]) -> dict[str, str]:
  out = {}
  for line in requirements:
    req = Requirement(line)
    lows = [s.version for s in req.specifier if s.operator == ">="]
    if lows:
      out[req.name] = lows[0]
  return out


def test_installed_version_is_the_package_version():
  Version(ham_optax.__version__)  # a valid PEP 440 version
  assert importlib.metadata.version("ham_optax") == ham_optax.__version__


def test_version_is_written_once():
  project = _pyproject()
  assert "version" not in project["project"]
  assert "version" in project["project"]["dynamic"]
  assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "ham_optax.__version__"}
  assert len(re.findall(r"^__version__ = ", (ROOT / "ham_optax" / "__init__.py").read_text(), re.M)) == 1


def test_license_is_declared_and_shipped():
  project = _pyproject()
  assert project["project"]["license"] == "Apache-2.0"
  assert project["project"]["license-files"] == ["LICENSE"]
  text = (ROOT / "LICENSE").read_text()
  assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
  assert "END OF TERMS AND CONDITIONS" in text  # the full text, not a stub
  # SPDX `license` and `license-files` need setuptools >= 77 (PEP 639).
  (setuptools,) = [Requirement(r) for r in project["build-system"]["requires"] if r.startswith("setuptools")]
  assert setuptools.specifier.contains("77") and not setuptools.specifier.contains("76.1")


def test_library_requires_no_flax():
  required = [Requirement(r) for r in importlib.metadata.requires("ham_optax") or []]
  core = {r.name for r in required if r.marker is None}
  assert {"jax", "optax", "chex", "numpy"} <= core
  assert "flax" not in core
  assert any(
    r.name == "flax" and r.marker is not None and r.marker.evaluate({"extra": "flax"}) for r in required
  )


def test_ci_floors_equal_the_declared_lower_bounds():
  project = _pyproject()["project"]
  assert set(_lower_bounds(project["dependencies"])) == {"jax", "jaxlib", "optax", "chex", "numpy"}
  for declared, floors in (
    (project["dependencies"], "floors.txt"),
    (project["optional-dependencies"]["flax"], "floors-flax.txt"),
  ):
    lows, pins = _lower_bounds(declared), _pins(floors)
    assert lows and set(lows) <= set(pins), (
      f".ci/{floors} pins {sorted(pins)}; pyproject declares {sorted(lows)}"
    )
    for name, low in lows.items():
      assert Version(pins[name]) == Version(low), f"pyproject: {name}>={low}; .ci/{floors}: {pins[name]}"


MAX_FUNCTION_LINES = 80


def test_no_function_of_the_library_is_longer_than_80_lines():
  """From its ``def`` line to its last line, docstring included: a longer one is split into helpers."""
  long = []
  for path in sorted((ROOT / "ham_optax").rglob("*.py")):
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        lines = node.end_lineno - node.lineno + 1
        if lines > MAX_FUNCTION_LINES:
          long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
  assert not long, "functions over 80 lines: " + ", ".join(long)
