"""Does a method beat its controls? The rule that a result counts as selection.

A control is the same method with its selection mechanism switched off (``methods.base.control``:
``bads_prior_only`` has no data term in U_φ, ``bads_frozen`` keeps every weight at β,
``blo_frozen`` keeps the weights equal). A row of a method with registered controls counts as
selection only if, on the seeds both ran, its final test metric (or, with ``compare_on="val"``,
its validation score) beats every control that ran in the same block (scenario, source, profile,
meta_per_class): the 95% bootstrap interval of the paired mean difference over the common seeds
lies above 0 (``stats.compare``; the count of seeds won is shown, not required), and none of its
runs ended with degenerate weights (collapsed or
uniform): a row that beats its controls with degenerate weights is marked ``degenerate``, since
its gain did not come from selecting. A comparison whose interval contains 0 is ``unresolved``
(more seeds would decide it); one whose interval lies at or below 0 makes the verdict ``NO``.
Which row of a control is compared: with several
configurations of it in the block (a sweep), the one with the same settings and the same value of
every hyperparameter the control neither pins nor ignores (the prior-only control at the same σ
and φ learning rate); with one, that one if its settings are the row's but for the model learning
rate ``lr`` (which tuning sets per method). A control that ran but could not be compared (no
matching configuration, no common seed) makes the verdict ``incomplete``, never ``yes``.

Note that ``bads_prior_only`` is not selection-free with a weight network: the prior's gradient
on φ = [v, b] is Σ_i q_i·[e_i, 1]·(Ŝ − K)/σ², which moves v along the embeddings and can separate
the groups through them; beating it tests the data term, not selection as such.
"""

from __future__ import annotations

import json

import pandas as pd

from methods import MODEL_LR, controls_of, get_method

from .stats import compare, mean_ci

BLOCK = ["scenario", "source", "profile", "meta_per_class"]


SIDE_COLUMNS = ("final_mean", "val_mean", "auroc")  # a matched control's columns, next to its method


def compare_with_controls(table: pd.DataFrame, ok_runs: pd.DataFrame,
                          metric: str = "final_metric", side_by_side: bool = False
                          ) -> pd.DataFrame:
    """``table`` (one row per configuration, with its ``config`` hash) with two columns added:
    ``selection`` ("yes", "NO", "unresolved", "incomplete", "degenerate", or "" where no control
    ran) and ``vs_controls``
    ("bads_frozen +0.0120 [-0.0100, +0.0300] (2/3) unresolved, ..." : the paired mean
    difference, its 95% bootstrap interval and the seeds won, or
    "bads_prior_only: no match"). ``metric`` is the per-run column compared: ``final_metric``
    (the test metric of the last iterate) or ``val_score`` (validation, for choosing settings
    without reading the test split). With ``side_by_side``, each matched control's row also
    lends its SIDE_COLUMNS to the method's row, as ``<control> <column>``."""
    table = table.copy()
    table["selection"], table["vs_controls"] = "", ""
    by_config = table.set_index("config")
    lent: dict[str, dict] = {}
    if ok_runs.empty:
        return table
    per_config = {cfg: runs.set_index("seed")[metric]
                  for cfg, runs in ok_runs.groupby("config")}
    configs = {cfg: json.loads(c) for cfg, c in
               ok_runs.groupby("config")["config_json"].first().items()}
    for i, row in table.iterrows():
        names = _registered_controls(row["method"])
        if not names or row["config"] not in per_config:
            continue
        block = table[(table[BLOCK].astype(str) == row[BLOCK].astype(str)).all(axis=1)]
        verdicts: list[bool | str | None] = []
        parts = []
        for name in names:
            candidates = block[block["method"] == name]
            if candidates.empty:
                continue  # this control did not run here
            match = _matching(candidates, configs[row["config"]], name, configs)
            mine, theirs = per_config[row["config"]], per_config.get(match)
            common = mine.index.intersection(theirs.index) if theirs is not None else []
            if not len(common):
                verdicts.append(None)
                parts.append(f"{name}: no match" if match is None else f"{name}: no common seed")
                continue
            if side_by_side:
                for column in SIDE_COLUMNS:
                    if column in by_config:
                        lent.setdefault(f"{name} {column}", {})[i] = by_config.at[match, column]
            diff = (mine.loc[common] - theirs.loc[common]).dropna()
            if diff.empty:  # e.g. --compare-on val for runs stored without validation curves
                verdicts.append(None)
                parts.append(f"{name}: no {'validation score' if metric == 'val_score' else metric}")
                continue
            outcome = compare(diff)
            verdicts.append({"better": True, "not better": False}.get(outcome, outcome))
            low, high = mean_ci(diff)
            interval = f" [{low:+.4f}, {high:+.4f}]" if not pd.isna(low) else ""
            parts.append(f"{name} {diff.mean():+.4f}{interval} ({int((diff > 0).sum())}/{len(diff)})"
                         + (" unresolved" if outcome == "unresolved" else ""))
        if verdicts:
            verdict = ("NO" if False in verdicts else "incomplete" if None in verdicts
                       else "unresolved" if "unresolved" in verdicts else "yes")
            if verdict == "yes" and _degenerate(row):
                verdict = "degenerate"  # beats its controls, but not by selecting
            table.at[i, "selection"] = verdict
            table.at[i, "vs_controls"] = ", ".join(parts)
    for column, values in lent.items():
        table[column] = pd.Series(values, dtype=float)
    return table


def _degenerate(row: pd.Series) -> bool:
    n = row.get("n_degenerate")
    return pd.notna(n) and int(n) > 0


def _registered_controls(method: str) -> list[str]:
    try:
        return controls_of(method)
    except KeyError:  # a method no longer (or not yet) in the registry
        return []


def _matching(candidates: pd.DataFrame, config: dict, control: str,
              configs: dict[str, dict]) -> str | None:
    """The config hash of the control row to compare with (see the module docstring)."""
    if len(candidates) == 1:
        cfg = candidates["config"].iloc[0]
        other = configs.get(cfg)
        same = other is not None and _without_lr(other["settings"]) == _without_lr(config["settings"])
        return cfg if same else None
    cls = get_method(control)
    skip = set(cls.fixed) | set(cls.inert)
    for cfg in candidates["config"]:
        other = configs.get(cfg)
        if other is None or other["settings"] != config["settings"]:
            continue
        if all(other["hparams"].get(k) == v for k, v in config["hparams"].items() if k not in skip):
            return cfg
    return None


def _without_lr(settings: dict) -> dict:
    return {k: v for k, v in settings.items() if k != MODEL_LR}
