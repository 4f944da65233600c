"""Training examples for HAM, laid out as Flax's examples are (``pip install -e ./examples``, then
``ham-optax train``; see ``examples/README.md``). Nothing is imported here."""
