"""scikit-learn's bundled 8x8 handwritten digits (1,797 images, about 180 per class).

Offline and tiny. A fixed 40% of each class (split with seed 0, the same for every run) is the
test pool; the rest is the train pool. Pixels (0..16) are scaled to [0, 1] and standardised.
"""

from __future__ import annotations

import numpy as np

from .base import Labeled, SourceData

TEST_FRACTION = 0.4


def load_digits() -> SourceData:
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None]
    x = (x - x.mean()) / x.std()
    y = bunch.target.astype(np.int64)
    rng = np.random.default_rng(0)
    test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        test[members[: int(round(TEST_FRACTION * len(members)))]] = True
    return SourceData("digits", Labeled(x[~test], y[~test]), Labeled(x[test], y[test]))
