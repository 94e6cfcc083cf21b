"""Langevin noise for SGLD steps: ϑ_g ← ϑ_g + std_g·ε_g with ε ~ N(0, I), for groups g of tensors
(the model's θ, the weight network's φ), from one normal draw over one contiguous buffer.

Per step, that is one draw and one in-place add (one add per group when the groups' std differ),
however many tensors there are; memory is unchanged (the buffer replaces the tensors' storage).
"""

from __future__ import annotations

import torch
from torch import Tensor


class Noise:
    """One draw of Gaussian noise for several groups of tensors, each with its own std.

    ``groups`` is a list of (tensors, std). The tensors are moved into one flat buffer when they
    share a dtype and device (their ``.data`` become views of it; whoever keeps views of them
    must re-make those); otherwise each group gets its own draw.
    """

    def __init__(self, groups: list[tuple[list[Tensor], float]]) -> None:
        self.groups = [(list(tensors), std) for tensors, std in groups if tensors]
        self.flat = flatten_parameters_([t for tensors, _ in self.groups for t in tensors])
        self.segments: list[tuple[slice, float]] = []
        offset = 0
        for tensors, std in self.groups:
            n = sum(t.numel() for t in tensors)
            self.segments.append((slice(offset, offset + n), std))
            offset += n
        stds = {std for _, std in self.groups}
        self.common_std = stds.pop() if len(stds) == 1 else None  # one add for everything

    def add_(self) -> None:
        """ϑ_g ← ϑ_g + std_g·ε_g for every group (the flat buffer carries no graph, so this needs
        no ``torch.no_grad``)."""
        if self.flat is None:
            for tensors, std in self.groups:
                if std > 0:
                    add_gaussian_(tensors, std)
        elif self.common_std is not None:
            if self.common_std > 0:
                self.flat.add_(torch.randn_like(self.flat), alpha=self.common_std)
        elif any(std > 0 for _, std in self.segments):
            eps = torch.randn_like(self.flat)
            for part, std in self.segments:
                if std > 0:
                    self.flat[part].add_(eps[part], alpha=std)


@torch.no_grad()
def add_gaussian_(params: list[Tensor], std: float) -> None:
    """p ← p + std·ε for every p, ε ~ N(0, I) drawn once for all of them."""
    sizes = [p.numel() for p in params]
    noise = torch.randn(sum(sizes), device=params[0].device, dtype=params[0].dtype)
    torch._foreach_add_(list(params), [n.view_as(p) for n, p in
                                       zip(noise.split(sizes), params, strict=True)], alpha=std)


@torch.no_grad()
def flatten_parameters_(params: list[Tensor]) -> Tensor | None:
    """Move the tensors' values into one contiguous buffer, each ``p.data`` becoming a view of it,
    and return the buffer (None, changing nothing, unless all share a dtype and device)."""
    if not params or len({(p.dtype, p.device) for p in params}) != 1:
        return None
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    offset = 0
    for p in params:
        n = p.numel()
        p.data = flat[offset:offset + n].view_as(p)
        offset += n
    return flat
