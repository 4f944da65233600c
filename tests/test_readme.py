"""The Python blocks of the README and the docs' Markdown pages run as written.

Multi-device blocks run on 8 simulated CPU devices. The docs pages are ``docs/*.md`` and ``docs/guides/*.md``
(generated pages under ``docs/_build``, ``docs/api`` and ``docs/notebooks`` are not sources).
"""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "docs" / "guides").glob("*.md"))]
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
ALL_BLOCKS = [
  (page, i, code)
  for page in PAGES
  for i, code in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S))
]


@pytest.mark.parametrize(
  "page,code", [(p, c) for p, _, c in ALL_BLOCKS], ids=[f"{p.stem}-block{i}" for p, i, _ in ALL_BLOCKS]
)
def test_python_block_runs(page, code):
  if "make_mesh" in code:
    # The device count is fixed when jax starts, so a multi-device block runs in a fresh interpreter.
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    check = "\nassert len(jax.devices()) == 8\nprint('ok')\n"
    out = subprocess.run(
      [sys.executable, "-c", code + check], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
  else:
    exec(compile(code, str(page), "exec"), {})


def test_readme_has_python_blocks():
  assert len(BLOCKS) >= 2
