"""A grid of runs (methods x seeds) on one scenario, source and profile; resumable.

Runs already complete in the store (same run_id, i.e. the same resolved configuration) are
skipped. The scenario's data is built once per seed and shared by all methods. A run that raises
is recorded with status ``error`` (and retried by the next invocation); the sweep goes on.
"""

from __future__ import annotations

import functools
import itertools
import json
import subprocess
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from .config import RunSpec, derive_seed, resolve_hparams, resolve_settings
from .data import load_source
from .errors import ConfigError
from .harness import run
from .scenarios import get_scenario
from .store import Store
from .weight_health import DEGENERATE


@dataclass
class SweepResult:
    ran: int
    skipped: int
    failed: list[str]


@functools.cache
def git_sha() -> str:
    """The suite's git commit (``-dirty`` if its code is modified), or ``unknown`` outside a checkout."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here, text=True,
                             capture_output=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                "methods", "benchmarks"],
                               cwd=here, text=True, capture_output=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``; anything else is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: this machine has no CUDA device (use cpu or auto)")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {name!r}: only cpu and cuda are supported")
    return device


Axes = list[tuple[str, list]]


def _points(axes: Axes) -> list[dict]:
    """Every combination of the axes' values ([{}] for no axes)."""
    names = [name for name, _ in axes]
    return [dict(zip(names, values, strict=True))
            for values in itertools.product(*(v for _, v in axes))]


def plan(scenario_name: str, source: str | None, profile: str, methods: list[str],
         seeds: list[int], settings_overrides: dict, hparam_overrides: dict[str, dict],
         method_settings: dict[str, dict] | None = None, setting_axes: Axes | None = None,
         hparam_axes: dict[str, Axes] | None = None) -> list[RunSpec]:
    """The resolved RunSpecs of the grid, seeds outer, then methods, then grid points (settings
    axes and each method's hyperparameter axes, see ``config.parse_grid``). ``method_settings``
    adds per-method scenario-setting overrides (a tuned model lr) on top of ``settings_overrides``."""
    scenario = get_scenario(scenario_name)
    source = source or scenario.default_source
    specs = []
    for seed in seeds:
        for method in methods:
            for s_point in _points(setting_axes or []):
                for h_point in _points((hparam_axes or {}).get(method, [])):
                    overrides = {**settings_overrides, **(method_settings or {}).get(method, {}),
                                 **s_point}
                    settings = resolve_settings(scenario, source, profile, overrides)
                    hp = resolve_hparams(scenario, method,
                                         {**hparam_overrides.get(method, {}), **h_point},
                                         profile, source)
                    specs.append(RunSpec(scenario_name, source, profile, method, seed,
                                         asdict(settings), asdict(hp)))
    return specs


def run_sweep(specs: list[RunSpec], out: str | Path, data_dir: str | None = None,
              device: str = "auto", progress: bool | None = None, force: bool = False
              ) -> SweepResult:
    """Run every spec not yet complete in ``out`` (every spec with ``force``, replacing the old
    rows once each new run is done); returns what ran, was skipped, failed."""
    dev = resolve_device(device)
    git_sha()  # read the code version now, before anything can change the checkout mid-sweep
    store = Store(out)
    done = set() if force else store.completed()
    todo = [s for s in specs if s.run_id not in done]
    skipped = len(specs) - len(todo)
    failed: list[str] = []
    if skipped:
        tqdm.write(f"{skipped} of {len(specs)} runs already complete in {out}; skipping them")
    if not todo:
        return SweepResult(0, skipped, failed)
    source_data = load_source(todo[0].source, data_dir)
    scenario = get_scenario(todo[0].scenario)
    built: dict[str, object] = {}
    total_steps = sum(s.settings["steps"] for s in todo)
    disable = {True: False, False: True, None: None}[progress]  # None: only on a terminal
    bar = tqdm(total=total_steps, unit="step", disable=disable, dynamic_ncols=True, desc="sweep")
    for i, spec in enumerate(todo, 1):
        key = json.dumps([spec.seed, spec.settings], sort_keys=True)
        if key not in built:
            data_seed = derive_seed(spec.seed, spec.scenario, spec.source)
            settings = scenario.Settings(**spec.settings)
            built = {key: scenario.build(source_data, settings, data_seed)}  # keep one at a time
        bar.set_postfix_str(f"{spec.method} seed={spec.seed}")
        last = [0]

        def advance(step: int, last: list[int] = last) -> None:
            bar.update(step - last[0])
            last[0] = step

        t0 = time.perf_counter()
        try:
            outcome = run(spec, scenario, built[key], dev, on_step=advance)
        except KeyboardInterrupt:
            bar.close()
            raise
        except Exception as e:  # recorded, the sweep goes on; retried on the next invocation
            tb = traceback.format_exc(limit=-3)
            row = _row(spec, dev, "error", f"{type(e).__name__}: {e}", time.perf_counter() - t0)
            store.write(row, _empty_curves(), None)
            failed.append(f"{spec.method} seed={spec.seed}: {type(e).__name__}: {e}\n{tb}")
            bar.update(spec.settings["steps"] - last[0])
            tqdm.write(f"[{i}/{len(todo)}] {spec.method} seed={spec.seed}: ERROR {e}")
            continue
        row = _row(spec, dev, outcome.status, outcome.error, outcome.wall_s)
        row.update(final_metric=outcome.final_metric, best_metric=outcome.best_metric,
                   time_per_step_ms=outcome.time_per_step_ms, peak_mem_mb=outcome.peak_mem_mb,
                   prepare_s=round(outcome.prepare_s, 3), weights_status=outcome.weights_status)
        store.write(row, outcome.curves, outcome.weights)
        bar.update(spec.settings["steps"] - last[0])
        tqdm.write(f"[{i}/{len(todo)}] {spec.method} seed={spec.seed}: {outcome.status} "
                   f"{scenario.metric_name}={outcome.final_metric:.4f} "
                   f"({outcome.time_per_step_ms:.2f} ms/step, {outcome.peak_mem_mb:.2f} MB, "
                   f"{outcome.wall_s:.1f} s)" + (f" {outcome.error}" if outcome.error else "")
                   + (f" WEIGHTS {outcome.weights_status.upper()}"
                      if outcome.weights_status in DEGENERATE else ""))
    bar.close()
    return SweepResult(len(todo), skipped, failed)


def _empty_curves():
    import pandas as pd

    return pd.DataFrame(columns=["step", "split", "metric_name", "value"])


def _row(spec: RunSpec, device: torch.device, status: str, error: str, wall_s: float) -> dict:
    scenario = get_scenario(spec.scenario)
    return {
        "run_id": spec.run_id, "scenario": spec.scenario, "source": spec.source,
        "profile": spec.profile, "method": spec.method, "seed": spec.seed,
        "steps": spec.settings["steps"], "metric_name": scenario.metric_name,
        "final_metric": float("nan"), "best_metric": float("nan"),
        "time_per_step_ms": float("nan"), "peak_mem_mb": float("nan"),
        "device": str(device), "status": status, "error": error,
        "config_json": spec.to_json(), "torch_version": torch.__version__, "git_sha": git_sha(),
        "wall_s": round(wall_s, 3), "threads": torch.get_num_threads(), "prepare_s": 0.0,
        "weights_status": "",
    }
