"""Per-method summary of a results directory: mean and spread over seeds of every run column."""

from __future__ import annotations

import pandas as pd

KEYS = ["scenario", "source", "profile", "method"]


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (scenario, source, profile, method) over the runs whose status is ok.

    Columns: n (seeds), final_mean, final_std, best_mean, time_ms (median over seeds),
    peak_mb (max over seeds), and n_bad (runs that diverged or failed).
    """
    if runs.empty:
        return pd.DataFrame(columns=KEYS + ["n", "final_mean", "final_std", "best_mean",
                                            "time_ms", "peak_mb", "n_bad"])
    ok = runs[runs["status"] == "ok"]
    table = ok.groupby(KEYS, sort=False).agg(
        metric=("metric_name", "first"), n=("seed", "count"),
        final_mean=("final_metric", "mean"), final_std=("final_metric", "std"),
        best_mean=("best_metric", "mean"), time_ms=("time_per_step_ms", "median"),
        peak_mb=("peak_mem_mb", "max"),
    )
    bad = runs[runs["status"] != "ok"].groupby(KEYS, sort=False).size().rename("n_bad")
    table = table.join(bad, how="outer").fillna({"n_bad": 0, "n": 0})
    return table.astype({"n": int, "n_bad": int}).reset_index()


def to_markdown(table: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub-flavoured markdown table (no optional dependency on ``tabulate``)."""
    cols = list(table.columns)

    def fmt(v) -> str:
        if isinstance(v, float):
            return "" if pd.isna(v) else f"{v:.{digits}g}" if abs(v) >= 1e4 else f"{v:.{digits}f}"
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)
