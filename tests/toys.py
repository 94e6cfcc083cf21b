"""Small models and losses shared by the tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def bce(out, y):
    """Per-example binary cross-entropy on one logit."""
    return F.binary_cross_entropy_with_logits(out.squeeze(-1), y, reduction="none")


class Net(nn.Module):
    """features: Linear(d, hidden) + activation; head: Linear(hidden, 1)."""

    def __init__(self, d: int = 2, hidden: int = 8, act: type[nn.Module] = nn.Tanh) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d, hidden), act())
        self.head = nn.Linear(hidden, 1)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.body(x))


def use_float64():
    """Generator for a fixture: float64 as the default dtype while a test runs."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


class BNNet(nn.Module):
    """features: Linear(d, hidden) + BatchNorm1d + ReLU; head: Linear(hidden, out). The suite's
    smallest model with buffers that train-mode forward passes update (running statistics)."""

    def __init__(self, d: int = 4, hidden: int = 6, out: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d, hidden), nn.BatchNorm1d(hidden), nn.ReLU())
        self.head = nn.Linear(hidden, out)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.body(x))


def methods_without_requirements() -> list[str]:
    """Registered methods that run on any scenario (not askllm_o, which needs a language model's
    ``judge``: tests/test_ift.py runs it)."""
    from methods import get_method, list_methods

    return [m for m in list_methods() if not get_method(m).requires]
