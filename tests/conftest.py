"""Shared pytest configuration: fast hypothesis profiles, and the x64 flag restored after every test."""

import importlib.util
import os
import tempfile

import jax
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
  "ci", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile("dev", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# The two xdist workers compile many of the same programs: they share XLA's compilation cache for this run (a fresh
# folder per run, keyed by xdist's run id, in the system's temporary folder).
_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID")
if _RUN:
  jax.config.update(
    "jax_compilation_cache_dir", os.path.join(tempfile.gettempdir(), f"ham_optax_tests_{_RUN}")
  )
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

# The Flax integration's tests need the `flax` extra (the library itself does not).
collect_ignore = [] if importlib.util.find_spec("flax") else ["test_flax.py"]


@pytest.fixture(autouse=True)
def _restore_x64():
  before = jax.config.read("jax_enable_x64")
  yield
  jax.config.update("jax_enable_x64", before)
