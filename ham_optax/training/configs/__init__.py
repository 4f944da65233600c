"""Configurations for :mod:`ham_optax.training`."""
