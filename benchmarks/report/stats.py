"""Confidence intervals over seeds: a bootstrap interval of the mean (``scipy.stats.bootstrap``).

The outcome of one short training can flip with a rounding change, so a mean over three seeds
decides little. Every mean in the report comes with a 95% interval over seeds, and a comparison
counts as resolved only when the interval of the paired difference excludes 0 and at least
MIN_SEEDS seeds were compared.

The interval is the percentile bootstrap, *expanded* for small samples (Hesterberg 2015, "What
teachers should know about the bootstrap", The American Statistician 69(4), Sec. 3.3): the
plain percentile interval is too narrow with few seeds (in a simulation of normal samples it
covered the mean 76% of the time with 3 seeds and 86% with 5), so its level is raised to
1 − 2Φ(−√(n/(n−1))·t_{n−1, 0.975}) (99.8% with 5 seeds), which covered it 93% of the time with 5
seeds and 95% with 8. With 3 seeds no bootstrap interval can be wider than the seeds' range, and
its coverage stays near 76%: that is why a comparison needs MIN_SEEDS.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
MIN_SEEDS = 5  # fewer seeds than this never resolve a comparison
RESAMPLES = 9999
SEED = 0  # the bootstrap's own seed: the same store gives the same intervals


def expanded_level(n: int, confidence: float = CONFIDENCE) -> float:
    """The percentile level that gives a ``confidence`` interval with ``n`` values (Hesterberg's
    expansion): 1 − 2Φ(−√(n/(n−1))·t_{n−1, 1−α/2})."""
    alpha = 1 - confidence
    z = np.sqrt(n / (n - 1)) * stats.t.ppf(1 - alpha / 2, n - 1)
    return float(1 - 2 * stats.norm.sf(z))


def mean_ci(values) -> tuple[float, float]:
    """(low, high) of the 95% expanded percentile bootstrap interval of the mean of ``values``
    (one per seed; NaNs dropped). (nan, nan) with fewer than 2 values; (v, v) when all equal."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if len(x) < 2:
        return float("nan"), float("nan")
    if np.ptp(x) == 0:
        return float(x[0]), float(x[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few distinct resamples with 3 seeds: see above
        res = stats.bootstrap((x,), np.mean, confidence_level=expanded_level(len(x)),
                              n_resamples=RESAMPLES, method="percentile",
                              random_state=np.random.default_rng(SEED))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def compare(differences) -> str:
    """The verdict on paired differences a − b over common seeds: ``better`` (the interval of
    their mean lies above 0), ``not better`` (it lies at or below 0: never better), or
    ``unresolved`` (it contains 0, or fewer than MIN_SEEDS seeds)."""
    x = np.asarray(differences, dtype=float)
    x = x[~np.isnan(x)]
    low, high = mean_ci(x)
    if np.isnan(low):
        return "unresolved"
    if high <= 0:
        return "not better"  # e.g. identical results on every seed: no advantage at all
    if len(x) < MIN_SEEDS:
        return "unresolved"
    return "better" if low > 0 else "unresolved"
