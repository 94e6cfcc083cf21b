"""``weights_status`` for runs recorded before the suite computed it (from their stored weights),
and the summary of a results directory with it filled in."""

from __future__ import annotations

import json

import pandas as pd
import torch

from ..config import RunSpec
from ..harness import target_count
from ..scenarios import get_scenario
from ..store import Store
from ..weight_health import weight_stats, weights_status
from .summary import summarize


def fill_weights_status(runs: pd.DataFrame, store: Store) -> pd.DataFrame:
    """``runs`` with ``weights_status`` filled in, from ``weights/<run_id>.csv``, where it is
    missing for an ok run (the same statistics the harness takes at the last evaluation)."""
    runs = runs.copy()
    if "weights_status" not in runs.columns:
        runs["weights_status"] = ""
    runs["weights_status"] = runs["weights_status"].astype(object).fillna("").astype(str)
    for i in runs.index[(runs["weights_status"] == "") & (runs["status"] == "ok")]:
        weights = store.weights(str(runs.at[i, "run_id"]))
        if weights is None:
            continue
        config = json.loads(runs.at[i, "config_json"])
        config.pop("suite_version", None)
        spec = RunSpec(**config)
        w = torch.from_numpy(weights["weight"].to_numpy(dtype=float, copy=True))
        runs.at[i, "weights_status"] = weights_status(
            weight_stats(w), target_count(spec, get_scenario(spec.scenario), len(w)))
    return runs


def summarize_store(store: Store, compare_on: str = "test", controls_side_by_side: bool = False
                    ) -> pd.DataFrame:
    """``summarize`` of a results directory, ``weights_status`` filled in for older runs."""
    return summarize(fill_weights_status(store.runs(), store), store.curves(), compare_on,
                     controls_side_by_side)
