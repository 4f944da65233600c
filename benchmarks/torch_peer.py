"""The published PyTorch HAM wrapper's semantics, timed against a bare torch step.

Benchmark-only (``pip install torch==2.13.0``, the ``benchmark`` extra); never imported by ``ham_optax``
or the tests. ``overhead.py`` runs it when torch imports; alone (about 1 minute on a 2-core CPU)::

    python benchmarks/torch_peer.py --out benchmarks/results/overhead/torch_peer.json

``PeerHam`` renders the behaviour of the authors' ``HamOptimizerWrapper`` (the PyTorch wrapper published with
the paper) in our own code (:meth:`PeerHam.step`): after the inner ``step()``, a Python loop over the tensors
multiplies the non-zero entries of each tensor with ndim >= 2 by ``exp(clamp(lr * (-alpha * sign(w) * g - beta),
-5, 5))`` and clips each tensor's norm at 1000; every NaN check (skip or revert a tensor) and norm comparison is a
host sync. Then ``clip_grad_norm_(params, 20)`` runs on the group (after the step, so it does not affect it).
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

import _common


class PeerHam:
  """Per-tensor, host-synchronising HAM wrapper around a torch optimizer (published semantics)."""

  def __init__(
    self, inner: torch.optim.Optimizer, alpha=200.0, beta=1e-3, max_weight_norm=1000.0, max_grad_norm=20.0
  ):
    self.inner, self.alpha, self.beta = inner, alpha, beta
    self.max_weight_norm, self.max_grad_norm = max_weight_norm, max_grad_norm

  @torch.no_grad()
  def step(self) -> None:
    self.inner.step()
    for group in self.inner.param_groups:
      lr = group["lr"]
      for p in group["params"]:
        if p.grad is None:
          continue
        if bool(torch.isnan(p.data).any()) or bool(torch.isnan(p.grad).any()):
          continue
        if p.ndim >= 2:
          saved = p.data.clone()
          e = torch.clamp(lr * (-self.alpha * torch.sign(p.data) * p.grad - self.beta), -5.0, 5.0)
          if bool(torch.isnan(e).any()):
            continue
          nz = p.data != 0
          p.data[nz] = p.data[nz] * torch.exp(e)[nz]
          if bool(torch.isnan(p.data).any()):
            p.data = saved
            continue
        norm = torch.linalg.vector_norm(p.data)
        if bool(norm > self.max_weight_norm):
          p.data = p.data * (self.max_weight_norm / norm)
      torch.nn.utils.clip_grad_norm_(group["params"], max_norm=self.max_grad_norm)


def _make(shapes, seed: int):
  g = torch.Generator().manual_seed(seed)
  params = [torch.nn.Parameter(0.05 * torch.randn(s, generator=g)) for _, s in shapes]
  for p in params:
    p.grad = 1e-3 * torch.randn(p.shape, generator=g)
  return params


def bench(shapes, reps: int = 11, number: int = 2, threads: int = 2, seed: int = 0) -> dict[str, Any]:
  """Interleaved timing of bare torch SGD-momentum / AdamW vs ``PeerHam`` around them."""
  torch.set_num_threads(threads)
  out: dict[str, Any] = {"torch": torch.__version__, "threads": torch.get_num_threads()}
  makers = {
    "sgdm": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=1e-3, weight_decay=1e-4),
  }
  for name, mk in makers.items():
    steppers = {"inner": mk(_make(shapes, 1)), "ham": PeerHam(mk(_make(shapes, 1)))}
    for s in steppers.values():
      s.step()  # builds optimizer state
    times = _common.interleaved({k: s.step for k, s in steppers.items()}, reps, number, seed)
    times = {k: v for k, v in times.items() if not k.endswith(":cpu")}
    r = out[name] = _common.paired_ratio(times["inner"], times["ham"], ("inner", "ham")) | {"times_s": times}
    print(
      f"  torch peer {name:6s}: bare {r['inner_median_ms']:.1f} ms, wrapper {r['ham_median_ms']:.1f} ms, "
      f"ratio {r['paired_ratio_median']:.2f} [{r['paired_ratio_iqr'][0]:.2f}, {r['paired_ratio_iqr'][1]:.2f}]",
      flush=True,
    )
  return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  ap = argparse.ArgumentParser(description="published HAM wrapper semantics vs bare torch step")
  ap.add_argument("--reps", type=_common.positive_int, default=15)
  ap.add_argument("--out", type=_common.out_file, default=None, help="write the results as JSON here")
  return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
  args = parse_args(argv)
  res = bench(_common.resnet50_shapes(), reps=args.reps, number=1)
  if args.out:
    _common.save_json(args.out, res, cmd=_common.command(argv, __file__))
  return res


if __name__ == "__main__":
  main()
