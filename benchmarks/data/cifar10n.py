"""CIFAR-10N: real human label noise for CIFAR-10's training images (Wei et al., ICLR 2022).

``<data_dir>/cifar10n/CIFAR-10_human.pt``: a torch-saved dict of six int arrays of length 50,000
in the official training order: ``clean_label``, ``aggre_label`` (9.0% wrong), ``random_label1``
… ``random_label3`` (about 17-18%) and ``worse_label`` (40.2%). It is a pickle, so it is read with
the restricted unpickler (:mod:`.safe_pickle`: numpy arrays only, nothing executed), never with torch's
unrestricted loader (``weights_only=False``), and MD5-verified against the published file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from .idx import md5sum
from .safe_pickle import load_torch_saved

FILE = "CIFAR-10_human.pt"
MD5 = "96644db5574813cae939af5f7f2a0aec"
KINDS = {"aggre": "aggre_label", "random1": "random_label1", "random2": "random_label2",
         "random3": "random_label3", "worse": "worse_label"}
KEYS = ("clean_label", *KINDS.values())


def label_file(root: Path | None) -> Path:
    candidates = [root / "cifar10n" / FILE, root / FILE] if root else []
    for path in candidates:
        if path.is_file():
            return path
    where = ", ".join(map(str, candidates)) or "nowhere (no --data-dir and no DPS_DATA_DIR)"
    raise DataError(f"cifar10n: {FILE} was not found; looked in {where}. Put the file published "
                    f"with CIFAR-10N (github.com/UCSC-REAL/cifar-10-100n, data/{FILE}) in "
                    "DIR/cifar10n/ and pass --data-dir DIR.")


def read_labels(path: Path) -> dict[str, np.ndarray]:
    """Every label array of the file, int64 [N] each, all of one length, values 0-9."""
    obj = load_torch_saved(path, "cifar10n labels")
    if not isinstance(obj, dict):
        raise DataError(f"cifar10n labels ({path}) hold a {type(obj).__name__}, not a dict of arrays")
    missing = [k for k in KEYS if k not in obj]
    if missing:
        raise DataError(f"cifar10n labels ({path}) lack {', '.join(missing)}")
    out = {}
    for key in KEYS:
        value = obj[key]
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "iu" or value.ndim != 1:
            raise DataError(f"cifar10n labels ({path}): {key} is not a 1-D integer array")
        out[key] = value.astype(np.int64)
    lengths = {len(v) for v in out.values()}
    if len(lengths) != 1:
        raise DataError(f"cifar10n labels ({path}): the arrays have different lengths {sorted(lengths)}")
    if any(len(v) and (v.min() < 0 or v.max() > 9) for v in out.values()):
        raise DataError(f"cifar10n labels ({path}): labels outside CIFAR-10's classes 0-9")
    return out


def load_cifar10n(root: Path | None, kind: str, check_md5: bool = True
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(clean labels, human labels of ``kind``: aggre | random1-3 | worse), official order."""
    if kind not in KINDS:
        raise DataError(f"unknown CIFAR-10N label set {kind!r}; choose one of {', '.join(KINDS)}")
    path = label_file(root)
    if check_md5 and md5sum(path) != MD5:
        raise DataError(f"cifar10n: {path} failed the MD5 check against the published file "
                        f"({MD5}): corrupt, truncated or another release. Download it again.")
    labels = read_labels(path)
    return labels["clean_label"], labels[KINDS[kind]]
