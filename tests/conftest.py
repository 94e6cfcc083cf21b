"""Shared fixtures: a tiny synthetic problem and a Context to set methods up with."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from toys import Net, bce

from benchmarks.scenarios import Split
from methods import Context


@pytest.fixture
def splits():
    g = torch.Generator().manual_seed(0)
    n_t, n_m = 40, 6
    train = Split(torch.randn(n_t, 4, generator=g), (torch.arange(n_t) < 4).float(),
                  (torch.arange(n_t) >= 4).long())
    meta = Split(torch.randn(n_m, 4, generator=g), (torch.arange(n_m) % 2).float())
    return train, meta


@pytest.fixture
def make_ctx():
    def make(n_train: int = 40, n_meta: int = 6, seed: int = 0) -> Context:
        model = Net(d=4, hidden=3, act=nn.ReLU)
        return Context(model=model, make_optimizer=lambda p: torch.optim.SGD(p, lr=0.1),
                       n_train=n_train, n_meta=n_meta, loss=bce,
                       embed=lambda x: model.features(x).detach(), device=torch.device("cpu"),
                       num_classes=2, generator=torch.Generator().manual_seed(seed))
    return make
