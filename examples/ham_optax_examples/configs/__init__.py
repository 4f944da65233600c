"""Configurations for :mod:`ham_optax_examples`."""
