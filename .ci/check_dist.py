"""Checks of the released package, run by `.ci/run`.

``python .ci/check_dist.py wheel dist/ham_optax-X-py3-none-any.whl``: the wheel holds the library only (``ham_optax/``
and its ``.dist-info``: no examples, no console script), ships the LICENSE and does not require flax.

``python .ci/check_dist.py imports`` (in an environment with the wheel installed and no flax, run outside the source
tree): every public module imports, every public name resolves, and the flax-only STR layers raise an ImportError
that names the ``ham_optax[flax]`` extra.
"""

from __future__ import annotations

import email.parser
import importlib
import importlib.util
import pkgutil
import sys
import zipfile

FLAX_ONLY = {"ham_optax.sparsity": {"STRConv", "STRDense", "str_sparse_weight"}}


def check_wheel(path: str) -> None:
  with zipfile.ZipFile(path) as wheel:
    names = wheel.namelist()
    (dist_info,) = {n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")}
    stray = [n for n in names if not n.startswith(("ham_optax/", f"{dist_info}/"))]
    assert not stray, f"the wheel holds files outside the library: {stray}"
    assert f"{dist_info}/entry_points.txt" not in names, "the wheel declares entry points (a console script?)"
    assert f"{dist_info}/licenses/LICENSE" in names, "the wheel does not ship the LICENSE"
    meta = email.parser.Parser().parsestr(wheel.read(f"{dist_info}/METADATA").decode())
  assert meta["License-Expression"] == "Apache-2.0", meta["License-Expression"]
  required = [r for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r]
  assert not [r for r in required if r.startswith("flax")], f"the wheel requires flax: {required}"
  print(f"wheel ok: {len(names)} files, requires {required}")


def check_imports() -> None:
  assert importlib.util.find_spec("flax") is None, "flax is installed: run this check without it"
  import ham_optax  # noqa: PLC0415

  assert "site-packages" in ham_optax.__file__, f"ham_optax comes from {ham_optax.__file__}, not the wheel"
  public = [m.name for m in pkgutil.iter_modules(ham_optax.__path__) if not m.name.startswith("_")]
  modules = ["ham_optax", *(f"ham_optax.{m}" for m in public)]
  for name in modules:
    module = importlib.import_module(name)
    for attr in module.__all__:
      flax_only = attr in FLAX_ONLY.get(name, ())
      try:
        getattr(module, attr)
      except ImportError as e:
        assert flax_only and "ham_optax[flax]" in str(e), f"{name}.{attr} without flax: {e}"
      else:
        assert not flax_only, f"{name}.{attr} resolved without flax"
  print(f"imports ok without flax: {', '.join(modules)}")


if __name__ == "__main__":
  if sys.argv[1:2] == ["wheel"] and len(sys.argv) == 3:
    check_wheel(sys.argv[2])
  elif sys.argv[1:] == ["imports"]:
    check_imports()
  else:
    sys.exit(__doc__)
