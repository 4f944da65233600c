"""Argument validators with the library's error messages, for code built on ham_optax (the examples use them).

Each names the argument and raises ``TypeError`` for a wrong type and ``ValueError`` for a wrong value, so a bad
option fails where it is given, not inside a traced function.
"""

from ham_optax._src.checks import INT32_MAX, check_choice, check_fraction, check_int, check_scalar

__all__ = ["INT32_MAX", "check_choice", "check_fraction", "check_int", "check_scalar"]
