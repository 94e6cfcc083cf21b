"""Weight quality: how well a method's final weights find the points that matter.

For a run's final weights w_i over Dt (``weights/<run_id>.csv``) and the group a good method
favours (``minority`` on balancing, ``clean`` on denoising, ``target`` on efficient learning):

    AUROC       = P(w_i > w_j) + ½·P(w_i = w_j), i favoured, j not (``weight_health.auroc``;
                  1 perfect, ½ chance);
    precision@k = the share of the favoured group among the k = ⌊β·N_t⌋ highest weights, β the
                  run's selection ratio. Ties at the k-th weight are shared out evenly (the
                  expected precision under a random tie-break), so equal weights score the base
                  rate n_favoured / N_t and never an order-dependent number.

Examples without a weight (NaN: ``l2rw`` before it has seen them) rank below every weight.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from ..weight_health import auroc

FAVOURED_GROUPS = ("minority", "clean", "target", "useful")  # first match in a file's groups


def favoured_group(groups: pd.Series) -> str | None:
    """The favoured group among a weights file's group names (None if it has none of them)."""
    present = set(groups.astype(str).unique())
    return next((g for g in FAVOURED_GROUPS if g in present), None)


def precision_at_k(weights: np.ndarray, positive: np.ndarray, k: int) -> float:
    """Expected share of ``positive`` among the ``k`` largest ``weights`` (ties at the cut shared
    out evenly; NaN weights rank last). NaN for k < 1."""
    if k < 1 or len(weights) == 0:
        return math.nan
    k = min(k, len(weights))
    w = np.where(np.isnan(weights), -np.inf, weights.astype(float))
    cut = np.sort(w)[::-1][k - 1]
    above = w > cut
    tied = w == cut
    from_tied = k - int(above.sum())
    hits = positive[above].sum() + from_tied * positive[tied].sum() / tied.sum()
    return float(hits / k)


def beta_of(config_json: str, default: float | None = None) -> float | None:
    """The run's selection ratio β: its ``beta`` hyperparameter, else ``default``."""
    beta = json.loads(config_json).get("hparams", {}).get("beta")
    return default if beta is None else float(beta)


def weight_quality(weights: pd.DataFrame, beta: float | None) -> dict[str, float]:
    """{auroc, precision, base_rate, k} of one run's final weights (columns weight, group)."""
    group = favoured_group(weights["group"])
    if group is None:
        return {"auroc": math.nan, "precision": math.nan, "base_rate": math.nan, "k": math.nan}
    w = weights["weight"].to_numpy(dtype=float)
    positive = (weights["group"].astype(str) == group).to_numpy()
    keep = ~np.isnan(w)
    k = math.floor(beta * len(w) + 1e-9) if beta is not None else None
    return {"auroc": auroc(w[keep], positive[keep]) if keep.any() else math.nan,
            "precision": precision_at_k(w, positive, k) if k else math.nan,
            "base_rate": float(positive.mean()), "k": float(k) if k else math.nan}


def quality_of_runs(runs: pd.DataFrame, load_weights, default_beta=None) -> pd.DataFrame:
    """One row per ok run with stored weights: run_id, favoured, auroc, precision, base_rate, k.

    ``load_weights(run_id)`` returns the run's weights frame or None (``Store.weights``);
    ``default_beta(run_row)`` gives β for a method without its own (the scenario's shared one)."""
    rows = []
    for row in runs[runs["status"] == "ok"].itertuples(index=False):
        weights = load_weights(str(row.run_id))
        if weights is None or weights.empty:
            continue
        fallback = default_beta(row) if default_beta is not None else None
        q = weight_quality(weights, beta_of(row.config_json, fallback))
        rows.append({"run_id": row.run_id, "favoured": favoured_group(weights["group"]), **q})
    return pd.DataFrame(rows, columns=["run_id", "favoured", "auroc", "precision", "base_rate", "k"])


def category_weights(runs: pd.DataFrame, load_weights) -> pd.DataFrame:
    """Per ok run whose weights carry each example's ``category`` (the efficient scenario's
    WebNLG categories): one row per (run, category) with the category's group, its mean weight
    and that mean relative to the run's mean weight over all of Dt (1 = no preference; methods
    with different weight scales compare on it). Columns run_id, category, group, mean_weight,
    relative; empty when no run has categories."""
    rows = []
    for row in runs[runs["status"] == "ok"].itertuples(index=False):
        weights = load_weights(str(row.run_id))
        if weights is None or weights.empty or "category" not in weights.columns:
            continue
        overall = float(np.nanmean(weights["weight"].to_numpy(dtype=float)))
        for (category, group), part in weights.groupby(["category", "group"], sort=True):
            mean = float(np.nanmean(part["weight"].to_numpy(dtype=float)))
            rows.append({"run_id": row.run_id, "category": category, "group": group,
                         "mean_weight": mean,
                         "relative": mean / overall if overall else math.nan})
    return pd.DataFrame(rows, columns=["run_id", "category", "group", "mean_weight", "relative"])
