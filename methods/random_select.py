"""``random_select``: Dm plus a random subset of Dt of size ⌊β·N_t⌋."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Pool, count_of
from .erm import ERM


@dataclass
class RandomSelectHparams:
    """beta: fraction of Dt kept, the selection ratio shared with the DPS methods."""

    beta: float = 0.05

    def __post_init__(self) -> None:
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"beta must lie in [0, 1], got {self.beta}")


class RandomSelect(ERM):
    """Pool = Dm ∪ S, S a uniform random subset of Dt with |S| = ⌊β·N_t⌋, fixed for the run."""

    Hparams = RandomSelectHparams

    def __init__(self, ctx, hparams=None) -> None:
        super().__init__(ctx, hparams)
        k = count_of(self.hp.beta, ctx.n_train)
        self.subset = torch.randperm(ctx.n_train, generator=ctx.generator)[:k].sort().values

    def pool(self) -> Pool:
        return Pool(train=self.subset, meta_copies=1)
