"""The CIFAR ResNet of He et al. (2016, Sec. 4.2): depth 6n + 2, three stages of n basic blocks.

ResNet-32 (n = 5, widths 16/32/64) is the model of the paper's denoising experiment and of
Meta-Weight-Net's noisy-label script (``resnet.py`` of xjtushujun/meta-weight-net): conv3x3(16) -
BN - ReLU, then stages of basic blocks (conv3x3 - BN - ReLU - conv3x3 - BN, plus the shortcut,
ReLU) at 32x32, 16x16 and 8x8, global average pooling, and a linear head. Downsampling shortcuts
are He et al.'s option A (stride-2 subsampling and zero-padded channels, no parameters), as in
that script. Kaiming-normal initialisation of the convolutions and linear layers.

features(x) -> e (the pooled activations, width ``4 * width``), the weight network's embedding e_i;
head(e) -> logits. ``depth`` and ``width`` give the smaller CPU variants (ResNet-8: depth 8).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride, self.pad = stride, cout - cin

    def shortcut(self, x: Tensor) -> Tensor:
        if self.stride == 1 and self.pad == 0:
            return x
        x = x[:, :, :: self.stride, :: self.stride]  # option A: subsample, zero-pad channels
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-``depth`` for [N, C, H, W] images; ``depth`` = 6n + 2 (8, 14, 20, 32, 44, 56, 110)."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int = 10, depth: int = 32,
                 width: int = 16) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"a CIFAR ResNet has depth 6n + 2 (8, 14, 20, 32, ...), got {depth}")
        if width < 1:
            raise ValueError(f"width must be at least 1, got {width}")
        n = (depth - 2) // 6
        self.conv = nn.Conv2d(input_shape[0], width, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        blocks, cin = [], width
        for stage, cout in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                blocks.append(BasicBlock(cin, cout, 2 if stage > 0 and i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(cin, num_classes)
        self.embedding_dim = cin
        self.input_shape = tuple(input_shape)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(m.weight)

    def features(self, x: Tensor) -> Tensor:
        out = self.blocks(F.relu(self.bn(self.conv(x))))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
