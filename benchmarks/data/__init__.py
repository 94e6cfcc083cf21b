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
from .instructions import InstructionCorpus
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
    "generated-ift": lambda root: _generated_ift(),
    "jsonl": lambda root: _jsonl(root),
}
OFFLINE = ("mnist1d", "digits", "generated", "generated-ift")


def _webnlg(root: Path | None):
    from .webnlg import load_webnlg  # only when asked for: the XML reader's imports

    return load_webnlg(root)


def _generated_ift():
    from .generated_instructions import generate_mixture

    return generate_mixture()


def _jsonl(root: Path | None):
    """An instruction mixture in chat JSONL under ``<data dir>/ift-mixture/`` (any ``--set
    mixture=`` overrides it in the ``ift`` scenario)."""
    from ..errors import DataError
    from .chat_jsonl import load_chat_mixture

    if root is None:
        raise DataError("the jsonl source reads <data dir>/ift-mixture/*.jsonl, and no data "
                        "directory is set: pass --data-dir DIR (or set DPS_DATA_DIR), or give the "
                        "files with --set mixture=FILE|DIR")
    return load_chat_mixture(root / "ift-mixture")


def load_source(name: str, root: str | Path | None = None
                ) -> SourceData | TextCorpus | InstructionCorpus:
    """Load source ``name``; ``root`` is the data directory (or $DPS_DATA_DIR)."""
    if name not in SOURCES:
        raise ConfigError(f"unknown data source {name!r}; available: {', '.join(SOURCES)}")
    folder = data_dir(root)
    return dataclasses.replace(SOURCES[name](folder), root=folder)


__all__ = ["Labeled", "SourceData", "TextCorpus", "SOURCES", "OFFLINE", "load_source", "data_dir"]
