"""Data-parallel training of one run over several processes (torch.distributed).

Every rank holds a replica of the model and of the method's state and trains on 1/world of every
train batch Bt and meta batch Bm (the harness shards them). A method that supports replicas
(``Method.supports_replicas``) normalises its losses by the *global* batch sizes, so that each
rank's gradient is its shard's share of the global-batch gradient, and sums the gradients over
the ranks (:meth:`Replicas.sum_`): every rank then applies the same update, as one process with
the global batch would, up to the order of floating-point sums. Randomness that must agree
across ranks (Langevin noise) is drawn from generators seeded alike on every rank.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class Replicas:
    """``world`` processes in torch.distributed's default process group; this one is ``rank``."""

    world: int
    rank: int

    def sum_(self, tensors: list[Tensor]) -> None:
        """Replace each tensor by its sum over the ranks (one all-reduce of one flat buffer)."""
        tensors = [t for t in tensors if t is not None]
        if not tensors or self.world == 1:
            return
        flat = torch.cat([t.reshape(-1).to(torch.float64) for t in tensors])
        dist.all_reduce(flat)
        offset = 0
        for t in tensors:
            n = t.numel()
            t.copy_(flat[offset: offset + n].view_as(t))
            offset += n

    def sum_scalar(self, value: float) -> float:
        """``value`` summed over the ranks (a float64 all-reduce)."""
        if self.world == 1:
            return value
        device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        t = torch.tensor([value], dtype=torch.float64, device=device)
        self.sum_([t])
        return float(t)
