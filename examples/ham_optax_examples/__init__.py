"""Training examples for HAM: offline datasets, Flax NNX models, a training loop and the ``ham-optax`` CLI.

An installable project of its own beside the library (flax, tqdm, matplotlib, mnist1d, scikit-learn, orbax)::

  pip install -e ./examples
  ham-optax train            # baseline vs HAM, dense and 90 % random pruning, on MNIST-1D

Modules: :mod:`~ham_optax_examples.data`, :mod:`~ham_optax_examples.models`,
:mod:`~ham_optax_examples.configs.default`, :mod:`~ham_optax_examples.train`,
:mod:`~ham_optax_examples.report`, :mod:`~ham_optax_examples.cli`, :mod:`~ham_optax_examples.distributed`,
:mod:`~ham_optax_examples.supervisor`. Nothing is imported here, so
``import ham_optax`` never needs the optional dependencies.
"""
