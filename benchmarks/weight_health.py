"""Is a run's weight vector degenerate? Statistics and a status per evaluation.

For the weights w_i ≥ 0 of the examples that have one (NaN marks "no weight yet"):

    ESS = (Σ w_i)² / Σ w_i²    (effective sample size: N for equal weights, k for k equal non-zeros)
    AUROC = P(w_i > w_j) + ½·P(w_i = w_j), i from the favoured group (minority, clean, target), j
            from the others: how well the weights separate the groups (1 perfect, ½ chance, 0
            reversed); scale-free, like the ESS

- ``collapsed``: the weight sits on a handful of points, ESS < COLLAPSED_ESS · ⌊β·N_t⌋ (β the
  run's selection ratio: its ``beta`` hyperparameter, or the scenario's shared one); or, for
  weights used at their absolute scale, every weight lies in a tiny band near 0
  (max w_i < ZERO_BAND: BADS's literal paper setting, weights ~1e-16, so Dt carries nothing);
- ``uniform``: the weights no longer discriminate (saturated, or all alike): ESS ≥ UNIFORM_ESS · N,
  i.e. their coefficient of variation is below √(1/UNIFORM_ESS − 1) ≈ 0.1;
- ``ok`` otherwise.

The weights are judged as the method trains with them (``Method.weights_relative``): those used
normalised per minibatch, w_i / Σ_{k∈Bt} w_k (blo; mwn's class-imbalance form), carry no meaning
in their scale, so the ZERO_BAND test does not apply to them (blo's raw weights near 1e-12 with a
clear ranking are no collapse). l2rw exports each example's share of its batch times |Bt| (mean 1
over a batch that trained), already the weight as used, so an l2rw whose batches all clipped to
0 is still flagged. The raw scale stays visible in the curves (``mean_weight:<group>``, ``max``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.stats import rankdata
from torch import Tensor

ZERO_BAND = 1e-3
COLLAPSED_ESS = 0.2
UNIFORM_ESS = 0.99
DEGENERATE = ("collapsed", "uniform")


def weight_stats(weights: Tensor, groups: Tensor | None = None) -> dict[str, float]:
    """n (examples with a weight), ess, spread (standard deviation), max, and, given group codes
    (0 = the favoured group), auroc of the weights for telling group 0 from the others."""
    w = weights.detach().double().cpu().flatten()
    keep = ~torch.isnan(w)
    w = w[keep]
    if len(w) == 0:
        return {"n": 0.0, "ess": math.nan, "spread": math.nan, "max": math.nan, "auroc": math.nan}
    total, squares = float(w.sum()), float((w * w).sum())
    stats = {"n": float(len(w)), "ess": total * total / squares if squares > 0 else 0.0,
             "spread": float(w.std(unbiased=False)), "max": float(w.max()), "auroc": math.nan}
    if groups is not None:
        stats["auroc"] = auroc(w.numpy(), groups.detach().cpu().flatten()[keep].numpy() == 0)
    return stats


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for ``positive`` (the Mann-Whitney U statistic over
    n⁺·n⁻, ties counted ½); NaN unless both classes are present."""
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(scores)  # average ranks: ties count ½
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def weights_status(stats: dict[str, float], target_count: float | None,
                   relative: bool = False) -> str:
    """``ok``, ``collapsed`` or ``uniform`` from ``weight_stats``; '' when no example has a weight.

    ``target_count`` is ⌊β·N_t⌋, the number of points the selection ratio keeps (None: skip the
    ESS-collapse test); ``relative``: the weights are used normalised per batch (no ZERO_BAND)."""
    if stats["n"] == 0:
        return ""
    if not relative and stats["max"] < ZERO_BAND:
        return "collapsed"
    if target_count and stats["ess"] < COLLAPSED_ESS * target_count:
        return "collapsed"
    if stats["ess"] >= UNIFORM_ESS * stats["n"]:
        return "uniform"
    return "ok"
