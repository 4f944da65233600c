"""Training examples for HAM, laid out as Flax's examples are: offline datasets, Flax NNX models, a training loop
and the ``ham-optax`` command (``pip install -e ./examples``, then ``ham-optax train``).

Modules: :mod:`~ham_optax_examples.main` (the command), :mod:`~ham_optax_examples.train`
(``train_and_evaluate``), :mod:`~ham_optax_examples.configs.default` (the ``Config`` schema),
:mod:`~ham_optax_examples.configs.tuned` (tuned values, data only), :mod:`~ham_optax_examples.models`,
:mod:`~ham_optax_examples.data`, :mod:`~ham_optax_examples.report`, :mod:`~ham_optax_examples.distributed` and
:mod:`~ham_optax_examples.grokking`. Nothing is imported here.
"""
