"""Random PaI (90 % ERK) on an MNIST-1D MLP: baseline vs +HAM vs +Sign-In (ham_optax.overparam.sign_in).

Needs the `sparsity` and `training` branches merged (ham_optax.sparsity, ham_optax.training). It patches
`training.train.make_optimizer` with the Sign-In row proposed in notes/family.md, and adapts
`ham_optax.metrics` (which returns dicts) to the floats `train_and_evaluate` expects.

    python notes/family_sign_in_pai.py tune              # validation sweep, seed 100
    python notes/family_sign_in_pai.py final 1.0 1 10.0  # balance, reset every (epochs), HAM alpha; seeds 0-2
"""

import importlib
import itertools
import json
import sys
import time

import optax

from ham_optax import metrics as M
from ham_optax.overparam import sign_in

# imported by name: ham_optax.training exists only once the `training` branch is merged
D = importlib.import_module("ham_optax.training.data")
T = importlib.import_module("ham_optax.training.train")
Config = importlib.import_module("ham_optax.training.configs.default").Config

SIGNIN: dict = {}
_orig = T.make_optimizer


def make_optimizer(config, total_steps, steps_per_epoch):
  if not SIGNIN:
    return _orig(config, total_steps, steps_per_epoch)
  from ham_optax import sparsity as sp

  lr = T._learning_rate(config, total_steps, steps_per_epoch)
  inner = optax.chain(optax.add_decayed_weights(config.weight_decay), optax.sgd(lr, momentum=config.momentum))
  tx = sign_in(inner, rescale_every=SIGNIN["every_epochs"] * steps_per_epoch, balance=SIGNIN["balance"])
  return sp.random_pruning(tx, config.sparsity, distribution=config.distribution, seed=config.seed)


T.make_optimizer = make_optimizer
_sp, _sf = M.sparsity, M.sign_flips
M.sparsity = lambda w, *a, **k: _sp(w, *a, **k)["global"]
M.sign_flips = lambda w, r, *a, **k: _sf(w, r, *a, **k)["fraction_of_nonzero"]


def run(ds, label, seed, signin=None, **kw):
  SIGNIN.clear()
  if signin:
    SIGNIN.update(signin)
  cfg = Config(sparsifier="random", sparsity=0.9, seed=seed, progress=False, **kw)
  t = time.time()
  r = T.train_and_evaluate(cfg, ds)
  out = dict(
    label=label,
    seed=seed,
    val=r["val_acc"],
    test=r["test_acc"],
    sparsity=r["sparsity"],
    flips=r["sign_flips"],
    s=time.time() - t,
  )
  print(json.dumps(out), flush=True)
  return out


def main():
  ds = D.load_dataset("mnist1d")
  if sys.argv[1] == "tune":
    for b, e in itertools.product([0.1, 1.0], [1, 5]):
      run(ds, f"signin b={b} every={e}ep", 100, signin=dict(balance=b, every_epochs=e))
    for a in [1.0, 10.0]:
      run(ds, f"ham a={a}", 100, ham=True, alpha=a)
    run(ds, "random", 100)
  else:
    b, e, a = float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    for seed in (0, 1, 2):
      run(ds, "random", seed)
      run(ds, f"random+HAM a={a}", seed, ham=True, alpha=a)
      run(ds, f"random+Sign-In b={b} every={e}ep", seed, signin=dict(balance=b, every_epochs=e))


if __name__ == "__main__":
  main()
