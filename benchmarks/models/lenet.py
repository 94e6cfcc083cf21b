"""LeNet-5 style CNNs for 2-D images (MNIST 28x28, digits 8x8) and 1-D signals (MNIST-1D).

features(x) -> e (the 84-d penultimate activations, used as the weight network's embedding e_i);
head(e) -> outputs. For 28x28 inputs this is LeCun et al.'s LeNet-5 with ReLU and max pooling:
conv5(6, pad 2) - pool - conv5(16) - pool - fc120 - fc84 - fc(out).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class LeNet(nn.Module):
    """LeNet-5 with ``ndim``-dimensional convolutions; ``kernel`` 5 for 28x28 and 40, 3 for 8x8."""

    def __init__(self, input_shape: tuple[int, ...], num_outputs: int = 1, kernel: int = 5,
                 width: float = 1.0) -> None:
        super().__init__()
        ndim = len(input_shape) - 1
        conv = {1: nn.Conv1d, 2: nn.Conv2d}[ndim]
        pool = {1: nn.MaxPool1d, 2: nn.MaxPool2d}[ndim]
        c1, c2 = max(1, round(6 * width)), max(1, round(16 * width))
        h1, h2 = max(1, round(120 * width)), max(1, round(84 * width))
        self.conv = nn.Sequential(
            conv(input_shape[0], c1, kernel, padding=kernel // 2), nn.ReLU(), pool(2),
            conv(c1, c2, kernel, padding=0 if kernel == 5 else kernel // 2), nn.ReLU(), pool(2),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = self.conv(torch.zeros(1, *input_shape)).shape[1]
        self.fc = nn.Sequential(nn.Linear(flat, h1), nn.ReLU(), nn.Linear(h1, h2), nn.ReLU())
        self.head = nn.Linear(h2, num_outputs)
        self.embedding_dim = h2
        self.input_shape = tuple(input_shape)

    def features(self, x: Tensor) -> Tensor:
        return self.fc(self.conv(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def num_parameters(model: nn.Module) -> int:
    return sum(math.prod(p.shape) for p in model.parameters())
