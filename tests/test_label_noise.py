"""Synthetic label noise: the realised rate is the nominal one, flips go where the definition
says, asymmetric flips act once on the original labels, and a seed reproduces the draw."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from benchmarks.data.label_noise import CIFAR10_PAIRS, asymmetric, symmetric
from benchmarks.errors import ConfigError


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 400), k=st.integers(2, 12), rate=st.floats(0, 1), seed=st.integers(0, 9))
def test_symmetric_noise_realises_its_rate_and_never_keeps_a_flipped_label(n, k, rate, seed):
    labels = np.random.default_rng(seed).integers(0, k, size=n)
    noisy, clean = symmetric(labels, rate, k, np.random.default_rng(seed))
    assert (~clean).sum() == round(rate * n)  # the rate is the fraction of wrong labels ...
    assert np.array_equal(noisy != labels, ~clean)  # ... and every flipped label is wrong
    assert noisy.min() >= 0 and noisy.max() < k


def test_a_flipped_label_is_uniform_over_the_other_classes():
    k, n = 10, 60_000
    labels = np.zeros(n, dtype=np.int64)
    noisy, clean = symmetric(labels, 0.5, k, np.random.default_rng(0))
    counts = np.bincount(noisy[~clean], minlength=k)
    assert counts[0] == 0
    assert stats.chisquare(counts[1:]).pvalue > 1e-3  # uniform over classes 1 .. 9


def test_the_common_slip_would_realise_a_lower_rate():
    """Drawing the new label from all K classes (as MW-Net's uniform_mix_C does) realises
    r·(K−1)/K: the definition here does not."""
    labels = np.random.default_rng(1).integers(0, 10, size=20_000)
    rng = np.random.default_rng(2)
    slip = np.where(rng.random(len(labels)) < 0.5, rng.integers(0, 10, len(labels)), labels)
    assert abs((slip != labels).mean() - 0.45) < 0.01
    noisy, _ = symmetric(labels, 0.5, 10, np.random.default_rng(2))
    assert (noisy != labels).mean() == 0.5


def test_asymmetric_noise_flips_each_pair_once_on_the_original_labels():
    labels = np.repeat(np.arange(10), 1000)
    noisy, clean = asymmetric(labels, 0.4, 10, np.random.default_rng(0))
    for c in range(10):
        members = labels == c
        if c in CIFAR10_PAIRS:
            assert (~clean[members]).sum() == 400
            assert set(noisy[members & ~clean]) == {CIFAR10_PAIRS[c]}
        else:
            assert clean[members].all()
    assert np.array_equal(noisy != labels, ~clean)  # a cat made a dog is not made a cat again
    assert (~clean).mean() == pytest.approx(0.2)  # 5 of 10 classes at 0.4


def test_a_seed_reproduces_the_noise_and_another_seed_changes_it():
    labels = np.random.default_rng(3).integers(0, 10, size=500)
    a = symmetric(labels, 0.5, 10, np.random.default_rng(7))
    b = symmetric(labels, 0.5, 10, np.random.default_rng(7))
    c = symmetric(labels, 0.5, 10, np.random.default_rng(8))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("call, message", [
    (lambda: symmetric(np.array([0, 1]), 1.5, 2, np.random.default_rng(0)), "rate must lie"),
    (lambda: symmetric(np.array([0, 3]), 0.5, 3, np.random.default_rng(0)), "must lie in 0 .. 2"),
    (lambda: symmetric(np.array([0.5]), 0.5, 3, np.random.default_rng(0)), "integer array"),
    (lambda: asymmetric(np.array([0, 1]), 0.5, 2, np.random.default_rng(0), {0: 0}),
     "not flips"),
])
def test_bad_noise_settings_are_refused(call, message):
    with pytest.raises(ConfigError, match=message):
        call()
