"""What code made a result (the package version, the commit and a digest of the library's source): every results
file of the examples and of ``benchmarks/`` records :func:`code_version`, so that a stale one can be told apart."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

import ham_optax

_LIBRARY = Path(ham_optax.__file__).resolve().parent


def library_digest() -> str:
  """SHA-256 over every ``*.py`` file of the imported ``ham_optax`` package (sorted relative path, NUL, bytes,
  NUL each): two runs with the same digest ran the same library code, whatever the commit."""
  digest = hashlib.sha256()
  for path in sorted(_LIBRARY.rglob("*.py"), key=lambda p: p.relative_to(_LIBRARY).as_posix()):
    digest.update(path.relative_to(_LIBRARY).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
  return digest.hexdigest()


def _git(*args: str) -> str | None:
  command = ["git", "-C", str(_LIBRARY), *args]
  try:
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=True).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None


def code_version() -> dict[str, Any]:
  """What produced a result: ``ham_optax`` (the package version), ``commit`` (the checkout's ``HEAD``, ``None``
  outside a git checkout), ``library_modified`` (the library's files differ from that commit; ``None`` when
  unknown) and ``library_sha256`` (:func:`library_digest`)."""
  status = _git("status", "--porcelain", "--", str(_LIBRARY))
  return {
    "ham_optax": ham_optax.__version__,
    "commit": _git("rev-parse", "HEAD") or None,
    "library_modified": None if status is None else bool(status),
    "library_sha256": library_digest(),
  }
