"""MNIST-1D (Greydanus 2020), generated offline from the ``mnist1d`` package's templates.

The embedded default source: no download. ``make_dataset`` renders each digit template as a
length-40 signal with random padding, translation, scaling, shear and noise; we generate 70,000
signals (7,000 per class) with the package's default arguments and seed 42, and split them
6:1 into a train pool and a test pool. The result is cached under ``$DPS_CACHE_DIR`` (default
``~/.cache/dps-bench``) because generation takes about 15 s.
"""

from __future__ import annotations

import os
import random
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .base import Labeled, SourceData

NUM_SAMPLES = 70_000
TRAIN_FRACTION = 6 / 7
SEED = 42


def cache_dir() -> Path:
    return Path(os.environ.get("DPS_CACHE_DIR", Path.home() / ".cache" / "dps-bench"))


def _generate() -> dict[str, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.train_split, args.seed = NUM_SAMPLES, TRAIN_FRACTION, SEED
    np_state, py_state = np.random.get_state(), random.getstate()
    try:  # make_dataset reseeds the global RNGs; leave the caller's untouched
        data = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {k: np.asarray(data[k]) for k in ("x", "y", "x_test", "y_test")}


def read_cache(path: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays (x, y, x_test, y_test: numeric, as many labels as signals, signals of
    one length), or None if the file is absent, damaged or not such a cache. Never unpickles."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: np.asarray(f[k]) for k in ("x", "y", "x_test", "y_test")}
    except (OSError, ValueError, KeyError, EOFError, SyntaxError, zipfile.BadZipFile,
            zlib.error):
        return None
    ok = (all(a.dtype.kind in "fiu" for a in arrays.values())
          and arrays["x"].ndim == 2 and arrays["x_test"].ndim == 2
          and arrays["x"].shape[1] == arrays["x_test"].shape[1]
          and arrays["y"].shape == arrays["x"].shape[:1]
          and arrays["y_test"].shape == arrays["x_test"].shape[:1])
    return arrays if ok else None


def load_mnist1d() -> SourceData:
    """Train pool of 60,000 and test pool of 10,000 signals, shape [N, 1, 40]."""
    path = cache_dir() / f"mnist1d-n{NUM_SAMPLES}-s{SEED}.npz"
    arrays = read_cache(path)
    if arrays is None:  # absent or damaged: generate it again (it is only a cache)
        arrays = _generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)

    def split(x: np.ndarray, y: np.ndarray) -> Labeled:
        return Labeled(x.astype(np.float32)[:, None, :], y.astype(np.int64))

    return SourceData("mnist1d", split(arrays["x"], arrays["y"]),
                      split(arrays["x_test"], arrays["y_test"]))
