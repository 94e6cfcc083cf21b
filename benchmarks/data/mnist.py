"""MNIST and Fashion-MNIST from their published IDX files, verified by MD5.

Files live in ``<data_dir>/<folder>/`` under their published names (``train-images-idx3-ubyte.gz``
etc.). The data directory is ``--data-dir`` or ``$DPS_DATA_DIR``.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from .base import Labeled, SourceData
from .idx import md5sum, read_idx

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@dataclass(frozen=True)
class IdxDataset:
    """A data set published as four gzipped IDX files.

    A file is accepted when the MD5 of its gzip file equals the published one (``md5``) or the
    MD5 of its decompressed content equals ``content_md5``, so raw (gunzipped) copies and
    recompressed ones (as Debian ships Fashion-MNIST) verify too.
    """

    name: str
    folder: str
    md5: dict[str, str]
    content_md5: dict[str, str]
    mirrors: tuple[str, ...]
    mean: float
    std: float
    extra_dirs: tuple[str, ...] = field(default=())


MNIST = IdxDataset(
    name="mnist", folder="mnist",
    md5={  # published by Y. LeCun et al. for the .gz files
        "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    content_md5={  # of the decompressed files, computed from the verified .gz files
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",
             "https://storage.googleapis.com/cvdf-datasets/mnist/"),
    mean=0.1307, std=0.3081,
)

FASHION_MNIST = IdxDataset(
    name="fashion-mnist", folder="fashion-mnist",
    md5={  # published by Zalando Research for the .gz files
        "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    content_md5={  # of the decompressed files in Debian's dataset-fashion-mnist (2020 snapshot)
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    mean=0.2860, std=0.3530,
    extra_dirs=("/usr/share/datasets/fashion-mnist",),
)


def data_dir(explicit: str | os.PathLike | None) -> Path | None:
    """``explicit`` if given, else ``$DPS_DATA_DIR``, else None."""
    chosen = explicit or os.environ.get("DPS_DATA_DIR")
    return Path(chosen).expanduser() if chosen else None


def locate(folder: Path, name: str) -> Path | None:
    """``folder/name.gz`` if present, else the raw ``folder/name``, else None."""
    for path in (folder / f"{name}.gz", folder / name):
        if path.exists():
            return path
    return None


def find_files(spec: IdxDataset, root: Path | None) -> dict[str, Path]:
    """The four files of ``spec``: in ``root/<folder>``, else in a known system location."""
    candidates = ([root / spec.folder] if root else []) + [Path(d) for d in spec.extra_dirs]
    for folder in candidates:
        found = {name: locate(folder, name) for name in FILES}
        if all(found.values()):
            return found  # type: ignore[return-value]
    where = ", ".join(str(c) for c in candidates) or "nowhere (no --data-dir and no DPS_DATA_DIR)"
    raise DataError(
        f"{spec.name}: the four IDX files were not found; looked in {where}. Pass --data-dir DIR "
        f"(or set DPS_DATA_DIR) where DIR/{spec.folder}/ holds {', '.join(f + '.gz' for f in FILES)}, "
        f"or fetch them with `dps-bench download {spec.name} --data-dir DIR`."
    )


def file_ok(spec: IdxDataset, name: str, path: Path) -> bool:
    """True when ``path`` is the published file ``name`` (as gzip or as content)."""
    if md5sum(path) == spec.md5[name]:
        return True
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error):
            return False
    return hashlib.md5(raw).hexdigest() == spec.content_md5[name]


def verify(spec: IdxDataset, files: dict[str, Path]) -> None:
    """Raise DataError naming every file that is not the published one."""
    bad = [str(path) for name, path in files.items() if not file_ok(spec, name, path)]
    if bad:
        raise DataError(
            f"{spec.name}: {', '.join(bad)} failed the MD5 check against the published "
            f"checksums: the files are corrupt, truncated or not the published ones. Download "
            f"them again (`dps-bench download {spec.name} --data-dir DIR`)."
        )


def load_idx_dataset(spec: IdxDataset, root: Path | None, check_md5: bool = True) -> SourceData:
    """Train and test pools, images scaled to [0, 1] then standardised, shape [N, 1, 28, 28]."""
    files = find_files(spec, root)
    if check_md5:
        verify(spec, files)
    arrays = [read_idx(files[name]) for name in FILES]
    tr_x, tr_y, te_x, te_y = arrays
    for images, labels, split in ((tr_x, tr_y, "train"), (te_x, te_y, "t10k")):
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(
                f"{spec.name} {split}: images {images.shape} and labels {labels.shape} do not match"
            )

    def prep(images: np.ndarray) -> np.ndarray:
        scaled = images.astype(np.float32)[:, None] / 255.0
        return (scaled - spec.mean) / spec.std

    return SourceData(spec.name, Labeled(prep(tr_x), tr_y.astype(np.int64)),
                      Labeled(prep(te_x), te_y.astype(np.int64)))


def download(spec: IdxDataset, root: Path, timeout: float = 20.0) -> Path:
    """Fetch the four files into ``root/<folder>``, verifying each MD5; for machines online."""
    folder = root / spec.folder
    folder.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        target = folder / f"{name}.gz"
        if target.exists() and file_ok(spec, name, target):
            continue
        errors = []
        for mirror in spec.mirrors:
            try:
                with urllib.request.urlopen(f"{mirror}{name}.gz", timeout=timeout) as resp:
                    payload = resp.read()
            except (OSError, http.client.HTTPException) as e:
                errors.append(f"{mirror}: {e}")
                continue
            with tempfile.NamedTemporaryFile(dir=folder, delete=False) as tmp:
                tmp.write(payload)
            if md5sum(Path(tmp.name)) != spec.md5[name]:
                os.unlink(tmp.name)
                errors.append(f"{mirror}: checksum mismatch")
                continue
            os.replace(tmp.name, target)
            break
        else:
            raise DataError(
                f"could not download {name}.gz for {spec.name} ({'; '.join(errors)}). This machine may "
                f"have no internet: copy the four published .gz files into {folder} "
                f"by hand."
            )
    return folder
