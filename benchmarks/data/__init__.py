"""Data sources by name. Each returns a :class:`SourceData` (train pool + test pool)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError
from .base import Labeled, SourceData
from .cifar10 import load_cifar10_batches, load_cifar10_images
from .digits import load_digits
from .generated_text import load_generated
from .mnist import FASHION_MNIST, MNIST, data_dir, load_idx_dataset
from .mnist1d import load_mnist1d
from .text import TextCorpus

SOURCES: dict[str, Callable[[Path | None], SourceData]] = {
    "mnist1d": lambda root: load_mnist1d(),
    "digits": lambda root: load_digits(),
    "mnist": lambda root: load_idx_dataset(MNIST, root),
    "fashion-mnist": lambda root: load_idx_dataset(FASHION_MNIST, root),
    "cifar10": load_cifar10_batches,
    "cifar10-images": load_cifar10_images,
    "generated": load_generated,
    "webnlg": lambda root: _webnlg(root),
}
OFFLINE = ("mnist1d", "digits", "generated")


def _webnlg(root: Path | None):
    from .webnlg import load_webnlg  # only when asked for: the XML reader's imports

    return load_webnlg(root)


def load_source(name: str, root: str | Path | None = None) -> SourceData | TextCorpus:
    """Load source ``name``; ``root`` is the data directory (or $DPS_DATA_DIR)."""
    if name not in SOURCES:
        raise ConfigError(f"unknown data source {name!r}; available: {', '.join(SOURCES)}")
    folder = data_dir(root)
    return dataclasses.replace(SOURCES[name](folder), root=folder)


__all__ = ["Labeled", "SourceData", "TextCorpus", "SOURCES", "OFFLINE", "load_source", "data_dir"]
