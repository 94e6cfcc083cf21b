"""Synthetic label noise for the ``denoising`` scenario (paper Sec. 5.2).

Two kinds, both drawn from a seed the run records, both returning the corrupted labels and the
mask of points whose label is still right (the ground-truth groups ``clean`` / ``noisy``):

- **symmetric at rate r**: exactly round(r·N) points, chosen uniformly without replacement, get a
  label drawn uniformly from the K − 1 *other* classes, so the realised noise rate is r (up to
  1/N). The common slip, used by Meta-Weight-Net's ``uniform_mix_C`` (a corruption matrix with
  r/K everywhere plus 1 − r on the diagonal), draws from all K classes, so a "flipped" label
  lands on the true class with probability 1/K and the realised rate is r·(K − 1)/K (0.45 at a
  nominal 0.5 for CIFAR-10). Here a rate means the fraction of wrong labels.
- **asymmetric at rate r**: for each class c that has a partner in ``pairs`` (CIFAR-10's usual
  truck→automobile, bird→airplane, deer→horse, cat↔dog), exactly round(r·n_c) of its points,
  chosen uniformly, take the partner's label. Flips are decided on the original labels, once: a
  cat relabelled dog is never flipped back, and the cat↔dog swap is one simultaneous draw. The
  realised rate over the whole set is r times the share of the data in the flipped classes
  (0.2 at r = 0.4 on balanced CIFAR-10, where 5 of 10 classes flip).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import ConfigError

# CIFAR-10 class indices: 0 airplane, 1 automobile, 2 bird, 3 cat, 4 deer, 5 dog, 6 frog,
# 7 horse, 8 ship, 9 truck. The flips of Patrini et al. (2017) used by the noisy-label papers.
CIFAR10_PAIRS: dict[int, int] = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}


def _checked(labels: np.ndarray, rate: float, n_classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ConfigError(f"labels must be a 1-D integer array, got {labels.dtype} "
                          f"{labels.shape}")
    if not 0.0 <= rate <= 1.0:
        raise ConfigError(f"noise rate must lie in [0, 1], got {rate}")
    if n_classes < 2:
        raise ConfigError(f"label noise needs at least 2 classes, got {n_classes}")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise ConfigError(f"labels must lie in 0 .. {n_classes - 1}")
    return labels


def symmetric(labels: np.ndarray, rate: float, n_classes: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric noise at ``rate`` (module docstring). ``labels``: int array (N,) in
    0 .. n_classes − 1. Returns ``(noisy, clean)``: the corrupted labels (N,) and a bool mask (N,)
    of the points whose label was kept; ``(~clean).sum() == round(rate·N)``. Raises ConfigError
    for a rate outside [0, 1], fewer than 2 classes or labels out of range."""
    labels = _checked(labels, rate, n_classes)
    noisy = labels.copy()
    flipped = rng.choice(len(labels), size=round(rate * len(labels)), replace=False)
    # a uniform draw from the K − 1 other classes: shift by 1 .. K − 1 modulo K
    noisy[flipped] = (labels[flipped] + rng.integers(1, n_classes, size=len(flipped))) % n_classes
    clean = np.ones(len(labels), dtype=bool)
    clean[flipped] = False
    return noisy, clean


def asymmetric(labels: np.ndarray, rate: float, n_classes: int, rng: np.random.Generator,
               pairs: Mapping[int, int] = CIFAR10_PAIRS) -> tuple[np.ndarray, np.ndarray]:
    """Class-pair noise at ``rate`` (module docstring): in each class c of ``pairs``, exactly
    round(rate·n_c) points take label ``pairs[c]``, decided on the original labels. Returns
    ``(noisy, clean)`` as :func:`symmetric`. Raises ConfigError as :func:`symmetric`, and for a
    pair outside the classes or onto itself."""
    labels = _checked(labels, rate, n_classes)
    bad = {c: d for c, d in pairs.items() if not (0 <= c < n_classes and 0 <= d < n_classes)
           or c == d}
    if bad:
        raise ConfigError(f"class pairs {bad} are not flips between two of the {n_classes} "
                          "classes")
    noisy = labels.copy()
    clean = np.ones(len(labels), dtype=bool)
    for source, target in sorted(pairs.items()):
        members = np.flatnonzero(labels == source)  # the original labels: no second flip
        chosen = rng.choice(members, size=round(rate * len(members)), replace=False)
        noisy[chosen] = target
        clean[chosen] = False
    return noisy, clean
