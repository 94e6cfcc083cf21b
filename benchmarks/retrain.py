"""Retrain on the selection: the point-addition experiment of data-valuation benchmarks.

For every ok run with final weights in a results directory DIR and every fraction f, a fresh
model (``train_only``, the run's own scenario, settings and seed, hence the same Dm, test split,
initial model and batch seeds) is trained on only the k = ⌊f·N_t⌋ points of Dt with the
highest weights; and, once per (setting, seed, f), on k points of Dt drawn uniformly at random,
the baseline every selection must beat. Ties among weights are broken at random (seeded), so
equal weights select like the random baseline. Following OpenDataVal's point-addition
experiment (Jiang et al., NeurIPS 2023 Datasets and Benchmarks, ``opendataval/experiment/
exper_methods.py: remove_high_low``: the model is retrained on the highest-valued points), the
model sees the selected points only, not Dm.

The runs go to their own store, DIR/retrain/, through the same resumable machinery as a sweep
(records, leases, ``--jobs``): rerunning the command skips what is complete. Each row adds
``selection`` (``weights`` or ``random``), ``fraction``, ``n_selected``, ``favoured_share``
(the share of the favoured group among the selected points), ``source_run_id`` and
``source_method`` (``random`` for the baseline) to the usual run columns.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from .config import RunSpec, derive_seed
from .errors import ConfigError, DpsBenchError
from .harness import run
from .report.quality import favoured_group
from .scenarios import Split, get_scenario
from .store import Store
from .sweep import (
    RunContext,
    SweepResult,
    _pacer,
    _train,
    code_sha,
    default_threads,
    git_sha,
    leased,
    outcome_row,
    resolve_device,
    scenario_data,
    usable_cpus,
)

RETRAIN_DIR = "retrain"  # DIR/retrain/: the store of the retraining runs
RANDOM = "random"


@dataclass(frozen=True)
class RetrainTask:
    """One retraining run: ``spec`` (train_only on the source run's scenario, settings, seed),
    the source run (None for the random baseline), its weights' ranking as ``indices`` (every
    index of Dt, best first) and the fraction kept."""

    spec: RunSpec
    fraction: float
    source_run_id: str | None
    source_method: str
    indices: tuple[int, ...]
    weights_sha: str = ""  # of the source run's weights file: a rerun source is retrained anew

    @property
    def run_id(self) -> str:
        key = ["retrain", self.spec.to_json(), self.fraction, self.source_run_id or RANDOM]
        if self.weights_sha:
            key.append(self.weights_sha)
        return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]

    @property
    def method(self) -> str:  # what progress lines print
        return f"{self.source_method}@{self.fraction:g}"

    @property
    def seed(self) -> int:
        return self.spec.seed

    @property
    def settings(self) -> dict:
        return self.spec.settings

    def selected(self) -> np.ndarray:
        k = math.floor(self.fraction * len(self.indices) + 1e-9)
        return np.sort(np.asarray(self.indices[:k], dtype=np.int64))


def ranking(weights: pd.DataFrame, seed: int) -> np.ndarray:
    """Indices of Dt from the highest weight to the lowest; ties in a seeded random order, NaN
    weights (never weighted) last."""
    w = weights.sort_values("index")["weight"].to_numpy(dtype=float)
    w = np.where(np.isnan(w), -np.inf, w)
    tie_break = np.random.default_rng(seed).permutation(len(w))
    return np.lexsort((tie_break, -w))


def plan_retrain(source_dir: str | Path, fractions: list[float], methods: list[str] | None = None
                 ) -> list[RetrainTask]:
    """The retraining tasks of DIR's ok runs with weights (of ``methods``, default all), and the
    random baseline of each (setting, seed), for each fraction. Raises ConfigError on a bad
    fraction, an unknown method or a directory without such runs."""
    bad = [f for f in fractions if not 0 < f <= 1]
    if bad or not fractions:
        raise ConfigError(f"--fractions must lie in (0, 1] (got {fractions}); e.g. 0.05,0.1,0.25,0.5")
    store = Store(source_dir)
    if not store.exists():
        raise DpsBenchError(f"no results in {source_dir}; run `dps-bench run ... --out {source_dir}`")
    runs = store.runs()
    runs = runs[runs["status"] == "ok"]
    with_weights = [r for r in runs.itertuples(index=False)
                    if (Path(source_dir) / "weights" / f"{r.run_id}.csv").exists()]
    if methods:
        known = {r.method for r in with_weights}
        missing = [m for m in methods if m not in known]
        if missing:
            raise ConfigError(f"--methods: no ok run with weights of {', '.join(missing)} in "
                              f"{source_dir}; methods with weights: {', '.join(sorted(known))}")
        with_weights = [r for r in with_weights if r.method in methods]
    if not with_weights:
        raise DpsBenchError(f"{source_dir} holds no ok run with stored weights to retrain on")
    tasks: list[RetrainTask] = []
    baselines: dict[str, RetrainTask] = {}
    for r in with_weights:
        config = json.loads(r.config_json)
        config.pop("suite_version", None)
        spec = RunSpec(**{**config, "method": "train_only", "hparams": {}})
        weights = store.weights(str(r.run_id))
        sha = hashlib.sha256((Path(source_dir) / "weights" / f"{r.run_id}.csv").read_bytes()
                              ).hexdigest()[:16]
        order = ranking(weights, derive_seed(r.run_id, "retrain-ties"))
        n = len(order)
        empty = [f for f in fractions if math.floor(f * n + 1e-9) < 1]
        if empty:
            raise ConfigError(f"--fractions {', '.join(f'{f:g}' for f in empty)} keep no point of "
                              f"Dt's {n} (⌊f·N_t⌋ = 0); use at least {1 / n:.2g}")
        random_order = np.random.default_rng(derive_seed(spec.run_id, "retrain-random")).permutation(n)
        for f in fractions:
            tasks.append(RetrainTask(spec, float(f), str(r.run_id), r.method,
                                     tuple(int(i) for i in order), sha))
            base = RetrainTask(spec, float(f), None, RANDOM, tuple(int(i) for i in random_order))
            baselines.setdefault(base.run_id, base)
    return sorted(tasks + list(baselines.values()),
                  key=lambda t: (t.seed, t.fraction, t.source_method != RANDOM, t.source_method))


def retrain(source_dir: str | Path, fractions: list[float], methods: list[str] | None = None,
            data_dir: str | None = None, device: str = "auto", jobs: int = 1,
            threads: int | None = None, force: bool = False, progress: bool | None = None
            ) -> SweepResult:
    """Run every retraining task of ``plan_retrain`` not yet complete in DIR/retrain/."""
    threads = threads or default_threads()
    tasks = plan_retrain(source_dir, fractions, methods)
    out = Path(source_dir) / RETRAIN_DIR
    store = Store(out)
    store.prepare()
    done = set() if force else store.completed()
    todo = [t for t in tasks if t.run_id not in done]
    skipped = len(tasks) - len(todo)
    if skipped:
        tqdm.write(f"{skipped} of {len(tasks)} retraining runs already complete in {out}; skipping them")
    failed: list[str] = []
    if not todo:
        return SweepResult(0, skipped, failed)
    dev = resolve_device(device)
    context = RunContext(str(out), data_dir, str(dev), threads, jobs, force, code_sha(), git_sha(),
                         usable_cpus())
    elsewhere: list[str] = []
    diverged: list[str] = []
    disable = {True: False, False: True, None: None}[progress]
    try:
        _train(todo, context, jobs, threads, disable, failed, elsewhere, diverged,
               worker=retrain_one)
    finally:
        store.refresh_views()
    return SweepResult(len(todo) - len(elsewhere), skipped, failed, len(elsewhere), len(diverged))


def retrain_one(task: RetrainTask, context: RunContext, advance) -> tuple[str, str | None]:
    """Train one retraining task and write it to the store (a sweep ``worker``)."""
    store = Store(context.out)
    with leased(store, task.run_id, context.force) as refused:
        if refused:
            return refused, None
        dev = torch.device(context.device)
        spec = task.spec
        scenario = get_scenario(spec.scenario)
        data = scenario_data(spec, context.data_dir)
        chosen = task.selected()
        train = data.train
        if len(task.indices) != len(train):
            return ("ERROR data differ", f"{task.method} seed={task.seed}: the weights cover "
                    f"{len(task.indices)} points but the rebuilt Dt has {len(train)} (different "
                    "data files or --data-dir than the source run's?)")
        idx = torch.from_numpy(chosen)
        subset = dataclasses.replace(data, train=Split(train.x[idx], train.y[idx], train.group[idx]))
        groups = pd.Series(np.asarray(data.group_names)[train.group.numpy()])
        favoured = favoured_group(groups)
        share = (float((groups.iloc[chosen] == favoured).mean()) if favoured is not None
                 else float("nan"))
        last = [0]

        def on_step(step: int) -> None:
            if advance is not None:
                advance(step - last[0])
            last[0] = step

        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        t0 = time.perf_counter()
        try:
            outcome = run(spec, scenario, subset, dev, on_step=on_step)
        except Exception as e:  # recorded; retried on the next invocation
            return (f"ERROR {e}", f"{task.method} seed={task.seed}: {type(e).__name__}: {e}\n"
                                  f"{traceback.format_exc(limit=-3)} ({time.perf_counter() - t0:.1f} s)")
        row = outcome_row(spec, dev, outcome, context, load)
        row.update(run_id=task.run_id, selection="weights" if task.source_run_id else RANDOM,
                   fraction=task.fraction, n_selected=len(chosen), favoured_share=share,
                   source_run_id=task.source_run_id or "", source_method=task.source_method)
        _pacer(context.out).write(store, row, outcome.curves, None)
        return (f"{outcome.status} {scenario.metric_name}={outcome.final_metric:.4f} on "
                f"{len(chosen)} points ({share:.0%} {favoured})", None)
