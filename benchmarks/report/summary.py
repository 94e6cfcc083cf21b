"""Per-method summary of a results directory: mean and spread over seeds of every run column."""

from __future__ import annotations

import hashlib
import json

import pandas as pd

from ..weight_health import DEGENERATE
from .stats import mean_ci

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


def val_score(curves: pd.DataFrame, window: int = 3) -> pd.Series:
    """Per run_id, the mean validation metric over its last ``window`` evaluations (the score
    ``dps-bench tune`` ranks configurations by)."""
    val = curves[curves["split"] == "val"].sort_values("step")
    return val.groupby("run_id")["value"].apply(lambda v: v.tail(window).mean()).rename("val_score")


def weight_drivers(curves: pd.DataFrame) -> pd.DataFrame:
    """Per run_id, from the ``weights`` split: ``auroc`` at the last evaluation (how well the
    final weights separate the favoured group), ``data_share`` (median over evaluations of the
    data term's share of φ's gradient) and ``data/prior`` (median over evaluations of
    grad_data / grad_prior), where logged."""
    w = curves[curves["split"] == "weights"]
    out = pd.DataFrame(index=pd.Index(w["run_id"].unique(), name="run_id"))
    if w.empty:
        return out
    table = w.pivot_table(index=["run_id", "step"], columns="metric_name", values="value")
    if "auroc" in table:
        last = table["auroc"].dropna().groupby(level="run_id").last()
        out["auroc"] = last
    if "data_share" in table:
        out["data_share"] = table["data_share"].groupby(level="run_id").median()
    if {"grad_data", "grad_prior"} <= set(table.columns):
        out["data/prior"] = (table["grad_data"] / table["grad_prior"]).groupby(level="run_id").median()
    return out


def varying_params(runs: pd.DataFrame) -> pd.Series:
    """Per run, ``name=value`` of the settings and hyperparameters that differ between the
    configurations of the same method in ``runs`` (a sweep's axes), so rows can be told apart."""
    flat = runs["config_json"].map(_flat_config)
    out = pd.Series("", index=runs.index, dtype=object)
    for _, idx in runs.groupby("method").groups.items():
        configs = flat.loc[idx]
        keys = sorted({k for c in configs for k in c})
        varying = [k for k in keys
                   if k not in ("seed", "meta_per_class") and len({repr(c.get(k)) for c in configs}) > 1]
        out.loc[idx] = [" ".join(f"{k}={c.get(k)!r}" if isinstance(c.get(k), str)
                                 else f"{k}={c.get(k):g}" if isinstance(c.get(k), float)
                                 else f"{k}={c.get(k)}" for k in varying) for c in configs]
    return out


def _flat_config(config_json: str) -> dict:
    config = json.loads(config_json)
    return {"seed": config.get("seed"), **config.get("settings", {}), **config.get("hparams", {})}


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


def summarize(runs: pd.DataFrame, curves: pd.DataFrame | None = None,
              compare_on: str = "test", controls_side_by_side: bool = False) -> pd.DataFrame:
    """One row per configuration (scenario, source, profile, method, meta_per_class and every
    other setting and hyperparameter, shown as the ``config`` hash) over the ok runs.

    Columns: params (the settings and hyperparameters in which this configuration differs from
    the method's others in the table, e.g. a sweep's sigma=1 lr_w=0.01), n (seeds), final_mean,
    final_std, ci_low and ci_high (the 95% bootstrap interval of final_mean over seeds,
    ``stats.mean_ci``), selected_mean (the test metric at each run's evaluation with the best validation
    metric), val_mean (the validation metric over the last 3 evaluations, ``tune``'s score),
    time_ms (median over seeds), peak_mb (max over seeds), time_x and mem_x (time_ms and peak_mb
    over those of ``train_only`` on the same scenario, source, profile and meta_per_class, when
    it ran), weights (the runs' ``weights_status`` counts, e.g. ``collapsed 2/3, ok 1/3``),
    n_degenerate (runs whose weights ended collapsed or uniform: not DPS successes) and, given
    the curves, w:<group> (mean over seeds of each group's mean weight at the last evaluation),
    auroc (mean over seeds of the final weights' separation of the favoured group), data_share
    and data/prior (BADS: the data term's share of φ's gradient, and its ratio to the prior's,
    medians over evaluations, mean and median over seeds), selection and vs_controls (for a
    method whose controls ran in the same block: see ``controls.compare_with_controls``; on the
    final test metric, or with ``compare_on="val"`` on val_score; with
    ``controls_side_by_side``, also each matched control's final_mean, val_mean and auroc as
    ``<control> <column>``), timing ("contended" where some of the runs trained beside others,
    ``--jobs`` > 1, or started on a machine whose load exceeded its cores: their time_ms is not
    a clean measurement), and n_bad (runs that diverged or
    failed).
    """
    from .controls import compare_with_controls

    runs = runs.copy()
    if "weights_status" not in runs.columns:
        runs["weights_status"] = ""
    if len(runs):
        settings = runs["config_json"].map(lambda c: json.loads(c)["settings"])
        runs["meta_per_class"] = settings.map(lambda s: s.get("meta_per_class"))
        runs["config"] = runs["config_json"].map(config_id)
        runs["params"] = varying_params(runs)
    if curves is not None and len(runs):
        runs = runs.join(selected_metric(curves), on="run_id")
        runs = runs.join(val_score(curves), on="run_id")
        runs = runs.join(final_group_weights(curves), on="run_id")
        runs = runs.join(weight_drivers(curves), on="run_id")
    for column in ("selected_metric", "val_score"):
        if column not in runs.columns:
            runs[column] = float("nan")
    if runs.empty:
        return pd.DataFrame(columns=KEYS + ["params", "n", "final_mean", "final_std", "ci_low",
                                            "ci_high",
                                            "selected_mean", "val_mean", "time_ms", "peak_mb",
                                            "time_x", "mem_x", "n_bad", "weights", "n_degenerate"])
    if "jobs" in runs.columns:  # runs trained beside others, or on a busy machine
        nan = pd.Series(float("nan"), index=runs.index)
        jobs = pd.to_numeric(runs["jobs"], errors="coerce")
        load = pd.to_numeric(runs["load_avg"], errors="coerce") if "load_avg" in runs else nan
        cpus = pd.to_numeric(runs["cpus"], errors="coerce") if "cpus" in runs else nan
        runs["contended"] = ((jobs > 1) | (load > cpus)).fillna(False).astype(bool)
    ok = runs[runs["status"] == "ok"]
    extra = {c: (c, "mean") for c in runs.columns if c.startswith("w:")}
    extra.update({c: (c, "mean") for c in ("auroc", "data_share") if c in runs.columns})
    if "data/prior" in runs.columns:
        extra["data/prior"] = ("data/prior", "median")
    if "contended" in runs.columns:
        extra["timing"] = ("contended", lambda c: "contended" if c.any() else "")
    table = ok.groupby(KEYS, sort=False, dropna=False).agg(
        params=("params", "first"), metric=("metric_name", "first"), n=("seed", "count"),
        final_mean=("final_metric", "mean"), final_std=("final_metric", "std"),
        selected_mean=("selected_metric", "mean"), val_mean=("val_score", "mean"),
        time_ms=("time_per_step_ms", "median"), peak_mb=("peak_mem_mb", "max"),
        weights=("weights_status", weights_summary),
        n_degenerate=("weights_status", lambda s: int(s.isin(DEGENERATE).sum())),
        **extra,
    )
    intervals = ok.groupby(KEYS, sort=False, dropna=False)["final_metric"].apply(mean_ci)
    table.insert(table.columns.get_loc("final_std") + 1, "ci_low",
                 intervals.map(lambda ci: ci[0]).reindex(table.index))
    table.insert(table.columns.get_loc("ci_low") + 1, "ci_high",
                 intervals.map(lambda ci: ci[1]).reindex(table.index))
    bad = runs[runs["status"] != "ok"].groupby(KEYS, sort=False, dropna=False).size().rename("n_bad")
    table = table.join(bad, how="outer").fillna({"n_bad": 0, "n": 0, "n_degenerate": 0})
    table = table.astype({"n": int, "n_bad": int, "n_degenerate": int}).reset_index()
    table["weights"] = table["weights"].fillna("")
    table["params"] = table["params"].fillna("")
    table = compare_with_controls(table, ok, "val_score" if compare_on == "val" else "final_metric",
                                  controls_side_by_side)
    return _relative_to_train_only(_in_order(table))


def _in_order(table: pd.DataFrame) -> pd.DataFrame:
    """Rows by block (as they first appear), then methods in registry order, then the values of
    the varying parameters (numerically)."""
    from methods import list_methods

    rank = {m: i for i, m in enumerate(list_methods())}
    blocks = ["scenario", "source", "profile", "meta_per_class"]
    first = {key: i for i, key in enumerate(dict.fromkeys(map(tuple, table[blocks].astype(str).values)))}
    keys = [(first[tuple(r)], rank.get(m, len(rank)), m, _param_key(p)) for r, m, p in
            zip(table[blocks].astype(str).values, table["method"], table["params"], strict=True)]
    order = sorted(range(len(table)), key=lambda i: keys[i])
    return table.iloc[order].reset_index(drop=True)


def _param_key(params: str) -> tuple:
    """``lr_w=0.001 sigma=1e-05`` as ((name, number-or-text), ...), for a numeric sort."""
    out = []
    for token in str(params).split():
        name, _, value = token.partition("=")
        try:
            out.append((name, 0, float(value), ""))
        except ValueError:
            out.append((name, 1, 0.0, value))
    return tuple(out)


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
    (e.g. ``paper`` and ``tuned`` results), ``<label>`` = "final_mean ± final_std (n) [95%
    bootstrap interval]",
    ``<label> selected`` = selected_mean, ``<label> degenerate`` = n_degenerate/n (n/a for
    methods without weights) and ``<label> beats controls`` (the ``selection`` verdict where its
    controls ran). Rows in registry order within each block."""
    block = ["scenario", "source", "profile", "method", "meta_per_class"]
    merged: pd.DataFrame | None = None
    for label, table in tables.items():
        part = table[block].copy()
        part[label] = [f"{m:.4f} ± {0.0 if pd.isna(s) else s:.4f} ({n})"
                       + ("" if pd.isna(lo) else f" [{lo:.4f}, {hi:.4f}]")
                       for m, s, n, lo, hi in zip(table["final_mean"], table["final_std"],
                                                  table["n"], table["ci_low"], table["ci_high"],
                                                  strict=True)]
        part[f"{label} selected"] = table["selected_mean"].to_numpy()
        part[f"{label} degenerate"] = [f"{d}/{n}" if w else "n/a" for d, n, w in
                                       zip(table["n_degenerate"], table["n"], table["weights"],
                                           strict=True)]
        if "selection" in table:
            part[f"{label} beats controls"] = table["selection"].to_numpy()
        repeated = part[part.duplicated(block, keep=False)]
        if len(repeated):
            rows = ", ".join(sorted({f"{r.method} (Dm {r.meta_per_class})"
                                     for r in repeated.itertuples()}))
            raise ValueError(f"{label}: several configurations of {rows}; a side-by-side "
                             "report needs one per method and Dm size (use the plain report)")
        merged = part if merged is None else merged.merge(part, on=block, how="outer", sort=False)
    if merged is None:
        return pd.DataFrame(columns=block)
    return _in_order(merged.assign(params="")).drop(columns="params")


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
