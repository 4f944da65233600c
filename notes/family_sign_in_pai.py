"""Random PaI (90% ERK) on MNIST-1D MLP: baseline vs +HAM vs +Sign-In (ham_optax.overparam.sign_in)."""
import json, sys, time, itertools
import numpy as np, optax
import ham_optax
from ham_optax.training import train as T
from ham_optax.training.configs.default import Config
from ham_optax.training import data as D
from ham_optax.overparam import sign_in

SIGNIN = {}
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
from ham_optax import metrics as M
_sp, _sf = M.sparsity, M.sign_flips
M.sparsity = lambda w, *a, **k: _sp(w, *a, **k)["global"]
M.sign_flips = lambda w, r, *a, **k: _sf(w, r, *a, **k)["fraction_of_nonzero"]

ds = D.load_dataset("mnist1d")
def run(label, seed, signin=None, **kw):
    SIGNIN.clear()
    if signin: SIGNIN.update(signin)
    cfg = Config(sparsifier="random", sparsity=0.9, seed=seed, progress=False, **kw)
    t = time.time(); r = T.train_and_evaluate(cfg, ds)
    out = dict(label=label, seed=seed, val=r["val_acc"], test=r["test_acc"], sparsity=r["sparsity"], flips=r["sign_flips"], s=time.time()-t)
    print(json.dumps(out), flush=True); return out

mode = sys.argv[1]
if mode == "tune":
    for b, e in itertools.product([0.1, 1.0], [1, 5]):
        run(f"signin b={b} every={e}ep", 100, signin=dict(balance=b, every_epochs=e))
    for a in [1.0, 10.0]:
        run(f"ham a={a}", 100, ham=True, alpha=a)
    run("random", 100)
else:
    b, e, a = float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    for seed in (0, 1, 2):
        run("random", seed)
        run(f"random+HAM a={a}", seed, ham=True, alpha=a)
        run(f"random+Sign-In b={b} every={e}ep", seed, signin=dict(balance=b, every_epochs=e))
