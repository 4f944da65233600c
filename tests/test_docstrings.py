"""Every ``>>>`` example in the public API's docstrings runs and prints what it says (doctest)."""

import doctest
import importlib
import importlib.util
import inspect

import pytest

PUBLIC_MODULES = [
  "ham_optax",
  "ham_optax.geometry",
  "ham_optax.metrics",
  "ham_optax.overparam",
  "ham_optax.schedules",
  "ham_optax.sparsity",
]
# The core's public API must carry a runnable example.
MUST_HAVE_EXAMPLE = [
  "ham_optax.ham",
  "ham_optax.hyperbolic_step",
  "ham_optax.ham_sgd",
  "ham_optax.ham_adam",
  "ham_optax.ham_adamw",
  "ham_optax.default_mask",
]
FLAGS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS


def _public_objects():
  seen, out = set(), []
  for module_name in PUBLIC_MODULES:
    module = importlib.import_module(module_name)
    out.append((module_name, module))
    for attr in module.__all__:
      try:
        obj = getattr(module, attr)
      except ImportError:  # the STR layers without the `flax` extra
        if importlib.util.find_spec("flax") is not None:
          raise
        continue
      if inspect.ismodule(obj) or id(obj) in seen:
        continue
      seen.add(id(obj))
      out.append((f"{module_name}.{attr}", obj))
  return out


def _doctests(name, obj):
  finder = doctest.DocTestFinder(recurse=not inspect.ismodule(obj), exclude_empty=True)
  return [t for t in finder.find(obj, name, globs={}) if t.examples]


OBJECTS = _public_objects()


@pytest.mark.parametrize(("name", "obj"), OBJECTS, ids=[n for n, _ in OBJECTS])
def test_docstring_examples_run(name, obj):
  tests = _doctests(name, obj)  # objects without examples pass trivially
  runner = doctest.DocTestRunner(optionflags=FLAGS)
  report = []
  for t in tests:
    runner.run(t, out=report.append)
  result = runner.summarize(verbose=False)
  assert result.failed == 0, "".join(report)


@pytest.mark.parametrize("name", MUST_HAVE_EXAMPLE)
def test_core_api_has_an_example(name):
  obj = dict(OBJECTS)[name]
  assert "Example:" in (obj.__doc__ or ""), f"{name} has no Example: section"
  assert _doctests(name, obj), f"{name} has no >>> example"
