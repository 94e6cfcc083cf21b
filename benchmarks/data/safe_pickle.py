"""Load pickled data without executing arbitrary code: a restricted unpickler.

CIFAR-10's python batches and CIFAR-10N's label file are pickles. A pickle can name any callable
(``os.system`` included), so ``pickle.load`` or torch's loader with ``weights_only=False`` on a file from
the internet runs whatever it says. These formats only need dicts, lists, strings, bytes, ints and
numpy arrays, so :class:`RestrictedUnpickler` resolves exactly the globals that rebuild a numpy
array (``numpy.core.multiarray._reconstruct`` or numpy 2's ``numpy._core`` spelling,
``numpy.ndarray``, ``numpy.dtype``, ``numpy.core.multiarray.scalar``) and ``_codecs.encode``
(how protocol 2 writes bytes), and refuses every other global and every persistent id (a torch
tensor's storage). Anything that goes wrong is a :class:`~benchmarks.errors.DataError` naming
the file.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

from ..errors import DataError

ALLOWED: frozenset[tuple[str, str]] = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
})


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> Any:
    """numpy's array-rebuilding entry point, as pickles call it (an empty array whose state
    follows), refusing any other shape: the shape is taken from the file, and an object array of
    that shape would be allocated before the state is checked."""
    import numpy as np

    if subtype is not np.ndarray or tuple(shape) != (0,):
        raise pickle.UnpicklingError("the file rebuilds an array in a way numpy's pickles never do")
    return np.ndarray.__new__(np.ndarray, (0,), dtype=np.uint8)


def _dtype(spec: Any, align: Any = False, copy: Any = False) -> Any:
    """``numpy.dtype`` for numeric and byte/str dtypes only: an object dtype would let the array's
    state hold arbitrary pickled objects."""
    import numpy as np

    dtype = np.dtype(spec, align=bool(align), copy=bool(copy))
    if dtype.hasobject:
        raise pickle.UnpicklingError("the file holds an object array, which this format never holds")
    return dtype


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds containers, strings, numbers and numpy arrays only."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED:
            raise pickle.UnpicklingError(f"the file names {module}.{name}, which this data format "
                                         "never holds; refusing to load it")
        if name == "_reconstruct":
            return _reconstruct
        if name == "dtype":
            return _dtype
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("the file holds torch tensors (persistent ids), which this "
                                     "data format never holds")


def loads(data: bytes, what: str, encoding: str = "bytes") -> Any:
    """The object pickled in ``data``; DataError naming ``what`` for anything it cannot be.

    ``encoding``: how Python 2 strings are read (``bytes`` for CIFAR-10's batches, as its authors
    document)."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()
    except Exception as e:  # noqa: BLE001 (untrusted bytes: any failure is a bad file)
        raise DataError(f"{what} is not a readable pickle of this format ({type(e).__name__}: "
                        f"{str(e)[:200]}); the file is corrupt, truncated or not the published one"
                        ) from None


def load_torch_saved(path: Path, what: str) -> Any:
    """The object in a file written by ``torch.save`` (its zip format, holding ``<name>/data.pkl``),
    unpickled with :class:`RestrictedUnpickler` (no torch needed, no code run)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if len(names) != 1:
                raise DataError(f"{what} ({path}) is a zip file without exactly one data.pkl: "
                                "not a torch-saved file")
            info = archive.getinfo(names[0])
            if info.file_size > 32 << 20:
                raise DataError(f"{what} ({path}) declares a {info.file_size:,}-byte pickle; "
                                "the published file holds 2.4 MB")
            data = archive.read(names[0])
    except DataError:
        raise
    except (OSError, zipfile.BadZipFile, EOFError, ValueError, RuntimeError, NotImplementedError,
            KeyError) as e:
        raise DataError(f"{what} ({path}) is not a readable torch-saved file "
                        f"({type(e).__name__}: {str(e)[:200]})") from None
    return loads(data, f"{what} ({path})", encoding="latin1")
