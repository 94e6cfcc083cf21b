"""``dps-bench tune``: the same budget of configurations for every method, scored on validation only.

Per method, ``budget`` configurations are drawn from its declared ``search_space``:
- ``random`` (default): the scenario's default configuration first (the paper's settings), then
  ``budget - 1`` seeded draws, with an RNG seeded by (search_seed, scenario, source, profile,
  method), so a method's draws do not depend on which other methods are tuned with it;
- ``grid``: ``budget`` points of the space's grid, in a seeded random order (the grid must have
  at least ``budget`` points).
Every configuration runs at every tuning seed through the same resumable sweep as ``run`` (into
``--out``), and is scored by the validation metric only: its mean over the last ``window``
evaluations, averaged over the seeds. The test split is never read. A configuration whose run
failed or diverged is not eligible; one whose weights ended degenerate (``collapsed``/``uniform``,
see ``weight_health``) ranks below every configuration with healthy weights. Ties go to the
earlier configuration (the default first).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from methods import MODEL_LR, get_method

from .config import (
    RunSpec,
    check_requirements,
    coerce,
    derive_seed,
    resolve_hparams,
    resolve_settings,
)
from .errors import ConfigError
from .scenarios import Scenario, get_scenario
from .store import Store
from .sweep import git_sha, run_sweep
from .tuned import tuned_path, write_tuned
from .weight_health import DEGENERATE

STRATEGIES = ("random", "grid")


@dataclass
class Trial:
    """One configuration of one method: its searched values and its runs (one per seed)."""

    method: str
    index: int
    values: dict[str, Any]  # search-space name -> value used (absolute)
    specs: list[RunSpec] = field(default_factory=list)
    score: float = math.nan
    status: str = "pending"  # ok | failed (a run errored or diverged) | pending
    weights_status: str = ""

    @property
    def degenerate(self) -> bool:
        return self.weights_status in DEGENERATE


def draws(space: dict, budget: int, strategy: str, rng: random.Random) -> list[dict[str, Any]]:
    """``budget`` raw draws from ``space`` ({} is the default configuration)."""
    if strategy == "random":
        return [{}] + [{k: dim.draw(rng) for k, dim in space.items()} for _ in range(budget - 1)]
    names = list(space)
    grid = [dict(zip(names, point, strict=True))
            for point in itertools.product(*(space[k].grid() for k in names))]
    if len(grid) < budget:
        raise ConfigError(f"the grid of {names} has only {len(grid)} points, fewer than --budget "
                          f"{budget}; lower --budget or use --strategy random")
    rng.shuffle(grid)
    return grid[:budget]


def materialise(scenario: Scenario, source: str, profile: str, method: str, space: dict,
                raw: dict[str, Any], settings_over: dict[str, Any], hparams_over: dict[str, Any]
                ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A raw draw as (resolved settings, resolved hyperparameters, searched values), all dicts.

    Relative dimensions scale the default: of the scenario's model lr for ``lr``; of the resolved
    hyperparameter default, or of this configuration's model lr where that default is 0."""
    settings0 = resolve_settings(scenario, source, profile, settings_over)
    hp0 = resolve_hparams(scenario, method, hparams_over, profile, source)
    settings, hparams = dict(settings_over), dict(hparams_over)
    if MODEL_LR in raw:
        lr = raw[MODEL_LR] * settings0.lr if space[MODEL_LR].relative else raw[MODEL_LR]
        settings[MODEL_LR] = float(f"{lr:.3g}")
    model_lr = settings.get(MODEL_LR, settings0.lr)
    cls = get_method(method).Hparams
    for name, value in raw.items():
        if name == MODEL_LR:
            continue
        if space[name].relative:
            base = getattr(hp0, name) or model_lr
            value = value * base
        if isinstance(value, float):
            value = float(f"{value:.3g}")
        hparams[name] = coerce(value, cls, name, f"search space of {method}.{name}")
    settings_out = asdict(resolve_settings(scenario, source, profile, settings))
    hparams_out = asdict(resolve_hparams(scenario, method, hparams, profile, source))
    resolved = {**settings_out, **hparams_out}
    return settings_out, hparams_out, {k: resolved[k] for k in space}


def plan_trials(scenario_name: str, source: str, profile: str, method: str, budget: int,
                seeds: list[int], strategy: str, search_seed: int, settings_over: dict[str, Any],
                hparams_over: dict[str, Any]) -> list[Trial]:
    """The method's ``budget`` configurations, each with one RunSpec per seed."""
    scenario = get_scenario(scenario_name)
    check_requirements(scenario, method)
    space = get_method(method).search_space
    unknown = set(space) - {MODEL_LR} - {f.name for f in dataclasses.fields(get_method(method).Hparams)}
    if unknown:
        raise ConfigError(f"{method}.search_space names {sorted(unknown)}, which are neither "
                          f"'{MODEL_LR}' nor hyperparameters of {method}")
    fixed = set(space) & (set(hparams_over) | set(settings_over))
    if fixed:
        raise ConfigError(f"--set fixes {sorted(fixed)}, which tuning searches for {method}; "
                          "drop them from --set")
    rng = random.Random(derive_seed(search_seed, scenario_name, source, profile, method))
    trials = []
    for index, raw in enumerate(draws(space, budget, strategy, rng)):
        s, h, values = materialise(scenario, source, profile, method, space, raw, settings_over,
                                   hparams_over)
        specs = [RunSpec(scenario_name, source, profile, method, seed, s, h) for seed in seeds]
        trials.append(Trial(method, index, values, specs))
    return trials


def val_score(curves: pd.DataFrame, run_id: str, window: int) -> float:
    """Mean of the run's validation metric over its last ``window`` evaluations."""
    val = curves[(curves["run_id"] == run_id) & (curves["split"] == "val")].sort_values("step")
    return float(val["value"].tail(window).mean()) if len(val) else math.nan


def score_trials(trials: list[Trial], runs: pd.DataFrame, curves: pd.DataFrame,
                 window: int) -> None:
    """Fill each trial's score, status and weights status from the store (validation rows only)."""
    val_curves = curves[curves["split"] == "val"]  # nothing below can see a test row
    by_id = runs.drop_duplicates("run_id", keep="last").set_index("run_id")
    for trial in trials:
        ids = [s.run_id for s in trial.specs]
        if any(i not in by_id.index for i in ids):
            trial.status = "pending"
            continue
        rows = by_id.loc[ids]
        if (rows["status"] != "ok").any():
            trial.status = "failed"
            continue
        trial.status = "ok"
        trial.score = float(sum(val_score(val_curves, i, window) for i in ids) / len(ids))
        statuses = [s for s in rows["weights_status"].astype(object).fillna("") if s]
        bad = [s for s in statuses if s in DEGENERATE]
        trial.weights_status = bad[0] if bad else (statuses[0] if statuses else "")


def choose(trials: list[Trial]) -> Trial | None:
    """The best eligible trial: healthy weights first, then the highest score, then the earliest."""
    eligible = [t for t in trials if t.status == "ok" and not math.isnan(t.score)]
    if not eligible:
        return None
    return min(eligible, key=lambda t: (t.degenerate, -t.score, t.index))


@dataclass
class TuneResult:
    written: list[Path]
    failed: list[str]
    untuned: list[str]


def tune(scenario_name: str, source: str | None, profile: str, methods: list[str], budget: int,
         seeds: list[int], settings_over: dict[str, Any], hparams_over: dict[str, dict],
         out: str | Path, tuned_dir: Path, strategy: str = "random", search_seed: int = 0,
         window: int = 3, data_dir: str | None = None, device: str = "auto",
         progress: bool | None = None, force: bool = False, command: str = "",
         threads: int | None = None, jobs: int = 1, backend: str = "local",
         ray_address: str | None = None) -> TuneResult:
    """Run every method's ``budget`` configurations, then write each method's chosen one."""
    if budget < 1:
        raise ConfigError(f"--budget must be at least 1, got {budget}")
    if strategy not in STRATEGIES:
        raise ConfigError(f"--strategy must be one of {STRATEGIES}, got {strategy!r}")
    if window < 1:
        raise ConfigError(f"--window must be at least 1, got {window}")
    scenario = get_scenario(scenario_name)
    source = source or scenario.default_source
    trials = {m: plan_trials(scenario_name, source, profile, m, budget, seeds, strategy,
                             search_seed, settings_over, hparams_over.get(m, {}))
              for m in methods}
    specs = [s for m in methods for t in trials[m] for s in t.specs]
    if specs:
        from .sweep import scenario_data

        if len(scenario_data(specs[0], data_dir).val) == 0:
            raise ConfigError(
                f"tune scores configurations on the validation split, and {scenario_name} on "
                f"{source} with profile {profile} has none (val_per_class=0 keeps every other "
                "example in Dt, as the paper's split); add --set val_per_class=N")
    result = run_sweep(specs, out, data_dir=data_dir, device=device, progress=progress,
                       force=force, threads=threads, jobs=jobs, backend=backend,
                       ray_address=ray_address)
    store = Store(out)
    runs, curves = store.runs(), store.curves()
    written, untuned = [], []
    for m in methods:
        score_trials(trials[m], runs, curves, window)
        best = choose(trials[m])
        if best is None:
            untuned.append(m)
            continue
        space = get_method(m).search_space
        record = {
            "scenario": scenario_name, "source": source, "profile": profile,
            "settings": dict(settings_over), "method": m, "fixed": dict(hparams_over.get(m, {})),
            "tuned": dict(best.values), "val_score": round(best.score, 6),
            "weights_status": best.weights_status or "n/a",
            "score": f"{scenario.metric_name} on the validation split, mean of the last {window} "
                     f"evaluations, mean over seeds {seeds}",
            "budget": budget, "strategy": strategy, "search_seed": search_seed, "seeds": seeds,
            "search_space": {k: dim.describe() for k, dim in space.items()},
            "trials": [{"index": t.index, "values": dict(t.values),
                        "val_score": None if math.isnan(t.score) else round(t.score, 6),
                        "status": t.status, "weights_status": t.weights_status or "n/a",
                        "run_ids": [s.run_id for s in t.specs]} for t in trials[m]],
            "results": str(out), "git_sha": git_sha(), "command": command,
        }
        path = tuned_path(tuned_dir, scenario_name, source, profile, settings_over, m)
        write_tuned(path, record)
        written.append(path)
    return TuneResult(written, result.failed, untuned)
