"""Is a run's weight vector degenerate? Statistics and a status per evaluation.

For the weights w_i ≥ 0 of the examples that have one (NaN marks "no weight yet"):

    ESS = (Σ w_i)² / Σ w_i²    (effective sample size: N for equal weights, k for k equal non-zeros)

- ``collapsed``: every weight lies in a tiny band near 0 (max w_i < ZERO_BAND), or the weight
  sits on a handful of points: ESS < COLLAPSED_ESS · ⌊β·N_t⌋, with β the run's selection ratio
  (its ``beta`` hyperparameter, or the scenario's shared one);
- ``uniform``: the weights no longer discriminate (saturated, or all alike): ESS ≥ UNIFORM_ESS · N,
  i.e. their coefficient of variation is below √(1/UNIFORM_ESS − 1) ≈ 0.1;
- ``ok`` otherwise.
Statuses are scale-free except ZERO_BAND: weights normalised per batch (l2rw) have mean 1, sigmoid
weights (bads, blo, mwn) live in (0, 1), selection masks (cds, classact) are 0/1.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

ZERO_BAND = 1e-3
COLLAPSED_ESS = 0.2
UNIFORM_ESS = 0.99
DEGENERATE = ("collapsed", "uniform")


def weight_stats(weights: Tensor) -> dict[str, float]:
    """n (examples with a weight), ess, spread (standard deviation) and max of the weights."""
    w = weights.detach().double().cpu().flatten()
    w = w[~torch.isnan(w)]
    if len(w) == 0:
        return {"n": 0.0, "ess": math.nan, "spread": math.nan, "max": math.nan}
    total, squares = float(w.sum()), float((w * w).sum())
    return {"n": float(len(w)), "ess": total * total / squares if squares > 0 else 0.0,
            "spread": float(w.std(unbiased=False)), "max": float(w.max())}


def weights_status(stats: dict[str, float], target_count: float | None) -> str:
    """``ok``, ``collapsed`` or ``uniform`` from ``weight_stats``; '' when no example has a weight.

    ``target_count`` is ⌊β·N_t⌋, the number of points the selection ratio keeps (None: skip the
    ESS-collapse test)."""
    if stats["n"] == 0:
        return ""
    if stats["max"] < ZERO_BAND:
        return "collapsed"
    if target_count and stats["ess"] < COLLAPSED_ESS * target_count:
        return "collapsed"
    if stats["ess"] >= UNIFORM_ESS * stats["n"]:
        return "uniform"
    return "ok"
