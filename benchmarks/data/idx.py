"""Reader for the IDX format of MNIST and Fashion-MNIST, gzip-compressed or raw.

Layout: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions d,
then d big-endian int32 sizes, then the data in C order.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    """Hex MD5 of a file's bytes."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (gzip detected by its magic bytes, not its name)."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: gzip stream is corrupt ({e}); download the file again") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(
            f"{path}: IDX header says shape {shape} ({expected} bytes) but the file has "
            f"{len(raw)} bytes; the file is truncated or corrupt"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> None:
    """Write ``array`` (uint8) as an IDX file; used to make fixtures in the real format."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape
    )
    payload = header + array.tobytes()
    Path(path).write_bytes(gzip.compress(payload, mtime=0) if compress else payload)
