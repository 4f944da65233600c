"""Private implementation modules of ham_optax. Import from `ham_optax` instead."""
