"""Small files in the real formats of CIFAR-10 (python batches, ImageFolder) and CIFAR-10N."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.data.cifar10 import CLASSES


def batch_bytes(images: np.ndarray, labels: list[int], name: bytes = b"batch") -> bytes:
    """A CIFAR-10 python batch: images uint8 [n, 3, 32, 32] as rows of 3072 (R, G, B planes)."""
    entry = {b"batch_label": name, b"labels": list(labels),
             b"data": images.reshape(len(images), -1).astype(np.uint8),
             b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))]}
    return pickle.dumps(entry, protocol=2)


def write_batches(root: Path, per_batch: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """root/cifar-10-batches-py/ with 5 train batches and a test batch; returns (train images
    in official order, their labels). Image i's first pixel value is i % 256 (to identify it)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    all_x, all_y = [], []
    for b, name in enumerate(["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                              "data_batch_5", "test_batch"]):
        x = rng.integers(0, 256, (per_batch, 3, 32, 32), dtype=np.uint8)
        x[:, 0, 0, 0] = np.arange(b * per_batch, (b + 1) * per_batch) % 256
        y = [int(v) for v in rng.integers(0, 10, per_batch)]
        (folder / name).write_bytes(batch_bytes(x, y, name.encode()))
        if name != "test_batch":
            all_x.append(x)
            all_y += y
    return np.concatenate(all_x), np.array(all_y)


def jpeg_bytes(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt)
    return out.getvalue()


def image_set(per_class: int = 2, seed: int = 0) -> dict[str, bytes]:
    """{'train/<class>/NNNN.png': bytes, 'test/…': …} with lossless PNGs (so pixels round-trip)."""
    rng = np.random.default_rng(seed)
    files = {}
    for split, n in (("train", per_class), ("test", 1)):
        for c, name in enumerate(CLASSES):
            for k in range(n):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                pixels[0, 0, 0] = c * 10 + k  # identifies class and rank
                files[f"{split}/{name}/{k:04d}.png"] = jpeg_bytes(pixels)
    return files


def write_image_folder(root: Path, files: dict[str, bytes], archive: bool = False) -> Path:
    folder = root / "cifar10-images"
    folder.mkdir(parents=True)
    if archive:
        path = folder / "cifar-10-images.tar.gz"
        with tarfile.open(path, "w:gz") as tar:
            for name, payload in sorted(files.items()):
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
        return path
    for name, payload in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(payload)
    return folder


def write_cifar10n(root: Path, clean: np.ndarray, noisy: dict[str, np.ndarray]) -> Path:
    """root/cifar10n/CIFAR-10_human.pt as CIFAR-10N publishes it: torch.save of numpy arrays."""
    labels = {"clean_label": clean}
    for key in ("aggre_label", "random_label1", "random_label2", "random_label3", "worse_label"):
        labels[key] = noisy.get(key, clean)
    path = root / "cifar10n" / "CIFAR-10_human.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(labels, path)
    return path
