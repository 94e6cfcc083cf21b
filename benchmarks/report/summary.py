"""Per-method summary of a results directory: mean and spread over seeds of every run column."""

from __future__ import annotations

import hashlib
import json

import pandas as pd

from ..weight_health import DEGENERATE

KEYS = ["scenario", "source", "profile", "method", "meta_per_class", "config"]


def config_id(config_json: str) -> str:
    """Short hash of a run's configuration without its seed: runs that differ only by seed share it."""
    config = json.loads(config_json)
    config.pop("seed", None)
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:8]


def final_group_weights(curves: pd.DataFrame) -> pd.DataFrame:
    """Per run_id, the mean weight of each group at the last evaluation (columns w:<group>)."""
    w = curves[(curves["split"] == "weights")
               & curves["metric_name"].astype(str).str.startswith("mean_weight:")]
    if w.empty:
        return pd.DataFrame()
    last = w[w["step"] == w.groupby("run_id")["step"].transform("max")]
    table = last.pivot_table(index="run_id", columns="metric_name", values="value")
    return table.rename(columns=lambda c: "w:" + c.split(":", 1)[-1])


def selected_metric(curves: pd.DataFrame) -> pd.Series:
    """Per run_id, the test metric at the evaluation with the best validation metric (the latest
    such evaluation on ties): checkpoint selection on the validation split, never on test."""
    val = curves[curves["split"] == "val"][["run_id", "step", "value"]]
    test = curves[curves["split"] == "test"][["run_id", "step", "value"]]
    if val.empty or test.empty:
        return pd.Series(dtype=float, name="selected_metric")
    best = val.sort_values(["run_id", "value", "step"]).groupby("run_id").tail(1)
    chosen = best[["run_id", "step"]].merge(test, on=["run_id", "step"])
    return chosen.set_index("run_id")["value"].rename("selected_metric")


def weights_summary(statuses: pd.Series) -> str:
    """'ok 3/3' or 'collapsed 2/3, ok 1/3' from the runs' weights_status values ('' if none)."""
    values = statuses.dropna().astype(str)
    values = values[values != ""]
    if values.empty:
        return ""
    counts = values.value_counts()
    return ", ".join(f"{name} {n}/{len(statuses)}" for name, n in counts.items())


def summarize(runs: pd.DataFrame, curves: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per configuration (scenario, source, profile, method, meta_per_class and every
    other setting and hyperparameter, shown as the ``config`` hash) over the ok runs.

    Columns: n (seeds), final_mean, final_std, selected_mean (the test metric at each run's
    evaluation with the best validation metric), time_ms (median over seeds), peak_mb (max over
    seeds), time_x and mem_x (time_ms and peak_mb over those of ``train_only`` on the same
    scenario, source, profile and meta_per_class, when it ran), n_bad (runs that diverged or
    failed), weights (the runs' ``weights_status`` counts, e.g. ``collapsed 2/3, ok 1/3``),
    n_degenerate (runs whose weights ended collapsed or uniform: not DPS successes) and, given
    the curves, w:<group> (mean over seeds of each group's mean weight at the last evaluation).
    """
    runs = runs.copy()
    if "weights_status" not in runs.columns:
        runs["weights_status"] = ""
    if len(runs):
        settings = runs["config_json"].map(lambda c: json.loads(c)["settings"])
        runs["meta_per_class"] = settings.map(lambda s: s.get("meta_per_class"))
        runs["config"] = runs["config_json"].map(config_id)
    if curves is not None and len(runs):
        runs = runs.join(selected_metric(curves), on="run_id")
        runs = runs.join(final_group_weights(curves), on="run_id")
    if "selected_metric" not in runs.columns:
        runs["selected_metric"] = float("nan")
    if runs.empty:
        return pd.DataFrame(columns=KEYS + ["n", "final_mean", "final_std", "selected_mean",
                                            "time_ms", "peak_mb", "time_x", "mem_x", "n_bad",
                                            "weights", "n_degenerate"])
    ok = runs[runs["status"] == "ok"]
    weight_cols = {c: (c, "mean") for c in runs.columns if c.startswith("w:")}
    table = ok.groupby(KEYS, sort=False, dropna=False).agg(
        metric=("metric_name", "first"), n=("seed", "count"),
        final_mean=("final_metric", "mean"), final_std=("final_metric", "std"),
        selected_mean=("selected_metric", "mean"), time_ms=("time_per_step_ms", "median"),
        peak_mb=("peak_mem_mb", "max"),
        weights=("weights_status", weights_summary),
        n_degenerate=("weights_status", lambda s: int(s.isin(DEGENERATE).sum())),
        **weight_cols,
    )
    bad = runs[runs["status"] != "ok"].groupby(KEYS, sort=False, dropna=False).size().rename("n_bad")
    table = table.join(bad, how="outer").fillna({"n_bad": 0, "n": 0, "n_degenerate": 0})
    table = table.astype({"n": int, "n_bad": int, "n_degenerate": int}).reset_index()
    table["weights"] = table["weights"].fillna("")
    return _relative_to_train_only(table)


def _relative_to_train_only(table: pd.DataFrame) -> pd.DataFrame:
    """Insert time_x and mem_x after peak_mb: ratios to train_only's row in the same block."""
    block = ["scenario", "source", "profile", "meta_per_class"]
    base = table[table["method"] == "train_only"].drop_duplicates(block)
    ref = table[block].merge(base[block + ["time_ms", "peak_mb"]], on=block, how="left")
    at = table.columns.get_loc("peak_mb") + 1
    table.insert(at, "time_x", table["time_ms"].to_numpy() / ref["time_ms"].to_numpy())
    table.insert(at + 1, "mem_x", table["peak_mb"].to_numpy() / ref["peak_mb"].to_numpy())
    return table


def side_by_side(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per (scenario, source, profile, method, meta_per_class) and, per labelled table
    (e.g. ``paper`` and ``tuned`` results), ``<label>`` = "final_mean ± final_std (n)",
    ``<label> selected`` = selected_mean and ``<label> degenerate`` = n_degenerate/n (n/a for
    methods without weights)."""
    block = ["scenario", "source", "profile", "method", "meta_per_class"]
    merged: pd.DataFrame | None = None
    for label, table in tables.items():
        part = table[block].copy()
        part[label] = [f"{m:.4f} ± {0.0 if pd.isna(s) else s:.4f} ({n})" for m, s, n in
                       zip(table["final_mean"], table["final_std"], table["n"], strict=True)]
        part[f"{label} selected"] = table["selected_mean"].to_numpy()
        part[f"{label} degenerate"] = [f"{d}/{n}" if w else "n/a" for d, n, w in
                                       zip(table["n_degenerate"], table["n"], table["weights"],
                                           strict=True)]
        repeated = part[part.duplicated(block, keep=False)]
        if len(repeated):
            rows = ", ".join(sorted({f"{r.method} (Dm {r.meta_per_class})"
                                     for r in repeated.itertuples()}))
            raise ValueError(f"{label}: several configurations of {rows}; a side-by-side "
                             "report needs one per method and Dm size (use the plain report)")
        merged = part if merged is None else merged.merge(part, on=block, how="outer")
    return merged if merged is not None else pd.DataFrame(columns=block)


def to_markdown(table: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub-flavoured markdown table (no optional dependency on ``tabulate``)."""
    cols = list(table.columns)

    def fmt(v) -> str:
        if isinstance(v, float):
            if pd.isna(v):
                return ""
            small_or_large = v != 0 and (abs(v) < 10 ** -(digits - 1) or abs(v) >= 1e4)
            return f"{v:.{digits}g}" if small_or_large else f"{v:.{digits}f}"
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)
