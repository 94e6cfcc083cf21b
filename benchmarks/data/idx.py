"""Reader for the IDX format of MNIST and Fashion-MNIST, gzip-compressed or raw.

Layout: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions d,
then d big-endian int32 sizes, then the data in C order.
"""

from __future__ import annotations

import gzip
import hashlib
import math
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


MAX_IDX_BYTES = 1 << 30  # no IDX file of the suite's data sets is near this; a bigger one is an error


def _gunzip(raw: bytes, path: Path) -> bytes:
    """Decompress a gzip file, never to more than MAX_IDX_BYTES (a corrupt or hostile stream
    cannot exhaust memory). Raises DataError."""
    out, stream = bytearray(), zlib.decompressobj(wbits=31)
    data = raw
    try:
        while data:
            out += stream.decompress(data, MAX_IDX_BYTES + 1 - len(out))
            if len(out) > MAX_IDX_BYTES:
                raise DataError(f"{path}: decompresses to more than {MAX_IDX_BYTES >> 20} MiB; "
                                "not an IDX file of MNIST or Fashion-MNIST")
            data = stream.unconsumed_tail
            if stream.eof:
                break
        if not stream.eof:
            raise DataError(f"{path}: gzip stream is truncated or corrupt; download the file again")
    except zlib.error as e:
        raise DataError(f"{path}: gzip stream is corrupt ({e}); download the file again") from e
    return bytes(out)


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (gzip detected by its magic bytes, not its name)."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = _gunzip(raw, path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: IDX header is truncated ({len(raw)} bytes); download the file "
                        "again")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = header + math.prod(shape) * dtype.itemsize
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
