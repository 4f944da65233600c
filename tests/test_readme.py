"""The README's Python blocks run as written (multi-device blocks on 8 simulated CPU devices)."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_block_runs(code):
  if "make_mesh" in code:
    # The device count is fixed when jax starts, so a multi-device block runs in a fresh interpreter.
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    check = "\nassert len(jax.devices()) == 8\nprint('ok')\n"
    out = subprocess.run(
      [sys.executable, "-c", code + check], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
  else:
    exec(compile(code, str(README), "exec"), {})


def test_readme_has_python_blocks():
  assert len(BLOCKS) >= 2
