"""What a data source returns: a labelled train pool and a labelled test pool as arrays."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Labeled:
    """Inputs ``x`` (float32, [N, *input_shape]) and integer class labels ``y`` ([N])."""

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"{len(self.x)} inputs but {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class SourceData:
    """A source's pools: scenarios draw Dt, Dm (and validation) from ``train``; test from ``test``."""

    name: str
    train: Labeled
    test: Labeled
    order: str = "official"
    """How ``train`` is ordered: ``official`` (the publisher's order), ``class-folder`` (an
    ImageFolder's, class by class, each class's files numbered in the official order; see
    :func:`benchmarks.data.cifar10.official_order`) or ``unnumbered`` (class by class, in an
    order that says nothing about the official one)."""
    root: Path | None = None
    """The data directory given to :func:`benchmarks.data.load_source` (where companion files
    such as CIFAR-10N's labels are looked for), None when none was given."""

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])
