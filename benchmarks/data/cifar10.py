"""CIFAR-10 from the official python batches, or from an ImageFolder of its images.

- ``cifar10``: ``<data_dir>/cifar-10-batches-py/`` (or ``<data_dir>/cifar10/cifar-10-batches-py/``)
  with ``data_batch_1`` … ``data_batch_5`` and ``test_batch`` as published by A. Krizhevsky, each
  MD5-verified, read with the restricted unpickler (:mod:`.safe_pickle`). The training pool is in
  the official order (batch 1 to 5).
- ``cifar10-images``: ``<data_dir>/cifar10-images/`` holding ``train/<class>/*.jpg`` and
  ``test/<class>/*.jpg`` (the common ImageFolder layout; class folders named as CIFAR-10's labels
  airplane … truck, CIFAR-10's labels 0-9 in that order), either extracted or as one ``*.tar.gz``
  of that layout. Decoded with Pillow; the decoded
  arrays are cached in ``$DPS_CACHE_DIR`` (default ``~/.cache/dps-bench``) as ``.npz``, keyed by
  the content (the archive's MD5, or every file's name, size and mtime), read back with
  ``allow_pickle=False``. The training pool is in class-folder order (class 0's files, numbered
  names by number, then class 1's, …); where each class's files are named 0 … n_c − 1
  (``order="class-folder"``), :func:`official_order` rebuilds the official order, the k-th file
  of a class being its k-th image in CIFAR-10's order (as ``../shared/data/SOURCES.md`` documents
  for the common re-encoding); other names give ``order="unnumbered"``, which cannot be rebuilt.

Both return images as float32 [N, 3, 32, 32], scaled to [0, 1] and standardised per channel with
the training set's mean and std (the values everyone uses for CIFAR-10), and int64 labels.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError
from .base import Labeled, SourceData
from .idx import md5sum
from .safe_pickle import loads

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")
MEAN = np.array([0.4914, 0.4822, 0.4465], dtype=np.float32)
STD = np.array([0.2470, 0.2435, 0.2616], dtype=np.float32)
BATCHES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
           "test_batch")
BATCH_MD5 = {  # published with the python version (cifar-10-python.tar.gz, c58f30108f718f92721af3b95e74349a)
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
PIXELS = 3 * 32 * 32


def standardise(images: np.ndarray) -> np.ndarray:
    """uint8 [N, 32, 32, 3] (HWC) or [N, 3, 32, 32] (CHW) -> float32 [N, 3, 32, 32] standardised."""
    if images.shape[-1] == 3:
        images = images.transpose(0, 3, 1, 2)
    x = images.astype(np.float32) / 255.0
    return (x - MEAN[None, :, None, None]) / STD[None, :, None, None]


# ---------------------------------------------------------------------------- python batches

def batches_dir(root: Path | None) -> Path:
    candidates = [root / "cifar-10-batches-py", root / "cifar10" / "cifar-10-batches-py"] if root else []
    for folder in candidates:
        if folder.is_dir():
            return folder
    where = ", ".join(map(str, candidates)) or "nowhere (no --data-dir and no DPS_DATA_DIR)"
    raise DataError(f"cifar10: the folder cifar-10-batches-py/ was not found; looked in {where}. "
                    "Pass --data-dir DIR (or set DPS_DATA_DIR) where DIR/cifar-10-batches-py/ holds "
                    f"{', '.join(BATCHES)} (extract cifar-10-python.tar.gz there), or fetch it "
                    "with `dps-bench download cifar10 --data-dir DIR`.")


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One python batch: images uint8 [n, 3, 32, 32] and labels int64 [n]. DataError if the file
    is not a CIFAR-10 batch (a dict with ``data``: uint8 [n, 3072] and ``labels``: n ints 0-9)."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cifar10: cannot read {path}: {e.strerror or e}") from None
    batch = loads(raw, f"cifar10 batch {path}")
    if not isinstance(batch, dict):
        raise DataError(f"cifar10 batch {path} holds a {type(batch).__name__}, not the format's dict")
    entries = {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in batch.items()}
    data, labels = entries.get("data"), entries.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != PIXELS:
        raise DataError(f"cifar10 batch {path}: 'data' is not a uint8 array of shape [n, {PIXELS}]")
    if not isinstance(labels, list | np.ndarray):
        raise DataError(f"cifar10 batch {path}: 'labels' is missing or not a list")
    if not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in labels):
        raise DataError(f"cifar10 batch {path}: 'labels' are not integers")
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"cifar10 batch {path}: 'labels' are not integers") from None
    if y.shape != (len(data),) or (len(y) and (y.min() < 0 or y.max() > 9)):
        raise DataError(f"cifar10 batch {path}: {len(data)} images but labels of shape {y.shape} "
                        "or outside 0-9")
    return data.reshape(-1, 3, 32, 32), y


def load_cifar10_batches(root: Path | None, check_md5: bool = True) -> SourceData:
    """Train pool (50,000, official order) and test pool (10,000) from the python batches."""
    folder = batches_dir(root)
    missing = [n for n in BATCHES if not (folder / n).is_file()]
    if missing:
        raise DataError(f"cifar10: {folder} lacks {', '.join(missing)}; extract the whole "
                        "cifar-10-python.tar.gz there")
    if check_md5:
        bad = [n for n in BATCHES if md5sum(folder / n) != BATCH_MD5[n]]
        if bad:
            raise DataError(f"cifar10: {', '.join(str(folder / n) for n in bad)} failed the MD5 "
                            "check against the published checksums: corrupt, truncated or not the "
                            "published files. Download cifar-10-python.tar.gz again.")
    parts = [read_batch(folder / n) for n in BATCHES]
    train_x = np.concatenate([p[0] for p in parts[:5]])
    train_y = np.concatenate([p[1] for p in parts[:5]])
    return SourceData("cifar10", Labeled(standardise(train_x), train_y),
                      Labeled(standardise(parts[5][0]), parts[5][1]))


# ---------------------------------------------------------------------------- image folder

def images_location(root: Path | None) -> Path:
    """``<root>/cifar10-images``: a folder with train/ and test/, or one holding a .tar.gz."""
    folder = root / "cifar10-images" if root else None
    if folder is not None and folder.is_dir():
        if (folder / "train").is_dir() and (folder / "test").is_dir():
            return folder
        archives = sorted(folder.glob("*.tar.gz")) + sorted(folder.glob("*.tgz"))
        if len(archives) == 1:
            return archives[0]
        if len(archives) > 1:
            raise DataError(f"cifar10-images: {folder} holds several archives "
                            f"({', '.join(a.name for a in archives)}); keep one")
    where = folder or "nowhere (no --data-dir and no DPS_DATA_DIR)"
    raise DataError(
        f"cifar10-images: no image folder found at {where}. "
        "Pass --data-dir DIR where DIR/cifar10-images/ holds train/<class>/*.jpg and "
        "test/<class>/*.jpg (class folders airplane … truck), or one .tar.gz of that layout.")


def _member_class(name: str) -> tuple[str, int, str] | None:
    """(split, class index, file name) of an archive or folder path ``…/train/cat/0001.jpg``."""
    parts = name.replace("\\", "/").strip("/").split("/")
    if len(parts) < 3 or parts[-3] not in ("train", "test") or parts[-2] not in CLASSES:
        return None
    if parts[-1].startswith("._") or not parts[-1].lower().endswith((".jpg", ".jpeg", ".png")):
        return None  # "._x.jpg": macOS metadata, not an image
    return parts[-3], CLASSES.index(parts[-2]), parts[-1]


def _file_order(name: str) -> tuple[int, int, str]:
    """Sort key of a file name: numbered names by their number (``2.jpg`` before ``10.jpg``),
    then the others by name."""
    stem = name.rsplit(".", 1)[0]
    return (0, int(stem), name) if stem.isdigit() else (1, 0, name)


def _decode(payload: bytes, where: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(payload)) as im:
            if im.size != (32, 32):
                raise DataError(f"cifar10-images: {where} is {im.size[0]}x{im.size[1]}, not 32x32")
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except DataError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Exception) as e:  # noqa: BLE001
        # untrusted bytes: a damaged image may fail anywhere inside the decoder
        raise DataError(f"cifar10-images: {where} is not a readable image "
                        f"({type(e).__name__}: {e})") from None


def _entries(location: Path):
    """Yield (split, class, file name, bytes) for every image of the folder or archive."""
    if location.is_dir():
        for split in ("train", "test"):
            for path in sorted((location / split).rglob("*")):
                found = _member_class(str(path.relative_to(location)))
                if found and path.is_file():
                    try:
                        yield (*found, path.read_bytes())
                    except OSError as e:
                        raise DataError(f"cifar10-images: cannot read {path}: {e.strerror or e}"
                                        ) from None
        return
    try:
        with tarfile.open(location, "r:*") as archive:
            for member in archive:
                found = _member_class(member.name)
                if found is None or not member.isfile():
                    continue
                if member.size > 1 << 20:
                    raise DataError(f"cifar10-images: {member.name} in {location} has "
                                    f"{member.size:,} bytes; a 32x32 image has a few KB")
                handle = archive.extractfile(member)
                yield (*found, handle.read() if handle else b"")
    except (tarfile.TarError, OSError, EOFError, zlib.error, ValueError, UnicodeError) as e:
        raise DataError(f"cifar10-images: {location} is not a readable tar archive ({e}); "
                        "download or copy it again") from None


def decode_folder(location: Path) -> dict[str, np.ndarray]:
    """Decode every image: {train_x, train_y, train_names, test_x, test_y}, uint8 HWC, in
    class-folder order (class by class; within a class numbered file names by number)."""
    found: dict[tuple[str, int, str], np.ndarray] = {}
    for split, label, name, payload in _entries(location):
        key = (split, label, name)
        if key in found:
            raise DataError(f"cifar10-images: {location} holds {split}/{CLASSES[label]}/{name} "
                            "twice (in two folders); keep one copy of the layout")
        found[key] = _decode(payload, f"{split}/{CLASSES[label]}/{name}")
    out = {}
    for split in ("train", "test"):
        keys = sorted((k for k in found if k[0] == split), key=lambda k: (k[1], _file_order(k[2])))
        if not keys:
            raise DataError(f"cifar10-images: {location} has no {split}/<class>/*.jpg images")
        out[f"{split}_x"] = np.stack([found[k] for k in keys])
        out[f"{split}_y"] = np.array([k[1] for k in keys], dtype=np.int64)
        if split == "train":
            out["train_names"] = np.array([k[2] for k in keys], dtype=str)
    return out


def numbered_per_class(labels: np.ndarray, names: np.ndarray) -> bool:
    """True when each class's files are named 0, 1, …, n_c − 1 (any zero padding, any image
    extension) in this order: the numbering that lets the official order be rebuilt."""
    for c in np.unique(labels):
        stems = [n.rsplit(".", 1)[0] for n in names[labels == c]]
        if not all(st.isdigit() for st in stems) or [int(st) for st in stems] != list(range(len(stems))):
            return False
    return True


def _content_key(location: Path) -> str:
    if location.is_file():
        return md5sum(location)
    h = hashlib.md5()
    for path in sorted(location.rglob("*")):
        if path.is_file():
            st = path.stat()
            h.update(f"{path.relative_to(location)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def read_decoded_cache(path: Path) -> dict[str, np.ndarray] | None:
    """The cached decoded arrays, or None if the file is absent, damaged or not such a cache."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: np.asarray(f[k]) for k in ("train_x", "train_y", "train_names", "test_x",
                                                    "test_y")}
    except (OSError, ValueError, KeyError, EOFError, SyntaxError, zipfile.BadZipFile, zlib.error,
            NotImplementedError):  # zipfile's answer to a damaged version or compression field
        return None
    ok = arrays["train_names"].dtype.kind == "U" and arrays["train_names"].shape == \
        arrays["train_y"].shape and all(arrays[f"{s}_x"].dtype == np.uint8 and arrays[f"{s}_x"].ndim == 4
             and arrays[f"{s}_x"].shape[1:] == (32, 32, 3)
             and arrays[f"{s}_y"].dtype.kind in "iu"
             and arrays[f"{s}_y"].shape == arrays[f"{s}_x"].shape[:1] for s in ("train", "test"))
    return arrays if ok else None


def load_cifar10_images(root: Path | None, cache: Path | None = None) -> SourceData:
    """Train and test pools from the image folder (class-folder order), decoded once and cached."""
    from .mnist1d import cache_dir

    location = images_location(root)
    path = (cache or cache_dir()) / f"cifar10-images-{_content_key(location)}.npz"
    arrays = read_decoded_cache(path)
    if arrays is None:
        arrays = decode_folder(location)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    train_y = arrays["train_y"].astype(np.int64)
    numbered = numbered_per_class(train_y, arrays["train_names"])
    return SourceData("cifar10-images",
                      Labeled(standardise(arrays["train_x"]), train_y),
                      Labeled(standardise(arrays["test_x"]), arrays["test_y"].astype(np.int64)),
                      order="class-folder" if numbered else "unnumbered")


def official_order(folder_y: np.ndarray, clean_label: np.ndarray) -> np.ndarray:
    """Positions p with ``pool[p[i]]`` = the i-th image of the official training order, for a
    pool in class-folder order (``folder_y`` sorted by class, each class's files in their
    official order): the i-th official image is the k-th file of class clean_label[i], k the
    number of earlier occurrences of that class. DataError when the counts disagree."""
    clean = np.asarray(clean_label, dtype=np.int64)
    if np.any(np.diff(folder_y) < 0):
        raise DataError("the image pool is not in class-folder order; cannot rebuild the official one")
    counts_pool = np.bincount(folder_y, minlength=len(CLASSES))
    counts_clean = np.bincount(clean, minlength=len(CLASSES)) if len(clean) else counts_pool * 0
    if len(counts_clean) != len(counts_pool) or np.any(counts_pool != counts_clean):
        raise DataError(f"the image folder has {counts_pool.tolist()} training images per class, "
                        f"the label file's clean labels {counts_clean.tolist()}: they are not the "
                        "same 50,000 images")
    starts = np.concatenate([[0], np.cumsum(counts_pool)[:-1]])
    rank = np.empty(len(clean), dtype=np.int64)
    for c in range(len(CLASSES)):
        members = np.flatnonzero(clean == c)
        rank[members] = np.arange(len(members))
    return starts[clean] + rank


# ---------------------------------------------------------------------------- download

ARCHIVE_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"


def extract_batches(archive: Path, root: Path) -> Path:
    """Extract the six batch files of ``archive`` into ``root/cifar-10-batches-py/``: regular files
    of those names only (no links, no paths outside), each then MD5-checked."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    found = set()
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                name = member.name.rsplit("/", 1)[-1]
                if name in BATCH_MD5 and member.isfile():
                    handle = tar.extractfile(member)
                    payload = handle.read() if handle else b""
                    if hashlib.md5(payload).hexdigest() != BATCH_MD5[name]:
                        raise DataError(f"cifar10: {name} in {archive} fails its published MD5")
                    (folder / name).write_bytes(payload)
                    found.add(name)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DataError(f"cifar10: {archive} is not a readable tar.gz ({e})") from None
    missing = sorted(set(BATCHES) - found)
    if missing:
        raise DataError(f"cifar10: {archive} lacks {', '.join(missing)}")
    return folder


def download_cifar10(root: Path, timeout: float = 30.0) -> Path:
    """Fetch cifar-10-python.tar.gz (MD5-verified), extract its batches; for machines online."""
    import http.client
    import tempfile
    import urllib.request

    root.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(ARCHIVE_URL, timeout=timeout) as resp:
            payload = resp.read()
    except (OSError, http.client.HTTPException) as e:
        raise DataError(f"could not download {ARCHIVE_URL} ({e}). This machine may have no "
                        f"internet: download it elsewhere and extract it into {root} "
                        "(cifar-10-batches-py/).") from None
    if hashlib.md5(payload).hexdigest() != ARCHIVE_MD5:
        raise DataError(f"{ARCHIVE_URL} did not match its published MD5 {ARCHIVE_MD5}; try again")
    with tempfile.NamedTemporaryFile(dir=root, suffix=".tar.gz", delete=False) as tmp:
        tmp.write(payload)
    try:
        return extract_batches(Path(tmp.name), root)
    finally:
        os.unlink(tmp.name)
