"""Confidence intervals over seeds: the 95% percentile bootstrap of a mean (scipy.stats.bootstrap).

The outcome of one short training can flip with a rounding change, so a mean over three seeds
decides little. Every mean in the report comes with its bootstrap interval over seeds, and a
comparison counts as resolved only when the interval of the (paired) difference excludes 0.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 9999
SEED = 0  # the bootstrap's own seed: the same store gives the same intervals


def mean_ci(values) -> tuple[float, float]:
    """(low, high) of the 95% percentile bootstrap interval of the mean of ``values`` (one per
    seed; NaNs dropped). (nan, nan) with fewer than 2 values; (v, v) when all are equal."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if len(x) < 2:
        return float("nan"), float("nan")
    if np.ptp(x) == 0:
        return float(x[0]), float(x[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few distinct resamples with 3 seeds: said in the README
        res = stats.bootstrap((x,), np.mean, confidence_level=CONFIDENCE, n_resamples=RESAMPLES,
                              method="percentile", random_state=np.random.default_rng(SEED))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def compare(differences) -> str:
    """The verdict on paired differences a − b over common seeds: ``better`` (the interval of
    their mean lies above 0), ``not better`` (the interval lies at or below 0: never better), or
    ``unresolved`` (it contains 0, or fewer than 2 seeds)."""
    low, high = mean_ci(differences)
    if np.isnan(low):
        return "unresolved"
    if low > 0:
        return "better"
    if high <= 0:
        return "not better"
    return "unresolved"
