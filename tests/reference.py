"""An independent float64 NumPy rendering of HAM (Algorithm 1, HYP*) and of the inner optimizers it wraps.

Written from the paper's update rule and optax's documented optimizer formulas, not from ham_optax's code, so that
tests comparing the two check the implementation rather than restate it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


class NumpyOptimizer:
  """Inner optimizers in float64: state per leaf, `step(k, g, p) -> u` with the learning rate lr(k)."""

  def __init__(self, kind: str, lr: Callable[[int], float], **hp):
    self.kind, self.lr, self.hp = kind, lr, hp
    self.state: dict[int, dict[str, np.ndarray]] = {}

  def step(self, k: int, i: int, g: np.ndarray, p: np.ndarray) -> np.ndarray:
    st = self.state.setdefault(i, {"m": np.zeros_like(g), "v": np.zeros_like(g)})
    lr, hp = self.lr(k), self.hp
    if self.kind == "sgd":
      return -lr * g
    if self.kind in ("momentum", "nesterov"):
      st["m"] = g + hp["momentum"] * st["m"]
      direction = g + hp["momentum"] * st["m"] if self.kind == "nesterov" else st["m"]
      return -lr * direction
    if self.kind in ("adam", "adamw"):
      b1, b2, eps = hp.get("b1", 0.9), hp.get("b2", 0.999), hp.get("eps", 1e-8)
      st["m"] = b1 * st["m"] + (1 - b1) * g
      st["v"] = b2 * st["v"] + (1 - b2) * g * g
      t = k + 1
      mhat = st["m"] / (1 - b1**t)
      vhat = st["v"] / (1 - b2**t)
      direction = mhat / (np.sqrt(vhat) + eps)
      if self.kind == "adamw":
        direction = direction + hp["weight_decay"] * p
      return -lr * direction
    raise ValueError(self.kind)


def mirror(x_half, x, g, lr, alpha, beta, max_exponent=5.0, sign_of="x_half"):
  """x_new = x_half * exp(clip(-lr * (alpha * sign(s) * g + beta), -c, c)), s = x_half (HYP*) or x (GD;HYP)."""
  s = np.sign(x_half if sign_of == "x_half" else x)
  e = np.clip(-lr * (alpha * s * g + beta), -max_exponent, max_exponent)
  return x_half * np.exp(e)


def run_ham(params, grad_fn, opt: NumpyOptimizer, lr, alpha, beta, steps, selected, sign_of="x_half"):
  """Runs `steps` HAM steps; `selected[i]` says whether leaf i gets the mirror step. Returns the trajectory."""
  ps = [np.asarray(p, np.float64) for p in params]
  traj = [list(ps)]
  for k in range(steps):
    gs = grad_fn(k, ps)
    new = []
    for i, (p, g) in enumerate(zip(ps, gs, strict=True)):
      x_half = p + opt.step(k, i, g, p)
      new.append(mirror(x_half, p, g, lr(k), alpha, beta, sign_of=sign_of) if selected[i] else x_half)
    ps = new
    traj.append(list(ps))
  return traj
