"""``dps-bench verify DIR``: rerun a sample of a store's runs at this code and compare.

A stored number is only as good as the code that made it: a later change to the harness or a
method can alter the floating-point path, and the suite's short trainings are chaotic enough that
a rounding change flips an outcome. ``verify`` reruns runs from their recorded configuration, seed
and thread count, on their recorded device type, and compares every curve value (each logged
loss, metric and weight statistic at each evaluation) and the status with what is stored:

- ``exact``: every value equal bit for bit (expected on the CPU with the same code and threads);
- ``within tolerance``: the largest absolute difference is at most ``tolerance``;
- ``DIFFERS``: anything else (the number printed is the largest absolute difference);
- ``STALE``: the run was made by a suite version whose run ids this code no longer produces
  (or with a configuration this code cannot express);
- ``ERROR``: the rerun raised;
- ``skipped``: recorded on CUDA and this machine has none.

With ``refresh``, a rerun that does not reproduce (DIFFERS, or a status that changed) replaces
the stored run: its record is rewritten with the rerun's numbers and this code's ``code_sha``
(the run id is unchanged, as the configuration is). Exact and within-tolerance runs are left as
they are. That is how a store made before a change that alters results (or before a new
diagnostic was logged) is brought up to this code without retraining what still reproduces.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .config import SUITE_VERSION, RunSpec
from .errors import DpsBenchError
from .harness import run
from .scenarios import get_scenario
from .store import COMPLETE, Store
from .sweep import (
    RunContext,
    code_sha,
    code_sha_of,
    git_sha,
    outcome_row,
    scenario_data,
    source_of,
    usable_cpus,
)


@dataclass
class Verdict:
    """One rerun run: its identity, the stored and recomputed final metric, the largest absolute
    difference over its curves, and the verdict (see the module docstring)."""

    run_id: str
    method: str
    seed: int
    stored: float
    now: float
    max_abs_diff: float
    verdict: str
    note: str = ""
    threads: int = 0
    refreshed: bool = False


def choose(runs: pd.DataFrame, sample: int | None, seed: int, methods: list[str] | None
           ) -> pd.DataFrame:
    """The complete runs to rerun: those of ``methods`` (all if None), ``sample`` of them drawn
    with ``seed`` (all if None or more than there are), in the store's order."""
    pool = runs[runs["status"].isin(COMPLETE)]
    if methods:
        unknown = set(methods) - set(pool["method"])
        if unknown:
            raise DpsBenchError(f"no complete run of {', '.join(sorted(unknown))} to verify")
        pool = pool[pool["method"].isin(methods)]
    if pool.empty:
        raise DpsBenchError("no complete run to verify in this store")
    if sample is not None and sample < len(pool):
        pool = pool.sample(n=sample, random_state=seed).sort_index()
    return pool


def verify(out: str, sample: int | None = 5, seed: int = 0, tolerance: float = 0.0,
           data_dir: str | None = None, methods: list[str] | None = None,
           on_result=None, refresh: bool = False) -> list[Verdict]:
    """Rerun ``sample`` complete runs of the store ``out`` and compare them (module docstring);
    with ``refresh``, store the reruns that differ. ``on_result(verdict)`` is called after each.
    Raises DpsBenchError for an empty selection or missing data (StoreError for a store that
    cannot be written with ``refresh``)."""
    if tolerance < 0:
        raise DpsBenchError(f"--tolerance must be >= 0, got {tolerance}")
    if sample is not None and sample < 1:
        raise DpsBenchError(f"--sample must be a positive number of runs (or 0 for all), got "
                            f"{sample}")
    store = Store(out)
    if refresh:
        store.prepare()
    runs, curves = store.runs(), store.curves()
    if runs.empty:
        raise DpsBenchError(f"no runs in {out}; nothing to verify")
    chosen = choose(runs, sample, seed, methods)
    verdicts = []
    threads_before = torch.get_num_threads()
    try:
        for _, row in chosen.iterrows():
            verdict = _verify_one(row, curves[curves["run_id"] == row["run_id"]], tolerance,
                                  data_dir, store if refresh else None)
            verdicts.append(verdict)
            if on_result is not None:
                on_result(verdict)
    finally:
        torch.set_num_threads(threads_before)
    return verdicts


def _verify_one(row: pd.Series, stored_curves: pd.DataFrame, tolerance: float,
                data_dir: str | None, refresh_into: Store | None) -> Verdict:
    config = json.loads(row["config_json"])
    version = config.pop("suite_version", None)
    base = dict(run_id=row["run_id"], method=row["method"], seed=int(row["seed"]),
                stored=float(row["final_metric"]), now=float("nan"), max_abs_diff=float("nan"))
    try:
        spec = RunSpec(**config)
        scenario = get_scenario(spec.scenario)
        scenario.Settings(**spec.settings)  # settings this code still accepts
    except (TypeError, KeyError, DpsBenchError):  # a configuration this code cannot express
        spec = None
    if spec is None or version != SUITE_VERSION or spec.run_id != row["run_id"]:
        return Verdict(**base, verdict="STALE",
                       note=f"made by suite version {version}, this is {SUITE_VERSION}: rerun it "
                            "(`dps-bench run ... --force`)")
    device = torch.device(str(row["device"]).split(":")[0])
    if device.type == "cuda" and not torch.cuda.is_available():
        return Verdict(**base, verdict="skipped", note="recorded on CUDA; this machine has none")
    threads = int(row["threads"]) if pd.notna(row.get("threads")) else 1
    torch.set_num_threads(threads)
    source_of(spec, data_dir)  # missing data: an error for the whole command, not this run
    try:
        outcome = run(spec, scenario, scenario_data(spec, data_dir), device)
    except Exception as e:  # the rerun itself failed: that does not reproduce either
        return Verdict(**base, verdict="ERROR", note=f"the rerun raised {type(e).__name__}: {e}",
                       threads=threads)
    diff, where = _max_abs_diff(stored_curves, outcome.curves)
    same_status = outcome.status == row["status"]
    if same_status and diff == 0.0:
        verdict = "exact"
    elif same_status and diff <= tolerance:
        verdict = "within tolerance"
    else:
        verdict = "DIFFERS"
    recorded = row.get("code_sha")
    note = "" if same_status else f"status {row['status']} then, {outcome.status} now"
    if verdict != "exact" and where:
        note = (note + "; " if note else "") + where
    this_code = code_sha_of(row["method"])
    if isinstance(recorded, str) and recorded and recorded != this_code:
        note = (note + "; " if note else "") + f"made by code {recorded}, this is {this_code}"
    elif not isinstance(recorded, str) or not recorded:
        note = (note + "; " if note else "") + f"code unrecorded (git {row.get('git_sha')})"
    refreshed = False
    if refresh_into is not None and verdict == "DIFFERS":
        context = RunContext(refresh_into.root.as_posix(), data_dir, str(device), threads, 1, True,
                             code_sha(), git_sha(), usable_cpus())
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        refreshed = refresh_into.write(outcome_row(spec, device, outcome, context, load),
                                       outcome.curves, outcome.weights)
        note += "; stored the rerun in its place" if refreshed else ""
    return Verdict(**{**base, "now": outcome.final_metric, "max_abs_diff": diff},
                   verdict=verdict, note=note, threads=threads, refreshed=refreshed)


def _max_abs_diff(stored: pd.DataFrame, now: pd.DataFrame) -> tuple[float, str]:
    """Largest |stored − now| over the curve values of both (keyed by step, split, metric) and
    where it is: ``(inf, "grad_data logged now, not stored")`` if a value is in one and not the
    other, inf if finite in one and not the other; ``(0.0, "")`` when all agree."""
    key = ["step", "split", "metric_name"]
    a = stored.assign(step=stored["step"].astype(int)).set_index(key)["value"].astype(float)
    b = now.assign(step=now["step"].astype(int)).set_index(key)["value"].astype(float)
    if set(a.index) != set(b.index):
        only_now = sorted({f"{s}/{m}" for _, s, m in set(b.index) - set(a.index)})
        only_then = sorted({f"{s}/{m}" for _, s, m in set(a.index) - set(b.index)})
        parts = ([f"{', '.join(only_now)} logged now, not stored"] if only_now else []) + (
            [f"{', '.join(only_then)} stored, not logged now"] if only_then else [])
        return float("inf"), "; ".join(parts) or "different evaluation steps"
    a, b = a.sort_index(), b.reindex(a.sort_index().index)
    both_nan = np.isnan(a.to_numpy()) & np.isnan(b.to_numpy())
    diff = np.nan_to_num(np.abs(a.to_numpy() - b.to_numpy()), nan=np.inf)
    diff[both_nan] = 0.0
    if not len(diff) or diff.max() == 0.0:
        return 0.0, ""
    step, split, metric = a.index[int(diff.argmax())]
    return float(diff.max()), f"largest at {split}/{metric}, step {step}"
