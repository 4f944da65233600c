"""Training examples for HAM: offline datasets, Flax NNX models, a training loop and the ``ham-optax`` CLI.

Needs the ``examples`` extra (tqdm, matplotlib, mnist1d, scikit-learn, orbax-checkpoint)::

  pip install "ham_optax[examples]"
  ham-optax train            # baseline vs HAM, dense and 90 % random pruning, on MNIST-1D

Modules: :mod:`~ham_optax.training.data`, :mod:`~ham_optax.training.models`,
:mod:`~ham_optax.training.configs.default`, :mod:`~ham_optax.training.train`,
:mod:`~ham_optax.training.report`, :mod:`~ham_optax.training.cli`, :mod:`~ham_optax.training.distributed`,
:mod:`~ham_optax.training.supervisor`. Nothing is imported here, so
``import ham_optax`` never needs the optional dependencies.
"""
