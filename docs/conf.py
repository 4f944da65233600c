"""Sphinx configuration (``sphinx-build -W --keep-going -b html docs docs/_build/html``; see docs/development.md).
The API pages are written at build time; the notebooks are executed by the build at the small size unless
``HAM_OPTAX_NOTEBOOK_SMALL=0``; a cell that fails fails the build."""

import importlib
import os
import pathlib
import shutil
import sys

DOCS = pathlib.Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # document this checkout, not another installed copy

import ham_optax  # noqa: E402

project = html_title = "ham_optax"
author = "ham_optax developers"
copyright = f"2026, {author}"  # noqa: A001
release = ham_optax.__version__

extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.autosummary", "sphinx.ext.napoleon"]
extensions += ["sphinx.ext.mathjax", "sphinx.ext.viewcode"]
html_theme = "sphinx_book_theme"
html_theme_options = {"repository_url": "https://github.com/ham-optax/ham_optax", "show_toc_level": 2}
html_theme_options["use_repository_button"] = True
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
templates_path = ["_templates"]  # autosummary/class.rst: a class page without the inherited-member tables
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}

nb_execution_mode = "force"
nb_execution_timeout = 600  # seconds per cell
nb_execution_raise_on_error = True
nb_execution_show_tb = True
os.environ.setdefault("HAM_OPTAX_NOTEBOOK_SMALL", "1")  # inherited by the notebooks' kernels
os.environ.pop("XLA_FLAGS", None)  # notebook 04 sets its own device count
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header"]  # notebooks and guides start sections at "##" under their "#" title

autosummary_generate = True
autodoc_typehints = "description"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": False}
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True  # state classes document their fields under "Attributes:"; one description each

# No inventories of other libraries (no network at build time): their types stay plain text.
nitpicky = True
nitpick_ignore_regex = [
  ("py:.*", r"(jax|jaxlib|optax|flax|chex|numpy|np|jnp|nnx|scipy|typing_extensions)(\..*)?"),
  ("py:.*", r"(Array|ArrayLike|PyTree|ScalarOrSchedule|GradientTransformation.*|Params|Updates|OptState)"),
  ("py:.*", r"(collections\.abc|typing|types|pathlib|dataclasses|enum)\..*"),
  ("py:class", r"(optional|callable|pytree|array|default .*)"),
]

CORE_TITLE = "The core: ham, hyperbolic_step and the ham_sgd / ham_adam / ham_adamw aliases"
SUBMODULES = ("checks", "geometry", "metrics", "overparam", "schedules", "sparsity")
PUBLIC_MODULES = {"ham_optax": CORE_TITLE, **{f"ham_optax.{m}": "" for m in SUBMODULES}}  # name: title


def setup(app):
  # NamedTuple fields are documented by their class's ``Attributes:`` section, not a second time.
  def skip_namedtuple_fields(app, what, name, obj, skip, options):
    return True if (getattr(obj, "__doc__", None) or "").startswith("Alias for field number") else None

  app.connect("autodoc-skip-member", skip_namedtuple_fields)


def _write_if_changed(path: pathlib.Path, text: str) -> None:
  if not path.exists() or path.read_text() != text:
    path.write_text(text)


def _write_api_pages() -> None:
  """One page per public module: its docstring and an autosummary of every name in its ``__all__``."""
  api = DOCS / "api"
  api.mkdir(exist_ok=True)
  for name, title in PUBLIC_MODULES.items():
    module = importlib.import_module(name)
    names = "".join(f"   {n}\n" for n in module.__all__ if not isinstance(getattr(module, n), type(module)))
    heading = f"``{name}``\n{'=' * (len(name) + 4)}\n\n" + (f"{title}\n\n" if title else "")
    text = f"{heading}.. automodule:: {name}\n   :no-members:\n\n.. currentmodule:: {name}\n\n"
    _write_if_changed(api / f"{name}.rst", f"{text}.. autosummary::\n   :toctree: _autosummary\n\n{names}")
  for stale in set(api.glob("*.rst")) - {api / f"{name}.rst" for name in PUBLIC_MODULES}:
    stale.unlink()  # a page of a module not in PUBLIC_MODULES (left by an earlier build)
  shutil.rmtree(api / "_autosummary", ignore_errors=True)  # autosummary writes every name's page again


_write_api_pages()
(DOCS / "notebooks").mkdir(exist_ok=True)  # the committed notebooks next to the pages that link them
for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
  _write_if_changed(DOCS / "notebooks" / nb.name, nb.read_text())
